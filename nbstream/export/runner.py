"""What ``nbstream run JOB`` does with a job folder, over an :class:`EngineService` (the face that
serves it, :mod:`nbstream.server.run`, adds the REST API).

:func:`prepare` opens the job's engine, ready to run, or refuses with a :class:`JobRefused` that
says why — and then nothing was changed:

1. ``queries.sql`` is planned in a sandbox (:mod:`nbstream.export.sandbox`), and every persistent
   query's plan is compared with the plan its state was built with (``job-plans.json`` in the state
   directory, written at each start), or, on a new state, with the job's ``plans.json``: when this
   nbstream would run a query differently (another plan version, another lowering of an
   expression) it refuses, naming the query and the difference, unless ``replan`` accepts it —
   ksqlDB's plan compatibility check.
2. The durable engine opens on the state directory and replays what it ran (it resumes exactly
   where it stopped, after ``kill -9`` too).
3. Each statement of ``queries.sql`` is compared with the state (the rules of a re-run notebook
   cell, :mod:`nbstream.runtime.rerun`): an unchanged one is a no-op, a new one runs. A changed
   ``CREATE`` (or connector) and anything the state holds that ``queries.sql`` no longer defines is
   refused unless ``upgrade``; then it is dropped and rebuilt from its inputs (a changed
   ``CREATE … AS SELECT`` recomputes its topic from the beginning of its inputs) — refused still,
   naming them, if unchanged queries read what would be dropped. ``INSERT … VALUES`` run on a new
   state only (they are sample data, not a definition).

:class:`Watcher` logs the job's life one line per event (:class:`EventLog`: text, or JSON lines):
each query's state changes, connectors finishing or failing, errors of the background loop, and
periodic throughput.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from nbstream.catalog.catalog import Source
from nbstream.errors import ExportError, NbstreamError
from nbstream.export.job import UDFS_FILE, Job, import_udfs, normal, plans_json, stored_plans
from nbstream.export.origin import Contents, Origin, Sourced
from nbstream.export.sandbox import PlannedJob, plan_job
from nbstream.export.selection import Options, Selection, select
from nbstream.plan.serde import plan_differences
from nbstream.runtime.processing_log import TOPIC as PROCESSING_LOG
from nbstream.runtime.queries import RUNNING_STATES
from nbstream.runtime.rerun import drop_changed, unchanged_message
from nbstream.runtime.service import EngineService
from nbstream.sql import ast, parse

#: The plans the state was last started with, in the state directory.
STATE_PLANS = "job-plans.json"

#: What blocks an upgrade, as nbstream run says it.
UPGRADE_HINT = "change or remove them in queries.sql too, then run with --upgrade again."


class JobRefused(NbstreamError, RuntimeError):
    """``nbstream run`` will not start the job (see :func:`prepare`); nothing was changed."""


@dataclass(frozen=True)
class RunOptions:
    """How to run: the state directory, ``upgrade``/``replan`` consents, and overrides of the job's
    configuration (Kafka bootstrap and options, ksqlDB properties)."""

    state: Path
    upgrade: bool = False
    replan: bool = False
    kafka: str | None = None
    kafka_options: Mapping[str, Any] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)


# -- logging -------------------------------------------------------------------------------------------------


class EventLog:
    """One line per event on ``stream``: ``TIME EVENT message key=value…`` or, as ``json``, an object
    ``{"time", "event", "message", …}``. Safe from any thread."""

    def __init__(self, stream: TextIO | None = None, fmt: str = "text", job: str = "") -> None:
        self.stream = stream or sys.stderr
        self.fmt = fmt
        self.job = job
        self._lock = threading.Lock()

    def event(self, event: str, message: str, **fields: Any) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if self.fmt == "json":
            line = json.dumps({"time": stamp, "job": self.job, "event": event, "message": message, **fields},
                              default=str)
        else:
            extra = "".join(f" {k}={v}" for k, v in fields.items())
            line = f"{stamp} {event:<10} {message}{extra}"
        with self._lock:
            print(line, file=self.stream, flush=True)


# -- preparing the engine ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """The job's engine, ready to start, and what the REST API may write: the streams and tables
    over the topics the job expects from outside."""

    service: EngineService
    planned: PlannedJob
    writable: frozenset[str]


def job_selection(job: Job) -> Selection:
    """``queries.sql`` as the job's statements (every one kept: a job folder holds only job statements)."""
    return _selection(job.queries_sql, job.config.name, "queries.sql")


