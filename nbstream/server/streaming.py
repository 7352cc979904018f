"""The response formats of ``/query-stream`` and ``/query``, and the JSON of result values.

The client's ``Accept`` header picks one of three writers (ksqlDB's ``QueryStreamHandler``):

- ``application/vnd.ksqlapi.delimited.v1`` (:class:`DelimitedWriter`, the default of
  ``/query-stream``): a header line ``{"queryId":…,"columnNames":[…],"columnTypes":[…]}``, then one
  JSON array per row and line; an error is a line of its own.
- ``application/json`` (:class:`JsonWriter`): the same as one JSON array, ``[{header},[row],…]``,
  without newlines.
- ``application/vnd.ksql.v1+json`` (:class:`StreamedRowWriter`, the default of ``/query``): a JSON
  array of ksqlDB's ``StreamedRow`` objects, one per line — ``{"header":{"queryId":…,"schema":…}}``
  (a pull query's key columns marked ``KEY``), ``{"row":{"columns":[…]}}`` (``"tombstone":true``
  where a table row was deleted), ``{"finalMessage":"Limit Reached"}`` at a push query's LIMIT,
  ``{"errorMessage":{…}}`` — each followed by ``,\\n`` but the last.

The first two drop tombstones, as ksqlDB does. Rows are encoded a batch at a time
(:class:`RowEncoder`): only columns whose values JSON cannot hold as they are (DECIMAL, TIMESTAMP,
DATE, TIME, BYTES, and nested values holding them, MAPs) pass through Python per value.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import orjson
import pyarrow as pa

from nbstream.catalog.schema import Column
from nbstream.catalog.types import SqlType, quote_identifier
from nbstream.server.errors import NOT_ACCEPTABLE, KsqlError

DELIMITED = "application/vnd.ksqlapi.delimited.v1"
JSON = "application/json"
KSQL_V1_JSON = "application/vnd.ksql.v1+json"

LIMIT_REACHED = "Limit Reached"
QUERY_COMPLETED = "Query Completed"


# -- values ---------------------------------------------------------------------------------------------

Encode = Callable[[Any], Any]


def value_encoder(sql_type: SqlType) -> Encode | None:
    """How a value of ``sql_type`` (as DuckDB or Arrow give it to Python) becomes what ksqlDB's REST
    API writes: DECIMAL a number with its scale, TIMESTAMP ``yyyy-MM-ddTHH:mm:ss.SSS`` (UTC), DATE
    ``yyyy-MM-dd``, TIME ``HH:mm[:ss]``, BYTES base64, a MAP an object. None: as it is."""
    name = sql_type.name
    if name in _SCALARS:
        return _SCALARS[name]
    if name == "ARRAY":
        assert sql_type.element is not None
        element = value_encoder(sql_type.element)
        return None if element is None else (lambda v: [None if x is None else element(x) for x in v])
    if name == "MAP":
        assert sql_type.element is not None
        value = value_encoder(sql_type.element) or (lambda x: x)
        return lambda v: {str(k): None if x is None else value(x) for k, x in (v.items() if isinstance(v, dict) else v)}
    if name == "STRUCT":
        fields = [(f, enc) for f, t in sql_type.fields if (enc := value_encoder(t)) is not None]
        return None if not fields else (lambda v: {**v, **{f: None if v.get(f) is None else e(v[f])
                                                            for f, e in fields}})
    return None


def _decimal(value: Decimal) -> orjson.Fragment:
    return orjson.Fragment(format(value, "f").encode())


def _timestamp(value: dt.datetime | int) -> str:
    if isinstance(value, int):
        value = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"


def _time(value: dt.time) -> str:
    """Java's ``LocalTime.toString()`` of the time's whole seconds (ksqlDB's ``formatTime``)."""
    return value.strftime("%H:%M" if value.second == 0 else "%H:%M:%S")


_SCALARS: dict[str, Encode] = {
    "DECIMAL": _decimal,
    "TIMESTAMP": _timestamp,
    "DATE": lambda v: v.isoformat(),
    "TIME": _time,
    "BYTES": lambda v: base64.b64encode(bytes(v)).decode("ascii"),
}


class RowEncoder:
    """Rows of columns of the given types as lists of JSON-ready values."""

    def __init__(self, types: Sequence[SqlType]) -> None:
        self._encoders = [(i, enc) for i, t in enumerate(types) if (enc := value_encoder(t)) is not None]
        self._width = len(types)

    def from_arrow(self, table: pa.Table, first: int = 0) -> list[list[Any]]:
        """The rows of ``table``'s columns from index ``first`` on."""
        columns = [table.column(i).to_pylist() for i in range(first, first + self._width)]
        for i, encode in self._encoders:
            columns[i] = [None if v is None else encode(v) for v in columns[i]]
        return [list(row) for row in zip(*columns, strict=True)] if columns else [[] for _ in range(table.num_rows)]

    def from_tuples(self, rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
        encoded = []
        for row in rows:
            values = list(row)
            for i, encode in self._encoders:
                if values[i] is not None:
                    values[i] = encode(values[i])
            encoded.append(values)
        return encoded


# -- the header -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryHeader:
    """What starts a query's response: its id and columns. A pull query's header marks its key
    columns ``KEY`` in the ``/query`` schema; a push query's does not (as in ksqlDB)."""

    query_id: str
    columns: tuple[Column, ...]
    is_pull: bool

    @property
    def metadata(self) -> dict[str, Any]:
        """``/query-stream``'s header object."""
        return {"queryId": self.query_id, "columnNames": [c.name for c in self.columns],
                "columnTypes": [str(c.type) for c in self.columns]}

    @property
    def schema(self) -> str:
        """``/query``'s schema string: ``\\`ID\\` BIGINT KEY, \\`NAME\\` STRING``."""
        return ", ".join(f"{quote_identifier(c.name)} {c.type}{' KEY' if self.is_pull and c.role == 'KEY' else ''}"
                         for c in self.columns)


# -- the writers --------------------------------------------------------------------------------------------


class Writer(Protocol):
    """One response format: the bytes of each part of a query's response, in order —
    :meth:`header`, any number of :meth:`rows`, then :meth:`end` or :meth:`error`."""

    content_type: str

    def header(self, header: QueryHeader) -> bytes: ...

    def rows(self, rows: list[list[Any]], tombstones: Sequence[bool] | None = None) -> bytes: ...

    def end(self, final_message: str | None) -> bytes:
        """The end of a query that finished: ``final_message`` says why (a push query's LIMIT or
        completion; None: a pull query's last row)."""
        ...

    def error(self, error: dict[str, Any]) -> bytes:
        """The end of a query that failed, the error in-band."""
        ...


def _kept(rows: list[list[Any]], tombstones: Sequence[bool] | None) -> list[list[Any]]:
    if tombstones is None or not any(tombstones):
        return rows
    return [row for row, dead in zip(rows, tombstones, strict=True) if not dead]


class DelimitedWriter:
    content_type = DELIMITED

    def header(self, header: QueryHeader) -> bytes:
        return orjson.dumps(header.metadata) + b"\n"

    def rows(self, rows: list[list[Any]], tombstones: Sequence[bool] | None = None) -> bytes:
        return b"".join(orjson.dumps(row) + b"\n" for row in _kept(rows, tombstones))

    def end(self, final_message: str | None) -> bytes:
        return b""

    def error(self, error: dict[str, Any]) -> bytes:
        return orjson.dumps(error) + b"\n"


class JsonWriter:
    content_type = JSON

    def header(self, header: QueryHeader) -> bytes:
        return b"[" + orjson.dumps(header.metadata)

    def rows(self, rows: list[list[Any]], tombstones: Sequence[bool] | None = None) -> bytes:
        return b"".join(b"," + orjson.dumps(row) for row in _kept(rows, tombstones))

    def end(self, final_message: str | None) -> bytes:
        return b"]"

    def error(self, error: dict[str, Any]) -> bytes:
        return b"," + orjson.dumps(error) + b"]"


class StreamedRowWriter:
    """ksqlDB's ``JsonStreamedRowResponseWriter``: every element but the last is followed by
    ``,\\n`` as it is written, so a client reading lines sees each one at once. A pull query's last
    row is the last element (its response is written whole)."""

    content_type = KSQL_V1_JSON

    def __init__(self) -> None:
        self._pull = False

    def header(self, header: QueryHeader) -> bytes:
        self._pull = header.is_pull
        element = b'[{"header":' + orjson.dumps({"queryId": header.query_id, "schema": header.schema}) + b"}"
        return element if self._pull else element + b",\n"

    def rows(self, rows: list[list[Any]], tombstones: Sequence[bool] | None = None) -> bytes:
        dead = tombstones or [False] * len(rows)
        elements = [b'{"row":{"columns":' + orjson.dumps(row) + (b',"tombstone":true}}' if gone else b"}}")
                    for row, gone in zip(rows, dead, strict=True)]
        if not elements:
            return b""
        if self._pull:  # the element before each one ends with the separator
            return b"".join(b",\n" + element for element in elements)
        return b"".join(element + b",\n" for element in elements)

    def end(self, final_message: str | None) -> bytes:
        if final_message is None:
            return b"]"
        return self._last({"finalMessage": final_message})

    def error(self, error: dict[str, Any]) -> bytes:
        return self._last({"errorMessage": error})

    def _last(self, element: dict[str, Any]) -> bytes:
        return (b",\n" if self._pull else b"") + orjson.dumps(element) + b"]"


#: The writers a query endpoint offers, in the order a client that accepts anything gets them.
QUERY_STREAM_FORMATS = (DELIMITED, JSON, KSQL_V1_JSON)
QUERY_FORMATS = (KSQL_V1_JSON, JSON, DELIMITED)

_WRITERS: dict[str, Callable[[], Writer]] = {
    DELIMITED: DelimitedWriter, JSON: JsonWriter, KSQL_V1_JSON: StreamedRowWriter,
}


def writer_for(accept: str | None, offered: Sequence[str]) -> Writer:
    """The writer of the first format of ``offered`` that the ``Accept`` header takes, in the
    client's order of preference (``q`` values); the first offered without one, or for ``*/*``.
    A :class:`KsqlError` 40600 when the client accepts none of them."""
    if not accept or not accept.strip():
        return _WRITERS[offered[0]]()
    for media in _accepted(accept):
        if media in ("*/*", "application/*"):
            return _WRITERS[offered[0]]()
        if media in offered:
            return _WRITERS[media]()
    raise KsqlError(NOT_ACCEPTABLE, f"None of the accepted types ({accept}) is offered: {', '.join(offered)}")


def _accepted(accept: str) -> list[str]:
    """The media types of an ``Accept`` header, most preferred first (q=0 dropped)."""
    ranked = []
    for position, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media and quality > 0:
            ranked.append((-quality, position, media.lower()))
    return [media for _, _, media in sorted(ranked)]
