"""The engine as a service: what every face (the notebook, the CLI, an HTTP server) runs on.

:class:`EngineService` is an :class:`~nbstream.runtime.engine.Engine` whose public methods hold
one lock, so that any thread may call them, with:

- a :class:`BackgroundLoop`, a daemon thread stepping the connectors, persistent queries, table
  materializations and push queries under the same lock, one micro-batch at a time, sleeping
  briefly when nothing has input. A statement waits at most one micro-batch; a pull query on the
  embedded log waits for none once its plan is cached (it reads the last committed state on a
  cursor of its own, lent from a pool so that pull queries of several threads run side by side;
  Ctrl-C interrupts it inside DuckDB). A query whose step raises is marked ``ERROR`` with the
  message on its stats and in :attr:`BackgroundLoop.failures`; it is never retried silently and
  never swallowed.
- the registry of running push queries (:meth:`EngineService.start_push`, ``push_queries``):
  each is a :class:`~nbstream.runtime.push.PushQuery` that the loop steps for its subscribers;
  clients that each want a push query of their own subscribe with :meth:`EngineService.subscribe_push`,
  which lets clients of the same stateless query share one (:class:`PushSubscription`);
- stopping queries by id (:meth:`EngineService.stop_queries`) and the table of every query
  (:meth:`EngineService.queries_frame`);
- the rules for running a statement again (:meth:`EngineService.rerun`, :mod:`nbstream.runtime.rerun`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar, cast

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from nbstream.catalog.catalog import PersistentQuery
from nbstream.errors import BindError, ExecutionError, did_you_mean
from nbstream.formats.registry_client import RegistryUnavailable
from nbstream.plan.logical import StatelessPlan
from nbstream.runtime.engine import Engine
from nbstream.runtime.histogram import HistogramSnapshot
from nbstream.runtime.ingest import JsonRowsAppended, append_json_rows
from nbstream.runtime.processing_log import TOPIC as PROCESSING_LOG_TOPIC
from nbstream.runtime.pull import PullResult, pull, pull_rows
from nbstream.runtime.push import RUNNING, PushQuery, Subscriber
from nbstream.runtime.queries import RUNNING_STATES
from nbstream.runtime.rerun import drop_changed, unchanged_message
from nbstream.runtime.results import Params, StatementResult
from nbstream.sql import ast

IDLE_SLEEP_SECONDS = 0.02
#: How often the background loop deletes the records past their topic's RETENTION_MS (a Kafka
#: broker checks every 5 minutes, ``log.retention.check.interval.ms``; on the embedded log a check
#: is one DELETE per topic with a retention, which skips the row groups its time bound excludes).
RETENTION_CHECK_SECONDS = 10.0

F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """``method`` run while holding the engine's lock (its first argument is the engine); typed as
    ``method``, overloads included."""

    @wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        engine = args[0]
        assert isinstance(engine, EngineService)
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


@dataclass(frozen=True)
class Rerun:
    """What running a statement again did: ``note`` says there was nothing to do or what was
    replaced first (None: neither); ``result`` is the statement's (None: it did not run)."""

    note: str | None
    result: StatementResult | None


