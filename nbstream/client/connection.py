"""What the faces run statements on: one interface, two kinds of engine.

A :class:`Connection` is the engine in this process (:class:`LocalConnection`, over an
:class:`~nbstream.runtime.service.EngineService`) or a ksqlDB-compatible server
(:class:`~nbstream.client.remote.RemoteConnection`, over its REST API). The notebook's magics and
the command line's shell are written once, against this interface: they split a script into
:class:`~nbstream.client.statements.Statement`\\ s and, by each one's kind, ``run`` it (and show the
:class:`Outcome`), ``pull`` it (a DataFrame), ``push`` it (a
:class:`~nbstream.runtime.push.PushSource` to subscribe to, whose rows feed the same live views and
printers wherever they come from) or ``print_topic`` it (lines until its LIMIT).

Property changes (``SET``/``UNSET``) hold for the connection: the local engine keeps them, a
remote connection sends them with every request, as ksqlDB's CLI does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from nbstream.catalog import functions
from nbstream.client.statements import Statement, split_script
from nbstream.errors import NbstreamError, UnsupportedError, relocated
from nbstream.runtime.push import PushSource
from nbstream.runtime.results import Params, StatementResult
from nbstream.runtime.service import EngineService
from nbstream.runtime.topics import POLL_INTERVAL_S, TopicPrinter, format_header
from nbstream.sql import ast, parse

#: Seconds PRINT lets persistent queries run between polls of its topic.
PRINT_IDLE_S = 0.5


@dataclass(frozen=True)
class Outcome:
    """What running a statement did: ``note`` says there was nothing to do or what was replaced
    first (None: neither); ``result`` is the statement's answer (None: it has none to show)."""

    note: str | None
    result: StatementResult | None


class Connection(Protocol):
    """An engine the faces talk to (see the module docstring). Methods raise
    :class:`~nbstream.errors.NbstreamError`\\ s with the engine's or the server's message."""

    def location(self) -> str:
        """Where the engine is, for display."""
        ...

    def statements(self, script: str) -> list[Statement]:
        """The statements of ``script``, each checked as far as this engine can before any runs (a
        :class:`~nbstream.errors.ParseError` with a span into ``script``)."""
        ...

    def run(self, statement: Statement, params: Params) -> Outcome:
        """Run a statement that is not a query (SET and UNSET hold for the connection)."""
        ...

    def pull(self, statement: Statement, params: Params) -> pd.DataFrame:
        """A pull query's rows."""
        ...

    def push(self, statement: Statement, params: Params) -> PushSource:
        """Start a push query; subscribe to its rows, ``stop()`` it when done."""
        ...

    def print_topic(self, statement: Statement) -> Iterator[str]:
        """``PRINT``'s lines as the records come, until its LIMIT (close the iterator to stop)."""
        ...

    def queries(self) -> pd.DataFrame:
        """One row per query the engine runs: id, state, sink, sql and what else it knows."""
        ...

    def stop_queries(self, which: str) -> list[str]:
        """Stop query ``which`` (or ``all`` this connection may stop); the ids stopped."""
        ...

    def status(self) -> list[str]:
        """Lines saying where the engine is and how it is doing."""
        ...

    def names(self) -> dict[str, str]:
        """Names to complete, with their kind: ``stream``, ``table``, ``column``, ``function``."""
        ...

    def settle(self) -> None:
        """Process what is pending before the next statement (so that a script's results do not
        depend on timing), where the engine can."""
        ...

    def close(self) -> None:
        ...


class LocalConnection:
    """The engine in this process as a :class:`Connection`; its background loop runs its queries.

    With ``reruns``, a statement runs as a re-run notebook cell runs it: an unchanged CREATE does
    nothing, a changed one replaces what the old one made (:meth:`EngineService.rerun`)."""

    def __init__(self, engine: EngineService, *, reruns: bool = False) -> None:
        self.engine = engine
        self.reruns = reruns
        engine.background.start()

    def location(self) -> str:
        return self.engine.location()

    def statements(self, script: str) -> list[Statement]:
        return [self._parsed(statement, script) for statement in split_script(script)]

    @staticmethod
    def _parsed(statement: Statement, script: str) -> Statement:
        if statement.kind == "run_script":
            return statement
        try:
            (node,) = parse(statement.text)
        except NbstreamError as error:
            raise (relocated(error, statement.span, script) if statement.span else error) from None
        return dataclasses.replace(statement, node=node)

    def run(self, statement: Statement, params: Params) -> Outcome:
        node = _node(statement)
        if self.reruns:
            rerun = self.engine.rerun(node, params)
            return Outcome(rerun.note, rerun.result)
        (result,) = self.engine.execute(statement.text, params)
        return Outcome(None, result)

    def pull(self, statement: Statement, params: Params) -> pd.DataFrame:
        return self.engine.query(statement.text, params)

    def push(self, statement: Statement, params: Params) -> PushSource:
        return self.engine.start_push(statement.text, params)

    def print_topic(self, statement: Statement) -> Iterator[str]:
        node = _node(statement)
        assert isinstance(node, ast.PrintTopic)
        printer = TopicPrinter(self.engine, node)
        header = None
        while not printer.done:
            records = printer.poll()
            if records and format_header(printer) != header:
                header = format_header(printer)
                yield header
            yield from (record.line() for record in records)
            if not records:
                self.engine.run_until_idle(PRINT_IDLE_S)
                time.sleep(POLL_INTERVAL_S)

    def queries(self) -> pd.DataFrame:
        return self.engine.queries_frame()

    def stop_queries(self, which: str) -> list[str]:
        return self.engine.stop_queries(which)

    def status(self) -> list[str]:
        engine = self.engine
        running = sum(q.state == "RUNNING" for q in engine.persistent_queries())
        lines = [f"engine: {engine.location()}; background loop: "
                 f"{'running' if engine.background.running else 'stopped'}; running queries: {running}"]
        return lines + [f"failed: {failure}" for failure in engine.background.failures]

    def names(self) -> dict[str, str]:
        found = dict.fromkeys(functions.function_names(), "function")
        with self.engine.lock:
            sources = list(self.engine.catalog.sources.values())
        for source in sources:
            found.update(dict.fromkeys((c.name for c in source.schema.columns), "column"))
        found.update({s.name: s.kind.lower() for s in sources})
        return found

    def settle(self) -> None:
        self.engine.run_until_idle()

    def close(self) -> None:
        self.engine.close()


def _node(statement: Statement) -> ast.Statement:
    if statement.node is None:
        raise UnsupportedError(f"not a statement nbstream runs: {statement.text}")
    return statement.node
