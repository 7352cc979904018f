"""Stream time: the largest record time a query has seen, kept per clock in ``__stream_time``.

A clock is named by its owner — an aggregation's input partition, a join, a join side's window
store — and commits with the batch that moved it (the table is in the engine's database).
"""

from __future__ import annotations

import duckdb

#: The stream time of a clock that has seen no record yet (earlier than any record time).
NO_TIME = -(2**62)


def create_clocks(con: duckdb.DuckDBPyConnection, *, temporary: bool = False) -> None:
    """Create ``__stream_time`` if missing (``temporary``: for a push query's own connection)."""
    kind = "TEMP TABLE" if temporary else "TABLE"
    con.execute(f"CREATE {kind} IF NOT EXISTS __stream_time (query_id VARCHAR PRIMARY KEY, st BIGINT)")


def load(con: duckdb.DuckDBPyConnection, clock: str) -> int:
    """The stream time of ``clock``, or NO_TIME."""
    rows = con.execute("SELECT st FROM __stream_time WHERE query_id = ?", [clock]).fetchall()
    return int(rows[0][0]) if rows else NO_TIME


def save(con: duckdb.DuckDBPyConnection, clock: str, st: int) -> None:
    con.execute("INSERT OR REPLACE INTO __stream_time VALUES (?, ?)", [clock, st])
