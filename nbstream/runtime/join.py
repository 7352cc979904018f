"""A running join: micro-batches of its topics, joined in their arrival order, state in DuckDB.

Each batch, inside the one transaction of :class:`~nbstream.runtime.query.QueryRunner`:

1. ``__side<n>``: each side's records decoded into its renamed columns and join key ``__jk``
   (the side's ``pre`` plan), with the record's place in the log's arrival order (side 0 the
   left input, 1 the right one, 2… the further tables of a multi-way join);
2. ``__ev``: the good records of all sides, numbered by arrival (``__arr``): ksqlDB processes
   the records of a join's inputs one at a time in the order they were produced;
3. ``__joined``: the joined rows, ``__pos`` their output order (a view: over the rows computed
   into ``__joined_rows``, or — for the plain lookups of the fast path — over the lookup itself,
   so that its single reader computes only the columns it needs, unsorted):

   * stream-table (and stream-table-table…): each stream record looks up each table's row
     current at its arrival — the latest change of its key that arrived before it in the batch
     (an ``ASOF`` join on ``__arr``), else the table's stored state (``join$<query>$<side>``);
     tables are looked up one after another, each by its ON expression over the row so far.
     When all the batch's table changes arrived before its stream records, the tables' state
     takes them first and the stream records are looked up by plain hash joins;
   * table-table (and chains of tables on one key, joined by any kind): each change of a table
     looks up the other tables' rows of its key the same way and emits the joined row, or a
     tombstone when the join no longer holds — if the change reaches the result through the nested
     joins; a chain may start with a foreign-key join, whose result (``joinfk$<query>``) is then
     its first input;
   * stream-stream: each record joins the other side's records that arrived before it (stored
     in ``join$<query>$<side>`` or earlier in the batch) whose times are within the window;
     unmatched records of an outer side are emitted null-padded at once, or — with a GRACE
     PERIOD — when their window closes, unless a match arrived first;
   * a chain with streams (left-deep: each join's left input is the rows of the joins before it):
     tables are looked up as of the arrival of the record that produced each row; a later stream
     is joined in a window of its own (its own stores, WITHIN, GRACE PERIOD and stream time) with
     those rows, each placed at its record's arrival and carrying the time the joins before gave it;
4. the state tables take the batch's changes (tables: the latest row per key; streams: the
   records still inside the window retention).

Nothing loops over records in Python: every step is one DuckDB statement over the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property

import duckdb
import pyarrow as pa

from nbstream.log.base import SqlLog
from nbstream.log.embedded import route_sql
from nbstream.physical.compile import CONTROL_COLUMNS, SEQ_SQL, encode_rows_sql, result_sql
from nbstream.physical.expressions import quote
from nbstream.plan.join import JOIN_KEY, JoinAggregatePlan, JoinPlan, JoinSide, TableLookup
from nbstream.plan.logical import Sink, StatelessPlan
from nbstream.runtime import stream_time
from nbstream.runtime.aggregate import AggregateRunner
from nbstream.runtime.decoding import decoding_plan
from nbstream.runtime.join_window import WindowJoin, WindowStage
from nbstream.runtime.query import (
    MAX_BATCH,
    QueryRunner,
    Ranges,
    ResultShape,
    arrival_halves,
    arrival_prefix,
    arrow_of,
    store_offsets,
)

#: Input slots of a join runner: slot = side * SIDE_STRIDE + partition (see :meth:`JoinRunner._locate`).
SIDE_STRIDE = 1 << 20


#: The log's columns of a record's arrival (see :class:`~nbstream.log.base.SqlLog`), which a side's
#: decoding passes through (as ``__raw_<column>``) for the join to number records by arrival.
ARRIVAL_COLUMNS = ("append_no", "append_seq")
ARRIVAL_KEPT = tuple(quote(f"__raw_{name}") for name in ARRIVAL_COLUMNS)

#: An input's decoded records when its batch has none: the control columns only.
_NO_RECORDS = ("SELECT NULL::BOOLEAN AS __err, NULL::VARCHAR AS __errmsg, NULL::BOOLEAN AS __bad_ts, "
               "NULL::INTEGER AS __in_partition, NULL::BIGINT AS __in_offset, NULL::BIGINT AS __ts, "
               "NULL::BOOLEAN AS __deleted, {side} AS __side WHERE FALSE")


class JoinRunner(QueryRunner):
    """Runs a :class:`JoinPlan`; input offsets are kept per side (``<query>#<side>`` in ``__offsets``).

    ``transient`` (default: the plan has no sink): for a push query — its state is temporary tables
    of its own connection and its offsets stay in memory; ``start_at_end``: its streams are read
    from their end, while its tables are read from the beginning, so that stream records find the
    tables' current rows (ksqlDB would read the tables from the end too, and find nothing until
    they change)."""

    def __init__(self, query_id: str, plan: JoinPlan, con: duckdb.DuckDBPyConnection, log: SqlLog, *,
                 transient: bool | None = None, start_at_end: bool = False) -> None:
        self.join = plan
        self.transient = plan.sink is None if transient is None else transient
        self._states = [quote(f"join${query_id}${i}") for i in range(len(plan.sides))]
        self._outer = quote(f"joinouter${query_id}")
        self._rows = quote(f"joinrows${query_id}")
        self._fk_result = quote(f"joinfk${query_id}")  # a foreign-key join's result, read by a chain of tables
        self._trigger: str | None = "__arr"  # the column of __joined naming its rows' input records: see _source_sql
        #: What reads ``__joined``: the expressions over a joined row and the WHERE it must pass (a
        #: window join carries only the columns they read); None where others read it (an aggregate).
        self.joined_reader: tuple[tuple[str, ...], str | None] | None = (
            tuple(c.sql for c in plan.columns), plan.where)
        self._stages = _window_stages(query_id, plan, self._states, self._outer)
        self._window_joins: dict[int, WindowJoin] = {}
        super().__init__(query_id, plan.left.pre, con, log)
        if start_at_end and not self.offsets:
            self.offsets = {slot: end for slot, end in self._ends().items()
                            if not plan.sides[self._locate(slot)[0]].is_table}
        self._create_state()

    @property
    def sink(self) -> Sink | None:
        return self.join.sink

    @cached_property
    def _decodings(self) -> list[StatelessPlan]:
        """Each side's decoding (:func:`~nbstream.runtime.decoding.decoding_plan`), made at the first
        batch: what reads the joined rows is known by then (:attr:`joined_reader`)."""
        return [decoding_plan(s.pre, self._unread_columns(i)) for i, s in enumerate(self.join.sides)]

    @cached_property
    def _side_sql(self) -> list[str]:
        """Each side's decoding of ``__jin<side>``, passing its records' arrival columns through."""
        return [result_sql(plan, f"__jin{i}", raw=ARRIVAL_COLUMNS) for i, plan in enumerate(self._decodings)]

    @property
    def query_plan(self) -> JoinPlan:
        return self.join

    @property
    def result_shape(self) -> ResultShape:
        plan = self.join
        has_key = any(c.role == "KEY" for c in plan.columns)
        windowed = plan.window is not None
        return ResultShape.of(plan.columns, window=windowed, keys_first=windowed,
                              is_table=plan.emits_table and has_key, limit=plan.limit)

    def _batch_rows(self, sql: str) -> pa.Table:
        """A push query's batch joined: its result rows in output order, and its records in error."""
        self.join_batch()
        window = {"WINDOWSTART": "__ws", "WINDOWEND": "__we"}
        names = ", ".join(f"{window[name]} AS {quote(name)}" if name in window else quote(name)
                          for name in self.result_shape.columns)
        errors = self.errors_sql("TRUE AS __err, __errmsg, __in_partition AS __pos")
        return arrow_of(self.con, f"""SELECT __err, __errmsg, __ts AS ROWTIME, __deleted, {names}
            FROM (SELECT * FROM {self._projected_sql()} UNION ALL BY NAME {errors})
            ORDER BY __pos""")

    # -- inputs ------------------------------------------------------------------------------------
    @property
    def side_numbers(self) -> range:
        """The join's inputs, by number: 0 the left one, then the right one and a chain's tables."""
        return range(len(self.join.sides))

    def _offset_id(self, side: int) -> str:
        return f"{self.query_id}#{side}"

    def _load_offsets(self) -> dict[int, int]:
        offsets: dict[int, int] = {}
        if self.transient:
            return offsets
        for side in self.side_numbers:
            rows = self.con.execute("SELECT \"partition\", next_offset FROM __offsets WHERE query_id = ?",
                                    [self._offset_id(side)]).fetchall()
            offsets.update({side * SIDE_STRIDE + int(p): int(o) for p, o in rows})
        return offsets

    def _locate(self, slot: int) -> tuple[int, int]:
        """The (side, partition) of an input slot."""
        return divmod(slot, SIDE_STRIDE)

    def _topic_of(self, side: int) -> str:
        return self.join.sides[side].scan.topic

    def _ends(self) -> dict[int, int]:
        ends = {}
        for side in self.side_numbers:
            info = self.log.topic(self._topic_of(side))
            if info is not None:
                ends.update({side * SIDE_STRIDE + p: e for p, e in info.end_offsets.items()})
        return ends

    def pending(self) -> int:
        return sum(max(0, end - self.offsets.get(s, 0)) for s, end in self._ends().items())

    def _ranges(self) -> Ranges:
        """All pending records of both inputs; past MAX_BATCH, a prefix of them in arrival order (so
        no record is joined before one that arrived earlier)."""
        ends = self._ends()
        ranges = {s: (self.offsets.get(s, 0), e) for s, e in ends.items()}
        total = sum(max(0, b - a) for a, b in ranges.values())
        self.batch_size = min(MAX_BATCH, total)
        if total <= MAX_BATCH:
            return ranges
        return self._arrival_prefix(ranges)

    def _halves(self, ranges: Ranges) -> tuple[Ranges, Ranges]:
        """The first half of ``ranges`` in arrival order, and the rest (a join must never see a
        record before one that arrived earlier, even while isolating a failing record)."""
        return arrival_halves(self.con, self.log, ranges, self._topics(), SIDE_STRIDE)

    def _arrival_prefix(self, ranges: Ranges, limit: int = MAX_BATCH) -> Ranges:
        return arrival_prefix(self.con, self.log, ranges, self._topics(), limit, SIDE_STRIDE)

    def _topics(self) -> dict[int, str]:
        return {side: self._topic_of(side) for side in self.side_numbers}

    @staticmethod
    def _side_ranges(ranges: Ranges, side: int) -> Ranges:
        return {s - side * SIDE_STRIDE: r for s, r in ranges.items() if s // SIDE_STRIDE == side}

    def _prepare(self, ranges: Ranges) -> str:
        for side in self.side_numbers:
            relation = self.log.relation(self._topic_of(side), self._side_ranges(ranges, side))
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW __jin{side} AS {relation}")
        return ""

    def _commit_offsets(self, ranges: Ranges) -> None:
        rows = []
        for slot, (_, end) in ranges.items():
            side, partition = self._locate(slot)
            rows.append((self._offset_id(side), partition, end))
        store_offsets(self.con, rows)

    def _error_topic_sql(self) -> str:
        return self.topic_case_sql("__side")

    def topic_case_sql(self, side: str) -> str:
        """The topic of the input numbered by the SQL ``side``."""
        topics = " ".join(f"WHEN {i} THEN '{self._topic_of(i).replace(chr(39), chr(39) * 2)}'"
                          for i in self.side_numbers)
        return f"CASE {side} {topics} END"

    def errors_sql(self, columns: str) -> str:
        """``columns`` of the batch's records in error, of every input."""
        return " UNION ALL BY NAME ".join(f"SELECT {columns} FROM __side{i} WHERE __err" for i in self.side_numbers)

    # -- state -------------------------------------------------------------------------------------
    def _create_state(self) -> None:
        table = "TEMP TABLE" if self.transient else "TABLE"
        for side, state in zip(self.join.sides, self._states, strict=True):
            self.con.execute(f"CREATE {table} IF NOT EXISTS {state} ({_columns_ddl(side)}, __ts BIGINT, "
                             "__arr BIGINT)")
        if self.join.emits_table:
            _, key_type = self.join.row_key
            self.con.execute(f"CREATE {table} IF NOT EXISTS {self._rows} (__okey {key_type.duckdb()})")
        for joined, stage in self._stages.items():
            self._create_window_stores(table, joined, stage)
        if self._fk_chain:
            key = next(c for c in self.join.left.pre.columns if c.name == self.join.left.key_columns[0])
            columns = ", ".join(f"{quote(c.name)} {c.type.duckdb()}"
                                for side in self.join.sides[:2] for c in side.value_columns)
            self.con.execute(f"CREATE {table} IF NOT EXISTS {self._fk_result} ({columns}, {quote(JOIN_KEY)} "
                             f"{key.type.duckdb()}, __ts BIGINT, __arr BIGINT)")
        stream_time.create_clocks(self.con, temporary=self.transient)

    @property
    def _fk_chain(self) -> bool:
        """Whether a chain of tables follows a foreign-key join (whose result it reads)."""
        return self.join.foreign_key and bool(self.join.chain)

    def _create_window_stores(self, table: str, side: int, stage: WindowStage) -> None:
        """The stores of the stream-stream join of ``side``: the window store of its left input when that
        is the joins before it (the first join's streams are kept in their sides' state tables), and the
        outer store if its unmatched rows wait for their window to close."""
        types = {quote(c.name): c.type.duckdb() for s in self.join.sides for c in s.value_columns}
        key = _join_key_type(self.join.sides[side])
        control = f"{quote(JOIN_KEY)} {key}, __ts BIGINT, __arr BIGINT, __in_partition INTEGER"
        stores = [(stage.states[0], stage.columns[0], "")] if side > 1 else []
        if stage.keeps_outer_rows:
            stores.append((stage.outer, (*stage.columns[0], *stage.columns[1]), ", __side INTEGER"))
        for store, columns, extra in stores:
            values = ", ".join(f"{c} {types[c]}" for c in columns)
            self.con.execute(f"CREATE {table} IF NOT EXISTS {store} ({values}, {control}{extra})")

    def drop_state(self) -> None:
        """Forget this query's state (the query was dropped)."""
        for state in self._states:
            self.con.execute(f"DROP TABLE IF EXISTS {state}")
        for stage in self._stages.values():
            for store in (stage.outer, *stage.states):
                self.con.execute(f"DROP TABLE IF EXISTS {store}")
        self.con.execute(f"DROP TABLE IF EXISTS {self._outer}")
        self.con.execute(f"DROP TABLE IF EXISTS {self._rows}")
        self.con.execute(f"DROP TABLE IF EXISTS {self._fk_result}")
        ids = [self.query_id, *(self._offset_id(side) for side in self.side_numbers)]
        marks = ", ".join("?" for _ in ids)
        self.con.execute(f"DELETE FROM __stream_time WHERE query_id IN ({marks}) OR starts_with(query_id, ?) "
                         "OR starts_with(query_id, ?)", [*ids, f"{self.query_id}/", f"{self.query_id}#"])
        self.con.execute(f"DELETE FROM __offsets WHERE query_id IN ({marks})", ids)

    # -- one batch ---------------------------------------------------------------------------------
    def _evaluate(self, sql: str) -> None:
        self.join_batch()
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE __result AS {self._result_sql()}")

    def join_batch(self) -> None:
        """Steps 1-4 for the prepared batch: ``__side0``/``__side1`` (with the records in error),
        ``__joined`` (the joined rows, ``__pos`` their order, ``__out_ts`` their time), state updated."""
        self._trigger = "__arr"
        if self._table_changes_came_first():
            self._trigger = None
            self._look_up_after_table_changes()
            return
        for side in self.side_numbers:
            self._decode_side(side)
        self._number_by_arrival(self.side_numbers)
        if self._stages:
            self._join_streams()
        elif self.join.foreign_key and not self.join.chain:
            self.set_joined(self._foreign_key_sql())
        elif self.join.left.is_table:
            self.set_joined(self._table_table_sql())
        else:
            self.set_joined(self._stream_table_sql())
        for side, info in enumerate(self.join.sides):
            if info.is_table:
                self._store_table_changes(side)
        if self._fk_chain:
            self._store_foreign_key_result()

    def _decode_side(self, side: int) -> None:
        """``__side<side>``: the side's records decoded, with their place in the arrival order, and
        of their value columns those the join reads (every column is decoded: a record with a bad
        value in any is in error, as ksqlDB's deserializer finds it)."""
        decoded = {quote(c.name) for c in self._decodings[side].columns}
        unread = ", ".join([*(c for c in self._unread_columns(side) if c in decoded), *ARRIVAL_KEPT])
        self.con.execute(f"""CREATE OR REPLACE TEMP TABLE __side{side} AS
            SELECT * EXCLUDE ({unread}), {side} AS __side, {ARRIVAL_KEPT[0]} AS __an, {ARRIVAL_KEPT[1]} AS __as
            FROM ({self._side_sql[side]})""")

    def _unread_columns(self, side: int) -> list[str]:
        """The value columns of ``side`` that nothing after the decoding reads: those an INNER
        stream-stream join of two streams leaves out of its matches (:attr:`WindowJoin.picked`)."""
        if 1 not in self._stages or self.join.chain or side > 1:
            return []
        window = self._window_join(1)
        return [c for c in window.cols[side] if c not in window.picked[side]]

    def _join_streams(self) -> None:
        """A join with stream-stream joins, left-deep: the first join's rows (a window join's, or the
        stream's records with their first table looked up), then each later join in turn over the
        rows of the joins before it — a table looked up as it was when the record that produced the
        row arrived (``__arr``), a stream joined in its own window (:meth:`_joined_in_window`)."""
        plan = self.join
        if plan.within is not None:
            self._window_join(1).evaluate()
            if not plan.chain:
                self._trigger = "__trig"
                return
            rows = "SELECT * RENAME (__trig AS __arr) FROM __joined"
        else:
            rows = (f"SELECT *, FALSE AS __out_deleted, __ts AS __out_ts, __arr AS __pos "
                    f"FROM ({self.own_rows(0)} AND NOT __deleted)")
        tables: list[int] = []
        for side in self._lookup_sides():
            if side in self._stages:
                rows = self._joined_in_window(self._lookups_sql(rows, self.lookup_sql, tables), side)
                tables = []
            else:
                tables.append(side)
        self.set_joined(f"SELECT * FROM ({self._lookups_sql(rows, self.lookup_sql, tables)}) ORDER BY __pos")

    def _window_join(self, side: int) -> WindowJoin:
        """The stream-stream join of ``side`` (1: the first join's)."""
        if side not in self._window_joins:
            reader = None if self.join.chain else self.joined_reader
            self._window_joins[side] = WindowJoin(self, self._stages[side], reader)
        return self._window_joins[side]

    def _joined_in_window(self, rows: str, side: int) -> str:
        """``rows`` — the joins before, ``__arr`` the arrival of the record that produced each row and
        ``__pos`` their order — joined with the stream ``side`` in its window. Its two inputs are
        numbered anew in one arrival order (``__stage_ev``): each row at the place of the record that
        produced it, after the rows before it, as Kafka Streams hands a join's output on to the next
        join at once. The joined rows (``__stage_rows``) keep the arrival of their input record."""
        stage, jk = self._stages[side], quote(JOIN_KEY)
        probe = self._step(side).probe
        self.con.execute(f"""CREATE OR REPLACE TEMP TABLE __stage_ev AS
            WITH u AS (SELECT {", ".join(stage.columns[0])}, {probe} AS {jk}, __out_ts AS __ts, FALSE AS __deleted,
                              __arr AS __orig, __pos AS __sub, 0 AS __side FROM ({rows})
                       UNION ALL BY NAME
                       SELECT {", ".join(stage.columns[1])}, {jk}, __ts, __deleted, __arr AS __orig, 0 AS __sub,
                              1 AS __side FROM __ev WHERE __side = {side})
            SELECT u.*, e.__in_partition, row_number() OVER (ORDER BY u.__orig, u.__sub) AS __arr
            FROM u JOIN (SELECT __arr AS __earr, __in_partition FROM __ev) e ON e.__earr = u.__orig""")
        self._window_join(side).evaluate()
        self.con.execute("""CREATE OR REPLACE TEMP TABLE __stage_rows AS
            SELECT j.* EXCLUDE (__trig), s.__orig AS __arr
            FROM __joined j JOIN (SELECT __arr AS __sarr, __orig FROM __stage_ev) s ON s.__sarr = j.__trig""")
        return "SELECT * FROM __stage_rows"

    def _number_by_arrival(self, sides: Sequence[int]) -> None:
        """``__ev``: the good records of the decoded ``sides``, numbered by arrival (``__arr``)."""
        union = " UNION ALL BY NAME ".join(f"SELECT * FROM __side{side} WHERE NOT __err" for side in sides)
        place = "__side, __in_partition, __in_offset"  # a record's: the numbering sorts these, not whole records
        places = " UNION ALL ".join(f"SELECT {place}, __an, __as FROM __side{side} WHERE NOT __err" for side in sides)
        self.con.execute(f"""CREATE OR REPLACE TEMP TABLE __ev AS
            WITH n AS (SELECT {place}, row_number() OVER (ORDER BY __an, __as) AS __arr FROM ({places}))
            SELECT * FROM ({union}) JOIN n USING ({place})""")

    def _table_changes_came_first(self) -> bool:
        """Whether this is a stream-table join whose batch holds no table change that arrived after
        a stream record (the usual case: the tables change rarely): then each stream record sees
        the tables as they are after the batch's table changes, and a plain lookup does."""
        if self._stages or self.join.foreign_key or self.join.left.is_table:
            return False
        tables = " UNION ALL ".join(f"SELECT append_no FROM __jin{side}" for side in self.side_numbers[1:])
        last_change, first_record = self.con.execute(
            f"SELECT (SELECT max(append_no) FROM ({tables})), (SELECT min(append_no) FROM __jin0)").fetchall()[0]
        return last_change is None or first_record is None or last_change < first_record

    def _look_up_after_table_changes(self) -> None:
        """The batch's table changes go into the tables' state, then every stream record is joined
        with the state by hash joins — no ordering of the stream records by arrival needed."""
        con = self.con
        tables = self.side_numbers[1:]
        changed = [side for side in tables
                   if con.execute(f"SELECT EXISTS (SELECT 1 FROM __jin{side})").fetchall()[0][0]]
        for side in tables:
            if side in changed:
                self._decode_side(side)
            else:  # nothing to decode (a table rarely changes): only the shape the error union reads
                con.execute(f"CREATE OR REPLACE TEMP TABLE __side{side} AS {_NO_RECORDS.format(side=side)}")
        if changed:
            self._number_by_arrival(changed)
            for side in changed:
                self._store_table_changes(side)
        con.execute(f"CREATE OR REPLACE TEMP TABLE __side0 AS SELECT *, 0 AS __side FROM ({self._side_sql[0]})")
        stream_cols = ", ".join(quote(c.name) for c in self.join.left.value_columns)
        stream = (f"SELECT {stream_cols}, {quote(JOIN_KEY)}, __ts, {SEQ_SQL} AS __pos FROM __side0 "
                  "WHERE NOT __err AND NOT __deleted")
        self.set_joined(f"""SELECT *, FALSE AS __out_deleted, __ts AS __out_ts
            FROM ({self._lookups_sql(stream, self._state_lookup_sql)})""", lazy=True)

    def set_joined(self, sql: str, *, lazy: bool = False) -> None:
        """Point the ``__joined`` view at the batch's joined rows ``sql``: computed now into
        ``__joined_rows``, or (``lazy``) where the view is read — which must then be once, before
        the join's state changes again. Readers order rows by ``__pos`` themselves."""
        if not lazy:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE __joined_rows AS {sql}")
            sql = "SELECT * FROM __joined_rows"
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW __joined AS {sql}")

    def _state_lookup_sql(self, probe: str, side: int) -> str:
        """``probe`` (rows with ``__jk``) with the table ``side``'s stored row of that key: its columns,
        ``__op`` (found) and ``__ots`` (its time)."""
        jk = quote(JOIN_KEY)
        cols = ", ".join(f"t.{quote(c.name)}" for c in self.join.sides[side].value_columns)
        return f"""SELECT p.*, {cols}, t.{jk} IS NOT NULL AS __op, t.__ts AS __ots
            FROM ({probe}) p LEFT JOIN {self._states[side]} t ON p.{jk} = t.{jk}"""

    def _lookup_sides(self) -> range:
        """The sides joined by :attr:`JoinPlan.lookups`, in order."""
        plan = self.join
        return range(len(plan.sides) - len(plan.lookups), len(plan.sides))

    def _step(self, side: int) -> TableLookup:
        """The join of ``side``, one of :meth:`_lookup_sides`."""
        return self.join.lookups[side - self._lookup_sides().start]

    def _lookups_sql(self, rows: str, lookup: Callable[[str, int], str], sides: Sequence[int] | None = None) -> str:
        """Stream ``rows`` with each table of the join (or of ``sides``) looked up in turn,
        ``lookup(probe, side)`` adding a table's columns, ``__op`` and ``__ots``, by the probe's
        ``__jk``. The first table is probed by the stream's join key, each further one by its own
        probe over the row so far; an INNER lookup drops the rows it finds nothing for."""
        jk = quote(JOIN_KEY)
        for side in self._lookup_sides() if sides is None else sides:
            step = self._step(side)
            probe = rows if step.probe == jk else f"SELECT * REPLACE ({step.probe} AS {jk}) FROM ({rows})"
            keep = "__op" if step.kind == "INNER" else "TRUE"
            rows = f"SELECT * EXCLUDE (__op, __ots) FROM ({lookup(probe, side)}) WHERE {keep}"
        return rows

    def changes(self, side: int, *, keyed: bool = True) -> str:
        """The batch's good records of ``side``: its columns, ``__jk``, ``__deleted``, ``__ts``, ``__arr``
        (``keyed``: only those with a join key)."""
        cols = ", ".join(quote(c.name) for c in self.join.sides[side].value_columns)
        keyed_sql = f" AND {quote(JOIN_KEY)} IS NOT NULL" if keyed else ""
        return f"SELECT {cols}, {quote(JOIN_KEY)}, __deleted, __ts, __arr FROM __ev WHERE __side = {side}{keyed_sql}"

    def own_rows(self, side: int) -> str:
        """The batch's good records of ``side`` with its own columns only (``__ev`` holds every side's)."""
        others = [quote(c.name) for i, s in enumerate(self.join.sides) if i != side for c in s.value_columns]
        return f"SELECT * EXCLUDE ({', '.join(others)}) FROM __ev WHERE __side = {side}"

    def lookup_sql(self, probe: str, other: int, *, inclusive: bool = False) -> str:
        """``probe`` (rows with ``__jk`` and ``__arr``, without the ``other`` side's columns) with the
        ``other`` side's row current at each row's arrival: its columns, ``__op`` (present) and
        ``__ots`` (its time); ``inclusive``: the row as of the change arriving at ``__arr`` itself."""
        cols = [quote(c.name) for c in self.join.sides[other].value_columns]
        return self._lookup_in_sql(probe, cols, self.changes(other), self._states[other], inclusive=inclusive)

    @staticmethod
    def _lookup_in_sql(probe: str, cols: list[str], changes: str, state: str, *, inclusive: bool = False) -> str:
        """``probe`` with the row of its ``__jk`` current at each row's arrival, of a table whose batch
        ``changes`` (``cols``, ``__jk``, ``__deleted``, ``__ts``, ``__arr``) follow its ``state``."""
        pick = ", ".join(f"CASE WHEN c.__arr IS NULL THEN s.{c} ELSE c.{c} END AS {c}" for c in cols)
        jk = quote(JOIN_KEY)
        return f"""SELECT p.*, {pick},
                   CASE WHEN c.__arr IS NULL THEN s.{jk} IS NOT NULL ELSE NOT c.__deleted END AS __op,
                   CASE WHEN c.__arr IS NULL THEN s.__ts ELSE c.__ts END AS __ots
            FROM ({probe}) p
            ASOF LEFT JOIN ({changes}) c ON p.{jk} = c.{jk} AND p.__arr {'>=' if inclusive else '>'} c.__arr
            LEFT JOIN {state} s ON p.{jk} = s.{jk}"""

    def _stream_table_sql(self) -> str:
        """Each stream record joined with each table's row current at its arrival."""
        rows = self._lookups_sql(f"{self.own_rows(0)} AND NOT __deleted", self.lookup_sql)
        return f"SELECT *, FALSE AS __out_deleted, __ts AS __out_ts, __arr AS __pos FROM ({rows})"

    def _table_table_sql(self) -> str:
        """Each change of any table joined with the other tables' rows of its key current at its
        arrival (the changed table's row is the change itself), as ksqlDB's nested table-table
        joins: the joined row, or a tombstone when the join no longer holds, emitted if the change
        reached the result (see :meth:`_table_emits_sql`). A table's columns are NULL unless its row
        is part of the joined row (an outer join's row may lack the row of a table joined before).
        After a foreign-key join, its result is the first input (:meth:`_foreign_key_head_sql`)."""
        inputs, _ = self._table_inputs()
        fk = self.join.foreign_key
        if fk:
            rows, looked_up = self._foreign_key_head_sql(inputs), inputs[1:]
            order = "row_number() OVER (ORDER BY __arr, __sub)"
        else:
            changes = " UNION ALL ".join(f"SELECT {quote(JOIN_KEY)}, __deleted, __ts, __arr, {side} AS __chg FROM __ev "
                                         f"WHERE __side = {side} AND {quote(JOIN_KEY)} IS NOT NULL" for side in inputs)
            rows, looked_up, order = changes, inputs, "__arr"
        for side in looked_up:
            rows = (f"SELECT * RENAME (__op AS __op{side}, __ots AS __ots{side}) "
                    f"FROM ({self.lookup_sql(rows, side, inclusive=True)})")
        last = len(inputs) - 1
        position = {side: p for p, side in enumerate(inputs)} | ({1: 0} if fk else {})
        hidden = ", ".join(f"CASE WHEN {self._table_holds_sql(position[side], last)} THEN {quote(c.name)} END "
                           f"AS {quote(c.name)}"
                           for side in self.side_numbers for c in self.join.sides[side].value_columns)
        control = ", ".join([*(f"__op{s}, __ots{s}" for s in inputs), *(["__sub"] if fk else [])])
        return f"""SELECT * EXCLUDE ({control}) REPLACE ({hidden}),
                          NOT ({self._table_row_sql(last)}) AS __out_deleted,
                          {self._table_time_sql()} AS __out_ts, {order} AS __pos
                   FROM ({rows}) WHERE {self._table_emits_sql()}"""

    def _table_inputs(self) -> tuple[list[int], list[str]]:
        """The inputs of a chain of tables' nested joins, in order, by side (``__op<side>``: whether
        the input has a row of the key), and the kinds of the joins after the first input: the
        tables — or, after a foreign-key join, its result (side 0's number) then the chain's tables."""
        if self.join.foreign_key:
            return [0, *range(2, len(self.join.sides))], [step.kind for step in self.join.chain]
        return list(self.side_numbers), [step.kind for step in self.join.lookups]

    def _table_row_sql(self, last: int) -> str:
        """Whether the nested join of the inputs ``0..last`` has a row of the key (``__op<side>``:
        whether the input has one): the row of the joins before, and input ``last``'s as its join's
        kind asks."""
        inputs, kinds = self._table_inputs()
        row = "__op0"
        for side, kind in zip(inputs[1:last + 1], kinds, strict=False):
            row = {"INNER": f"({row} AND __op{side})", "LEFT": row, "RIGHT": f"__op{side}",
                   "FULL": f"({row} OR __op{side})"}[kind]
        return row

    def _table_holds_sql(self, position: int, last: int) -> str:
        """Whether the row of the nested join of the inputs ``0..last`` holds input ``position``'s row:
        the input has one, and each join from the input's own to ``last`` has a row (a join's row
        holds the row of the joins before it only if they have one)."""
        side = self._table_inputs()[0][position]
        return " AND ".join([f"__op{side}", *(self._table_row_sql(j) for j in range(max(position, 1), last + 1))])

    def _table_time_sql(self) -> str:
        """The time of a table-table join's output, as Kafka Streams' joins take it step by step: the
        change's, and at each join the other input's if that has a row — for a change of a later
        table, the row of the joins before it (the times of the rows it holds), then the later tables'."""
        inputs, _ = self._table_inputs()
        cases = []
        for changed, changed_side in enumerate(inputs):
            times = [f"CASE WHEN {self._table_holds_sql(p, changed - 1)} THEN __ots{inputs[p]} END"
                     for p in range(changed)]
            times += [f"CASE WHEN __op{side} THEN __ots{side} END" for side in inputs[changed + 1:]]
            cases.append(f"WHEN {changed_side} THEN greatest(__ts, {', '.join(times)})")
        return f"CASE __chg {' '.join(cases)} END"

    def _table_emits_sql(self) -> str:
        """Whether a change (of input ``__chg``) of a table-table join reaches the result, as in
        Kafka Streams' nested joins: a change of a later table enters its join as the right input,
        which emits only with a row of the inputs before it unless the join is RIGHT or FULL; the
        join's result then enters each later join as the left input, which emits only with its
        table's row if that join is INNER or RIGHT (a change of the first input enters the first
        join as its left input)."""
        inputs, kinds = self._table_inputs()
        cases = []
        for changed, changed_side in enumerate(inputs):
            needed = [self._table_row_sql(changed - 1)] if changed and kinds[changed - 1] in ("INNER", "LEFT") else []
            later = list(enumerate(zip(inputs[1:], kinds, strict=True), start=1))
            needed += [f"__op{side}" for position, (side, kind) in later
                       if position > changed and kind in ("INNER", "RIGHT")]
            cases.append(f"WHEN {changed_side} THEN {' AND '.join(needed) or 'TRUE'}")
        return f"CASE __chg {' '.join(cases)} END"

    def _foreign_key_head_sql(self, inputs: list[int]) -> str:
        """The changes entering the chain of tables after a foreign-key join, each with the foreign-key
        join's row of its key (the left table's key, ``__jk`` here; ``__op0``: whether it has one,
        ``__ots0``: its time): the join's own changes (``__fk_head``), and the chain's tables' changes
        with the join's row current at their arrival — its latest change, as Kafka Streams keeps the
        result of a foreign-key join that a later join reads (``joinfk$<query>``: the rows so far)."""
        cols = self._foreign_key_columns()
        key = quote(self.join.left.key_columns[0])
        self.con.execute(f"""CREATE OR REPLACE TEMP TABLE __fk_head AS
            SELECT {", ".join(cols)}, {key} AS {quote(JOIN_KEY)}, __out_deleted AS __deleted, __out_ts AS __ts, __arr,
                   __sub FROM ({self._fk_changes_sql()})""")
        head = "SELECT * EXCLUDE (__deleted), 0 AS __chg, NOT __deleted AS __op0, __ts AS __ots0 FROM __fk_head"
        changes = " UNION ALL ".join(f"SELECT {quote(JOIN_KEY)}, __deleted, __ts, __arr, 0 AS __sub, {side} AS __chg "
                                     f"FROM __ev WHERE __side = {side} AND {quote(JOIN_KEY)} IS NOT NULL"
                                     for side in inputs[1:])
        looked_up = self._lookup_in_sql(changes, cols, "SELECT * EXCLUDE (__sub) FROM __fk_head", self._fk_result)
        return (f"SELECT * FROM ({head}) UNION ALL BY NAME "
                f"SELECT * RENAME (__op AS __op0, __ots AS __ots0) FROM ({looked_up})")

    def _foreign_key_columns(self) -> list[str]:
        """The columns of a foreign-key join's rows: its two tables'."""
        return [quote(c.name) for side in self.join.sides[:2] for c in side.value_columns]

    def _store_foreign_key_result(self) -> None:
        """``joinfk$<query>`` takes the latest change of each key of the batch's foreign-key join."""
        state, jk = self._fk_result, quote(JOIN_KEY)
        self.con.execute(f"DELETE FROM {state} WHERE {jk} IN (SELECT {jk} FROM __fk_head)")
        self.con.execute(f"""INSERT INTO {state} SELECT {", ".join(self._foreign_key_columns())}, {jk}, __ts, __arr
            FROM (SELECT * FROM __fk_head QUALIFY row_number() OVER (PARTITION BY {jk} ORDER BY __arr DESC) = 1)
            WHERE NOT __deleted""")

    def _identity(self, side: int) -> list[str]:
        """The columns identifying a row of a table side: its join key, or the left table's primary
        key in a foreign-key join (many left rows share a join key)."""
        if self.join.foreign_key and side == 0:
            return [quote(c) for c in self.join.left.key_columns]
        return [quote(JOIN_KEY)]

    def _store_table_changes(self, side: int) -> None:
        """A table side's state takes the latest change of each row in the batch."""
        state, jk, ids = self._states[side], quote(JOIN_KEY), self._identity(side)
        cols = ", ".join(quote(c.name) for c in self.join.sides[side].value_columns)
        changes = self.changes(side, keyed=side == 1 or not self.join.foreign_key)
        self.con.execute(f"""CREATE OR REPLACE TEMP TABLE __latest AS SELECT * FROM ({changes})
            QUALIFY row_number() OVER (PARTITION BY {", ".join(ids)} ORDER BY __arr DESC) = 1""")
        match = " AND ".join(f"{state}.{c} = l.{c}" for c in ids)
        self.con.execute(f"DELETE FROM {state} USING __latest l WHERE {match}")
        self.con.execute(f"INSERT INTO {state} SELECT {cols}, {jk}, __ts, __arr FROM __latest WHERE NOT __deleted")

    def _foreign_key_sql(self) -> str:
        """A foreign-key join: each left change looks up its right row; each right change updates
        every left row referencing it at its arrival (in left key order)."""
        return f"""SELECT * EXCLUDE (__sub), row_number() OVER (ORDER BY __arr, __sub) AS __pos
            FROM ({self._fk_changes_sql()})"""

    def _fk_changes_sql(self) -> str:
        """A foreign-key join's changes (``__out_deleted``, ``__out_ts``), ordered by ``__arr``, ``__sub``."""
        return (f"SELECT * FROM ({self._fk_left_changes_sql()}) UNION ALL BY NAME "
                f"SELECT * FROM ({self._fk_right_changes_sql()})")

    def _fk_left_changes_sql(self) -> str:
        ids = ", ".join(self._identity(0))
        probe = f"""SELECT *, coalesce(lag(NOT __deleted) OVER (PARTITION BY {ids} ORDER BY __arr),
                                   ({ids}) IN (SELECT ({ids}) FROM {self._states[0]})) AS __prev
                    FROM ({self.own_rows(0)})"""
        row = "NOT __deleted AND __op" if self.join.kind == "INNER" else "NOT __deleted"
        return f"""SELECT *, NOT ({row}) AS __out_deleted,
                          CASE WHEN __op THEN greatest(__ts, __ots) ELSE __ts END AS __out_ts, 0 AS __sub
                   FROM ({self.lookup_sql(probe, 1)}) WHERE ({row}) OR __prev"""

    def _fk_right_changes_sql(self) -> str:
        jk, ids = quote(JOIN_KEY), self._identity(0)
        left_cols = [quote(c.name) for c in self.join.left.value_columns]
        right_cols = [quote(c.name) for c in self.join.right.value_columns]
        cols = ", ".join(left_cols)
        versions = (f"SELECT {cols}, {jk}, FALSE AS __deleted, __ts, 0 AS __arr FROM {self._states[0]} "
                    f"UNION ALL {self.changes(0, keyed=False)}")
        key_match = " AND ".join(f"p.{c} = v.{c}" for c in ids)
        deleted = "r.__deleted" if self.join.kind == "INNER" else "FALSE"
        right = ", ".join(f"CASE WHEN r.__deleted THEN NULL ELSE r.{c} END AS {c}" for c in right_cols)
        return f"""WITH v AS ({versions}), r AS ({self.changes(1)}),
                p AS (SELECT DISTINCT r.__arr AS __rarr, r.{jk} AS __rjk, {", ".join(f"v.{c}" for c in ids)}
                      FROM r JOIN v ON v.{jk} = r.{jk} AND v.__arr < r.__arr),
                cur AS (SELECT p.__rarr, {", ".join(f"v.{c}" for c in left_cols)}, v.{jk}, v.__ts AS __lts
                        FROM p ASOF JOIN v ON {key_match} AND p.__rarr > v.__arr
                        WHERE NOT v.__deleted AND v.{jk} = p.__rjk)
            SELECT cur.* EXCLUDE (__rarr, __lts), {right}, {deleted} AS __out_deleted,
                   greatest(r.__ts, cur.__lts) AS __out_ts, r.__arr AS __arr,
                   row_number() OVER (PARTITION BY r.__arr ORDER BY {", ".join(f"cur.{c}" for c in ids)}) AS __sub
            FROM cur JOIN r ON r.__arr = cur.__rarr"""

    # -- output --------------------------------------------------------------------------------------
    def _projected_sql(self) -> str:
        """``__joined`` through WHERE and the projection. A TABLE result's row that is deleted, or
        fails WHERE, is a tombstone if its key's previous output was a row, else nothing."""
        plan = self.join
        outputs = ", ".join(f"{c.sql} AS {quote(c.name)}" for c in plan.columns)
        where = f"coalesce({plan.where}, FALSE)" if plan.where else "TRUE"
        source, positions = self._source_sql()
        control = f"FALSE AS __err, NULL::VARCHAR AS __errmsg, FALSE AS __bad_ts, {positions}"
        bounds = plan.window_bounds_sql
        if bounds is not None:  # the result's key window
            control += f", {bounds[0]} AS __ws, {bounds[1]} AS __we"
        if not plan.emits_table:
            return (f"(SELECT {outputs}, __out_ts AS __ts, FALSE AS __deleted, __pos, {control} "
                    f"FROM __joined{source} WHERE {where})")
        self._emit_table_changes(where)
        return f"(SELECT {outputs}, __out_ts AS __ts, __deleted, __pos, {control} FROM __changes{source})"

    def _source_sql(self) -> tuple[str, str]:
        """Where each joined row came from — the input record whose arrival produced it: a join
        clause to add to ``__joined`` and the columns ``__side``, ``__in_partition``, ``__in_offset``
        and ``__headers`` (the record's Kafka headers, which Kafka Streams forwards to what it
        produced). The fast path's rows are placed by their stream record (``__pos``); the others
        by the arrival number of their trigger (``__arr``, or ``__trig`` for a window join) in ``__ev``."""
        if self._trigger is None:
            return (f" LEFT JOIN (SELECT {SEQ_SQL} AS __src_pos, __headers AS __src_headers FROM __side0 "
                    "WHERE len(__headers) > 0) ON __src_pos = __pos",
                    f"0 AS __side, (__pos >> 40)::INTEGER AS __in_partition, __pos & {(1 << 40) - 1} AS __in_offset, "
                    "__src_headers AS __headers")
        return (f" LEFT JOIN (SELECT __arr AS __src_arr, __side AS __src_side, __in_partition AS __src_partition, "
                f"__in_offset AS __src_offset, __headers AS __src_headers FROM __ev) ON __src_arr = {self._trigger}",
                "__src_side AS __side, __src_partition AS __in_partition, __src_offset AS __in_offset, "
                "__src_headers AS __headers")

    def _emit_table_changes(self, where: str) -> None:
        """``__changes``: the joined rows a TABLE result emits. The join's own changes all go out; a
        WHERE (ksqlDB's table filter) turns a row that fails into a tombstone only if the key's last
        output was a row — ``joinrows$<query>`` keeps the keys whose last output is a row."""
        if self.join.where is None:
            self.con.execute("CREATE OR REPLACE TEMP TABLE __changes AS "
                             "SELECT * REPLACE (__out_deleted AS __deleted) FROM __joined")
            return
        key, _ = self.join.row_key
        self.con.execute(f"""CREATE OR REPLACE TEMP TABLE __changes AS
            WITH p AS (SELECT * REPLACE ((__out_deleted OR NOT {where}) AS __deleted), {key} AS __okey
                       FROM __joined),
                 q AS (SELECT *, coalesce(lag(NOT __deleted) OVER (PARTITION BY __okey ORDER BY __pos),
                                          __okey IN (SELECT __okey FROM {self._rows})) AS __before FROM p)
            SELECT * FROM q WHERE NOT __deleted OR __before""")
        self.con.execute("""CREATE OR REPLACE TEMP TABLE __last AS SELECT __okey, __deleted FROM __changes
            QUALIFY row_number() OVER (PARTITION BY __okey ORDER BY __pos DESC) = 1""")
        self.con.execute(f"DELETE FROM {self._rows} WHERE __okey IN (SELECT __okey FROM __last)")
        self.con.execute(f"INSERT INTO {self._rows} SELECT __okey FROM __last WHERE NOT __deleted")

    def _result_sql(self) -> str:
        plan = self.join
        errors = self.errors_sql("TRUE AS __err, __errmsg, __bad_ts, FALSE AS __deleted, __in_partition, "
                                 "__in_offset, __side")
        rows = self._projected_sql()
        if plan.sink is None:
            return f"SELECT * FROM {rows} UNION ALL BY NAME {errors}"
        window_type = None if plan.window is None else ("'SESSION'" if plan.window.kind == "SESSION" else "'TIME'")
        encoded = encode_rows_sql(plan.sink, plan.columns, rows, control=(*CONTROL_COLUMNS, "__side"),
                                  order="__pos", window_type=window_type)
        partitions = self._partitions(plan.sink.topic)
        return (f"SELECT {route_sql(partitions)} AS p, * FROM ({encoded}) "
                f"UNION ALL BY NAME SELECT *, NULL::INTEGER AS p FROM ({errors})")


def _columns_ddl(side: JoinSide) -> str:
    return ", ".join(f"{quote(c.name)} {c.type.duckdb()}" for c in side.pre.columns)


def _join_key_type(side: JoinSide) -> str:
    """The DuckDB type of the side's ``__jk``."""
    return next(c.type.duckdb() for c in side.pre.columns if c.name == JOIN_KEY)


def _window_stages(query_id: str, plan: JoinPlan, states: Sequence[str], outer: str) -> dict[int, WindowStage]:
    """The stream-stream joins of ``plan``, by the side each joins: the first join's (side 1; its
    streams' window stores are their sides' ``states``, its outer store ``outer``, its clocks the
    query's and ``<query>#<side>``), and those of the chain's streams, each with stores and clocks of
    its own (``joinleft$<query>$<side>``, ``joinouter$<query>$<side>``, ``<query>#<side>@…``)."""
    cols = [tuple(quote(c.name) for c in s.value_columns) for s in plan.sides]
    stages = {}
    if plan.within is not None:
        stages[1] = WindowStage(plan.within, plan.kind, (cols[0], cols[1]), (states[0], states[1]), outer, query_id,
                                (f"{query_id}#0", f"{query_id}#1"))
    first = len(plan.sides) - len(plan.lookups)
    for side, step in enumerate(plan.lookups, start=first):
        if step.within is not None:
            left = tuple(c for columns in cols[:side] for c in columns)
            stages[side] = WindowStage(step.within, step.kind, (left, cols[side]),
                                       (quote(f"joinleft${query_id}${side}"), states[side]),
                                       quote(f"joinouter${query_id}${side}"), f"{query_id}#{side}@join",
                                       (f"{query_id}#{side}@left", f"{query_id}#{side}"), records="__stage_ev")
    return stages


class JoinAggregateRunner(AggregateRunner):
    """Runs a GROUP BY over a join: each batch is joined (a :class:`JoinRunner` over the same
    transaction, its state and input offsets), then the joined rows are folded by the aggregate."""

    def __init__(self, query_id: str, plan: JoinAggregatePlan, con: duckdb.DuckDBPyConnection,
                 log: SqlLog, *, start_at_end: bool = False) -> None:
        assert plan.join is not None
        self._join = JoinRunner(query_id, plan.join, con, log, transient=plan.sink is None,
                                start_at_end=start_at_end)
        self._join.joined_reader = None  # the aggregate reads the joined rows: all their columns
        super().__init__(query_id, plan, con, log)
        self._join.offsets = self.offsets  # one dict: the batch loop advances both

    def drop_state(self) -> None:
        self._join.drop_state()
        super().drop_state()

    def _load_offsets(self) -> dict[int, int]:
        return self._join.offsets

    def pending(self) -> int:
        return self._join.pending()

    def _ranges(self) -> Ranges:
        ranges = self._join._ranges()
        self.batch_size = self._join.batch_size
        return ranges

    def _prepare(self, ranges: Ranges) -> str:
        self._join._prepare(ranges)
        return self._pre_sql()

    def _commit_offsets(self, ranges: Ranges) -> None:
        self._join._commit_offsets(ranges)

    def _locate(self, slot: int) -> tuple[int, int]:
        return self._join._locate(slot)

    def _halves(self, ranges: Ranges) -> tuple[Ranges, Ranges]:
        return self._join._halves(ranges)

    def _error_topic_sql(self) -> str:
        """The topic of a record in error: its side is found by its place (``__pre_errors``)."""
        side = ("coalesce((SELECT any_value(e.__side) FROM __pre_errors e WHERE e.__in_partition = "
                "__result.__in_partition AND e.__in_offset = __result.__in_offset), __side)")
        return self._join.topic_case_sql(side)

    def _evaluate(self, sql: str) -> None:
        self._join.join_batch()
        self.con.execute("CREATE OR REPLACE TEMP TABLE __pre_errors AS "
                         f"{self._join.errors_sql('__side, __in_partition, __in_offset')}")
        super()._evaluate(sql)

    def _pre_sql(self) -> str:
        """The aggregate's pre-projection over the joined rows and the records in error of both inputs,
        in the joined rows' order (sorted here, narrow, rather than the wide joined rows). The rows of a
        join of tables are a TABLE's changes: a deleted row, or one failing WHERE, is a deletion."""
        pre = self.aggregate.pre
        cols = ", ".join(f"{c.sql} AS {quote(c.name)}" for c in pre.columns)
        where = f"coalesce({pre.where}, FALSE)" if pre.where else "TRUE"
        deleted, keep = (f"(__out_deleted OR NOT {where})", "TRUE") if pre.emits_table else ("FALSE", where)
        errors = ", ".join(quote(c.name) for c in pre.columns)
        return f"""SELECT FALSE AS __err, NULL::VARCHAR AS __errmsg, FALSE AS __bad_ts, 0 AS __in_partition,
                   __pos AS __in_offset, __out_ts AS __ts, {deleted} AS __deleted, FALSE AS __key_null,
                   NULL AS __headers, {cols}
            FROM __joined WHERE {keep}
            UNION ALL BY NAME
            SELECT TRUE AS __err, __errmsg, __bad_ts, __in_partition, __in_offset, __ts, FALSE AS __deleted,
                   FALSE AS __key_null, NULL AS __headers, {", ".join(f"NULL AS {c}" for c in errors.split(", "))}
            FROM ({self._join.errors_sql("*")})
            ORDER BY __in_offset"""
