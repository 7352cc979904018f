"""The engine: nbstream's public Python API.

``Engine.execute`` runs statements (parse → plan → compile → start); persistent queries and table
materializations run as micro-batches when the engine is driven — :meth:`Engine.run_until_idle`
for deterministic runs, :meth:`Engine.push` and the notebook layer for live ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self, overload

import duckdb
import pandas as pd
import pyarrow as pa

from nbstream.catalog import functions, user_functions
from nbstream.catalog.catalog import Catalog, Source
from nbstream.connectors.python_source import Data, PythonSource
from nbstream.connectors.running import Connectors
from nbstream.errors import CatalogError, ExecutionError, LogError, NbstreamError, PlanError
from nbstream.formats import FORMATS, SUPPORTED_REGISTRY_FORMATS, codecs, format_for, register_udfs
from nbstream.formats.base import sql_str
from nbstream.formats.registry import Registry, SchemaRegistry
from nbstream.formats.registry_client import REGISTRY_PROPERTIES, remote_registry
from nbstream.log.base import RECORD_SCHEMA, SqlLog
from nbstream.physical import aggregates
from nbstream.plan.aggregate import is_aggregate_query
from nbstream.plan.planner import plan_query
from nbstream.runtime import pull, topics
from nbstream.runtime.backend import Backend, backend_for
from nbstream.runtime.consume import Records, consume_frame, consume_records, topic_relation
from nbstream.runtime.executor import execute_statement
from nbstream.runtime.ingest import encode_frame
from nbstream.runtime.processing_log import TOPIC as PROCESSING_LOG_TOPIC
from nbstream.runtime.processing_log import processing_log_source
from nbstream.runtime.push import Batches, PushQuery
from nbstream.runtime.queries import QueryManager
from nbstream.runtime.query import QueryRunner
from nbstream.runtime.results import StatementResult
from nbstream.runtime.selected import selected_columns
from nbstream.settings import find_setting
from nbstream.sql import ast, parse

DATABASE_FILE = "nbstream.duckdb"
DUCKDB_THREADS = 2
#: The engine property holding DuckDB's memory limit.
MEMORY_LIMIT = "nbstream.duckdb.memory.limit"
#: The engine property holding the size of write-ahead log at which DuckDB checkpoints a durable engine.
CHECKPOINT_THRESHOLD = "nbstream.duckdb.checkpoint.threshold"


@dataclass(frozen=True)
class DuckDBSetting:
    """An engine property that is a setting of the engine's DuckDB database: its DuckDB name, its
    default, and what a value must be (for the error naming a bad one)."""

    setting: str
    default: Callable[[], str]
    expects: str


def default_checkpoint_threshold() -> str:
    """64 MB of write-ahead log, where DuckDB's default is 16 MB. DuckDB checkpoints in the commit
    that passes the threshold, holding that append and those queued behind it for a time that grows
    with the tables (0.1 to 0.5 s at 0.2M to 3M records): at 10,000 inserts/s that was every 15 s, and a
    push query's p99 delivery latency over 5 minutes was 161 ms; at 64 MB, once a minute and 86 ms.
    The price: up to 64 MB more to replay when a crashed engine reopens."""
    return "64MB"


#: The engine properties applied to DuckDB by ``SET`` at once (see :meth:`Engine.apply_duckdb_setting`).
DUCKDB_SETTINGS = {
    MEMORY_LIMIT: DuckDBSetting("memory_limit", lambda: default_memory_limit(),  # defined below
                                "a memory size DuckDB accepts ('512MB', '2GiB', '25%')"),
    CHECKPOINT_THRESHOLD: DuckDBSetting("checkpoint_threshold", default_checkpoint_threshold,
                                        "a size DuckDB accepts ('16MB', '256MB')"),
}

#: Statements replayed on restart (they define the catalog and the queries).
_DURABLE = (ast.CreateSource, ast.CreateAsSelect, ast.InsertInto, ast.Drop, ast.Terminate,
            ast.SetProperty, ast.UnsetProperty, ast.CreateConnector, ast.DropConnector, ast.CreateType,
            ast.DropType)


class Engine:
    """An embedded nbstream engine.

    ``Engine()`` keeps everything in memory; ``Engine(path="state/")`` keeps the log, state and
    catalog in ``state/`` and resumes where it stopped, even after ``kill -9``.
    ``properties`` are ksqlDB configuration values (``ksql.persistence.default.format.key``, …).

    ``Engine(kafka="host:port", **client_options)`` keeps topics in that Kafka cluster instead
    (:class:`~nbstream.log.kafka.KafkaLog`; ``client_options`` such as ``security_protocol``,
    ``ssl_cafile`` or ``sasl_mechanism`` go to aiokafka, checked and resolved by
    :mod:`nbstream.log.kafka_options`: pass secrets as ``"env:NAME"`` or ``"file:PATH"``
    references, which are resolved when a client is created and never stored). Persistent
    queries run on it at-least-once, their input offsets in a consumer group per query and (with
    their state) in the engine's database; push
    queries read Kafka topics and pull queries the tables materialized from them
    (:mod:`nbstream.runtime.kafka_query`). The choice is made once, in :attr:`backend`
    (:mod:`nbstream.runtime.backend`).

    :attr:`queries` holds the runners of the persistent queries and table materializations
    (:class:`~nbstream.runtime.queries.QueryManager`): ``engine.queries.runner(query_id).stats``.
    """

    #: The formats this engine reads and writes (the conformance runner runs their cases).
    SUPPORTED_FORMATS = (*FORMATS, *SUPPORTED_REGISTRY_FORMATS)

    def __init__(self, path: str | Path | None = None, *, properties: Mapping[str, Any] | None = None,
                 kafka: str | None = None, **client_options: Any) -> None:
        self.path = Path(path) if path is not None else None
        self.properties: dict[str, Any] = dict(properties or {})
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            self.con = duckdb.connect(str(self.path / DATABASE_FILE))
        else:
            self.con = duckdb.connect(":memory:")
        #: The schema registry: the one ``ksql.schema.registry.url`` names, else the engine's own
        #: (subjects, versions, ids kept in the engine's database).
        self.schema_registry: Registry = remote_registry(self.properties) or SchemaRegistry(self.con)
        self._configure(self.con)
        self.backend: Backend = backend_for(self.con, kafka, client_options)
        self.log: SqlLog = self.backend.log
        self.catalog = Catalog()
        self.queries = QueryManager(self.backend, self.catalog, self.properties)
        self.con.execute("CREATE TABLE IF NOT EXISTS __offsets (query_id VARCHAR, \"partition\" INTEGER, "
                         "next_offset BIGINT, PRIMARY KEY (query_id, \"partition\"))")
        self.con.execute("CREATE TABLE IF NOT EXISTS __statements (seq INTEGER PRIMARY KEY, sql VARCHAR)")
        # the property overrides a statement ran with (JSON), replayed with it
        self.con.execute("ALTER TABLE __statements ADD COLUMN IF NOT EXISTS properties VARCHAR")
        self.log.create_topic(PROCESSING_LOG_TOPIC, 1)
        self.catalog.add(processing_log_source())
        self.connectors = Connectors(self.con, self.log, source_connectors=self.backend.runs_source_connectors)
        #: Whether the statements of an earlier run are being run again (:meth:`_restore`).
        self.replaying = False
        self._restore()

    def _configure(self, con: duckdb.DuckDBPyConnection) -> None:
        # JSON decoding dominates a micro-batch and DuckDB spreads it over both cores of the
        # machines we measure on (1.7x the single-thread rate on the stateless benchmark).
        con.execute(f"SET threads = {DUCKDB_THREADS}")
        for name in DUCKDB_SETTINGS:
            self.apply_duckdb_setting(name, con)
        con.execute("SET error_on_division_by_zero = false")
        # In a kernel DuckDB shows a query running over 2 s as a progress-bar widget in whatever cell
        # is current (a black bar under a live view); cursors of this connection inherit the setting.
        con.execute("SET enable_progress_bar = false")
        functions.register_udfs(con)
        register_udfs(con)
        user_functions.attach(con)  # the notebook's Python UDFs (nbstream.udfs)
        codecs.attach(con, self.schema_registry)  # schema-registry formats' decoders and encoders
        for macro in aggregates.MACROS:
            con.execute(macro)

    # -- statements ------------------------------------------------------------------------------
    def execute(self, sql: str, params: Mapping[str, object] | None = None,
                properties: Mapping[str, Any] | None = None) -> list[StatementResult]:
        """Run a script of ``;``-separated statements; one result per statement, in order.

        ``params`` bind ``:name`` placeholders (never interpolated into the SQL text).
        ``properties`` override the engine's :attr:`properties` for these statements only (as
        ksqlDB's ``streamsProperties`` do for one request); a durable engine replays a statement
        with the overrides it ran with. A ``SET`` of an overridden name does not outlive the call.
        """
        bound = dict(params or {})
        overrides = dict(properties or {})
        results = []
        with self.overriding(overrides):
            for statement in parse(sql):
                results.append(execute_statement(self, statement, bound))
                if isinstance(statement, _DURABLE):
                    self._record(statement.text, overrides)
        return results

    @contextlib.contextmanager
    def overriding(self, properties: Mapping[str, Any]) -> Iterator[None]:
        """Within the block, :attr:`properties` hold ``properties`` too (each name restored after)."""
        before = {name: self.properties[name] for name in properties if name in self.properties}
        self.properties.update(properties)
        try:
            yield
        finally:
            for name in properties:
                if name in before:
                    self.properties[name] = before[name]
                else:
                    self.properties.pop(name, None)

    def _record(self, sql: str, overrides: Mapping[str, Any]) -> None:
        if self.path is None:
            return
        seq = self.con.execute("SELECT coalesce(max(seq), -1) + 1 FROM __statements").fetchall()[0][0]
        self.con.execute("INSERT INTO __statements VALUES (?, ?, ?)",
                         [seq, sql, json.dumps(dict(overrides)) if overrides else None])

    def _restore(self) -> None:
        self.replaying = True
        try:
            for sql, overrides in self.con.execute("SELECT sql, properties FROM __statements ORDER BY seq").fetchall():
                with self.overriding(json.loads(overrides) if overrides else {}):
                    for statement in parse(sql):
                        execute_statement(self, statement, {})
        finally:
            self.replaying = False

    def property(self, name: str) -> Any:
        """The value of configuration ``name``; a Kafka Streams setting may also be given with
        ksqlDB's ``ksql.streams.`` prefix (``ksql.streams.auto.offset.reset``)."""
        found = find_setting(self.properties, name)
        return None if found is None else found[1]

    def set_property(self, name: str, value: Any) -> None:
        """``SET`` the property ``name`` to ``value`` (``None``: ``UNSET`` it). A property of
        :data:`DUCKDB_SETTINGS` applies at once; one DuckDB refuses leaves the property as it was.
        The schema registry's properties are the engine's from its start, never changed by ``SET``."""
        if name.startswith(REGISTRY_PROPERTIES) and value != self.properties.get(name):
            raise CatalogError(f"{name} is read when the engine starts and cannot be changed by SET: give it as "
                               "Engine(properties=…), nbstream serve --property, or in a job's [properties]")
        previous = self.properties.pop(name, None)
        if value is not None:
            self.properties[name] = value
        if name not in DUCKDB_SETTINGS:
            return
        try:
            self.apply_duckdb_setting(name)
        except PlanError:
            self.set_property(name, previous)
            raise

    def apply_duckdb_setting(self, name: str, con: duckdb.DuckDBPyConnection | None = None) -> None:
        """Give DuckDB the value of the property ``name`` of :data:`DUCKDB_SETTINGS` (DuckDB's syntax),
        or its default. The setting is the database's, shared by its cursors."""
        setting = DUCKDB_SETTINGS[name]
        value = self.property(name) or setting.default()
        try:
            (con or self.con).execute(f"SET {setting.setting} = {sql_str(str(value))}")
        except duckdb.Error as e:
            raise PlanError(f"{name} '{value}' is not {setting.expects}: {str(e).splitlines()[0]}") from e

    def location(self) -> str:
        """Where the engine keeps its topics and state, for display: ``kafka://…`` with its client
        options (secrets only as references), and the state directory or "in memory"."""
        return self.backend.location(str(self.path) if self.path is not None else "in memory")

    # -- queries -----------------------------------------------------------------------------------
    def run_until_idle(self, max_seconds: float | None = None) -> int:
        """Process all pending input of every query, in creation order; returns records consumed.

        Like ksqlDB's test driver, each query drains its input before the next one runs, and the
        round repeats until no query has input left (or ``max_seconds`` passed). Each round starts
        with connectors and Python sources writing the records due at the time of the call.
        """
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        total = 0
        now = self.connectors.clock()
        while deadline is None or time.monotonic() < deadline:
            progressed = self.connectors.step(now)
            for _, worker in self.queries.workers():
                while (n := worker.step()) > 0:
                    progressed += n
            total += progressed
            if progressed == 0:
                break
        return total

    # -- producing ---------------------------------------------------------------------------------
    def register_schema(self, subject: str, schema: Any, schema_type: str = "AVRO", schema_id: int | None = None,
                        references: Sequence[Mapping[str, Any]] | None = None) -> int:
        """Register ``schema`` (a dict for AVRO/JSON, ``.proto`` text for PROTOBUF) under
        ``subject`` in the engine's registry, keeping ``schema_id`` if given; its id."""
        return self.schema_registry.register(subject, schema, schema_type, schema_id, references)

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create topic ``name`` (a no-op if it exists with that many partitions)."""
        self.log.create_topic(name, partitions)

    def list_topics(self) -> list[str]:
        return [t.name for t in self.log.topics()]

    def produce(
        self,
        topic: str,
        value: Any,
        key: Any = None,
        timestamp: int | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
        window: tuple[int, int] | None = None,
    ) -> None:
        """Append one record, serialized in the format of the stream/table over ``topic``.

        ``value`` is the record's logical content (a dict for JSON, the line for DELIMITED, the
        primitive for KAFKA); ``value=None`` is a tombstone. Returns once the record is durable.
        """
        topic = self.resolve_topic(topic)
        source = self._format_source(topic)
        key_bytes, value_bytes = self._encode_record(source, key, value)
        row = {
            "partition": partition, "offset": 0,
            "ts": int(time.time() * 1000) if timestamp is None else int(timestamp),
            "key": key_bytes, "value": value_bytes,
            "headers": [{"key": k, "value": v} for k, v in (headers or [])],
            "win_start": window[0] if window else None, "win_end": window[1] if window else None,
            "win_type": None if not window else ("SESSION" if source and source.window and
                                                  source.window.kind == "SESSION" else "TIME"),
        }
        self.log.append(topic, pa.Table.from_pylist([row], schema=RECORD_SCHEMA))

    def produce_batch(self, topic: str, data: pd.DataFrame | pa.Table, *, key: str | None = None,
                      timestamp: str | None = None) -> int:
        """Append many records at once, encoded in DuckDB (vectorised); returns the count.

        Columns of ``data`` map to the value columns of the stream over ``topic`` by name;
        ``key`` names the key column and ``timestamp`` the column holding epoch-ms record times.
        """
        topic = self.resolve_topic(topic)
        source = self._format_source(topic)
        if source is None:
            raise LogError(f"produce_batch needs a stream or table over topic '{topic}' to know its format")
        return encode_frame(self.con, self.log, source, data, key=key, timestamp=timestamp)

    def source(self, topic: str, data: Data, *, rate: float | None = None, key: str | None = None,
               timestamp: str | None = None) -> PythonSource:
        """Feed ``data`` (a DataFrame, Arrow table, iterable or async iterable of dicts) into
        ``topic`` from the engine's loop, ``rate`` records per second or as fast as it steps;
        ``key``/``timestamp`` name the columns holding the key and epoch-ms record times (default:
        the time of the step). Returns the source's handle (``.stop()``, ``.status``,
        ``.produced``); see :mod:`nbstream.connectors.python_source`. The topic needs a stream
        or table over it, whose format the records are written in; sources are not durable.
        """
        topic = self.resolve_topic(topic)
        stream = self._format_source(topic)
        if stream is None:
            raise LogError(f"source needs a stream or table over topic '{topic}' to know its format")

        def append(batch: pa.Table, key_column: str | None, ts_column: str | None) -> int:
            return encode_frame(self.con, self.log, stream, batch, key=key_column, timestamp=ts_column)

        return self.connectors.add_python_source(
            PythonSource(topic, data, append, rate=rate, key=key, timestamp=timestamp,
                         start_ms=self.connectors.clock()))

    def resolve_topic(self, name: str) -> str:
        """``name`` if it is a topic, else the topic of the stream or table called ``name``."""
        if self.log.topic(name) is not None:
            return name
        source = self.catalog.find(name) or self.catalog.find(name.upper())
        if source is not None:
            return source.topic
        return self.log.require(name).name

    def _format_source(self, topic: str) -> Source | None:
        sources = self.catalog.sources_on_topic(topic)
        return sources[0] if sources else None

    def _encode_record(self, source: Source | None, key: Any, value: Any) -> tuple[bytes | None, bytes | None]:
        if source is None:
            return _raw_bytes(key), _raw_bytes(value)
        key_fmt = format_for(source.key_format, source.key_properties, is_key=True, registry=self.schema_registry)
        value_fmt = format_for(source.value_format, source.value_properties, registry=self.schema_registry)
        key_bytes = None if key is None else key_fmt.encode_python(key, source.schema.key)
        value_bytes = None if value is None else value_fmt.encode_python(value, source.schema.value)
        return key_bytes, value_bytes

    # -- consuming ---------------------------------------------------------------------------------
    @overload
    def consume(self, topic: str, *, from_offsets: Mapping[int, int] | None = None,
                as_frame: Literal[False] = False) -> Records: ...

    @overload
    def consume(self, topic: str, *, from_offsets: Mapping[int, int] | None = None,
                as_frame: Literal[True]) -> pd.DataFrame: ...

    def consume(self, topic: str, *, from_offsets: Mapping[int, int] | None = None,
                as_frame: bool = False) -> Records | pd.DataFrame:
        """Every record of ``topic`` (in partition, offset order; from ``from_offsets`` on), decoded
        in DuckDB with the format of the stream or table written to it. ``topic`` may also name a
        stream or table.

        Records carry the formats' logical content (a JSON object as a dict, as written; raw bytes
        without a stream over the topic). ``as_frame=True`` returns a DataFrame instead: one row per
        record with the stream's typed columns, ``ROWTIME``, ``ROWPARTITION``, ``ROWOFFSET``,
        ``__deleted`` and ``__headers`` (see :func:`~nbstream.runtime.consume.consume_frame`).
        """
        with self.consume_cursor() as cursor:
            topic = self.resolve_topic(topic)
            source = self._decoding_source(topic)
            if as_frame and source is None:
                raise LogError(f"consume(as_frame=True) needs a stream or table over topic '{topic}' for its columns")
            relation = topic_relation(self.backend.log_on(cursor), topic, from_offsets)
            if as_frame:
                assert source is not None
                return consume_frame(cursor, relation, topic, source)
            return consume_records(cursor, relation, topic, source, self.schema_registry)

    @contextlib.contextmanager
    def consume_cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A configured cursor for one :meth:`consume`: a new one, closed after (the Kafka log stages
        records in a cursor's temporary tables, never over a query's batch)."""
        cursor = self.con.cursor()
        try:
            self._configure(cursor)
            yield cursor
        finally:
            cursor.close()

    def _decoding_source(self, topic: str) -> Source | None:
        sources = self.catalog.sources_on_topic(topic)
        written = {q.sink for q in list(self.catalog.queries.values())}  # list(): atomic under the GIL
        preferred = [s for s in sources if s.name in written]
        candidates = preferred or sources
        return candidates[0] if candidates else None

    # -- pull and push queries -----------------------------------------------------------------------
    def print_topic(self, sql: str, wait_s: float = 0.0) -> pd.DataFrame | topics.TopicPrinter:
        """Run ``PRINT topic [FROM BEGINNING] [INTERVAL n] [LIMIT n]``.

        With LIMIT: a DataFrame of the records in the topic now and those arriving within
        ``wait_s`` seconds, until LIMIT (``attrs`` name the guessed key and value formats).
        Without: a :class:`~nbstream.runtime.topics.TopicPrinter`, whose ``poll()`` returns the
        records that arrived since and whose iteration waits for them (until stopped).
        """
        statements = parse(sql)
        if len(statements) != 1 or not isinstance(statements[0], ast.PrintTopic):
            raise NbstreamError("expected exactly one PRINT statement")
        statement = statements[0]
        if statement.limit is None:
            return topics.TopicPrinter(self, statement)
        return topics.print_frame(self, statement, wait_s)

    def query(self, sql: str, params: Mapping[str, object] | None = None) -> pd.DataFrame:
        """Run a pull query on a materialized table and return its rows."""
        return pull.pull(self, sql, params or {})

    async def push(self, sql: str, params: Mapping[str, object] | None = None,
                   poll_interval: float = 0.01) -> AsyncIterator[dict[str, Any]]:
        """Run a push query; yields each result row as a dict (``ROWTIME`` included) as it arrives.

        Starts at the end of the input unless ``auto.offset.reset`` is ``earliest``. Stops after
        ``LIMIT`` rows, or when the consumer stops iterating or cancels. The query is stepped here,
        in a worker thread (:class:`~nbstream.runtime.service.EngineService` steps push queries in
        its background loop instead: :meth:`~nbstream.runtime.service.EngineService.start_push`).
        """
        query = self._push_query(sql, params)
        batches = query.subscribe(Batches())
        try:
            while True:
                for batch in batches.take():
                    for row in batch.to_pylist():
                        row.pop("__deleted", None)
                        yield row
                if query.ended:
                    break
                if await asyncio.to_thread(query.step) == 0:
                    await asyncio.sleep(poll_interval)
            if query.failure is not None:
                raise query.failure
        finally:
            query.stop()
            query.close()

    def _push_query(self, sql: str, params: Mapping[str, object] | None = None,
                    properties: Mapping[str, Any] | None = None) -> PushQuery:
        """The push query ``sql`` (not started: :meth:`PushQuery.step` runs it)."""
        runner = self._transient_runner(sql, params, properties)
        selected = selected_columns(_single_select(sql).query, runner.result_shape.columns, self.catalog)
        return PushQuery(runner, sql, selected=selected)

    def _transient_runner(self, sql: str, params: Mapping[str, object] | None = None,
                          properties: Mapping[str, Any] | None = None) -> QueryRunner:
        """A runner for the push query ``sql`` on its own DuckDB cursor (close ``runner.con`` when
        done); ``runner.fetch_rows()`` returns each next batch of result rows. ``properties``
        override the engine's while it is planned (``auto.offset.reset``)."""
        statement = _single_select(sql)
        cursor = self.con.cursor()
        self._configure(cursor)
        try:
            with self.overriding(properties or {}):
                earliest = str(self.property("auto.offset.reset") or "latest").lower() == "earliest"
                plan = plan_query(statement.query, self.catalog, cursor, params=params, properties=self.properties)
                return self.backend.transient_runner_for(plan, cursor, start_at_end=not earliest)
        except BaseException:
            cursor.close()
            raise

    # -- metadata hooks used by the conformance runner --------------------------------------------------
    def describe_source(self, name: str) -> dict[str, Any] | None:
        source = self.catalog.find(name)
        if source is None:
            return None
        return {"type": source.kind, "schema": _render_schema(source), "key_format": source.key_format,
                "value_format": source.value_format,
                "window_type": source.window.kind if source.window else None}

    def close(self) -> None:
        self.connectors.close()
        self.backend.close()
        self.schema_registry.close()
        self.con.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_memory_limit() -> str:
    """A quarter of the machine's memory (or of its container's: Binder gives 2 GB), at most 1 GiB:
    a notebook kernel shares the machine with the browser and other kernels (DuckDB's own default,
    80%, lets one engine take nearly all of it), and a micro-batch needs a few hundred MB."""
    total = 4 * 2**30  # no sysconf (Windows): the cap
    with contextlib.suppress(AttributeError, ValueError, OSError):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with contextlib.suppress(ValueError, OSError):  # "max" when the cgroup has no limit
        total = min(total, int(Path("/sys/fs/cgroup/memory.max").read_text()))
    return f"{min(total // 4, 2**30) // 2**20}MiB"


def _render_schema(source: Source) -> str:
    """The schema as ksqlDB's DESCRIBE renders it: a table's declared key columns (and their copies
    through a projection) are ``PRIMARY KEY``; keys a GROUP BY or a join creates are ``KEY``."""
    if not source.is_table or _creates_key(source):
        return str(source.schema)
    return ", ".join(str(c).removesuffix(" KEY") + " PRIMARY KEY" if c.role == "KEY" else str(c)
                     for c in source.schema.columns)


def _creates_key(source: Source) -> bool:
    """Whether the statement that created ``source`` makes a new key (aggregation or join)."""
    statements = parse(source.sql) if source.sql else []
    query = statements[0].query if statements and isinstance(statements[0], ast.CreateAsSelect) else None
    return query is not None and (is_aggregate_query(query) or bool(query.select.args.get("joins")))


def _single_select(sql: str) -> ast.Select:
    statements = parse(sql)
    if len(statements) != 1 or not isinstance(statements[0], ast.Select):
        raise NbstreamError("expected exactly one SELECT statement")
    return statements[0]


def _raw_bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    import orjson

    try:
        return orjson.dumps(value)
    except TypeError as e:
        raise ExecutionError(f"cannot serialize {type(value).__name__} without a stream over the topic") from e


