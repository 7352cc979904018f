"""Expressions written as ksqlDB writes them in its messages."""

from __future__ import annotations

import pytest

from nbstream.sql import parse
from nbstream.sql.text import ksql_text


@pytest.mark.parametrize(("expression", "text"), [
    ("id = NULL", "(ID = null)"),
    ("`Key` <> 'it''s'", "(`Key` <> 'it''s')"),
    ("count >= 100 AND (a < 1 OR NOT b = 2)", "((COUNT >= 100) AND ((A < 1) OR (NOT (B = 2))))"),
    ("MAP(1 := 'cat') + NULL", "(MAP(1:='cat') + null)"),
    ("ARRAY[1, 2, 3] * 5.0", "(ARRAY[1, 2, 3] * 5.0)"),
    ("CAST(x AS INT) IN (1, 2)", "(CAST(X AS INTEGER) IN (1, 2))"),
    ("x BETWEEN 1 AND 2", "(X BETWEEN 1 AND 2)"),
    ("concat(a, 'b') LIKE 'c%'", "(CONCAT(A, 'b') LIKE 'c%')"),
])
def test_ksqldb_rendering(expression: str, text: str) -> None:
    (statement,) = parse(f"SELECT {expression} FROM t;")
    assert ksql_text(statement.query.select.expressions[0]) == text  # type: ignore[attr-defined]
