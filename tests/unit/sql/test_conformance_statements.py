"""Every statement of ksqlDB's query-validation tests parses (or fails only with ParseError).

Reads ``../shared/conformance/ksql-qtt/**/*.json`` beside the repository; skipped when absent.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbstream.errors import ParseError
from nbstream.sql import parse

QTT = Path(__file__).parents[3].parent / "shared" / "conformance" / "ksql-qtt"

pytestmark = pytest.mark.skipif(not QTT.is_dir(), reason="../shared/conformance is absent")


def strip_comments(text: str) -> str:
    """JSON with ``//`` and ``/* */`` comments → JSON (comments inside strings are kept)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            i = text.find("\n", i) if "\n" in text[i:] else n
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def statements() -> Iterator[tuple[str, str, bool]]:
    """``(case name, statement, expects an exception)`` for every statement of every case."""
    for path in sorted(QTT.rglob("*.json")):
        cases = json.loads(strip_comments(path.read_text())).get("tests", [])
        for case in cases:
            negative = "expectedException" in case or "expectedError" in case  # QTT, REST QTT
            for fmt in case.get("format") or [None]:
                for stmt in case.get("statements", []):
                    text = stmt.replace("{FORMAT}", fmt) if fmt else stmt
                    yield f"{path.stem} - {case.get('name')}", text, negative


def test_every_statement_of_a_positive_case_parses() -> None:
    failures, count = [], 0
    for case, text, negative in statements():
        if negative:
            continue
        count += 1
        try:
            parse(text)
        except ParseError as error:
            failures.append(f"{case}: {error}")
    assert count > 1000
    assert not failures, f"{len(failures)} of {count} did not parse:\n" + "\n".join(failures[:50])


def test_statements_of_negative_cases_parse_or_raise_parse_error() -> None:
    for _case, text, negative in statements():
        if negative:
            with contextlib.suppress(ParseError):
                parse(text)
