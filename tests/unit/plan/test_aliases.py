"""ksqlDB's names for unaliased projection items."""

from __future__ import annotations

from nbstream.plan.aliases import AliasGenerator
from nbstream.runtime.engine import Engine


def test_field_names_that_clash_with_source_columns_get_the_next_free_number() -> None:
    gen = AliasGenerator(["ROWKEY", "B", "A", "C", "D_1"])
    assert [gen.field("B"), gen.field("B"), gen.field("X"), gen.field("D")] == ["B_1", "B_2", "X", "D"]
    assert gen.field("D") == "D_2"


def test_generated_names_skip_numbers_the_source_uses() -> None:
    gen = AliasGenerator(["KSQL_COL_0", "KSQL_COL_2"])
    assert [gen.next_generated(), gen.next_generated(), gen.next_generated()] == ["KSQL_COL_1", "KSQL_COL_3",
                                                                                  "KSQL_COL_4"]


def test_a_projection_of_clashing_fields() -> None:
    eng = Engine()
    eng.execute("CREATE STREAM INPUT (K STRING KEY, B INT, A STRUCT<B INT>, C STRUCT<B INT>) "
                "WITH (kafka_topic='t', value_format='JSON');"
                "CREATE STREAM OUTPUT AS SELECT K, B, A->B, C->B, B + 1 FROM INPUT;")
    schema = eng.describe_source("OUTPUT")["schema"]
    assert schema == "`K` STRING KEY, `B` INTEGER, `B_1` INTEGER, `B_2` INTEGER, `KSQL_COL_0` INTEGER"
