"""ksqlDB's ``DELIMITED`` format: one CSV line per record, decoded and encoded by DuckDB SQL.

Parsing: fields split on the delimiter, ``"``-quoted fields may hold the delimiter and doubled
quotes, an empty field (quoted or not) is NULL, a wrong field count is a deserialization error. Writing follows
Apache commons-csv's minimal quoting as ksqlDB uses it: a field is quoted when it contains the
delimiter, a quote, CR or LF, ends in a space or control character, starts with a character
``<= '#'``, or — the first field of a line only — starts with anything but a letter or digit
(so ``-1`` as first field is written ``"-1"``). Values are rendered as ksqlDB does (DOUBLE as
Java's ``Double.toString``, DECIMAL with its scale); NULL is an empty field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from nbstream.catalog.schema import Column
from nbstream.catalog.types import SqlType
from nbstream.errors import FormatError
from nbstream.formats.base import (
    Decoded,
    check_key_maps,
    check_unwrapped_only,
    check_wrap,
    scalar_from_text_sql,
    scalar_text_sql,
    sql_str,
    unsupported_type,
)

#: Special spellings ksqlDB accepts for whitespace delimiters.
_NAMED = {"TAB": "\t", "SPACE": " "}
_EXAMPLE = "\nExample valid value: ';'"


def parse_delimiter(value: Any, prop: str = "VALUE_DELIMITER") -> str:
    """The delimiter character a ``VALUE_DELIMITER``/``KEY_DELIMITER`` property value names."""
    text = str(value)
    if text.upper() in _NAMED:
        return _NAMED[text.upper()]
    if not text.strip():
        raise FormatError(
            f"Configuration {prop} is invalid: Delimiter cannot be empty, if you meant to have a tab or "
            f"space for delimiter, please use the special values 'TAB' or 'SPACE'{_EXAMPLE}"
        )
    if len(text) != 1:
        raise FormatError(
            f"Configuration {prop} is invalid: Invalid delimiter value: '{text}'. "
            f"Delimiter must be a single character or TAB,SPACE{_EXAMPLE}"
        )
    return text


class DelimitedFormat:
    """The ``DELIMITED`` format with a given single-character ``delimiter``."""

    name = "DELIMITED"

    def __init__(self, delimiter: str = ",") -> None:
        self.delimiter = delimiter

    def check_columns(
        self, columns: Sequence[Column], *, is_key: bool, wrap_single_value: bool | None
    ) -> None:
        check_unwrapped_only(self.name, wrap_single_value)
        check_wrap(columns, wrap_single_value)
        if is_key:
            check_key_maps(columns)
        for col in columns:
            if col.type.is_nested:
                raise unsupported_type(self.name, columns, col, is_key=is_key)

    def decode_sql(
        self, blob: str, columns: Sequence[Column], *, wrap_single_value: bool
    ) -> Decoded:
        # Like the JSON decoder: greatest() and checks up front, so that DuckDB splits a line once.
        text = f"TRY(decode({blob}))"
        fields = self._fields_sql(text)
        raw = [f"nullif({fields}[{i + 1}], '')" for i in range(len(columns))]
        typed = tuple(scalar_from_text_sql(r, c.type) for r, c in zip(raw, columns, strict=True))
        bad = [f"(CASE WHEN {r} IS NULL THEN false ELSE {t} IS NULL END)" for r, t in zip(raw, typed, strict=True)]
        count = f"len({fields}) <> {len(columns)}"
        failed = f"greatest({text} IS NULL, {count}, {', '.join(bad)})"
        error = f"(CASE WHEN {failed} THEN {blob} IS NOT NULL ELSE false END)"
        whens = [
            f"WHEN {text} IS NULL THEN 'Invalid UTF-8 text'",
            f"WHEN {count} THEN 'Unexpected field count, csvFields:' || len({fields}) || "
            f"' schemaFields:{len(columns)}'",
        ]
        for b, r, c in zip(bad, raw, columns, strict=True):
            whens.append(
                f"WHEN {b} THEN 'Failed to parse ' || {r} || {sql_str(f' as {c.type} for `{c.name}`')}"
            )
        return Decoded(typed, error, f"CASE WHEN {error} THEN (CASE {' '.join(whens)} END) END")

    def encode_sql(self, columns: Sequence[tuple[Column, str]], *, wrap_single_value: bool) -> str:
        parts = [self._field_sql(e, c.type, first=i == 0) for i, (c, e) in enumerate(columns)]
        separator = sql_str(self.delimiter)
        line = f"concat_ws({separator}, {', '.join(parts)})" if parts else "''"
        if len(columns) == 1:
            return f"CASE WHEN {columns[0][1]} IS NOT NULL THEN encode({line}) END"
        return f"encode({line})"

    def encode_python(self, value: Any, columns: Sequence[Column]) -> bytes | None:
        return None if value is None else str(value).encode()

    def decode_python(self, data: bytes | None, columns: Sequence[Column], *, wrap_single_value: bool) -> Any:
        return None if data is None else data.decode()

    # -- helpers ----------------------------------------------------------------------------------
    def _fields_sql(self, text: str) -> str:
        """SQL splitting the line ``text`` into its fields' texts (quotes removed).

        A line without quotes is split literally (fast); otherwise a regular expression finds the
        fields, quoted ones holding delimiters and doubled quotes."""
        d = re.escape(self.delimiter)
        regex = sql_str(f'(?:^|{d})("(?:[^"]|"")*"|[^{d}"]*)')
        quoted = f"list_transform(regexp_extract_all({text}, {regex}, 1), lambda nbs_f: {_unquote_sql('nbs_f')})"
        plain = f"string_split({text}, {sql_str(self.delimiter)})"
        return f"(CASE WHEN contains({text}, '\"') THEN {quoted} ELSE {plain} END)"

    def _field_sql(self, expr: str, sql_type: SqlType, *, first: bool) -> str:
        """SQL writing ``expr`` as one CSV field: '' for NULL, quoted when commons-csv would.

        Numbers and booleans never hold a quote, CR, LF or trailing space, so unless the delimiter
        could occur in their text only a leading ``-`` in the first field needs quotes."""
        text = scalar_text_sql(expr, sql_type)
        alphabet = _SAFE_ALPHABETS.get(sql_type.name)
        if alphabet is None or self.delimiter in alphabet:
            return f"coalesce({self._quoted_sql(text, first=first)}, '')"
        if first and sql_type.name != "BOOLEAN":
            # temporal values write as epoch numbers (negative before 1970) but compare only to their own type
            numeric = sql_type.name in ("INTEGER", "BIGINT", "DECIMAL")
            negative = f"{expr} < 0" if numeric else f"starts_with({text}, '-')"
            text = f"CASE WHEN {negative} THEN concat('\"', {text}, '\"') ELSE {text} END"
        return f"coalesce({text}, '')"

    def _quoted_sql(self, text: str, *, first: bool) -> str:
        """SQL writing the VARCHAR ``text`` as one CSV field (quoted when commons-csv would)."""
        specials = sql_str('[\r\n"' + re.escape(self.delimiter) + "]")
        special = f"regexp_matches({text}, {specials})"
        tail = f"right({text}, 1) <= ' '"
        head = f"left({text}, 1) <= '#'"
        if first:
            alnum = f"regexp_matches(left({text}, 1), '^[0-9A-Za-z]$')"
            rule = f"{text} = '' OR NOT {alnum} OR {head} OR {special} OR {tail}"
        else:
            rule = f"{text} <> '' AND ({head} OR {special} OR {tail})"
        quoted = f"concat('\"', replace({text}, '\"', '\"\"'), '\"')"
        return f"(CASE WHEN {rule} THEN {quoted} ELSE {text} END)"


#: Characters the text of a number or boolean can hold, by type (see ``scalar_text_sql``).
_NUMBER = "0123456789-."
_SAFE_ALPHABETS = {
    "INTEGER": _NUMBER,
    "BIGINT": _NUMBER,
    "DECIMAL": _NUMBER,
    "TIMESTAMP": _NUMBER,
    "DATE": _NUMBER,
    "TIME": _NUMBER,
    "DOUBLE": _NUMBER + "EInfinityNa",
    "BOOLEAN": "truefalse",
}


def _unquote_sql(field: str) -> str:
    """SQL turning a raw CSV field into its text: enclosing quotes removed, doubled quotes undone."""
    return f"CASE WHEN starts_with({field}, '\"') THEN replace({field}[2:-2], '\"\"', '\"') ELSE {field} END"
