"""A ksqlDB-compatible server (``nbstream serve``, or ksqlDB) as a
:class:`~nbstream.client.connection.Connection`.

Statements go to ``/ksql`` one at a time (so that an error names its statement), with the
connection's properties (its ``SET``\\ s) and the last ``commandSequenceNumber`` seen; their entities
are shown as the engine's results are (:mod:`nbstream.client.entities`). Pull queries are read from
``/query-stream`` whole into a DataFrame, push queries become a
:class:`~nbstream.client.push.RemotePushQuery`. ``:name`` parameters are written into the statement
as literals (:func:`~nbstream.client.statements.with_literals`). Opening one asks ``/info``, so
that a server that cannot be reached, TLS that fails or credentials that are refused say so at once.

:class:`RemoteEngine` is what ``nbstream.current_engine()`` gives while a notebook is connected to a
server: the engine calls that work over the API, and a clear error for those that cannot (Python
sources, the DuckDB connection …).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import pandas as pd
from sqlglot.tokens import TokenType

from nbstream.client.connection import Outcome
from nbstream.client.entities import to_result
from nbstream.client.push import RemotePushQuery
from nbstream.client.rest import KsqlClient
from nbstream.client.rows import rows_table
from nbstream.client.shape import push_shape
from nbstream.client.statements import Statement, split_script, with_literals
from nbstream.errors import NbstreamError, ServerError, ServerStatementError, UnsupportedError
from nbstream.runtime.push import RUNNING, AsyncBatches
from nbstream.runtime.results import Params, StatementResult

NAMES_TTL = 10.0  # seconds completion reuses the names it asked the server for
NAMES_TIMEOUT = 2.0  # completion never waits longer for the server

#: The statement completion asks: every stream and table with its columns, and the functions.
NAMES_REQUEST = "SHOW STREAMS EXTENDED; SHOW TABLES EXTENDED; SHOW FUNCTIONS;"


class RemoteConnection:
    """The server ``client`` talks to, as a :class:`~nbstream.client.connection.Connection`.

    With ``reruns`` (a notebook's), a plain ``CREATE STREAM/TABLE`` of a source the server has with
    the same statement (its DESCRIBE's ``statement``, spacing aside) does nothing, as a re-run cell
    does on the embedded engine; a changed one goes to the server, which refuses it (nbstream does
    not drop a server's streams and tables for you)."""

    def __init__(self, client: KsqlClient, *, reruns: bool = False) -> None:
        self.client = client
        self.reruns = reruns
        self.info = client.info()
        self.properties: dict[str, Any] = {}
        self.pushes: dict[str, RemotePushQuery] = {}
        self._sequence: int | None = None
        self._names: tuple[float, dict[str, str]] | None = None
        self._lock = threading.Lock()

    def location(self) -> str:
        version = self.info.get("version", "?")
        return f"{self.client.url} (ksqlDB {version}, {self.info.get('serverStatus', 'status unknown')})"

    def statements(self, script: str) -> list[Statement]:
        return split_script(script)

    # -- statements -----------------------------------------------------------------------------------
    def run(self, statement: Statement, params: Params) -> Outcome:
        if statement.kind == "set":
            assert statement.name is not None
            self.properties[statement.name] = statement.value
            return Outcome(None, StatementResult(
                statement.text, f"Successfully changed local property '{statement.name}' to '{statement.value}'."))
        if statement.kind == "unset":
            assert statement.name is not None
            self.properties.pop(statement.name, None)
            return Outcome(None, StatementResult(statement.text,
                                                 f"Successfully unset local property '{statement.name}'."))
        if statement.kind == "print":
            lines = list(self.print_topic(statement))
            return Outcome(None, StatementResult(statement.text, "\n".join(lines)))
        if statement.kind in ("pull", "push"):
            raise UnsupportedError("a query runs with pull() or push(), not run()")
        unchanged = self._unchanged(statement) if self.reruns else None
        if unchanged is not None:
            return Outcome(unchanged, None)
        results = self.execute(_sql(statement, params))
        return Outcome(None, results[0] if results else None)

    def execute(self, sql: str) -> list[StatementResult]:
        """Run the statements of ``sql`` (no queries) in one ``/ksql`` request: each entity's result."""
        entities = self.client.ksql(sql, self.properties, sequence=self._sequence)
        sequences = [e["commandSequenceNumber"] for e in entities if isinstance(e.get("commandSequenceNumber"), int)]
        if sequences:
            self._sequence = max([*sequences, self._sequence or 0])
        return [to_result(entity, str(entity.get("statementText") or sql)) for entity in entities]

    def pull(self, statement: Statement, params: Params) -> pd.DataFrame:
        header, rows = self.client.query(_sql(statement, params), self.properties)
        return rows_table(header, rows).to_pandas()

    def push(self, statement: Statement, params: Params) -> RemotePushQuery:
        sql = _sql(statement, params)
        stream = self.client.open_stream(sql, self.properties)
        try:
            shape = push_shape(stream.header, sql, self._describe)
        except BaseException:
            stream.close()
            raise
        query = RemotePushQuery(self.client, stream, sql, shape)
        with self._lock:
            self.pushes = {k: q for k, q in self.pushes.items() if q.state == RUNNING}
            self.pushes[query.id] = query
        return query

    def print_topic(self, statement: Statement) -> Iterator[str]:
        return self.client.print_topic(_sql(statement, {}), self.properties)

    def _unchanged(self, statement: Statement) -> str | None:
        """The note of a CREATE the server has run already as it is, else None."""
        created = created_source(statement)
        if created is None:
            return None
        kind, name = created
        description = self._describe(name)
        existing = str((description or {}).get("statement") or "")
        if " ".join(existing.split()).rstrip(";").strip() != " ".join(statement.text.split()):
            return None
        return f"{kind.capitalize()} {description.get('name', name) if description else name} exists with the " \
               "same definition: nothing to do."

    def _describe(self, name: str) -> dict[str, Any] | None:
        try:
            entities = self.client.ksql(f"DESCRIBE {name};", self.properties)
        except ServerStatementError:
            return None
        description = entities[0].get("sourceDescription") if entities else None
        return description if isinstance(description, dict) else None

    # -- queries ----------------------------------------------------------------------------------------
    def queries(self) -> pd.DataFrame:
        (result,) = self.execute("SHOW QUERIES;")
        frame = result.to_pandas()
        frame.columns = ["id", "type", "state", "sink", "sql"]
        return frame

    def stop_queries(self, which: str) -> list[str]:
        """Stop this connection's push query ``which``, or all of them (``all``), or TERMINATE the
        server's query ``which``. ``all`` leaves the server's persistent queries alone: they may be
        other clients' (``TERMINATE ALL;`` ends them)."""
        with self._lock:
            own = [q for q in self.pushes.values() if q.state == RUNNING]
        if which.lower() == "all":
            stopped = own
        else:
            stopped = [q for q in own if q.id.upper() == which.upper()]
            if not stopped:
                self.execute(f"TERMINATE {which};")
                return [which]
        for query in stopped:
            query.stop()
        return [q.id for q in stopped]

    def status(self) -> list[str]:
        try:
            self.info = self.client.info()
        except ServerError as error:
            return [f"server: {self.client.url}: {error}"]
        with self._lock:
            running = sum(q.state == "RUNNING" for q in self.pushes.values())
        properties = ", ".join(f"{k}={v}" for k, v in self.properties.items()) or "none set"
        return [f"server: {self.location()}; push queries of this session: {running} running; "
                f"properties: {properties}"]

    def names(self) -> dict[str, str]:
        """Streams, tables, their columns and the functions, as the server lists them (asked at
        most every :data:`NAMES_TTL` seconds; nothing if it does not answer quickly)."""
        now = time.monotonic()
        if self._names is not None and now - self._names[0] < NAMES_TTL:
            return self._names[1]
        names: dict[str, str] = {}
        try:
            entities = self.client.ksql(NAMES_REQUEST, self.properties, timeout=NAMES_TIMEOUT)
        except NbstreamError:
            entities = []
        for entity in entities:
            for function in entity.get("functions") or ():
                names[str(function.get("name"))] = "function"
            for description in entity.get("sourceDescriptions") or ():
                names.update(dict.fromkeys((str(f.get("name")) for f in description.get("fields") or ()), "column"))
                names[str(description.get("name"))] = str(description.get("type", "stream")).lower()
        self._names = (now, names)
        return names

    def settle(self) -> None:
        """Nothing: the server runs its queries itself."""

    def close(self) -> None:
        with self._lock:
            pushes = list(self.pushes.values())
        for query in pushes:
            query.stop()
        for query in pushes:
            query.closed.wait(2.0)
        self.client.close()


class RemoteEngine:
    """``nbstream.current_engine()`` while the notebook is connected to a server: ``execute``,
    ``query``, ``push`` and ``insert`` go to the server; what only the embedded engine has (Python
    sources, its DuckDB connection, its log …) raises an :class:`~nbstream.errors.UnsupportedError`
    saying so."""

    def __init__(self, connection: RemoteConnection) -> None:
        self.connection = connection
        self.client = connection.client

    def location(self) -> str:
        return self.connection.location()

    def execute(self, sql: str, params: Params | None = None) -> list[StatementResult]:
        """Run a script's statements on the server: one result per statement that answers one."""
        results = []
        for statement in split_script(sql):
            if statement.kind in ("pull", "push"):
                raise UnsupportedError("execute() runs statements: a query is query() or push()")
            outcome = self.connection.run(statement, params or {})
            results += [outcome.result] if outcome.result is not None else []
        return results

    def query(self, sql: str, params: Params | None = None) -> pd.DataFrame:
        """A pull query on the server."""
        return self.connection.pull(_one(sql), params or {})

    async def push(self, sql: str, params: Params | None = None) -> AsyncIterator[dict[str, Any]]:
        """A push query on the server: each row as a dict, until its LIMIT or the iteration stops."""
        query = self.connection.push(_one(sql), params or {})
        batches = query.subscribe(AsyncBatches())
        try:
            async for batch in batches:
                for row in batch.drop_columns(["ROWTIME", "__deleted"]).to_pylist():
                    yield row
        finally:
            query.stop()

    def insert(self, target: str, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Append ``rows`` to the stream ``target`` (``/inserts-stream``); the acknowledgements."""
        return self.client.insert(target, rows)

    def __getattr__(self, name: str) -> Any:
        hint = {"source": " Python sources run inside the embedded engine; on a server, write rows with "
                          "INSERT INTO … VALUES or eng.insert(stream, rows).",
                "con": " It is the embedded engine's DuckDB connection; a server's state is read with pull "
                       "queries.",
                "produce": " Write rows with eng.insert(stream, rows) (the server's /inserts-stream)."}.get(name, "")
        raise UnsupportedError(f"`{name}` needs the embedded engine, and this notebook is connected to "
                               f"{self.client.url}.{hint} (`%stream connect memory` goes back to an embedded one.)")


def created_source(statement: Statement) -> tuple[str, str] | None:
    """``(kind, name)`` of a plain ``CREATE [SOURCE] STREAM|TABLE name …`` (no OR REPLACE, no IF NOT
    EXISTS), its name as DESCRIBE takes it; None for any other statement."""
    words = [(t.text.upper(), t) for t in statement.tokens[:6]]
    if not words or words[0][0] != "CREATE":
        return None
    rest = words[2:] if len(words) > 1 and words[1][0] == "SOURCE" else words[1:]
    if len(rest) < 2 or rest[0][0] not in ("STREAM", "TABLE") or rest[1][0] == "IF":
        return None
    token = rest[1][1]
    quoted = token.token_type == TokenType.IDENTIFIER
    return rest[0][0], "`" + token.text.replace("`", "``") + "`" if quoted else token.text


def _sql(statement: Statement, params: Params) -> str:
    """The statement as a server takes it: its parameters as literals, ended by ``;`` (ksqlDB's
    grammar wants it)."""
    return with_literals(statement, params) + ";"


def _one(sql: str) -> Statement:
    statements = split_script(sql)
    if len(statements) != 1:
        raise ServerStatementError(f"expected one query, got {len(statements)} statements", statement_text=sql)
    return statements[0]
