"""Lowering of ksqlDB expressions (sqlglot trees under the parser's conventions) to DuckDB SQL.

:class:`ExpressionCompiler` walks an expression with ``visit_<NodeClass>`` methods; a node class
without a rule raises :class:`~nbstream.errors.UnsupportedError` naming it — there is no silent
fallback. Types come from DuckDB itself (:class:`TypeProbe`), mapped back to ksqlDB types, so the
compiler checks ksqlDB's typing rules where DuckDB's differ (integer division, comparisons).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import duckdb
from sqlglot import exp

from nbstream.catalog import functions
from nbstream.catalog.types import SqlType, parse_type
from nbstream.errors import NbstreamError, SqlTypeError, UnknownNameError, UnsupportedError, did_you_mean
from nbstream.sql.ast import Dereference


@dataclass(frozen=True)
class ScopeColumn:
    """A name visible to an expression: the DuckDB column it reads and its ksqlDB type."""

    name: str
    sql: str
    type: SqlType


class Scope:
    """The columns an expression may reference, looked up exactly, then case-insensitively."""

    def __init__(self, columns: list[ScopeColumn], source: str = "") -> None:
        self.columns = columns
        self.source = source
        self._exact = {c.name: c for c in columns}
        self._folded: dict[str, ScopeColumn] = {}
        for c in columns:
            self._folded.setdefault(c.name.upper(), c)

    def resolve(self, name: str) -> ScopeColumn:
        col = self._exact.get(name) or self._folded.get(name.upper())
        if col is None:
            where = f" in {self.source}" if self.source else ""
            hint = did_you_mean(name, [c.name for c in self.columns])
            raise UnknownNameError(f"Column '{name}' cannot be resolved{where}.{hint}")
        return col

    def relation_sql(self) -> str:
        """An empty relation with this scope's typed columns (for type probes)."""
        cols = ", ".join(f"NULL::{c.type.duckdb()} AS {quote(c.sql_name)}" for c in self._sql_columns())
        return f"(SELECT {cols or '1 AS __none'} WHERE FALSE)"

    def _sql_columns(self) -> list[_SqlCol]:
        seen: dict[str, _SqlCol] = {}
        for c in self.columns:
            if c.sql.startswith('"') and c.sql.endswith('"'):
                seen.setdefault(c.sql, _SqlCol(c.sql[1:-1].replace('""', '"'), c.type))
        return list(seen.values())


@dataclass(frozen=True)
class _SqlCol:
    sql_name: str
    type: SqlType


def quote(name: str) -> str:
    """A DuckDB quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


class TypeProbe:
    """The ksqlDB type of a DuckDB expression over a scope, asked of DuckDB (cached)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, scope: Scope) -> None:
        self._con = con
        self._relation = scope.relation_sql()
        self._cache: dict[str, SqlType] = {}

    def type_of(self, expr: exp.Expression) -> SqlType:
        sql = expr.sql("duckdb")
        if sql not in self._cache:
            try:
                rows = self._con.execute(f"DESCRIBE SELECT {sql} AS x FROM {self._relation}").fetchall()
            except duckdb.Error as e:
                raise SqlTypeError(f"cannot evaluate `{sql}`: {_duckdb_message(e)}") from e
            self._cache[sql] = parse_type(rows[0][1], keep_case=True)
        return self._cache[sql]


def _duckdb_message(e: Exception) -> str:
    text = str(e).split("\n")[0]
    return text.split(": ", 1)[-1] if "Error: " in text else text


_PASS_THROUGH = (
    exp.And, exp.Or, exp.Not, exp.Paren, exp.Neg, exp.Is, exp.Like, exp.ILike, exp.Between, exp.In,
    exp.Case, exp.If, exp.Boolean, exp.Null, exp.Add, exp.Sub, exp.Mul, exp.Mod, exp.Array,
    exp.Escape, exp.Tuple,
)
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)
_COMPARISON_NAMES = {exp.EQ: "EQUAL", exp.NEQ: "NOT_EQUAL", exp.GT: "GREATER_THAN",
                     exp.GTE: "GREATER_THAN_OR_EQUAL", exp.LT: "LESS_THAN", exp.LTE: "LESS_THAN_OR_EQUAL"}


