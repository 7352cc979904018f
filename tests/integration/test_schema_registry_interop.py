"""Interoperability with Confluent's own client library: confluent-kafka's AvroSerializer,
JSONSerializer and ProtobufSerializer, their SchemaRegistryClient pointed at nbstream's embedded registry (its REST API
served by hypercorn), write records to a real broker that nbstream queries read — their columns
inferred from the schemas the serializers registered — and the matching deserializers read what
nbstream wrote back. Libraries nbstream did not write, on both sides of the topic."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from kafka_reader import read_all
from served_registry import ServedRegistry  # type: ignore[import-not-found]

from nbstream import Engine

_runs = itertools.count()
CLIENT_OPTIONS = {"enable_idempotence": False}  # Tansu refuses idempotent producers (see test_kafka_log)

ORDER_AVRO = {"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"},
    {"name": "item", "type": ["null", "string"], "default": None},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 8, "scale": 2}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
]}
ORDER_JSON = {"type": "object", "properties": {
    "id": {"type": "integer"}, "item": {"oneOf": [{"type": "null"}, {"type": "string"}]}, "price": {"type": "number"}}}


@pytest.fixture
def engine(kafka_bootstrap: str) -> Iterator[Engine]:
    with Engine(kafka=kafka_bootstrap, **CLIENT_OPTIONS) as eng:
        yield eng


@pytest.fixture
def registry_url(engine: Engine) -> Iterator[str]:
    """The URL of the engine's registry, served by hypercorn on a thread of its own."""
    served = ServedRegistry(engine.schema_registry)
    served.start()
    yield served.url
    served.stop()


@pytest.fixture
def client(registry_url: str) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": registry_url}) as found:
        yield found


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False})
    for i, value in enumerate(values):
        producer.produce(topic, value=value, key=f"k{i}".encode())
    assert producer.flush(10) == 0


def test_avro_written_by_confluents_serializer_is_read_and_nbstreams_output_deserialized(
        engine: Engine, client: SchemaRegistryClient, kafka_bootstrap: str) -> None:
    run = next(_runs)
    serialize = AvroSerializer(client, json.dumps(ORDER_AVRO))
    topic, out = f"avro-orders-{run}", f"avro-dear-{run}"
    engine.create_topic(topic, 1)
    ctx = SerializationContext(topic, MessageField.VALUE)
    orders = [{"id": 1, "item": "tea", "price": Decimal("2.50"), "at": 1000},
              {"id": 2, "item": None, "price": Decimal("0.50"), "at": 2000},
              {"id": 3, "item": "cake", "price": Decimal("12.25"), "at": 3000}]
    produce(kafka_bootstrap, topic, [serialize(o, ctx) for o in orders])

    engine.execute(f"""CREATE STREAM ORDERS WITH (KAFKA_TOPIC='{topic}', VALUE_FORMAT='AVRO');
                       CREATE STREAM DEAR WITH (KAFKA_TOPIC='{out}', VALUE_FORMAT='AVRO') AS
                         SELECT ID, ITEM, PRICE * 2 AS P2 FROM ORDERS WHERE PRICE > 1;""")
    assert [c.name for c in engine.catalog.get("ORDERS").schema.value] == ["ID", "ITEM", "PRICE", "AT"]
    engine.run_until_idle()

    deserialize = AvroDeserializer(client)
    ctx = SerializationContext(out, MessageField.VALUE)
    read = [deserialize(m.value, ctx) for m in read_all(kafka_bootstrap, out, 1)]
    assert read == [{"ID": 1, "ITEM": "tea", "P2": Decimal("5.00")}, {"ID": 3, "ITEM": "cake", "P2": Decimal("24.50")}]


