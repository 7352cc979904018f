"""``POST /inserts-stream`` (HTTP/2 only, as in ksqlDB: 40004 otherwise): rows into a stream or table.

The body is ``{"target": "S"}`` then one JSON object per line, for as long as the client keeps the
request open. The body is read while rows are inserted: the rows that arrived meanwhile (at most
:data:`MAX_ROWS` of them) are appended next, in one transaction — durable before they are
acknowledged — and each gets an ack, ``{"status":"ok","seq":n}`` (one per
line, or a JSON array with ``Accept: application/json``). The rows of every request into the same
target that wait at the same time are appended together (:class:`Appender`): an append costs
milliseconds of DuckDB statements however few rows it holds, so appends into a target start at most
once per :attr:`~nbstream.server.app.ServerConfig.insert_linger` (a row arriving after a quiet
spell goes at once); each request's rows stay in its order. The first row that cannot be inserted
gets ``{"@type":"generic_error","status":"error","seq":n,"error_code":40000,"message":…}`` and ends
the response; the rows before it stay inserted. The response ends when the request does.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from nbstream.errors import NbstreamError
from nbstream.runtime.ingest import JsonRowsAppended
from nbstream.server.errors import BAD_REQUEST, BAD_STATEMENT, HTTP2_ONLY, KsqlError
from nbstream.server.http import Exchange, member
from nbstream.server.streaming import DELIMITED, JSON, writer_for

if TYPE_CHECKING:
    from nbstream.runtime.service import EngineService
    from nbstream.server.app import KsqlServer

#: Rows appended in one transaction at most.
MAX_ROWS = 10_000


async def handle(server: KsqlServer, exchange: Exchange) -> None:
    if not exchange.http2:
        raise KsqlError(HTTP2_ONLY, "This endpoint is only available when using HTTP2")
    as_array = writer_for(exchange.headers.get("accept"), (DELIMITED, JSON)).content_type == JSON
    service = server.service
    groups = exchange.lines()
    try:
        target, first_rows = await _arguments(groups)
        if server.config.restricted is not None:
            server.config.restricted.check_insert(target)
        await _insert(server, service, target, [])  # an unknown target is refused before the response starts
    except KsqlError as error:  # answered at once: the client's rows may stream on for ever
        await exchange.respond_error(error, discard=False)
        return
    await exchange.start(200, JSON if as_array else DELIMITED)
    acks = _Acks(as_array)
    await exchange.write(acks.opening())
    seq = 0
    appender = server.appender(target)
    async for rows in _batches(_with_first(first_rows, groups)):
        try:
            done = await appender.append(rows)
        except NbstreamError as error:
            raise KsqlError(BAD_STATEMENT, str(error)) from None
        await exchange.write(acks.ok(range(seq, seq + done.count)))
        if done.failed is not None:
            index, message = done.failed
            await exchange.end(acks.error(seq + index, message))
            return
        seq += done.count
    await exchange.end(acks.closing())


async def _batches(groups: AsyncIterator[list[bytes]]) -> AsyncIterator[list[bytes]]:
    """The rows of ``groups`` as they are read, gathered into batches of what arrived while the
    consumer was busy with the last one (each at most :data:`MAX_ROWS`)."""
    waiting: list[bytes] = []
    arrived = asyncio.Event()
    finished = False

    async def read() -> None:
        nonlocal finished
        try:
            async for group in groups:
                waiting.extend(group)
                arrived.set()
        finally:
            finished = True
            arrived.set()

    reader = asyncio.ensure_future(read())
    try:
        while True:
            await arrived.wait()
            arrived.clear()
            while waiting:
                batch, waiting[:] = waiting[:MAX_ROWS], waiting[MAX_ROWS:]
                yield batch
            if finished:
                reader.result()  # the body's error (too large, the client went away), if any
                return
    finally:
        reader.cancel()


async def _arguments(groups: AsyncIterator[list[bytes]]) -> tuple[str, list[bytes]]:
    """The target the first line names, and the rows that came with it."""
    first = await anext(groups, None)
    if not first:
        raise KsqlError(BAD_REQUEST, "The request has no arguments line ({\"target\": …})")
    try:
        arguments = orjson.loads(first[0])
    except orjson.JSONDecodeError:
        raise KsqlError(BAD_REQUEST, "Invalid JSON in the arguments line") from None
    return member(arguments, "target", str, required=True), first[1:]


async def _with_first(first: list[bytes], groups: AsyncIterator[list[bytes]]) -> AsyncIterator[list[bytes]]:
    if first:
        yield first
    async for group in groups:
        yield group


async def _insert(server: KsqlServer, service: EngineService, target: str, rows: list[bytes]) -> Any:
    try:
        return await server.run_statement(service.insert_json_rows, target, rows)
    except NbstreamError as error:
        raise KsqlError(BAD_STATEMENT, str(error)) from None


@dataclass
class _Waiting:
    rows: list[bytes]
    done: asyncio.Future[JsonRowsAppended]


class Appender:
    """The appends into one target: the rows of every request that wait when an append starts go
    in it, at most :data:`MAX_ROWS` (a request's rows are never split), and appends start at most
    once per ``linger`` seconds. Each request learns what became of its rows as if they had been
    appended alone: the rows before its first bad row are appended, that row is reported; rows of
    other requests after a bad row go in the next append."""

    def __init__(self, server: KsqlServer, target: str, linger: float) -> None:
        self.server, self.target, self.linger = server, target, linger
        self._waiting: list[_Waiting] = []
        self._task: asyncio.Task[None] | None = None
        self._last_start = -math.inf

    async def append(self, rows: list[bytes]) -> JsonRowsAppended:
        """Append ``rows`` (with those of other requests waiting meanwhile); what became of them."""
        done: asyncio.Future[JsonRowsAppended] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(rows, done))
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        return await done

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                pause = self._last_start + self.linger - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                self._last_start = loop.time()
                taken = self._take()
                if not taken:
                    continue
                try:
                    done = await self.server.run_statement(self.server.service.insert_json_rows, self.target,
                                                           [row for waiting in taken for row in waiting.rows])
                except Exception as error:  # the target's, not a row's: every request of the append fails
                    for waiting in taken:
                        if not waiting.done.done():
                            waiting.done.set_exception(error)
                    continue
                self._share(taken, done)
        finally:
            self._task = None
            for waiting in self._waiting:  # cancelled (the server stops)
                waiting.done.cancel()
            self._waiting.clear()

    def _take(self) -> list[_Waiting]:
        taken: list[_Waiting] = []
        count = 0
        while self._waiting and (not taken or count + len(self._waiting[0].rows) <= MAX_ROWS):
            waiting = self._waiting.pop(0)
            if not waiting.done.cancelled():  # its request went away before its rows went in
                count += len(waiting.rows)
                taken.append(waiting)
        return taken

    def _share(self, taken: list[_Waiting], done: JsonRowsAppended) -> None:
        """Tell each request of an append what became of its rows; put back those never tried."""
        start = 0
        for i, waiting in enumerate(taken):
            count = len(waiting.rows)
            if done.failed is None or done.failed[0] >= start + count:
                result = JsonRowsAppended(count)
            else:  # its bad row stopped the append: the requests after it try again
                index, message = done.failed
                result = JsonRowsAppended(index - start, (index - start, message))
                self._waiting[:0] = taken[i + 1:]
            if not waiting.done.done():
                waiting.done.set_result(result)
            if result.failed is not None:
                return
            start += count


class _Acks:
    """The acks of the rows inserted, delimited or as a JSON array."""

    def __init__(self, as_array: bool) -> None:
        self.as_array = as_array
        self._first = True

    def opening(self) -> bytes:
        return b"[" if self.as_array else b""

    def closing(self) -> bytes:
        return b"]" if self.as_array else b""

    def ok(self, seqs: range) -> bytes:
        return b"".join(self._element({"status": "ok", "seq": seq}) for seq in seqs)

    def error(self, seq: int, message: str) -> bytes:
        ack = {"@type": "generic_error", "status": "error", "seq": seq, "error_code": BAD_REQUEST, "message": message}
        return self._element(ack) + self.closing()

    def _element(self, ack: dict[str, Any]) -> bytes:
        if not self.as_array:
            return orjson.dumps(ack) + b"\n"
        separator, self._first = (b"" if self._first else b","), False
        return separator + orjson.dumps(ack)
