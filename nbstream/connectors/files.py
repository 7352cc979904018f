"""The file source connector: JSON-lines and CSV files appended to a topic, read once or tailed.

``CREATE SOURCE CONNECTOR c WITH ('connector.class'='file', 'kafka.topic'='events',
'path'='/data/events.jsonl', 'format'='jsonl', 'mode'='tail')`` reads ``path`` — a file, a folder
(its files with the format's extensions) or a glob — in name order:

* ``mode='read'`` (default) reads the files there at creation to their end, then finishes;
* ``mode='tail'`` keeps following them: lines appended to a file and new files are picked up at
  the next step. A last line without its newline is left until it is complete.

Each step reads one file's next complete lines (at most :data:`MAX_BATCH_BYTES`) and decodes them
as one batch in DuckDB (a JSON line is cast to the row's STRUCT, a CSV field to its column's
type), never line by line in Python. The columns are DuckDB's reading of the first file
(``read_json`` / ``read_csv`` sniffing); a STREAM over the topic declared without columns gets
them. A line that is not a JSON object, or whose field does not fit its column's type, or a CSV
row with the wrong number of fields, goes to the processing log and the connector carries on.
A batch ends at a newline, so a quoted CSV field holding a newline is read only when the batch
holds all of it (a tailed file whose writer stopped inside one sends those rows to the processing
log), and record numbers in messages then count such lines as records. CSV columns are matched by
position in every file.

The byte offset and record count reached in each file are the connector's progress, committed
with the records, so a restart neither loses nor repeats a line. A tailed file that shrank (was
truncated or replaced) is read again from its start, as ``tail -F`` does.
"""

from __future__ import annotations

import glob
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from nbstream.catalog.schema import Column, LogicalSchema
from nbstream.catalog.types import STRING, SqlType, parse_type
from nbstream.connectors import properties
from nbstream.connectors.base import Generated
from nbstream.connectors.quickstarts import upper_case_fields
from nbstream.errors import CatalogError, SqlTypeError, did_you_mean
from nbstream.physical.expressions import quote
from nbstream.sql.ast import PropertyValue

MAX_BATCH_BYTES = 8 << 20  # bytes of one file per step: bounded work per loop turn

#: The formats and the file extensions that imply them.
EXTENSIONS = {"jsonl": (".jsonl", ".ndjson", ".json"), "csv": (".csv",)}

PROPERTIES = ("connector.class", "kafka.topic", "path", "format", "mode", "key", "timestamp", "csv.delimiter",
              "topic.creation.default.partitions")


@dataclass(frozen=True)
class FileSourceConfig:
    """The checked properties of one file source connector."""

    topic: str
    path: str
    format: str
    mode: str  # 'read' or 'tail'
    key: str | None  # the column whose value is the record key
    timestamp: str | None  # the column holding the record time (epoch ms, or a TIMESTAMP)
    delimiter: str
    partitions: int

    @classmethod
    def parse(cls, name: str, props_in: Mapping[str, PropertyValue]) -> FileSourceConfig:
        props = properties.checked(name, "file source", props_in, PROPERTIES)
        path = properties.text(name, props, "path", "the file, folder or glob to read")
        if not glob.has_magic(path) and not os.path.exists(path):
            raise CatalogError(f"connector {name}: path '{path}' does not exist")
        fmt = properties.choice(name, props, "format", EXTENSIONS, None) or _format_of(name, path)
        delimiter = properties.optional_text(name, props, "csv.delimiter") or ","
        if len(delimiter) != 1:
            raise CatalogError(f"connector {name}: 'csv.delimiter' must be one character, not {delimiter!r}")
        return cls(topic=properties.text(name, props, "kafka.topic", "the topic to write to"), path=path,
                   format=fmt, mode=properties.choice(name, props, "mode", ("read", "tail"), "read") or "read",
                   key=properties.optional_text(name, props, "key"),
                   timestamp=properties.optional_text(name, props, "timestamp"), delimiter=delimiter,
                   partitions=properties.integer(name, props, "topic.creation.default.partitions", 1, minimum=1))

    def files(self) -> list[str]:
        """The files ``path`` names now, in name order (a folder: those with the format's extensions)."""
        if os.path.isdir(self.path):
            found = [str(p) for p in Path(self.path).iterdir() if p.is_file() and p.suffix.lower()
                     in EXTENSIONS[self.format]]
        elif glob.has_magic(self.path):
            found = [p for p in glob.glob(self.path) if os.path.isfile(p)]
        else:
            found = [self.path] if os.path.isfile(self.path) else []
        return sorted(found)


