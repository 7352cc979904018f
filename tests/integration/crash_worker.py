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
class Workload:
    """Statements that set the query up, the input source, and the input frame of a range of ids."""

    setup: str
    source: str
    frame: Callable[[range], pd.DataFrame]
    key: str
    timestamp: str | None = None


def _numbered(ids: range) -> pd.DataFrame:
    return pd.DataFrame({"id": list(ids), "n": list(ids), "tag": [f"t{i % 7}" for i in ids]})


def _readings(ids: range) -> pd.DataFrame:
    """Readings of 5 keys, times mostly rising with ids, some out of order and some late."""
    return pd.DataFrame({"k": [f"k{i % 5}" for i in ids], "v": [i % 11 - 3 for i in ids],
                         "ts": [max(0, 2 * i - (i * 7919) % 61) for i in ids]})


CSAS = Workload(
    setup="""
    CREATE STREAM events (id BIGINT KEY, n BIGINT, tag VARCHAR)
      WITH (KAFKA_TOPIC='events', VALUE_FORMAT='JSON', PARTITIONS=2);
    CREATE STREAM kept AS SELECT id, n, UCASE(tag) AS tag FROM events WHERE n % 3 <> 1;
    """,
    source="EVENTS", frame=_numbered, key="id")

WINDOWED = Workload(
    setup="""
    CREATE STREAM readings (k VARCHAR KEY, v BIGINT)
      WITH (KAFKA_TOPIC='readings', VALUE_FORMAT='JSON', PARTITIONS=1);
    CREATE TABLE per_key AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM readings
      WINDOW TUMBLING (SIZE 100 MILLISECONDS, GRACE PERIOD 20 MILLISECONDS) GROUP BY k EMIT CHANGES;
    """,
    source="READINGS", frame=_readings, key="k", timestamp="ts")

WORKLOADS = {"csas": CSAS, "windowed": WINDOWED}


def main(state: str, start: int, batch: int, workload: Workload) -> None:
    eng = Engine(path=state)
    if eng.catalog.find(workload.source) is None:
        eng.execute(workload.setup)
    next_id = start
    while True:
        ids = range(next_id, next_id + batch)
        eng.produce_batch(workload.source, workload.frame(ids), key=workload.key, timestamp=workload.timestamp)
        print(f"ACK {ids.start} {ids.stop - 1}", flush=True)
        next_id = ids.stop
        eng.run_until_idle()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), WORKLOADS[sys.argv[4] if len(sys.argv) > 4 else "csas"])
