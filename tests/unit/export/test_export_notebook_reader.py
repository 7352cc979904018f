"""Reading a notebook: its %%stream and %stream statements with their cell and line, the cells'
tags, the Python that feeds topics, and the statements that failed when their cell last ran."""

from __future__ import annotations

from pathlib import Path

import pytest
from notebook_files import Cell, error_output, markdown, write_notebook  # type: ignore[import-not-found]

from nbstream.errors import ExportError
from nbstream.export.notebook_reader import read_notebook
from nbstream.export.origin import Origin
from nbstream.sql import ast

STREAM = "CREATE STREAM s (id VARCHAR KEY, n INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);"


def test_statements_keep_their_cell_and_line(tmp_path: Path) -> None:
    contents = read_notebook(write_notebook(
        tmp_path / "n.ipynb", markdown("# title"), "%load_ext nbstream",
        f"%%stream\n{STREAM}\n\nCREATE TABLE t AS\n  SELECT id, COUNT(*) AS c FROM s GROUP BY id;",
        "x = 1\n%stream SELECT * FROM t;\n%stream queries\n%stream stop all"))
    found = [(type(s.statement).__name__, str(s.origin)) for s in contents.statements]
    assert found == [("CreateSource", "cell 3, line 2"), ("CreateAsSelect", "cell 3, line 4"),
                     ("Select", "cell 4, line 2")]
    assert contents.name == "n" and contents.described == "n.ipynb"


def test_a_cell_s_tags_go_with_its_statements(tmp_path: Path) -> None:
    contents = read_notebook(write_notebook(tmp_path / "n.ipynb", Cell(f"%%stream\n{STREAM}", tags=("nbstream-skip",))))
    assert contents.statements[0].tags == frozenset({"nbstream-skip"})


def test_python_feeding_a_topic_is_found_on_the_engine_the_notebook_got_from_nbstream(tmp_path: Path) -> None:
    contents = read_notebook(write_notebook(
        tmp_path / "n.ipynb", "import nbstream\neng = nbstream.current_engine()", f"%%stream\n{STREAM}",
        "eng.source('s', rows(), rate=10)\nother.source('not ours')\neng.produce(topic_name, {})\n"
        "await asyncio.sleep(1)"))
    assert [(f.call, f.topic, str(f.origin)) for f in contents.feeds] == [
        ("source", "s", "cell 3, line 1"), ("produce", None, "cell 3, line 3")]


def test_a_saved_error_is_a_failure_at_the_line_it_names(tmp_path: Path) -> None:
    failed = Cell(f"%%stream\n{STREAM}\nCREATE TABLE t AS SELECT nope FROM s;",
                  outputs=(error_output("StreamError", "BindError: line 2, column 26: column `NOPE` cannot be "
                                                       "resolved"),))
    contents = read_notebook(write_notebook(tmp_path / "n.ipynb", failed))
    ((origin, message),) = contents.failures
    assert origin == Origin(1, 3)
    assert "failed when its cell last ran (StreamError: BindError: line 2" in message


@pytest.mark.parametrize(("text", "expected"), [
    ("{not json", "is not a notebook: it is not JSON (line 1, column 2"),
    ('{"cells": 3}', "is not a Jupyter notebook: it has no list of cells"),
])
def test_a_file_that_is_no_notebook_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.ipynb"
    path.write_text(text)
    with pytest.raises(ExportError) as raised:
        read_notebook(path)
    assert expected in str(raised.value)


def test_a_notebook_without_stream_statements_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"n.ipynb has no %%stream cell"):
        read_notebook(write_notebook(tmp_path / "n.ipynb", "print('hello')", markdown("# just prose")))


def test_a_statement_that_does_not_parse_is_named_by_cell_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as raised:
        read_notebook(write_notebook(tmp_path / "n.ipynb", "1", f"%%stream\n{STREAM}\nSELEC * FROM s;"))
    (problem,) = raised.value.problems
    assert problem.startswith("cell 2, line 3, column 1: ")
    assert "SELEC * FROM s;" in problem


def test_no_cell_is_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    contents = read_notebook(write_notebook(tmp_path / "n.ipynb", f"open({str(marker)!r}, 'w')",
                                            f"%%stream\n{STREAM}"))
    assert not marker.exists()
    assert isinstance(contents.statements[0].statement, ast.CreateSource)


def test_python_udfs_are_found_however_nbstream_s_decorators_are_spelled(tmp_path: Path) -> None:
    contents = read_notebook(write_notebook(
        tmp_path / "n.ipynb",
        "import nbstream\nimport nbstream as nbs\nfrom nbstream import udtf as table_function\n\n"
        "@nbstream.udf(params=['INT'], returns='INT')\ndef twice(n):\n    return n * 2\n\n"
        "@nbs.udf('half', params=['INT'], returns='INT')\ndef halve(n):\n    return n // 2",
        "@table_function(name='words', params=['STRING'], returns='STRING')\ndef split_words(lines):\n"
        "    return lines\n\n"
        "triple = nbstream.udf(params=['INT'], returns='INT')(lambda n: n * 3)\n"
        "nbs.udf(params=['INT'], returns='INT')(cube)\n\n"
        "@functools.cache\n@other.udf(params=['INT'], returns='INT')\ndef not_ours(n):\n    return n",
        f"%%stream\n{STREAM}"))
    assert [(u.name, u.decorator, str(u.origin)) for u in contents.udfs] == [
        ("TWICE", "udf", "cell 1, line 5"), ("HALF", "udf", "cell 1, line 9"), ("WORDS", "udtf", "cell 2, line 1"),
        ("CUBE", "udf", "cell 2, line 6")]  # a lambda has no SQL name: registering it fails anyway
