"""Group the failing cases of a QTT run by the kind of their failure.

    python tests/conformance/qtt_failures.py REPORT.json        # a report of the shared runner (--json-report)
    python tests/conformance/qtt_failures.py --run [FILE.json…]  # run the files first (default: all of them)
    python tests/conformance/qtt_failures.py --update-floor REPORT.json  # floor.json := what passes

A kind is the failure's reason with the case's own details removed: the error class and message up
to its first colon or newline, with quoted names, numbers and statement positions replaced, so
``unknown function `MD5`.`` and ``unknown function `TEST_UDF`.`` are one kind. Kinds are printed
largest first, each with its cases, then the overall and per-file pass counts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).parent
SHARED = HERE.parents[1].parent / "shared" / "conformance"
QTT = SHARED / "ksql-qtt" / "query-validation-tests"
ENGINE = "ksql_test_functions:Engine"

_DETAILS = [
    (re.compile(r"_confluent-ksql-\S+"), "<internal topic>"),
    (re.compile(r"\bnbs_\w+"), "<function>"),
    (re.compile(r"type [A-Z_]+\b"), "type <T>"),
    (re.compile(r": [A-Z_][A-Z0-9_]*(, [A-Z_][A-Z0-9_]*)*$"), ": <columns>"),
    (re.compile(r"\bnot [A-Z_][A-Z0-9_]*$"), "not <column>"),
    (re.compile(r"\b[A-Z_]+(?=: argument)"), "<function>"),
    (re.compile(r"`[^`]*`|'[^']*'|\"[^\"]*\""), "<name>"),
    (re.compile(r"statement \d+/\d+"), "statement n/m"),
    (re.compile(r"record \d+"), "record n"),
    (re.compile(r"\b\d+(\.\d+)?\b"), "<n>"),
    (re.compile(r"\b(CSAS|CTAS|INSERTQUERY)_\w+"), "<query>"),
]


def kind(reason: str) -> str:
    """The kind of a failure: ``reason`` cut at its first line (and after ``expected …`` or a
    value mismatch) with names and numbers replaced."""
    head = reason.strip().splitlines()[0] if reason.strip() else "(no reason)"
    head = re.sub(r"(value mismatch|headers mismatch|key mismatch).*", r"\1", head)
    for pattern, replacement in _DETAILS:
        head = pattern.sub(replacement, head)
    return head[:160]


def group(report: list[dict[str, object]]) -> dict[str, list[str]]:
    """Failing case names by kind, largest kind first."""
    kinds: dict[str, list[str]] = defaultdict(list)
    for case in report:
        if case["status"] in ("fail", "error"):
            kinds[kind(str(case.get("reason") or ""))].append(str(case["name"]))
    return dict(sorted(kinds.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def summary(report: list[dict[str, object]]) -> str:
    """Passed/runnable overall and per file."""
    passed: Counter[str] = Counter()
    runnable: Counter[str] = Counter()
    for case in report:
        stem = Path(str(case["file"])).stem
        if case["status"] != "skip":
            runnable[stem] += 1
            passed[stem] += case["status"] == "pass"
    lines = [f"{stem:<28} {passed[stem]:4d}/{runnable[stem]:<4d}" for stem in sorted(runnable)
             if passed[stem] < runnable[stem]]
    total, count = sum(passed.values()), sum(runnable.values())
    return "\n".join([*lines, f"overall: {total}/{count} runnable cases pass ({total / max(count, 1):.1%})"])


def update_floor(report: list[dict[str, object]], floor_path: Path, new_suite: tuple[str, int]) -> None:
    """Rewrite ``floor.json`` from ``report`` (a run of every file, the REST files the floor lists
    too): each suite's floor becomes the cases of its files that pass; files no suite lists go to
    ``new_suite`` (name, issue). A report that did not run a file the floor lists is refused
    (``SystemExit`` naming the files): the floor would lose that file's cases."""
    floor = json.loads(floor_path.read_text())
    listed = {f for spec in floor.values() for f in spec["files"]}
    files = sorted({str(case["file"]) for case in report})
    label = {f: f"{Path(f).parent.name}/{Path(f).name}" for f in files}  # as floor.json names files
    missing = sorted(listed - set(label.values()))
    if missing:
        raise SystemExit(f"the report did not run {', '.join(missing)}: the floor would lose their cases")
    others = [label[f] for f in files if label[f] not in listed]
    if others:
        floor.setdefault(new_suite[0], {"issue": new_suite[1], "min_passed": 0, "files": []})
        floor[new_suite[0]]["files"] = sorted({*floor[new_suite[0]]["files"], *others})
    for spec in floor.values():
        names = sorted(str(c["name"]) for c in report if label.get(str(c["file"])) in spec["files"]
                       and c["status"] == "pass")
        spec["min_passed"], spec["passing"] = len(names), names
    floor_path.write_text(json.dumps(floor, indent=1) + "\n")


def floor_files_outside(folder: Path) -> list[str]:
    """The files ``floor.json`` lists that are not in ``folder`` (the REST files its suites run)."""
    floor = json.loads((HERE / "floor.json").read_text())
    return sorted(str(SHARED / "ksql-qtt" / f) for spec in floor.values() for f in spec["files"]
                  if not f.startswith(f"{folder.name}/"))


def run(files: list[str], report: Path) -> None:
    """Run the shared runner on ``files`` (when empty: all QTT files and the REST files the floor
    lists), writing ``report``."""
    args = [sys.executable, str(SHARED / "qtt_run.py"), "--jobs", "2", "--timeout", "60",
            "--json-report", str(report), "--engine", ENGINE]
    for name in files or [str(QTT), *floor_files_outside(QTT)]:
        args += ["--files", name]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    subprocess.run(args, check=False, env=env, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="a runner JSON report, or with --run the QTT files to run")
    parser.add_argument("--run", action="store_true", help="run the files first")
    parser.add_argument("--update-floor", action="store_true",
                        help="rewrite floor.json from the report (a run of every file)")
    opts = parser.parse_args(argv)
    if opts.run:
        path = Path(tempfile.mkdtemp()) / "report.json"
        run(opts.paths, path)
    elif len(opts.paths) == 1:
        path = Path(opts.paths[0])
    else:
        parser.error("give one report, or --run")
    report = json.loads(path.read_text())
    if opts.update_floor:
        update_floor(report, HERE / "floor.json", ("functions-and-more", 14))
    for name, cases in group(report).items():
        print(f"{len(cases):4d}  {name}")
        for case in cases:
            print(f"        {case}")
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
