"""The Ray Data peer's shared steps and its TPC-H queries 12 to 22; see `ray_data` (which holds queries 1 to
11 and the merged `QUERIES`) for how the queries are written and why decimals become float64."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from datetime import date
from functools import reduce

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data
from ray.data import Dataset
from ray.data.aggregate import AggregateFn, Count, CountDistinct, Mean, Sum
from ray.data.datatype import DataType
from ray.data.expressions import Expr, col, udf

DECIMALS = frozenset({"l_quantity", "l_extendedprice", "l_discount", "l_tax", "o_totalprice", "p_retailprice",
                      "ps_supplycost", "c_acctbal", "s_acctbal"})
FLOAT = DataType.float64()
INTEGER = DataType.int64()


def partitions() -> int:
    """Hash partitions for a join or group-by: one per CPU of the cluster."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def scan(data: str, table: str, columns: Sequence[str], where: Expr | None = None) -> Dataset:
    """`columns` of `table` with decimals as float64; `where` is applied first, on the file's own columns
    (so conditions on decimal columns belong in a later `filter`)."""
    ds = ray.data.read_parquet(f"{data}/{table}.parquet")
    if where is not None:
        ds = ds.filter(expr=where)
    ds = ds.select_columns(list(columns))
    decimals = {name: col(name).cast(FLOAT) for name in columns if name in DECIMALS}
    return ds.with_columns(decimals) if decimals else ds


def join(left: Dataset, right: Dataset, on: Sequence[str], right_on: Sequence[str] | None = None,
         how: str = "inner") -> Dataset:
    """A hash join of `left` and `right` (`how`: Ray's join type, e.g. "left_semi", "left_anti"); an inner
    or outer join keeps the left keys only."""
    return left.join(right, how, partitions(), on=tuple(on), right_on=tuple(right_on) if right_on else None)


def guard_empty(ds: Dataset) -> Dataset:
    """`ds` materialized, or when no row passed its filter, an empty dataset that keeps its columns: Ray Data
    gives a filter that keeps nothing an output block without columns, and a join with it then fails
    (polars: `ColumnNotFoundError: unable to find column ...; valid columns: []`). For the small, selective
    join sides that are empty at small scale factors (Q16's complaining suppliers, Q17's parts)."""
    schema = ds.schema().base_schema
    ds = ds.materialize()
    return ds if ds.count() else ray.data.from_arrow(schema.empty_table())


def group(ds: Dataset, by: Sequence[str], *aggs: AggregateFn) -> Dataset:
    """`aggs` per group of equal `by`."""
    return ds.groupby(list(by), num_partitions=partitions()).aggregate(*aggs)


def totals(ds: Dataset, *aggs: AggregateFn) -> pd.DataFrame:
    """`aggs` over all of `ds`, as a one-row frame (a SUM of no rows is missing, as in SQL)."""
    return pd.DataFrame([ds.aggregate(*aggs)])


