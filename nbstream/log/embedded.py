"""The embedded event log: topics as append-only DuckDB tables, in memory or durable on disk.

Each topic is one table (``RECORD_COLUMNS_SQL``) in the engine's DuckDB database, so a query's
micro-batch reads its input, writes its output and commits its input offsets in *one* DuckDB
transaction (see :mod:`nbstream.runtime.checkpoint`). With a database file, a commit is durable
when it returns: DuckDB syncs its write-ahead log on commit, so an acknowledged append survives
``kill -9``.

Keyed partitioning: a record without an explicit partition goes to ``hash(key) % partitions`` (the
same key always lands in the same partition); null keys are spread round-robin.

Arrival order across topics: every row also stores ``append_no`` (a counter over all appends to the
log) and ``append_seq`` (its order within that append). Together they order records of different
topics as they arrived, which is the order in which a join processes its inputs (ksqlDB's test
driver processes records as they are piped in).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbstream.errors import LogError, did_you_mean
from nbstream.log.base import (
    RECORD_COLUMNS_SQL,
    RECORD_SCHEMA,
    SqlLog,
    TopicInfo,
    check_existing_topic,
    check_topic_request,
    execute_arrow,
)

#: Columns an appended relation must have, besides ``partition`` (NULL = choose from the key).
APPEND_COLUMNS = ("ts", '"key"', '"value"', "headers", "win_start", "win_end", "win_type")

#: The columns of a topic table beyond the record's: its place in the arrival order of the log.
ORDER_COLUMNS_SQL = "append_no BIGINT, append_seq BIGINT"

#: The arrival order of a record among all records of the log, as one sortable expression.
ARRIVAL_ORDER = "append_no, append_seq"


def route_sql(partitions: int) -> str:
    """The partition of a record among ``partitions``: its own if set, else from its key (nulls
    round-robin by ``__seq``)."""
    return (f'CASE WHEN "partition" IS NOT NULL THEN "partition" '
            f'WHEN "key" IS NULL THEN (__seq % {partitions})::INTEGER '
            f'ELSE (hash("key") % {partitions})::INTEGER END')


def topic_table(name: str) -> str:
    """The quoted DuckDB table name holding topic ``name``."""
    return '"log$' + name.replace('"', '""') + '"'


class EmbeddedLog(SqlLog):
    """The :class:`~nbstream.log.base.Log` of an embedded engine, over a DuckDB connection.

    Methods that write take ``commit=False`` when the caller holds a transaction open (the
    checkpoint does); the in-memory end offsets then change only after :meth:`confirm`.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._lock = threading.RLock()
        con.execute(
            "CREATE TABLE IF NOT EXISTS __topics (name VARCHAR PRIMARY KEY, partitions INTEGER NOT NULL)"
        )
        con.execute("ALTER TABLE __topics ADD COLUMN IF NOT EXISTS retention_ms BIGINT")  # NULL: keep all
        self._ends: dict[str, dict[int, int]] = {}
        self._retention: dict[str, int] = {}  # topics that keep records for a time, in ms
        self._appends = 0  # the append_no of the last append
        topics = con.execute("SELECT name, partitions, retention_ms FROM __topics").fetchall()
        for name, partitions, retention in topics:
            self._ends[name] = self._scan_ends(name, partitions)
            if retention is not None:
                self._retention[name] = retention
            last = con.execute(f"SELECT max(append_no) FROM {topic_table(name)}").fetchall()[0][0]
            self._appends = max(self._appends, last or 0)

    # -- topics ---------------------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 1, replicas: int = 1,
                     retention_ms: int | None = None) -> TopicInfo:
        """Create topic ``name`` (see :class:`~nbstream.log.base.Log`); the embedded log keeps one
        copy of everything, so ``replicas`` is only checked to be positive."""
        check_topic_request(name, partitions, replicas, retention_ms)
        with self._lock:
            existing = self.topic(name)
            if existing is not None:
                return check_existing_topic(existing, partitions)
            columns = f"{RECORD_COLUMNS_SQL}, {ORDER_COLUMNS_SQL}"
            self._con.execute(f"CREATE TABLE IF NOT EXISTS {topic_table(name)} ({columns})")
            self._con.execute("INSERT INTO __topics VALUES (?, ?, ?)", [name, partitions, retention_ms])
            self._ends[name] = dict.fromkeys(range(partitions), 0)
            if retention_ms is not None:
                self._retention[name] = retention_ms
            return self.topic(name)  # type: ignore[return-value]

    def delete_topic(self, name: str) -> None:
        with self._lock:
            self.require(name)
            self._con.execute(f"DROP TABLE {topic_table(name)}")
            self._con.execute("DELETE FROM __topics WHERE name = ?", [name])
            del self._ends[name]
            self._retention.pop(name, None)

    def retention_ms(self, name: str) -> int | None:
        """How long topic ``name`` keeps a record after its timestamp (None: for ever)."""
        return self._retention.get(name)

    def delete_expired(self, now_ms: int) -> int:
        """Delete the records whose timestamp is ``retention`` or more before ``now_ms``, in every
        topic with a retention, but the last record of each partition: offsets go on from the end,
        which the log reads from its tables when it reopens. A reader behind the deleted records
        reads on from the first record kept, as a Kafka consumer does whose position was deleted.
        DuckDB drops a row group once all of its rows are deleted, at its next checkpoint, so a
        stream with a retention keeps its memory and its file bounded. The caller runs no batch
        transaction on the connection meanwhile (the engine's lock)."""
        deleted = 0
        with self._lock:
            for name, retention in self._retention.items():
                lasts = " ".join(f"WHEN {p} THEN {end - 1}" for p, end in self._ends[name].items())
                deleted += self._con.execute(
                    f'DELETE FROM {topic_table(name)} WHERE ts < ? AND "offset" < (CASE "partition" {lasts} END)',
                    [now_ms - retention]).fetchall()[0][0]
        return deleted

    def topic(self, name: str) -> TopicInfo | None:
        ends = self._ends.get(name)
        if ends is None:
            return None
        return TopicInfo(name, len(ends), dict(ends))

    def require(self, name: str) -> TopicInfo:
        """The topic ``name``, or a :class:`LogError` naming the near miss."""
        info = self.topic(name)
        if info is None:
            raise LogError(f"topic '{name}' does not exist.{did_you_mean(name, self._ends)}")
        return info

    def topics(self) -> Sequence[TopicInfo]:
        return [self.topic(name) for name in sorted(self._ends)]  # type: ignore[misc]

    # -- writing --------------------------------------------------------------------------------
    def append(self, topic: str, batch: pa.Table) -> None:
        """Append an Arrow batch (``RECORD_SCHEMA`` columns, ``offset`` ignored) durably."""
        with self._lock:
            info = self.require(topic)
            explicit = pc.drop_null(batch.column("partition"))
            if len(explicit) and not pc.all(pc.less(explicit, info.partitions)).as_py():
                raise LogError(f"topic '{topic}' has {info.partitions} partitions; "
                               f"no partition {pc.max(explicit).as_py()}")
            con = self._con
            staged = batch.select([n for n in RECORD_SCHEMA.names if n != "offset"])
            staged = staged.append_column("__seq", pa.array(range(1, batch.num_rows + 1), pa.int64()))
            con.register("__append_arrow", staged)
            try:
                self.append_relation(topic, "__append_arrow")
            finally:
                con.unregister("__append_arrow")

    def append_relation(self, topic: str, relation: str, *, commit: bool = True) -> dict[int, int]:
        """Append the rows of table/view ``relation`` to ``topic``; returns rows written per partition.

        ``relation`` has the columns ``partition`` (NULL: chosen from the key; otherwise a valid
        partition), APPEND_COLUMNS and ``__seq``, the order of the rows (distinct, ascending).
        With ``commit`` (the default) the append is a transaction of its own, durable when this
        returns; with ``commit=False`` the caller owns the open transaction and calls
        :meth:`confirm` after committing it.
        """
        if commit:
            with self._lock, self.transaction(self._con) as appended:
                appended[topic] = written = self.append_relation(topic, relation, commit=False)
            return written
        n = self.require(topic).partitions
        routed = execute_arrow(self._con, f"SELECT {route_sql(n)} AS p, __seq, {', '.join(APPEND_COLUMNS)} "
                                          f"FROM {relation}")
        return self._insert_numbered(topic, routed)

    def _insert_numbered(self, topic: str, routed: pa.Table) -> dict[int, int]:
        """Insert ``routed`` (``p``, ``__seq``, APPEND_COLUMNS), each record numbered after the end
        of its partition in ``__seq`` order, in one statement; returns the records per partition.
        The offsets are counted in numpy over the partition and order columns alone: a window
        function over the records would hold a second copy of them, and a temporary table costs
        catalog changes on every append. Rows are stored in offset order (see
        ``AggregateRunner._arrival_sql``): DuckDB sorts them only if they are not in it already."""
        if routed.num_rows == 0:
            return {}
        partition = routed.column("p").to_numpy()
        order = np.lexsort((routed.column("__seq").to_numpy(), partition))
        in_order = bool(np.all(order[1:] > order[:-1]))
        by_partition = partition[order]
        partitions, firsts, counts = np.unique(by_partition, return_index=True, return_counts=True)
        ends = self.require(topic).end_offsets
        starts = np.array([ends[int(p)] for p in partitions], dtype=np.int64) - firsts
        offsets = np.empty(len(partition), dtype=np.int64)
        offsets[order] = np.arange(len(partition), dtype=np.int64) + np.repeat(starts, counts)
        self._appends += 1  # never reused, even if the transaction rolls back: only the order matters
        self._con.register("__numbered", routed.append_column("__offset", pa.array(offsets)))
        try:
            self._con.execute(f"INSERT INTO {topic_table(topic)} SELECT p, __offset, {', '.join(APPEND_COLUMNS)}, "
                              f"{self._appends}, __seq FROM __numbered{'' if in_order else ' ORDER BY p, __offset'}")
        finally:
            self._con.unregister("__numbered")
        return dict(zip(partitions.tolist(), counts.tolist(), strict=True))

    def append_routed(self, topic: str, table: str, *, where: str = "TRUE") -> dict[int, int]:
        """Like :meth:`append_relation` with ``commit=False``, for the rows of ``table`` matching
        ``where``, whose column ``p`` already holds their partition (:func:`route_sql`)."""
        info = self.require(topic)
        con = self._con
        counts = dict(con.execute(f"SELECT p, count(*) FROM {table} WHERE {where} GROUP BY p").fetchall())
        if counts:
            ends = " ".join(f"WHEN {p} THEN {e}" for p, e in info.end_offsets.items())
            self._appends += 1  # never reused, even if the transaction rolls back: only the order matters
            # Offsets are numbered over (p, __seq) alone and joined back: numbered over the whole rows,
            # the window function held a second copy of the records (twice the memory of the append).
            con.execute(
                f"""INSERT INTO {topic_table(topic)}
                SELECT p, (CASE p {ends} END) + __n - 1, {", ".join(APPEND_COLUMNS)}, {self._appends}, __seq
                FROM {table} JOIN (SELECT p, __seq, row_number() OVER (PARTITION BY p ORDER BY __seq) AS __n
                                   FROM {table} WHERE {where}) USING (p, __seq)
                ORDER BY p, __seq"""  # offset order: see AggregateRunner._arrival_sql
            )
        return counts

    def confirm(self, topic: str, written: Mapping[int, int]) -> None:
        """Advance the known end offsets after a transaction that appended ``written`` committed."""
        with self._lock:
            ends = self._ends.get(topic)
            if ends is None:
                return
            for partition, count in written.items():
                ends[partition] += count

    def reload(self) -> None:
        """Re-read all end offsets from the tables (after a rolled-back transaction)."""
        with self._lock:
            for name, ends in self._ends.items():
                self._ends[name] = self._scan_ends(name, len(ends))

    # -- reading --------------------------------------------------------------------------------
    def relation(self, topic: str, ranges: Mapping[int, tuple[int, int]]) -> str:
        """SQL selecting the records of ``topic`` in ``ranges`` {partition: (start, end)}."""
        conds = " OR ".join(
            f'("partition" = {p} AND "offset" >= {a} AND "offset" < {b})' for p, (a, b) in ranges.items() if b > a
        )
        return f"(SELECT * FROM {topic_table(topic)} WHERE {conds or 'FALSE'})"

    def read(self, topic: str, start: Mapping[int, int] | None = None, limit: int | None = None) -> pa.Table:
        info = self.require(topic)
        start = start or {}
        ranges = {p: (start.get(p, 0), end) for p, end in info.end_offsets.items()}
        if limit is not None:
            ranges = {p: (a, min(b, a + limit)) for p, (a, b) in ranges.items()}
        with self._lock:
            sql = (f'SELECT * EXCLUDE (append_no, append_seq) FROM {self.relation(topic, ranges)} '
                   'ORDER BY "partition", "offset"')
            return self._con.sql(sql).to_arrow_table()

    def _scan_ends(self, name: str, partitions: int) -> dict[int, int]:
        ends = dict.fromkeys(range(partitions), 0)
        rows = self._con.execute(
            f'SELECT "partition", max("offset") + 1 FROM {topic_table(name)} GROUP BY "partition"'
        ).fetchall()
        ends.update({p: e for p, e in rows})
        return ends
