"""``nbstream serve`` under load on loopback: pull point lookups, then push queries on a busy stream.

The server and the load generator share the machine (2 cores where the figures in the README were
taken), so the load generator is lean: raw keep-alive HTTP/1.1 sockets driven by ``selectors``,
in processes of their own, and an HTTP/2 producer (the ``h2`` library over a socket) for
``/inserts-stream``. Every answer is checked as well as timed.

1. **Pull point lookups**: a table of ``--keys`` rows; ``--pull-processes`` processes, each with
   ``--connections`` keep-alive connections, each connection asking ``/query-stream`` for one random
   key after another for ``--pull-seconds``: first as fast as the server answers (its capacity, where
   every lookup queues behind the others in flight), then at ``--pull-rate`` lookups/s offered on a
   fixed schedule (the p99 target's round: latency counts from when a lookup was due). Prints
   requests/s, p50/p99/max latency, the server's CPU per request, and checks that every answer is
   the row of the key asked.
2. **Push queries**: ``--push-clients`` clients each run ``SELECT * FROM events EMIT CHANGES`` while
   a producer inserts ``--rate`` rows/s for ``--push-seconds``, each row numbered and stamped with
   the time it was sent. Every client must receive every row, in order; prints the delivery latency
   (received - sent) p50/p99/max over all rows of all clients, and the server's RSS sampled every
   ``--rss-every`` seconds (first, last, min, max).

Both print the load average (``/proc/loadavg``) during the run: other work on the machine shows.
At the end, the figures issue 10 sets as targets, each beside its target and as a ratio to it
(>= 1.00: met), all from this one run: pull requests/s as fast as answered (>= 1,000), pull p99
at 1,000 lookups/s offered (<= 10 ms), push
clients receiving every row in order (all), push p99 delivery latency (<= 100 ms), and the
server's mean RSS over the push run's last minute over its mean over the second (flat: <= 1.1) — and the
same ratio less what DuckDB holds of tables' rows (``nbstream_duckdb_memory_bytes`` in ``/metrics``):
the stream's log keeps ``--retention-ms`` of events (a minute by default, as a Kafka topic keeps its
``retention.ms``). With ``--retention-ms=-1`` it keeps every event, and DuckDB keeps the stored blocks
it wrote in its cache until its memory limit (``nbstream.duckdb.memory.limit``) makes it evict them:
the RSS then grows with the log.

    python benchmarks/bench_server.py                       # both, push for 5 minutes
    python benchmarks/bench_server.py --push-seconds 30     # a quicker look
    python benchmarks/bench_server.py --only pull
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from _common import percentile

HOST = "127.0.0.1"


# -- the server -----------------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


@contextmanager
def server(state: Path, options: list[str]) -> Iterator[Server]:
    """``nbstream serve --state STATE OPTIONS…`` on a free loopback port until the block ends (then SIGTERM)."""
    command = [sys.executable, "-m", "nbstream.server", "--listen", f"{HOST}:0", "--state", str(state), *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        match = re.search(r"listening on \S+:(\d+)", line)
        if match is None:
            raise RuntimeError(f"the server did not start: {line}{process.stdout.read().decode()}")
        running = Server(process, int(match.group(1)))
        _wait_ready(running)
        yield running
    finally:
        process.terminate()
        process.wait(30)


def _wait_ready(running: Server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if Http(running.port).request("GET", "/chc/ready")[0] == 200:
                return
        time.sleep(0.05)
    raise RuntimeError("the server was not ready within 60 s")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- HTTP/1.1, lean -------------------------------------------------------------------------------------


class Http:
    """One keep-alive HTTP/1.1 connection, blocking (for setting up; the load uses :class:`Conn`)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def request(self, method: str, path: str, body: bytes = b"", accept: str = "application/json") -> tuple[int, bytes]:
        self.sock.sendall(request_bytes(method, path, body, accept))
        while True:
            parsed = parse_response(self.buffer)
            if parsed is not None:
                status, payload, used = parsed
                self.buffer = self.buffer[used:]
                return status, payload
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk


