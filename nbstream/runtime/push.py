"""Push queries: a running ``SELECT … EMIT CHANGES`` and the subscribers its rows go to.

A :class:`PushQuery` owns a transient runner (its state and offsets on a DuckDB cursor of its own)
and its lifecycle: ``RUNNING`` until its LIMIT (``DONE``), a stop (``STOPPED``) or a failure
(``ERROR``). Whoever drives it — the service's background loop (:mod:`nbstream.runtime.service`),
or :meth:`Engine.push <nbstream.runtime.engine.Engine.push>` itself — calls
:meth:`PushQuery.step`, which fetches one batch and offers it to every subscriber: a notebook's
live views, an ``async for`` (:class:`AsyncBatches`), an HTTP response.

The :class:`Subscriber` contract lets a subscriber never slow the engine or the other subscribers:

- :meth:`~Subscriber.offer` is called on the engine's thread, holding the engine lock, with each
  result batch: an Arrow table of ``ROWTIME``, ``__deleted`` (a TABLE row's tombstone), then the
  result's columns (:attr:`PushQuery.columns`). It returns at once — it keeps or queues the batch
  and never waits for a client. It returns False when it cannot take the batch (its buffer is
  full): the query then detaches it and closes it with :data:`OVERFLOW`, and goes on.
- :meth:`~Subscriber.close` is called once, when no batch will follow: the query ended (``DONE``,
  ``STOPPED``, ``ERROR``) or the subscriber was detached (``OVERFLOW``); ``error`` then says why,
  naming the query. It is not called for a subscriber that :meth:`~PushQuery.unsubscribe` removed.
- :meth:`~Subscriber.tick` is called after each step of the background loop, outside the engine
  lock, for time-based work (the notebook's views are updated at most 10 times a second).

A push query is stepped only while it has a subscriber. Its position is fixed when it starts (the
end of its input, unless ``auto.offset.reset`` is ``earliest``), so a subscriber that attaches
right after the start misses no row: they wait in the log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from nbstream.errors import ExecutionError
from nbstream.formats.registry_client import RegistryUnavailable
from nbstream.runtime.query import QueryRunner, ResultShape

RUNNING, DONE, STOPPED, ERROR = "RUNNING", "DONE", "STOPPED", "ERROR"

#: How a subscriber ends that the query detached because it could not take a batch.
OVERFLOW = "OVERFLOW"

RATE_WINDOW = 5.0  # events/s is measured over the last few seconds

Clock = Callable[[], float]


class Subscriber(Protocol):
    """One consumer of a push query's result batches (see the module docstring)."""

    def offer(self, batch: pa.Table) -> bool:
        """Take ``batch`` without waiting; False: it cannot, and is detached."""
        ...

    def close(self, state: str, error: str | None) -> None:
        """No batch follows: the query's final state, or :data:`OVERFLOW`; ``error`` says why
        for ``ERROR`` and ``OVERFLOW``."""
        ...

    def tick(self) -> None:
        """Called after each step of the background loop, outside the engine lock."""
        ...


S = TypeVar("S", bound=Subscriber)


class PushOverflow(ExecutionError):
    """A push query's subscriber fell behind by more rows than its buffer holds, and was detached."""


