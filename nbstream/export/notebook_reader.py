"""Reading a notebook file: its ``%%stream`` and ``%stream`` statements, cell by cell, in order.

No cell is run. A ``%%stream`` cell's body is parsed as a script; in other code cells the
``%stream STATEMENTS`` line magics are (its commands — ``queries``, ``stop``, ``status``, ``connect``,
``export`` — are not statements). Each statement keeps its cell's number (every cell of the
notebook counted from 1, as they appear) and its line in the cell, and the cell's tags. Python
code is only read, to find what writes into topics: ``eng.source(topic, …)``, ``eng.produce(…)``
and ``eng.produce_batch(…)`` on an engine the notebook got from nbstream; and the functions it
registers as SQL functions with ``@nbstream.udf(…)`` or ``@nbstream.udtf(…)`` (also imported as
``from nbstream import udf``, or called as ``nbstream.udf(…)(fn)``). A cell whose saved
output is an error is reported as failed, at the line the error names.

Everything wrong is collected and raised together as one :class:`~nbstream.errors.ExportError`:
a file that is not JSON or not a notebook, a statement that does not parse, a notebook without any
``%%stream`` statement.
"""

from __future__ import annotations

import ast as pyast
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from IPython.core.inputtransformer2 import TransformerManager

from nbstream.errors import ExportError, ParseError
from nbstream.export.origin import Contents, Feed, Origin, PythonUdf, Sourced
from nbstream.sql import parse

#: ``%stream`` line commands that are not statements (see nbstream.notebook.magics).
COMMANDS = frozenset({"queries", "stop", "status", "connect", "export"})

#: Engine methods that write Python data into a topic (their first argument).
FEED_CALLS = frozenset({"source", "produce", "produce_batch"})

#: The decorators registering a Python function as a SQL function (nbstream.udfs).
UDF_DECORATORS = frozenset({"udf", "udtf"})

#: Calls that give a notebook its engine (``eng = nbstream.current_engine()``).
ENGINE_FACTORIES = frozenset({"current_engine", "Engine", "EngineService", "connect"})

_ERROR_LINE = re.compile(r"\bline (\d+), column \d+")


