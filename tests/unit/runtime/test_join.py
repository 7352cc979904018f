"""Joins follow ksqlDB: records of both inputs are processed in the order they arrived; a stream
looks up a table as it was at the stream record's arrival; tables join change by change with
tombstones; streams join within a window, null-padding unmatched rows of an outer side."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from produced import (
    EVERY_CHANGE,  # type: ignore[import-not-found]
    Record,  # type: ignore[import-not-found]
)
from produced import run_records as _run  # type: ignore[import-not-found]

from nbstream import Engine
from nbstream.errors import BindError, NbstreamError

ORDERS = ("CREATE STREAM orders (id INT KEY, item VARCHAR, user_id INT) "
          "WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON');")
USERS = "CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR) WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON');"
CARTS = "CREATE TABLE carts (id INT PRIMARY KEY, n INT) WITH (KAFKA_TOPIC='carts', VALUE_FORMAT='JSON');"
LEFT = "CREATE STREAM l (id INT KEY, a VARCHAR) WITH (KAFKA_TOPIC='l', VALUE_FORMAT='JSON');"
RIGHT = "CREATE STREAM r (id INT KEY, b VARCHAR) WITH (KAFKA_TOPIC='r', VALUE_FORMAT='JSON');"




def _run_in_random_batches(sql: str, records: list[Record], rng: random.Random) -> Engine:
    """``_run`` with ``records`` fed in 21 batches cut at random, each run until idle."""
    cuts = sorted(rng.sample(range(1, len(records)), 20))
    eng = _run(sql, records[:cuts[0]])
    for start, end in zip(cuts, [*cuts[1:], len(records)], strict=True):
        _run("", records[start:end], eng)
    return eng


def _out(eng: Engine, topic: str, *columns: str) -> list[tuple[Any, ...]]:
    """(key, timestamp, the values of ``columns``…) per record; a tombstone has no values."""
    return [(r.key, r.timestamp, *((None,) * len(columns) if r.value is None else (r.value[c] for c in columns)))
            for r in eng.consume(topic)]


# -- stream-table --------------------------------------------------------------------------------------


def test_a_stream_record_joins_the_table_row_current_at_its_arrival() -> None:
    eng = _run(ORDERS + USERS + "CREATE STREAM enriched AS SELECT o.user_id, item, name FROM orders o "
               "JOIN users u ON o.user_id = u.id;",
               [("users", 7, {"name": "ann"}, 1), ("orders", 1, {"item": "x", "user_id": 7}, 2),
                ("users", 7, {"name": "bob"}, 3), ("orders", 2, {"item": "y", "user_id": 7}, 4)])
    # the result is keyed by the join key; the second order sees the update that arrived before it
    assert _out(eng, "ENRICHED", "ITEM", "NAME") == [(7, 2, "x", "ann"), (7, 4, "y", "bob")]


def test_a_table_change_arriving_after_a_stream_record_does_not_join_it() -> None:
    eng = _run(ORDERS + USERS + "CREATE STREAM enriched AS SELECT o.user_id, name FROM orders o "
               "JOIN users u ON o.user_id = u.id;",
               [("orders", 1, {"user_id": 7}, 5), ("users", 7, {"name": "ann"}, 1)])
    assert _out(eng, "ENRICHED", "NAME") == []


def test_a_left_stream_table_join_pads_a_missing_table_row_with_nulls() -> None:
    eng = _run(ORDERS + USERS + "CREATE STREAM enriched AS SELECT o.user_id, item, name FROM orders o "
               "LEFT JOIN users u ON o.user_id = u.id;",
               [("users", 7, {"name": "ann"}, 1), ("users", 7, None, 2), ("orders", 1, {"item": "x", "user_id": 7}, 3)])
    # the tombstone deleted user 7 before the order arrived
    assert _out(eng, "ENRICHED", "ITEM", "NAME") == [(7, 3, "x", None)]


def test_the_table_state_outlives_the_batch_that_wrote_it() -> None:
    eng = _run(ORDERS + USERS + "CREATE STREAM enriched AS SELECT o.user_id, name FROM orders o "
               "JOIN users u ON o.user_id = u.id;", [("users", 7, {"name": "ann"}, 1)])
    _run("", [("orders", 1, {"user_id": 7}, 2)], eng)
    assert _out(eng, "ENRICHED", "NAME") == [(7, 2, "ann")]


def test_stream_table_join_state_and_offsets_survive_a_restart(tmp_path: Path) -> None:
    eng = _run(ORDERS + USERS + "CREATE STREAM enriched AS SELECT o.user_id, name FROM orders o "
               "JOIN users u ON o.user_id = u.id;",
               [("users", 7, {"name": "ann"}, 1), ("orders", 1, {"user_id": 7}, 2)],
               Engine(tmp_path, properties=EVERY_CHANGE))
    eng.con.close()
    again = _run("", [("orders", 2, {"user_id": 7}, 3)], Engine(tmp_path, properties=EVERY_CHANGE))
    assert _out(again, "ENRICHED", "NAME") == [(7, 2, "ann"), (7, 3, "ann")]


# -- table-table ---------------------------------------------------------------------------------------


def test_an_inner_table_join_emits_a_row_once_both_sides_exist_and_a_tombstone_when_one_is_deleted() -> None:
    eng = _run(USERS + CARTS + "CREATE TABLE both_ AS SELECT u.id, name, n FROM users u JOIN carts c "
               "ON u.id = c.id;",
               [("users", 1, {"name": "ann"}, 1), ("carts", 1, {"n": 3}, 5), ("carts", 1, None, 7)])
    # the output time is the larger of the two rows' times
    assert _out(eng, "BOTH_", "NAME", "N") == [(1, 5, "ann", 3), (1, 7, None, None)]


def test_a_full_outer_table_join_keeps_rows_of_either_side() -> None:
    eng = _run(USERS + CARTS + "CREATE TABLE any_ AS SELECT ROWKEY, name, n FROM users u FULL OUTER JOIN carts c "
               "ON u.id = c.id;",
               [("carts", 2, {"n": 3}, 1), ("users", 2, {"name": "bob"}, 2), ("carts", 2, None, 3)])
    assert _out(eng, "ANY_", "NAME", "N") == [(2, 1, None, 3), (2, 2, "bob", 3), (2, 3, "bob", None)]


def test_a_where_on_a_table_join_writes_a_tombstone_only_after_a_row_passed() -> None:
    eng = _run(USERS + CARTS + "CREATE TABLE big AS SELECT u.id, n FROM users u JOIN carts c ON u.id = c.id "
               "WHERE c.n > 2;",
               [("users", 1, {"name": "a"}, 1), ("carts", 1, {"n": 1}, 2), ("carts", 1, {"n": 5}, 3),
                ("carts", 1, {"n": 0}, 4)])
    assert _out(eng, "BIG", "N") == [(1, 3, 5), (1, 4, None)]


# -- chains of tables ----------------------------------------------------------------------------------


ADDRS = "CREATE TABLE addrs (id INT PRIMARY KEY, city VARCHAR) WITH (KAFKA_TOPIC='addrs', VALUE_FORMAT='JSON');"
TABLE_CHAIN = USERS + CARTS + ADDRS + ("CREATE TABLE j AS SELECT u.id, name, n, city FROM users u "
                                       "{0} JOIN carts c ON u.id = c.id {1} JOIN addrs a ON u.id = a.id;")


def test_an_inner_chain_of_tables_emits_once_every_table_has_the_key_and_a_tombstone_when_one_deletes_it() -> None:
    eng = _run(TABLE_CHAIN.format("", ""),
               [("users", 1, {"name": "ann"}, 1), ("carts", 1, {"n": 3}, 5), ("addrs", 1, {"city": "x"}, 3),
                ("users", 1, {"name": "bob"}, 4), ("carts", 1, None, 7), ("addrs", 1, None, 8)])
    # the row appears with the last table's row; its time is the largest of the three rows' times; deleting
    # the cart deletes the row; deleting the address after that reaches no row (the carts join holds none)
    assert _out(eng, "J", "NAME", "N", "CITY") == [
        (1, 5, "ann", 3, "x"), (1, 5, "bob", 3, "x"), (1, 7, None, None, None)]


def test_a_left_chain_of_tables_pads_missing_rows_and_follows_each_change() -> None:
    eng = _run(TABLE_CHAIN.format("LEFT", "LEFT"),
               [("carts", 1, {"n": 3}, 1), ("users", 1, {"name": "ann"}, 2), ("addrs", 1, {"city": "x"}, 6),
                ("carts", 1, None, 7), ("users", 1, None, 8), ("addrs", 1, {"city": "y"}, 9)])
    # a cart without its user reaches nothing; a user's deletion is a tombstone; a later address of a
    # deleted user reaches nothing
    assert _out(eng, "J", "NAME", "N", "CITY") == [
        (1, 2, "ann", 3, None), (1, 6, "ann", 3, "x"), (1, 7, "ann", None, "x"), (1, 8, None, None, None)]


def test_an_inner_join_after_a_left_join_of_tables_needs_the_later_table_only() -> None:
    eng = _run(TABLE_CHAIN.format("LEFT", ""),
               [("users", 1, {"name": "ann"}, 1), ("addrs", 1, {"city": "x"}, 2), ("carts", 1, {"n": 3}, 3),
                ("addrs", 1, None, 4), ("carts", 1, None, 5)])
    assert _out(eng, "J", "NAME", "N", "CITY") == [
        (1, 2, "ann", None, "x"), (1, 3, "ann", 3, "x"), (1, 4, None, None, None)]


def test_a_chain_of_tables_keeps_its_state_over_a_restart(tmp_path: Path) -> None:
    eng = _run(TABLE_CHAIN.format("", ""), [("users", 1, {"name": "ann"}, 1), ("carts", 1, {"n": 3}, 2)],
               Engine(tmp_path, properties=EVERY_CHANGE))
    eng.con.close()
    again = _run("", [("addrs", 1, {"city": "x"}, 3), ("users", 1, None, 4)], Engine(tmp_path, properties=EVERY_CHANGE))
    assert _out(again, "J", "NAME", "N", "CITY") == [(1, 3, "ann", 3, "x"), (1, 4, None, None, None)]


def test_a_full_join_after_an_inner_join_of_tables_keeps_the_later_table_alone_and_is_keyed_by_rowkey() -> None:
    eng = _run(TABLE_CHAIN.format("", "FULL").replace("u.id,", "ROWKEY AS id,"),
               [("users", 1, {"name": "ann"}, 0), ("addrs", 1, {"city": "x"}, 2), ("carts", 1, {"n": 3}, 3),
                ("users", 1, None, 4)])
    # the user without a cart is no row of the inner join: the address alone is the row, without the user
    assert _out(eng, "J", "NAME", "N", "CITY") == [
        (1, 2, None, None, "x"), (1, 3, "ann", 3, "x"), (1, 4, None, None, "x")]


def test_a_join_on_the_key_of_a_left_joined_table_matches_by_the_key_even_without_that_table_s_row() -> None:
    # as in ksqlDB, c.id is a key column: the join is on the row's key, which c.id names whether or not
    # the cart exists
    eng = _run(USERS + CARTS + ADDRS + "CREATE TABLE j AS SELECT u.id, name, n, city FROM users u "
               "LEFT JOIN carts c ON u.id = c.id JOIN addrs a ON c.id = a.id;",
               [("users", 1, {"name": "ann"}, 1), ("addrs", 1, {"city": "x"}, 2)])
    assert _out(eng, "J", "NAME", "N", "CITY") == [(1, 2, "ann", None, "x")]


def test_a_foreign_key_join_after_the_first_join_of_a_chain_of_tables_is_rejected_as_in_ksqldb() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(USERS + CARTS + ADDRS + MEMBERS + REGIONS)
    with pytest.raises(BindError, match="foreign-key table-table joins are not supported as part of n-way joins"):
        eng.execute("CREATE TABLE e AS SELECT * FROM users u JOIN members m ON u.id = m.id "
                    "JOIN regions r ON m.region_id = r.id;")


TableRow = tuple[dict[int, dict[str, Any]], int]  # a nested join's row: each table's row by place, and its time


def _joined(kind: str, left: TableRow | None, place: int, right: tuple[dict[str, Any], int] | None) -> TableRow | None:
    """Kafka Streams' KTable-KTable joiner: the row of ``left`` (the joins before) ⋈ table ``place``."""
    if {"INNER": left is None or right is None, "LEFT": left is None, "RIGHT": right is None,
            "FULL": left is None and right is None}[kind]:
        return None
    rows, times = dict(left[0]) if left else {}, [left[1]] if left else []
    if right is not None:
        rows[place] = right[0]
        times.append(right[1])
    return rows, max(times)


