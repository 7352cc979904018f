"""The delta protocol of live views: numbered deltas of keyed removes and inserts, and the snapshot
a late view starts from (it must equal what a view holds after every delta)."""

from __future__ import annotations

import json
import random
from collections import OrderedDict
from typing import Any

import pyarrow as pa
import pytest

from nbstream.runtime.deltas import Delta, ResultBuffer, apply_changes


def batch(rows: list[dict[str, Any]]) -> pa.Table:
    """A result batch: each row's ``__deleted`` flag (default False) and its columns."""
    return pa.Table.from_pylist([{"__deleted": False, **row} for row in rows])


def users(cap: int = 100) -> ResultBuffer:
    return ResultBuffer(["ID", "NAME"], ["ID"], is_table=True, cap=cap)


def pages(cap: int = 100) -> ResultBuffer:
    return ResultBuffer(["PAGE"], [], is_table=False, cap=cap)


def view_after(deltas: list[Delta]) -> OrderedDict[str, list[Any]]:
    """What a view that saw ``deltas`` from the start shows (it checks their numbers)."""
    rows: OrderedDict[str, list[Any]] = OrderedDict()
    for expected_seq, delta in enumerate(deltas, start=1):
        assert delta.seq == expected_seq
        apply_changes(rows, delta.remove, delta.insert)
    return rows


def test_each_delta_has_the_next_sequence_number_and_nothing_new_gives_none() -> None:
    buffer = users()
    assert buffer.take_delta() is None and buffer.snapshot().seq == 0

    buffer.apply(batch([{"ID": "u1", "NAME": "Ann"}]))
    first = buffer.take_delta()
    buffer.apply(batch([{"ID": "u2", "NAME": "Bob"}]))
    second = buffer.take_delta()

    assert first is not None and second is not None
    assert (first.seq, second.seq) == (1, 2)
    assert buffer.take_delta() is None


def test_a_table_row_is_keyed_by_its_key_columns_and_an_upsert_replaces_it() -> None:
    buffer = users()
    buffer.apply(batch([{"ID": "u1", "NAME": "Ann"}, {"ID": "u2", "NAME": "Bob"}]))
    buffer.take_delta()
    buffer.apply(batch([{"ID": "u1", "NAME": "Annie"}]))

    delta = buffer.take_delta()
    assert delta is not None
    assert delta.remove == [json.dumps(["u1"])]
    assert delta.insert == [(json.dumps(["u1"]), ["u1", "Annie"])]
    assert buffer.rows() == [["u2", "Bob"], ["u1", "Annie"]]  # the latest change is last


def test_a_tombstone_removes_its_row() -> None:
    buffer = users()
    buffer.apply(batch([{"ID": "u1", "NAME": "Ann"}, {"ID": "u2", "NAME": "Bob"}]))
    buffer.take_delta()
    buffer.apply(batch([{"ID": "u2", "NAME": None, "__deleted": True}]))

    delta = buffer.take_delta()
    assert delta is not None
    assert delta.remove == [json.dumps(["u2"])] and delta.insert == []
    assert buffer.rows() == [["u1", "Ann"]]
    assert [row for _, row in buffer.snapshot().rows] == [["u1", "Ann"]]


def test_changes_between_deltas_are_coalesced_to_one_per_key() -> None:
    buffer = users()
    buffer.apply(batch([{"ID": "u1", "NAME": "a"}, {"ID": "u1", "NAME": "b"}]))
    buffer.apply(batch([{"ID": "u1", "NAME": "c"}, {"ID": "u2", "NAME": "x"}]))

    delta = buffer.take_delta()
    assert delta is not None
    assert delta.insert == [(json.dumps(["u1"]), ["u1", "c"]), (json.dumps(["u2"]), ["u2", "x"])]
    assert len(delta.remove) == len(set(delta.remove))  # a Vega changeset never sees a key twice


def test_a_row_added_and_deleted_between_deltas_is_never_sent() -> None:
    buffer = users()
    buffer.apply(batch([{"ID": "u1", "NAME": "a"}]))
    buffer.apply(batch([{"ID": "u1", "NAME": None, "__deleted": True}]))
    assert buffer.take_delta() is None


