"""The rows a live view shows, and the numbered deltas that keep every view of them in step.

A view is anything that keeps a push query's latest rows: a notebook's live table or chart, a
dashboard fed over the network. A push query's result batches are applied to a
:class:`ResultBuffer`: a TABLE result keeps the latest row per key (a tombstone removes its key),
a STREAM result appends rows under increasing row ids; either way only the ``cap`` most recently
changed rows are kept (older ones are evicted).
Changes accumulate, coalesced per key, until :meth:`ResultBuffer.take_delta` turns them into the
next :class:`Delta` (sequence number + 1). A view applies a delta by removing every key in
``remove`` then inserting ``insert`` in order (a key inserted again moves to the end), exactly as
the buffer's *published* state does, so :meth:`ResultBuffer.snapshot` (the published state and its
sequence number) equals what a view holds after every delta so far. A view that renders late, or
sees a gap in the sequence numbers, asks for that snapshot.

``remove``/``insert`` are also a Vega changeset keyed by the result's key (the ``__key`` field of
the chart's rows): each key appears at most once per delta, so a chart never holds it twice.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

Row = list[Any]


@dataclass(frozen=True)
class Delta:
    """The changes since the previous delta: keys whose row is gone or replaced, then new rows."""

    seq: int
    remove: list[str]
    insert: list[tuple[str, Row]]

    def message(self) -> dict[str, Any]:
        """The custom message a view receives (values made JSON-safe)."""
        return {"type": "delta", "seq": self.seq, "remove": self.remove,
                "insert": [[key, jsonable_row(row)] for key, row in self.insert]}


@dataclass(frozen=True)
class Snapshot:
    """The published rows (in view order) at sequence number ``seq``."""

    seq: int
    rows: list[tuple[str, Row]]

    def message(self) -> dict[str, Any]:
        return {"type": "snapshot", "seq": self.seq, "rows": [[key, jsonable_row(row)] for key, row in self.rows]}


class ResultBuffer:
    """The latest rows of a push query's result and the changes not yet sent to its views.

    Thread-safe: the background loop applies batches and takes deltas while the kernel asks for
    snapshots. Python work per batch is bounded by ``cap`` (a STREAM batch is cut to its last
    ``cap`` rows) or by the distinct keys it changes (a TABLE batch keeps its last row per key,
    found by Arrow).
    """

    def __init__(self, columns: Sequence[str], key_columns: Sequence[str], is_table: bool, cap: int) -> None:
        if cap < 1:
            raise ValueError(f"a live view keeps at least one row (cap={cap})")
        self.columns = list(columns)
        self.key_columns = list(key_columns) if is_table else []
        self.is_table = is_table and bool(self.key_columns)
        self.cap = cap
        self.seq = 0
        self._current: OrderedDict[str, Row] = OrderedDict()
        self._published: OrderedDict[str, Row] = OrderedDict()
        self._pending: OrderedDict[str, Row | None] = OrderedDict()  # key -> new row, None: removed
        self._row_ids = itertools.count()
        self._lock = threading.Lock()

    def apply(self, batch: pa.Table) -> None:
        """Apply a result batch (columns ``__deleted`` and the result's columns, in change order)."""
        batch = self._last_changes(batch)
        deleted = batch.column("__deleted").to_pylist()
        values = [batch.column(name).to_pylist() for name in self.columns]
        keys = self._keys(batch)
        with self._lock:
            for i, key in enumerate(keys):
                row = None if deleted[i] else [column[i] for column in values]
                self._change(key, row)
            while len(self._current) > self.cap:
                oldest = next(iter(self._current))
                self._change(oldest, None)

    def take_delta(self) -> Delta | None:
        """The pending changes as the next numbered delta (None: nothing changed); they are now
        published."""
        with self._lock:
            if not self._pending:
                return None
            remove = list(self._pending)
            insert = [(key, row) for key, row in self._pending.items() if row is not None]
            self._pending.clear()
            self.seq += 1
            apply_changes(self._published, remove, insert)
            return Delta(self.seq, remove, insert)

    def has_pending(self) -> bool:
        """Whether changes wait for the next delta."""
        return bool(self._pending)

    def snapshot(self) -> Snapshot:
        """The published rows and their sequence number (what a view shows after every delta)."""
        with self._lock:
            return Snapshot(self.seq, list(self._published.items()))

    def rows(self) -> list[Row]:
        """The rows as of now, pending changes included."""
        return [row for _, row in self.entries()]

    def entries(self) -> list[tuple[str, Row]]:
        """The rows as of now with their keys, in view order."""
        with self._lock:
            return list(self._current.items())

    # -- internals ---------------------------------------------------------------------------------
    def _last_changes(self, batch: pa.Table) -> pa.Table:
        """Only the rows of ``batch`` that survive it: the last ``cap`` rows of a stream, the last
        change of each key of a table (in change order)."""
        if not self.is_table:
            return batch.slice(max(0, batch.num_rows - self.cap))
        numbered = batch.select(self.key_columns).append_column("__i", pa.array(range(batch.num_rows), pa.int64()))
        last = numbered.group_by(self.key_columns, use_threads=False).aggregate([("__i", "max")])
        positions = last.column("__i_max")
        changes = batch.take(pc.take(positions, pc.sort_indices(positions)))
        return self._from_last_rows(changes)

    def _from_last_rows(self, changes: pa.Table) -> pa.Table:
        """``changes`` (one per key, in order) from where its last ``cap`` live rows start: those
        rows are all the buffer keeps, and every key changed before them is evicted anyway."""
        alive = pc.indices_nonzero(pc.invert(pc.fill_null(changes.column("__deleted"), False)))
        if len(alive) <= self.cap:
            return changes
        return changes.slice(alive[len(alive) - self.cap].as_py())

    def _keys(self, batch: pa.Table) -> list[str]:
        if not self.is_table:
            return [f"#{next(self._row_ids)}" for _ in range(batch.num_rows)]
        columns = [batch.column(name).to_pylist() for name in self.key_columns]
        return [json.dumps(jsonable_row(list(values))) for values in zip(*columns, strict=True)]

    def _change(self, key: str, row: Row | None) -> None:
        self._current.pop(key, None)
        self._pending.pop(key, None)
        if row is not None:
            self._current[key] = row
            self._pending[key] = row
        elif key in self._published:  # a view shows it: tell it to go
            self._pending[key] = None


def apply_changes(rows: OrderedDict[str, Row], remove: Sequence[str], insert: Sequence[tuple[str, Row]]) -> None:
    """Apply a delta to ``rows`` as every view does: drop ``remove``, then append ``insert``."""
    for key in remove:
        rows.pop(key, None)
    for key, row in insert:
        rows[key] = row


def jsonable_row(row: Row) -> Row:
    return [jsonable(value) for value in row]


def jsonable(value: Any) -> Any:
    """``value`` as a JSON message (a widget's, a response's) can carry it: numbers stay numbers,
    times become ISO text, anything else its text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)
