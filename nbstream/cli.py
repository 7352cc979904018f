"""``nbstream sql``: ksqlDB statements on the embedded engine or a server, like ksqlDB's CLI.

    nbstream sql                          an interactive prompt (on a terminal; else standard input)
    nbstream sql FILE [--state DIR]       run a script
    nbstream sql -e "SHOW STREAMS;"       run statements given inline
    nbstream sql --server URL [--user U [--password P]] [--ca-file PEM] [FILE | -e …]
                                          the same against a ksqlDB-compatible server

Results print as tables. A push query (``EMIT CHANGES``) and ``PRINT topic`` stream their rows until
their ``LIMIT`` or Ctrl-C, while persistent queries keep running.

A thin face: it opens a connection — the engine service (:class:`~nbstream.runtime.service.EngineService`)
in this process, or a server through :mod:`nbstream.client` — and hands it to the one
:class:`~nbstream.shell.Shell`, which runs scripts and the interactive prompt on either.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import TextIO

from nbstream.client import Connection, LocalConnection, connect_server
from nbstream.errors import NbstreamError
from nbstream.runtime.service import EngineService
from nbstream.shell import Shell, interactive


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        connection = _connection(args)
    except NbstreamError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    with closing(connection):
        shell = Shell(connection)
        try:
            if args.execute is None and args.file is None and sys.stdin.isatty():
                return interactive(shell)
            return shell.run_script(args.execute if args.execute is not None else _read(args.file))
        except KeyboardInterrupt:
            return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nbstream", description="ksqlDB SQL on an embedded engine or a server")
    commands = parser.add_subparsers(dest="command", required=True)
    sql = commands.add_parser("sql", help="run statements (interactively on a terminal)")
    sql.add_argument("file", nargs="?", help="a .sql script (default: a prompt on a terminal, else standard input)")
    sql.add_argument("-e", "--execute", help="statements to run instead of a file")
    where = sql.add_mutually_exclusive_group()
    where.add_argument("--state", help="state directory: a durable engine that resumes where it stopped")
    where.add_argument("--server", metavar="URL", help="a ksqlDB-compatible server, http(s)://host:port")
    sql.add_argument("--user", help="HTTP Basic user name for --server (or env:NAME, file:PATH)")
    sql.add_argument("--password", help="its password, as env:NAME or file:PATH (asked for on a terminal if "
                                        "--user is given without it)")
    sql.add_argument("--ca-file", metavar="PEM", help="CA certificates that verify an https server")
    return parser


def _connection(args: argparse.Namespace) -> Connection:
    if args.server is None:
        if args.user or args.password or args.ca_file:
            raise NbstreamError("--user, --password and --ca-file are options of --server")
        return LocalConnection(EngineService(path=args.state))
    password = args.password
    if args.user and password is None and sys.stdin.isatty():
        password = getpass.getpass(f"Password for {args.user}: ")
    return connect_server(args.server, user=args.user, password=password, ca_file=args.ca_file)


def _read(file: str | None) -> str:
    return Path(file).read_text() if file else sys.stdin.read()


def run_script(engine: EngineService, script: str, out: TextIO | None = None) -> int:
    """Run every statement of ``script`` on ``engine``, printing results; returns the exit status."""
    return Shell(LocalConnection(engine), out).run_script(script)


if __name__ == "__main__":
    raise SystemExit(main())
