"""KafkaLog against a real Kafka-compatible broker: topics, round trips, partitioning that other
Kafka clients agree with."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pyarrow as pa
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import DefaultPartitioner
from kafka_reader import read_all

from nbstream.errors import LogError
from nbstream.log.base import RECORD_SCHEMA
from nbstream.log.kafka import KafkaLog

_names = itertools.count()


def fresh(prefix: str = "t") -> str:
    """A topic name no other test uses (the broker lives for the whole session)."""
    return f"{prefix}-{next(_names)}"


@pytest.fixture(scope="module")
def log(kafka_bootstrap: str) -> Iterator[KafkaLog]:
    # Tansu 0.6 answers InitProducerId with UNKNOWN_SERVER_ERROR: no idempotent producer there.
    with KafkaLog(kafka_bootstrap, enable_idempotence=False) as kafka_log:
        yield kafka_log


def batch(rows: list[dict[str, object]]) -> pa.Table:
    base = {"partition": None, "offset": 0, "ts": None, "key": None, "value": None, "headers": [],
            "win_start": None, "win_end": None, "win_type": None}
    return pa.Table.from_pylist([{**base, **row} for row in rows], schema=RECORD_SCHEMA)


def consume_all(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """(partition, offset, key, value) of every record, read by a plain aiokafka consumer."""
    return sorted((m.partition, m.offset, m.key, m.value) for m in read_all(bootstrap, topic, partitions))


def test_create_topic_creates_it_with_its_partitions(log: KafkaLog) -> None:
    name = fresh()
    info = log.create_topic(name, 3)
    assert (info.name, info.partitions, dict(info.end_offsets)) == (name, 3, {0: 0, 1: 0, 2: 0})
    assert name in [t.name for t in log.topics()]


def topic_config(bootstrap: str, topic: str, name: str) -> str | None:
    """Config ``name`` of ``topic`` as the broker describes it to a plain admin client."""
    async def describe() -> str | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        finally:
            await admin.close()
        [(_code, _message, _type, _name, entries)] = response.resources
        return next((value for key, value, *_ in entries if key == name), None)
    return asyncio.run(describe())


def test_a_topic_created_with_a_retention_has_it_as_retention_ms(log: KafkaLog, kafka_bootstrap: str) -> None:
    name = fresh()
    log.create_topic(name, 1, retention_ms=60_000)
    assert topic_config(kafka_bootstrap, name, "retention.ms") == "60000"
    assert log.delete_expired(now_ms=10**15) == 0  # the broker deletes, by its own schedule


def test_creating_an_existing_topic_validates_its_partition_count(log: KafkaLog) -> None:
    name = fresh()
    log.create_topic(name, 2)
    assert log.create_topic(name, 2).partitions == 2
    with pytest.raises(LogError, match=f"'{name}' exists with 2 partitions, not 4"):
        log.create_topic(name, 4)


def test_an_unknown_topic_is_none_and_is_not_created_by_looking(log: KafkaLog) -> None:
    name = fresh("missing")
    assert log.topic(name) is None
    with pytest.raises(LogError, match="does not exist"):
        log.read(name, {})
    assert name not in [t.name for t in log.topics()]


def test_deleted_topics_are_gone(log: KafkaLog) -> None:
    name = fresh()
    log.create_topic(name, 1)
    log.delete_topic(name)
    assert log.topic(name) is None
    with pytest.raises(LogError, match="does not exist"):
        log.delete_topic(name)


def test_append_then_read_round_trips_keys_values_timestamps_and_headers(log: KafkaLog) -> None:
    name = fresh()
    log.create_topic(name, 2)
    rows = [
        {"partition": 0, "ts": 1000, "key": b"k1", "value": b'{"a":1}', "headers": [{"key": "h", "value": b"x"}]},
        {"partition": 0, "ts": 1001, "key": None, "value": b"v", "headers": [{"key": "n", "value": None}]},
        {"partition": 1, "ts": 1002, "key": b"k2", "value": None, "headers": []},
    ]
    log.append(name, batch(rows))
    table = log.read(name, {})
    assert table.schema == RECORD_SCHEMA
    got = [{k: r[k] for k in ("partition", "offset", "ts", "key", "value", "headers")} for r in table.to_pylist()]
    assert got == [{"offset": 0, **rows[0]}, {"offset": 1, **rows[1]}, {"offset": 0, **rows[2]}]


def test_end_offsets_count_every_record_of_multi_record_produces(log: KafkaLog) -> None:
    # Tansu's ListOffsets reports the last batch's base offset + 1; KafkaLog confirms by a fetch.
    name = fresh()
    log.create_topic(name, 1)
    log.append(name, batch([{"partition": 0, "value": b"%d" % i} for i in range(5)]))
    log.append(name, batch([{"partition": 0, "value": b"%d" % i} for i in range(3)]))
    assert dict(log.require(name).end_offsets) == {0: 8}


def test_read_starts_at_the_given_offsets_and_stops_at_the_limit(log: KafkaLog) -> None:
    name = fresh()
    log.create_topic(name, 2)
    log.append(name, batch([{"partition": p, "value": b"%d" % i} for p in (0, 1) for i in range(6)]))
    table = log.read(name, {0: 4}, limit=3)
    assert [(r["partition"], r["offset"]) for r in table.to_pylist()] == [(0, 4), (0, 5), (1, 0), (1, 1), (1, 2)]


def test_a_partition_outside_the_topic_is_refused(log: KafkaLog) -> None:
    name = fresh()
    log.create_topic(name, 2)
    with pytest.raises(LogError, match="has 2 partitions; no partition 5"):
        log.append(name, batch([{"partition": 5, "value": b"v"}]))


def test_keyed_records_land_where_the_java_partitioner_puts_them(log: KafkaLog, kafka_bootstrap: str) -> None:
    name = fresh()
    log.create_topic(name, 5)
    keys = [b"user-%d" % i for i in range(40)]
    log.append(name, batch([{"key": k, "value": b"v"} for k in keys]))
    partitioner = DefaultPartitioner()
    seen = consume_all(kafka_bootstrap, name, 5)
    assert sorted(k for _p, _o, k, _v in seen) == sorted(keys)
    assert len({p for p, *_ in seen}) > 1
    for partition, _offset, key, _value in seen:
        assert partition == partitioner(key, list(range(5)), list(range(5)))


def test_another_client_producing_the_same_keys_agrees_on_partitions(log: KafkaLog, kafka_bootstrap: str) -> None:
    name = fresh()
    log.create_topic(name, 4)
    keys = [b"k%d" % i for i in range(20)]
    log.append(name, batch([{"key": k, "value": b"nbstream"} for k in keys]))

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for k in keys:
                await producer.send_and_wait(name, b"aiokafka", key=k)
        finally:
            await producer.stop()
    asyncio.run(produce())
    partition_of: dict[tuple[bytes | None, bytes | None], int] = {}
    for partition, _offset, key, value in consume_all(kafka_bootstrap, name, 4):
        partition_of[(key, value)] = partition
    assert all(partition_of[(k, b"nbstream")] == partition_of[(k, b"aiokafka")] for k in keys)


def test_windowed_keys_are_written_as_kafka_streams_does_and_read_back(log: KafkaLog, kafka_bootstrap: str) -> None:
    time_topic, session_topic = fresh(), fresh()
    log.create_topic(time_topic, 4)
    log.create_topic(session_topic, 4)
    keys = [f"key-{i}".encode() for i in range(12)]
    log.append(time_topic, batch([{"key": k, "value": b"v", "win_start": 1000 * i, "win_end": 1000 * i + 500,
                                   "win_type": "TIME"} for i, k in enumerate(keys)]))
    log.append(session_topic, batch([{"key": b"s", "value": b"v", "win_start": 7, "win_end": 9,
                                      "win_type": "SESSION"}]))
    # an independent consumer sees Kafka Streams' form: key, then the window start (session: end, start)
    partitioner = DefaultPartitioner()
    seen = {m.key: m.partition for m in read_all(kafka_bootstrap, time_topic, 4)}
    assert seen == {k + (1000 * i).to_bytes(8, "big"): partitioner(k, [0, 1, 2, 3], [0, 1, 2, 3])
                    for i, k in enumerate(keys)}
    [session] = read_all(kafka_bootstrap, session_topic, 4)
    assert session.key == b"s" + (9).to_bytes(8, "big") + (7).to_bytes(8, "big")
    log.declare_window(time_topic, "TUMBLING", 500)
    log.declare_window(session_topic, "SESSION", None)
    back = log.read(time_topic).to_pylist()
    assert sorted((r["key"], r["win_start"], r["win_end"], r["win_type"]) for r in back) == sorted(
        (k, 1000 * i, 1000 * i + 500, "TIME") for i, k in enumerate(keys))
    [row] = log.read(session_topic).to_pylist()
    assert (row["key"], row["win_start"], row["win_end"], row["win_type"]) == (b"s", 7, 9, "SESSION")


def test_the_test_broker_refuses_idempotent_producers(kafka_bootstrap: str) -> None:
    # Documented broker difference: Apache Kafka grants InitProducerId, Tansu 0.6 does not.
    with pytest.raises(LogError, match="enable_idempotence=False"):
        KafkaLog(kafka_bootstrap)


def test_unknown_client_options_are_refused(kafka_bootstrap: str) -> None:
    with pytest.raises(LogError, match=r"unknown Kafka client option.*sasl_pasword"):
        KafkaLog(kafka_bootstrap, sasl_pasword="secret")


def test_a_prefetched_read_returns_what_a_plain_read_does_and_another_read_drops_it(log: KafkaLog) -> None:
    name = fresh()
    log.create_topic(name, 2)
    log.append(name, batch([{"partition": i % 2, "ts": i, "key": b"k%d" % i, "value": b"v%d" % i}
                            for i in range(40)]))
    ranges = {0: (3, 15), 1: (0, 20)}
    log.prefetch(name, ranges)
    prefetched = log.read_ranges(name, ranges)
    assert prefetched.equals(log.read_ranges(name, ranges))
    assert [(p, o) for p, o in zip(prefetched.column("partition").to_pylist(), prefetched.column("offset").to_pylist(),
                                    strict=True)] == [(0, o) for o in range(3, 15)] + [(1, o) for o in range(20)]
    log.prefetch(name, {0: (0, 5)})
    other = log.read_ranges(name, {0: (5, 8)})  # not the prefetched ranges: fetched as asked
    assert other.column("offset").to_pylist() == [5, 6, 7]
    assert log.read_ranges(name, {0: (0, 5)}).column("offset").to_pylist() == [0, 1, 2, 3, 4]
