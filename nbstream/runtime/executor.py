"""Statement execution: one ``exec_<Statement>`` function per statement kind, found in
:data:`HANDLERS` by the statement's type.

Each function checks the statement against the catalog, then changes the catalog, the log and
the running queries. The engine records every statement that changes the catalog, so a durable
engine replays them on restart. A statement's ``:name`` parameters arrive as an argument (the
statements of several clients may run one after another on one engine, each with its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from nbstream.analysis.custom_types import resolve_columns, resolve_expression
from nbstream.catalog import functions
from nbstream.catalog.catalog import PersistentQuery, Source, WindowInfo
from nbstream.catalog.custom_types import BUILT_IN_NAMES
from nbstream.catalog.schema import PSEUDO_COLUMNS, WINDOW_BOUNDS, Column, LogicalSchema
from nbstream.catalog.types import SqlType
from nbstream.errors import (
    BindError,
    CatalogError,
    FormatError,
    NbstreamError,
    UnknownNameError,
    UnsupportedError,
    did_you_mean,
)
from nbstream.formats import format_for
from nbstream.plan.aggregate import AggregatePlan, is_aggregate_query
from nbstream.plan.join import JoinPlan, check_copartitioned, join_produces_table, join_sources
from nbstream.plan.logical import Sink, StatelessPlan
from nbstream.plan.planner import Plan, Target, plan_query, sink_of
from nbstream.runtime import metadata, schemas
from nbstream.runtime.insert_values import insert_values
from nbstream.runtime.results import Params, StatementResult
from nbstream.runtime.with_clause import check_with_clause
from nbstream.sql import ast
from nbstream.sql.parser import UNIT_MS

if TYPE_CHECKING:
    from nbstream.runtime.engine import Engine

Handler = Callable[["Engine", Any, Params], StatementResult]


def execute_statement(engine: Engine, statement: ast.Statement, params: Params) -> StatementResult:
    """Run one parsed statement on ``engine``, its ``:name`` placeholders bound from ``params``."""
    handler = HANDLERS.get(type(statement))
    if handler is None:
        raise UnsupportedError(f"{type(statement).__name__} statements are not supported yet")
    return handler(engine, statement, params)


# -- CREATE STREAM / TABLE ---------------------------------------------------------------------------


def _existing(engine: Engine, stmt: ast.CreateSource | ast.CreateAsSelect) -> Source | None:
    """The source called like the one ``stmt`` creates, if any; an error when the statement may
    neither replace it (OR REPLACE) nor skip it (IF NOT EXISTS)."""
    existing = engine.catalog.find(stmt.name)
    if existing is not None and not (stmt.or_replace or stmt.if_not_exists):
        raise CatalogError(f"Cannot add {stmt.kind.lower()} '{stmt.name}': A {existing.kind.lower()} "
                           "with the same name already exists")
    return existing


def exec_CreateSource(engine: Engine, stmt: ast.CreateSource, params: Params) -> StatementResult:
    if not engine.replaying:  # a statement stored before the check runs again as it ran then
        check_with_clause(stmt.properties, stmt.kind, stmt.name, as_select=False,
                          key_columns=[c.name for c in stmt.columns if c.role in ("KEY", "PRIMARY KEY")])
    stmt = replace(stmt, columns=resolve_columns(stmt.columns, engine.catalog.types))
    existing = _existing(engine, stmt)
    if existing is not None and stmt.if_not_exists:
        return StatementResult(stmt.text, f"Cannot add {stmt.kind.lower()} {stmt.name}: it exists already")
    replaces_source = stmt.is_source or (existing is not None and existing.is_source)
    _check_replace_source(stmt.kind, stmt.name, stmt.or_replace and replaces_source)
    key_format, value_format = _formats(engine, stmt.properties, stmt.name)
    if schemas.needs_inference(stmt, key_format, value_format):
        topic = _require_topic_name(stmt.properties, stmt.name)
        stmt = schemas.infer_columns(engine.schema_registry, stmt, topic, key_format, value_format)
    elif not stmt.columns:
        stmt = _with_connector_columns(engine, stmt)
    props = dict(stmt.properties)
    schema = _schema_of(stmt)
    topic = _require_topic_name(props, stmt.name)
    partitions = _int_prop(props, "PARTITIONS")
    retention = _retention(props, stmt.kind, stmt.name)
    value_props = _wrap_default(engine, value_format, _side_props(props, "VALUE"), schema.value)
    registry = engine.schema_registry
    value_props = schemas.resolve_ids(registry, topic, value_format, value_props, schema.value,
                                      is_key=False, sink=False)
    key_props = schemas.resolve_ids(registry, topic, key_format, _side_props(props, "KEY"), schema.key,
                                    is_key=True, sink=False)
    source = Source(
        name=stmt.name, kind=stmt.kind, schema=schema, topic=topic, key_format=key_format,
        value_format=value_format, key_properties=key_props, value_properties=value_props,
        timestamp=_timestamp(props, schema, stmt.name),
        timestamp_format=_str_prop(props, "TIMESTAMP_FORMAT"), is_source=stmt.is_source, sql=stmt.text,
        window=_declared_window(props),
    )
    _check_formats(source)
    info = engine.log.topic(topic)
    if info is None:
        # The embedded log belongs to the engine: a declared topic is created (ksqlDB would ask
        # for PARTITIONS because its topics live in a Kafka cluster; the Kafka backend will).
        engine.log.create_topic(topic, partitions or 1, _int_prop(props, "REPLICAS") or 1, retention)
    elif partitions is not None and partitions != info.partitions:
        raise CatalogError(f"A Kafka topic with the name '{topic}' already exists, with different "
                           f"partition count: {info.partitions} (the statement asks for {partitions})")
    engine.catalog.add(source, replace=stmt.or_replace)
    engine.queries.source_added(source)
    return StatementResult(stmt.text, f"{stmt.kind.title()} created", source=source.name)


def _with_connector_columns(engine: Engine, stmt: ast.CreateSource) -> ast.CreateSource:
    """``stmt`` with the columns of the connector writing its topic (a CREATE without columns)."""
    topic = _require_topic_name(stmt.properties, stmt.name)
    found = engine.connectors.schema_for_topic(topic, stmt.kind)
    if found is None:
        raise CatalogError(f"{stmt.kind} {stmt.name} has no columns, and no schema is known for topic '{topic}' "
                           "(only a connector's topic has one): declare the columns, e.g. "
                           f"CREATE {stmt.kind} {stmt.name} (ID VARCHAR KEY, …) WITH (…)")
    connector, schema = found
    if schema is None:
        raise CatalogError(f"TABLE {stmt.name} has no columns, and the records connector {connector} writes to "
                           f"'{topic}' have no string key for its PRIMARY KEY: declare the columns")
    key_role: ast.ColumnRole = "PRIMARY KEY" if stmt.kind == "TABLE" else "KEY"
    columns = tuple(ast.ColumnDef(c.name, c.type, key_role if c.role == "KEY" else "VALUE") for c in schema.columns)
    return replace(stmt, columns=columns)


def _declared_window(props: Mapping[str, Any]) -> WindowInfo | None:
    """The window of a source declared with ``WINDOW_TYPE`` (and ``WINDOW_SIZE``: ``n UNIT``)."""
    kind = _str_prop(props, "WINDOW_TYPE")
    if kind is None:
        return None
    size = _str_prop(props, "WINDOW_SIZE")
    size_ms = None
    if size is not None and kind.upper() == "SESSION":
        raise BindError("'WINDOW_SIZE' should not be set for SESSION windows.")
    if size is not None:
        count, _, unit = size.strip().partition(" ")
        if not count.isdigit() or unit.strip().upper() not in UNIT_MS:
            raise CatalogError(f"Invalid WINDOW_SIZE {size!r}: expected a duration such as '10 SECONDS'")
        size_ms = int(count) * UNIT_MS[unit.strip().upper()]
    return WindowInfo(kind.upper(), size_ms)


def _check_replace_source(kind: str, name: str, replaces_source: bool) -> None:
    """ksqlDB: CREATE OR REPLACE never creates or replaces a read-only (SOURCE) stream or table."""
    if replaces_source:
        raise CatalogError(f"Cannot add {kind.lower()} '{name}': CREATE OR REPLACE is not supported on "
                           f"source {kind.lower()}s.")


#: The type of a HEADERS column (every header of the record), as ksqlDB writes it.
HEADERS_TYPE = "ARRAY<STRUCT<`KEY` STRING, `VALUE` BYTES>>"


def _check_header_type(role: str | None, header_key: str | None, sql_type: SqlType) -> None:
    """ksqlDB: a HEADERS column is ARRAY<STRUCT<KEY STRING, VALUE BYTES>>, a HEADER('k') column BYTES."""
    if role == "HEADERS" and str(sql_type) != HEADERS_TYPE:
        raise BindError(f"Invalid type for HEADERS column: expected {HEADERS_TYPE}, got {sql_type}")
    if role == "HEADER" and sql_type.name != "BYTES":
        raise BindError(f"Invalid type for HEADER('{header_key}') column: expected BYTES, got {sql_type}")


def _schema_of(stmt: ast.CreateSource) -> LogicalSchema:
    seen: set[str] = set()
    columns = []
    for col in stmt.columns:
        if col.name.upper() in PSEUDO_COLUMNS + WINDOW_BOUNDS:
            raise BindError(f"'{col.name}' is a reserved column name. You cannot use it as a column name.",
                            col.span)
        if col.name in seen:
            raise BindError(f"Duplicate column names: {col.name}", col.span)
        seen.add(col.name)
        role = col.role
        if role == "PRIMARY KEY" and stmt.kind == "STREAM":
            raise BindError(f"Column `{col.name}` is a 'PRIMARY KEY' column: please use 'KEY' for streams.\n"
                            "Tables have PRIMARY KEYs, which are unique and NON NULL.\n"
                            "Streams have KEYs, which have no uniqueness or NON NULL constraints.", col.span)
        if role == "KEY" and stmt.kind == "TABLE":
            raise BindError(f"Column `{col.name}` is a 'KEY' column: please use 'PRIMARY KEY' for tables.\n"
                            "Tables have PRIMARY KEYs, which are unique and NON NULL.\n"
                            "Streams have KEYs, which have no uniqueness or NON NULL constraints.", col.span)
        _check_header_type(role, col.header_key, col.type)
        columns.append(Column(col.name, col.type, "KEY" if role == "PRIMARY KEY" else role, col.header_key))
    keys = [c for c in columns if c.role == "KEY"]
    values = [c for c in columns if c.role not in ("KEY", "HEADER", "HEADERS")]
    if stmt.kind == "TABLE" and not keys:
        raise BindError(f"Tables require a PRIMARY KEY. Please define the PRIMARY KEY of {stmt.name}.")
    return LogicalSchema(tuple(keys + values + [c for c in columns if c.role in ("HEADER", "HEADERS")]))


def _formats(engine: Engine, props: Mapping[str, Any], name: str) -> tuple[str, str]:
    fmt = _str_prop(props, "FORMAT")
    key_format = _str_prop(props, "KEY_FORMAT")
    value_format = _str_prop(props, "VALUE_FORMAT")
    if fmt and (key_format or value_format):
        which = "KEY_FORMAT" if key_format else "VALUE_FORMAT"
        raise CatalogError(f"Cannot supply both 'FORMAT' and '{which}' properties, as 'FORMAT' sets both "
                           f"key and value formats. Either use just 'FORMAT', or use '{which}'.")
    key_format = (fmt or key_format or engine.property("ksql.persistence.default.format.key") or "KAFKA").upper()
    value_format = fmt or value_format or engine.property("ksql.persistence.default.format.value")
    if not value_format:
        raise CatalogError(f"{name}: missing required property 'VALUE_FORMAT' (or 'FORMAT') in the WITH clause")
    return key_format, str(value_format).upper()


def _side_props(props: Mapping[str, Any], side: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    delimiter = props.get(f"{side}_DELIMITER")
    if delimiter is not None:
        out[f"{side}_DELIMITER"] = delimiter
    if side == "VALUE" and "WRAP_SINGLE_VALUE" in props:
        out["WRAP_SINGLE_VALUE"] = _bool(props["WRAP_SINGLE_VALUE"])
    return {**out, **schemas.side_properties(props, side)}


def _wrap_default(engine: Engine, value_format: str, value_props: dict[str, Any],
                  columns: tuple[Column, ...]) -> dict[str, Any]:
    """``value_props`` with ``WRAP_SINGLE_VALUE`` defaulted from ``ksql.persistence.wrap.single.values``.

    As in ksqlDB, the configuration applies only where the property could be given: a single value
    column in a format that may wrap it (KAFKA, DELIMITED and NONE never wrap; they reject ``true``).
    """
    config = engine.property("ksql.persistence.wrap.single.values")
    if config is None or "WRAP_SINGLE_VALUE" in value_props or len(columns) != 1:
        return value_props
    wrap = _bool(config)
    try:
        format_for(value_format, value_props).check_columns(columns, is_key=False, wrap_single_value=wrap)
    except FormatError:
        return value_props
    return {**value_props, "WRAP_SINGLE_VALUE": wrap}


def _check_formats(source: Source) -> None:
    key_fmt = format_for(source.key_format, source.key_properties, is_key=True)
    value_fmt = format_for(source.value_format, source.value_properties)
    key_fmt.check_columns(source.schema.key, is_key=True, wrap_single_value=None)
    wrap = source.value_properties.get("WRAP_SINGLE_VALUE")
    value_fmt.check_columns(source.schema.value, is_key=False, wrap_single_value=wrap)


def _timestamp(props: Mapping[str, Any], schema: LogicalSchema, name: str) -> str | None:
    ts = _str_prop(props, "TIMESTAMP")
    if ts is None:
        return None
    col = schema.get(ts.upper() if schema.find(ts) is None else ts, source=name)
    if col.type.name not in ("BIGINT", "TIMESTAMP", "STRING"):
        raise BindError(f"Timestamp column, `{col.name}`, should be LONG(INT64), TIMESTAMP, or a String with a "
                        f"timestamp_format specified, not {col.type}.")
    if col.type.name == "STRING" and not props.get("TIMESTAMP_FORMAT"):
        raise BindError(f"Timestamp column, `{col.name}`, is a STRING: add a TIMESTAMP_FORMAT.")
    return col.name


def _require_topic_name(props: Mapping[str, Any], name: str) -> str:
    topic = _str_prop(props, "KAFKA_TOPIC")
    if not topic:
        raise CatalogError(f"Missing required property \"KAFKA_TOPIC\" which has no default value ({name}).")
    return topic


def _str_prop(props: Mapping[str, Any], key: str) -> str | None:
    value = props.get(key)
    return None if value is None else str(value)


def _int_prop(props: Mapping[str, Any], key: str) -> int | None:
    value = props.get(key)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CatalogError(f"Invalid value for property {key}: {value!r} is not a number") from None


def _retention(props: Mapping[str, Any], kind: str, name: str) -> int | None:
    """The RETENTION_MS of a new stream's topic: how long it keeps a record (None, or -1 as in
    Kafka: for ever). A table's topic keeps every key's latest row (ksqlDB's are compacted, which
    a retention does not limit), so a table refuses one rather than have the embedded log delete
    rows by time."""
    retention = _int_prop(props, "RETENTION_MS")
    if retention is None or retention == -1:
        return None
    if kind == "TABLE":
        raise CatalogError(f"Table {name}: RETENTION_MS applies to a stream's topic; nbstream keeps every "
                           "key's latest row of a table's topic (ksqlDB compacts it)")
    if retention < 1:
        raise CatalogError(f"Invalid value for property RETENTION_MS: {retention} (a number of "
                           "milliseconds, at least 1, or -1 to keep every record)")
    return retention


def _bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() == "true"


# -- CREATE … AS SELECT, INSERT INTO -------------------------------------------------------------------


def exec_CreateAsSelect(engine: Engine, stmt: ast.CreateAsSelect, params: Params) -> StatementResult:
    if not engine.replaying:
        check_with_clause(stmt.properties, stmt.kind, stmt.name, as_select=True)
    existing = _existing(engine, stmt)
    if existing is not None and stmt.if_not_exists:
        return StatementResult(stmt.text, f"Cannot add {stmt.kind.lower()} {stmt.name}: it exists already")
    _check_replace_source(stmt.kind, stmt.name, stmt.or_replace and existing is not None and existing.is_source)
    source = engine.catalog.get(_from_name(stmt.query))
    _check_result_kind(stmt.kind, source, stmt.query, engine)
    _check_aliases(stmt.query)
    props = dict(stmt.properties)
    retention = _retention(props, stmt.kind, stmt.name)
    sink = _sink_for_new(engine, stmt.name, props, source)
    plan = plan_query(stmt.query, engine.catalog, engine.con,
                      target=Target(sink, stmt.kind, _new_planner(engine), engine.properties),
                      params=params)
    _check_copartitioned(engine, plan)
    plan = _fit_key_format(engine, plan, props)
    plan = _with_runtime_config(engine, plan)
    planned = plan.sink
    assert planned is not None  # planned with a target, so it has a sink
    sink = replace(planned, value_properties=_wrap_default(engine, planned.value_format, planned.value_properties,
                                                           plan.schema.value),
                   timestamp=_timestamp(props, plan.schema, stmt.name))
    registry = engine.schema_registry
    sink = replace(sink, key_properties=schemas.resolve_ids(registry, sink.topic, sink.key_format, sink.key_properties,
                                                            plan.schema.key, is_key=True, sink=True,
                                                            replacing=existing is not None),
                   value_properties=schemas.resolve_ids(registry, sink.topic, sink.value_format,
                                                        sink.value_properties, plan.schema.value,
                                                        is_key=False, sink=True, replacing=existing is not None))
    plan = replace(plan, sink=sink)
    created = Source(
        name=stmt.name, kind=stmt.kind, schema=plan.schema, topic=sink.topic, key_format=sink.key_format,
        value_format=sink.value_format, key_properties=sink.key_properties,
        value_properties=sink.value_properties, timestamp=sink.timestamp,
        timestamp_format=sink.timestamp_format, sql=stmt.text, window=_window_of(plan, source),
    )
    _check_formats(created)
    if existing is not None:
        _replace_query_of(engine, stmt.name)
    if engine.log.topic(sink.topic) is None:
        engine.log.create_topic(sink.topic, sink.partitions, retention_ms=retention)
    engine.catalog.add(created, replace=stmt.or_replace)
    engine.queries.source_added(created)
    prefix = "CTAS" if stmt.kind == "TABLE" else "CSAS"
    query_id = engine.catalog.next_query_id(prefix, stmt.name)
    engine.queries.start(PersistentQuery(query_id, stmt.text, stmt.name, join_sources(stmt.query)), plan)
    return StatementResult(stmt.text, f"Created query with ID {query_id}", query_id=query_id, source=stmt.name)


def _replace_query_of(engine: Engine, sink: str) -> None:
    for query in engine.catalog.running():
        if query.sink == sink and query.id.startswith(("CSAS", "CTAS")):
            engine.queries.stop(query)


def _window_of(plan: Plan, source: Source) -> WindowInfo | None:
    """The window of the result's keys: the aggregation's, a windowed source's that the result
    keeps its key from, or that of a join of windowed sources."""
    if isinstance(plan, StatelessPlan):
        return source.window if plan.key_from_source else None
    if isinstance(plan, JoinPlan):
        return plan.window
    if not isinstance(plan, AggregatePlan) or plan.window is None:
        return None
    retention = plan.window.retention_ms or plan.window.size_ms + plan.grace_ms  # ksqlDB's default: size + grace
    return WindowInfo(plan.window.kind, plan.window.size_ms, retention)


def _check_aliases(query: ast.Query) -> None:
    """ksqlDB: a result column may not be named like a pseudo column or a window bound."""
    for item in query.select.expressions:
        alias = item.alias if isinstance(item, exp.Alias) else ""
        if alias.upper() in PSEUDO_COLUMNS + WINDOW_BOUNDS:
            raise BindError(f"`{alias.upper()}` is a reserved column name. You cannot use it as an alias for a column.")


def _check_result_kind(kind: str, source: Source, query: ast.Query, engine: Engine) -> None:
    table = join_produces_table(engine.catalog, query) if query.select.args.get("joins") else source.is_table
    produced = "TABLE" if table or is_aggregate_query(query) else "STREAM"
    if produced != kind:
        raise BindError(f"Invalid result type. Your SELECT query produces a {produced}. "
                        f"Please use CREATE {produced} AS SELECT statement instead.")


def _from_name(query: ast.Query) -> str:
    from_ = query.select.args.get("from") or query.select.args.get("from_")
    if from_ is None:
        raise BindError("a query needs a FROM clause")
    return from_.this.name


def _sink_for_new(engine: Engine, name: str, props: dict[str, Any], source: Source) -> Sink:
    fmt = _str_prop(props, "FORMAT")
    key_format = (fmt or _str_prop(props, "KEY_FORMAT") or source.key_format).upper()
    value_format = (fmt or _str_prop(props, "VALUE_FORMAT") or source.value_format).upper()
    # without KAFKA_TOPIC, ksqlDB names the topic after the result, behind ksql.output.topic.name.prefix
    prefix = str(engine.property("ksql.output.topic.name.prefix") or "")
    topic = _str_prop(props, "KAFKA_TOPIC") or prefix + name
    existing = engine.log.topic(topic)
    partitions = _int_prop(props, "PARTITIONS") or (existing.partitions if existing else None) \
        or engine.log.require(source.topic).partitions
    value_props = _side_props(props, "VALUE")
    if "VALUE_DELIMITER" not in value_props and value_format == source.value_format:
        value_props.update({k: v for k, v in source.value_properties.items() if k == "VALUE_DELIMITER"})
    key_props = _side_props(props, "KEY")
    if "KEY_DELIMITER" not in key_props and key_format == source.key_format:
        key_props.update({k: v for k, v in source.key_properties.items() if k == "KEY_DELIMITER"})
    return Sink(
        name=name, topic=topic, key_format=key_format, value_format=value_format, partitions=partitions,
        key_properties=key_props, value_properties=value_props,
        timestamp=_str_prop(props, "TIMESTAMP"), timestamp_format=_str_prop(props, "TIMESTAMP_FORMAT"),
    )


def _fit_key_format(engine: Engine, plan: Plan, props: Mapping[str, Any]) -> Plan:
    """The sink's key format follows the result's key: NONE without key columns, the default key
    format when the input had none (NONE) but the result has key columns."""
    sink = plan.sink
    assert sink is not None
    explicit = _str_prop(props, "KEY_FORMAT") or _str_prop(props, "FORMAT")
    if not plan.schema.key and sink.key_format != "NONE" and plan.scan.schema.key:
        if explicit:
            raise BindError("Key format specified for stream without key columns.")
        return replace(plan, sink=replace(sink, key_format="NONE", key_properties={}))
    if plan.schema.key and sink.key_format == "NONE":
        if explicit and explicit.upper() == "NONE":
            keys = ", ".join(f"`{c.name}` {c.type} KEY" for c in plan.schema.key)
            raise BindError(f"The 'NONE' format can only be used when no columns are defined. Got: [{keys}]")
        default = str(engine.property("ksql.persistence.default.format.key") or "KAFKA").upper()
        return replace(plan, sink=replace(sink, key_format=default, key_properties={}))
    return plan


def _check_copartitioned(engine: Engine, plan: Plan) -> None:
    if isinstance(plan, JoinPlan):
        check_copartitioned(plan, lambda topic: engine.log.require(topic).partitions)


def _new_planner(engine: Engine) -> bool:
    return _bool(engine.property("ksql.new.query.planner.enabled") or False)


def _with_runtime_config(engine: Engine, plan: Plan) -> Plan:
    """``plan`` with the engine properties that change how it runs."""
    throw = _bool(engine.property("ksql.timestamp.throw.on.invalid") or False)
    if not throw or isinstance(plan, JoinPlan):
        return plan
    if isinstance(plan, AggregatePlan):
        return replace(plan, pre=replace(plan.pre, scan=replace(plan.scan, throw_on_invalid_timestamp=True)))
    return replace(plan, scan=replace(plan.scan, throw_on_invalid_timestamp=True))


#: The numeric types a result column widens to implicitly when INSERT INTO writes it (ksqlDB's).
_INSERT_WIDENS = {"INTEGER": ("BIGINT", "DECIMAL", "DOUBLE"), "BIGINT": ("DECIMAL", "DOUBLE"),
                  "DECIMAL": ("DECIMAL", "DOUBLE")}


def _cast_to_sink(plan: Plan, sink: LogicalSchema) -> Plan:
    """A projection whose columns match the sink's but for numeric types that widen implicitly
    (INTEGER → BIGINT → DECIMAL → DOUBLE), with those columns cast to the sink's types."""
    if not isinstance(plan, StatelessPlan) or len(plan.columns) != len(sink.columns):
        return plan
    columns = []
    for column, target in zip(plan.columns, sink.columns, strict=True):
        same = column.name == target.name and (column.role == "KEY") == (target.role == "KEY")
        if same and str(column.type) != str(target.type) and \
                target.type.name in _INSERT_WIDENS.get(column.type.name, ()):
            column = replace(column, type=target.type, sql=f"CAST(({column.sql}) AS {target.type.duckdb()})")
        columns.append(column)
    return replace(plan, columns=tuple(columns))


