"""``nbstream run`` as a process, on small jobs of its own: ``--listen none`` opens no port at all;
SIGTERM in the middle of a stream commits the micro-batch in flight — the state holds exactly the
output of the input offsets it committed, every acknowledged record is kept, and a restart ends
with every record in the output exactly once; a query failing at run time logs an ``error`` line
(a JSON object with ``--log-format json``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from job_harness import RunningJob, eventually, start_job  # type: ignore[import-not-found]
from notebook_files import write_notebook  # type: ignore[import-not-found]

from nbstream.cli import main as cli
from nbstream.runtime.engine import Engine

#: How long a job may take to stop after SIGTERM.
STOP_SECONDS = 5.0

FEED = ("import nbstream\neng = nbstream.current_engine()\n"
        "eng.source('s', ({'id': f'k{i % 7}', 'n': i} for i in range(9)))")
COUNTS = ("%%stream\nSET 'auto.offset.reset'='earliest';\n"
          "CREATE STREAM s (id VARCHAR KEY, n BIGINT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=2);\n"
          "CREATE STREAM doubled AS SELECT id, n * 2 AS n2 FROM s;\n"
          "CREATE TABLE totals AS SELECT id, COUNT(*) AS c, SUM(n) AS total FROM s GROUP BY id;")


def exported(tmp_path: Path, *cells: str, options: tuple[str, ...] = ()) -> Path:
    notebook = write_notebook(tmp_path / "counts.ipynb", *cells)
    assert cli(["export", str(notebook), "-o", str(tmp_path / "job"), *options]) == 0
    return tmp_path / "job"


class LoggedRun:
    """``nbstream run FOLDER --state STATE --log-format json ARGS``, its log lines read as they come."""

    def __init__(self, folder: Path, state: Path, *args: str) -> None:
        self.log = state.parent / f"run-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "nbstream", "run", str(folder), "--state", str(state), "--log-format", "json",
                 *args], stdout=subprocess.DEVNULL, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def wait_for(self, event: str, timeout: float = 60) -> dict[str, Any]:
        def logged() -> dict[str, Any] | None:
            assert self.process.poll() is None, f"nbstream run exited with {self.process.returncode}:\n" \
                                                f"{self.log.read_text()}"
            return next((e for e in self.events() if e["event"] == event), None)
        found: dict[str, Any] = eventually(logged, timeout)
        return found

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def listening_ports(pid: int) -> list[int]:
    """The TCP ports process ``pid`` listens on."""
    return sorted(c.laddr.port for c in psutil.Process(pid).net_connections(kind="inet")
                  if c.status == psutil.CONN_LISTEN)


# -- --listen none ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["the command line", "the job"])
def test_listen_none_runs_the_job_headless_and_opens_no_port(where: str, tmp_path: Path) -> None:
    listen = ("--listen", "none")
    folder = exported(tmp_path, FEED, COUNTS, options=("--allow-missing-input",
                                                       *(listen if where == "the job" else ())))
    run = LoggedRun(folder, tmp_path / "state", *(listen if where == "the command line" else ()))
    try:
        assert run.wait_for("start")["listen"] == "none"
        assert run.wait_for("running")["message"] == "running headless (no REST API)"
        assert {e["query"]: e["state"] for e in run.events() if e["event"] == "query"} == {
            "CSAS_DOUBLED_0": "RUNNING", "CTAS_TOTALS_1": "RUNNING"}
        assert listening_ports(run.process.pid) == []
        assert run.stop() == 0
    finally:
        run.kill()
    assert [e["event"] for e in run.events()][-2:] == ["stopping", "stopped"]
    assert not any("listening on" in e["message"] for e in run.events())


# -- SIGTERM commits the batch in flight ---------------------------------------------------------------------------


class Feeder(threading.Thread):
    """Inserts records ``{ID: k<i % 7>, N: i}`` into S over the job's API, 200 at a time, until stopped
    or the job goes away; ``acknowledged`` counts the records the job acknowledged."""

    def __init__(self, job: RunningJob) -> None:
        super().__init__(daemon=True)
        self.job, self.acknowledged, self.stopped = job, 0, threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            rows = [{"ID": f"k{i % 7}", "N": i} for i in range(self.acknowledged, self.acknowledged + 200)]
            try:
                done = self.job.insert("S", rows)
            except (httpx.HTTPError, AssertionError, OSError):
                return  # the job stopped taking input
            self.acknowledged += done
            if done < len(rows):
                return


def consumed(job: RunningJob, query: str) -> int:
    prefix = f'nbstream_query_records_in_total{{query_id="{query}"'
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in job.metrics().splitlines() if line.startswith(prefix))


def state_of(state: Path) -> tuple[list[tuple[str, int, int, int]], dict[int, int], list[tuple[str, int]]]:
    """A stopped job's input records (key, N, partition, offset), the input offsets CSAS_DOUBLED_0
    committed, and its output records (key, N2)."""
    with Engine(path=state) as engine:
        inputs = [(r.key, {k.upper(): v for k, v in r.value.items()}["N"], r.partition, r.offset)
                  for r in engine.consume("s")]
        offsets = dict(engine.con.execute("SELECT \"partition\", next_offset FROM __offsets "
                                          "WHERE query_id = 'CSAS_DOUBLED_0'").fetchall())
        output = [(r.key, r.value["N2"]) for r in engine.consume("DOUBLED")]
    return inputs, offsets, output


def test_sigterm_mid_stream_commits_the_batch_in_flight_and_a_restart_misses_no_acknowledged_record(
        tmp_path: Path) -> None:
    folder, state = exported(tmp_path, FEED, COUNTS, options=("--allow-missing-input",)), tmp_path / "state"
    job = start_job(folder, state)
    assert listening_ports(job.process.pid) == [job.port]  # what listening_ports sees when a job listens
    feeder = Feeder(job)
    feeder.start()
    eventually(lambda: consumed(job, "CSAS_DOUBLED_0") > 1000, 60)  # the query is working through the stream
    stopped = time.monotonic()
    assert job.stop() == 0
    assert time.monotonic() - stopped < STOP_SECONDS
    feeder.stopped.set()
    feeder.join(30)
    assert job.output().splitlines()[-1].endswith("stopped")

    inputs, offsets, output = state_of(state)
    assert len(inputs) >= feeder.acknowledged > 0, "every acknowledged record is kept"
    committed = [(key, 2 * n) for key, n, partition, offset in inputs if offset < offsets.get(partition, 0)]
    assert committed, "the query committed what it processed before it stopped"
    assert Counter(output) == Counter(committed), "the output is exactly that of the committed input offsets"

    job = start_job(folder, state)
    try:
        job.wait_idle(60)
        totals = job.pull("SELECT * FROM TOTALS;")
    finally:
        assert job.stop() == 0
    inputs, offsets, output = state_of(state)
    assert offsets == {p: 1 + max(o for _, _, q, o in inputs if q == p) for _, _, p, _ in inputs}
    assert Counter(output) == Counter((key, 2 * n) for key, n, _, _ in inputs), "each record once"
    expected: dict[str, list[int]] = {}
    for key, n, _, _ in inputs:
        expected.setdefault(key, []).append(n)
    assert totals[0] == ["ID", "C", "TOTAL"]
    assert sorted(map(tuple, totals[1])) == sorted((k, len(ns), sum(ns)) for k, ns in expected.items())


LINES = 400_000  # seconds of work: two connector steps, two micro-batches of each query


def test_sigterm_headless_mid_batch_commits_it_logs_only_json_and_a_restart_finishes_the_input(
        tmp_path: Path) -> None:
    """A file connector writes a backlog the queries take seconds to work through; SIGTERM comes
    once the first micro-batch committed, while the connector and later batches run and the watcher
    asks for throughput at every turn."""
    data = tmp_path / "in.jsonl"
    data.write_text("".join(f'{{"id": "k{i % 7}", "n": {i}}}\n' for i in range(LINES)))
    folder = exported(tmp_path, COUNTS.replace(", PARTITIONS=2", "").replace(
        "SET 'auto.offset.reset'='earliest';", "CREATE SOURCE CONNECTOR src WITH ('connector.class'='file', "
        f"'kafka.topic'='s', 'path'='{data}', 'key'='id');"))
    run = LoggedRun(folder, tmp_path / "state", "--listen", "none", "--stats-interval", "0.1")
    try:
        run.wait_for("running")
        eventually(lambda: any(e["event"] == "throughput" and e["consumed"] > 0 for e in run.events()), 60)
        stopped = time.monotonic()
        assert run.stop() == 0
        assert time.monotonic() - stopped < STOP_SECONDS
    finally:
        run.kill()
    assert "Traceback" not in run.log.read_text()
    events = run.events()  # every line is a JSON object
    names = [e["event"] for e in events]
    assert names[-1] == "stopped" and "stopping" in names  # the watcher may still see a connector change between
    assert not [e for e in events if e["event"] == "error"]
    inputs, offsets, output = state_of(tmp_path / "state")
    committed = [(key, 2 * n) for key, n, partition, offset in inputs if offset < offsets.get(partition, 0)]
    assert committed, "the micro-batch in flight at SIGTERM was committed"
    assert Counter(output) == Counter(committed), "the output is exactly that of the committed offsets"

    run = LoggedRun(folder, tmp_path / "state", "--listen", "none", "--stats-interval", "0.1")
    try:
        def done() -> bool:
            events = run.events()
            lags = {e["query"]: e["lag"] for e in events if e["event"] == "throughput"}
            return any(e["event"] == "connector" and e["state"] == "FINISHED" for e in events) and \
                lags == {"CSAS_DOUBLED_0": 0, "CTAS_TOTALS_1": 0}
        eventually(done, 120)
        assert run.stop() == 0
    finally:
        run.kill()
    inputs, offsets, output = state_of(tmp_path / "state")
    assert sorted(n for _, n, _, _ in inputs) == list(range(LINES)), "the connector resumed where it stopped"
    assert Counter(output) == Counter((key, 2 * n) for key, n, _, _ in inputs), "each record once"


# -- a query failing at run time --------------------------------------------------------------------------------


def test_a_query_failing_at_run_time_logs_an_error_line_as_json(tmp_path: Path) -> None:
    folder = exported(tmp_path, (
        "%%stream\nSET 'ksql.timestamp.throw.on.invalid'='true';\n"
        "CREATE STREAM readings (id VARCHAR KEY, ts BIGINT, v INT) WITH (KAFKA_TOPIC='readings', VALUE_FORMAT='JSON', "
        "PARTITIONS=1, TIMESTAMP='ts');\nCREATE STREAM checked AS SELECT id, v FROM readings;"),
        "%%stream\nINSERT INTO readings (id, ts, v) VALUES ('a', 1000, 1);\n"
        "INSERT INTO readings (id, ts, v) VALUES ('b', -1, 2);", options=("--include-inserts",))
    run = LoggedRun(folder, tmp_path / "state", "--listen", "none")
    try:
        error = run.wait_for("error")
        assert run.stop() == 0, "a failed query does not stop the job"
    finally:
        run.kill()
    assert error | {"time": "T"} == {
        "time": "T", "job": "counts", "event": "error",
        "message": "CSAS_CHECKED_0: ExecutionError: Fatal user code error in TimestampExtractor callback for "
                   "record of readings: the timestamp is NULL or negative"}
    assert [(e["query"], e["state"]) for e in run.events() if e["event"] == "query"] == [("CSAS_CHECKED_0", "ERROR")]


UDF_CELL = ("import pyarrow.compute as pc\n\nimport nbstream\n\n\n"
            "@nbstream.udf(params=['BIGINT'], returns='BIGINT')\ndef squared(n):\n    return pc.multiply(n, n)\n")
SQUARES = ("%%stream\nCREATE STREAM s (id VARCHAR KEY, n BIGINT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', "
           "PARTITIONS=1);\nCREATE STREAM squares AS SELECT id, SQUARED(n) AS n2 FROM s;")


def test_a_job_carries_the_notebooks_python_udfs_as_source_and_runs_them(tmp_path: Path) -> None:
    feed = "eng = nbstream.current_engine()\neng.produce('s', {'n': 5}, key='x')"
    notebook = write_notebook(tmp_path / "squares.ipynb", UDF_CELL, SQUARES, feed)
    export = subprocess.run([sys.executable, "-m", "nbstream", "export", str(notebook), "-o", str(tmp_path / "job"),
                             "--allow-missing-input"],
                            capture_output=True, text=True, timeout=120)  # its own process: the UDF stays there
    assert export.returncode == 0, export.stderr
    module = (tmp_path / "job" / "udfs.py").read_text()
    assert "import pyarrow.compute as pc" in module and "def squared(n):" in module
    dockerfile = (tmp_path / "job" / "Dockerfile").read_text()
    assert "COPY queries.sql nbstream-job.toml plans.json udfs.py /job/" in dockerfile
    job = start_job(tmp_path / "job", tmp_path / "state")
    try:
        assert job.insert("S", [{"ID": "a", "N": 3}, {"ID": "b", "N": -4}]) == 2
        columns, rows = eventually(lambda: (found := job.pull("SELECT * FROM squares EMIT CHANGES LIMIT 2;",
                                                              **{"auto.offset.reset": "earliest"})) and found, 60)
        assert columns == ["ID", "N2"] and sorted(map(tuple, rows)) == [("a", 9), ("b", 16)]
    finally:
        job.process.kill()
        job.process.wait(10)


def test_a_ksqldb_export_refuses_a_query_calling_a_python_udf(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "squares.ipynb", UDF_CELL, SQUARES)
    export = subprocess.run([sys.executable, "-m", "nbstream", "export", str(notebook), "--to", "ksqldb", "-o",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert export.returncode != 0
    assert "calls SQUARED, a Python UDF (@nbstream.udf in cell 1, line 6), which this export cannot carry" in \
        export.stderr