def request_bytes(method: str, path: str, body: bytes, accept: str = "application/json") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nAccept: {accept}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def parse_response(data: bytes) -> tuple[int, bytes, int] | None:
    """``(status, body, bytes used)`` of the first whole response in ``data`` (a Content-Length or a
    chunked body), or None while it is incomplete."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[:end].lower()
    status = int(head[9:12])
    length = re.search(rb"\r\ncontent-length: *(\d+)", head)
    if length is not None:
        stop = end + 4 + int(length.group(1))
        return (status, data[end + 4:stop], stop) if len(data) >= stop else None
    body: list[bytes] = []
    at = end + 4
    while True:  # chunked
        line_end = data.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(data[at:line_end], 16)
        if len(data) < line_end + 2 + size + 2:
            return None
        if size == 0:
            return status, b"".join(body), line_end + 4
        body.append(data[line_end + 2:line_end + 2 + size])
        at = line_end + 2 + size + 2


# -- setting up ----------------------------------------------------------------------------------------


def ksql(port: int, statements: str) -> None:
    status, body = Http(port).request("POST", "/ksql", orjson.dumps({"ksql": statements}))
    if status != 200:
        raise RuntimeError(f"/ksql failed: {body.decode()}")


def insert(port: int, target: str, rows: Iterator[dict[str, object]], per_second: float | None = None,
           group: int = 100) -> int:
    """Insert ``rows`` into ``target`` over HTTP/2 ``/inserts-stream``, ``group`` rows per DATA frame,
    paced to ``per_second`` rows/s if given; each row gets ``SENT`` (µs since the epoch) if it has
    that key. Returns the rows acknowledged."""
    import h2.config
    import h2.connection
    import h2.events

    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.increment_flow_control_window(1 << 30)
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [(":method", "POST"), (":path", "/inserts-stream"), (":scheme", "http"),
                               (":authority", f"{HOST}:{port}")])
    conn.send_data(stream, orjson.dumps({"target": target}) + b"\n")
    sock.sendall(conn.data_to_send())
    acked, started, sent = 0, time.monotonic(), 0
    batch: list[bytes] = []
    for row in rows:
        if "SENT" in row:
            row["SENT"] = int(time.time() * 1e6)
        batch.append(orjson.dumps(row))
        if len(batch) == group:
            sent += len(batch)
            acked += _send_rows(conn, sock, stream, batch)
            batch = []
            if per_second:
                pause = started + sent / per_second - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
    if batch:
        acked += _send_rows(conn, sock, stream, batch)
    conn.end_stream(stream)
    sock.sendall(conn.data_to_send())
    ended = False
    while not ended:
        for event in conn.receive_data(sock.recv(1 << 16)):
            if isinstance(event, h2.events.DataReceived):
                acked += _count_acks(conn, event.data)
                conn.acknowledge_received_data(event.flow_controlled_length, stream)
            ended = ended or isinstance(event, h2.events.StreamEnded | h2.events.StreamReset)
        sock.sendall(conn.data_to_send())
    sock.close()
    return acked


def _send_rows(conn: Any, sock: socket.socket, stream: int, batch: list[bytes]) -> int:
    """Send one group of rows, in frames the server takes (waiting for its flow-control window);
    returns the acks read meanwhile."""
    data = b"\n".join(batch) + b"\n"
    acked = 0
    while data:
        size = min(len(data), conn.max_outbound_frame_size)
        while conn.local_flow_control_window(stream) < size:
            acked += _take_acks(conn, sock, stream, block=True)
        conn.send_data(stream, data[:size])
        data = data[size:]
        sock.sendall(conn.data_to_send())
    return acked + _take_acks(conn, sock, stream, block=False)


def _count_acks(conn: Any, data: bytes) -> int:
    """The ``ok`` acks among the complete lines received so far (a line may span DATA frames)."""
    pending = getattr(conn, "pending_acks", b"") + data
    complete, _, conn.pending_acks = pending.rpartition(b"\n")
    return complete.count(b'"status":"ok"')


def _take_acks(conn: Any, sock: socket.socket, stream: int, *, block: bool) -> int:
    """Read what the server sent (waiting for it if ``block``); the rows it acknowledged."""
    import h2.events

    acked = 0
    sock.setblocking(block)
    try:
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the server closed the inserts stream")
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.DataReceived):
                    acked += _count_acks(conn, event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
            sock.sendall(conn.data_to_send())
            if block:
                break
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
    return acked


# -- 1. pull point lookups ------------------------------------------------------------------------------


def pull_worker(port: int, connections: int, keys: int, seconds: float, seed: int, rate: float,
                out: multiprocessing.queues.Queue) -> None:  # type: ignore[name-defined]
    """One load process: ``connections`` keep-alive connections, one lookup in flight on each.

    ``rate`` 0: each connection asks again as soon as it is answered (a closed loop: the server's
    capacity). Otherwise the process offers ``rate`` lookups/s, each connection on a fixed schedule,
    and a lookup's latency counts from when it was due, not from when it could be sent: a late
    answer delays the lookups after it, and that wait is counted (no coordinated omission)."""
    rng = random.Random(seed)
    selector = selectors.DefaultSelector()
    interval = connections / rate if rate else 0.0
    latencies: list[float] = []
    wrong = 0
    idle: list[_Lookup] = []
    began = time.perf_counter()
    for i in range(connections):
        sock = socket.create_connection((HOST, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        state = _Lookup(sock, rng.randrange(keys), due=began + i * interval / connections)
        selector.register(sock, selectors.EVENT_READ, state)
        idle.append(state)
    deadline = began + seconds
    while time.perf_counter() < deadline:
        now = time.perf_counter()
        for state in [s for s in idle if s.due <= now]:
            idle.remove(state)
            state.send()
        wake = min((s.due for s in idle), default=now + 1.0)
        for key, _ in selector.select(max(0.0, min(wake - time.perf_counter(), 1.0))):
            state = key.data
            chunk = state.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError(f"the server closed a pull connection: {state.buffer[:300]!r}")
            state.buffer += chunk
            parsed = parse_response(state.buffer)
            if parsed is None:
                continue
            status, body, used = parsed
            answered = time.perf_counter()
            latencies.append(answered - (state.due if interval else state.sent_at))
            wrong += status != 200 or state.expected not in body
            state.buffer = state.buffer[used:]
            state.key = rng.randrange(keys)
            state.due = state.due + interval if interval else answered
            idle.append(state)
    out.put((latencies, wrong))


class _Lookup:
    """A connection, the lookup in flight on it, and when its next one is due."""

    def __init__(self, sock: socket.socket, key: int, due: float) -> None:
        self.sock, self.key, self.buffer, self.sent_at, self.due = sock, key, b"", 0.0, due

    @property
    def expected(self) -> bytes:
        return b'"name-%d"' % self.key

    def send(self) -> None:
        body = b'{"sql":"SELECT * FROM users WHERE id = \'k%d\';"}' % self.key
        self.sent_at = time.perf_counter()
        self.sock.sendall(request_bytes("POST", "/query-stream", body))


def run_pull(port: int, running: Server, args: argparse.Namespace) -> dict[str, float]:
    print(f"loading {args.keys:,} users …", flush=True)
    ksql(port, "CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR, level INT) "
               "WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON', PARTITIONS=1);")
    loaded = insert(port, "users", ({"ID": f"k{i}", "NAME": f"name-{i}", "LEVEL": i % 10} for i in range(args.keys)),
                    group=1000)
    assert loaded == args.keys, f"{loaded} of {args.keys} rows acknowledged"
    _wait_for_key(port, args.keys - 1)
    pull_round(port, running, args, seconds=min(3.0, args.pull_seconds), rate=0, quiet=True)  # warm the plan and caches
    capacity = pull_round(port, running, args, seconds=args.pull_seconds, rate=0, quiet=False)
    rated = pull_round(port, running, args, seconds=args.pull_seconds, rate=args.pull_rate, quiet=False)
    return {"pull_rps": capacity["rps"], "pull_p99_ms": rated["p99_ms"]}


def _wait_for_key(port: int, key: int) -> None:
    http = Http(port)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        _, body = http.request("POST", "/query-stream", b'{"sql":"SELECT * FROM users WHERE id = \'k%d\';"}' % key)
        if b"name-%d" % key in body:
            return
        time.sleep(0.1)
    raise RuntimeError("the table did not take the rows within 120 s")


def pull_round(port: int, running: Server, args: argparse.Namespace, seconds: float, rate: float,
               quiet: bool) -> dict[str, float]:
    """Lookups for ``seconds``: as fast as answered (``rate`` 0), or ``rate`` lookups/s offered."""
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    workers = [multiprocessing.Process(target=pull_worker, args=(port, args.connections, args.keys, seconds, seed,
                                                                 rate / args.pull_processes, out))
               for seed in range(args.pull_processes)]
    cpu_before, started = running.cpu_seconds(), time.monotonic()
    for worker in workers:
        worker.start()
    results = [out.get() for _ in workers]
    elapsed = time.monotonic() - started
    cpu = running.cpu_seconds() - cpu_before
    for worker in workers:
        worker.join()
    if quiet:
        return {}
    latencies = [x for lat, _ in results for x in lat]
    wrong = sum(w for _, w in results)
    count = len(latencies)
    how = f"{rate:,.0f}/s offered (latency from when each was due)" if rate else "as fast as answered"
    print(f"pull point lookups, {how}: {count / seconds:,.0f} requests/s over {args.pull_processes * args.connections} "
          f"keep-alive connections ({args.pull_processes} processes), {count:,} in {seconds:.0f} s; latency "
          f"p50 {percentile(latencies, 0.5) * 1e3:.2f} ms, p99 {percentile(latencies, 0.99) * 1e3:.2f} ms, "
          f"max {max(latencies) * 1e3:.1f} ms; server CPU {cpu / count * 1e3:.2f} ms per request "
          f"({cpu / elapsed:.0%} of a core); wrong answers: {wrong}; load average {loadavg()}", flush=True)
    assert wrong == 0, f"{wrong} lookups answered with another row"
    return {"rps": count / seconds, "p99_ms": percentile(latencies, 0.99) * 1e3}


# -- 2. push queries ------------------------------------------------------------------------------------


PUSH_SQL = b'{"sql":"SELECT * FROM events EMIT CHANGES;"}'


class _Follower:
    """One push query's connection: its chunked body, rows parsed as they come."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(request_bytes("POST", "/query-stream", PUSH_SQL, "application/vnd.ksqlapi.delimited.v1"))
        self.raw = b""
        self.lines = b""
        self.headed = False  # the HTTP response's head was read
        self.saw_header = False  # the query's header line was
        self.next_seq = 0
        self.errors: list[str] = []
        self.latencies: list[np.ndarray] = []
        self.sent: list[np.ndarray] = []  # µs since the epoch, beside each latency

    def take(self, chunk: bytes, now_us: int) -> None:
        """Decode the chunked transfer, then the rows: every SEQ must be the next one."""
        self.raw += chunk
        if not self.headed:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            self.raw, self.headed = self.raw[end + 4:], True
        data = []
        while True:
            line_end = self.raw.find(b"\r\n")
            if line_end < 0:
                break
            size = int(self.raw[:line_end], 16)
            if len(self.raw) < line_end + 4 + size:
                break
            data.append(self.raw[line_end + 2:line_end + 2 + size])
            self.raw = self.raw[line_end + 4 + size:]
        self.lines += b"".join(data)
        complete, _, self.lines = self.lines.rpartition(b"\n")
        if complete:
            self._rows(complete, now_us)

    def _rows(self, complete: bytes, now_us: int) -> None:
        lines = complete.split(b"\n")
        if not self.saw_header and lines and lines[0].startswith(b"{"):  # the query's header
            self.saw_header, lines = True, lines[1:]
        if not lines:
            return
        rows = orjson.loads(b"[" + b",".join(lines) + b"]")
        if rows and isinstance(rows[-1], dict):  # an in-band error ends the query
            self.errors.append(json.dumps(rows[-1]))
            rows = rows[:-1]
        if not rows:
            return
        values = np.array([(r[1], r[2]) for r in rows], dtype=np.int64)
        expected = np.arange(self.next_seq, self.next_seq + len(rows))
        if not np.array_equal(values[:, 0], expected):
            self.errors.append(f"rows out of order or missing near seq {self.next_seq}")
        self.next_seq = int(values[-1, 0]) + 1
        self.latencies.append((now_us - values[:, 1]) / 1000.0)
        self.sent.append(values[:, 1])


