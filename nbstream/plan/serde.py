"""Plans as versioned JSON: what an exported job stores and the runner loads.

``plan_to_json`` writes every field of a :class:`~nbstream.plan.logical.StatelessPlan` (types in
ksqlDB's spelling); ``plan_from_json`` rebuilds it — so the plan checks itself again — and refuses
a version it does not know rather than guess.
"""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from typing import Any

from nbstream.catalog.schema import Column, LogicalSchema
from nbstream.catalog.types import SqlType, parse_type
from nbstream.errors import PlanError
from nbstream.plan.logical import PLAN_VERSION, OutputColumn, Scan, Sink, StatelessPlan


def plan_to_json(plan: StatelessPlan) -> str:
    """The plan as JSON text (stable key order)."""
    return json.dumps(_data(plan), sort_keys=True)


def plan_from_json(text: str) -> StatelessPlan:
    """The plan ``plan_to_json`` wrote; a :class:`PlanError` for another version or a bad document."""
    data = json.loads(text)
    version = data.get("version")
    if version != PLAN_VERSION:
        raise PlanError(f"plan version {version} cannot be run by this nbstream (it runs version {PLAN_VERSION})")
    try:
        sink = data["sink"]
        return StatelessPlan(
            scan=_scan(data["scan"]),
            columns=tuple(OutputColumn(c["name"], parse_type(c["type"]), c["sql"], c["role"]) for c in data["columns"]),
            where=data["where"], sink=Sink(**sink) if sink is not None else None,
            emits_table=data["emits_table"], limit=data["limit"], key_from_source=data["key_from_source"],
        )
    except (KeyError, TypeError) as e:
        raise PlanError(f"not a valid plan document: {e!r}") from e


def _scan(data: dict[str, Any]) -> Scan:
    columns = tuple(Column(c["name"], parse_type(c["type"]), c["role"], c["header_key"])
                    for c in data["schema"]["columns"])
    return Scan(**{**data, "schema": LogicalSchema(columns)})


def _data(value: Any) -> Any:
    if isinstance(value, SqlType):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _data(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list | tuple):
        return [_data(v) for v in value]
    if isinstance(value, dict):
        return {k: _data(v) for k, v in value.items()}
    return value
