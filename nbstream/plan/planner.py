"""From a parsed query to a plan: resolve names against the catalog, type-check, compile.

``plan_query`` is the one entry point: it never changes its inputs and returns a frozen plan.
Streaming rules ksqlDB enforces are checked here and raised as errors that name the user's
columns and sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import duckdb
from sqlglot import exp

from nbstream.analysis.custom_types import resolve_query
from nbstream.analysis.struct_star import expand_struct_stars
from nbstream.catalog.catalog import Catalog, Source
from nbstream.catalog.functions import is_table_function
from nbstream.catalog.schema import WINDOW_BOUNDS, Column
from nbstream.catalog.types import BIGINT, INTEGER
from nbstream.errors import BindError, UnsupportedError
from nbstream.physical.expressions import ExpressionCompiler, Scope, ScopeColumn, TypeProbe, quote
from nbstream.physical.table_functions import TableFunctionSink
from nbstream.plan.aggregate import AggregatePlan, is_aggregate_query, plan_aggregate, record_cache_on
from nbstream.plan.aliases import AliasGenerator
from nbstream.plan.join import JoinPlan, is_join_query, plan_join
from nbstream.plan.logical import OutputColumn, Scan, Sink, StatelessPlan
from nbstream.plan.repartition import Item, PartitionInput, Repartition, bind_partition_by, key_projection, star_columns
from nbstream.sql.ast import Dereference, Query
from nbstream.sql.printer import ksql_text

#: What a query plans into.
Plan = StatelessPlan | AggregatePlan | JoinPlan

#: Pseudo-columns and the decoded-relation columns they read.
PSEUDO_SCOPE = (("ROWTIME", BIGINT), ("ROWPARTITION", INTEGER), ("ROWOFFSET", BIGINT))


@dataclass(frozen=True)
class Target:
    """What a persistent query writes to, as the statement and catalog say."""

    sink: Sink
    kind: str  # STREAM | TABLE
    new_planner: bool = False  # ksql.new.query.planner.enabled (see _check_new_planner)
    properties: Mapping[str, object] = field(default_factory=dict)  # the engine's ksqlDB configuration


def scan_of(source: Source) -> Scan:
    """The scan step reading ``source``."""
    return Scan(
        source=source.name, topic=source.topic, schema=source.schema, key_format=source.key_format,
        value_format=source.value_format, key_properties=dict(source.key_properties),
        value_properties=dict(source.value_properties), timestamp=source.timestamp,
        timestamp_format=source.timestamp_format, is_table=source.is_table, windowed=source.window is not None,
    )


def sink_of(source: Source, partitions: int) -> Sink:
    """The sink writing into the existing stream or table ``source`` (whose topic has ``partitions``)."""
    return Sink(
        name=source.name, topic=source.topic, key_format=source.key_format, value_format=source.value_format,
        partitions=partitions, key_properties=dict(source.key_properties),
        value_properties=dict(source.value_properties), timestamp=source.timestamp,
        timestamp_format=source.timestamp_format,
    )


def source_scope(source: Source) -> Scope:
    """Every name a query over ``source`` may reference, as decoded-relation columns."""
    cols = [ScopeColumn(c.name, quote(c.name), c.type) for c in source.schema.columns]
    cols += [ScopeColumn(name, quote(name), t) for name, t in PSEUDO_SCOPE]
    if source.window is not None:
        cols += [ScopeColumn(name, quote(name), BIGINT) for name in WINDOW_BOUNDS]
    return Scope(cols, source=source.name)


def plan_query(
    query: Query,
    catalog: Catalog,
    con: duckdb.DuckDBPyConnection,
    *,
    target: Target | None = None,
    params: Mapping[str, object] | None = None,
    properties: Mapping[str, object] | None = None,
) -> Plan:
    """Bind ``query`` against ``catalog`` and compile it into a plan (``target``: its sink and the
    configuration it runs with; ``properties``: a push query's configuration)."""
    plan = _compiled_plan(query, catalog, con, target=target, params=params)
    if isinstance(plan, AggregatePlan):
        config = target.properties if target is not None else properties or {}
        plan = replace(plan, record_cache=record_cache_on(config))
    return plan


def _compiled_plan(query: Query, catalog: Catalog, con: duckdb.DuckDBPyConnection, *, target: Target | None,
                   params: Mapping[str, object] | None) -> Plan:
    query = expand_struct_stars(resolve_query(query, catalog.types), catalog)
    select = query.select
    if query.limit is not None and query.limit < 0:
        raise BindError(f"LIMIT {query.limit}: a LIMIT must not be negative")
    if target is not None and target.new_planner:
        _check_new_planner(query)
    if is_join_query(query):
        return plan_join(query, catalog, con, scan_of=scan_of, sink=None if target is None else target.sink,
                         params=params)
    source = catalog.get(_source_name(select))
    scope = source_scope(source)
    if is_aggregate_query(query):
        if _calls_table_function(select):
            raise BindError("Table functions cannot be used with aggregations.")
        return plan_aggregate(query, source, scope, con, scan=scan_of(source),
                              sink=None if target is None else target.sink, params=params,
                              properties=None if target is None else target.properties)
    compiler = ExpressionCompiler(scope, TypeProbe(con, scope), params=params)
    where = select.args.get("where")
    where_sql = where_text = None
    if where is not None:
        where_text = ksql_text(where.this)
        compiled = compiler.compile_filter(where.this)
        kind = compiler.type_of(compiled)
        if kind.name not in ("BOOLEAN", "NULL"):
            raise BindError(f"WHERE must be a BOOLEAN expression, not {kind}: {where.this.sql()}")
        where_sql = compiled.sql("duckdb")
    repartition = _repartition(query, source, compiler, con)
    table_functions = None if repartition is not None else TableFunctionSink(compiler.probe)
    compiler.table_functions = table_functions
    items = _project(select, source, compiler, repartition)
    compiler.table_functions = None
    calls = () if table_functions is None else tuple(table_functions.calls)
    if calls and source.is_table:
        raise BindError(f"Table source is not supported with table functions: {source.name} is a table")
    if repartition is None:
        columns = [item.column for item in items]
    else:
        columns = key_projection(items, repartition, None if target is None else target.sink.name)
    if target is None:
        sink = None
        emits_table = source.is_table
    else:
        sink = target.sink
        emits_table = target.kind == "TABLE"
        if repartition is None:
            columns = _sink_columns(items, source, target)
            _check_key_projection(source, columns, target)
    return StatelessPlan(
        scan=scan_of(source), columns=tuple(columns), where=where_sql, sink=sink,
        emits_table=emits_table, limit=query.limit, key_from_source=repartition is None, where_expression=where_text,
        table_functions=calls,
    )


def _check_new_planner(query: Query) -> None:
    """ksqlDB's new planner (``ksql.new.query.planner.enabled``) plans only a projection of one
    source: it rejects every other clause."""
    clauses = (("WHERE", query.select.args.get("where")), ("PARTITION BY", query.partition_by),
               ("LIMIT", query.limit))
    for clause, present in clauses:
        if present:
            raise UnsupportedError(f"New query planner does not support {clause}. "
                                   "Set ksql.new.query.planner.enabled=false.")


def _sink_columns(items: list[Item], source: Source, target: Target) -> list[OutputColumn]:
    """The result of a persistent query without PARTITION BY: key columns, then values.

    ksqlDB's old planner keeps the source's key order; the new planner keeps the projection's
    order and makes a key column only of what the projection selects (a stream may drop its key).
    """
    keys = [item for item in items if item.column.role == "KEY"]
    if not target.new_planner:
        order = [c.name for c in source.schema.key]
        keys.sort(key=lambda item: order.index(item.source_column) if item.source_column in order else len(order))
    return [item.column for item in keys] + [item.column for item in items if item.column.role != "KEY"]


def _source_name(select: exp.Select) -> str:
    from_ = select.args.get("from") or select.args.get("from_")
    if from_ is None:
        raise BindError("a query needs a FROM clause")
    table = from_.this
    if not isinstance(table, exp.Table):
        raise UnsupportedError(f"FROM {table.sql()}: only a stream or table name is supported")
    return table.name


def _repartition(query: Query, source: Source, compiler: ExpressionCompiler,
                 con: duckdb.DuckDBPyConnection) -> Repartition | None:
    if not query.partition_by:
        return None
    if source.is_table:
        raise BindError(f"PARTITION BY is only supported on streams, and {source.name} is a table. "
                        "Use GROUP BY to re-key a table.")
    aliases = {item.alias for item in query.select.expressions if isinstance(item, exp.Alias)}
    return bind_partition_by(query.partition_by, PartitionInput.of(source), compiler, con, aliases)


def _project(select: exp.Select, source: Source, compiler: ExpressionCompiler,
             repartition: Repartition | None) -> list[Item]:
    """The projected columns in order; with PARTITION BY, ``*`` expands to the re-keyed input."""
    columns: list[Item] = []
    aliases = AliasGenerator(c.name for c in source.schema.columns)
    for item in select.expressions:
        if _is_star(item):
            expanded = [passthrough(c) for c in source.schema.columns] if repartition is None \
                else star_columns(PartitionInput.of(source), repartition, compiler.scope)
            columns += [Item(c, from_star=True, source_column=c.name if repartition is None else None)
                        for c in expanded]
            continue
        node = item.this if isinstance(item, exp.Alias) else item
        if isinstance(item, exp.Alias):
            name = item.alias
        elif isinstance(node, exp.Column):
            name = compiler.scope.resolve(node.name).name
        elif isinstance(node, Dereference):
            name = aliases.field(str(node.args["field"]))
        else:
            name = aliases.next_generated()
        compiled = compiler.compile(node)
        sql_type = compiler.type_of(compiled)
        if sql_type.name == "NULL":
            raise BindError(f"cannot infer a type for `{node.sql()}`: CAST it to a type")
        role, ref = "VALUE", None
        if isinstance(node, exp.Column):
            ref = source.schema.find(compiler.scope.resolve(node.name).name)
            role = "KEY" if ref is not None and ref.role == "KEY" else "VALUE"
        columns.append(Item(OutputColumn(name, sql_type, compiled.sql("duckdb"), role, ksql_text(node)),
                            source_column=None if ref is None else ref.name))
    return columns


def _calls_table_function(select: exp.Select) -> bool:
    return any(isinstance(node, exp.Anonymous) and is_table_function(str(node.this))
               for item in select.expressions for node in item.walk())


def _is_star(item: exp.Expression) -> bool:
    return isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star))


def passthrough(column: Column) -> OutputColumn:
    """An output column that is ``column`` of the input as it is."""
    role = "KEY" if column.role == "KEY" else "VALUE"
    return OutputColumn(column.name, column.type, quote(column.name), role)


def _check_key_projection(source: Source, columns: list[OutputColumn], target: Target) -> None:
    keys = [c.name for c in source.schema.key]
    projected = {c.name for c in columns if c.role == "KEY"}
    if len(projected) < len([c for c in columns if c.role == "KEY"]):
        raise BindError("a key column is selected twice; select it once")
    dropped_key_allowed = target.new_planner and target.kind == "STREAM"
    if keys and len(projected) < len(keys) and not dropped_key_allowed:
        plural = len(keys) > 1
        raise BindError(
            f"Key missing from projection (ie, SELECT). The query used to build `{target.sink.name}` "
            f"must include the key column{'s' if plural else ''} {' and '.join(keys)} in its projection "
            f"(eg, SELECT {', '.join(keys)}...)."
        )
    if not any(c.role != "KEY" for c in columns):
        raise BindError("The projection contains no value columns.")

