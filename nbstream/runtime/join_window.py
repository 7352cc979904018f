"""The stream-stream (windowed) join of one batch, for :class:`~nbstream.runtime.join.JoinRunner`.

A record of the left side at time ``t`` joins the right records with times in
``[t - before, t + after]`` that arrived before it (a right record symmetrically). Stream time is
the largest record time of an input partition (a task, as in Kafka Streams: both inputs are
co-partitioned), shared by both sides; each side's window store has its own clock per partition,
which bounds what it keeps. Unmatched records of an outer side are
emitted null-padded at once — or, with a GRACE PERIOD, once their window has closed (stream time
past ``t + after + grace`` for a left record, ``t + before + grace`` for a right one) unless a
match arrived first; until then they wait in the outer store.

In a multi-way join each stream-stream join is one :class:`WindowStage` with stores and clocks of
its own; a later one's left input is the rows of the joins before it (its "records", their times
the times those joins gave them), so its stream time moves only with rows and records reaching it.

An INNER join without further joins reads less than the whole records: only the columns its
projection and WHERE read are carried into the matches (:attr:`WindowJoin.picked`), and a record
whose own side's part of the WHERE is false (a top-level conjunct reading that side's columns
only: :func:`side_filters`) neither looks for matches nor enters its window store — no row it
could join would pass the WHERE. It still moves the clocks, as every record does. The WHERE is
applied to the joined rows as before; a conjunct that fails or is NULL on a record keeps it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import sqlglot
from sqlglot import exp

from nbstream.physical.expressions import quote
from nbstream.plan.join import DEFAULT_JOIN_GRACE_MS, JOIN_KEY
from nbstream.runtime import stream_time
from nbstream.sql.ast import Within

if TYPE_CHECKING:
    from nbstream.runtime.join import JoinRunner



@dataclass(frozen=True)
class WindowStage:
    """One stream-stream join of a join runner's batch: of the first two sides, or — in a multi-way
    join — of the rows of the joins before it (its input 0) and a further stream (its input 1).

    ``records``: the relation of its input records (its inputs numbered 0 and 1 in ``__side``; each
    with ``__jk``, ``__ts``, ``__arr``, ``__in_partition``, ``__deleted``, its ``columns``);
    ``states``: each input's window store; ``outer``: the store of rows waiting for their window to
    close (GRACE PERIOD); ``clock``: the name of its stream time, its stores' clocks being
    ``store_clocks``."""

    within: Within
    kind: str  # INNER, LEFT, RIGHT or FULL
    columns: tuple[tuple[str, ...], tuple[str, ...]]  # each input's value columns, quoted
    states: tuple[str, str]
    outer: str
    clock: str
    store_clocks: tuple[str, str]
    records: str = "__ev"

    @property
    def has_grace(self) -> bool:
        """Whether the WITHIN clause names a GRACE PERIOD (null-padded rows wait for the window)."""
        return self.within.grace_ms is not None

    @property
    def grace_ms(self) -> int:
        return DEFAULT_JOIN_GRACE_MS if self.within.grace_ms is None else self.within.grace_ms

    @property
    def keeps_outer_rows(self) -> bool:
        """Whether unmatched rows wait in the outer store (an outer join with a GRACE PERIOD)."""
        return self.kind != "INNER" and self.has_grace

    @property
    def outer_sides(self) -> str:
        """The inputs whose unmatched records are written null-padded, as a SQL list."""
        return {"LEFT": "(0)", "RIGHT": "(1)", "FULL": "(0, 1)"}.get(self.kind, "()")


class WindowJoin:
    """Fills ``__joined`` for one batch (``__trig``: the arrival of the record that produced each
    row) and updates the window state of a stream-stream join (:class:`WindowStage`). ``reader``:
    what reads the joined rows of an INNER join (their expressions and WHERE), to carry only the
    columns it reads; None: all of them."""

    def __init__(self, runner: JoinRunner, stage: WindowStage,
                 reader: tuple[tuple[str, ...], str | None] | None = None) -> None:
        self.runner = runner
        self.stage = stage
        within = stage.within
        self.before, self.after, self.grace = within.before_ms, within.after_ms, stage.grace_ms
        self.retention = self.before + self.after + self.grace
        self.cols = [list(side) for side in stage.columns]
        self.picked = self.cols  # the columns the matches carry
        self.keep = ["TRUE", "TRUE"]  # per side, SQL: whether a record may join at all
        if reader is not None and stage.kind == "INNER":
            expressions, where = reader
            read = set().union(*(_column_names(_parse(e)) for e in (*expressions, *([where] if where else []))))
            self.picked = [[c for c in side if c.strip('"') in read] for side in self.cols]
            self.keep = side_filters(where, [[c.strip('"') for c in side] for side in self.cols])
        self.states = stage.states
        for table in [*self.states, *([stage.outer] if stage.keeps_outer_rows else [])]:  # state from before tasks
            runner.con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS __in_partition INTEGER")

    def _clock(self, side: int | None) -> str:
        """The ``__stream_time`` entry of the join (``side`` None) or of one side's window store,
        before its ``/<partition>``."""
        return self.stage.clock if side is None else self.stage.store_clocks[side]

    def _clocks(self) -> tuple[dict[int, int], list[dict[int, int]]]:
        """Per input partition of the batch: the stream time before it, and each side store's."""
        con = self.runner.con
        partitions = [int(p) for (p,) in con.execute(
            f"SELECT DISTINCT __in_partition FROM {self.stage.records} WHERE __side < 2").fetchall()]
        st0 = stream_time.load_partitions(con, self._clock(None), partitions)
        return st0, [stream_time.load_partitions(con, self._clock(side), partitions) for side in range(2)]

    def _span(self, side: str) -> str:
        """How long after its time a record of ``side`` (SQL: 0 left, 1 right) can still be matched."""
        return f"CASE WHEN {side} = 0 THEN {self.after} ELSE {self.before} END"

    def evaluate(self) -> None:
        """Stream time ``__stb``/``__sta`` before/after each record is its partition's, shared by both
        sides; a record is kept in its side's window store (``__late`` if not) while its time is within
        the retention (before + after + grace) of the largest time that store has seen in its partition."""
        con, jk = self.runner.con, quote(JOIN_KEY)
        st0, own = self._clocks()
        preceding = "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING"
        own_before = (f"CASE __side WHEN 0 THEN {stream_time.by_partition_sql(own[0])} "
                      f"ELSE {stream_time.by_partition_sql(own[1])} END")
        # the other side's store time when the record arrived: its records older than that less the
        # retention are gone from its window store, so the record cannot join them
        other = [f"""greatest({stream_time.by_partition_sql(own[side])}, max(CASE WHEN __side = {side} THEN __ts END)
                              OVER (PARTITION BY __in_partition ORDER BY __arr {preceding}))""" for side in range(2)]
        # The clocks are window functions, each sorting what it reads: they read the four columns
        # they need, and the records' other columns are joined to them after (not sorted thrice).
        con.execute(f"""CREATE OR REPLACE TEMP TABLE __clk AS
            WITH t AS (SELECT __arr, __side, __in_partition, __ts,
                              greatest({stream_time.by_partition_sql(st0)}, max(__ts) OVER (
                                       PARTITION BY __in_partition ORDER BY __arr {preceding})) AS __stb,
                              greatest({own_before}, __ts, max(__ts) OVER (
                                       PARTITION BY __side, __in_partition ORDER BY __arr {preceding})) AS __own
                       FROM {self.stage.records} WHERE __side < 2 AND NOT __deleted AND {jk} IS NOT NULL)
            SELECT __arr, __stb, greatest(__stb, __ts) AS __sta, __ts <= __own - {self.retention} AS __late,
                   CASE __side WHEN 0 THEN {other[1]} ELSE {other[0]} END - {self.retention} AS __gone,
                   __ts + {self._span('__side')} < greatest(__stb, __ts) AS __closed FROM t""")
        con.execute(f"CREATE OR REPLACE TEMP TABLE __sev AS SELECT *, CASE __side WHEN 0 THEN {self.keep[0]} "
                    f"ELSE {self.keep[1]} END AS __keep FROM {self.stage.records} JOIN __clk USING (__arr)")
        con.execute(f"CREATE OR REPLACE TEMP TABLE __sm AS {self._matches_sql()}")
        parts = [self._joined_sql()]
        if self.stage.kind != "INNER":
            self._mark_matched()
            at_once = "__closed" if self.stage.has_grace else "TRUE"
            if self.stage.has_grace:
                self._outer_candidates()
                parts.append(self._closed_sql())
            parts.append(self._padded_sql(f"(SELECT * FROM __sev WHERE NOT __matched AND {at_once} "
                                          f"AND __side IN {self.stage.outer_sides})", "__arr", "1", "0", "0"))
        self.runner.set_joined(f"""SELECT * EXCLUDE (__k1, __k2, __k3, __k4), __k1 AS __trig,
                   row_number() OVER (ORDER BY __k1, __k2, __k3, __k4) AS __pos
            FROM ({" UNION ALL BY NAME ".join(parts)})""")
        self._store(st0, own)

    def _window_match(self, e: str, o: str) -> str:
        """Whether record ``o`` of the other side is within the window of record ``e``."""
        return (f"(({e}.__side = 0 AND {o}.__ts BETWEEN {e}.__ts - {self.before} AND {e}.__ts + {self.after}) OR "
                f"({e}.__side = 1 AND {o}.__ts BETWEEN {e}.__ts - {self.after} AND {e}.__ts + {self.before}))")

    def _others_sql(self) -> str:
        """Every record a batch record may join: the stored ones (``__arr`` 0) and the batch's."""
        parts = [f"SELECT *, {side} AS __side FROM {state}" for side, state in enumerate(self.states)]
        parts.append("SELECT * EXCLUDE (__stb, __sta, __late, __closed, __gone, __keep) FROM __sev "
                     "WHERE NOT __late AND __keep")
        return " UNION ALL BY NAME ".join(parts)

    def _matches_sql(self) -> str:
        jk = quote(JOIN_KEY)
        picks = [f"CASE WHEN e.__side = {side} THEN e.{c} ELSE o.{c} END AS {c}"
                 for side in range(2) for c in self.picked[side]]
        return f"""SELECT e.__arr AS __earr, e.__side AS __eside, e.{jk} AS {jk}, {"".join(p + ", " for p in picks)}
                   greatest(e.__ts, o.__ts) AS __out_ts, o.__ts AS __ots, o.__arr AS __oarr, o.__side AS __oside,
                   e.__ts AS __ets
            FROM (SELECT * FROM __sev WHERE __keep) e JOIN ({self._others_sql()}) o
              ON e.{jk} = o.{jk} AND e.__side <> o.__side AND o.__arr < e.__arr AND o.__ts > e.__gone
                 AND {self._window_match('e', 'o')}"""

    def _mark_matched(self) -> None:
        """``__sev.__matched``: whether the record joined a record before it (an outer join pads the
        others)."""
        self.runner.con.execute("""CREATE OR REPLACE TEMP TABLE __sev AS
            SELECT *, __arr IN (SELECT __earr FROM __sm) AS __matched FROM __sev""")

    def _joined_sql(self) -> str:
        return ("SELECT * EXCLUDE (__earr, __eside, __ots, __oarr, __oside, __ets), FALSE AS __out_deleted, "
                "__earr AS __k1, 1 AS __k2, __ots AS __k3, __oarr AS __k4 FROM __sm")

    def _padded_sql(self, rows: str, k1: str, k2: str, k3: str, k4: str) -> str:
        """``rows`` (records of one side) as joined rows without the other side."""
        picks = [f"CASE WHEN __side = {side} THEN {c} END AS {c}" for side in range(2) for c in self.cols[side]]
        return (f"SELECT {quote(JOIN_KEY)}, {', '.join(picks)}, __ts AS __out_ts, FALSE AS __out_deleted, "
                f"{k1} AS __k1, {k2} AS __k2, {k3} AS __k3, {k4} AS __k4 FROM {rows}")

    def _outer_candidates(self) -> None:
        """``__oc``: records waiting for a match (stored, or unmatched in the batch) with the arrival of
        their first later match (``__m``) and of the record that closes their window (``__c``)."""
        jk = quote(JOIN_KEY)
        cols = ", ".join(c for side in self.cols for c in side)
        self.runner.con.execute(f"""CREATE OR REPLACE TEMP TABLE __oc AS
            WITH u AS (SELECT {cols}, {jk}, __side, __ts, 0 AS __arr, __in_partition FROM {self.stage.outer}
                       UNION ALL SELECT {cols}, {jk}, __side, __ts, __arr, __in_partition FROM __sev
                       WHERE NOT __late AND NOT __closed AND NOT __matched AND __side IN {self.stage.outer_sides}),
                 m AS (SELECT u.__side, u.__arr, u.__ts, u.{jk}, min(e.__arr) AS __m FROM u JOIN __sev e
                       ON e.{jk} = u.{jk} AND e.__side <> u.__side AND e.__arr > u.__arr AND u.__ts > e.__gone
                          AND {self._window_match('e', 'u')}
                       GROUP BY ALL),
                 c AS (SELECT u.__side, u.__arr, u.__ts, u.{jk}, min(e.__arr) AS __c FROM u JOIN __sev e
                       ON e.__arr > u.__arr AND e.__in_partition = coalesce(u.__in_partition, e.__in_partition)
                          AND e.__ts >= e.__stb
                          AND e.__sta > u.__ts + {self._span('u.__side')} + {self.grace}
                       GROUP BY ALL)
            SELECT u.*, m.__m, c.__c FROM u
            LEFT JOIN m ON m.__side = u.__side AND m.__arr = u.__arr AND m.__ts = u.__ts
                       AND m.{jk} IS NOT DISTINCT FROM u.{jk}
            LEFT JOIN c ON c.__side = u.__side AND c.__arr = u.__arr AND c.__ts = u.__ts
                       AND c.{jk} IS NOT DISTINCT FROM u.{jk}""")

    def _closed_sql(self) -> str:
        return self._padded_sql("(SELECT * FROM __oc WHERE __c IS NOT NULL AND (__m IS NULL OR __c < __m))",
                                "__c", "0", "__ts", "__arr")

    def _store(self, st0: dict[int, int], own: list[dict[int, int]]) -> None:
        con = self.runner.con
        for side, state in enumerate(self.states):  # what the matches carry (the others stay NULL)
            cols = ", ".join([*self.picked[side], quote(JOIN_KEY), "__ts", "0 AS __arr", "__in_partition"])
            con.execute(f"INSERT INTO {state} BY NAME SELECT {cols} "
                        f"FROM __sev WHERE __side = {side} AND NOT __late AND __keep")
            for partition, side_st in self._moved(f"__side = {side}", own[side]):
                con.execute(f"DELETE FROM {state} WHERE coalesce(__in_partition, {partition}) = {partition} "
                            f"AND __ts <= {side_st} - {self.retention}")
                stream_time.save(con, f"{self._clock(side)}/{partition}", side_st)
        if self.stage.keeps_outer_rows:
            cols = ", ".join(c for s in self.cols for c in s)
            con.execute(f"DELETE FROM {self.stage.outer}")
            con.execute(f"INSERT INTO {self.stage.outer} BY NAME SELECT {cols}, {quote(JOIN_KEY)}, __side, __ts, "
                        "0 AS __arr, __in_partition FROM __oc WHERE __m IS NULL AND __c IS NULL")
        for partition, st in self._moved("TRUE", st0):
            stream_time.save(con, f"{self._clock(None)}/{partition}", st)

    def _moved(self, where: str, before: dict[int, int]) -> list[tuple[int, int]]:
        """Each partition of the batch's records that ``where`` keeps, with its clock after them."""
        rows = self.runner.con.execute(f"""SELECT __in_partition, greatest({stream_time.by_partition_sql(before)},
                                                  max(__ts)) FROM __sev WHERE {where} GROUP BY __in_partition""")
        return [(int(p), int(st)) for p, st in rows.fetchall()]


def side_filters(where: str | None, sides: Sequence[Sequence[str]]) -> list[str]:
    """Per side, SQL true for a record whose side's part of ``where`` (the top-level conjuncts that
    read only columns of ``sides[i]``, perhaps with the join key) is not false: a record for which
    it is false (not NULL, not an error — ``TRY``) joins no row that passes ``where``."""
    if where is None:
        return ["TRUE" for _ in sides]
    tree = _parse(where)
    conjuncts = [cast(exp.Expression, c) for c in tree.flatten()] if isinstance(tree, exp.And) else [tree]
    filters = []
    for names in sides:
        own = {*names, JOIN_KEY}
        mine = [c.sql("duckdb") for c in conjuncts if (read := _column_names(c)) and read <= own]
        filters.append(f"coalesce(TRY({' AND '.join(f'({c})' for c in mine)}), TRUE)" if mine else "TRUE")
    return filters


def _parse(sql: str) -> exp.Expression:
    return cast(exp.Expression, sqlglot.parse_one(sql, read="duckdb"))


def _column_names(tree: exp.Expression) -> set[str]:
    """Every identifier ``tree``'s column references name (a struct field's column among them)."""
    return {part.name for column in tree.find_all(exp.Column) for part in column.parts}
