"""Parameter checks shared by the built-in stages.

Errors name the stage and the offending column(s); the framework adds which
stage instance and chunk failed.
"""

from __future__ import annotations

import ast
import functools
import io
import math
import operator
import re
import tokenize
from collections.abc import Callable, Iterable, Mapping
from functools import reduce
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.errors import UndefinedVariableError

from pipeline.batch import is_decimal


def as_list(value: str | Iterable[str], stage: str, param: str) -> list[str]:
    """Accept one column name or a list of them, as configs write either."""
    if isinstance(value, str):
        return [value]
    try:
        names = list(value)
    except TypeError:
        raise ValueError(f"{stage}: {param} must be a column name or a list of names, "
                         f"got {value!r}") from None
    bad = [v for v in names if not isinstance(v, str)]
    if bad:
        raise ValueError(f"{stage}: {param} must contain column names, got {bad!r}")
    return names


def is_number(value: object, allow_zero: bool) -> bool:
    """A finite number (not a bool) above 0, or 0 too with `allow_zero`: timeouts, rates, waits."""
    return (isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
            and (value > 0 or (allow_zero and value == 0)))


def require_columns(df: pd.DataFrame, columns: Iterable[str], stage: str) -> None:
    """Raise KeyError naming every requested column the chunk lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"{stage}: missing column(s) {', '.join(map(repr, missing))}; "
                       f"available: {', '.join(map(str, df.columns))}")


def require_mapping(value: object, stage: str, param: str) -> dict:
    """Mapping parameters come from TOML tables; catch lists and strings early."""
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{stage}: {param} must be a non-empty table/dict, got {value!r}")
    return value


def evaluate(df: pd.DataFrame, expr: str, stage: str, values: Mapping[str, Any] | None = None) -> pd.Series | object:
    """Run ``DataFrame.eval`` on columns only; name unknown columns in a KeyError.

    ``@name`` refers to ``values[name]`` (a date, a list, ... as a config writes it); the stage's own
    Python variables stay hidden from the expression.
    """
    if not isinstance(expr, str) or not expr.strip():
        raise ValueError(f"{stage}: expression must be a non-empty string, got {expr!r}")
    try:
        return _eval(df, expr, dict(values or {}))
    except UndefinedVariableError as exc:
        if "local variable" in str(exc):
            raise ValueError(f"{stage}: unknown @name in {expr!r}; give it in the stage's `values` "
                             f"(has: {', '.join(values or {}) or 'none'})") from None
        match = re.search(r"'(.+?)' is not defined", str(exc))
        name = match.group(1) if match else str(exc)
        raise KeyError(f"{stage}: missing column(s) {name!r} in expression {expr!r}; "
                       f"available: {', '.join(map(str, df.columns))}") from None
    except (SyntaxError, NotImplementedError, TypeError, ValueError) as exc:
        raise ValueError(f"{stage}: cannot evaluate {expr!r}: {exc}") from exc


def _eval(df: pd.DataFrame, expr: str, values: dict[str, Any]) -> pd.Series | object:
    """The operators applied to the columns, as ``DataFrame.eval`` applies them without numexpr, but without
    its parsing and type checks, which cost several times the evaluation of a comparison. Where that does
    not do (syntax or names of ``eval``'s own, or an error, which ``eval`` then words), ``DataFrame.eval``;
    where that refuses Arrow-backed columns (its type check cannot type a decimal next to a number, as in
    ``price * (1 - discount)``), the operators again. A refusal is remembered for the expression and the
    columns' types, so later chunks skip the attempt."""
    if (plain := _plain(expr)) is not None:
        try:
            return _columnwise(df, plain, values)
        except Exception:  # noqa: BLE001 - evaluated again below, and any error reported in eval's words
            pass
    signature = (expr, tuple(zip(df.columns, map(str, df.dtypes))))
    if signature not in _REFUSED:
        try:
            return df.eval(expr, local_dict=values, global_dict={})
        except (TypeError, AttributeError, pa.ArrowInvalid):  # the type check fails in either way
            if not any(isinstance(dtype, pd.ArrowDtype) for dtype in df.dtypes):
                raise
        if len(_REFUSED) < _REMEMBERED:
            _REFUSED.add(signature)
    return _columnwise(df, parse_expression(expr), values)


@functools.lru_cache(maxsize=256)
def parse_expression(expr: str) -> ast.AST:
    """The expression as Python parses it once ``&`` and ``|`` are read as ``and`` and ``or``, as
    ``DataFrame.eval`` reads them: in Python they bind tighter than comparisons, so ``a > 1 & b < 2`` would
    compare ``a`` with ``1 & b``. Python's own ``and``/``or`` of columns are applied elementwise here too."""
    source = expr.strip().replace("@", _VALUE)
    try:
        tokens = [(tokenize.NAME, _BOOLEAN[t.string]) if t.type == tokenize.OP and t.string in _BOOLEAN
                  else (t.type, t.string) for t in tokenize.generate_tokens(io.StringIO(source).readline)]
    except tokenize.TokenError as exc:
        raise SyntaxError(str(exc)) from None
    return ast.parse(tokenize.untokenize(tokens), mode="eval").body


@functools.lru_cache(maxsize=256)
def _plain(expr: str) -> ast.AST | None:
    """The parsed expression, or None for a syntax Python does not have (backquoted names), which only
    ``DataFrame.eval`` reads."""
    try:
        return parse_expression(expr)
    except SyntaxError:
        return None


_BOOLEAN = {"&": "and", "|": "or"}
_VALUE = "_value_"  # `@name` in an expression, where the fallback parses it as Python
_REFUSED: set[tuple] = set()  # (expression, column types) that DataFrame.eval refused
_REMEMBERED = 1024


_ARITHMETIC: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_LOGICAL: dict[type, Callable[[Any, Any], Any]] = {
    ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.And: operator.and_, ast.Or: operator.or_,
}
_COMPARISONS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a.isin(b), ast.NotIn: lambda a, b: ~a.isin(b),
}
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert, ast.Not: operator.invert,
}
_FUNCTIONS = ("abs", "sqrt", "exp", "log", "log10", "floor", "ceil")