def exec_InsertInto(engine: Engine, stmt: ast.InsertInto, params: Params) -> StatementResult:
    target = engine.catalog.get(stmt.target)
    if target.is_table:
        raise BindError(f"INSERT INTO can only be used to insert into a stream. {target.name} is a table.")
    source = engine.catalog.get(_from_name(stmt.query))
    _check_result_kind("STREAM", source, stmt.query, engine)
    sink = sink_of(target, engine.log.require(target.topic).partitions)
    plan = plan_query(stmt.query, engine.catalog, engine.con, target=Target(sink, "STREAM", _new_planner(engine),
                                                                                 engine.properties),
                      params=params)
    _check_copartitioned(engine, plan)
    plan = _with_runtime_config(engine, _cast_to_sink(plan, target.schema))
    if [(c.name, str(c.type), c.role) for c in plan.schema.columns] != \
            [(c.name, str(c.type), c.role) for c in target.schema.columns]:
        raise BindError(f"Incompatible schema between results and sink.\nResult schema is {plan.schema}\n"
                        f"Sink schema is {target.schema}")
    query_id = engine.catalog.next_query_id("INSERTQUERY", None)
    engine.queries.start(PersistentQuery(query_id, stmt.text, target.name, join_sources(stmt.query)), plan)
    return StatementResult(stmt.text, f"Created query with ID {query_id}", query_id=query_id, source=target.name)


