"""Multi-way joins with more than one stream, as ksqlDB runs them: left-deep, ((a ⋈ b) ⋈ c) …, each
stream-stream join with its own WITHIN (and GRACE PERIOD) and its own window stores; the rows of the
joins before are the next join's left input, each with its own time (a stream-stream join's: the
later of its two records'), handed on as soon as the record that produced them arrives.

The model-based checks over random input are in ``tests/integration/test_model_properties.py``;
these are the small cases worked out by hand."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from notebook_files import write_notebook  # type: ignore[import-not-found]
from produced import (
    EVERY_CHANGE,  # type: ignore[import-not-found]
    Record,  # type: ignore[import-not-found]
)
from produced import run_records as _run  # type: ignore[import-not-found]

from nbstream import Engine
from nbstream.cli import main
from nbstream.errors import BindError, PlanError
from nbstream.export.job import load_job
from nbstream.export.runner import STATE_PLANS, EventLog, RunOptions, prepare
from nbstream.plan.join import JoinPlan
from nbstream.plan.serde import plan_from_json, plan_to_json

STREAMS = "".join(f"CREATE STREAM {s} (k VARCHAR KEY, v INT) WITH (KAFKA_TOPIC='{s}', VALUE_FORMAT='JSON');"
                  for s in ("a", "b", "c", "d"))
TABLE = "CREATE TABLE t (k VARCHAR PRIMARY KEY, v INT) WITH (KAFKA_TOPIC='t', VALUE_FORMAT='JSON');"




def _out(eng: Engine, topic: str = "J") -> list[tuple[Any, ...]]:
    """(key, timestamp, the record's values…) per record written."""
    return [(r.key, r.timestamp, *r.value.values()) for r in eng.consume(topic)]


def _three(first: str, second: str, within: str, key: str = "a.k") -> str:
    """``a <first> b WITHIN 10 ms ON a.k = b.k <second> c WITHIN <within> ON a.k = c.k``."""
    return (STREAMS + f"CREATE STREAM j AS SELECT {key} AS k, a.v AS av, b.v AS bv, c.v AS cv FROM a {first} "
            f"b WITHIN 10 MILLISECONDS ON a.k = b.k {second} c WITHIN {within} ON a.k = c.k;")


def test_the_third_stream_joins_the_rows_of_the_first_join_within_its_own_window() -> None:
    eng = _run(_three("JOIN", "JOIN", "5 MILLISECONDS"),
               [("a", "x", {"V": 1}, 10), ("b", "x", {"V": 2}, 18), ("c", "x", {"V": 3}, 22),
                ("c", "x", {"V": 4}, 24)])
    # a ⋈ b is a row of time 18 (the later record's): c at 22, 12 ms after a's record, is within 5 ms
    # of the row and joins it; c at 24 is not
    assert _out(eng) == [("x", 22, 1, 2, 3)]


def test_each_outer_join_of_a_chain_pads_its_own_unmatched_rows() -> None:
    eng = _run(_three("LEFT JOIN", "LEFT JOIN", "5 MILLISECONDS"),
               [("a", "x", {"V": 1}, 10), ("b", "x", {"V": 2}, 12), ("c", "x", {"V": 3}, 14),
                ("c", "x", {"V": 4}, 30)])
    # without GRACE PERIOD, a's record is padded at once and that row goes on to c's join, which pads
    # it too; then a ⋈ b (at 12) finds no c and is padded; c at 14 joins both rows, in their times' order
    assert _out(eng) == [("x", 10, 1, None, None), ("x", 12, 1, 2, None), ("x", 14, 1, None, 3),
                         ("x", 14, 1, 2, 3)]


def test_a_grace_period_of_the_second_join_holds_its_padded_rows_until_its_own_stream_time_passes() -> None:
    eng = _run(_three("JOIN", "LEFT JOIN", "5 MILLISECONDS GRACE PERIOD 2 MILLISECONDS"),
               [("a", "x", {"V": 1}, 10), ("b", "x", {"V": 2}, 12), ("a", "y", {"V": 5}, 40)])
    # a at 40 moves the first join's stream time only: it makes no row, so the second join's stream
    # time stays 12 and its row of 12 waits for a row or record there past 12 + 5 + 2
    assert _out(eng) == []
    _run("", [("a", "y", {"V": 6}, 41), ("b", "y", {"V": 7}, 42)], eng)
    # b at 42 makes two rows of time 42: the first closes the row of 12, the two wait in turn
    assert _out(eng) == [("x", 12, 1, 2, None)]


def test_a_right_join_as_a_later_join_pads_the_later_streams_records() -> None:
    eng = _run(STREAMS + "CREATE STREAM j AS SELECT c.k AS k, a.v AS av, b.v AS bv, c.v AS cv FROM a "
               "JOIN b WITHIN 10 MILLISECONDS ON a.k = b.k RIGHT JOIN c WITHIN 5 MILLISECONDS ON a.k = c.k;",
               [("c", "x", {"V": 3}, 5), ("a", "x", {"V": 1}, 10), ("b", "x", {"V": 2}, 12),
                ("c", "x", {"V": 4}, 14)])
    assert _out(eng) == [("x", 5, None, None, 3), ("x", 14, 1, 2, 4)]


def test_a_full_outer_last_join_is_keyed_by_a_synthetic_key() -> None:
    eng = _run(STREAMS + "CREATE STREAM j AS SELECT ROWKEY AS k, a.v AS av, c.v AS cv FROM a "
               "JOIN b WITHIN 10 MILLISECONDS ON a.k = b.k FULL OUTER JOIN c WITHIN 5 MILLISECONDS ON a.k = c.k;",
               [("c", "y", {"V": 3}, 5), ("a", "x", {"V": 1}, 10), ("b", "x", {"V": 2}, 12)])
    assert _out(eng) == [("y", 5, None, 3), ("x", 12, 1, None)]
    assert [c.name for c in eng.catalog.get("J").schema.key] == ["K"]


def test_a_column_equal_to_the_last_join_expression_through_an_earlier_join_is_the_key() -> None:
    # ksqlDB's viable key columns: UCASE(b.k) equals a.k by the first ON, and is the second ON's key
    eng = _run(STREAMS + "CREATE STREAM j AS SELECT a.k, a.v AS av, c.v AS cv FROM a JOIN b WITHIN 10 MILLISECONDS "
               "ON a.k = UCASE(b.k) JOIN c WITHIN 10 MILLISECONDS ON UCASE(b.k) = UCASE(c.k);",
               [("a", "X", {"V": 1}, 10), ("b", "x", {"V": 2}, 11), ("c", "x", {"V": 3}, 12)])
    assert _out(eng) == [("X", 12, 1, 3)]
    assert [c.name for c in eng.catalog.get("J").schema.key] == ["A_K"]


def test_a_last_join_on_expressions_equal_to_no_column_is_keyed_by_a_synthetic_key() -> None:
    with pytest.raises(BindError, match="must include the join expression ROWKEY in its projection"):
        Engine().execute(STREAMS + "CREATE STREAM j AS SELECT a.v AS av FROM a JOIN b WITHIN 10 MILLISECONDS "
                         "ON a.k = b.k JOIN c WITHIN 10 MILLISECONDS ON UCASE(b.k) = UCASE(c.k);")


def test_a_stream_joined_to_a_table_then_to_a_stream_looks_the_table_up_at_the_first_streams_record() -> None:
    eng = _run(STREAMS + TABLE + "CREATE STREAM j AS SELECT a.k AS k, a.v AS av, t.v AS tv, c.v AS cv FROM a "
               "LEFT JOIN t ON a.k = t.k JOIN c WITHIN 5 MILLISECONDS ON a.k = c.k;",
               [("t", "x", {"V": 100}, 1), ("a", "x", {"V": 1}, 10), ("t", "x", {"V": 200}, 11),
                ("a", "x", {"V": 2}, 12), ("a", "y", {"V": 3}, 13), ("c", "x", {"V": 4}, 14),
                ("c", "y", {"V": 5}, 15)])
    # a stream-table join's row has its stream record's time; each a record saw t as it then was
    assert _out(eng) == [("x", 14, 1, 100, 4), ("x", 14, 2, 200, 4), ("y", 15, 3, None, 5)]


def test_four_streams_and_a_table_between_them_join_left_deep() -> None:
    eng = _run(STREAMS + TABLE + "CREATE STREAM j AS SELECT a.k AS k, a.v AS av, b.v AS bv, t.v AS tv, "
               "c.v AS cv, d.v AS dv FROM a JOIN b WITHIN 10 MILLISECONDS ON a.k = b.k JOIN t ON b.k = t.k "
               "JOIN c WITHIN 10 MILLISECONDS ON a.k = c.k LEFT JOIN d WITHIN 1 MILLISECOND ON c.k = d.k;",
               [("t", "x", {"V": 100}, 0), ("a", "x", {"V": 1}, 10), ("b", "x", {"V": 2}, 11),
                ("d", "x", {"V": 5}, 12), ("c", "x", {"V": 3}, 13)])
    # a ⋈ b ⋈ t at 11; with c at 13; d at 12 is within 1 ms of that row's time (13)
    assert _out(eng) == [("x", 13, 1, 2, 100, 3, 5)]


def test_the_rows_are_the_same_whatever_the_batches() -> None:
    sql = _three("FULL OUTER JOIN", "LEFT JOIN", "5 MILLISECONDS GRACE PERIOD 3 MILLISECONDS", key="b.k").replace(
        "ON a.k = c.k", "ON b.k = c.k")
    records: list[Record] = [(("a", "b", "c")[i % 3], f"k{i % 2}", {"V": i}, 3 * i + (i % 4)) for i in range(30)]
    at_once = _out(_run(sql, records))
    one_by_one = Engine(properties=EVERY_CHANGE)
    one_by_one.execute(sql)
    for record in records:
        _run("", [record], one_by_one)
    assert _out(one_by_one) == at_once
    assert len(at_once) > 10


def test_a_chain_of_three_streams_keeps_its_state_over_a_restart_without_loss_or_duplicates(tmp_path: Path) -> None:
    sql = _three("LEFT JOIN", "FULL OUTER JOIN", "5 MILLISECONDS GRACE PERIOD 2 MILLISECONDS", key="ROWKEY")
    records: list[Record] = [(("a", "b", "c", "c")[i % 4], f"k{i % 3}", {"V": i}, 2 * i + (i % 5))
                             for i in range(40)]
    uninterrupted = _out(_run(sql, records))
    eng = _run(sql, [], Engine(path=tmp_path, properties=EVERY_CHANGE))
    for start, end in itertools.pairwise((0, 9, 17, 30, 40)):
        if start:
            eng.close()
            eng = Engine(path=tmp_path, properties=EVERY_CHANGE)
        _run("", records[start:end], eng)
    assert _out(eng) == uninterrupted
    assert len(uninterrupted) > 10
    eng.close()


def test_a_count_over_a_chain_of_three_streams_counts_its_rows() -> None:
    eng = _run(STREAMS + "CREATE TABLE n AS SELECT a.k AS k, COUNT(*) AS n FROM a JOIN b WITHIN 10 MILLISECONDS "
               "ON a.k = b.k JOIN c WITHIN 10 MILLISECONDS ON a.k = c.k GROUP BY a.k;",
               [("a", "x", {"V": 1}, 10), ("b", "x", {"V": 2}, 11), ("c", "x", {"V": 3}, 12),
                ("c", "x", {"V": 4}, 13)])
    assert _out(eng, "N") == [("x", 12, 1), ("x", 13, 2)]


def test_a_push_query_over_a_chain_of_three_streams_keeps_no_state() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(STREAMS)
    runner = eng._transient_runner("SELECT a.k, a.v AS av, b.v AS bv, c.v AS cv FROM a JOIN b WITHIN 10 MILLISECONDS "
                                  "ON a.k = b.k JOIN c WITHIN 10 MILLISECONDS ON a.k = c.k EMIT CHANGES;")
    for topic, v, ts in (("a", 1, 10), ("b", 2, 11), ("c", 3, 12)):
        eng.produce(topic, {"V": v}, key="x", timestamp=ts)
    table = runner.fetch_rows()
    assert table is not None
    assert [tuple(row.values())[-4:] for row in table.to_pylist()] == [("x", 1, 2, 3)]
    runner.con.close()
    kept = eng.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'join%'").fetchall()[0][0]
    assert kept == 0


def test_the_plan_of_a_chain_of_streams_survives_json_and_explains_each_join() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(STREAMS + TABLE)
    (result,) = eng.execute("CREATE STREAM j AS SELECT a.k AS k, c.v AS cv FROM a JOIN t ON a.k = t.k "
                            "LEFT JOIN c WITHIN (1 SECOND, 2 SECONDS) GRACE PERIOD 3 SECONDS ON a.k = c.k;")
    plan = eng.queries.runner(result.query_id).query_plan
    assert isinstance(plan, JoinPlan)
    assert plan_from_json(plan_to_json(plan)) == plan
    explained = [detail for _, detail in eng.execute("EXPLAIN CREATE STREAM j2 AS SELECT a.k AS k, c.v AS cv "
                                                     "FROM a JOIN t ON a.k = t.k LEFT JOIN c WITHIN (1 SECOND, "
                                                     "2 SECONDS) GRACE PERIOD 3 SECONDS ON a.k = c.k;")[0].rows]
    assert ('LEFT stream-stream join of the result (by "A_K") and stream C, within 1000 ms before and 2000 ms '
            "after, grace 3000 ms") in explained


def test_a_plan_cannot_join_a_stream_without_a_window_nor_a_table_with_one() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(STREAMS + TABLE)
    (result,) = eng.execute("CREATE STREAM j AS SELECT a.k AS k, c.v AS cv FROM a JOIN t ON a.k = t.k "
                            "JOIN c WITHIN 1 SECOND ON a.k = c.k;")
    plan = eng.queries.runner(result.query_id).query_plan
    assert isinstance(plan, JoinPlan)
    stream_step, table_step = plan.chain[0], plan.lookups[0]
    with pytest.raises(PlanError, match="the join of C is of a stream without a WITHIN window"):
        dataclasses.replace(stream_step, within=None)
    with pytest.raises(PlanError, match="the join of T is of a table with a WITHIN window"):
        dataclasses.replace(table_step, within=stream_step.within)


def test_a_notebook_with_a_chain_of_three_streams_exports_to_a_job_that_restarts_on_its_stored_plan(
        tmp_path: Path) -> None:
    chain = _three("LEFT JOIN", "FULL OUTER JOIN", "5 MILLISECONDS GRACE PERIOD 2 MILLISECONDS", key="ROWKEY")
    notebook = write_notebook(tmp_path / "job.ipynb", "%%stream\n" + chain.replace(";", ";\n"))
    assert main(["export", str(notebook), "-o", str(tmp_path / "job")]) == 0
    messages = []
    for _ in range(2):
        log = io.StringIO()
        prepare(load_job(tmp_path / "job"), RunOptions(tmp_path / "state"), EventLog(log, "json")).service.close()
        messages += [json.loads(line)["message"] for line in log.getvalue().splitlines()]
    assert messages[-1] == f"1 persistent query plan as in the state's {STATE_PLANS}"


# -- what ksqlDB refuses -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("joins", "message"), [
    ("JOIN b WITHIN 1 SECOND ON a.k = b.k JOIN c ON a.k = c.k", "Stream-Stream joins must have a WITHIN clause"),
    ("JOIN t ON a.k = t.k JOIN c ON a.k = c.k", "Stream-Stream joins must have a WITHIN clause"),
    ("JOIN b WITHIN 1 SECOND ON a.k = b.k JOIN t WITHIN 1 SECOND ON a.k = t.k",
     "A window definition was provided for a Stream-Table join"),
    ("JOIN b WITHIN 1 SECOND ON a.k = b.k FULL OUTER JOIN t ON a.k = t.k",
     "Full outer joins between streams and tables are not supported"),
    ("JOIN b WITHIN 1 SECOND ON a.k = b.k JOIN a WITHIN 1 SECOND ON a.k = b.k",
     "Can not join 'A' to 'A': self joins are not yet supported"),
])
def test_what_ksqldb_refuses_in_a_chain_with_streams_is_refused_with_its_message(joins: str, message: str) -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(STREAMS + TABLE)
    with pytest.raises(BindError, match=message):
        eng.execute(f"CREATE STREAM j AS SELECT * FROM a {joins};")
