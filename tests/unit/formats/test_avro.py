"""Specifications of the AVRO format and the embedded schema registry."""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import fastavro
import pyarrow as pa
import pytest

import nbstream
from nbstream import Engine
from nbstream.catalog import user_functions
from nbstream.catalog.schema import Column
from nbstream.catalog.types import parse_type
from nbstream.errors import FormatError, NbstreamError
from nbstream.formats import format_for
from nbstream.formats.avro_schema import avro_schema_for, backward_incompatibility, columns_of
from nbstream.formats.registry import SchemaRegistry
from nbstream.log.base import RECORD_SCHEMA

from .rows import decode_rows


def cols(*specs: str) -> list[Column]:
    """Columns from ``"NAME TYPE"`` strings."""
    return [Column(s.split(" ", 1)[0], parse_type(s.split(" ", 1)[1])) for s in specs]


def framed(schema_id: int, schema: object, datum: object) -> bytes:
    """A record in Confluent's wire format: magic byte 0, the 4-byte id, the Avro body."""
    buf = io.BytesIO()
    buf.write(b"\x00" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), datum)
    return buf.getvalue()


WRITER = {"type": "record", "name": "order", "fields": [
    {"name": "id", "type": "long"},
    {"name": "item", "type": ["null", "string"], "default": None},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "extra", "type": "int", "default": 0},
]}


# -- the registry ------------------------------------------------------------------------------------


def test_a_schema_has_one_id_and_a_subject_versions(registry: SchemaRegistry) -> None:
    first = registry.register("orders-value", WRITER)
    assert registry.register("orders-value", WRITER) == first  # no new version
    assert registry.register("copy-value", WRITER) == first  # one id per schema
    evolved = {**WRITER, "fields": [*WRITER["fields"], {"name": "n", "type": "int", "default": 1}]}
    second = registry.register("orders-value", evolved)
    assert second != first
    assert registry.versions("orders-value") == [1, 2]
    assert registry.latest("orders-value").id == second  # type: ignore[union-attr]
    assert registry.register("pinned-value", "string", schema_id=42) == 42
    with pytest.raises(FormatError, match="already registered for another schema"):
        registry.register("other-value", "int", schema_id=42)


def test_ids_survive_a_restart(tmp_path: Path) -> None:
    eng = Engine(path=tmp_path)
    sid = eng.register_schema("t-value", WRITER, "AVRO", schema_id=7)
    eng.execute("CREATE STREAM S WITH (KAFKA_TOPIC='t', VALUE_FORMAT='AVRO');")
    eng.con.close()
    again = Engine(path=tmp_path)
    assert again.schema_registry.latest("t-value").id == sid == 7  # type: ignore[union-attr]
    assert [c.name for c in again.catalog.get("S").schema.value] == ["ID", "ITEM", "PRICE", "AT", "EXTRA"]


def test_backward_compatibility_names_the_field() -> None:
    without_default = {**WRITER, "fields": [*WRITER["fields"], {"name": "new", "type": "int"}]}
    assert backward_incompatibility(without_default, WRITER) == "field 'new' is new and has no default"
    narrowed = {**WRITER, "fields": [{"name": "id", "type": "int"}, *WRITER["fields"][1:]]}
    assert backward_incompatibility(narrowed, WRITER) == "field 'id' changed type from long to int"
    assert backward_incompatibility(WRITER, narrowed) is None  # int -> long is a promotion


# -- schemas ↔ columns ----------------------------------------------------------------------------------


def test_sinks_register_ksqldb_schemas() -> None:
    schema = avro_schema_for(cols("A INT", "S STRUCT<X DOUBLE>", "D DECIMAL(4, 1)"), wrapped=True)
    assert schema["name"] == "KsqlDataSourceSchema"
    assert schema["namespace"] == "io.confluent.ksql.avro_schemas"
    a, s, d = schema["fields"]
    assert a == {"name": "A", "type": ["null", "int"], "default": None}
    assert s["type"][1]["name"] == "KsqlDataSourceSchema_S"
    assert d["type"][1] == {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 1}
    assert avro_schema_for(cols("V STRING"), wrapped=False) == ["null", "string"]


def test_columns_are_inferred_upper_case_from_a_record() -> None:
    inferred = columns_of(WRITER, "VALUE", single_name="ROWVAL")
    assert [str(c) for c in inferred] == ["`ID` BIGINT", "`ITEM` STRING", "`PRICE` DECIMAL(6, 2)", "`AT` TIMESTAMP",
                                          "`EXTRA` INTEGER"]
    assert [str(c) for c in columns_of("int", "VALUE", single_name="ROWVAL")] == ["`ROWVAL` INTEGER"]


# -- decoding inside DuckDB --------------------------------------------------------------------------------


