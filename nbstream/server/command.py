"""``nbstream serve``: the engine behind ksqlDB's REST API.

    nbstream serve [--state DIR | --kafka HOST:PORT [--kafka-option NAME=VALUE …]]
                   [--listen 127.0.0.1:8088] [--auth FILE | --insecure]
                   [--tls-cert PEM --tls-key PEM] [--files-root DIR] [--property NAME=VALUE …]
    nbstream serve --hash-password NAME        print a users-file line for NAME's password

One port speaks HTTP/1.1 and HTTP/2 without TLS by prior knowledge (h2c), as ksqlDB's clients
expect (hypercorn serves both; ``/inserts-stream`` is HTTP/2 only). The server listens on the
loopback address unless told otherwise, and any other address needs ``--auth`` (HTTP Basic against a
users file) or an explicit ``--insecure``. SIGTERM or Ctrl-C stops it cleanly: every push query gets
a final message, the micro-batch in flight commits, and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import ipaddress
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config

from nbstream.runtime.service import EngineService
from nbstream.server import hypercorn_fixes
from nbstream.server.app import KsqlServer, ServerConfig
from nbstream.server.auth import AuthFileError, Users, hash_password
from nbstream.server.schema_registry import SchemaRegistryApp

DEFAULT_LISTEN = "127.0.0.1:8088"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nbstream serve", description="serve the engine through ksqlDB's REST API")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--state", help="state directory: a durable engine that resumes where it stopped")
    where.add_argument("--kafka", metavar="HOST:PORT", help="keep topics in this Kafka cluster")
    p.add_argument("--kafka-option", action="append", default=[], metavar="NAME=VALUE",
                   help="an aiokafka client option (secrets as env:NAME or file:PATH references)")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"address to listen on (default {DEFAULT_LISTEN}; port 0: any free port)")
    p.add_argument("--schema-registry-listen", metavar="HOST:PORT",
                   help="also serve the embedded schema registry's REST API (Confluent's) here, for Kafka clients")
    p.add_argument("--auth", metavar="FILE", help="users file: HTTP Basic authentication (see --hash-password)")
    p.add_argument("--insecure", action="store_true", help="listen on a non-loopback address without --auth")
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (with --tls-key)")
    p.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    p.add_argument("--files-root", metavar="DIR", help="the folder file connectors and sinks may use (none without)")
    p.add_argument("--property", action="append", default=[], metavar="NAME=VALUE",
                   help="a ksqlDB configuration value (ksql.persistence.default.format.value=JSON, …)")
    p.add_argument("--max-push-queries", type=int, default=100, help="push queries at once (ksql.max.push.queries)")
    p.add_argument("--push-buffer-rows", type=int, default=50_000,
                   help="rows a push query may hold for a slow client before disconnecting it")
    p.add_argument("--insert-linger-ms", type=float, default=25.0,
                   help="least time between two appends into a target from /inserts-stream (rows coalesce meanwhile)")
    p.add_argument("--max-body-bytes", type=int, default=1024 * 1024, help="largest request body (inserts: line)")
    p.add_argument("--hash-password", metavar="NAME", help="print a users-file line for NAME and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.hash_password:
        print(f"{args.hash_password}:{hash_password(_read_password())}")
        return 0
    try:
        config, host, port = _config(args)
    except (ValueError, AuthFileError) as error:
        print(f"nbstream serve: {error}", file=sys.stderr)
        return 2
    listener = listen(host, port)
    scheme = "https" if args.tls_cert else "http"
    bound_host, bound_port = listener.getsockname()[:2]
    print(f"nbstream serve: listening on {scheme}://{_url_host(bound_host)}:{bound_port}", flush=True)
    server = KsqlServer(config, lambda: exempt_from_full_collections(_open_service(args)))
    registry_config = None
    if args.schema_registry_listen:
        sr_listener = listen(*_address(args.schema_registry_listen))
        sr_host, sr_port = sr_listener.getsockname()[:2]
        print(f"nbstream serve: schema registry on {scheme}://{_url_host(sr_host)}:{sr_port}", flush=True)
        registry_config = hypercorn_config(sr_listener, args.tls_cert, args.tls_key)
    hypercorn_fixes.apply()
    asyncio.run(_serve(server, hypercorn_config(listener, args.tls_cert, args.tls_key),
                       registry_config=registry_config))
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        first, second = getpass.getpass("password: "), getpass.getpass("again: ")
        if first != second:
            raise SystemExit("nbstream serve: the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def _config(args: argparse.Namespace) -> tuple[ServerConfig, str, int]:
    host, port = _address(args.listen)
    for listen in filter(None, (args.listen, args.schema_registry_listen)):
        address = _address(listen)[0]
        if not _is_loopback(address) and not (args.auth or args.insecure):
            raise ValueError(f"{address} is not a loopback address: pass --auth FILE (or --insecure to serve without)")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    files_root = Path(args.files_root).resolve() if args.files_root else None
    if files_root is not None and not files_root.is_dir():
        raise ValueError(f"--files-root {args.files_root} is not a folder")
    users = Users.load(args.auth) if args.auth else None
    config = ServerConfig(users=users, files_root=files_root, max_body=args.max_body_bytes,
                          max_push_queries=args.max_push_queries, push_buffer_rows=args.push_buffer_rows,
                          insert_linger=args.insert_linger_ms / 1000)
    return config, host, port


def _address(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen {listen}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (bound here, so that port 0 gets a free port the caller is told of)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def _properties(pairs: Sequence[str], what: str) -> dict[str, Any]:
    properties = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"{what} {pair}: expected NAME=VALUE")
        properties[name.strip()] = value.strip()
    return properties


def _open_service(args: argparse.Namespace) -> EngineService:
    properties = _properties(args.property, "--property")
    if args.kafka:
        return EngineService(kafka=args.kafka, properties=properties,
                             **_properties(args.kafka_option, "--kafka-option"))
    return EngineService(path=args.state, properties=properties)


def exempt_from_full_collections(service: EngineService) -> EngineService:
    """Collect the garbage left by startup, then take every object still alive — the modules, the
    catalog, the plans: some 130,000 in a server — out of the garbage collector's reach
    (``gc.freeze``); returns ``service``. Python's full collections traverse every tracked object
    and held the whole process for 60 to 75 ms each (once or twice a minute under load), which showed
    as pull and push latency spikes; they now traverse only what was made since. Objects frozen
    stay alive until the process ends unless their reference counts free them, so this is for a
    process's entry point (a server or a job), called once its engine is open."""
    gc.collect()
    gc.freeze()
    return service


