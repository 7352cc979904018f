"""``/ksql``: one ksqlDB entity per statement, the request's properties and SETs for it alone."""

from __future__ import annotations

from typing import Any

import pytest
from harness import Server

SETUP = """
CREATE STREAM s (k VARCHAR KEY, v INT, h BYTES HEADER('x')) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=2);
CREATE TABLE t WITH (KAFKA_TOPIC='t_out') AS
  SELECT k, COUNT(*) AS n, STRUCT(a := 1) AS st FROM s WINDOW TUMBLING (SIZE 1 SECOND) GROUP BY k;
CREATE STREAM s2 (k VARCHAR KEY, v INT) WITH (KAFKA_TOPIC='s2', VALUE_FORMAT='JSON', PARTITIONS=2);
INSERT INTO s2 SELECT k, v FROM s;
INSERT INTO s (k, v) VALUES ('a', 1);
"""


@pytest.fixture(scope="module")
def created(server: Server) -> list[dict[str, Any]]:
    return server.ksql(SETUP)


def one(server: Server, statement: str, **members: Any) -> dict[str, Any]:
    (entity,) = server.ksql(statement, **members)
    assert entity["statementText"] == statement and entity["warnings"] == []
    return entity


def test_statements_that_change_the_catalog_answer_with_their_command_status(created: list[dict[str, Any]]) -> None:
    assert [(e["@type"], e["commandId"], e["commandStatus"]) for e in created] == [
        ("currentStatus", "stream/S/create", {"status": "SUCCESS", "message": "Stream created", "queryId": None}),
        ("currentStatus", "table/T/create",
         {"status": "SUCCESS", "message": "Created query with ID CTAS_T_0", "queryId": "CTAS_T_0"}),
        ("currentStatus", "stream/S2/create", {"status": "SUCCESS", "message": "Stream created", "queryId": None}),
        ("currentStatus", "stream/S2/create",
         {"status": "SUCCESS", "message": "Created query with ID INSERTQUERY_1", "queryId": "INSERTQUERY_1"}),
    ]  # INSERT … VALUES answers with no entity, as in ksqlDB
    sequence = [e["commandSequenceNumber"] for e in created]
    assert sequence == sorted(sequence) and len(set(sequence)) == 4


def test_show_tables_and_streams(server: Server, created: object) -> None:
    assert one(server, "SHOW TABLES;")["tables"] == [
        {"type": "TABLE", "name": "T", "topic": "t_out", "keyFormat": "KAFKA", "valueFormat": "JSON",
         "isWindowed": True}]
    streams = one(server, "LIST STREAMS;")["streams"]
    assert {"type": "STREAM", "name": "S", "topic": "s", "keyFormat": "KAFKA", "valueFormat": "JSON",
            "isWindowed": False} in streams
    extended = one(server, "SHOW STREAMS EXTENDED;")
    assert extended["@type"] == "source_descriptions"
    assert {d["name"] for d in extended["sourceDescriptions"]} >= {"S", "S2"}


def test_describe_a_source(server: Server, created: object) -> None:
    description = one(server, "DESCRIBE EXTENDED t;")["sourceDescription"]
    assert (description["name"], description["type"], description["windowType"], description["topic"],
            description["partitions"], description["extended"]) == ("T", "TABLE", "TUMBLING", "t_out", 2, True)
    assert description["fields"] == [
        {"name": "K", "schema": {"type": "STRING", "fields": None, "memberSchema": None}, "type": "KEY"},
        {"name": "N", "schema": {"type": "BIGINT", "fields": None, "memberSchema": None}},
        {"name": "ST", "schema": {"type": "STRUCT", "memberSchema": None, "fields": [
            {"name": "A", "schema": {"type": "INTEGER", "fields": None, "memberSchema": None}}]}}]
    assert [q["id"] for q in description["writeQueries"]] == ["CTAS_T_0"]
    source = one(server, "DESCRIBE s;")["sourceDescription"]
    assert {q["id"] for q in source["readQueries"]} == {"CTAS_T_0", "INSERTQUERY_1"}
    assert source["fields"][2] == {"name": "H", "schema": {"type": "BYTES", "fields": None, "memberSchema": None},
                                   "type": "HEADER", "headerKey": "x"}


def test_show_queries_topics_and_functions(server: Server, created: object) -> None:
    queries = one(server, "SHOW QUERIES;")["queries"]
    assert {"queryString": "INSERT INTO s2 SELECT k, v FROM s", "sinks": ["S2"], "sinkKafkaTopics": ["s2"],
            "id": "INSERTQUERY_1", "statusCount": {"RUNNING": 1}, "queryType": "PERSISTENT",
            "state": "RUNNING"} in queries
    assert {"name": "t_out", "replicaInfo": [1, 1]} in one(server, "SHOW TOPICS;")["topics"]
    assert {"name": "s", "replicaInfo": [1, 1], "consumerCount": 2, "consumerGroupCount": 2} in \
        one(server, "SHOW TOPICS EXTENDED;")["topics"]
    assert {"name": "COUNT", "type": "AGGREGATE", "category": ""} in one(server, "SHOW FUNCTIONS;")["functions"]
    function = one(server, "DESCRIBE FUNCTION SUBSTRING;")
    assert (function["@type"], function["name"], function["type"]) == ("describe_function", "SUBSTRING", "SCALAR")
    assert function["functions"][0]["argumentTypes"] == ["STRING|BYTES", "INT", "[INT]"]


