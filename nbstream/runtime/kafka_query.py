"""Persistent queries between Kafka topics: the engine's runners over the staged Kafka log.

Every runner — stateless (:class:`KafkaQueryRunner`), aggregation (:class:`KafkaAggregateRunner`),
join (:class:`KafkaJoinRunner`), aggregation over a join (:class:`KafkaJoinAggregateRunner`), and
the materialization of a TABLE over a Kafka topic (:class:`KafkaMaterializer`) — is the SQL
micro-batch runner of the embedded log unchanged: each batch is fetched from Kafka into DuckDB
(:class:`~nbstream.log.staged.StagedKafkaLog`) and evaluated; its output is produced to the sink
topic (acks=all) *inside* the batch's DuckDB transaction, which then commits the query's state
and its input offsets together. Once it committed, the input offsets are committed to the
query's consumer group ``nbstream-<query id>`` too (so Kafka tools see the query's lag).

Delivery is **at-least-once**: a crash (or a failed batch that is retried) after the output was
produced but before the DuckDB transaction committed produces that batch's output again when the
query resumes, recomputed from the state before it (which rolled back with the offsets): the same
records, unless input arrived meanwhile and the repeated batch covers more of it — an aggregation
may then write a window's intermediate changes twice with other values, its last change being
right. A TABLE's changelog needs nothing: its latest record per key (and window) is its value. A
STREAM's repeats are the records of the repeated batch again (same key, value and timestamp, after
the ones the batch wrote before the crash). Each output record names the input record that
produced it in the header ``nbstream.source`` (:meth:`KafkaInput.source_sql`, computed in DuckDB
when the batch is produced), so a consumer deduplicates by key and that header.

With ``processing.guarantee`` ``exactly_once_v2`` (:meth:`KafkaInput.guarantee`) the batch's
DuckDB transaction puts its output in an outbox table beside the state and input offsets; once it
committed, the outbox is produced in a Kafka transaction that also commits the input offsets to
the consumer group, then emptied. A crash before the Kafka commit: the next start (whose
InitProducerId aborts the open transaction) finds the group behind the database and delivers the
outbox again; after it: the group is up to date and the outbox is dropped. A broker without
transactions fails the query at start (the test broker refuses them).

Where a query resumes: the offsets in the engine's database, committed with the state. A stateless
query with none there (a new in-memory engine) resumes from its consumer group; a stateful one
starts from the beginning of its inputs, since its state was lost with the database (an engine
with ``path=`` keeps both).

Failures: a broker that does not answer stalls the query — its state is ``STALLED`` and its error
says why — and it retries on each step (the Kafka log fails at once for a second after it found
the broker unreachable, so retries are about a second apart), resuming where it stopped once the
broker is back. A topic of the query that no longer exists fails it: state ``ERROR``, an
:class:`~nbstream.errors.ExecutionError` naming the topic, and no further batches.
"""

from __future__ import annotations

from collections.abc import Mapping

from nbstream.catalog.catalog import PersistentQuery
from nbstream.errors import ExecutionError, LogError, PlanError, did_you_mean
from nbstream.log.base import RECORD_COLUMNS_SQL, RECORD_SCHEMA
from nbstream.log.kafka import BrokerUnavailable, KafkaLog
from nbstream.log.staged import StagedKafkaLog
from nbstream.physical.expressions import quote
from nbstream.runtime.aggregate import AggregateRunner
from nbstream.runtime.join import SIDE_STRIDE, JoinAggregateRunner, JoinRunner
from nbstream.runtime.materialize import Materializer
from nbstream.runtime.query import QueryRunner, Ranges, ranges_size, scaled_batch

#: The state of a query waiting for an unreachable broker.
STALLED = "STALLED"


#: Values of the ``processing.guarantee`` property (ksqlDB's names); the first is the default.
PROCESSING_GUARANTEES = ("at_least_once", "exactly_once_v2")


def consumer_group(query_id: str) -> str:
    """The consumer group holding the committed input offsets of query ``query_id``."""
    return f"nbstream-{query_id}"


