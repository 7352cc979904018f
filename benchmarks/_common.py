"""Helpers shared by the benchmarks (run as ``python benchmarks/<bench>.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable


def rate(events: int, work: Callable[[], object]) -> float:
    """Events per second of running ``work`` once over ``events`` events."""
    started = time.perf_counter()
    work()
    return events / (time.perf_counter() - started)


def percentile(samples: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]
