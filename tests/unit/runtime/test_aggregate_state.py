"""An aggregation hands its TABLE's materializer the changelog rows typed, so that they are not
decoded again from the topic: the table's state (what pull queries read) must be the topic's
changelog reduced, last value per key and window with tombstones deleting, exactly as decoding
would make it; and records that reach the topic otherwise are decoded, in order."""

from __future__ import annotations

from typing import Any

import pandas as pd

from nbstream import Engine
from nbstream.runtime.materialize import Materializer

BIDS = ("CREATE STREAM bids (auction BIGINT KEY, bidder VARCHAR, price BIGINT, rate DOUBLE) "
        "WITH (KAFKA_TOPIC='bids', VALUE_FORMAT='JSON', PARTITIONS=2);")
HOPPING = ("CREATE TABLE hot WITH (KEY_FORMAT='JSON') AS SELECT auction, WINDOWSTART AS ws, COUNT(*) AS n, "
           "MAX(price) AS top, AVG(rate) AS mean, LATEST_BY_OFFSET(bidder) AS last_bidder FROM bids "
           "WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 5 SECONDS) GROUP BY auction HAVING COUNT(*) < 3;")
PER_BIDDER = ("CREATE TABLE per_bidder AS SELECT bidder, SUM(price) AS total, COUNT(*) AS n FROM bids "
              "GROUP BY bidder;")


def _bids(eng: Engine, start: int, count: int) -> None:
    for i in range(start, start + count):
        eng.produce("bids", {"bidder": f"b{i % 3}", "price": i * 7 % 11, "rate": i / 3}, key=i % 4,
                    timestamp=1_000 * i)


def _materializer(eng: Engine, table: str) -> Materializer:
    (found,) = [r for q, r in eng.queries.workers() if q is None and isinstance(r, Materializer)
                and r.source.name == table]
    return found


def _reduced(eng: Engine, topic: str, value_columns: list[str]) -> set[tuple[Any, ...]]:
    """The topic's changelog reduced: the last value per key (and window); a tombstone deletes."""
    latest: dict[tuple[Any, ...], tuple[Any, ...] | None] = {}
    for r in eng.consume(topic):
        key = (str(r.key), r.window)
        latest[key] = None if r.value is None else tuple(r.value[c] for c in value_columns)
    return {(*k, *v) for k, v in latest.items() if v is not None}


def _state(rows: pd.DataFrame, key: str, value_columns: list[str], windowed: bool) -> set[tuple[Any, ...]]:
    out = set()
    for row in rows.to_dict("records"):
        window = (row["WINDOWSTART"], row["WINDOWEND"]) if windowed else None
        out.add((str(row[key]), window, *(row[c] for c in value_columns)))
    return out


def test_an_aggregations_table_state_is_its_changelog_reduced_without_decoding_it() -> None:
    eng = Engine()
    eng.execute(BIDS + HOPPING + PER_BIDDER)
    for start in (0, 40, 90):  # three rounds of batches, windows closing on neither (24 h grace)
        _bids(eng, start, 40)
        eng.run_until_idle()
    values = ["WS", "N", "TOP", "MEAN", "LAST_BIDDER"]
    hot = eng.query("SELECT * FROM hot")
    assert _state(hot, "AUCTION", values, windowed=True) == _reduced(eng, "HOT", values)
    assert any(r.value is None for r in eng.consume("HOT"))  # HAVING wrote tombstones, which deleted
    per_bidder = eng.query("SELECT * FROM per_bidder")
    assert _state(per_bidder, "BIDDER", ["TOTAL", "N"], windowed=False) == _reduced(eng, "PER_BIDDER",
                                                                                    ["TOTAL", "N"])
    for table in ("HOT", "PER_BIDDER"):  # handed over: the materializers decoded nothing
        assert _materializer(eng, table).stats.consumed == 0


def test_a_record_written_into_the_tables_topic_is_decoded_in_order_and_the_handover_resumes() -> None:
    eng = Engine()
    eng.execute(BIDS + PER_BIDDER)
    _bids(eng, 0, 6)
    eng.run_until_idle()
    eng.produce("PER_BIDDER", {"TOTAL": -1, "N": -1}, key="b0", timestamp=10_000)  # not the query's
    eng.produce("PER_BIDDER", None, key="b1", timestamp=10_000)
    _bids(eng, 6, 2)  # b0 and b1 again: the aggregation's rows come after the records above
    eng.run_until_idle()
    assert _materializer(eng, "PER_BIDDER").stats.consumed > 0
    _bids(eng, 8, 3)
    eng.run_until_idle()
    state = _state(eng.query("SELECT * FROM per_bidder"), "BIDDER", ["TOTAL", "N"], windowed=False)
    assert state == _reduced(eng, "PER_BIDDER", ["TOTAL", "N"])
    assert len(state) == 3
