"""The engine's connectors: created by statements, stepped by the engine's loop, durable.

:class:`Connectors` holds the running source connectors and Python sources of one engine. Each
:meth:`Connectors.step` asks every connector for the records due now and appends them as one
batch; a connector's progress is stored in the ``__connectors`` table *in the same transaction*
as its records, so after a restart (the engine replays ``CREATE SOURCE CONNECTOR``) it resumes
without losing or repeating a record and its ``iterations`` stay exact. Input a source could not
turn into records (a file's bad line) goes to the processing log in that transaction too.

Sink connectors (:class:`~nbstream.connectors.sinks.TopicSink`) are stepped in the same loop,
after the sources: each reads its stream or table from its committed offsets, writes, and stores
its progress as its class's delivery guarantee requires.

Progress rows are keyed by name and *incarnation* (how many times a connector of that name was
created in this engine's statement history), so a connector dropped and created again under the
same name starts afresh, also when the statements are replayed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from nbstream.catalog.catalog import Catalog, Source
from nbstream.catalog.schema import Column, LogicalSchema
from nbstream.catalog.types import STRING
from nbstream.connectors.base import Generated, SourceConnector
from nbstream.connectors.python_source import PythonSource
from nbstream.connectors.registry import ConnectorKind, connector_class
from nbstream.connectors.rejects import log_messages
from nbstream.connectors.sinks import TopicSink
from nbstream.errors import CatalogError, UnsupportedError, did_you_mean
from nbstream.log.base import SqlLog
from nbstream.runtime.ingest import append_frame
from nbstream.runtime.processing_log import TOPIC as PROCESSING_LOG_TOPIC
from nbstream.sql.ast import PropertyValue

Clock = Callable[[], int]
OnError = Callable[[str, Exception], None]


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class RunningConnector:
    """A connector with its place in the engine: incarnation, state and last error."""

    connector: SourceConnector | TopicSink
    incarnation: int
    sql: str
    encoding: Source | None  # how a source's records are serialized (KAFKA string keys, JSON values)
    failed: str | None = None

    @property
    def state(self) -> str:
        if self.failed is not None:
            return "FAILED"
        return "FINISHED" if self.connector.finished else "RUNNING"


class Connectors:
    """The connectors and Python sources of one engine (see the module docstring)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, log: SqlLog, clock: Clock = wall_clock_ms, *,
                 source_connectors: bool = True) -> None:
        """``source_connectors``: whether source connectors may write to ``log`` (sinks always may)."""
        self.con, self.log, self.clock = con, log, clock
        self.source_connectors = source_connectors
        self.running: dict[str, RunningConnector] = {}
        self.python_sources: list[PythonSource] = []
        self.fed_topics: list[str] = []  # topics Python sources fed, finished ones too (an export reports them)
        self._incarnations: dict[str, int] = {}
        con.execute("CREATE TABLE IF NOT EXISTS __connectors (name VARCHAR, incarnation INTEGER, "
                    "progress VARCHAR, PRIMARY KEY (name, incarnation))")

    # -- statements ------------------------------------------------------------------------------
    def create(self, kind: ConnectorKind, name: str, properties: dict[str, PropertyValue], sql: str, *,
               catalog: Catalog | None = None) -> str:
        """Start connector ``name`` (resuming its stored progress); returns what happened. A sink
        finds the stream or table it writes in ``catalog``."""
        if name in self.running:
            raise CatalogError(f"Connector {name} already exists.{_drop_hint(name)}")
        cls = connector_class(properties.get("connector.class"), kind, name)
        connector = cls.create(name, properties)
        if not self.source_connectors and not isinstance(connector, TopicSink):
            raise UnsupportedError(f"connector {name}: source connectors run on the embedded log only for now")
        incarnation = self._incarnations.get(name, 0) + 1  # counted once it exists: as replays count
        if isinstance(connector, TopicSink):
            if catalog is None:
                raise UnsupportedError(f"connector {name}: a sink connector needs the engine's catalog")
            connector.bind(self.con, self.log, catalog, incarnation)
        else:
            self._ensure_topic(connector)
        stored = self.con.execute("SELECT progress FROM __connectors WHERE name = ? AND incarnation = ?",
                                  [name, incarnation]).fetchall()
        if stored:
            connector.resume(stored[0][0])
        else:
            self.con.execute("INSERT INTO __connectors VALUES (?, ?, ?)", [name, incarnation, connector.progress()])
        encoding = None if isinstance(connector, TopicSink) else _encoding(connector)
        self.running[name] = RunningConnector(connector, incarnation, sql, encoding)
        self._incarnations[name] = incarnation
        return f"Created connector {name}"

    def drop(self, name: str, if_exists: bool) -> str:
        """Stop connector ``name`` and forget its progress; its topic and records stay."""
        if if_exists and name not in self.running:
            return f"Connector {name} does not exist"
        running = self.get(name)
        del self.running[name]
        if isinstance(running.connector, TopicSink):
            running.connector.drop()
        self.con.execute("DELETE FROM __connectors WHERE name = ? AND incarnation = ?", [name, running.incarnation])
        return f"Dropped connector {name}"

    def get(self, name: str) -> RunningConnector:
        running = self.running.get(name)
        if running is None:
            raise CatalogError(f"Connector {name} does not exist.{did_you_mean(name, self.running)}".rstrip("."))
        return running

    def schema_for_topic(self, topic: str, kind: str) -> tuple[str, LogicalSchema | None] | None:
        """(connector name, the columns of a ``kind`` over ``topic``) from a connector writing it."""
        for name, running in self.running.items():
            if running.connector.topic == topic and not isinstance(running.connector, TopicSink):
                return name, running.connector.schema(kind)
        return None

    def add_python_source(self, source: PythonSource) -> PythonSource:
        self.python_sources.append(source)
        if source.topic not in self.fed_topics:
            self.fed_topics.append(source.topic)
        return source

    @property
    def idle(self) -> bool:
        """No connector and no Python source to step (safe to ask without the engine's lock)."""
        return not self.running and not self.python_sources

    # -- running ---------------------------------------------------------------------------------
    def step(self, now: int | None = None, on_error: OnError | None = None) -> int:
        """One batch from every connector and Python source with records due at ``now`` (default:
        the clock's time); returns the records written. A failure marks that connector FAILED (a
        Python source ``ERROR``) and goes to ``on_error``; without ``on_error`` it is raised."""
        now = self.clock() if now is None else now
        written = 0
        sources_first = sorted(self.running.items(), key=lambda item: isinstance(item[1].connector, TopicSink))
        for name, running in sources_first:
            if running.state != "RUNNING":
                continue
            try:
                written += self._step_connector(running, now)
            except Exception as error:
                running.failed = f"{type(error).__name__}: {error}"
                self._report(name, error, on_error)
        for source in list(self.python_sources):
            if source.state != "RUNNING":
                self.python_sources.remove(source)
                continue
            try:
                written += source.step(now)
            except Exception as error:
                self._report(f"source {source.topic}", error, on_error)
        return written

    @staticmethod
    def _report(what: str, error: Exception, on_error: OnError | None) -> None:
        if on_error is None:
            raise error
        on_error(what, error)

    def _step_connector(self, running: RunningConnector, now: int) -> int:
        connector = running.connector
        if isinstance(connector, TopicSink):
            return connector.step(lambda progress: self._store_progress(connector.name, running.incarnation,
                                                                        progress), now)
        assert running.encoding is not None
        before = connector.progress()
        generated = connector.step(now)
        if generated is None:
            return 0
        self._ensure_topic(connector)
        try:
            with self.log.transaction(self.con) as appended:
                appended[connector.topic] = append_frame(self.con, self.log, running.encoding, _frame(generated),
                                                         key="__key", timestamp="__ts", commit=False)
                appended[PROCESSING_LOG_TOPIC] = log_messages(self.con, self.log, connector.name, connector.topic,
                                                              generated.rejected)
                self._store_progress(connector.name, running.incarnation, connector.progress())
        except BaseException:
            connector.resume(before)
            raise
        return generated.size + len(generated.rejected)

    def _store_progress(self, name: str, incarnation: int, progress: str) -> None:
        self.con.execute("UPDATE __connectors SET progress = ? WHERE name = ? AND incarnation = ?",
                         [progress, name, incarnation])

    def _ensure_topic(self, connector: SourceConnector) -> None:
        if self.log.topic(connector.topic) is None:
            self.log.create_topic(connector.topic, connector.partitions)

    def close(self) -> None:
        """Stop the Python sources (their feeding threads end); connectors just stop being stepped."""
        for source in self.python_sources:
            source.stop()
        self.python_sources.clear()

    # -- SHOW / DESCRIBE -------------------------------------------------------------------------
    def show_rows(self) -> list[tuple[Any, ...]]:
        return [(name, r.connector.kind, r.connector.connector_class, r.state, r.connector.topic,
                 r.connector.produced) for name, r in sorted(self.running.items())]

    def describe_rows(self, name: str) -> list[tuple[str, Any]]:
        running = self.get(name)
        connector = running.connector
        rows: list[tuple[str, Any]] = [("Name", name), ("Class", connector.connector_class),
                                       ("Type", connector.kind), ("State", running.state)]
        rows += connector.describe()
        if running.failed:
            rows.append(("Trace", running.failed))
        rows.append(("Statement", running.sql))
        return rows


def _drop_hint(name: str) -> str:
    return f" DROP CONNECTOR {name} first, or use IF NOT EXISTS"


def _encoding(connector: SourceConnector) -> Source:
    """A stream over the connector's topic with its fields as written: string keys, JSON values."""
    columns = (Column("KEY", STRING, "KEY"), *(Column(name, sql_type) for name, sql_type in connector.fields))
    return Source(name=connector.name, kind="STREAM", schema=LogicalSchema(columns), topic=connector.topic,
                  key_format="KAFKA", value_format="JSON")


def _frame(generated: Generated) -> pa.Table:
    return pa.table({**generated.columns, "__key": generated.keys, "__ts": pa.array(generated.times, pa.int64())})
