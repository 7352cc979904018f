"""``nbstream sql``: ksqlDB statements on the embedded engine or a server, like ksqlDB's CLI;
``nbstream export``: turn a notebook into a deployable job.

    nbstream sql                          an interactive prompt (on a terminal; else standard input)
    nbstream sql FILE [--state DIR]       run a script
    nbstream sql -e "SHOW STREAMS;"       run statements given inline
    nbstream sql --server URL [--user U [--password P]] [--ca-file PEM] [FILE | -e …]
                                          the same against a ksqlDB-compatible server
    nbstream export NOTEBOOK [-o DIR] [--to nbstream|ksqldb|migrations] …   (see nbstream export --help)

Results print as tables. A push query (``EMIT CHANGES``) and ``PRINT topic`` stream their rows until
their ``LIMIT`` or Ctrl-C, while persistent queries keep running.

A thin face: it opens a connection — the engine service (:class:`~nbstream.runtime.service.EngineService`)
in this process, or a server through :mod:`nbstream.client` — and hands it to the one
:class:`~nbstream.shell.Shell`, which runs scripts and the interactive prompt on either.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import TextIO

from nbstream.client import Connection, LocalConnection, connect_server
from nbstream.errors import NbstreamError
from nbstream.export.job import DEFAULT_LISTEN
from nbstream.export.pipeline import TARGETS, ExportOptions, export_notebook
from nbstream.log.kafka_options import parse_option_value
from nbstream.runtime.service import EngineService
from nbstream.shell import Shell, interactive


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "export":
        return export(args)
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
    _export_parser(commands)
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


def _export_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser("export", help="export a notebook to a deployable job",
                            description="Export a notebook's %%stream statements as a job: an nbstream job folder "
                                        "(run it with nbstream run), a ksqlDB headless queries file, or a "
                                        "ksql-migrations project. Nothing is written if anything stops it.")
    p.add_argument("notebook", help="the .ipynb file")
    p.add_argument("-o", "--out", help="the folder to write (default: NOTEBOOK-job, -ksqldb or -migrations)")
    p.add_argument("--to", choices=TARGETS, default="nbstream", help="what to write (default nbstream)")
    p.add_argument("--name", help="the job's name (default: the notebook's)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a value for a :NAME parameter (JSON: 200, 1.5, true, \"text\"; anything else is text)")
    p.add_argument("--include-inserts", action="store_true", help="keep INSERT … VALUES statements (sample data)")
    p.add_argument("--allow-missing-input", action="store_true",
                   help="accept topics the notebook fed from Python: they will be fed from outside")
    p.add_argument("--property", action="append", default=[], metavar="NAME=VALUE",
                   help="a ksqlDB configuration value of the job (secrets as env:NAME or file:PATH)")
    p.add_argument("--kafka", metavar="HOST:PORT", help="the job keeps its topics in this Kafka cluster")
    p.add_argument("--kafka-option", action="append", default=[], metavar="NAME=VALUE",
                   help="an aiokafka client option of the job (secrets as env:NAME or file:PATH)")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT|none",
                   help=f"where the job's REST API listens (default {DEFAULT_LISTEN})")


def export(args: argparse.Namespace) -> int:
    """``nbstream export``: the report on standard output, or every problem on standard error (exit 1)."""
    notebook = Path(args.notebook)
    suffix = {"nbstream": "job"}.get(args.to, args.to)
    out = Path(args.out) if args.out else notebook.with_name(f"{notebook.stem}-{suffix}")
    try:
        options = ExportOptions(
            target=args.to, name=args.name, params={k: _param(v) for k, v in _pairs(args.param, "--param").items()},
            include_inserts=args.include_inserts, allow_missing_input=args.allow_missing_input,
            properties=_pairs(args.property, "--property"), kafka=args.kafka,
            kafka_options={k: parse_option_value(k, v) for k, v in _pairs(args.kafka_option, "--kafka-option").items()},
            listen=args.listen)
        report = export_notebook(notebook, out, options)
    except NbstreamError as error:
        print(f"nbstream export: {error}", file=sys.stderr)
        return 1
    print(report)
    return 0


def _pairs(pairs: Sequence[str], option: str) -> dict[str, str]:
    found = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"nbstream export: {option} {pair}: expected NAME=VALUE")
        found[name.strip()] = value
    return found


def _param(text: str) -> object:
    """A ``--param`` value: JSON if it reads as JSON (a number, true, false, null, a "string"), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _read(file: str | None) -> str:
    return Path(file).read_text() if file else sys.stdin.read()


def run_script(engine: EngineService, script: str, out: TextIO | None = None) -> int:
    """Run every statement of ``script`` on ``engine``, printing results; returns the exit status."""
    return Shell(LocalConnection(engine), out).run_script(script)


if __name__ == "__main__":
    raise SystemExit(main())
