"""Window functions, vectorized with NumPy: ranking (row_number, rank, dense_rank, percent_rank,
cume_dist, ntile), offsets (lag, lead, first_value, last_value, nth_value) and aggregates (sum,
count, avg, min, max) OVER (PARTITION BY ... ORDER BY ... [frame]).

Rows are sorted once per window by (partition keys, order keys); partition and peer-group
boundaries come from comparing neighbours. Every row's frame is an inclusive range [lo, hi] of
sorted positions, computed for all rows at once: ROWS frames by offset, RANGE frames by peer
group (with ORDER BY and no frame clause, RANGE UNBOUNDED PRECEDING .. CURRENT ROW). sum, count
and avg over a frame are differences of prefix sums; min and max query a sparse table. RANGE
with an offset, GROUPS frames and EXCLUDE are refused with 0A000.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.catalog import functions as F
from sqlvec.catalog.functions import Kind, window
from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.expressions import constant
from sqlvec.execution.expressions.calls import compile_call, no_such_function
from sqlvec.execution.kernels import AVG_SCALE, decimal_op, sort_indices
from sqlvec.execution.values import FLOAT8, INT4, INT8, Value, as_array
from sqlvec.float_order import pg_compare
from sqlvec.sql.calls import call_of
from sqlvec.types import SqlType

UNBOUNDED = None  # a frame bound without an offset


@dataclass(frozen=True)
class Frame:
    """Frame bounds: `rows` (True) or RANGE; offsets in rows, negative = PRECEDING,
    None = UNBOUNDED on that side, 0 = CURRENT ROW."""

    rows: bool
    start: int | None
    end: int | None


WHOLE_PARTITION = Frame(False, UNBOUNDED, UNBOUNDED)
TO_CURRENT_PEERS = Frame(False, UNBOUNDED, 0)


@dataclass
class WindowSpec:
    """One window call as the executor runs it: function, arguments, result type, partitioning,
    ordering and frame."""

    name: str
    args: list[Value]
    type: SqlType
    partition: list[Value]
    order: list[tuple[Value, bool, bool]]
    frame: Frame = WHOLE_PARTITION
    offset: int = 1  # lag/lead/nth_value/ntile argument


# Compiling ----------------------------------------------------------------------------------------


def compile_window(c, w: exp.Window) -> WindowSpec:
    """Compile a window call: its function checked against the catalog, its PARTITION BY, ORDER BY
    and frame compiled over the input rows."""
    fn = w.this
    partition = [c.compile(p) for p in w.args.get("partition_by") or []]
    order = []
    if w.args.get("order") is not None:
        for o in w.args["order"].expressions:
            desc = bool(o.args.get("desc"))
            nf = o.args.get("nulls_first")
            order.append((c.compile(o.this), desc, nf if nf is not None else desc))
    frame = _frame(c, w.args.get("spec"), bool(order))
    call = call_of(fn)
    if call is None:
        raise FeatureNotSupported(f"window function {type(fn).__name__} is not supported")
    name, args = call
    decl = F.lookup(name)
    if decl is None:
        compile_call(c, fn)  # 42883 naming the argument types
    if decl.kind is Kind.WINDOW:
        build = decl.kernel
    elif decl.kind is Kind.AGGREGATE:
        if decl.window is None:
            raise FeatureNotSupported(f"window function {name} is not supported")
        build = decl.window
    else:
        raise SqlVecError(f"OVER specified, but {name} is not a window function nor an "
                          "aggregate function", sqlstate="42809")
    kernel, values, t, offset = build(c, name, args)
    return WindowSpec(kernel, values, t, partition, order, frame, offset)


def _frame(c, spec: exp.WindowSpec | None, ordered: bool) -> Frame:
    if spec is None or spec.args.get("kind") is None:
        return TO_CURRENT_PEERS if ordered else WHOLE_PARTITION
    kind = str(spec.args["kind"]).upper()
    if kind == "GROUPS" or spec.args.get("exclude"):
        raise FeatureNotSupported(f"window frames with {'GROUPS' if kind == 'GROUPS' else 'EXCLUDE'}"
                                  " are not supported")
    start = _bound(c, spec.args.get("start"), spec.args.get("start_side"))
    end = _bound(c, spec.args.get("end"), spec.args.get("end_side")) \
        if spec.args.get("end") is not None else 0
    if kind == "RANGE" and any(b not in (UNBOUNDED, 0) for b in (start, end)):
        raise FeatureNotSupported("RANGE frames with an offset are not supported")
    if start is UNBOUNDED and str(spec.args.get("start_side")).upper() == "FOLLOWING":
        raise SqlVecError("frame start cannot be UNBOUNDED FOLLOWING", sqlstate="42P20")
    return Frame(kind == "ROWS", start, end)


def _bound(c, value, side) -> int | None:
    text = value.sql() if isinstance(value, exp.Expression) else str(value)
    if text.upper() == "UNBOUNDED":
        return UNBOUNDED
    if text.upper() == "CURRENT ROW":
        return 0
    expr = value if isinstance(value, exp.Expression) else exp.Literal.number(text)
    offset = constant(c.compile_as(expr, INT8), None).as_py()
    if offset is None or offset < 0:
        raise SqlVecError("frame starting offset must not be negative", sqlstate="22013")
    return -offset if str(side).upper() == "PRECEDING" else offset


def _no_arguments(c, name: str, args: list[exp.Expression]) -> None:
    if args:
        raise no_such_function(name, [c.compile(a) for a in args])


@window("row_number rank dense_rank", "-> int8", strict=False)
def _ranking(c, name: str, args: list[exp.Expression]):
    _no_arguments(c, name, args)
    return name, [], INT8, 1


@window("percent_rank cume_dist", "-> float8", strict=False)
def _relative_rank(c, name: str, args: list[exp.Expression]):
    _no_arguments(c, name, args)
    return name, [], FLOAT8, 1


@window("ntile", "int4 -> int4")
def _ntile_call(c, name: str, args: list[exp.Expression]):
    _arity(c, name, args, 1, 1)
    return "ntile", [], INT4, _constant_int(c, args[0], "ntile")


@window("lag lead", "anyelement -> anyelement", "anyelement, int4 -> anyelement",
        "anycompatible, int4, anycompatible -> anycompatible")
def _offset_fn(c, name: str, args: list[exp.Expression]):
    _arity(c, name, args, 1, 3)
    arg = c.compile(args[0])
    offset = 1 if len(args) < 2 else _constant_int(c, args[1], name)
    values = [arg]
    if len(args) > 2:
        values.append(c.coerce(c.compile(args[2]), arg.type))
    return name, values, arg.type, offset


@window("first_value last_value", "anyelement -> anyelement")
@window("nth_value", "anyelement, int4 -> anyelement")
def _value_fn(c, name: str, args: list[exp.Expression]):
    _arity(c, name, args, 2 if name == "nth_value" else 1, 2 if name == "nth_value" else 1)
    arg = c.compile(args[0])
    offset = _constant_int(c, args[1], name) if name == "nth_value" else 1
    if offset < 1:
        raise SqlVecError("argument of nth_value must be greater than zero", sqlstate="22016")
    return name, [arg], arg.type, offset


def _arity(c, name: str, args: list[exp.Expression], least: int, most: int) -> None:
    if not least <= len(args) <= most:
        raise no_such_function(name, [c.compile(a) for a in args])


def _constant_int(c, e: exp.Expression, name: str) -> int:
    value = c.compile_as(e, INT8)
    if not value.const:
        raise FeatureNotSupported(f"{name}() with a non-constant argument is not supported")
    return constant(value, None).as_py()


def aggregate_window(c, name: str, args: list[exp.Expression]):
    """An aggregate under OVER (sum, count, avg, min, max): the window form its declaration
    names (aggregates.py)."""
    if name == "count" and (not args or len(args) == 1 and isinstance(args[0], exp.Star)):
        return "count", [], INT8, 1
    if args and isinstance(args[0], exp.Distinct):
        raise FeatureNotSupported("DISTINCT is not implemented for window functions")
    _arity(c, name, args, 1, 1)
    arg = c.compile(args[0])
    if name == "count":
        return "count", [arg], INT8, 1
    if arg.type.name == "unknown":
        arg = c.coerce(arg, V.NUMERIC)
    if name in ("sum", "avg") and not V.is_numeric(arg.type):
        raise SqlVecError(f"function {name}({arg.type.format()}) does not exist",
                          sqlstate="42883")
    if name == "sum":
        t = {"int2": INT8, "int4": INT8, "float4": SqlType("float4"), "float8": FLOAT8}.get(
            arg.type.name) or V.numeric_with_scale(V.numeric_scale(arg.type))
    elif name == "avg":
        t = FLOAT8 if arg.type.name in ("float4", "float8") else \
            V.numeric_with_scale(max(AVG_SCALE, V.numeric_scale(arg.type) or 0))
    else:
        t = arg.type
    return name, [arg], t, 1


# Running ------------------------------------------------------------------------------------------


@dataclass
class Layout:
    """One window's rows in sorted order: partition and peer structure, per sorted position."""

    order: np.ndarray  # sorted position -> input row
    part_first: np.ndarray  # first sorted position of the row's partition
    part_last: np.ndarray
    peer_first: np.ndarray  # first sorted position of the row's peer group
    peer_last: np.ndarray

    @property
    def n(self) -> int:
        return self.order.size

    def bounds(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive frame [lo, hi] per sorted position (lo > hi: empty)."""
        pos = np.arange(self.n)
        if frame.rows:
            lo = self.part_first if frame.start is UNBOUNDED else \
                np.maximum(pos + frame.start, self.part_first)
            hi = self.part_last if frame.end is UNBOUNDED else \
                np.minimum(pos + frame.end, self.part_last)
        else:
            lo = self.part_first if frame.start is UNBOUNDED else self.peer_first
            hi = self.part_last if frame.end is UNBOUNDED else self.peer_last
        return lo, hi


# Working memory of one window per row: its layout (order, partition and peer bounds, frame
# bounds) and the sorted copy of its argument.
WINDOW_BYTES_PER_ROW = 96


def run_windows(frame, specs: list[WindowSpec]) -> list[pa.Array]:
    """One result column per window, in input row order (each window's memory is reserved
    before it is computed, and the statement can be interrupted between windows)."""
    n = frame.n
    ctx = frame.ctx
    out = []
    for spec in specs:
        ctx.check_interrupts()
        with ctx.memory.temporary(f"WindowAgg ({spec.name} over {n} rows)",
                                  n * WINDOW_BYTES_PER_ROW):
            layout = _layout(frame, spec, n)
            sorted_values = _COMPUTE[spec.name](spec, frame, layout)
            inverse = np.empty(n, np.int64)  # sorted position of each input row
            inverse[layout.order] = np.arange(n)
            result = sorted_values.take(pa.array(inverse))
        result = _cast(result, spec.type)
        ctx.memory.reserve_output(f"WindowAgg ({spec.name} of {n} rows)", result.nbytes,
                                  replaces_inputs=False)
        out.append(result)
    return out


def _layout(frame, spec: WindowSpec, n: int) -> Layout:
    parts = [as_array(p(frame), n) for p in spec.partition]
    orders = [as_array(v(frame), n) for v, _, _ in spec.order]
    keys = [(p, v.type, False, False) for p, v in zip(parts, spec.partition)]
    keys += [(o, v.type, desc, nf) for o, (v, desc, nf) in zip(orders, spec.order)]
    order = sort_indices(keys, n, frame.ctx).to_numpy() if keys and n > 1 else np.arange(n)
    part_start = _starts(parts, order, n)
    peer_start = _starts(parts + orders, order, n)
    part_first, part_last = _group_extent(part_start)
    peer_first, peer_last = _group_extent(peer_start)
    return Layout(order, part_first, part_last, peer_first, peer_last)


def _starts(columns: list, order: np.ndarray, n: int) -> np.ndarray:
    """True at sorted positions where a new group of equal `columns` begins."""
    start = np.zeros(n, bool)
    if n:
        start[0] = True
    for col in columns:
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
            raise FeatureNotSupported("windows over vector or array keys are not supported")
        values = col.take(pa.array(order))
        if n > 1:
            prev, cur = values.slice(0, n - 1), values.slice(1)
            differ = pc.fill_null(pg_compare("not_equal", prev, cur), True)
            both_null = pc.and_(pc.is_null(prev), pc.is_null(cur))
            start[1:] |= pc.and_(differ, pc.invert(both_null)).to_numpy(zero_copy_only=False)
    return start


def _group_extent(start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) sorted position of each position's group."""
    n = start.size
    if not n:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    gid = np.cumsum(start) - 1
    firsts = np.flatnonzero(start)
    lasts = np.append(firsts[1:] - 1, n - 1)
    return firsts[gid], lasts[gid]


def _sorted_arg(spec: WindowSpec, frame, layout: Layout, i: int = 0) -> pa.Array:
    value = as_array(spec.args[i](frame), layout.n)
    value = value.combine_chunks() if isinstance(value, pa.ChunkedArray) else value
    return value.take(pa.array(layout.order))


# Ranking

def _row_number(spec, frame, layout: Layout) -> pa.Array:
    return pa.array(np.arange(layout.n) - layout.part_first + 1)


def _rank(spec, frame, layout: Layout) -> pa.Array:
    return pa.array(layout.peer_first - layout.part_first + 1)


def _dense_rank(spec, frame, layout: Layout) -> pa.Array:
    new_peer = np.zeros(layout.n, np.int64)
    new_peer[layout.peer_first] = 1
    running = np.cumsum(new_peer)
    return pa.array(running - running[layout.part_first] + 1)


def _percent_rank(spec, frame, layout: Layout) -> pa.Array:
    size = layout.part_last - layout.part_first + 1
    rank = layout.peer_first - layout.part_first
    with np.errstate(invalid="ignore", divide="ignore"):
        return pa.array(np.where(size > 1, rank / np.maximum(size - 1, 1), 0.0))


def _cume_dist(spec, frame, layout: Layout) -> pa.Array:
    size = layout.part_last - layout.part_first + 1
    return pa.array((layout.peer_last - layout.part_first + 1) / size)


def _ntile(spec, frame, layout: Layout) -> pa.Array:
    buckets = spec.offset
    if buckets is None or buckets <= 0:
        raise SqlVecError("argument of ntile must be greater than zero", sqlstate="22014")
    size = layout.part_last - layout.part_first + 1
    pos = np.arange(layout.n) - layout.part_first
    base, extra = size // buckets, size % buckets
    # The first `extra` buckets hold base + 1 rows.
    big = extra * (base + 1)
    bucket = np.where(pos < big, pos // np.maximum(base + 1, 1),
                      extra + (pos - big) // np.maximum(base, 1))
    return pa.array((bucket + 1).astype(np.int32))


# Offsets

def _lag_lead(spec, frame, layout: Layout) -> pa.Array:
    values = _sorted_arg(spec, frame, layout)
    shift = spec.offset if spec.name == "lag" else -spec.offset
    src = np.arange(layout.n) - shift
    ok = (src >= layout.part_first) & (src <= layout.part_last)
    taken = values.take(pa.array(np.where(ok, src, 0), mask=~ok))
    if len(spec.args) > 1:
        default = as_array(spec.args[1](frame), layout.n)
        default = default.take(pa.array(layout.order)) if layout.n else default
        taken = pc.if_else(pa.array(ok), taken, _cast(default, spec.type))
    return taken


def _frame_value(spec, frame, layout: Layout) -> pa.Array:
    values = _sorted_arg(spec, frame, layout)
    lo, hi = layout.bounds(spec.frame)
    pick = {"first_value": lo, "last_value": hi, "nth_value": lo + spec.offset - 1}[spec.name]
    ok = (pick <= hi) & (lo <= hi)
    return values.take(pa.array(np.where(ok, pick, 0), mask=~ok))


# Aggregates over frames

def _frame_aggregate(spec, frame, layout: Layout) -> pa.Array:
    lo, hi = layout.bounds(spec.frame)
    empty = lo > hi
    if not spec.args:  # count(*)
        return pa.array(np.where(empty, 0, hi - lo + 1))
    values = _sorted_arg(spec, frame, layout)
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    counts = _range_sums(valid.astype(np.int64), lo, hi, empty)
    if spec.name == "count":
        return pa.array(counts)
    none = empty | (counts == 0)
    if spec.name in ("min", "max"):
        return _range_extreme(values, valid, lo, hi, none, spec.name)
    total = _frame_sum(values, valid, lo, hi, empty, spec.args[0].type)
    total = pc.if_else(pa.array(none), pa.scalar(None, total.type), total)
    if spec.name == "sum":
        return total
    if spec.type.name == "numeric":
        count = V.to_decimal(pa.array(np.maximum(counts, 1)), INT8)
        source = INT8 if pa.types.is_integer(total.type) else spec.args[0].type
        return decimal_op("divide", spec.type)(V.to_decimal(total, source), count)
    return pc.divide(pc.cast(total, pa.float64()), pa.array(np.maximum(counts, 1).astype(float)))


def _range_sums(data: np.ndarray, lo: np.ndarray, hi: np.ndarray, empty: np.ndarray) -> np.ndarray:
    prefix = np.concatenate([[0], np.cumsum(data)])
    return np.where(empty, 0, prefix[np.minimum(hi + 1, data.size)] - prefix[np.minimum(lo, data.size)])


def _frame_sum(values: pa.Array, valid: np.ndarray, lo, hi, empty, t: SqlType) -> pa.Array:
    """Exact frame sums: integers and decimals as scaled int64, floats as float64."""
    if t.name in ("float4", "float8"):
        data = np.where(valid, values.to_numpy(zero_copy_only=False), 0.0).astype(np.float64)
        return pa.array(_range_sums(data, lo, hi, empty))
    if t.name in V.INT_DIGITS:
        data = pc.fill_null(values, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        return pa.array(_range_sums(data, lo, hi, empty))
    unscaled, scale = V.decimal_unscaled(pc.fill_null(values, pa.scalar(0, values.type)))
    return V.decimal_from_unscaled(_range_sums(unscaled, lo, hi, empty), scale)


def _range_extreme(values: pa.Array, valid: np.ndarray, lo, hi, none, name: str) -> pa.Array:
    """min/max over [lo, hi] per row with a sparse table of positions (O(n log n))."""
    n = len(values)
    if not n:
        return values
    rank = _ranks(values, valid)  # order-preserving integer codes; invalid rows worst
    worst = np.iinfo(np.int64).max if name == "min" else -1
    codes = np.where(valid, rank, worst)
    table = [np.arange(n)]
    span = 1
    while span * 2 <= n:
        prev = table[-1]
        left, right = prev[:n - span], prev[span:span + n - span]
        pick = np.where(_better(codes[right], codes[left], name), right, left)
        table.append(np.concatenate([pick, prev[n - span:]]))
        span *= 2
    length = np.maximum(hi - lo + 1, 1)
    level = np.floor(np.log2(length)).astype(np.int64)
    lo_c = np.clip(lo, 0, n - 1)
    out = np.empty(n, np.int64)
    for k in np.unique(level):
        rows = np.flatnonzero(level == k)
        a = table[k][lo_c[rows]]
        b = table[k][np.clip(hi[rows] - (1 << k) + 1, 0, n - 1)]
        out[rows] = np.where(_better(codes[b], codes[a], name), b, a)
    return values.take(pa.array(out, mask=none))


def _better(x: np.ndarray, y: np.ndarray, name: str) -> np.ndarray:
    return x < y if name == "min" else x > y


def _ranks(values: pa.Array, valid: np.ndarray) -> np.ndarray:
    """Dense order codes of values (ties equal), computed with Arrow's sort."""
    order = pc.sort_indices(values).to_numpy()  # NULLs last; their codes are unused
    sorted_values = values.take(pa.array(order))
    codes = np.zeros(len(values), np.int64)
    if len(values) > 1:
        step = pc.fill_null(pg_compare("not_equal", sorted_values.slice(0, len(values) - 1),
                                            sorted_values.slice(1)), True)
        codes[order] = np.concatenate([[0], np.cumsum(step.to_numpy(zero_copy_only=False))])
    return codes


_COMPUTE: dict[str, Callable] = {
    "row_number": _row_number, "rank": _rank, "dense_rank": _dense_rank,
    "percent_rank": _percent_rank, "cume_dist": _cume_dist, "ntile": _ntile,
    "lag": _lag_lead, "lead": _lag_lead,
    "first_value": _frame_value, "last_value": _frame_value, "nth_value": _frame_value,
    "count": _frame_aggregate, "sum": _frame_aggregate, "avg": _frame_aggregate,
    "min": _frame_aggregate, "max": _frame_aggregate,
}


def _cast(values: pa.Array, t: SqlType) -> pa.Array:
    arrow = t.to_arrow()
    if values.type == arrow:
        return values
    if t.name == "numeric" and pa.types.is_decimal(values.type):
        return V.fit_numeric(values, t)
    if t.name == "numeric":
        return V.fit_numeric(V.to_decimal(values, SqlType("int8") if pa.types.is_integer(
            values.type) else FLOAT8), t)
    return values.cast(arrow)
