"""Engine.consume: a topic's records decoded in one DuckDB statement, as Records or a DataFrame."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest
from produced import EVERY_CHANGE  # type: ignore[import-not-found]

from nbstream import Engine
from nbstream.errors import FormatError, LogError
from nbstream.formats import format_for
from nbstream.log.base import RECORD_SCHEMA
from nbstream.runtime.consume import Records

TYPED = """
CREATE STREAM typed (k VARCHAR KEY, i INT, b BIGINT, d DOUBLE, m DECIMAL(5, 2), s VARCHAR, ok BOOLEAN,
                     t TIMESTAMP, a ARRAY<INT>, kv MAP<VARCHAR, INT>, st STRUCT<x INT, y VARCHAR>)
  WITH (KAFKA_TOPIC='typed', VALUE_FORMAT='JSON', PARTITIONS=2);
CREATE STREAM copied AS SELECT * FROM typed;
"""
ROW = {"I": 1, "B": 2**40, "D": 1.5, "M": Decimal("3.25"), "S": "x", "OK": True, "T": 1_700_000_000_123,
       "A": [1, None], "KV": {"a": 1}, "ST": {"X": 7, "Y": "y"}}
SENSORS = """
CREATE STREAM ev (k VARCHAR KEY, v DOUBLE) WITH (KAFKA_TOPIC='ev', VALUE_FORMAT='JSON', PARTITIONS=1);
CREATE TABLE per_second AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM ev
  WINDOW TUMBLING (SIZE 1 SECOND) GROUP BY k EMIT CHANGES;
