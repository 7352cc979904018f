"""ksqlDB scripts → statements: splitting on ``;`` and reading each statement's own grammar.

A script is tokenized once (so strings, quoted names and comments never split it and every
position is a position in the script); each statement is read by :class:`StatementReader`, a
small recursive-descent layer over the tokens for ksqlDB's DDL and commands, which hands
SELECTs and expressions to :mod:`nbstream.sql.parser`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from sqlglot import exp
from sqlglot.tokens import Token, TokenType

from nbstream.catalog.types import SqlType
from nbstream.errors import NbstreamError, ParseError, Span, did_you_mean
from nbstream.sql import ast
from nbstream.sql.dialect import TypeError_, TypeReader
from nbstream.sql.parser import Cursor, read_expressions, read_query, token_span, tokenize

#: The words a statement can start with (for "did you mean" on a misspelling).
STATEMENT_WORDS = ("CREATE", "INSERT", "SELECT", "SHOW", "LIST", "DESCRIBE", "EXPLAIN", "DROP",
                   "TERMINATE", "SET", "UNSET", "PRINT")

_SHOWABLE = ("STREAMS", "TABLES", "TOPICS", "QUERIES", "FUNCTIONS", "PROPERTIES", "CONNECTORS",
             "VARIABLES", "TYPES")


def parse(script: str) -> list[ast.Statement]:
    """Parse a script of ``;``-separated ksqlDB statements (the last ``;`` is optional).

    Each statement carries its own SQL in ``.text`` and where it starts in ``.span``. Errors are
    :class:`~nbstream.errors.ParseError` with a span into ``script``.

    >>> [type(s).__name__ for s in parse("SHOW STREAMS; DROP TABLE t")]
    ['Show', 'Drop']
    """
    return [_read_statement(script, tokens) for tokens in split(script)]


def split(script: str) -> list[list[Token]]:
    """The script's tokens, one list per non-empty statement."""
    statements: list[list[Token]] = [[]]
    for token in tokenize(script):
        if token.token_type == TokenType.SEMICOLON:
            statements.append([])
        else:
            statements[-1].append(token)
    return [tokens for tokens in statements if tokens]


def _read_statement(script: str, tokens: list[Token]) -> ast.Statement:
    reader = StatementReader(script, tokens)
    try:
        return reader.statement()
    except NbstreamError as error:
        if isinstance(error, ParseError):
            raise
        raise ParseError(error.message, error.span or token_span(script, tokens[0])) from None


