"""What :meth:`Engine.execute` returns: one :class:`StatementResult` per statement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

#: The values of a statement's ``:name`` placeholders, by name.
Params = Mapping[str, object]


@dataclass(frozen=True)
class StatementResult:
    """The outcome of one statement.

    ``message`` says what happened ("Stream PAGEVIEWS created", "Created query with ID …");
    SHOW/DESCRIBE/EXPLAIN results also carry ``columns`` and ``rows``; statements that start a
    persistent query carry its ``query_id``.
    """

    statement: str
    message: str
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    query_id: str | None = None
    source: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_pandas(self) -> pd.DataFrame:
        """The rows as a DataFrame (empty for statements that return none)."""
        return pd.DataFrame(list(self.rows), columns=list(self.columns))

    def __str__(self) -> str:
        if not self.columns:
            return self.message
        return format_table(self.columns, self.rows)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table like ksqlDB's CLI prints."""
    text = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(columns))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: list[str]) -> str:
        return "|" + "|".join(f" {c:<{w}} " for c, w in zip(cells, widths, strict=True)) + "|"

    body = [line(r) for r in text[1:]]
    return "\n".join([rule, line(text[0]), rule, *body, rule])
