"""The Kafka log as the engine's SQL micro-batch path sees it: fetched batches staged in DuckDB.

The query runners read their input as a SQL relation (:meth:`relation`) and append SQL relations
(:meth:`append_relation`, :meth:`append_routed`), as over the embedded log. :class:`StagedKafkaLog`
gives them the same methods over a :class:`~nbstream.log.kafka.KafkaLog`: a relation is the
fetched records staged into a DuckDB temporary table per topic with the embedded log's columns,
and an appended relation is read out of DuckDB as one Arrow table and produced.

Arrival order (``append_no``, ``append_seq``), which a join follows across its inputs: Kafka has
no order across partitions or topics, so a record's ``append_no`` is the largest timestamp of its
partition up to and including it — records are taken in timestamp order, each partition's in
offset order, as Kafka Streams picks the partition whose next record is the oldest.

Unlike the embedded log, producing is not part of the caller's DuckDB transaction: records are
acknowledged by the broker when :meth:`append_relation` returns, even if the caller then rolls
back. :meth:`confirm` and :meth:`reload` have nothing to do (end offsets are the broker's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import duckdb
import numpy as np
import pyarrow as pa

from nbstream.log.base import RECORD_SCHEMA, SqlLog, TopicInfo
from nbstream.log.kafka import KafkaLog


def stage_table(topic: str) -> str:
    """The DuckDB temporary table holding the last fetched batch of ``topic``."""
    return '"kafka$batch$' + topic.replace('"', '""') + '"'


#: The header naming the input record an output record came from: ``topic/partition/offset``, and
#: ``/n`` after it for the n-th further record (n = 1, 2, …) the same input record produced in its
#: batch (a stream-stream join's several matches). A repeated batch writes the same (key, header).
SOURCE_HEADER = "nbstream.source"

_HEADERS_TYPE = 'STRUCT("key" VARCHAR, "value" BLOB)[]'


def _record_select(source: str | None = None) -> str:
    """SELECT list turning a relation with ``partition`` and APPEND_COLUMNS into RECORD_SCHEMA
    columns; with ``source`` (SQL over the relation, NULL for no source), its value is added as the
    :data:`SOURCE_HEADER` header, replacing one the record carried (the other headers are kept)."""
    headers = f"headers::{_HEADERS_TYPE}"
    if source is not None:
        own = f"'{SOURCE_HEADER}'"
        header = f"{{'key': {own}, 'value': encode({source})}}"
        headers = (f"CASE WHEN ({source}) IS NULL THEN {headers} "
                   f"WHEN coalesce(len({headers}), 0) = 0 THEN [{header}] "  # the usual case, twice as fast
                   f"ELSE list_append(list_filter({headers}, lambda h: h.key <> {own}), {header}) END")
    return ('"partition"::INTEGER AS "partition", 0::BIGINT AS "offset", ts::BIGINT AS ts, "key"::BLOB AS "key", '
            f'"value"::BLOB AS "value", ({headers})::{_HEADERS_TYPE} AS headers, '
            "win_start::BIGINT AS win_start, win_end::BIGINT AS win_end, win_type::VARCHAR AS win_type")

Ranges = Mapping[int, tuple[int, int]]


class StagedKafkaLog(SqlLog):
    """A :class:`KafkaLog` with the relation methods of the embedded log, over DuckDB ``con``."""

    def __init__(self, kafka: KafkaLog, con: duckdb.DuckDBPyConnection) -> None:
        self.kafka = kafka
        self._con = con
        self._staged: dict[str, dict[int, tuple[int, int]]] = {}

    def on(self, con: duckdb.DuckDBPyConnection) -> StagedKafkaLog:
        """The same Kafka log staging into ``con`` (a cursor has its own temporary tables); closing
        the Kafka log stays the owner's business."""
        return StagedKafkaLog(self.kafka, con)

    # -- the Log contract, delegated ------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 1, replicas: int = 1,
                     retention_ms: int | None = None) -> TopicInfo:
        return self.kafka.create_topic(name, partitions, replicas, retention_ms)

    def delete_expired(self, now_ms: int) -> int:
        return self.kafka.delete_expired(now_ms)

    def delete_topic(self, name: str) -> None:
        self.kafka.delete_topic(name)

    def topic(self, name: str) -> TopicInfo | None:
        return self.kafka.topic(name)

    def require(self, name: str) -> TopicInfo:
        return self.kafka.require(name)

    def topics(self) -> Sequence[TopicInfo]:
        return self.kafka.topics()

    def append(self, topic: str, batch: pa.Table) -> None:
        self.kafka.append(topic, batch)

    def read(self, topic: str, start: Mapping[int, int] | None = None, limit: int | None = None) -> pa.Table:
        return self.kafka.read(topic, start, limit)

    def close(self) -> None:
        self.kafka.close()

    # -- reading as SQL ---------------------------------------------------------------------------
    def relation(self, topic: str, ranges: Ranges) -> str:
        """SQL selecting the records of ``topic`` in ``ranges``, fetched from Kafka into a DuckDB
        temporary table per topic (refetched only when ``ranges`` are not within the last fetch of
        the topic, so a batch split to isolate a bad record is not fetched again)."""
        wanted = {p: r for p, r in ranges.items() if r[1] > r[0]}
        if not self._holds(topic, wanted):
            self._stage(topic, wanted)
        conds = " OR ".join(f'("partition" = {p} AND "offset" >= {a} AND "offset" < {b})'
                            for p, (a, b) in wanted.items())
        return f"(SELECT * FROM {stage_table(topic)} WHERE {conds or 'FALSE'})"

    def _holds(self, topic: str, ranges: Ranges) -> bool:
        staged = self._staged.get(topic)
        if staged is None:
            return False
        return all(p in staged and staged[p][0] <= a and b <= staged[p][1] for p, (a, b) in ranges.items())

    def _stage(self, topic: str, ranges: Ranges) -> None:
        fetched = self.kafka.read_ranges(topic, ranges)
        fetched = fetched.append_column("append_no", _running_max_ts(fetched))
        fetched = fetched.append_column("append_seq", pa.array(np.arange(1, fetched.num_rows + 1, dtype=np.int64)))
        self._con.register("__kafka_fetched", fetched)
        try:
            self._con.execute(f"CREATE OR REPLACE TEMP TABLE {stage_table(topic)} AS SELECT * FROM __kafka_fetched")
        finally:
            self._con.unregister("__kafka_fetched")
        self._staged[topic] = dict(ranges)

    # -- writing SQL relations --------------------------------------------------------------------
    def append_relation(self, topic: str, relation: str, *, commit: bool = True) -> dict[int, int]:
        """Produce the rows of ``relation`` (``partition``, APPEND_COLUMNS, ``__seq``) in ``__seq``
        order; a NULL partition is chosen by the Java partitioner. ``commit`` is accepted for the
        embedded log's signature: the records are durable in Kafka either way."""
        del commit
        return self._produce(topic, f"SELECT {_record_select()} FROM {relation} ORDER BY __seq")

    def append_routed(self, topic: str, table: str, *, where: str = "TRUE",
                      source: str | None = None) -> dict[int, int]:
        """Produce the rows of ``table`` matching ``where``. Its column ``p`` (the embedded log's
        routing) is ignored: Kafka records go where the Java partitioner puts them. ``source``: SQL
        over ``table`` giving each row's :data:`SOURCE_HEADER` (NULL: none), computed in DuckDB."""
        return self._produce(topic, self.records_sql(table, where=where, source=source))

    @staticmethod
    def records_sql(table: str, *, where: str = "TRUE", source: str | None = None) -> str:
        """SELECT of the records :meth:`append_routed` would produce, in ``RECORD_SCHEMA`` columns
        (for an outbox: exactly_once_v2 produces them later, in a Kafka transaction)."""
        return f"SELECT {_record_select(source)} FROM {table} WHERE {where} ORDER BY __seq"

    def _produce(self, topic: str, sql: str) -> dict[int, int]:
        batch = self._con.sql(sql).to_arrow_table().cast(RECORD_SCHEMA)
        return self.kafka.append(topic, batch)

    def confirm(self, topic: str, written: Mapping[int, int]) -> None:
        """Nothing to confirm: Kafka keeps the end offsets."""

    def reload(self) -> None:
        """After the caller's transaction rolled back: the staged batches may have rolled back too."""
        self._staged.clear()


def _running_max_ts(fetched: pa.Table) -> pa.Array:
    """Each record's ``append_no``: the largest timestamp of its partition up to and including it,
    over ``fetched`` (ordered by partition, then offset), computed per partition in numpy (a window
    function in DuckDB sorts the batch twice)."""
    ts = fetched.column("ts").to_numpy()
    partitions = fetched.column("partition").to_numpy()
    starts = np.flatnonzero(np.diff(partitions)) + 1
    maxima = [np.maximum.accumulate(part) for part in np.split(ts, starts)] if len(ts) else [ts]
    return pa.array(np.concatenate(maxima), pa.int64())
