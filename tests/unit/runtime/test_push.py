"""Push queries and their subscribers (``nbstream.runtime.push``): every subscriber is offered every
batch without waiting; one that cannot keep up is disconnected while the others and the engine go
on; a subscriber attached after the start misses no row."""

from __future__ import annotations

import asyncio
import time

import pyarrow as pa
import pytest

from nbstream import Engine
from nbstream.runtime.push import DONE, OVERFLOW, STOPPED, AsyncBatches, Batches, PushOverflow, PushQuery
from nbstream.runtime.service import EngineService

PAGES = "CREATE STREAM pages (page VARCHAR) WITH (KAFKA_TOPIC='pages', VALUE_FORMAT='JSON');"
SELECT = "SELECT page FROM pages EMIT CHANGES;"


def push_query(eng: Engine, sql: str = SELECT) -> PushQuery:
    return PushQuery(eng._transient_runner(sql), sql)


class Recorder(Batches):
    """Batches, and how the query closed it."""

    def __init__(self) -> None:
        super().__init__()
        self.closed: list[tuple[str, str | None]] = []

    def close(self, state: str, error: str | None) -> None:
        super().close(state, error)
        self.closed.append((state, error))


def pages(batches: list[pa.Table]) -> list[str]:
    return [page for batch in batches for page in batch.column("PAGE").to_pylist()]


def test_a_subscriber_that_falls_behind_is_disconnected_and_the_others_go_on() -> None:
    eng = Engine()
    eng.execute(PAGES)
    query = push_query(eng)
    loop = asyncio.new_event_loop()
    slow = query.subscribe(AsyncBatches(max_rows=1, loop=loop))  # never read while the query runs
    fast = query.subscribe(Recorder())
    for page in ("a", "b", "c"):
        eng.produce("pages", {"page": page})
        query.step()

    assert pages(fast.take()) == ["a", "b", "c"] and fast.closed == []

    async def read_slow() -> list[pa.Table]:
        return [batch async for batch in slow]

    with pytest.raises(PushOverflow, match=rf"{query.id}: a subscriber fell behind .*more than 1 rows"):
        loop.run_until_complete(read_slow())
    loop.close()
    query.stop()
    assert fast.closed == [(STOPPED, None)]
    query.close()


def test_a_batch_always_fits_into_an_empty_buffer() -> None:
    eng = Engine()
    eng.execute(PAGES)
    query = push_query(eng)
    loop = asyncio.new_event_loop()
    bounded = query.subscribe(AsyncBatches(max_rows=1, loop=loop))
    for page in ("a", "b", "c"):
        eng.produce("pages", {"page": page})
    query.step()  # one batch of three rows
    query.stop()

    async def read() -> list[pa.Table]:
        return [batch async for batch in bounded]

    assert pages(loop.run_until_complete(read())) == ["a", "b", "c"]
    loop.close()
    query.close()


def test_a_push_query_without_subscribers_waits_and_its_first_subscriber_misses_no_row() -> None:
    eng = Engine()
    eng.execute(PAGES)
    query = push_query(eng)  # starts at the end of the input: now
    eng.produce("pages", {"page": "a"})
    assert query.step() == 0, "nobody listens: not stepped"
    late = query.subscribe(Recorder())
    assert query.step() == 1
    assert pages(late.take()) == ["a"]
    query.stop()
    query.close()


def test_a_subscriber_of_a_query_that_ended_is_closed_at_once() -> None:
    eng = Engine()
    eng.execute(PAGES)
    query = push_query(eng, "SELECT page FROM pages EMIT CHANGES LIMIT 1;")
    first = query.subscribe(Recorder())
    eng.produce("pages", {"page": "a"})
    eng.produce("pages", {"page": "b"})
    query.step()
    assert pages(first.take()) == ["a"] and first.closed == [(DONE, None)]
    assert query.subscribe(Recorder()).closed == [(DONE, None)]
    query.close()


