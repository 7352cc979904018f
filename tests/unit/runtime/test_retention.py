"""RETENTION_MS: a stream's topic keeps a record for that long after its timestamp (Kafka's
``retention.ms``), on the embedded log as on Kafka; queries read on over what was deleted."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from nbstream.errors import CatalogError
from nbstream.runtime.service import EngineService

HOUR = 3_600_000


def stream(retention: str) -> str:
    return (f"CREATE STREAM clicks (user VARCHAR KEY, page VARCHAR) WITH (KAFKA_TOPIC='clicks', "
            f"VALUE_FORMAT='JSON', PARTITIONS=1{retention});")


@pytest.fixture
def engine() -> Iterator[EngineService]:
    with EngineService() as eng:
        yield eng


def now() -> int:
    return int(time.time() * 1000)


def pages(engine: EngineService, topic: str) -> list[str]:
    return [r.value["PAGE"] for r in engine.consume(topic)]


def test_records_past_the_retention_are_deleted_and_queries_read_on(engine: EngineService) -> None:
    engine.execute(stream(", RETENTION_MS=3600000"))
    engine.execute("CREATE STREAM pages AS SELECT * FROM clicks;")
    engine.produce("clicks", {"PAGE": "old"}, key="u", timestamp=now() - 2 * HOUR)
    engine.produce("clicks", {"PAGE": "new"}, key="u", timestamp=now())
    engine.run_until_idle()

    assert engine.delete_expired(every=0) == 1
    engine.produce("clicks", {"PAGE": "after"}, key="u", timestamp=now())
    engine.run_until_idle()

    assert pages(engine, "clicks") == ["new", "after"]
    assert pages(engine, "PAGES") == ["old", "new", "after"]  # the result's topic keeps everything
    assert engine.query("SELECT page FROM clicks;")["PAGE"].tolist() == ["new", "after"]


def test_minus_one_keeps_every_record_as_in_kafka(engine: EngineService) -> None:
    engine.execute(stream(", RETENTION_MS=-1"))
    engine.produce("clicks", {"PAGE": "old"}, key="u", timestamp=0)
    assert engine.delete_expired(every=0) == 0
    assert pages(engine, "clicks") == ["old"]


def test_a_stream_created_by_a_query_takes_the_retention_of_its_with_clause(engine: EngineService) -> None:
    engine.execute(stream(""))
    engine.execute("CREATE STREAM recent WITH (RETENTION_MS=60000) AS SELECT * FROM clicks;")
    for page in ("a", "b"):
        engine.produce("clicks", {"PAGE": page}, key="u", timestamp=now() - HOUR)
    engine.run_until_idle()

    assert engine.delete_expired(every=0) == 1
    assert pages(engine, "RECENT") == ["b"]
    assert pages(engine, "clicks") == ["a", "b"]


def test_the_background_loop_deletes_expired_records_itself(engine: EngineService) -> None:
    engine.execute(stream(", RETENTION_MS=1000"))
    engine.produce("clicks", {"PAGE": "old"}, key="u", timestamp=now() - HOUR)
    engine.produce("clicks", {"PAGE": "new"}, key="u", timestamp=now())
    engine.background.start()
    deadline = time.monotonic() + 5
    while pages(engine, "clicks") != ["new"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pages(engine, "clicks") == ["new"]


@pytest.mark.parametrize(("retention", "message"), [
    ("0", "RETENTION_MS: 0 .a number of milliseconds, at least 1, or -1"),
    ("'soon'", "RETENTION_MS: 'soon' is not a number"),
])
def test_a_retention_that_is_not_a_positive_number_is_refused(engine: EngineService, retention: str,
                                                               message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        engine.execute(stream(f", RETENTION_MS={retention}"))
    assert engine.log.topic("clicks") is None
    assert engine.catalog.find("CLICKS") is None


def test_a_table_refuses_a_retention_rather_than_lose_keys(engine: EngineService) -> None:
    with pytest.raises(CatalogError, match="Table T: RETENTION_MS applies to a stream's topic"):
        engine.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT) "
                       "WITH (KAFKA_TOPIC='t', VALUE_FORMAT='JSON', PARTITIONS=1, RETENTION_MS=1000);")
