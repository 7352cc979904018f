"""A bad record never stops a query: it is skipped and described in the processing log."""

from __future__ import annotations

import pytest

from nbstream import Engine
from nbstream.errors import ExecutionError

SOURCE = "CREATE STREAM s (k VARCHAR KEY, pattern VARCHAR) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=2);"


def test_a_record_duckdb_cannot_evaluate_is_isolated_and_logged() -> None:
    eng = Engine()
    eng.execute(SOURCE + "CREATE STREAM t AS SELECT k, REGEXP_EXTRACT(pattern, 'abc') AS m FROM s;")
    patterns = ["a.c", "b", "(", "abc", "[0-9]", "x"]  # "(" is not a valid regular expression
    for i, pattern in enumerate(patterns):
        eng.produce("s", {"pattern": pattern}, key=f"k{i}")
    eng.run_until_idle()

    assert sorted(r.key for r in eng.consume("t")) == ["k0", "k1", "k3", "k4", "k5"]
    [logged] = eng.consume("KSQL_PROCESSING_LOG")
    assert logged.value["MESSAGE"]["TYPE"] == 1  # a record processing error
    assert "missing )" in logged.value["MESSAGE"]["ERRORMESSAGE"]
    stats = eng.queries.runner("CSAS_T_0").stats
    assert (stats.consumed, stats.processed, stats.logged) == (6, 5, 1)


def test_a_partition_by_failing_on_a_record_keys_it_null_and_logs_the_error() -> None:
    eng = Engine()
    eng.execute(SOURCE + "CREATE STREAM t AS SELECT REGEXP_EXTRACT(pattern, 'abc'), pattern FROM s "
                "PARTITION BY REGEXP_EXTRACT(pattern, 'abc');")
    for i, pattern in enumerate(["abc", "(", "b"]):  # "(" is not a valid regular expression
        eng.produce("s", {"pattern": pattern}, key=f"k{i}", partition=0)
    eng.run_until_idle()

    assert [(r.key, r.value) for r in eng.consume("t")] == [
        ("abc", {"PATTERN": "abc"}), (None, {"PATTERN": "("}), ("b", {"PATTERN": "b"})]
    [logged] = eng.consume("KSQL_PROCESSING_LOG")
    assert logged.value["MESSAGE"]["TYPE"] == 1  # a record processing error
    assert logged.value["MESSAGE"]["ERRORMESSAGE"].startswith(
        "Error computing new key from expression REGEXP_EXTRACT(S.PATTERN, 'abc'): ")
    stats = eng.queries.runner("CSAS_T_0").stats
    assert (stats.consumed, stats.processed, stats.logged) == (3, 3, 0)


def test_a_record_failing_beside_its_partition_by_key_is_logged_instead() -> None:
    eng = Engine()
    eng.execute(SOURCE + "CREATE STREAM t AS SELECT REGEXP_EXTRACT(pattern, 'abc'), REGEXP_EXTRACT(pattern, 'a') AS m "
                "FROM s "
                "PARTITION BY REGEXP_EXTRACT(pattern, 'abc');")
    eng.produce("s", {"pattern": "("}, key="k0")
    eng.run_until_idle()
    assert eng.consume("t") == []
    assert len(eng.consume("KSQL_PROCESSING_LOG")) == 1


def test_undecodable_records_are_logged_as_deserialization_errors() -> None:
    eng = Engine()
    eng.execute(SOURCE + "CREATE STREAM t AS SELECT * FROM s;")
    eng.produce("s", {"pattern": "ok"}, key="a")
    eng.produce("s", "not an object", key="b")
    eng.produce("s", {"pattern": ["an", "array"]}, key="c")  # ksqlDB reads any JSON value into a STRING
    eng.run_until_idle()
    assert sorted((r.key, r.value["PATTERN"]) for r in eng.consume("t")) == [("a", "ok"), ("c", "[an, array]")]
    [logged] = eng.consume("KSQL_PROCESSING_LOG")
    assert logged.value["MESSAGE"]["TYPE"] == 0  # a deserialization error
    assert logged.value["MESSAGE"]["TOPIC"] == "s"


def test_an_error_of_the_querys_own_sql_fails_the_query_and_logs_no_record() -> None:
    """A binding error is no record's fault: logging every record as bad would hide it."""
    eng = Engine()
    eng.execute(SOURCE + "CREATE STREAM t AS SELECT * FROM s;")
    eng.produce("s", {"pattern": "ok"}, key="a")
    runner = eng.queries.runner("CSAS_T_0")
    runner._batch_sql = runner._batch_sql.replace('"PATTERN"', '"NO_SUCH_COLUMN"', 1)  # an engine bug

    with pytest.raises(ExecutionError, match=r"query CSAS_T_0 failed.*Binder Error"):
        eng.run_until_idle()
    assert runner.pending() == 1, "the batch stays to be retried"
    assert eng.consume("KSQL_PROCESSING_LOG") == []


@pytest.mark.parametrize("push_query", [
    "SELECT k, pattern FROM s EMIT CHANGES;",
    "SELECT k, COUNT(*) AS n FROM s GROUP BY k EMIT CHANGES;",
    "SELECT s.k, pattern, label FROM s JOIN labels l ON s.k = l.k EMIT CHANGES;",
])
def test_a_push_query_skips_a_record_it_cannot_decode_and_counts_it(push_query: str) -> None:
    eng = Engine(properties={"auto.offset.reset": "earliest"})
    eng.execute(SOURCE + "CREATE TABLE labels (k VARCHAR PRIMARY KEY, label VARCHAR) "
                         "WITH (KAFKA_TOPIC='labels', VALUE_FORMAT='JSON', PARTITIONS=2);")
    eng.produce("labels", {"label": "A"}, key="a", partition=0)
    eng.produce("s", {"pattern": "ok"}, key="a", partition=0)
    eng.produce("s", "not an object", key="a", partition=0)
    runner = eng._transient_runner(push_query)

    rows = runner.fetch_rows()

    assert rows is not None and rows.num_rows == 1 and "__err" not in rows.column_names
    assert (runner.stats.consumed, runner.stats.logged) == (3 if "JOIN" in push_query else 2, 1)
    assert runner.stats.last_error is not None and "Can't convert type" in runner.stats.last_error
    runner.con.close()
