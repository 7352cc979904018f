"""A server's ``/ksql`` entities as :class:`~nbstream.runtime.results.StatementResult`\\ s, so that the
faces show a server's answers as they show the engine's: a message, or a table.

Each entity is read by its ``@type`` (ksqlDB's ``KsqlEntity`` subtypes), taking only the fields it
shows, so fields added by newer releases change nothing. An entity of a type not known here is
shown as its JSON. A ``currentStatus`` whose command failed (``status`` ERROR) is an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from nbstream.errors import ServerStatementError
from nbstream.runtime.results import StatementResult

Entity = dict[str, Any]
Rows = list[tuple[Any, ...]]


def to_result(entity: Entity, statement: str) -> StatementResult:
    """What ``entity`` (the answer to ``statement``) shows."""
    builder = _BUILDERS.get(str(entity.get("@type")), _unknown)
    result = builder(entity, statement)
    warnings = [str(w.get("message")) for w in entity.get("warnings") or () if isinstance(w, dict)]
    if warnings and not result.columns:
        return StatementResult(result.statement, "\n".join([result.message, *(f"Warning: {w}" for w in warnings)]),
                               query_id=result.query_id)
    return result


def _table(statement: str, message: str, columns: Sequence[str], rows: Rows) -> StatementResult:
    return StatementResult(statement, message, tuple(columns), tuple(rows))


def _status(entity: Entity, statement: str) -> StatementResult:
    status = entity.get("commandStatus") or {}
    message = str(status.get("message", ""))
    if str(status.get("status", "")).upper() == "ERROR":
        raise ServerStatementError(message, statement_text=entity.get("statementText") or statement)
    return StatementResult(statement, message, query_id=status.get("queryId"))


def _sources(kind: str) -> Callable[[Entity, str], StatementResult]:
    def build(entity: Entity, statement: str) -> StatementResult:
        rows = [(s.get("name"), s.get("topic"), s.get("keyFormat"), s.get("valueFormat"),
                 "yes" if s.get("isWindowed") else "") for s in entity.get(f"{kind.lower()}s") or ()]
        return _table(statement, f"{len(rows)} {kind.lower()}s", (f"{kind.title()} Name", "Kafka Topic",
                                                                  "Key Format", "Value Format", "Windowed"), rows)
    return build


def type_text(schema: Any) -> str:
    """ksqlDB's ``SchemaInfo`` as a type: ``BIGINT``, ``ARRAY<STRING>``, ``STRUCT<A INT>``, ``DECIMAL(4, 2)``."""
    if not isinstance(schema, dict):
        return str(schema)
    name = str(schema.get("type", "?"))
    if name == "STRUCT":
        fields = ", ".join(f"{f.get('name')} {type_text(f.get('schema'))}" for f in schema.get("fields") or ())
        return f"STRUCT<{fields}>"
    if name == "ARRAY":
        return f"ARRAY<{type_text(schema.get('memberSchema'))}>"
    if name == "MAP":
        return f"MAP<STRING, {type_text(schema.get('memberSchema'))}>"
    if name == "DECIMAL" and schema.get("parameters"):
        params = schema["parameters"]
        return f"DECIMAL({params.get('precision')}, {params.get('scale')})"
    return name


def _description_rows(description: Entity) -> Rows:
    name = description.get("name")
    is_table = str(description.get("type", "")).upper() == "TABLE"
    rows: Rows = []
    for field in description.get("fields") or ():
        role = {"KEY": " (primary key)" if is_table else " (key)", "HEADER": " (header)"}.get(field.get("type"), "")
        rows.append((name, field.get("name"), type_text(field.get("schema")) + role))
    if description.get("extended"):
        rows += [(name, f"({label})", description.get(key)) for label, key in (
            ("type", "type"), ("topic", "topic"), ("partitions", "partitions"), ("key format", "keyFormat"),
            ("value format", "valueFormat"), ("timestamp", "timestamp"), ("statistics", "statistics"),
            ("statement", "statement")) if description.get(key) not in (None, "")]
    for role, key in (("reads", "readQueries"), ("writes", "writeQueries")):
        rows += [(name, f"(query {role})", q.get("id")) for q in description.get(key) or ()]
    return rows


def _description(entity: Entity, statement: str) -> StatementResult:
    description = entity.get("sourceDescription") or {}
    return _table(statement, str(description.get("name", "")), ("Source", "Field", "Type"),
                  _description_rows(description))


def _descriptions(entity: Entity, statement: str) -> StatementResult:
    rows = [row for d in entity.get("sourceDescriptions") or () for row in _description_rows(d)]
    count = len(entity.get("sourceDescriptions") or ())
    return _table(statement, f"{count} sources", ("Source", "Field", "Type"), rows)


def _queries(entity: Entity, statement: str) -> StatementResult:
    rows = [(q.get("id"), q.get("queryType"), q.get("state") or _status_count(q), ", ".join(q.get("sinks") or ()),
             q.get("queryString")) for q in entity.get("queries") or ()]
    return _table(statement, f"{len(rows)} queries", ("Query ID", "Query Type", "Status", "Sink Name",
                                                      "Query String"), rows)