# -- the rest --------------------------------------------------------------------------------------


def exec_InsertValues(engine: Engine, stmt: ast.InsertValues, params: Params) -> StatementResult:
    values = tuple(resolve_expression(v, engine.catalog.types) for v in stmt.values)
    insert_values(engine, replace(stmt, values=values), params)
    return StatementResult(stmt.text, "Inserted 1 row")


def exec_Drop(engine: Engine, stmt: ast.Drop, params: Params) -> StatementResult:
    source = engine.catalog.find(stmt.name)
    if source is None:
        if stmt.if_exists:
            return StatementResult(stmt.text, f"{stmt.name} does not exist")
        engine.catalog.get(stmt.name)  # raises with the near miss
        raise AssertionError("unreachable")
    if source.kind != stmt.kind:
        raise CatalogError(f"Incompatible data source type is {source.kind}, but statement was DROP {stmt.kind}. "
                           f"Use DROP {source.kind} to delete {stmt.name}.")
    if stmt.delete_topic and source.is_source:
        raise CatalogError(f"Cannot delete topic for read-only source: {source.name}")
    engine.catalog.drop(stmt.name)
    engine.queries.source_dropped(source)
    if stmt.delete_topic and not engine.catalog.sources_on_topic(source.topic):
        engine.log.delete_topic(source.topic)
    return StatementResult(stmt.text, f"Source `{stmt.name}` (topic: {source.topic}) was dropped.")


