"""TPC-H queries 1 to 8 as datasets: each function takes the folder of the tables and the per-chunk stages to
use (`s`, pandas by default, see `tpch.stage_sets`) and returns the answer's dataset, with the SQL's output
columns in its order. Filters on one table's columns are pushed into `read`; joins follow the SQL's WHERE
clause."""

from __future__ import annotations

from datetime import date

import pandas as pd

from pipeline.dataset import Dataset, read
from tpch.functions import VOLUME
from tpch.stage_sets import PANDAS, StageSet


def q01(data: str, s: StageSet = PANDAS) -> Dataset:
    """Pricing summary report."""
    lineitem = read(f"{data}/lineitem.parquet", filters=[("l_shipdate", "<=", date(1998, 9, 2))],
                    columns=["l_returnflag", "l_linestatus", "l_quantity", "l_extendedprice", "l_discount", "l_tax"])
    return (
        lineitem.then(s.derive, columns={"disc_price": "l_extendedprice * (1 - l_discount)",
                                       "charge": "disc_price * (1 + l_tax)"})
        .aggregate(by=["l_returnflag", "l_linestatus"], aggs={
            "sum_qty": ["l_quantity", "sum"], "sum_base_price": ["l_extendedprice", "sum"],
            "sum_disc_price": ["disc_price", "sum"], "sum_charge": ["charge", "sum"],
            "avg_qty": ["l_quantity", "mean"], "avg_price": ["l_extendedprice", "mean"],
            "avg_disc": ["l_discount", "mean"], "count_order": ["l_quantity", "size"]})
        .sort(["l_returnflag", "l_linestatus"])
    )


def region_nations(data: str, s: StageSet, region: str) -> Dataset:
    """n_nationkey, n_name of the nations in `region`."""
    chosen = read(f"{data}/region.parquet", columns=["r_regionkey"], filters=[("r_name", "==", region)])
    nation = read(f"{data}/nation.parquet", columns=["n_nationkey", "n_name", "n_regionkey"])
    return (nation.join(chosen, left_on="n_regionkey", right_on="r_regionkey")
            .then(s.select, columns=["n_nationkey", "n_name"]))


def q02(data: str, s: StageSet = PANDAS) -> Dataset:
    """Minimum cost supplier: the correlated minimum is an aggregate per part joined back on (part, cost)."""
    part = (read(f"{data}/part.parquet", columns=["p_partkey", "p_mfgr", "p_type"], filters=[("p_size", "==", 15)])
            .then(s.like, column="p_type", pattern="%BRASS"))
    supplier = read(f"{data}/supplier.parquet", columns=[
        "s_suppkey", "s_name", "s_address", "s_nationkey", "s_phone", "s_acctbal", "s_comment"])
    european = supplier.join(region_nations(data, s, "EUROPE"), left_on="s_nationkey", right_on="n_nationkey")
    offers = (read(f"{data}/partsupp.parquet", columns=["ps_partkey", "ps_suppkey", "ps_supplycost"])
              .join(european, left_on="ps_suppkey", right_on="s_suppkey"))
    cheapest = offers.aggregate(by=["ps_partkey"], aggs={"min_cost": ["ps_supplycost", "min"]})
    return (
        part.join(offers, left_on="p_partkey", right_on="ps_partkey")
        .join(cheapest, left_on=["p_partkey", "ps_supplycost"], right_on=["ps_partkey", "min_cost"])
        .top(100, by=["s_acctbal", "n_name", "s_name", "p_partkey"], ascending=[False, True, True, True])
        .then(s.select, columns=["s_acctbal", "s_name", "n_name", "p_partkey", "p_mfgr", "s_address", "s_phone",
                               "s_comment"])
    )


