"""Kafka Streams' record cache, on by default as in ksqlDB (``cache.max.bytes.buffering``, 10 MB):
an EMIT CHANGES aggregation writes each group's (and window's) last change of a micro-batch — what a
cache flushed at every commit forwards — instead of every change. Set to 0, every change is written."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from produced import EVERY_CHANGE  # type: ignore[import-not-found]

from nbstream import Engine
from nbstream.errors import BindError
from nbstream.plan.serde import plan_document, plan_from_document

CLICKS = ("CREATE STREAM clicks (user VARCHAR KEY, n INT) WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON');")
COUNTS = CLICKS + "CREATE TABLE counts AS SELECT user, COUNT(*) AS c FROM clicks GROUP BY user;"
Change = tuple[Any, Any, Any, int]  # key, window, value (None: tombstone), ROWTIME


def _batch(eng: Engine, records: list[tuple[str, int, int]]) -> None:
    """``records`` (key, n, time) produced, then processed as one micro-batch."""
    for key, n, ts in records:
        eng.produce("clicks", {"n": n}, key=key, timestamp=ts)
    eng.run_until_idle()


def _changes(eng: Engine, topic: str, column: str, start: int = 0) -> list[Change]:
    """The records of ``topic`` from offset ``start``: key, window, ``column``'s value, ROWTIME."""
    return [(r.key, r.window, None if r.value is None else r.value[column], r.timestamp)
            for r in eng.consume(topic, from_offsets={0: start})]


def _last_of_each_group(changes: list[Change]) -> list[Change]:
    """``changes`` reduced to each (key, window)'s last, in the order of those last changes."""
    last = {(key, repr(window)): i for i, (key, window, _, _) in enumerate(changes)}
    return [changes[i] for i in sorted(last.values())]


def test_a_batch_writes_each_groups_last_change_in_the_order_of_those_changes() -> None:
    eng = Engine()
    eng.execute(COUNTS)
    _batch(eng, [("a", 1, 1), ("b", 1, 2), ("a", 1, 3)])
    assert _changes(eng, "COUNTS", "C") == [("b", None, 1, 2), ("a", None, 2, 3)]
    _batch(eng, [("b", 1, 4)])
    assert _changes(eng, "COUNTS", "C", start=2) == [("b", None, 2, 4)]


@pytest.mark.parametrize("name", ["cache.max.bytes.buffering", "ksql.streams.cache.max.bytes.buffering",
                                  "statestore.cache.max.bytes"])
def test_a_cache_of_0_bytes_writes_every_change(name: str) -> None:
    eng = Engine(properties={name: 0})
    eng.execute(COUNTS)
    _batch(eng, [("a", 1, 1), ("b", 1, 2), ("a", 1, 3)])
    assert _changes(eng, "COUNTS", "C") == [("a", None, 1, 1), ("b", None, 1, 2), ("a", None, 2, 3)]


def test_the_cache_size_a_query_was_created_with_stays_its_own() -> None:
    eng = Engine()
    eng.execute("SET 'cache.max.bytes.buffering'='0';" + COUNTS + "UNSET 'cache.max.bytes.buffering';")
    _batch(eng, [("a", 1, 1), ("a", 1, 2)])
    assert _changes(eng, "COUNTS", "C") == [("a", None, 1, 1), ("a", None, 2, 2)]


def test_a_cache_size_that_is_no_number_is_refused_naming_the_property() -> None:
    eng = Engine(properties={"cache.max.bytes.buffering": "lots"})
    with pytest.raises(BindError, match=r"Invalid value 'lots' for configuration cache\.max\.bytes\.buffering"):
        eng.execute(COUNTS)


def test_having_through_the_cache_compares_the_batchs_last_result_with_the_last_one_written() -> None:
    eng = Engine()
    eng.execute(CLICKS + "CREATE TABLE big AS SELECT user, SUM(n) AS total FROM clicks GROUP BY user "
                "HAVING SUM(n) > 5;")
    _batch(eng, [("a", 10, 1), ("a", -20, 2)])  # 10 passed, -10 fails: neither was written
    assert _changes(eng, "BIG", "TOTAL") == []
    _batch(eng, [("a", 30, 3), ("a", 1, 4)])  # 20, 21: the last passes
    _batch(eng, [("a", -30, 5), ("a", 40, 6), ("a", -40, 7)])  # -9, 31, -9: fails after 21 was written
    _batch(eng, [("a", -1, 8)])  # fails again: nothing more
    assert _changes(eng, "BIG", "TOTAL") == [("a", None, 21, 4), ("a", None, None, 7)]


