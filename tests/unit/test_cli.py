"""``nbstream sql``: statements in, tables out, like ksqlDB's CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbstream.cli import main

EXAMPLE = Path(__file__).parents[2] / "examples" / "quickstart.sql"


def test_the_quickstart_script_prints_tables_and_streams_push_rows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "Created query with ID CSAS_HOME_VIEWS_0" in out
    assert "| HOME_VIEWS " in out and "| PAGEVIEWS " in out  # SHOW STREAMS
    assert "HOME_1" in out and "HOME_2" in out and "ABOUT" not in out  # the push query's two rows


def test_inline_statements_and_a_durable_state_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create = "CREATE STREAM s (id INT KEY, v VARCHAR) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON');"
    assert main(["sql", "--state", str(tmp_path), "-e", create + " INSERT INTO s (id, v) VALUES (1, 'a');"]) == 0
    capsys.readouterr()
    assert main(["sql", "--state", str(tmp_path), "-e", "SELECT * FROM s;"]) == 0
    assert "| 1  | a |" in capsys.readouterr().out


def test_an_error_is_a_message_and_exit_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "-e", "SELECT * FROM nowhere;"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "NOWHERE" in err and "Traceback" not in err
