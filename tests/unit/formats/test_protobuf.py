"""Specifications of the PROTOBUF and PROTOBUF_NOSR formats: Confluent-framed Protobuf over the
registry, bare Protobuf from the columns, ksqlDB's (Kafka Connect's) reading and writing rules."""

from __future__ import annotations

import datetime
from decimal import Decimal

import duckdb
import pyarrow as pa
import pytest
from google.protobuf import wrappers_pb2
from produced import append_raw  # type: ignore[import-not-found]

from nbstream import Engine
from nbstream.catalog.schema import Column
from nbstream.catalog.types import parse_type
from nbstream.errors import FormatError, NbstreamError
from nbstream.formats import codecs, format_for
from nbstream.formats.protobuf_codec import Decoder, Encoder, Layout, registered_schema
from nbstream.formats.protobuf_schema import columns_of, compile_schema, message_class, proto_schema_for
from nbstream.formats.protobuf_values import frame, read_indexes
from nbstream.formats.registry import SchemaRegistry

from .rows import decode_rows, encode_rows

ORDER = """syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
import "confluent/type/decimal.proto";
message Order {
  int64 id = 1;
  string item = 2;
  confluent.type.Decimal price = 3 [(confluent.field_meta) = { params: [{ key: "precision", value: "6" },
                                                                        { key: "scale", value: "2" }] }];
  google.protobuf.Timestamp at = 4;
  enum Kind { PLAIN = 0; GIFT = 1; }
  Kind kind = 5;
  repeated string tags = 6;
  map<string, int32> counts = 7;
  optional int32 maybe = 8;
}
message Other { string name = 1; }
"""


def cols(*specs: str) -> list[Column]:
    """Columns from ``"NAME TYPE"`` strings."""
    return [Column(s.split(" ", 1)[0], parse_type(s.split(" ", 1)[1])) for s in specs]


def order_message(**fields: object) -> bytes:
    """An ``shop.Order`` serialized by upb from a class of our compiled schema."""
    schema = compile_schema(ORDER)
    return message_class(schema.message("shop.Order"))(**fields).SerializeToString()


# -- framing and schemas ----------------------------------------------------------------------------


def test_the_header_carries_zigzag_message_indexes_with_a_single_zero_for_the_first() -> None:
    assert frame(258, [0]) == b"\x00\x00\x00\x01\x02\x00"
    assert frame(1, [1, 0]) == b"\x00\x00\x00\x00\x01\x04\x02\x00"
    assert read_indexes(frame(1, [1, 0]), 5) == ([1, 0], 8)
    assert read_indexes(b"\x00", 0) == ([0], 1)


def test_messages_are_chosen_by_full_name_and_found_by_their_indexes() -> None:
    schema = compile_schema(ORDER)
    other = schema.message("shop.Other")
    assert schema.message().full_name == "shop.Order" and schema.message("Other") is other
    assert schema.indexes(other) == [1] and schema.by_indexes([1]) is other
    with pytest.raises(FormatError, match="does not contain the message 'Nope'"):
        schema.message("Nope")
    with pytest.raises(FormatError, match='"Foo" is not defined'):
        compile_schema('syntax = "proto3"; message A { Foo x = 1; }')


def test_columns_are_inferred_as_connect_maps_protobuf_types() -> None:
    inferred = [str(c) for c in columns_of(compile_schema(ORDER), "VALUE", single_name="ROWVAL")]
    assert inferred == ["`ID` BIGINT", "`ITEM` STRING", "`PRICE` DECIMAL(6, 2)", "`AT` TIMESTAMP", "`KIND` STRING",
                        "`TAGS` ARRAY<STRING>", "`COUNTS` MAP<STRING, INTEGER>", "`MAYBE` INTEGER"]
    scalars = compile_schema('syntax = "proto3"; import "google/protobuf/wrappers.proto"; message M { float a = 1; '
                             "uint32 b = 2; sint64 c = 3; google.protobuf.BoolValue d = 4; bytes e = 5; }")
    assert [str(c) for c in columns_of(scalars, "VALUE", single_name="V", original_names=True)] == [
        "`a` DOUBLE", "`b` BIGINT", "`c` BIGINT", "`d` BOOLEAN", "`e` BYTES"]


