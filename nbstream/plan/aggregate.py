"""Planning of ``GROUP BY`` queries: a stateless pre-projection, aggregate calls, a post-projection.

A query ``SELECT g, COUNT(*), SUM(x) + 1 FROM s WINDOW … WHERE … GROUP BY g HAVING …`` becomes:

* ``pre``: a :class:`StatelessPlan` over the source computing the group expressions (``__g0``…)
  and the aggregates' column arguments (``__a0``…) after ``WHERE``;
* ``calls``: each distinct aggregate call, reading its argument column, kept in slots
  (:mod:`nbstream.physical.aggregates`) and read as ``__agg0``…;
* ``columns`` / ``having``: the projection and HAVING compiled over ``__g*``, ``__agg*``,
  ``WINDOWSTART`` and ``WINDOWEND`` — the result's key columns are the group expressions.

ksqlDB's rules are checked here: every group expression is selected (it becomes a key column);
every other column is read inside an aggregate or through a group expression.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import duckdb
from sqlglot import exp

from nbstream.catalog import functions
from nbstream.catalog.catalog import Source
from nbstream.catalog.schema import WINDOW_BOUNDS, LogicalSchema
from nbstream.catalog.types import BIGINT, SqlType
from nbstream.errors import BindError, UnsupportedError
from nbstream.physical.aggregates import Aggregate, column_count, keeps_nested_state, resolve
from nbstream.physical.expressions import ExpressionCompiler, Scope, ScopeColumn, TypeProbe, UnknownColumnError, quote
from nbstream.plan.aliases import AliasGenerator
from nbstream.plan.logical import OutputColumn, Scan, Sink, StatelessPlan
from nbstream.settings import find_setting
from nbstream.sql.ast import Dereference, Query, WindowSpec
from nbstream.sql.printer import ksql_text

#: ksqlDB's default grace period is this less the window size (``StreamAggregateBuilder.defaultGrace``).
DEFAULT_GRACE_MS = 24 * 60 * 60 * 1000

#: Kafka Streams' record cache (``ksql.streams.`` prefix optional; ``statestore.cache.max.bytes`` is its
#: newer name) and ksqlDB's default size of it (``KsqlConfig``'s streams defaults): 10 MB.
RECORD_CACHE_PROPERTIES = ("cache.max.bytes.buffering", "statestore.cache.max.bytes")
DEFAULT_RECORD_CACHE_BYTES = 10_000_000


@dataclass(frozen=True)
class AggregateCall:
    """One aggregate of the query: reads pre column ``arg`` (None for ``COUNT(*)``)."""

    arg: str | None
    aggregate: Aggregate


@dataclass(frozen=True)
class AggregatePlan:
    """Source → pre-projection → group + aggregate (windowed) → projection/HAVING → sink."""

    pre: StatelessPlan
    groups: tuple[OutputColumn, ...]
    calls: tuple[AggregateCall, ...]
    columns: tuple[OutputColumn, ...]
    having: str | None = None
    having_expression: str | None = None  # ``having`` as bound ksqlDB text
    window: WindowSpec | None = None
    emit_final: bool = False
    sink: Sink | None = None
    limit: int | None = None
    table_keys: tuple[str, ...] = ()  # TABLE input: the pre columns holding the input row's key
    emits_table: bool = True
    #: Whether the groups are the source's key columns, so each group's records share one input
    #: partition (ksqlDB needs no repartition): each partition can then be a task with its own clock.
    keyed_by_source: bool = False
    #: Whether Kafka Streams' record cache is on (:func:`record_cache_on`): EMIT CHANGES then writes
    #: each group's (and window's) last change of a micro-batch, as a cache flushed at every commit.
    record_cache: bool = False

    @property
    def scan(self) -> Scan:
        return self.pre.scan

    @property
    def schema(self) -> LogicalSchema:
        return LogicalSchema(tuple(c.column() for c in self.columns))

    @property
    def grace_ms(self) -> int:
        """The window's grace period (see :func:`window_grace_ms`)."""
        return DEFAULT_GRACE_MS if self.window is None else window_grace_ms(self.window, self.emit_final)


