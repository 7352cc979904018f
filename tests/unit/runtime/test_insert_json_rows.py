"""JSON rows appended to a stream or table (what ksqlDB's ``/inserts-stream`` takes): matched to the
columns by ksqlDB's JSON rules, temporal and BYTES values as the REST API writes them, stopped at
the first row that does not decode."""

from __future__ import annotations

from decimal import Decimal

import pytest

from nbstream.errors import BindError
from nbstream.runtime.service import EngineService

EVENTS = """CREATE STREAM events (id VARCHAR KEY, n INT, amount DECIMAL(4, 2), at TIMESTAMP, raw BYTES,
  tags MAP<STRING, INT>) WITH (KAFKA_TOPIC='events', VALUE_FORMAT='JSON');"""


@pytest.fixture
def engine() -> EngineService:
    service = EngineService()
    service.execute(EVENTS)
    return service


def test_rows_are_matched_to_columns_and_coerced(engine: EngineService) -> None:
    done = engine.insert_json_rows("events", [
        b'{"id": "a", "n": 1, "amount": 1.5, "at": "2021-01-02T03:04:05.678", "raw": "IQ==", "tags": {"x": 1}}',
        b'{"ID": "b", "N": "2"}',
    ])
    assert (done.count, done.failed) == (2, None)
    records = engine.consume("events")
    assert [r.key for r in records] == ["a", "b"]
    assert records[0].value == {"N": 1, "AMOUNT": Decimal("1.50"), "AT": 1609556645678, "RAW": b"!",
                                "TAGS": {"x": 1}}
    assert records[1].value == {"N": 2, "AMOUNT": None, "AT": None, "RAW": None, "TAGS": None}


def test_the_rows_before_the_first_bad_one_are_appended(engine: EngineService) -> None:
    done = engine.insert_json_rows("EVENTS", [b'{"id": "a"}', b'{"id": "b", "at": "soon"}', b'{"id": "c"}'])
    assert done.count == 1 and done.failed is not None
    assert done.failed == (1, "Can't convert the string of column AT to TIMESTAMP: soon")
    assert [r.key for r in engine.consume("events")] == ["a"]


@pytest.mark.parametrize("row", [b"not json", b"[1, 2]", b'{"n": "many"}'])
def test_a_row_that_is_not_an_object_of_the_columns_is_refused(engine: EngineService, row: bytes) -> None:
    assert engine.insert_json_rows("events", [row]).failed is not None
    assert engine.consume("events") == []


def test_the_target_is_named_as_in_ksqldb(engine: EngineService) -> None:
    with pytest.raises(BindError, match="unknown stream/table: events"):
        engine.insert_json_rows("`events`", [b"{}"])
    with pytest.raises(BindError, match="read-only topic: KSQL_PROCESSING_LOG"):
        engine.insert_json_rows("ksql_processing_log", [b"{}"])
