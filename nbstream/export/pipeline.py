"""Exporting, phase after phase: read → select → plan in a sandbox → write one target's files.

:func:`export_notebook` exports a notebook file (``nbstream export``), :func:`export_engine` what
a running engine runs now (``%stream export``). Every phase runs before anything is written; an
:class:`~nbstream.errors.ExportError` lists what stops the export, and then nothing is written.
The files are written to a new folder beside ``out`` and moved into place, so ``out`` holds either
the whole export or what it held before. ``out`` must not exist, be empty, or hold an earlier export
of any target (which is replaced).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbstream.errors import ExportError
from nbstream.export import job, to_ksqldb, to_migrations
from nbstream.export.engine_reader import read_engine
from nbstream.export.notebook_reader import read_notebook
from nbstream.export.origin import Contents
from nbstream.export.sandbox import PlannedJob, plan_job
from nbstream.export.selection import Options, Selection, select
from nbstream.export.to_nbstream import job_files
from nbstream.log.kafka_options import check_client_options
from nbstream.runtime.engine import Engine

TARGETS = ("nbstream", "ksqldb", "migrations")

#: The file that marks a folder as an export of each target (such a folder may be replaced).
MARKERS = (job.JOB_FILE, to_ksqldb.PROPERTIES_FILE, to_migrations.PROPERTIES_FILE)


@dataclass(frozen=True)
class ExportOptions:
    """What ``nbstream export`` is asked (see its ``--help``)."""

    target: str = "nbstream"
    name: str | None = None
    params: Mapping[str, object] = field(default_factory=dict)
    include_inserts: bool = False
    allow_missing_input: bool = False
    properties: Mapping[str, Any] = field(default_factory=dict)
    kafka: str | None = None
    kafka_options: Mapping[str, Any] = field(default_factory=dict)
    listen: str = job.DEFAULT_LISTEN

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ExportError([f"unknown target {self.target!r}: one of {', '.join(TARGETS)}"])
        if self.listen != "none" and not re.fullmatch(r".+:[0-9]+", self.listen):
            raise ExportError([f"--listen {self.listen}: expected HOST:PORT, or none"])
        check_client_options(dict(self.kafka_options))
        job.check_no_secrets(self.kafka_options)
        secret = job.secret_properties(self.properties)
        if secret:
            raise ExportError([f"property {name} holds a secret: give it as env:NAME or file:PATH" for name in secret])


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote (``files``, relative to ``out``) and what it tells about the rest."""

    out: Path
    target: str
    files: tuple[str, ...]
    queries: tuple[str, ...]
    notes: tuple[str, ...]
    seconds: float

    def __str__(self) -> str:
        lines = [f"Exported {len(self.queries)} persistent quer{'y' if len(self.queries) == 1 else 'ies'} "
                 f"({', '.join(self.queries)}) to {self.out}/ (--to {self.target}) in {self.seconds:.1f} s: "
                 f"{', '.join(self.files)}"]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def export_notebook(notebook: Path, out: Path, options: ExportOptions | None = None) -> ExportReport:
    """Export the notebook file ``notebook`` to the folder ``out``."""
    started = time.monotonic()
    return _export(read_notebook(notebook), out, options or ExportOptions(), started)


def export_engine(engine: Engine, out: Path, name: str, options: ExportOptions | None = None,
                  lock: AbstractContextManager[object] | None = None) -> ExportReport:
    """Export what ``engine`` runs now to ``out`` as the job ``name``; ``lock`` (a service's) is
    held while the engine is read, not while the job is planned and written."""
    started = time.monotonic()
    with lock or nullcontext():
        contents = read_engine(engine, name)
    return _export(contents, out, options or ExportOptions(), started)


def _export(contents: Contents, out: Path, options: ExportOptions, started: float) -> ExportReport:
    name = options.name or contents.name
    carry = options.target == "nbstream"
    selection = select(contents, Options(options.params, options.include_inserts, options.allow_missing_input,
                                         carry_udfs=carry))
    job.check_no_secret_statements(s.statement for s in selection.statements)
    udfs = _udfs_module(contents) if carry else None
    if udfs is not None:  # the sandbox plans the statements calling them
        with tempfile.TemporaryDirectory(prefix="nbstream-udfs-") as folder:
            (Path(folder) / job.UDFS_FILE).write_text(udfs)
            job.import_udfs(Path(folder) / job.UDFS_FILE)
    planned = plan_job(selection, options.properties)
    files, notes = _render(planned, name, options, udfs)
    write_folder(out, files)
    queries = tuple(q.id for q in planned.queries)
    return ExportReport(out, options.target, tuple(sorted(files)), queries, (*selection.notes, *notes),
                        time.monotonic() - started)


def _udfs_module(contents: Contents) -> str | None:
    """``udfs.py`` for the notebook's UDFs that a job can carry, or None when it has none."""
    definitions = [u.source for u in contents.udfs if u.source is not None]
    return job.udfs_module(contents.imports, definitions, contents.described) if definitions else None


def _render(planned: PlannedJob, name: str, options: ExportOptions,
            udfs: str | None) -> tuple[dict[str, str], list[str]]:
    if options.target == "nbstream":
        return job_files(planned, _config(planned.selection, name, options), udfs), []
    if options.target == "ksqldb":
        export = to_ksqldb.ksqldb_files(planned, f"{name}_")
    else:
        export = to_migrations.migrations_files(planned)
    return export.files, export.notes


def _config(selection: Selection, name: str, options: ExportOptions) -> job.JobConfig:
    log = job.LogConfig("kafka", options.kafka, dict(options.kafka_options)) if options.kafka else job.LogConfig()
    return job.JobConfig(name=name, nbstream_version=job.nbstream_version(), exported_from=selection.described,
                         properties=dict(options.properties), log=log, listen=options.listen,
                         external_inputs=selection.external_inputs)


# -- writing ----------------------------------------------------------------------------------------------


def write_folder(out: Path, files: Mapping[str, str]) -> None:
    """Make ``out`` hold exactly ``files`` (relative path → text), all at once (see the module docstring)."""
    if out.exists() and not _replaceable(out):
        raise ExportError([f"{out} exists and holds no earlier export: choose another folder (-o) or remove it"])
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        _swap(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replaceable(out: Path) -> bool:
    return out.is_dir() and (not any(out.iterdir()) or any((out / marker).is_file() for marker in MARKERS))


def _swap(staging: Path, out: Path) -> None:
    """Move ``staging`` to ``out``, replacing what ``out`` held."""
    if not out.exists():
        staging.rename(out)
        return
    previous = out.with_name(f".{out.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    out.rename(previous)
    staging.rename(out)
    shutil.rmtree(previous, ignore_errors=True)
