"""Each example notebook exported and run as a job: ``nbstream export`` to every target, ``nbstream
run`` as a real process, the job's tables read over HTTP and compared with what the notebook's engine
computes from the same input records; ksqlDB's grammar accepts every ksqlDB and migrations file;
SIGTERM stops a job at once; and a job killed (SIGKILL) again and again in the middle of its input
ends with the output of a run that was never killed.

The five jobs run side by side (their datagen connectors pace records in real time: about 75 s for
the longest), each on its own state directory. The notebooks feeding topics from Python are
exported with ``--allow-missing-input``; the test feeds those topics through the job's API instead,
with seeded data shaped like the notebook's.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from job_harness import (  # type: ignore[import-not-found]
    KSQL_GRAMMAR,
    NOTEBOOKS,
    RunningJob,
    arrivals,
    eventually,
    ksql_grammar_errors,
    notebook_engine,
    notebook_statements,
    records,
    same_rows,
    start_job,
)

from nbstream.cli import main as cli
from nbstream.export.job import load_job
from nbstream.sql import ast, parse

#: Datagen paces 3,000-4,000 records at 15-25 ms each; the jobs run side by side.
IDLE_SECONDS = 180

#: How long a job may take to stop after SIGTERM.
STOP_SECONDS = 5.0


@dataclass
class Exported:
    """One notebook, exported to every target, its nbstream job running."""

    notebook: Path
    out: Path  # the targets' folders: out / nbstream, out / ksqldb, out / migrations
    state: Path
    job: RunningJob
    export_seconds: dict[str, float]

    @property
    def folder(self) -> Path:
        return self.out / "nbstream"


# -- feeding the topics the notebooks fed from Python ------------------------------------------------------------


def feed_game(job: RunningJob) -> None:
    """2,000 events shaped like the game notebook's generator (seeded)."""
    rng = random.Random(7)
    skill = {"ada": 0.9, "bo": 0.6, "cy": 0.5, "dee": 0.75, "eli": 0.4, "fay": 0.65}
    points = {"coin": 10, "gem": 50, "boss": 200}
    events = []
    for i in range(2000):
        player = rng.choice(list(skill))
        event = rng.choices(list(points), weights=[70, 25, 5 * skill[player]])[0]
        won = rng.random() < skill[player]
        events.append({"PLAYER": player, "EVENT": event if won else "miss", "POINTS": points[event] if won else 0,
                       "LEVEL": 1 + i // 400})
    for start in range(0, len(events), 500):
        assert job.insert("GAME_EVENTS", events[start:start + 500]) == 500


def feed_marketplace(job: RunningJob) -> None:
    """The catalogue, 600 orders (seeded), then the notebook's own restock INSERT."""
    products = [("p1", "lamp", 25.0, 400), ("p2", "desk", 240.0, 120), ("p3", "chair", 80.0, 300),
                ("p4", "shelf", 120.0, 150), ("p5", "rug", 60.0, 250), ("p6", "mirror", 45.0, 250)]
    assert job.insert("PRODUCTS", [{"PRODUCT_ID": p, "NAME": n, "PRICE": price, "STOCK": stock}
                                   for p, n, price, stock in products]) == 6
    rng = random.Random(11)
    orders = [{"ORDER_ID": f"o{i}", "PRODUCT_ID": rng.choices([p[0] for p in products], [8, 2, 5, 3, 4, 4])[0],
               "QUANTITY": rng.randint(1, 3)} for i in range(600)]
    assert job.insert("ORDERS", orders) == 600
    restock = next(s for s in notebook_statements(NOTEBOOKS / "marketplace_inventory.ipynb")
                   if isinstance(s, ast.InsertValues))
    status, body = job.ksql(restock.text + ";")
    assert status == 200, body


FEEDS = {"game_scoreboard": feed_game, "marketplace_inventory": feed_marketplace}


# -- the jobs ------------------------------------------------------------------------------------------------------


def export(notebook: Path, out: Path, target: str, *options: str) -> float:
    started = time.monotonic()
    assert cli(["export", str(notebook), "--to", target, "-o", str(out), *options]) == 0
    return time.monotonic() - started


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Exported]]:
    """Every notebook exported to the three targets, its nbstream job started (all side by side)."""
    root = tmp_path_factory.mktemp("jobs")
    running: dict[str, Exported] = {}
    try:
        for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
            out = root / notebook.stem
            options = ("--allow-missing-input",) if notebook.stem in FEEDS else ()
            seconds = {t: export(notebook, out / t, t, *options) for t in ("nbstream", "ksqldb", "migrations")}
            state = root / f"{notebook.stem}-state"
            running[notebook.stem] = Exported(notebook, out, state, start_job(out / "nbstream", state, ready=False),
                                              seconds)
        for name, exported in running.items():
            exported.job.ready()
            FEEDS.get(name, lambda job: None)(exported.job)
        yield running
    finally:
        for exported in running.values():
            if exported.job.process.poll() is None:
                exported.job.process.kill()
            exported.job.process.wait(10)


