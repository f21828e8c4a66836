"""The 22 TPC-H queries in plain pandas over whole tables: the "plain pandas" peer of the benchmark.

This is what a data scientist writes on one machine, with no framework in between: `pd.read_parquet`-style
reads of the needed columns, `merge`, `groupby`, `sort_values`. It shows what the framework's parallel
version is measured against when a single process holds every table in memory.

Every table is read by one shared helper, `load` (in `pandas_whole_2`): it reads only the named columns,
pushes simple row filters on strings, integers and dates (equalities, ranges, IN lists) into pyarrow's
reader, casts the DECIMAL(15,2) columns to float64 (a pandas user does not compute in Python `Decimal`s;
comparisons on them happen in pandas, after the cast) and turns the date32 columns into datetime64, so
comparisons and `.dt.year` work. Everything after the read is vectorised pandas; no per-row Python.

Queries 1 to 11 are here; the shared helpers and queries 12 to 22 are in `pandas_whole_2`; `QUERIES` here
holds all 22.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pandas as pd

from bench.tpch_peers import pandas_whole_2
from bench.tpch_peers.pandas_whole_2 import load, nations, ordered, volume, within


def q01(folder: str) -> pd.DataFrame:
    """Pricing summary report."""
    li = load(folder, "lineitem", ["l_returnflag", "l_linestatus", "l_quantity", "l_extendedprice", "l_discount",
                                   "l_tax"], [("l_shipdate", "<=", date(1998, 9, 2))])
    li["disc_price"] = volume(li)
    li["charge"] = li["disc_price"] * (1 + li["l_tax"])
    out = li.groupby(["l_returnflag", "l_linestatus"], as_index=False).agg(
        sum_qty=("l_quantity", "sum"), sum_base_price=("l_extendedprice", "sum"),
        sum_disc_price=("disc_price", "sum"), sum_charge=("charge", "sum"), avg_qty=("l_quantity", "mean"),
        avg_price=("l_extendedprice", "mean"), avg_disc=("l_discount", "mean"), count_order=("l_quantity", "size"))
    return ordered(out, ["l_returnflag", "l_linestatus"])


def q02(folder: str) -> pd.DataFrame:
    """Minimum cost supplier: the correlated minimum is a per-part minimum over the European offers."""
    part = load(folder, "part", ["p_partkey", "p_mfgr", "p_type"], [("p_size", "==", 15)])
    part = part[part["p_type"].str.endswith("BRASS")]
    supplier = load(folder, "supplier", ["s_suppkey", "s_name", "s_address", "s_nationkey", "s_phone", "s_acctbal",
                                         "s_comment"])
    supplier = supplier.merge(nations(folder, region="EUROPE"), left_on="s_nationkey", right_on="n_nationkey")
    offers = load(folder, "partsupp", ["ps_partkey", "ps_suppkey", "ps_supplycost"])
    offers = offers.merge(supplier, left_on="ps_suppkey", right_on="s_suppkey")
    offers = offers[offers["ps_supplycost"] == offers.groupby("ps_partkey")["ps_supplycost"].transform("min")]
    out = part.merge(offers, left_on="p_partkey", right_on="ps_partkey")
    return ordered(out, ["s_acctbal", "n_name", "s_name", "p_partkey"], [False, True, True, True],
                   ["s_acctbal", "s_name", "n_name", "p_partkey", "p_mfgr", "s_address", "s_phone", "s_comment"],
                   limit=100)


def q03(folder: str) -> pd.DataFrame:
    """Shipping priority."""
    customer = load(folder, "customer", ["c_custkey"], [("c_mktsegment", "==", "BUILDING")])
    orders = load(folder, "orders", ["o_orderkey", "o_custkey", "o_orderdate", "o_shippriority"],
                  [("o_orderdate", "<", date(1995, 3, 15))])
    orders = orders[orders["o_custkey"].isin(customer["c_custkey"])]
    li = load(folder, "lineitem", ["l_orderkey", "l_extendedprice", "l_discount"],
              [("l_shipdate", ">", date(1995, 3, 15))])
    li = li.merge(orders, left_on="l_orderkey", right_on="o_orderkey").assign(revenue=volume)
    out = li.groupby(["l_orderkey", "o_orderdate", "o_shippriority"], as_index=False)["revenue"].sum()
    return ordered(out, ["revenue", "o_orderdate"], [False, True],
                   ["l_orderkey", "revenue", "o_orderdate", "o_shippriority"], limit=10)


def q04(folder: str) -> pd.DataFrame:
    """Order priority checking: EXISTS (a late line) keeps the orders whose key is among the late lines'."""
    orders = load(folder, "orders", ["o_orderkey", "o_orderpriority"],
                  within("o_orderdate", date(1993, 7, 1), date(1993, 10, 1)))
    li = load(folder, "lineitem", ["l_orderkey", "l_commitdate", "l_receiptdate"])
    late = li.loc[li["l_commitdate"] < li["l_receiptdate"], "l_orderkey"]
    orders = orders[orders["o_orderkey"].isin(late)]
    out = orders.groupby("o_orderpriority", as_index=False).agg(order_count=("o_orderkey", "size"))
    return ordered(out, "o_orderpriority")


