"""Session windows (``WINDOW SESSION (gap [, GRACE PERIOD g])``) for an aggregation, as ksqlDB runs them.

A record of a group at time ``t`` merges every live session of the group whose ``[start, end]`` lies
within ``gap`` of ``t`` into one session ``[min(t, starts), max(t, ends)]``. The query's stream time
``st`` (the largest record time seen) sets ``close = st - grace - gap``: sessions that ended before
``close`` are gone, and a record whose merged session would end before ``close`` is late (dropped,
counted). EMIT CHANGES writes, per accepted record, a tombstone for each session it replaced (unless the
merged session is the record's own ``[t, t]``), then the merged session's aggregate. EMIT FINAL writes a
session once, when it closes (``end < close``); replaced sessions vanish silently.

State, per query: ``agg$<q>`` holds the live sessions (group, ``__ws``, ``__we``) and ``rows$<q>`` the
accepted rows (group, time ``__t``, aggregate arguments, arrival ``__ord``). A session's aggregate is
the functions' batch templates over the rows of its group with ``__t`` in ``[__ws, __we]`` — sessions
never overlap, so no row belongs to two of them, and merging sessions needs no merge of stored slots.

Each batch is a fixed number of DuckDB statements: the sequential merge is a recursive CTE that takes
one record per group per step (the groups advance together, vectorised); the aggregate of each
emitted session is a range join of the emitted sessions with the rows. Limitations, stated plainly:
the recursion runs as many steps as the batch's largest number of records for one group, and a
session's aggregate re-reads all its rows for every record emitted into it, so the cost grows with the
square of a session's records within one batch (plus its stored rows). The rows of a session are kept
until it expires (``end < st - grace - gap``; ksqlDB's default grace is 24 hours). HAVING sees each
emitted session on its own: a merged session starts a new "passed before" history.
"""

from __future__ import annotations

import logging

import duckdb

from nbstream.errors import UnsupportedError
from nbstream.physical.aggregates import fill
from nbstream.physical.expressions import quote
from nbstream.plan.aggregate import AggregatePlan

log = logging.getLogger(__name__)

#: A group's sessions while the batch is folded: bounds and whether EMIT FINAL wrote it already.
SESSIONS_TYPE = "STRUCT(ws BIGINT, we BIGINT, em BOOLEAN)[]"


