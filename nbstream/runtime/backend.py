"""The backend of an engine, chosen once when the engine is made: the embedded log or a Kafka cluster.

Everything that differs between the two is asked of the :class:`Backend` instead of checked
against the type of the log:

- ``log``: the :class:`~nbstream.log.base.SqlLog` queries read and write;
- :meth:`~Backend.runner_for`: the runner of a persistent query's plan (:data:`RUNNERS` and
  :data:`KAFKA_RUNNERS`, one per kind of plan), :meth:`~Backend.materializer_for`: the runner
  keeping a TABLE's state for pull queries, :meth:`~Backend.transient_runner_for`: a push
  query's runner on a cursor of its own;
- :meth:`~Backend.declare`: what the backend must know of a new stream or table;
- ``pulls_on_cursor``, ``pushes_on_cursor``, ``runs_source_connectors``: what each allows;
- :meth:`~Backend.location`, :meth:`~Backend.topic_replicas`, :meth:`~Backend.consumer_groups`:
  what ``%stream status`` and ``SHOW TOPICS`` say;
- :meth:`~Backend.close`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import duckdb

from nbstream.catalog.catalog import PersistentQuery, Source
from nbstream.errors import PlanError
from nbstream.log.base import SqlLog
from nbstream.log.embedded import EmbeddedLog
from nbstream.log.kafka import KafkaLog
from nbstream.log.staged import StagedKafkaLog
from nbstream.plan.aggregate import AggregatePlan
from nbstream.plan.join import JoinAggregatePlan, JoinPlan
from nbstream.plan.logical import StatelessPlan
from nbstream.plan.planner import Plan
from nbstream.runtime.aggregate import AggregateRunner
from nbstream.runtime.join import JoinAggregateRunner, JoinRunner
from nbstream.runtime.kafka_query import (
    KafkaAggregateRunner,
    KafkaInput,
    KafkaJoinAggregateRunner,
    KafkaJoinRunner,
    KafkaMaterializer,
    KafkaQueryRunner,
    consumer_group,
)
from nbstream.runtime.materialize import Materializer
from nbstream.runtime.query import QueryRunner

#: The runner of each kind of plan on the embedded log, also of every push query (on either
#: backend: a push query's state lives on its own cursor). Found by the plan's exact type, since a
#: JoinAggregatePlan is an AggregatePlan too.
RUNNERS: Mapping[type, Callable[..., QueryRunner]] = {
    StatelessPlan: QueryRunner,
    AggregatePlan: AggregateRunner,
    JoinPlan: JoinRunner,
    JoinAggregatePlan: JoinAggregateRunner,
}

#: The runner of each kind of persistent query on Kafka.
KAFKA_RUNNERS: Mapping[type, Callable[..., KafkaInput]] = {
    StatelessPlan: KafkaQueryRunner,
    AggregatePlan: KafkaAggregateRunner,
    JoinPlan: KafkaJoinRunner,
    JoinAggregatePlan: KafkaJoinAggregateRunner,
}


R = TypeVar("R", bound=QueryRunner)


def runner_class(runners: Mapping[type, Callable[..., R]], plan: Plan) -> Callable[..., R]:
    """The runner of ``plan`` in ``runners``; a PlanError for a kind of plan none runs."""
    found = runners.get(type(plan))
    if found is None:
        raise PlanError(f"no runner for a {type(plan).__name__}")
    return found


class Backend(Protocol):
    """What an engine asks of the log it runs on (see the module docstring)."""

    @property
    def log(self) -> SqlLog:
        """The log queries read and write."""
        ...

    #: Whether a pull query may run on a cursor of its own, reading the state the last batch
    #: committed without waiting for the batch running now.
    pulls_on_cursor: bool
    #: Whether a push query's batch may run on its cursor while the engine's lock is held elsewhere
    #: (an insert, a persistent query's batch): it reads only what the log committed.
    pushes_on_cursor: bool
    #: Whether source connectors may write to the log (sinks run on every backend).
    runs_source_connectors: bool
    #: Whether the log is on this machine, so that reading a few records costs no network round trip.
    log_is_local: bool

    def runner_for(self, query: PersistentQuery, plan: Plan, guarantee: str) -> QueryRunner:
        """The runner of persistent query ``query``; ``guarantee`` is its ``processing.guarantee``
        (checked). Raises an :class:`~nbstream.errors.NbstreamError` when it cannot start."""
        ...

    def materializer_for(self, source: Source) -> Materializer:
        """The runner keeping the state of TABLE ``source``, which pull queries read."""
        ...

    def transient_runner_for(self, plan: Plan, cursor: duckdb.DuckDBPyConnection, *,
                             start_at_end: bool) -> QueryRunner:
        """A push query's runner, its state and offsets on ``cursor`` (whose owner closes it)."""
        ...

    def log_on(self, cursor: duckdb.DuckDBPyConnection) -> SqlLog:
        """The log as statements on ``cursor`` (a cursor of the engine's connection) read it."""
        ...

    def declare(self, source: Source) -> None:
        """Learn of a new stream or table."""
        ...

    def location(self, state: str) -> str:
        """Where topics and state are, for display (``state``: the state directory, or "in memory")."""
        ...

    def topic_replicas(self) -> Mapping[str, int]:
        """Replicas per topic, where the backend knows them (else 1)."""
        ...

    def consumer_groups(self, partitions: Mapping[str, int],
                        readers: Mapping[str, list[str]]) -> Mapping[str, list[str]]:
        """The consumer groups reading each topic (``partitions``: the topics and their partition
        counts; ``readers``: the ids of the running queries reading each topic)."""
        ...

    def close(self) -> None: ...