def exec_CreateType(engine: Engine, stmt: ast.CreateType, params: Params) -> StatementResult:
    name, types = stmt.name.upper(), engine.catalog.types
    if name in BUILT_IN_NAMES:
        raise CatalogError(f"Cannot register custom type '{name}': {name} is one of ksqlDB's own types", stmt.span)
    sql_type = types.resolve(stmt.type, stmt.span)
    existing = types.find(name)
    if existing is not None:
        if not stmt.if_not_exists:
            raise CatalogError(f"Cannot register custom type '{name}' since it is already registered with type: "
                               f"{existing}", stmt.span)
        return StatementResult(stmt.text, f"{name} is already registered with type {existing}")
    types.register(name, sql_type)
    return StatementResult(stmt.text, f"Registered custom type with name '{name}' and SQL type {sql_type}")


def exec_DropType(engine: Engine, stmt: ast.DropType, params: Params) -> StatementResult:
    """ksqlDB drops a type whatever uses it: streams and types keep the types they were made with."""
    name, types = stmt.name.upper(), engine.catalog.types
    if not types.drop(name):
        if stmt.if_exists:
            return StatementResult(stmt.text, f"Type '{name}' does not exist")
        hint = did_you_mean(name, [n for n, _ in types.items()])
        raise UnknownNameError(f"Type {name} does not exist.{hint}", stmt.span)
    return StatementResult(stmt.text, f"Dropped type '{name}'")