def test_every_example_notebook_exports_to_every_target(jobs: dict[str, Exported]) -> None:
    assert set(jobs) == {"quickstart", "ride_sharing_map", "stock_prices", "game_scoreboard",
                         "marketplace_inventory"}
    for exported in jobs.values():
        assert {p.name for p in exported.folder.iterdir()} >= {"queries.sql", "nbstream-job.toml", "plans.json",
                                                               "Dockerfile", "README.md"}
        assert (exported.out / "ksqldb" / "ksql-server.properties").is_file()
        assert list((exported.out / "migrations" / "migrations").glob("V000001__*.sql"))
        assert max(exported.export_seconds.values()) < 5, exported.export_seconds


@pytest.mark.skipif(not (KSQL_GRAMMAR / "check.py").exists(), reason=f"no ksqlDB grammar checker at {KSQL_GRAMMAR}")
def test_every_ksqldb_and_migrations_file_parses_with_ksqldbs_own_grammar(jobs: dict[str, Exported]) -> None:
    files = [f for e in jobs.values() for target in ("ksqldb", "migrations") for f in (e.out / target).rglob("*.sql")]
    assert len(files) >= 10
    assert ksql_grammar_errors(files) == []


# -- the job's API is read-only; its plans are checked; its log -------------------------------------------------


def test_a_jobs_api_answers_queries_and_refuses_what_would_change_the_job(jobs: dict[str, Exported]) -> None:
    job = jobs["marketplace_inventory"].job
    for statement in ("SHOW QUERIES;", "DESCRIBE INVENTORY;", "EXPLAIN CTAS_INVENTORY_1;", "SHOW STREAMS;"):
        assert job.ksql(statement)[0] == 200, statement
    columns, rows = job.pull("SELECT * FROM SALES EMIT CHANGES LIMIT 2;", **{"auto.offset.reset": "earliest"})
    assert columns == ["PRODUCT_ID", "ORDER_ID", "NAME", "QUANTITY", "REVENUE"] and len(rows) == 2
    for statement in ("CREATE STREAM x (a INT) WITH (KAFKA_TOPIC='x', VALUE_FORMAT='JSON', PARTITIONS=1);",
                      "DROP TABLE INVENTORY;", "TERMINATE CTAS_INVENTORY_1;", "SET 'a'='b'; DROP STREAM SALES;",
                      "CREATE SINK CONNECTOR c WITH ('connector.class'='duckdb', 'source'='SALES', 'table'='t');"):
        status, body = job.ksql(statement)
        assert status == 403, statement
        assert body["error_code"] == 40300
        assert "runs the job 'marketplace_inventory' (nbstream run), read-only" in body["message"]
        assert "restart it with nbstream run --upgrade" in body["message"]
    status, body = job.ksql("INSERT INTO SALES (PRODUCT_ID, ORDER_ID) VALUES ('p1', 'x');")
    assert status == 403 and "only the job's inputs fed from outside take inserts (ORDERS, PRODUCTS), and SALES " \
                              "is not one" in body["message"]
    with pytest.raises(AssertionError, match="40300"):
        job.insert("SALES", [{"PRODUCT_ID": "p1", "ORDER_ID": "x"}])
    assert "nbstream_query_records_in_total{query_id=\"CTAS_INVENTORY_1\"" in job.metrics()
    assert job.request("/chc/ready")[0] == 200


