"""``%stream export PATH``: what the kernel's engine runs now, written as a job."""

from __future__ import annotations

from pathlib import Path

from IPython.core.interactiveshell import InteractiveShell
from ipython_cells import run

from nbstream.catalog import user_functions
from nbstream.export.job import load_job

SCRIPT = """%%stream
CREATE STREAM clicks (user VARCHAR KEY, page VARCHAR) WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON', PARTITIONS=1);
CREATE TABLE per_user AS SELECT user, COUNT(*) AS n FROM clicks GROUP BY user;
CREATE TABLE scratch AS SELECT page, COUNT(*) AS n FROM clicks GROUP BY page;
INSERT INTO clicks (user, page) VALUES ('u1', 'home');
"""


def test_export_writes_what_the_engine_runs_now_as_a_job(shell: InteractiveShell, tmp_path: Path) -> None:
    assert run(shell, SCRIPT)[0].success
    assert run(shell, "%stream TERMINATE CTAS_SCRATCH_1; DROP TABLE scratch;")[0].success
    result, out = run(shell, f"%stream export {tmp_path / 'clicks-job'}")
    assert result.success, result.error_in_exec
    assert out.stdout.startswith("Exported 1 persistent query (CTAS_PER_USER_0) to ")
    job = load_job(tmp_path / "clicks-job")
    assert job.config.name == "clicks"
    assert job.config.exported_from == "the running engine"
    assert "-- table PER_USER (in the running engine)\nCREATE TABLE per_user AS" in job.queries_sql
    assert "scratch" not in job.queries_sql and "INSERT" not in job.queries_sql

    result, _ = run(shell, f"%stream export {tmp_path / 'clicks-job'} --to ksqldb")
    assert result.success and (tmp_path / "clicks-job" / "ksql-server.properties").exists()


def test_export_refuses_python_sources_and_says_why(shell: InteractiveShell, tmp_path: Path) -> None:
    assert run(shell, SCRIPT)[0].success
    assert run(shell, "import nbstream\nnbstream.current_engine().source('clicks', [{'user': 'u2', 'page': 'x'}])")[
        0].success
    result, _ = run(shell, f"%stream export {tmp_path / 'job'}")
    assert not result.success
    assert "a Python source into 'clicks' (in the running engine): Python feeds topic 'clicks'" in str(
        result.error_in_exec)
    assert not (tmp_path / "job").exists()
    assert run(shell, f"%stream export {tmp_path / 'job'} --allow-missing-input")[0].success
    assert load_job(tmp_path / "job").config.external_inputs == ("clicks",)


def test_a_bad_export_line_is_a_usage_error(shell: InteractiveShell) -> None:
    result, _ = run(shell, "%stream export")
    assert not result.success and "%stream export PATH [--to" in str(result.error_in_exec)
    result, _ = run(shell, "%stream export out --to flink")
    assert not result.success and "invalid choice: 'flink'" in str(result.error_in_exec)


def test_export_refuses_a_query_calling_a_python_udf_of_the_kernel(shell: InteractiveShell, tmp_path: Path) -> None:
    udf = "import nbstream\n\n@nbstream.udf(params=['VARCHAR'], returns='VARCHAR')\ndef shout(s):\n    return s"
    try:
        assert run(shell, udf)[0].success
        assert run(shell, SCRIPT + "CREATE STREAM loud AS SELECT user, SHOUT(page) AS page FROM clicks;")[0].success
        result, _ = run(shell, f"%stream export {tmp_path / 'job'}")
        assert not result.success
        assert ("stream LOUD (in the running engine): CREATE STREAM loud AS SELECT user, SHOUT(page) AS page FROM… "
                "calls SHOUT, a Python UDF (@nbstream.udf in Python function shout), which this export cannot carry: "
                "only an nbstream job does (its udfs.py), and only a top-level decorated def of a cell without magics; "
                "compute it in SQL, or drop it before exporting") in str(result.error_in_exec)
        assert not (tmp_path / "job").exists()
    finally:
        user_functions.remove("SHOUT")
