"""ksqlDB's scalar function library, compiled to DuckDB expressions.

The compiler compiles the arguments of a ksqlDB function call to DuckDB-valid sqlglot expressions,
then calls :func:`compile_function` with the upper-case name. The result is one DuckDB expression
with ksqlDB's semantics: it runs vectorised inside DuckDB (no Python per row; the few helpers
DuckDB lacks are Arrow UDFs registered by :func:`register_udfs`).

Conventions that hold for every function here (ksqlDB's, where they differ from DuckDB's):

* null in, null out, unless the function says otherwise (CONCAT and CONCAT_WS skip nulls,
  GREATEST/LEAST ignore them, TO_JSON_STRING renders ``'null'``, ARRAY_CONTAINS is false);
* string positions are 1-based and negative positions count from the end (SUBSTRING, INSTR);
* patterns are Java regular expressions; DuckDB evaluates them with RE2, so back-references and
  look-around are not available (``$1`` in a REGEXP_REPLACE replacement is translated to ``\\1``);
* date/time patterns are Java ``DateTimeFormatter`` patterns, translated to strftime/strptime
  when the pattern is a literal (they must be);
* TIMESTAMP values compute as DuckDB ``TIMESTAMP`` (UTC wall clock); functions that take or give
  epoch milliseconds (STRINGTOTIMESTAMP, TIMESTAMPTOSTRING, UNIX_TIMESTAMP) use BIGINT.

Each function is declared once in the registry with its parameter families, return type and
description; :func:`describe_function` and :func:`function_names` read the same registry.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import duckdb
from sqlglot import exp

from nbstream.catalog import user_functions
from nbstream.catalog.casts import (
    compile_cast,
    json_value,
    lam,
    literal_string,
    sql,
    to_string,
    typed_cast,
)
from nbstream.catalog.pattern_udfs import PatternUdf
from nbstream.catalog.types import SqlType, parse_type
from nbstream.catalog.udfs import FROM_BYTES, SPLIT_BYTES, add_udf, from_bytes_udf, register_udfs
from nbstream.errors import SqlTypeError, UnknownNameError, did_you_mean

__all__ = [
    "DuckDBTypeOracle",
    "TypeOracle",
    "compile_cast",
    "compile_function",
    "describe_function",
    "function_names",
    "is_aggregate",
    "is_builtin",
    "is_table_function",
    "java_format_to_strptime",
    "java_pattern",
    "kind_of",
    "register_udfs",
    "takes_unit",
]


# ---------------------------------------------------------------------------------------------
# Types of compiled expressions
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class TypeOracle(Protocol):
    """Knows the ksqlDB type of an already-compiled DuckDB expression."""

    def type_of(self, expr: exp.Expression) -> SqlType: ...


class DuckDBTypeOracle:
    """A :class:`TypeOracle` that asks DuckDB: ``DESCRIBE SELECT <expr> FROM (<relation_sql>)``.

    ``relation_sql`` is the relation the expressions' columns come from (``None``: no columns).
    Answers are cached per expression text."""

    def __init__(self, con: duckdb.DuckDBPyConnection, relation_sql: str | None = None) -> None:
        self.con = con
        self.relation_sql = relation_sql
        self._cache: dict[str, SqlType] = {}

    def type_of(self, expr: exp.Expression) -> SqlType:
        text = expr.sql("duckdb")
        if text not in self._cache:
            source = f" FROM ({self.relation_sql}) AS __rel" if self.relation_sql else ""
            row = self.con.execute(f"DESCRIBE SELECT {text} AS __v{source}").fetchone()
            assert row is not None
            self._cache[text] = parse_type(str(row[1]), keep_case=True)
        return self._cache[text]


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

#: Parameter families: the ksqlDB type names each accepts (None: any type). NULL fits every family.
_FAMILIES: dict[str, frozenset[str] | None] = {
    "ANY": None,
    "STRING": frozenset({"STRING"}),
    "BYTES": frozenset({"BYTES"}),
    "STRING|BYTES": frozenset({"STRING", "BYTES"}),
    "INT": frozenset({"INTEGER", "BIGINT"}),
    "NUMBER": frozenset({"INTEGER", "BIGINT", "DOUBLE", "DECIMAL"}),
    "BOOLEAN": frozenset({"BOOLEAN"}),
    "ARRAY": frozenset({"ARRAY"}),
    "MAP": frozenset({"MAP"}),
    "ARRAY|MAP": frozenset({"ARRAY", "MAP"}),
    "TIMESTAMP": frozenset({"TIMESTAMP"}),
    "DATE": frozenset({"DATE"}),
    "TIME": frozenset({"TIME"}),
    "LAMBDA": frozenset(),  # an exp.Lambda; not typed
    "UNIT": frozenset(),  # a time unit keyword (DAYS, HOURS, …); not typed
}
_UNTYPED = ("LAMBDA", "UNIT")
_LAMBDA_TYPE = SqlType("LAMBDA")


@dataclass(frozen=True)
class Param:
    """One parameter: its family, and whether it may be left out or repeated."""

    family: str
    optional: bool = False
    variadic: bool = False

    def __str__(self) -> str:
        text = self.family + ("..." if self.variadic else "")
        return f"[{text}]" if self.optional else text


def _params(spec: str) -> tuple[Param, ...]:
    """``"STRING, INT?, ANY..."`` → parameters (``?`` optional, ``...`` variadic)."""
    result = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        variadic = part.endswith("...")
        part = part.removesuffix("...")
        optional = part.endswith("?")
        family = part.removesuffix("?")
        if family not in _FAMILIES:
            raise ValueError(f"unknown parameter family {family!r}")
        result.append(Param(family, optional, variadic))
    return tuple(result)


@dataclass(frozen=True)
class Call:
    """A call being compiled: the function's name, its compiled arguments and their types."""

    name: str
    args: tuple[exp.Expression, ...]
    types: tuple[SqlType, ...]

    def __getitem__(self, i: int) -> exp.Expression:
        return self.args[i]

    def fill(self, template: str) -> exp.Expression:
        """``template`` with ``{i}`` standing for argument ``i``."""
        return sql(template, *self.args)

    def constant(self, i: int) -> object:
        """The value of argument ``i`` if it is a literal; raises SqlTypeError otherwise."""
        value = _constant(self.args[i])
        if value is _NOT_CONSTANT:
            raise SqlTypeError(
                f"{self.name}: argument {i + 1} must be a literal, got `{self.args[i].sql('duckdb')}`"
            )
        return value

    def string_constant(self, i: int) -> str:
        value = self.constant(i)
        if not isinstance(value, str):
            raise SqlTypeError(f"{self.name}: argument {i + 1} must be a string literal")
        return value


Builder = Callable[[Call], exp.Expression]


@dataclass(frozen=True)
class FunctionDef:
    """A function as SHOW FUNCTIONS / DESCRIBE FUNCTION list it, and how to compile it."""

    name: str
    kind: str  # scalar | aggregate | table
    params: tuple[Param, ...] = ()
    returns: str = ""
    description: str = ""
    build: Builder | None = field(default=None, compare=False)

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join(str(p) for p in self.params)})" + (
            f" -> {self.returns}" if self.returns else ""
        )

    def arity_ok(self, n: int) -> bool:
        required = sum(1 for p in self.params if not p.optional)
        variadic = any(p.variadic for p in self.params)
        return n >= required and (variadic or n <= len(self.params))

    def param_for(self, i: int) -> Param:
        return self.params[min(i, len(self.params) - 1)]


_REGISTRY: dict[str, FunctionDef] = {}


def _register(name: str, params: str, returns: str, description: str, build: Builder) -> None:
    _REGISTRY[name] = FunctionDef(name, "scalar", _params(params), returns, description, build)


