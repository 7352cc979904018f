"""What the readers hand to the later phases of an export: statements with where they come from.

A reader (:mod:`~nbstream.export.notebook_reader` for a notebook file,
:mod:`~nbstream.export.engine_reader` for a running engine) turns its input into :class:`Contents`:
the ksqlDB statements in the order they ran, each with its :class:`Origin` (a notebook cell and the
line in it, or the engine's object), the Python code that writes into topics (:class:`Feed`), the
Python functions registered as SQL functions (:class:`PythonUdf`), and what failed when it last
ran. Every message of a later phase names the origin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nbstream.sql import ast

#: Cell tags that override the statement-kind rule for a whole cell.
SKIP_TAG = "nbstream-skip"
JOB_TAG = "nbstream-job"


@dataclass(frozen=True)
class Origin:
    """Where a statement comes from: cell ``cell`` (1-based, every cell of the notebook counted)
    at ``line`` (1-based, the magic's line included); ``line`` of the file ``file`` (a job's
    queries.sql); or ``what`` in the running engine."""

    cell: int | None = None
    line: int | None = None
    what: str | None = None
    file: str | None = None

    def __str__(self) -> str:
        if self.file is not None:
            return f"{self.file}, line {self.line}"
        if self.cell is None:
            return f"{self.what or 'the engine'} (in the running engine)"
        return f"cell {self.cell}, line {self.line}" if self.line is not None else f"cell {self.cell}"


@dataclass(frozen=True)
class Sourced:
    """A statement, its origin and the tags of its cell."""

    statement: ast.Statement
    origin: Origin
    tags: frozenset[str] = frozenset()

    @property
    def summary(self) -> str:
        """The statement's first words, to recognise it in a message."""
        text = " ".join(self.statement.text.split())
        return text if len(text) <= 60 else text[:59] + "…"


@dataclass(frozen=True)
class Feed:
    """Python code writing into a topic (``eng.source(topic, …)``, ``produce``, ``produce_batch``);
    ``topic`` None: the topic is an expression the export cannot evaluate."""

    call: str
    topic: str | None
    origin: Origin


@dataclass(frozen=True)
class PythonUdf:
    """A function the notebook registers as SQL function ``name`` (upper case) with
    ``@nbstream.udf`` (``decorator`` ``udf``) or ``@nbstream.udtf``; ``source``: its definition,
    decorators included, when it is a top-level ``def`` of its cell (what a job can carry)."""

    name: str
    decorator: str
    origin: Origin
    source: str | None = None


@dataclass(frozen=True)
class Contents:
    """What a reader found: ``name`` (for the job), statements in running order, feeds, the
    statements that failed when they last ran (with the error they showed), and the Python UDFs
    the notebook defines."""

    name: str
    statements: tuple[Sourced, ...]
    feeds: tuple[Feed, ...] = ()
    failures: tuple[tuple[Origin, str], ...] = ()
    described: str = field(default="")  # where it was read from, for the job's files ("rides.ipynb")
    udfs: tuple[PythonUdf, ...] = ()
    imports: tuple[str, ...] = ()  # the notebook's top-level import statements, for its UDFs' module
