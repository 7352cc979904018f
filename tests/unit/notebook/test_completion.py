"""Tab completion in ``%%stream`` cells offers keywords, the engine's streams, tables and columns,
and functions, in the case the user types."""

from __future__ import annotations

from IPython.core.completer import provisionalcompleter
from IPython.core.interactiveshell import InteractiveShell
from ipython_cells import run

PAGEVIEWS = """%%stream
CREATE STREAM pageviews (userid VARCHAR KEY, pageid VARCHAR)
  WITH (KAFKA_TOPIC='pageviews', VALUE_FORMAT='JSON', PARTITIONS=1);
"""


def complete(shell: InteractiveShell, text: str) -> dict[str, str]:
    """The completions at the end of ``text``, with their kinds."""
    with provisionalcompleter():
        return {c.text: c.type for c in shell.Completer.completions(text, len(text))}


def test_a_cell_completes_streams_and_columns_of_the_engine(shell: InteractiveShell) -> None:
    run(shell, PAGEVIEWS)
    assert complete(shell, "%%stream\nSELECT * FROM PAGE") == {"PAGEVIEWS": "stream", "PAGEID": "column"}
    assert complete(shell, "%%stream\nSELECT use") == {"userid": "column"}


def test_keywords_and_functions_complete_in_the_case_typed(shell: InteractiveShell) -> None:
    assert complete(shell, "%%stream\nSELECT * FROM s EMIT CHAN") == {"CHANGES": "keyword"}
    assert complete(shell, "%%stream\nselect ucas")["ucase"] == "function"


def test_a_stream_line_completes_too(shell: InteractiveShell) -> None:
    assert "DESCRIBE" in complete(shell, "%stream DESCR")


def test_python_cells_are_left_to_python_completion(shell: InteractiveShell) -> None:
    shell.user_ns["pageviews_count"] = 3
    completions = complete(shell, "pagev")
    assert "pageviews_count" in completions and "PAGEVIEWS" not in completions