def read_notebook(path: Path) -> Contents:
    """The statements, feeds and failures of the notebook file ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ExportError([f"{path}: cannot read it: {error}"]) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ExportError([f"{path} is not a notebook: it is not JSON (line {error.lineno}, column "
                           f"{error.colno}: {error.msg})"]) from None
    cells = document.get("cells") if isinstance(document, dict) else None
    if not isinstance(cells, list):
        raise ExportError([f"{path} is not a Jupyter notebook: it has no list of cells"])
    return read_cells(cells, name=path.stem, described=path.name)


def read_cells(cells: Sequence[Any], *, name: str, described: str) -> Contents:
    """The statements, feeds and failures of a notebook's ``cells`` (its JSON)."""
    statements: list[Sourced] = []
    feeds: list[Feed] = []
    failures: list[tuple[Origin, str]] = []
    problems: list[str] = []
    engines = _engine_names(cells)
    nbstream_names = _nbstream_names(cells)
    udfs: list[PythonUdf] = []
    imports: list[str] = []
    for number, cell in enumerate(cells, 1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = _source(cell)
        tags = frozenset(t for t in (cell.get("metadata") or {}).get("tags", []) if isinstance(t, str))
        found = list(_cell_statements(number, source, tags, problems))
        statements += found
        if not source.startswith("%%"):
            feeds += _feeds(number, source, engines)
            udfs += _udfs(number, source, nbstream_names)
            imports += [i for i in _imports(source) if i not in imports]
        if found:
            failures += _failures(number, cell, source)
    if not statements and not problems:
        problems.append(f"{described} has no %%stream cell (nor %stream statement): there is nothing to export")
    if problems:
        raise ExportError(problems)
    return Contents(name, tuple(statements), tuple(feeds), tuple(failures), described, tuple(udfs), tuple(imports))


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


# -- statements ---------------------------------------------------------------------------------------


def _cell_statements(number: int, source: str, tags: frozenset[str], problems: list[str]) -> Iterator[Sourced]:
    if source.startswith("%%stream"):
        _, _, body = source.partition("\n")
        yield from _parsed(number, body, 1, tags, problems)
        return
    if source.startswith("%%"):
        return  # another cell magic: its body is not Python
    for line, argument in _line_magics(source):
        command = argument.strip().split(" ", 1)[0].lower()
        if argument.strip() and command not in COMMANDS:
            yield from _parsed(number, argument, line - 1, tags, problems)


def _parsed(number: int, script: str, offset: int, tags: frozenset[str], problems: list[str]) -> Iterator[Sourced]:
    """The statements of ``script``, which starts at line ``offset + 1`` of cell ``number``."""
    try:
        statements = parse(script)
    except ParseError as error:
        problems.append(_located(number, offset, error))
        return
    for statement in statements:
        line = offset + (statement.span.line if statement.span is not None else 1)
        yield Sourced(statement, Origin(number, line), tags)


def _located(number: int, offset: int, error: ParseError) -> str:
    if error.span is None:
        return f"cell {number}: {error.message}"
    return (f"cell {number}, line {offset + error.span.line}, column {error.span.column}: {error.message}\n"
            f"{error.span.highlight()}")


def _line_magics(source: str) -> Iterator[tuple[int, str]]:
    """(line, argument) of every ``%stream`` line magic in a Python cell."""
    for call in _calls(source):
        func = call.func
        if isinstance(func, pyast.Attribute) and func.attr == "run_line_magic" and len(call.args) == 2:
            magic, argument = call.args
            if isinstance(magic, pyast.Constant) and magic.value == "stream" and isinstance(argument, pyast.Constant):
                yield call.lineno, str(argument.value)


def _tree(source: str) -> pyast.AST | None:
    """A Python cell's syntax tree, magics turned into the calls IPython makes (line numbers kept);
    None if the cell is not Python."""
    try:
        code = TransformerManager().transform_cell(source)
        tree: pyast.AST = compile(code, "<cell>", "exec",
                                  flags=pyast.PyCF_ONLY_AST | pyast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except (SyntaxError, ValueError):
        return None
    blank = len(source.splitlines()) - len(source.lstrip().splitlines()) if source.strip() else 0
    return pyast.increment_lineno(tree, blank)  # IPython drops a cell's leading blank lines


def _calls(source: str) -> list[pyast.Call]:
    """Every call in a Python cell (see :func:`_tree`)."""
    tree = _tree(source)
    return [] if tree is None else [node for node in pyast.walk(tree) if isinstance(node, pyast.Call)]


# -- Python writing into topics ----------------------------------------------------------------------------


def _engine_names(cells: Sequence[Any]) -> set[str]:
    """Names the notebook binds to an nbstream engine (``eng = nbstream.current_engine()``)."""
    names: set[str] = set()
    for cell in cells:
        tree = _tree(_source(cell)) if isinstance(cell, dict) and cell.get("cell_type") == "code" else None
        for node in pyast.walk(tree) if tree is not None else ():
            if isinstance(node, pyast.Assign) and isinstance(node.value, pyast.Call) \
                    and _callee(node.value) in ENGINE_FACTORIES:
                names.update(t.id for t in node.targets if isinstance(t, pyast.Name))
    return names


def _callee(call: pyast.Call) -> str | None:
    func = call.func
    if isinstance(func, pyast.Attribute):
        return func.attr
    return func.id if isinstance(func, pyast.Name) else None


def _feeds(number: int, source: str, engines: set[str]) -> list[Feed]:
    found = []
    for call in _calls(source):
        func = call.func
        if not (isinstance(func, pyast.Attribute) and func.attr in FEED_CALLS and _is_engine(func.value, engines)):
            continue
        topic = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "topic"), None)
        literal = topic.value if isinstance(topic, pyast.Constant) and isinstance(topic.value, str) else None
        found.append(Feed(func.attr, literal, Origin(number, call.lineno)))
    return found


def _is_engine(node: pyast.expr, engines: set[str]) -> bool:
    if isinstance(node, pyast.Name):
        return node.id in engines
    return isinstance(node, pyast.Call) and _callee(node) in ENGINE_FACTORIES


# -- Python UDFs ------------------------------------------------------------------------------------------------


