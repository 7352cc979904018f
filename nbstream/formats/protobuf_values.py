"""Protobuf messages ↔ ksqlDB values, by Kafka Connect's ``ProtobufData`` rules (ksqlDB's reader
and writer), and Confluent's framing of a record.

A *reader* (:func:`reader_for`) turns a parsed message into the row of a ksqlDB STRUCT, keyed by
the reader's field names (matched to the message's exactly, then case-insensitively), or — with
no reader type, for ``decode_python`` — by the message's own names. Connect's rules: a scalar or
repeated field always has a value (proto3 writes no presence: an unset ``int32`` reads 0, an unset
``string`` ""), except a field of a ``oneof`` (``optional`` fields are synthetic oneofs) that is
not set; a message field is NULL unless set; an enum reads as its symbol; the wrappers as their
value; ``google.protobuf.Timestamp``/``google.type.Date``/``google.type.TimeOfDay`` as the
instant in milliseconds, epoch days, milliseconds of the day; ``confluent.type.Decimal`` as its
unscaled two's-complement bytes over its scale.

A *writer* (:func:`writer_for`) turns a row into the keyword arguments of the message class's
constructor (upb builds the message, nested dicts and all, in C): a NULL leaves its field unset
(read back as the type's default unless the field has presence); a NULL inside an array or map
is written as the element type's default, as Connect does.

Temporal values travel as integers: ``arrow`` True (the Arrow path: DuckDB's TIMESTAMP and TIME
are microseconds; a MAP a list of pairs) or False (ksqlDB's logical content: milliseconds; a MAP a
dict); DATEs as epoch days.
"""

from __future__ import annotations

import base64
import datetime
import decimal
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from nbstream.catalog.types import SqlType
from nbstream.errors import FormatError
from nbstream.formats.avro_arrow import varint
from nbstream.formats.avro_encode import twos_complement, unscaled
from nbstream.formats.protobuf_schema import DATE, DECIMAL, TIME, TIMESTAMP, WRAPPERS, field_params, is_map

Read = Callable[[Any], Any]
Write = Callable[[Any], Any]

_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_MS_PER_DAY = 86_400_000
_FLOATS = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)


# -- framing ----------------------------------------------------------------------------------------


def frame(schema_id: int, indexes: Sequence[int]) -> bytes:
    """Confluent's header of a record: magic byte 0, the 4-byte id, the message indexes (zig-zag
    varints: their count, then each; the first message, ``[0]``, as the single byte 0)."""
    head = b"\x00" + schema_id.to_bytes(4, "big")
    if list(indexes) == [0]:
        return head + b"\x00"
    return head + varint(len(indexes)) + b"".join(varint(i) for i in indexes)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise FormatError("Invalid message indexes")
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def read_indexes(data: bytes, pos: int) -> tuple[list[int], int]:
    """The message indexes starting at ``pos`` of a record, and the position after them."""
    count, pos = _read_varint(data, pos)
    if count == 0:
        return [0], pos
    if count < 0 or count > 100:
        raise FormatError(f"Invalid message indexes: count {count}")
    indexes = []
    for _ in range(count):
        index, pos = _read_varint(data, pos)
        indexes.append(index)
    return indexes, pos


# -- reading ------------------------------------------------------------------------------------------


def _match(name: str, target: SqlType | None) -> tuple[str, SqlType | None] | None:
    """The reader field ``name`` is read into (exactly, else case-insensitively): its name and
    type; ``(name, None)`` without a reader type; None when the reader has no such field."""
    if target is None or target.name != "STRUCT":
        return name, None
    for n, t in target.fields:
        if n == name:
            return n, t
    upper = name.upper()
    return next(((n, t) for n, t in target.fields if n.upper() == upper), None)


def reader_for(message: Descriptor, target: SqlType | None, *, arrow: bool) -> Callable[[Message], dict[str, Any]]:
    """The reader of messages of ``message`` into rows of the STRUCT ``target`` (see the module)."""
    fields = []
    for field in message.fields:
        matched = _match(field.name, target)
        if matched is not None:
            fields.append((matched[0], field_reader(field, matched[1], arrow)))

    def read(msg: Message) -> dict[str, Any]:
        return {name: get(msg) for name, get in fields}

    return read