class StatementReader(Cursor):
    """Reads one statement from its tokens."""

    def statement(self) -> ast.Statement:
        """The whole statement; the tokens must end with it."""
        first = self.peek()
        assert first is not None
        handler = self._handlers().get(self.word())
        if handler is None:
            hint = did_you_mean(first.text, STATEMENT_WORDS) if first.token_type != TokenType.STRING else ""
            raise self.error(f"expecting a statement ({', '.join(STATEMENT_WORDS)}).{hint}".rstrip("."))
        start = self.pos
        self.take()
        result = handler()
        self.end()
        return self._finish(result, start)

    def _finish(self, statement: ast.Statement, start: int) -> ast.Statement:
        first, last = self.tokens[start], self.tokens[self.pos - 1]
        text = self.script[first.start:last.end + 1]
        return _with_position(statement, text, token_span(self.script, first))

    def _handlers(self) -> dict[str, Callable[[], ast.Statement]]:
        return {
            "CREATE": self._create, "INSERT": self._insert, "SELECT": self._select,
            "SHOW": self._show, "LIST": self._show, "DESCRIBE": self._describe,
            "EXPLAIN": self._explain, "DROP": self._drop, "TERMINATE": self._terminate,
            "SET": self._set, "UNSET": self._unset, "PRINT": self._print,
        }

    # -- CREATE ----------------------------------------------------------------------------------
    def _create(self) -> ast.Statement:
        or_replace = self.accept("OR", "REPLACE")
        modifier = self.word() if self.word() in ("SOURCE", "SINK") else None
        if modifier:
            self.take()
        if modifier and self.accept("CONNECTOR"):
            return self._create_connector(modifier)
        if modifier == "SINK":
            raise self.error("expecting CONNECTOR")
        if not (or_replace or modifier) and self.accept("TYPE"):
            return self._create_type()
        kind = self.word()
        if kind not in ("STREAM", "TABLE"):
            raise self.error("expecting STREAM or TABLE" + ("" if modifier else ", TYPE or SOURCE/SINK CONNECTOR"))
        self.take()
        if_not_exists = self.accept("IF", "NOT", "EXISTS")
        name = self.name("a stream or table name")
        columns = self._column_list() if self.peek_text("(") else ()
        properties = self._with_properties(upper_keys=True)
        if self.accept("AS"):
            if columns:
                raise self.error("expecting SELECT (a CREATE … AS SELECT has no column list)")
            query = read_query(self)
            if query.limit is not None:
                raise ParseError(f"CREATE {kind} AS SELECT statements don't support LIMIT clause.", query.span)
            return ast.CreateAsSelect(kind=kind, name=name, query=query,  # type: ignore[arg-type]
                                      properties=properties, or_replace=or_replace,
                                      if_not_exists=if_not_exists)
        return ast.CreateSource(kind=kind, name=name, columns=columns,  # type: ignore[arg-type]
                                properties=properties, or_replace=or_replace,
                                if_not_exists=if_not_exists, is_source=modifier == "SOURCE")

    def _create_type(self) -> ast.Statement:
        if_not_exists = self.accept("IF", "NOT", "EXISTS")
        name = self.name("a type name")
        self.expect("AS")
        return ast.CreateType(name=name, type=self.read_type(), if_not_exists=if_not_exists)

    def _create_connector(self, kind: str) -> ast.Statement:
        if_not_exists = self.accept("IF", "NOT", "EXISTS")
        name = self.name("a connector name")
        properties = self._with_properties(upper_keys=False)
        return ast.CreateConnector(kind=kind, name=name, properties=properties,  # type: ignore[arg-type]
                                   if_not_exists=if_not_exists)

    def peek_text(self, text: str) -> bool:
        token = self.peek()
        return token is not None and token.text == text and token.token_type != TokenType.STRING

    def _column_list(self) -> tuple[ast.ColumnDef, ...]:
        self.expect_text("(")
        columns = [self._column()]
        while self.accept_text(","):
            columns.append(self._column())
        self.expect_text(")")
        return tuple(columns)

    def _column(self) -> ast.ColumnDef:
        token = self.peek()
        name = self.name("a column name")
        sql_type = self.read_type()
        role, header_key = "VALUE", None
        if self.accept("PRIMARY", "KEY"):
            role = "PRIMARY KEY"
        elif self.accept("KEY"):
            role = "KEY"
        elif self.accept("HEADERS"):
            role = "HEADERS"
        elif self.accept("HEADER"):
            self.expect_text("(")
            role, header_key = "HEADER", self.string("a header key")
            self.expect_text(")")
        assert token is not None
        return ast.ColumnDef(name=name, type=sql_type, role=role, header_key=header_key,  # type: ignore[arg-type]
                             span=token_span(self.script, token))

    def read_type(self) -> SqlType:
        """A ksqlDB type at the cursor."""
        reader = TypeReader(self.tokens, self.pos)
        try:
            result = reader.read()
        except TypeError_ as error:
            span = token_span(self.script, error.token) if error.token else None
            raise ParseError(str(error), span) from None
        except NbstreamError as error:
            raise ParseError(error.message, token_span(self.script, self.tokens[self.pos])) from None
        if reader.pending_gt:
            raise self.error("mismatched '>'", self.tokens[reader.pos - 1])
        self.pos = reader.pos
        return result

    def _with_properties(self, *, upper_keys: bool) -> dict[str, ast.PropertyValue]:
        if not self.accept("WITH"):
            return {}
        self.expect_text("(")
        properties: dict[str, ast.PropertyValue] = {}
        while True:
            key_token = self.peek()
            if key_token is not None and key_token.token_type == TokenType.STRING:
                key = self.string()
            else:
                key = self.name("a property name")
            self.expect_text("=")
            properties[key.upper() if upper_keys else key] = self._literal()
            if not self.accept_text(","):
                break
        self.expect_text(")")
        return properties

    def _literal(self) -> ast.PropertyValue:
        """A property value as a Python literal: str, int, float, bool or None."""
        token = self.take()
        if token.token_type == TokenType.STRING:
            return token.text
        negative = token.text == "-"
        if negative:
            token = self.take()
        if token.token_type == TokenType.NUMBER:
            value = _number(token.text)
            return -value if negative else value
        upper = token.text.upper()
        if not negative and upper in ("TRUE", "FALSE"):
            return upper == "TRUE"
        if not negative and upper == "NULL":
            return None
        raise self.error("expecting a literal value", token)

    # -- INSERT, SELECT --------------------------------------------------------------------------
    def _insert(self) -> ast.Statement:
        self.expect("INTO")
        target = self.name("a stream or table name")
        columns = None
        if self.peek_text("("):
            self.take()
            names = [self.name("a column name")]
            while self.accept_text(","):
                names.append(self.name("a column name"))
            self.expect_text(")")
            columns = tuple(names)
        if self.accept("VALUES"):
            return ast.InsertValues(target=target, columns=columns, values=self._values())
        if columns is not None:
            raise self.error("expecting VALUES")
        properties = self._with_properties(upper_keys=True)
        return ast.InsertInto(target=target, query=read_query(self), properties=properties)

    def _values(self) -> tuple[exp.Expression, ...]:
        open_at = self.pos
        self.expect_text("(")
        depth, close_at = 1, self.pos
        while depth and close_at < len(self.tokens):
            kind = self.tokens[close_at].token_type
            depth += (kind == TokenType.L_PAREN) - (kind == TokenType.R_PAREN)
            close_at += 1
        if depth:
            raise self.error("expecting ')'", self.tokens[open_at])
        inner = self.tokens[self.pos:close_at - 1]
        values = tuple(read_expressions(self.script, inner)) if inner else ()
        self.pos = close_at
        return values

    def _select(self) -> ast.Statement:
        self.pos -= 1
        return ast.Select(query=read_query(self))

    # -- commands --------------------------------------------------------------------------------
    def _show(self) -> ast.Statement:
        self.accept("ALL")
        what = self.word()
        if what not in _SHOWABLE:
            raise self.error(f"expecting one of {', '.join(_SHOWABLE)}")
        self.take()
        return ast.Show(what=what, extended=self.accept("EXTENDED"))  # type: ignore[arg-type]

    def _describe(self) -> ast.Statement:
        if self.at("FUNCTION") and len(self.tokens) - self.pos >= 2:
            self.take()
            return ast.DescribeFunction(name=self.name("a function name"))
        if self.at("CONNECTOR") and len(self.tokens) - self.pos >= 2:
            self.take()
            return ast.DescribeConnector(name=self.name("a connector name"))
        extended = self.accept("EXTENDED")
        if self.word() in ("STREAMS", "TABLES"):
            all_of = self.word()
            self.take()
            extended = self.accept("EXTENDED") or extended
            return ast.Describe(name=None, extended=extended, all_of=all_of)  # type: ignore[arg-type]
        name = self.name("a stream or table name")
        return ast.Describe(name=name, extended=extended)

    def _explain(self) -> ast.Statement:
        if self.word() in ("SELECT", "CREATE", "INSERT"):
            start = self.pos
            inner = StatementReader(self.script, self.tokens[start:])
            statement = inner.statement()
            self.pos = len(self.tokens)
            return ast.Explain(statement=statement)
        return ast.Explain(query_id=self.name("a query id or a statement"))

    def _drop(self) -> ast.Statement:
        if self.accept("CONNECTOR"):
            if_exists = self.accept("IF", "EXISTS")
            return ast.DropConnector(name=self.name("a connector name"), if_exists=if_exists)
        if self.accept("TYPE"):
            if_exists = self.accept("IF", "EXISTS")
            return ast.DropType(name=self.name("a type name"), if_exists=if_exists)
        kind = self.word()
        if kind not in ("STREAM", "TABLE"):
            raise self.error("expecting STREAM, TABLE, TYPE or CONNECTOR")
        self.take()
        if_exists = self.accept("IF", "EXISTS")
        name = self.name("a stream or table name")
        delete_topic = self.accept("DELETE", "TOPIC")
        return ast.Drop(kind=kind, name=name, if_exists=if_exists, delete_topic=delete_topic)  # type: ignore[arg-type]

    def _terminate(self) -> ast.Statement:
        if self.accept("ALL"):
            return ast.Terminate(query_id=None)
        return ast.Terminate(query_id=self.name("a query id or ALL"))

    def _set(self) -> ast.Statement:
        name = self.string("a property name in quotes")
        self.expect_text("=")
        return ast.SetProperty(name=name, value=self.string("a property value in quotes"))

    def _unset(self) -> ast.Statement:
        return ast.UnsetProperty(name=self.string("a property name in quotes"))

    def _print(self) -> ast.Statement:
        token = self.peek()
        quoted = token is not None and token.token_type == TokenType.STRING
        topic = self.string() if quoted else self.name("a topic")
        from_beginning = self.accept("FROM", "BEGINNING")
        interval = limit = None
        while self.word() in ("INTERVAL", "SAMPLE", "LIMIT"):
            if self.take().text.upper() == "LIMIT":
                limit = self.integer()
            else:
                interval = self.integer()
        return ast.PrintTopic(topic=topic, from_beginning=from_beginning, interval=interval, limit=limit)


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _with_position(statement: ast.Statement, text: str, span: Span) -> ast.Statement:
    """A copy of ``statement`` with its text and span set (statements are frozen)."""
    return dataclasses.replace(statement, text=text, span=span)
