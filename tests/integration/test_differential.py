"""Differential tests: the engine's incremental results equal one batch DuckDB query over all input.

Each test produces a randomized, seeded input — out of order, with records late enough to be
dropped — in chunks of random size, running the engine between chunks so that every result is
built incrementally across micro-batches. The reference is plain DuckDB SQL over the whole input,
written here independently of the engine's code, with ksqlDB's rules:

- stream time is the largest record time seen so far, in arrival order (a running max);
- a record is dropped from a window when window end + grace ≤ stream time (its own time included);
- tumbling/hopping windows are ``[start, start + size)`` with starts at multiples of the advance;
- EMIT CHANGES writes one changelog record per accepted (record, window), carrying the running
  aggregate and, as timestamp, the largest record time folded in; EMIT FINAL writes a window once,
  at the first record whose stream time reaches its end + grace, if Kafka Streams' window store
  still returns it then: its start is at or above the largest window start written so far minus
  the retention (size + grace; ``AbstractDualSchemaRocksDBSegmentedBytesStore.getActualFrom``);
- a materialized windowed table keeps a window while its start is above the largest window start
  written minus the retention (size + grace), as Kafka Streams' window store does;
- session windows with late records come from the record-at-a-time model in
  ``tests/reference/ksql_model.py`` (written from Kafka Streams' code, not the engine's);
- an aggregate over a TABLE equals GROUP BY over the table's final contents;
- a stream-table join looks up the table row current at the stream record's arrival, a
  table-table join equals the join of the final tables, a stream-stream join writes every pair
  within the window (LEFT: and, at once, a left record nothing matched on arrival).

Inputs go to one partition unless said: arrival order is then the log's order, which stream time
follows.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import duckdb
import pandas as pd
import pytest
from produced import EVERY_CHANGE  # type: ignore[import-not-found]
from reference.ksql_model import Record as ModelRecord
from reference.ksql_model import Result, SessionWindows, session_window_aggregate

from nbstream import Engine
from nbstream.log.base import Record

SEEDS = [1, 42, 2026]

#: Window size, hop and grace (ms) small enough that random inputs close windows and drop records.
SIZE, ADVANCE, GRACE = 20, 5, 10


@dataclass(frozen=True)
class Window:
    """A window clause and the same window for the reference SQL."""

    clause: str
    size: int
    advance: int
    grace: int


TUMBLING = Window(f"TUMBLING (SIZE {SIZE} MILLISECONDS, GRACE PERIOD {GRACE} MILLISECONDS)", SIZE, SIZE, GRACE)
HOPPING = Window(f"HOPPING (SIZE {SIZE} MILLISECONDS, ADVANCE BY {ADVANCE} MILLISECONDS, "
                 f"GRACE PERIOD {GRACE} MILLISECONDS)", SIZE, ADVANCE, GRACE)

STREAM = ("CREATE STREAM events (k VARCHAR KEY, v BIGINT) "
          "WITH (KAFKA_TOPIC='events', VALUE_FORMAT='JSON', PARTITIONS=1);")


# -- inputs -----------------------------------------------------------------------------------------
def stream_events(seed: int, n: int = 600, keys: int = 6) -> pd.DataFrame:
    """Records in arrival order (``arrival``): mostly in time order, some out of order within the
    grace period, some far enough back to be late."""
    rng = random.Random(seed)
    now = 0
    rows = []
    for arrival in range(n):
        now += rng.randint(0, 3)
        draw = rng.random()
        back = rng.randint(25, 90) if draw < 0.08 else rng.randint(1, 15) if draw < 0.3 else 0
        rows.append({"arrival": arrival, "k": f"k{rng.randrange(keys)}", "v": rng.randint(-50, 100),
                     "ts": max(0, now - back)})
    return pd.DataFrame(rows)


def chunks(frame: pd.DataFrame, rng: random.Random) -> Iterator[pd.DataFrame]:
    """``frame`` cut into consecutive pieces of random size (1 to 80 rows)."""
    start = 0
    while start < len(frame):
        stop = start + rng.randint(1, 80)
        yield frame.iloc[start:stop]
        start = stop


def feed_stream(eng: Engine, frame: pd.DataFrame, seed: int) -> None:
    """Produce ``frame`` to ``events`` in random chunks, processing after each one."""
    for piece in chunks(frame, random.Random(seed)):
        eng.produce_batch("events", piece[["k", "v", "ts"]], key="k", timestamp="ts")
        eng.run_until_idle()


# -- the reference ------------------------------------------------------------------------------------
def accepted_sql(window: Window) -> str:
    """Every (record, window) pair the windowed aggregate must fold, with its stream time ``st``."""
    return f"""
        WITH timed AS (SELECT *, max(ts) OVER (ORDER BY arrival ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                                 AS st FROM events),
             starts AS (SELECT unnest(generate_series(0, (SELECT max(ts) FROM events), {window.advance})) AS ws),
             windowed AS (SELECT timed.*, ws, ws + {window.size} AS we
                          FROM timed JOIN starts ON ws <= ts AND ts < ws + {window.size})
        SELECT * FROM windowed WHERE we + {window.grace} > st"""


def ordered(rows: Iterable[tuple]) -> list[tuple]:
    """``rows`` sorted, NULLs (None or pandas' NA) last and as None."""
    plain = [tuple(None if v is None or v is pd.NA else v for v in row) for row in rows]
    return sorted(plain, key=lambda row: tuple((v is None, v) for v in row))


def reference(events: pd.DataFrame, sql: str) -> list[tuple]:
    """Run ``sql`` over ``events`` on a fresh DuckDB connection; rows sorted."""
    con = duckdb.connect()
    con.register("events", events)
    return ordered(con.execute(sql).fetchall())


def reference_changelog(events: pd.DataFrame, window: Window) -> list[tuple]:
    """EMIT CHANGES: per accepted (record, window), the running COUNT, SUM and max time."""
    return reference(events, f"""
        WITH accepted AS ({accepted_sql(window)})
        SELECT k, ws, we,
               count(*) OVER w AS n, sum(v) OVER w AS total, max(ts) OVER w AS rowtime
        FROM accepted
        WINDOW w AS (PARTITION BY k, ws ORDER BY arrival ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)""")


def reference_final(events: pd.DataFrame, window: Window, *, emitted_on_close: bool = False) -> list[tuple]:
    """Per key and window: COUNT, SUM and max time of the accepted records.

    ``emitted_on_close``: only the windows EMIT FINAL writes, each once: closed by the first record
    whose stream time reached end + grace (one partition), and still in the window store then —
    its start at or above the largest start of the windows accepted up to that record, less the
    retention. (A window whose close no record reached is still open.)"""
    closed = f"""WHERE ws >= (SELECT max(a.ws) FROM accepted a WHERE a.arrival <= (
                               SELECT min(t.arrival) FROM timed t WHERE t.st >= w.we + {window.grace}))
                            - {window.size + window.grace}""" if emitted_on_close else ""
    return reference(events, f"""
        WITH accepted AS ({accepted_sql(window)}),
             timed AS (SELECT arrival, max(ts) OVER (ORDER BY arrival ROWS UNBOUNDED PRECEDING) AS st FROM events),
             windows AS (SELECT k, ws, we, count(*) AS n, sum(v) AS total, max(ts) AS rowtime
                         FROM accepted GROUP BY k, ws, we)
        SELECT * FROM windows w {closed}""")


# -- the engine's output ----------------------------------------------------------------------------------
def windowed_rows(records: list[Record]) -> list[tuple]:
    """Changelog records as (key, start, end, N, TOTAL, timestamp), in log order."""
    rows = []
    for r in records:
        assert r.window is not None, f"a windowed aggregate wrote an unwindowed key: {r}"
        assert r.value is not None, f"no HAVING, so no tombstones: {r}"
        rows.append((r.key, r.window[0], r.window[1], r.value["N"], r.value["TOTAL"], r.timestamp))
    return rows


def last_per_window(rows: list[tuple]) -> list[tuple]:
    """The last changelog row of each key and window: the final table."""
    return sorted({(k, ws, we): (k, ws, we, *rest) for k, ws, we, *rest in rows}.values())


def pulled_windows(eng: Engine) -> list[tuple]:
    """The windowed table ``counts`` read by a pull query."""
    pulled = eng.query("SELECT K, WINDOWSTART, WINDOWEND, N, TOTAL, ROWTIME FROM counts")
    return sorted(pulled.itertuples(index=False, name=None))


def retained(final: list[tuple], window: Window) -> list[tuple]:
    """The windows a pull query still sees. Kafka Streams' window store (``WindowStoreMaterializer``:
    retention = size + grace unless RETENTION is given; ``InMemoryWindowStore`` and
    ``AbstractRocksDBSegmentedBytesStore.getActualFrom``) returns a window while its start is above
    the largest window start written so far minus the retention. Every accepted record writes its
    windows, so that largest start is the largest in ``final``."""
    newest = max(row[1] for row in final)
    return [row for row in final if row[1] > newest - (window.size + window.grace)]


def windowed_engine(window: Window, emit: str, partitions: int = 1) -> Engine:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(STREAM.replace("PARTITIONS=1", f"PARTITIONS={partitions}"))
    eng.execute(f"""CREATE TABLE counts AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM events
                    WINDOW {window.clause} GROUP BY k EMIT {emit};""")
    return eng


# -- windowed aggregates over a stream ---------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_inputs_hold_out_of_order_and_late_records(seed: int) -> None:
    events = stream_events(seed)
    out_of_order, accepted = reference(events, f"""
        SELECT (SELECT count(*) FROM events WHERE ts < (SELECT max(ts) FROM events e WHERE e.arrival < events.arrival)),
               (SELECT count(*) FROM ({accepted_sql(TUMBLING)}))""")[0]
    assert out_of_order > len(events) // 10
    assert 0 < len(events) - accepted < len(events) // 5, "some records, not most, are late"


@pytest.mark.parametrize("window", [TUMBLING, HOPPING], ids=["tumbling", "hopping"])
@pytest.mark.parametrize("seed", SEEDS)
def test_emit_changes_equals_batch_group_by_with_one_record_per_accepted_record(window: Window, seed: int) -> None:
    events = stream_events(seed)
    eng = windowed_engine(window, "CHANGES")
    feed_stream(eng, events, seed)

    rows = windowed_rows(eng.consume("COUNTS"))
    final = reference_final(events, window)
    assert last_per_window(rows) == final, "the final table"
    assert pulled_windows(eng) == retained(final, window), "the materialized table"
    expected = reference_changelog(events, window)
    assert len(rows) == len(expected), "one changelog record per accepted record and window"
    assert sorted(rows) == expected
    # per key and window the running COUNT goes 1, 2, 3, … in log order: no gap, no repeat
    seen: dict[tuple, int] = {}
    for k, ws, _we, n, *_ in rows:
        assert n == seen.get((k, ws), 0) + 1, f"COUNT of {k} in window {ws} jumped to {n}"
        seen[(k, ws)] = n


@pytest.mark.parametrize("seed", SEEDS)
def test_two_input_partitions_without_late_records(seed: int) -> None:
    """Keys spread over partitions; each key's records keep their order, and a grace of an hour
    leaves nothing late, so the changelog does not depend on how partitions interleave."""
    window = Window(f"TUMBLING (SIZE {SIZE} MILLISECONDS, GRACE PERIOD 1 HOUR)", SIZE, SIZE, 3_600_000)
    events = stream_events(seed)
    eng = windowed_engine(window, "CHANGES", partitions=2)
    feed_stream(eng, events, seed)

    records = eng.consume("COUNTS")
    assert {r.partition for r in records} == {0, 1}
    rows = windowed_rows(records)
    assert len(rows) == len(events), "nothing is late"
    assert sorted(rows) == reference_changelog(events, window)
    assert last_per_window(rows) == reference_final(events, window)


@pytest.mark.parametrize("window", [TUMBLING, HOPPING], ids=["tumbling", "hopping"])
@pytest.mark.parametrize("seed", SEEDS)
def test_emit_final_writes_every_closed_window_once(window: Window, seed: int) -> None:
    events = stream_events(seed)
    eng = windowed_engine(window, "FINAL")
    feed_stream(eng, events, seed)

    rows = windowed_rows(eng.consume("COUNTS"))
    windows = [(k, ws) for k, ws, *_ in rows]
    assert len(windows) == len(set(windows)), "EMIT FINAL writes a window once"
    emitted = reference_final(events, window, emitted_on_close=True)
    assert emitted, "the input closes windows"
    assert sorted(rows) == emitted


# -- an aggregate over a TABLE -----------------------------------------------------------------------------
def table_changes(seed: int, n: int = 500, ids: int = 15, groups: int = 4) -> pd.DataFrame:
    """Upserts that move rows between groups, and deletes (some of keys that do not exist)."""
    rng = random.Random(seed)
    rows = []
    for arrival in range(n):
        deleted = rng.random() < 0.25
        rows.append({"arrival": arrival, "id": f"u{rng.randrange(ids)}", "deleted": deleted,
                     "grp": None if deleted else f"g{rng.randrange(groups)}",
                     "amount": None if deleted else rng.randint(-20, 60), "ts": arrival})
    return pd.DataFrame(rows)


def feed_table(eng: Engine, changes: pd.DataFrame, seed: int) -> None:
    rng = random.Random(seed)
    for row in changes.itertuples():
        value = None if row.deleted else {"grp": row.grp, "amount": row.amount}
        eng.produce("users", value, key=row.id, timestamp=row.ts)
        if rng.random() < 0.05:
            eng.run_until_idle()
    eng.run_until_idle()


FINAL_USERS = """SELECT * FROM events
                 QUALIFY row_number() OVER (PARTITION BY id ORDER BY arrival DESC) = 1"""


def table_aggregate_changelog(changes: pd.DataFrame) -> dict[str, list[tuple]]:
    """Per group, the (COUNT, SUM) after each change touching it, in arrival order: a change retracts
    its key's previous row from that row's group and adds the new row to its group; one record per
    change and group (a row that stays in its group writes one update); an empty group shows 0, 0."""
    rows = reference(changes, """
        WITH history AS (SELECT *, lag(grp) OVER by_key AS old_grp, lag(amount) OVER by_key AS old_amount
                         FROM events WINDOW by_key AS (PARTITION BY id ORDER BY arrival)),
             deltas AS (SELECT arrival, old_grp AS grp, -1 AS dn, -old_amount AS dv FROM history
                        WHERE old_grp IS NOT NULL
                        UNION ALL
                        SELECT arrival, grp, 1, amount FROM history WHERE NOT deleted),
             net AS (SELECT arrival, grp, sum(dn) AS dn, sum(dv) AS dv FROM deltas GROUP BY arrival, grp)
        SELECT grp, arrival, sum(dn) OVER running, sum(dv) OVER running FROM net
        WINDOW running AS (PARTITION BY grp ORDER BY arrival ROWS UNBOUNDED PRECEDING)""")
    changelog: dict[str, list[tuple]] = {}
    for grp, _arrival, n, total in rows:
        changelog.setdefault(grp, []).append((n, total))
    return changelog


@pytest.mark.parametrize("seed", SEEDS)
def test_table_aggregate_equals_group_by_over_final_table(seed: int) -> None:
    changes = table_changes(seed)
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute("""
        CREATE TABLE users (id VARCHAR PRIMARY KEY, grp VARCHAR, amount BIGINT)
          WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON', PARTITIONS=1);
        CREATE TABLE per_grp AS SELECT grp, COUNT(*) AS n, SUM(amount) AS total FROM users GROUP BY grp EMIT CHANGES;
    """)
    feed_table(eng, changes, seed)

    expected = reference(changes, f"""SELECT grp, count(*), sum(amount) FROM ({FINAL_USERS})
                                      WHERE NOT deleted GROUP BY grp""")
    records = eng.consume("PER_GRP")
    changelog: dict[str, list[tuple]] = {}
    for r in records:
        changelog.setdefault(r.key, []).append((r.value["N"], r.value["TOTAL"]))
    assert changelog == table_aggregate_changelog(changes)
    last = {r.key: r.value for r in records}
    # a group left empty may end as a tombstone or as COUNT 0: either way it is not in the table
    from_changelog = sorted((g, v["N"], v["TOTAL"]) for g, v in last.items() if v is not None and v["N"] > 0)
    assert from_changelog == expected
    pulled = eng.query("SELECT * FROM per_grp")
    from_pull = sorted((g, n, t) for g, n, t in pulled[["GRP", "N", "TOTAL"]].itertuples(index=False) if n > 0)
    assert from_pull == expected
    users = eng.query("SELECT * FROM users")
    assert sorted(users[["ID", "GRP", "AMOUNT"]].itertuples(index=False, name=None)) == reference(
        changes, f"SELECT id, grp, amount FROM ({FINAL_USERS}) WHERE NOT deleted")


# -- session windows ---------------------------------------------------------------------------------------
GAP = 8


def reference_sessions(events: pd.DataFrame) -> list[tuple]:
    """Sessions as islands: per key, records in time order, a new session after a gap above ``GAP``;
    each with its start, end, COUNT, SUM and time (its end)."""
    return reference(events, f"""
        WITH ordered AS (SELECT *, ts - lag(ts) OVER by_time AS since FROM events
                         WINDOW by_time AS (PARTITION BY k ORDER BY ts, arrival)),
             numbered AS (SELECT *, count(*) FILTER (since IS NULL OR since > {GAP})
                                       OVER (PARTITION BY k ORDER BY ts, arrival ROWS UNBOUNDED PRECEDING) AS session
                          FROM ordered)
        SELECT k, min(ts), max(ts), count(*), sum(v), max(ts) FROM numbered GROUP BY k, session""")


def replay_sessions(records: list[Record]) -> dict[tuple, tuple]:
    """The live sessions after the changelog: a tombstone removes a live session, a value sets one."""
    live: dict[tuple, tuple] = {}
    for r in records:
        assert r.window is not None, r
        session = (r.key, *r.window)
        if r.value is None:
            assert live.pop(session, None) is not None, f"tombstone for a session that is not live: {session}"
        else:
            live[session] = (r.value["N"], r.value["TOTAL"], r.timestamp)
    return live


@pytest.mark.parametrize("seed", SEEDS)
def test_session_windows_equal_islands_of_the_batch(seed: int) -> None:
    """Out-of-order records extend, bridge and merge sessions; a grace of an hour keeps them all."""
    events = stream_events(seed)
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(STREAM + f"""CREATE TABLE counts AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM events
                             WINDOW SESSION ({GAP} MILLISECONDS, GRACE PERIOD 1 HOUR) GROUP BY k EMIT CHANGES;""")
    feed_stream(eng, events, seed)

    records = eng.consume("COUNTS")
    expected = reference_sessions(events)
    live = replay_sessions(records)
    assert sorted((*session, *value) for session, value in live.items()) == expected
    assert sum(r.value is not None for r in records) == len(events), "one value per record"
    assert sum(r.value is None for r in records) > 0, "some sessions should have merged"
    assert pulled_windows(eng) == expected, "the materialized table"


SESSION_GRACE = 10


def model_sessions(events: pd.DataFrame, *, final: bool) -> Result:
    """The session aggregate (COUNT, SUM) of ``events`` by the record-at-a-time model: sessions of
    ``GAP`` with ``SESSION_GRACE``, records folded in arrival order on one partition."""
    records = [ModelRecord(int(row.arrival), 0, row.k, int(row.v), int(row.ts)) for row in events.itertuples()]
    spec = SessionWindows(GAP, SESSION_GRACE, final)
    return session_window_aggregate(records, spec, lambda rs: (len(rs), sum(r.value for r in rs)))


def model_live_sessions(events: pd.DataFrame) -> list[tuple]:
    """The live sessions after the model's EMIT CHANGES changelog, as (key, start, end, COUNT, SUM,
    time = end)."""
    live: dict[tuple, tuple] = {}
    for out in model_sessions(events, final=False).outputs:
        assert out.window is not None
        if out.value is None:
            del live[(out.key, *out.window)]
        else:
            live[(out.key, *out.window)] = (*out.value, out.ts)
    return ordered((*session, *value) for session, value in live.items())


def session_engine(emit: str) -> Engine:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(STREAM + f"""CREATE TABLE counts AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM events
                             WINDOW SESSION ({GAP} MILLISECONDS, GRACE PERIOD {SESSION_GRACE} MILLISECONDS)
                             GROUP BY k EMIT {emit};""")
    return eng


@pytest.mark.parametrize("seed", SEEDS)
def test_session_windows_drop_late_records(seed: int) -> None:
    events = stream_events(seed)
    eng = session_engine("CHANGES")
    feed_stream(eng, events, seed)

    records = eng.consume("COUNTS")
    expected = model_live_sessions(events)
    accepted = len(events) - model_sessions(events, final=False).late
    assert len(events) > accepted, "some records should be late"
    assert sum(r.value is not None for r in records) == accepted, "one value per accepted record"
    live = replay_sessions(records)
    assert sorted((*session, *value) for session, value in live.items()) == expected


@pytest.mark.parametrize("seed", SEEDS)
def test_session_windows_emit_final_writes_each_closed_session_once(seed: int) -> None:
    events = stream_events(seed)
    eng = session_engine("FINAL")
    feed_stream(eng, events, seed)

    records = eng.consume("COUNTS")
    assert all(r.value is not None for r in records), "EMIT FINAL writes no tombstones"
    # the sessions ending before the final close time (largest time - grace - gap), each once
    expected = ordered((o.key, *o.window, *o.value, o.ts) for o in model_sessions(events, final=True).outputs)
    written = sorted((r.key, *r.window, r.value["N"], r.value["TOTAL"], r.timestamp) for r in records)
    assert written == expected


# -- joins ---------------------------------------------------------------------------------------------------
JOIN_SOURCES = """
    CREATE STREAM clicks (uid VARCHAR KEY, page VARCHAR) WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON', PARTITIONS=1);
    CREATE STREAM views (uid VARCHAR KEY, page VARCHAR) WITH (KAFKA_TOPIC='views', VALUE_FORMAT='JSON', PARTITIONS=1);
    CREATE TABLE users (uid VARCHAR PRIMARY KEY, name VARCHAR, age BIGINT)
      WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON', PARTITIONS=1);
    CREATE TABLE accounts (uid VARCHAR PRIMARY KEY, balance BIGINT)
      WITH (KAFKA_TOPIC='accounts', VALUE_FORMAT='JSON', PARTITIONS=1);
"""
WITHIN = 10


def join_inputs(seed: int, topics: tuple[str, ...], n: int = 300, keys: int = 6) -> pd.DataFrame:
    """Records of ``topics`` interleaved in arrival order. Streams get a unique ``page`` and a time
    that wanders ±8 ms around the arrival; tables get upserts and (one in four) deletes."""
    rng = random.Random(seed)
    rows = []
    for arrival in range(n):
        topic = rng.choice(topics)
        deleted = topic in ("users", "accounts") and rng.random() < 0.25
        rows.append({"arrival": arrival, "topic": topic, "uid": f"u{rng.randrange(keys)}", "deleted": deleted,
                     "page": f"p{arrival}", "name": None if deleted else f"n{rng.randrange(100)}",
                     "age": None if deleted else rng.randrange(100),
                     "balance": None if deleted else rng.randint(-100, 100),
                     "ts": max(0, arrival + rng.randint(-8, 8))})
    return pd.DataFrame(rows)


VALUE_COLUMNS = {"clicks": ("page",), "views": ("page",), "users": ("name", "age"), "accounts": ("balance",)}


def feed_joins(eng: Engine, inputs: pd.DataFrame, seed: int) -> None:
    """Produce every input record in arrival order, processing at random points."""
    rng = random.Random(seed)
    for row in inputs.to_dict("records"):
        value = None if row["deleted"] else {c: row[c] for c in VALUE_COLUMNS[row["topic"]]}
        eng.produce(row["topic"], value, key=row["uid"], timestamp=row["ts"])
        if rng.random() < 0.05:
            eng.run_until_idle()
    eng.run_until_idle()


def stream_rows(records: list[Record], columns: tuple[str, ...]) -> list[tuple]:
    """A stream's records as (key, *columns, timestamp), sorted."""
    return ordered((r.key, *(r.value[c] for c in columns), r.timestamp) for r in records)


def final_table(records: list[Record], columns: tuple[str, ...]) -> list[tuple]:
    """A table's changelog replayed: the last value per key, tombstones deleting."""
    last = {r.key: r.value for r in records}
    return ordered((k, *(v[c] for c in columns)) for k, v in last.items() if v is not None)


@pytest.mark.parametrize("kind", ["INNER", "LEFT"])
@pytest.mark.parametrize("seed", SEEDS)
def test_stream_table_join_looks_up_the_row_current_at_each_arrival(kind: str, seed: int) -> None:
    inputs = join_inputs(seed, ("clicks", "users"))
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(JOIN_SOURCES + f"""CREATE STREAM enriched AS
        SELECT c.uid AS uid, c.page AS page, u.name AS name, u.age AS age
        FROM clicks c {kind} JOIN users u ON c.uid = u.uid;""")
    feed_joins(eng, inputs, seed)

    matched = "" if kind == "LEFT" else "WHERE NOT coalesce(deleted, TRUE)"
    expected = reference(inputs, f"""
        WITH clicks AS (SELECT * FROM events WHERE topic = 'clicks'),
             users AS (SELECT * FROM events WHERE topic = 'users'),
             current AS (SELECT clicks.uid, clicks.page, clicks.ts, users.name, users.age, users.deleted
                         FROM clicks LEFT JOIN users ON users.uid = clicks.uid AND users.arrival < clicks.arrival
                         QUALIFY row_number() OVER (PARTITION BY clicks.arrival
                                                    ORDER BY users.arrival DESC NULLS LAST) = 1)
        SELECT uid, page, name, age, ts FROM current {matched}""")
    assert stream_rows(eng.consume("ENRICHED"), ("PAGE", "NAME", "AGE")) == expected


@pytest.mark.parametrize("kind", ["INNER", "LEFT"])
@pytest.mark.parametrize("seed", SEEDS)
def test_table_table_join_equals_the_join_of_the_final_tables(kind: str, seed: int) -> None:
    inputs = join_inputs(seed, ("users", "accounts"))
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(JOIN_SOURCES + f"""CREATE TABLE joined AS
        SELECT u.uid AS uid, u.name AS name, a.balance AS balance
        FROM users u {kind} JOIN accounts a ON u.uid = a.uid;""")
    feed_joins(eng, inputs, seed)

    expected = reference(inputs, f"""
        WITH final AS (SELECT * FROM events
                       QUALIFY row_number() OVER (PARTITION BY topic, uid ORDER BY arrival DESC) = 1),
             users AS (SELECT * FROM final WHERE topic = 'users' AND NOT deleted),
             accounts AS (SELECT * FROM final WHERE topic = 'accounts' AND NOT deleted)
        SELECT users.uid, users.name, accounts.balance FROM users {kind} JOIN accounts USING (uid)""")
    assert final_table(eng.consume("JOINED"), ("NAME", "BALANCE")) == expected
    pulled = eng.query("SELECT UID, NAME, BALANCE FROM joined")
    assert ordered(pulled.astype(object).itertuples(index=False, name=None)) == expected


@pytest.mark.parametrize("kind", ["INNER", "LEFT"])
@pytest.mark.parametrize("seed", SEEDS)
def test_stream_stream_join_pairs_records_within_the_window(kind: str, seed: int) -> None:
    """Out-of-order records (default grace: nothing is late). A LEFT join without GRACE PERIOD
    also writes a left record null-padded when nothing on the right matched it on arrival."""
    inputs = join_inputs(seed, ("clicks", "views"))
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(JOIN_SOURCES + f"""CREATE STREAM paired AS
        SELECT c.uid AS uid, c.page AS page, v.page AS viewed
        FROM clicks c {kind} JOIN views v WITHIN {WITHIN} MILLISECONDS ON c.uid = v.uid;""")
    feed_joins(eng, inputs, seed)

    unmatched = f"""UNION ALL
        SELECT uid, page, NULL, ts FROM clicks c
        WHERE NOT EXISTS (SELECT 1 FROM views v WHERE v.uid = c.uid AND v.arrival < c.arrival
                          AND v.ts BETWEEN c.ts - {WITHIN} AND c.ts + {WITHIN})""" if kind == "LEFT" else ""
    expected = reference(inputs, f"""
        WITH clicks AS (SELECT * FROM events WHERE topic = 'clicks'),
             views AS (SELECT * FROM events WHERE topic = 'views')
        SELECT c.uid, c.page, v.page, greatest(c.ts, v.ts) FROM clicks c JOIN views v
          ON v.uid = c.uid AND v.ts BETWEEN c.ts - {WITHIN} AND c.ts + {WITHIN}
        {unmatched}""")
    assert stream_rows(eng.consume("PAIRED"), ("PAGE", "VIEWED")) == expected
