"""``processing.guarantee='exactly_once_v2'`` on Kafka: refused, with the broker's reason, by a
broker without transactions (the test broker, Tansu 0.6, is one); and the order in which a batch's
DuckDB commit, its outbox and its Kafka transaction meet, checked across crashes against a broker
whose transactions are simulated (produce, then commit the group's offsets): the transactional
producer itself cannot run end to end here."""

from __future__ import annotations

import collections
import itertools
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from kafka_reader import read_all
from produced import EVERY_CHANGE  # type: ignore[import-not-found]

from nbstream import Engine
from nbstream.errors import LogError, PlanError
from nbstream.log.kafka import KafkaLog

CLIENT_OPTIONS: dict[str, Any] = {"enable_idempotence": False}  # Tansu refuses idempotent producers
EXACTLY_ONCE = {"processing.guarantee": "exactly_once_v2"}
_runs = itertools.count()


@pytest.fixture
def run() -> Iterator[int]:
    yield next(_runs)


def csas(n: int) -> str:
    return f"""CREATE STREAM big WITH (kafka_topic='x-big-{n}', partitions=2) AS
                 SELECT id, amount FROM orders WHERE amount > 3;"""


def ddl(n: int) -> str:
    return f"""CREATE STREAM orders (id VARCHAR KEY, amount INT)
                 WITH (kafka_topic='x-orders-{n}', value_format='JSON', partitions=2);""" + csas(n)


def produce(engine: Engine, first: int, count: int) -> None:
    rows = [(f"o{i}", i % 10, 1_000 + i) for i in range(first, first + count)]
    engine.produce_batch("ORDERS", pd.DataFrame(rows, columns=["id", "amount", "ts"]), key="id", timestamp="ts")


def expected(count: int) -> list[tuple[bytes, int]]:
    return sorted((f"o{i}".encode(), i % 10) for i in range(count) if i % 10 > 3)


def output(bootstrap: str, n: int) -> list[tuple[bytes, int]]:
    return sorted((m.key, json.loads(m.value)["AMOUNT"]) for m in read_all(bootstrap, f"x-big-{n}", 2))


