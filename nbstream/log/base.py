"""The event log contract shared by the embedded log and the Kafka backend.

A log holds *topics*; a topic has a fixed number of *partitions*; each partition is an append-only
sequence of records addressed by *offset* (0, 1, 2, … per partition). A record carries a key and a
value as serialized bytes (either may be ``None``: a null key, a tombstone), a timestamp in epoch
milliseconds, headers, and — for the output of windowed aggregations — the window of its key.

Queries never see which backend they run on: they read batches of records as Arrow tables (or, on
the embedded log, as a SQL relation over the same columns) and append encoded batches.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from nbstream.errors import LogError

# DuckDB warns that Arrow fetched from an ``execute`` result is copied once more than from
# ``con.sql``; but ``con.sql`` reads the statement's text in Python first (~7 ms for the ~7 KB of a
# JSON decoding), far more than copying a batch's rows. See :func:`execute_arrow`.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning,
                        module=r"nbstream\.log\.base")


def execute_arrow(con: duckdb.DuckDBPyConnection, sql: str, parameters: Sequence[object] | None = None) -> pa.Table:
    """The rows of ``sql`` as an Arrow table, in one statement."""
    return con.execute(sql, parameters).to_arrow_table()

#: The columns of a batch of records, in order. ``win_start``/``win_end`` are NULL unless the key
#: is windowed; ``win_type`` is 'TIME' or 'SESSION' then.
RECORD_SCHEMA = pa.schema(
    [
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("ts", pa.int64()),
        ("key", pa.binary()),
        ("value", pa.binary()),
        ("headers", pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
        ("win_start", pa.int64()),
        ("win_end", pa.int64()),
        ("win_type", pa.string()),
    ]
)

#: The same columns as DuckDB column definitions.
RECORD_COLUMNS_SQL = (
    '"partition" INTEGER, "offset" BIGINT, ts BIGINT, "key" BLOB, "value" BLOB, '
    'headers STRUCT("key" VARCHAR, "value" BLOB)[], win_start BIGINT, win_end BIGINT, win_type VARCHAR'
)


@dataclass(frozen=True)
class Record:
    """One record as :meth:`Engine.consume` returns it: ``key``/``value`` are decoded with the
    format of the stream or table over the topic (raw bytes when there is none)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Any
    value: Any
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    window: tuple[int, int] | None = None
    window_type: str | None = None


@dataclass(frozen=True)
class TopicInfo:
    """A topic's name, partition count and the end offset of each partition."""

    name: str
    partitions: int
    end_offsets: Mapping[int, int]

    @property
    def size(self) -> int:
        return sum(self.end_offsets.values())


def check_topic_request(name: str, partitions: int, replicas: int, retention_ms: int | None = None) -> None:
    """A LogError unless ``partitions``, ``replicas`` and ``retention_ms`` (None: keep every
    record) of a topic to create are positive."""
    if partitions < 1:
        raise LogError(f"topic {name}: PARTITIONS must be at least 1, got {partitions}")
    if replicas < 1:
        raise LogError(f"topic {name}: REPLICAS must be at least 1, got {replicas}")
    if retention_ms is not None and retention_ms < 1:
        raise LogError(f"topic {name}: RETENTION_MS must be at least 1 (or -1: keep every record), "
                       f"got {retention_ms}")


def check_existing_topic(existing: TopicInfo, partitions: int) -> TopicInfo:
    """``existing``, if it has the ``partitions`` a CREATE asks for; else a LogError saying both."""
    if existing.partitions != partitions:
        raise LogError(f"topic '{existing.name}' exists with {existing.partitions} partitions, not {partitions}")
    return existing


class Log(Protocol):
    """What the engine needs from an event log."""

    def create_topic(self, name: str, partitions: int = 1, replicas: int = 1,
                     retention_ms: int | None = None) -> TopicInfo:
        """Create ``name`` with ``replicas`` copies of each partition, keeping records for
        ``retention_ms`` after their timestamp (None: for ever), or, if it exists, return it
        (partition count must then match)."""
        ...

    def delete_expired(self, now_ms: int) -> int:
        """Delete the records older than their topic's retention at wall-clock ``now_ms``, but
        each partition's last record (its end offset stays); returns how many were deleted. A
        Kafka cluster does this itself (``log.retention.check.interval.ms``)."""
        ...

    def delete_topic(self, name: str) -> None: ...

    def topic(self, name: str) -> TopicInfo | None:
        """The topic called ``name``, or None."""
        ...

    def topics(self) -> Sequence[TopicInfo]: ...

    def append(self, topic: str, batch: pa.Table) -> None:
        """Append records (``RECORD_SCHEMA`` columns; ``offset`` is ignored and assigned; a null
        ``partition`` is chosen from the key) and make them durable before returning."""
        ...

    def read(self, topic: str, start: Mapping[int, int] | None = None, limit: int | None = None) -> pa.Table:
        """Records of ``topic`` from ``start[partition]`` on (missing partitions from 0), ordered
        by partition and offset; at most ``limit`` per partition."""
        ...


class SqlLog(Log, Protocol):
    """A log the SQL micro-batch path runs on: batches are read and appended as DuckDB relations
    (the embedded log's tables, or Kafka records staged in DuckDB).

    Implementations subclass it explicitly, and so share :meth:`transaction`."""

    def require(self, name: str) -> TopicInfo:
        """The topic ``name``, or a LogError naming the near miss."""
        ...

    def relation(self, topic: str, ranges: Mapping[int, tuple[int, int]]) -> str:
        """SQL selecting the records of ``topic`` in ``ranges`` {partition: (start, end)}, with the
        record columns and the arrival order columns ``append_no``, ``append_seq``."""
        ...

    def append_relation(self, topic: str, relation: str, *, commit: bool = True) -> dict[int, int]:
        """Append the rows of ``relation`` (``partition``, the record columns but ``offset``, and
        ``__seq``); returns the records written per partition."""
        ...

    def append_routed(self, topic: str, table: str, *, where: str = "TRUE") -> dict[int, int]:
        """Append the rows of ``table`` matching ``where`` inside the caller's transaction."""
        ...

    def confirm(self, topic: str, written: Mapping[int, int]) -> None:
        """Called after the caller's transaction that appended ``written`` committed."""
        ...

    def reload(self) -> None:
        """Called after the caller's transaction rolled back."""
        ...

    @contextmanager
    def transaction(self, con: duckdb.DuckDBPyConnection, *,
                    appends: bool = True) -> Iterator[dict[str, dict[int, int]]]:
        """One transaction of ``con`` around a batch, the commit protocol of every writer:

        1. ``BEGIN``;
        2. the caller's statements: appends with ``commit=False``, state, offsets, progress — it
           records what it appended in the dict this yields (records per partition, by topic);
        3. ``COMMIT``, then :meth:`confirm` of each topic's appends.

        If anything fails (the commit included): ``ROLLBACK``, :meth:`reload`, and the error is
        raised; the caller restores what it keeps in memory. A transaction that appends nothing
        (``appends=False``: a push query's, which may run on its cursor beside the engine's
        batch) does not reload: that would read the log on the engine's connection, inside the
        transaction another thread may hold open there."""
        appended: dict[str, dict[int, int]] = {}
        con.execute("BEGIN")
        try:
            yield appended
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            if appends:
                self.reload()
            raise
        for topic, counts in appended.items():
            self.confirm(topic, counts)
