"""Parsed Protobuf messages to Arrow columns, a column at a time: the fast path of the decoder.

The messages of a vector that share a header (one schema id and message) are parsed by upb in
one ``map`` over their bodies; then each column is gathered across all of them at once —
``map(attrgetter(field), messages)`` runs the upb getter from C for every message, and the values
go to Arrow (or numpy, for the arithmetic of timestamps) in one call. No Python row is built. The
reading rules are :mod:`~nbstream.formats.protobuf_values`'s: scalars read their default when
unset, a field with presence (a message, a ``oneof`` member, ``optional``) is NULL unless set.

A ``confluent.type.Decimal`` read into a DECIMAL is built in numpy from its two's-complement
bytes. Fields whose values need work per value — enums, repeated fields, maps, dates, times of
day, decimals of another scale or over 64 bits — are gathered by their per-value reader from that
module, still one column at a time.
Values are conformed to the reader's types only where Arrow's cast gives what the per-record path
gives (:func:`~nbstream.formats.avro_arrow.conform`); anything else raises, and the caller
decodes those records one by one instead (a record in error then gets its own reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter, methodcaller

import numpy as np
import pyarrow as pa
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from nbstream.catalog.types import SqlType
from nbstream.formats.avro_arrow import conform
from nbstream.formats.protobuf_schema import DECIMAL, TIMESTAMP, WRAPPERS, is_map
from nbstream.formats.protobuf_values import field_reader

#: Field kinds gathered by their per-value reader (see the module docstring).
_PER_VALUE_MESSAGES = ("google.type.Date", "google.type.TimeOfDay", "confluent.type.Decimal")


def _find(message: Descriptor, name: str) -> FieldDescriptor | None:
    """The field of ``message`` a reader column ``name`` reads: exact, else case-insensitive."""
    found = message.fields_by_name.get(name)
    if found is not None:
        return found
    upper = name.upper()
    return next((f for f in message.fields if f.name.upper() == upper), None)


def struct_array(messages: Sequence[Message], message: Descriptor, row: SqlType, target: pa.StructType,
                 mask: np.ndarray | None = None) -> pa.StructArray:
    """The Arrow struct array ``target`` (of the ksqlDB STRUCT ``row``) read from ``messages``;
    ``mask``: which rows are NULL."""
    children = []
    for (name, t), arrow_field in zip(row.fields, target, strict=False):
        field = _find(message, name)
        children.append(pa.nulls(len(messages), arrow_field.type) if field is None
                        else column(messages, field, t, arrow_field.type))
    extra = [pa.nulls(len(messages), f.type) for f in list(target)[len(children):]]  # e.g. __error
    return pa.StructArray.from_arrays([*children, *extra], fields=list(target),
                                      mask=None if mask is None or not mask.any() else pa.array(mask))


def column(messages: Sequence[Message], field: FieldDescriptor, t: SqlType, target: pa.DataType) -> pa.Array:
    """The values of ``field`` across ``messages``, as an array of ``target``."""
    name, n = field.name, len(messages)
    kind = field.message_type.full_name if field.message_type is not None else None
    per_value = kind in _PER_VALUE_MESSAGES and not (kind == DECIMAL and pa.types.is_decimal(target))
    if field.is_repeated or is_map(field) or field.enum_type is not None or per_value:
        one = field_reader(field, t, True)
        return pa.array([one(m) for m in messages], type=target)
    if kind is None and field.containing_oneof is None:
        return conform(pa.array(list(map(attrgetter(name), messages))), target)
    absent = ~np.fromiter(map(methodcaller("HasField", name), messages), bool, count=n)
    mask = absent if absent.any() else None
    if kind is None:
        return conform(pa.array(list(map(attrgetter(name), messages)), mask=mask), target)
    inner = list(map(attrgetter(name), messages))
    if kind in WRAPPERS:
        return conform(pa.array(list(map(attrgetter("value"), inner)), mask=mask), target)
    if kind == DECIMAL and pa.types.is_decimal(target):
        return _decimals(inner, mask, target)
    if kind == TIMESTAMP:
        seconds = np.fromiter(map(attrgetter("seconds"), inner), np.int64, count=n)
        nanos = np.fromiter(map(attrgetter("nanos"), inner), np.int64, count=n)
        micros = (seconds * 1000 + nanos // 1_000_000) * 1000  # ksqlDB's timestamps are milliseconds
        return pa.array(micros, mask=mask).cast(target)
    if not pa.types.is_struct(target) or t.name != "STRUCT":
        raise TypeError(f"the message {kind} is not read into {t}")
    return struct_array(inner, field.message_type, t, target, mask)


def _decimals(decimals: Sequence[Message], mask: np.ndarray | None, target: pa.Decimal128Type) -> pa.Array:
    """``confluent.type.Decimal`` messages as DECIMALs of ``target``: each value's big-endian
    two's-complement bytes sign-extended to 64 bits in numpy. Raises (the caller then reads the
    records one by one) for a value of another scale than the target's, or wider than 64 bits."""
    n = len(decimals)
    scales = np.fromiter(map(attrgetter("scale"), decimals), np.int64, count=n)
    present = np.ones(n, bool) if mask is None else ~mask
    if (scales[present] != target.scale).any():
        raise ValueError("a Protobuf decimal of another scale than its column's")
    raw = pa.array(list(map(attrgetter("value"), decimals)), pa.binary())
    offsets = np.frombuffer(raw.buffers()[1], np.int32)[:n + 1]
    widths = np.diff(offsets).astype(np.int64)
    if (widths > 8).any():
        raise ValueError("a Protobuf decimal wider than 64 bits")
    data = np.frombuffer(raw.buffers()[2], np.uint8) if raw.buffers()[2] is not None else np.empty(0, np.uint8)
    negative = np.zeros(n, bool)
    starts = offsets[:-1][widths > 0]
    negative[widths > 0] = data[starts] >= 0x80
    words = np.where(negative[:, None], np.uint8(0xFF), np.uint8(0)).astype(np.uint8)
    words = np.repeat(words, 8, axis=1)
    words[np.arange(8) >= 8 - widths[:, None]] = data[offsets[0]:offsets[-1]]
    unscaled = words.view(">i8").reshape(n).astype(np.int64)
    halves = np.empty(2 * n, np.int64)
    halves[0::2], halves[1::2] = unscaled, unscaled >> 63
    validity = None if mask is None else pa.array(~mask).buffers()[1]
    exact = pa.Array.from_buffers(pa.decimal128(38, target.scale), n, [validity, pa.py_buffer(halves.tobytes())])
    return exact.cast(target)
