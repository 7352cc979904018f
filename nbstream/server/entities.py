"""Statement results as ksqlDB's ``/ksql`` entities (``KsqlEntity.java``): one JSON object per
statement, with ``@type``, ``statementText`` and ``warnings``.

=====================================================  =======================================
statement                                              entity (``@type``)
=====================================================  =======================================
CREATE STREAM/TABLE [AS SELECT], INSERT INTO … SELECT,  ``currentStatus`` (``commandId``,
DROP, TERMINATE of a persistent query,                 ``commandStatus``, ``commandSequenceNumber``)
CREATE TYPE, DROP TYPE
TERMINATE of a push query                              ``terminate_query``
SHOW STREAMS / TABLES                                  ``streams`` / ``tables``
SHOW STREAMS / TABLES EXTENDED, DESCRIBE STREAMS/TABLES ``source_descriptions``
DESCRIBE [EXTENDED] name                               ``sourceDescription``
SHOW QUERIES (persistent and push)                     ``queries``
SHOW TOPICS [EXTENDED]                                 ``kafka_topics`` / ``kafka_topics_extended``
SHOW PROPERTIES                                        ``properties``
SHOW FUNCTIONS, DESCRIBE FUNCTION                      ``function_names``, ``describe_function``
EXPLAIN                                                ``queryDescription``
CREATE / DROP / DESCRIBE / SHOW CONNECTOR(S)            ``connector_info``, ``drop_connector``,
                                                       ``connector_description``, ``connector_list``
SHOW VARIABLES, SHOW TYPES                             ``variables``, ``type_list``
INSERT INTO … VALUES, SET, UNSET                       none (as in ksqlDB)
=====================================================  =======================================

The builders read the service's catalog and runners; call them holding its lock, right after the
statement ran, so that an entity shows the state the statement left.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nbstream.catalog import functions
from nbstream.catalog.catalog import PersistentQuery, Source
from nbstream.catalog.schema import Column
from nbstream.catalog.types import SqlType
from nbstream.runtime.results import StatementResult
from nbstream.runtime.service import EngineService
from nbstream.sql import ast

Entity = dict[str, Any]


@dataclass(frozen=True)
class Request:
    """What a ``/ksql`` request brings besides its statements: the property overrides in effect
    (``streamsProperties`` and the request's SETs) and its ``sessionVariables``."""

    properties: Mapping[str, Any]
    variables: Mapping[str, Any]


_sequence = itertools.count(1)


def entity(service: EngineService, statement: ast.Statement, result: StatementResult,
           request: Request) -> Entity | None:
    """The entity of ``statement``, which ran with ``result`` (None: ksqlDB answers none)."""
    builder = _BUILDERS.get(type(statement))
    if builder is None:
        return None
    built = builder(_Context(service, statement, result, request))
    if built is None:
        return None
    return {"@type": built.pop("@type"), "statementText": statement_text(statement), **built, "warnings": []}


def terminated_push_query(statement: ast.Statement, query_id: str) -> Entity:
    """``TERMINATE`` of a transient push query."""
    return {"@type": "terminate_query", "statementText": statement_text(statement), "queryId": query_id,
            "wasTerminated": True, "warnings": []}


def statement_text(statement: ast.Statement) -> str:
    """A statement's text as ksqlDB quotes it back: with its semicolon."""
    return statement.text.rstrip().rstrip(";") + ";"


@dataclass(frozen=True)
class _Context:
    service: EngineService
    statement: Any
    result: StatementResult
    request: Request


# -- commands ---------------------------------------------------------------------------------------------


def _status(command_id: str, ctx: _Context) -> Entity:
    return {"@type": "currentStatus", "commandId": command_id,
            "commandStatus": {"status": "SUCCESS", "message": ctx.result.message, "queryId": ctx.result.query_id},
            "commandSequenceNumber": next(_sequence)}


def _create(ctx: _Context) -> Entity:
    return _status(f"{ctx.statement.kind.lower()}/{ctx.statement.name}/create", ctx)


def _insert_into(ctx: _Context) -> Entity:
    return _status(f"stream/{ctx.statement.target}/create", ctx)


def _drop(ctx: _Context) -> Entity:
    return _status(f"{ctx.statement.kind.lower()}/{ctx.statement.name}/drop", ctx)


def _create_type(ctx: _Context) -> Entity:
    return _status(f"type/{ctx.statement.name.upper()}/create", ctx)


def _drop_type(ctx: _Context) -> Entity:
    return _status(f"type/{ctx.statement.name.upper()}/drop", ctx)


def _terminate(ctx: _Context) -> Entity:
    return _status(f"terminate/{ctx.statement.query_id or 'ALL'}/execute", ctx)


# -- sources --------------------------------------------------------------------------------------------


def _show(ctx: _Context) -> Entity | None:
    what = ctx.statement.what
    if what in ("STREAMS", "TABLES"):
        kind = what[:-1]
        sources = sorted((s for s in ctx.service.catalog.sources.values() if s.kind == kind), key=lambda s: s.name)
        if ctx.statement.extended:
            return {"@type": "source_descriptions",
                    "sourceDescriptions": [_description(ctx.service, s, extended=True) for s in sources]}
        return {"@type": what.lower(), what.lower(): [_source_info(s) for s in sources]}
    return _SHOW[what](ctx)


def _source_info(source: Source) -> Entity:
    return {"type": source.kind, "name": source.name, "topic": source.topic, "keyFormat": source.key_format,
            "valueFormat": source.value_format, "isWindowed": source.window is not None}


def _describe(ctx: _Context) -> Entity:
    statement: ast.Describe = ctx.statement
    if statement.name is None:
        kind = "STREAM" if statement.all_of == "STREAMS" else "TABLE"
        sources = sorted((s for s in ctx.service.catalog.sources.values() if s.kind == kind), key=lambda s: s.name)
        return {"@type": "source_descriptions",
                "sourceDescriptions": [_description(ctx.service, s, statement.extended) for s in sources]}
    source = ctx.service.catalog.get(statement.name)
    return {"@type": "sourceDescription", "sourceDescription": _description(ctx.service, source, statement.extended)}


def _description(service: EngineService, source: Source, extended: bool) -> Entity:
    """ksqlDB's ``SourceDescription`` of ``source``."""
    running = service.catalog.running()
    topic = service.log.topic(source.topic)
    return {
        "name": source.name, "windowType": source.window.kind if source.window else None,
        "readQueries": [_running_query(service, q) for q in running if source.name in q.sources],
        "writeQueries": [_running_query(service, q) for q in running if q.sink == source.name],
        "fields": [_field(c) for c in source.schema.columns], "type": source.kind,
        "timestamp": source.timestamp or "",
        "statistics": f"total-messages: {topic.size}" if extended and topic is not None else "",
        "errorStats": "", "extended": extended, "keyFormat": source.key_format, "valueFormat": source.value_format,
        "topic": source.topic, "partitions": topic.partitions if topic is not None else 0, "replication": 1,
        "statement": source.sql, "queryOffsetSummaries": [], "sourceConstraints": [],
        "clusterStatistics": [], "clusterErrorStats": [],
    }


def _field(column: Column) -> Entity:
    info: Entity = {"name": column.name, "schema": _schema(column.type)}
    if column.role in ("KEY", "HEADER", "HEADERS"):
        info["type"] = "HEADER" if column.role.startswith("HEADER") else "KEY"
    if column.header_key is not None:
        info["headerKey"] = column.header_key
    return info


def _schema(sql_type: SqlType) -> Entity:
    """ksqlDB's ``SchemaInfo``: the base type, a STRUCT's fields, an ARRAY's or MAP's member."""
    fields = [{"name": n, "schema": _schema(t)} for n, t in sql_type.fields]
    schema: Entity = {"type": sql_type.name, "fields": fields if sql_type.name == "STRUCT" else None,
                      "memberSchema": _schema(sql_type.element) if sql_type.element is not None else None}
    if sql_type.name == "DECIMAL":
        schema["parameters"] = {"precision": sql_type.precision, "scale": sql_type.scale}
    return schema


# -- queries ---------------------------------------------------------------------------------------------


def _running_query(service: EngineService, query: PersistentQuery) -> Entity:
    sink = service.catalog.find(query.sink)
    return {"queryString": query.sql, "sinks": [query.sink], "sinkKafkaTopics": [sink.topic] if sink else [],
            "id": query.id, "statusCount": {query.state: 1}, "queryType": "PERSISTENT", "state": query.state}


def _show_queries(ctx: _Context) -> Entity:
    """The persistent queries, then the running push queries: each client's, and those started otherwise."""
    service = ctx.service
    persistent = [_running_query(service, q) for q in service.catalog.queries.values()]
    subscriptions = list(service.push_subscriptions.values())
    subscribed = {id(s.query) for s in subscriptions}
    pushes = [(s.id, s.query) for s in subscriptions] + \
        [(q.id, q) for q in service.push_queries.values() if id(q) not in subscribed and not q.ended]
    return {"@type": "queries", "queries": persistent + [
        {"queryString": q.sql, "sinks": [], "sinkKafkaTopics": [], "id": push_id, "statusCount": {q.state: 1},
         "queryType": "PUSH", "state": q.state} for push_id, q in pushes]}


def _explain(ctx: _Context) -> Entity:
    statement: ast.Explain = ctx.statement
    rows = dict(ctx.result.rows)
    plan = "\n".join(f"{step}: {detail}" for step, detail in ctx.result.rows)
    if statement.query_id is not None:
        query = ctx.service.catalog.get_query(statement.query_id)
        schema = ctx.service.queries.runner(query.id).query_plan.schema
        identity: Entity = {"id": query.id, "statementText": query.sql, "sources": list(query.sources),
                            "sinks": [query.sink], "state": query.state}
    else:
        schema = None
        identity = {"id": "", "statementText": str(rows.get("statement", "")), "sources": [], "sinks": [],
                    "state": None}
    return {"@type": "queryDescription", "queryDescription": {
        "id": identity["id"], "statementText": identity["statementText"], "windowType": None,
        "fields": [_field(c) for c in schema.columns] if schema is not None else [],
        "sources": identity["sources"], "sinks": identity["sinks"], "topology": "", "executionPlan": plan,
        "overriddenProperties": dict(ctx.request.properties), "ksqlHostQueryStatus": {},
        "queryType": "PERSISTENT", "queryErrors": [], "tasksMetadata": [], "state": identity["state"]}}


# -- the rest ---------------------------------------------------------------------------------------------


def _show_topics(ctx: _Context) -> Entity:
    if ctx.statement.extended:
        return {"@type": "kafka_topics_extended", "topics": [
            {"name": name, "replicaInfo": [replicas] * partitions, "consumerCount": consumers,
             "consumerGroupCount": groups} for name, partitions, replicas, consumers, groups in ctx.result.rows]}
    return {"@type": "kafka_topics", "topics": [{"name": name, "replicaInfo": [replicas] * partitions}
                                                for name, partitions, replicas in ctx.result.rows]}


def _show_properties(ctx: _Context) -> Entity:
    values = {**ctx.service.properties, **ctx.request.properties}
    return {"@type": "properties",
            "properties": [{"name": name, "scope": "KSQL", "value": str(value), "editable": True, "level": "SERVER"}
                           for name, value in sorted(values.items())],
            "overwrittenProperties": sorted(ctx.request.properties), "defaultProperties": []}


def _show_functions(ctx: _Context) -> Entity:
    return {"@type": "function_names", "functions": [
        {"name": name, "type": kind, "category": ""} for name, kind in ctx.result.rows]}


def _describe_function(ctx: _Context) -> Entity:
    info = functions.describe_function(ctx.statement.name)
    signatures: Iterable[str] = info["signatures"]  # type: ignore[assignment]
    return {"@type": "describe_function", "name": info["name"], "description": info["description"],
            "author": "nbstream", "version": "", "path": "internal",
            "functions": [_function_info(s, str(info["description"])) for s in signatures],
            "type": str(info["kind"]).upper()}


def _function_info(signature: str, description: str) -> Entity:
    """ksqlDB's ``FunctionInfo`` of a signature such as ``SUBSTRING(STRING|BYTES, INT, [INT]) -> STRING``."""
    call, _, returns = signature.partition(" -> ")
    inside = call.partition("(")[2].rpartition(")")[0]
    types = [t.strip() for t in inside.split(",") if t.strip()]
    return {"arguments": [{"name": "", "type": t, "description": "", "isVariadic": t.endswith("...")} for t in types],
            "returnType": returns, "description": description, "argumentTypes": types}


def _show_connectors(ctx: _Context) -> Entity:
    return {"@type": "connector_list", "connectors": [
        {"name": name, "type": kind.lower(), "className": cls, "state": state}
        for name, kind, cls, state, *_ in ctx.result.rows]}


def _create_connector(ctx: _Context) -> Entity:
    statement: ast.CreateConnector = ctx.statement
    return {"@type": "connector_info", "info": {
        "name": statement.name, "config": {k: str(v) for k, v in statement.properties.items()},
        "tasks": [], "type": statement.kind.lower()}}


def _drop_connector(ctx: _Context) -> Entity:
    return {"@type": "drop_connector", "connectorName": ctx.statement.name}


def _describe_connector(ctx: _Context) -> Entity:
    fields = dict(ctx.result.rows)
    return {"@type": "connector_description", "connectorClass": str(fields.get("Class", "")),
            "status": {"name": ctx.statement.name, "connector": {"state": fields.get("State"), "worker_id": "nbstream"},
                       "tasks": [], "type": str(fields.get("Type", "")).lower()},
            "sources": [], "topics": [str(v) for k, v in fields.items() if "topic" in str(k).lower()]}


def _show_variables(ctx: _Context) -> Entity:
    return {"@type": "variables", "variables": [{"name": k, "value": str(v)}
                                                for k, v in sorted(ctx.request.variables.items())]}


def _show_types(ctx: _Context) -> Entity:
    return {"@type": "type_list", "types": {name: _schema(t) for name, t in ctx.service.catalog.types.items()}}


_SHOW: dict[str, Callable[[_Context], Entity]] = {
    "QUERIES": _show_queries, "TOPICS": _show_topics, "PROPERTIES": _show_properties,
    "FUNCTIONS": _show_functions, "CONNECTORS": _show_connectors, "VARIABLES": _show_variables,
    "TYPES": _show_types,
}

_BUILDERS: dict[type[ast.Statement], Callable[[_Context], Entity | None]] = {
    ast.CreateSource: _create,
    ast.CreateAsSelect: _create,
    ast.InsertInto: _insert_into,
    ast.Drop: _drop,
    ast.Terminate: _terminate,
    ast.Show: _show,
    ast.Describe: _describe,
    ast.DescribeFunction: _describe_function,
    ast.Explain: _explain,
    ast.CreateConnector: _create_connector,
    ast.DropConnector: _drop_connector,
    ast.DescribeConnector: _describe_connector,
    ast.CreateType: _create_type,
    ast.DropType: _drop_type,
}
