"""PARTITION BY re-keys a join's result as it re-keys one source's records (ksqlDB semantics): the
joined row is the input, its columns named ``ALIAS_COLUMN``, and the output records are routed to
partitions by their new key."""

from __future__ import annotations

from typing import Any

import pytest

from nbstream import Engine
from nbstream.errors import BindError

PARTITIONS = 4
SOURCES = (
    f"CREATE STREAM L (K STRING KEY, A STRING, B STRING) "
    f"WITH (kafka_topic='left', value_format='JSON', partitions={PARTITIONS});",
    f"CREATE STREAM R (K STRING KEY, C STRING, D STRING) "
    f"WITH (kafka_topic='right', value_format='JSON', partitions={PARTITIONS});",
    f"CREATE TABLE T (ID STRING PRIMARY KEY, N INT) "
    f"WITH (kafka_topic='t', value_format='JSON', partitions={PARTITIONS});",
    f"CREATE TABLE U (ID INT PRIMARY KEY, W STRING) "
    f"WITH (kafka_topic='u', value_format='JSON', partitions={PARTITIONS});",
)

Record = tuple[str, Any, dict[str, Any] | None, int]  # topic, key, value, timestamp


def run(query: str, records: list[Record]) -> Engine:
    eng = Engine()
    for statement in SOURCES:
        eng.execute(statement)
    eng.execute(query)
    for topic, key, value, ts in records:
        eng.produce(topic, value, key=key, timestamp=ts)
    eng.run_until_idle()
    return eng


def routed_partition(key: str) -> int:
    """The partition the log gives a record with the KAFKA-format string ``key`` among PARTITIONS."""
    eng = Engine()
    eng.execute(f"CREATE STREAM P (K STRING KEY, V INT) WITH (kafka_topic='p', value_format='JSON', "
                f"partitions={PARTITIONS});")
    eng.produce("p", {"V": 1}, key=key)
    [record] = eng.consume("p")
    return int(record.partition)


def test_a_stream_stream_join_is_rekeyed_by_a_value_column_and_routed_by_the_new_key() -> None:
    left = [("left", f"l{i}", {"A": "join", "B": f"b{i}"}, 10 + i) for i in range(8)]
    eng = run("CREATE STREAM OUTPUT AS SELECT L.B, L.K, R.K FROM L JOIN R WITHIN 10 SECONDS ON L.A = R.C "
              "PARTITION BY L.B;", [*left, ("right", "r", {"C": "join", "D": "d"}, 20)])
    out = sorted(eng.consume("OUTPUT"), key=lambda r: str(r.key))
    assert [(r.key, r.value) for r in out] == [(f"b{i}", {"L_K": f"l{i}", "R_K": "r"}) for i in range(8)]
    assert [r.partition for r in out] == [routed_partition(f"b{i}") for i in range(8)]
    assert len({r.partition for r in out}) > 1
    assert eng.describe_source("OUTPUT")["schema"] == "`B` STRING KEY, `L_K` STRING, `R_K` STRING"


def test_select_star_lists_each_sides_values_pseudo_columns_and_keys_after_the_new_key() -> None:
    eng = run("CREATE STREAM OUTPUT AS SELECT * FROM L JOIN R WITHIN 10 SECONDS ON L.K = R.K PARTITION BY R.D;",
              [("left", "k", {"A": "a", "B": "b"}, 11), ("right", "k", {"C": "c", "D": "d"}, 12)])
    [record] = eng.consume("OUTPUT")
    assert record.key == "d"
    assert record.value == {"L_A": "a", "L_B": "b", "L_ROWTIME": 11, "L_ROWPARTITION": 0, "L_ROWOFFSET": 0,
                            "L_K": "k", "R_C": "c", "R_ROWTIME": 12, "R_ROWPARTITION": 0, "R_ROWOFFSET": 0,
                            "R_K": "k"}
    assert eng.describe_source("OUTPUT")["schema"] == (
        "`R_D` STRING KEY, `L_A` STRING, `L_B` STRING, `L_ROWTIME` BIGINT, `L_ROWPARTITION` INTEGER, "
        "`L_ROWOFFSET` BIGINT, `L_K` STRING, `R_C` STRING, `R_ROWTIME` BIGINT, `R_ROWPARTITION` INTEGER, "
        "`R_ROWOFFSET` BIGINT, `R_K` STRING")


