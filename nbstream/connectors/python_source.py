"""Python sources: ``Engine.source(topic, data, rate=…, key=…)`` feeds Python data into a topic.

``data`` is a pandas DataFrame or Arrow table (sliced, never walked row by row), an iterable of
dicts, or an async iterable of dicts. The engine's loop (:meth:`Engine.run_until_idle`, the
notebook's background thread) calls :meth:`PythonSource.step`, which appends the records due as
one batch, encoded in DuckDB in the format of the stream or table over the topic:

* ``rate=None``: everything available, up to :data:`MAX_STEP` records per step;
* ``rate=r``: ``r`` records per second of the engine's connector clock, each stamped with the
  time of its step (unless ``timestamp=`` names a column holding epoch-ms times).

An **async iterable is consumed on a thread of its own** running its own asyncio loop, into a
bounded queue the steps drain without waiting: it never runs on (or blocks) the kernel's loop nor
the engine's. So it must not need objects bound to another loop (create its clients inside the
generator). A plain iterable is pulled by the step itself, so it should not block.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from typing import Any, TypeAlias

import pandas as pd
import pyarrow as pa

from nbstream.errors import BindError, ExecutionError, SqlTypeError

MAX_STEP = 10_000  # records per step without a rate: bounded work per loop turn
QUEUE_SIZE = 2 * MAX_STEP  # records an async source may read ahead

Append = Callable[[pa.Table, str | None, str | None], int]
Data: TypeAlias = pd.DataFrame | pa.Table | Iterable[dict[str, Any]] | AsyncIterable[dict[str, Any]]


class PythonSource:
    """A running Python source: a handle with :meth:`stop`, :attr:`status` and :attr:`produced`."""

    def __init__(self, topic: str, data: Data, append: Append, *, rate: float | None = None,
                 key: str | None = None, timestamp: str | None = None, start_ms: int | None = None) -> None:
        """``start_ms``: when the source started (the clock its steps get); default: its first step."""
        if rate is not None and not rate > 0:
            raise BindError(f"source {topic}: rate must be a positive number of records per second, not {rate!r}")
        self.topic, self.rate, self.key, self.timestamp = topic, rate, key, timestamp
        self.produced = 0
        self.error: str | None = None
        self._append = append
        self._stopped = threading.Event()
        self._started_ms = start_ms
        self._reader = _reader_for(data, self._stopped)

    @property
    def status(self) -> str:
        """RUNNING, FINISHED (the data ran out), STOPPED or ERROR (see :attr:`error`)."""
        if self.error is not None:
            return "ERROR"
        if self._stopped.is_set():
            return "STOPPED"
        return "FINISHED" if self._reader.exhausted else "RUNNING"

    state = status

    def stop(self) -> None:
        """Stop feeding (records already appended stay)."""
        self._stopped.set()

    def step(self, now_ms: int) -> int:
        """Append the records due at ``now_ms`` as one batch; returns how many."""
        if self.status != "RUNNING":
            return 0
        if self._started_ms is None:
            self._started_ms = now_ms
        due = MAX_STEP if self.rate is None else int((now_ms - self._started_ms) * self.rate / 1000) - self.produced
        try:
            batch = self._reader.take(min(due, MAX_STEP))
            if batch is None or batch.num_rows == 0:
                return 0
            if self.timestamp is None:
                batch = batch.append_column("__ts", pa.array([now_ms] * batch.num_rows, pa.int64()))
            written = self._append(batch, self.key, self.timestamp or "__ts")
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"
            raise
        self.produced += written
        return written

    def __repr__(self) -> str:
        return f"<PythonSource topic={self.topic!r} status={self.status} produced={self.produced}>"


class _Reader:
    """Hands out the next records of a source's data as Arrow tables."""

    @property
    def exhausted(self) -> bool:
        """Whether every record was handed out."""
        raise NotImplementedError

    def take(self, n: int) -> pa.Table | None:
        raise NotImplementedError


class _FrameReader(_Reader):
    def __init__(self, data: pd.DataFrame | pa.Table) -> None:
        self.table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        self.offset = 0

    @property
    def exhausted(self) -> bool:
        return self.offset >= self.table.num_rows

    def take(self, n: int) -> pa.Table | None:
        batch = self.table.slice(self.offset, max(0, n))
        self.offset += batch.num_rows
        return batch


class _IterableReader(_Reader):
    def __init__(self, data: Iterable[dict[str, Any]]) -> None:
        self.items: Iterator[dict[str, Any]] = iter(data)
        self.ended = False

    @property
    def exhausted(self) -> bool:
        return self.ended

    def take(self, n: int) -> pa.Table | None:
        items = list(itertools.islice(self.items, max(0, n)))
        if n > 0 and len(items) < n:
            self.ended = True
        return _records_table(items)


class _AsyncReader(_Reader):
    """Consumes an async iterable on its own thread and event loop, into a bounded queue."""

    _END = object()

    def __init__(self, data: AsyncIterable[dict[str, Any]], stopped: threading.Event) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(QUEUE_SIZE)
        self.stopped = stopped
        self.failure: BaseException | None = None
        self.ended = False
        self.thread = threading.Thread(target=asyncio.run, args=(self._feed(data),), name="nbstream-source",
                                       daemon=True)
        self.thread.start()

    async def _feed(self, data: AsyncIterable[dict[str, Any]]) -> None:
        try:
            async for item in data:
                if not self._put(item):
                    return
        except BaseException as error:  # reported by the next take(), in the engine's loop
            self.failure = error
        self._put(self._END)

    def _put(self, item: Any) -> bool:
        """Block this (the feeder's own) thread until the queue has room; False once stopped."""
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    @property
    def exhausted(self) -> bool:
        return self.ended

    def take(self, n: int) -> pa.Table | None:
        items: list[Any] = []
        while len(items) < n:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is self._END:
                self.ended = True
                if self.failure is not None:
                    raise ExecutionError(f"the async iterable failed: {self.failure!r}") from self.failure
                break
            items.append(item)
        return _records_table(items)


def _reader_for(data: Data, stopped: threading.Event) -> _Reader:
    if isinstance(data, pd.DataFrame | pa.Table):
        return _FrameReader(data)
    if isinstance(data, AsyncIterable):
        return _AsyncReader(data, stopped)
    if isinstance(data, Iterable) and not isinstance(data, str | bytes | dict):
        return _IterableReader(data)
    raise SqlTypeError(f"a source takes a DataFrame, an Arrow table, an iterable or an async iterable of dicts, "
                    f"not {type(data).__name__}")


def _records_table(items: list[Any]) -> pa.Table | None:
    if not items:
        return None
    bad = next((item for item in items if not isinstance(item, dict)), None)
    if bad is not None:
        raise SqlTypeError(f"a source's records must be dicts of column values, not {type(bad).__name__}: {bad!r}")
    return pa.Table.from_pylist(items)
