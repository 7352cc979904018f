"""``%%stream`` and ``%stream``: ksqlDB statements in a notebook (thin: parsing of the magic line,
parameters, rendering; the engine does the rest).

``%%stream [NAME <<]`` runs a script of statements; pull queries and SHOW/DESCRIBE/EXPLAIN render as
tables, other statements print what they did, and ``NAME <<`` assigns the last statement's result
(a DataFrame for a table result). ``%stream`` runs one command (``queries``, ``stop ID|all``,
``status``, ``connect memory|PATH|kafka://host:port[?option=value&…]|http(s)://host:port``,
``export PATH …``: what the engine runs now, as a deployable job) or else statements like the
cell magic. Python values enter only as bound parameters ``:name`` looked up in the user's
namespace, never as SQL text (a server, which has no parameters, gets each as a literal token).
Statements run on the current connection (:mod:`nbstream.notebook.session`): the embedded engine or a
server, through one interface (:class:`~nbstream.client.connection.Connection`).
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import duckdb
import pandas as pd
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.display import HTML, display
from traitlets import Dict, Integer, Unicode

from nbstream.client import Connection, Statement
from nbstream.client.statements import split_script
from nbstream.errors import NbstreamError, UnknownNameError
from nbstream.export.pipeline import TARGETS, ExportOptions, export_engine
from nbstream.notebook import session
from nbstream.notebook.chart import ChartOption, ChartOptionError, split_chart_option
from nbstream.notebook.display import stream_error
from nbstream.notebook.live import LiveQuery, live_query
from nbstream.notebook.topology import topology_html
from nbstream.runtime.explain import EXPLAIN_COLUMNS
from nbstream.runtime.results import StatementResult
from nbstream.runtime.service import EngineService

_ASSIGN = re.compile(r"^\s*([A-Za-z_]\w*)\s*<<\s*(.*)$", re.DOTALL)


@dataclass(frozen=True)
class CellLine:
    """What the ``%%stream`` line says: the variable ``NAME <<`` assigns, if any, and the live chart
    ``--chart KIND x=COL y=COL [color=COL]`` asks for."""

    target: str | None
    chart: ChartOption | None = None


def parse_cell_line(line: str) -> CellLine:
    """Read the ``%%stream`` line; unknown or malformed options are a :class:`UsageError`."""
    try:
        line, chart = split_chart_option(line)
    except (ChartOptionError, ValueError) as error:
        raise UsageError(f"%%stream: {error}") from None
    match = _ASSIGN.match(line)
    target, rest = (match.group(1), match.group(2)) if match else (None, line)
    if rest.strip():
        raise UsageError(f"%%stream: unknown options {rest.strip()!r} (expected: [NAME <<] "
                         "[--chart KIND x=COL y=COL [color=COL]])")
    return CellLine(target, chart)


@magics_class
class StreamMagic(Magics):
    """The ``%%stream`` / ``%stream`` magics (configure with ``%config StreamMagic.<option>``)."""

    max_rows = Integer(200, help="Rows of a table result shown in the cell (the assigned value has all).").tag(
        config=True)
    live_rows = Integer(200, help="Rows a push query's live table keeps (the latest ones).").tag(config=True)
    kafka_options = Dict(help="Kafka client options for `%stream connect kafka://…` (the URL's own options "
                              "win); secrets as env:NAME or file:PATH references.").tag(config=True)
    server_user = Unicode(None, allow_none=True, help="User name for `%stream connect http(s)://…` (HTTP Basic), "
                                                      "or an env:NAME/file:PATH reference.").tag(config=True)
    server_password = Unicode(None, allow_none=True, help="Password for `%stream connect http(s)://…`: a "
                                                          "reference, env:NAME or file:PATH.").tag(config=True)
    server_ca_file = Unicode(None, allow_none=True, help="CA file verifying the TLS certificate of "
                                                         "`%stream connect https://…` (default: the system's).").tag(
        config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        self._cell_id: str | None = None
        self._pushes_by_cell: dict[str, list[LiveQuery]] = {}
        self._cell_chart: ChartOption | None = None

    def remember_cell(self, info: Any) -> None:
        """IPython's ``pre_run_cell`` hook: the id of the cell about to run (None outside a
        notebook). Its output, live views included, is about to be replaced, so the push queries
        it started when it last ran stop."""
        self._cell_id = getattr(info, "cell_id", None)
        self._stop_cell_pushes()

    @no_var_expand
    @line_cell_magic
    def stream(self, line: str, cell: str | None = None) -> Any:
        """``%%stream [NAME <<]`` runs the cell's statements (``NAME <<`` assigns the last result);
        ``%stream queries | stop ID|all | status | connect memory|PATH|kafka://…|http(s)://… | export PATH …`` or
        statements."""
        if cell is None:
            return self._line(line)
        options = parse_cell_line(line)
        if options.chart is not None and not _has_push_query(cell):
            raise UsageError("%%stream --chart draws a push query's rows: the cell has no SELECT … EMIT CHANGES")
        self._cell_chart = options.chart
        try:
            value = self._run_script(cell)
        finally:
            self._cell_chart = None
        if options.target is not None:
            self._user_ns()[options.target] = value
        return None

    def _line(self, line: str) -> Any:
        command, _, argument = line.strip().partition(" ")
        handler = getattr(self, f"_command_{command.lower()}", None)
        if handler is not None:
            return handler(argument.strip())
        self._run_script(line)
        return None

    def _user_ns(self) -> dict[str, Any]:
        assert self.shell is not None  # registered magics always have a shell
        return self.shell.user_ns

    # -- statements --------------------------------------------------------------------------------
    def _run_script(self, script: str) -> Any:
        """Run each statement of ``script`` in order, showing its result; returns the last value."""
        connection = session.current_connection()
        try:
            statements = connection.statements(script)
        except NbstreamError as error:
            raise stream_error(error, None, script) from None
        value: Any = None
        for statement in statements:
            try:
                value = self._run_statement(connection, statement)
            except (NbstreamError, duckdb.Error) as error:
                raise stream_error(error, statement, script) from None
        return value

    def _run_statement(self, connection: Connection, statement: Statement) -> Any:
        if statement.kind == "run_script":
            return self._run_script(_script_text(statement))
        params = bound_parameters(statement, self._user_ns())
        if statement.kind == "push":
            return self._push(connection, statement, params)
        if statement.kind == "pull":
            frame = connection.pull(statement, params)
            display(frame.head(self.max_rows))
            return frame
        outcome = connection.run(statement, params)  # a re-run cell: an unchanged CREATE does nothing
        if outcome.note is not None:
            print(outcome.note)
        return None if outcome.result is None else self._show(outcome.result)

    def _push(self, connection: Connection, statement: Statement, params: Mapping[str, object]) -> LiveQuery:
        push = live_query(connection.push(statement, params), self.live_rows)
        if self._cell_id is not None:
            self._pushes_by_cell.setdefault(self._cell_id, []).append(push)
        chart, self._cell_chart = self._cell_chart, None  # the cell's first push query draws it
        if chart is not None:
            try:
                push.chart_with(chart)
            except BaseException:
                push.stop()
                raise
        push.display()
        return push

    def _stop_cell_pushes(self) -> None:
        if self._cell_id is None:
            return
        previous = [p for p in self._pushes_by_cell.pop(self._cell_id, []) if p.state == "RUNNING"]
        for push in previous:
            push.stop()
        if previous:
            print(f"Stopped {', '.join(p.id for p in previous)} (started by this cell before).")

    def _show(self, result: StatementResult) -> Any:
        if result.columns == EXPLAIN_COLUMNS:
            display(HTML(topology_html(result.rows)))
        if result.columns:
            frame = result.to_pandas()
            display(frame.head(self.max_rows))
            return frame
        print(result.message)
        return result

    # -- commands ----------------------------------------------------------------------------------
    def _command_queries(self, argument: str) -> pd.DataFrame:
        _no_argument("queries", argument)
        return self._on_connection(lambda c: c.queries())

    def _command_stop(self, argument: str) -> None:
        if not argument:
            raise UsageError("%stream stop ID|all")
        stopped = self._on_connection(lambda c: c.stop_queries(argument))
        print(f"Stopped {', '.join(stopped)}." if stopped else "No running queries.")

    def _command_status(self, argument: str) -> None:
        _no_argument("status", argument)
        for line in self._on_connection(lambda c: c.status()):
            print(line)

    def _command_connect(self, argument: str) -> None:
        if not argument:
            raise UsageError("%stream connect memory|PATH|kafka://host:port[?option=value&…]|http(s)://host:port")
        server = session.ServerOptions(self.server_user, self.server_password, self.server_ca_file)
        try:
            connection = session.connect(argument, self.kafka_options, server)
        except NbstreamError as error:
            raise stream_error(error, None, argument) from None
        where = connection.location()
        print(f"Connected to {'an in-memory engine' if where == 'in memory' else where}.")

    def _command_export(self, argument: str) -> None:
        """``%stream export PATH [--to nbstream|ksqldb|migrations] [--name NAME] [--allow-missing-input]``:
        what the engine runs now, as a job (nbstream.export); on a server, export the notebook file."""
        out, name, options = parse_export_line(argument)
        engine = session.current_engine()
        if not isinstance(engine, EngineService):
            raise UsageError("%stream export exports the engine in this kernel; on a server, run "
                             "`nbstream export NOTEBOOK.ipynb` on the notebook file instead")
        try:
            report = export_engine(engine, out, name, options, lock=engine.lock)
        except NbstreamError as error:
            raise stream_error(error, None, argument) from None
        print(report)

    @staticmethod
    def _on_connection(command: Any) -> Any:
        """``command(connection)``, its error shown as the message alone."""
        try:
            return command(session.current_connection())
        except NbstreamError as error:
            raise stream_error(error, None, "") from None


def parse_export_line(argument: str) -> tuple[Path, str, ExportOptions]:
    """The folder, job name and options of ``%stream export``'s line; a :class:`UsageError` if wrong."""
    parser = _ExportLine(prog="%stream export", add_help=False)
    parser.add_argument("path")
    parser.add_argument("--to", choices=TARGETS, default="nbstream")
    parser.add_argument("--name")
    parser.add_argument("--allow-missing-input", action="store_true")
    try:
        args = parser.parse_args(shlex.split(argument))
        out = Path(args.path).expanduser()
        name = args.name or out.name.removesuffix("-job") or "job"
        return out, name, ExportOptions(target=args.to, name=name, allow_missing_input=args.allow_missing_input)
    except (ValueError, NbstreamError) as error:
        raise UsageError(f"{error}\n{EXPORT_USAGE}") from None