def record_cache_on(properties: Mapping[str, object]) -> bool:
    """Whether the ksqlDB configuration ``properties`` turns Kafka Streams' record cache on: a size
    above 0 bytes, ksqlDB's default when none is given. A size that is not a number is a BindError."""
    for name in RECORD_CACHE_PROPERTIES:
        found = find_setting(properties, name)
        if found is None:
            continue
        key, value = found
        try:
            return int(str(value).strip()) > 0
        except ValueError:
            raise BindError(f"Invalid value {value!r} for configuration {key}: Not a number of type LONG") from None
    return DEFAULT_RECORD_CACHE_BYTES > 0


def window_grace_ms(window: WindowSpec, emit_final: bool) -> int:
    """A window's grace period. Without GRACE PERIOD, as ksqlDB: none with EMIT FINAL, else 24 hours
    less the window's size (a session's gap), so that a window closes 24 hours after it starts."""
    if window.grace_ms is None:
        return 0 if emit_final else max(DEFAULT_GRACE_MS - window.size_ms, 0)
    return window.grace_ms


def is_aggregate_query(query: Query) -> bool:
    """Whether ``query`` aggregates: GROUP BY, a WINDOW, HAVING or an aggregate function call."""
    select = query.select
    if select.args.get("group") or select.args.get("having") or query.window is not None:
        return True
    return any(_aggregate_calls(item) for item in select.expressions)


def plan_aggregate(query: Query, source: Source, scope: Scope, con: duckdb.DuckDBPyConnection, *,
                   scan: Scan, sink: Sink | None, params: Mapping[str, object] | None = None,
                   properties: Mapping[str, object] | None = None) -> AggregatePlan:
    """Plan the aggregating ``query`` over ``source`` (``scope``: the names it may reference;
    ``properties``: the ksqlDB configuration, e.g. ``ksql.functions.collect_list.limit``)."""
    select = query.select
    if query.partition_by:
        raise BindError("PARTITION BY is not valid with GROUP BY: the result is keyed by the GROUP BY")
    if source.value_format == "KAFKA":
        raise BindError(f"Source(s) {source.name} are using the 'KAFKA' value format. "
                        "This format does not yet support GROUP BY.")
    if query.emit == "FINAL" and query.window is None:
        raise BindError("EMIT FINAL is only supported for windowed aggregations.")
    compiler = ExpressionCompiler(scope, TypeProbe(con, scope), params=params)
    group_nodes = _group_nodes(select)
    transient = sink is None
    if not group_nodes and transient:  # a push query aggregates every row into one (ksqlDB's transient queries)
        group_nodes = [exp.Literal.number(1)]
    if not group_nodes:
        raise BindError("Aggregate query without GROUP BY: add a GROUP BY clause (ksqlDB does not support "
                        "aggregating a whole stream into one row).")
    where, where_text = _where_sql(select, compiler, windowed=query.window is not None)
    groups = [_compiled(compiler, node, f"__g{i}") for i, node in enumerate(group_nodes)]
    having_node = select.args["having"].this if select.args.get("having") else None
    if having_node is not None:
        _check_no_window_bounds(having_node, scope)
    items = list(select.expressions)
    call_nodes = _distinct_calls([*items, *([having_node] if having_node is not None else [])])
    calls, args = _plan_calls(call_nodes, compiler, properties or {})
    table_keys = _table_key_columns(source) if source.is_table else []
    if source.is_table:
        _check_undoable(calls)
    _check_state_format(calls, source)
    pre = StatelessPlan(scan=scan, columns=tuple(groups + args + table_keys), where=where, emits_table=source.is_table,
                        where_expression=where_text)
    post_scope = _post_scope(groups, calls, query.window is not None)
    rewrite = _Rewriter(group_nodes, call_nodes, scope)
    post = ExpressionCompiler(post_scope, TypeProbe(con, post_scope), params=params)
    columns = _project(items, rewrite, post, source, len(groups), transient=transient)
    having = having_text = None
    if having_node is not None:
        compiled = post.compile(rewrite(having_node, "HAVING"))
        having, having_text = compiled.sql("duckdb"), ksql_text(having_node)
    return AggregatePlan(
        pre=pre, groups=tuple(groups), calls=tuple(calls), columns=tuple(columns), having=having,
        having_expression=having_text,
        window=query.window, emit_final=query.emit == "FINAL", sink=sink, limit=query.limit,
        table_keys=tuple(c.name for c in table_keys),
        keyed_by_source=sorted(g.sql for g in groups) == sorted(quote(k.name) for k in source.schema.key),
    )


# -- parts --------------------------------------------------------------------------------------


