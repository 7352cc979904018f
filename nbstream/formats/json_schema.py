"""JSON schemas ↔ ksqlDB types, as Kafka Connect's ``JsonSchemaData`` (which ksqlDB uses) has them.

* SQL → JSON schema (what a ``JSON_SR`` sink registers): a value is an ``object`` whose
  ``properties`` carry ``connect.index`` and are optional (``{"oneOf": [{"type": "null"}, T]}``);
  a key or an unwrapped value is the optional type itself. INTEGER and BIGINT are ``integer``
  with ``connect.type`` ``int32``/``int64``, DOUBLE ``number``/``float64``, BYTES a ``string``
  with ``connect.type`` ``bytes`` (base64 text), DECIMAL a ``number`` titled
  ``org.apache.kafka.connect.data.Decimal`` with its scale and precision in
  ``connect.parameters``, TIMESTAMP/DATE/TIME an ``integer`` titled with Connect's logical type
  (epoch ms, epoch days, ms of the day), MAP an ``object`` with ``additionalProperties``
  (``connect.type`` ``map``; STRING keys only, as ksqlDB's JSON formats).
* JSON schema → SQL (schema inference): the inverse, plus what Connect reads from schemas it did
  not write: ``integer`` without ``connect.type`` is BIGINT, ``number`` DOUBLE, an ``object``
  without ``properties`` but with ``additionalProperties`` a MAP, ``oneOf``/``anyOf`` with
  ``null`` the other branch; record field names upper-cased, as the AVRO inference does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nbstream.catalog.schema import Column
from nbstream.catalog.types import SqlType
from nbstream.errors import FormatError
from nbstream.formats.compatibility import type_incompatibility

_CONNECT = "org.apache.kafka.connect.data."
_NULL = {"type": "null"}


# -- SQL → JSON schema ----------------------------------------------------------------------------


def json_schema_for(columns: Sequence[Column], *, wrapped: bool) -> dict[str, Any]:
    """The JSON schema ksqlDB registers for ``columns``: an object, or (unwrapped, keys) the one
    column's optional type."""
    if not wrapped:
        if len(columns) != 1:
            raise FormatError("an unwrapped JSON schema needs exactly one column")
        return _optional(json_type(columns[0].type))
    return _object([(c.name, c.type) for c in columns])


def _optional(t: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [_NULL, t]}


def _object(fields: Sequence[tuple[str, SqlType]]) -> dict[str, Any]:
    return {"type": "object", "properties": {n: {"connect.index": i, **_optional(json_type(t))}
                                             for i, (n, t) in enumerate(fields)}}


def _logical(name: str, connect_type: str, json_kind: str = "integer") -> dict[str, Any]:
    return {"type": json_kind, "title": _CONNECT + name, "connect.version": 1, "connect.type": connect_type}


def json_type(t: SqlType) -> dict[str, Any]:
    """The JSON schema of a value of ``t``."""
    simple = {"BOOLEAN": {"type": "boolean"}, "INTEGER": {"type": "integer", "connect.type": "int32"},
              "BIGINT": {"type": "integer", "connect.type": "int64"},
              "DOUBLE": {"type": "number", "connect.type": "float64"}, "STRING": {"type": "string"},
              "BYTES": {"type": "string", "connect.type": "bytes"}}
    if t.name in simple:
        return dict(simple[t.name])
    if t.name == "DECIMAL":
        return {**_logical("Decimal", "bytes", "number"),
                "connect.parameters": {"scale": str(t.scale), "connect.decimal.precision": str(t.precision)}}
    if t.name == "TIMESTAMP":
        return _logical("Timestamp", "int64")
    if t.name == "DATE":
        return _logical("Date", "int32")
    if t.name == "TIME":
        return _logical("Time", "int32")
    if t.name == "ARRAY" and t.element is not None:
        return {"type": "array", "items": _optional(json_type(t.element))}
    if t.name == "MAP" and t.key is not None and t.element is not None:
        if t.key.name != "STRING":
            raise FormatError("JSON only supports MAP types with STRING keys")
        return {"type": "object", "additionalProperties": _optional(json_type(t.element)), "connect.type": "map"}
    if t.name == "STRUCT":
        return _object(t.fields)
    raise FormatError(f"The 'JSON_SR' format does not support type '{t.name}'")