EXPORT_USAGE = "%stream export PATH [--to nbstream|ksqldb|migrations] [--name NAME] [--allow-missing-input]"


class _ExportLine(argparse.ArgumentParser):
    """Argument errors as exceptions, not an exit."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def _has_push_query(cell: str) -> bool:
    """Whether ``cell`` has a push query (a cell that does not split into statements answers yes:
    running it reports the error)."""
    try:
        statements = split_script(cell)
    except NbstreamError:
        return True
    return any(s.kind == "push" for s in statements)


def _script_text(statement: Statement) -> str:
    """The text of the file ``RUN SCRIPT 'file.sql'`` names."""
    assert statement.value is not None
    try:
        return Path(statement.value).expanduser().read_text()
    except OSError as error:
        raise UsageError(f"RUN SCRIPT: cannot read '{statement.value}': {error.strerror or error}") from None


def _no_argument(command: str, argument: str) -> None:
    if argument:
        raise UsageError(f"%stream {command} takes no argument")


def bound_parameters(statement: Statement, namespace: Mapping[str, Any]) -> dict[str, object]:
    """The values of the ``:name`` parameters ``statement`` uses, from ``namespace``."""
    params: dict[str, object] = {}
    for name in sorted(statement.parameters):
        if name not in namespace:
            raise UnknownNameError(f"no Python variable `{name}` for the parameter :{name}")
        params[name] = namespace[name]
    return params
