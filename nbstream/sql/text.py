"""Expressions written as ksqlDB writes them in its messages (its ``ExpressionFormatter``).

ksqlDB's errors quote the expression at fault in its own rendering — every binary operation in
parentheses, ``null`` in lower case, names unquoted unless they need back-quotes — and clients
(and ksqlDB's own tests) match on that text:

>>> from nbstream.sql import parse
>>> where = parse("SELECT * FROM t WHERE id = NULL AND `Key` <> 'a''b';")[0].query.select.args["where"].this
>>> ksql_text(where)
"((ID = null) AND (`Key` <> 'a''b'))"
"""

from __future__ import annotations

from sqlglot import exp

from nbstream.catalog.types import parse_type, quote_identifier
from nbstream.errors import SqlTypeError

#: ksqlDB's symbol of each binary operator.
OPERATORS: dict[type[exp.Expression], str] = {
    exp.EQ: "=", exp.NEQ: "<>", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<=",
    exp.NullSafeNEQ: "IS DISTINCT FROM", exp.NullSafeEQ: "IS NOT DISTINCT FROM",
    exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/", exp.Mod: "%",
    exp.And: "AND", exp.Or: "OR", exp.DPipe: "||",
}

def ksql_text(node: exp.Expression) -> str:
    """``node`` as ksqlDB's ``ExpressionFormatter`` writes it (sqlglot's SQL for what it does not know)."""
    if isinstance(node, exp.Paren):
        return ksql_text(node.this)
    operator = OPERATORS.get(type(node))
    if operator is not None:
        return f"({ksql_text(node.this)} {operator} {ksql_text(node.expression)})"
    writer = _WRITERS.get(type(node))
    return writer(node) if writer is not None else node.sql()


def _literal(node: exp.Expression) -> str:
    assert isinstance(node, exp.Literal)
    if node.is_string:
        return "'" + node.this.replace("'", "''") + "'"
    return str(node.this)


def _column(node: exp.Expression) -> str:
    assert isinstance(node, exp.Column)
    name = quote_identifier(node.name) if node.this.quoted else node.name
    return f"{node.table}.{name}" if node.table else name


def _values(nodes: list[exp.Expression]) -> str:
    return ", ".join(ksql_text(n) for n in nodes)


def _map(node: exp.Expression) -> str:
    keys, values = node.args["keys"].expressions, node.args["values"].expressions
    return "MAP(" + ", ".join(f"{ksql_text(k)}:={ksql_text(v)}" for k, v in zip(keys, values, strict=True)) + ")"


def _cast(node: exp.Expression) -> str:
    assert isinstance(node, exp.Cast)
    try:
        target = str(parse_type(node.to.sql("duckdb")))
    except SqlTypeError:
        target = node.to.sql().upper()
    return f"CAST({ksql_text(node.this)} AS {target})"


_WRITERS = {
    exp.Literal: _literal,
    exp.Null: lambda node: "null",
    exp.Boolean: lambda node: "true" if node.this else "false",
    exp.Column: _column,
    exp.Not: lambda node: f"(NOT {ksql_text(node.this)})",
    exp.Neg: lambda node: f"-{ksql_text(node.this)}",
    exp.Is: lambda node: f"({ksql_text(node.this)} IS NULL)",
    exp.In: lambda node: f"({ksql_text(node.this)} IN ({_values(node.expressions)}))",
    exp.Between: lambda node: f"({ksql_text(node.this)} BETWEEN {ksql_text(node.args['low'])} "
                              f"AND {ksql_text(node.args['high'])})",
    exp.Like: lambda node: f"({ksql_text(node.this)} LIKE {ksql_text(node.expression)})",
    exp.Array: lambda node: f"ARRAY[{_values(node.expressions)}]",
    exp.VarMap: _map,
    exp.Cast: _cast,
    exp.Anonymous: lambda node: f"{str(node.this).upper()}({_values(node.expressions)})",
}
