"""The Kafka log as the engine's SQL micro-batch path sees it: fetched batches staged in DuckDB.

The query runners read their input as a SQL relation (:meth:`relation`) and append SQL relations
(:meth:`append_relation`, :meth:`append_routed`), as over the embedded log. :class:`StagedKafkaLog`
gives them the same methods over a :class:`~nbstream.log.kafka.KafkaLog`: a relation is the
fetched records staged into a DuckDB temporary table with the embedded log's columns, and an
appended relation is read out of DuckDB as one Arrow table and produced.

Unlike the embedded log, producing is not part of the caller's DuckDB transaction: records are
acknowledged by the broker when :meth:`append_relation` returns, even if the caller then rolls
back. :meth:`confirm` and :meth:`reload` have nothing to do (end offsets are the broker's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import duckdb
import pyarrow as pa

from nbstream.log.base import RECORD_SCHEMA, TopicInfo
from nbstream.log.kafka import KafkaLog

#: The DuckDB temporary table holding the last fetched batch.
STAGE_TABLE = '"kafka$batch"'

#: SELECT list turning a relation with ``partition`` and APPEND_COLUMNS into RECORD_SCHEMA columns.
_RECORD_SELECT = (
    '"partition"::INTEGER AS "partition", 0::BIGINT AS "offset", ts::BIGINT AS ts, "key"::BLOB AS "key", '
    '"value"::BLOB AS "value", headers::STRUCT("key" VARCHAR, "value" BLOB)[] AS headers, '
    "win_start::BIGINT AS win_start, win_end::BIGINT AS win_end, win_type::VARCHAR AS win_type"
)

Ranges = Mapping[int, tuple[int, int]]


class StagedKafkaLog:
    """A :class:`KafkaLog` with the relation methods of the embedded log, over DuckDB ``con``."""

    def __init__(self, kafka: KafkaLog, con: duckdb.DuckDBPyConnection) -> None:
        self.kafka = kafka
        self._con = con
        self._staged: tuple[str, dict[int, tuple[int, int]]] | None = None

    # -- the Log contract, delegated ------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 1, replicas: int = 1) -> TopicInfo:
        return self.kafka.create_topic(name, partitions, replicas)

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
        temporary table (refetched only when ``ranges`` are not within the last fetch, so a
        batch split to isolate a bad record is not fetched again)."""
        wanted = {p: r for p, r in ranges.items() if r[1] > r[0]}
        if not self._holds(topic, wanted):
            self._stage(topic, wanted)
        conds = " OR ".join(f'("partition" = {p} AND "offset" >= {a} AND "offset" < {b})'
                            for p, (a, b) in wanted.items())
        return f"(SELECT * FROM {STAGE_TABLE} WHERE {conds or 'FALSE'})"

    def _holds(self, topic: str, ranges: Ranges) -> bool:
        if self._staged is None or self._staged[0] != topic:
            return False
        staged = self._staged[1]
        return all(p in staged and staged[p][0] <= a and b <= staged[p][1] for p, (a, b) in ranges.items())

    def _stage(self, topic: str, ranges: Ranges) -> None:
        fetched = self.kafka.read_ranges(topic, ranges)
        self._con.register("__kafka_fetched", fetched)
        try:
            # arrival order within a topic: its offset order (Kafka has none across topics)
            self._con.execute(
                f"""CREATE OR REPLACE TEMP TABLE {STAGE_TABLE} AS
                SELECT *, 0::BIGINT AS append_no, row_number() OVER (ORDER BY "partition", "offset") AS append_seq
                FROM __kafka_fetched""")
        finally:
            self._con.unregister("__kafka_fetched")
        self._staged = (topic, dict(ranges))

    # -- writing SQL relations --------------------------------------------------------------------
    def append_relation(self, topic: str, relation: str, *, commit: bool = True) -> dict[int, int]:
        """Produce the rows of ``relation`` (``partition``, APPEND_COLUMNS, ``__seq``) in ``__seq``
        order; a NULL partition is chosen by the Java partitioner. ``commit`` is accepted for the
        embedded log's signature: the records are durable in Kafka either way."""
        del commit
        return self._produce(topic, f"SELECT {_RECORD_SELECT} FROM {relation} ORDER BY __seq")

    def append_routed(self, topic: str, table: str, *, where: str = "TRUE") -> dict[int, int]:
        """Produce the rows of ``table`` matching ``where``. Its column ``p`` (the embedded log's
        routing) is ignored: Kafka records go where the Java partitioner puts them."""
        return self._produce(topic, f"SELECT {_RECORD_SELECT} FROM {table} WHERE {where} ORDER BY __seq")

    def _produce(self, topic: str, sql: str) -> dict[int, int]:
        batch = self._con.sql(sql).to_arrow_table().cast(RECORD_SCHEMA)
        return self.kafka.append(topic, batch)

    def confirm(self, topic: str, written: Mapping[int, int]) -> None:
        """Nothing to confirm: Kafka keeps the end offsets."""

    def reload(self) -> None:
        """After the caller's transaction rolled back: the staged batch may have rolled back too."""
        self._staged = None
