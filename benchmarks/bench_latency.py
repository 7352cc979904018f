"""Embedded end-to-end latency: ``produce`` returning → the output record readable by ``consume``.

An engine service (the embedded log, in memory unless ``--durable``) runs its background loop
with two persistent queries over one input stream:

  * (a) a filter ``CREATE STREAM … AS SELECT … WHERE …``;
  * (b) a tumbling-window ``COUNT(*)`` ``CREATE TABLE … EMIT CHANGES`` (through the record cache,
    ksqlDB's default: each key's window once per micro-batch, with the time of its last input).

A producer thread offers ``--rate`` events/s through ``produce_batch`` in small paced batches for
``--seconds``; a reader thread polls ``consume`` on both sink topics from its last offsets. Every
input record carries a unique timestamp (its sequence number past a base), which both queries
keep as the output record's ROWTIME, so every output record maps back to the ``produce_batch``
call that returned it. Its latency is the time its reader saw it less the time that call
returned; the first ``--warmup`` seconds are left out. Prints p50/p99/max per query beside the
targets of issue 15 (filter p50 ≤ 10 ms, p99 ≤ 50 ms; tumbling EMIT CHANGES p99 ≤ 100 ms), the
reader's own poll time (part of every figure) and the offered and achieved input rates.

    python benchmarks/bench_latency.py [--rate 10000] [--seconds 20] [--durable]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from _common import load_average, percentile

from nbstream.runtime.service import EngineService

SETUP = """
CREATE STREAM events (k VARCHAR KEY, seq BIGINT, v DOUBLE)
  WITH (KAFKA_TOPIC='events', VALUE_FORMAT='JSON', PARTITIONS=1);
CREATE STREAM filtered AS SELECT k, seq, v FROM events WHERE v >= 0.5;
CREATE TABLE counts AS SELECT k, COUNT(*) AS n FROM events
  WINDOW TUMBLING (SIZE 1 SECOND) GROUP BY k EMIT CHANGES;
"""
BASE_MS = 1_700_000_000_000  # record time of event 0; event i is at BASE_MS + i (unique per event)
TICK_SECONDS = 0.005  # the producer's pacing: one produce_batch per tick (50 records at 10K/s)
KEYS = 20
TARGETS = {"FILTERED": (0.010, 0.050), "COUNTS": (None, 0.100)}  # (p50, p99) seconds, issue 15


@dataclass
class Seen:
    """What the reader saw of one sink topic: per output record its ROWTIME and when it was read."""

    rowtimes: list[np.ndarray] = field(default_factory=list)
    seen_at: list[np.ndarray] = field(default_factory=list)
    next_offset: int = 0


def produce(engine: EngineService, rate: float, seconds: float, returned: np.ndarray) -> int:
    """Offer ``rate`` events/s for ``seconds`` in one batch per tick, paced against the clock;
    ``returned[i]`` is when the call holding event ``i`` returned. Returns the events produced."""
    rng = np.random.default_rng(1)
    keys = np.array([f"k{i}" for i in range(KEYS)])
    started = time.perf_counter()
    produced = 0
    while (now := time.perf_counter()) - started < seconds:
        due = min(len(returned), int((now - started) * rate))
        if due > produced:
            seq = np.arange(produced, due, dtype=np.int64)
            batch = pa.table({"k": keys[seq % KEYS], "seq": seq, "v": rng.random(len(seq)), "ts": seq + BASE_MS})
            engine.produce_batch("events", batch, key="k", timestamp="ts")
            returned[produced:due] = time.perf_counter()
            produced = due
        time.sleep(max(0.0, started + (produced + rate * TICK_SECONDS) / rate - time.perf_counter()))
    return produced


def read(engine: EngineService, seen: dict[str, Seen], stop: threading.Event, polls: list[float]) -> None:
    """Poll every sink topic of ``seen`` until ``stop``, recording each new record's ROWTIME and
    the time it was read; ``polls`` gets each poll's duration."""
    while not stop.is_set():
        for topic, state in seen.items():
            began = time.perf_counter()
            frame = engine.consume(topic, from_offsets={0: state.next_offset}, as_frame=True)
            now = time.perf_counter()
            polls.append(now - began)
            if len(frame):
                state.rowtimes.append(frame["ROWTIME"].to_numpy(dtype=np.int64))
                state.seen_at.append(np.full(len(frame), now))
                state.next_offset += len(frame)


def latencies(state: Seen, returned: np.ndarray, warmup_events: int) -> np.ndarray:
    """Seconds from each output record's input being produced to it being read, past the warm-up."""
    if not state.rowtimes:
        return np.array([])
    seq = np.concatenate(state.rowtimes) - BASE_MS
    seen_at = np.concatenate(state.seen_at)
    keep = seq >= warmup_events
    return seen_at[keep] - returned[seq[keep]]


def report(name: str, lat: np.ndarray) -> None:
    p50_target, p99_target = TARGETS[name]
    samples = list(lat)
    p50, p99 = percentile(samples, 0.50), percentile(samples, 0.99)

    def vs(value: float, target: float | None) -> str:
        return "" if target is None else f" (target ≤ {target * 1000:.0f} ms, ratio {value / target:.2f})"

    print(f"{name:9} {len(samples):>8,} records  p50 {p50 * 1000:7.1f} ms{vs(p50, p50_target)}")
    print(f"{'':9} {'':>8}          p99 {p99 * 1000:7.1f} ms{vs(p99, p99_target)}")
    print(f"{'':9} {'':>8}          max {max(samples) * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--durable", action="store_true", help="keep the log and state on disk (fsync)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state_dir:
        engine = EngineService(state_dir if args.durable else None)
        engine.execute(SETUP)
        seen = {"FILTERED": Seen(), "COUNTS": Seen()}
        returned = np.full(int(args.rate * args.seconds) + 1, np.nan)
        stop, polls = threading.Event(), []
        reader = threading.Thread(target=read, args=(engine, seen, stop, polls), daemon=True)
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        engine.background.start()
        reader.start()
        wall = time.perf_counter()
        produced = produce(engine, args.rate, args.seconds, returned)
        time.sleep(0.5)  # the last records' way through
        stop.set()
        reader.join()
        wall = time.perf_counter() - wall
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        failures = list(engine.background.failures)
        batches = {q.sink: engine.queries.runner(q.id).stats for q in engine.persistent_queries()}
        engine.close()
    if failures:
        raise SystemExit(f"the engine failed: {failures}")
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    print(f"offered {args.rate:,.0f} events/s for {args.seconds:.0f} s; produced {produced:,} "
          f"({produced / args.seconds:,.0f} events/s), {'durable' if args.durable else 'in memory'}; "
          f"first {args.warmup:.0f} s left out")
    warmup_events = int(args.warmup * args.rate)
    for name, state in seen.items():
        report(name, latencies(state, returned, warmup_events))
        stats = batches[name]
        print(f"{'':9} {stats.batches:>8,} batches of {stats.consumed / max(1, stats.batches):,.0f} records, "
              f"{stats.busy_seconds / max(1, stats.batches) * 1000:.1f} ms each on average")
    print(f"reader poll (consume of one topic): p50 {percentile(polls, 0.5) * 1000:.1f} ms, "
          f"p99 {percentile(polls, 0.99) * 1000:.1f} ms")
    print(f"process CPU {cpu:.1f} s over {wall:.1f} s wall; {load_average()}")


if __name__ == "__main__":
    main()
