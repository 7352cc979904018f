"""Avro bodies to Arrow in one native call: the fast path of the AVRO decoder.

The record bodies of a vector that share a writer schema are laid out as one in-memory Avro
Object Container File — a header holding the writer schema (as :func:`~nbstream.formats.avro_schema.reader_view`
renamed it), then ONE block of the concatenated bodies — which polars' Rust reader
(``polars.read_avro``) turns into Arrow columns without a Python object per record. The columns
are then conformed to the source's Arrow types (:func:`conform`).

The Avro binary encoding of a record is the concatenation of its fields' encodings, so a bare
value (an unwrapped column, or a non-record writer read into one column) is read as a record of
one field with the same bytes. Concatenated bodies are only sound if each body is exactly one
datum; a body with trailing bytes would shift the ones after it. So the block ends with a copy of
the first body (a *canary*) that must decode to the first row again, and the row count must be
the number of bodies plus one.

Whatever this path cannot vouch for returns None (:class:`Rejected` inside), and the caller decodes
those records one by one with fastavro, which gives each bad record its own error message:

* a writer schema polars cannot read (maps, unions of several non-null types, a bare ``null``),
  decided once per schema by :func:`polars_schema`;
* a block polars fails on (a truncated or corrupt body), or whose canary does not come back;
* a value that does not convert to its column exactly as the per-record path would convert it
  (:func:`conform` casts only where Arrow's cast gives the same value as fastavro + pyarrow:
  widening numbers, integers and booleans to STRING, numeric text to numbers, decimals rescaled
  without loss, timestamps and times to microseconds, enums to STRING).
"""

from __future__ import annotations

import io
import json
from typing import Any

import polars as pl
import pyarrow as pa
from polars.exceptions import PanicException

from nbstream.formats.avro_encode import varint_bytes

#: Magic bytes of an Avro Object Container File, and the sync marker ending our one block.
_MAGIC = b"Obj\x01"
_SYNC = b"nbstream.avro.sy"  # any 16 bytes: the file is ours and is read once


class Rejected(Exception):
    """The fast path cannot decode these records exactly as the per-record path would."""


def varint(n: int) -> bytes:
    """``n`` as an Avro ``long``: zig-zag, then 7 bits per byte, least significant first."""
    return varint_bytes((n << 1) ^ (n >> 63))


def _string(data: bytes) -> bytes:
    return varint(len(data)) + data


def container_header(schema: Any) -> bytes:
    """The header of an Object Container File of uncompressed blocks of ``schema``."""
    meta = {b"avro.schema": json.dumps(schema).encode(), b"avro.codec": b"null"}
    entries = b"".join(_string(k) + _string(v) for k, v in meta.items())
    return _MAGIC + varint(len(meta)) + entries + varint(0) + _SYNC


def polars_schema(view: Any, single: str | None) -> Any | None:
    """The record schema polars reads for the writer schema ``view`` (already renamed to the
    reader's names): ``view`` itself when it is a record read into the columns (``single``
    None), else a record of one field ``single`` of type ``view`` (the same bytes: a column read
    from a bare value, a record too). None when polars cannot read it."""
    if single is not None:
        view = {"type": "record", "name": "nbs_single", "fields": [{"name": single, "type": view}]}
    elif not (isinstance(view, dict) and view.get("type") == "record"):
        return None
    return view if _readable(view) else None


def _readable(s: Any) -> bool:
    if isinstance(s, list):
        branches = [b for b in s if b != "null"]
        return len(branches) == 1 and len(s) <= 2 and _readable(branches[0])
    if isinstance(s, str):
        return s in ("boolean", "int", "long", "float", "double", "bytes", "string")
    kind = s.get("type")
    if isinstance(kind, list | dict):
        return _readable(kind)
    if kind == "record":
        return all(_readable(f["type"]) for f in s["fields"])
    if kind == "array":
        return _readable(s["items"])
    if kind in ("enum", "fixed"):
        return True
    return isinstance(kind, str) and _readable(kind)  # a primitive, maybe with a logical type


