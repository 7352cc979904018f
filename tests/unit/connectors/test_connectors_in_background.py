"""Connectors in the notebook's engine: its background thread runs them with the queries, and a
failing connector is marked FAILED and reported, never stopping the loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from nbstream.runtime.service import EngineService


@pytest.fixture
def engine() -> Iterator[EngineService]:
    eng = EngineService()
    yield eng
    eng.close()


def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_background_loop_runs_a_datagen_connector_and_the_query_over_it(engine: EngineService) -> None:
    engine.execute("""
      CREATE SOURCE CONNECTOR g WITH ('connector.class'='datagen', 'kafka.topic'='stocks',
        'quickstart'='stocks', 'max.interval'=5, 'iterations'=300);
      CREATE STREAM stocks WITH (KAFKA_TOPIC='stocks', VALUE_FORMAT='JSON');
      CREATE TABLE last_price AS SELECT symbol, LATEST_BY_OFFSET(price) AS price, COUNT(*) AS n
        FROM stocks GROUP BY symbol EMIT CHANGES;
    """)
    engine.background.start()
    wait_for(lambda: engine.execute("SHOW CONNECTORS")[0].rows[0][3] == "FINISHED")
    wait_for(lambda: engine.query("SELECT * FROM last_price")["N"].sum() == 300)
    assert engine.background.failures == []


def test_a_failing_connector_is_marked_failed_and_reported_while_the_loop_goes_on(engine: EngineService) -> None:
    engine.execute("CREATE SOURCE CONNECTOR bad WITH ('connector.class'='datagen', 'kafka.topic'='t', "
                   "'quickstart'='users', 'max.interval'=0, 'iterations'=0);"
                   "CREATE SOURCE CONNECTOR good WITH ('connector.class'='datagen', 'kafka.topic'='u', "
                   "'quickstart'='users', 'max.interval'=5, 'iterations'=50)")

    def broken(now_ms: int) -> None:
        raise RuntimeError("generator broke")

    engine.connectors.running["BAD"].connector.step = broken  # type: ignore[method-assign]
    engine.background.start()
    wait_for(lambda: engine.execute("DESCRIBE CONNECTOR good")[0].rows[3][1] == "FINISHED")
    described = dict(engine.execute("DESCRIBE CONNECTOR bad")[0].rows)
    assert described["State"] == "FAILED" and described["Trace"] == "RuntimeError: generator broke"
    assert engine.background.failures == ["connector BAD: RuntimeError: generator broke"]
    assert len(engine.consume("u")) == 50
