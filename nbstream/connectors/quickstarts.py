"""The datagen quickstarts: each a record schema and a vectorised generator of a batch of records.

Field names, types and keys follow kafka-connect-datagen's quickstarts of the same name
(``pageviews``, ``users``, ``orders``), so ksqlDB tutorials work unchanged; ``stocks`` and ``rides``
are nbstream's own, made for live charts and maps. Differences from datagen, on purpose: the time
fields of ``pageviews`` (``viewtime``) and ``orders`` (``ordertime``) hold the record's timestamp (a
live demo wants current times, datagen counts or draws from 2017), and generation is seeded, so
the same connector name and ``random.seed`` produce the same records.

A generator gets a :class:`Batch` — the record times, the index of its first record and the
quickstart's state (JSON-able, for random walks) — and returns the columns of every record at once
(numpy/pyarrow, never one record at a time) plus the new state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from nbstream.catalog.schema import Column, LogicalSchema
from nbstream.catalog.types import BIGINT, DOUBLE, INTEGER, STRING, SqlType

State = dict[str, Any]


@dataclass(frozen=True)
class Batch:
    """What a generator is asked for: one record per entry of ``times`` (epoch ms, ascending)."""

    rng: np.random.Generator
    times: np.ndarray
    first_index: int  # how many records the connector produced before this batch
    state: State

    @property
    def size(self) -> int:
        return len(self.times)


Generate = Callable[[Batch], tuple[dict[str, pa.Array], State]]


@dataclass(frozen=True)
class Quickstart:
    """A named record schema (datagen's field names, lower case) with its key field and generator.

    The record key is the key field's value as a string (datagen's ``StringConverter`` keys).
    """

    name: str
    fields: tuple[tuple[str, SqlType], ...]
    key_field: str
    generate: Generate
    initial_state: Callable[[np.random.Generator], State] = lambda rng: {}

    def stream_schema(self, kind: str) -> LogicalSchema | None:
        """The columns ksqlDB derives for a STREAM or TABLE over the topic (upper-cased names).

        A string key field becomes the ``KEY`` column (``PRIMARY KEY`` of a table) and leaves the
        value columns, as ksqlDB's tutorials declare ``userid VARCHAR PRIMARY KEY``; a numeric key
        field stays a typed value column and the stream has no key column. A TABLE needs a key:
        None when the quickstart has no string key field.
        """
        key_type = dict(self.fields)[self.key_field]
        keyed = key_type == STRING
        if kind == "TABLE" and not keyed:
            return None
        columns = [Column(self.key_field.upper(), STRING, "KEY")] if keyed else []
        columns += [Column(name.upper(), upper_case_fields(sql_type)) for name, sql_type in self.fields
                    if not (keyed and name == self.key_field)]
        return LogicalSchema(tuple(columns))


def upper_case_fields(sql_type: SqlType) -> SqlType:
    """``sql_type`` with STRUCT field names upper-cased, as ksqlDB derives them from a schema."""
    if sql_type.name != "STRUCT":
        return sql_type
    return SqlType.struct([(name.upper(), upper_case_fields(t)) for name, t in sql_type.fields])


# -- vectorised helpers ------------------------------------------------------------------------


def pick(rng: np.random.Generator, options: np.ndarray, n: int) -> pa.Array:
    """``n`` values drawn uniformly from ``options``."""
    return pa.array(options[rng.integers(0, len(options), n)])


def numbered(prefix: str, first: int, last: int) -> np.ndarray:
    """``prefix1`` … ``prefixN``: the choices of a datagen regex such as ``User_[1-9]``."""
    return np.array([f"{prefix}{i}" for i in range(first, last + 1)])


def cumsum_by_group(values: np.ndarray, groups: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """For each record, ``initial[group]`` plus the sum of ``values`` of its group's records up to
    and including it (records in their given order)."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    running = np.cumsum(values[order])
    starts = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]
    before_start = np.r_[0.0, running][np.flatnonzero(starts)]
    within = running - before_start[np.cumsum(starts) - 1]
    result = np.empty_like(within)
    result[order] = within + initial[sorted_groups]
    return result


def previous_by_group(values: np.ndarray, groups: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """For each record, the value of its group's previous record (``initial[group]`` for the first)."""
    order = np.argsort(groups, kind="stable")
    sorted_groups, sorted_values = groups[order], values[order]
    starts = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]
    shifted = np.r_[sorted_values[:1], sorted_values[:-1]].astype(float)
    shifted[starts] = initial[sorted_groups[starts]]
    result = np.empty(len(values), dtype=float)
    result[order] = shifted
    return result


