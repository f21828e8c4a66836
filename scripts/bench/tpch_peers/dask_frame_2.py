"""The shared reading and joining helpers of the Dask DataFrame peer, and its queries 1 to 11 (`dask_frame`
holds the rest and the merged `QUERIES`; see its docstring for the conventions)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import dask.dataframe as dd
import pandas as pd
import pyarrow as pa

Filters = list[tuple[str, str, object]]


def read(data: str, table: str, columns: list[str], filters: Filters | None = None) -> dd.DataFrame:
    """`columns` of `table`, one partition per Parquet row group, rows kept by the pyarrow `filters`;
    DECIMAL(15,2) columns as float64 (Dask cannot compute on pyarrow decimals) and DATEs as datetime64."""
    frame = dd.read_parquet(f"{data}/{table}.parquet", columns=columns, filters=filters, split_row_groups=True)
    casts: dict[str, str] = {}
    for name, dtype in frame.dtypes.items():
        arrow = getattr(dtype, "pyarrow_dtype", None)
        if arrow is not None and pa.types.is_decimal(arrow):
            casts[name] = "float64"
        elif arrow is not None and pa.types.is_date(arrow):
            casts[name] = "datetime64[ns]"
    return frame.astype(casts) if casts else frame


def between(column: str, start: date, end: date) -> Filters:
    """Read filters for `start <= column < end`."""
    return [(column, ">=", start), (column, "<", end)]


def volume(frame: dd.DataFrame) -> dd.Series:
    """l_extendedprice * (1 - l_discount), the discounted price most queries sum."""
    return frame.l_extendedprice * (1 - frame.l_discount)


def semi_join(left: dd.DataFrame, right: dd.DataFrame, left_on: str | list[str],
              right_on: str | list[str]) -> dd.DataFrame:
    """Rows of `left` with a match in `right` (IN / EXISTS): an inner merge with `right`'s distinct keys."""
    keys = right[[right_on] if isinstance(right_on, str) else right_on].drop_duplicates()
    joined = left.merge(keys, left_on=left_on, right_on=right_on)
    return joined[list(left.columns)]


def anti_join(left: dd.DataFrame, right: dd.DataFrame, left_on: str, right_on: str) -> dd.DataFrame:
    """Rows of `left` without a match in `right` (NOT IN / NOT EXISTS): a left merge keeping `left_only`."""
    keys = right[[right_on]].drop_duplicates()
    joined = left.merge(keys, left_on=left_on, right_on=right_on, how="left", indicator=True)
    return joined[joined._merge == "left_only"][list(left.columns)]


def nations(data: str, region: str) -> dd.DataFrame:
    """n_nationkey, n_name of the nations in `region`."""
    chosen = read(data, "region", ["r_regionkey"], [("r_name", "==", region)])
    nation = read(data, "nation", ["n_nationkey", "n_name", "n_regionkey"])
    return nation.merge(chosen, left_on="n_regionkey", right_on="r_regionkey")[["n_nationkey", "n_name"]]


def nation_key(data: str, name: str) -> dd.DataFrame:
    """The one-row frame of n_nationkey for the nation called `name`."""
    return read(data, "nation", ["n_nationkey"], [("n_name", "==", name)])


