"""Third-party ksqlDB clients from PyPI, unchanged, against the server: ``ksql-python-ng`` 0.29.0.1
(HTTP/1.1 for ``/info``, ``/ksql``, ``/query`` and ``/close-query``; h2c for ``/query-stream`` and
``/inserts-stream``) and ``ksqldb`` 1.0.1 (h2c for queries and inserts). Neither was written for
nbstream; both take it for ksqlDB."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from harness import Server, eventually

# ksql-python-ng imports telnetlib (deprecated since Python 3.11) and posts close-query with httpx's
# deprecated data=bytes: its warnings, not ours.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def lines(chunks: Iterator[str]) -> list[Any]:
    """The JSON lines of a delimited response, whatever chunks they came in."""
    return [json.loads(line) for line in "".join(chunks).splitlines() if line]


@pytest.fixture(scope="module")
def ksql_ng() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ksql
    return ksql


@pytest.fixture(scope="module")
def client(server: Server, ksql_ng: ModuleType) -> Any:
    return ksql_ng.KSQLAPI(server.url)  # asks GET /info for the version on construction


# -- ksql-python-ng --------------------------------------------------------------------------------------


def test_ksql_python_ng_reads_the_server_version(client: Any) -> None:
    assert client.get_ksql_version() == "0.29.0"


def test_ksql_python_ng_creates_streams_and_tables(client: Any) -> None:
    assert client.create_stream(table_name="pageviews", columns_type=["viewtime bigint", "userid varchar",
                                                                      "pageid varchar"], topic="pageviews")
    assert client.create_table(table_name="users", columns_type=["userid varchar primary key", "name varchar"],
                               topic="users", value_format="JSON", key="userid")
    (status,) = client.ksql("CREATE TABLE views AS SELECT userid, COUNT(*) AS n FROM pageviews GROUP BY userid;")
    assert status["commandStatus"] == {"status": "SUCCESS", "message": "Created query with ID CTAS_VIEWS_0",
                                       "queryId": "CTAS_VIEWS_0"}
    names = {s["name"] for s in client.ksql("SHOW STREAMS;")[0]["streams"]}
    assert "PAGEVIEWS" in names


def test_ksql_python_ng_inserts_and_reads_back_with_pull_queries(client: Any) -> None:
    acks = client.inserts_stream("users", [{"userid": "u1", "name": "ann"}, {"userid": "u2", "name": "bob"}])
    assert acks == [{"status": "ok", "seq": 0}, {"status": "ok", "seq": 1}]

    def over_http1() -> list[str]:
        return list(client.query("SELECT * FROM users WHERE userid = 'u1';"))

    chunks = eventually(lambda: (c := over_http1()) and '"row"' in "".join(c) and c)
    assert json.loads("".join(chunks)) == [
        {"header": {"queryId": json.loads("".join(chunks))[0]["header"]["queryId"],
                    "schema": "`USERID` STRING KEY, `NAME` STRING"}},
        {"row": {"columns": ["u1", "ann"]}}]
    # over h2c, delimited; the lines are split here (its parse=True takes each chunk for one line)
    header, *rows = lines(client.query("SELECT * FROM users;", use_http2=True))
    assert header["columnNames"] == ["USERID", "NAME"] and sorted(rows) == [["u1", "ann"], ["u2", "bob"]]


def test_ksql_python_ng_follows_a_push_query_and_closes_it(client: Any) -> None:
    rows = client.query("SELECT userid, pageid FROM pageviews EMIT CHANGES;", use_http2=True)
    header = json.loads(next(rows))  # the header comes alone, before any row exists
    assert header["columnNames"] == ["USERID", "PAGEID"]
    client.inserts_stream("pageviews", [{"viewtime": 1, "userid": "u1", "pageid": "home"}])
    assert json.loads(next(rows)) == ["u1", "home"]
    assert client.close_query(header["queryId"]) is True
    assert list(rows) == []
    assert client.close_query(header["queryId"]) is False  # it is gone


def test_ksql_python_ng_streams_a_push_query_over_http1_until_its_limit(client: Any) -> None:
    chunks = list(client.query("SELECT pageid FROM pageviews EMIT CHANGES LIMIT 1;",
                               stream_properties={"auto.offset.reset": "earliest"}))
    elements = json.loads("".join(chunks))
    assert elements[1:] == [{"row": {"columns": ["home"]}}, {"finalMessage": "Limit Reached"}]


def test_ksql_python_ng_reads_errors(client: Any, ksql_ng: ModuleType) -> None:
    with pytest.raises(ksql_ng.errors.KSQLError) as error:
        client.ksql("CREATE STREAM broken (a INT) WITH (KAFKA_TOPIC='broken');")
    assert error.value.error_code == 40001 and "VALUE_FORMAT" in error.value.msg
    with pytest.raises(ValueError, match=r"400.*40001.*NOTHING does not exist"):
        list(client.query("SELECT * FROM nothing;"))


# -- ksqldb 1.0.1 ------------------------------------------------------------------------------------------


@pytest.fixture
def ksqldb_client(server: Server) -> Iterator[Any]:
    from ksqldb import KSQLdbClient

    yield KSQLdbClient(server.url)
    gc.collect()  # its queries leave an httpx.AsyncClient each, never closed: let them go now, warnings ignored


#: The ksqldb client opens an httpx.AsyncClient per query and never closes it.
LEAKS = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")


@LEAKS
def test_the_ksqldb_client_runs_statements_inserts_and_pull_queries(ksqldb_client: Any) -> None:
    (created,) = ksqldb_client.ksql("CREATE STREAM clicks (k VARCHAR KEY, v INT) "
                                    "WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON');")
    assert created["commandStatus"]["status"] == "SUCCESS"
    assert ksqldb_client.inserts_stream("clicks", [{"k": "a", "v": 1}, {"k": "b", "v": 2}]) == [
        {"status": "ok", "seq": 0}, {"status": "ok", "seq": 1}]
    header, *rows = ksqldb_client.query_sync("SELECT * FROM clicks;")
    assert (header["columnNames"], header["columnTypes"], rows) == (["K", "V"], ["STRING", "INTEGER"],
                                                                    [["a", 1], ["b", 2]])


@LEAKS
def test_the_ksqldb_client_follows_a_push_query_until_closed(ksqldb_client: Any) -> None:
    async def follow() -> list[Any]:
        received: list[Any] = []
        async for item in ksqldb_client.query_async("SELECT * FROM clicks EMIT CHANGES;", timeout=10,
                                                    stream_properties={"auto.offset.reset": "earliest"}):
            received.append(item)
            if len(received) == 3:
                closed = await asyncio.to_thread(ksqldb_client.close_query, received[0]["queryId"])
                assert closed
        return received

    header, *rows = asyncio.run(follow())
    assert header["queryId"].startswith("PUSH_") and rows == [["a", 1], ["b", 2]]


@LEAKS
def test_both_clients_at_once(client: Any, ksqldb_client: Any) -> None:
    results: list[Iterator[str]] = []

    def ng() -> None:
        results.append(client.query("SELECT k FROM clicks EMIT CHANGES LIMIT 2;", use_http2=True,
                                    stream_properties={"auto.offset.reset": "earliest"}))

    thread = threading.Thread(target=ng)
    thread.start()
    _, *rows = ksqldb_client.query_sync("SELECT k FROM clicks;")
    thread.join()
    assert rows == [["a"], ["b"]]
    assert lines(results[0])[1:] == [["a"], ["b"]]