def q03(data: str, s: StageSet = PANDAS) -> Dataset:
    """Shipping priority."""
    customer = read(f"{data}/customer.parquet", columns=["c_custkey"], filters=[("c_mktsegment", "==", "BUILDING")])
    orders = read(f"{data}/orders.parquet", columns=["o_orderkey", "o_custkey", "o_orderdate", "o_shippriority"],
                  filters=[("o_orderdate", "<", date(1995, 3, 15))])
    lineitem = read(f"{data}/lineitem.parquet", columns=["l_orderkey", "l_extendedprice", "l_discount"],
                    filters=[("l_shipdate", ">", date(1995, 3, 15))])
    return (
        lineitem.join(orders, left_on="l_orderkey", right_on="o_orderkey")
        .join(customer, left_on="o_custkey", right_on="c_custkey")
        .then(s.derive, columns=VOLUME)
        .aggregate(by=["l_orderkey", "o_orderdate", "o_shippriority"], aggs={"revenue": ["volume", "sum"]})
        .top(10, by=["revenue", "o_orderdate"], ascending=[False, True])
        .then(s.select, columns=["l_orderkey", "revenue", "o_orderdate", "o_shippriority"])
    )


def q04(data: str, s: StageSet = PANDAS) -> Dataset:
    """Order priority checking: EXISTS is a semi join."""
    orders = read(f"{data}/orders.parquet", columns=["o_orderkey", "o_orderpriority"],
                  filters=[("o_orderdate", ">=", date(1993, 7, 1)), ("o_orderdate", "<", date(1993, 10, 1))])
    late = (read(f"{data}/lineitem.parquet", columns=["l_orderkey", "l_commitdate", "l_receiptdate"])
            .then(s.filter_rows, where="l_commitdate < l_receiptdate"))
    return (
        orders.join(late, left_on="o_orderkey", right_on="l_orderkey", how="semi")
        .aggregate(by=["o_orderpriority"], aggs={"order_count": ["o_orderkey", "size"]})
        .sort("o_orderpriority")
    )


def q05(data: str, s: StageSet = PANDAS) -> Dataset:
    """Local supplier volume: customer and supplier of the same nation, a join on two keys."""
    customer = read(f"{data}/customer.parquet", columns=["c_custkey", "c_nationkey"])
    orders = read(f"{data}/orders.parquet", columns=["o_orderkey", "o_custkey"],
                  filters=[("o_orderdate", ">=", date(1994, 1, 1)), ("o_orderdate", "<", date(1995, 1, 1))])
    lineitem = read(f"{data}/lineitem.parquet", columns=["l_orderkey", "l_suppkey", "l_extendedprice", "l_discount"])
    supplier = (read(f"{data}/supplier.parquet", columns=["s_suppkey", "s_nationkey"])
                .join(region_nations(data, s, "ASIA"), left_on="s_nationkey", right_on="n_nationkey"))
    return (
        lineitem.join(orders, left_on="l_orderkey", right_on="o_orderkey")
        .join(customer, left_on="o_custkey", right_on="c_custkey")
        .join(supplier, left_on=["l_suppkey", "c_nationkey"], right_on=["s_suppkey", "s_nationkey"])
        .then(s.derive, columns=VOLUME)
        .aggregate(by=["n_name"], aggs={"revenue": ["volume", "sum"]})
        .sort("revenue", ascending=False)
    )


def q06(data: str, s: StageSet = PANDAS) -> Dataset:
    """Forecasting revenue change."""
    lineitem = read(f"{data}/lineitem.parquet", columns=["l_extendedprice", "l_discount", "l_quantity"],
                    filters=[("l_shipdate", ">=", date(1994, 1, 1)), ("l_shipdate", "<", date(1995, 1, 1))])
    return (
        lineitem.then(s.filter_rows, where="l_discount >= 0.05 and l_discount <= 0.07 and l_quantity < 24")
        .then(s.derive, columns={"gain": "l_extendedprice * l_discount"})
        .aggregate(aggs={"revenue": ["gain", "sum"]})
    )


def nations_named(data: str, s: StageSet, names: list[str], as_name: str) -> Dataset:
    """n_nationkey and n_name (renamed `as_name`) of the nations called one of `names`."""
    nation = read(f"{data}/nation.parquet", columns=["n_nationkey", "n_name"], filters=[("n_name", "in", names)])
    return nation.then(s.rename, columns={"n_name": as_name})


