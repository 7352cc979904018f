"""Reading a query's response (``/query-stream``, ``/query``) and turning its rows into Arrow.

A response is a header, rows, and how it ended. Three formats carry them (ksqlDB 0.29,
``QueryStreamHandler``), each read a line at a time so that a push query's rows arrive as they come:

- ``application/vnd.ksql.v1+json`` (what nbstream asks for, as ksqlDB's Java client does): a JSON
  array of ``StreamedRow`` objects, one per line — ``{"header":{"queryId":…,"schema":"`A` BIGINT
  KEY, …"}}``, ``{"row":{"columns":[…],"tombstone":true}}``, ``{"finalMessage":…}``,
  ``{"errorMessage":{…}}`` — each but the last followed by ``,``; the first line opens with ``[``,
  the last closes with ``]``.
- ``application/vnd.ksqlapi.delimited.v1``: a header object ``{"queryId":…,"columnNames":[…],
  "columnTypes":[…]}``, then one JSON array per row and line; an error is an object of its own.
- ``application/json``: the same as one array, without newlines (read whole).

Whatever else a line holds — ``consistencyToken``, ``continuationToken``, ``sourceHost``, fields of
newer releases — is skipped (tokens are kept as the last one seen).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from nbstream.errors import ServerError

DELIMITED = "application/vnd.ksqlapi.delimited.v1"
JSON = "application/json"
KSQL_V1_JSON = "application/vnd.ksql.v1+json"


@dataclass(frozen=True)
class Header:
    """A query's id and result columns: their names, ksqlDB type names and which are keys (known
    where the server marks them: ``KEY`` in a pull query's ``/query`` schema)."""

    query_id: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    """One result row (``tombstone``: a table row that was deleted; its non-key values are null)."""

    values: list[Any]
    tombstone: bool = False


@dataclass(frozen=True)
class End:
    """The response finished: ``message`` is its final message (``Limit Reached``, ``Query
    Completed``), or None when the format has none (delimited)."""

    message: str | None


Event = Header | Row | End


class ResponseError(Exception):
    """An error written in-band, as the server's error object (:func:`nbstream.client.rest.server_error`
    maps it)."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("message"))
        self.body = body


class Reader:
    """Reads the events of a response, line by line, in the format its content type names."""

    def __init__(self, content_type: str) -> None:
        self.media = content_type.split(";")[0].strip().lower()
        self.delimited = self.media == DELIMITED
        self.whole_body = self.media == JSON  # one array without newlines: read whole
        #: Whether the format marks its end (``]``): a response that ends without it was cut off.
        self.has_end = not (self.delimited or self.whole_body)
        self.closed = False  # the end was read
        self.token: Any = None  # the last continuation or consistency token seen

    def events(self, lines: Iterable[str]) -> Iterator[Event]:
        """The events the ``lines`` hold; an in-band error raises :class:`ResponseError`."""
        for line in lines:
            element = self._element(line)
            if element is None:
                continue
            event = self._delimited(element) if self.delimited else self._streamed_row(element)
            if event is not None:
                yield event

    def events_of_body(self, body: str) -> Iterator[Event]:
        """The events of an ``application/json`` body: delimited's elements, in one array."""
        elements = json.loads(body)
        if not isinstance(elements, list):
            raise ResponseError(elements if isinstance(elements, dict) else {"message": str(elements)})
        for element in elements:
            event = self._delimited(element)
            if event is not None:
                yield event

    def _element(self, line: str) -> Any:
        text = line.strip()
        if not self.delimited:  # one array over many lines: '[' opens the first, ',' or ']' ends each
            if text.startswith("[{") or text == "[":
                text = text[1:]
            self.closed = self.closed or text.endswith("]")
            if text.endswith((",", "]")):
                text = text[:-1].rstrip()
        return json.loads(text) if text else None

    def _streamed_row(self, element: Any) -> Event | None:
        if not isinstance(element, dict):
            return None
        if "row" in element:
            row = element["row"] or {}
            return Row(list(row.get("columns") or []), bool(row.get("tombstone")))
        if "header" in element:
            header = element["header"] or {}
            return header_of_schema(str(header.get("queryId", "")), str(header.get("schema", "")))
        if "finalMessage" in element:
            return End(element["finalMessage"])
        if "errorMessage" in element:
            raise ResponseError(element["errorMessage"] or {})
        self._keep_token(element)
        return None

    def _delimited(self, element: Any) -> Event | None:
        if isinstance(element, list):
            return Row(element)
        if not isinstance(element, dict):
            return None
        if "columnNames" in element:
            return Header(str(element.get("queryId", "")), tuple(element["columnNames"]),
                          tuple(element.get("columnTypes") or ()))
        if "error_code" in element or element.get("@type") in ("generic_error", "statement_error"):
            raise ResponseError(element)
        if "finalMessage" in element:
            return End(element["finalMessage"])
        self._keep_token(element)
        return None

    def _keep_token(self, element: dict[str, Any]) -> None:
        for name in ("continuationToken", "consistencyToken"):
            if name in element:
                self.token = element[name]


