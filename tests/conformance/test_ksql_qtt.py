"""ksqlDB's own query-validation tests, run against nbstream by the shared conformance runner.

The files and the runner live in ``../shared/conformance`` beside the checkout (they are not
copied into the project). The test skips only when that folder is absent, and fails when the pass
count falls below the floor recorded in ``floor.json`` or a case it names stops passing (naming
it) — raise the floor and add the names as the engine improves (``qtt_failures.py`` lists the rest).
The engine runs with the functions ksqlDB's test suite installs (``ksql_test_functions.py``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SHARED = HERE.parents[1].parent / "shared" / "conformance"
FLOOR = json.loads((HERE / "floor.json").read_text())
#: nbstream's Engine with ksqlDB's test-suite functions declared as Python UDFs (see that module).
ENGINE = "ksql_test_functions:Engine"

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is absent")


def _run(files: list[str], report: Path) -> tuple[int, int, int]:
    args = [sys.executable, str(SHARED / "qtt_run.py"), "--jobs", "2", "--timeout", "60", "--json-report", str(report),
            "--engine", ENGINE]
    for name in files:
        args += ["--files", str(SHARED / "ksql-qtt" / name)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(args, capture_output=True, text=True, timeout=1800, check=False, env=env)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    match = re.fullmatch(r"(\d+) passed, (\d+) failed, (\d+) skipped", last)
    assert match, f"runner did not finish:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    passed, failed, skipped = (int(g) for g in match.groups())
    return passed, failed, skipped


@pytest.mark.parametrize("suite", sorted(FLOOR))
def test_conformance_pass_count_does_not_drop(suite: str, tmp_path: Path) -> None:
    """Every case the floor names still passes, and at least ``min_passed`` cases pass."""
    spec = FLOOR[suite]
    report = tmp_path / "report.json"
    passed, failed, _ = _run(spec["files"], report)
    runnable = passed + failed
    print(f"{suite}: {passed}/{runnable} passed ({passed / runnable:.1%})")
    passing = {case["name"] for case in json.loads(report.read_text()) if case["status"] == "pass"}
    for name in sorted(passing - set(spec.get("passing", []))):
        print(f"  passes beyond the floor (add it): {name}")
    regressed = sorted(set(spec.get("passing", [])) - passing)
    assert not regressed, f"{suite}: cases of the floor that no longer pass:\n" + "\n".join(regressed)
    assert passed >= spec["min_passed"], (
        f"{suite}: {passed} of {runnable} runnable cases pass; the floor is {spec['min_passed']}"
    )
