"""A windowed aggregation over an endless stream runs in flat memory: windows past their retention
leave the aggregation's state and the output table's materialized state, so after a warm-up the
state tables' row counts stay bounded and the process does not grow with the events processed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbstream import Engine

KEYS = 200
EVENTS_PER_SECOND = 1_000  # of event time
RETENTION_S = 5
ROUND_S = 2 * RETENTION_S  # each round covers two retention periods of event time
ROUNDS = 12  # 24 retention periods in all, 240,000 events
WARM_UP = 4  # rounds before the figures are compared

QUERY = f"""
CREATE STREAM clicks (userid VARCHAR KEY, amount DOUBLE, ts BIGINT)
  WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON', PARTITIONS=1, TIMESTAMP='ts');
CREATE TABLE per_second AS SELECT userid, COUNT(*) AS n, SUM(amount) AS total FROM clicks
  WINDOW TUMBLING (SIZE 1 SECOND, RETENTION {RETENTION_S} SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY userid;
"""


def rss_bytes() -> int:
    """The resident set size of this process."""
    statm = Path("/proc/self/statm")
    if not statm.exists():
        pytest.skip("needs /proc/self/statm (Linux) to read the resident set size")
    return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def events(round_no: int) -> pd.DataFrame:
    """One round of clicks: ROUND_S seconds of event time after the previous round's."""
    n = ROUND_S * EVENTS_PER_SECOND
    rng = np.random.default_rng(round_no)
    return pd.DataFrame({
        "userid": pd.Series(rng.integers(0, KEYS, n)).map("u{}".format),
        "amount": rng.random(n),
        "ts": round_no * ROUND_S * 1000 + np.arange(n, dtype=np.int64) * 1000 // EVENTS_PER_SECOND,
    })


def state_rows(eng: Engine) -> dict[str, int]:
    tables = [name for (name,) in eng.con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'agg$%' OR table_name LIKE 'state$%'"
    ).fetchall()]
    return {t: eng.con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in tables}


def test_a_windowed_aggregation_with_a_short_retention_runs_in_flat_memory(tmp_path: Path) -> None:
    eng = Engine(path=tmp_path)
    eng.execute(QUERY)
    rss, rows = [], []
    for round_no in range(ROUNDS):
        eng.produce_batch("clicks", events(round_no), key="userid", timestamp="ts")
        eng.run_until_idle()
        eng.con.execute("CHECKPOINT")
        rss.append(rss_bytes())
        rows.append(state_rows(eng))
    windows_kept = RETENTION_S + 1  # windows within the retention of the stream time, per key
    assert rows[-1]["state$PER_SECOND"] <= KEYS * windows_kept
    assert all(r["state$PER_SECOND"] <= KEYS * windows_kept for r in rows)
    assert all(r["agg$CTAS_PER_SECOND_0"] <= KEYS * 2 for r in rows)  # open windows only (no grace)
    expired = (ROUNDS * ROUND_S - RETENTION_S - 1) * 1000  # before the last retention period
    assert eng.query("SELECT userid FROM per_second WHERE WINDOWSTART < :t", {"t": expired}).empty
    settled = rss[WARM_UP - 1]
    assert max(rss[WARM_UP:]) <= settled * 1.2, [f"{r / 2**20:.0f} MiB" for r in rss]
    eng.close()
