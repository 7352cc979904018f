"""ksqlDB's ``JSON`` format, decoded and encoded by DuckDB SQL.

Decoding follows ksqlDB's ``KsqlJsonDeserializer``: an object's fields match column names exactly
first, then by the upper-cased JSON key (so unquoted, upper-case column names match any spelling
and quoted names only their own), per record, so decoding needs no pass over the batch first.

Encoding builds the JSON text directly (DuckDB's ``to_json`` would drop a DECIMAL's scale and
render DOUBLE ``1.0`` as ``1``): DOUBLE as Java's ``Double.toString``, DECIMAL with its scale,
TIMESTAMP as epoch ms, DATE as epoch days, TIME as ms of the day, BYTES as base64.
"""

from __future__ import annotations

import base64
import decimal
import json
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from nbstream.catalog.schema import Column
from nbstream.catalog.types import SqlType
from nbstream.formats.base import (
    Decoded,
    Layer,
    check_key_maps,
    check_wrap,
    let_name,
    scalar_from_text_sql,
    scalar_text_sql,
    sql_ident,
    sql_str,
)


class JsonFormat:
    """The ``JSON`` format (schema-less JSON; no schema registry)."""

    name = "JSON"

    def check_columns(
        self, columns: Sequence[Column], *, is_key: bool, wrap_single_value: bool | None
    ) -> None:
        check_wrap(columns, wrap_single_value)
        if is_key:
            check_key_maps(columns)

    def decode_sql(
        self, blob: str, columns: Sequence[Column], *, wrap_single_value: bool
    ) -> Decoded:
        # Two paths. The fast path reads each column's field by its exact name in one parse of the
        # record (json_extract with a list of paths) and converts values of the column's natural
        # JSON kind (a number for numeric types, a string for STRING, true/false for BOOLEAN) as the
        # slow path would: where it yields a value, that value is exact (an exact key wins over
        # other spellings in ksqlDB). A record takes the slow path unless every field is present and
        # converts or is JSON null (``ok``): invalid JSON, not an object, a field absent or spelled
        # otherwise, a field to coerce or in error. Every value used more than once is a let, so
        # DuckDB computes it once per record; the slow path's lets are CASEs evaluated only where
        # the record is not ok. The SQL is small too: DuckDB plans every micro-batch, and planning
        # grows with the size of the expressions.
        name = partial(let_name, blob)
        text, n = name("text"), len(columns)
        layers: list[Layer] = [((text, f"TRY(decode({blob}))"),)]
        obj = wrap_single_value or n != 1
        exact = [name(f"exact{i}") for i in range(1, n + 1)]
        if obj:
            paths, fields = ", ".join(sql_str(_path(c.name)) for c in columns), name("fields")
            layers.append(((fields, f"TRY(json_extract({text}, [{paths}]))"),))  # NULL: not JSON
            layers.append(tuple((e, f"{fields}[{i}]") for i, e in enumerate(exact, 1)))  # NULL: absent
        else:
            layers.append(((exact[0], f"TRY(json_extract({text}, '$'))"),))
        # As VARCHAR: a cast from JSON would convert like json_transform (a string to a number).
        fast = [name(f"fast{i}") for i in range(1, n + 1)]
        layers.append(tuple((f, _fast_sql(f"{e}::VARCHAR", c.type))
                            for f, e, c in zip(fast, exact, columns, strict=True)))
        ok = name("ok")
        oks = [f"greatest({f} IS NOT NULL, {e}::VARCHAR = 'null')" for f, e in zip(fast, exact, strict=True)]
        layers.append(((ok, f"coalesce({_least(oks)}, false)"),))
        slow = _slow_decode(blob, name, exact, columns, obj)
        # A fast value is exact wherever it is not NULL, whatever the other fields hold.
        typed = tuple(f"coalesce({f}, {s})" for f, s in zip(fast, slow.columns, strict=True))
        error = f"CASE WHEN {ok} THEN false ELSE {slow.error} END"
        message = f"CASE WHEN {ok} THEN NULL ELSE {slow.error_message} END"
        # The fast path alone: every record that is ok, and every null record (all columns NULL).
        fast_path = Decoded(tuple(f"CAST({f} AS {c.type.duckdb()})" for f, c in zip(fast, columns, strict=True)),
                            f"(NOT {ok} AND {blob} IS NOT NULL)", "'not decoded on the fast path'",
                            tuple(layers))
        return Decoded(typed, error, message, (*layers, *slow.lets), fast_path)

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


