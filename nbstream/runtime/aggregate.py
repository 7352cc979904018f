"""A running aggregation: micro-batches folded into per-group state, with ksqlDB's changelog.

Each batch, inside the one transaction of :class:`~nbstream.runtime.query.QueryRunner`:

1. ``__pre``: the source's records decoded, filtered (WHERE) and projected to group values and
   aggregate arguments (the plan's ``pre``);
2. ``__rows``: the rows to fold, in arrival order (``__pos``). A TABLE's change becomes a retraction
   of its previous row (``__sign`` -1) and the addition of the new one (+1). Windows are assigned
   (a hopping window repeats a row per window) and rows whose window closed before they arrived —
   by the stream time of the batch's task (its input partition), the largest record time that
   partition has given the query — are dropped and counted late;
3. ``__out``: the changelog. EMIT CHANGES: one row per input row and window, the running aggregate
   of the batch (DuckDB window functions ordered by ``__pos``) merged with the stored state; a
   table row that stays in its group writes only its addition. EMIT FINAL: the batch is grouped,
   merged into the state, and every window of the task whose end the close time (stream time -
   grace) has reached is written once, unless its retention expired it first (Kafka Streams'
   emit-on-window-close: see :meth:`AggregateRunner._fold_final`). HAVING turns a row
   into a tombstone if the group's previous result passed, else drops it;
4. the state table ``agg$<query>`` takes each group's last value, tagged with the task that wrote
   it; the task's closed windows leave it.

SESSION windows fold differently (:mod:`nbstream.runtime.session`): their state is the live sessions
and their rows, and ``__changes`` comes from an ordered merge instead of steps 2-3's running windows.

Nothing here loops over records in Python: every step is one DuckDB statement over the batch.
"""

from __future__ import annotations

import logging

import duckdb
import pyarrow as pa

from nbstream.errors import UnsupportedError
from nbstream.log.base import SqlLog
from nbstream.log.embedded import route_sql
from nbstream.physical.aggregates import fill
from nbstream.physical.compile import CONTROL_COLUMNS, SEQ_SQL, encode_rows_sql
from nbstream.physical.expressions import quote
from nbstream.plan.aggregate import AggregatePlan
from nbstream.plan.logical import Sink
from nbstream.runtime import stream_time
from nbstream.runtime.materialize import Materializer, state_columns
from nbstream.runtime.query import MAX_BATCH, QueryRunner, Ranges, ResultShape, arrival_halves, arrival_prefix
from nbstream.runtime.session import SessionFold

log = logging.getLogger(__name__)

#: Column types whose values a JSON or KAFKA record gives back exactly as DuckDB holds them.
_EXACT_TYPES = frozenset({"BOOLEAN", "INTEGER", "BIGINT", "DOUBLE", "DECIMAL", "STRING"})

#: The task (``__task``, stream-time clock) of a windowed aggregation folding all partitions at once.
ONE_TASK = -1
#: Slot stride for :func:`~nbstream.runtime.query.arrival_prefix` over the one input (slot = partition).
ONE_INPUT = 1 << 20


#: The Kafka headers of the batch's records that have any, by record: a changelog record carries those
#: of the input record that made it, as Kafka Streams forwards them.
_HEADERS_SQL = ("SELECT __in_partition AS __hp, __in_offset AS __ho, __headers FROM __pre "
                "WHERE len(__headers) > 0")