def test_the_service_steps_a_push_query_for_its_subscribers_and_forgets_it_when_it_ends() -> None:
    with EngineService() as service:
        service.execute(PAGES)
        service.background.start()
        query = service.start_push("SELECT page FROM pages EMIT CHANGES LIMIT 2;")

        async def read() -> list[pa.Table]:
            batches = query.subscribe(AsyncBatches())
            service.produce("pages", {"page": "a"})
            service.produce("pages", {"page": "b"})
            return [batch async for batch in batches]

        assert pages(asyncio.run(read())) == ["a", "b"]
        deadline = time.monotonic() + 5
        while query.id in service.push_queries and time.monotonic() < deadline:
            time.sleep(0.01)
        assert query.id not in service.push_queries and query.state == DONE


def test_closing_a_push_query_of_the_service_stops_it_and_leaves_the_registry() -> None:
    with EngineService() as service:
        service.execute(PAGES)
        query = service.start_push(SELECT)
        subscriber = query.subscribe(Recorder())
        service.close_push(query)
        assert query.state == STOPPED and subscriber.closed == [(STOPPED, None)]
        assert query.id not in service.push_queries
        assert OVERFLOW not in {state for state, _ in subscriber.closed}


def test_a_detached_subscriber_drops_the_batches_waiting_and_says_so_at_once() -> None:
    eng = Engine()
    eng.execute(PAGES)
    query = push_query(eng)
    loop = asyncio.new_event_loop()
    slow = query.subscribe(AsyncBatches(max_rows=2, loop=loop))
    for page in ("a", "b", "c"):
        eng.produce("pages", {"page": page})
        query.step()

    async def next_batch() -> pa.Table:
        assert slow.detached.is_set()
        return await slow.__anext__()

    with pytest.raises(PushOverflow):  # "a" and "b" wait, but the consumer is told at once
        loop.run_until_complete(next_batch())
    with pytest.raises(PushOverflow):  # and again
        loop.run_until_complete(next_batch())
    loop.close()
    query.stop()
    query.close()


def test_a_push_query_knows_the_ksqldb_types_of_its_columns() -> None:
    eng = Engine()
    eng.execute("CREATE STREAM s (k VARCHAR KEY, n INT, d DECIMAL(4, 2)) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON');")
    query = push_query(eng, "SELECT d, k, n * 2 AS twice FROM s EMIT CHANGES;")
    shape = query.shape
    assert list(zip(shape.columns, map(str, shape.types), strict=True)) == [
        ("K", "STRING"), ("D", "DECIMAL(4, 2)"), ("TWICE", "INTEGER")]
    query.close()


def test_clients_of_the_same_stateless_query_share_it_each_from_when_it_subscribed() -> None:
    with EngineService() as service:
        service.execute(PAGES)
        first = service.subscribe_push(SELECT, Recorder())
        service.produce("pages", {"page": "a"})
        second = service.subscribe_push("SELECT page FROM pages  EMIT CHANGES", Recorder())
        service.produce("pages", {"page": "b"})
        service.step_pushes()
        assert second.query is first.query and second.id != first.id
        assert pages(first.subscriber.take()) == ["a", "b"]  # type: ignore[attr-defined]
        assert pages(second.subscriber.take()) == ["b"]  # type: ignore[attr-defined]
        first.stop()
        assert first.subscriber.closed == [(STOPPED, None)]  # type: ignore[attr-defined]
        service.produce("pages", {"page": "c"})
        service.step_pushes()
        assert pages(second.subscriber.take()) == ["c"] and second.query.state == "RUNNING"  # type: ignore[attr-defined]
        second.stop()
        assert second.query.state == STOPPED and service.push_subscriptions == {}


@pytest.mark.parametrize("sql", [
    "SELECT page FROM pages EMIT CHANGES LIMIT 5;",
    "SELECT page, COUNT(*) AS n FROM pages GROUP BY page EMIT CHANGES;",
])
def test_a_query_with_a_limit_or_state_is_each_clients_own(sql: str) -> None:
    with EngineService() as service:
        service.execute(PAGES)
        one, two = service.subscribe_push(sql, Recorder()), service.subscribe_push(sql, Recorder())
        assert one.query is not two.query


def test_a_query_from_the_start_of_its_input_is_each_clients_own() -> None:
    with EngineService() as service:
        service.execute(PAGES)
        earliest = {"auto.offset.reset": "earliest"}
        one, two = (service.subscribe_push(SELECT, Recorder(), earliest) for _ in range(2))
        assert one.query is not two.query


