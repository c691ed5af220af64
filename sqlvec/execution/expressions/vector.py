"""pgvector's operators: the distances (`<->`, `<=>`, `<#>`, `<+>`), element-wise `+ - *`, and
comparisons in its btree order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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
from sqlvec.types import BIT_TYPES, SqlType
from sqlvec.vectors import (
    Metric,
    hamming_distances,
    jaccard_distances,
    l2_squared_distances,
    pack_bits,
    paired_distances,
    sparse_cmp,
    sparse_distances,
    sparse_l2_squared,
)


def pgvector_kind(*types: SqlType) -> str:
    """The pgvector type operands of these types meet at: sparsevec when any is one (vector and
    halfvec cast to sparsevec implicitly), else halfvec when any is one (vector casts to halfvec
    implicitly), else vector."""
    names = {t.name for t in types}
    return "sparsevec" if "sparsevec" in names else "halfvec" if "halfvec" in names else "vector"


def _vector_pair(c: Compiler, a: Value, b: Value) -> tuple[Value, Value]:
    """Both operands as one pgvector type (`pgvector_kind`)."""
    kind = pgvector_kind(a.type, b.type)
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
        c.env.infer_param(param_index(e.this), b.type if b.type.is_vector or b.type.is_sparse
                          else SqlType("vector"))
        a = c.compile(e.this)
    if b.type.name == "unknown" and isinstance(e.expression, exp.Parameter):
        c.env.infer_param(param_index(e.expression),
                          a.type if a.type.is_vector or a.type.is_sparse else SqlType("vector"))
        b = c.compile(e.expression)
    a, b = _vector_pair(c, a, b)
    metric = e.metric
    if a.type.is_sparse:
        return Value(lambda f: sparse_distance(metric, a(f), b(f), f.n), FLOAT8,
                     a.const and b.const)

    def fn(f: Frame) -> Datum:
        return vector_distance(metric, a(f), b(f), f.n)

    return Value(fn, FLOAT8, a.const and b.const)


def vector_distance(metric: Metric | None, x: Datum, y: Datum, n: int) -> Datum:
    """Row-wise pgvector distance between two vector datums (columns or constants); metric
    None: pgvector's vector_l2_squared_distance."""
    both_scalar = is_scalar(x) and is_scalar(y)
    rows = 1 if both_scalar else n
    if is_scalar(x) and not x.is_valid or is_scalar(y) and not y.is_valid:
        # A NULL operand (`ORDER BY v <-> (SELECT NULL::vector)`): NULL for every row, with no
        # dimensions to compare.
        return pa.scalar(None, pa.float64()) if both_scalar else pa.nulls(rows, pa.float64())
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


def sparse_distance(metric: Metric | None, x: Datum, y: Datum, n: int) -> Datum:
    """Row-wise pgvector distance between two sparsevec datums; metric None: pgvector's
    sparsevec_l2_squared_distance."""
    both_scalar = is_scalar(x) and is_scalar(y)
    rows = 1 if both_scalar else n
    if is_scalar(x) and not x.is_valid or is_scalar(y) and not y.is_valid:
        return pa.scalar(None, pa.float64()) if both_scalar else pa.nulls(rows, pa.float64())
    sx, sy = V.to_sparse_rows(x, rows), V.to_sparse_rows(y, rows)
    valid = sx.valid if sy.valid is None else (sy.valid if sx.valid is None else
                                               sx.valid & sy.valid)
    live = np.ones(rows, bool) if valid is None else valid
    differ = live & (sx.dims != sy.dims)
    if differ.any():
        at = int(np.argmax(differ))
        raise DataException(f"different sparsevec dimensions {sx.dims[at]} and {sy.dims[at]}")
    out = sparse_l2_squared(sx, sy) if metric is None else sparse_distances(metric, sx, sy)
    arr = pa.array(out, pa.float64(), mask=None if valid is None else ~valid)
    return arr[0] if both_scalar else arr


