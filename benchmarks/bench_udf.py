"""A vectorised Python UDF against the same expression written in SQL, in one persistent query.

Measures, in one run over the same N JSON records already in the durable log, the persistent query
``SELECT id, <distance> AS d FROM points`` with the distance computed
  * in SQL: ``SQRT(x * x + y * y)``;
  * by ``@nbstream.udf`` ``HYPOT(x, y)`` over Arrow arrays (pyarrow.compute);
and the ratio of the two (the issue's bar: the UDF within 2x of the SQL). Each figure is the
median of REPEATS runs, each a new persistent query over the same log.

    python benchmarks/bench_udf.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from _common import rate

import nbstream
from nbstream import Engine

SETUP = """
CREATE STREAM points (id VARCHAR KEY, x DOUBLE, y DOUBLE)
  WITH (KAFKA_TOPIC='points', VALUE_FORMAT='JSON', PARTITIONS=2);
SET 'auto.offset.reset' = 'earliest';
"""
QUERIES = {
    "SQL": "CREATE STREAM sql_{n} AS SELECT id, SQRT(x * x + y * y) AS d FROM points;",
    "Python UDF": "CREATE STREAM udf_{n} AS SELECT id, HYPOT(x, y) AS d FROM points;",
}
REPEATS = 3


@nbstream.udf(params=["DOUBLE", "DOUBLE"], returns="DOUBLE")
def hypot(x: pa.Array, y: pa.Array) -> pa.Array:
    return pc.sqrt(pc.add(pc.multiply(x, x), pc.multiply(y, y)))


def points(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({"id": pd.Series(rng.integers(0, 1000, n)).map("p{}".format),
                         "x": rng.random(n).round(3), "y": rng.random(n).round(3)})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    n = parser.parse_args().events
    frame = points(n)
    with tempfile.TemporaryDirectory() as state:
        eng = Engine(path=state)
        eng.execute(SETUP)
        eng.produce_batch("points", frame, key="id")
        rates: dict[str, list[float]] = {name: [] for name in QUERIES}
        for i in range(REPEATS):  # alternate, so a slow spell of the machine hits both
            for name, query in QUERIES.items():
                eng.execute(query.format(n=i))
                rates[name].append(rate(n, eng.run_until_idle))
        eng.close()
    medians = {name: statistics.median(r) for name, r in rates.items()}
    print(f"events:                       {n:,}")
    for name, r in rates.items():
        print(f"{name + ':':29} {medians[name]:,.0f} events/s, median (runs: {', '.join(f'{x:,.0f}' for x in r)})")
    print(f"ratio SQL / Python UDF:       {medians['SQL'] / medians['Python UDF']:.2f}")


if __name__ == "__main__":
    main()
