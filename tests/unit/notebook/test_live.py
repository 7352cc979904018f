"""Push queries in ``%%stream`` render a live table fed by the background loop (its Python side:
the widget's traitlets; the browser side is tested end to end)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from ipython_cells import eventually, run

from nbstream.notebook.live import LiveQuery, LiveTable
from nbstream.runtime.service import EngineService

SOURCES = """%%stream
CREATE STREAM pageviews (userid VARCHAR KEY, pageid VARCHAR)
  WITH (KAFKA_TOPIC='pageviews', VALUE_FORMAT='JSON', PARTITIONS=1);
CREATE TABLE users (userid VARCHAR PRIMARY KEY, name VARCHAR)
  WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON', PARTITIONS=1);
"""


def push(shell: InteractiveShell, sql: str) -> LiveQuery:
    """Run a push-query cell that assigns its handle to ``live``."""
    result, out = run(shell, f"%%stream live <<\n{sql}")
    assert result.success, result.error_in_exec
    assert isinstance(out.outputs[0].data, dict)  # the widget was displayed
    handle = shell.user_ns["live"]
    assert isinstance(handle, LiveQuery) and isinstance(handle.view, LiveTable)
    return handle


def shown(live: LiveQuery) -> list[list[Any]]:
    """The rows every view of ``live`` holds (the published snapshot)."""
    return [row for _, row in live.buffer.snapshot().rows]


def shows_rows(live: LiveQuery, count: int) -> bool:
    """Whether the view's status line reports ``count`` result rows so far."""
    return f" · {count} rows · " in live.view.status


@pytest.fixture
def sources(shell: InteractiveShell, engine: EngineService) -> EngineService:
    assert run(shell, SOURCES)[0].success
    return engine


def test_a_stream_push_query_appends_rows_to_its_live_table(shell: InteractiveShell, sources: EngineService) -> None:
    live = push(shell, "SELECT userid, pageid FROM pageviews EMIT CHANGES;")
    assert live.view.columns == ["USERID", "PAGEID"]

    for page in ("home", "cart", "home"):
        sources.produce("pageviews", {"pageid": page}, key="u1")

    eventually(lambda: len(shown(live)) == 3)
    assert shown(live) == [["u1", "home"], ["u1", "cart"], ["u1", "home"]]
    assert eventually(lambda: shows_rows(live, 3))
    assert live.view.status.startswith(f"{live.id} · RUNNING")


def test_the_live_table_keeps_the_latest_rows_of_a_stream(shell: InteractiveShell, sources: EngineService) -> None:
    run(shell, "%config StreamMagic.live_rows = 2")
    try:
        live = push(shell, "SELECT pageid FROM pageviews EMIT CHANGES;")
    finally:
        run(shell, "%config StreamMagic.live_rows = 200")
    for page in ("a", "b", "c"):
        sources.produce("pageviews", {"pageid": page}, key="u1")

    eventually(lambda: shows_rows(live, 3))
    assert shown(live) == [["b"], ["c"]]


def test_a_table_push_query_upserts_by_key_and_tombstones_remove_rows(
        shell: InteractiveShell, sources: EngineService) -> None:
    live = push(shell, "SELECT * FROM users EMIT CHANGES;")

    sources.produce("users", {"name": "Ann"}, key="u1")
    sources.produce("users", {"name": "Bob"}, key="u2")
    sources.produce("users", {"name": "Annie"}, key="u1")
    eventually(lambda: shows_rows(live, 3))
    assert sorted(shown(live)) == [["u1", "Annie"], ["u2", "Bob"]]

    sources.produce("users", None, key="u2")
    eventually(lambda: shows_rows(live, 4))
    assert shown(live) == [["u1", "Annie"]]


def test_an_aggregating_push_query_keeps_one_row_per_key_and_window(
        shell: InteractiveShell, sources: EngineService) -> None:
    live = push(shell, "SELECT userid, COUNT(*) AS n FROM pageviews WINDOW TUMBLING (SIZE 1 SECOND) "
                       "GROUP BY userid EMIT CHANGES;")
    assert live.view.columns == ["USERID", "WINDOWSTART", "WINDOWEND", "N"]

    for ts in (100, 200, 1100):
        sources.produce("pageviews", {"pageid": "home"}, key="u1", timestamp=ts)
    # the record cache may write the first window's count of 1 or not, as the records fall into batches
    assert eventually(lambda: sorted(shown(live)) == [["u1", 0, 1000, 2], ["u1", 1000, 2000, 1]])


def test_limit_ends_the_push_query(shell: InteractiveShell, sources: EngineService) -> None:
    live = push(shell, "SELECT pageid FROM pageviews EMIT CHANGES LIMIT 2;")
    for page in ("a", "b", "c"):
        sources.produce("pageviews", {"pageid": page}, key="u1")

    eventually(lambda: live.view.state == "DONE")
    assert shown(live) == [["a"], ["b"]]