def test_the_synthetic_key_of_a_full_outer_join_moves_into_the_value_like_an_old_key() -> None:
    eng = run("CREATE STREAM OUTPUT AS SELECT * FROM L FULL OUTER JOIN R WITHIN 10 SECONDS ON L.A = R.C "
              "PARTITION BY L.B;", [("left", "k", {"A": "x", "B": "b"}, 11)])
    [record] = eng.consume("OUTPUT")
    assert (record.key, record.value["ROWKEY"], record.value["L_A"], record.value["R_C"]) == ("b", "x", "x", None)
    assert eng.describe_source("OUTPUT")["schema"].endswith("`R_K` STRING, `ROWKEY` STRING")


def test_a_stream_table_join_is_rekeyed_by_an_expression_keeping_the_items_alias() -> None:
    eng = run("CREATE STREAM OUTPUT AS SELECT UCASE(L.B) AS UB, L.K, T.N FROM L JOIN T ON L.A = T.ID "
              "PARTITION BY UCASE(L.B);",
              [("t", "a", {"N": 1}, 1), ("left", "k", {"A": "a", "B": "bee"}, 2)])
    assert [(r.key, r.value) for r in eng.consume("OUTPUT")] == [("BEE", {"K": "k", "N": 1})]
    assert eng.describe_source("OUTPUT")["schema"] == "`UB` STRING KEY, `K` STRING, `N` INTEGER"


def test_a_multi_way_join_is_rekeyed_and_may_have_several_key_columns() -> None:
    eng = run("CREATE STREAM OUTPUT WITH (key_format='JSON') AS SELECT L.B, T.N, U.W FROM L JOIN T ON L.A = T.ID "
              "LEFT JOIN U ON T.N = U.ID PARTITION BY L.B, T.N;",
              [("t", "a", {"N": 7}, 1), ("u", 7, {"W": "w"}, 1), ("left", "k", {"A": "a", "B": "b"}, 2)])
    assert [(r.key, r.value) for r in eng.consume("OUTPUT")] == [({"B": "b", "N": 7}, {"W": "w"})]


def test_partition_by_null_gives_a_joined_result_without_key() -> None:
    eng = run("CREATE STREAM OUTPUT AS SELECT L.K, T.N FROM L JOIN T ON L.A = T.ID PARTITION BY NULL;",
              [("t", "a", {"N": 1}, 1), ("left", "k", {"A": "a"}, 2)])
    assert [(r.key, r.value) for r in eng.consume("OUTPUT")] == [(None, {"K": "k", "N": 1})]
    assert eng.describe_source("OUTPUT")["key_format"] == "NONE"


@pytest.mark.parametrize(("statement", "message"), [
    ("CREATE STREAM OUTPUT AS SELECT L.K, R.K FROM L JOIN R WITHIN 1 SECOND ON L.K = R.K PARTITION BY L.B;",
     "must include the partitioning expression L.B in its projection"),
    ("CREATE STREAM OUTPUT AS SELECT L.B AS X, L.K FROM L JOIN R WITHIN 1 SECOND ON L.K = R.K PARTITION BY X;",
     "PARTITION BY column 'X' cannot be resolved. 'X' must be a column in the source schema"),
    ("CREATE TABLE OUTPUT AS SELECT L.B, COUNT(*) FROM L JOIN T ON L.A = T.ID GROUP BY L.B PARTITION BY L.B;",
     "PARTITION BY is not valid with GROUP BY"),
    ("CREATE TABLE OUTPUT AS SELECT T.ID, U.W FROM T JOIN U ON T.N = U.ID PARTITION BY U.W;",
     "PARTITION BY is only supported on streams, and the join of T and U is a table"),
])
def test_invalid_partition_by_on_a_join_is_rejected(statement: str, message: str) -> None:
    with pytest.raises(BindError, match=message):
        run(statement, [])


def test_a_join_carries_a_sides_rowpartition_and_rowoffset_when_the_query_reads_them() -> None:
    eng = run("CREATE STREAM OUTPUT AS SELECT L.K, L.ROWOFFSET AS OFF, T.ROWPARTITION AS P, T.N "
              "FROM L JOIN T ON L.K = T.ID;",
              [("t", "a", {"N": 1}, 1), ("left", "a", {"A": "x"}, 2), ("left", "a", {"A": "y"}, 3)])
    part = routed_partition("a")
    assert [(r.key, r.value) for r in eng.consume("OUTPUT")] == [("a", {"OFF": 0, "P": part, "N": 1}),
                                                                ("a", {"OFF": 1, "P": part, "N": 1})]
