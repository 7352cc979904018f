"""Expression lowering follows ksqlDB's typing and null rules, evaluated by DuckDB."""

from __future__ import annotations

from decimal import Decimal

import duckdb
import pytest

from nbstream.catalog.types import SqlType, parse_type
from nbstream.errors import ParseError, SqlTypeError, UnsupportedError
from nbstream.physical.expressions import ExpressionCompiler, Scope, ScopeColumn, TypeProbe, quote
from nbstream.sql import parse_expression

COLUMNS = {"I": "INTEGER", "N": "INTEGER", "B": "BIGINT", "S": "STRING", "A": "ARRAY<INTEGER>",
           "M": "MAP<STRING, INTEGER>", "T": "STRUCT<ID INTEGER>", "FLAG": "BOOLEAN"}
ROW = {"I": "1", "N": "NULL", "B": "2", "S": "'x'", "A": "[1, 2]", "M": "MAP {'k': 1}", "T": "{'ID': 1}",
       "FLAG": "TRUE"}


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def compiler(con: duckdb.DuckDBPyConnection) -> ExpressionCompiler:
    scope = Scope([ScopeColumn(n, quote(n), parse_type(t)) for n, t in COLUMNS.items()], source="S1")
    return ExpressionCompiler(scope, TypeProbe(con, scope))


def evaluate(con: duckdb.DuckDBPyConnection, text: str) -> tuple[object, SqlType]:
    """The value of ``text`` over one row of ``ROW``, and its ksqlDB type."""
    comp = compiler(con)
    compiled = comp.compile(parse_expression(text))
    row = ", ".join(f"CAST({v} AS {parse_type(COLUMNS[n]).duckdb()}) AS {quote(n)}" for n, v in ROW.items())
    value = con.execute(f"SELECT {compiled.sql('duckdb')} FROM (SELECT {row})").fetchone()[0]
    return value, comp.type_of(compiled)


# -- comparisons ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["N = I", "I <> N", "N > 0", "NOT (N = I) = FALSE"])
def test_a_comparison_with_a_null_operand_is_false_not_null(con: duckdb.DuckDBPyConnection, text: str) -> None:
    assert evaluate(con, text)[0] is False


def test_comparing_with_the_null_literal_is_an_error(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(SqlTypeError, match="Comparison with NULL not supported"):
        evaluate(con, "NULL <> NULL")


@pytest.mark.parametrize("column", ["A", "M", "T"])
def test_arrays_maps_and_structs_compare_only_for_equality(con: duckdb.DuckDBPyConnection, column: str) -> None:
    assert evaluate(con, f"{column} = {column}")[0] is True
    assert evaluate(con, f"{column} IS NOT DISTINCT FROM {column}")[0] is True
    with pytest.raises(SqlTypeError, match=f"Cannot compare {column} .* with LESS_THAN"):
        evaluate(con, f"{column} < {column}")


def test_a_string_does_not_compare_with_a_number(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(SqlTypeError, match=r"Cannot compare S \(STRING\) to 1 \(INTEGER\)"):
        evaluate(con, "S = 1")


def test_between_types_as_its_two_comparisons(con: duckdb.DuckDBPyConnection) -> None:
    assert evaluate(con, "I BETWEEN 0 AND 2.5") == (True, parse_type("BOOLEAN"))
    assert evaluate(con, "S BETWEEN 'a' AND 'y'")[0] is True
    with pytest.raises(SqlTypeError, match=r"Cannot compare S \(STRING\) to 10 \(INTEGER\) with GREATER_THAN_OR_EQUAL"):
        evaluate(con, "S BETWEEN 10 AND 'z'")
    with pytest.raises(SqlTypeError, match=r"Cannot compare I \(INTEGER\) to 'z' \(STRING\) with LESS_THAN_OR_EQUAL"):
        evaluate(con, "I BETWEEN 0 AND 'z'")


def test_like_matches_strings_only(con: duckdb.DuckDBPyConnection) -> None:
    assert evaluate(con, "S LIKE 'x%'")[0] is True
    with pytest.raises(SqlTypeError, match=r"Like condition must be VARCHAR\. The column type is INTEGER"):
        evaluate(con, "I LIKE '1%'")
    with pytest.raises(SqlTypeError, match=r"LIKE needs a STRING pattern: 12 is INTEGER"):
        evaluate(con, "S LIKE 12")


# -- literals ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "kind"), [
    ("1", "INTEGER"), ("2147483648", "BIGINT"), ("-2147483649", "BIGINT"), ("1.50", "DECIMAL(3, 2)"),
    ("1.5E0", "DOUBLE"), ("-9223372036854775808", "BIGINT"),
])
def test_numeric_literals_have_ksqldb_types(con: duckdb.DuckDBPyConnection, text: str, kind: str) -> None:
    assert str(evaluate(con, text)[1]) == kind


@pytest.mark.parametrize("text", ["9223372036854775808", "-9223372036854775809"])
def test_integer_literals_beyond_bigint_are_rejected(con: duckdb.DuckDBPyConnection, text: str) -> None:
    with pytest.raises(ParseError, match="Invalid numeric literal"):
        evaluate(con, text)


