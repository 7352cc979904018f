"""ksqlDB's ``JSON_SR`` format: Confluent-framed JSON (magic byte 0, 4-byte schema id, JSON text).

The body is ksqlDB's JSON, so decoding strips the 5-byte header in SQL and hands the rest to the
``JSON`` format's vectorised decoding (:class:`~nbstream.formats.json.JsonFormat`), which also
applies ksqlDB's coercions; ksqlDB does not validate a body against its schema either. A record
without the magic byte, or whose id names no JSON schema of the registry (one vectorised ``is_in``
of the headers per vector: :func:`~nbstream.formats.codecs.header_checker`), goes to the
processing log with the reason. Encoding prefixes the JSON format's text with the header of the id the
statement resolved (the side property ``SCHEMA_ID``, see :mod:`nbstream.runtime.schemas`); sinks
register :func:`~nbstream.formats.json_schema.json_schema_for` under ``<topic>-value``/``-key``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nbstream.catalog.schema import Column
from nbstream.errors import FormatError
from nbstream.formats import json_schema
from nbstream.formats.avro import SCHEMA_ID
from nbstream.formats.base import Decoded, let_name
from nbstream.formats.codecs import header_checker
from nbstream.formats.json import JsonFormat
from nbstream.formats.registry import Registry

#: Confluent's wire-format header: the magic byte, then the schema id (4 bytes, big-endian).
HEADER_SIZE = 5
MAGIC_ERROR = "Unknown magic byte!"


def header(schema_id: int) -> bytes:
    """The wire-format header of a record written with ``schema_id``."""
    return b"\x00" + schema_id.to_bytes(4, "big")


def blob_literal(data: bytes) -> str:
    """``data`` as a DuckDB BLOB literal."""
    return "'" + "".join(f"\\x{b:02X}" for b in data) + "'::BLOB"


class JsonSrFormat:
    """The ``JSON_SR`` format over a schema registry (``registry`` serves the Python-side calls)."""

    name = "JSON_SR"
    schema_type = "JSON"

    def __init__(self, properties: Mapping[str, Any], registry: Registry | None = None) -> None:
        self.properties = dict(properties)
        self.registry = registry
        self.json = JsonFormat()

    @property
    def schema_id(self) -> int | None:
        found = self.properties.get(SCHEMA_ID)
        return None if found is None else int(found)

    def check_columns(self, columns: Sequence[Column], *, is_key: bool, wrap_single_value: bool | None) -> None:
        self.json.check_columns(columns, is_key=is_key, wrap_single_value=wrap_single_value)
        for col in columns:
            json_schema.check_string_map_keys(col.type)

    def schema_for(self, columns: Sequence[Column], *, wrap_single_value: bool) -> Any:
        """The schema a sink of ``columns`` registers."""
        return json_schema.json_schema_for(columns, wrapped=wrap_single_value or len(columns) != 1)

    def decode_sql(self, blob: str, columns: Sequence[Column], *, wrap_single_value: bool) -> Decoded:
        body, bad = let_name(blob, "sr_body"), let_name(blob, "sr_bad")
        framed = f"(octet_length({blob}) >= {HEADER_SIZE} AND {blob}[1:1] = '\\x00'::BLOB)"
        schema_id = f"('0x' || hex({blob}[2:{HEADER_SIZE}]))::BIGINT"
        known = f"{header_checker(self.schema_type)}({blob})"
        header_layer = ((bad, f"CASE WHEN {blob} IS NULL OR {known} THEN NULL WHEN {framed} THEN 'id' "
                              "ELSE 'magic' END"),)
        body_layer = ((body, f"CASE WHEN {bad} IS NULL THEN {blob}[{HEADER_SIZE + 1}:] END"),)
        inner = self.json.decode_sql(body, columns, wrap_single_value=wrap_single_value)
        error = f"({bad} IS NOT NULL OR coalesce({inner.error or 'false'}, false))"
        message = (f"CASE {bad} WHEN 'magic' THEN '{MAGIC_ERROR}' WHEN 'id' THEN 'Schema not found: no JSON schema "
                   f"has id ' || {schema_id} ELSE {inner.error_message or 'NULL'} END")
        return Decoded(inner.columns, error, message, (header_layer, body_layer, *inner.lets))

    def encode_sql(self, columns: Sequence[tuple[Column, str]], *, wrap_single_value: bool) -> str:
        if self.schema_id is None:
            raise FormatError("a JSON_SR sink needs a registered schema (no SCHEMA_ID was resolved)")
        text = self.json.encode_sql(columns, wrap_single_value=wrap_single_value)
        return f"({blob_literal(header(self.schema_id))} || {text})"

    # -- Python side ---------------------------------------------------------------------------
    def encode_python(self, value: Any, columns: Sequence[Column]) -> bytes | None:
        if value is None:
            return None
        if self.schema_id is None:
            raise FormatError("no JSON schema is registered for this topic")
        body = self.json.encode_python(value, columns)
        return None if body is None else header(self.schema_id) + body

    def decode_python(self, data: bytes | None, columns: Sequence[Column], *, wrap_single_value: bool) -> Any:
        if data is None:
            return None
        if len(data) < HEADER_SIZE or data[0] != 0:
            raise FormatError(MAGIC_ERROR)
        return self.json.decode_python(data[HEADER_SIZE:], columns, wrap_single_value=wrap_single_value)
