"""The quickstarts' records: datagen's fields and value ranges, random walks that stay plausible."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nbstream.connectors.datagen import DatagenConnector
from nbstream.connectors.quickstarts import (
    QUICKSTARTS,
    RIDE_CENTER,
    RIDE_RADIUS_KM,
    RIDE_TIME_LAPSE,
    STOCK_SYMBOLS,
    cumsum_by_group,
    fold,
    previous_by_group,
)

START = 1_700_000_000_000


def generate(quickstart: str, seconds: int, interval: int = 50) -> pd.DataFrame:
    """The records a connector makes over ``seconds``, stepped every 200 ms, with times and keys."""
    connector = DatagenConnector("Q", {"connector.class": "datagen", "kafka.topic": "t", "quickstart": quickstart,
                                       "max.interval": interval, "iterations": 0})
    frames = []
    for now in range(START, START + seconds * 1000, 200):
        generated = connector.step(now)
        if generated is not None:
            frame = pd.DataFrame({name: column.to_pylist() for name, column in generated.columns.items()})
            frames.append(frame.assign(_ts=generated.times, _key=generated.keys.to_pylist()))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("name", list(QUICKSTARTS))
def test_records_have_exactly_the_declared_fields_keyed_by_the_key_field(name: str) -> None:
    records = generate(name, 3)
    quickstart = QUICKSTARTS[name]
    assert [c for c in records.columns if not c.startswith("_")] == [f for f, _ in quickstart.fields]
    assert (records["_key"] == records[quickstart.key_field].astype(str)).all()


def test_pageviews_are_datagens_users_and_pages_at_record_time() -> None:
    records = generate("pageviews", 5)
    assert set(records["userid"]) <= {f"User_{i}" for i in range(1, 10)}
    assert records["pageid"].str.fullmatch(r"Page_[1-9][0-9]?").all()
    assert (records["viewtime"] == records["_ts"]).all()


def test_orders_count_up_from_zero_with_an_address_struct() -> None:
    records = generate("orders", 3)
    assert records["orderid"].tolist() == list(range(len(records)))
    assert records["orderunits"].between(0.1, 10.0).all()
    assert all(set(a) == {"city", "state", "zipcode"} and 10000 <= a["zipcode"] <= 99999
               for a in records["address"])


def test_users_are_datagens_regions_and_genders() -> None:
    records = generate("users", 3)
    assert records["regionid"].str.fullmatch(r"Region_[1-9]").all()
    assert set(records["gender"]) <= {"MALE", "FEMALE", "OTHER"}


def test_stock_prices_walk_in_small_steps_per_symbol() -> None:
    records = generate("stocks", 30)
    assert set(records["symbol"]) == set(STOCK_SYMBOLS)
    for _, prices in records.groupby("symbol")["price"]:
        steps = np.abs(np.diff(np.log(prices.to_numpy())))
        assert steps.max() < 0.02  # a tick moves a price by a fraction of a percent, never jumps
        assert steps.mean() > 0.0005  # …but it does move
    assert (records["price"] > 0).all() and records["quantity"].between(1, 5000).all()


def test_vehicles_move_plausibly_within_the_city_and_rides_bill_fares() -> None:
    records = generate("rides", 60)
    lat0, lon0 = RIDE_CENTER
    km_lat = (records["lat"] - lat0) * 111.32
    km_lon = (records["lon"] - lon0) * 111.32 * math.cos(math.radians(lat0))
    assert km_lat.abs().max() <= RIDE_RADIUS_KM + 1e-3 and km_lon.abs().max() <= RIDE_RADIUS_KM + 1e-3
    for _, pings in records.groupby("vehicle_id"):
        moved_km = np.hypot(np.diff(pings["lat"]) * 111.32,
                            np.diff(pings["lon"]) * 111.32 * math.cos(math.radians(lat0)))
        hours = np.diff(pings["_ts"]) / 3_600_000 * RIDE_TIME_LAPSE
        assert (moved_km <= 50.0 * hours + 1e-3).all()  # never faster than the top speed
        assert moved_km.sum() > 0.5
        assert pings["driver"].nunique() == 1
    assert records["speed_kmh"].between(15, 50).all() and (records["fare"] >= 0).all()
    rides = records.groupby("ride_id").size()
    assert rides.max() <= 30 and len(rides) > 12  # vehicles finish rides and start new ones


def test_cumsum_by_group_sums_each_groups_values_in_order_from_its_start() -> None:
    rng = np.random.default_rng(1)
    groups, values, initial = rng.integers(0, 4, 200), rng.normal(size=200), rng.normal(size=4)
    running = initial.copy()
    expected = []
    for g, v in zip(groups, values, strict=True):
        running[g] += v
        expected.append(running[g])
    assert np.allclose(cumsum_by_group(values, groups, initial), expected)


def test_previous_by_group_is_the_groups_last_value_before_each_record() -> None:
    groups, values = np.array([0, 1, 0, 0, 1]), np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    assert previous_by_group(values, groups, np.array([-1.0, -2.0])).tolist() == [-1.0, -2.0, 10.0, 30.0, 20.0]


def test_fold_bounces_off_the_walls() -> None:
    assert fold(np.array([0.0, 5.0, 7.0, 13.0, -7.0, 25.0]), 6.0).tolist() == [0.0, 5.0, 5.0, -1.0, -5.0, 1.0]


@pytest.mark.parametrize(("kind", "expected"), [
    ("STREAM", "`USERID` STRING KEY, `REGISTERTIME` BIGINT, `REGIONID` STRING, `GENDER` STRING"),
    ("TABLE", "`USERID` STRING KEY, `REGISTERTIME` BIGINT, `REGIONID` STRING, `GENDER` STRING"),
])
def test_a_string_key_field_becomes_the_key_column(kind: str, expected: str) -> None:
    assert str(QUICKSTARTS["users"].stream_schema(kind)) == expected


def test_a_numeric_key_field_gives_a_stream_without_key_column_and_no_table() -> None:
    assert str(QUICKSTARTS["pageviews"].stream_schema("STREAM")) == \
        "`VIEWTIME` BIGINT, `USERID` STRING, `PAGEID` STRING"
    assert QUICKSTARTS["pageviews"].stream_schema("TABLE") is None
