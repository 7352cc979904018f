"""A record-at-a-time model of ksqlDB's windowed aggregations, stream-stream joins and table
aggregations: the oracle of ``tests/integration/test_model_properties.py``.

Plain Python: no DuckDB, no nbstream. It was written from Kafka Streams' and ksqlDB's Java code,
not from the engine, and checked against ksqlDB's query-validation (QTT) cases. The Java files
each rule comes from (apache/kafka ``streams/src/main/java/org/apache/kafka/streams/``,
confluentinc/ksql ``ksqldb-streams/src/main/java/io/confluent/ksql/execution/streams/``) are named
beside it.

Rules (decisions taken for nbstream; the two deliberate deviations from Kafka Streams are marked):

1. **Tasks.** Each input partition is a task with its own stream time: the largest record
   timestamp that task has seen, updated *before* the record is judged
   (``AbstractKStreamTimeWindowAggregateProcessor.updateObservedStreamTime``). A task processes its
   records in offset order. Tests keep every group key and join key inside one partition, so
   tasks never share a key; the input's ``seq`` is its arrival position across all input topics
   (the order of ``produce`` calls: nbstream's embedded log).

2. **Time windows** (TUMBLING = HOPPING with advance = size; ``TimeWindows.windowsFor``): a record
   at ``t`` belongs to every ``[start, start + size)`` with ``start`` a multiple of the advance,
   ``start >= 0`` and ``start <= t < start + size``. ``closeTime = streamTime - grace``. A window
   whose ``end <= closeTime`` does not take the record; each such (record, window) pair is counted
   late (``KStreamWindowAggregate.process``: ``windowEnd > windowCloseTime``, else
   ``logSkippedRecordForExpiredWindow`` per window).

   - EMIT CHANGES: every accepted (record, window) writes the window's new aggregate with the
     largest timestamp of the records folded into it.
   - EMIT FINAL (``EmitStrategy.onWindowClose()``): a window is written at most once, by the
     first record of its task after which ``closeTime >= end``, with its final aggregate and the
     largest timestamp in it — if the window store still returns it then. That store
     (time-ordered; ``AbstractDualSchemaRocksDBSegmentedBytesStore.getActualFrom``) hides windows
     starting before (largest window START written so far - retention), retention = RETENTION or
     size + grace (``WindowStoreMaterializer``). So a jump of stream time larger than about one
     window expires closed windows unwritten (QTT ``suppress.json``: "…with large jump" writes
     nothing, "…for tumbling windows" and "…for hopping windows" lose one window each); they are
     counted (``Result.expired``: nbstream counts and logs them, Kafka Streams only logs). Kafka
     Streams also throttles these fetches to one per second of wall-clock time; nbstream does
     not, and neither does this model. Windows still open at the end are not written.

3. **Session windows** (``KStreamSessionWindowAggregate``): ``closeTime = streamTime - grace -
   gap``; retention = RETENTION or gap + grace (``SessionStoreMaterializer``). A record at ``t``
   merges every session of its key that the store returns (``findSessions`` runs before ``put``,
   and the store keeps a session while ``end > (largest end written before this record) -
   retention``: ``AbstractRocksDBSegmentedBytesStore.getActualFrom``) with ``end >= t - gap`` and
   ``start <= t + gap`` into ``[min start, max end]``; if that merged end is ``< closeTime`` the
   record is late (dropped, counted once). EMIT CHANGES: unless the merged session is exactly
   ``[t, t]``, each replaced session is first written as a tombstone (timestamp: its own end, in
   the order of their ends), then the merged session's aggregate (timestamp: the merged end).
   EMIT FINAL: when a record moves ``closeTime`` forward, the sessions ending in [previous
   closeTime, closeTime) are written (timestamp = end) — if their store segment is still live:
   segments span max(retention / 2, 60 s) and the put of a record drops the segments before
   (largest end written - retention) (``AbstractSegments.cleanupExpiredSegments``); a session
   expired that way is counted in ``Result.expired``. A written session stays in the store, so a
   later record may still merge it (and the merged session is written when it closes).

4. **Default grace** (ksqlDB ``StreamAggregateBuilder.defaultGrace`` and
   ``RewrittenAnalysis.getWindowExpression``): EMIT FINAL without GRACE PERIOD: 0. EMIT CHANGES
   without GRACE PERIOD: ``max(24 h - size, 0)``, size = the gap for sessions.

5. **Stream-stream joins** ``l [INNER|LEFT|FULL OUTER] JOIN r WITHIN n [GRACE PERIOD g] ON l.k =
   r.k`` (``StreamStreamJoinBuilder``, ``KStreamKStreamJoin``, ``KStreamJoinWindow``,
   ``InMemoryWindowStore``/``AbstractRocksDBSegmentedBytesStore``): both topics are processed in
   arrival order; the stream time of a task is shared by both sides. A record at ``t`` joins the
   other side's records of its key with timestamps in ``[t - n, t + n]`` (clamped at 0) that are
   still retained, in timestamp order; each join is written with timestamp ``max(t, other)``.
   Each side's window store keeps a record while ``ts > (largest timestamp put into that store) -
   (2n + grace)``; a record is put into its own store after it was joined.

   - Without GRACE PERIOD ksqlDB uses the deprecated ``JoinWindows.of(n)``: grace
     ``max(24 h - 2n, 0)`` and eager padding: an outer-side record that finds no match is written
     at once with nulls for the other side (timestamp: its own), even if a match arrives later.
   - With GRACE PERIOD (``JoinWindows.ofTimeDifferenceAndGrace``, the spurious-result fix): an
     outer-side record that finds no match is written padded at once only if its window already
     ended (``t + n < streamTime``); otherwise it waits in the outer store until a match removes it
     or it is written padded (timestamp: its own) by the first record with ``ts == streamTime``
     after which ``ts + n + grace < streamTime``; that happens before the record itself is joined.
     Kafka Streams also throttles this by wall-clock time and skips the scan while a cached
     minimum timestamp says nothing can have closed; neither is modelled (the cached minimum can
     be stale after a partial scan, which only delays Kafka Streams' output).

6. **Multi-way joins** are left-deep, ``((a ⋈ b) ⋈ c) …`` (ksqlDB ``JoinTree``; each join its own
   ``KStreamKStreamJoin`` or ``KStreamKTableJoin`` processor in the same task). A join's output
   record is handed to the next join at once (``ProcessorContext.forward``), before the next input
   record is processed: the next join sees each output row at the place of the record that produced
   it, after the rows that record produced before, with the row's timestamp (a stream-stream
   join's: ``max(t, other)``) — so its stream time moves only with rows and records that reach it.
   Each join keeps its own window stores, outer store and stream time (``TimeTracker`` per join). A
   row whose key for the next join is null is dropped there (``KStreamKStreamJoin``: "Skipping
   record due to null key"). A stream-table join (``KStreamKTableJoinProcessor``) joins a stream
   record with the table's row of its key as of its arrival (INNER drops it if there is none, LEFT
   pads it), with the stream record's timestamp.

7. **Table aggregations** (``KTableRepartitionMap``, ``KTableAggregate``, ksqlDB
   ``TableGroupByBuilderBase``): a change of a source row whose old and new group are the same
   group writes that group once (old row removed, new row added); otherwise the old group is
   written first (the old row removed), then the new group (the new row added). A tombstone only
   removes; a row whose group value is null is in no group. A group that loses its last row is
   still written (COUNT 0), not deleted. A group's timestamp is the largest timestamp of every
   change that touched it.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

DAY_MS = 24 * 60 * 60 * 1000
NO_TIMESTAMP = -1  # Kafka's ConsumerRecord.NO_TIMESTAMP: the stream time of a task that saw nothing

Window = tuple[int, int]
Aggregate = Callable[[Sequence["Record"]], Any]


@dataclass(frozen=True)
class Record:
    """One input record: ``seq`` is its arrival position across all inputs, ``side`` names the
    input of a join (``"left"``/``"right"``); ``value`` None is a tombstone (tables only)."""

    seq: int
    partition: int
    key: Hashable
    value: Any
    ts: int
    side: str = ""


@dataclass(frozen=True)
class Output:
    """One record the query writes: ``value`` None is a tombstone; ``trigger`` is the ``seq`` of the
    input record whose processing wrote it (so a prefix of the input predicts a prefix of the
    output)."""

    key: Hashable
    window: Window | None
    value: Any
    ts: int
    trigger: int


@dataclass
class Result:
    """What a query writes, and how many records (time windows: (record, window) pairs) it dropped
    as late."""

    outputs: list[Output] = field(default_factory=list)
    late: int = 0
    expired: int = 0  # EMIT FINAL windows the store no longer returned when they closed


# --- shared -------------------------------------------------------------------------------------


def tasks(records: Iterable[Record]) -> dict[int, list[Record]]:
    """The records of each input partition, in arrival order: one list per task."""
    by_partition: dict[int, list[Record]] = defaultdict(list)
    for record in sorted(records, key=lambda r: r.seq):
        by_partition[record.partition].append(record)
    return dict(by_partition)


def default_grace(size: int, *, final: bool) -> int:
    """ksqlDB's grace period when the window has no GRACE PERIOD clause (size: the gap for
    sessions): 0 for EMIT FINAL, ``max(24 h - size, 0)`` for EMIT CHANGES."""
    return 0 if final else max(DAY_MS - size, 0)


def latest_timestamp(records: Iterable[Record]) -> int:
    return max(r.ts for r in records)


# --- time windows --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeWindows:
    """``WINDOW TUMBLING (SIZE size)`` (advance = size) or ``HOPPING (SIZE size, ADVANCE BY
    advance)``, with ``grace`` None when the query has no GRACE PERIOD clause."""

    size: int
    advance: int
    grace: int | None
    final: bool
    retention: int | None = None  # the RETENTION clause

    @property
    def effective_grace(self) -> int:
        return default_grace(self.size, final=self.final) if self.grace is None else self.grace

    @property
    def effective_retention(self) -> int:
        return max(self.retention or 0, self.size + self.effective_grace)


def windows_for(ts: int, size: int, advance: int) -> list[Window]:
    """Every ``[start, start + size)`` holding ``ts``, starts multiples of ``advance`` and >= 0, in
    start order (Kafka Streams' ``TimeWindows.windowsFor``)."""
    start = (max(0, ts - size + advance) // advance) * advance
    windows = []
    while start <= ts:
        windows.append((start, start + size))
        start += advance
    return windows


def time_window_aggregate(records: Iterable[Record], spec: TimeWindows, aggregate: Aggregate) -> Result:
    """The records a windowed ``GROUP BY key`` over a stream writes (rules 1, 2 and 4)."""
    result = Result()
    for task in tasks(records).values():
        _time_window_task(task, spec, aggregate, result)
    return result


def _time_window_task(task: list[Record], spec: TimeWindows, aggregate: Aggregate, result: Result) -> None:
    stream_time = NO_TIMESTAMP
    store_time = NO_TIMESTAMP  # the largest window start written into the window store
    open_windows: dict[tuple[Hashable, Window], list[Record]] = {}
    by_end: list[tuple[int, int, int, tuple[Hashable, Window]]] = []  # heap: (end, start, creation, id)
    for record in task:
        stream_time = max(stream_time, record.ts)
        close_time = stream_time - spec.effective_grace
        for window in windows_for(record.ts, spec.size, spec.advance):
            if window[1] <= close_time:
                result.late += 1
                continue
            if (record.key, window) not in open_windows:
                open_windows[(record.key, window)] = []
                heapq.heappush(by_end, (window[1], window[0], record.seq, (record.key, window)))
            members = open_windows[(record.key, window)]
            members.append(record)
            store_time = max(store_time, window[0])
            if not spec.final:
                result.outputs.append(
                    Output(record.key, window, aggregate(members), latest_timestamp(members), record.seq))
        while by_end and by_end[0][0] <= close_time:  # closed: it can take no record any more
            key, window = heapq.heappop(by_end)[3]
            members = open_windows.pop((key, window))
            if spec.final and window[0] < store_time - spec.effective_retention:
                result.expired += 1
            elif spec.final:
                result.outputs.append(Output(key, window, aggregate(members), latest_timestamp(members), record.seq))


# --- session windows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionWindows:
    """``WINDOW SESSION (gap)``, with ``grace`` None when the query has no GRACE PERIOD clause."""

    gap: int
    grace: int | None
    final: bool
    retention: int | None = None  # the RETENTION clause

    @property
    def effective_grace(self) -> int:
        return default_grace(self.gap, final=self.final) if self.grace is None else self.grace

    @property
    def effective_retention(self) -> int:
        return max(self.retention or 0, self.gap + self.effective_grace)

    @property
    def segment_interval(self) -> int:
        """The span of one store segment (``RocksDbSessionBytesStoreSupplier``)."""
        return max(self.effective_retention // 2, 60_000)


@dataclass
class _Session:
    start: int
    end: int
    records: list[Record]

    @property
    def window(self) -> Window:
        return (self.start, self.end)


def session_window_aggregate(records: Iterable[Record], spec: SessionWindows, aggregate: Aggregate) -> Result:
    """The records a session-windowed ``GROUP BY key`` over a stream writes (rules 1, 3 and 4)."""
    result = Result()
    for task in tasks(records).values():
        _session_task(task, spec, aggregate, result)
    return result


def _session_task(task: list[Record], spec: SessionWindows, aggregate: Aggregate, result: Result) -> None:
    stream_time = NO_TIMESTAMP
    store_time = NO_TIMESTAMP  # the largest session end written into (or removed from) the session store
    last_emit_close = NO_TIMESTAMP
    store: dict[Hashable, list[_Session]] = defaultdict(list)
    for record in task:
        stream_time = max(stream_time, record.ts)
        close_time = stream_time - spec.effective_grace - spec.gap
        t = record.ts
        oldest = store_time - spec.effective_retention  # the store returns sessions ending after it
        sessions = store[record.key]
        merging = [s for s in sessions if s.end >= t - spec.gap and s.end > oldest and s.start <= t + spec.gap]
        start = min([t, *(s.start for s in merging)])
        end = max([t, *(s.end for s in merging)])
        if end < close_time:
            result.late += 1
        else:
            merged = _Session(start, end, [r for s in merging for r in s.records] + [record])
            if not spec.final:
                if merged.window != (t, t):
                    for old in sorted(merging, key=lambda s: s.end):
                        result.outputs.append(Output(record.key, old.window, None, old.end, record.seq))
                result.outputs.append(Output(record.key, merged.window, aggregate(merged.records), end, record.seq))
            store[record.key] = [s for s in sessions if s not in merging] + [merged]
            store_time = max([store_time, end, *(s.end for s in merging)])
        if spec.final and close_time > max(last_emit_close, 0):
            _emit_closed_sessions(store, max(last_emit_close, 0), close_time, store_time, spec, aggregate,
                                  record.seq, result)
            last_emit_close = close_time


def _emit_closed_sessions(store: dict[Hashable, list[_Session]], lower: int, close_time: int, store_time: int,
                          spec: SessionWindows, aggregate: Aggregate, trigger: int, result: Result) -> None:
    """EMIT FINAL: write the sessions ending in [lower, close_time) whose store segment is live."""
    oldest_live = _segment(store_time - spec.effective_retention, spec.segment_interval)
    closed = sorted(((key, s) for key, sessions in store.items() for s in sessions if lower <= s.end < close_time),
                    key=lambda ks: (ks[1].end, ks[1].start))
    for key, session in closed:
        if _segment(session.end, spec.segment_interval) < oldest_live:
            result.expired += 1
        else:
            result.outputs.append(Output(key, session.window, aggregate(session.records), session.end, trigger))


def _segment(time: int, interval: int) -> int:
    """The store segment of ``time``: Java's long division, which truncates toward zero."""
    return time // interval if time >= 0 else -(-time // interval)


# --- stream-stream joins -------------------------------------------------------------------------


@dataclass(frozen=True)
class JoinWindows:
    """``WITHIN within [GRACE PERIOD grace]`` of an INNER, LEFT or FULL OUTER stream-stream join."""

    kind: Literal["INNER", "LEFT", "FULL"]
    within: int
    grace: int | None

    @property
    def spurious_result_fix(self) -> bool:
        """ksqlDB passes GRACE PERIOD to ``JoinWindows.ofTimeDifferenceAndGrace``, which holds
        padded rows back until their window closes; without it, the deprecated eager padding."""
        return self.grace is not None

    @property
    def effective_grace(self) -> int:
        return max(DAY_MS - 2 * self.within, 0) if self.grace is None else self.grace

    @property
    def retention(self) -> int:
        """How long each side's window store keeps a record: window size (before + after) + grace."""
        return 2 * self.within + self.effective_grace

    def outer(self, side: str) -> bool:
        """Whether a record of ``side`` without a match is written with nulls for the other side."""
        return self.kind == "FULL" or (self.kind == "LEFT" and side == "left")


def joined_value(side: str, this: Any, other: Any) -> tuple[Any, Any]:
    """The (left value, right value) pair of a join row written for a record of ``side``."""
    return (this, other) if side == "left" else (other, this)


def stream_stream_join(records: Iterable[Record], spec: JoinWindows) -> list[Output]:
    """The rows ``SELECT … FROM l <kind> JOIN r WITHIN …`` writes, each value a (left value, right
    value) pair with None for a missing side (rules 1 and 5)."""
    outputs: list[Output] = []
    for task in tasks(records).values():
        outputs += _JoinTask(spec).run(task)
    return outputs


class _JoinTask:
    """One task of a stream-stream join: both sides' window stores, the outer store of rows waiting
    for their window to close, and the stream time both sides share."""

    def __init__(self, spec: JoinWindows) -> None:
        self.spec = spec
        self.stream_time = NO_TIMESTAMP
        self.stores: dict[str, dict[Hashable, list[Record]]] = {"left": defaultdict(list), "right": defaultdict(list)}
        self.store_time = {"left": NO_TIMESTAMP, "right": NO_TIMESTAMP}
        self.waiting: dict[tuple[int, str, Hashable], list[Record]] = {}
        self.outputs: list[Output] = []

    def run(self, task: list[Record]) -> list[Output]:
        for record in task:
            self.process(record)
        return self.outputs

    def process(self, record: Record) -> None:
        spec, side, t = self.spec, record.side, record.ts
        other = "right" if side == "left" else "left"
        self.stream_time = max(self.stream_time, t)
        if spec.spurious_result_fix and t == self.stream_time:
            self._write_closed_waiting_rows(record.seq)
        matches = self._retained(other, record.key, max(0, t - spec.within), max(0, t + spec.within))
        for match in matches:
            self.waiting.pop((match.ts, other, record.key), None)
            self.outputs.append(Output(record.key, None, joined_value(side, record.value, match.value),
                                       max(t, match.ts), record.seq))
        if not matches and spec.outer(side):
            if not spec.spurious_result_fix or t + spec.within < self.stream_time:
                self.outputs.append(Output(record.key, None, joined_value(side, record.value, None), t, record.seq))
            else:
                self.waiting.setdefault((t, side, record.key), []).append(record)
        self._put(side, record)

    def _retained(self, side: str, key: Hashable, time_from: int, time_to: int) -> list[Record]:
        oldest = self.store_time[side] - self.spec.retention  # kept while ts > oldest
        found = [r for r in self.stores[side][key] if time_from <= r.ts <= time_to and r.ts > oldest]
        return sorted(found, key=lambda r: (r.ts, r.seq))

    def _put(self, side: str, record: Record) -> None:
        self.store_time[side] = max(self.store_time[side], record.ts)
        if record.ts > self.store_time[side] - self.spec.retention:
            self.stores[side][record.key].append(record)

    def _write_closed_waiting_rows(self, trigger: int) -> None:
        closed = sorted((ts, 0 if side == "left" else 1, str(key), (ts, side, key))
                        for (ts, side, key) in self.waiting
                        if ts + self.spec.within + self.spec.effective_grace < self.stream_time)
        for *_, entry in closed:
            ts, side, key = entry
            for row in self.waiting.pop(entry):
                self.outputs.append(Output(key, None, joined_value(side, row.value, None), ts, trigger))


# --- multi-way joins ------------------------------------------------------------------------------


def in_output_order(outputs: Iterable[Output]) -> list[Output]:
    """``outputs`` in the order they were written: by the input record that produced them (each
    task's outputs are in order; a record's outputs all come from its task)."""
    return sorted(outputs, key=lambda o: o.trigger)


def stream_table_join(records: Iterable[Record], kind: Literal["INNER", "LEFT"]) -> list[Output]:
    """``s [LEFT] JOIN t ON s.k = t.k`` (rule 6): ``left`` records are the stream's, ``right`` ones the
    table's changes (value None: a tombstone). Values are (stream value, table value) pairs."""
    table: dict[Hashable, Any] = {}
    outputs = []
    for record in sorted(records, key=lambda r: r.seq):
        if record.side == "right":
            table[record.key] = record.value
            continue
        row = table.get(record.key)
        if row is not None or kind == "LEFT":
            outputs.append(Output(record.key, None, (record.value, row), record.ts, record.seq))
    return outputs


def next_join_input(outputs: Iterable[Output], partition_of: Callable[[int], int], right: Iterable[Record],
                    key: Callable[[Output], Hashable | None]) -> tuple[list[Record], dict[int, int]]:
    """The input of the next join of a chain (rule 6): the earlier joins' ``outputs`` as its left
    records — each at the place of the input record that produced it (``partition_of`` that
    record's ``seq``: its task), keyed by ``key`` (the next ON's left expression; None: dropped) —
    and the next stream's records as its right ones, numbered anew in that order. Also returns
    each new ``seq``'s original input record (see :func:`from_chain_input`)."""
    entries = [((o.trigger, i), Record(0, partition_of(o.trigger), key(o), o.value, o.ts, "left"))
               for i, o in enumerate(in_output_order(outputs))]
    entries += [((r.seq, -1), replace(r, side="right")) for r in right]
    entries = sorted((e for e in entries if e[1].key is not None), key=lambda e: e[0])
    records = [replace(record, seq=seq) for seq, (_, record) in enumerate(entries)]
    return records, {seq: place[0] for seq, (place, _) in enumerate(entries)}


def from_chain_input(outputs: Iterable[Output], origin: dict[int, int]) -> list[Output]:
    """A chained join's ``outputs`` with their triggers as the original input records (``origin``:
    from :func:`next_join_input`)."""
    return [replace(o, trigger=origin[o.trigger]) for o in outputs]


# --- table aggregations --------------------------------------------------------------------------


def table_aggregate(changes: Iterable[Record], group_of: Callable[[Any], Hashable | None],
                    aggregate: Callable[[Sequence[Any]], Any]) -> list[Output]:
    """The records ``SELECT g, aggs FROM table GROUP BY g`` writes for a table's changelog
    (``changes``: a record per upsert, value None for a tombstone), in arrival order (rule 7).
    ``group_of`` maps a row to its group (None: in no group); ``aggregate`` maps a group's current
    rows (in the order they joined it) to the written value."""
    rows: dict[Hashable, Any] = {}
    members: dict[Hashable, dict[Hashable, Any]] = defaultdict(dict)  # group -> source key -> row
    group_ts: dict[Hashable, int] = {}
    outputs: list[Output] = []

    def write(group: Hashable, change: Record) -> None:
        group_ts[group] = max(change.ts, group_ts.get(group, change.ts))
        outputs.append(Output(group, None, aggregate(list(members[group].values())), group_ts[group], change.seq))

    for change in sorted(changes, key=lambda r: r.seq):
        old_row = rows.pop(change.key, None)
        if change.value is not None:
            rows[change.key] = change.value
        old_group = None if old_row is None else group_of(old_row)
        new_group = None if change.value is None else group_of(change.value)
        if old_group is not None:
            del members[old_group][change.key]
        if old_group is not None and old_group != new_group:
            write(old_group, change)
        if new_group is not None:
            members[new_group][change.key] = change.value
            write(new_group, change)
    return outputs
