"""One error root for nbstream, one class per phase, and a source span on every error.

Every error the engine raises on purpose is an :class:`NbstreamError`. Errors caused by the
user's input also subclass the matching builtin (``ValueError``, ``TypeError``, ``KeyError``), so
ordinary Python code can catch them without knowing nbstream.

An error may carry a :class:`Span` into the SQL text it is about; ``str(error)`` then shows the
message followed by the offending line with the span underlined::

    line 1, column 15: mismatched input 'FORM'
      SELECT * FROM s FORM t
                      ^^^^
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A region of a SQL text: 1-based ``line``/``column`` of its start and its ``length``."""

    sql: str
    line: int
    column: int
    length: int = 1

    @classmethod
    def at(cls, sql: str, offset: int, length: int = 1) -> Span:
        """The span starting at character ``offset`` (0-based) of ``sql``."""
        offset = max(0, min(offset, len(sql)))
        line = sql.count("\n", 0, offset) + 1
        column = offset - (sql.rfind("\n", 0, offset) + 1) + 1
        return cls(sql, line, column, max(1, length))

    def highlight(self) -> str:
        """The line of the span with the span underlined by carets."""
        lines = self.sql.splitlines() or [""]
        text = lines[min(self.line, len(lines)) - 1]
        width = max(1, min(self.length, len(text) - self.column + 1))
        return f"  {text}\n  {' ' * (self.column - 1)}{'^' * width}"


class NbstreamError(Exception):
    """The root of every error nbstream raises on purpose."""

    def __init__(self, message: str, span: Span | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.span = span

    def __str__(self) -> str:
        if self.span is None:
            return self.message
        where = f"line {self.span.line}, column {self.span.column}"
        return f"{where}: {self.message}\n{self.span.highlight()}"


class ParseError(NbstreamError, ValueError):
    """The SQL text is not valid ksqlDB syntax."""


class BindError(NbstreamError, ValueError):
    """A name in a statement does not resolve, or a streaming rule is broken."""


class UnknownNameError(BindError, KeyError):
    """A stream, table, column, function or query name is unknown."""

    def __str__(self) -> str:  # KeyError would quote the message
        return NbstreamError.__str__(self)


class SqlTypeError(NbstreamError, TypeError):
    """An expression's types do not fit: names the column or function and the types."""


class PlanError(NbstreamError, ValueError):
    """A valid, bound statement cannot be planned (an unsupported combination)."""


class UnsupportedError(PlanError, NotImplementedError):
    """A feature ksqlDB has that nbstream does not support (yet)."""


class CatalogError(NbstreamError, ValueError):
    """A catalog rule is broken: a source exists already, is still in use, and so on."""


class FormatError(NbstreamError, ValueError):
    """A serialization format or its properties are invalid or unsupported for a schema."""


class UdfError(NbstreamError, ValueError):
    """A Python function cannot be registered as a SQL function (``@nbstream.udf``): its name,
    declared types or Python signature are not valid."""


class ExecutionError(NbstreamError, RuntimeError):
    """A running query or statement failed at run time."""


class LogError(NbstreamError, RuntimeError):
    """The event log (embedded or Kafka) refused an operation: unknown topic, bad partition…"""


def relocated(error: NbstreamError, start: Span, script: str) -> NbstreamError:
    """``error`` (its span relative to a statement's own text) with its span relative to the
    ``script`` the statement starts in at ``start``; ``error`` itself if it has no span or one
    into ``script`` already."""
    span = error.span
    if span is None or span.sql == script:
        return error
    line = start.line + span.line - 1
    column = span.column + (start.column - 1 if span.line == 1 else 0)
    moved = type(error).__new__(type(error))
    moved.__dict__.update(error.__dict__)
    moved.args = error.args
    moved.span = Span(script, line, column, span.length)
    return moved


class ExportError(NbstreamError, ValueError):
    """A notebook or an engine cannot be exported as a job: ``problems`` lists each thing that
    stops it, naming the notebook cell and line (or the engine's object) it is about."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = "\n".join("  - " + p.replace("\n", "\n    ") for p in self.problems)
        super().__init__(f"cannot export: {count} problem{'s' if count != 1 else ''}\n{lines}")


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A " Did you mean `X`?" suffix for the closest candidate, or an empty string."""
    pool = list(candidates)
    by_upper = {c.upper(): c for c in pool}
    close = difflib.get_close_matches(name.upper(), list(by_upper), n=1, cutoff=0.6)
    return f" Did you mean `{by_upper[close[0]]}`?" if close else ""


class ServerError(NbstreamError):
    """An error a ksqlDB-compatible server answered (:mod:`nbstream.client`), or the failure to get
    an answer from it.

    ``error_code`` is ksqlDB's (HTTP status * 100 + n, e.g. 40001 for a bad statement; None when no
    answer came); ``statement_text`` the statement it concerns, as the server quoted it back;
    ``entities`` what the statements of the same request before it answered. The subclass says whose
    fault it is: the statement's, the credentials', or the connection's.
    """

    def __init__(self, message: str, *, error_code: int | None = None, statement_text: str | None = None,
                 entities: tuple[dict[str, object], ...] = ()) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.statement_text = statement_text
        self.entities = entities

    def __str__(self) -> str:
        text = self.statement_text.strip() if self.statement_text else ""
        if not text or " ".join(text.split()).rstrip(";") in " ".join(self.message.split()):
            return self.message
        return f"{self.message}\nStatement: {text}"


class ServerStatementError(ServerError, ValueError):
    """The server refused a statement or request (ksqlDB's 400xx: a bad statement, an unknown name,
    a query sent to the wrong endpoint, too many push queries)."""


class ServerAuthError(ServerError, PermissionError):
    """The server refused the credentials (401xx) or the operation to this user (403xx)."""


class ServerUnavailable(ServerError, ConnectionError):
    """No answer: the server cannot be reached, TLS failed, it is not ready or shutting down (503xx),
    or it went away in the middle of a response."""