def _expected_table_chain(records: list[Record], kinds: tuple[str, str]) -> list[tuple[Any, ...]]:
    """What Kafka Streams' nested table-table joins emit for TABLE_CHAIN, change by change: a change of
    the first table enters the first join as its left input, a later table's as the right input of its
    join, whose left input is the row of the joins before (looked up); an INNER or LEFT join drops a
    right change without a left row, an INNER or RIGHT join a left change without a right row; the
    result goes on as the next join's left input. It emits the joined row, or a tombstone, timed by the
    change and the rows it met."""
    names = ["users", "carts", "addrs"]
    tables: dict[str, dict[int, tuple[dict[str, Any], int]]] = {t: {} for t in names}
    out = []
    for topic, key, value, ts in records:
        if value is None:
            tables[topic].pop(key, None)
        else:
            tables[topic][key] = (value, ts)
        changed = names.index(topic)
        change = None if value is None else ({changed: value}, ts)
        if changed == 0:
            row, time = change, ts
        else:
            left = tables[names[0]].get(key)
            before: TableRow | None = None if left is None else ({0: left[0]}, left[1])
            for place, kind in enumerate(kinds[:changed - 1], start=1):
                before = _joined(kind, before, place, tables[names[place]].get(key))
            if before is None and kinds[changed - 1] in ("INNER", "LEFT"):
                continue
            row = _joined(kinds[changed - 1], before, changed, None if value is None else (value, ts))
            time = max(ts, before[1]) if before else ts
        for place, kind in enumerate(kinds[changed:], start=changed + 1):
            right = tables[names[place]].get(key)
            if right is None and kind in ("INNER", "RIGHT"):
                break
            row = _joined(kind, row, place, right)
            time = max(time, right[1]) if right else time
        else:
            columns = ("name", "n", "city")
            out.append((key, time, *(None if row is None else row[0].get(place, {}).get(column)
                                     for place, column in enumerate(columns))))
    return out


