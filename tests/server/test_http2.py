"""The server over HTTP/2 without TLS (h2c, prior knowledge), as ksqlDB's clients call it: push queries
that stream as rows arrive, ``/inserts-stream`` acks, ``/close-query``, a client going away, the
limit on push queries, and a client too slow to keep up."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from h2.exceptions import StreamClosedError
from harness import RawH2, Server, eventually, running_server

SETUP = """
CREATE STREAM clicks (user VARCHAR KEY, page VARCHAR, n INT) WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON');
CREATE TABLE per_user AS SELECT user, COUNT(*) AS views FROM clicks GROUP BY user;
"""
DELIMITED, JSON, V1 = "application/vnd.ksqlapi.delimited.v1", "application/json", "application/vnd.ksql.v1+json"


@pytest.fixture(scope="module", autouse=True)
def clicks(server: Server) -> None:
    server.ksql(SETUP)


def insert(client: httpx.Client, target: str, rows: list[dict[str, object]], accept: str | None = None) -> bytes:
    body = "\n".join(json.dumps(r) for r in [{"target": target}, *rows]) + "\n"
    reply = client.post("/inserts-stream", content=body, headers={"Accept": accept} if accept else {})
    assert reply.http_version == "HTTP/2" and reply.status_code == 200, reply.content
    return reply.content


def open_pushes(server: Server) -> int:
    text = server.request("GET", "/metrics").body.decode()
    return int(text.split("\nnbstream_push_queries_open ")[1].split("\n")[0])


@pytest.fixture
def h2(server: Server) -> Iterator[httpx.Client]:
    with server.h2() as client:
        yield client


# -- inserts -----------------------------------------------------------------------------------------------


def test_each_inserted_row_is_acknowledged_once_durable(server: Server, h2: httpx.Client) -> None:
    acks = insert(h2, "clicks", [{"user": "ann", "page": "home", "n": 1}, {"USER": "bob", "PAGE": "cart"}])
    assert acks == b'{"status":"ok","seq":0}\n{"status":"ok","seq":1}\n'
    rows = server.request("POST", "/query-stream", {"sql": "SELECT user, page, n FROM clicks;"}).body
    assert rows.split(b"\n")[1:3] == [b'["ann","home",1]', b'["bob","cart",null]']


def test_acks_as_a_json_array(h2: httpx.Client) -> None:
    acks = insert(h2, "clicks", [{"user": "cy", "page": "a"}, {"user": "cy", "page": "b"}], accept=JSON)
    assert acks == b'[{"status":"ok","seq":0},{"status":"ok","seq":1}]'


def test_the_first_row_that_cannot_be_inserted_ends_the_stream(h2: httpx.Client) -> None:
    acks = insert(h2, "clicks", [{"user": "dee", "n": 1}, {"user": "dee", "n": "many"}, {"user": "dee", "n": 3}])
    first, error, end = acks.split(b"\n")
    assert (json.loads(first), end) == ({"status": "ok", "seq": 0}, b"")
    assert json.loads(error) == {"@type": "generic_error", "status": "error", "seq": 1, "error_code": 40000,
                                 "message": "Can't coerce string to type. targetType: INTEGER, path: $.N"}


def test_inserting_into_an_unknown_target_is_refused_before_any_ack(h2: httpx.Client) -> None:
    reply = h2.post("/inserts-stream", content=b'{"target": "nowhere"}\n{"a": 1}\n')
    assert reply.status_code == 400
    assert reply.json()["error_code"] == 40001 and "unknown stream/table: NOWHERE" in reply.json()["message"]


def test_a_request_whose_rows_arrive_over_time_is_acked_as_they_do(server: Server, h2: httpx.Client) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"target": "clicks"}\n'
        for i in range(3):
            yield json.dumps({"user": "eve", "n": i}).encode() + b"\n"
            time.sleep(0.2)

    with h2.stream("POST", "/inserts-stream", content=body()) as reply:
        acks = [json.loads(line) for line in reply.iter_lines() if line]
    assert acks == [{"status": "ok", "seq": n} for n in range(3)]


# -- push queries ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("accept", "header", "rows"), [
    (DELIMITED, b'{"queryId":"ID","columnNames":["USER","PAGE"],"columnTypes":["STRING","STRING"]}\n',
     b'["fay","home"]\n["fay","cart"]\n'),
    (JSON, b'[{"queryId":"ID","columnNames":["USER","PAGE"],"columnTypes":["STRING","STRING"]}',
     b',["fay","home"],["fay","cart"]]'),
    (V1, b'[{"header":{"queryId":"ID","schema":"`USER` STRING, `PAGE` STRING"}},\n',
     b'{"row":{"columns":["fay","home"]}},\n{"row":{"columns":["fay","cart"]}},\n{"finalMessage":"Limit Reached"}]'),
])
def test_a_push_query_streams_rows_as_they_arrive(server: Server, h2: httpx.Client, accept: str, header: bytes,
                                                  rows: bytes) -> None:
    sql = "SELECT user, page FROM clicks WHERE user = 'fay' EMIT CHANGES LIMIT 2;"
    with h2.stream("POST", "/query-stream", json={"sql": sql}, headers={"Accept": accept}) as reply:
        chunks = reply.iter_raw()
        first = next(chunks)  # the header comes before any row exists
        query_id = json.loads(first.split(b"\n")[0].strip(b"[,")).get("queryId") or \
            json.loads(first.split(b"\n")[0].strip(b"[,"))["header"]["queryId"]
        assert first == header.replace(b"ID", query_id.encode())
        with server.h2() as other:
            insert(other, "clicks", [{"user": "fay", "page": "home"}, {"user": "gus", "page": "x"},
                                     {"user": "fay", "page": "cart"}])
        assert b"".join(chunks) == rows


def test_close_query_ends_a_push_query_with_its_completion(server: Server, h2: httpx.Client) -> None:
    with h2.stream("POST", "/query-stream", json={"sql": "SELECT * FROM per_user EMIT CHANGES;"},
                   headers={"Accept": V1}) as reply:
        lines = reply.iter_lines()
        query_id = json.loads(next(lines).strip("[,"))["header"]["queryId"]
        closed = h2.post("/close-query", json={"queryId": query_id})
        assert (closed.status_code, closed.content) == (200, b"")
        assert list(lines) == ['{"finalMessage":"Query Completed"}]']
    eventually(lambda: open_pushes(server) == 0)


def test_a_client_that_goes_away_ends_its_push_query_within_a_second(server: Server) -> None:
    before = open_pushes(server)
    with server.h2() as client, client.stream("POST", "/query-stream",
                                              json={"sql": "SELECT * FROM clicks EMIT CHANGES;"}) as reply:
        next(reply.iter_raw())
        assert open_pushes(server) == before + 1
    gone = time.monotonic()
    eventually(lambda: open_pushes(server) == before, timeout=1.0, interval=0.02)
    assert time.monotonic() - gone < 1.0
    queries = server.ksql("SHOW QUERIES;")[0]["queries"]
    assert [q for q in queries if q["queryType"] == "PUSH"] == []


def test_push_queries_share_one_connection(server: Server, h2: httpx.Client) -> None:
    sql = "SELECT page FROM clicks WHERE user = 'hal' EMIT CHANGES LIMIT 1;"
    results: list[list[str]] = []

    def follow() -> None:
        with h2.stream("POST", "/query-stream", json={"sql": sql}) as reply:
            results.append(list(reply.iter_lines()))

    threads = [threading.Thread(target=follow) for _ in range(5)]
    for thread in threads:
        thread.start()
    eventually(lambda: open_pushes(server) == 5)
    insert(h2, "clicks", [{"user": "hal", "page": "home"}])
    for thread in threads:
        thread.join(10)
    assert sorted(r[1:] for r in results) == [['["home"]']] * 5


def test_clients_of_the_same_push_query_each_get_every_row_in_order(server: Server) -> None:
    sql = {"sql": "SELECT n FROM clicks WHERE user = 'ivy' EMIT CHANGES;"}
    with server.h2() as one_client, one_client.stream("POST", "/query-stream", json=sql) as one, \
            server.h2() as two_client, two_client.stream("POST", "/query-stream", json=sql) as two:
        ones, twos = one.iter_lines(), two.iter_lines()
        one_id, two_id = json.loads(next(ones))["queryId"], json.loads(next(twos))["queryId"]
        assert one_id != two_id
        with server.h2() as writer:
            for batch in range(3):
                insert(writer, "clicks", [{"user": "ivy", "n": batch * 10 + i} for i in range(10)])
        expected = [f"[{n}]" for n in range(30)]
        assert [next(ones) for _ in range(30)] == expected and [next(twos) for _ in range(30)] == expected
        assert two_client.post("/close-query", json={"queryId": one_id}).status_code == 200
        assert list(ones) == []  # the first one ended, the other goes on
        insert(two_client, "clicks", [{"user": "ivy", "n": 99}])
        assert next(twos) == "[99]"


def test_a_terminate_on_ksql_ends_a_push_query(server: Server, h2: httpx.Client) -> None:
    with h2.stream("POST", "/query-stream", json={"sql": "SELECT * FROM clicks EMIT CHANGES;"}) as reply:
        lines = reply.iter_lines()
        query_id = json.loads(next(lines))["queryId"]
        (entity,) = server.ksql(f"TERMINATE {query_id};")
        assert entity == {"@type": "terminate_query", "statementText": f"TERMINATE {query_id};",
                          "queryId": query_id, "wasTerminated": True, "warnings": []}
        assert list(lines) == []


# -- limits --------------------------------------------------------------------------------------------------


def test_push_queries_beyond_the_limit_are_refused(logs: Path) -> None:
    with running_server(logs, "--max-push-queries", "2") as server, server.h2() as client:
        sql = {"sql": "SELECT * FROM KSQL_PROCESSING_LOG EMIT CHANGES;"}
        with server.h2() as first, first.stream("POST", "/query-stream", json=sql) as one, \
                server.h2() as second, second.stream("POST", "/query-stream", json=sql) as two:
            next(one.iter_raw()), next(two.iter_raw())
            refused = client.post("/query-stream", json=sql)
            assert refused.status_code == 400
            assert refused.json() == {"@type": "generic_error", "error_code": 40003,
                                      "message": "Maximum number of push queries exceeded"}
        eventually(lambda: open_pushes(server) == 0)
        with client.stream("POST", "/query-stream", json=sql) as three:
            assert three.status_code == 200


def test_a_client_too_slow_to_keep_up_is_disconnected_and_the_others_go_on(logs: Path) -> None:
    with running_server(logs, "--push-buffer-rows", "100") as server:
        server.ksql("CREATE STREAM flood (k VARCHAR KEY, text VARCHAR) "
                    "WITH (KAFKA_TOPIC='flood', VALUE_FORMAT='JSON');")
        sql = json.dumps({"sql": "SELECT * FROM flood EMIT CHANGES;"}).encode()
        slow = RawH2(server, window=4096)  # takes 4 KiB, then never grants the server more
        slow_stream = slow.request("/query-stream", sql)
        slow.read(0.5, acknowledge=False)
        with server.h2() as fast_client, fast_client.stream("POST", "/query-stream", content=sql) as fast:
            fast_lines = fast.iter_lines()
            next(fast_lines)
            with server.h2() as writer:
                for batch in range(5):  # separate batches, each more rows than the slow client may have waiting
                    insert(writer, "flood", [{"k": f"k{batch}-{i}", "text": "x" * 200} for i in range(1000)])
                    received = [next(fast_lines) for _ in range(1000)]
                    assert json.loads(received[-1])[0] == f"k{batch}-999"
                    time.sleep(0.1)

            def overflowed() -> str | None:
                text = server.request("GET", "/metrics").body.decode()
                return text if 'disconnected_total{reason="overflow"} 1' in text else None

            metrics = eventually(overflowed)
            assert "\nnbstream_push_queries_open 1\n" in metrics  # the fast one goes on
        slow.read(3.0)  # once it reads again, it learns why it was cut off
        assert slow_stream in slow.ended
        assert b"fell behind" in slow.data[slow_stream] or len(slow.data[slow_stream]) < 300_000
        slow.close()


def test_a_push_query_whose_stream_is_reset_ends_and_the_connection_goes_on(server: Server) -> None:
    raw = RawH2(server)
    before = open_pushes(server)
    stream = raw.request("/query-stream", json.dumps({"sql": "SELECT * FROM clicks EMIT CHANGES;"}).encode())
    raw.read(0.5)
    assert raw.statuses[stream] == 200 and open_pushes(server) == before + 1
    raw.reset(stream)
    eventually(lambda: open_pushes(server) == before, timeout=1.0, interval=0.02)
    pull = raw.request("/query-stream", json.dumps({"sql": "SELECT * FROM per_user;"}).encode())
    raw.read(1.0)
    assert raw.statuses[pull] == 200 and pull in raw.ended
    raw.close()



def test_an_inserts_stream_into_an_unknown_target_is_answered_while_its_body_goes_on(server: Server) -> None:
    raw = RawH2(server)
    refused = raw.request("/inserts-stream", b'{"target": "NO_SUCH_STREAM"}\n', end=False)
    raw.read(1.0)
    assert raw.statuses.get(refused) == 400 and refused in raw.ended
    assert json.loads(raw.data[refused])["error_code"] == 40001
    raw.close()


def test_rows_sent_after_the_server_ended_an_inserts_stream_are_dropped_and_sigterm_still_exits_0(
        logs: Path) -> None:
    with running_server(logs) as server:
        server.ksql(SETUP)
        raw = RawH2(server)
        ended = raw.request("/inserts-stream", b'{"target": "CLICKS"}\n{"USER": "u", "N": "not a number"}\n',
                            end=False)
        raw.read(1.0)
        assert ended in raw.ended and b'"error_code":40000' in raw.data[ended]  # the client's side is still open
        raw.conn.send_data(ended, b'{"USER": "u", "PAGE": "late"}\n' * 100)
        raw._flush()
        pull = raw.request("/query-stream", json.dumps({"sql": "SELECT * FROM per_user;"}).encode())
        raw.read(1.0)
        assert raw.statuses.get(pull) == 200 and pull in raw.ended  # the connection goes on
        with pytest.raises(StreamClosedError):  # the server reset the stream (NO_ERROR)
            raw.conn.send_data(ended, b'{"USER": "u", "PAGE": "later"}\n')
        assert server.signal(signal.SIGTERM) == 0
        raw.close()
        assert "KeyError" not in server.output()
