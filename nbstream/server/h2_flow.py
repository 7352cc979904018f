"""A fix for hypercorn's HTTP/2 backpressure, applied when the server starts.

In hypercorn 0.17 and 0.18 a stream's send buffer lets the application write on while the client's
flow-control window is closed: the send task then pops zero bytes, and any pop shorter than the
low-water mark releases a writer waiting on the high-water mark. A client that stops reading thus
makes hypercorn buffer everything the server writes to it, without bound. Here a writer is
released only once the buffer itself has drained below the low-water mark, so a slow HTTP/2 client
holds its writer as a slow HTTP/1.1 client does (asyncio's transport), and the bounded buffer of its
push query (:class:`~nbstream.runtime.push.AsyncBatches`) is what overflows.

And in the same versions, a DATA frame for a stream whose response already ended (an
``/inserts-stream`` the server ended at a bad row, or at shutdown, while the client sends on)
raises ``KeyError`` out of the connection's handler: the connection dies, and at shutdown hypercorn
waits for it until killed, or exits with the error. Here such data is taken (its flow-control
window given back) and dropped, and the stream is reset with NO_ERROR, which HTTP/2 provides for
a server that answered before the request ended (RFC 9113, 8.1).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
from hypercorn.protocol import h2 as hypercorn_h2

from nbstream.server.hypercorn_fixes import method_to_patch

log = logging.getLogger("nbstream.server")


def bound_h2_stream_buffers() -> bool:
    """Patch hypercorn's ``StreamBuffer.pop``; False (and a warning) where its layout is unknown."""
    buffer_class = getattr(hypercorn_h2, "StreamBuffer", None)
    low_water = getattr(hypercorn_h2, "BUFFER_LOW_WATER", None)
    if buffer_class is None or low_water is None or getattr(buffer_class, "_nbstream_bounded", False):
        if buffer_class is None or low_water is None:
            log.warning("hypercorn's HTTP/2 StreamBuffer is not where expected: slow HTTP/2 clients are not bounded")
        return buffer_class is not None

    async def pop(self: object, max_length: int) -> bytes:
        buffer: bytearray = self.buffer  # type: ignore[attr-defined]
        length = min(len(buffer), max_length)
        data = bytes(buffer[:length])
        del buffer[:length]
        if len(buffer) < low_water:
            await self._paused.set()  # type: ignore[attr-defined]
        if not buffer:
            await self._is_empty.set()  # type: ignore[attr-defined]
        return data

    buffer_class.pop = pop
    buffer_class._nbstream_bounded = True
    return True


def drop_data_of_ended_h2_streams() -> bool:
    """Patch hypercorn's ``H2Protocol._handle_events``; False (and a warning) where its layout is unknown."""
    found = method_to_patch(hypercorn_h2, "H2Protocol", "_handle_events", "_nbstream_drops_ended",
                            "data sent after a response ended drops the connection")
    if isinstance(found, bool):
        return found
    protocol, handle_events = found

    async def _handle_events(self: Any, events: list[h2.events.Event]) -> None:
        # One event at a time: a stream may end while an event before it is handled.
        dropped = False
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
                _drop(self.connection, event)
                dropped = True
            else:
                await handle_events(self, [event])
        if dropped:
            await self._flush()

    def _drop(connection: Any, event: h2.events.DataReceived) -> None:
        connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        with contextlib.suppress(h2.exceptions.ProtocolError):  # reset once; later frames are only dropped
            connection.reset_stream(event.stream_id, h2.errors.ErrorCodes.NO_ERROR)

    protocol._handle_events = _handle_events
    protocol._nbstream_drops_ended = True
    return True
