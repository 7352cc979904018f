"""Every example notebook runs top to bottom without an error in an IPython shell (magics included)
on a fresh embedded engine, each code cell as the kernel would run it. Their live views are checked
in a real browser by tests/e2e."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing import globalipapp
from IPython.utils.capture import capture_output

from nbstream.notebook import session

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))


EXAMPLES = {"quickstart", "ride_sharing_map", "stock_prices", "game_scoreboard", "marketplace_inventory"}


def test_the_example_notebooks_are_there() -> None:
    assert {n.stem for n in NOTEBOOKS} >= EXAMPLES


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    ip = globalipapp.get_ipython()  # the module's attribute: the same shell on every call
    if "stream" not in ip.magics_manager.magics["cell"]:
        ip.run_line_magic("load_ext", "nbstream")
    session.connect("memory")
    yield ip
    session.disconnect()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(notebook: Path, shell: InteractiveShell, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where a notebook writes files (the quickstart exports its job)
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    for number, cell in enumerate(cells, 1):
        source = "".join(cell["source"])
        with capture_output() as captured:
            result = shell.run_cell(source, store_history=True, cell_id=cell.get("id"))
        assert result.success, f"code cell {number} failed: {result.error_before_exec or result.error_in_exec}\n" \
                               f"{source}\n{captured.stdout}{captured.stderr}"
        assert captured.stderr == "", f"code cell {number} wrote to stderr:\n{captured.stderr}"
    if notebook.stem == "quickstart":  # it ends by exporting what runs as a job
        assert "CREATE TABLE views_per_user AS" in (tmp_path / "quickstart-job" / "queries.sql").read_text()

