"""DuckDB Arrow functions that decode and encode schema-registry records, one call per vector.

The SQL a registry format generates calls functions named here (``nbs_sr_dec_<n>``,
``nbs_sr_enc_<n>``); the SQL is the same for every engine, and each engine's connections bind
the names to callables over *its* registry (:func:`attach`), so decoding looks writer schemas up
by the id each record carries, in memory. A function is made once per (format, columns,
wrapping[, schema id]) and registered on every attached connection, those attached later too.

Decoding an AVRO vector (≤ 2,048 records): the records are grouped by their Confluent header
(magic byte 0, a 4-byte schema id; vectorised); each group whose writer schema polars can read is
decoded in one native call (:class:`~nbstream.formats.avro_arrow.FastReader`), with the writer
schema rewritten to the reader's names (:func:`~nbstream.formats.avro_schema.reader_view`). The
other records, and a group the fast path rejects, are decoded one by one by fastavro's C reader,
and their rows become one Arrow struct array in one pyarrow call (only when that call fails are
rows converted one by one, to find those in error). A record in error yields its reason in the
``__error`` field (the processing log's message); its columns are NULL.
"""

from __future__ import annotations

import io
import itertools
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbstream.catalog import duck_functions
from nbstream.catalog.schema import Column
from nbstream.catalog.types import SqlType
from nbstream.catalog.user_functions import arrow_type
from nbstream.formats.avro_arrow import FastReader, polars_schema
from nbstream.formats.avro_encode import Encoded, Encoder, NotVectorizable, encoder_for, join_rows
from nbstream.formats.avro_schema import reader_view
from nbstream.formats.registry import Registry

#: The field of a decoder's result that holds a record's error message.
ERROR_FIELD = "__error"
#: Confluent's wire-format header: the magic byte 0, then the schema id (4 bytes, big-endian).
HEADER_SIZE = 5
_NO_STOP = 2**31 - 1  # a binary_slice stop past the end of any BLOB

_LOCK = threading.Lock()
_COUNTER = itertools.count()
_CONNECTIONS: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, Registry] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Codec:
    """One DuckDB function: its name, parameter and return types, and how to make its callable
    for a registry."""

    duck_name: str
    params: tuple[str, ...]
    returns: str
    make: Callable[[Registry], Callable[..., pa.Array]]


_CODECS: dict[tuple[Any, ...], Codec] = {}
#: Each registry's codec callables by name. DuckDB's catalog refers to them but does not keep them
#: alive (:mod:`~nbstream.catalog.duck_functions`); a registry lives while a connection attached to
#: it does (``_CONNECTIONS`` holds it), and so do they.
_CALLS: weakref.WeakKeyDictionary[Registry, dict[str, Callable[..., pa.Array]]] = weakref.WeakKeyDictionary()
#: The prefix of every codec's DuckDB name.
PREFIX = "nbs_sr_"


def attach(con: duckdb.DuckDBPyConnection, registry: Registry) -> None:
    """Make every codec callable on ``con`` (a connection or cursor of an engine), bound to
    ``registry``; codecs made later too. Only those its database lacks are created (one lookup)."""
    with _LOCK:
        _CONNECTIONS[con] = registry
        codecs = list(_CODECS.values())
    if not codecs:
        return
    present = duck_functions.present(con, PREFIX)
    for codec in codecs:
        if codec.duck_name not in present:
            _register(con, registry, codec)


def _register(con: duckdb.DuckDBPyConnection, registry: Registry, codec: Codec) -> None:
    """Create ``codec`` in the database of ``con``, committed at once whatever transaction ``con``
    is in (an encoder is made inside the first batch's, which a bad record rolls back)."""
    with _LOCK:
        calls = _CALLS.setdefault(registry, {})
        call = calls.get(codec.duck_name)
        if call is None:
            call = calls[codec.duck_name] = codec.make(registry)
    duck_functions.create(con, codec.duck_name, call, codec.params, codec.returns)


def codec(key: tuple[Any, ...], prefix: str, params: tuple[str, ...], returns: str,
           make: Callable[[Registry], Callable[..., pa.Array]]) -> str:
    with _LOCK:
        found = _CODECS.get(key)
        if found is not None:
            return found.duck_name
        found = _CODECS[key] = Codec(f"{PREFIX}{prefix}_{next(_COUNTER)}", params, returns, make)
        connections = list(_CONNECTIONS.items())
    for con, registry in connections:
        _register(con, registry, found)
    return found.duck_name


