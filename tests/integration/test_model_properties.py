"""The engine writes what a record-at-a-time model of ksqlDB writes, whatever the micro-batch size.

The oracle is ``tests/reference/ksql_model.py``: plain Python written from Kafka Streams' and
ksqlDB's Java code (its docstring lists the rules and where nbstream deliberately differs from
Kafka Streams). Each case feeds seeded random input (dense, sparse, jittered and out-of-order
timestamps, with records late enough to be dropped; one and three partitions) through the engine
in micro-batches of 1, 7, 1,000 records or all at once (produce the batch, ``run_until_idle()``,
repeat) and compares every record written with the model's:

- EMIT CHANGES and table aggregations: per (key, window) the exact sequence of values (tombstones
  included) and timestamps;
- EMIT FINAL: the multiset of (key, window, value, timestamp), with no window written twice;
- stream-stream joins: per key the multiset of (value, timestamp);
- multi-way joins (three streams, or a stream, a table and a stream): the model's joins composed,
  each join's output fed to the next as its left input (the model's rule 6);
- after every micro-batch: exactly the records the model writes for the records produced so far;
- the late records each query counted (``stats.late``).

Keys stay in one partition: the embedded log's partitioner places a key in one partition of every
topic, and the model reads each record's partition back from the input topic, so tasks never
share a key. Both inputs of a join are processed in arrival order (the order of the produce calls).
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest
from produced import EVERY_CHANGE  # type: ignore[import-not-found]
from reference.ksql_model import (
    DAY_MS,
    JoinWindows,
    Output,
    Record,
    SessionWindows,
    TimeWindows,
    from_chain_input,
    next_join_input,
    session_window_aggregate,
    stream_stream_join,
    stream_table_join,
    table_aggregate,
    time_window_aggregate,
)

from nbstream import Engine

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

Row = tuple[Hashable, tuple[int, int] | None, Any, int]  # (key, window, value or None, timestamp)


# --- the model's side ----------------------------------------------------------------------------


def window_aggregates(records: Sequence[Record]) -> dict[str, int]:
    """COUNT(*), SUM(v), MIN(v), MAX(v) and LATEST_BY_OFFSET(v) of a window's records."""
    values = [r.value["V"] for r in records]
    return {"C": len(values), "S": sum(values), "LO": min(values), "HI": max(values),
            "LAST": max(records, key=lambda r: r.seq).value["V"]}


WINDOW_AGGREGATES = "COUNT(*) AS c, SUM(v) AS s, MIN(v) AS lo, MAX(v) AS hi, LATEST_BY_OFFSET(v) AS last"


