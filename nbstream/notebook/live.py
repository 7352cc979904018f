"""Push queries in the notebook: a :class:`PushQuery` handle fed by the background loop, shown by a
:class:`LiveTable` anywidget (its JavaScript is inline: no CDN).

The background thread applies each result batch to a :class:`ResultBuffer` (a STREAM result is a
capped append, a TABLE result an upsert by key where tombstones remove the row) and, at most
every :data:`FLUSH_INTERVAL` seconds, hands a snapshot of it to the kernel's event loop, which sets
the widget's traitlets (widgets are only touched from that loop). A view that renders later, or
after a reload, gets the current snapshot from the widget state.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import anywidget
import pyarrow as pa
from traitlets import List, Unicode

from nbstream.runtime.query import QueryRunner

FLUSH_INTERVAL = 0.1  # ≤ 10 updates per second per view
DEFAULT_CAP = 200

_ESM = r"""
function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "nbstream-table";
  const bar = document.createElement("div");
  bar.className = "nbstream-bar";
  const status = document.createElement("span");
  status.className = "nbstream-status";
  const stop = document.createElement("button");
  stop.className = "nbstream-stop";
  stop.textContent = "Stop";
  stop.addEventListener("click", () => model.send({ type: "stop" }));
  bar.append(status, stop);
  const table = document.createElement("table");
  const head = table.createTHead();
  const body = table.createTBody();
  root.append(bar, table);
  el.appendChild(root);

  function draw() {
    head.replaceChildren();
    const header = head.insertRow();
    for (const name of model.get("columns")) {
      const th = document.createElement("th");
      th.textContent = name;
      header.appendChild(th);
    }
    body.replaceChildren();
    for (const row of model.get("rows")) {
      const tr = body.insertRow();
      for (const value of row) tr.insertCell().textContent = value === null ? "" : String(value);
    }
    status.textContent = model.get("status");
    stop.disabled = model.get("state") !== "RUNNING";
  }
  const events = ["change:columns", "change:rows", "change:status", "change:state"];
  for (const event of events) model.on(event, draw);
  draw();
  return () => { for (const event of events) model.off(event, draw); };
}
export default { render };
"""

_CSS = """
.nbstream-table { font-family: var(--jp-code-font-family, monospace); font-size: 12px; }
.nbstream-table .nbstream-bar { display: flex; gap: 1em; align-items: center; margin-bottom: 4px; }
.nbstream-table table { border-collapse: collapse; }
.nbstream-table th, .nbstream-table td { padding: 1px 8px; border-bottom: 1px solid #ddd; text-align: left; }
"""


class LiveTable(anywidget.AnyWidget):
    """A table that shows the latest rows of a push query, its status line and a Stop button."""

    _esm = _ESM
    _css = _CSS
    columns = List(Unicode()).tag(sync=True)
    rows = List(List()).tag(sync=True)
    status = Unicode("").tag(sync=True)
    state = Unicode("RUNNING").tag(sync=True)


class ResultBuffer:
    """The rows a view shows: the last ``cap`` rows of a STREAM result, or for a TABLE result the
    latest row per key (a tombstone removes its key), capped to the ``cap`` most recently changed."""

    def __init__(self, columns: Sequence[str], key_columns: Sequence[str], is_table: bool, cap: int) -> None:
        self.columns = list(columns)
        self.key_index = [self.columns.index(k) for k in key_columns] if is_table else []
        self.is_table = is_table
        self.cap = cap
        self._rows: OrderedDict[Any, list[Any]] = OrderedDict()
        self._sequence = itertools.count()

    def apply(self, batch: pa.Table) -> None:
        """Apply a result batch (columns ``ROWTIME``, ``__deleted`` and the result's columns)."""
        if not self.is_table:
            batch = batch.slice(max(0, batch.num_rows - self.cap))
        deleted = batch.column("__deleted").to_pylist()
        values = [batch.column(name).to_pylist() for name in self.columns]
        for i, tombstone in enumerate(deleted):
            row = [_jsonable(column[i]) for column in values]
            key = tuple(row[k] for k in self.key_index) if self.is_table else next(self._sequence)
            self._rows.pop(key, None)
            if not tombstone:
                self._rows[key] = row
        while len(self._rows) > self.cap:
            self._rows.popitem(last=False)

    def rows(self) -> list[list[Any]]:
        return list(self._rows.values())


def _jsonable(value: Any) -> Any:
    """``value`` as widget state can carry it (timestamps, decimals, structs as text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


Deliver = Callable[[Callable[[], None]], None]


def kernel_deliverer() -> Deliver:
    """How the background thread hands widget updates to the kernel: onto its running event loop,
    or (no loop runs, as in a plain IPython shell) by calling them directly."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return lambda update: update()

    def on_loop(update: Callable[[], None]) -> None:
        loop.call_soon_threadsafe(update)

    return on_loop


class PushQuery:
    """A running push query of the notebook: ``.stop()``, ``.state``, ``.error``, ``.view``."""

    _ids = itertools.count()

    def __init__(self, runner: QueryRunner, sql: str, deliver: Deliver, cap: int = DEFAULT_CAP) -> None:
        self.id = f"PUSH_{next(self._ids)}"
        self.sql = sql
        self.runner = runner
        shape = runner.result_shape
        columns = list(shape.columns)
        self.buffer = ResultBuffer(columns, list(shape.keys), shape.is_table, cap)
        self.state = "RUNNING"
        self.error: str | None = None
        self.rows_seen = 0
        self.started = time.monotonic()
        self.view = LiveTable(columns=columns)
        self.view.on_msg(self._on_message)
        self._deliver = deliver
        self._dirty = True
        self._flushed = 0.0
        self._lock = threading.Lock()

    # -- called by the background loop (under the engine lock) --------------------------------------
    def step(self) -> int:
        """Fetch and apply one batch; returns the records it produced (0: nothing new)."""
        if self.state != "RUNNING":
            return 0
        try:
            batch = self.runner.fetch_rows()
        except Exception as error:
            self.fail(error)
            return 0
        if batch is None or batch.num_rows == 0:
            return 0
        limit = self.runner.result_shape.limit
        if limit is not None:
            batch = batch.slice(0, max(0, limit - self.rows_seen))
        with self._lock:
            self.buffer.apply(batch)
            self.rows_seen += batch.num_rows
            self._dirty = True
        if limit is not None and self.rows_seen >= limit:
            self._finish("DONE")
        return batch.num_rows

    def flush(self, force: bool = False) -> None:
        """Send the view a snapshot if something changed and the last one is old enough."""
        now = time.monotonic()
        with self._lock:
            if not self._dirty or (not force and now - self._flushed < FLUSH_INTERVAL):
                return
            self._dirty, self._flushed = False, now
            rows, status, state = self.buffer.rows(), self.status_line(), self.state
        self._deliver(lambda: self._show(rows, status, state))

    def fail(self, error: Exception) -> None:
        self.error = f"{type(error).__name__}: {error}"
        self._finish("ERROR")

    # -- the user's side -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the query (safe from any thread); the view keeps its last rows."""
        if self.state == "RUNNING":
            self._finish("STOPPED")

    def status_line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        line = f"{self.id} · {self.state} · {self.rows_seen} rows · {self.rows_seen / elapsed:.1f} rows/s"
        return line + (f" · {self.error}" if self.error else "")

    def _finish(self, state: str) -> None:
        """Leave RUNNING; the background loop then closes the runner (never while it fetches)."""
        with self._lock:
            self.state = state
            self._dirty = True
        self.flush(force=True)

    def _show(self, rows: list[list[Any]], status: str, state: str) -> None:
        with self.view.hold_sync():
            self.view.rows = rows
            self.view.status = status
            self.view.state = state

    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "stop":
            self.stop()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.view._repr_mimebundle_(**kwargs)
