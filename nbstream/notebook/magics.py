"""``%%stream`` and ``%stream``: ksqlDB statements in a notebook (thin: parsing of the magic line,
parameters, rendering; the engine does the rest).

``%%stream [NAME <<]`` runs a script of statements; pull queries and SHOW/DESCRIBE/EXPLAIN render as
tables, other statements print what they did, and ``NAME <<`` assigns the last statement's result
(a DataFrame for a table result). ``%stream`` runs one command (``queries``, ``stop ID|all``,
``status``, ``connect memory|PATH|kafka://host:port[?option=value&…]``) or else statements like the
cell magic. Python values enter
only as bound parameters ``:name`` looked up in the user's namespace, never as SQL text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.display import HTML, display
from sqlglot import exp
from traitlets import Dict, Integer

from nbstream.errors import CatalogError, NbstreamError, UnknownNameError
from nbstream.notebook import session
from nbstream.notebook.background import NotebookEngine
from nbstream.notebook.chart import ChartOption, ChartOptionError, split_chart_option
from nbstream.notebook.display import stream_error
from nbstream.notebook.live import PushQuery, kernel_deliverer
from nbstream.notebook.topology import topology_html
from nbstream.runtime.explain import EXPLAIN_COLUMNS
from nbstream.runtime.results import StatementResult
from nbstream.sql import ast, parse

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

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        self._cell_id: str | None = None
        self._pushes_by_cell: dict[str, list[PushQuery]] = {}
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
        ``%stream queries | stop ID|all | status | connect memory|PATH|kafka://…`` or statements."""
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
        engine = session.current_engine()
        try:
            statements = parse(script)
        except NbstreamError as error:
            raise stream_error(error, None, script) from None
        value: Any = None
        for statement in statements:
            try:
                value = self._run_statement(engine, statement)
            except (NbstreamError, duckdb.Error) as error:
                raise stream_error(error, statement, script) from None
        return value

    def _run_statement(self, engine: NotebookEngine, statement: ast.Statement) -> Any:
        params = bound_parameters(statement, self._user_ns())
        if isinstance(statement, ast.Select):
            return self._select(engine, statement, params)
        unchanged = unchanged_message(engine, statement)
        if unchanged is not None:
            print(unchanged)
            return None
        replaced = drop_changed(engine, statement)
        (result,) = engine.execute(statement.text, params)
        if replaced is not None:
            print(replaced)
        return self._show(result)

    def _select(self, engine: NotebookEngine, statement: ast.Select, params: Mapping[str, object]) -> Any:
        if statement.query.emit is not None:
            push = engine.start_push(statement.text, params, kernel_deliverer(), self.live_rows)
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
        frame = engine.query(statement.text, params)
        display(frame.head(self.max_rows))
        return frame

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
        return queries_frame(session.current_engine())

    def _command_stop(self, argument: str) -> None:
        if not argument:
            raise UsageError("%stream stop ID|all")
        engine = session.current_engine()
        with engine.lock:
            stopped = stop_queries(engine, argument)
        print(f"Stopped {', '.join(stopped)}." if stopped else "No running queries.")

    def _command_status(self, argument: str) -> None:
        _no_argument("status", argument)
        engine = session.current_engine()
        running = sum(q.state == "RUNNING" for q in engine.persistent_queries())
        print(f"engine: {engine.location()}; background loop: "
              f"{'running' if engine.background.running else 'stopped'}; running queries: {running}")
        for failure in engine.background.failures:
            print(f"failed: {failure}")

    def _command_connect(self, argument: str) -> None:
        if not argument:
            raise UsageError("%stream connect memory|PATH|kafka://host:port[?option=value&…]")
        try:
            engine = session.connect(argument, self.kafka_options)
        except NbstreamError as error:
            raise stream_error(error, None, argument) from None
        where = engine.location()
        print(f"Connected to {'an in-memory engine' if where == 'in memory' else where}.")


def _has_push_query(cell: str) -> bool:
    """Whether ``cell`` has a push query (a cell that does not parse answers yes: running it
    reports the parse error)."""
    try:
        statements = parse(cell)
    except NbstreamError:
        return True
    return any(isinstance(s, ast.Select) and s.query.emit is not None for s in statements)


def _no_argument(command: str, argument: str) -> None:
    if argument:
        raise UsageError(f"%stream {command} takes no argument")


def stop_queries(engine: NotebookEngine, which: str) -> list[str]:
    """Stop the persistent or push query with id ``which``, or every running one (``all``);
    returns the ids stopped."""
    if which.lower() == "all":
        persistent = engine.catalog.running()
        pushes = [q for q in engine.push_queries.values() if q.state == "RUNNING"]
    elif which.upper() in engine.push_queries:
        persistent, pushes = [], [engine.push_queries[which.upper()]]
    else:
        persistent, pushes = [engine.catalog.get_query(which)], []
    for query in persistent:
        engine.queries.stop(query)
    for push in pushes:
        push.stop()
    return [q.id for q in persistent] + [p.id for p in pushes]


