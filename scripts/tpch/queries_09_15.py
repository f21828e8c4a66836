"""TPC-H queries 9 to 15 as datasets (see `queries_01_08` for the conventions). A scalar subquery becomes a
one-row aggregate joined to every row on a constant key; a view used twice is one dataset read twice."""

from __future__ import annotations

from datetime import date

import pandas as pd

from pipeline.dataset import Dataset, read
from tpch.functions import VOLUME
from tpch.stage_sets import PANDAS, StageSet


def q09(data: str, s: StageSet = PANDAS) -> Dataset:
    """Product type profit measure."""
    part = (read(f"{data}/part.parquet", columns=["p_partkey", "p_name"])
            .then(s.like, column="p_name", pattern="%green%"))
    partsupp = read(f"{data}/partsupp.parquet", columns=["ps_partkey", "ps_suppkey", "ps_supplycost"])
    supplier = (read(f"{data}/supplier.parquet", columns=["s_suppkey", "s_nationkey"])
                .join(read(f"{data}/nation.parquet", columns=["n_nationkey", "n_name"]),
                      left_on="s_nationkey", right_on="n_nationkey"))
    orders = read(f"{data}/orders.parquet", columns=["o_orderkey", "o_orderdate"])
    lineitem = read(f"{data}/lineitem.parquet", columns=[
        "l_orderkey", "l_partkey", "l_suppkey", "l_quantity", "l_extendedprice", "l_discount"])
    return (
        lineitem.join(part, left_on="l_partkey", right_on="p_partkey")
        .join(partsupp, left_on=["l_partkey", "l_suppkey"], right_on=["ps_partkey", "ps_suppkey"])
        .join(supplier, left_on="l_suppkey", right_on="s_suppkey")
        .join(orders, left_on="l_orderkey", right_on="o_orderkey")
        .then(s.derive, columns={"amount": "l_extendedprice * (1 - l_discount) - ps_supplycost * l_quantity"})
        .then(s.extract_datetime, column="o_orderdate", parts=["year"], prefix="o_")
        .then(s.rename, columns={"n_name": "nation"})
        .aggregate(by=["nation", "o_year"], aggs={"sum_profit": ["amount", "sum"]})
        .sort(["nation", "o_year"], ascending=[True, False])
    )


def q10(data: str, s: StageSet = PANDAS) -> Dataset:
    """Returned item reporting."""
    customer = read(f"{data}/customer.parquet", columns=[
        "c_custkey", "c_name", "c_address", "c_nationkey", "c_phone", "c_acctbal", "c_comment"])
    orders = read(f"{data}/orders.parquet", columns=["o_orderkey", "o_custkey"],
                  filters=[("o_orderdate", ">=", date(1993, 10, 1)), ("o_orderdate", "<", date(1994, 1, 1))])
    lineitem = read(f"{data}/lineitem.parquet", columns=["l_orderkey", "l_extendedprice", "l_discount"],
                    filters=[("l_returnflag", "==", "R")])
    nation = read(f"{data}/nation.parquet", columns=["n_nationkey", "n_name"])
    keys = ["c_custkey", "c_name", "c_acctbal", "c_phone", "n_name", "c_address", "c_comment"]
    return (
        lineitem.join(orders, left_on="l_orderkey", right_on="o_orderkey")
        .join(customer, left_on="o_custkey", right_on="c_custkey")
        .join(nation, left_on="c_nationkey", right_on="n_nationkey")
        .then(s.derive, columns=VOLUME)
        .aggregate(by=keys, aggs={"revenue": ["volume", "sum"]})
        .top(20, by="revenue")
        .then(s.select, columns=["c_custkey", "c_name", "revenue", "c_acctbal", "n_name", "c_address", "c_phone",
                               "c_comment"])
    )


def q11(data: str, s: StageSet = PANDAS) -> Dataset:
    """Important stock identification: HAVING against a scalar subquery over the same rows."""
    germany = read(f"{data}/nation.parquet", columns=["n_nationkey"], filters=[("n_name", "==", "GERMANY")])
    supplier = (read(f"{data}/supplier.parquet", columns=["s_suppkey", "s_nationkey"])
                .join(germany, left_on="s_nationkey", right_on="n_nationkey"))
    stock = (read(f"{data}/partsupp.parquet", columns=["ps_partkey", "ps_suppkey", "ps_supplycost", "ps_availqty"])
             .join(supplier, left_on="ps_suppkey", right_on="s_suppkey")
             .then(s.derive, columns={"worth": "ps_supplycost * ps_availqty"}))
    total = stock.aggregate(aggs={"total": ["worth", "sum"]}).then(s.on_every_row)
    return (
        stock.aggregate(by=["ps_partkey"], aggs={"value": ["worth", "sum"]})
        .then(s.on_every_row)
        .join(total, on="every_row")
        .then(s.filter_rows, where="value > total * 0.0001")
        .then(s.select, columns=["ps_partkey", "value"])
        .sort("value", ascending=False)
    )


