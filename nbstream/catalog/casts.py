"""ksqlDB's CAST rules, and ksqlDB's renderings of values as text, compiled to DuckDB.

Everything here builds sqlglot expressions; nothing runs Python per row. The building block is
:func:`sql`, which fills a DuckDB SQL template (``{0}``, ``{1}`` … stand for argument expressions).

ksqlDB CAST semantics that differ from DuckDB's and are reproduced here:

* a STRING that does not parse gives NULL (ksqlDB logs the record and emits NULL); strings cast to
  INTEGER/BIGINT must be whole numbers (``'1.5'`` is NULL, not 2 as in DuckDB);
* BIGINT to INTEGER wraps around like Java's ``(int)`` narrowing; DOUBLE/DECIMAL to an integer
  truncate toward zero (DuckDB rounds); a DECIMAL that overflows its precision is NULL;
* DOUBLE to STRING is rendered as Java's ``Double.toString`` (``1.0E10``, ``1.0E-5``, ``NaN``);
  TIMESTAMP to STRING is ISO ``yyyy-MM-ddTHH:mm:ss.SSS``; ARRAY is ``[1, 3]``; MAP is ``{k=v}``;
  STRUCT is ``Struct{A=1,B=x}``;
* ARRAY, MAP and STRUCT cast element-wise; STRUCT fields are matched by name (missing ones NULL);
* STRING to ARRAY/MAP/STRUCT and the like raise :class:`SqlTypeError` ("Cast of … is not supported").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import sqlglot
from sqlglot import exp

from nbstream.catalog.types import SqlType
from nbstream.errors import SqlTypeError

_ARG = re.compile(r"\{(\d+)\}")
_ATOMS = (
    exp.Column,
    exp.Literal,
    exp.Func,
    exp.Paren,
    exp.Null,
    exp.Boolean,
    exp.Cast,
    exp.Bracket,
    exp.Dot,
    exp.Identifier,
    exp.Array,
    exp.Struct,
    exp.Placeholder,
    exp.Lambda,
)

#: Java's ``Double.toString`` switches to scientific notation outside [1e-3, 1e7).
_JAVA_DOUBLE = (
    "CASE WHEN {0} IS NULL THEN NULL WHEN isnan({0}) THEN 'NaN' WHEN isinf({0}) AND {0} > 0 THEN 'Infinity' "
    "WHEN isinf({0}) THEN '-Infinity' "
    "WHEN {0} = 0 OR (abs({0}) >= 0.001 AND abs({0}) < 10000000) THEN CAST({0} AS VARCHAR) "
    "ELSE {1} END"
)
# Scientific notation from DuckDB's shortest round-trip digits: {0} mantissa text, {1} exponent,
# {2} the digits without the point, {3} the count of digits before the point, {4} leading zeros.
_JAVA_SCI = (
    "concat(CASE WHEN {5} < 0 THEN '-' ELSE '' END, "
    "substr(trim({2}, '0'), 1, 1), '.', coalesce(nullif(substr(trim({2}, '0'), 2), ''), '0'), "
    "'E', CAST({1} + {3} - 1 - {4} AS VARCHAR))"
)


@functools.lru_cache(maxsize=512)
def _template(text: str) -> exp.Expression:
    parsed = sqlglot.parse_one(_ARG.sub(r"__arg\1", text), read="duckdb")
    assert isinstance(parsed, exp.Expression)
    return parsed


def wrap(arg: exp.Expression) -> exp.Expression:
    """``arg`` in parentheses unless it is atomic (so templates keep their precedence)."""
    return arg if isinstance(arg, _ATOMS) else exp.Paren(this=arg)


def sql(template: str, *args: exp.Expression) -> exp.Expression:
    """The DuckDB SQL ``template`` with each ``{i}`` replaced by a copy of ``args[i]``.

    Lambda parameters inside templates are named ``__x`` and the like so they never capture a
    user's column."""

    def fill(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name.startswith("__arg"):
            return wrap(args[int(node.name[5:])].copy())
        return node

    return _template(text=template).transform(fill)


def lam(body: exp.Expression, *params: str) -> exp.Lambda:
    """A DuckDB lambda ``lambda params: body``."""
    return exp.Lambda(this=body, expressions=[exp.to_identifier(p) for p in params])


def literal_string(value: str) -> exp.Expression:
    """A DuckDB string literal."""
    return exp.Literal.string(value)


def duck_type(t: SqlType) -> exp.DataType:
    """The DuckDB type of ``t`` as a sqlglot DataType."""
    return exp.DataType.build(t.duckdb(), dialect="duckdb")


def typed_cast(expr: exp.Expression, t: SqlType, *, safe: bool = False) -> exp.Expression:
    """A plain DuckDB ``CAST``/``TRY_CAST`` of ``expr`` to ``t``."""
    cls = exp.TryCast if safe else exp.Cast
    return cls(this=expr, to=duck_type(t))


# ---------------------------------------------------------------------------------------------
# Values as text
# ---------------------------------------------------------------------------------------------


def java_double_string(expr: exp.Expression) -> exp.Expression:
    """Java's ``Double.toString`` of a DOUBLE expression (vectorised string arithmetic)."""
    text = sql("CAST(abs({0}) AS VARCHAR)", expr)
    mantissa = sql("split_part({0}, 'e', 1)", text)
    exponent = sql("coalesce(TRY_CAST(split_part({0}, 'e', 2) AS INTEGER), 0)", text)
    digits = sql("replace({0}, '.', '')", mantissa)
    before_point = sql(
        "CASE WHEN strpos({0}, '.') > 0 THEN strpos({0}, '.') - 1 ELSE length({0}) END", mantissa
    )
    leading_zeros = sql("length({0}) - length(ltrim({0}, '0'))", digits)
    sci = sql(_JAVA_SCI, mantissa, exponent, digits, before_point, leading_zeros, expr)
    return sql(_JAVA_DOUBLE, expr, sci)


def _list_to_string(expr: exp.Expression, t: SqlType, depth: int) -> exp.Expression:
    assert t.element is not None
    var = exp.column(f"__e{depth}")
    inner = sql("coalesce({0}, 'null')", to_string(var, t.element, depth + 1))
    body = lam(inner, var.name)
    return sql("'[' || array_to_string(list_transform({0}, {1}), ', ') || ']'", expr, body)


def _map_to_string(expr: exp.Expression, t: SqlType, depth: int) -> exp.Expression:
    assert t.key is not None and t.element is not None
    var = exp.column(f"__e{depth}")
    key = to_string(sql("struct_extract({0}, 'key')", var), t.key, depth + 1)
    value = to_string(sql("struct_extract({0}, 'value')", var), t.element, depth + 1)
    entry = sql("concat({0}, '=', coalesce({1}, 'null'))", key, value)
    body = lam(entry, var.name)
    return sql("'{' || array_to_string(list_transform(map_entries({0}), {1}), ', ') || '}'", expr, body)


def _struct_to_string(expr: exp.Expression, t: SqlType, depth: int) -> exp.Expression:
    parts = [
        sql("{0} || '=' || {1}", literal_string(name), to_string(struct_field(expr, name), ftype, depth + 1))
        for name, ftype in t.fields
    ]
    joined: exp.Expression = exp.Anonymous(this="concat_ws", expressions=[literal_string(","), *parts])
    if not parts:
        joined = literal_string("")
    return sql("CASE WHEN {0} IS NULL THEN NULL ELSE 'Struct{' || {1} || '}' END", expr, joined)


_TO_STRING: dict[str, Callable[[exp.Expression], exp.Expression]] = {
    "STRING": lambda e: e,
    "DOUBLE": java_double_string,
    "TIMESTAMP": lambda e: sql("strftime({0}, '%Y-%m-%dT%H:%M:%S.%g')", e),
    "BYTES": lambda e: sql("to_base64({0})", e),
}


def to_string(expr: exp.Expression, t: SqlType, depth: int = 0) -> exp.Expression:
    """ksqlDB's text rendering of a value of type ``t`` (as ``CAST(x AS STRING)`` gives it)."""
    if t.name == "ARRAY":
        return _list_to_string(expr, t, depth)
    if t.name == "MAP":
        return _map_to_string(expr, t, depth)
    if t.name == "STRUCT":
        return _struct_to_string(expr, t, depth)
    render = _TO_STRING.get(t.name)
    return render(expr) if render else sql("CAST({0} AS VARCHAR)", expr)


def struct_of(fields: list[tuple[str, exp.Expression]]) -> exp.Expression:
    """A DuckDB struct literal ``{'name': value, …}``."""
    return exp.Struct(
        expressions=[exp.PropertyEQ(this=exp.to_identifier(n, quoted=True), expression=v) for n, v in fields]
    )


def struct_field(expr: exp.Expression, name: str) -> exp.Expression:
    """``expr.name`` for a DuckDB STRUCT."""
    return sql("struct_extract({0}, {1})", expr, literal_string(name))


# ---------------------------------------------------------------------------------------------
# CAST
# ---------------------------------------------------------------------------------------------

_INT_RANGE = {"INTEGER": (-2147483648, 2147483647), "BIGINT": (-9223372036854775808, 9223372036854775807)}
_NUMERIC = ("INTEGER", "BIGINT", "DOUBLE", "DECIMAL")
_TEMPORAL = ("TIMESTAMP", "DATE", "TIME")


def _string_to_integer(expr: exp.Expression, target: SqlType) -> exp.Expression:
    trimmed = sql("trim({0})", expr)
    return sql(
        "CASE WHEN regexp_full_match({0}, '[+-]?[0-9]+') THEN {1} END",
        trimmed,
        typed_cast(trimmed, target, safe=True),
    )


def _string_to_boolean(expr: exp.Expression, _target: SqlType) -> exp.Expression:
    return sql(
        "CASE WHEN lower(trim({0})) IN ('true', 't', 'yes', 'y') THEN TRUE "
        "WHEN lower(trim({0})) IN ('false', 'f', 'no', 'n') THEN FALSE END",
        expr,
    )


def _string_to_timestamp(expr: exp.Expression, _target: SqlType) -> exp.Expression:
    return sql(
        "CASE WHEN regexp_matches(trim({0}), '([+-][0-9][0-9]:?[0-9][0-9]|Z)$') "
        "THEN timezone('UTC', TRY_CAST(trim({0}) AS TIMESTAMPTZ)) ELSE TRY_CAST(trim({0}) AS TIMESTAMP) END",
        expr,
    )


def _string_parse(expr: exp.Expression, target: SqlType) -> exp.Expression:
    return typed_cast(sql("trim({0})", expr), target, safe=True)


def _string_to_date(expr: exp.Expression, target: SqlType) -> exp.Expression:
    """ksqlDB reads a date whose day is left out (``1970-01``) as the month's first day."""
    text = sql("trim({0})", expr)
    month = sql("CASE WHEN regexp_matches({0}, '^[0-9][0-9][0-9][0-9]-[0-9][0-9]$') THEN {0} || '-01' ELSE {0} END",
                text)
    return typed_cast(month, target, safe=True)


def _to_integer(expr: exp.Expression, source: SqlType, target: SqlType) -> exp.Expression:
    low, high = _INT_RANGE[target.name]
    if source.name == "BIGINT" and target.name == "INTEGER":  # Java (int) narrowing wraps around
        low32 = sql("({0} & 4294967295)", expr)
        return sql("CAST(CASE WHEN {0} >= 2147483648 THEN {0} - 4294967296 ELSE {0} END AS INTEGER)", low32)
    if source.name in ("DOUBLE", "DECIMAL"):  # truncate toward zero, saturate like Java
        clamped = sql(f"least(greatest(trunc({{0}}), {low}), {high})", expr)
        if source.name == "DOUBLE":
            clamped = sql("CASE WHEN isnan({0}) THEN 0 ELSE {1} END", expr, clamped)
        return typed_cast(clamped, target)
    return typed_cast(expr, target)


def _cast_array(expr: exp.Expression, source: SqlType, target: SqlType, depth: int) -> exp.Expression:
    assert source.element is not None and target.element is not None
    var = exp.column(f"__c{depth}")
    body = lam(_cast(var, source.element, target.element, depth + 1), var.name)
    return typed_cast(sql("list_transform({0}, {1})", expr, body), target)


def _cast_map(expr: exp.Expression, source: SqlType, target: SqlType, depth: int) -> exp.Expression:
    assert source.key and source.element and target.key and target.element
    var = exp.column(f"__c{depth}")
    key = _cast(sql("struct_extract({0}, 'key')", var), source.key, target.key, depth + 1)
    value = _cast(sql("struct_extract({0}, 'value')", var), source.element, target.element, depth + 1)
    entry = sql("{'key': {0}, 'value': {1}}", key, value)
    body = lam(entry, var.name)
    return typed_cast(sql("map_from_entries(list_transform(map_entries({0}), {1}))", expr, body), target)


def _cast_struct(expr: exp.Expression, source: SqlType, target: SqlType, depth: int) -> exp.Expression:
    fields: list[tuple[str, exp.Expression]] = []
    for name, ftype in target.fields:
        match = next((n for n, _ in source.fields if n == name), None) or next(
            (n for n, _ in source.fields if n.upper() == name.upper()), None
        )
        if match is None:
            value: exp.Expression = typed_cast(exp.Null(), ftype)
        else:
            value = _cast(struct_field(expr, match), source.field(match) or ftype, ftype, depth + 1)
        fields.append((name, value))
    return sql("CASE WHEN {0} IS NULL THEN NULL ELSE {1} END", expr, typed_cast(struct_of(fields), target))


_FROM_STRING: dict[str, Callable[[exp.Expression, SqlType], exp.Expression]] = {
    "INTEGER": _string_to_integer,
    "BIGINT": _string_to_integer,
    "DOUBLE": _string_parse,
    "DECIMAL": _string_parse,
    "BOOLEAN": _string_to_boolean,
    "TIMESTAMP": _string_to_timestamp,
    "DATE": _string_to_date,
    "TIME": _string_parse,
}

#: Casts between temporal types that DuckDB's own CAST does as ksqlDB does.
_TEMPORAL_CASTS = {("TIMESTAMP", "DATE"), ("TIMESTAMP", "TIME"), ("DATE", "TIMESTAMP")}


def _cast(expr: exp.Expression, source: SqlType, target: SqlType, depth: int) -> exp.Expression:
    if source == target:
        return expr
    if source.name == "NULL":
        return typed_cast(expr, target)
    if target.name == "STRING":
        return to_string(expr, source, depth)
    if source.name == "STRING" and target.name in _FROM_STRING:
        return _FROM_STRING[target.name](expr, target)
    if source.name in _NUMERIC and target.name in _INT_RANGE:
        return _to_integer(expr, source, target)
    if source.name in _NUMERIC and target.name == "DOUBLE":
        return typed_cast(expr, target)
    if source.name in _NUMERIC and target.name == "DECIMAL":
        return typed_cast(expr, target, safe=True)
    if (source.name, target.name) in _TEMPORAL_CASTS:
        return typed_cast(expr, target)
    if source.name == target.name == "ARRAY":
        return _cast_array(expr, source, target, depth)
    if source.name == target.name == "MAP":
        return _cast_map(expr, source, target, depth)
    if source.name == target.name == "STRUCT":
        return _cast_struct(expr, source, target, depth)
    raise SqlTypeError(f"Cast of {source} to {target} is not supported")


def compile_cast(expr: exp.Expression, source: SqlType, target: SqlType) -> exp.Expression:
    """``CAST(expr AS target)`` with ksqlDB semantics; ``expr`` is DuckDB-valid and of ``source``.

    Raises :class:`SqlTypeError` for casts ksqlDB does not support."""
    return _cast(expr, source, target, 0)


def json_value(expr: exp.Expression, t: SqlType, depth: int = 0) -> exp.Expression:
    """``expr`` rebuilt so that DuckDB's ``to_json`` renders it as ksqlDB's JSON serializer does
    (TIMESTAMP as ISO text with milliseconds, DATE/TIME as ISO text, BYTES as base64)."""
    if not _needs_json_rewrite(t):
        return expr
    if t.name in ("TIMESTAMP", "BYTES"):
        return to_string(expr, t)
    if t.name in ("DATE", "TIME"):
        return sql("CAST({0} AS VARCHAR)", expr)
    var = exp.column(f"__j{depth}")
    if t.name == "ARRAY":
        assert t.element is not None
        body = lam(json_value(var, t.element, depth + 1), var.name)
        return sql("list_transform({0}, {1})", expr, body)
    if t.name == "MAP":
        assert t.element is not None
        value = json_value(sql("struct_extract({0}, 'value')", var), t.element, depth + 1)
        entry = sql("{'key': struct_extract({0}, 'key'), 'value': {1}}", var, value)
        body = lam(entry, var.name)
        return sql("map_from_entries(list_transform(map_entries({0}), {1}))", expr, body)
    packed = struct_of([(n, json_value(struct_field(expr, n), ft, depth + 1)) for n, ft in t.fields])
    return sql("CASE WHEN {0} IS NULL THEN NULL ELSE {1} END", expr, packed)


def _needs_json_rewrite(t: SqlType) -> bool:
    if t.name in ("TIMESTAMP", "BYTES", "DATE", "TIME"):
        return True
    children = [c for c in (t.element, t.key) if c is not None] + [ft for _, ft in t.fields]
    return any(_needs_json_rewrite(c) for c in children)