def test_sinks_register_ksqldbs_schema_with_the_nullable_representation_asked_for() -> None:
    columns = cols("A INT", "S STRUCT<X DOUBLE>", "M MAP<STRING, BIGINT>", "D DECIMAL(4, 1)", "T DATE")
    text = proto_schema_for(columns)
    assert "message ConnectDefault1 {\n  int32 A = 1;\n  ConnectDefault2 S = 2;\n  map<string, int64> M = 3;" in text
    assert '[(confluent.field_meta) = { params: [{ key: "precision", value: "4" }' in text
    assert "google.type.Date T = 5;" in text and "message ConnectDefault2 {\n    double X = 1;" in text
    assert "optional int32 A = 1;" in proto_schema_for(columns, nullable="OPTIONAL")
    wrapped = proto_schema_for(columns, nullable="WRAPPER", full_name="io.x.Row")
    assert "package io.x;" in wrapped and "message Row {" in wrapped and "google.protobuf.Int32Value A = 1;" in wrapped
    back = columns_of(compile_schema(text), "VALUE", single_name="V")
    assert [str(c) for c in back] == [str(c) for c in columns]
    with pytest.raises(FormatError, match="only supports MAP types with STRING keys"):
        format_for("PROTOBUF", {}).check_columns(cols("M MAP<INT, INT>"), is_key=False, wrap_single_value=None)
    with pytest.raises(FormatError, match="does not support 'WRAP_SINGLE_VALUE' set to 'false'"):
        format_for("PROTOBUF", {}).check_columns(cols("A INT"), is_key=False, wrap_single_value=False)


# -- decoding and encoding inside DuckDB ------------------------------------------------------------


def test_decodes_as_connect_reads_proto3(sr_con: duckdb.DuckDBPyConnection, registry: SchemaRegistry) -> None:
    sid = registry.register("o-value", ORDER, "PROTOBUF")
    at = {"seconds": 1_700_000_000, "nanos": 123_456_789}
    full = order_message(id=7, item="tea", price={"value": (1250).to_bytes(2, "big"), "scale": 2}, at=at, kind=1,
                         tags=["a", "b"], counts={"x": 3}, maybe=0)
    columns = cols("ID BIGINT", "ITEM STRING", "PRICE DECIMAL(6, 2)", "AT TIMESTAMP", "KIND STRING",
                   "TAGS ARRAY<STRING>", "COUNTS MAP<STRING, INT>", "MAYBE INT")
    rows = decode_rows(sr_con, format_for("PROTOBUF", {}), [frame(sid, [0]) + full, frame(sid, [0]), None], columns)
    assert rows[0][:8] == (7, "tea", Decimal("12.50"), datetime.datetime(2023, 11, 14, 22, 13, 20, 123000), "GIFT",
                           ["a", "b"], {"x": 3}, 0)
    # nothing set: scalars read their defaults, messages and optional fields NULL
    assert rows[1][:8] == (0, "", None, None, "PLAIN", [], {}, None)
    assert rows[2][-2] is False


def test_bad_records_carry_the_reason(sr_con: duckdb.DuckDBPyConnection, registry: SchemaRegistry) -> None:
    sid = registry.register("o-value", ORDER, "PROTOBUF")
    json_id = registry.register("j-value", {"type": "string"}, "JSON")
    blobs = [order_message(id=1), frame(999, [0]), frame(json_id, [0]), frame(sid, [5]), frame(sid, [0]) + b"\xff\xff"]
    rows = decode_rows(sr_con, format_for("PROTOBUF", {}), blobs, cols("ID BIGINT"))
    assert [r[-1] for r in rows] == [
        "Unknown magic byte!",
        "Schema not found: no Protobuf schema has id 999",
        f"Schema not found: no Protobuf schema has id {json_id}",
        f"Schema id {sid} has no message at indexes [5]",
        "Error deserializing Protobuf message shop.Order: Error parsing message with type 'shop.Order': Wire "
        "format was corrupt",
    ]
    assert all(r[-2] for r in rows)


def test_a_schema_registered_after_the_query_was_planned_is_known(sr_con: duckdb.DuckDBPyConnection,
                                                                  registry: SchemaRegistry) -> None:
    fmt = format_for("PROTOBUF", {})
    blob = frame(5, [0]) + b"\x08\x07"
    assert decode_rows(sr_con, fmt, [blob], cols("ID BIGINT"))[0][-1] == "Schema not found: no Protobuf schema has id 5"
    registry.register("late-value", ORDER, "PROTOBUF", schema_id=5)
    assert decode_rows(sr_con, fmt, [blob], cols("ID BIGINT"))[0] == (7, False, None)


def test_encodes_with_the_resolved_id_and_the_named_message(con: duckdb.DuckDBPyConnection,
                                                           registry: SchemaRegistry) -> None:
    sid = registry.register("o-value", ORDER, "PROTOBUF")
    codecs.attach(con, registry)
    fmt = format_for("PROTOBUF", {"SCHEMA_ID": sid, "SCHEMA_FULL_NAME": "shop.Other"}, registry=registry)
    [blob] = encode_rows(con, fmt, "SELECT 'x' AS NAME", cols("NAME STRING"))
    assert blob == frame(sid, [1]) + b"\n\x01x"
    assert fmt.decode_python(blob, cols("NAME STRING"), wrap_single_value=True) == {"name": "x"}