def q05(folder: str) -> pd.DataFrame:
    """Local supplier volume: customer and supplier of the same nation, a merge on two keys."""
    customer = load(folder, "customer", ["c_custkey", "c_nationkey"])
    orders = load(folder, "orders", ["o_orderkey", "o_custkey"],
                  within("o_orderdate", date(1994, 1, 1), date(1995, 1, 1)))
    li = load(folder, "lineitem", ["l_orderkey", "l_suppkey", "l_extendedprice", "l_discount"])
    supplier = load(folder, "supplier", ["s_suppkey", "s_nationkey"])
    supplier = supplier.merge(nations(folder, region="ASIA"), left_on="s_nationkey", right_on="n_nationkey")
    li = (li.merge(orders, left_on="l_orderkey", right_on="o_orderkey")
          .merge(customer, left_on="o_custkey", right_on="c_custkey")
          .merge(supplier, left_on=["l_suppkey", "c_nationkey"], right_on=["s_suppkey", "s_nationkey"])
          .assign(revenue=volume))
    out = li.groupby("n_name", as_index=False)["revenue"].sum()
    return ordered(out, "revenue", False)


def q06(folder: str) -> pd.DataFrame:
    """Forecasting revenue change."""
    li = load(folder, "lineitem", ["l_extendedprice", "l_discount", "l_quantity"],
              within("l_shipdate", date(1994, 1, 1), date(1995, 1, 1)))
    li = li[li["l_discount"].between(0.05, 0.07) & (li["l_quantity"] < 24)]
    return pd.DataFrame({"revenue": [(li["l_extendedprice"] * li["l_discount"]).sum()]})


def q07(folder: str) -> pd.DataFrame:
    """Volume shipping: the nation table twice, under two names; the OR across them is a filter after the
    merges."""
    pair = ["FRANCE", "GERMANY"]
    supplier = load(folder, "supplier", ["s_suppkey", "s_nationkey"]).merge(
        nations(folder, pair).rename(columns={"n_name": "supp_nation"}), left_on="s_nationkey", right_on="n_nationkey")
    customer = load(folder, "customer", ["c_custkey", "c_nationkey"]).merge(
        nations(folder, pair).rename(columns={"n_name": "cust_nation"}), left_on="c_nationkey", right_on="n_nationkey")
    orders = load(folder, "orders", ["o_orderkey", "o_custkey"])
    li = load(folder, "lineitem", ["l_orderkey", "l_suppkey", "l_shipdate", "l_extendedprice", "l_discount"],
              [("l_shipdate", ">=", date(1995, 1, 1)), ("l_shipdate", "<=", date(1996, 12, 31))])
    li = (li.merge(supplier[["s_suppkey", "supp_nation"]], left_on="l_suppkey", right_on="s_suppkey")
          .merge(orders, left_on="l_orderkey", right_on="o_orderkey")
          .merge(customer[["c_custkey", "cust_nation"]], left_on="o_custkey", right_on="c_custkey"))
    li = li[((li["supp_nation"] == "FRANCE") & (li["cust_nation"] == "GERMANY"))
            | ((li["supp_nation"] == "GERMANY") & (li["cust_nation"] == "FRANCE"))]
    li = li.assign(l_year=li["l_shipdate"].dt.year, revenue=volume)
    out = li.groupby(["supp_nation", "cust_nation", "l_year"], as_index=False)["revenue"].sum()
    return ordered(out, ["supp_nation", "cust_nation", "l_year"])


