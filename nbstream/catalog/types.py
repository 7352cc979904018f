"""ksqlDB's SQL types and their mapping to DuckDB and Arrow.

A :class:`SqlType` is immutable and hashable. ``str(t)`` is ksqlDB's own rendering (as in
``DESCRIBE``: ``STRUCT<`A` INTEGER, `B` ARRAY<STRING>>``); :meth:`SqlType.duckdb` is the DuckDB type
the runtime computes with. :func:`parse_type` reads either spelling, so types that DuckDB infers for
an expression come back as ksqlDB types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nbstream.errors import SqlTypeError

#: ksqlDB base type names, and the DuckDB type each computes as.
_SIMPLE_TO_DUCKDB = {
    "BOOLEAN": "BOOLEAN",
    "INTEGER": "INTEGER",
    "BIGINT": "BIGINT",
    "DOUBLE": "DOUBLE",
    "STRING": "VARCHAR",
    "BYTES": "BLOB",
    "TIMESTAMP": "TIMESTAMP",
    "DATE": "DATE",
    "TIME": "TIME",
}

#: Every spelling accepted by :func:`parse_type` for a simple type (ksqlDB's and DuckDB's).
_SIMPLE_ALIASES = {
    "BOOLEAN": "BOOLEAN", "BOOL": "BOOLEAN",
    "INT": "INTEGER", "INTEGER": "INTEGER", "INT4": "INTEGER",
    "SMALLINT": "INTEGER", "TINYINT": "INTEGER", "UTINYINT": "INTEGER", "USMALLINT": "INTEGER",
    "BIGINT": "BIGINT", "INT8": "BIGINT", "LONG": "BIGINT", "UINTEGER": "BIGINT", "HUGEINT": "BIGINT",
    "DOUBLE": "DOUBLE", "FLOAT": "DOUBLE", "REAL": "DOUBLE", "FLOAT8": "DOUBLE",
    "STRING": "STRING", "VARCHAR": "STRING", "TEXT": "STRING",
    "BYTES": "BYTES", "BLOB": "BYTES", "BYTEA": "BYTES",
    "TIMESTAMP": "TIMESTAMP", "TIMESTAMP_MS": "TIMESTAMP", "DATETIME": "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP", "TIMESTAMPTZ": "TIMESTAMP",
    "DATE": "DATE", "TIME": "TIME",
    "JSON": "STRING",
    "NULL": "NULL", '"NULL"': "NULL",
}


@dataclass(frozen=True)
class SqlType:
    """A ksqlDB type. ``name`` is one of BOOLEAN INTEGER BIGINT DOUBLE DECIMAL STRING BYTES
    TIMESTAMP DATE TIME ARRAY MAP STRUCT (or NULL, the type of a bare ``NULL`` literal).

    A statement may also name a custom type (``CREATE TYPE``): the parser reads ``ADDRESS`` as
    :meth:`custom` (``name`` CUSTOM, ``custom_name`` ADDRESS), which binding replaces by the type it
    stands for (:meth:`nbstream.catalog.custom_types.TypeRegistry.resolve`); nothing computes with one."""

    name: str
    precision: int | None = None
    scale: int | None = None
    element: SqlType | None = None  # ARRAY element, MAP value
    key: SqlType | None = None  # MAP key
    fields: tuple[tuple[str, SqlType], ...] = ()  # STRUCT fields in order
    custom_name: str | None = None  # CUSTOM: the name of the custom type (upper case)

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def decimal(cls, precision: int, scale: int) -> SqlType:
        if not precision >= 1 or not 0 <= scale <= precision:
            raise SqlTypeError(f"DECIMAL({precision}, {scale}): need 1 <= precision and 0 <= scale <= precision")
        return cls("DECIMAL", precision=precision, scale=scale)

    @classmethod
    def array(cls, element: SqlType) -> SqlType:
        return cls("ARRAY", element=element)

    @classmethod
    def map(cls, key: SqlType, value: SqlType) -> SqlType:
        return cls("MAP", key=key, element=value)

    @classmethod
    def struct(cls, fields: list[tuple[str, SqlType]] | tuple[tuple[str, SqlType], ...]) -> SqlType:
        return cls("STRUCT", fields=tuple(fields))

    @classmethod
    def custom(cls, name: str) -> SqlType:
        """A reference to the custom type ``name`` (case-insensitive), to be resolved when bound."""
        return cls("CUSTOM", custom_name=name.upper())

    @property
    def has_custom(self) -> bool:
        """Whether this type is, or holds, a reference to a custom type."""
        nested = (self.element, self.key, *(t for _, t in self.fields))
        return self.name == "CUSTOM" or any(t is not None and t.has_custom for t in nested)

    # -- predicates ---------------------------------------------------------------------------
    @property
    def is_numeric(self) -> bool:
        return self.name in ("INTEGER", "BIGINT", "DOUBLE", "DECIMAL")

    @property
    def is_nested(self) -> bool:
        return self.name in ("ARRAY", "MAP", "STRUCT")

    def field(self, name: str) -> SqlType | None:
        """The type of STRUCT field ``name`` (exact match first, then case-insensitive)."""
        for fname, ftype in self.fields:
            if fname == name:
                return ftype
        for fname, ftype in self.fields:
            if fname.upper() == name.upper():
                return ftype
        return None

    # -- renderings ---------------------------------------------------------------------------
    def __str__(self) -> str:
        if self.name == "DECIMAL":
            return f"DECIMAL({self.precision}, {self.scale})"
        if self.name == "ARRAY":
            return f"ARRAY<{self.element}>"
        if self.name == "MAP":
            return f"MAP<{self.key}, {self.element}>"
        if self.name == "STRUCT":
            inner = ", ".join(f"{quote_identifier(n)} {t}" for n, t in self.fields)
            return f"STRUCT<{inner}>"
        if self.name == "CUSTOM":
            return str(self.custom_name)
        return self.name

    def duckdb(self) -> str:
        """The DuckDB type this type computes as."""
        if self.name in _SIMPLE_TO_DUCKDB:
            return _SIMPLE_TO_DUCKDB[self.name]
        if self.name == "DECIMAL":
            return f"DECIMAL({min(self.precision or 38, 38)}, {self.scale})"
        if self.name == "ARRAY":
            assert self.element is not None
            return f"{self.element.duckdb()}[]"
        if self.name == "MAP":
            assert self.key is not None and self.element is not None
            return f"MAP({self.key.duckdb()}, {self.element.duckdb()})"
        if self.name == "STRUCT":
            inner = ", ".join(f'"{n}" {t.duckdb()}' for n, t in self.fields)
            return f"STRUCT({inner})" if self.fields else "STRUCT"
        if self.name == "NULL":
            return '"NULL"'
        if self.name == "CUSTOM":
            raise SqlTypeError(f"the custom type {self.custom_name} was not resolved")
        raise SqlTypeError(f"no DuckDB type for {self}")


BOOLEAN = SqlType("BOOLEAN")
INTEGER = SqlType("INTEGER")
BIGINT = SqlType("BIGINT")
DOUBLE = SqlType("DOUBLE")
STRING = SqlType("STRING")
BYTES = SqlType("BYTES")
TIMESTAMP = SqlType("TIMESTAMP")
DATE = SqlType("DATE")
TIME = SqlType("TIME")
NULL = SqlType("NULL")


def quote_identifier(name: str) -> str:
    """ksqlDB's rendering of a column name: back-ticked (as DESCRIBE prints it)."""
    return "`" + name.replace("`", "``") + "`"


