"""``%%stream`` and ``%stream`` through a real IPython shell, as a notebook user types them."""

from __future__ import annotations

import _thread
import signal
import threading
import time
from collections.abc import Iterator

import duckdb
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from ipython_cells import displayed_text, eventually, run

from nbstream.notebook.display import StreamError
from nbstream.notebook.magics import StreamMagic, parse_cell_line
from nbstream.runtime import service
from nbstream.runtime.engine import Engine
from nbstream.runtime.service import EngineService

PAGEVIEWS = """%%stream
CREATE STREAM pageviews (userid VARCHAR KEY, pageid VARCHAR)
  WITH (KAFKA_TOPIC='pageviews', VALUE_FORMAT='JSON', PARTITIONS=1);
CREATE TABLE views_per_user AS SELECT userid, COUNT(*) AS n FROM pageviews GROUP BY userid EMIT CHANGES;
"""


def views_of(shell: InteractiveShell, user: str) -> int | None:
    """The count the pull query returns for ``user`` (None until the table has the user)."""
    shell.user_ns["who"] = user
    result, _ = run(shell, "%%stream counts <<\nSELECT n FROM views_per_user WHERE userid = :who;")
    assert result.success
    frame = shell.user_ns["counts"]
    return int(frame["N"].iloc[0]) if len(frame) else None


def test_load_ext_registers_the_cell_and_line_magics(shell: InteractiveShell) -> None:
    assert "stream" in shell.magics_manager.magics["cell"]
    assert "stream" in shell.magics_manager.magics["line"]


def test_a_script_creates_inserts_and_a_pull_query_reads_the_result(shell: InteractiveShell) -> None:
    created, out = run(shell, PAGEVIEWS + "INSERT INTO pageviews (userid, pageid) VALUES ('u1', 'home');\n"
                                          "INSERT INTO pageviews (userid, pageid) VALUES ('u1', 'cart');")
    assert created.success
    assert "Stream created" in out.stdout and "Created query with ID CTAS_VIEWS_PER_USER" in out.stdout

    assert eventually(lambda: views_of(shell, "u1") == 2)


def test_name_assignment_gets_a_dataframe_of_the_pull_query(shell: InteractiveShell) -> None:
    run(shell, PAGEVIEWS + "INSERT INTO pageviews (userid, pageid) VALUES ('u7', 'home');")
    eventually(lambda: views_of(shell, "u7"))

    result, out = run(shell, "%%stream top <<\nSELECT * FROM views_per_user;")

    assert result.success
    assert isinstance(shell.user_ns["top"], pd.DataFrame)
    assert shell.user_ns["top"].to_dict("records") == [{"USERID": "u7", "N": 1}]
    assert "u7" in displayed_text(out)  # the table is shown as well


def test_parameters_are_bound_from_the_namespace_never_spliced_into_the_sql(shell: InteractiveShell) -> None:
    run(shell, PAGEVIEWS)
    shell.user_ns["page"] = "x'); DROP STREAM pageviews; --"
    inserted, _ = run(shell, "%%stream\nINSERT INTO pageviews (userid, pageid) VALUES ('u2', :page);")
    assert inserted.success

    assert eventually(lambda: views_of(shell, "u2") == 1)
    _, out = run(shell, "%stream SHOW STREAMS;")
    assert "PAGEVIEWS" in displayed_text(out)


def test_a_missing_parameter_names_the_python_variable(shell: InteractiveShell) -> None:
    run(shell, PAGEVIEWS)
    result, _ = run(shell, "%%stream\nSELECT * FROM views_per_user WHERE userid = :nobody;")
    assert isinstance(result.error_in_exec, StreamError)
    assert "no Python variable `nobody`" in str(result.error_in_exec)