def field_reader(field: FieldDescriptor, target: SqlType | None, arrow: bool) -> Read:
    name = field.name
    if is_map(field):
        entry = field.message_type
        is_map_target = target is not None and target.name == "MAP"
        key = _value_reader(entry.fields_by_name["key"], target.key if is_map_target else None, arrow)  # type: ignore[union-attr]
        value = _value_reader(entry.fields_by_name["value"], target.element if is_map_target else None, arrow)  # type: ignore[union-attr]
        if entry.GetOptions().map_entry:
            pairs: Read = lambda msg: [(key(k), value(v)) for k, v in getattr(msg, name).items()]  # noqa: E731
        else:
            pairs = lambda msg: [(key(e.key), value(e.value)) for e in getattr(msg, name)]  # noqa: E731
        return pairs if arrow else lambda msg: dict(pairs(msg))
    if field.is_repeated:
        item = _value_reader(field, target.element if target and target.name == "ARRAY" else None, arrow)
        return lambda msg: [item(v) for v in getattr(msg, name)]
    one = _value_reader(field, target, arrow)
    if field.message_type is not None or field.containing_oneof is not None:
        return lambda msg: one(getattr(msg, name)) if msg.HasField(name) else None
    return lambda msg: one(getattr(msg, name))


def _value_reader(field: FieldDescriptor, target: SqlType | None, arrow: bool) -> Read:
    """The reader of one value of ``field`` (an element, for a repeated field)."""
    if field.enum_type is not None:
        symbols = {v.number: v.name for v in field.enum_type.values}
        return lambda v: symbols.get(v, str(v))
    if field.message_type is None:
        return _identity
    kind = field.message_type.full_name
    factor = 1000 if arrow else 1
    if kind in WRAPPERS:
        return lambda m: m.value
    if kind == TIMESTAMP:
        return lambda m: (m.seconds * 1000 + m.nanos // 1_000_000) * factor
    if kind == TIME:
        return lambda m: (((m.hours * 60 + m.minutes) * 60 + m.seconds) * 1000 + m.nanos // 1_000_000) * factor
    if kind == DATE:
        return lambda m: datetime.date(m.year, m.month, m.day).toordinal() - _EPOCH_ORDINAL
    if kind == DECIMAL:
        scale = target.scale if target is not None and target.name == "DECIMAL" else None
        return lambda m: _decimal(m, scale)
    return reader_for(field.message_type, target, arrow=arrow)


def _identity(v: Any) -> Any:
    return v


def _decimal(m: Any, scale: int | None) -> decimal.Decimal:
    with decimal.localcontext() as ctx:
        ctx.prec = 100  # exact: ksqlDB's decimals have up to 38 digits, the default context 28
        value = decimal.Decimal(int.from_bytes(m.value, "big", signed=True)).scaleb(-m.scale)
        return value if scale is None else value.quantize(decimal.Decimal(1).scaleb(-scale))


# -- writing ------------------------------------------------------------------------------------------


def writer_for(message: Descriptor, *, arrow: bool) -> Callable[[Any], dict[str, Any]]:
    """The writer of rows (dicts, keys matched exactly, then case-insensitively) into the
    constructor arguments of ``message`` (see the module)."""
    fields = [(f.name, _field_writer(f, arrow)) for f in message.fields]

    def write(row: Any) -> dict[str, Any]:
        if not isinstance(row, dict):
            raise FormatError(f"expected a record for the Protobuf message {message.full_name}, got {row!r}")
        out: dict[str, Any] = {}
        upper: dict[str, Any] | None = None
        for name, put in fields:
            if name in row:
                value = row[name]
            else:
                upper = upper if upper is not None else {str(k).upper(): v for k, v in row.items()}
                value = upper.get(name.upper())
            if value is not None:
                out[name] = put(value)
        return out

    return write


def _field_writer(field: FieldDescriptor, arrow: bool) -> Write:
    if is_map(field):
        entry = field.message_type
        value = _element_writer(entry.fields_by_name["value"], arrow)
        if entry.GetOptions().map_entry:
            return lambda m: {str(k): value(v) for k, v in _pairs(m)}
        return lambda m: [{"key": str(k), "value": value(v)} for k, v in _pairs(m)]
    if field.is_repeated:
        item = _element_writer(field, arrow)
        return lambda values: [item(v) for v in _list(values)]
    return _value_writer(field, arrow)


def _pairs(m: Any) -> list[tuple[Any, Any]]:
    if isinstance(m, dict):
        return list(m.items())
    if isinstance(m, list):
        return [tuple(p) for p in m]
    raise FormatError(f"expected a map, got {m!r}")


def _list(values: Any) -> list[Any]:
    if not isinstance(values, list | tuple):
        raise FormatError(f"expected an array, got {values!r}")
    return list(values)


def _element_writer(field: FieldDescriptor, arrow: bool) -> Write:
    """A writer of an array element or map value: a NULL is the type's default (Connect)."""
    put = _value_writer(field, arrow)
    zero: Any = {} if field.message_type is not None else _zero(field)
    return lambda v: zero if v is None else put(v)


def _zero(field: FieldDescriptor) -> Any:
    if field.enum_type is not None:
        return 0
    return {FieldDescriptor.TYPE_STRING: "", FieldDescriptor.TYPE_BYTES: b"",
            FieldDescriptor.TYPE_BOOL: False}.get(field.type, 0.0 if field.type in _FLOATS else 0)


def _value_writer(field: FieldDescriptor, arrow: bool) -> Write:
    if field.enum_type is not None:
        numbers = {v.name: v.number for v in field.enum_type.values}
        return lambda v: numbers[v] if isinstance(v, str) and v in numbers else _enum_number(field, v)
    if field.message_type is None:
        return _scalar_writer(field)
    kind = field.message_type.full_name
    factor = 1000 if arrow else 1
    if kind in WRAPPERS:
        inner = _scalar_writer(field.message_type.fields_by_name["value"])
        return lambda v: {"value": inner(v)}
    if kind == TIMESTAMP:
        return lambda v: _timestamp(int(v) // factor)
    if kind == TIME:
        return lambda v: _time_of_day(int(v) // factor)
    if kind == DATE:
        return _date
    if kind == DECIMAL:
        params = field_params(field)
        scale = int(params["scale"]) if "scale" in params else None
        precision = int(params["precision"]) if "precision" in params else None
        return lambda v: _decimal_message(v, scale, precision)
    return writer_for(field.message_type, arrow=arrow)


def _enum_number(field: FieldDescriptor, value: Any) -> int:
    """``value`` as a number of the enum of ``field``: a number as it is; else FormatError."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise FormatError(f"{value!r} is not a symbol of the enum {field.enum_type.full_name}")


def _scalar_writer(field: FieldDescriptor) -> Write:
    """A scalar value of ``field`` from a ksqlDB value, with the coercions of logical content
    (numbers in strings, base64 BYTES)."""
    if field.type in _FLOATS:
        return lambda v: float(v)
    if field.type == FieldDescriptor.TYPE_STRING:
        return lambda v: v if isinstance(v, str) else ("true" if v else "false") if isinstance(v, bool) else str(v)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return lambda v: base64.b64decode(v) if isinstance(v, str) else bytes(v)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return lambda v: v if isinstance(v, bool) else str(v).lower() == "true"
    return _integer


def _integer(v: Any) -> int:
    if isinstance(v, bool):
        raise FormatError(f"expected an integer, got {v!r}")
    if isinstance(v, float | decimal.Decimal):
        if v != int(v):
            raise FormatError(f"expected an integer, got {v!r}")
        return int(v)
    return int(v)


def _timestamp(ms: int) -> dict[str, int]:
    seconds, rest = divmod(ms, 1000)
    return {"seconds": seconds, "nanos": rest * 1_000_000}


def _time_of_day(ms: int) -> dict[str, int]:
    ms %= _MS_PER_DAY
    seconds, rest = divmod(ms, 1000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    return {"hours": hours, "minutes": minute, "seconds": second, "nanos": rest * 1_000_000}


def _date(days: Any) -> dict[str, int]:
    day = datetime.date.fromordinal(_EPOCH_ORDINAL + int(days))
    return {"year": day.year, "month": day.month, "day": day.day}


def _decimal_message(value: Any, scale: int | None, precision: int | None) -> dict[str, Any]:
    exact = value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value))
    target = scale if scale is not None else max(0, -int(exact.as_tuple().exponent))
    with decimal.localcontext() as ctx:
        ctx.prec = 100
        exact = exact.quantize(decimal.Decimal(1).scaleb(-target), rounding=decimal.ROUND_HALF_UP)
    out: dict[str, Any] = {"value": twos_complement(unscaled(exact, target)), "scale": target}
    if precision is not None:
        out["precision"] = precision
    return out
