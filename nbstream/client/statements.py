"""A script as a client sees it: statements split on ``;``, each with its kind, read from its first
words — without nbstream's grammar, so that statements a ksqlDB server knows and nbstream does not
(``CREATE TYPE``, ``ASSERT``, ``PAUSE`` …) pass through to the server unchanged.

The script is tokenized once (strings, quoted names and comments never split it); a statement's
``:name`` tokens are its parameters. A server has no parameters, so :func:`with_literals` writes
each value into the statement as a SQL literal, token by token — a string quoted with its quotes
doubled, never pasted as text — the way ksqlDB's own variable substitution would, but safe.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from sqlglot.tokens import Token, TokenType

from nbstream.errors import ParseError, Span, UnsupportedError
from nbstream.sql import ast
from nbstream.sql.parser import token_span, tokenize
from nbstream.sql.statements import split

Kind = Literal["push", "pull", "print", "set", "unset", "run_script", "statement"]


@dataclass(frozen=True)
class Statement:
    """One statement of a script: its text (without the ``;``), where it starts in the script, its
    kind, the names of its ``:name`` parameters, and for ``SET``/``UNSET`` and ``RUN SCRIPT`` what
    they name (``name``, ``value``; ``value`` is the script's path). ``node`` is nbstream's parse of
    it, where the engine it runs on is nbstream's own."""

    text: str
    span: Span | None
    kind: Kind
    parameters: tuple[str, ...] = ()
    name: str | None = None
    value: str | None = None
    node: ast.Statement | None = field(default=None, compare=False)
    tokens: tuple[Token, ...] = field(default=(), compare=False, repr=False)


def split_script(script: str) -> list[Statement]:
    """The statements of ``script`` (a :class:`~nbstream.errors.ParseError` if it does not tokenize)."""
    statements = []
    for tokens in split(script):
        text = script[tokens[0].start:tokens[-1].end + 1]
        relative = tuple(tokenize(text))
        statements.append(_classified(text, token_span(script, tokens[0]), relative))
    return statements


def _classified(text: str, span: Span, tokens: tuple[Token, ...]) -> Statement:
    words = [t.text.upper() for t in tokens if t.token_type != TokenType.STRING][:2]
    first = words[0] if words else ""
    kind: Kind = "statement"
    name = value = None
    if first == "SELECT":
        kind = "push" if _emits(tokens) else "pull"
    elif first == "PRINT":
        kind = "print"
    elif first in ("SET", "UNSET"):
        kind = "set" if first == "SET" else "unset"
        name, value = _property(text, span, tokens, kind == "set")
    elif words == ["RUN", "SCRIPT"]:
        kind, value = "run_script", _script_path(text, span, tokens)
    return Statement(text, span, kind, _parameters(tokens), name, value, tokens=tokens)


def _emits(tokens: Sequence[Token]) -> bool:
    words = [t.text.upper() if t.token_type != TokenType.STRING else "" for t in tokens]
    return any(a == "EMIT" and b in ("CHANGES", "FINAL") for a, b in itertools.pairwise(words))


def _property(text: str, span: Span, tokens: Sequence[Token], with_value: bool) -> tuple[str, str | None]:
    """``SET 'name' = 'value'`` / ``UNSET 'name'``: the name and value."""
    strings = [t.text for t in tokens if t.token_type == TokenType.STRING]
    expected = 2 if with_value else 1
    if len(strings) != expected or len(tokens) != (4 if with_value else 2):
        usage = "SET 'name' = 'value'" if with_value else "UNSET 'name'"
        raise ParseError(f"expecting {usage}", _at(span, text))
    return strings[0], strings[1] if with_value else None


def _script_path(text: str, span: Span, tokens: Sequence[Token]) -> str:
    if len(tokens) != 3 or tokens[2].token_type != TokenType.STRING:
        raise ParseError("expecting RUN SCRIPT 'file.sql'", _at(span, text))
    return tokens[2].text


def _at(span: Span, text: str) -> Span:
    return Span(span.sql, span.line, span.column, len(text.splitlines()[0]) if text else 1)


def _parameters(tokens: Sequence[Token]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name.text for _, name in _placeholders(tokens)))


def _placeholders(tokens: Sequence[Token]) -> list[tuple[Token, Token]]:
    """``:name`` as tokens: a colon right before a name."""
    return [(colon, name) for colon, name in itertools.pairwise(tokens)
            if colon.token_type == TokenType.COLON and name.start == colon.end + 1
            and name.token_type != TokenType.STRING and name.text[:1].isidentifier()]


def with_literals(statement: Statement, params: Mapping[str, object]) -> str:
    """The statement's text with each ``:name`` replaced by the SQL literal of ``params[name]``."""
    if not statement.parameters:
        return statement.text
    pieces, at = [], 0
    for colon, name in _placeholders(statement.tokens):
        pieces += [statement.text[at:colon.start], sql_literal(name.text, params[name.text])]
        at = name.end + 1
    return "".join([*pieces, statement.text[at:]])


def sql_literal(name: str, value: object) -> str:
    """``value`` as a ksqlDB literal (an :class:`~nbstream.errors.UnsupportedError` for a value
    SQL cannot hold)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | decimal.Decimal):
        if isinstance(value, float) and not math.isfinite(value):
            raise UnsupportedError(f"parameter :{name}: {value} has no SQL literal")
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return _quoted(value.isoformat())
    if isinstance(value, str):
        return _quoted(value)
    if isinstance(value, list | tuple):
        return "ARRAY[" + ", ".join(sql_literal(name, v) for v in value) + "]"
    raise UnsupportedError(f"parameter :{name}: a {type(value).__name__} cannot be sent to a server "
                           "(str, int, float, Decimal, bool, None, dates and times, and lists of them can)")


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"

