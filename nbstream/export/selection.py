"""Which statements make the job, in which order — decided from the statements alone, as ksqlDB's
headless mode decides by statement kind.

The rule, statement by statement in the order they ran:

- **kept**: ``SET``/``UNSET``, ``CREATE STREAM/TABLE``, ``CREATE … AS SELECT``, ``INSERT INTO …
  SELECT``, ``CREATE SOURCE/SINK CONNECTOR``; ``INSERT … VALUES`` only with ``include_inserts``
  (it is sample data) or in a cell tagged ``nbstream-job``;
- **applied**: ``DROP STREAM/TABLE`` and ``DROP CONNECTOR`` remove what they drop, ``TERMINATE``
  the ``INSERT INTO`` queries it ends (a ``CREATE … AS SELECT`` whose query is terminated must be
  dropped too: a job cannot hold a table without its query); ``CREATE OR REPLACE`` — and a plain
  ``CREATE`` of an existing name with another definition, as a re-run notebook cell does —
  replaces the earlier definition; an identical or ``IF NOT EXISTS`` one adds nothing;
- **left out**: pull and push queries, ``SHOW``/``DESCRIBE``/``EXPLAIN``/``PRINT``, and every
  statement of a cell tagged ``nbstream-skip``.

The job then holds the final topology, in dependency order (what a statement reads comes first;
otherwise the order they ran in, and a ``SET`` stays before what follows it).

What cannot be exported is reported with its origin, and the export refuses (an
:class:`~nbstream.errors.ExportError` listing every problem): a ``:name`` parameter without a value
(``params``), a statement that failed when it last ran, a Python feed (``eng.source(…)``) into a
topic the job reads — unless ``allow_missing_input`` says the topic will be fed from outside —, and
a statement of the job calling a Python UDF the notebook registers (``@nbstream.udf``): a job runs
no Python.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlglot import exp

from nbstream.errors import BindError, ExportError
from nbstream.export.origin import JOB_TAG, SKIP_TAG, Contents, PythonUdf, Sourced
from nbstream.plan.join import join_sources
from nbstream.sql import ast
from nbstream.sql.params import bind_text, placeholders

#: Statements that make a job.
KEPT = (ast.SetProperty, ast.UnsetProperty, ast.CreateSource, ast.CreateAsSelect, ast.InsertInto,
        ast.CreateConnector, ast.CreateType, ast.DropType)

#: Statements that change what the job holds, without being part of it.
APPLIED = (ast.Drop, ast.DropConnector, ast.Terminate)


@dataclass(frozen=True)
class Options:
    """How to select: ``params`` bind ``:name``; ``include_inserts`` keeps ``INSERT … VALUES``;
    ``allow_missing_input`` accepts topics that Python fed in the notebook as fed from outside;
    ``carry_udfs``: the target carries the notebook's Python UDFs that it can (an nbstream job, in
    its ``udfs.py``), so statements may call them."""

    params: Mapping[str, object] = field(default_factory=dict)
    include_inserts: bool = False
    allow_missing_input: bool = False
    carry_udfs: bool = False


@dataclass(frozen=True)
class Selected:
    """A statement of the job: where it came from, and its text with parameters written in."""

    sourced: Sourced
    text: str

    @property
    def statement(self) -> ast.Statement:
        return self.sourced.statement


@dataclass(frozen=True)
class Selection:
    """The job's statements in order, and what the export should tell about the rest."""

    name: str
    described: str
    statements: tuple[Selected, ...]
    external_inputs: tuple[str, ...] = ()  # topics the notebook fed from Python, to be fed from outside
    notes: tuple[str, ...] = ()  # what was left out, and why


def select(contents: Contents, options: Options | None = None) -> Selection:
    """The job ``contents`` make (see the module docstring)."""
    options = options or Options()
    problems: list[str] = [f"{origin}: {message}" for origin, message in contents.failures]
    notes: list[str] = []
    topology = _Topology(problems)
    for sourced in contents.statements:
        reason = _left_out(sourced, options)
        if reason is not None:
            notes.append(f"{sourced.origin}: left out {sourced.summary} ({reason})")
        elif isinstance(sourced.statement, APPLIED):
            topology.apply(sourced)
        else:
            topology.add(sourced)
    ordered = topology.ordered()
    carried = {u.name for u in contents.udfs if options.carry_udfs and u.source is not None}
    problems += _python_udf_calls(ordered, tuple(u for u in contents.udfs if u.name not in carried))
    statements = [s for s in (_bound(s, options.params, problems) for s in ordered) if s is not None]
    external = _external_inputs(contents, ordered, options, problems, notes)
    if not any(isinstance(s.statement, ast.CreateAsSelect | ast.InsertInto | ast.CreateConnector)
               for s in statements) and not problems:
        problems.append(f"{contents.described}: no persistent query or connector is left to run "
                        "(a job needs a CREATE … AS SELECT, an INSERT INTO … SELECT or a connector)")
    if problems:
        raise ExportError(problems)
    return Selection(contents.name, contents.described, tuple(statements), external, tuple(notes))