def _group_nodes(select: exp.Select) -> list[exp.Expression]:
    group = select.args.get("group")
    if group is None:
        return []
    if group.args.get("grouping_sets") or group.args.get("cube") or group.args.get("rollup"):
        raise UnsupportedError("GROUPING SETS, CUBE and ROLLUP are not supported")
    nodes: list[exp.Expression] = []
    for node in group.expressions:
        if isinstance(node, exp.Tuple | exp.Paren):  # GROUP BY (a, b)
            nodes += list(node.expressions) if isinstance(node, exp.Tuple) else [node.this]
        else:
            nodes.append(node)
    seen: list[str] = []
    for node in nodes:
        key = _normalized(node)
        if key in seen:
            raise BindError(f"Duplicate GROUP BY expression: {node.sql()}")
        seen.append(key)
    return nodes


def _where_sql(select: exp.Select, compiler: ExpressionCompiler, *, windowed: bool) -> tuple[str | None, str | None]:
    """WHERE as DuckDB SQL and as ksqlDB text (None, None without one)."""
    where = select.args.get("where")
    if where is None:
        return None, None
    try:
        compiled = compiler.compile_filter(where.this)
    except UnknownColumnError as error:  # the WHERE clause filters the input: no window yet (ksqlDB's words)
        if windowed and error.column.upper() in WINDOW_BOUNDS:
            raise BindError(f"Error in WHERE expression: Unknown column {error.column.upper()}.") from None
        raise
    if compiler.type_of(compiled).name not in ("BOOLEAN", "NULL"):
        raise BindError(f"WHERE must be a BOOLEAN expression: {where.this.sql()}")
    return compiled.sql("duckdb"), ksql_text(where.this)


def _check_no_window_bounds(having: exp.Expression, scope: Scope) -> None:
    """HAVING may not read WINDOWSTART or WINDOWEND (unless the source has such a column), as in ksqlDB."""
    for column in having.find_all(exp.Column):
        name = column.name.upper()
        if name in WINDOW_BOUNDS and not column.this.quoted and not any(c.name.upper() == name
                                                                         for c in scope.columns):
            raise BindError(f"Window bounds column {name} can only be used in the SELECT clause of "
                            "windowed aggregations")


def _compiled(compiler: ExpressionCompiler, node: exp.Expression, name: str) -> OutputColumn:
    if _aggregate_calls(node):
        raise BindError(f"GROUP BY does not support aggregate functions: {node.sql()}")
    compiled = compiler.compile(node)
    sql_type = compiler.type_of(compiled)
    if sql_type.name == "NULL":
        raise BindError(f"GROUP BY expression has no type: {node.sql()}")
    return OutputColumn(name, sql_type, compiled.sql("duckdb"), expression=ksql_text(node))


def _aggregate_calls(node: exp.Expression) -> list[exp.Anonymous]:
    return [n for n in node.find_all(exp.Anonymous) if functions.is_aggregate(str(n.this))]


def _distinct_calls(nodes: list[exp.Expression]) -> list[exp.Anonymous]:
    calls: dict[str, exp.Anonymous] = {}
    for node in nodes:
        for call in _aggregate_calls(node):
            if any(_aggregate_calls(arg) for arg in call.expressions):
                raise BindError(f"Aggregate functions can not be nested: {call.sql()}")
            calls.setdefault(_normalized(call), call)
    return list(calls.values())


def _plan_calls(calls: list[exp.Anonymous], compiler: ExpressionCompiler, properties: Mapping[str, object]
                ) -> tuple[list[AggregateCall], list[OutputColumn]]:
    planned, args = [], []
    for j, call in enumerate(calls):
        name = str(call.this).upper()
        operands = list(call.expressions)
        if not operands or isinstance(operands[0], exp.Star):
            planned.append(AggregateCall(None, resolve(name, None, [], properties)))
            continue
        topk = name in ("TOPK", "TOPKDISTINCT")
        columns = _topk_columns(operands) if topk else column_count(name, len(operands))
        if len(operands) < columns:
            raise BindError(f"{name} needs {columns} column arguments: {call.sql()}")
        arg = _compiled(compiler, operands[0], f"__a{j}")
        others = [_compiled(compiler, o, arg.name) for o in operands[1:columns]]
        if others:
            arg = _sort_struct(arg, others) if topk else _pack(arg, others)
        params = [_literal(p, name) for p in operands[columns:]]
        planned.append(AggregateCall(arg.name, resolve(name, arg.type, params, properties, columns=columns)))
        args.append(arg)
    return planned, args


