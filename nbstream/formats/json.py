"""ksqlDB's ``JSON`` format, decoded and encoded by DuckDB SQL.

Decoding follows ksqlDB's ``KsqlJsonDeserializer``: an object's fields match column names exactly
first, then by the upper-cased JSON key (so unquoted, upper-case column names match any spelling
and quoted names only their own). DuckDB's ``json_transform`` matches keys case-sensitively, so
the runtime first runs :meth:`JsonFormat.probe_sql` over the batch and passes the key spellings
seen to :meth:`JsonFormat.decode_sql`. Nested STRUCT fields are matched per row instead.

Encoding builds the JSON text directly (DuckDB's ``to_json`` would drop a DECIMAL's scale and
render DOUBLE ``1.0`` as ``1``): DOUBLE as Java's ``Double.toString``, DECIMAL with its scale,
TIMESTAMP as epoch ms, DATE as epoch days, TIME as ms of the day, BYTES as base64.
"""

from __future__ import annotations

import base64
import decimal
import json
from collections.abc import Sequence
from typing import Any

from nbstream.catalog.schema import Column
from nbstream.catalog.types import SqlType
from nbstream.formats.base import (
    Decoded,
    check_key_maps,
    check_wrap,
    scalar_from_text_sql,
    scalar_text_sql,
    sql_ident,
    sql_str,
)

#: Types ``json_transform`` converts the way ksqlDB's JSON deserializer does.
_NATIVE = frozenset({"BOOLEAN", "INTEGER", "BIGINT", "DOUBLE", "STRING"})


class JsonFormat:
    """The ``JSON`` format (schema-less JSON; no schema registry)."""

    name = "JSON"

    def check_columns(
        self, columns: Sequence[Column], *, is_key: bool, wrap_single_value: bool | None
    ) -> None:
        check_wrap(columns, wrap_single_value)
        if is_key:
            check_key_maps(columns)

    def probe_sql(self, blob: str) -> str:
        text = f"TRY(decode({blob}))"
        keys = f"CASE WHEN json_valid({text}) THEN json_keys({text}) END"
        return f"list_distinct(flatten(list(DISTINCT {keys})))"

    def decode_sql(
        self, blob: str, columns: Sequence[Column], probe: Any, *, wrap_single_value: bool
    ) -> Decoded:
        raw_text = f"TRY(decode({blob}))"
        text = f"CASE WHEN json_valid({raw_text}) THEN {raw_text} END"
        if wrap_single_value or len(columns) != 1:
            raw = _object_fields(text, columns, probe)
            shape_ok = f"json_type({text}) = 'OBJECT'"
        else:
            raw = [f"({text})::JSON"]
            shape_ok = "true"
        typed = tuple(from_json_sql(r, c.type) for r, c in zip(raw, columns, strict=True))
        bad = [
            f"({r} IS NOT NULL AND json_type({r}) <> 'NULL' AND {t} IS NULL)"
            for r, t in zip(raw, typed, strict=True)
        ]
        invalid = f"NOT coalesce(json_valid({raw_text}), false)"
        error = f"({blob} IS NOT NULL AND ({' OR '.join([invalid, f'NOT ({shape_ok})', *bad])}))"
        whens = [
            f"WHEN {invalid} THEN 'Invalid JSON or UTF-8 text'",
            f"WHEN NOT ({shape_ok}) THEN 'Can''t convert type. sourceType: ' || json_type({text})"
            " || ', requiredType: STRUCT'",
        ]
        for b, r, c in zip(bad, raw, columns, strict=True):
            path = sql_str(f", requiredType: {c.type}, path: $.{c.name}")
            whens.append(f"WHEN {b} THEN 'Can''t convert type. sourceType: ' || json_type({r}) || {path}")
        return Decoded(typed, error, f"CASE {' '.join(whens)} END")

    def encode_sql(self, columns: Sequence[tuple[Column, str]], *, wrap_single_value: bool) -> str:
        if not wrap_single_value and len(columns) == 1:
            col, expr = columns[0]
            return f"encode({to_json_sql(expr, col.type)})"
        return f"encode({object_json_sql([(c.name, e, c.type) for c, e in columns])})"

    def encode_python(self, value: Any, columns: Sequence[Column]) -> bytes | None:
        return None if value is None else dump_json(value).encode()

    def decode_python(self, data: bytes | None, columns: Sequence[Column], *, wrap_single_value: bool) -> Any:
        if data is None:
            return None
        parsed = json.loads(data, parse_float=decimal.Decimal)
        if not columns:
            return parsed
        if not wrap_single_value and len(columns) == 1:
            return apply_type(parsed, columns[0].type)
        return apply_type(parsed, SqlType.struct([(c.name, c.type) for c in columns]))


