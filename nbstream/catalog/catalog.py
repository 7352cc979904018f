"""The catalog: the streams and tables the engine knows, and the persistent queries that run.

The catalog is metadata only; records live in the log and state in the engine's database. It
enforces ksqlDB's rules about names: a source name is unique, a source read or written by a
running query cannot be dropped, and every lookup that fails names the near miss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from nbstream.catalog.custom_types import TypeRegistry
from nbstream.catalog.schema import LogicalSchema
from nbstream.errors import CatalogError, UnknownNameError, did_you_mean

SourceKind = Literal["STREAM", "TABLE"]


@dataclass(frozen=True)
class WindowInfo:
    """The window type of a windowed source's key: TUMBLING/HOPPING/SESSION and size (ms).

    ``retention_ms``: how long (by stream time, from a window's start) the source's materialized
    state keeps a window; None: for ever (a source declared with a window type)."""

    kind: str
    size_ms: int | None = None
    retention_ms: int | None = None


@dataclass(frozen=True)
class Source:
    """A stream or a table: a schema over a topic, with the formats of its keys and values."""

    name: str
    kind: SourceKind
    schema: LogicalSchema
    topic: str
    key_format: str = "KAFKA"
    value_format: str = "JSON"
    key_properties: Mapping[str, Any] = field(default_factory=dict)
    value_properties: Mapping[str, Any] = field(default_factory=dict)
    timestamp: str | None = None  # the column ROWTIME comes from, if not the record's time
    timestamp_format: str | None = None
    window: WindowInfo | None = None
    is_source: bool = False  # CREATE SOURCE STREAM/TABLE: read-only
    sql: str = ""  # the statement that created it

    @property
    def is_table(self) -> bool:
        return self.kind == "TABLE"


@dataclass
class PersistentQuery:
    """A query that runs until terminated: CSAS, CTAS or INSERT INTO."""

    id: str
    sql: str
    sink: str
    sources: tuple[str, ...]
    state: str = "RUNNING"


class Catalog:
    """Streams, tables and persistent queries by name, and the custom types (``CREATE TYPE``)."""

    def __init__(self) -> None:
        self.sources: dict[str, Source] = {}
        self.types = TypeRegistry()
        self.queries: dict[str, PersistentQuery] = {}
        self._query_seq = 0

    # -- sources --------------------------------------------------------------------------------
    def find(self, name: str) -> Source | None:
        return self.sources.get(name)

    def get(self, name: str) -> Source:
        """The source called ``name``, or an error suggesting the near miss."""
        source = self.sources.get(name)
        if source is None:
            raise UnknownNameError(
                f"{name} does not exist.{did_you_mean(name, self.sources)}"
            )
        return source

    def add(self, source: Source, *, replace: bool = False) -> None:
        existing = self.sources.get(source.name)
        if existing is not None and not replace:
            kind = existing.kind.lower()
            raise CatalogError(f"Cannot add {source.kind.lower()} '{source.name}': A {kind} with the "
                               f"same name already exists")
        self.sources[source.name] = source

    def drop(self, name: str) -> Source:
        source = self.get(name)
        users = [q.id for q in self.queries.values() if q.state == "RUNNING"
                 and (name in q.sources or q.sink == name)]
        if users:
            raise CatalogError(
                f"Cannot drop {name}. The following queries read from or write to this source: "
                f"[{', '.join(sorted(users))}]. You need to terminate them before dropping {name}."
            )
        del self.sources[name]
        return source

    def sources_on_topic(self, topic: str) -> list[Source]:
        return [s for s in list(self.sources.values()) if s.topic == topic]  # list(): atomic under the GIL

    # -- queries --------------------------------------------------------------------------------
    def next_query_id(self, prefix: str, sink: str | None) -> str:
        """ksqlDB-style query ids: ``CSAS_SINK_0``, ``CTAS_SINK_1``, ``INSERTQUERY_2``."""
        seq = self._query_seq
        self._query_seq += 1
        return f"{prefix}_{sink}_{seq}" if sink else f"{prefix}_{seq}"

    def release_query_id(self, query_id: str) -> None:
        """Give back ``query_id``, the last id :meth:`next_query_id` issued, for a query that never
        started (its statement is not kept, so a reopened engine will not count it either)."""
        if query_id.endswith(f"_{self._query_seq - 1}"):
            self._query_seq -= 1

    def add_query(self, query: PersistentQuery) -> None:
        self.queries[query.id] = query

    def get_query(self, query_id: str) -> PersistentQuery:
        query = self.queries.get(query_id) or next(
            (q for q in self.queries.values() if q.id.upper() == query_id.upper()), None
        )
        if query is None:
            raise UnknownNameError(f"Unknown queryId: {query_id}.{did_you_mean(query_id, self.queries)}")
        return query

    def running(self) -> list[PersistentQuery]:
        """The queries still running: RUNNING, or STALLED while their Kafka broker is away."""
        return [q for q in self.queries.values() if q.state in ("RUNNING", "STALLED")]
