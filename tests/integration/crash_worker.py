"""A process that runs a persistent query over a durable engine until it is killed.

Used by test_crash_recovery: it produces numbered records in small batches, prints
``ACK first last`` once a batch is acknowledged (durable), and processes between batches.
"""

from __future__ import annotations

import sys

import pandas as pd

from nbstream import Engine

SETUP = """
CREATE STREAM events (id BIGINT KEY, n BIGINT, tag VARCHAR)
  WITH (KAFKA_TOPIC='events', VALUE_FORMAT='JSON', PARTITIONS=2);
CREATE STREAM kept AS SELECT id, n, UCASE(tag) AS tag FROM events WHERE n % 3 <> 1;
"""


def main(state: str, start: int, batch: int) -> None:
    eng = Engine(path=state)
    if eng.catalog.find("EVENTS") is None:
        eng.execute(SETUP)
    next_id = start
    while True:
        ids = range(next_id, next_id + batch)
        frame = pd.DataFrame({"id": list(ids), "n": list(ids), "tag": [f"t{i % 7}" for i in ids]})
        eng.produce_batch("events", frame, key="id")
        print(f"ACK {ids.start} {ids.stop - 1}", flush=True)
        next_id = ids.stop
        eng.run_until_idle()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
