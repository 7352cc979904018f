"""SHOW TOPICS [EXTENDED] and PRINT on the embedded log: ksqlDB's syntax and output."""

from __future__ import annotations

import dataclasses
import io
import struct
from collections.abc import Iterator

import pandas as pd
import pytest

from nbstream import Engine
from nbstream.cli import run_script
from nbstream.errors import LogError
from nbstream.runtime import topics
from nbstream.runtime.service import EngineService
from nbstream.runtime.topics import NO_DATA, FormatGuess, TopicPrinter, format_rowtime, formats_of, render_bytes
from nbstream.sql import ast, parse

T0 = 1_700_000_000_000  # 2023/11/14 22:13:20.000 Z
CREATE = ("CREATE STREAM views (user VARCHAR KEY, page VARCHAR) "
          "WITH (KAFKA_TOPIC='views', VALUE_FORMAT='JSON', PARTITIONS=2);")


@pytest.fixture
def engine() -> Iterator[Engine]:
    with Engine() as eng:
        eng.execute(CREATE)
        for i in range(5):
            eng.produce("views", {"PAGE": f"p{i}"}, key=f"u{i}", timestamp=T0 + i)
        yield eng


# -- parsing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("sql", "expected"), [
    ("SHOW TOPICS", ast.Show("TOPICS")),
    ("SHOW TOPICS EXTENDED", ast.Show("TOPICS", extended=True)),
    ("LIST TOPICS EXTENDED", ast.Show("TOPICS", extended=True)),
    ("PRINT views LIMIT 3", ast.PrintTopic("VIEWS", limit=3)),
    ("PRINT 'views' FROM BEGINNING INTERVAL 2", ast.PrintTopic("views", True, 2)),
    ("PRINT `views` FROM BEGINNING SAMPLE 2 LIMIT 1", ast.PrintTopic("views", True, 2, 1)),
])
def test_show_topics_and_print_parse_as_ksqldb_writes_them(sql: str, expected: ast.Statement) -> None:
    [statement] = parse(sql)
    assert statement == dataclasses.replace(expected, text=sql, span=statement.span)


# -- SHOW TOPICS -------------------------------------------------------------------------------------
def test_show_topics_lists_partitions_and_replicas(engine: Engine) -> None:
    [result] = engine.execute("SHOW TOPICS")
    assert result.columns == ("Kafka Topic", "Partitions", "Partition Replicas")
    assert ("views", 2, 1) in result.rows


def test_show_topics_extended_counts_the_queries_reading_each_topic(engine: Engine) -> None:
    engine.execute("CREATE STREAM home AS SELECT * FROM views WHERE page = 'p0';"
                   "CREATE STREAM other AS SELECT * FROM views WHERE page <> 'p0';")
    [result] = engine.execute("SHOW TOPICS EXTENDED")
    assert result.columns[-2:] == ("Consumers", "ConsumerGroups")
    rows = {row[0]: row[1:] for row in result.rows}
    assert rows["views"] == (2, 1, 2, 2)
    assert rows["HOME"] == (2, 1, 0, 0)
    engine.execute("TERMINATE CSAS_HOME_0;")
    [result] = engine.execute("SHOW TOPICS EXTENDED")
    assert {row[0]: row[1:] for row in result.rows}["views"] == (2, 1, 1, 1)


# -- PRINT -------------------------------------------------------------------------------------------
def test_print_from_beginning_with_limit_shows_the_first_records_by_time(engine: Engine) -> None:
    [result] = engine.execute("PRINT views FROM BEGINNING LIMIT 3")
    assert result.columns == ("rowtime", "key", "value", "partition")
    assert [row[:3] for row in result.rows] == [
        ("2023/11/14 22:13:20.000 Z", "u0", '{"PAGE":"p0"}'),
        ("2023/11/14 22:13:20.001 Z", "u1", '{"PAGE":"p1"}'),
        ("2023/11/14 22:13:20.002 Z", "u2", '{"PAGE":"p2"}'),
    ]
    assert result.message == "Key format: KAFKA_STRING\nValue format: JSON or KAFKA_STRING"


def test_print_interval_shows_every_nth_record(engine: Engine) -> None:
    frame = engine.print_topic("PRINT 'views' FROM BEGINNING INTERVAL 2 LIMIT 10")
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["key"]) == ["u0", "u2", "u4"]
    assert list(frame.columns) == ["rowtime", "key", "value", "partition", "offset"]
    assert frame["rowtime"].iloc[0] == pd.Timestamp(T0, unit="ms", tz="UTC")
    assert frame.attrs == {"key_format": "KAFKA_STRING", "value_format": "JSON or KAFKA_STRING"}


def test_print_without_from_beginning_starts_at_the_end(engine: Engine) -> None:
    printer = engine.print_topic("PRINT views")
    assert isinstance(printer, TopicPrinter)
    assert printer.poll() == []
    assert printer.key_format == NO_DATA
    engine.produce("views", {"PAGE": "new"}, key="k", timestamp=T0 + 10)
    [record] = printer.poll()
    assert record.line() == 'rowtime: 2023/11/14 22:13:20.010 Z, key: k, value: {"PAGE":"new"}, partition: 0'
    assert printer.poll() == []


