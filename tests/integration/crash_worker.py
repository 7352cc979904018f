"""A process that runs a persistent query over a durable engine until it is killed.

Used by test_crash_recovery: ``crash_worker.py STATE START BATCH [WORKLOAD]`` produces numbered
records (ids from START) in batches of BATCH, prints ``ACK first last`` once a batch is
acknowledged (durable), and processes between batches. WORKLOAD names the query (see WORKLOADS).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from nbstream import Engine


@dataclass(frozen=True)
class Input:
    """A frame to produce to ``source`` with ``produce_batch``."""

    source: str
    frame: pd.DataFrame
    key: str
    timestamp: str | None = None


@dataclass(frozen=True)
class Workload:
    """Statements that set the query up, and the inputs produced, in order, for a range of ids."""

    setup: str
    inputs: Callable[[range], list[Input]]

    @property
    def first_source(self) -> str:
        return self.inputs(range(0))[0].source


def _numbered(ids: range) -> list[Input]:
    frame = pd.DataFrame({"id": list(ids), "n": list(ids), "tag": [f"t{i % 7}" for i in ids]})
    return [Input("EVENTS", frame, key="id")]


def _readings(ids: range) -> list[Input]:
    """Readings of 5 keys, times mostly rising with ids, some out of order and some late."""
    frame = pd.DataFrame({"k": [f"k{i % 5}" for i in ids], "v": [i % 11 - 3 for i in ids],
                          "ts": [max(0, 2 * i - (i * 7919) % 61) for i in ids]})
    return [Input("READINGS", frame, key="k", timestamp="ts")]


def _prices_then_orders(ids: range) -> list[Input]:
    """New prices (every third id, ``price`` = the id), then orders of 7 products; ``batch`` (the
    first id) orders the two frames' records: prices of a batch arrive before its orders."""
    priced = [i for i in ids if i % 3 == 0]
    prices = pd.DataFrame({"sku": [f"s{i // 3 % 7}" for i in priced], "price": priced,
                           "batch": [ids.start] * len(priced)})
    orders = pd.DataFrame({"sku": [f"s{i % 7}" for i in ids], "id": list(ids), "qty": [i % 5 + 1 for i in ids],
                           "batch": [ids.start] * len(ids)})
    return [Input("PRICES", prices, key="sku"), Input("ORDERS", orders, key="sku")]


CSAS = Workload(
    setup="""
    CREATE STREAM events (id BIGINT KEY, n BIGINT, tag VARCHAR)
      WITH (KAFKA_TOPIC='events', VALUE_FORMAT='JSON', PARTITIONS=2);
    CREATE STREAM kept AS SELECT id, n, UCASE(tag) AS tag FROM events WHERE n % 3 <> 1;
    """,
    inputs=_numbered)

WINDOWED = Workload(  # every change written (the record cache off): each record shows in the changelog
    setup="""
    SET 'cache.max.bytes.buffering'='0';
    CREATE STREAM readings (k VARCHAR KEY, v BIGINT)
      WITH (KAFKA_TOPIC='readings', VALUE_FORMAT='JSON', PARTITIONS=1);
    CREATE TABLE per_key AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM readings
      WINDOW TUMBLING (SIZE 100 MILLISECONDS, GRACE PERIOD 20 MILLISECONDS) GROUP BY k EMIT CHANGES;
    """,
    inputs=_readings)

JOIN = Workload(
    setup="""
    CREATE TABLE prices (sku VARCHAR PRIMARY KEY, price BIGINT, batch BIGINT)
      WITH (KAFKA_TOPIC='prices', VALUE_FORMAT='JSON', PARTITIONS=2);
    CREATE STREAM orders (sku VARCHAR KEY, id BIGINT, qty BIGINT, batch BIGINT)
      WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=2);
    CREATE STREAM priced AS SELECT o.sku AS sku, o.id AS id, o.qty AS qty, p.price AS price
      FROM orders o LEFT JOIN prices p ON o.sku = p.sku;
    """,
    inputs=_prices_then_orders)

WORKLOADS = {"csas": CSAS, "windowed": WINDOWED, "join": JOIN}


def main(state: str, start: int, batch: int, workload: Workload) -> None:
    eng = Engine(path=state)
    if eng.catalog.find(workload.first_source) is None:
        eng.execute(workload.setup)
    next_id = start
    while True:
        ids = range(next_id, next_id + batch)
        for i in workload.inputs(ids):
            eng.produce_batch(i.source, i.frame, key=i.key, timestamp=i.timestamp)
        print(f"ACK {ids.start} {ids.stop - 1}", flush=True)
        next_id = ids.stop
        eng.run_until_idle()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), WORKLOADS[sys.argv[4] if len(sys.argv) > 4 else "csas"])