TABLE_KINDS = ["INNER", "LEFT", "RIGHT", "FULL"]


@pytest.mark.parametrize("kinds", [(first, second) for first in TABLE_KINDS for second in TABLE_KINDS])
def test_a_chain_of_tables_over_random_batches_equals_processing_change_by_change(kinds: tuple[str, str]) -> None:
    rng = random.Random(f"table chain {kinds}")
    records: list[Record] = []
    for ts in range(150):
        topic = rng.choice(["users", "carts", "addrs"])
        value = {"users": {"name": f"u{ts}"}, "carts": {"n": ts}, "addrs": {"city": f"c{ts}"}}[topic]
        records.append((topic, rng.randrange(4), None if rng.random() < 0.2 else value, rng.randrange(100)))
    chain = TABLE_CHAIN.replace("u.id,", "ROWKEY AS id," if kinds[1] == "FULL" else "u.id,")
    eng = _run_in_random_batches(chain.format(*kinds), records, rng)
    assert _out(eng, "J", "NAME", "N", "CITY") == _expected_table_chain(records, kinds)


# -- stream-stream -------------------------------------------------------------------------------------


def test_stream_records_join_within_the_window_before_and_after() -> None:
    eng = _run(LEFT + RIGHT + "CREATE STREAM j AS SELECT l.id, a, b FROM l JOIN r WITHIN (1 SECOND, 2 SECONDS) "
               "ON l.id = r.id;",
               [("l", 1, {"a": "x"}, 10_000), ("r", 1, {"b": "early"}, 8_999), ("r", 1, {"b": "before"}, 9_000),
                ("r", 1, {"b": "after"}, 12_000), ("r", 1, {"b": "late"}, 12_001)])
    assert _out(eng, "J", "A", "B") == [(1, 10_000, "x", "before"), (1, 12_000, "x", "after")]


def test_a_right_stream_join_matches_left_records_within_the_window_s_before_and_after_bounds() -> None:
    eng = _run(LEFT + RIGHT + "CREATE STREAM j AS SELECT r.id, a, b FROM l RIGHT JOIN r WITHIN (1 SECOND, 2 SECONDS) "
               "ON l.id = r.id;",
               [("l", 1, {"a": "x"}, 1000), ("r", 1, {"b": "A"}, 2500), ("r", 1, {"b": "B"}, 3500),
                ("r", 1, {"b": "C"}, 100)])
    # r's records from 1 second before l's to 2 seconds after it match it
    assert _out(eng, "J", "A", "B") == [(1, 2500, "x", "A"), (1, 3500, None, "B"), (1, 1000, "x", "C")]


def test_a_left_stream_join_without_grace_emits_the_null_padded_row_at_once() -> None:
    eng = _run(LEFT + RIGHT + "CREATE STREAM j AS SELECT l.id, a, b FROM l LEFT JOIN r WITHIN 10 SECONDS "
               "ON l.id = r.id;",
               [("l", 1, {"a": "x"}, 1), ("r", 1, {"b": "y"}, 2)])
    assert _out(eng, "J", "A", "B") == [(1, 1, "x", None), (1, 2, "x", "y")]


def test_with_a_grace_period_null_padded_rows_wait_for_their_window_to_close() -> None:
    eng = _run(LEFT + RIGHT + "CREATE STREAM j AS SELECT l.id, a, b FROM l LEFT JOIN r WITHIN 10 SECONDS "
               "GRACE PERIOD 5 SECONDS ON l.id = r.id;",
               [("l", 1, {"a": "matched"}, 0), ("l", 2, {"a": "alone"}, 0), ("r", 1, {"b": "y"}, 5_000),
                ("l", 3, {"a": "tick"}, 16_000)])
    # record 2's window closes at 0 + 10 s + 5 s: the record at 16 s emits it; record 1 found a match
    assert _out(eng, "J", "A", "B") == [(1, 5_000, "matched", "y"), (2, 0, "alone", None)]


def test_a_record_older_than_the_window_retention_is_not_kept_for_later_matches() -> None:
    eng = _run(LEFT + RIGHT + "CREATE STREAM j AS SELECT l.id, a, b FROM l JOIN r WITHIN 1 SECOND "
               "GRACE PERIOD 1 SECOND ON l.id = r.id;",
               [("l", 9, {"a": "new"}, 10_000), ("l", 1, {"a": "old"}, 1_000), ("r", 1, {"b": "y"}, 1_000)])
    assert _out(eng, "J", "A", "B") == []


def test_an_inner_window_join_keeps_only_the_records_its_where_lets_join_and_still_moves_time_with_the_others(
        ) -> None:
    sql = (LEFT + RIGHT + "CREATE STREAM j AS SELECT l.id, b FROM l JOIN r WITHIN 1 SECOND GRACE PERIOD 0 SECONDS "
           "ON l.id = r.id WHERE l.a = 'keep' AND (r.b <> 'drop' OR r.b IS NULL) AND l.a <> r.b;")
    records: list[Record] = [
        ("l", 1, {"a": "keep"}, 1_000), ("l", 1, {"a": "skip"}, 1_000), ("r", 1, {"b": "drop"}, 1_000),
        ("r", 1, {"b": "y"}, 1_100), ("r", 1, {}, 1_200), ("l", 2, {"a": "skip"}, 5_000),  # moves stream time
        ("r", 1, {"b": "too late"}, 1_300)]
    at_once = _run(sql, records)
    one_by_one = _run(sql, records[:1])
    for record in records[1:]:
        _run("", [record], one_by_one)
    for eng in (at_once, one_by_one):
        assert _out(eng, "J", "B") == [(1, 1_100, "y")]  # the NULL b fails l.a <> r.b, after the join
        query = next(iter(eng.catalog.queries))
        stored = [eng.con.execute(f'SELECT count(*) FROM "join${query}${side}"').fetchall()[0][0] for side in (0, 1)]
        # left: 'keep' at 1 s is past the store's retention (2 s) once l 2 came at 5 s, which is skipped;
        # right: y, the NULL b and 'too late' (its store's clock is at 1.3 s): not 'drop'
        assert stored == [0, 3], "the records the WHERE skips never enter the window stores"