def push_followers(port: int, clients: int, total: int, seconds: float, ready: object, out: object) -> None:
    """One process following ``clients`` push queries, from when all started until each received
    ``total`` rows (or ``seconds`` passed)."""
    followers = [_Follower(port) for _ in range(clients)]
    selector = selectors.DefaultSelector()
    for follower in followers:
        follower.sock.setblocking(False)
        selector.register(follower.sock, selectors.EVENT_READ, follower)
    while not all(f.saw_header for f in followers):
        _read(selector, 0.1)
    ready.put(True)  # type: ignore[attr-defined]
    started, cpu = time.monotonic(), time.process_time()
    while time.monotonic() < started + seconds and any(f.next_seq < total and not f.errors for f in followers):
        _read(selector, 0.5)
    share = (time.process_time() - cpu) / (time.monotonic() - started)
    out.put([(f.next_seq, f.errors, _joined(f.latencies), share, _joined(f.sent))  # type: ignore[attr-defined]
             for f in followers])


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0)


def _read(selector: selectors.BaseSelector, timeout: float) -> None:
    for key, _ in selector.select(timeout):
        follower: _Follower = key.data
        chunk = follower.sock.recv(1 << 20)
        if chunk:
            follower.take(chunk, int(time.time() * 1e6))


def run_push(port: int, running: Server, args: argparse.Namespace) -> dict[str, float]:
    ksql(port, "CREATE STREAM events (id VARCHAR KEY, seq BIGINT, sent BIGINT) "
               f"WITH (KAFKA_TOPIC='events', VALUE_FORMAT='JSON', PARTITIONS=1, RETENTION_MS={args.retention_ms});")
    ready, out = multiprocessing.Queue(), multiprocessing.Queue()  # type: ignore[var-annotated]
    split = [args.push_clients // args.push_processes + (i < args.push_clients % args.push_processes)
             for i in range(args.push_processes)]
    total = int(args.rate * args.push_seconds)
    readers = [multiprocessing.Process(target=push_followers, args=(port, n, total, args.push_seconds + 60, ready, out))
               for n in split]
    for reader in readers:
        reader.start()
    for _ in readers:
        ready.get(timeout=60)
    producer = multiprocessing.Process(target=_produce, args=(port, total, args.rate))
    rss, loads = [], []
    producer.start()
    started, cpu = time.monotonic(), running.cpu_seconds()
    while producer.is_alive():
        rss.append((time.monotonic() - started, running.rss_mb(), duckdb_table_mb(port)))
        loads.append(loadavg())
        producer.join(args.rss_every)
    server_cpu = running.cpu_seconds() - cpu
    server_share = server_cpu / (time.monotonic() - started)
    batches = [out.get(timeout=args.push_seconds + 120) for _ in readers]
    for reader in readers:
        reader.join()
    readers_share = sum(batch[0][3] for batch in batches)
    print(f"CPU: server {server_share:.0%} of a core ({server_cpu / total * 1e6:.0f} µs per row inserted and sent "
          f"to {args.push_clients} clients), push clients {readers_share:.0%}", flush=True)
    rows = [r for batch in batches for r in batch]
    _report_slow_seconds(np.concatenate([r[4] for r in rows]), np.concatenate([r[2] for r in rows]))
    return _report_push([r[:3] for r in rows], total, rss, loads, args)