# -- schemas ------------------------------------------------------------------------------------------


def header_of_schema(query_id: str, schema: str) -> Header:
    """The header a ``/query`` schema string describes: ``\\`ID\\` BIGINT KEY, \\`NAME\\` STRING``."""
    columns = [_column(part) for part in _top_level(schema, ",") if part.strip()]
    return Header(query_id, tuple(c[0] for c in columns), tuple(c[1] for c in columns),
                  tuple(c[0] for c in columns if c[2]))


def _column(text: str) -> tuple[str, str, bool]:
    text = text.strip()
    if text.startswith("`"):
        end = 1
        while end < len(text):
            if text[end] == "`" and text[end + 1:end + 2] != "`":
                break
            end += 2 if text[end] == "`" else 1
        name, rest = text[1:end].replace("``", "`"), text[end + 1:]
    else:
        name, _, rest = text.partition(" ")
    rest = rest.strip()
    is_key = rest.upper().endswith(" KEY")
    return name, rest[:-4].strip() if is_key else rest, is_key


def _top_level(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside ``<…>``, ``(…)`` and back-quoted names."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(text):
        if char == "`":
            quoted = not quoted
        elif quoted:
            continue
        elif char in "<(":
            depth += 1
        elif char in ">)":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


# -- rows as Arrow ------------------------------------------------------------------------------------

_ARROW_TYPES: dict[str, pa.DataType] = {
    "BOOLEAN": pa.bool_(), "INT": pa.int32(), "INTEGER": pa.int32(), "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(), "STRING": pa.string(), "VARCHAR": pa.string(), "DECIMAL": pa.float64(),
    "TIMESTAMP": pa.timestamp("ms"), "DATE": pa.date32(),
}


def column_array(values: list[Any], sql_type: str) -> pa.Array:
    """The values of one result column as Arrow, after its ksqlDB type where that is a scalar
    (TIMESTAMP and DATE arrive as ISO text, BYTES as base64); nested values as Arrow infers them,
    or as their JSON text where it cannot."""
    base = sql_type.split("(")[0].split("<")[0].strip().upper()
    try:
        if base == "BYTES":
            return pa.array([None if v is None else base64.b64decode(v) for v in values], pa.binary())
        target = _ARROW_TYPES.get(base)
        if target is None:
            return pa.array(values)
        if pa.types.is_timestamp(target) or pa.types.is_date(target):
            return pa.array(values, pa.string()).cast(target)
        return pa.array(values, target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
        return pa.array([None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
                        pa.string())


def rows_table(header: Header, rows: Sequence[Row], *, changes: bool = False) -> pa.Table:
    """``rows`` as an Arrow table of the header's columns; with ``changes``, as a push query's
    result batch: ``ROWTIME`` (unknown: null) and ``__deleted`` (the tombstones) first."""
    width = len(header.columns)
    columns = [[r.values[i] if i < len(r.values) else None for r in rows] for i in range(width)]
    types = list(header.types) + [""] * (width - len(header.types))
    arrays = [column_array(values, sql_type) for values, sql_type in zip(columns, types, strict=True)]
    names = list(header.columns)
    if changes:
        arrays = [pa.nulls(len(rows), pa.int64()), pa.array([r.tombstone for r in rows], pa.bool_()), *arrays]
        names = ["ROWTIME", "__deleted", *names]
    return pa.Table.from_arrays(arrays, names=names)


def check_header(event: Event | None) -> Header:
    """The header a response starts with (a :class:`~nbstream.errors.ServerError` if it does not)."""
    if not isinstance(event, Header):
        raise ServerError(f"the server's response did not start with a header: {event!r}")
    return event
