"""Protobuf's binary encoding of whole Arrow arrays, built in numpy on :mod:`~nbstream.formats.avro_encode`'s
byte-string columns (:class:`~nbstream.formats.avro_encode.Encoded`, :func:`~nbstream.formats.avro_encode.join_rows`):
no Python loop over records.

A message is its fields' byte strings joined row by row; a field present in a row is its key (the
field number and wire type, one constant varint) then its value: a varint (``int32``/``int64``/
``uint*``/``bool`` as unsigned 64-bit two's complement, ``sint*`` zig-zag), fixed little-endian
bytes (``double``, ``float``, ``fixed*``), or a length-delimited byte string (``string``,
``bytes``, a nested message, a packed ``repeated`` scalar). Which fields a row has follows
Java's proto3 writer, which ksqlDB uses: a field without presence is written only when it is not
its default (0, "", false; ``-0.0`` is written), a field with presence (a message, ``optional``)
whenever it is not NULL. ``google.protobuf.Timestamp`` is written from TIMESTAMP microseconds
(as milliseconds, ksqlDB's precision), ``confluent.type.Decimal`` from a DECIMAL at its declared scale,
the wrappers from their primitive.

:func:`encoder_for` raises :class:`~nbstream.formats.avro_encode.NotVectorizable` for what it
does not cover — enums, maps, ``oneof`` members, ``repeated`` strings or messages, dates, times —
and the encoder it returns raises it for Arrow types it does not take and for values
out of a field's range; the caller then writes those records one by one (upb).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from nbstream.formats.avro_encode import (
    Encoded,
    NotVectorizable,
    decimal_bytes,
    join_rows,
    raw_bytes,
    varint_bytes,
    varints,
    zigzag_varints,
)
from nbstream.formats.protobuf_schema import DECIMAL, TIMESTAMP, WRAPPERS, field_params, is_map

Encoder = Callable[[pa.Array], Encoded]

_VARINT, _FIXED64, _DELIMITED, _FIXED32 = 0, 1, 2, 5
_T = FieldDescriptor
#: Each scalar type's wire type and its range as (min, max) for the integers.
_INTEGERS = {_T.TYPE_INT32: (-(2**31), 2**31 - 1), _T.TYPE_INT64: (-(2**63), 2**63 - 1),
             _T.TYPE_UINT32: (0, 2**32 - 1), _T.TYPE_UINT64: (0, 2**63 - 1),
             _T.TYPE_SINT32: (-(2**31), 2**31 - 1), _T.TYPE_SINT64: (-(2**63), 2**63 - 1),
             _T.TYPE_FIXED32: (0, 2**32 - 1), _T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
             _T.TYPE_FIXED64: (0, 2**63 - 1), _T.TYPE_SFIXED64: (-(2**63), 2**63 - 1)}
_WIRE = {_T.TYPE_FIXED32: _FIXED32, _T.TYPE_SFIXED32: _FIXED32, _T.TYPE_FLOAT: _FIXED32,
         _T.TYPE_FIXED64: _FIXED64, _T.TYPE_SFIXED64: _FIXED64, _T.TYPE_DOUBLE: _FIXED64,
         _T.TYPE_STRING: _DELIMITED, _T.TYPE_BYTES: _DELIMITED, _T.TYPE_MESSAGE: _DELIMITED}


def _key(number: int, wire: int) -> bytes:
    return varint_bytes((number << 3) | wire)


def _scatter(present: np.ndarray, part: Encoded) -> Encoded:
    """``part`` (one row per true of ``present``) as one row per row, empty where ``present`` is false."""
    lengths = np.zeros(len(present), np.int64)
    lengths[present] = part.lengths
    return Encoded(lengths, part.data)


def _delimited(body: Encoded) -> Encoded:
    return join_rows([varints(body.lengths), body])


def encoder_for(message: Descriptor) -> Encoder:
    """The encoder of struct arrays (fields named as ``message``'s, exactly or case-insensitively)
    into messages of ``message``; :class:`NotVectorizable` for what it does not cover."""
    fields = [(f.name, _field_encoder(f)) for f in message.fields]

    def encode(array: pa.Array) -> Encoded:
        if not pa.types.is_struct(array.type):
            raise NotVectorizable(f"a Protobuf message from Arrow {array.type}")
        names = {array.type.field(i).name.upper(): i for i in range(array.type.num_fields)}
        exact = {array.type.field(i).name: i for i in range(array.type.num_fields)}
        parts = [Encoded(np.zeros(len(array), np.int64), np.empty(0, np.uint8))]
        for name, encode_field in fields:
            index = exact.get(name, names.get(name.upper()))
            if index is not None:
                parts.append(encode_field(_flat(array.field(index))))
        return join_rows(parts)

    return encode


def _flat(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    return a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a


def _field_encoder(field: FieldDescriptor) -> Encoder:
    kind = field.message_type.full_name if field.message_type is not None else None
    if field.enum_type is not None or is_map(field) or (field.containing_oneof is not None and kind is None
                                                         and not _synthetic(field)):
        raise NotVectorizable(f"the Protobuf field {field.full_name}")
    if field.is_repeated:
        if kind is not None or field.type in (_T.TYPE_STRING, _T.TYPE_BYTES):
            raise NotVectorizable(f"the repeated Protobuf field {field.full_name}")
        return _packed(field)
    if kind is None:
        return _present_scalar(field) if _synthetic(field) else _implicit_scalar(field)
    return _message_field(field, kind)


def _synthetic(field: FieldDescriptor) -> bool:
    """Whether ``field`` is proto3 ``optional`` (its own synthetic oneof)."""
    oneof = field.containing_oneof
    return oneof is not None and len(oneof.fields) == 1 and oneof.name == f"_{field.name}"


def _values(field: FieldDescriptor) -> Callable[[pa.Array], tuple[Encoded, np.ndarray]]:
    """The encoder of a scalar field's values (none NULL), with whether each is its default."""
    if field.type in _INTEGERS:
        low, high = _INTEGERS[field.type]
        wire = _WIRE.get(field.type, _VARINT)
        zigzag = field.type in (_T.TYPE_SINT32, _T.TYPE_SINT64)

        def integers(array: pa.Array) -> tuple[Encoded, np.ndarray]:
            if not pa.types.is_integer(array.type):
                raise NotVectorizable(f"a Protobuf integer from Arrow {array.type}")
            values = np.asarray(array.cast(pa.int64()), np.int64)
            if len(values) and (values.min() < low or values.max() > high):
                raise NotVectorizable("a value out of the range of its Protobuf field")
            if wire == _VARINT:
                return (zigzag_varints(values) if zigzag else varints(values.view(np.uint64))), values == 0
            width = 4 if wire == _FIXED32 else 8
            data = values.astype(f"<i{width}").view(np.uint8)
            return Encoded(np.full(len(values), width, np.int64), data), values == 0

        return integers
    if field.type in (_T.TYPE_DOUBLE, _T.TYPE_FLOAT):
        width = np.float64 if field.type == _T.TYPE_DOUBLE else np.float32

        def floats(array: pa.Array) -> tuple[Encoded, np.ndarray]:
            if not (pa.types.is_floating(array.type) or pa.types.is_integer(array.type)):
                raise NotVectorizable(f"a Protobuf float from Arrow {array.type}")
            values = np.asarray(array.cast(pa.float64()), np.float64).astype(np.dtype(width).newbyteorder("<"))
            raw = values.view(np.uint8)
            zero = values.view(np.int64 if width is np.float64 else np.int32) == 0  # -0.0 is written
            return Encoded(np.full(len(values), values.itemsize, np.int64), raw), zero

        return floats
    if field.type == _T.TYPE_BOOL:
        def booleans(array: pa.Array) -> tuple[Encoded, np.ndarray]:
            if not pa.types.is_boolean(array.type):
                raise NotVectorizable(f"a Protobuf bool from Arrow {array.type}")
            values = np.asarray(array.cast(pa.uint8()), np.uint8)
            return Encoded(np.ones(len(values), np.int64), values), values == 0

        return booleans

    def text(array: pa.Array) -> tuple[Encoded, np.ndarray]:
        binary = pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)
        string = pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
        if not (string if field.type == _T.TYPE_STRING else binary):
            raise NotVectorizable(f"a Protobuf {field.type} from Arrow {array.type}")
        raw = raw_bytes(array)
        return _delimited(raw), raw.lengths == 0

    return text


