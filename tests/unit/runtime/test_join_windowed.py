"""Joins of windowed sources follow ksqlDB: two sources whose keys are windowed alike join on key
and window — the window bounds their serialized keys hold (a time window's start, a session's
start and end) — and the result's key is windowed like the left source's; so does each join of a
chain of them. ksqlDB never re-keys a windowed source for a join, so anything that would is refused
with its message; a GROUP BY re-keys the join's rows, unless it groups by the join's key alone."""

from __future__ import annotations

from typing import Any

import pytest
from produced import EVERY_CHANGE  # type: ignore[import-not-found]

from nbstream import Engine
from nbstream.errors import BindError

Record = tuple[str, Any, dict[str, Any] | None, int, tuple[int, int]]  # topic, key, value, timestamp, window


def _stream(name: str, window: str, key_format: str = "KAFKA", kind: str = "STREAM") -> str:
    key = "PRIMARY KEY" if kind == "TABLE" else "KEY"
    return (f"CREATE {kind} {name} (id INT {key}, v BIGINT) WITH (KAFKA_TOPIC='{name.lower()}', "
            f"KEY_FORMAT='{key_format}', VALUE_FORMAT='JSON', {window});")


TUMBLING = "WINDOW_TYPE='TUMBLING', WINDOW_SIZE='2 SECONDS'"
HOPPING = "WINDOW_TYPE='HOPPING', WINDOW_SIZE='5 SECONDS'"
SESSION = "WINDOW_TYPE='SESSION'"


def _run(sql: str, records: list[Record]) -> Engine:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(sql)
    for topic, key, value, ts, window in records:
        eng.produce(topic, value, key=key, timestamp=ts, window=window)
    eng.run_until_idle()
    return eng


def _out(eng: Engine, topic: str) -> list[tuple[Any, ...]]:
    """(key, window, timestamp, value) per record."""
    return [(r.key, r.window, r.timestamp, r.value) for r in eng.consume(topic)]


# -- stream-stream -------------------------------------------------------------------------------------


def test_time_windowed_streams_join_only_records_of_the_same_key_and_window() -> None:
    eng = _run(_stream("L", TUMBLING) + _stream("R", TUMBLING) +
               "CREATE STREAM j AS SELECT l.id, l.v AS lv, r.v AS rv FROM l JOIN r WITHIN 1 MINUTE ON l.id = r.id;",
               [("l", 1, {"V": 1}, 0, (0, 2_000)), ("l", 1, {"V": 2}, 2_000, (2_000, 4_000)),
                ("r", 1, {"V": 10}, 2_500, (2_000, 4_000)), ("r", 2, {"V": 20}, 2_600, (2_000, 4_000))])
    # r's record is within a minute of both of l's key-1 records, but in the window of the second only
    assert _out(eng, "J") == [(1, (2_000, 4_000), 2_500, {"LV": 2, "RV": 10})]
    assert eng.catalog.get("J").window == eng.catalog.get("L").window


def test_session_windowed_streams_join_only_when_both_bounds_are_equal() -> None:
    eng = _run(_stream("L", SESSION) + _stream("R", SESSION) +
               "CREATE STREAM j AS SELECT l.id, l.v AS lv, r.v AS rv FROM l JOIN r WITHIN 1 MINUTE ON l.id = r.id;",
               [("l", 1, {"V": 1}, 765, (234, 765)), ("r", 1, {"V": 2}, 567, (234, 567)),
                ("r", 1, {"V": 3}, 765, (234, 765))])
    assert _out(eng, "J") == [(1, (234, 765), 765, {"LV": 1, "RV": 3})]


