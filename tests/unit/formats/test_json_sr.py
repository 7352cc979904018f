"""Specifications of the JSON_SR format: ksqlDB's JSON behind Confluent's schema-registry header."""

from __future__ import annotations

import json
from decimal import Decimal

import duckdb
import pytest
from produced import append_raw  # type: ignore[import-not-found]

from nbstream import Engine
from nbstream.catalog.schema import Column
from nbstream.catalog.types import parse_type
from nbstream.errors import FormatError, NbstreamError
from nbstream.formats import format_for
from nbstream.formats.json_schema import columns_of, json_schema_for
from nbstream.formats.registry import SchemaRegistry

from .rows import decode_rows, encode_rows

ORDER = {"type": "object", "properties": {
    "id": {"type": "integer"},
    "item": {"oneOf": [{"type": "null"}, {"type": "string"}]},
    "price": {"type": "number", "title": "org.apache.kafka.connect.data.Decimal", "connect.type": "bytes",
              "connect.parameters": {"scale": "2", "connect.decimal.precision": "6"}},
}}


def cols(*specs: str) -> list[Column]:
    """Columns from ``"NAME TYPE"`` strings."""
    return [Column(s.split(" ", 1)[0], parse_type(s.split(" ", 1)[1])) for s in specs]


def framed(schema_id: int, value: object) -> bytes:
    """A record in Confluent's wire format: magic byte 0, the 4-byte id, the JSON text."""
    return b"\x00" + schema_id.to_bytes(4, "big") + json.dumps(value).encode()


# -- decoding and encoding inside DuckDB ------------------------------------------------------------


def test_decodes_the_json_after_the_header_with_ksqldbs_coercions(sr_con: duckdb.DuckDBPyConnection,
                                                                  registry: SchemaRegistry) -> None:
    sid = registry.register("o-value", ORDER, "JSON")
    blobs = [framed(sid, {"id": 1, "item": "tea", "price": 2.5}), framed(sid, {"ID": "2", "item": 7}), None]
    columns = cols("ID BIGINT", "ITEM STRING", "PRICE DECIMAL(6, 2)")
    rows = decode_rows(sr_con, format_for("JSON_SR", {}), blobs, columns)
    assert rows[0] == (1, "tea", Decimal("2.50"), False, None)
    assert rows[1] == (2, "7", None, False, None)  # any spelling of an upper-case name; numbers to text
    assert rows[2][:4] == (None, None, None, False)  # a null record is no error


def test_bad_headers_and_bodies_carry_the_reason(sr_con: duckdb.DuckDBPyConnection, registry: SchemaRegistry) -> None:
    sid = registry.register("o-value", ORDER, "JSON")
    avro_id = registry.register("a-value", "string", "AVRO")
    blobs = [b'{"ID": 1}', b"\x00\x00", framed(999, {"ID": 1}), framed(avro_id, {"ID": 1}),
             b"\x00" + sid.to_bytes(4, "big") + b"{not json"]
    rows = decode_rows(sr_con, format_for("JSON_SR", {}), blobs, cols("ID BIGINT"))
    assert [(r[-2], r[-1]) for r in rows] == [
        (True, "Unknown magic byte!"),
        (True, "Unknown magic byte!"),
        (True, "Schema not found: no JSON schema has id 999"),
        (True, f"Schema not found: no JSON schema has id {avro_id}"),
        (True, "Invalid JSON or UTF-8 text"),
    ]


def test_a_schema_registered_after_the_query_was_planned_is_known(sr_con: duckdb.DuckDBPyConnection,
                                                                  registry: SchemaRegistry) -> None:
    fmt = format_for("JSON_SR", {})
    assert decode_rows(sr_con, fmt, [framed(5, {"ID": 1})], cols("ID BIGINT"))[0][-1] is not None
    registry.register("late-value", ORDER, "JSON", schema_id=5)
    assert decode_rows(sr_con, fmt, [framed(5, {"ID": 1})], cols("ID BIGINT"))[0] == (1, False, None)


def test_encodes_ksqldbs_json_behind_the_header_of_the_resolved_id(con: duckdb.DuckDBPyConnection) -> None:
    fmt = format_for("JSON_SR", {"SCHEMA_ID": 258})
    [blob] = encode_rows(con, fmt, "SELECT 1 AS ID, 1.50::DECIMAL(4, 2) AS P", cols("ID INT", "P DECIMAL(4, 2)"))
    assert blob == b'\x00\x00\x00\x01\x02{"ID":1,"P":1.50}'
    assert fmt.decode_python(blob, cols("ID INT", "P DECIMAL(4, 2)"), wrap_single_value=True) == {
        "ID": 1, "P": Decimal("1.50")}
    with pytest.raises(FormatError, match="Unknown magic byte"):
        fmt.decode_python(b'{"ID": 1}', cols("ID INT"), wrap_single_value=True)


def test_maps_need_string_keys() -> None:
    with pytest.raises(FormatError, match="JSON only supports MAP types with STRING keys"):
        format_for("JSON_SR", {}).check_columns(cols("M ARRAY<MAP<INT, DOUBLE>>"), is_key=False,
                                                wrap_single_value=None)


