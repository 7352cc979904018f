"""The client against what ksqlDB itself answers — not only what nbstream's server does: a stand-in
server (hypercorn, HTTP/2 by prior knowledge, as ksqlDB's Vert.x speaks it) replays ksqlDB 0.29's
response shapes (``../shared/conformance/REST.md``) with what newer releases add — unknown entity
types, new fields, continuation and consistency tokens in a push query — and records what the
client sent."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from nbstream.client import connect_server
from nbstream.client.remote import RemoteConnection
from nbstream.errors import ServerStatementError
from nbstream.runtime.push import DONE, QueueBatches

SCHEMA = "`REGION` STRING, `N` BIGINT"

ENTITIES: dict[str, list[dict[str, Any]]] = {
    "SHOW STREAMS;": [{"@type": "streams", "statementText": "SHOW STREAMS;", "warnings": [], "newField": {"a": 1},
                       "streams": [{"type": "STREAM", "name": "PAGEVIEWS", "topic": "pageviews", "keyFormat": "KAFKA",
                                    "valueFormat": "JSON", "isWindowed": False, "isSourceStream": False}]}],
    "ASSERT TOPIC pageviews;": [{"@type": "assert_topic", "statementText": "ASSERT TOPIC pageviews;",
                                 "topicName": "pageviews", "exists": True, "warnings": []}],
    "CREATE STREAM s (v INT) WITH (kafka_topic='s', value_format='JSON');": [
        {"@type": "currentStatus", "statementText": "CREATE STREAM S …", "commandId": "stream/`S`/create",
         "commandStatus": {"status": "SUCCESS", "message": "Stream created", "queryId": None},
         "commandSequenceNumber": 41, "warnings": [{"message": "a new warning"}]}],
    "DESCRIBE REGIONS;": [{"@type": "sourceDescription", "statementText": "DESCRIBE REGIONS;", "warnings": [],
                           "sourceDescription": {"name": "REGIONS", "type": "TABLE", "windowType": None,
                                                 "fields": [{"name": "REGION", "schema": {"type": "STRING"},
                                                             "type": "KEY"},
                                                            {"name": "N", "schema": {"type": "BIGINT"}}],
                                                 "isSourceTable": False}}],
}

PUSH = [  # a push query's StreamedRows, as JsonStreamedRowResponseWriter writes them (tokens of scalable push queries)
    {"header": {"queryId": "transient_REGIONS_123", "schema": SCHEMA}},
    {"row": {"columns": ["north", 1]}},
    {"continuationToken": {"continuationToken": "eyJvZmZzZXQiOjF9"}},
    {"consistencyToken": {"consistencyToken": "c2VydmVy"}},
    {"row": {"columns": ["north", 2]}},
    {"row": {"columns": ["south", 1], "sourceNode": "host-b"}},
    {"finalMessage": "Limit Reached"},
]

PULL = [{"header": {"queryId": "query_99", "schema": "`REGION` STRING KEY, `N` BIGINT"}},
        {"row": {"columns": ["north", 2]}}]


@dataclass
class KsqlDbStandIn:
    """What the stand-in server received: (method, path, HTTP version, headers, JSON body) per request."""

    url: str = ""
    requests: list[tuple[str, str, str, dict[str, str], Any]] = field(default_factory=list)
    has_query_stream: bool = True  # False: a ksqlDB before 0.15, /query only

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        parsed = json.loads(body) if body else None
        self.requests.append((scope["method"], scope["path"], scope["http_version"], headers, parsed))
        status, content_type, answer = self.answer(scope["path"], parsed)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type.encode())]})
        await send({"type": "http.response.body", "body": answer})

    def answer(self, path: str, body: Any) -> tuple[int, str, bytes]:
        if path == "/info":
            return 200, "application/json", json.dumps({"KsqlServerInfo": {
                "version": "0.29.0", "kafkaClusterId": "j3N6", "ksqlServiceId": "default_",
                "serverStatus": "RUNNING", "newInfo": True}}).encode()
        if path == "/ksql":
            entities = ENTITIES.get(body["ksql"])
            if entities is None:
                return 400, "application/json", json.dumps({
                    "@type": "statement_error", "error_code": 40001, "message": "line 1:1: Syntax Error",
                    "statementText": body["ksql"], "entities": []}).encode()
            return 200, "application/json", json.dumps(entities).encode()
        if path == "/query" or (path == "/query-stream" and self.has_query_stream):
            elements = PULL if "EMIT" not in body.get("sql", body.get("ksql")) else PUSH
            lines = [json.dumps(e) for e in elements]
            text = "[" + ",\n".join(lines) + "]"
            return 200, "application/vnd.ksql.v1+json", text.encode()
        if path == "/close-query":
            return 200, "application/json", b""
        return 404, "application/json", b'{"@type":"generic_error","error_code":40400,"message":"Not found"}'


@pytest.fixture(scope="module")
def ksqldb() -> Iterator[KsqlDbStandIn]:
    stand_in = KsqlDbStandIn()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stand_in.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]  # hypercorn's to close
    config.loglevel = "WARNING"
    config.accesslog = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    serving = serve(stand_in, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    thread = threading.Thread(target=loop.run_until_complete, args=(serving,), daemon=True)
    thread.start()
    yield stand_in
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()


@pytest.fixture
def connection(ksqldb: KsqlDbStandIn) -> Iterator[RemoteConnection]:
    ksqldb.requests.clear()
    connection = connect_server(ksqldb.url)
    yield connection
    connection.close()


def run(connection: RemoteConnection, sql: str) -> Any:
    (statement,) = connection.statements(sql)
    return connection.run(statement, {}).result


def test_the_servers_version_and_status_despite_new_fields(connection: RemoteConnection, ksqldb: KsqlDbStandIn) -> None:
    assert connection.location() == f"{ksqldb.url} (ksqlDB 0.29.0, RUNNING)"


def test_entities_with_new_fields_read_and_unknown_types_show_as_json(connection: RemoteConnection) -> None:
    assert run(connection, "SHOW STREAMS;").rows == (("PAGEVIEWS", "pageviews", "KAFKA", "JSON", ""),)
    assert json.loads(run(connection, "ASSERT TOPIC pageviews;").message)["topicName"] == "pageviews"
    created = run(connection, "CREATE STREAM s (v INT) WITH (kafka_topic='s', value_format='JSON');")
    assert created.message == "Stream created\nWarning: a new warning"


def test_every_request_is_http2_and_carries_the_sessions_properties_and_sequence(
        connection: RemoteConnection, ksqldb: KsqlDbStandIn) -> None:
    run(connection, "SET 'auto.offset.reset' = 'earliest';")
    run(connection, "CREATE STREAM s (v INT) WITH (kafka_topic='s', value_format='JSON');")
    run(connection, "SHOW STREAMS;")
    query = connection.push(connection.statements("SELECT * FROM regions EMIT CHANGES LIMIT 3;")[0], {})
    query.subscribe(QueueBatches())
    assert query.closed.wait(5)
    assert {version for _, _, version, _, _ in ksqldb.requests} == {"2"}
    ksql = [body for _, path, _, _, body in ksqldb.requests if path == "/ksql"]
    assert ksql[1] == {"ksql": "SHOW STREAMS;", "streamsProperties": {"auto.offset.reset": "earliest"},
                       "commandSequenceNumber": 41}
    (stream,) = [(headers, body) for _, path, _, headers, body in ksqldb.requests if path == "/query-stream"]
    assert stream[0]["accept"] == "application/vnd.ksql.v1+json"
    assert stream[1] == {"sql": "SELECT * FROM regions EMIT CHANGES LIMIT 3;",
                         "properties": {"auto.offset.reset": "earliest"}}


def test_a_push_querys_rows_pass_its_tokens_and_are_keyed_by_the_tables_key(connection: RemoteConnection) -> None:
    query = connection.push(connection.statements("SELECT * FROM regions EMIT CHANGES LIMIT 3;")[0], {})
    assert (query.id, query.shape.keys) == ("transient_REGIONS_123", ("REGION",))
    rows = query.subscribe(QueueBatches())
    seen = []
    while (batch := rows.get(timeout=10)) is not None:
        seen += batch.drop_columns(["ROWTIME", "__deleted"]).to_pylist()
    assert seen == [{"REGION": "north", "N": 1}, {"REGION": "north", "N": 2}, {"REGION": "south", "N": 1}]
    assert query.state == DONE and rows.ending is not None and rows.ending.state == DONE


def test_a_pull_query_reads_the_key_marked_schema(connection: RemoteConnection) -> None:
    frame = connection.pull(connection.statements("SELECT * FROM regions WHERE region = 'north';")[0], {})
    assert frame.to_dict("records") == [{"REGION": "north", "N": 2}]


def test_a_server_without_query_stream_is_asked_on_query(connection: RemoteConnection,
                                                         ksqldb: KsqlDbStandIn) -> None:
    ksqldb.has_query_stream = False
    try:
        frame = connection.pull(connection.statements("SELECT * FROM regions WHERE region = 'north';")[0], {})
    finally:
        ksqldb.has_query_stream = True
    assert frame.to_dict("records") == [{"REGION": "north", "N": 2}]
    queries = [(path, body) for _, path, _, _, body in ksqldb.requests if path.startswith("/query")]
    assert queries == [("/query-stream", {"sql": "SELECT * FROM regions WHERE region = 'north';", "properties": {}}),
                       ("/query", {"ksql": "SELECT * FROM regions WHERE region = 'north';",
                                   "streamsProperties": {}})]


def test_a_statement_error_carries_the_servers_message_and_statement(connection: RemoteConnection) -> None:
    with pytest.raises(ServerStatementError) as raised:
        run(connection, "PAUSE ALL;")
    assert (raised.value.message, raised.value.statement_text) == ("line 1:1: Syntax Error", "PAUSE ALL;")