# -- decoding -----------------------------------------------------------------------------------


def _object_fields(text: str, columns: Sequence[Column], probe: Any) -> list[str]:
    """One JSON expression per column: its field of the object ``text``, matched like ksqlDB."""
    seen = [k for k in (probe or []) if isinstance(k, str)]
    spellings: list[str] = []
    per_column: list[list[int]] = []
    for col in columns:
        names = [col.name] + [k for k in seen if k != col.name and k.upper() == col.name]
        idx = []
        for name in names:
            if name not in spellings:
                spellings.append(name)
            idx.append(spellings.index(name) + 1)
        per_column.append(idx)
    paths = ", ".join(sql_str(_path(s)) for s in spellings)
    fields = f"json_extract({text}, [{paths}])"
    return [_coalesce([f"{fields}[{i}]" for i in idx]) for idx in per_column]


def _path(key: str) -> str:
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _coalesce(exprs: list[str]) -> str:
    return exprs[0] if len(exprs) == 1 else f"coalesce({', '.join(exprs)})"


def _is_native(t: SqlType) -> bool:
    if t.name == "ARRAY":
        return t.element is not None and _is_native(t.element)
    if t.name == "MAP":
        return t.key == SqlType("STRING") and t.element is not None and _is_native(t.element)
    return t.name in _NATIVE


def from_json_sql(expr: str, t: SqlType, depth: int = 0) -> str:
    """SQL converting the JSON expression ``expr`` to ``t`` (NULL where it does not convert)."""
    if _is_native(t):
        return f"json_transform({expr}, {sql_str(json.dumps(t.duckdb()))})"
    var = f"nbs_j{depth}"
    if t.name == "ARRAY":
        assert t.element is not None
        inner = from_json_sql(var, t.element, depth + 1)
        return f"list_transform(json_transform({expr}, '[\"JSON\"]'), lambda {var}: {inner})"
    if t.name == "MAP":
        assert t.key is not None and t.element is not None
        key = scalar_from_text_sql(f"{var}.key", t.key)
        value = from_json_sql(f"{var}.value", t.element, depth + 1)
        entries = f"map_entries(json_transform({expr}, '\"MAP(VARCHAR, JSON)\"'))"
        return (
            f"map_from_entries(list_transform({entries}, lambda {var}: {{'key': {key}, 'value': {value}}}))"
        )
    if t.name == "STRUCT":
        fields = ", ".join(
            f"{sql_ident(n)} := {from_json_sql(_field_sql(expr, n, depth), ft, depth + 1)}"
            for n, ft in t.fields
        )
        return f"CASE WHEN json_type({expr}) = 'OBJECT' THEN struct_pack({fields}) END"
    return scalar_from_text_sql(f"json_transform({expr}, '\"VARCHAR\"')", t)


def _field_sql(obj: str, name: str, depth: int) -> str:
    """The field ``name`` of the JSON object ``obj``: exact key, else a key whose upper case is ``name``."""
    var = f"nbs_k{depth}"
    exact = f"json_extract({obj}, {sql_str(_path(name))})"
    other = f"list_filter(json_keys({obj}), lambda {var}: upper({var}) = {sql_str(name)})[1]"
    fallback = f"json_extract({obj}, '$.\"' || replace(replace({other}, '\\', '\\\\'), '\"', '\\\"') || '\"')"
    return f"coalesce({exact}, {fallback})"


