"""File sinks: the rows of a stream or table as Parquet or JSON-lines files in a folder.

``CREATE SINK CONNECTOR c WITH ('connector.class'='parquet', 'source'='ORDERS', 'path'='/out')``
writes, per step, one file per partition of the source's topic with records: the rows in log order
(columns as ``SELECT *`` names them; a TABLE's files are its changelog, with a ``__deleted``
column true for a deleted row). ``'connector.class'='file'`` writes JSON lines the same way.

**Exactly-once files**: a file is named by the connector, the partition and the offsets it holds
(``C-p0-00000000000000000000-00000000000000000099.parquet``), written under a temporary name and
renamed into place *before* the offsets commit. A restart after a crash in between writes the batch
again from the committed offset, first deleting any file of that partition starting there: the
folder never holds a record twice, nor misses one. ``flush.size`` caps the records per file;
below it, a step writes only ``rotate.interval.ms`` (default 1000) after the previous files, so a
trickle of records makes a file a second, not one per step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbstream.connectors import properties
from nbstream.connectors.sinks import ROWS, StoreProgress, TopicSink
from nbstream.errors import CatalogError
from nbstream.sql.ast import PropertyValue

OFFSET_DIGITS = 20  # zero-padded, so that file names sort in offset order


class FileSink(TopicSink):
    """Writes each batch as files (see the module docstring); subclasses set the format."""

    class_properties = ("path",)
    default_rotate_interval_ms = 1000  # at most a file per partition a second, unless flush.size are waiting
    extension = ""
    copy_options = ""

    def __init__(self, name: str, props: Mapping[str, PropertyValue]) -> None:
        super().__init__(name, props)
        self.folder = Path(properties.text(name, self.props, "path", "the folder to write the files to"))
        if self.folder.exists() and not self.folder.is_dir():
            raise CatalogError(f"connector {name}: path '{self.folder}' is a file, not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, ranges: Mapping[int, tuple[int, int]], store: StoreProgress) -> None:
        deleted = self.source.is_table
        counts = dict(self.con.execute(f"SELECT __in_partition, count(*) FROM {ROWS} WHERE NOT __err "
                                       "GROUP BY __in_partition").fetchall())
        for partition, (start, end) in sorted(ranges.items()):
            for stale in self.folder.glob(f"{self.name}-p{partition}-{start:0{OFFSET_DIGITS}d}-*{self.extension}"):
                stale.unlink()  # written before a crash, its offsets never committed
            if not counts.get(partition):
                continue
            final = self.folder / (f"{self.name}-p{partition}-{start:0{OFFSET_DIGITS}d}-"
                                   f"{end - 1:0{OFFSET_DIGITS}d}{self.extension}")
            temporary = final.with_name(f".{final.name}.tmp")
            self.con.execute(f"COPY ({self.rows_sql(f'__in_partition = {partition}', deleted=deleted)}) "
                             f"TO '{_sql_text(str(temporary))}' ({self.copy_options})")
            os.replace(temporary, final)
        self.commit(ranges, store, written=sum(counts.values()))

    def describe_target(self) -> list[tuple[str, Any]]:
        return [("path", str(self.folder)), ("flush.size", self.flush_size),
                ("rotate.interval.ms", self.rotate_interval_ms)]


class ParquetSink(FileSink):
    connector_class = "parquet"
    extension = ".parquet"
    copy_options = "FORMAT PARQUET"


class JsonLinesSink(FileSink):
    connector_class = "file"
    extension = ".jsonl"
    copy_options = "FORMAT JSON"


def _sql_text(text: str) -> str:
    return text.replace("'", "''")
