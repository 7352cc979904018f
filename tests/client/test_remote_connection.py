"""A server as a connection: statements, pull and push queries through the one interface the faces
use, and a server's push query feeding subscribers exactly as the engine's own push queries do."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from server.harness import Server, eventually

from nbstream.client import LocalConnection, Statement, connect_server
from nbstream.client.push import RemotePushQuery
from nbstream.client.remote import RemoteConnection, RemoteEngine
from nbstream.errors import ServerStatementError, ServerUnavailable, UnsupportedError
from nbstream.runtime.push import DONE, ERROR, STOPPED, Batches, QueueBatches
from nbstream.runtime.service import EngineService

SCRIPT = """CREATE STREAM pageviews (userid VARCHAR KEY, pageid VARCHAR)
  WITH (KAFKA_TOPIC='pageviews', VALUE_FORMAT='JSON', PARTITIONS=1);
CREATE TABLE views AS SELECT userid, COUNT(*) AS n FROM pageviews GROUP BY userid EMIT CHANGES;
"""


@pytest.fixture(scope="module")
def remote(server: Server) -> Iterator[RemoteConnection]:
    connection = connect_server(server.url)
    for statement in connection.statements(SCRIPT):
        connection.run(statement, {})
    yield connection
    connection.close()


def one(connection: RemoteConnection | LocalConnection, sql: str) -> Statement:
    (statement,) = connection.statements(sql)
    return statement


def insert(connection: RemoteConnection, user: str, page: str) -> None:
    connection.run(one(connection, "INSERT INTO pageviews (userid, pageid) VALUES (:u, :p);"), {"u": user, "p": page})


def server_push_queries(server: Server) -> list[str]:
    return [q["id"] for q in server.ksql("SHOW QUERIES;")[0]["queries"] if q["queryType"] == "PUSH"]


def test_a_statements_answer_is_a_result_as_the_engines_are(remote: RemoteConnection) -> None:
    outcome = remote.run(one(remote, "SHOW TABLES;"), {})
    assert outcome.note is None and outcome.result is not None
    assert outcome.result.columns[0] == "Table Name" and outcome.result.rows[0][0] == "VIEWS"


def test_a_pull_query_with_a_parameter_is_a_dataframe(remote: RemoteConnection) -> None:
    insert(remote, "it's me", "home")
    query = one(remote, "SELECT * FROM views WHERE userid = :who;")
    records = eventually(lambda: remote.pull(query, {"who": "it's me"}).to_dict("records"))
    assert records == [{"USERID": "it's me", "N": 1}]


def test_a_push_query_feeds_subscribers_the_engines_batches_keyed_by_the_tables_key(remote: RemoteConnection) -> None:
    query = remote.push(one(remote, "SELECT * FROM views EMIT CHANGES;"), {})
    assert isinstance(query, RemotePushQuery)
    assert (query.shape.keys, query.shape.is_table, query.columns) == (("USERID",), True, ["USERID", "N"])
    batches = query.subscribe(QueueBatches())
    insert(remote, "u1", "a")
    batch = batches.get(timeout=10)
    assert batch is not None and batch.column_names == ["ROWTIME", "__deleted", "USERID", "N"]
    assert batch.to_pylist()[0] | {"ROWTIME": None} == {"ROWTIME": None, "__deleted": False, "USERID": "u1", "N": 1}
    assert query.column_types() == {"USERID": "STRING", "N": "BIGINT"}
    assert re.match(r"PUSH_\d+ · RUNNING · 1 rows · [\d.]+ rows/s · http://127.0.0.1:\d+$", query.status_line())
    query.stop()
    assert batches.get(timeout=5) is None and batches.ending is not None and batches.ending.state == STOPPED


@pytest.mark.parametrize(("sql", "keys"), [
    ("SELECT userid, COUNT(*) AS c FROM pageviews GROUP BY userid EMIT CHANGES;", ("USERID",)),
    ("SELECT userid AS who, n FROM views EMIT CHANGES;", ("WHO",)),
    ("SELECT n FROM views EMIT CHANGES;", ()),  # the key is not selected: rows are appended
    ("SELECT * FROM pageviews EMIT CHANGES;", ()),  # a stream
])
def test_the_keys_of_a_push_querys_rows_are_read_from_the_query(remote: RemoteConnection, sql: str,
                                                                keys: tuple[str, ...]) -> None:
    query = remote.push(one(remote, sql), {})
    try:
        assert query.shape.keys == keys and query.shape.is_table == bool(keys)
    finally:
        query.stop()


def test_stopping_a_push_query_closes_it_on_the_server(remote: RemoteConnection, server: Server) -> None:
    query = remote.push(one(remote, "SELECT * FROM pageviews EMIT CHANGES;"), {})
    assert query.id in server_push_queries(server)
    query.stop()
    assert query.state == STOPPED and query.closed.wait(10)
    eventually(lambda: query.id not in server_push_queries(server))


def test_a_push_query_ends_done_at_its_limit(remote: RemoteConnection) -> None:
    query = remote.push(one(remote, "SELECT pageid FROM pageviews EMIT CHANGES LIMIT 2;"), {})
    batches = query.subscribe(Batches())
    insert(remote, "u2", "x")
    insert(remote, "u2", "y")
    eventually(lambda: query.state == DONE)
    assert [row["PAGEID"] for batch in batches.take() for row in batch.to_pylist()] == ["x", "y"]
    assert batches.ending is not None and batches.ending.state == DONE


def test_set_properties_go_with_every_request_until_unset(remote: RemoteConnection) -> None:
    insert(remote, "early", "bird")
    remote.run(one(remote, "SET 'auto.offset.reset' = 'earliest';"), {})
    try:
        sql = "SELECT pageid FROM pageviews WHERE userid = 'early' EMIT CHANGES LIMIT 1;"
        query = remote.push(one(remote, sql), {})
        query.subscribe(Batches())
        eventually(lambda: query.state == DONE)
        assert query.rows_seen == 1
    finally:
        remote.run(one(remote, "UNSET 'auto.offset.reset';"), {})
    assert remote.properties == {}


def test_queries_and_stop_on_the_server(remote: RemoteConnection, server: Server) -> None:
    query = remote.push(one(remote, "SELECT * FROM pageviews EMIT CHANGES;"), {})
    frame = remote.queries()
    assert list(frame.columns) == ["id", "type", "state", "sink", "sql"]
    assert {"CTAS_VIEWS_0", query.id} <= set(frame["id"])
    assert remote.stop_queries("all") == [query.id]
    assert "CTAS_VIEWS_0" in remote.queries()["id"].tolist()  # all: this connection's push queries only


def test_completion_names_come_from_the_server(remote: RemoteConnection) -> None:
    names = remote.names()
    assert names["VIEWS"] == "table" and names["PAGEVIEWS"] == "stream"
    assert names["PAGEID"] == "column" and names["COUNT"] == "function"


def test_the_server_going_away_fails_a_push_query_and_its_subscribers(own_server: Server) -> None:
    connection = connect_server(own_server.url)
    try:
        connection.run(one(connection, "CREATE STREAM s (v INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON');"), {})
        query = connection.push(one(connection, "SELECT * FROM s EMIT CHANGES;"), {})
        batches = query.subscribe(QueueBatches())
        own_server.stop()
        assert batches.get(timeout=10) is None
        assert batches.ending is not None and batches.ending.state == ERROR
        assert "The server is shutting down" in (batches.ending.error or "")
        assert query.state == ERROR and query.closed.wait(5)
        with pytest.raises(ServerUnavailable, match=f"cannot reach the server at {own_server.url}"):
            connection.pull(one(connection, "SELECT * FROM s;"), {})
    finally:
        connection.close()


def test_a_failing_statement_names_itself(remote: RemoteConnection) -> None:
    with pytest.raises(ServerStatementError) as raised:
        remote.run(one(remote, "DROP TABLE nowhere;"), {})
    assert raised.value.statement_text == "DROP TABLE nowhere;"


def test_the_remote_engine_runs_what_works_remotely_and_names_what_does_not(remote: RemoteConnection) -> None:
    engine = RemoteEngine(remote)
    assert engine.execute("SHOW STREAMS; SHOW TABLES;")[1].rows[0][0] == "VIEWS"
    assert engine.insert("pageviews", [{"userid": "u9", "pageid": "p"}]) == [{"status": "ok", "seq": 0}]
    for name in ("source", "con", "catalog"):
        with pytest.raises(UnsupportedError, match=f"`{name}` needs the embedded engine.*connected to http://"):
            getattr(engine, name)


def test_the_same_push_query_locally_and_remotely_gives_subscribers_the_same_batches(
        remote: RemoteConnection) -> None:
    """The contract that lets a live view not care where its rows come from."""
    with EngineService() as engine:
        local = LocalConnection(engine)
        for statement in local.statements(SCRIPT):
            local.run(statement, {})
        queries = [c.push(one(c, "SELECT * FROM views EMIT CHANGES;"), {}) for c in (local, remote)]
        subscribers = [q.subscribe(QueueBatches()) for q in queries]
        local.run(one(local, "INSERT INTO pageviews (userid, pageid) VALUES ('same', 'p');"), {})
        insert(remote, "same", "p")
        batches = [s.get(timeout=10) for s in subscribers]
        shapes = [(q.shape.columns, q.shape.keys, q.shape.is_table) for q in queries]
        assert shapes[0] == shapes[1]
        rows = [b.drop_columns(["ROWTIME"]).to_pylist() for b in batches if b is not None]
        assert rows[0] == rows[1] == [{"__deleted": False, "USERID": "same", "N": 1}]
        for query in queries:
            query.stop()
    time.sleep(0)  # the remote query closes in the background
