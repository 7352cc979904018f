"""Vectorised Python UDFs for the few ksqlDB functions DuckDB has no SQL for.

Each UDF is an Arrow UDF (``create_function(..., type="arrow")``): DuckDB hands it whole Arrow
arrays per vector, never one Python call per row. :func:`register_udfs` registers them on a
connection and is idempotent; compiled expressions name them by the constants below.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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


#: INT/BIGINT/DOUBLE_FROM_BYTES: (numpy type code, width, DuckDB type) by ksqlDB type.
FROM_BYTES = {"INTEGER": ("i4", 4, "INTEGER"), "BIGINT": ("i8", 8, "BIGINT"), "DOUBLE": ("f8", 8, "DOUBLE")}


def from_bytes_udf(kind: str, big_endian: bool) -> tuple[str, Callable[[pa.Array], pa.Array]]:
    """The UDF name and function reading BLOBs of exactly the type's width as numbers (vectorised:
    one NumPy view over the vector's bytes); a BLOB of another length fails its row, as ksqlDB."""
    code, width, _ = FROM_BYTES[kind]
    dtype = np.dtype((">" if big_endian else "<") + code)

    def read(values: pa.Array) -> pa.Array:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        lengths = pc.binary_length(values)
        if pc.any(pc.not_equal(lengths, width)).as_py():
            raise ValueError(f"{kind}_FROM_BYTES: the BYTES must be {width} bytes long")
        padded = pc.if_else(pc.is_null(values), pa.scalar(b"\0" * width, pa.binary()), values)
        if isinstance(padded, pa.ChunkedArray):
            padded = padded.combine_chunks()
        if not len(padded):
            return pa.array([], type=pa.from_numpy_dtype(dtype.newbyteorder("=")))
        offsets, data = padded.buffers()[1:3]
        start = int(np.frombuffer(offsets, dtype=np.int32)[padded.offset])  # the values lie back to back
        raw = np.frombuffer(data, dtype=dtype, count=len(padded), offset=start)
        numbers = raw.astype(dtype.newbyteorder("="))
        return pa.array(numbers, mask=pc.is_null(values).to_numpy(zero_copy_only=False))

    return f"nbstream_{kind.lower()}_from_bytes_{'be' if big_endian else 'le'}", read


_UDFS: list[tuple[str, Callable[..., pa.Array], list[str], str]] = [
    (SPLIT_BYTES, split_bytes, ["BLOB", "BLOB"], "BLOB[]"),
    *((name, fn, ["BLOB"], FROM_BYTES[kind][2]) for kind in FROM_BYTES for big in (True, False)
      for name, fn in [from_bytes_udf(kind, big)]),
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