def _status_count(query: Entity) -> str:
    counts = query.get("statusCount") or {}
    return ", ".join(f"{state}:{n}" for state, n in counts.items())


def _topics(entity: Entity, statement: str) -> StatementResult:
    extended = entity.get("@type") == "kafka_topics_extended"
    rows = [(t.get("name"), len(t.get("replicaInfo") or ()), ", ".join(str(r) for r in t.get("replicaInfo") or ()))
            + ((t.get("consumerCount"), t.get("consumerGroupCount")) if extended else ())
            for t in entity.get("topics") or ()]
    columns: tuple[str, ...] = ("Kafka Topic", "Partitions", "Partition Replicas")
    columns += ("Consumers", "Consumer Groups") if extended else ()
    return _table(statement, f"{len(rows)} topics", columns, rows)


def _properties(entity: Entity, statement: str) -> StatementResult:
    rows = [(p.get("name"), p.get("scope"), p.get("level"), p.get("value")) for p in entity.get("properties") or ()]
    return _table(statement, f"{len(rows)} properties", ("Property", "Scope", "Level", "Value"), rows)


def _functions(entity: Entity, statement: str) -> StatementResult:
    rows = [(f.get("name"), f.get("type"), f.get("category")) for f in entity.get("functions") or ()]
    return _table(statement, f"{len(rows)} functions", ("Function Name", "Type", "Category"), rows)


def _describe_function(entity: Entity, statement: str) -> StatementResult:
    rows: Rows = [(k, entity.get(k)) for k in ("name", "type", "description", "author", "version")
                  if entity.get(k) not in (None, "")]
    for variant in entity.get("functions") or ():
        arguments = ", ".join(str(a.get("type")) for a in variant.get("arguments") or ())
        rows.append(("signature", f"{entity.get('name')}({arguments}) -> {variant.get('returnType')}"))
    return _table(statement, f"Function {entity.get('name')}", ("property", "value"), rows)


def _query_description(entity: Entity, statement: str) -> StatementResult:
    description = entity.get("queryDescription") or {}
    rows: Rows = [(k, description.get(k)) for k in ("id", "statementText", "state") if description.get(k)]
    rows += [(k, ", ".join(description.get(k) or ())) for k in ("sources", "sinks")]
    rows += [("field", f"{f.get('name')} {type_text(f.get('schema'))}") for f in description.get("fields") or ()]
    rows += [("plan", line) for line in str(description.get("executionPlan") or "").splitlines()]
    rows += [("topology", line) for line in str(description.get("topology") or "").splitlines()]
    return _table(statement, "Query plan", ("Field", "Value"), rows)


def _connectors(entity: Entity, statement: str) -> StatementResult:
    rows = [(c.get("name"), c.get("type"), c.get("className"), c.get("state")) for c in entity.get("connectors") or ()]
    return _table(statement, f"{len(rows)} connectors", ("Connector Name", "Type", "Class", "Status"), rows)


def _connector_description(entity: Entity, statement: str) -> StatementResult:
    status = entity.get("status") or {}
    connector = status.get("connector") or {}
    rows: Rows = [("Name", status.get("name")), ("Class", entity.get("connectorClass")),
                  ("Type", status.get("type")), ("State", connector.get("state")),
                  ("Topics", ", ".join(entity.get("topics") or ()))]
    return _table(statement, f"Connector {status.get('name')}", ("Field", "Value"), rows)


def _message(text: Callable[[Entity], str]) -> Callable[[Entity, str], StatementResult]:
    return lambda entity, statement: StatementResult(statement, text(entity))


def _variables(entity: Entity, statement: str) -> StatementResult:
    rows = [(v.get("name"), v.get("value")) for v in entity.get("variables") or ()]
    return _table(statement, f"{len(rows)} variables", ("Variable Name", "Value"), rows)


def _types(entity: Entity, statement: str) -> StatementResult:
    rows = [(name, type_text(schema)) for name, schema in sorted((entity.get("types") or {}).items())]
    return _table(statement, f"{len(rows)} types", ("Type Name", "Schema"), rows)


def _unknown(entity: Entity, statement: str) -> StatementResult:
    return StatementResult(statement, json.dumps(entity, indent=2, default=str))


_BUILDERS: dict[str, Callable[[Entity, str], StatementResult]] = {
    "currentStatus": _status,
    "streams": _sources("STREAM"),
    "tables": _sources("TABLE"),
    "sourceDescription": _description,
    "source_descriptions": _descriptions,
    "queries": _queries,
    "kafka_topics": _topics,
    "kafka_topics_extended": _topics,
    "properties": _properties,
    "function_names": _functions,
    "describe_function": _describe_function,
    "queryDescription": _query_description,
    "connector_list": _connectors,
    "connector_description": _connector_description,
    "connector_info": _message(lambda e: f"Created connector {(e.get('info') or {}).get('name')}"),
    "drop_connector": _message(lambda e: f"Dropped connector {e.get('connectorName')}"),
    "terminate_query": _message(lambda e: f"Query {e.get('queryId')} terminated."),
    "warning_entity": _message(lambda e: str(e.get("message", ""))),
    "variables": _variables,
    "type_list": _types,
}
