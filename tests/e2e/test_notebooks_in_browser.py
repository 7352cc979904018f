"""Every example notebook, run in a real browser: all cells run without an error, each live table
changes at least five times while the kernel is idle, charts draw, nothing is fetched from the
internet; the quickstart also in Notebook 7 and after a page reload. Screenshots are written for
every notebook (see conftest)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from jupyter_app import NOTEBOOKS, NotebookPage, OpenNotebook, PageLog  # type: ignore[import-not-found]

CHANGES = 5  # each live table shows at least this many changes after the cells ran
LIVE_TIMEOUT = 20.0  # seconds to see them


@dataclass(frozen=True)
class Shows:
    """What a notebook shows once run: live tables and drawn charts."""

    live_tables: int
    charts: int


SHOWN_BY = {
    "quickstart": Shows(live_tables=1, charts=0),
}


def test_every_notebook_says_what_it_shows() -> None:
    assert sorted(SHOWN_BY) == [n.stem for n in NOTEBOOKS]


def check_runs_live(notebook: NotebookPage, shows: Shows, log: PageLog) -> list[list[dict]]:
    """Run all cells and check the notebook's views; returns each live table's recorded values."""
    notebook.run_all()
    assert notebook.cell_errors() == []
    assert notebook.live_table_count() == shows.live_tables
    logs = notebook.watch_live_tables(CHANGES, LIVE_TIMEOUT)
    for i, values in enumerate(logs):
        assert len(values) - 1 >= CHANGES, f"live table {i + 1} changed {len(values) - 1} times: {values}"
        busy = [v["kernel"] for v in values[1:] if v["kernel"] != "idle/connected"]
        assert busy == [], f"live table {i + 1} changed while the kernel was {busy}"
    if shows.charts:
        assert notebook.charts_drawn(shows.charts, timeout=15) >= shows.charts
    assert log.blocked == [], "the notebook fetched from the internet"
    return logs


@pytest.mark.parametrize("name", sorted(SHOWN_BY))
def test_notebook_runs_and_stays_live_in_jupyterlab(name: str, open_notebook: OpenNotebook,
                                                     page_log: PageLog, screenshots: Path) -> None:
    notebook = open_notebook(f"{name}.ipynb")
    try:
        check_runs_live(notebook, SHOWN_BY[name], page_log)
    finally:
        notebook.screenshot(screenshots / f"lab-{name}.png")


def test_quickstart_runs_and_stays_live_in_notebook_7(open_notebook: OpenNotebook, page_log: PageLog,
                                                      screenshots: Path) -> None:
    notebook = open_notebook("quickstart.ipynb", app="notebook")
    try:
        check_runs_live(notebook, SHOWN_BY["quickstart"], page_log)
    finally:
        notebook.screenshot(screenshots / "notebook7-quickstart.png")


def rows_in_status(notebook: NotebookPage) -> int:
    """The rows count of the first live table's status line ("PUSH_0 · RUNNING · 123 rows · …")."""
    status = notebook.page.locator(".nbstream-table .nbstream-status").first.text_content() or ""
    match = re.search(r"(\d+) rows", status)
    assert match, f"no rows count in the status line {status!r}"
    return int(match.group(1))


def test_a_reloaded_page_shows_the_live_table_with_current_data(open_notebook: OpenNotebook, page_log: PageLog,
                                                                screenshots: Path) -> None:
    notebook = open_notebook("quickstart.ipynb")
    check_runs_live(notebook, SHOWN_BY["quickstart"], page_log)
    notebook.command("docmanager:save")
    rows_before = rows_in_status(notebook)
    notebook.page.reload()
    try:
        notebook.wait_ready()
        notebook.page.wait_for_selector(".nbstream-table table", timeout=15_000)
        logs = notebook.watch_live_tables(3, LIVE_TIMEOUT)
        assert len(logs) == 1 and len(logs[0]) - 1 >= 3, f"the reloaded table did not keep changing: {logs}"
        assert rows_in_status(notebook) > rows_before
    finally:
        notebook.screenshot(screenshots / "lab-quickstart-reloaded.png")
