"""The command line's statements, run and printed like ksqlDB's CLI: one :class:`Shell` over a
:class:`~nbstream.client.connection.Connection` — the embedded engine or a server, the same code
for both — that runs scripts (a file, ``-e``, standard input) and the interactive prompt.

- A script runs statement by statement and stops at the first error (exit status 1). Between
  statements the engine first processes what is pending (a script's results do not depend on
  timing); on a server that is the server's business.
- Results print as tables; a push query's rows print as they come, until its LIMIT or Ctrl-C, which
  stops the query — not the shell — while persistent queries keep running; ``PRINT`` likewise.
- ``SET``/``UNSET`` hold for the session; ``RUN SCRIPT 'file.sql'`` runs a file's statements.
- :func:`interactive` is the prompt (prompt_toolkit): a statement may span lines and runs once it
  ends with ``;``; history is kept across sessions in :func:`history_path`; Tab completes keywords,
  the connection's streams, tables, columns and functions; ``exit``, ``quit`` or Ctrl-D leave, and
  Ctrl-C at the prompt clears the line.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import pandas as pd
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from nbstream.client import Connection, Statement
from nbstream.client.completion import candidates, matching
from nbstream.errors import ExecutionError, NbstreamError
from nbstream.runtime.push import ERROR, QueueBatches
from nbstream.runtime.results import format_table
from nbstream.sql.parser import tokenize

#: Push-query rows print as they arrive, so column widths cannot be fitted to the data.
PUSH_COLUMN_WIDTH = 12

PROMPT = "ksql> "
CONTINUATION = "   > "  # lines after the first of a statement
EXIT_WORDS = ("exit", "quit")

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Shell:
    """Runs statements on ``connection``, printing results to ``out`` and errors to ``err``."""

    def __init__(self, connection: Connection, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.connection = connection
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def run_script(self, script: str) -> int:
        """Run every statement of ``script``, stopping at the first error; the exit status (0 or 1).
        Ctrl-C outside a push query or PRINT raises :class:`KeyboardInterrupt`."""
        try:
            statements = self.connection.statements(script)
            for statement in statements:
                self.run(statement)
            self.connection.settle()
        except NbstreamError as error:
            print(f"error: {error}", file=self.err, flush=True)
            return 1
        return 0

    def run(self, statement: Statement) -> None:
        """Run one statement and print what it answers."""
        self.connection.settle()
        if statement.kind == "run_script":
            if self.run_script(_read_script(statement)) != 0:
                raise ExecutionError(f"RUN SCRIPT '{statement.value}' stopped at an error")
        elif statement.kind == "push":
            self._stream(statement)
        elif statement.kind == "print":
            self._print_topic(statement)
        elif statement.kind == "pull":
            frame = self.connection.pull(statement, {})
            self._print(format_table(list(frame.columns), _cells(frame)))
        else:
            outcome = self.connection.run(statement, {})
            for text in (outcome.note, outcome.result):
                if text is not None and str(text):
                    self._print(str(text))

    def _stream(self, statement: Statement) -> None:
        """Print a push query's rows as they come, until its LIMIT, its end, or Ctrl-C (which stops it)."""
        query = self.connection.push(statement, {})
        rows = query.subscribe(QueueBatches())
        printer = RowPrinter(query.columns, self.out)
        try:
            while (batch := _next(rows)) is not None:
                printer.rows(batch.drop_columns(["ROWTIME", "__deleted"]).to_pylist(),
                             batch.column("__deleted").to_pylist())
        except KeyboardInterrupt:
            query.stop()
            self._print("Query terminated")
            return
        finally:
            query.stop()
        ending = rows.ending
        if ending is not None and ending.state == ERROR:
            raise ExecutionError(ending.error or f"{query.id} failed")
        if ending is not None and ending.state == "DONE":
            self._print("Limit Reached\nQuery terminated")

    def _print_topic(self, statement: Statement) -> None:
        lines = self.connection.print_topic(statement)
        try:
            for line in lines:
                self._print(line)
        except KeyboardInterrupt:
            self._print("Topic printing ceased")
        finally:
            close = getattr(lines, "close", None)
            if close is not None:
                close()

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def _next(rows: QueueBatches) -> Any:
    """The next batch (None: the query ended), waiting in short steps so that Ctrl-C gets through."""
    while True:
        with contextlib.suppress(queue.Empty):
            return rows.get(timeout=0.2)