def q08(folder: str) -> pd.DataFrame:
    """National market share: the CASE WHEN is `Series.where`."""
    customer = load(folder, "customer", ["c_custkey", "c_nationkey"])
    customer = customer[customer["c_nationkey"].isin(nations(folder, region="AMERICA")["n_nationkey"])]
    supplier = load(folder, "supplier", ["s_suppkey", "s_nationkey"]).merge(
        nations(folder).rename(columns={"n_name": "nation"}), left_on="s_nationkey", right_on="n_nationkey")
    part = load(folder, "part", ["p_partkey"], [("p_type", "==", "ECONOMY ANODIZED STEEL")])
    orders = load(folder, "orders", ["o_orderkey", "o_custkey", "o_orderdate"],
                  [("o_orderdate", ">=", date(1995, 1, 1)), ("o_orderdate", "<=", date(1996, 12, 31))])
    orders = orders[orders["o_custkey"].isin(customer["c_custkey"])]
    li = load(folder, "lineitem", ["l_orderkey", "l_partkey", "l_suppkey", "l_extendedprice", "l_discount"])
    li = (li[li["l_partkey"].isin(part["p_partkey"])]
          .merge(orders, left_on="l_orderkey", right_on="o_orderkey")
          .merge(supplier[["s_suppkey", "nation"]], left_on="l_suppkey", right_on="s_suppkey"))
    li = li.assign(o_year=li["o_orderdate"].dt.year, volume=volume)
    li["brazil"] = li["volume"].where(li["nation"] == "BRAZIL", 0.0)
    out = li.groupby("o_year", as_index=False)[["brazil", "volume"]].sum()
    out["mkt_share"] = out["brazil"] / out["volume"]
    return ordered(out, "o_year", columns=["o_year", "mkt_share"])


def q09(folder: str) -> pd.DataFrame:
    """Product type profit measure."""
    part = load(folder, "part", ["p_partkey", "p_name"])
    green = part.loc[part["p_name"].str.contains("green", regex=False), "p_partkey"]
    partsupp = load(folder, "partsupp", ["ps_partkey", "ps_suppkey", "ps_supplycost"])
    supplier = load(folder, "supplier", ["s_suppkey", "s_nationkey"]).merge(
        nations(folder).rename(columns={"n_name": "nation"}), left_on="s_nationkey", right_on="n_nationkey")
    orders = load(folder, "orders", ["o_orderkey", "o_orderdate"])
    li = load(folder, "lineitem", ["l_orderkey", "l_partkey", "l_suppkey", "l_quantity", "l_extendedprice",
                                   "l_discount"])
    li = (li[li["l_partkey"].isin(green)]
          .merge(partsupp, left_on=["l_partkey", "l_suppkey"], right_on=["ps_partkey", "ps_suppkey"])
          .merge(supplier[["s_suppkey", "nation"]], left_on="l_suppkey", right_on="s_suppkey")
          .merge(orders, left_on="l_orderkey", right_on="o_orderkey"))
    li = li.assign(o_year=li["o_orderdate"].dt.year,
                   amount=volume(li) - li["ps_supplycost"] * li["l_quantity"])
    out = li.groupby(["nation", "o_year"], as_index=False).agg(sum_profit=("amount", "sum"))
    return ordered(out, ["nation", "o_year"], [True, False])


def q10(folder: str) -> pd.DataFrame:
    """Returned item reporting: revenue per customer, then the customer's columns merged on (they depend on
    the key alone, so grouping by the key gives the SQL's groups)."""
    orders = load(folder, "orders", ["o_orderkey", "o_custkey"],
                  within("o_orderdate", date(1993, 10, 1), date(1994, 1, 1)))
    li = load(folder, "lineitem", ["l_orderkey", "l_extendedprice", "l_discount"], [("l_returnflag", "==", "R")])
    li = li.merge(orders, left_on="l_orderkey", right_on="o_orderkey").assign(revenue=volume)
    revenue = li.groupby("o_custkey", as_index=False)["revenue"].sum()
    customer = load(folder, "customer", ["c_custkey", "c_name", "c_address", "c_nationkey", "c_phone", "c_acctbal",
                                         "c_comment"])
    out = (revenue.merge(customer, left_on="o_custkey", right_on="c_custkey")
           .merge(nations(folder), left_on="c_nationkey", right_on="n_nationkey"))
    return ordered(out, "revenue", False, ["c_custkey", "c_name", "revenue", "c_acctbal", "n_name", "c_address",
                                           "c_phone", "c_comment"], limit=20)


def q11(folder: str) -> pd.DataFrame:
    """Important stock identification: HAVING against the total over the same rows."""
    supplier = load(folder, "supplier", ["s_suppkey", "s_nationkey"])
    supplier = supplier[supplier["s_nationkey"].isin(nations(folder, ["GERMANY"])["n_nationkey"])]
    stock = load(folder, "partsupp", ["ps_partkey", "ps_suppkey", "ps_supplycost", "ps_availqty"])
    stock = stock[stock["ps_suppkey"].isin(supplier["s_suppkey"])]
    stock = stock.assign(value=stock["ps_supplycost"] * stock["ps_availqty"])
    out = stock.groupby("ps_partkey", as_index=False)["value"].sum()
    out = out[out["value"] > stock["value"].sum() * 0.0001]
    return ordered(out, "value", False)


QUERIES: dict[int, Callable[[str], pd.DataFrame]] = {
    1: q01, 2: q02, 3: q03, 4: q04, 5: q05, 6: q06, 7: q07, 8: q08, 9: q09, 10: q10, 11: q11,
    **pandas_whole_2.QUERIES,
}