def _slow_decode(blob: str, name: Callable[[str], str], exact: list[str], columns: Sequence[Column],
                 obj: bool) -> Decoded:
    """The columns, error and message of records decoded like ksqlDB's KsqlJsonDeserializer, as
    lets after those of :meth:`JsonFormat.decode_sql` (``name``, its lets: ``text``, the record's
    text, NULL if not UTF-8; ``ok``, whether the fast path decoded the record; ``exact``, each
    column's field read by its exact name), computed only where the record is not ok."""
    text, ok = name("text"), name("ok")
    valid, shape = name("valid"), name("shape")
    checks = [(valid, f"CASE WHEN {ok} THEN true ELSE coalesce(json_valid({text}), false) END")]
    if obj:
        is_object = f"starts_with(ltrim({text}, ' \t\n\r'), '{{')"
        checks.append((shape, f"CASE WHEN {ok} THEN true ELSE coalesce({is_object}, false) END"))
    layers: list[Layer] = [tuple(checks)]
    raw = exact
    if obj:
        raw = [name(f"raw{i}") for i in range(1, len(columns) + 1)]
        layers.extend(_object_fields(name, raw, exact, columns))
    slow = [name(f"slow{i}") for i in range(1, len(columns) + 1)]
    layers.append(tuple((s, f"CASE WHEN {ok} THEN NULL ELSE {from_json_sql(r, c.type)} END")
                        for s, r, c in zip(slow, raw, columns, strict=True)))
    bad = [name(f"bad{i}") for i in range(1, len(columns) + 1)]
    layers.append(tuple((b, f"CASE WHEN {ok} THEN false ELSE {_bad_sql(r, s, c.type)} END")
                        for b, r, s, c in zip(bad, raw, slow, columns, strict=True)))
    shape_ok = shape if obj else "true"
    failed = f"greatest(NOT {valid}, NOT {shape_ok}, {', '.join(bad)})"
    error = f"(CASE WHEN {failed} THEN {blob} IS NOT NULL ELSE false END)"
    whens = [
        f"WHEN NOT {valid} THEN 'Invalid JSON or UTF-8 text'",
        f"WHEN NOT {shape_ok} THEN 'Can''t convert type. sourceType: ' || {_node_sql(text)}"
        " || ', requiredType: STRUCT'",
    ]
    messages = [f"CASE WHEN {b} THEN {_error_message_sql(r, c)} END" for b, r, c in zip(bad, raw, columns, strict=True)]
    return Decoded(tuple(slow), error, f"CASE {' '.join(whens)} ELSE {_coalesce(messages)} END", tuple(layers))


def _object_fields(name: Callable[[str], str], raw: list[str], exact: list[str],
                   columns: Sequence[Column]) -> list[Layer]:
    """Lets binding ``raw`` to each column's field of the record, an object (NULL when not): the
    ``exact`` one, else, read only where some field is not exact, one spelled otherwise."""
    text, valid, shape, entries = name("text"), name("valid"), name("shape"), name("entries")
    all_exact = _least([f"{e} IS NOT NULL" for e in exact])
    read = f"map_entries(json_transform({text}, '\"MAP(VARCHAR, JSON)\"'))"
    return [((entries, f"CASE WHEN {valid} AND {shape} AND NOT {all_exact} THEN {read} END"),),
            tuple((r, _object_field_sql(entries, e, c.name)) for r, e, c in zip(raw, exact, columns, strict=True))]


def _object_field_sql(entries: str, exact: str, name: str) -> str:
    """The JSON text of the field ``name`` of an object, matched like ksqlDB: the exact key
    (``exact``, its value read by the fast path), else the last of the object's ``entries`` whose
    key's upper case is ``name``."""
    var = "nbs_k"
    other = f"list_filter({entries}, lambda {var}: upper({var}.key) = {sql_str(name)})[-1].value"
    return f"CASE WHEN {exact} IS NOT NULL THEN {exact} ELSE {other} END"


