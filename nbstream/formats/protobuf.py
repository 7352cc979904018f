"""ksqlDB's ``PROTOBUF`` and ``PROTOBUF_NOSR`` formats.

``PROTOBUF``: Confluent's wire format — magic byte 0, the 4-byte big-endian schema id, the message
indexes (a single 0 byte for the first message of the schema), then the message. The writer
schema comes from the registry by the record's id and its message by the indexes; the reader is
the source's columns. A sink writes with the id the statement resolved (side property
``SCHEMA_ID``: a given ``*_SCHEMA_ID``, else the schema ksqlDB generates from the columns,
registered under ``<topic>-key``/``-value``; :mod:`nbstream.runtime.schemas`) and the message
named by ``*_SCHEMA_FULL_NAME`` (else the schema's first). Records are always messages: a single
column is wrapped (ksqlDB's PROTOBUF has no unwrapped form, ``WRAP_SINGLE_VALUE=false`` is an
error), keys included.

``PROTOBUF_NOSR``: the bare message, its schema the columns' (what
:func:`~nbstream.formats.protobuf_schema.proto_schema_for` generates, no registry). A single key
column, or a value with ``WRAP_SINGLE_VALUE=false``, is unwrapped as Connect writes a bare value:
a primitive as its ``google.protobuf`` wrapper message, a STRUCT as its own message.

Both read ``*_PROTOBUF_NULLABLE_REPRESENTATION`` (``OPTIONAL``/``WRAPPER``) for the schema they
generate. Schemas: :mod:`~nbstream.formats.protobuf_schema`; values:
:mod:`~nbstream.formats.protobuf_values`; the vector codecs (one call per vector, upb per record
inside it): :mod:`~nbstream.formats.protobuf_codec`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nbstream.catalog.schema import Column
from nbstream.errors import FormatError
from nbstream.formats import protobuf_schema
from nbstream.formats.avro import SCHEMA_ID
from nbstream.formats.base import Decoded, check_key_maps, check_wrap, let_name, sql_str
from nbstream.formats.codecs import ERROR_FIELD
from nbstream.formats.protobuf_codec import Layout, decode_record, encode_record, protobuf_decoder, protobuf_encoder
from nbstream.formats.registry import Registry

#: The side property naming the representation of nullable scalars (ksqlDB's
#: ``KEY_``/``VALUE_PROTOBUF_NULLABLE_REPRESENTATION``).
NULLABLE = "PROTOBUF_NULLABLE_REPRESENTATION"
NULLABLE_CHOICES = ("OPTIONAL", "WRAPPER")


class ProtobufFormat:
    """``PROTOBUF`` (``registry_framed``) or ``PROTOBUF_NOSR``; ``registry`` serves the Python-side calls."""

    schema_type = "PROTOBUF"

    def __init__(self, properties: Mapping[str, Any], registry: Registry | None = None, *,
                 registry_framed: bool = True, is_key: bool = False) -> None:
        self.properties = dict(properties)
        self.is_key = is_key
        self.registry = registry
        self.framed = registry_framed
        self.name = "PROTOBUF" if registry_framed else "PROTOBUF_NOSR"

    @property
    def schema_id(self) -> int | None:
        found = self.properties.get(SCHEMA_ID)
        return None if found is None else int(found)

    @property
    def full_name(self) -> str | None:
        found = self.properties.get("SCHEMA_FULL_NAME")
        return None if found is None else str(found).strip()

    @property
    def nullable(self) -> str | None:
        found = self.properties.get(NULLABLE)
        if found is None:
            return None
        upper = str(found).strip().upper()
        if upper not in NULLABLE_CHOICES:
            raise FormatError(f"Invalid value for {NULLABLE}: {found}. Valid values: {', '.join(NULLABLE_CHOICES)}")
        return upper

    def wrapped(self, columns: Sequence[Column], wrap_single_value: bool) -> bool:
        """Whether records of ``columns`` are messages of the columns (else the one column's value)."""
        return self.framed or wrap_single_value or len(columns) != 1

    def check_columns(self, columns: Sequence[Column], *, is_key: bool, wrap_single_value: bool | None) -> None:
        check_wrap(columns, wrap_single_value)
        if self.framed and wrap_single_value is False:
            raise FormatError(f"Format '{self.name}' does not support 'WRAP_SINGLE_VALUE' set to 'false'.")
        if is_key:
            check_key_maps(columns)
        if self.full_name is not None and not self.full_name:
            raise FormatError("fullSchemaName cannot be empty. Format configuration: {fullSchemaName=}")
        for col in columns:
            protobuf_schema.check_map_keys(col.type)
        wrap = bool(wrap_single_value) if wrap_single_value is not None else not is_key
        if self.wrapped(columns, wrap):
            protobuf_schema.proto_schema_for(columns, nullable=self.nullable)  # raises for what it cannot carry
        elif columns[0].type.name in ("ARRAY", "MAP"):  # Connect's rule: a bare value must be a message
            raise FormatError(f"{self.name} cannot carry a bare {columns[0].type.name} (column `{columns[0].name}`): "
                              "Unsupported root schema of type " + columns[0].type.name)

    def schema_for(self, columns: Sequence[Column], *, wrap_single_value: bool) -> str:
        """The ``.proto`` text a sink of ``columns`` registers."""
        return protobuf_schema.proto_schema_for(columns, full_name=self.full_name, nullable=self.nullable)

    def _layout(self, columns: Sequence[Column], wrap_single_value: bool) -> Layout:
        cols = tuple(columns)
        return Layout(cols, self.wrapped(cols, wrap_single_value), self.framed, self.full_name, self.nullable,
                      None if self.framed else self.schema_for(cols, wrap_single_value=wrap_single_value))

    def decode_sql(self, blob: str, columns: Sequence[Column], *, wrap_single_value: bool) -> Decoded:
        fn = protobuf_decoder(self._layout(columns, wrap_single_value))
        row = let_name(blob, "proto")
        cols = tuple(f"struct_extract({row}, {sql_str(c.name)})" for c in columns)
        error = f"struct_extract({row}, '{ERROR_FIELD}')"
        return Decoded(cols, f"({error} IS NOT NULL)", error, (((row, f"{fn}({blob})"),),))

    def encode_sql(self, columns: Sequence[tuple[Column, str]], *, wrap_single_value: bool) -> str:
        cols = [c for c, _ in columns]
        if self.framed and self.schema_id is None:
            raise FormatError("a PROTOBUF sink needs a registered schema (no SCHEMA_ID was resolved)")
        fn = protobuf_encoder(self._layout(cols, wrap_single_value), self.schema_id)
        struct = ", ".join(f"{sql_str(c.name)}: {e}" for c, e in columns)
        return f"{fn}({{{struct}}})"

    # -- Python side ---------------------------------------------------------------------------
    def _registry(self) -> Registry | None:
        if self.framed and self.registry is None:
            raise FormatError("the PROTOBUF format needs the engine's schema registry here")
        return self.registry

    def encode_python(self, value: Any, columns: Sequence[Column]) -> bytes | None:
        if value is None:
            return None
        wrap = not self.is_key and bool(self.properties.get("WRAP_SINGLE_VALUE", True))
        layout = self._layout(columns, wrap)
        return encode_record(self._registry(), layout, self.schema_id, value)

    def decode_python(self, data: bytes | None, columns: Sequence[Column], *, wrap_single_value: bool) -> Any:
        if data is None:
            return None
        return decode_record(self._registry(), self._layout(columns, wrap_single_value), data)
