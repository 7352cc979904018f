"""``POST /query-stream``, ``POST /query`` and ``POST /close-query``: pull and push queries.

``/query-stream`` takes ``{"sql": …, "properties": {…}}``, ``/query`` ksqlDB's older
``{"ksql": …, "streamsProperties": {…}}``; both answer in the format the ``Accept`` header picks
(:mod:`nbstream.server.streaming`; ``/query``'s default is ``application/vnd.ksql.v1+json``).

A pull query runs on the pull threads and is answered whole. A push query is the client's own
(:meth:`~nbstream.runtime.service.EngineService.subscribe_push`): its own id and position
(``auto.offset.reset`` among its properties) — though clients of the same stateless query share
the engine's work, each batch evaluated and encoded once — stepped by the engine's background loop;
its batches wait for the client in a bounded :class:`~nbstream.runtime.push.AsyncBatches`. It
streams until its LIMIT (``Limit
Reached``), ``/close-query`` (``Query Completed``), a failure (the error in-band), the client
going away (it stops at once), a client so slow that more than ``push_buffer_rows`` rows wait
for it (an in-band error, then the response ends; counted in ``/metrics``), or the server shutting
down (error 50303). At most ``max_push_queries`` stream at once; the next is refused with 40003.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlglot import exp

from nbstream.catalog.schema import Column
from nbstream.errors import ExecutionError, NbstreamError
from nbstream.runtime.pull import PullResult, cached_point_lookup
from nbstream.runtime.push import DONE, AsyncBatches, PushOverflow
from nbstream.runtime.service import EngineService, PushSubscription
from nbstream.server.errors import (
    BAD_REQUEST,
    BAD_STATEMENT,
    MAX_PUSH_QUERIES,
    SERVER_ERROR,
    SHUTTING_DOWN,
    KsqlError,
    generic_error,
)
from nbstream.server.http import Exchange, member
from nbstream.server.streaming import (
    LIMIT_REACHED,
    QUERY_COMPLETED,
    QUERY_FORMATS,
    QUERY_STREAM_FORMATS,
    DelimitedWriter,
    QueryHeader,
    RowEncoder,
    Writer,
    writer_for,
)
from nbstream.settings import find_setting
from nbstream.sql import ast, parse

if TYPE_CHECKING:
    from nbstream.server.app import KsqlServer

#: How long the last bytes of a push query's response may wait for its client (one that fell behind
#: gets them once it reads again within this time; else the response is left unfinished).
FINAL_WRITE_SECONDS = 5.0

#: Where a query's text says EMIT CHANGES/FINAL (strings and quoted names skipped): a push query.
_EMIT = re.compile(r"""'(?:[^']|'')*'|`(?:[^`]|``)*`|"(?:[^"]|"")*"|(?P<emit>\bEMIT\s+(?:CHANGES|FINAL)\b)""",
                   re.IGNORECASE)


class PushRegistry:
    """The push queries streaming to clients, by id, and how many may."""

    def __init__(self) -> None:
        self._streams: dict[str, PushSubscription] = {}
        self._admitted = 0
        self.shutting_down = False

    @property
    def open(self) -> int:
        return len(self._streams)

    @contextlib.contextmanager
    def admit(self, limit: int) -> Iterator[None]:
        """A place for one more push query while the block runs (40003 past ``limit``)."""
        if self._admitted >= limit:
            raise KsqlError(MAX_PUSH_QUERIES, "Maximum number of push queries exceeded")
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    def add(self, subscription: PushSubscription) -> None:
        self._streams[subscription.id] = subscription

    def remove(self, query_id: str) -> None:
        self._streams.pop(query_id, None)

    def get(self, query_id: str) -> PushSubscription | None:
        return self._streams.get(query_id)

    def stop_all(self, *, shutting_down: bool = False) -> None:
        self.shutting_down = self.shutting_down or shutting_down
        for subscription in list(self._streams.values()):
            subscription.stop()


async def handle_query_stream(server: KsqlServer, exchange: Exchange) -> None:
    body = await exchange.json_body()
    sql = member(body, "sql", str, required=True)
    properties = member(body, "properties", dict, {})
    await _run(server, exchange, sql, properties, writer_for(exchange.headers.get("accept"), QUERY_STREAM_FORMATS))


async def handle_query(server: KsqlServer, exchange: Exchange) -> None:
    body = await exchange.json_body()
    sql = member(body, "ksql", str, required=True)
    properties = member(body, "streamsProperties", dict, {})
    await _run(server, exchange, sql, properties, writer_for(exchange.headers.get("accept"), QUERY_FORMATS))


async def handle_close(server: KsqlServer, exchange: Exchange) -> None:
    body = await exchange.json_body()
    query_id = member(body, "queryId", str, required=True)
    subscription = server.pushes.get(query_id)
    if subscription is None:
        raise KsqlError(BAD_REQUEST, f"No query with id {query_id}")
    subscription.stop()
    await exchange.respond(200, b"", None)


