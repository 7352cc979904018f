"""Avro's binary encoding of whole Arrow arrays, built in numpy: no Python loop over records.

Each value of an array becomes a byte string, held as :class:`Encoded` — one length per row and
the rows' bytes back to back. A record is its fields' byte strings joined row by row
(:func:`join_rows`), a ``long`` a zig-zag varint computed for the whole column at once, a
``string`` its length's varint joined to Arrow's own character buffer, an ``array`` or ``map`` its
items encoded over the flattened child array and grouped back per row, a nullable union its
branch index joined to the non-null values.

:func:`encoder_for` compiles a writer schema (plain JSON, named types inlined, fields named as the
Arrow struct's: :func:`~nbstream.formats.avro_schema.reader_view`) into such an encoder, or raises
:class:`NotVectorizable` for what it does not cover: ``enum``, ``fixed``, unions of more than one
non-null type, logical types other than date, time, timestamp (millis, micros) and decimal over
bytes; the encoder it returns raises it for Arrow types it does not take, and for a record field
the struct lacks that has no default (one it has is written as its default). The caller writes
those record by record (fastavro).

Decimals are written as Java's ``BigDecimal.unscaledValue().toByteArray()`` (ksqlDB's writer):
the shortest two's-complement big-endian bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa


class NotVectorizable(Exception):
    """A writer schema (or a part of it) this module does not encode."""


@dataclass(frozen=True)
class Encoded:
    """One byte string per row: ``lengths`` (int64) and the rows' bytes back to back (``data``, uint8)."""

    lengths: np.ndarray
    data: np.ndarray

    @classmethod
    def constant(cls, value: bytes, rows: int) -> Encoded:
        return cls(np.full(rows, len(value), np.int64), np.tile(np.frombuffer(value, np.uint8), rows))

    def to_binary(self, validity: pa.Buffer | None = None) -> pa.Array:
        """The rows as an Arrow ``binary`` array (``validity``: which rows are not NULL)."""
        offsets = np.zeros(len(self.lengths) + 1, np.int64)
        np.cumsum(self.lengths, out=offsets[1:])
        return pa.Array.from_buffers(pa.large_binary(), len(self.lengths),
                                     [validity, pa.py_buffer(offsets), pa.py_buffer(self.data)]).cast(pa.binary())


Encoder = Callable[[pa.Array], Encoded]


def join_rows(parts: Sequence[Encoded]) -> Encoded:
    """Row ``i`` of the result is row ``i`` of every part, in order, joined."""
    lengths = np.zeros(len(parts[0].lengths), np.int64)
    for part in parts:
        lengths += part.lengths
    out = np.empty(int(lengths.sum()), np.uint8)
    row_starts = np.cumsum(lengths) - lengths
    written = np.zeros(len(lengths), np.int64)
    for part in parts:
        if part.data.size:
            source_starts = np.cumsum(part.lengths) - part.lengths
            shift = np.repeat(row_starts + written - source_starts, part.lengths)
            out[shift + np.arange(part.data.size)] = part.data
        written += part.lengths
    return Encoded(lengths, out)


def varint_bytes(value: int) -> bytes:
    """One unsigned value as a base-128 varint (low group first, high bit: more follow)."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varints(values: np.ndarray) -> Encoded:
    """Each unsigned 64-bit value as a base-128 varint (low group first, high bit: more follow)."""
    values = values.astype(np.uint64, copy=False)
    width = max(1, -(-int(values.max(initial=0)).bit_length() // 7))  # the 7-bit groups of the largest
    if width == 1:
        return Encoded(np.ones(len(values), np.int64), values.astype(np.uint8))
    groups = np.empty((len(values), width), np.uint8)
    more = np.zeros((len(values), width), bool)
    for k in range(width):
        groups[:, k] = (values >> np.uint64(7 * k)) & np.uint64(0x7F)
        if k < width - 1:
            more[:, k] = (values >> np.uint64(7 * (k + 1))) != 0
    groups |= more.astype(np.uint8) << 7
    lengths = 1 + more.sum(axis=1, dtype=np.int64)
    return Encoded(lengths, groups[np.arange(width) < lengths[:, None]])


def zigzag_varints(values: np.ndarray) -> Encoded:
    """Avro's ``int``/``long``: each signed value zig-zag mapped, then as a varint."""
    signed = values.astype(np.int64, copy=False)
    return varints(((signed << 1) ^ (signed >> 63)).view(np.uint64))