def test_the_stop_button_stops_the_query(shell: InteractiveShell, sources: EngineService) -> None:
    live = push(shell, "SELECT pageid FROM pageviews EMIT CHANGES;")
    assert shell.run_line_magic("stream", "queries")["id"].tolist() == [live.id]

    live.view._handle_custom_msg({"type": "stop"}, [])  # what the button's click sends

    assert eventually(lambda: live.view.state == "STOPPED")
    sources.produce("pageviews", {"pageid": "late"}, key="u1")
    eventually(lambda: live.id not in sources.push_queries)
    assert shown(live) == []
    assert shell.run_line_magic("stream", "queries").empty


def test_stream_stop_all_stops_push_queries_too(shell: InteractiveShell, sources: EngineService) -> None:
    live = push(shell, "SELECT pageid FROM pageviews EMIT CHANGES;")
    shell.run_line_magic("stream", "stop all")
    assert live.state == "STOPPED"


def test_a_failing_push_query_shows_its_error_in_the_view(shell: InteractiveShell, sources: EngineService) -> None:
    live = push(shell, "SELECT pageid FROM pageviews EMIT CHANGES;")
    with sources.lock:
        live.query.runner.con.close()  # the query's cursor is gone: its next batch fails
    sources.produce("pageviews", {"pageid": "a"}, key="u1")

    assert eventually(lambda: live.view.state == "ERROR")
    assert live.error is not None and live.error in live.view.status


def test_a_failing_persistent_query_is_marked_and_reported(
        shell: InteractiveShell, sources: EngineService, monkeypatch: pytest.MonkeyPatch) -> None:
    run(shell, "%%stream\nCREATE STREAM homes AS SELECT * FROM pageviews WHERE pageid = 'home';")
    runner = sources.queries.runner("CSAS_HOMES_0")

    def broken_batch() -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(runner, "step", broken_batch)

    listed = eventually(lambda: (frame := shell.run_line_magic("stream", "queries"))[
        frame["state"] == "ERROR"].to_dict("records"))
    assert listed[0]["id"] == "CSAS_HOMES_0" and listed[0]["error"] == "RuntimeError: disk on fire"
    _, out = run(shell, "%stream status")
    assert "failed: CSAS_HOMES_0: RuntimeError: disk on fire" in out.stdout


def test_the_widget_javascript_ships_with_the_package_with_stable_css_hooks() -> None:
    esm = LiveTable._esm
    assert isinstance(esm, str) and "export default" in esm
    for hook in ("nbstream-table", "nbstream-status", "nbstream-chart", "nbstream-stop"):
        assert f'"{hook}"' in esm
    assert not re.search(r"https?://", esm)  # nothing is loaded from a CDN
    assert not re.search(r"https?://", str(LiveTable._css))


def test_rerunning_a_push_query_cell_stops_the_query_it_started(
        shell: InteractiveShell, sources: EngineService) -> None:
    cell = "%%stream live <<\nSELECT pageid FROM pageviews EMIT CHANGES;"
    with capture_output():
        shell.run_cell(cell, cell_id="cell-7")
    first = shell.user_ns["live"]
    with capture_output() as again:
        shell.run_cell(cell, cell_id="cell-7")

    assert first.state == "STOPPED"
    assert f"Stopped {first.id} (started by this cell before)." in again.stdout
    assert shell.user_ns["live"].state == "RUNNING"
    with capture_output():
        shell.run_cell(cell, cell_id="another-cell")
    assert shell.user_ns["live"].state == "RUNNING"
    assert len([q for q in sources.push_queries.values() if q.state == "RUNNING"]) == 2


def test_one_cell_may_start_several_push_queries(shell: InteractiveShell, sources: EngineService) -> None:
    with capture_output():
        shell.run_cell("%stream SELECT pageid FROM pageviews EMIT CHANGES;\n"
                       "%stream SELECT userid FROM pageviews EMIT CHANGES;", cell_id="python-cell")
    assert [q.state for q in sources.push_queries.values()] == ["RUNNING", "RUNNING"]


def test_the_python_api_starts_a_push_query_on_the_engine_the_magics_use(
        shell: InteractiveShell, sources: EngineService) -> None:
    from nbstream.notebook import current_engine, push_query

    assert current_engine() is sources
    live = push_query("SELECT pageid FROM pageviews WHERE userid = :who EMIT CHANGES;", {"who": "u2"})
    for user in ("u1", "u2"):
        sources.produce("pageviews", {"pageid": f"p-{user}"}, key=user)
    eventually(lambda: shows_rows(live, 1))
    assert live.to_pandas().to_dict("records") == [{"PAGEID": "p-u2"}]
    live.stop()
    assert live.status["state"] == "STOPPED"


def test_when_the_query_ends_the_cell_output_is_refreshed_with_a_static_picture_of_its_rows(
        shell: InteractiveShell, sources: EngineService) -> None:
    with capture_output() as out:
        shell.run_cell("%%stream live <<\nSELECT pageid FROM pageviews EMIT CHANGES LIMIT 2;")
        for page in ("a", "b"):
            sources.produce("pageviews", {"pageid": page}, key="u1")
        eventually(lambda: any(output.update for output in out.outputs))
    first, update = out.outputs[0], [output for output in out.outputs if output.update][-1]
    assert "widget-view" in str(first.data.keys()) and "0 rows" in first.data["text/html"]
    assert update.transient == first.transient  # the same display, updated
    assert "DONE · 2 rows" in update.data["text/html"] and "<td>b</td>" in update.data["text/html"]