async def _run(server: KsqlServer, exchange: Exchange, sql: str, properties: dict[str, Any], writer: Writer) -> None:
    if not _is_push(sql):
        await _pull(server, exchange, sql, properties, writer)
        return
    statement = _query_statement(sql)
    if statement.query.emit is None:
        await _pull(server, exchange, sql, properties, writer)
    else:
        await _push(server, exchange, statement, properties, writer)


def _is_push(sql: str) -> bool:
    return any(match.group("emit") for match in _EMIT.finditer(sql))


def _query_statement(sql: str) -> ast.Select:
    """The one SELECT of ``sql`` (40001 otherwise)."""
    try:
        statements = parse(sql)
    except NbstreamError as error:
        raise KsqlError(BAD_STATEMENT, str(error), sql) from None
    if len(statements) != 1 or not isinstance(statements[0], ast.Select):
        raise KsqlError(BAD_STATEMENT, "This endpoint runs one query (a SELECT); run other statements on /ksql", sql)
    return statements[0]


# -- pull queries ------------------------------------------------------------------------------------------


async def _pull(server: KsqlServer, exchange: Exchange, sql: str, properties: dict[str, Any], writer: Writer) -> None:
    started = time.perf_counter()
    service = server.service
    try:
        point = cached_point_lookup(service, sql, properties)
        if point is not None:  # planned before: answered with the other lookups in flight
            result = PullResult(point.columns, await server.lookups.rows(point.lookup))
        else:
            result = await server.run_pull(service.pull_rows, sql, None, properties)
    except NbstreamError as error:
        _query_statement(sql)  # a statement that is no query says so
        raise KsqlError(BAD_STATEMENT, str(error), sql) from None
    header = writer.header(QueryHeader(f"query_{int(time.time() * 1000)}", result.columns, is_pull=True))
    rows = RowEncoder([c.type for c in result.columns]).from_tuples(result.rows)
    if isinstance(writer, DelimitedWriter):  # as ksqlDB writes it, a line per chunk: clients read chunks as lines
        await exchange.start(200, writer.content_type)
        for chunk in (header, *(writer.rows([row]) for row in rows)):
            await exchange.write(chunk)
        await exchange.end()
    else:
        ending = writer.end(LIMIT_REACHED if result.stream and result.limit_reached else
                            QUERY_COMPLETED if result.stream else None)
        await exchange.respond(200, header + writer.rows(rows) + ending, writer.content_type)
    server.metrics.pull_seconds.observe(time.perf_counter() - started)


# -- push queries ------------------------------------------------------------------------------------------


async def _push(server: KsqlServer, exchange: Exchange, statement: ast.Select, properties: dict[str, Any],
                writer: Writer) -> None:
    service = server.service
    with server.pushes.admit(server.config.max_push_queries):
        subscriber = AsyncBatches(max_rows=server.config.push_buffer_rows)
        try:
            subscription = await server.run_statement(_subscribe, service, statement, subscriber, properties)
        except NbstreamError as error:
            raise KsqlError(BAD_STATEMENT, str(error), statement.text) from None
        server.pushes.add(subscription)
        response = _PushResponse(server, exchange, subscription, writer)
        try:
            ending = await response.stream()
        finally:
            server.pushes.remove(subscription.id)
            subscription.stop()
    await response.finish(ending)


def _subscribe(service: EngineService, statement: ast.Select, subscriber: AsyncBatches,
               properties: dict[str, Any]) -> PushSubscription:
    with service.lock:
        name = scalable_push_id(service, statement.query, properties)
        return service.subscribe_push(statement.text, subscriber, properties, subscription_id=name)


#: Columns a scalable push query may not use (ksqlDB's ``SystemColumns.isDisallowedInPullOrScalablePushQueries``).
DISALLOWED_COLUMNS = frozenset({"ROWPARTITION", "ROWOFFSET"})


def scalable_push_id(service: EngineService, query: ast.Query, properties: dict[str, Any]) -> str | None:
    """``SCALABLE_PUSH_QUERY_<id>`` where ksqlDB would run ``query`` as a scalable push query (its
    ``ScalablePushUtil.isScalablePushQuery``): with ``ksql.query.push.v2.enabled``, a push query
    of one source written by exactly one persistent query, without GROUP BY, WINDOW, HAVING or
    PARTITION BY, reading from the latest offset, that uses no ROWPARTITION or ROWOFFSET. Such a
    query sees the rows that arrive after it starts, as any push query from the latest offset does
    here; only its id says which kind ksqlDB would have run. None otherwise."""
    enabled = str(_setting(service, properties, "ksql.query.push.v2.enabled")).lower() == "true"
    latest = str(_setting(service, properties, "auto.offset.reset") or "latest").lower() == "latest"
    select = query.select
    if not (enabled and latest and query.emit == "CHANGES" and query.window is None and not query.partition_by):
        return None
    if select.args.get("joins") or select.args.get("group") or select.args.get("having"):
        return None
    from_ = select.args.get("from") or select.args.get("from_")
    if from_ is None or not isinstance(from_.this, exp.Table):
        return None
    source = from_.this.name if from_.this.this.quoted else from_.this.name.upper()
    writers = [q for q in service.persistent_queries() if q.sink == source]
    columns = {c.name.upper() for c in select.find_all(exp.Column)}
    if len(writers) != 1 or columns & DISALLOWED_COLUMNS:
        return None
    return f"SCALABLE_PUSH_QUERY_{uuid.uuid4().hex.upper()}"


