"""Dates and datetimes written in a TOML config work where a user puts them: in a source's row filters and,
as `@name` values, in `filter_rows` and `derive` expressions — on plain and on Arrow-backed (decimal) columns."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import config

ROWS = 400


def write_orders(folder: Path) -> Path:
    days = [dt.date(1995, 1, 1) + dt.timedelta(days=i % 200) for i in range(ROWS)]
    table = pa.table({
        "day": pa.array(days, pa.date32()),
        "at": pa.array([dt.datetime(1995, 1, 1, 12) + dt.timedelta(hours=i) for i in range(ROWS)], pa.timestamp("us")),
        "price": pa.array([Decimal(f"{i}.25") for i in range(ROWS)], pa.decimal128(12, 2)),
        "qty": pa.array([i % 7 for i in range(ROWS)], pa.int64()),
    })
    path = folder / "orders.parquet"
    pq.write_table(table, path, row_group_size=100)
    return path


def test_toml_dates_filter_the_source_and_feed_expressions(tmp_path: Path):
    data = write_orders(tmp_path)
    out = tmp_path / "out.parquet"
    job = tmp_path / "job.toml"
    job.write_text(f'''
[source]
path = "{data}"
filters = [["day", ">=", 1995-03-01]]

[[stages]]
name = "before_june"
uses = "stages.clean:filter_rows"
params = {{ where = "day < @cutoff and at >= @since", values = {{ cutoff = 1995-06-01, since = 1995-01-10T00:00:00 }} }}

[[stages]]
name = "revenue"
uses = "stages.transform:derive"
params = {{ columns = {{ revenue = "price * (1 - qty / @scale)", late = "day > @mid" }}, values = {{ scale = 10, mid = 1995-04-15 }} }}

[[stages]]
name = "totals"
uses = "stages.analyze:aggregate"
params = {{ by = ["late"], aggs = {{ n = ["qty", "size"], first_day = ["day", "min"] }} }}

[sink]
path = "{out}"
''')
    loaded = config.load(job)
    manifest = loaded.pipeline.run(loaded.source, loaded.sink, "processes", workers=2)
    got = pd.read_parquet(out)

    df = pq.read_table(data).to_pandas()
    df = df[(df["day"] >= dt.date(1995, 3, 1)) & (df["day"] < dt.date(1995, 6, 1)) & (df["at"] >= dt.datetime(1995, 1, 10))]
    df = df.assign(late=df["day"] > dt.date(1995, 4, 15))
    expected = df.groupby("late").agg(n=("qty", "size"), first_day=("day", "min")).reset_index()
    assert manifest.rows == len(expected) == 2
    assert got["n"].tolist() == expected["n"].tolist()
    assert [pd.Timestamp(d).date() for d in got["first_day"]] == [pd.Timestamp(d).date() for d in expected["first_day"]]
