"""SHOW, DESCRIBE and EXPLAIN: statements that answer with rows about the catalog."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nbstream.catalog import functions
from nbstream.errors import UnsupportedError
from nbstream.plan.planner import plan_query
from nbstream.runtime import topics
from nbstream.runtime.explain import EXPLAIN_COLUMNS, explain_plan
from nbstream.runtime.results import Params, StatementResult
from nbstream.sql import ast

if TYPE_CHECKING:
    from nbstream.runtime.engine import Engine


def exec_Show(engine: Engine, stmt: ast.Show, params: Params) -> StatementResult:
    handler = _SHOW.get(stmt.what)
    if handler is None:
        raise UnsupportedError(f"SHOW {stmt.what} is not supported yet")
    columns, rows = handler(engine, stmt.extended)
    return StatementResult(stmt.text, f"{len(rows)} {stmt.what.lower()}", columns, tuple(rows))


def _show_sources(kind: str) -> Any:
    def show(engine: Engine, extended: bool) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        rows = [(s.name, s.topic, s.key_format, s.value_format, s.window.kind if s.window else "")
                for s in sorted(engine.catalog.sources.values(), key=lambda s: s.name) if s.kind == kind]
        kind_name = kind.title()
        return (f"{kind_name} Name", "Kafka Topic", "Key Format", "Value Format", "Windowed"), rows
    return show


def _show_queries(engine: Engine, extended: bool) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    rows = []
    for query in engine.catalog.queries.values():
        stats = engine.queries.runner(query.id).stats
        rows.append((query.id, query.state, query.sink, stats.consumed, stats.logged, query.sql))
    return ("Query ID", "Status", "Sink Name", "Consumed", "Errors", "Query String"), rows


def _show_functions(engine: Engine, extended: bool) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    rows = [(name, str(functions.kind_of(name)).upper()) for name in functions.function_names()]
    return ("Function Name", "Type"), rows


def _show_properties(engine: Engine, extended: bool) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    return ("Property", "Value"), sorted((k, str(v)) for k, v in engine.properties.items())


def _show_connectors(engine: Engine, extended: bool) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    return ("Connector Name", "Type", "Class", "Status", "Kafka Topic", "Records"), engine.connectors.show_rows()


def _show_types(engine: Engine, extended: bool) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    return ("Type Name", "Schema"), [(name, str(sql_type)) for name, sql_type in engine.catalog.types.items()]


_SHOW: dict[str, Callable[[Engine, bool], tuple[tuple[str, ...], list[tuple[Any, ...]]]]] = {
    "STREAMS": _show_sources("STREAM"),
    "TABLES": _show_sources("TABLE"),
    "TOPICS": topics.show_topics,
    "QUERIES": _show_queries,
    "FUNCTIONS": _show_functions,
    "PROPERTIES": _show_properties,
    "CONNECTORS": _show_connectors,
    "TYPES": _show_types,
}


def exec_PrintTopic(engine: Engine, stmt: ast.PrintTopic, params: Params) -> StatementResult:
    return topics.print_result(engine, stmt)


def exec_Describe(engine: Engine, stmt: ast.Describe, params: Params) -> StatementResult:
    if stmt.name is None:
        kind = "STREAM" if stmt.all_of == "STREAMS" else "TABLE"
        names = sorted(s.name for s in engine.catalog.sources.values() if s.kind == kind)
        rows = [row for name in names for row in _describe_rows(engine, name, stmt.extended)]
    else:
        rows = _describe_rows(engine, stmt.name, stmt.extended)
    return StatementResult(stmt.text, f"{stmt.name or stmt.all_of}", ("Source", "Field", "Type"), tuple(rows))


def _describe_rows(engine: Engine, name: str, extended: bool) -> list[tuple[Any, ...]]:
    source = engine.catalog.get(name)
    rows: list[tuple[Any, ...]] = [(source.name, "ROWTIME", "BIGINT (system)")]
    for col in source.schema.columns:
        key = " (primary key)" if source.is_table else " (key)"
        role = {"KEY": key, "VALUE": ""}.get(col.role, f" ({col.role.lower()})")
        rows.append((source.name, col.name, f"{col.type}{role}"))
    if extended:
        topic = engine.log.require(source.topic)
        rows += [(source.name, "(type)", source.kind), (source.name, "(topic)", source.topic),
                 (source.name, "(partitions)", topic.partitions), (source.name, "(records)", topic.size),
                 (source.name, "(key format)", source.key_format),
                 (source.name, "(value format)", source.value_format),
                 (source.name, "(timestamp)", source.timestamp or "ROWTIME"),
                 (source.name, "(statement)", source.sql)]
        for query in engine.catalog.running():
            if source.name == query.sink or source.name in query.sources:
                role = "writes" if source.name == query.sink else "reads"
                rows.append((source.name, f"(query {role})", query.id))
    return rows


def exec_DescribeConnector(engine: Engine, stmt: ast.DescribeConnector, params: Params) -> StatementResult:
    rows = tuple(engine.connectors.describe_rows(stmt.name))
    return StatementResult(stmt.text, f"Connector {stmt.name}", ("Field", "Value"), rows)


def exec_Explain(engine: Engine, stmt: ast.Explain, params: Params) -> StatementResult:
    if stmt.query_id is not None:
        query = engine.catalog.get_query(stmt.query_id)
        plan = engine.queries.runner(query.id).query_plan
        text = query.sql
    else:
        inner = stmt.statement
        query_ast = getattr(inner, "query", None)
        if query_ast is None:
            raise UnsupportedError("EXPLAIN takes a query, a CREATE … AS SELECT, an INSERT INTO … SELECT or a query id")
        plan = plan_query(query_ast, engine.catalog, engine.con, params=params)
        text = inner.text if inner is not None else ""
    rows = [("statement", text), *([] if plan is None else explain_plan(plan))]
    return StatementResult(stmt.text, "Query plan", EXPLAIN_COLUMNS, tuple(rows))
