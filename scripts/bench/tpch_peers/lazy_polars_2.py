"""The shared helpers of the Polars lazy TPC-H peer, and its queries 12 to 22 (see `lazy_polars`, which
holds queries 1 to 11, the conventions, and the merged `QUERIES`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal

import pandas as pd
import polars as pl


def scan(data: str, table: str) -> pl.LazyFrame:
    """The lazy scan of one table's Parquet file in the folder `data`."""
    return pl.scan_parquet(f"{data}/{table}.parquet")


def answer(query: pl.LazyFrame) -> pd.DataFrame:
    """Run the plan once and hand the answer over as pandas."""
    return query.collect().to_pandas()


def widened(expr: pl.Expr, places: int) -> pl.Expr:
    """A decimal `expr` with `places` digits after the point, so that a product with it is exact."""
    return expr.cast(pl.Decimal(38, places))


def volume() -> pl.Expr:
    """l_extendedprice * (1 - l_discount), exact (two places times two)."""
    return widened(pl.col("l_extendedprice"), 4) * (1 - pl.col("l_discount"))


def ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """A division of decimals, as a float (SQL's decimal division gives a double)."""
    return numerator.cast(pl.Float64) / denominator.cast(pl.Float64)


def total(expr: pl.Expr) -> pl.Expr:
    """SQL's SUM over a whole (filtered) table: NULL when no row is left, where Polars' sum gives 0."""
    return pl.when(pl.len() > 0).then(expr.sum())


def during(column: str, start: date, end: date) -> pl.Expr:
    """start <= column < end."""
    return pl.col(column).is_between(start, end, closed="left")


def region_nations(data: str, region: str) -> pl.LazyFrame:
    """n_nationkey, n_name of the nations in `region`."""
    chosen = scan(data, "region").filter(pl.col("r_name") == region)
    return (scan(data, "nation").join(chosen, left_on="n_regionkey", right_on="r_regionkey")
            .select("n_nationkey", "n_name"))


def nation_named(data: str, name: str) -> pl.LazyFrame:
    """n_nationkey of the nation called `name`."""
    return scan(data, "nation").filter(pl.col("n_name") == name).select("n_nationkey")


def q12(data: str) -> pd.DataFrame:
    """Shipping modes and order priority: the two CASE sums are sums of true/false columns."""
    urgent = pl.col("o_orderpriority").is_in(["1-URGENT", "2-HIGH"])
    return answer(
        scan(data, "lineitem")
        .filter(pl.col("l_shipmode").is_in(["MAIL", "SHIP"]),
                pl.col("l_commitdate") < pl.col("l_receiptdate"),
                pl.col("l_shipdate") < pl.col("l_commitdate"),
                during("l_receiptdate", date(1994, 1, 1), date(1995, 1, 1)))
        .join(scan(data, "orders"), left_on="l_orderkey", right_on="o_orderkey")
        .group_by("l_shipmode")
        .agg(high_line_count=urgent.sum(), low_line_count=(~urgent).sum())
        .sort("l_shipmode")
    )


def q13(data: str) -> pd.DataFrame:
    """Customer distribution: a left join, counting the (non-null) order keys per customer."""
    orders = scan(data, "orders").filter(~pl.col("o_comment").str.contains("special.*requests"))
    return answer(
        scan(data, "customer")
        .join(orders, left_on="c_custkey", right_on="o_custkey", how="left")
        .group_by("c_custkey")
        .agg(c_count=pl.col("o_orderkey").count())
        .group_by("c_count")
        .agg(custdist=pl.len())
        .sort("custdist", "c_count", descending=True)
    )


def q14(data: str) -> pd.DataFrame:
    """Promotion effect."""
    promo = pl.when(pl.col("p_type").str.starts_with("PROMO")).then(volume()).otherwise(0)
    return answer(
        scan(data, "lineitem")
        .filter(during("l_shipdate", date(1995, 9, 1), date(1995, 10, 1)))
        .join(scan(data, "part"), left_on="l_partkey", right_on="p_partkey")
        .select(promo_revenue=100 * ratio(total(promo), total(volume())))
    )