_TOKEN = re.compile(r"\s*(`(?:[^`]|``)*`|\"(?:[^\"]|\"\")*\"|[A-Za-z_][A-Za-z0-9_]*|\d+|\[\]|[<>(),])")


def parse_type(text: str, *, keep_case: bool = False) -> SqlType:
    """Parse a type in ksqlDB spelling (``ARRAY<INT>``, ``STRUCT<A INT>``) or DuckDB spelling
    (``INTEGER[]``, ``STRUCT(A INTEGER)``, ``MAP(VARCHAR, INTEGER)``).

    Unquoted STRUCT field names are upper-cased as ksqlDB does, unless ``keep_case`` (for types
    DuckDB reports, whose field names are already exact)."""
    tokens = _tokenize(text)
    parser = _TypeParser(tokens, text, keep_case)
    result = parser.type()
    if parser.pos != len(tokens):
        raise SqlTypeError(f"unexpected {tokens[parser.pos]!r} in type {text!r}")
    return result


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise SqlTypeError(f"cannot read type {text!r} at {text[pos:]!r}")
        tokens.append(m.group(1))
        pos = m.end()
    return tokens


class _TypeParser:
    def __init__(self, tokens: list[str], text: str, keep_case: bool) -> None:
        self.tokens, self.text, self.pos, self.keep_case = tokens, text, 0, keep_case

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise SqlTypeError(f"expected {expected or 'a type'} in type {self.text!r}")
        self.pos += 1
        return tok

    def type(self) -> SqlType:
        result = self._base()
        while self.peek() == "[]":
            self.take()
            result = SqlType.array(result)
        return result

    def _base(self) -> SqlType:
        word = self.take().upper()
        if word == "TIMESTAMP" and [t.upper() for t in self.tokens[self.pos:self.pos + 3]] == ["WITH", "TIME", "ZONE"]:
            self.pos += 3
        if word in ("DECIMAL", "NUMERIC"):
            if self.peek() != "(":
                return SqlType.decimal(18, 3)
            self.take("(")
            precision = int(self.take())
            scale = 0
            if self.peek() == ",":
                self.take(",")
                scale = int(self.take())
            self.take(")")
            return SqlType.decimal(precision, scale)
        if word in ("ARRAY", "LIST"):
            close = self._open()
            element = self.type()
            self.take(close)
            return SqlType.array(element)
        if word == "MAP":
            close = self._open()
            key = self.type()
            self.take(",")
            value = self.type()
            self.take(close)
            return SqlType.map(key, value)
        if word == "STRUCT":
            if self.peek() not in ("<", "("):  # DuckDB's spelling of the empty struct
                return SqlType.struct([])
            close = self._open()
            fields: list[tuple[str, SqlType]] = []
            while self.peek() != close:
                fields.append((self._field_name(), self.type()))
                if self.peek() == ",":
                    self.take(",")
            self.take(close)
            return SqlType.struct(fields)
        if word in ("VARCHAR", "STRING") and self.peek() == "(":  # VARCHAR(n): length is ignored
            self.take("(")
            self.take()
            self.take(")")
        if word in _SIMPLE_ALIASES:
            return SqlType(_SIMPLE_ALIASES[word])
        raise SqlTypeError(f"unknown type {word!r} in {self.text!r}")

    def _open(self) -> str:
        tok = self.take()
        if tok == "<":
            return ">"
        if tok == "(":
            return ")"
        raise SqlTypeError(f"expected '<' or '(' in type {self.text!r}")

    def _field_name(self) -> str:
        tok = self.take()
        if tok[0] in "`\"":
            return tok[1:-1].replace(tok[0] * 2, tok[0])
        return tok if self.keep_case else tok.upper()
