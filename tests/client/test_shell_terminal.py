"""``nbstream sql`` as a person uses it: the interactive shell in a real pseudo-terminal (pexpect),
on the embedded engine and against a server (``--server``) — a multi-line CREATE, a pull query's
table, a push query streaming until Ctrl-C stops it (not the shell), history kept across two runs —
and each failure a clear message, the shell still usable."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from server.harness import Server, eventually
from servers import PASSWORD, USER, TlsServer

PROMPT = "ksql>"
CONTINUATION = "   >"
TIMEOUT = 30


class Terminal:
    """``nbstream sql ARGS`` in a pseudo-terminal, its history under ``data``."""

    def __init__(self, data: Path, *args: str, env: dict[str, str] | None = None) -> None:
        environment = {**os.environ, "XDG_DATA_HOME": str(data), "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1",
                       **(env or {})}
        self.child = pexpect.spawn(sys.executable, ["-m", "nbstream", "sql", *args], env=environment,
                                   encoding="utf-8", dimensions=(50, 160), timeout=TIMEOUT)
        self.log: list[str] = []
        self.child.logfile_read = self  # type: ignore[assignment]

    def write(self, text: str) -> None:  # the transcript, for failure messages
        self.log.append(text)

    def flush(self) -> None:
        """pexpect's log file protocol."""

    def expect(self, pattern: str) -> None:
        try:
            self.child.expect_exact(pattern)
        except (pexpect.TIMEOUT, pexpect.EOF):
            raise AssertionError(f"no {pattern!r} in:\n{''.join(self.log)[-3000:]}") from None

    def type(self, line: str) -> None:
        self.child.send(line + "\r")

    def statement(self, *lines: str) -> None:
        """Type a statement line by line (each line after the first at the continuation prompt)."""
        for i, line in enumerate(lines):
            if i:
                self.expect(CONTINUATION)
            self.type(line)

    def exit(self) -> int:
        self.expect(PROMPT)
        self.type("exit")
        self.child.expect(pexpect.EOF)
        self.child.close()
        return int(self.child.exitstatus or 0)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(params=["embedded", "server"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """The shell's arguments: the embedded engine, or a fresh server (``--server URL``)."""
    if request.param == "embedded":
        yield []
        return
    server: Server = request.getfixturevalue("own_server")
    yield ["--server", server.url]


def test_a_session_creates_pulls_streams_until_ctrl_c_and_is_remembered(data: Path, where: list[str]) -> None:
    shell = Terminal(data, *where)
    shell.expect("Statements end with ';'")
    shell.expect(PROMPT)
    shell.statement("CREATE STREAM clicks (user VARCHAR KEY, page VARCHAR)",
                    "  WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON', PARTITIONS=1);")
    shell.expect("Stream created")
    shell.expect(PROMPT)
    shell.statement("CREATE TABLE views AS SELECT user, COUNT(*) AS n",
                    "  FROM clicks GROUP BY user;")
    shell.expect("Created query with ID CTAS_VIEWS_")
    shell.expect(PROMPT)
    shell.type("INSERT INTO clicks (user, page) VALUES ('ann', 'home');")
    shell.expect(PROMPT)
    time.sleep(0.5)  # the persistent query's batch
    shell.type("SELECT * FROM views WHERE user = 'ann';")
    shell.expect("| USER | N |")
    shell.expect("| ann  | 1 |")
    shell.expect(PROMPT)

    shell.type("SET 'auto.offset.reset' = 'earliest';")
    shell.expect(PROMPT)
    shell.type("SELECT page FROM clicks EMIT CHANGES;")
    shell.expect("| PAGE")
    shell.expect("| home")  # the row inserted before, from the earliest offset
    time.sleep(0.5)
    shell.child.sendcontrol("c")
    shell.expect("Query terminated")
    shell.expect(PROMPT)
    shell.type("SHOW STREAMS;")  # the shell goes on
    shell.expect("| CLICKS")
    assert shell.exit() == 0

    history = (data / "nbstream" / "history").read_text()
    assert "+CREATE STREAM clicks (user VARCHAR KEY, page VARCHAR)\n+  WITH (KAFKA_TOPIC" in history

    again = Terminal(data, *where)
    again.expect(PROMPT)
    again.child.send("\x1b[A")  # Up: "exit", the last line of the previous session
    again.expect("exit")
    again.child.send("\x1b[A\r")  # and the statement before it, run again
    again.expect("| CLICKS" if where else "| KSQL_PROCESSING_LOG")
    assert again.exit() == 0


def test_ctrl_c_stops_the_servers_push_query(data: Path, own_server: Server) -> None:
    own_server.ksql("CREATE STREAM s (v INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);")
    shell = Terminal(data, "--server", own_server.url)
    shell.expect(PROMPT)
    shell.type("SELECT * FROM s EMIT CHANGES;")

    def pushes() -> list[str]:
        return [q["id"] for q in own_server.ksql("SHOW QUERIES;")[0]["queries"] if q["queryType"] == "PUSH"]

    eventually(pushes)
    own_server.ksql("INSERT INTO s (v) VALUES (42);")
    shell.expect("| 42")
    shell.child.sendcontrol("c")
    shell.expect("Query terminated")
    eventually(lambda: not pushes())
    assert shell.exit() == 0


def test_tab_completes_the_servers_names(data: Path, own_server: Server) -> None:
    own_server.ksql("CREATE STREAM pageviews (v INT) WITH (KAFKA_TOPIC='p', VALUE_FORMAT='JSON', PARTITIONS=1);")
    shell = Terminal(data, "--server", own_server.url)
    shell.expect(PROMPT)
    shell.child.send("DESCRIBE pagev\t")  # the one name it can be: completed in place
    shell.expect("iews")  # the terminal is sent what changed on the screen
    shell.child.send(";\r")
    shell.expect("| PAGEVIEWS | V     | INTEGER |")  # not "DESCRIBE pagev;": the name was completed
    assert shell.exit() == 0


def test_a_statement_error_is_a_message_and_the_shell_goes_on(data: Path, where: list[str]) -> None:
    shell = Terminal(data, *where)
    shell.expect(PROMPT)
    shell.type("SELECT * FROM nowhere;")
    shell.expect("error: ")
    shell.expect("NOWHERE")
    shell.expect(PROMPT)
    shell.type("SHOW TABLES;")
    shell.expect("Table Name")
    assert shell.exit() == 0


def test_the_server_going_away_during_a_push_query_is_a_message_at_the_prompt(data: Path,
                                                                              own_server: Server) -> None:
    own_server.ksql("CREATE STREAM s (v INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);")
    shell = Terminal(data, "--server", own_server.url)
    shell.expect(PROMPT)
    shell.type("SELECT * FROM s EMIT CHANGES;")
    time.sleep(1)
    own_server.stop()
    shell.expect(f"error: PUSH_0 failed: {own_server.url}: The server is shutting down (error 50303)")
    shell.expect(PROMPT)
    shell.type("SHOW STREAMS;")
    shell.expect(f"error: cannot reach the server at {own_server.url}")
    assert shell.exit() == 0


# -- the command line, not interactive ----------------------------------------------------------------


def nbstream_sql(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nbstream", "sql", *args], input=stdin, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_scripts_and_inline_statements_run_against_a_server(own_server: Server, tmp_path: Path) -> None:
    script = tmp_path / "setup.sql"
    script.write_text("CREATE STREAM s (id INT KEY, v VARCHAR) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', "
                      "PARTITIONS=1);\nINSERT INTO s (id, v) VALUES (1, 'a');\n")
    created = nbstream_sql("--server", own_server.url, str(script))
    assert created.returncode == 0 and "Stream created" in created.stdout
    shown = nbstream_sql("--server", own_server.url, "-e",
                         "SET 'auto.offset.reset' = 'earliest'; SELECT * FROM s EMIT CHANGES LIMIT 1;")
    assert shown.returncode == 0, shown.stderr
    assert "| 1            | a            |" in shown.stdout and "Limit Reached" in shown.stdout
    piped = nbstream_sql("--server", own_server.url, stdin="SHOW STREAMS;")
    assert piped.returncode == 0 and "| S " in piped.stdout


def test_a_server_that_cannot_be_reached_is_one_line_and_status_1() -> None:
    reply = nbstream_sql("--server", "http://127.0.0.1:9", "-e", "SHOW STREAMS;")
    assert (reply.returncode, reply.stderr) == (
        1, "error: cannot reach the server at http://127.0.0.1:9: [Errno 111] Connection refused\n")


def test_a_wrong_password_is_one_line_and_status_1(guarded: Server) -> None:
    reply = nbstream_sql("--server", guarded.url, "--user", USER, "--password", "env:KSQL_PASSWORD", "-e",
                         "SHOW STREAMS;", env={"KSQL_PASSWORD": "guess"})
    assert (reply.returncode, reply.stderr) == (
        1, f"error: Unauthorized: {guarded.url} refused the user name and password (error 40100)\n")
    right = nbstream_sql("--server", guarded.url, "--user", USER, "--password", "env:KSQL_PASSWORD", "-e",
                         "SHOW STREAMS;", env={"KSQL_PASSWORD": PASSWORD})
    assert right.returncode == 0, right.stderr


def test_tls_with_the_wrong_ca_is_one_line_and_status_1(tls: TlsServer) -> None:
    reply = nbstream_sql("--server", tls.url, "--ca-file", str(tls.other_ca), "-e", "SHOW STREAMS;")
    assert reply.returncode == 1 and reply.stderr.startswith(f"error: TLS with {tls.url} failed: ")
    assert "CERTIFICATE_VERIFY_FAILED" in reply.stderr
    assert nbstream_sql("--server", tls.url, "--ca-file", str(tls.ca_file), "-e", "SHOW STREAMS;").returncode == 0


def test_a_password_is_asked_for_on_a_terminal(data: Path, guarded: Server) -> None:
    shell = Terminal(data, "--server", guarded.url, "--user", USER)
    shell.expect(f"Password for {USER}:")
    shell.child.sendline(PASSWORD)
    shell.expect(f"nbstream sql — {guarded.url} (ksqlDB 0.29.0, RUNNING)")
    assert shell.exit() == 0
