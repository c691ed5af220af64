"""Dates, timestamps and intervals: their arithmetic (`date + int`, `timestamp - timestamp`,
`interval * number`, ...) and `INTERVAL '...'` constants."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.errors import DivisionByZero, FeatureNotSupported, SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.expressions.core import HANDLERS, NO_OPERATOR_HINT, SYMBOLS, Compiler
from sqlvec.execution.kernels import add_months
from sqlvec.execution.values import FLOAT8, INT4, Datum, Value, as_array, is_scalar
from sqlvec.types import SqlType


def temporal_arith(c: Compiler, op: str, a: Value, b: Value) -> Value:
    """`+` and `-` over dates, times, timestamps and intervals, with PostgreSQL's result types; an
    unknown operand takes the type the other side implies."""
    ta, tb = a.type, b.type
    if ta.name == "unknown":
        a = c.coerce(a, SqlType("interval") if tb.name in V.TEMPORAL - {"interval"} and op == "subtract"
                     else tb)
        ta = a.type
    if tb.name == "unknown":
        b = c.coerce(b, SqlType("interval") if ta.name != "date" or op != "subtract" else ta)
        tb = b.type
    if ta.name == "date" and V.is_numeric(tb) and op in ("add", "subtract"):
        def fn(f):
            days = pc.cast(b(f), pa.int32())
            x = pc.cast(a(f), pa.int32())
            out = pc.add(x, days) if op == "add" else pc.subtract(x, days)
            return pc.cast(out, pa.date32())
        return Value(fn, SqlType("date"), a.const and b.const)
    if ta.name == "date" and tb.name == "date" and op == "subtract":
        return Value(lambda f: pc.subtract(pc.cast(a(f), pa.int32()), pc.cast(b(f), pa.int32())),
                     INT4, a.const and b.const)
    if tb.name == "interval" and ta.name in ("date", "timestamp", "timestamptz"):
        result = SqlType("timestamp") if ta.name == "date" else ta

        def fn(f):
            base = a(f)
            if ta.name == "date":
                base = pc.cast(base, pa.timestamp("us"))
            return _add_interval(base, b(f), negate=op == "subtract", t=result)
        return Value(fn, result, a.const and b.const)
    if ta.name in ("timestamp", "timestamptz") and tb.name in ("timestamp", "timestamptz", "date") \
            and op == "subtract":
        def fn(f):
            x, y = a(f), b(f)
            if tb.name == "date":
                y = pc.cast(y, pa.timestamp("us"))
            micros = pc.subtract(pc.cast(x, pa.int64()), pc.cast(pc.cast(y, x.type), pa.int64()))
            return _micros_to_interval(micros)
        return Value(fn, SqlType("interval"), a.const and b.const)
    if op in ("multiply", "divide") and "interval" in (ta.name, tb.name) and (
            V.is_numeric(ta) or V.is_numeric(tb)):
        interval, factor = (a, b) if ta.name == "interval" else (b, a)
        if op == "divide" and interval is not a:
            raise SqlVecError(f"operator does not exist: {ta.format()} / {tb.format()}",
                              sqlstate="42883",
                          hint=NO_OPERATOR_HINT)
        factor = c.coerce(factor, FLOAT8)
        return Value(lambda f: _scale_interval(interval(f), factor(f), op == "divide"),
                     SqlType("interval"), a.const and b.const)
    if ta.name == "interval" and tb.name == "interval" and op in ("add", "subtract"):
        def fn(f):
            return _interval_pairwise(a(f), b(f), op)
        return Value(fn, SqlType("interval"), a.const and b.const)
    raise SqlVecError(f"operator does not exist: {ta.format()} {SYMBOLS[op]} {tb.format()}",
                      sqlstate="42883",
                          hint=NO_OPERATOR_HINT)


def _scale_interval(interval: Datum, factor: Datum, divide: bool) -> Datum:
    """interval * number (or / number): months and days scale, fractions cascade down to
    days (30 per month) and microseconds, as PostgreSQL's interval_mul."""
    def scale(iv, k):
        if iv is None or k is None:
            return None
        if divide:
            if k == 0:
                raise DivisionByZero("division by zero")
            k = 1 / k
        months = iv.months * k
        whole_months = int(months)
        days = iv.days * k + (months - whole_months) * 30
        whole_days = int(days)
        micros = iv.nanoseconds / 1000 * k + (days - whole_days) * 86_400_000_000
        return pa.MonthDayNano([whole_months, whole_days, int(round(micros)) * 1000])

    if is_scalar(interval) and is_scalar(factor):
        return pa.scalar(scale(interval.as_py(), factor.as_py()), pa.month_day_nano_interval())
    n = len(interval) if not is_scalar(interval) else len(factor)
    ivs = as_array(interval, n).to_pylist()
    ks = as_array(factor, n).to_pylist()
    return pa.array([scale(iv, k) for iv, k in zip(ivs, ks)], pa.month_day_nano_interval())


