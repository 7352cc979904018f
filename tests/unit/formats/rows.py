"""Round trips through a format in DuckDB: records decoded from blobs, rows encoded to blobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from nbstream.catalog.schema import Column
from nbstream.formats import Format
from nbstream.formats.base import let_relation


def decode_rows(
    con: duckdb.DuckDBPyConnection,
    fmt: Format,
    blobs: Sequence[bytes | None],
    columns: Sequence[Column],
    *,
    wrap: bool = True,
) -> list[tuple[Any, ...]]:
    """Decode ``blobs`` in DuckDB: each row is (*columns, error, error_message)."""
    con.execute("CREATE OR REPLACE TEMP TABLE t (i INTEGER, b BLOB)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(blobs)))
    dec = fmt.decode_sql("b", columns, wrap_single_value=wrap)
    exprs = [*dec.columns, dec.error or "false", dec.error_message or "NULL"]
    return con.sql(f"SELECT {', '.join(exprs)} FROM {let_relation('t', dec)} ORDER BY i").fetchall()


def encode_rows(
    con: duckdb.DuckDBPyConnection,
    fmt: Format,
    values_sql: str,
    columns: Sequence[Column],
    *,
    wrap: bool = True,
) -> list[bytes | None]:
    """Encode the rows of ``values_sql`` (a query whose columns are named like ``columns``)."""
    enc = fmt.encode_sql([(c, f'"{c.name}"') for c in columns], wrap_single_value=wrap)
    return [r[0] for r in con.sql(f"SELECT {enc} FROM ({values_sql}) v").fetchall()]