def test_a_job_whose_plans_changed_refuses_to_start_unless_replan_and_logs_json_lines(
        tmp_path: Path, jobs: dict[str, Exported]) -> None:
    folder = tmp_path / "job"
    export(NOTEBOOKS / "quickstart.ipynb", folder, "nbstream")
    plans = folder / "plans.json"
    plans.write_text(plans.read_text().replace('"plan_version": 2', '"plan_version": 1'))
    command = [sys.executable, "-m", "nbstream", "run", str(folder), "--listen", "none", "--log-format", "json"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    last = json.loads(refused.stderr.splitlines()[-1])
    assert last["event"] == "refused"
    assert "query CTAS_VIEWS_PER_USER_0 (CREATE TABLE views_per_user AS SELECT userid" in last["message"]
    assert "…) would run differently from the plan in the job's plans.json: plan version 1 (stored) differs from 2 " \
           "(this nbstream)" in last["message"]
    assert not (folder / "state" / "job-plans.json").exists()
    job = RunningJob(subprocess.Popen([*command, "--replan", "--stats-interval", "0.5"], stderr=subprocess.PIPE,
                                      text=True), tmp_path / "unused.log")
    lines: list[dict[str, Any]] = []
    assert job.process.stderr is not None
    while not any(e["event"] == "throughput" for e in lines):
        lines.append(json.loads(job.process.stderr.readline()))
    assert job.stop() == 0
    lines += [json.loads(line) for line in job.process.stderr.read().splitlines()]
    job.process.stderr.close()
    events = [e["event"] for e in lines]
    assert events[:2] == ["start", "replan"]
    assert {"query", "connector", "running", "throughput"} <= set(events)
    assert events[-2:] == ["stopping", "stopped"]
    assert all(e["job"] == "quickstart" for e in lines[1:])


# -- a job killed again and again --------------------------------------------------------------------------------


EVENTS = 3000


def crash_events() -> list[dict[str, Any]]:
    rng = random.Random(3)
    return [{"PLAYER": rng.choice("abcdefgh"), "EVENT": rng.choice(["coin", "gem", "boss", "miss"]),
             "POINTS": rng.choice([0, 10, 50, 200]), "LEVEL": i // 300} for i in range(EVENTS)]


def feed_until_killed(job: RunningJob, events: list[dict[str, Any]], kill_after: float) -> None:
    """Feed ``events`` from where the job's input ends, 20 at a time, while a timer SIGKILLs the job
    ``kill_after`` seconds on — in the middle of an insert, of a micro-batch, wherever it is."""
    timer = threading.Timer(kill_after, job.process.send_signal, [signal.SIGKILL])
    done = durable_events(job)
    timer.start()
    try:
        while done < len(events) and job.process.poll() is None:
            done += job.insert("GAME_EVENTS", events[done:done + 20])
            time.sleep(0.01)
    except (httpx.HTTPError, AssertionError, OSError):
        pass  # killed while inserting
    finally:
        timer.join()
        job.process.wait(10)


def durable_events(job: RunningJob) -> int:
    """How many events the job's input holds (an insert cut off by a kill may be there or not: the
    feed resumes after what is there)."""
    return len(job.pull("SELECT * FROM GAME_EVENTS;")[1])


def test_a_job_killed_ten_times_mid_stream_ends_with_the_output_of_a_run_never_killed(
        tmp_path: Path, jobs: dict[str, Exported]) -> None:
    folder, state = tmp_path / "job", tmp_path / "state"
    export(NOTEBOOKS / "game_scoreboard.ipynb", folder, "nbstream", "--allow-missing-input")
    events = crash_events()
    rng = random.Random(5)
    for _ in range(12):
        feed_until_killed(start_job(folder, state), events, kill_after=rng.uniform(0.3, 1.5))
    job = start_job(folder, state)
    done = durable_events(job)
    assert 0 < done < EVENTS, f"the kills should have left input to feed ({done} of {EVENTS} fed)"
    assert job.insert("GAME_EVENTS", events[done:]) == EVENTS - done
    eventually(job.idle, 60)
    served = job.pull("SELECT * FROM SCOREBOARD;")
    assert job.stop() == 0
    fed = records(state, "game_events")
    assert [(key, value) for key, value, _, _ in fed] == \
        [(e["PLAYER"], {k: v for k, v in e.items() if k != "PLAYER"}) for e in events], "each event once, in order"
    never_killed = notebook_engine(NOTEBOOKS / "game_scoreboard.ipynb", arrivals(state, ["game_events"]))
    try:
        # the changelogs may differ in the changes the record cache left out, as the batches fell: not in the table
        assert _latest_per_key(records(state, "SCOREBOARD")) == _latest_per_key(
            [(r.key, r.value, r.timestamp, r.partition) for r in never_killed.consume("SCOREBOARD")])
        frame = never_killed.query("SELECT * FROM SCOREBOARD")
        assert same_rows(served[1]) == same_rows(frame.astype(object).values.tolist())
    finally:
        never_killed.close()


def _latest_per_key(changelog: list[tuple[Any, ...]]) -> dict[Any, tuple[Any, ...]]:
    """A table's changelog (key, value, time, partition) as its last record of each key."""
    return {key: rest for key, *rest in changelog}


# -- each job against the notebook's engine (after the crash test: their datagen runs meanwhile) ---------


@pytest.mark.parametrize("name", ["quickstart", "ride_sharing_map", "stock_prices", "game_scoreboard",
                                  "marketplace_inventory"])
def test_the_job_serves_what_the_notebooks_engine_computes_from_the_same_input(
        name: str, jobs: dict[str, Exported]) -> None:
    exported = jobs[name]
    job = exported.job
    job.wait_idle(IDLE_SECONDS)
    sinks = [q["sink"] for q in load_job(exported.folder).plans["queries"]]
    served = {sink: job.pull(f"SELECT * FROM {sink};") for sink in sinks}
    assert all(rows for _, rows in served.values()), served
    stopped = time.monotonic()
    assert job.stop() == 0
    assert time.monotonic() - stopped < STOP_SECONDS
    assert "stopped" in job.output().splitlines()[-1]
    engine = notebook_engine(exported.notebook, arrivals(exported.state, input_topics(exported.folder)))
    try:
        for sink, (columns, rows) in served.items():
            frame = engine.query(f"SELECT * FROM {sink}")
            assert list(frame.columns) == columns
            assert same_rows(rows) == same_rows(frame.astype(object).where(frame.notna(), None).values.tolist())
    finally:
        engine.close()


def input_topics(folder: Path) -> list[str]:
    """The topics the job's declared streams and tables read (its inputs)."""
    statements = parse((folder / "queries.sql").read_text())
    return [str(s.properties["KAFKA_TOPIC"]) for s in statements if isinstance(s, ast.CreateSource)]
