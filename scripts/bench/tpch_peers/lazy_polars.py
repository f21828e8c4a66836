"""The 22 TPC-H queries in Polars' lazy API, as a Polars user writes them for the benchmark's side-by-side runs.

Each query is one lazy plan: `scan_parquet` for every table it reads, filters and column choices written
early (the optimizer pushes them into the scans as well), then one chain of joins and aggregates, and one
`collect()` at the end. Subqueries take their usual Polars shapes: IN / EXISTS are semi joins, NOT IN / NOT EXISTS anti
joins, a correlated aggregate is a window (`.over(key)`) or a per-key aggregate joined back, and a scalar
subquery over the rows at hand is an aggregate inside the filter. No Python runs per row.

Decimals stay decimals, with one care: Polars keeps the larger of the operands' scales in a product and
rounds to it, where SQL keeps the sum of the scales. `widened` gives one factor the places the exact
product needs, so sums of products agree with the reference to the cent's fraction. A ratio of decimals
(a market share, an average per year) is computed in floats, as SQL's division gives a double. A SUM over
a whole table is NULL when no row is left, as in SQL (it happens at tiny scale factors).

Queries 1 to 11 are here; the shared helpers and queries 12 to 22 are in `lazy_polars_2`; `QUERIES` here
holds all 22.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal

import pandas as pd
import polars as pl

from bench.tpch_peers import lazy_polars_2
from bench.tpch_peers.lazy_polars_2 import (answer, during, nation_named, ratio, region_nations, scan, total,
                                            volume, widened)


def q01(data: str) -> pd.DataFrame:
    """Pricing summary report."""
    charge = widened(pl.col("l_extendedprice"), 6) * (1 - pl.col("l_discount")) * (1 + pl.col("l_tax"))
    return answer(
        scan(data, "lineitem")
        .filter(pl.col("l_shipdate") <= date(1998, 9, 2))
        .group_by("l_returnflag", "l_linestatus")
        .agg(sum_qty=pl.col("l_quantity").sum(), sum_base_price=pl.col("l_extendedprice").sum(),
             sum_disc_price=volume().sum(), sum_charge=charge.sum(),
             avg_qty=pl.col("l_quantity").mean(), avg_price=pl.col("l_extendedprice").mean(),
             avg_disc=pl.col("l_discount").mean(), count_order=pl.len())
        .sort("l_returnflag", "l_linestatus")
    )


def q02(data: str) -> pd.DataFrame:
    """Minimum cost supplier: the correlated minimum is a minimum per part over the joined offers."""
    european = scan(data, "supplier").join(region_nations(data, "EUROPE"), left_on="s_nationkey",
                                           right_on="n_nationkey")
    offers = scan(data, "partsupp").join(european, left_on="ps_suppkey", right_on="s_suppkey")
    return answer(
        scan(data, "part")
        .filter(pl.col("p_size") == 15, pl.col("p_type").str.ends_with("BRASS"))
        .join(offers, left_on="p_partkey", right_on="ps_partkey")
        .filter(pl.col("ps_supplycost") == pl.col("ps_supplycost").min().over("p_partkey"))
        .sort(["s_acctbal", "n_name", "s_name", "p_partkey"], descending=[True, False, False, False])
        .head(100)
        .select("s_acctbal", "s_name", "n_name", "p_partkey", "p_mfgr", "s_address", "s_phone", "s_comment")
    )


def q03(data: str) -> pd.DataFrame:
    """Shipping priority."""
    building = scan(data, "customer").filter(pl.col("c_mktsegment") == "BUILDING")
    orders = (scan(data, "orders").filter(pl.col("o_orderdate") < date(1995, 3, 15))
              .join(building, left_on="o_custkey", right_on="c_custkey", how="semi"))
    return answer(
        scan(data, "lineitem")
        .filter(pl.col("l_shipdate") > date(1995, 3, 15))
        .join(orders, left_on="l_orderkey", right_on="o_orderkey")
        .group_by("l_orderkey", "o_orderdate", "o_shippriority")
        .agg(revenue=volume().sum())
        .sort(["revenue", "o_orderdate"], descending=[True, False])
        .head(10)
        .select("l_orderkey", "revenue", "o_orderdate", "o_shippriority")
    )


def q04(data: str) -> pd.DataFrame:
    """Order priority checking: EXISTS (a late line) is a semi join."""
    late = scan(data, "lineitem").filter(pl.col("l_commitdate") < pl.col("l_receiptdate"))
    return answer(
        scan(data, "orders")
        .filter(during("o_orderdate", date(1993, 7, 1), date(1993, 10, 1)))
        .join(late, left_on="o_orderkey", right_on="l_orderkey", how="semi")
        .group_by("o_orderpriority")
        .agg(order_count=pl.len())
        .sort("o_orderpriority")
    )


def q05(data: str) -> pd.DataFrame:
    """Local supplier volume: customer and supplier of the same nation, a join on two keys."""
    asian = scan(data, "supplier").join(region_nations(data, "ASIA"), left_on="s_nationkey",
                                        right_on="n_nationkey")
    orders = scan(data, "orders").filter(during("o_orderdate", date(1994, 1, 1), date(1995, 1, 1)))
    return answer(
        scan(data, "lineitem")
        .join(orders, left_on="l_orderkey", right_on="o_orderkey")
        .join(scan(data, "customer"), left_on="o_custkey", right_on="c_custkey")
        .join(asian, left_on=["l_suppkey", "c_nationkey"], right_on=["s_suppkey", "s_nationkey"])
        .group_by("n_name")
        .agg(revenue=volume().sum())
        .sort("revenue", descending=True)
    )


def q06(data: str) -> pd.DataFrame:
    """Forecasting revenue change."""
    return answer(
        scan(data, "lineitem")
        .filter(during("l_shipdate", date(1994, 1, 1), date(1995, 1, 1)),
                pl.col("l_discount").is_between(Decimal("0.05"), Decimal("0.07")),
                pl.col("l_quantity") < 24)
        .select(revenue=total(widened(pl.col("l_extendedprice"), 4) * pl.col("l_discount")))
    )


def q07(data: str) -> pd.DataFrame:
    """Volume shipping: the nation table twice, under two names; the OR across them is a filter after the joins."""
    pair = scan(data, "nation").filter(pl.col("n_name").is_in(["FRANCE", "GERMANY"]))
    supplier = (scan(data, "supplier").join(pair, left_on="s_nationkey", right_on="n_nationkey")
                .select("s_suppkey", supp_nation="n_name"))
    customer = (scan(data, "customer").join(pair, left_on="c_nationkey", right_on="n_nationkey")
                .select("c_custkey", cust_nation="n_name"))
    return answer(
        scan(data, "lineitem")
        .filter(pl.col("l_shipdate").is_between(date(1995, 1, 1), date(1996, 12, 31)))
        .join(supplier, left_on="l_suppkey", right_on="s_suppkey")
        .join(scan(data, "orders"), left_on="l_orderkey", right_on="o_orderkey")
        .join(customer, left_on="o_custkey", right_on="c_custkey")
        .filter(((pl.col("supp_nation") == "FRANCE") & (pl.col("cust_nation") == "GERMANY"))
                | ((pl.col("supp_nation") == "GERMANY") & (pl.col("cust_nation") == "FRANCE")))
        .group_by("supp_nation", "cust_nation", l_year=pl.col("l_shipdate").dt.year())
        .agg(revenue=volume().sum())
        .sort("supp_nation", "cust_nation", "l_year")
    )


def q08(data: str) -> pd.DataFrame:
    """National market share: CASE WHEN is `when/then/otherwise`."""
    american = scan(data, "customer").join(region_nations(data, "AMERICA"), left_on="c_nationkey",
                                           right_on="n_nationkey", how="semi")
    supplier = (scan(data, "supplier").join(scan(data, "nation"), left_on="s_nationkey", right_on="n_nationkey")
                .select("s_suppkey", nation="n_name"))
    orders = (scan(data, "orders").filter(pl.col("o_orderdate").is_between(date(1995, 1, 1), date(1996, 12, 31)))
              .join(american, left_on="o_custkey", right_on="c_custkey", how="semi"))
    steel = scan(data, "part").filter(pl.col("p_type") == "ECONOMY ANODIZED STEEL")
    brazil = pl.when(pl.col("nation") == "BRAZIL").then(volume()).otherwise(0)
    return answer(
        scan(data, "lineitem")
        .join(steel, left_on="l_partkey", right_on="p_partkey", how="semi")
        .join(orders, left_on="l_orderkey", right_on="o_orderkey")
        .join(supplier, left_on="l_suppkey", right_on="s_suppkey")
        .group_by(o_year=pl.col("o_orderdate").dt.year())
        .agg(mkt_share=ratio(brazil.sum(), volume().sum()))
        .sort("o_year")
    )


def q09(data: str) -> pd.DataFrame:
    """Product type profit measure."""
    green = scan(data, "part").filter(pl.col("p_name").str.contains("green", literal=True))
    supplier = scan(data, "supplier").join(scan(data, "nation"), left_on="s_nationkey", right_on="n_nationkey")
    amount = volume() - widened(pl.col("ps_supplycost"), 4) * pl.col("l_quantity")
    return answer(
        scan(data, "lineitem")
        .join(green, left_on="l_partkey", right_on="p_partkey", how="semi")
        .join(scan(data, "partsupp"), left_on=["l_partkey", "l_suppkey"], right_on=["ps_partkey", "ps_suppkey"])
        .join(supplier, left_on="l_suppkey", right_on="s_suppkey")
        .join(scan(data, "orders"), left_on="l_orderkey", right_on="o_orderkey")
        .group_by(nation="n_name", o_year=pl.col("o_orderdate").dt.year())
        .agg(sum_profit=amount.sum())
        .sort(["nation", "o_year"], descending=[False, True])
    )


def q10(data: str) -> pd.DataFrame:
    """Returned item reporting."""
    orders = scan(data, "orders").filter(during("o_orderdate", date(1993, 10, 1), date(1994, 1, 1)))
    returned = (scan(data, "lineitem").filter(pl.col("l_returnflag") == "R")
                .join(orders, left_on="l_orderkey", right_on="o_orderkey"))
    return answer(
        scan(data, "customer")
        .join(returned, left_on="c_custkey", right_on="o_custkey")
        .join(scan(data, "nation"), left_on="c_nationkey", right_on="n_nationkey")
        .group_by("c_custkey", "c_name", "c_acctbal", "c_phone", "n_name", "c_address", "c_comment")
        .agg(revenue=volume().sum())
        .sort("revenue", descending=True)
        .head(20)
        .select("c_custkey", "c_name", "revenue", "c_acctbal", "n_name", "c_address", "c_phone", "c_comment")
    )


def q11(data: str) -> pd.DataFrame:
    """Important stock identification: the scalar subquery is the sum over all parts, inside the filter."""
    german = scan(data, "supplier").join(nation_named(data, "GERMANY"), left_on="s_nationkey",
                                         right_on="n_nationkey", how="semi")
    return answer(
        scan(data, "partsupp")
        .join(german, left_on="ps_suppkey", right_on="s_suppkey", how="semi")
        .group_by("ps_partkey")
        .agg(value=(pl.col("ps_supplycost") * pl.col("ps_availqty")).sum())
        .filter(pl.col("value") > widened(pl.col("value").sum(), 6) * Decimal("0.0001"))
        .sort("value", descending=True)
    )


QUERIES: dict[int, Callable[[str], pd.DataFrame]] = {
    1: q01, 2: q02, 3: q03, 4: q04, 5: q05, 6: q06, 7: q07, 8: q08, 9: q09, 10: q10, 11: q11,
    **lazy_polars_2.QUERIES,
}
