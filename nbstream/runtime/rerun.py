"""Running a statement again (a notebook cell re-run, a job started again): the rules that decide
whether a CREATE (or an INSERT INTO … SELECT) has nothing to do, or replaces what an earlier version
of it created.

ksqlDB's own rule for a changed query is ``CREATE OR REPLACE`` with ``validateUpgrade``; here a
plain ``CREATE`` run again is idempotent when unchanged, and rebuilds its stream or table when
changed (if no other query depends on it). ``OR REPLACE`` and ``IF NOT EXISTS`` keep their own
meaning. :meth:`EngineService.rerun <nbstream.runtime.service.EngineService.rerun>` applies both
rules under the engine lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nbstream.catalog.types import SqlType
from nbstream.errors import CatalogError, UnknownNameError
from nbstream.sql import ast, parse

if TYPE_CHECKING:
    from nbstream.runtime.engine import Engine


def unchanged_message(engine: Engine, statement: ast.Statement) -> str | None:
    """A message when ``statement`` re-creates a stream, table, connector or type exactly as it exists
    (a re-run cell), else None. OR REPLACE and IF NOT EXISTS keep their own meaning."""
    if isinstance(statement, ast.CreateConnector) and not statement.if_not_exists:
        running = engine.connectors.running.get(statement.name)
        if running is None or _normal(running.sql) != _normal(statement.text):
            return None
        return f"Connector {statement.name} exists with the same definition: nothing to do."
    if isinstance(statement, ast.InsertInto):
        same = [q.id for q in engine.catalog.running() if _normal(q.sql) == _normal(statement.text)]
        return f"Query {same[0]} runs this INSERT INTO already: nothing to do." if same else None
    if isinstance(statement, ast.CreateType):
        return _unchanged_type(engine, statement)
    if not isinstance(statement, ast.CreateSource | ast.CreateAsSelect):
        return None
    if statement.or_replace or statement.if_not_exists:
        return None
    existing = engine.catalog.find(statement.name)
    if existing is None or existing.sql is None or _normal(existing.sql) != _normal(statement.text):
        return None
    return f"{existing.kind.capitalize()} {statement.name} exists with the same definition: nothing to do."


def _unchanged_type(engine: Engine, statement: ast.CreateType) -> str | None:
    existing = engine.catalog.types.find(statement.name)
    if existing is None or statement.if_not_exists or _resolved(engine, statement) != existing:
        return None
    return f"Type {statement.name.upper()} exists with the same definition: nothing to do."


def _resolved(engine: Engine, statement: ast.CreateType) -> SqlType | None:
    """The type ``statement`` defines, or None if it names an unknown type (running it will say)."""
    try:
        return engine.catalog.types.resolve(statement.type)
    except UnknownNameError:
        return None


#: What a re-run notebook cell suggests when other queries block replacing what it changed.
CELL_HINT = "terminate them first (%stream stop ID), then run this cell again."


def drop_changed(engine: Engine, statement: ast.Statement, hint: str = CELL_HINT) -> str | None:
    """When a re-run cell changed the CREATE of an existing stream or table: drop the old one, so
    that ``statement`` creates it anew, and say what was replaced (None: nothing to replace).

    The query that created it is terminated and, for a ``CREATE … AS SELECT``, the topic it wrote is
    deleted: the new query rebuilds it from its input. A declared stream or table over a topic keeps
    the topic. Raises :class:`CatalogError`, naming them (and ``hint``), if other queries read it or
    write to it. A changed CREATE TYPE drops the type: what was made with it keeps its types."""
    if isinstance(statement, ast.CreateType) and not statement.if_not_exists:
        if engine.catalog.types.find(statement.name) is None:
            return None
        engine.execute(f"DROP TYPE {statement.name};")
        return f"Type {statement.name.upper()} changed: replaced."
    if not isinstance(statement, ast.CreateSource | ast.CreateAsSelect) or statement.or_replace \
            or statement.if_not_exists:
        return None
    existing = engine.catalog.find(statement.name)
    if existing is None or existing.sql is None or _normal(existing.sql) == _normal(statement.text):
        return None
    queries = [q for q in engine.catalog.queries.values() if q.state == "RUNNING"]
    creator = [q.id for q in queries if q.sink == existing.name and _normal(q.sql) == _normal(existing.sql)]
    others = sorted(q.id for q in queries if q.id not in creator
                    and (existing.name in q.sources or q.sink == existing.name))
    kind = existing.kind.capitalize()
    if others:
        raise CatalogError(f"{kind} {existing.name} changed, but queries [{', '.join(others)}] read from it or "
                           f"write to it: {hint}")
    delete_topic = " DELETE TOPIC" if isinstance(parse(existing.sql)[0], ast.CreateAsSelect) else ""
    engine.execute("".join(f"TERMINATE {q};" for q in creator) + f"DROP {existing.kind} {existing.name}{delete_topic};")
    rebuilt = f", its query {creator[0]} terminated and its topic rebuilt" if creator and delete_topic else ""
    return f"{kind} {existing.name} changed: replaced{rebuilt}."


def _normal(sql: str) -> str:
    return " ".join(sql.split())