def _fast_sql(raw: str, t: SqlType) -> str:
    """SQL converting the exact field text ``raw`` like :func:`from_json_sql` where the field holds
    a JSON value of the type's natural kind (number, string, boolean), else NULL."""
    name = t.name
    # A string does not cast (its quote), nor 'true' or 'null'. A fraction takes the slow path
    # (the cast would round where Jackson truncates); yyjson writes a '.' in every non-integral
    # number but tiny ones such as 1e-7, which round and truncate to 0 alike.
    if name in ("INTEGER", "BIGINT"):
        return f"CASE WHEN NOT contains({raw}, '.') THEN TRY_CAST({raw} AS {t.duckdb()}) END"
    if name in ("DOUBLE", "DECIMAL"):
        return f"TRY_CAST({raw} AS {t.duckdb()})"
    if name == "BOOLEAN":
        return f"CASE {raw} WHEN 'true' THEN true WHEN 'false' THEN false END"
    if name == "STRING":
        return f"CASE WHEN starts_with({raw}, '\"') THEN json_extract_string({raw}, '$') END"
    if name == "BYTES":  # base64 text
        text = scalar_from_text_sql(f"json_extract_string({raw}, '$')", t)
        return f"CASE WHEN starts_with({raw}, '\"') THEN {text} END"
    if name in ("TIMESTAMP", "DATE", "TIME"):  # a number
        return f"CASE WHEN starts_with({raw}, '\"') OR {raw} = 'null' THEN NULL ELSE {scalar_from_text_sql(raw, t)} END"
    return f"NULL::{t.duckdb()}"  # nested values take the slow path (their SQL is large)


def _path(key: str) -> str:
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _coalesce(exprs: list[str]) -> str:
    return exprs[0] if len(exprs) == 1 else f"coalesce({', '.join(exprs)})"


def _least(exprs: list[str]) -> str:
    return exprs[0] if len(exprs) == 1 else f"least({', '.join(exprs)})"


def from_json_sql(expr: str, t: SqlType, depth: int = 0) -> str:
    """SQL converting the JSON text ``expr`` to ``t`` like ksqlDB's ``KsqlJsonDeserializer``.

    NULL where the value is JSON ``null``, absent, or does not convert (see :func:`_bad_sql`).
    Scalars dispatch on the text's first character instead of ``json_type`` (which re-parses):
    JSON numbers convert to numeric types (truncated toward zero for INT/BIGINT), strings are
    parsed as Java does (``Integer.parseInt``, ``Double.parseDouble``, ``new BigDecimal``), a
    BOOLEAN accepts only ``true``/``false``, and a STRING takes any value's text (objects as
    compact JSON, arrays as Java's ``List.toString``)."""
    var = f"nbs_j{depth}"
    if t.name == "ARRAY":
        assert t.element is not None
        inner = from_json_sql(var, t.element, depth + 1)
        items = f"json_transform({expr}, '[\"JSON\"]')"
        return f"CASE WHEN starts_with({expr}, '[') THEN list_transform({items}, lambda {var}: {inner}) END"
    if t.name == "MAP":
        assert t.key is not None and t.element is not None
        key = scalar_from_text_sql(f"{var}.key", t.key)
        value = from_json_sql(f"{var}.value", t.element, depth + 1)
        entries = f"map_entries(json_transform({expr}, '\"MAP(VARCHAR, JSON)\"'))"
        pairs = f"list_transform({entries}, lambda {var}: {{'key': {key}, 'value': {value}}})"
        return f"CASE WHEN starts_with({expr}, '{{') THEN map_from_entries({pairs}) END"
    if t.name == "STRUCT":
        obj, field = f"nbs_o{depth}", f"nbs_f{depth}"
        fields = ", ".join(
            f"{sql_ident(n)} := {_let(_member_sql(obj, n, depth), field, from_json_sql(field, ft, depth + 1))}"
            for n, ft in t.fields
        )
        return _let(_object_map_sql(expr), obj, f"CASE WHEN {obj} IS NOT NULL THEN struct_pack({fields}) END")
    return _scalar_sql(f"({expr})::VARCHAR", t)


