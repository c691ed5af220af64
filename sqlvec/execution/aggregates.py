"""Aggregate functions over groups, vectorized with NumPy and pyarrow's hash aggregation.

Each aggregate is declared in the function catalog (catalog/functions.py) with a builder that
turns its arguments into an `AggregateSpec`; `compile_aggregate` reads one call (`count(*)`,
`sum(x) FILTER (WHERE ...)`, `string_agg(DISTINCT x, ',' ORDER BY x)`, `avg(embedding)`) and
hands its arguments to the builder;
`run_aggregates` numbers the groups once (dense ids in order of first appearance), then
evaluates each spec over its own selection of rows (FILTER, DISTINCT, ORDER BY) with one
`Table.group_by` on the group id, scattering the results back by id. Result types follow
PostgreSQL: sum of int2/int4 is bigint, sum of bigint is numeric, avg of integers and numerics
is numeric (display scale 16 as PostgreSQL gives for quotients of like magnitude), count is
bigint, variance and stddev of exact types are numeric.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.catalog import functions as F
from sqlvec.catalog.functions import aggregate, sig
from sqlvec.errors import FeatureNotSupported, NumericValueOutOfRange, SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.kernels import (
    AGGREGATE_BYTES_PER_ROW,
    AVG_SCALE,
    GROUP_IDS_BYTES,
    decimal_op,
    first_of_groups,
    group_ids,
    grouping_bytes,
    sort_indices,
    table_of,
)
from sqlvec.execution.values import BOOL, FLOAT8, INT8, TEXT, Value, as_array
from sqlvec.execution.windows import aggregate_window
from sqlvec.float_order import holds_nan
from sqlvec.sql.calls import call_of
from sqlvec.storage.table import mask_of
from sqlvec.types import SqlType, format_float4


@dataclass
class AggregateSpec:
    """One aggregate call as the executor runs it: the kernel by name, its compiled argument, result
    type, FILTER, DISTINCT and ordering."""

    name: str  # count | count_all | sum | avg | min | max | bool_and | bool_or | string_agg |
    # array_agg | stddev | variance | vector_sum | vector_avg
    arg: Value | None
    type: SqlType
    filter: Value | None = None
    separator: Value | None = None
    order: list | None = None  # [(Value, desc, nulls_first)]
    distinct: bool = False
    ddof: int = 1


_SUM_TYPE = {"int2": INT8, "int4": INT8, "float4": SqlType("float4"), "float8": FLOAT8,
             "interval": SqlType("interval")}


def compile_aggregate(c, call: exp.Expression) -> AggregateSpec:
    """One aggregate call (the planner hands over only calls the function catalog declares as
    aggregates), with its FILTER, DISTINCT and ORDER BY."""
    filt = None
    if isinstance(call, exp.Filter):
        filt = c.condition(call.expression.this, "FILTER")
        call = call.this
    name, args = call_of(call)  # type: ignore[misc]
    order = None
    if args and isinstance(args[-1], exp.Order):  # ORDER BY follows the last argument
        o = args[-1]
        order = [(c.compile(x.this), bool(x.args.get("desc")),
                  x.args.get("nulls_first") if x.args.get("nulls_first") is not None
                  else bool(x.args.get("desc"))) for x in o.expressions]
        args = args[:-1] + [o.this]
    distinct = bool(args) and isinstance(args[0], exp.Distinct)
    if distinct:
        args = list(args[0].expressions) + args[1:]
    spec = F.lookup(name).kernel(c, name, args)  # type: ignore[union-attr]
    spec.filter, spec.distinct = filt, distinct and spec.arg is not None
    spec.order = order if spec.order is None else spec.order
    if order is not None and spec.name not in ("string_agg", "array_agg"):
        spec.order = None  # ORDER BY does not change other aggregates' results
    return spec


def _argument(c, name: str, args: list[exp.Expression], count: int = 1,
              unknown: SqlType = TEXT) -> Value:
    """The aggregated argument (an untyped literal as `unknown`), when `count` are given."""
    if len(args) != count or any(isinstance(a, exp.Star) for a in args):
        shown = ", ".join("*" if isinstance(a, exp.Star) else c.compile(a).type.format()
                          for a in args)
        raise SqlVecError(f"function {name}({shown}) does not exist", sqlstate="42883",
                          hint="No function matches the given name and argument types. You "
                               "might need to add explicit type casts.")
    arg = c.compile(args[0])
    return c.coerce(arg, unknown) if arg.type.name == "unknown" else arg


@aggregate("count", "-> int8", "any -> int8", strict=False, window=aggregate_window)
def _count(c, name, args) -> AggregateSpec:
    if not args or len(args) == 1 and isinstance(args[0], exp.Star):
        return AggregateSpec("count_all", None, INT8)
    return AggregateSpec("count", _argument(c, name, args), INT8)


@aggregate("sum", "int2 -> int8", "int4 -> int8", "int8 -> numeric", "float4 -> float4",
           "float8 -> float8", "numeric -> numeric",
           sig("vector -> vector", extension="vector"), sig("halfvec -> halfvec", extension="vector"),
           strict=False, window=aggregate_window)
def _sum(c, name, args) -> AggregateSpec:
    arg = _argument(c, name, args, unknown=V.NUMERIC)
    if arg.type.is_vector:
        return AggregateSpec("vector_sum", arg, arg.type)
    _require_number(name, arg)
    if arg.type.name == "interval":
        raise FeatureNotSupported("sum(interval) is not supported")
    if arg.type.name in ("int8", "numeric"):
        return AggregateSpec("sum", arg, V.numeric_with_scale(V.numeric_scale(arg.type)))
    return AggregateSpec("sum", arg, _SUM_TYPE[arg.type.name])


@aggregate("avg", "int2 -> numeric", "int4 -> numeric", "int8 -> numeric", "float4 -> float8",
           "float8 -> float8", "numeric -> numeric", sig("vector -> vector", extension="vector"),
           sig("halfvec -> halfvec", extension="vector"), strict=False, window=aggregate_window)
def _avg(c, name, args) -> AggregateSpec:
    arg = _argument(c, name, args, unknown=V.NUMERIC)
    if arg.type.is_vector:
        return AggregateSpec("vector_avg", arg, arg.type)
    _require_number(name, arg)
    if arg.type.name in ("float4", "float8"):
        return AggregateSpec("avg", arg, FLOAT8)
    if arg.type.name == "interval":
        raise FeatureNotSupported("avg(interval) is not supported")
    scale = max(AVG_SCALE, V.numeric_scale(arg.type) or 0)
    return AggregateSpec("avg", arg, V.numeric_with_scale(scale))


def _require_number(name: str, arg: Value) -> None:
    if not V.is_numeric(arg.type) and arg.type.name != "interval":
        raise SqlVecError(f"function {name}({arg.type.format()}) does not exist",
                          sqlstate="42883",
                          hint="No function matches the given name and argument types. You "
                               "might need to add explicit type casts.")


_ORDERED_TYPES = ("int2", "int4", "int8", "float4", "float8", "numeric", "oid", "text", "bpchar",
                  "date", "time", "timestamp", "timestamptz")


@aggregate("min max", *(f"{t} -> {t}" for t in _ORDERED_TYPES), strict=False,
           window=aggregate_window)
def _min_max(c, name, args) -> AggregateSpec:
    arg = _argument(c, name, args)
    if arg.type.is_array or arg.type.is_vector or arg.type.name in ("json", "interval"):
        raise FeatureNotSupported(f"{name}({arg.type.format()}) is not supported")
    return AggregateSpec(name, arg, arg.type)


@aggregate("bool_and bool_or", "bool -> bool", strict=False)
def _bool(c, name, args) -> AggregateSpec:
    return AggregateSpec(name, c.coerce(_argument(c, name, args), BOOL), BOOL)


@aggregate("string_agg", "text, text -> text", strict=False)
def _string_agg(c, name, args) -> AggregateSpec:
    if len(args) != 2:
        shown = ", ".join(c.compile(a).type.format() for a in args)
        raise SqlVecError(f"function string_agg({shown}) does not exist", sqlstate="42883")
    arg = _argument(c, name, args[:1])
    separator = c.compile_as(args[1], TEXT)
    if not V.is_string(arg.type):
        raise SqlVecError(f"function string_agg({arg.type.format()}, text) does not exist",
                          sqlstate="42883")
    if arg.type.name == "bpchar":  # char(n) becomes text: without its padding
        arg = c.coerce(arg, TEXT)
    return AggregateSpec("string_agg", arg, TEXT, separator=separator)


@aggregate("array_agg", "anynonarray -> anyarray", strict=False)
def _array_agg(c, name, args) -> AggregateSpec:
    arg = _argument(c, name, args)
    if arg.type.is_array or arg.type.is_vector:
        raise FeatureNotSupported(f"array_agg({arg.type.format()}) is not supported")
    return AggregateSpec("array_agg", arg, arg.type.array_of())


@aggregate("stddev stddev_samp stddev_pop variance var_samp var_pop", "int2 -> numeric",
           "int4 -> numeric", "int8 -> numeric", "float4 -> float8", "float8 -> float8",
           "numeric -> numeric", strict=False)
def _spread(c, name, args) -> AggregateSpec:
    arg = _argument(c, name, args, unknown=V.NUMERIC)
    _require_number(name, arg)
    kind = "variance" if name.startswith("var") else "stddev"
    ddof = 0 if name.endswith("_pop") else 1
    exact = arg.type.name not in ("float4", "float8")
    return AggregateSpec(kind, c.coerce(arg, FLOAT8), V.numeric_with_scale(AVG_SCALE)
                         if exact else FLOAT8, ddof=ddof)


# Running ---------------------------------------------------------------------------------------


def run_aggregates(frame, groups: list[Value], specs: list[AggregateSpec],
                   out_types: list[SqlType]) -> pa.Table:
    """One row per group (one row in all when there is no GROUP BY): keys, then aggregates."""
    n = frame.n
    ctx = frame.ctx
    what = "HashAggregate" if groups else "Aggregate"
    keys = [_groupable(as_array(g(frame), n), g.type) for g in groups]
    if keys:
        ctx.memory.reserve(f"{what} (grouping {n} rows)", grouping_bytes(keys, n, GROUP_IDS_BYTES))
        gids, first = group_ids(keys, n)
        ngroups = first.size
    else:
        ctx.memory.reserve(f"{what} ({n} rows)", n * 8)
        gids, first, ngroups = np.zeros(n, np.int64), None, 1
    cols = [k.take(pa.array(first)) for k in keys]
    ctx.memory.reserve_output(f"{what} ({ngroups} groups)", sum(c.nbytes for c in cols))
    for s in specs:
        ctx.check_interrupts()
        with ctx.memory.temporary(f"{what} ({s.name} over {n} rows)", n * AGGREGATE_BYTES_PER_ROW):
            col = _aggregate(s, frame, gids, ngroups)
        ctx.memory.reserve_output(f"{what} ({s.name} of {ngroups} groups)", col.nbytes)
        cols.append(col)
    cols = [_to_type(col, t) for col, t in zip(cols, out_types)]
    return table_of(cols) if cols else table_of([], ngroups)


def _groupable(col, t: SqlType) -> pa.Array:
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
        raise FeatureNotSupported(f"grouping by values of type {t.format()} is not supported")
    return col


def _aggregate(spec: AggregateSpec, frame, gids: np.ndarray, ngroups: int):
    """One aggregate: the rows it sees (FILTER, DISTINCT, ORDER BY), then its kernel."""
    n = frame.n
    arg = None
    if spec.arg is not None:
        arg = as_array(spec.arg(frame), n)
        arg = arg.combine_chunks() if isinstance(arg, pa.ChunkedArray) else arg
    keep = np.ones(n, bool) if spec.filter is None else mask_of(spec.filter(frame), n)
    if arg is not None and spec.name not in ("array_agg",):
        keep &= arg.is_valid().to_numpy(zero_copy_only=False)  # aggregates skip NULLs
    if spec.distinct and arg is not None:
        keep &= _first_occurrences(gids, arg, keep)
    rows = np.arange(n)
    if spec.order:
        keys = [(v(frame), v.type, desc, nulls_first) for v, desc, nulls_first in spec.order]
        rows = sort_indices(keys, n, frame.ctx).to_numpy()
    rows = rows[keep[rows]]
    return _KERNELS[spec.name](spec, frame, arg, gids, rows, ngroups)


def _first_occurrences(gids: np.ndarray, arg: pa.Array, keep: np.ndarray) -> np.ndarray:
    """Rows that are the first of their (group, value) pair among the kept rows."""
    kept = np.flatnonzero(keep)
    out = np.zeros(gids.size, bool)
    if kept.size:
        firsts = first_of_groups([pa.array(gids[kept]), arg.take(pa.array(kept))], kept.size)
        out[kept[firsts]] = True
    return out


def _by_group(gids: np.ndarray, rows: np.ndarray, values: pa.Array, ngroups: int,
              function: str, options=None) -> pa.Array:
    """pyarrow's hash aggregate `function` of values[rows] per group id, indexed by group id
    (groups without rows get NULL)."""
    table = pa.table({"g": pa.array(gids[rows]), "x": values.take(pa.array(rows))})
    result = table.group_by("g", use_threads=False).aggregate([("x", function, options)])
    pos = np.full(ngroups, -1, np.int64)
    pos[result.column("g").to_numpy()] = np.arange(result.num_rows)
    column = result.column(1).combine_chunks()
    return column.take(pa.array(pos, mask=pos < 0))


def _count(spec, frame, arg, gids, rows, ngroups):
    return pa.array(np.bincount(gids[rows], minlength=ngroups).astype(np.int64))


def _hash(function: str, options=None):
    def kernel(spec, frame, arg, gids, rows, ngroups):
        return _by_group(gids, rows, arg, ngroups, function, options)
    return kernel


def _max_kernel(spec, frame, arg, gids, rows, ngroups):
    """max: NaN for a group holding one, the greatest float in PostgreSQL (Arrow's maximum
    passes over NaN)."""
    out = _by_group(gids, rows, arg, ngroups, "max", _MIN_COUNT)
    if not holds_nan(arg):
        return out
    had_nan = _by_group(gids, rows, pc.cast(pc.is_nan(arg), pa.int8()), ngroups, "max")
    return pc.if_else(pc.fill_null(pc.equal(had_nan, 1), False), pa.scalar(math.nan, out.type),
                      out)


def _sum_kernel(spec, frame, arg, gids, rows, ngroups):
    if spec.type.name == "numeric":
        arg = V.to_decimal(arg, spec.arg.type)
    out = _by_group(gids, rows, arg, ngroups, "sum", pc.ScalarAggregateOptions(min_count=1))
    return _float_checked(out, spec, arg, gids, rows, ngroups)


def _avg_kernel(spec, frame, arg, gids, rows, ngroups):
    if spec.type.name != "numeric":
        out = _by_group(gids, rows, pc.cast(arg, pa.float64()), ngroups, "mean")
        return _float_checked(out, spec, arg, gids, rows, ngroups)
    total = _by_group(gids, rows, V.to_decimal(arg, spec.arg.type), ngroups, "sum",
                      pc.ScalarAggregateOptions(min_count=1))
    count = pa.array(np.bincount(gids[rows], minlength=ngroups).astype(np.int64))
    count = pc.if_else(pc.equal(count, 0), pa.scalar(None, pa.int64()), count)
    return decimal_op("divide", spec.type)(total, V.to_decimal(count, INT8))


def _float_checked(out, spec, arg, gids, rows, ngroups):
    """A float sum or average, unless a group's total overflowed though none of its values
    was infinite: 22003, as PostgreSQL's float addition checks each step."""
    if spec.arg.type.name not in ("float4", "float8"):
        return out
    if spec.type.name == "float4" and out.type == pa.float64():
        out = pc.cast(out, pa.float32())  # a total beyond real's range is infinite here
    if not V.anywhere(pc.is_inf(out)):
        return out
    had_inf = _by_group(gids, rows, pc.cast(pc.is_inf(arg), pa.int8()), ngroups, "max")
    return V.check_float(out, (pc.if_else(pc.equal(had_inf, 1), float("inf"), 0.0),))


