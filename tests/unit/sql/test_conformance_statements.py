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

#: Statements of positive cases the parser does not take yet (issue 14: ``STRUCT->*``).
#: The test fails when this list is wrong either way, so a fix must shorten it.
KNOWN_GAPS: set[str] = set()

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
            negative = "expectedException" in case or "expectedError" in case  # QTT's and REST tests' errors
            for fmt in case.get("format") or [None]:
                for stmt in case.get("statements", []):
                    text = stmt.replace("{FORMAT}", fmt) if fmt else stmt
                    yield f"{path.stem} - {case.get('name')}", text, negative


def test_every_statement_of_a_positive_case_parses() -> None:
    failures: dict[str, str] = {}
    count = 0
    for case, text, negative in statements():
        if negative:
            continue
        count += 1
        try:
            parse(text)
        except ParseError as error:
            failures.setdefault(case, str(error))
    assert count > 1000
    unexpected = {case: error for case, error in failures.items() if case not in KNOWN_GAPS}
    assert not unexpected, f"{len(unexpected)} cases did not parse:\n" + "\n".join(
        f"{case}: {error}" for case, error in list(unexpected.items())[:50])
    assert set(failures) == KNOWN_GAPS, f"these known gaps parse now, remove them: {KNOWN_GAPS - set(failures)}"


def test_statements_of_negative_cases_parse_or_raise_parse_error() -> None:
    negatives = [text for _case, text, negative in statements() if negative]
    assert len(negatives) > 100
    for text in negatives:
        with contextlib.suppress(ParseError):
            parse(text)