def _scalar_sql(c: str, t: SqlType) -> str:
    """SQL converting the JSON text ``c`` of a scalar field to the non-nested ``t``."""
    string = f"json_extract_string({c}, '$')"
    name = t.name
    if name == "BOOLEAN":
        return f"CASE {c} WHEN 'true' THEN true WHEN 'false' THEN false END"
    if name == "STRING":
        items = f"list_transform(json_transform({c}, '[\"VARCHAR\"]'), lambda nbs_s: coalesce(nbs_s, 'null'))"
        return (
            f"CASE WHEN starts_with({c}, '\"') THEN {string} WHEN {c} = 'null' THEN NULL"
            f" WHEN starts_with({c}, '[') THEN concat('[', array_to_string({items}, ', '), ']') ELSE {c} END"
        )
    number = _number_sql(c, t)
    if number is None:  # TIMESTAMP, DATE, TIME, BYTES: from a string or a number's text
        text = f"CASE WHEN starts_with({c}, '\"') THEN {string} WHEN {c} <> 'null' THEN {c} END"
        return scalar_from_text_sql(text, t)
    return f"CASE WHEN starts_with({c}, '\"') THEN {scalar_from_text_sql(string, t)} ELSE {number} END"


def _number_sql(c: str, t: SqlType) -> str | None:
    """SQL converting the text ``c`` of a JSON number to the numeric ``t`` (NULL for non-numbers)."""
    if t.name in ("INTEGER", "BIGINT"):  # Jackson's intValue/asLong truncate a fraction
        # yyjson writes every non-integral number with a '.' or an exponent
        truncated = f"TRY_CAST(trunc(TRY_CAST({c} AS DOUBLE)) AS {t.duckdb()})"
        return (
            f"CASE WHEN contains({c}, '.') THEN {truncated} WHEN contains({c}, 'e') THEN {truncated}"
            f" ELSE TRY_CAST({c} AS {t.duckdb()}) END"
        )
    if t.name in ("DOUBLE", "DECIMAL"):  # 'true', 'null', '[..]', '{..}' do not cast
        return f"TRY_CAST({c} AS {t.duckdb()})"
    return None


def _bad_sql(raw: str, typed: str, t: SqlType, depth: int = 0) -> str:
    """SQL true when the JSON text ``raw`` is present and not ``null`` but does not convert to
    ``t`` — also when an element, value or field nested inside it does not (as in ksqlDB).
    ``typed`` comes first, where DuckDB shares it with the column's own expression."""
    absent = f"WHEN {raw} IS NULL THEN false WHEN ({raw})::VARCHAR = 'null' THEN false"
    var = f"nbs_e{depth}"
    nested = None
    if t.name == "ARRAY" and t.element is not None:
        check = _bad_sql(var, from_json_sql(var, t.element, depth + 1), t.element, depth + 1)
        nested = f"list_bool_or(list_transform({typed_items(raw)}, lambda {var}: {check}))"
    elif t.name == "MAP" and t.element is not None:
        value = f"{var}.value"
        check = _bad_sql(value, from_json_sql(value, t.element, depth + 1), t.element, depth + 1)
        entries = f"map_entries(json_transform({raw}, '\"MAP(VARCHAR, JSON)\"'))"
        nested = f"list_bool_or(list_transform({entries}, lambda {var}: {check}))"
    elif t.name == "STRUCT" and t.fields:
        obj, field = f"nbs_p{depth}", f"nbs_g{depth}"
        checks = [
            _let(_member_sql(obj, n, depth), field, _bad_sql(field, from_json_sql(field, ft, depth + 1), ft, depth + 1))
            for n, ft in t.fields
        ]
        nested = _let(_object_map_sql(raw), obj, f"greatest({', '.join(checks)})")
    if nested is None:
        return f"(CASE WHEN {typed} IS NOT NULL THEN false {absent} ELSE true END)"
    return f"(CASE WHEN {typed} IS NOT NULL THEN coalesce({nested}, false) {absent} ELSE true END)"


def typed_items(raw: str) -> str:
    """SQL listing the elements of the JSON array text ``raw`` as JSON values."""
    return f"json_transform({raw}, '[\"JSON\"]')"


def _node_sql(c: str) -> str:
    """SQL naming the Jackson node class ksqlDB's errors report for the JSON text ``c``."""
    return (
        f"CASE left({c}, 1) WHEN '\"' THEN 'TextNode' WHEN '[' THEN 'ArrayNode' WHEN '{{' THEN 'ObjectNode'"
        f" WHEN 't' THEN 'BooleanNode' WHEN 'f' THEN 'BooleanNode' WHEN 'n' THEN 'NullNode'"
        f" ELSE (CASE WHEN regexp_matches({c}, '[.eE]') THEN 'DecimalNode' ELSE 'LongNode' END) END"
    )


