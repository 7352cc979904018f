"""A push query running on a server, feeding its subscribers as the engine's own push queries do.

:class:`RemotePushQuery` is a :class:`~nbstream.runtime.push.PushFeed`: its subscribers — a
notebook's live views, the shell's printer — get the same result batches (Arrow: ``ROWTIME``,
``__deleted``, then the result's columns) and the same ``close``/``tick`` calls as from a
:class:`~nbstream.runtime.push.PushQuery`, so they cannot tell where the rows come from.

Two daemon threads serve it. The reader reads the response (on a connection of its own) and queues
each row as it arrives. The pump, every :data:`PUMP_INTERVAL` seconds, offers the rows queued since
as one batch and lets the subscribers do their time-based work (``tick``), as the engine's
background loop does for its own; until the first subscriber comes, rows wait (so one that
subscribes right after the start misses none, as with the engine's push queries). The query ends
with its response: ``DONE`` at its LIMIT, ``STOPPED`` when it was closed, ``ERROR`` with the
server's error or when the connection is lost.
Stopping it here (:meth:`RemotePushQuery.stop`, from any thread, without waiting) ends it at once
for the subscribers and closes it on the server (``/close-query``) in the background.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from nbstream.client.rest import KsqlClient, QueryStream
from nbstream.client.rows import End, Row, rows_table
from nbstream.errors import ServerError
from nbstream.runtime.push import DONE, ERROR, RUNNING, STOPPED, Clock, PushFeed, RateMeter
from nbstream.runtime.query import ResultShape

PUMP_INTERVAL = 0.05  # seconds between batches (and ticks): views update at most 10 times a second anyway

#: The final message of a push query that reached its LIMIT (ksqlDB's).
LIMIT_REACHED = "Limit Reached"


class RemotePushQuery(PushFeed):
    """A push query on a server (``stream``: its response, header read) and its subscribers.

    ``id`` is the server's query id; ``closed`` is set once the server's query is known to be over
    (its response ended, or ``/close-query`` answered)."""

    def __init__(self, client: KsqlClient, stream: QueryStream, sql: str, shape: ResultShape,
                 clock: Clock = time.monotonic) -> None:
        super().__init__(stream.header.query_id, sql, shape)
        self.client = client
        self.header = stream.header
        self.closed = threading.Event()
        self._stream = stream
        self._rows: list[Row] = []
        self._rows_lock = threading.Lock()
        self._response_end: tuple[str, str | None] | None = None
        self._ended = threading.Event()  # the response ended (or reading it failed)
        self._rate = RateMeter(clock)
        for work, role in ((self._read, "reader"), (self._pump, "pump")):
            threading.Thread(target=work, name=f"nbstream-{role}-{self.id}", daemon=True).start()

    # -- the threads -------------------------------------------------------------------------------
    def _read(self) -> None:
        ending: tuple[str, str | None] = (STOPPED, None)
        try:
            for event in self._stream:
                if isinstance(event, Row):
                    with self._rows_lock:
                        self._rows.append(event)
                elif isinstance(event, End):
                    ending = (DONE if event.message == LIMIT_REACHED else STOPPED, None)
        except ServerError as error:
            ending = (ERROR, str(error))
        except Exception as error:  # the stream was closed under the reader (a stop), or a bug: say which
            ending = (ERROR, f"{type(error).__name__}: {error}")
        self._response_end = ending
        self._ended.set()

    def _pump(self) -> None:
        """Offer the rows read since the last round as one batch, then tick; rows wait for the first
        subscriber (as the engine's wait in the log). Ends the query once its response ended and
        every row was offered, or when it was stopped here."""
        while self.state == RUNNING:
            ended = self._ended.wait(PUMP_INTERVAL)
            if not self.subscribed:
                time.sleep(PUMP_INTERVAL if ended else 0)
                continue
            with self._rows_lock:
                rows, self._rows = self._rows, []
            if rows:
                self._rate.add(len(rows))
                self.publish(rows_table(self.header, rows, changes=True))
            self.tick()
            if ended:
                assert self._response_end is not None
                self.finish(*self._response_end)
        if self._ended.is_set():  # else it was stopped here: _close_on_server releases it once closed there
            self._release()

    # -- ending --------------------------------------------------------------------------------------
    def finish(self, state: str, error: Exception | str | None = None) -> bool:
        """End the query for its subscribers; unless its response ended by itself, close it on the
        server too (in the background)."""
        ended = super().finish(state, error)
        if ended and not self._ended.is_set():
            threading.Thread(target=self._close_on_server, name=f"nbstream-close-{self.id}", daemon=True).start()
        return ended

    def _close_on_server(self) -> None:
        try:
            self.client.close_query(self.id)
        except ServerError:  # it ended meanwhile, or the server is gone: nothing left to close
            pass
        finally:
            self._release()

    def _release(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()
        self.closed.set()

    # -- status ----------------------------------------------------------------------------------------
    @property
    def status(self) -> dict[str, Any]:
        """Query id, state, rows so far, rows/s received, the server, and the error that ended it."""
        return {"id": self.id, "state": self.state, "rows": self.rows_seen,
                "events_per_s": round(self._rate.rate(), 1), "watermark": None, "late": None, "expired": None,
                "errors": None,
                "error": self.error, "server": self.client.url}

    def status_line(self) -> str:
        line = (f"{self.id} · {self.state} · {self.rows_seen} rows · {self._rate.rate():.1f} rows/s · "
                f"{self.client.url}")
        return line + (f" · {self.error}" if self.error else "")

    def column_types(self) -> dict[str, str]:
        types = dict(zip(self.header.columns, self.header.types, strict=False))
        return {**types, **{name: "WINDOW" for name in ("WINDOWSTART", "WINDOWEND") if name in types}}
