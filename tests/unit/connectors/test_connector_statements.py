"""Connectors through SQL: CREATE/SHOW/DESCRIBE/DROP CONNECTOR, column-less CREATE STREAM/TABLE
over a connector's topic, durability across restarts, and a datagen → CTAS run end to end."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import cast

import duckdb
import pandas as pd
import pytest

from nbstream import Engine
from nbstream.connectors.running import Connectors
from nbstream.errors import CatalogError, ParseError, UnsupportedError
from nbstream.log.base import SqlLog
from nbstream.sql import ast, parse

START = 1_700_000_000_000


class ManualClock:
    """The connector clock, advanced by hand (epoch ms)."""

    def __init__(self, now: int = START) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def engine_with_clock(path: Path | None = None) -> tuple[Engine, ManualClock]:
    eng = Engine(path)
    clock = ManualClock()
    eng.connectors.clock = clock
    return eng, clock


def run_for(eng: Engine, clock: ManualClock, seconds: int) -> None:
    for _ in range(seconds):
        clock.advance(1000)
        eng.run_until_idle()


def connector_sql(name: str, quickstart: str, topic: str, interval: int = 50, iterations: int = 1000) -> str:
    return (f"CREATE SOURCE CONNECTOR {name} WITH ('connector.class'='datagen', 'kafka.topic'='{topic}', "
            f"'quickstart'='{quickstart}', 'max.interval'={interval}, 'iterations'={iterations})")


# -- parsing -----------------------------------------------------------------------------------


def test_create_source_connector_parses_quoted_keys_keeping_case_and_typed_values() -> None:
    [stmt] = parse(connector_sql("rides_gen", "rides", "rides"))
    assert replace(stmt, text="", span=None) == ast.CreateConnector("SOURCE", "RIDES_GEN", {
        "connector.class": "datagen", "kafka.topic": "rides", "quickstart": "rides", "max.interval": 50,
        "iterations": 1000})


def test_create_sink_connector_parses_for_sink_classes() -> None:
    [stmt] = parse("CREATE SINK CONNECTOR s WITH ('connector.class'='parquet', 'topics'='a')")
    assert isinstance(stmt, ast.CreateConnector) and stmt.kind == "SINK"


def test_connector_statement_without_with_clause_is_still_a_statement() -> None:
    with pytest.raises(ParseError, match="expecting"):
        parse("CREATE SOURCE CONNECTOR WITH ('a'='b')")


# -- registry errors ---------------------------------------------------------------------------


def test_unknown_connector_class_lists_known_classes_and_the_near_miss() -> None:
    eng = Engine()
    with pytest.raises(CatalogError, match=r"connector G: unknown connector.class 'datagn' \(known source "
                                           r"connector classes: datagen, file\)\. Did you mean `datagen`\?"):
        eng.execute("CREATE SOURCE CONNECTOR g WITH ('connector.class'='datagn', 'kafka.topic'='t')")


def test_kafka_connect_class_name_is_an_alias_of_datagen() -> None:
    eng = Engine()
    eng.execute("CREATE SOURCE CONNECTOR g WITH ('connector.class'='io.confluent.kafka.connect.datagen."
                "DatagenConnector', 'kafka.topic'='t', 'quickstart'='users')")
    assert eng.execute("SHOW CONNECTORS")[0].rows[0][:3] == ("G", "SOURCE", "datagen")


def test_a_source_class_is_no_sink_connector() -> None:
    with pytest.raises(CatalogError, match="'datagen' is a source connector class, not a sink one "
                                           r"\(known sink connector classes: file, parquet, duckdb\)"):
        Engine().execute("CREATE SINK CONNECTOR s WITH ('connector.class'='datagen', 'kafka.topic'='t')")


def test_missing_connector_class_is_an_error() -> None:
    with pytest.raises(CatalogError, match=r"'connector\.class' is missing"):
        Engine().execute("CREATE SOURCE CONNECTOR s WITH ('kafka.topic'='t')")


def test_missing_kafka_topic_is_an_error() -> None:
    with pytest.raises(CatalogError, match=r"needs 'kafka\.topic'"):
        Engine().execute("CREATE SOURCE CONNECTOR s WITH ('connector.class'='datagen', 'quickstart'='users')")


def test_unknown_quickstart_suggests_the_nearest() -> None:
    with pytest.raises(CatalogError, match=r"unknown quickstart 'pageview'.*Did you mean `pageviews`"):
        Engine().execute("CREATE SOURCE CONNECTOR s WITH ('connector.class'='datagen', 'kafka.topic'='t', "
                         "'quickstart'='pageview')")


def test_a_second_connector_of_the_same_name_is_an_error_unless_if_not_exists() -> None:
    eng = Engine()
    eng.execute(connector_sql("g", "users", "users"))
    with pytest.raises(CatalogError, match="Connector G already exists"):
        eng.execute(connector_sql("g", "users", "users"))
    result = eng.execute(connector_sql("g", "users", "users").replace("CONNECTOR g", "CONNECTOR IF NOT EXISTS g"))
    assert result[0].message == "Connector G exists already"


# -- running, SHOW, DESCRIBE, DROP -------------------------------------------------------------


def test_create_connector_creates_its_topic() -> None:
    eng = Engine()
    eng.execute(connector_sql("g", "pageviews", "pv"))
    assert "pv" in eng.list_topics()


def test_connector_writes_exactly_its_iterations_then_shows_finished() -> None:
    eng, clock = engine_with_clock()
    eng.execute(connector_sql("g", "pageviews", "pv", interval=20, iterations=321))
    run_for(eng, clock, 30)
    assert len(eng.consume("pv")) == 321
    assert eng.execute("SHOW CONNECTORS")[0].rows == (("G", "SOURCE", "datagen", "FINISHED", "pv", 321),)


def test_describe_connector_shows_its_configuration_and_progress() -> None:
    eng, clock = engine_with_clock()
    eng.execute(connector_sql("g", "stocks", "stocks", interval=100, iterations=5000))
    run_for(eng, clock, 2)
    rows = dict(eng.execute("DESCRIBE CONNECTOR g")[0].rows)
    assert rows["State"] == "RUNNING" and rows["quickstart"] == "stocks" and rows["max.interval"] == 100
    assert 0 < rows["records produced"] == len(eng.consume("stocks"))


def test_describe_unknown_connector_suggests_the_nearest() -> None:
    eng = Engine()
    eng.execute(connector_sql("rides_gen", "rides", "rides"))
    with pytest.raises(CatalogError, match=r"Connector RIDE_GEN does not exist\. Did you mean `RIDES_GEN`"):
        eng.execute("DESCRIBE CONNECTOR ride_gen")


def test_drop_connector_stops_it_and_keeps_its_records() -> None:
    eng, clock = engine_with_clock()
    eng.execute(connector_sql("g", "users", "users", interval=10, iterations=100_000))
    run_for(eng, clock, 2)
    written = len(eng.consume("users"))
    assert written > 0
    eng.execute("DROP CONNECTOR g")
    run_for(eng, clock, 5)
    assert len(eng.consume("users")) == written
    assert eng.execute("SHOW CONNECTORS")[0].rows == ()


def test_drop_connector_if_exists_of_a_missing_one_is_no_error() -> None:
    eng = Engine()
    assert eng.execute("DROP CONNECTOR IF EXISTS nope")[0].message == "Connector NOPE does not exist"
    with pytest.raises(CatalogError, match="Connector NOPE does not exist"):
        eng.execute("DROP CONNECTOR nope")


# -- column-less CREATE over a connector's topic -----------------------------------------------


def test_stream_without_columns_takes_the_quickstart_schema_with_its_string_key() -> None:
    eng = Engine()
    eng.execute(connector_sql("g", "rides", "rides"))
    eng.execute("CREATE STREAM rides WITH (KAFKA_TOPIC='rides', VALUE_FORMAT='JSON')")
    assert eng.describe_source("RIDES")["schema"] == (  # type: ignore[index]
        "`RIDE_ID` STRING KEY, `VEHICLE_ID` STRING, `DRIVER` STRING, `LAT` DOUBLE, `LON` DOUBLE, "
        "`SPEED_KMH` DOUBLE, `FARE` DOUBLE")


def test_stream_over_a_numeric_key_field_keeps_it_as_a_typed_value_column() -> None:
    eng = Engine()
    eng.execute(connector_sql("g", "orders", "orders"))
    eng.execute("CREATE STREAM orders WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON')")
    assert eng.describe_source("ORDERS")["schema"] == (  # type: ignore[index]
        "`ORDERTIME` BIGINT, `ORDERID` INTEGER, `ITEMID` STRING, `ORDERUNITS` DOUBLE, "
        "`ADDRESS` STRUCT<`CITY` STRING, `STATE` STRING, `ZIPCODE` BIGINT>")


def test_table_without_columns_gets_the_key_field_as_primary_key_and_reads_the_records() -> None:
    eng, clock = engine_with_clock()
    eng.execute(connector_sql("g", "users", "users", interval=10, iterations=500))
    eng.execute("CREATE TABLE users WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON')")
    run_for(eng, clock, 10)
    rows = eng.query("SELECT * FROM users")
    assert list(rows.columns) == ["USERID", "REGISTERTIME", "REGIONID", "GENDER"]
    assert set(rows["USERID"]) <= {f"User_{i}" for i in range(1, 10)} and len(rows) > 5
    assert rows["GENDER"].isin(["MALE", "FEMALE", "OTHER"]).all()


def test_table_without_columns_over_a_topic_without_string_key_is_a_clear_error() -> None:
    eng = Engine()
    eng.execute(connector_sql("g", "pageviews", "pageviews"))
    with pytest.raises(CatalogError, match="no string key for its PRIMARY KEY: declare the columns"):
        eng.execute("CREATE TABLE pv WITH (KAFKA_TOPIC='pageviews', VALUE_FORMAT='JSON')")


def test_create_without_columns_over_a_topic_without_known_schema_is_a_clear_error() -> None:
    eng = Engine()
    with pytest.raises(CatalogError, match="STREAM S has no columns, and no schema is known for topic 'plain'"):
        eng.execute("CREATE STREAM s WITH (KAFKA_TOPIC='plain', VALUE_FORMAT='JSON', PARTITIONS=1)")


# -- durability --------------------------------------------------------------------------------


def test_restart_resumes_the_connector_without_repeating_records(tmp_path: Path) -> None:
    eng, clock = engine_with_clock(tmp_path)
    eng.execute(connector_sql("g", "orders", "orders", interval=20, iterations=700))
    run_for(eng, clock, 5)
    before = len(eng.consume("orders"))
    assert 0 < before < 700
    eng.close()
    eng, clock = engine_with_clock(tmp_path)
    assert dict(eng.execute("DESCRIBE CONNECTOR g")[0].rows)["records produced"] == before
    run_for(eng, clock, 60)
    records = eng.consume("orders")
    order_ids = [json.loads(r.value)["orderid"] for r in records]
    assert len(records) == 700 and order_ids == list(range(700))  # none lost, none repeated
    eng.close()


def test_a_dropped_then_recreated_connector_starts_afresh_also_after_restart(tmp_path: Path) -> None:
    eng, clock = engine_with_clock(tmp_path)
    eng.execute(connector_sql("g", "orders", "orders", interval=0, iterations=40))
    run_for(eng, clock, 1)
    eng.execute("DROP CONNECTOR g")
    eng.execute(connector_sql("g", "orders", "orders2", interval=0, iterations=30))
    clock.advance(1)
    eng.close()
    eng, clock = engine_with_clock(tmp_path)
    run_for(eng, clock, 2)
    assert (len(eng.consume("orders")), len(eng.consume("orders2"))) == (40, 30)
    eng.close()


# -- end to end --------------------------------------------------------------------------------


def test_datagen_rides_to_a_tumbling_count_per_driver() -> None:
    eng, clock = engine_with_clock()
    eng.execute(connector_sql("rides_gen", "rides", "rides", interval=50, iterations=2000) + ";"
                "CREATE STREAM rides WITH (KAFKA_TOPIC='rides', VALUE_FORMAT='JSON');"
                "CREATE TABLE fares AS SELECT driver, COUNT(*) AS n, SUM(fare) AS total FROM rides "
                "WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY driver EMIT CHANGES;")
    while dict(eng.execute("DESCRIBE CONNECTOR rides_gen")[0].rows)["State"] != "FINISHED":
        run_for(eng, clock, 5)
    rides = pd.DataFrame([{**r.value, "ts": r.timestamp} for r in eng.consume("rides")])
    assert len(rides) == 2000
    rides["window"] = rides["ts"] // 10_000 * 10_000
    expected = rides.groupby(["driver", "window"]).agg(n=("fare", "size"), total=("fare", "sum")).reset_index()
    result = eng.query("SELECT * FROM fares").rename(columns=str.lower)
    merged = expected.merge(result, left_on=["driver", "window"], right_on=["driver", "windowstart"])
    assert len(merged) == len(expected) == len(result)
    assert (merged["n_x"] == merged["n_y"]).all()
    assert ((merged["total_x"] - merged["total_y"]).abs() < 1e-6).all()


def test_source_connectors_on_a_kafka_log_are_a_clear_unsupported_error() -> None:
    connectors = Connectors(duckdb.connect(), cast(SqlLog, object()), source_connectors=False)  # as on Kafka
    with pytest.raises(UnsupportedError, match="connector G: source connectors run on the embedded log only"):
        connectors.create("SOURCE", "G", {"connector.class": "datagen", "kafka.topic": "t", "quickstart": "users"},
                          "CREATE SOURCE CONNECTOR g …")


def test_struct_fields_of_a_column_less_stream_read_datagens_lower_case_json() -> None:
    eng, clock = engine_with_clock()
    eng.execute(connector_sql("g", "orders", "orders", interval=0, iterations=3) + ";"
                "CREATE STREAM orders WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON');"
                "CREATE STREAM cities AS SELECT ORDERID, ADDRESS->CITY AS CITY FROM orders;")
    run_for(eng, clock, 1)
    cities = [r.value["CITY"] for r in eng.consume("CITIES")]
    assert len(cities) == 3 and all(c.startswith("City_") for c in cities)


def test_the_topic_a_connector_creates_takes_the_partitions_asked_for() -> None:
    eng = Engine()
    eng.execute("CREATE SOURCE CONNECTOR g WITH ('connector.class'='datagen', 'kafka.topic'='rides', "
                "'quickstart'='rides', 'topic.creation.default.partitions'=4)")
    eng.execute("CREATE STREAM rides WITH (KAFKA_TOPIC='rides', VALUE_FORMAT='JSON', PARTITIONS=4)")
    assert eng.log.require("rides").partitions == 4


def test_a_column_less_stream_and_its_query_come_back_after_a_restart(tmp_path: Path) -> None:
    eng, clock = engine_with_clock(tmp_path)
    eng.execute(connector_sql("g", "users", "users", interval=20, iterations=400) + ";"
                "CREATE STREAM users WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON');"
                "CREATE TABLE per_region AS SELECT regionid, COUNT(*) AS n FROM users GROUP BY regionid;")
    run_for(eng, clock, 2)
    eng.close()
    eng, clock = engine_with_clock(tmp_path)
    assert eng.describe_source("USERS")["schema"].startswith("`USERID` STRING KEY")  # type: ignore[index]
    while dict(eng.execute("DESCRIBE CONNECTOR g")[0].rows)["State"] != "FINISHED":
        run_for(eng, clock, 5)
    assert eng.query("SELECT * FROM per_region")["N"].sum() == 400
    eng.close()
