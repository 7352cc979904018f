"""SHOW TOPICS EXTENDED and PRINT against a real broker: records written by an independent aiokafka
producer, consumer groups committed by an independent aiokafka consumer."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from nbstream import Engine
from nbstream.runtime.topics import TopicPrinter

_runs = itertools.count()

#: Tansu 0.6 refuses idempotent producers (InitProducerId): see test_kafka_log.
CLIENT_OPTIONS = {"enable_idempotence": False}
T0 = 1_700_000_000_000  # 2023/11/14 22:13:20.000 Z


@pytest.fixture
def topic() -> Iterator[str]:
    """A topic name of this test's own (the broker lives for the whole session)."""
    yield f"print-{next(_runs)}"


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None, int, int]]) -> None:
    """Send (key, value, timestamp, partition) records with a plain aiokafka producer."""
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **CLIENT_OPTIONS)
        await producer.start()
        try:
            for key, value, ts, partition in records:
                await producer.send_and_wait(topic, value, key=key, timestamp_ms=ts, partition=partition)
        finally:
            await producer.stop()
    asyncio.run(send())


def commit_as_outsider(bootstrap: str, group: str, topic: str) -> None:
    """Commit offset 1 of partition 0 of ``topic`` for ``group`` with a plain aiokafka consumer."""
    async def commit() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.commit({tp: OffsetAndMetadata(1, "")})
        finally:
            await consumer.stop()
    asyncio.run(commit())


def views(n: int) -> list[tuple[bytes | None, bytes | None, int, int]]:
    """``n`` keyed JSON records, their times increasing, alternating between partitions 0 and 1."""
    return [(f"u{i}".encode(), json.dumps({"page": f"p{i}"}).encode(), T0 + i, i % 2) for i in range(n)]


def test_print_from_beginning_with_limit_shows_the_earliest_records_and_their_formats(
        kafka_bootstrap: str, topic: str) -> None:
    with Engine(kafka=kafka_bootstrap, **CLIENT_OPTIONS) as engine:
        engine.create_topic(topic, 2)
        produce(kafka_bootstrap, topic, views(5))
        [result] = engine.execute(f"PRINT '{topic}' FROM BEGINNING LIMIT 3")
    assert result.rows == (
        ("2023/11/14 22:13:20.000 Z", "u0", '{"page": "p0"}', 0),
        ("2023/11/14 22:13:20.001 Z", "u1", '{"page": "p1"}', 1),
        ("2023/11/14 22:13:20.002 Z", "u2", '{"page": "p2"}', 0),
    )
    assert result.message == "Key format: KAFKA_STRING\nValue format: JSON or KAFKA_STRING"


def test_print_without_from_beginning_shows_only_records_produced_after_it_started(
        kafka_bootstrap: str, topic: str) -> None:
    with Engine(kafka=kafka_bootstrap, **CLIENT_OPTIONS) as engine:
        engine.create_topic(topic, 2)
        produce(kafka_bootstrap, topic, views(2))
        printer = engine.print_topic(f"PRINT '{topic}'")
        assert isinstance(printer, TopicPrinter)
        assert printer.poll() == []
        produce(kafka_bootstrap, topic, [(None, b"\x00\x00\x00\x07", T0 + 9, 1)])
        [record] = printer.poll()
    assert record.line() == "rowtime: 2023/11/14 22:13:20.009 Z, key: <null>, value: 7, partition: 1"
    assert printer.value_format == "KAFKA_INT"


def test_show_topics_extended_counts_running_queries_and_committed_consumer_groups(
        kafka_bootstrap: str, topic: str) -> None:
    with Engine(kafka=kafka_bootstrap, **CLIENT_OPTIONS) as engine:
        engine.execute(f"""
            CREATE STREAM src (u VARCHAR KEY, page VARCHAR)
              WITH (kafka_topic='{topic}', value_format='JSON', partitions=2);
            CREATE STREAM dst WITH (kafka_topic='{topic}-out') AS SELECT * FROM src;""")
        produce(kafka_bootstrap, topic, views(4))
        engine.run_until_idle()
        commit_as_outsider(kafka_bootstrap, f"outsider-{topic}", topic)
        [plain] = engine.execute("SHOW TOPICS")
        [extended] = engine.execute("SHOW TOPICS EXTENDED")
    assert plain.columns == ("Kafka Topic", "Partitions", "Partition Replicas")
    assert {row[0]: row[1:] for row in plain.rows}[topic] == (2, 1)
    assert extended.columns == ("Kafka Topic", "Partitions", "Partition Replicas", "Consumers", "ConsumerGroups")
    rows = {row[0]: row[1:] for row in extended.rows}
    assert rows[topic] == (2, 1, 1, 2)  # the query; its group and the outsider's
    assert rows[f"{topic}-out"] == (2, 1, 0, 0)