@pytest.mark.parametrize("text", ["1.7976931348623159E308", "-1.7976931348623160E308"])
def test_double_literals_beyond_double_are_rejected(con: duckdb.DuckDBPyConnection, text: str) -> None:
    with pytest.raises(ParseError, match="Number overflows DOUBLE"):
        evaluate(con, text)


# -- operators -----------------------------------------------------------------------------------
def test_plus_concatenates_strings(con: duckdb.DuckDBPyConnection) -> None:
    assert evaluate(con, "'a-' + S + '-b'") == ("a-x-b", SqlType("STRING"))


def test_integer_division_stays_integral(con: duckdb.DuckDBPyConnection) -> None:
    assert evaluate(con, "7 / 2") == (3, SqlType("INTEGER"))


# -- constructors --------------------------------------------------------------------------------
def test_map_keys_and_values_are_coerced_by_the_literal_rules(con: duckdb.DuckDBPyConnection) -> None:
    value, kind = evaluate(con, "MAP(S := FLAG, 'b' := 'true', 10 := 'no')")
    assert str(kind) == "MAP<STRING, BOOLEAN>"
    assert value == {"x": True, "b": True, "10": False}


def test_array_elements_widen_to_a_common_numeric_type(con: duckdb.DuckDBPyConnection) -> None:
    value, kind = evaluate(con, "ARRAY[I, B, 1.5]")
    assert str(kind) == "ARRAY<DECIMAL(20, 1)>"
    assert value == [Decimal("1.0"), Decimal("2.0"), Decimal("1.5")]


@pytest.mark.parametrize(("text", "message"), [
    ("MAP(S := I, 'k' := 'hello')", 'invalid input syntax for type INTEGER: "hello"'),
    ("MAP(S := NULL)", "all NULL values"),
    ("MAP(NULL := I)", "all NULL keys"),
    ("MAP()", "Map constructor cannot be empty"),
    ("STRUCT(a := 1, a := 2)", "Duplicate field names"),
])
def test_constructor_errors(con: duckdb.DuckDBPyConnection, text: str, message: str) -> None:
    with pytest.raises(SqlTypeError, match=message):
        evaluate(con, text)


def test_null_map_keys_are_reported_as_unsupported(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(UnsupportedError, match="MAP keys cannot be NULL"):
        evaluate(con, "MAP(S := I, CAST(NULL AS STRING) := I)")


def test_nested_structs_upper_case_unquoted_field_names(con: duckdb.DuckDBPyConnection) -> None:
    value, kind = evaluate(con, "STRUCT(f1 := STRUCT(c1 := S, `q` := I))")
    assert str(kind) == "STRUCT<`F1` STRUCT<`C1` STRING, `q` INTEGER>>"
    assert value == {"F1": {"C1": "x", "q": 1}}


# -- arithmetic ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "kind", "value"), [
    ("1.25 + 1.25", "DECIMAL(4, 2)", Decimal("2.50")),
    ("1.25 * 1.25", "DECIMAL(7, 4)", Decimal("1.5625")),
    ("I * 1.25", "DECIMAL(14, 2)", Decimal("1.25")),
    ("2.0 / 3.0", "DECIMAL(8, 6)", Decimal("0.666667")),
    ("I % 1.25", "DECIMAL(3, 2)", Decimal("1.00")),
    ("B - I", "BIGINT", 1),
    ("1.5 + 1.5E0", "DOUBLE", 3.0),
])
def test_arithmetic_result_types_follow_ksqldb(con: duckdb.DuckDBPyConnection, text: str, kind: str,
                                               value: object) -> None:
    assert evaluate(con, text) == (value, parse_type(kind))


def test_integer_arithmetic_wraps_around_like_java(con: duckdb.DuckDBPyConnection) -> None:
    assert evaluate(con, "2147483647 + I") == (-2147483648, SqlType("INTEGER"))


@pytest.mark.parametrize("text", ["I / 0", "I % 0", "1.5 / 0", "B / (I - 1)"])
def test_division_by_zero_is_null(con: duckdb.DuckDBPyConnection, text: str) -> None:
    assert evaluate(con, text)[0] is None


# -- CASE ----------------------------------------------------------------------------------------
def test_case_results_coerce_to_one_type(con: duckdb.DuckDBPyConnection) -> None:
    assert evaluate(con, "CASE WHEN I = 1 THEN I WHEN FLAG THEN B ELSE 2.5 END") == (Decimal("1.0"),
                                                                                     parse_type("DECIMAL(20, 1)"))
    assert evaluate(con, "CASE I WHEN 1 THEN 'one' ELSE 'other' END")[0] == "one"


def test_case_rejects_non_boolean_conditions_and_mixed_result_types(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(SqlTypeError, match="WHEN operand type should be boolean"):
        evaluate(con, "CASE WHEN I THEN 1 END")
    with pytest.raises(SqlTypeError, match="Invalid Case expression"):
        evaluate(con, "CASE WHEN FLAG THEN S ELSE I END")


def test_an_empty_struct_is_a_struct_without_fields(con: duckdb.DuckDBPyConnection) -> None:
    assert evaluate(con, "STRUCT()") == ({}, SqlType.struct([]))
