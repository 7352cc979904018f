"""ksqlDB CAST semantics compiled to DuckDB (cases from ksqlDB's cast.json and the reference)."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import duckdb
import pytest
import sqlglot

from nbstream.catalog.casts import compile_cast, java_double_string
from nbstream.catalog.functions import DuckDBTypeOracle
from nbstream.catalog.types import parse_type
from nbstream.errors import SqlTypeError


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def cast(con: duckdb.DuckDBPyConnection, value_sql: str, target: str) -> object:
    value = sqlglot.parse_one(value_sql, read="duckdb")
    source = DuckDBTypeOracle(con).type_of(value)
    compiled = compile_cast(value, source, parse_type(target))
    row = con.execute(f"SELECT {compiled.sql('duckdb')}").fetchone()
    assert row is not None
    return row[0]


CASES: list[tuple[str, str, object]] = [
    # nested types
    ("[1, 3]", "STRING", "[1, 3]"),
    ("[1, 3, 2147483648]::BIGINT[]", "ARRAY<INTEGER>", [1, 3, -2147483648]),
    ("[1, 3, 2147483648]::BIGINT[]", "ARRAY<STRING>", ["1", "3", "2147483648"]),
    ("[[1, 3], [-1, -2147483648]]::BIGINT[][]", "ARRAY<ARRAY<STRING>>", [["1", "3"], ["-1", "-2147483648"]]),
    ("MAP {'this': 1}", "STRING", "{this=1}"),
    ("MAP {'this': 2147483648::BIGINT}", "MAP<STRING, INTEGER>", {"this": -2147483648}),
    ("MAP {'k1': MAP {'k2': '10'}}", "MAP<STRING, MAP<STRING, INTEGER>>", {"k1": {"k2": 10}}),
    ("{'F0': 1, 'f1': 3}", "STRING", "Struct{F0=1,f1=3}"),
    ("{'F0': 1, 'f1': 3}", "STRUCT<F0 INTEGER, `f1` INTEGER>", {"F0": 1, "f1": 3}),
    ("{'F0': 1::BIGINT, 'F1': 'x'}", "STRUCT<F0 STRING, F3 STRING>", {"F0": "1", "F3": None}),
    ("[1.5::DOUBLE, NULL]", "STRING", "[1.5, null]"),
    # nulls
    ("NULL", "INTEGER", None),
    ("NULL", "ARRAY<INT>", None),
    ("CAST(NULL AS DOUBLE)", "STRING", None),
    # decimals
    ("10.12::DECIMAL(4,2)", "DECIMAL(5,3)", Decimal("10.120")),
    ("10", "DECIMAL(2,1)", None),
    ("-1", "DECIMAL(2,1)", Decimal("-1.0")),
    ("0.99::DOUBLE", "DECIMAL(2,1)", Decimal("1.0")),
    ("0.01::DOUBLE", "DECIMAL(2,1)", Decimal("0.0")),
    ("'0.99'", "DECIMAL(2,1)", Decimal("1.0")),
    ("10.01::DECIMAL(4,2)", "INTEGER", 10),
    ("10.01::DECIMAL(4,2)", "BIGINT", 10),
    ("10.01::DECIMAL(4,2)", "DOUBLE", 10.01),
    ("0.00::DECIMAL(4,2)", "STRING", "0.00"),
    # integers and doubles
    ("(1 - 2)", "BIGINT", -1),
    ("(1 - 2)", "STRING", "-1"),
    ("(3.3::DOUBLE - 2.1::DOUBLE)", "INTEGER", 1),
    ("-1.7::DOUBLE", "INTEGER", -1),
    ("1e20::DOUBLE", "INTEGER", 2147483647),
    ("10.3::DOUBLE", "STRING", "10.3"),
    ("1.0::DOUBLE", "STRING", "1.0"),
    ("1e10::DOUBLE", "STRING", "1.0E10"),
    ("1e-5::DOUBLE", "STRING", "1.0E-5"),
    ("-0.00012::DOUBLE", "STRING", "-1.2E-4"),
    ("123456789.125::DOUBLE", "STRING", "1.23456789125E8"),
    ("1.7976931348623157E308::DOUBLE", "STRING", "1.7976931348623157E308"),
    ("2.2250738585072014E-308::DOUBLE", "STRING", "2.2250738585072014E-308"),
    ("'NaN'::DOUBLE", "STRING", "NaN"),
    ("'-inf'::DOUBLE", "STRING", "-Infinity"),
    # strings
    ("' 12 '", "INTEGER", 12),
    ("'1.5'", "INTEGER", None),
    ("'abc'", "BIGINT", None),
    ("'1.5'", "DOUBLE", 1.5),
    ("'TRUE'", "BOOLEAN", True),
    ("'no'", "BOOLEAN", False),
    ("'maybe'", "BOOLEAN", None),
    ("TRUE", "STRING", "true"),
    # temporal
    ("'2022-04-28T21:44:47.943'", "TIMESTAMP", dt.datetime(2022, 4, 28, 21, 44, 47, 943000)),
    ("'2022-04-28T21:44:47.943Z'", "TIMESTAMP", dt.datetime(2022, 4, 28, 21, 44, 47, 943000)),
    ("'2022-04-28T23:44:47.943+02:00'", "TIMESTAMP", dt.datetime(2022, 4, 28, 21, 44, 47, 943000)),
    ("'not a time'", "TIMESTAMP", None),
    ("'2022-02-02'", "DATE", dt.date(2022, 2, 2)),
    ("'1970-01'", "DATE", dt.date(1970, 1, 1)),  # a date without its day: the month's first, as ksqlDB
    ("'foo'", "DATE", None),
    ("'10:11:12'", "TIME", dt.time(10, 11, 12)),
    ("TIMESTAMP '2022-04-28 21:44:47.943'", "STRING", "2022-04-28T21:44:47.943"),
    ("TIMESTAMP '2022-04-28 21:44:47.943'", "DATE", dt.date(2022, 4, 28)),
    ("DATE '2022-02-02'", "STRING", "2022-02-02"),
    ("DATE '2022-02-02'", "TIMESTAMP", dt.datetime(2022, 2, 2)),
]


@pytest.mark.parametrize(("value", "target", "expected"), CASES, ids=[f"{c[0]}->{c[1]}" for c in CASES])
def test_cast(con: duckdb.DuckDBPyConnection, value: str, target: str, expected: object) -> None:
    assert cast(con, value, target) == expected


@pytest.mark.parametrize(
    ("value", "target", "message"),
    [
        ("'x'", "ARRAY<INTEGER>", "Cast of STRING to ARRAY<INTEGER> is not supported"),
        ("'x'", "MAP<VARCHAR, INTEGER>", "Cast of STRING to MAP<STRING, INTEGER> is not supported"),
        (
            "'x'",
            "STRUCT<F0 VARCHAR, F1 INTEGER>",
            r"Cast of STRING to STRUCT<`F0` STRING, `F1` INTEGER> is not supported",
        ),
        ("TRUE", "INTEGER", "Cast of BOOLEAN to INTEGER is not supported"),
    ],
)
def test_unsupported_casts(con: duckdb.DuckDBPyConnection, value: str, target: str, message: str) -> None:
    with pytest.raises(SqlTypeError, match=message):
        cast(con, value, target)


def test_java_double_rendering_round_trips_many_values(con: duckdb.DuckDBPyConnection) -> None:
    """Java's Double.toString parses back to the same double, in both notations."""
    values = [0.1, 123.456, 1e7, 9999999.0, 0.001, 0.000999, 2.5e-300, 6.02e23, -3.0e-10]
    column = sqlglot.parse_one("v", read="duckdb")
    rendered = java_double_string(column).sql("duckdb")
    rows = con.execute(f"SELECT v, {rendered} FROM unnest(?::DOUBLE[]) AS t(v)", [values]).fetchall()
    for value, text in rows:
        assert float(text) == value
        assert ("E" in text) == (not 1e-3 <= abs(value) < 1e7), text
        assert not math.isnan(float(text))


def test_type_oracle_reads_a_relation(con: duckdb.DuckDBPyConnection) -> None:
    oracle = DuckDBTypeOracle(con, "SELECT 1::BIGINT AS a, {'X': [1.5::DOUBLE]} AS s")
    assert str(oracle.type_of(sqlglot.parse_one("a", read="duckdb"))) == "BIGINT"
    assert str(oracle.type_of(sqlglot.parse_one("s", read="duckdb"))) == "STRUCT<`X` ARRAY<DOUBLE>>"