def test_select_star_lists_each_sides_window_bounds_after_its_key() -> None:
    eng = _run(_stream("L", TUMBLING) + _stream("R", TUMBLING) +
               "CREATE STREAM j AS SELECT * FROM l JOIN r WITHIN 1 MINUTE ON l.id = r.id;",
               [("l", 1, {"V": 1}, 0, (0, 2_000)), ("r", 1, {"V": 4}, 0, (0, 2_000))])
    assert [c.name for c in eng.catalog.get("J").schema.columns] == [
        "L_ID", "L_WINDOWSTART", "L_WINDOWEND", "L_V", "R_ID", "R_WINDOWSTART", "R_WINDOWEND", "R_V"]
    assert _out(eng, "J") == [(1, (0, 2_000), 0, {"L_WINDOWSTART": 0, "L_WINDOWEND": 2_000, "L_V": 1, "R_ID": 1,
                                                  "R_WINDOWSTART": 0, "R_WINDOWEND": 2_000, "R_V": 4})]


def test_a_left_join_pads_a_record_without_a_match_in_its_window() -> None:
    eng = _run(_stream("L", TUMBLING) + _stream("R", TUMBLING) +
               "CREATE STREAM j AS SELECT l.id, l.v AS lv, r.v AS rv FROM l LEFT JOIN r WITHIN 1 MINUTE "
               "ON l.id = r.id;",
               [("r", 1, {"V": 10}, 0, (0, 2_000)), ("l", 1, {"V": 2}, 2_000, (2_000, 4_000))])
    assert _out(eng, "J") == [(1, (2_000, 4_000), 2_000, {"LV": 2, "RV": None})]


def test_streams_in_a_schema_registry_key_format_join_on_the_window_start_in_the_left_window() -> None:
    # ksqlDB re-serializes both sides into the left key format: a time window's key holds its start only
    eng = _run(_stream("L", HOPPING, "JSON_SR") + _stream("R", TUMBLING, "JSON_SR") +
               "CREATE STREAM j AS SELECT l.id, l.v AS lv, r.v AS rv, r.windowend AS rend FROM l JOIN r "
               "WITHIN 1 MINUTE ON l.id = r.id;",
               [("l", 1, {"V": 1}, 0, (0, 5_000)), ("l", 1, {"V": 2}, 1_000, (1_000, 6_000)),
                ("r", 1, {"V": 4}, 0, (0, 2_000))])
    assert _out(eng, "J") == [(1, (0, 5_000), 0, {"LV": 1, "RV": 4, "REND": 2_000})]


def test_a_push_query_over_a_windowed_join_returns_the_window_after_the_key() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(_stream("L", TUMBLING) + _stream("R", TUMBLING))
    runner = eng._transient_runner("SELECT l.v AS lv, l.id, r.v AS rv FROM l JOIN r WITHIN 1 MINUTE "
                                  "ON l.id = r.id EMIT CHANGES;")
    eng.produce("l", {"V": 1}, key=1, timestamp=0, window=(0, 2_000))
    eng.produce("r", {"V": 4}, key=1, timestamp=1, window=(0, 2_000))
    rows = runner.fetch_rows()
    assert rows is not None
    assert runner.result_shape.columns == ("L_ID", "WINDOWSTART", "WINDOWEND", "LV", "RV")
    assert [{name: r[name] for name in runner.result_shape.columns} for r in rows.to_pylist()] == [
        {"L_ID": 1, "WINDOWSTART": 0, "WINDOWEND": 2_000, "LV": 1, "RV": 4}]
    runner.con.close()


# -- table-table ---------------------------------------------------------------------------------------


def test_windowed_tables_join_row_by_row_per_key_and_window() -> None:
    eng = _run(_stream("A", TUMBLING, kind="TABLE") + _stream("B", TUMBLING, kind="TABLE") +
               "CREATE TABLE j AS SELECT a.id, a.v AS av, b.v AS bv FROM a JOIN b ON a.id = b.id WHERE a.v > 0;",
               [("a", 1, {"V": 1}, 0, (0, 2_000)), ("b", 1, {"V": 10}, 10, (0, 2_000)),
                ("b", 1, {"V": 20}, 2_000, (2_000, 4_000)), ("a", 1, {"V": 2}, 2_001, (2_000, 4_000)),
                ("a", 1, {"V": -1}, 2_002, (0, 2_000))])
    # the row failing the WHERE deletes its own window's row only
    assert _out(eng, "J") == [(1, (0, 2_000), 10, {"AV": 1, "BV": 10}),
                              (1, (2_000, 4_000), 2_001, {"AV": 2, "BV": 20}),
                              (1, (0, 2_000), 2_002, None)]
    [result] = eng.execute("SELECT * FROM j;")
    assert result.rows == ((1, 2_000, 4_000, 2, 20),)


