"""The embedded log: topics, partitions, offsets, keyed partitioning, durability."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from nbstream.errors import LogError
from nbstream.log.base import RECORD_SCHEMA
from nbstream.log.embedded import EmbeddedLog


def batch(keys: list[bytes | None], partition: int | None = None) -> pa.Table:
    rows = [{"partition": partition, "offset": 0, "ts": i, "key": k, "value": b"v%d" % i, "headers": [],
             "win_start": None, "win_end": None, "win_type": None} for i, k in enumerate(keys)]
    return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)


def test_offsets_count_up_per_partition_in_append_order() -> None:
    log = EmbeddedLog(duckdb.connect())
    log.create_topic("t", 3)
    log.append("t", batch([b"a", b"b", b"c", b"a", b"a"]))
    log.append("t", batch([b"a"]))
    records = log.read("t").to_pylist()
    for partition in range(3):
        offsets = [r["offset"] for r in records if r["partition"] == partition]
        assert offsets == list(range(len(offsets)))
    assert log.require("t").size == 6


def test_the_same_key_always_lands_in_the_same_partition() -> None:
    log = EmbeddedLog(duckdb.connect())
    log.create_topic("t", 4)
    for _ in range(3):
        log.append("t", batch([b"k1", b"k2", b"k3"]))
    by_key: dict[bytes, set[int]] = {}
    for r in log.read("t").to_pylist():
        by_key.setdefault(r["key"], set()).add(r["partition"])
    assert all(len(p) == 1 for p in by_key.values())


def test_an_explicit_partition_must_exist() -> None:
    log = EmbeddedLog(duckdb.connect())
    log.create_topic("t", 2)
    with pytest.raises(LogError, match="no partition 5"):
        log.append("t", batch([b"k"], partition=5))
    assert log.require("t").size == 0


def test_a_topic_cannot_change_its_partition_count() -> None:
    log = EmbeddedLog(duckdb.connect())
    log.create_topic("t", 2)
    with pytest.raises(LogError, match="2 partitions"):
        log.create_topic("t", 3)


def test_unknown_topics_are_named_with_the_near_miss() -> None:
    log = EmbeddedLog(duckdb.connect())
    log.create_topic("orders", 1)
    with pytest.raises(LogError, match="Did you mean `orders`"):
        log.read("order")


def test_appended_records_survive_reopening_the_database(tmp_path: Path) -> None:
    path = str(tmp_path / "log.duckdb")
    con = duckdb.connect(path)
    log = EmbeddedLog(con)
    log.create_topic("t", 2)
    log.append("t", batch([b"a", b"b", None]))
    con.close()
    reopened = EmbeddedLog(duckdb.connect(path))
    assert reopened.require("t").size == 3
    assert sorted(r["value"] for r in reopened.read("t").to_pylist()) == [b"v0", b"v1", b"v2"]


def test_the_embedded_log_keeps_one_copy_but_refuses_a_replica_count_below_one() -> None:
    log = EmbeddedLog(duckdb.connect())
    assert log.create_topic("t", 2, replicas=3).partitions == 2
    with pytest.raises(LogError, match="REPLICAS must be at least 1"):
        log.create_topic("u", 1, replicas=0)


def timed(timestamps: list[int], partition: int = 0) -> pa.Table:
    rows = [{"partition": partition, "offset": 0, "ts": ts, "key": None, "value": b"v%d" % ts, "headers": [],
             "win_start": None, "win_end": None, "win_type": None} for ts in timestamps]
    return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)


def test_a_topic_with_a_retention_deletes_records_older_than_it_but_never_the_last_one() -> None:
    log = EmbeddedLog(duckdb.connect())
    log.create_topic("t", 2, retention_ms=1_000)
    log.append("t", timed([100, 200, 5_000, 300], partition=0))  # the last record is old, but last
    log.append("t", timed([150, 250], partition=1))
    log.create_topic("forever", 1)
    log.append("forever", timed([100]))

    assert log.delete_expired(now_ms=6_000) == 3
    kept = [(r["partition"], r["offset"], r["ts"]) for r in log.read("t").to_pylist()]
    assert kept == [(0, 2, 5_000), (0, 3, 300), (1, 1, 250)]
    assert log.require("t").end_offsets == {0: 4, 1: 2}
    assert log.read("forever").num_rows == 1
    assert log.delete_expired(now_ms=6_000) == 0


def test_offsets_go_on_after_the_records_before_them_were_deleted(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "log.duckdb"))
    log = EmbeddedLog(con)
    log.create_topic("t", 1, retention_ms=10)
    log.append("t", timed([1, 2, 3]))
    log.delete_expired(now_ms=1_000)
    con.close()

    reopened = EmbeddedLog(duckdb.connect(str(tmp_path / "log.duckdb")))
    assert reopened.retention_ms("t") == 10
    reopened.append("t", timed([4]))
    assert [r["offset"] for r in reopened.read("t").to_pylist()] == [2, 3]
    assert [r["offset"] for r in reopened.read("t", {0: 0}).to_pylist()] == [2, 3]  # reads on from the first kept


def test_a_retention_must_be_positive() -> None:
    log = EmbeddedLog(duckdb.connect())
    with pytest.raises(LogError, match="RETENTION_MS must be at least 1"):
        log.create_topic("t", 1, retention_ms=0)
    assert log.topic("t") is None


def test_a_log_written_before_retentions_existed_opens_with_none() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE __topics (name VARCHAR PRIMARY KEY, partitions INTEGER NOT NULL)")
    log = EmbeddedLog(con)
    log.create_topic("t", 1)
    assert log.retention_ms("t") is None
    assert log.delete_expired(now_ms=10**15) == 0