def processing_guarantee(value: object) -> str:
    """The ``processing.guarantee`` property's value checked (None: the default), or a PlanError
    naming the near miss."""
    if value is None:
        return PROCESSING_GUARANTEES[0]
    text = str(value).strip().lower()
    if text not in PROCESSING_GUARANTEES:
        raise PlanError(f"processing.guarantee '{value}' is not one of {', '.join(PROCESSING_GUARANTEES)}."
                        f"{did_you_mean(text, PROCESSING_GUARANTEES)}")
    return text


class KafkaInput(QueryRunner):
    """What every runner over Kafka adds to its batches: the consumer group commit after each
    one, stalls while the broker is away, and failure when a topic of the query is gone."""

    log: StagedKafkaLog  # the Kafka backend makes these runners only
    query: PersistentQuery | None = None
    #: Whether input offsets go to a consumer group (a table's materialization keeps them here only).
    commits_group = True
    _failure: str | None = None
    _group_behind = False
    _stalled = False
    #: With exactly_once_v2: the transactional id, and whether the outbox holds output not yet delivered.
    _transactional_id: str | None = None
    _undelivered = False

    @property
    def kafka(self) -> KafkaLog:
        return self.log.kafka

    @property
    def group(self) -> str:
        return consumer_group(self.query_id)

    def report_to(self, query: PersistentQuery) -> None:
        """Show stalls and failures in ``query``'s state (what SHOW QUERIES and status list)."""
        self.query = query

    def positions(self) -> dict[str, dict[int, int]]:
        """The next input offset of every partition read, by topic."""
        return {self.plan.scan.topic: dict(self.offsets)}

    def inputs(self) -> list[str]:
        """The topics the query reads."""
        return [self.plan.scan.topic]

    def topics(self) -> list[str]:
        """The topics the query reads and writes."""
        sink = self.sink
        return [*dict.fromkeys(self.inputs()), *([sink.topic] if sink is not None else [])]

    def source_sql(self) -> str | None:
        """SQL over ``__result`` giving an output row's :data:`~nbstream.log.staged.SOURCE_HEADER`:
        ``topic/partition/offset`` of the input record that produced it (NULL if none is known: an
        EMIT FINAL session); None: rows carry no source header."""
        return f"{self._error_topic_sql()} || '/' || __in_partition || '/' || __in_offset"

    def _partitions(self, topic: str) -> int:
        """The partition count the Kafka log knows since its last listing (no end offsets needed:
        the batch's input listing refreshed it, so a deleted sink is still seen at once)."""
        return self.kafka.partition_count(topic)

    def _write_output(self) -> dict[str, dict[int, int]]:
        """Produce the good rows of ``__result``, each with the header naming its input record —
        or, with exactly_once_v2, add them to the outbox, committed with the batch's state."""
        if self.sink is None:
            return super()._write_output()
        if self._transactional_id is not None:
            records = self.log.records_sql("__result", where="NOT __err", source=self.source_sql())
            self.con.execute(f"INSERT INTO {self._outbox} {records}")
            return {}
        counts = self.log.append_routed(self.sink.topic, "__result", where="NOT __err", source=self.source_sql())
        return {self.sink.topic: counts}

    # -- exactly_once_v2 ---------------------------------------------------------------------------
    @property
    def _outbox(self) -> str:
        return quote(f"outbox${self.query_id}")

    def guarantee(self, value: object) -> None:
        """Apply the ``processing.guarantee`` property. With exactly_once_v2 a query with output
        starts its transactional producer ``nbstream-<query id>`` now — failing here, with the
        broker's refusal, on a broker without transactions — and delivers any output a previous
        run committed to its outbox but not to Kafka."""
        if processing_guarantee(value) != "exactly_once_v2" or self.sink is None or not self.commits_group:
            return
        self.kafka.start_transactions(self.group)
        self._transactional_id = self.group
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {self._outbox} ({RECORD_COLUMNS_SQL})")
        delivered = all(self.kafka.committed_offsets(self.group, topic) == offsets
                        for topic, offsets in self.positions().items() if offsets)
        if delivered:
            self.con.execute(f"DELETE FROM {self._outbox}")
        self._undelivered = not delivered

    def _deliver(self) -> None:
        """The outbox's records and the input offsets, in one Kafka transaction; then empty the
        outbox (a crash before that is recognised at the next start: the group is up to date)."""
        assert self._transactional_id is not None and self.sink is not None
        batch = self.con.sql(f"SELECT * FROM {self._outbox}").to_arrow_table().cast(RECORD_SCHEMA)
        self.kafka.append_transaction(self._transactional_id, self.sink.topic, batch, self.group, self.positions())
        self.con.execute(f"DELETE FROM {self._outbox}")
        self._undelivered = False

    def drop_state(self) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {self._outbox}")
        super().drop_state()

    def step(self) -> int:
        """One micro-batch (0 while stalled or failed); its input offsets go to the consumer group
        once its output is in Kafka and its state committed. With exactly_once_v2: the output the
        batch's DuckDB transaction put in the outbox is delivered in a Kafka transaction with them."""
        if self._failure is not None:
            return 0
        try:
            if self._undelivered:
                self._deliver()
            consumed = super().step()
            if self._transactional_id is not None:
                if consumed:
                    self._undelivered = True
                    self._deliver()
            elif self.commits_group and (consumed or self._group_behind):
                self._group_behind = True
                for topic, offsets in self.positions().items():
                    self.kafka.commit_offsets(self.group, topic, offsets)
                self._group_behind = False
        except BrokerUnavailable as error:
            self._stall(error)
            return 0
        except LogError as error:
            self._fail_if_topic_gone(error)
            raise
        self._resume()
        return consumed

    def describe(self) -> tuple[str, str]:
        """What this runner is, for an error, and how a user ends it once it failed."""
        return f"query {self.query_id}", f"TERMINATE {self.query_id}, or recreate the topic and the query"

    def _stall(self, error: BrokerUnavailable) -> None:
        self._stalled = True
        self.stats.last_error = f"waiting for Kafka (retrying): {error}"
        if self.query is not None and self.query.state == "RUNNING":
            self.query.state = STALLED

    def _resume(self) -> None:
        if not self._stalled:
            return
        self._stalled = False
        self.stats.last_error = None
        if self.query is not None and self.query.state == STALLED:
            self.query.state = "RUNNING"

    def _fail_if_topic_gone(self, error: LogError) -> None:
        """Fail the query for good if one of its topics was deleted (else ``error`` is raised as is)."""
        try:
            gone = [t for t in self.topics() if self.kafka.topic(t) is None]
        except BrokerUnavailable as unavailable:
            self._stall(unavailable)
            return
        if not gone:
            return
        what, remedy = self.describe()
        self._failure = (f"{what} stopped: topic '{gone[0]}' was deleted from Kafka at {self.kafka.bootstrap} "
                         f"while it ran ({remedy})")
        self.stats.last_error = self._failure
        if self.query is not None:
            self.query.state = "ERROR"
        raise ExecutionError(self._failure) from error


