"""The server over plain HTTP/1.1 (http.client): the exact bytes of every response format of
``/query-stream`` and ``/query``, ksqlDB's error JSON, and the small endpoints."""

from __future__ import annotations

import http.client
import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness import Server, eventually

SETUP = """
SET 'cache.max.bytes.buffering'='0';
CREATE STREAM orders (id VARCHAR KEY, amount DECIMAL(6, 2), at TIMESTAMP, tags ARRAY<STRING>)
  WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=1);
CREATE TABLE few AS SELECT id, COUNT(*) AS n FROM orders GROUP BY id HAVING COUNT(*) < 2;
INSERT INTO orders (id, amount, at, tags) VALUES ('o1', 12.50, '2021-01-02T03:04:05.678', ARRAY['a', 'b']);
INSERT INTO orders (id, amount, at, tags) VALUES ('o2', 1, '2021-01-02T03:04:05', ARRAY['c']);
INSERT INTO orders (id, amount, at, tags) VALUES ('o2', 3, '2021-01-02T03:04:06', ARRAY[]);
"""
EARLIEST = {"auto.offset.reset": "earliest"}
DELIMITED, JSON, V1 = "application/vnd.ksqlapi.delimited.v1", "application/json", "application/vnd.ksql.v1+json"


@pytest.fixture(scope="module", autouse=True)
def orders(server: Server) -> None:
    server.ksql(SETUP)

    def caught_up() -> bool:  # the table: header and o1 (o2 came and went)
        rows = server.request("POST", "/query-stream", {"sql": "SELECT * FROM few;"}, {"Accept": DELIMITED})
        metrics = server.request("GET", "/metrics").body
        return rows.body.count(b"\n") == 2 and b'input_lag_records{query_id="CTAS_FEW_0",sink="FEW"} 0' in metrics

    eventually(caught_up)


def query_id(body: bytes) -> str:
    return re.search(rb'"queryId":"([^"]+)"', body).group(1).decode()  # type: ignore[union-attr]


# -- pull queries ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("accept", "expected"), [
    (None, b'{"queryId":"ID","columnNames":["ID","N"],"columnTypes":["STRING","BIGINT"]}\n["o1",1]\n'),
    ("*/*", b'{"queryId":"ID","columnNames":["ID","N"],"columnTypes":["STRING","BIGINT"]}\n["o1",1]\n'),
    (DELIMITED, b'{"queryId":"ID","columnNames":["ID","N"],"columnTypes":["STRING","BIGINT"]}\n["o1",1]\n'),
    (JSON, b'[{"queryId":"ID","columnNames":["ID","N"],"columnTypes":["STRING","BIGINT"]},["o1",1]]'),
    (V1, b'[{"header":{"queryId":"ID","schema":"`ID` STRING KEY, `N` BIGINT"}},\n{"row":{"columns":["o1",1]}}]'),
])
def test_a_pull_query_on_query_stream_in_each_format(server: Server, accept: str | None, expected: bytes) -> None:
    reply = server.request("POST", "/query-stream", {"sql": "SELECT * FROM few WHERE id = 'o1';"},
                           {"Accept": accept} if accept else {})
    assert reply.status == 200
    assert reply.headers["content-type"] == (accept if accept not in (None, "*/*") else DELIMITED)
    assert reply.body == expected.replace(b"ID", query_id(reply.body).encode(), 1)


def test_query_answers_in_ksqldbs_streamed_rows_by_default(server: Server) -> None:
    reply = server.request("POST", "/query", {"ksql": "SELECT id, n FROM few;"})
    assert reply.headers["content-type"] == V1
    assert reply.body == (b'[{"header":{"queryId":"%s","schema":"`ID` STRING KEY, `N` BIGINT"}},\n'
                          b'{"row":{"columns":["o1",1]}}]' % query_id(reply.body).encode())


def test_a_pull_query_on_a_stream_scans_it(server: Server) -> None:
    reply = server.request("POST", "/query-stream", {"sql": "SELECT id, amount FROM orders;"})
    assert reply.body.split(b"\n")[1:] == [b'["o1",12.50]', b'["o2",1.00]', b'["o2",3.00]', b""]