def _left_out(sourced: Sourced, options: Options) -> str | None:
    """Why ``sourced`` is not part of the job (None: it is, or it is applied)."""
    statement = sourced.statement
    if SKIP_TAG in sourced.tags:
        return f"its cell is tagged {SKIP_TAG}"
    if isinstance(statement, KEPT + APPLIED):
        return None
    if isinstance(statement, ast.InsertValues):
        if options.include_inserts or JOB_TAG in sourced.tags:
            return None
        return "sample data: --include-inserts keeps it"
    if isinstance(statement, ast.Select):
        return "a push query" if statement.query.emit is not None else "a pull query"
    return "not part of a job"


def _bound(selected: Sourced, params: Mapping[str, object], problems: list[str]) -> Selected | None:
    names = sorted(set(placeholders(selected.statement)))
    missing = [n for n in names if n not in params]
    if missing:
        asked = " ".join(f"--param {n}=VALUE" for n in missing)
        problems.append(f"{selected.origin}: {selected.summary} uses the notebook variable"
                        f"{'s' if len(missing) > 1 else ''} {', '.join(':' + n for n in missing)}; "
                        f"a job has none: give the value{'s' if len(missing) > 1 else ''} ({asked})")
        return None
    try:
        return Selected(selected, bind_text(selected.statement.text, params) if names else selected.statement.text)
    except BindError as error:
        problems.append(f"{selected.origin}: {error.message}")
        return None


def _external_inputs(contents: Contents, ordered: list[Sourced], options: Options, problems: list[str],
                     notes: list[str]) -> tuple[str, ...]:
    """The topics the job reads that the notebook fed from Python: problems, or (with
    ``allow_missing_input``) inputs the job expects from outside."""
    read = {t for s in ordered for t in _topics_read(s.statement)}
    external: list[str] = []
    for feed in contents.feeds:
        if feed.topic is not None and feed.topic not in read:
            continue
        what = f"topic '{feed.topic}'" if feed.topic is not None else "a topic given by an expression"
        if options.allow_missing_input:
            notes.append(f"{feed.origin}: Python feeds {what} (eng.{feed.call}); the job expects it fed from outside")
            if feed.topic is not None and feed.topic not in external:
                external.append(feed.topic)
            continue
        problems.append(f"{feed.origin}: Python feeds {what} (eng.{feed.call}), which the job reads; a job runs no "
                        "Python: feed the topic from outside and export with --allow-missing-input, or replace the "
                        "Python with a connector")
    return tuple(external)


def _python_udf_calls(ordered: list[Sourced], udfs: tuple[PythonUdf, ...]) -> list[str]:
    """A problem for each statement of the job that calls a Python UDF the notebook registers."""
    defined = {u.name: u for u in udfs}
    problems = []
    for sourced in ordered:
        for name in sorted(_calls(sourced.statement) & set(defined)):
            udf = defined[name]
            where = udf.origin if udf.origin.cell is not None else udf.origin.what
            instead = f"tag the cell {SKIP_TAG}" if sourced.origin.cell is not None else "drop it before exporting"
            problems.append(f"{sourced.origin}: {sourced.summary} calls {name}, a Python UDF "
                            f"(@nbstream.{udf.decorator} in {where}), which this export cannot carry: only an "
                            "nbstream job does (its udfs.py), and only a top-level decorated def of a cell "
                            f"without magics; compute it in SQL, or {instead}")
    return problems


def _calls(statement: ast.Statement) -> set[str]:
    """The names (upper case) of the functions ``statement`` calls that are not sqlglot's own: the
    calls the expression compiler looks up among ksqlDB's and the user's functions."""
    def walk(value: object) -> Iterable[str]:
        if isinstance(value, exp.Expression):
            yield from (str(call.this).upper() for call in value.find_all(exp.Anonymous))
        elif isinstance(value, ast.Query):
            yield from walk(value.select)
            yield from walk(value.partition_by)
        elif isinstance(value, tuple | list):
            for item in value:
                yield from walk(item)
    return {name for f in dataclasses.fields(statement) for name in walk(getattr(statement, f.name))}


def _topics_read(statement: ast.Statement) -> list[str]:
    if isinstance(statement, ast.CreateSource):
        return [str(statement.properties.get("KAFKA_TOPIC", statement.name))]
    return []


# -- applying DROP, TERMINATE and replacements ---------------------------------------------------------------


