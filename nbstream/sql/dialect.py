"""ksqlDB's expression and SELECT syntax as a sqlglot dialect built on DuckDB's.

The dialect changes only what ksqlDB spells differently and then normalizes the tree so later
phases can rely on the conventions of :mod:`nbstream.sql.ast`:

* back-ticks and double quotes quote identifiers; strings escape ``'`` by doubling it only;
* no function name is mapped to a typed sqlglot node: every call is ``exp.Anonymous`` with an
  upper-cased name (``CAST`` and ``CASE`` are syntax);
* ``a->b`` is :class:`~nbstream.sql.ast.Dereference`, ``x => e`` is ``exp.Lambda``;
* ``STRUCT(a := 1)`` becomes ``exp.Struct`` and ``MAP(k := v)`` ``exp.VarMap``;
* types are ksqlDB's (``ARRAY<T>``, ``MAP<K, V>``, ``STRUCT<n T>``), read by :class:`TypeReader`.

The ksqlDB clauses around a SELECT (``WINDOW``, ``WITHIN``, ``PARTITION BY``, ``EMIT``) are lifted
out by :mod:`nbstream.sql.statements` before sqlglot sees the query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from sqlglot import exp, parser, tokens
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.parsers.duckdb import DuckDBParser
from sqlglot.tokens import Token, TokenType

from nbstream.catalog.types import SqlType
from nbstream.sql.ast import Dereference, StructStar

#: ksqlDB's simple type names (and accepted aliases) → canonical :class:`SqlType` names.
SIMPLE_TYPES = {
    "BOOLEAN": "BOOLEAN", "INT": "INTEGER", "INTEGER": "INTEGER", "BIGINT": "BIGINT",
    "DOUBLE": "DOUBLE", "STRING": "STRING", "VARCHAR": "STRING", "BYTES": "BYTES",
    "TIMESTAMP": "TIMESTAMP", "DATE": "DATE", "TIME": "TIME",
}

#: Tokens a bare name may be tokenized as, besides VAR (sqlglot keywords ksqlDB does not reserve).
_WORD_TYPES = frozenset({TokenType.VAR, TokenType.IDENTIFIER})


#: Join keywords sqlglot reserves that ksqlDB allows as struct field names after ``->``.
_JOIN_WORDS = frozenset({"INNER", "OUTER", "LEFT", "RIGHT", "FULL", "CROSS"})


def is_word(token: Token) -> bool:
    """Whether ``token`` reads as a name: an identifier or any keyword made of letters."""
    if token.token_type in _WORD_TYPES:
        return True
    text = token.text
    return token.token_type != TokenType.STRING and bool(text) and (text[0].isalpha() or text[0] == "_")


def word_value(token: Token) -> str:
    """A name token's value with ksqlDB's case rule: quoted keeps case, unquoted is upper-cased."""
    return token.text if token.token_type == TokenType.IDENTIFIER else token.text.upper()


class TypeError_(Exception):
    """Raised by :class:`TypeReader` with the offending token (converted to ParseError)."""

    def __init__(self, message: str, token: Token | None) -> None:
        super().__init__(message)
        self.token = token


class TypeReader:
    """Reads a ksqlDB type from a token list starting at ``pos``; tracks ``>>`` split in two. A
    name that is not one of ksqlDB's types is a custom type's (:meth:`SqlType.custom`).

    ``read()`` returns the :class:`SqlType`; ``pos`` is then past the type. A pending ``>`` (the
    second half of a ``>>`` token) is kept in ``pending_gt``.
    """

    def __init__(self, tokens_: list[Token], pos: int) -> None:
        self.tokens, self.pos, self.pending_gt = tokens_, pos, 0

    def _peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> Token:
        token = self._peek()
        if token is None:
            last = self.tokens[-1] if self.tokens else None
            raise TypeError_("mismatched input '<EOF>' expecting a type", last)
        self.pos += 1
        return token

    def _expect(self, text: str) -> None:
        token = self._take()
        if token.text != text:
            raise TypeError_(f"mismatched input '{token.text}' expecting '{text}'", token)

    def _close_angle(self) -> None:
        if self.pending_gt:
            self.pending_gt -= 1
            return
        token = self._take()
        if token.text == ">":
            return
        if token.text == ">>":
            self.pending_gt += 1
            return
        raise TypeError_(f"mismatched input '{token.text}' expecting '>'", token)

    def read(self) -> SqlType:
        token = self._take()
        name = token.text.upper()
        if token.token_type == TokenType.IDENTIFIER or not is_word(token):
            raise TypeError_(f"mismatched input '{token.text}' expecting a type", token)
        if name in SIMPLE_TYPES:
            return SqlType(SIMPLE_TYPES[name])
        if name == "DECIMAL":
            self._expect("(")
            precision = self._int()
            self._expect(",")
            scale = self._int()
            self._expect(")")
            return SqlType.decimal(precision, scale)
        if name in ("ARRAY", "MAP", "STRUCT"):
            self._expect("<")
            return self._nested(name)
        return SqlType.custom(name)  # a CREATE TYPE name, resolved when the statement is bound

    def _int(self) -> int:
        token = self._take()
        if token.token_type != TokenType.NUMBER or not token.text.isdigit():
            raise TypeError_(f"mismatched input '{token.text}' expecting an integer", token)
        return int(token.text)

    def _nested(self, name: str) -> SqlType:
        if name == "ARRAY":
            element = self.read()
            self._close_angle()
            return SqlType.array(element)
        if name == "MAP":
            key = self.read()
            self._expect(",")
            value = self.read()
            self._close_angle()
            return SqlType.map(key, value)
        fields: list[tuple[str, SqlType]] = []
        while not self._at_close():
            if fields:
                self._expect(",")
            field_token = self._take()
            if not is_word(field_token):
                raise TypeError_(f"mismatched input '{field_token.text}' expecting a field name", field_token)
            fields.append((word_value(field_token), self.read()))
        self._close_angle()
        return SqlType.struct(fields)

    def _at_close(self) -> bool:
        token = self._peek()
        return bool(self.pending_gt) or (token is not None and token.text in (">", ">>"))


def cast_to(this: exp.Expr | None, sql_type: SqlType) -> exp.Cast:
    """``CAST(this AS sql_type)`` as the parser makes it: ``to`` the DuckDB type (UNKNOWN while
    ``sql_type`` names a custom type: see :mod:`nbstream.analysis.custom_types`), ``meta["ksql_type"]``
    the ksqlDB type."""
    to = exp.DataType.build("UNKNOWN") if sql_type.has_custom else exp.DataType.build(sql_type.duckdb(),
                                                                                      dialect="duckdb")
    cast = exp.Cast(this=this, to=to)
    cast.meta["ksql_type"] = sql_type
    return cast


def _lambda(self: parser.Parser, expressions: list[exp.Expr]) -> exp.Expr:
    return self.expression(
        exp.Lambda(this=self._replace_lambda(self._parse_disjunction(), expressions), expressions=expressions)
    )


class KsqlParser(DuckDBParser):
    """DuckDB's parser with ksqlDB's operators and no function-name mapping."""

    FUNCTIONS: ClassVar[dict[str, Callable]] = {}
    FUNCTION_PARSERS: ClassVar[dict[str, Callable]] = {"CAST": lambda self: self._parse_ksql_cast()}
    NO_PAREN_FUNCTIONS: ClassVar[dict] = {}
    NO_PAREN_FUNCTION_PARSERS = {"CASE": lambda self: self._parse_case()}
    JSON_OPERATORS: ClassVar[dict] = {}
    COLUMN_OPERATORS = {k: v for k, v in DuckDBParser.COLUMN_OPERATORS.items() if k != TokenType.DCOLON}
    CAST_COLUMN_OPERATORS: ClassVar[set] = set()
    LAMBDAS = {TokenType.FARROW: _lambda}
    PLACEHOLDER_PARSERS = {
        TokenType.COLON: lambda self: (
            self.expression(exp.Placeholder(this=self._prev.text))
            if self._match_set(self.ID_VAR_TOKENS) or self._match(TokenType.NUMBER)
            else None
        ),
    }

    def _parse_expression(self) -> exp.Expr | None:
        # Skip DuckDB's prefix aliases (``foo: 1``): ksqlDB has none.
        return self._parse_alias(self._parse_assignment())

    def _parse_column(self) -> exp.Expr | None:
        return self._parse_arrows(super()._parse_column())

    def _parse_column_ops(self, this: exp.Expr | None) -> exp.Expr | None:
        return self._parse_arrows(super()._parse_column_ops(this))

    def _parse_arrows(self, this: exp.Expr | None) -> exp.Expr | None:
        """``this->field[->field…]``, each followed by any subscripts or dots; ``this->*`` ends the chain."""
        while this is not None and self._match(TokenType.ARROW):
            if self._match(TokenType.STAR):
                return self.expression(StructStar(this=this))
            token = self._curr
            if token is None or not self._is_field_name(token):
                self.raise_error("Expected a field name after '->'")
                return this
            self._advance()
            this = super()._parse_column_ops(self.expression(Dereference(this=this, field=word_value(token))))
        return this

    def _is_field_name(self, token: Token) -> bool:
        if token.token_type in self.ID_VAR_TOKENS or token.token_type in _WORD_TYPES:
            return True
        return token.text.upper() in _JOIN_WORDS

    def _parse_ksql_cast(self) -> exp.Expr:
        this = self._parse_disjunction()
        if not self._match(TokenType.ALIAS):
            self.raise_error("Expected AS after CAST(expression")
        reader = TypeReader(self._tokens, self._index)
        try:
            sql_type = reader.read()
        except TypeError_ as error:
            self._retreat(self.tokens_index(error.token))
            self.raise_error(str(error))
            raise
        self._retreat(reader.pos)
        return self.expression(cast_to(this, sql_type))

    def tokens_index(self, token: Token | None) -> int:
        """The index of ``token`` in the token list (the current index if it is not there)."""
        for i, candidate in enumerate(self._tokens):
            if candidate is token:
                return i
        return self._index


class Ksql(DuckDB):
    """The ksqlDB dialect (expressions and SELECT; statements are read by :mod:`.statements`)."""

    INDEX_OFFSET = 0  # keeps indexes as written (ksqlDB is 1-based); the compiler maps them
    NUMBERS_CAN_BE_UNDERSCORE_SEPARATED = False
    IDENTIFIERS_CAN_START_WITH_DIGIT = True  # ksqlDB reads `AS 1R` as a name

    class Tokenizer(DuckDB.Tokenizer):
        IDENTIFIERS = ['"', "`"]
        QUOTES = ["'"]
        STRING_ESCAPES = ["'"]
        IDENTIFIER_ESCAPES = ['"', "`"]
        BYTE_STRINGS: ClassVar[list] = []
        HEREDOC_STRINGS: ClassVar[list] = []
        NUMERIC_ESCAPES: ClassVar[dict] = {}
        SINGLE_TOKENS = {k: v for k, v in DuckDB.Tokenizer.SINGLE_TOKENS.items() if k != "$"}
        VAR_SINGLE_TOKENS: ClassVar[set] = set()
        KEYWORDS = {
            **{k: v for k, v in tokens.Tokenizer.KEYWORDS.items() if k not in ("/*+",)},
            "STRING": TokenType.TEXT,
            "VARCHAR": TokenType.TEXT,
            "TIMESTAMP": TokenType.TIMESTAMPNTZ,
        }
        COMMANDS: ClassVar[set] = set()

    Parser = KsqlParser


DIALECT = Ksql()


def normalize(tree: exp.Expr) -> exp.Expr:
    """Apply ksqlDB's naming rules to a parsed tree, in place; returns the (possibly new) root."""
    return tree.transform(_normalize_node, copy=False)