def test_decodes_by_the_writer_schema_of_each_record_id(sr_con: duckdb.DuckDBPyConnection,
                                                        registry: SchemaRegistry) -> None:
    v1 = registry.register("o-value", WRITER)
    old = {"type": "record", "name": "order", "fields": [{"name": "ID", "type": "long"}]}
    v0 = registry.register("o-old", old)
    blobs = [framed(v1, WRITER, {"id": 1, "item": "tea", "price": Decimal("2.50"), "at": 1000, "extra": 3}),
             framed(v0, old, {"ID": 2}), None]
    rows = decode_rows(sr_con, format_for("AVRO", {}), blobs, cols("ID BIGINT", "ITEM STRING", "PRICE DECIMAL(6, 2)"))
    assert rows[0][:3] == (1, "tea", Decimal("2.50"))
    assert rows[1][:3] == (2, None, None)  # fields the writer lacks are NULL
    assert rows[2][:3] == (None, None, None)


def test_bad_records_carry_the_reason(sr_con: duckdb.DuckDBPyConnection, registry: SchemaRegistry) -> None:
    sid = registry.register("o-value", WRITER)
    cut = framed(sid, WRITER, {"id": 1, "price": Decimal(1), "at": 0})[:7]
    blobs = [b'{"ID": 1}', b"\x00\x00\x00\x03\xe7\x02", cut]
    rows = decode_rows(sr_con, format_for("AVRO", {}), blobs, cols("ID BIGINT"))
    messages = [r[-1] for r in rows]
    assert messages[0] == "Unknown magic byte!"
    assert messages[1] == "Schema not found: no Avro schema has id 999"
    assert messages[2].startswith(f"Error deserializing Avro message for id {sid}")


def test_a_writer_value_of_another_type_is_coerced_as_ksqldb_does(sr_con: duckdb.DuckDBPyConnection,
                                                                  registry: SchemaRegistry) -> None:
    sid = registry.register("n-value", "int")
    rows = decode_rows(sr_con, format_for("AVRO", {}), [framed(sid, "int", 10)], cols("N STRING"), wrap=False)
    assert rows[0][0] == "10"


UNION_WRITER = {"type": "record", "name": "event", "fields": [
    {"name": "id", "type": "long"},
    {"name": "v", "type": ["null", "int", "string", {"type": "record", "name": "shop.Point",
                                                       "fields": [{"name": "x", "type": "double"}]}]},
]}


def test_a_union_of_several_types_is_a_struct_of_one_field_per_branch() -> None:
    (_, v) = columns_of(UNION_WRITER, "VALUE", single_name="ROWVAL")
    assert str(v) == "`V` STRUCT<`INT` INTEGER, `STRING` STRING, `POINT` STRUCT<`X` DOUBLE>>"


def test_a_union_value_sets_the_field_of_its_branch(sr_con: duckdb.DuckDBPyConnection,
                                                    registry: SchemaRegistry) -> None:
    sid = registry.register("e-value", UNION_WRITER)
    values = [5, "five", {"x": 1.5}, None]
    blobs = [framed(sid, UNION_WRITER, {"id": i, "v": v}) for i, v in enumerate(values)]
    rows = decode_rows(sr_con, format_for("AVRO", {}), blobs,
                       cols("ID BIGINT", "V STRUCT<`INT` INTEGER, `STRING` STRING, `POINT` STRUCT<`X` DOUBLE>>"))
    assert [r[1] for r in rows] == [{"INT": 5, "STRING": None, "POINT": None},
                                    {"INT": None, "STRING": "five", "POINT": None},
                                    {"INT": None, "STRING": None, "POINT": {"X": 1.5}}, None]


# -- through the engine --------------------------------------------------------------------------------------


def test_a_stream_over_a_registered_topic_round_trips_through_a_query() -> None:
    eng = Engine()
    eng.register_schema("orders-value", WRITER, "AVRO")
    eng.execute("""CREATE STREAM ORDERS WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='AVRO');
                   CREATE STREAM DEAR AS SELECT ID, ITEM, PRICE * 2 AS P2, AT FROM ORDERS WHERE PRICE > 1;""")
    eng.produce("orders", {"id": 1, "item": "tea", "price": 2.5, "at": 1000})
    eng.produce("orders", {"id": 2, "item": "gum", "price": 0.5, "at": 2000})
    eng.run_until_idle()
    out = [r.value for r in eng.consume("DEAR")]
    assert out == [{"ID": 1, "ITEM": "tea", "P2": Decimal("5.00"), "AT": 1000}]
    schema = eng.schema_registry.latest("DEAR-value")
    assert schema is not None and [f["name"] for f in schema.parsed()["fields"]] == ["ID", "ITEM", "P2", "AT"]


def test_inference_needs_a_registered_schema() -> None:
    with pytest.raises(NbstreamError, match="Subject: nothing-value"):
        Engine().execute("CREATE STREAM N WITH (KAFKA_TOPIC='nothing', VALUE_FORMAT='AVRO');")


