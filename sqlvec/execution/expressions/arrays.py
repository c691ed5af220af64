"""Arrays (`ARRAY[...]`, subscripts) and `||`, which concatenates strings (arrays through the
catalog's extension, `expr:ArrayConcat`)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.expressions.core import HANDLERS, Compiler
from sqlvec.execution.values import INT4, TEXT, Value, as_array, is_scalar
from sqlvec.types import VECTOR_MAX_DIM, SqlType


def _dpipe(c: Compiler, e: exp.DPipe) -> Value:
    a = c.compile(e.this)
    b = c.compile(e.expression)
    if a.type.is_array or b.type.is_array:
        extra = (c.env.functions or {}).get("expr:ArrayConcat")  # catalog_functions.py
        if extra is None:
            raise FeatureNotSupported("array concatenation with || is not supported")
        return extra(c, e)
    if a.type.is_vector or b.type.is_vector:
        return _vector_concat(c, a, b)
    a = c.coerce(a, TEXT) if a.type.name == "unknown" else a
    b = c.coerce(b, TEXT) if b.type.name == "unknown" else b

    def fn(f):
        x = V.to_text(a(f), a.type, f.n)
        y = V.to_text(b(f), b.type, f.n)
        return pc.binary_join_element_wise(x, y, "", null_handling="emit_null")

    return Value(fn, TEXT, a.const and b.const)


def _vector_concat(c: Compiler, a: Value, b: Value) -> Value:
    """pgvector's `||` of two vectors (or halfvecs): the elements of both, in order."""
    kind = SqlType("halfvec" if "halfvec" in (a.type.name, b.type.name) else "vector")
    a, b = c.coerce(a, kind), c.coerce(b, kind)

    def fn(f):
        x, y = a(f), b(f)
        both = is_scalar(x) and is_scalar(y)
        rows = 1 if both else f.n
        mx, vx = V.to_numpy_vectors(x, rows)
        my, vy = V.to_numpy_vectors(y, rows)
        out = np.concatenate([mx, my], axis=1)
        if out.shape[1] > VECTOR_MAX_DIM:
            raise SqlVecError(f"{kind.name} cannot have more than {VECTOR_MAX_DIM} dimensions",
                              sqlstate="54000")
        valid = vx if vy is None else (vy if vx is None else vx & vy)
        arr = V.vectors_to_arrow(out, valid, kind.vector_dtype)
        return arr[0] if both else arr

    return Value(fn, kind, a.const and b.const)


def _array(c: Compiler, e: exp.Array) -> Value:
    items = [c.compile(x) for x in e.expressions]
    t = V.common_type([i.type for i in items], "ARRAY") if items else TEXT
    if t.is_array:
        raise FeatureNotSupported("multidimensional arrays are not supported")
    items = [c.coerce(i, t) for i in items]
    at = t.array_of()

    def fn(f):
        vals = [i(f) for i in items]
        if all(is_scalar(v) for v in vals):
            return pa.scalar([v.as_py() for v in vals], at.to_arrow())
        cols = [as_array(v, f.n).to_pylist() for v in vals]
        return pa.array([list(row) for row in zip(*cols)], at.to_arrow())

    return Value(fn, at, all(i.const for i in items))


def _bracket(c: Compiler, e: exp.Bracket) -> Value:
    base = c.compile(e.this)
    if len(e.expressions) != 1:
        raise FeatureNotSupported("array slices are not supported")
    idx = c.compile_as(e.expressions[0], INT4)
    if base.type.name == "unknown":
        raise FeatureNotSupported("subscripting an untyped value is not supported")
    elem = base.type.element if base.type.is_array else (SqlType("float4") if base.type.is_vector else TEXT)

    def fn(f):
        arr, i = base(f), idx(f)
        if is_scalar(arr) and is_scalar(i):
            items = arr.as_py()
            k = i.as_py()
            if items is None or k is None or not 1 <= k <= len(items):
                return pa.scalar(None, elem.to_arrow())
            return pa.scalar(items[k - 1], elem.to_arrow())
        arrs = as_array(arr, f.n).to_pylist()
        ks = as_array(i, f.n).to_pylist()
        out = [None if a is None or k is None or not 1 <= k <= len(a) else a[k - 1]
               for a, k in zip(arrs, ks)]
        return pa.array(out, elem.to_arrow())

    return Value(fn, elem, base.const and idx.const)


HANDLERS.update({
    exp.DPipe: _dpipe,
    exp.Array: _array, exp.Bracket: _bracket,
})