#: The most records one batch of a stateless query over Kafka takes: a backlog is worked off in
#: several batches, so that each is fetched while DuckDB evaluates the one before
#: (:meth:`KafkaQueryRunner._prepare`) rather than all of it before any evaluation.
KAFKA_MAX_BATCH = 100_000


class KafkaQueryRunner(KafkaInput):
    """A stateless persistent query from one Kafka topic to another. While a batch is evaluated,
    the next one (what remains of the backlog the batch was cut from, up to :attr:`max_batch`) is
    fetched on the Kafka log's loop (:meth:`~nbstream.log.kafka.KafkaLog.prefetch`)."""

    max_batch = KAFKA_MAX_BATCH
    _following: Ranges | None = None  # the batch after the one being processed, if any
    _listed: Mapping[int, int] = {}  # the input's end offsets at its last listing

    def _ranges(self) -> Ranges:
        """The prefetched batch without listing the input again while the last listing holds
        more (two calls to the broker saved per batch of a backlog); else as over the embedded log."""
        if self._following is not None:
            return self._batch_towards(self._listed)
        return super()._ranges()

    def _batch_towards(self, ends: Mapping[int, int]) -> Ranges:
        """The batch prefetched while the last one was evaluated, if the input still holds it (so
        that arrivals meanwhile do not reshape it and waste the fetch), else as over the embedded
        log; then remembers the batch after it."""
        self._listed = dict(ends)
        following = self._following
        if following is not None and all(a == self.offsets.get(p, 0) and b <= ends.get(p, 0)
                                          for p, (a, b) in following.items()):
            ranges = dict(following)
            self.batch_size = ranges_size(ranges)
        else:
            ranges = super()._batch_towards(ends)
        after = scaled_batch({p: b for p, (_, b) in ranges.items()}, ends, self.max_batch)
        self._following = after if ranges_size(after) else None
        return ranges

    def _prepare(self, ranges: Ranges) -> str:
        """Stage ``ranges`` (fetched now, or taken from the prefetch), then start fetching the next
        batch, which DuckDB's evaluation of this one leaves the loop's thread free for."""
        sql = super()._prepare(ranges)
        if self._following is not None:
            self.kafka.prefetch(self.plan.scan.topic, self._following)
        return sql

    def _load_offsets(self) -> dict[int, int]:
        """The group's committed offsets; offsets the engine's own database holds take precedence
        (they are committed first, so they are never behind the group's)."""
        committed = self.log.kafka.committed_offsets(consumer_group(self.query_id), self.plan.scan.topic)
        return {**committed, **super()._load_offsets()}