def test_a_windowed_stream_looks_up_the_windowed_table_row_of_its_key_and_window() -> None:
    eng = _run(_stream("S", TUMBLING) + _stream("T", TUMBLING, kind="TABLE") +
               "CREATE STREAM j AS SELECT s.id, s.v AS sv, t.v AS tv FROM s LEFT JOIN t ON s.id = t.id;",
               [("t", 1, {"V": 5}, 0, (0, 2_000)), ("s", 1, {"V": 1}, 1, (0, 2_000)),
                ("s", 1, {"V": 2}, 2_000, (2_000, 4_000))])
    assert _out(eng, "J") == [(1, (0, 2_000), 1, {"SV": 1, "TV": 5}), (1, (2_000, 4_000), 2_000, {"SV": 2, "TV": None})]


# -- what ksqlDB refuses --------------------------------------------------------------------------------


@pytest.mark.parametrize(("left", "right", "message"), [
    (SESSION, TUMBLING, "Incompatible windowed sources.\nLeft source: SESSION\nRight source: TUMBLING"),
    (TUMBLING, HOPPING, "Implicit repartitioning of windowed sources is not supported."),
    (TUMBLING, "WINDOW_TYPE='TUMBLING', WINDOW_SIZE='3 SECONDS'",
     "Implicit repartitioning of windowed sources is not supported."),
])
def test_streams_windowed_differently_do_not_join(left: str, right: str, message: str) -> None:
    with pytest.raises(BindError) as error:
        Engine().execute(_stream("L", left) + _stream("R", right) +
                         "CREATE STREAM j AS SELECT * FROM l JOIN r WITHIN 1 MINUTE ON l.id = r.id;")
    assert str(error.value).startswith(message)


def test_a_windowed_stream_joined_on_another_column_than_its_key_is_refused() -> None:
    with pytest.raises(BindError) as error:
        Engine().execute(_stream("L", SESSION) + _stream("R", SESSION) +
                         "CREATE STREAM j AS SELECT * FROM l JOIN r WITHIN 1 MINUTE ON l.v = r.v;")
    assert str(error.value).startswith("Implicit repartitioning of windowed sources is not supported. "
                                       "See https://github.com/confluentinc/ksql/issues/4385.")


def test_a_windowed_table_in_a_schema_registry_key_format_is_refused() -> None:
    with pytest.raises(BindError, match="does not support joins on windowed sources with Schema-Registry-enabled"):
        Engine().execute(_stream("A", TUMBLING, "JSON_SR", "TABLE") + _stream("B", TUMBLING, "JSON_SR", "TABLE") +
                         "CREATE TABLE j AS SELECT * FROM a JOIN b ON a.id = b.id;")


def test_partition_by_over_a_windowed_join_is_refused() -> None:
    with pytest.raises(BindError, match="Implicit repartitioning of windowed sources"):
        Engine().execute(_stream("L", TUMBLING) + _stream("R", TUMBLING) +
                         "CREATE STREAM j AS SELECT * FROM l JOIN r WITHIN 1 MINUTE ON l.id = r.id PARTITION BY l.v;")


