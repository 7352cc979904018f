"""Stream time: the largest record time a query has seen, kept per clock in ``__stream_time``.

A clock is named by its owner — an aggregation's input partition, a join's input partition, a join
side's window store in one partition — and commits with the batch that moved it (the table is in the
engine's database). Each input partition is a task with its own clocks, as in Kafka Streams.
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


def load_partitions(con: duckdb.DuckDBPyConnection, clock: str, partitions: list[int]) -> dict[int, int]:
    """The stream time of ``clock`` in each of ``partitions`` (clock ``<clock>/<partition>``); a clock
    saved before clocks were kept per partition stands for every partition."""
    names = [clock, *(f"{clock}/{p}" for p in partitions)]
    rows: dict[str, int] = {str(name): int(st) for name, st in con.execute(
        "SELECT query_id, st FROM __stream_time WHERE query_id IN (SELECT unnest(?))", [names]).fetchall()}
    shared = rows.get(clock, NO_TIME)
    return {p: rows.get(f"{clock}/{p}", shared) for p in partitions}


def by_partition_sql(clocks: dict[int, int], column: str = "__in_partition") -> str:
    """A SQL expression giving the clock of the row's partition (``clocks``: by partition), else NO_TIME."""
    if not clocks:
        return str(NO_TIME)
    cases = " ".join(f"WHEN {p} THEN {st}" for p, st in sorted(clocks.items()))
    return f"CASE {column} {cases} ELSE {NO_TIME} END"