def exec_CreateConnector(engine: Engine, stmt: ast.CreateConnector, params: Params) -> StatementResult:
    if stmt.if_not_exists and stmt.name in engine.connectors.running:
        return StatementResult(stmt.text, f"Connector {stmt.name} exists already")
    return StatementResult(stmt.text, engine.connectors.create(stmt.kind, stmt.name, stmt.properties, stmt.text,
                                                               catalog=engine.catalog))


def exec_DropConnector(engine: Engine, stmt: ast.DropConnector, params: Params) -> StatementResult:
    return StatementResult(stmt.text, engine.connectors.drop(stmt.name, stmt.if_exists))


def exec_Terminate(engine: Engine, stmt: ast.Terminate, params: Params) -> StatementResult:
    queries = engine.catalog.running() if stmt.query_id is None else [engine.catalog.get_query(stmt.query_id)]
    for query in queries:
        engine.queries.stop(query)
    return StatementResult(stmt.text, "Query terminated." if queries else "No running queries.")


def exec_SetProperty(engine: Engine, stmt: ast.SetProperty, params: Params) -> StatementResult:
    engine.set_property(stmt.name, stmt.value)
    return StatementResult(stmt.text, f"Successfully changed local property '{stmt.name}' to '{stmt.value}'.")


def exec_UnsetProperty(engine: Engine, stmt: ast.UnsetProperty, params: Params) -> StatementResult:
    engine.set_property(stmt.name, None)
    return StatementResult(stmt.text, f"Successfully unset local property '{stmt.name}'.")