# -- encoding -----------------------------------------------------------------------------------


def object_json_sql(fields: Sequence[tuple[str, str, SqlType]]) -> str:
    """SQL building a JSON object text from ``(name, sql_expression, type)`` triples."""
    if not fields:
        return "'{}'"
    parts = [f"{sql_str(json.dumps(n) + ':')} || coalesce({to_json_sql(e, t)}, 'null')" for n, e, t in fields]
    return "'{' || " + " || ',' || ".join(parts) + " || '}'"


def to_json_sql(expr: str, t: SqlType, depth: int = 0) -> str:
    """SQL rendering ``expr`` of type ``t`` as JSON text as ksqlDB writes it (NULL for NULL)."""
    var = f"nbs_v{depth}"
    if t.name == "STRING":
        return f"to_json({expr})::VARCHAR"
    if t.name == "DOUBLE":
        text = f"nbs_java_double({expr})"
        return f"CASE WHEN isfinite({expr}) THEN {text} ELSE '\"' || {text} || '\"' END"
    if t.name == "BYTES":
        return f"'\"' || to_base64({expr}) || '\"'"
    if t.name == "ARRAY":
        assert t.element is not None
        inner = f"coalesce({to_json_sql(var, t.element, depth + 1)}, 'null')"
        return f"'[' || array_to_string(list_transform({expr}, lambda {var}: {inner}), ',') || ']'"
    if t.name == "MAP":
        assert t.element is not None
        value = f"coalesce({to_json_sql(f'{var}.value', t.element, depth + 1)}, 'null')"
        pair = f"to_json({var}.key::VARCHAR)::VARCHAR || ':' || {value}"
        return (
            f"'{{' || array_to_string(list_transform(map_entries({expr}), lambda {var}: {pair}), ',') || '}}'"
        )
    if t.name == "STRUCT":
        fields = [(n, f"struct_extract({expr}, {sql_str(n)})", ft) for n, ft in t.fields]
        return f"CASE WHEN {expr} IS NOT NULL THEN {object_json_sql(fields)} END"
    return scalar_text_sql(expr, t)


# -- Python side --------------------------------------------------------------------------------


def dump_json(value: Any) -> str:
    """Compact JSON text of ``value``; a ``Decimal`` is written exactly, with its scale."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump_json(v) for v in value) + "]"
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return json.dumps(base64.b64encode(value).decode())
    return json.dumps(value, ensure_ascii=False)


def apply_type(value: Any, t: SqlType) -> Any:
    """A parsed JSON value converted to the Python form of ``t`` (object keys kept as written)."""
    if value is None:
        return None
    if t.name == "STRUCT" and isinstance(value, dict):
        return {k: apply_type(v, _field_type(t, k)) for k, v in value.items()}
    if t.name == "MAP" and isinstance(value, dict):
        assert t.element is not None
        return {k: apply_type(v, t.element) for k, v in value.items()}
    if t.name == "ARRAY" and isinstance(value, list):
        assert t.element is not None
        return [apply_type(v, t.element) for v in value]
    return _apply_scalar(value, t)


def _field_type(t: SqlType, key: str) -> SqlType:
    for name, ft in t.fields:
        if name == key:
            return ft
    return next((ft for name, ft in t.fields if name == key.upper()), SqlType("NULL"))


def _apply_scalar(value: Any, t: SqlType) -> Any:
    try:
        if t.name == "DECIMAL":
            return decimal.Decimal(str(value)).quantize(decimal.Decimal(1).scaleb(-(t.scale or 0)))
        if t.name == "DOUBLE" and not isinstance(value, bool):
            return float(value)
        if t.name in ("INTEGER", "BIGINT", "TIMESTAMP", "DATE", "TIME") and not isinstance(value, bool):
            return int(value)
        if t.name == "BYTES" and isinstance(value, str):
            return base64.b64decode(value)
    except (ValueError, ArithmeticError, TypeError):
        return value
    return value
