"""Reading query responses as ksqlDB 0.29 writes them — and as newer releases may — into headers,
rows and ends, and rows into Arrow."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from nbstream.client.rows import (
    DELIMITED,
    JSON,
    KSQL_V1_JSON,
    End,
    Header,
    Reader,
    ResponseError,
    Row,
    header_of_schema,
    rows_table,
)


def events(content_type: str, body: str) -> list[object]:
    return list(Reader(content_type).events(body.splitlines()))


def test_a_streamed_row_response_is_a_header_rows_tombstones_and_a_final_message() -> None:
    body = ('[{"header":{"queryId":"transient_X_1","schema":"`ID` BIGINT KEY, `NAME` STRING"}},\n'
            '{"row":{"columns":[1,"a"]}},\n'
            '{"row":{"columns":[1,null],"tombstone":true}},\n'
            '{"finalMessage":"Limit Reached"}]')
    reader = Reader(KSQL_V1_JSON)
    assert list(reader.events(body.splitlines())) == [
        Header("transient_X_1", ("ID", "NAME"), ("BIGINT", "STRING"), ("ID",)),
        Row([1, "a"]), Row([1, None], tombstone=True), End("Limit Reached")]
    assert reader.closed


def test_a_pull_response_ends_with_its_last_row() -> None:
    reader = Reader(KSQL_V1_JSON)
    body = '[{"header":{"queryId":"q","schema":"`A` INTEGER"}},\n{"row":{"columns":[7]}}]'
    assert list(reader.events(body.splitlines())) == [Header("q", ("A",), ("INTEGER",)), Row([7])]
    assert reader.closed


def test_tokens_and_fields_of_newer_releases_are_skipped_and_the_last_token_kept() -> None:
    body = ('[{"header":{"queryId":"q","schema":"`A` STRING","protoSchema":"syntax = ..."}},\n'
            '{"row":{"columns":["x"],"sourceNode":"n1"}},\n'
            '{"continuationToken":{"continuationToken":"t1"}},\n'
            '{"consistencyToken":{"consistencyToken":"c1"}},\n'
            '{"sourceHost":"h:8088"},\n'
            '{"row":{"columns":["y"]}},\n')
    reader = Reader(KSQL_V1_JSON)
    assert list(reader.events(body.splitlines())) == [Header("q", ("A",), ("STRING",)), Row(["x"]), Row(["y"])]
    assert reader.token == {"consistencyToken": "c1"} and not reader.closed


def test_an_error_in_band_is_raised_with_the_servers_object() -> None:
    body = '[{"header":{"queryId":"q","schema":"`A` STRING"}},\n{"errorMessage":{"@type":"generic_error",' \
           '"error_code":50303,"message":"The server is shutting down"}}]'
    with pytest.raises(ResponseError) as raised:
        events(KSQL_V1_JSON, body)
    assert raised.value.body["error_code"] == 50303


def test_the_delimited_format_is_a_header_object_then_arrays() -> None:
    body = ('{"queryId":"q","columnNames":["A","B"],"columnTypes":["STRING","DOUBLE"]}\n["x",1.5]\n'
            '{"continuationToken":"abc"}\n["y",2.0]\n')
    assert events(DELIMITED, body) == [Header("q", ("A", "B"), ("STRING", "DOUBLE")), Row(["x", 1.5]),
                                       Row(["y", 2.0])]
    with pytest.raises(ResponseError):
        events(DELIMITED, '{"@type":"generic_error","error_code":50000,"message":"boom"}\n')


def test_the_json_format_is_one_array() -> None:
    reader = Reader(JSON)
    assert reader.whole_body and not reader.has_end
    assert list(reader.events_of_body('[{"queryId":"q","columnNames":["A"],"columnTypes":["INT"]},[1],[2]]')) == [
        Header("q", ("A",), ("INT",)), Row([1]), Row([2])]


@pytest.mark.parametrize(("schema", "columns", "types", "keys"), [
    ("`ID` BIGINT KEY, `NAME` STRING", ("ID", "NAME"), ("BIGINT", "STRING"), ("ID",)),
    ("`S` STRUCT<`A` INTEGER, `B` ARRAY<STRING>>, `M` MAP<STRING, DECIMAL(4, 2)>", ("S", "M"),
     ("STRUCT<`A` INTEGER, `B` ARRAY<STRING>>", "MAP<STRING, DECIMAL(4, 2)>"), ()),
    ("`odd, ``name``` STRING", ("odd, `name`",), ("STRING",), ()),
    ("", (), (), ()),
])
def test_a_schema_string_gives_names_types_and_keys(schema: str, columns: tuple[str, ...], types: tuple[str, ...],
                                                   keys: tuple[str, ...]) -> None:
    assert header_of_schema("q", schema) == Header("q", columns, types, keys)


def test_rows_become_arrow_of_their_ksqldb_types() -> None:
    header = Header("q", ("I", "D", "T", "DAY", "B", "S", "X"),
                    ("INTEGER", "DECIMAL(4, 2)", "TIMESTAMP", "DATE", "BYTES", "STRUCT<`A` INTEGER>", "STRING"))
    rows = [Row([1, 2.5, "2024-05-01T10:00:00.000", "2024-05-01", "aGk=", {"A": 1}, None])]
    table = rows_table(header, rows)
    assert table.schema.field("I").type == pa.int32() and table.schema.field("D").type == pa.float64()
    assert table.column("T").to_pylist() == [dt.datetime(2024, 5, 1, 10)]
    assert table.column("DAY").to_pylist() == [dt.date(2024, 5, 1)]
    assert table.column("B").to_pylist() == [b"hi"] and table.column("S").to_pylist() == [{"A": 1}]


def test_a_value_that_does_not_fit_its_type_is_kept_as_text() -> None:
    table = rows_table(Header("q", ("M",), ("MAP<STRING, INTEGER>",)), [Row([{"a": 1}]), Row([["not", "a map"]])])
    assert table.column("M").to_pylist() == ['{"a": 1}', '["not", "a map"]']


def test_a_batch_of_changes_has_rowtime_and_the_tombstones_first() -> None:
    table = rows_table(Header("q", ("K", "N"), ("STRING", "BIGINT")), [Row(["a", 1]), Row(["a", None], True)],
                       changes=True)
    assert table.column_names == ["ROWTIME", "__deleted", "K", "N"]
    assert table.column("__deleted").to_pylist() == [False, True]
