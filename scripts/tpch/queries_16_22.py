"""TPC-H queries 16 to 22 as datasets (see `queries_01_08` for the conventions). Correlated subqueries
become aggregates joined back on the correlation keys; IN / EXISTS become semi joins, NOT IN / NOT EXISTS
anti joins."""

from __future__ import annotations

from datetime import date

import pandas as pd

from pipeline.dataset import Dataset, read
from tpch.functions import VOLUME
from tpch.stage_sets import PANDAS, StageSet


def q16(data: str, s: StageSet = PANDAS) -> Dataset:
    """Parts/supplier relationship: NOT IN (suppliers with complaints) is an anti join."""
    complaints = (read(f"{data}/supplier.parquet", columns=["s_suppkey", "s_comment"])
                  .then(s.like, column="s_comment", pattern="%Customer%Complaints%"))
    part = (read(f"{data}/part.parquet", columns=["p_partkey", "p_brand", "p_type", "p_size"],
                 filters=[("p_brand", "!=", "Brand#45"), ("p_size", "in", [49, 14, 23, 45, 19, 3, 36, 9])])
            .then(s.like, column="p_type", pattern="MEDIUM POLISHED%", negate=True))
    partsupp = (read(f"{data}/partsupp.parquet", columns=["ps_partkey", "ps_suppkey"])
                .join(complaints, left_on="ps_suppkey", right_on="s_suppkey", how="anti"))
    return (
        part.join(partsupp, left_on="p_partkey", right_on="ps_partkey")
        .aggregate(by=["p_brand", "p_type", "p_size"], aggs={"supplier_cnt": ["ps_suppkey", "nunique"]})
        .sort(["supplier_cnt", "p_brand", "p_type", "p_size"], ascending=[False, True, True, True])
    )


def per_year(df: pd.DataFrame) -> pd.DataFrame:
    """avg_yearly = total / 7.0, a float; missing when no row was summed (SQL's SUM of no rows is NULL)."""
    total = df["total"].astype("float64").where(df["rows"] > 0)
    return pd.DataFrame({"avg_yearly": total / 7.0})


def q17(data: str, s: StageSet = PANDAS) -> Dataset:
    """Small-quantity-order revenue: the average quantity per part, joined back on the part."""
    part = read(f"{data}/part.parquet", columns=["p_partkey"],
                filters=[("p_brand", "==", "Brand#23"), ("p_container", "==", "MED BOX")])
    lineitem = (read(f"{data}/lineitem.parquet", columns=["l_partkey", "l_quantity", "l_extendedprice"])
                .join(part, left_on="l_partkey", right_on="p_partkey", how="semi"))
    average = lineitem.aggregate(by=["l_partkey"], aggs={"avg_quantity": ["l_quantity", "mean"]})
    return (
        lineitem.join(average, on="l_partkey")
        .then(s.derive, columns={"limit": "0.2 * avg_quantity"})
        .then(s.filter_rows, where="l_quantity < limit")
        .aggregate(aggs={"total": ["l_extendedprice", "sum"], "rows": ["l_extendedprice", "count"]})
        .then(per_year)
    )


def q18(data: str, s: StageSet = PANDAS) -> Dataset:
    """Large volume customer: IN (orders over 300 units) is a semi join with an aggregate."""
    lineitem = read(f"{data}/lineitem.parquet", columns=["l_orderkey", "l_quantity"])
    large = (lineitem.aggregate(by=["l_orderkey"], aggs={"order_quantity": ["l_quantity", "sum"]})
             .then(s.filter_rows, where="order_quantity > 300"))
    orders = (read(f"{data}/orders.parquet", columns=["o_orderkey", "o_custkey", "o_orderdate", "o_totalprice"])
              .join(large, left_on="o_orderkey", right_on="l_orderkey", how="semi"))
    customer = read(f"{data}/customer.parquet", columns=["c_custkey", "c_name"])
    return (
        orders.join(customer, left_on="o_custkey", right_on="c_custkey")
        .join(lineitem, left_on="o_orderkey", right_on="l_orderkey")
        .aggregate(by=["c_name", "c_custkey", "o_orderkey", "o_orderdate", "o_totalprice"],
                   aggs={"sum(l_quantity)": ["l_quantity", "sum"]})
        .top(100, by=["o_totalprice", "o_orderdate"], ascending=[False, True])
    )


Q19_BRANCHES = " or ".join(
    f"(p_brand == '{brand}' and p_container in {containers} and l_quantity >= {low} and l_quantity <= {low + 10}"
    f" and p_size >= 1 and p_size <= {size})"
    for brand, containers, low, size in (
        ("Brand#12", ("SM CASE", "SM BOX", "SM PACK", "SM PKG"), 1, 5),
        ("Brand#23", ("MED BAG", "MED BOX", "MED PKG", "MED PACK"), 10, 10),
        ("Brand#34", ("LG CASE", "LG BOX", "LG PACK", "LG PKG"), 20, 15),
    )
)