def test_an_inner_window_join_carries_only_the_columns_it_reads_yet_a_bad_value_in_any_is_an_error() -> None:
    wide = ("CREATE STREAM w (id INT KEY, b VARCHAR, n BIGINT, note VARCHAR) "
            "WITH (KAFKA_TOPIC='w', VALUE_FORMAT='JSON');")
    eng = _run(LEFT + wide + "CREATE STREAM j AS SELECT l.id, a, b FROM l JOIN w WITHIN 1 SECOND ON l.id = w.id;",
               [("w", 1, {"b": "bad n", "n": "not a number", "note": "x"}, 1_000),
                ("w", 1, {"b": "good", "n": 7, "note": "x"}, 1_000), ("l", 1, {"a": "x"}, 1_000)])
    # ksqlDB's deserializer reads every column: the record whose N is not a BIGINT joins nothing
    assert _out(eng, "J", "A", "B") == [(1, 1_000, "x", "good")]
    logged = [r.value["MESSAGE"] for r in eng.consume("KSQL_PROCESSING_LOG")]
    assert len(logged) == 1 and "N" in logged[0]["ERRORMESSAGE"]
    query = next(iter(eng.catalog.queries))
    stored = eng.con.execute(f'SELECT "W_B", "W_N", "W_NOTE" FROM "join${query}$1"').fetchall()
    assert stored == [("good", None, None)], "the window store keeps the columns the join reads"


def test_an_inner_window_join_skips_decoding_unread_strings_which_no_json_value_can_fail() -> None:
    wide = ("CREATE STREAM w (id INT KEY, b VARCHAR, note VARCHAR, more VARCHAR) "
            "WITH (KAFKA_TOPIC='w', VALUE_FORMAT='JSON');")
    eng = _run(LEFT + wide + "CREATE STREAM j AS SELECT l.id, a, b FROM l JOIN w WITHIN 1 SECOND ON l.id = w.id;",
               [("w", 1, {"b": "object note", "note": {"x": [1]}, "more": 5}, 1_000),
                ("w", 1, {"B": "other spelling", "NOTE": None}, 1_000), ("l", 1, {"a": "x"}, 1_000)])
    eng.produce("w", b"not json", key=1, timestamp=1_000)
    eng.produce("w", b'["an array"]', key=1, timestamp=1_000)
    eng.produce("l", {"a": "y"}, key=1, timestamp=1_000)
    eng.run_until_idle()
    assert _out(eng, "J", "A", "B") == [(1, 1_000, "x", "object note"), (1, 1_000, "x", "other spelling"),
                                        (1, 1_000, "y", "object note"), (1, 1_000, "y", "other spelling")]
    assert len(eng.consume("KSQL_PROCESSING_LOG")) == 2  # still errors: not JSON, not an object


def test_side_filters_are_the_where_conjuncts_of_one_side() -> None:
    from nbstream.runtime.join_window import side_filters

    where = ('COALESCE("L_A" = 1, FALSE) AND ("R_B" > 2 OR "__jk" = 3) AND "L_A" < "R_B" AND lower("L_S") = \'x\'')
    left, right = side_filters(where, [["L_A", "L_S"], ["R_B"]])
    assert left == "coalesce(TRY((COALESCE(\"L_A\" = 1, FALSE)) AND (LOWER(\"L_S\") = 'x')), TRUE)"
    assert right == "coalesce(TRY((\"R_B\" > 2 OR \"__jk\" = 3)), TRUE)"
    assert side_filters(None, [["L_A"], ["R_B"]]) == ["TRUE", "TRUE"]
    assert side_filters('"L_A" < "R_B"', [["L_A"], ["R_B"]]) == ["TRUE", "TRUE"]


# -- planning ------------------------------------------------------------------------------------------


def test_select_star_names_columns_by_source_alias_and_keys_by_the_left_join_column() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(LEFT + RIGHT + "CREATE STREAM j AS SELECT * FROM l JOIN r WITHIN 1 SECOND ON l.id = r.id;")
    schema = eng.catalog.get("J").schema
    assert [(c.name, c.role) for c in schema.columns] == [
        ("L_ID", "KEY"), ("L_A", "VALUE"), ("R_ID", "VALUE"), ("R_B", "VALUE")]


def test_the_projection_must_include_the_join_key() -> None:
    with pytest.raises(BindError, match=r"must include the join expressions L\.ID or R\.ID"):
        Engine().execute(LEFT + RIGHT + "CREATE STREAM j AS SELECT a, b FROM l JOIN r WITHIN 1 SECOND "
                         "ON l.id = r.id;")


def test_a_stream_stream_join_needs_a_within_clause() -> None:
    with pytest.raises(BindError, match="WITHIN clause"):
        Engine().execute(LEFT + RIGHT + "CREATE STREAM j AS SELECT l.id, a, b FROM l JOIN r ON l.id = r.id;")


def test_join_keys_of_different_types_are_rejected() -> None:
    with pytest.raises(BindError, match="types don't match"):
        Engine().execute(LEFT + RIGHT + "CREATE STREAM j AS SELECT l.id, b FROM l JOIN r WITHIN 1 SECOND "
                         "ON l.id = r.b;")


def test_an_ambiguous_unqualified_column_is_rejected() -> None:
    with pytest.raises(NbstreamError, match="ambiguous"):
        Engine().execute(LEFT + RIGHT + "CREATE STREAM j AS SELECT id, a FROM l JOIN r WITHIN 1 SECOND "
                         "ON l.id = r.id;")


def test_a_windowed_source_cannot_join_a_non_windowed_one() -> None:
    with pytest.raises(BindError, match="Can not join windowed source to non-windowed source"):
        Engine().execute("CREATE STREAM w (id INT KEY, v INT) WITH (KAFKA_TOPIC='w', VALUE_FORMAT='JSON', "
                         "WINDOW_TYPE='SESSION');" + RIGHT +
                         "CREATE STREAM j AS SELECT * FROM w JOIN r WITHIN 1 SECOND ON w.id = r.id;")


def test_sources_joined_on_their_keys_must_have_as_many_partitions() -> None:
    with pytest.raises(BindError, match="number of partitions don't match"):
        Engine().execute(LEFT + "CREATE STREAM r (id INT KEY, b VARCHAR) WITH (KAFKA_TOPIC='r', VALUE_FORMAT='JSON', "
                         "PARTITIONS=2);"
                         "CREATE STREAM j AS SELECT l.id, a, b FROM l JOIN r WITHIN 1 SECOND ON l.id = r.id;")


@pytest.mark.parametrize("stream", [
    "CREATE STREAM s (id INT KEY, x INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON');",
    "CREATE TABLE s (id INT PRIMARY KEY, x INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON');",
])
def test_each_join_of_a_chain_on_keys_needs_as_many_partitions_as_the_source_joined_before(stream: str) -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(stream + USERS + "CREATE TABLE wide (id INT PRIMARY KEY, w INT) WITH (KAFKA_TOPIC='wide', "
                "VALUE_FORMAT='JSON', PARTITIONS=2);")
    kind = "TABLE" if stream.startswith("CREATE TABLE") else "STREAM"
    with pytest.raises(BindError, match=r"Can't join `S` with `WIDE` since the number of partitions don't match. "
                                        r"`S` partitions = 1; `WIDE` partitions = 2"):
        eng.execute(f"CREATE {kind} j AS SELECT s.id, x, name, w FROM s JOIN users u ON s.id = u.id "
                    "JOIN wide ON s.id = wide.id;")


