"""Result values as ksqlDB's REST API writes them, and the response format an ``Accept`` header picks
(``nbstream.server.streaming``, in-process)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa
import pytest

from nbstream.catalog.types import parse_type
from nbstream.server.errors import KsqlError
from nbstream.server.streaming import (
    DELIMITED,
    JSON,
    KSQL_V1_JSON,
    QUERY_FORMATS,
    QUERY_STREAM_FORMATS,
    RowEncoder,
    writer_for,
)


@pytest.mark.parametrize(("sql_type", "value", "written"), [
    ("DECIMAL(6, 2)", Decimal("12.50"), b"12.50"),
    ("DECIMAL(4, 0)", Decimal("1E+2"), b"100"),
    ("TIMESTAMP", dt.datetime(2021, 1, 2, 3, 4, 5, 678_900), b'"2021-01-02T03:04:05.678"'),
    ("DATE", dt.date(2021, 1, 2), b'"2021-01-02"'),
    ("TIME", dt.time(10, 20), b'"10:20"'),
    ("TIME", dt.time(10, 20, 30, 500_000), b'"10:20:30"'),
    ("BYTES", b"!", b'"IQ=="'),
    ("DOUBLE", 1.5, b"1.5"),
    ("ARRAY<DECIMAL(3, 1)>", [Decimal("1.0"), None], b"[1.0,null]"),
    ("MAP<STRING, BYTES>", [("k", b"!")], b'{"k":"IQ=="}'),
    ("MAP<STRING, INT>", {"k": 1}, b'{"k":1}'),
    ("STRUCT<`A` TIMESTAMP, `B` INT>", {"A": dt.datetime(2021, 1, 1), "B": 2},
     b'{"A":"2021-01-01T00:00:00.000","B":2}'),
    ("STRING", None, b"null"),
])
def test_values_are_written_as_ksqldb_writes_them(sql_type: str, value: Any, written: bytes) -> None:
    (row,) = RowEncoder([parse_type(sql_type)]).from_tuples([(value,)])
    assert orjson.dumps(row[0]) == written


def test_arrow_batches_are_encoded_a_column_at_a_time() -> None:
    batch = pa.table({"ROWTIME": [1, 2], "__deleted": [False, True], "ID": ["a", "b"],
                      "AT": pa.array([0, 1_500], pa.timestamp("ms"))})
    rows = RowEncoder([parse_type("STRING"), parse_type("TIMESTAMP")]).from_arrow(batch, first=2)
    assert rows == [["a", "1970-01-01T00:00:00.000"], ["b", "1970-01-01T00:00:01.500"]]


@pytest.mark.parametrize(("accept", "offered", "chosen"), [
    (None, QUERY_STREAM_FORMATS, DELIMITED),
    ("*/*", QUERY_STREAM_FORMATS, DELIMITED),
    ("*/*", QUERY_FORMATS, KSQL_V1_JSON),
    (None, QUERY_FORMATS, KSQL_V1_JSON),
    ("application/json", QUERY_STREAM_FORMATS, JSON),
    ("text/html, application/json;q=0.5, application/vnd.ksql.v1+json", QUERY_STREAM_FORMATS, KSQL_V1_JSON),
    ("application/json;q=0, */*;q=0.1", QUERY_STREAM_FORMATS, DELIMITED),
])
def test_the_accept_header_picks_the_format(accept: str | None, offered: tuple[str, ...], chosen: str) -> None:
    assert writer_for(accept, offered).content_type == chosen


def test_a_format_the_endpoint_does_not_offer_is_not_acceptable() -> None:
    with pytest.raises(KsqlError) as error:
        writer_for("text/html, application/json;q=0", QUERY_STREAM_FORMATS)
    assert (error.value.status, error.value.error_code) == (406, 40600)
