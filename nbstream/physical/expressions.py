"""Lowering of ksqlDB expressions (sqlglot trees under the parser's conventions) to DuckDB SQL.

:class:`ExpressionCompiler` walks an expression with ``visit_<NodeClass>`` methods; a node class
without a rule raises :class:`~nbstream.errors.UnsupportedError` naming it — there is no silent
fallback. Types come from DuckDB itself (:class:`TypeProbe`), mapped back to ksqlDB types, so the
compiler checks ksqlDB's typing rules where DuckDB's differ (integer division, comparisons).
"""

from __future__ import annotations

import contextlib
import decimal
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import cast

import duckdb
from sqlglot import exp

from nbstream.catalog import functions, user_functions
from nbstream.catalog.types import SqlType, parse_type
from nbstream.errors import (
    NbstreamError,
    ParseError,
    SqlTypeError,
    UnknownNameError,
    UnsupportedError,
    did_you_mean,
)
from nbstream.physical import lambdas
from nbstream.physical.table_functions import TableFunctionSink, table_function_list
from nbstream.physical.time_literals import rewrite_time_literals
from nbstream.sql.ast import Dereference
from nbstream.sql.printer import ksql_text
from nbstream.sql.text import OPERATORS
from nbstream.sql.text import ksql_text as message_text


@dataclass(frozen=True)
class ScopeColumn:
    """A name visible to an expression: the DuckDB column it reads and its ksqlDB type."""

    name: str
    sql: str
    type: SqlType