def _spread_kernel(spec, frame, arg, gids, rows, ngroups):
    out = _by_group(gids, rows, arg, ngroups, spec.name, pc.VarianceOptions(ddof=spec.ddof))
    if spec.type.name == "numeric":
        return V.fit_numeric(V.to_decimal(out, FLOAT8), spec.type)
    return out


def _string_agg_kernel(spec, frame, arg, gids, rows, ngroups):
    lists = _by_group(gids, rows, arg, ngroups, "list")
    separator = spec.separator(frame)
    if not isinstance(separator, pa.Scalar):
        raise FeatureNotSupported("string_agg with a separator that varies by row is not supported")
    return pc.binary_join(lists, separator)


def _vector_kernel(spec, frame, arg, gids, rows, ngroups):
    matrix, _ = V.to_numpy_vectors(arg, frame.n)
    if matrix.dtype == np.float16:
        return _halfvec_kernel(spec, matrix, gids, rows, ngroups)
    d = matrix.shape[1] if matrix.ndim == 2 else 0
    sums = np.zeros((ngroups, d), np.float64)
    counts = np.bincount(gids[rows], minlength=ngroups)
    np.add.at(sums, gids[rows], matrix[rows].astype(np.float64))
    if spec.name == "vector_avg":
        with np.errstate(invalid="ignore", divide="ignore"):
            sums = sums / counts[:, None]
    return V.vectors_to_arrow(sums.astype(np.float32), counts > 0)


