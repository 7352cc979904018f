"""``nbstream run JOB``: an exported job, headless and durable, with ksqlDB's REST API read-only.

    nbstream run JOB [--state DIR] [--listen HOST:PORT|none] [--upgrade] [--replan]
                     [--log-format text|json] [--stats-interval SECONDS]
                     [--kafka HOST:PORT] [--kafka-option NAME=VALUE …] [--property NAME=VALUE …]
                     [--auth FILE | --insecure] [--tls-cert PEM --tls-key PEM]

The job is prepared first (:func:`nbstream.export.runner.prepare`: plans checked against those its
state was built with, statements applied by the rules of a re-run cell); a refusal is logged and
the process exits 1 having changed nothing. Then its connectors and persistent queries run, its
REST API answers in restricted mode (:mod:`nbstream.server.restricted`) unless ``--listen none``,
and every event is logged to standard error, one line each. SIGTERM or Ctrl-C stops it: no more
input is taken, the micro-batch in flight commits, and it exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from nbstream.errors import NbstreamError
from nbstream.export.job import Job, load_job, nbstream_version
from nbstream.export.runner import EventLog, JobRefused, Prepared, RunOptions, Watcher, prepare
from nbstream.log.kafka_options import parse_option_value
from nbstream.server import hypercorn_fixes
from nbstream.server.app import KsqlServer, ServerConfig
from nbstream.server.auth import AuthFileError, Users
from nbstream.server.command import (
    _address,
    _is_loopback,
    _properties,
    _serve,
    _url_host,
    exempt_from_full_collections,
    hypercorn_config,
)
from nbstream.server.command import listen as open_listener
from nbstream.server.restricted import Restricted

#: The state directory when none is given: beside the job's files.
DEFAULT_STATE = "state"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nbstream run", description="run an exported nbstream job")
    p.add_argument("job", help="the job folder (nbstream export --to nbstream)")
    p.add_argument("--state", help=f"state directory (default: JOB/{DEFAULT_STATE}); the job resumes from it")
    p.add_argument("--listen", metavar="HOST:PORT|none", help="the REST API's address (default: the job's)")
    p.add_argument("--upgrade", action="store_true",
                   help="rebuild what changed in queries.sql (and drop what it no longer defines)")
    p.add_argument("--replan", action="store_true", help="accept plans that differ from those the state was built with")
    p.add_argument("--log-format", choices=("text", "json"), default="text", help="log lines as text or JSON")
    p.add_argument("--stats-interval", type=float, default=10.0, help="seconds between throughput lines")
    p.add_argument("--kafka", metavar="HOST:PORT", help="keep topics in this Kafka cluster (default: the job's)")
    p.add_argument("--kafka-option", action="append", default=[], metavar="NAME=VALUE",
                   help="an aiokafka client option (secrets as env:NAME or file:PATH references)")
    p.add_argument("--property", action="append", default=[], metavar="NAME=VALUE", help="a ksqlDB configuration value")
    p.add_argument("--auth", metavar="FILE", help="users file: HTTP Basic authentication")
    p.add_argument("--insecure", action="store_true", help="listen on a non-loopback address without --auth")
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (with --tls-key)")
    p.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    log = EventLog(fmt=args.log_format)
    try:
        job = load_job(Path(args.job))
        listen = args.listen or job.config.listen
        config = None if listen == "none" else _server_config(args, job, listen)
        options = _run_options(args, job)
    except NbstreamError as error:
        log.event("refused", str(error))
        return 1
    except (ValueError, AuthFileError) as error:  # the command line
        log.event("refused", str(error))
        return 2
    log.job = job.config.name
    log.event("start", f"job {job.config.name} (exported by nbstream {job.config.nbstream_version} from "
                       f"{job.config.exported_from or 'an engine'}) on nbstream {nbstream_version()}",
              state=str(options.state), log=options.kafka or job.config.log.backend, listen=listen)
    try:
        prepared = prepare(job, options, log)
    except (JobRefused, NbstreamError) as error:
        log.event("refused", str(error))
        return 1
    watcher = Watcher(prepared.service, log, args.stats_interval)
    if config is None:
        return _headless(prepared, watcher, log)
    return _served(prepared, watcher, log, config, listen, args)


def _run_options(args: argparse.Namespace, job: Job) -> RunOptions:
    kafka_options = {k: parse_option_value(k, v) for k, v in _properties(args.kafka_option, "--kafka-option").items()}
    state = Path(args.state) if args.state else job.folder / DEFAULT_STATE
    return RunOptions(state=state, upgrade=args.upgrade, replan=args.replan, kafka=args.kafka,
                      kafka_options=kafka_options, properties=_properties(args.property, "--property"))


def _server_config(args: argparse.Namespace, job: Job, listen: str) -> ServerConfig:
    host, _ = _address(listen)
    if not _is_loopback(host) and not (args.auth or args.insecure):
        raise ValueError(f"{host} is not a loopback address: pass --auth FILE (or --insecure to serve without)")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    users = Users.load(args.auth) if args.auth else None
    return ServerConfig(users=users, restricted=Restricted(job.config.name))


def _headless(prepared: Prepared, watcher: Watcher, log: EventLog) -> int:
    """Run without the REST API until SIGTERM or SIGINT."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    exempt_from_full_collections(prepared.service).background.start()
    watcher.start()
    log.event("running", "running headless (no REST API)")
    while not stop.wait(0.5):
        pass
    log.event("stopping", "stopping: the batch in flight commits")
    watcher.stop_soon()
    prepared.service.close()  # the background loop stops after its batch
    return _stopped(watcher, log)


def _served(prepared: Prepared, watcher: Watcher, log: EventLog, config: ServerConfig, listen: str,
            args: argparse.Namespace) -> int:
    """Run with the read-only REST API until SIGTERM or SIGINT (the server stops the engine)."""
    restricted = Restricted(prepared.planned.selection.name, prepared.writable)
    config = ServerConfig(users=config.users, restricted=restricted)
    host, port = _address(listen)
    listener = open_listener(host, port)
    bound_host, bound_port = listener.getsockname()[:2]
    scheme = "https" if args.tls_cert else "http"
    server = KsqlServer(config, lambda: exempt_from_full_collections(prepared.service))
    watcher.start()
    log.event("running", f"listening on {scheme}://{_url_host(bound_host)}:{bound_port} (read-only)",
              address=f"{_url_host(bound_host)}:{bound_port}")
    signalled = threading.Event()

    def on_signal() -> None:
        if not signalled.is_set():
            signalled.set()
            watcher.stop_soon()  # before the server closes the engine
            log.event("stopping", "stopping: push queries end, the batch in flight commits")

    hypercorn_fixes.apply()
    asyncio.run(_serve(server, hypercorn_config(listener, args.tls_cert, args.tls_key), on_signal))
    return _stopped(watcher, log)  # the server closed the engine


def _stopped(watcher: Watcher, log: EventLog) -> int:
    watcher.stop()
    log.event("stopped", "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