def q19(data: str, s: StageSet = PANDAS) -> Dataset:
    """Discounted revenue: the OR of conditions on both tables is a filter after the join; the conditions
    every branch shares (ship mode and instructions) are pushed into the read."""
    part = read(f"{data}/part.parquet", columns=["p_partkey", "p_brand", "p_container", "p_size"])
    lineitem = read(f"{data}/lineitem.parquet",
                    columns=["l_partkey", "l_quantity", "l_extendedprice", "l_discount"],
                    filters=[("l_shipmode", "in", ["AIR", "AIR REG"]), ("l_shipinstruct", "==", "DELIVER IN PERSON")])
    return (
        lineitem.join(part, left_on="l_partkey", right_on="p_partkey")
        .then(s.filter_rows, where=Q19_BRANCHES)
        .then(s.derive, columns=VOLUME)
        .aggregate(aggs={"revenue": ["volume", "sum"]})
    )


def q20(data: str, s: StageSet = PANDAS) -> Dataset:
    """Potential part promotion: the correlated sum is an aggregate per (part, supplier) joined back."""
    forest = (read(f"{data}/part.parquet", columns=["p_partkey", "p_name"])
              .then(s.like, column="p_name", pattern="forest%"))
    shipped = (read(f"{data}/lineitem.parquet", columns=["l_partkey", "l_suppkey", "l_quantity"],
                    filters=[("l_shipdate", ">=", date(1994, 1, 1)), ("l_shipdate", "<", date(1995, 1, 1))])
               .aggregate(by=["l_partkey", "l_suppkey"], aggs={"shipped": ["l_quantity", "sum"]}))
    stocked = (read(f"{data}/partsupp.parquet", columns=["ps_partkey", "ps_suppkey", "ps_availqty"])
               .join(forest, left_on="ps_partkey", right_on="p_partkey", how="semi")
               .join(shipped, left_on=["ps_partkey", "ps_suppkey"], right_on=["l_partkey", "l_suppkey"])
               .then(s.filter_rows, where="ps_availqty > 0.5 * shipped"))
    canada = read(f"{data}/nation.parquet", columns=["n_nationkey"], filters=[("n_name", "==", "CANADA")])
    return (
        read(f"{data}/supplier.parquet", columns=["s_suppkey", "s_name", "s_address", "s_nationkey"])
        .join(canada, left_on="s_nationkey", right_on="n_nationkey")
        .join(stocked, left_on="s_suppkey", right_on="ps_suppkey", how="semi")
        .then(s.select, columns=["s_name", "s_address"])
        .sort("s_name")
    )


def q21(data: str, s: StageSet = PANDAS) -> Dataset:
    """Suppliers who kept orders waiting. EXISTS (another supplier on the order) holds when the order has
    more than one distinct supplier; NOT EXISTS (another supplier late on it) when the late lines have one
    distinct supplier, this line's own: both are per-order aggregates joined back."""
    lineitem = read(f"{data}/lineitem.parquet", columns=["l_orderkey", "l_suppkey", "l_receiptdate", "l_commitdate"])
    late = lineitem.then(s.filter_rows, where="l_receiptdate > l_commitdate")
    suppliers = lineitem.aggregate(by=["l_orderkey"], aggs={"suppliers": ["l_suppkey", "nunique"]})
    late_suppliers = late.aggregate(by=["l_orderkey"], aggs={"late_suppliers": ["l_suppkey", "nunique"]})
    saudi = read(f"{data}/nation.parquet", columns=["n_nationkey"], filters=[("n_name", "==", "SAUDI ARABIA")])
    supplier = (read(f"{data}/supplier.parquet", columns=["s_suppkey", "s_name", "s_nationkey"])
                .join(saudi, left_on="s_nationkey", right_on="n_nationkey"))
    failed = read(f"{data}/orders.parquet", columns=["o_orderkey"], filters=[("o_orderstatus", "==", "F")])
    return (
        late.join(supplier, left_on="l_suppkey", right_on="s_suppkey")
        .join(failed, left_on="l_orderkey", right_on="o_orderkey", how="semi")
        .join(suppliers, on="l_orderkey")
        .join(late_suppliers, on="l_orderkey")
        .then(s.filter_rows, where="suppliers > 1 and late_suppliers == 1")
        .aggregate(by=["s_name"], aggs={"numwait": ["l_orderkey", "size"]})
        .top(100, by=["numwait", "s_name"], ascending=[False, True])
    )


def q22(data: str, s: StageSet = PANDAS) -> Dataset:
    """Global sales opportunity: the average balance is a one-row aggregate joined to every customer;
    NOT EXISTS (orders) is an anti join."""
    codes = ("13", "31", "23", "29", "30", "18", "17")
    customer = (read(f"{data}/customer.parquet", columns=["c_custkey", "c_phone", "c_acctbal"])
                .then(s.substring, column="c_phone", out="cntrycode", start=1, length=2)
                .then(s.filter_rows, where=f"cntrycode in {codes}"))
    average = (customer.then(s.filter_rows, where="c_acctbal > 0.00")
               .aggregate(aggs={"avg_acctbal": ["c_acctbal", "mean"]})
               .then(s.on_every_row))
    orders = read(f"{data}/orders.parquet", columns=["o_custkey"])
    return (
        customer.join(orders, left_on="c_custkey", right_on="o_custkey", how="anti")
        .then(s.on_every_row)
        .join(average, on="every_row")
        .then(s.filter_rows, where="c_acctbal > avg_acctbal")
        .aggregate(by=["cntrycode"], aggs={"numcust": ["c_custkey", "size"], "totacctbal": ["c_acctbal", "sum"]})
        .sort("cntrycode")
    )
