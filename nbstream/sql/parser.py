"""The layer between ksqlDB statements and sqlglot: a token cursor, queries and expressions.

:class:`Cursor` walks the sqlglot tokens of one statement and reports errors as
:class:`~nbstream.errors.ParseError` with a span into the whole script. :func:`read_query` lifts
ksqlDB's streaming clauses (``WINDOW``, ``WITHIN … [GRACE PERIOD …]``, ``PARTITION BY``, ``EMIT``,
``LIMIT``) out of a SELECT's tokens, hands the rest to the :mod:`.dialect` parser, and builds a
:class:`~nbstream.sql.ast.Query`. No sqlglot exception leaves this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import sqlglot.errors
from sqlglot import exp
from sqlglot.errors import ErrorLevel
from sqlglot.tokens import Token, TokenType

from nbstream.errors import NbstreamError, ParseError, Span
from nbstream.sql.ast import Query, WindowSpec, Within
from nbstream.sql.dialect import DIALECT, KsqlParser, is_word, normalize, word_value

#: Milliseconds per ksqlDB time unit (singular and plural spellings).
UNIT_MS = {
    "MILLISECOND": 1, "SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000,
}
UNIT_MS.update({f"{unit}S": ms for unit, ms in list(UNIT_MS.items())})

_WINDOW_KINDS = ("TUMBLING", "HOPPING", "SESSION")


def tokenize(script: str) -> list[Token]:
    """The script's tokens in ksqlDB's dialect; comments ride on the tokens they precede."""
    try:
        return DIALECT.tokenize(script)
    except sqlglot.errors.TokenError as error:
        raise ParseError(f"cannot read the SQL text: {error}", _tokenizer_span(script)) from None


def _tokenizer_span(script: str) -> Span:
    quote_at = _unterminated_quote(script)
    return Span.at(script, quote_at if quote_at is not None else max(0, len(script) - 1))


def _unterminated_quote(script: str) -> int | None:
    """Where an unterminated string or quoted identifier starts (comments skipped), if any."""
    i, n = 0, len(script)
    while i < n:
        ch = script[i]
        if script.startswith("--", i):
            i = script.find("\n", i) if "\n" in script[i:] else n
        elif script.startswith("/*", i):
            end = script.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch in "'`\"":
            end = script.find(ch, i + 1)
            while end >= 0 and script.startswith(ch * 2, end):
                end = script.find(ch, end + 2)
            if end < 0:
                return i
            i = end + 1
        else:
            i += 1
    return None


def token_span(script: str, token: Token) -> Span:
    """The span of ``token`` in ``script``."""
    return Span.at(script, token.start, token.end - token.start + 1)


class Cursor:
    """A position in the tokens of one statement, with ksqlDB-style error messages."""

    def __init__(self, script: str, tokens: list[Token]) -> None:
        self.script, self.tokens, self.pos = script, tokens, 0

    # -- looking -------------------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token | None:
        i = self.pos + ahead
        return self.tokens[i] if i < len(self.tokens) else None

    def word(self, ahead: int = 0) -> str:
        """The upper-cased text of an unquoted word token ``ahead``, else ``""``."""
        token = self.peek(ahead)
        if token is None or token.token_type in (TokenType.STRING, TokenType.IDENTIFIER):
            return ""
        return token.text.upper()

    def at(self, *words: str) -> bool:
        """Whether the next tokens spell ``words`` (sqlglot makes ``PARTITION BY`` one token)."""
        return self._spell(words) is not None

    def _spell(self, words: tuple[str, ...]) -> int | None:
        """How many tokens spell ``words`` from the cursor, or None."""
        wanted, used = list(words), 0
        while wanted:
            parts = self.word(used).split()
            if not parts or parts != wanted[:len(parts)]:
                return None
            wanted, used = wanted[len(parts):], used + 1
        return used

    @property
    def done(self) -> bool:
        return self.pos >= len(self.tokens)

    # -- taking --------------------------------------------------------------------------------
    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise self.error("expecting more input")
        self.pos += 1
        return token

    def accept(self, *words: str) -> bool:
        used = self._spell(words)
        if used is None:
            return False
        self.pos += used
        return True

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            raise self.error(f"expecting {' '.join(words)}")

    def accept_text(self, text: str) -> bool:
        token = self.peek()
        if token is not None and token.text == text and token.token_type != TokenType.STRING:
            self.pos += 1
            return True
        return False

    def expect_text(self, text: str) -> None:
        if not self.accept_text(text):
            raise self.error(f"expecting '{text}'")

    def name(self, what: str = "a name") -> str:
        """A source, column or query name: quoted keeps case, unquoted is upper-cased."""
        token = self.peek()
        if token is None or not is_word(token):
            raise self.error(f"expecting {what}")
        self.pos += 1
        return word_value(token)

    def string(self, what: str = "a string") -> str:
        token = self.peek()
        if token is None or token.token_type != TokenType.STRING:
            raise self.error(f"expecting {what}")
        self.pos += 1
        return token.text

    def integer(self, what: str = "an integer") -> int:
        token = self.peek()
        if token is None or token.token_type != TokenType.NUMBER or not token.text.isdigit():
            raise self.error(f"expecting {what}")
        self.pos += 1
        return int(token.text)

    def end(self) -> None:
        if not self.done:
            raise self.error("expecting ';'")

    # -- errors --------------------------------------------------------------------------------
    def error(self, expecting: str, token: Token | None = None) -> ParseError:
        """A ParseError at ``token`` (default: the current one) naming what was found."""
        token = token or self.peek()
        if token is None:
            last = self.tokens[-1] if self.tokens else None
            span = Span.at(self.script, last.end + 1 if last else len(self.script))
            return ParseError(f"mismatched input '<EOF>' {expecting}", span)
        return ParseError(f"mismatched input '{token.text}' {expecting}", token_span(self.script, token))


# ---------------------------------------------------------------------------------------------
# sqlglot bridge
# ---------------------------------------------------------------------------------------------


def run_sqlglot(script: str, tokens: list[Token]) -> exp.Expr:
    """Parse ``tokens`` (one SELECT, or ``SELECT`` + an expression list) with the dialect."""
    parser = KsqlParser(error_level=ErrorLevel.IMMEDIATE, dialect=DIALECT)
    try:
        trees = parser.parse(tokens, script)
    except sqlglot.errors.ParseError as error:
        raise _convert(script, tokens, error) from None
    except NbstreamError:
        raise
    except (sqlglot.errors.SqlglotError, ValueError, TypeError, AttributeError, LookupError) as error:
        span = token_span(script, tokens[0]) if tokens else None
        raise ParseError(f"cannot parse: {error}", span) from None
    found = [t for t in trees if t is not None]
    if len(found) != 1:
        raise ParseError("expecting one query", token_span(script, tokens[0]) if tokens else None)
    return normalize(found[0])


def _convert(script: str, tokens: list[Token], error: sqlglot.errors.ParseError) -> ParseError:
    detail = error.errors[0] if error.errors else {}
    description = str(detail.get("description") or error).split(". Line ")[0]
    line, col = detail.get("line"), detail.get("col")
    token = next((t for t in tokens if t.line == line and t.col == col), None)
    if token is None:
        end = tokens[-1].end + 1 if tokens else len(script)
        return ParseError(f"mismatched input '<EOF>': {description}", Span.at(script, end))
    message = f"mismatched input '{token.text}'"
    if "Unexpected token" not in description and "Invalid expression" not in description:
        message += f": {description}"
    return ParseError(message, token_span(script, token))


def _select_token(at: Token) -> Token:
    return Token(TokenType.SELECT, "SELECT", at.line, at.col, at.start, at.start - 1)


def read_expressions(script: str, tokens: list[Token]) -> list[exp.Expression]:
    """A comma-separated expression list; ``tokens`` must hold just that list."""
    if not tokens:
        raise ParseError("expecting an expression", Span.at(script, len(script)))
    select = run_sqlglot(script, [_select_token(tokens[0]), *tokens])
    if not isinstance(select, exp.Select) or any(v for k, v in select.args.items() if k != "expressions"):
        raise ParseError("expecting an expression", token_span(script, tokens[0]))
    # sqlglot types the list as its ``Expr`` trait; the parser builds concrete ``Expression`` nodes.
    return cast(list[exp.Expression], list(select.expressions))


def parse_expression(text: str) -> exp.Expression:
    """One ksqlDB expression, under the conventions of :mod:`nbstream.sql.ast`.

    >>> parse_expression("ucase(name)").sql()
    'UCASE(NAME)'
    """
    tokens = tokenize(text)
    expressions = read_expressions(text, tokens)
    if len(expressions) != 1 or tokens[-1].token_type == TokenType.COMMA:
        raise ParseError("expecting one expression", Span.at(text, 0, len(text)))
    result = expressions[0]
    if isinstance(result, exp.Alias):
        raise ParseError("mismatched input 'AS': expecting one expression", Span.at(text, 0, len(text)))
    return result


# ---------------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------------


@dataclass
class _Lifted:
    """The ksqlDB clauses cut out of a SELECT's tokens."""

    window: WindowSpec | None = None
    within: dict[int, Within] | None = None
    partition_tokens: list[Token] | None = None
    emit: str | None = None


