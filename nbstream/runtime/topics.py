"""SHOW TOPICS [EXTENDED] and PRINT: looking at the topics of the engine's log directly.

``SHOW TOPICS`` lists every topic with its partitions and replicas, as ksqlDB does; ``EXTENDED``
adds ``Consumers`` (the running persistent queries of this engine that read the topic) and
``ConsumerGroups`` (on Kafka: the consumer groups that committed an offset for the topic, which
includes the group of every nbstream query; on the embedded log: one per running query).

``PRINT topic [FROM BEGINNING] [INTERVAL n] [LIMIT n]`` shows raw records as ksqlDB's CLI does::

    Key format: KAFKA_STRING
    Value format: JSON or KAFKA_STRING
    rowtime: 2024/05/06 16:03:38.373 Z, key: u1, value: {"page": "home"}, partition: 0

The key and value formats are guessed from the bytes seen so far (any stream or table declared
over the topic is not consulted, like ksqlDB): every format that could have written all of them,
``MIXED`` when none could. Without FROM BEGINNING printing starts at the end of the topic.
INTERVAL n prints every n-th record, LIMIT stops after n printed records. Records are read a
slice at a time (POLL_RECORDS per partition) and printed by timestamp within each slice.

:class:`TopicPrinter` is the streaming form (poll or iterate, as the CLI does until LIMIT or
Ctrl-C); :func:`print_frame` is the bounded form for notebooks and ``Engine.execute``.
PRINT is a debugging aid bounded by LIMIT, so its records are rendered one by one in Python.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from nbstream.errors import LogError
from nbstream.runtime.results import StatementResult
from nbstream.sql import ast

if TYPE_CHECKING:
    from nbstream.runtime.engine import Engine

#: The formats PRINT can recognise from bytes, in the order ksqlDB lists them.
FORMATS = ("JSON", "KAFKA_STRING", "KAFKA_INT", "KAFKA_BIGINT", "KAFKA_DOUBLE")

#: What PRINT says about a format before it has seen a non-null key or value (ksqlDB's words).
NO_DATA = "¯\\_(ツ)_/¯ - no data processed"

#: Seconds between polls of the log while a printer waits for records.
POLL_INTERVAL_S = 0.05

#: Records read per partition by one poll (a long topic is printed a slice at a time).
POLL_RECORDS = 1000

#: Control characters that make bytes binary rather than text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")

Rows = list[tuple[Any, ...]]


# -- SHOW TOPICS --------------------------------------------------------------------------------
def show_topics(engine: Engine, extended: bool) -> tuple[tuple[str, ...], Rows]:
    """The columns and rows of ``SHOW TOPICS [EXTENDED]``."""
    topics = engine.log.topics()
    replicas = engine.backend.topic_replicas()
    rows: Rows = [(t.name, t.partitions, replicas.get(t.name, 1)) for t in topics]
    columns: tuple[str, ...] = ("Kafka Topic", "Partitions", "Partition Replicas")
    if not extended:
        return columns, rows
    readers = _reading_queries(engine)
    groups = engine.backend.consumer_groups({t.name: t.partitions for t in topics}, readers)
    rows = [(*row, len(readers.get(t.name, [])), len(groups.get(t.name, [])))
            for row, t in zip(rows, topics, strict=True)]
    return (*columns, "Consumers", "ConsumerGroups"), rows


def _reading_queries(engine: Engine) -> dict[str, list[str]]:
    """The ids of the running persistent queries that read each topic."""
    readers: dict[str, list[str]] = {}
    for query in engine.catalog.running():
        topics = {engine.catalog.get(name).topic for name in query.sources}
        for topic in sorted(topics):
            readers.setdefault(topic, []).append(query.id)
    return readers


# -- PRINT ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrintedRecord:
    """One record as PRINT shows it: key and value rendered as text (None: null)."""

    rowtime: int
    key: str | None
    value: str | None
    partition: int
    offset: int

    def line(self) -> str:
        """The record as ksqlDB's CLI prints it."""
        return (f"rowtime: {format_rowtime(self.rowtime)}, key: {_or_null(self.key)}, "
                f"value: {_or_null(self.value)}, partition: {self.partition}")


