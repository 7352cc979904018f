"""Stateful queries between topics of a real Kafka-compatible broker: windowed aggregations and
joins over several partitions, push and pull queries, restarts and crashes of the engine, a broker
that goes away and a topic deleted under a running query. Output is checked with an independent
aiokafka consumer (:mod:`kafka_reader`), keys and partitions as the Java client and Kafka Streams
write them."""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiokafka.partitioner import DefaultPartitioner
from kafka_broker import free_port, tansu_binary, wait_for_port
from kafka_reader import read_all
from produced import EVERY_CHANGE  # type: ignore[import-not-found]

from nbstream import Engine
from nbstream.errors import ExecutionError
from nbstream.log.kafka import PARTITION_COUNT_TTL_S, RETRY_AFTER_S, KafkaLog
from nbstream.log.staged import SOURCE_HEADER
from nbstream.runtime.kafka_query import STALLED, KafkaAggregateRunner, KafkaQueryRunner, consumer_group

#: Tansu 0.6 refuses idempotent producers (InitProducerId): see test_kafka_log.
CLIENT_OPTIONS: dict[str, Any] = {"enable_idempotence": False}
EARLIEST = {"auto.offset.reset": "earliest"}

MINUTE = 60_000
_runs = itertools.count()


@pytest.fixture
def run() -> Iterator[int]:
    """A number naming this test's topics (the broker lives for the whole session)."""
    yield next(_runs)


def orders_ddl(n: int) -> str:
    return f"""CREATE STREAM orders (id VARCHAR KEY, amount INT, region VARCHAR)
                 WITH (kafka_topic='s-orders-{n}', value_format='JSON', partitions=3);"""


def windowed_ddl(n: int) -> str:
    """Orders and their count per region and minute, writing every change (the record cache off)."""
    return orders_ddl(n) + f"""
        SET 'cache.max.bytes.buffering'='0';
        CREATE TABLE per_minute WITH (kafka_topic='s-per-minute-{n}', partitions=2) AS
          SELECT region, COUNT(*) AS n, SUM(amount) AS total FROM orders
          WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY region EMIT CHANGES;"""


def order_rows(first: int, count: int) -> list[tuple[str, int, str, int]]:
    """Orders ``first`` … ``first + count - 1``: (id, amount, region, ts), ten seconds apart."""
    return [(f"o{i}", i % 17, ("eu", "us", "apac")[i % 3], 1_000 + 10_000 * i) for i in range(first, first + count)]


def produce_orders(engine: Engine, rows: list[tuple[str, int, str, int]]) -> None:
    engine.produce_batch("ORDERS", pd.DataFrame(rows, columns=["id", "amount", "region", "ts"]),
                         key="id", timestamp="ts")