def _setting(service: EngineService, properties: dict[str, Any], name: str) -> Any:
    """Configuration ``name`` as a request's ``properties`` override the engine's (a Kafka Streams
    setting also with ksqlDB's ``ksql.streams.`` prefix)."""
    found = find_setting(properties, name)
    return service.property(name) if found is None else found[1]


class _PushResponse:
    """The response of one push query: its header, its rows as they come, and how it ended."""

    def __init__(self, server: KsqlServer, exchange: Exchange, subscription: PushSubscription,
                 writer: Writer) -> None:
        self.server, self.exchange, self.writer = server, exchange, writer
        self.subscription, self.query = subscription, subscription.query
        self.subscriber: AsyncBatches = subscription.subscriber  # type: ignore[assignment]
        self.sending: asyncio.Future[None] | None = None  # the write in flight

    async def stream(self) -> bytes:
        """The header, then the rows until the query ends; returns the response's last bytes."""
        shape = self.query.shape
        columns = tuple(Column(shape.columns[i], shape.types[i]) for i in shape.ksql_order)
        await self.exchange.start(200, self.writer.content_type)
        await self.exchange.write(self.writer.header(QueryHeader(self.subscription.id, columns, is_pull=False)))
        return await self._rows()

    async def finish(self, ending: bytes) -> None:
        """Write the last bytes once what is in flight went out (a client that reads nothing more
        within :data:`FINAL_WRITE_SECONDS` does not get them)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._end(ending), FINAL_WRITE_SECONDS)

    async def _rows(self) -> bytes:
        """Write the query's rows as they come; returns how the response ends."""
        shape = self.query.shape
        encoder = RowEncoder([shape.types[i] for i in shape.ksql_order])
        positions = [2 + i for i in shape.ksql_order]  # after ROWTIME and __deleted, in ksqlDB's order
        tombstones = shape.is_table
        gone = asyncio.ensure_future(self.exchange.wait_disconnect())
        gone.add_done_callback(lambda _: self.subscription.stop())
        detached = asyncio.ensure_future(self.subscriber.detached.wait())
        try:
            async for batch in self.subscriber:
                data = _ENCODED.get(batch, self.writer.content_type)
                if data is None:  # the first subscriber of a shared query to take the batch encodes it
                    rows = encoder.from_arrow(batch.select(positions))
                    data = self.writer.rows(rows, batch.column(1).to_pylist() if tombstones else None)
                    _ENCODED.put(batch, self.writer.content_type, data)
                await self._write(data, detached)
        except PushOverflow as overflow:
            self.server.metrics.overflow()
            return self.writer.error(generic_error(SERVER_ERROR, str(overflow)))
        except ExecutionError as error:
            return self.writer.error(generic_error(SERVER_ERROR, str(error)))
        finally:
            gone.cancel()
            detached.cancel()
        if self.server.pushes.shutting_down:
            return self.writer.error(generic_error(SHUTTING_DOWN, "The server is shutting down"))
        return self.writer.end(LIMIT_REACHED if self.query.state == DONE else QUERY_COMPLETED)

    async def _write(self, data: bytes, detached: asyncio.Future[Any]) -> None:
        """Write ``data``; a client too slow to take it while more rows wait than its buffer holds
        is told so (:class:`PushOverflow`) — the write stays in flight, the query goes on without it."""
        if not data:
            return
        self.sending = asyncio.ensure_future(self.exchange.write(data))
        await asyncio.wait({self.sending, detached}, return_when=asyncio.FIRST_COMPLETED)
        if not self.sending.done():
            raise PushOverflow(f"{self.subscription.id}: the client read too slowly and was disconnected")
        self.sending.result()

    async def _end(self, ending: bytes) -> None:
        if self.sending is not None and not self.sending.done():
            await self.sending
        await self.exchange.end(ending)


class _EncodedBatches:
    """The bytes recent batches were written as, per format: the subscribers of a shared push query
    take the same batch, which is encoded once. A batch is held while its bytes are, so that its
    ``id`` is not reused meanwhile."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[int, str], tuple[pa.Table, bytes]] = OrderedDict()

    def get(self, batch: pa.Table, content_type: str) -> bytes | None:
        entry = self._entries.get((id(batch), content_type))
        return entry[1] if entry is not None and entry[0] is batch else None

    def put(self, batch: pa.Table, content_type: str, data: bytes) -> None:
        self._entries[id(batch), content_type] = (batch, data)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


_ENCODED = _EncodedBatches()