def encoder_for(schema: Any) -> Encoder:
    """The encoder of arrays whose values the writer ``schema`` describes (:class:`NotVectorizable`
    for what it does not cover)."""
    if isinstance(schema, list):
        return _union(schema)
    kind = schema if isinstance(schema, str) else schema.get("type")
    if isinstance(kind, list | dict):
        return encoder_for(kind)
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical is not None and kind in ("int", "long", "bytes"):
        return _logical(kind, logical, schema)
    simple = _SIMPLE.get(kind)
    if simple is not None:
        return _non_null(simple)
    if kind == "record":
        return _non_null(_record(schema["fields"]))
    if kind == "array":
        return _non_null(_array(encoder_for(schema["items"])))
    if kind == "map":
        return _non_null(_map(encoder_for(schema["values"])))
    raise NotVectorizable(f"Avro type {kind!r}")


def _non_null(encode: Encoder) -> Encoder:
    def checked(array: pa.Array) -> Encoded:
        if array.null_count:
            raise ValueError("a NULL value for a field whose Avro type is not nullable")
        return encode(array)

    return checked


def _union(branches: list[Any]) -> Encoder:
    kinds = [b if isinstance(b, str) else b.get("type") for b in branches]
    if kinds.count("null") != 1 or len(branches) != 2:
        if kinds == ["null"]:
            return lambda array: Encoded(np.zeros(len(array), np.int64), np.empty(0, np.uint8))
        raise NotVectorizable(f"the Avro union {kinds}")
    null_index = kinds.index("null")
    encode_value = encoder_for(branches[1 - null_index])

    def encode(array: pa.Array) -> Encoded:
        if not array.null_count:  # every row the value's branch: its index, one byte
            return join_rows([Encoded.constant(bytes([2 * (1 - null_index)]), len(array)), encode_value(array)])
        valid = np.asarray(array.is_valid())
        index = zigzag_varints(np.where(valid, 1 - null_index, null_index))
        present = encode_value(array.filter(pa.array(valid)))
        lengths = np.zeros(len(array), np.int64)
        lengths[valid] = present.lengths
        return join_rows([index, Encoded(lengths, present.data)])

    return encode


def _booleans(array: pa.Array) -> Encoded:
    return Encoded(np.ones(len(array), np.int64), np.asarray(array.cast(pa.uint8()), np.uint8))


def _integers(array: pa.Array) -> Encoded:
    if not pa.types.is_integer(array.type):
        raise NotVectorizable(f"an Avro int or long from Arrow {array.type}")
    return zigzag_varints(np.asarray(array.cast(pa.int64()), np.int64))


def _floats(width: type[np.floating[Any]]) -> Encoder:
    def encode(array: pa.Array) -> Encoded:
        values = np.asarray(array.cast(pa.float64()), np.float64).astype(np.dtype(width).newbyteorder("<"))
        return Encoded(np.full(len(array), values.itemsize, np.int64), values.view(np.uint8))

    return encode


def raw_bytes(array: pa.Array) -> Encoded:
    """Each value's bytes (a ``string`` its UTF-8), as they are in Arrow's buffer."""
    raw = array.cast(pa.large_binary())
    offsets = np.frombuffer(raw.buffers()[1], np.int64)[raw.offset:raw.offset + len(raw) + 1]
    data = np.frombuffer(raw.buffers()[2], np.uint8)[offsets[0]:offsets[-1]] if len(raw) else np.empty(0, np.uint8)
    return Encoded(np.diff(offsets), data)


def _bytes(array: pa.Array) -> Encoded:
    """Avro ``string``/``bytes``: the length's (zig-zag) varint, then the bytes."""
    raw = raw_bytes(array)
    return join_rows([zigzag_varints(raw.lengths), raw])


_SIMPLE: dict[str, Encoder] = {
    "boolean": _booleans, "int": _integers, "long": _integers,
    "float": _floats(np.float32), "double": _floats(np.float64), "string": _bytes, "bytes": _bytes,
}