def test_three_windowed_streams_join_only_records_of_the_same_key_and_window() -> None:
    eng = _run(_stream("A", TUMBLING) + _stream("B", TUMBLING) + _stream("C", TUMBLING) +
               "CREATE STREAM j AS SELECT a.id, a.v AS av, b.v AS bv, c.v AS cv FROM a JOIN b WITHIN 1 MINUTE "
               "ON a.id = b.id LEFT JOIN c WITHIN 1 MINUTE ON b.id = c.id;",
               [("a", 1, {"V": 1}, 100, (0, 2_000)), ("b", 1, {"V": 2}, 200, (0, 2_000)),
                ("b", 1, {"V": 3}, 2_200, (2_000, 4_000)), ("c", 1, {"V": 4}, 2_300, (2_000, 4_000)),
                ("c", 1, {"V": 5}, 300, (0, 2_000))])
    # c's record of the second window is within a minute of the row a ⋈ b, but not in its window
    assert _out(eng, "J") == [(1, (0, 2_000), 200, {"AV": 1, "BV": 2, "CV": None}),
                              (1, (0, 2_000), 300, {"AV": 1, "BV": 2, "CV": 5})]
    assert eng.catalog.get("J").window == eng.catalog.get("A").window


def test_a_windowed_stream_looks_up_windowed_tables_of_its_key_and_window() -> None:
    eng = _run(_stream("A", SESSION) + _stream("T", SESSION, kind="TABLE") + _stream("U", SESSION, kind="TABLE") +
               "CREATE STREAM j AS SELECT a.id, a.v AS av, t.v AS tv, u.v AS uv FROM a JOIN t ON a.id = t.id "
               "LEFT JOIN u ON t.id = u.id;",
               [("t", 1, {"V": 10}, 50, (0, 50)), ("u", 1, {"V": 20}, 60, (0, 60)), ("u", 1, {"V": 30}, 50, (0, 50)),
                ("a", 1, {"V": 1}, 70, (0, 50)), ("a", 1, {"V": 2}, 80, (0, 60))])
    assert _out(eng, "J") == [(1, (0, 50), 70, {"AV": 1, "TV": 10, "UV": 30})]


def test_a_chain_of_windowed_tables_joins_rows_of_the_same_key_and_window() -> None:
    eng = _run(_stream("T", TUMBLING, kind="TABLE") + _stream("U", TUMBLING, kind="TABLE") +
               _stream("V", TUMBLING, kind="TABLE") +
               "CREATE TABLE j AS SELECT t.id, t.v AS tv, u.v AS uv, v.v AS vv FROM t JOIN u ON t.id = u.id "
               "LEFT JOIN v ON u.id = v.id;",
               [("t", 1, {"V": 1}, 0, (0, 2_000)), ("u", 1, {"V": 2}, 10, (0, 2_000)),
                ("v", 1, {"V": 3}, 20, (2_000, 4_000)), ("v", 1, {"V": 4}, 30, (0, 2_000))])
    assert _out(eng, "J") == [(1, (0, 2_000), 10, {"TV": 1, "UV": 2, "VV": None}),
                              (1, (0, 2_000), 30, {"TV": 1, "UV": 2, "VV": 4})]


def test_a_later_join_of_a_windowed_chain_on_another_column_is_refused_as_in_ksqldb() -> None:
    with pytest.raises(BindError) as error:
        Engine().execute(_stream("A", TUMBLING) + _stream("B", TUMBLING) + _stream("C", TUMBLING) +
                         "CREATE STREAM j AS SELECT * FROM a JOIN b WITHIN 1 MINUTE ON a.id = b.id "
                         "JOIN c WITHIN 1 MINUTE ON a.v = c.id;")
    assert str(error.value).startswith("Implicit repartitioning of windowed sources is not supported.")


def test_group_by_over_a_windowed_join_groups_its_rows_whatever_their_window() -> None:
    eng = _run(_stream("L", TUMBLING) + _stream("R", TUMBLING) +
               "CREATE TABLE j AS SELECT l.v, COUNT(*) AS n FROM l JOIN r WITHIN 1 MINUTE ON l.id = r.id "
               "GROUP BY l.v;",
               [("l", 1, {"V": 7}, 100, (0, 2_000)), ("r", 1, {"V": 8}, 200, (0, 2_000)),
                ("r", 1, {"V": 8}, 2_200, (2_000, 4_000)), ("l", 1, {"V": 7}, 2_300, (2_000, 4_000))])
    # ksqlDB re-keys the join's rows by the GROUP BY: the result is not windowed
    assert _out(eng, "J") == [(7, None, 200, {"N": 1}), (7, None, 2_300, {"N": 2})]
    assert eng.catalog.get("J").window is None


