"""INSERT INTO … VALUES writes one record with ksqlDB's coercions, defaults and errors."""

from __future__ import annotations

from decimal import Decimal

import pytest

from nbstream import Engine
from nbstream.errors import BindError, NbstreamError

STREAM = ("CREATE STREAM S (K STRING KEY, I INT, BI BIGINT, D DOUBLE, DEC DECIMAL(4, 2), "
          "ST STRUCT<A INT, `b` STRING>) "
          "WITH (kafka_topic='s', value_format='JSON', partitions=1);")


def insert(sql: str) -> list[tuple[object, object, int]]:
    eng = Engine()
    eng.execute(STREAM)
    eng.execute(sql)
    return [(r.key, r.value, r.timestamp) for r in eng.consume("s")]


def test_values_are_coerced_to_the_column_types_and_missing_columns_are_null() -> None:
    [(key, value, _)] = insert("INSERT INTO S (K, I, BI, D, DEC) VALUES ('k', 1, 2, 3, 1.5);")
    assert key == "k"
    assert value == {"I": 1, "BI": 2, "D": 3.0, "DEC": Decimal("1.50"), "ST": None}


def test_rowtime_sets_the_record_timestamp() -> None:
    [(_, _, ts)] = insert("INSERT INTO S (ROWTIME, K, I) VALUES (1234, 'k', 1);")
    assert ts == 1234


def test_an_empty_struct_fills_every_field_with_null() -> None:
    [(_, value, _)] = insert("INSERT INTO S (K, ST) VALUES ('k', STRUCT());")
    assert value["ST"] == {"A": None, "b": None}


@pytest.mark.parametrize(("sql", "message"), [
    ("INSERT INTO S (K, I) VALUES ('k');", "Expected number columns and values to match"),
    ("INSERT INTO S (K, NOPE) VALUES ('k', 1);", "Column name NOPE does not exist"),
    ("INSERT INTO S (K, I) VALUES ('k', I);", "cannot be resolved"),
])
def test_statement_errors_name_the_problem(sql: str, message: str) -> None:
    with pytest.raises(NbstreamError, match=message):
        insert(sql)


def test_source_tables_are_read_only() -> None:
    eng = Engine()
    eng.execute("CREATE SOURCE TABLE T (K INT PRIMARY KEY, V STRING) "
                "WITH (kafka_topic='t', value_format='JSON', partitions=1);")
    with pytest.raises(BindError, match="Cannot insert values into read-only table: T"):
        eng.execute("INSERT INTO T VALUES (1, 'b');")
