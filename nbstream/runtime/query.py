"""A running query: reads micro-batches of its source topic and commits each one atomically.

The commit order of one micro-batch (:meth:`QueryRunner.step`), all in ONE DuckDB transaction:

1. evaluate the batch into a temporary result (decode, filter, project — in DuckDB);
2. append the good rows, encoded, to the sink topic;
3. append one processing-log record per input record that failed to deserialize;
4. store the next input offset of every partition read.

A batch DuckDB cannot evaluate (an expression failing on some record) is split until the failing
record is alone; that record is logged as a processing error and skipped — unless only the key a
PARTITION BY computes fails on it: then, as in ksqlDB, it is written with a NULL key and the error
is logged.

A crash before the commit loses the whole batch and it is read again on restart; a crash after it
leaves nothing to redo — so every input record reaches the sink exactly once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from nbstream.catalog.schema import WINDOW_BOUNDS
from nbstream.catalog.types import BIGINT, SqlType
from nbstream.errors import ExecutionError
from nbstream.formats.registry_client import RegistryUnavailable, is_outage
from nbstream.log.base import SqlLog, execute_arrow
from nbstream.log.embedded import route_sql
from nbstream.physical.compile import encode_rows_sql, encoded_sql, order_by_sql, result_sql
from nbstream.physical.expressions import quote
from nbstream.plan.logical import OutputColumn, Sink, StatelessPlan
from nbstream.runtime.decoding import decoding_plan
from nbstream.runtime.histogram import Histogram
from nbstream.runtime.processing_log import DESERIALIZATION_ERROR, RECORD_PROCESSING_ERROR
from nbstream.runtime.processing_log import TOPIC as PROCESSING_LOG_TOPIC

if TYPE_CHECKING:
    from nbstream.plan.planner import Plan
    from nbstream.runtime.materialize import Materializer

#: Batch sizing: a batch takes what is pending, at most MAX_BATCH records. Planning one batch
#: statement costs tens of milliseconds whatever its size, so a backlog is worked off in few large
#: batches (throughput) and sparse input in small ones as it arrives (latency). A batch's temporary
#: tables take about 1 KB per record on a windowed aggregation (measured): 250,000 keep it to a
#: quarter of the default memory limit, at 0-5% of the throughput of 500,000 (bench_windowed).
MAX_BATCH = 250_000


@dataclass
class QueryStats:
    """Counters of a query: ``consumed == processed + logged`` after every commit."""

    consumed: int = 0
    processed: int = 0
    logged: int = 0
    emitted: int = 0
    late: int = 0  # records dropped because their window had closed
    expired: int = 0  # EMIT FINAL windows the window store expired before they closed (see runtime.aggregate)
    batches: int = 0
    busy_seconds: float = 0.0
    last_error: str | None = None
    started: float = field(default_factory=time.monotonic)
    batch_seconds: Histogram = field(default_factory=Histogram)  # each micro-batch's duration

    def count_fetched(self, consumed: int, rows: pa.Table) -> pa.Table:
        """Count a push query's batch of ``consumed`` records whose result is ``rows`` (with ``__err``
        and ``__errmsg``: its records in error, which a push query skips); returns the good rows."""
        clean = _none_true(rows.column("__err"))
        errors = rows.slice(0, 0) if clean else rows.filter(pc.field("__err"))
        self.consumed += consumed
        self.logged += errors.num_rows
        self.processed += consumed - errors.num_rows
        self.batches += 1
        if errors.num_rows:
            self.last_error = errors.column("__errmsg")[0].as_py()
        good = (rows if clean else rows.filter(~pc.field("__err"))).drop_columns(["__err", "__errmsg"])
        self.emitted += good.num_rows
        return good


#: Push batches evaluated in full after one whose records did not all take the formats' fast path.
FAST_RETRY_BATCHES = 10


def _none_true(flags: pa.ChunkedArray) -> bool:
    """Whether every flag is false (none true, none NULL)."""
    return flags.null_count == 0 and not pc.any(flags).as_py()


@dataclass(frozen=True)
class ResultShape:
    """The rows a push query's :meth:`QueryRunner.fetch_rows` returns, besides ``ROWTIME`` and
    ``__deleted``: their columns in order, the key columns, whether they are a table's changes
    (keyed upserts and tombstones), the query's LIMIT and each column's ksqlDB type (``types``,
    parallel to ``columns``; empty where unknown)."""

    columns: tuple[str, ...]
    keys: tuple[str, ...]
    is_table: bool
    limit: int | None
    types: tuple[SqlType, ...] = ()
    selected: tuple[str, ...] = ()

    @property
    def ksql_order(self) -> tuple[int, ...]:
        """The positions in :attr:`columns` of the columns ksqlDB's push query returns, in its
        order: the query's SELECT's (:attr:`selected`; :mod:`nbstream.runtime.selected`), or all."""
        if not self.selected:
            return tuple(range(len(self.columns)))
        return tuple(self.columns.index(name) for name in self.selected)

    @classmethod
    def of(cls, columns: Sequence[OutputColumn], *, window: bool, keys_first: bool, is_table: bool,
           limit: int | None) -> ResultShape:
        """The shape of rows holding ``columns``: with ``keys_first`` the key columns, then
        ``WINDOWSTART``/``WINDOWEND`` (BIGINT) if ``window``, then the others; else in their order."""
        keys = [(c.name, c.type) for c in columns if c.role == "KEY"]
        keys += [(name, BIGINT) for name in WINDOW_BOUNDS] if window else []
        ordered = keys + [(c.name, c.type) for c in columns if c.role != "KEY"] if keys_first \
            else [(c.name, c.type) for c in columns]
        return cls(tuple(n for n, _ in ordered), tuple(n for n, _ in keys), is_table, limit,
                   tuple(t for _, t in ordered))


class QueryRunner:
    """Runs one plan over the embedded log, persistently (a sink) or transiently (rows out)."""

    #: The most records one batch of a stateless query takes (see MAX_BATCH).
    max_batch = MAX_BATCH

    def __init__(self, query_id: str, plan: StatelessPlan, con: duckdb.DuckDBPyConnection,
                 log: SqlLog, *, start_at_end: bool = False) -> None:
        self.query_id = query_id
        self.plan = plan
        self.con = con
        self.log = log
        self.stats = QueryStats()
        self.batch_size = 0
        self._decoding = decoding_plan(plan)  # the plan the batch's SQL is made of
        self._batch_sql = result_sql(self._decoding, "__batch")  # the batch view's contents change, not its SQL
        self._fast_batch_sql: str | None = None  # the same decoded on the formats' fast paths (fetch_rows)
        self._fast_skips = 0  # batches to evaluate in full before trying the fast path again
        self.offsets = self._load_offsets()
        if start_at_end and not self.offsets:
            self.offsets = dict(self.log.require(plan.scan.topic).end_offsets)
        self._make_codecs()

    def _make_codecs(self) -> None:
        """Create the functions the sink's records are encoded with (a schema-registry format's
        encoder) now, outside any batch's transaction: DuckDB's catalog is transactional, so one
        created inside the first batch would vanish when a bad record rolls that batch back, and
        one created beside it would not be seen by it (see :mod:`nbstream.catalog.duck_functions`)."""
        if self.sink is not None:
            encode_rows_sql(self.sink, self.query_plan.columns, "__none")

    # -- offsets ---------------------------------------------------------------------------------
    @property
    def sink(self) -> Sink | None:
        """Where the query writes (None: a transient query, whose rows are fetched)."""
        return self.plan.sink

    @property
    def query_plan(self) -> Plan:
        """The whole plan this runner runs (what EXPLAIN shows)."""
        return self.plan

    @property
    def persistent(self) -> bool:
        """Whether input offsets are committed (a transient push query keeps them in memory)."""
        return self.sink is not None

    def _load_offsets(self) -> dict[int, int]:
        if not self.persistent:
            return {}
        rows = self.con.execute(
            "SELECT \"partition\", next_offset FROM __offsets WHERE query_id = ?", [self.query_id]
        ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def drop_state(self) -> None:
        """Forget what this query kept (it was terminated or replaced): its input offsets here;
        stateful runners drop their state tables too."""
        self.con.execute("DELETE FROM __offsets WHERE query_id = ?", [self.query_id])

    def pending(self) -> int:
        """Input records not yet processed."""
        info = self.log.topic(self.plan.scan.topic)
        if info is None:
            return 0
        return sum(max(0, end - self.offsets.get(p, 0)) for p, end in info.end_offsets.items())

    def _ranges(self) -> Ranges:
        """The next batch: each partition's backlog, scaled down to MAX_BATCH records in all.

        Shares follow the backlogs, so uneven partitions drain in the same batches rather than
        leaving a tail of small ones (each batch pays for planning its statement)."""
        return self._batch_towards(self.log.require(self.plan.scan.topic).end_offsets)

    def _batch_towards(self, ends: Mapping[int, int]) -> Ranges:
        """The next batch from :attr:`offsets` towards the end offsets ``ends`` (see :meth:`_ranges`)."""
        ranges = scaled_batch(self.offsets, ends, self.max_batch)
        self.batch_size = ranges_size(ranges)
        return ranges

    # -- one micro-batch ---------------------------------------------------------------------------
    def step(self) -> int:
        """Process one micro-batch; returns the number of input records consumed (0: idle)."""
        ranges = self._ranges()
        count = ranges_size(ranges)
        if count == 0:
            return 0
        started = time.perf_counter()
        self._process(ranges)
        elapsed = time.perf_counter() - started
        self.stats.busy_seconds += elapsed
        self.stats.batch_seconds.observe(elapsed)
        return count

    def feed(self, materializer: Materializer) -> None:
        """``materializer`` keeps the state of the TABLE this query writes. A runner that can hand it
        its output rows typed, sparing it their decoding, keeps it (see :class:`AggregateRunner`)."""

    def _process(self, ranges: Ranges) -> None:
        """Commit ``ranges`` as one batch. If DuckDB fails to evaluate it, split it in halves until
        each failing record is alone, and log that record instead: a bad record never stops the
        query. (Only failing batches are split, so the hot path stays one statement per batch.)
        An unreachable schema registry is no record's fault: the batch is left for a retry
        (:class:`~nbstream.formats.registry_client.RegistryUnavailable`)."""
        try:
            with self.log.transaction(self.con) as appended:
                appended.update(self._commit_batch(self._prepare(ranges), ranges))
        except duckdb.Error as error:
            message = _duckdb_message(error)
            self._raise_if_outage(error)
            if not isinstance(error, RECORD_ERRORS):
                raise ExecutionError(f"query {self.query_id} failed; its batch was not committed and will be "
                                     f"retried: {message}") from error
            if ranges_size(ranges) > 1:
                for half in self._halves(ranges):
                    self._process(half)
                return
            self._commit_failing_record(ranges, message)
        self.offsets.update({p: b for p, (_, b) in ranges.items()})

    def _raise_if_outage(self, error: duckdb.Error) -> None:
        """:class:`RegistryUnavailable` if DuckDB failed because the schema registry did not answer."""
        message = _duckdb_message(error)
        if is_outage(message):
            raise RegistryUnavailable(f"query {self.query_id} waits: {message}") from error

    def _halves(self, ranges: Ranges) -> tuple[Ranges, Ranges]:
        """Two batches covering ``ranges`` in processing order (to isolate a failing record)."""
        return _halves(ranges)

    def _prepare(self, ranges: Ranges) -> str:
        """Point the ``__batch`` view at ``ranges``; returns the SQL evaluating the batch."""
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW __batch AS {self.log.relation(self.plan.scan.topic, ranges)}")
        return self._batch_sql

    def _commit_failing_record(self, ranges: Ranges, message: str) -> None:
        """Commit the one record of ``ranges``, on which DuckDB failed with ``message``: written with
        a NULL key where only the key its PARTITION BY computes fails (ksqlDB's
        ``PartitionByParamsFactory`` logs the error and keys the record NULL), else logged instead."""
        null_keyed = self._null_keyed_sql()
        if null_keyed is not None:
            try:
                with self.log.transaction(self.con) as appended:
                    self._commit_null_keyed_record(null_keyed, ranges, message, appended)
                return
            except RECORD_ERRORS:
                pass  # another expression fails on the record too: it is logged instead of written
        with self.log.transaction(self.con) as appended:
            appended.update(self._commit_failed_record(ranges, message))

    def _commit_null_keyed_record(self, sql: str, ranges: Ranges, message: str,
                                  appended: dict[str, dict[int, int]]) -> None:
        """Write the record of ``ranges`` as ``sql`` (:meth:`_null_keyed_sql`) evaluates it, and log
        why its key is NULL."""
        self._prepare(ranges)
        appended.update(self._commit_batch(sql, ranges))
        keys = ", ".join(c.expression or c.name for c in self.plan.columns if c.role == "KEY")
        logged = self._log_record_error(ranges, f"Error computing new key from expression {keys}: {message}")
        appended[PROCESSING_LOG_TOPIC] = _summed(appended.get(PROCESSING_LOG_TOPIC, {}), logged)

    def _null_keyed_sql(self) -> str | None:
        """The batch's SQL with each key a PARTITION BY computes NULL where its expression fails;
        None for a query that keeps its input's key, or whose runner evaluates batches its own way."""
        plan = self.plan
        if plan.key_from_source or type(self)._prepare is not QueryRunner._prepare or \
                type(self)._evaluate is not QueryRunner._evaluate:
            return None
        columns = tuple(replace(c, sql=f"TRY({c.sql})") if c.role == "KEY" else c for c in plan.columns)
        return result_sql(replace(self._decoding, columns=columns), "__batch")

    def _commit_failed_record(self, ranges: Ranges, message: str) -> dict[str, dict[int, int]]:
        written = {PROCESSING_LOG_TOPIC: self._log_record_error(ranges, message)}
        self._commit_offsets(ranges)
        self.stats.consumed += 1
        self.stats.logged += 1
        return written

    def _log_record_error(self, ranges: Ranges, message: str) -> dict[int, int]:
        """Append a processing error ``message`` about the one record of ``ranges`` to the processing log."""
        [(slot, (offset, _))] = [(p, r) for p, r in ranges.items() if r[1] > r[0]]
        side, partition = self._locate(slot)
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE __result AS SELECT TRUE AS __err, ? AS __errmsg,
                {partition} AS __in_partition, {offset}::BIGINT AS __in_offset, {side} AS __side""",
            [message],
        )
        self.stats.last_error = message
        return self._log_errors(RECORD_PROCESSING_ERROR)

    def _commit_batch(self, sql: str, ranges: Ranges) -> dict[str, dict[int, int]]:
        con = self.con
        self._evaluate(sql)
        bad, good, bad_ts = con.execute(
            "SELECT count(*) FILTER (__err), count(*) FILTER (NOT __err AND NOT __deleted), "
            "count(*) FILTER (__bad_ts) FROM __result"
        ).fetchall()[0] or (0, 0, 0)
        if bad_ts and self.plan.scan.throw_on_invalid_timestamp:
            raise ExecutionError(f"Fatal user code error in TimestampExtractor callback for record of "
                                 f"{self.plan.scan.topic}: the timestamp is NULL or negative")
        written = self._write_output()
        if bad:
            written[PROCESSING_LOG_TOPIC] = self._log_errors(DESERIALIZATION_ERROR)
        self._commit_offsets(ranges)
        consumed = ranges_size(ranges)
        self.stats.consumed += consumed
        self.stats.logged += bad
        self.stats.processed += consumed - bad
        self.stats.emitted += good
        self.stats.batches += 1
        return written

    def _commit_offsets(self, ranges: Ranges) -> None:
        if self.persistent:
            store_offsets(self.con, [(self.query_id, p, b) for p, (_, b) in ranges.items()])

    def _evaluate(self, sql: str) -> None:
        """Fill the temp table ``__result`` with what the batch evaluated by ``sql`` yields: the
        rows to append (and, with ``__err``, the records to log). Runs inside the batch's
        transaction, so a stateful subclass may update its state here too."""
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE __result AS {self._stage_sql(sql)}")

    def _stage_sql(self, sql: str) -> str:
        """What ``__result`` holds for a batch evaluated by ``sql``: for a sink, the rows already
        encoded as records and routed to partitions (one pass, not three)."""
        if self.plan.sink is None:
            return sql
        partitions = self._partitions(self.plan.sink.topic)
        return f"SELECT {route_sql(partitions)} AS p, * FROM ({encoded_sql(self.plan, f'({sql})')})"

    def _partitions(self, topic: str) -> int:
        """The partition count of ``topic`` (the sink's: output rows are routed by it)."""
        return self.log.require(topic).partitions

    def _write_output(self) -> dict[str, dict[int, int]]:
        """Write the good rows of ``__result`` where the query's output goes; rows per topic."""
        if self.sink is None:
            return {}
        counts = self.log.append_routed(self.sink.topic, "__result", where="NOT __err")
        return {self.sink.topic: counts}

    def _locate(self, slot: int) -> tuple[int, int]:
        """The (input, partition) a key of :data:`Ranges` stands for: one input, keyed by partition."""
        return 0, slot

    def _error_topic_sql(self) -> str:
        """SQL naming the input topic of a row of ``__result`` in error (for the processing log)."""
        return "'" + self.plan.scan.topic.replace("'", "''") + "'"

    def _log_errors(self, error_type: int) -> dict[int, int]:
        topic = self._error_topic_sql()
        qid = self.query_id.replace("'", "''")
        return self.log.append_relation(
            PROCESSING_LOG_TOPIC,
            f"""(SELECT NULL::INTEGER AS "partition", epoch_ms(now()) AS ts, NULL::BLOB AS "key",
                 encode(to_json({{'LOGGER': '{qid}', 'LEVEL': 'ERROR', 'TIME': epoch_ms(now()),
                   'MESSAGE': {{'TYPE': {error_type}, 'ERRORMESSAGE': __errmsg, 'TOPIC': {topic},
                                'PARTITION': __in_partition, 'OFFSET': __in_offset}}}})::VARCHAR) AS "value",
                 NULL AS headers, NULL::BIGINT AS win_start, NULL::BIGINT AS win_end,
                 NULL::VARCHAR AS win_type, __in_offset AS __seq FROM __result WHERE __err)""",
            commit=False,
        )

    @property
    def result_shape(self) -> ResultShape:
        """Key columns, ``WINDOWSTART``/``WINDOWEND`` when the rows keep the key of a windowed
        source (the window is part of the key, as in ksqlDB's results), then the values."""
        plan = self.plan
        has_key = any(c.role == "KEY" for c in plan.columns)
        return ResultShape.of(plan.columns, window=plan.scan.windowed and plan.key_from_source and has_key,
                              keys_first=True, is_table=plan.emits_table, limit=plan.limit)

    def fetch_rows(self) -> pa.Table | None:
        """For a push query: process one batch and return its result rows — ``ROWTIME``,
        ``__deleted`` (a tombstone), then :attr:`result_shape`'s columns, in output order — without
        the batch's records in error, which are counted (None: idle). An unreachable schema
        registry raises :class:`RegistryUnavailable` and leaves the batch to the next call."""
        ranges = self._ranges()
        if ranges_size(ranges) == 0:
            return None
        sql = self._prepare(ranges)
        rows = self._fast_rows()
        if rows is None:
            try:
                with self.log.transaction(self.con, appends=False):  # with the state a stateful push query keeps
                    rows = self._batch_rows(sql)
            except duckdb.Error as error:
                self._raise_if_outage(error)
                raise
        self.offsets.update({p: b for p, (_, b) in ranges.items()})
        return self.stats.count_fetched(ranges_size(ranges), rows)

    def _fast_rows(self) -> pa.Table | None:
        """The rows of :meth:`_batch_rows` for a query that keeps no state, evaluated with the
        formats' fast decoding (a statement DuckDB binds several times faster), if every record
        of the batch took the fast path; None: evaluate the batch in full. It runs outside a
        transaction, so that the full evaluation may follow whatever it met. After a batch that
        missed, the next :data:`FAST_RETRY_BATCHES` are evaluated in full at once (records that
        take the slow path, such as fields often left out, seldom come alone)."""
        if type(self)._batch_rows is not QueryRunner._batch_rows:  # a stateful runner's batch updates state
            return None
        if self._fast_skips > 0:
            self._fast_skips -= 1
            return None
        if self._fast_batch_sql is None:
            self._fast_batch_sql = result_sql(self._decoding, "__batch", fast=True)
        if self._fast_batch_sql == self._batch_sql:  # no fast path in these formats
            return None
        try:
            rows: pa.Table | None = self._batch_rows(self._fast_batch_sql)
        except duckdb.Error:
            rows = None
        if rows is not None and _none_true(rows.column("__err")):
            return rows
        self._fast_skips = FAST_RETRY_BATCHES
        return None

    def _batch_rows(self, sql: str) -> pa.Table:
        """The rows :meth:`fetch_rows` returns for the batch ``sql`` evaluates, with ``__err`` and
        ``__errmsg``; a stateful runner updates its state here."""
        window = {"WINDOWSTART": "__ws", "WINDOWEND": "__we"}
        names = ", ".join(f"{window[name]} AS {quote(name)}" if name in window else quote(name)
                          for name in self.result_shape.columns)
        return arrow_of(self.con, f"SELECT __err, __errmsg, __ts AS ROWTIME, __deleted, {names} FROM ({sql}) "
                                  f"ORDER BY {order_by_sql(self.plan)}")



def arrow_of(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """The rows of ``sql`` as an Arrow table, by one ``execute`` (see :func:`execute_arrow`): a
    temporary table read back by ``con.sql`` cost two more statements, and catalog changes."""
    return execute_arrow(con, sql)


Ranges = dict[int, tuple[int, int]]

#: DuckDB errors a record's values cause (a failed cast, a number out of range, a function refusing
#: its argument): the batch is split to find the record, which goes to the processing log. Any other
#: error (binding, catalog, internal) is not the record's doing and fails the query instead — else
#: every record would be logged as bad and the query would look healthy.
RECORD_ERRORS = (duckdb.DataError, duckdb.InvalidInputException)


def store_offsets(con: duckdb.DuckDBPyConnection, rows: Sequence[tuple[str, int, int]]) -> None:
    """Upsert (query id, partition, next offset) ``rows`` into ``__offsets`` in one statement
    (``executemany`` costs a statement per row, and a batch commits every partition's)."""
    if rows:
        marks = ", ".join("(?, ?, ?)" for _ in rows)
        con.execute(f"INSERT OR REPLACE INTO __offsets VALUES {marks}", [v for row in rows for v in row])


def ranges_size(ranges: Ranges) -> int:
    """The records ``ranges`` hold."""
    return sum(b - a for a, b in ranges.values())



def scaled_batch(offsets: Mapping[int, int], ends: Mapping[int, int], limit: int) -> Ranges:
    """The batch from ``offsets`` towards ``ends``: each partition's backlog, scaled down to about
    ``limit`` records in all (shares follow the backlogs)."""
    backlog = {p: max(0, end - offsets.get(p, 0)) for p, end in ends.items()}
    total = sum(backlog.values())
    scale = 1.0 if total <= limit else limit / total
    return {p: (offsets.get(p, 0), offsets.get(p, 0) + math.ceil(n * scale)) for p, n in backlog.items()}


def _halves(ranges: Ranges) -> tuple[Ranges, Ranges]:
    """Two batches that cover ``ranges`` in order: partitions split in two, or one range halved."""
    busy = [p for p, (a, b) in ranges.items() if b > a]
    if len(busy) > 1:
        first = set(busy[: len(busy) // 2])
        return ({p: ranges[p] for p in busy if p in first}, {p: ranges[p] for p in busy if p not in first})
    a, b = ranges[busy[0]]
    middle = (a + b) // 2
    return {busy[0]: (a, middle)}, {busy[0]: (middle, b)}


def arrival_prefix(con: duckdb.DuckDBPyConnection, log: SqlLog, ranges: Ranges, topics: Mapping[int, str],
                   limit: int, stride: int) -> Ranges:
    """The part of ``ranges`` holding their first ``limit`` records in the log's arrival order
    (``append_no``, ``append_seq``). A slot of ``ranges`` is ``input * stride + partition``; ``topics``
    names each input's topic."""
    pending = " UNION ALL ".join(
        f"SELECT {base} * {stride} + \"partition\" AS slot, \"offset\", append_no, append_seq "
        f"FROM {log.relation(topic, {s - base * stride: r for s, r in ranges.items() if s // stride == base})}"
        for base, topic in topics.items())
    rows = con.execute(f"""SELECT slot, max("offset") + 1 FROM (SELECT * FROM ({pending})
        ORDER BY append_no, append_seq LIMIT {limit}) GROUP BY slot""").fetchall()
    cut = {int(s): int(e) for s, e in rows}
    return {s: (a, cut.get(s, a)) for s, (a, _) in ranges.items()}


def arrival_halves(con: duckdb.DuckDBPyConnection, log: SqlLog, ranges: Ranges, topics: Mapping[int, str],
                   stride: int) -> tuple[Ranges, Ranges]:
    """The first half of ``ranges`` in arrival order, and the rest (see :func:`arrival_prefix`)."""
    first = arrival_prefix(con, log, ranges, topics, ranges_size(ranges) // 2, stride)
    return first, {s: (first[s][1], b) for s, (_, b) in ranges.items()}


def _summed(a: Mapping[int, int], b: Mapping[int, int]) -> dict[int, int]:
    """Records appended per partition, of ``a`` and ``b`` together."""
    return {p: a.get(p, 0) + b.get(p, 0) for p in {*a, *b}}


def _duckdb_message(error: Exception) -> str:
    return str(error).split("\n")[0]
