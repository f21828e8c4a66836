"""The per-chunk stages the TPC-H queries use, as Polars stages: the same names and parameters as the pandas
ones, and `derive` and `filter_rows` read the same expression strings, so a query is written once and runs
with either set (`tpch.stage_sets`). A stage gets each chunk as a Polars DataFrame, which the framework makes
from the chunk's Arrow table without copying, and hands the next join or aggregate back as Arrow the same way.

Polars is imported inside each stage, not at the top: the driver only names these functions, and a driver
that has imported Polars can no longer fork its workers (Polars' thread pool does not survive a fork).

Decimals stay exact as in the pandas stages: Polars keeps the larger of two scales in a product, where SQL
keeps their sum, so a product of decimals first widens one factor to the sum; a quotient is a float64.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pipeline.stage import declare
from stages._checks import parse_expression

if TYPE_CHECKING:
    import polars as pl


def _expression(df: "pl.DataFrame", text: str) -> "pl.Expr":
    """The expression string, as `DataFrame.eval` reads it, as a Polars expression over `df`'s columns."""
    return _Translator(df).expr(parse_expression(text))


class _Translator:
    """Python's syntax tree of an expression → a Polars expression; `df`'s schema types the decimals."""

    def __init__(self, df: "pl.DataFrame") -> None:
        import polars as pl

        self.pl, self.df = pl, df

    def expr(self, node: ast.AST) -> "pl.Expr":
        pl = self.pl
        if isinstance(node, ast.Name):
            if node.id not in self.df.columns:
                raise KeyError(f"missing column {node.id!r}; available: {', '.join(self.df.columns)}")
            return pl.col(node.id)
        if isinstance(node, ast.Constant):
            return pl.lit(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
            return ~self.expr(node.operand)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self.expr(node.operand)
        if isinstance(node, ast.BoolOp):
            parts = [self.expr(value) for value in node.values]
            return pl.all_horizontal(parts) if isinstance(node.op, ast.And) else pl.any_horizontal(parts)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return self.arithmetic(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        raise ValueError(f"{ast.unparse(node)!r} is not supported in a Polars stage's expression")

    def arithmetic(self, node: ast.BinOp) -> "pl.Expr":
        left, right = self.expr(node.left), self.expr(node.right)
        if isinstance(node.op, ast.Div):
            return left.cast(self.pl.Float64) / right.cast(self.pl.Float64)
        if isinstance(node.op, ast.Mult):
            scales = [self.scale(left), self.scale(right)]
            if None not in scales:
                left = left.cast(self.pl.Decimal(38, sum(scales)))  # type: ignore[arg-type]
        return _ARITHMETIC[type(node.op)](left, right)

    def compare(self, node: ast.Compare) -> "pl.Expr":
        """A comparison with a missing value is false, as in pandas (Polars, like SQL, makes it missing)."""
        operands = [node.left, *node.comparators]
        tests = []
        for op, a, b in zip(node.ops, operands, operands[1:]):
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(b, (ast.List, ast.Tuple)):
                    raise ValueError(f"`in` takes a list of constants, got {ast.unparse(b)!r}")
                test = self.expr(a).is_in([ast.literal_eval(item) for item in b.elts])
                tests.append(~test if isinstance(op, ast.NotIn) else test)
            else:
                tests.append(_COMPARISONS[type(op)](self.expr(a), self.expr(b)))
        return (self.pl.all_horizontal(tests) if len(tests) > 1 else tests[0]).fill_null(False)

    def scale(self, expr: "pl.Expr") -> int | None:
        """The decimal scale of `expr` over `df`; None when it is no decimal (typed without running it)."""
        kind = self.df.lazy().select(expr).collect_schema().dtypes()[0]
        return kind.scale if isinstance(kind, self.pl.Decimal) else None


_ARITHMETIC: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
_COMPARISONS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
}


@declare(batch="polars")
def derive(df: "pl.DataFrame", columns: dict[str, str]) -> "pl.DataFrame":
    """Add or replace columns from expressions, in order (later ones may use earlier ones)."""
    for name, text in columns.items():
        df = df.with_columns(_expression(df, text).alias(name))
    return df


@declare(batch="polars")
def filter_rows(df: "pl.DataFrame", where: str) -> "pl.DataFrame":
    """Keep the rows where `where` is true (missing counts as false)."""
    return df.filter(_expression(df, where))


@declare(batch="polars")
def select(df: "pl.DataFrame", columns: Iterable[str]) -> "pl.DataFrame":
    return df.select(list(columns))


@declare(batch="polars")
def rename(df: "pl.DataFrame", columns: dict[str, str]) -> "pl.DataFrame":
    return df.rename(columns)


@declare(batch="polars")
def extract_datetime(df: "pl.DataFrame", column: str, parts: Iterable[str], prefix: str) -> "pl.DataFrame":
    """`{prefix}{part}` = the date's part (year, month or day), as Int32 like the pandas stage's."""
    import polars as pl

    values = pl.col(column).dt
    return df.with_columns(**{f"{prefix}{part}": getattr(values, part)().cast(pl.Int32) for part in parts})


@declare(batch="polars")
def like(df: "pl.DataFrame", column: str, pattern: str, negate: bool = False) -> "pl.DataFrame":
    """Rows whose `column` matches the SQL LIKE `pattern` (with `negate`: NOT LIKE)."""
    import polars as pl

    regex = "(?s)^" + "".join(".*" if c == "%" else "." if c == "_" else pl.escape_regex(c) for c in pattern) + "$"
    matches = pl.col(column).str.contains(regex).fill_null(False)
    return df.filter(~matches if negate else matches)


@declare(batch="polars")
def substring(df: "pl.DataFrame", column: str, out: str, start: int, length: int) -> "pl.DataFrame":
    """`out` = SQL `substring(column FROM start FOR length)` (`start` counts from 1)."""
    import polars as pl

    return df.with_columns(pl.col(column).str.slice(start - 1, length).alias(out))


@declare(batch="polars")
def on_every_row(df: "pl.DataFrame") -> "pl.DataFrame":
    """A constant join key: joining two tables on it pairs every row of one with every row of the other."""
    import polars as pl

    return df.with_columns(every_row=pl.lit(0, pl.Int64))


def _volume_where(df: "pl.DataFrame", out: str, condition: "pl.Expr") -> "pl.DataFrame":
    """`out` = CASE WHEN condition THEN volume ELSE 0 END."""
    import polars as pl

    return df.with_columns(pl.when(condition).then(pl.col("volume")).otherwise(0).alias(out))


@declare(batch="polars")
def brazil_volume(df: "pl.DataFrame") -> "pl.DataFrame":
    import polars as pl

    return _volume_where(df, "brazil", pl.col("nation") == "BRAZIL")


@declare(batch="polars")
def promo_volume(df: "pl.DataFrame") -> "pl.DataFrame":
    import polars as pl

    return _volume_where(df, "promo", pl.col("p_type").str.starts_with("PROMO"))
