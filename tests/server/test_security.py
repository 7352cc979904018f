"""Who may talk to the server and what a request may touch: loopback by default, HTTP Basic against a
users file, TLS, and files only under ``--files-root``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import Server, eventually, running_server, start_server

from nbstream.server.auth import Users, hash_password, verify


def users_file(tmp_path: Path, name: str = "alice", password: str = "s3cret") -> Path:
    """A users file made with the documented tool: ``nbstream serve --hash-password NAME``."""
    made = subprocess.run([sys.executable, "-m", "nbstream", "serve", "--hash-password", name],
                          input=password + "\n", capture_output=True, text=True, check=True, timeout=60)
    path = tmp_path / "users"
    path.write_text("# nbstream serve users\n" + made.stdout)
    return path


# -- the users file --------------------------------------------------------------------------------------


def test_a_password_hash_is_salted_and_checks_only_its_password() -> None:
    first, second = hash_password("pw"), hash_password("pw")
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert verify("pw", first) and not verify("pW", first) and not verify("pw", "scrypt$bad")


def test_a_request_is_let_in_by_its_basic_credentials(tmp_path: Path) -> None:
    users = Users.load(users_file(tmp_path))
    assert users.check(httpx.BasicAuth("alice", "s3cret")._auth_header) == "alice"
    assert users.check(httpx.BasicAuth("alice", "wrong")._auth_header) is None
    assert users.check(httpx.BasicAuth("bob", "s3cret")._auth_header) is None
    assert users.check("Bearer abc") is None and users.check("Basic !!!") is None and users.check(None) is None


def test_a_malformed_users_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "users"
    bad.write_text("alice:plaintext\n")
    reply = subprocess.run([sys.executable, "-m", "nbstream", "serve", "--listen", "127.0.0.1:0", "--auth", str(bad)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert reply.returncode == 2 and "line 1: expected name:scrypt$n$r$p$salt$key" in reply.stderr


# -- a server with --auth ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("guarded")
    server = start_server(folder / "logs", "--auth", str(users_file(folder)), auth=("alice", "s3cret"))
    yield server
    server.stop()


def test_every_endpoint_but_the_probes_wants_credentials(guarded: Server) -> None:
    anonymous = Server(guarded.process, guarded.host, guarded.port, guarded.log)  # the same server, no credentials
    for method, path in [("GET", "/info"), ("POST", "/ksql"), ("GET", "/metrics"), ("POST", "/query-stream")]:
        reply = anonymous.request(method, path, {"ksql": "SHOW STREAMS;"})
        assert reply.status == 401 and reply.headers["www-authenticate"] == 'Basic realm="nbstream"'
        assert reply.json() == {"@type": "generic_error", "error_code": 40100, "message": "Unauthorized"}
    for probe in ("/chc/live", "/chc/ready"):
        assert anonymous.request("GET", probe).status == 200
    wrong = Server(guarded.process, guarded.host, guarded.port, guarded.log, auth=("alice", "guess"))
    assert wrong.request("GET", "/info").status == 401


def test_the_right_credentials_let_a_client_in(guarded: Server) -> None:
    assert guarded.request("GET", "/info").status == 200
    assert guarded.ksql("SHOW STREAMS;")[0]["@type"] == "streams"
    with guarded.h2() as client:
        assert client.post("/query-stream", json={"sql": "SELECT * FROM KSQL_PROCESSING_LOG;"}).status_code == 200


def test_ksql_python_ng_sends_its_api_key_and_secret_as_basic_credentials(guarded: Server) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its telnetlib import
        from ksql import KSQLAPI
    client = KSQLAPI(guarded.url, api_key="alice", secret="s3cret")
    assert client.ksql("SHOW TABLES;")[0]["@type"] == "tables"


# -- where it listens --------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0"])
def test_a_non_loopback_address_needs_auth_or_insecure(address: str) -> None:
    refused = subprocess.run([sys.executable, "-m", "nbstream", "serve", "--listen", address],
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2
    assert "is not a loopback address: pass --auth FILE (or --insecure to serve without)" in refused.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
def test_tls_serves_both_http_versions(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    server = start_server(tmp_path / "logs", "--tls-cert", str(cert), "--tls-key", str(key), ready=False)
    try:
        url = f"https://127.0.0.1:{server.port}"
        assert f"listening on {url}" in server.output()
        with httpx.Client(verify=str(cert), http2=True) as h2, httpx.Client(verify=str(cert)) as h1:
            eventually(lambda: h1.get(f"{url}/chc/ready").status_code == 200, timeout=30)
            reply = h2.get(f"{url}/info")
            assert (reply.http_version, reply.json()["KsqlServerInfo"]["version"]) == ("HTTP/2", "0.29.0")
            assert h1.get(f"{url}/info").http_version == "HTTP/1.1"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/info")  # not our certificate authority
    finally:
        server.stop()


# -- files -------------------------------------------------------------------------------------------------

FILE_SOURCE = ("CREATE SOURCE CONNECTOR {name} WITH ('connector.class'='file', 'kafka.topic'='{name}', "
               "'path'='{path}', 'format'='jsonl');")


def test_without_a_files_root_no_connector_may_touch_a_file(server: Server, tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text('{"a": 1}\n')
    reply = server.request("POST", "/ksql", {"ksql": FILE_SOURCE.format(name="files_in", path=data)})
    assert reply.status == 403
    error = reply.json()
    assert (error["@type"], error["error_code"]) == ("statement_error", 40300)
    assert "start it with --files-root DIR" in error["message"]
    sink = ("CREATE SINK CONNECTOR out WITH ('connector.class'='parquet', 'topics'='KSQL_PROCESSING_LOG', "
            f"'path'='{tmp_path}');")
    assert server.request("POST", "/ksql", {"ksql": sink}).status == 403
    datagen = ("CREATE SOURCE CONNECTOR gen WITH ('connector.class'='datagen', 'kafka.topic'='gen', "
               "'quickstart'='pageviews', 'iterations'=3);")
    assert server.ksql(datagen)[0]["@type"] == "connector_info"


def test_a_files_root_confines_connectors_to_it(logs: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "in").mkdir(parents=True)
    (root / "in" / "a.jsonl").write_text('{"user": "ann"}\n{"user": "bob"}\n')
    outside = tmp_path / "secret.jsonl"
    outside.write_text('{"user": "mallory"}\n')
    (root / "link.jsonl").symlink_to(outside)
    with running_server(logs, "--files-root", str(root)) as server:
        for path in (outside, root / ".." / "secret.jsonl", root / "link.jsonl", f"{root}/in/../../*.jsonl", "/etc"):
            reply = server.request("POST", "/ksql", {"ksql": FILE_SOURCE.format(name="escape", path=path)})
            assert (reply.status, reply.json()["error_code"]) == (403, 40300), path
        server.ksql(FILE_SOURCE.format(name="inside", path=root / "in" / "*.jsonl"))
        server.ksql("CREATE STREAM inside WITH (KAFKA_TOPIC='inside', VALUE_FORMAT='JSON');")
        time.sleep(0.2)

        def users() -> list[str]:
            body = server.request("POST", "/query-stream", {"sql": "SELECT user FROM inside;"}).body
            return sorted(line.strip('[]"') for line in body.decode().splitlines()[1:])

        assert eventually(users) == ["ann", "bob"]
