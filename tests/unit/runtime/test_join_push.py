"""Push queries (``SELECT … EMIT CHANGES``) over joins: transient state, streams from their end,
tables from their beginning."""

from __future__ import annotations

import asyncio

from produced import EVERY_CHANGE  # type: ignore[import-not-found]

from nbstream import Engine

SOURCES = """
CREATE STREAM clicks (userid STRING KEY, page STRING) WITH (kafka_topic='clicks', value_format='JSON');
CREATE TABLE users (userid STRING PRIMARY KEY, region STRING) WITH (kafka_topic='users', value_format='JSON');
"""


def _engine() -> Engine:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(SOURCES)
    eng.produce("users", {"REGION": "north"}, key="u1")
    eng.produce("clicks", {"PAGE": "before the query"}, key="u1")
    return eng


def _rows(table: object) -> list[tuple[object, ...]]:
    assert table is not None
    return [tuple(row.values())[2:] for row in table.to_pylist()]  # type: ignore[attr-defined]


def test_a_stream_table_push_query_sees_new_stream_records_with_the_tables_current_rows() -> None:
    eng = _engine()
    runner = eng._transient_runner("SELECT c.userid, page, region FROM clicks c JOIN users u "
                                  "ON c.userid = u.userid EMIT CHANGES;")
    assert _rows(runner.fetch_rows()) == [], "the table is read from its beginning; the stream from its end"
    eng.produce("clicks", {"PAGE": "home"}, key="u1")
    eng.produce("clicks", {"PAGE": "nobody"}, key="u2")
    eng.produce("users", {"REGION": "south"}, key="u2")
    eng.produce("clicks", {"PAGE": "cart"}, key="u2")
    assert _rows(runner.fetch_rows()) == [("u1", "home", "north"), ("u2", "cart", "south")]
    assert runner.fetch_rows() is None
    assert runner.result_shape.columns == ("C_USERID", "PAGE", "REGION")
    runner.con.close()


def test_a_push_query_over_a_join_keeps_no_state_in_the_database() -> None:
    eng = _engine()
    runner = eng._transient_runner("SELECT region, COUNT(*) AS n FROM clicks c JOIN users u "
                                  "ON c.userid = u.userid GROUP BY region EMIT CHANGES;")
    eng.produce("clicks", {"PAGE": "home"}, key="u1")
    eng.produce("clicks", {"PAGE": "cart"}, key="u1")
    assert _rows(runner.fetch_rows()) == [("north", 1), ("north", 2)]
    assert runner.result_shape.is_table and runner.result_shape.keys == ("REGION",)
    runner.con.close()
    kept = eng.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'join$%' "
                           "OR table_name LIKE 'agg$%'").fetchall()[0][0]
    assert kept == 0


def test_a_table_table_push_query_starts_with_the_joins_current_rows_then_changes() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(SOURCES + "CREATE TABLE plans (userid STRING PRIMARY KEY, tier STRING) "
                          "WITH (kafka_topic='plans', value_format='JSON');")
    eng.produce("users", {"REGION": "north"}, key="u1")
    eng.produce("plans", {"TIER": "gold"}, key="u1")
    runner = eng._transient_runner("SELECT u.userid, region, tier FROM users u JOIN plans p "
                                  "ON u.userid = p.userid EMIT CHANGES;")
    assert _rows(runner.fetch_rows()) == [("u1", "north", "gold")]
    eng.produce("plans", None, key="u1")  # a tombstone: the joined row goes
    table = runner.fetch_rows()
    assert table is not None and [r["__deleted"] for r in table.to_pylist()] == [True]
    runner.con.close()


def test_engine_push_streams_a_join_until_its_limit() -> None:
    eng = _engine()

    async def first_two() -> list[str]:
        pages = []
        async for row in eng.push("SELECT c.userid, page, region FROM clicks c JOIN users u "
                                  "ON c.userid = u.userid EMIT CHANGES LIMIT 2;"):
            pages.append(row["PAGE"])
        return pages

    async def produce_then_read() -> list[str]:
        reader = asyncio.create_task(first_two())
        await asyncio.sleep(0.05)
        for page in ("a", "b", "c"):
            eng.produce("clicks", {"PAGE": page}, key="u1")
        return await asyncio.wait_for(reader, 10)

    assert asyncio.run(produce_then_read()) == ["a", "b"]