def scalar(name: str, params: str, returns: str, description: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``build`` as the compiler of scalar function ``name``."""

    def decorate(build: Builder) -> Builder:
        _register(name, params, returns, description, build)
        return build

    return decorate


def _templated(templates: str | dict[int, str]) -> Builder:
    if isinstance(templates, str):
        return lambda call: call.fill(templates)
    return lambda call: call.fill(templates[len(call.args)])


_NOT_CONSTANT = object()


def _constant(arg: exp.Expression) -> object:
    if isinstance(arg, exp.Paren):
        return _constant(arg.this)
    if isinstance(arg, exp.Null):
        return None
    if isinstance(arg, exp.Boolean):
        return arg.this
    if isinstance(arg, exp.Neg):
        inner = _constant(arg.this)
        return -inner if isinstance(inner, (int, float)) else _NOT_CONSTANT
    if isinstance(arg, exp.Literal):
        if arg.is_string:
            return arg.this
        return int(arg.this) if re.fullmatch(r"\d+", arg.this) else float(arg.this)
    if isinstance(arg, exp.Cast) and isinstance(arg.this, (exp.Literal, exp.Null)):
        return _constant(arg.this)
    return _NOT_CONSTANT


# ---------------------------------------------------------------------------------------------
# Simple functions: one DuckDB template each (by arity when there are optional parameters)
# ---------------------------------------------------------------------------------------------

_TEMPLATES: list[tuple[str, str, str, str | dict[int, str], str]] = [
    # strings
    ("LCASE", "STRING", "STRING", "lower({0})", "Converts a string to lower case."),
    ("UCASE", "STRING", "STRING", "upper({0})", "Converts a string to upper case."),
    # Java's String.trim: every character up to U+0020 (tabs, newlines, control characters)
    ("TRIM", "STRING", "STRING", "regexp_replace({0}, '^[\\x00-\\x20]+|[\\x00-\\x20]+$', '', 'g')",
     "Removes leading and trailing whitespace and control characters."),
    ("MD5", "STRING", "STRING", "md5({0})", "The MD5 hash of a string (its UTF-8 bytes), as 32 hex digits."),
    ("LTRIM", "STRING", "STRING", "ltrim({0})", "Removes leading whitespace."),
    ("RTRIM", "STRING", "STRING", "rtrim({0})", "Removes trailing whitespace."),
    (
        "INITCAP",
        "STRING",
        "STRING",
        "array_to_string(list_transform(regexp_split_to_array(lower({0}), '[[:space:]]'), "
        "lambda __w: upper(substr(__w, 1, 1)) || substr(__w, 2)), ' ')",
        "Capitalizes the first letter of each word and lower-cases the rest.",
    ),
    (
        "REPLACE",
        "STRING, STRING, STRING",
        "STRING",
        "replace({0}, {1}, {2})",
        "Replaces every occurrence of a substring.",
    ),
    (
        "REGEXP_EXTRACT_ALL",
        "STRING, STRING, INT?",
        "ARRAY<STRING>",
        {2: "regexp_extract_all({1}, {0})", 3: "regexp_extract_all({1}, {0}, {2})"},
        "All matches of a pattern (or of one of its groups), in order.",
    ),
    (
        "REGEXP_SPLIT_TO_ARRAY",
        "STRING, STRING",
        "ARRAY<STRING>",
        "CASE WHEN {1} IS NOT NULL THEN regexp_split_to_array({0}, {1}) END",
        "Splits a string around matches of a pattern.",
    ),
    ("CHR", "INT", "STRING", "chr(CAST({0} AS INTEGER))", "The character with the given Unicode code point."),
    ("UUID", "", "STRING", "CAST(uuid() AS VARCHAR)", "A random type-4 UUID."),
    # math
    ("ABS", "NUMBER", "same as input", "abs({0})", "Absolute value."),
    ("SIGN", "NUMBER", "INTEGER", "CAST(sign({0}) AS INTEGER)", "-1, 0 or 1 by the sign of the value."),
    ("SQRT", "NUMBER", "DOUBLE", "sqrt(CAST({0} AS DOUBLE))", "Square root (NaN for negative values)."),
    ("CBRT", "NUMBER", "DOUBLE", "cbrt(CAST({0} AS DOUBLE))", "Cube root."),
    ("EXP", "NUMBER", "DOUBLE", "exp(CAST({0} AS DOUBLE))", "e raised to the value."),
    ("LN", "NUMBER", "DOUBLE", "ln(CAST({0} AS DOUBLE))", "Natural logarithm."),
    (
        "LOG",
        "NUMBER, NUMBER?",
        "DOUBLE",
        {
            1: "ln(CAST({0} AS DOUBLE))",
            2: "CASE WHEN {0} <= 0 OR {0} = 1 THEN CAST('NaN' AS DOUBLE) "
            "ELSE ln(CAST({1} AS DOUBLE)) / ln(CAST({0} AS DOUBLE)) END",
        },
        "LOG(x): natural logarithm (Java's Math.log); LOG(base, x): logarithm in the given base "
        "(NaN for a base <= 0 or 1).",
    ),
    (
        "POWER",
        "NUMBER, NUMBER",
        "DOUBLE",
        "pow(CAST({0} AS DOUBLE), CAST({1} AS DOUBLE))",
        "Base raised to exponent.",
    ),
    ("RANDOM", "", "DOUBLE", "random()", "A random DOUBLE in [0, 1)."),
    ("PI", "", "DOUBLE", "pi()", "The constant pi."),
    ("DEGREES", "NUMBER", "DOUBLE", "degrees(CAST({0} AS DOUBLE))", "Radians to degrees."),
    ("RADIANS", "NUMBER", "DOUBLE", "radians(CAST({0} AS DOUBLE))", "Degrees to radians."),
    (
        "ATAN2",
        "NUMBER, NUMBER",
        "DOUBLE",
        "atan2(CAST({0} AS DOUBLE), CAST({1} AS DOUBLE))",
        "Angle of the point (x, y) given as ATAN2(y, x).",
    ),
    # arrays
    ("ARRAY_LENGTH", "ARRAY", "INTEGER", "CAST(len({0}) AS INTEGER)", "Number of elements."),
    ("ARRAY_MAX", "ARRAY", "element type", "list_max({0})", "Largest non-null element."),
    ("ARRAY_MIN", "ARRAY", "element type", "list_min({0})", "Smallest non-null element."),
    (
        "ARRAY_CONTAINS",
        "ARRAY, ANY",
        "BOOLEAN",
        "list_position({0}, {1}) IS NOT NULL",
        "Whether the array holds the value (false for a null array).",
    ),
    (
        "ARRAY_DISTINCT",
        "ARRAY",
        "ARRAY",
        "list_filter({0}, lambda __x, __i: list_position({0}, __x) = __i)",
        "The distinct elements, in order of first appearance (null kept once).",
    ),
    (
        "ARRAY_EXCEPT",
        "ARRAY, ARRAY",
        "ARRAY",
        "CASE WHEN {1} IS NULL THEN NULL ELSE list_filter({0}, lambda __x, __i: "
        "list_position({0}, __x) = __i AND list_position({1}, __x) IS NULL) END",
        "Distinct elements of the first array that are not in the second.",
    ),
    (
        "ARRAY_INTERSECT",
        "ARRAY, ARRAY",
        "ARRAY",
        "CASE WHEN {1} IS NULL THEN NULL ELSE list_filter({0}, lambda __x, __i: "
        "list_position({0}, __x) = __i AND list_position({1}, __x) IS NOT NULL) END",
        "Distinct elements that are in both arrays.",
    ),
    (
        "ARRAY_UNION",
        "ARRAY, ARRAY",
        "ARRAY",
        "CASE WHEN {0} IS NULL OR {1} IS NULL THEN NULL ELSE list_filter(list_concat({0}, {1}), "
        "lambda __x, __i: list_position(list_concat({0}, {1}), __x) = __i) END",
        "Distinct elements of both arrays.",
    ),
    ("ARRAY_CONCAT", "ARRAY, ARRAY", "ARRAY",
     "CASE WHEN {0} IS NOT NULL OR {1} IS NOT NULL THEN list_concat({0}, {1}) END",
     "The elements of both arrays (null when both are null)."),
    (
        "ARRAY_REMOVE",
        "ARRAY, ANY",
        "ARRAY",
        "list_filter({0}, lambda __x: __x IS DISTINCT FROM {1})",
        "The array without the elements equal to the value.",
    ),
    (
        "SLICE",
        "ARRAY, INT, INT",
        "ARRAY",
        "list_slice({0}, {1}, {2})",
        "Elements from position `from` to `to`, 1-based and inclusive.",
    ),
    # maps
    ("MAP_KEYS", "MAP", "ARRAY", "map_keys({0})", "The keys of a map."),
    ("MAP_VALUES", "MAP", "ARRAY", "map_values({0})", "The values of a map."),
    (
        "MAP_UNION",
        "MAP, MAP",
        "MAP",
        "CASE WHEN {0} IS NULL AND {1} IS NULL THEN NULL "
        "ELSE map_concat(coalesce({0}, {1}), coalesce({1}, {0})) END",
        "Both maps merged; the second wins on duplicate keys.",
    ),
    (
        "AS_MAP",
        "ARRAY, ARRAY",
        "MAP",
        "map({0}, list_resize({1}, len({0})))",
        "A map from a keys array and a values array (missing values are null).",
    ),
    # json
    (
        "IS_JSON_STRING",
        "STRING",
        "BOOLEAN",
        "coalesce(json_valid({0}), FALSE)",
        "Whether the string is valid JSON.",
    ),
    (
        "EXTRACTJSONFIELD",
        "STRING, STRING",
        "STRING",
        "CASE WHEN json_valid({0}) AND NOT regexp_matches({1}, '\\[-') THEN json_extract_string({0}, {1}) END",
        "The value at a JSONPath, as a string (null when missing or not JSON).",
    ),
    (
        "JSON_ARRAY_LENGTH",
        "STRING",
        "INTEGER",
        "CASE WHEN json_valid({0}) AND json_type({0}) = 'ARRAY' "
        "THEN CAST(json_array_length({0}) AS INTEGER) END",
        "Number of elements of a JSON array.",
    ),
    (
        "JSON_KEYS",
        "STRING",
        "ARRAY<STRING>",
        "CASE WHEN json_valid({0}) AND json_type({0}) = 'OBJECT' THEN json_keys({0}) END",
        "The keys of a JSON object.",
    ),
    (
        "JSON_RECORDS",
        "STRING",
        "MAP<STRING, STRING>",
        "CASE WHEN json_valid({0}) AND json_type({0}) = 'OBJECT' "
        "THEN map_from_entries(list_transform(map_entries(CAST(CAST({0} AS JSON) AS MAP(VARCHAR, JSON))), "
        "lambda e: {'key': e.key, 'value': CASE WHEN json_type(e.value) = 'VARCHAR' "
        "THEN json_extract_string(e.value, '$') ELSE CAST(e.value AS VARCHAR) END})) END",
        "The fields of a JSON object as a map of key to JSON text (strings without their quotes).",
    ),
    (
        "JSON_ARRAY_CONTAINS",
        "STRING, ANY",
        "BOOLEAN",
        "CASE WHEN json_valid({0}) AND json_type({0}) = 'ARRAY' THEN coalesce(list_contains("
        "CAST(json_extract({0}, '$[*]') AS VARCHAR[]), "
        "coalesce(CAST(to_json({1}) AS VARCHAR), 'null')), FALSE) "
        "ELSE FALSE END",
        "Whether a JSON array holds the value.",
    ),
    (
        "JSON_ITEMS",
        "STRING",
        "ARRAY<STRING>",
        "CASE WHEN json_valid({0}) AND json_type({0}) = 'ARRAY' "
        "THEN CAST(json_extract({0}, '$[*]') AS VARCHAR[]) END",
        "The elements of a JSON array, each as JSON text.",
    ),
    ("AS_VALUE", "ANY", "ANY", "{0}", "The value itself (copies a key column into the value)."),
    # urls
    (
        "URL_ENCODE_PARAM",
        "STRING",
        "STRING",
        "replace(replace(replace(url_encode({0}), '%20', '+'), '~', '%7E'), '%2A', '*')",
        "Encodes a string as application/x-www-form-urlencoded (Java URLEncoder).",
    ),
    (
        "URL_DECODE_PARAM",
        "STRING",
        "STRING",
        "url_decode(replace({0}, '+', ' '))",
        "Decodes an application/x-www-form-urlencoded string.",
    ),
    # null handling
    ("IFNULL", "ANY, ANY", "ANY", "coalesce({0}, {1})", "The first argument, or the second when it is null."),
    ("NULLIF", "ANY, ANY", "ANY", "nullif({0}, {1})", "Null when both arguments are equal, else the first."),
    # dates and times
    (
        "UNIX_TIMESTAMP",
        "TIMESTAMP?",
        "BIGINT",
        {0: "epoch_ms(current_timestamp)", 1: "epoch_ms({0})"},
        "Milliseconds since the epoch, of now or of a TIMESTAMP.",
    ),
    (
        "UNIX_DATE",
        "DATE?",
        "INTEGER",
        {
            0: "CAST(current_date - DATE '1970-01-01' AS INTEGER)",
            1: "CAST({0} - DATE '1970-01-01' AS INTEGER)",
        },
        "Days since the epoch, of today or of a DATE.",
    ),
    (
        "FROM_UNIXTIME",
        "INT",
        "TIMESTAMP",
        "epoch_ms(CAST({0} AS BIGINT))",
        "The TIMESTAMP of epoch milliseconds.",
    ),
    (
        "FROM_DAYS",
        "INT",
        "DATE",
        "DATE '1970-01-01' + CAST({0} AS INTEGER)",
        "The DATE of days since the epoch.",
    ),
]

for _name, _spec, _returns, _template_, _description in _TEMPLATES:
    _register(_name, _spec, _returns, _description, _templated(_template_))

_MATH_DOUBLE = ["ACOS", "ASIN", "ATAN", "COS", "COSH", "COT", "SIN", "SINH", "TAN", "TANH"]
for _name in _MATH_DOUBLE:
    _register(
        _name,
        "NUMBER",
        "DOUBLE",
        f"The {_name.lower()} of a value (radians).",
        _templated(f"{_name.lower()}(CAST({{0}} AS DOUBLE))"),
    )


@scalar("COALESCE", "ANY, ANY...", "ANY", "The first non-null argument.")
def _coalesce(call: Call) -> exp.Expression:
    return exp.Coalesce(this=call[0].copy(), expressions=[a.copy() for a in call.args[1:]])


# ---------------------------------------------------------------------------------------------
# Strings and bytes
# ---------------------------------------------------------------------------------------------


def _is_bytes(call: Call, i: int = 0) -> bool:
    return call.types[i].name == "BYTES"


@scalar("LEN", "STRING|BYTES", "INTEGER", "Length in characters (bytes for BYTES).")
def _len(call: Call) -> exp.Expression:
    return call.fill(
        "CAST(octet_length({0}) AS INTEGER)" if _is_bytes(call) else "CAST(length({0}) AS INTEGER)"
    )


@scalar("CONCAT", "STRING|BYTES...", "STRING|BYTES", "Concatenates the arguments, skipping nulls.")
def _concat(call: Call) -> exp.Expression:
    _same_family(call, range(len(call.args)))
    if any(t.name == "BYTES" for t in call.types):
        parts = [sql("coalesce({0}, CAST('' AS BLOB))", a) for a in call.args]
        return _chain(parts, "||")
    return exp.Anonymous(this="concat", expressions=[a.copy() for a in call.args])


@scalar(
    "CONCAT_WS",
    "STRING|BYTES, STRING|BYTES...",
    "STRING|BYTES",
    "Joins the non-null arguments with a separator (null separator: null).",
)
def _concat_ws(call: Call) -> exp.Expression:
    _same_family(call, range(len(call.args)))
    if not any(t.name == "BYTES" for t in call.types):
        return exp.Anonymous(this="concat_ws", expressions=[a.copy() for a in call.args])
    items = sql(
        "list_filter({0}, lambda __x: __x IS NOT NULL)",
        exp.Array(expressions=[a.copy() for a in call.args[1:]]),
    )
    return sql(
        "CASE WHEN {0} IS NULL THEN NULL WHEN len({1}) = 0 THEN CAST('' AS BLOB) "
        "ELSE list_reduce({1}, lambda __a, __b: __a || {0} || __b) END",
        call[0],
        items,
    )


def _chain(parts: Sequence[exp.Expression], op: str) -> exp.Expression:
    result = parts[0]
    for part in parts[1:]:
        result = sql(f"{{0}} {op} {{1}}", result, part)
    return result


def _same_family(call: Call, positions: range) -> None:
    names = {call.types[i].name for i in positions} - {"NULL"}
    if len(names) > 1:
        raise _type_error(call, "all arguments must be STRING or all BYTES")


def _substring_start(length: exp.Expression, pos: exp.Expression) -> exp.Expression:
    """ksqlDB's 0-based start index of SUBSTRING (negative positions count from the end)."""
    return sql(
        "CASE WHEN {1} < 0 THEN greatest({0} + {1}, 0) ELSE greatest(least({1} - 1, {0}), 0) END", length, pos
    )


@scalar(
    "SUBSTRING",
    "STRING|BYTES, INT, INT?",
    "STRING|BYTES",
    "The part of a string from a 1-based position (negative: from the end), optionally of a length.",
)
def _substring(call: Call) -> exp.Expression:
    text = sql("hex({0})", call[0]) if _is_bytes(call) else call[0]
    width = 2 if _is_bytes(call) else 1
    length = sql(f"length({{0}}) // {width}", text)
    start = _substring_start(length, call[1])
    if len(call.args) == 3:
        count = sql(
            "CASE WHEN {2} IS NULL THEN NULL ELSE greatest(least({0} + {2}, {1}), {0}) - {0} END",
            start,
            length,
            call[2],
        )
    else:
        count = sql("{1} - {0}", start, length)
    part = sql(f"substr({{0}}, {{1}} * {width} + 1, {{2}} * {width})", text, start, count)
    part = sql("CASE WHEN {1} IS NOT NULL THEN {0} END", part, call[1])  # greatest() skips nulls
    return sql("unhex({0})", part) if _is_bytes(call) else part


@scalar(
    "INSTR",
    "STRING, STRING, INT?, INT?",
    "INTEGER",
    "1-based position of the n-th occurrence of a substring, searching from a position "
    "(negative: backwards from the end); 0 when not found.",
)
def _instr(call: Call) -> exp.Expression:
    position = call[2] if len(call.args) > 2 else exp.Literal.number(1)
    occurrence = call[3] if len(call.args) > 3 else exp.Literal.number(1)
    hits = sql(
        "list_filter(range(0, length({0})), lambda __i: substr({0}, __i + 1, length({1})) = {1})",
        call[0],
        call[1],
    )
    forward = sql(
        "list_extract(list_filter({0}, lambda __i: __i >= {1} - 1), {2})", hits, position, occurrence
    )
    backward = sql(
        "list_extract(list_reverse(list_filter({0}, lambda __i: __i <= length({1}) + {2})), {3})",
        hits,
        call[0],
        position,
        occurrence,
    )
    found = sql("CASE WHEN {0} < 0 THEN {1} ELSE {2} END", position, backward, forward)
    return sql(
        "CASE WHEN {0} IS NULL OR {1} IS NULL OR {2} IS NULL OR {3} IS NULL THEN NULL "
        "ELSE CAST(coalesce({4} + 1, 0) AS INTEGER) END",
        call[0],
        call[1],
        position,
        occurrence,
        found,
    )


def _pad(call: Call, fn: str) -> exp.Expression:
    if _is_bytes(call):  # pad the hex digits: two per byte, so padding stays byte-aligned
        padded = sql(f"unhex({fn}(hex({{0}}), {{1}} * 2, hex({{2}})))", *call.args)
        empty = sql("octet_length({0}) = 0", call[2])
    else:
        padded = call.fill(f"{fn}({{0}}, {{1}}, {{2}})")
        empty = sql("length({0}) = 0", call[2])
    return sql("CASE WHEN {0} < 0 OR {1} THEN NULL ELSE {2} END", call[1], empty, padded)


@scalar(
    "LPAD",
    "STRING|BYTES, INT, STRING|BYTES",
    "STRING|BYTES",
    "Pads on the left with a padding string to a length (truncates longer input).",
)
def _lpad(call: Call) -> exp.Expression:
    return _pad(call, "lpad")


@scalar(
    "RPAD",
    "STRING|BYTES, INT, STRING|BYTES",
    "STRING|BYTES",
    "Pads on the right with a padding string to a length (truncates longer input).",
)
def _rpad(call: Call) -> exp.Expression:
    return _pad(call, "rpad")


@scalar(
    "SPLIT",
    "STRING|BYTES, STRING|BYTES",
    "ARRAY<STRING|BYTES>",
    "Splits around a delimiter; an empty delimiter splits into characters.",
)
def _split(call: Call) -> exp.Expression:
    if _is_bytes(call) or _is_bytes(call, 1):
        return call.fill(f"{SPLIT_BYTES}({{0}}, {{1}})")
    return call.fill("CASE WHEN {0} = '' THEN [{0}] ELSE string_split({0}, {1}) END")  # '' -> ['']


@scalar(
    "SPLIT_TO_MAP",
    "STRING, STRING, STRING",
    "MAP<STRING, STRING>",
    "Splits into entries by one delimiter and each entry into key and value by another.",
)
def _split_to_map(call: Call) -> exp.Expression:
    return call.fill(
        "CASE WHEN {1} <> '' AND {2} <> '' THEN map_from_entries(list_transform("
        "list_filter(string_split({0}, {1}), lambda __e: strpos(__e, {2}) > 0), "
        "lambda __e: {'key': split_part(__e, {2}, 1), 'value': split_part(__e, {2}, 2)})) END"
    )


@scalar(
    "REGEXP_EXTRACT",
    "STRING, STRING, INT?",
    "STRING",
    "The first match of a pattern (or of one of its groups); null when there is none.",
)
def _regexp_extract(call: Call) -> exp.Expression:
    group = call[2] if len(call.args) > 2 else exp.Literal.number(0)
    return sql(
        "CASE WHEN regexp_matches({1}, {0}) THEN regexp_extract({1}, {0}, {2}) END", call[0], call[1], group
    )


@scalar(
    "REGEXP_REPLACE",
    "STRING, STRING, STRING",
    "STRING",
    "Replaces every match of a pattern; `$n` in the replacement is group n.",
)
def _regexp_replace(call: Call) -> exp.Expression:
    replacement = call[2]
    value = _constant(replacement)
    if isinstance(value, str):
        replacement = literal_string(re.sub(r"\$(\d)", r"\\\1", value))
    return sql("regexp_replace({0}, {1}, {2}, 'g')", call[0], call[1], replacement)


#: ksqlDB's encodings for TO_BYTES/FROM_BYTES/ENCODE: (string -> BLOB, BLOB -> string).
_ENCODINGS: dict[str, tuple[str, str]] = {
    "HEX": ("unhex({0})", "lower(hex({0}))"),
    "UTF8": ("encode({0})", "decode({0})"),
    "ASCII": ("encode({0})", "decode({0})"),
    "BASE64": ("from_base64({0})", "to_base64({0})"),
}


def _encoding(call: Call, i: int) -> tuple[str, str]:
    name = call.string_constant(i).upper().replace("-", "")
    if name not in _ENCODINGS:
        raise _type_error(call, f"unknown encoding '{call.string_constant(i)}' (hex, utf8, ascii, base64)")
    return _ENCODINGS[name]


@scalar("TO_BYTES", "STRING, STRING", "BYTES", "Decodes a string (hex, utf8, ascii, base64) to BYTES.")
def _to_bytes(call: Call) -> exp.Expression:
    return sql(_encoding(call, 1)[0], call[0])


def _number_from_bytes(call: Call, kind: str) -> exp.Expression:
    """INT/BIGINT/DOUBLE_FROM_BYTES(bytes [, 'BIG_ENDIAN' | 'LITTLE_ENDIAN'])."""
    order = call.string_constant(1).upper() if len(call.args) > 1 else "BIG_ENDIAN"
    if order not in ("BIG_ENDIAN", "LITTLE_ENDIAN"):
        raise _type_error(call, f"unknown byte order '{order}' (BIG_ENDIAN, LITTLE_ENDIAN)")
    name, _ = from_bytes_udf(kind, order == "BIG_ENDIAN")
    return sql(f"{name}({{0}})", call[0])


for _kind, _sql_name in (("INTEGER", "INT"), ("BIGINT", "BIGINT"), ("DOUBLE", "DOUBLE")):
    _register(f"{_sql_name}_FROM_BYTES", "BYTES, STRING?", _sql_name if _kind != "INTEGER" else "INTEGER",
              f"Reads {FROM_BYTES[_kind][1]} bytes as a {_kind} (big-endian unless 'LITTLE_ENDIAN' is given).",
              functools.partial(_number_from_bytes, kind=_kind))


@scalar("FROM_BYTES", "BYTES, STRING", "STRING", "Encodes BYTES as a string (hex, utf8, ascii, base64).")
def _from_bytes(call: Call) -> exp.Expression:
    if call.string_constant(1).upper() == "HEX":  # ksqlDB's BytesUtils writes upper-case digits; ENCODE lower
        return sql("hex({0})", call[0])
    return sql(_encoding(call, 1)[1], call[0])


@scalar("ENCODE", "STRING, STRING, STRING", "STRING", "Re-encodes a string from one encoding to another.")
def _encode(call: Call) -> exp.Expression:
    return sql(_encoding(call, 2)[1], sql(_encoding(call, 1)[0], call[0]))


_MASK_DEFAULTS = ("'X'", "'x'", "'n'", "'-'")


def _mask(call: Call, chars_from: int, condition: str) -> exp.Expression:
    """Masks the characters of argument 0 for which ``condition`` (over ``__c``, 1-based ``__i``
    and argument 1) holds; mask characters come from arguments ``chars_from`` on."""
    given = list(call.args[chars_from:])
    masks = [sql("{0}", given[i]) if i < len(given) else sql(_MASK_DEFAULTS[i]) for i in range(4)]
    char = sql(
        "CASE WHEN NOT ({5}) THEN __c "
        "WHEN __c <> lower(__c) THEN coalesce({1}, __c) WHEN __c <> upper(__c) THEN coalesce({2}, __c) "
        "WHEN __c BETWEEN '0' AND '9' THEN coalesce({3}, __c) ELSE coalesce({4}, __c) END",
        call[1] if len(call.args) > 1 else exp.null(),
        *masks,
        sql(condition, call[0], *call.args[1:2]),
    )
    return sql(
        "array_to_string(list_transform(string_split({0}, ''), {1}), '')", call[0], lam(char, "__c", "__i")
    )


_MASKS = [
    (
        "MASK",
        "STRING, STRING?, STRING?, STRING?, STRING?",
        1,
        "TRUE",
        "Masks every character: upper X, lower x, digit n, other - (or the given characters).",
    ),
    (
        "MASK_KEEP_LEFT",
        "STRING, INT, STRING?, STRING?, STRING?, STRING?",
        2,
        "__i > {1}",
        "Masks all but the first n characters.",
    ),
    (
        "MASK_KEEP_RIGHT",
        "STRING, INT, STRING?, STRING?, STRING?, STRING?",
        2,
        "__i <= length({0}) - {1}",
        "Masks all but the last n characters.",
    ),
    (
        "MASK_LEFT",
        "STRING, INT, STRING?, STRING?, STRING?, STRING?",
        2,
        "__i <= {1}",
        "Masks the first n characters.",
    ),
    (
        "MASK_RIGHT",
        "STRING, INT, STRING?, STRING?, STRING?, STRING?",
        2,
        "__i > length({0}) - {1}",
        "Masks the last n characters.",
    ),
]
for _name, _spec, _first, _cond, _description in _MASKS:
    _register(
        _name, _spec, "STRING", _description, functools.partial(_mask, chars_from=_first, condition=_cond)
    )


@scalar("ELT", "INT, STRING, STRING...", "STRING", "The n-th (1-based) of the string arguments.")
def _elt(call: Call) -> exp.Expression:
    return sql("list_extract({0}, {1})", exp.Array(expressions=[a.copy() for a in call.args[1:]]), call[0])


@scalar(
    "FIELD",
    "STRING, STRING...",
    "INTEGER",
    "1-based position of the first argument among the others; 0 if absent.",
)
def _field(call: Call) -> exp.Expression:
    others = exp.Array(expressions=[a.copy() for a in call.args[1:]])
    return sql(
        "CASE WHEN {0} IS NULL THEN 0 ELSE CAST(coalesce(list_position({1}, {0}), 0) AS INTEGER) END",
        call[0],
        others,
    )


# ---------------------------------------------------------------------------------------------
# Math
# ---------------------------------------------------------------------------------------------


def _round_like(call: Call, fn: str, double_whole: str, double_digits: str) -> exp.Expression:
    """ROUND/TRUNC: integers unchanged; DOUBLE to a BIGINT (no digits) or a DOUBLE; DECIMAL(p, s)
    to DECIMAL(p - s, 0) (no digits) or keeping its type."""
    t = call.types[0]
    if t.name in ("INTEGER", "BIGINT"):
        return call[0].copy()
    if t.name == "DOUBLE":
        return call.fill(double_whole if len(call.args) == 1 else double_digits)
    if len(call.args) == 1:
        whole = SqlType.decimal(max((t.precision or 1) - (t.scale or 0), 1), 0)
        return typed_cast(call.fill(f"{fn}({{0}})"), whole)
    return typed_cast(call.fill(f"{fn}({{0}}, {{1}})"), t)


@scalar(
    "ROUND",
    "NUMBER, INT?",
    "BIGINT for DOUBLE, DECIMAL(p - s, 0) for DECIMAL; with digits: input type",
    "Rounds half up (DOUBLE: toward positive infinity, like Java's Math.round; DECIMAL: away from zero), "
    "to an integer value or to a number of decimal places (negative: left of the point).",
)
def _round(call: Call) -> exp.Expression:
    return _round_like(
        call,
        "round",
        "CAST(floor({0} + 0.5) AS BIGINT)",
        "floor({0} * pow(10, {1}) + 0.5) / pow(10, {1})",
    )


def _whole(call: Call, fn: str) -> exp.Expression:
    """CEIL/FLOOR keep their argument's type: integers unchanged, DOUBLE, DECIMAL(p, s) with its scale."""
    t = call.types[0]
    if t.name in ("INTEGER", "BIGINT"):
        return call[0].copy()
    rounded = call.fill(f"{fn}({{0}})")
    return typed_cast(rounded, t) if t.name == "DECIMAL" else rounded


@scalar("CEIL", "NUMBER", "same as input", "Rounds up to the nearest integer value.")
def _ceil(call: Call) -> exp.Expression:
    return _whole(call, "ceil")


@scalar("FLOOR", "NUMBER", "same as input", "Rounds down to the nearest integer value.")
def _floor(call: Call) -> exp.Expression:
    return _whole(call, "floor")


@scalar(
    "TRUNC",
    "NUMBER, INT?",
    "BIGINT for DOUBLE, DECIMAL(p, 0) for DECIMAL; with digits: input type",
    "Truncates toward zero, to an integer value or to a number of decimal places.",
)
def _trunc(call: Call) -> exp.Expression:
    return _round_like(call, "trunc", "CAST(trunc({0}) AS BIGINT)", "trunc({0}, {1})")


_EARTH_RADIUS = {"KM": 6371.0, "KILOMETERS": 6371.0, "MI": 3959.0, "MILES": 3959.0}


@scalar(
    "GEO_DISTANCE",
    "NUMBER, NUMBER, NUMBER, NUMBER, STRING?",
    "DOUBLE",
    "Great-circle distance between two lat/lon points, in 'KM' (default) or 'MILES'.",
)
def _geo_distance(call: Call) -> exp.Expression:
    radius = _earth_radius(call)
    return sql(
        "2 * {4} * asin(sqrt(pow(sin(radians({2} - {0}) / 2), 2) + "
        "cos(radians({0})) * cos(radians({2})) * pow(sin(radians({3} - {1}) / 2), 2)))",
        *call.args[:4], radius,
    )


def _earth_radius(call: Call) -> exp.Expression:
    """The radius for GEO_DISTANCE's unit: a literal unit is checked now, a column's per row (an unknown
    unit fails the row, as ksqlDB's function throws)."""
    if len(call.args) <= 4:
        return exp.Literal.number(_EARTH_RADIUS["KM"])
    if _constant(call[4]) is _NOT_CONSTANT:
        whens = " ".join(f"WHEN '{unit}' THEN {radius}" for unit, radius in _EARTH_RADIUS.items())
        km = _EARTH_RADIUS["KM"]
        return sql(f"CASE WHEN {{0}} IS NULL THEN {km} ELSE CASE upper({{0}}) {whens} ELSE "
                   "error('GEO_DISTANCE: unknown distance unit ' || {0}) END END", call[4])
    unit = call.string_constant(4).upper()
    if unit not in _EARTH_RADIUS:
        raise _type_error(call, f"unknown distance unit '{unit}' (KM, MILES)")
    return exp.Literal.number(_EARTH_RADIUS[unit])


def _widest_decimal(types: list[SqlType]) -> SqlType:
    scale = max(t.scale or 0 for t in types)
    digits = max((t.precision or 0) - (t.scale or 0) for t in types)
    return SqlType.decimal(min(digits + scale, 38), scale)


def _comparable_type(call: Call) -> SqlType:
    """The one type GREATEST/LEAST compare in, by ksqlDB's resolution rules."""
    present = [t for t in call.types if t.name != "NULL"]
    names = {t.name for t in present}
    if not present:
        raise SqlTypeError(
            f"Function '{call.name.lower()}' cannot be resolved due to ambiguous method "
            f"parameters ({_type_list(call)})."
        )
    if names == {"DECIMAL"}:
        return _widest_decimal(present)
    if len(names) == 1:
        return present[0]
    if names <= {"INTEGER", "BIGINT", "DECIMAL", "DOUBLE"}:
        if "DOUBLE" in names:
            return SqlType("DOUBLE")
        raise SqlTypeError(
            f"Function '{call.name.lower()}' cannot be resolved due to ambiguous method "
            f"parameters ({_type_list(call)})."
        )
    temporal = names & {"DATE", "TIME", "TIMESTAMP"}
    if len(temporal) == 1 and names - temporal == {"STRING"}:
        return SqlType(temporal.pop())
    raise SqlTypeError(f"Function '{call.name.lower()}' does not accept parameters ({_type_list(call)}).")


def _extreme(call: Call, fn: str) -> exp.Expression:
    target = _comparable_type(call)
    args = [
        compile_cast(a, t, target) if t.name != "NULL" else typed_cast(a, target)
        for a, t in zip(call.args, call.types, strict=True)
    ]
    return exp.Anonymous(this=fn, expressions=args)


@scalar("GREATEST", "ANY, ANY...", "the widest argument type", "The largest argument, ignoring nulls.")
def _greatest(call: Call) -> exp.Expression:
    return _extreme(call, "greatest")


@scalar("LEAST", "ANY, ANY...", "the widest argument type", "The smallest argument, ignoring nulls.")
def _least(call: Call) -> exp.Expression:
    return _extreme(call, "least")


# ---------------------------------------------------------------------------------------------
# Arrays, maps and lambdas
# ---------------------------------------------------------------------------------------------


@scalar(
    "ARRAY_JOIN", "ARRAY, STRING?", "STRING", "The elements as strings joined by a delimiter (default ',')."
)
def _array_join(call: Call) -> exp.Expression:
    element = call.types[0].element or SqlType("STRING")
    text = lam(sql("coalesce({0}, 'null')", to_string(exp.column("__x"), element)), "__x")
    delimiter = call[1] if len(call.args) > 1 else literal_string(",")
    return sql("array_to_string(list_transform({0}, {1}), coalesce({2}, ''))", call[0], text, delimiter)


@scalar("ARRAY_SORT", "ARRAY, STRING?", "ARRAY", "Sorts ascending (or 'DESC'); nulls last.")
def _array_sort(call: Call) -> exp.Expression:
    direction = call.string_constant(1).upper() if len(call.args) > 1 else "ASC"
    if direction not in ("ASC", "DESC"):
        raise _type_error(call, f"sort direction must be 'ASC' or 'DESC', got '{direction}'")
    return sql(f"list_sort({{0}}, '{direction}', 'NULLS LAST')", call[0])


@scalar(
    "ENTRIES",
    "MAP, BOOLEAN",
    "ARRAY<STRUCT<K, V>>",
    "The entries of a map as structs K, V; optionally sorted.",
)
def _entries(call: Call) -> exp.Expression:
    entries = sql(
        "list_transform(map_entries({0}), lambda __e: {'K': __e['key'], 'V': __e['value']})", call[0]
    )
    return sql("CASE WHEN {1} THEN list_sort({0}) ELSE {0} END", entries, call[1])


@scalar(
    "GENERATE_SERIES",
    "INT, INT, INT?",
    "ARRAY<INTEGER|BIGINT>",
    "The integers from start to end inclusive, by a step (default 1 or -1).",
)
def _generate_series(call: Call) -> exp.Expression:
    step = call[2] if len(call.args) > 2 else sql("CASE WHEN {1} >= {0} THEN 1 ELSE -1 END", call[0], call[1])
    element = "BIGINT" if any(t.name == "BIGINT" for t in call.types) else "INTEGER"
    return sql(f"CAST(generate_series({{0}}, {{1}}, {{2}}) AS {element}[])", call[0], call[1], step)


def _compiled_elsewhere(call: Call) -> exp.Expression:
    raise SqlTypeError(f"{call.name} is compiled with its lambdas (nbstream.physical.lambdas)")


# TRANSFORM, FILTER and REDUCE take lambdas: the expression compiler types and compiles them
# (nbstream.physical.lambdas); they are declared here for SHOW FUNCTIONS and DESCRIBE FUNCTION.
_register("TRANSFORM", "ARRAY|MAP, LAMBDA, LAMBDA?", "ARRAY|MAP",
          "Applies a lambda to each element (arrays) or lambdas to each key and value (maps).", _compiled_elsewhere)
_register("FILTER", "ARRAY|MAP, LAMBDA", "ARRAY|MAP", "Keeps the elements (or map entries) a lambda accepts.",
          _compiled_elsewhere)
_register("REDUCE", "ARRAY|MAP, ANY, LAMBDA", "type of the initial state",
          "Folds the elements (or map entries) into a state with a lambda, from an initial state.", _compiled_elsewhere)


# ---------------------------------------------------------------------------------------------
# JSON and URLs
# ---------------------------------------------------------------------------------------------


def _zone(zone: exp.Expression) -> exp.Expression:
    """A Java zone id as DuckDB's: a bare offset (``+02``, ``+0200``, ``+02:00``) as ``GMT+02:00``."""
    return sql("CASE WHEN regexp_matches({0}, '^[+-][0-9][0-9]$') THEN 'GMT' || {0} || ':00' "
               "WHEN regexp_matches({0}, '^[+-][0-9][0-9]:?[0-9][0-9]$') THEN 'GMT' || left({0}, 3) || ':' || "
               "right({0}, 2) ELSE {0} END", zone)


@scalar("CONVERT_TZ", "TIMESTAMP, STRING, STRING", "TIMESTAMP", "Converts a TIMESTAMP from one time zone to another.")
def _convert_tz(call: Call) -> exp.Expression:
    return sql("timezone({2}, timezone({1}, {0}))", call[0], _zone(call[1]), _zone(call[2]))


@scalar("TO_JSON_STRING", "ANY", "STRING", "The value as JSON text, as ksqlDB's JSON format writes it.")
def _to_json_string(call: Call) -> exp.Expression:
    return sql("coalesce(CAST(to_json({0}) AS VARCHAR), 'null')", json_value(call[0], call.types[0]))


@scalar(
    "JSON_CONCAT",
    "STRING, STRING...",
    "STRING",
    "Merges JSON objects (later keys win) or concatenates JSON arrays (non-arrays become elements).",
)
def _json_concat(call: Call) -> exp.Expression:
    valid = _chain([sql("coalesce(json_valid({0}), FALSE)", a) for a in call.args], "AND")
    objects = _chain([sql("json_type({0}) = 'OBJECT'", a) for a in call.args], "AND")
    # a shallow merge, as ksqlDB's ObjectNode.setAll: a later key replaces the whole value of an earlier one
    merged = sql("to_json({0})", exp.Anonymous(
        this="map_concat", expressions=[sql("CAST(CAST({0} AS JSON) AS MAP(VARCHAR, JSON))", a) for a in call.args]))
    lists = exp.Array(
        expressions=[
            sql(
                "CASE WHEN json_type({0}) = 'ARRAY' THEN CAST(json_extract({0}, '$[*]') AS JSON[]) "
                "ELSE [CAST({0} AS JSON)] END",
                a,
            )
            for a in call.args
        ]
    )
    return sql(
        "CASE WHEN NOT ({0}) THEN NULL WHEN {1} THEN CAST({2} AS VARCHAR) "
        "ELSE CAST(to_json(flatten({3})) AS VARCHAR) END",
        valid,
        objects,
        merged,
        lists,
    )


#: Java URI parts: 1 scheme, 2 host, 3 port, 4 path, 5 query, 6 fragment (RE2 allows 9 groups).
_URL = "^(?:([a-zA-Z][a-zA-Z0-9+.-]*):)?(?://(?:[^@/?#]*@)?([^:/?#]*)(?::([0-9]*))?)?([^?#]*)(?:[?]([^#]*))?(?:#(.*))?$"
_URL_GROUPS = {"PROTOCOL": 1, "HOST": 2, "PORT": 3, "PATH": 4, "QUERY": 5, "FRAGMENT": 6}
#: How each part's value becomes null when the part is absent ({0} the URL, {1} the part).
_URL_ABSENT = {
    "PROTOCOL": "nullif({1}, '')",
    "HOST": "nullif({1}, '')",
    "PORT": "TRY_CAST(nullif({1}, '') AS INTEGER)",
    "PATH": "{1}",
    "QUERY": "CASE WHEN regexp_matches({0}, '^[^#]*[?]') THEN {1} END",
    "FRAGMENT": "CASE WHEN strpos({0}, '#') > 0 THEN {1} END",
}


def _url_part(call: Call, part: str) -> exp.Expression:
    group = exp.Literal.number(_URL_GROUPS[part])
    value = sql("regexp_extract({0}, {1}, {2})", call[0], literal_string(_URL), group)
    return sql(_URL_ABSENT[part], call[0], value)


for _part in _URL_GROUPS:
    _register(
        f"URL_EXTRACT_{_part}",
        "STRING",
        "INTEGER" if _part == "PORT" else "STRING",
        f"The {_part.lower()} of a URL (null when absent).",
        functools.partial(_url_part, part=_part),
    )


@scalar(
    "URL_EXTRACT_PARAMETER",
    "STRING, STRING",
    "STRING",
    "The value of the first query parameter of that name (still URL-encoded).",
)
def _url_parameter(call: Call) -> exp.Expression:
    query = _url_part(call, "QUERY")
    pattern = sql("'(^|&)' || {0} || '=([^&]*)'", call[1])
    return sql("CASE WHEN regexp_matches({0}, {1}) THEN regexp_extract({0}, {1}, 2) END", query, pattern)


# ---------------------------------------------------------------------------------------------
# Dates and times
# ---------------------------------------------------------------------------------------------

#: Java DateTimeFormatter letters → strftime (format) / strptime (parse) codes, by run length.
_JAVA_DATE: dict[str, tuple[str, str]] = {
    "yyyy": ("%Y", "%Y"),
    "uuuu": ("%Y", "%Y"),
    "yy": ("%y", "%y"),
    "y": ("%Y", "%Y"),
    "MMMM": ("%B", "%B"),
    "MMM": ("%b", "%b"),
    "MM": ("%m", "%m"),
    "M": ("%-m", "%m"),
    "dd": ("%d", "%d"),
    "d": ("%-d", "%d"),
    "DDD": ("%j", "%j"),
    "HH": ("%H", "%H"),
    "H": ("%-H", "%H"),
    "hh": ("%I", "%I"),
    "h": ("%-I", "%I"),
    "mm": ("%M", "%M"),
    "m": ("%-M", "%M"),
    "ss": ("%S", "%S"),
    "s": ("%-S", "%S"),
    "S": ("%g", "%f"),
    "SS": ("%g", "%f"),
    "SSS": ("%g", "%f"),
    "SSSSSS": ("%f", "%f"),
    "SSSSSSSSS": ("%n", "%n"),
    "a": ("%p", "%p"),
    "EEEE": ("%A", "%A"),
    "EEE": ("%a", "%a"),
    "E": ("%a", "%a"),
    "X": ("%z", "%z"),
    "XX": ("%z", "%z"),
    "XXX": ("%z", "%z"),
    "Z": ("%z", "%z"),
    "ZZ": ("%z", "%z"),
    "z": ("%Z", "%Z"),
    "VV": ("%Z", "%Z"),
}
_JAVA_TOKEN = re.compile(r"'((?:[^']|'')*)'|([A-Za-z])\2*|(.)", re.S)


def java_pattern(pattern: str, *, parse: bool) -> str:
    """Translate a Java ``DateTimeFormatter`` pattern to a DuckDB strftime/strptime format."""
    out = []
    for m in _JAVA_TOKEN.finditer(pattern):
        quoted, letters, other = m.group(1), m.group(2), m.group(3)
        if quoted is not None:
            out.append((quoted.replace("''", "'") or "'").replace("%", "%%"))
        elif letters is not None:
            run = m.group(0)
            if run not in _JAVA_DATE:
                raise SqlTypeError(f"unsupported date/time pattern letters '{run}' in '{pattern}'")
            out.append(_JAVA_DATE[run][1 if parse else 0])
        else:
            out.append("%%" if other == "%" else other)
    return "".join(out)


def java_format_to_strptime(pattern: str) -> str:
    """The strptime format of a Java ``DateTimeFormatter`` pattern (e.g. a TIMESTAMP_FORMAT)."""
    return java_pattern(pattern, parse=True)


def _pattern(call: Call, i: int, *, parse: bool) -> tuple[exp.Expression, bool]:
    """The translated pattern of argument ``i`` and whether it holds a zone offset."""
    translated = java_pattern(call.string_constant(i), parse=parse)
    return literal_string(translated), "%z" in translated or "%Z" in translated


def _parse(call: Call, tz_arg: int | None = None) -> exp.Expression:
    """TRY-parse argument 0 with the pattern in argument 1 to a UTC TIMESTAMP."""
    fmt, zoned = _pattern(call, 1, parse=True)
    if zoned:  # Java's X accepts 'Z' for UTC; strptime's %z wants digits
        text = sql("regexp_replace({0}, 'Z$', '+0000')", call[0])
        return sql("timezone('UTC', try_strptime({0}, {1}))", text, fmt)
    parsed = sql("try_strptime({0}, {1})", call[0], fmt)
    if tz_arg is not None and len(call.args) > tz_arg:
        return sql("timezone('UTC', timezone({1}, {0}))", parsed, call[tz_arg])
    return parsed


#: Java pattern letters that read digits (FastDateParser reads a fixed width when another
#: number follows directly, else all the digits there are).
_NUMERIC_LETTERS = frozenset("yuMdDHhkKmsSwWF")
_ZONE_REGEX = {"X": "(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)", "Z": "(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)"}


def _is_number(run: str | None) -> bool:
    if not run:
        return False
    return run[0] in _NUMERIC_LETTERS and not (run[0] == "M" and len(run) > 2)


def _letters_regex(run: str, number_follows: bool) -> str:
    if _is_number(run):
        return f"[0-9]{{{len(run)}}}" if number_follows else "[0-9]+"
    if run[0] == "a":
        return "[AaPp][Mm]"
    return _ZONE_REGEX.get(run[0], "[A-Za-z_/]+")


def java_prefix_regex(pattern: str) -> str:
    """An RE2 pattern for the text a Java ``DateFormat``-style parser reads at the start of a
    string with ``pattern`` (``DateFormat.parse`` ignores whatever follows)."""
    tokens = list(_JAVA_TOKEN.finditer(pattern))
    out = []
    for i, m in enumerate(tokens):
        quoted, letters, other = m.groups()
        if quoted is not None:
            out.append(re.escape(quoted.replace("''", "'") or "'"))
        elif letters is not None:
            following = tokens[i + 1] if i + 1 < len(tokens) else None
            number_follows = following is not None and following.group(2) is not None and _is_number(following.group(0))
            out.append(_letters_regex(m.group(0), number_follows))
        else:
            out.append(re.escape(other))
    return "^" + "".join(out)


def _parse_date(call: Call) -> exp.Expression:
    """PARSE_DATE: ksqlDB parses with a ``FastDateFormat`` in GMT, which reads a prefix of the
    text (trailing text is ignored, missing fields default to the start of the year) and rejects a
    result with a time of day."""
    regex = literal_string(java_prefix_regex(call.string_constant(1)))
    prefix = sql("nullif(regexp_extract({0}, {1}), '')", call[0], regex)
    parsed = _parse(replace(call, args=(prefix, *call.args[1:])))
    return sql("CASE WHEN CAST({0} AS TIME) = TIME '00:00:00' THEN CAST({0} AS DATE) END", parsed)


#: Java's zone-offset pattern letters when formatting: RFC 822 ``+0000`` (Z), ISO 8601 ``Z`` for UTC
#: or ``+08``, ``+0800``, ``+08:00`` (X, XX, XXX). DuckDB's ``%z`` of a local time says ``+00``, so
#: each is written as a marker strftime keeps, then replaced by the offset computed in SQL.
_ZONE_MARKERS = {"Z": "\x01", "ZZ": "\x01", "ZZZ": "\x01", "X": "\x02", "XX": "\x03", "XXX": "\x04"}


def _format(call: Call, value: exp.Expression, tz_arg: int | None = None) -> exp.Expression:
    pattern = call.string_constant(1)
    runs = [m.group(0) for m in _JAVA_TOKEN.finditer(pattern) if m.group(2) is not None]
    zones = [run for run in runs if run in _ZONE_MARKERS]
    if zones:
        pattern = "".join(_ZONE_MARKERS.get(m.group(0), m.group(0)) if m.group(2) is not None else m.group(0)
                          for m in _JAVA_TOKEN.finditer(pattern))
    fmt = literal_string(java_pattern(pattern, parse=False))
    utc = value
    if tz_arg is not None and len(call.args) > tz_arg:
        value = sql("timezone({1}, timezone('UTC', {0}))", value, call[tz_arg])
    text = sql("strftime({0}, {1})", value, fmt)
    if zones:  # the offset of the local time from UTC, in minutes
        minutes = sql("datediff('minute', {0}, {1})", utc, value)
        for marker, offset in _zone_offsets(minutes).items():
            text = sql("replace({0}, {1}, {2})", text, literal_string(marker), offset)
    return text


def _zone_offsets(minutes: exp.Expression) -> dict[str, exp.Expression]:
    sign = sql("CASE WHEN {0} < 0 THEN '-' ELSE '+' END", minutes)
    hours = sql("lpad(CAST(abs({0}) // 60 AS VARCHAR), 2, '0')", minutes)
    mins = sql("lpad(CAST(abs({0}) % 60 AS VARCHAR), 2, '0')", minutes)
    def iso(body: exp.Expression) -> exp.Expression:
        return sql("CASE WHEN {0} = 0 THEN 'Z' ELSE {1} END", minutes, body)
    return {"\x01": sql("{0} || {1} || {2}", sign, hours, mins),
            "\x02": iso(sql("{0} || {1}", sign, hours)),
            "\x03": iso(sql("{0} || {1} || {2}", sign, hours, mins)),
            "\x04": iso(sql("{0} || {1} || ':' || {2}", sign, hours, mins))}


_EPOCH_DATE = "DATE '1970-01-01'"
_DATETIME: list[tuple[str, str, str, Builder, str]] = [
    (
        "STRINGTOTIMESTAMP",
        "STRING, STRING, STRING?",
        "BIGINT",
        lambda c: sql("epoch_ms({0})", _parse(c, 2)),
        "Parses a string with a pattern to epoch milliseconds.",
    ),
    (
        "PARSE_TIMESTAMP",
        "STRING, STRING, STRING?",
        "TIMESTAMP",
        lambda c: _parse(c, 2),
        "Parses a string with a pattern to a TIMESTAMP.",
    ),
    (
        "TIMESTAMPTOSTRING",
        "INT, STRING, STRING?",
        "STRING",
        lambda c: _format(c, sql("epoch_ms(CAST({0} AS BIGINT))", c[0]), 2),
        "Formats epoch milliseconds with a pattern (optionally in a time zone).",
    ),
    (
        "FORMAT_TIMESTAMP",
        "TIMESTAMP, STRING, STRING?",
        "STRING",
        lambda c: _format(c, c[0], 2),
        "Formats a TIMESTAMP with a pattern (optionally in a time zone).",
    ),
    (
        "STRINGTODATE",
        "STRING, STRING",
        "INTEGER",
        lambda c: sql(f"CAST(CAST({{0}} AS DATE) - {_EPOCH_DATE} AS INTEGER)", _parse(c)),
        "Parses a string with a pattern to days since the epoch.",
    ),
    (
        "DATETOSTRING",
        "INT, STRING",
        "STRING",
        lambda c: _format(c, sql(f"{_EPOCH_DATE} + CAST({{0}} AS INTEGER)", c[0])),
        "Formats days since the epoch with a pattern.",
    ),
    (
        "PARSE_DATE",
        "STRING, STRING",
        "DATE",
        _parse_date,
        "Parses the start of a string with a pattern to a DATE (trailing text is ignored; "
        "null if the pattern yields a time of day).",
    ),
    ("FORMAT_DATE", "DATE, STRING", "STRING", lambda c: _format(c, c[0]), "Formats a DATE with a pattern."),
    (
        "PARSE_TIME",
        "STRING, STRING",
        "TIME",
        lambda c: sql("CAST({0} AS TIME)", _parse(c)),
        "Parses a string with a pattern to a TIME.",
    ),
    (
        "FORMAT_TIME",
        "TIME, STRING",
        "STRING",
        lambda c: _format(c, sql(f"{_EPOCH_DATE} + {{0}}", c[0])),
        "Formats a TIME with a pattern.",
    ),
]
#: The date/time functions whose pattern may be a column: DuckDB types of their value and result.
_PATTERN_COLUMN_TYPES = {
    "STRINGTOTIMESTAMP": ("VARCHAR", "BIGINT"),
    "PARSE_TIMESTAMP": ("VARCHAR", "TIMESTAMP"),
    "TIMESTAMPTOSTRING": ("BIGINT", "VARCHAR"),
    "FORMAT_TIMESTAMP": ("TIMESTAMP", "VARCHAR"),
    "STRINGTODATE": ("VARCHAR", "INTEGER"),
    "DATETOSTRING": ("INTEGER", "VARCHAR"),
    "PARSE_DATE": ("VARCHAR", "DATE"),
    "FORMAT_DATE": ("DATE", "VARCHAR"),
    "PARSE_TIME": ("VARCHAR", "TIME"),
    "FORMAT_TIME": ("TIME", "VARCHAR"),
}


def _with_pattern_column(name: str, build: Builder) -> Builder:
    """``build`` for a literal pattern; a (value, pattern) call whose pattern is a column calls the
    Arrow UDF of :mod:`nbstream.catalog.pattern_udfs`, which compiles ``build`` per distinct pattern."""
    value, returns = _PATTERN_COLUMN_TYPES[name]
    udf_name = f"nbs_pattern_{name.lower()}"

    def compile_one(pattern: str) -> str:
        call = Call(name, (exp.column("v"), literal_string(pattern)), (parse_type(value), parse_type("STRING")))
        return build(call).sql("duckdb")

    add_udf(udf_name, PatternUdf(udf_name, value, returns, compile_one), [value, "VARCHAR"], returns)

    def built(call: Call) -> exp.Expression:
        if len(call.args) == 2 and _constant(call.args[1]) is _NOT_CONSTANT:
            return sql(f"{udf_name}(CAST({{0}} AS {value}), {{1}})", *call.args)
        return build(call)

    return built


for _name, _spec, _returns, _build, _description in _DATETIME:
    _register(_name, _spec, _returns, _description, _with_pattern_column(_name, _build))

#: ksqlDB's time units (java.util.concurrent.TimeUnit names) → DuckDB interval constructors.
_UNITS = {
    "MILLISECONDS": "to_milliseconds",
    "SECONDS": "to_seconds",
    "MINUTES": "to_minutes",
    "HOURS": "to_hours",
    "DAYS": "to_days",
    "MICROSECONDS": "to_microseconds",
}


def _interval(call: Call) -> exp.Expression:
    unit = call[0]
    name = (unit.this if isinstance(unit, exp.Literal) else unit.name).upper()
    fn = _UNITS.get(name) or _UNITS.get(name + "S")
    if fn is None:
        raise _type_error(call, f"unknown time unit '{name}' ({', '.join(_UNITS)})")
    return sql(f"{fn}(CAST({{0}} AS BIGINT))", call[1])


def _add_sub(call: Call, kind: str, op: str) -> exp.Expression:
    return sql(f"CAST({{0}} {op} {{1}} AS {kind})", call[2], _interval(call))


_ADD_SUB = [
    ("DATEADD", "DATE", "+"),
    ("DATESUB", "DATE", "-"),
    ("TIMESTAMPADD", "TIMESTAMP", "+"),
    ("TIMESTAMPSUB", "TIMESTAMP", "-"),
    ("TIMEADD", "TIME", "+"),
    ("TIMESUB", "TIME", "-"),
]
for _name, _kind, _op in _ADD_SUB:
    _register(
        _name,
        f"UNIT, INT, {_kind}",
        _kind,
        f"{'Adds' if _op == '+' else 'Subtracts'} an interval "
        f"(unit, amount) {'to' if _op == '+' else 'from'} a {_kind}.",
        functools.partial(_add_sub, kind=_kind, op=_op),
    )


# ---------------------------------------------------------------------------------------------
# Aggregates and table functions (compiled elsewhere; named here for SHOW/DESCRIBE FUNCTIONS)
# ---------------------------------------------------------------------------------------------

_AGGREGATES = {
    "COUNT": "Number of rows (or of non-null values).",
    "COUNT_DISTINCT": "Number of distinct non-null values.",
    "SUM": "Sum of the values.",
    "SUM_LIST": "Sum of the elements of every array value.",
    "AVG": "Average of the values.",
    "MIN": "Smallest value.",
    "MAX": "Largest value.",
    "LATEST_BY_OFFSET": "The value of the latest record (by offset).",
    "EARLIEST_BY_OFFSET": "The value of the earliest record (by offset).",
    "COLLECT_LIST": "All values as an array.",
    "COLLECT_SET": "The distinct values as an array.",
    "TOPK": "The k largest values.",
    "TOPKDISTINCT": "The k largest distinct values.",
    "HISTOGRAM": "Count of each distinct value, as a map.",
    "STDDEV_SAMP": "Sample variance (what ksqlDB's STDDEV_SAMP returns).",
    "STDDEV_SAMPLE": "Sample standard deviation.",
    "CORRELATION": "Correlation of two columns.",
}
_TABLE_FUNCTIONS = {
    "EXPLODE": "One row per element of an array.",
    "CUBE_EXPLODE": "One row per combination of the columns and nulls (a cube).",
}
for _name, _description in _AGGREGATES.items():
    _REGISTRY[_name] = FunctionDef(_name, "aggregate", description=_description)
for _name, _description in _TABLE_FUNCTIONS.items():
    _REGISTRY[_name] = FunctionDef(_name, "table", description=_description)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def _type_list(call: Call) -> str:
    return ", ".join("null" if t.name == "NULL" else str(t) for t in call.types)


def _type_error(call: Call, detail: str) -> SqlTypeError:
    signature = _REGISTRY[call.name].signature
    return SqlTypeError(
        f"Function '{call.name}' does not accept parameters ({_type_list(call)}): {detail}. "
        f"Signature: {signature}"
    )


def _typed_call(fdef: FunctionDef, args: list[exp.Expression], types: TypeOracle) -> Call:
    if not fdef.arity_ok(len(args)):
        raise SqlTypeError(
            f"Function '{fdef.name}' does not accept {len(args)} parameter(s). Signature: {fdef.signature}"
        )
    arg_types = []
    for i, arg in enumerate(args):
        family = fdef.param_for(i).family
        arg_types.append(
            _LAMBDA_TYPE if family in _UNTYPED or isinstance(arg, exp.Lambda) else types.type_of(arg)
        )
    call = Call(fdef.name, tuple(args), tuple(arg_types))
    for i, arg in enumerate(args):
        _check_arg(call, fdef.param_for(i).family, i, arg)
    return call


def _check_arg(call: Call, family: str, i: int, arg: exp.Expression) -> None:
    if family == "LAMBDA":
        if not isinstance(arg, exp.Lambda):
            raise _type_error(call, f"argument {i + 1} must be a lambda")
        return
    allowed = _FAMILIES[family]
    t = call.types[i]
    if family != "UNIT" and allowed is not None and t.name != "NULL" and t.name not in allowed:
        raise _type_error(call, f"argument {i + 1} must be {family.replace('|', ' or ')}, got {t}")


def compile_function(name: str, args: list[exp.Expression], types: TypeOracle) -> exp.Expression:
    """Compile a call of ksqlDB scalar function ``name`` (upper case) to one DuckDB expression.

    ``args`` are compiled, DuckDB-valid expressions (lambdas as ``exp.Lambda`` with DuckDB-valid
    bodies); ``types`` gives their ksqlDB types. Raises :class:`UnknownNameError` for an unknown
    function and :class:`SqlTypeError` for wrong arity or argument types. Expressions that use a
    UDF need :func:`register_udfs` on the connection that runs them."""
    fdef = _REGISTRY.get(name.upper())
    if fdef is None:
        raise UnknownNameError(f"unknown function `{name}`.{did_you_mean(name, function_names())}")
    if fdef.build is None:
        raise SqlTypeError(f"`{fdef.name}` is an {fdef.kind} function, not a scalar function")
    return fdef.build(_typed_call(fdef, args, types))


def takes_unit(name: str, i: int) -> bool:
    """Whether argument ``i`` of built-in function ``name`` is a time unit keyword (``DAYS``…),
    written as a bare name, not a column."""
    fdef = _REGISTRY.get(name.upper())
    return fdef is not None and bool(fdef.params) and fdef.param_for(i).family == "UNIT"


def is_builtin(name: str) -> bool:
    """Whether ``name`` is one of ksqlDB's built-in functions (any kind)."""
    return name.upper() in _REGISTRY


def kind_of(name: str) -> str | None:
    """``scalar``, ``aggregate`` or ``table`` for a built-in or user function ``name``; None if unknown."""
    fdef = _REGISTRY.get(name.upper())
    if fdef is not None:
        return fdef.kind
    user = user_functions.lookup(name)
    return None if user is None else user.kind


def is_aggregate(name: str) -> bool:
    """Whether ``name`` is one of ksqlDB's aggregate functions."""
    return kind_of(name) == "aggregate"


def is_table_function(name: str) -> bool:
    """Whether ``name`` is a table function (ksqlDB's EXPLODE, CUBE_EXPLODE, or a user's)."""
    return kind_of(name) == "table"


def function_names() -> list[str]:
    """Every function name known (scalar, aggregate and table functions, user functions too), sorted."""
    return sorted({*_REGISTRY, *user_functions.names()})


def describe_function(name: str) -> dict[str, object]:
    """What DESCRIBE FUNCTION shows: name, kind (scalar/aggregate/table), signatures, description."""
    fdef = _REGISTRY.get(name.upper())
    if fdef is None:
        user = user_functions.lookup(name)
        if user is None:
            raise UnknownNameError(f"unknown function `{name}`.{did_you_mean(name, function_names())}")
        return {"name": user.name, "kind": user.kind, "signatures": user.signatures,
                "description": user.description, "author": "user (Python)"}
    signatures = [fdef.signature] if fdef.params or fdef.kind == "scalar" else []
    return {"name": fdef.name, "kind": fdef.kind, "signatures": signatures, "description": fdef.description}
