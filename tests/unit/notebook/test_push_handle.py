"""A push query's handle and its views, driven step by step: a scripted runner, a manual clock and
views that record the messages they are sent."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict, deque
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from nbstream.errors import ExecutionError
from nbstream.notebook.live import FLUSH_INTERVAL, LiveQuery, LiveTable
from nbstream.runtime.deltas import apply_changes
from nbstream.runtime.push import PushQuery
from nbstream.runtime.query import QueryStats, ResultShape


class ScriptedRunner:
    """Stands in for a push query's runner: each ``fetch_rows`` returns the next queued batch."""

    def __init__(self, shape: ResultShape) -> None:
        self.result_shape = shape
        self.offsets = {0: 0}
        self.stats = QueryStats()
        self.batches: deque[pa.Table] = deque()
        self.failure: Exception | None = None

    def feed(self, rows: list[dict[str, Any]], rowtime: int = 0) -> None:
        self.batches.append(pa.Table.from_pylist([{"ROWTIME": rowtime, "__deleted": False, **r} for r in rows]))

    def fetch_rows(self) -> pa.Table | None:
        if self.failure is not None:
            raise self.failure
        if not self.batches:
            return None
        batch = self.batches.popleft()
        self.offsets[0] += batch.num_rows
        return batch


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingView:
    """What one browser view of a widget would do with the messages it receives."""

    def __init__(self) -> None:
        self.seq = -1
        self.rows: OrderedDict[str, list[Any]] = OrderedDict()

    def receive(self, message: dict[str, Any]) -> None:
        message = json.loads(json.dumps(message))  # it crosses the wire as JSON
        if message["type"] == "snapshot" and message["seq"] > self.seq:
            self.rows = OrderedDict((key, row) for key, row in message["rows"])
            self.seq = message["seq"]
        elif message["type"] == "delta" and self.seq >= 0 and message["seq"] == self.seq + 1:
            apply_changes(self.rows, message["remove"], [tuple(pair) for pair in message["insert"]])
            self.seq = message["seq"]


TABLE = ResultShape(("ID", "N"), ("ID",), True, None)
STREAM = ResultShape(("PAGE",), (), False, None)


def handle(shape: ResultShape, clock: ManualClock | None = None) -> tuple[LiveQuery, ScriptedRunner, list[Any]]:
    """The handle of a push query over a scripted runner; its views' sent messages are recorded in
    the list. ``live.query.step()`` is what the background loop does, ``live.flush()`` its tick."""
    runner = ScriptedRunner(shape)
    clock = clock or ManualClock()
    query = PushQuery(runner, "SELECT …", clock=clock)  # type: ignore[arg-type]
    live = LiveQuery(query, deliver=lambda update: update(), cap=50, clock=clock)
    sent: list[Any] = []
    live.view.send = lambda content, buffers=None: sent.append((content, buffers))  # type: ignore[method-assign]
    return live, runner, sent


def messages(sent: list[Any], kind: str) -> list[dict[str, Any]]:
    return [content for content, _ in sent if content["type"] == kind]


def test_updates_are_coalesced_to_at_most_ten_per_second_and_none_are_lost() -> None:
    clock = ManualClock()
    live, runner, sent = handle(TABLE, clock)
    for step in range(200):  # 2 s of 100 batches a second
        runner.feed([{"ID": f"k{step % 7}", "N": step}])
        live.query.step()
        live.flush()
        clock.now += 0.01
    live.flush(force=True)

    deltas = messages(sent, "delta")
    assert 15 <= len(deltas) <= 21
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    view = RecordingView()
    view.receive(live.buffer.snapshot().message() | {"seq": 0, "rows": []})
    for delta in deltas:
        view.receive(delta)
    assert sorted(view.rows.values()) == sorted(live.to_pandas().values.tolist())
    assert sorted(live.to_pandas()["N"]) == list(range(193, 200))


def test_a_view_that_renders_late_gets_a_snapshot_equal_to_the_state_after_the_deltas() -> None:
    clock = ManualClock()
    live, runner, sent = handle(STREAM, clock)
    early = RecordingView()
    early.receive(live.buffer.snapshot().message())
    for step in range(30):
        runner.feed([{"PAGE": f"p{step}"}])
        live.query.step()
        clock.now += FLUSH_INTERVAL
        live.flush()
    for delta in messages(sent, "delta"):
        early.receive(delta)

    live.view._handle_custom_msg({"type": "snapshot_request", "seq": -1}, [])
    late = RecordingView()
    late.receive(messages(sent, "snapshot")[-1])

    assert late.seq == early.seq == live.buffer.seq
    assert late.rows == early.rows
    assert [row for row in late.rows.values()] == [[f"p{i}"] for i in range(30)]


def test_a_view_that_is_up_to_date_is_sent_no_snapshot() -> None:
    live, runner, sent = handle(STREAM)
    runner.feed([{"PAGE": "a"}])
    live.query.step()
    live.flush(force=True)
    live.view._handle_custom_msg({"type": "snapshot_request", "seq": live.buffer.seq}, [])
    assert messages(sent, "snapshot") == []