def last_by_group(values: np.ndarray, groups: np.ndarray, current: np.ndarray) -> np.ndarray:
    """``current`` with each group's entry replaced by the value of its last record."""
    updated = np.array(current, dtype=float)
    updated[groups] = values  # numpy assigns in order: the last record of a group wins
    return updated


# -- pageviews, users, orders (datagen's schemas) ----------------------------------------------

_USERS = numbered("User_", 1, 9)
_PAGES = numbered("Page_", 1, 99)
_REGIONS = numbered("Region_", 1, 9)
_GENDERS = np.array(["MALE", "FEMALE", "OTHER"])
_ITEMS = numbered("Item_", 1, 999)
_CITIES = numbered("City_", 1, 99)
_STATES = numbered("State_", 1, 99)


def _pageviews(batch: Batch) -> tuple[dict[str, pa.Array], State]:
    n, rng = batch.size, batch.rng
    return {"viewtime": pa.array(batch.times, pa.int64()), "userid": pick(rng, _USERS, n),
            "pageid": pick(rng, _PAGES, n)}, batch.state


def _users(batch: Batch) -> tuple[dict[str, pa.Array], State]:
    n, rng = batch.size, batch.rng
    return {"registertime": pa.array(rng.integers(1487715775521, 1519273364600, n), pa.int64()),
            "userid": pick(rng, _USERS, n), "regionid": pick(rng, _REGIONS, n),
            "gender": pick(rng, _GENDERS, n)}, batch.state


_ADDRESS = SqlType.struct([("city", STRING), ("state", STRING), ("zipcode", BIGINT)])


def _orders(batch: Batch) -> tuple[dict[str, pa.Array], State]:
    n, rng = batch.size, batch.rng
    address = pa.StructArray.from_arrays(
        [pick(rng, _CITIES, n), pick(rng, _STATES, n), pa.array(rng.integers(10000, 100000, n), pa.int64())],
        names=["city", "state", "zipcode"])
    return {"ordertime": pa.array(batch.times, pa.int64()),
            "orderid": pa.array(np.arange(batch.first_index, batch.first_index + n), pa.int32()),
            "itemid": pick(rng, _ITEMS, n),
            "orderunits": pa.array(rng.uniform(0.1, 10.0, n)), "address": address}, batch.state


# -- stocks: a geometric random walk of prices per symbol --------------------------------------

STOCK_SYMBOLS = np.array(["ZBZX", "ZJZZT", "ZTEST", "ZVV", "ZVZZT", "ZWZZT", "ZXZZT"])
_SIDES = np.array(["BUY", "SELL"])
_TICK_VOLATILITY = 0.002  # standard deviation of one tick's log return: visible moves at 20 ticks/s


def _stocks_start(rng: np.random.Generator) -> State:
    return {"price": rng.uniform(20.0, 500.0, len(STOCK_SYMBOLS)).round(2).tolist()}


def _stocks(batch: Batch) -> tuple[dict[str, pa.Array], State]:
    n, rng = batch.size, batch.rng
    symbol = rng.integers(0, len(STOCK_SYMBOLS), n)
    start = np.log(np.array(batch.state["price"]))
    log_price = cumsum_by_group(rng.normal(0.0, _TICK_VOLATILITY, n), symbol, start)
    price = np.exp(log_price)
    state = {"price": np.exp(last_by_group(log_price, symbol, start)).tolist()}
    return {"symbol": pa.array(STOCK_SYMBOLS[symbol]), "price": pa.array(price.round(2)),
            "quantity": pa.array(rng.integers(1, 5001, n), pa.int32()), "side": pick(rng, _SIDES, n)}, state


# -- rides: vehicles driving around a city centre, metering fares ------------------------------

RIDE_VEHICLES = 12
RIDE_CENTER = (52.52, 13.405)  # lat, lon of the city centre
RIDE_RADIUS_KM = 6.0  # vehicles stay within this many km of the centre, east-west and north-south
RIDE_PINGS = 30  # position reports per ride
_KM_PER_DEGREE = 111.32
RIDE_TIME_LAPSE = 30.0  # simulated seconds per second of record time: motion visible on a city map
_MAX_GAP_S = 60.0  # simulated seconds; a vehicle silent for longer (a restart) does not teleport
_BASE_FARE, _FARE_PER_KM, _FARE_PER_MINUTE = 3.0, 1.5, 0.3
_VEHICLE_IDS = numbered("v", 1, RIDE_VEHICLES)
_DRIVERS = numbered("d", 1, RIDE_VEHICLES)