def q15(data: str) -> pd.DataFrame:
    """Top supplier: the view `revenue` is a lazy frame, filtered on its own maximum."""
    revenue = (scan(data, "lineitem")
               .filter(during("l_shipdate", date(1996, 1, 1), date(1996, 4, 1)))
               .group_by(supplier_no="l_suppkey")
               .agg(total_revenue=volume().sum()))
    best = revenue.filter(pl.col("total_revenue") == pl.col("total_revenue").max())
    return answer(
        scan(data, "supplier")
        .join(best, left_on="s_suppkey", right_on="supplier_no")
        .select("s_suppkey", "s_name", "s_address", "s_phone", "total_revenue")
        .sort("s_suppkey")
    )


def q16(data: str) -> pd.DataFrame:
    """Parts/supplier relationship: NOT IN (suppliers with complaints) is an anti join."""
    complaints = scan(data, "supplier").filter(pl.col("s_comment").str.contains("Customer.*Complaints"))
    return answer(
        scan(data, "part")
        .filter(pl.col("p_brand") != "Brand#45", ~pl.col("p_type").str.starts_with("MEDIUM POLISHED"),
                pl.col("p_size").is_in([49, 14, 23, 45, 19, 3, 36, 9]))
        .join(scan(data, "partsupp"), left_on="p_partkey", right_on="ps_partkey")
        .join(complaints, left_on="ps_suppkey", right_on="s_suppkey", how="anti")
        .group_by("p_brand", "p_type", "p_size")
        .agg(supplier_cnt=pl.col("ps_suppkey").n_unique())
        .sort(["supplier_cnt", "p_brand", "p_type", "p_size"], descending=[True, False, False, False])
    )


def q17(data: str) -> pd.DataFrame:
    """Small-quantity-order revenue: the correlated average is an average per part, as a window."""
    chosen = scan(data, "part").filter(pl.col("p_brand") == "Brand#23", pl.col("p_container") == "MED BOX")
    return answer(
        scan(data, "lineitem")
        .join(chosen, left_on="l_partkey", right_on="p_partkey", how="semi")
        .filter(pl.col("l_quantity") < 0.2 * pl.col("l_quantity").mean().over("l_partkey"))
        .select(avg_yearly=total(pl.col("l_extendedprice")).cast(pl.Float64) / 7.0)
    )


def q18(data: str) -> pd.DataFrame:
    """Large volume customer: IN (orders over 300 units) is a semi join with an aggregate."""
    lineitem = scan(data, "lineitem").select("l_orderkey", "l_quantity")
    large = lineitem.group_by("l_orderkey").agg(pl.col("l_quantity").sum()).filter(pl.col("l_quantity") > 300)
    return answer(
        scan(data, "customer")
        .join(scan(data, "orders"), left_on="c_custkey", right_on="o_custkey")
        .join(large, left_on="o_orderkey", right_on="l_orderkey", how="semi")
        .join(lineitem, left_on="o_orderkey", right_on="l_orderkey")
        .group_by("c_name", "c_custkey", "o_orderkey", "o_orderdate", "o_totalprice")
        .agg(pl.col("l_quantity").sum().alias("sum(l_quantity)"))
        .sort(["o_totalprice", "o_orderdate"], descending=[True, False])
        .head(100)
    )


Q19_BRANCHES: tuple[tuple[str, list[str], int, int], ...] = (
    ("Brand#12", ["SM CASE", "SM BOX", "SM PACK", "SM PKG"], 1, 5),
    ("Brand#23", ["MED BAG", "MED BOX", "MED PKG", "MED PACK"], 10, 10),
    ("Brand#34", ["LG CASE", "LG BOX", "LG PACK", "LG PKG"], 20, 15),
)


def q19_branch(brand: str, containers: list[str], low: int, largest: int) -> pl.Expr:
    """One OR branch of query 19: a brand, its containers, a quantity range and a size range."""
    return ((pl.col("p_brand") == brand) & pl.col("p_container").is_in(containers)
            & pl.col("l_quantity").is_between(low, low + 10) & pl.col("p_size").is_between(1, largest))