def test_a_windowed_count_over_a_stream_table_join_groups_by_the_table_row_current_at_arrival() -> None:
    eng = _run(ORDERS + "CREATE TABLE regions (id INT PRIMARY KEY, region VARCHAR) WITH (KAFKA_TOPIC='regions', "
               "VALUE_FORMAT='JSON');"
               "CREATE TABLE per_region AS SELECT region, COUNT(*) AS c FROM orders o JOIN regions r "
               "ON o.user_id = r.id WINDOW TUMBLING (SIZE 1 SECOND) GROUP BY region;",
               [("regions", 7, {"region": "eu"}, 1), ("orders", 1, {"user_id": 7}, 2), ("orders", 2, {"user_id": 7}, 3),
                ("regions", 7, {"region": "us"}, 4), ("orders", 3, {"user_id": 7}, 1_500)])
    assert [(r.key, r.window, r.value["C"]) for r in eng.consume("PER_REGION")] == [
        ("eu", (0, 1_000), 1), ("eu", (0, 1_000), 2), ("us", (1_000, 2_000), 1)]


def test_a_group_by_over_a_table_join_moves_a_changed_row_between_groups_and_retracts_a_deleted_one() -> None:
    eng = _run(USERS + CARTS + "CREATE TABLE per_name AS SELECT name, COUNT(*) AS c, SUM(n) AS total FROM users u "
               "JOIN carts c ON u.id = c.id GROUP BY name;",
               [("users", 1, {"name": "ann"}, 1), ("carts", 1, {"n": 3}, 2), ("users", 2, {"name": "ann"}, 3),
                ("carts", 2, {"n": 4}, 4), ("carts", 1, {"n": 5}, 5), ("users", 1, {"name": "bob"}, 6),
                ("carts", 2, None, 7)])
    # a cart's new n replaces its old one in its group (one output); user 1's new name takes its row
    # out of ann's group, then into bob's; deleting cart 2 takes its row out of ann's group
    assert _out(eng, "PER_NAME", "C", "TOTAL") == [
        ("ann", 2, 1, 3), ("ann", 4, 2, 7), ("ann", 5, 2, 9), ("ann", 6, 1, 4), ("bob", 6, 1, 5),
        ("ann", 7, 0, 0)]


def test_a_group_by_over_a_foreign_key_join_moves_every_row_referencing_a_changed_right_row() -> None:
    eng = _run(MEMBERS + REGIONS + "CREATE TABLE per_region AS SELECT rname, COUNT(*) AS c FROM members m "
               "JOIN regions r ON m.region_id = r.id GROUP BY rname;",
               [("regions", 1, {"rname": "eu"}, 1), ("members", 7, {"name": "a", "region_id": 1}, 2),
                ("members", 8, {"name": "b", "region_id": 1}, 3), ("regions", 1, {"rname": "EU"}, 4),
                ("members", 7, {"name": "a", "region_id": 2}, 5)])
    # the region's new name moves both its members' rows, one after the other (in the members' key
    # order); member 7 moving to a missing region leaves the inner join
    assert _out(eng, "PER_REGION", "C") == [
        ("eu", 2, 1), ("eu", 3, 2), ("eu", 4, 1), ("EU", 4, 1), ("eu", 4, 0), ("EU", 4, 2), ("EU", 5, 1)]


def test_a_group_by_over_a_chain_after_a_foreign_key_join_retracts_the_rows_a_right_row_s_deletion_ends() -> None:
    eng = _run(MEMBERS + REGIONS + ADDRS + "CREATE TABLE per_city AS SELECT city, COUNT(*) AS n FROM members m "
               "JOIN regions r ON m.region_id = r.id JOIN addrs a ON m.id = a.id GROUP BY city;",
               [("regions", 1, {"rname": "eu"}, 1), ("members", 7, {"name": "a", "region_id": 1}, 2),
                ("addrs", 7, {"city": "x"}, 3), ("members", 8, {"name": "b", "region_id": 1}, 4),
                ("addrs", 8, {"city": "y"}, 5), ("regions", 1, None, 6)])
    # the region's deletion ends both members' joined rows: each leaves its city's count
    assert _out(eng, "PER_CITY", "N") == [("x", 3, 1), ("y", 5, 1), ("x", 6, 0), ("y", 6, 0)]


def test_a_group_by_over_a_table_join_retracts_a_row_that_stops_passing_where() -> None:
    eng = _run(USERS + CARTS + "CREATE TABLE per_name AS SELECT name, SUM(n) AS total FROM users u "
               "LEFT JOIN carts c ON u.id = c.id WHERE n IS NULL OR n < 10 GROUP BY name;",
               [("users", 1, {"name": "ann"}, 1), ("carts", 1, {"n": 3}, 2), ("carts", 1, {"n": 30}, 3),
                ("carts", 1, {"n": 4}, 4)])
    assert _out(eng, "PER_NAME", "TOTAL") == [("ann", 1, 0), ("ann", 2, 3), ("ann", 3, 0), ("ann", 4, 4)]


@pytest.mark.parametrize("kinds", [("INNER", "INNER"), ("LEFT", "FULL"), ("RIGHT", "LEFT")])
def test_a_group_by_over_a_chain_of_tables_equals_aggregating_the_joined_table(kinds: tuple[str, str]) -> None:
    rng = random.Random(f"aggregated table chain {kinds}")
    records: list[Record] = []
    for ts in range(120):
        topic = rng.choice(["users", "carts", "addrs"])
        value = {"users": {"name": f"u{ts % 3}"}, "carts": {"n": ts}, "addrs": {"city": f"c{ts % 2}"}}[topic]
        records.append((topic, rng.randrange(4), None if rng.random() < 0.2 else value, ts))
    joins = f"FROM users u {kinds[0]} JOIN carts c ON u.id = c.id {kinds[1]} JOIN addrs a ON u.id = a.id"
    key = "ROWKEY AS id" if kinds[1] == "FULL" else "u.id"
    aggregate = "SELECT city, COUNT(*) AS k, SUM(n) AS total {} GROUP BY city;"
    direct = _run_in_random_batches(USERS + CARTS + ADDRS + "CREATE TABLE agg AS " + aggregate.format(joins),
                                    records, rng)
    through_table = _run(USERS + CARTS + ADDRS + f"CREATE TABLE j AS SELECT {key}, n, city {joins}; "
                         "CREATE TABLE agg AS " + aggregate.format("FROM j"), records)
    # the aggregate folds the join's changes as a TABLE's: each retracts its key's previous row
    assert _out(direct, "AGG", "K", "TOTAL") == _out(through_table, "AGG", "K", "TOTAL")


