"""Aggregate functions over groups, on pyarrow's hash aggregation (Table.group_by).

`compile_aggregate` turns one call (`count(*)`, `sum(x) FILTER (WHERE ...)`,
`string_agg(x, ',' ORDER BY y)`, `avg(embedding)`) into an `AggregateSpec`; `run_aggregates`
evaluates every spec for every group in one group_by. Result types follow PostgreSQL: sum of
int2/int4 is bigint, sum of bigint is numeric, avg of integers is numeric, count is bigint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.values import BOOL, FLOAT8, INT8, NUMERIC, TEXT, Value, as_array
from sqlvec.types import SqlType


@dataclass
class AggregateSpec:
    name: str  # count | count_all | count_distinct | sum | avg | min | max | bool_and |
    # bool_or | string_agg | array_agg | stddev | variance | vector_sum | vector_avg
    arg: Value | None
    type: SqlType
    filter: Value | None = None
    separator: Value | None = None
    order: list | None = None  # [(Value, desc, nulls_first)]
    distinct: bool = False
    ddof: int = 1


_SUM_TYPE = {"int2": INT8, "int4": INT8, "int8": NUMERIC, "float4": SqlType("float4"),
             "float8": FLOAT8, "numeric": NUMERIC, "interval": SqlType("interval")}


def compile_aggregate(c, call: exp.Expression) -> AggregateSpec:
    filt = None
    if isinstance(call, exp.Filter):
        filt = c.compile_as(call.expression.this, BOOL)
        call = call.this
    order = None
    distinct = False
    arg_expr = call.this
    if isinstance(arg_expr, exp.Order):
        order_spec = arg_expr
        arg_expr = arg_expr.this
        order = [(c.compile(o.this), bool(o.args.get("desc")),
                  o.args.get("nulls_first") if o.args.get("nulls_first") is not None
                  else bool(o.args.get("desc"))) for o in order_spec.expressions]
    if isinstance(arg_expr, exp.Distinct):
        distinct = True
        arg_expr = arg_expr.expressions[0] if arg_expr.expressions else None
    if isinstance(call, exp.Count):
        if arg_expr is None or isinstance(arg_expr, exp.Star):
            return AggregateSpec("count_all", None, INT8, filt)
        arg = c.compile(arg_expr)
        return AggregateSpec("count_distinct" if distinct else "count", arg, INT8, filt,
                             distinct=distinct)
    arg = c.compile(arg_expr) if arg_expr is not None else None
    if arg is not None and arg.type.name == "unknown":
        arg = c.coerce(arg, TEXT if not isinstance(call, (exp.Sum, exp.Avg)) else NUMERIC)
    if isinstance(call, (exp.Sum, exp.Avg)):
        if arg.type.name == "vector":
            return AggregateSpec("vector_sum" if isinstance(call, exp.Sum) else "vector_avg",
                                 arg, arg.type, filt)
        if not V.is_numeric(arg.type) and arg.type.name != "interval":
            kind = "sum" if isinstance(call, exp.Sum) else "avg"
            raise SqlVecError(f"function {kind}({arg.type.format()}) does not exist",
                              sqlstate="42883")
        if isinstance(call, exp.Sum):
            return AggregateSpec("sum", arg, _SUM_TYPE.get(arg.type.name, NUMERIC), filt,
                                 distinct=distinct)
        t = FLOAT8 if arg.type.name in ("float4", "float8") else NUMERIC
        return AggregateSpec("avg", arg, t, filt, distinct=distinct)
    if isinstance(call, (exp.Min, exp.Max)):
        return AggregateSpec("min" if isinstance(call, exp.Min) else "max", arg, arg.type, filt)
    if isinstance(call, exp.LogicalAnd):
        return AggregateSpec("bool_and", c.coerce(arg, BOOL), BOOL, filt)
    if isinstance(call, exp.LogicalOr):
        return AggregateSpec("bool_or", c.coerce(arg, BOOL), BOOL, filt)
    if isinstance(call, exp.GroupConcat):
        sep = call.args.get("separator")
        return AggregateSpec("string_agg", c.coerce(arg, TEXT) if arg.type != TEXT else arg, TEXT,
                             filt, separator=c.compile_as(sep, TEXT) if sep is not None else None,
                             order=order, distinct=distinct)
    if isinstance(call, exp.ArrayAgg):
        return AggregateSpec("array_agg", arg, arg.type.array_of() if not arg.type.is_array
                             else arg.type, filt, order=order, distinct=distinct)
    if isinstance(call, (exp.Stddev, exp.StddevSamp, exp.StddevPop, exp.Variance,
                         exp.VariancePop)):
        name = "stddev" if isinstance(call, (exp.Stddev, exp.StddevSamp, exp.StddevPop)) else "variance"
        ddof = 0 if isinstance(call, (exp.StddevPop, exp.VariancePop)) else 1
        return AggregateSpec(name, c.coerce(arg, FLOAT8) if arg.type.name != "float8" else arg,
                             FLOAT8 if arg.type.name in ("float4", "float8") else NUMERIC, filt,
                             ddof=ddof)
    raise FeatureNotSupported(f"aggregate function {call.sql_name().lower()} is not supported")


_ARROW_AGG = {"count": "count", "count_all": "count_all", "count_distinct": "count_distinct",
              "sum": "sum", "avg": "mean", "min": "min", "max": "max", "bool_and": "all",
              "bool_or": "any", "string_agg": "list", "array_agg": "list", "stddev": "stddev",
              "variance": "variance"}


def run_aggregates(frame, groups: list[Value], specs: list[AggregateSpec],
                   out_types: list[SqlType]) -> pa.Table:
    from sqlvec.execution.operators import sort_indices, table_of

    table = frame.table
    n = table.num_rows
    if any(s.order for s in specs) and n > 1:
        spec = next(s for s in specs if s.order)
        order = sort_indices([(v(frame), v.type, desc, nf) for v, desc, nf in spec.order], n)
        table = table.take(order)
        from sqlvec.execution.expressions import Frame

        frame = Frame(table, frame.ctx, frame.outer)
    columns: dict[str, pa.Array] = {}
    for i, g in enumerate(groups):
        col = as_array(g(frame), n)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
            raise FeatureNotSupported(f"grouping by values of type {g.type.format()} is not supported")
        columns[f"g{i}"] = col
    aggs = []
    vector_specs = []
    for j, s in enumerate(specs):
        if s.name in ("vector_sum", "vector_avg"):
            vector_specs.append(j)
            continue
        if s.name == "count_all":
            if s.filter is not None:
                columns[f"a{j}"] = pa.array(V_mask(s.filter(frame), n), pa.bool_())
                columns[f"a{j}"] = pc.if_else(columns[f"a{j}"], True, pa.scalar(None, pa.bool_()))
                aggs.append((f"a{j}", "count", pc.CountOptions(mode="only_valid")))
            else:
                aggs.append(([], "count_all", None))
            continue
        arg = as_array(s.arg(frame), n)
        if isinstance(arg, pa.ChunkedArray):
            arg = arg.combine_chunks()
        if s.filter is not None:
            keep = V_mask(s.filter(frame), n)
            arg = pc.if_else(pa.array(keep), arg, pa.scalar(None, arg.type))
        if s.name == "avg" and pa.types.is_decimal(arg.type):
            arg = arg.cast(pa.float64()) if False else arg
        if s.name in ("avg", "sum") and pa.types.is_integer(arg.type):
            arg = arg.cast(pa.int64())
        if s.distinct and s.name not in ("count_distinct",):
            raise FeatureNotSupported(f"{s.name}(DISTINCT ...) is not supported")
        columns[f"a{j}"] = arg
        options = None
        if s.name in ("stddev", "variance"):
            options = pc.VarianceOptions(ddof=s.ddof)
        elif s.name in ("sum", "avg", "min", "max", "bool_and", "bool_or"):
            options = pc.ScalarAggregateOptions(skip_nulls=True, min_count=1)
        elif s.name == "count_distinct":
            options = pc.CountOptions(mode="only_valid")
        elif s.name == "count":
            options = pc.CountOptions(mode="only_valid")
        aggs.append((f"a{j}", _ARROW_AGG[s.name], options))
    if not columns:
        columns["_"] = pa.nulls(n, pa.bool_())
    base = pa.table(columns)
    keys = [f"g{i}" for i in range(len(groups))]
    if keys:
        base = base.append_column("_pos", pa.array(np.arange(n, dtype=np.int64)))
        result = base.group_by(keys, use_threads=False).aggregate(aggs + [("_pos", "min")])
        order = np.argsort(result.column("_pos_min").to_numpy(), kind="stable")
        result = result.take(pa.array(order))
        group_cols = [result.column(k) for k in keys]
    else:
        result = _scalar_aggregate(base, aggs, n)
        group_cols = []
    agg_cols = []
    col_index = len(keys)
    for j, s in enumerate(specs):
        if j in vector_specs:
            agg_cols.append(None)
            continue
        col = result.column(col_index)
        col_index += 1
        agg_cols.append(_finish(col, s, frame, result.num_rows))
    if vector_specs:
        gids = _group_ids(base, keys, n) if keys else np.zeros(n, np.int64)
        ngroups = result.num_rows if keys else 1
        for j in vector_specs:
            agg_cols[j] = _vector_aggregate(specs[j], frame, gids, ngroups, n)
    cols = group_cols + agg_cols
    cols = [_to_type(c, t) for c, t in zip(cols, out_types)]
    return table_of(cols) if cols else table_of([], result.num_rows)


def V_mask(result, n):
    from sqlvec.storage.table import mask_of

    return mask_of(result, n)


def _scalar_aggregate(base: pa.Table, aggs, n: int) -> pa.Table:
    """Aggregates without GROUP BY: exactly one row, even over no input rows."""
    out = {}
    for i, (col, fn, options) in enumerate(aggs):
        if fn == "count_all":
            out[f"c{i}"] = pa.array([n], pa.int64())
            continue
        arr = base.column(col)
        if fn == "list":
            out[f"c{i}"] = pa.array([arr.to_pylist()] if n else [None], pa.list_(arr.type))
            continue
        if fn == "count_distinct":
            value = pc.count_distinct(arr, mode="only_valid")
        elif fn == "mean":
            value = pc.mean(arr, skip_nulls=True, min_count=1)
        elif fn in ("stddev", "variance"):
            value = getattr(pc, fn)(arr, ddof=options.ddof)
        else:
            value = getattr(pc, fn)(arr, options=options) if options is not None else getattr(pc, fn)(arr)
        out[f"c{i}"] = pa.array([value.as_py()], value.type)
    if not out:
        return pa.table({"_": [None]})
    return pa.table(out)


def _finish(col, s: AggregateSpec, frame, rows: int):
    if s.name == "string_agg":
        sep = ","
        if s.separator is not None:
            sep_val = s.separator(frame)
            sep = sep_val.as_py() if isinstance(sep_val, pa.Scalar) else sep_val[0].as_py()
        lists = col.to_pylist()
        return pa.array([None if (items is None or all(x is None for x in items))
                         else sep.join(x for x in items if x is not None) for items in lists], pa.string())
    if s.name == "array_agg":
        lists = col.to_pylist()
        return pa.array([None if not items else items for items in lists], s.type.to_arrow())
    if s.name == "avg" and s.type.name == "numeric":
        return _numeric_avg(col)
    return col


def _numeric_avg(col):
    import decimal

    out = []
    for v in col.to_pylist():
        if v is None:
            out.append(None)
            continue
        d = decimal.Decimal(str(v))
        out.append(d.quantize(decimal.Decimal(1).scaleb(-16)) if d != d.to_integral_value()
                   else d.quantize(decimal.Decimal(1).scaleb(-16)))
    return pa.array(out, pa.decimal128(38, 16))


def _to_type(col, t: SqlType):
    if col is None:
        return col
    arrow = t.to_arrow()
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if col.type == arrow:
        return col
    try:
        return col.cast(arrow)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if t.name == "numeric":
            import decimal

            return pa.array([None if v is None else decimal.Decimal(str(v))
                             for v in col.to_pylist()], arrow)
        return col


def _group_ids(base: pa.Table, keys: list[str], n: int) -> np.ndarray:
    """Dense group number per row, numbered in order of first appearance."""
    t = base.select(keys).append_column("_row", pa.array(np.arange(n, dtype=np.int64)))
    grouped = t.group_by(keys, use_threads=False).aggregate([("_row", "list"), ("_row", "min")])
    order = np.argsort(grouped.column("_row_min").to_numpy(), kind="stable")
    ids = np.empty(n, np.int64)
    rows = grouped.column("_row_list").to_pylist()
    for gid, idx in enumerate(order):
        ids[rows[idx]] = gid
    return ids


def _vector_aggregate(spec: AggregateSpec, frame, gids: np.ndarray, ngroups: int, n: int):
    value = spec.arg(frame)
    matrix, valid = V.to_numpy_vectors(value, n)
    keep = np.ones(n, bool) if valid is None else valid.copy()
    if spec.filter is not None:
        keep &= V_mask(spec.filter(frame), n)
    d = matrix.shape[1] if matrix.ndim == 2 else 0
    sums = np.zeros((max(ngroups, 1), d), np.float64)
    counts = np.zeros(max(ngroups, 1), np.int64)
    np.add.at(sums, gids[keep], matrix[keep].astype(np.float64))
    np.add.at(counts, gids[keep], 1)
    if spec.name == "vector_avg":
        with np.errstate(invalid="ignore", divide="ignore"):
            sums = sums / counts[:, None]
    out_valid = counts > 0
    return V.vectors_to_arrow(sums.astype(np.float32), out_valid)[:ngroups]