def _selection(script: str, name: str, file: str) -> Selection:
    try:
        statements = parse(script)
    except NbstreamError as error:
        raise JobRefused(f"{file}: {error}") from None
    sourced = tuple(Sourced(s, Origin(line=s.span.line if s.span else None, file=file)) for s in statements)
    try:
        return select(Contents(name, sourced, described=file), Options(include_inserts=True, allow_missing_input=True))
    except ExportError as error:
        raise JobRefused("\n".join(error.problems)) from None


def prepare(job: Job, options: RunOptions, log: EventLog) -> Prepared:
    """The job's engine on ``options.state``, its statements applied; its loop not started yet."""
    properties = {**job.config.properties, **options.properties}
    udfs = job.folder / UDFS_FILE
    if udfs.is_file():  # the notebook's Python UDFs, before the statements that call them are planned
        try:
            import_udfs(udfs)
        except ExportError as error:
            raise JobRefused("\n".join(error.problems)) from None
    selection = job_selection(job)
    try:
        planned = plan_job(selection, properties)
    except ExportError as error:
        raise JobRefused("queries.sql does not plan:\n" + "\n".join(error.problems)) from None
    _check_plans(job, options.state, options.replan, log)
    service = _open(job, options, properties)
    try:
        _apply(service, selection, options.upgrade, log)
        _store_plans(planned, options.state)
    except BaseException:
        service.close()
        raise
    return Prepared(service, planned, _writable(service, job.config.external_inputs))


def _open(job: Job, options: RunOptions, properties: Mapping[str, Any]) -> EngineService:
    kafka = options.kafka or (job.config.log.bootstrap if job.config.log.backend == "kafka" else None)
    client_options = {**job.config.log.options, **options.kafka_options} if kafka else {}
    try:
        return EngineService(options.state, properties=properties, kafka=kafka, **client_options)
    except NbstreamError as error:
        raise JobRefused(f"the job's engine does not open on {options.state}: {error}") from None


def _writable(service: EngineService, topics: tuple[str, ...]) -> frozenset[str]:
    return frozenset(s.name for t in topics for s in service.catalog.sources_on_topic(t))


# -- the plan compatibility check -----------------------------------------------------------------------------


def _check_plans(job: Job, state: Path, replan: bool, log: EventLog) -> None:
    """Plan the statements the state was built with (or, for a new state, those the job was exported
    with) again, and compare each persistent query's plan with the stored one."""
    stored_file = state / STATE_PLANS
    where = f"the state's {STATE_PLANS}" if stored_file.exists() else "the job's plans.json"
    document = json.loads(stored_file.read_text(encoding="utf-8")) if stored_file.exists() else job.plans
    statements = document.get("statements")
    if not statements:
        log.event("plans", f"no plans to compare with in {where}")
        return
    script = "".join(f"{text};\n" for text in statements)
    try:
        planned = plan_job(_selection(script, job.config.name, where), document.get("properties", {}))
    except ExportError as error:
        differences = [f"this nbstream cannot plan the statements of {where}: " + "; ".join(error.problems)]
    else:
        differences = _differences(planned, stored_plans(document), where)
    if not differences:
        count = len(planned.queries)
        log.event("plans", f"{count} persistent quer{'y' if count == 1 else 'ies'} plan as in {where}")
        return
    if not replan:
        raise JobRefused("this nbstream plans the job differently from the plans its state was built with "
                         "(start with --replan to accept the new plans):\n" + "\n".join(differences))
    for difference in differences:
        log.event("replan", difference)


def _differences(planned: PlannedJob, stored: dict[str, dict[str, Any]], where: str) -> list[str]:
    found = []
    for query in planned.queries:
        old = stored.get(normal(query.statement.text))
        if old is None:
            found.append(f"query {query.id} ({query.statement.sourced.summary}) has no plan in {where}")
            continue
        differences = plan_differences({"version": old["version"], "plan": old["plan"]}, query.plan)
        if differences:
            found.append(f"query {query.id} ({query.statement.sourced.summary}) would run differently from the "
                         f"plan in {where}: " + "; ".join(differences))
    return found


def _store_plans(planned: PlannedJob, state: Path) -> None:
    (state / STATE_PLANS).write_text(plans_json(planned), encoding="utf-8")


# -- applying queries.sql to the state ------------------------------------------------------------------------


