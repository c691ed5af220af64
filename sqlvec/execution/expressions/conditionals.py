"""Conditionals: CASE (lazy per row when a branch holds a subquery), and the keyword forms
COALESCE, NULLIF, GREATEST and LEAST."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.catalog.functions import scalar
from sqlvec.errors import SyntaxError_
from sqlvec.execution import values as V
from sqlvec.execution.expressions.calls import undefined_keyword
from sqlvec.execution.expressions.core import HANDLERS, Compiler, Frame
from sqlvec.execution.values import BOOL, Datum, Value, as_array, is_scalar
from sqlvec.float_order import nan_greatest, pg_compare
from sqlvec.types import SqlType


def _case(c: Compiler, e: exp.Case) -> Value:
    subject = e.this
    subplans = c.env.subplans
    conds = []
    results = []
    for branch in e.args.get("ifs") or []:
        cond = branch.this
        if subject is not None:
            cond = exp.EQ(this=subject.copy(), expression=cond)
        conds.append(c.condition(cond, "CASE/WHEN") if subject is None else
                     c.compile_as(cond, BOOL))
        results.append(c.compile(branch.args["true"]))
    default = e.args.get("default")
    default_v = c.compile(default) if default is not None else None
    t = V.common_type([r.type for r in results] + ([default_v.type] if default_v else []), "CASE")
    results = [c.coerce(r, t) for r in results]
    default_v = c.coerce(default_v, t) if default_v is not None else None
    arrow = t.to_arrow()
    if c.env.subplans != subplans:  # a subquery in a branch: evaluated lazily
        return Value(_lazy_case(conds, results, default_v, t), t)

    def fn(f: Frame) -> Datum:
        n = f.n
        out = as_array(default_v(f), n) if default_v is not None else pa.nulls(n, arrow)
        out = _ensure_type(out, t)
        for cond, res in reversed(list(zip(conds, results))):
            mask = pc.fill_null(cond(f), False)
            if is_scalar(mask):
                mask = pa.array([mask.as_py()] * n, pa.bool_())
            out = pc.if_else(mask, _ensure_type(as_array(res(f), n), t), out)
        return out

    return Value(fn, t)


def _lazy_case(conds: list[Value], results: list[Value], default: Value | None, t: SqlType):
    """CASE over a subquery: as in PostgreSQL, each WHEN is tested only on the rows no earlier
    WHEN took, and each result is computed only for the rows that take it (a subquery guarded
    by `CASE WHEN t.typtype = 'c' THEN (SELECT ...)` runs for the composite types alone)."""
    arrow = t.to_arrow()

    def fn(f: Frame) -> Datum:
        n = f.n
        rows = np.arange(n)  # rows of f still undecided
        pieces: list[tuple[np.ndarray, Datum]] = []
        for cond, res in zip(conds, results):
            if not rows.size:
                break
            sub = _subframe(f, rows)
            mask = pc.fill_null(as_array(cond(sub), rows.size), False)
            mask = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
            taken = rows[mask]
            if taken.size:
                pieces.append((taken, res(_subframe(f, taken))))
            rows = rows[~mask]
        if rows.size:
            pieces.append((rows, default(_subframe(f, rows)) if default is not None
                           else pa.nulls(rows.size, arrow)))
        if not pieces:
            return pa.nulls(0, arrow)
        # Scatter the pieces back into row order: values in piece order, then the inverse
        # permutation of the rows they belong to.
        order = np.concatenate([where for where, _ in pieces])
        values = pa.concat_arrays([_plain(_ensure_type(as_array(v, w.size), t), arrow)
                                   for w, v in pieces])
        inverse = np.empty(n, np.int64)
        inverse[order] = np.arange(n)
        return values.take(pa.array(inverse))

    return fn


def _plain(arr, arrow: pa.DataType) -> pa.Array:
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return arr if arr.type == arrow else arr.cast(arrow)


def _subframe(f: Frame, rows: np.ndarray) -> Frame:
    if rows.size == f.n:
        return f
    if f.table.num_columns == 0:  # (take() on a table without columns loses the row count)
        return Frame(pa.table({"_": pa.nulls(rows.size)}).drop_columns(["_"]), f.ctx, f.outer)
    return Frame(f.table.take(pa.array(rows, pa.int64())), f.ctx, f.outer)


def _ensure_type(arr, t: SqlType):
    try:
        return V.to_storage(arr, t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return arr


# COALESCE, NULLIF, GREATEST and LEAST are SQL keywords, not functions of pg_proc: declared as
# keyword forms of the function catalog, called with their arguments in order.


@scalar("coalesce", keyword=True, strict=False)
def _coalesce(c: Compiler, exprs: list[exp.Expression], e: exp.Expression) -> Value:
    if not exprs:
        raise SyntaxError_("syntax error at or near \")\"")
    args = [c.compile(a) for a in exprs]
    t = V.common_type([a.type for a in args], "COALESCE")
    args = [c.coerce(a, t) for a in args]
    arrow = t.to_arrow()

    def fn(f):
        vals = [a(f) for a in args]
        if all(is_scalar(v) for v in vals):
            for v in vals:
                if v.is_valid:
                    return _cast_scalar(v, arrow)
            return pa.scalar(None, arrow)
        arrays = [_ensure_type(as_array(v, f.n), t) for v in vals]
        return pc.coalesce(*arrays)

    return Value(fn, t, all(a.const for a in args))


def _cast_scalar(v: pa.Scalar, arrow: pa.DataType) -> pa.Scalar:
    if v.type == arrow:
        return v
    try:
        return v.cast(arrow)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return v


@scalar("nullif", keyword=True, strict=False)
def _nullif(c: Compiler, exprs: list[exp.Expression], e: exp.Expression) -> Value:
    if len(exprs) != 2:
        raise undefined_keyword(c, "nullif", exprs)
    a = c.compile(exprs[0])
    b = c.compile(exprs[1])
    a2, b2, _ = c.unify(a, b)
    t = a.type if a.type.name != "unknown" else a2.type

    def fn(f):
        x = a2(f)
        eq = pc.fill_null(pg_compare("equal", x, b2(f)), False)
        if is_scalar(eq) and is_scalar(x):
            return pa.scalar(None, x.type) if eq.as_py() else x
        return pc.if_else(eq, pa.scalar(None, x.type), as_array(x, f.n))

    return Value(fn, t, a.const and b.const)


@scalar("greatest least", keyword=True, strict=False)
def _greatest(c: Compiler, exprs: list[exp.Expression], e: exp.Expression) -> Value:
    name = str(e.this).lower()
    if not exprs:
        raise SyntaxError_("syntax error at or near \")\"")
    args = [c.compile(a) for a in exprs]
    t = V.common_type([a.type for a in args], name.upper())
    args = [c.coerce(a, t) for a in args]
    return Value(lambda f: _extreme(name, [V.to_storage(a(f), t) for a in args]), t,
                 all(a.const for a in args))


def _extreme(name: str, values: list[Datum]) -> Datum:
    """GREATEST / LEAST of `values`, NULLs passed over; a NaN is the greatest float (Arrow's
    minimum already passes over NaN unless every value is one)."""
    if name == "least":
        return pc.min_element_wise(*values, skip_nulls=True)
    return nan_greatest(pc.max_element_wise(*values, skip_nulls=True), values)


HANDLERS.update({
    exp.Case: _case,
})
