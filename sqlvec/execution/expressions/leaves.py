"""Leaves of an expression: column references (with the system columns derived from the row
id), literals, NULL, booleans, parameters and parentheses."""

from __future__ import annotations

import decimal
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.errors import FeatureNotSupported, NumericValueOutOfRange, SqlVecError
from sqlvec.execution.expressions.core import HANDLERS, Compiler, Frame, param_index
from sqlvec.execution.expressions.scalars import constant_form, param_form
from sqlvec.execution.values import BOOL, INT4, INT8, UNKNOWN, Datum, Value
from sqlvec.sql.binder import Field, bound_ref, system_column
from sqlvec.types import SqlType


def _column(c: Compiler, e: exp.Column) -> Value:
    ref = bound_ref(e)
    if ref is None:
        raise SqlVecError(f"column reference {e.sql()} was not bound", sqlstate="XX000")
    level, index, field = ref.level, ref.index, ref.field  # the binder's: no name lookup
    if level == 0:
        t = c.types[index]
        return _system_value(field, e.name, Value(lambda f: f.table.column(index), t, column=index))
    c.env.correlated = True
    outer = c
    for _ in range(level):
        outer = outer.outer  # type: ignore[assignment]
        if outer is None:
            raise FeatureNotSupported("outer reference beyond the enclosing query")
    t = outer.types[index]
    c.env.outer_refs.append((outer, index))

    def fn(f: Frame) -> Datum:
        frame = f
        for _ in range(level):
            frame = frame.outer  # type: ignore[assignment]
        return frame.table.column(index)[0]

    return _system_value(field, e.name, Value(fn, t))


# System columns: derived from the row id (`field`, the scan's hidden _rowid), which is
# assigned at insert and never reused; an UPDATE writes the row anew under a new one.
# - ctid (block, offset) = (rowid // 256, rowid % 256 + 1): unique, stable for the row's life
#   and new after UPDATE, as PostgreSQL's is (which VACUUM FULL may also change). The row id
#   is taken modulo 2**40 so that block numbers fit 32 bits (uncommitted rows of the own
#   transaction have provisional negative ids: their ctid changes at COMMIT).
# - xmin = rowid % 2**31 + 3 (3 is the first normal xid): changes on UPDATE, so clients that
#   use xmin as an optimistic-concurrency token see a concurrent change. Not a transaction id:
#   rows written together do not share one.
# - xmax, cmin, cmax = 0 (no row visible here is being deleted; no command ids).
# - tableoid: the table's OID, which the row id field carries as its source.

_ROWID_SPAN = (1 << 40) - 1


def _ctid(rowid: Datum) -> Datum:
    u = pc.bit_wise_and(rowid, _ROWID_SPAN)
    return pc.add(pc.shift_left(pc.shift_right(u, 8), 16), pc.add(pc.bit_wise_and(u, 255), 1))


def _xmin(rowid: Datum) -> Datum:
    return pc.add(pc.bit_wise_and(rowid, (1 << 31) - 1), 3)


def _per_row(value: int) -> Callable[[Datum], Datum]:
    """A constant for every row, NULL where the row id is (the null side of an outer join)."""
    scalar, null = pa.scalar(value, pa.int64()), pa.scalar(None, pa.int64())
    return lambda rowid: pc.if_else(pc.is_valid(rowid), scalar, null)


_SYSTEM_VALUES: dict[str, Callable[[Datum], Datum]] = {
    "ctid": _ctid, "xmin": _xmin, "xmax": _per_row(0), "cmin": _per_row(0), "cmax": _per_row(0),
}


def _system_value(field: Field, name: str, rowid: Value) -> Value:
    """`rowid` itself, or the system column `name` when that is what was resolved to it."""
    system = system_column(field, name)
    if system is None:
        return rowid
    derive = _SYSTEM_VALUES.get(name) or _per_row(field.source[0])  # tableoid
    return Value(lambda f: derive(rowid(f)), system.type)


def literal(c: Compiler, e: exp.Literal) -> Value:
    """A literal: strings stay of type unknown (resolved by context, as in PostgreSQL), numbers take
    the smallest fitting type."""
    if e.is_string:
        text = e.this
        scalar = pa.scalar(text, pa.string())
        start = e.meta.get("start") if e._meta else None
        return Value(lambda f: scalar, UNKNOWN, const=True, text=text,
                     position=None if start is None else start + 1,
                     py=constant_form(text, UNKNOWN))
    text = e.this
    try:
        value = int(text)
        if -(2**31) <= value < 2**31:
            s = pa.scalar(value, pa.int32())
            return Value(lambda f: s, INT4, const=True, py=constant_form(value, INT4))
        if -(2**63) <= value < 2**63:
            s = pa.scalar(value, pa.int64())
            return Value(lambda f: s, INT8, const=True, py=constant_form(value, INT8))
    except ValueError:
        pass
    dec = decimal.Decimal(text)
    if "e" in text.lower():
        dec = decimal.Decimal(format(dec, "f"))
    scale = max(0, -dec.as_tuple().exponent)
    precision = max(len(dec.as_tuple().digits), scale, 1)
    t = SqlType.of("numeric", min(38, precision), min(scale, 37))
    try:
        s = pa.scalar(dec, pa.decimal128(min(38, max(precision, scale + 1)), min(scale, 37)))
    except pa.ArrowInvalid:  # more digits than numeric holds here (38)
        raise NumericValueOutOfRange("numeric field overflow") from None
    return Value(lambda f: s, SqlType("numeric", t.typmod), const=True)


def _null(c: Compiler, e: exp.Null) -> Value:
    s = pa.scalar(None, pa.string())
    return Value(lambda f: s, UNKNOWN, const=True, py=constant_form(None, UNKNOWN))


def _boolean(c: Compiler, e: exp.Boolean) -> Value:
    s = pa.scalar(bool(e.this), pa.bool_())
    return Value(lambda f: s, BOOL, const=True, py=constant_form(bool(e.this), BOOL))


def _parameter(c: Compiler, e: exp.Parameter) -> Value:
    index = param_index(e)
    if isinstance(e.this, exp.Var):
        raise FeatureNotSupported(f"the operator @{e.name} is not supported")
    t = c.env.param_type(index)

    def fn(f: Frame) -> Datum:
        params = f.ctx.params
        if index > len(params) or index < 1:
            raise SqlVecError(f"there is no parameter ${index}", sqlstate="42P02")
        return params[index - 1]

    if t is None:
        # Type decided by context (coerce/infer); until then it is text, as PostgreSQL defaults.
        return Value(fn, UNKNOWN, py=param_form(index, None))
    return Value(fn, t, py=param_form(index, t))


def _paren(c: Compiler, e: exp.Paren) -> Value:
    return c.compile(e.this)


def _raw_string(c: Compiler, e: exp.RawString) -> Value:
    return literal(c, exp.Literal.string(e.name))


HANDLERS.update({
    exp.Column: _column,
    exp.Literal: literal,
    exp.RawString: _raw_string,
    exp.Null: _null,
    exp.Boolean: _boolean,
    exp.Parameter: _parameter,
    exp.Placeholder: _parameter,
    exp.Paren: _paren,
})
