"""What nbstream run does with a job folder before it runs it: the plan compatibility check, the
rules for a changed queries.sql (an unchanged statement is a no-op, a changed or removed one needs
--upgrade and is rebuilt from its inputs), and its log lines."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from notebook_files import write_notebook  # type: ignore[import-not-found]

from nbstream.cli import main
from nbstream.export.job import load_job
from nbstream.export.runner import STATE_PLANS, EventLog, JobRefused, RunOptions, prepare
from nbstream.runtime.service import EngineService

S = "CREATE STREAM s (id VARCHAR KEY, n INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);"
T = "CREATE TABLE t AS SELECT id, COUNT(*) AS c FROM s GROUP BY id;"
BIG = "CREATE STREAM big AS SELECT id, n FROM s WHERE n > 1;"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    notebook = write_notebook(tmp_path / "job.ipynb", "%%stream\nSET 'auto.offset.reset'='earliest';\n" + S,
                              f"%%stream\n{T}\n{BIG}")
    assert main(["export", str(notebook), "-o", str(tmp_path / "job")]) == 0
    return tmp_path / "job"


class Run:
    """Starts of one job on one state directory, each logging to its own text."""

    def __init__(self, folder: Path, state: Path) -> None:
        self.folder, self.state = folder, state
        self.log = io.StringIO()

    def start(self, **options: bool) -> EngineService:
        self.log = io.StringIO()
        prepared = prepare(load_job(self.folder), RunOptions(self.state, **options), EventLog(self.log, "json"))
        return prepared.service

    def events(self) -> list[dict[str, str]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]

    def statements_recorded(self) -> int:
        with EngineService(self.state) as engine:
            return engine.con.execute("SELECT count(*) FROM __statements").fetchall()[0][0]

    def edit(self, old: str, new: str) -> None:
        queries = self.folder / "queries.sql"
        queries.write_text(queries.read_text().replace(old, new))


@pytest.fixture
def run(folder: Path, tmp_path: Path) -> Iterator[Run]:
    yield Run(folder, tmp_path / "state")


def fed(engine: EngineService, *rows: tuple[str, int]) -> None:
    for key, n in rows:
        engine.produce("s", {"N": n}, key=key)
    engine.run_until_idle()


def test_a_restart_resumes_and_every_unchanged_statement_is_a_no_op(run: Run) -> None:
    engine = run.start()
    fed(engine, ("a", 1), ("a", 5))
    engine.close()
    recorded = run.statements_recorded()
    engine = run.start()
    try:
        fed(engine, ("b", 2))
        assert sorted(engine.query("SELECT * FROM t").itertuples(index=False)) == [("a", 2), ("b", 1)]
    finally:
        engine.close()
    assert run.statements_recorded() == recorded
    assert [e["event"] for e in run.events()] == ["plans"]
    assert run.events()[0]["message"] == f"2 persistent queries plan as in the state's {STATE_PLANS}"


def test_a_changed_create_as_select_needs_upgrade_then_it_is_rebuilt_from_its_inputs(run: Run) -> None:
    engine = run.start()
    fed(engine, ("a", 1), ("a", 5))
    engine.close()
    run.edit("COUNT(*) AS c", "SUM(n) AS c")
    with pytest.raises(JobRefused) as refused:
        run.start()
    assert str(refused.value) == ("queries.sql differs from what the state was built with (start with --upgrade to "
                                  "rebuild it from its inputs):\nchanged: CREATE TABLE t AS SELECT id, SUM(n) AS c "
                                  "FROM s GROUP BY id")
    engine = run.start(upgrade=True)
    try:
        engine.run_until_idle()
        assert list(engine.query("SELECT * FROM t").itertuples(index=False)) == [("a", 6)]
    finally:
        engine.close()
    assert [e["message"] for e in run.events() if e["event"] == "upgrade"] == [
        "Table T changed: replaced, its query CTAS_T_0 terminated and its topic rebuilt."]


def test_an_upgrade_is_refused_naming_the_unchanged_queries_that_read_what_it_would_rebuild(run: Run) -> None:
    run.start().close()
    run.edit("n INT)", "n INT, m INT)")
    with pytest.raises(JobRefused, match=r"S is to be rebuilt, but queries \[CSAS_BIG_1, CTAS_T_0\] read from it or "
                                         r"write to it and stay as they are: change or remove them in queries.sql"):
        run.start(upgrade=True)


def test_a_statement_no_longer_in_queries_sql_is_dropped_only_with_upgrade(run: Run) -> None:
    run.start().close()
    run.edit(BIG, "")
    with pytest.raises(JobRefused, match=r"no longer in queries\.sql: STREAM BIG"):
        run.start()
    engine = run.start(upgrade=True)
    try:
        assert engine.catalog.find("BIG") is None
        assert "BIG" not in engine.list_topics()
    finally:
        engine.close()


def test_a_plan_that_changed_since_the_export_is_refused_naming_the_query_unless_replan(run: Run) -> None:
    plans = run.folder / "plans.json"
    document = json.loads(plans.read_text())
    column = document["queries"][0]["plan"]["columns"][1]
    column["sql"] = "count_v0(*)"
    plans.write_text(json.dumps(document))
    with pytest.raises(JobRefused) as refused:
        run.start()
    assert "query CTAS_T_0 (CREATE TABLE t AS SELECT id, COUNT(*) AS c FROM s GROUP BY …) " \
           "would run differently from the plan in the job's plans.json: columns[C = COUNT(*)].sql: 'count_v0(*)' " \
           "became '\"__agg0\"'" in str(refused.value)
    assert not (run.state / STATE_PLANS).exists()
    run.start(replan=True).close()
    assert [e["event"] for e in run.events()] == ["replan"]
    run.start().close()  # the state now holds the plans it was built with
    assert [e["event"] for e in run.events()] == ["plans"]


def test_the_log_is_one_line_per_event_as_text_or_json() -> None:
    out = io.StringIO()
    EventLog(out, "json", job="j").event("query", "Q is RUNNING", query="Q", state="RUNNING")
    EventLog(out, "text").event("stopped", "stopped")
    first, second = out.getvalue().splitlines()
    assert json.loads(first) | {"time": "T"} == {"time": "T", "job": "j", "event": "query", "message": "Q is RUNNING",
                                                 "query": "Q", "state": "RUNNING"}
    assert second.endswith("Z stopped    stopped")
