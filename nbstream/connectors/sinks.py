"""Sink connectors: the rows of a stream or table, written where analysts use them.

``CREATE SINK CONNECTOR c WITH ('connector.class'='parquet', 'source'='ORDERS', 'path'='/out')``
(or ``'topics'='orders'``, the topic of exactly one stream or table) runs a :class:`TopicSink`
in the engine's loop. Each step reads the records of the source's topic after the sink's
committed offsets (at most ``flush.size`` per partition; fewer only once ``rotate.interval.ms``
of the connector clock passed since its last batch), decodes them once in DuckDB with the
SQL of ``SELECT * FROM source`` (the same decoding queries use) into a temp table of typed rows,
and hands that table to the writer (:mod:`~nbstream.connectors.file_sinks`,
:mod:`~nbstream.connectors.duckdb_sink`). Records that do not decode go to the processing log.

:meth:`TopicSink.commit` advances the offsets and stores the sink's progress in one
transaction of the engine's database, optionally with the writer's own statements; how a writer
orders its output and that commit decides its delivery guarantee (each writer says which).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb

from nbstream.catalog.catalog import Catalog, Source
from nbstream.connectors import properties
from nbstream.connectors.rejects import log_rejects
from nbstream.errors import CatalogError, PlanError, did_you_mean
from nbstream.log.base import SqlLog
from nbstream.physical.compile import result_sql
from nbstream.physical.expressions import quote
from nbstream.plan.logical import StatelessPlan
from nbstream.plan.planner import plan_query
from nbstream.runtime.processing_log import TOPIC as PROCESSING_LOG_TOPIC
from nbstream.sql import ast, parse
from nbstream.sql.ast import PropertyValue

DEFAULT_FLUSH_SIZE = 100_000  # records per partition per step (and per file)

#: The decoded rows of the batch a sink is writing (a temp table of the engine's database).
ROWS = "__sink_rows"

#: Properties every sink takes.
PROPERTIES = ("connector.class", "topics", "source", "flush.size", "rotate.interval.ms")

StoreProgress = Callable[[str], None]  # stores the progress JSON, in the caller's open transaction


@dataclass(frozen=True)
class SinkColumn:
    """A column a sink writes: its name, SQL over :data:`ROWS`, DuckDB type, whether it is a key."""

    name: str
    sql: str
    duckdb_type: str
    key: bool


def _outputs(plan: StatelessPlan) -> list[SinkColumn]:
    """The columns of ``SELECT *``; a windowed source's key columns are followed by its window's
    bounds (``WINDOWSTART``, ``WINDOWEND``, epoch ms), part of the key, as pull queries show them."""
    columns = [SinkColumn(c.name, quote(c.name), c.type.duckdb(), c.role == "KEY") for c in plan.columns]
    if not plan.scan.windowed:
        return columns
    keys = [c for c in columns if c.key]
    window = [SinkColumn("WINDOWSTART", "__ws", "BIGINT", True), SinkColumn("WINDOWEND", "__we", "BIGINT", True)]
    return keys + window + [c for c in columns if not c.key]


class TopicSink:
    """A sink reading one stream or table; subclasses write the rows (:meth:`write`)."""

    kind = "SINK"
    connector_class = "sink"
    class_properties: tuple[str, ...] = ()  # what the subclass reads besides :data:`PROPERTIES`
    default_rotate_interval_ms = 0

    def __init__(self, name: str, props_in: Mapping[str, PropertyValue]) -> None:
        self.name = name
        self.props = properties.checked(name, f"{self.connector_class} sink", props_in,
                                        PROPERTIES + self.class_properties)
        self.source_name = properties.optional_text(name, self.props, "source")
        self.topics = properties.optional_text(name, self.props, "topics")
        if (self.source_name is None) == (self.topics is None):
            raise CatalogError(f"connector {name}: say which stream or table to write, with 'source' "
                               "(its name) or 'topics' (its topic), one of the two")
        self.flush_size = properties.integer(name, self.props, "flush.size", DEFAULT_FLUSH_SIZE, minimum=1)
        self.rotate_interval_ms = properties.integer(name, self.props, "rotate.interval.ms",
                                                     self.default_rotate_interval_ms)
        self._last_write_ms: int | None = None
        self.offsets: dict[int, int] = {}
        self.produced = 0  # rows written
        self.logged = 0  # records sent to the processing log

    # -- binding to the engine -------------------------------------------------------------------
    def bind(self, con: duckdb.DuckDBPyConnection, log: SqlLog, catalog: Catalog, incarnation: int) -> None:
        """Find the source and plan its decoding; called once, before :meth:`resume`."""
        self.con, self.log, self.incarnation = con, log, incarnation
        self.source = self._find_source(catalog)
        [statement] = parse(f"SELECT * FROM {quote(self.source.name)} EMIT CHANGES")
        assert isinstance(statement, ast.Select)
        plan = plan_query(statement.query, catalog, con)
        if not isinstance(plan, StatelessPlan):
            raise PlanError(f"connector {self.name}: cannot read {self.source.name}")
        self.plan = plan
        self.outputs = _outputs(plan)
        self.columns = [o.name for o in self.outputs]
        self.key_columns = [o.name for o in self.outputs if o.key]

    def _find_source(self, catalog: Catalog) -> Source:
        if self.source_name is not None:
            found = catalog.find(self.source_name) or catalog.find(self.source_name.upper())
            if found is None:
                raise CatalogError(f"connector {self.name}: no stream or table called {self.source_name}."
                                   f"{did_you_mean(self.source_name, catalog.sources)}".rstrip("."))
            return found
        on_topic = catalog.sources_on_topic(self.topics or "")
        if len(on_topic) != 1:
            names = ", ".join(sorted(s.name for s in on_topic))
            count = f"several ({names}): say which with 'source'" if on_topic else "none: declare one first"
            topics = {s.topic for s in catalog.sources.values()}
            raise CatalogError(f"connector {self.name}: a sink writes the rows of the stream or table over "
                               f"topic '{self.topics}', and there is {count}."
                               f"{did_you_mean(self.topics or '', topics) if not on_topic else ''}".rstrip("."))
        return on_topic[0]

    @property
    def topic(self) -> str:
        return self.source.topic

    @property
    def finished(self) -> bool:
        return False

    # -- progress --------------------------------------------------------------------------------
    def progress(self) -> str:
        return json.dumps({"offsets": {str(p): n for p, n in self.offsets.items()}, "produced": self.produced,
                           "logged": self.logged})

    def resume(self, progress: str) -> None:
        saved = json.loads(progress)
        self.offsets = {int(p): n for p, n in saved["offsets"].items()}
        self.produced, self.logged = saved["produced"], saved["logged"]

    def drop(self) -> None:
        """Called when the connector is dropped (a writer forgets what it keeps about it)."""

    # -- stepping --------------------------------------------------------------------------------
    def step(self, store: StoreProgress, now_ms: int) -> int:
        """Decode the next batch into :data:`ROWS`, have it written and committed; returns the
        records consumed (0: nothing new, or the batch waits for ``rotate.interval.ms``)."""
        info = self.log.require(self.topic)
        ranges = {p: (self.offsets.get(p, 0), min(end, self.offsets.get(p, 0) + self.flush_size))
                  for p, end in info.end_offsets.items() if end > self.offsets.get(p, 0)}
        if not ranges or not self._due(ranges, now_ms):
            return 0
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {ROWS} AS "
                         f"{result_sql(self.plan, self.log.relation(self.topic, ranges))}")
        try:
            self.write(ranges, store)
        finally:
            self.con.execute(f"DROP TABLE IF EXISTS {ROWS}")
        self._last_write_ms = now_ms
        return sum(end - start for start, end in ranges.values())

    def _due(self, ranges: Mapping[int, tuple[int, int]], now_ms: int) -> bool:
        """Whether to write now: the first batch, a full one, or ``rotate.interval.ms`` after the last."""
        if self._last_write_ms is None or any(end - start >= self.flush_size for start, end in ranges.values()):
            return True
        return now_ms - self._last_write_ms >= self.rotate_interval_ms

    def write(self, ranges: Mapping[int, tuple[int, int]], store: StoreProgress) -> None:
        """Write the rows of :data:`ROWS` and call :meth:`commit` (subclasses)."""
        raise NotImplementedError

    def rows_sql(self, where: str = "TRUE", *, deleted: bool = False, position: bool = False) -> str:
        """SELECT of the decoded rows matching ``where`` in log order; with ``deleted`` a
        ``__deleted`` column (true for a tombstone of a table row), with ``position`` the
        ``__in_partition`` and ``__in_offset`` of the record."""
        extra = (", __deleted" if deleted else "") + (", __in_partition, __in_offset" if position else "")
        columns = ", ".join(f"{o.sql} AS {quote(o.name)}" for o in self.outputs)
        return (f"SELECT {columns}{extra} FROM {ROWS} WHERE NOT __err AND ({where}) "
                "ORDER BY __in_partition, __in_offset")

    def commit(self, ranges: Mapping[int, tuple[int, int]], store: StoreProgress, written: int,
               within: Callable[[], None] | None = None) -> None:
        """In one transaction of the engine's database: ``within`` (the writer's own statements),
        the batch's undecodable records to the processing log, the offsets past ``ranges`` and the
        progress (``written`` rows more)."""
        before = (dict(self.offsets), self.produced, self.logged)
        try:
            with self.log.transaction(self.con) as appended:
                if within is not None:
                    within()
                logged = appended[PROCESSING_LOG_TOPIC] = log_rejects(
                    self.con, self.log, self.name, self.topic,
                    f'(SELECT __errmsg AS message, __in_partition AS "partition", '
                    f'__in_offset AS "offset" FROM {ROWS} WHERE __err)')
                self.offsets.update({p: end for p, (_, end) in ranges.items()})
                self.produced += written
                self.logged += sum(logged.values())
                store(self.progress())
        except BaseException:
            self.offsets, self.produced, self.logged = before
            raise

    # -- DESCRIBE --------------------------------------------------------------------------------
    def describe(self) -> list[tuple[str, Any]]:
        offsets = ", ".join(f"{p}:{n}" for p, n in sorted(self.offsets.items())) or "(none yet)"
        return [("source", self.source.name), ("topic", self.topic), *self.describe_target(),
                ("committed offsets", offsets), ("rows written", self.produced),
                ("records logged", self.logged)]

    def describe_target(self) -> list[tuple[str, Any]]:
        return []
