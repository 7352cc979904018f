"""A process running a windowed aggregation between Kafka topics until it is killed.

``python kafka_crash_worker.py STATE_DIR BOOTSTRAP DDL``: opens (or resumes) the engine kept in
STATE_DIR against the broker at BOOTSTRAP, runs the statements of DDL on a fresh state, prints
``UP`` and then drives its queries for ever. test_kafka_stateful kills it with SIGKILL.
"""

from __future__ import annotations

import sys
import time

from nbstream import Engine


def main(state: str, bootstrap: str, ddl: str) -> None:
    engine = Engine(state, kafka=bootstrap, enable_idempotence=False)
    if not engine.catalog.queries:
        engine.execute(ddl)
    print("UP", flush=True)
    while True:
        if engine.run_until_idle() == 0:
            time.sleep(0.01)


if __name__ == "__main__":
    main(*sys.argv[1:4])