def ray_sorted(ds: Dataset, by: Sequence[str], descending: bool | Sequence[bool] = False, limit: int | None = None,
               columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The answer sorted (and cut to `limit`) by Ray Data, for answers that may be long."""
    ds = ds.sort(list(by), descending=descending if isinstance(descending, bool) else list(descending))
    if limit is not None:
        ds = ds.limit(limit)
    if columns is not None:
        ds = ds.select_columns(list(columns))
    return ds.to_pandas()


def pandas_sorted(ds: Dataset, by: Sequence[str], descending: bool | Sequence[bool] = False,
                  columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The answer sorted in pandas, for answers of a few hundred rows at most."""
    ascending = not descending if isinstance(descending, bool) else [not d for d in descending]
    df = ds.to_pandas().sort_values(list(by), ascending=ascending, kind="stable", ignore_index=True)
    return df[list(columns)] if columns is not None else df


def volume() -> Expr:
    """l_extendedprice * (1 - l_discount): the discounted price most queries sum."""
    return col("l_extendedprice") * (1 - col("l_discount"))


@udf(return_dtype=FLOAT)
def case_when(condition: pa.Array, value: pa.Array) -> pa.Array:
    """CASE WHEN condition THEN value ELSE 0 END."""
    return pc.if_else(condition, value, 0.0)


def between(column: str, low: object, high: object) -> Expr:
    """SQL `column BETWEEN low AND high`."""
    return (col(column) >= low) & (col(column) <= high)


def during(column: str, start: date, end: date) -> Expr:
    """start <= column < end."""
    return (col(column) >= start) & (col(column) < end)


def region_nations(data: str, region: str) -> Dataset:
    """n_nationkey, n_name of the nations in `region`."""
    chosen = scan(data, "region", ["r_regionkey"], col("r_name") == region)
    nation = scan(data, "nation", ["n_nationkey", "n_name", "n_regionkey"])
    return join(nation, chosen, ["n_regionkey"], ["r_regionkey"], how="left_semi").select_columns(
        ["n_nationkey", "n_name"])


def q12(data: str) -> pd.DataFrame:
    """Shipping modes and order priority: each CASE sum is a sum of a 0/1 column."""
    lineitem = scan(data, "lineitem", ["l_orderkey", "l_shipmode"],
                    col("l_shipmode").is_in(["MAIL", "SHIP"]) & (col("l_commitdate") < col("l_receiptdate"))
                    & (col("l_shipdate") < col("l_commitdate"))
                    & during("l_receiptdate", date(1994, 1, 1), date(1995, 1, 1)))
    orders = scan(data, "orders", ["o_orderkey", "o_orderpriority"])
    urgent = col("o_orderpriority").is_in(["1-URGENT", "2-HIGH"])
    ds = join(orders, lineitem, ["o_orderkey"], ["l_orderkey"]).with_columns(
        {"high": urgent.cast(INTEGER), "low": (~urgent).cast(INTEGER)})
    ds = group(ds, ["l_shipmode"], Sum("high", alias_name="high_line_count"), Sum("low", alias_name="low_line_count"))
    return pandas_sorted(ds, ["l_shipmode"])


def q13(data: str) -> pd.DataFrame:
    """Customer distribution: a left outer join, counting the orders' (non-null) keys per customer."""
    customer = scan(data, "customer", ["c_custkey"])
    orders = scan(data, "orders", ["o_orderkey", "o_custkey"], ~col("o_comment").str.match("%special%requests%"))
    counts = group(join(customer, orders, ["c_custkey"], ["o_custkey"], how="left_outer"), ["c_custkey"],
                   Count("o_orderkey", ignore_nulls=True, alias_name="c_count"))
    return pandas_sorted(group(counts, ["c_count"], Count(alias_name="custdist")), ["custdist", "c_count"], True)


def q14(data: str) -> pd.DataFrame:
    """Promotion effect: the ratio of two totals, taken in pandas."""
    part = scan(data, "part", ["p_partkey", "p_type"])
    lineitem = scan(data, "lineitem", ["l_partkey", "l_extendedprice", "l_discount"],
                    during("l_shipdate", date(1995, 9, 1), date(1995, 10, 1)))
    ds = join(lineitem, part, ["l_partkey"], ["p_partkey"]).with_columns(
        {"volume": volume(), "promo": case_when(col("p_type").str.starts_with("PROMO"), volume())})
    sums = totals(ds, Sum("promo", alias_name="promo"), Sum("volume", alias_name="total"))
    return pd.DataFrame({"promo_revenue": 100.0 * sums["promo"].astype("float64") / sums["total"].astype("float64")})


def q15(data: str) -> pd.DataFrame:
    """Top supplier: the view is one materialized dataset, read for its maximum and then filtered by it."""
    lineitem = scan(data, "lineitem", ["l_suppkey", "l_extendedprice", "l_discount"],
                    during("l_shipdate", date(1996, 1, 1), date(1996, 4, 1)))
    revenue = group(lineitem.with_column("volume", volume()), ["l_suppkey"],
                    Sum("volume", alias_name="total_revenue")).materialize()
    best = revenue.filter(expr=col("total_revenue") == revenue.max("total_revenue"))
    supplier = scan(data, "supplier", ["s_suppkey", "s_name", "s_address", "s_phone"])
    return pandas_sorted(join(supplier, best, ["s_suppkey"], ["l_suppkey"]), ["s_suppkey"],
                         columns=["s_suppkey", "s_name", "s_address", "s_phone", "total_revenue"])


def q16(data: str) -> pd.DataFrame:
    """Parts/supplier relationship: NOT IN (suppliers with complaints) is an anti join."""
    complaints = guard_empty(scan(data, "supplier", ["s_suppkey"],
                                  col("s_comment").str.match("%Customer%Complaints%")))
    part = scan(data, "part", ["p_partkey", "p_brand", "p_type", "p_size"],
                (col("p_brand") != "Brand#45") & ~col("p_type").str.match("MEDIUM POLISHED%")
                & col("p_size").is_in([49, 14, 23, 45, 19, 3, 36, 9]))
    partsupp = join(scan(data, "partsupp", ["ps_partkey", "ps_suppkey"]), complaints, ["ps_suppkey"], ["s_suppkey"],
                    how="left_anti")
    ds = group(join(part, partsupp, ["p_partkey"], ["ps_partkey"]), ["p_brand", "p_type", "p_size"],
               CountDistinct("ps_suppkey", alias_name="supplier_cnt"))
    return ray_sorted(ds, ["supplier_cnt", "p_brand", "p_type", "p_size"], [True, False, False, False],
                      columns=["p_brand", "p_type", "p_size", "supplier_cnt"])


def q17(data: str) -> pd.DataFrame:
    """Small-quantity-order revenue: the average quantity per part, joined back on the part."""
    part = guard_empty(scan(data, "part", ["p_partkey"],
                            (col("p_brand") == "Brand#23") & (col("p_container") == "MED BOX")))
    lineitem = join(scan(data, "lineitem", ["l_partkey", "l_quantity", "l_extendedprice"]), part,
                    ["l_partkey"], ["p_partkey"], how="left_semi").materialize()
    average = group(lineitem, ["l_partkey"], Mean("l_quantity", alias_name="avg_quantity"))
    small = join(lineitem, average, ["l_partkey"]).filter(expr=col("l_quantity") < col("avg_quantity") * 0.2)
    total = small.sum("l_extendedprice")
    return pd.DataFrame({"avg_yearly": [None if total is None else total / 7.0]}, dtype="float64")


def q18(data: str) -> pd.DataFrame:
    """Large volume customer: IN (orders over 300 units) is a semi join with an aggregate."""
    lineitem = scan(data, "lineitem", ["l_orderkey", "l_quantity"])
    large = group(lineitem, ["l_orderkey"], Sum("l_quantity", alias_name="order_quantity")).filter(
        expr=col("order_quantity") > 300)
    orders = join(scan(data, "orders", ["o_orderkey", "o_custkey", "o_orderdate", "o_totalprice"]), large,
                  ["o_orderkey"], ["l_orderkey"], how="left_semi")
    customer = scan(data, "customer", ["c_custkey", "c_name"])
    ds = join(join(orders, customer, ["o_custkey"], ["c_custkey"]), lineitem, ["o_orderkey"], ["l_orderkey"])
    ds = group(ds, ["c_name", "o_custkey", "o_orderkey", "o_orderdate", "o_totalprice"],
               Sum("l_quantity", alias_name="sum(l_quantity)")).rename_columns({"o_custkey": "c_custkey"})
    return ray_sorted(ds, ["o_totalprice", "o_orderdate"], [True, False], 100,
                      ["c_name", "c_custkey", "o_orderkey", "o_orderdate", "o_totalprice", "sum(l_quantity)"])


Q19_BRANCHES = (
    ("Brand#12", ["SM CASE", "SM BOX", "SM PACK", "SM PKG"], 1, 5),
    ("Brand#23", ["MED BAG", "MED BOX", "MED PKG", "MED PACK"], 10, 10),
    ("Brand#34", ["LG CASE", "LG BOX", "LG PACK", "LG PKG"], 20, 15),
)


def q19_branch(brand: str, containers: list[str], low: int, size: int) -> Expr:
    """One of Q19's three ORed conditions on the joined part and line."""
    return ((col("p_brand") == brand) & col("p_container").is_in(containers)
            & between("l_quantity", low, low + 10) & between("p_size", 1, size))


def q19(data: str) -> pd.DataFrame:
    """Discounted revenue: the OR of conditions on both tables is a filter after the join; the conditions
    every branch shares (ship mode and instructions) filter the scan."""
    part = scan(data, "part", ["p_partkey", "p_brand", "p_container", "p_size"])
    lineitem = scan(data, "lineitem", ["l_partkey", "l_quantity", "l_extendedprice", "l_discount"],
                    col("l_shipmode").is_in(["AIR", "AIR REG"]) & (col("l_shipinstruct") == "DELIVER IN PERSON"))
    ds = join(lineitem, part, ["l_partkey"], ["p_partkey"]).filter(
        expr=reduce(operator.or_, (q19_branch(*branch) for branch in Q19_BRANCHES)))
    return totals(ds.with_column("volume", volume()), Sum("volume", alias_name="revenue"))


def q20(data: str) -> pd.DataFrame:
    """Potential part promotion: the correlated sum is a sum per (part, supplier) joined back."""
    forest = scan(data, "part", ["p_partkey"], col("p_name").str.match("forest%"))
    shipped = group(scan(data, "lineitem", ["l_partkey", "l_suppkey", "l_quantity"],
                         during("l_shipdate", date(1994, 1, 1), date(1995, 1, 1))),
                    ["l_partkey", "l_suppkey"], Sum("l_quantity", alias_name="shipped"))
    stocked = join(scan(data, "partsupp", ["ps_partkey", "ps_suppkey", "ps_availqty"]), forest,
                   ["ps_partkey"], ["p_partkey"], how="left_semi")
    stocked = join(stocked, shipped, ["ps_partkey", "ps_suppkey"], ["l_partkey", "l_suppkey"]).filter(
        expr=col("ps_availqty") > col("shipped") * 0.5)
    canada = scan(data, "nation", ["n_nationkey"], col("n_name") == "CANADA")
    supplier = join(scan(data, "supplier", ["s_suppkey", "s_name", "s_address", "s_nationkey"]), canada,
                    ["s_nationkey"], ["n_nationkey"], how="left_semi")
    return pandas_sorted(join(supplier, stocked, ["s_suppkey"], ["ps_suppkey"], how="left_semi"), ["s_name"],
                         columns=["s_name", "s_address"])


def q21(data: str) -> pd.DataFrame:
    """Suppliers who kept orders waiting. EXISTS (another supplier on the order) holds when the order has
    more than one distinct supplier; NOT EXISTS (another supplier late on it) when its late lines have one
    distinct supplier, this line's own: both are counts per order joined back."""
    late = scan(data, "lineitem", ["l_orderkey", "l_suppkey"], col("l_receiptdate") > col("l_commitdate"))
    suppliers = group(scan(data, "lineitem", ["l_orderkey", "l_suppkey"]), ["l_orderkey"],
                      CountDistinct("l_suppkey", alias_name="suppliers"))
    late_suppliers = group(late, ["l_orderkey"], CountDistinct("l_suppkey", alias_name="late_suppliers"))
    saudi = scan(data, "nation", ["n_nationkey"], col("n_name") == "SAUDI ARABIA")
    supplier = join(scan(data, "supplier", ["s_suppkey", "s_name", "s_nationkey"]), saudi,
                    ["s_nationkey"], ["n_nationkey"], how="left_semi")
    failed = scan(data, "orders", ["o_orderkey"], col("o_orderstatus") == "F")
    ds = join(join(late, supplier, ["l_suppkey"], ["s_suppkey"]), failed, ["l_orderkey"], ["o_orderkey"],
              how="left_semi")
    ds = join(join(ds, suppliers, ["l_orderkey"]), late_suppliers, ["l_orderkey"]).filter(
        expr=(col("suppliers") > 1) & (col("late_suppliers") == 1))
    return ray_sorted(group(ds, ["s_name"], Count(alias_name="numwait")), ["numwait", "s_name"], [True, False], 100)


def q22(data: str) -> pd.DataFrame:
    """Global sales opportunity: the average balance is a value computed first; NOT EXISTS (orders) is an
    anti join."""
    codes = ["13", "31", "23", "29", "30", "18", "17"]
    customer = (scan(data, "customer", ["c_custkey", "c_phone", "c_acctbal"])
                .with_column("cntrycode", col("c_phone").str.slice(0, 2))
                .filter(expr=col("cntrycode").is_in(codes)).materialize())
    average = customer.filter(expr=col("c_acctbal") > 0.0).mean("c_acctbal")
    ds = join(customer.filter(expr=col("c_acctbal") > average), scan(data, "orders", ["o_custkey"]),
              ["c_custkey"], ["o_custkey"], how="left_anti")
    ds = group(ds, ["cntrycode"], Count(alias_name="numcust"), Sum("c_acctbal", alias_name="totacctbal"))
    return pandas_sorted(ds, ["cntrycode"])


QUERIES: dict[int, Callable[[str], pd.DataFrame]] = {
    12: q12, 13: q13, 14: q14, 15: q15, 16: q16, 17: q17, 18: q18, 19: q19, 20: q20, 21: q21, 22: q22,
}
