"""The 22 TPC-H queries in Dask DataFrame, written as a Dask user would, as the benchmark's Dask peer.

Each query reads the columns it needs with `dd.read_parquet` (one partition per row group, simple filters
pushed into the read), joins with `merge`, aggregates with `groupby`, and calls `.compute()`; the caller's
context picks the scheduler (a `dask.config.set(scheduler=...)` block or an active distributed Client).
The one shared loader, `read`, casts the files' DECIMAL(15,2) columns to float64, because Dask fails on
pyarrow decimals ("Decimal precision out of range"), and their DATE columns to datetime64 for comparisons and
`.dt.year`. IN / EXISTS are merges with the distinct keys (semi joins), NOT IN / NOT EXISTS left merges that
keep `left_only` rows (anti joins), correlated subqueries aggregates merged back on their keys, and scalar
subqueries lazy Dask scalars. Small final steps (sorting a few hundred rows, LIMIT) run in pandas after the
compute. Queries 1 to 11 and the shared helpers live in `dask_frame_2`; `QUERIES` here holds all 22.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import dask
import pandas as pd

from bench.tpch_peers.dask_frame_2 import (QUERIES_1_11, anti_join, between, grouped, nation_key, ordered, read,
                                           semi_join, volume)


def q12(data: str) -> pd.DataFrame:
    """Shipping modes and order priority: the two CASE sums are sums of 0/1 columns."""
    orders = read(data, "orders", ["o_orderkey", "o_orderpriority"])
    li = read(data, "lineitem", ["l_orderkey", "l_shipmode", "l_shipdate", "l_commitdate", "l_receiptdate"],
              [("l_shipmode", "in", ["MAIL", "SHIP"])] + between("l_receiptdate", date(1994, 1, 1), date(1995, 1, 1)))
    li = li[(li.l_commitdate < li.l_receiptdate) & (li.l_shipdate < li.l_commitdate)]
    joined = orders.merge(li, left_on="o_orderkey", right_on="l_orderkey")
    high = joined.o_orderpriority.isin(["1-URGENT", "2-HIGH"]).astype("int64")
    joined = joined.assign(high_line_count=high, low_line_count=1 - high)
    result = grouped(joined, ["l_shipmode"], high_line_count=("high_line_count", "sum"),
                     low_line_count=("low_line_count", "sum"))
    return ordered(result, ["l_shipmode"])


def q13(data: str) -> pd.DataFrame:
    """Customer distribution: a left merge, counting the (non-null) order keys per customer."""
    customer = read(data, "customer", ["c_custkey"])
    orders = read(data, "orders", ["o_orderkey", "o_custkey", "o_comment"])
    orders = orders[~orders.o_comment.str.contains("special.*requests")]
    joined = customer.merge(orders[["o_orderkey", "o_custkey"]], left_on="c_custkey", right_on="o_custkey",
                            how="left")
    counts = joined.groupby("c_custkey").o_orderkey.count().to_frame("c_count")
    result = grouped(counts, ["c_count"], custdist=("c_count", "size"))
    return ordered(result, ["custdist", "c_count"], False)


def q14(data: str) -> pd.DataFrame:
    """Promotion effect: two sums of one merge, computed together."""
    part = read(data, "part", ["p_partkey", "p_type"])
    li = read(data, "lineitem", ["l_partkey", "l_extendedprice", "l_discount"],
              between("l_shipdate", date(1995, 9, 1), date(1995, 10, 1)))
    joined = li.merge(part, left_on="l_partkey", right_on="p_partkey")
    total = volume(joined)
    promo, total = dask.compute(total.where(joined.p_type.str.startswith("PROMO"), 0.0).sum(), total.sum())
    return pd.DataFrame({"promo_revenue": [100.0 * promo / total]})


def q15(data: str) -> pd.DataFrame:
    """Top supplier: the view is one frame, filtered by its own (lazy) maximum."""
    li = read(data, "lineitem", ["l_suppkey", "l_extendedprice", "l_discount"],
              between("l_shipdate", date(1996, 1, 1), date(1996, 4, 1)))
    revenue = li.assign(total_revenue=volume(li)).groupby("l_suppkey").total_revenue.sum().reset_index()
    best = revenue[revenue.total_revenue == revenue.total_revenue.max()]
    supplier = read(data, "supplier", ["s_suppkey", "s_name", "s_address", "s_phone"])
    result = supplier.merge(best, left_on="s_suppkey", right_on="l_suppkey").compute()
    return ordered(result, ["s_suppkey"], columns=["s_suppkey", "s_name", "s_address", "s_phone", "total_revenue"])


def q16(data: str) -> pd.DataFrame:
    """Parts/supplier relationship: NOT IN (suppliers with complaints) is an anti join."""
    supplier = read(data, "supplier", ["s_suppkey", "s_comment"])
    complaints = supplier[supplier.s_comment.str.contains("Customer.*Complaints")]
    part = read(data, "part", ["p_partkey", "p_brand", "p_type", "p_size"],
                [("p_brand", "!=", "Brand#45"), ("p_size", "in", [49, 14, 23, 45, 19, 3, 36, 9])])
    part = part[~part.p_type.str.startswith("MEDIUM POLISHED")]
    partsupp = anti_join(read(data, "partsupp", ["ps_partkey", "ps_suppkey"]), complaints, "ps_suppkey",
                         "s_suppkey")
    joined = part.merge(partsupp, left_on="p_partkey", right_on="ps_partkey")
    counts = joined.groupby(["p_brand", "p_type", "p_size"]).ps_suppkey.nunique()
    result = counts.rename("supplier_cnt").compute().reset_index()
    return ordered(result, ["supplier_cnt", "p_brand", "p_type", "p_size"], [False, True, True, True])


def q17(data: str) -> pd.DataFrame:
    """Small-quantity-order revenue: the average quantity per part, merged back on the part."""
    part = read(data, "part", ["p_partkey"], [("p_brand", "==", "Brand#23"), ("p_container", "==", "MED BOX")])
    li = read(data, "lineitem", ["l_partkey", "l_quantity", "l_extendedprice"]).merge(
        part, left_on="l_partkey", right_on="p_partkey")
    average = li.groupby("l_partkey").l_quantity.mean().rename("avg_quantity").reset_index()
    joined = li.merge(average, on="l_partkey")
    small = joined[joined.l_quantity < 0.2 * joined.avg_quantity].l_extendedprice
    total, rows = dask.compute(small.sum(), small.count())
    return pd.DataFrame({"avg_yearly": [total / 7.0 if rows else None]}, dtype="float64")


def q18(data: str) -> pd.DataFrame:
    """Large volume customer: the orders over 300 units carry their quantity into the merges, so
    `sum(l_quantity)` needs no second pass over lineitem."""
    quantity = read(data, "lineitem", ["l_orderkey", "l_quantity"]).groupby("l_orderkey").l_quantity.sum()
    large = quantity[quantity > 300].rename("sum(l_quantity)").reset_index()
    orders = read(data, "orders", ["o_orderkey", "o_custkey", "o_orderdate", "o_totalprice"])
    customer = read(data, "customer", ["c_custkey", "c_name"])
    result = (orders.merge(large, left_on="o_orderkey", right_on="l_orderkey")
              .merge(customer, left_on="o_custkey", right_on="c_custkey").compute())
    return ordered(result, ["o_totalprice", "o_orderdate"], [False, True], 100,
                   ["c_name", "c_custkey", "o_orderkey", "o_orderdate", "o_totalprice", "sum(l_quantity)"])


Q19_BRANCHES = (  # brand, containers, lowest quantity, largest size
    ("Brand#12", ["SM CASE", "SM BOX", "SM PACK", "SM PKG"], 1, 5),
    ("Brand#23", ["MED BAG", "MED BOX", "MED PKG", "MED PACK"], 10, 10),
    ("Brand#34", ["LG CASE", "LG BOX", "LG PACK", "LG PKG"], 20, 15),
)


def q19(data: str) -> pd.DataFrame:
    """Discounted revenue: the OR of three conditions across both tables filters the merge; the conditions
    every branch shares (ship mode and instructions) are read filters."""
    part = read(data, "part", ["p_partkey", "p_brand", "p_container", "p_size"])
    li = read(data, "lineitem", ["l_partkey", "l_quantity", "l_extendedprice", "l_discount"],
              [("l_shipmode", "in", ["AIR", "AIR REG"]), ("l_shipinstruct", "==", "DELIVER IN PERSON")])
    joined = li.merge(part, left_on="l_partkey", right_on="p_partkey")
    chosen = None
    for brand, containers, low, size in Q19_BRANCHES:
        branch = ((joined.p_brand == brand) & joined.p_container.isin(containers)
                  & (joined.l_quantity >= low) & (joined.l_quantity <= low + 10)
                  & (joined.p_size >= 1) & (joined.p_size <= size))
        chosen = branch if chosen is None else chosen | branch
    return pd.DataFrame({"revenue": [volume(joined[chosen]).sum().compute()]})


def q20(data: str) -> pd.DataFrame:
    """Potential part promotion: the correlated sum is a sum per (part, supplier) merged back."""
    part = read(data, "part", ["p_partkey", "p_name"])
    forest = part[part.p_name.str.startswith("forest")]
    shipped = (read(data, "lineitem", ["l_partkey", "l_suppkey", "l_quantity"],
                    between("l_shipdate", date(1994, 1, 1), date(1995, 1, 1)))
               .groupby(["l_partkey", "l_suppkey"]).l_quantity.sum().rename("shipped").reset_index())
    stocked = (semi_join(read(data, "partsupp", ["ps_partkey", "ps_suppkey", "ps_availqty"]), forest,
                         "ps_partkey", "p_partkey")
               .merge(shipped, left_on=["ps_partkey", "ps_suppkey"], right_on=["l_partkey", "l_suppkey"]))
    stocked = stocked[stocked.ps_availqty > 0.5 * stocked.shipped]
    supplier = read(data, "supplier", ["s_suppkey", "s_name", "s_address", "s_nationkey"]).merge(
        nation_key(data, "CANADA"), left_on="s_nationkey", right_on="n_nationkey")
    result = semi_join(supplier, stocked, "s_suppkey", "ps_suppkey").compute()
    return ordered(result, ["s_name"], columns=["s_name", "s_address"])


def q21(data: str) -> pd.DataFrame:
    """Suppliers who kept orders waiting. EXISTS (another supplier on the order) holds when the order has
    more than one distinct supplier, NOT EXISTS (another supplier late on it) when its late lines have one
    distinct supplier, this line's own: both are per-order `nunique`s merged back."""
    li = read(data, "lineitem", ["l_orderkey", "l_suppkey", "l_receiptdate", "l_commitdate"])
    late = li[li.l_receiptdate > li.l_commitdate][["l_orderkey", "l_suppkey"]]
    suppliers = li.groupby("l_orderkey").l_suppkey.nunique().rename("suppliers").reset_index()
    late_suppliers = late.groupby("l_orderkey").l_suppkey.nunique().rename("late_suppliers").reset_index()
    supplier = read(data, "supplier", ["s_suppkey", "s_name", "s_nationkey"]).merge(
        nation_key(data, "SAUDI ARABIA"), left_on="s_nationkey", right_on="n_nationkey")
    failed = read(data, "orders", ["o_orderkey"], [("o_orderstatus", "==", "F")])
    joined = (late.merge(supplier, left_on="l_suppkey", right_on="s_suppkey")
              .merge(failed, left_on="l_orderkey", right_on="o_orderkey")
              .merge(suppliers, on="l_orderkey").merge(late_suppliers, on="l_orderkey"))
    waiting = joined[(joined.suppliers > 1) & (joined.late_suppliers == 1)]
    result = grouped(waiting, ["s_name"], numwait=("l_orderkey", "count"))
    return ordered(result, ["numwait", "s_name"], [False, True], 100)


def q22(data: str) -> pd.DataFrame:
    """Global sales opportunity: the average balance is a lazy scalar; NOT EXISTS (orders) an anti join."""
    customer = read(data, "customer", ["c_custkey", "c_phone", "c_acctbal"])
    customer = customer.assign(cntrycode=customer.c_phone.str.slice(0, 2))
    customer = customer[customer.cntrycode.isin(["13", "31", "23", "29", "30", "18", "17"])]
    average = customer[customer.c_acctbal > 0.0].c_acctbal.mean()
    idle = anti_join(customer, read(data, "orders", ["o_custkey"]), "c_custkey", "o_custkey")
    idle = idle[idle.c_acctbal > average]
    result = grouped(idle, ["cntrycode"], numcust=("c_custkey", "count"), totacctbal=("c_acctbal", "sum"))
    return ordered(result, ["cntrycode"])


QUERIES: dict[int, Callable[[str], pd.DataFrame]] = {
    **QUERIES_1_11, 12: q12, 13: q13, 14: q14, 15: q15, 16: q16, 17: q17, 18: q18, 19: q19, 20: q20, 21: q21,
    22: q22,
}