def decoded_type(columns: Sequence[Column]) -> SqlType:
    """The STRUCT a decoder returns: the columns, then ``__error``."""
    return SqlType.struct([*((c.name, c.type) for c in columns), (ERROR_FIELD, SqlType("STRING"))])


# -- AVRO ---------------------------------------------------------------------------------------------


def avro_decoder(columns: Sequence[Column], *, wrapped: bool) -> str:
    """The name of the function decoding Confluent-framed Avro BLOBs into ``columns`` (see the
    module docstring); ``wrapped`` False: the record is the one column's bare value."""
    cols = tuple(columns)
    result = decoded_type(cols)
    key = ("avro-dec", cols, wrapped)

    def make(registry: Registry) -> Callable[..., pa.Array]:
        return _AvroDecoder(registry, cols, wrapped, arrow_type(result)).__call__

    return codec(key, "dec", ("BLOB",), result.duckdb(), make)


class _AvroDecoder:
    def __init__(self, registry: Registry, columns: tuple[Column, ...], wrapped: bool,
                 target: pa.DataType) -> None:
        self.registry, self.columns, self.wrapped, self.target = registry, columns, wrapped, target
        self.reader = SqlType.struct([(c.name, c.type) for c in columns])
        self.schemas: dict[int, Any] = {}
        self.fast: dict[bytes, FastReader | None] = {}

    def _view(self, schema_id: int) -> tuple[Any, bool] | None:
        """The writer schema of ``schema_id`` renamed to the reader's names, and whether it is
        read as a record of the columns (else as the one column's value); None if unknown."""
        registered = self.registry.by_id(schema_id)
        if registered is None or registered.schema_type != "AVRO":
            return None
        writer = registered.parsed()
        record = self.wrapped and isinstance(writer, dict) and writer.get("type") == "record"
        return reader_view(writer, self.reader if record else self.columns[0].type), record

    def _writer(self, schema_id: int) -> Any:
        found = self.schemas.get(schema_id)
        if found is None:
            view = self._view(schema_id)
            if view is None:
                return None
            found = self.schemas[schema_id] = (fastavro.parse_schema(view[0]), view[1])
        return found

    def _fast_reader(self, header: bytes) -> FastReader | None:
        """The fast reader of the records starting with ``header`` (magic byte, id), or None.
        Kept per header once the id is known (an id registered later is looked up again)."""
        if header in self.fast:
            return self.fast[header]
        framed = len(header) == HEADER_SIZE and header[:1] == b"\x00"
        view = self._view(int.from_bytes(header[1:], "big")) if framed else None
        if view is None:
            return None
        reader = None
        if view[1] or len(self.columns) == 1:  # the columns of a record, or one column's value
            schema = polars_schema(view[0], None if view[1] else self.columns[0].name)
            reader = None if schema is None else FastReader(schema, self.target)
        self.fast[header] = reader
        return reader

    def __call__(self, blobs: pa.ChunkedArray | pa.Array) -> pa.Array:
        """The decoded vector: each group of records sharing a header of a schema the fast path
        reads goes through :class:`~nbstream.formats.avro_arrow.FastReader`; the rest (and any
        group it rejects) through fastavro, record by record (:meth:`_slow`)."""

        def fast(header: bytes, bodies: pa.Array) -> pa.Array | None:
            reader = self._fast_reader(header)
            return None if reader is None else reader.read(bodies)

        return decode_by_header(blobs, HEADER_SIZE, fast, self._slow, self.target)

    def _slow(self, blobs: pa.Array) -> pa.Array:
        values = blobs.to_pylist()
        rows: list[dict[str, Any] | None] = []
        single = self.columns[0].name if len(self.columns) == 1 else None
        read = fastavro.schemaless_reader
        for data in values:
            if data is None:
                rows.append(None)
                continue
            if len(data) < HEADER_SIZE or data[0] != 0:
                rows.append({ERROR_FIELD: "Unknown magic byte!"})
                continue
            schema_id = int.from_bytes(data[1:5], "big")
            writer = self._writer(schema_id)
            if writer is None:
                rows.append({ERROR_FIELD: f"Schema not found: no Avro schema has id {schema_id}"})
                continue
            stream = io.BytesIO(data)
            stream.seek(HEADER_SIZE)
            try:
                datum = read(stream, writer[0], None)
            except Exception as e:
                rows.append({ERROR_FIELD: f"Error deserializing Avro message for id {schema_id}: {e}"})
                continue
            if writer[1] and isinstance(datum, dict):
                rows.append(datum)
            elif single is not None:
                rows.append({single: datum})
            else:
                rows.append({ERROR_FIELD: f"Avro schema id {schema_id} is not a record: expected "
                                          f"{len(self.columns)} fields"})
        return to_struct_array(rows, self.target)