def _report_slow_seconds(sent_us: np.ndarray, latencies: np.ndarray, worst: int = 8) -> None:
    """When the slow deliveries happened: the seconds of the run (by sending time) whose slowest
    row took over 100 ms, the worst first — a stall shows as a run of consecutive seconds."""
    if not len(sent_us):
        return
    second = ((sent_us - sent_us.min()) // 1_000_000).astype(np.int64)
    slowest = np.full(second.max() + 1, 0.0)
    np.maximum.at(slowest, second, latencies)
    slow = np.flatnonzero(slowest > 100)
    order = slow[np.argsort(-slowest[slow])][:worst]
    print(f"push: {len(slow)} of {len(slowest)} seconds had a row slower than 100 ms; worst (second: max ms): "
          + ", ".join(f"{s}: {slowest[s]:.0f}" for s in sorted(order)), flush=True)


def _produce(port: int, total: int, rate: float) -> None:
    rows = ({"ID": f"e{i % 100}", "SEQ": i, "SENT": 0} for i in range(total))
    acked = insert(port, "events", rows, per_second=rate, group=max(1, int(rate / 100)))  # a group every 10 ms
    assert acked == total, f"{acked} of {total} events acknowledged"


#: The tags of ``nbstream_duckdb_memory_bytes`` that hold a table's rows: DuckDB's cache of stored
#: blocks (it keeps them until its memory limit) and rows not checkpointed yet.
TABLE_TAGS = ("BASE_TABLE", "IN_MEMORY_TABLE")


def duckdb_table_mb(port: int) -> float:
    """What DuckDB holds of tables' rows now, from the server's ``/metrics``."""
    _, text = Http(port).request("GET", "/metrics")
    found = re.findall(rb'^nbstream_duckdb_memory_bytes\{tag="(\w+)"\} (\d+)$', text, re.MULTILINE)
    return sum(int(used) for tag, used in found if tag.decode() in TABLE_TAGS) / 2**20


def _report_push(results: list[tuple[int, list[str], np.ndarray]], total: int, rss: list[tuple[float, float, float]],
                 loads: list[str], args: argparse.Namespace) -> dict[str, float]:
    complete = sum(1 for seq, errors, _ in results if seq == total and not errors)
    latencies = np.concatenate([lat for _, _, lat in results])
    values = [mb for _, mb, _ in rss]
    besides = [(t, mb - tables) for t, mb, tables in rss]
    p50, p99 = np.percentile(latencies, [50, 99])
    print(f"push: {len(results)} clients, {total:,} events at {args.rate:,.0f}/s for {args.push_seconds:.0f} s; "
          f"{complete} of {len(results)} clients received every row in order; delivery latency over "
          f"{len(latencies):,} rows: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies.max():.1f} ms")
    print(f"server RSS (MB) every {args.rss_every:.0f} s: first {values[0]:.0f}, last {values[-1]:.0f}, "
          f"min {min(values):.0f}, max {max(values):.0f}; samples {[round(v) for v in values]}")
    print(f"  of which DuckDB's table data (stored blocks it caches, rows not checkpointed): "
          f"{[round(tables) for _, _, tables in rss]}; the rest: {[round(mb) for _, mb in besides]}")
    print(f"load average during the run (1/5/15 min): first {loads[0]}, last {loads[-1]}")
    for seq, errors, _ in results:
        if seq != total or errors:
            print(f"  a client stopped at seq {seq}: {errors[:3]}")
    return {"push_complete": complete / len(results), "push_p99_ms": float(p99),
            "rss_growth": _rss_growth([(t, mb) for t, mb, _ in rss], args.push_seconds),
            "rss_growth_besides_tables": _rss_growth(besides, args.push_seconds)}


def _rss_growth(rss: list[tuple[float, float]], seconds: float) -> float:
    """The mean RSS over the run's last minute over its mean over the minute after the first (a
    third of the run, if shorter): buffers and caches fill at first, and "flat" is about what comes
    after. Means of a minute, not single samples: each DuckDB checkpoint (about one a minute here)
    turns the rows held since the last one into compressed blocks, so the RSS is a sawtooth, and a
    sample's value depends on where in a tooth it falls."""
    span = min(60.0, seconds / 3)
    warm = [mb for t, mb in rss if span <= t < 2 * span]
    last = [mb for t, mb in rss if t >= seconds - span]
    return float(np.mean(last) / np.mean(warm)) if warm and last else float("nan")


#: Issue 10's targets: (figure, what it is, target, whether more is better).
TARGETS = (
    ("pull_rps", "pull point lookups as fast as answered, requests/s", 1000.0, True),
    ("pull_p99_ms", "pull point lookups at 1,000/s offered (--pull-rate), p99 latency (ms)", 10.0, False),
    ("push_complete", "push clients receiving every row in order (share)", 1.0, True),
    ("push_p99_ms", "push delivery latency, p99 (ms)", 100.0, False),
    ("rss_growth", "server RSS, mean over the push run's last minute / over its second (flat: within 10%)", 1.1,
     False),
    ("rss_growth_besides_tables", "the same, less DuckDB's table data (cache of stored blocks, rows not "
                                  "checkpointed)", 1.1, False),
)


def report_targets(figures: dict[str, float]) -> None:
    """Each figure measured in this run beside issue 10's target, as a ratio to it (>= 1: met)."""
    print(f"issue 10's targets, from this run (ratio >= 1.00: met); load average now {loadavg()}")
    for name, what, target, more_is_better in TARGETS:
        if name not in figures:
            continue
        value = figures[name]
        ratio = value / target if more_is_better else (target / value if value else float("inf"))
        bound = ">=" if more_is_better else "<="
        print(f"  {what}: {value:,.2f} (target {bound} {target:,.4g}): ratio {ratio:.2f}"
              f"{'' if ratio >= 1 else '  NOT MET'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("pull", "push"))
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--pull-seconds", type=float, default=20)
    parser.add_argument("--pull-rate", type=float, default=1_000,
                        help="lookups/s offered in the round the p99 target is read from")
    parser.add_argument("--pull-processes", type=int, default=2)
    parser.add_argument("--connections", type=int, default=4, help="keep-alive connections per pull process")
    parser.add_argument("--push-clients", type=int, default=50)
    parser.add_argument("--push-processes", type=int, default=1)
    parser.add_argument("--rate", type=float, default=10_000, help="events/s inserted during the push run")
    parser.add_argument("--push-seconds", type=float, default=300)
    parser.add_argument("--rss-every", type=float, default=10)
    parser.add_argument("--retention-ms", type=int, default=60_000,
                        help="RETENTION_MS of the push run's stream (-1: keep every event)")
    parser.add_argument("--server-option", action="append", default=[], metavar="OPTION",
                        help="passed to nbstream serve, e.g. --server-option=--insert-linger-ms=10")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; load average before: {loadavg()}", flush=True)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder, server(Path(folder) / "state", args.server_option) as running:
        if args.only != "push":
            figures.update(run_pull(running.port, running, args))
        if args.only != "pull":
            figures.update(run_push(running.port, running, args))
    report_targets(figures)


if __name__ == "__main__":
    main()
