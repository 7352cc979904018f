"""The backend, chosen once per engine: every kind of plan has its runner on both backends, found by
the plan's exact type (a JoinAggregatePlan is an AggregatePlan too, and runs as one over a join)."""

from __future__ import annotations

from typing import get_args

import pytest

from nbstream import Engine
from nbstream.errors import PlanError
from nbstream.plan.join import JoinAggregatePlan
from nbstream.plan.planner import Plan
from nbstream.runtime.backend import KAFKA_RUNNERS, RUNNERS, EmbeddedBackend, runner_class
from nbstream.runtime.join import JoinAggregateRunner
from nbstream.runtime.kafka_query import KafkaJoinAggregateRunner


def test_every_kind_of_plan_has_a_runner_on_both_backends() -> None:
    kinds = {*get_args(Plan), JoinAggregatePlan}
    assert set(RUNNERS) == set(KAFKA_RUNNERS) == kinds
    assert RUNNERS[JoinAggregatePlan] is JoinAggregateRunner
    assert KAFKA_RUNNERS[JoinAggregatePlan] is KafkaJoinAggregateRunner


def test_a_plan_no_runner_runs_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="no runner for a str"):
        runner_class(RUNNERS, "not a plan")  # type: ignore[arg-type]


def test_an_engine_without_kafka_runs_on_the_embedded_backend() -> None:
    with Engine() as eng:
        assert isinstance(eng.backend, EmbeddedBackend) and eng.log is eng.backend.log
        assert eng.location() == "in memory"
