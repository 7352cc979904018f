"""The connector classes nbstream runs in-process, keyed by ``'connector.class'``.

``CREATE SOURCE|SINK CONNECTOR name WITH ('connector.class'='…', …)`` looks its class up here:
:func:`connector_class` accepts the class's short name or any alias (Kafka Connect's Java class
names, so statements copied from ksqlDB tutorials run), case-insensitively, and an unknown name is
a :class:`CatalogError` listing the known classes with the nearest one. A sink connector class
(:class:`~nbstream.connectors.sinks.TopicSink`) is registered with ``kind="SINK"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from nbstream.connectors.base import SourceConnector
from nbstream.connectors.datagen import DatagenConnector
from nbstream.connectors.duckdb_sink import DuckDbSink
from nbstream.connectors.file_sinks import JsonLinesSink, ParquetSink
from nbstream.connectors.files import FileSourceConnector
from nbstream.connectors.sinks import TopicSink
from nbstream.errors import CatalogError, did_you_mean
from nbstream.sql.ast import PropertyValue

ConnectorKind = Literal["SOURCE", "SINK"]


@dataclass(frozen=True)
class ConnectorClass:
    """A connector class: its name, kind, the aliases it answers to, how to create one, and the
    properties naming files or folders it reads or writes (``paths``; a server may confine them)."""

    name: str
    kind: ConnectorKind
    create: Callable[[str, Mapping[str, PropertyValue]], SourceConnector | TopicSink]  # (name, properties)
    aliases: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()


_CLASSES: dict[tuple[ConnectorKind, str], ConnectorClass] = {}  # a source and a sink class may share a name


def register(cls: ConnectorClass) -> None:
    """Make ``cls`` available under its name and aliases (case-insensitive)."""
    for alias in (cls.name, *cls.aliases):
        _CLASSES[cls.kind, alias.lower()] = cls


def known_classes() -> list[ConnectorClass]:
    """Every registered class once, in registration order."""
    return list({id(c): c for c in _CLASSES.values()}.values())


def connector_class(class_name: PropertyValue, kind: ConnectorKind, connector: str) -> ConnectorClass:
    """The class ``'connector.class'`` names for a ``kind`` connector called ``connector``."""
    if not isinstance(class_name, str) or not class_name:
        raise CatalogError(f"connector {connector}: 'connector.class' is missing{_known_list(kind)}")
    other_kind: ConnectorKind = "SINK" if kind == "SOURCE" else "SOURCE"
    found = _CLASSES.get((kind, class_name.lower())) or _CLASSES.get((other_kind, class_name.lower()))
    if found is None:
        names = [c.name for c in known_classes()]
        raise CatalogError(f"connector {connector}: unknown connector.class '{class_name}'{_known_list(kind)}."
                           f"{did_you_mean(class_name, names)}".rstrip("."))
    if found.kind != kind:
        raise CatalogError(f"connector {connector}: '{class_name}' is a {found.kind.lower()} connector class, "
                           f"not a {kind.lower()} one{_known_list(kind)}")
    return found


def _known_list(kind: ConnectorKind) -> str:
    names = [c.name for c in known_classes() if c.kind == kind]
    if not names:
        return f" (nbstream has no {kind.lower()} connector classes yet)"
    return f" (known {kind.lower()} connector classes: {', '.join(names)})"


register(ConnectorClass("datagen", "SOURCE", DatagenConnector,
                        aliases=("DatagenSource", "io.confluent.kafka.connect.datagen.DatagenConnector")))
register(ConnectorClass("file", "SOURCE", FileSourceConnector, aliases=("FileStreamSource",), paths=("path",)))
register(ConnectorClass("file", "SINK", JsonLinesSink, aliases=("FileStreamSink",), paths=("path",)))
register(ConnectorClass("parquet", "SINK", ParquetSink, paths=("path",)))
register(ConnectorClass("duckdb", "SINK", DuckDbSink, paths=("database",)))
