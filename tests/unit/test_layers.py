"""The layers: the faces (the notebook, the CLI, the HTTP server) sit over one engine service; no face
imports another, and nothing below the faces imports one (DESIGN.md, *The layers*). Checked on the
syntax tree of every module, so imports inside functions and ``TYPE_CHECKING`` blocks count too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "nbstream"

#: The faces, as module names (a package or a module) and the face each belongs to: the command line
#: is its commands and its shell.
FACES = {"nbstream.notebook": "nbstream.notebook", "nbstream.server": "nbstream.server",
         "nbstream.cli": "nbstream.cli", "nbstream.shell": "nbstream.cli"}

#: What lies below the faces.
BELOW = ("runtime", "export", "plan", "physical", "log", "catalog", "sql", "formats", "connectors", "analysis",
         "client")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every module ``path`` imports, wherever the import statement is."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                package = module_name(path).split(".")[: None if path.name == "__init__.py" else -1]
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield node.lineno, base
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names)


def face_of(module: str) -> str | None:
    return next((face for prefix, face in FACES.items() if module == prefix or module.startswith(prefix + ".")), None)


def modules(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (PACKAGE / folder).rglob("*.py"))


def faces() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if face_of(module_name(path)) is not None)


@pytest.mark.parametrize("path", modules(*BELOW), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_below_the_faces_imports_a_face(path: Path) -> None:
    offending = [f"line {line}: {name}" for line, name in imported(path) if face_of(name) is not None]
    assert not offending, f"{module_name(path)} imports a face: {offending}"


@pytest.mark.parametrize("path", faces(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_face_imports_another_face(path: Path) -> None:
    own = face_of(module_name(path))
    offending = [f"line {line}: {name}" for line, name in imported(path) if face_of(name) not in (None, own)]
    assert not offending, f"{module_name(path)} imports another face: {offending}"


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from nbstream.notebook import session\n    import nbstream.cli\n"
                      "    import nbstream.shell\n")
    names = [name for _, name in imported(module)]
    assert [face_of(n) for n in names] == ["nbstream.notebook", "nbstream.notebook", "nbstream.cli", "nbstream.cli"]