class EmbeddedBackend:
    """Topics in the engine's own DuckDB database (:class:`~nbstream.log.embedded.EmbeddedLog`):
    every batch commits its output, state and offsets in one transaction (exactly once)."""

    pulls_on_cursor = True
    pushes_on_cursor = True
    runs_source_connectors = True
    log_is_local = True

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.log: SqlLog = EmbeddedLog(con)

    def runner_for(self, query: PersistentQuery, plan: Plan, guarantee: str) -> QueryRunner:
        return runner_class(RUNNERS, plan)(query.id, plan, self.con, self.log)

    def materializer_for(self, source: Source) -> Materializer:
        return Materializer(source, self.con, self.log)

    def transient_runner_for(self, plan: Plan, cursor: duckdb.DuckDBPyConnection, *,
                             start_at_end: bool) -> QueryRunner:
        return runner_class(RUNNERS, plan)(f"transient_{id(cursor)}", plan, cursor, self.log, start_at_end=start_at_end)

    def log_on(self, cursor: duckdb.DuckDBPyConnection) -> SqlLog:
        """The same log: its topics are tables of the database every cursor shares."""
        return self.log

    def declare(self, source: Source) -> None:
        """Nothing to learn: the embedded log stores a record's window beside its key."""

    def location(self, state: str) -> str:
        return state

    def topic_replicas(self) -> Mapping[str, int]:
        return {}

    def consumer_groups(self, partitions: Mapping[str, int],
                        readers: Mapping[str, list[str]]) -> Mapping[str, list[str]]:
        """One group per query, named as it would be on Kafka."""
        return {topic: [consumer_group(q) for q in queries] for topic, queries in readers.items()}

    def close(self) -> None:
        """Nothing to close: the log lives in the engine's connection."""


class KafkaBackend:
    """Topics in a Kafka cluster (:class:`~nbstream.log.kafka.KafkaLog`), each batch staged in the
    engine's DuckDB (:class:`~nbstream.log.staged.StagedKafkaLog`); see
    :mod:`nbstream.runtime.kafka_query` for the delivery guarantees."""

    pulls_on_cursor = False  # pull queries read batches fetched onto the engine's connection
    pushes_on_cursor = False  # so do push queries
    log_is_local = False
    runs_source_connectors = False  # not yet

    def __init__(self, kafka: KafkaLog, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.kafka = kafka
        self.log: StagedKafkaLog = StagedKafkaLog(kafka, con)

    def runner_for(self, query: PersistentQuery, plan: Plan, guarantee: str) -> QueryRunner:
        runner = runner_class(KAFKA_RUNNERS, plan)(query.id, plan, self.con, self.log)
        runner.guarantee(guarantee)
        runner.report_to(query)
        return runner

    def materializer_for(self, source: Source) -> Materializer:
        return KafkaMaterializer(source, self.con, self.log)

    def transient_runner_for(self, plan: Plan, cursor: duckdb.DuckDBPyConnection, *,
                             start_at_end: bool) -> QueryRunner:
        return runner_class(RUNNERS, plan)(f"transient_{id(cursor)}", plan, cursor, self.log_on(cursor),
                                   start_at_end=start_at_end)

    def log_on(self, cursor: duckdb.DuckDBPyConnection) -> SqlLog:
        """The Kafka log staging into ``cursor``'s own temporary tables."""
        return self.log.on(cursor)

    def declare(self, source: Source) -> None:
        """Kafka learns which topics hold windowed keys (their window is split off when read)."""
        if source.window is not None:
            self.kafka.declare_window(source.topic, source.window.kind, source.window.size_ms)

    def location(self, state: str) -> str:
        return f"{self.kafka.describe()}; state {state}"

    def topic_replicas(self) -> Mapping[str, int]:
        return self.kafka.replicas()

    def consumer_groups(self, partitions: Mapping[str, int],
                        readers: Mapping[str, list[str]]) -> Mapping[str, list[str]]:
        return self.kafka.consumer_groups(dict(partitions))

    def close(self) -> None:
        self.log.close()


def backend_for(con: duckdb.DuckDBPyConnection, kafka: str | None, client_options: Mapping[str, Any]) -> Backend:
    """The embedded log on ``con``, or the Kafka cluster at ``kafka`` with ``client_options``."""
    if kafka is None:
        return EmbeddedBackend(con)
    return KafkaBackend(KafkaLog(kafka, **client_options), con)
