"""The running side of an engine's persistent queries and tables: one registry of their runners.

The catalog says what the queries are (:class:`~nbstream.catalog.catalog.PersistentQuery`: id,
statement, sink, state); :class:`QueryManager` holds what runs them. Statements start and stop
queries and add and drop tables through it; the engine's loops step :meth:`~QueryManager.workers`;
SHOW QUERIES, EXPLAIN and the faces read a query's runner (its counters and plan) from it, also
after the query stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbstream.catalog.catalog import Catalog, PersistentQuery, Source
from nbstream.errors import NbstreamError
from nbstream.plan.planner import Plan
from nbstream.runtime.backend import Backend
from nbstream.runtime.kafka_query import processing_guarantee
from nbstream.runtime.materialize import Materializer
from nbstream.runtime.query import QueryRunner

#: The states of a query that is stepped (STALLED: waiting for its Kafka broker or its schema
#: registry, and retrying).
STALLED = "STALLED"
RUNNING_STATES = ("RUNNING", STALLED)

#: What the loops step: a persistent query's runner with its id, or a materialization's with None.
Worker = tuple[str | None, QueryRunner]


class QueryManager:
    """The runners of one engine's persistent queries and table materializations."""

    def __init__(self, backend: Backend, catalog: Catalog, properties: Mapping[str, Any]) -> None:
        self._backend = backend
        self._catalog = catalog
        self._properties = properties
        self._runners: dict[str, QueryRunner] = {}  # every query's, in creation order
        self._materializers: dict[str, Materializer] = {}
        self._waiting: set[int] = set()  # the runners stall() stalled (a Kafka runner stalls on its own)

    # -- persistent queries ----------------------------------------------------------------------
    def start(self, query: PersistentQuery, plan: Plan) -> None:
        """Add ``query`` to the catalog and start running ``plan`` for it. If it cannot start (a
        refused ``processing.guarantee``), the stream or table its CREATE … AS SELECT added goes
        too, so that the statement can be run again."""
        try:
            guarantee = processing_guarantee(self._properties.get("processing.guarantee"))
            runner = self._backend.runner_for(query, plan, guarantee)
        except NbstreamError:
            self._catalog.release_query_id(query.id)
            created = self._catalog.find(query.sink)
            if created is not None and created.sql == query.sql:
                self._catalog.drop(created.name)
                self.source_dropped(created)
            raise
        self._catalog.add_query(query)
        self._runners[query.id] = runner
        materializer = self._materializers.get(query.sink)
        if materializer is not None:
            runner.feed(materializer)

    def stop(self, query: PersistentQuery) -> None:
        """Terminate ``query``: it is no longer stepped, and its offsets and state are dropped."""
        if query.state == "TERMINATED":
            return
        query.state = "TERMINATED"
        runner = self._runners.get(query.id)
        if runner is not None:
            runner.drop_state()

    def runner(self, query_id: str) -> QueryRunner:
        """The runner of persistent query ``query_id`` (its ``stats``, its plan), running or not;
        an :class:`~nbstream.errors.UnknownNameError` naming the near miss if there is none."""
        return self._runners[self._catalog.get_query(query_id).id]

    def running(self) -> dict[str, QueryRunner]:
        """The runners of the queries that are stepped, by query id, in creation order."""
        return {query_id: runner for query_id, runner in self._runners.items() if self._stepped(query_id)}

    # -- tables -----------------------------------------------------------------------------------
    def source_added(self, source: Source) -> None:
        """A new stream or table: the backend learns of it; a table is materialized, so that pull
        queries can read it."""
        self._backend.declare(source)
        if source.is_table:
            self._materializers[source.name] = self._backend.materializer_for(source)

    def source_dropped(self, source: Source) -> None:
        materializer = self._materializers.pop(source.name, None)
        if materializer is not None:
            materializer.drop()

    # -- what the loops step ----------------------------------------------------------------------
    def workers(self) -> list[Worker]:
        """The running queries, in creation order, then the materializations."""
        return [*self.running().items(), *((None, m) for m in self._materializers.values())]

    def has_workers(self) -> bool:
        """Whether :meth:`workers` may return any (safe to ask without the engine's lock: False
        only when there is no query and no materialization at all)."""
        return bool(self._materializers) or bool(self._runners)

    def still_running(self, worker: Worker) -> bool:
        """Whether ``worker`` (from :meth:`workers`) is still to be stepped: its query was not
        stopped, nor its table dropped, since."""
        query_id, runner = worker
        if query_id is None:
            return any(m is runner for m in self._materializers.values())
        return self._stepped(query_id)

    def fail(self, worker: Worker, error: Exception) -> str:
        """Stop ``worker``, whose step raised ``error``: its query is marked ``ERROR`` (a
        materialization is dropped from the loop) and the error kept on its stats. Returns what
        failed, for a report."""
        query_id, runner = worker
        runner.stats.last_error = f"{type(error).__name__}: {error}"
        if query_id is not None:
            self._catalog.queries[query_id].state = "ERROR"
        else:
            self._materializers = {k: v for k, v in self._materializers.items() if v is not runner}
        return f"{query_id or 'materialization'}: {runner.stats.last_error}"

    def stall(self, worker: Worker, error: Exception) -> None:
        """``worker`` waits for something outside the engine that failed (``error``, e.g. its schema
        registry): its query is ``STALLED`` and keeps being stepped, so it goes on where it stopped."""
        query_id, runner = worker
        runner.stats.last_error = f"waiting (retrying): {error}"
        self._waiting.add(id(runner))
        query = self._catalog.queries.get(query_id) if query_id is not None else None
        if query is not None and query.state == "RUNNING":
            query.state = STALLED

    def stepped(self, worker: Worker) -> None:
        """``worker`` stepped without failing: a query that :meth:`stall` stalled runs again."""
        query_id, runner = worker
        if id(runner) not in self._waiting:
            return
        self._waiting.discard(id(runner))
        runner.stats.last_error = None
        query = self._catalog.queries.get(query_id) if query_id is not None else None
        if query is not None and query.state == STALLED:
            query.state = "RUNNING"

    def _stepped(self, query_id: str) -> bool:
        query = self._catalog.queries.get(query_id)
        return query is not None and query.state in RUNNING_STATES
