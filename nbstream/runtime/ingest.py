"""Bulk ingest: a DataFrame, an Arrow table or JSON rows encoded into records inside DuckDB,
appended at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from nbstream.catalog.catalog import Source
from nbstream.catalog.schema import Column
from nbstream.catalog.types import STRING
from nbstream.errors import BindError, did_you_mean
from nbstream.formats.base import let_relation
from nbstream.formats.json import JsonFormat
from nbstream.log.base import SqlLog, execute_arrow
from nbstream.physical.compile import encode_rows_sql
from nbstream.physical.expressions import quote
from nbstream.plan.planner import passthrough, sink_of


def encode_frame(con: duckdb.DuckDBPyConnection, log: SqlLog, source: Source,
                 data: pd.DataFrame | pa.Table, *, key: str | None, timestamp: str | None) -> int:
    """Append every row of ``data`` to ``source``'s topic; returns the number of rows.

    See :func:`append_frame`, which this calls in a transaction of its own.
    """
    return sum(append_frame(con, log, source, data, key=key, timestamp=timestamp).values())


def append_frame(con: duckdb.DuckDBPyConnection, log: SqlLog, source: Source, data: pd.DataFrame | pa.Table, *,
                 key: str | None, timestamp: str | None, commit: bool = True) -> dict[int, int]:
    """Append every row of ``data`` to ``source``'s topic; returns the records written per partition.

    Frame columns match the source's columns case-insensitively; ``key`` names the frame column
    holding the (single) key, ``timestamp`` the one holding epoch-ms record times. With
    ``commit=False`` the caller's open transaction holds the append (see ``SqlLog.append_relation``).
    """
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    by_upper = {name.upper(): name for name in table.column_names}
    columns = []
    for col in source.schema.columns:
        if col.role in ("HEADER", "HEADERS"):
            continue
        frame_name = key if (col.role == "KEY" and key is not None) else by_upper.get(col.name.upper())
        if frame_name is None or frame_name not in table.column_names:
            if col.role == "KEY":
                raise BindError(f"no column for key {col.name} of {source.name}: pass key='<column>'"
                                f"{did_you_mean(col.name, table.column_names)}")
            sql = f"NULL::{col.type.duckdb()}"
        else:
            sql = f"CAST(__frame.{quote(frame_name)} AS {col.type.duckdb()})"
        columns.append((col, sql))
    ts = f"CAST(__frame.{quote(timestamp)} AS BIGINT)" if timestamp else "epoch_ms(now())"
    # The row's position in the frame orders the records (DuckDB may scan the frame in parallel).
    con.register("__frame", table.append_column("__position", pa.array(range(table.num_rows), pa.int64())))
    try:
        return _append_rows(con, log, source, columns, "__frame", ts=ts, position="__position", commit=commit)
    finally:
        con.unregister("__frame")


@dataclass(frozen=True)
class JsonRowsAppended:
    """What :func:`append_json_rows` did: ``count`` rows appended (the first ones), and the
    position and message of the row that stopped it (``failed``), if one did."""

    count: int
    failed: tuple[int, str] | None = None


#: The types whose values JSON rows give as strings, as ksqlDB's REST API writes and reads them
#: (``ApiSqlValueCoercer``), where the JSON format would want numbers: each string's conversion.
_FROM_STRING = {"TIMESTAMP": "TRY_CAST({} AS TIMESTAMP)", "DATE": "TRY_CAST({} AS DATE)",
                "TIME": "TRY_CAST({} AS TIME)", "BYTES": "TRY(from_base64({}))"}


def append_json_rows(con: duckdb.DuckDBPyConnection, log: SqlLog, source: Source,
                     rows: Sequence[bytes]) -> JsonRowsAppended:
    """Append ``rows`` — JSON objects holding a row's columns, key columns too — to ``source``'s
    topic, in one transaction, timestamped now. Fields match columns as the JSON format matches
    them (ksqlDB's rules: the exact name, then the upper-cased key; a value coerced to its column's
    type), except that a TIMESTAMP, DATE, TIME or BYTES column takes a string (ISO text, base64) as
    ksqlDB's REST API gives it. The rows before the first that does not decode are appended; that
    row and those after it are not."""
    writable = [c for c in source.schema.columns if c.role not in ("HEADER", "HEADERS")]
    as_read = [Column(c.name, STRING) if c.type.name in _FROM_STRING else c for c in writable]
    decoded = JsonFormat().decode_sql("__json", as_read, wrap_single_value=True)
    table = pa.table({"__json": pa.array(rows, pa.binary()), "__position": pa.array(range(len(rows)), pa.int64())})
    con.register("__json_rows", table)
    try:
        # The fast decoding first (a statement DuckDB binds several times faster): if a row did
        # not take its path, the full decoding says what that row holds or why it is in error.
        for decoding in (decoded.fast, decoded) if decoded.fast is not None else (decoded,):
            read = ", ".join(f"{sql} AS {quote(c.name)}" for c, sql in zip(writable, decoding.columns, strict=True))
            read = (f"(SELECT __position, {decoding.error or 'false'} AS __bad, {decoding.error_message or 'NULL'} "
                    f"AS __bad_message, {read} FROM {let_relation('__json_rows', decoding)})")
            rows_read = execute_arrow(con, _from_strings_sql(writable, read))
            failed = _first_bad(rows_read)
            if failed is None:
                break
        count = failed[0] if failed else len(rows)
        con.register("__json_decoded", rows_read)
        relation = f"(SELECT * FROM __json_decoded WHERE __position < {count}) AS __json_decoded"
        columns = [(c, f"__json_decoded.{quote(c.name)}") for c in writable]
        _append_rows(con, log, source, columns, relation, ts="epoch_ms(now())", position="__position")
        return JsonRowsAppended(count, failed)
    finally:
        con.unregister("__json_decoded")
        con.unregister("__json_rows")


def _first_bad(rows_read: pa.Table) -> tuple[int, str] | None:
    """The position and message of the first row of ``rows_read`` marked ``__bad`` (None: no row is)."""
    bad = rows_read.filter(pc.fill_null(rows_read.column("__bad"), False))
    if bad.num_rows == 0:
        return None
    first = pc.index(bad.column("__position"), pc.min(bad.column("__position"))).as_py()
    return int(bad.column("__position")[first].as_py()), str(bad.column("__bad_message")[first].as_py())


def _from_strings_sql(columns: Sequence[Column], read: str) -> str:
    """The rows of the parenthesized query ``read`` (``__position``, ``__bad``, ``__bad_message``,
    ``columns``) with the string values of :data:`_FROM_STRING` columns converted; a row whose
    string does not convert is bad."""
    converted = [(c, _FROM_STRING[c.type.name].format(quote(c.name)) if c.type.name in _FROM_STRING else None)
                 for c in columns]
    failures = [(f"({quote(c.name)} IS NOT NULL AND {sql} IS NULL)", f"'Can''t convert the string of column "
                 f"{c.name} to {c.type}: ' || {quote(c.name)}") for c, sql in converted if sql is not None]
    bad = " OR ".join(["__bad", *(test for test, _ in failures)])
    message = "CASE WHEN __bad THEN __bad_message " + \
        "".join(f"WHEN {test} THEN {text} " for test, text in failures) + "END"
    values = ", ".join(f"{sql or quote(c.name)} AS {quote(c.name)}" for c, sql in converted)
    return f"SELECT __position, {bad} AS __bad, {message} AS __bad_message, {values} FROM {read} AS __json_read"


def _append_rows(con: duckdb.DuckDBPyConnection, log: SqlLog, source: Source, columns: Sequence[tuple[Column, str]],
                 relation: str, *, ts: str, position: str, commit: bool = True) -> dict[int, int]:
    """Encode the rows of ``relation`` (a FROM item) — each of ``source``'s ``columns`` given by its
    SQL, the record time by ``ts``, the order by ``position`` — and append them to its topic."""
    projected = ", ".join(f"{sql} AS {quote(col.name)}" for col, sql in columns)
    rows = (f"(SELECT FALSE AS __err, FALSE AS __deleted, NULL AS __headers, {ts} AS __ts, 0 AS __in_partition, "
            f"{position} AS __in_offset, {projected} FROM {relation}) AS __ingest_rows")
    sink = sink_of(source, log.require(source.topic).partitions)
    outputs = [passthrough(c) for c, _ in columns]
    # One statement rather than views over views: DuckDB binds a view's SQL when it is made and
    # again where it is read.
    return log.append_relation(source.topic, f"({encode_rows_sql(sink, outputs, rows)})", commit=commit)
