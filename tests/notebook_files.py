"""Notebook files written by tests: each cell a string of code, or a :class:`Cell` with tags or outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Cell:
    source: str
    kind: str = "code"
    tags: tuple[str, ...] = ()
    outputs: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def markdown(text: str) -> Cell:
    return Cell(text, "markdown")


def error_output(ename: str, evalue: str) -> dict[str, Any]:
    """A cell's saved error, as Jupyter stores what ``%%stream`` raised."""
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}"]}


def write_notebook(path: Path, *cells: str | Cell) -> Path:
    """A notebook of ``cells`` (nbformat 4) at ``path``."""
    def as_json(cell: str | Cell) -> dict[str, Any]:
        cell = cell if isinstance(cell, Cell) else Cell(cell)
        lines = cell.source.splitlines(keepends=True)
        data: dict[str, Any] = {"cell_type": cell.kind, "metadata": {"tags": list(cell.tags)}, "source": lines}
        if cell.kind == "code":
            data |= {"execution_count": None, "outputs": list(cell.outputs)}
        return data

    path.write_text(json.dumps({"cells": [as_json(c) for c in cells], "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))
    return path
