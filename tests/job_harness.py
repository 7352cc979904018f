"""Exported jobs under test: ``nbstream run`` as a real process on a free loopback port, spoken to
over HTTP as any client would, its state read back afterwards; ksqlDB's grammar checker from
``../shared/ksql-grammar``; and a reference engine running a notebook's statements the way the
notebook's engine does, on exactly the records the job read."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
from server.harness import eventually

from nbstream.log.base import RECORD_SCHEMA
from nbstream.runtime.engine import Engine
from nbstream.runtime.service import EngineService
from nbstream.sql import ast, parse

REPO = Path(__file__).parents[1]
NOTEBOOKS = REPO / "notebooks"
#: ksqlDB's grammar as a Python checker, run in place (set $NBSTREAM_KSQL_GRAMMAR to move it).
KSQL_GRAMMAR = Path(os.environ.get("NBSTREAM_KSQL_GRAMMAR", REPO.parent / "shared" / "ksql-grammar"))
STARTUP_SECONDS = 60


# -- ksqlDB's grammar ----------------------------------------------------------------------------------------


def ksql_grammar_errors(paths: Iterable[Path]) -> list[str]:
    """Every statement of ``paths`` that ksqlDB's parser rejects, as ``check.py`` reports it."""
    result = subprocess.run([sys.executable, str(KSQL_GRAMMAR / "check.py"), *map(str, paths)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    return [line for line in result.stdout.splitlines() if line and not line.startswith(" ")]


# -- a running job ---------------------------------------------------------------------------------------------


@dataclass
class RunningJob:
    """``nbstream run`` in a process of its own: its address and its log (standard error)."""

    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def ksql(self, statements: str) -> tuple[int, Any]:
        status, body = self.request("/ksql", {"ksql": statements})
        return status, json.loads(body)

    def pull(self, sql: str, **properties: str) -> tuple[list[str], list[list[Any]]]:
        """A query over ``/query-stream`` (a pull query, or a push query with a LIMIT): its column
        names and rows."""
        status, body = self.request("/query-stream", {"sql": sql, "properties": properties})
        assert status == 200, body
        header, *rows = [json.loads(line) for line in body.splitlines() if line.strip()]
        return header["columnNames"], rows

    def insert(self, target: str, rows: list[dict[str, Any]]) -> int:
        """Rows into ``target`` over ``/inserts-stream`` (HTTP/2); how many were acknowledged."""
        body = b"\n".join(json.dumps(r).encode() for r in [{"target": target}, *rows])
        with httpx.Client(base_url=self.url, http1=False, http2=True, timeout=60) as client:
            reply = client.post("/inserts-stream", content=body)
        acks = [json.loads(line) for line in reply.content.splitlines() if line.strip()]
        assert reply.status_code == 200, reply.content
        return sum(1 for a in acks if a.get("status") == "ok")

    def ready(self) -> RunningJob:
        """Wait until the job listens and its API says it is ready."""
        self.port = eventually(lambda: _port(self), STARTUP_SECONDS)
        eventually(lambda: self.request("/chc/ready")[0] == 200, STARTUP_SECONDS)
        return self

    def metrics(self) -> str:
        return self.request("/metrics")[1].decode()

    def connector_states(self) -> list[str]:
        _, entities = self.ksql("SHOW CONNECTORS;")
        return [c["state"] for c in entities[0]["connectors"]]

    def idle(self) -> bool:
        """Whether every connector finished and every query consumed all its input."""
        lags = [line for line in self.metrics().splitlines() if line.startswith("nbstream_query_input_lag_records{")]
        return bool(lags) and all(line.endswith(" 0") for line in lags) \
            and all(state == "FINISHED" for state in self.connector_states())

    def wait_idle(self, timeout: float) -> None:
        eventually(lambda: self.idle() and (time.sleep(0.5) or self.idle()), timeout)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_job(folder: Path, state: Path, *args: str, ready: bool = True) -> RunningJob:
    """``nbstream run FOLDER --state STATE --listen 127.0.0.1:0 ARGS``, once its API is ready."""
    log = state.parent / f"{state.name}-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "nbstream", "run", str(folder), "--state", str(state),
                                    "--listen", "127.0.0.1:0", *args], stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    job = RunningJob(process, log)
    return job.ready() if ready else job


def _port(job: RunningJob) -> int | None:
    if job.process.poll() is not None:
        raise AssertionError(f"nbstream run exited with {job.process.returncode}:\n{job.output()}")
    for line in job.output().splitlines():
        if "listening on http://" in line:
            return int(line.split("listening on http://")[1].split()[0].rsplit(":", 1)[1])
    return None




# -- a job's state, read back ----------------------------------------------------------------------------------


def arrivals(state: Path, topics: Iterable[str]) -> list[tuple[str, pa.Table]]:
    """The records of ``topics`` in a stopped job's state, in the order they arrived: runs of
    consecutive records of one topic (the embedded log numbers its appends across topics)."""
    with Engine(path=state) as engine:
        rows = []
        for topic in topics:
            ends = engine.log.require(topic).end_offsets
            relation = engine.log.relation(topic, {p: (0, end) for p, end in ends.items()})
            table = engine.con.sql(f"SELECT * FROM {relation}").to_arrow_table()
            rows += [(r["append_no"], r["append_seq"], topic, r) for r in table.to_pylist()]
    rows.sort(key=lambda r: (r[0], r[1]))
    runs: list[tuple[str, list[dict[str, Any]]]] = []
    for _, _, topic, row in rows:
        if not runs or runs[-1][0] != topic:
            runs.append((topic, []))
        runs[-1][1].append({k: row[k] for k in RECORD_SCHEMA.names})
    return [(topic, pa.Table.from_pylist(records, schema=RECORD_SCHEMA)) for topic, records in runs]


def records(state: Path, topic: str) -> list[tuple[Any, ...]]:
    """(key, value, timestamp, partition) of every record of ``topic`` in a stopped job's state."""
    with Engine(path=state) as engine:
        return [(r.key, r.value, r.timestamp, r.partition) for r in engine.consume(topic)]


# -- the notebook's engine ---------------------------------------------------------------------------------------


def notebook_statements(notebook: Path) -> Iterator[ast.Statement]:
    """The statements of a notebook's ``%%stream`` cells, in order, read here (not by the exporter),
    but for the cells tagged ``nbstream-skip``, which its job leaves out."""
    for cell in json.loads(notebook.read_text())["cells"]:
        source = "".join(cell["source"])
        skipped = "nbstream-skip" in (cell.get("metadata") or {}).get("tags", [])
        if cell["cell_type"] == "code" and source.startswith("%%stream") and not skipped:
            yield from parse(source.partition("\n")[2])


#: What a notebook's engine runs that is no definition: queries, metadata, and the rows of INSERT …
#: VALUES (the reference gets every input record from the job instead).
NOT_DEFINITIONS = (ast.Select, ast.Show, ast.Describe, ast.DescribeFunction, ast.DescribeConnector, ast.Explain,
                   ast.PrintTopic, ast.InsertValues)


def notebook_engine(notebook: Path, inputs: list[tuple[str, pa.Table]]) -> EngineService:
    """The notebook's engine — an in-memory :class:`EngineService`, as ``%%stream`` uses — having run
    the notebook's definitions and then exactly ``inputs``: its connectors are dropped before they
    ever run, and the records the job read are appended instead, in the order they arrived."""
    engine = EngineService()
    for statement in notebook_statements(notebook):
        if not isinstance(statement, NOT_DEFINITIONS):
            engine.execute(statement.text)
    for name in list(engine.connectors.running):
        engine.execute(f"DROP CONNECTOR {name};")
    for topic, table in inputs:
        engine.log.append(topic, table)
    engine.run_until_idle()
    return engine


def same_rows(rows: Iterable[Iterable[Any]]) -> list[tuple[Any, ...]]:
    """Rows in a canonical order, doubles to 12 significant digits (sums of doubles depend on how
    the records were grouped into micro-batches in their last bits)."""
    def value(v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.12g}") if math.isfinite(v) else v
        if isinstance(v, list | tuple):
            return tuple(value(x) for x in v)
        return v
    return sorted((tuple(value(v) for v in row) for row in rows), key=repr)
