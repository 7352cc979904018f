"""The little of ASGI the server needs: a request whose body is read within a size limit (whole,
or line by line as it arrives), JSON responses, streamed responses, and the client going away.

Every response goes through :class:`Exchange`, which remembers its status for the request metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

from nbstream.server.errors import BAD_REQUEST, TOO_LARGE, KsqlError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = "application/json"

#: A body over the limit is read on, and dropped, up to this many times the limit before the answer.
DISCARDED_BODY = 16


def member(body: Any, name: str, kind: type, default: Any = None, *, required: bool = False) -> Any:
    """Member ``name`` of the request object ``body``, checked to be of ``kind`` (40000 if the body is
    not an object, or the member is missing while ``required``, or of another type)."""
    if not isinstance(body, dict):
        raise KsqlError(BAD_REQUEST, "The request body must be a JSON object")
    value = body.get(name)
    if value is None:
        if required:
            raise KsqlError(BAD_REQUEST, f"The request has no '{name}'")
        return default
    if not isinstance(value, kind):
        raise KsqlError(BAD_REQUEST, f"'{name}' has the wrong type: {type(value).__name__}")
    return value


class Disconnected(Exception):
    """The client went away before the request was read."""


class Exchange:
    """One HTTP request and its response."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, max_body: int) -> None:
        self.scope, self._receive, self._send = scope, receive, send
        self.max_body = max_body
        self.headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                        for name, value in scope.get("headers", [])}
        self.status: int | None = None  # once the response started
        self._body_done = False
        self._disconnected = asyncio.Event()

    # -- the request ----------------------------------------------------------------------------------
    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def path(self) -> str:
        return str(self.scope["path"])

    @property
    def http2(self) -> bool:
        return str(self.scope.get("http_version", "1.1")).startswith("2")

    async def body(self) -> bytes:
        """The whole request body (a :class:`KsqlError` 41300 past :attr:`max_body` bytes)."""
        chunks = [chunk async for chunk in self._chunks(self.max_body)]
        return b"".join(chunks)

    async def json_body(self) -> Any:
        """The request body as JSON (40000 if it is not)."""
        body = await self.body()
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise KsqlError(BAD_REQUEST, f"Invalid JSON in request: {error}") from None

    async def lines(self) -> AsyncIterator[list[bytes]]:
        """The body's lines (without their newline; blank ones skipped) in the groups they arrived
        in, as the client sends them; a line may not exceed :attr:`max_body` bytes."""
        pending = b""
        async for chunk in self._chunks(None):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            if len(pending) > self.max_body:
                raise KsqlError(TOO_LARGE, f"A line of the request is over {self.max_body} bytes")
            lines = [line for line in complete if line.strip()]
            if lines:
                yield lines
        if pending.strip():
            yield [pending]

    async def _chunks(self, limit: int | None) -> AsyncIterator[bytes]:
        size = 0
        while not self._body_done:
            chunk = await self._next_chunk()
            size += len(chunk)
            if limit is not None and size > limit:
                await self._discard(DISCARDED_BODY * limit)
                raise KsqlError(TOO_LARGE, f"The request body is over {limit} bytes")
            yield chunk

    async def _next_chunk(self) -> bytes:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._body_done = True
            self._disconnected.set()
            raise Disconnected
        self._body_done = not message.get("more_body", False)
        return bytes(message.get("body", b""))

    async def _discard(self, most: int) -> None:
        """Read and drop the rest of a body too large to take (up to ``most`` bytes), so that a client
        that sends all of it before reading gets the answer rather than a reset connection."""
        while not self._body_done and most > 0:
            most -= len(await self._next_chunk())

    async def wait_disconnect(self) -> None:
        """Return when the client goes away (call once the body was read)."""
        while not self._disconnected.is_set():
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._disconnected.set()

    @property
    def disconnected(self) -> bool:
        return self._disconnected.is_set()

    # -- the response ---------------------------------------------------------------------------------
    async def start(self, status: int, content_type: str | None = JSON,
                    headers: Iterable[tuple[str, str]] = ()) -> None:
        """Start a response whose body follows in :meth:`write` calls (ended by :meth:`end`)."""
        self.status = status
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        if content_type is not None:
            raw.append((b"content-type", content_type.encode("latin-1")))
        await self._send({"type": "http.response.start", "status": status, "headers": raw})

    async def write(self, data: bytes) -> None:
        if data and not self._disconnected.is_set():
            await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes = b"") -> None:
        if not self._disconnected.is_set():
            await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def respond(self, status: int, body: bytes, content_type: str | None = JSON,
                      headers: Iterable[tuple[str, str]] = (), *, discard: bool = True) -> None:
        """A whole response, once the request body not read is dropped (up to a bound), or at once
        without ``discard`` (a client streaming a body that has no end waits for the answer)."""
        if discard:
            with contextlib.suppress(Disconnected):
                await self._discard(DISCARDED_BODY * self.max_body)
        await self.start(status, content_type, [*headers, ("content-length", str(len(body)))])
        await self.end(body)

    async def respond_json(self, value: Any, status: int = 200, content_type: str = JSON) -> None:
        await self.respond(status, orjson.dumps(value), content_type)

    async def respond_error(self, error: KsqlError, headers: Iterable[tuple[str, str]] = (), *,
                            discard: bool = True) -> None:
        await self.respond(error.status, orjson.dumps(error.body()), JSON, headers, discard=discard)
