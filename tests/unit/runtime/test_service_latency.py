"""The engine service's latency paths: ``consume`` does not wait for a micro-batch, and a
``produce`` wakes the background loop rather than leaving the input to its idle sleep."""

from __future__ import annotations

import time

from engine_batches import batch_in_flight

from nbstream.runtime.service import EngineService

SETUP = """CREATE STREAM clicks (id VARCHAR KEY, n INT) WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON');
CREATE STREAM big AS SELECT id, n FROM clicks WHERE n > 1;"""


def test_consume_reads_the_committed_records_while_a_batch_holds_the_engine() -> None:
    engine = EngineService()
    engine.execute(SETUP)
    engine.produce("clicks", {"N": 2}, key="a")
    engine.run_until_idle()
    try:
        with batch_in_flight(engine, """DELETE FROM "log$BIG" """):  # its append uncommitted
            started = time.monotonic()
            records = engine.consume("big")
            assert time.monotonic() - started < 1
            assert [(r.key, r.value) for r in records] == [("a", {"N": 2})], "what the log committed"
    finally:
        engine.close()


def test_produce_wakes_the_background_loop() -> None:
    engine = EngineService()
    engine.background.idle_sleep = 30.0  # without a wake-up the record would wait this long
    engine.execute(SETUP)
    engine.background.start()
    try:
        time.sleep(0.2)  # the loop has found nothing to do and sleeps
        engine.produce("clicks", {"N": 5}, key="b")
        deadline = time.monotonic() + 5
        while not engine.consume("big") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [r.value for r in engine.consume("big")] == [{"N": 5}]
        assert time.monotonic() < deadline
    finally:
        engine.close()
