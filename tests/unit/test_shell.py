"""The command line's shell, one implementation over any connection: scripts, RUN SCRIPT, SET,
push queries to their LIMIT, when a typed statement is complete, and completion."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from nbstream.client import LocalConnection
from nbstream.runtime.service import EngineService
from nbstream.shell import RowPrinter, Shell, StatementCompleter, history_path, is_complete

CREATE = ("CREATE STREAM s (id INT KEY, v VARCHAR) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);\n"
          "INSERT INTO s (id, v) VALUES (1, 'a');\n")


@pytest.fixture
def connection() -> Iterator[LocalConnection]:
    with EngineService() as engine:
        yield LocalConnection(engine)


def run(connection: LocalConnection, script: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = Shell(connection, out, err).run_script(script)
    return status, out.getvalue(), err.getvalue()


def test_run_script_runs_a_files_statements(connection: LocalConnection, tmp_path: Path) -> None:
    (tmp_path / "setup.sql").write_text(CREATE)
    status, out, err = run(connection, f"RUN SCRIPT '{tmp_path / 'setup.sql'}'; SELECT * FROM s;")
    assert (status, err) == (0, "")
    assert out.splitlines() == ["Stream created", "Inserted 1 row", "+----+---+", "| ID | V |", "+----+---+",
                                "| 1  | a |", "+----+---+"]


def test_a_push_query_prints_its_rows_until_its_limit(connection: LocalConnection) -> None:
    status, out, _ = run(connection, CREATE + "SET 'auto.offset.reset' = 'earliest';\n"
                                              "SELECT v FROM s EMIT CHANGES LIMIT 1;")
    assert status == 0
    assert out.splitlines()[-4:] == ["| V            |", "| a            |", "Limit Reached", "Query terminated"]


def test_a_script_stops_at_its_first_error(connection: LocalConnection) -> None:
    status, out, err = run(connection, "SHOW STREAMS; DROP STREAM nowhere; SHOW TABLES;")
    assert status == 1 and err.startswith("error: ") and "NOWHERE" in err
    assert "Table Name" not in out


def test_a_missing_script_is_an_error_naming_it(connection: LocalConnection) -> None:
    status, _, err = run(connection, "RUN SCRIPT '/nowhere.sql';")
    assert status == 1 and "cannot read '/nowhere.sql'" in err


def test_a_deleted_table_row_prints_as_a_tombstone() -> None:
    out = io.StringIO()
    RowPrinter(["K", "N"], out).rows([{"K": "a", "N": 1}, {"K": "a", "N": None}], [False, True])
    assert out.getvalue().splitlines()[1:] == ["| a            | 1            |", "| a            | <TOMBSTONE>  |"]


@pytest.mark.parametrize(("text", "complete"), [
    ("SHOW STREAMS;", True), ("SHOW STREAMS", False), ("SELECT ';' FROM t", False), ("SELECT 'a;", False),
    ("CREATE STREAM s\n  WITH (x=1);  -- done", True), ("", True), ("exit", True), ("quit;", True),
])
def test_a_statement_runs_once_it_ends_with_a_semicolon(text: str, complete: bool) -> None:
    assert is_complete(text) is complete


def test_completion_offers_keywords_and_the_connections_names(connection: LocalConnection) -> None:
    run(connection, CREATE)
    completer = StatementCompleter(connection)

    def offered(text: str) -> dict[str, str]:
        return {c.text: str(c.display_meta_text) for c in completer.get_completions(Document(text), CompleteEvent())}

    found = offered("SELECT * FROM S")
    assert (found["S"], found["SELECT"], found["SUM"]) == ("stream", "keyword", "function")
    assert all(name.startswith("S") for name in found)
    assert offered("select ucas") == {"ucase": "function"}


def test_history_lives_under_the_users_data_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert history_path() == tmp_path / "nbstream" / "history"