def test_a_windowed_group_by_over_a_chain_of_windowed_streams_windows_the_rows_anew() -> None:
    eng = _run(_stream("A", TUMBLING) + _stream("B", TUMBLING) + _stream("C", TUMBLING) +
               "CREATE TABLE j AS SELECT b.v, COUNT(*) AS n FROM a JOIN b WITHIN 1 MINUTE ON a.id = b.id "
               "JOIN c WITHIN 1 MINUTE ON a.id = c.id WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY b.v;",
               [("a", 1, {"V": 1}, 100, (0, 2_000)), ("b", 1, {"V": 8}, 200, (0, 2_000)),
                ("c", 1, {"V": 9}, 300, (0, 2_000)), ("c", 1, {"V": 9}, 2_300, (2_000, 4_000))])
    assert _out(eng, "J") == [(8, (0, 10_000), 300, {"N": 1})]


def test_a_group_by_over_windowed_tables_joined_groups_their_rows() -> None:
    eng = _run(_stream("T", TUMBLING, kind="TABLE") + _stream("U", TUMBLING, kind="TABLE") +
               "CREATE TABLE j AS SELECT t.id, COUNT(*) AS n FROM t JOIN u ON t.id = u.id GROUP BY t.id;",
               [("t", 1, {"V": 5}, 0, (0, 2_000)), ("u", 1, {"V": 6}, 10, (0, 2_000)),
                ("u", 1, {"V": 6}, 20, (2_000, 4_000)), ("t", 1, {"V": 5}, 30, (2_000, 4_000)),
                ("t", 1, None, 40, (0, 2_000))])
    # a table's GROUP BY always re-keys (ksqlDB's KTable groupBy): by its key, across windows
    assert _out(eng, "J") == [(1, None, 10, {"N": 1}), (1, None, 30, {"N": 2}), (1, None, 40, {"N": 1})]


@pytest.mark.parametrize("query", [
    "SELECT l.v, COUNT(*) AS n FROM l JOIN r WITHIN 1 MINUTE ON l.id = r.id GROUP BY l.id",
    "SELECT r.id, COUNT(*) AS n FROM l JOIN r WITHIN 1 MINUTE ON l.id = r.id GROUP BY r.id",
    "SELECT ROWKEY, COUNT(*) AS n FROM l FULL OUTER JOIN r WITHIN 1 MINUTE ON l.id = r.id GROUP BY ROWKEY",
])
def test_group_by_the_key_of_a_windowed_stream_join_is_refused_as_in_ksqldb(query: str) -> None:
    # ksqlDB's join key column is the first of its viable key columns the projection selects (else the
    # first); grouping by it alone is no re-keying, which ksqlDB's groupByKey refuses for windowed keys
    with pytest.raises(BindError, match=r"^Group by on windowed should always require rekey$"):
        Engine().execute(_stream("L", TUMBLING) + _stream("R", TUMBLING) + f"CREATE TABLE j AS {query};")


def test_a_foreign_key_join_of_windowed_tables_is_refused() -> None:
    with pytest.raises(BindError, match="Foreign-key table-table joins are not supported on windowed tables"):
        Engine().execute(_stream("A", TUMBLING, kind="TABLE") + _stream("B", TUMBLING, kind="TABLE") +
                         "CREATE TABLE j AS SELECT * FROM a JOIN b ON CAST(a.v AS INT) = b.id;")


def test_a_time_windowed_left_source_without_a_window_size_is_refused() -> None:
    # the result's window end is its start plus the left source's window size
    with pytest.raises(BindError, match="L is TUMBLING windowed but declares no WINDOW_SIZE"):
        Engine().execute(_stream("L", "WINDOW_TYPE='TUMBLING'") + _stream("R", "WINDOW_TYPE='TUMBLING'") +
                         "CREATE STREAM j AS SELECT * FROM l JOIN r WITHIN 1 MINUTE ON l.id = r.id;")
