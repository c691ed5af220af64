"""Functions in FROM: the FunctionScan operator.

A set-returning function runs in FROM through its declaration (catalog/functions.py): the FROM
form it names (`series_table` for generate_series, `unnest_table` for unnest with several
arrays), or else its select-list kernel's list for the single (outer) row. Any scalar function
may be called in FROM too (`FROM string_to_array(...) s`): one row, one column."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.catalog import functions as F
from sqlvec.catalog.functions import Kind
from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.context import rows_of
from sqlvec.execution.expressions import Frame
from sqlvec.execution.expressions.calls import no_such_function
from sqlvec.execution.kernels import add_months, table_of
from sqlvec.execution.operators import OneRowOp
from sqlvec.execution.values import INT4, INT8, TEXT, as_array, is_scalar, parse_array_text
from sqlvec.sql.binder import Field
from sqlvec.sql.calls import call_of
from sqlvec.types import SqlType, record_fields

TIMESTAMP_TYPES = ("timestamp", "timestamptz", "date")
SERIES = "Function Scan on generate_series"
# Memory per row of a series while it is built: the values and the step multiples (numeric
# series compute in 256-bit decimals; month steps build Python datetimes first).
SERIES_BYTES = {"integer": 16, "numeric": 80, "timestamp": 16, "months": 80}
MONTH_CHUNK = 10_000


def series_bounds(c, args: list[exp.Expression]):
    """generate_series(start, stop[, step]) over integers, numerics or timestamps (with an
    interval step): (start, stop and step as Values, the element type, kernel(ctx, start,
    stop, step) -> the series as an Arrow array)."""
    if len(args) not in (2, 3):
        raise no_such_function("generate_series", [c.compile(a) for a in args])
    start_e, stop_e = args[0], args[1]
    step_e = args[2] if len(args) > 2 else None
    start, stop = c.compile(start_e), c.compile(stop_e)
    step = c.compile(step_e) if step_e is not None else None
    types = {v.type.name for v in (start, stop) if v.type.name != "unknown"}
    if types & set(TIMESTAMP_TYPES):
        t = SqlType("timestamp") if types <= {"timestamp"} else SqlType("timestamptz")
        if step is None:
            raise SqlVecError("function generate_series(timestamp, timestamp) does not exist",
                              sqlstate="42883")
        bounds = [c.coerce(start, t), c.coerce(stop, t), c.coerce(step, SqlType("interval"))]
        return bounds, t, lambda ctx, a, b, s: _timestamp_series(ctx, a, b, s, t)
    t = SqlType("numeric") if "numeric" in types or (step is not None and
                                                     step.type.name == "numeric") else \
        (INT8 if INT8 in (start.type, stop.type) or (step is not None and step.type == INT8)
         else INT4)
    if t.name == "numeric":
        t = V.common_numeric(V.as_numeric(start.type) if start.type.name != "unknown" else t,
                             V.as_numeric(stop.type) if stop.type.name != "unknown" else t)
    one = c.compile(exp.Literal.number(1))
    bounds = [c.coerce(start, t), c.coerce(stop, t), c.coerce(step if step is not None else one, t)]
    kernel = _numeric_series if t.name == "numeric" else _integer_series
    return bounds, t, lambda ctx, a, b, s: kernel(ctx, a, b, s, t)


def series_table(c, args: list[exp.Expression]):
    """generate_series in FROM: (producer of the column, [its type])."""
    bounds, t, kernel = series_bounds(c, args)
    return _producer(bounds, kernel), [t]


def _producer(bounds, make):
    def produce(ctx, outer_frame):
        f = Frame(pa.table({"_": [None]}), ctx, outer_frame)
        values = [v(f) for v in bounds]
        if any(not x.is_valid for x in values):
            return [pa.array([], bounds[0].type.to_arrow())]
        return [make(ctx, *values)]
    return produce


def _count(ctx, span, step, kind: str) -> int:
    """The number of values, with their memory reserved (53200 past work_mem) before any
    is made."""
    if step == 0:
        raise SqlVecError("step size cannot equal zero", sqlstate="22023")
    count = max(0, int(span // step) + 1)
    width = SERIES_BYTES[kind]
    ctx.memory.reserve_output(f"{SERIES} ({rows_of(count, width)})", count * width)
    return count


def _integer_series(ctx, a, b, s, t) -> pa.Array:
    a, b, s = a.as_py(), b.as_py(), s.as_py()
    return pa.array(a + np.arange(_count(ctx, b - a, s, "integer"), dtype=np.int64) * s,
                    t.to_arrow())


def _numeric_series(ctx, a, b, s, t) -> pa.Array:
    count = _count(ctx, b.as_py() - a.as_py(), s.as_py(), "numeric")
    steps = pa.array(np.arange(count, dtype=np.int64)).cast(pa.decimal256(19, 0))
    wide = [pa.scalar(x.as_py(), pa.decimal256(38, x.type.scale)) for x in (s, a)]
    return V.fit_numeric(pc.add(pc.multiply(steps, wide[0]), wide[1]), t)


def _timestamp_series(ctx, a, b, s, t) -> pa.Array:
    step = s.as_py()
    micros = step.days * 86_400_000_000 + step.nanoseconds // 1000
    if step.months == 0:
        start = pc.cast(pc.cast(a, pa.timestamp("us")), pa.int64()).as_py()
        stop = pc.cast(pc.cast(b, pa.timestamp("us")), pa.int64()).as_py()
        values = start + np.arange(_count(ctx, stop - start, micros, "timestamp"),
                                   dtype=np.int64) * micros
        return pa.array(values, pa.int64()).cast(pa.timestamp("us")).cast(t.to_arrow())
    if step.months < 0 or micros < 0:
        raise FeatureNotSupported("generate_series with a negative month step is not supported")
    out, current, i = [], a.as_py(), 0
    last = b.as_py()
    while current <= last:
        if i % MONTH_CHUNK == 0:  # a Python loop: reserve and check interrupts per chunk
            ctx.check_interrupts()
            ctx.memory.reserve_output(f"{SERIES} ({rows_of(i + MONTH_CHUNK, SERIES_BYTES['months'])})",
                                      MONTH_CHUNK * SERIES_BYTES["months"])
        out.append(current)
        i += 1
        current = add_months(a.as_py(), step.months * i) + dt.timedelta(microseconds=micros * i)
    return pa.array(out, t.to_arrow())


def unnest_table(c, args: list[exp.Expression]):
    """unnest(a[, b, ...]) in FROM: one column per array, as long as the longest."""
    arrays = [c.compile(a) for a in args]
    types = []
    for a in arrays:
        if a.type.is_array:
            types.append(a.type.element)
        elif a.type.name == "vector":
            types.append(SqlType("float4"))
        else:
            types.append(TEXT)

    def produce(ctx, outer_frame):
        f = Frame(pa.table({"_": [None]}), ctx, outer_frame)
        cols = []
        for a, t in zip(arrays, types):
            v = a(f)
            items = v.as_py() if is_scalar(v) else as_array(v, 1)[0].as_py()
            if isinstance(items, str):
                items = parse_array_text(items, t)
            cols.append(items or [])
        width = max((len(x) for x in cols), default=0)
        return [pa.array(x + [None] * (width - len(x)), t.to_arrow()) for x, t in zip(cols, types)]
    return produce, types


def _lists_table(kernel):
    """The FROM form of a set-returning function given by its select-list kernel: its list
    for the one (outer) row, as columns (one per field of a record)."""
    def table_fn(c, args):
        value, elem = kernel(c, args)

        def produce(ctx, outer_frame):
            f = Frame(pa.table({"_": [None]}), ctx, outer_frame)
            x = value(f)
            items = (x.as_py() if is_scalar(x) else as_array(x, 1)[0].as_py()) or []
            fields = record_fields(elem)
            if fields:
                return [pa.array([None if r is None else r[k] for r in items], t.to_arrow())
                        for k, t in fields]
            return [pa.array(items, elem.to_arrow())]
        fields = record_fields(elem)
        return produce, [t for _, t in fields] if fields else [elem]
    return table_fn


def _scalar_table(c, call: exp.Expression):
    """A scalar function in FROM (`FROM string_to_array(...) s`): one row, one column."""
    value = c.compile(call)

    def produce(ctx, outer_frame):
        f = Frame(pa.table({"_": [None]}), ctx, outer_frame)
        return [as_array(value(f), 1)]
    return produce, [value.type]


def build_function_scan(builder, node, outer):
    """The operator of a set-returning function in FROM (generate_series, unnest, ...), its
    arguments compiled against the outer query."""
    fn = node.function
    c = builder.compiler([], [], outer)
    call = call_of(fn)
    if call is None:
        raise FeatureNotSupported(f"{type(fn).__name__} in FROM is not supported")
    name, args = call
    decl = F.lookup(name)
    if decl is None or decl.kind is Kind.SCALAR:
        produce, types = _scalar_table(c, fn)  # an unknown name fails here with 42883
    elif decl.kind is Kind.SET_RETURNING:
        produce, types = (decl.table or _lists_table(decl.kernel))(c, args)
    elif decl.kind is Kind.AGGREGATE:
        raise SqlVecError("aggregate functions are not allowed in functions in FROM",
                          sqlstate="42803")
    else:
        raise SqlVecError("window functions are not allowed in functions in FROM",
                          sqlstate="42P20")

    class FunctionScanOp(OneRowOp):
        def run(self, ctx, outer_frame):
            cols = produce(ctx, outer_frame)
            if node.with_ordinality:
                rows = len(cols[0]) if cols else 0
                cols = list(cols) + [pa.array(np.arange(1, rows + 1, dtype=np.int64))]
            return table_of(cols)

    out_types = list(types) + ([INT8] if node.with_ordinality else [])
    width = len(node.fields)
    if width < len(out_types):
        out_types = out_types[:width]
    fields = [Field(f.name, f.table, t) for f, t in zip(node.fields, out_types)]
    if len(fields) < width:
        raise SqlVecError("too many column aliases for the function", sqlstate="42601")
    return FunctionScanOp(fields, out_types, [])


__all__ = ["build_function_scan", "series_bounds", "series_table", "unnest_table"]
