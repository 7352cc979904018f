"""What the engine needs from a connector it runs in-process.

A *source* connector is stepped with the current time and hands back the records due as one
:class:`Generated` batch; the engine (:mod:`nbstream.connectors.running`) encodes and appends
them and stores :meth:`SourceConnector.progress` in the same transaction, then calls
:meth:`SourceConnector.resume` with it after a restart. Connector classes are looked up by
``'connector.class'`` in :mod:`nbstream.connectors.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from nbstream.catalog.schema import LogicalSchema
from nbstream.catalog.types import SqlType


@dataclass(frozen=True)
class Generated:
    """One step's records: ``times`` (epoch ms), ``keys`` (strings) and the value ``columns``;
    ``rejected``: messages for input that made no record (they go to the processing log)."""

    times: np.ndarray
    keys: pa.Array
    columns: dict[str, pa.Array]
    rejected: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))

    @property
    def size(self) -> int:
        return len(self.times)


class SourceConnector(Protocol):
    """A source connector (see :class:`~nbstream.connectors.datagen.DatagenConnector`)."""

    name: str
    topic: str
    partitions: int  # of the topic, when the connector creates it
    connector_class: str
    kind: str
    produced: int

    @property
    def finished(self) -> bool:
        """Whether it will write no more records."""
        ...

    @property
    def fields(self) -> tuple[tuple[str, SqlType], ...]:
        """The value fields of its records, as written (names in JSON, types)."""
        ...

    def step(self, now_ms: int) -> Generated | None:
        """The records due at ``now_ms``, or None; advances :meth:`progress`."""
        ...

    def progress(self) -> str:
        """Where it is, as JSON: stored with the records it counts."""
        ...

    def resume(self, progress: str) -> None:
        """Continue from stored ``progress`` (after a restart, or a failed append)."""
        ...

    def schema(self, kind: str) -> LogicalSchema | None:
        """The columns of a STREAM/TABLE over :attr:`topic` declared without columns, if known."""
        ...

    def describe(self) -> list[tuple[str, Any]]:
        """Its configuration and progress as (property, value) rows for DESCRIBE CONNECTOR."""
        ...