class TopicPrinter:
    """The records of one PRINT statement, polled from the log as they arrive.

    :meth:`poll` returns the records available now (never waits); iterating waits for records
    until LIMIT is reached (forever without one). :attr:`key_format` and :attr:`value_format`
    describe the records returned so far.
    """

    def __init__(self, engine: Engine, statement: ast.PrintTopic) -> None:
        if statement.limit is not None and statement.limit < 1:
            raise LogError(f"PRINT {statement.topic}: LIMIT must be at least 1, got {statement.limit}")
        if statement.interval is not None and statement.interval < 1:
            raise LogError(f"PRINT {statement.topic}: INTERVAL must be at least 1, got {statement.interval}")
        self.log = engine.log
        self.topic = resolve_print_topic(engine, statement.topic)
        self.interval = statement.interval or 1
        self.limit = statement.limit
        info = self.log.require(self.topic)
        self._next = {p: 0 for p in info.end_offsets} if statement.from_beginning else dict(info.end_offsets)
        self._seen = 0
        self.printed = 0
        self._keys = FormatGuess()
        self._values = FormatGuess()

    @property
    def done(self) -> bool:
        """Whether LIMIT records were printed."""
        return self.limit is not None and self.printed >= self.limit

    @property
    def key_format(self) -> str:
        return self._keys.describe()

    @property
    def value_format(self) -> str:
        return self._values.describe()

    def poll(self) -> list[PrintedRecord]:
        """The next records to print among those in the topic now (at most POLL_RECORDS per
        partition), by timestamp across partitions."""
        if self.done:
            return []
        wanted = POLL_RECORDS if self.limit is None else min(POLL_RECORDS, (self.limit - self.printed) * self.interval)
        rows = self.log.read(self.topic, self._next, limit=wanted).to_pylist()
        printed = []
        for row in sorted(rows, key=lambda r: (r["ts"], r["partition"], r["offset"])):
            if self.done:
                break
            self._next[row["partition"]] = row["offset"] + 1
            self._seen += 1
            if (self._seen - 1) % self.interval == 0:
                printed.append(self._render(row))
                self.printed += 1
        return printed

    def drain(self) -> list[PrintedRecord]:
        """The records to print among all those in the topic now (polls until one reads nothing)."""
        printed: list[PrintedRecord] = []
        while not self.done:
            seen = self._seen
            printed += self.poll()
            if self._seen == seen:
                break
        return printed

    def _render(self, row: dict[str, Any]) -> PrintedRecord:
        self._keys.see(row["key"])
        self._values.see(row["value"])
        return PrintedRecord(row["ts"], render_bytes(row["key"]), render_bytes(row["value"]),
                             row["partition"], row["offset"])

    def __iter__(self) -> Iterator[PrintedRecord]:
        while not self.done:
            records = self.poll()
            yield from records
            if not records:
                time.sleep(POLL_INTERVAL_S)


def collect(engine: Engine, statement: ast.PrintTopic, wait_s: float = 0.0) -> tuple[TopicPrinter, list[PrintedRecord]]:
    """The records a PRINT with LIMIT shows: those in the topic now, and those arriving within
    ``wait_s`` seconds, until LIMIT; with the printer that read them (for the formats)."""
    if statement.limit is None:
        raise LogError(f"PRINT {statement.topic} without LIMIT runs until stopped: add LIMIT n, "
                       "or iterate Engine.print_topic(…) for a stream of records")
    printer = TopicPrinter(engine, statement)
    deadline = time.monotonic() + wait_s
    records = printer.drain()
    while not printer.done and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        records += printer.drain()
    return printer, records


