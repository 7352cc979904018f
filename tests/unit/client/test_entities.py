"""A server's ``/ksql`` entities shown as the engine's results are: messages and tables, with the
shapes of ksqlDB 0.29 (``ConsoleTest.*.approved.json``) and whatever newer releases add."""

from __future__ import annotations

import json

import pytest

from nbstream.client.entities import to_result, type_text
from nbstream.errors import ServerStatementError


def test_a_command_status_is_its_message_and_query_id() -> None:
    entity = {"@type": "currentStatus", "statementText": "CREATE TABLE t AS …;", "commandId": "table/T/create",
              "commandStatus": {"status": "SUCCESS", "message": "Created query with ID CTAS_T_0",
                                "queryId": "CTAS_T_0"}, "commandSequenceNumber": 10, "warnings": []}
    result = to_result(entity, "x")
    assert (result.message, result.query_id, result.columns) == ("Created query with ID CTAS_T_0", "CTAS_T_0", ())


def test_a_command_that_failed_is_an_error_naming_the_statement() -> None:
    with pytest.raises(ServerStatementError, match="Topic does not exist") as raised:
        to_result({"@type": "currentStatus", "statementText": "CREATE STREAM s …;",
                   "commandStatus": {"status": "ERROR", "message": "Topic does not exist"}}, "x")
    assert raised.value.statement_text == "CREATE STREAM s …;"


def test_streams_queries_and_topics_are_tables() -> None:
    streams = to_result({"@type": "streams", "streams": [{"type": "STREAM", "name": "A", "topic": "t1",
                                                          "keyFormat": "KAFKA", "valueFormat": "JSON",
                                                          "isWindowed": False, "newField": 1}]}, "SHOW STREAMS;")
    assert streams.columns[0] == "Stream Name" and streams.rows == (("A", "t1", "KAFKA", "JSON", ""),)
    queries = to_result({"@type": "queries", "queries": [{"queryString": "CREATE …", "sinks": ["S"], "id": "CSAS_S_0",
                                                          "statusCount": {"RUNNING": 1}, "queryType": "PERSISTENT",
                                                          "state": "RUNNING"}]}, "SHOW QUERIES;")
    assert queries.rows == (("CSAS_S_0", "PERSISTENT", "RUNNING", "S", "CREATE …"),)
    topics = to_result({"@type": "kafka_topics", "topics": [{"name": "t", "replicaInfo": [1, 1]}]}, "SHOW TOPICS;")
    assert topics.rows == (("t", 2, "1, 1"),)


def test_a_source_description_lists_fields_with_their_types_and_keys() -> None:
    description = {"name": "T", "type": "TABLE", "extended": False, "readQueries": [], "writeQueries": [{"id": "Q1"}],
                   "fields": [{"name": "ID", "schema": {"type": "STRING"}, "type": "KEY"},
                              {"name": "S", "schema": {"type": "STRUCT", "fields": [
                                  {"name": "A", "schema": {"type": "ARRAY", "memberSchema": {"type": "INTEGER"}}}]}}]}
    result = to_result({"@type": "sourceDescription", "sourceDescription": description}, "DESCRIBE T;")
    assert result.rows == (("T", "ID", "STRING (primary key)"), ("T", "S", "STRUCT<A ARRAY<INTEGER>>"),
                           ("T", "(query writes)", "Q1"))


def test_decimal_and_map_types_read_as_ksqldb_writes_them() -> None:
    assert type_text({"type": "DECIMAL", "parameters": {"precision": 4, "scale": 2}}) == "DECIMAL(4, 2)"
    assert type_text({"type": "MAP", "memberSchema": {"type": "BIGINT"}}) == "MAP<STRING, BIGINT>"


def test_an_entity_of_an_unknown_type_is_shown_as_its_json() -> None:
    entity = {"@type": "assert_topic", "statementText": "ASSERT TOPIC t;", "topicName": "t", "exists": True}
    result = to_result(entity, "ASSERT TOPIC t;")
    assert json.loads(result.message) == entity


def test_warnings_follow_a_message() -> None:
    result = to_result({"@type": "warning_entity", "message": "careful",
                        "warnings": [{"message": "property ignored"}]}, "x")
    assert result.message == "careful\nWarning: property ignored"
