"""Parsed Protobuf messages to Arrow columns, a column at a time: the fast path of the decoder.

The messages of a vector that share a header (one schema id and message) are parsed by upb in
one ``map`` over their bodies; then each column is gathered across all of them at once —
``map(attrgetter(field), messages)`` runs the upb getter from C for every message, and the values
go to Arrow (or numpy, for the arithmetic of timestamps) in one call. No Python row is built. The
reading rules are :mod:`~nbstream.formats.protobuf_values`'s: scalars read their default when
unset, a field with presence (a message, a ``oneof`` member, ``optional``) is NULL unless set.

Fields whose values need work per value — enums, repeated fields, maps, dates, times of day,
decimals — are gathered by their per-value reader from that module, still one column at a time.
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
from nbstream.formats.protobuf_schema import TIMESTAMP, WRAPPERS, is_map
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
    if field.is_repeated or is_map(field) or field.enum_type is not None or kind in _PER_VALUE_MESSAGES:
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
    if kind == TIMESTAMP:
        seconds = np.fromiter(map(attrgetter("seconds"), inner), np.int64, count=n)
        nanos = np.fromiter(map(attrgetter("nanos"), inner), np.int64, count=n)
        micros = (seconds * 1000 + nanos // 1_000_000) * 1000  # ksqlDB's timestamps are milliseconds
        return pa.array(micros, mask=mask).cast(target)
    if not pa.types.is_struct(target) or t.name != "STRUCT":
        raise TypeError(f"the message {kind} is not read into {t}")
    return struct_array(inner, field.message_type, t, target, mask)