def _add_interval(base: Datum, interval: Datum, negate: bool, t: SqlType) -> Datum:
    iv = interval.as_py() if is_scalar(interval) else None
    if iv is None and is_scalar(interval):
        return pa.scalar(None, t.to_arrow())
    if iv is None:
        raise FeatureNotSupported("adding a column of intervals is not supported")
    sign = -1 if negate else 1
    months, days, nanos = iv.months * sign, iv.days * sign, iv.nanoseconds * sign
    out = base
    if months:
        py = [None if v is None else add_months(v, months)
              for v in ([base.as_py()] if is_scalar(base) else base.to_pylist())]
        out = pa.scalar(py[0], base.type) if is_scalar(base) else pa.array(py, base.type)
    micros = days * 86_400_000_000 + nanos // 1000
    if micros:
        dur = pa.scalar(micros, pa.duration("us"))
        out = pc.add(out, dur)
    return out


def _micros_to_interval(micros: Datum) -> Datum:
    def conv(m):
        if m is None:
            return None
        days, rest = divmod(abs(m), 86_400_000_000)
        sign = -1 if m < 0 else 1
        return pa.MonthDayNano([0, sign * days, sign * rest * 1000])
    if is_scalar(micros):
        return pa.scalar(conv(micros.as_py()), pa.month_day_nano_interval())
    return pa.array([conv(m) for m in micros.to_pylist()], pa.month_day_nano_interval())


def _interval_pairwise(x: Datum, y: Datum, op: str) -> Datum:
    sign = 1 if op == "add" else -1
    xs = [x.as_py()] if is_scalar(x) else x.to_pylist()
    ys = [y.as_py()] if is_scalar(y) else y.to_pylist()
    n = max(len(xs), len(ys))
    xs, ys = (xs * n if len(xs) == 1 else xs), (ys * n if len(ys) == 1 else ys)
    out = [None if a is None or b is None else pa.MonthDayNano(
        [a.months + sign * b.months, a.days + sign * b.days, a.nanoseconds + sign * b.nanoseconds])
        for a, b in zip(xs, ys)]
    arr = pa.array(out, pa.month_day_nano_interval())
    return arr[0] if is_scalar(x) and is_scalar(y) else arr


def _interval(c: Compiler, e: exp.Interval) -> Value:
    """`INTERVAL '1 day'` (sqlglot splits `'2 hours'` into a number and a unit)."""
    unit = e.args.get("unit")
    inner = c.compile(e.this)
    if inner.type.name != "unknown" or inner.text is None:
        raise FeatureNotSupported("INTERVAL with a non-literal value is not supported")
    text = inner.text + (f" {unit.name}" if unit is not None else "")
    scalar = pa.scalar(V.parse_interval(text), pa.month_day_nano_interval())
    return Value(lambda f: scalar, SqlType("interval"), const=True)


HANDLERS.update({
    exp.Interval: _interval,
})
