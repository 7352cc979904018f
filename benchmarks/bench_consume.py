"""Reading a query's output back: ``Engine.consume`` over N JSON records in the durable log.

Measures, in one run on the same output topic (a projection of N events, so N output records):
  * ``consume(topic, as_frame=True)``: a DataFrame of the typed columns (records/s);
  * ``consume(topic)``: a list of ``Record`` objects (records/s);
  * a pull query over the same stream, ``SELECT * FROM <stream>`` (rows/s): the baseline, which
    DuckDB decodes and hands to pandas the same way;
each the median of REPEATS runs, with the ratio to the baseline and the peak RSS of the run.

    python benchmarks/bench_consume.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from _common import load_average, peak_rss_mb, rate
from bench_stateless import events  # the same page views

from nbstream import Engine

SETUP = """
CREATE STREAM pageviews (viewtime BIGINT, userid VARCHAR KEY, pageid VARCHAR, duration DOUBLE)
  WITH (KAFKA_TOPIC='pageviews', VALUE_FORMAT='JSON', PARTITIONS=2, TIMESTAMP='viewtime');
CREATE STREAM views AS SELECT userid, UCASE(pageid) AS page, viewtime, duration * 1000 AS duration_ms FROM pageviews;
"""
REPEATS = 3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    n = parser.parse_args().events
    with tempfile.TemporaryDirectory() as state:
        eng = Engine(path=state)
        eng.execute(SETUP)
        eng.produce_batch("pageviews", events(n), key="userid", timestamp="viewtime")
        eng.run_until_idle()
        out = eng.log.require("VIEWS").size
        ways = {
            "consume(as_frame=True), DataFrame": lambda: eng.consume("VIEWS", as_frame=True),
            "consume(), list of Record": lambda: eng.consume("VIEWS"),
            "pull query SELECT * FROM views": lambda: eng.query("SELECT * FROM views"),
        }
        rates = {name: [rate(out, read) for _ in range(REPEATS)] for name, read in ways.items()}
        eng.close()
    baseline = statistics.median(rates["pull query SELECT * FROM views"])
    print(f"records: {n:,} JSON events projected to {out:,} output records; {load_average()}")
    for name, runs in rates.items():
        median = statistics.median(runs)
        print(f"{name:<36} {median:>11,.0f} records/s, median of {', '.join(f'{r:,.0f}' for r in runs)}; "
              f"{median / baseline:.2f}x the pull query")
    print(f"peak RSS: {peak_rss_mb():,.0f} MB; {load_average()}")


if __name__ == "__main__":
    main()