def q19(data: str) -> pd.DataFrame:
    """Discounted revenue: the OR of conditions on both tables is a filter after the join; the conditions
    every branch shares (ship mode and instructions) filter the lines before it."""
    return answer(
        scan(data, "lineitem")
        .filter(pl.col("l_shipmode").is_in(["AIR", "AIR REG"]), pl.col("l_shipinstruct") == "DELIVER IN PERSON")
        .join(scan(data, "part"), left_on="l_partkey", right_on="p_partkey")
        .filter(pl.any_horizontal(q19_branch(*branch) for branch in Q19_BRANCHES))
        .select(revenue=total(volume()))
    )


def q20(data: str) -> pd.DataFrame:
    """Potential part promotion: the correlated sum is an aggregate per (part, supplier) joined back."""
    forest = scan(data, "part").filter(pl.col("p_name").str.starts_with("forest"))
    shipped = (scan(data, "lineitem")
               .filter(during("l_shipdate", date(1994, 1, 1), date(1995, 1, 1)))
               .group_by("l_partkey", "l_suppkey")
               .agg(half_shipped=widened(pl.col("l_quantity").sum(), 3) * Decimal("0.5")))
    stocked = (scan(data, "partsupp")
               .join(forest, left_on="ps_partkey", right_on="p_partkey", how="semi")
               .join(shipped, left_on=["ps_partkey", "ps_suppkey"], right_on=["l_partkey", "l_suppkey"])
               .filter(pl.col("ps_availqty") > pl.col("half_shipped")))
    return answer(
        scan(data, "supplier")
        .join(nation_named(data, "CANADA"), left_on="s_nationkey", right_on="n_nationkey", how="semi")
        .join(stocked, left_on="s_suppkey", right_on="ps_suppkey", how="semi")
        .select("s_name", "s_address")
        .sort("s_name")
    )


def q21(data: str) -> pd.DataFrame:
    """Suppliers who kept orders waiting. EXISTS (another supplier on the order) holds when the order has
    more than one distinct supplier; NOT EXISTS (another supplier late on it) when its late lines have one
    distinct supplier, this line's own: both are per-order aggregates joined back."""
    lineitem = scan(data, "lineitem").select("l_orderkey", "l_suppkey", "l_receiptdate", "l_commitdate")
    late = lineitem.filter(pl.col("l_receiptdate") > pl.col("l_commitdate"))
    shared = lineitem.group_by("l_orderkey").agg(pl.col("l_suppkey").n_unique().alias("suppliers"))
    late_alone = late.group_by("l_orderkey").agg(pl.col("l_suppkey").n_unique().alias("late_suppliers"))
    saudi = scan(data, "supplier").join(nation_named(data, "SAUDI ARABIA"), left_on="s_nationkey",
                                        right_on="n_nationkey", how="semi")
    failed = scan(data, "orders").filter(pl.col("o_orderstatus") == "F")
    return answer(
        late
        .join(saudi, left_on="l_suppkey", right_on="s_suppkey")
        .join(failed, left_on="l_orderkey", right_on="o_orderkey", how="semi")
        .join(shared.filter(pl.col("suppliers") > 1), on="l_orderkey", how="semi")
        .join(late_alone.filter(pl.col("late_suppliers") == 1), on="l_orderkey", how="semi")
        .group_by("s_name")
        .agg(numwait=pl.len())
        .sort(["numwait", "s_name"], descending=[True, False])
        .head(100)
    )


def q22(data: str) -> pd.DataFrame:
    """Global sales opportunity: the scalar average is an aggregate inside the filter; NOT EXISTS (orders)
    is an anti join."""
    balance = pl.col("c_acctbal")
    return answer(
        scan(data, "customer")
        .with_columns(cntrycode=pl.col("c_phone").str.slice(0, 2))
        .filter(pl.col("cntrycode").is_in(["13", "31", "23", "29", "30", "18", "17"]))
        .filter(balance > balance.filter(balance > 0).mean())
        .join(scan(data, "orders"), left_on="c_custkey", right_on="o_custkey", how="anti")
        .group_by("cntrycode")
        .agg(numcust=pl.len(), totacctbal=balance.sum())
        .sort("cntrycode")
    )


QUERIES: dict[int, Callable[[str], pd.DataFrame]] = {
    12: q12, 13: q13, 14: q14, 15: q15, 16: q16, 17: q17, 18: q18, 19: q19, 20: q20, 21: q21, 22: q22,
}
