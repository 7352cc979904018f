"""A fix for hypercorn's HTTP/2 backpressure, applied when the server starts.

In hypercorn 0.17 and 0.18 a stream's send buffer lets the application write on while the client's
flow-control window is closed: the send task then pops zero bytes, and any pop shorter than the
low-water mark releases a writer waiting on the high-water mark. A client that stops reading thus
makes hypercorn buffer everything the server writes to it, without bound. Here a writer is
released only once the buffer itself has drained below the low-water mark, so a slow HTTP/2 client
holds its writer as a slow HTTP/1.1 client does (asyncio's transport), and the bounded buffer of its
push query (:class:`~nbstream.runtime.push.AsyncBatches`) is what overflows.
"""

from __future__ import annotations

import logging

log = logging.getLogger("nbstream.server")


def bound_h2_stream_buffers() -> bool:
    """Patch hypercorn's ``StreamBuffer.pop``; False (and a warning) where its layout is unknown."""
    try:
        from hypercorn.protocol import h2
    except ImportError:
        return False
    buffer_class = getattr(h2, "StreamBuffer", None)
    low_water = getattr(h2, "BUFFER_LOW_WATER", None)
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
