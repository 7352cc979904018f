"""Point lookups of one table that arrive together, answered by one DuckDB statement.

A DuckDB statement costs a few hundred microseconds however little it reads, and a point lookup
reads one row: under load, the statement is most of a pull query's cost. Lookups of the same
compiled query (``SELECT … FROM state WHERE key = <value>``, one key column) that wait while one
runs are answered together by ``… WHERE key IN (<values>)``, each getting the rows of its key.

:class:`Lookups` runs them on the threads that ask: the first to come leads — it runs the statement
for every lookup waiting, then hands the lead to the first that came meanwhile — and the others wait
for their rows. Nothing waits for a batch to fill: a lookup that comes alone runs alone.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb

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
            found: defaultdict[object, list[tuple[Any, ...]]] = defaultdict(list)
            keys = ", ".join(dict.fromkeys(w.lookup.literal for w in batch))
            for row in execute(f"{prefix}{keys})").fetchall():
                found[row[-1]].append(row[:-1])
            for w in batch:
                w.rows = found.get(w.lookup.key, [])
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
