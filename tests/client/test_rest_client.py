"""The REST client against a real ``nbstream serve`` on loopback: every endpoint it calls, the
server's errors as nbstream's error classes with the server's message and statement, credentials,
TLS, and a server that cannot be reached or goes away in the middle of a push query."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Iterator

import pytest
from server.harness import Server, eventually
from servers import PASSWORD, USER, TlsServer

from nbstream.client.rest import Credentials, KsqlClient
from nbstream.client.rows import End, Header, Row
from nbstream.errors import ServerAuthError, ServerError, ServerStatementError, ServerUnavailable

CREATE = ("CREATE STREAM clicks (user VARCHAR KEY, page VARCHAR) WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON', "
          "PARTITIONS=1); CREATE TABLE views AS SELECT user, COUNT(*) AS n FROM clicks GROUP BY user;")


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[KsqlClient]:
    client = KsqlClient(server.url)
    client.ksql(CREATE)
    yield client
    client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_info_is_the_servers_version_and_status(client: KsqlClient) -> None:
    info = client.info()
    assert (info["version"], info["serverStatus"]) == ("0.29.0", "RUNNING")


def test_statements_answer_one_entity_each(client: KsqlClient) -> None:
    entities = client.ksql("SHOW STREAMS; DESCRIBE views;")
    assert [e["@type"] for e in entities] == ["streams", "sourceDescription"]


def test_a_failing_statement_is_a_statement_error_with_the_servers_message_and_statement(client: KsqlClient) -> None:
    with pytest.raises(ServerStatementError) as raised:
        client.ksql("SHOW STREAMS; DROP STREAM nowhere;")
    error = raised.value
    assert (error.error_code, error.statement_text) == (40001, "DROP STREAM nowhere;")
    assert "NOWHERE" in error.message and [e["@type"] for e in error.entities] == ["streams"]
    assert str(error).endswith("Statement: DROP STREAM nowhere;") and isinstance(error, ValueError)


def test_a_query_sent_as_a_statement_is_refused_with_40002(client: KsqlClient) -> None:
    with pytest.raises(ServerStatementError) as raised:
        client.ksql("SELECT * FROM views;")
    assert raised.value.error_code == 40002


def test_inserts_are_acknowledged_and_read_back_by_a_pull_query(client: KsqlClient) -> None:
    acks = client.insert("clicks", [{"user": "ann", "page": "home"}, {"user": "ann", "page": "cart"}])
    assert acks == [{"status": "ok", "seq": 0}, {"status": "ok", "seq": 1}]

    def ann() -> list[Row]:
        header, rows = client.query("SELECT * FROM views WHERE user = 'ann';")
        assert header.columns == ("USER", "N") and header.keys == ("USER",)
        return [row for row in rows if row.values == ["ann", 2]]

    assert eventually(ann)


def test_an_insert_the_server_refuses_raises_its_error(client: KsqlClient) -> None:
    with pytest.raises(ServerStatementError, match="NOWHERE"):
        client.insert("nowhere", [{"a": 1}])


def test_a_push_query_streams_rows_as_they_come_until_it_is_closed(client: KsqlClient) -> None:
    stream = client.open_stream("SELECT user, page FROM clicks EMIT CHANGES;")
    assert stream.header == Header(stream.header.query_id, ("USER", "PAGE"), ("STRING", "STRING"))
    events = iter(stream)
    client.insert("clicks", [{"user": "bob", "page": "home"}])
    assert next(events) == Row(["bob", "home"])
    client.close_query(stream.header.query_id)
    assert list(events) == [End("Query Completed")]
    stream.close()


def test_a_push_query_ends_at_its_limit_and_takes_properties(client: KsqlClient) -> None:
    client.insert("clicks", [{"user": "cy", "page": "a"}, {"user": "cy", "page": "b"}])
    with client.stream("SELECT page FROM clicks WHERE user = 'cy' EMIT CHANGES LIMIT 2;",
                       {"auto.offset.reset": "earliest"}) as stream:
        assert list(stream) == [Row(["a"]), Row(["b"]), End("Limit Reached")]


def test_closing_an_unknown_query_is_the_servers_error(client: KsqlClient) -> None:
    with pytest.raises(ServerStatementError, match="No query with id PUSH_404"):
        client.close_query("PUSH_404")


def test_a_server_that_cannot_be_reached_is_unavailable_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with KsqlClient(url, timeout=5) as client, pytest.raises(ServerUnavailable,
                                                             match=f"cannot reach the server at {url}"):
        client.info()


def test_a_url_that_is_no_server_url_is_refused() -> None:
    with pytest.raises(ServerStatementError, match="not a server URL"):
        KsqlClient("kafka://localhost:9092")
    assert KsqlClient("http://localhost").url == "http://localhost:8088"


# -- credentials ------------------------------------------------------------------------------------------


def test_the_right_credentials_let_the_client_in(guarded: Server) -> None:
    with KsqlClient(guarded.url, credentials=Credentials(USER, PASSWORD)) as client:
        assert client.info()["version"] == "0.29.0"
        assert client.ksql("SHOW STREAMS;")[0]["@type"] == "streams"


@pytest.mark.parametrize("credentials", [None, Credentials(USER, "guess"), Credentials("mallory", PASSWORD)])
def test_missing_or_wrong_credentials_are_an_auth_error(guarded: Server, credentials: Credentials | None) -> None:
    with KsqlClient(guarded.url, credentials=credentials) as client, \
            pytest.raises(ServerAuthError, match=f"{guarded.url} refused the user name and password") as raised:
        client.info()
    assert raised.value.error_code == 40100 and isinstance(raised.value, PermissionError)


# -- TLS ----------------------------------------------------------------------------------------------------


def test_tls_verified_by_the_ca_file_speaks_http2(tls: TlsServer) -> None:
    with KsqlClient(tls.url, ca_file=str(tls.ca_file)) as client:
        assert client.query("SELECT * FROM KSQL_PROCESSING_LOG;")[0].columns[0] == "LOGGER"


@pytest.mark.parametrize("ca", ["other", "system"])
def test_a_certificate_the_ca_did_not_sign_fails_tls_with_a_clear_message(tls: TlsServer, ca: str) -> None:
    failed = r"TLS with https://127.0.0.1:\d+ failed: .*CERTIFICATE_VERIFY_FAILED"
    with KsqlClient(tls.url, ca_file=str(tls.other_ca) if ca == "other" else None, timeout=5) as client, \
            pytest.raises(ServerUnavailable, match=failed):
        client.info()


def test_a_ca_file_that_cannot_be_read_is_named() -> None:
    with pytest.raises(ServerUnavailable, match=r"cannot use the CA file /nowhere/ca\.pem"):
        KsqlClient("https://127.0.0.1:1", ca_file="/nowhere/ca.pem")


# -- a server that goes away ------------------------------------------------------------------------------


def push_until_gone(server: Server, end: signal.Signals) -> ServerError:
    """The error a push query's reader gets when the server is sent ``end``."""
    with KsqlClient(server.url) as client:
        client.ksql("CREATE STREAM s (v INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);")
        with client.stream("SELECT * FROM s EMIT CHANGES;") as stream, pytest.raises(ServerError) as raised:
            threading.Timer(0.5, server.signal, (end,)).start()
            list(stream)
    return raised.value


def test_a_server_shutting_down_ends_a_push_query_with_its_message(own_server: Server) -> None:
    error = push_until_gone(own_server, signal.SIGTERM)
    assert isinstance(error, ServerUnavailable) and error.error_code == 50303
    assert str(error) == f"{own_server.url}: The server is shutting down (error 50303)"


def test_a_server_killed_during_a_push_query_is_a_lost_connection(own_server: Server) -> None:
    error = push_until_gone(own_server, signal.SIGKILL)
    assert isinstance(error, ServerUnavailable)
    assert own_server.url in str(error)
