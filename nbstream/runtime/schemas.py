"""The schema registry's part in statements: inferring columns, resolving the ids sinks write with.

* :func:`infer_columns` — a ``CREATE STREAM/TABLE`` over a registry format that declares no value
  columns (and no key columns, for a registry key format) takes them from the subject's latest
  schema (``<topic>-value``/``<topic>-key``), or from the id given by ``VALUE_SCHEMA_ID`` /
  ``KEY_SCHEMA_ID``, as ksqlDB does.
* :func:`resolve_ids` — each registry-format side of a source or sink gets the side property
  ``SCHEMA_ID``, the id its records are written with: the given ``*_SCHEMA_ID``; for a declared
  source, the subject's latest schema if it has one, else the schema of its columns, registered;
  for a query's sink, the schema of its columns, registered after a BACKWARD compatibility check
  against the subject's latest version (a CREATE OR REPLACE that breaks it fails, naming the field).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from nbstream.catalog.schema import Column
from nbstream.errors import CatalogError
from nbstream.formats import REGISTRY_FORMATS, avro_schema, format_for, json_schema, protobuf_schema
from nbstream.formats.avro import SCHEMA_ID, AvroFormat
from nbstream.formats.json_sr import JsonSrFormat
from nbstream.formats.protobuf import ProtobufFormat
from nbstream.formats.protobuf_codec import registered_schema
from nbstream.sql import ast

if TYPE_CHECKING:
    from nbstream.formats.registry import RegisteredSchema, Registry

#: WITH properties carried into a side's properties (``KEY_``/``VALUE_`` prefix dropped).
SIDE_PROPERTIES = ("SCHEMA_ID", "SCHEMA_FULL_NAME", "PROTOBUF_NULLABLE_REPRESENTATION")


def side_properties(props: Mapping[str, Any], side: str) -> dict[str, Any]:
    """The registry properties of ``side`` (KEY or VALUE) in the WITH ``props``."""
    out: dict[str, Any] = {}
    for name in SIDE_PROPERTIES:
        value = props.get(f"{side}_{name}")
        if value is not None:
            out[name] = int(value) if name == "SCHEMA_ID" else str(value)
    if side == "VALUE" and props.get("VALUE_AVRO_SCHEMA_FULL_NAME") is not None:
        out["SCHEMA_FULL_NAME"] = str(props["VALUE_AVRO_SCHEMA_FULL_NAME"])
    return out


def _subject_schema(registry: Registry, subject: str, schema_id: Any) -> RegisteredSchema | None:
    if schema_id is not None:
        found = registry.by_id(int(schema_id))
        if found is None:
            raise CatalogError(f"Schema id {schema_id} is not registered (subject '{subject}')")
        return found
    return registry.latest(subject)


def infer_columns(registry: Registry, stmt: ast.CreateSource, topic: str, key_format: str,
                  value_format: str) -> ast.CreateSource:
    """``stmt`` with the columns the registry knows for ``topic`` added where it declares none."""
    declared = list(stmt.columns)
    has_key = any(c.role in ("KEY", "PRIMARY KEY") for c in declared)
    has_value = any(c.role == "VALUE" for c in declared)
    props = stmt.properties
    added: list[ast.ColumnDef] = []
    key_role: ast.ColumnRole = "PRIMARY KEY" if stmt.kind == "TABLE" else "KEY"
    if key_format in REGISTRY_FORMATS and not has_key:
        found = _subject_schema(registry, f"{topic}-key", props.get("KEY_SCHEMA_ID"))
        if found is not None:
            columns = _columns(registry, found, key_format, "KEY", props, unwrapped=key_format != "PROTOBUF")
            added += [ast.ColumnDef(c.name, c.type, key_role) for c in columns]
    if value_format in REGISTRY_FORMATS and not has_value:
        found = _subject_schema(registry, f"{topic}-value", props.get("VALUE_SCHEMA_ID"))
        if found is None:
            raise CatalogError(f"Schema for message values on topic '{topic}' does not exist in the Schema "
                               f"Registry. Subject: {topic}-value. Declare the columns, or register a schema.")
        wrap = props.get("WRAP_SINGLE_VALUE")
        unwrapped = wrap is not None and str(wrap).strip().lower() == "false"
        columns = _columns(registry, found, value_format, "VALUE", props, unwrapped=unwrapped)
        added += [ast.ColumnDef(c.name, c.type, "VALUE") for c in columns]
    if not added:
        return stmt
    keys = [c for c in declared if c.role in ("KEY", "PRIMARY KEY")] + [c for c in added if c.role != "VALUE"]
    values = [c for c in declared if c.role not in ("KEY", "PRIMARY KEY")] + [c for c in added if c.role == "VALUE"]
    return replace(stmt, columns=tuple(keys + values))


def _columns(registry: Registry, found: RegisteredSchema, fmt: str, role: str, props: Mapping[str, Any], *,
             unwrapped: bool) -> list[Column]:
    """The columns of ``role`` (KEY or VALUE) the registered schema ``found`` gives a source of
    ``fmt``; a PROTOBUF schema named by ``*_SCHEMA_ID`` keeps its field names (ksqlDB's
    ORIGINAL_FIELD_NAME policy), and ``*_SCHEMA_FULL_NAME`` chooses its message."""
    single = "ROWKEY" if role == "KEY" else "ROWVAL"
    if fmt == "PROTOBUF_NOSR":
        raise CatalogError("PROTOBUF_NOSR does not support schema inference: declare the columns")
    if found.schema_type == "PROTOBUF":
        return protobuf_schema.columns_of(registered_schema(registry, found), role, single_name=single,
                                          unwrapped=unwrapped, full_name=props.get(f"{role}_SCHEMA_FULL_NAME"),
                                          original_names=props.get(f"{role}_SCHEMA_ID") is not None)
    modules = {"AVRO": avro_schema, "JSON": json_schema}
    module = modules.get(found.schema_type)
    if module is None:
        raise CatalogError(f"Inferring columns from a {found.schema_type} schema is not supported yet")
    return module.columns_of(found.parsed(), role, single_name=single, unwrapped=unwrapped)


def needs_inference(stmt: ast.CreateSource, key_format: str, value_format: str) -> bool:
    """Whether ``stmt`` leaves columns to the registry."""
    has_key = any(c.role in ("KEY", "PRIMARY KEY") for c in stmt.columns)
    has_value = any(c.role == "VALUE" for c in stmt.columns)
    return (value_format in REGISTRY_FORMATS and not has_value) or (key_format in REGISTRY_FORMATS and not has_key)


def resolve_ids(registry: Registry, topic: str, fmt: str, props: dict[str, Any], columns: Sequence[Column],
                *, is_key: bool, sink: bool, replacing: bool = False) -> dict[str, Any]:
    """``props`` of one side with ``SCHEMA_ID`` resolved (see the module docstring); unchanged for
    formats without a registry or a side without columns. ``replacing``: a CREATE OR REPLACE of
    the sink, whose new schema must be BACKWARD compatible with the subject's latest."""
    if fmt not in REGISTRY_FORMATS or not columns:
        return props
    subject = f"{topic}-{'key' if is_key else 'value'}"
    if props.get(SCHEMA_ID) is not None:
        if registry.by_id(int(props[SCHEMA_ID])) is None:
            raise CatalogError(f"Schema id {props[SCHEMA_ID]} is not registered (subject '{subject}')")
        return props
    codec = format_for(fmt, props, is_key=is_key, registry=registry)
    if not isinstance(codec, AvroFormat | JsonSrFormat | ProtobufFormat):
        return props
    if isinstance(codec, ProtobufFormat) and not codec.framed:  # PROTOBUF_NOSR: no registry
        return props
    wrap = False if is_key else bool(props.get("WRAP_SINGLE_VALUE", True))
    schema = codec.schema_for(columns, wrap_single_value=wrap)
    latest = registry.latest(subject)
    if not sink and latest is not None:
        return {**props, SCHEMA_ID: latest.id}
    if sink and replacing:
        registry.check_compatible(subject, schema, codec.schema_type)
    return {**props, SCHEMA_ID: registry.register(subject, schema, codec.schema_type)}
