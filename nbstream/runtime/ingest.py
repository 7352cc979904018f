"""Bulk ingest: a DataFrame or Arrow table encoded into records inside DuckDB, appended at once."""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow as pa

from nbstream.catalog.catalog import Source
from nbstream.errors import BindError, did_you_mean
from nbstream.log.base import SqlLog
from nbstream.physical.compile import encode_rows_sql
from nbstream.physical.expressions import quote
from nbstream.plan.planner import passthrough, sink_of


def encode_frame(con: duckdb.DuckDBPyConnection, log: SqlLog, source: Source,
                 data: pd.DataFrame | pa.Table, *, key: str | None, timestamp: str | None) -> int:
    """Append every row of ``data`` to ``source``'s topic; returns the number of rows.

    See :func:`append_frame`, which this calls in a transaction of its own.
    """
    return sum(append_frame(con, log, source, data, key=key, timestamp=timestamp).values())


def append_frame(con: duckdb.DuckDBPyConnection, log: SqlLog, source: Source, data: pd.DataFrame | pa.Table, *,
                 key: str | None, timestamp: str | None, commit: bool = True) -> dict[int, int]:
    """Append every row of ``data`` to ``source``'s topic; returns the records written per partition.

    Frame columns match the source's columns case-insensitively; ``key`` names the frame column
    holding the (single) key, ``timestamp`` the one holding epoch-ms record times. With
    ``commit=False`` the caller's open transaction holds the append (see ``SqlLog.append_relation``).
    """
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    by_upper = {name.upper(): name for name in table.column_names}
    columns = []
    for col in source.schema.columns:
        if col.role in ("HEADER", "HEADERS"):
            continue
        frame_name = key if (col.role == "KEY" and key is not None) else by_upper.get(col.name.upper())
        if frame_name is None or frame_name not in table.column_names:
            if col.role == "KEY":
                raise BindError(f"no column for key {col.name} of {source.name}: pass key='<column>'"
                                f"{did_you_mean(col.name, table.column_names)}")
            sql = f"NULL::{col.type.duckdb()}"
        else:
            sql = f"CAST(__frame.{quote(frame_name)} AS {col.type.duckdb()})"
        columns.append((col, sql))
    ts = f"CAST(__frame.{quote(timestamp)} AS BIGINT)" if timestamp else "epoch_ms(now())"
    projected = ", ".join(f"{sql} AS {quote(col.name)}" for col, sql in columns)
    # The row's position in the frame orders the records (DuckDB may scan the frame in parallel).
    con.register("__frame", table.append_column("__position", pa.array(range(table.num_rows), pa.int64())))
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW __frame_rows AS SELECT FALSE AS __err, FALSE AS __deleted,
            NULL AS __headers, {ts} AS __ts, 0 AS __in_partition, __position AS __in_offset,
            {projected} FROM __frame"""
        )
        sink = sink_of(source, log.require(source.topic).partitions)
        outputs = [passthrough(c) for c, _ in columns]
        con.execute(f"CREATE OR REPLACE TEMP VIEW __encoded AS {encode_rows_sql(sink, outputs, '__frame_rows')}")
        return log.append_relation(source.topic, "__encoded", commit=commit)
    finally:
        con.execute("DROP VIEW IF EXISTS __encoded")
        con.execute("DROP VIEW IF EXISTS __frame_rows")
        con.unregister("__frame")