def q07(data: str, s: StageSet = PANDAS) -> Dataset:
    """Volume shipping: the nation table twice, under two names; the OR across them is a filter after the joins."""
    pair = ["FRANCE", "GERMANY"]
    supplier = (read(f"{data}/supplier.parquet", columns=["s_suppkey", "s_nationkey"])
                .join(nations_named(data, s, pair, "supp_nation"), left_on="s_nationkey", right_on="n_nationkey")
                .then(s.select, columns=["s_suppkey", "supp_nation"]))
    customer = (read(f"{data}/customer.parquet", columns=["c_custkey", "c_nationkey"])
                .join(nations_named(data, s, pair, "cust_nation"), left_on="c_nationkey", right_on="n_nationkey")
                .then(s.select, columns=["c_custkey", "cust_nation"]))
    orders = read(f"{data}/orders.parquet", columns=["o_orderkey", "o_custkey"])
    lineitem = read(f"{data}/lineitem.parquet",
                    columns=["l_orderkey", "l_suppkey", "l_shipdate", "l_extendedprice", "l_discount"],
                    filters=[("l_shipdate", ">=", date(1995, 1, 1)), ("l_shipdate", "<=", date(1996, 12, 31))])
    return (
        lineitem.join(supplier, left_on="l_suppkey", right_on="s_suppkey")
        .join(orders, left_on="l_orderkey", right_on="o_orderkey")
        .join(customer, left_on="o_custkey", right_on="c_custkey")
        .then(s.filter_rows, where="(supp_nation == 'FRANCE' and cust_nation == 'GERMANY')"
                                 " or (supp_nation == 'GERMANY' and cust_nation == 'FRANCE')")
        .then(s.extract_datetime, column="l_shipdate", parts=["year"], prefix="l_")
        .then(s.derive, columns=VOLUME)
        .aggregate(by=["supp_nation", "cust_nation", "l_year"], aggs={"revenue": ["volume", "sum"]})
        .sort(["supp_nation", "cust_nation", "l_year"])
    )


def market_share(df: pd.DataFrame) -> pd.DataFrame:
    """mkt_share = the nation's volume / all volume, per year (a division of decimals gives a float)."""
    share = df["nation_volume"].astype("float64") / df["total_volume"].astype("float64")
    return pd.DataFrame({"o_year": df["o_year"], "mkt_share": share})


def q08(data: str, s: StageSet = PANDAS) -> Dataset:
    """National market share: CASE WHEN is a column made by a plain function."""
    customer = (read(f"{data}/customer.parquet", columns=["c_custkey", "c_nationkey"])
                .join(region_nations(data, s, "AMERICA"), left_on="c_nationkey", right_on="n_nationkey", how="semi"))
    supplier = (read(f"{data}/supplier.parquet", columns=["s_suppkey", "s_nationkey"])
                .join(read(f"{data}/nation.parquet", columns=["n_nationkey", "n_name"]),
                      left_on="s_nationkey", right_on="n_nationkey")
                .then(s.rename, columns={"n_name": "nation"}))
    part = read(f"{data}/part.parquet", columns=["p_partkey"], filters=[("p_type", "==", "ECONOMY ANODIZED STEEL")])
    orders = read(f"{data}/orders.parquet", columns=["o_orderkey", "o_custkey", "o_orderdate"],
                  filters=[("o_orderdate", ">=", date(1995, 1, 1)), ("o_orderdate", "<=", date(1996, 12, 31))])
    lineitem = read(f"{data}/lineitem.parquet",
                    columns=["l_orderkey", "l_partkey", "l_suppkey", "l_extendedprice", "l_discount"])
    return (
        lineitem.join(part, left_on="l_partkey", right_on="p_partkey")
        .join(orders, left_on="l_orderkey", right_on="o_orderkey")
        .join(customer, left_on="o_custkey", right_on="c_custkey")
        .join(supplier, left_on="l_suppkey", right_on="s_suppkey")
        .then(s.extract_datetime, column="o_orderdate", parts=["year"], prefix="o_")
        .then(s.derive, columns=VOLUME)
        .then(s.brazil_volume)
        .aggregate(by=["o_year"], aggs={"nation_volume": ["brazil", "sum"], "total_volume": ["volume", "sum"]})
        .then(market_share)
        .sort("o_year")
    )
