"""A query decodes the JSON STRING columns it reads and every column of another type, but not the
STRING columns nothing reads: no JSON value can fail to be a STRING, so skipping them changes no
value and no error (ksqlDB's deserializer reads every column, and its errors stay the same)."""

from __future__ import annotations

from nbstream import Engine
from nbstream.physical.expressions import quote
from nbstream.runtime.decoding import decoding_plan

WIDE = ("CREATE STREAM w (id INT KEY, b VARCHAR, n BIGINT, note VARCHAR, more VARCHAR) "
        "WITH (KAFKA_TOPIC='w', VALUE_FORMAT='JSON');")
RECORDS = [
    ({"b": "one", "n": 1, "note": {"an": ["object"]}, "more": 5}, 1_000),  # unread strings holding any JSON
    ({"B": "two", "N": 2, "NOTE": None}, 1_100),  # another spelling, a field missing
    ({"b": "bad", "n": "not a number", "note": "x"}, 1_200),  # N is read by nobody, yet is an error
    (b"not json", 1_300),
    (b'["an array"]', 1_400),
]


def _engine(query: str) -> Engine:
    eng = Engine()
    eng.execute(WIDE + query)
    for value, ts in RECORDS:
        eng.produce("w", value, key=1, timestamp=ts)
    eng.run_until_idle()
    return eng


def _decoded_columns(eng: Engine, query_id: str) -> list[str]:
    plan = eng.queries.runner(query_id).plan
    return [c.name for c in decoding_plan(plan).scan.schema.value]


def test_a_projection_decodes_what_it_reads_and_every_column_that_can_fail() -> None:
    eng = _engine("CREATE STREAM t AS SELECT id, b FROM w;")
    assert _decoded_columns(eng, "CSAS_T_0") == ["B", "N"]
    assert [r.value for r in eng.consume("t")] == [{"B": "one"}, {"B": "two"}]
    logged = [r.value["MESSAGE"]["ERRORMESSAGE"] for r in eng.consume("KSQL_PROCESSING_LOG")]
    assert len(logged) == 3 and "N" in logged[0]  # the bad BIGINT, not JSON, not an object


def test_a_where_clause_and_a_table_function_read_their_columns() -> None:
    eng = _engine("CREATE STREAM t AS SELECT id, EXPLODE(SPLIT(more, ',')) AS part FROM w WHERE note IS NULL;")
    assert _decoded_columns(eng, "CSAS_T_0") == ["N", "NOTE", "MORE"]
    assert [r.value for r in eng.consume("t")] == []  # record 2 has no MORE: SPLIT(NULL) explodes to nothing
    eng.produce("w", {"n": 3, "more": "x,y"}, key=1, timestamp=1_500)
    eng.run_until_idle()
    assert [r.value for r in eng.consume("t")] == [{"PART": "x"}, {"PART": "y"}]


def test_an_aggregation_decodes_only_its_group_and_arguments() -> None:
    eng = _engine("CREATE TABLE t AS SELECT b, COUNT(*) AS c FROM w GROUP BY b;")
    runner = eng.queries.runner("CTAS_T_0")
    assert [c.name for c in decoding_plan(runner.plan).scan.schema.value] == ["B", "N"]
    assert sorted((r.key, r.value["C"]) for r in eng.consume("t")) == [("one", 1), ("two", 1)]
    assert len(eng.consume("KSQL_PROCESSING_LOG")) == 3


def test_a_value_left_with_no_column_to_decode_keeps_them_all() -> None:
    eng = Engine()
    eng.execute("CREATE STREAM s (id INT KEY, a VARCHAR, b VARCHAR) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON');"
                "CREATE STREAM t AS SELECT id, 1 AS one FROM s;")
    plan = eng.queries.runner("CSAS_T_0").plan
    assert decoding_plan(plan) is plan  # a record that is not a JSON object must still be found out
    assert quote("A") not in " ".join(c.sql for c in plan.columns)
    eng.produce("s", b"[1]", key=1)
    eng.produce("s", {"a": {"any": "json"}}, key=2)
    eng.run_until_idle()
    assert [r.value for r in eng.consume("t")] == [{"ONE": 1}]
    assert len(eng.consume("KSQL_PROCESSING_LOG")) == 1
