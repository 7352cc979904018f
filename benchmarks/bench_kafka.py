"""Kafka throughput and latency: a filtering persistent query between two Kafka topics.

Starts the test broker (Tansu, as the integration tests do), fills an input topic with N JSON
messages, then measures in one run over the same messages:
  * nbstream: ``CREATE STREAM … AS SELECT … WHERE …`` on ``Engine(kafka=…)``, from the first
    fetch to the last output record acknowledged by the broker (input messages/s);
  * a naive aiokafka loop doing the same work: ``getmany`` to consume, ``json.loads`` each
    message, the same filter and projection, one ``send`` per output message (input messages/s);
  * for both, the CPU seconds of this process and of the broker, and input messages per CPU
    second: on a machine shared with other work, wall-clock rates follow its load, CPU time less;
  * end-to-end latency at a light load: one record every ~20 ms into the input topic of a running
    query, timed until an independent consumer reads it from the output topic (p50/p99), with the
    engine and that consumer at each ``fetch_max_wait_ms`` of FETCH_WAITS_MS.

    python benchmarks/bench_kafka.py [--messages 1000000] [--latency-records 250]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from _common import percentile, rate
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from nbstream import Engine
from nbstream.log.base import RECORD_SCHEMA
from nbstream.log.kafka import KafkaLog

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from kafka_broker import Broker, started_broker  # the integration tests' broker, not a copy

PARTITIONS = 2
PAGES = ("home", "home_sale", "about", "cart", "checkout", "search")
SOURCE = """CREATE STREAM {name} (userid VARCHAR KEY, viewtime BIGINT, pageid VARCHAR, duration DOUBLE,
  sent_us BIGINT) WITH (KAFKA_TOPIC='{topic}', VALUE_FORMAT='JSON', PARTITIONS={partitions});"""
QUERY = """CREATE STREAM {name} WITH (KAFKA_TOPIC='{topic}') AS
  SELECT userid, UCASE(pageid) AS page, viewtime, duration * 1000 AS duration_ms, sent_us
  FROM {source} WHERE pageid LIKE 'home%';"""
FETCH_WAITS_MS = (500, 5)
LATENCY_INTERVAL_S = 0.02
#: The clients never use idempotent producers: the test broker refuses InitProducerId.
CLIENT = {"enable_idempotence": False}


def input_messages(n: int) -> pa.Table:
    """``n`` keyed JSON page views as a RECORD_SCHEMA batch."""
    rng = np.random.default_rng(7)
    users, pages = rng.integers(0, 1000, n), rng.integers(0, len(PAGES), n)
    durations = rng.random(n).round(3)
    values = [json.dumps({"viewtime": 1_700_000_000_000 + i, "pageid": PAGES[p], "duration": d,
                          "sent_us": 0}).encode()
              for i, (p, d) in enumerate(zip(pages.tolist(), durations.tolist(), strict=True))]
    return pa.table({
        "partition": pa.nulls(n, pa.int32()), "offset": pa.nulls(n, pa.int64()),
        "ts": pa.array(np.arange(n, dtype=np.int64) + 1_700_000_000_000),
        "key": pa.array([f"u{u}".encode() for u in users.tolist()], pa.binary()),
        "value": pa.array(values, pa.binary()), "headers": pa.nulls(n, RECORD_SCHEMA.field("headers").type),
        "win_start": pa.nulls(n, pa.int64()), "win_end": pa.nulls(n, pa.int64()),
        "win_type": pa.nulls(n, pa.string()),
    }, schema=RECORD_SCHEMA)


def fill(bootstrap: str, topic: str, n: int) -> None:
    with KafkaLog(bootstrap, **CLIENT) as log:
        log.create_topic(topic, PARTITIONS)
        batch = input_messages(n)
        for start in range(0, n, 100_000):
            log.append(topic, batch.slice(start, 100_000))


@dataclass(frozen=True)
class Run:
    """One way of moving the messages: input messages/s (wall clock), CPU seconds of this process
    and of the broker (they share the machine with whatever else runs), output records."""

    messages_per_s: float
    cpu_s: float
    broker_cpu_s: float
    output: int

    def per_cpu_s(self, n: int) -> float:
        """Input messages per CPU second of this process and the broker together."""
        return n / (self.cpu_s + self.broker_cpu_s)


def measured(broker: Broker, n: int, work: Callable[[], int]) -> Run:
    """Run ``work`` (returning its output count) over ``n`` messages and measure it."""
    output = 0

    def run() -> None:
        nonlocal output
        output = work()

    cpu, broker_cpu = time.process_time(), broker.cpu_seconds()
    messages_per_s = rate(n, run)
    return Run(messages_per_s, time.process_time() - cpu, broker.cpu_seconds() - broker_cpu, output)


def engine_run(broker: Broker, topic: str, n: int) -> Run:
    """The persistent query, measured from its first fetch to its last output acknowledged."""
    with Engine(kafka=broker.bootstrap, **CLIENT) as engine:
        engine.execute(SOURCE.format(name="views", topic=topic, partitions=PARTITIONS))
        engine.execute(QUERY.format(name="home_views", topic="engine_out", source="views"))

        def work() -> int:
            engine.run_until_idle()
            return engine.log.require("engine_out").size

        return measured(broker, n, work)


async def naive_loop(bootstrap: str, topic: str, n: int) -> int:
    """The same filter and projection, one message at a time; returns the output count."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **CLIENT)
    await consumer.start()
    await producer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    consumed = written = 0
    try:
        while consumed < n:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                for message in messages:
                    consumed += 1
                    view = json.loads(message.value)
                    if view["pageid"].startswith("home"):
                        out = {"PAGE": view["pageid"].upper(), "VIEWTIME": view["viewtime"],
                               "DURATION_MS": view["duration"] * 1000, "SENT_US": view["sent_us"]}
                        await producer.send("naive_out", json.dumps(out).encode(), key=message.key)
                        written += 1
        await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()
    return written