def expected_windows(rows: list[tuple[str, int, str, int]]) -> dict[tuple[str, int], tuple[int, int]]:
    """(region, window start) -> (count, total) of one-minute tumbling windows."""
    out: dict[tuple[str, int], tuple[int, int]] = {}
    for _id, amount, region, ts in rows:
        n, total = out.get((region, ts // MINUTE * MINUTE), (0, 0))
        out[(region, ts // MINUTE * MINUTE)] = (n + 1, total + amount)
    return out


def windowed_output(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, str, int, int, int]]:
    """(partition, region, window start, N, TOTAL) of every record, in each partition's order, as
    an independent consumer reads them: the key is the region then the window start (8 bytes,
    big-endian), as Kafka Streams' TimeWindowedSerializer writes it."""
    out = []
    for m in read_all(bootstrap, topic, partitions):
        value = json.loads(m.value)
        out.append((m.partition, m.key[:-8].decode(), int.from_bytes(m.key[-8:], "big"), value["N"], value["TOTAL"]))
    return out


def last_per_window(records: list[tuple[int, str, int, int, int]]) -> dict[tuple[str, int], tuple[int, int]]:
    """The latest value of each (region, window): a table's changelog read into its state."""
    return {(region, start): (n, total) for _p, region, start, n, total in records}


def source_of(message: Any) -> str | None:
    """The input record an output record came from, as its ``nbstream.source`` header names it."""
    values = [v for k, v in message.headers if k == SOURCE_HEADER]
    assert len(values) <= 1
    return values[0].decode() if values else None


def deduplicated(messages: list[Any]) -> list[Any]:
    """What a consumer keeps of ``messages`` deduplicating as the README says: the first record of
    each (key, source header)."""
    kept: dict[tuple[bytes | None, str | None], Any] = {}
    for m in messages:
        kept.setdefault((m.key, source_of(m)), m)
    return list(kept.values())


def input_records(bootstrap: str, topic: str, partitions: int) -> dict[str, Any]:
    """The records of ``topic`` by their place ``topic/partition/offset``."""
    return {f"{topic}/{m.partition}/{m.offset}": m for m in read_all(bootstrap, topic, partitions)}


# -- windowed aggregation ------------------------------------------------------------------------------


def test_a_windowed_aggregation_writes_kafka_streams_windowed_keys_partitioned_like_the_java_client(
        kafka_bootstrap: str, run: int) -> None:
    rows = order_rows(0, 60)
    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as engine:
        engine.execute(windowed_ddl(run))
        produce_orders(engine, rows)
        assert engine.run_until_idle() >= len(rows)
        [query] = engine.catalog.running()
        kafka = engine.log.kafka  # type: ignore[attr-defined]
        input_ends = dict(kafka.require(f"s-orders-{run}").end_offsets)
        assert len([p for p, end in input_ends.items() if end > 0]) == 3  # the input spans partitions
        assert kafka.committed_offsets(consumer_group(query.id), f"s-orders-{run}") == input_ends
    out = windowed_output(kafka_bootstrap, f"s-per-minute-{run}", 2)
    assert len(out) == len(rows)  # EMIT CHANGES: one change per order
    assert last_per_window(out) == expected_windows(rows)
    partitioner = DefaultPartitioner()
    assert all(p == partitioner(region.encode(), [0, 1], [0, 1]) for p, region, *_ in out)
    # each window's changes count up in order within its partition
    for key, changes in itertools.groupby(sorted(out, key=lambda r: (r[1], r[2])), key=lambda r: (r[1], r[2])):
        assert [n for *_k, n, _t in changes] == list(range(1, expected_windows(rows)[key][0] + 1))


def test_an_emit_final_window_names_the_record_whose_time_closed_it(kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as engine:
        engine.execute(orders_ddl(run) + f"""
            CREATE TABLE final_per_minute WITH (kafka_topic='s-final-{run}', partitions=2) AS
              SELECT region, COUNT(*) AS n FROM orders
              WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 0 SECONDS)
              GROUP BY region EMIT FINAL;""")
        rows = order_rows(0, 30)
        produce_orders(engine, rows)
        engine.run_until_idle()
    out = read_all(kafka_bootstrap, f"s-final-{run}", 2)
    inputs = input_records(kafka_bootstrap, f"s-orders-{run}", 3)
    # every window that stream time closed (its end at or before the last order's time), once, with its
    # whole count: the regions span the three input partitions, which fold as one task
    last = max(ts for *_r, ts in rows)
    closed = {(region, start): n for (region, start), (n, _total) in expected_windows(rows).items()
              if start + MINUTE <= last}
    written = [(m.key[:-8].decode(), int.from_bytes(m.key[-8:], "big"), json.loads(m.value)["N"]) for m in out]
    assert sorted(written) == sorted((region, start, n) for (region, start), n in closed.items())
    for m in out:  # stream time (per input partition) passed the window's end at that record
        closer = inputs[source_of(m) or ""]
        start = int.from_bytes(m.key[-8:], "big")
        assert closer.timestamp >= start + MINUTE
        assert not [r for r in inputs.values() if r.partition == closer.partition and r.offset < closer.offset
                    and r.timestamp >= start + MINUTE]  # the first one that did


def test_a_session_window_aggregation_writes_session_keys_whose_merges_replace_the_merged_sessions(
        kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as engine:
        engine.execute(f"""CREATE STREAM clicks (id VARCHAR KEY, region VARCHAR)
                             WITH (kafka_topic='s-clicks-{run}', value_format='JSON', partitions=1);
            CREATE TABLE visits WITH (kafka_topic='s-visits-{run}', partitions=2) AS
              SELECT region, COUNT(*) AS n FROM clicks WINDOW SESSION (30 SECONDS) GROUP BY region EMIT CHANGES;""")
        clicks = [("c0", "eu", 1_000), ("c1", "us", 2_000), ("c2", "eu", 3_000), ("c3", "eu", 100_000)]
        engine.produce_batch("CLICKS", pd.DataFrame(clicks, columns=["id", "region", "ts"]), key="id", timestamp="ts")
        engine.run_until_idle()
        pulled = engine.query("SELECT region, windowstart, windowend, n FROM visits;")
    # Kafka Streams' session key: the key, then the session's end and start (8 bytes big-endian each);
    # a session that grows is a tombstone of its old key and the new one
    table: dict[bytes, int] = {}
    for m in read_all(kafka_bootstrap, f"s-visits-{run}", 2):
        if m.value is None:
            del table[m.key]
        else:
            table[m.key] = json.loads(m.value)["N"]
    sessions = {(k[:-16].decode(), int.from_bytes(k[-8:], "big"), int.from_bytes(k[-16:-8], "big")): n
                for k, n in table.items()}
    expected = {("eu", 1_000, 3_000): 2, ("us", 2_000, 2_000): 1, ("eu", 100_000, 100_000): 1}
    assert sessions == expected
    assert {(r, s, e): n for r, s, e, n in pulled.itertuples(index=False)} == expected


def test_a_pull_query_reads_a_windowed_table_materialized_from_kafka(kafka_bootstrap: str, run: int) -> None:
    rows = order_rows(0, 30)
    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as engine:
        engine.execute(windowed_ddl(run))
        produce_orders(engine, rows)
        engine.run_until_idle()
        frame = engine.query("SELECT region, windowstart, n, total FROM per_minute WHERE region = 'eu';")
    expected = {(r, s): v for (r, s), v in expected_windows(rows).items() if r == "eu"}
    assert {("eu", ws): (n, t) for ws, n, t in zip(frame["WINDOWSTART"], frame["N"], frame["TOTAL"],
                                                   strict=True)} == expected


# -- joins ---------------------------------------------------------------------------------------------


def test_a_stream_table_join_looks_each_order_up_in_the_table_as_it_was_when_the_order_came(
        kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as engine:
        engine.execute(orders_ddl(run) + f"""
            CREATE TABLE managers (region VARCHAR PRIMARY KEY, manager VARCHAR)
              WITH (kafka_topic='s-managers-{run}', value_format='JSON', partitions=2);
            CREATE STREAM enriched WITH (kafka_topic='s-enriched-{run}', partitions=2) AS
              SELECT o.region, o.id, o.amount, m.manager FROM orders o JOIN managers m ON o.region = m.region;""")
        managers = pd.DataFrame([("eu", "ann", 0), ("us", "bob", 0)], columns=["region", "manager", "ts"])
        engine.produce_batch("MANAGERS", managers, key="region", timestamp="ts")
        produce_orders(engine, order_rows(0, 12))
        engine.run_until_idle()
        # a later change of the table: orders after it see the new row, none before it change
        engine.produce_batch("MANAGERS", pd.DataFrame([("eu", "eve", 200_000)], columns=["region", "manager", "ts"]),
                             key="region", timestamp="ts")
        produce_orders(engine, order_rows(12, 12))
        engine.run_until_idle()
    out = read_all(kafka_bootstrap, f"s-enriched-{run}", 2)
    joined = sorted((json.loads(m.value)["ID"], m.key, json.loads(m.value)["MANAGER"]) for m in out)
    expected = sorted((order, region.encode(), {"eu": "ann" if ts < 200_000 else "eve", "us": "bob"}[region])
                      for order, _a, region, ts in order_rows(0, 24) if region != "apac")  # INNER: apac has none
    assert joined == expected
    partitioner = DefaultPartitioner()
    assert all(m.partition == partitioner(m.key, [0, 1], [0, 1]) for m in out)
    orders = input_records(kafka_bootstrap, f"s-orders-{run}", 3)  # each row names the order it joined
    assert all(orders[source_of(m) or ""].key.decode() == json.loads(m.value)["ID"] for m in out)


def test_an_aggregation_over_a_join_of_kafka_topics_commits_both_inputs_to_its_group(
        kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as engine:
        engine.execute(orders_ddl(run) + f"""
            CREATE TABLE managers (region VARCHAR PRIMARY KEY, manager VARCHAR)
              WITH (kafka_topic='s-managers-{run}', value_format='JSON', partitions=2);
            CREATE TABLE per_manager WITH (kafka_topic='s-per-manager-{run}', partitions=2) AS
              SELECT m.manager, COUNT(*) AS n FROM orders o JOIN managers m ON o.region = m.region
              GROUP BY m.manager;""")
        managers = pd.DataFrame([("eu", "ann", 0), ("us", "ann", 0), ("apac", "bob", 0)],
                                columns=["region", "manager", "ts"])
        engine.produce_batch("MANAGERS", managers, key="region", timestamp="ts")
        produce_orders(engine, order_rows(0, 30))
        engine.run_until_idle()
        [query] = engine.catalog.running()
        kafka = engine.log.kafka  # type: ignore[attr-defined]
        for topic in (f"s-orders-{run}", f"s-managers-{run}"):
            assert kafka.committed_offsets(consumer_group(query.id), topic) == dict(kafka.require(topic).end_offsets)
    out = read_all(kafka_bootstrap, f"s-per-manager-{run}", 2)
    assert {m.key: json.loads(m.value)["N"] for m in out} == {b"ann": 20, b"bob": 10}


def test_a_table_table_join_emits_each_change_and_a_tombstone_when_a_row_is_deleted(
        kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as engine:
        engine.execute(f"""
            CREATE TABLE accounts (id VARCHAR PRIMARY KEY, owner VARCHAR)
              WITH (kafka_topic='s-accounts-{run}', value_format='JSON', partitions=2);
            CREATE TABLE balances (id VARCHAR PRIMARY KEY, balance INT)
              WITH (kafka_topic='s-balances-{run}', value_format='JSON', partitions=2);
            CREATE TABLE statements WITH (kafka_topic='s-statements-{run}', partitions=2) AS
              SELECT a.id AS id, a.owner, b.balance FROM accounts a JOIN balances b ON a.id = b.id;""")
        engine.produce("ACCOUNTS", {"OWNER": "ann"}, key="a1", timestamp=1)
        engine.produce("ACCOUNTS", {"OWNER": "bob"}, key="a2", timestamp=2)
        engine.produce("BALANCES", {"BALANCE": 10}, key="a1", timestamp=3)
        engine.produce("BALANCES", {"BALANCE": 20}, key="a2", timestamp=4)
        engine.run_until_idle()
        engine.produce("BALANCES", {"BALANCE": 11}, key="a1", timestamp=5)
        engine.produce("ACCOUNTS", None, key="a2", timestamp=6)  # a2 closed: the joined row goes
        engine.run_until_idle()
        pulled = engine.query("SELECT id, owner, balance FROM statements;")
    out = read_all(kafka_bootstrap, f"s-statements-{run}", 2)
    by_key = {k: [None if m.value is None else json.loads(m.value)["BALANCE"] for m in out if m.key == k]
              for k in (b"a1", b"a2")}
    assert by_key == {b"a1": [10, 11], b"a2": [20, None]}
    # each change names the record that made it: a balance, or the account's deletion
    changes = {**input_records(kafka_bootstrap, f"s-accounts-{run}", 2),
               **input_records(kafka_bootstrap, f"s-balances-{run}", 2)}
    assert all(changes[source_of(m) or ""].key == m.key for m in out)
    assert [(source_of(m) or "").split("/")[0] for m in out if m.key == b"a2"] == [f"s-balances-{run}",
                                                                                  f"s-accounts-{run}"]
    assert [tuple(r) for r in pulled.itertuples(index=False)] == [("a1", "ann", 11)]


def test_a_stream_stream_join_pairs_records_within_the_window_across_partitions(
        kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as engine:
        engine.execute(orders_ddl(run) + f"""
            CREATE STREAM shipments (id VARCHAR KEY, carrier VARCHAR)
              WITH (kafka_topic='s-shipments-{run}', value_format='JSON', partitions=3);
            CREATE STREAM shipped WITH (kafka_topic='s-shipped-{run}', partitions=3) AS
              SELECT o.id, o.amount, s.carrier FROM orders o
              JOIN shipments s WITHIN 1 MINUTE ON o.id = s.id;""")
        orders = order_rows(0, 10)
        produce_orders(engine, orders)
        # o0..o4 ship 30 s after their order (inside the window), o5..o9 ten minutes later (outside)
        ships = [(f"o{i}", f"c{i}", ts + (30_000 if i < 5 else 600_000)) for i, (_id, _a, _r, ts) in enumerate(orders)]
        engine.produce_batch("SHIPMENTS", pd.DataFrame(ships, columns=["id", "carrier", "ts"]), key="id",
                             timestamp="ts")
        engine.run_until_idle()
    out = read_all(kafka_bootstrap, f"s-shipped-{run}", 3)
    assert sorted((m.key, json.loads(m.value)["CARRIER"]) for m in out) == [(f"o{i}".encode(), f"c{i}")
                                                                             for i in range(5)]
    partitioner = DefaultPartitioner()
    assert all(m.partition == partitioner(m.key, [0, 1, 2], [0, 1, 2]) for m in out)


def test_the_joined_rows_one_record_produced_carry_distinct_source_headers(kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as engine:
        engine.execute(orders_ddl(run) + f"""
            CREATE STREAM shipments (id VARCHAR KEY, carrier VARCHAR)
              WITH (kafka_topic='s-shipments-{run}', value_format='JSON', partitions=3);
            CREATE STREAM shipped WITH (kafka_topic='s-shipped-{run}', partitions=1) AS
              SELECT o.id, o.amount, s.carrier FROM orders o
              JOIN shipments s WITHIN 1 MINUTE ON o.id = s.id;""")
        produce_orders(engine, [("o1", 5, "eu", 1_000), ("o1", 7, "eu", 2_000)])
        engine.run_until_idle()
        engine.produce("SHIPMENTS", {"CARRIER": "c1"}, key="o1", timestamp=3_000)  # matches both orders
        engine.run_until_idle()
    out = read_all(kafka_bootstrap, f"s-shipped-{run}", 1)
    assert sorted(json.loads(m.value)["AMOUNT"] for m in out) == [5, 7]
    [shipment] = input_records(kafka_bootstrap, f"s-shipments-{run}", 3)
    assert sorted(source_of(m) or "" for m in out) == [shipment, shipment + "/1"]
    assert len(deduplicated(out)) == 2


# -- push queries --------------------------------------------------------------------------------------


async def _collect(engine: Engine, sql: str) -> list[dict[str, Any]]:
    return [row async for row in engine.push(sql)]


def test_a_push_query_streams_the_rows_of_a_kafka_topic(kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE | EARLIEST, **CLIENT_OPTIONS) as engine:
        engine.execute(orders_ddl(run))
        produce_orders(engine, order_rows(0, 9))
        rows = asyncio.run(_collect(engine, "SELECT id, amount FROM orders WHERE region = 'eu' EMIT CHANGES LIMIT 3;"))
    assert sorted(r["ID"] for r in rows) == ["o0", "o3", "o6"]


def test_an_aggregating_push_query_streams_the_changes_of_a_kafka_topic(kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE | EARLIEST, **CLIENT_OPTIONS) as engine:
        engine.execute(orders_ddl(run))
        produce_orders(engine, order_rows(0, 9))
        rows = asyncio.run(_collect(engine, "SELECT region, COUNT(*) AS n FROM orders GROUP BY region "
                                            "EMIT CHANGES LIMIT 9;"))
    assert sorted((r["REGION"], r["N"]) for r in rows) == sorted((region, n) for region in ("eu", "us", "apac")
                                                                 for n in (1, 2, 3))


def test_a_joining_push_query_streams_the_joined_rows_of_kafka_topics(kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE | EARLIEST, **CLIENT_OPTIONS) as engine:
        engine.execute(orders_ddl(run) + f"""
            CREATE TABLE managers (region VARCHAR PRIMARY KEY, manager VARCHAR)
              WITH (kafka_topic='s-managers-{run}', value_format='JSON', partitions=2);""")
        managers = pd.DataFrame([("eu", "ann", 0), ("us", "bob", 0)], columns=["region", "manager", "ts"])
        engine.produce_batch("MANAGERS", managers, key="region", timestamp="ts")
        produce_orders(engine, order_rows(0, 6))
        rows = asyncio.run(_collect(engine, "SELECT o.region, o.id, m.manager FROM orders o JOIN managers m "
                                            "ON o.region = m.region EMIT CHANGES LIMIT 4;"))
    assert sorted((r["ID"], r["MANAGER"]) for r in rows) == [("o0", "ann"), ("o1", "bob"), ("o3", "ann"), ("o4", "bob")]


# -- restarts and crashes ------------------------------------------------------------------------------


def test_a_restarted_engine_continues_a_windowed_aggregation_without_loss_or_duplicates(
        kafka_bootstrap: str, run: int, tmp_path: Path) -> None:
    rows = order_rows(0, 40)
    with Engine(tmp_path, kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as first:
        first.execute(windowed_ddl(run))
        produce_orders(first, rows[:25])
        first.run_until_idle()
    # state and offsets restored
    with Engine(tmp_path, kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as second:
        produce_orders(second, rows[25:])
        second.run_until_idle()
    out = windowed_output(kafka_bootstrap, f"s-per-minute-{run}", 2)
    assert len(out) == len(rows)
    assert last_per_window(out) == expected_windows(rows)


WORKER = Path(__file__).with_name("kafka_crash_worker.py")


def test_sigkill_of_the_engine_process_mid_stream_loses_no_change_of_a_windowed_aggregation(
        kafka_bootstrap: str, run: int, tmp_path: Path) -> None:
    rng = random.Random(20261127)
    rows = order_rows(0, 500)
    chunks = [rows[i:i + 20] for i in range(0, len(rows), 20)]
    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as producer:
        producer.execute(orders_ddl(run))
        for _kill in range(4):  # start the worker, feed it while it runs, SIGKILL it at a random moment
            worker = subprocess.Popen([sys.executable, str(WORKER), str(tmp_path), kafka_bootstrap, windowed_ddl(run)],
                                      stdout=subprocess.PIPE, text=True)
            assert worker.stdout is not None and worker.stdout.readline().strip() == "UP"
            for _ in range(6):
                if chunks:
                    produce_orders(producer, chunks.pop(0))
                time.sleep(rng.uniform(0.0, 0.15))
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
            worker.stdout.close()
        for chunk in chunks:
            produce_orders(producer, chunk)
    with Engine(tmp_path, kafka=kafka_bootstrap, **CLIENT_OPTIONS) as last:  # resumes the killed one's state
        last.run_until_idle()
    out = windowed_output(kafka_bootstrap, f"s-per-minute-{run}", 2)
    expected = expected_windows(rows)
    # no loss: read as a table, the topic holds the aggregation of every order
    assert last_per_window(out) == expected
    # at-least-once: every change of every window was written, and nothing but those changes
    changes = {(region, start, n) for _p, region, start, n, _t in out}
    assert changes == {(region, start, n) for (region, start), (count, _t) in expected.items()
                       for n in range(1, count + 1)}
    assert len(out) >= len(rows)
    # deduplicated by key and source header, the topic is what a run without a crash writes: one
    # change per order, named by that order's record, each window's changes counting 1, 2, … once
    kept = deduplicated(read_all(kafka_bootstrap, f"s-per-minute-{run}", 2))
    inputs = input_records(kafka_bootstrap, f"s-orders-{run}", 3)
    assert sorted(source_of(m) or "" for m in kept) == sorted(inputs)
    window_changes = collections.Counter((m.key, json.loads(m.value)["N"]) for m in kept)
    assert window_changes == collections.Counter(
        (region.encode() + start.to_bytes(8, "big"), n) for (region, start), (count, _t) in expected.items()
        for n in range(1, count + 1))
    assert all(json.loads(inputs[source_of(m) or ""].value)["REGION"].encode() == m.key[:-8] for m in kept)


class _Crash(BaseException):
    """Stands for the process dying (not an error any code handles)."""


def test_a_crash_after_the_output_was_produced_repeats_only_that_batch_on_restart(
        kafka_bootstrap: str, run: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = order_rows(0, 30)
    with Engine(tmp_path, kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as first:
        first.execute(windowed_ddl(run))
        produce_orders(first, rows[:15])
        [runner] = first.queries.running().values()
        assert isinstance(runner, KafkaAggregateRunner)
        assert runner.step() == 15  # one batch of every partition (regions span them: one task), committed
        done = windowed_output(kafka_bootstrap, f"s-per-minute-{run}", 2)
        produce_orders(first, rows[15:])

        def die(self: KafkaAggregateRunner, ranges: Any) -> None:
            raise _Crash  # the output of this batch is in Kafka; its state and offsets are not committed

        monkeypatch.setattr(KafkaAggregateRunner, "_commit_offsets", die)
        with pytest.raises(_Crash):
            runner.step()
        monkeypatch.undo()
        after = windowed_output(kafka_bootstrap, f"s-per-minute-{run}", 2)
        interrupted = list((collections.Counter(after) - collections.Counter(done)).elements())
        assert interrupted  # the crash came after the batch's output was acknowledged
    with Engine(tmp_path, kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as second:
        second.run_until_idle()
    out = windowed_output(kafka_bootstrap, f"s-per-minute-{run}", 2)
    # no loss: the table read from the topic is the aggregation of every order
    assert last_per_window(out) == expected_windows(rows)
    # duplicates only as documented: the interrupted batch's records, written again alike
    repeats = collections.Counter(out) - collections.Counter(set(out))
    assert sorted(repeats.elements()) == sorted(interrupted)
    assert len(out) == len(rows) + len(interrupted)


def test_a_crash_after_a_stream_batch_was_produced_writes_exactly_that_batch_again(
        kafka_bootstrap: str, run: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ddl = orders_ddl(run) + f"""CREATE STREAM big WITH (kafka_topic='s-big-{run}', partitions=2) AS
                                  SELECT id, amount, region FROM orders WHERE amount > 3;"""
    rows = order_rows(0, 40)

    def records() -> collections.Counter[tuple[bytes, bytes, int]]:
        return collections.Counter((m.key, m.value, m.timestamp) for m in read_all(kafka_bootstrap, f"s-big-{run}", 2))

    with Engine(tmp_path, kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as first:
        first.execute(ddl)
        produce_orders(first, rows[:20])
        first.run_until_idle()
        done = records()
        produce_orders(first, rows[20:])

        def die(self: KafkaQueryRunner, ranges: Any) -> None:
            raise _Crash

        monkeypatch.setattr(KafkaQueryRunner, "_commit_offsets", die)
        with pytest.raises(_Crash):
            first.run_until_idle()
        monkeypatch.undo()
        interrupted = records() - done
    with Engine(tmp_path, kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as second:
        second.run_until_idle()
    out = records()
    expected = {(order.encode(), amount) for order, amount, _r, _ts in rows if amount > 3}
    assert {(key, json.loads(value)["AMOUNT"]) for key, value, _ts in out} == expected  # no loss
    assert out - collections.Counter(set(out)) == interrupted  # the repeats: the interrupted batch
    assert sum(interrupted.values()) == len([r for r in rows[20:] if r[1] > 3])
    # deduplicated by key and source header, the topic is what a run without the crash writes:
    # each kept order once, named by its own input record
    kept = deduplicated(read_all(kafka_bootstrap, f"s-big-{run}", 2))
    inputs = input_records(kafka_bootstrap, f"s-orders-{run}", 3)
    assert sorted((m.key, json.loads(m.value)["AMOUNT"]) for m in kept) == sorted(expected)
    assert all(inputs[source_of(m)].key == m.key and inputs[source_of(m)].timestamp == m.timestamp for m in kept)


# -- failures ------------------------------------------------------------------------------------------


def test_a_topic_deleted_under_a_running_query_fails_that_query_with_a_clear_error(
        kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as engine:
        engine.execute(windowed_ddl(run))
        produce_orders(engine, order_rows(0, 6))
        engine.run_until_idle()
        [query] = engine.catalog.running()
        engine.log.kafka.delete_topic(f"s-orders-{run}")  # type: ignore[attr-defined]
        with pytest.raises(ExecutionError, match=f"topic 's-orders-{run}' was deleted"):
            engine.run_until_idle()
        assert query.state == "ERROR"
        assert f"s-orders-{run}" in (engine.queries.runner(query.id).stats.last_error or "")
        assert engine.run_until_idle() == 0  # a failed query takes no more batches
        engine.log.kafka.delete_topic(f"s-per-minute-{run}")  # type: ignore[attr-defined]
        with pytest.raises(ExecutionError, match="the materialization of table PER_MINUTE stopped: topic "
                                                 f"'s-per-minute-{run}' was deleted .*DROP TABLE PER_MINUTE"):
            engine.run_until_idle()


def test_a_topic_deleted_by_another_client_fails_the_query_at_its_next_batch(
        kafka_bootstrap: str, run: int) -> None:
    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as engine:
        engine.execute(windowed_ddl(run))
        produce_orders(engine, order_rows(0, 6))
        engine.run_until_idle()
        with KafkaLog(kafka_bootstrap, **CLIENT_OPTIONS) as other:
            other.delete_topic(f"s-orders-{run}")
        deadline = time.monotonic() + 10  # well within a call's timeout (60 s): no waiting for one
        with pytest.raises(ExecutionError, match=f"topic 's-orders-{run}' was deleted"):
            while time.monotonic() < deadline:
                engine.run_until_idle()
                time.sleep(0.05)


def test_a_micro_batch_produces_its_output_without_asking_the_broker_for_the_sink_topic_again(
        kafka_bootstrap: str, run: int, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: collections.Counter[str] = collections.Counter()
    call = KafkaLog._call

    def counting(self: KafkaLog, coro: Any, what: str) -> Any:
        calls[what.split(" '")[0]] += 1
        return call(self, coro, what)

    with Engine(kafka=kafka_bootstrap, properties=EVERY_CHANGE, **CLIENT_OPTIONS) as engine:
        engine.execute(windowed_ddl(run))
        [runner] = engine.queries.running().values()
        produce_orders(engine, order_rows(0, 30))
        monkeypatch.setattr(KafkaLog, "_call", counting)
        started, steps = time.monotonic(), 0
        while runner.step():
            steps += 1
        elapsed = time.monotonic() - started
    assert steps == 1  # the regions span the three input partitions: one task, one batch of them all
    # per batch: the input listed with its end offsets (ListOffsets and a confirming fetch: a
    # deleted topic is seen at once), the fetch, one produce — the sink's partition count known from
    # that listing — and the group commit
    assert calls["read the end offsets of"] == 2 * steps + 2  # and the last, idle step's look at the input
    assert calls["list topics"] <= steps + 1 + elapsed / PARTITION_COUNT_TTL_S
    assert calls["produce to"] == steps


class OwnBroker:
    """A broker of one test alone on a fixed port: it can be paused, stopped and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([str(tansu_binary()), "broker", "--listener-url", url,
                                         "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process)

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def own_broker() -> Iterator[OwnBroker]:
    broker = OwnBroker()
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


def test_a_broker_that_goes_away_stalls_the_query_in_its_status_and_it_resumes_without_loss(
        own_broker: OwnBroker) -> None:
    # The broker is paused (SIGSTOP) rather than restarted: Tansu's in-memory storage comes back
    # empty after a restart (the next test).
    bootstrap = own_broker.bootstrap
    rows = order_rows(0, 30)
    with Engine(kafka=bootstrap, request_timeout_ms=1000, call_timeout_s=3, **CLIENT_OPTIONS) as engine:
        engine.execute(windowed_ddl(0))
        produce_orders(engine, rows[:15])
        engine.run_until_idle()
        [query] = engine.catalog.running()
        produce_orders(engine, rows[15:])  # pending when the broker goes away
        own_broker.signal(signal.SIGSTOP)
        try:
            assert engine.run_until_idle() == 0
            [show] = engine.execute("SHOW QUERIES;")
            assert {row[0]: row[1] for row in show.rows}[query.id] == STALLED
            assert "waiting for Kafka" in (engine.queries.runner(query.id).stats.last_error or "")
            assert engine.catalog.running() == [query]  # stalled, not stopped
        finally:
            own_broker.signal(signal.SIGCONT)
        deadline = time.monotonic() + 30
        while query.state == STALLED and time.monotonic() < deadline:
            time.sleep(RETRY_AFTER_S)
            engine.run_until_idle()
        assert (query.state, engine.queries.runner(query.id).stats.last_error) == ("RUNNING", None)
        engine.run_until_idle()
    out = windowed_output(bootstrap, "s-per-minute-0", 2)
    assert last_per_window(out) == expected_windows(rows)
    assert len(out) == len(rows)  # it stalled before producing anything: no duplicates either


def test_a_broker_restarted_empty_stalls_the_query_while_down_then_fails_it_for_its_lost_topics(
        own_broker: OwnBroker) -> None:
    with Engine(kafka=own_broker.bootstrap, request_timeout_ms=1000, call_timeout_s=3, **CLIENT_OPTIONS) as engine:
        engine.execute(windowed_ddl(0))
        produce_orders(engine, order_rows(0, 6))
        engine.run_until_idle()
        [query] = engine.catalog.running()
        own_broker.stop()  # connections refused
        assert engine.run_until_idle() == 0
        assert query.state == STALLED
        own_broker.start()  # Tansu keeps topics in memory: it comes back without them
        deadline = time.monotonic() + 30
        with pytest.raises(ExecutionError, match="topic 's-orders-0' was deleted"):
            while time.monotonic() < deadline:
                time.sleep(RETRY_AFTER_S)
                engine.run_until_idle()
        assert query.state == "ERROR"
