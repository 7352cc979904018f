"""A histogram of durations with fixed buckets, as Prometheus exposes one: cumulative counts per
upper bound, a count and a sum."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass

#: Upper bounds in seconds, from a point lookup's fraction of a millisecond to a large batch's seconds.
DEFAULT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class HistogramSnapshot:
    """``counts[i]``: observations at most ``bounds[i]`` (cumulative); ``count`` and ``total`` of all."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    total: float


class Histogram:
    """Observations counted into buckets (safe to observe from any thread)."""

    def __init__(self, bounds: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * len(self.bounds)
        self._count = 0
        self._total = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.bounds, value)
        with self._lock:
            if index < len(self._counts):
                self._counts[index] += 1
            self._count += 1
            self._total += value

    def snapshot(self) -> HistogramSnapshot:
        with self._lock:
            cumulative, running = [], 0
            for n in self._counts:
                running += n
                cumulative.append(running)
            return HistogramSnapshot(self.bounds, tuple(cumulative), self._count, self._total)
