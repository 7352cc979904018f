"""Point lookups that arrive together are answered by one statement, each with its own rows:
asked from threads (:class:`Lookups`) or on an asyncio loop (:class:`LoopLookups`)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pytest

from nbstream.errors import ExecutionError
from nbstream.runtime.lookups import KEY_COLUMN, Lookup, Lookups, LoopLookups
from nbstream.runtime.pull import cached_point_lookup
from nbstream.runtime.service import EngineService

PREFIX = f'SELECT "NAME", "ID" AS {KEY_COLUMN} FROM t WHERE "ID" IN ('


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute('CREATE TABLE t ("ID" VARCHAR PRIMARY KEY, "NAME" VARCHAR)')
    con.execute("INSERT INTO t SELECT 'k' || i, 'name-' || i FROM range(100) r(i)")
    return con


def lookup(key: str) -> Lookup:
    return Lookup(PREFIX, key, f"'{key}'")


def test_a_lookup_alone_runs_alone(con: duckdb.DuckDBPyConnection) -> None:
    assert Lookups().rows(lookup("k7"), con) == [("name-7",)]
    assert Lookups().rows(lookup("nope"), con) == []


class Gated:
    """A connection whose first statement waits for ``gate``, recording every statement."""

    def __init__(self, con: duckdb.DuckDBPyConnection, statements: list[str], gate: threading.Event) -> None:
        self.con, self.statements, self.gate = con, statements, gate

    def execute(self, sql: str) -> duckdb.DuckDBPyConnection:
        self.statements.append(sql)
        if len(self.statements) == 1:
            self.gate.wait(5)
        return self.con.execute(sql)


def test_lookups_waiting_while_one_runs_are_answered_by_one_statement(con: duckdb.DuckDBPyConnection) -> None:
    lookups, statements, gate = Lookups(), [], threading.Event()
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(lookups.rows, lookup(f"k{i}"), Gated(con.cursor(), statements, gate))  # type: ignore[arg-type]
                   for i in range(6)]
        while sum(len(waiting) for waiting in lookups._waiting.values()) < 5:
            threading.Event().wait(0.01)
        gate.set()
        answers = sorted(tuple(f.result(5)) for f in futures)
    assert answers == sorted(((f"name-{i}",),) for i in range(6))
    assert len(statements) == 2  # the first alone, then the five that waited for it, together
    assert statements[1].count("'k") == 5


def test_an_error_reaches_every_lookup_of_its_batch(con: duckdb.DuckDBPyConnection) -> None:
    broken = Lookup("SELECT nothing FROM t WHERE x IN (", "k1", "'k1'")
    with pytest.raises(duckdb.Error):
        Lookups().rows(broken, con)


def test_many_threads_each_get_the_row_of_their_key() -> None:
    engine = EngineService()
    engine.execute("CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR) "
                   "WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON', PARTITIONS=1);")
    engine.insert_json_rows("USERS", [b'{"ID":"k%d","NAME":"name-%d"}' % (i, i) for i in range(500)])
    engine.run_until_idle()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: engine.pull_rows(f"SELECT name FROM users WHERE id = 'k{i % 600}';").rows,
                                range(2000)))
    assert results == [[(f"name-{i % 600}",)] if i % 600 < 500 else [] for i in range(2000)]
    engine.close()


def on(connection: object) -> LoopLookups:
    return LoopLookups(lambda: contextlib.nullcontext(connection))  # type: ignore[arg-type]


def test_on_a_loop_lookups_asked_while_a_batch_runs_go_together_as_the_next(con: duckdb.DuckDBPyConnection) -> None:
    statements: list[str] = []
    gate = threading.Event()
    lookups = on(Gated(con.cursor(), statements, gate))

    async def ask() -> list[list[tuple[object, ...]]]:
        first = asyncio.ensure_future(lookups.rows(lookup("k0")))
        await asyncio.sleep(0.05)  # the first batch runs, held at the gate
        rest = [asyncio.ensure_future(lookups.rows(lookup(key))) for key in ("k1", "k2", "nope", "k1")]
        gate.set()
        return await asyncio.gather(first, *rest)

    assert asyncio.run(ask()) == [[("name-0",)], [("name-1",)], [("name-2",)], [], [("name-1",)]]
    assert len(statements) == 2
    assert statements[1].endswith("IN ('k1', 'k2', 'nope')")  # each key once
    lookups.close()


def test_on_a_loop_a_failing_statement_fails_its_own_lookups_only(con: duckdb.DuckDBPyConnection) -> None:
    lookups = on(con)
    broken = Lookup("SELECT nothing FROM t WHERE x IN (", "k1", "'k1'")

    async def ask() -> list[object]:
        return await asyncio.gather(lookups.rows(broken), lookups.rows(lookup("k3")), return_exceptions=True)

    failed, answered = asyncio.run(ask())
    assert isinstance(failed, ExecutionError) and "nothing" in str(failed)
    assert answered == [("name-3",)]
    lookups.close()


def test_on_a_loop_a_lookup_whose_asker_went_away_does_not_stop_the_next(con: duckdb.DuckDBPyConnection) -> None:
    statements: list[str] = []
    gate = threading.Event()
    lookups = on(Gated(con.cursor(), statements, gate))

    async def ask() -> list[tuple[object, ...]]:
        gone = asyncio.ensure_future(lookups.rows(lookup("k4")))
        await asyncio.sleep(0.05)
        gone.cancel()
        gate.set()
        return await lookups.rows(lookup("k5"))

    assert asyncio.run(ask()) == [("name-5",)]
    lookups.close()


def test_on_a_loop_a_batch_that_cannot_get_a_connection_fails_its_lookups() -> None:
    def no_connection() -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]:
        raise ExecutionError("The server is shutting down")

    lookups = LoopLookups(no_connection)
    with pytest.raises(ExecutionError, match="shutting down"):
        asyncio.run(lookups.rows(lookup("k1")))
    lookups.close()


def test_a_point_lookup_is_answerable_without_planning_once_planned_and_while_its_table_stands() -> None:
    engine = EngineService()
    create = ("CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR) "
              "WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON', PARTITIONS=1);")
    engine.execute(create)
    assert cached_point_lookup(engine, "SELECT name FROM users WHERE id = 'k1';") is None
    engine.pull_rows("SELECT name FROM users WHERE id = 'k1';")
    found = cached_point_lookup(engine, "SELECT name FROM users WHERE id = 'k2';")
    assert found is not None
    assert [c.name for c in found.columns] == ["NAME"]
    assert (found.lookup.key, found.lookup.literal) == ("k2", "'k2'")
    assert cached_point_lookup(engine, "SELECT name FROM users WHERE name = 'k2';") is None  # not planned
    engine.execute("DROP TABLE users;")
    engine.execute(create)
    assert cached_point_lookup(engine, "SELECT name FROM users WHERE id = 'k2';") is None  # another table now
    engine.close()
