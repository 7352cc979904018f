"""The DuckDB sink: a DuckDB table that mirrors a ksqlDB table, or collects a stream's rows.

``CREATE SINK CONNECTOR c WITH ('connector.class'='duckdb', 'source'='ORDERS', 'table'='orders',
'database'='/data/analytics.duckdb')`` (without ``database``: the engine's own database, where
``Engine.con`` reads it) creates the table if missing, with the source's columns, then per batch:

* a **TABLE** source is upserted by its key: the last change of each key in the batch replaces the
  key's row, and a tombstone deletes it, so the DuckDB table holds what a pull query would return;
* a **STREAM** source's rows are appended in log order (as a pull query lists them).

**Exactly once**: the rows and the sink's offsets (table ``nbstream_sink_offsets`` of the target
database, by connector and incarnation) change in one transaction of the target database; a
restart resumes from the offsets found there. With the engine's own database the processing log
and the connector's progress commit in that same transaction too; with another database they
commit just after it (a crash in between loses the processing-log records of that one batch).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import duckdb

from nbstream.catalog.catalog import Catalog
from nbstream.connectors import properties
from nbstream.connectors.sinks import ROWS, StoreProgress, TopicSink
from nbstream.errors import CatalogError
from nbstream.log.base import SqlLog
from nbstream.physical.expressions import quote
from nbstream.sql.ast import PropertyValue

OFFSETS_TABLE = "nbstream_sink_offsets"


class DuckDbSink(TopicSink):
    """Writes a stream or table into a DuckDB table (see the module docstring)."""

    connector_class = "duckdb"
    class_properties = ("table", "database")

    def __init__(self, name: str, props: Mapping[str, PropertyValue]) -> None:
        super().__init__(name, props)
        self.table = properties.text(name, self.props, "table", "the DuckDB table to write to")
        self.database = properties.optional_text(name, self.props, "database")

    def bind(self, con: duckdb.DuckDBPyConnection, log: SqlLog, catalog: Catalog, incarnation: int) -> None:
        super().bind(con, log, catalog, incarnation)
        self.prefix = "" if self.database is None else f"{quote(self._attach())}.main."
        self.target = self.prefix + quote(self.table)
        self.offsets_table = self.prefix + OFFSETS_TABLE
        columns = ", ".join(f"{quote(o.name)} {o.duckdb_type}" for o in self.outputs)
        con.execute(f"CREATE TABLE IF NOT EXISTS {self.target} ({columns})")
        con.execute(f'CREATE TABLE IF NOT EXISTS {self.offsets_table} (connector VARCHAR, incarnation INTEGER, '
                    '"partition" INTEGER, next_offset BIGINT, PRIMARY KEY (connector, incarnation, "partition"))')
        self._check_columns()

    def _attach(self) -> str:
        """The catalog name of the target database file, attached once per engine."""
        path = str(self.database)
        attached = self.con.execute("SELECT database_name FROM duckdb_databases() WHERE path = ?", [path]).fetchall()
        if attached:
            return str(attached[0][0])
        alias = "sink_" + hashlib.sha1(path.encode()).hexdigest()[:12]
        try:
            self.con.execute(f"ATTACH '{path.replace(chr(39), chr(39) * 2)}' AS {quote(alias)}")
        except duckdb.Error as error:
            raise CatalogError(f"connector {self.name}: cannot open database '{path}': {error}") from error
        return alias

    def _check_columns(self) -> None:
        """An existing table must have the source's columns (so that the rows fit)."""
        existing = {name.upper() for (name,) in self.con.execute(
            f"SELECT column_name FROM (DESCRIBE {self.target})").fetchall()}
        missing = [c for c in self.columns if c.upper() not in existing]
        if missing:
            raise CatalogError(f"connector {self.name}: table {self.table} exists without the column(s) "
                               f"{', '.join(missing)} of {self.source.name}: drop it or choose another 'table'")

    def resume(self, progress: str) -> None:
        super().resume(progress)
        self._load_offsets()

    def _load_offsets(self) -> None:
        """The offsets committed with the rows in the target database: they are authoritative."""
        self.offsets = dict(self.con.execute(
            f'SELECT "partition", next_offset FROM {self.offsets_table} WHERE connector = ? AND incarnation = ?',
            [self.name, self.incarnation]).fetchall())

    def drop(self) -> None:
        self.con.execute(f"DELETE FROM {self.offsets_table} WHERE connector = ? AND incarnation = ?",
                         [self.name, self.incarnation])

    # -- writing ---------------------------------------------------------------------------------
    def write(self, ranges: Mapping[int, tuple[int, int]], store: StoreProgress) -> None:
        [(written,)] = self.con.execute(f"SELECT count(*) FROM {ROWS} WHERE NOT __err").fetchall()

        def rows_and_offsets() -> None:
            self._upsert() if self.source.is_table else self._append()
            self.con.executemany(f"INSERT OR REPLACE INTO {self.offsets_table} VALUES (?, ?, ?, ?)",
                                 [[self.name, self.incarnation, p, end] for p, (_, end) in ranges.items()])

        if self.database is None:  # one transaction for the rows, offsets, processing log and progress
            self.commit(ranges, store, written, within=rows_and_offsets)
            return
        with self.log.transaction(self.con):  # DuckDB writes one database per transaction: the target's first
            rows_and_offsets()
        try:
            self.commit(ranges, store, written)
        finally:
            self._load_offsets()

    def _append(self) -> None:
        columns = ", ".join(quote(c) for c in self.columns)
        self.con.execute(f"INSERT INTO {self.target} ({columns}) {self.rows_sql()}")

    def _upsert(self) -> None:
        """The last change of each key in the batch replaces the key's row; a tombstone deletes it."""
        keys = [quote(k) for k in self.key_columns]
        columns = ", ".join(quote(c) for c in self.columns)
        same_key = " AND ".join(f"{self.target}.{k} IS NOT DISTINCT FROM __changed.{k}" for k in keys)
        self.con.execute(f"DELETE FROM {self.target} USING (SELECT DISTINCT {', '.join(keys)} "
                         f"FROM ({self.rows_sql()})) AS __changed WHERE {same_key}")
        self.con.execute(f"""INSERT INTO {self.target} ({columns})
            SELECT {columns} FROM (SELECT *, row_number() OVER (PARTITION BY {', '.join(keys)}
                                                               ORDER BY __in_partition DESC, __in_offset DESC) AS __n
                                    FROM ({self.rows_sql(deleted=True, position=True)}))
            WHERE __n = 1 AND NOT __deleted""")

    def describe_target(self) -> list[tuple[str, Any]]:
        return [("database", self.database or "(the engine's)"), ("table", self.table),
                ("writes", "upserts by key" if self.source.is_table else "appends")]
