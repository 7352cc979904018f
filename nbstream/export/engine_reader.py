"""Reading a running engine (``%stream export PATH`` in a notebook): what it runs now, as statements.

The engine's state is the final topology already (every DROP and TERMINATE applied): its ksqlDB
properties become ``SET`` statements, then come its connectors, its streams and tables (each by
the statement that created it) and its ``INSERT INTO … SELECT`` queries; the selection puts them
in dependency order. Each statement's origin names the engine's object. The topics Python sources
fed are feeds; a stream or table whose query stopped (terminated, or failed) is a failure, since
the job could not hold it as it is. The Python UDFs registered in the process (``@nbstream.udf``,
which every engine sees) are the contents' UDFs: the selection refuses a statement calling one.
"""

from __future__ import annotations

from nbstream.catalog import user_functions
from nbstream.export.origin import Contents, Feed, Origin, PythonUdf, Sourced
from nbstream.runtime.engine import Engine
from nbstream.runtime.processing_log import TOPIC as PROCESSING_LOG
from nbstream.runtime.queries import RUNNING_STATES
from nbstream.sql import ast, parse
from nbstream.sql.params import sql_literal


def read_engine(engine: Engine, name: str) -> Contents:
    """What ``engine`` runs now (call it holding the engine's lock, if it is a service)."""
    statements: list[Sourced] = []
    failures: list[tuple[Origin, str]] = []
    for key, value in engine.properties.items():
        statements += _parsed(f"SET {sql_literal(key)}={sql_literal(str(value))}", Origin(what=f"property {key}"))
    for connector, running in engine.connectors.running.items():
        statements += _parsed(running.sql, Origin(what=f"connector {connector}"))
    queries = list(engine.catalog.queries.values())
    for source in engine.catalog.sources.values():
        if source.name == PROCESSING_LOG or not source.sql:
            continue
        origin = Origin(what=f"{source.kind.lower()} {source.name}")
        parsed = _parsed(source.sql, origin)
        statements += parsed
        if parsed and isinstance(parsed[0].statement, ast.CreateAsSelect):
            creator = next((q for q in queries if q.sink == source.name and q.sql == source.sql), None)
            if creator is None or creator.state not in RUNNING_STATES:
                state = "gone" if creator is None else creator.state
                failures.append((origin, f"the query that fills it is {state}, and a job cannot hold it without one: "
                                         "drop it, or create it again"))
    for query in queries:
        statement = _parsed(query.sql, Origin(what=f"query {query.id}"))
        if statement and isinstance(statement[0].statement, ast.InsertInto) and query.state in RUNNING_STATES:
            statements += statement
    feeds = tuple(Feed("source", topic, Origin(what=f"a Python source into '{topic}'"))
                  for topic in engine.connectors.fed_topics)
    return Contents(name, tuple(statements), feeds, tuple(failures), "the running engine", _udfs())


def _udfs() -> tuple[PythonUdf, ...]:
    found = []
    for name in user_functions.names():
        function = user_functions.lookup(name)
        if function is not None:
            impl = function.overloads[0].impl if function.overloads else None
            what = f"Python function {getattr(impl, '__qualname__', name.lower())}"
            found.append(PythonUdf(name, "udf" if function.kind == "scalar" else "udtf", Origin(what=what)))
    return tuple(found)


def _parsed(sql: str, origin: Origin) -> list[Sourced]:
    return [Sourced(statement, origin) for statement in parse(sql)]
