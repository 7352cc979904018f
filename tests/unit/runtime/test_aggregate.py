"""GROUP BY queries follow ksqlDB's changelog: one output per input that changes a result, windows
assigned by record time, late records dropped, sessions merged with tombstones."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from produced import EVERY_CHANGE  # type: ignore[import-not-found]

from nbstream import Engine
from nbstream.errors import BindError

CLICKS = ("CREATE STREAM clicks (user VARCHAR KEY, page VARCHAR, n INT) "
          "WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON');")


def _run(sql: str, records: list[tuple[str | None, dict[str, Any] | None, int]], topic: str = "clicks",
         eng: Engine | None = None) -> Engine:
    eng = eng or Engine(properties=EVERY_CHANGE)
    eng.execute(sql)
    for key, value, ts in records:
        eng.produce(topic, value, key=key, timestamp=ts)
    eng.run_until_idle()
    return eng


def _changes(eng: Engine, topic: str, column: str) -> list[tuple[Any, ...]]:
    """(key, window, value of ``column`` or None for a tombstone) for every record of ``topic``."""
    return [(r.key, r.window, None if r.value is None else r.value[column]) for r in eng.consume(topic)]


def test_emit_changes_writes_the_running_count_of_each_key() -> None:
    eng = _run(CLICKS + "CREATE TABLE counts AS SELECT user, COUNT(*) AS c FROM clicks GROUP BY user;",
               [("a", {"page": "p"}, 1), ("b", {"page": "p"}, 2), ("a", {"page": "q"}, 3)])
    assert _changes(eng, "COUNTS", "C") == [("a", None, 1), ("b", None, 1), ("a", None, 2)]


def test_having_writes_a_tombstone_only_once_a_passing_value_was_written() -> None:
    eng = _run(CLICKS + "CREATE TABLE big AS SELECT user, SUM(n) AS total FROM clicks GROUP BY user "
               "HAVING SUM(n) > 5;",
               [("a", {"n": 1}, 1), ("a", {"n": 10}, 2), ("a", {"n": -20}, 3), ("a", {"n": -1}, 4)])
    # 1 never passed: nothing; 11 passes; -9 fails after a pass: tombstone; -10 fails again: nothing
    assert _changes(eng, "BIG", "TOTAL") == [("a", None, 11), ("a", None, None)]


def test_a_table_row_that_changes_group_is_retracted_from_the_old_group_then_added_to_the_new() -> None:
    eng = _run("CREATE TABLE users (id INT PRIMARY KEY, region VARCHAR) WITH (KAFKA_TOPIC='users', "
               "VALUE_FORMAT='JSON');"
               "CREATE TABLE per_region AS SELECT region, COUNT(*) AS c FROM users GROUP BY region;",
               [(1, {"region": "eu"}, 1), (2, {"region": "eu"}, 2), (1, {"region": "us"}, 3)], topic="users")
    assert _changes(eng, "PER_REGION", "C") == [("eu", None, 1), ("eu", None, 2), ("eu", None, 1), ("us", None, 1)]


def test_histogram_over_a_table_forgets_a_value_once_every_row_holding_it_left_the_group() -> None:
    eng = _run("CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR, region VARCHAR) WITH (KAFKA_TOPIC='users', "
               "VALUE_FORMAT='JSON');"
               "CREATE TABLE names AS SELECT region, HISTOGRAM(name) AS seen FROM users GROUP BY region;",
               [(1, {"name": "ann", "region": "eu"}, 1), (2, {"name": "bo", "region": "eu"}, 2),
                (3, {"name": "bo", "region": "eu"}, 3), (2, {"name": "bo", "region": "us"}, 4),
                (3, None, 5), (1, {"name": "cy", "region": "eu"}, 6)], topic="users")
    assert _changes(eng, "NAMES", "SEEN") == [
        ("eu", None, {"ann": 1}), ("eu", None, {"ann": 1, "bo": 1}), ("eu", None, {"ann": 1, "bo": 2}),
        ("eu", None, {"ann": 1, "bo": 1}), ("us", None, {"bo": 1}),  # row 2 moved
        ("eu", None, {"ann": 1}),  # row 3 deleted: "bo" counts 0 and leaves the map
        ("eu", None, {"cy": 1})]  # row 1 renamed in its group: "ann" retracted, "cy" added, one change


USERS = ("CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR, region VARCHAR) WITH (KAFKA_TOPIC='users', "
         "VALUE_FORMAT='JSON');")


def test_collect_list_over_a_table_removes_the_last_occurrence_of_a_retracted_value() -> None:
    sql = USERS + "CREATE TABLE names AS SELECT region, COLLECT_LIST(name) AS seen FROM users GROUP BY region;"
    eng = _run(sql, [(1, {"name": "ann", "region": "eu"}, 1), (2, {"name": "bo", "region": "eu"}, 2),
                     (3, {"name": "ann", "region": "eu"}, 3)], topic="users")
    _run("", [(1, None, 4), (2, {"name": "dee", "region": "eu"}, 5)], topic="users", eng=eng)  # a later batch
    assert _changes(eng, "NAMES", "SEEN") == [
        ("eu", None, ["ann"]), ("eu", None, ["ann", "bo"]), ("eu", None, ["ann", "bo", "ann"]),
        ("eu", None, ["ann", "bo"]),  # row 1 deleted: the last "ann" goes, not row 1's (CollectListUdaf.undo)
        ("eu", None, ["ann", "dee"])]  # row 2 renamed in its group: "bo" retracted, "dee" appended, one change


def test_collect_list_over_a_table_drops_a_value_above_its_limit_and_its_retraction_removes_an_earlier_one() -> None:
    eng = Engine(properties=EVERY_CHANGE | {"ksql.functions.collect_list.limit": 2})
    sql = USERS + "CREATE TABLE names AS SELECT region, COLLECT_LIST(name) AS seen FROM users GROUP BY region;"
    _run(sql, [(1, {"name": "a", "region": "eu"}, 1), (2, {"name": "b", "region": "eu"}, 2),
               (3, {"name": "a", "region": "eu"}, 3), (3, None, 4)], topic="users", eng=eng)
    assert _changes(eng, "NAMES", "SEEN") == [
        ("eu", None, ["a"]), ("eu", None, ["a", "b"]), ("eu", None, ["a", "b"]), ("eu", None, ["b"])]


def test_collect_set_cannot_aggregate_a_table_as_ksqldb_cannot_undo_it() -> None:
    with pytest.raises(BindError, match="COLLECT_SET cannot be applied to a table source"):
        _run(USERS + "CREATE TABLE names AS SELECT region, COLLECT_SET(name) AS seen FROM users GROUP BY region;",
             [], topic="users")


def test_a_tumbling_window_holds_the_records_between_its_start_and_end() -> None:
    eng = _run(CLICKS + "CREATE TABLE w AS SELECT user, COUNT(*) AS c FROM clicks WINDOW TUMBLING (SIZE 10 SECONDS) "
               "GROUP BY user;",
               [("a", {}, 0), ("a", {}, 9_999), ("a", {}, 10_000)])
    assert _changes(eng, "W", "C") == [("a", (0, 10_000), 1), ("a", (0, 10_000), 2), ("a", (10_000, 20_000), 1)]


def test_a_hopping_window_counts_a_record_once_in_every_window_that_contains_it() -> None:
    eng = _run(CLICKS + "CREATE TABLE w AS SELECT user, COUNT(*) AS c FROM clicks "
               "WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 5 SECONDS) GROUP BY user;",
               [("a", {}, 7_000)])
    assert _changes(eng, "W", "C") == [("a", (0, 10_000), 1), ("a", (5_000, 15_000), 1)]


def test_a_record_after_window_end_plus_grace_is_dropped_and_counted_late() -> None:
    eng = _run(CLICKS + "CREATE TABLE w AS SELECT user, COUNT(*) AS c FROM clicks "
               "WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 5 SECONDS) GROUP BY user;",
               [("a", {}, 1_000), ("a", {}, 30_000), ("a", {}, 2_000)])  # window [0, 10 s) closed at 15 s
    assert _changes(eng, "W", "C") == [("a", (0, 10_000), 1), ("a", (30_000, 40_000), 1)]
    assert eng.queries.runner("CTAS_W_0").stats.late == 1


def test_emit_final_writes_each_window_once_when_it_closes() -> None:
    eng = _run(CLICKS + "CREATE TABLE w AS SELECT user, COUNT(*) AS c FROM clicks "
               "WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 1 SECONDS) GROUP BY user EMIT FINAL;",
               [("a", {}, 1_000), ("a", {}, 2_000), ("a", {}, 10_500), ("a", {}, 11_000), ("a", {}, 12_000)])
    assert _changes(eng, "W", "C") == [("a", (0, 10_000), 2)]  # closed at 11 s; [10 s, 20 s) is still open


def test_emit_final_writes_a_window_closed_by_any_record_before_the_next_window_ends() -> None:
    # [0, 10 s) closes at 10 s (no grace period: 0); 15 s is past that, with [10 s, 20 s) still open
    eng = _run(CLICKS + "CREATE TABLE w AS SELECT user, COUNT(*) AS c FROM clicks "
               "WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY user EMIT FINAL;",
               [("a", {}, 1_000), ("a", {}, 15_000)])
    assert _changes(eng, "W", "C") == [("a", (0, 10_000), 1)]
    assert [r.timestamp for r in eng.consume("W")] == [1_000]


def test_emit_final_counts_a_window_expired_by_a_jump_beyond_its_retention() -> None:
    # at 25 s the largest window start is 20 s: the store (retention size + grace = 10 s) no longer
    # holds [0, 10 s) when it closes, as in Kafka Streams — counted, not written
    eng = _run(CLICKS + "CREATE TABLE w AS SELECT user, COUNT(*) AS c FROM clicks "
               "WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY user EMIT FINAL;",
               [("a", {}, 1_000), ("a", {}, 25_000)])
    assert _changes(eng, "W", "C") == []
    assert eng.queries.runner("CTAS_W_0").stats.expired == 1


def test_emit_final_with_a_retention_above_the_gap_writes_the_window_a_jump_closed() -> None:
    eng = _run(CLICKS + "CREATE TABLE w AS SELECT user, COUNT(*) AS c FROM clicks "
               "WINDOW TUMBLING (SIZE 10 SECONDS, RETENTION 1 MINUTE) GROUP BY user EMIT FINAL;",
               [("a", {}, 1_000), ("a", {}, 25_000)])
    assert _changes(eng, "W", "C") == [("a", (0, 10_000), 1)]  # [20 s, 30 s) is still open
    assert eng.queries.runner("CTAS_W_0").stats.expired == 0


def test_emit_final_writes_a_session_once_it_closes() -> None:
    eng = _run(CLICKS + "CREATE TABLE s AS SELECT user, COUNT(*) AS c FROM clicks "
               "WINDOW SESSION (5 SECONDS, GRACE PERIOD 1 SECONDS) GROUP BY user EMIT FINAL;",
               [("a", {}, 0), ("a", {}, 3_000), ("a", {}, 6_000), ("a", {}, 20_000)])
    assert _changes(eng, "S", "C") == [("a", (0, 6_000), 3)]  # closed at 6 s + 1 s + 5 s


def test_a_record_bridging_two_sessions_replaces_them_with_tombstones_then_the_merged_session() -> None:
    eng = _run(CLICKS + "CREATE TABLE s AS SELECT user, COUNT(*) AS c FROM clicks WINDOW SESSION (10 SECONDS) "
               "GROUP BY user;",
               [("a", {}, 0), ("a", {}, 15_000), ("a", {}, 8_000)])
    assert _changes(eng, "S", "C") == [
        ("a", (0, 0), 1), ("a", (15_000, 15_000), 1),
        ("a", (0, 0), None), ("a", (15_000, 15_000), None), ("a", (0, 15_000), 3),
    ]


def test_a_record_inside_an_open_session_extends_it_across_batches() -> None:
    eng = _run(CLICKS + "CREATE TABLE s AS SELECT user, COUNT(*) AS c FROM clicks WINDOW SESSION (10 SECONDS) "
               "GROUP BY user;", [("a", {}, 0)])
    eng.produce("clicks", {}, key="a", timestamp=5_000)
    eng.run_until_idle()
    assert _changes(eng, "S", "C") == [("a", (0, 0), 1), ("a", (0, 0), None), ("a", (0, 5_000), 2)]


def test_a_session_merges_records_of_one_group_from_several_input_partitions() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute("CREATE STREAM orders (id VARCHAR KEY, region VARCHAR) "
                "WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=2);"
                "CREATE TABLE s AS SELECT region, COUNT(*) AS c FROM orders WINDOW SESSION (30 SECONDS) "
                "GROUP BY region;")
    eng.produce("orders", {"REGION": "us"}, key="o1", timestamp=2_000, partition=1)
    eng.run_until_idle()
    eng.produce("orders", {"REGION": "us"}, key="o2", timestamp=4_000, partition=0)  # a lower partition, later
    eng.run_until_idle()
    assert _changes(eng, "S", "C")[-1] == ("us", (2_000, 4_000), 2)


def test_aggregate_state_survives_an_engine_restart(tmp_path: Path) -> None:
    eng = _run(CLICKS + "CREATE TABLE counts AS SELECT user, COUNT(*) AS c FROM clicks GROUP BY user;",
               [("a", {}, 1)], eng=Engine(path=tmp_path / "db", properties=EVERY_CHANGE))
    eng.close()
    eng = Engine(path=tmp_path / "db", properties=EVERY_CHANGE)
    eng.produce("clicks", {}, key="a", timestamp=2)
    eng.run_until_idle()
    assert _changes(eng, "COUNTS", "C") == [("a", None, 1), ("a", None, 2)]


def test_open_sessions_survive_an_engine_restart(tmp_path: Path) -> None:
    sql = CLICKS + ("CREATE TABLE s AS SELECT user, SUM(n) AS total FROM clicks WINDOW SESSION (10 SECONDS) "
                    "GROUP BY user;")
    eng = _run(sql, [("a", {"n": 1}, 0)], eng=Engine(path=tmp_path / "db", properties=EVERY_CHANGE))
    eng.close()
    eng = Engine(path=tmp_path / "db", properties=EVERY_CHANGE)
    eng.produce("clicks", {"n": 2}, key="a", timestamp=4_000)
    eng.run_until_idle()
    assert _changes(eng, "S", "TOTAL") == [("a", (0, 0), 1), ("a", (0, 0), None), ("a", (0, 4_000), 3)]


def test_terminating_a_query_drops_its_state_and_offsets() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    [_, created] = eng.execute(
        "CREATE STREAM s (k STRING KEY, v INT) WITH (kafka_topic='s', value_format='JSON');"
        "CREATE TABLE t AS SELECT k, COUNT(*) AS n FROM s WINDOW TUMBLING (SIZE 1 SECOND) GROUP BY k;")
    eng.produce("s", {"V": 1}, key="a", timestamp=10)
    eng.run_until_idle()

    def kept() -> tuple[int, int]:
        tables = eng.con.execute("SELECT count(*) FROM duckdb_tables() WHERE starts_with(table_name, 'agg$')")
        n_tables = tables.fetchall()[0][0]
        offsets = eng.con.execute("SELECT count(*) FROM __offsets WHERE query_id = ?", [created.query_id])
        return n_tables, offsets.fetchall()[0][0]

    assert kept() == (1, 1)
    eng.execute(f"TERMINATE {created.query_id};")
    assert kept() == (0, 0)


def test_a_push_query_that_aggregates_streams_its_changelog() -> None:
    eng = Engine(properties=EVERY_CHANGE | {"auto.offset.reset": "earliest"})
    eng.execute("CREATE STREAM s (k STRING KEY, v INT) WITH (kafka_topic='s', value_format='JSON');")
    for key, v, ts in [("a", 1, 100), ("b", 5, 200), ("a", 2, 1500)]:
        eng.produce("s", {"V": v}, key=key, timestamp=ts)
    runner = eng._transient_runner(
        "SELECT k, COUNT(*) AS n, SUM(v) AS total FROM s WINDOW TUMBLING (SIZE 1 SECOND) GROUP BY k EMIT CHANGES;")
    rows = runner.fetch_rows()
    assert rows is not None
    assert [(r["K"], r["WINDOWSTART"], r["N"], r["TOTAL"], r["ROWTIME"]) for r in rows.to_pylist()] == [
        ("a", 0, 1, 1, 100), ("b", 0, 1, 5, 200), ("a", 1000, 1, 2, 1500)]
    eng.produce("s", {"V": 3}, key="a", timestamp=1600)
    more = runner.fetch_rows()
    assert more is not None and [(r["K"], r["N"], r["TOTAL"]) for r in more.to_pylist()] == [("a", 2, 5)]
    assert runner.fetch_rows() is None
    runner.con.close()
    assert not eng.con.execute("SELECT count(*) FROM duckdb_tables() WHERE starts_with(table_name, 'agg$')"
                               ).fetchall()[0][0], "a push query keeps no state in the database"


def test_engine_push_streams_an_aggregation_until_its_limit() -> None:
    eng = Engine(properties=EVERY_CHANGE | {"auto.offset.reset": "earliest"})
    eng.execute("CREATE STREAM s (k STRING KEY, v INT) WITH (kafka_topic='s', value_format='JSON');")
    for v in (1, 2, 3):
        eng.produce("s", {"V": v}, key="a", timestamp=v)

    async def first_two() -> list[tuple[str, int]]:
        return [(row["K"], row["TOTAL"]) async for row in
                eng.push("SELECT k, SUM(v) AS total FROM s GROUP BY k EMIT CHANGES LIMIT 2;")]

    assert asyncio.run(first_two()) == [("a", 1), ("a", 3)]


def test_push_queries_over_windows_key_their_rows_by_key_and_window() -> None:
    eng = _run(CLICKS + "CREATE TABLE w AS SELECT user, COUNT(*) AS c FROM clicks WINDOW TUMBLING (SIZE 1 SECOND) "
               "GROUP BY user;", [("a", {}, 100), ("a", {}, 1_500)])
    eng.properties["auto.offset.reset"] = "earliest"
    over_table = eng._transient_runner("SELECT * FROM w EMIT CHANGES;")
    aggregating = eng._transient_runner("SELECT user, WINDOWSTART, WINDOWEND, COUNT(*) AS c FROM clicks "
                                       "WINDOW TUMBLING (SIZE 1 SECOND) GROUP BY user EMIT CHANGES;")
    for runner in (over_table, aggregating):
        assert runner.result_shape.keys == ("USER", "WINDOWSTART", "WINDOWEND")
        rows = runner.fetch_rows()
        assert rows is not None
        assert [(r["USER"], r["WINDOWSTART"], r["WINDOWEND"], r["C"]) for r in rows.to_pylist()] == [
            ("a", 0, 1_000, 1), ("a", 1_000, 2_000, 1)]
        runner.con.close()


def test_latest_and_earliest_by_offset_run_over_a_batch_skipping_nulls_unless_told_not_to() -> None:
    eng = _run(CLICKS + "CREATE TABLE last AS SELECT user, LATEST_BY_OFFSET(page) AS latest, "
               "LATEST_BY_OFFSET(page, false) AS latest_or_null, EARLIEST_BY_OFFSET(page) AS earliest, "
               "EARLIEST_BY_OFFSET(page, false) AS earliest_or_null FROM clicks GROUP BY user;",
               [("a", {"page": None}, 1), ("a", {"page": "p"}, 2), ("b", {"page": "x"}, 3),
                ("a", {"page": None}, 4), ("a", {"page": "q"}, 5)])
    columns = ("LATEST", "LATEST_OR_NULL", "EARLIEST", "EARLIEST_OR_NULL")
    rows = [(r.key, *(r.value[c] for c in columns)) for r in eng.consume("LAST")]
    assert rows == [("a", None, None, None, None), ("a", "p", "p", "p", None), ("b", "x", "x", "x", "x"),
                    ("a", "p", None, "p", None), ("a", "q", "q", "p", None)]