@pytest.fixture
def strict_int() -> Iterator[None]:
    """A UDF ``STRICT_INT(STRING)`` that raises on text that is not an integer (a record error)."""

    @nbstream.udf(params=["STRING"], returns="INTEGER")
    def strict_int(texts: pa.Array) -> list[int | None]:
        return [None if t is None else int(t) for t in texts.to_pylist()]

    yield
    user_functions.remove("STRICT_INT")


@pytest.mark.usefixtures("strict_int")
@pytest.mark.parametrize("query", [
    "CREATE STREAM OUT AS SELECT ID, STRICT_INT(ITEM) AS N FROM ORDERS;",
    "CREATE TABLE OUT AS SELECT ID, SUM(STRICT_INT(ITEM)) AS N FROM ORDERS GROUP BY ID;",
])
def test_a_batch_split_around_bad_records_still_writes_with_the_sinks_encoder(query: str) -> None:
    """The first batch of a query writing AVRO holds a record that does not decode and one its
    expression fails on, so it rolls back and is split: the sink's encoder (a function in
    DuckDB's catalog) must outlive that rollback."""
    eng = Engine()
    eng.register_schema("orders-value", WRITER, "AVRO")
    eng.execute(f"CREATE STREAM ORDERS WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='AVRO'); {query}")
    eng.produce("orders", {"id": 1, "item": "7", "price": 2.5, "at": 1000})
    bad = {"partition": 0, "offset": 0, "ts": 1500, "key": None, "value": b"\x07not avro", "headers": [],
           "win_start": None, "win_end": None, "win_type": None}  # no magic byte: fails to decode
    eng.log.append("orders", pa.Table.from_pylist([bad], schema=RECORD_SCHEMA))
    eng.produce("orders", {"id": 2, "item": "tea", "price": 0.5, "at": 2000})  # STRICT_INT raises
    eng.produce("orders", {"id": 3, "item": "9", "price": 0.5, "at": 3000})
    eng.run_until_idle()
    assert [r.value["N"] for r in eng.consume("OUT")] == [7, 9]
    stats = next(iter(eng.queries.running().values())).stats
    assert (stats.consumed, stats.processed, stats.logged) == (4, 2, 2)


def test_a_null_written_to_a_required_field_with_a_default_takes_the_default() -> None:
    """As Kafka Connect's AvroData writes for ksqlDB: the schema's default, at any depth."""
    inner = {"type": "record", "name": "inner", "fields": [{"name": "n", "type": "int", "default": 0},
                                                          {"name": "s", "type": ["null", "string"]}]}
    writer = {"type": "record", "name": "out", "fields": [
        {"name": "ID", "type": "long"}, {"name": "INNER", "type": inner},
        {"name": "EXTRA", "type": "string", "default": "foo"}]}
    eng = Engine()
    eng.register_schema("out-value", writer, "AVRO", schema_id=102)
    eng.execute("""CREATE STREAM IN_ (ID BIGINT, N INT) WITH (KAFKA_TOPIC='in', VALUE_FORMAT='JSON', PARTITIONS=1);
                   CREATE STREAM OUT WITH (KAFKA_TOPIC='out', VALUE_FORMAT='AVRO', VALUE_SCHEMA_ID=102) AS
                     SELECT ID, STRUCT(n := N, s := CAST(NULL AS STRING)) AS INNER FROM IN_;""")
    eng.produce("in", {"ID": 1, "N": None})
    eng.produce("in", {"ID": 2, "N": 5})
    eng.run_until_idle()
    assert [r.value for r in eng.consume("OUT")] == [  # read back with the writer's (registered) names
        {"ID": 1, "INNER": {"n": 0, "s": None}, "EXTRA": "foo"},
        {"ID": 2, "INNER": {"n": 5, "s": None}, "EXTRA": "foo"}]


def test_dates_beyond_pythons_range_are_written_and_read_as_epoch_days() -> None:
    eng = Engine()
    eng.execute("""CREATE STREAM D (ID BIGINT KEY, V DATE, VS ARRAY<DATE>) WITH (KAFKA_TOPIC='d', VALUE_FORMAT='AVRO',
                     PARTITIONS=1);
                   CREATE STREAM OUT AS SELECT ID, V, VS FROM D;""")
    eng.produce("d", {"V": -2147483647, "VS": [2147483647, 5]}, key=0)
    eng.produce("d", {"V": 5, "VS": None}, key=1)
    eng.run_until_idle()
    assert [r.value for r in eng.consume("OUT")] == [{"V": -2147483647, "VS": [2147483647, 5]}, {"V": 5, "VS": None}]


def test_ids_of_inline_references_stay_apart_from_the_others(registry: SchemaRegistry) -> None:
    first = registry.register("a-value", "int")
    inline = {"name": "other.proto", "format": "PROTOBUF", "schema": 'syntax = "proto3"; message O { int32 x = 1; }'}
    registry.register("b-value", 'syntax = "proto3"; import "other.proto"; message B { O o = 1; }', "PROTOBUF",
                      references=[inline])
    assert registry.latest("other.proto").id >= 1 << 30  # type: ignore[union-attr]
    assert registry.register("c-value", "long") == first + 2
