"""Materialized tables: the latest row per key of a TABLE, kept in a DuckDB state table.

Every TABLE (declared or created by CTAS) has a materializer: a query over the table's changelog
topic that upserts each key's newest row and deletes keys on tombstones, committing the state and
its input offsets in one transaction like any query. Pull queries read the state table.
"""

from __future__ import annotations

import duckdb

from nbstream.catalog.catalog import Source
from nbstream.log.embedded import EmbeddedLog
from nbstream.physical.expressions import quote
from nbstream.plan.logical import StatelessPlan
from nbstream.plan.planner import passthrough, scan_of
from nbstream.runtime.query import QueryRunner


def state_table(name: str) -> str:
    """The quoted DuckDB table holding the materialized rows of table ``name``."""
    return quote("state$" + name)


class Materializer(QueryRunner):
    """Keeps ``state$<TABLE>`` equal to the last row per key of the table's topic."""

    def __init__(self, source: Source, con: duckdb.DuckDBPyConnection, log: EmbeddedLog) -> None:
        plan = StatelessPlan(scan=scan_of(source), columns=tuple(passthrough(c) for c in source.schema.columns))
        self.source = source
        self.table = state_table(source.name)
        self.keys = [quote(c.name) for c in source.schema.key]
        defs = ", ".join(f"{quote(c.name)} {c.type.duckdb()}" for c in source.schema.columns)
        con.execute(f"CREATE TABLE IF NOT EXISTS {self.table} ({defs}, \"ROWTIME\" BIGINT)")
        super().__init__(f"MATERIALIZE_{source.name}", plan, con, log)

    @property
    def persistent(self) -> bool:
        return True

    def _stage_sql(self, sql: str) -> str:
        return sql  # the state table takes typed rows

    def _write_output(self) -> dict[str, dict[int, int]]:
        keys = ", ".join(self.keys)
        match = " AND ".join(f"{self.table}.{k} IS NOT DISTINCT FROM latest.{k}" for k in self.keys)
        cols = ", ".join(quote(c.name) for c in self.source.schema.columns)
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE __latest AS
            SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {keys}
                                     ORDER BY __in_partition DESC, __in_offset DESC) AS __rank
                           FROM __result WHERE NOT __err) WHERE __rank = 1"""
        )
        self.con.execute(f"DELETE FROM {self.table} USING __latest AS latest WHERE {match}")
        self.con.execute(f"INSERT INTO {self.table} SELECT {cols}, __ts FROM __latest WHERE NOT __deleted")
        return {}

    def drop(self) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {self.table}")
        self.con.execute("DELETE FROM __offsets WHERE query_id = ?", [self.query_id])
