"""Point lookups that arrive together are answered by one statement, each with its own rows."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pytest

from nbstream.runtime.lookups import KEY_COLUMN, Lookup, Lookups
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