def _format_of(name: str, path: str) -> str:
    """The format a path's extension implies (a folder: that of its files, if they agree)."""
    suffixes = ({p.suffix.lower() for p in Path(path).iterdir() if p.is_file()} if os.path.isdir(path)
                else {Path(path).suffix.lower()})
    formats = {fmt for fmt, exts in EXTENSIONS.items() for s in suffixes if s in exts}
    if len(formats) != 1:
        raise CatalogError(f"connector {name}: say 'format' ('jsonl' or 'csv'): it does not follow from "
                           f"the file names of '{path}'")
    return formats.pop()


@dataclass
class FilePosition:
    """How far a file was read: the byte offset after the last line taken, and the records."""

    offset: int = 0
    records: int = 0


class FileSourceConnector:
    """A running file source (a :class:`~nbstream.connectors.base.SourceConnector`)."""

    connector_class = "file"
    kind = "SOURCE"

    def __init__(self, name: str, props: Mapping[str, PropertyValue]) -> None:
        self.name = name
        self.config = FileSourceConfig.parse(name, props)
        self.topic, self.partitions = self.config.topic, self.config.partitions
        files = self.config.files()
        if not files:
            raise CatalogError(f"connector {name}: path '{self.config.path}' matches no {self.config.format} "
                               "file (a file source takes its columns from the first file)")
        self.read_files = files if self.config.mode == "read" else None  # read mode: those there now
        self.positions: dict[str, FilePosition] = {}
        self.produced = 0
        self.rejected = 0
        self._con = duckdb.connect(":memory:")  # the connector's own: decoding never touches the engine's
        self._fields = _sniffed_fields(self._con, self.config, files[0])
        self._check_column(self.config.key, "key")
        self._check_column(self.config.timestamp, "timestamp")
        timestamp_type = dict(self._fields).get(self.config.timestamp or "")
        if timestamp_type is not None and timestamp_type.name not in ("BIGINT", "INTEGER", "TIMESTAMP"):
            raise CatalogError(f"connector {name}: timestamp column '{self.config.timestamp}' is a "
                               f"{timestamp_type}: it must hold epoch milliseconds (BIGINT) or a TIMESTAMP")

    def _check_column(self, column: str | None, role: str) -> None:
        names = [n for n, _ in self._fields]
        if column is not None and column not in names:
            raise CatalogError(f"connector {self.name}: {role} column '{column}' is not in "
                               f"{self.config.path} (columns: {', '.join(names)}).{did_you_mean(column, names)}"
                               .rstrip("."))

    # -- the SourceConnector contract -----------------------------------------------------------
    @property
    def finished(self) -> bool:
        if self.read_files is None:
            return False
        return all(self.positions.get(f, FilePosition()).offset >= _size(f) for f in self.read_files)

    @property
    def fields(self) -> tuple[tuple[str, SqlType], ...]:
        return self._fields

    def progress(self) -> str:
        return json.dumps({"produced": self.produced, "rejected": self.rejected,
                           "files": {f: [p.offset, p.records] for f, p in self.positions.items()}})

    def resume(self, progress: str) -> None:
        saved = json.loads(progress)
        self.produced, self.rejected = saved["produced"], saved["rejected"]
        self.positions = {f: FilePosition(offset, records) for f, (offset, records) in saved["files"].items()}

    def schema(self, kind: str) -> LogicalSchema | None:
        """The file's columns, upper-cased; the ``key`` column as the KEY (a TABLE needs one)."""
        key = self.config.key
        if kind == "TABLE" and key is None:
            return None
        columns = [Column(key.upper(), STRING, "KEY")] if key is not None else []
        columns += [Column(n.upper(), upper_case_fields(t)) for n, t in self._fields if n != key]
        return LogicalSchema(tuple(columns))

    def describe(self) -> list[tuple[str, Any]]:
        config = self.config
        return [("path", config.path), ("format", config.format), ("mode", config.mode),
                ("kafka.topic", config.topic), ("key", config.key or "(none)"),
                ("files read", len(self.positions)), ("records produced", self.produced),
                ("lines rejected", self.rejected)]

    def step(self, now_ms: int) -> Generated | None:
        """The next complete lines of the first file with any, decoded; None when none is new."""
        for path in self.read_files if self.read_files is not None else self.config.files():
            position = self.positions.setdefault(path, FilePosition())
            chunk, first_record = self._next_chunk(path, position)
            if chunk is None:
                continue
            generated = self._decode(path, chunk, first_record, now_ms)
            self.produced += generated.size
            self.rejected += len(generated.rejected)
            if generated.size or len(generated.rejected):  # else blank lines: read on
                return generated
        return None

    # -- reading ----------------------------------------------------------------------------------
    def _next_chunk(self, path: str, position: FilePosition) -> tuple[bytes | None, int]:
        """The complete lines after ``position`` (advanced past them) and the first one's record
        number; (None, 0) when there are none yet."""
        size = _size(path)
        if size < position.offset:  # truncated or replaced: read again from the start
            position.offset, position.records = 0, 0
        if size == position.offset:
            return None, 0
        with open(path, "rb") as file:
            if position.offset == 0 and self.config.format == "csv":
                header = file.readline()
                if not header.endswith(b"\n") and self.config.mode == "tail":
                    return None, 0  # the header is still being written
                position.offset = len(header)
            file.seek(position.offset)
            data = file.read(MAX_BATCH_BYTES)
            end = data.rfind(b"\n") + 1
            if end == 0 and len(data) == MAX_BATCH_BYTES:  # a line longer than a batch: take it whole
                data += file.readline()
                end = len(data) if data.endswith(b"\n") else 0
        if end == 0 and self.config.mode == "read":
            end = len(data)  # a file read once: its last line needs no newline
        if end == 0:
            return None, 0
        chunk = data[:end]
        first = position.records + 1
        position.offset += end
        position.records += chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
        return chunk, first

    def _decode(self, path: str, chunk: bytes, first_record: int, now_ms: int) -> Generated:
        if self.config.format == "jsonl":
            rows, rejected = _decode_json_lines(self._con, self._fields, chunk, first_record)
        else:
            rows, rejected = _decode_csv(self._con, self._fields, self.config.delimiter, path, chunk, first_record)
        good = rows.filter(pc.is_null(rows["__error"]))
        bad = rows.filter(pc.is_valid(rows["__error"]))
        messages = pc.binary_join_element_wise(f"{path} record ", pc.cast(bad["__record"], pa.string()), ": ",
                                               bad["__error"], "")  # "<path> record <n>: <error>"
        columns = {n: good[n].combine_chunks() for n, _ in self._fields}
        return Generated(self._times(good, now_ms), self._keys(good), columns,
                         rejected=pa.concat_arrays([pa.array(rejected, pa.string()), *messages.chunks]))

    def _times(self, good: pa.Table, now_ms: int) -> np.ndarray:
        now = np.full(good.num_rows, now_ms, dtype=np.int64)
        if self.config.timestamp is None:
            return now
        column = good[self.config.timestamp]
        millis = (pc.cast(pc.cast(column, pa.timestamp("ms"), safe=False), pa.int64())
                  if pa.types.is_timestamp(column.type)
                  else pc.cast(column, pa.int64(), safe=False))
        return np.where(pc.is_valid(millis).to_numpy(zero_copy_only=False),
                        millis.fill_null(0).to_numpy(), now).astype(np.int64)

    def _keys(self, good: pa.Table) -> pa.Array:
        if self.config.key is None:
            return pa.nulls(good.num_rows, pa.string())
        return pc.cast(good[self.config.key], pa.string()).combine_chunks()


