"""Reading a topic back (:meth:`Engine.consume`): all its records decoded in one DuckDB statement.

Both forms decode with the SQL queries use (:func:`~nbstream.physical.compile.decode_select` over
the log's relation of the records), never record by record in Python:

* :func:`consume_frame`: a DataFrame of the stream's typed columns (see its docstring);
* :func:`consume_records`: :class:`~nbstream.log.base.Record`\\ s whose ``key`` and ``value`` are
  what ``Format.decode_python`` returns for the bytes — ksqlDB's *logical content* (a JSON object
  as a dict keyed as written, a TIMESTAMP as epoch ms, a DELIMITED value as its line). Where the
  decoded columns encode back to exactly the record's bytes (everything nbstream writes), that
  content is a function of the columns and DuckDB computes it. Any other record (a JSON key spelt
  otherwise, an extra field, a value coerced, bytes that do not decode) goes through
  ``decode_python`` as before, so the result never depends on which path a record took.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, overload

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from nbstream.catalog.catalog import Source
from nbstream.catalog.types import SqlType
from nbstream.errors import FormatError
from nbstream.formats import SUPPORTED_REGISTRY_FORMATS, format_for
from nbstream.formats.base import sql_str
from nbstream.formats.registry import Registry
from nbstream.log.base import Record, SqlLog
from nbstream.physical.compile import decode_select
from nbstream.physical.expressions import quote
from nbstream.plan.planner import scan_of

#: Record columns kept undecoded beside the decoded ones (``__raw_<name>``).
_RAW = ("key", "value", "win_start", "win_end", "win_type")

#: Types whose DuckDB value is the one ``decode_python`` gives, also nested (a DOUBLE only at the
#: top, where a non-finite one, which JSON writes as the string "NaN", can be sent the slow way).
_PLAIN = ("BOOLEAN", "INTEGER", "BIGINT", "DECIMAL", "STRING", "BYTES")

#: SQL turning a DuckDB value into ``decode_python``'s: epoch ms, days, ms of the day.
_AS_PYTHON = {"TIMESTAMP": "epoch_ms({})", "DATE": "({} - DATE '1970-01-01')", "TIME": "(epoch_us({}) // 1000)"}


def topic_relation(log: SqlLog, topic: str, from_offsets: Mapping[int, int] | None) -> str:
    """SQL over the records of ``topic`` from ``from_offsets`` (missing partitions: from 0) on."""
    start = from_offsets or {}
    ends = log.require(topic).end_offsets
    return log.relation(topic, {p: (start.get(p, 0), end) for p, end in ends.items()})


# -- the DataFrame ---------------------------------------------------------------------------------


def consume_frame(con: duckdb.DuckDBPyConnection, relation: str, topic: str, source: Source) -> pd.DataFrame:
    """The records of ``relation`` (in partition, offset order) as one row each: the key columns,
    ``WINDOWSTART``/``WINDOWEND`` when the source is windowed, the value and header columns (as
    ``SELECT *`` orders them), ``ROWTIME`` (the record's timestamp, epoch ms), ``ROWPARTITION``,
    ``ROWOFFSET``, ``__deleted`` (a tombstone: its value columns are NULL) and ``__headers`` (the
    record's headers, a list of ``{key, value}``). Columns are Arrow-backed (``pd.ArrowDtype``), of
    the stream's types exactly (no int to float on NULLs, DECIMAL exact, nested types kept), and
    shared with the query result rather than copied.

    A record that does not decode as ``source`` raises a :class:`FormatError` naming it, where a
    query would skip it and log it: a DataFrame of the topic would silently lack it."""
    scan = scan_of(source)
    window = ['"WINDOWSTART"', '"WINDOWEND"'] if scan.windowed else []
    columns = [*(quote(c.name) for c in source.schema.key), *window,
               *(quote(c.name) for c in source.schema.columns if c.role != "KEY"),
               '__ts AS "ROWTIME"', '"ROWPARTITION"', '"ROWOFFSET"', "__tomb AS __deleted",
               "coalesce(__headers, []) AS __headers"]
    table = con.sql(f'SELECT {", ".join(columns)}, __err, __errmsg FROM ({decode_select(scan, relation)}) '
                    'ORDER BY "ROWPARTITION", "ROWOFFSET"').to_arrow_table()
    _check_decoded(table, topic, source)
    return table.drop_columns(["__err", "__errmsg"]).to_pandas(types_mapper=pd.ArrowDtype)


def _check_decoded(table: pa.Table, topic: str, source: Source) -> None:
    bad = table.filter(pc.field("__err"))
    if bad.num_rows:
        first = bad.slice(0, 1).to_pylist()[0]
        raise FormatError(f"{bad.num_rows} record(s) of topic '{topic}' do not decode as {source.name}; the first, "
                          f"partition {first['ROWPARTITION']} offset {first['ROWOFFSET']}: {first['__errmsg']}")


# -- Records ---------------------------------------------------------------------------------------


def consume_records(con: duckdb.DuckDBPyConnection, relation: str, topic: str, source: Source | None,
                    registry: Registry) -> Records:
    """The records of ``relation`` (in partition, offset order), decoded as :meth:`Engine.consume`
    returns them (raw bytes without a ``source``); schema-registry formats find their schemas in
    ``registry``."""
    table = con.sql(_records_sql(relation, source, registry)).to_arrow_table()
    return Records(table, topic, *_python_decoders(source, registry))


class Records(Sequence[Record]):
    """A topic's records as :meth:`Engine.consume` returns them: a sequence (compared equal to a
    list of the same records) whose :class:`Record` objects are made from the decoded Arrow rows a
    slice at a time as they are read. Reading millions of records one after the other never holds
    them all as Python objects (~0.9 KB each, against tens of bytes in Arrow). A record whose bytes do
    not decode raises as it is read."""

    SLICE = 65_536

    def __init__(self, table: pa.Table, topic: str, decode_key: Decode, decode_value: Decode) -> None:
        self._table, self._topic = table, topic
        self._decode_key, self._decode_value = decode_key, decode_value

    def __len__(self) -> int:
        return self._table.num_rows

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> list[Record]: ...

    def __getitem__(self, index: int | slice) -> Record | list[Record]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            made = self._made(start, max(0, stop - start))
            return made[::step] if step > 0 else [self[i] for i in range(start, stop, step)]
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(f"record {index} of {len(self)}")
        return self._made(position, 1)[0]

    def __iter__(self) -> Iterator[Record]:
        for start in range(0, len(self), self.SLICE):
            yield from self._made(start, self.SLICE)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to a list, so unhashable like one

    def __repr__(self) -> str:
        return f"Records({len(self)} records of topic {self._topic!r})"

    def _made(self, start: int, length: int) -> list[Record]:
        table = self._table.slice(start, length)
        with _gc_paused():
            keys = _side_values(table, "k", self._decode_key)
            values = _side_values(table, "v", self._decode_value)
            windows = _windows(table)
            headers = _headers(table.column("h"))
            return [Record(self._topic, p, o, ts, k, v, h, w, wt) for p, o, ts, k, v, h, w, wt in zip(
                table.column("p").to_pylist(), table.column("o").to_pylist(), table.column("ts").to_pylist(),
                keys, values, headers, windows, table.column("wt").to_pylist(), strict=True)]


def _records_sql(relation: str, source: Source | None, registry: Registry) -> str:
    """One row per record: ``p``, ``o``, ``ts``, headers ``h``, window ``ws``/``we``/``wt``, and per
    side (``k``, ``v``) its logical content, whether that is exact (``_ok``) and if not its bytes
    (``_raw``), which Python then decodes."""
    if source is None:
        raw = ", ".join(f"{quote(c)} AS {quote('__raw_' + c)}" for c in _RAW)
        decoded = ('(SELECT "partition" AS "ROWPARTITION", "offset" AS "ROWOFFSET", ts AS __ts, '
                   f"headers AS __headers, {raw} FROM {relation})")
        (key, key_ok), (value, value_ok) = ("__raw_key", "TRUE"), ("__raw_value", "TRUE")
    else:
        decoded = f"({decode_select(scan_of(source), relation, keep=_RAW)})"
        (key, key_ok), (value, value_ok) = (_side_sql(source, registry, is_key=True),
                                                          _side_sql(source, registry, is_key=False))
    return f"""SELECT p, o, ts, h, ws, we, wt, k, k_ok, CASE WHEN NOT k_ok THEN __raw_key END AS k_raw,
                      v, v_ok, CASE WHEN NOT v_ok THEN __raw_value END AS v_raw
FROM (SELECT "ROWPARTITION" AS p, "ROWOFFSET" AS o, __ts AS ts, __headers AS h, __raw_win_start AS ws,
             __raw_win_end AS we, __raw_win_type AS wt, __raw_key, __raw_value,
             {key} AS k, {key_ok} AS k_ok, {value} AS v, {value_ok} AS v_ok FROM {decoded})
ORDER BY p, o"""


def _side_sql(source: Source, registry: Registry, *, is_key: bool) -> tuple[str, str]:
    """SQL of ``decode_python``'s result for the key (or value) of a decoded record, and SQL true
    where that result is exact (else the record's bytes go to ``decode_python``)."""
    raw = "__raw_key" if is_key else "__raw_value"
    name, props = (source.key_format, source.key_properties) if is_key else (source.value_format,
                                                                            source.value_properties)
    columns = source.schema.key if is_key else source.schema.value
    wrap = False if is_key else bool(source.value_properties.get("WRAP_SINGLE_VALUE", True))
    fmt = format_for(name, props, is_key=is_key, registry=registry)
    if fmt.name == "NONE":
        return "NULL", "TRUE"
    if fmt.name in SUPPORTED_REGISTRY_FORMATS:  # the schema is the record's: decode_python reads it
        return "NULL", f"({raw} IS NULL)"
    if fmt.name == "DELIMITED":  # its logical content is the line
        return f"TRY(decode({raw}))", f"({raw} IS NULL OR TRY(decode({raw})) IS NOT NULL)"
    converted = [_python_sql(quote(c.name), c.type) for c in columns]
    if not columns or None in converted or len({c.name.upper() for c in columns}) < len(columns):
        return "NULL", f"({raw} IS NULL)"  # DuckDB struct names are case-insensitive
    encoded = fmt.encode_sql([(c, quote(c.name)) for c in columns], wrap_single_value=wrap)
    finite = "".join(f" AND isfinite({quote(c.name)}) IS NOT FALSE" for c in columns if c.type.name == "DOUBLE")
    exact = f"({raw} IS NULL OR coalesce(NOT __err AND {encoded} = {raw}{finite}, FALSE))"
    if fmt.name == "KAFKA" or (not wrap and len(columns) == 1):
        return f"CASE WHEN {raw} IS NOT NULL THEN {converted[0]} END", exact
    fields = ", ".join(f"{sql_str(c.name)}: {sql}" for c, sql in zip(columns, converted, strict=True))
    return f"CASE WHEN {raw} IS NOT NULL THEN {{{fields}}} END", exact


def _python_sql(expr: str, t: SqlType) -> str | None:
    """SQL of ``decode_python``'s value for the DuckDB value ``expr`` of type ``t``; None if that is
    left to Python (nested types holding a DOUBLE, TIMESTAMP, DATE or TIME, MAPs keyed otherwise
    than by STRING)."""
    if t.name in _AS_PYTHON:
        return _AS_PYTHON[t.name].format(expr)
    return expr if t.name == "DOUBLE" or _plain(t) else None


def _plain(t: SqlType) -> bool:
    if t.name in ("ARRAY", "MAP"):
        assert t.element is not None
        return (t.name == "ARRAY" or (t.key is not None and t.key.name == "STRING")) and _plain(t.element)
    if t.name == "STRUCT":
        return all(_plain(ft) for _, ft in t.fields)
    return t.name in _PLAIN


Decode = Callable[[bytes], Any]


def _python_decoders(source: Source | None, registry: Registry) -> tuple[Decode, Decode]:
    """``decode_python`` of the key and value formats of ``source``, as ``consume`` always used them."""
    if source is None:
        return bytes, bytes
    key_fmt = format_for(source.key_format, source.key_properties, is_key=True, registry=registry)
    value_fmt = format_for(source.value_format, source.value_properties, registry=registry)
    key_columns, value_columns = source.schema.key, source.schema.value
    wrap = source.value_properties.get("WRAP_SINGLE_VALUE", True)

    def key(data: bytes) -> Any:
        return key_fmt.decode_python(data, key_columns, wrap_single_value=False)

    def value(data: bytes) -> Any:
        return value_fmt.decode_python(data, value_columns, wrap_single_value=wrap)

    return key, value


def _side_values(table: pa.Table, side: str, decode: Decode) -> list[Any]:
    """The logical contents of one side: DuckDB's where exact, else ``decode`` of the bytes."""
    column = table.column(side)
    # maps as dicts only where there are maps: pyarrow then converts in Python, 10x slower
    values = column.to_pylist(maps_as_pydicts="strict") if _has_map(column.type) else column.to_pylist()
    slow = np.flatnonzero(~table.column(f"{side}_ok").to_numpy())
    for i, data in zip(slow, table.column(f"{side}_raw").take(slow).to_pylist(), strict=True):
        values[i] = decode(data)
    return values


def _has_map(t: pa.DataType) -> bool:
    return pa.types.is_map(t) or any(_has_map(t.field(i).type) for i in range(t.num_fields))


def _windows(table: pa.Table) -> list[tuple[int, int] | None]:
    starts = table.column("ws")
    if starts.null_count == len(starts):
        return [None] * len(starts)
    return [None if s is None else (s, e) for s, e in zip(starts.to_pylist(), table.column("we").to_pylist(),
                                                          strict=True)]


def _headers(column: pa.ChunkedArray) -> list[list[tuple[str, bytes | None]]]:
    if not pc.max(pc.list_value_length(column)).as_py():  # none has headers (the usual case)
        return [[] for _ in range(len(column))]
    return [[(h["key"], h["value"]) for h in headers or []] for headers in column.to_pylist()]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while the records are built: none of their objects is in a
    cycle, and a million records would otherwise trigger thousands of collections, each walking
    the young objects made so far (twice the time overall, measured)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
