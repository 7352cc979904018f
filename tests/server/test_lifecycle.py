"""Stopping the server: SIGTERM ends every push query with a final message and commits the batch in
flight, then the process exits 0; SIGKILL loses no row the server acknowledged, on ``--state``."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import httpx
from harness import Server, eventually, running_server, start_server

DELIMITED, JSON, V1 = "application/vnd.ksqlapi.delimited.v1", "application/json", "application/vnd.ksql.v1+json"
EVENTS = """CREATE STREAM events (id VARCHAR KEY, n INT) WITH (KAFKA_TOPIC='events', VALUE_FORMAT='JSON', PARTITIONS=2);
CREATE STREAM evens AS SELECT * FROM events WHERE n % 2 = 0;"""


def insert(server: Server, rows: list[dict[str, object]]) -> list[dict[str, object]]:
    body = "\n".join(json.dumps(r) for r in [{"target": "events"}, *rows]) + "\n"
    with server.h2() as client:
        reply = client.post("/inserts-stream", content=body)
    return [json.loads(line) for line in reply.text.splitlines()]


def ids(server: Server, source: str) -> list[str]:
    body = server.request("POST", "/query-stream", {"sql": f"SELECT id FROM {source};"}).body
    return [json.loads(line)[0] for line in body.decode().splitlines()[1:]]


def follow(server: Server, accept: str, into: dict[str, bytearray]) -> threading.Thread:
    """A push client in a thread, gathering what it receives in ``into[accept]``."""
    into[accept] = bytearray()

    def run() -> None:
        with server.h2() as client, client.stream("POST", "/query-stream", headers={"Accept": accept},
                                                  json={"sql": "SELECT id, n FROM events EMIT CHANGES;"}) as reply:
            for chunk in reply.iter_raw():
                into[accept] += chunk

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_sigterm_ends_push_queries_with_a_final_message_commits_and_exits_0(logs: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    with running_server(logs, "--state", state) as server:
        server.ksql(EVENTS)
        received: dict[str, bytearray] = {}
        clients = [follow(server, accept, received) for accept in (DELIMITED, JSON, V1)]
        eventually(lambda: b"nbstream_push_queries_open 3\n" in server.request("GET", "/metrics").body)
        acks = insert(server, [{"id": f"e{i}", "n": i} for i in range(100)])
        assert len(acks) == 100
        eventually(lambda: all(b'"e99"' in rows for rows in received.values()))
        insert(server, [{"id": f"late{i}", "n": i} for i in range(1000)])  # a batch in flight, maybe
        assert server.signal(signal.SIGTERM) == 0
        for client in clients:
            client.join(10)
    shutting_down = b'{"@type":"generic_error","error_code":50303,"message":"The server is shutting down"}'
    assert received[DELIMITED].endswith(b"\n" + shutting_down + b"\n")
    assert received[JSON].endswith(b"," + shutting_down + b"]")
    assert received[V1].endswith(b',\n{"errorMessage":' + shutting_down + b"}]")
    for accept in (DELIMITED, JSON, V1):
        assert received[accept].count(b'"e99"') == 1, accept

    with running_server(logs, "--state", state) as again:  # what was acknowledged and committed is there
        stored = ids(again, "events")
        assert sorted(stored) == sorted([f"e{i}" for i in range(100)] + [f"late{i}" for i in range(1000)])
        expected = sorted(i for i in stored if int(i.lstrip("elat")) % 2 == 0)
        eventually(lambda: sorted(ids(again, "evens")) == expected)


def test_sigkill_loses_no_acknowledged_row(logs: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    server = start_server(logs, "--state", state)
    server.ksql(EVENTS)
    acknowledged: list[str] = []
    stop = threading.Event()

    def write() -> None:  # a client inserting batch after batch until the server dies under it
        batch = 0
        while not stop.is_set():
            rows = [{"id": f"b{batch}-{i}", "n": i} for i in range(50)]
            try:
                acks = insert(server, rows)
            except httpx.HTTPError:
                return
            acknowledged.extend(str(rows[a["seq"]]["id"]) for a in acks if a.get("status") == "ok")
            batch += 1

    writer = threading.Thread(target=write)
    writer.start()
    eventually(lambda: len(acknowledged) >= 1000, timeout=30)
    server.process.kill()  # kill -9, while inserts go on
    server.process.wait(10)
    stop.set()
    writer.join(10)

    with running_server(logs, "--state", state) as again:
        stored = ids(again, "events")
        assert set(acknowledged) <= set(stored), f"{len(set(acknowledged) - set(stored))} acknowledged rows lost"
        assert len(stored) == len(set(stored)), "a row was stored twice"
        expected = sorted(i for i in stored if int(i.rsplit("-", 1)[1]) % 2 == 0)
        eventually(lambda: sorted(ids(again, "evens")) == expected, timeout=30)  # the query resumed exactly