def queries_frame(engine: NotebookEngine) -> pd.DataFrame:
    """One row per query, persistent then push: id, state, sink, counters, input rate, last error."""
    rows = []
    for query in engine.persistent_queries():
        with engine.lock:
            stats = engine.queries.runner(query.id).stats
        busy = stats.busy_seconds
        rows.append({
            "id": query.id, "state": query.state, "sink": query.sink,
            "consumed": stats.consumed, "emitted": stats.emitted, "logged": stats.logged,
            "events/s (busy)": round(stats.consumed / busy) if busy > 0 else 0,
            "error": stats.last_error, "sql": query.sql,
        })
    with engine.lock:
        pushes = list(engine.push_queries.values())
    for push in pushes:
        rows.append({"id": push.id, "state": push.state, "sink": None, "consumed": None,
                     "emitted": push.rows_seen, "logged": None, "events/s (busy)": None,
                     "error": push.error, "sql": push.sql})
    return pd.DataFrame(rows, columns=list(_QUERY_COLUMNS))


_QUERY_COLUMNS = ("id", "state", "sink", "consumed", "emitted", "logged", "events/s (busy)", "error", "sql")


def unchanged_message(engine: NotebookEngine, statement: ast.Statement) -> str | None:
    """A message when ``statement`` re-creates a stream, table or connector exactly as it exists
    (a re-run cell), else None. OR REPLACE and IF NOT EXISTS keep their own meaning."""
    if isinstance(statement, ast.CreateConnector) and not statement.if_not_exists:
        with engine.lock:
            running = engine.connectors.running.get(statement.name)
        if running is None or _normal(running.sql) != _normal(statement.text):
            return None
        return f"Connector {statement.name} exists with the same definition: nothing to do."
    if not isinstance(statement, ast.CreateSource | ast.CreateAsSelect):
        return None
    if statement.or_replace or statement.if_not_exists:
        return None
    with engine.lock:
        existing = engine.catalog.find(statement.name)
    if existing is None or existing.sql is None or _normal(existing.sql) != _normal(statement.text):
        return None
    return f"{existing.kind.capitalize()} {statement.name} exists with the same definition: nothing to do."


def drop_changed(engine: NotebookEngine, statement: ast.Statement) -> str | None:
    """When a re-run cell changed the CREATE of an existing stream or table: drop the old one, so
    that ``statement`` creates it anew, and say what was replaced (None: nothing to replace).

    The query that created it is terminated and, for a ``CREATE … AS SELECT``, the topic it wrote is
    deleted: the new query rebuilds it from its input. A declared stream or table over a topic keeps
    the topic. Raises :class:`CatalogError`, naming them, if other queries read it or write to it."""
    if not isinstance(statement, ast.CreateSource | ast.CreateAsSelect) or statement.or_replace \
            or statement.if_not_exists:
        return None
    with engine.lock:
        existing = engine.catalog.find(statement.name)
        if existing is None or existing.sql is None or _normal(existing.sql) == _normal(statement.text):
            return None
        queries = [q for q in engine.catalog.queries.values() if q.state == "RUNNING"]
        creator = [q.id for q in queries if q.sink == existing.name and _normal(q.sql) == _normal(existing.sql)]
        others = sorted(q.id for q in queries if q.id not in creator
                        and (existing.name in q.sources or q.sink == existing.name))
    kind = existing.kind.capitalize()
    if others:
        raise CatalogError(f"{kind} {existing.name} changed, but queries [{', '.join(others)}] read from it or "
                           f"write to it: terminate them first (%stream stop ID), then run this cell again.")
    delete_topic = " DELETE TOPIC" if isinstance(parse(existing.sql)[0], ast.CreateAsSelect) else ""
    engine.execute("".join(f"TERMINATE {q};" for q in creator) + f"DROP {existing.kind} {existing.name}{delete_topic};")
    rebuilt = f", its query {creator[0]} terminated and its topic rebuilt" if creator and delete_topic else ""
    return f"{kind} {existing.name} changed: replaced{rebuilt}."


def _normal(sql: str) -> str:
    return " ".join(sql.split())


def bound_parameters(statement: ast.Statement, namespace: Mapping[str, Any]) -> dict[str, object]:
    """The values of the ``:name`` parameters ``statement`` uses, from ``namespace``."""
    params: dict[str, object] = {}
    for name in sorted(placeholders(statement)):
        if name not in namespace:
            raise UnknownNameError(f"no Python variable `{name}` for the parameter :{name}")
        params[name] = namespace[name]
    return params


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