class RowPrinter:
    """A push query's rows as table lines, printed as they come (a header line before the first);
    a table row that was deleted shows ``<TOMBSTONE>`` for its values, as ksqlDB's CLI shows it."""

    def __init__(self, columns: Sequence[str], out: TextIO) -> None:
        self.columns = list(columns)
        self.out = out
        self.widths = [max(len(c), PUSH_COLUMN_WIDTH) for c in self.columns]
        self.started = False

    def rows(self, rows: Iterable[dict[str, Any]], deleted: Iterable[bool | None]) -> None:
        for row, gone in zip(rows, deleted, strict=True):
            if not self.started:
                self._line(self.columns)
                self.started = True
            cells = ["" if row.get(c) is None else str(row[c]) for c in self.columns]
            self._line(["<TOMBSTONE>" if gone and not cell else cell for cell in cells])

    def _line(self, cells: Sequence[str]) -> None:
        print("|" + "|".join(f" {c:<{w}} " for c, w in zip(cells, self.widths, strict=True)) + "|",
              file=self.out, flush=True)


def _cells(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """A DataFrame's rows with missing values as None (printed empty), not NaN."""
    return [tuple(None if _missing(v) else v for v in row) for row in frame.itertuples(index=False)]


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array: not a missing scalar
        return False


def _read_script(statement: Statement) -> str:
    assert statement.value is not None
    try:
        return Path(statement.value).expanduser().read_text()
    except OSError as error:
        raise ExecutionError(f"RUN SCRIPT: cannot read '{statement.value}': {error.strerror or error}") from None


# -- the interactive prompt ------------------------------------------------------------------------------


def history_path() -> Path:
    """Where the prompt keeps its history: ``$XDG_DATA_HOME/nbstream/history`` (``~/.local/share``
    when the variable is not set; ``%APPDATA%`` on Windows)."""
    if os.name == "nt":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "nbstream" / "history"


def is_complete(text: str) -> bool:
    """Whether the prompt's ``text`` is ready to run: it ends with ``;`` (outside strings and
    comments), is a word that leaves the shell, or is empty."""
    stripped = text.strip()
    if not stripped or stripped.rstrip(";").strip().lower() in EXIT_WORDS:
        return True
    try:
        tokens = tokenize(text)
    except NbstreamError:
        return False  # an unterminated string or quoted name: the statement goes on
    return bool(tokens) and tokens[-1].text == ";"


class StatementCompleter(Completer):
    """Completes the word before the cursor with keywords and the connection's names."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        word = document.get_word_before_cursor(pattern=_WORD)
        if not word:
            return
        for name, kind in matching(word, candidates(self.connection)):
            yield Completion(name, start_position=-len(word), display_meta=kind)


def interactive(shell: Shell, history: Path | None = None) -> int:
    """The prompt: read statements and run them until ``exit`` or Ctrl-D; returns 0."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings

    path = history or history_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = KeyBindings()

    @keys.add("enter")
    def _enter(event: Any) -> None:
        buffer = event.current_buffer
        if is_complete(buffer.text):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n")

    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(path)), completer=StatementCompleter(shell.connection), multiline=True,
        key_bindings=keys, prompt_continuation=lambda width, line, wrapped: CONTINUATION,
        complete_while_typing=False)
    where = shell.connection.location()
    shell._print(f"nbstream sql — {'an in-memory engine' if where == 'in memory' else where}\n"
                 "Statements end with ';'. Ctrl-C stops a query; exit or Ctrl-D leaves.")
    while True:
        try:
            text = session.prompt(PROMPT)
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        if text.strip().rstrip(";").strip().lower() in EXIT_WORDS:
            break
        if text.strip():
            try:
                shell.run_script(text)
            except KeyboardInterrupt:
                shell._print("Cancelled")
    return 0