#: Units per second of Avro's logical types over ``int``/``long``.
_TIME_UNITS = {"time-millis": 1_000, "timestamp-millis": 1_000, "time-micros": 1_000_000,
               "timestamp-micros": 1_000_000}


def _logical(kind: str, logical: str, schema: dict[str, Any]) -> Encoder:
    if logical == "decimal" and kind == "bytes":
        return _non_null(_decimals(int(schema.get("scale", 0))))
    if logical == "date" and kind == "int":
        return _non_null(lambda array: zigzag_varints(_days(array)))
    if logical in _TIME_UNITS:
        per_second = _TIME_UNITS[logical]
        return _non_null(lambda array: zigzag_varints(_ticks(array, per_second)))
    raise NotVectorizable(f"the Avro logical type {logical!r} over {kind!r}")


def _days(array: pa.Array) -> np.ndarray:
    if pa.types.is_date(array.type):
        return np.asarray(array.cast(pa.date32()).cast(pa.int32()), np.int64)
    return np.asarray(_integer_array(array), np.int64)


def _ticks(array: pa.Array, per_second: int) -> np.ndarray:
    """Times and timestamps as whole units of ``1 / per_second`` s (floored); integers as they are."""
    unit = getattr(array.type, "unit", None)
    if unit is None:
        return np.asarray(_integer_array(array), np.int64)
    source = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    storage = pa.int64() if pa.types.is_timestamp(array.type) or pa.types.is_time64(array.type) else pa.int32()
    values = np.asarray(array.cast(storage), np.int64)
    return values * (per_second // source) if per_second >= source else values // (source // per_second)


def _integer_array(array: pa.Array) -> pa.Array:
    if not pa.types.is_integer(array.type):
        raise NotVectorizable(f"an Avro logical int or long from Arrow {array.type}")
    return array.cast(pa.int64())


def _decimals(scale: int) -> Encoder:
    def encode(array: pa.Array) -> Encoded:
        raw = decimal_bytes(array, scale, "an Avro decimal")
        return join_rows([zigzag_varints(raw.lengths), raw])

    return encode


def decimal_bytes(array: pa.Array, scale: int, what: str) -> Encoded:
    """Each DECIMAL of ``array`` as the shortest big-endian two's-complement bytes of its unscaled
    value at ``scale`` (Java's ``BigInteger.toByteArray()``); NULLs as 0. :class:`NotVectorizable`
    (naming ``what``) for other Arrow types, or a value that does not fit ``scale``."""
    if not pa.types.is_decimal(array.type):
        raise NotVectorizable(f"{what} from Arrow {array.type}")
    try:
        exact = array.cast(pa.decimal128(38, scale))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise NotVectorizable(f"{what} at scale {scale}: {e}") from None
    words = np.frombuffer(exact.buffers()[1], np.int64)[2 * exact.offset:2 * (exact.offset + len(exact))]
    low, high = words[0::2], words[1::2]
    if not np.array_equal(high, low >> 63):
        return _wide_decimals(exact, scale)
    widths = np.ones(len(low), np.int64)
    for k in range(1, 8):  # one more byte for each width the value does not fit in
        widths += (low < -(1 << (8 * k - 1))) | (low >= (1 << (8 * k - 1)))
    big_endian = low.astype(">i8").view(np.uint8).reshape(-1, 8)
    return Encoded(widths, big_endian[np.arange(8) >= 8 - widths[:, None]])


def _wide_decimals(array: pa.Array, scale: int) -> Encoded:
    """Decimals whose unscaled values pass 64 bits: each value's bytes from Python's integers."""
    values = [b"\x00" if v is None else twos_complement(unscaled(v, scale)) for v in array.to_pylist()]
    return raw_bytes(pa.array(values, pa.binary()))


def twos_complement(n: int) -> bytes:
    """The shortest big-endian two's-complement bytes of ``n`` (Java's ``BigInteger.toByteArray()``)."""
    return n.to_bytes((n if n >= 0 else -n - 1).bit_length() // 8 + 1, "big", signed=True)


def unscaled(value: Decimal, scale: int) -> int:
    """``value`` times 10^``scale`` from its digits (exact: decimal arithmetic rounds at 28 digits)."""
    sign, digits, exponent = value.as_tuple()
    magnitude = int("".join(map(str, digits)) or "0") * 10 ** (int(exponent) + scale)
    return -magnitude if sign else magnitude


def _record(fields: list[dict[str, Any]]) -> Encoder:
    encoders = [(f["name"], _field_encoder(f), _default_bytes(f)) for f in fields]

    def encode(array: pa.Array) -> Encoded:
        struct_type = array.type
        if not pa.types.is_struct(struct_type):
            raise NotVectorizable(f"an Avro record from Arrow {struct_type}")
        names = [struct_type.field(i).name for i in range(struct_type.num_fields)]
        parts = []
        for name, encode_field, default in encoders:
            if name in names:
                parts.append(encode_field(array.field(names.index(name))))
            elif default is not None:  # a field of the writer schema the row lacks: its default
                parts.append(Encoded.constant(default, len(array)))
            else:
                raise NotVectorizable(f"the Avro field {name!r}, which the row lacks and has no default")
        return join_rows(parts) if parts else Encoded(np.zeros(len(array), np.int64), np.empty(0, np.uint8))

    return encode


def _field_encoder(field: dict[str, Any]) -> Encoder:
    """A record field's encoder: its type's, where a NULL in a required field that has a default
    is written as the default (as ksqlDB's writer, Kafka Connect's AvroData, does)."""
    encode = encoder_for(field["type"])
    default = _default_bytes(field)
    if default is None or _nullable(field["type"]):
        return encode

    def encode_or_default(array: pa.Array) -> Encoded:
        if not array.null_count:
            return encode(array)
        valid = np.asarray(array.is_valid())
        present = encode(array.filter(pa.array(valid)))
        lengths = np.zeros(len(array), np.int64)
        lengths[valid] = present.lengths
        defaults = Encoded.constant(default, int((~valid).sum()))
        default_lengths = np.where(valid, 0, len(default)).astype(np.int64)
        return join_rows([Encoded(lengths, present.data), Encoded(default_lengths, defaults.data)])

    return encode_or_default


def _nullable(schema: Any) -> bool:
    if isinstance(schema, dict) and isinstance(schema.get("type"), list | dict):
        return _nullable(schema["type"])
    return schema == "null" or (isinstance(schema, list) and "null" in schema)


def _default_bytes(field: dict[str, Any]) -> bytes | None:
    """A record field's default value, encoded (fastavro, once); None without a default."""
    if "default" not in field:
        return None
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(field["type"]), field["default"])
    return buffer.getvalue()


def _array(encode_item: Encoder) -> Encoder:
    def encode(array: pa.Array) -> Encoded:
        if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
            raise NotVectorizable(f"an Avro array from Arrow {array.type}")
        return _blocks(np.asarray(array.offsets, np.int64), encode_item(array.flatten()))

    return encode


def _map(encode_value: Encoder) -> Encoder:
    def encode(array: pa.Array) -> Encoded:
        if not pa.types.is_map(array.type):
            raise NotVectorizable(f"an Avro map from Arrow {array.type}")
        offsets = np.asarray(array.offsets, np.int64)  # into the whole entries child (array may be a slice)
        flat = array.values.slice(offsets[0], offsets[-1] - offsets[0])
        entries = join_rows([_bytes(flat.field(0)), encode_value(flat.field(1))])
        return _blocks(offsets, entries)

    return encode


def _blocks(offsets: np.ndarray, items: Encoded) -> Encoded:
    """Per row, its items (rows ``offsets[i]…offsets[i+1]`` of ``items``) as one Avro block: the
    count's varint, the items, the 0 that ends the blocks (a row of no items: the 0 alone)."""
    counts = np.diff(offsets)
    ends = np.zeros(len(items.lengths) + 1, np.int64)
    np.cumsum(items.lengths, out=ends[1:])
    first = offsets - offsets[0]
    item_bytes = ends[first[1:]] - ends[first[:-1]]
    terminator = Encoded((counts > 0).astype(np.int64), np.zeros(int((counts > 0).sum()), np.uint8))
    return join_rows([zigzag_varints(counts), Encoded(item_bytes, items.data), terminator])
