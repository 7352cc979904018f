"""Nexmark on nbstream: each query's events/s beside DuckDB's one-statement figure, and its peak RSS.

Calls the shared runner in place (``../shared/nexmark/run.py``, never copied): one runner process per
query, so that the peak RSS of the nbstream child the runner spawns — the engine with its log, state
and the query's input, memory-mapped — is that query's alone (``RUSAGE_CHILDREN`` of the runner
process). Also prints the child's CPU seconds (robust to a loaded machine, unlike wall-clock) and
the load average when the query finished.

    python benchmarks/bench_nexmark.py [--events 1M] [--queries all] [--durable] [--check]
        [--nexmark ../shared/nexmark] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_SUITE = Path(__file__).resolve().parents[2] / "shared" / "nexmark"

#: Runs the shared runner for one query and prints the peak RSS and CPU time of its children.
_WRAPPER = """
import json, os, resource, sys
sys.path.insert(0, sys.argv[1])
import run
code = run.main(sys.argv[2:])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print("BENCH " + json.dumps({"code": code, "rss_mb": usage.ru_maxrss / 1024,
                               "cpu_s": usage.ru_utime + usage.ru_stime}))
"""


def run_query(suite: Path, query: str, args: argparse.Namespace) -> dict:
    """One query through the shared runner: its result row, peak RSS (MB), child CPU s, load."""
    with tempfile.TemporaryDirectory(prefix="bench-nexmark-") as tmp:
        out = os.path.join(tmp, "result.json")
        argv = ["--events", args.events, "--queries", query, "--repeat", str(args.repeat), "--json", out]
        argv += ["--durable"] if args.durable else []
        argv += ["--check"] if args.check else []
        done = subprocess.run([sys.executable, "-c", _WRAPPER, str(suite), *argv],
                              capture_output=True, text=True, check=False)
        if args.check:
            sys.stderr.write(done.stdout.split("\n\nquery")[0] if done.returncode else "")
        bench = next((json.loads(line[6:]) for line in done.stdout.splitlines() if line.startswith("BENCH ")), None)
        if bench is None or not os.path.exists(out):
            return {"query": query, "error": (done.stderr or done.stdout)[-2000:]}
        with open(out) as f:
            (row,) = json.load(f)["results"]
        return {**row, **bench, "load": os.getloadavg()[0], "output": done.stdout}


def _rate(x: float | None) -> str:
    return "n/a" if not x else f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}K"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", default="1M")
    parser.add_argument("--queries", default="q0,q1,q2,q3,q5,q7,q8,q11,q14,q17,q18,q21,q22")
    parser.add_argument("--durable", action="store_true")
    parser.add_argument("--check", action="store_true", help="print the runner's differing rows")
    parser.add_argument("--repeat", type=int, default=3, help="DuckDB runs per query (best kept)")
    parser.add_argument("--nexmark", type=Path, default=DEFAULT_SUITE, help="the shared suite's directory")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    queries = [q.strip() for q in args.queries.split(",") if q.strip()]
    print(f"Nexmark {args.events} events, {'durable' if args.durable else 'in-memory'} engine, "
          f"{os.cpu_count()} cores")
    print(f"{'query':6s} {'nbstream':>9s} {'DuckDB':>8s} {'ratio':>6s} {'correct':>7s} {'run s':>7s} "
          f"{'cpu s':>7s} {'peak RSS':>9s} {'load':>5s}  detail", flush=True)
    rows = []
    for query in queries:
        row = run_query(args.nexmark, query, args)
        rows.append(row)
        if "error" in row:
            print(f"{query:6s} ERROR {row['error']}", flush=True)
            continue
        nb, duck = row.get("nb_eps"), row.get("duckdb_eps")
        ratio = f"{nb / duck:.3f}" if nb and duck else "n/a"
        print(f"{query:6s} {_rate(nb):>9s} {_rate(duck):>8s} {ratio:>6s} {row['correct']!s:>7s} "
              f"{row.get('run_s', float('nan')):7.2f} {row['cpu_s']:7.1f} {row['rss_mb']:7.0f}MB "
              f"{row['load']:5.2f}  {row['detail'][:120]}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{k: v for k, v in r.items() if k != "output"} for r in rows], f, indent=1, default=str)
    passed = sum(1 for r in rows if r.get("correct"))
    print(f"{passed} passed, {len(rows) - passed} failed")
    return 0 if passed == len(rows) or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
