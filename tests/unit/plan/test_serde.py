"""Plans round-trip through versioned JSON, as exported jobs will store them."""

from __future__ import annotations

import json

import pytest

from nbstream import Engine
from nbstream.errors import PlanError
from nbstream.plan.serde import plan_from_json, plan_to_json

SCRIPT = """
CREATE STREAM s (id INT KEY, tags ARRAY<STRING>, `addr` STRUCT<`city` STRING, ZIP INT>, amount DECIMAL(10, 2))
  WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=2);
CREATE STREAM t WITH (VALUE_FORMAT='DELIMITED') AS
  SELECT id, addr->city AS city, amount * 2 AS doubled FROM s WHERE ARRAY_LENGTH(tags) > 1;
"""


def test_a_plan_survives_json_and_runs_the_same() -> None:
    eng = Engine()
    eng.execute(SCRIPT)
    plan = eng.queries.runner("CSAS_T_0").plan
    text = plan_to_json(plan)
    assert plan_from_json(text) == plan
    assert json.loads(text)["version"] == 1


def test_an_unknown_plan_version_is_refused() -> None:
    eng = Engine()
    eng.execute(SCRIPT)
    data = json.loads(plan_to_json(eng.queries.runner("CSAS_T_0").plan))
    data["version"] = 99
    with pytest.raises(PlanError, match="version 99"):
        plan_from_json(json.dumps(data))
    with pytest.raises(PlanError, match="not a valid plan"):
        plan_from_json(json.dumps({"version": 1}))