def _append_raw(eng: Engine, topic: str, values: list[bytes | None]) -> None:
    from nbstream.log.base import RECORD_SCHEMA

    rows = [{"partition": None, "offset": 0, "ts": 1_000, "key": None, "value": value, "headers": [],
             "win_start": None, "win_end": None, "win_type": None} for value in values]
    eng.log.append(topic, pa.Table.from_pylist(rows, schema=RECORD_SCHEMA))


@pytest.mark.parametrize(("values", "expected", "bad"), [
    ([b'{"PAGE": "a", "N": 1}', b'{"PAGE": "b", "N": null}', b'{"PAGE": null}'], [("a", 1), ("b", None), (None, None)],
     0),  # every record on the fast path (a field absent takes the full decoding)
    ([b'{"PAGE": "a", "N": 1}', b'{"page": "b", "N": "2"}', None], [("a", 1), ("b", 2)], 0),  # spelled otherwise,
    # a string to coerce: the full decoding; a null value (a stream's tombstone) is no row
    ([b'{"PAGE": "a", "N": 1}', b'not json', b'{"PAGE": "c", "N": 3.7}'], [("a", 1), ("c", 3)], 1),
])
def test_a_push_batch_decodes_as_the_full_json_decoding_does(values: list[bytes | None],
                                                              expected: list[tuple[object, object]], bad: int) -> None:
    """A push query's batch is first evaluated with the JSON format's fast path alone; a batch with a
    record that did not take it is evaluated in full: the rows are the same either way."""
    eng = Engine()
    eng.execute("CREATE STREAM hits (page VARCHAR, n INT) WITH (KAFKA_TOPIC='hits', VALUE_FORMAT='JSON');")
    sql = "SELECT page, n FROM hits EMIT CHANGES;"
    query = push_query(eng, sql)
    batches = query.subscribe(Batches())
    _append_raw(eng, "hits", values)
    query.step()
    rows = [(r["PAGE"], r["N"]) for batch in batches.take() for r in batch.select(["PAGE", "N"]).to_pylist()]
    assert rows == expected
    assert query.runner.stats.logged == bad


class CountingLoop(asyncio.SelectorEventLoop):
    """A loop counting how often other threads woke it."""

    wakes = 0

    def call_soon_threadsafe(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.wakes += 1
        return super().call_soon_threadsafe(*args, **kwargs)


def test_the_subscribers_of_one_loop_wake_it_once_per_batch_and_each_gets_every_batch_in_order() -> None:
    eng = Engine()
    eng.execute(PAGES)
    query = push_query(eng)
    loop = CountingLoop()
    subscribers = [query.subscribe(AsyncBatches(loop=loop)) for _ in range(20)]
    for page in ("a", "b", "c"):
        eng.produce("pages", {"page": page})
        query.step()
        loop.run_until_complete(asyncio.sleep(0))  # the loop takes this batch before the next
    query.stop()

    async def read(subscriber: AsyncBatches) -> list[pa.Table]:
        return [batch async for batch in subscriber]

    assert loop.wakes == 4  # three batches and the end, each once for the 20 subscribers
    for subscriber in subscribers:
        assert pages(loop.run_until_complete(read(subscriber))) == ["a", "b", "c"]
    loop.close()
    query.close()


def test_a_subscriber_whose_loop_closed_is_detached() -> None:
    eng = Engine()
    eng.execute(PAGES)
    query = push_query(eng)
    loop = asyncio.new_event_loop()
    closed: list[str] = []

    class Gone(AsyncBatches):
        def close(self, state: str, error: str | None) -> None:
            closed.append(state)
            super().close(state, error)

    query.subscribe(Gone(loop=loop))
    staying = query.subscribe(Recorder())
    loop.close()
    eng.produce("pages", {"page": "a"})
    query.step()
    assert pages(staying.take()) == ["a"]
    assert closed == [OVERFLOW]
    query.stop()
    assert closed == [OVERFLOW] and staying.closed == [(STOPPED, None)]
    query.close()