class ExpressionCompiler:
    """Compiles ksqlDB expressions over a :class:`Scope` into DuckDB sqlglot expressions."""

    def __init__(self, scope: Scope, probe: TypeProbe, *, params: Mapping[str, object] | None = None) -> None:
        self.scope = scope
        self.probe = probe
        self.params = params or {}
        self._lambda_vars: list[set[str]] = []

    def compile(self, node: exp.Expression) -> exp.Expression:
        visit: Callable[[exp.Expression], exp.Expression] | None = getattr(
            self, f"visit_{type(node).__name__}", None
        )
        if visit is not None:
            return visit(node)
        if isinstance(node, _COMPARISONS):
            return self._comparison(node)
        if isinstance(node, _PASS_THROUGH):
            return self._children(node)
        raise UnsupportedError(f"expression `{node.sql()}` ({type(node).__name__}) is not supported yet")

    def type_of(self, compiled: exp.Expression) -> SqlType:
        return self.probe.type_of(compiled)

    # -- helpers -------------------------------------------------------------------------------
    def _children(self, node: exp.Expression) -> exp.Expression:
        copy = node.copy()
        for key, value in node.args.items():
            if isinstance(value, exp.Expression):
                copy.set(key, self.compile(value))
            elif isinstance(value, list):
                copy.set(key, [self.compile(v) if isinstance(v, exp.Expression) else v for v in value])
        return copy

    def _comparison(self, node: exp.Expression) -> exp.Expression:
        compiled = self._children(node)
        left, right = compiled.this, compiled.expression
        lt, rt = self.type_of(left), self.type_of(right)
        if not comparable(lt, rt):
            op = _COMPARISON_NAMES.get(type(node), type(node).__name__.upper())
            raise SqlTypeError(
                f"Cannot compare {node.this.sql()} ({lt}) to {node.expression.sql()} ({rt}) with {op}."
            )
        return compiled

    # -- leaves ----------------------------------------------------------------------------------
    def visit_Column(self, node: exp.Column) -> exp.Expression:
        if isinstance(node.this, exp.Star):
            raise UnsupportedError("`*` is only allowed as a select item")
        name = node.name
        if self._lambda_vars and any(name in frame for frame in self._lambda_vars):
            return exp.column(lambda_var(name))
        col = self.scope.resolve(name)
        return exp.column(col.sql.strip('"').replace('""', '"'), quoted=True) if col.sql.startswith('"') \
            else exp.maybe_parse(col.sql, dialect="duckdb")

    def visit_Identifier(self, node: exp.Identifier) -> exp.Expression:
        return self.visit_Column(exp.Column(this=node))

    def visit_Literal(self, node: exp.Literal) -> exp.Expression:
        if node.is_string:
            return node.copy()
        text = node.this
        if "e" in text.lower():
            return exp.cast(exp.Literal.number(text), "DOUBLE")
        if "." in text:
            return exp.Literal.number(text)  # DuckDB types 1.50 as DECIMAL(3,2), as ksqlDB does
        value = int(text)
        if -(2**31) <= value < 2**31:
            return exp.Literal.number(text)
        return exp.cast(exp.Literal.number(text), "BIGINT")

    def visit_Placeholder(self, node: exp.Placeholder) -> exp.Expression:
        name = node.name
        if name not in self.params:
            raise UnknownNameError(f"no value bound for parameter :{name}.{did_you_mean(name, self.params)}")
        return literal(self.params[name])

    # -- operators -------------------------------------------------------------------------------
    def visit_Div(self, node: exp.Div) -> exp.Expression:
        left, right = self.compile(node.this), self.compile(node.expression)
        lt, rt = self.type_of(left), self.type_of(right)
        if lt.name in ("INTEGER", "BIGINT") and rt.name in ("INTEGER", "BIGINT"):
            return exp.IntDiv(this=left, expression=right)
        return exp.Div(this=left, expression=right)

    def visit_DPipe(self, node: exp.DPipe) -> exp.Expression:
        return self._children(node)

    def visit_Cast(self, node: exp.Cast) -> exp.Expression:
        inner = self.compile(node.this)
        target: SqlType = node.meta.get("ksql_type") or parse_type(node.to.sql("duckdb"))
        return functions.compile_cast(inner, self.type_of(inner), target)

    def visit_Dereference(self, node: Dereference) -> exp.Expression:
        inner = self.compile(node.this)
        struct = self.type_of(inner)
        field_name = str(node.args["field"])
        if struct.name != "STRUCT":
            raise SqlTypeError(f"`{node.this.sql()}` is {struct}, not a STRUCT: cannot dereference `{field_name}`")
        if struct.field(field_name) is None:
            names = [n for n, _ in struct.fields]
            raise UnknownNameError(
                f"struct `{node.this.sql()}` has no field `{field_name}`.{did_you_mean(field_name, names)}"
            )
        exact = next(n for n, _ in struct.fields if n == field_name or n.upper() == field_name.upper())
        return exp.func("struct_extract", inner, exp.Literal.string(exact))

    def visit_Bracket(self, node: exp.Bracket) -> exp.Expression:
        inner = self.compile(node.this)
        index = self.compile(node.expressions[0])
        kind = self.type_of(inner).name
        if kind == "ARRAY":
            return exp.func("list_extract", inner, index)
        if kind == "MAP":
            return exp.Bracket(this=inner, expressions=[index])
        raise SqlTypeError(f"`{node.this.sql()}` is {self.type_of(inner)}: only ARRAY and MAP can be subscripted")

    def visit_Anonymous(self, node: exp.Anonymous) -> exp.Expression:
        name = str(node.this).upper()
        args = [self.compile(a) for a in node.expressions]
        return functions.compile_function(name, args, self)

    def visit_Lambda(self, node: exp.Lambda) -> exp.Expression:
        names = {p.name for p in node.expressions}
        self._lambda_vars.append(names)
        try:
            body = self.compile(node.this)
        finally:
            self._lambda_vars.pop()
        return exp.Lambda(this=body, expressions=[exp.to_identifier(lambda_var(n)) for n in names])

    def visit_VarMap(self, node: exp.VarMap) -> exp.Expression:
        keys = [self.compile(k) for k in node.args["keys"].expressions]
        values = [self.compile(v) for v in node.args["values"].expressions]
        return exp.func("map", exp.Array(expressions=keys), exp.Array(expressions=values))

    def visit_Struct(self, node: exp.Struct) -> exp.Expression:
        items = []
        for item in node.expressions:
            if not isinstance(item, exp.PropertyEQ):
                raise SqlTypeError(f"STRUCT fields need names: `{item.sql()}`")
            items.append(exp.PropertyEQ(this=exp.to_identifier(item.this.name, quoted=True),
                                        expression=self.compile(item.expression)))
        return exp.Struct(expressions=items)


def comparable(left: SqlType, right: SqlType) -> bool:
    """ksqlDB's rule for which types may be compared with =, <, …"""
    if "NULL" in (left.name, right.name):
        return True
    if left.is_numeric and right.is_numeric:
        return True
    temporal = {"TIMESTAMP", "DATE", "TIME"}
    if left.name in temporal and right.name in temporal | {"STRING"}:
        return True
    if right.name in temporal and left.name == "STRING":
        return True
    return left.name == right.name


def literal(value: object) -> exp.Expression:
    """A SQL literal for a bound Python parameter value."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float):
        return exp.Literal.number(repr(value))
    if isinstance(value, str):
        return exp.Literal.string(value)
    raise NbstreamError(f"cannot bind a {type(value).__name__} as a SQL parameter")


def lambda_var(name: str) -> str:
    """The DuckDB name of lambda parameter ``name`` (kept apart from column names)."""
    return "__lambda_" + name.lower()