def test_print_iterates_until_its_limit(engine: Engine) -> None:
    printer = engine.print_topic("PRINT views FROM BEGINNING")
    assert isinstance(printer, TopicPrinter)
    printer.limit = 2  # the iteration stops at a limit however it was set
    assert [r.key for r in printer] == ["u0", "u1"]


def test_print_reads_a_long_topic_a_slice_at_a_time(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topics, "POLL_RECORDS", 2)
    printer = engine.print_topic("PRINT views FROM BEGINNING")
    assert isinstance(printer, TopicPrinter)
    assert len(printer.poll()) == 4  # two of each partition
    [result] = engine.execute("PRINT views FROM BEGINNING LIMIT 5")
    assert sorted(row[1] for row in result.rows) == ["u0", "u1", "u2", "u3", "u4"]  # by time within a slice


def test_print_shows_null_keys_and_tombstones(engine: Engine) -> None:
    engine.produce("views", None, key=None, timestamp=T0 + 10)
    [result] = engine.execute("PRINT views FROM BEGINNING INTERVAL 5 LIMIT 2")
    assert [row[1:3] for row in result.rows] == [("u0", '{"PAGE":"p0"}'), (None, None)]


def test_print_finds_an_unquoted_topic_name_whatever_its_case(engine: Engine) -> None:
    [result] = engine.execute("PRINT VIEWS FROM BEGINNING LIMIT 1")
    assert len(result.rows) == 1


def test_print_of_an_unknown_topic_names_the_near_miss(engine: Engine) -> None:
    with pytest.raises(LogError, match=r"topic 'veiws' does not exist.*views"):
        engine.execute("PRINT 'veiws' FROM BEGINNING LIMIT 1")


def test_print_without_limit_in_execute_says_how_to_stream(engine: Engine) -> None:
    with pytest.raises(LogError, match="without LIMIT runs until stopped"):
        engine.execute("PRINT views FROM BEGINNING")


@pytest.mark.parametrize("clause", ["LIMIT 0", "INTERVAL 0 LIMIT 1"])
def test_print_refuses_a_zero_limit_or_interval(engine: Engine, clause: str) -> None:
    with pytest.raises(LogError, match="must be at least 1"):
        engine.execute(f"PRINT views FROM BEGINNING {clause}")


def test_the_cli_prints_the_formats_then_one_line_per_record() -> None:
    out = io.StringIO()
    script = (CREATE + "INSERT INTO views (user, page) VALUES ('u1', 'home');"
              "PRINT views FROM BEGINNING LIMIT 1;")
    with EngineService() as eng:
        assert run_script(eng, script, out) == 0
    lines = out.getvalue().splitlines()
    assert lines[-3:-1] == ["Key format: KAFKA_STRING", "Value format: JSON or KAFKA_STRING"]
    assert lines[-1].startswith("rowtime: ") and ', key: u1, value: {"PAGE":"home"}, partition: ' in lines[-1]


# -- guessing formats and rendering bytes -----------------------------------------------------------------
@pytest.mark.parametrize(("data", "formats"), [
    (b'{"a": 10}', {"JSON", "KAFKA_STRING"}),
    (b"hello world", {"KAFKA_STRING"}),
    (b"1234", {"JSON", "KAFKA_STRING", "KAFKA_INT"}),
    (struct.pack(">i", 7), {"KAFKA_INT"}),
    (struct.pack(">d", 1.5), {"KAFKA_BIGINT", "KAFKA_DOUBLE"}),
    (b"\xff\xfe\x00", set()),
])
def test_formats_are_those_that_could_have_written_the_bytes(data: bytes, formats: set[str]) -> None:
    assert formats_of(data) == formats


def test_a_format_guess_narrows_and_says_mixed_when_nothing_fits() -> None:
    guess = FormatGuess()
    assert guess.describe() == NO_DATA
    guess.see(None)
    assert guess.describe() == NO_DATA
    guess.see(b"1234")
    assert guess.describe() == "JSON or KAFKA_STRING or KAFKA_INT"
    guess.see(b"abc")
    assert guess.describe() == "KAFKA_STRING"
    guess.see(struct.pack(">q", 1))
    assert guess.describe() == "MIXED"


def test_bytes_render_as_text_numbers_or_hex() -> None:
    assert render_bytes(None) is None
    assert render_bytes('{"é": 1}'.encode()) == '{"é": 1}'
    assert render_bytes(struct.pack(">i", -7)) == "-7"
    assert render_bytes(struct.pack(">q", 2**40)) == str(2**40)
    assert render_bytes(b"\x00\x01\x02") == "0x000102"


def test_rowtime_renders_like_ksqldb_in_utc() -> None:
    assert format_rowtime(T0 + 7) == "2023/11/14 22:13:20.007 Z"
