"""The expression conventions of :mod:`nbstream.sql.ast`, as the parser guarantees them."""

from __future__ import annotations

import pytest
from sqlglot import exp

from nbstream.catalog.types import INTEGER, SqlType
from nbstream.errors import ParseError
from nbstream.sql import ast, parse_expression
from nbstream.sql.printer import ksql_text


def test_unquoted_identifiers_are_upper_cased_quoted_keep_case() -> None:
    column = parse_expression("src.col")
    assert isinstance(column, exp.Column)
    assert (column.table, column.name) == ("SRC", "COL")
    quoted = parse_expression('`MixedCase` + "other"')
    names = [(c.name, c.this.quoted) for c in quoted.find_all(exp.Column)]
    assert names == [("MixedCase", True), ("other", True)]


def test_every_call_is_anonymous_with_an_upper_cased_name() -> None:
    for text in ("ucase(x)", "substring(s, 1, 2)", "trim(s)", "count(*)", "concat(a, b)", "round(v, -1)"):
        call = parse_expression(text)
        assert isinstance(call, exp.Anonymous), text
        assert call.name == text.split("(")[0].upper()


def test_struct_access_is_a_dereference() -> None:
    tree = parse_expression("s->inner->`Field`")
    assert isinstance(tree, ast.Dereference)
    assert tree.args["field"] == "Field"
    inner = tree.this
    assert isinstance(inner, ast.Dereference)
    assert inner.args["field"] == "INNER"
    assert isinstance(inner.this, exp.Column)
    assert isinstance(parse_expression("f(x)->a"), ast.Dereference)
    indexed = parse_expression("arr[1]->a[2]")
    assert isinstance(indexed, exp.Bracket)
    assert isinstance(indexed.this, ast.Dereference)


def test_struct_star_ends_a_dereference_chain() -> None:
    tree = parse_expression("s->inner->*")
    assert isinstance(tree, ast.StructStar)
    assert isinstance(tree.this, ast.Dereference) and tree.this.args["field"] == "INNER"
    assert ksql_text(tree) == "S->INNER->*"


def test_subscripts_keep_the_index_as_written() -> None:
    first = parse_expression("arr[1]")
    assert isinstance(first, exp.Bracket)
    assert first.expressions[0] == exp.Literal.number(1)
    last = parse_expression("arr[-1]")
    assert isinstance(last, exp.Bracket)
    assert last.expressions[0].sql() == "-1"
    assert isinstance(parse_expression("m['k']"), exp.Bracket)


def test_lambdas_with_one_and_two_parameters() -> None:
    call = parse_expression("TRANSFORM(arr, x => x + 1)")
    lam = call.expressions[1]
    assert isinstance(lam, exp.Lambda)
    assert [p.name for p in lam.expressions] == ["X"]
    two = parse_expression("REDUCE(arr, 0, (s, x) => s + x)").expressions[2]
    assert isinstance(two, exp.Lambda)
    assert [p.name for p in two.expressions] == ["S", "X"]


def test_array_map_and_struct_constructors() -> None:
    array = parse_expression("ARRAY[1, 2]")
    assert isinstance(array, exp.Array)
    mapping = parse_expression("MAP('a' := 1, 'b' := 2)")
    assert isinstance(mapping, exp.VarMap)
    assert [k.name for k in mapping.args["keys"].expressions] == ["a", "b"]
    struct = parse_expression("STRUCT(a := 1, `B` := 'x')")
    assert isinstance(struct, exp.Struct)
    assert [(p.this.name, p.this.quoted) for p in struct.expressions] == [("A", False), ("B", True)]
    assert all(isinstance(p, exp.PropertyEQ) for p in struct.expressions)


def test_literals_keep_their_text() -> None:
    assert parse_expression("1.5") == exp.Literal.number("1.5")
    assert parse_expression("1.5E0").name == "1.5E0"
    assert parse_expression("'it''s'") == exp.Literal.string("it's")
    assert isinstance(parse_expression("true"), exp.Boolean)
    assert isinstance(parse_expression("NULL"), exp.Null)


def test_placeholders() -> None:
    tree = parse_expression(":name")
    assert isinstance(tree, exp.Placeholder)
    assert tree.name == "name"


def test_cast_carries_the_ksql_type() -> None:
    cast = parse_expression("CAST(x AS ARRAY<STRUCT<a INT>>)")
    assert isinstance(cast, exp.Cast)
    assert cast.meta["ksql_type"] == SqlType.array(SqlType.struct([("A", INTEGER)]))
    assert isinstance(cast.to, exp.DataType)
    assert parse_expression("CAST(v AS DECIMAL(4, 2))").meta["ksql_type"] == SqlType.decimal(4, 2)


def test_case_like_between_in() -> None:
    assert isinstance(parse_expression("CASE WHEN a THEN 1 ELSE 2 END"), exp.Case)
    assert isinstance(parse_expression("x LIKE 'a%'"), exp.Like)
    assert isinstance(parse_expression("x BETWEEN 1 AND 2"), exp.Between)
    assert isinstance(parse_expression("x IN (1, 2)"), exp.In)


def test_pseudo_columns_are_plain_columns() -> None:
    for name in ("ROWTIME", "ROWPARTITION", "ROWOFFSET", "WINDOWSTART", "WINDOWEND"):
        assert parse_expression(name.lower()) == exp.column(name)


@pytest.mark.parametrize("text", ["", "1,", "a b c", "f(", "x AS y"])
def test_bad_expressions_raise_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        parse_expression(text)