def exec_Select(engine: Engine, stmt: ast.Select, params: Params) -> StatementResult:
    if stmt.query.emit is not None:
        raise NbstreamError("push queries (EMIT CHANGES) stream rows: use Engine.push() or the %%stream magic")
    frame = engine.query(stmt.text, params)
    return StatementResult(stmt.text, f"{len(frame)} rows", tuple(frame.columns),
                           tuple(tuple(r) for r in frame.itertuples(index=False)))


def exec_DescribeFunction(engine: Engine, stmt: ast.DescribeFunction, params: Params) -> StatementResult:
    info = functions.describe_function(stmt.name)
    rows = tuple((k, str(v)) for k, v in info.items())
    return StatementResult(stmt.text, f"Function {stmt.name}", ("property", "value"), rows)


#: The handler of each kind of statement.
HANDLERS: dict[type[ast.Statement], Handler] = {
    ast.CreateSource: exec_CreateSource,
    ast.CreateAsSelect: exec_CreateAsSelect,
    ast.InsertInto: exec_InsertInto,
    ast.InsertValues: exec_InsertValues,
    ast.Select: exec_Select,
    ast.Drop: exec_Drop,
    ast.Terminate: exec_Terminate,
    ast.SetProperty: exec_SetProperty,
    ast.UnsetProperty: exec_UnsetProperty,
    ast.CreateConnector: exec_CreateConnector,
    ast.DropConnector: exec_DropConnector,
    ast.CreateType: exec_CreateType,
    ast.DropType: exec_DropType,
    ast.DescribeFunction: exec_DescribeFunction,
    ast.Show: metadata.exec_Show,
    ast.Describe: metadata.exec_Describe,
    ast.DescribeConnector: metadata.exec_DescribeConnector,
    ast.Explain: metadata.exec_Explain,
    ast.PrintTopic: metadata.exec_PrintTopic,
}