def decode_by_header(blobs: pa.ChunkedArray | pa.Array, header_size: int,
                     fast: Callable[[bytes, pa.Array], pa.Array | None], slow: Callable[[pa.Array], pa.Array],
                     target: pa.DataType) -> pa.Array:
    """A vector decoded group by group: the records sharing their first ``header_size`` bytes go
    to ``fast(header, bodies)`` (the bodies without those bytes), which returns their rows or None
    when it cannot vouch for them; the records no group covered (and NULLs) go to ``slow``, which
    decodes record by record. The rows come back in the vector's order, as one array of ``target``."""
    blobs = blobs.combine_chunks() if isinstance(blobs, pa.ChunkedArray) else blobs
    headers = pc.binary_slice(blobs, 0, header_size)
    parts: list[tuple[pa.Array, pa.Array]] = []  # (row indices, their decoded rows)
    for header in pc.unique(headers.drop_null()).to_pylist():
        rows = pc.indices_nonzero(pc.equal(headers, header))
        # (binary_slice without a stop fails in pyarrow 26: "Negative buffer resize")
        decoded = fast(header, pc.binary_slice(blobs.take(rows), header_size, _NO_STOP))
        if decoded is not None:
            if len(rows) == len(blobs):
                return decoded
            parts.append((rows, decoded))
    if not parts:
        return slow(blobs)
    covered = pa.chunked_array([rows for rows, _ in parts]).combine_chunks()
    left = pc.invert(pc.is_in(pa.array(range(len(blobs)), pa.uint64()), value_set=covered))
    nulls = pc.indices_nonzero(pc.and_(left, blobs.is_null()))
    rest = pc.indices_nonzero(pc.and_(left, blobs.is_valid()))
    parts.append((nulls, pa.nulls(len(nulls), target)))
    if len(rest):
        parts.append((rest, slow(blobs.take(rest))))
    order = pa.chunked_array([rows for rows, _ in parts], type=pa.uint64()).combine_chunks()
    values = pa.concat_arrays([_chunked(decoded) for _, decoded in parts])
    return values.take(pc.sort_indices(order))


