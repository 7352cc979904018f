"""The serialization-format contract, and SQL helpers shared by the formats.

A record's key and value live in the log as bytes (DuckDB ``BLOB``). A :class:`Format` turns a
BLOB column into typed columns (:meth:`Format.decode_sql`) and typed columns back into a BLOB
(:meth:`Format.encode_sql`) as *SQL expressions*, so that a query's whole micro-batch is one
vectorised DuckDB statement. ``encode_python``/``decode_python`` serve the engine's
``produce``/``consume`` API and tests: they map ksqlDB's *logical content* of a record (what a
query-validation test writes as ``"value"``) to bytes and back.

The SQL produced here may call the macros that :func:`register_udfs` defines; run it once on every
DuckDB connection that evaluates format SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb

from nbstream.catalog.schema import Column
from nbstream.catalog.types import SqlType
from nbstream.errors import FormatError

#: One layer of :attr:`Decoded.lets`: ``(name, sql)`` pairs.
Layer = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Decoded:
    """The result of :meth:`Format.decode_sql`.

    ``columns`` holds one SQL expression per requested column, typed ``column.type.duckdb()``.
    ``error`` is a SQL boolean, true when the record cannot be deserialized (the runtime sends it
    to the processing log and skips it), or ``None`` when decoding cannot fail.
    ``error_message`` is a SQL VARCHAR describing the failure (meaningful where ``error`` holds).
    ``lets`` are layers of named SQL values that those expressions may name, so that what they
    share is computed once per record: the values of a layer may name the columns of the blob's
    relation and the names of earlier layers. Evaluate the expressions over
    :func:`let_relation` of that relation. A format names its lets with :func:`let_name`, so that
    those of the key and of the value differ. ``fast``, where a format has one, is a cheaper
    decoding of the same records (DuckDB binds every micro-batch's statement, and binding grows
    with the SQL): its columns are exact wherever its ``error`` is false; a record where it is
    true needs this full decoding (it may decode, or be in error).
    """

    columns: tuple[str, ...]
    error: str | None = None
    error_message: str | None = None
    lets: tuple[Layer, ...] = ()
    fast: Decoded | None = None


def let_name(blob: str, name: str) -> str:
    """The column name of the let ``name`` of the decoding of the BLOB expression ``blob``."""
    return "__let_" + "".join(ch for ch in blob if ch.isalnum() or ch == "_") + "_" + name


def let_relation(relation: str, *decoded: Decoded) -> str:
    """``relation`` (a table name or parenthesized query) with the lets of ``decoded`` as extra
    columns, one nested SELECT per layer, where the decoded expressions can be evaluated."""
    depth = max((len(d.lets) for d in decoded), default=0)
    for i in range(depth):
        values = [f"{sql} AS {name}" for d in decoded if i < len(d.lets) for name, sql in d.lets[i]]
        relation = f"(SELECT *, {', '.join(values)} FROM {relation})"
    return relation


class Format(Protocol):
    """A ksqlDB serialization format (``JSON``, ``DELIMITED``, ``KAFKA``, ``NONE``)."""

    name: str

    def check_columns(
        self, columns: Sequence[Column], *, is_key: bool, wrap_single_value: bool | None
    ) -> None:
        """Raise :class:`FormatError` (with ksqlDB's message) if the format cannot carry ``columns``."""
        ...

    def decode_sql(
        self, blob: str, columns: Sequence[Column], *, wrap_single_value: bool
    ) -> Decoded:
        """SQL expressions decoding the BLOB expression ``blob`` into ``columns``.

        A NULL blob decodes to all-NULL columns without error."""
        ...

    def encode_sql(self, columns: Sequence[tuple[Column, str]], *, wrap_single_value: bool) -> str:
        """A SQL BLOB expression serializing ``(column, sql_expression)`` pairs."""
        ...

    def encode_python(self, value: Any, columns: Sequence[Column]) -> bytes | None:
        """Bytes of a record whose logical content (as in ksqlDB's QTT files) is ``value``."""
        ...

    def decode_python(self, data: bytes | None, columns: Sequence[Column], *, wrap_single_value: bool) -> Any:
        """The logical content of the serialized record ``data`` (None for a null record)."""
        ...


# -- SQL helpers --------------------------------------------------------------------------------


def sql_str(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    """``name`` as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def check_wrap(columns: Sequence[Column], wrap_single_value: bool | None) -> None:
    """ksqlDB's rule: an explicit ``WRAP_SINGLE_VALUE`` needs exactly one column."""
    if wrap_single_value is not None and len(columns) != 1:
        raise FormatError("'WRAP_SINGLE_VALUE' is only valid for single-field value schemas")


def _has_map(t: SqlType) -> bool:
    if t.name == "MAP":
        return True
    inner = [t.element] if t.element is not None else []
    return any(_has_map(x) for x in [*inner, *(ft for _, ft in t.fields)])


def check_key_maps(columns: Sequence[Column]) -> None:
    """ksqlDB's rule for every key format: no MAP anywhere in a key column's type."""
    for col in columns:
        if _has_map(col.type):
            raise FormatError(
                "Map keys, including types that contain maps, are not supported as they may lead to "
                f"unexpected behavior due to inconsistent serialization. Key column name: `{col.name}`. "
                f"Column type: {col.type}. See https://github.com/confluentinc/ksql/issues/6621 for more."
            )


def unsupported_type(fmt: str, columns: Sequence[Column], bad: Column, *, is_key: bool) -> FormatError:
    """ksqlDB's error for a column type a format cannot carry."""
    which = "Key" if is_key else "Value"
    schema = ", ".join(str(c) for c in columns)
    return FormatError(
        f"{which} format does not support schema.\nformat: {fmt}\nschema: Persistence{{columns=[{schema}], "
        f"features=[]}}\nreason: The '{fmt}' format does not support type '{bad.type.name}', "
        f"column: `{bad.name}`"
    )


def check_unwrapped_only(fmt: str, wrap_single_value: bool | None) -> None:
    """ksqlDB's rule for formats that cannot wrap a single value in a record."""
    if wrap_single_value:
        raise FormatError(f"Format '{fmt}' does not support 'WRAP_SINGLE_VALUE' set to 'true'.")


#: Macros used by the generated SQL. ``nbs_java_double`` renders a DOUBLE like Java's
#: ``Double.toString``: plain notation with at least one fraction digit for 1e-3 <= |x| < 1e7,
#: else ``d.dddE[-]n`` (``1.0E7``, ``1.2345E-4``); ``NaN``, ``Infinity``, ``-0.0``. It starts from
#: ``to_json``'s shortest round-trip text, which is already Java's in the common range (one cheap
#: call); the rare range rewrites that text, which yyjson writes plainly for 1e-6 <= |x| < 1e21
#: and as ``1.5e-7``/``1e21`` outside. Each macro names its argument at most twice, so DuckDB's
#: textual macro expansion stays small.
_MACROS = (
    # significant digits "12345" -> "1.2345", "1" -> "1.0"
    r"nbs_sci_mantissa(d) AS regexp_replace(regexp_replace(d, '^(.)', '\1.'), '\.$', '.0')",
    # plain text of a number >= 1e7, e.g. "123456789012345680.0" -> "1.2345678901234568E17"
    "nbs_sci_large(t) AS nbs_sci_mantissa(rtrim(replace(t, '.', ''), '0'))"
    " || 'E' || (strpos(t, '.') - 2)::VARCHAR",
    # plain text of a number < 1e-3, e.g. "0.00012345" -> "1.2345E-4"
    "nbs_sci_small(t) AS nbs_sci_mantissa(ltrim(t, '0.'))"
    " || 'E' || (1 - length(t) + length(ltrim(t, '0.')))::VARCHAR",
    # yyjson's exponent text, e.g. "1.5e-7" -> "1.5E-7", "1e21" -> "1.0E21"
    r"nbs_sci_exp(t) AS regexp_replace(replace(t, 'e', 'E'), '^([0-9])E', '\1.0E')",
    "nbs_java_abs_rare(a) AS CASE"
    " WHEN a >= 1e7 AND a < 1e21 THEN nbs_sci_large(to_json(a)::VARCHAR)"
    " WHEN a < 1e-3 AND a >= 1e-6 THEN nbs_sci_small(to_json(a)::VARCHAR)"
    # Java writes Double.MIN_VALUE with two digits; shortest round-trip text would be 5e-324
    " WHEN a = 4.9E-324 THEN '4.9E-324'"
    " ELSE nbs_sci_exp(to_json(a)::VARCHAR) END",
    "nbs_java_double_rare(x) AS CASE WHEN isnan(x) THEN 'NaN'"
    " WHEN isinf(x) THEN (CASE WHEN x > 0 THEN 'Infinity' ELSE '-Infinity' END)"
    " WHEN x = 0 THEN (CASE WHEN signbit(x) THEN '-0.0' ELSE '0.0' END)"
    " WHEN x < 0 THEN '-' || nbs_java_abs_rare(-x) ELSE nbs_java_abs_rare(x) END",
    "nbs_java_double(x) AS CASE WHEN abs(x) >= 1e-3 AND abs(x) < 1e7 THEN to_json(x)::VARCHAR"
    " ELSE nbs_java_double_rare(x) END",
    # in JSON, NaN and the infinities are strings (Jackson writes them quoted)
    "nbs_json_double(x) AS CASE WHEN abs(x) >= 1e-3 AND abs(x) < 1e7 THEN to_json(x)::VARCHAR"
    " WHEN x IS NULL THEN NULL WHEN isfinite(x) THEN nbs_java_double_rare(x)"
    " ELSE concat('\"', nbs_java_double_rare(x), '\"') END",
)


def register_udfs(con: duckdb.DuckDBPyConnection) -> None:
    """Define the macros format SQL uses on ``con`` (idempotent)."""
    for macro in _MACROS:
        con.execute(f"CREATE OR REPLACE TEMP MACRO {macro}")


def scalar_text_sql(expr: str, sql_type: SqlType) -> str:
    """SQL rendering ``expr`` (a non-nested value) as ksqlDB writes it in text formats.

    DOUBLE as Java's ``Double.toString``, DECIMAL with its scale, TIMESTAMP as epoch
    milliseconds, DATE as days since the epoch, TIME as milliseconds of the day, BYTES as base64."""
    name = sql_type.name
    if name == "DOUBLE":
        return f"nbs_java_double({expr})"
    if name == "BOOLEAN":
        return f"CASE WHEN {expr} THEN 'true' WHEN NOT {expr} THEN 'false' END"
    if name == "TIMESTAMP":
        return f"epoch_ms({expr})::VARCHAR"
    if name == "DATE":
        return f"({expr} - DATE '1970-01-01')::VARCHAR"
    if name == "TIME":
        return f"(epoch_us({expr}) // 1000)::VARCHAR"
    if name == "BYTES":
        return f"to_base64({expr})"
    return f"({expr})::VARCHAR"


def scalar_from_text_sql(text: str, sql_type: SqlType) -> str:
    """SQL parsing the VARCHAR ``text`` as a non-nested ``sql_type`` (NULL when it does not parse).

    The inverse of :func:`scalar_text_sql`; BOOLEAN follows Java's ``Boolean.parseBoolean``."""
    name = sql_type.name
    if name == "BOOLEAN":
        return f"(lower({text}) = 'true')"
    if name == "TIMESTAMP":
        return f"epoch_ms(TRY_CAST({text} AS BIGINT))"
    if name == "DATE":
        return f"(DATE '1970-01-01' + TRY_CAST({text} AS INTEGER))"
    if name == "TIME":
        return f"(TIME '00:00:00' + to_milliseconds(TRY_CAST({text} AS BIGINT)))"
    if name == "BYTES":
        return f"TRY(from_base64({text}))"
    if name in ("INTEGER", "BIGINT"):  # like Java's parseInt/parseLong: no fraction, no rounding
        cast = f"TRY_CAST({text} AS {sql_type.duckdb()})"
        return f"CASE WHEN regexp_full_match({text}, '[+-]?[0-9]+') THEN {cast} END"
    return f"TRY_CAST({text} AS {sql_type.duckdb()})"
