"""A pull query in the notebook does not wait for the background loop's micro-batch."""

from __future__ import annotations

import threading
import time

from nbstream.runtime.service import EngineService


def test_a_pull_query_reads_the_committed_state_while_a_batch_holds_the_engine() -> None:
    engine = EngineService()
    engine.execute("CREATE TABLE users (id VARCHAR PRIMARY KEY, region VARCHAR) "
                   "WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON');")
    engine.produce("users", {"REGION": "north"}, key="u1")
    engine.run_until_idle()
    batch_started, batch_may_end = threading.Event(), threading.Event()

    def long_batch() -> None:  # what a background micro-batch does: hold the engine for its duration
        with engine.lock:
            engine.con.execute("BEGIN")
            engine.con.execute("""UPDATE "state$USERS" SET "REGION" = 'uncommitted'""")
            batch_started.set()
            batch_may_end.wait(10)
            engine.con.execute("ROLLBACK")

    worker = threading.Thread(target=long_batch)
    worker.start()
    batch_started.wait(5)
    try:
        started = time.monotonic()
        frame = engine.query("SELECT region FROM users WHERE id = :id", {"id": "u1"})
        assert time.monotonic() - started < 1
        assert frame["REGION"].tolist() == ["north"], "the last committed state, not the batch's"
    finally:
        batch_may_end.set()
        worker.join()
        engine.close()