class EngineService(Engine):
    """An engine safe to use from any thread while :attr:`background` runs its queries."""

    def __init__(self, path: str | Path | None = None, *, properties: Mapping[str, Any] | None = None,
                 kafka: str | None = None, **client_options: Any) -> None:
        self.lock = EngineLock()
        super().__init__(path, properties=properties, kafka=kafka, **client_options)
        self.background = BackgroundLoop(self)
        self.push_queries: dict[str, PushQuery] = {}
        self.push_subscriptions: dict[str, PushSubscription] = {}
        self._shared: dict[tuple[str, str], PushQuery] = {}  # shareable push queries by text and properties
        self._subscriptions_lock = threading.Lock()
        self._cursors = _Cursors(self) if self.backend.pulls_on_cursor else None
        self._next_retention_check = 0.0  # time.monotonic() of the next delete_expired

    execute = _locked(Engine.execute)
    run_until_idle = _locked(Engine.run_until_idle)
    source = _locked(Engine.source)

    # -- producing and consuming --------------------------------------------------------------------
    def produce(self, topic: str, value: Any, key: Any = None, timestamp: int | None = None,
                partition: int | None = None, headers: Sequence[tuple[str, bytes | None]] | None = None,
                window: tuple[int, int] | None = None) -> None:
        """:meth:`Engine.produce` under the lock; the background loop steps at once (no idle sleep)."""
        with self.lock:
            Engine.produce(self, topic, value, key, timestamp, partition, headers, window)
        self.background.wake()

    def produce_batch(self, topic: str, data: pd.DataFrame | pa.Table, *, key: str | None = None,
                      timestamp: str | None = None) -> int:
        """:meth:`Engine.produce_batch` under the lock; the background loop steps at once."""
        with self.lock:
            count = Engine.produce_batch(self, topic, data, key=key, timestamp=timestamp)
        self.background.wake()
        return count

    @contextlib.contextmanager
    def consume_cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """On the embedded log a cursor lent by the pull queries' pool, without the lock: a consume
        reads what the log committed (end offsets advance only after a commit) while the background
        loop goes on, and looks its topic up as a pull query does (:mod:`nbstream.runtime.pull`).
        On Kafka, where records are staged on the cursor, it holds the lock throughout."""
        if self._cursors is None or self.lock.held():
            with self.lock, Engine.consume_cursor(self) as cursor:
                yield cursor
            return
        with self._cursors.lend() as cursor:
            yield cursor

    # -- statements ---------------------------------------------------------------------------------
    def rerun(self, statement: ast.Statement, params: Params) -> Rerun:
        """Run ``statement`` as a re-run notebook cell runs it: a CREATE of a stream, table or
        connector that exists with the same definition does nothing; one whose definition changed
        first drops what the old one made (:mod:`nbstream.runtime.rerun`). One lock throughout."""
        with self.lock:
            unchanged = unchanged_message(self, statement)
            if unchanged is not None:
                return Rerun(unchanged, None)
            replaced = drop_changed(self, statement)
            (result,) = self.execute(statement.text, params)
            return Rerun(replaced, result)

    def query(self, sql: str, params: Mapping[str, object] | None = None) -> pd.DataFrame:
        """A pull query, run in a worker thread so that Ctrl-C (a ``KeyboardInterrupt`` in the
        waiting thread) interrupts it inside DuckDB; it then raises :class:`ExecutionError`.

        On the embedded log it runs on a cursor of its own, without waiting for the background
        loop's batch: it reads the state as of the last committed batch."""
        if self.lock.held():  # a statement of this thread runs it (execute): no worker can take the lock
            return Engine.query(self, sql, params)
        return _InterruptiblePull(self, sql, params).result()

    def pull_rows(self, sql: str, params: Mapping[str, object] | None = None,
                  properties: Mapping[str, Any] | None = None) -> PullResult:
        """A pull query's rows and columns (:func:`~nbstream.runtime.pull.pull_rows`; ``properties``
        override the engine's for it), safe to call from many threads at once: each runs on a cursor
        of its own (on the embedded log)."""
        with self.pull_connection() as con:
            return pull_rows(self, sql, params or {}, con, properties)

    @contextlib.contextmanager
    def pull_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one pull query: a cursor lent by the pool; the engine's own connection,
        holding the lock, where pulls read what is fetched onto it (Kafka) or this thread holds
        the lock already."""
        if self._cursors is None or self.lock.held():
            with self.lock:
                yield self.con
            return
        with self._cursors.lend() as cursor:
            yield cursor

    # -- inserts --------------------------------------------------------------------------------------
    def insert_json_rows(self, target: str, rows: Sequence[bytes]) -> JsonRowsAppended:
        """Append JSON rows to the stream or table ``target`` (ksqlDB's identifier rules: upper-cased
        unless back-quoted), durably, as :func:`~nbstream.runtime.ingest.append_json_rows` does."""
        name = target[1:-1].replace("``", "`") if target.startswith("`") and target.endswith("`") \
            else target.upper()
        with self.lock:
            source = self.catalog.find(name)
            if source is None:
                raise BindError(f"Cannot insert values into an unknown stream/table: {name}"
                                f"{did_you_mean(name, self.catalog.sources)}")
            if source.window is not None:
                raise BindError("Cannot insert values into windowed stream/table")
            if source.is_source or source.topic == PROCESSING_LOG_TOPIC:
                raise BindError(f"Cannot insert values into read-only topic: {source.topic}")
            appended = append_json_rows(self.con, self.log, source, rows)
        self.background.wake()
        return appended

    # -- push queries -------------------------------------------------------------------------------
    def start_push(self, sql: str, params: Mapping[str, object] | None = None,
                   properties: Mapping[str, Any] | None = None) -> PushQuery:
        """Start the push query ``sql``; the background loop steps it while it has subscribers
        (:meth:`PushQuery.subscribe`), from the position it starts at now (``properties`` such as
        ``auto.offset.reset`` override the engine's for it)."""
        with self.lock:
            query = self._push_query(sql, params, properties)
            self.push_queries[query.id] = query
        return query

    def subscribe_push(self, sql: str, subscriber: Subscriber, properties: Mapping[str, Any] | None = None,
                       *, subscription_id: str | None = None) -> PushSubscription:
        """Give ``subscriber`` the push query ``sql`` as if it were its own: the rows that arrive
        from now on (from the start of the input with ``auto.offset.reset=earliest``), up to its LIMIT.

        Clients of the same stateless query without LIMIT that starts now share one running query
        (the engine evaluates each micro-batch once for all of them): the shared query is stepped up
        to the end of its input before the new subscriber joins, so that it gets exactly the rows
        appended after it subscribed, its own position. Each subscriber keeps its own buffer, and
        :meth:`PushSubscription.stop` ends its share alone. ``subscription_id`` names the subscription
        (by default the query's id, with ``_n`` appended for the n-th later client of a shared query)."""
        key = (" ".join(sql.split()).rstrip(";"), repr(sorted((properties or {}).items())))
        with self.lock:
            shared = self._shared.get(key)
            if shared is not None:
                while shared.step() > 0:  # up to the end of the input: the others get what was pending
                    pass
                if shared.join(subscriber):
                    return self._subscription(shared, subscriber, subscription_id)
                self._shared.pop(key, None)
            query = self.start_push(sql, properties=properties)
            with self.overriding(properties or {}):
                offset_reset = self.property("auto.offset.reset")
            if _shareable(query, offset_reset):
                self._shared[key] = query
            query.subscribe(subscriber)
            return self._subscription(query, subscriber, subscription_id)

    def _subscription(self, query: PushQuery, subscriber: Subscriber, name: str | None) -> PushSubscription:
        with self._subscriptions_lock:
            taken = sum(1 for s in self.push_subscriptions.values() if s.query is query)
            if name is None:
                name = query.id if taken == 0 else f"{query.id}_{taken}"
            subscription = PushSubscription(name, query, subscriber, self)
            while subscription.id in self.push_subscriptions:
                subscription = PushSubscription(f"{subscription.id}_", query, subscriber, self)
            self.push_subscriptions[subscription.id] = subscription
        return subscription

    def _unsubscribed(self, subscription: PushSubscription, remaining: int) -> None:
        """``subscription`` ended; a query nobody subscribes to any more stops (the loop closes it)."""
        with self._subscriptions_lock:
            self.push_subscriptions.pop(subscription.id, None)
        if remaining == 0:
            subscription.query.stop_unless_subscribed()

    def close_push(self, query: PushQuery) -> None:
        """Stop ``query`` and release its cursor now (the loop would at its next round)."""
        with self.lock:
            query.stop()
            if self.push_queries.pop(query.id, None) is not None:
                query.close()

    # -- the background loop's work -----------------------------------------------------------------
    def step_all(self, stop: threading.Event | None = None) -> int:
        """One round: connectors and Python sources write the records due, then every running
        query and every materialization processes one micro-batch, each under the lock; once
        ``stop`` is set (the engine is stopping), the round ends after the batch in flight. Returns
        the records written and consumed; failing queries are marked ``ERROR``, failing
        connectors ``FAILED``, and queries waiting for their schema registry ``STALLED``."""
        if self.connectors.idle and not self.queries.has_workers():
            return 0  # read without the lock, which an insert may hold: push queries need not wait for it
        with self.lock:
            consumed = self.connectors.step(on_error=self._connector_failed)
            workers = self.queries.workers()
        for worker in workers:
            if stop is not None and stop.is_set():
                break
            with self.lock:
                if not self.queries.still_running(worker):
                    continue
                try:
                    consumed += worker[1].step()
                    self.queries.stepped(worker)
                except RegistryUnavailable as error:
                    self.queries.stall(worker, error)
                except Exception as error:
                    self.background.failures.append(self.queries.fail(worker, error))
        return consumed

    def step_pushes(self) -> int:
        """One batch for every running push query, then its subscribers' time-based work; a
        query that ended leaves the registry and its cursor is closed. Returns the input records
        consumed. On the embedded log a batch runs on the query's cursor without the engine's lock
        (it reads what the log committed), so inserts and persistent queries go on meanwhile."""
        consumed = 0
        with self.lock:
            queries = list(self.push_queries.values())
        for query in queries:
            with contextlib.nullcontext() if self.backend.pushes_on_cursor else self.lock:
                consumed += query.step()
            if query.ended:
                with self.lock:
                    if self.push_queries.pop(query.id, None) is not None:
                        query.close()
            query.tick()
        return consumed

    def delete_expired(self, every: float = RETENTION_CHECK_SECONDS) -> int:
        """Delete the records past their topic's retention (:meth:`~nbstream.log.base.Log.delete_expired`),
        under the lock, if the last check was ``every`` seconds ago or more; returns how many."""
        now = time.monotonic()
        if now < self._next_retention_check:
            return 0
        self._next_retention_check = now + every
        with self.lock:
            return self.log.delete_expired(int(time.time() * 1000))

    def _connector_failed(self, what: str, error: Exception) -> None:
        self.background.failures.append(f"connector {what}: {type(error).__name__}: {error}")

    # -- queries by id ------------------------------------------------------------------------------
    def persistent_queries(self) -> list[PersistentQuery]:
        """Every persistent query the catalog knows, in creation order."""
        with self.lock:
            return list(self.catalog.queries.values())

    def stop_queries(self, which: str) -> list[str]:
        """Stop the persistent or push query with id ``which``, or every running one (``all``);
        returns the ids stopped."""
        with self.lock:
            if which.lower() == "all":
                persistent = self.catalog.running()
                pushes = [q for q in self.push_queries.values() if q.state == RUNNING]
            elif which.upper() in self.push_queries:
                persistent, pushes = [], [self.push_queries[which.upper()]]
            else:
                persistent, pushes = [self.catalog.get_query(which)], []
            for query in persistent:
                self.queries.stop(query)
            for push in pushes:
                push.stop()
        return [q.id for q in persistent] + [p.id for p in pushes]

    def queries_frame(self) -> pd.DataFrame:
        """One row per query, persistent then push: id, state, sink, counters (records consumed, emitted,
        sent to the processing log, dropped late, EMIT FINAL windows expired unwritten), input rate,
        last error."""
        with self.lock:
            persistent = [(query, self.queries.runner(query.id).stats) for query in self.catalog.queries.values()]
            pushes = list(self.push_queries.values())
        rows = []
        for query, stats in persistent:
            busy = stats.busy_seconds
            rows.append({
                "id": query.id, "state": query.state, "sink": query.sink,
                "consumed": stats.consumed, "emitted": stats.emitted, "logged": stats.logged,
                "late": stats.late, "expired": stats.expired,
                "events/s (busy)": round(stats.consumed / busy) if busy > 0 else 0,
                "error": stats.last_error, "sql": query.sql,
            })
        for push in pushes:
            rows.append({"id": push.id, "state": push.state, "sink": None, "consumed": None,
                         "emitted": push.rows_seen, "logged": None, "late": push.runner.stats.late,
                         "expired": push.runner.stats.expired, "events/s (busy)": None,
                         "error": push.error, "sql": push.sql})
        return pd.DataFrame(rows, columns=list(QUERY_COLUMNS))

    def close(self) -> None:
        self.background.stop()
        with self.lock:
            for query in self.push_queries.values():
                query.stop()
                query.close()
            self.push_queries.clear()
            self.push_subscriptions.clear()
            self._shared.clear()
            if self._cursors is not None:
                self._cursors.close()
            super().close()

    def query_metrics(self) -> list[QueryMetrics]:
        """The counters of every persistent query, for monitoring (:class:`QueryMetrics`)."""
        with self.lock:
            return [self._metrics_of(query) for query in self.catalog.queries.values()]

    def memory_by_tag(self) -> dict[str, int]:
        """Bytes DuckDB holds in memory now, by what holds them (``duckdb_memory()``: ``BASE_TABLE``
        is its cache of stored blocks, ``IN_MEMORY_TABLE`` rows not checkpointed yet, …; tags
        holding nothing left out), for monitoring."""
        with self.pull_connection() as con:
            rows = con.execute("SELECT tag, memory_usage_bytes FROM duckdb_memory() "
                               "WHERE memory_usage_bytes > 0 ORDER BY tag").fetchall()
        return {tag: int(used) for tag, used in rows}

    def _metrics_of(self, query: PersistentQuery) -> QueryMetrics:
        runner = self.queries.runner(query.id)
        stats = runner.stats
        running = query.state in RUNNING_STATES
        return QueryMetrics(query.id, query.sink, query.state, stats.consumed, stats.emitted, stats.logged,
                            stats.batch_seconds.snapshot(), runner.pending() if running else 0,
                            self._event_time_lag(query) if running else None)

    def _event_time_lag(self, query: PersistentQuery) -> float | None:
        """Seconds from the record time of the query's latest output record to now, where the log
        is local (reading its tail is cheap); None where unknown."""
        sink = self.catalog.find(query.sink)
        info = self.log.topic(sink.topic) if sink is not None and self.backend.log_is_local else None
        if info is None or not any(info.end_offsets.values()):
            return None
        tail = self.log.read(info.name, {p: max(0, end - 1) for p, end in info.end_offsets.items()})
        latest = pc.max(tail.column("ts")).as_py()
        return None if latest is None else max(0.0, time.time() - latest / 1000)


@dataclass(frozen=True)
class QueryMetrics:
    """A persistent query's counters: records consumed, emitted and logged as bad (the processing
    log), its micro-batches' durations, its input lag in records (``input_lag``: not yet
    consumed) and in event time (``event_time_lag_seconds``: now less the time of its latest
    output record; None where unknown)."""

    query_id: str
    sink: str
    state: str
    consumed: int
    emitted: int
    logged: int
    batch_seconds: HistogramSnapshot
    input_lag: int
    event_time_lag_seconds: float | None


class PushSubscription:
    """One client's push query (:meth:`EngineService.subscribe_push`): its own ``id``, its
    ``subscriber``, and the ``query`` that runs for it, perhaps shared with others."""

    def __init__(self, subscription_id: str, query: PushQuery, subscriber: Subscriber,
                 service: EngineService) -> None:
        self.id, self.query, self.subscriber = subscription_id, query, subscriber
        self._service = service

    def stop(self) -> None:
        """End this subscription, without waiting (safe from any thread, and again): its subscriber
        is closed as ``STOPPED`` unless its query closed it already; the query goes on while others
        subscribe to it, and stops (the background loop closes it) when none is left."""
        self._service._unsubscribed(self, self.query.detach(self.subscriber))


def _shareable(query: PushQuery, offset_reset: object) -> bool:
    """Whether clients of ``query`` may share it: no state (each would build its own), no LIMIT
    (counted per client), and a start at the end of the input (a client joining later does too)."""
    return (isinstance(query.runner.query_plan, StatelessPlan) and query.shape.limit is None
            and str(offset_reset or "latest").lower() != "earliest")


#: The columns of :meth:`EngineService.queries_frame`.
QUERY_COLUMNS = ("id", "state", "sink", "consumed", "emitted", "logged", "late", "expired", "events/s (busy)",
                 "error", "sql")


class _Cursors:
    """Cursors of an engine's database configured for pull queries, each lent to one pull at a
    time: one made at once, others (under the engine lock) when none is free, so there are as
    many as pulls ever ran at the same time."""

    def __init__(self, engine: EngineService) -> None:
        self._engine = engine
        self._free: list[duckdb.DuckDBPyConnection] = []
        self._made: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()
        self._free.append(self._make())

    @contextlib.contextmanager
    def lend(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            cursor = self._free.pop() if self._free else None
        if cursor is None:
            cursor = self._make()
        try:
            yield cursor
        finally:
            with self._lock:
                self._free.append(cursor)

    def _make(self) -> duckdb.DuckDBPyConnection:
        with self._engine.lock:
            cursor = self._engine.con.cursor()
            self._engine._configure(cursor)
        with self._lock:
            self._made.append(cursor)
        return cursor

    def close(self) -> None:
        with self._lock:
            for cursor in self._made:
                cursor.close()
            self._made.clear()
            self._free.clear()


class _InterruptiblePull:
    """One pull query on a worker thread. DuckDB ignores signals, but ``con.interrupt()`` from
    another thread stops a running statement. On a cursor of its own the pull runs at once; on the
    engine's connection it holds the engine lock, and the interrupt is called only while it does,
    so it can never hit a background micro-batch on the same connection."""

    def __init__(self, engine: EngineService, sql: str, params: Mapping[str, object] | None) -> None:
        self.engine, self.sql, self.params = engine, sql, params
        self.con: duckdb.DuckDBPyConnection | None = None  # the connection, while the pull runs
        self.frame: pd.DataFrame | None = None
        self.error: BaseException | None = None
        self.cancelled = threading.Event()
        self.guard = threading.Lock()  # orders interrupt() before the worker lets the connection go
        self.thread = threading.Thread(target=self._work, name="nbstream-pull", daemon=True)
        #: Set when the worker is done. Not ``thread.is_alive()``: on Python 3.11 a KeyboardInterrupt
        #: inside ``Thread.join`` can leave the thread reported as stopped while it runs.
        self.done = threading.Event()

    def result(self) -> pd.DataFrame:
        self.thread.start()
        try:
            while not self.done.wait(0.05):
                pass
        except KeyboardInterrupt:
            self._cancel()
            raise ExecutionError("pull query cancelled") from None
        if self.error is not None:
            raise self.error
        assert self.frame is not None
        return self.frame

    def _work(self) -> None:
        try:
            with self.engine.pull_connection() as con:
                if self.cancelled.is_set():
                    return
                self.con = con
                try:
                    self.frame = pull(self.engine, self.sql, self.params or {}, con)
                except BaseException as error:
                    self.error = error
                finally:
                    with self.guard:
                        self.con = None
        finally:
            self.done.set()

    def _cancel(self) -> None:
        """Interrupt the pull until its thread ends: an interrupt that comes before DuckDB starts the
        statement is not remembered by DuckDB, so it is sent again while the worker runs."""
        self.cancelled.set()
        while not self.done.is_set():
            with self.guard:
                if self.con is not None:
                    self.con.interrupt()
            self.done.wait(0.05)


class BackgroundLoop:
    """A daemon thread stepping an engine's queries until stopped."""

    def __init__(self, engine: EngineService, idle_sleep: float = IDLE_SLEEP_SECONDS) -> None:
        self.engine = engine
        self.idle_sleep = idle_sleep
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
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

    def wake(self) -> None:
        """New input arrived: step now rather than after the idle sleep (safe from any thread)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop after its current micro-batch (not its whole round of queries),
        and wait for it."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                progressed = self.engine.step_all(self._stop) + self.engine.step_pushes()
                self.engine.delete_expired()
            except Exception as error:  # the loop itself broke: record it, keep the kernel informed
                self.failures.append(f"background loop: {type(error).__name__}: {error}")
                progressed = 0
            if progressed == 0:
                self._wake.wait(self.idle_sleep)
            self._wake.clear()