def test_errors_show_a_short_message_with_the_span_in_the_cell_and_no_traceback(shell: InteractiveShell) -> None:
    result, out = run(shell, "%%stream\nSHOW STREAMS;\n\nSELECT * FROM pageviews WHER userid = 'a';")

    assert isinstance(result.error_in_exec, StreamError)
    assert "ParseError" in out.stdout and "line 3" in out.stdout
    assert "SELECT * FROM pageviews WHER" in out.stdout and "^" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_statements_before_a_failing_one_have_run(shell: InteractiveShell) -> None:
    result, out = run(shell, PAGEVIEWS + "SELECT * FROM no_such_table;")
    assert not result.success
    assert "Stream created" in out.stdout
    assert "NO_SUCH_TABLE" in str(result.error_in_exec)


def test_rerunning_an_unchanged_create_is_a_no_op_that_says_so(shell: InteractiveShell) -> None:
    run(shell, PAGEVIEWS)
    again, out = run(shell, PAGEVIEWS)

    assert again.success
    assert "Stream PAGEVIEWS exists with the same definition: nothing to do." in out.stdout
    assert "Table VIEWS_PER_USER exists with the same definition: nothing to do." in out.stdout
    _, listed = run(shell, "%stream queries")
    assert displayed_text(listed).count("CTAS_VIEWS_PER_USER") == 1



def test_rerunning_a_create_type_cell_keeps_an_unchanged_type_and_replaces_a_changed_one(
        shell: InteractiveShell, engine: EngineService) -> None:
    cell = "%%stream\nCREATE TYPE address AS STRUCT<street VARCHAR{more}>;"
    run(shell, cell.format(more=""))
    again, out = run(shell, cell.format(more=""))
    assert again.success and "Type ADDRESS exists with the same definition: nothing to do." in out.stdout
    changed, out = run(shell, cell.format(more=", number INT"))
    assert changed.success and "Type ADDRESS changed: replaced." in out.stdout
    found = engine.catalog.types.find("ADDRESS")
    assert found is not None and [name for name, _ in found.fields] == ["STREET", "NUMBER"]


def test_rerunning_an_unchanged_create_connector_is_a_no_op_and_a_changed_one_an_error(
        shell: InteractiveShell) -> None:
    connector = ("%%stream\nCREATE SOURCE CONNECTOR gen WITH ('connector.class'='datagen',{space}"
                 "'kafka.topic'='users', 'quickstart'='users', 'iterations'={n});")
    run(shell, connector.format(space=" ", n=10))
    again, out = run(shell, connector.format(space="\n    ", n=10))  # whitespace differs only

    assert again.success
    assert "Connector GEN exists with the same definition: nothing to do." in out.stdout
    changed, _ = run(shell, connector.format(space=" ", n=20))
    assert "Connector GEN already exists" in str(changed.error_in_exec)


def test_rerunning_a_changed_create_as_select_replaces_its_query_and_rebuilds_the_table(
        shell: InteractiveShell, engine: EngineService) -> None:
    run(shell, PAGEVIEWS)
    engine.produce("pageviews", {"pageid": "home"}, key="u1")
    assert eventually(lambda: views_of(shell, "u1") == 1)

    changed, out = run(shell, PAGEVIEWS.replace("COUNT(*) AS n", "COUNT(*) AS n, COUNT(pageid) AS pages"))

    assert changed.success
    assert "Table VIEWS_PER_USER changed: replaced, its query CTAS_VIEWS_PER_USER_0 terminated" in out.stdout
    assert eventually(lambda: views_of(shell, "u1") == 1), "rebuilt from the stream's records"
    assert [q.id for q in engine.catalog.running()] == ["CTAS_VIEWS_PER_USER_1"]


def test_rerunning_a_changed_create_that_queries_read_explains_why_it_cannot(shell: InteractiveShell) -> None:
    run(shell, PAGEVIEWS)
    changed, _ = run(shell, PAGEVIEWS.replace("pageid VARCHAR", "pageid VARCHAR, duration INT"))

    assert isinstance(changed.error_in_exec, StreamError)
    assert "Stream PAGEVIEWS changed, but queries [CTAS_VIEWS_PER_USER_0] read from it" in str(changed.error_in_exec)
    assert "%stream stop" in str(changed.error_in_exec)

