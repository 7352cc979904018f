"""``POST /ksql``: run every statement of a request but queries, one entity per statement.

The request is ``{"ksql": "s1; s2;", "streamsProperties": {…}, "sessionVariables": {…},
"commandSequenceNumber": n}``. ``streamsProperties`` hold for the request's statements only, and
so do its ``SET``/``UNSET`` (as in ksqlDB's REST API; its CLI keeps them for the session). The
statements run in order, holding the engine's lock, on the server's statements thread. A
``SELECT`` or ``PRINT`` anywhere refuses the whole request (40002: use ``/query``); a statement
that fails answers ``statement_error`` 40001 naming it, with the entities of the statements that
ran before it (they stay done: nbstream does not validate a request against a sandbox first).

File connectors and sinks read and write only under ``--files-root`` (refused without it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbstream.connectors.registry import connector_class
from nbstream.errors import NbstreamError
from nbstream.runtime.results import StatementResult
from nbstream.runtime.service import EngineService
from nbstream.server import entities
from nbstream.server.entities import Entity, statement_text
from nbstream.server.errors import BAD_STATEMENT, FORBIDDEN, QUERY_ENDPOINT, KsqlError
from nbstream.server.http import Exchange, member
from nbstream.server.restricted import Restricted
from nbstream.sql import ast, parse

if TYPE_CHECKING:
    from nbstream.server.app import KsqlServer

#: ksqlDB's words for a query sent to ``/ksql``.
QUERY_ENDPOINT_MESSAGE = ("The following statement types should be issued to the websocket endpoint '/query':\n"
                          "\t* PRINT\n\t* SELECT")

#: Statements the server answers itself: they concern the request, not the engine.
_REQUEST_SCOPED = (ast.SetProperty, ast.UnsetProperty)


async def handle(server: KsqlServer, exchange: Exchange) -> None:
    body = await exchange.json_body()
    text = member(body, "ksql", str, required=True)
    properties = member(body, "streamsProperties", dict, {})
    variables = member(body, "sessionVariables", dict, {})
    service = server.service
    statements = parse_statements(text)
    request = entities.Request(properties, variables)
    result = await server.run_statement(run_request, service, statements, request, server.config.files_root,
                                        server.config.restricted)
    await exchange.respond_json(result)


def parse_statements(text: str) -> list[ast.Statement]:
    """The statements of a ``/ksql`` request: 40001 if one does not parse, 40002 if one is a query."""
    try:
        statements = parse(text)
    except NbstreamError as error:
        raise KsqlError(BAD_STATEMENT, str(error), text) from None
    for statement in statements:
        if isinstance(statement, ast.Select | ast.PrintTopic):
            raise KsqlError(QUERY_ENDPOINT, QUERY_ENDPOINT_MESSAGE, statement_text(statement))
    return statements


def run_request(service: EngineService, statements: list[ast.Statement], request: entities.Request,
                files_root: Path | None, restricted: Restricted | None = None) -> list[Entity]:
    """Run ``statements`` in order (on the statements thread); their entities. A ``restricted``
    server (a job's) refuses statements that would change the job."""
    done: list[Entity] = []
    properties = dict(request.properties)
    with service.lock:
        for statement in statements:
            try:
                produced = _run(service, statement, properties, request.variables, files_root, restricted)
            except NbstreamError as error:
                raise KsqlError(BAD_STATEMENT, str(error), statement_text(statement), done) from None
            except KsqlError as error:
                error.statement, error.entities = statement_text(statement), done
                raise
            if produced is not None:
                done.append(produced)
    return done


def _run(service: EngineService, statement: ast.Statement, properties: dict[str, Any],
         variables: Mapping[str, Any], files_root: Path | None, restricted: Restricted | None) -> Entity | None:
    """Run one statement; ``properties`` (the request's overrides) take its SET or UNSET."""
    request = entities.Request(dict(properties), variables)
    if isinstance(statement, ast.SetProperty):
        properties[statement.name] = statement.value
        return None
    if isinstance(statement, ast.UnsetProperty):
        properties.pop(statement.name, None)
        return None
    if isinstance(statement, ast.Show) and statement.what == "VARIABLES":
        return entities.entity(service, statement, StatementResult(statement.text, ""), request)
    if isinstance(statement, ast.Terminate) and statement.query_id is not None:
        push = service.push_subscriptions.get(statement.query_id.upper())
        if push is not None:
            push.stop()
            return entities.terminated_push_query(statement, push.id)
    if restricted is not None:
        restricted.check_statement(statement)
    if isinstance(statement, ast.CreateConnector):
        check_files(statement, files_root)
    (result,) = service.execute(statement.text, properties=properties)
    return entities.entity(service, statement, result, request)


def check_files(statement: ast.CreateConnector, files_root: Path | None) -> None:
    """Refuse (40300) a connector whose file or folder properties lie outside ``files_root`` (or
    any, without one)."""
    props = {str(k).lower(): v for k, v in statement.properties.items()}
    cls = connector_class(props.get("connector.class"), statement.kind, statement.name)
    for name in cls.paths:
        value = props.get(name)
        if value is None:
            continue
        if files_root is None:
            raise KsqlError(FORBIDDEN, f"connector {statement.name}: '{name}' names a file, and this server "
                                       "reads and writes no files (start it with --files-root DIR)")
        if not within(str(value), files_root):
            raise KsqlError(FORBIDDEN, f"connector {statement.name}: '{name}' = '{value}' is outside the "
                                       f"files root {files_root}")


def within(path: str, root: Path) -> bool:
    """Whether ``path`` (a file, folder or glob; relative ones count from ``root``) stays inside
    ``root`` once links and ``..`` are resolved. A glob counts by the folder before its first
    wildcard, and may not climb out with ``..`` after it."""
    fixed = path
    for index, char in enumerate(path):
        if char in "*?[":
            if ".." in Path(path[index:]).parts:
                return False
            fixed = path[:index]
            break
    resolved = Path(os.path.realpath(root / fixed))
    base = Path(os.path.realpath(root))
    return resolved == base or base in resolved.parents

