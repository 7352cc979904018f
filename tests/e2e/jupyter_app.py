"""A JupyterLab / Notebook 7 server and a notebook page in headless Chromium, for the browser tests.

The server is isolated in a temporary directory (its own config, settings, workspaces and runtime
dir, no news feed or update check) and exposes ``window.jupyterapp``, through which the page runs
commands and reads the notebook model and the kernel's status. Probes are small JavaScript
functions; selectors hold for JupyterLab 4 and Notebook 7 alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Page
from playwright.sync_api import Error as PlaywrightError

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [  # Playwright adds --headless and --user-data-dir itself
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
LIVE_VIEW = ".nbstream-table"  # a live table, or a chart of a push query
CHART_MARKS = ".nbstream-chart svg.marks, .nbstream-chart canvas.marks"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class JupyterServer:
    """A running ``jupyter lab`` (which also serves Notebook 7 under ``/notebooks/``)."""

    root: Path
    base: str
    token: str
    process: subprocess.Popen[bytes]

    def url(self, app: str, notebook: str) -> str:
        if app == "lab":  # reset: no tabs restored from the previous test's workspace
            return f"{self.base}/lab/tree/{urllib.parse.quote(notebook)}?token={self.token}&reset"
        return f"{self.base}/notebooks/{urllib.parse.quote(notebook)}?token={self.token}"

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(f"{self.base}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shut_down_kernels(self) -> None:
        """End every session (and its kernel): a finished notebook's generators stop using the CPU."""
        for session in self.api("GET", "sessions"):
            self.api("DELETE", f"sessions/{session['id']}")

    def stop(self) -> None:
        """Graceful ``/api/shutdown`` (which stops the kernels), then the server's process group."""
        if self.process.poll() is None:
            try:
                self.api("POST", "shutdown")
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_jupyter(root: Path, workdir: Path, log: Path) -> JupyterServer:
    """Start ``python -m jupyterlab`` serving ``root`` on a free local port with a random token."""
    config, settings = workdir / "config", workdir / "lab-settings"
    config.mkdir(parents=True)
    (config / "jupyter_server_config.json").write_text(json.dumps({
        "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                   "extension_manager": "readonly", "expose_app_in_browser": True},
        "JupyterNotebookApp": {"expose_app_in_browser": True},
    }))
    for relative, body in {
        # no "get Jupyter news?" toast over the outputs; every cell attached to the DOM
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                            "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none",
                                                                         "recordTiming": True},
    }.items():
        (settings / relative).parent.mkdir(parents=True, exist_ok=True)
        (settings / relative).write_text(json.dumps(body))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(workdir / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(workdir / "workspaces"),
               IPYTHONDIR=str(workdir / "ipython"), PYTHONUNBUFFERED="1")
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = JupyterServer(root, f"http://127.0.0.1:{port}", token, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {process.returncode}; see {log}")
        try:
            server.api("GET", "status")
            return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"jupyter lab did not answer within 60 s; see {log}")