def test_exactly_once_on_a_broker_without_transactions_fails_the_query_at_start_with_the_refusal(
        kafka_bootstrap: str, run: int, tmp_path: Path) -> None:
    with Engine(tmp_path, kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as engine:
        engine.execute("SET 'processing.guarantee'='exactly_once_v2';")
        with pytest.raises(LogError, match=r"refused a transactional producer \('nbstream-CSAS_BIG_0'.*"
                                           r"InitProducerId failed.*use 'at_least_once'"):
            engine.execute(ddl(run))
        assert engine.catalog.running() == []  # never a silent fallback to at-least-once
        assert engine.catalog.find("BIG") is None  # nor a stream left without its query
        engine.execute("SET 'processing.guarantee'='at_least_once';")
        engine.execute(csas(run))  # the statement runs again, with the query id it would have had
        assert [q.id for q in engine.catalog.running()] == ["CSAS_BIG_0"]
    with Engine(tmp_path, kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as reopened:
        assert [q.id for q in reopened.catalog.running()] == ["CSAS_BIG_0"]


def test_a_misspelt_processing_guarantee_is_refused_with_the_nearest_value(kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as engine:
        engine.execute("SET 'processing.guarantee'='exactly_once_v3';")
        with pytest.raises(PlanError, match=r"exactly_once_v3.*Did you mean `exactly_once_v2`"):
            engine.execute(ddl(run))


class _Crash(BaseException):
    """Stands for the process dying."""


@pytest.fixture
def simulated_transactions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """KafkaLog transactions simulated on the test broker: produce, then commit the group's offsets
    (a crash between them is what a real transaction rules out, so tests crash only around them).
    Returns the log of what happened."""
    events: list[str] = []

    def start(self: KafkaLog, transactional_id: str) -> None:
        events.append(f"start {transactional_id}")

    def transact(self: KafkaLog, transactional_id: str, topic: str, batch: pa.Table, group: str,
                 offsets: Mapping[str, Mapping[int, int]]) -> dict[int, int]:
        written = self.append(topic, batch)
        for input_topic, positions in offsets.items():
            self.commit_offsets(group, input_topic, positions)
        events.append(f"commit {batch.num_rows}")
        return written

    monkeypatch.setattr(KafkaLog, "start_transactions", start)
    monkeypatch.setattr(KafkaLog, "append_transaction", transact)
    return events


def test_a_crash_after_the_duckdb_commit_delivers_the_outbox_once_on_restart(
        kafka_bootstrap: str, run: int, tmp_path: Path, simulated_transactions: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    with Engine(tmp_path, kafka=kafka_bootstrap, properties=EVERY_CHANGE | EXACTLY_ONCE, **CLIENT_OPTIONS) as first:
        first.execute(ddl(run))
        produce(first, 0, 20)
        first.run_until_idle()
        assert output(kafka_bootstrap, run) == expected(20)
        produce(first, 20, 20)
        transact = KafkaLog.append_transaction

        def die(*args: Any, **kwargs: Any) -> dict[int, int]:
            raise _Crash  # state, offsets and outbox are committed in DuckDB; nothing is in Kafka

        monkeypatch.setattr(KafkaLog, "append_transaction", die)
        with pytest.raises(_Crash):
            first.run_until_idle()
        monkeypatch.setattr(KafkaLog, "append_transaction", transact)
        assert output(kafka_bootstrap, run) == expected(20)
    with Engine(tmp_path, kafka=kafka_bootstrap, properties=EVERY_CHANGE | EXACTLY_ONCE, **CLIENT_OPTIONS) as second:
        second.run_until_idle()
    assert output(kafka_bootstrap, run) == expected(40)  # each record once: no loss, no repeat
    assert simulated_transactions[-1] == f"commit {len(expected(40)) - len(expected(20))}"  # the outbox, at start


def test_a_crash_after_the_kafka_commit_delivers_nothing_again_on_restart(
        kafka_bootstrap: str, run: int, tmp_path: Path, simulated_transactions: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    with Engine(tmp_path, kafka=kafka_bootstrap, properties=EVERY_CHANGE | EXACTLY_ONCE, **CLIENT_OPTIONS) as first:
        first.execute(ddl(run))
        produce(first, 0, 30)
        transact = KafkaLog.append_transaction

        def commit_then_die(*args: Any, **kwargs: Any) -> dict[int, int]:
            transact(*args, **kwargs)
            raise _Crash  # in Kafka with its offsets; the outbox was not emptied

        monkeypatch.setattr(KafkaLog, "append_transaction", commit_then_die)
        with pytest.raises(_Crash):
            first.run_until_idle()
        monkeypatch.setattr(KafkaLog, "append_transaction", transact)
    with Engine(tmp_path, kafka=kafka_bootstrap, properties=EVERY_CHANGE | EXACTLY_ONCE, **CLIENT_OPTIONS) as second:
        produce(second, 30, 10)
        second.run_until_idle()
    out = output(kafka_bootstrap, run)
    assert out == expected(40)
    assert not [k for k, n in collections.Counter(out).items() if n > 1]


def test_an_aggregation_crashed_before_each_kafka_commit_writes_every_change_exactly_once(
        kafka_bootstrap: str, run: int, tmp_path: Path, simulated_transactions: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    aggregation = f"""CREATE STREAM orders (id VARCHAR KEY, amount INT)
                        WITH (kafka_topic='x-orders-{run}', value_format='JSON', partitions=2);
                      CREATE TABLE totals WITH (kafka_topic='x-totals-{run}', partitions=2) AS
                        SELECT id, COUNT(*) AS n FROM orders GROUP BY id;"""
    transact = KafkaLog.append_transaction
    allowed = [0]

    def deliver_then_die(*args: Any, **kwargs: Any) -> dict[int, int]:
        if allowed[0] == 0:
            raise _Crash
        allowed[0] -= 1
        return transact(*args, **kwargs)

    monkeypatch.setattr(KafkaLog, "append_transaction", deliver_then_die)
    for restart in range(4):  # each run delivers the last run's outbox, commits one batch, dies before Kafka's
        with Engine(tmp_path, kafka=kafka_bootstrap, properties=EVERY_CHANGE | EXACTLY_ONCE,
                    **CLIENT_OPTIONS) as engine:
            if restart == 0:
                engine.execute(aggregation)
            engine.produce_batch("ORDERS", pd.DataFrame([(f"k{i % 3}", i, 1_000 * restart + i) for i in range(10)],
                                                        columns=["id", "amount", "ts"]), key="id", timestamp="ts")
            [runner] = engine.queries.running().values()
            allowed[0] = 0 if restart == 0 else 1
            with pytest.raises(_Crash):
                runner.step()
            assert runner.stats.consumed > 0  # the batch committed in DuckDB before the crash
    assert simulated_transactions.count("commit 0") == 0 and len([e for e in simulated_transactions
                                                                  if e.startswith("commit")]) == 3
    monkeypatch.setattr(KafkaLog, "append_transaction", transact)
    with Engine(tmp_path, kafka=kafka_bootstrap, properties=EVERY_CHANGE | EXACTLY_ONCE, **CLIENT_OPTIONS) as last:
        last.run_until_idle()
    out = [(m.key, json.loads(m.value)["N"]) for m in read_all(kafka_bootstrap, f"x-totals-{run}", 2)]
    # every change once: k0 counted 1…16, k1 and k2 1…12, none repeated, none lost
    assert sorted(out) == sorted([(b"k0", n) for n in range(1, 17)] + [(k, n) for k in (b"k1", b"k2")
                                                                       for n in range(1, 13)])