def hypercorn_config(listener: socket.socket, tls_cert: str | None = None, tls_key: str | None = None) -> Config:
    """How hypercorn serves on ``listener`` (HTTP/1.1 and h2c; HTTPS with a certificate)."""
    config = Config()
    config.bind = [f"fd://{listener.fileno()}"]
    config.certfile, config.keyfile = tls_cert, tls_key
    config.loglevel = "WARNING"
    config.accesslog = None
    config.graceful_timeout = 5.0
    config.keep_alive_timeout = 75.0  # clients keep connections for pull queries (ksqlDB's Vert.x: no idle close)
    config.keep_alive_max_requests = 1 << 62  # else hypercorn closes a connection after 1,000 requests; Vert.x never
    config.h2_max_concurrent_streams = 1000
    config.include_server_header = False
    return config


async def _serve(server: KsqlServer, config: Config, on_signal: Callable[[], None] | None = None,
                 registry_config: Config | None = None) -> None:
    """Serve until SIGTERM or SIGINT (``on_signal`` is told of it), then stop cleanly; with
    ``registry_config``, the engine's schema registry too (:mod:`nbstream.server.schema_registry`)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def shut_down() -> None:
        if on_signal is not None:
            on_signal()
        server.begin_shutdown()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, shut_down)
    try:
        served = [serve(server, config, shutdown_trigger=stop.wait)]  # type: ignore[arg-type]
        if registry_config is not None:
            app = SchemaRegistryApp(lambda: server._service.schema_registry if server._service else None,
                                    server.config.users)
            served.append(serve(app, registry_config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        await asyncio.gather(*served)
    finally:
        await asyncio.to_thread(server.close)