async def latencies(bootstrap: str, fetch_max_wait_ms: int, records: int) -> list[float]:
    """Milliseconds from producing each of ``records`` sparse input records until an independent
    consumer reads its output, with a live engine at ``fetch_max_wait_ms``."""
    source, sink = f"lat_in_{fetch_max_wait_ms}", f"lat_out_{fetch_max_wait_ms}"
    engine = Engine(kafka=bootstrap, fetch_max_wait_ms=fetch_max_wait_ms, **CLIENT)
    engine.execute(SOURCE.format(name=source, topic=source, partitions=1))
    engine.execute(QUERY.format(name=sink, topic=sink, source=source))
    stop = threading.Event()

    def drive() -> None:
        while not stop.is_set():
            if engine.run_until_idle() == 0:
                time.sleep(0.001)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, **CLIENT)
    consumer = AIOKafkaConsumer(sink, bootstrap_servers=bootstrap, fetch_max_wait_ms=fetch_max_wait_ms,
                                auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    samples: list[float] = []

    async def send_all() -> None:
        for i in range(records):
            value = {"viewtime": i, "pageid": "home", "duration": 1.0, "sent_us": time.time_ns() // 1000}
            await producer.send_and_wait(source, json.dumps(value).encode(), key=b"u1")
            await asyncio.sleep(LATENCY_INTERVAL_S)

    sender = asyncio.create_task(send_all())
    try:
        while len(samples) < records:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                now_us = time.time_ns() // 1000
                samples += [(now_us - json.loads(m.value)["SENT_US"]) / 1000 for m in messages]
        await sender
    finally:
        stop.set()
        driver.join()
        await consumer.stop()
        await producer.stop()
        engine.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--latency-records", type=int, default=250)
    args = parser.parse_args()
    n = args.messages
    with started_broker() as broker:
        fill(broker.bootstrap, "views", n)
        nbstream = engine_run(broker, "views", n)
        naive = measured(broker, n, lambda: asyncio.run(naive_loop(broker.bootstrap, "views", n)))
        waits = {w: asyncio.run(latencies(broker.bootstrap, w, args.latency_records)) for w in FETCH_WAITS_MS}
    print(f"messages:                        {n:,} JSON, {PARTITIONS} partitions, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name, run in (("nbstream persistent query:", nbstream), ("naive aiokafka loop:", naive)):
        print(f"{name:<33}{run.messages_per_s:,.0f} messages/s; CPU {run.cpu_s:.1f} s + broker "
              f"{run.broker_cpu_s:.1f} s = {run.per_cpu_s(n):,.0f} messages per CPU second (output {run.output:,})")
    print(f"ratio nbstream / naive:          {nbstream.messages_per_s / naive.messages_per_s:.2f} "
          f"(per CPU second: {nbstream.per_cpu_s(n) / naive.per_cpu_s(n):.2f})")
    for wait, samples in waits.items():
        print(f"latency, fetch_max_wait_ms={wait:<4} p50 {percentile(samples, 0.5):7.1f} ms, "
              f"p99 {percentile(samples, 0.99):7.1f} ms ({len(samples)} records every "
              f"{LATENCY_INTERVAL_S * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