def _nbstream_names(cells: Sequence[Any]) -> dict[str, str | None]:
    """Names the notebook binds by importing nbstream: the module (``import nbstream as nbs``: ``nbs``
    → None) and its UDF decorators (``from nbstream import udf as u``: ``u`` → ``udf``)."""
    names: dict[str, str | None] = {}
    for cell in cells:
        tree = _tree(_source(cell)) if isinstance(cell, dict) and cell.get("cell_type") == "code" else None
        for node in pyast.walk(tree) if tree is not None else ():
            if isinstance(node, pyast.Import):
                names.update({a.asname or a.name: None for a in node.names if a.name == "nbstream"})
            elif isinstance(node, pyast.ImportFrom) and node.module in ("nbstream", "nbstream.udfs"):
                names.update({a.asname or a.name: a.name for a in node.names if a.name in UDF_DECORATORS})
    return names


def _udfs(number: int, source: str, names: dict[str, str | None]) -> list[PythonUdf]:
    """The functions a Python cell registers with ``@nbstream.udf(…)``/``@nbstream.udtf(…)``, or by
    calling ``nbstream.udf(…)(fn)``."""
    tree = _tree(source)
    found = []
    top_level = set(map(id, tree.body)) if isinstance(tree, pyast.Module) else set()
    for node in pyast.walk(tree) if tree is not None else ():
        if isinstance(node, pyast.FunctionDef | pyast.AsyncFunctionDef):
            definition = _definition(source, node) if id(node) in top_level else None
            for decorator in node.decorator_list:
                udf = _udf(number, decorator, node.name, names)
                found += [replace(udf, source=definition)] if udf is not None else []
        elif isinstance(node, pyast.Call) and isinstance(node.func, pyast.Call) and len(node.args) == 1:
            fn = node.args[0]
            udf = _udf(number, node.func, fn.id if isinstance(fn, pyast.Name) else "", names)
            found += [udf] if udf is not None else []
    return sorted(found, key=lambda u: u.origin.line or 0)


def _definition(source: str, node: pyast.FunctionDef | pyast.AsyncFunctionDef) -> str | None:
    """The text of the top-level ``def`` ``node``, from its first decorator to its last line (None
    when the cell holds magics, whose lines IPython rewrote)."""
    if any(line.lstrip().startswith(("%", "!")) for line in source.splitlines()):
        return None
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return "\n".join(source.splitlines()[first - 1:node.end_lineno]) + "\n"


def _imports(source: str) -> list[str]:
    """The top-level import statements of a Python cell, as written."""
    if source.startswith("%%") or any(line.lstrip().startswith(("%", "!")) for line in source.splitlines()):
        return []
    tree = _tree(source)
    body = tree.body if isinstance(tree, pyast.Module) else []
    return [text for node in body if isinstance(node, pyast.Import | pyast.ImportFrom)
            and (text := pyast.get_source_segment(source, node)) is not None]


def _udf(number: int, node: pyast.expr, function: str, names: dict[str, str | None]) -> PythonUdf | None:
    """The UDF ``node`` registers, if it is a call of nbstream's ``udf`` or ``udtf`` decorator."""
    if not isinstance(node, pyast.Call):
        return None
    func = node.func
    if isinstance(func, pyast.Attribute) and isinstance(func.value, pyast.Name) and func.value.id in names \
            and names[func.value.id] is None and func.attr in UDF_DECORATORS:
        decorator = func.attr
    elif isinstance(func, pyast.Name) and names.get(func.id) is not None:
        decorator = str(names[func.id])
    else:
        return None
    given = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "name"), None)
    name = given.value if isinstance(given, pyast.Constant) and isinstance(given.value, str) else function
    return PythonUdf(name.upper(), decorator, Origin(number, node.lineno)) if name else None


# -- what failed when it last ran ----------------------------------------------------------------------------


def _failures(number: int, cell: dict[str, Any], source: str) -> list[tuple[Origin, str]]:
    """The errors a cell's saved outputs show, at the line of the cell they name."""
    found = []
    offset = 1 if source.startswith("%%") else 0
    for output in cell.get("outputs") or []:
        if not isinstance(output, dict) or output.get("output_type") != "error":
            continue
        text = str(output.get("evalue", ""))
        match = _ERROR_LINE.search(text)
        origin = Origin(number, offset + int(match.group(1))) if match else Origin(number)
        first = text.splitlines()[0] if text else ""
        found.append((origin, f"this statement failed when its cell last ran ({output.get('ename', 'Error')}: "
                              f"{first}); fix it and run the cell again before exporting"))
    return found
