"""MD5, CEIL/FLOOR keeping their argument's type, GEO_DISTANCE with a unit column, and the CREATE … AS
SELECT checks ksqlDB makes on reserved aliases and on a NONE key format with key columns."""

from __future__ import annotations

from typing import Any

import pytest

from nbstream import Engine
from nbstream.errors import BindError, SqlTypeError

POINTS = ("CREATE STREAM s (id INT KEY, u VARCHAR, i INT, d DOUBLE, m DECIMAL(3, 1)) "
          "WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON');")


def _values(select: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    eng = Engine()
    eng.execute(POINTS + f"CREATE STREAM o AS SELECT id, {select} FROM s;")
    for i, row in enumerate(rows):
        eng.produce("s", row, key=i)
    eng.run_until_idle()
    return [r.value for r in eng.consume("O")]


def test_md5_is_the_hex_digest_of_the_string() -> None:
    assert _values("MD5(u) AS h", [{"u": ""}, {"u": None}]) == [{"H": "d41d8cd98f00b204e9800998ecf8427e"}, {"H": None}]


def test_ceil_and_floor_keep_integers_and_the_decimal_scale() -> None:
    rows = _values("FLOOR(i) AS fi, CEIL(d) AS cd, FLOOR(m) AS fm", [{"i": 3, "d": 1.2, "m": -1.5}])
    assert rows == [{"FI": 3, "CD": 2.0, "FM": -2.0}]
    assert isinstance(rows[0]["FI"], int)


def test_geo_distance_reads_its_unit_per_row_and_skips_a_row_with_an_unknown_unit() -> None:
    rows = _values("GEO_DISTANCE(0, 0, 1, 1, u) AS d", [{"u": "mi"}, {"u": None}, {"u": "parsecs"}, {"u": "KM"}])
    km = 157.24938127194397
    assert [r["D"] for r in rows] == pytest.approx([km * 3959.0 / 6371.0, km, km])


@pytest.mark.parametrize("alias", ["ROWTIME", "windowstart", "WINDOWEND"])
def test_a_result_column_may_not_be_named_like_a_system_column(alias: str) -> None:
    with pytest.raises(BindError, match=f"`{alias.upper()}` is a reserved column name"):
        Engine().execute(POINTS + f"CREATE STREAM o AS SELECT id, i AS {alias} FROM s;")


def test_a_none_key_format_refuses_a_result_with_key_columns() -> None:
    with pytest.raises(BindError, match=r"Got: \[`I` INTEGER KEY\]"):
        Engine().execute(POINTS + "CREATE STREAM o WITH (KEY_FORMAT='NONE') AS SELECT * FROM s PARTITION BY i;")


def test_date_functions_read_their_pattern_from_a_column_and_skip_a_row_whose_pattern_is_bad() -> None:
    eng = Engine()
    eng.execute("CREATE STREAM d (id INT KEY, d DATE, f VARCHAR) WITH (KAFKA_TOPIC='d', VALUE_FORMAT='JSON');"
                "CREATE STREAM o AS SELECT id, FORMAT_DATE(d, f) AS r, PARSE_DATE('04/03/2021', f) AS p FROM d;")
    for i, pattern in enumerate(["yyyy-MM-dd", "dd/MM/yyyy", None, "qqq", "yyyy-MM-dd"]):
        eng.produce("d", {"d": 18_000 + i, "f": pattern}, key=i)
    eng.run_until_idle()
    assert [(r.key, r.value) for r in eng.consume("O")] == [
        (0, {"R": "2019-04-14", "P": None}),
        (1, {"R": "15/04/2019", "P": 18_690}),
        (2, {"R": None, "P": None}),
        (4, {"R": "2019-04-18", "P": None}),
    ]


def test_numbers_read_from_bytes_in_either_byte_order_and_a_wrong_length_fails_its_row() -> None:
    eng = Engine()
    eng.execute("CREATE STREAM b (id INT KEY, x BYTES) WITH (KAFKA_TOPIC='b', VALUE_FORMAT='JSON');"
                "CREATE STREAM o AS SELECT id, INT_FROM_BYTES(x) AS big, INT_FROM_BYTES(x, 'LITTLE_ENDIAN') AS little "
                "FROM b;")
    for i, encoded in enumerate(["AAAH5Q==", None, "AAc=", "5QcAAA=="]):  # 2021 BE, null, 2 bytes, 2021 LE
        eng.produce("b", {"x": encoded}, key=i)
    eng.run_until_idle()
    assert [(r.key, r.value) for r in eng.consume("O")] == [
        (0, {"BIG": 2021, "LITTLE": -452526080}), (1, {"BIG": None, "LITTLE": None}),
        (3, {"BIG": -452526080, "LITTLE": 2021})]
    with pytest.raises(SqlTypeError, match="unknown byte order"):
        eng.execute("CREATE STREAM p AS SELECT id, DOUBLE_FROM_BYTES(x, 'MIDDLE') AS d FROM b;")
