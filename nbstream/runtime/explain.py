"""EXPLAIN: a query's plan as its topology — the steps a record goes through, from the topics it is
read from to the topic it is written to — one ``(step, detail)`` row per step, in order.

Every kind of plan is explained: a projection/filter, an aggregation (group, window, HAVING), a join
(each input, then the joins, in the order records look them up) and an aggregation over a join. The
notebook draws the same rows as a picture (:mod:`nbstream.notebook.display`).
"""

from __future__ import annotations

from nbstream.physical.expressions import quote
from nbstream.plan.aggregate import AggregatePlan, window_grace_ms
from nbstream.plan.join import JOIN_KEY, JoinAggregatePlan, JoinPlan, JoinSide
from nbstream.plan.logical import OutputColumn, Sink, StatelessPlan
from nbstream.plan.planner import Plan
from nbstream.sql.ast import WindowSpec, Within

Step = tuple[str, str]

#: The columns of EXPLAIN's result.
EXPLAIN_COLUMNS = ("step", "detail")


def explain_plan(plan: Plan) -> list[Step]:
    """The steps of ``plan``, inputs first and the sink last."""
    if isinstance(plan, JoinAggregatePlan):
        assert plan.join is not None
        return [*_join_steps(plan.join), *_aggregate_steps(plan)]
    if isinstance(plan, AggregatePlan):
        return [_source(plan.pre), *_filter(plan.pre.where), *_aggregate_steps(plan)]
    if isinstance(plan, JoinPlan):
        return [*_join_steps(plan), *_filter(plan.where), *_columns(plan.columns), *_sink(plan.sink)]
    flat_map = [("flat map", f"{c.name} := each element of {c.expression}") for c in plan.table_functions]
    return [_source(plan), *_filter(plan.where), *flat_map, *_columns(plan.columns), *_sink(plan.sink)]


def _source(plan: StatelessPlan, alias: str = "") -> Step:
    scan = plan.scan
    named = f" AS {alias}" if alias and alias != scan.source else ""
    return "source", f"{scan.source}{named} (topic {scan.topic}, {scan.value_format})"


def _filter(where: str | None) -> list[Step]:
    return [("filter", where)] if where else []


def _columns(columns: tuple[OutputColumn, ...]) -> list[Step]:
    return [("column", f"{c.name} {c.type}{' KEY' if c.role == 'KEY' else ''} := {c.sql}") for c in columns]


def _sink(sink: Sink | None) -> list[Step]:
    if sink is None:
        return [("output", "the push or pull query's rows")]
    return [("sink", f"{sink.name} (topic {sink.topic}, {sink.value_format})")]


def _join_steps(plan: JoinPlan) -> list[Step]:
    steps = [_source(side.pre, side.alias) for side in plan.sides]
    if plan.within is not None:
        steps.append(("join", f"{plan.kind} {_kind_of(plan.left)}-{_kind_of(plan.right)} join of "
                              f"{plan.left.alias} and {plan.right.alias} on their key, {_within(plan.within)}"))
    elif plan.left.is_table:
        on = "the left table's foreign key" if plan.foreign_key else "their key"
        steps.append(("join", f"{plan.kind} table-table join of {plan.left.alias} and {plan.right.alias} on {on}"))
        key = "the left table's key" if plan.foreign_key else "the key"
        return steps + [("join", f"{step.kind} table-table join of the result and {step.side.alias} on {key}")
                        for step in plan.chain]
    for lookup in plan.lookups:
        by = "the join key" if lookup.probe == quote(JOIN_KEY) else lookup.probe
        if lookup.within is None:
            steps.append(("join", f"{lookup.kind} lookup of table {lookup.side.alias} by {by}"))
        else:
            steps.append(("join", f"{lookup.kind} stream-stream join of the result (by {by}) and stream "
                                  f"{lookup.side.alias}, {_within(lookup.within)}"))
    return steps


def _within(within: Within) -> str:
    grace = "" if within.grace_ms is None else f", grace {within.grace_ms} ms"
    return f"within {within.before_ms} ms before and {within.after_ms} ms after{grace}"


def _kind_of(side: JoinSide) -> str:
    return "table" if side.is_table else "stream"


def _aggregate_steps(plan: AggregatePlan) -> list[Step]:
    groups = ", ".join(g.sql for g in plan.groups) or "(one group)"
    steps: list[Step] = [("group by", groups)]
    if plan.window is not None:
        steps.append(("window", _window(plan.window, plan.emit_final)))
    inputs = {c.name: c.sql for c in plan.pre.columns}
    calls = ", ".join(f"{c.aggregate.name}({'*' if c.arg is None else inputs.get(c.arg, c.arg)})" for c in plan.calls)
    if calls:
        steps.append(("aggregate", calls + (" as retractions of the table's changes" if plan.table_keys else "")))
    if plan.having:
        steps.append(("having", plan.having))
    return [*steps, *_columns(plan.columns), *_sink(plan.sink)]


def _window(window: WindowSpec, emit_final: bool) -> str:
    size = "gap" if window.kind == "SESSION" else "size"
    parts = [f"{window.kind} {size} {window.size_ms} ms"]
    if window.advance_ms is not None:
        parts.append(f"advance {window.advance_ms} ms")
    default = " (default)" if window.grace_ms is None else ""
    parts.append(f"grace {window_grace_ms(window, emit_final)} ms{default}")
    if window.retention_ms is not None:
        parts.append(f"retention {window.retention_ms} ms")
    parts.append("EMIT FINAL: once per window when it closes" if emit_final else "EMIT CHANGES")
    return ", ".join(parts)