def table_group_aggregates(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """COUNT(*) and SUM(amount) of a group's current rows."""
    return {"C": len(rows), "S": sum(row["AMOUNT"] for row in rows)}


# --- the engine's side ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One record to produce: ``partition`` None lets the log's partitioner place it by key."""

    topic: str
    key: Hashable
    value: dict[str, Any] | None
    ts: int
    partition: int | None = None


@dataclass
class EngineRun:
    """What the engine wrote: every sink's records in the order they appeared, how many each sink
    had after each micro-batch (with the number of events produced by then), each query's late
    count, and the partition each input key went to."""

    written: dict[str, list[Row]]
    progress: list[tuple[int, dict[str, int]]]
    late: dict[str, int]
    expired: dict[str, int]
    partition_of: dict[tuple[str, Hashable], int]
    keys_in_several_partitions: dict[str, list[Hashable]]


def run_engine(ddl: str, queries: dict[str, str], events: Sequence[Event], batch: int) -> EngineRun:
    """Run ``queries`` (sink name -> CREATE … AS SELECT) over ``events``: produce ``batch`` events
    (0: all of them), ``run_until_idle()``, read what each sink gained, repeat."""
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(ddl)
    query_ids = {sink: eng.execute(sql)[-1].query_id for sink, sql in queries.items()}
    written: dict[str, list[Row]] = {sink: [] for sink in queries}
    next_offsets: dict[str, dict[int, int]] = {sink: {} for sink in queries}
    sink_partitions: dict[str, dict[Hashable, set[int]]] = {sink: defaultdict(set) for sink in queries}
    progress = []
    step = batch or max(len(events), 1)
    for start in range(0, len(events), step):
        _produce(eng, events[start:start + step])
        eng.run_until_idle()
        for sink in queries:
            for record in eng.consume(sink, from_offsets=next_offsets[sink]):
                next_offsets[sink][record.partition] = record.offset + 1
                sink_partitions[sink][record.key].add(record.partition)
                window = None if record.window is None else tuple(record.window)
                written[sink].append((record.key, window, record.value, record.timestamp))
        progress.append((min(start + step, len(events)), {sink: len(rows) for sink, rows in written.items()}))
    stats = {sink: eng.queries.runner(query_id).stats for sink, query_id in query_ids.items()}
    late = {sink: s.late for sink, s in stats.items()}
    expired = {sink: s.expired for sink, s in stats.items()}
    partition_of = {(topic, record.key): record.partition
                    for topic in {e.topic for e in events} for record in eng.consume(topic)}
    several = {sink: [k for k, ps in keys.items() if len(ps) > 1] for sink, keys in sink_partitions.items()}
    eng.close()
    return EngineRun(written, progress, late, expired, partition_of, several)


def _produce(eng: Engine, events: Sequence[Event]) -> None:
    """Append ``events`` in order: explicit partitions one by one, the others as one DataFrame per
    run of consecutive events of the same topic (the vectorised path, much faster)."""
    run: list[Event] = []
    for event in [*events, None]:
        if run and (event is None or event.topic != run[0].topic or event.partition is not None):
            frame = pd.DataFrame([{"K": e.key, "TS": e.ts, **(e.value or {})} for e in run])
            eng.produce_batch(run[0].topic, frame, key="K", timestamp="TS")
            run = []
        if event is None:
            break
        if event.partition is not None:
            eng.produce(event.topic, event.value, key=event.key, timestamp=event.ts, partition=event.partition)
        else:
            run.append(event)


def model_records(events: Sequence[Event], partition_of: dict[tuple[str, Hashable], int],
                  side: Callable[[str], str] = lambda topic: "") -> list[Record]:
    return [Record(seq, partition_of[(e.topic, e.key)], e.key, e.value, e.ts, side(e.topic))
            for seq, e in enumerate(events)]


# --- comparisons ---------------------------------------------------------------------------------


def as_rows(outputs: Iterable[Output], value: Callable[[Any], Any] = lambda v: v) -> list[Row]:
    return [(o.key, o.window, None if o.value is None else value(o.value), o.ts) for o in outputs]


def sequences(rows: Iterable[Row]) -> dict[tuple[Hashable, Any], list[tuple[Any, int]]]:
    """(value, timestamp) in order, per (key, window)."""
    by_window: dict[tuple[Hashable, Any], list[tuple[Any, int]]] = defaultdict(list)
    for key, window, value, ts in rows:
        by_window[(key, window)].append((value, ts))
    return dict(by_window)


def _freeze(value: Any) -> Any:
    return tuple(sorted(value.items())) if isinstance(value, dict) else value


def multiset(rows: Iterable[Row]) -> Counter[tuple[Any, ...]]:
    return Counter((key, window, _freeze(value), ts) for key, window, value, ts in rows)


def sequence_mismatches(engine: list[Row], model: list[Row], limit: int = 4) -> list[str]:
    """Every (key, window) whose sequence of (value, timestamp) differs, engine against model."""
    got, want = sequences(engine), sequences(model)
    bad = sorted((k for k in got.keys() | want.keys() if got.get(k) != want.get(k)), key=repr)
    return [f"    {k}: engine {got.get(k, [])} | model {want.get(k, [])}" for k in bad[:limit]] + (
        [f"    … {len(bad) - limit} more (key, window)s"] if len(bad) > limit else [])


def multiset_mismatches(engine: list[Row], model: list[Row], limit: int = 6) -> list[str]:
    got, want = multiset(engine), multiset(model)
    extra, missing = sorted((got - want).elements(), key=repr), sorted((want - got).elements(), key=repr)
    lines = []
    if extra:
        lines.append(f"    engine only ({len(extra)}): {extra[:limit]}")
    if missing:
        lines.append(f"    model only ({len(missing)}): {missing[:limit]}")
    return lines


def report(failures: dict[str, list[str]], queries: dict[str, str], what: str) -> str:
    return "\n".join([what] + [f"  {queries[sink]}\n" + "\n".join(lines) for sink, lines in failures.items()])


def input_excerpt(events: Sequence[Event], limit: int = 40) -> str:
    """The first events, to reproduce a failure by hand."""
    shown = [(e.topic, e.key, e.value, e.ts) for e in events[:limit]]
    return f"input (topic, key, value, ts), first {len(shown)} of {len(events)}: {shown}"


# --- input shapes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """Window parameters that suit a timestamp shape."""

    size: int
    advance: int
    gap: int
    grace: int
    within: int
    join_grace: int


MILLISECONDS = Scale(size=20, advance=5, gap=6, grace=4, within=10, join_grace=5)
SPARSE = Scale(size=MINUTE, advance=20 * SECOND, gap=2 * MINUTE, grace=10 * SECOND, within=MINUTE,
               join_grace=10 * SECOND)


@dataclass(frozen=True)
class Scenario:
    """An input: its timestamp shape, partitions, size and seed, and the micro-batch size it is
    fed in (0: all at once)."""

    shape: str
    partitions: int
    records: int
    batch: int
    seed: int = 1

    def __str__(self) -> str:
        return f"{self.shape}-{self.partitions}p-{self.records}rec-batch{self.batch or 'all'}"

    @property
    def scale(self) -> Scale:
        return SPARSE if self.shape == "sparse" else MILLISECONDS


def timestamps(shape: str, n: int, rng: random.Random) -> list[int]:
    """``dense``: 0-3 ms steps; ``sparse``: gaps from milliseconds to hours, one record in ten up
    to 3 minutes back; ``jittered``: a 4 ms clock, each record up to 6 ms early or late;
    ``out_of_order``: dense, one record in seven 1-60 ms back (late for 20 ms windows)."""
    out, now = [], 0
    for _ in range(n):
        if shape == "dense":
            now += rng.randint(0, 3)
            ts = now
        elif shape == "jittered":
            now += 4
            ts = now + rng.randint(-6, 6)
        elif shape == "out_of_order":
            now += rng.randint(0, 3)
            ts = now - rng.randint(1, 60) if rng.random() < 0.15 else now
        elif shape == "sparse":
            roll = rng.random()
            now += (rng.randint(0, 5 * SECOND) if roll < 0.25 else rng.randint(1, 59) * SECOND if roll < 0.6
                    else rng.randint(1, 30) * MINUTE if roll < 0.85 else rng.randint(1, 5) * HOUR)
            ts = now - rng.randint(1, 3 * MINUTE) if rng.random() < 0.1 else now
        else:
            raise ValueError(shape)
        out.append(max(ts, 0))
    return out


# --- windowed aggregations -------------------------------------------------------------------------

WINDOW_KINDS = ("tumbling", "hopping", "session")
GRACES: dict[str, Callable[[Scale], int | None]] = {"g0": lambda s: 0, "gsmall": lambda s: s.grace,
                                                    "gnone": lambda s: None}


def _ms(n: int) -> str:
    return f"{n} MILLISECONDS"


def window_specs(scale: Scale, *, few: bool = False) -> dict[str, TimeWindows | SessionWindows]:
    """Sink name (``<KIND>_<CHANGES|FINAL>_<G0|GSMALL|GNONE>``) -> window: each kind with grace 0,
    small and none, each with EMIT CHANGES and EMIT FINAL. ``few``: the six of ``FEW_WINDOWS`` only
    (micro-batches of one record cost a DuckDB round per query and record)."""
    specs: dict[str, TimeWindows | SessionWindows] = {}
    for kind in WINDOW_KINDS:
        for label, grace in GRACES.items():
            for final in (False, True):
                sink = f"{kind}_{'final' if final else 'changes'}_{label}".upper()
                if few and sink not in FEW_WINDOWS:
                    continue
                if kind == "session":
                    specs[sink] = SessionWindows(scale.gap, grace(scale), final)
                else:
                    advance = scale.size if kind == "tumbling" else scale.advance
                    specs[sink] = TimeWindows(scale.size, advance, grace(scale), final)
    return specs


FEW_WINDOWS = ("TUMBLING_FINAL_GSMALL", "TUMBLING_CHANGES_G0", "HOPPING_FINAL_G0", "HOPPING_CHANGES_GSMALL",
               "SESSION_FINAL_GSMALL", "SESSION_CHANGES_G0")


def window_sql(spec: TimeWindows | SessionWindows) -> str:
    grace = "" if spec.grace is None else f", GRACE PERIOD {_ms(spec.grace)}"
    if isinstance(spec, SessionWindows):
        return f"SESSION ({_ms(spec.gap)}{grace})"
    if spec.advance == spec.size:
        return f"TUMBLING (SIZE {_ms(spec.size)}{grace})"
    return f"HOPPING (SIZE {_ms(spec.size)}, ADVANCE BY {_ms(spec.advance)}{grace})"


def readings_ddl(partitions: int) -> str:
    return (f"CREATE STREAM readings (k VARCHAR KEY, v INT) "
            f"WITH (KAFKA_TOPIC='readings', VALUE_FORMAT='JSON', PARTITIONS={partitions});")


def windowed_query(sink: str, spec: TimeWindows | SessionWindows) -> str:
    emit = "FINAL" if spec.final else "CHANGES"
    return (f"CREATE TABLE {sink} AS SELECT k, {WINDOW_AGGREGATES} FROM readings "
            f"WINDOW {window_sql(spec)} GROUP BY k EMIT {emit};")


def model_windowed(records: list[Record], spec: TimeWindows | SessionWindows
                   ) -> tuple[list[Output], tuple[int, int]]:
    """What the model writes, and its (late records, expired windows) counts."""
    if isinstance(spec, SessionWindows):
        result = session_window_aggregate(records, spec, window_aggregates)
    else:
        result = time_window_aggregate(records, spec, window_aggregates)
    return result.outputs, (result.late, result.expired)


def reading_events(scenario: Scenario) -> list[Event]:
    rng = random.Random(f"readings-{scenario.shape}-{scenario.seed}")
    return [Event("readings", f"k{rng.randrange(6)}", {"V": rng.randint(-50, 50)}, ts)
            for ts in timestamps(scenario.shape, scenario.records, rng)]


@dataclass
class Checked:
    """An engine run beside the model's outputs and (late, expired) counts for the same input."""

    events: list[Event]
    queries: dict[str, str]
    run: EngineRun
    model: dict[str, list[Output]]
    model_counts: dict[str, tuple[int, int]]
    final: dict[str, bool]
    value: Callable[[Any], Any] = lambda v: v

    def engine_rows(self, sink: str) -> list[Row]:
        return self.run.written[sink]

    def model_rows(self, sink: str, upto: int | None = None) -> list[Row]:
        outputs = self.model[sink] if upto is None else [o for o in self.model[sink] if o.trigger < upto]
        return as_rows(outputs, self.value)


@functools.cache
def windowed_run(scenario: Scenario) -> Checked:
    """The windows of ``window_specs`` on one engine: all of them for 150 records at once, a few
    when the input is fed in micro-batches or is large (each query costs a DuckDB round per batch)."""
    specs = window_specs(scenario.scale, few=scenario.batch > 0 or scenario.records > 1_000)
    queries = {sink: windowed_query(sink, spec) for sink, spec in specs.items()}
    events = reading_events(scenario)
    run = run_engine(readings_ddl(scenario.partitions), queries, events, scenario.batch)
    records = model_records(events, run.partition_of)
    model, late = {}, {}
    for sink, spec in specs.items():
        model[sink], late[sink] = model_windowed(records, spec)
    return Checked(events, queries, run, model, late, {sink: spec.final for sink, spec in specs.items()})


def of_kind(checked: Checked, kind: str) -> Checked:
    """The same run, restricted to the sinks of one window kind."""
    sinks = [sink for sink in checked.queries if sink.startswith(kind.upper() + "_")]
    return Checked(checked.events, {s: checked.queries[s] for s in sinks}, checked.run,
                   {s: checked.model[s] for s in sinks}, {s: checked.model_counts[s] for s in sinks},
                   {s: checked.final[s] for s in sinks}, checked.value)


WINDOW_RUNS = [
    Scenario("dense", 1, 150, 0),
    Scenario("jittered", 3, 150, 0),
    Scenario("sparse", 3, 150, 0),
    Scenario("out_of_order", 1, 150, 0),
    Scenario("out_of_order", 3, 150, 0),
    Scenario("sparse", 3, 70, 7),
    Scenario("out_of_order", 1, 70, 7),
    Scenario("sparse", 3, 24, 1),
    Scenario("jittered", 3, 2_000, 1_000),
    Scenario("jittered", 3, 2_000, 0),
]
BATCHED_WINDOW_RUNS = [s for s in WINDOW_RUNS if 0 < s.batch < s.records]


def _check_changes(checked: Checked) -> dict[str, list[str]]:
    failures = {}
    for sink, final in checked.final.items():
        if not final:
            lines = sequence_mismatches(checked.engine_rows(sink), checked.model_rows(sink))
            if lines:
                failures[sink] = lines
    return failures


def _check_final(checked: Checked, *, once_per_window: bool = True) -> dict[str, list[str]]:
    failures = {}
    for sink, final in checked.final.items():
        if final:
            rows = checked.engine_rows(sink)
            twice = [kw for kw, n in Counter((k, w) for k, w, _, _ in rows).items() if n > 1]
            lines = multiset_mismatches(rows, checked.model_rows(sink))
            if twice and once_per_window:
                lines.append(f"    written more than once: {twice[:6]}")
            if lines:
                failures[sink] = lines
    return failures


def _check_progress(checked: Checked) -> dict[str, list[str]]:
    failures: dict[str, list[str]] = {}
    for produced, counts in checked.run.progress:
        for sink, count in counts.items():
            if sink in failures or sink not in checked.queries:
                continue
            lines = multiset_mismatches(checked.engine_rows(sink)[:count], checked.model_rows(sink, upto=produced))
            if lines:
                failures[sink] = [f"    after the micro-batch ending with input record {produced - 1}:", *lines]
    return failures


def _fail_if(failures: dict[str, list[str]], checked: Checked, what: str) -> None:
    if failures:
        pytest.fail(report(failures, checked.queries, what) + "\n" + input_excerpt(checked.events), pytrace=False)


@pytest.mark.parametrize("scenario", WINDOW_RUNS, ids=str)
@pytest.mark.parametrize("kind", WINDOW_KINDS)
def test_emit_changes_writes_every_update_of_every_window_in_the_models_order(kind: str, scenario: Scenario) -> None:
    checked = of_kind(windowed_run(scenario), kind)
    _fail_if(_check_changes(checked), checked, "EMIT CHANGES differs from the model (per key and window):")


@pytest.mark.parametrize("scenario", WINDOW_RUNS, ids=str)
@pytest.mark.parametrize("kind", WINDOW_KINDS)
def test_emit_final_writes_every_closed_window_exactly_once(kind: str, scenario: Scenario) -> None:
    checked = of_kind(windowed_run(scenario), kind)
    _fail_if(_check_final(checked), checked, "EMIT FINAL differs from the model:")


@pytest.mark.parametrize("scenario", WINDOW_RUNS, ids=str)
@pytest.mark.parametrize("kind", WINDOW_KINDS)
def test_late_records_and_expired_windows_are_counted_like_the_model(kind: str, scenario: Scenario) -> None:
    checked = of_kind(windowed_run(scenario), kind)
    engine = {sink: (checked.run.late[sink], checked.run.expired[sink]) for sink in checked.queries}
    counted = {sink: (engine[sink], checked.model_counts[sink]) for sink in checked.queries
               if engine[sink] != checked.model_counts[sink]}
    assert not counted, (f"(late, expired) counts (engine, model) differ: {counted}\n"
                         f"{input_excerpt(checked.events)}")


@pytest.mark.parametrize("scenario", BATCHED_WINDOW_RUNS, ids=str)
@pytest.mark.parametrize("kind", WINDOW_KINDS)
def test_each_micro_batch_writes_exactly_what_its_records_cause(kind: str, scenario: Scenario) -> None:
    checked = of_kind(windowed_run(scenario), kind)
    _fail_if(_check_progress(checked), checked, "what the engine had written after a micro-batch differs:")


@pytest.mark.parametrize("scenario", WINDOW_RUNS, ids=str)
def test_a_key_is_written_to_one_partition_of_the_sink(scenario: Scenario) -> None:
    several = {sink: keys for sink, keys in windowed_run(scenario).run.keys_in_several_partitions.items() if keys}
    assert not several


# --- stream-stream joins ---------------------------------------------------------------------------

JOIN_KINDS = {"INNER": "JOIN", "LEFT": "LEFT JOIN", "FULL": "FULL OUTER JOIN"}


def join_ddl(partitions: int) -> str:
    return "".join(f"CREATE STREAM {side} (k VARCHAR KEY, v INT) "
                   f"WITH (KAFKA_TOPIC='{side}', VALUE_FORMAT='JSON', PARTITIONS={partitions});"
                   for side in ("lefts", "rights"))


def join_specs(scale: Scale, *, few: bool = False) -> dict[str, JoinWindows]:
    """INNER, LEFT and FULL OUTER, each without (``_EAGER``) and with (``_GRACE``) GRACE PERIOD;
    ``few``: the three of ``FEW_JOINS``."""
    specs = {f"{kind}_{label}".upper(): JoinWindows(kind, scale.within, grace)  # type: ignore[arg-type]
             for kind in JOIN_KINDS for label, grace in (("eager", None), ("grace", scale.join_grace))}
    return {sink: spec for sink, spec in specs.items() if not few or sink in FEW_JOINS}


FEW_JOINS = ("INNER_GRACE", "LEFT_EAGER", "FULL_GRACE")


def join_query(sink: str, spec: JoinWindows) -> str:
    key = "ROWKEY" if spec.kind == "FULL" else "l.k"
    grace = "" if spec.grace is None else f" GRACE PERIOD {_ms(spec.grace)}"
    return (f"CREATE STREAM {sink} AS SELECT {key} AS k, l.v AS lv, r.v AS rv FROM lefts l "
            f"{JOIN_KINDS[spec.kind]} rights r WITHIN {_ms(spec.within)}{grace} ON l.k = r.k;")


def join_events(scenario: Scenario) -> list[Event]:
    rng = random.Random(f"join-{scenario.shape}-{scenario.seed}")
    return [Event(rng.choice(("lefts", "rights")), f"k{rng.randrange(4)}", {"V": i}, ts)
            for i, ts in enumerate(timestamps(scenario.shape, scenario.records, rng))]


@functools.cache
def join_run(scenario: Scenario) -> Checked:
    """INNER, LEFT and FULL OUTER joins, without and with GRACE PERIOD, on one engine."""
    specs = join_specs(scenario.scale, few=0 < scenario.batch < 100)
    queries = {sink: join_query(sink, spec) for sink, spec in specs.items()}
    events = join_events(scenario)
    run = run_engine(join_ddl(scenario.partitions), queries, events, scenario.batch)
    records = model_records(events, run.partition_of, side=lambda t: "left" if t == "lefts" else "right")
    model = {sink: stream_stream_join(records, spec) for sink, spec in specs.items()}

    def value(pair: tuple[Any, Any]) -> dict[str, Any]:
        left, right = pair
        return {"LV": None if left is None else left["V"], "RV": None if right is None else right["V"]}

    return Checked(events, queries, run, model, {}, {sink: True for sink in specs}, value)


JOIN_RUNS = [
    Scenario("dense", 1, 150, 0),
    Scenario("sparse", 3, 150, 0),
    Scenario("jittered", 3, 150, 0),
    Scenario("out_of_order", 1, 150, 0),
    Scenario("out_of_order", 3, 150, 0),
    Scenario("out_of_order", 3, 70, 7),
    Scenario("jittered", 1, 20, 1),
]


@pytest.mark.parametrize("scenario", JOIN_RUNS, ids=str)
def test_stream_stream_joins_write_the_models_rows(scenario: Scenario) -> None:
    checked = join_run(scenario)
    _fail_if(_check_final(checked, once_per_window=False), checked, "stream-stream join rows differ from the model:")


@pytest.mark.parametrize("scenario", [s for s in JOIN_RUNS if 0 < s.batch < s.records], ids=str)
def test_each_micro_batch_of_a_join_writes_exactly_what_its_records_cause(scenario: Scenario) -> None:
    checked = join_run(scenario)
    _fail_if(_check_progress(checked), checked, "what a join had written after a micro-batch differs:")


# --- multi-way joins -------------------------------------------------------------------------------

#: A chain: its first join (a stream-stream one, or — ``"TABLE_<kind>"`` — a stream-table one) and its
#: second, a stream-stream join with a WITHIN of its own (half the first one's).
Chain = tuple[JoinWindows | str, JoinWindows]


def chain_specs(scale: Scale, *, few: bool = False) -> dict[str, Chain]:
    """Three streams (INNER, LEFT and FULL OUTER mixes, with and without GRACE PERIOD, each join its
    own) and a stream, a table and a stream; ``few``: those of ``FEW_CHAINS``."""
    within1, within2, grace2 = scale.within * 2, scale.within, scale.join_grace // 2
    pairs: dict[str, Chain] = {}
    for first, second, graces in (("INNER", "INNER", "NN"), ("LEFT", "LEFT", "NN"), ("FULL", "FULL", "GG"),
                                  ("INNER", "FULL", "GG"), ("LEFT", "INNER", "GN"), ("FULL", "LEFT", "NG"),
                                  ("LEFT", "FULL", "NG")):
        one = JoinWindows(first, within1, scale.join_grace if graces[0] == "G" else None)  # type: ignore[arg-type]
        two = JoinWindows(second, within2, grace2 if graces[1] == "G" else None)  # type: ignore[arg-type]
        pairs[f"S3_{first}_{second}_{graces}"] = (one, two)
    for first, second, graces in (("INNER", "LEFT", "G"), ("LEFT", "FULL", "G"), ("LEFT", "INNER", "N")):
        two = JoinWindows(second, within2, grace2 if graces == "G" else None)  # type: ignore[arg-type]
        pairs[f"STS_{first}_{second}_{graces}"] = (f"TABLE_{first}", two)
    return {sink: spec for sink, spec in pairs.items() if not few or sink in FEW_CHAINS}


FEW_CHAINS = ("S3_LEFT_LEFT_NN", "S3_FULL_FULL_GG", "S3_LEFT_INNER_GN", "STS_LEFT_FULL_G")


def chain_ddl(partitions: int) -> str:
    streams = "".join(f"CREATE STREAM {name} (k VARCHAR KEY, v INT) "
                      f"WITH (KAFKA_TOPIC='{name}', VALUE_FORMAT='JSON', PARTITIONS={partitions});"
                      for name in ("a", "b", "c"))
    return streams + (f"CREATE TABLE t (k VARCHAR PRIMARY KEY, v INT) "
                      f"WITH (KAFKA_TOPIC='t', VALUE_FORMAT='JSON', PARTITIONS={partitions});")


def _within(spec: JoinWindows) -> str:
    return f"WITHIN {_ms(spec.within)}" + ("" if spec.grace is None else f" GRACE PERIOD {_ms(spec.grace)}")


def chain_query(sink: str, spec: Chain) -> str:
    """``a ⋈ b ⋈ c`` (or ``a ⋈ t ⋈ c``), both on a's key: the result is keyed by it (by ROWKEY after a
    FULL OUTER second join, whose rows may lack a)."""
    first, second = spec
    key = "ROWKEY" if second.kind == "FULL" else "a.k"
    if isinstance(first, str):
        middle, join1 = "t", f"{JOIN_KINDS[first.removeprefix('TABLE_')]} t ON a.k = t.k"
    else:
        middle, join1 = "b", f"{JOIN_KINDS[first.kind]} b {_within(first)} ON a.k = b.k"
    return (f"CREATE STREAM {sink} AS SELECT {key} AS k, a.v AS av, {middle}.v AS mv, c.v AS cv FROM a {join1} "
            f"{JOIN_KINDS[second.kind]} c {_within(second)} ON a.k = c.k;")


def chain_events(scenario: Scenario) -> list[Event]:
    """Records of a, b and c (keys k0-k2), and changes of table t (keys k0-k1)."""
    rng = random.Random(f"chain-{scenario.shape}-{scenario.seed}")
    events = []
    for i, ts in enumerate(timestamps(scenario.shape, scenario.records, rng)):
        topic = rng.choice(("a", "b", "c", "a", "t"))
        events.append(Event(topic, f"k{rng.randrange(2 if topic == 't' else 3)}", {"V": i}, ts))
    return events


def model_chain(records: list[Record], spec: Chain) -> list[Output]:
    """What the model writes for ``a ⋈ x ⋈ c``: its first join's rows, in output order, are the left input
    of its second; each row's value is ((a, x), c), its key for the second join a's key."""
    first, second = spec
    of = {topic: [r for r in records if r.side == topic] for topic in ("a", "b", "c", "t")}
    left = [dataclasses.replace(r, side="left") for r in of["a"]]
    if isinstance(first, str):
        rows = stream_table_join(left + [dataclasses.replace(r, side="right") for r in of["t"]],
                                 first.removeprefix("TABLE_"))  # type: ignore[arg-type]
    else:
        rows = stream_stream_join(left + [dataclasses.replace(r, side="right") for r in of["b"]], first)
    partition = {r.seq: r.partition for r in records}
    chained, origin = next_join_input(rows, partition.__getitem__, of["c"],
                                      key=lambda o: None if o.value[0] is None else o.key)
    return from_chain_input(stream_stream_join(chained, second), origin)


@functools.cache
def chain_run(scenario: Scenario) -> Checked:
    """The chains of ``chain_specs`` on one engine, beside the model's composed joins."""
    specs = chain_specs(scenario.scale, few=0 < scenario.batch < 100)
    queries = {sink: chain_query(sink, spec) for sink, spec in specs.items()}
    events = chain_events(scenario)
    run = run_engine(chain_ddl(scenario.partitions), queries, events, scenario.batch)
    records = model_records(events, run.partition_of, side=lambda topic: topic)
    model = {sink: model_chain(records, spec) for sink, spec in specs.items()}

    def value(pair: tuple[tuple[Any, Any], Any]) -> dict[str, Any]:
        (a, middle), c = pair if pair[0] is not None else ((None, None), pair[1])
        return {name: None if v is None else v["V"] for name, v in (("AV", a), ("MV", middle), ("CV", c))}

    return Checked(events, queries, run, model, {}, {sink: True for sink in specs}, value)


CHAIN_RUNS = [
    Scenario("dense", 1, 200, 0),
    Scenario("jittered", 3, 200, 0),
    Scenario("out_of_order", 1, 200, 0),
    Scenario("sparse", 3, 150, 0),
    Scenario("jittered", 3, 1_500, 1_000),
    Scenario("out_of_order", 3, 70, 7),
    Scenario("jittered", 1, 24, 1),
]


@pytest.mark.parametrize("scenario", CHAIN_RUNS, ids=str)
def test_multi_way_joins_write_the_rows_of_the_models_joins_composed(scenario: Scenario) -> None:
    checked = chain_run(scenario)
    _fail_if(_check_final(checked, once_per_window=False), checked, "multi-way join rows differ from the model:")


@pytest.mark.parametrize("scenario", [s for s in CHAIN_RUNS if 0 < s.batch < s.records], ids=str)
def test_each_micro_batch_of_a_multi_way_join_writes_exactly_what_its_records_cause(scenario: Scenario) -> None:
    checked = chain_run(scenario)
    _fail_if(_check_progress(checked), checked, "what a multi-way join had written after a micro-batch differs:")


# --- table aggregations ----------------------------------------------------------------------------

TABLE_DDL = ("CREATE TABLE accounts (id VARCHAR PRIMARY KEY, region VARCHAR, amount INT) "
             "WITH (KAFKA_TOPIC='accounts', VALUE_FORMAT='JSON', PARTITIONS={partitions});")
TABLE_QUERY = {"PER_REGION": "CREATE TABLE per_region AS SELECT region, COUNT(*) AS c, SUM(amount) AS s "
                             "FROM accounts GROUP BY region EMIT CHANGES;"}


def table_events(scenario: Scenario) -> list[Event]:
    """Upserts, same-group updates, moves between groups, null regions and tombstones. With
    several partitions, account ``a<i>`` lives in partition ``i % partitions`` and only takes
    regions ``r<j>`` of the same ``j % partitions``, so each region's changes come from one
    partition."""
    rng = random.Random(f"table-{scenario.seed}")
    events, now = [], 0
    for _ in range(scenario.records):
        account = rng.randrange(8)
        partition = account % scenario.partitions
        regions = [f"r{j}" for j in range(6) if j % scenario.partitions == partition]
        now += rng.randint(0, 20)
        ts = now - rng.randint(0, 100) if rng.random() < 0.2 else now
        roll = rng.random()
        value = (None if roll < 0.12 else {"REGION": None, "AMOUNT": rng.randint(1, 9)} if roll < 0.2
                 else {"REGION": rng.choice(regions), "AMOUNT": rng.randint(-20, 20)})
        events.append(Event("accounts", f"a{account}", value, max(ts, 0), partition))
    return events


@functools.cache
def table_run(scenario: Scenario) -> Checked:
    events = table_events(scenario)
    run = run_engine(TABLE_DDL.format(partitions=scenario.partitions), TABLE_QUERY, events, scenario.batch)
    records = model_records(events, {(e.topic, e.key): e.partition or 0 for e in events})
    model = {"PER_REGION": table_aggregate(records, lambda row: row.get("REGION"), table_group_aggregates)}
    return Checked(events, TABLE_QUERY, run, model, {}, {"PER_REGION": False})


TABLE_RUNS = [Scenario("table", 1, 150, 0), Scenario("table", 3, 150, 0), Scenario("table", 3, 70, 7),
              Scenario("table", 1, 30, 1)]


@pytest.mark.parametrize("scenario", TABLE_RUNS, ids=str)
def test_table_aggregation_writes_each_groups_changes_in_the_models_order(scenario: Scenario) -> None:
    checked = table_run(scenario)
    _fail_if(_check_changes(checked), checked, "the table aggregation differs from the model (per group):")


@pytest.mark.parametrize("scenario", [s for s in TABLE_RUNS if 0 < s.batch < s.records], ids=str)
def test_each_micro_batch_of_a_table_aggregation_writes_exactly_what_its_changes_cause(scenario: Scenario) -> None:
    checked = table_run(scenario)
    _fail_if(_check_progress(checked), checked, "what the table aggregation had written after a micro-batch differs:")


# --- regressions: the sensor and sparse streams ---------------------------------------------


def _final_rows(window: str, timestamps_ms: Sequence[int], batch: int) -> tuple[list[Row], int]:
    """COUNT(*) per window of one sensor's readings, EMIT FINAL, fed ``batch`` records at a time: what
    the query wrote and how many closed windows it counted as expired."""
    queries = {"W": f"CREATE TABLE w AS SELECT k, COUNT(*) AS c FROM readings WINDOW {window} GROUP BY k EMIT FINAL;"}
    events = [Event("readings", "sensor", {"V": 1}, ts) for ts in timestamps_ms]
    run = run_engine(readings_ddl(1), queries, events, batch)
    return run.written["W"], run.expired["W"]


SENSOR = [130 + 250 * i for i in range(40)]  # a reading every 250 ms from 130 to 9,880
SENSOR_BURSTS = [130 + 250 * i + 1_000 * (i // 4) for i in range(40)]  # 4 readings 250 ms apart, then 1.25 s
SPARSE_READINGS = [0, 20 * SECOND, 5 * MINUTE, 5 * MINUTE + 10 * SECOND, 2 * HOUR, 2 * HOUR + 30 * SECOND, 9 * HOUR]
HALF_MINUTE = 30 * SECOND

#: (window clause, readings, every (key, window, value, timestamp) EMIT FINAL writes, windows expired)
REGRESSIONS: dict[str, tuple[str, list[int], list[Row], int]] = {
    # [s, s + 1 s) for s = 0, …, 8,000 end at or before 9,880 - 100; [9,000, 10,000) is still open
    "sensor-tumbling": ("TUMBLING (SIZE 1 SECOND, GRACE PERIOD 100 MILLISECONDS)", SENSOR,
                        [("sensor", (s, s + 1_000), {"C": 4}, s + 880) for s in range(0, 9_000, 1_000)], 0),
    # [s, s + 1 s) for s = 0, 500, …, 8,500
    "sensor-hopping": ("HOPPING (SIZE 1 SECOND, ADVANCE BY 500 MILLISECONDS, GRACE PERIOD 100 MILLISECONDS)", SENSOR,
                       [("sensor", (s, s + 1_000), {"C": 4}, s + 880) for s in range(0, 9_000, 500)], 0),
    # bursts [130 + 2,000 j, 880 + 2,000 j]; the last (j = 9) is still open at 18,880 - 100 - 500
    "sensor-session": ("SESSION (500 MILLISECONDS, GRACE PERIOD 100 MILLISECONDS)", SENSOR_BURSTS,
                       [("sensor", (130 + 2_000 * j, 880 + 2_000 * j), {"C": 4}, 880 + 2_000 * j) for j in range(9)],
                       0),
    # readings minutes and hours apart, with the default retention (size + grace): the record that closes
    # a window comes so much later that the store no longer holds it — expired, counted, not written
    "sparse-tumbling": ("TUMBLING (SIZE 1 MINUTE)", SPARSE_READINGS, [], 3),
    # only [2 h - 30 s, 2 h + 30 s) is closed by a record (2 h 30 s) while its start is within a minute
    # of the largest window start (2 h 30 s)
    "sparse-hopping": ("HOPPING (SIZE 1 MINUTE, ADVANCE BY 30 SECONDS)", SPARSE_READINGS,
                       [("sensor", (2 * HOUR - HALF_MINUTE, 2 * HOUR + HALF_MINUTE), {"C": 1}, 2 * HOUR)], 5),
    # a session's store segment (a minute wide) is dropped by the jump that closes it
    "sparse-session": ("SESSION (1 MINUTE)", SPARSE_READINGS, [], 3),
    # the same readings with a RETENTION longer than their gaps: every closed window is written
    "sparse-tumbling-retained": ("TUMBLING (SIZE 1 MINUTE, RETENTION 10 HOURS)", SPARSE_READINGS,
                                 [("sensor", (0, MINUTE), {"C": 2}, 20 * SECOND),
                                  ("sensor", (5 * MINUTE, 6 * MINUTE), {"C": 2}, 5 * MINUTE + 10 * SECOND),
                                  ("sensor", (2 * HOUR, 2 * HOUR + MINUTE), {"C": 2}, 2 * HOUR + HALF_MINUTE)], 0),
    "sparse-hopping-retained": ("HOPPING (SIZE 1 MINUTE, ADVANCE BY 30 SECONDS, RETENTION 10 HOURS)", SPARSE_READINGS,
                                [("sensor", (0, MINUTE), {"C": 2}, 20 * SECOND),
                                 ("sensor", (9 * HALF_MINUTE, 11 * HALF_MINUTE), {"C": 2}, 5 * MINUTE + 10 * SECOND),
                                 ("sensor", (10 * HALF_MINUTE, 12 * HALF_MINUTE), {"C": 2}, 5 * MINUTE + 10 * SECOND),
                                 ("sensor", (2 * HOUR - HALF_MINUTE, 2 * HOUR + HALF_MINUTE), {"C": 1}, 2 * HOUR),
                                 ("sensor", (2 * HOUR, 2 * HOUR + MINUTE), {"C": 2}, 2 * HOUR + HALF_MINUTE),
                                 ("sensor", (2 * HOUR + HALF_MINUTE, 2 * HOUR + 3 * HALF_MINUTE), {"C": 1},
                                  2 * HOUR + HALF_MINUTE)], 0),
    "sparse-session-retained": ("SESSION (1 MINUTE, RETENTION 10 HOURS)", SPARSE_READINGS,
                                [("sensor", (0, 20 * SECOND), {"C": 2}, 20 * SECOND),
                                 ("sensor", (5 * MINUTE, 5 * MINUTE + 10 * SECOND), {"C": 2}, 5 * MINUTE + 10 * SECOND),
                                 ("sensor", (2 * HOUR, 2 * HOUR + HALF_MINUTE), {"C": 2}, 2 * HOUR + HALF_MINUTE)], 0),
}


def _parse_window(clause: str) -> TimeWindows | SessionWindows:
    """The model's window for one of the REGRESSIONS clauses."""
    units = {"MILLISECONDS": 1, "SECOND": SECOND, "SECONDS": SECOND, "MINUTE": MINUTE, "HOURS": HOUR}
    words = clause.replace("(", " ").replace(")", " ").replace(",", " ").split()
    named = [(words[i - 1], int(w) * units[words[i + 1]]) for i, w in enumerate(words) if w.isdigit()]
    numbers = {"SIZE": named[0][1], **dict(named[1:])}  # the first duration is the size (a session's gap)
    grace, retention = numbers.get("PERIOD"), numbers.get("RETENTION")
    if words[0] == "SESSION":
        return SessionWindows(numbers["SIZE"], grace, True, retention)
    size = numbers["SIZE"]
    return TimeWindows(size, numbers.get("BY", size), grace, True, retention)


@pytest.mark.parametrize("batch", [1, 0], ids=["batch1", "all-at-once"])
@pytest.mark.parametrize("case", list(REGRESSIONS))
def test_emit_final_writes_the_windows_of_a_sensor_and_counts_those_sparse_readings_expire(case: str,
                                                                                            batch: int) -> None:
    """The issue's shapes: a reading every 250 ms into 1 s windows with a 100 ms grace (40 readings
    from 130 ms: 9 tumbling windows of 4) writes every window but the last; readings minutes and
    hours apart lose their windows to the store's retention as in ksqlDB — counted, never silently —
    unless RETENTION covers the gaps."""
    clause, stamps, expected, expired = REGRESSIONS[case]
    rows, counted = _final_rows(clause, stamps, batch)
    assert sorted(rows, key=repr) == sorted(expected, key=repr)
    assert counted == expired


@pytest.mark.parametrize("case", list(REGRESSIONS))
def test_the_regression_expectations_are_the_models(case: str) -> None:
    clause, stamps, expected, expired = REGRESSIONS[case]
    records = [Record(i, 0, "sensor", {"V": 1}, ts) for i, ts in enumerate(stamps)]
    spec = _parse_window(clause)
    if isinstance(spec, SessionWindows):
        result = session_window_aggregate(records, spec, _count_c)
    else:
        result = time_window_aggregate(records, spec, _count_c)
    assert sorted(as_rows(result.outputs), key=repr) == sorted(expected, key=repr)
    assert (result.late, result.expired) == (0, expired)


def _count_c(records: Sequence[Record]) -> dict[str, int]:
    return {"C": len(records)}


# --- default grace -----------------------------------------------------------------------------------


def _changes_with_late(window: str, timestamps_ms: Sequence[int]) -> tuple[list[Row], int]:
    queries = {"W": f"CREATE TABLE w AS SELECT k, COUNT(*) AS c FROM readings WINDOW {window} GROUP BY k EMIT CHANGES;"}
    events = [Event("readings", "sensor", {"V": 1}, ts) for ts in timestamps_ms]
    run = run_engine(readings_ddl(1), queries, events, 0)
    return run.written["W"], run.late["W"]


def test_emit_changes_without_grace_period_keeps_a_window_open_24_hours_minus_its_size() -> None:
    # [0, 1 h) closes at 1 h + 23 h: at stream time 24.5 h a record at 10 min is late
    rows, late = _changes_with_late("TUMBLING (SIZE 1 HOUR)", [0, 24 * HOUR + 30 * MINUTE, 10 * MINUTE])
    assert (rows, late) == ([("sensor", (0, HOUR), {"C": 1}, 0),
                             ("sensor", (24 * HOUR, 25 * HOUR), {"C": 1}, 24 * HOUR + 30 * MINUTE)], 1)


def test_emit_changes_without_grace_period_keeps_a_session_open_24_hours_after_its_end() -> None:
    # grace 24 h - gap: [0, 0] closes at 0 + 1 h + 23 h; at stream time 24.5 h a record at 12 min is late
    rows, late = _changes_with_late("SESSION (1 HOUR)", [0, 24 * HOUR + 30 * MINUTE, 12 * MINUTE])
    assert (rows, late) == ([("sensor", (0, 0), {"C": 1}, 0),
                             ("sensor", (24 * HOUR + 30 * MINUTE, 24 * HOUR + 30 * MINUTE), {"C": 1},
                              24 * HOUR + 30 * MINUTE)], 1)


def test_emit_final_without_grace_period_closes_a_window_at_its_end() -> None:
    rows, _ = _final_rows("TUMBLING (SIZE 10 SECONDS)", [1 * SECOND, 10 * SECOND], 1)
    assert rows == [("sensor", (0, 10 * SECOND), {"C": 1}, 1 * SECOND)]


# --- the model against ksqlDB's own worked examples (query-validation tests) -----------------------


def _qtt(stamps_and_values: Sequence[tuple[Hashable, Any, int]]) -> list[Record]:
    return [Record(i, 0, key, value, ts) for i, (key, value, ts) in enumerate(stamps_and_values)]


def _max_value(records: Sequence[Record]) -> int:
    return max(r.value for r in records)


def _count(records: Sequence[Record]) -> dict[str, int]:
    return {"COUNT": len(records)}


def test_model_reproduces_qtt_session_windows_out_of_order_without_grace_period() -> None:
    records = _qtt([(0, 0, 0), (0, 1, 70010), (0, 5, 10009), (0, 6, 10010), (1, 100, 10009), (1, 101, 10010),
                    (1, 200, 86412022), (1, 200, 60000)])
    result = session_window_aggregate(records, SessionWindows(30 * SECOND, None, False), _max_value)
    assert as_rows(result.outputs) == [
        (0, (0, 0), 0, 0), (0, (70010, 70010), 1, 70010), (0, (0, 0), None, 0), (0, (0, 10009), 5, 10009),
        (0, (0, 10009), None, 10009), (0, (0, 10010), 6, 10010), (1, (10009, 10009), 100, 10009),
        (1, (10009, 10009), None, 10009), (1, (10009, 10010), 101, 10010),
        (1, (86412022, 86412022), 200, 86412022), (1, (60000, 60000), 200, 60000)]


def test_model_reproduces_qtt_session_windows_out_of_order_with_grace_period() -> None:
    records = _qtt([(0, 0, 0), (0, 1, 100010), (0, 5, 10009), (0, 6, 10010), (1, 100, 10009), (1, 101, 10010),
                    (1, 200, 86412022), (1, 200, 60000)])
    result = session_window_aggregate(records, SessionWindows(30 * SECOND, MINUTE, False), _max_value)
    assert as_rows(result.outputs) == [
        (0, (0, 0), 0, 0), (0, (100010, 100010), 1, 100010), (0, (10010, 10010), 6, 10010),
        (1, (10010, 10010), 101, 10010), (1, (86412022, 86412022), 200, 86412022)]
    assert result.late == 3


def test_model_reproduces_qtt_tumbling_windows_out_of_order_with_grace_period() -> None:
    records = _qtt([(0, 0, 0), (0, 1, 89999), (0, 5, 10009), (0, 0, 90000), (0, 6, 10010), (1, 100, 10009),
                    (1, 101, 30000), (1, 200, 86412022), (1, 200, 60000)])
    result = time_window_aggregate(records, TimeWindows(30 * SECOND, 30 * SECOND, MINUTE, False), _max_value)
    assert as_rows(result.outputs) == [
        (0, (0, 30000), 0, 0), (0, (60000, 90000), 1, 89999), (0, (0, 30000), 5, 10009),
        (0, (90000, 120000), 0, 90000), (1, (30000, 60000), 101, 30000), (1, (86400000, 86430000), 200, 86412022)]


def test_model_reproduces_qtt_hopping_count() -> None:
    result = time_window_aggregate(_qtt([(0, None, 10345), (0, None, 13251)]),
                                   TimeWindows(5 * SECOND, SECOND, None, False), _count)
    assert [(o.window, o.value["COUNT"], o.ts) for o in result.outputs] == [
        ((6000, 11000), 1, 10345), ((7000, 12000), 1, 10345), ((8000, 13000), 1, 10345), ((9000, 14000), 1, 10345),
        ((10000, 15000), 1, 10345), ((9000, 14000), 2, 13251), ((10000, 15000), 2, 13251),
        ((11000, 16000), 1, 13251), ((12000, 17000), 1, 13251), ((13000, 18000), 1, 13251)]


def test_model_reproduces_qtt_suppress_final_results_for_session_windows() -> None:
    records = _qtt([("k1", None, ts) for ts in (0, 4, 8, 12, 14, 30, 29, 17, 42)])
    result = session_window_aggregate(records, SessionWindows(5, 6, True), _count)
    assert as_rows(result.outputs) == [("k1", (0, 14), {"COUNT": 5}, 14), ("k1", (29, 30), {"COUNT": 2}, 30)]


def test_model_reproduces_qtt_suppress_final_results_after_stream_time_jumps() -> None:
    """QTT suppress.json: the store no longer returns [0, 2) (tumbling) and [2, 7) (hopping) when the
    record that closes them comes; after a large jump, nothing is written at all."""
    stamps = [("k1", None, ts) for ts in (0, 1, 2, 1, 0, 5)]
    tumbling = time_window_aggregate(_qtt(stamps), TimeWindows(2, 2, 1, True), _count)
    assert (as_rows(tumbling.outputs), tumbling.expired) == ([("k1", (2, 4), {"COUNT": 1}, 2)], 1)
    hopping = time_window_aggregate(_qtt([("k1", None, ts) for ts in (0, 1, 2, 1, 6, 5, 10)]),
                                    TimeWindows(5, 2, 1, True), _count)
    assert as_rows(hopping.outputs) == [("k1", (0, 5), {"COUNT": 4}, 2), ("k1", (4, 9), {"COUNT": 2}, 6)]
    assert hopping.expired == 1
    jump = time_window_aggregate(_qtt([("k1", None, ts) for ts in (0, 1, 2, 0, 3, 0, 10, 0, 30)]),
                                 TimeWindows(2, 2, 2, True), _count)
    assert (as_rows(jump.outputs), jump.expired) == ([], 3)


def _join(events: Sequence[tuple[str, Hashable, str, int]], spec: JoinWindows) -> list[tuple[Hashable, Any, Any, int]]:
    records = [Record(i, 0, key, value, ts, side) for i, (side, key, value, ts) in enumerate(events)]
    return [(o.key, o.value[0], o.value[1], o.ts) for o in stream_stream_join(records, spec)]


def test_model_reproduces_qtt_stream_stream_left_join_without_grace_period() -> None:
    events = [("left", 0, "zero", 0), ("right", 0, "blah", 10000), ("left", 10, "100", 11000),
              ("left", 0, "foo", 13000), ("right", 0, "a", 15000), ("right", 100, "newblah", 16000),
              ("left", 90, "ninety", 17000), ("left", 0, "bar", 30000)]
    assert _join(events, JoinWindows("LEFT", 11 * SECOND, None)) == [
        (0, "zero", None, 0), (0, "zero", "blah", 10000), (10, "100", None, 11000), (0, "foo", "blah", 13000),
        (0, "foo", "a", 15000), (90, "ninety", None, 17000), (0, "bar", None, 30000)]


def test_model_reproduces_qtt_stream_stream_inner_join_with_out_of_order_messages() -> None:
    events = [("left", 0, "zero", 0), ("right", 0, "blah", 9999), ("left", 10, "100", 11000),
              ("left", 0, "foo", 13000), ("right", 0, "a", 15000), ("right", 100, "newblah", 16000),
              ("left", 90, "ninety", 17000), ("left", 0, "bar", 30000), ("left", 0, "late-message", 6000)]
    assert _join(events, JoinWindows("INNER", 10 * SECOND, None)) == [
        (0, "zero", "blah", 9999), (0, "foo", "blah", 13000), (0, "foo", "a", 15000),
        (0, "late-message", "blah", 9999), (0, "late-message", "a", 15000)]


def test_model_reproduces_qtt_stream_stream_left_join_with_out_of_order_and_grace_period() -> None:
    events = [("left", 0, "A", 0), ("right", 0, "a", 60000), ("left", 1, "B", 330000), ("left", 2, "C", 90000),
              ("right", 2, "c", 90000), ("left", 3, "D", 60000), ("right", 3, "d", 60000)]
    assert _join(events, JoinWindows("LEFT", MINUTE, MINUTE)) == [
        (0, "A", "a", 60000), (2, "C", None, 90000), (3, "D", None, 60000)]


def test_model_reproduces_qtt_stream_stream_full_outer_join_with_out_of_order_and_grace_period() -> None:
    events = [("left", 0, "A", 0), ("right", 0, "a", 60000), ("right", 1, "b", 330000), ("right", 2, "c", 90000),
              ("left", 2, "C", 90000), ("right", 3, "d", 60000), ("left", 3, "D", 60000)]
    assert _join(events, JoinWindows("FULL", MINUTE, MINUTE)) == [
        (0, "A", "a", 60000), (2, None, "c", 90000), (2, "C", None, 90000), (3, None, "d", 60000),
        (3, "D", None, 60000)]


def test_model_reproduces_qtt_stream_stream_outer_join_without_grace_period() -> None:
    events = [("left", 0, "zero", 0), ("right", 0, "blah", 10000), ("left", 10, "100", 11000),
              ("left", 0, "foo", 13000), ("right", 0, "a", 15000), ("left", 0, "bar", 30000),
              ("left", 90, "ninety", 17000), ("right", 100, "newblah", 20000)]
    assert _join(events, JoinWindows("FULL", 11 * SECOND, None)) == [
        (0, "zero", None, 0), (0, "zero", "blah", 10000), (10, "100", None, 11000), (0, "foo", "blah", 13000),
        (0, "foo", "a", 15000), (0, "bar", None, 30000), (90, "ninety", None, 17000),
        (100, None, "newblah", 20000)]


def test_model_writes_a_waiting_padded_row_once_its_window_and_grace_have_passed() -> None:
    # b at 30 waits; c at 50 is the first record at stream time after 30 + 10 + 5 < 50
    events = [("left", "a", "l1", 0), ("right", "a", "r2", 5), ("right", "b", "r3", 30), ("left", "c", "l4", 50)]
    assert _join(events, JoinWindows("FULL", 10, 5)) == [("a", "l1", "r2", 5), ("b", None, "r3", 30)]


def _table(changes: Sequence[tuple[int, str | None]]) -> list[tuple[Any, Any]]:
    records = [Record(i, 0, key, None if region is None else {"REGION": region}, 0)
               for i, (key, region) in enumerate(changes)]
    return [(o.key, o.value) for o in table_aggregate(records, lambda row: row["REGION"], len)]


def test_model_reproduces_qtt_table_group_by_with_re_key() -> None:
    changes = [(1, "r0"), (2, "r1"), (3, "r0"), (1, None), (2, "r0")]
    assert _table(changes) == [("r0", 1), ("r1", 1), ("r0", 2), ("r0", 1), ("r1", 0), ("r0", 2)]


def test_model_writes_a_change_within_one_group_once() -> None:
    """QTT group-by.json "constant (table->table)": GROUP BY 1, so every change stays in one group."""
    records = [Record(i, 0, key, None if region is None else {"REGION": region}, 0)
               for i, (key, region) in enumerate([(1, "r0"), (2, "r1"), (3, "r0"), (1, None), (2, "r0")])]
    outputs = table_aggregate(records, lambda row: 1, len)
    assert [(o.key, o.value) for o in outputs] == [(1, 1), (1, 2), (1, 3), (1, 2), (1, 2)]


def test_default_grace_is_a_day_minus_the_size_for_changes_and_zero_for_final() -> None:
    assert TimeWindows(HOUR, HOUR, None, False).effective_grace == DAY_MS - HOUR
    assert TimeWindows(HOUR, HOUR, None, True).effective_grace == 0
    assert SessionWindows(2 * DAY_MS, None, False).effective_grace == 0
