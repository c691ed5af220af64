"""Casts (`CAST(x AS t)`, `x::t`) and COLLATE (accepted, without effect)."""

from __future__ import annotations

from sqlglot import exp

from sqlvec.execution import values as V
from sqlvec.execution.expressions.core import HANDLERS, Compiler, param_index
from sqlvec.execution.expressions.leaves import literal
from sqlvec.execution.expressions.scalars import cast_form
from sqlvec.execution.values import NUMERIC, TEXT, Value
from sqlvec.sql.binder import sql_type
from sqlvec.types import BIT_TYPES, REG_TYPES, SqlType


def _cast(c: Compiler, e: exp.Cast) -> Value:
    target = sql_type(e.args["to"])
    inner = e.this
    if target.name in REG_TYPES:
        fn = (c.env.functions or {}).get(f"::{target.name}")
        if fn is not None:
            if isinstance(inner, exp.Parameter) and c.env.param_type(param_index(inner)) is None:
                c.env.infer_param(param_index(inner), TEXT)  # a name, resolved by the cast
            return fn(c, c.compile(inner))
    if isinstance(inner, exp.Parameter) and c.env.param_type(param_index(inner)) is None:
        c.env.infer_param(param_index(inner), target)
        return c.compile(inner)
    if isinstance(inner, exp.Literal) and not inner.is_string and target.name in (
            "float4", "float8"):  # `1e308::float8`: read as a float, beyond numeric's digits here
        return c.coerce(literal(c, exp.Literal.string(inner.this)), target)
    v = c.compile(inner)
    if v.type.name in REG_TYPES and target.name in ("text", "varchar", "name", "bpchar"):
        fn = (c.env.functions or {}).get(f"{v.type.name}::text")
        if fn is not None:
            return c.coerce(fn(c, v), target)
    if v.type.name == "unknown" and v.text is not None and target.name in BIT_TYPES:
        v = c.coerce(v, SqlType(target.name))  # then cut or padded as an explicit cast does
    if v.type.name == "unknown" and v.text is not None:
        if target.char_length is None:
            return c.coerce(v, target)
        v = c.coerce(v, TEXT)  # an explicit cast truncates to the length
    src = v.type if v.type.name != "unknown" else TEXT
    if target == NUMERIC and V.numeric_scale(src) is not None:
        target = V.numeric_with_scale(V.numeric_scale(src))  # `x::numeric` keeps x's scale
    if target.is_vector and src.name == target.name and target.typmod >= 0:
        return Value(lambda f: V.cast(v(f), SqlType("_float4"), target, f.n), target, v.const)
    return Value(lambda f: V.cast(v(f), src, target, f.n, explicit=True), target, v.const,
                 py=cast_form(v.py, src, target))


def _collate(c: Compiler, e: exp.Collate) -> Value:
    return c.compile(e.this)


HANDLERS.update({
    exp.Cast: _cast, exp.TryCast: _cast, exp.Collate: _collate,
})