def ordered(result: pd.DataFrame, by: Sequence[str], ascending: bool | Sequence[bool] = True,
            limit: int | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The computed `result` sorted by `by`, cut to `limit` rows and to `columns`, with a fresh index."""
    result = result.sort_values(list(by), ascending=ascending, kind="stable")
    if limit is not None:
        result = result.head(limit)
    if columns is not None:
        result = result[list(columns)]
    return result.reset_index(drop=True)


def grouped(frame: dd.DataFrame, by: Sequence[str], **aggs: tuple[str, str]) -> pd.DataFrame:
    """The computed named aggregation of `frame` per `by`, the keys as columns."""
    return frame.groupby(list(by)).agg(**aggs).compute().reset_index()


def q01(data: str) -> pd.DataFrame:
    """Pricing summary report."""
    li = read(data, "lineitem", ["l_returnflag", "l_linestatus", "l_quantity", "l_extendedprice", "l_discount",
                                 "l_tax"], [("l_shipdate", "<=", date(1998, 9, 2))])
    li = li.assign(disc_price=volume(li))
    li = li.assign(charge=li.disc_price * (1 + li.l_tax))
    result = grouped(li, ["l_returnflag", "l_linestatus"], sum_qty=("l_quantity", "sum"),
                     sum_base_price=("l_extendedprice", "sum"), sum_disc_price=("disc_price", "sum"),
                     sum_charge=("charge", "sum"), avg_qty=("l_quantity", "mean"),
                     avg_price=("l_extendedprice", "mean"), avg_disc=("l_discount", "mean"),
                     count_order=("l_quantity", "count"))
    return ordered(result, ["l_returnflag", "l_linestatus"])


def q02(data: str) -> pd.DataFrame:
    """Minimum cost supplier: the correlated minimum is a minimum per part merged back on (part, cost)."""
    part = read(data, "part", ["p_partkey", "p_mfgr", "p_type"], [("p_size", "==", 15)])
    part = part[part.p_type.str.endswith("BRASS")]
    supplier = read(data, "supplier", ["s_suppkey", "s_name", "s_address", "s_nationkey", "s_phone", "s_acctbal",
                                       "s_comment"])
    european = supplier.merge(nations(data, "EUROPE"), left_on="s_nationkey", right_on="n_nationkey")
    offers = read(data, "partsupp", ["ps_partkey", "ps_suppkey", "ps_supplycost"]).merge(
        european, left_on="ps_suppkey", right_on="s_suppkey")
    cheapest = offers.groupby("ps_partkey").ps_supplycost.min().reset_index()
    result = (part.merge(offers, left_on="p_partkey", right_on="ps_partkey")
              .merge(cheapest, on=["ps_partkey", "ps_supplycost"]).compute())
    return ordered(result, ["s_acctbal", "n_name", "s_name", "p_partkey"], [False, True, True, True], 100,
                   ["s_acctbal", "s_name", "n_name", "p_partkey", "p_mfgr", "s_address", "s_phone", "s_comment"])


def q03(data: str) -> pd.DataFrame:
    """Shipping priority."""
    customer = read(data, "customer", ["c_custkey"], [("c_mktsegment", "==", "BUILDING")])
    orders = read(data, "orders", ["o_orderkey", "o_custkey", "o_orderdate", "o_shippriority"],
                  [("o_orderdate", "<", date(1995, 3, 15))])
    li = read(data, "lineitem", ["l_orderkey", "l_extendedprice", "l_discount"],
              [("l_shipdate", ">", date(1995, 3, 15))])
    joined = (li.merge(orders, left_on="l_orderkey", right_on="o_orderkey")
              .merge(customer, left_on="o_custkey", right_on="c_custkey"))
    joined = joined.assign(revenue=volume(joined))
    result = grouped(joined, ["l_orderkey", "o_orderdate", "o_shippriority"], revenue=("revenue", "sum"))
    return ordered(result, ["revenue", "o_orderdate"], [False, True], 10,
                   ["l_orderkey", "revenue", "o_orderdate", "o_shippriority"])


def q04(data: str) -> pd.DataFrame:
    """Order priority checking: EXISTS (a late line) is a semi join."""
    orders = read(data, "orders", ["o_orderkey", "o_orderpriority"],
                  between("o_orderdate", date(1993, 7, 1), date(1993, 10, 1)))
    li = read(data, "lineitem", ["l_orderkey", "l_commitdate", "l_receiptdate"])
    late = li[li.l_commitdate < li.l_receiptdate]
    checked = semi_join(orders, late, "o_orderkey", "l_orderkey")
    result = grouped(checked, ["o_orderpriority"], order_count=("o_orderkey", "count"))
    return ordered(result, ["o_orderpriority"])


def q05(data: str) -> pd.DataFrame:
    """Local supplier volume: customer and supplier of the same nation, a merge on two keys."""
    customer = read(data, "customer", ["c_custkey", "c_nationkey"])
    orders = read(data, "orders", ["o_orderkey", "o_custkey"],
                  between("o_orderdate", date(1994, 1, 1), date(1995, 1, 1)))
    li = read(data, "lineitem", ["l_orderkey", "l_suppkey", "l_extendedprice", "l_discount"])
    supplier = read(data, "supplier", ["s_suppkey", "s_nationkey"]).merge(
        nations(data, "ASIA"), left_on="s_nationkey", right_on="n_nationkey")
    joined = (li.merge(orders, left_on="l_orderkey", right_on="o_orderkey")
              .merge(customer, left_on="o_custkey", right_on="c_custkey")
              .merge(supplier, left_on=["l_suppkey", "c_nationkey"], right_on=["s_suppkey", "s_nationkey"]))
    result = grouped(joined.assign(revenue=volume(joined)), ["n_name"], revenue=("revenue", "sum"))
    return ordered(result, ["revenue"], False)


def q06(data: str) -> pd.DataFrame:
    """Forecasting revenue change."""
    li = read(data, "lineitem", ["l_extendedprice", "l_discount", "l_quantity"],
              between("l_shipdate", date(1994, 1, 1), date(1995, 1, 1)))
    li = li[(li.l_discount >= 0.05) & (li.l_discount <= 0.07) & (li.l_quantity < 24)]
    return pd.DataFrame({"revenue": [(li.l_extendedprice * li.l_discount).sum().compute()]})


def q07(data: str) -> pd.DataFrame:
    """Volume shipping: the nation table twice, under two names; the OR across them filters the merge."""
    nation = read(data, "nation", ["n_nationkey", "n_name"], [("n_name", "in", ["FRANCE", "GERMANY"])])
    supplier = read(data, "supplier", ["s_suppkey", "s_nationkey"]).merge(
        nation.rename(columns={"n_name": "supp_nation"}), left_on="s_nationkey", right_on="n_nationkey")
    customer = read(data, "customer", ["c_custkey", "c_nationkey"]).merge(
        nation.rename(columns={"n_name": "cust_nation"}), left_on="c_nationkey", right_on="n_nationkey")
    orders = read(data, "orders", ["o_orderkey", "o_custkey"])
    li = read(data, "lineitem", ["l_orderkey", "l_suppkey", "l_shipdate", "l_extendedprice", "l_discount"],
              [("l_shipdate", ">=", date(1995, 1, 1)), ("l_shipdate", "<=", date(1996, 12, 31))])
    joined = (li.merge(supplier[["s_suppkey", "supp_nation"]], left_on="l_suppkey", right_on="s_suppkey")
              .merge(orders, left_on="l_orderkey", right_on="o_orderkey")
              .merge(customer[["c_custkey", "cust_nation"]], left_on="o_custkey", right_on="c_custkey"))
    joined = joined[((joined.supp_nation == "FRANCE") & (joined.cust_nation == "GERMANY"))
                    | ((joined.supp_nation == "GERMANY") & (joined.cust_nation == "FRANCE"))]
    joined = joined.assign(l_year=joined.l_shipdate.dt.year, revenue=volume(joined))
    result = grouped(joined, ["supp_nation", "cust_nation", "l_year"], revenue=("revenue", "sum"))
    return ordered(result, ["supp_nation", "cust_nation", "l_year"])


def q08(data: str) -> pd.DataFrame:
    """National market share: CASE WHEN is `Series.where`."""
    customer = semi_join(read(data, "customer", ["c_custkey", "c_nationkey"]), nations(data, "AMERICA"),
                         "c_nationkey", "n_nationkey")
    supplier = read(data, "supplier", ["s_suppkey", "s_nationkey"]).merge(
        read(data, "nation", ["n_nationkey", "n_name"]), left_on="s_nationkey", right_on="n_nationkey")
    part = read(data, "part", ["p_partkey"], [("p_type", "==", "ECONOMY ANODIZED STEEL")])
    orders = read(data, "orders", ["o_orderkey", "o_custkey", "o_orderdate"],
                  [("o_orderdate", ">=", date(1995, 1, 1)), ("o_orderdate", "<=", date(1996, 12, 31))])
    li = read(data, "lineitem", ["l_orderkey", "l_partkey", "l_suppkey", "l_extendedprice", "l_discount"])
    joined = (li.merge(part, left_on="l_partkey", right_on="p_partkey")
              .merge(orders, left_on="l_orderkey", right_on="o_orderkey")
              .merge(customer, left_on="o_custkey", right_on="c_custkey")
              .merge(supplier, left_on="l_suppkey", right_on="s_suppkey"))
    joined = joined.assign(o_year=joined.o_orderdate.dt.year, volume=volume(joined))
    joined = joined.assign(brazil=joined.volume.where(joined.n_name == "BRAZIL", 0.0))
    result = grouped(joined, ["o_year"], brazil=("brazil", "sum"), total=("volume", "sum"))
    result["mkt_share"] = result.brazil / result.total
    return ordered(result, ["o_year"], columns=["o_year", "mkt_share"])


def q09(data: str) -> pd.DataFrame:
    """Product type profit measure."""
    part = read(data, "part", ["p_partkey", "p_name"])
    part = part[part.p_name.str.contains("green", regex=False)]
    partsupp = read(data, "partsupp", ["ps_partkey", "ps_suppkey", "ps_supplycost"])
    supplier = read(data, "supplier", ["s_suppkey", "s_nationkey"]).merge(
        read(data, "nation", ["n_nationkey", "n_name"]), left_on="s_nationkey", right_on="n_nationkey")
    orders = read(data, "orders", ["o_orderkey", "o_orderdate"])
    li = read(data, "lineitem", ["l_orderkey", "l_partkey", "l_suppkey", "l_quantity", "l_extendedprice",
                                 "l_discount"])
    joined = (li.merge(part, left_on="l_partkey", right_on="p_partkey")
              .merge(partsupp, left_on=["l_partkey", "l_suppkey"], right_on=["ps_partkey", "ps_suppkey"])
              .merge(supplier, left_on="l_suppkey", right_on="s_suppkey")
              .merge(orders, left_on="l_orderkey", right_on="o_orderkey"))
    joined = joined.assign(nation=joined.n_name, o_year=joined.o_orderdate.dt.year,
                           amount=volume(joined) - joined.ps_supplycost * joined.l_quantity)
    result = grouped(joined, ["nation", "o_year"], sum_profit=("amount", "sum"))
    return ordered(result, ["nation", "o_year"], [True, False])


def q10(data: str) -> pd.DataFrame:
    """Returned item reporting."""
    customer = read(data, "customer", ["c_custkey", "c_name", "c_address", "c_nationkey", "c_phone", "c_acctbal",
                                       "c_comment"])
    orders = read(data, "orders", ["o_orderkey", "o_custkey"],
                  between("o_orderdate", date(1993, 10, 1), date(1994, 1, 1)))
    li = read(data, "lineitem", ["l_orderkey", "l_extendedprice", "l_discount"], [("l_returnflag", "==", "R")])
    nation = read(data, "nation", ["n_nationkey", "n_name"])
    joined = (li.merge(orders, left_on="l_orderkey", right_on="o_orderkey")
              .merge(customer, left_on="o_custkey", right_on="c_custkey")
              .merge(nation, left_on="c_nationkey", right_on="n_nationkey"))
    keys = ["c_custkey", "c_name", "c_acctbal", "c_phone", "n_name", "c_address", "c_comment"]
    result = grouped(joined.assign(revenue=volume(joined)), keys, revenue=("revenue", "sum"))
    return ordered(result, ["revenue"], False, 20, ["c_custkey", "c_name", "revenue", "c_acctbal", "n_name",
                                                    "c_address", "c_phone", "c_comment"])


def q11(data: str) -> pd.DataFrame:
    """Important stock identification: HAVING against a scalar subquery, a lazy Dask scalar here."""
    supplier = read(data, "supplier", ["s_suppkey", "s_nationkey"]).merge(
        nation_key(data, "GERMANY"), left_on="s_nationkey", right_on="n_nationkey")
    stock = read(data, "partsupp", ["ps_partkey", "ps_suppkey", "ps_supplycost", "ps_availqty"]).merge(
        supplier, left_on="ps_suppkey", right_on="s_suppkey")
    stock = stock.assign(value=stock.ps_supplycost * stock.ps_availqty)
    value = stock.groupby("ps_partkey").value.sum()
    important = value[value > stock.value.sum() * 0.0001].compute()
    return ordered(important.reset_index(), ["value"], False, columns=["ps_partkey", "value"])


QUERIES_1_11 = {1: q01, 2: q02, 3: q03, 4: q04, 5: q05, 6: q06, 7: q07, 8: q08, 9: q09, 10: q10, 11: q11}