# -- decoding -------------------------------------------------------------------------------------
def _sniffed_fields(con: duckdb.DuckDBPyConnection, config: FileSourceConfig, path: str) -> tuple[
        tuple[str, SqlType], ...]:
    """The columns of ``path``: for CSV, DuckDB's ``read_csv`` sniffing; for JSON lines, the
    structure DuckDB finds in the JSON objects of its first batch of lines (a field's type is the
    one its values share; mixed ones are STRING)."""
    if config.format == "csv":
        quoted, delimiter = path.replace("'", "''"), config.delimiter.replace("'", "''")
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM read_csv('{quoted}', header=true, "
                                    f"delim='{delimiter}', ignore_errors=true)").fetchall()
        except duckdb.Error as error:
            raise CatalogError(f"file {path} cannot be read as CSV: {error}") from error
        return tuple((name, _sql_type(duckdb_type)) for name, duckdb_type, *_ in described)
    with open(path, "rb") as file:
        sample = file.read(MAX_BATCH_BYTES)
    con.register("__lines", _numbered_lines(sample, 1))
    try:
        [(structure,)] = con.execute(
            "SELECT json_group_structure(__text::JSON) FROM __lines WHERE "
            "CASE WHEN json_valid(__text) THEN json_type(__text::JSON) = 'OBJECT' ELSE FALSE END").fetchall()
    finally:
        con.unregister("__lines")
    if structure is None or not json.loads(structure):
        raise CatalogError(f"file {path} holds no JSON object line with fields to take the columns from")
    return tuple((name, _structure_type(value)) for name, value in json.loads(structure).items())


