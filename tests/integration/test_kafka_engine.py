"""The engine on Kafka: a stateless CREATE STREAM AS SELECT between topics of a real broker, its
output checked with an independent aiokafka consumer, and a restart that neither loses nor repeats.
Stateful queries, push and pull queries and failures: test_kafka_stateful."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pandas as pd
import pytest
from aiokafka.partitioner import DefaultPartitioner
from kafka_reader import read_all

from nbstream import Engine
from nbstream.errors import CatalogError
from nbstream.log.staged import SOURCE_HEADER
from nbstream.runtime.kafka_query import consumer_group

_runs = itertools.count()

#: Tansu 0.6 refuses idempotent producers (InitProducerId): see test_kafka_log.
CLIENT_OPTIONS = {"enable_idempotence": False}


def ddl(n: int) -> str:
    return f"""
        CREATE STREAM orders (id VARCHAR KEY, amount INT, region VARCHAR)
          WITH (kafka_topic='orders-{n}', value_format='JSON', partitions=3);
        CREATE STREAM big WITH (kafka_topic='big-{n}', partitions=2) AS
          SELECT id, amount * 2 AS doubled, region FROM orders WHERE amount > 10;
    """


@pytest.fixture
def run() -> Iterator[int]:
    """A number naming this test's topics (the broker lives for the whole session)."""
    yield next(_runs)


def produce(engine: Engine, rows: list[tuple[str, int, str, int]]) -> None:
    frame = pd.DataFrame(rows, columns=["id", "amount", "region", "ts"])
    engine.produce_batch("ORDERS", frame, key="id", timestamp="ts")


def read_topic(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, bytes, dict[str, object], int]]:
    """(partition, key, value, timestamp) of every record of ``topic``, by a plain aiokafka consumer."""
    return [(m.partition, m.key, json.loads(m.value), m.timestamp) for m in read_all(bootstrap, topic, partitions)]


def test_csas_filters_and_projects_between_kafka_topics(kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, **CLIENT_OPTIONS) as engine:
        engine.execute(ddl(run))
        produce(engine, [("a", 5, "eu", 1000), ("b", 20, "us", 1001), ("c", 30, "eu", 1002), ("a", 11, "eu", 1003)])
        assert engine.run_until_idle() > 0
    out = read_topic(kafka_bootstrap, f"big-{run}", 2)
    assert sorted((k, v["DOUBLED"], v["REGION"], ts) for _p, k, v, ts in out) == [
        (b"a", 22, "eu", 1003), (b"b", 40, "us", 1001), (b"c", 60, "eu", 1002)]
    partitioner = DefaultPartitioner()
    assert all(p == partitioner(k, [0, 1], [0, 1]) for p, k, _v, _ts in out)


def test_each_output_record_names_its_input_record_in_a_header_beside_the_headers_it_carried(
        kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, **CLIENT_OPTIONS) as engine:
        engine.execute(ddl(run))
        engine.produce("ORDERS", {"AMOUNT": 20, "REGION": "eu"}, key="a", timestamp=1,
                       headers=[("trace", b"t1"), (SOURCE_HEADER, b"upstream/0/9")])  # an inherited one
        engine.produce("ORDERS", {"AMOUNT": 30, "REGION": "us"}, key="b", timestamp=2)
        engine.run_until_idle()
    inputs = {m.key: m for m in read_all(kafka_bootstrap, f"orders-{run}", 3)}
    out = {m.key: m for m in read_all(kafka_bootstrap, f"big-{run}", 2)}
    place = {k: f"orders-{run}/{m.partition}/{m.offset}".encode() for k, m in inputs.items()}
    assert out[b"a"].headers == (("trace", b"t1"), (SOURCE_HEADER, place[b"a"]))  # the inherited one replaced
    assert out[b"b"].headers == ((SOURCE_HEADER, place[b"b"]),)


def test_input_offsets_are_committed_to_a_consumer_group_per_query(kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, **CLIENT_OPTIONS) as engine:
        engine.execute(ddl(run))
        produce(engine, [(f"k{i}", 50, "eu", 1000 + i) for i in range(12)])
        engine.run_until_idle()
        [query_id] = [q.id for q in engine.catalog.running()]
        kafka = engine.log.kafka  # type: ignore[attr-defined]
        committed = kafka.committed_offsets(consumer_group(query_id), f"orders-{run}")
        assert committed == dict(kafka.require(f"orders-{run}").end_offsets)
        assert sum(committed.values()) == 12


def test_a_restarted_engine_resumes_from_the_committed_offsets(kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, **CLIENT_OPTIONS) as first:
        first.execute(ddl(run))
        produce(first, [(f"k{i}", 50 + i, "eu", 1000 + i) for i in range(10)])
        first.run_until_idle()
    with Engine(kafka=kafka_bootstrap, **CLIENT_OPTIONS) as second:  # same statements, same query id
        second.execute(ddl(run))
        produce(second, [(f"k{i}", 50 + i, "eu", 1000 + i) for i in range(10, 15)])
        second.run_until_idle()
    out = read_topic(kafka_bootstrap, f"big-{run}", 2)
    assert sorted(v["DOUBLED"] for _p, _k, v, _ts in out) == [2 * (50 + i) for i in range(15)]


def test_create_stream_creates_its_kafka_topic_or_validates_an_existing_one(kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, **CLIENT_OPTIONS) as engine:
        engine.execute(f"CREATE STREAM a (x INT) WITH (kafka_topic='decl-{run}', value_format='JSON', "
                       "partitions=4, replicas=1);")
        assert engine.log.require(f"decl-{run}").partitions == 4
        engine.execute(f"CREATE STREAM b (x INT) WITH (kafka_topic='decl-{run}', value_format='JSON', partitions=4);")
        with pytest.raises(CatalogError, match="different partition count: 4"):
            engine.execute(f"CREATE STREAM c (x INT) WITH (kafka_topic='decl-{run}', value_format='JSON', "
                           "partitions=2);")


def test_a_backlog_runs_in_batches_each_fetched_while_the_one_before_is_evaluated(
        kafka_bootstrap: str, run: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbstream.log.kafka import KafkaLog
    from nbstream.runtime.kafka_query import KafkaQueryRunner

    monkeypatch.setattr(KafkaQueryRunner, "max_batch", 7)
    fetched_ahead = []
    take = KafkaLog._take_prefetch

    def spy(self: KafkaLog, topic: str, ranges: dict[int, tuple[int, int]]) -> object:
        future = take(self, topic, ranges)
        fetched_ahead.append(future is not None)
        return future

    monkeypatch.setattr(KafkaLog, "_take_prefetch", spy)
    rows = [(f"k{i % 5}", 5 + i, "eu", 1000 + i) for i in range(40)]
    with Engine(kafka=kafka_bootstrap, **CLIENT_OPTIONS) as engine:
        engine.execute(ddl(run))
        produce(engine, rows)
        assert engine.run_until_idle() == 40
        assert engine.queries.runner(engine.catalog.running()[0].id).stats.batches >= 40 // 7
    assert fetched_ahead[0] is False and all(fetched_ahead[1:]) and len(fetched_ahead) >= 40 // 7
    out = read_topic(kafka_bootstrap, f"big-{run}", 2)
    assert sorted((k, v["DOUBLED"], ts) for _p, k, v, ts in out) == sorted(
        (k.encode(), 2 * a, ts) for k, a, _r, ts in rows if a > 10)
