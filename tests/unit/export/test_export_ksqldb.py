"""``nbstream export --to ksqldb``: a queries file ksqlDB's headless mode runs as it is (statements
with their columns written out, no connector, no INSERT … VALUES), the server's properties, the
connectors Kafka Connect can run in files of their own, and a note for each statement only nbstream
runs — the files as they are written, byte for byte."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from job_harness import KSQL_GRAMMAR, ksql_grammar_errors  # type: ignore[import-not-found]
from notebook_files import markdown, write_notebook  # type: ignore[import-not-found]

from nbstream.export.pipeline import ExportOptions, ExportReport, export_notebook

CELLS = (
    markdown("# A shop"),
    "%%stream\nSET 'auto.offset.reset'='earliest';\n"
    "CREATE SOURCE CONNECTOR pageviews_gen WITH ('connector.class'='datagen', 'kafka.topic'='pageviews',\n"
    "  'quickstart'='pageviews', 'max.interval'=50, 'iterations'=100, 'random.seed'=3);\n"
    "CREATE STREAM pageviews WITH (KAFKA_TOPIC='pageviews', VALUE_FORMAT='JSON');",
    "%%stream\nCREATE TABLE views_per_user AS\n  SELECT userid, COUNT(*) AS views FROM pageviews GROUP BY userid;\n"
    "SELECT * FROM views_per_user EMIT CHANGES;",
    "%%stream\nCREATE SOURCE CONNECTOR stocks_gen WITH ('connector.class'='datagen', 'kafka.topic'='stocks', "
    "'quickstart'='stocks');\n"
    "CREATE TABLE quotes WITH (KAFKA_TOPIC='stocks', VALUE_FORMAT='JSON');\n"
    "CREATE SINK CONNECTOR views_out WITH ('connector.class'='parquet', 'source'='views_per_user', 'path'='/tmp/v');\n"
    "INSERT INTO pageviews (viewtime, userid, pageid) VALUES (1, 'User_1', 'Page_1');",
)


@dataclass(frozen=True)
class Exported:
    out: Path
    report: ExportReport

    def file(self, name: str) -> str:
        return (self.out / name).read_text()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """The notebook above, exported with --include-inserts and two job properties."""
    root = tmp_path_factory.mktemp("ksqldb")
    options = ExportOptions(target="ksqldb", include_inserts=True,
                            properties={"commit.interval.ms": "500", "ksql.streams.num.stream.threads": "2"})
    report = export_notebook(write_notebook(root / "shop.ipynb", *CELLS), root / "out", options)
    return Exported(root / "out", report)


def test_the_export_writes_the_queries_the_properties_the_connectors_and_a_readme(shop: Exported) -> None:
    assert shop.report.files == ("README.md", "connectors.json", "connectors.sql", "ksql-server.properties",
                                 "queries.sql")
    assert shop.report.queries == ("CTAS_VIEWS_PER_USER_0",)


def test_the_queries_file_holds_headless_statements_with_every_create_s_columns_written_out(shop: Exported) -> None:
    assert shop.file("queries.sql") == """\
-- ksqlDB headless queries of 'shop' (shop.ipynb), by nbstream.

-- cell 2, line 2
SET 'auto.offset.reset'='earliest';

-- cell 2, line 5
CREATE STREAM pageviews (`VIEWTIME` BIGINT, `USERID` STRING, `PAGEID` STRING) \
WITH (KAFKA_TOPIC='pageviews', VALUE_FORMAT='JSON');

-- cell 3, line 2
CREATE TABLE views_per_user AS
  SELECT userid, COUNT(*) AS views FROM pageviews GROUP BY userid;

-- cell 4, line 3
CREATE TABLE quotes (`SYMBOL` STRING PRIMARY KEY, `PRICE` DOUBLE, `QUANTITY` INTEGER, `SIDE` STRING) \
WITH (KAFKA_TOPIC='stocks', VALUE_FORMAT='JSON');
"""


def test_the_server_properties_name_the_queries_file_the_service_and_the_job_s_properties(shop: Exported) -> None:
    assert shop.file("ksql-server.properties") == """\
