"""The 22 TPC-H queries as a Ray Data user writes them, the Ray Data peer of the benchmark's side-by-side runs.

Each query reads its tables with `ray.data.read_parquet`, keeps rows with `filter(expr=...)` and derives
columns with `with_columns` (Arrow expressions from `ray.data.expressions`), joins with `Dataset.join` (a hash
join; semi and anti joins for IN / EXISTS and their negations), aggregates with `groupby(...).aggregate(...)`
and sorts with `Dataset.sort` before `to_pandas()`. Only steps over a handful of rows run in pandas
afterwards: the final sort of an answer of a few hundred rows at most, and the arithmetic on a one-row total
(Q14's ratio, Q17's division by 7). A scalar subquery is a value computed first (`Dataset.sum` / `max` /
`mean` over a materialized dataset) and used as a literal. Joins and group-bys get one hash partition per CPU
of the cluster (a join must be told a number; a group-by's default, 200 partitions, is tuned for large
clusters).

Decimal columns (DECIMAL(15,2) in the files) are cast to float64 as they are read: Ray Data's expressions
evaluate them with Arrow's decimal kernels, whose precision rules fail on the queries' arithmetic
(`l_extendedprice * (1 - l_discount) * (1 + l_tax)`: "Decimal precision out of range [1, 38]: 61") and
comparisons (`l_quantity < 24`: "Precision is not great enough for the result").

A filter that keeps no row gives Ray Data a block without columns, which a join cannot use; the two join
sides that are empty at small scale factors go through `guard_empty` (see there).

Queries 1 to 11 are here; the shared steps and queries 12 to 22 are in `ray_data_2`. `QUERIES` holds all 22.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pandas as pd
from ray.data import Dataset
from ray.data.aggregate import Count, Mean, Min, Sum
from ray.data.expressions import col

from bench.tpch_peers.ray_data_2 import QUERIES as QUERIES_12_22
from bench.tpch_peers.ray_data_2 import (between, case_when, during, group, join, pandas_sorted, ray_sorted,
                                         region_nations, scan, totals, volume)


def q01(data: str) -> pd.DataFrame:
    """Pricing summary report."""
    lineitem = scan(data, "lineitem", ["l_returnflag", "l_linestatus", "l_quantity", "l_extendedprice",
                                       "l_discount", "l_tax"], col("l_shipdate") <= date(1998, 9, 2))
    priced = lineitem.with_columns({"disc_price": volume(), "charge": volume() * (1 + col("l_tax"))})
    ds = group(priced, ["l_returnflag", "l_linestatus"],
               Sum("l_quantity", alias_name="sum_qty"), Sum("l_extendedprice", alias_name="sum_base_price"),
               Sum("disc_price", alias_name="sum_disc_price"), Sum("charge", alias_name="sum_charge"),
               Mean("l_quantity", alias_name="avg_qty"), Mean("l_extendedprice", alias_name="avg_price"),
               Mean("l_discount", alias_name="avg_disc"), Count(alias_name="count_order"))
    return pandas_sorted(ds, ["l_returnflag", "l_linestatus"])


def q02(data: str) -> pd.DataFrame:
    """Minimum cost supplier: the correlated minimum is a minimum per part joined back on (part, cost)."""
    supplier = join(scan(data, "supplier", ["s_suppkey", "s_name", "s_address", "s_nationkey", "s_phone",
                                            "s_acctbal", "s_comment"]),
                    region_nations(data, "EUROPE"), ["s_nationkey"], ["n_nationkey"])
    offers = join(scan(data, "partsupp", ["ps_partkey", "ps_suppkey", "ps_supplycost"]), supplier,
                  ["ps_suppkey"], ["s_suppkey"])
    cheapest = group(offers, ["ps_partkey"], Min("ps_supplycost", alias_name="min_cost"))
    part = scan(data, "part", ["p_partkey", "p_mfgr"], (col("p_size") == 15) & col("p_type").str.match("%BRASS"))
    ds = join(join(part, offers, ["p_partkey"], ["ps_partkey"]), cheapest,
              ["p_partkey", "ps_supplycost"], ["ps_partkey", "min_cost"])
    return ray_sorted(ds, ["s_acctbal", "n_name", "s_name", "p_partkey"], [True, False, False, False], 100,
                      ["s_acctbal", "s_name", "n_name", "p_partkey", "p_mfgr", "s_address", "s_phone", "s_comment"])


def q03(data: str) -> pd.DataFrame:
    """Shipping priority."""
    customer = scan(data, "customer", ["c_custkey"], col("c_mktsegment") == "BUILDING")
    orders = scan(data, "orders", ["o_orderkey", "o_custkey", "o_orderdate", "o_shippriority"],
                  col("o_orderdate") < date(1995, 3, 15))
    lineitem = scan(data, "lineitem", ["l_orderkey", "l_extendedprice", "l_discount"],
                    col("l_shipdate") > date(1995, 3, 15))
    ds = join(join(lineitem, orders, ["l_orderkey"], ["o_orderkey"]), customer, ["o_custkey"], ["c_custkey"],
              how="left_semi")
    ds = group(ds.with_column("volume", volume()), ["l_orderkey", "o_orderdate", "o_shippriority"],
               Sum("volume", alias_name="revenue"))
    return ray_sorted(ds, ["revenue", "o_orderdate"], [True, False], 10,
                      ["l_orderkey", "revenue", "o_orderdate", "o_shippriority"])


def q04(data: str) -> pd.DataFrame:
    """Order priority checking: EXISTS is a semi join."""
    orders = scan(data, "orders", ["o_orderkey", "o_orderpriority"],
                  during("o_orderdate", date(1993, 7, 1), date(1993, 10, 1)))
    late = scan(data, "lineitem", ["l_orderkey"], col("l_commitdate") < col("l_receiptdate"))
    ds = group(join(orders, late, ["o_orderkey"], ["l_orderkey"], how="left_semi"), ["o_orderpriority"],
               Count(alias_name="order_count"))
    return pandas_sorted(ds, ["o_orderpriority"])


def q05(data: str) -> pd.DataFrame:
    """Local supplier volume: customer and supplier of the same nation, a join on two keys."""
    customer = scan(data, "customer", ["c_custkey", "c_nationkey"])
    orders = scan(data, "orders", ["o_orderkey", "o_custkey"],
                  during("o_orderdate", date(1994, 1, 1), date(1995, 1, 1)))
    lineitem = scan(data, "lineitem", ["l_orderkey", "l_suppkey", "l_extendedprice", "l_discount"])
    supplier = join(scan(data, "supplier", ["s_suppkey", "s_nationkey"]), region_nations(data, "ASIA"),
                    ["s_nationkey"], ["n_nationkey"])
    ds = join(join(join(lineitem, orders, ["l_orderkey"], ["o_orderkey"]), customer, ["o_custkey"], ["c_custkey"]),
              supplier, ["l_suppkey", "c_nationkey"], ["s_suppkey", "s_nationkey"])
    ds = group(ds.with_column("volume", volume()), ["n_name"], Sum("volume", alias_name="revenue"))
    return pandas_sorted(ds, ["revenue"], True)


def q06(data: str) -> pd.DataFrame:
    """Forecasting revenue change."""
    lineitem = scan(data, "lineitem", ["l_extendedprice", "l_discount", "l_quantity"],
                    during("l_shipdate", date(1994, 1, 1), date(1995, 1, 1)))
    chosen = lineitem.filter(expr=between("l_discount", 0.05, 0.07) & (col("l_quantity") < 24))
    return totals(chosen.with_column("gain", col("l_extendedprice") * col("l_discount")),
                  Sum("gain", alias_name="revenue"))


def nations_named(data: str, names: list[str], as_name: str) -> Dataset:
    """n_nationkey and n_name (renamed `as_name`) of the nations called one of `names`."""
    return (scan(data, "nation", ["n_nationkey", "n_name"], col("n_name").is_in(names))
            .rename_columns({"n_name": as_name}))


def q07(data: str) -> pd.DataFrame:
    """Volume shipping: the nation table twice, under two names; the OR across them is a filter after the joins."""
    pair = ["FRANCE", "GERMANY"]
    supplier = join(scan(data, "supplier", ["s_suppkey", "s_nationkey"]), nations_named(data, pair, "supp_nation"),
                    ["s_nationkey"], ["n_nationkey"])
    customer = join(scan(data, "customer", ["c_custkey", "c_nationkey"]), nations_named(data, pair, "cust_nation"),
                    ["c_nationkey"], ["n_nationkey"])
    orders = scan(data, "orders", ["o_orderkey", "o_custkey"])
    lineitem = scan(data, "lineitem", ["l_orderkey", "l_suppkey", "l_shipdate", "l_extendedprice", "l_discount"],
                    between("l_shipdate", date(1995, 1, 1), date(1996, 12, 31)))
    ds = join(join(join(lineitem, supplier, ["l_suppkey"], ["s_suppkey"]), orders, ["l_orderkey"], ["o_orderkey"]),
              customer, ["o_custkey"], ["c_custkey"])
    crossing = (((col("supp_nation") == "FRANCE") & (col("cust_nation") == "GERMANY"))
                | ((col("supp_nation") == "GERMANY") & (col("cust_nation") == "FRANCE")))
    ds = ds.filter(expr=crossing).with_columns({"l_year": col("l_shipdate").dt.year(), "volume": volume()})
    ds = group(ds, ["supp_nation", "cust_nation", "l_year"], Sum("volume", alias_name="revenue"))
    return pandas_sorted(ds, ["supp_nation", "cust_nation", "l_year"])


def q08(data: str) -> pd.DataFrame:
    """National market share: CASE WHEN is an Arrow `if_else` in an expression."""
    customer = join(scan(data, "customer", ["c_custkey", "c_nationkey"]), region_nations(data, "AMERICA"),
                    ["c_nationkey"], ["n_nationkey"], how="left_semi")
    supplier = join(scan(data, "supplier", ["s_suppkey", "s_nationkey"]),
                    scan(data, "nation", ["n_nationkey", "n_name"]),
                    ["s_nationkey"], ["n_nationkey"])
    part = scan(data, "part", ["p_partkey"], col("p_type") == "ECONOMY ANODIZED STEEL")
    orders = scan(data, "orders", ["o_orderkey", "o_custkey", "o_orderdate"],
                  between("o_orderdate", date(1995, 1, 1), date(1996, 12, 31)))
    lineitem = scan(data, "lineitem", ["l_orderkey", "l_partkey", "l_suppkey", "l_extendedprice", "l_discount"])
    ds = join(join(lineitem, part, ["l_partkey"], ["p_partkey"], how="left_semi"), orders,
              ["l_orderkey"], ["o_orderkey"])
    ds = join(join(ds, customer, ["o_custkey"], ["c_custkey"], how="left_semi"), supplier, ["l_suppkey"], ["s_suppkey"])
    ds = ds.with_columns({"o_year": col("o_orderdate").dt.year(), "volume": volume(),
                          "brazil": case_when(col("n_name") == "BRAZIL", volume())})
    ds = group(ds, ["o_year"], Sum("brazil", alias_name="nation_volume"), Sum("volume", alias_name="total_volume"))
    ds = ds.with_column("mkt_share", col("nation_volume") / col("total_volume"))
    return pandas_sorted(ds, ["o_year"], columns=["o_year", "mkt_share"])


def q09(data: str) -> pd.DataFrame:
    """Product type profit measure."""
    part = scan(data, "part", ["p_partkey"], col("p_name").str.match("%green%"))
    partsupp = scan(data, "partsupp", ["ps_partkey", "ps_suppkey", "ps_supplycost"])
    supplier = join(scan(data, "supplier", ["s_suppkey", "s_nationkey"]),
                    scan(data, "nation", ["n_nationkey", "n_name"]), ["s_nationkey"], ["n_nationkey"])
    orders = scan(data, "orders", ["o_orderkey", "o_orderdate"])
    lineitem = scan(data, "lineitem", ["l_orderkey", "l_partkey", "l_suppkey", "l_quantity", "l_extendedprice",
                                       "l_discount"])
    ds = join(join(lineitem, part, ["l_partkey"], ["p_partkey"], how="left_semi"), partsupp,
              ["l_partkey", "l_suppkey"], ["ps_partkey", "ps_suppkey"])
    ds = join(join(ds, supplier, ["l_suppkey"], ["s_suppkey"]), orders, ["l_orderkey"], ["o_orderkey"])
    ds = ds.with_columns({"nation": col("n_name"), "o_year": col("o_orderdate").dt.year(),
                          "amount": volume() - col("ps_supplycost") * col("l_quantity")})
    ds = group(ds, ["nation", "o_year"], Sum("amount", alias_name="sum_profit"))
    return pandas_sorted(ds, ["nation", "o_year"], [False, True])


def q10(data: str) -> pd.DataFrame:
    """Returned item reporting."""
    customer = scan(data, "customer", ["c_custkey", "c_name", "c_address", "c_nationkey", "c_phone", "c_acctbal",
                                       "c_comment"])
    orders = scan(data, "orders", ["o_orderkey", "o_custkey"],
                  during("o_orderdate", date(1993, 10, 1), date(1994, 1, 1)))
    lineitem = scan(data, "lineitem", ["l_orderkey", "l_extendedprice", "l_discount"], col("l_returnflag") == "R")
    nation = scan(data, "nation", ["n_nationkey", "n_name"])
    ds = join(join(join(lineitem, orders, ["l_orderkey"], ["o_orderkey"]), customer, ["o_custkey"], ["c_custkey"]),
              nation, ["c_nationkey"], ["n_nationkey"])
    ds = group(ds.with_column("volume", volume()),
               ["o_custkey", "c_name", "c_acctbal", "c_phone", "n_name", "c_address", "c_comment"],
               Sum("volume", alias_name="revenue")).rename_columns({"o_custkey": "c_custkey"})
    return ray_sorted(ds, ["revenue"], True, 20, ["c_custkey", "c_name", "revenue", "c_acctbal", "n_name",
                                                  "c_address", "c_phone", "c_comment"])


def q11(data: str) -> pd.DataFrame:
    """Important stock identification: the HAVING's threshold is a total computed first."""
    germany = scan(data, "nation", ["n_nationkey"], col("n_name") == "GERMANY")
    supplier = join(scan(data, "supplier", ["s_suppkey", "s_nationkey"]), germany, ["s_nationkey"], ["n_nationkey"],
                    how="left_semi")
    stock = join(scan(data, "partsupp", ["ps_partkey", "ps_suppkey", "ps_supplycost", "ps_availqty"]), supplier,
                 ["ps_suppkey"], ["s_suppkey"], how="left_semi")
    stock = stock.with_column("worth", col("ps_supplycost") * col("ps_availqty")).materialize()
    threshold = stock.sum("worth") * 0.0001
    ds = group(stock, ["ps_partkey"], Sum("worth", alias_name="value")).filter(expr=col("value") > threshold)
    return ray_sorted(ds, ["value"], True)


QUERIES: dict[int, Callable[[str], pd.DataFrame]] = {
    1: q01, 2: q02, 3: q03, 4: q04, 5: q05, 6: q06, 7: q07, 8: q08, 9: q09, 10: q10, 11: q11, **QUERIES_12_22,
}
