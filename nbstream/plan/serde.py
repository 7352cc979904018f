"""Plans as versioned JSON: what an exported job stores, and what a restarted job compares.

Every kind of plan a persistent query runs — :class:`~nbstream.plan.logical.StatelessPlan`,
:class:`~nbstream.plan.aggregate.AggregatePlan`, :class:`~nbstream.plan.join.JoinPlan`,
:class:`~nbstream.plan.join.JoinAggregatePlan` — is written as a document
``{"version": PLAN_VERSION, "plan": {...}}`` in which each node is an object naming its kind
(``"@type": "AggregatePlan"``) and holding all of its fields: DuckDB lowerings beside the bound
ksqlDB expressions they came from, types in ksqlDB's spelling. :func:`plan_from_json` rebuilds the
plan, so that it checks itself again, and refuses a version it does not know rather than guess.

:func:`plan_differences` compares two documents and says, in the user's terms, where a plan
changed (``nbstream run`` refuses to start a job whose state was built with another plan).
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import MISSING, Field, fields, is_dataclass
from typing import Any

from nbstream.catalog.catalog import WindowInfo
from nbstream.catalog.schema import Column, LogicalSchema
from nbstream.catalog.types import SqlType, parse_type
from nbstream.errors import PlanError
from nbstream.physical.aggregates import Aggregate, Slot
from nbstream.plan.aggregate import AggregateCall, AggregatePlan
from nbstream.plan.join import JoinAggregatePlan, JoinPlan, JoinSide, TableLookup
from nbstream.plan.logical import PLAN_VERSION, OutputColumn, Scan, Sink, StatelessPlan, TableFunction
from nbstream.plan.planner import Plan
from nbstream.sql.ast import WindowSpec, Within

#: Every kind of node a plan document holds, by its ``@type``.
NODE_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    StatelessPlan, AggregatePlan, JoinPlan, JoinAggregatePlan, JoinSide, TableLookup, Scan, Sink, OutputColumn,
    AggregateCall, Aggregate, Slot, WindowSpec, Within, LogicalSchema, Column, TableFunction, WindowInfo,
)}

#: The kinds a document's top-level plan may be.
PLAN_TYPES = (StatelessPlan, AggregatePlan, JoinPlan, JoinAggregatePlan)


def plan_document(plan: Plan) -> dict[str, Any]:
    """``plan`` as a JSON-able document (see the module docstring)."""
    if not isinstance(plan, PLAN_TYPES):
        raise PlanError(f"{type(plan).__name__} is not a plan nbstream can store")
    return {"version": PLAN_VERSION, "plan": _encode(plan)}


def plan_to_json(plan: Plan) -> str:
    """The plan as JSON text (stable key order)."""
    return json.dumps(plan_document(plan), sort_keys=True)


def plan_from_document(document: dict[str, Any]) -> Plan:
    """The plan :func:`plan_document` wrote; a :class:`PlanError` for another version or a bad document."""
    version = document.get("version") if isinstance(document, dict) else None
    if version != PLAN_VERSION:
        raise PlanError(f"plan version {version} cannot be run by this nbstream (it runs version {PLAN_VERSION})")
    try:
        plan = _decode(document["plan"], Any)
    except (KeyError, TypeError, ValueError) as e:
        raise PlanError(f"not a valid plan document: {e!r}") from e
    if not isinstance(plan, PLAN_TYPES):
        raise PlanError(f"not a valid plan document: its plan is a {type(plan).__name__}")
    return plan


def plan_from_json(text: str) -> Plan:
    """The plan :func:`plan_to_json` wrote."""
    return plan_from_document(json.loads(text))


# -- writing ------------------------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, SqlType):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if NODE_TYPES.get(name) is not type(value):
            raise PlanError(f"a plan holds a {name}, which plan documents cannot store")
        return {"@type": name, **{f.name: _encode(getattr(value, f.name)) for f in fields(value)}}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


# -- reading ------------------------------------------------------------------------------------------


def _decode(value: Any, hint: Any) -> Any:
    """``value`` (JSON) as the Python value a field annotated ``hint`` holds."""
    if value is None:
        return None
    if isinstance(value, dict) and "@type" in value:
        return _node(value)
    if isinstance(value, str) and _allows(hint, SqlType):
        return parse_type(value)
    if isinstance(value, list):
        element = _element(hint)
        return tuple(_decode(v, element) for v in value)
    return value


def _node(data: dict[str, Any]) -> Any:
    cls = NODE_TYPES.get(data["@type"])
    if cls is None:
        raise ValueError(f"unknown node type {data['@type']!r}")
    hints = typing.get_type_hints(cls)
    # a field with a default that the document lacks was added to the plan after it was stored: its default
    # is what the stored plan ran with
    return cls(**{f.name: _decode(data[f.name], hints[f.name]) for f in fields(cls)
                  if f.init and (f.name in data or not _has_default(f))})


def _has_default(field: Field[Any]) -> bool:
    return field.default is not MISSING or field.default_factory is not MISSING


def _allows(hint: Any, cls: type) -> bool:
    """Whether a field annotated ``hint`` may hold a ``cls``."""
    if hint is cls:
        return True
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_allows(h, cls) for h in typing.get_args(hint))
    return False


def _element(hint: Any) -> Any:
    """The element type of a ``tuple[X, ...]`` (or ``tuple[X, ...] | None``) annotation; Any otherwise."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return next((_element(h) for h in typing.get_args(hint) if h is not type(None)), Any)
    args = typing.get_args(hint)
    return args[0] if typing.get_origin(hint) is tuple and args else Any


# -- comparing ----------------------------------------------------------------------------------------


def plan_differences(stored: dict[str, Any], current: dict[str, Any], limit: int = 3) -> list[str]:
    """Where the plan document ``current`` differs from ``stored``, at most ``limit`` places, each
    named by its path in the plan (columns by name, with the ksqlDB expression they compute) and
    the two values; empty when they are the same."""
    if stored.get("version") != current.get("version"):
        return [f"plan version {stored.get('version')} (stored) differs from {current.get('version')} (this nbstream)"]
    found: list[str] = []
    _compare(stored.get("plan"), current.get("plan"), "", found)
    return found[:limit]


def _compare(old: Any, new: Any, path: str, found: list[str]) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict) and old.get("@type") == new.get("@type"):
        for key in sorted(set(old) | set(new)):
            _compare(old.get(key), new.get(key), f"{path}.{key}" if path else key, found)
        return
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            _compare(a, b, f"{path}[{_label(a, i)}]", found)
        return
    found.append(f"{path or 'plan'}: {_short(old)} became {_short(new)}")


def _label(item: Any, index: int) -> str:
    """An element's name in a path: a column's name and its ksqlDB expression, else its index."""
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        expression = item.get("expression")
        return f"{item['name']} = {expression}" if expression else item["name"]
    return str(index)


def _short(value: Any, width: int = 160) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"
