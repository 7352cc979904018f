"""ksqlDB's REST query-validation tests, run through HTTP against the server by ``rest_runner.py``.

The 15 files live in ``../shared/conformance/ksql-qtt/rest-query-validation-tests`` beside the
checkout (read in place). The test skips only when that folder is absent. It fails when a case
named in ``rest_floor.json`` no longer passes (naming it) or fewer cases pass than the floor's
count; cases passing beyond the floor are printed, to be added to it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rest_runner import RQTT_DIR

HERE = Path(__file__).parent
FLOOR = json.loads((HERE / "rest_floor.json").read_text())

pytestmark = pytest.mark.skipif(not RQTT_DIR.is_dir(), reason=f"{RQTT_DIR} is absent")


def test_every_rest_case_of_the_floor_still_passes(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, str(HERE / "rest_runner.py"), "--jobs", "2", "--json-report", str(report)],
                          capture_output=True, text=True, timeout=900, check=False)
    assert report.exists(), f"the runner did not finish:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    outcomes = {o["name"]: o for o in json.loads(report.read_text())}
    passed = {name for name, o in outcomes.items() if o["status"] == "pass"}
    runnable = sum(1 for o in outcomes.values() if o["status"] != "skip")
    print(f"ksqlDB REST tests: {len(passed)}/{runnable} runnable cases pass ({len(passed) / runnable:.1%})")
    for name in sorted(passed - set(FLOOR["passing"])):
        print(f"  passes beyond the floor (add it): {name}")
    regressed = [f"{name}: {outcomes[name]['reason'] if name in outcomes else 'not run'}"
                 for name in FLOOR["passing"] if name not in passed]
    assert not regressed, "cases of the floor that no longer pass:\n" + "\n".join(regressed)
    assert len(passed) >= FLOOR["min_passed"]