def read_query(cursor: Cursor) -> Query:
    """The SELECT from the cursor's position to the end of its tokens."""
    start = cursor.pos
    if cursor.word() != "SELECT":
        raise cursor.error("expecting SELECT")
    rest, lifted = _lift(cursor)
    select = run_sqlglot(cursor.script, rest)
    if not isinstance(select, exp.Select):
        raise cursor.error("expecting SELECT", cursor.tokens[start])
    for index, within in (lifted.within or {}).items():
        joins = select.args.get("joins") or []
        if index < len(joins):
            joins[index].meta["within"] = within
    partition_by: tuple[exp.Expression, ...] = ()
    if lifted.partition_tokens is not None:
        partition_by = tuple(read_expressions(cursor.script, lifted.partition_tokens))
    for clause in ("order", "offset", "distinct", "qualify"):  # SQL a ksqlDB query has not: never ignored
        if select.args.get(clause):
            raise ParseError(f"Syntax Error: ksqlDB queries have no {clause.upper()}{' BY' * (clause == 'order')}",
                             token_span(cursor.script, cursor.tokens[start]))
    limit = _lift_limit(cursor, select)
    cursor.pos = len(cursor.tokens)
    return Query(
        select=select, window=lifted.window, partition_by=partition_by,
        emit=lifted.emit, limit=limit,  # type: ignore[arg-type]
        span=token_span(cursor.script, cursor.tokens[start]),
    )


