"""Windowed aggregation and pull-query benchmarks over JSON records in the durable log.

Measures, in one run, each engine figure beside DuckDB doing the same work as ONE statement over
all the data (the lower bound of per-batch overhead):
  1. a 1-second tumbling COUNT/SUM per key over 1,000 keys, EMIT FINAL, and EMIT CHANGES both
     writing every change (the record cache off) and through the record cache (ksqlDB's default)
     (events/s of the aggregation query, records already in the log → output committed and the
     table materialized for pull queries);
  2. a 10 s / 1 s hopping AVG per category, EMIT FINAL (events/s);
  3. pull-query point lookups on a 1M-key table: p50/p99 latency of ``Engine.query`` with a
     ``:key`` parameter (planned once, then cached), of a literal query text planned per call,
     and of DuckDB's own lookup on the state table (the same SQL text, as a DataFrame);
  4. a stream-table join, and the same join followed by a 1 s tumbling COUNT per region (EMIT FINAL).
Event times advance 1 ms per 10 events (1M events span 100 s of event time: 10,000 events/s, about 10
per key and second) with no grace period, so
windows close; the stream has one partition (with two, arrival order across partitions would make
one partition's records late by the other's stream time).

Each engine figure is printed with the peak RSS of the process while the engine ran it, and the run
ends with the peak of the whole run. An aggregation's output is checked against DuckDB's one statement: EMIT FINAL must
write every window that stream time closed (end + grace at or before the last event's time), EMIT
CHANGES one record per event, or through the record cache one per key, window and batch. A
difference is printed beside the figure and fails the run at the end.

    python benchmarks/bench_windowed.py [--events 1000000] [--keys 1000000] [--lookups 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from _common import load_average, peak_rss_mb, percentile, rate, reset_peak_rss

from nbstream import Engine
from nbstream.errors import UnsupportedError
from nbstream.log.embedded import topic_table
from nbstream.runtime.materialize import Materializer
from nbstream.runtime.query import MAX_BATCH

CLICKS = """
CREATE STREAM clicks (userid VARCHAR KEY, category VARCHAR, amount DOUBLE, ts BIGINT)
  WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON', PARTITIONS=1, TIMESTAMP='ts');
"""
TUMBLING = """
CREATE TABLE per_second_{name} AS SELECT userid, COUNT(*) AS n, SUM(amount) AS total FROM clicks
  WINDOW TUMBLING (SIZE 1 SECOND, GRACE PERIOD 0 SECONDS) GROUP BY userid EMIT {emit};