def test_stream_queries_lists_the_running_queries_and_stop_ends_them(shell: InteractiveShell) -> None:
    run(shell, PAGEVIEWS)
    listed = shell.run_line_magic("stream", "queries")
    assert listed[["id", "state", "sink"]].to_dict("records") == [
        {"id": "CTAS_VIEWS_PER_USER_0", "state": "RUNNING", "sink": "VIEWS_PER_USER"}]

    _, out = run(shell, "%stream stop CTAS_VIEWS_PER_USER_0")

    assert "Stopped CTAS_VIEWS_PER_USER_0." in out.stdout
    assert shell.run_line_magic("stream", "queries")["state"].tolist() == ["TERMINATED"]


def test_stream_stop_all(shell: InteractiveShell) -> None:
    run(shell, PAGEVIEWS + "CREATE STREAM homes AS SELECT * FROM pageviews WHERE pageid = 'home';")
    _, out = run(shell, "%stream stop all")
    assert "Stopped CTAS_VIEWS_PER_USER_0, CSAS_HOMES_1." in out.stdout
    assert set(shell.run_line_magic("stream", "queries")["state"]) == {"TERMINATED"}


def test_stream_status_and_connect(shell: InteractiveShell, tmp_path: object) -> None:
    _, out = run(shell, "%stream status")
    assert "engine: in memory; background loop: running; running queries: 0" in out.stdout

    _, out = run(shell, f"%stream connect {tmp_path}")
    assert f"Connected to {tmp_path}." in out.stdout
    _, out = run(shell, "%stream status")
    assert f"engine: {tmp_path}; background loop: running" in out.stdout


def test_connecting_to_a_state_directory_again_reopens_its_streams(shell: InteractiveShell, tmp_path: object) -> None:
    run(shell, f"%stream connect {tmp_path}")
    run(shell, PAGEVIEWS)

    run(shell, f"%stream connect {tmp_path}")

    assert shell.run_line_magic("stream", "queries")[["id", "state"]].to_dict("records") == [
        {"id": "CTAS_VIEWS_PER_USER_0", "state": "RUNNING"}]
    _, out = run(shell, "%stream SHOW STREAMS;")
    assert "PAGEVIEWS" in displayed_text(out)


def test_magics_do_not_expand_python_variables(shell: InteractiveShell) -> None:
    shell.user_ns["name"] = "pageviews"
    result, _ = run(shell, "%stream DESCRIBE $name;")
    assert not result.success  # `$name` reached the SQL parser as text, not as `pageviews`


def test_the_cell_line_accepts_only_an_assignment_and_a_chart() -> None:
    assert parse_cell_line("top <<").target == "top"
    assert parse_cell_line("  ").target is None
    with pytest.raises(UsageError, match="unknown options"):
        parse_cell_line("--table wide")


def test_options_are_traitlets_settable_with_config(shell: InteractiveShell) -> None:
    run(shell, "%config StreamMagic.max_rows = 1")
    magic = shell.magics_manager.registry["StreamMagic"]
    assert isinstance(magic, StreamMagic) and magic.max_rows == 1
    run(shell, PAGEVIEWS + "INSERT INTO pageviews (userid, pageid) VALUES ('a', 'x');"
                           "INSERT INTO pageviews (userid, pageid) VALUES ('b', 'x');")
    eventually(lambda: views_of(shell, "b"))

    _, out = run(shell, "%%stream everyone <<\nSELECT * FROM views_per_user;")

    assert len(shell.user_ns["everyone"]) == 2  # all rows are assigned, one is shown
    assert len(out.outputs[0].data["text/plain"].splitlines()) == 2  # header and one row
    run(shell, "%config StreamMagic.max_rows = 200")


