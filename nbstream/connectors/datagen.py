"""The datagen source connector: ksqlDB's demo-data generator, run inside the engine.

``CREATE SOURCE CONNECTOR c WITH ('connector.class'='datagen', 'kafka.topic'='rides',
'quickstart'='rides', 'max.interval'=50, 'iterations'=1000)`` writes records of a
:mod:`~nbstream.connectors.quickstarts` schema to a topic. Like kafka-connect-datagen, it waits a
random time in ``[0, max.interval)`` ms (default 500) before each record and stops after
``iterations`` records (default 1,000,000; below 1: never).

Nothing here sleeps: :meth:`DatagenConnector.step` is given the current time and returns, as one
batch, every record due since the previous step (at most :data:`MAX_BATCH`), each stamped with the
time it was due. The connector's progress — records produced, when the next one is due, the
quickstart's random-walk state — is a JSON value that the caller stores in the same transaction as
the records (:mod:`nbstream.connectors.running`), so a restarted engine resumes without losing or
repeating records.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from nbstream.catalog.schema import LogicalSchema
from nbstream.catalog.types import SqlType
from nbstream.connectors.base import Generated
from nbstream.connectors.quickstarts import QUICKSTARTS, Batch, Quickstart, State
from nbstream.errors import CatalogError, did_you_mean
from nbstream.sql.ast import PropertyValue

DEFAULT_MAX_INTERVAL_MS = 500  # kafka-connect-datagen's defaults
DEFAULT_ITERATIONS = 1_000_000
MAX_BATCH = 10_000  # records per step: ~0.1 s of generating and appending, so a catch-up never holds the loop long

#: The properties datagen reads; the others kafka-connect accepts are listed so that ksqlDB
#: statements copied from tutorials run (their converters are what nbstream does anyway).
PROPERTIES = ("connector.class", "kafka.topic", "quickstart", "max.interval", "iterations", "random.seed",
              "topic.creation.default.partitions")
IGNORED_PROPERTIES = ("tasks.max", "key.converter", "value.converter", "value.converter.schemas.enable",
                      "key.converter.schemas.enable", "format")


@dataclass(frozen=True)
class DatagenConfig:
    """The checked properties of one datagen connector."""

    topic: str
    quickstart: Quickstart
    max_interval_ms: int
    iterations: int | None  # None: unlimited
    seed: int
    partitions: int  # of the topic, if the connector creates it (Kafka Connect's topic.creation.…)

    @classmethod
    def parse(cls, name: str, properties: Mapping[str, PropertyValue]) -> DatagenConfig:
        """The config of connector ``name``; a :class:`CatalogError` naming a bad or missing property."""
        props = {k.lower(): v for k, v in properties.items()}
        for key in props:
            if key not in PROPERTIES + IGNORED_PROPERTIES:
                raise CatalogError(f"connector {name}: unknown datagen property '{key}'."
                                   f"{did_you_mean(key, PROPERTIES)}".rstrip("."))
        topic = props.get("kafka.topic")
        if not isinstance(topic, str) or not topic:
            raise CatalogError(f"connector {name}: datagen needs 'kafka.topic', the topic to write to")
        iterations = _integer(name, props, "iterations", DEFAULT_ITERATIONS)
        return cls(topic=topic, quickstart=_quickstart(name, props.get("quickstart")),
                   max_interval_ms=_integer(name, props, "max.interval", DEFAULT_MAX_INTERVAL_MS, minimum=0),
                   iterations=iterations if iterations >= 1 else None,
                   seed=_integer(name, props, "random.seed", zlib.crc32(name.encode())),
                   partitions=_integer(name, props, "topic.creation.default.partitions", 1, minimum=1))


def _quickstart(name: str, value: PropertyValue) -> Quickstart:
    if not isinstance(value, str) or not value:
        raise CatalogError(f"connector {name}: datagen needs 'quickstart', one of {', '.join(QUICKSTARTS)}")
    quickstart = QUICKSTARTS.get(value.lower())
    if quickstart is None:
        raise CatalogError(f"connector {name}: unknown quickstart '{value}' (known: {', '.join(QUICKSTARTS)})."
                           f"{did_you_mean(value, QUICKSTARTS)}".rstrip("."))
    return quickstart


def _integer(name: str, props: Mapping[str, Any], key: str, default: int, minimum: int | None = None) -> int:
    value = props.get(key, default)
    try:
        number = int(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or (isinstance(value, float) and not value.is_integer()):
        raise CatalogError(f"connector {name}: '{key}' must be an integer, not {value!r}")
    if minimum is not None and number < minimum:
        raise CatalogError(f"connector {name}: '{key}' must be at least {minimum}, not {number}")
    return number


class DatagenConnector:
    """A running datagen connector (a :class:`~nbstream.connectors.base.SourceConnector`): paces
    and generates records; writes nothing itself."""

    connector_class = "datagen"
    kind = "SOURCE"

    def __init__(self, name: str, properties: Mapping[str, PropertyValue]) -> None:
        self.name = name
        self.config = DatagenConfig.parse(name, properties)
        self.topic, self.partitions = self.config.topic, self.config.partitions
        self.produced = 0
        self.next_due_ms: int | None = None  # None: the first record is due one interval after the first step
        self.state: State = self.config.quickstart.initial_state(np.random.default_rng([self.config.seed, 0]))
        self._resumed = False

    # -- progress ------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.config.iterations is not None and self.produced >= self.config.iterations

    @property
    def fields(self) -> tuple[tuple[str, SqlType], ...]:
        return self.config.quickstart.fields

    def progress(self) -> str:
        """The connector's progress as JSON (stored with the records it counts)."""
        return json.dumps({"produced": self.produced, "next_due_ms": self.next_due_ms, "state": self.state})

    def resume(self, progress: str) -> None:
        """Continue from stored ``progress``; the time until the next step (the engine was
        stopped) is not made up for."""
        saved = json.loads(progress)
        self.produced, self.state, self.next_due_ms = saved["produced"], saved["state"], saved["next_due_ms"]
        self._resumed = True

    def schema(self, kind: str) -> LogicalSchema | None:
        """The columns of a STREAM/TABLE over this connector's topic (None: a TABLE needs a key)."""
        return self.config.quickstart.stream_schema(kind)

    def describe(self) -> list[tuple[str, Any]]:
        config = self.config
        return [("quickstart", config.quickstart.name), ("kafka.topic", config.topic),
                ("max.interval", config.max_interval_ms),
                ("iterations", config.iterations if config.iterations is not None else "unlimited"),
                ("random.seed", config.seed), ("records produced", self.produced)]

    # -- generating ----------------------------------------------------------------------------
    def step(self, now_ms: int) -> Generated | None:
        """Every record due at ``now_ms`` (at most MAX_BATCH), or None when none is due.

        The connector's counters advance; the caller stores :meth:`progress` with the records.
        """
        if self.finished:
            return None
        if self._resumed and self.next_due_ms is not None:
            self.next_due_ms = max(self.next_due_ms, now_ms)
        self._resumed = False
        rng = np.random.default_rng([self.config.seed, self.produced + 1])
        times = self._due_times(rng, now_ms)
        if not len(times):
            return None
        batch = Batch(rng, times, self.produced, self.state)
        columns, self.state = self.config.quickstart.generate(batch)
        self.produced += len(times)
        key_field = self.config.quickstart.key_field
        keys = pa.array(columns[key_field]).cast(pa.string())
        return Generated(times, keys, columns)

    def _due_times(self, rng: np.random.Generator, now_ms: int) -> np.ndarray:
        """The times of the records due by ``now_ms``; ``next_due_ms`` becomes the next one's."""
        limit = MAX_BATCH if self.config.iterations is None else min(MAX_BATCH, self.config.iterations - self.produced)
        max_interval = self.config.max_interval_ms
        if max_interval <= 1:  # datagen without pauses: a batch per step, at most one per millisecond
            if self.next_due_ms is not None and now_ms < self.next_due_ms:
                return np.empty(0, dtype=np.int64)
            self.next_due_ms = now_ms + 1
            return np.full(limit, now_ms, dtype=np.int64)
        if self.next_due_ms is None:
            self.next_due_ms = now_ms + int(rng.integers(0, max_interval))
        if self.next_due_ms > now_ms:
            return np.empty(0, dtype=np.int64)
        expected = (now_ms - self.next_due_ms) // max(1, (max_interval - 1) // 2) + 1
        count = int(min(limit + 1, 2 * expected + 16))
        gaps = rng.integers(0, max_interval, count - 1)
        candidates = self.next_due_ms + np.r_[0, np.cumsum(gaps)].astype(np.int64)
        due = candidates[candidates <= now_ms][:limit]
        following = candidates[len(due)] if len(due) < len(candidates) else due[-1] + int(rng.integers(0, max_interval))
        self.next_due_ms = int(following)
        return due
