"""The WITH clause takes the property names ksqlDB knows, and says which one it does not, with the
nearest known name; a stream stored before the check reopens as it ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbstream import Engine
from nbstream.errors import CatalogError

STREAM = "CREATE STREAM s (k VARCHAR KEY, v INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON'{});"


@pytest.mark.parametrize(("extra", "message"), [
    (", PARTITION=2", r"Invalid config variable\(s\) in the WITH clause: PARTITION\. Did you mean `PARTITIONS`\?"),
    (", retention_mss=1000, foo=1", r"in the WITH clause: FOO,RETENTION_MSS\."),
])
def test_an_unknown_property_is_refused_naming_the_nearest_known_one(extra: str, message: str) -> None:
    eng = Engine()
    with pytest.raises(CatalogError, match=message):
        eng.execute(STREAM.format(extra))
    assert eng.catalog.find("S") is None and eng.log.topic("s") is None


def test_a_query_result_takes_no_window_properties_which_only_describe_an_existing_topic() -> None:
    eng = Engine()
    eng.execute(STREAM.format(""))
    with pytest.raises(CatalogError, match=r"in the WITH clause: WINDOW_TYPE\."):
        eng.execute("CREATE STREAM out WITH (WINDOW_TYPE='TUMBLING') AS SELECT * FROM s;")
    assert eng.catalog.find("OUT") is None


def test_every_property_ksqldb_knows_is_taken() -> None:
    eng = Engine()
    eng.execute("CREATE TABLE t (k VARCHAR PRIMARY KEY, v INT) WITH (kafka_topic='t', value_format='JSON', "
                "key_format='KAFKA', partitions=2, replicas=1, cleanup_policy='compact', wrap_single_value=true, "
                "sourced_by_connector='jdbc');")
    eng.execute("CREATE STREAM s (k VARCHAR KEY, v INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', "
                "CLEANUP_POLICY='delete', RETENTION_MS=60000, TIMESTAMP_FORMAT='yyyy');")
    assert eng.catalog.find("T") is not None and eng.catalog.find("S") is not None


@pytest.mark.parametrize(("statement", "message"), [
    (STREAM.format(", CLEANUP_POLICY='compact'"),
     "Stream S: CLEANUP_POLICY 'compact' is not supported: the topic of a stream is 'delete'"),
    ("CREATE TABLE t (k VARCHAR PRIMARY KEY, v INT) WITH (KAFKA_TOPIC='t', VALUE_FORMAT='JSON', "
     "CLEANUP_POLICY='delete');",
     "Table T: CLEANUP_POLICY 'delete' is not supported: the topic of a table is 'compact'"),
])
def test_a_cleanup_policy_other_than_the_logs_own_is_refused(statement: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        Engine().execute(statement)


def test_a_stream_stored_before_the_check_reopens_with_its_unknown_property(tmp_path: Path) -> None:
    with Engine(path=tmp_path) as eng:
        eng.con.execute("INSERT INTO __statements VALUES (0, ?, NULL)", [STREAM.format(", LEGACY_THING=1")])
    with Engine(path=tmp_path) as reopened:
        assert reopened.catalog.find("S") is not None
        with pytest.raises(CatalogError, match="LEGACY_THING"):
            reopened.execute(STREAM.format(", LEGACY_THING=1").replace("STREAM s", "STREAM s2"))


def test_the_legacy_key_property_is_taken_where_it_names_a_key_column() -> None:
    eng = Engine()  # ksql-python-ng's create_table still sends KEY, which ksqlDB before 0.10 read
    eng.execute("CREATE TABLE users (userid VARCHAR PRIMARY KEY, name VARCHAR) "
                "WITH (kafka_topic='users', value_format='JSON', key='userid');")
    assert eng.catalog.find("USERS") is not None
    with pytest.raises(CatalogError, match="KEY='name' names no KEY column of the statement"):
        eng.execute("CREATE TABLE t (id VARCHAR PRIMARY KEY, name VARCHAR) "
                    "WITH (kafka_topic='t', value_format='JSON', key='name');")