def clean_copy(source: Path, target: Path) -> None:
    """The notebook without outputs or saved widget state (stale views could satisfy the checks)."""
    notebook = json.loads(source.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    notebook.get("metadata", {}).pop("widgets", None)
    target.write_text(json.dumps(notebook, indent=1))


@dataclass
class PageLog:
    """What the browser did that a test may want to see: blocked requests and JavaScript errors."""

    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


def block_remote_requests(context: BrowserContext, server: JupyterServer, log: PageLog) -> None:
    """Abort (and list) every request not to the local server: a CDN dependency fails here."""
    def guard(route: Any) -> None:
        url = route.request.url
        if url.startswith((server.base + "/", "data:", "blob:")):
            route.continue_()
        else:
            log.blocked.append(url)
            route.abort()
    context.route("**/*", guard)


# -- probes ------------------------------------------------------------------------------------------
_KERNEL_STATUS = """() => {
  const app = window.jupyterapp, w = app && app.shell && app.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return k ? `${k.status}/${k.connectionStatus}` : 'none';
}"""

_CELLS_DONE = """() => {
  const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim());
  return p.length > 0 && p.every(t => /^\\[\\d+\\]:$/.test(t));
}"""

# Per code cell: seconds from the kernel starting it to its reply, from recordTiming's metadata.
_CELL_SECONDS = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.model.cells, out = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    const t = c.getMetadata('execution') || {};
    const start = Date.parse(t['iopub.execute_input']), end = Date.parse(t['shell.execute_reply']);
    out.push(isNaN(start) || isNaN(end) ? null : Math.round(end - start) / 1000);
  }
  return out;
}"""

_CELL_ERRORS = """() => {
  const w = window.jupyterapp.shell.currentWidget, cells = w.content.model.cells, errors = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    for (const o of c.outputs.toJSON())
      if (o.output_type === 'error') errors.push(`cell ${i + 1}: ${o.ename}: ${o.evalue}`);
      else if (o.output_type === 'stream' && o.name === 'stderr') errors.push(`cell ${i + 1} stderr: ${o.text}`);
  }
  return errors;
}"""

# Every 40 ms, the content of each live view's rows and of each drawn chart, logged when it changed
# together with the kernel's status: window.__liveLog = {views: [[{v, kernel, t}, ...], ...], charts: [...]}.
_RECORD_LIVE = """([viewSelector, chartSelector, kernelStatus]) => {
  const status = eval(kernelStatus);
  const digest = (text) => {  // a short fingerprint of a chart's SVG (they are large)
    let h = 0;
    for (let i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) | 0;
    return `${text.length}:${h}`;
  };
  const record = (logs, i, v) => {
    const log = (logs[i] = logs[i] || []);
    if (log.length === 0 || log[log.length - 1].v !== v) log.push({v, kernel: status(), t: performance.now()});
  };
  window.__liveLog = {views: [], charts: []};
  const sample = () => {
    document.querySelectorAll(viewSelector).forEach((el, i) => {
      const rows = el.querySelector('table');
      record(window.__liveLog.views, i, rows ? rows.textContent.trim() : '(no <table>)');
    });
    document.querySelectorAll(chartSelector)
      .forEach((el, i) => record(window.__liveLog.charts, i, digest(el.outerHTML)));
  };
  clearInterval(window.__liveTimer);
  window.__liveTimer = setInterval(sample, 40);
  sample();
}"""

_CHARTS_DRAWN = """(selector) => [...document.querySelectorAll(selector)].filter(e => {
  const r = e.getBoundingClientRect();
  return r.width >= 10 && r.height >= 10 &&
         (e.tagName.toLowerCase() === 'canvas' || !!e.querySelector('.role-mark, .mark-group'));
}).length"""

_COLLAPSE_AND_MEASURE = """() => {
  const app = window.jupyterapp;
  if (app && app.shell && typeof app.shell.collapseLeft === 'function') app.shell.collapseLeft();
  const s = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer')
         || document.querySelector('.jp-Notebook');
  if (!s) return 0;
  s.scrollTop = 0;
  return s.scrollHeight;
}"""


class NotebookPage:
    """One notebook open in JupyterLab (``app='lab'``) or Notebook 7 (``app='notebook'``)."""

    def __init__(self, page: Page, server: JupyterServer, notebook: str, app: str = "lab") -> None:
        self.page, self.server, self.notebook, self.app = page, server, notebook, app
        self.timings: dict[str, float] = {}  # seconds per step, printed as they happen
        self._last = time.monotonic()

    def lap(self, step: str) -> None:
        now = time.monotonic()
        self.timings[step] = round(now - self._last, 2)
        self._last = now
        print(f"{self.app} {self.notebook}: {step} {self.timings[step]:.2f} s", flush=True)

    def open(self, timeout: float = 60) -> None:
        self.page.goto(self.server.url(self.app, self.notebook), timeout=timeout * 1000)
        self.wait_ready(timeout)
        self.lap("open, kernel idle")

    def wait_ready(self, timeout: float = 60) -> None:
        """The notebook is shown and its kernel connected and idle."""
        self.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout * 1000)
        self.page.wait_for_function(f"() => ({_KERNEL_STATUS})() === 'idle/connected'", polling=100,
                                    timeout=timeout * 1000)

    def kernel_status(self) -> str:
        return str(self.page.evaluate(_KERNEL_STATUS))

    def command(self, name: str) -> None:
        self.page.evaluate("name => window.jupyterapp.commands.execute(name)", name)

    def run_all(self, timeout: float = 120) -> None:
        """Run all cells; returns once every code cell has run and the kernel is idle again."""
        self.command("notebook:run-all-cells")
        self.page.wait_for_function(_CELLS_DONE, polling=100, timeout=timeout * 1000)
        self.page.wait_for_function(f"() => ({_KERNEL_STATUS})() === 'idle/connected'", polling=100,
                                    timeout=timeout * 1000)
        self.lap("run all cells")
        print(f"    seconds per code cell: {self.page.evaluate(_CELL_SECONDS)}", flush=True)

    def cell_errors(self) -> list[str]:
        return list(self.page.evaluate(_CELL_ERRORS))

    def live_view_count(self) -> int:
        return int(self.page.locator(LIVE_VIEW).count())

    def watch_live(self, changes: int, timeout: float) -> dict[str, list[list[dict[str, Any]]]]:
        """Record the successive contents of every live view and chart until each changed ``changes``
        times (or ``timeout`` passes); returns, per view and per chart, its values with the kernel's
        status at each change: ``{"views": [...], "charts": [...]}``."""
        self.page.evaluate(_RECORD_LIVE, [LIVE_VIEW, CHART_MARKS, _KERNEL_STATUS])
        deadline = time.monotonic() + timeout
        while True:
            logs: dict[str, list[list[dict[str, Any]]]] = self.page.evaluate("() => window.__liveLog")
            done = all(len(log) > changes for log in logs["views"] + logs["charts"])
            if (done and logs["views"]) or time.monotonic() > deadline:
                break
            self.page.wait_for_timeout(200)
        self.page.evaluate("() => clearInterval(window.__liveTimer)")
        self.lap(f"watch {changes} changes")
        return logs

    def stray_widgets(self) -> list[str]:
        """The classes of ipywidgets shown in outputs (nbstream's views are anywidgets without them)."""
        return list(self.page.locator(".jp-OutputArea-output .jupyter-widgets").evaluate_all(
            "elements => elements.map(e => e.className)"))

    def charts_drawn(self, at_least: int, timeout: float) -> int:
        """How many Vega charts have drawn marks, waiting up to ``timeout`` s for ``at_least``."""
        with contextlib.suppress(PlaywrightError):  # the count below is what the test checks
            self.page.wait_for_function(f"() => ({_CHARTS_DRAWN})({json.dumps(CHART_MARKS)}) >= {at_least}",
                                        polling=100, timeout=timeout * 1000)
        self.lap("charts drawn")
        return int(self.page.evaluate(_CHARTS_DRAWN, CHART_MARKS))

    def screenshot(self, path: Path) -> None:
        """The whole notebook (it scrolls in its own panel, so the viewport grows to its height), and
        each live view."""
        height = int(self.page.evaluate(_COLLAPSE_AND_MEASURE))
        viewport = self.page.viewport_size or {"width": 1280, "height": 900}
        self.page.set_viewport_size({"width": viewport["width"], "height": min(max(height + 250, 900), 6000)})
        self.page.wait_for_timeout(500)  # let the layout settle and paint (else: black, unpainted bands)
        self.page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))
        self.page.set_viewport_size(viewport)
        views = self.page.locator(LIVE_VIEW)
        for i in range(views.count()):  # and each live view by itself: <name>-view-<n>.png
            views.nth(i).screenshot(path=str(path.with_name(f"{path.stem}-view-{i + 1}.png")))
        self.lap("screenshots")


OpenNotebook = Callable[..., NotebookPage]
