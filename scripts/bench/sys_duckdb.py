"""DuckDB: one SQL query over the Parquet glob, `workers` threads."""

from __future__ import annotations

import pandas as pd

from bench.spec import RunSpec
from bench.timer import Timer

QUERY = """
SELECT pickup_zone, payment_type,
       count(fare_amount) AS trips, avg(fare_amount) AS mean_fare, avg(tip_pct) AS mean_tip_pct,
       sum(total_amount) AS total_amount, max(trip_distance) AS max_distance
FROM (
    SELECT *,
           epoch(dropoff_at - pickup_at) / 60 AS trip_minutes,
           trip_distance / (epoch(dropoff_at - pickup_at) / 3600) AS mph,
           100 * tip_amount / fare_amount AS tip_pct
    FROM read_parquet(?)
    WHERE passenger_count IS NOT NULL AND fare_amount >= 0 AND trip_distance > 0
      AND dropoff_at >= pickup_at AND total_amount >= 0
)
GROUP BY pickup_zone, payment_type
"""


def sql(spec: RunSpec, t: Timer) -> pd.DataFrame:
    with t.phase("import"):
        import duckdb
    with t.phase("job"):
        con = duckdb.connect()
        con.execute(f"SET threads = {int(spec.workers)}")
        result = con.execute(QUERY, [spec.pattern]).df()
        con.close()
    return result