"""


def _typed() -> Engine:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(TYPED)
    eng.produce("typed", ROW, key="k1", timestamp=10)
    eng.produce("typed", dict.fromkeys(ROW), key="k2", timestamp=20)  # every column NULL
    eng.run_until_idle()
    return eng


def test_the_frame_has_the_streams_columns_typed_exactly_and_nulls_stay_null() -> None:
    frame = _typed().consume("copied", as_frame=True)

    assert list(frame.columns) == ["K", "I", "B", "D", "M", "S", "OK", "T", "A", "KV", "ST",
                                   "ROWTIME", "ROWPARTITION", "ROWOFFSET", "__deleted", "__headers"]
    types = {name: dtype.pyarrow_dtype for name, dtype in frame.dtypes.items()}
    assert types["I"] == pa.int32() and types["B"] == pa.int64() and types["D"] == pa.float64()
    assert types["M"] == pa.decimal128(5, 2) and types["S"] == pa.string() and types["OK"] == pa.bool_()
    assert pa.types.is_timestamp(types["T"]) and types["ROWTIME"] == pa.int64()
    assert pa.types.is_list(types["A"]) and pa.types.is_map(types["KV"]) and pa.types.is_struct(types["ST"])
    first, nulls = frame.set_index("K").loc["k1"], frame.set_index("K").loc["k2"]
    assert (first["I"], first["B"], first["D"], first["M"], first["S"], first["OK"]) == (
        1, 2**40, 1.5, Decimal("3.25"), "x", True)
    assert first["T"] == pd.Timestamp(1_700_000_000_123, unit="ms")
    assert (list(first["A"]), first["ST"]) == ([1, None], {"X": 7, "Y": "y"})
    assert first["ROWTIME"] == 10 and not first["__deleted"] and len(first["__headers"]) == 0
    assert all(nulls[c] is pd.NA for c in ["I", "B", "D", "M", "S", "OK", "T", "A", "KV", "ST"])


def test_records_carry_the_logical_content_the_format_decodes() -> None:
    """Each record's key and value are what ``decode_python`` makes of its bytes, whether DuckDB
    computed them (the bytes are what nbstream writes) or Python did (anything else)."""
    eng = _typed()
    eng.produce("typed", {"i": "7", "extra": [1], "D": "NaN"}, key="k3")  # spelt otherwise, coerced
    eng.produce("typed", {"D": 1e-7, "M": 1.125, "T": 5}, key="k4")  # Python's spellings of numbers
    eng.produce("typed", None, key="k5")
    eng.run_until_idle()
    value_fmt = format_for("JSON")
    source = eng.catalog.get("COPIED")
    for topic in ("typed", "COPIED"):
        raw = eng.log.read(topic).to_pylist()
        records = eng.consume(topic)
        assert [(r.partition, r.offset) for r in records] == sorted((row["partition"], row["offset"]) for row in raw)
        by_position = {(row["partition"], row["offset"]): row for row in raw}
        for record in records:
            data = by_position[record.partition, record.offset]["value"]
            expected = None if data is None else value_fmt.decode_python(data, source.schema.value,
                                                                         wrap_single_value=True)
            assert json.dumps(record.value, default=str) == json.dumps(expected, default=str)
    [k1] = [r for r in eng.consume("copied") if r.key == "k1"]
    assert k1.value == {**ROW, "A": [1, None]} and k1.timestamp == 10


def test_windowed_keys_come_with_their_window_in_both_forms() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(SENSORS)
    for ts in (100, 900, 1_100):
        eng.produce("ev", {"v": 1.0}, key="s1", timestamp=ts)
    eng.run_until_idle()

    frame = eng.consume("PER_SECOND", as_frame=True)
    assert list(frame.columns[:5]) == ["K", "WINDOWSTART", "WINDOWEND", "N", "TOTAL"]
    assert frame[["K", "WINDOWSTART", "WINDOWEND", "N"]].values.tolist() == [
        ["s1", 0, 1000, 1], ["s1", 0, 1000, 2], ["s1", 1000, 2000, 1]]
    records = eng.consume("PER_SECOND")
    assert [(r.key, r.window, r.window_type, r.value["N"]) for r in records] == [
        ("s1", (0, 1000), "TIME", 1), ("s1", (0, 1000), "TIME", 2), ("s1", (1000, 2000), "TIME", 1)]


def test_tombstones_are_rows_marked_deleted() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute("CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR, level INT) "
                "WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON', PARTITIONS=1);")
    eng.produce("users", {"name": "ann", "level": 3}, key="u1", headers=[("origin", b"test")])
    eng.produce("users", None, key="u1")
    eng.execute("INSERT INTO users (id, name, level) VALUES ('u2', 'bob', 1);")  # a record without headers

    frame = eng.consume("users", as_frame=True)
    assert frame["__deleted"].tolist() == [False, True, False]
    assert frame["NAME"].tolist() == ["ann", pd.NA, "bob"] and frame["LEVEL"].tolist() == [3, pd.NA, 1]
    assert [list(h) for h in frame["__headers"]] == [[{"key": "origin", "value": b"test"}], [], []]
    assert [(r.key, r.value, r.headers) for r in eng.consume("users")] == [
        ("u1", {"name": "ann", "level": 3}, [("origin", b"test")]), ("u1", None, []),  # keys as written
        ("u2", {"NAME": "bob", "LEVEL": 1}, [])]


def test_a_record_that_does_not_decode() -> None:
    """As before, Records hold a value of the wrong shape as it was written and raise the JSON
    parser's error on bytes that are not JSON; a DataFrame, whose columns could not hold either,
    raises a FormatError naming the first such record."""
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute("CREATE STREAM s (k VARCHAR KEY, v INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);")
    eng.produce("s", {"v": 1}, key="a")
    eng.produce("s", "not an object", key="b")
    assert [r.value for r in eng.consume("s")] == [{"v": 1}, "not an object"]
    with pytest.raises(FormatError, match=r"1 record\(s\) of topic 's' do not decode as S; the first, "
                                          r"partition 0 offset 1: .*TextNode"):
        eng.consume("s", as_frame=True)

    not_json = {"partition": 0, "offset": 0, "ts": 3, "key": b"c", "value": b"{oops", "headers": [],
                "win_start": None, "win_end": None, "win_type": None}
    eng.log.append("s", pa.Table.from_pylist([not_json], schema=RECORD_SCHEMA))
    with pytest.raises(json.JSONDecodeError):
        list(eng.consume("s"))  # records are made as they are read


def test_a_topic_without_a_stream_gives_raw_bytes_and_no_frame() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.create_topic("raw", 1)
    eng.produce("raw", "v", key="k", timestamp=5)
    [record] = eng.consume("raw")
    assert (record.key, record.value, record.timestamp) == (b"k", b"v", 5)
    with pytest.raises(LogError, match="needs a stream or table over topic 'raw'"):
        eng.consume("raw", as_frame=True)


def test_the_frame_follows_partition_and_offset_order_from_the_given_offsets() -> None:
    eng = _typed()
    for i in range(6):
        eng.produce("typed", {"I": i}, key=f"k{i}", partition=i % 2, timestamp=100 + i)
    frame = eng.consume("typed", as_frame=True, from_offsets={0: 1})
    positions = list(zip(frame["ROWPARTITION"], frame["ROWOFFSET"], strict=True))
    assert positions == sorted(positions) and positions[0] == (0, 1)
    assert [(r.partition, r.offset) for r in eng.consume("typed", from_offsets={0: 1})] == positions


def test_records_are_a_sequence_made_a_slice_at_a_time_equal_to_the_list_of_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute("CREATE STREAM s (k VARCHAR KEY, n INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);")
    eng.produce_batch("s", pd.DataFrame({"k": [f"k{i}" for i in range(5)], "n": range(5)}), key="k")
    monkeypatch.setattr(Records, "SLICE", 2)
    records = eng.consume("s")
    listed = list(records)
    assert [r.value["N"] for r in listed] == [0, 1, 2, 3, 4] and len(records) == 5
    assert records == listed and records != listed[:4] and records[-1] == listed[4]
    assert records[1:4] == listed[1:4] and records[::2] == listed[::2] and records[::-1] == listed[::-1]
    with pytest.raises(IndexError):
        records[5]
    assert repr(records) == "Records(5 records of topic 's')"


def test_reading_records_one_after_another_never_holds_them_all() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute("CREATE STREAM s (k VARCHAR KEY, n INT, note VARCHAR) "
                "WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);")
    count = 200_000
    eng.produce_batch("s", pd.DataFrame({"k": [f"k{i % 100}" for i in range(count)], "n": range(count),
                                         "note": ["x" * 40] * count}), key="k")
    records = eng.consume("s")
    streamed, total = _peak_bytes(lambda: sum(r.value["N"] for r in records))
    listed, _ = _peak_bytes(lambda: list(records))
    assert total == count * (count - 1) // 2
    assert streamed < listed / 2, f"{streamed / 2**20:.0f} MiB to read them, {listed / 2**20:.0f} MiB to list them"


def _peak_bytes(work: Callable[[], object]) -> tuple[int, object]:
    """The peak of memory Python allocated while ``work`` ran, and its result."""
    tracemalloc.start()
    try:
        result = work()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()