class UnknownColumnError(UnknownNameError):
    """A column an expression references is not in its scope (``column``: the name as written;
    ``hint``: the near miss, if any)."""

    def __init__(self, message: str, column: str, hint: str = "") -> None:
        super().__init__(message)
        self.column = column
        self.hint = hint


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
            raise UnknownColumnError(f"Column '{name}' cannot be resolved{where}.{hint}", name, hint)
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
    """The ksqlDB type of a DuckDB expression over a scope, asked of DuckDB (cached).

    Names that exist only inside an expression — lambda parameters, a table function's element —
    are added as typed columns while they are in scope (:meth:`scoped`, :meth:`add_columns`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, scope: Scope) -> None:
        self._con = con
        self._base = scope.relation_sql()
        self._extra: list[dict[str, SqlType]] = [{}]  # the first frame holds the columns added for good
        self._relation = self._base
        self._cache: dict[tuple[str, str], SqlType] = {}

    @contextlib.contextmanager
    def scoped(self, columns: Mapping[str, SqlType]) -> Iterator[None]:
        """Within the block, the DuckDB names ``columns`` are typed columns of the probed relation."""
        self._extra.append(dict(columns))
        self._relation = self._relation_sql()
        try:
            yield
        finally:
            self._extra.pop()
            self._relation = self._relation_sql()

    def add_columns(self, columns: Mapping[str, SqlType]) -> None:
        """From now on, the DuckDB names ``columns`` are typed columns of the probed relation."""
        self._extra[0].update(columns)
        self._relation = self._relation_sql()

    def _relation_sql(self) -> str:
        merged: dict[str, SqlType] = {}
        for frame in self._extra:
            merged.update(frame)
        if not merged:
            return self._base
        cols = ", ".join(f"NULL::{t.duckdb()} AS {quote(n)}" for n, t in merged.items())
        return f"(SELECT * FROM {self._base} AS __b, (SELECT {cols}) AS __x)"

    def type_of(self, expr: exp.Expression) -> SqlType:
        sql = expr.sql("duckdb")
        key = (self._relation, sql)
        if key not in self._cache:
            try:
                rows = self._con.execute(f"DESCRIBE SELECT {sql} AS x FROM {self._relation}").fetchall()
            except duckdb.Error as e:
                raise SqlTypeError(f"cannot evaluate `{sql}`: {_duckdb_message(e)}") from e
            self._cache[key] = parse_type(rows[0][1], keep_case=True)
        return self._cache[key]


def _duckdb_message(e: Exception) -> str:
    text = str(e).split("\n")[0]
    return text.split(": ", 1)[-1] if "Error: " in text else text


_PASS_THROUGH = (
    exp.And, exp.Or, exp.Not, exp.Paren, exp.Is, exp.Like, exp.ILike, exp.Between, exp.In,
    exp.If, exp.Boolean, exp.Null, exp.Array,
    exp.Escape, exp.Tuple,
)
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)
_COMPARISON_NAMES: dict[type[exp.Expression], str] = {exp.EQ: "EQUAL", exp.NEQ: "NOT_EQUAL", exp.GT: "GREATER_THAN",
                     exp.GTE: "GREATER_THAN_OR_EQUAL", exp.LT: "LESS_THAN", exp.LTE: "LESS_THAN_OR_EQUAL",
                     exp.NullSafeEQ: "IS_NOT_DISTINCT_FROM", exp.NullSafeNEQ: "IS_DISTINCT_FROM"}
#: Comparisons that ARRAY, MAP and STRUCT values support.
_EQUALITIES = ("EQUAL", "NOT_EQUAL", "IS_NOT_DISTINCT_FROM", "IS_DISTINCT_FROM")


def _func(name: str, *args: exp.Expression) -> exp.Expression:
    """``exp.func``, typed as what it returns: a concrete node (sqlglot types it as the ``Func`` trait)."""
    return cast(exp.Expression, exp.func(name, *args))


class ExpressionTypeError(SqlTypeError):
    """A type error of one expression; ``statement`` is the expression as ksqlDB writes it."""

    def __init__(self, message: str, statement: str) -> None:
        super().__init__(message)
        self.statement = statement


class ExpressionCompiler:
    """Compiles ksqlDB expressions over a :class:`Scope` into DuckDB sqlglot expressions."""

    def __init__(self, scope: Scope, probe: TypeProbe, *, params: Mapping[str, object] | None = None) -> None:
        self.scope = scope
        self.probe = probe
        self.params = params or {}
        #: where table function calls go (None: they are not allowed in what is being compiled)
        self.table_functions: TableFunctionSink | None = None
        self._lambda_vars: list[dict[str, SqlType]] = []

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

    # -- lambdas (see nbstream.physical.lambdas) -------------------------------------------------
    @contextlib.contextmanager
    def lambda_scope(self, params: Mapping[str, SqlType]) -> Iterator[None]:
        """Within the block, lambda parameters ``params`` (name → type) shadow columns."""
        frame = {name.upper(): t for name, t in params.items()}
        self._lambda_vars.append(frame)
        try:
            with self.probe.scoped({lambda_var(n): t for n, t in frame.items()}):
                yield
        finally:
            self._lambda_vars.pop()

    @property
    def lambda_depth(self) -> int:
        """How many lambdas the expression being compiled is inside."""
        return len(self._lambda_vars)

    @staticmethod
    def lambda_column(name: str) -> str:
        """The DuckDB name a lambda parameter ``name`` compiles to."""
        return lambda_var(name)
    def compile_filter(self, node: exp.Expression, clause: str = "WHERE") -> exp.Expression:
        """``node``, the condition of a WHERE or HAVING clause, compiled; a type error names the
        clause and the expression at fault as ksqlDB's do (``Error in WHERE expression: …\nStatement: …``),
        and so does an unknown column (``WHERE column 'X' cannot be resolved.``). Text datetimes
        compared with ROWTIME or a window bound are their epoch millis (:mod:`~nbstream.physical.time_literals`)."""
        try:
            return self.compile(rewrite_time_literals(node))
        except UnknownColumnError as error:
            raise UnknownColumnError(f"{clause} column '{error.column}' cannot be resolved.{error.hint}",
                                     error.column, error.hint) from None
        except ExpressionTypeError as error:
            raise SqlTypeError(f"Error in {clause} expression: {error.message}\nStatement: {error.statement}",
                               error.span) from None

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
        """ksqlDB comparisons: typed operands only, and a null operand makes the result false."""
        compiled = self._children(node)
        left, right = compiled.this, compiled.expression
        lt, rt = self.type_of(left), self.type_of(right)
        op = _COMPARISON_NAMES.get(type(node), type(node).__name__.upper())
        if "NULL" in (lt.name, rt.name):
            raise ExpressionTypeError(f"Comparison with NULL not supported: {lt.name} {OPERATORS[type(node)]} "
                                      f"{rt.name}\nUse 'IS NULL' or 'IS NOT NULL' instead.", message_text(node))
        _check_comparable(node, node.this, lt, node.expression, rt, op)
        if isinstance(node, exp.NullSafeEQ | exp.NullSafeNEQ):
            return compiled
        return _func("coalesce", compiled, exp.false())

    def visit_Between(self, node: exp.Between) -> exp.Expression:
        """BETWEEN types as its two comparisons do: the value ``>=`` its low bound, ``<=`` its high one."""
        compiled = self._children(node)
        value = self.type_of(compiled.this)
        for bound, op in (("low", "GREATER_THAN_OR_EQUAL"), ("high", "LESS_THAN_OR_EQUAL")):
            bound_type = self.type_of(compiled.args[bound])
            if "NULL" not in (value.name, bound_type.name):
                _check_comparable(node, node.this, value, node.args[bound], bound_type, op)
        return compiled

    def visit_Like(self, node: exp.Like) -> exp.Expression:
        """LIKE matches a STRING against a STRING pattern (a column of another type: ksqlDB's message)."""
        compiled = self._children(node)
        for side, operand in (("value", "this"), ("pattern", "expression")):
            operand_type = self.type_of(compiled.args[operand])
            if operand_type.name in ("STRING", "NULL"):
                continue
            if isinstance(node.args[operand], exp.Column):
                raise ExpressionTypeError("The column type for Like condition must be VARCHAR. The column type is "
                                          f"{operand_type.name}", message_text(node))
            raise ExpressionTypeError(f"LIKE needs a STRING {side}: {message_text(node.args[operand])} is "
                                      f"{operand_type}.", message_text(node))
        return compiled

    # -- leaves ----------------------------------------------------------------------------------
    def visit_Column(self, node: exp.Column) -> exp.Expression:
        if isinstance(node.this, exp.Star):
            raise UnsupportedError("`*` is only allowed as a select item")
        name = node.name
        if not node.table and any(name.upper() in frame for frame in self._lambda_vars):
            return exp.column(lambda_var(name))
        col = self.scope.resolve(name)
        return exp.column(col.sql.strip('"').replace('""', '"'), quoted=True) if col.sql.startswith('"') \
            else exp.maybe_parse(col.sql, dialect="duckdb")

    def visit_Identifier(self, node: exp.Identifier) -> exp.Expression:
        return self.visit_Column(exp.Column(this=node))

    def visit_Literal(self, node: exp.Literal) -> exp.Expression:
        if node.is_string:
            return node.copy()
        return numeric_literal(node.this)

    def visit_Neg(self, node: exp.Neg) -> exp.Expression:
        if isinstance(node.this, exp.Literal) and not node.this.is_string:
            return numeric_literal("-" + node.this.this)
        return self._children(node)

    def visit_Placeholder(self, node: exp.Placeholder) -> exp.Expression:
        name = node.name
        if name not in self.params:
            raise UnknownNameError(f"no value bound for parameter :{name}.{did_you_mean(name, self.params)}")
        return literal(self.params[name])

    # -- operators -------------------------------------------------------------------------------
    def visit_Add(self, node: exp.Add) -> exp.Expression:
        return self._arithmetic(node)

    def visit_Sub(self, node: exp.Sub) -> exp.Expression:
        return self._arithmetic(node)

    def visit_Mul(self, node: exp.Mul) -> exp.Expression:
        return self._arithmetic(node)

    def visit_Div(self, node: exp.Div) -> exp.Expression:
        return self._arithmetic(node)

    def visit_Mod(self, node: exp.Mod) -> exp.Expression:
        return self._arithmetic(node)

    def _arithmetic(self, node: exp.Expression) -> exp.Expression:
        """``+ - * / %`` with ksqlDB's result types (see :func:`arithmetic_type`).

        INTEGER results wrap around like Java's ``int``; integer and DECIMAL division or modulo
        by zero give NULL (ksqlDB logs the record and emits NULL); ``+`` of two strings concatenates."""
        left, right = self.compile(node.this), self.compile(node.expression)
        lt, rt = self.type_of(left), self.type_of(right)
        op = type(node)
        if "NULL" in (lt.name, rt.name):  # ksqlDB's Operator.checkForNullTypes
            sides = " and ".join("null" if t.name == "NULL" else str(t) for t in (lt, rt))
            raise SqlTypeError(f"Error processing expression: {message_text(node)}. Arithmetic on types {sides} "
                               "are not supported.")
        if op is exp.Add and lt.name == rt.name == "STRING":
            return exp.DPipe(this=left, expression=right)
        result = arithmetic_type(op, lt, rt)
        if result is None:
            return op(this=left, expression=right)
        if op in (exp.Div, exp.Mod) and result.name != "DOUBLE":
            right = _func("nullif", right, exp.Literal.number(0))
        if result.name in ("INTEGER", "BIGINT"):
            if op is exp.Div:
                return exp.IntDiv(this=left, expression=right)
            if op is exp.Mod or result.name == "BIGINT":
                return op(this=left, expression=right)
            wide = op(this=exp.cast(left, "BIGINT"), expression=right)
            return functions.compile_cast(wide, SqlType("BIGINT"), result)
        if result.name == "DECIMAL":
            if op is exp.Div:  # DuckDB divides decimals as DOUBLE; round to ksqlDB's scale
                computed: exp.Expression = exp.Div(this=exp.cast(left, "DOUBLE"), expression=exp.cast(right, "DOUBLE"))
            else:
                computed = op(this=left, expression=right)
            return exp.cast(computed, exp.DataType.build(result.duckdb(), dialect="duckdb"))
        return op(this=left, expression=right)

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
        return _func("struct_extract", inner, exp.Literal.string(exact))

    def visit_Bracket(self, node: exp.Bracket) -> exp.Expression:
        inner = self.compile(node.this)
        index = self.compile(node.expressions[0])
        kind = self.type_of(inner).name
        if kind == "ARRAY":
            return _func("list_extract", inner, index)
        if kind == "MAP":
            return exp.Bracket(this=inner, expressions=[index])
        raise SqlTypeError(f"`{node.this.sql()}` is {self.type_of(inner)}: only ARRAY and MAP can be subscripted")

    def visit_Anonymous(self, node: exp.Anonymous) -> exp.Expression:
        name = str(node.this).upper()
        if name == "STRUCT" and all(isinstance(a, exp.PropertyEQ) for a in node.expressions):
            return self._struct(node.expressions)
        if lambdas.is_lambda_function(name):
            return lambdas.compile_call(self, name, node.expressions)
        if functions.is_table_function(name):
            return self._table_function(name, node)
        args = [exp.Var(this=a.name.upper()) if isinstance(a, exp.Column) and not a.table
                and functions.takes_unit(name, i) else self.compile(a) for i, a in enumerate(node.expressions)]
        if not functions.is_builtin(name) and user_functions.lookup(name) is not None:
            return self._user_call(name, args)
        return functions.compile_function(name, args, self)

    def _user_call(self, name: str, args: list[exp.Expression]) -> exp.Expression:
        """A call of a Python UDF (or UDTF: its list): the DuckDB function of the overload the
        argument types pick, the arguments cast to its parameters as ksqlDB widens them."""
        function = user_functions.lookup(name)
        assert function is not None
        types = [self.type_of(a) for a in args]
        inst = user_functions.scalar_instance(function, types)
        cast_args = [a if t == p else exp.cast(a, exp.DataType.build(p.duckdb(), dialect="duckdb"))
                     if t.name == "NULL" else functions.compile_cast(a, t, p)
                     for a, t, p in zip(args, types, inst.params, strict=True)]
        if not cast_args:  # a function without parameters learns the row count from a constant argument
            cast_args = [exp.true()]
        return exp.Anonymous(this=inst.duck_name, expressions=cast_args)

    def _table_function(self, name: str, node: exp.Anonymous) -> exp.Expression:
        """A table function call: its list goes to :attr:`table_functions`; it compiles to the element."""
        sink = self.table_functions
        if sink is None:
            raise SqlTypeError(f"Table functions (`{name}`) can only be used in the SELECT list of a query on "
                               "a stream that does not aggregate or PARTITION BY")
        self.table_functions = None  # ksqlDB: a table function's arguments hold no table function
        try:
            args = [self.compile(a) for a in node.expressions]
        finally:
            self.table_functions = sink
        if functions.is_builtin(name):
            values = table_function_list(name, args, [self.type_of(a) for a in args])
        else:
            values = self._user_call(name, args)
        return sink.add(values, self.type_of(values), ksql_text(node))

    def visit_Lambda(self, node: exp.Lambda) -> exp.Expression:
        raise SqlTypeError(f"a lambda (`{node.sql()}`) is only allowed as an argument of TRANSFORM, FILTER or REDUCE")

    def visit_Case(self, node: exp.Case) -> exp.Expression:
        """CASE: searched WHENs must be BOOLEAN; THEN/ELSE results coerce to one type."""
        operand = node.args.get("this")
        ifs: list[exp.If] = node.args.get("ifs") or []
        conditions = [self.compile(i.this) for i in ifs]
        if operand is None:
            for when, compiled in zip(ifs, conditions, strict=True):
                kind = self.type_of(compiled)
                if kind.name not in ("BOOLEAN", "NULL"):
                    raise SqlTypeError(f"WHEN operand type should be boolean. Type for '{when.this.sql()}' is {kind}")
        default = node.args.get("default")
        result_nodes = [i.args["true"] for i in ifs] + ([default] if default is not None else [])
        try:
            results = self._coerced(result_nodes, "THEN result")
        except SqlTypeError as e:
            raise SqlTypeError(f"Invalid Case expression. Type for all 'THEN' clauses should be the same. "
                               f"{e.message}") from e
        whens = [exp.If(this=c, true=r) for c, r in zip(conditions, results, strict=False)]
        return exp.Case(this=self.compile(operand) if operand is not None else None, ifs=whens,
                        default=results[len(ifs)] if default is not None else None)

    def visit_VarMap(self, node: exp.VarMap) -> exp.Expression:
        key_nodes = node.args["keys"].expressions
        value_nodes = node.args["values"].expressions
        if not key_nodes:
            raise SqlTypeError("Map constructor cannot be empty. Please supply at least one key value pair "
                               "(see https://github.com/confluentinc/ksql/issues/4239).")
        keys = self._coerced(key_nodes, "MAP key")
        values = self._coerced(value_nodes, "MAP value")
        if all(isinstance(k, exp.Null) for k in key_nodes):
            raise SqlTypeError("Cannot construct a map with all NULL keys")
        if all(isinstance(v, exp.Null) for v in value_nodes):
            raise SqlTypeError("Cannot construct a map with all NULL values")
        if any(_is_null(k) for k in key_nodes):
            raise UnsupportedError("MAP keys cannot be NULL in nbstream (DuckDB maps have no NULL keys)")
        return _func("map", exp.Array(expressions=keys), exp.Array(expressions=values))

    def visit_Array(self, node: exp.Array) -> exp.Expression:
        return exp.Array(expressions=self._coerced(node.expressions, "ARRAY element"))

    def visit_Struct(self, node: exp.Struct) -> exp.Expression:
        return self._struct(node.expressions)

    def _struct(self, items: list[exp.Expression]) -> exp.Expression:
        fields: list[exp.Expression] = []
        seen: set[str] = set()
        for item in items:
            if not isinstance(item, exp.PropertyEQ):
                raise SqlTypeError(f"STRUCT fields need names: `{item.sql()}`")
            ident = item.this
            name = ident.name if getattr(ident, "quoted", False) else ident.name.upper()
            if name in seen:
                raise SqlTypeError(f"Duplicate field names found in STRUCT: `{name}`")
            if name.upper() in {n.upper() for n in seen}:
                raise UnsupportedError(f"STRUCT fields `{name}` differing only in case are not supported yet")
            seen.add(name)
            fields.append(exp.PropertyEQ(this=exp.to_identifier(name, quoted=True),
                                         expression=self.compile(item.expression)))
        return exp.Struct(expressions=fields)

    def _coerced(self, nodes: list[exp.Expression], what: str) -> list[exp.Expression]:
        """``nodes`` compiled and cast to one common type, with ksqlDB's literal coercion rules."""
        compiled = [self.compile(n) for n in nodes]
        types = [self.type_of(c) for c in compiled]
        target = common_type(nodes, types, what)
        if target is None:
            return compiled
        return [c if t == target else functions.compile_cast(c, t, target)
                for c, t in zip(compiled, types, strict=True)]


_COMPLEX = ("ARRAY", "MAP", "STRUCT")
_TEMPORAL = ("TIMESTAMP", "DATE", "TIME")


def _check_comparable(node: exp.Expression, left: exp.Expression, left_type: SqlType, right: exp.Expression,
                      right_type: SqlType, op: str) -> None:
    """ksqlDB's refusal of ``left op right`` (within ``node``) when the types do not compare."""
    if not comparable(left_type, right_type, op):
        raise ExpressionTypeError(f"Cannot compare {message_text(left)} ({left_type}) to {message_text(right)} "
                                  f"({right_type}) with {op}.", message_text(node))


def comparable(left: SqlType, right: SqlType, op: str = "EQUAL") -> bool:
    """ksqlDB's rule for which types may be compared with ``op`` (=, <, …).

    Numbers compare with numbers, temporal types with each other and with strings; ARRAY, MAP
    and STRUCT values only for (in)equality with the same kind; anything else with its own type."""
    if left.is_numeric and right.is_numeric:
        return True
    if left.name in _TEMPORAL and right.name in (*_TEMPORAL, "STRING"):
        return True
    if right.name in _TEMPORAL and left.name == "STRING":
        return True
    if left.name in _COMPLEX:
        return op in _EQUALITIES and left.name == right.name
    return left.name == right.name


_WIDENING = ("INTEGER", "BIGINT", "DECIMAL", "DOUBLE")
#: The DECIMAL an integer type widens to (digits of its largest value).
_INT_DIGITS = {"INTEGER": 10, "BIGINT": 19}
_BOOLEAN_TEXT = ("true", "false", "t", "f", "yes", "no", "y", "n")


def _is_null(node: exp.Expression) -> bool:
    """``NULL`` or ``CAST(NULL AS t)``."""
    inner = node.this if isinstance(node, exp.Cast) else node
    return isinstance(inner, exp.Null)


def _is_literal(node: exp.Expression) -> bool:
    if isinstance(node, exp.Neg):
        return _is_literal(node.this)
    return isinstance(node, exp.Literal | exp.Boolean)


def widen(left: SqlType, right: SqlType) -> SqlType:
    """The narrowest numeric type both numeric types widen to (INT → BIGINT → DECIMAL → DOUBLE)."""
    if left == right:
        return left
    rank = max(_WIDENING.index(left.name), _WIDENING.index(right.name))
    if _WIDENING[rank] != "DECIMAL":
        return SqlType(_WIDENING[rank])
    l_p, l_s = _as_decimal(left)
    r_p, r_s = _as_decimal(right)
    scale = max(l_s, r_s)
    return SqlType.decimal(min(max(l_p - l_s, r_p - r_s) + scale, 38), scale)


def arithmetic_type(op: type[exp.Expression], left: SqlType, right: SqlType) -> SqlType | None:
    """ksqlDB's result type of ``left op right`` for numbers (None: not two numbers).

    Integers stay integers (BIGINT if either is); DOUBLE wins; otherwise both sides are DECIMALs
    (INTEGER as DECIMAL(10, 0), BIGINT as DECIMAL(19, 0)) with ksqlDB's precision and scale rules."""
    if not (left.is_numeric and right.is_numeric):
        return None
    names = {left.name, right.name}
    if "DOUBLE" in names:
        return SqlType("DOUBLE")
    if "DECIMAL" not in names:
        return SqlType("BIGINT" if "BIGINT" in names else "INTEGER")
    (p1, s1), (p2, s2) = _as_decimal(left), _as_decimal(right)
    if op is exp.Mul:
        precision, scale = p1 + p2 + 1, s1 + s2
    elif op is exp.Div:
        scale = max(6, s1 + p2 + 1)
        precision = p1 - s1 + s2 + scale
    elif op is exp.Mod:
        precision, scale = min(p1 - s1, p2 - s2) + max(s1, s2), max(s1, s2)
    else:
        precision, scale = max(s1, s2) + max(p1 - s1, p2 - s2) + 1, max(s1, s2)
    precision = min(precision, 38)  # DuckDB's widest DECIMAL
    return SqlType.decimal(precision, min(scale, precision))


def _as_decimal(t: SqlType) -> tuple[int, int]:
    if t.name == "DECIMAL":
        return t.precision or 38, t.scale or 0
    return _INT_DIGITS[t.name], 0


def common_type(nodes: list[exp.Expression], types: list[SqlType], what: str) -> SqlType | None:
    """The type a list of expressions (array elements, map keys or values) is coerced to.

    Non-literal expressions must already share a type up to numeric widening; literals follow
    ksqlDB's looser rules: any literal becomes a STRING, a STRING literal holding a number or a
    boolean becomes that type. ``None`` when every expression is NULL."""
    typed = [(n, t) for n, t in zip(nodes, types, strict=True) if t.name != "NULL"]
    if not typed:
        return None
    exprs = [t for n, t in typed if not _is_literal(n)]
    target = exprs[0] if exprs else typed[0][1]
    for t in exprs[1:]:
        target = _unify(target, t, what)
    for n, t in typed:
        if _is_literal(n) and t != target:
            target = _coerce_literal(n, t, target, what)
    return target


def _unify(target: SqlType, t: SqlType, what: str) -> SqlType:
    if t == target:
        return target
    if t.is_numeric and target.is_numeric:
        return widen(target, t)
    raise SqlTypeError(f"invalid {what}: expected {target}, got {t}")


def _coerce_literal(node: exp.Expression, t: SqlType, target: SqlType, what: str) -> SqlType:
    if target.name == "STRING":
        return target
    if t.is_numeric and target.is_numeric:
        return widen(target, t)
    if t.name == "STRING" and isinstance(node, exp.Literal):
        text = node.this.strip()
        if target.name == "BOOLEAN" and text.lower() in _BOOLEAN_TEXT:
            return target
        if target.is_numeric:
            try:
                parsed = decimal.Decimal(text)
            except decimal.InvalidOperation:
                parsed = None
            if parsed is not None and parsed.is_finite():
                return widen(target, _literal_type(text))
        raise SqlTypeError(f'invalid input syntax for type {target}: "{node.this}".')
    raise SqlTypeError(f"invalid {what}: expected {target}, got {t} ({node.sql()})")


def _literal_type(text: str) -> SqlType:
    """The ksqlDB type of a numeric literal's text."""
    if "e" in text.lower():
        return SqlType("DOUBLE")
    if "." in text:
        digits = text.lstrip("+-").split(".")
        scale = len(digits[1])
        return SqlType.decimal(max(len(digits[0].lstrip("0")) + scale, 1, scale), scale)
    return SqlType("INTEGER") if -(2**31) <= int(text) < 2**31 else SqlType("BIGINT")


#: The largest finite DOUBLE, exactly (literals above it are rejected like ksqlDB's parser does).
_DOUBLE_MAX = decimal.Decimal(sys.float_info.max)


def numeric_literal(text: str) -> exp.Expression:
    """A numeric literal with ksqlDB's type: INTEGER, else BIGINT; ``1.5`` a DECIMAL; ``1E2`` a DOUBLE.

    Raises :class:`ParseError` for integers beyond BIGINT and numbers beyond DOUBLE."""
    if "e" in text.lower():
        if abs(decimal.Decimal(text)) > _DOUBLE_MAX:
            raise ParseError(f"Number overflows DOUBLE: {text}")
        return exp.cast(exp.Literal.number(text), "DOUBLE")
    if "." in text:
        return exp.Literal.number(text)  # DuckDB types 1.50 as DECIMAL(3,2), as ksqlDB does
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise ParseError(f"Invalid numeric literal: {text}")
    if -(2**31) <= value < 2**31:
        return exp.Literal.number(text)
    return exp.cast(exp.Literal.number(text), "BIGINT")


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