class _Topology:
    """The statements that define what exists, as statements run one after another change it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        self.entries: list[Sourced] = []
        self._sources: dict[str, Sourced] = {}  # by name
        self._connectors: dict[str, Sourced] = {}
        self._queries: dict[str, Sourced] = {}  # query id -> its CREATE … AS SELECT or INSERT INTO
        self._next_query = 0
        self._terminated: list[tuple[Sourced, str, Sourced]] = []  # (TERMINATE, query id, CREATE … AS SELECT)

    def add(self, sourced: Sourced) -> None:
        statement = sourced.statement
        if isinstance(statement, ast.CreateSource | ast.CreateAsSelect):
            added = self._define(self._sources, statement.name, sourced, statement.or_replace, statement.if_not_exists)
        elif isinstance(statement, ast.CreateConnector):
            added = self._define(self._connectors, statement.name, sourced, False, statement.if_not_exists)
        else:
            self.entries.append(sourced)
            added = True
        if added and isinstance(statement, ast.CreateAsSelect | ast.InsertInto):
            self._queries[self._query_id(statement)] = sourced

    def _define(self, names: dict[str, Sourced], name: str, sourced: Sourced, or_replace: bool,
                if_not_exists: bool) -> bool:
        """Add the definition of ``name``, replacing an earlier one; False if it adds nothing."""
        existing = names.get(name)
        if existing is not None:
            same = _normal(existing.statement.text) == _normal(sourced.statement.text)
            if if_not_exists or (same and not or_replace):
                return False
            self._remove(existing)
        names[name] = sourced
        self.entries.append(sourced)
        return True

    def _query_id(self, statement: ast.CreateAsSelect | ast.InsertInto) -> str:
        """The id the engine gives the statement's query (see Catalog.next_query_id)."""
        seq, self._next_query = self._next_query, self._next_query + 1
        if isinstance(statement, ast.InsertInto):
            return f"INSERTQUERY_{seq}"
        return f"{'CTAS' if statement.kind == 'TABLE' else 'CSAS'}_{statement.name}_{seq}"

    def apply(self, sourced: Sourced) -> None:
        statement = sourced.statement
        if isinstance(statement, ast.Drop):
            dropped = self._sources.pop(statement.name, None)
            if dropped is not None:
                self._remove(dropped)
        elif isinstance(statement, ast.DropConnector):
            connector = self._connectors.pop(statement.name, None)
            if connector is not None:
                self._remove(connector)
        elif isinstance(statement, ast.Terminate):
            self._terminate(sourced, statement.query_id)

    def _terminate(self, sourced: Sourced, query_id: str | None) -> None:
        ids = list(self._queries) if query_id is None else \
            [q for q in self._queries if q.upper() == query_id.upper()]
        for qid in ids:
            query = self._queries.pop(qid)
            if query not in self.entries:
                continue
            if isinstance(query.statement, ast.InsertInto):
                self._remove(query)
            else:  # a problem unless a later DROP (or replacement) removes its stream or table too
                self._terminated.append((sourced, qid, query))

    def _remove(self, sourced: Sourced) -> None:
        if sourced in self.entries:
            self.entries.remove(sourced)

    def ordered(self) -> list[Sourced]:
        """The entries in dependency order (see the module docstring); a problem for each stream or
        table whose query was terminated but which was not dropped."""
        for terminate, qid, query in self._terminated:
            statement = query.statement
            if query in self.entries and isinstance(statement, ast.CreateAsSelect):
                self.problems.append(f"{terminate.origin}: TERMINATE {qid} leaves {statement.name} ({query.origin}) "
                                     "without the query that fills it, which a job cannot hold: drop it too, or "
                                     f"tag the cell {SKIP_TAG}")
        position = {id(s): i for i, s in enumerate(self.entries)}
        needs = {id(s): self._needs(s, i) for i, s in enumerate(self.entries)}
        done: list[Sourced] = []
        placed: set[int] = set()
        waiting = list(self.entries)
        while waiting:
            ready = [s for s in waiting if needs[id(s)] <= placed] or waiting[:1]  # a cycle: keep the order
            chosen = min(ready, key=lambda s: position[id(s)])
            waiting.remove(chosen)
            done.append(chosen)
            placed.add(id(chosen))
        return done

    def _needs(self, sourced: Sourced, index: int) -> set[int]:
        """The entries ``sourced`` needs before it: what it reads, the connector writing the topic it
        is declared over, and the SET/UNSET statements that ran before it."""
        statement = sourced.statement
        needs = {id(e) for e in self.entries[:index] if isinstance(e.statement, ast.SetProperty | ast.UnsetProperty)}
        for name in _reads(statement):
            source = self._sources.get(name)
            if source is not None and source is not sourced:
                needs.add(id(source))
        if isinstance(statement, ast.CreateSource):
            topic = str(statement.properties.get("KAFKA_TOPIC", ""))
            needs |= {id(c) for c in self._connectors.values() if _connector_topic(c.statement) == topic}
        return needs


def _reads(statement: ast.Statement) -> list[str]:
    """The streams and tables a statement reads (or, for INSERT INTO, also writes)."""
    if isinstance(statement, ast.CreateAsSelect):
        return list(join_sources(statement.query))
    if isinstance(statement, ast.InsertInto):
        return [statement.target, *join_sources(statement.query)]
    if isinstance(statement, ast.InsertValues):
        return [statement.target]
    if isinstance(statement, ast.CreateConnector):
        source = {k.lower(): v for k, v in statement.properties.items()}.get("source")
        return [str(source).upper()] if source is not None else []
    return []


def _connector_topic(statement: ast.Statement) -> str | None:
    if not isinstance(statement, ast.CreateConnector):
        return None
    topic = {k.lower(): v for k, v in statement.properties.items()}.get("kafka.topic")
    return None if topic is None else str(topic)


def _normal(sql: str) -> str:
    return " ".join(sql.split())
