"""PostgreSQL's order of float values: NaN equals NaN and is greater than every other value
(Infinity too), where IEEE comparisons call NaN unordered (NaN = NaN false, NaN > x false).

One rule, for Arrow data (expressions, BETWEEN, sorts), NumPy arrays (a filter evaluated
on a column's buffer: `pg_float_compare`) and Python scalars (segment pruning by min/max:
`pg_float_key`). Comparisons are named as Arrow's and NumPy's functions: equal, not_equal,
less, less_equal, greater, greater_equal.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# The answer of `x op y` when (both are NaN, only x is NaN, only y is NaN).
_NAN_ANSWERS = {
    "equal": (True, False, False), "not_equal": (False, True, True),
    "less": (False, False, True), "less_equal": (True, False, True),
    "greater": (False, True, False), "greater_equal": (True, True, False),
}


def _nan_ordered(op: str, ieee, x_nan, y_nan, where: Callable, both: Callable, negate: Callable):
    """`ieee` (the IEEE answer of `x op y`) with PostgreSQL's answer where x or y is NaN;
    `where`, `both` and `negate` are the library's select, and, not."""
    both_nan, x_only, y_only = _NAN_ANSWERS[op]
    out = where(both(negate(x_nan), y_nan), y_only, ieee)
    out = where(both(x_nan, negate(y_nan)), x_only, out)
    return where(both(x_nan, y_nan), both_nan, out)


def pg_float_compare(op: str, values: np.ndarray, constant: float) -> np.ndarray:
    """`values op constant` over a NumPy float array, in PostgreSQL's order (vectorised)."""
    ieee = getattr(np, op)(values, constant)
    if not np.issubdtype(values.dtype, np.floating):
        return ieee
    x_nan, y_nan = np.isnan(values), np.isnan(constant)
    if not (y_nan or x_nan.any()):  # (the usual case: one look, no selects)
        return ieee
    return _nan_ordered(op, ieee, x_nan, y_nan, np.where, np.logical_and, np.logical_not)


def _arrow(value):
    """An Arrow array or scalar of `value` (a Python operand becomes a scalar)."""
    return value if isinstance(value, (pa.Array, pa.ChunkedArray, pa.Scalar)) else pa.scalar(value)


def _nan_mask(value):
    """Which of `value`'s items are NaN, NULL where NULL (never NaN when not a float)."""
    value = _arrow(value)
    if pa.types.is_floating(value.type):
        return pc.is_nan(value)
    return pc.if_else(pc.is_valid(value), False, pa.scalar(None, pa.bool_()))


def holds_nan(value) -> bool:
    """Whether a float array (or scalar) may hold a NaN: never false when it does, and true
    otherwise only where a NULL slot's unused value happens to be NaN (a quick look at the
    data buffer with NumPy, four times faster than Arrow's is_nan)."""
    value = _arrow(value)
    if not pa.types.is_floating(value.type):
        return False
    if isinstance(value, pa.Scalar):
        return value.is_valid and math.isnan(value.as_py())
    if isinstance(value, pa.ChunkedArray):
        return any(holds_nan(chunk) for chunk in value.chunks)
    if len(value) == 0:
        return False
    dtype = np.dtype(value.type.to_pandas_dtype())
    data = np.frombuffer(value.buffers()[1], dtype, len(value), value.offset * dtype.itemsize)
    return bool(np.isnan(data).any())


def _no_nulls(value) -> bool:
    value = _arrow(value)
    return value.is_valid if isinstance(value, pa.Scalar) else value.null_count == 0


def arrow_nan_ordered(op: str, ieee, x, y):
    """`ieee`, the IEEE answer of Arrow's `op` over `x` and `y` (arrays or scalars), with
    PostgreSQL's answers where a float operand is NaN; untouched when neither holds one."""
    x_has, y_has = holds_nan(x), holds_nan(y)
    if not (x_has or y_has):
        return ieee
    both_nan, x_only, y_only = _NAN_ANSWERS[op]
    if not y_has and _no_nulls(y):  # the common `column op constant`: one mask, one select
        return pc.if_else(_nan_mask(x), x_only, ieee)
    if not x_has and _no_nulls(x):
        return pc.if_else(_nan_mask(y), y_only, ieee)
    return _nan_ordered(op, ieee, _nan_mask(x), _nan_mask(y), pc.if_else, pc.and_, pc.invert)


def pg_compare(op: str, x, y):
    """Arrow's `op` (e.g. "less") over `x` and `y`, floats in PostgreSQL's order."""
    return arrow_nan_ordered(op, getattr(pc, op)(x, y), x, y)


def nan_greatest(result, inputs: list):
    """A maximum (`result`, from Arrow's max, which passes over NaN) made PostgreSQL's: NaN
    wherever one of `inputs` (arrays or scalars in line with `result`) is NaN."""
    masks = [_nan_mask(v) for v in inputs if holds_nan(v)]
    if not masks:
        return result
    any_nan = pc.fill_null(masks[0], False)
    for m in masks[1:]:
        any_nan = pc.or_(any_nan, pc.fill_null(m, False))
    return pc.if_else(any_nan, pa.scalar(math.nan, result.type), result)


def pg_float_key(value: object) -> tuple:
    """A sort key of a Python scalar in PostgreSQL's order: a float NaN above everything."""
    if isinstance(value, float) and math.isnan(value):
        return (1, 0.0)
    return (0, value)
