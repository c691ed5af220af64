"""Arithmetic operators (`+ - * / % ^`, unary minus) over integers, floats and numerics, with
PostgreSQL's result types, scales and errors. Operands of dates, times and intervals go to
`temporal`, vectors to `vector`."""

from __future__ import annotations

import decimal
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.errors import NumericValueOutOfRange, SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.expressions.core import (
    HANDLERS,
    NO_OPERATOR_HINT,
    SYMBOLS,
    Compiler,
    constant,
    operands,
)
from sqlvec.execution.expressions.scalars import arithmetic_form, negation_form
from sqlvec.execution.expressions.temporal import temporal_arith
from sqlvec.execution.expressions.vector import vector_arith
from sqlvec.execution.kernels import (
    MIN_DIV_SCALE,
    check_divisor,
    check_int_range,
    decimal_op,
    float_power,
    int_checked,
    range_message,
)
from sqlvec.execution.values import FLOAT8, INT4, NUMERIC, Datum, Value
from sqlvec.types import SqlType

_ARITH = {exp.Add: "add", exp.Sub: "subtract", exp.Mul: "multiply", exp.Div: "divide",
          exp.Mod: "mod", exp.Pow: "power"}


def _arith(c: Compiler, e: exp.Binary) -> Value:
    a, b = operands(c, e)
    op = _ARITH[type(e)]
    # Temporal arithmetic: date/timestamp ± interval, date - date, date + int.
    if a.type.name in V.TEMPORAL or b.type.name in V.TEMPORAL:
        return temporal_arith(c, op, a, b)
    if a.type.is_vector or b.type.is_vector:
        return vector_arith(c, op, a, b)
    if op == "add" and (V.is_string(a.type) and a.type.name != "unknown"):
        raise SqlVecError(f"operator does not exist: {a.type.format()} + {b.type.format()}",
                          sqlstate="42883",
                          hint=NO_OPERATOR_HINT)
    a, b, t = c.unify(a, b)
    if not V.is_numeric(t):
        raise SqlVecError(f"operator does not exist: {a.type.format()} {SYMBOLS[op]} "
                          f"{b.type.format()}", sqlstate="42883",
                          hint=NO_OPERATOR_HINT)
    if t.name == "numeric":
        result = numeric_result_type(op, a.type, b.type)
        if op == "divide" and a.const and b.const:
            result = _constant_quotient_type(a, b)
        return _bind2(decimal_op(op, result), a, b, result)
    if op == "power":
        t = FLOAT8
        a, b = c.coerce(a, t), c.coerce(b, t)
    return _bind2(_numeric_op(op, t), a, b, t, arithmetic_form(op, t, a.py, b.py))


def _bind2(fn: Callable[[Datum, Datum], Datum], a: Value, b: Value, t: SqlType,
           py: Callable | None = None) -> Value:
    return Value(lambda f: fn(a(f), b(f)), t, a.const and b.const, py=py)


def _numeric_op(op: str, t: SqlType) -> Callable[[Datum, Datum], Datum]:
    """The kernel of `x op y` for operands already of type `t` (integers or floats)."""
    integer = t.name in V.INT_DIGITS

    def run(x: Datum, y: Datum) -> Datum:
        if integer and op in ("divide", "mod"):
            check_divisor(y)
        try:
            if op == "mod":
                # PostgreSQL's % truncates toward zero (the result has the dividend's sign);
                # x % -1 is 0 even for the smallest integer, whose quotient overflows.
                if integer:
                    y = pc.if_else(pc.equal(y, -1), pa.scalar(1, y.type), y)
                q = pc.divide_checked(x, y) if integer else pc.trunc(pc.divide(x, y))
                return pc.subtract(x, pc.multiply(q, y))
            if op == "power":
                return float_power(x, y)
            if op == "divide" and not integer:
                check_divisor(y)
            fn = getattr(pc, op + "_checked") if integer else getattr(pc, op)
            out = fn(x, y)
            if integer:
                return check_int_range(out, t)
            if op == "multiply":
                return V.check_float(out, (x, y), (x, y))
            if op == "divide":
                return V.check_float(out, (x,), (x,), (y,))
            return V.check_float(out, (x, y))
        except pa.ArrowInvalid as exc:
            if "overflow" in str(exc).lower():
                raise NumericValueOutOfRange(range_message(t)) from None
            raise

    return run


def numeric_result_type(op: str, a: SqlType, b: SqlType) -> SqlType:
    """PostgreSQL's display scale of `a op b` (numeric operands, or integers as scale 0)."""
    sa, sb = V.numeric_scale(a), V.numeric_scale(b)
    if op in ("divide", "power"):
        return V.numeric_with_scale(max(MIN_DIV_SCALE, sa or 0, sb or 0))
    if sa is None or sb is None:
        return NUMERIC
    return V.numeric_with_scale(sa + sb if op == "multiply" else max(sa, sb))


def _constant_quotient_type(a: Value, b: Value) -> SqlType:
    """The exact display scale PostgreSQL gives a quotient of two known numbers
    (select_div_scale: 16 significant digits, estimated from the leading base-10000 digits)."""
    x, y = (constant(v, None).as_py() for v in (a, b))
    scales = [V.numeric_scale(a.type) or 0, V.numeric_scale(b.type) or 0]
    if x is None or y is None or y == 0:
        return V.numeric_with_scale(max(MIN_DIV_SCALE, *scales))

    def leading(v: decimal.Decimal) -> tuple[int, int]:
        if v == 0:
            return 0, 0
        weight = abs(v).adjusted() // 4
        return weight, int(abs(v).scaleb(-4 * weight))

    (wx, fx), (wy, fy) = leading(decimal.Decimal(x)), leading(decimal.Decimal(y))
    qweight = wx - wy - (1 if fx <= fy else 0)
    return V.numeric_with_scale(max(MIN_DIV_SCALE - qweight * 4, *scales, 0))


def _negate_interval(x: Datum) -> Datum:
    """`-interval`: each field negated (Arrow has no kernel for month_day_nano)."""
    def neg(v):
        return None if v is None else pa.MonthDayNano([-v.months, -v.days, -v.nanoseconds])

    if isinstance(x, pa.Scalar):
        return pa.scalar(neg(x.as_py()), pa.month_day_nano_interval())
    return pa.array([neg(v) for v in x.to_pylist()], pa.month_day_nano_interval())


_NEGATABLE = frozenset({"int2", "int4", "int8", "numeric", "float4", "float8", "interval"})


def _neg(c: Compiler, e: exp.Neg) -> Value:
    a = c.compile(e.this)
    if a.type.name == "unknown":
        a = c.coerce(a, NUMERIC if a.text and "." in a.text else INT4)
    if a.type.name not in _NEGATABLE:
        raise SqlVecError(f"operator does not exist: - {a.type.format()}", sqlstate="42883",
                          hint="No operator matches the given name and argument type. You "
                               "might need to add an explicit type cast.")
    t = a.type
    if t.name == "interval":
        return Value(lambda f: _negate_interval(a(f)), t, a.const)
    if t.name in V.INT_DIGITS:
        return Value(lambda f: int_checked(pc.negate_checked, a(f), t), t, a.const,
                     py=negation_form(t, a.py))
    return Value(lambda f: pc.negate(a(f)), t, a.const, py=negation_form(t, a.py))


HANDLERS.update({
    exp.Add: _arith, exp.Sub: _arith, exp.Mul: _arith, exp.Div: _arith, exp.Mod: _arith,
    exp.Pow: _arith,
    exp.Neg: _neg,
})
