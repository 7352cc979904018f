"""The public Engine API, as the README documents it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest

from nbstream import Engine
from nbstream.errors import BindError, LogError, NbstreamError, ParseError, UnknownNameError

PAGEVIEWS = """
CREATE STREAM pageviews (viewtime BIGINT, userid VARCHAR KEY, pageid VARCHAR)
  WITH (KAFKA_TOPIC='pageviews', VALUE_FORMAT='JSON', PARTITIONS=2, TIMESTAMP='viewtime');
CREATE STREAM home AS SELECT userid, UCASE(pageid) AS page FROM pageviews WHERE pageid LIKE 'home%';
"""
USERS = """
CREATE TABLE users (userid VARCHAR PRIMARY KEY, name VARCHAR, level INT)
  WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON', PARTITIONS=1);
"""


@pytest.fixture
def eng() -> Engine:
    engine = Engine()
    engine.execute(PAGEVIEWS + USERS)
    return engine


def test_execute_returns_one_result_per_statement() -> None:
    results = Engine().execute(PAGEVIEWS)
    assert [r.message for r in results] == ["Stream created", "Created query with ID CSAS_HOME_0"]
    assert results[1].query_id == "CSAS_HOME_0"


def test_a_persistent_query_filters_and_projects(eng: Engine) -> None:
    eng.produce("pageviews", {"viewtime": 1, "pageid": "home_1"}, key="u1", timestamp=1)
    eng.produce("pageviews", {"viewtime": 2, "pageid": "about"}, key="u2", timestamp=2)
    eng.run_until_idle()
    [record] = eng.consume("home")
    assert (record.key, record.value, record.timestamp) == ("u1", {"PAGE": "HOME_1"}, 1)
    assert record.window is None and record.headers == []


def test_same_key_always_lands_in_the_same_partition(eng: Engine) -> None:
    for i in range(20):
        eng.produce("pageviews", {"viewtime": i, "pageid": "home"}, key=f"u{i % 3}", timestamp=i)
    by_key: dict[str, set[int]] = {}
    for record in eng.consume("pageviews"):
        by_key.setdefault(record.key, set()).add(record.partition)
    assert all(len(parts) == 1 for parts in by_key.values())


def test_produce_batch_is_read_like_single_records(eng: Engine) -> None:
    frame = pd.DataFrame({"viewtime": [10, 11, 12], "userid": ["a", "b", "c"], "pageid": ["home", "x", "home2"]})
    assert eng.produce_batch("pageviews", frame, key="userid", timestamp="viewtime") == 3
    eng.run_until_idle()
    assert sorted((r.key, r.value["PAGE"], r.timestamp) for r in eng.consume("home")) == [
        ("a", "HOME", 10), ("c", "HOME2", 12)]


def test_a_bad_record_goes_to_the_processing_log_and_the_query_goes_on(eng: Engine) -> None:
    eng.produce("pageviews", {"viewtime": "not a number", "pageid": "home"}, key="u1", timestamp=1)
    eng.produce("pageviews", {"viewtime": 2, "pageid": "home"}, key="u1", timestamp=2)
    eng.run_until_idle()
    assert len(eng.consume("home")) == 1
    [logged] = eng.consume("KSQL_PROCESSING_LOG")
    assert logged.value["LOGGER"] == "CSAS_HOME_0"
    assert logged.value["MESSAGE"]["TOPIC"] == "pageviews"
    errors = eng.query("SELECT MESSAGE->ERRORMESSAGE AS error FROM KSQL_PROCESSING_LOG")
    assert len(errors) == 1 and errors["ERROR"][0]
    stats = eng.queries.runner("CSAS_HOME_0").stats
    assert stats.consumed == stats.processed + stats.logged == 2


def test_tables_are_materialized_for_pull_queries(eng: Engine) -> None:
    eng.produce("users", {"name": "Ann", "level": 1}, key="u1")
    eng.produce("users", {"name": "Bob", "level": 2}, key="u2")
    eng.produce("users", {"name": "Ann B", "level": 3}, key="u1")
    eng.produce("users", None, key="u2")  # a tombstone deletes u2
    eng.run_until_idle()
    rows = eng.query("SELECT * FROM users WHERE userid = 'u1'")
    assert rows.to_dict("records") == [{"USERID": "u1", "NAME": "Ann B", "LEVEL": 3}]
    assert len(eng.query("SELECT * FROM users")) == 1


def test_push_query_streams_new_rows_and_stops_at_limit(eng: Engine) -> None:
    async def scenario() -> list[dict]:
        rows = []

        async def collect() -> None:
            async for row in eng.push("SELECT userid, page FROM home EMIT CHANGES LIMIT 2"):
                rows.append(row)

        task = asyncio.create_task(collect())
        await asyncio.sleep(0.05)
        for i in range(3):
            eng.produce("pageviews", {"viewtime": i, "pageid": f"home{i}"}, key=f"u{i}", timestamp=i)
        for _ in range(100):
            await asyncio.to_thread(eng.run_until_idle)
            if task.done():
                break
            await asyncio.sleep(0.02)
        await asyncio.wait_for(task, 5)
        return rows

    rows = asyncio.run(scenario())
    assert [(r["USERID"], r["PAGE"]) for r in rows] == [("u0", "HOME0"), ("u1", "HOME1")]


def test_a_durable_engine_resumes_where_it_stopped(tmp_path: Path) -> None:
    first = Engine(path=tmp_path)
    first.execute(PAGEVIEWS)
    first.produce("pageviews", {"viewtime": 1, "pageid": "home_a"}, key="u1", timestamp=1)
    first.run_until_idle()
    first.produce("pageviews", {"viewtime": 2, "pageid": "home_b"}, key="u2", timestamp=2)
    first.close()

    second = Engine(path=tmp_path)
    assert second.catalog.get_query("CSAS_HOME_0").state == "RUNNING"
    second.run_until_idle()
    assert sorted(r.value["PAGE"] for r in second.consume("home")) == ["HOME_A", "HOME_B"]


def test_show_and_describe_answer_with_rows(eng: Engine) -> None:
    [streams] = eng.execute("SHOW STREAMS;")
    assert {row[0] for row in streams.rows} >= {"PAGEVIEWS", "HOME"}
    [described] = eng.execute("DESCRIBE pageviews;")
    assert ("PAGEVIEWS", "USERID", "STRING (key)") in described.rows


def test_errors_share_one_root_and_name_the_users_thing(eng: Engine) -> None:
    with pytest.raises(ParseError) as parse_error:
        eng.execute("SHOW STREAMS;\nSELECT * FROM pageviews WHERE;")
    assert parse_error.value.span is not None and parse_error.value.span.line == 2
    with pytest.raises(UnknownNameError, match="PAGEVIEWS"):
        eng.execute("CREATE STREAM x AS SELECT * FROM pageview;")
    with pytest.raises(UnknownNameError, match="PAGEID"):
        eng.execute("CREATE STREAM y AS SELECT userid, pagid FROM pageviews;")
    with pytest.raises(BindError):
        eng.execute("CREATE STREAM z AS SELECT pageid FROM pageviews;")  # key missing from projection
    with pytest.raises(LogError, match="pageviews"):
        eng.produce("pageview", {"viewtime": 1})
    assert all(issubclass(e, NbstreamError) for e in (ParseError, UnknownNameError, BindError, LogError))


def test_produce_batch_keeps_the_frame_order_within_a_partition(eng: Engine) -> None:
    n = 300_000  # several DuckDB row groups, so a parallel scan could reorder them
    frame = pd.DataFrame({"viewtime": range(n), "userid": ["same"] * n, "pageid": ["home"] * n})
    eng.produce_batch("pageviews", frame, key="userid", timestamp="viewtime")
    eng.run_until_idle()
    for topic in ("pageviews", "home"):
        times = [r.timestamp for r in eng.consume(topic)]
        assert times == list(range(n)), topic


def test_properties_given_to_execute_hold_for_its_statements_only(tmp_path: Path) -> None:
    engine = Engine(path=tmp_path)
    engine.execute("CREATE STREAM d (v INT) WITH (KAFKA_TOPIC='d');",
                   properties={"ksql.persistence.default.format.value": "DELIMITED"})
    engine.execute("CREATE STREAM j (v INT) WITH (KAFKA_TOPIC='j', VALUE_FORMAT='JSON');")
    formats = {row[0]: row[3] for row in engine.execute("SHOW STREAMS;")[0].rows}
    assert (formats["D"], formats["J"]) == ("DELIMITED", "JSON")
    assert engine.properties == {}
    engine.close()
    reopened = Engine(path=tmp_path)  # the statement is replayed with the overrides it ran with
    assert {row[0]: row[3] for row in reopened.execute("SHOW STREAMS;")[0].rows} == formats
    reopened.close()


def test_a_kafka_streams_setting_may_carry_ksqldbs_prefix() -> None:
    engine = Engine(properties={"ksql.streams.auto.offset.reset": "earliest"})
    assert engine.property("auto.offset.reset") == "earliest"
