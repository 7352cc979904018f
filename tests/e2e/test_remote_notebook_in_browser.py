"""The quickstart notebook against a server, in a real browser: its first cell also says
``%stream connect http://127.0.0.1:PORT`` to an ``nbstream serve`` this test starts, so its
connector, stream, table and queries live on the server. The live table and chart change at least
five times while the kernel is idle, fed by the server's push query; the Stop button closes that
query on the server (``/metrics`` and SHOW QUERIES say so)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_app import NOTEBOOKS, JupyterServer, OpenNotebook, PageLog, clean_copy  # type: ignore[import-not-found]
from server.harness import Server, eventually, running_server
from test_notebooks_in_browser import SHOWN_BY, check_runs_live  # type: ignore[import-not-found]

QUICKSTART = next(n for n in NOTEBOOKS if n.stem == "quickstart")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path / "server") as running:
        yield running


def connected_copy(server: Server, jupyter: JupyterServer) -> str:
    """The quickstart, cleaned, with ``%stream connect`` after ``%load_ext`` in its first code cell, and
    without its ``%stream export`` cell: that exports the kernel's own engine, so on a server it refuses
    and names ``nbstream export NOTEBOOK.ipynb`` (tests/client/test_remote_notebook.py)."""
    name = "quickstart_on_a_server.ipynb"
    target = jupyter.root / name
    clean_copy(QUICKSTART, target)
    notebook = json.loads(target.read_text())
    first = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    assert "".join(first["source"]).strip() == "%load_ext nbstream"
    first["source"] = ["%load_ext nbstream\n", f"%stream connect {server.url}"]
    exports = [cell for cell in notebook["cells"] if "".join(cell["source"]).startswith("%stream export")]
    assert len(exports) == 1
    notebook["cells"].remove(exports[0])
    target.write_text(json.dumps(notebook, indent=1))
    return name


def push_queries(server: Server) -> list[str]:
    return [q["id"] for q in server.ksql("SHOW QUERIES;")[0]["queries"] if q["queryType"] == "PUSH"]


def open_push_queries(server: Server) -> int:
    metrics = server.request("GET", "/metrics").body.decode()
    line = next(line for line in metrics.splitlines() if line.startswith("nbstream_push_queries_open "))
    return int(float(line.split()[1]))


def test_the_quickstart_on_a_server_stays_live_and_its_stop_button_closes_the_servers_query(
        server: Server, jupyter: JupyterServer, open_notebook: OpenNotebook, page_log: PageLog,
        screenshots: Path) -> None:
    notebook = open_notebook(connected_copy(server, jupyter))
    try:
        check_runs_live(notebook, SHOWN_BY["quickstart"], page_log)
        assert "VIEWS_PER_USER" in {t["name"] for t in server.ksql("SHOW TABLES;")[0]["tables"]}
        (query_id,) = push_queries(server)
        assert open_push_queries(server) == 1
        status = notebook.page.locator(".nbstream-table .nbstream-status").first.text_content() or ""
        assert status.startswith(f"{query_id} · RUNNING") and server.url in status

        notebook.page.locator(".nbstream-table .nbstream-stop").first.click()

        notebook.page.wait_for_function(
            "() => (document.querySelector('.nbstream-table .nbstream-status') || {}).textContent"
            "?.includes('STOPPED')", timeout=15_000)
        eventually(lambda: push_queries(server) == [], timeout=15)
        assert open_push_queries(server) == 0
    finally:
        notebook.screenshot(screenshots / "lab-quickstart-on-a-server.png")
