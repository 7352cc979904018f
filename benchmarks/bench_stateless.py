"""Stateless query throughput: filter + projection over JSON records in the durable log.

Measures, in one run on the same data:
  * ``produce_batch`` ingest of N JSON records into a durable engine (events/s);
  * the persistent query ``CREATE STREAM … AS SELECT … WHERE …`` from records already in the log
    to output committed (events/s);
  * the same decode + filter + projection + encode as ONE DuckDB statement over all the data
    (the lower bound of per-batch overhead), and the ratio between the two.
The query figures are medians of REPEATS runs, each a new persistent query over the same log.

    python benchmarks/bench_stateless.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import numpy as np
import pandas as pd
from _common import rate

from nbstream import Engine
from nbstream.log.embedded import topic_table

SETUP = """
CREATE STREAM pageviews (viewtime BIGINT, userid VARCHAR KEY, pageid VARCHAR, duration DOUBLE)
  WITH (KAFKA_TOPIC='pageviews', VALUE_FORMAT='JSON', PARTITIONS=2, TIMESTAMP='viewtime');
"""
QUERY = """
CREATE STREAM home_views_{n} AS
  SELECT userid, UCASE(pageid) AS page, viewtime, duration * 1000 AS duration_ms
  FROM pageviews WHERE pageid LIKE 'home%';
"""
ONE_BATCH = """CREATE OR REPLACE TABLE one_batch AS
    SELECT "key", encode(to_json({{'PAGE': upper(v.pageid), 'VIEWTIME': v.viewtime,
                                   'DURATION_MS': v.duration * 1000}})::VARCHAR) AS value
    FROM (SELECT "key", json_transform(decode("value"),
           '{{"viewtime":"BIGINT","pageid":"VARCHAR","duration":"DOUBLE"}}') AS v
          FROM {table}) WHERE v.pageid LIKE 'home%'"""
REPEATS = 3  # each figure is the median of this many runs (this machine's timings vary by ~10%)


def events(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    pages = np.array(["home", "home_sale", "about", "cart", "checkout", "search"])
    return pd.DataFrame({
        "viewtime": np.arange(n, dtype=np.int64) + 1_700_000_000_000,
        "userid": pd.Series(rng.integers(0, 1000, n)).map("u{}".format),
        "pageid": pages[rng.integers(0, len(pages), n)],
        "duration": rng.random(n).round(3),
    })


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    n = parser.parse_args().events
    frame = events(n)
    with tempfile.TemporaryDirectory() as state:
        eng = Engine(path=state)
        eng.execute(SETUP)
        ingest = rate(n, lambda: eng.produce_batch("pageviews", frame, key="userid", timestamp="viewtime"))
        engine_rates, duckdb_rates = [], []
        for i in range(REPEATS):  # a new persistent query each time, over the same records in the log
            eng.execute(QUERY.format(n=i))
            engine_rates.append(rate(n, eng.run_until_idle))
            duckdb_rates.append(rate(n, lambda: eng.con.execute(ONE_BATCH.format(table=topic_table("pageviews")))))
        out = eng.log.require("HOME_VIEWS_0").size
        eng.close()
    engine_rate, duckdb_rate = statistics.median(engine_rates), statistics.median(duckdb_rates)
    spread = f"(runs: {', '.join(f'{r:,.0f}' for r in engine_rates)})"
    print(f"events:                          {n:,} (output {out:,})")
    print(f"produce_batch ingest (durable):  {ingest:,.0f} events/s")
    print(f"persistent query, log → commit:  {engine_rate:,.0f} events/s, median {spread}")
    print(f"DuckDB, one batch, same work:    {duckdb_rate:,.0f} events/s, median")
    print(f"ratio engine / one batch:        {engine_rate / duckdb_rate:.2f}")


if __name__ == "__main__":
    main()