def test_a_foreign_key_join_updates_every_left_row_referencing_a_changed_right_row() -> None:
    eng = _run("CREATE TABLE items (id INT PRIMARY KEY, owner INT) WITH (KAFKA_TOPIC='items', VALUE_FORMAT='JSON');"
               + USERS + "CREATE TABLE owned AS SELECT i.id, name FROM items i JOIN users u ON i.owner = u.id;",
               [("users", 7, {"name": "ann"}, 1), ("items", 1, {"owner": 7}, 2), ("items", 2, {"owner": 7}, 3),
                ("users", 7, {"name": "bob"}, 4)])
    # keyed by the left table's key; the user's update reaches both items, in key order
    assert _out(eng, "OWNED", "NAME") == [(1, 2, "ann"), (2, 3, "ann"), (1, 4, "bob"), (2, 4, "bob")]


@pytest.mark.parametrize("kinds", [("INNER", "LEFT"), ("LEFT", "INNER"), ("LEFT", "FULL")])
def test_a_chain_of_tables_after_a_foreign_key_join_equals_joining_the_foreign_key_join_s_table(
        kinds: tuple[str, str]) -> None:
    rng = random.Random(f"foreign-key chain {kinds}")
    records: list[Record] = []
    for ts in range(90):
        topic = rng.choice(["members", "regions", "addrs"])
        value = {"members": {"name": f"m{ts}", "region_id": rng.randrange(3)}, "regions": {"rname": f"r{ts}"},
                 "addrs": {"city": f"c{ts}"}}[topic]
        records.append((topic, rng.randrange(4), None if rng.random() < 0.2 else value, rng.randrange(100)))
    key = "ROWKEY AS id" if kinds[1] == "FULL" else "m.id"
    fk_join = f"FROM members m {kinds[0]} JOIN regions r ON m.region_id = r.id"
    direct = _run_in_random_batches(MEMBERS + REGIONS + ADDRS + f"CREATE TABLE j AS SELECT {key}, name, rname, city "
                                    f"{fk_join} {kinds[1]} JOIN addrs a ON m.id = a.id;", records, rng)
    staged = _run(MEMBERS + REGIONS + ADDRS + f"CREATE TABLE mr AS SELECT m.id AS id, name, rname {fk_join}; "
                  f"CREATE TABLE j AS SELECT {key.replace('m.', 'mr.')}, name, rname, city FROM mr "
                  f"{kinds[1]} JOIN addrs a ON mr.id = a.id;", [])
    for record in records:  # one at a time: the foreign-key join's change reaches the next join at once
        _run("", [record], staged)
    # the foreign-key join is the first input of the chain: its changes go on into the next join, and
    # an address change meets the members row and its region current at its arrival
    assert _out(direct, "J", "NAME", "RNAME", "CITY") == _out(staged, "J", "NAME", "RNAME", "CITY")


def test_a_chain_of_tables_after_a_foreign_key_join_keeps_the_join_s_rows_over_a_restart(tmp_path: Path) -> None:
    chain = ("CREATE TABLE j AS SELECT m.id, name, rname, city FROM members m JOIN regions r ON m.region_id = r.id "
             "JOIN addrs a ON m.id = a.id;")
    eng = _run(MEMBERS + REGIONS + ADDRS + chain,
               [("regions", 1, {"rname": "eu"}, 1), ("members", 7, {"name": "ann", "region_id": 1}, 2)],
               Engine(tmp_path, properties=EVERY_CHANGE))
    eng.con.close()
    again = _run("", [("addrs", 7, {"city": "x"}, 3)], Engine(tmp_path, properties=EVERY_CHANGE))
    assert _out(again, "J", "NAME", "RNAME", "CITY") == [(7, 3, "ann", "eu", "x")]


SHELVES = ("CREATE TABLE shelves (room INT PRIMARY KEY, slot INT PRIMARY KEY, owner INT) "
           "WITH (KAFKA_TOPIC='shelves', FORMAT='JSON');")


def test_a_foreign_key_join_of_a_table_with_two_key_columns_is_keyed_by_both() -> None:
    eng = _run(SHELVES + USERS + "CREATE TABLE owned AS SELECT s.room, s.slot, name FROM shelves s "
               "JOIN users u ON s.owner = u.id WHERE name <> 'cy';",
               [("users", 7, {"name": "ann"}, 1), ("shelves", {"ROOM": 1, "SLOT": 2}, {"OWNER": 7}, 2),
                ("shelves", {"ROOM": 1, "SLOT": 1}, {"OWNER": 7}, 3), ("users", 7, {"name": "cy"}, 4),
                ("users", 7, {"name": "bob"}, 5), ("shelves", {"ROOM": 1, "SLOT": 2}, None, 6)])
    # the user's updates reach both shelves, in key order; the WHERE turns them into tombstones, each
    # shelf's own (the result's key is both key columns)
    assert _out(eng, "OWNED", "NAME") == [
        ({"ROOM": 1, "SLOT": 2}, 2, "ann"), ({"ROOM": 1, "SLOT": 1}, 3, "ann"),
        ({"ROOM": 1, "SLOT": 1}, 4, None), ({"ROOM": 1, "SLOT": 2}, 4, None),
        ({"ROOM": 1, "SLOT": 1}, 5, "bob"), ({"ROOM": 1, "SLOT": 2}, 5, "bob"), ({"ROOM": 1, "SLOT": 2}, 6, None)]


@pytest.mark.parametrize(("projection", "missing"), [
    ("s.room, name", "Primary key column missing in projection. For foreign-key table-table joins, the projection "
     "must include all primary key columns from the left input table (`S`). Missing column: `SLOT`."),
    ("owner, name", "Primary key columns missing in projection. For foreign-key table-table joins, the projection "
     "must include all primary key columns from the left input table (`S`). Missing columns: `ROOM`, `SLOT`."),
])
def test_a_foreign_key_join_must_project_every_key_column_of_the_left_table(projection: str, missing: str) -> None:
    with pytest.raises(BindError) as error:
        Engine().execute(SHELVES + USERS + f"CREATE TABLE owned AS SELECT {projection} FROM shelves s "
                         "JOIN users u ON s.owner = u.id;")
    assert str(error.value) == missing


def test_stream_stream_window_state_survives_a_restart(tmp_path: Path) -> None:
    eng = _run(LEFT + RIGHT + "CREATE STREAM j AS SELECT l.id, a, b FROM l JOIN r WITHIN 10 SECONDS ON l.id = r.id;",
               [("l", 1, {"a": "x"}, 1_000)], Engine(tmp_path, properties=EVERY_CHANGE))
    eng.con.close()
    again = _run("", [("r", 1, {"b": "y"}, 2_000)], Engine(tmp_path, properties=EVERY_CHANGE))
    assert _out(again, "J", "A", "B") == [(1, 2_000, "x", "y")]


# -- multi-way: a stream joined to two or more tables ------------------------------------------------

MEMBERS = ("CREATE TABLE members (id INT PRIMARY KEY, name VARCHAR, region_id INT) "
           "WITH (KAFKA_TOPIC='members', VALUE_FORMAT='JSON');")
