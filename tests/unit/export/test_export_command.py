"""``nbstream export``: bad notebooks get a clear error naming the cell and line and write nothing; an
export never holds a secret; the folder is written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest
from notebook_files import Cell, error_output, write_notebook  # type: ignore[import-not-found]

from nbstream.cli import main
from nbstream.export.job import load_job

S = "CREATE STREAM s (id VARCHAR KEY, n INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);"
T = "CREATE TABLE t AS SELECT id, COUNT(*) AS c FROM s GROUP BY id;"
GOOD = (f"%%stream\n{S}\n{T}",)


def export(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["export", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


BAD = {
    "not JSON": (None, "is not a notebook: it is not JSON (line 1, column 1"),
    "no %%stream cell": (("import pandas", "x = 1"), "has no %%stream cell (nor %stream statement): there is "
                                                     "nothing to export"),
    "a failing statement": ((f"%%stream\n{S}", "%%stream\n-- counts\nCREATE TABLE t AS\n  SELECT id, COUNT(nope) "
                                               "AS c FROM s GROUP BY id;"),
                            "cell 2, line 3: CREATE TABLE t AS SELECT id, COUNT(nope) AS c FROM s GROUP …: "
                            "UnknownColumnError: Column 'NOPE' cannot be resolved in S."),
    "a statement that failed when it ran": (
        (Cell(f"%%stream\n{S}\n{T}", outputs=(error_output("StreamError", "CatalogError: line 2, column 1: Cannot add "
                                                                          "table 'T'"),)),),
        "cell 1, line 3: this statement failed when its cell last ran (StreamError: CatalogError"),
    "a Python source": (("import nbstream\neng = nbstream.current_engine()", *GOOD, "\n\neng.source('s', rows)"),
                        "cell 3, line 3: Python feeds topic 's' (eng.source), which the job reads; a job runs no "
                        "Python: feed the topic from outside and export with --allow-missing-input"),
    "a Python UDF in a cell with magics": (
        ("%load_ext nbstream\nimport nbstream\n\n@nbstream.udf(params=['INT'], returns='INT')\ndef twice(n):\n"
         "    return n * 2",
         f"%%stream\n{S}\nCREATE STREAM doubled AS\n  SELECT id, TWICE(n) AS n2 FROM s;"),
        "cell 2, line 3: CREATE STREAM doubled AS SELECT id, TWICE(n) AS n2 FROM s calls TWICE, a Python "
        "UDF (@nbstream.udf in cell 1, line 4), which this export cannot carry: only an nbstream job does (its "
        "udfs.py), and only a top-level decorated def of a cell without magics; compute it in SQL, or tag the cell "
        "nbstream-skip"),
    "an unbound :name": ((f"%%stream\n{S}\nCREATE STREAM big AS SELECT * FROM s WHERE n > :limit;",),
                         "cell 1, line 3: CREATE STREAM big AS SELECT * FROM s WHERE n > :limit uses the notebook "
                         "variable :limit; a job has none: give the value (--param limit=VALUE)"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_notebook_gets_a_clear_error_and_nothing_is_written(case: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cells, expected = BAD[case]
    notebook = tmp_path / "bad.ipynb"
    if cells is None:
        notebook.write_text("this is not a notebook")
    else:
        write_notebook(notebook, *cells)
    for target in ("nbstream", "ksqldb", "migrations"):
        status, out, err = export(capsys, str(notebook), "--to", target, "-o", str(tmp_path / "out"))
        assert status == 1
        assert err.startswith("nbstream export: cannot export: 1 problem\n  - ")
        assert expected in err, err
        assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ipynb"]


def test_an_error_with_a_place_in_the_statement_is_shown_there(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    notebook = write_notebook(tmp_path / "bad.ipynb", f"%%stream\n{S}\n{T}", "%%stream\n\nCREATE STREAM other (\n"
                              "  id VARCHAR KEY, ROWTIME BIGINT) WITH (KAFKA_TOPIC='o', VALUE_FORMAT='JSON');")
    _, _, err = export(capsys, str(notebook))
    assert "- cell 2, line 4, column 19: BindError: 'ROWTIME' is a reserved column name." in err
    assert "\n        id VARCHAR KEY, ROWTIME BIGINT) WITH (KAFKA_TOPIC='o', VALUE_FORMAT='JSON')\n" \
           "                        ^^^^^^^\n" in err


def test_an_export_never_holds_a_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = write_notebook(tmp_path / "n.ipynb", *GOOD)
    status, _, err = export(capsys, str(notebook), "--kafka", "broker:9093", "--kafka-option",
                            "security_protocol=SASL_SSL", "--kafka-option", "sasl_mechanism=PLAIN",
                            "--kafka-option", "sasl_plain_username=svc",
                            "--kafka-option", "sasl_plain_password=hunter2", "-o", str(tmp_path / "job"))
    assert status == 1 and "sasl_plain_password must be a reference, env:NAME or file:PATH" in err
    status, _, err = export(capsys, str(notebook), "--property", "ssl.key.password=hunter2",
                            "-o", str(tmp_path / "job"))
    assert status == 1 and "property ssl.key.password holds a secret" in err
    connector = write_notebook(tmp_path / "c.ipynb", *GOOD, "%%stream\nCREATE SINK CONNECTOR out WITH ("
                               "'connector.class'='parquet', 'source'='t', 'path'='/tmp', 'password'='hunter2');")
    status, _, err = export(capsys, str(connector), "-o", str(tmp_path / "job"))
    assert status == 1 and "connector OUT: property password holds a secret" in err
    assert not (tmp_path / "job").exists()

    monkeypatch.setenv("KAFKA_PASSWORD", "hunter2")
    status, _, _ = export(capsys, str(notebook), "--kafka", "broker:9093", "--kafka-option",
                          "security_protocol=SASL_SSL", "--kafka-option", "sasl_mechanism=PLAIN", "--kafka-option",
                          "sasl_plain_username=svc", "--kafka-option", "sasl_plain_password=env:KAFKA_PASSWORD",
                          "-o", str(tmp_path / "job"))
    assert status == 0
    config = load_job(tmp_path / "job").config
    assert config.log.options["sasl_plain_password"] == "env:KAFKA_PASSWORD"
    assert config.log.bootstrap == "broker:9093"
    assert not [p for p in (tmp_path / "job").rglob("*") if p.is_file() and "hunter2" in p.read_text()]


def test_an_earlier_export_is_replaced_anything_else_is_kept(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    notebook = write_notebook(tmp_path / "n.ipynb", *GOOD)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    status, _, err = export(capsys, str(notebook), "-o", str(tmp_path / "mine"))
    assert status == 1 and "holds no earlier export" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert export(capsys, str(notebook), "-o", str(tmp_path / "job"))[0] == 0
    assert export(capsys, str(notebook), "--to", "ksqldb", "-o", str(tmp_path / "job"))[0] == 0
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == ["README.md", "ksql-server.properties",
                                                                     "queries.sql"]
    write_notebook(notebook, f"%%stream\n{S}\nCREATE TABLE t AS SELECT nope FROM s;")
    assert export(capsys, str(notebook), "--to", "ksqldb", "-o", str(tmp_path / "job"))[0] == 1
    assert (tmp_path / "job" / "ksql-server.properties").exists(), "a failed export leaves the earlier one"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folder is left behind"


def test_the_job_folder_reads_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notebook = write_notebook(tmp_path / "rides.ipynb", *GOOD)
    status, out, _ = export(capsys, str(notebook), "--property", "ksql.streams.num.stream.threads=2", "--listen",
                            "none")
    assert status == 0 and out.startswith("Exported 1 persistent query (CTAS_T_0) to ")
    job = load_job(tmp_path / "rides-job")
    assert (job.config.name, job.config.exported_from, job.config.listen) == ("rides", "rides.ipynb", "none")
    assert job.config.properties == {"ksql.streams.num.stream.threads": "2"}
    assert [q["id"] for q in job.plans["queries"]] == ["CTAS_T_0"]
    assert job.queries_sql.count("-- cell 1, line ") == 2
    dockerfile = (tmp_path / "rides-job" / "Dockerfile").read_text()
    for expected in ("FROM python:3.11-slim", "RUN pip install --no-cache-dir nbstream==", "USER nbstream",
                     "VOLUME /var/lib/nbstream", "HEALTHCHECK", "/chc/ready", 'CMD ["nbstream", "run", "."'):
        assert expected in dockerfile
