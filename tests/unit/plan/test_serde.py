"""Every kind of plan round-trips through versioned JSON, as exported jobs store them, and two plan
documents compare in the user's terms."""

from __future__ import annotations

import json

import pytest

from nbstream import Engine
from nbstream.errors import PlanError
from nbstream.plan.aggregate import AggregatePlan
from nbstream.plan.join import JoinAggregatePlan, JoinPlan
from nbstream.plan.logical import PLAN_VERSION, StatelessPlan
from nbstream.plan.serde import plan_differences, plan_document, plan_from_json, plan_to_json

SOURCES = """
CREATE STREAM s (id INT KEY, tags ARRAY<STRING>, `addr` STRUCT<`city` STRING, ZIP INT>, amount DECIMAL(10, 2),
                 k VARCHAR)
  WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=2);
CREATE STREAM s2 (id INT KEY, note VARCHAR) WITH (KAFKA_TOPIC='s2', VALUE_FORMAT='JSON', PARTITIONS=2);
CREATE TABLE t (k VARCHAR PRIMARY KEY, label VARCHAR, n INT) WITH (KAFKA_TOPIC='t', VALUE_FORMAT='JSON', PARTITIONS=2);
CREATE TABLE u (k VARCHAR PRIMARY KEY, extra VARCHAR) WITH (KAFKA_TOPIC='u', VALUE_FORMAT='JSON', PARTITIONS=2);
CREATE STREAM ws (id INT KEY, v INT) WITH (KAFKA_TOPIC='ws', VALUE_FORMAT='JSON', WINDOW_TYPE='SESSION');
CREATE STREAM ws2 (id INT KEY, v INT) WITH (KAFKA_TOPIC='ws2', VALUE_FORMAT='JSON', WINDOW_TYPE='SESSION');
"""

#: One query of every kind of plan, and the kind it plans into.
QUERIES = {
    "projection": ("CREATE STREAM p WITH (VALUE_FORMAT='DELIMITED') AS SELECT id, addr->city AS city, "
                   "amount * 2 AS doubled FROM s WHERE ARRAY_LENGTH(tags) > 1;", StatelessPlan),
    "repartition": ("CREATE STREAM r AS SELECT k, id, TRANSFORM(tags, x => x) AS same FROM s PARTITION BY k;",
                    StatelessPlan),
    "windowed aggregate": ("CREATE TABLE w AS SELECT k, COUNT(*) AS n, TOPK(amount, 2) AS top FROM s "
                           "WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 2 SECONDS, GRACE PERIOD 1 SECOND) "
                           "GROUP BY k HAVING COUNT(*) > 1 EMIT CHANGES;", AggregatePlan),
    "session aggregate": ("CREATE TABLE ss AS SELECT k, COLLECT_LIST(id) AS ids FROM s "
                          "WINDOW SESSION (5 SECONDS) GROUP BY k EMIT FINAL;", AggregatePlan),
    "table aggregate": ("CREATE TABLE ta AS SELECT label, SUM(n) AS total FROM t GROUP BY label;", AggregatePlan),
    "stream-table join": ("CREATE STREAM j AS SELECT s.k AS k, s.id AS id, t.label AS label FROM s "
                          "LEFT JOIN t ON s.k = t.k WHERE t.n > 0;", JoinPlan),
    "stream-stream join": ("CREATE STREAM jj AS SELECT s.id AS id, s2.note AS note FROM s "
                           "JOIN s2 WITHIN 1 HOUR GRACE PERIOD 1 MINUTE ON s.id = s2.id;", JoinPlan),
    "windowed join": ("CREATE STREAM wj AS SELECT * FROM ws JOIN ws2 WITHIN 1 MINUTE ON ws.id = ws2.id;",
                      JoinPlan),
    "multi-way join": ("CREATE STREAM m AS SELECT s.k AS k, t.label AS label, u.extra AS extra FROM s "
                       "JOIN t ON s.k = t.k LEFT JOIN u ON t.k = u.k;", JoinPlan),
    "table-table join": ("CREATE TABLE tt AS SELECT ROWKEY AS k, t.label AS label, u.extra AS extra FROM t "
                         "FULL OUTER JOIN u ON t.k = u.k;", JoinPlan),
    "aggregate over a join": ("CREATE TABLE ja AS SELECT t.label AS label, COUNT(*) AS n FROM s "
                              "JOIN t ON s.k = t.k GROUP BY t.label;", JoinAggregatePlan),
}


@pytest.fixture(scope="module")
def plans() -> dict[str, object]:
    eng = Engine()
    eng.execute(SOURCES)
    found = {}
    for name, (sql, _) in QUERIES.items():
        (result,) = eng.execute(sql)
        found[name] = eng.queries.runner(result.query_id).query_plan
    eng.close()
    return found


@pytest.mark.parametrize("name", QUERIES)
def test_every_kind_of_plan_survives_json(name: str, plans: dict[str, object]) -> None:
    plan = plans[name]
    assert isinstance(plan, QUERIES[name][1])
    text = plan_to_json(plan)  # type: ignore[arg-type]
    assert plan_from_json(text) == plan
    assert json.loads(text)["version"] == PLAN_VERSION


def test_a_plan_keeps_the_bound_ksqldb_expression_beside_its_duckdb_lowering(plans: dict[str, object]) -> None:
    plan = plans["projection"]
    assert isinstance(plan, StatelessPlan)
    doubled = next(c for c in plan.columns if c.name == "DOUBLED")
    assert doubled.expression == "AMOUNT * 2"
    assert plan.where_expression == "ARRAY_LENGTH(TAGS) > 1"
    aggregate = plans["windowed aggregate"]
    assert isinstance(aggregate, AggregatePlan)
    assert aggregate.having_expression == "COUNT(*) > 1"
    assert [c.expression for c in aggregate.columns] == ["K", "COUNT(*)", "TOPK(AMOUNT, 2)"]
    join = plans["stream-table join"]
    assert isinstance(join, JoinPlan)
    assert join.where_expression == "T_N > 0"


def test_an_unknown_plan_version_or_a_bad_document_is_refused(plans: dict[str, object]) -> None:
    data = plan_document(plans["projection"])  # type: ignore[arg-type]
    data["version"] = 99
    with pytest.raises(PlanError, match="version 99"):
        plan_from_json(json.dumps(data))
    with pytest.raises(PlanError, match="not a valid plan"):
        plan_from_json(json.dumps({"version": PLAN_VERSION, "plan": {"@type": "StatelessPlan"}}))
    with pytest.raises(PlanError, match="not a valid plan"):
        plan_from_json(json.dumps({"version": PLAN_VERSION, "plan": {"@type": "Rocket"}}))


def test_differences_name_the_column_and_its_ksqldb_expression(plans: dict[str, object]) -> None:
    stored = plan_document(plans["windowed aggregate"])  # type: ignore[arg-type]
    assert plan_differences(stored, stored) == []
    changed = json.loads(json.dumps(stored))
    changed["plan"]["columns"][1]["sql"] = "count_v2(*)"
    (difference,) = plan_differences(stored, changed)
    assert difference.startswith("columns[N = COUNT(*)].sql: ")
    assert "count_v2(*)" in difference
    older = {**stored, "version": PLAN_VERSION - 1}
    assert plan_differences(older, stored) == [f"plan version {PLAN_VERSION - 1} (stored) differs from "
                                               f"{PLAN_VERSION} (this nbstream)"]