class KafkaAggregateRunner(KafkaInput, AggregateRunner):
    """A GROUP BY (windowed or not) over a Kafka topic, its state in the engine's DuckDB."""


def _join_positions(join: JoinRunner, offsets: Mapping[int, int]) -> dict[str, dict[int, int]]:
    """The join's input offsets by topic; a topic read by two sides (a self-join) commits the
    lesser offset of each partition (nothing unprocessed is ever marked consumed)."""
    out: dict[str, dict[int, int]] = {}
    for slot, offset in offsets.items():
        side, partition = divmod(slot, SIDE_STRIDE)
        topic = out.setdefault(join.join.sides[side].scan.topic, {})
        topic[partition] = min(offset, topic.get(partition, offset))
    return out


class KafkaJoinRunner(KafkaInput, JoinRunner):
    """A join of Kafka topics, its tables' and windows' state in the engine's DuckDB."""

    def inputs(self) -> list[str]:
        return [side.scan.topic for side in self.join.sides]

    def positions(self) -> dict[str, dict[int, int]]:
        return _join_positions(self, self.offsets)

    def source_sql(self) -> str | None:
        """The record's place, then ``/n`` for the n-th further row its arrival produced (a window
        join's several matches), so that no two rows of one batch share (key, source)."""
        place = super().source_sql()
        nth = "row_number() OVER (PARTITION BY __side, __in_partition, __in_offset ORDER BY __seq) - 1"
        return f"{place} || CASE WHEN {nth} = 0 THEN '' ELSE '/' || ({nth}) END"


class KafkaJoinAggregateRunner(KafkaInput, JoinAggregateRunner):
    """A GROUP BY over a join of Kafka topics."""

    def inputs(self) -> list[str]:
        return [side.scan.topic for side in self._join.join.sides]

    def positions(self) -> dict[str, dict[int, int]]:
        return _join_positions(self._join, self.offsets)

    def source_sql(self) -> str | None:
        """None: an aggregation over a join folds joined rows, whose input records it does not keep;
        its output is a TABLE, whose latest record per key is its value."""
        return None


class KafkaMaterializer(KafkaInput, Materializer):
    """The materialized state of a TABLE over a Kafka topic (what pull queries read); its offsets
    live in the engine's database only."""

    local = False  # its topic is in Kafka: nothing to hand over in a DuckDB transaction
    commits_group = False

    def _write_output(self) -> dict[str, dict[int, int]]:
        return Materializer._write_output(self)  # into the engine's DuckDB table, not a topic

    def describe(self) -> tuple[str, str]:
        name = self.source.name
        return f"the materialization of table {name}", f"DROP TABLE {name}, or recreate the topic and the table"
