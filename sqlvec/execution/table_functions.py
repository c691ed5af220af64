"""Set-returning functions in FROM: generate_series and unnest."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.execution.expressions import Frame
from sqlvec.execution.values import INT4, INT8, TEXT, as_array, is_scalar
from sqlvec.sql.binder import Field
from sqlvec.types import SqlType


def build_function_scan(builder, node, outer):
    from sqlvec.execution.operators import OneRowOp

    fn = node.function
    c = builder.compiler([], [], outer)
    if isinstance(fn, (exp.ExplodingGenerateSeries, exp.GenerateSeries)):
        start = c.compile(fn.args["start"])
        stop = c.compile(fn.args["end"])
        step = c.compile(fn.args["step"]) if fn.args.get("step") is not None else None
        t = INT8 if INT8 in (start.type, stop.type) else INT4
        if start.type.name in ("timestamp", "timestamptz", "date") or \
                stop.type.name in ("timestamp", "timestamptz", "date"):
            raise FeatureNotSupported("generate_series over timestamps is not supported")
        if start.type.name == "numeric" or stop.type.name == "numeric":
            t = SqlType("numeric")
        start, stop = c.coerce(start, t), c.coerce(stop, t)
        step = c.coerce(step, t) if step is not None else None

        def produce(ctx, outer_frame):
            f = Frame(pa.table({"_": [None]}), ctx, outer_frame)
            a, b = start(f).as_py(), stop(f).as_py()
            s = 1 if step is None else step(f).as_py()
            if a is None or b is None or s is None:
                return [pa.array([], t.to_arrow())]
            if s == 0:
                raise SqlVecError("step size cannot equal zero", sqlstate="22023")
            count = max(0, int((b - a) // s) + 1)
            if count > 100_000_000:
                raise SqlVecError("generate_series result too large", sqlstate="54000")
            values = a + np.arange(count, dtype=np.int64) * s if t != SqlType("numeric") else \
                [a + i * s for i in range(count)]
            return [pa.array(values, t.to_arrow())]
        types = [t]
    elif isinstance(fn, exp.Unnest):
        arrays = [c.compile(a) for a in fn.expressions]
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
                    from sqlvec.execution.values import parse_array_text

                    items = parse_array_text(items, t)
                cols.append(items or [])
            width = max((len(x) for x in cols), default=0)
            return [pa.array(x + [None] * (width - len(x)), t.to_arrow()) for x, t in zip(cols, types)]
    else:
        name = fn.name if isinstance(fn, exp.Anonymous) else type(fn).__name__
        from sqlvec.execution.functions import NAMED

        table_fn = NAMED.get(f"srf:{str(name).lower()}")
        if table_fn is None:
            raise FeatureNotSupported(f"function {str(name).lower()}() in FROM is not supported")
        produce, types = table_fn(c, fn)

    class FunctionScanOp(OneRowOp):
        def run(self, ctx, outer_frame):
            cols = produce(ctx, outer_frame)
            if node.with_ordinality:
                rows = len(cols[0]) if cols else 0
                cols = list(cols) + [pa.array(np.arange(1, rows + 1, dtype=np.int64))]
            from sqlvec.execution.operators import table_of

            return table_of(cols)

    out_types = list(types) + ([INT8] if node.with_ordinality else [])
    width = len(node.fields)
    if width < len(out_types):
        out_types = out_types[:width]
    fields = [Field(f.name, f.table, t) for f, t in zip(node.fields, out_types)]
    if len(fields) < width:
        raise SqlVecError("too many column aliases for the function", sqlstate="42601")
    return FunctionScanOp(fields, out_types, [])


__all__ = ["build_function_scan", "pc"]
