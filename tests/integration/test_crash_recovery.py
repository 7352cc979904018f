"""Exactly-once across kill -9: every acknowledged input reaches the output exactly once."""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from nbstream import Engine

WORKER = Path(__file__).with_name("crash_worker.py")
KILLS = 24


def _run_and_kill(state: Path, start: int, rng: random.Random) -> tuple[int, int]:
    """Start a worker, SIGKILL it at a random moment; return (acknowledged up to, next start)."""
    proc = subprocess.Popen([sys.executable, str(WORKER), str(state), str(start), str(rng.randint(50, 400))],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the worker is up and working: kill it somewhere in what follows
    time.sleep(rng.uniform(0.0, 0.8))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    acked = [int(line.split()[2]) for line in (first + out).splitlines() if line.startswith("ACK ")]
    return (acked[-1] if acked else start - 1), start + 1_000_000


def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261127)
    state = tmp_path / "state"
    acknowledged: list[range] = []
    start = 0
    for _ in range(KILLS):
        last, next_start = _run_and_kill(state, start, rng)
        acknowledged.append(range(start, last + 1))
        start = next_start

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
