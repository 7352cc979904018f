"""Tab completion inside ``%%stream`` cells and ``%stream`` lines: ksqlDB keywords, the current
connection's streams, tables and columns, and function names (an IPython matcher, API v2)."""

from __future__ import annotations

import re

from IPython.core.completer import CompletionContext, SimpleCompletion, SimpleMatcherResult, context_matcher

from nbstream.client import completion
from nbstream.client.completion import KEYWORDS
from nbstream.notebook import session

__all__ = ["KEYWORDS", "candidates", "in_stream_magic", "stream_matcher"]

_FRAGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def in_stream_magic(context: CompletionContext) -> bool:
    """Whether the cursor is in a ``%%stream`` cell's body or on a ``%stream`` line."""
    lines = context.full_text.split("\n")
    if context.cursor_line > 0 and lines[0].lstrip().startswith("%%stream"):
        return True
    return context.line_with_cursor.lstrip().startswith("%stream ")


def candidates() -> dict[str, str]:
    """Every name completion offers, with its kind (the engine's or server's names win over keywords)."""
    return completion.candidates(session.current_connection())


@context_matcher(identifier="nbstream")
def stream_matcher(context: CompletionContext) -> SimpleMatcherResult:
    """IPython matcher: completions for the SQL word before the cursor in a stream magic."""
    match = _FRAGMENT.search(context.text_until_cursor)
    if not in_stream_magic(context) or match is None:
        return {"completions": [], "suppress": False}
    fragment = match.group(0)
    completions = [SimpleCompletion(name, type=kind) for name, kind in completion.matching(fragment, candidates())]
    return {"completions": completions, "matched_fragment": fragment, "suppress": True}