def _chunked(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    return a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a


def to_struct_array(rows: list[dict[str, Any] | None], target: pa.DataType) -> pa.Array:
    """``rows`` as one Arrow array of the struct ``target``; a row that does not convert becomes a
    row with only its ``__error`` set (found one by one, only when the whole batch fails)."""
    try:
        return pa.array(rows, type=target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    fixed: list[dict[str, Any] | None] = []
    for row in rows:
        try:
            coerced = _coerce(row, target)
            pa.array([coerced], type=target)
            fixed.append(coerced)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as e:
            fixed.append({ERROR_FIELD: f"Cannot convert the record to the source's columns: {e}"})
    return pa.array(fixed, type=target)


def _coerce(value: Any, t: pa.DataType) -> Any:
    """``value`` coerced to the Arrow type ``t`` as ksqlDB coerces a writer's value to a column:
    any scalar to STRING, numeric text and narrower numbers to numbers; nested values throughout."""
    if value is None:
        return None
    if pa.types.is_struct(t):
        if not isinstance(value, dict):
            raise TypeError(f"expected a record, got {type(value).__name__}")
        return {t.field(i).name: _coerce(value.get(t.field(i).name), t.field(i).type) for i in range(t.num_fields)}
    if pa.types.is_map(t):
        if not isinstance(value, dict):
            raise TypeError(f"expected a map, got {type(value).__name__}")
        return [(_coerce(k, t.key_type), _coerce(v, t.item_type)) for k, v in value.items()]
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        if not isinstance(value, list):
            raise TypeError(f"expected an array, got {type(value).__name__}")
        return [_coerce(v, t.value_type) for v in value]
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else str(value)
    if pa.types.is_integer(t) and isinstance(value, str):
        return int(value)
    if pa.types.is_floating(t) and isinstance(value, str | int) and not isinstance(value, bool):
        return float(value)
    return value


def avro_encoder(columns: Sequence[Column], *, wrapped: bool, schema_id: int) -> str:
    """The name of the function encoding a STRUCT of ``columns`` as Confluent-framed Avro with the
    writer schema ``schema_id`` (fields matched to columns by name, case-insensitively)."""
    cols = tuple(columns)
    struct = SqlType.struct([(c.name, c.type) for c in cols])
    key = ("avro-enc", cols, wrapped, schema_id)

    def make(registry: Registry) -> Callable[..., pa.Array]:
        return _AvroEncoder(registry, cols, wrapped, schema_id).__call__

    return codec(key, "enc", (struct.duckdb(),), "BLOB", make)


class _AvroEncoder:
    def __init__(self, registry: Registry, columns: tuple[Column, ...], wrapped: bool, schema_id: int) -> None:
        self.registry, self.columns, self.wrapped, self.schema_id = registry, columns, wrapped, schema_id
        self.header = b"\x00" + schema_id.to_bytes(4, "big")
        self.has_map = any(_has_map(c.type) for c in columns)
        self.row_type = SqlType.struct([(c.name, c.type) for c in columns]) if wrapped else columns[0].type
        self.parsed: Any = None
        self.vectorized: Encoder | None = None  # compiled at the first call
        self.record_by_record = False  # the writer schema is not vectorizable (avro_encode.NotVectorizable)
        self.has_defaults = False  # whether a field of the schema takes its default for a NULL

    def _writer(self) -> Any:
        """The writer schema, its fields named as the columns."""
        registered = self.registry.by_id(self.schema_id)
        if registered is None:
            raise ValueError(f"no Avro schema has id {self.schema_id}")
        reader = SqlType.struct([(c.name, c.type) for c in self.columns])
        return reader_view(registered.parsed(), reader if self.wrapped else self.columns[0].type)

    def _schema(self) -> Any:
        if self.parsed is None:
            self.parsed = fastavro.parse_schema(self._writer())
            self.has_defaults = _has_defaults(self.parsed)
        return self.parsed

    def __call__(self, structs: pa.ChunkedArray | pa.Array) -> pa.Array:
        """Each row's bytes: the Confluent header, then the row in Avro's binary encoding."""
        if self.vectorized is None and not self.record_by_record:
            try:
                self.vectorized = encoder_for(self._writer())
            except NotVectorizable:
                self.record_by_record = True
        if self.vectorized is None:
            return self._one_by_one(structs)
        try:
            return self._vectorized(self.vectorized, structs)
        except NotVectorizable:  # the rows' Arrow types (known only now): not covered, from now on
            self.vectorized, self.record_by_record = None, True
            return self._one_by_one(structs)

    def _vectorized(self, encode: Encoder, structs: pa.ChunkedArray | pa.Array) -> pa.Array:
        rows = structs.combine_chunks() if isinstance(structs, pa.ChunkedArray) else structs
        values = rows if self.wrapped else rows.field(0)
        present = values if self.wrapped or not values.null_count else values.filter(values.is_valid())
        encoded = join_rows([Encoded.constant(self.header, len(present)), encode(present)])
        if len(present) == len(values):
            return encoded.to_binary()
        lengths = np.zeros(len(values), np.int64)
        lengths[np.asarray(values.is_valid())] = encoded.lengths
        return Encoded(lengths, encoded.data).to_binary(values.is_valid().buffers()[1])

    def _one_by_one(self, structs: pa.ChunkedArray | pa.Array) -> pa.Array:
        """fastavro's writer, a record at a time: for writer schemas :mod:`~nbstream.formats.avro_encode`
        does not cover (enums, fixed, unions of several types, registered outside nbstream)."""
        schema, write = self._schema(), fastavro.schemaless_writer
        days = temporals_as_integers(structs.type, dates_only=True)
        if days != structs.type:
            structs = structs.cast(days)
        out: list[bytes | None] = []
        buf = io.BytesIO()
        single = None if self.wrapped else self.columns[0]
        for row in structs.to_pylist():
            datum: Any = row if single is None or row is None else row[single.name]
            if datum is None and single is not None:
                out.append(None)
                continue
            if self.has_map:
                datum = _maps_as_dicts(datum, self.row_type)
            if self.has_defaults:
                datum = _with_defaults(datum, schema)
            buf.seek(0)
            buf.truncate()
            buf.write(self.header)
            write(buf, schema, datum)
            out.append(buf.getvalue())
        return pa.array(out, type=pa.binary())


def temporals_as_integers(t: pa.DataType, *, dates_only: bool = False) -> pa.DataType:
    """``t`` with its DATEs as int32 days (what Avro's ``date`` holds) and, unless ``dates_only``,
    its TIMESTAMPs and TIMEs as int64 in their unit, so that no value goes through Python's dates
    and times, whose range is smaller than DuckDB's and ksqlDB's."""
    if pa.types.is_date32(t):
        return pa.int32()
    if not dates_only and (pa.types.is_timestamp(t) or pa.types.is_time(t)):
        return pa.int64()
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(temporals_as_integers(t.field(i).type, dates_only=dates_only))
                          for i in range(t.num_fields)])
    if pa.types.is_map(t):
        return pa.map_(temporals_as_integers(t.key_type, dates_only=dates_only),
                       temporals_as_integers(t.item_type, dates_only=dates_only))
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(temporals_as_integers(t.value_type, dates_only=dates_only)))
    return t


