"""The staged Kafka log without a broker: fetched records staged in DuckDB per topic, in the arrival
order a join follows (timestamp order, each partition in offset order)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import duckdb
import pyarrow as pa

from nbstream.log.base import RECORD_SCHEMA
from nbstream.log.kafka import KafkaLog
from nbstream.log.staged import StagedKafkaLog


class FetchingLog:
    """Stands for a KafkaLog: ``read_ranges`` answers from records given per topic, and counts fetches."""

    def __init__(self, records: Mapping[str, list[tuple[int, int, int]]]) -> None:
        self.records = records  # topic -> (partition, offset, ts)
        self.fetches = 0

    def read_ranges(self, topic: str, ranges: Mapping[int, tuple[int, int]]) -> pa.Table:
        self.fetches += 1
        rows: list[dict[str, Any]] = [
            {"partition": p, "offset": o, "ts": ts, "key": None, "value": f"{topic}{p}:{o}".encode(), "headers": [],
             "win_start": None, "win_end": None, "win_type": None}
            for p, o, ts in self.records[topic] if p in ranges and ranges[p][0] <= o < ranges[p][1]]
        return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)


Staged = tuple[StagedKafkaLog, FetchingLog, duckdb.DuckDBPyConnection]


def staged(records: Mapping[str, list[tuple[int, int, int]]]) -> Staged:
    con = duckdb.connect()
    fetching = FetchingLog(records)
    return StagedKafkaLog(cast(KafkaLog, fetching), con), fetching, con


def arrival(con: duckdb.DuckDBPyConnection, *relations: str) -> list[str]:
    union = " UNION ALL ".join(f"SELECT value, append_no, append_seq FROM {r}" for r in relations)
    rows = con.execute(f"SELECT value FROM ({union}) ORDER BY append_no, append_seq").fetchall()
    return [v.decode() for (v,) in rows]


def test_records_of_two_topics_arrive_in_timestamp_order_each_partition_in_offset_order() -> None:
    log, _fetching, con = staged({
        "a": [(0, 0, 10), (0, 1, 30), (1, 0, 20)],
        "b": [(0, 0, 15), (0, 1, 5), (0, 2, 40)],  # offset 1 is older than offset 0: it still comes after it
    })
    a = log.relation("a", {0: (0, 2), 1: (0, 1)})
    b = log.relation("b", {0: (0, 3)})
    assert arrival(con, a, b) == ["a0:0", "b0:0", "b0:1", "a1:0", "a0:1", "b0:2"]


def test_a_range_within_the_last_fetch_of_its_topic_is_not_fetched_again() -> None:
    log, fetching, con = staged({"a": [(0, o, o) for o in range(6)], "b": [(0, 0, 1)]})
    log.relation("a", {0: (0, 6)})
    log.relation("b", {0: (0, 1)})  # another topic's fetch keeps the first one staged
    half = log.relation("a", {0: (3, 6)})
    assert fetching.fetches == 2
    assert arrival(con, half) == ["a0:3", "a0:4", "a0:5"]
    log.reload()  # after a rollback the staged batches may be gone
    log.relation("a", {0: (3, 6)})
    assert fetching.fetches == 3
