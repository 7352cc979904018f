"""Materialized tables: the latest row per key of a TABLE, kept in a DuckDB state table.

Every TABLE (declared or created by CTAS) has a materializer: a query over the table's changelog
topic that upserts each key's newest row and deletes keys on tombstones, committing the state and
its input offsets in one transaction like any query. Pull queries read the state table.

A windowed table (a windowed aggregation's output) is materialized per key and window: its state
has ``WINDOWSTART``/``WINDOWEND`` columns after the key, and windows that started the window
retention or more before the largest window start (sessions: ended before the largest end) are
purged, as Kafka Streams' stores expire them, so the state stays bounded on an endless stream.

The key columns (and ``WINDOWSTART``) are the state table's PRIMARY KEY: DuckDB's ART index makes
a pull query's point lookup sub-millisecond and the upsert one ``INSERT OR REPLACE``.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb

from nbstream.catalog.catalog import Source
from nbstream.catalog.schema import WINDOW_BOUNDS, Column
from nbstream.catalog.types import BIGINT
from nbstream.log.base import SqlLog
from nbstream.physical.expressions import quote
from nbstream.plan.logical import OutputColumn, StatelessPlan
from nbstream.plan.planner import passthrough, scan_of
from nbstream.runtime.query import QueryRunner


def state_table(name: str) -> str:
    """The quoted DuckDB table holding the materialized rows of table ``name``."""
    return quote("state$" + name)


def state_columns(source: Source) -> list[Column]:
    """The columns of ``source``'s state (ROWTIME aside): keys, window bounds if windowed, values."""
    bounds = [Column(name, BIGINT, "KEY") for name in WINDOW_BOUNDS] if source.window is not None else []
    return [*source.schema.key, *bounds, *(c for c in source.schema.columns if c.role != "KEY")]


class Materializer(QueryRunner):
    """Keeps ``state$<TABLE>`` equal to the last row per key (and window) of the table's topic."""

    def __init__(self, source: Source, con: duckdb.DuckDBPyConnection, log: SqlLog) -> None:
        columns = state_columns(source)
        plan = StatelessPlan(scan=scan_of(source), columns=tuple(_output(c) for c in columns))
        self.source = source
        self.table = state_table(source.name)
        self.keys = [quote(c.name) for c in source.schema.key]
        if source.window is not None:  # a session's start may be another session's too (merged, then replaced)
            self.keys += [quote(b) for b in WINDOW_BOUNDS[: 2 if source.window.kind == "SESSION" else 1]]
        self.columns = ", ".join(quote(c.name) for c in columns)
        defs = ", ".join(f"{quote(c.name)} {c.type.duckdb()}" for c in columns)
        # DuckDB indexes no STRUCT, ARRAY or MAP: such keys are replaced by delete + insert instead
        self.indexed = bool(source.schema.key) and all(c.type.name not in ("STRUCT", "ARRAY", "MAP")
                                                       for c in source.schema.key)
        primary_key = f", PRIMARY KEY ({', '.join(self.keys)})" if self.indexed else ""
        con.execute(f"CREATE TABLE IF NOT EXISTS {self.table} ({defs}, \"ROWTIME\" BIGINT{primary_key})")
        super().__init__(f"MATERIALIZE_{source.name}", plan, con, log)

    @property
    def persistent(self) -> bool:
        return True

    @property
    def retention_ms(self) -> int | None:
        """How long a window stays in the state (None: not windowed, or kept for ever)."""
        return None if self.source.window is None else self.source.window.retention_ms

    def _stage_sql(self, sql: str) -> str:
        return sql  # the state table takes typed rows

    #: Whether the topic read is the engine's embedded log, appended in the writer's own DuckDB
    #: transaction, so that the writer may hand over its typed rows (:meth:`take`).
    local = True

    def _write_output(self) -> dict[str, dict[int, int]]:
        self._apply("(SELECT * FROM __result WHERE NOT __err)", "__in_partition DESC, __in_offset DESC")
        return {}

    def follows(self, ends: Mapping[int, int]) -> bool:
        """Whether this table's state holds every record of its topic up to ``ends`` (per partition)."""
        return all(self.offsets.get(p, 0) == end for p, end in ends.items())

    def take(self, rows: str, newest_first: str, ends: Mapping[int, int]) -> None:
        """Apply ``rows`` — the state's columns, ``__deleted`` and ``__ts``, in the order ``newest_first``
        sorts them newest first — which the caller appends to this table's topic in its open
        transaction, as the records up to ``ends``: the same rows decoded again, spared. The offsets
        are committed with the transaction; :meth:`took` records them once it committed. The caller
        checks :meth:`follows` before it appends, and hands over only rows the topic's formats give
        back unchanged."""
        self._apply(rows, newest_first)
        self._commit_offsets({p: (end, end) for p, end in ends.items()})

    def took(self, ends: Mapping[int, int]) -> None:
        """The transaction of :meth:`take` committed: the topic is read up to ``ends``."""
        self.offsets.update(ends)

    def _apply(self, rows: str, newest_first: str) -> None:
        """Upsert each key's newest row of ``rows`` into the state and delete tombstoned keys."""
        partition = f"PARTITION BY {', '.join(self.keys)} " if self.keys else ""
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE __latest AS
            SELECT * FROM {rows} QUALIFY row_number() OVER ({partition}ORDER BY {newest_first}) = 1"""
        )
        if self.source.schema.key:
            match = " AND ".join(f"{self.table}.{k} = latest.{k}" for k in self.keys)
            replaced = "latest.__deleted AND " if self.indexed else ""
            self.con.execute(f"DELETE FROM {self.table} USING __latest AS latest WHERE {replaced}{match}")
            self.con.execute(f"INSERT {'OR REPLACE ' if self.indexed else ''}INTO {self.table} "
                             f"SELECT {self.columns}, __ts FROM __latest WHERE NOT __deleted")
        else:  # a keyless table holds one row
            self.con.execute(f"DELETE FROM {self.table}")
            self.con.execute(f"INSERT INTO {self.table} SELECT {self.columns}, __ts FROM __latest WHERE NOT __deleted")
        self._purge_expired()

    def _purge_expired(self) -> None:
        """Drop the windows that a Kafka Streams window store no longer returns: those that started
        ``retention`` or more before the largest window start written (its store time is that, not
        the stream time), or, for sessions, that ended ``retention`` or more before the largest end."""
        retention = self.retention_ms
        if retention is None or self.source.window is None:
            return
        bound = quote("WINDOWEND" if self.source.window.kind == "SESSION" else "WINDOWSTART")
        self.con.execute(f"""DELETE FROM {self.table}
            WHERE {bound} <= (SELECT max({bound}) FROM {self.table}) - {int(retention)}""")

    def drop(self) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {self.table}")
        self.con.execute("DELETE FROM __offsets WHERE query_id = ?", [self.query_id])


def _output(column: Column) -> OutputColumn:
    if column.name in WINDOW_BOUNDS:
        return OutputColumn(column.name, column.type, quote(column.name), "KEY")
    return passthrough(column)
