"""Sink connectors on Kafka: a query's output topic in a real broker written to Parquet files and a
DuckDB table mirroring a table, and an engine restart that duplicates nothing."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from nbstream import Engine

_runs = itertools.count(1000)

#: Tansu 0.6 refuses idempotent producers (InitProducerId): see test_kafka_log.
CLIENT_OPTIONS = {"enable_idempotence": False}


@pytest.fixture
def run() -> Iterator[int]:
    """A number naming this test's topics (the broker lives for the whole session)."""
    yield next(_runs)


def ddl(n: int) -> str:
    return f"""
        CREATE STREAM orders (id VARCHAR KEY, item VARCHAR, qty INT)
          WITH (kafka_topic='sink-orders-{n}', value_format='JSON', partitions=3);
        CREATE TABLE per_item WITH (kafka_topic='sink-per-item-{n}', partitions=2) AS
          SELECT item, SUM(qty) AS total FROM orders GROUP BY item;
    """


def produce(engine: Engine, first: int, count: int) -> None:
    frame = pd.DataFrame({"id": [f"o{n}" for n in range(first, first + count)],
                          "item": [f"i{n % 3}" for n in range(first, first + count)],
                          "qty": list(range(first, first + count))})
    engine.produce_batch("ORDERS", frame, key="id")


def test_parquet_and_duckdb_sinks_read_kafka_topics_and_a_restart_duplicates_nothing(
        kafka_bootstrap: str, run: int, tmp_path: Path) -> None:
    state, out, target = tmp_path / "state", tmp_path / "out", tmp_path / "analytics.duckdb"
    with Engine(state, kafka=kafka_bootstrap, **CLIENT_OPTIONS) as engine:
        engine.execute(ddl(run))
        engine.execute(f"CREATE SINK CONNECTOR files WITH ('connector.class'='parquet', 'source'='orders', "
                       f"'path'='{out}', 'rotate.interval.ms'=0);"
                       f"CREATE SINK CONNECTOR mirror WITH ('connector.class'='duckdb', 'source'='per_item', "
                       f"'table'='per_item', 'database'='{target}')")
        produce(engine, 0, 30)
        engine.run_until_idle()
    with Engine(state, kafka=kafka_bootstrap, **CLIENT_OPTIONS) as engine:
        produce(engine, 30, 30)
        engine.run_until_idle()
        expected = sorted(tuple(r) for r in engine.query("SELECT * FROM per_item").itertuples(index=False))
    written = duckdb.sql(f"SELECT ID FROM '{out}/*.parquet'").fetchall()
    assert sorted(written) == sorted((f"o{n}",) for n in range(60))
    with duckdb.connect(str(target)) as con:
        mirrored = sorted(con.sql("SELECT * FROM per_item").fetchall())
    assert mirrored == expected == [(f"i{k}", sum(n for n in range(60) if n % 3 == k)) for k in range(3)]