def print_frame(engine: Engine, statement: ast.PrintTopic, wait_s: float = 0.0) -> pd.DataFrame:
    """:func:`collect`'s records as a DataFrame: ``rowtime`` (UTC timestamps), ``key``,
    ``value``, ``partition``, ``offset``; ``attrs`` hold ``key_format`` and ``value_format``."""
    printer, records = collect(engine, statement, wait_s)
    frame = pd.DataFrame({
        "rowtime": pd.to_datetime([r.rowtime for r in records], unit="ms", utc=True),
        "key": pd.Series([r.key for r in records], dtype=object),
        "value": pd.Series([r.value for r in records], dtype=object),
        "partition": pd.Series([r.partition for r in records], dtype="int32"),
        "offset": pd.Series([r.offset for r in records], dtype="int64"),
    })
    frame.attrs.update(key_format=printer.key_format, value_format=printer.value_format)
    return frame


def print_result(engine: Engine, statement: ast.PrintTopic) -> StatementResult:
    """``Engine.execute`` of a PRINT with LIMIT: :func:`collect`'s records as rows like ksqlDB's
    lines; the message (and ``details``) say the formats."""
    printer, records = collect(engine, statement)
    formats = {"key_format": printer.key_format, "value_format": printer.value_format}
    rows = tuple((format_rowtime(r.rowtime), r.key, r.value, r.partition) for r in records)
    return StatementResult(statement.text, format_header(printer), ("rowtime", "key", "value", "partition"),
                           rows, details=formats)


def format_header(printer: TopicPrinter) -> str:
    """The lines PRINT starts with: the guessed key and value formats."""
    return f"Key format: {printer.key_format}\nValue format: {printer.value_format}"


def resolve_print_topic(engine: Engine, name: str) -> str:
    """The topic ``name`` names: itself, or the one topic equal to it but for case (an unquoted
    name arrives upper-cased); else a LogError naming the near miss."""
    if engine.log.topic(name) is not None:
        return name
    matches = [t.name for t in engine.log.topics() if t.name.upper() == name.upper()]
    if len(matches) == 1:
        return matches[0]
    return engine.log.require(name).name


def format_rowtime(epoch_ms: int) -> str:
    """A record time as PRINT shows it: ``2024/05/06 16:03:38.373 Z`` (UTC)."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.strftime("%Y/%m/%d %H:%M:%S.") + f"{epoch_ms % 1000:03d} Z"


def render_bytes(data: bytes | None) -> str | None:
    """Key or value bytes as text: UTF-8 as is, else a 4- or 8-byte big-endian integer as a
    number, else hex."""
    if data is None:
        return None
    text = _text(data)
    if text is not None:
        return text
    if len(data) in (4, 8):
        return str(int.from_bytes(data, "big", signed=True))
    return "0x" + data.hex()


def _text(data: bytes) -> str | None:
    """``data`` as text if it is UTF-8 without control characters (but tabs and line breaks)."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    return None if _CONTROL.search(text) else text


def _or_null(text: str | None) -> str:
    return "<null>" if text is None else text


class FormatGuess:
    """The formats that could have written every non-null key (or value) seen."""

    def __init__(self) -> None:
        self.candidates: set[str] | None = None  # None: nothing seen yet

    def see(self, data: bytes | None) -> None:
        if data is None:
            return
        possible = formats_of(data)
        self.candidates = possible if self.candidates is None else self.candidates & possible

    def describe(self) -> str:
        if self.candidates is None:
            return NO_DATA
        if not self.candidates:
            return "MIXED"
        return " or ".join(f for f in FORMATS if f in self.candidates)


def formats_of(data: bytes) -> set[str]:
    """The formats among :data:`FORMATS` whose serializer could have written ``data``."""
    possible = {"KAFKA_INT"} if len(data) == 4 else {"KAFKA_BIGINT", "KAFKA_DOUBLE"} if len(data) == 8 else set()
    text = _text(data)
    if text is None:
        return possible
    possible.add("KAFKA_STRING")
    try:
        json.loads(text)
    except ValueError:
        return possible
    return possible | {"JSON"}
