"""One write per whole HTTP/1.1 response, applied when the server starts.

hypercorn writes an HTTP/1.1 response's head (status line and headers) to the socket as soon as
the application starts the response, and its body in a second write. For a response whose length
is known (``content-length``: every whole response the server sends, such as a pull query's) the
body follows at once, so the two writes buy nothing but a second system call — and on loopback a
``send`` runs the receiver's TCP path and wakes it, the largest single cost of a small pull query
on the event loop (a third of its time when profiled). Here the head of such a response is held
and written together with the body's first bytes. Streamed responses (no ``content-length``: push
queries, inserts) keep their head written at once, so a client sees the status before any row.
"""

from __future__ import annotations

from typing import Any

import h11
from hypercorn.events import RawData
from hypercorn.protocol import h11 as hypercorn_h11

from nbstream.server.hypercorn_fixes import method_to_patch


def coalesce_h11_heads() -> bool:
    """Patch hypercorn's ``H11Protocol._send_h11_event``; False (and a warning) where its layout
    is unknown (the responses are then written as hypercorn writes them)."""
    found = method_to_patch(hypercorn_h11, "H11Protocol", "_send_h11_event", "_nbstream_coalesced",
                            "response heads are written apart")
    if isinstance(found, bool):
        return found
    protocol, original = found

    async def send_h11_event(self: Any, event: Any) -> None:
        held: bytes = self.__dict__.pop("_nbstream_head", b"")
        if isinstance(event, h11.Response) and any(name.lower() == b"content-length" for name, _ in event.headers):
            try:
                self._nbstream_head = held + self.connection.send(event)
            except h11.LocalProtocolError:
                if self.connection.their_state != h11.ERROR:
                    raise
            return
        if held:
            try:
                data = self.connection.send(event)
            except h11.LocalProtocolError:
                if self.connection.their_state != h11.ERROR:
                    raise
                data = b""
            await self.send(RawData(data=held + (data or b"")))
            return
        await original(self, event)

    protocol._send_h11_event = send_h11_event
    protocol._nbstream_coalesced = True
    return True
