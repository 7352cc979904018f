"""ksqlDB's statistical aggregates (STDDEV_SAMP, STDDEV_SAMPLE, CORRELATION) fold across batches and
table updates, and the rule that DELIMITED cannot hold an aggregate's nested intermediate value."""

from __future__ import annotations

import math
from typing import Any

import pytest
from produced import EVERY_CHANGE  # type: ignore[import-not-found]

from nbstream import Engine
from nbstream.errors import BindError

POINTS = ("CREATE STREAM pts (id VARCHAR KEY, x {t}, y {t}) WITH (KAFKA_TOPIC='pts', VALUE_FORMAT='{f}');")


def _fold(select: str, batches: list[list[tuple[str, dict[str, Any]]]], t: str = "DOUBLE") -> list[Any]:
    """The values of column R written by ``select`` (a CREATE TABLE r AS …) over ``batches``, each
    produced and processed on its own, so later batches merge with stored state."""
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(POINTS.format(t=t, f="JSON") + select)
    for batch in batches:
        for key, value in batch:
            eng.produce("pts", value, key=key)
        eng.run_until_idle()
    return [r.value["R"] for r in eng.consume("R")]


def test_stddev_samp_is_ksqldbs_sample_variance_and_stddev_sample_its_root() -> None:
    rows = [[("a", {"x": 0})], [("a", {"x": 10}), ("a", {"x": None})], [("a", {"x": 7})]]
    variance = _fold("CREATE TABLE r AS SELECT id, STDDEV_SAMP(x) AS r FROM pts GROUP BY id;", rows, "INT")
    deviation = _fold("CREATE TABLE r AS SELECT id, STDDEV_SAMPLE(x) AS r FROM pts GROUP BY id;", rows, "INT")
    assert variance == pytest.approx([0.0, 50.0, 50.0, 79 / 3])
    assert deviation == pytest.approx([math.sqrt(v) for v in variance])


def test_stddev_of_large_integers_does_not_cancel_out() -> None:
    rows = [[("a", {"x": 2_147_483_648})], [("a", {"x": 100})]]
    variance = _fold("CREATE TABLE r AS SELECT id, STDDEV_SAMP(x) AS r FROM pts GROUP BY id;", rows, "BIGINT")
    assert variance == [0.0, (2_147_483_648 - 100) ** 2 / 2]


def test_correlation_skips_rows_with_a_null_and_is_nan_until_both_columns_vary() -> None:
    rows = [[("a", {"x": 1.5, "y": 8.0}), ("a", {"x": -1.0, "y": -2.0})],
            [("a", {"x": -4.5, "y": -1.0}), ("a", {"x": None, "y": -6.0})]]
    values = _fold("CREATE TABLE r AS SELECT id, CORRELATION(x, y) AS r FROM pts GROUP BY id;", rows)
    assert values[0] == "NaN"  # JSON writes NaN as a string, as ksqlDB
    assert values[1:] == pytest.approx([1.0, 0.7580764521133173, 0.7580764521133173])


def test_correlation_of_a_table_retracts_the_old_row_of_a_key() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute("CREATE TABLE t (id VARCHAR PRIMARY KEY, k VARCHAR, x DOUBLE, y DOUBLE) "
                "WITH (KAFKA_TOPIC='t', VALUE_FORMAT='JSON');"
                "CREATE TABLE r AS SELECT k, CORRELATION(x, y) AS r FROM t GROUP BY k;")
    for key, x, y in [("alice", 1.5, 8.0), ("bob", -3.5, -2.0), ("alice", -1.0, -2.0), ("carol", -4.5, -1.0)]:
        eng.produce("t", {"k": "a", "x": x, "y": y}, key=key)
        eng.run_until_idle()
    values = [r.value["R"] for r in eng.consume("R")]
    assert values[0] == "NaN" and values[1] == pytest.approx(1.0) and values[2] == "NaN"
    assert values[3:] == pytest.approx([-0.7205766921228921])


def test_correlation_needs_two_columns() -> None:
    with pytest.raises(BindError, match="CORRELATION needs 2 column arguments"):
        Engine().execute(POINTS.format(t="DOUBLE", f="JSON")
                         + "CREATE TABLE r AS SELECT id, CORRELATION(x) AS r FROM pts GROUP BY id;")


@pytest.mark.parametrize("call", ["STDDEV_SAMP(x)", "CORRELATION(x, y)", "AVG(x)", "COLLECT_LIST(x)"])
def test_delimited_cannot_hold_a_nested_intermediate_value(call: str) -> None:
    with pytest.raises(BindError, match="intermediate type that the value format can not handle"):
        Engine().execute(POINTS.format(t="DOUBLE", f="DELIMITED")
                         + f"CREATE TABLE r AS SELECT id, {call} AS r FROM pts GROUP BY id;")


def test_delimited_holds_a_flat_intermediate_value() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(POINTS.format(t="DOUBLE", f="DELIMITED")
                + "CREATE TABLE r AS SELECT id, SUM(x) AS s, COUNT(*) AS n FROM pts GROUP BY id;")
    eng.produce("pts", "1.5,2.0", key="a")
    eng.run_until_idle()
    assert [r.value for r in eng.consume("R")] == ["1.5,1"]
