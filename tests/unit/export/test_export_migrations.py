"""``nbstream export --to migrations``: a ksql-migrations project of one ``V00000N__<what it
creates>.sql`` per notebook cell, numbered without gaps in the job's order, each file starting
with the ``SET`` statements in force at its point of the job — the files as they are written."""

from __future__ import annotations

from pathlib import Path

import pytest
from job_harness import KSQL_GRAMMAR, ksql_grammar_errors  # type: ignore[import-not-found]
from notebook_files import markdown, write_notebook  # type: ignore[import-not-found]

from nbstream.export.pipeline import ExportOptions, ExportReport, export_notebook

S = "CREATE STREAM s (id VARCHAR KEY, n INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);"
U = "CREATE STREAM u (id VARCHAR KEY, n INT) WITH (KAFKA_TOPIC='u', VALUE_FORMAT='JSON', PARTITIONS=1);"

CELLS = (
    markdown("# Counts"),
    f"%%stream\nSET 'auto.offset.reset'='earliest';\nSET 'commit.interval.ms'='100';\n{S}",
    # BIG reads U, which a later cell creates: the job's dependency order splits this cell in two
    "%%stream\nCREATE TABLE per_id AS SELECT id, COUNT(*) AS c FROM s GROUP BY id;\n"
    "CREATE STREAM big AS SELECT * FROM u WHERE n > 10;",
    "%%stream\nSELECT * FROM per_id;\nDESCRIBE s;",  # nothing of a job: no migration
    f"%%stream\nUNSET 'commit.interval.ms';\n{U}",
    "%%stream\nCREATE SOURCE CONNECTOR stocks_gen WITH ('connector.class'='datagen', 'kafka.topic'='stocks', "
    "'quickstart'='stocks');",  # nbstream's own: reported, no migration
)

#: Each file starts with: the default offset reset, the export's --property, then what SET/UNSET changed.
MIGRATIONS = {
    "V000001__s.sql": """\
SET 'auto.offset.reset'='earliest';
SET 'cache.max.bytes.buffering'='0';

-- cell 2, line 2
SET 'auto.offset.reset'='earliest';

-- cell 2, line 3
SET 'commit.interval.ms'='100';

-- cell 2, line 4
CREATE STREAM s (id VARCHAR KEY, n INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);
""",
    "V000002__per_id.sql": """\
SET 'auto.offset.reset'='earliest';
SET 'cache.max.bytes.buffering'='0';
SET 'commit.interval.ms'='100';

-- cell 3, line 2
CREATE TABLE per_id AS SELECT id, COUNT(*) AS c FROM s GROUP BY id;
""",
    "V000003__u.sql": """\
SET 'auto.offset.reset'='earliest';
SET 'cache.max.bytes.buffering'='0';
SET 'commit.interval.ms'='100';

-- cell 5, line 2
UNSET 'commit.interval.ms';

-- cell 5, line 3
CREATE STREAM u (id VARCHAR KEY, n INT) WITH (KAFKA_TOPIC='u', VALUE_FORMAT='JSON', PARTITIONS=1);
""",
    "V000004__big.sql": """\
SET 'auto.offset.reset'='earliest';
SET 'cache.max.bytes.buffering'='0';

-- cell 3, line 3
CREATE STREAM big AS SELECT * FROM u WHERE n > 10;
""",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExportReport]:
    root = tmp_path_factory.mktemp("migrations")
    options = ExportOptions(target="migrations", properties={"cache.max.bytes.buffering": "0"})
    return root / "out", export_notebook(write_notebook(root / "counts.ipynb", *CELLS), root / "out", options)


def test_one_migration_per_cell_numbered_in_the_job_s_order_and_named_after_what_it_creates(
        project: tuple[Path, ExportReport]) -> None:
    out, report = project
    assert report.files == ("README.md", "ksql-migrations.properties", *(f"migrations/{name}" for name in MIGRATIONS))
    assert sorted(p.name for p in (out / "migrations").iterdir()) == list(MIGRATIONS)


@pytest.mark.parametrize("name", MIGRATIONS)
def test_each_migration_starts_with_the_properties_in_force_at_its_point_of_the_job(
        name: str, project: tuple[Path, ExportReport]) -> None:
    out, _ = project
    assert (out / "migrations" / name).read_text() == MIGRATIONS[name]


def test_the_project_properties_and_what_was_left_out(project: tuple[Path, ExportReport]) -> None:
    out, report = project
    assert (out / "ksql-migrations.properties").read_text() == (
        "# ksql-migrations project of 'counts', exported by nbstream.\nksql.server.url=http://localhost:8088\n")
    assert [note.split(": left out ")[0] for note in report.notes] == ["cell 4, line 2", "cell 4, line 3",
                                                                        "cell 6, line 2"]
    assert "datagen's quickstart 'stocks' is nbstream's own" in report.notes[2]


def test_insert_values_kept_with_include_inserts_go_into_their_cell_s_migration(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "n.ipynb", f"%%stream\n{S}\nINSERT INTO s (id, n) VALUES ('a', 1);",
                              "%%stream\nCREATE TABLE per_id AS SELECT id, COUNT(*) AS c FROM s GROUP BY id;")
    report = export_notebook(notebook, tmp_path / "out", ExportOptions(target="migrations", include_inserts=True))
    assert [f for f in report.files if f.startswith("migrations/")] == ["migrations/V000001__s_insert_into_s.sql",
                                                                       "migrations/V000002__per_id.sql"]
    first = (tmp_path / "out" / "migrations" / "V000001__s_insert_into_s.sql").read_text()
    assert first.endswith("-- cell 1, line 3\nINSERT INTO s (id, n) VALUES ('a', 1);\n")


@pytest.mark.skipif(not (KSQL_GRAMMAR / "check.py").exists(), reason=f"no ksqlDB grammar checker at {KSQL_GRAMMAR}")
def test_every_migration_parses_with_ksqldbs_own_grammar(project: tuple[Path, ExportReport]) -> None:
    out, _ = project
    assert ksql_grammar_errors(sorted((out / "migrations").glob("*.sql"))) == []