def test_a_stream_result_is_a_capped_append_that_evicts_the_oldest_rows() -> None:
    buffer = pages(cap=3)
    buffer.apply(batch([{"PAGE": p} for p in "abc"]))
    first = buffer.take_delta()
    buffer.apply(batch([{"PAGE": p} for p in "de"]))
    second = buffer.take_delta()

    assert first is not None and second is not None
    assert [row for _, row in first.insert] == [["a"], ["b"], ["c"]]
    assert [key for key, _ in first.insert] == ["#0", "#1", "#2"]
    assert set(second.remove) == {"#0", "#1", "#3", "#4"}  # the evicted keys, and the new ones
    assert [row for _, row in second.insert] == [["d"], ["e"]]
    assert list(view_after([first, second]).values()) == [["c"], ["d"], ["e"]]


def test_a_stream_batch_longer_than_the_cap_sends_only_its_last_rows() -> None:
    buffer = pages(cap=2)
    buffer.apply(batch([{"PAGE": str(i)} for i in range(1000)]))
    delta = buffer.take_delta()
    assert delta is not None
    assert [row for _, row in delta.insert] == [["998"], ["999"]]


def test_a_table_keeps_the_most_recently_changed_keys_up_to_its_cap() -> None:
    buffer = users(cap=2)
    buffer.apply(batch([{"ID": f"u{i}", "NAME": "n"} for i in range(3)]))
    buffer.apply(batch([{"ID": "u1", "NAME": "again"}]))
    assert buffer.rows() == [["u2", "n"], ["u1", "again"]]


def test_windowed_keys_include_the_window_so_windows_of_one_key_are_separate_rows() -> None:
    buffer = ResultBuffer(["K", "WINDOWSTART", "WINDOWEND", "N"], ["K", "WINDOWSTART", "WINDOWEND"], True, 10)
    buffer.apply(batch([{"K": "a", "WINDOWSTART": 0, "WINDOWEND": 10, "N": 1},
                        {"K": "a", "WINDOWSTART": 10, "WINDOWEND": 20, "N": 1},
                        {"K": "a", "WINDOWSTART": 0, "WINDOWEND": 10, "N": 2}]))
    delta = buffer.take_delta()
    assert delta is not None
    assert [key for key, _ in delta.insert] == [json.dumps(["a", 10, 20]), json.dumps(["a", 0, 10])]
    assert buffer.rows() == [["a", 10, 20, 1], ["a", 0, 10, 2]]


@pytest.mark.parametrize(("is_table", "keys", "batch_rows"), [(True, 12, 6), (True, 60, 40), (False, 12, 6),
                                                              (False, 60, 40)])
def test_the_snapshot_a_late_view_gets_equals_what_a_view_holds_after_every_delta(
        is_table: bool, keys: int, batch_rows: int) -> None:
    rng = random.Random(7)
    buffer = ResultBuffer(["ID", "V"], ["ID"], is_table=is_table, cap=8)
    model: OrderedDict[str, list[Any]] = OrderedDict()  # the latest rows, the obvious way
    deltas = []
    for _ in range(300):
        rows = [{"ID": f"k{rng.randrange(keys)}", "V": rng.randrange(100), "__deleted": rng.random() < 0.2}
                for _ in range(rng.randrange(1, batch_rows))]
        if is_table:
            for row in rows:
                model.pop(row["ID"], None)
                if not row["__deleted"]:
                    model[row["ID"]] = [row["ID"], row["V"]]
                while len(model) > 8:
                    model.popitem(last=False)
        buffer.apply(batch(rows))
        if rng.random() < 0.5 and (delta := buffer.take_delta()) is not None:
            deltas.append(delta)
            snapshot = buffer.snapshot()
            assert snapshot.seq == delta.seq
            assert snapshot.rows == list(view_after(deltas).items())
    final = buffer.take_delta()
    deltas += [final] if final is not None else []
    assert list(view_after(deltas).values()) == buffer.rows()
    assert len(buffer.rows()) <= 8
    if is_table:
        assert buffer.rows() == list(model.values())


def test_values_are_sent_as_json() -> None:
    import datetime as dt
    import decimal

    buffer = ResultBuffer(["T", "D"], [], is_table=False, cap=5)
    buffer.apply(pa.table({"__deleted": [False], "T": [dt.datetime(2026, 1, 2, 3, 4, 5)],
                           "D": pa.array([decimal.Decimal("1.50")], pa.decimal128(5, 2))}))
    delta = buffer.take_delta()
    assert delta is not None
    message = delta.message()
    json.dumps(message)
    assert message["insert"] == [["#0", ["2026-01-02T03:04:05", 1.5]]]
