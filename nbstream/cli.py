"""``nbstream sql``: run ksqlDB statements on the embedded engine, like ksqlDB's CLI; ``nbstream
export``: turn a notebook into a deployable job.

    nbstream sql FILE [--state DIR]       run a script
    nbstream sql -e "SHOW STREAMS;"       run statements given inline
    nbstream sql                          read statements from standard input
    nbstream export NOTEBOOK [-o DIR] [--to nbstream|ksqldb|migrations] …   (see nbstream export --help)

Results print as tables. A push query (``EMIT CHANGES``) and ``PRINT topic`` stream their rows until
their ``LIMIT`` or Ctrl-C, while persistent queries keep running.

A thin face over the engine service (:class:`~nbstream.runtime.service.EngineService`): between
statements everything pending is processed first (a script's results do not depend on timing);
while a push query streams, the service's background loop runs it and the persistent queries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from nbstream.errors import NbstreamError
from nbstream.export.job import DEFAULT_LISTEN
from nbstream.export.pipeline import TARGETS, ExportOptions, export_notebook
from nbstream.log.kafka_options import parse_option_value
from nbstream.runtime.push import AsyncBatches
from nbstream.runtime.service import EngineService
from nbstream.runtime.topics import POLL_INTERVAL_S, TopicPrinter, format_header
from nbstream.sql import ast, parse

#: Push-query rows print as they arrive, so column widths cannot be fitted to the data.
PUSH_COLUMN_WIDTH = 12

#: Seconds PRINT lets persistent queries run between polls of its topic.
PRINT_IDLE_S = 0.5


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbstream", description="ksqlDB SQL on an embedded engine")
    commands = parser.add_subparsers(dest="command", required=True)
    sql = commands.add_parser("sql", help="run statements on the embedded engine")
    sql.add_argument("file", nargs="?", help="a .sql script (default: standard input)")
    sql.add_argument("-e", "--execute", help="statements to run instead of a file")
    sql.add_argument("--state", help="state directory: a durable engine that resumes where it stopped")
    _export_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "export":
        return export(args)
    script = args.execute if args.execute is not None else _read(args.file)
    with EngineService(path=args.state) as engine:
        try:
            return run_script(engine, script)
        except KeyboardInterrupt:
            return 130


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
    """Run every statement of ``script``, printing results; returns the exit status."""
    stream = out or sys.stdout
    try:
        statements = parse(script)
    except NbstreamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for statement in statements:
        try:
            engine.run_until_idle()
            if isinstance(statement, ast.Select) and statement.query.emit is not None:
                asyncio.run(_stream_rows(engine, statement.text, stream))
            elif isinstance(statement, ast.PrintTopic):
                _print_topic(engine, statement, stream)
            else:
                for result in engine.execute(statement.text):
                    print(result, file=stream)
        except NbstreamError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    engine.run_until_idle()
    return 0


async def _stream_rows(engine: EngineService, sql: str, stream: TextIO) -> None:
    """Print a push query's rows as they come; the background loop runs it and the persistent
    queries meanwhile, and stops with it."""
    header: list[str] | None = None
    widths: list[int] = []
    query = engine.start_push(sql)
    batches = query.subscribe(AsyncBatches())
    engine.background.start()
    try:
        async for batch in batches:
            for row in batch.drop_columns(["__deleted"]).to_pylist():
                if header is None:
                    header = list(row)
                    widths = [max(len(h), PUSH_COLUMN_WIDTH) for h in header]
                    print(_row_line(header, widths), file=stream)
                print(_row_line(["" if row[c] is None else str(row[c]) for c in header], widths),
                      file=stream, flush=True)
    finally:
        engine.background.stop()
        engine.close_push(query)


def _print_topic(engine: EngineService, statement: ast.PrintTopic, stream: TextIO) -> None:
    """Print a topic's records as ksqlDB's CLI does (the guessed formats, then one line per
    record) until LIMIT or Ctrl-C, running persistent queries while waiting."""
    printer = TopicPrinter(engine, statement)
    header = None
    while not printer.done:
        records = printer.poll()
        if records and format_header(printer) != header:
            header = format_header(printer)
            print(header, file=stream)
        for record in records:
            print(record.line(), file=stream, flush=True)
        if not records:
            engine.run_until_idle(PRINT_IDLE_S)
            time.sleep(POLL_INTERVAL_S)


def _row_line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "|" + "|".join(f" {c:<{w}} " for c, w in zip(cells, widths, strict=True)) + "|"


if __name__ == "__main__":
    raise SystemExit(main())
