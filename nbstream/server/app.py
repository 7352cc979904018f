"""The ASGI application: ksqlDB's REST endpoints over one :class:`~nbstream.runtime.service.EngineService`.

:class:`KsqlServer` routes each request, checks its credentials (every endpoint but the container
probes ``/chc/live`` and ``/chc/ready``), and turns whatever a handler raises into ksqlDB's error
JSON. The engine is opened after the listener is up (replaying a durable engine's statements may
take a while): until then ``/chc/ready`` answers 503 and the API 50302 "Server initializing".

Engine work never runs on the event loop: statements, push-query starts and inserts run one at a
time on one thread (they take the engine's lock in turn anyway, and in the order they came), pull
queries on a small pool of threads, each on a DuckDB cursor of its own (:meth:`EngineService.pull_rows`),
but for point lookups planned before: those in flight are answered together, by one statement on a
thread of their own (:class:`~nbstream.runtime.lookups.LoopLookups`; on 2 cores that took the
server from about 1,250 to 1,750 lookups/s, as a hand-off to a pool thread per request and the GIL
waits around it cost more than the lookup's own statement).
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from nbstream.runtime.lookups import LoopLookups
from nbstream.runtime.service import EngineService
from nbstream.server import inserts, ksql, queries
from nbstream.server.auth import Users
from nbstream.server.errors import NOT_FOUND, NOT_READY, SERVER_ERROR, SHUTTING_DOWN, UNAUTHORIZED, KsqlError
from nbstream.server.http import Disconnected, Exchange, Message, Receive, Scope, Send
from nbstream.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from nbstream.server.metrics import ServerMetrics, render
from nbstream.server.restricted import Restricted

log = logging.getLogger("nbstream.server")

VERSION = "0.29.0"  # the ksqlDB release whose REST API the server speaks
SERVICE_ID = "default_"

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class ServerConfig:
    """How the server behaves (``nbstream serve``'s options).

    ``files_root``: the folder under which file connectors and sinks may read and write (None: they
    are refused). ``max_body``: bytes of a request body (of one line, for ``/inserts-stream``).
    ``max_push_queries``: push queries streaming at once (ksqlDB's ``ksql.max.push.queries``).
    ``push_buffer_rows``: rows a push query may hold for a client that reads slower than they come
    before it is disconnected. ``pull_threads``: pull queries running at once. ``restricted``: the
    read-only API of a job (:mod:`nbstream.server.restricted`).
    """

    users: Users | None = None
    files_root: Path | None = None
    max_body: int = 1024 * 1024
    max_push_queries: int = 100
    push_buffer_rows: int = 50_000
    pull_threads: int = 8
    #: Seconds between the starts of two appends into one target over ``/inserts-stream``: the rows
    #: that arrive meanwhile, from every request, are appended together (an append costs milliseconds
    #: of DuckDB statements however few rows it holds). A row arriving after a quiet spell goes at once.
    insert_linger: float = 0.025
    cluster_id: str = "nbstream"
    restricted: Restricted | None = None  # a job's read-only API (nbstream run)


Handler = Callable[["KsqlServer", Exchange], Awaitable[None]]


class KsqlServer:
    """The ASGI app. ``open_service`` makes the engine service (called once, on a worker thread)."""

    def __init__(self, config: ServerConfig, open_service: Callable[[], EngineService]) -> None:
        self.config = config
        self.metrics = ServerMetrics()
        self.pushes = queries.PushRegistry()
        self.state = "INITIALIZING"  # READY, TERMINATING, TERMINATED (ksqlDB's server states)
        self._open_service = open_service
        self._service: EngineService | None = None
        self._opening: asyncio.Task[None] | None = None
        self._statements = ThreadPoolExecutor(1, thread_name_prefix="nbstream-statements")
        self._pulls = ThreadPoolExecutor(config.pull_threads, thread_name_prefix="nbstream-pulls")
        self.lookups = LoopLookups(lambda: self.service.pull_connection())
        self.failure: str | None = None  # why the engine could not be opened
        self._appenders: dict[str, inserts.Appender] = {}

    def appender(self, target: str) -> inserts.Appender:
        """The appends into ``target`` (as a request names it) of every ``/inserts-stream`` request
        (kept: an idle one holds nothing; an unknown target is refused before it gets one)."""
        appender = self._appenders.get(target)
        if appender is None:
            appender = self._appenders[target] = inserts.Appender(self, target, self.config.insert_linger)
        return appender

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the engine in the background (call on the server's event loop)."""
        if self._opening is None:
            self._opening = asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        try:
            service = await self.run_statement(self._open_service)
        except Exception as error:  # the server stays up to say why, and stays not ready
            self.failure = f"{type(error).__name__}: {error}"
            log.error("cannot open the engine: %s", self.failure)
            return
        service.background.start()
        self._service = service
        self.state = "READY"

    @property
    def service(self) -> EngineService:
        """The engine service (a :class:`KsqlError` 50302/50303 while it is not serving)."""
        if self.state in ("TERMINATING", "TERMINATED"):
            raise KsqlError(SHUTTING_DOWN, "The server is shutting down")
        if self._service is None:
            raise KsqlError(NOT_READY, f"Server initializing{': ' + self.failure if self.failure else ''}")
        return self._service

    def begin_shutdown(self) -> None:
        """Stop taking requests and end every push query (each gets a final message)."""
        self.state = "TERMINATING"
        self.pushes.stop_all(shutting_down=True)

    def close(self) -> None:
        """After the last request: the background loop stops after the batch in flight (which
        commits), then the engine closes."""
        self.state = "TERMINATED"
        self._statements.shutdown(wait=True)
        self._pulls.shutdown(wait=True)
        self.lookups.close()
        if self._service is not None:
            self._service.close()
            self._service = None

    # -- engine work off the event loop -----------------------------------------------------------------
    async def run_statement(self, work: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """``work`` on the statements' thread (one at a time, in the order asked)."""
        return await asyncio.get_running_loop().run_in_executor(self._statements, lambda: work(*args, **kwargs))

    async def run_pull(self, work: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._pulls, lambda: work(*args, **kwargs))

    # -- ASGI ---------------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        exchange = Exchange(scope, receive, send, self.config.max_body)
        route = ROUTES.get((exchange.method, exchange.path))
        endpoint = exchange.path if route is not None else "other"
        try:
            if route is None:
                raise KsqlError(NOT_FOUND, f"No endpoint {exchange.method} {exchange.path}")
            if exchange.path not in UNAUTHENTICATED:
                await self._authenticate(exchange)
            await route(self, exchange)
        except KsqlError as error:
            await self._fail(exchange, error)
        except Disconnected:
            pass
        except Exception as error:  # a bug: answer 500, keep serving
            log.error("%s %s failed:\n%s", exchange.method, exchange.path, traceback.format_exc())
            await self._fail(exchange, KsqlError(SERVER_ERROR, f"{type(error).__name__}: {error}"))
        finally:
            self.metrics.request(endpoint, exchange.status or 499)

    async def _fail(self, exchange: Exchange, error: KsqlError) -> None:
        if exchange.status is not None or exchange.disconnected:
            return  # the response started: a streaming handler wrote the error in-band, or gave up
        headers = [("www-authenticate", 'Basic realm="nbstream"')] if error.error_code == UNAUTHORIZED else []
        await exchange.respond_error(error, headers)

    async def _authenticate(self, exchange: Exchange) -> None:
        users = self.config.users
        if users is None:
            return
        header = exchange.headers.get("authorization")
        if header is None or await asyncio.to_thread(users.check, header) is None:
            raise KsqlError(UNAUTHORIZED, "Unauthorized")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


# -- small endpoints ------------------------------------------------------------------------------------


async def _info(server: KsqlServer, exchange: Exchange) -> None:
    status = "RUNNING" if server.state == "READY" else "ERROR" if server.failure else "DEGRADED"
    await exchange.respond_json({"KsqlServerInfo": {"version": VERSION, "kafkaClusterId": server.config.cluster_id,
                                                    "ksqlServiceId": SERVICE_ID, "serverStatus": status}})


async def _root(server: KsqlServer, exchange: Exchange) -> None:
    await exchange.respond(307, b"", None, [("location", "/info")])


async def _healthcheck(server: KsqlServer, exchange: Exchange) -> None:
    service = server._service
    loop_ok = service is not None and service.background.running
    healthy = server.state == "READY" and loop_ok
    details = {"metastore": {"isHealthy": service is not None}, "kafka": {"isHealthy": service is not None},
               "commandRunner": {"isHealthy": loop_ok}}
    await exchange.respond_json({"isHealthy": healthy, "details": details, "serverState": server.state},
                                200 if healthy else 503)


async def _live(server: KsqlServer, exchange: Exchange) -> None:
    await exchange.respond_json({})


async def _ready(server: KsqlServer, exchange: Exchange) -> None:
    await exchange.respond_json({}, 200 if server.state == "READY" else 503)


async def _metrics(server: KsqlServer, exchange: Exchange) -> None:
    service = server.service
    per_query = await server.run_pull(service.query_metrics)
    memory = await server.run_pull(service.memory_by_tag)
    text = render(server.metrics, per_query, server.pushes.open, memory)
    await exchange.respond(200, text.encode(), METRICS_CONTENT_TYPE)


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/"): _root,
    ("GET", "/info"): _info,
    ("GET", "/healthcheck"): _healthcheck,
    ("GET", "/chc/live"): _live,
    ("GET", "/chc/ready"): _ready,
    ("GET", "/metrics"): _metrics,
    ("POST", "/ksql"): ksql.handle,
    ("POST", "/query"): queries.handle_query,
    ("POST", "/query-stream"): queries.handle_query_stream,
    ("POST", "/close-query"): queries.handle_close,
    ("POST", "/inserts-stream"): inserts.handle,
}

#: Container probes answer without credentials, as in ksqlDB.
UNAUTHENTICATED = frozenset({"/chc/live", "/chc/ready"})