def check_string_map_keys(t: SqlType) -> None:
    """ksqlDB's rule for JSON_SR: every MAP in ``t`` has STRING keys."""
    if t.name == "MAP" and t.key is not None and t.key.name != "STRING":
        raise FormatError("JSON only supports MAP types with STRING keys")
    for inner in (t.element, t.key, *(ft for _, ft in t.fields)):
        if inner is not None:
            check_string_map_keys(inner)


# -- JSON schema → SQL ----------------------------------------------------------------------------


def sql_type_of(schema: Any) -> SqlType:
    """The ksqlDB type of the JSON ``schema`` (see the module docstring)."""
    if schema is True or schema == {}:
        raise FormatError("A JSON schema that accepts anything has no ksqlDB type")
    bare = _non_null(schema)
    if not isinstance(bare, dict):
        raise FormatError(f"Unsupported JSON schema: {schema}")
    kind, title = bare.get("type"), str(bare.get("title") or "")
    connect = bare.get("connect.type")
    if isinstance(kind, list):  # ["null", "string"]
        kinds = [k for k in kind if k != "null"]
        if len(kinds) != 1:
            raise FormatError(f"JSON schemas of several non-null types are not supported: {kind}")
        kind = kinds[0]
    if title == _CONNECT + "Decimal":
        params = bare.get("connect.parameters") or {}
        return SqlType.decimal(int(params.get("connect.decimal.precision", 64)), int(params.get("scale", 0)))
    logical = {_CONNECT + "Timestamp": "TIMESTAMP", _CONNECT + "Date": "DATE", _CONNECT + "Time": "TIME"}
    if title in logical:
        return SqlType(logical[title])
    if kind == "boolean":
        return SqlType("BOOLEAN")
    if kind == "integer":
        return SqlType("INTEGER" if connect in ("int8", "int16", "int32") else "BIGINT")
    if kind == "number":
        return SqlType("DOUBLE")
    if kind == "string":
        return SqlType("BYTES" if connect == "bytes" else "STRING")
    if kind == "array":
        return SqlType.array(sql_type_of(bare.get("items", {})))
    if kind == "object":
        props = bare.get("properties")
        extra = bare.get("additionalProperties")
        if not props and isinstance(extra, dict):
            return SqlType.map(SqlType("STRING"), sql_type_of(extra))
        ordered = sorted((props or {}).items(), key=lambda kv: _index(kv[1]))
        return SqlType.struct([(n.upper(), sql_type_of(s)) for n, s in ordered])
    raise FormatError(f"Unsupported JSON schema type: {kind!r}")


def _index(field: Any) -> int:
    found = field.get("connect.index") if isinstance(field, dict) else None
    return int(found) if isinstance(found, int) else 1 << 30  # stable sort keeps the rest in order


def _non_null(schema: Any) -> Any:
    """``schema`` without a ``oneOf``/``anyOf`` branch for ``null`` (the one other branch)."""
    if isinstance(schema, dict):
        for union in ("oneOf", "anyOf"):
            branches = schema.get(union)
            if isinstance(branches, list):
                rest = [b for b in branches if b != _NULL and b.get("type") != "null"]
                if len(rest) != 1:
                    raise FormatError(f"JSON schema unions of several non-null types are not supported: {branches}")
                return _non_null(rest[0])
    return schema


def columns_of(schema: Any, role: str, *, single_name: str, unwrapped: bool = False) -> list[Column]:
    """Columns inferred from a subject's JSON schema: an object's properties, else (or when
    ``unwrapped``) one column ``single_name``."""
    t = sql_type_of(schema)
    if not unwrapped and t.name == "STRUCT" and _non_null(schema).get("properties"):
        return [Column(n, ft, role) for n, ft in t.fields]  # type: ignore[arg-type]
    return [Column(single_name, t, role)]  # type: ignore[arg-type]


def backward_incompatibility(reader: Any, writer: Any) -> str | None:
    """Why a reader of the JSON schema ``reader`` cannot read what ``writer`` wrote, naming the
    field; None when it can (:mod:`nbstream.formats.compatibility`; the reader's ``required``
    fields must be there)."""
    return type_incompatibility(sql_type_of(reader), sql_type_of(writer), _required(reader))


def _required(schema: Any) -> frozenset[str]:
    bare = _non_null(schema)
    return frozenset(str(n).upper() for n in bare.get("required") or ()) if isinstance(bare, dict) else frozenset()