def test_json_sr_written_by_confluents_serializer_is_read_and_nbstreams_output_deserialized(
        engine: Engine, client: SchemaRegistryClient, kafka_bootstrap: str) -> None:
    run = next(_runs)
    serialize = JSONSerializer(json.dumps(ORDER_JSON), client)
    topic, out = f"json-orders-{run}", f"json-dear-{run}"
    engine.create_topic(topic, 1)
    ctx = SerializationContext(topic, MessageField.VALUE)
    orders = [{"id": 1, "item": "tea", "price": 2.5}, {"id": 2, "item": None, "price": 0.5}]
    produce(kafka_bootstrap, topic, [serialize(o, ctx) for o in orders])

    engine.execute(f"""CREATE STREAM ORDERS WITH (KAFKA_TOPIC='{topic}', VALUE_FORMAT='JSON_SR');
                       CREATE STREAM DEAR WITH (KAFKA_TOPIC='{out}', VALUE_FORMAT='JSON_SR') AS
                         SELECT ID, ITEM, PRICE * 2 AS P2 FROM ORDERS WHERE PRICE > 1;""")
    assert [str(c) for c in engine.catalog.get("ORDERS").schema.value] == ["`ID` BIGINT", "`ITEM` STRING",
                                                                           "`PRICE` DOUBLE"]
    engine.run_until_idle()

    deserialize = JSONDeserializer(None, schema_registry_client=client)
    ctx = SerializationContext(out, MessageField.VALUE)
    read = [deserialize(m.value, ctx) for m in read_all(kafka_bootstrap, out, 1)]
    assert read == [{"ID": 1, "ITEM": "tea", "P2": 5.0}]


def proto_class(name: str, fields: list[tuple[str, int, str | None]], *, package: str = "") -> Any:
    """A message class made by the protobuf library alone (no nbstream code): ``fields`` are
    ``(name, FieldDescriptorProto type, message type name or None)``, numbered 1, 2, …"""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(name=f"{name.lower()}.proto", package=package, syntax="proto3",
                                              dependency=["google/protobuf/timestamp.proto"])
    message = file.message_type.add(name=name)
    for number, (field, kind, type_name) in enumerate(fields, 1):
        added = message.field.add(name=field, number=number, type=kind,
                                  label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
        if type_name is not None:
            added.type_name = type_name
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}" if package else name))


def test_protobuf_written_by_confluents_serializer_is_read_and_nbstreams_output_deserialized(
        engine: Engine, client: SchemaRegistryClient, kafka_bootstrap: str) -> None:
    run = next(_runs)
    types = descriptor_pb2.FieldDescriptorProto
    order = proto_class("Order", [("id", types.TYPE_INT64, None), ("item", types.TYPE_STRING, None),
                                  ("price", types.TYPE_DOUBLE, None),
                                  ("at", types.TYPE_MESSAGE, ".google.protobuf.Timestamp")], package="shop")
    serialize = ProtobufSerializer(order, client)  # registers the schema as a base64 FileDescriptorProto
    topic, out = f"proto-orders-{run}", f"proto-dear-{run}"
    engine.create_topic(topic, 1)
    ctx = SerializationContext(topic, MessageField.VALUE)
    orders = [order(id=1, item="tea", price=2.5, at={"seconds": 1}),
              order(id=2, price=0.5), order(id=3, item="cake", price=12.25)]
    produce(kafka_bootstrap, topic, [serialize(o, ctx) for o in orders])

    engine.execute(f"""CREATE STREAM ORDERS WITH (KAFKA_TOPIC='{topic}', VALUE_FORMAT='PROTOBUF');
                       CREATE STREAM DEAR WITH (KAFKA_TOPIC='{out}', VALUE_FORMAT='PROTOBUF') AS
                         SELECT ID, ITEM, PRICE * 2 AS P2, AT FROM ORDERS WHERE PRICE > 1;""")
    assert [str(c) for c in engine.catalog.get("ORDERS").schema.value] == [
        "`ID` BIGINT", "`ITEM` STRING", "`PRICE` DOUBLE", "`AT` TIMESTAMP"]
    engine.run_until_idle()

    # the reader's class, made from the field numbers ksqlDB's generated schema gives the columns
    dear = proto_class("ConnectDefault1", [("ID", types.TYPE_INT64, None), ("ITEM", types.TYPE_STRING, None),
                                           ("P2", types.TYPE_DOUBLE, None),
                                           ("AT", types.TYPE_MESSAGE, ".google.protobuf.Timestamp")])
    deserialize = ProtobufDeserializer(dear, {"use.deprecated.format": False})
    ctx = SerializationContext(out, MessageField.VALUE)
    read = [deserialize(m.value, ctx) for m in read_all(kafka_bootstrap, out, 1)]
    assert [(m.ID, m.ITEM, m.P2, m.HasField("AT") and m.AT.seconds) for m in read] == [
        (1, "tea", 5.0, 1), (3, "cake", 24.5, False)]