"""
#: The record cache off for the query created after it (``UNSET`` after it), so that it writes every change.
EVERY_CHANGE = "SET 'cache.max.bytes.buffering'='0';{statement}UNSET 'cache.max.bytes.buffering';"
#: What EMIT CHANGES through the record cache writes: each key's window once per micro-batch that changed
#: it (a backlog of one partition is read in batches of MAX_BATCH records).
CACHED_DUE = """SELECT count(*) FROM (SELECT DISTINCT decode("key"),
    json_extract(decode("value"), '$.TS')::BIGINT // 1000, "offset" // {batch} FROM {table})"""
HOPPING = """
CREATE TABLE avg_by_category AS SELECT category, AVG(amount) AS avg_amount FROM clicks
  WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 1 SECOND, GRACE PERIOD 0 SECONDS) GROUP BY category EMIT FINAL;
"""
#: DuckDB alone: decode, window, aggregate and encode the output, as one statement. (The records'
#: fields are named as the stream's columns, upper case; json_transform matches names exactly.)
DECODED = """(SELECT decode("key") AS k, v.* FROM (SELECT "key", json_transform(decode("value"),
              '{{"CATEGORY":"VARCHAR","AMOUNT":"DOUBLE","TS":"BIGINT"}}') AS v FROM {table}))"""
ONE_BATCH_TUMBLING = """CREATE OR REPLACE TABLE one_batch AS
    SELECT k, ts - ts % 1000 AS ws, encode(to_json({{'N': count(*), 'TOTAL': sum(amount)}})::VARCHAR) AS value
    FROM {decoded} GROUP BY ALL"""
ONE_BATCH_HOPPING = """CREATE OR REPLACE TABLE one_batch AS
    SELECT category, ws, encode(to_json({{'AVG_AMOUNT': avg(amount)}})::VARCHAR) AS value
    FROM (SELECT *, unnest(generate_series(greatest(0, (ts - 9000) // 1000 * 1000), ts // 1000 * 1000, 1000)) AS ws
          FROM {decoded}) GROUP BY ALL"""
USERS = """
CREATE TABLE users (userid VARCHAR PRIMARY KEY, region VARCHAR, level INT)
  WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON', PARTITIONS=1);
"""
JOIN = """
CREATE STREAM enriched AS SELECT c.userid AS userid, u.region, c.amount FROM clicks c
  JOIN users u ON c.userid = u.userid;
"""
JOIN_WINDOWED = """
CREATE TABLE per_region AS SELECT u.region AS region, COUNT(*) AS n FROM clicks c JOIN users u ON c.userid = u.userid
  WINDOW TUMBLING (SIZE 1 SECOND, GRACE PERIOD 0 SECONDS) GROUP BY u.region EMIT FINAL;
"""
ONE_BATCH_JOIN_WINDOWED = """CREATE OR REPLACE TABLE one_batch AS
    SELECT u.region, c.ts - c.ts % 1000 AS ws, encode(to_json({{'N': count(*)}})::VARCHAR) AS value
    FROM {decoded} c JOIN (SELECT decode("key") AS k, json_extract_string(decode("value"), '$.REGION') AS region
                           FROM "log$users") u ON c.k = u.k
    GROUP BY ALL"""
START = 1_700_000_000_000
EVENTS_PER_MS = 10  # event-time density: 10,000 events per second of event time


def clicks(n: int, keys: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    categories = np.array([f"cat{i}" for i in range(20)])
    return pd.DataFrame({
        "userid": pd.Series(rng.integers(0, keys, n)).map("u{}".format),
        "category": categories[rng.integers(0, len(categories), n)],
        "amount": rng.random(n).round(2),
        "ts": START + np.arange(n, dtype=np.int64) // EVENTS_PER_MS,
    })


def drain_query(eng: Engine, statement: str) -> int:
    """Create the query of ``statement`` and run only it, and the materialization of the table it
    writes (the state pull queries read, part of the work of a CREATE TABLE AS), until its input is
    consumed."""
    result = next(r for r in eng.execute(statement) if r.query_id is not None)
    runner = eng.queries.runner(result.query_id)
    sink = runner.sink.name if runner.sink is not None else None
    tables = [m for query_id, m in eng.queries.workers()
              if query_id is None and isinstance(m, Materializer) and m.source.name == sink]
    while runner.step():
        pass
    for table in tables:
        while table.step():
            pass
    return runner.stats.emitted


@dataclass
class Run:
    """Figures of one workload: engine events/s and peak RSS (MB), DuckDB's one statement's events/s,
    output records and the records due (as DuckDB's statement says; None: not checked)."""

    rate: float
    peak_mb: float
    duckdb: float | None = None
    out: int | None = None
    due: int | None = None


class Report:
    """Runs workloads, measuring the peak RSS of each, prints their lines with it and keeps the peak of
    the whole run and the outputs that differ from what is due."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self.mismatches: list[str] = []

    def measure(self, events: int, work: Callable[[], object]) -> tuple[float, float]:
        """(events/s, peak RSS in MB) of running ``work`` once."""
        reset_peak_rss()
        events_per_s = rate(events, work)
        peak = peak_rss_mb()
        self.peak_mb = max(self.peak_mb, peak)
        return events_per_s, peak

    def line(self, name: str, run: Run) -> None:
        text = f"{name:<46}{run.rate:>11,.0f} events/s"
        if run.out is not None:
            text += f" ({self._output(name, run.out, run.due)})"
        if run.duckdb is not None:
            text += f"; DuckDB one batch {run.duckdb:,.0f} events/s, ratio {run.rate / run.duckdb:.2f}"
        print(f"{text}; peak RSS {run.peak_mb:,.0f} MB", flush=True)

    def _output(self, name: str, out: int, due: int | None) -> str:
        if due is None:
            return f"output {out:,}"
        if out == due:
            return f"output {out:,} of {due:,} due"
        self.mismatches.append(f"{name}: wrote {out:,} records, {due:,} due")
        return f"output {out:,} but {due:,} due: MISMATCH"


def aggregation(report: Report, eng: Engine, n: int, statement: str, one_batch: str,
                window_ms: int | None = None, *, cached: bool = False) -> Run:
    """An aggregation beside DuckDB's one statement. What is due: with ``window_ms`` (EMIT FINAL), the
    windows that stream time (the last event's time) closed; ``cached`` (EMIT CHANGES through the
    record cache), each key's window once per batch that changed it; else one change per event."""
    out: list[int] = []
    engine, peak = report.measure(n, lambda: out.append(drain_query(eng, statement)))
    decoded = DECODED.format(table=topic_table("clicks"))
    duckdb, _ = report.measure(n, lambda: eng.con.execute(one_batch.format(decoded=decoded)))
    due = n
    if window_ms is not None:
        [(due,)] = eng.con.execute(f"SELECT count(*) FROM one_batch WHERE ws + {window_ms} <= "
                                   f"(SELECT max(ts) FROM {decoded})").fetchall()
    elif cached:
        [(due,)] = eng.con.execute(CACHED_DUE.format(batch=MAX_BATCH, table=topic_table("clicks"))).fetchall()
    return Run(engine, peak, duckdb, out[0], due)


def point_lookups(keys: int, lookups: int) -> dict[str, list[float]]:
    """Latencies (ms) of point lookups on a ``keys``-key table, three ways."""
    with tempfile.TemporaryDirectory() as state:
        eng = Engine(path=state)
        eng.execute(USERS)
        eng.produce_batch("users", users(keys), key="userid")
        eng.run_until_idle()
        rng = np.random.default_rng(3)
        picks = [f"u{i}" for i in rng.integers(0, keys, lookups)]
        ways = {
            "Engine.query, :key parameter": lambda k: eng.query("SELECT * FROM users WHERE userid = :k", {"k": k}),
            "Engine.query, literal text": lambda k: eng.query(f"SELECT * FROM users WHERE userid = '{k}'"),
            "DuckDB on the state table": lambda k: eng.con.execute(
                f"SELECT * FROM \"state$USERS\" WHERE \"USERID\" = '{k}'").df(),
        }
        latencies: dict[str, list[float]] = {}
        for name, lookup in ways.items():
            assert len(lookup(picks[0])) == 1
            samples = []
            for k in picks:
                started = time.perf_counter()
                lookup(k)
                samples.append((time.perf_counter() - started) * 1000)
            latencies[name] = samples
        eng.close()
    return latencies


def users(n: int) -> pd.DataFrame:
    return pd.DataFrame({"userid": [f"u{i}" for i in range(n)], "region": [f"region{i % 10}" for i in range(n)],
                         "level": np.arange(n) % 10})


def stream_table_join(report: Report, eng: Engine, n: int) -> Run:
    """A stream-table join of the clicks with the 1,000 users, which arrived before them
    (UnsupportedError: no joins)."""
    out: list[int] = []
    engine, peak = report.measure(n, lambda: out.append(drain_query(eng, JOIN)))
    return Run(engine, peak, out=out[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    args = parser.parse_args()
    n = args.events
    print(f"events: {n:,} over 1,000 keys and {n // (EVENTS_PER_MS * 1000):,} s of event time; {load_average()}")
    report = Report()
    with tempfile.TemporaryDirectory() as state:
        eng = Engine(path=state)
        eng.execute(CLICKS + USERS)

        def produce() -> None:
            eng.produce_batch("users", users(1000), key="userid")  # the table the join looks up, first
            eng.produce_batch("clicks", clicks(n), key="userid", timestamp="ts")

        _, peak = report.measure(n, produce)
        print(f"{'data generated and produced:':<46}{'':>20}peak RSS {peak:,.0f} MB")
        report.line("tumbling 1 s COUNT/SUM per key, EMIT FINAL:",
                    aggregation(report, eng, n, TUMBLING.format(name="final", emit="FINAL"), ONE_BATCH_TUMBLING,
                                1000))
        every_change = EVERY_CHANGE.format(statement=TUMBLING.format(name="every", emit="CHANGES"))
        report.line("tumbling, EMIT CHANGES, every change:",
                    aggregation(report, eng, n, every_change, ONE_BATCH_TUMBLING))
        report.line("tumbling, EMIT CHANGES, record cache:",
                    aggregation(report, eng, n, TUMBLING.format(name="cached", emit="CHANGES"), ONE_BATCH_TUMBLING,
                                cached=True))
        report.line("hopping 10 s / 1 s AVG per category, FINAL:",
                    aggregation(report, eng, n, HOPPING, ONE_BATCH_HOPPING, 10_000))
        try:
            report.line("stream-table join (1,000 users):", stream_table_join(report, eng, n))
            report.line("join, then 1 s COUNT per region, FINAL:",
                        aggregation(report, eng, n, JOIN_WINDOWED, ONE_BATCH_JOIN_WINDOWED, 1000))
        except UnsupportedError as e:
            print(f"stream-table join: skipped ({e})")
        eng.close()
    reset_peak_rss()
    for name, samples in point_lookups(args.keys, args.lookups).items():
        print(f"point lookup, {args.keys:,}-key table, {name:<30}: p50 {percentile(samples, 0.5):.3f} ms, "
              f"p99 {percentile(samples, 0.99):.3f} ms")
    report.peak_mb = max(report.peak_mb, peak_rss_mb())
    print(f"peak RSS of the run (the largest above, DuckDB's one statements and the lookups' table included): "
          f"{report.peak_mb:,.0f} MB; {load_average()}")
    if report.mismatches:
        raise SystemExit("OUTPUT DIFFERS FROM WHAT DUCKDB'S ONE STATEMENT SAYS IS DUE:\n  "
                         + "\n  ".join(report.mismatches))


if __name__ == "__main__":
    main()
