"""SHOW, DESCRIBE and EXPLAIN: statements that answer with rows about the catalog."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nbstream.runtime.results import StatementResult
from nbstream.sql import ast

if TYPE_CHECKING:
    from nbstream.runtime.engine import Engine