def _columnwise(df: pd.DataFrame, node: ast.AST, values: dict[str, Any]) -> Any:
    """Evaluate an expression with its operators applied to whole columns, as ``DataFrame.eval`` does,
    without its type check: columns, constants, arithmetic, comparisons, and/or/not, a few functions."""
    if isinstance(node, ast.Name) and node.id.startswith(_VALUE):
        name = node.id.removeprefix(_VALUE)
        if name not in values:
            raise UndefinedVariableError(name, is_local=True)
        return values[name]
    if isinstance(node, ast.Name):
        if node.id not in df.columns:
            raise UndefinedVariableError(node.id)
        return df[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_columnwise(df, item, values) for item in node.elts]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_columnwise(df, node.operand, values))
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        left, right = _columnwise(df, node.left, values), _columnwise(df, node.right, values)
        return _arithmetic(_ARITHMETIC[type(node.op)], left, right)
    if isinstance(node, ast.BinOp) and type(node.op) in _LOGICAL:
        return _LOGICAL[type(node.op)](_columnwise(df, node.left, values), _columnwise(df, node.right, values))
    if isinstance(node, ast.BoolOp):
        return reduce(_LOGICAL[type(node.op)], [_columnwise(df, value, values) for value in node.values])
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARISONS for op in node.ops):
        operands = [_columnwise(df, operand, values) for operand in [node.left, *node.comparators]]
        tests = [_COMPARISONS[type(op)](a, b) for op, a, b in zip(node.ops, operands, operands[1:])]
        return reduce(operator.and_, tests)  # a < b < c: both comparisons
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        return getattr(np, node.func.id)(*[_columnwise(df, arg, values) for arg in node.args])
    raise ValueError(f"{ast.unparse(node)!r} is not supported in expressions on Arrow-backed (decimal) columns")


def _arithmetic(op: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    """``op(left, right)``. Arrow gives a decimal product or sum the precision its operands' types could need,
    past 38 digits after two or three factors; then the operands are narrowed to the digits their values have,
    and the result widened to 38 digits at the scale it would have had, the same type in every chunk. Values
    that do not fit in 38 digits still fail."""
    if op is operator.truediv:  # a quotient of decimals is rarely a decimal: float64, as pandas divides
        left, right = _as_float(left), _as_float(right)
    try:
        return op(left, right)
    except pa.ArrowInvalid:
        if op not in (operator.add, operator.sub, operator.mul):
            raise
        result = op(_narrowed(left), _narrowed(right))
    return _as_decimal(result, pa.decimal128(38, result.dtype.pyarrow_dtype.scale))


def _as_float(values: Any) -> Any:
    return values.astype("float64") if isinstance(values, pd.Series) and is_decimal(values.dtype) else values


def _narrowed(values: Any) -> Any:
    """A decimal column at the fewest digits that hold its values, at the same scale; anything else as is."""
    if not (isinstance(values, pd.Series) and is_decimal(values.dtype)):
        return values
    scale = values.dtype.pyarrow_dtype.scale
    ends = pc.min_max(values.array.__arrow_array__()).values()
    largest = max((abs(end.as_py()) for end in ends if end.is_valid), default=None)
    digits = 1 if largest is None else len(str(int(largest.scaleb(scale))))  # of the unscaled integer
    return _as_decimal(values, pa.decimal128(digits, scale))


def _as_decimal(values: pd.Series, kind: pa.Decimal128Type) -> pd.Series:
    """A decimal128 column as another precision at its scale, its values known to fit: the same 16 bytes
    per value, so a view of its buffers rather than a cast that checks every value."""
    chunks = values.array.__arrow_array__().chunks
    array = pa.chunked_array([chunk.view(kind) for chunk in chunks], kind)
    return pd.Series(pd.arrays.ArrowExtensionArray(array), index=values.index, name=values.name)
