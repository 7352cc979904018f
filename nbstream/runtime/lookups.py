"""Point lookups of one table that arrive together, answered by one DuckDB statement.

A DuckDB statement costs a few hundred microseconds however little it reads, and a point lookup
reads one row: under load, the statement is most of a pull query's cost. Lookups of the same
compiled query (``SELECT … FROM state WHERE key = <value>``, one key column) that wait while one
runs are answered together by ``… WHERE key IN (<values>)``, each getting the rows of its key.

:class:`Lookups` runs them on the threads that ask: the first to come leads — it runs the statement
for every lookup waiting, then hands the lead to the first that came meanwhile — and the others wait
for their rows. :class:`LoopLookups` takes them from an asyncio event loop (a server's) and runs
them on one thread of its own, a batch at a time. Either way nothing waits for a batch to fill: a
lookup that comes alone runs alone.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import duckdb

from nbstream.errors import ExecutionError

#: The column a batched lookup adds after the query's own, holding the key each row belongs to.
KEY_COLUMN = "__nbstream_key"


@dataclass(frozen=True)
class Lookup:
    """A point lookup that may be answered with others: ``prefix`` is the compiled query's SQL up to
    the list of keys (``… WHERE "ID" IN (``, its rows ending with :data:`KEY_COLUMN`), ``key`` the
    value looked up and ``literal`` it as SQL."""

    prefix: str
    key: object
    literal: str


@dataclass(eq=False)
class _Waiting:
    lookup: Lookup
    ready: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    error: BaseException | None = None


class Lookups:
    """Point lookups in flight, by compiled query (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, list[_Waiting]] = {}
        self._busy: set[str] = set()

    def rows(self, lookup: Lookup, con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
        """The rows of ``lookup`` (without :data:`KEY_COLUMN`), run on ``con`` if this thread leads."""
        waiting = _Waiting(lookup)
        with self._lock:
            self._waiting.setdefault(lookup.prefix, []).append(waiting)
            waiting.lead = lookup.prefix not in self._busy
            self._busy.add(lookup.prefix)
        if not waiting.lead:
            waiting.ready.wait()
        if waiting.lead:
            self._serve(lookup.prefix, con.execute)
        if waiting.error is not None:
            raise waiting.error
        return waiting.rows

    def _serve(self, prefix: str, execute: Callable[[str], duckdb.DuckDBPyConnection]) -> None:
        """Answer every lookup waiting for ``prefix``, then hand the lead on (or free ``prefix``)."""
        with self._lock:
            batch = self._waiting.pop(prefix, [])
        try:
            for w, rows in zip(batch, answer(prefix, [w.lookup for w in batch], execute), strict=True):
                w.rows = rows
        except BaseException as error:  # every lookup of the batch fails as the one statement did
            for w in batch:
                w.error = error
        finally:
            with self._lock:
                following = self._waiting.get(prefix)
                if following:
                    following[0].lead = True
                    following[0].ready.set()
                else:
                    self._busy.discard(prefix)
            for w in batch:
                w.lead = False
                w.ready.set()


def answer(prefix: str, lookups: Sequence[Lookup], execute: Callable[[str], duckdb.DuckDBPyConnection]
           ) -> list[list[tuple[Any, ...]]]:
    """The rows of each of ``lookups`` (all of ``prefix``), in their order, from one statement."""
    found: defaultdict[object, list[tuple[Any, ...]]] = defaultdict(list)
    keys = ", ".join(dict.fromkeys(lookup.literal for lookup in lookups))
    for row in execute(f"{prefix}{keys})").fetchall():
        found[row[-1]].append(row[:-1])
    return [found.get(lookup.key, []) for lookup in lookups]


Answer = list[tuple[Any, ...]] | BaseException


class LoopLookups:
    """Point lookups asked on an asyncio event loop, answered on one thread of their own.

    The loop never waits for DuckDB, and a lookup costs the loop no hand-off of its own: the lookups
    asked while a batch runs wait on the loop and go together as the next batch, one statement per
    compiled query (:func:`answer`), with one hand-off to the thread and one back. A lookup asked
    while none runs goes at once. ``connection`` lends the connection a batch runs on."""

    def __init__(self, connection: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]) -> None:
        self._connection = connection
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="nbstream-lookups")
        self._waiting: list[tuple[Lookup, asyncio.Future[list[tuple[Any, ...]]]]] = []
        self._running = False

    async def rows(self, lookup: Lookup) -> list[tuple[Any, ...]]:
        """The rows of ``lookup`` (without :data:`KEY_COLUMN`); call on the loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[tuple[Any, ...]]] = loop.create_future()
        self._waiting.append((lookup, future))
        if not self._running:
            self._run_next(loop)
        return await future

    def close(self) -> None:
        self._thread.shutdown(wait=True)

    def _run_next(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._waiting = self._waiting, []
        self._running = bool(batch)
        if batch:
            answered = loop.run_in_executor(self._thread, self._answer, [lookup for lookup, _ in batch])
            answered.add_done_callback(lambda done: self._deliver(loop, [f for _, f in batch], done))

    def _answer(self, lookups: list[Lookup]) -> list[Answer]:
        """Each lookup's rows, or the error of its statement (on the batch thread)."""
        by_prefix: dict[str, list[int]] = {}
        for i, lookup in enumerate(lookups):
            by_prefix.setdefault(lookup.prefix, []).append(i)
        answers: list[Answer] = [[] for _ in lookups]
        with self._connection() as con:
            for prefix, positions in by_prefix.items():
                try:
                    found: list[Answer] = list(answer(prefix, [lookups[i] for i in positions], con.execute))
                except duckdb.Error as error:  # the lookups of this statement fail as it did
                    found = [ExecutionError(f"pull query failed: {error}")] * len(positions)
                for i, rows in zip(positions, found, strict=True):
                    answers[i] = rows
        return answers

    def _deliver(self, loop: asyncio.AbstractEventLoop, futures: list[asyncio.Future[list[tuple[Any, ...]]]],
                 answered: asyncio.Future[list[Answer]]) -> None:
        error = answered.exception()  # the batch could not run at all (no connection): every lookup fails
        answers = answered.result() if error is None else [error] * len(futures)
        for future, rows in zip(futures, answers, strict=True):
            if future.done():  # its request went away
                continue
            if isinstance(rows, BaseException):
                future.set_exception(rows)
            else:
                future.set_result(rows)
        self._run_next(loop)