#: The types of DuckDB's JSON structure that are not named as nbstream names them.
_STRUCTURE_TYPES = {"VARCHAR": "STRING", "UBIGINT": "BIGINT", "HUGEINT": "BIGINT", "NULL": "STRING", "JSON": "STRING"}


def _structure_type(structure: Any) -> SqlType:
    """The type of a value of DuckDB's ``json_structure`` shape (objects are STRUCTs)."""
    if isinstance(structure, dict):
        return SqlType.struct([(name, _structure_type(value)) for name, value in structure.items()])
    if isinstance(structure, list):
        return SqlType.array(_structure_type(structure[0]) if structure else STRING)
    return _sql_type(_STRUCTURE_TYPES.get(structure, structure))


def _sql_type(duckdb_type: str) -> SqlType:
    try:
        return parse_type(duckdb_type, keep_case=True)
    except SqlTypeError:
        return STRING


def _numbered_lines(chunk: bytes, first_record: int) -> pa.Table:
    """The non-empty lines of ``chunk`` (``__text``) with their record numbers (``__record``)."""
    lines = pc.utf8_rtrim(pc.split_pattern(pa.array([chunk.decode("utf-8", errors="replace")]), "\n")
                          .flatten(), characters="\r")
    return pa.table({"__record": pa.array(np.arange(first_record, first_record + len(lines)), pa.int64()),
                     "__text": lines}).filter(pc.greater(pc.utf8_length(lines), 0))


