"""The shared helpers of the plain pandas TPC-H peer, and its queries 12 to 22 (see `pandas_whole`, which
holds queries 1 to 11, the conventions, and the merged `QUERIES`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

Filter = tuple[str, str, Any]


def load(folder: str, table: str, columns: Sequence[str], filters: Sequence[Filter] | None = None) -> pd.DataFrame:
    """`columns` of `{folder}/{table}.parquet` as a DataFrame, rows kept by the pyarrow `filters` (all must
    hold); decimals become float64 and dates datetime64."""
    data = pq.read_table(f"{folder}/{table}.parquet", columns=list(columns), filters=list(filters) if filters else None)
    schema = pa.schema([pa.field(f.name, pa.float64()) if pa.types.is_decimal(f.type) else f for f in data.schema])
    return data.cast(schema).to_pandas(date_as_object=False)


def within(column: str, start: date, end: date) -> list[Filter]:
    """Filters for start <= column < end (a half-open date range)."""
    return [(column, ">=", start), (column, "<", end)]


def volume(df: pd.DataFrame) -> pd.Series:
    """l_extendedprice * (1 - l_discount): the discounted price most queries sum."""
    return df["l_extendedprice"] * (1 - df["l_discount"])


def nations(folder: str, names: Sequence[str] | None = None, region: str | None = None) -> pd.DataFrame:
    """n_nationkey, n_name of the nations called one of `names`, or of those in `region`, or of all."""
    nation = load(folder, "nation", ["n_nationkey", "n_name", "n_regionkey"],
                  [("n_name", "in", list(names))] if names else None)
    if region is not None:
        chosen = load(folder, "region", ["r_regionkey"], [("r_name", "==", region)])
        nation = nation[nation["n_regionkey"].isin(chosen["r_regionkey"])]
    return nation[["n_nationkey", "n_name"]]


def ordered(df: pd.DataFrame, by: str | list[str], ascending: bool | list[bool] = True,
            columns: Sequence[str] | None = None, limit: int | None = None) -> pd.DataFrame:
    """`df` sorted by ORDER BY `by`, cut to `limit` rows and to `columns`, with a fresh index."""
    out = df.sort_values(by, ascending=ascending, kind="stable")
    if limit is not None:
        out = out.head(limit)
    return (out[list(columns)] if columns is not None else out).reset_index(drop=True)


def q12(folder: str) -> pd.DataFrame:
    """Shipping modes and order priority: the two CASE sums count a boolean column and its negation."""
    li = load(folder, "lineitem", ["l_orderkey", "l_shipmode", "l_shipdate", "l_commitdate", "l_receiptdate"],
              [("l_shipmode", "in", ["MAIL", "SHIP"])] + within("l_receiptdate", date(1994, 1, 1), date(1995, 1, 1)))
    li = li[(li["l_commitdate"] < li["l_receiptdate"]) & (li["l_shipdate"] < li["l_commitdate"])]
    orders = load(folder, "orders", ["o_orderkey", "o_orderpriority"])
    li = li.merge(orders, left_on="l_orderkey", right_on="o_orderkey")
    high = li["o_orderpriority"].isin(["1-URGENT", "2-HIGH"])
    li = li.assign(high_line_count=high, low_line_count=~high)
    out = li.groupby("l_shipmode", as_index=False)[["high_line_count", "low_line_count"]].sum()
    return ordered(out, "l_shipmode")


def q13(folder: str) -> pd.DataFrame:
    """Customer distribution: orders per customer, customers without any counted as 0 (the left join)."""
    customer = load(folder, "customer", ["c_custkey"])
    orders = load(folder, "orders", ["o_custkey", "o_comment"])
    orders = orders[~orders["o_comment"].str.contains("special.*requests", regex=True)]
    counts = orders.groupby("o_custkey").size().reindex(customer["c_custkey"], fill_value=0)
    out = counts.value_counts().rename_axis("c_count").reset_index(name="custdist")
    return ordered(out, ["custdist", "c_count"], False)


def q14(folder: str) -> pd.DataFrame:
    """Promotion effect."""
    li = load(folder, "lineitem", ["l_partkey", "l_extendedprice", "l_discount"],
              within("l_shipdate", date(1995, 9, 1), date(1995, 10, 1)))
    part = load(folder, "part", ["p_partkey", "p_type"])
    li = li.merge(part, left_on="l_partkey", right_on="p_partkey").assign(volume=volume)
    promo = li["volume"].where(li["p_type"].str.startswith("PROMO"), 0.0)
    return pd.DataFrame({"promo_revenue": [100.0 * promo.sum() / li["volume"].sum()]})


def q15(folder: str) -> pd.DataFrame:
    """Top supplier: the view `revenue` is one DataFrame, read for its maximum and for the merge."""
    li = load(folder, "lineitem", ["l_suppkey", "l_extendedprice", "l_discount"],
              within("l_shipdate", date(1996, 1, 1), date(1996, 4, 1)))
    revenue = (li.assign(total_revenue=volume).groupby("l_suppkey", as_index=False)["total_revenue"].sum()
               .rename(columns={"l_suppkey": "supplier_no"}))
    best = revenue[revenue["total_revenue"] == revenue["total_revenue"].max()]
    supplier = load(folder, "supplier", ["s_suppkey", "s_name", "s_address", "s_phone"])
    out = supplier.merge(best, left_on="s_suppkey", right_on="supplier_no")
    return ordered(out, "s_suppkey", columns=["s_suppkey", "s_name", "s_address", "s_phone", "total_revenue"])


def q16(folder: str) -> pd.DataFrame:
    """Parts/supplier relationship: NOT IN (suppliers with complaints) is `~isin`."""
    supplier = load(folder, "supplier", ["s_suppkey", "s_comment"])
    complaints = supplier.loc[supplier["s_comment"].str.contains("Customer.*Complaints", regex=True), "s_suppkey"]
    part = load(folder, "part", ["p_partkey", "p_brand", "p_type", "p_size"],
                [("p_brand", "!=", "Brand#45"), ("p_size", "in", [49, 14, 23, 45, 19, 3, 36, 9])])
    part = part[~part["p_type"].str.startswith("MEDIUM POLISHED")]
    partsupp = load(folder, "partsupp", ["ps_partkey", "ps_suppkey"])
    partsupp = partsupp[~partsupp["ps_suppkey"].isin(complaints)]
    out = (part.merge(partsupp, left_on="p_partkey", right_on="ps_partkey")
           .groupby(["p_brand", "p_type", "p_size"], as_index=False).agg(supplier_cnt=("ps_suppkey", "nunique")))
    return ordered(out, ["supplier_cnt", "p_brand", "p_type", "p_size"], [False, True, True, True])


def q17(folder: str) -> pd.DataFrame:
    """Small-quantity-order revenue: the correlated average is a per-part `transform("mean")`."""
    part = load(folder, "part", ["p_partkey"], [("p_brand", "==", "Brand#23"), ("p_container", "==", "MED BOX")])
    li = load(folder, "lineitem", ["l_partkey", "l_quantity", "l_extendedprice"])
    li = li[li["l_partkey"].isin(part["p_partkey"])]
    small = li[li["l_quantity"] < 0.2 * li.groupby("l_partkey")["l_quantity"].transform("mean")]
    total = small["l_extendedprice"].sum() if len(small) else float("nan")  # SUM of no rows is NULL
    return pd.DataFrame({"avg_yearly": [total / 7.0]})


def q18(folder: str) -> pd.DataFrame:
    """Large volume customer: the orders over 300 units; their quantity is the SQL's sum per order."""
    li = load(folder, "lineitem", ["l_orderkey", "l_quantity"])
    quantity = li.groupby("l_orderkey", as_index=False)["l_quantity"].sum()
    large = quantity[quantity["l_quantity"] > 300].rename(columns={"l_quantity": "sum(l_quantity)"})
    orders = load(folder, "orders", ["o_orderkey", "o_custkey", "o_orderdate", "o_totalprice"])
    customer = load(folder, "customer", ["c_custkey", "c_name"])
    out = (orders.merge(large, left_on="o_orderkey", right_on="l_orderkey")
           .merge(customer, left_on="o_custkey", right_on="c_custkey"))
    return ordered(out, ["o_totalprice", "o_orderdate"], [False, True],
                   ["c_name", "c_custkey", "o_orderkey", "o_orderdate", "o_totalprice", "sum(l_quantity)"], limit=100)