def test_the_status_reports_rows_events_per_second_watermark_late_expired_and_errors() -> None:
    clock = ManualClock()
    live, runner, _ = handle(TABLE, clock)
    runner.stats.late, runner.stats.expired, runner.stats.logged = 2, 3, 1
    runner.feed([{"ID": "a", "N": 1}, {"ID": "b", "N": 2}], rowtime=1_700_000_000_000)
    clock.now += 1.0
    live.query.step()

    status = live.status
    assert status == {"id": live.id, "state": "RUNNING", "rows": 2, "events_per_s": 2.0,
                      "watermark": "2023-11-14T22:13:20.000Z", "late": 2, "expired": 3, "errors": 1,
                      "error": None, "waiting": None}
    live.flush(force=True)
    assert live.view.status == (f"{live.id} · RUNNING · 2 rows · 2.0 events/s · "
                                 "watermark 2023-11-14T22:13:20.000Z · late 2 · expired 3 · errors 1")


def test_a_failure_in_the_background_shows_in_the_view() -> None:
    live, runner, _ = handle(STREAM)
    runner.failure = OSError("segment vanished")
    live.query.step()
    assert live.view.state == "ERROR"
    assert "OSError: segment vanished" in live.view.status


def test_the_stop_button_stops_the_query() -> None:
    live, _, _ = handle(STREAM)
    live.view._handle_custom_msg({"type": "stop"}, [])
    assert live.state == live.view.state == "STOPPED"


def test_to_pandas_is_the_rows_now() -> None:
    live, runner, _ = handle(TABLE)
    runner.feed([{"ID": "a", "N": 1}, {"ID": "b", "N": 2}, {"ID": "a", "N": 3}])
    live.query.step()
    pd.testing.assert_frame_equal(live.to_pandas(), pd.DataFrame({"ID": ["b", "a"], "N": [2, 3]}))


def test_async_iteration_yields_each_new_batch_and_ends_when_the_query_stops() -> None:
    live, runner, _ = handle(STREAM)

    async def collect() -> list[list[str]]:
        frames = []

        async def produce() -> None:
            await asyncio.sleep(0)
            for page in ("a", "b"):
                runner.feed([{"PAGE": page}])
                live.query.step()
            live.stop()

        producer = asyncio.create_task(produce())
        async for frame in live:
            frames.append(frame["PAGE"].tolist())
            assert "__deleted" not in frame.columns
        await producer
        return frames

    assert asyncio.run(collect()) == [["a"], ["b"]]


def test_async_iteration_raises_the_error_that_ended_the_query() -> None:
    live, runner, _ = handle(TABLE)
    runner.failure = RuntimeError("boom")

    async def drain() -> None:
        async def fail_soon() -> None:
            await asyncio.sleep(0)
            live.query.step()

        task = asyncio.create_task(fail_soon())
        async for _ in live:
            pass
        await task

    with pytest.raises(ExecutionError, match="boom"):
        asyncio.run(drain())


def test_a_table_change_stream_keeps_its_tombstone_flag() -> None:
    live, runner, _ = handle(TABLE)

    async def first() -> pd.DataFrame:
        iterator = aiter(live)
        pending = asyncio.ensure_future(anext(iterator))
        await asyncio.sleep(0)
        runner.feed([{"ID": "a", "N": 1}])
        live.query.step()
        return await pending

    frame = asyncio.run(first())
    assert frame[["__deleted", "ID", "N"]].values.tolist() == [[False, "a", 1]]


def test_the_static_fallback_shows_the_latest_rows() -> None:
    live, runner, _ = handle(TABLE)
    runner.feed([{"ID": "<b>", "N": 7}])
    live.query.step()
    live.flush(force=True)
    bundle, _ = live.view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "&lt;b&gt;" in bundle["text/html"] and "<td>7</td>" in bundle["text/html"]
    assert "nbstream-status" in bundle["text/html"]


def test_the_view_is_a_live_table_widget() -> None:
    live, _, _ = handle(STREAM)
    assert isinstance(live.view, LiveTable) and live.view.columns == ["PAGE"] and live.view.show_table


def test_the_static_fallback_of_each_view_shows_its_chart_or_its_table() -> None:
    import altair as alt

    live, runner, _ = handle(TABLE)
    chart = live.chart(alt.Chart().mark_bar().encode(x="ID:N", y="N:Q"))
    runner.feed([{"ID": "a", "N": 1}, {"ID": "b", "N": 2}])
    live.query.step()
    chart_only, _ = chart._repr_mimebundle_()
    assert '<div class="nbstream-chart"><svg' in chart_only["text/html"] and "<table" not in chart_only["text/html"]
    table_only, _ = live.view._repr_mimebundle_()
    assert "<svg" not in table_only["text/html"] and "<table" in table_only["text/html"]


def test_a_view_that_cannot_be_updated_ends_the_query_with_that_error() -> None:
    live, runner, _ = handle(STREAM)

    def closed_comm(content: Any, buffers: Any = None) -> None:
        raise RuntimeError("comm closed")

    live.view.send = closed_comm  # type: ignore[method-assign]
    runner.feed([{"PAGE": "a"}])
    live.query.step()
    live.flush(force=True)
    assert live.state == "ERROR" and live.error == "updating the view failed: RuntimeError: comm closed"
