"""ksqlDB's rules for pull queries: what ksqlDB 0.29 refuses to answer is refused here, in its words.

The rules run in ksqlDB's order:

1. :func:`check_clauses` (ksqlDB's ``PullQueryValidator``), before the query is planned: no JOIN,
   WINDOW, GROUP BY, PARTITION BY or HAVING; a LIMIT only while ``ksql.query.pull.limit.clause.enabled``
   and never negative; no ``ROWPARTITION`` or ``ROWOFFSET``.
2. :func:`check_where` (``QueryFilterNode`` and ``PullPhysicalPlanBuilder``), once the query is
   planned (so that its type errors come first): the WHERE clause of a pull query on a TABLE, in
   disjunctive normal form (``IN`` as equalities, ``BETWEEN`` as two bounds), decides whether the
   query is a key lookup, a range scan or a table scan. With ``ksql.query.pull.table.scan.enabled``
   false a query that needs a table scan is refused, saying why; with it (the default) only the
   key values compared are checked (no NULL, of a type the key column takes).

nbstream answers every pull query these rules let through the same way, from the table's state;
the rules decide only what is refused. nbstream answers two kinds of pull queries ksqlDB refuses:
those on a TABLE made by ``CREATE TABLE`` (ksqlDB materializes only ``CREATE SOURCE TABLE`` and
tables written by a persistent query; nbstream every table), and predicates ksqlDB refuses in any
case (``IS NULL``, a boolean column, a function call), taken as a table scan's filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from sqlglot import exp

from nbstream.catalog.catalog import Source
from nbstream.catalog.schema import WINDOW_BOUNDS, Column, LogicalSchema
from nbstream.catalog.types import SqlType
from nbstream.errors import BindError
from nbstream.sql import ast
from nbstream.sql.text import ksql_text

#: ksqlDB's ``PullQueryValidator.PULL_QUERY_SYNTAX_HELP``.
SYNTAX_HELP = " See https://cnfl.io/queries for more info.\nAdd EMIT CHANGES if you intended to issue a push query."

#: Pseudo-columns ksqlDB refuses in pull queries (and scalable push queries).
DISALLOWED_COLUMNS = ("ROWPARTITION", "ROWOFFSET")

PlanKind = Literal["KEY_LOOKUP", "RANGE_SCAN", "TABLE_SCAN"]


@dataclass(frozen=True)
class PullOptions:
    """The configuration the rules depend on (ksqlDB's ``ksql.query.pull.*`` properties)."""

    table_scans: bool = True
    range_scans: bool = True
    limit_clause: bool = True

    @classmethod
    def of(cls, setting: Any) -> PullOptions:
        """The options from ``setting(name)``, a property's value or None (its default)."""
        def enabled(name: str) -> bool:
            value = setting(f"ksql.query.pull.{name}.enabled")
            return True if value is None else str(value).strip().lower() == "true"

        return cls(enabled("table.scan"), enabled("range.scan"), enabled("limit.clause"))


class PullQueryError(BindError):
    """A pull query ksqlDB would refuse."""


# -- 1. the clauses -------------------------------------------------------------------------------------


def check_clauses(query: ast.Query, options: PullOptions) -> None:
    """ksqlDB's ``PullQueryValidator``: each message ends with :data:`SYNTAX_HELP`."""
    select = query.select
    problem = (
        "Pull queries don't support JOIN clauses." if select.args.get("joins") else
        "Pull queries don't support WINDOW clauses." if query.window is not None else
        "Pull queries don't support GROUP BY clauses." if select.args.get("group") else
        "Pull queries don't support PARTITION BY clauses." if query.partition_by else
        "Pull queries don't support HAVING clauses." if select.args.get("having") else
        _limit_problem(query, options) or _disallowed_columns(select))
    if problem:
        raise PullQueryError(problem + SYNTAX_HELP)


def _limit_problem(query: ast.Query, options: PullOptions) -> str | None:
    if query.limit is not None and not options.limit_clause:
        return ("LIMIT clause in pull queries is currently disabled. You can enable them by setting "
                "ksql.query.pull.limit.clause.enabled=true.")
    if query.limit is not None and query.limit < 0:
        return "Pull queries don't support negative integers in the LIMIT clause."
    return None


def _disallowed_columns(select: exp.Select) -> str | None:
    for clause, nodes in (("SELECT", select.expressions), ("WHERE", [_where(select)])):
        names = [c.name for node in nodes if node is not None for c in node.find_all(exp.Column)
                 if c.name.upper() in DISALLOWED_COLUMNS and not c.this.quoted]
        if names:
            listed = ", ".join(f"`{name}`" for name in dict.fromkeys(names))
            return f"Pull queries don't support the following columns in {clause} clauses: {listed}\n"
    return None


def _where(select: exp.Select) -> exp.Expression | None:
    where = select.args.get("where")
    return where.this if where is not None else None


# -- 2. the WHERE clause ------------------------------------------------------------------------------


def check_where(query: ast.Query, source: Source, options: PullOptions,
                params: Mapping[str, object] | None = None) -> PlanKind:
    """How ksqlDB would answer the pull query ``query`` on the TABLE ``source`` (``params``: the
    values of its ``:name`` placeholders); a :class:`PullQueryError` where ksqlDB refuses it."""
    where = _where(query.select)
    if where is None:
        return _allowed("TABLE_SCAN", options)
    disjuncts = _dnf(_rewrite(where))
    keys = source.schema.key
    if _needs_table_scan(disjuncts, source.schema, source.window is not None, options):
        return _allowed("TABLE_SCAN", options)
    constraints = [_constraint(d, keys, params or {}) for d in disjuncts]
    return _allowed(_plan_kind(constraints, source.window is not None, options), options)


def _allowed(kind: PlanKind, options: PullOptions) -> PlanKind:
    if kind == "TABLE_SCAN" and not options.table_scans:
        raise PullQueryError("Query requires table scan to be enabled. Table scans can be enabled by setting "
                             "ksql.query.pull.table.scan.enabled=true")
    return kind


def _rewrite(node: exp.Expression) -> exp.Expression:
    """ksqlDB's ``PullQueryRewriter``: ``x BETWEEN a AND b`` as ``x >= a AND x <= b``, ``x IN (a, b)``
    as ``x = a OR x = b``; parentheses dropped."""
    if isinstance(node, exp.Paren):
        return _rewrite(node.this)
    if isinstance(node, exp.Between):
        return exp.And(this=exp.GTE(this=node.this, expression=node.args["low"]),
                       expression=exp.LTE(this=node.this, expression=node.args["high"]))
    if isinstance(node, exp.In) and node.expressions:
        equalities = [exp.EQ(this=node.this, expression=value) for value in node.expressions]
        disjunction: exp.Expression = equalities[-1]
        for equality in reversed(equalities[:-1]):
            disjunction = exp.Or(this=equality, expression=disjunction)
        return disjunction
    if isinstance(node, exp.And | exp.Or):
        return type(node)(this=_rewrite(node.this), expression=_rewrite(node.expression))
    if isinstance(node, exp.Not):
        return exp.Not(this=_rewrite(node.this))
    return node


def _dnf(node: exp.Expression, negated: bool = False) -> list[list[exp.Expression]]:
    """``node`` in disjunctive normal form: the disjuncts, each the list of its conjuncts (NOT pushed
    down to the terms it cannot go through, as ksqlDB's ``LogicRewriter`` does)."""
    if isinstance(node, exp.Not):
        return _dnf(node.this, not negated)
    if isinstance(node, exp.And | exp.Or):
        left, right = _dnf(node.this, negated), _dnf(node.expression, negated)
        if isinstance(node, exp.Or) != negated:
            return left + right
        return [a + b for a in left for b in right]
    return [[exp.Not(this=node) if negated else node]]


_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)
_WINDOW_BOUND_COMPARISONS = (exp.EQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_NAMES: dict[type[exp.Expression], str] = {
    exp.EQ: "EQUAL", exp.NEQ: "NOT_EQUAL", exp.GT: "GREATER_THAN", exp.GTE: "GREATER_THAN_OR_EQUAL",
    exp.LT: "LESS_THAN", exp.LTE: "LESS_THAN_OR_EQUAL", exp.NullSafeEQ: "IS_NOT_DISTINCT_FROM",
    exp.NullSafeNEQ: "IS_DISTINCT_FROM"}


@dataclass
class _Disjunct:
    """What ksqlDB's ``QueryFilterNode.Validator`` learns of one disjunct."""

    keys: tuple[Column, ...]
    columns: tuple[Column, ...]  # every column of the source: a LIKE may test any
    windowed: bool
    options: PullOptions
    seen: set[int] = field(default_factory=set)
    keyed: bool = False
    table_scan: bool = False

    def table_scan_or(self, message: str) -> None:
        if not self.options.table_scans:
            raise _where_error(message, self.windowed)
        self.table_scan = True


def _needs_table_scan(disjuncts: list[list[exp.Expression]], schema: LogicalSchema, windowed: bool,
                      options: PullOptions) -> bool:
    """ksqlDB's ``validateWhereClauseAndCheckTableScan``: the first disjunct that needs a table scan
    decides; one that cannot be answered without one is refused while table scans are off."""
    for terms in disjuncts:
        keys = schema.key
        state = _Disjunct(keys, schema.columns, windowed, options)
        for term in terms:
            _validate_term(term, state)
        if state.table_scan:
            return True
        text = ksql_text(_conjunction(terms))
        if not state.keyed:
            if options.table_scans:
                return True
            raise _where_error(f"WHERE clause missing key column for disjunct: {text}", windowed)
        if len(state.seen) != len(keys):
            if options.table_scans:
                return True
            named = ", ".join(f"`{keys[i].name}`" for i in sorted(state.seen))
            raise _where_error(f"Multi-column sources must specify every key in the WHERE clause. "
                               f"Specified: [{named}] Expected: [{', '.join(str(k) for k in keys)}]", windowed)
    return False


def _conjunction(terms: list[exp.Expression]) -> exp.Expression:
    node = terms[0]
    for term in terms[1:]:
        node = exp.And(this=node, expression=term)
    return node


def _validate_term(term: exp.Expression, state: _Disjunct) -> None:
    if isinstance(term, exp.Like):
        _validate_like(term, state)
    elif isinstance(term, _COMPARISONS):
        _validate_comparison(term, state)
    else:  # ksqlDB refuses any other predicate; nbstream filters with it in a table scan
        state.table_scan_or(f"Unsupported expression in WHERE clause: {ksql_text(term)}")


def _validate_comparison(node: exp.Expression, state: _Disjunct) -> None:
    column, other = _sides(node)
    if column is None:
        state.table_scan_or("A comparison must directly reference a key column")
        return
    if other.find(exp.Column) is not None:
        state.table_scan_or("A comparison must be between a key column and a resolvable expression")
        return
    name = column.name
    if name.upper() in WINDOW_BOUNDS and not column.this.quoted:
        if not isinstance(node, _WINDOW_BOUND_COMPARISONS):
            raise _where_error(f"Unsupported {name.upper()} bounds: {_NAMES[type(node)]}", True)
        if not state.windowed:
            raise _where_error("Cannot use WINDOWSTART/WINDOWEND on non-windowed source", False)
        return
    index = _key_index(state.keys, name)
    if index is None:
        return
    if not isinstance(node, exp.EQ | exp.GT | exp.GTE | exp.LT | exp.LTE):
        state.table_scan_or(f"Bound on key columns '[{', '.join(str(k) for k in state.keys)}]' must currently be '='")
    if index in state.seen and not state.options.table_scans:
        raise _where_error("A comparison condition on the key column cannot be combined with other comparisons "
                           "such as an IN predicate", state.windowed)
    state.seen.add(index)
    state.keyed = True


def _validate_like(node: exp.Like, state: _Disjunct) -> None:
    if not isinstance(node.this, exp.Column):
        state.table_scan_or("Like condition must be between strings")
        return
    column = next((c for c in state.columns if c.name == node.this.name), None)
    if column is not None and column.type.name != "STRING":
        raise _where_error(f"The column type for Like condition must be VARCHAR. The column type is "
                           f"{column.type.name}", state.windowed)
    if not isinstance(node.expression, exp.Null) and not (isinstance(node.expression, exp.Literal)
                                                          and node.expression.is_string):
        raise _where_error(f"Like condition on non-string pattern {ksql_text(node.expression)}", state.windowed)


def _sides(node: exp.Expression) -> tuple[exp.Column | None, exp.Expression]:
    """The column a comparison bounds (its right side first, as ksqlDB looks) and the other side."""
    if isinstance(node.expression, exp.Column):
        return node.expression, node.this
    if isinstance(node.this, exp.Column):
        return node.this, node.expression
    return None, node.expression


def _key_index(keys: tuple[Column, ...], name: str) -> int | None:
    return next((i for i, key in enumerate(keys) if key.name == name), None)


def _where_error(message: str, windowed: bool) -> PullQueryError:
    """ksqlDB's ``QueryFilterNode.invalidWhereClauseException``."""
    window = ("\n - (optionally) limits the time bounds of the windowed table.\n"
              "\t Bounds on [`WINDOWSTART`, `WINDOWEND`] are supported\n"
              "\t Supported operators are [EQUAL, GREATER_THAN, GREATER_THAN_OR_EQUAL, LESS_THAN, "
              "LESS_THAN_OR_EQUAL]") if windowed else ""
    return PullQueryError(
        f"{message}.{SYNTAX_HELP}\nPull queries require a WHERE clause that:\n"
        " - includes a key equality expression, e.g. `SELECT * FROM X WHERE <key-column> = Y;`.\n"
        " - in the case of a multi-column key, is a conjunction of equality expressions that cover all key columns.\n"
        " - to support range expressions, e.g.,  SELECT * FROM X WHERE <key-column> < Y;`, range scans need to be "
        f"enabled by setting ksql.query.pull.range.scan.enabled=true{window}\n"
        "If more flexible queries are needed, , table scans can be enabled by setting "
        "ksql.query.pull.table.scan.enabled=true.")


# -- the key values --------------------------------------------------------------------------------------


Constraint = dict[int, tuple[type[exp.Expression], str]]  # key index -> the comparison bounding it, the key's type


def _constraint(terms: list[exp.Expression], keys: tuple[Column, ...], params: Mapping[str, object]) -> Constraint:
    """ksqlDB's ``KeyValueExtractor``: the comparison kept per key column (an equality over any other),
    each key value checked: not NULL, and of a type the key column takes."""
    operators: Constraint = {}
    for term in terms:
        if not isinstance(term, _COMPARISONS):
            continue
        column, other = _sides(term)
        index = None if column is None else _key_index(keys, column.name)
        if index is None:
            continue
        _check_key_value(other, keys[index], params, term)
        if index in operators and operators[index][0] is exp.EQ:
            continue
        if isinstance(term, exp.EQ) or index not in operators:
            operators[index] = (type(term), keys[index].type.name)
    return operators


def _plan_kind(constraints: list[Constraint], windowed: bool, options: PullOptions) -> PlanKind:
    """ksqlDB's ``PullPhysicalPlanBuilder.getPlanType``: key lookups where every disjunct bounds its
    keys by equality; a range scan for one disjunct bounding one STRING or BYTES key otherwise (a
    table scan on a windowed table or with range scans off)."""
    kinds = [_constraint_kind(c) for c in constraints]
    if "TABLE_SCAN" in kinds:
        return "TABLE_SCAN"
    if all(kind == "KEY_LOOKUP" for kind in kinds):
        return "KEY_LOOKUP"
    if len(kinds) == 1 and options.range_scans and not windowed:
        return "RANGE_SCAN"
    return "TABLE_SCAN"


def _constraint_kind(constraint: Constraint) -> PlanKind:
    if not constraint:
        return "TABLE_SCAN"
    if all(op is exp.EQ for op, _ in constraint.values()):
        return "KEY_LOOKUP"
    if len(constraint) > 1 or 0 not in constraint:
        return "TABLE_SCAN"
    op, key_type = constraint[0]
    ranged = op in (exp.GT, exp.GTE, exp.LT, exp.LTE) and key_type in ("STRING", "BYTES")
    return "RANGE_SCAN" if ranged else "TABLE_SCAN"


def _check_key_value(value: exp.Expression, key: Column, params: Mapping[str, object], term: exp.Expression) -> None:
    if isinstance(value, exp.Null):
        raise PullQueryError(f"Primary key columns can not be NULL: {ksql_text(term)}")
    literal = _literal_value(value, params)
    if literal is None:
        return  # an expression: ksqlDB evaluates it as the key's type
    shown, kind = literal
    if not _coercible(kind, key.type):
        raise PullQueryError(f"'{shown}' can not be converted to the type of the key column: "
                             f"{key.name} {key.type} KEY")


def _literal_value(node: exp.Expression, params: Mapping[str, object]) -> tuple[str, str] | None:
    """A literal's text (as Java's ``toString`` of its value) and ksqlDB type; None for other expressions."""
    if isinstance(node, exp.Placeholder) and node.name in params:
        value = params[node.name]
        if isinstance(value, str):
            return value, "STRING"
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value), "INTEGER" if -(2**31) <= value < 2**31 else "BIGINT"
        return None
    if isinstance(node, exp.Boolean):
        return ("true" if node.this else "false"), "BOOLEAN"
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        literal = _literal_value(node.this, params)
        return None if literal is None else ("-" + literal[0], literal[1])
    if not isinstance(node, exp.Literal):
        return None
    text = str(node.this)
    if node.is_string:
        return text, "STRING"
    if "e" in text.lower():
        return text, "DOUBLE"
    if "." in text:
        return str(Decimal(text)), "DECIMAL"
    return text, "INTEGER" if -(2**31) <= int(text) < 2**31 else "BIGINT"


#: ksqlDB's ``DefaultSqlValueCoercer.STRICT``: the types a value of each type may become.
_STRICT = {
    "BOOLEAN": {"BOOLEAN"},
    "INTEGER": {"INTEGER", "BIGINT", "DECIMAL", "DOUBLE"},
    "BIGINT": {"BIGINT", "DECIMAL", "DOUBLE"},
    "DECIMAL": {"DECIMAL", "DOUBLE"},
    "DOUBLE": {"DOUBLE"},
    "STRING": {"STRING", "TIMESTAMP", "TIME", "DATE", "BYTES"},
}


def _coercible(kind: str, target: SqlType) -> bool:
    return target.name in _STRICT.get(kind, set())