# Q19's three OR-ed branches: brand, containers, lowest quantity (the highest is 10 more), largest size
Q19_BRANCHES = (
    ("Brand#12", ["SM CASE", "SM BOX", "SM PACK", "SM PKG"], 1, 5),
    ("Brand#23", ["MED BAG", "MED BOX", "MED PKG", "MED PACK"], 10, 10),
    ("Brand#34", ["LG CASE", "LG BOX", "LG PACK", "LG PKG"], 20, 15),
)


def q19(folder: str) -> pd.DataFrame:
    """Discounted revenue: the OR of the branches is one boolean mask after the merge; the conditions every
    branch shares (ship mode and instructions) are pushed into the read."""
    li = load(folder, "lineitem", ["l_partkey", "l_quantity", "l_extendedprice", "l_discount"],
              [("l_shipmode", "in", ["AIR", "AIR REG"]), ("l_shipinstruct", "==", "DELIVER IN PERSON")])
    part = load(folder, "part", ["p_partkey", "p_brand", "p_container", "p_size"])
    li = li.merge(part, left_on="l_partkey", right_on="p_partkey")
    keep = pd.Series(False, index=li.index)
    for brand, containers, low, size in Q19_BRANCHES:
        keep |= ((li["p_brand"] == brand) & li["p_container"].isin(containers)
                 & li["l_quantity"].between(low, low + 10) & li["p_size"].between(1, size))
    return pd.DataFrame({"revenue": [volume(li[keep]).sum()]})


