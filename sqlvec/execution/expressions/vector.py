"""pgvector's operators: the distances (`<->`, `<=>`, `<#>`, `<+>`), element-wise `+ - *`, and
comparisons in its btree order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from sqlglot import exp

from sqlvec.errors import DataException, NumericValueOutOfRange, SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.expressions.core import (
    HANDLERS,
    SYMBOLS,
    Compiler,
    Frame,
    operands,
    param_index,
)
from sqlvec.execution.values import FLOAT8, Datum, Value, is_scalar
from sqlvec.sql import dialect as d
from sqlvec.types import SqlType
from sqlvec.vectors import Metric, l2_squared_distances, paired_distances


def _vector_pair(c: Compiler, a: Value, b: Value) -> tuple[Value, Value]:
    """Both operands as one pgvector type: halfvec when either is one (vector casts to halfvec
    implicitly, as in pgvector), else vector."""
    kind = "halfvec" if "halfvec" in (a.type.name, b.type.name) else "vector"
    if a.type.name != kind:
        a = c.coerce(a, SqlType(kind))
    if b.type.name != kind:
        b = c.coerce(b, SqlType(kind))
    return a, b


def _dims_error(x: np.ndarray, y: np.ndarray) -> DataException:
    kind = "halfvec" if x.dtype == np.float16 else "vector"
    return DataException(f"different {kind} dimensions {x.shape[1]} and {y.shape[1]}")


def _distance(c: Compiler, e: d.VectorDistance) -> Value:
    a, b = operands(c, e)
    # A parameter takes the other operand's type (vector when that is unknown too).
    if a.type.name == "unknown" and isinstance(e.this, exp.Parameter):
        c.env.infer_param(param_index(e.this), b.type if b.type.is_vector else SqlType("vector"))
        a = c.compile(e.this)
    if b.type.name == "unknown" and isinstance(e.expression, exp.Parameter):
        c.env.infer_param(param_index(e.expression),
                          a.type if a.type.is_vector else SqlType("vector"))
        b = c.compile(e.expression)
    a, b = _vector_pair(c, a, b)
    metric = e.metric

    def fn(f: Frame) -> Datum:
        return vector_distance(metric, a(f), b(f), f.n)

    return Value(fn, FLOAT8, a.const and b.const)


def vector_distance(metric: Metric | None, x: Datum, y: Datum, n: int) -> Datum:
    """Row-wise pgvector distance between two vector datums (columns or constants); metric
    None: pgvector's vector_l2_squared_distance."""
    both_scalar = is_scalar(x) and is_scalar(y)
    rows = 1 if both_scalar else n
    if both_scalar and (not x.is_valid or not y.is_valid):
        return pa.scalar(None, pa.float64())
    mx, vx = V.to_numpy_vectors(x, rows)
    my, vy = V.to_numpy_vectors(y, rows)
    if mx.shape[1] != my.shape[1] and mx.size and my.size:
        raise _dims_error(mx, my)
    if not rows:
        out = np.empty(0)
    elif metric is None:
        out = l2_squared_distances(mx, my)
    else:
        out = paired_distances(metric, mx, my)
    valid = None
    for v in (vx, vy):
        if v is not None:
            valid = v if valid is None else valid & v
    arr = pa.array(out, pa.float64(), mask=None if valid is None else ~valid)
    return arr[0] if both_scalar else arr


def vector_arith(c: Compiler, op: str, a: Value, b: Value) -> Value:
    """pgvector's element-wise `+`, `-` and `*` of two vectors of equal dimensions; other operators
    do not exist for vectors (42883)."""
    a, b = _vector_pair(c, a, b)
    if op not in ("add", "subtract", "multiply"):
        kind = a.type.name
        raise SqlVecError(f"operator does not exist: {kind} {SYMBOLS[op]} {kind}",
                          sqlstate="42883")
    t = a.type if a.type.typmod >= 0 else b.type

    def fn(f: Frame) -> Datum:
        x, y = a(f), b(f)
        both_scalar = is_scalar(x) and is_scalar(y)
        rows = 1 if both_scalar else f.n
        mx, vx = V.to_numpy_vectors(x, rows)
        my, vy = V.to_numpy_vectors(y, rows)
        if mx.shape[1] != my.shape[1]:
            raise _dims_error(mx, my)
        # float16 operands give float16 results (computed in float and rounded once, as
        # pgvector's _Float16 arithmetic does).
        with np.errstate(over="ignore", under="ignore"):
            out = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply}[op](mx, my)
        valid = vx if vy is None else (vy if vx is None else vx & vy)
        rows_ok = slice(None) if valid is None else valid
        if np.isinf(out[rows_ok]).any():
            raise NumericValueOutOfRange("value out of range: overflow")
        if op == "multiply" and mx.dtype == np.float16 and \
                ((out == 0) & (mx != 0) & (my != 0))[rows_ok].any():
            raise NumericValueOutOfRange("value out of range: underflow")
        arr = V.vectors_to_arrow(out, valid, mx.dtype.type)
        return arr[0] if both_scalar else arr

    return Value(fn, SqlType(a.type.name, t.typmod), a.const and b.const)


def vector_compare(op: str, x: Datum, y: Datum, n: int) -> Datum:
    """Vector comparisons as pgvector's btree order: element by element, then by length."""
    both = is_scalar(x) and is_scalar(y)
    rows = 1 if both else n
    mx, vx = V.to_numpy_vectors(x, rows)
    my, vy = V.to_numpy_vectors(y, rows)
    common = min(mx.shape[1], my.shape[1])
    differ = mx[:, :common] != my[:, :common]
    first = np.argmax(differ, axis=1)
    at = np.arange(rows)
    sign = np.where(differ.any(axis=1), np.sign(mx[at, first] - my[at, first]),
                    np.sign(mx.shape[1] - my.shape[1]))
    out = {"equal": sign == 0, "not_equal": sign != 0, "less": sign < 0,
           "less_equal": sign <= 0, "greater": sign > 0, "greater_equal": sign >= 0}[op]
    valid = vx if vy is None else (vy if vx is None else vx & vy)
    arr = pa.array(out, pa.bool_(), mask=None if valid is None else ~valid)
    return arr[0] if both else arr


HANDLERS.update({
    d.L2Distance: _distance, d.CosineDistance: _distance, d.NegativeInnerProduct: _distance,
    d.L1Distance: _distance,
})