REGIONS = "CREATE TABLE regions (id INT PRIMARY KEY, rname VARCHAR) WITH (KAFKA_TOPIC='regions', VALUE_FORMAT='JSON');"
THREE_WAY = ORDERS + MEMBERS + REGIONS + ("CREATE STREAM enriched AS SELECT m.region_id, item, name, rname "
                                          "FROM orders o {0} JOIN members m ON o.user_id = m.id "
                                          "{1} JOIN regions r ON m.region_id = r.id;")
ANN_IN_EU: list[Record] = [("regions", 1, {"rname": "eu"}, 1), ("members", 7, {"name": "ann", "region_id": 1}, 2)]


def test_a_stream_joined_to_two_tables_is_keyed_by_the_last_join_expression() -> None:
    eng = _run(THREE_WAY.format("", ""), [*ANN_IN_EU, ("orders", 1, {"item": "x", "user_id": 7}, 5),
                                          ("orders", 2, {"item": "y", "user_id": 8}, 6)])
    # order 2's member does not exist: an inner join drops it
    assert _out(eng, "ENRICHED", "ITEM", "NAME", "RNAME") == [(1, 5, "x", "ann", "eu")]


def test_a_left_multi_way_join_pads_each_missing_table_row_with_nulls() -> None:
    eng = _run(THREE_WAY.format("LEFT", "LEFT"),
               [*ANN_IN_EU, ("members", 8, {"name": "bob", "region_id": 2}, 3),
                ("orders", 1, {"item": "x", "user_id": 7}, 5), ("orders", 2, {"item": "y", "user_id": 8}, 6),
                ("orders", 3, {"item": "z", "user_id": 9}, 7)])
    # bob's region does not exist; member 9 does not exist (so neither does its region key)
    assert _out(eng, "ENRICHED", "ITEM", "NAME", "RNAME") == [
        (1, 5, "x", "ann", "eu"), (2, 6, "y", "bob", None), (None, 7, "z", None, None)]


def test_an_inner_join_after_a_left_join_drops_records_the_later_table_does_not_match() -> None:
    eng = _run(THREE_WAY.format("LEFT", ""), [*ANN_IN_EU, ("orders", 1, {"item": "x", "user_id": 7}, 5),
                                              ("orders", 2, {"item": "y", "user_id": 9}, 6)])
    assert _out(eng, "ENRICHED", "ITEM", "RNAME") == [(1, 5, "x", "eu")]


def test_a_change_of_a_later_table_between_stream_records_is_seen_by_later_records_only() -> None:
    eng = _run(THREE_WAY.format("", "LEFT"),
               [*ANN_IN_EU, ("orders", 1, {"item": "x", "user_id": 7}, 5), ("regions", 1, {"rname": "EU"}, 6),
                ("orders", 2, {"item": "y", "user_id": 7}, 7), ("members", 7, {"name": "ann", "region_id": 2}, 8),
                ("orders", 3, {"item": "z", "user_id": 7}, 9), ("regions", 2, {"rname": "us"}, 10)])
    # each stream record sees every table as it was at its arrival; the output time is the stream record's
    assert _out(eng, "ENRICHED", "ITEM", "RNAME") == [(1, 5, "x", "eu"), (1, 7, "y", "EU"), (2, 9, "z", None)]


def test_table_changes_of_earlier_batches_and_of_the_batch_before_its_stream_records_are_seen() -> None:
    eng = _run(THREE_WAY.format("", ""), ANN_IN_EU)
    _run("", [("regions", 1, {"rname": "EU"}, 3), ("orders", 1, {"item": "x", "user_id": 7}, 5)], eng)
    assert _out(eng, "ENRICHED", "ITEM", "NAME", "RNAME") == [(1, 5, "x", "ann", "EU")]


def test_every_join_may_read_the_stream_and_the_key_is_any_column_equal_to_the_last_join_key() -> None:
    eng = _run(ORDERS + USERS + CARTS + "CREATE STREAM enriched AS SELECT c.id AS cart, name, n FROM orders o "
               "JOIN users u ON o.user_id = u.id JOIN carts c ON o.user_id = c.id;",
               [("users", 7, {"name": "ann"}, 1), ("carts", 7, {"n": 3}, 2), ("orders", 1, {"user_id": 7}, 5)])
    assert _out(eng, "ENRICHED", "NAME", "N") == [(7, 5, "ann", 3)]
    assert [c.name for c in eng.catalog.get("ENRICHED").schema.key] == ["CART"]


def test_select_star_over_a_multi_way_join_names_every_column_by_its_source_alias() -> None:
    eng = _run(THREE_WAY.format("", "").replace("m.region_id, item, name, rname", "*"),
               [*ANN_IN_EU, ("orders", 1, {"item": "x", "user_id": 7}, 5)])
    [row] = eng.consume("ENRICHED")
    assert row.value == {"O_ID": 1, "O_ITEM": "x", "O_USER_ID": 7, "M_ID": 7, "M_NAME": "ann", "R_ID": 1,
                         "R_RNAME": "eu"}


def test_multi_way_join_state_and_offsets_survive_a_restart(tmp_path: Path) -> None:
    eng = _run(THREE_WAY.format("", ""), [*ANN_IN_EU, ("orders", 1, {"item": "x", "user_id": 7}, 5)],
               Engine(tmp_path, properties=EVERY_CHANGE))
    eng.con.close()
    again = _run("", [("regions", 1, {"rname": "EU"}, 6), ("orders", 2, {"item": "y", "user_id": 7}, 7)],
                 Engine(tmp_path, properties=EVERY_CHANGE))
    assert _out(again, "ENRICHED", "ITEM", "RNAME") == [(1, 5, "x", "eu"), (1, 7, "y", "EU")]


def test_a_count_over_a_multi_way_join_groups_by_the_rows_current_at_arrival() -> None:
    eng = _run(ORDERS + MEMBERS + REGIONS + "CREATE TABLE per_region AS SELECT rname, COUNT(*) AS n FROM orders o "
               "JOIN members m ON o.user_id = m.id JOIN regions r ON m.region_id = r.id GROUP BY rname;",
               [*ANN_IN_EU, ("orders", 1, {"user_id": 7}, 5), ("regions", 1, {"rname": "EU"}, 6),
                ("orders", 2, {"user_id": 7}, 7), ("orders", 3, {"user_id": 7}, 8)])
    assert _out(eng, "PER_REGION", "N") == [("eu", 5, 1), ("EU", 7, 1), ("EU", 8, 2)]


def test_a_join_must_compare_the_joined_table_with_a_source_joined_before_it() -> None:
    with pytest.raises(BindError, match="a JOIN of REGIONS must compare a column of R"):
        Engine().execute(ORDERS + MEMBERS + REGIONS + "CREATE STREAM e AS SELECT o.user_id, name FROM orders o "
                         "JOIN members m ON o.user_id = m.id JOIN regions r ON o.id = m.id;")