def test_explain_a_query(server: Server, created: object) -> None:
    description = one(server, "EXPLAIN CTAS_T_0;")["queryDescription"]
    assert (description["id"], description["sources"], description["sinks"], description["state"]) == (
        "CTAS_T_0", ["S"], ["T"], "RUNNING")
    assert "window: TUMBLING" in description["executionPlan"]


def test_connectors(server: Server) -> None:
    created = one(server, "CREATE SOURCE CONNECTOR g WITH ('connector.class'='datagen', 'kafka.topic'='pv', "
                          "'quickstart'='pageviews', 'iterations'=1);")
    assert created["info"] == {"name": "G", "config": {"connector.class": "datagen", "kafka.topic": "pv",
                                                       "quickstart": "pageviews", "iterations": "1"},
                               "tasks": [], "type": "source"}
    assert one(server, "SHOW CONNECTORS;")["connectors"] == [
        {"name": "G", "type": "source", "className": "datagen", "state": one(server, "DESCRIBE CONNECTOR g;")[
            "status"]["connector"]["state"]}]
    assert one(server, "DROP CONNECTOR g;")["connectorName"] == "G"


def test_terminate_and_drop(server: Server, created: object) -> None:
    terminated = one(server, "TERMINATE INSERTQUERY_1;")
    assert (terminated["commandId"], terminated["commandStatus"]["message"]) == (
        "terminate/INSERTQUERY_1/execute", "Query terminated.")
    dropped = one(server, "DROP STREAM s2;")
    assert (dropped["commandId"], dropped["commandStatus"]["message"]) == (
        "stream/S2/drop", "Source `S2` (topic: s2) was dropped.")


def test_properties_and_sets_hold_for_their_request_only(server: Server) -> None:
    entities = server.ksql("SET 'auto.offset.reset'='earliest'; SHOW PROPERTIES; UNSET 'auto.offset.reset'; "
                           "SHOW PROPERTIES;", streamsProperties={"ksql.streams.cache.max.bytes.buffering": 0})
    assert [e["@type"] for e in entities] == ["properties", "properties"]  # SET and UNSET answer nothing
    assert [p["name"] for p in entities[0]["properties"]] == ["auto.offset.reset",
                                                               "ksql.streams.cache.max.bytes.buffering"]
    assert entities[0]["overwrittenProperties"] == ["auto.offset.reset", "ksql.streams.cache.max.bytes.buffering"]
    assert [p["name"] for p in entities[1]["properties"]] == ["ksql.streams.cache.max.bytes.buffering"]
    assert one(server, "SHOW PROPERTIES;")["properties"] == []


def test_streams_properties_apply_to_the_statements(server: Server) -> None:
    statement = "CREATE STREAM defaulted (v INT) WITH (KAFKA_TOPIC='defaulted');"
    refused = server.request("POST", "/ksql", {"ksql": statement})
    assert refused.status == 400 and "VALUE_FORMAT" in refused.json()["message"]
    server.ksql(statement, streamsProperties={"ksql.persistence.default.format.value": "DELIMITED"})
    streams = one(server, "SHOW STREAMS;")["streams"]
    assert [s["valueFormat"] for s in streams if s["name"] == "DEFAULTED"] == ["DELIMITED"]


def test_variables_and_types(server: Server) -> None:
    assert one(server, "SHOW VARIABLES;", sessionVariables={"b": 2, "a": "x"})["variables"] == [
        {"name": "a", "value": "x"}, {"name": "b", "value": "2"}]
    assert one(server, "SHOW TYPES;")["types"] == {}
    created = one(server, "CREATE TYPE ADDRESS AS STRUCT<number INT, tags ARRAY<STRING>>;")
    assert (created["@type"], created["commandId"]) == ("currentStatus", "type/ADDRESS/create")
    assert one(server, "LIST TYPES;")["types"] == {"ADDRESS": {"type": "STRUCT", "memberSchema": None, "fields": [
        {"name": "NUMBER", "schema": {"type": "INTEGER", "fields": None, "memberSchema": None}},
        {"name": "TAGS", "schema": {"type": "ARRAY", "fields": None,
                                    "memberSchema": {"type": "STRING", "fields": None, "memberSchema": None}}}]}}
    assert one(server, "DROP TYPE ADDRESS;")["commandId"] == "type/ADDRESS/drop"
    assert one(server, "SHOW TYPES;")["types"] == {}


def test_statements_run_one_at_a_time_from_many_clients(server: Server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def create(i: int) -> str:
        return str(server.ksql(f"CREATE STREAM many{i} (v INT) WITH (KAFKA_TOPIC='many{i}', VALUE_FORMAT='JSON');")
                   [0]["commandStatus"]["status"])

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(create, range(24))) == {"SUCCESS"}
    names = {s["name"] for s in one(server, "SHOW STREAMS;")["streams"]}
    assert {f"MANY{i}" for i in range(24)} <= names