def q12(data: str, s: StageSet = PANDAS) -> Dataset:
    """Shipping modes and order priority: the two CASE sums are sums of true/false columns."""
    orders = read(f"{data}/orders.parquet", columns=["o_orderkey", "o_orderpriority"])
    lineitem = (read(f"{data}/lineitem.parquet",
                     columns=["l_orderkey", "l_shipmode", "l_shipdate", "l_commitdate", "l_receiptdate"],
                     filters=[("l_shipmode", "in", ["MAIL", "SHIP"]), ("l_receiptdate", ">=", date(1994, 1, 1)),
                              ("l_receiptdate", "<", date(1995, 1, 1))])
                .then(s.filter_rows, where="l_commitdate < l_receiptdate and l_shipdate < l_commitdate"))
    return (
        orders.join(lineitem, left_on="o_orderkey", right_on="l_orderkey")
        .then(s.derive, columns={"high": "o_orderpriority == '1-URGENT' or o_orderpriority == '2-HIGH'",
                               "low": "not high"})
        .aggregate(by=["l_shipmode"], aggs={"high_line_count": ["high", "sum"], "low_line_count": ["low", "sum"]})
        .sort("l_shipmode")
    )


def q13(data: str, s: StageSet = PANDAS) -> Dataset:
    """Customer distribution: a left join, counting the right side's (non-null) keys per customer."""
    customer = read(f"{data}/customer.parquet", columns=["c_custkey"])
    orders = (read(f"{data}/orders.parquet", columns=["o_orderkey", "o_custkey", "o_comment"])
              .then(s.like, column="o_comment", pattern="%special%requests%", negate=True))
    return (
        customer.join(orders, left_on="c_custkey", right_on="o_custkey", how="left")
        .aggregate(by=["c_custkey"], aggs={"c_count": ["o_orderkey", "count"]})
        .aggregate(by=["c_count"], aggs={"custdist": ["c_custkey", "size"]})
        .sort(["custdist", "c_count"], ascending=False)
    )


def promo_share(df: pd.DataFrame) -> pd.DataFrame:
    """promo_revenue = 100 * promotional volume / all volume (a division of decimals gives a float)."""
    share = 100 * df["promo_volume"].astype("float64") / df["total_volume"].astype("float64")
    return pd.DataFrame({"promo_revenue": share})


def q14(data: str, s: StageSet = PANDAS) -> Dataset:
    """Promotion effect."""
    part = read(f"{data}/part.parquet", columns=["p_partkey", "p_type"])
    lineitem = read(f"{data}/lineitem.parquet", columns=["l_partkey", "l_extendedprice", "l_discount"],
                    filters=[("l_shipdate", ">=", date(1995, 9, 1)), ("l_shipdate", "<", date(1995, 10, 1))])
    return (
        lineitem.join(part, left_on="l_partkey", right_on="p_partkey")
        .then(s.derive, columns=VOLUME)
        .then(s.promo_volume)
        .aggregate(aggs={"promo_volume": ["promo", "sum"], "total_volume": ["volume", "sum"]})
        .then(promo_share)
    )


def q15(data: str, s: StageSet = PANDAS) -> Dataset:
    """Top supplier: the view `revenue` is one dataset, read by its maximum and by the join."""
    lineitem = read(f"{data}/lineitem.parquet", columns=["l_suppkey", "l_extendedprice", "l_discount"],
                    filters=[("l_shipdate", ">=", date(1996, 1, 1)), ("l_shipdate", "<", date(1996, 4, 1))])
    supplier_revenue = (lineitem.then(s.derive, columns=VOLUME)
                .aggregate(by=["l_suppkey"], aggs={"total_revenue": ["volume", "sum"]})
                .then(s.rename, columns={"l_suppkey": "supplier_no"}))
    best = supplier_revenue.aggregate(aggs={"max_revenue": ["total_revenue", "max"]})
    supplier = read(f"{data}/supplier.parquet", columns=["s_suppkey", "s_name", "s_address", "s_phone"])
    return (
        supplier.join(supplier_revenue, left_on="s_suppkey", right_on="supplier_no")
        .join(best, left_on="total_revenue", right_on="max_revenue")
        .then(s.select, columns=["s_suppkey", "s_name", "s_address", "s_phone", "total_revenue"])
        .sort("s_suppkey")
    )