def sparse_compare(op: str, x: Datum, y: Datum, n: int) -> Datum:
    """sparsevec comparisons in pgvector's btree order: the elements as a dense vector would
    compare them over the shorter dimension count, then the dimension counts."""
    both = is_scalar(x) and is_scalar(y)
    rows = 1 if both else n
    if is_scalar(x) and not x.is_valid or is_scalar(y) and not y.is_valid:
        return pa.scalar(None, pa.bool_()) if both else pa.nulls(rows, pa.bool_())
    sx, sy = V.to_sparse_rows(x, rows), V.to_sparse_rows(y, rows)
    sign = sparse_cmp(sx, sy)
    out = {"equal": sign == 0, "not_equal": sign != 0, "less": sign < 0,
           "less_equal": sign <= 0, "greater": sign > 0, "greater_equal": sign >= 0}[op]
    valid = sx.valid if sy.valid is None else (sy.valid if sx.valid is None else
                                               sx.valid & sy.valid)
    arr = pa.array(out, pa.bool_(), mask=None if valid is None else ~valid)
    return arr[0] if both else arr


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


# Bit strings: `<~>` (Hamming) and `<%>` (Jaccard) over packed bytes --------------------------------


def bit_chars(value: Datum, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A bit string column (or scalar) of one length as (n, d) ASCII '0'/'1' bytes, read from
    the string buffer without a per-row step, and a validity mask; pgvector's 22000 when
    lengths differ."""
    if isinstance(value, pa.Scalar):
        if not value.is_valid:
            return np.zeros((n, 0), np.uint8), np.zeros(n, bool)
        row = np.frombuffer(value.as_py().encode(), np.uint8)
        return np.broadcast_to(row, (n, row.size)), None
    arr = V.as_array(value, n)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else None
    lengths = pc.utf8_length(arr).to_numpy(zero_copy_only=False)
    present = lengths[valid] if valid is not None else lengths
    d = int(present[0]) if present.size else 0
    if present.size and (present != d).any():
        raise DataException(f"different bit lengths {d} and {int(present[present != d][0])}")
    if arr.null_count:
        arr = arr.fill_null("0" * d)
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset:arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], np.uint8) if arr.buffers()[2] is not None else \
        np.zeros(0, np.uint8)
    return data[offsets[0]:offsets[-1]].reshape(len(arr), d), valid


def bits_from_chars(chars: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    """(n, d) ASCII '0'/'1' bytes as a bit string column (one buffer, no per-row step)."""
    n, d = chars.shape
    offsets = (np.arange(n + 1, dtype=np.int32) * d).tobytes()
    mask = None if valid is None else pa.array(~valid).buffers()[1]
    nulls = 0 if valid is None else int((~valid).sum())
    data = np.ascontiguousarray(chars, np.uint8).tobytes()
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data),
                                       mask if nulls else None, nulls)


def _bit_operand(c: Compiler, v: Value) -> Value:
    if v.type.name in BIT_TYPES:
        return v
    if v.type.name == "unknown":
        return c.coerce(v, SqlType("bit"))
    raise SqlVecError(f"operator does not exist: {v.type.format()} <~> bit", sqlstate="42883",
                      hint="No operator matches the given name and argument types. You might "
                           "need to add explicit type casts.")


def _bit_distance(c: Compiler, e: d.BitDistance) -> Value:
    a, b = operands(c, e)
    a, b = _bit_operand(c, a), _bit_operand(c, b)
    kernel = hamming_distances if isinstance(e, d.HammingDistance) else jaccard_distances

    def fn(f: Frame) -> Datum:
        x, y = a(f), b(f)
        both = is_scalar(x) and is_scalar(y)
        if both and (not x.is_valid or not y.is_valid):
            return pa.scalar(None, pa.float64())
        rows = 1 if both else f.n
        cx, vx = bit_chars(x, rows)
        cy, vy = bit_chars(y, rows)
        if cx.shape[1] != cy.shape[1] and cx.size and cy.size:
            raise DataException(f"different bit lengths {cx.shape[1]} and {cy.shape[1]}")
        out = kernel(pack_bits(cx), pack_bits(cy)) if rows else np.empty(0)
        valid = vx if vy is None else (vy if vx is None else vx & vy)
        arr = pa.array(out, pa.float64(), mask=None if valid is None else ~valid)
        return arr[0] if both else arr

    return Value(fn, FLOAT8, a.const and b.const)


def _bit_string(c: Compiler, e: exp.BitString) -> Value:
    text = str(e.this)
    bits = V.parse_bits(text, SqlType("bit"))
    return Value(lambda f: pa.scalar(bits, pa.string()), SqlType("bit"), True)


HANDLERS.update({d.HammingDistance: _bit_distance, d.JaccardDistance: _bit_distance,
                 exp.BitString: _bit_string})