def test_nosr_is_the_bare_message_and_unwraps_a_single_key_into_its_wrapper(sr_con: duckdb.DuckDBPyConnection) -> None:
    value = format_for("PROTOBUF_NOSR", {})
    [blob] = encode_rows(sr_con, value, "SELECT 5 AS A, NULL::VARCHAR AS B", cols("A INT", "B STRING"))
    assert blob == b"\x08\x05"  # proto3 writes neither a NULL nor a default
    assert decode_rows(sr_con, value, [blob], cols("A INT", "B STRING"))[0] == (5, "", False, None)
    key = format_for("PROTOBUF_NOSR", {}, is_key=True)
    encoded = key.encode_python("k1", cols("K STRING"))
    assert encoded == wrappers_pb2.StringValue(value="k1").SerializeToString()
    assert key.decode_python(encoded, cols("K STRING"), wrap_single_value=False) == "k1"
    with pytest.raises(FormatError, match="Unsupported root schema of type ARRAY"):
        key.check_columns(cols("K ARRAY<INT>"), is_key=True, wrap_single_value=None)


# -- through the engine ----------------------------------------------------------------------------------


def test_38_digit_decimals_round_trip_exactly() -> None:
    eng = Engine()
    eng.execute("""CREATE STREAM S (D DECIMAL(38, 2)) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='PROTOBUF');
                   CREATE STREAM T AS SELECT * FROM S;""")
    big = Decimal("-123456789012345678901234567890123456.78")
    eng.produce("s", {"D": big})
    eng.run_until_idle()
    assert [r.value for r in eng.consume("T")] == [{"D": big}]


def test_a_registered_topic_round_trips_through_a_query() -> None:
    eng = Engine()
    eng.register_schema("orders-value", ORDER, "PROTOBUF")
    eng.execute("""CREATE STREAM ORDERS WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='PROTOBUF');
                   CREATE STREAM DEAR AS SELECT ID, ITEM, PRICE * 2 AS P2, AT FROM ORDERS WHERE PRICE > 1;""")
    eng.produce("orders", {"id": 1, "item": "tea", "price": "2.50", "at": 1_000})
    eng.produce("orders", {"id": 2, "item": "gum", "price": "0.50"})
    eng.run_until_idle()
    assert [r.value for r in eng.consume("DEAR")] == [{"ID": 1, "ITEM": "tea", "P2": Decimal("5.00"), "AT": 1_000}]
    registered = eng.schema_registry.latest("DEAR-value")
    assert registered is not None and registered.schema_type == "PROTOBUF"
    assert "message ConnectDefault1" in registered.schema
    [raw] = eng.log.read("DEAR", None).column("value").to_pylist()
    assert raw[:6] == frame(registered.id, [0])


def test_bad_records_go_to_the_processing_log_and_the_query_goes_on() -> None:
    eng = Engine()
    eng.execute("""CREATE STREAM S (ID INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='PROTOBUF');
                   CREATE STREAM T AS SELECT * FROM S;""")
    good = eng.schema_registry.latest("s-value")
    assert good is not None
    values = [frame(good.id, [0]) + b"\x08\x01", b"\x08\x02", frame(77, [0]) + b"\x08\x03",
              frame(good.id, [0]) + b"\x08", frame(good.id, [0]) + b"\x08\x04"]
    append_raw(eng, "s", values)
    eng.run_until_idle()
    assert [r.value for r in eng.consume("T")] == [{"ID": 1}, {"ID": 4}]
    errors = sorted(eng.query("SELECT MESSAGE->ERRORMESSAGE AS error FROM KSQL_PROCESSING_LOG")["ERROR"])
    assert errors[1:] == ["Schema not found: no Protobuf schema has id 77", "Unknown magic byte!"]
    assert errors[0].startswith("Error deserializing Protobuf message ConnectDefault1")


