"""``GET /metrics``: the server's and its queries' counters in Prometheus' text format (0.0.4).

Per persistent query (labels ``query_id``, ``sink``): records in, out and logged as bad, its state,
its micro-batch durations, its lag in event time and in input records. Per server: push queries
open, push queries whose client fell behind and was disconnected, requests by endpoint and status,
pull-query latency, the process's resident memory and what of it DuckDB holds, by tag, and Python's
garbage collections (by generation) and the objects exempt from them (``gc.freeze``).
"""

from __future__ import annotations

import gc
import os
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from nbstream.runtime.histogram import Histogram, HistogramSnapshot
from nbstream.runtime.service import QueryMetrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServerMetrics:
    """The server's own counters (thread-safe)."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.pull_seconds = Histogram()
        self.push_overflows = 0
        self._lock = threading.Lock()

    def request(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.requests[endpoint, status] += 1

    def overflow(self) -> None:
        with self._lock:
            self.push_overflows += 1


def render(server: ServerMetrics, queries: Iterable[QueryMetrics], push_open: int,
           engine_memory: Mapping[str, int]) -> str:
    """The exposition text of every metric (``engine_memory``: DuckDB's bytes by tag)."""
    lines: list[str] = []
    _memory_families(lines, engine_memory)
    _gc_families(lines)
    _family(lines, "nbstream_push_queries_open", "gauge", "Push queries streaming to a client now.",
            [({}, push_open)])
    _family(lines, "nbstream_push_queries_disconnected_total", "counter",
            "Push queries whose client fell behind by more rows than its buffer holds and was disconnected.",
            [({"reason": "overflow"}, server.push_overflows)])
    with server._lock:
        requests = sorted(server.requests.items())
    _family(lines, "nbstream_http_requests_total", "counter", "HTTP requests by endpoint and status.",
            [({"endpoint": endpoint, "status": str(status)}, n) for (endpoint, status), n in requests])
    _histogram(lines, "nbstream_pull_query_duration_seconds", "Pull queries, from request to rows.",
               [({}, server.pull_seconds.snapshot())])
    _query_families(lines, list(queries))
    return "\n".join(lines) + "\n"


def _memory_families(lines: list[str], engine_memory: Mapping[str, int]) -> None:
    _family(lines, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
            [({}, resident_memory_bytes())])
    _family(lines, "nbstream_duckdb_memory_bytes", "gauge",
            "Memory DuckDB holds, by tag (BASE_TABLE: its cache of stored blocks, evicted at its memory "
            "limit; IN_MEMORY_TABLE: rows not checkpointed yet).",
            [({"tag": tag}, used) for tag, used in sorted(engine_memory.items())])


def _gc_families(lines: list[str]) -> None:
    stats = list(enumerate(gc.get_stats()))
    _family(lines, "python_gc_collections_total", "counter", "Garbage collections, by generation.",
            [({"generation": str(g)}, s["collections"]) for g, s in stats])
    _family(lines, "python_gc_objects_collected_total", "counter",
            "Objects the garbage collector freed, by generation.",
            [({"generation": str(g)}, s["collected"]) for g, s in stats])
    _family(lines, "nbstream_gc_frozen_objects", "gauge",
            "Objects exempt from garbage collection (those alive once the engine opened: gc.freeze).",
            [({}, gc.get_freeze_count())])


def resident_memory_bytes() -> int:
    """This process's resident set size (0 where ``/proc`` is missing)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _query_families(lines: list[str], queries: list[QueryMetrics]) -> None:
    def labels(q: QueryMetrics) -> dict[str, str]:
        return {"query_id": q.query_id, "sink": q.sink}

    _family(lines, "nbstream_query_records_in_total", "counter", "Input records a persistent query consumed.",
            [(labels(q), q.consumed) for q in queries])
    _family(lines, "nbstream_query_records_out_total", "counter", "Records a persistent query wrote to its sink.",
            [(labels(q), q.emitted) for q in queries])
    _family(lines, "nbstream_query_records_logged_total", "counter",
            "Input records a persistent query could not process, written to the processing log.",
            [(labels(q), q.logged) for q in queries])
    _family(lines, "nbstream_query_state", "gauge", "1 for the state a persistent query is in.",
            [({**labels(q), "state": q.state}, 1) for q in queries])
    _histogram(lines, "nbstream_query_batch_duration_seconds", "A persistent query's micro-batches.",
               [(labels(q), q.batch_seconds) for q in queries])
    _family(lines, "nbstream_query_event_time_lag_seconds", "gauge",
            "Now less the record time of a persistent query's latest output record.",
            [(labels(q), q.event_time_lag_seconds) for q in queries if q.event_time_lag_seconds is not None])
    _family(lines, "nbstream_query_input_lag_records", "gauge", "Input records a persistent query has yet to consume.",
            [(labels(q), q.input_lag) for q in queries])


Sample = tuple[dict[str, str], float | int]


def _family(lines: list[str], name: str, kind: str, help_text: str, samples: list[Sample]) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{_labels(labels)} {_number(value)}" for labels, value in samples]


def _histogram(lines: list[str], name: str, help_text: str,
               samples: list[tuple[dict[str, str], HistogramSnapshot]]) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for labels, snapshot in samples:
        for bound, count in zip(snapshot.bounds, snapshot.counts, strict=True):
            lines.append(f"{name}_bucket{_labels({**labels, 'le': _number(bound)})} {count}")
        lines.append(f"{name}_bucket{_labels({**labels, 'le': '+Inf'})} {snapshot.count}")
        lines.append(f"{name}_sum{_labels(labels)} {_number(snapshot.total)}")
        lines.append(f"{name}_count{_labels(labels)} {snapshot.count}")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float | int | str) -> str:
    if isinstance(value, str):
        return value
    return repr(float(value)) if isinstance(value, float) else str(value)
