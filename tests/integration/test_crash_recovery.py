"""Exactly-once across kill -9: every acknowledged input reaches the output exactly once, and a
windowed aggregation killed again and again ends with the changelog of a run that never crashed."""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from nbstream import Engine
from nbstream.log.base import Record

sys.path.insert(0, str(Path(__file__).parent))
from crash_worker import JOIN, WINDOWED  # the worker is a script beside this test

WORKER = Path(__file__).with_name("crash_worker.py")
KILLS = 24
WINDOWED_KILLS = 12
JOIN_KILLS = 12


def _run_and_kill(state: Path, start: int, rng: random.Random, workload: str = "csas") -> tuple[int, int]:
    """Start a worker, SIGKILL it at a random moment; return (acknowledged up to, next start)."""
    proc = subprocess.Popen([sys.executable, str(WORKER), str(state), str(start), str(rng.randint(50, 400)),
                             workload], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the worker is up and working: kill it somewhere in what follows
    time.sleep(rng.uniform(0.0, 0.8))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    acked = [int(line.split()[2]) for line in (first + out).splitlines() if line.startswith("ACK ")]
    return (acked[-1] if acked else start - 1), start + 1_000_000


def _kill_repeatedly(state: Path, kills: int, rng: random.Random, workload: str) -> list[range]:
    """Run and SIGKILL a worker ``kills`` times; the input numbers each run acknowledged."""
    acknowledged: list[range] = []
    start = 0
    for _ in range(kills):
        last, next_start = _run_and_kill(state, start, rng, workload)
        acknowledged.append(range(start, last + 1))
        start = next_start
    return acknowledged


def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    acknowledged = _kill_repeatedly(state, KILLS, random.Random(20261127), "csas")

    eng = Engine(path=state)
    eng.run_until_idle()
    out_ids = [r.key for r in eng.consume("KEPT")]
    counts = collections.Counter(out_ids)
    duplicates = {k: c for k, c in counts.items() if c > 1}
    assert not duplicates, f"duplicated outputs: {list(duplicates.items())[:10]}"
    expected = {i for r in acknowledged for i in r if i % 3 != 1}
    missing = expected - counts.keys()
    assert not missing, f"{len(missing)} acknowledged inputs missing from the output, e.g. {sorted(missing)[:10]}"
    produced = {r.key for r in eng.consume("events")}
    assert set(counts) <= produced
    assert sum(len(r) for r in acknowledged) > 1_000, "the workers should have acknowledged real work"
    eng.close()


def _changelog_per_window(records: list[Record]) -> dict[tuple, list[tuple]]:
    """Each key and window's changelog, in log order: (N, TOTAL, timestamp) per record."""
    changelog: dict[tuple, list[tuple]] = collections.defaultdict(list)
    for r in records:
        assert r.window is not None and r.value is not None, r
        changelog[(r.key, r.window)].append((r.value["N"], r.value["TOTAL"], r.timestamp))
    return dict(changelog)


def test_sigkill_during_a_windowed_aggregation_changes_no_result(tmp_path: Path) -> None:
    state = tmp_path / "state"
    acknowledged = sum(len(r) for r in _kill_repeatedly(state, WINDOWED_KILLS, random.Random(1127), "windowed"))

    eng = Engine(path=state)
    eng.run_until_idle()
    inputs = eng.consume("READINGS")
    changelog = _changelog_per_window(eng.consume("PER_KEY"))
    eng.close()
    assert len(inputs) >= acknowledged > 1_000, "acknowledged input is in the log, and there is real work"

    # the same input, in the same order, through an engine that never crashed
    never_crashed = Engine()
    never_crashed.execute(WINDOWED.setup)
    frame = pd.DataFrame({"k": [r.key for r in inputs], "v": [r.value["V"] for r in inputs],
                          "ts": [r.timestamp for r in inputs]})
    never_crashed.produce_batch("READINGS", frame, key="k", timestamp="ts")
    never_crashed.run_until_idle()
    expected = _changelog_per_window(never_crashed.consume("PER_KEY"))

    assert changelog.keys() == expected.keys(), "the same keys and windows"
    for window, records in changelog.items():
        counts = [n for n, _, _ in records]
        assert counts == list(range(1, len(counts) + 1)), f"{window}: COUNT must rise by one per record: {counts}"
        assert records == expected[window], f"{window}: the changelog differs from a run without crash"
    accepted = sum(len(records) for records in changelog.values())
    assert len(inputs) > accepted, "some records should have come too late for their window"


def _frame(records: list[Record], key: str, columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({key: [r.key for r in records], **{c: [r.value[c.upper()] for r in records] for c in columns}})


def test_sigkill_during_a_stream_table_join_changes_no_result(tmp_path: Path) -> None:
    state = tmp_path / "state"
    acknowledged = _kill_repeatedly(state, JOIN_KILLS, random.Random(2711), "join")

    eng = Engine(path=state)
    eng.run_until_idle()
    prices, orders = eng.consume("PRICES"), eng.consume("ORDERS")
    priced = {r.value["ID"]: (r.key, r.value["QTY"], r.value["PRICE"]) for r in eng.consume("PRICED")}
    output_count = len(eng.consume("PRICED"))
    eng.close()
    assert output_count == len(priced) == len(orders), "one output per order: none lost, none repeated"
    assert {i for r in acknowledged for i in r} <= priced.keys(), "every acknowledged order is joined"
    assert sum(len(r) for r in acknowledged) > 1_000, "the workers should have acknowledged real work"

    # the same input, in the same order (per batch: its prices, then its orders), through one that never crashed
    never_crashed = Engine()
    never_crashed.execute(JOIN.setup)
    price_frame = _frame(prices, "sku", ("price", "batch"))
    order_frame = _frame(orders, "sku", ("id", "qty", "batch"))
    for batch in sorted(set(order_frame["batch"]) | set(price_frame["batch"])):
        in_batch = price_frame[price_frame["batch"] == batch].sort_values("price")
        never_crashed.produce_batch("PRICES", in_batch, key="sku")
        in_batch = order_frame[order_frame["batch"] == batch].sort_values("id")
        never_crashed.produce_batch("ORDERS", in_batch, key="sku")
    never_crashed.run_until_idle()
    expected = {r.value["ID"]: (r.key, r.value["QTY"], r.value["PRICE"]) for r in never_crashed.consume("PRICED")}
    assert priced == expected
    assert sum(price is not None for _, _, price in priced.values()) > len(priced) // 2, "most orders find a price"
