"""Helpers shared by the benchmarks (run as ``python benchmarks/<bench>.py``)."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

_STATUS = Path("/proc/self/status")


def rate(events: int, work: Callable[[], object]) -> float:
    """Events per second of running ``work`` once over ``events`` events."""
    started = time.perf_counter()
    work()
    return events / (time.perf_counter() - started)


def percentile(samples: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def peak_rss_mb() -> float:
    """The process's peak resident set size in MB since it started or since :func:`reset_peak_rss`
    (Linux's VmHWM; elsewhere the peak of ``getrusage``, which cannot be reset)."""
    if _STATUS.exists():
        match = re.search(r"VmHWM:\s+(\d+) kB", _STATUS.read_text())
        if match:
            return int(match.group(1)) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def reset_peak_rss() -> None:
    """Start measuring the peak RSS anew from the current RSS (Linux; elsewhere nothing happens)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages, to print beside figures (they depend on it)."""
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