# -- schemas ↔ columns ---------------------------------------------------------------------------------


def test_sinks_register_connects_json_schemas() -> None:
    schema = json_schema_for(cols("A INT", "T TIMESTAMP", "D DECIMAL(4, 1)", "M MAP<STRING, BIGINT>"), wrapped=True)
    a, t, d, m = schema["properties"].values()
    assert a == {"connect.index": 0, "oneOf": [{"type": "null"}, {"type": "integer", "connect.type": "int32"}]}
    assert t["oneOf"][1]["title"] == "org.apache.kafka.connect.data.Timestamp"
    assert d["oneOf"][1]["connect.parameters"] == {"scale": "1", "connect.decimal.precision": "4"}
    assert m["oneOf"][1]["additionalProperties"]["oneOf"][1] == {"type": "integer", "connect.type": "int64"}
    assert json_schema_for(cols("K STRING"), wrapped=False) == {"oneOf": [{"type": "null"}, {"type": "string"}]}


def test_columns_are_inferred_in_connect_index_order_and_upper_case() -> None:
    schema = {"type": "object", "properties": {
        "b": {"connect.index": 1, "type": "array", "items": {"type": "string", "connect.type": "bytes"}},
        "a": {"connect.index": 0, "oneOf": [{"type": "null"}, {"type": "integer", "connect.type": "int32"}]},
        "s": {"connect.index": 2, "type": "object", "properties": {"x": {"type": "number"}}},
        "m": {"connect.index": 3, "type": "object", "additionalProperties": {"type": "boolean"}},
        "d": {"connect.index": 4, "type": "integer", "title": "org.apache.kafka.connect.data.Date"},
    }}
    assert [str(c) for c in columns_of(schema, "VALUE", single_name="ROWVAL")] == [
        "`A` INTEGER", "`B` ARRAY<BYTES>", "`S` STRUCT<`X` DOUBLE>", "`M` MAP<STRING, BOOLEAN>", "`D` DATE"]
    assert [str(c) for c in columns_of(ORDER, "VALUE", single_name="ROWVAL")][2] == "`PRICE` DECIMAL(6, 2)"
    assert [str(c) for c in columns_of({"type": "integer"}, "KEY", single_name="ROWKEY")] == ["`ROWKEY` BIGINT KEY"]


# -- through the engine ----------------------------------------------------------------------------------


def test_a_stream_over_a_registered_topic_round_trips_through_a_query() -> None:
    eng = Engine()
    eng.register_schema("orders-value", ORDER, "JSON")
    eng.execute("""CREATE STREAM ORDERS WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON_SR');
                   CREATE STREAM DEAR AS SELECT ID, ITEM, PRICE * 2 AS P2 FROM ORDERS WHERE PRICE > 1;""")
    eng.produce("orders", {"id": 1, "item": "tea", "price": 2.5})
    eng.produce("orders", {"id": 2, "item": "gum", "price": 0.5})
    eng.run_until_idle()
    assert [r.value for r in eng.consume("DEAR")] == [{"ID": 1, "ITEM": "tea", "P2": Decimal("5.00")}]
    registered = eng.schema_registry.latest("DEAR-value")
    assert registered is not None and registered.schema_type == "JSON"
    assert list(registered.parsed()["properties"]) == ["ID", "ITEM", "P2"]
    [raw] = eng.log.read("DEAR", None).column("value").to_pylist()
    assert raw[:5] == b"\x00" + registered.id.to_bytes(4, "big")


def test_records_with_a_bad_header_go_to_the_processing_log() -> None:
    eng = Engine()
    eng.execute("""CREATE STREAM S (ID INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON_SR');
                   CREATE STREAM T AS SELECT * FROM S;""")
    good = eng.schema_registry.latest("s-value")
    assert good is not None
    values = [framed(good.id, {"ID": 1}), b'{"ID": 2}', framed(77, {"ID": 3})]
    append_raw(eng, "s", values)
    eng.run_until_idle()
    assert [r.value for r in eng.consume("T")] == [{"ID": 1}]
    errors = eng.query("SELECT MESSAGE->ERRORMESSAGE AS error FROM KSQL_PROCESSING_LOG")
    assert sorted(errors["ERROR"]) == ["Schema not found: no JSON schema has id 77", "Unknown magic byte!"]


def test_inference_reads_the_registered_json_schema() -> None:
    eng = Engine()
    eng.register_schema("t-key", {"type": "integer", "connect.type": "int32"}, "JSON")
    eng.register_schema("t-value", ORDER, "JSON")
    eng.execute("CREATE TABLE T WITH (KAFKA_TOPIC='t', FORMAT='JSON_SR');")
    assert [str(c) for c in eng.catalog.get("T").schema.columns] == [
        "`ROWKEY` INTEGER KEY", "`ID` BIGINT", "`ITEM` STRING", "`PRICE` DECIMAL(6, 2)"]
    with pytest.raises(NbstreamError, match="Subject: nothing-value"):
        eng.execute("CREATE STREAM N WITH (KAFKA_TOPIC='nothing', VALUE_FORMAT='JSON_SR');")

