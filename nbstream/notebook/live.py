"""Push queries in the notebook: a :class:`LiveQuery` handle, a subscriber of a push query — the
engine's :class:`~nbstream.runtime.push.PushQuery` (stepped by the service's background loop) or a
server's :class:`~nbstream.client.push.RemotePushQuery` (fed from its response), which the handle
cannot tell apart (:class:`~nbstream.runtime.push.PushSource`) — shown by :class:`LiveTable`
anywidgets (a table, a chart, or both; JavaScript in ``static/``, no CDN).

The thread that drives the query offers each result batch to the handle, which applies it to its
:class:`~nbstream.runtime.deltas.ResultBuffer` and, at most every :data:`FLUSH_INTERVAL` seconds,
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
import html
import threading
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

import anywidget
import pandas as pd
import pyarrow as pa
from IPython.display import DisplayHandle, display
from traitlets import Bool, Dict, List, Unicode

from nbstream.notebook import chart as charts
from nbstream.runtime.deltas import Delta, ResultBuffer, jsonable_row
from nbstream.runtime.push import AsyncBatches, PushSource

if TYPE_CHECKING:
    import altair as alt  # imported when a chart is drawn (by chart.py): it takes seconds

FLUSH_INTERVAL = 0.1  # ≤ 10 updates per second per view
STATUS_INTERVAL = 1.0  # a status line with no new rows is refreshed at most once per second
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


def live_query(query: PushSource, cap: int) -> LiveQuery:
    """The handle of the push query ``query`` (just started), whose views keep ``cap`` rows and are
    updated on the kernel's event loop; the query is stopped if the handle cannot be made."""
    try:
        return LiveQuery(query, kernel_deliverer(), cap)
    except BaseException:
        query.stop()
        raise


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


class LiveQuery:
    """The notebook's handle of a push query (a :class:`~nbstream.runtime.push.PushSource`, local
    or remote): its live views, fed as a subscriber of the query.

    ``.stop()``, ``.status`` (a dict), ``.state``, ``.error``, ``.to_pandas()`` (the rows now),
    ``.chart(altair_chart)`` (a live chart of the rows), ``async for frame in handle`` (each new
    result batch as a DataFrame, a TABLE's with its ``__deleted`` tombstone flag) and ``.view``,
    the live table the cell shows.
    """

    def __init__(self, query: PushSource, deliver: Deliver, cap: int = DEFAULT_CAP,
                 clock: Clock = time.monotonic) -> None:
        self.query = query
        self.columns = query.columns
        shape = query.shape
        self.buffer = ResultBuffer(self.columns, list(shape.keys), shape.is_table, cap)
        self._clock = clock
        self._deliver = deliver
        self._flushed: float | None = None
        self._shown_status = ""
        # a delta and the status it is sent with; reentrant: a view that cannot be updated fails the
        # query, whose end flushes again (on this thread when updates are delivered directly)
        self._lock = threading.RLock()
        self._display: DisplayHandle | None = None
        self.views: list[LiveTable] = []
        self.view = self._new_view(show_table=True)
        query.subscribe(self)

    @property
    def id(self) -> str:
        return self.query.id

    @property
    def state(self) -> str:
        return self.query.state

    @property
    def error(self) -> str | None:
        return self.query.error

    # -- as the query's subscriber (see nbstream.runtime.push) ---------------------------------------
    def offer(self, batch: pa.Table) -> bool:
        """Apply a result batch to the rows the views show (never refused: the buffer keeps the
        latest ``cap`` rows)."""
        self.buffer.apply(batch)
        return True

    def close(self, state: str, error: str | None) -> None:
        """The query ended: the views get its last changes and state; the cell's static picture is
        refreshed."""
        self.flush(force=True)
        if self._display is not None:
            self._deliver(self._refresh_static_picture)

    def tick(self) -> None:
        self.flush()

    def flush(self, force: bool = False) -> None:
        """Send the views the changes since the last flush and the status line, at most every
        :data:`FLUSH_INTERVAL` seconds (a status-only change at most every :data:`STATUS_INTERVAL`)."""
        now = self._clock()
        since = None if self._flushed is None else now - self._flushed
        if not force and since is not None and since < FLUSH_INTERVAL:
            return
        with self._lock:
            status, state = self.query.status_line(), self.query.state
            status_due = status != self._shown_status and (since is None or since >= STATUS_INTERVAL)
            if not (force or since is None or status_due or self.buffer.has_pending()):
                return
            delta = self.buffer.take_delta()
            self._flushed, self._shown_status = now, status
            self._deliver(lambda: self._show(delta, status, state))  # in order: deltas are numbered

    # -- the user's side -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the query (safe from any thread); the views keep their last rows."""
        self.query.stop()

    @property
    def status(self) -> dict[str, Any]:
        """Query id, state, rows so far, input events/s, watermark, late and processing-log
        records, and the error that ended it, if any."""
        return self.query.status

    def status_line(self) -> str:
        return self.query.status_line()

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
        self.view.spec = charts.live_spec(option.build(self.columns, self.query.column_types()))
        charts.prepare_vega_bundle()

    def display(self) -> None:
        """Show the live table in the cell; when the query ends its static picture is refreshed."""
        self._display = display(self.view, display_id=True)

    def __aiter__(self) -> AsyncIterator[pd.DataFrame]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[pd.DataFrame]:
        batches = self.query.subscribe(AsyncBatches())
        try:
            async for batch in batches:
                yield (batch if self.buffer.is_table else batch.drop_columns(["__deleted"])).to_pandas()
        finally:
            self.query.unsubscribe(batches)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.view._repr_mimebundle_(**kwargs)

    # -- internals ---------------------------------------------------------------------------------
    def _new_view(self, **traits: Any) -> LiveTable:
        view = LiveTable(fallback=self._static_html, columns=self.columns, status=self.status_line(),
                         state=self.state, keyed=self.buffer.is_table, **traits)
        view.on_msg(self._on_message)
        self.views.append(view)
        return view

    def _refresh_static_picture(self) -> None:
        """Update the cell's output (its static HTML). JupyterLab applies the update only while it
        waits for the request it answers: a query ending in a cell (LIMIT, ``%stream stop``, a
        re-run) refreshes it, the Stop button (a widget message) does not."""
        assert self._display is not None
        self._display.update(self.view)

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
            self.query.fail(f"updating the view failed: {type(error).__name__}: {error}")

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

