"""The browser side of the live view protocol (``static/live.js``), run in Node against a stand-in
DOM, widget model and Vega view: snapshots, numbered deltas, gaps and the chart's changesets."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

NODE = shutil.which("node")
HARNESS = Path(__file__).with_name("live_view_harness.mjs")
ESM = resources.files("nbstream.notebook") / "static" / "live.js"

pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed: the view's JavaScript is not run")

COLUMNS = ["ID", "N"]


def view(steps: list[dict[str, Any]], *, keyed: bool = True, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a view shows and sends after receiving ``steps`` (custom messages) in order."""
    traits = {"columns": COLUMNS, "status": "PUSH_0 · RUNNING", "state": "RUNNING", "spec": spec or {},
              "show_table": True, "keyed": keyed}
    payload = {"esm": Path(str(ESM)).as_uri(), "traits": traits, "steps": [{"msg": m} for m in steps]}
    assert NODE is not None
    done = subprocess.run([NODE, str(HARNESS)], input=json.dumps(payload), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def key(value: str) -> str:
    return json.dumps([value])


def snapshot(seq: int, rows: dict[str, int]) -> dict[str, Any]:
    return {"type": "snapshot", "seq": seq, "rows": [[key(k), [k, n]] for k, n in rows.items()]}


def delta(seq: int, remove: list[str], insert: dict[str, int]) -> dict[str, Any]:
    return {"type": "delta", "seq": seq, "remove": [key(k) for k in remove],
            "insert": [[key(k), [k, n]] for k, n in insert.items()]}


def test_a_view_asks_for_a_snapshot_when_it_renders_and_shows_it() -> None:
    shown = view([snapshot(3, {"b": 2, "a": 1})])
    assert shown["sent"] == [{"type": "snapshot_request", "seq": -1}]
    assert shown["rows"] == [["a", "1"], ["b", "2"]]  # a table's rows in key order
    assert shown["status"].startswith("PUSH_0 · RUNNING")


def test_deltas_before_the_snapshot_and_already_applied_ones_are_ignored() -> None:
    shown = view([delta(1, ["a"], {"a": 9}), snapshot(2, {"a": 1}), delta(2, ["a"], {"a": 5}),
                  delta(3, ["a", "b"], {"b": 7})])
    assert shown["rows"] == [["b", "7"]]


def test_upserts_replace_rows_and_tombstones_remove_them() -> None:
    shown = view([snapshot(0, {}), delta(1, ["a", "b"], {"a": 1, "b": 2}), delta(2, ["a", "b"], {"a": 3})])
    assert shown["rows"] == [["a", "3"]]


def test_a_gap_in_the_sequence_asks_for_a_snapshot() -> None:
    shown = view([snapshot(1, {"a": 1}), delta(3, ["b"], {"b": 2})])
    assert shown["sent"][-1] == {"type": "snapshot_request", "seq": 1}
    assert shown["rows"] == [["a", "1"]]


def test_a_stream_shows_rows_in_arrival_order() -> None:
    rows = [["#0", ["z", 1]], ["#1", ["a", 2]]]
    shown = view([{"type": "snapshot", "seq": 1, "rows": rows}], keyed=False)
    assert shown["rows"] == [["z", "1"], ["a", "2"]]


def test_the_chart_gets_the_rows_as_keyed_changesets() -> None:
    spec = {"mark": "bar", "data": {"name": "nbstream"}}
    shown = view([snapshot(1, {"a": 1, "b": 2}), delta(2, ["a", "b"], {"a": 5})], spec=spec)
    assert shown["chart"] == [{"__key": key("a"), "ID": "a", "N": 5}]
    assert shown["error"] == ""


def test_the_chart_is_laid_out_again_with_each_change_so_new_labels_are_not_clipped() -> None:
    spec = {"mark": "bar", "data": {"name": "nbstream"}}
    shown = view([snapshot(1, {"a": 1}), delta(2, [], {"a_much_longer_label": 2})], spec=spec)
    assert shown["chartRuns"] == [{"resized": True}] * 3  # the rows at embedding, the snapshot, the delta