@dataclass
class _Diff:
    """How ``queries.sql`` compares with what the state holds."""

    fresh: bool
    unchanged: list[ast.Statement] = field(default_factory=list)  # compared by identity
    changed: list[ast.Statement] = field(default_factory=list)
    removed_sources: list[Source] = field(default_factory=list)
    removed_connectors: list[str] = field(default_factory=list)
    removed_inserts: list[str] = field(default_factory=list)  # query ids

    def describe(self) -> Iterator[str]:
        for statement in self.changed:
            yield f"changed: {_summary(statement)}"
        for source in self.removed_sources:
            yield f"no longer in queries.sql: {source.kind} {source.name}"
        for connector in self.removed_connectors:
            yield f"no longer in queries.sql: connector {connector}"
        for query in self.removed_inserts:
            yield f"no longer in queries.sql: query {query}"


def _apply(service: EngineService, selection: Selection, upgrade: bool, log: EventLog) -> None:
    statements = [s.statement for s in selection.statements]
    with service.lock:
        diff = _diff(service, statements)
        if (diff.changed or diff.removed_sources or diff.removed_connectors or diff.removed_inserts) and not upgrade:
            raise JobRefused("queries.sql differs from what the state was built with (start with --upgrade to "
                             "rebuild it from its inputs):\n" + "\n".join(diff.describe()))
        _check_blockers(service, diff)
        _drop(service, diff, log)
        for statement in statements:
            _run(service, statement, diff, log)


def _diff(service: EngineService, statements: list[ast.Statement]) -> _Diff:
    catalog, connectors = service.catalog, service.connectors.running
    diff = _Diff(fresh=not catalog.queries and not connectors and set(catalog.sources) <= {PROCESSING_LOG})
    for statement in statements:
        if unchanged_message(service, statement) is not None:
            diff.unchanged.append(statement)
        elif _exists(service, statement):
            diff.changed.append(statement)
    defined = {s.name for s in statements if isinstance(s, ast.CreateSource | ast.CreateAsSelect)}
    diff.removed_sources = [s for s in catalog.sources.values()
                            if s.sql and s.name != PROCESSING_LOG and s.name not in defined]
    named = {s.name for s in statements if isinstance(s, ast.CreateConnector)}
    diff.removed_connectors = [name for name in connectors if name not in named]
    inserts = {normal(s.text) for s in statements if isinstance(s, ast.InsertInto)}
    diff.removed_inserts = [q.id for q in catalog.running()
                            if q.id.startswith("INSERTQUERY") and normal(q.sql) not in inserts]
    return diff


def _exists(service: EngineService, statement: ast.Statement) -> bool:
    """Whether the stream, table or connector ``statement`` creates exists (by name)."""
    if isinstance(statement, ast.CreateSource | ast.CreateAsSelect):
        return service.catalog.find(statement.name) is not None
    return isinstance(statement, ast.CreateConnector) and statement.name in service.connectors.running


def _check_blockers(service: EngineService, diff: _Diff) -> None:
    """Refuse, naming them, when unchanged queries read what the upgrade drops."""
    dropped = {s.name for s in diff.changed if isinstance(s, ast.CreateSource | ast.CreateAsSelect)}
    dropped |= {s.name for s in diff.removed_sources}
    rebuilt = set(diff.removed_inserts) | {q.id for q in service.catalog.running() if q.sink in dropped}
    problems = []
    for name in sorted(dropped):
        blockers = sorted(q.id for q in service.catalog.running() if q.id not in rebuilt
                          and (name in q.sources or q.sink == name))
        if blockers:
            problems.append(f"{name} is to be rebuilt, but queries [{', '.join(blockers)}] read from it or write "
                            f"to it and stay as they are: {UPGRADE_HINT}")
    if problems:
        raise JobRefused("\n".join(problems))


def _drop(service: EngineService, diff: _Diff, log: EventLog) -> None:
    """Drop what the upgrade rebuilds or removes, readers before what they read."""
    for query_id in diff.removed_inserts:
        service.execute(f"TERMINATE {query_id};")
        log.event("upgrade", f"terminated query {query_id}: no longer in queries.sql")
    for statement in diff.changed:
        if isinstance(statement, ast.CreateConnector):
            service.execute(f"DROP CONNECTOR {statement.name};")
    for name in diff.removed_connectors:
        service.execute(f"DROP CONNECTOR {name};")
        log.event("upgrade", f"dropped connector {name}: no longer in queries.sql")
    changed = {s.name: s for s in diff.changed if isinstance(s, ast.CreateSource | ast.CreateAsSelect)}
    removed = {s.name: s for s in diff.removed_sources}
    for name in reversed(list(service.catalog.sources)):  # the catalog's order: readers after what they read
        if name in changed:
            note = drop_changed(service, changed[name], UPGRADE_HINT)
            log.event("upgrade", note or f"{name} changed")
        elif name in removed:
            _drop_removed(service, removed[name])
            log.event("upgrade", f"dropped {removed[name].kind} {name}: no longer in queries.sql")


