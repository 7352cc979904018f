"""A join's ON condition may stand in parentheses, as ksqlDB's grammar allows."""

from __future__ import annotations

from nbstream import Engine


def test_a_parenthesised_on_condition_joins_like_a_bare_one() -> None:
    eng = Engine()
    eng.execute("CREATE STREAM s (id INT KEY, v STRING) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON');"
                "CREATE TABLE t (id INT PRIMARY KEY, w STRING) WITH (KAFKA_TOPIC='t', VALUE_FORMAT='JSON');"
                "CREATE STREAM j AS SELECT s.id, v, w FROM s JOIN t ON ((s.id = t.id));")
    eng.produce("t", {"w": "x"}, key=1)
    eng.run_until_idle()
    eng.produce("s", {"v": "a"}, key=1)
    eng.run_until_idle()
    assert [(r.key, r.value) for r in eng.consume("J")] == [(1, {"V": "a", "W": "x"})]