class FastReader:
    """Reads bodies written with one writer schema into the Arrow struct ``target``."""

    def __init__(self, schema: Any, target: pa.StructType) -> None:
        self.header = container_header(schema)
        self.target = target

    def read(self, bodies: pa.Array) -> pa.Array | None:
        """The struct array of ``bodies`` (a binary array of Avro datums without the 5-byte
        Confluent header, none null), or None when the fast path rejects them (see the module)."""
        n = len(bodies)
        if n == 0:
            return None
        bodies = bodies.cast(pa.binary()) if bodies.type != pa.binary() else bodies
        offsets, data = bodies.buffers()[1], bodies.buffers()[2]
        if offsets is None or data is None:
            return None
        bounds = pa.Array.from_buffers(pa.int32(), n + 1, [None, offsets], offset=bodies.offset)
        start, end = bounds[0].as_py(), bounds[n].as_py()
        canary = bodies[0].as_buffer()
        block = memoryview(data)[start:end]
        size = (end - start) + len(canary)
        file = b"".join((self.header, varint(n + 1), varint(size), block, canary, _SYNC))
        try:
            table = pl.read_avro(io.BytesIO(file)).to_arrow()
        except (Exception, PanicException):
            return None
        if table.num_rows != n + 1 or not table.slice(n).equals(table.slice(0, 1)):  # in Arrow: no Python dates
            return None
        struct = pa.StructArray.from_arrays([c.combine_chunks() for c in table.columns], names=table.column_names)
        try:
            return conform(struct, self.target).slice(0, n)  # without the canary
        except (Rejected, pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None


def _chunk(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    return a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a


def conform(a: pa.Array, t: pa.DataType) -> pa.Array:
    """``a`` (polars' Arrow) as an array of ``t`` holding what the per-record path would hold;
    :class:`Rejected` (or an Arrow error of a safe cast) where that is not certain."""
    src = a.type
    if src == t:
        return a
    if pa.types.is_null(src):
        return pa.nulls(len(a), t)
    if pa.types.is_struct(t):
        if not pa.types.is_struct(src):
            raise Rejected(f"{src} is not a record")
        present = {src.field(i).name: i for i in range(src.num_fields)}
        children = [conform(_chunk(a.field(present[f.name])), f.type) if f.name in present else pa.nulls(len(a), f.type)
                    for f in t]
        mask = a.is_null() if a.null_count else None
        return pa.StructArray.from_arrays(children, fields=list(t), mask=mask)
    if pa.types.is_list(t):
        if not (pa.types.is_list(src) or pa.types.is_large_list(src)) or a.offset != 0:
            raise Rejected(f"{src} is not an array")
        values = conform(a.values, t.value_type)
        mask = a.is_null() if a.null_count else None
        rebuilt = pa.LargeListArray.from_arrays(a.offsets, values, mask=mask) if pa.types.is_large_list(src) else \
            pa.ListArray.from_arrays(a.offsets, values, mask=mask)
        return rebuilt.cast(t)
    if pa.types.is_dictionary(src):  # an enum: its symbols
        return conform(a.dictionary_decode(), t)
    if _same_values(src, t):
        return a.cast(t, safe=True)
    raise Rejected(f"{src} to {t} may convert otherwise than per record")


def _same_values(src: pa.DataType, t: pa.DataType) -> bool:
    """Whether Arrow's safe cast from ``src`` to ``t`` gives what fastavro + pyarrow (with
    ksqlDB's coercions) give, or fails where they fail."""
    text = pa.types.is_string(src) or pa.types.is_large_string(src) or pa.types.is_string_view(src)
    binary = (pa.types.is_binary(src) or pa.types.is_large_binary(src) or pa.types.is_binary_view(src)
              or pa.types.is_fixed_size_binary(src))
    if pa.types.is_string(t):
        return text or pa.types.is_integer(src) or pa.types.is_boolean(src)
    if pa.types.is_binary(t):
        return binary
    if pa.types.is_integer(t):
        return pa.types.is_integer(src) or text
    if pa.types.is_floating(t):
        return pa.types.is_floating(src) or pa.types.is_integer(src) or text
    if pa.types.is_decimal(t):
        return pa.types.is_decimal(src)
    if pa.types.is_timestamp(t):
        return pa.types.is_timestamp(src) and src.tz in (None, "UTC")
    if pa.types.is_time(t):
        return pa.types.is_time(src)
    if pa.types.is_date(t):
        return pa.types.is_date(src)
    return False

