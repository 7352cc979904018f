"""The notebook's engine: persistent queries run in a background thread while the kernel is free.

:class:`NotebookEngine` is an :class:`~nbstream.Engine` whose public methods hold one lock, and
:class:`BackgroundLoop` steps its queries and table materializations in a daemon thread under the
same lock, one micro-batch at a time, sleeping briefly when nothing has input. So a ``%%stream``
statement and the loop never use the DuckDB connection at once, and a statement waits at most one
micro-batch; a pull query on the embedded log waits for none (it reads the last committed state on a
connection of its own). A query whose step raises is marked ``ERROR`` with the message on its stats (and
shown by ``%stream queries``); it is never retried silently and never swallowed. Push queries
started with :meth:`NotebookEngine.start_push` are fed by the same loop (see
:mod:`nbstream.notebook.live`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import duckdb
import pandas as pd

from nbstream.catalog.catalog import PersistentQuery
from nbstream.errors import ExecutionError
from nbstream.log.staged import StagedKafkaLog
from nbstream.runtime.engine import Engine
from nbstream.runtime.pull import pull

if TYPE_CHECKING:
    from nbstream.notebook.live import Deliver, PushQuery

IDLE_SLEEP_SECONDS = 0.02

F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """``method`` run while holding the engine's lock (its first argument is the engine); typed as
    ``method``, overloads included."""

    @wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        engine = args[0]
        assert isinstance(engine, NotebookEngine)
        with engine.lock:
            return method(*args, **kwargs)

    return cast(F, run)


class EngineLock:
    """A reentrant lock that knows whether the calling thread holds it."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._owner: int | None = None
        self._depth = 0

    def __enter__(self) -> EngineLock:
        self._lock.acquire()
        self._owner = threading.get_ident()
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
        self._lock.release()

    def held(self) -> bool:
        return self._owner == threading.get_ident()


class NotebookEngine(Engine):
    """An engine safe to use from the kernel while :class:`BackgroundLoop` runs its queries."""

    def __init__(self, path: str | Path | None = None, *, properties: Mapping[str, Any] | None = None,
                 kafka: str | None = None, **client_options: Any) -> None:
        self.lock = EngineLock()
        super().__init__(path, properties=properties, kafka=kafka, **client_options)
        self.background = BackgroundLoop(self)
        self.push_queries: dict[str, PushQuery] = {}
        self._pull_con = self._pull_connection()

    execute = _locked(Engine.execute)
    produce = _locked(Engine.produce)
    produce_batch = _locked(Engine.produce_batch)
    consume = _locked(Engine.consume)
    run_until_idle = _locked(Engine.run_until_idle)
    source = _locked(Engine.source)

    def step_all(self) -> int:
        """One round: connectors and Python sources write the records due, then every running
        query and every materialization processes one micro-batch, each under the lock. Returns
        the records written and consumed; failing queries are marked ``ERROR``, failing
        connectors ``FAILED``."""
        with self.lock:
            consumed = self.connectors.step(on_error=self._connector_failed)
        for query_id, worker in self._workers():
            with self.lock:
                if not self._still_running(query_id):
                    continue
                try:
                    consumed += worker.step()
                except Exception as error:
                    self._fail(query_id, worker, error)
        return consumed

    def query(self, sql: str, params: Mapping[str, object] | None = None) -> pd.DataFrame:
        """A pull query, run in a worker thread so that Ctrl-C (a ``KeyboardInterrupt`` in the
        waiting thread) interrupts it inside DuckDB; it then raises :class:`ExecutionError`.

        On the embedded log it runs on a connection of its own, without waiting for the background
        loop's batch: it reads the state as of the last committed batch."""
        if self.lock.held():  # a statement of this thread runs it (execute): no worker can take the lock
            return Engine.query(self, sql, params)
        return _InterruptiblePull(self, sql, params, self._pull_con).result()

    def _pull_connection(self) -> duckdb.DuckDBPyConnection | None:
        """A cursor of the engine's database for pull queries; None on Kafka, whose pulls read
        batches fetched onto the engine's connection."""
        if isinstance(self.log, StagedKafkaLog):
            return None
        cursor = self.con.cursor()
        self._configure(cursor)
        return cursor

    def start_push(self, sql: str, params: Mapping[str, object], deliver: Deliver, cap: int) -> PushQuery:
        """Start the push query ``sql``; the background loop feeds its view (the last ``cap``
        rows) until it stops."""
        from nbstream.notebook.live import PushQuery

        with self.lock:
            query = PushQuery(self.transient_runner(sql, params), sql, deliver, cap)
            self.push_queries[query.id] = query
        return query

    def step_pushes(self) -> int:
        """One batch for every running push query, a view update where one is due, and the
        cursors of stopped ones closed. Returns the result rows produced."""
        produced = 0
        for query in list(self.push_queries.values()):
            with self.lock:
                produced += query.step()
                if query.state != "RUNNING":
                    del self.push_queries[query.id]
                    query.runner.con.close()
            query.flush()
        return produced

    def _workers(self) -> list[tuple[str | None, Any]]:
        with self.lock:
            return [*self._runners.items(), *((None, m) for m in self._materializers.values())]

    def _still_running(self, query_id: str | None) -> bool:
        return query_id is None or query_id in self._runners

    def _fail(self, query_id: str | None, worker: Any, error: Exception) -> None:
        worker.stats.last_error = f"{type(error).__name__}: {error}"
        if query_id is not None:
            self._runners.pop(query_id, None)
            self.catalog.queries[query_id].state = "ERROR"
        else:
            self._materializers = {k: v for k, v in self._materializers.items() if v is not worker}
        self.background.failures.append(f"{query_id or 'materialization'}: {worker.stats.last_error}")

    def _connector_failed(self, what: str, error: Exception) -> None:
        self.background.failures.append(f"connector {what}: {type(error).__name__}: {error}")

    def persistent_queries(self) -> list[PersistentQuery]:
        """Every persistent query the catalog knows, in creation order."""
        with self.lock:
            return list(self.catalog.queries.values())

    def close(self) -> None:
        self.background.stop()
        for query in self.push_queries.values():
            query.stop()
            query.runner.con.close()
        with self.lock:
            if self._pull_con is not None:
                self._pull_con.close()
            super().close()