def test_inference_and_schema_ids_with_references() -> None:
    eng = Engine()
    event = 'syntax = "proto3";\nmessage Event { int64 timestamp = 1; }'
    logistics = 'syntax = "proto3";\nimport "event.proto";\nmessage Logistics { Event event = 1; }'
    sid = eng.register_schema("in-value", logistics, "PROTOBUF",
                              references=[{"name": "event.proto", "format": "PROTOBUF", "schema": event}])
    eng.register_schema("in-key", 'syntax = "proto3"; message K { string k1 = 1; }', "PROTOBUF")
    eng.execute(f"CREATE STREAM BY_ID WITH (KAFKA_TOPIC='in', FORMAT='PROTOBUF', VALUE_SCHEMA_ID={sid});")
    eng.execute("CREATE STREAM LATEST WITH (KAFKA_TOPIC='in', FORMAT='PROTOBUF');")
    assert [str(c) for c in eng.catalog.get("BY_ID").schema.value] == ["`event` STRUCT<`timestamp` BIGINT>"]
    assert [str(c) for c in eng.catalog.get("LATEST").schema.columns] == [
        "`K1` STRING KEY", "`EVENT` STRUCT<`TIMESTAMP` BIGINT>"]
    found = eng.schema_registry.by_id(sid)
    assert found is not None and registered_schema(eng.schema_registry, found).message().name == "Logistics"
    with pytest.raises(NbstreamError, match="does not contain the message 'Nope'"):
        eng.execute("CREATE STREAM N WITH (KAFKA_TOPIC='in', VALUE_FORMAT='PROTOBUF', VALUE_SCHEMA_FULL_NAME='Nope');")


# -- the decoder's fast path -------------------------------------------------------------------------

ALL_KINDS = """syntax = "proto3";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
import "google/type/date.proto";
import "confluent/type/decimal.proto";
message Row {
  int32 i = 1; sint64 l = 2; uint32 u = 3; float f = 4; double d = 5; bool b = 6; string s = 7; bytes y = 8;
  optional int32 oi = 9;
  google.protobuf.Int64Value wl = 10; google.protobuf.StringValue ws = 11;
  google.protobuf.Timestamp t = 12; google.type.Date dt = 13;
  confluent.type.Decimal dec = 14 [(confluent.field_meta) = { params: [{ key: "precision", value: "5" },
                                                                      { key: "scale", value: "1" }] }];
  message Leaf { int32 x = 1; }
  message Inner { int32 x = 1; Leaf deeper = 2; }
  Inner inner = 15;
  repeated int64 many = 16; map<string, Inner> by = 17;
  enum E { A = 0; B = 1; } E e = 18;
  oneof choice { string text = 19; int32 number = 20; }
}
"""


def fast_path_only(decoder: Decoder, blobs: pa.Array) -> pa.Array:
    """``decoder``'s result for ``blobs``, checked to come from its column-at-a-time path alone (no
    record went one by one) and to equal its record-by-record reading."""
    slow_calls: list[int] = []
    slow = decoder._slow

    def counting(records: pa.Array) -> pa.Array:
        slow_calls.append(len(records))
        return slow(records)

    decoder._slow = counting  # type: ignore[method-assign]
    fast = decoder(blobs)
    assert slow_calls == []
    assert fast.to_pylist() == slow(blobs).to_pylist()
    return fast


def test_the_column_path_reads_what_the_record_path_reads(registry: SchemaRegistry) -> None:
    schema = compile_schema(ALL_KINDS)
    sid = registry.register("k-value", ALL_KINDS, "PROTOBUF")
    row = message_class(schema.message("Row"))
    inner = {"x": 4, "deeper": {"x": 5}}
    bodies = [row(), row(i=-1, l=-2, u=2**32 - 1, f=1.1, d=2.5, b=True, s="é", y=b"\x00", oi=0, wl={"value": 3},
                      ws={"value": ""}, t={"seconds": -1, "nanos": 999_000_000},
                      dt={"year": 2024, "month": 2, "day": 29}, dec={"value": b"\xff", "scale": 1}, inner=inner,
                      many=[1, 2], by={"k": inner}, e=1, number=0),
              row(text="t", inner={})]
    blobs = pa.array([frame(sid, [0]) + m.SerializeToString() for m in bodies] + [None], pa.binary())
    columns = columns_of(schema, "VALUE", single_name="V", original_names=True)
    decoder = Decoder(registry, Layout(tuple(columns), True, True), arrow=True)
    fast = fast_path_only(decoder, blobs)
    first, second, third = fast.to_pylist()[:3]
    assert (first["i"], first["oi"], first["wl"], first["t"], first["inner"], first["text"]) == (0, None, None, None,
                                                                                                None, None)
    assert (second["u"], second["f"], second["oi"], second["ws"], second["dec"], second["number"]) == (
        2**32 - 1, pytest.approx(1.1), 0, "", Decimal("-0.1"), 0)
    assert second["t"] == datetime.datetime(1969, 12, 31, 23, 59, 59, 999000)
    assert second["inner"] == {"x": 4, "deeper": {"x": 5}} and second["e"] == "B"
    assert third["inner"] == {"x": 0, "deeper": None} and third["text"] == "t"


