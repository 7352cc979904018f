"""The PROTOBUF and PROTOBUF_NOSR codecs: DuckDB Arrow functions, one call per vector, and the
per-record calls of ``encode_python``/``decode_python``.

Decoding a vector: the records are grouped by header (schema id and first message, vectorised,
:func:`~nbstream.formats.codecs.decode_by_header`); each group's bodies are parsed by upb in one
``map`` and its columns gathered across the messages from C (:mod:`~nbstream.formats.protobuf_arrow`).
Encoding a vector: in numpy (:mod:`~nbstream.formats.protobuf_encode`), the header joined per row.

Known cost, stated plainly: there is no vectorised Protobuf *parser* — each record is one upb
call, a Python message object, though no Python code runs per record on the common paths. What
those paths do not cover goes record by record through Python (:mod:`~nbstream.formats.protobuf_values`):
decoding, a group the column path cannot vouch for (a corrupt body, a value Arrow's cast would
convert otherwise), a record whose message is not the schema's first, and, per value, enums,
repeated fields, maps, dates, times and decimals of another scale than their column's or over 64
bits; encoding, messages with enums, maps, ``oneof`` members, repeated strings or messages, dates or
times, and values out of a field's range. Measured (``benchmarks/bench_formats.py``, one run, 200K
rows of six columns with a DECIMAL and a TIMESTAMP, one thread): decode 0.30M rows/s, encode 0.46M
(record by record: about 0.12M and 0.28M). A record in error (no magic byte, an unknown id
or message index, bytes that do not parse) yields its reason in the ``__error`` field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from google.protobuf import wrappers_pb2
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from nbstream.catalog.schema import Column
from nbstream.catalog.types import SqlType
from nbstream.catalog.user_functions import arrow_type
from nbstream.errors import FormatError
from nbstream.formats import protobuf_encode
from nbstream.formats.avro_encode import Encoded, NotVectorizable, join_rows
from nbstream.formats.codecs import (
    ERROR_FIELD,
    HEADER_SIZE,
    codec,
    decode_by_header,
    decoded_type,
    temporals_as_integers,
    to_struct_array,
)
from nbstream.formats.json_sr import MAGIC_ERROR
from nbstream.formats.protobuf_arrow import column, struct_array
from nbstream.formats.protobuf_schema import (
    WRAPPER_OF,
    WRAPPERS,
    ProtoSchema,
    compile_schema,
    message_class,
    proto_schema_for,
)
from nbstream.formats.protobuf_values import frame, read_indexes, reader_for, writer_for
from nbstream.formats.registry import RegisteredSchema, Registry


@dataclass(frozen=True)
class Layout:
    """How a side's records are laid out: its ``columns``, whether a record is a message of them
    (``wrapped``, else the one column's bare value), Confluent-``framed`` (PROTOBUF) or bare
    (PROTOBUF_NOSR, whose schema is ``nosr_schema``), the message a writer uses (``full_name``)."""

    columns: tuple[Column, ...]
    wrapped: bool
    framed: bool
    full_name: str | None = None
    nullable: str | None = None
    nosr_schema: str | None = None

    @property
    def row_type(self) -> SqlType:
        return SqlType.struct([(c.name, c.type) for c in self.columns])


def registered_schema(registry: Registry, found: RegisteredSchema) -> ProtoSchema:
    """The compiled schema of ``found``, its references read from ``registry``."""
    refs = []
    for name, subject, version in found.references:
        ref = registry.version(subject, version) or registry.latest(subject)
        if ref is None:
            raise FormatError(f"The reference {name!r} of schema id {found.id} (subject {subject!r}) is not registered")
        refs.append((name, ref.schema))
    return compile_schema(found.schema, tuple(refs))


def _bare_message(layout: Layout) -> Descriptor:
    """The message of an unwrapped NOSR record: its column's wrapper, or its STRUCT's message."""
    t = layout.columns[0].type
    if t.name in WRAPPER_OF:
        return getattr(wrappers_pb2, WRAPPER_OF[t.name].rpartition(".")[2]).DESCRIPTOR
    if t.name != "STRUCT":
        raise FormatError(f"PROTOBUF_NOSR cannot write a bare {t}: only primitives and STRUCTs are messages")
    schema = compile_schema(proto_schema_for([Column(n, ft) for n, ft in t.fields], nullable=layout.nullable))
    return schema.message()


class _Resolver:
    """The message of each record, by its header (PROTOBUF) or the layout (PROTOBUF_NOSR)."""

    def __init__(self, registry: Registry | None, layout: Layout) -> None:
        self.registry, self.layout = registry, layout
        self.schemas: dict[int, ProtoSchema] = {}

    def nosr_message(self) -> Descriptor:
        if not self.layout.wrapped:
            return _bare_message(self.layout)
        assert self.layout.nosr_schema is not None
        return compile_schema(self.layout.nosr_schema).message()

    def schema(self, schema_id: int) -> ProtoSchema | None:
        """The Protobuf schema of ``schema_id``, or None (looked up again next time: an id may be
        registered later); FormatError when it does not compile."""
        found = self.schemas.get(schema_id)
        if found is None and self.registry is not None:
            registered = self.registry.by_id(schema_id)
            if registered is not None and registered.schema_type == "PROTOBUF":
                found = self.schemas[schema_id] = registered_schema(self.registry, registered)
        return found

    def framed(self, data: bytes) -> tuple[Descriptor, int]:
        """The message of the framed record ``data`` and where its body starts; FormatError else."""
        if len(data) < HEADER_SIZE or data[0] != 0:
            raise FormatError(MAGIC_ERROR)
        schema_id = int.from_bytes(data[1:HEADER_SIZE], "big")
        schema = self.schema(schema_id)
        if schema is None:
            raise FormatError(f"Schema not found: no Protobuf schema has id {schema_id}")
        indexes, start = read_indexes(data, HEADER_SIZE)
        try:
            return schema.by_indexes(indexes), start
        except IndexError:
            raise FormatError(f"Schema id {schema_id} has no message at indexes {indexes}") from None


# -- decoding -------------------------------------------------------------------------------------------


class Decoder:
    """Records → rows of the layout's columns (``arrow``: Arrow's temporal units, else ksqlDB's
    logical content keyed by the writer's names)."""

    def __init__(self, registry: Registry | None, layout: Layout, *, arrow: bool) -> None:
        self.resolver = _Resolver(registry, layout)
        self.layout, self.arrow = layout, arrow
        self.readers: dict[str, tuple[type[Message], Callable[[Message], Any]]] = {}
        self.nosr: Descriptor | None = None
        self.target = arrow_type(decoded_type(layout.columns))

    def _reader(self, message: Descriptor) -> tuple[type[Message], Callable[[Message], Any]]:
        found = self.readers.get(message.full_name)
        if found is None:
            found = self.readers[message.full_name] = (message_class(message), self._read_fn(message))
        return found

    def _read_fn(self, message: Descriptor) -> Callable[[Message], Any]:
        layout = self.layout
        if layout.wrapped:
            return reader_for(message, layout.row_type if self.arrow else None, arrow=self.arrow)
        column = layout.columns[0]
        if message.full_name in WRAPPERS:
            bare: Callable[[Message], Any] = lambda msg: msg.value  # noqa: E731
        else:
            bare = reader_for(message, column.type if self.arrow else None, arrow=self.arrow)
        return (lambda msg: {column.name: bare(msg)}) if self.arrow else bare

    def message_of(self, data: bytes) -> tuple[Descriptor, int]:
        if self.layout.framed:
            return self.resolver.framed(data)
        if self.nosr is None:
            self.nosr = self.resolver.nosr_message()
        return self.nosr, 0

    def decode(self, data: bytes) -> Any:
        """The row (or logical content) of the record ``data``; FormatError with the reason."""
        message, start = self.message_of(data)
        cls, read = self._reader(message)
        try:
            parsed = cls.FromString(data[start:])
            return read(parsed)
        except FormatError:
            raise
        except Exception as e:  # upb's DecodeError, a value out of range (a bad date)
            raise FormatError(f"Error deserializing Protobuf message {message.full_name}: {e}") from None

    @property
    def header_size(self) -> int:
        """The header the fast path groups records by: magic byte, id, a first message's index."""
        return HEADER_SIZE + 1 if self.layout.framed else 0

    def __call__(self, blobs: pa.ChunkedArray | pa.Array) -> pa.Array:
        """The vector's rows as one Arrow struct array (``__error`` set for records in error):
        column by column for each group of records of one message (:meth:`_fast`), record by
        record for the rest (:meth:`_slow`)."""
        return decode_by_header(blobs, self.header_size, self._fast, self._slow, self.target)

    def _group_message(self, header: bytes) -> Descriptor | None:
        """The message of the records starting with ``header``, or None (left to :meth:`_slow`)."""
        if not self.layout.framed:
            return self.message_of(b"")[0]
        if len(header) != HEADER_SIZE + 1 or header[0] != 0 or header[-1] != 0:
            return None
        try:
            schema = self.resolver.schema(int.from_bytes(header[1:HEADER_SIZE], "big"))
        except FormatError:  # a schema that does not compile: each record gets the reason
            return None
        return None if schema is None or not schema.messages else schema.messages[0]

    def _fast(self, header: bytes, bodies: pa.Array) -> pa.Array | None:
        message = self._group_message(header)
        if message is None:
            return None
        try:
            parsed = list(map(message_class(message).FromString, bodies.to_pylist()))
            return self._columns(parsed, message)
        except Exception:  # a body upb rejects, a value Arrow's cast would not give as the slow path does
            return None

    def _columns(self, parsed: list[Message], message: Descriptor) -> pa.Array:
        layout, target = self.layout, self.target
        if layout.wrapped:
            return struct_array(parsed, message, layout.row_type, target)
        column_type = target.field(0).type
        if message.full_name in WRAPPERS:
            bare = column(parsed, message.fields_by_name["value"], layout.columns[0].type, column_type)
        else:
            bare = struct_array(parsed, message, layout.columns[0].type, column_type)
        return pa.StructArray.from_arrays([bare, pa.nulls(len(parsed), pa.string())], fields=list(target))

    def _slow(self, blobs: pa.Array) -> pa.Array:
        rows: list[dict[str, Any] | None] = []
        for data in blobs.to_pylist():
            if data is None:
                rows.append(None)
                continue
            try:
                rows.append(self.decode(data))
            except FormatError as e:
                rows.append({ERROR_FIELD: str(e)})
        return to_struct_array(rows, self.target)


def protobuf_decoder(layout: Layout) -> str:
    """The name of the DuckDB function decoding BLOBs of ``layout`` into its columns and ``__error``."""
    result = decoded_type(layout.columns)

    def make(registry: Registry) -> Callable[..., pa.Array]:
        return Decoder(registry, layout, arrow=True).__call__

    return codec(("protobuf-dec", layout), "pdec", ("BLOB",), result.duckdb(), make)


def decode_record(registry: Registry | None, layout: Layout, data: bytes) -> Any:
    """ksqlDB's logical content of the record ``data``."""
    return Decoder(registry, layout, arrow=False).decode(data)


# -- encoding -------------------------------------------------------------------------------------------


class Encoder:
    """Rows of the layout's columns → records (written with ``schema_id`` when framed)."""

    def __init__(self, registry: Registry | None, layout: Layout, schema_id: int | None, *, arrow: bool) -> None:
        self.layout = layout
        if layout.framed:
            message, header = self._framed(registry, layout, schema_id)
        else:
            message, header = _Resolver(registry, layout).nosr_message(), b""
        self.header = header
        self.cls = message_class(message)
        self.write = writer_for(message, arrow=arrow)
        self.bare = not layout.wrapped and message.full_name in WRAPPERS
        self.vectorized: protobuf_encode.Encoder | None = None  # compiled at the first call
        self.record_by_record = False  # the message has fields protobuf_encode does not cover

    @staticmethod
    def _framed(registry: Registry | None, layout: Layout, schema_id: int | None) -> tuple[Descriptor, bytes]:
        found = registry.by_id(schema_id) if registry is not None and schema_id is not None else None
        if found is None or found.schema_type != "PROTOBUF" or registry is None or schema_id is None:
            raise FormatError(f"no Protobuf schema has id {schema_id}")
        schema = registered_schema(registry, found)
        message = schema.message(layout.full_name)
        return message, frame(schema_id, schema.indexes(message))

    def encode(self, value: Any) -> bytes | None:
        """The record of ``value``: a dict of the columns, or the one column's value when unwrapped."""
        if value is None:
            return None
        row = {"value": value} if self.bare else value
        try:
            return self.header + self.cls(**self.write(row)).SerializeToString()
        except FormatError:
            raise
        except Exception as e:  # a value upb refuses (out of range, wrong type)
            raise FormatError(f"Cannot serialize {value!r} as Protobuf {self.cls.DESCRIPTOR.full_name}: {e}") from None

    def __call__(self, structs: pa.ChunkedArray | pa.Array) -> pa.Array:
        """Each row's record, as one Arrow binary array: the whole vector in numpy
        (:mod:`~nbstream.formats.protobuf_encode`) where it covers the message and the values,
        else record by record (:meth:`_one_by_one`)."""
        rows = structs.combine_chunks() if isinstance(structs, pa.ChunkedArray) else structs
        if self.vectorized is None and not self.record_by_record:
            try:
                self.vectorized = protobuf_encode.encoder_for(self.cls.DESCRIPTOR)
            except NotVectorizable:
                self.record_by_record = True
        if self.vectorized is not None:
            try:
                return self._vectorized(self.vectorized, rows)
            except (NotVectorizable, pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                pass  # values it does not take (a type, a range): this vector goes record by record
        return self._one_by_one(rows)

    def _vectorized(self, encode: protobuf_encode.Encoder, rows: pa.Array) -> pa.Array:
        values = rows if self.layout.wrapped else rows.field(0)
        valid = values.is_valid()
        present = values if not values.null_count else values.filter(valid)
        if self.bare:
            present = pa.StructArray.from_arrays([present], names=["value"])
        encoded = join_rows([Encoded.constant(self.header, len(present)), encode(present)])
        if len(present) == len(values):
            return encoded.to_binary()
        lengths = np.zeros(len(values), np.int64)
        lengths[np.asarray(valid)] = encoded.lengths
        return Encoded(lengths, encoded.data).to_binary(valid.buffers()[1])

    def _one_by_one(self, structs: pa.Array) -> pa.Array:
        plain = temporals_as_integers(structs.type)
        rows = (structs.cast(plain) if plain != structs.type else structs).to_pylist()
        if not self.layout.wrapped:
            name = self.layout.columns[0].name
            rows = [None if row is None else row[name] for row in rows]
        return pa.array([self.encode(row) for row in rows], type=pa.binary())


def protobuf_encoder(layout: Layout, schema_id: int | None) -> str:
    """The name of the DuckDB function encoding a STRUCT of the layout's columns."""

    def make(registry: Registry) -> Callable[..., pa.Array]:
        encoder: Encoder | None = None

        def call(structs: pa.ChunkedArray | pa.Array) -> pa.Array:
            nonlocal encoder
            encoder = encoder or Encoder(registry, layout, schema_id, arrow=True)
            return encoder(structs)

        return call

    return codec(("protobuf-enc", layout, schema_id), "penc", (layout.row_type.duckdb(),), "BLOB", make)


def encode_record(registry: Registry | None, layout: Layout, schema_id: int | None, value: Any) -> bytes | None:
    """The record whose logical content is ``value``."""
    return Encoder(registry, layout, schema_id, arrow=False).encode(value)