def _lift_limit(cursor: Cursor, select: exp.Select) -> int | None:
    limit = select.args.get("limit")
    if limit is None:
        return None
    value = limit.expression
    negative = isinstance(value, exp.Neg)  # taken: a pull query refuses it with ksqlDB's words, a push query too
    if negative:
        value = value.this
    if isinstance(value, exp.Literal) and value.is_number and not value.is_int:  # ksqlDB's words
        raise ParseError("Failed to prepare statement: Value must be integer for command: LIMIT",
                         token_span(cursor.script, cursor.tokens[-1]))
    if not (isinstance(value, exp.Literal) and value.is_int):
        raise ParseError("LIMIT expects an integer", token_span(cursor.script, cursor.tokens[-1]))
    select.set("limit", None)
    return -int(value.name) if negative else int(value.name)


def _lift(cursor: Cursor) -> tuple[list[Token], _Lifted]:
    """Walk the SELECT's tokens at paren depth 0, cutting out ksqlDB's clauses."""
    kept: list[Token] = []
    lifted = _Lifted()
    depth, joins = 0, 0
    while not cursor.done:
        token = cursor.peek()
        assert token is not None
        if depth == 0 and _lift_one(cursor, lifted, joins):
            continue
        if token.token_type in (TokenType.L_PAREN, TokenType.L_BRACKET):
            depth += 1
        elif token.token_type in (TokenType.R_PAREN, TokenType.R_BRACKET):
            depth -= 1
        elif depth == 0 and token.token_type == TokenType.JOIN:
            joins += 1
        kept.append(cursor.take())
    return kept, lifted


