"""How ``%%stream`` shows results and errors: tables as DataFrames, errors as a short message with
the SQL span underlined and no traceback."""

from __future__ import annotations

import duckdb

from nbstream.client import Statement
from nbstream.errors import NbstreamError, relocated


class StreamError(Exception):
    """An error a ``%%stream`` cell shows as its message alone.

    IPython prints what ``_render_traceback_`` returns instead of a traceback, and the cell still
    counts as failed (so "Run All" stops there).
    """

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(f"{kind}: {text}")
        self.kind = kind
        self.text = text

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31m{self.kind}\x1b[0m: {self.text}"]


def stream_error(error: Exception, statement: Statement | None, cell: str) -> StreamError:
    """``error`` (raised running ``statement`` of ``cell``) as a :class:`StreamError` whose span,
    if any, points into the cell."""
    if isinstance(error, duckdb.Error):
        return StreamError("DuckDB error", str(error))
    assert isinstance(error, NbstreamError)
    if error.span is not None and statement is not None and statement.span is not None:
        error = relocated(error, statement.span, cell)
    return StreamError(type(error).__name__, str(error))