class AggregateRunner(QueryRunner):
    """Runs an :class:`AggregatePlan`; its state lives in ``agg$<query_id>`` and ``__stream_time``."""

    def __init__(self, query_id: str, plan: AggregatePlan, con: duckdb.DuckDBPyConnection, log: SqlLog, *,
                 start_at_end: bool = False) -> None:
        self.aggregate = plan
        self.state = quote(f"agg${query_id}")
        self.previous = quote(f"prev${query_id}")
        # a push query's state lives only as long as its connection: temporary tables
        self._table = "TABLE" if plan.sink is not None else "TEMP TABLE"
        if plan.sink is None and plan.window is not None and plan.window.kind == "SESSION":
            raise UnsupportedError("push queries over SESSION windows are not supported yet: "
                                   "CREATE TABLE … AS SELECT it, then push-query the table")
        super().__init__(query_id, plan.pre, con, log, start_at_end=start_at_end)
        self._groups = [g.name for g in plan.groups]
        self._slots = [(j, k, slot) for j, call in enumerate(plan.calls) for k, slot in enumerate(call.aggregate.slots)]
        self._partition = 0  # the task of the current batch: its input partition, or ONE_TASK (see _ranges)
        #: Windows whose groups span input partitions (not the source's key) fold as one task over all
        #: partitions in arrival order, as ksqlDB's repartition topic would feed them.
        self._one_task = plan.window is not None and not plan.keyed_by_source and not plan.table_keys
        self._spans_partitions = False  # whether the current batch is one task over several partitions
        self._sessions: SessionFold | None = None
        self._materializer: Materializer | None = None  # of the TABLE written, if rows go to it typed (feed)
        self._handed: dict[int, int] | None = None  # the topic's ends the current batch's rows were handed to
        self._outputs = {c.name for c in plan.columns}
        if plan.window is not None and plan.window.kind == "SESSION":
            types = {c.name: c.type.duckdb() for c in plan.pre.columns}
            self._sessions = SessionFold(query_id, plan, con, self.state, types)
        self._create_state()

    @property
    def sink(self) -> Sink | None:
        return self.aggregate.sink

    # -- the table's state, handed over typed ------------------------------------------------------
    def feed(self, materializer: Materializer) -> None:
        """Keep ``materializer`` (of this query's TABLE) if the rows it would decode from the topic are
        ``__out``'s as they are: a local topic, JSON values, JSON or KAFKA keys, the record time
        the changelog's, scalar columns, time windows (sessions replace rows by their bounds)."""
        sink, window = self.aggregate.sink, self.aggregate.window
        exact = sink is not None and materializer.local and sink.value_format == "JSON" \
            and sink.key_format in ("JSON", "KAFKA") and sink.timestamp is None \
            and (window is None or window.kind != "SESSION") \
            and all(c.type.name in _EXACT_TYPES for c in self.aggregate.columns)
        self._materializer = materializer if exact else None

    def _write_output(self) -> dict[str, dict[int, int]]:
        """Append the changelog; if the table's materializer has read its topic to the end, hand it
        the changelog's rows typed instead of leaving it to decode them."""
        materializer, sink = self._materializer, self.aggregate.sink
        if materializer is None or sink is None:
            return super()._write_output()
        ends = dict(self.log.require(sink.topic).end_offsets)
        follows = materializer.follows(ends)
        written = super()._write_output()
        if follows:
            counts = written.get(sink.topic, {})
            self._handed = {p: end + counts.get(p, 0) for p, end in ends.items()}
            materializer.take(self._typed_rows_sql(materializer), "__pos DESC", self._handed)
        return written

    def _typed_rows_sql(self, materializer: Materializer) -> str:
        """``__out``'s rows as the table's records (what :meth:`_result_sql` encodes), typed."""
        bounds = {"WINDOWSTART": "__ws", "WINDOWEND": "__we"}
        cols = ", ".join(f"{bounds[c.name]} AS {quote(c.name)}" if c.name in bounds and c.name not in self._outputs
                         else quote(c.name) for c in state_columns(materializer.source))
        return f"""(SELECT {cols}, __tomb OR NOT __pass AS __deleted, __out_ts AS __ts, __pos FROM __out
                    WHERE __tomb OR __pass OR coalesce(__passed_before, FALSE))"""

    def _process(self, ranges: Ranges) -> None:
        self._handed = None
        super()._process(ranges)
        if self._handed is not None and self._materializer is not None:
            self._materializer.took(self._handed)
            self._handed = None

    @property
    def query_plan(self) -> AggregatePlan:
        return self.aggregate

    # -- state -----------------------------------------------------------------------------------------
    def _create_state(self) -> None:
        con = self.con
        stream_time.create_clocks(con, temporary=self.aggregate.sink is None)
        if self._sessions is not None:
            self._sessions.create_state()
            return
        groups = ", ".join(f"{quote(g.name)} {g.type.duckdb()}" for g in self.aggregate.groups)
        slots = ", ".join(f"__s{j}_{k} {slot.type}" for j, k, slot in self._slots)
        con.execute(f"CREATE {self._table} IF NOT EXISTS {self.state} ({groups}, __ws BIGINT, __we BIGINT, {slots}, "
                    "__ts BIGINT, __pass BOOLEAN, __task INTEGER)")
        con.execute(f"ALTER TABLE {self.state} ADD COLUMN IF NOT EXISTS __task INTEGER")  # state from before tasks
        if self.aggregate.table_keys:
            cols = ", ".join(f"{quote(c.name)} {c.type.duckdb()}" for c in self.plan.columns)
            con.execute(f"CREATE {self._table} IF NOT EXISTS {self.previous} ({cols})")

    @property
    def _running_changes(self) -> bool:
        """Whether ``__changes`` comes from :meth:`_running_sql` (EMIT CHANGES over time windows or none)."""
        return not self.aggregate.emit_final and self._sessions is None

    @property
    def result_shape(self) -> ResultShape:
        return ResultShape.of(self.aggregate.columns, window=self.aggregate.window is not None, keys_first=True,
                              is_table=True, limit=self.aggregate.limit)

    def _batch_rows(self, sql: str) -> pa.Table:
        """A push query's batch folded: its changelog rows (``ROWTIME``, ``__deleted`` — a tombstone —,
        the result's key columns, WINDOWSTART/WINDOWEND if windowed, then its values) in changelog
        order, and the batch's records in error."""
        self._evaluate(sql)
        window = ', __ws AS "WINDOWSTART", __we AS "WINDOWEND"' if self.aggregate.window is not None else ""
        keys = [quote(c.name) for c in self.aggregate.columns if c.role == "KEY"]
        values = [quote(c.name) for c in self.aggregate.columns if c.role != "KEY"]
        return self.con.sql(f"""SELECT __err, __errmsg, __ts AS ROWTIME, __deleted, {", ".join(keys)}{window},
                                       {", ".join(values)}
                                FROM __result ORDER BY __pos""").to_arrow_table()

    # -- batches: one input partition at a time ------------------------------------------------------
    def _ranges(self) -> Ranges:
        """The next batch: the backlog of ONE input partition (the largest), up to MAX_BATCH records.

        Stream time is kept per input partition, as Kafka Streams keeps it per task, so records of
        one partition are never judged late by another's clock; and a one-partition batch is stored
        in arrival order, which lets stream time be a running max without a sort (see _rows_sql).
        A windowed aggregation whose groups span partitions is one task instead: its batch is the
        first MAX_BATCH pending records of all partitions in arrival order, under one clock."""
        info = self.log.require(self.plan.scan.topic)
        start = {p: self.offsets.get(p, 0) for p in info.end_offsets}
        backlog = {p: end - start[p] for p, end in info.end_offsets.items()}
        self._spans_partitions = self._one_task and len(backlog) > 1
        if self._spans_partitions:
            self._partition = ONE_TASK
            ranges = {p: (start[p], end) for p, end in info.end_offsets.items()}
            self.batch_size = min(MAX_BATCH, sum(backlog.values()))
            if sum(backlog.values()) <= MAX_BATCH:
                return ranges
            return arrival_prefix(self.con, self.log, ranges, {0: self.plan.scan.topic}, MAX_BATCH, ONE_INPUT)
        self._partition = max(backlog, key=lambda p: (backlog[p], -p))
        self.batch_size = min(MAX_BATCH, backlog[self._partition])
        return {p: (a, a + (self.batch_size if p == self._partition else 0)) for p, a in start.items()}

    def _halves(self, ranges: Ranges) -> tuple[Ranges, Ranges]:
        if self._spans_partitions:
            return arrival_halves(self.con, self.log, ranges, {0: self.plan.scan.topic}, ONE_INPUT)
        return super()._halves(ranges)

    def _stream_time_key(self) -> str:
        return f"{self.query_id}/{self._partition}"

    def _stream_time(self) -> int:
        return stream_time.load(self.con, self._stream_time_key())

    def drop_state(self) -> None:
        """Forget this query's state (the query was dropped)."""
        self.con.execute(f"DROP TABLE IF EXISTS {self.state}")
        self.con.execute(f"DROP TABLE IF EXISTS {self.previous}")
        if self._sessions is not None:
            self._sessions.drop_state()
        self.con.execute("DELETE FROM __stream_time WHERE starts_with(query_id, ?)", [f"{self.query_id}/"])
        super().drop_state()

    # -- one batch ----------------------------------------------------------------------------------------
    def _evaluate(self, sql: str) -> None:
        con = self.con
        con.execute(f"CREATE OR REPLACE TEMP TABLE __pre AS {sql}")
        if self.aggregate.table_keys:  # they read the rows remembered so far: materialized before the update
            con.execute(f"CREATE OR REPLACE TEMP TABLE __table_changes AS {self._input_sql()}")
            con.execute("CREATE OR REPLACE TEMP VIEW __in AS SELECT * FROM __table_changes")
        else:
            con.execute(f"CREATE OR REPLACE TEMP VIEW __in AS {self._input_sql()}")
        if self.aggregate.table_keys:
            self._remember_rows()
        before = self._stream_time()
        if self._sessions is not None:
            late, st = self._sessions.fold(before, self.aggregate.emit_final, self._partition,
                                           cached=self._through_cache)
            self.stats.late += late
            self.stats.expired += self._sessions.expired
            self._emit(st)
            return
        stats = "SELECT sum(__nlate), max(__st), count(*) FILTER (__step <= 0) FROM __rows"
        streamed = not self._spans_partitions
        con.execute(f"CREATE OR REPLACE TEMP TABLE __rows AS {self._rows_sql(before, streamed=streamed)}")
        late, after, unordered = con.execute(stats).fetchall()[0]
        if unordered:  # not stored in arrival order after all: sort
            con.execute(f"CREATE OR REPLACE TEMP TABLE __rows AS {self._rows_sql(before, streamed=False)}")
            late, after, _ = con.execute(stats).fetchall()[0]
        self.stats.late += int(late or 0)
        st = before if after is None else max(before, int(after))
        if self.aggregate.emit_final:
            self._fold_final(st)
        else:
            # read once, by the projection: a view, so that the two run as one pipeline
            changes_sql = self._cached_sql() if self._pre_aggregates else self._running_sql()
            con.execute(f"CREATE OR REPLACE TEMP VIEW __running AS {changes_sql}")
        changes = "__changes" if self.aggregate.emit_final else "__running"
        con.execute(f"CREATE OR REPLACE TEMP TABLE __out AS {self._projected_sql(changes)}")
        if not self.aggregate.emit_final:
            self._store_last()
        self._close_windows(st)
        self._save_stream_time(st)
        con.execute(f"CREATE OR REPLACE TEMP TABLE __result AS {self._result_sql()}")

    def _emit(self, st: int) -> None:
        """``__changes`` (session windows) through projection and HAVING into ``__result``."""
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE __out AS {self._projected_sql()}")
        self._save_stream_time(st)
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE __result AS {self._result_sql()}")

    def _save_stream_time(self, st: int) -> None:
        stream_time.save(self.con, self._stream_time_key(), st)

    # step 2: the rows to fold --------------------------------------------------------------------------
    def _input_sql(self) -> str:
        """Rows of ``__pre`` to fold, with ``__ord`` (the record: ``SEQ_SQL``), ``__arrival`` (its place in
        the arrival order), ``__sub`` and ``__sign``."""
        null_group = self._groups_present("")
        if self.aggregate.table_keys:
            return self._table_changes_sql(null_group)
        cols = ", ".join(quote(c.name) for c in self.plan.columns)
        if not self._spans_partitions:  # one partition: its offsets are its arrival order
            return (f"SELECT {cols}, __ts, __in_partition, __in_offset, {SEQ_SQL} AS __ord, {SEQ_SQL} AS __arrival, "
                    f"0 AS __sub, 1 AS __sign FROM __pre WHERE NOT __err AND NOT __deleted{null_group}")
        return f"""SELECT {cols}, __ts, __in_partition, __in_offset, {SEQ_SQL} AS __ord,
                          row_number() OVER (ORDER BY __an, __as) AS __arrival, 0 AS __sub, 1 AS __sign
                   FROM __pre JOIN (SELECT "partition" AS __ap, "offset" AS __ao, append_no AS __an,
                                           append_seq AS __as FROM __batch)
                     ON __in_partition = __ap AND __in_offset = __ao
                   WHERE NOT __err AND NOT __deleted{null_group}"""

    def _groups_present(self, prefix: str) -> str:
        """`` AND`` conditions keeping rows whose every group value is present (ksqlDB drops the others)."""
        return "".join(f" AND {quote(prefix + g)} IS NOT NULL" for g in self._groups)

    def _table_changes_sql(self, null_group: str) -> str:
        """A TABLE's changes as retractions of the previous row of each key and additions of the new."""
        keys = ", ".join(quote(k) for k in self.aggregate.table_keys)
        names = [c.name for c in self.plan.columns]
        cols = ", ".join(quote(n) for n in names)
        lags = ", ".join(f"lag({quote(n)}) OVER k AS {quote('__p' + n)}" for n in names)
        previous = ", ".join(f"{quote('__p' + n)} AS {quote(n)}" for n in names)
        history = f"""SELECT {cols}, FALSE AS __deleted, -1 AS __ord, NULL::BIGINT AS __ts,
                             NULL::INTEGER AS __in_partition, NULL::BIGINT AS __in_offset FROM {self.previous}
                      UNION ALL
                      SELECT {cols}, __deleted, {SEQ_SQL}, __ts, __in_partition, __in_offset
                      FROM __pre WHERE NOT __err"""
        previous_group = self._groups_present("__p")
        return f"""WITH h AS (SELECT *, {lags}, lag(__deleted) OVER k AS __pdeleted, lag(__ord) OVER k AS __pord
                          FROM ({history}) WINDOW k AS (PARTITION BY {keys} ORDER BY __ord)),
            changes AS (SELECT * FROM h WHERE __ord >= 0)
        SELECT {previous}, __ts, __in_partition, __in_offset, __ord, __ord AS __arrival, 0 AS __sub, -1 AS __sign
        FROM changes
        WHERE __pord IS NOT NULL AND NOT __pdeleted{previous_group}
        UNION ALL
        SELECT {cols}, __ts, __in_partition, __in_offset, __ord, __ord AS __arrival, 1 AS __sub, 1 AS __sign
        FROM changes
        WHERE NOT __deleted{null_group}"""

    def _remember_rows(self) -> None:
        """Keep each table key's newest row (or forget a deleted key) for the next retraction."""
        keys = [quote(k) for k in self.aggregate.table_keys]
        match = " AND ".join(f"{self.previous}.{k} IS NOT DISTINCT FROM n.{k}" for k in keys)
        cols = ", ".join(quote(c.name) for c in self.plan.columns)
        self.con.execute(f"""CREATE OR REPLACE TEMP TABLE __newest AS SELECT * FROM __pre WHERE NOT __err
            QUALIFY row_number() OVER (PARTITION BY {", ".join(keys)} ORDER BY {SEQ_SQL} DESC) = 1""")
        self.con.execute(f"DELETE FROM {self.previous} USING __newest AS n WHERE {match}")
        self.con.execute(f"INSERT INTO {self.previous} SELECT {cols} FROM __newest WHERE NOT __deleted")

    def _rows_sql(self, stream_time: int, *, streamed: bool) -> str:
        """``__in`` with stream time ``__st``, ``__step`` (``streamed``: see :meth:`_arrival_sql`) and
        ``__nlate`` (windows the row came too late for), for each row's windows (``__ws``, ``__we``,
        ``__late``, ``__pos``) — or, for EMIT FINAL, once per row with the range of window starts it
        still counts in (``__from`` to ``__last``): grouping expands them, never materialized."""
        window = self.aggregate.window
        if window is None:
            fixed = "0::BIGINT AS __ws, 0::BIGINT AS __we, NULL::BIGINT AS __st, FALSE AS __late, 0 AS __nlate"
            if streamed and not self.aggregate.table_keys:  # in arrival order as stored: no sort
                return (f"SELECT *, {fixed}, row_number() OVER (ROWS UNBOUNDED PRECEDING) AS __pos, "
                        "__ord - lag(__ord) OVER (ROWS UNBOUNDED PRECEDING) AS __step FROM __in")
            return f"SELECT *, {fixed}, row_number() OVER (ORDER BY __arrival, __sub) AS __pos, 1 AS __step FROM __in"
        size = window.size_ms
        advance = window.advance_ms or size
        arrival = self._arrival_sql(stream_time, streamed=streamed and not self.aggregate.table_keys)
        first = f"greatest(0, (__ts - {size} + {advance}) // {advance} * {advance})"
        closed = f"(__st - {size + self.aggregate.grace_ms})"  # a window starting at or before this closed
        open_from = f"greatest({first}, CASE WHEN {closed} < 0 THEN 0 ELSE ({closed} // {advance} + 1) * {advance} END)"
        last = f"__ts // {advance} * {advance}"
        if self.aggregate.emit_final:
            return f"""WITH o AS ({arrival}), b AS (SELECT *, {open_from} AS __from, {last} AS __last FROM o)
            SELECT * EXCLUDE (__rank), __rank AS __pos, __from > __last AS __late,
                   greatest(0, (least(__from, __last + {advance}) - {first}) // {advance}) AS __nlate FROM b"""
        starts = (f"unnest(generate_series({first}, {last}, {advance}))" if advance != size else last)
        per_row = -(-size // advance)  # the most windows a record falls in
        late = f"__ws <= {closed}"
        pos = f"(__rank - 1) * {per_row} + (__ws - {first}) // {advance}"
        return f"""WITH o AS ({arrival}), w AS (SELECT *, {starts} AS __ws FROM o)
        SELECT * EXCLUDE (__rank), __ws + {size} AS __we, {late} AS __late, ({late})::INTEGER AS __nlate,
               {pos} AS __pos FROM w"""

    def _arrival_sql(self, stream_time: int, *, streamed: bool) -> str:
        """``__in`` with its stream time ``__st``, arrival rank ``__rank`` and ``__step``.

        ``streamed``: a stream's batch is one partition's records, stored in offset order, so running
        window functions over the rows as they come (DuckDB streams those, no sort) give both —
        if the offsets indeed ascend: ``__step`` (offset minus the previous row's) shows it, and the
        caller sorts instead when one is not positive. Otherwise (and for a table's retractions)
        ONE narrow sort, of order and time only, joined back: cheaper than sorting whole rows."""
        if streamed:
            return f"""SELECT *, greatest({stream_time}, max(__ts) OVER (ROWS UNBOUNDED PRECEDING)) AS __st,
                              row_number() OVER (ROWS UNBOUNDED PRECEDING) AS __rank,
                              __ord - lag(__ord) OVER (ROWS UNBOUNDED PRECEDING) AS __step FROM __in"""
        return f"""WITH o AS (SELECT __ord, __sub, greatest({stream_time}, max(__ts) OVER o) AS __st,
                                 row_number() OVER o AS __rank
                          FROM __in WINDOW o AS (ORDER BY __arrival, __sub ROWS UNBOUNDED PRECEDING))
        SELECT *, 1 AS __step FROM __in JOIN o USING (__ord, __sub)"""

    # step 3: the changelog ---------------------------------------------------------------------------------
    def _group_match(self, left: str, right: str) -> str:
        conds = [f"{left}.{quote(g)} IS NOT DISTINCT FROM {right}.{quote(g)}" for g in self._groups]
        return " AND ".join([*conds, f"{left}.__ws = {right}.__ws"])

    def _slot_batch(self, slot_index: tuple[int, int], *, running: bool = False) -> str:
        """A slot's aggregate over the batch's rows of a group (``running``: as a window function)."""
        j, k = slot_index
        call = self.aggregate.calls[j]
        slot = call.aggregate.slots[k]
        template = slot.signed if self.aggregate.table_keys else \
            slot.running if running and slot.running is not None else slot.batch
        if template is None:
            raise UnsupportedError(f"{call.aggregate.name} cannot aggregate a TABLE (it cannot undo a value)")
        arg = quote(call.arg) if call.arg is not None else "1"
        return fill(template, _0=arg).replace("__ord", "__pos")

    def _running_sql(self) -> str:
        """EMIT CHANGES: per row, the batch's running slots merged with the stored ones, and ``__final``:
        whether it is its group's last row of the batch (whose values become the stored state). A
        table row that stays in its group changes it once: its retraction writes nothing, its
        addition the new value. Only the columns the changelog needs go through the window, which
        sorts what it carries."""
        groups = ", ".join(quote(g) for g in self._groups)
        table_input = bool(self.aggregate.table_keys)
        running = ", ".join(f"CAST({self._slot_batch((j, k), running=True)} OVER win AS "
                            f"{slot.batch_type(table_input)}) AS __r{j}_{k}" for j, k, slot in self._slots)
        args = "".join(f", {quote(call.arg)}" for call in self.aggregate.calls if call.arg is not None)
        carried = f"{groups}, __ws, __we, __pos, __ord, __sign, __in_partition, __in_offset"
        # a table's retraction is dropped where its addition stays in the same group and window
        stays = (f"\n        QUALIFY __sign > 0 OR count(*) OVER (PARTITION BY "
                 f"{', '.join(f'r.{quote(g)}' for g in self._groups)}, r.__ws, r.__ord) = 1"
                 if self.aggregate.table_keys else "")
        return self._merged_sql(f"""SELECT {carried}, {running}, max(__ts) OVER win AS __rts,
                                 lead(__pos) OVER win IS NULL AS __final
                          FROM (SELECT {carried}, __ts{args} FROM __rows WHERE NOT __late)
                          WINDOW win AS (PARTITION BY {groups}, __ws ORDER BY __pos
                                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)""", stays)

    @property
    def _pre_aggregates(self) -> bool:
        """Whether a batch's changes are its groups' aggregates (:meth:`_cached_sql`) rather than
        running values per row: through the record cache, which writes a group's last change of the
        batch alone, and over a stream (a table's retractions need the running form)."""
        return self._through_cache and self._running_changes and not self.aggregate.table_keys

    def _cached_sql(self) -> str:
        """EMIT CHANGES through the record cache, over a stream: what :meth:`_running_sql` gives for
        each group's last row of the batch (``__final``), and only that, computed by one GROUP BY
        (a hash aggregation) instead of window functions sorting every row by group and order. The
        row's other columns are those of the group's last row (greatest ``__pos``)."""
        groups = ", ".join(quote(g) for g in self._groups)
        batch = ", ".join(f"CAST({self._slot_batch((j, k))} AS {slot.batch_type(False)}) AS __r{j}_{k}"
                          for j, k, slot in self._slots)
        last = ", ".join(f"arg_max({c}, __pos) AS {c}" for c in ("__ord", "__sign", "__in_partition", "__in_offset"))
        return self._merged_sql(f"""SELECT {groups}, __ws, __we, max(__pos) AS __pos, {last}, {batch},
                                 max(__ts) AS __rts, TRUE AS __final
                          FROM __rows WHERE NOT __late GROUP BY ALL""")

    def _merged_sql(self, batch: str, after: str = "") -> str:
        """The rows of ``batch`` (a query with the groups, ``__ws``, the batch's slots ``__r…`` and
        ``__rts``) with their slots merged with the stored ones (``__m…``), their output time and
        what HAVING said before; ``after`` ends the statement (a QUALIFY)."""
        table_input = bool(self.aggregate.table_keys)
        merged = ", ".join(f"{fill(slot.merge_for(table_input), s=f's.__s{j}_{k}', b=f'r.__r{j}_{k}')} AS __m{j}_{k}"
                           for j, k, slot in self._slots)
        return f"""WITH r AS ({batch})
        SELECT r.*, {merged}, greatest(s.__ts, r.__rts) AS __out_ts, coalesce(s.__pass, FALSE) AS __stored_pass,
               FALSE AS __tomb
        FROM r LEFT JOIN {self.state} s ON {self._group_match('r', 's')}{after}"""

    def _fold_final(self, st: int) -> None:
        """EMIT FINAL: fold the batch into the state; ``__changes`` holds the windows that closed.

        As Kafka Streams' emit-on-window-close (``KStreamWindowAggregate``): a window is written once,
        by the first record of its task after which the close time (stream time - grace) reaches its
        end, if the window store still holds it then. The store (time-ordered, as for every
        emit-on-window-close) hides windows that start before its own time less the retention, and
        its time is the largest window START written — the window of the record with the largest time,
        ``st // advance * advance`` — not the stream time. So with the default retention (size +
        grace) a window is written by any record whose stream time lands in [end + grace,
        start + 2 x size); a jump of stream time past that expires it unwritten, as in ksqlDB (its
        "large jump" case). Those windows are counted (``stats.expired``) and logged, never silently
        dropped; a RETENTION above the largest gap between records keeps them. A closed window takes
        no more records, so writing the batch's closed windows after folding it is the same as
        writing them record by record."""
        con = self.con
        groups = ", ".join(quote(g) for g in self._groups)
        table_input = bool(self.aggregate.table_keys)
        partial = ", ".join(f"CAST({self._slot_batch((j, k))} AS {slot.batch_type(table_input)}) AS __r{j}_{k}"
                            for j, k, slot in self._slots)
        window = self.aggregate.window
        assert window is not None
        advance = window.advance_ms or window.size_ms
        windows = (f"SELECT *, unnest(generate_series(__from, __last, {advance})) AS __ws FROM __rows"
                   if advance != window.size_ms else  # tumbling: a row's one window, unless it came late
                   "SELECT *, __last AS __ws FROM __rows WHERE __from <= __last")
        con.execute(f"""CREATE OR REPLACE TEMP TABLE __partials AS
            SELECT {groups}, __ws, __ws + {window.size_ms} AS __we, {partial}, max(__ts) AS __rts, min(__pos) AS __pos
            FROM ({windows}) GROUP BY {groups}, __ws""")
        merged = ", ".join(f"{fill(slot.merge_for(table_input), s=f's.__s{j}_{k}', b=f'p.__r{j}_{k}')} AS __s{j}_{k}"
                           for j, k, slot in self._slots)
        keys = ", ".join(f"coalesce(s.{quote(g)}, p.{quote(g)}) AS {quote(g)}" for g in self._groups)
        con.execute(f"""CREATE OR REPLACE {self._table} {self.state} AS
            SELECT {keys}, coalesce(s.__ws, p.__ws) AS __ws, coalesce(s.__we, p.__we) AS __we, {merged},
                   greatest(s.__ts, p.__rts) AS __ts, s.__pass,
                   CASE WHEN p.__ws IS NULL THEN s.__task ELSE {self._partition} END AS __task
            FROM {self.state} s FULL JOIN __partials p ON {self._group_match('s', 'p')}""")
        slots = ", ".join(f"__m{j}_{k}" for j, k, _ in self._slots)
        renamed = ", ".join(f"__s{j}_{k} AS __m{j}_{k}" for j, k, _ in self._slots)
        # each closed window with the record whose stream time first reached its end + grace (its input
        # position ``__ord`` = SEQ_SQL) and whether the window store still held the window then
        con.execute(f"""CREATE OR REPLACE TEMP TABLE __closed AS
            WITH closing AS (SELECT *, {renamed} FROM {self.state} WHERE {self._closed_sql(st)}),
                 reached AS (SELECT __st, arg_min(__ord, __pos) AS __closer FROM __rows GROUP BY __st),
                 ends AS (SELECT DISTINCT __we FROM closing),
                 closed_at AS (SELECT e.__we, r.__st, r.__closer FROM ends e
                               ASOF JOIN reached r ON e.__we + {self.aggregate.grace_ms} <= r.__st)
            SELECT *, __ws >= __st // {advance} * {advance} - {self._retention_ms()} AS __held
            FROM closing JOIN closed_at USING (__we)""")
        con.execute(f"""CREATE OR REPLACE TEMP TABLE __changes AS
            SELECT {groups}, __ws, __we, {slots}, __ts AS __out_ts, FALSE AS __stored_pass, FALSE AS __tomb,
                   (__closer >> 40)::INTEGER AS __in_partition, __closer & {(1 << 40) - 1} AS __in_offset,
                   row_number() OVER (ORDER BY __we, __ws, {groups}) AS __pos
            FROM __closed WHERE __held""")
        self._count_expired()

    def _count_expired(self) -> None:
        """Count (and log, as Kafka Streams logs a skipped window) the closed windows that expired unwritten."""
        expired, first, last = self.con.execute(
            "SELECT count(*), min(__ws), max(__st) FROM __closed WHERE NOT __held").fetchall()[0]
        if expired:
            self.stats.expired += expired
            log.warning("query %s: %d EMIT FINAL window(s) from start %d expired before they closed: stream time "
                        "jumped to %d, beyond the windows' retention of %d ms; a larger RETENTION keeps them",
                        self.query_id, expired, first, last, self._retention_ms())

    def _retention_ms(self) -> int:
        """How long the window store keeps a window: from its start, by the largest window start written."""
        window = self.aggregate.window
        assert window is not None
        return max(window.retention_ms or 0, window.size_ms + self.aggregate.grace_ms)

    def _closed_sql(self, st: int) -> str:
        """The windows of this batch's task that stream time ``st`` closed (end + grace ≤ ``st``).

        A window belongs to the task (input partition) that last folded a record into it: each task
        has its own stream time, as in Kafka Streams, so one partition's clock never closes the
        windows of keys another partition carries. (State from before tasks has none: any closes it.)"""
        return (f"__we + {self.aggregate.grace_ms} <= {st} "
                f"AND coalesce(__task, {self._partition}) = {self._partition}")

    def _projected_sql(self, changes: str = "__changes") -> str:
        """``changes`` through the projection and HAVING: the output rows and what HAVING said."""
        plan = self.aggregate
        groups = ", ".join(quote(g) for g in self._groups)
        results = []
        for j, call in enumerate(plan.calls):
            merged = {f"s{k}": f"__m{j}_{k}" for k in range(len(call.aggregate.slots))}
            results.append(f"{fill(call.aggregate.result, **merged)} AS {quote(f'__agg{j}')}")
        outputs = ", ".join(f"{c.sql} AS {quote(c.name)}" for c in plan.columns)
        passes = f"coalesce({plan.having}, FALSE)" if plan.having else "TRUE"
        slots = ", ".join(f"__m{j}_{k}" for j, k, _ in self._slots)
        final = ", __final" if self._running_changes else ""
        # the record cache: a group's changes of the batch come out as its last one (computed first,
        # so the projection runs on the rows written only)
        cached = " WHERE __final" if self._through_cache and self._running_changes else ""
        return f"""WITH a AS (SELECT *, {", ".join(results) or "NULL AS __none"}, __ws AS "WINDOWSTART",
                              __we AS "WINDOWEND" FROM {changes}{cached}),
            p AS (SELECT {groups}, __ws, __we, {slots}, __out_ts, __stored_pass, __tomb, __pos, __in_partition,
                         __in_offset{final}, {outputs}, {passes} AS __pass FROM a)
        SELECT *, {self._passed_before_sql()} AS __passed_before FROM p"""

    @property
    def _through_cache(self) -> bool:
        """Whether the batch's changes go through Kafka Streams' record cache (``AggregatePlan.record_cache``),
        which this runner flushes at the end of every batch, as Kafka Streams flushes it at every commit:
        each group and window then writes the last of its changes — the one a cache holding every
        group of the batch would forward (session windows: in their fold). EMIT FINAL writes each
        window once anyway; HAVING over sessions judges each written session against its own
        history, so those write every change."""
        plan = self.aggregate
        return plan.record_cache and not plan.emit_final and (self._sessions is None or plan.having is None)

    def _passed_before_sql(self) -> str:
        """Whether a row's group passed HAVING before it (its HAVING failing then makes a tombstone).
        EMIT FINAL writes each window once: nothing came before. Without HAVING every row passes,
        so what came before does not matter. Through the record cache, what came before is the
        group's stored result: the changes in between were never written."""
        if self.aggregate.having is None or (self.aggregate.emit_final and self._sessions is None):
            return "FALSE"
        if self._through_cache:  # sessions through the cache have no HAVING: answered above
            return "__stored_pass"
        groups = ", ".join(quote(g) for g in self._groups)
        return f"coalesce(lag(__pass) OVER (PARTITION BY {groups}, __ws ORDER BY __pos), __stored_pass)"

    def _store_last(self) -> None:
        """EMIT CHANGES: each group's last merged value becomes its stored state."""
        groups = ", ".join(quote(g) for g in self._groups)
        slots = ", ".join(f"__m{j}_{k}" for j, k, _ in self._slots)
        self.con.execute(f"""CREATE OR REPLACE TEMP TABLE __last AS
            SELECT {groups}, __ws, __we, {slots}, __out_ts, __pass, {self._partition} AS __task FROM __out
            WHERE __final""")
        self.con.execute(f"DELETE FROM {self.state} USING __last AS l WHERE {self._group_match(self.state, 'l')}")
        self.con.execute(f"INSERT INTO {self.state} SELECT * FROM __last")

    def _close_windows(self, st: int) -> None:
        """Closed windows of the batch's task take no more records: drop them (EMIT FINAL wrote them)."""
        if self.aggregate.window is not None:
            self.con.execute(f"DELETE FROM {self.state} WHERE {self._closed_sql(st)}")

    # step 4: records -------------------------------------------------------------------------------------------
    def _result_sql(self) -> str:
        """``__result``: the changelog encoded for the sink (or typed rows), then the input's errors."""
        plan = self.aggregate
        rows = f"""(SELECT o.*, FALSE AS __err, NULL::VARCHAR AS __errmsg, FALSE AS __bad_ts,
                           __tomb OR NOT __pass AS __deleted, __out_ts AS __ts, h.__headers
                    FROM __out o LEFT JOIN ({_HEADERS_SQL}) h ON h.__hp = o.__in_partition AND h.__ho = o.__in_offset
                    WHERE __tomb OR __pass OR coalesce(__passed_before, FALSE))"""
        errors = ("SELECT TRUE AS __err, __errmsg, __bad_ts, FALSE AS __deleted, __in_partition, __in_offset "
                  "FROM __pre WHERE __err")
        if plan.sink is None:
            return f"SELECT * FROM {rows} UNION ALL BY NAME {errors}"
        window_type = None if plan.window is None else "'SESSION'" if plan.window.kind == "SESSION" else "'TIME'"
        encoded = encode_rows_sql(plan.sink, plan.columns, rows, control=CONTROL_COLUMNS, window_type=window_type,
                                  order="__pos")
        partitions = self._partitions(plan.sink.topic)
        return (f"SELECT {route_sql(partitions)} AS p, * FROM ({encoded}) "
                f"UNION ALL BY NAME SELECT *, NULL::INTEGER AS p FROM ({errors})")