# ksqlDB headless server for 'shop', exported by nbstream.
# Every server of the cluster must get the same queries file. Headless mode has no REST API.
bootstrap.servers=localhost:9092
ksql.service.id=shop_
ksql.queries.file=queries.sql
ksql.streams.auto.offset.reset=earliest
ksql.streams.commit.interval.ms=500
ksql.streams.num.stream.threads=2
"""


def test_a_job_property_overrides_a_default_and_every_name_is_written_once(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "shop.ipynb", *CELLS[:3])
    options = ExportOptions(target="ksqldb", properties={"auto.offset.reset": "latest", "ksql.service.id": "shop-1",
                                                         "ksql.queries.file": "elsewhere.sql"})
    export_notebook(notebook, tmp_path / "out", options)
    lines = (tmp_path / "out" / "ksql-server.properties").read_text().splitlines()[2:]
    assert lines == ["bootstrap.servers=localhost:9092", "ksql.service.id=shop-1", "ksql.queries.file=queries.sql",
                     "ksql.streams.auto.offset.reset=latest"]


def test_connectors_kafka_connect_can_run_go_to_files_of_their_own(shop: Exported) -> None:
    assert "CONNECTOR" not in shop.file("queries.sql")
    assert shop.file("connectors.sql") == """\
-- cell 2, line 3
CREATE SOURCE CONNECTOR PAGEVIEWS_GEN WITH (
  'key.converter'='org.apache.kafka.connect.storage.StringConverter',
  'value.converter'='org.apache.kafka.connect.json.JsonConverter',
  'value.converter.schemas.enable'='false',
  'connector.class'='io.confluent.kafka.connect.datagen.DatagenConnector',
  'kafka.topic'='pageviews',
  'quickstart'='pageviews',
  'max.interval'='50',
  'iterations'='100');
"""
    assert json.loads(shop.file("connectors.json")) == [{"name": "PAGEVIEWS_GEN", "config": {
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "connector.class": "io.confluent.kafka.connect.datagen.DatagenConnector",
        "kafka.topic": "pageviews", "quickstart": "pageviews", "max.interval": "50", "iterations": "100"}}]


NOT_EXPORTED = [
    "cell 3, line 4: left out SELECT * FROM views_per_user EMIT CHANGES (a push query)",
    "cell 4, line 2: left out CREATE SOURCE CONNECTOR stocks_gen WITH ('connector.class'=…: datagen's quickstart "
    "'stocks' is nbstream's own (kafka-connect-datagen has orders, pageviews, users of nbstream's): feed topic "
    "'stocks' another way",
    "cell 4, line 4: left out CREATE SINK CONNECTOR views_out WITH ('connector.class'='pa…: 'parquet' is a connector "
    "of nbstream's own (it runs in nbstream only)",
    "cell 4, line 5: left out INSERT INTO pageviews (viewtime, userid, pageid) VALUES (1,…: ksqlDB's headless mode "
    "runs no INSERT … VALUES (use --to migrations, or feed the topic)",
]


def test_what_only_nbstream_runs_is_reported_statement_by_statement_in_the_report_and_the_readme(
        shop: Exported) -> None:
    assert list(shop.report.notes) == NOT_EXPORTED
    readme = shop.file("README.md")
    assert readme.startswith("# shop for ksqlDB\n")
    assert readme.split("## Not exported\n\n")[1] == "".join(f"- {note}\n" for note in NOT_EXPORTED)


@pytest.mark.skipif(not (KSQL_GRAMMAR / "check.py").exists(), reason=f"no ksqlDB grammar checker at {KSQL_GRAMMAR}")
def test_every_sql_file_parses_with_ksqldbs_own_grammar(shop: Exported) -> None:
    assert ksql_grammar_errors([shop.out / "queries.sql", shop.out / "connectors.sql"]) == []
