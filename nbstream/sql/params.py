"""Bound parameters ``:name``: finding them in a statement, and writing values into its text.

A notebook binds ``:name`` from a Python variable when a statement runs and never pastes the value
into the SQL (:func:`placeholders` lists the names to look up). An exported job has no Python: there
:func:`bind_text` writes each value into the statement's text as a SQL literal, once, where the
export was asked to (``nbstream export --param name=value``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator, Mapping

from sqlglot import exp
from sqlglot.tokens import TokenType

from nbstream.errors import BindError
from nbstream.sql.dialect import DIALECT


def placeholders(node: object) -> Iterator[str]:
    """The names of the ``:name`` parameters in a statement (or any part of one)."""
    if isinstance(node, exp.Expression):
        yield from (p.name for p in node.find_all(exp.Placeholder))
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            yield from placeholders(getattr(node, f.name))
    elif isinstance(node, list | tuple):
        for item in node:
            yield from placeholders(item)
    elif isinstance(node, dict):
        for item in node.values():
            yield from placeholders(item)


def sql_literal(value: object) -> str:
    """``value`` (None, a bool, a number or a string) as a ksqlDB literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BindError(f"{value} has no SQL literal")
        text = repr(value)
        return text if "e" in text else f"{text}E0"  # a DOUBLE literal, as the bound value was (1.5 is a DECIMAL)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise BindError(f"a {type(value).__name__} cannot be written as a SQL literal")


def bind_text(text: str, values: Mapping[str, object]) -> str:
    """``text`` with every ``:name`` placeholder replaced by ``values[name]`` as a literal (strings,
    quoted identifiers and comments are left alone); a :class:`BindError` names a missing value."""
    tokens = DIALECT.tokenize(text)
    pieces: list[str] = []
    done = 0
    for colon, name in itertools.pairwise(tokens):
        if colon.token_type != TokenType.COLON or name.start != colon.end + 1 or name.token_type == TokenType.STRING:
            continue
        if name.text not in values:
            raise BindError(f"no value for the parameter :{name.text}")
        pieces += [text[done:colon.start], sql_literal(values[name.text])]
        done = name.end + 1
    return "".join(pieces) + text[done:]
