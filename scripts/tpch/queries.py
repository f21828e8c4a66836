"""The 22 TPC-H queries: the function that expresses each with datasets, the ORDER BY of its answer (so a
check knows which order matters), and how to get its answer from an engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.dataset import Dataset
from tpch.queries_01_08 import q01, q02, q03, q04, q05, q06, q07, q08
from tpch.queries_09_15 import q09, q10, q11, q12, q13, q14, q15
from tpch.queries_16_22 import q16, q17, q18, q19, q20, q21, q22
from tpch.stage_sets import StageSet, stage_set


@dataclass(frozen=True)
class Query:
    """Query `number`: `build(folder of the tables, stage set)` gives its answer's dataset."""

    number: int
    build: Callable[[str, StageSet], Dataset]
    order_by: tuple[str, ...] = ()  # the ORDER BY's output columns; none: the rows form a set

    @property
    def label(self) -> str:
        return f"Q{self.number:02d}"


QUERIES: dict[int, Query] = {q.number: q for q in (
    Query(1, q01, ("l_returnflag", "l_linestatus")),
    Query(2, q02, ("s_acctbal", "n_name", "s_name", "p_partkey")),
    Query(3, q03, ("revenue", "o_orderdate")),
    Query(4, q04, ("o_orderpriority",)),
    Query(5, q05, ("revenue",)),
    Query(6, q06),
    Query(7, q07, ("supp_nation", "cust_nation", "l_year")),
    Query(8, q08, ("o_year",)),
    Query(9, q09, ("nation", "o_year")),
    Query(10, q10, ("revenue",)),
    Query(11, q11, ("value",)),
    Query(12, q12, ("l_shipmode",)),
    Query(13, q13, ("custdist", "c_count")),
    Query(14, q14),
    Query(15, q15, ("s_suppkey",)),
    Query(16, q16, ("supplier_cnt", "p_brand", "p_type", "p_size")),
    Query(17, q17),
    Query(18, q18, ("o_totalprice", "o_orderdate")),
    Query(19, q19),
    Query(20, q20, ("s_name",)),
    Query(21, q21, ("numwait", "s_name")),
    Query(22, q22, ("cntrycode",)),
)}


def answer(query: Query, where: Path, engine: Any = "sync", workers: int | None = None,
           stages: str = "pandas") -> pd.DataFrame:
    """Run `query` over the tables in `where` on `engine` (a name or an engine object), with its per-chunk
    stages in the `stages` batch format, into a DataFrame."""
    return query.build(str(where), stage_set(stages)).collect(engine=engine, workers=workers)
