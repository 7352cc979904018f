"""Fixtures of the browser tests: one JupyterLab server over clean copies of every notebook in
``notebooks/``, one headless Chromium (Debian's, through Playwright) that may reach only that server,
and a fresh page per test whose kernels are shut down afterwards.

Screenshots go to ``tests/e2e/screenshots/`` (or ``$NBSTREAM_E2E_SCREENSHOTS``); the server's log
is ``server.log`` beside them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_app import (  # type: ignore[import-not-found]
    CHROMIUM,
    CHROMIUM_ARGS,
    NOTEBOOKS,
    JupyterServer,
    NotebookPage,
    OpenNotebook,
    PageLog,
    block_remote_requests,
    clean_copy,
    start_jupyter,
)
from playwright.sync_api import BrowserContext, sync_playwright


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(os.environ.get("NBSTREAM_E2E_SCREENSHOTS", Path(__file__).parent / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# Module scope: Playwright's sync API keeps an event loop running in this thread while it is open,
# which later tests' asyncio.run() would trip over.
@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory, screenshots: Path) -> Iterator[JupyterServer]:
    root = tmp_path_factory.mktemp("notebooks")
    for notebook in NOTEBOOKS:
        clean_copy(notebook, root / notebook.name)
    server = start_jupyter(root, tmp_path_factory.mktemp("jupyter"), screenshots / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, jupyter: JupyterServer) -> Iterator[tuple[BrowserContext,
                                                                                                  PageLog]]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install it (apt-get install chromium) or set $CHROMIUM")
    log = PageLog()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        block_remote_requests(context, jupyter, log)
        yield context, log
        context.close()


@pytest.fixture
def page_log(browser: tuple[BrowserContext, PageLog]) -> PageLog:
    """Requests the browser was refused and JavaScript errors, since the browser started."""
    return browser[1]


@pytest.fixture
def open_notebook(browser: tuple[BrowserContext, PageLog], jupyter: JupyterServer) -> Iterator[OpenNotebook]:
    """``open_notebook(name, app='lab'|'notebook')``: a new page showing the notebook, kernel idle.
    Afterwards the page closes, every kernel is shut down and the notebook file is clean again (a
    test may have saved it with outputs)."""
    context, log = browser
    log.blocked.clear(), log.console_errors.clear(), log.page_errors.clear()
    pages = []

    def open_(name: str, app: str = "lab") -> NotebookPage:
        page = context.new_page()
        page.on("console", lambda m: log.console_errors.append(m.text[:300]) if m.type == "error" else None)
        page.on("pageerror", lambda e: log.page_errors.append(str(e)[:300]))
        pages.append(page)
        notebook = NotebookPage(page, jupyter, name, app)
        notebook.open()
        return notebook

    yield open_
    for page in pages:
        page.close()
    jupyter.shut_down_kernels()
    for notebook in NOTEBOOKS:
        clean_copy(notebook, jupyter.root / notebook.name)