def _normalize_node(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.Identifier) and not node.quoted:
        node.set("this", node.this.upper())
        return node
    if isinstance(node, exp.Anonymous):
        return _anonymous(node)
    return node


def _anonymous(node: exp.Anonymous) -> exp.Expr:
    name = node.this
    name = name.name if isinstance(name, exp.Identifier) else str(name)
    args: list[Any] = list(node.expressions)
    upper = name.upper()
    if upper == "STRUCT" and all(isinstance(a, exp.PropertyEQ) for a in args):
        return exp.Struct(expressions=[_prop(a) for a in args])
    if upper == "MAP" and all(isinstance(a, exp.PropertyEQ) for a in args):
        keys = [_map_key(a.this) for a in args]
        values = [a.expression for a in args]
        return exp.VarMap(keys=exp.Array(expressions=keys), values=exp.Array(expressions=values))
    node.set("this", upper)
    return node


def _prop(arg: exp.PropertyEQ) -> exp.PropertyEQ:
    key = arg.this
    if isinstance(key, exp.Column) and not key.table:
        key = key.this
    if isinstance(key, exp.Identifier) and not key.quoted:
        key = exp.Identifier(this=key.name.upper(), quoted=False)
    return exp.PropertyEQ(this=key, expression=arg.expression)


def _map_key(key: exp.Expr) -> exp.Expr:
    return key
