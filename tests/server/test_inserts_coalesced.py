"""``/inserts-stream`` requests into one target share appends (:class:`nbstream.server.inserts.Appender`),
each told what became of its rows as if they had been appended alone."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from harness import Server, running_server

from nbstream.runtime.ingest import JsonRowsAppended
from nbstream.server.inserts import Appender


class _Service:
    """Appends every row up to the first holding ``bad`` (as ``insert_json_rows`` stops at a bad row)."""

    def __init__(self) -> None:
        self.appends: list[list[bytes]] = []

    def insert_json_rows(self, target: str, rows: list[bytes]) -> JsonRowsAppended:
        self.appends.append(list(rows))
        bad = next((i for i, row in enumerate(rows) if b"bad" in row), None)
        return JsonRowsAppended(len(rows)) if bad is None else JsonRowsAppended(bad, (bad, "a bad row"))


class _Server:
    def __init__(self) -> None:
        self.service = _Service()

    async def run_statement(self, work: Callable[..., Any], *args: Any) -> Any:
        return work(*args)


def test_rows_waiting_together_go_in_one_append_and_a_bad_row_stops_only_its_request() -> None:
    server = _Server()

    async def scenario() -> list[JsonRowsAppended]:
        appender = Appender(server, "T", linger=0.05)  # type: ignore[arg-type]
        first = asyncio.ensure_future(appender.append([b"a0"]))  # after a quiet spell: at once
        await asyncio.sleep(0)
        a = asyncio.ensure_future(appender.append([b"a1", b"bad", b"a3"]))  # these two wait for the linger
        b = asyncio.ensure_future(appender.append([b"b0", b"b1"]))
        return list(await asyncio.gather(first, a, b))

    started = time.monotonic()
    first, a, b = asyncio.run(scenario())
    assert server.service.appends == [[b"a0"], [b"a1", b"bad", b"a3", b"b0", b"b1"], [b"b0", b"b1"]]
    assert (first, a, b) == (JsonRowsAppended(1), JsonRowsAppended(1, (1, "a bad row")), JsonRowsAppended(2))
    assert time.monotonic() - started >= 0.1  # two lingers: appends start at most once per 50 ms


@pytest.fixture(scope="module")
def lingering(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose appends start at most every 300 ms, so that concurrent requests share them."""
    with running_server(tmp_path_factory.mktemp("server"), "--insert-linger-ms", "300") as running:
        running.ksql("CREATE STREAM taps (id VARCHAR KEY, n INT) WITH (KAFKA_TOPIC='taps', VALUE_FORMAT='JSON');")
        yield running


def test_concurrent_requests_each_get_the_acks_they_would_alone(lingering: Server) -> None:
    rows = {"a": [{"id": "a", "n": 0}, {"id": "a", "n": "many"}, {"id": "a", "n": 2}],
            "b": [{"id": "b", "n": n} for n in range(5)]}
    acks: dict[str, list[Any]] = {}

    def send(name: str) -> None:
        def body() -> Iterator[bytes]:
            yield b'{"target": "taps"}\n'
            for row in rows[name]:
                yield json.dumps(row).encode() + b"\n"
                time.sleep(0.05)

        with lingering.h2() as client, client.stream("POST", "/inserts-stream", content=body()) as reply:
            acks[name] = [json.loads(line) for line in reply.iter_lines() if line]

    threads = [threading.Thread(target=send, args=(name,)) for name in rows]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert acks["b"] == [{"status": "ok", "seq": n} for n in range(5)]
    assert acks["a"][0] == {"status": "ok", "seq": 0} and len(acks["a"]) == 2
    assert acks["a"][1]["seq"] == 1 and acks["a"][1]["status"] == "error"
    body = lingering.request("POST", "/query-stream", {"sql": "SELECT id, n FROM taps;"}).body
    stored = [json.loads(line) for line in body.split(b"\n")[1:] if line]
    assert [n for key, n in stored if key == "b"] == list(range(5))  # in order
    assert [n for key, n in stored if key == "a"] == [0]