def test_a_table_row_moving_between_groups_writes_both_groups_last_counts() -> None:
    eng = Engine()
    eng.execute("CREATE TABLE users (id INT PRIMARY KEY, region VARCHAR) WITH (KAFKA_TOPIC='users', "
                "VALUE_FORMAT='JSON');"
                "CREATE TABLE per_region AS SELECT region, COUNT(*) AS c FROM users GROUP BY region;")
    for key, region, ts in [(1, "eu", 1), (2, "eu", 2), (1, "us", 3)]:
        eng.produce("users", {"region": region}, key=key, timestamp=ts)
    eng.run_until_idle()
    assert [(r.key, r.value["C"]) for r in eng.consume("PER_REGION")] == [("eu", 1), ("us", 1)]


def test_an_aggregating_push_query_gets_each_groups_last_change_of_a_batch() -> None:
    eng = Engine(properties={"auto.offset.reset": "earliest"})
    eng.execute(CLICKS)
    for key, ts in [("a", 1), ("b", 2), ("a", 3)]:
        eng.produce("clicks", {"n": 1}, key=key, timestamp=ts)

    async def first_two() -> list[tuple[str, int]]:
        return [(row["USER"], row["C"]) async for row in
                eng.push("SELECT user, COUNT(*) AS c FROM clicks GROUP BY user EMIT CHANGES LIMIT 2;")]

    assert asyncio.run(first_two()) == [("b", 1), ("a", 2)]


WINDOWS = {
    "hopping": "WINDOW HOPPING (SIZE 30 MILLISECONDS, ADVANCE BY 10 MILLISECONDS, GRACE PERIOD 20 MILLISECONDS) "
               "GROUP BY user HAVING SUM(n) > 3",
    "session": "WINDOW SESSION (5 MILLISECONDS, GRACE PERIOD 20 MILLISECONDS) GROUP BY user",
}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("window", WINDOWS)
def test_each_batchs_cached_changes_are_its_every_changes_reduced_to_each_groups_last(window: str, seed: int) -> None:
    """Hopping windows with HAVING, and sessions, over random keys and times (some late), in batches
    of random sizes: the records each batch writes through the cache are those it writes with the
    cache off, reduced to each key and window's last change, in the order of those last changes —
    less the tombstones of windows (sessions merged away) never written."""
    rng = random.Random(seed)
    sql = CLICKS + f"CREATE TABLE sums AS SELECT user, SUM(n) AS total FROM clicks {WINDOWS[window]} EMIT CHANGES;"
    cached, every = Engine(), Engine(properties=EVERY_CHANGE)
    for eng in (cached, every):
        eng.execute(sql)
    ts, seen = 0, {"cached": 0, "every": 0}
    for _ in range(12):
        records = []
        for _ in range(rng.randint(1, 25)):
            ts += rng.randint(0, 6)
            records.append((rng.choice("abcd"), rng.randint(-2, 4), ts - rng.choice([0, 0, 0, 25])))
        _batch(cached, records)
        _batch(every, records)
        got, every_change = _changes(cached, "SUMS", "TOTAL", seen["cached"]), _changes(every, "SUMS", "TOTAL",
                                                                                          seen["every"])
        expected = _expected_through_cache(every_change, _changes(every, "SUMS", "TOTAL", 0)[:seen["every"]])
        assert sorted(map(repr, _untimed_tombstones(got))) == sorted(map(repr, _untimed_tombstones(expected)))
        assert _values(got) == _values(expected)
        seen = {"cached": seen["cached"] + len(got), "every": seen["every"] + len(every_change)}


def _untimed_tombstones(changes: list[Change]) -> list[tuple[Any, ...]]:
    """``changes`` with no time on their tombstones: through the cache, a tombstone has the time and
    the place of its group's last record, which may come after the one that wrote it with the cache
    off (records failing HAVING again write nothing then)."""
    return [change if change[2] is not None else change[:3] for change in changes]


def _values(changes: list[Change]) -> list[Change]:
    """The changes that are no tombstones, in order."""
    return [change for change in changes if change[2] is not None]


def _expected_through_cache(batch: list[Change], before: list[Change]) -> list[Change]:
    """A batch's changes through the cache, from its every change and all changes written before:
    each group's last change, unless it is a tombstone for a group whose last written change (before
    the batch) was one too, or none — HAVING failing where nothing passing was written."""
    written = {(key, repr(window)): value for key, window, value, _ in before}
    return [change for change in _last_of_each_group(batch)
            if change[2] is not None or written.get((change[0], repr(change[1]))) is not None]


def test_a_plan_stored_before_the_cache_loads_as_writing_every_change() -> None:
    eng = Engine()
    eng.execute(COUNTS)
    [query] = eng.catalog.queries.values()
    document = plan_document(eng.queries.runner(query.id).query_plan)
    assert document["plan"].pop("record_cache") is True
    assert plan_from_document(document).record_cache is False  # type: ignore[union-attr]
