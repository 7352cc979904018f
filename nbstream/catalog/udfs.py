"""Vectorised Python UDFs for the few ksqlDB functions DuckDB has no SQL for.

Each UDF is an Arrow UDF (``create_function(..., type="arrow")``): DuckDB hands it whole Arrow
arrays per vector, never one Python call per row. :func:`register_udfs` registers them on a
connection and is idempotent; compiled expressions name them by the constants below.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pyarrow as pa
from duckdb.func import ARROW, SPECIAL

#: SPLIT(BYTES, BYTES): split a BLOB around a BLOB delimiter (empty delimiter: single bytes).
SPLIT_BYTES = "nbstream_split_bytes"


def _split_one(value: bytes | None, delimiter: bytes | None) -> list[bytes] | None:
    if value is None or delimiter is None:
        return None
    if delimiter == b"":
        return [value[i : i + 1] for i in range(len(value))] or [b""]
    return value.split(delimiter)


def split_bytes(values: pa.Array, delimiters: pa.Array) -> pa.Array:
    """SPLIT over Arrow arrays of binary values and delimiters."""
    pairs = zip(values.to_pylist(), delimiters.to_pylist(), strict=True)
    return pa.array([_split_one(v, d) for v, d in pairs], type=pa.list_(pa.binary()))


_UDFS: list[tuple[str, Callable[..., pa.Array], list[str], str]] = [
    (SPLIT_BYTES, split_bytes, ["BLOB", "BLOB"], "BLOB[]"),
]


def add_udf(name: str, fn: Callable[..., pa.Array], params: list[str], returns: str) -> None:
    """Declare one more Arrow UDF (DuckDB types); :func:`register_udfs` registers it from then on."""
    if all(existing[0] != name for existing in _UDFS):
        _UDFS.append((name, fn, params, returns))


def register_udfs(con: duckdb.DuckDBPyConnection) -> None:
    """Register nbstream's Arrow UDFs on ``con`` (a no-op for those already registered)."""
    known = {row[0] for row in con.execute("SELECT function_name FROM duckdb_functions()").fetchall()}
    for name, fn, params, returns in _UDFS:
        if name not in known:
            con.create_function(name, fn, list(params), returns, type=ARROW, null_handling=SPECIAL)
