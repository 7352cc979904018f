"""A text datetime compared with ROWTIME, WINDOWSTART or WINDOWEND is the instant it names, as in ksqlDB."""

from __future__ import annotations

import datetime as dt

import pytest

from nbstream import Engine
from nbstream.errors import SqlTypeError
from nbstream.physical.time_literals import parse_partial_timestamp, rewrite_time_literals
from nbstream.sql import parse_expression


def millis(iso: str) -> int:
    """Epoch millis of a complete ISO-8601 datetime, by the standard library."""
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)


@pytest.mark.parametrize(("text", "iso"), [
    ("2020-02-23T23:45:12.000", "2020-02-23T23:45:12+00:00"),
    ("2020-02-23T22:45:12.000-0100", "2020-02-23T23:45:12+00:00"),
    ("2020-02-23T23:45:12.000+0200", "2020-02-23T21:45:12+00:00"),
    ("2020-02-23T23:45:12Z", "2020-02-23T23:45:12+00:00"),
    ("2020-02-23T23:45:12.5", "2020-02-23T23:45:12.500+00:00"),
    ("2020-02-22T23:45", "2020-02-22T23:45:00+00:00"),
    ("2020-02-22T23", "2020-02-22T23:00:00+00:00"),
    ("2020-02-22", "2020-02-22T00:00:00+00:00"),
    ("2020-02", "2020-02-01T00:00:00+00:00"),
    ("2020", "2020-01-01T00:00:00+00:00"),
    ("2020-02-24T24", "2020-02-25T00:00:00+00:00"),  # Java's SMART resolver: 24:00 is the next midnight
    ("2019-02-30", "2019-02-28T00:00:00+00:00"),  # ... and a day past the month's end is its last
    ("1969-12-31T23:59:59.999", "1969-12-31T23:59:59.999+00:00"),
])
def test_a_partial_datetime_fills_what_it_leaves_out_and_defaults_to_utc(text: str, iso: str) -> None:
    assert parse_partial_timestamp(text) == millis(iso)


@pytest.mark.parametrize("text", ["yesterday", "2020-13-01", "2020-02-23T25", "2020-02-23T10:00+zz"])
def test_text_that_is_no_datetime_is_an_error_naming_it(text: str) -> None:
    with pytest.raises(SqlTypeError, match=f"Failed to parse timestamp '{text.replace('+', '[+]')}'"):
        parse_partial_timestamp(text)


def test_only_comparisons_with_an_unqualified_time_column_are_rewritten() -> None:
    rewritten = rewrite_time_literals(parse_expression(
        "ROWTIME >= '2020' AND '2021' > WindowEnd AND WINDOWSTART BETWEEN '2020' AND '2020-02' "
        "AND S.ROWTIME = '2020' AND NAME = '2020' AND ROWTIME = 5"))
    text = rewritten.sql()
    assert f"ROWTIME >= {millis('2020-01-01T00:00:00+00:00')}" in text
    assert f"{millis('2021-01-01T00:00:00+00:00')} > WINDOWEND" in text
    assert f"BETWEEN {millis('2020-01-01T00:00:00+00:00')} AND {millis('2020-02-01T00:00:00+00:00')}" in text
    assert "S.ROWTIME = '2020'" in text and "NAME = '2020'" in text and "ROWTIME = 5" in text


def test_a_persistent_query_filters_rowtime_with_text_datetimes() -> None:
    engine = Engine()
    engine.execute("CREATE STREAM clicks (id INT KEY, page STRING) WITH (kafka_topic='clicks', value_format='JSON', "
                   "partitions=1);")
    engine.execute("CREATE STREAM february AS SELECT * FROM clicks "
                   "WHERE ROWTIME BETWEEN '2020-02' AND '2020-02-29T23:59:59.999' AND ROWTIME <> '2020-02-10';")
    for iso in ("2020-01-31T23:59:59.999", "2020-02-01", "2020-02-10", "2020-02-29T12:00", "2020-03-01"):
        engine.produce("clicks", {"page": iso}, key=1, timestamp=millis(iso + "+00:00" if "T" in iso else
                                                                          iso + "T00:00:00+00:00"))
    engine.run_until_idle()
    assert [record.value["PAGE"] for record in engine.consume("FEBRUARY")] == ["2020-02-01", "2020-02-29T12:00"]