# -- the encoder's vectorised path ----------------------------------------------------------------------


def test_the_vectorised_encoder_writes_what_upb_writes_record_by_record(registry: SchemaRegistry) -> None:
    columns = cols("I INT", "L BIGINT", "D DOUBLE", "B BOOLEAN", "S STRING", "Y BYTES", "T TIMESTAMP",
                   "A ARRAY<BIGINT>", "N STRUCT<X INT, W STRUCT<Z STRING>>", "F ARRAY<BOOLEAN>",
                   "M DECIMAL(10, 2)", "W DECIMAL(38, 4)")
    layout = Layout(tuple(columns), True, True)
    rows = pa.table({
        "I": pa.array([0, -1, 2**31 - 1, None], pa.int32()), "L": pa.array([0, -(2**63), 300, None], pa.int64()),
        "D": pa.array([0.0, -0.0, 1.5, None]), "B": pa.array([False, True, None, True]),
        "S": pa.array(["", "é", None, "x" * 200]), "Y": pa.array([b"", b"\x00", None, b"z"]),
        "T": pa.array([0, -1_500, None, 1_700_000_000_123_456], pa.timestamp("us")),
        "A": pa.array([[], [1, None, -3], None, [2**40]], pa.list_(pa.int64())),
        "N": pa.array([None, {"X": 0, "W": None}, {"X": 5, "W": {"Z": ""}}, {"X": None, "W": {"Z": "q"}}],
                      pa.struct([("X", pa.int32()), ("W", pa.struct([("Z", pa.string())]))])),
        "F": pa.array([[True, None], None, [False], []], pa.list_(pa.bool_())),
        "M": pa.array([Decimal("0"), Decimal("-0.01"), None, Decimal("12345678.9")], pa.decimal128(10, 2)),
        "W": pa.array([Decimal("1.5"), Decimal("-" + "9" * 30), Decimal("123456789012345678901234567890.1234"), None],
                      pa.decimal128(38, 4)),
    })
    structs = pa.StructArray.from_arrays([c.combine_chunks() for c in rows.columns], names=rows.column_names)
    for nullable in (None, "OPTIONAL", "WRAPPER"):
        sid = registry.register(f"v{nullable}-value", proto_schema_for(columns, nullable=nullable), "PROTOBUF")
        encoder = Encoder(registry, layout, sid, arrow=True)
        fast = encoder(structs).to_pylist()
        # (WRAPPER's arrays are of wrapper messages, which go record by record)
        assert encoder.record_by_record == (nullable == "WRAPPER")
        assert fast == encoder._one_by_one(structs).to_pylist()
        decoded = Decoder(registry, layout, arrow=True)(pa.array(fast, pa.binary())).to_pylist()
        assert decoded[1]["T"] == datetime.datetime(1969, 12, 31, 23, 59, 59, 998000)
        assert decoded[1]["A"] == [1, 0, -3] and decoded[1]["N"] == {"X": 0, "W": None}
        assert decoded[0]["F"] == [True, False]
        assert (decoded[3]["I"], decoded[3]["S"]) == ((None, "x" * 200) if nullable else (0, "x" * 200))
        assert [d["M"] for d in decoded] == [Decimal("0.00"), Decimal("-0.01"), None, Decimal("12345678.90")]
        assert decoded[1]["W"] == Decimal("-" + "9" * 30 + ".0000")


def test_decimals_are_read_in_numpy_as_upb_reads_them_record_by_record(registry: SchemaRegistry) -> None:
    columns = cols("M DECIMAL(10, 2)", "Z DECIMAL(4, 0)")
    layout = Layout(tuple(columns), True, True)
    sid = registry.register("dec-value", proto_schema_for(columns), "PROTOBUF")
    values = [Decimal("0"), Decimal("-0.01"), None, Decimal("12345678.90"), Decimal("-12345678.99"), Decimal("1.28")]
    structs = pa.StructArray.from_arrays(
        [pa.array(values, pa.decimal128(10, 2)), pa.array([1, -128, 0, None, 9999, -1], pa.decimal128(4, 0))],
        names=["M", "Z"])
    blobs = Encoder(registry, layout, sid, arrow=True)._one_by_one(structs)  # upb's bytes
    decoder = Decoder(registry, layout, arrow=True)
    fast = fast_path_only(decoder, blobs)
    assert [r["M"] for r in fast.to_pylist()] == values
    assert [r["Z"] for r in fast.to_pylist()] == [1, -128, 0, None, 9999, -1]

