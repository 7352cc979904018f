"""ksqlDB's ``AVRO`` format: Confluent-framed Avro (magic byte 0, 4-byte schema id, the body).

Decoding is one DuckDB Arrow function call per vector (:func:`~nbstream.formats.codecs.avro_decoder`):
the writer schema comes from the registry by each record's id, the reader is the source's
columns. Encoding writes with the schema id the statement resolved (the side property
``SCHEMA_ID``, set when the sink or source was created: see :mod:`nbstream.runtime.schemas`).
A single column is wrapped in a record unless ``WRAP_SINGLE_VALUE=false`` (values) or it is a
key's only column (keys are unwrapped, as in ksqlDB).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import fastavro

from nbstream.catalog.schema import Column
from nbstream.errors import FormatError
from nbstream.formats import avro_schema
from nbstream.formats.base import Decoded, check_key_maps, check_wrap, let_name, sql_str
from nbstream.formats.codecs import ERROR_FIELD, avro_decoder, avro_encoder
from nbstream.formats.registry import Registry

#: The side property holding the id a sink writes with (resolved when the statement runs).
SCHEMA_ID = "SCHEMA_ID"


def wrapped(columns: Sequence[Column], wrap_single_value: bool) -> bool:
    """Whether records of ``columns`` are Avro records (else the one column's bare value)."""
    return wrap_single_value or len(columns) != 1


class AvroFormat:
    """The ``AVRO`` format over a schema registry (``registry`` serves the Python-side calls)."""

    name = "AVRO"
    schema_type = "AVRO"

    def __init__(self, properties: Mapping[str, Any], registry: Registry | None = None) -> None:
        self.properties = dict(properties)
        self.registry = registry

    @property
    def schema_id(self) -> int | None:
        found = self.properties.get(SCHEMA_ID)
        return None if found is None else int(found)

    def check_columns(self, columns: Sequence[Column], *, is_key: bool, wrap_single_value: bool | None) -> None:
        check_wrap(columns, wrap_single_value)
        if is_key:
            check_key_maps(columns)
        avro_schema.check_full_name(self.properties.get("SCHEMA_FULL_NAME"))
        if wrapped(columns, bool(wrap_single_value) if wrap_single_value is not None else not is_key):
            avro_schema.check_names(columns)
        for col in columns:
            avro_schema.avro_type(col.type, col.name)  # raises for what Avro cannot carry

    def schema_for(self, columns: Sequence[Column], *, wrap_single_value: bool) -> Any:
        """The schema a sink of ``columns`` registers."""
        return avro_schema.avro_schema_for(columns, wrapped=wrapped(columns, wrap_single_value),
                                           full_name=self.properties.get("SCHEMA_FULL_NAME"))

    def decode_sql(self, blob: str, columns: Sequence[Column], *, wrap_single_value: bool) -> Decoded:
        fn = avro_decoder(columns, wrapped=wrapped(columns, wrap_single_value))
        row = let_name(blob, "avro")
        cols = tuple(f"struct_extract({row}, {sql_str(c.name)})" for c in columns)
        error = f"struct_extract({row}, '{ERROR_FIELD}')"
        return Decoded(cols, f"({error} IS NOT NULL)", error, (((row, f"{fn}({blob})"),),))

    def encode_sql(self, columns: Sequence[tuple[Column, str]], *, wrap_single_value: bool) -> str:
        cols = [c for c, _ in columns]
        if self.schema_id is None:
            raise FormatError("an AVRO sink needs a registered schema (no SCHEMA_ID was resolved)")
        fn = avro_encoder(cols, wrapped=wrapped(cols, wrap_single_value), schema_id=self.schema_id)
        struct = ", ".join(f"{sql_str(c.name)}: {e}" for c, e in columns)
        return f"{fn}({{{struct}}})"

    # -- Python side ---------------------------------------------------------------------------
    def _registry(self) -> Registry:
        if self.registry is None:
            raise FormatError("the AVRO format needs the engine's schema registry here")
        return self.registry

    def encode_python(self, value: Any, columns: Sequence[Column]) -> bytes | None:
        if value is None:
            return None
        schema_id = self.schema_id
        if schema_id is None:
            raise FormatError("no Avro schema is registered for this topic")
        registered = self._registry().by_id(schema_id)
        if registered is None:
            raise FormatError(f"no Avro schema has id {schema_id}")
        writer = registered.parsed()
        buf = io.BytesIO()
        buf.write(b"\x00" + schema_id.to_bytes(4, "big"))
        try:
            fastavro.schemaless_writer(buf, fastavro.parse_schema(writer), avro_schema.to_datum(value, writer))
        except (ValueError, TypeError, AttributeError, KeyError) as e:
            raise FormatError(f"Cannot serialize {value!r} with Avro schema id {schema_id}: {e}") from None
        return buf.getvalue()

    def decode_python(self, data: bytes | None, columns: Sequence[Column], *, wrap_single_value: bool) -> Any:
        if data is None:
            return None
        if len(data) < 5 or data[0] != 0:
            raise FormatError("Unknown magic byte!")
        schema_id = int.from_bytes(data[1:5], "big")
        registered = self._registry().by_id(schema_id)
        if registered is None:
            raise FormatError(f"no Avro schema has id {schema_id}")
        stream = io.BytesIO(data)
        stream.seek(5)
        writer = fastavro.parse_schema(avro_schema.dates_as_days(registered.parsed()))
        return avro_schema.from_datum(fastavro.schemaless_reader(stream, writer, None))