def _nullable(schema: Any) -> bool:
    return schema == "null" or (isinstance(schema, list) and "null" in schema)


def _children(schema: Any) -> list[Any]:
    """The schemas nested in an Avro ``schema``: a record's fields', an array's items', a map's
    values', a union's branches."""
    if isinstance(schema, list):
        return schema
    if not isinstance(schema, dict):
        return []
    kind = schema.get("type")
    if kind == "record":
        return [f["type"] for f in schema["fields"]]
    return [schema["items"]] if kind == "array" else [schema["values"]] if kind == "map" else []


def _has_defaults(schema: Any) -> bool:
    """Whether a record of ``schema`` (at any depth) has a non-nullable field with a default."""
    if isinstance(schema, dict) and schema.get("type") == "record" and \
            any("default" in f and not _nullable(f["type"]) for f in schema["fields"]):
        return True
    return any(_has_defaults(child) for child in _children(schema))


def _with_defaults(value: Any, schema: Any) -> Any:
    """``value`` (of Avro ``schema``) with a NULL in a non-nullable field that has a default
    replaced by that default, as Kafka Connect's AvroData (ksqlDB's writer) does."""
    if value is None:
        return None
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        return _with_defaults(value, branches[0]) if len(branches) == 1 else value
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind == "record" and isinstance(value, dict):
        out = dict(value)
        for f in schema["fields"]:
            field = out.get(f["name"])
            use_default = field is None and "default" in f and not _nullable(f["type"])
            out[f["name"]] = f["default"] if use_default else _with_defaults(field, f["type"])
        return out
    if kind == "array":
        return [_with_defaults(v, schema["items"]) for v in value]
    if kind == "map":
        return {k: _with_defaults(v, schema["values"]) for k, v in value.items()}
    return value


def _has_map(t: SqlType) -> bool:
    return t.name == "MAP" or any(_has_map(x) for x in (t.element, t.key, *(ft for _, ft in t.fields)) if x)


def _maps_as_dicts(value: Any, t: SqlType) -> Any:
    """Arrow's Python form of a value of ``t`` with its MAPs (lists of pairs) as dicts."""
    if value is None:
        return None
    if t.name == "MAP" and t.element is not None:
        return {k: _maps_as_dicts(v, t.element) for k, v in value}
    if t.name == "ARRAY" and t.element is not None:
        return [_maps_as_dicts(v, t.element) for v in value]
    if t.name == "STRUCT":
        return {n: _maps_as_dicts(value.get(n), ft) for n, ft in t.fields}
    return value


# -- JSON_SR ------------------------------------------------------------------------------------------


def header_checker(schema_type: str) -> str:
    """The name of the function telling, for a BLOB vector, which records start with Confluent's
    header (magic byte 0, a 4-byte id) of a registered schema of ``schema_type``: the vector's
    distinct headers are looked up, then one ``is_in`` over the vector (NULL records are not)."""

    def make(registry: Registry) -> Callable[..., pa.Array]:
        def registered(header: bytes) -> bool:
            if len(header) != HEADER_SIZE or header[:1] != b"\x00":
                return False
            found = registry.by_id(int.from_bytes(header[1:], "big"))
            return found is not None and found.schema_type == schema_type

        def known(blobs: pa.ChunkedArray | pa.Array) -> pa.Array:
            headers = pc.binary_slice(blobs, 0, HEADER_SIZE)
            distinct = pc.unique(headers).drop_null().to_pylist()
            value_set = pa.array([h for h in distinct if registered(h)], type=pa.binary())
            found = pc.is_in(headers, value_set=value_set)
            return found.combine_chunks() if isinstance(found, pa.ChunkedArray) else found

        return known

    return codec(("known-header", schema_type), "known", ("BLOB",), "BOOLEAN", make)