def _topk_columns(operands: list[exp.Expression]) -> int:
    """TOPK(sort_col, [col…,] k): how many column arguments precede the literal ``k``."""
    return next((i for i, o in enumerate(operands) if i and isinstance(o, exp.Literal)), len(operands))


def _sort_struct(sort: OutputColumn, others: list[OutputColumn]) -> OutputColumn:
    """TOPK over several columns ranks ``STRUCT<sort_col, col0, …>`` values by ``sort_col``."""
    fields = [("sort_col", sort), *((f"col{i}", c) for i, c in enumerate(others))]
    sql = "{" + ", ".join(f"'{n}': ({c.sql})" for n, c in fields) + "}"
    text = ", ".join(c.expression or c.name for _, c in fields)
    return OutputColumn(sort.name, SqlType.struct([(n, c.type) for n, c in fields]), sql, expression=text)


def _pack(first: OutputColumn, others: list[OutputColumn]) -> OutputColumn:
    """The column arguments of a multi-column aggregate as one ``STRUCT<a0, a1, …>`` column."""
    fields = [(f"a{i}", c) for i, c in enumerate([first, *others])]
    sql = "{" + ", ".join(f"'{n}': ({c.sql})" for n, c in fields) + "}"
    text = ", ".join(c.expression or c.name for _, c in fields)
    return OutputColumn(first.name, SqlType.struct([(n, c.type) for n, c in fields]), sql, expression=text)


def _check_state_format(calls: list[AggregateCall], source: Source) -> None:
    """ksqlDB stores an aggregate's intermediate value in the source's value format: DELIMITED
    cannot hold the STRUCT, ARRAY or MAP some functions keep."""
    if source.value_format == "DELIMITED" and any(keeps_nested_state(c.aggregate.name) for c in calls):
        raise BindError("One of the functions used in the statement has an intermediate type that the value "
                        "format can not handle. Please remove the function or change the format.")


def _check_undoable(calls: list[AggregateCall]) -> None:
    """A TABLE's updates retract old rows: every function must be able to undo a value (ksqlDB's TableUdaf)."""
    for call in calls:
        if any(slot.signed is None for slot in call.aggregate.slots):
            raise BindError(f"The aggregation function {call.aggregate.name} cannot be applied to a table source, "
                            "only to a stream source.")


def _literal(node: exp.Expression, function: str) -> object:
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Literal) and not node.is_string:
        return int(node.this) if node.this.lstrip("-").isdigit() else float(node.this)
    if isinstance(node, exp.Literal):
        return str(node.this)
    raise BindError(f"{function}: parameters after the first argument must be literals, not {node.sql()}")


def _table_key_columns(source: Source) -> list[OutputColumn]:
    return [OutputColumn(f"__k{i}", c.type, quote(c.name)) for i, c in enumerate(source.schema.key)]


def _post_scope(groups: list[OutputColumn], calls: list[AggregateCall], windowed: bool) -> Scope:
    cols = [ScopeColumn(g.name, quote(g.name), g.type) for g in groups]
    cols += [ScopeColumn(f"__agg{j}", quote(f"__agg{j}"), c.aggregate.type) for j, c in enumerate(calls)]
    if windowed:
        cols += [ScopeColumn("WINDOWSTART", quote("WINDOWSTART"), BIGINT),
                 ScopeColumn("WINDOWEND", quote("WINDOWEND"), BIGINT)]
    return Scope(cols)


class _Rewriter:
    """Rewrites a projection item or HAVING to read ``__g*`` and ``__agg*`` instead of the source."""

    def __init__(self, groups: list[exp.Expression], calls: list[exp.Anonymous], scope: Scope) -> None:
        self.groups = {_normalized(g): i for i, g in enumerate(groups)}
        self.calls = {_normalized(c): j for j, c in enumerate(calls)}
        self.scope = scope

    def __call__(self, node: exp.Expression, clause: str) -> exp.Expression:
        def replace(n: exp.Expression) -> exp.Expression:
            key = _normalized(n)
            if key in self.calls:
                return exp.column(f"__agg{self.calls[key]}", quoted=True)
            if key in self.groups:
                return exp.column(f"__g{self.groups[key]}", quoted=True)
            return n

        rewritten = node.copy().transform(replace)
        left = [c for c in rewritten.find_all(exp.Column)
                if not c.name.startswith(("__g", "__agg")) and c.name.upper() not in ("WINDOWSTART", "WINDOWEND")]
        if left:
            names = ", ".join(sorted({self.scope.resolve(c.name).name for c in left}))
            where = "SELECT expression(s)" if clause == "SELECT" else "HAVING expression(s)"
            raise BindError(f"Non-aggregate {where} not part of GROUP BY: {names}")
        return rewritten