def _lift_one(cursor: Cursor, lifted: _Lifted, joins: int) -> bool:
    """Cut one ksqlDB clause at the cursor, if one starts there."""
    word = cursor.word()
    if word == "WINDOW" and (cursor.word(1) in _WINDOW_KINDS or cursor.word(2) in _WINDOW_KINDS):
        cursor.take()
        lifted.window = read_window(cursor)
        return True
    if word == "WITHIN" and joins:
        cursor.take()
        lifted.within = {**(lifted.within or {}), joins - 1: read_within(cursor)}
        return True
    if word == "EMIT" and cursor.word(1) in ("CHANGES", "FINAL"):
        lifted.emit = cursor.word(1)
        cursor.pos += 2
        return True
    if cursor.accept("PARTITION", "BY"):
        lifted.partition_tokens = _partition_tokens(cursor)
        return True
    return False


def _partition_tokens(cursor: Cursor) -> list[Token]:
    """The tokens of a PARTITION BY list: up to HAVING, EMIT, LIMIT or the end, at depth 0."""
    taken: list[Token] = []
    depth = 0
    while not cursor.done:
        token = cursor.peek()
        assert token is not None
        if depth == 0 and cursor.word() in ("HAVING", "EMIT", "LIMIT"):
            break
        if token.token_type == TokenType.L_PAREN:
            depth += 1
        elif token.token_type == TokenType.R_PAREN:
            depth -= 1
        taken.append(cursor.take())
    return taken


def read_duration(cursor: Cursor) -> int:
    """``n UNIT`` in milliseconds."""
    count = cursor.integer("expecting a duration")
    unit = cursor.word()
    if unit not in UNIT_MS:
        raise cursor.error("expecting a time unit (MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS)")
    cursor.take()
    return count * UNIT_MS[unit]


def read_window(cursor: Cursor) -> WindowSpec:
    """After ``WINDOW``: ``[name] TUMBLING|HOPPING|SESSION ( … )``, durations in ms."""
    if cursor.word() not in _WINDOW_KINDS:
        cursor.take()  # an optional window name
    kind = cursor.word()
    cursor.take()
    cursor.expect_text("(")
    advance = None
    if kind == "SESSION":
        size = read_duration(cursor)
    else:
        cursor.expect("SIZE")
        size = read_duration(cursor)
        if kind == "HOPPING":
            cursor.expect_text(",")
            cursor.expect("ADVANCE", "BY")
            advance = read_duration(cursor)
    retention, grace = _window_options(cursor)
    cursor.expect_text(")")
    return WindowSpec(kind=kind, size_ms=size, advance_ms=advance,  # type: ignore[arg-type]
                      grace_ms=grace, retention_ms=retention)


def _window_options(cursor: Cursor) -> tuple[int | None, int | None]:
    retention = grace = None
    while cursor.accept_text(","):
        if cursor.accept("RETENTION"):
            retention = read_duration(cursor)
        elif cursor.accept("GRACE", "PERIOD"):
            grace = read_duration(cursor)
        else:
            raise cursor.error("expecting RETENTION or GRACE PERIOD")
    return retention, grace


def read_within(cursor: Cursor) -> Within:
    """After ``WITHIN``: ``n UNIT`` or ``(before UNIT, after UNIT)``, then ``[GRACE PERIOD n UNIT]``."""
    if cursor.accept_text("("):
        before = read_duration(cursor)
        cursor.expect_text(",")
        after = read_duration(cursor)
        cursor.expect_text(")")
    else:
        before = after = read_duration(cursor)
    grace = read_duration(cursor) if cursor.accept("GRACE", "PERIOD") else None
    return Within(before_ms=before, after_ms=after, grace_ms=grace)
