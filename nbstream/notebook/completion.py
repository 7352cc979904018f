"""Tab completion inside ``%%stream`` cells and ``%stream`` lines: ksqlDB keywords, the current
engine's streams, tables and columns, and function names (an IPython matcher, API v2)."""

from __future__ import annotations

import re

from IPython.core.completer import CompletionContext, SimpleCompletion, SimpleMatcherResult, context_matcher

from nbstream.catalog import functions
from nbstream.notebook import session

KEYWORDS = (
    "CREATE", "STREAM", "TABLE", "SOURCE", "OR", "REPLACE", "IF", "NOT", "EXISTS", "AS", "SELECT", "FROM",
    "WHERE", "GROUP", "BY", "HAVING", "PARTITION", "WINDOW", "TUMBLING", "HOPPING", "SESSION", "SIZE",
    "ADVANCE", "GRACE", "PERIOD", "EMIT", "CHANGES", "FINAL", "LIMIT", "JOIN", "LEFT", "RIGHT", "FULL",
    "OUTER", "INNER", "ON", "WITHIN", "INSERT", "INTO", "VALUES", "DROP", "DELETE", "TOPIC", "TERMINATE",
    "SHOW", "LIST", "STREAMS", "TABLES", "TOPICS", "QUERIES", "FUNCTIONS", "PROPERTIES", "DESCRIBE",
    "EXTENDED", "EXPLAIN", "PRINT", "SET", "UNSET", "WITH", "KEY", "PRIMARY", "AND", "IN", "IS", "NULL",
    "LIKE", "BETWEEN", "CASE", "WHEN", "THEN", "ELSE", "END", "CAST", "TRUE", "FALSE", "SECONDS",
    "MINUTES", "HOURS", "DAYS", "MILLISECONDS", "KAFKA_TOPIC", "VALUE_FORMAT", "KEY_FORMAT", "PARTITIONS",
    "TIMESTAMP", "ROWTIME", "WINDOWSTART", "WINDOWEND", "SINK", "CONNECTOR", "CONNECTORS",
)

_FRAGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def in_stream_magic(context: CompletionContext) -> bool:
    """Whether the cursor is in a ``%%stream`` cell's body or on a ``%stream`` line."""
    lines = context.full_text.split("\n")
    if context.cursor_line > 0 and lines[0].lstrip().startswith("%%stream"):
        return True
    return context.line_with_cursor.lstrip().startswith("%stream ")


def candidates() -> dict[str, str]:
    """Every name completion offers, with its kind (later kinds win over keywords)."""
    found = dict.fromkeys(KEYWORDS, "keyword")
    found.update(dict.fromkeys(functions.function_names(), "function"))
    engine = session.current_engine()
    with engine.lock:
        sources = list(engine.catalog.sources.values())
    for source in sources:
        found.update(dict.fromkeys((c.name for c in source.schema.columns), "column"))
    found.update({s.name: s.kind.lower() for s in sources})
    return found


@context_matcher(identifier="nbstream")
def stream_matcher(context: CompletionContext) -> SimpleMatcherResult:
    """IPython matcher: completions for the SQL word before the cursor in a stream magic."""
    match = _FRAGMENT.search(context.text_until_cursor)
    if not in_stream_magic(context) or match is None:
        return {"completions": [], "suppress": False}
    fragment = match.group(0)
    lower = fragment[0].islower()
    completions = [
        SimpleCompletion(name.lower() if lower else name, type=kind)
        for name, kind in sorted(candidates().items())
        if name.upper().startswith(fragment.upper())
    ]
    return {"completions": completions, "matched_fragment": fragment, "suppress": True}