#: The names of the key columns a push query's GROUP BY adds where it does not select them.
HIDDEN_KEY = "KSQL_GROUP_KEY_{}"


def _project(items: list[exp.Expression], rewrite: _Rewriter, post: ExpressionCompiler, source: Source,
             group_count: int, *, transient: bool = False) -> list[OutputColumn]:
    """The result columns: one key column per group expression (in GROUP BY order), then values. A
    persistent query must select every group expression and a value; a push query (``transient``)
    need not, as in ksqlDB: a group it does not select is a key column of its own name
    (:data:`HIDDEN_KEY`), which its client does not see."""
    aliases = AliasGenerator(c.name for c in source.schema.columns)
    keys: dict[int, OutputColumn] = {}
    values: list[OutputColumn] = []
    windowed = any(c.name == "WINDOWSTART" for c in post.scope.columns)
    for item in _expand_star(items, source):
        node = item.this if isinstance(item, exp.Alias) else item
        if windowed and isinstance(node, exp.Column) and not isinstance(item, exp.Alias) \
                and node.name.upper() in ("WINDOWSTART", "WINDOWEND"):
            continue  # a windowed result carries its window's bounds beside its key already
        rewritten = rewrite(node, "SELECT")
        name = _item_name(item, node, aliases, rewrite.scope)
        compiled = post.compile(rewritten)
        column = OutputColumn(name, post.type_of(compiled), compiled.sql("duckdb"), expression=ksql_text(node))
        group = _group_index(rewritten)
        if group is not None and group not in keys:
            keys[group] = replace(column, role="KEY")
        elif group is not None:
            raise BindError(f"The projection contains a key column more than once: {name}")
        else:
            values.append(column)
    missing = [i for i in range(group_count) if i not in keys]
    if missing and not transient:
        raise BindError("Key missing from projection (ie, SELECT). The query used to build the result must "
                        "include the GROUP BY expressions in its projection.")
    for i in missing:
        compiled = post.compile(exp.column(f"__g{i}", quoted=True))
        keys[i] = OutputColumn(HIDDEN_KEY.format(i), post.type_of(compiled), compiled.sql("duckdb"), "KEY")
    if not values and not transient:
        raise BindError("The projection contains no value columns.")
    return [keys[i] for i in range(group_count)] + values


def _expand_star(items: list[exp.Expression], source: Source) -> list[exp.Expression]:
    """``*`` as the source's key and value columns (valid when every one of them is grouped by)."""
    expanded: list[exp.Expression] = []
    for item in items:
        if isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star)):
            expanded += [exp.column(c.name, quoted=True) for c in (*source.schema.key, *source.schema.value)]
        else:
            expanded.append(item)
    return expanded


def _item_name(item: exp.Expression, node: exp.Expression, aliases: AliasGenerator, scope: Scope) -> str:
    if isinstance(item, exp.Alias):
        return item.alias
    if isinstance(node, exp.Column):
        return scope.resolve(node.name).name
    if isinstance(node, Dereference):
        return aliases.field(str(node.args["field"]))
    return aliases.next_generated()


def _group_index(node: exp.Expression) -> int | None:
    if isinstance(node, exp.Column) and node.name.startswith("__g"):
        return int(node.name[3:])
    return None


def _normalized(node: exp.Expression) -> str:
    """``node`` as text without source qualifiers, so ``s.x``, ``x`` and ``"X"`` match."""
    bare = node.copy()
    for column in bare.find_all(exp.Column):
        column.set("table", None)
        ident = column.this
        if isinstance(ident, exp.Identifier) and not ident.quoted:
            column.set("this", exp.to_identifier(ident.name.upper(), quoted=True))
    return bare.transform(_printable).sql()


def _printable(node: exp.Expression) -> exp.Expression:
    """``struct->field`` as a call sqlglot can print (only to compare expressions as text); no parentheses."""
    if isinstance(node, exp.Paren):
        return node.this
    if isinstance(node, Dereference):
        return exp.Anonymous(this="__DEREF", expressions=[node.this, exp.Literal.string(str(node.args["field"]))])
    return node

