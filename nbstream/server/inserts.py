"""``POST /inserts-stream`` (HTTP/2 only, as in ksqlDB: 40004 otherwise): rows into a stream or table.

The body is ``{"target": "S"}`` then one JSON object per line, for as long as the client keeps the
request open. The body is read while rows are inserted: the rows that arrived meanwhile (at most
:data:`MAX_ROWS` of them) are appended next, in one transaction — durable before they are
acknowledged — and each gets an ack, ``{"status":"ok","seq":n}`` (one per
line, or a JSON array with ``Accept: application/json``). The first row that cannot be inserted
gets ``{"@type":"generic_error","status":"error","seq":n,"error_code":40000,"message":…}`` and ends
the response; the rows before it stay inserted. The response ends when the request does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from nbstream.errors import NbstreamError
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
    target, first_rows = await _arguments(groups)
    if server.config.restricted is not None:
        server.config.restricted.check_insert(target)
    await _insert(server, service, target, [])  # an unknown target is refused before the response starts
    await exchange.start(200, JSON if as_array else DELIMITED)
    acks = _Acks(as_array)
    await exchange.write(acks.opening())
    seq = 0
    async for rows in _batches(_with_first(first_rows, groups)):
        done = await _insert(server, service, target, rows)
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
