"""An engine whose schema registry is outside it (``ksql.schema.registry.url``): columns come from
that registry, sinks register their schemas there, records written by Confluent's AvroSerializer
are read and what the engine writes is read by Confluent's AvroDeserializer. The registry here is
another engine's, served over Confluent's REST API by hypercorn (``nbstream serve
--schema-registry-listen``'s app) with HTTP Basic users; when it is down, a query needing a
schema it has not seen stalls, logs no record as bad, and goes on where it stopped once the
registry is back."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from produced import append_raw  # type: ignore[import-not-found]
from served_registry import ServedRegistry  # type: ignore[import-not-found]

from nbstream import Engine
from nbstream.errors import CatalogError, FormatError
from nbstream.formats.registry import SchemaRegistry
from nbstream.formats.registry_client import RegistryUnavailable
from nbstream.runtime.processing_log import TOPIC as PROCESSING_LOG
from nbstream.runtime.push import Batches
from nbstream.runtime.service import EngineService
from nbstream.server.auth import Users, hash_password

ORDER = {"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"},
    {"name": "item", "type": ["null", "string"], "default": None},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 8, "scale": 2}},
]}
ORDER_V2 = {**ORDER, "fields": [*ORDER["fields"], {"name": "note", "type": ["null", "string"], "default": None}]}
USER, PASSWORD = "reader", "s3cret"


@pytest.fixture
def served() -> Iterator[ServedRegistry]:
    registry = ServedRegistry(SchemaRegistry(duckdb.connect()), Users({USER: hash_password(PASSWORD)}))
    registry.start()
    yield registry
    registry.stop()


@pytest.fixture
def client(served: ServedRegistry) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": served.url, "basic.auth.user.info": f"{USER}:{PASSWORD}"}) as found:
        yield found


def properties(served: ServedRegistry, **more: str) -> dict[str, str]:
    return {"ksql.schema.registry.url": served.url,
            "ksql.schema.registry.basic.auth.user.info": f"{USER}:{PASSWORD}", **more}


def serialized(client: SchemaRegistryClient, schema: dict[str, Any], topic: str, *rows: dict[str, Any]) -> list[bytes]:
    serializer = AvroSerializer(client, json.dumps(schema))
    return [serializer(row, SerializationContext(topic, MessageField.VALUE)) for row in rows]


def raw_values(engine: Engine, topic: str) -> list[bytes]:
    return engine.log.read(topic).column("value").to_pylist()


ORDERS = [{"id": 1, "item": "tea", "price": Decimal("3.50")}, {"id": 2, "item": None, "price": Decimal("12.00")},
          {"id": 3, "item": "cake", "price": Decimal("4.25")}]


def test_columns_come_from_the_external_registry_and_sinks_register_there(
        served: ServedRegistry, client: SchemaRegistryClient) -> None:
    values = serialized(client, ORDER, "orders", *ORDERS)
    with Engine(properties=properties(served)) as engine:
        engine.log.create_topic("orders", 1)
        append_raw(engine, "orders", values)
        engine.execute("CREATE STREAM ORDERS WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='AVRO');")
        assert [c.name for c in engine.catalog.get("ORDERS").schema.value] == ["ID", "ITEM", "PRICE"]
        engine.execute("SET 'auto.offset.reset' = 'earliest';"
                       "CREATE STREAM CHEAP WITH (KAFKA_TOPIC='cheap', VALUE_FORMAT='AVRO') AS "
                       "SELECT ID, ITEM, PRICE FROM ORDERS WHERE PRICE < 10;")
        engine.run_until_idle()
        written = raw_values(engine, "cheap")
    registered = client.get_latest_version("cheap-value")
    assert [f["name"] for f in json.loads(registered.schema.schema_str)["fields"]] == ["ID", "ITEM", "PRICE"]
    deserializer = AvroDeserializer(client)
    read = [deserializer(v, SerializationContext("cheap", MessageField.VALUE)) for v in written]
    assert read == [{"ID": 1, "ITEM": "tea", "PRICE": Decimal("3.50")},
                    {"ID": 3, "ITEM": "cake", "PRICE": Decimal("4.25")}]


def test_a_query_stalls_while_the_registry_is_down_and_loses_nothing(
        served: ServedRegistry, client: SchemaRegistryClient) -> None:
    first = serialized(client, ORDER, "orders", ORDERS[0])
    with EngineService(properties=properties(served)) as engine:
        engine.log.create_topic("orders", 1)
        append_raw(engine, "orders", first)
        engine.execute("CREATE STREAM ORDERS (ID BIGINT, ITEM STRING, PRICE DECIMAL(8, 2)) "
                       "WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='AVRO');"
                       "SET 'auto.offset.reset' = 'earliest';"
                       "CREATE STREAM OUT AS SELECT ID, ITEM FROM ORDERS;")
        engine.step_all()
        assert len(raw_values(engine, "OUT")) == 1
        later = serialized(client, ORDER_V2, "orders", {**ORDERS[2], "note": "new"})  # an id the engine has not seen
        served.stop()
        append_raw(engine, "orders", later)
        engine.step_all()
        query = engine.catalog.get_query("CSAS_OUT_0")
        assert query.state == "STALLED"
        assert "Schema registry unavailable" in (engine.queries.runner(query.id).stats.last_error or "")
        assert len(raw_values(engine, "OUT")) == 1
        assert raw_values(engine, PROCESSING_LOG) == []
        served.start()
        time.sleep(1.1)  # the client asks a failed registry again after a second
        engine.step_all()
        assert query.state == "RUNNING"
        assert [r["ID"] for r in engine.consume("OUT", as_frame=True).to_dict("records")] == [1, 3]
        assert raw_values(engine, PROCESSING_LOG) == []


def test_a_push_query_waits_for_the_registry_and_loses_nothing(
        served: ServedRegistry, client: SchemaRegistryClient) -> None:
    with EngineService(properties=properties(served)) as engine:
        engine.log.create_topic("orders", 1)
        engine.execute("CREATE STREAM ORDERS (ID BIGINT, ITEM STRING, PRICE DECIMAL(8, 2)) "
                       "WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='AVRO');")
        push = engine.start_push("SELECT ID FROM ORDERS EMIT CHANGES;")
        batches = push.subscribe(Batches())
        later = serialized(client, ORDER_V2, "orders", {**ORDERS[2], "note": "new"})  # an id the engine has not seen
        served.stop()
        append_raw(engine, "orders", later)
        push.step()
        assert push.state == "RUNNING" and "Schema registry unavailable" in (push.waiting or "")
        assert batches.take() == []
        served.start()
        time.sleep(1.1)  # the client asks a failed registry again after a second
        push.step()
        assert [i for batch in batches.take() for i in batch.column("ID").to_pylist()] == [3]
        assert push.waiting is None


def test_without_the_registry_a_statement_fails_clearly_and_a_batch_is_kept(
        served: ServedRegistry, client: SchemaRegistryClient) -> None:
    values = serialized(client, ORDER, "orders", ORDERS[0])
    with Engine(properties=properties(served)) as engine:
        engine.log.create_topic("orders", 1)
        engine.execute("CREATE STREAM ORDERS (ID BIGINT) WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='AVRO');"
                       "SET 'auto.offset.reset' = 'earliest';"
                       "CREATE STREAM OUT AS SELECT ID FROM ORDERS;")
        served.stop()
        append_raw(engine, "orders", values)
        with pytest.raises(RegistryUnavailable, match="Schema registry unavailable"):
            engine.run_until_idle()
        with pytest.raises(RegistryUnavailable, match=str(served.port)):
            engine.execute("CREATE STREAM MORE WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='AVRO');")
        assert raw_values(engine, "OUT") == []
        served.start()
        time.sleep(1.1)
        engine.run_until_idle()
        assert [r["ID"] for r in engine.consume("OUT", as_frame=True).to_dict("records")] == [1]


def test_wrong_credentials_are_never_taken_for_bad_records(served: ServedRegistry) -> None:
    wrong = properties(served, **{"ksql.schema.registry.basic.auth.user.info": "reader:nope"})
    with Engine(properties=wrong) as e, pytest.raises(RegistryUnavailable, match="401"):
        e.execute("CREATE STREAM S WITH (KAFKA_TOPIC='t', VALUE_FORMAT='AVRO', PARTITIONS=1);")


def test_registry_properties_are_checked(served: ServedRegistry, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FormatError, match=re.escape("Did you mean `ksql.schema.registry.basic.auth.user.info`")):
        Engine(properties=properties(served, **{"ksql.schema.registry.basic.auth.userinfo": "a:b"}))
    with pytest.raises(FormatError, match=re.escape("ssl.ca.location")):
        Engine(properties=properties(served, **{"ksql.schema.registry.ssl.truststore.location": "x.jks"}))
    with pytest.raises(FormatError, match="not an http"):
        Engine(properties={"ksql.schema.registry.url": "localhost:8081"})
    monkeypatch.setenv("SR_USER_INFO", f"{USER}:{PASSWORD}")
    secret = {"ksql.schema.registry.basic.auth.user.info": "env:SR_USER_INFO"}
    with Engine(properties={**properties(served), **secret}) as engine:  # a reference, resolved when the client is made
        engine.register_schema("t-value", ORDER)
        assert engine.schema_registry.latest("t-value") is not None


def test_the_registry_is_the_engines_from_its_start(served: ServedRegistry) -> None:
    with Engine(properties=properties(served)) as engine:
        engine.execute(f"SET 'ksql.schema.registry.url'='{served.url}';")  # the same: nothing changes
        with pytest.raises(CatalogError, match="read when the engine starts"):
            engine.execute("SET 'ksql.schema.registry.url'='http://127.0.0.1:1';")
    with Engine() as engine, pytest.raises(CatalogError, match="read when the engine starts"):
        engine.execute(f"SET 'ksql.schema.registry.url'='{served.url}';")


def test_an_incompatible_replacement_names_the_registrys_reason(served: ServedRegistry) -> None:
    with Engine(properties=properties(served)) as engine:
        engine.execute("CREATE STREAM S (ID BIGINT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);"
                       "CREATE STREAM T WITH (KAFKA_TOPIC='t', VALUE_FORMAT='AVRO') AS SELECT ID FROM S;")
        with pytest.raises(FormatError, match="incompatible"):
            engine.execute("CREATE OR REPLACE STREAM T WITH (KAFKA_TOPIC='t', VALUE_FORMAT='AVRO') AS "
                           "SELECT CAST(ID AS STRING) AS ID FROM S;")


def test_a_registry_over_tls_is_trusted_through_its_ca_file(tmp_path: Path) -> None:
    cert, key = tmp_path / "registry.pem", tmp_path / "registry.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    served = ServedRegistry(SchemaRegistry(duckdb.connect()), tls=(cert, key))
    served.start()
    try:
        trusted = {"ksql.schema.registry.url": served.url, "ksql.schema.registry.ssl.ca.location": str(cert)}
        with Engine(properties=trusted) as engine:
            assert engine.register_schema("t-value", ORDER) == served.registry.latest("t-value").id  # type: ignore[union-attr]
        system_cas_only = {"ksql.schema.registry.url": served.url}
        with Engine(properties=system_cas_only) as engine, pytest.raises(RegistryUnavailable, match="VERIFY"):
            engine.register_schema("u-value", ORDER)
    finally:
        served.stop()


@pytest.mark.parametrize("fmt", ["PROTOBUF", "JSON_SR"])
def test_other_registry_formats_register_and_read_there(served: ServedRegistry, fmt: str) -> None:
    with Engine(properties=properties(served)) as engine:
        engine.execute("CREATE STREAM S (ID BIGINT, NAME STRING) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', "
                       "PARTITIONS=1); SET 'auto.offset.reset' = 'earliest';"
                       f"CREATE STREAM T WITH (KAFKA_TOPIC='t', VALUE_FORMAT='{fmt}') AS SELECT ID, NAME FROM S;")
        engine.produce("s", {"ID": 7, "NAME": "seven"})
        engine.run_until_idle()
        assert [(r["ID"], r["NAME"]) for r in engine.consume("T", as_frame=True).to_dict("records")] == [(7, "seven")]
    registered = served.registry.latest("t-value")
    assert registered is not None and registered.schema_type == {"PROTOBUF": "PROTOBUF", "JSON_SR": "JSON"}[fmt]