def _decode_json_lines(con: duckdb.DuckDBPyConnection, fields: tuple[tuple[str, SqlType], ...], chunk: bytes,
                       first_record: int) -> tuple[pa.Table, list[str]]:
    """The lines of ``chunk`` as rows of ``fields`` with ``__record`` and ``__error`` (NULL: good)."""
    numbered = _numbered_lines(chunk, first_record)
    struct = "STRUCT(" + ", ".join(f"{quote(n)} {t.duckdb()}" for n, t in fields) + ")"
    paths = "[" + ", ".join(_json_path(n) for n, _ in fields) + "]"
    # A field present (not null) in the line but NULL in the row did not cast to its column's type.
    checks = " ".join(f"WHEN __row.{quote(n)} IS NULL AND coalesce(__types[{i}], 'NULL') <> 'NULL' "
                      f"THEN 'field {n.replace(chr(39), chr(39) * 2)} is not a {t}'"
                      for i, (n, t) in enumerate(fields, start=1))
    con.register("__lines", numbered)
    try:
        return con.sql(f"""
            WITH parsed AS (SELECT __record, __text, TRY_CAST(__text AS JSON) AS __json FROM __lines),
                 objects AS (SELECT *, json_type(__json) = 'OBJECT' AS __object FROM parsed),
                 rows AS (SELECT *, CASE WHEN __object THEN TRY_CAST(__json AS {struct}) END AS __row,
                                 CASE WHEN __object THEN json_type(__json, {paths}) END AS __types
                          FROM objects)
            SELECT __record, CASE WHEN __json IS NULL THEN 'not valid JSON: ' || left(__text, 200)
                                  WHEN NOT __object THEN 'not a JSON object: ' || left(__text, 200)
                                  {checks} END AS __error, unnest(__row)
            FROM rows ORDER BY __record""").to_arrow_table(), []
    finally:
        con.unregister("__lines")


def _json_path(field: str) -> str:
    return "'$.\"" + field.replace("'", "''").replace('"', '\\"') + "\"'"


def _decode_csv(con: duckdb.DuckDBPyConnection, fields: tuple[tuple[str, SqlType], ...], delimiter: str,
                path: str, chunk: bytes, first_record: int) -> tuple[pa.Table, list[str]]:
    """The CSV rows of ``chunk`` as typed rows (see :func:`_decode_json_lines`); rows with the wrong
    number of fields come back as messages."""
    rejected: list[str] = []

    def reject(row: Any) -> str:  # called for malformed rows only
        rejected.append(f"{path}: a row of {row.actual_columns} fields instead of {row.expected_columns} "
                        f"(after record {first_record - 1}): {row.text[:200]}")
        return "skip"

    names = [n for n, _ in fields]
    try:
        table = pa_csv.read_csv(
            io.BytesIO(chunk),
            read_options=pa_csv.ReadOptions(column_names=names),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=reject),
            convert_options=pa_csv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                  strings_can_be_null=True))
    except pa.ArrowInvalid as error:
        rejected.append(f"{path} records {first_record}-: {error}")
        table = pa.table({n: pa.array([], pa.string()) for n in names})
    # Record numbers assume no quoted newlines and count a skipped malformed row as none.
    numbered = table.append_column("__record", pa.array(np.arange(first_record, first_record + table.num_rows),
                                                        pa.int64()))
    casts = ", ".join(f"TRY_CAST({quote(n)} AS {t.duckdb()}) AS {quote(n)}" for n, t in fields)
    misfits = " ".join(f"WHEN {quote(n)} IS NOT NULL AND TRY_CAST({quote(n)} AS {t.duckdb()}) IS NULL "
                       f"THEN 'field {n.replace(chr(39), chr(39) * 2)} is not a {t}: ' || left({quote(n)}, 100)"
                       for n, t in fields)
    con.register("__csv", numbered)
    try:
        message = f"CASE {misfits} END" if fields else "NULL::VARCHAR"
        return con.sql(f"SELECT __record, {message} AS __error, {casts} FROM __csv ORDER BY __record"
                       ).to_arrow_table(), rejected
    finally:
        con.unregister("__csv")


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0