def test_a_keep_alive_connection_serves_more_than_a_thousand_requests(server: Server) -> None:
    """hypercorn would close it after 1,000 (its keep_alive_max_requests); ksqlDB's Vert.x never does."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    body = json.dumps({"sql": "SELECT * FROM few WHERE id = 'o1';"})
    for _ in range(1_050):
        connection.request("POST", "/query-stream", body=body, headers={"Accept": JSON})
        reply = connection.getresponse()
        assert reply.status == 200 and b'"o1",1' in reply.read()
    connection.close()


def test_point_lookups_from_many_connections_at_once_each_get_the_row_of_their_key(server: Server) -> None:
    """Once planned, a lookup is answered together with the others in flight (runtime/lookups.py)."""
    def ask(connection_number: int) -> list[bytes]:
        connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
        bodies = []
        for i in range(60):
            key = ("o1", "o2", "o3")[(connection_number + i) % 3]
            body = json.dumps({"sql": f"SELECT * FROM few WHERE id = '{key}';"})
            connection.request("POST", "/query-stream", body=body, headers={"Accept": JSON})
            bodies.append(connection.getresponse().read())
        connection.close()
        return bodies

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    rows = {"o1": b'["o1",1]]', "o2": b"}]", "o3": b"}]"}  # o2 left the table (HAVING), o3 never was in it
    for connection_number, bodies in enumerate(answers):
        for i, body in enumerate(bodies):
            assert body.endswith(rows[("o1", "o2", "o3")[(connection_number + i) % 3]]), body


def test_a_pull_query_on_a_stream_ends_with_query_completed_on_query(server: Server) -> None:
    reply = server.request("POST", "/query", {"ksql": "SELECT id FROM orders WHERE id = 'o1';"})
    assert reply.body.split(b"\n")[1:] == [b'{"row":{"columns":["o1"]}},', b'{"finalMessage":"Query Completed"}]']


@pytest.mark.parametrize(("sql", "properties", "message"), [
    ("SELECT * FROM few;", {"ksql.query.pull.table.scan.enabled": False}, "Query requires table scan to be enabled"),
    ("SELECT * FROM few WHERE n = 1;", {"ksql.query.pull.table.scan.enabled": "false"},
     "WHERE clause missing key column for disjunct: (N = 1)"),
    ("SELECT * FROM few LIMIT 1;", {"ksql.query.pull.limit.clause.enabled": False},
     "LIMIT clause in pull queries is currently disabled"),
    ("SELECT ROWOFFSET FROM few;", {}, "Pull queries don't support the following columns in SELECT clauses"),
])
def test_a_pull_query_ksqldb_refuses_under_the_requests_properties_is_refused(
        server: Server, sql: str, properties: dict[str, object], message: str) -> None:
    reply = server.request("POST", "/query", {"ksql": sql, "streamsProperties": properties})
    assert reply.status == 400 and reply.json()["error_code"] == 40001
    assert message in reply.json()["message"]
    assert server.request("POST", "/query", {"ksql": sql.replace("ROWOFFSET", "ID")}).status == 200


# -- push queries ---------------------------------------------------------------------------------------

PUSH = "SELECT * FROM orders EMIT CHANGES LIMIT 2;"
PUSH_COLUMNS = (b'"columnNames":["ID","AMOUNT","AT","TAGS"],'
                b'"columnTypes":["STRING","DECIMAL(6, 2)","TIMESTAMP","ARRAY<STRING>"]')
ROW_1 = b'["o1",12.50,"2021-01-02T03:04:05.678",["a","b"]]'
ROW_2 = b'["o2",1.00,"2021-01-02T03:04:05.000",["c"]]'


@pytest.mark.parametrize(("accept", "expected"), [
    (DELIMITED, b'{"queryId":"ID",' + PUSH_COLUMNS + b"}\n" + ROW_1 + b"\n" + ROW_2 + b"\n"),
    (JSON, b'[{"queryId":"ID",' + PUSH_COLUMNS + b"}," + ROW_1 + b"," + ROW_2 + b"]"),
    (V1, b'[{"header":{"queryId":"ID","schema":"`ID` STRING, `AMOUNT` DECIMAL(6, 2), `AT` TIMESTAMP, '
         b'`TAGS` ARRAY<STRING>"}},\n{"row":{"columns":' + ROW_1 + b'}},\n{"row":{"columns":' + ROW_2 +
         b'}},\n{"finalMessage":"Limit Reached"}]'),
])
def test_a_push_query_on_query_stream_in_each_format(server: Server, accept: str, expected: bytes) -> None:
    reply = server.request("POST", "/query-stream", {"sql": PUSH, "properties": EARLIEST}, {"Accept": accept})
    assert reply.status == 200 and reply.headers["transfer-encoding"] == "chunked"
    assert reply.body == expected.replace(b"ID", query_id(reply.body).encode(), 1)
    assert query_id(reply.body).startswith("PUSH_")


def test_a_push_query_ksqldb_would_run_as_a_scalable_push_query_is_named_so(server: Server) -> None:
    """With ``ksql.query.push.v2.enabled``, a push query from the latest offset of a source written by
    one persistent query (ksqlDB's ``ScalablePushUtil``); otherwise the engine's name."""
    v2 = {"ksql.query.push.v2.enabled": True}
    scalable = server.request("POST", "/query-stream", {"sql": "SELECT * FROM few EMIT CHANGES LIMIT 0;",
                                                        "properties": v2})
    assert query_id(scalable.body).startswith("SCALABLE_PUSH_QUERY_")
    for sql, properties in [("SELECT * FROM few EMIT CHANGES LIMIT 0;", {}),
                            ("SELECT * FROM orders EMIT CHANGES LIMIT 0;", v2),  # no query writes it
                            ("SELECT * FROM few EMIT CHANGES LIMIT 0;", {**v2, **EARLIEST})]:
        reply = server.request("POST", "/query-stream", {"sql": sql, "properties": properties})
        assert query_id(reply.body).startswith("PUSH_")


def test_a_push_query_on_query_marks_deleted_table_rows_as_tombstones(server: Server) -> None:
    reply = server.request("POST", "/query", {"ksql": "SELECT * FROM few EMIT CHANGES LIMIT 3;",
                                              "streamsProperties": EARLIEST})
    lines = reply.body.split(b"\n")
    header = b'[{"header":{"queryId":"%s","schema":"`ID` STRING, `N` BIGINT"}},'
    assert lines[0] == header % query_id(reply.body).encode()
    assert lines[1:] == [b'{"row":{"columns":["o1",1]}},', b'{"row":{"columns":["o2",1]}},',
                         b'{"row":{"columns":["o2",null],"tombstone":true}},', b'{"finalMessage":"Limit Reached"}]']


def test_the_other_formats_drop_tombstones(server: Server) -> None:
    reply = server.request("POST", "/query-stream", {"sql": "SELECT * FROM few EMIT CHANGES LIMIT 3;",
                                                     "properties": EARLIEST})
    assert reply.body.split(b"\n")[1:] == [b'["o1",1]', b'["o2",1]', b""]


# -- errors ---------------------------------------------------------------------------------------------


def test_a_statement_that_fails_names_itself_and_what_ran_before_it(server: Server) -> None:
    reply = server.request("POST", "/ksql", {"ksql": "SHOW TABLES; DESCRIBE nothing_here;"})
    assert reply.status == 400 and reply.headers["content-type"] == "application/json"
    error = reply.json()
    assert (error["@type"], error["error_code"], error["statementText"]) == (
        "statement_error", 40001, "DESCRIBE nothing_here;")
    assert "NOTHING_HERE does not exist" in error["message"]
    assert [e["@type"] for e in error["entities"]] == ["tables"]


def test_a_parse_error_is_a_bad_statement(server: Server) -> None:
    error = server.request("POST", "/ksql", {"ksql": "SELEKT 1;"}).json()
    assert (error["@type"], error["error_code"], error["statementText"]) == ("statement_error", 40001, "SELEKT 1;")
    assert "mismatched input 'SELEKT'" in error["message"]


@pytest.mark.parametrize("sql", ["SELECT * FROM few;", "SHOW STREAMS; PRINT 'orders' LIMIT 1;"])
def test_a_query_on_ksql_is_sent_to_the_query_endpoint(server: Server, sql: str) -> None:
    reply = server.request("POST", "/ksql", {"ksql": sql})
    assert reply.status == 400
    assert reply.json()["error_code"] == 40002 and reply.json()["@type"] == "statement_error"


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("/ksql", b"{not json", 400, 40000),
    ("/ksql", b"[1, 2]", 400, 40000),
    ("/ksql", b'{"ksql": 5}', 400, 40000),
    ("/ksql", b'{"ksql": "SHOW STREAMS;", "streamsProperties": "x"}', 400, 40000),
    ("/query-stream", b'{"query": "SELECT 1"}', 400, 40000),
    ("/query-stream", b'{"sql": "SELECT * FROM missing;"}', 400, 40001),
    ("/query-stream", b'{"sql": "SHOW STREAMS;"}', 400, 40001),
    ("/query", b'{"ksql": "SELECT * FROM missing EMIT CHANGES;"}', 400, 40001),
    ("/close-query", b'{"queryId": "PUSH_999"}', 400, 40000),
    ("/inserts-stream", b'{"target": "orders"}\n{"id": "x"}\n', 400, 40004),
    ("/nowhere", b"", 404, 40400),
])
def test_bad_requests_get_ksqldbs_error_json(server: Server, path: str, body: bytes, status: int, code: int) -> None:
    reply = server.request("POST", path, body)
    assert (reply.status, reply.json()["error_code"], reply.json()["@type"]) == (status, code, reply.json()["@type"])
    assert reply.json()["@type"] in ("generic_error", "statement_error") and reply.json()["message"]


def test_an_unknown_query_id_cannot_be_closed(server: Server) -> None:
    assert server.request("POST", "/close-query", {"queryId": "PUSH_999"}).json() == {
        "@type": "generic_error", "error_code": 40000, "message": "No query with id PUSH_999"}


def test_a_format_nobody_offers_is_not_acceptable(server: Server) -> None:
    reply = server.request("POST", "/query-stream", {"sql": "SELECT * FROM few;"}, {"Accept": "text/html"})
    assert (reply.status, reply.json()["error_code"]) == (406, 40600)


def test_a_body_over_the_limit_is_refused(server: Server) -> None:
    reply = server.request("POST", "/ksql", b'{"ksql": "' + b" " * (2 * 1024 * 1024) + b'SHOW STREAMS;"}')
    assert (reply.status, reply.json()["error_code"]) == (413, 41300)


# -- the small endpoints ----------------------------------------------------------------------------------


def test_info_and_the_root_that_leads_to_it(server: Server) -> None:
    assert server.request("GET", "/info").json() == {"KsqlServerInfo": {
        "version": "0.29.0", "kafkaClusterId": "nbstream", "ksqlServiceId": "default_", "serverStatus": "RUNNING"}}
    root = server.request("GET", "/")
    assert (root.status, root.headers["location"]) == (307, "/info")


def test_health_and_the_container_probes(server: Server) -> None:
    assert server.request("GET", "/healthcheck").json() == {
        "isHealthy": True, "serverState": "READY", "details": {
            "metastore": {"isHealthy": True}, "kafka": {"isHealthy": True}, "commandRunner": {"isHealthy": True}}}
    for probe in ("/chc/live", "/chc/ready"):
        reply = server.request("GET", probe)
        assert (reply.status, reply.body) == (200, b"{}")


SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? -?[0-9.e+Inf-]+$')


def test_metrics_are_prometheus_text(server: Server) -> None:
    reply = server.request("GET", "/metrics")
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    lines = reply.body.decode().splitlines()
    assert all(SAMPLE.match(line) for line in lines if not line.startswith("#")), lines
    text = reply.body.decode()
    assert 'nbstream_query_records_in_total{query_id="CTAS_FEW_0",sink="FEW"} 3' in text
    assert 'nbstream_query_state{query_id="CTAS_FEW_0",sink="FEW",state="RUNNING"} 1' in text
    assert 'nbstream_query_input_lag_records{query_id="CTAS_FEW_0",sink="FEW"} 0' in text
    assert re.search(r'nbstream_query_batch_duration_seconds_count\{query_id="CTAS_FEW_0",sink="FEW"\} [1-9]', text)
    assert re.search(r'nbstream_query_event_time_lag_seconds\{query_id="CTAS_FEW_0",sink="FEW"\} [0-9.]+', text)
    assert re.search(r'nbstream_http_requests_total\{endpoint="/ksql",status="200"\} [1-9]', text)
    assert re.search(r"nbstream_pull_query_duration_seconds_count [1-9]", text)
    assert "nbstream_push_queries_open 0" in text
    assert 'nbstream_push_queries_disconnected_total{reason="overflow"} 0' in text
    assert re.search(r"\nprocess_resident_memory_bytes [1-9][0-9]{6,}\n", text)  # at least a megabyte
    assert re.search(r'\nnbstream_duckdb_memory_bytes\{tag="[A-Z_]+"\} [1-9]', text)
    assert re.search(r'\npython_gc_collections_total\{generation="2"\} [0-9]+\n', text)
    # What startup left alive (modules, catalog: over 100,000 objects) is out of full collections' reach.
    assert int(re.findall(r"\nnbstream_gc_frozen_objects ([0-9]+)\n", text)[0]) > 50_000


def test_a_whole_response_is_written_at_once(server: Server) -> None:
    """A response of known length leaves in one write, head and body (nbstream/server/h11_heads.py):
    the first bytes the client receives hold all of it."""
    import socket

    body = b'{"sql":"SELECT * FROM few WHERE id = \'o1\';"}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for _ in range(3):  # on a keep-alive connection, every time
            sock.sendall(b"POST /query-stream HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            first = sock.recv(1 << 16)
            head, _, rest = first.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
            assert head.startswith(b"HTTP/1.1 200") and len(rest) == length and rest.endswith(b'["o1",1]]')
