"""The magics against a server, through a real IPython shell: ``%stream connect http://…`` and then
every magic as on the embedded engine — statements, pull queries as DataFrames, push queries as the
same live views fed from ``/query-stream`` (their Stop button closing the server's query),
``%stream queries``/``stop``/``status``, completion — and each failure a clear message in the cell,
the kernel still usable."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.completer import provisionalcompleter
from IPython.core.interactiveshell import InteractiveShell
from ipython_cells import displayed_text, eventually, nbstream_shell, run
from server.harness import Server
from servers import PASSWORD, USER, TlsServer

from nbstream.notebook import session
from nbstream.notebook.live import LiveQuery

PAGEVIEWS = """%%stream
CREATE STREAM pageviews (userid VARCHAR KEY, pageid VARCHAR)
  WITH (KAFKA_TOPIC='pageviews', VALUE_FORMAT='JSON', PARTITIONS=1);
CREATE TABLE views AS SELECT userid, COUNT(*) AS n FROM pageviews GROUP BY userid EMIT CHANGES;
"""


@pytest.fixture(scope="module")
def ipython() -> InteractiveShell:
    return nbstream_shell()


@pytest.fixture
def shell(ipython: InteractiveShell) -> Iterator[InteractiveShell]:
    """The shell, on an in-memory engine again after the test."""
    yield ipython
    for option in ("server_user", "server_password", "server_ca_file"):
        run(ipython, f"%config StreamMagic.{option} = None")
    session.connect("memory")


@pytest.fixture(scope="module")
def created(server: Server, ipython: InteractiveShell) -> Server:
    """The server, with the stream and table of PAGEVIEWS made through the magics."""
    run(ipython, f"%stream connect {server.url}")
    result, _ = run(ipython, PAGEVIEWS)
    assert result.success, result.error_in_exec
    session.connect("memory")
    return server


def connect(shell: InteractiveShell, url: str) -> str:
    result, out = run(shell, f"%stream connect {url}")
    assert result.success, result.error_in_exec
    return out.stdout


def error_of(shell: InteractiveShell, cell: str) -> str:
    result, _ = run(shell, cell)
    assert not result.success, f"{cell!r} did not fail"
    return str(result.error_in_exec)


def insert(server: Server, user: str, page: str = "home") -> None:
    server.ksql(f"INSERT INTO pageviews (userid, pageid) VALUES ('{user}', '{page}');")


def push_queries_on(server: Server) -> list[str]:
    return [q["id"] for q in server.ksql("SHOW QUERIES;")[0]["queries"] if q["queryType"] == "PUSH"]


def still_usable(shell: InteractiveShell) -> None:
    """The kernel answers the next cell."""
    result, _ = run(shell, "%%stream\nSHOW STREAMS;")
    assert result.success, result.error_in_exec


def test_connect_says_where_and_status_asks_the_server(shell: InteractiveShell, created: Server) -> None:
    assert re.match(rf"Connected to {created.url} \(ksqlDB 0\.29\.0, RUNNING\)\.", connect(shell, created.url))
    _, out = run(shell, "%stream status")
    assert out.stdout.startswith(f"server: {created.url} (ksqlDB 0.29.0, RUNNING); push queries of this session: 0")


def test_statements_run_on_the_server_and_a_pull_query_with_a_parameter_is_a_dataframe(
        shell: InteractiveShell, created: Server) -> None:
    connect(shell, created.url)
    insert(created, "u1")
    shell.user_ns["who"] = "u1"

    def pulled() -> list[dict[str, Any]]:
        result, _ = run(shell, "%%stream top <<\nSELECT * FROM views WHERE userid = :who;")
        assert result.success, result.error_in_exec
        assert isinstance(shell.user_ns["top"], pd.DataFrame)
        return list(shell.user_ns["top"].to_dict("records"))

    assert eventually(pulled) == [{"USERID": "u1", "N": 1}]
    _, out = run(shell, "%%stream\nSHOW TABLES;")
    assert "VIEWS" in displayed_text(out)


def test_a_push_query_is_a_live_view_fed_by_the_server_and_stop_closes_it_there(
        shell: InteractiveShell, created: Server) -> None:
    connect(shell, created.url)
    result, _ = run(shell, "%%stream --chart bar x=USERID y=N live <<\nSELECT * FROM views EMIT CHANGES;")
    assert result.success, result.error_in_exec
    live: LiveQuery = shell.user_ns["live"]
    assert live.buffer.is_table and live.view.spec and live.id in push_queries_on(created)
    insert(created, "u2")
    insert(created, "u2")
    eventually(lambda: {"USERID": "u2", "N": 2} in live.to_pandas().to_dict("records"))
    eventually(lambda: live.buffer.seq > 0)  # deltas went to the view (flushed at the view's pace)

    live._on_message(live.view, {"type": "stop"}, None)  # the Stop button

    assert live.state == "STOPPED" and live.view.state == "STOPPED"
    eventually(lambda: live.id not in push_queries_on(created))
    # the HTTP stream of the query ends once its handler has sent the last frame, just after
    eventually(lambda: "nbstream_push_queries_open 0" in created.request("GET", "/metrics").body.decode())


def test_queries_and_stop_commands_act_on_the_server(shell: InteractiveShell, created: Server) -> None:
    connect(shell, created.url)
    run(shell, "%%stream live <<\nSELECT * FROM pageviews EMIT CHANGES;")
    live: LiveQuery = shell.user_ns["live"]
    result, _ = run(shell, "%stream queries")
    assert {"CTAS_VIEWS_0", live.id} <= set(result.result["id"])
    _, out = run(shell, f"%stream stop {live.id}")
    assert out.stdout.strip() == f"Stopped {live.id}."
    eventually(lambda: live.id not in push_queries_on(created))


def test_completion_offers_the_servers_names(shell: InteractiveShell, created: Server) -> None:
    connect(shell, created.url)
    text = "%%stream\nSELECT * FROM VIE"
    with provisionalcompleter():
        found = {c.text: c.type for c in shell.Completer.completions(text, len(text))}
    assert found == {"VIEWS": "table"}


def test_what_needs_the_embedded_engine_says_so(shell: InteractiveShell, created: Server) -> None:
    connect(shell, created.url)
    message = error_of(shell, "import nbstream\nnbstream.current_engine().source('pageviews', [])")
    assert "`source` needs the embedded engine" in message and created.url in message
    message = error_of(shell, "nbstream.current_engine().con")
    assert "`con` needs the embedded engine" in message
    assert len(run(shell, "nbstream.current_engine().query('SELECT * FROM views;')")[0].result) >= 0


def test_export_on_a_server_says_to_export_the_notebook_file_and_writes_nothing(
        shell: InteractiveShell, created: Server, tmp_path: Path) -> None:
    connect(shell, created.url)
    message = error_of(shell, f"%stream export {tmp_path / 'job'}")
    assert "nbstream export NOTEBOOK.ipynb" in message
    assert not (tmp_path / "job").exists()
    still_usable(shell)


# -- errors -----------------------------------------------------------------------------------------------


def test_a_statement_error_is_the_servers_message_and_statement(shell: InteractiveShell, created: Server) -> None:
    connect(shell, created.url)
    message = error_of(shell, "%%stream\nSHOW STREAMS;\nDROP TABLE nowhere;")
    assert message.startswith("ServerStatementError: ") and "NOWHERE" in message
    assert message.endswith("Statement: DROP TABLE nowhere;")
    still_usable(shell)


def test_a_server_that_cannot_be_reached_leaves_the_engine_in_place(shell: InteractiveShell) -> None:
    before = session.current_connection()
    message = error_of(shell, "%stream connect http://127.0.0.1:9")
    assert message == "ServerUnavailable: cannot reach the server at http://127.0.0.1:9: [Errno 111] Connection refused"
    assert session.current_connection() is before
    still_usable(shell)


def test_a_wrong_password_is_refused_and_the_engine_kept(shell: InteractiveShell, guarded: Server,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KSQL_PASSWORD", "guess")
    run(shell, f"%config StreamMagic.server_user = '{USER}'\n%config StreamMagic.server_password = 'env:KSQL_PASSWORD'")
    before = session.current_connection()
    message = error_of(shell, f"%stream connect {guarded.url}")
    assert message == (f"ServerAuthError: Unauthorized: {guarded.url} refused the user name and password "
                       "(error 40100)")
    assert session.current_connection() is before
    monkeypatch.setenv("KSQL_PASSWORD", PASSWORD)
    assert connect(shell, guarded.url).startswith(f"Connected to {guarded.url}")
    still_usable(shell)


def test_a_literal_password_is_refused_so_it_stays_out_of_the_notebook(shell: InteractiveShell,
                                                                      guarded: Server) -> None:
    run(shell, f"%config StreamMagic.server_user = '{USER}'\n%config StreamMagic.server_password = '{PASSWORD}'")
    message = error_of(shell, f"%stream connect {guarded.url}")
    assert "server_password must be a reference, env:NAME or file:PATH" in message


def test_tls_with_a_ca_that_did_not_sign_the_certificate_fails_clearly(shell: InteractiveShell,
                                                                       tls: TlsServer) -> None:
    run(shell, f"%config StreamMagic.server_ca_file = '{tls.other_ca}'")
    message = error_of(shell, f"%stream connect {tls.url}")
    assert message.startswith(f"ServerUnavailable: TLS with {tls.url} failed: ")
    assert "CERTIFICATE_VERIFY_FAILED" in message
    run(shell, f"%config StreamMagic.server_ca_file = '{tls.ca_file}'")
    assert connect(shell, tls.url).startswith(f"Connected to {tls.url}")
    still_usable(shell)


def test_the_server_going_away_during_a_push_query_shows_in_its_view_and_the_next_cell(
        shell: InteractiveShell, own_server: Server) -> None:
    connect(shell, own_server.url)
    run(shell, "%%stream\nCREATE STREAM s (v INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);")
    run(shell, "%%stream live <<\nSELECT * FROM s EMIT CHANGES;")
    live: LiveQuery = shell.user_ns["live"]

    own_server.stop()

    eventually(lambda: live.state == "ERROR")
    assert "The server is shutting down" in (live.error or "") and live.view.state == "ERROR"
    assert "The server is shutting down" in live.view.status
    message = error_of(shell, "%%stream\nSHOW STREAMS;")
    assert message == f"ServerUnavailable: cannot reach the server at {own_server.url}: [Errno 111] Connection refused"
    assert connect(shell, "memory").startswith("Connected to an in-memory engine")
    still_usable(shell)


def test_a_cell_run_again_creates_nothing_twice_and_a_changed_create_is_the_servers_to_refuse(
        shell: InteractiveShell, created: Server) -> None:
    connect(shell, created.url)
    result, out = run(shell, PAGEVIEWS)
    assert result.success, result.error_in_exec
    assert out.stdout.splitlines() == ["Stream PAGEVIEWS exists with the same definition: nothing to do.",
                                       "Table VIEWS exists with the same definition: nothing to do."]
    message = error_of(shell, PAGEVIEWS.replace("PARTITIONS=1", "PARTITIONS=2"))
    assert "A stream with the same name already exists" in message