def _halfvec_kernel(spec, matrix, gids, rows, ngroups):
    """pgvector's halfvec aggregates: sum adds the rows in half precision one after another
    (its sum is halfvec_add; `np.add.at` on float16 rounds after each row, in row order, as
    that does), avg sums in double and rounds the mean to half once."""
    d = matrix.shape[1] if matrix.ndim == 2 else 0
    counts = np.bincount(gids[rows], minlength=ngroups)
    if spec.name == "vector_sum":
        sums = np.zeros((ngroups, d), np.float16)
        with np.errstate(over="ignore"):
            np.add.at(sums, gids[rows], matrix[rows])
        if np.isinf(sums[counts > 0]).any():
            raise NumericValueOutOfRange("value out of range: overflow")
        return V.vectors_to_arrow(sums, counts > 0, np.float16)
    sums = np.zeros((ngroups, d), np.float64)
    np.add.at(sums, gids[rows], matrix[rows].astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        means = (sums / counts[:, None]).astype(np.float32)
        half = means.astype(np.float16)
    bad = np.isinf(half) & ~np.isinf(means) & (counts > 0)[:, None]
    if bad.any():
        raise SqlVecError(f'"{format_float4(float(means[bad][0]))}" is out of range for type '
                          "halfvec", sqlstate="22003")
    return V.vectors_to_arrow(half, counts > 0, np.float16)


_MIN_COUNT = pc.ScalarAggregateOptions(min_count=1)

_KERNELS: dict[str, Callable] = {
    "count_all": _count, "count": _count,
    "sum": _sum_kernel, "avg": _avg_kernel,
    "min": _hash("min", _MIN_COUNT), "max": _max_kernel,
    "bool_and": _hash("all", _MIN_COUNT), "bool_or": _hash("any", _MIN_COUNT),
    "string_agg": _string_agg_kernel, "array_agg": _hash("list"),
    "stddev": _spread_kernel, "variance": _spread_kernel,
    "vector_sum": _vector_kernel, "vector_avg": _vector_kernel,
}


def _to_type(col, t: SqlType):
    arrow = t.to_arrow()
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if col.type == arrow:
        return col
    if t.name == "numeric" and pa.types.is_decimal(col.type):
        return V.fit_numeric(col, t)
    return col.cast(arrow)