def test_a_bad_record_of_a_later_table_is_logged_with_its_topic_and_the_join_goes_on() -> None:
    eng = _run(THREE_WAY.format("", ""), [*ANN_IN_EU, ("regions", 1, "not an object", 3),
                                          ("orders", 1, {"item": "x", "user_id": 7}, 5)])
    assert _out(eng, "ENRICHED", "ITEM", "RNAME") == [(1, 5, "x", "eu")]
    [logged] = [r.value for r in eng.consume("KSQL_PROCESSING_LOG") if r.value["LOGGER"].startswith("CSAS_ENRICHED")]
    assert (logged["MESSAGE"]["TOPIC"], logged["MESSAGE"]["OFFSET"]) == ("regions", 1)


def test_the_rows_of_a_stream_stream_join_look_up_a_table_as_of_the_record_that_produced_them() -> None:
    eng = _run(ORDERS + MEMBERS + LEFT + "CREATE STREAM e AS SELECT o.user_id, a, item, name FROM orders o "
               "LEFT JOIN l WITHIN 1 SECOND ON o.id = l.id JOIN members m ON o.user_id = m.id;",
               [("members", 7, {"name": "ann", "region_id": 1}, 0), ("orders", 1, {"item": "x", "user_id": 7}, 1000),
                ("members", 7, {"name": "bob", "region_id": 1}, 1100), ("l", 1, {"a": "A"}, 1500),
                ("members", 7, None, 1800), ("l", 1, {"a": "B"}, 1900)])
    # the null-padded row goes out when the order arrives (no grace period), the match when l's record
    # does; the output time is the stream-stream join's (the later record's); the inner table join
    # drops the last match, made after member 7 was deleted
    assert _out(eng, "E", "A", "ITEM", "NAME") == [(7, 1000, None, "x", "ann"), (7, 1500, "A", "x", "bob")]


def test_the_rows_of_a_full_stream_stream_join_look_up_a_table_by_the_columns_they_have() -> None:
    eng = _run(ORDERS + MEMBERS + LEFT + "CREATE STREAM e AS SELECT o.user_id, a, item, name FROM orders o "
               "FULL OUTER JOIN l WITHIN 1 SECOND ON o.id = l.id LEFT JOIN members m ON o.user_id = m.id;",
               [("members", 7, {"name": "ann", "region_id": 1}, 0), ("l", 1, {"a": "A"}, 1000),
                ("orders", 1, {"item": "x", "user_id": 7}, 1500), ("l", 2, {"a": "B"}, 1600)])
    # l's records without an order are null-padded at once (no grace period) and find no member: the
    # ON reads the order's user_id
    assert _out(eng, "E", "A", "ITEM", "NAME") == [
        (None, 1000, "A", None, None), (7, 1500, "A", "x", "ann"), (None, 1600, "B", None, None)]


def test_a_right_stream_stream_join_before_a_table_join_keeps_its_window_bounds() -> None:
    eng = _run(ORDERS + MEMBERS + LEFT + "CREATE STREAM e AS SELECT o.user_id, a, item, name FROM orders o "
               "RIGHT JOIN l WITHIN (1 SECOND, 2 SECONDS) ON o.id = l.id LEFT JOIN members m ON o.user_id = m.id;",
               [("members", 7, {"name": "ann", "region_id": 1}, 0), ("orders", 1, {"item": "x", "user_id": 7}, 1000),
                ("l", 1, {"a": "A"}, 2500), ("l", 1, {"a": "B"}, 3500), ("l", 1, {"a": "C"}, 100)])
    # an order matches l's records from 1 second before it to 2 seconds after it; an order alone is no row
    assert _out(eng, "E", "A", "ITEM", "NAME") == [
        (7, 2500, "A", "x", "ann"), (None, 3500, "B", None, None), (7, 1000, "C", "x", "ann")]


def _expected_three_way(records: list[Record], kinds: tuple[str, str]) -> list[tuple[Any, ...]]:
    """What ksqlDB emits for THREE_WAY, record by record: each order sees the tables as they are."""
    tables: dict[str, dict[int, dict[str, Any]]] = {"members": {}, "regions": {}}
    out = []
    for topic, key, value, ts in records:
        if topic != "orders":
            if value is None:
                tables[topic].pop(key, None)
            else:
                tables[topic][key] = value
            continue
        member = tables["members"].get(value["user_id"])
        region_id = None if member is None else member["region_id"]
        region = tables["regions"].get(region_id) if region_id is not None else None
        if (member is None and kinds[0] == "") or (region is None and kinds[1] == ""):
            continue
        out.append((region_id, ts, value["item"], member and member["name"], region and region["rname"]))
    return out


@pytest.mark.parametrize("kinds", [("", ""), ("LEFT", ""), ("", "LEFT"), ("LEFT", "LEFT")])
def test_a_multi_way_join_over_random_batches_equals_processing_record_by_record(kinds: tuple[str, str]) -> None:
    rng = random.Random(f"three-way {kinds}")
    records: list[Record] = []
    for ts in range(120):
        topic = rng.choice(["orders", "orders", "members", "regions"])
        key = rng.randrange(4)
        value: dict[str, Any] | None = {
            "orders": {"item": f"i{ts}", "user_id": key},
            "members": {"name": f"m{ts}", "region_id": rng.randrange(3)},
            "regions": {"rname": f"r{ts}"}}[topic]
        records.append((topic, ts if topic == "orders" else key, None if rng.random() < 0.15 and topic != "orders"
                        else value, ts))
    eng = _run_in_random_batches(THREE_WAY.format(*kinds), records, rng)
    assert _out(eng, "ENRICHED", "ITEM", "NAME", "RNAME") == _expected_three_way(records, kinds)


def test_a_stream_stream_table_join_keeps_window_and_table_state_over_a_restart(tmp_path: Path) -> None:
    sql = (ORDERS + MEMBERS + LEFT + "CREATE STREAM e AS SELECT o.user_id, a, name FROM orders o "
           "JOIN l WITHIN 1 SECOND ON o.id = l.id JOIN members m ON o.user_id = m.id;")
    eng = _run(sql, [("members", 7, {"name": "ann", "region_id": 1}, 0), ("orders", 1, {"user_id": 7}, 1000)],
               Engine(tmp_path, properties=EVERY_CHANGE))
    eng.con.close()
    again = _run("", [("l", 1, {"a": "A"}, 1500)], Engine(tmp_path, properties=EVERY_CHANGE))
    assert _out(again, "E", "A", "NAME") == [(7, 1500, "A", "ann")]


def test_a_bad_stream_record_in_a_batch_without_table_changes_is_logged_and_the_join_goes_on() -> None:
    eng = _run(THREE_WAY.format("", ""), ANN_IN_EU)  # the tables' changes: a batch of their own
    _run("", [("orders", 1, "not an object", 5), ("orders", 2, {"item": "x", "user_id": 7}, 6)], eng)
    assert _out(eng, "ENRICHED", "ITEM", "RNAME") == [(1, 6, "x", "eu")]
    [logged] = [r.value for r in eng.consume("KSQL_PROCESSING_LOG") if r.value["LOGGER"].startswith("CSAS_ENRICHED")]
    assert (logged["MESSAGE"]["TOPIC"], logged["MESSAGE"]["OFFSET"]) == ("orders", 0)
