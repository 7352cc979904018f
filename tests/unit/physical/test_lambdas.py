"""ksqlDB's lambda functions — TRANSFORM, FILTER, REDUCE over arrays and maps — evaluated by DuckDB.

Each case reads as a specification: ``expression = value`` over one row whose columns are
``COLUMNS`` with the values of ``ROW``. Cases follow ksqlDB's function reference and its
query-validation tests (transform-array, transform-map, filter, reduce-array, reduce-map,
complex-lambda in ``/work/shared/conformance/ksql-qtt``).
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from nbstream.catalog.types import SqlType, parse_type
from nbstream.errors import SqlTypeError
from nbstream.physical.expressions import ExpressionCompiler, Scope, ScopeColumn, TypeProbe, quote
from nbstream.sql import parse_expression

COLUMNS = {"A": "ARRAY<INTEGER>", "NA": "ARRAY<INTEGER>", "HOLES": "ARRAY<INTEGER>", "M": "MAP<STRING, INTEGER>",
           "NM": "MAP<STRING, INTEGER>", "WORDS": "ARRAY<STRING>", "NESTED": "ARRAY<ARRAY<INTEGER>>", "BASE": "INTEGER",
           "TIMES": "ARRAY<TIMESTAMP>"}
ROW = {"A": "[1, 2, 3]", "NA": "NULL", "HOLES": "[5, NULL]", "M": "MAP {'a': 1, 'b': 2}", "NM": "NULL",
       "WORDS": "['ab', 'cde']", "NESTED": "[[1, 2], [3]]", "BASE": "100",
       "TIMES": "[TIMESTAMP '1970-01-01 00:00:00.003']"}


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def evaluate(con: duckdb.DuckDBPyConnection, text: str) -> tuple[object, SqlType]:
    """The value of ksqlDB expression ``text`` over ``ROW``, and its ksqlDB type."""
    scope = Scope([ScopeColumn(n, quote(n), parse_type(t)) for n, t in COLUMNS.items()], source="S1")
    compiler = ExpressionCompiler(scope, TypeProbe(con, scope))
    compiled = compiler.compile(parse_expression(text))
    row = ", ".join(f"CAST({v} AS {parse_type(COLUMNS[n]).duckdb()}) AS {quote(n)}" for n, v in ROW.items())
    fetched = con.execute(f"SELECT {compiled.sql('duckdb')} FROM (SELECT {row})").fetchone()
    assert fetched is not None
    return fetched[0], compiler.type_of(compiled)


@pytest.mark.parametrize(("text", "expected", "kind"), [
    # TRANSFORM: a lambda of the element (arrays), a key lambda and a value lambda (maps)
    ("TRANSFORM(A, x => x * 10)", [10, 20, 30], "ARRAY<INTEGER>"),
    ("TRANSFORM(WORDS, w => LEN(w))", [2, 3], "ARRAY<INTEGER>"),
    ("TRANSFORM(A, x => x + BASE)", [101, 102, 103], "ARRAY<INTEGER>"),  # columns are visible in the body
    ("TRANSFORM(M, (k, v) => UCASE(k), (k, v) => v + 1)", {"A": 2, "B": 3}, "MAP<STRING, INTEGER>"),
    ("TRANSFORM(M, (k, v) => 'same', (k, v) => v)", None, "MAP<STRING, INTEGER>"),  # two entries, one key
    ("TRANSFORM(NESTED, xs => TRANSFORM(xs, y => y * 2))", [[2, 4], [6]], "ARRAY<ARRAY<INTEGER>>"),
    ("TRANSFORM(NA, x => x + 1)", None, "ARRAY<INTEGER>"),
    # FILTER: keeps what the lambda accepts
    ("FILTER(A, x => x % 2 = 1)", [1, 3], "ARRAY<INTEGER>"),
    ("FILTER(M, (k, v) => v > 1)", {"b": 2}, "MAP<STRING, INTEGER>"),
    ("FILTER(NESTED, xs => ARRAY_LENGTH(xs) > 1)", [[1, 2]], "ARRAY<ARRAY<INTEGER>>"),
    # REDUCE: folds into a state from an initial state; the body's result takes the state's type
    ("REDUCE(A, 10, (s, x) => s + x)", 16, "INTEGER"),
    ("REDUCE(M, 0, (s, k, v) => s + v)", 3, "INTEGER"),
    ("REDUCE(WORDS, '', (s, w) => CONCAT(s, w))", "abcde", "STRING"),
    ("REDUCE(A, CAST(0 AS BIGINT), (s, x) => s + x)", 6, "BIGINT"),
    ("REDUCE(NESTED, 0, (s, xs) => s + REDUCE(xs, 0, (t, y) => t + y))", 6, "INTEGER"),
])
def test_lambda_functions(con: duckdb.DuckDBPyConnection, text: str, expected: object, kind: str) -> None:
    value, sql_type = evaluate(con, text)
    assert value == expected
    assert str(sql_type) == kind


def test_a_time_unit_in_a_lambda_body_is_a_keyword_not_a_column(con: duckdb.DuckDBPyConnection) -> None:
    value, kind = evaluate(con, "TRANSFORM(TIMES, t => TIMESTAMPADD(MILLISECONDS, 5, t))")
    assert value == [dt.datetime(1970, 1, 1, 0, 0, 0, 8000)] and str(kind) == "ARRAY<TIMESTAMP>"


def test_reduce_of_a_null_collection_is_the_initial_state(con: duckdb.DuckDBPyConnection) -> None:
    assert evaluate(con, "REDUCE(NA, 7, (s, x) => s + x)")[0] == 7
    assert evaluate(con, "REDUCE(NM, 7, (s, k, v) => s + v)")[0] == 7


@pytest.mark.parametrize("text", [
    "TRANSFORM(HOLES, x => x + 5)",           # ksqlDB's Java fails on NULL + 5: the whole call is NULL
    "REDUCE(HOLES, 0, (s, x) => s + x)",
    "FILTER(HOLES, x => x + 1 > 0)",
])
def test_arithmetic_on_a_null_element_makes_the_call_null(con: duckdb.DuckDBPyConnection, text: str) -> None:
    assert evaluate(con, text)[0] is None


def test_a_guarded_null_does_not_poison_the_call(con: duckdb.DuckDBPyConnection) -> None:
    assert evaluate(con, "TRANSFORM(HOLES, x => CASE WHEN x IS NULL THEN 0 ELSE x + 5 END)")[0] == [10, 0]


def test_lambda_parameters_shadow_columns_of_the_same_name(con: duckdb.DuckDBPyConnection) -> None:
    assert evaluate(con, "TRANSFORM(A, base => base * 2)")[0] == [2, 4, 6]  # names are case-insensitive


@pytest.mark.parametrize(("text", "message"), [
    ("TRANSFORM(A, 1)", "needs a lambda of 1 parameter"),
    ("TRANSFORM(A, (x, y) => x)", "needs a lambda of 1 parameter"),
    ("TRANSFORM(M, (k, v) => k)", "does not accept 2 parameter"),
    ("FILTER(A, x => x + 1)", "needs a lambda returning BOOLEAN, not INTEGER"),
    ("TRANSFORM(BASE, x => x)", "its first argument must be an ARRAY or a MAP"),
    ("REDUCE(A, NULL, (s, x) => s + x)", "needs a typed initial state"),
])
def test_lambda_misuse_is_a_type_error(con: duckdb.DuckDBPyConnection, text: str, message: str) -> None:
    with pytest.raises(SqlTypeError, match=message):
        evaluate(con, text)


def test_a_lambda_outside_a_lambda_function_is_an_error(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(SqlTypeError, match="only allowed as an argument of TRANSFORM, FILTER or REDUCE"):
        evaluate(con, "ARRAY_LENGTH(x => x)")