class SessionFold:
    """Folds ``__in`` (the batch's rows, in arrival order ``__ord``) into session state and writes
    ``__changes`` (the sessions to emit, with merged slots ``__m{j}_{k}``) for the aggregate runner."""

    def __init__(self, query_id: str, plan: AggregatePlan, con: duckdb.DuckDBPyConnection, state: str,
                 arg_types: dict[str, str]) -> None:
        if plan.table_keys:
            raise UnsupportedError("SESSION windows over a TABLE are not supported: aggregate a STREAM")
        assert plan.window is not None
        self.plan = plan
        self.con = con
        self.state = state
        self.rows = quote(f"rows${query_id}")
        self.gap = plan.window.size_ms
        self.groups = [quote(g.name) for g in plan.groups]
        self.args = sorted({c.arg for c in plan.calls if c.arg is not None})
        self.arg_types = arg_types
        self.task = 0  # the input partition of the batch being folded (see fold)
        self.expired = 0  # the closed sessions of the last batch that the store expired unwritten
        #: How long the session store keeps a session after its end (by the largest end written).
        self.retention = max(plan.window.retention_ms or 0, self.gap + plan.grace_ms)

    # -- state ------------------------------------------------------------------------------------------
    def create_state(self) -> None:
        groups = ", ".join(f"{quote(g.name)} {g.type.duckdb()}" for g in self.plan.groups)
        args = "".join(f", {quote(a)} {self.arg_types[a]}" for a in self.args)
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {self.state} "
                         f"({groups}, __ws BIGINT, __we BIGINT, __task INTEGER, __emitted BOOLEAN)")
        for column in ("__task INTEGER", "__emitted BOOLEAN"):  # state from before tasks
            self.con.execute(f"ALTER TABLE {self.state} ADD COLUMN IF NOT EXISTS {column}")
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {self.rows} ({groups}, __t BIGINT{args}, __ord BIGINT)")

    def drop_state(self) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {self.rows}")

    # -- one batch --------------------------------------------------------------------------------------
    def fold(self, stream_time: int, emit_final: bool, task: int, *, cached: bool = False) -> tuple[int, int]:
        """Merge the batch of ``task`` (its input partition, whose stream time is ``stream_time``) into
        the sessions; fill ``__changes`` (``cached``: through the record cache, see
        :meth:`_through_cache`). Returns (late records, new stream time).

        A session belongs to the task whose record last extended it, and only that task's stream time
        closes it (each input partition has its own, as in Kafka Streams)."""
        con = self.con
        self.task = task
        con.execute(f"CREATE OR REPLACE TEMP TABLE __events AS {self._events_sql(stream_time)}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE __walk AS {self._walk_sql()}")
        con.execute("""CREATE OR REPLACE TEMP TABLE __merged AS
            SELECT e.*, w.__touched, w.__mws, w.__mwe, w.__late FROM __events e JOIN __walk w USING (__key, __n)""")
        late, after = con.execute("SELECT count(*) FILTER (__late), max(__st) FROM __merged").fetchall()[0]
        st = stream_time if after is None else max(stream_time, int(after))
        self._store()
        if emit_final:
            self._closed(st)
        else:
            con.execute(f"CREATE OR REPLACE TEMP TABLE __changes AS {self._changes_sql(cached)}")
        self._expire(st, emit_final)
        return int(late or 0), st

    def _events_sql(self, stream_time: int) -> str:
        """``__in`` numbered per group (``__key``, ``__n``) with stream time and close time per record.
        ``__ord`` becomes the arrival order across batches (after every stored row's): offsets say nothing
        of the order against another partition's rows."""
        groups = ", ".join(self.groups)
        grace = self.plan.grace_ms
        arrived = f"(SELECT coalesce(max(__ord), 0) FROM {self.rows}) + row_number() OVER (ORDER BY __arrival)"
        return f"""WITH t AS (SELECT * REPLACE ({arrived} AS __ord),
                                 greatest({stream_time}, max(__ts) OVER (ORDER BY __ord
                                  ROWS UNBOUNDED PRECEDING)) AS __st,
                                 greatest({stream_time}, max(__ts) OVER (ORDER BY __ord
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) AS __stp FROM __in)
            SELECT *, __st - {grace} - {self.gap} AS __close, __stp - {self.retention - 1} AS __seen,
                   dense_rank() OVER (ORDER BY {groups}) AS __key,
                   row_number() OVER (PARTITION BY {groups} ORDER BY __ord) AS __n,
                   row_number() OVER (ORDER BY __ord) AS __pos
            FROM t"""

    def _walk_sql(self) -> str:
        """The ordered merge: step ``n`` takes each group's n-th record and the sessions left by step n-1."""
        groups = ", ".join(self.groups)
        match = " AND ".join(f"k.{g} IS NOT DISTINCT FROM s.{g}" for g in self.groups)
        touched = f"s.we >= greatest(e.__ts - {self.gap}, e.__seen) AND s.ws <= e.__ts + {self.gap}"
        return f"""WITH RECURSIVE walk(__key, __n, __sessions, __touched, __mws, __mwe, __late) AS (
            SELECT k.__key, 0::BIGINT, coalesce(s.__list, []::{SESSIONS_TYPE}), []::{SESSIONS_TYPE},
                   NULL::BIGINT, NULL::BIGINT, FALSE
            FROM (SELECT DISTINCT __key, {groups} FROM __events) k
            LEFT JOIN (SELECT {groups}, list({{'ws': __ws, 'we': __we, 'em': coalesce(__emitted, FALSE)}}
                                              ORDER BY __we, __ws) AS __list
                       FROM {self.state} GROUP BY ALL) s ON {match}
            UNION ALL
            SELECT __key, __n,
                   CASE WHEN __late THEN __sessions
                        ELSE list_append(__kept, {{'ws': __mws, 'we': __mwe, 'em': FALSE}}) END,
                   __touched, __mws, __mwe, __late
            FROM (SELECT *, __mwe < __close AS __late
                  FROM (SELECT *, least(__t, list_min([s.ws FOR s IN __touched])) AS __mws,
                               greatest(__t, list_max([s.we FOR s IN __touched])) AS __mwe
                        FROM (SELECT e.__key, e.__n, e.__ts AS __t, e.__close, w.__sessions,
                                     list_filter(w.__sessions, lambda s: {touched}) AS __touched,
                                     list_filter(w.__sessions, lambda s: NOT ({touched})) AS __kept
                              FROM walk w JOIN __events e ON e.__key = w.__key AND e.__n = w.__n + 1)))
        )
        SELECT * FROM walk"""

    def _store(self) -> None:
        """Keep the accepted rows; each batch group's sessions become those after its last record."""
        con = self.con
        groups = ", ".join(self.groups)
        args = "".join(f", {quote(a)}" for a in self.args)
        con.execute(f"INSERT INTO {self.rows} SELECT {groups}, __ts{args}, __ord FROM __merged WHERE NOT __late")
        match = " AND ".join(f"{self.state}.{g} IS NOT DISTINCT FROM l.{g}" for g in self.groups)
        con.execute(f"""CREATE OR REPLACE TEMP TABLE __final AS
            SELECT e.__key, {", ".join(f"e.{g}" for g in self.groups)}, w.__sessions
            FROM (SELECT __key, max(__n) AS __n FROM __walk GROUP BY __key) m
            JOIN __walk w USING (__key, __n) JOIN (SELECT DISTINCT __key, {groups} FROM __events) e USING (__key)""")
        con.execute(f"DELETE FROM {self.state} USING __final AS l WHERE {match}")
        con.execute(f"""INSERT INTO {self.state} BY NAME
            SELECT {groups}, s.ws AS __ws, s.we AS __we, {self.task} AS __task, s.em AS __emitted
            FROM (SELECT {groups}, unnest(__sessions) AS s FROM __final)""")

    def _expire(self, st: int, emit_final: bool) -> None:
        """Sessions that no later record can see expire with their rows (EMIT FINAL: once written)."""
        con = self.con
        seen = st - self.retention + 1
        written = " AND __emitted" if emit_final else ""
        con.execute(f"DELETE FROM {self.state} WHERE __we < {seen}{written} AND {self._own_sql()}")
        self._drop_orphan_rows(f"r.__t < {seen}")

    def _close(self, st: int) -> int:
        """The close time at stream time ``st``: sessions that end before it take no more records."""
        return st - self.plan.grace_ms - self.gap

    def _own_sql(self) -> str:
        """The sessions of the batch's task (state from before tasks: any task's)."""
        return f"coalesce(__task, {self.task}) = {self.task}"

    def _drop_orphan_rows(self, where: str) -> None:
        covered = " AND ".join([*(f"s.{g} IS NOT DISTINCT FROM r.{g}" for g in self.groups),
                                "r.__t BETWEEN s.__ws AND s.__we"])
        self.con.execute(f"""DELETE FROM {self.rows} WHERE (__ord, __t) IN (
            SELECT (r.__ord, r.__t) FROM {self.rows} r
            WHERE {where} AND NOT EXISTS (SELECT 1 FROM {self.state} s WHERE {covered}))""")

    # -- what to emit -------------------------------------------------------------------------------------
    def _changes_sql(self, cached: bool) -> str:
        """EMIT CHANGES: per accepted record, tombstones of the sessions it replaced, then its session
        (``cached``: :meth:`_through_cache`)."""
        groups = ", ".join(self.groups)
        tombs = f"""SELECT __key, {groups}, s.ws AS __ws, s.we AS __we, s.we AS __out_ts, __pos, s.we AS __sort,
                           TRUE AS __tomb, __in_partition, __in_offset, __ord
                    FROM (SELECT *, unnest(__touched) AS s FROM __merged
                          WHERE NOT __late AND NOT (__mws = __ts AND __mwe = __ts))"""
        values = f"""SELECT __key, {groups}, __mws AS __ws, __mwe AS __we, __mwe AS __out_ts, __pos,
                            9223372036854775807 AS __sort, FALSE AS __tomb, __in_partition, __in_offset, __ord
                     FROM __merged WHERE NOT __late"""
        if cached:
            tombs, values = self._through_cache(tombs, values)
        emitted = f"""SELECT * EXCLUDE (__pos, __sort), row_number() OVER (ORDER BY __pos, __sort) AS __pos
                      FROM ({tombs} UNION ALL {values})"""
        return self._with_slots(emitted, "u.__ord <= c.__ord AND NOT c.__tomb")

    @staticmethod
    def _through_cache(tombs: str, values: str) -> tuple[str, str]:
        """The batch's ``tombs`` and ``values`` through the record cache: each session the batch leaves
        (``__final``) written once, at its last record, and a tombstone only for a session stored before
        the batch (``__walk``'s first step) that it replaced — one created and replaced within the
        batch was never written. Its aggregate is read once, not once per record."""
        def sessions(table: str) -> str:
            return (f"(SELECT __key, s.ws AS __sws, s.we AS __swe "
                    f"FROM (SELECT __key, unnest(__sessions) AS s FROM {table}))")

        same = "s.__key = c.__key AND s.__sws = c.__ws AND s.__swe = c.__we"
        last = "QUALIFY row_number() OVER (PARTITION BY c.__key, c.__ws, c.__we ORDER BY c.__pos DESC) = 1"
        after, before = sessions("__final"), sessions("(SELECT * FROM __walk WHERE __n = 0)")
        return (f"SELECT c.* FROM ({tombs}) c SEMI JOIN {before} s ON {same} ANTI JOIN {after} s ON {same} {last}",
                f"SELECT c.* FROM ({values}) c SEMI JOIN {after} s ON {same} {last}")

    def _closed(self, st: int) -> None:
        """EMIT FINAL: ``__changes`` holds the sessions that closed (``end < st - grace - gap``), written
        once, as Kafka Streams fetches them from its session store when the record that closed them came:
        from the store's live segments, which a jump of stream time beyond the retention drops (see
        :meth:`_segment`). A session expired that way is counted and logged; written or expired, a closed
        session stays (marked) while a later record could still merge it, as in the store."""
        con = self.con
        groups = ", ".join(self.groups)
        closing = f"NOT coalesce(__emitted, FALSE) AND __we < {self._close(st)} AND {self._own_sql()}"
        con.execute(f"""CREATE OR REPLACE TEMP TABLE __closing AS
            WITH c AS (SELECT {groups}, __ws, __we FROM {self.state} WHERE {closing}),
                 reached AS (SELECT __close, max(__st) AS __st FROM __events GROUP BY __close)
            SELECT {groups}, __ws, __we, __we AS __out_ts, FALSE AS __tomb, NULL::INTEGER AS __in_partition,
                   NULL::BIGINT AS __in_offset, NULL::BIGINT AS __ord,
                   {self._segment('__we')} >= {self._segment(f'coalesce(r.__st, {st}) - {self.retention}')} AS __held,
                   coalesce(r.__st, {st}) AS __closed_at,
                   row_number() OVER (ORDER BY __we, __ws, {groups}) AS __pos
            FROM c ASOF LEFT JOIN reached r ON c.__we < r.__close""")
        con.execute(f"""CREATE OR REPLACE TEMP TABLE __changes AS
            {self._with_slots('SELECT * EXCLUDE (__held, __closed_at) FROM __closing WHERE __held', 'TRUE')}""")
        con.execute(f"UPDATE {self.state} SET __emitted = TRUE WHERE {closing}")
        expired, first, jumped = con.execute(
            "SELECT count(*), min(__we), max(__closed_at) FROM __closing WHERE NOT __held").fetchall()[0]
        self.expired = int(expired)
        if expired:
            log.warning("%d EMIT FINAL session(s) from end %d expired before they closed: stream time jumped to "
                        "%d, beyond their retention of %d ms; a larger RETENTION keeps them",
                        expired, first, jumped, self.retention)

    def _segment(self, time: str) -> str:
        """The session-store segment of ``time``: Kafka Streams drops a whole segment once stream time
        less the retention passes it, and segments span max(retention / 2, 60 s)."""
        return f"({time}) // {max(self.retention // 2, 60_000)}"

    def _with_slots(self, emitted: str, rows_filter: str) -> str:
        """``emitted`` sessions with each slot over the rows of the session (those ``rows_filter`` keeps)."""
        groups = ", ".join(f"c.{g}" for g in self.groups)
        match = " AND ".join([*(f"u.{g} IS NOT DISTINCT FROM c.{g}" for g in self.groups),
                              "u.__t BETWEEN c.__ws AND c.__we", rows_filter])
        slots = ", ".join(f"CAST({self._slot_sql(j, k)} AS {slot.type}) AS __m{j}_{k}"
                          for j, call in enumerate(self.plan.calls) for k, slot in enumerate(call.aggregate.slots))
        return f"""SELECT {groups}, c.__ws, c.__we, c.__out_ts, c.__pos, c.__tomb, c.__in_partition, c.__in_offset,
                          FALSE AS __stored_pass, {slots}
                   FROM ({emitted}) c LEFT JOIN {self.rows} u ON {match}
                   GROUP BY ALL"""

    def _slot_sql(self, j: int, k: int) -> str:
        """Slot ``k`` of call ``j`` over the joined rows ``u``, through its merge (which applies limits)."""
        call = self.plan.calls[j]
        slot = call.aggregate.slots[k]
        arg = f"u.{quote(call.arg)}" if call.arg is not None else "CASE WHEN u.__t IS NULL THEN NULL ELSE 1 END"
        batch = fill(slot.batch, _0=arg).replace("__ord", "u.__ord")
        return fill(slot.merge, s=f"NULL::{slot.type}", b=f"CAST({batch} AS {slot.type})")
