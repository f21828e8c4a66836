"""Stages that need rows brought together by key: in a pipeline each runs on whole partitions after an
exchange (see `pipeline.shuffle`), with the same result as the plain call over the whole table."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from pipeline.shuffle import Exchange, exchange
from stages._checks import as_list, require_columns


def _sort_exchange(by: str | Sequence[str], ascending: bool | Sequence[bool] = True,
                   partitions: int | None = None) -> Exchange:
    return Exchange("range", tuple(as_list(by, "sort", "by")), ascending if isinstance(ascending, bool) else tuple(ascending),
                    partitions)


@exchange(_sort_exchange)
def sort(df: pd.DataFrame, by: str | Sequence[str], ascending: bool | Sequence[bool] = True,
         partitions: int | None = None) -> pd.DataFrame:
    """Rows in `by` order, stable (equal keys keep their input order), nulls last. In a pipeline the table
    is cut into key ranges and each part sorted, so the output's parts in order are the table in order.

    >>> sort(pd.DataFrame({"k": [2, None, 1, 2], "v": list("abcd")}), by="k")["v"].tolist()
    ['c', 'a', 'd', 'b']
    """
    require_columns(df, as_list(by, "sort", "by"), "sort")
    ordered = df.sort_values(as_list(by, "sort", "by"), ascending=ascending, kind="stable", na_position="last")
    return ordered.reset_index(drop=True)


@exchange(lambda by, partitions=None: Exchange("hash", tuple(as_list(by, "repartition", "by")), partitions=partitions))
def repartition(df: pd.DataFrame, by: str | Sequence[str], partitions: int | None = None) -> pd.DataFrame:
    """The rows unchanged; in a pipeline, rows with equal `by` values end up in the same part, so the
    stages after it see every row of a key together."""
    require_columns(df, as_list(by, "repartition", "by"), "repartition")
    return df


def _dedupe_exchange(by: str | Sequence[str], keep: str = "first", order_by: str | None = None) -> Exchange:
    if keep not in ("first", "last"):
        raise ValueError(f"keep must be 'first' or 'last', got {keep!r}")
    return Exchange("hash", tuple(as_list(by, "deduplicate", "by")))


@exchange(_dedupe_exchange)
def deduplicate(df: pd.DataFrame, by: str | Sequence[str], keep: str = "first",
                order_by: str | None = None) -> pd.DataFrame:
    """One row per `by` key: the first (or last) in input order, or with `order_by` the one with the
    smallest (`keep="first"`) or largest (`"last"`) value there (ties: input order).

    >>> df = pd.DataFrame({"k": [1, 1, 2], "t": [5, 3, 9]})
    >>> deduplicate(df, by="k", order_by="t")["t"].tolist()
    [3, 9]
    """
    keys = as_list(by, "deduplicate", "by")
    require_columns(df, keys + ([order_by] if order_by else []), "deduplicate")
    ordered = df.sort_values(order_by, kind="stable", na_position="last") if order_by else df
    kept = ordered.drop_duplicates(subset=keys, keep=keep)
    return kept.sort_index().reset_index(drop=True)


def _groups_exchange(fn: Callable[..., Any] | str, by: str | Sequence[str],
                     params: Mapping[str, Any] | None = None) -> Exchange:
    _function(fn)
    return Exchange("hash", tuple(as_list(by, "apply_groups", "by")))


@exchange(_groups_exchange)
def apply_groups(df: pd.DataFrame, fn: Callable[..., Any] | str, by: str | Sequence[str],
                 params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """`fn(group, **params) -> DataFrame` for all rows of each `by` key (null keys form groups too); the
    results concatenated. `fn` is a function or "module:function".

    >>> df = pd.DataFrame({"k": ["a", "b", "a"], "v": [1, 2, 3]})
    >>> apply_groups(df, lambda g: g.assign(rank=g["v"].rank()), by="k")["rank"].tolist()
    [1.0, 2.0, 1.0]
    """
    keys = as_list(by, "apply_groups", "by")
    require_columns(df, keys, "apply_groups")
    function, params = _function(fn), dict(params or {})
    frames = [function(group, **params) for _, group in df.groupby(keys, sort=True, dropna=False, observed=True)]
    return pd.concat(frames, ignore_index=True) if frames else df.iloc[0:0]


def _function(fn: Callable[..., Any] | str) -> Callable[..., Any]:
    if callable(fn):
        return fn
    module, _, name = str(fn).partition(":")
    found = getattr(importlib.import_module(module), name, None) if module and name else None
    if not callable(found):
        raise ValueError(f"fn must be a function or 'module:function', got {fn!r}")
    return found