def q20(folder: str) -> pd.DataFrame:
    """Potential part promotion: the correlated sum is a sum per (part, supplier) merged on."""
    part = load(folder, "part", ["p_partkey", "p_name"])
    forest = part.loc[part["p_name"].str.startswith("forest"), "p_partkey"]
    shipped = load(folder, "lineitem", ["l_partkey", "l_suppkey", "l_quantity"],
                   within("l_shipdate", date(1994, 1, 1), date(1995, 1, 1)))
    shipped = shipped.groupby(["l_partkey", "l_suppkey"], as_index=False)["l_quantity"].sum()
    stock = load(folder, "partsupp", ["ps_partkey", "ps_suppkey", "ps_availqty"])
    stock = stock[stock["ps_partkey"].isin(forest)].merge(
        shipped, left_on=["ps_partkey", "ps_suppkey"], right_on=["l_partkey", "l_suppkey"])
    stock = stock[stock["ps_availqty"] > 0.5 * stock["l_quantity"]]
    supplier = load(folder, "supplier", ["s_suppkey", "s_name", "s_address", "s_nationkey"])
    supplier = supplier[supplier["s_nationkey"].isin(nations(folder, ["CANADA"])["n_nationkey"])
                        & supplier["s_suppkey"].isin(stock["ps_suppkey"])]
    return ordered(supplier, "s_name", columns=["s_name", "s_address"])


def q21(folder: str) -> pd.DataFrame:
    """Suppliers who kept orders waiting. EXISTS (another supplier on the order) holds when the order has more
    than one distinct supplier; NOT EXISTS (another supplier late on it) when its late lines have one distinct
    supplier, this line's own."""
    li = load(folder, "lineitem", ["l_orderkey", "l_suppkey", "l_receiptdate", "l_commitdate"])
    suppliers = li.groupby("l_orderkey")["l_suppkey"].nunique()
    late = li[li["l_receiptdate"] > li["l_commitdate"]]
    late_suppliers = late.groupby("l_orderkey")["l_suppkey"].nunique()
    supplier = load(folder, "supplier", ["s_suppkey", "s_name", "s_nationkey"])
    supplier = supplier[supplier["s_nationkey"].isin(nations(folder, ["SAUDI ARABIA"])["n_nationkey"])]
    failed = load(folder, "orders", ["o_orderkey"], [("o_orderstatus", "==", "F")])
    waiting = late[late["l_orderkey"].isin(failed["o_orderkey"])
                   & late["l_orderkey"].map(suppliers).gt(1) & late["l_orderkey"].map(late_suppliers).eq(1)]
    out = (waiting.merge(supplier, left_on="l_suppkey", right_on="s_suppkey")
           .groupby("s_name", as_index=False).agg(numwait=("l_orderkey", "size")))
    return ordered(out, ["numwait", "s_name"], [False, True], limit=100)


def q22(folder: str) -> pd.DataFrame:
    """Global sales opportunity: the average balance is a scalar; NOT EXISTS (orders) is `~isin`."""
    customer = load(folder, "customer", ["c_custkey", "c_phone", "c_acctbal"])
    customer["cntrycode"] = customer["c_phone"].str.slice(0, 2)
    customer = customer[customer["cntrycode"].isin(["13", "31", "23", "29", "30", "18", "17"])]
    average = customer.loc[customer["c_acctbal"] > 0.0, "c_acctbal"].mean()
    orders = load(folder, "orders", ["o_custkey"])
    customer = customer[(customer["c_acctbal"] > average) & ~customer["c_custkey"].isin(orders["o_custkey"])]
    out = customer.groupby("cntrycode", as_index=False).agg(numcust=("c_custkey", "size"),
                                                             totacctbal=("c_acctbal", "sum"))
    return ordered(out, "cntrycode")


QUERIES: dict[int, Callable[[str], pd.DataFrame]] = {
    12: q12, 13: q13, 14: q14, 15: q15, 16: q16, 17: q17, 18: q18, 19: q19, 20: q20, 21: q21, 22: q22,
}
