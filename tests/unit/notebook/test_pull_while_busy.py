"""A pull query in the notebook does not wait for the background loop's micro-batch."""

from __future__ import annotations

import time

from engine_batches import batch_in_flight

from nbstream.runtime.service import EngineService


def test_a_pull_query_reads_the_committed_state_while_a_batch_holds_the_engine() -> None:
    engine = EngineService()
    engine.execute("CREATE TABLE users (id VARCHAR PRIMARY KEY, region VARCHAR) "
                   "WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON');")
    engine.produce("users", {"REGION": "north"}, key="u1")
    engine.run_until_idle()
    try:
        with batch_in_flight(engine, """UPDATE "state$USERS" SET "REGION" = 'uncommitted'"""):
            started = time.monotonic()
            frame = engine.query("SELECT region FROM users WHERE id = :id", {"id": "u1"})
            assert time.monotonic() - started < 1
            assert frame["REGION"].tolist() == ["north"], "the last committed state, not the batch's"
    finally:
        engine.close()
