"""``Engine.source``: Python data fed into a topic by the engine's loop, in batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pandas as pd
import pyarrow as pa
import pytest

from nbstream import Engine
from nbstream.connectors.python_source import MAX_STEP
from nbstream.errors import BindError, LogError, SqlTypeError

START = 1_700_000_000_000
STREAM = """CREATE STREAM clicks (user VARCHAR KEY, page VARCHAR, n INT)
  WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON', PARTITIONS=1)"""


class ManualClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def eng() -> Engine:
    engine = Engine()
    engine.execute(STREAM)
    return engine


def rows(n: int) -> list[dict[str, object]]:
    return [{"user": f"u{i % 3}", "page": f"p{i}", "n": i} for i in range(n)]


def test_a_list_of_dicts_is_written_with_keys_and_values(eng: Engine) -> None:
    handle = eng.source("clicks", rows(5), key="user")
    eng.run_until_idle()
    records = eng.consume("clicks")
    assert [(r.key, r.value) for r in records] == [(f"u{i % 3}", {"PAGE": f"p{i}", "N": i}) for i in range(5)]
    assert (handle.status, handle.produced) == ("FINISHED", 5)


def test_a_source_may_name_the_stream_instead_of_the_topic(eng: Engine) -> None:
    eng.source("CLICKS", rows(2))
    eng.run_until_idle()
    assert len(eng.consume("clicks")) == 2


def test_records_are_appended_in_batches_of_at_most_max_step(eng: Engine) -> None:
    clock = ManualClock()
    eng.connectors.clock = clock
    handle = eng.source("clicks", ({"user": "u", "page": "p", "n": i} for i in range(MAX_STEP + 10)))
    assert eng.connectors.step() == MAX_STEP
    assert eng.connectors.step() == 10
    assert handle.status == "FINISHED"


def test_a_dataframe_is_sliced_and_its_timestamp_column_gives_record_times(eng: Engine) -> None:
    frame = pd.DataFrame({"user": ["a", "b", "c"], "page": ["x", "y", "z"], "n": [1, 2, 3],
                          "at": [START + 5, START + 6, START + 7]})
    eng.source("clicks", frame, key="user", timestamp="at")
    eng.run_until_idle()
    assert [(r.key, r.timestamp) for r in eng.consume("clicks")] == [("a", START + 5), ("b", START + 6),
                                                                    ("c", START + 7)]


def test_an_arrow_table_is_accepted(eng: Engine) -> None:
    eng.source("clicks", pa.Table.from_pylist(rows(4)))
    eng.run_until_idle()
    assert len(eng.consume("clicks")) == 4


def test_without_a_timestamp_records_get_the_time_of_their_step(eng: Engine) -> None:
    clock = ManualClock()
    eng.connectors.clock = clock
    eng.source("clicks", rows(2))
    eng.run_until_idle()
    assert {r.timestamp for r in eng.consume("clicks")} == {START}


def test_rate_paces_records_by_the_connector_clock(eng: Engine) -> None:
    clock = ManualClock()
    eng.connectors.clock = clock
    handle = eng.source("clicks", rows(1000), rate=20)
    seen = []
    for _ in range(10):
        clock.now += 500
        eng.run_until_idle()
        seen.append(handle.produced)
    assert seen == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert handle.status == "RUNNING"


def test_stop_ends_a_source_and_keeps_what_it_wrote(eng: Engine) -> None:
    clock = ManualClock()
    eng.connectors.clock = clock
    handle = eng.source("clicks", rows(1000), rate=10)
    clock.now += 1000
    eng.run_until_idle()
    handle.stop()
    clock.now += 10_000
    eng.run_until_idle()
    assert (handle.status, len(eng.consume("clicks"))) == ("STOPPED", 10)


def test_an_async_generator_is_consumed_on_its_own_thread(eng: Engine) -> None:
    async def clicks() -> AsyncIterator[dict[str, object]]:
        for i in range(50):
            await asyncio.sleep(0)
            yield {"user": "u", "page": f"p{i}", "n": i}

    handle = eng.source("clicks", clicks())
    deadline = time.monotonic() + 10
    while handle.status == "RUNNING" and time.monotonic() < deadline:
        eng.run_until_idle()
        time.sleep(0.01)
    assert handle.status == "FINISHED"
    assert [r.value["N"] for r in eng.consume("clicks")] == list(range(50))


def test_a_failing_async_generator_marks_the_source_as_error(eng: Engine) -> None:
    async def broken() -> AsyncIterator[dict[str, object]]:
        yield {"user": "u", "page": "p", "n": 1}
        raise RuntimeError("feed went away")

    handle = eng.source("clicks", broken())
    deadline = time.monotonic() + 10
    with pytest.raises(Exception, match="feed went away"):
        while time.monotonic() < deadline:
            eng.connectors.step()
            time.sleep(0.01)
    assert handle.status == "ERROR" and "feed went away" in (handle.error or "")


def test_a_source_without_a_stream_over_its_topic_is_an_error() -> None:
    eng = Engine()
    eng.create_topic("raw")
    with pytest.raises(LogError, match="source needs a stream or table over topic 'raw'"):
        eng.source("raw", rows(1))


def test_records_that_are_not_dicts_are_a_type_error(eng: Engine) -> None:
    eng.source("clicks", [1, 2, 3])
    with pytest.raises(SqlTypeError, match="must be dicts of column values, not int"):
        eng.run_until_idle()


@pytest.mark.parametrize("rate", [0, -1])
def test_rate_must_be_positive(eng: Engine, rate: float) -> None:
    with pytest.raises(BindError, match="rate must be a positive number"):
        eng.source("clicks", rows(1), rate=rate)


def test_closing_the_engine_stops_its_sources_and_their_threads() -> None:
    eng = Engine()
    eng.execute(STREAM)

    async def endless() -> AsyncIterator[dict[str, object]]:
        i = 0
        while True:
            i += 1
            yield {"user": "u", "page": "p", "n": i}

    handle = eng.source("clicks", endless())
    eng.close()
    assert handle.status == "STOPPED"
    reader = handle._reader
    assert hasattr(reader, "thread")
    reader.thread.join(5)
    assert not reader.thread.is_alive()


def test_data_that_is_no_frame_or_iterable_is_a_type_error(eng: Engine) -> None:
    with pytest.raises(SqlTypeError, match="a source takes a DataFrame, an Arrow table, an iterable or an async "
                                           "iterable of dicts, not int"):
        eng.source("clicks", 42)  # type: ignore[arg-type]