def _drop_removed(service: EngineService, source: Source) -> None:
    writers = [q.id for q in service.catalog.running() if q.sink == source.name]
    created = isinstance(parse(source.sql)[0], ast.CreateAsSelect)
    service.execute("".join(f"TERMINATE {q};" for q in writers) +
                    f"DROP {source.kind} {source.name}{' DELETE TOPIC' if created else ''};")


def _run(service: EngineService, statement: ast.Statement, diff: _Diff, log: EventLog) -> None:
    if any(statement is same for same in diff.unchanged):
        return
    if isinstance(statement, ast.InsertValues) and not diff.fresh:
        return  # sample data: written when the state was new
    if isinstance(statement, ast.SetProperty) and str(service.properties.get(statement.name)) == statement.value:
        return
    if isinstance(statement, ast.UnsetProperty) and statement.name not in service.properties:
        return
    (result,) = service.execute(statement.text)
    if not diff.fresh:
        log.event("statement", f"{result.message}: {_summary(statement)}")


def _summary(statement: ast.Statement) -> str:
    text = " ".join(statement.text.split())
    return text if len(text) <= 80 else text[:79] + "…"


# -- watching it run -----------------------------------------------------------------------------------------


class Watcher:
    """A thread logging the job's events every ``poll`` seconds, and its throughput every
    ``interval`` seconds, until :meth:`stop`. Call :meth:`stop_soon` before the engine closes:
    throughput reads the engine's DuckDB, which a closed engine no longer has."""

    def __init__(self, service: EngineService, log: EventLog, interval: float = 10.0, poll: float = 0.5) -> None:
        self.service, self.log, self.interval, self.poll = service, log, interval, poll
        self._states: dict[str, str] = {}
        self._failures = 0
        self._counts: dict[str, int] = {}
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nbstream-watcher", daemon=True)

    def start(self) -> None:
        self.check()
        self._thread.start()

    def stop_soon(self) -> None:
        """Take no more metrics: the engine is about to close. It does not wait (a signal handler
        or the server's event loop may call it); the thread ends at its next turn."""
        self._stop.set()

    def stop(self) -> None:
        """End the thread, then log what changed since its last turn (the engine may be closed)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.check()

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            self.check()
            if time.monotonic() - self._last >= self.interval:
                self.throughput()

    def check(self) -> None:
        """Log what changed since the last check: query and connector states, loop failures (read
        from the catalog, not DuckDB: also after the engine closed)."""
        service = self.service
        with service.lock:
            queries = [(q.id, q.state, q.sink) for q in service.catalog.queries.values()]
            connectors = [(name, r.state, r.failed) for name, r in service.connectors.running.items()]
            failures = list(service.background.failures[self._failures:])
        for query_id, state, sink in queries:
            if self._states.get(query_id) != state:
                self._states[query_id] = state
                self.log.event("query", f"{query_id} is {state}", query=query_id, sink=sink, state=state)
        for name, state, failed in connectors:
            if self._states.get(f"connector {name}") != state:
                self._states[f"connector {name}"] = state
                self.log.event("connector", f"{name} is {state}" + (f": {failed}" if failed else ""),
                               connector=name, state=state)
        self._failures += len(failures)
        for failure in failures:
            self.log.event("error", failure)

    def throughput(self) -> None:
        """Log each running query's input rate since the last report."""
        now = time.monotonic()
        elapsed, self._last = max(now - self._last, 1e-9), now
        with self.service.lock:  # the engine closes under its lock, after stop_soon
            if self._stop.is_set():
                return
            measured = self.service.query_metrics()
        for metrics in measured:
            before = self._counts.get(metrics.query_id, 0)
            self._counts[metrics.query_id] = metrics.consumed
            if metrics.state in RUNNING_STATES:
                self.log.event("throughput", f"{metrics.query_id}: {(metrics.consumed - before) / elapsed:.0f} "
                               "records/s", query=metrics.query_id, consumed=metrics.consumed,
                               emitted=metrics.emitted, lag=metrics.input_lag)
