"""Bad input never crashes the server nor loses committed data: seeded random requests to every
endpoint (invalid JSON, wrong types, huge and deeply nested bodies, random SQL), connections opened
and dropped by the thousand, requests and HTTP/2 streams cut off half way — all on loopback,
bounded in count and time. Afterwards the server answers, and every acknowledged row is there."""

from __future__ import annotations

import contextlib
import functools
import json
import random
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from harness import RawH2, Server, eventually, running_server

SEED = 20261206
PATHS = ["/ksql", "/query", "/query-stream", "/close-query", "/inserts-stream", "/info", "/healthcheck",
         "/metrics", "/", "/chc/ready", "/status", "/ksql/terminate", "/query-stream/../ksql", "/%00"]
WORDS = ["SELECT", "*", "FROM", "fuzz", "WHERE", "id", "=", "'x'", "EMIT", "CHANGES", "LIMIT", "1", ";", "CREATE",
         "STREAM", "TABLE", "(", ")", "WITH", "KAFKA_TOPIC", "DROP", "INSERT", "INTO", "VALUES", ",", "GROUP",
         "BY", "COUNT", "'", "`", "\\", "\u0000", "é", "--", "/*", "PRINT", "TERMINATE", "ALL", "SET", "'a'='b'"]


def random_body(rng: random.Random) -> bytes:
    """One of the kinds of bodies a broken or hostile client sends."""
    kind = rng.randrange(10)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 2000))
    if kind == 1:
        return json.dumps({"ksql": random_sql(rng)}).encode()[: rng.randrange(1, 60)]  # cut short
    if kind == 2:
        return json.dumps({rng.choice(["ksql", "sql", "queryId", "target"]): rng.choice(
            [5, None, True, [1, "a"], {"x": {}}, -1e308, "", "x" * 10_000])}).encode()
    if kind == 3:
        return b"[" * 100_000 + b"]" * 100_000  # deeper than any parser recursion
    if kind == 4:
        return b'{"ksql": "' + b"SHOW STREAMS; " * 200_000 + b'"}'  # over the body limit
    if kind == 5:
        properties = rng.choice([{}, {"auto.offset.reset": 3}, []])
        return json.dumps({"sql": random_sql(rng), "properties": properties}).encode()
    if kind == 6:
        return json.dumps({"ksql": random_sql(rng), "streamsProperties": {"x": [1]}, "sessionVariables": 1}).encode()
    if kind == 7:
        return b'{"target": "fuzz"}\n' + b"\n".join(rng.choice([b"{}", b"{", b'{"ID": 1}', b"null", b"[1]",
                                                               rng.randbytes(20)]) for _ in range(20))
    if kind == 8:
        return json.dumps({"ksql": "SELECT * FROM fuzz EMIT CHANGES LIMIT 1;"}).encode()
    return "\ufffe\ud7ff".encode() + json.dumps({"ksql": random_sql(rng)}).encode()


def random_sql(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 25)))


def raw(server: Server, data: bytes, *, read: bool = False) -> None:
    """Send ``data`` on a connection of its own and drop it (reading the answer first if ``read``)."""
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        if data:
            sock.sendall(data)
        if read:
            sock.settimeout(1)
            with contextlib.suppress(TimeoutError, ConnectionError):
                sock.recv(4096)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Server:
    folder = tmp_path_factory.mktemp("fuzz")
    with running_server(folder / "logs", "--state", str(folder / "state")) as server:
        server.ksql("CREATE STREAM fuzz (id VARCHAR KEY, n INT) WITH (KAFKA_TOPIC='fuzz', VALUE_FORMAT='JSON');")
        with server.h2() as client:
            body = '{"target": "fuzz"}\n' + "\n".join(json.dumps({"id": f"k{i}", "n": i}) for i in range(500))
            acks = client.post("/inserts-stream", content=body).text.splitlines()
        assert len(acks) == 500
        yield server  # type: ignore[misc]


def test_random_requests_get_answers_never_a_server_error(fuzzed: Server) -> None:
    rng = random.Random(SEED)
    statuses = []
    for _ in range(1000):
        method = rng.choice(["POST", "POST", "GET", "PUT", "DELETE"])
        headers = rng.choice([{}, {"Accept": "text/html"}, {"Accept": rng.choice(["*/*", "application/json;q=0"])},
                              {"Content-Type": "x"}, {"Authorization": "Basic " + "A" * 300}])
        reply = fuzzed.request(method, rng.choice(PATHS), random_body(rng), headers, timeout=30)
        statuses.append(reply.status)
        assert reply.status < 500, (reply.status, reply.body[:300])
        if reply.status >= 400 and reply.body:
            error = reply.json()
            assert error["@type"] in ("generic_error", "statement_error") and error["error_code"] // 100 == reply.status
    assert {400, 404, 413} <= set(statuses)


def test_thousands_of_connections_opened_and_dropped(fuzzed: Server) -> None:
    fragments: list[bytes] = [b"", b"POST /ksql HTTP/1.1\r\n", b"GET /info HTTP/1.1\r\nHost: x\r\nContent-Le",
                              b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 50,
                              b"POST /ksql HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n{\"ksql\":",
                              b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"GET / HTTP/9.9\r\n\r\n"]
    answered = {fragments[-1], fragments[-2]}  # the server answers these (or closes) at once
    work: list[Callable[[], None]] = [
        functools.partial(raw, fuzzed, data, read=data in answered)
        for data in (fragments[i % len(fragments)] for i in range(2000))]
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        for future in [pool.submit(job) for job in work]:
            with contextlib.suppress(OSError):  # a connection the server closed first
                future.result()
    assert time.monotonic() - started < 120
    assert fuzzed.request("GET", "/healthcheck").status == 200


def test_streams_cut_off_half_way(fuzzed: Server) -> None:
    for i in range(20):
        connection = RawH2(fuzzed)
        push = connection.request("/query-stream", json.dumps({"sql": "SELECT * FROM fuzz EMIT CHANGES;"}).encode())
        inserts = connection.request("/inserts-stream", b'{"target": "fuzz"}\n{"id": "half", "n"', end=False)
        unfinished = connection.request("/ksql", b'{"ksql": "SHOW', end=False)
        connection.read(0.05)
        if i % 2:
            for stream in (push, inserts, unfinished):
                connection.reset(stream)
        connection.close()  # mid-request, mid-stream
    eventually(lambda: b"\nnbstream_push_queries_open 0\n" in fuzzed.request("GET", "/metrics").body)


def test_after_the_fuzz_the_server_answers_and_nothing_committed_is_lost(fuzzed: Server, tmp_path: Path) -> None:
    assert fuzzed.process.poll() is None
    assert fuzzed.request("GET", "/healthcheck").json()["isHealthy"] is True
    body = fuzzed.request("POST", "/query-stream", {"sql": "SELECT id FROM fuzz;"}).body
    stored = {json.loads(line)[0] for line in body.decode().splitlines()[1:]}
    assert {f"k{i}" for i in range(500)} <= stored
    assert "Traceback" not in fuzzed.output()