def _rides_start(rng: np.random.Generator) -> State:
    n = RIDE_VEHICLES
    return {"x": rng.uniform(-RIDE_RADIUS_KM, RIDE_RADIUS_KM, n).tolist(),
            "y": rng.uniform(-RIDE_RADIUS_KM, RIDE_RADIUS_KM, n).tolist(),
            "heading": rng.uniform(0, 2 * math.pi, n).tolist(), "pings": [0] * n, "last_ms": [None] * n}


def fold(unbounded: np.ndarray, radius: float) -> np.ndarray:
    """A position that bounces off the walls of ``[-radius, radius]`` (a triangle wave)."""
    period = 4 * radius
    phase = np.mod(unbounded + radius, period)
    return np.where(phase <= 2 * radius, phase, period - phase) - radius


def _rides(batch: Batch) -> tuple[dict[str, pa.Array], State]:
    n, rng, state = batch.size, batch.rng, batch.state
    vehicle = rng.integers(0, RIDE_VEHICLES, n)
    times = batch.times.astype(float)
    last = np.array([times[0] if t is None else t for t in state["last_ms"]], dtype=float)
    elapsed_s = (times - previous_by_group(times, vehicle, last)) / 1000.0
    gap_s = np.clip(elapsed_s * RIDE_TIME_LAPSE, 0.0, _MAX_GAP_S)
    speed = rng.uniform(15.0, 50.0, n)  # km/h
    heading = cumsum_by_group(rng.normal(0.0, 0.25, n), vehicle, np.array(state["heading"]))
    km = speed * gap_s / 3600.0
    x = cumsum_by_group(km * np.cos(heading), vehicle, np.array(state["x"]))
    y = cumsum_by_group(km * np.sin(heading), vehicle, np.array(state["y"]))
    ping = cumsum_by_group(np.ones(n), vehicle, np.array(state["pings"], dtype=float)).astype(np.int64) - 1
    ride = ping // RIDE_PINGS
    fare = _FARE_PER_KM * km + _FARE_PER_MINUTE * gap_s / 60.0 + np.where(ping % RIDE_PINGS == 0, _BASE_FARE, 0.0)
    lat0, lon0 = RIDE_CENTER
    lat = lat0 + fold(y, RIDE_RADIUS_KM) / _KM_PER_DEGREE
    lon = lon0 + fold(x, RIDE_RADIUS_KM) / (_KM_PER_DEGREE * math.cos(math.radians(lat0)))
    columns = {
        "ride_id": pa.array(np.char.add(np.char.add(_VEHICLE_IDS[vehicle], "-"), ride.astype(str))),
        "vehicle_id": pa.array(_VEHICLE_IDS[vehicle]), "driver": pa.array(_DRIVERS[vehicle]),
        "lat": pa.array(lat.round(6)), "lon": pa.array(lon.round(6)), "speed_kmh": pa.array(speed.round(1)),
        "fare": pa.array(fare.round(2)),
    }
    pings = last_by_group(ping + 1.0, vehicle, np.array(state["pings"], dtype=float))
    last_ms = last_by_group(times, vehicle, np.array([np.nan if t is None else t for t in state["last_ms"]]))
    new_state = {
        "x": last_by_group(x, vehicle, np.array(state["x"])).tolist(),
        "y": last_by_group(y, vehicle, np.array(state["y"])).tolist(),
        "heading": last_by_group(heading, vehicle, np.array(state["heading"])).tolist(),
        "pings": [int(p) for p in pings],
        "last_ms": [None if math.isnan(t) else int(t) for t in last_ms],
    }
    return columns, new_state


QUICKSTARTS: dict[str, Quickstart] = {q.name: q for q in (
    Quickstart("pageviews", (("viewtime", BIGINT), ("userid", STRING), ("pageid", STRING)), "viewtime",
               _pageviews),
    Quickstart("users", (("registertime", BIGINT), ("userid", STRING), ("regionid", STRING), ("gender", STRING)),
               "userid", _users),
    Quickstart("orders", (("ordertime", BIGINT), ("orderid", INTEGER), ("itemid", STRING), ("orderunits", DOUBLE),
                          ("address", _ADDRESS)), "orderid", _orders),
    Quickstart("stocks", (("symbol", STRING), ("price", DOUBLE), ("quantity", INTEGER), ("side", STRING)),
               "symbol", _stocks, _stocks_start),
    Quickstart("rides", (("ride_id", STRING), ("vehicle_id", STRING), ("driver", STRING), ("lat", DOUBLE),
                         ("lon", DOUBLE), ("speed_kmh", DOUBLE), ("fare", DOUBLE)), "ride_id",
               _rides, _rides_start),
)}