def test_a_push_query_the_engine_cannot_run_explains_why(shell: InteractiveShell) -> None:
    run(shell, PAGEVIEWS + "CREATE TABLE users (userid VARCHAR PRIMARY KEY, name VARCHAR) "
                           "WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON', PARTITIONS=1);")
    run(shell, "%%stream\nCREATE TABLE accounts (userid VARCHAR PRIMARY KEY, plan VARCHAR) "
               "WITH (KAFKA_TOPIC='accounts', VALUE_FORMAT='JSON', PARTITIONS=1);")
    result, _ = run(shell, "%%stream\nSELECT u.userid, COUNT(*) AS n FROM users u JOIN users v "
                           "ON u.userid = v.userid GROUP BY u.userid EMIT CHANGES;")
    assert "self joins are not yet supported" in str(result.error_in_exec)


def test_the_background_loop_runs_persistent_queries_while_the_kernel_is_free(
        shell: InteractiveShell, engine: EngineService) -> None:
    run(shell, PAGEVIEWS + "CREATE STREAM homes AS SELECT * FROM pageviews WHERE pageid = 'home';")

    engine.produce("pageviews", {"pageid": "home"}, key="u1")
    engine.produce("pageviews", {"pageid": "cart"}, key="u1")

    homes = eventually(lambda: engine.consume("homes"))  # nobody called run_until_idle
    assert [(r.key, r.value) for r in homes] == [("u1", {"PAGEID": "home"})]


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, as in a kernel, whatever handler an earlier test left
    installed (an in-process server's event loop sets its own)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("before_duckdb", [0.0, 0.5], ids=["while-duckdb-scans", "before-duckdb-starts"])
@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_cancels_a_long_pull_query_inside_duckdb(
        shell: InteractiveShell, engine: EngineService, monkeypatch: pytest.MonkeyPatch, before_duckdb: float) -> None:
    run(shell, PAGEVIEWS)

    scanning, interrupted_at = threading.Event(), [float("inf")]

    def slow_pull(engine: Engine, sql: str, params: object, con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
        """A pull query that scans for minutes (a stand-in for a huge table), on the pulls' connection;
        ``before_duckdb`` seconds of Python first (DuckDB forgets an interrupt that comes before a statement)."""
        scanning.set()
        time.sleep(before_duckdb)
        return con.execute("SELECT count(*) FROM range(100000000000) r WHERE r.range % 7 = 3").df()

    def interrupt_once_scanning() -> None:  # what the kernel's interrupt does, while DuckDB scans
        if scanning.wait(60):
            time.sleep(0.2)
            interrupted_at[0] = time.monotonic()
            _thread.interrupt_main()

    monkeypatch.setattr(service, "pull", slow_pull)
    threading.Thread(target=interrupt_once_scanning, daemon=True).start()

    result, _ = run(shell, "%%stream\nSELECT * FROM views_per_user WHERE userid = 'u1';")

    assert time.monotonic() - interrupted_at[0] < 5
    assert "pull query cancelled" in str(result.error_in_exec)
    engine.produce("pageviews", {"pageid": "home"}, key="u1")  # the background loop goes on
    monkeypatch.undo()
    assert eventually(lambda: views_of(shell, "u1") == 1)


def test_a_pull_query_through_execute_runs_in_the_calling_thread(
        shell: InteractiveShell, engine: EngineService) -> None:
    run(shell, PAGEVIEWS)
    (result,) = engine.execute("SELECT * FROM views_per_user WHERE userid = 'nobody';")
    assert result.message == "0 rows"


def test_explain_shows_the_query_topology_as_a_picture_and_a_table(
        shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shell.display_formatter, "active_types", ["text/plain", "text/html"])  # as in Jupyter
    run(shell, PAGEVIEWS)
    result, out = run(shell, "%%stream\nEXPLAIN CTAS_VIEWS_PER_USER_0;")

    assert result.success
    pictures = [o.data["text/html"] for o in out.outputs if "nbstream-topology" in o.data.get("text/html", "")]
    assert len(pictures) == 1
    assert pictures[0].index("PAGEVIEWS (topic pageviews") < pictures[0].index("group by") \
        < pictures[0].index("VIEWS_PER_USER (topic VIEWS_PER_USER")
    assert "step" in displayed_text(out) and "detail" in displayed_text(out)
