"""Planning the whole job before anything is written: its statements run, in order, in a fresh
in-memory engine that is never stepped (no connector writes, no query reads).

What fails is reported at the notebook cell and line it came from (the error's own line and column
within the statement moved into the cell), and nothing after it runs. What succeeds gives what the
writers need: every persistent query's plan as a versioned document, and every stream and table the
job defines with its columns (a stream declared without columns over a connector's topic gets them
from the connector).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import duckdb

from nbstream.catalog.catalog import Source
from nbstream.errors import ExportError, NbstreamError
from nbstream.export.selection import Selected, Selection
from nbstream.plan.serde import plan_document
from nbstream.runtime.engine import Engine
from nbstream.runtime.results import StatementResult
from nbstream.sql import ast


@dataclass(frozen=True)
class PlannedQuery:
    """A persistent query of the job: the id the sandbox gave it, what it writes, the statement that
    starts it and its plan document (:mod:`nbstream.plan.serde`)."""

    id: str
    sink: str
    statement: Selected
    plan: dict[str, Any]


@dataclass(frozen=True)
class PlannedJob:
    """A selection that plans: its queries, and the streams and tables it defines, by name."""

    selection: Selection
    queries: tuple[PlannedQuery, ...]
    sources: Mapping[str, Source]
    properties: Mapping[str, Any]


def plan_job(selection: Selection, properties: Mapping[str, Any] | None = None) -> PlannedJob:
    """Run ``selection``'s statements in a sandbox engine with ``properties`` (the job's ksqlDB
    configuration); an :class:`ExportError` naming the cell and line of the first that fails."""
    engine = Engine(properties=dict(properties or {}))
    try:
        queries = []
        defined: dict[str, Source] = {}
        for selected in selection.statements:
            result = _run(engine, selected)
            if result.query_id is not None:
                plan = engine.queries.runner(result.query_id).query_plan
                sink = engine.catalog.get_query(result.query_id).sink
                queries.append(PlannedQuery(result.query_id, sink, selected, plan_document(plan)))
            if isinstance(selected.statement, ast.CreateSource | ast.CreateAsSelect) and result.source is not None:
                defined[result.source] = engine.catalog.get(result.source)
        return PlannedJob(selection, tuple(queries), defined, dict(properties or {}))
    finally:
        engine.close()


def _run(engine: Engine, selected: Selected) -> StatementResult:
    try:
        (result,) = engine.execute(selected.text)
    except (NbstreamError, duckdb.Error) as error:
        raise ExportError([failure(selected, error)]) from None
    return result


def failure(selected: Selected, error: Exception) -> str:
    """``error`` raised by ``selected``, told at its place in the notebook."""
    origin = selected.sourced.origin
    if not isinstance(error, NbstreamError):
        return f"{origin}: {selected.sourced.summary}: {type(error).__name__}: {error}"
    span = error.span
    if span is None or origin.line is None:
        return f"{origin}: {selected.sourced.summary}: {type(error).__name__}: {error.message}"
    at = replace(origin, line=origin.line + span.line - 1)
    return f"{at}, column {span.column}: {type(error).__name__}: {error.message}\n{span.highlight()}"