class RateMeter:
    """Events per second over the last :data:`RATE_WINDOW` seconds (thread-safe)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.started = clock()
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        if count:
            with self._lock:
                self._samples.append((self.clock(), count))

    def rate(self) -> float:
        now = self.clock()
        with self._lock:
            while self._samples and now - self._samples[0][0] > RATE_WINDOW:
                self._samples.popleft()
            total = sum(n for _, n in self._samples)
        span = min(RATE_WINDOW, now - self.started)
        return total / span if span > 0 else 0.0


class PushSource(Protocol):
    """A running push query as its consumers see it, wherever it runs: :class:`PushQuery` in this
    engine, or a server's (:class:`nbstream.client.push.RemotePushQuery`). A live view or any other
    :class:`Subscriber` is fed by either in the same way.

    ``id``, ``sql``, ``shape`` (columns, keys, whether rows are a table's changes), ``state``,
    ``error``; :meth:`subscribe`, :meth:`unsubscribe`, :meth:`stop` and :meth:`fail` are safe from
    any thread."""

    id: str
    sql: str
    shape: ResultShape
    state: str
    error: str | None

    @property
    def columns(self) -> list[str]: ...

    @property
    def status(self) -> dict[str, Any]:
        """At least ``id``, ``state``, ``rows`` and ``error``."""
        ...

    def status_line(self) -> str: ...

    def column_types(self) -> dict[str, str]:
        """The ksqlDB type name of each result column (``WINDOWSTART``/``WINDOWEND``: ``WINDOW``)."""
        ...

    def subscribe(self, subscriber: S) -> S: ...

    def unsubscribe(self, subscriber: Subscriber) -> None: ...

    def stop(self) -> None: ...

    def fail(self, error: Exception | str) -> None: ...


class PushFeed:
    """A push query's lifecycle and subscribers, whatever produces its batches: ``RUNNING`` until
    :meth:`finish` (``DONE``, ``STOPPED``, ``ERROR``); :meth:`publish` offers a batch to every
    subscriber, detaching those that refuse it (:data:`OVERFLOW`).

    ``id``, ``sql``, ``shape``, ``state``, ``error`` (what ended it, if it failed; ``failure``: the
    exception), ``rows_seen``. :meth:`stop`, :meth:`subscribe` and :meth:`unsubscribe` are safe
    from any thread; :meth:`publish` is the producer's.
    """

    def __init__(self, query_id: str, sql: str, shape: ResultShape) -> None:
        self.id = query_id
        self.sql = sql
        self.shape = shape
        self.state = RUNNING
        self.error: str | None = None
        self.failure: Exception | None = None
        self.rows_seen = 0
        self._lock = threading.Lock()  # state and subscribers
        self._subscribers: list[Subscriber] = []

    @property
    def columns(self) -> list[str]:
        """The result's columns, in order (a batch has ``ROWTIME`` and ``__deleted`` before them)."""
        return list(self.shape.columns)

    @property
    def ended(self) -> bool:
        return self.state != RUNNING

    # -- subscribers -------------------------------------------------------------------------------
    def subscribe(self, subscriber: S) -> S:
        """Offer ``subscriber`` every batch from now on; returns it. A query that ended closes it at once."""
        with self._lock:
            running = self.state == RUNNING
            if running:
                self._subscribers.append(subscriber)
        if not running:
            subscriber.close(self.state, self._ending_error(self.state))
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Offer ``subscriber`` no more batches (it is not closed)."""
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

    def join(self, subscriber: Subscriber) -> bool:
        """Subscribe ``subscriber`` if the query still runs (False, and nothing done, if it ended)."""
        with self._lock:
            if self.state != RUNNING:
                return False
            self._subscribers.append(subscriber)
            return True

    def stop_unless_subscribed(self) -> bool:
        """Stop the query if nobody subscribes to it (atomically with :meth:`join`); whether it did."""
        with self._lock:
            if self._subscribers or self.state != RUNNING:
                return False
            self.state = STOPPED
        return True

    def detach(self, subscriber: Subscriber) -> int:
        """Offer ``subscriber`` no more batches and close it as ``STOPPED`` (if still subscribed);
        the query goes on for the others. Returns how many subscribers remain."""
        with self._lock:
            subscribed = subscriber in self._subscribers
            if subscribed:
                self._subscribers.remove(subscriber)
            remaining = len(self._subscribers)
        if subscribed:
            subscriber.close(STOPPED, None)
        return remaining

    @property
    def subscribed(self) -> bool:
        return bool(self._subscribers)

    # -- producing ---------------------------------------------------------------------------------
    def publish(self, batch: pa.Table) -> None:
        """Offer ``batch`` to every subscriber (nothing if the query ended); one that refuses it is
        detached and closed with :data:`OVERFLOW`."""
        detached = []
        with self._lock:
            if self.state != RUNNING:
                return
            self.rows_seen += batch.num_rows
            self._published(batch)
            for subscriber in list(self._subscribers):
                if not subscriber.offer(batch):
                    self._subscribers.remove(subscriber)
                    detached.append(subscriber)
        for subscriber in detached:
            subscriber.close(OVERFLOW, f"{self.id}: a subscriber fell behind and was disconnected")

    def _published(self, batch: pa.Table) -> None:
        """What the query learns from a batch it offers (under its lock)."""

    def tick(self) -> None:
        """Let the subscribers do their time-based work (outside the engine lock)."""
        for subscriber in list(self._subscribers):
            subscriber.tick()

    # -- ending ------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the query (safe from any thread; nothing if it ended already)."""
        self.finish(STOPPED)

    def fail(self, error: Exception | str) -> None:
        """End the query with ``error`` (an exception, or the message itself)."""
        self.finish(ERROR, error)

    def finish(self, state: str, error: Exception | str | None = None) -> bool:
        """End the query in ``state``, closing every subscriber; False if it had ended already."""
        with self._lock:
            if self.state != RUNNING:
                return False
            if error is not None:
                self.error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
                self.failure = error if isinstance(error, Exception) else ExecutionError(error)
            self.state = state
            subscribers, self._subscribers = self._subscribers, []
        for subscriber in subscribers:
            subscriber.close(state, self._ending_error(state))
        return True

    def _ending_error(self, state: str) -> str | None:
        return f"{self.id} failed: {self.error}" if state == ERROR else None


def _without_tombstones(batch: pa.Table) -> pa.Table:
    """A stream's rows without those of records with a null value: a push query on a STREAM ignores
    them, as ksqlDB's does (a persistent query writes them on as tombstones)."""
    deleted = batch.column(1)  # __deleted
    if deleted.null_count == 0 and not pc.any(deleted).as_py():
        return batch
    return batch.filter(pc.invert(pc.fill_null(deleted, False)))


class PushQuery(PushFeed):
    """A running push query of this engine and its subscribers.

    ``id`` (``PUSH_n``), ``sql``, ``state``, ``error`` (what ended it, if it failed; ``failure``:
    the exception), ``rows_seen``, ``watermark``, :attr:`status`. :meth:`stop` and
    :meth:`subscribe` are safe from any thread; :meth:`step` and :meth:`close` are the driver's.
    """

    _ids = itertools.count()

    def __init__(self, runner: QueryRunner, sql: str, clock: Clock = time.monotonic,
                 selected: tuple[str, ...] = ()) -> None:
        super().__init__(f"PUSH_{next(self._ids)}", sql, dataclasses.replace(runner.result_shape, selected=selected))
        self.runner = runner
        self.watermark: int | dt.datetime | None = None
        #: Why the last step left its batch for the next one (its schema registry did not answer), or None.
        self.waiting: str | None = None
        self._input = RateMeter(clock)
        self._driving = threading.Lock()  # a step, or closing the cursor
        self._closed = False

    # -- driving -----------------------------------------------------------------------------------
    def step(self) -> int:
        """Fetch one batch and offer it to the subscribers; returns the input records it consumed
        (0: nothing new, or nobody subscribed). A failure ends the query with ``ERROR``; LIMIT
        with ``DONE``. One thread at a time steps a query (others wait), and never once it is closed."""
        with self._driving:
            return 0 if self._closed else self._step()

    def _step(self) -> int:
        if self.state != RUNNING or not self.subscribed:
            return 0
        limit = self.shape.limit
        if limit is not None and self.rows_seen >= limit:  # LIMIT 0: done before any row
            self.finish(DONE)
            return 0
        before = sum(self.runner.offsets.values())
        try:
            batch = self.runner.fetch_rows()
        except RegistryUnavailable as error:  # the batch waits for the registry; the query goes on
            self.waiting = str(error)
            return 0
        except Exception as error:
            self.fail(error)
            return 0
        self.waiting = None
        consumed = sum(self.runner.offsets.values()) - before
        self._input.add(consumed)
        if batch is not None and not self.shape.is_table:
            batch = _without_tombstones(batch)
        if batch is None or batch.num_rows == 0:
            return consumed
        if limit is not None:
            batch = batch.slice(0, max(0, limit - self.rows_seen))
        self.publish(batch)
        if limit is not None and self.rows_seen >= limit:
            self.finish(DONE)
        return consumed

    def _published(self, batch: pa.Table) -> None:
        latest = pc.max(batch.column(0)).as_py()  # ROWTIME (a user column may be called so too)
        if latest is not None and (self.watermark is None or latest > self.watermark):
            self.watermark = latest

    def close(self) -> None:
        """Release the query's cursor (once it ended; a step in flight finishes first)."""
        with self._driving:
            self._closed = True
            self.runner.con.close()

    # -- status ------------------------------------------------------------------------------------
    @property
    def status(self) -> dict[str, Any]:
        """Query id, state, rows so far, input events/s, watermark, late records, EMIT FINAL windows
        expired unwritten, processing-log records, the error that ended it, if any, and what its
        input waits for (``waiting``: an unreachable schema registry), if anything."""
        stats = self.runner.stats
        return {"id": self.id, "state": self.state, "rows": self.rows_seen,
                "events_per_s": round(self._input.rate(), 1), "watermark": self._watermark_text(),
                "late": stats.late, "expired": stats.expired, "errors": stats.logged, "error": self.error,
                "waiting": self.waiting}

    def status_line(self) -> str:
        s = self.status
        line = (f"{s['id']} · {s['state']} · {s['rows']} rows · {s['events_per_s']:.1f} events/s · "
                f"watermark {s['watermark'] or 'none'} · late {s['late']} · expired {s['expired']} · "
                f"errors {s['errors']}")
        return line + (f" · {s['error']}" if s["error"] else "") + (f" · {s['waiting']}" if s["waiting"] else "")

    def column_types(self) -> dict[str, str]:
        """The SQL type name of each result column (WINDOWSTART/WINDOWEND: ``WINDOW``)."""
        plan = getattr(self.runner, "aggregate", None) or self.runner.plan
        types = {column.name: column.type.name for column in plan.columns}
        return {**types, "WINDOWSTART": "WINDOW", "WINDOWEND": "WINDOW"}

    def _watermark_text(self) -> str | None:
        mark = self.watermark
        if isinstance(mark, int):
            mark = dt.datetime.fromtimestamp(mark / 1000, dt.UTC)
        return mark.isoformat(timespec="milliseconds").replace("+00:00", "Z") if mark is not None else None


@dataclass(frozen=True)
class _End:
    state: str
    error: str | None


class Batches:
    """A subscriber keeping every batch until :meth:`take` (for a caller that steps the query itself)."""

    def __init__(self) -> None:
        self._batches: deque[pa.Table] = deque()
        self.ending: _End | None = None

    def offer(self, batch: pa.Table) -> bool:
        self._batches.append(batch)
        return True

    def close(self, state: str, error: str | None) -> None:
        self.ending = _End(state, error)

    def tick(self) -> None:
        """Nothing to do between steps."""

    def take(self) -> list[pa.Table]:
        """The batches offered since the last call."""
        taken = []
        while self._batches:
            taken.append(self._batches.popleft())
        return taken


class LoopMailbox:
    """Calls to run on an asyncio loop, posted from other threads and handed over together: the
    first call posted while none waits wakes the loop (one ``call_soon_threadsafe``, a write to its
    self-pipe); calls posted before the loop ran it join it, in order. A push query offering a batch
    to the many subscribers of one server loop so wakes it once, not once per subscriber.
    :meth:`of` gives the one mailbox of a loop."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopMailbox] = weakref.WeakKeyDictionary()
    _by_loop_lock = threading.Lock()

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> LoopMailbox:
        with cls._by_loop_lock:
            mailbox = cls._by_loop.get(loop)
            if mailbox is None:
                mailbox = cls._by_loop[loop] = cls(loop)
            return mailbox

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # the mailbox lives as long as its loop, not longer
        self._calls: deque[tuple[Callable[..., object], tuple[object, ...]]] = deque()
        self._lock = threading.Lock()
        self._waking = False  # a hand-over is scheduled on the loop and has not run yet

    def post(self, function: Callable[..., object], *args: object) -> bool:
        """Have the loop call ``function(*args)`` soon; False if the loop is closed (or gone)."""
        loop = self._loop()
        if loop is None or loop.is_closed():
            return False
        with self._lock:
            self._calls.append((function, args))
            if self._waking:
                return True
            self._waking = True
        try:
            loop.call_soon_threadsafe(self._hand_over)
        except RuntimeError:  # closed meanwhile: nobody will take the calls
            with self._lock:
                self._calls.clear()
                self._waking = False
            return False
        return True

    def _hand_over(self) -> None:
        """On the loop: run every call posted so far, in order. The calls are a queue's
        ``put_nowait`` and an event's ``set``, which do not raise."""
        with self._lock:
            calls, self._calls = self._calls, deque()
            self._waking = False
        for function, args in calls:
            function(*args)


class AsyncBatches:
    """A subscriber for a consumer on an asyncio loop: ``async for batch in subscriber`` yields each
    batch as offered, and ends when the query does — raising :class:`ExecutionError` if it failed,
    :class:`PushOverflow` if this subscriber was detached.

    ``max_rows`` bounds the rows waiting for the consumer (None: no bound). A batch that would go
    beyond it is refused — unless nothing waits: a batch always fits into an empty buffer — and
    the subscriber is detached, so a slow consumer costs the engine nothing. A detached
    subscriber drops the batches still waiting: the next step of the iteration raises
    :class:`PushOverflow`, and :attr:`detached` is set at once (for a consumer busy elsewhere, such
    as writing to a slow client, to stop waiting). Make it on the loop that iterates it (or pass
    ``loop``).
    """

    def __init__(self, max_rows: int | None = None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.max_rows = max_rows
        self._mailbox = LoopMailbox.of(loop or asyncio.get_running_loop())
        self._queue: asyncio.Queue[pa.Table | _End] = asyncio.Queue()
        self._waiting = 0  # rows offered, not yet taken by the consumer
        self._overflow: _End | None = None
        self._lock = threading.Lock()
        self.detached = asyncio.Event()

    def offer(self, batch: pa.Table) -> bool:
        with self._lock:
            if self.max_rows is not None and self._waiting and self._waiting + batch.num_rows > self.max_rows:
                return False
            self._waiting += batch.num_rows
        return self._put(batch)

    def close(self, state: str, error: str | None) -> None:
        if state == OVERFLOW:
            with self._lock:
                self._overflow = _End(state, f"{error} (more than {self.max_rows} rows were waiting for it)")
            self._call(self.detached.set)
        self._put(_End(state, error))

    def tick(self) -> None:
        """Nothing to do between steps: the consumer's loop wakes for each batch."""

    def _put(self, item: pa.Table | _End) -> bool:
        return self._call(self._queue.put_nowait, item)

    def _call(self, function: Callable[..., object], *args: object) -> bool:
        """Have the consumer's loop call ``function(*args)``; False: the loop is closed, nobody waits any more."""
        return self._mailbox.post(function, *args)

    def __aiter__(self) -> AsyncBatches:
        return self

    async def __anext__(self) -> pa.Table:
        if self.detached.is_set():
            raise PushOverflow(str(self._overflow.error if self._overflow else OVERFLOW))
        item = await self._queue.get()
        with self._lock:
            overflow = self._overflow
        if overflow is not None:  # the detachment is on its way to this loop: drop what waits
            raise PushOverflow(str(overflow.error))
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # iterating again ends again
            if item.error is not None:
                raise ExecutionError(item.error)
            raise StopAsyncIteration
        with self._lock:
            self._waiting -= item.num_rows
        return item


class QueueBatches:
    """A subscriber for a consumer on a thread of its own: :meth:`get` waits for the next batch,
    and returns None once the query ended (:attr:`ending` then says how: its state and error).
    Unbounded: the consumer is expected to keep up (a terminal printing rows)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[pa.Table | _End] = queue.Queue()
        self.ending: _End | None = None

    def offer(self, batch: pa.Table) -> bool:
        self._queue.put(batch)
        return True

    def close(self, state: str, error: str | None) -> None:
        self._queue.put(_End(state, error))

    def tick(self) -> None:
        """Nothing to do between steps: :meth:`get` wakes for each batch."""

    def get(self, timeout: float | None = None) -> pa.Table | None:
        """The next batch (None: the query ended); :class:`queue.Empty` after ``timeout`` seconds."""
        if self.ending is not None:
            return None
        item = self._queue.get(timeout=timeout)
        if isinstance(item, _End):
            self.ending = item
            return None
        return item