class _InterruptiblePull:
    """One pull query on a worker thread. DuckDB ignores signals, but ``con.interrupt()`` from
    another thread stops a running statement. On its own connection ``con`` the pull runs at once;
    on the engine's (``con`` None) it holds the engine lock, and the interrupt is called only while
    it does, so it can never hit a background micro-batch on the same connection."""

    def __init__(self, engine: NotebookEngine, sql: str, params: Mapping[str, object] | None,
                 con: duckdb.DuckDBPyConnection | None) -> None:
        self.engine, self.sql, self.params, self.con = engine, sql, params, con
        self.frame: pd.DataFrame | None = None
        self.error: BaseException | None = None
        self.cancelled = threading.Event()
        self.running = threading.Event()  # set while the worker holds the lock
        self.guard = threading.Lock()  # orders interrupt() before the worker lets the lock go
        self.thread = threading.Thread(target=self._work, name="nbstream-pull", daemon=True)

    def result(self) -> pd.DataFrame:
        self.thread.start()
        try:
            while self.thread.is_alive():
                self.thread.join(0.05)
        except KeyboardInterrupt:
            self._cancel()
            raise ExecutionError("pull query cancelled") from None
        if self.error is not None:
            raise self.error
        assert self.frame is not None
        return self.frame

    def _work(self) -> None:
        with contextlib.nullcontext() if self.con is not None else self.engine.lock:
            if self.cancelled.is_set():
                return
            self.running.set()
            try:
                self.frame = pull(self.engine, self.sql, self.params or {}, self.con)
            except BaseException as error:
                self.error = error
            finally:
                with self.guard:
                    self.running.clear()

    def _cancel(self) -> None:
        with self.guard:
            self.cancelled.set()
            if self.running.is_set():
                (self.con or self.engine.con).interrupt()
        self.thread.join()


class BackgroundLoop:
    """A daemon thread stepping an engine's queries until stopped."""

    def __init__(self, engine: NotebookEngine, idle_sleep: float = IDLE_SLEEP_SECONDS) -> None:
        self.engine = engine
        self.idle_sleep = idle_sleep
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (a no-op when it runs already)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="nbstream-background", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop after its current micro-batch, and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                progressed = self.engine.step_all() + self.engine.step_pushes()
            except Exception as error:  # the loop itself broke: record it, keep the kernel informed
                self.failures.append(f"background loop: {type(error).__name__}: {error}")
                progressed = 0
            if progressed == 0:
                self._stop.wait(self.idle_sleep)