def _error_message_sql(raw: str, col: Column) -> str:
    """SQL of ksqlDB's message for the column ``col`` whose JSON text ``raw`` does not convert."""
    path = sql_str(f", path: $.{col.name}")
    coerce = sql_str(f"Can't coerce string to type. targetType: {col.type.name}")
    convert = sql_str(f", requiredType: {col.type}")
    text = f"({raw})::VARCHAR"
    parses_strings = col.type.name in ("INTEGER", "BIGINT", "DOUBLE")  # those parse strings
    convert_message = f"'Can''t convert type. sourceType: ' || {_node_sql(text)} || {convert}"
    if parses_strings:
        return f"(CASE WHEN starts_with({text}, '\"') THEN {coerce} ELSE {convert_message} END) || {path}"
    return f"{convert_message} || {path}"


def _let(value: str, var: str, body: str) -> str:
    """SQL evaluating ``body`` with ``var`` bound to ``value``, so that ``value`` is written once
    (nested conversions would otherwise repeat their input's text at every level)."""
    return f"list_transform([{value}], lambda {var}: {body})[1]"


def _object_map_sql(expr: str) -> str:
    """SQL reading the JSON object text ``expr`` as a ``MAP(VARCHAR, JSON)`` (NULL if no object)."""
    return f"CASE WHEN starts_with(({expr})::VARCHAR, '{{') THEN json_transform({expr}, '\"MAP(VARCHAR, JSON)\"') END"


def _member_sql(obj: str, name: str, depth: int) -> str:
    """The field ``name`` of the object map ``obj``: exact key, else a key whose upper case is ``name``."""
    var = f"nbs_u{depth}"
    other = f"list_filter(map_entries({obj}), lambda {var}: upper({var}.key) = {sql_str(name)})[-1].value"
    return f"coalesce(map_extract_value({obj}, {sql_str(name)}), {other})"


# -- encoding -----------------------------------------------------------------------------------


def object_json_sql(fields: Sequence[tuple[str, str, SqlType]]) -> str:
    """SQL building a JSON object text from ``(name, sql_expression, type)`` triples.

    One ``concat`` call (a single allocation per row, NULL arguments skipped) rather than a chain
    of ``||``, which copies the growing prefix once per field."""
    if not fields:
        return "'{}'"
    parts: list[str] = []
    for i, (name, expr, t) in enumerate(fields):
        parts.append(sql_str(("{" if i == 0 else ",") + json.dumps(name) + ":"))
        parts.append(f"coalesce({to_json_sql(expr, t)}, 'null')")
    return f"concat({', '.join(parts)}, '}}')"


def to_json_sql(expr: str, t: SqlType, depth: int = 0) -> str:
    """SQL rendering ``expr`` of type ``t`` as JSON text as ksqlDB writes it (NULL for NULL)."""
    var = f"nbs_v{depth}"
    if t.name in ("STRING", "INTEGER", "BIGINT"):
        return f"to_json({expr})::VARCHAR"
    if t.name == "DOUBLE":
        return f"nbs_json_double({expr})"
    if t.name == "BYTES":
        return f"CASE WHEN {expr} IS NOT NULL THEN concat('\"', to_base64({expr}), '\"') END"
    if t.name == "ARRAY":
        assert t.element is not None
        inner = f"coalesce({to_json_sql(var, t.element, depth + 1)}, 'null')"
        return (f"CASE WHEN {expr} IS NOT NULL THEN "
                f"concat('[', array_to_string(list_transform({expr}, lambda {var}: {inner}), ','), ']') END")
    if t.name == "MAP":
        assert t.element is not None
        value = f"coalesce({to_json_sql(f'{var}.value', t.element, depth + 1)}, 'null')"
        pair = f"concat(to_json({var}.key::VARCHAR)::VARCHAR, ':', {value})"
        entries = f"list_transform(map_entries({expr}), lambda {var}: {pair})"
        return f"CASE WHEN {expr} IS NOT NULL THEN concat('{{', array_to_string({entries}, ','), '}}') END"
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
        if t.name == "DOUBLE" and not isinstance(value, bool | str):  # "NaN"/"Infinity" stay as written
            return float(value)
        if t.name in ("INTEGER", "BIGINT", "TIMESTAMP", "DATE", "TIME") and not isinstance(value, bool):
            return int(value)
        if t.name == "BYTES" and isinstance(value, str):
            return base64.b64decode(value)
    except (ValueError, ArithmeticError, TypeError):
        return value
    return value
