"""Push queries in the notebook: a :class:`PushQuery` handle fed by the background loop, shown by
:class:`LiveTable` anywidgets (a table, a chart, or both; JavaScript in ``static/``, no CDN).

The background thread applies each result batch to the query's
:class:`~nbstream.notebook.deltas.ResultBuffer` and, at most every :data:`FLUSH_INTERVAL` seconds,
hands the next delta and the status line to the kernel's event loop, which sends them to every view
(widgets are only touched from that loop).

The protocol between kernel and view (custom widget messages; ``seq`` numbers the deltas, 0 is
the empty result):

- kernel → view ``{"type": "delta", "seq": n, "remove": [key, …], "insert": [[key, row], …]}``:
  the view drops every key in ``remove``, then appends each inserted row under its key (a key
  inserted again moves to the end). A view applies delta ``n`` only when it holds ``n - 1``; on a
  gap it asks for a snapshot. A row is a list of JSON values in the order of the ``columns`` trait.
- kernel → view ``{"type": "snapshot", "seq": n, "rows": [[key, row], …]}``: every row at ``n``,
  in view order; a view holding less than ``n`` replaces its rows, others ignore it.
- kernel → view ``{"type": "vega"}`` with one buffer, the Vega runtime script (it sets
  ``globalThis.nbstreamVega``); ``{"type": "vega_error", "message": …}`` when it cannot be built.
- view → kernel ``{"type": "snapshot_request", "seq": n}`` (``-1`` when it renders),
  ``{"type": "vega_request"}`` (once per page), ``{"type": "stop"}`` (the Stop button).

Traits: ``columns``, ``status`` (the status line), ``state`` (RUNNING, STOPPED, DONE, ERROR),
``spec`` (a Vega-Lite spec over the dataset ``nbstream``, empty: no chart), ``show_table`` and
``keyed`` (a TABLE result: its rows are shown in key order, a STREAM's in arrival order).
Keys are the JSON text of a TABLE row's key values, or ``#n`` for the n-th row of a STREAM; chart
rows carry theirs in ``__key``. CSS hooks: root ``nbstream-table``, ``nbstream-status``,
``nbstream-stop``, ``nbstream-chart``, ``nbstream-error``, rows table ``nbstream-rows``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import html
import itertools
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

import anywidget
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from IPython.display import DisplayHandle, display
from traitlets import Bool, Dict, List, Unicode

from nbstream.errors import ExecutionError
from nbstream.notebook import chart as charts
from nbstream.notebook.deltas import Delta, ResultBuffer, jsonable_row
from nbstream.runtime.query import QueryRunner

if TYPE_CHECKING:
    import altair as alt  # imported when a chart is drawn (by chart.py): it takes seconds

FLUSH_INTERVAL = 0.1  # ≤ 10 updates per second per view
STATUS_INTERVAL = 1.0  # a status line with no new rows is refreshed at most once per second
RATE_WINDOW = 5.0  # events/s is measured over the last few seconds
DEFAULT_CAP = 200
FALLBACK_ROWS = 50

_STATIC = resources.files("nbstream.notebook") / "static"
Clock = Callable[[], float]


class LiveTable(anywidget.AnyWidget):
    """A live view of a push query: its status line, Stop button, chart (if ``spec``) and rows."""

    _esm = _STATIC.joinpath("live.js").read_text()
    _css = _STATIC.joinpath("live.css").read_text()
    columns = List(Unicode()).tag(sync=True)
    status = Unicode("").tag(sync=True)
    state = Unicode("RUNNING").tag(sync=True)
    spec = Dict().tag(sync=True)
    show_table = Bool(True).tag(sync=True)
    keyed = Bool(False).tag(sync=True)

    def __init__(self, fallback: Callable[[LiveTable], str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fallback = fallback

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget, plus a static HTML picture of the latest rows for notebooks shown without a
        kernel."""
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle  # anywidget: (data, metadata)
        if self._fallback is not None and data is not None:
            data["text/html"] = self._fallback(self)
        return bundle


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