def _keyed(field: FieldDescriptor, present: np.ndarray, body: Encoded) -> Encoded:
    key = _key(field.number, _WIRE.get(field.type, _VARINT))
    return _scatter(present, join_rows([Encoded.constant(key, int(present.sum())), body]))


def _implicit_scalar(field: FieldDescriptor) -> Encoder:
    """A proto3 field without presence: written where not NULL and not its default."""
    values = _values(field)

    def encode(array: pa.Array) -> Encoded:
        valid = np.asarray(array.is_valid()) if array.null_count else np.ones(len(array), bool)
        body, default = values(array.filter(pa.array(valid)) if array.null_count else array)
        present = valid.copy()
        present[valid] = ~default
        return _keyed(field, present, Encoded(body.lengths[~default], _rows(body, ~default)))

    return encode


def _rows(encoded: Encoded, keep: np.ndarray) -> np.ndarray:
    """The bytes of the rows of ``encoded`` that ``keep`` names."""
    if keep.all():
        return encoded.data
    return encoded.data[np.repeat(keep, encoded.lengths)]


def _present_scalar(field: FieldDescriptor) -> Encoder:
    values = _values(field)

    def encode(array: pa.Array) -> Encoded:
        valid = np.asarray(array.is_valid())
        body, _ = values(array.filter(pa.array(valid)) if array.null_count else array)
        return _keyed(field, valid, body)

    return encode


