"""The file source connector: JSON-lines and CSV files (a file, a folder, a glob) read once or
tailed into a topic, bad lines to the processing log, and restarts that neither lose nor repeat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbstream import Engine
from nbstream.errors import CatalogError


def file_source(path: Path | str, topic: str = "events", name: str = "files", **extra: str) -> str:
    props = {"connector.class": "file", "kafka.topic": topic, "path": str(path), **extra}
    body = ", ".join(f"'{k}'='{v}'" for k, v in props.items())
    return f"CREATE SOURCE CONNECTOR {name} WITH ({body})"


def write_lines(path: Path, rows: list[dict[str, object]], mode: str = "w") -> None:
    with path.open(mode) as file:
        file.writelines(json.dumps(row) + "\n" for row in rows)


def rows_of(eng: Engine, sql: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in eng.query(sql).itertuples(index=False)]


def processing_log_messages(eng: Engine) -> list[str]:
    return list(eng.query("SELECT MESSAGE->ERRORMESSAGE AS m FROM KSQL_PROCESSING_LOG")["M"])


# -- reading ---------------------------------------------------------------------------------------


def test_json_lines_file_is_read_into_a_topic_and_queried_through_a_column_less_stream(tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    write_lines(data, [{"user": "u1", "amount": 5, "city": {"name": "Oslo"}},
                       {"user": "u2", "amount": 7, "city": {"name": "Rome"}}])
    eng = Engine()
    eng.execute(file_source(data, key="user") + ";"
                "CREATE STREAM events WITH (KAFKA_TOPIC='events', VALUE_FORMAT='JSON')")
    eng.run_until_idle()
    assert eng.execute("DESCRIBE events")[0].rows[1:] == (
        ("EVENTS", "USER", "STRING (key)"), ("EVENTS", "AMOUNT", "BIGINT"), ("EVENTS", "CITY", "STRUCT<`NAME` STRING>"))
    assert rows_of(eng, "SELECT user, amount, city->name AS city FROM events") == [("u1", 5, "Oslo"),
                                                                                   ("u2", 7, "Rome")]
    assert [r.key for r in eng.consume("events")] == ["u1", "u2"]
    assert eng.execute("SHOW CONNECTORS")[0].rows[0][:4] == ("FILES", "SOURCE", "file", "FINISHED")


def test_csv_file_is_read_with_the_types_duckdb_sniffs(tmp_path: Path) -> None:
    data = tmp_path / "prices.csv"
    data.write_text("symbol,price,qty\nAAA,1.5,10\nBBB,2.25,20\n")
    eng = Engine()
    eng.execute(file_source(data, topic="prices") + ";"
                "CREATE STREAM prices WITH (KAFKA_TOPIC='prices', VALUE_FORMAT='JSON');"
                "CREATE STREAM big AS SELECT symbol, price * qty AS total FROM prices WHERE qty > 15")
    eng.run_until_idle()
    assert rows_of(eng, "SELECT * FROM prices") == [("AAA", 1.5, 10), ("BBB", 2.25, 20)]
    assert rows_of(eng, "SELECT * FROM big") == [("BBB", 45.0)]


def test_a_folder_is_read_file_by_file_in_name_order(tmp_path: Path) -> None:
    write_lines(tmp_path / "b.jsonl", [{"n": 3}])
    write_lines(tmp_path / "a.jsonl", [{"n": 1}, {"n": 2}])
    (tmp_path / "notes.txt").write_text("not data\n")
    eng = Engine()
    eng.execute(file_source(tmp_path) + "; CREATE STREAM events WITH (KAFKA_TOPIC='events', VALUE_FORMAT='JSON')")
    eng.run_until_idle()
    assert rows_of(eng, "SELECT n FROM events") == [(1,), (2,), (3,)]


def test_a_glob_names_the_files_and_a_timestamp_column_gives_the_record_times(tmp_path: Path) -> None:
    write_lines(tmp_path / "day1.jsonl", [{"t": 1_700_000_000_000, "n": 1}])
    write_lines(tmp_path / "day2.jsonl", [{"t": 1_700_000_001_000, "n": 2}])
    write_lines(tmp_path / "other.jsonl", [{"t": 5, "n": 99}])
    eng = Engine()
    eng.execute(file_source(tmp_path / "day*.jsonl", timestamp="t"))
    eng.run_until_idle()
    assert [r.timestamp for r in eng.consume("events")] == [1_700_000_000_000, 1_700_000_001_000]


def test_a_csv_timestamp_column_gives_the_record_times(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("at,n\n2023-11-14 22:13:20.123456,1\n2023-11-14 22:13:21,2\n")
    eng = Engine()
    eng.execute(file_source(tmp_path / "a.csv", timestamp="at"))
    eng.run_until_idle()
    assert [r.timestamp for r in eng.consume("events")] == [1_700_000_000_123, 1_700_000_001_000]


# -- tailing ---------------------------------------------------------------------------------------


def test_tail_picks_up_appended_lines_and_new_files_and_waits_for_a_partial_line(tmp_path: Path) -> None:
    write_lines(tmp_path / "001.jsonl", [{"n": 1}])
    eng = Engine()
    eng.execute(file_source(tmp_path, mode="tail") + ";"
                "CREATE STREAM events WITH (KAFKA_TOPIC='events', VALUE_FORMAT='JSON')")
    eng.run_until_idle()
    with (tmp_path / "001.jsonl").open("a") as file:
        file.write('{"n": 2}\n{"n": ')
    eng.run_until_idle()
    assert rows_of(eng, "SELECT n FROM events") == [(1,), (2,)]  # the partial line waits
    with (tmp_path / "001.jsonl").open("a") as file:
        file.write("3}\n")
    write_lines(tmp_path / "002.jsonl", [{"n": 4}])
    eng.run_until_idle()
    assert rows_of(eng, "SELECT n FROM events") == [(1,), (2,), (3,), (4,)]
    assert eng.execute("SHOW CONNECTORS")[0].rows[0][3] == "RUNNING"


def test_tail_of_a_csv_folder_skips_the_header_of_each_new_file_and_waits_for_a_partial_one(
        tmp_path: Path) -> None:
    (tmp_path / "1.csv").write_text("symbol,qty\nAAA,1\n")
    eng = Engine()
    eng.execute(file_source(tmp_path, topic="prices", mode="tail") + ";"
                "CREATE STREAM prices WITH (KAFKA_TOPIC='prices', VALUE_FORMAT='JSON')")
    eng.run_until_idle()
    (tmp_path / "2.csv").write_text("symbol,q")  # being written
    eng.run_until_idle()
    (tmp_path / "2.csv").write_text("symbol,qty\nBBB,2\nCCC,3\n")
    eng.run_until_idle()
    assert rows_of(eng, "SELECT * FROM prices") == [("AAA", 1), ("BBB", 2), ("CCC", 3)]
    assert processing_log_messages(eng) == []


def test_restart_of_a_tailing_source_neither_loses_nor_repeats_lines(tmp_path: Path) -> None:
    data = tmp_path / "in"
    data.mkdir()
    write_lines(data / "a.jsonl", [{"n": 1}, {"n": 2}])
    eng = Engine(tmp_path / "state")
    eng.execute(file_source(data, mode="tail"))
    eng.run_until_idle()
    eng.close()
    write_lines(data / "a.jsonl", [{"n": 3}], mode="a")  # written while the engine was down
    write_lines(data / "b.jsonl", [{"n": 4}])
    eng = Engine(tmp_path / "state")
    eng.run_until_idle()
    assert [json.loads(r.value)["n"] for r in eng.consume("events")] == [1, 2, 3, 4]
    assert dict(eng.execute("DESCRIBE CONNECTOR files")[0].rows)["records produced"] == 4
    eng.close()


# -- bad input -------------------------------------------------------------------------------------


def test_bad_json_lines_go_to_the_processing_log_and_the_connector_carries_on(tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    data.write_text('{"n": 1, "s": "a"}\nnot json\n[1, 2]\n{"n": 4, "s": "d"}\n')
    eng = Engine()
    eng.execute(file_source(data, mode="tail") + ";"
                "CREATE STREAM events WITH (KAFKA_TOPIC='events', VALUE_FORMAT='JSON')")
    eng.run_until_idle()
    write_lines(data, [{"n": "five", "s": "e"}, {"n": 6, "s": "f"}], mode="a")  # a field of the wrong type
    eng.run_until_idle()
    assert rows_of(eng, "SELECT n, s FROM events") == [(1, "a"), (4, "d"), (6, "f")]
    messages = processing_log_messages(eng)
    assert messages == [f"{data} record 2: not valid JSON: not json",
                        f"{data} record 3: not a JSON object: [1, 2]",
                        f"{data} record 5: field n is not a BIGINT"]
    assert eng.execute("SHOW CONNECTORS")[0].rows[0][3] == "RUNNING"


def test_a_csv_row_with_a_bad_field_or_a_wrong_field_count_goes_to_the_processing_log(tmp_path: Path) -> None:
    data = tmp_path / "prices.csv"
    data.write_text("symbol,qty\nAAA,10\nBBB,20\n")
    eng = Engine()
    eng.execute(file_source(data, topic="prices", mode="tail") + ";"
                "CREATE STREAM prices WITH (KAFKA_TOPIC='prices', VALUE_FORMAT='JSON')")
    eng.run_until_idle()
    with data.open("a") as file:
        file.write("CCC,lots\nDDD\nEEE,50\n")
    eng.run_until_idle()
    assert rows_of(eng, "SELECT * FROM prices") == [("AAA", 10), ("BBB", 20), ("EEE", 50)]
    messages = processing_log_messages(eng)
    assert len(messages) == 2
    assert any("a row of 1 fields instead of 2" in m and "DDD" in m for m in messages)
    assert any(m.startswith(f"{data} record 3: field qty is not a BIGINT: lots") for m in messages)


# -- errors ----------------------------------------------------------------------------------------


def test_a_missing_path_or_a_glob_matching_nothing_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"connector FILES: path '.*nowhere' does not exist"):
        Engine().execute(file_source(tmp_path / "nowhere"))
    with pytest.raises(CatalogError, match=r"connector FILES: path '.*\*\.csv' matches no csv file"):
        Engine().execute(file_source(tmp_path / "*.csv"))


def test_a_timestamp_column_must_hold_epoch_milliseconds_or_timestamps(tmp_path: Path) -> None:
    write_lines(tmp_path / "a.jsonl", [{"t": "yesterday", "n": 1}])
    with pytest.raises(CatalogError, match="timestamp column 't' is a STRING: it must hold epoch milliseconds"):
        Engine().execute(file_source(tmp_path / "a.jsonl", timestamp="t"))


def test_an_unknown_format_is_an_error_with_the_near_miss(tmp_path: Path) -> None:
    write_lines(tmp_path / "a.jsonl", [{"n": 1}])
    with pytest.raises(CatalogError, match=r"unknown format 'jsnl' \(known: jsonl, csv\)\. Did you mean `jsonl`\?"):
        Engine().execute(file_source(tmp_path / "a.jsonl", format="jsnl"))


def test_a_format_that_does_not_follow_from_the_file_name_must_be_given(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text('{"n": 1}\n')
    with pytest.raises(CatalogError, match="say 'format'"):
        Engine().execute(file_source(tmp_path / "a.log"))
    eng = Engine()
    eng.execute(file_source(tmp_path / "a.log", format="jsonl"))
    eng.run_until_idle()
    assert len(eng.consume("events")) == 1


def test_an_unknown_key_column_and_an_unknown_property_are_errors(tmp_path: Path) -> None:
    write_lines(tmp_path / "a.jsonl", [{"user": "u", "n": 1}])
    with pytest.raises(CatalogError, match=r"key column 'usr' is not in .* Did you mean `user`\?"):
        Engine().execute(file_source(tmp_path / "a.jsonl", key="usr"))
    with pytest.raises(CatalogError, match=r"unknown file source property 'mod'\. Did you mean `mode`\?"):
        Engine().execute(file_source(tmp_path / "a.jsonl", mod="tail"))


def test_a_table_over_the_topic_needs_the_key_property(tmp_path: Path) -> None:
    write_lines(tmp_path / "a.jsonl", [{"user": "u", "n": 1}])
    eng = Engine()
    eng.execute(file_source(tmp_path / "a.jsonl"))
    with pytest.raises(CatalogError, match="no string key for its PRIMARY KEY"):
        eng.execute("CREATE TABLE t WITH (KAFKA_TOPIC='events', VALUE_FORMAT='JSON')")