Deliver = Callable[[Callable[[], None]], None]


class RateMeter:
    """Events per second over the last :data:`RATE_WINDOW` seconds (thread-safe)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.started = clock()
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        if count:
            with self._lock:
                self._samples.append((self.clock(), count))

    def rate(self) -> float:
        now = self.clock()
        with self._lock:
            while self._samples and now - self._samples[0][0] > RATE_WINDOW:
                self._samples.popleft()
            total = sum(n for _, n in self._samples)
        span = min(RATE_WINDOW, now - self.started)
        return total / span if span > 0 else 0.0


class PushQuery:
    """A running push query of the notebook.

    ``.stop()``, ``.status`` (a dict), ``.state``, ``.error``, ``.to_pandas()`` (the rows now),
    ``.chart(altair_chart)`` (a live chart of the rows), ``async for frame in handle`` (each new
    result batch as a DataFrame, a TABLE's with its ``__deleted`` tombstone flag) and ``.view``,
    the live table the cell shows.
    """

    _ids = itertools.count()

    def __init__(self, runner: QueryRunner, sql: str, deliver: Deliver, cap: int = DEFAULT_CAP,
                 clock: Clock = time.monotonic) -> None:
        self.id = f"PUSH_{next(self._ids)}"
        self.sql = sql
        self.runner = runner
        shape = runner.result_shape
        self.columns = list(shape.columns)
        self.buffer = ResultBuffer(self.columns, list(shape.keys), shape.is_table, cap)
        self.state = "RUNNING"
        self.error: str | None = None
        self.rows_seen = 0
        self.watermark: int | dt.datetime | None = None
        self._clock = clock
        self._input = RateMeter(clock)
        self._deliver = deliver
        self._flushed: float | None = None
        self._shown_status = ""
        self._lock = threading.Lock()
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]] = []
        self._display: DisplayHandle | None = None
        self.views: list[LiveTable] = []
        self.view = self._new_view(show_table=True)

    # -- called by the background loop (under the engine lock) --------------------------------------
    def step(self) -> int:
        """Fetch and apply one batch; returns the records it produced (0: nothing new)."""
        if self.state != "RUNNING":
            return 0
        before = sum(self.runner.offsets.values())
        try:
            batch = self.runner.fetch_rows()
        except Exception as error:
            self.fail(error)
            return 0
        self._input.add(sum(self.runner.offsets.values()) - before)
        if batch is None or batch.num_rows == 0:
            return 0
        limit = self.runner.result_shape.limit
        if limit is not None:
            batch = batch.slice(0, max(0, limit - self.rows_seen))
        with self._lock:
            self.buffer.apply(batch)
            self.rows_seen += batch.num_rows
            self._advance_watermark(batch)
            self._publish(batch)
        if limit is not None and self.rows_seen >= limit:
            self._finish("DONE")
        return batch.num_rows

    def flush(self, force: bool = False) -> None:
        """Send the views the changes since the last flush and the status line, at most every
        :data:`FLUSH_INTERVAL` seconds (a status-only change at most every :data:`STATUS_INTERVAL`)."""
        now = self._clock()
        since = None if self._flushed is None else now - self._flushed
        if not force and since is not None and since < FLUSH_INTERVAL:
            return
        with self._lock:
            status, state = self.status_line(), self.state
            status_due = status != self._shown_status and (since is None or since >= STATUS_INTERVAL)
            if not (force or since is None or status_due or self.buffer.has_pending()):
                return
            delta = self.buffer.take_delta()
            self._flushed, self._shown_status = now, status
            self._deliver(lambda: self._show(delta, status, state))  # in order: deltas are numbered

    def fail(self, error: Exception) -> None:
        """End the query with ``error``, which its views show."""
        self.error = f"{type(error).__name__}: {error}"
        self._finish("ERROR")

    # -- the user's side -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the query (safe from any thread); the views keep their last rows."""
        if self.state == "RUNNING":
            self._finish("STOPPED")

    @property
    def status(self) -> dict[str, Any]:
        """Query id, state, rows so far, input events/s, watermark, late and processing-log
        records, and the error that ended it, if any."""
        stats = self.runner.stats
        return {"id": self.id, "state": self.state, "rows": self.rows_seen,
                "events_per_s": round(self._input.rate(), 1), "watermark": self._watermark_text(),
                "late": stats.late, "errors": stats.logged, "error": self.error}

    def status_line(self) -> str:
        s = self.status
        line = (f"{s['id']} · {s['state']} · {s['rows']} rows · {s['events_per_s']:.1f} events/s · "
                f"watermark {s['watermark'] or 'none'} · late {s['late']} · errors {s['errors']}")
        return line + (f" · {s['error']}" if s["error"] else "")

    def to_pandas(self) -> pd.DataFrame:
        """The rows the views show, as of now (a TABLE's latest row per key, a STREAM's last rows)."""
        return pd.DataFrame(self.buffer.rows(), columns=self.columns)

    def chart(self, chart: alt.TopLevelMixin) -> LiveTable:
        """A live chart of this query's rows drawn by any Altair chart (its data is replaced by the
        live rows, each with the result's key in ``__key``); display it, or leave it last in a cell."""
        view = self._new_view(spec=charts.live_spec(chart), show_table=False)
        charts.prepare_vega_bundle()
        return view

    def chart_with(self, option: charts.ChartOption) -> None:
        """Draw the ``--chart`` shorthand above the live table (its columns checked first)."""
        self.view.spec = charts.live_spec(option.build(self.columns, result_types(self.runner)))
        charts.prepare_vega_bundle()

    def display(self) -> None:
        """Show the live table in the cell; when the query ends its static picture is refreshed."""
        self._display = display(self.view, display_id=True)

    def __aiter__(self) -> AsyncIterator[pd.DataFrame]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[pd.DataFrame]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        subscriber = (asyncio.get_running_loop(), queue)
        with self._lock:
            self._subscribers.append(subscriber)
            if self.state != "RUNNING":
                queue.put_nowait(None)
        try:
            while (batch := await queue.get()) is not None:
                yield batch
        finally:
            with self._lock:
                self._subscribers.remove(subscriber)
        if self.state == "ERROR":
            raise ExecutionError(f"{self.id} failed: {self.error}")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.view._repr_mimebundle_(**kwargs)

    # -- internals ---------------------------------------------------------------------------------
    def _new_view(self, **traits: Any) -> LiveTable:
        view = LiveTable(fallback=self._static_html, columns=self.columns, status=self.status_line(),
                         state=self.state, keyed=self.buffer.is_table, **traits)
        view.on_msg(self._on_message)
        self.views.append(view)
        return view

    def _finish(self, state: str) -> None:
        """Leave RUNNING; the background loop then closes the runner (never while it fetches)."""
        with self._lock:
            self.state = state
            for loop, queue in self._subscribers:
                _put(loop, queue, None)
        self.flush(force=True)
        if self._display is not None:
            self._deliver(self._refresh_static_picture)

    def _refresh_static_picture(self) -> None:
        """Update the cell's output (its static HTML). JupyterLab applies the update only while it
        waits for the request it answers: a query ending in a cell (LIMIT, ``%stream stop``, a
        re-run) refreshes it, the Stop button (a widget message) does not."""
        assert self._display is not None
        self._display.update(self.view)

    def _publish(self, batch: pa.Table) -> None:
        """Hand ``batch`` to every ``async for`` over this query."""
        if not self._subscribers:
            return
        frame = batch.drop_columns(["__deleted"]) if not self.buffer.is_table else batch
        for loop, queue in list(self._subscribers):
            _put(loop, queue, frame.to_pandas())

    def _advance_watermark(self, batch: pa.Table) -> None:
        latest = pc.max(batch.column("ROWTIME")).as_py()
        if latest is not None and (self.watermark is None or latest > self.watermark):
            self.watermark = latest

    def _watermark_text(self) -> str | None:
        mark = self.watermark
        if isinstance(mark, int):
            mark = dt.datetime.fromtimestamp(mark / 1000, dt.UTC)
        return mark.isoformat(timespec="milliseconds").replace("+00:00", "Z") if mark is not None else None

    def _show(self, delta: Delta | None, status: str, state: str) -> None:
        """Send ``delta`` and the status to every view (on the kernel's loop)."""
        try:
            for view in self.views:
                if delta is not None:
                    view.send(delta.message())
                with view.hold_sync():
                    view.status = status
                    view.state = state
        except Exception as error:  # the views cannot be told: keep it on the handle and in %stream queries
            self.error = f"updating the view failed: {type(error).__name__}: {error}"
            self.state = "ERROR"

    def _on_message(self, view: LiveTable, content: Any, _buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "stop":
            self.stop()
        elif kind == "snapshot_request":
            snapshot = self.buffer.snapshot()
            if int(content.get("seq", -1)) < snapshot.seq:
                view.send(snapshot.message())
        elif kind == "vega_request":  # answered from a thread: the runtime may still be being built
            threading.Thread(target=self._send_vega_runtime, args=(view,), name="nbstream-vega-runtime",
                             daemon=True).start()

    def _send_vega_runtime(self, view: LiveTable) -> None:
        try:
            bundle = charts.vega_bundle().encode()
        except Exception as error:  # shown in the view: its chart says why it cannot draw
            message = f"{type(error).__name__}: {error}"
            self._deliver(lambda: view.send({"type": "vega_error", "message": message}))
        else:
            self._deliver(lambda: view.send({"type": "vega"}, buffers=[bundle]))

    def _static_html(self, view: LiveTable) -> str:
        """What ``view`` shows (status line, chart, rows) as plain HTML, for a notebook shown
        without a kernel."""
        entries = self.buffer.entries()
        rows = [jsonable_row(row) for _, row in entries]
        parts = [f'<div class="nbstream-status">{html.escape(self.status_line())}</div>']
        if view.spec and rows:  # no chart of nothing (and no second's wait for it)
            parts.append(self._static_chart(view.spec, entries))
        if view.show_table and rows:
            table = pd.DataFrame(rows[-FALLBACK_ROWS:], columns=self.columns)
            parts.append(table.to_html(index=False, na_rep=""))
        return '<div class="nbstream-table">' + "".join(parts) + "</div>"

    def _static_chart(self, spec: dict[str, Any], rows: list[tuple[str, list[Any]]]) -> str:
        records = charts.chart_records(self.columns, [(key, jsonable_row(row)) for key, row in rows])
        try:
            return f'<div class="nbstream-chart">{charts.static_svg(spec, records)}</div>'
        except Exception as error:  # shown, not hidden: the static picture says why it has no chart
            return f'<div class="nbstream-error">chart: {html.escape(f"{type(error).__name__}: {error}")}</div>'


def _put(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any], item: Any) -> None:
    """Put ``item`` on ``queue`` from any thread (nothing when its loop has closed)."""
    with contextlib.suppress(RuntimeError):  # the consumer's loop is closed: nobody waits any more
        loop.call_soon_threadsafe(queue.put_nowait, item)


def result_types(runner: QueryRunner) -> dict[str, str]:
    """The SQL type name of each result column (WINDOWSTART/WINDOWEND: ``WINDOW``)."""
    plan = getattr(runner, "aggregate", None) or runner.plan
    types = {column.name: column.type.name for column in plan.columns}
    return {**types, "WINDOWSTART": "WINDOW", "WINDOWEND": "WINDOW"}