def _packed(field: FieldDescriptor) -> Encoder:
    """A repeated scalar, packed (proto3's default): one length-delimited run of its values;
    nothing for an empty or NULL array; a NULL element is its default (as Connect writes it)."""
    values = _values(field)
    key = _key(field.number, _DELIMITED)

    def encode(array: pa.Array) -> Encoded:
        if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
            raise NotVectorizable(f"a repeated Protobuf field from Arrow {array.type}")
        offsets = np.asarray(array.offsets, np.int64)
        items = array.values.slice(offsets[0], offsets[-1] - offsets[0])
        items = items.fill_null(pa.scalar(0).cast(items.type)) if items.null_count else items
        body, _ = values(items)
        ends = np.zeros(len(body.lengths) + 1, np.int64)
        np.cumsum(body.lengths, out=ends[1:])
        first = offsets - offsets[0]
        run = ends[first[1:]] - ends[first[:-1]]
        present = run > 0
        if array.null_count:
            present &= np.asarray(array.is_valid())
        runs = Encoded(run[present], _rows(Encoded(run, body.data), present))
        return _scatter(present, join_rows([Encoded.constant(key, int(present.sum())), _delimited(runs)]))

    return encode


def _message_field(field: FieldDescriptor, kind: str) -> Encoder:
    """A message field: written where not NULL, as its length-delimited encoding."""
    if kind in WRAPPERS:
        inner = _implicit_scalar(field.message_type.fields_by_name["value"])
    elif kind == TIMESTAMP:
        inner = _timestamps(field.message_type)
    elif kind == DECIMAL:
        inner = _decimals(field)
    elif kind.startswith(("google.", "confluent.")):
        raise NotVectorizable(f"the Protobuf message {kind}")
    else:
        inner = encoder_for(field.message_type)
    key = _key(field.number, _DELIMITED)

    def encode(array: pa.Array) -> Encoded:
        valid = np.asarray(array.is_valid())
        body = inner(array.filter(pa.array(valid)) if array.null_count else array)
        return _scatter(valid, join_rows([Encoded.constant(key, int(valid.sum())), _delimited(body)]))

    return encode


def _decimals(field: FieldDescriptor) -> Encoder:
    """``confluent.type.Decimal``: the unscaled value's two's-complement bytes at the field's scale,
    then its precision and scale where not 0 (what the record-by-record writer sets); a field
    without a declared scale takes each value's own, which the record writer handles."""
    params = field_params(field)
    if "scale" not in params:
        raise NotVectorizable("a confluent.type.Decimal field without a declared scale")
    scale = int(params["scale"])
    message = field.message_type
    trailer = b""
    if int(params.get("precision", 0)):
        trailer += _key(message.fields_by_name["precision"].number, _VARINT) + varint_bytes(int(params["precision"]))
    if scale:
        trailer += _key(message.fields_by_name["scale"].number, _VARINT) + varint_bytes(scale & (2**64 - 1))
    value_key = _key(message.fields_by_name["value"].number, _DELIMITED)

    def encode(array: pa.Array) -> Encoded:
        raw = decimal_bytes(array, scale, "a confluent.type.Decimal")
        rows = len(array)
        return join_rows([Encoded.constant(value_key, rows), _delimited(raw), Encoded.constant(trailer, rows)])

    return encode


def _timestamps(message: Descriptor) -> Encoder:
    seconds = _implicit_scalar(message.fields_by_name["seconds"])
    nanos = _implicit_scalar(message.fields_by_name["nanos"])

    def encode(array: pa.Array) -> Encoded:
        if not pa.types.is_timestamp(array.type):
            raise NotVectorizable(f"a google.protobuf.Timestamp from Arrow {array.type}")
        ticks = np.asarray(array.cast(pa.int64()), np.int64)
        per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[array.type.unit]
        millis = ticks * 1000 if per_second == 1 else ticks // (per_second // 1000)  # ksqlDB's precision
        whole, rest = np.divmod(millis, 1000)
        return join_rows([seconds(pa.array(whole)), nanos(pa.array(rest * 1_000_000))])

    return encode
