"""A client of ksqlDB's REST API (0.29), as ``nbstream serve`` and a ksqlDB server speak it.

:class:`KsqlClient` calls ``/info``, ``/ksql``, ``/query-stream`` (``/query`` on a server
without it), ``/close-query`` and ``/inserts-stream`` the way ksqlDB's own Java client does:
HTTP/2 for everything (by prior knowledge without TLS — h2c —, by ALPN with it), ``Accept:
application/vnd.ksql.v1+json`` on ``/query-stream`` (rows with their tombstones, a final message,
errors in-band; the delimited and JSON formats are read too, should a server answer in them),
HTTP Basic credentials, TLS verified against a CA file or the system's. Every failure is a
:class:`~nbstream.errors.ServerError`: the server's error JSON mapped by its ``error_code``
(:func:`server_error`), and the transport's failures (refused, TLS, timeout, the connection
dropped mid-response) as :class:`~nbstream.errors.ServerUnavailable` naming the server.

A push query reads its response on a connection of its own (:meth:`KsqlClient.stream`), so that a
query that waits for rows never holds up the requests of others, and closing it is dropping that
connection after ``/close-query``. Other requests share one connection; a request that finds it
dead (the server restarted or went away since) is sent once more on a new one. The client is safe
to use from several threads.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
import orjson

from nbstream.client.rows import DELIMITED, KSQL_V1_JSON, End, Event, Header, Reader, ResponseError, Row, check_header
from nbstream.errors import (
    ServerAuthError,
    ServerError,
    ServerStatementError,
    ServerUnavailable,
)

DEFAULT_PORT = 8088  # ksqlDB's
USER_AGENT = "nbstream"


@dataclass(frozen=True)
class Credentials:
    """HTTP Basic credentials (resolved: the secret itself, kept in memory only)."""

    user: str
    password: str


def server_error(body: Any, status: int | None = None, server: str = "the server") -> ServerError:
    """The :class:`~nbstream.errors.ServerError` subclass for a ksqlDB error object
    (``{"@type": …, "error_code": …, "message": …, "statementText"?: …, "entities"?: […]}``) or
    for an HTTP status without one."""
    body = body if isinstance(body, dict) else {}
    code = body.get("error_code")
    code = int(code) if isinstance(code, int | str) and str(code).isdigit() else (status or 500) * 100
    message = str(body.get("message") or f"HTTP {code // 100}")
    kind: type[ServerError]
    if code // 100 in (401, 403):
        kind = ServerAuthError
        if code // 100 == 401:
            message = f"{message}: {server} refused the user name and password (error {code})"
    elif code // 100 == 503:
        kind = ServerUnavailable
        message = f"{server}: {message} (error {code})"
    elif 400 <= code // 100 < 500:
        kind = ServerStatementError
    else:
        kind = ServerError
    entities = tuple(e for e in body.get("entities") or () if isinstance(e, dict))
    return kind(message, error_code=code, statement_text=body.get("statementText"), entities=entities)


class KsqlClient:
    """A ksqlDB-compatible server at ``url`` (``http(s)://host[:port]``; the port defaults to 8088)."""

    def __init__(self, url: str, *, credentials: Credentials | None = None, ca_file: str | None = None,
                 timeout: float = 30.0) -> None:
        self.url = normalized_url(url)
        self.credentials = credentials
        self.timeout = timeout
        self._verify: ssl.SSLContext | bool = True
        if self.url.startswith("https://"):
            try:
                self._verify = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as error:
                raise ServerUnavailable(f"cannot use the CA file {ca_file}: {error}") from None
        self._lock = threading.Lock()
        self._http = self._connection()

    def _connection(self, read_timeout: float | None = ...) -> httpx.Client:  # type: ignore[assignment]
        auth = None if self.credentials is None else httpx.BasicAuth(self.credentials.user, self.credentials.password)
        read = self.timeout if read_timeout is ... else read_timeout
        return httpx.Client(base_url=self.url, http1=False, http2=True, auth=auth, verify=self._verify,
                            timeout=httpx.Timeout(self.timeout, read=read), trust_env=False,
                            headers={"User-Agent": USER_AGENT})

    # -- requests --------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """``GET /info``: the server's ``KsqlServerInfo`` (``version``, ``serverStatus``, …)."""
        body = self._json(self._call("GET", "/info"))
        info = body.get("KsqlServerInfo") if isinstance(body, dict) else None
        if not isinstance(info, dict):
            raise ServerError(f"{self.url} answered /info without KsqlServerInfo: is it a ksqlDB server?")
        return info

    def ksql(self, sql: str, properties: Mapping[str, Any] | None = None,
             variables: Mapping[str, Any] | None = None, sequence: int | None = None,
             timeout: float | None = None) -> list[dict[str, Any]]:
        """``POST /ksql``: run statements (no queries); one entity per statement that answers one.
        ``sequence`` is the last ``commandSequenceNumber`` seen: a server waits until it ran that
        command before it runs these (so a cluster node sees what this client did before).
        ``timeout`` replaces the client's for this request."""
        body: dict[str, Any] = {"ksql": sql, "streamsProperties": dict(properties or {})}
        if variables:
            body["sessionVariables"] = dict(variables)
        if sequence is not None:
            body["commandSequenceNumber"] = sequence
        entities = self._json(self._send(self._http, "POST", "/ksql", body, timeout=timeout))
        if not isinstance(entities, list):
            raise ServerError(f"{self.url} answered /ksql with {type(entities).__name__}, not a list of entities")
        return [e for e in entities if isinstance(e, dict)]

    def query(self, sql: str, properties: Mapping[str, Any] | None = None) -> tuple[Header, list[Row]]:
        """A pull query on ``/query-stream``: its header and every row."""
        with self.stream(sql, properties, own_connection=False) as response:
            return response.header, [event for event in response if isinstance(event, Row)]

    @contextlib.contextmanager
    def stream(self, sql: str, properties: Mapping[str, Any] | None = None, *,
               own_connection: bool = True) -> Iterator[QueryStream]:
        """A query's response as it comes (``/query-stream``), closed when the block ends."""
        response = self.open_stream(sql, properties, own_connection=own_connection)
        try:
            yield response
        finally:
            response.close()

    def open_stream(self, sql: str, properties: Mapping[str, Any] | None = None, *,
                    own_connection: bool = True) -> QueryStream:
        """Start a query (``POST /query-stream``; ``POST /query`` on a server without it) and read its
        header; the caller iterates its events and closes it. A push query (``own_connection``)
        waits for rows without a read timeout."""
        http = self._connection(read_timeout=None) if own_connection else self._http
        try:
            response = self._query_response(http, sql, dict(properties or {}))
            try:
                return QueryStream(self, http if own_connection else None, response)
            except BaseException:
                response.close()
                raise
        except BaseException:
            if own_connection:
                http.close()
            raise

    def _query_response(self, http: httpx.Client, sql: str, properties: dict[str, Any]) -> httpx.Response:
        """The response of ``/query-stream`` or, where the server has none (404), of ``/query``,
        the endpoint of ksqlDB before 0.15 (both answer StreamedRows in ``application/vnd.ksql.v1+json``)."""
        accept = {"Accept": KSQL_V1_JSON}
        try:
            return self._send(http, "POST", "/query-stream", {"sql": sql, "properties": properties}, headers=accept,
                              stream=True)
        except ServerStatementError as error:
            if error.error_code is None or error.error_code // 100 != 404:
                raise
        return self._send(http, "POST", "/query", {"ksql": sql, "streamsProperties": properties}, headers=accept,
                          stream=True)

    def print_topic(self, sql: str, properties: Mapping[str, Any] | None = None) -> Iterator[str]:
        """``PRINT``'s lines as the server writes them (``/query-stream``, delimited: ksqlDB's only
        format for it), until its LIMIT or until the iterator is closed."""
        http = self._connection(read_timeout=None)
        try:
            response = self._send(http, "POST", "/query-stream", {"sql": sql, "properties": dict(properties or {})},
                                  headers={"Accept": DELIMITED}, stream=True)
            try:
                for line in response.iter_lines():
                    if line.startswith("{") and '"error_code"' in line:
                        raise server_error(orjson.loads(line), server=self.url)
                    if line.strip():
                        yield line
            except httpx.HTTPError as error:
                self.transport_failed(error)
            finally:
                response.close()
        finally:
            http.close()

    def close_query(self, query_id: str) -> None:
        """``POST /close-query``: end the push query ``query_id`` (its response then ends)."""
        self._call("POST", "/close-query", {"queryId": query_id})

    def insert(self, target: str, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``POST /inserts-stream``: append ``rows`` to the stream ``target``; the acknowledgements
        (``{"status": "ok", "seq": n}``). A row the server refuses raises its error."""
        lines = [orjson.dumps({"target": target})] + [orjson.dumps(dict(row)) for row in rows]
        response = self._call("POST", "/inserts-stream", b"\n".join(lines) + b"\n")
        acks = [orjson.loads(line) for line in response.text.splitlines() if line.strip()]
        for ack in acks:
            if isinstance(ack, dict) and ack.get("status") == "error":
                raise server_error(ack, server=self.url)
        return acks

    def close(self) -> None:
        with self._lock:
            self._http.close()

    def __enter__(self) -> KsqlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self._send(self._http, method, path, body)

    def _send(self, http: httpx.Client, method: str, path: str, body: Any, *, headers: dict[str, str] | None = None,
              stream: bool = False, timeout: float | None = None) -> httpx.Response:
        content = body if isinstance(body, bytes) else None if body is None else orjson.dumps(body)
        base = {"Content-Type": "application/json"} if content is not None and not isinstance(body, bytes) else {}
        request = http.build_request(method, path, content=content, headers={**base, **(headers or {})},
                                     timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout)
        try:
            response = self._sent(http, request, stream)
        except httpx.HTTPError as error:
            self.transport_failed(error)
        except KeyboardInterrupt:
            self._renew(http)
            raise
        if response.status_code >= 400:
            if stream:
                response.read()
                response.close()
            self._refused(response)
        return response

    @staticmethod
    def _sent(http: httpx.Client, request: httpx.Request, stream: bool) -> httpx.Response:
        """``request`` sent; once more on a new connection if the pooled one had died (the server
        restarted or went away since it was last used)."""
        try:
            return http.send(request, stream=stream)
        except (httpx.WriteError, httpx.RemoteProtocolError):
            pass
        return http.send(request, stream=stream)

    def _refused(self, response: httpx.Response) -> NoReturn:
        try:
            body = response.json()
        except ValueError:
            body = {"message": f"HTTP {response.status_code} {response.reason_phrase}: {response.text[:200]}".strip()}
        raise server_error(body, response.status_code, self.url)

    def transport_failed(self, error: BaseException) -> NoReturn:
        """Raise ``error`` (httpx's) as :class:`~nbstream.errors.ServerUnavailable`, saying what failed."""
        reason = _reason(error)
        if isinstance(error, httpx.TimeoutException):
            message = f"{self.url} did not answer within {self.timeout:g} s ({reason})"
        elif isinstance(error, httpx.ConnectError) and _is_tls(error):
            message = (f"TLS with {self.url} failed: {reason} (is the server's certificate signed by the CA "
                       "given as the CA file?)")
        elif isinstance(error, httpx.ConnectError):
            message = f"cannot reach the server at {self.url}: {reason}"
        else:
            message = f"the connection to {self.url} failed: {reason}"
        raise ServerUnavailable(message) from None

    def _renew(self, http: httpx.Client) -> None:
        """After an interrupt in the middle of a request: a fresh connection (the old one's state
        is unknown)."""
        if http is self._http:
            with self._lock:
                self._http.close()
                self._http = self._connection()

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ServerError(f"{self.url} answered {response.request.url.path} with something other than JSON: "
                              f"{response.text[:200]!r}") from None


class QueryStream:
    """A query's response being read: :attr:`header`, then its events (iterate: :class:`Row`s and a
    final :class:`End`). An error in-band, or the response ending without its end, raises a
    :class:`~nbstream.errors.ServerError`."""

    def __init__(self, client: KsqlClient, http: httpx.Client | None, response: httpx.Response) -> None:
        self._client, self._http, self._response = client, http, response
        self._reader = Reader(response.headers.get("content-type", KSQL_V1_JSON))
        self._events = self._read()
        self.header = check_header(next(self._events, None))
        self.ended = False

    @property
    def token(self) -> Any:
        """The last continuation token the server sent (None: none)."""
        return self._reader.token

    def __iter__(self) -> Iterator[Row | End]:
        for event in self._events:
            if isinstance(event, Row | End):
                yield event
            if isinstance(event, End):
                self.ended = True
                return
        if self._reader.has_end and not self._reader.closed:  # cut off: the server went away
            raise ServerUnavailable(f"{self._client.url} ended the response of query {self.header.query_id} "
                                    "without finishing it (the server went away?)")
        self.ended = True
        yield End(None)

    def _read(self) -> Iterator[Event]:
        try:
            if self._reader.whole_body:
                yield from self._reader.events_of_body(self._response.read().decode())
            else:
                yield from self._reader.events(self._response.iter_lines())
        except ResponseError as error:
            raise server_error(error.body, server=self._client.url) from None
        except ValueError as error:
            raise ServerError(f"{self._client.url} sent a line that is not JSON: {error}") from None
        except httpx.HTTPError as error:
            self._client.transport_failed(error)

    def close(self) -> None:
        """Stop reading and drop the response (and its connection, if it has its own)."""
        with contextlib.suppress(Exception):
            self._response.close()
        if self._http is not None:
            with contextlib.suppress(Exception):
                self._http.close()


def normalized_url(url: str) -> str:
    """``url`` as ``scheme://host:port`` (the port 8088 if none is given); a
    :class:`~nbstream.errors.ServerStatementError` unless http or https."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServerStatementError(f"not a server URL: {url!r} (expected http://host:port or https://host:port)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{parts.port or DEFAULT_PORT}"


def _reason(error: BaseException) -> str:
    """The innermost cause's text (httpx wraps httpcore's, which wraps the OS's)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return str(error) or type(error).__name__


def _is_tls(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in str(seen) or "CERTIFICATE" in str(seen).upper():
            return True
        seen = seen.__cause__ or seen.__context__
    return False
