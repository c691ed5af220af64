"""Window functions: row_number, rank, dense_rank, lag/lead, first/last_value, and aggregates
(sum, count, avg, min, max) OVER (PARTITION BY ... ORDER BY ...), vectorized with NumPy.

Rows are sorted once by (partition keys, order keys); partition and peer-group boundaries come
from comparing neighbours. With ORDER BY the default frame is RANGE UNBOUNDED PRECEDING to
CURRENT ROW, so peers (equal order keys) share the running value; without ORDER BY the frame is
the whole partition. Explicit frames other than those defaults are refused with 0A000.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.errors import FeatureNotSupported
from sqlvec.execution.values import FLOAT8, INT8, NUMERIC, Value, as_array
from sqlvec.types import SqlType


@dataclass
class WindowSpec:
    name: str
    args: list[Value]
    type: SqlType
    partition: list[Value]
    order: list[tuple[Value, bool, bool]]


def compile_window(c, w: exp.Window) -> WindowSpec:
    if w.args.get("alias") is not None and not w.args.get("partition_by") and not w.args.get("order"):
        raise FeatureNotSupported("named windows (WINDOW w AS ...) are not supported")
    spec = w.args.get("spec")
    if spec is not None and (spec.args.get("start") not in (None, "UNBOUNDED") or
                             spec.args.get("end") not in (None, "CURRENT ROW", "UNBOUNDED")):
        raise FeatureNotSupported("window frame clauses are not supported")
    fn = w.this
    partition = [c.compile(p) for p in w.args.get("partition_by") or []]
    order_node = w.args.get("order")
    order = []
    if order_node is not None:
        for o in order_node.expressions:
            desc = bool(o.args.get("desc"))
            nf = o.args.get("nulls_first")
            order.append((c.compile(o.this), desc, nf if nf is not None else desc))
    if isinstance(fn, exp.RowNumber):
        return WindowSpec("row_number", [], INT8, partition, order)
    if isinstance(fn, exp.Rank):
        return WindowSpec("rank", [], INT8, partition, order)
    if isinstance(fn, exp.DenseRank):
        return WindowSpec("dense_rank", [], INT8, partition, order)
    if isinstance(fn, (exp.Lag, exp.Lead)):
        arg = c.compile(fn.this)
        offset = c.compile(fn.args["offset"]) if fn.args.get("offset") is not None else None
        default = c.compile(fn.args["default"]) if fn.args.get("default") is not None else None
        args = [arg] + ([offset] if offset else [None]) + ([c.coerce(default, arg.type)] if default else [])
        return WindowSpec("lag" if isinstance(fn, exp.Lag) else "lead", args, arg.type, partition, order)
    if isinstance(fn, (exp.FirstValue, exp.LastValue)):
        arg = c.compile(fn.this)
        return WindowSpec("first_value" if isinstance(fn, exp.FirstValue) else "last_value",
                          [arg], arg.type, partition, order)
    if isinstance(fn, exp.Count):
        arg = None if fn.this is None or isinstance(fn.this, exp.Star) else c.compile(fn.this)
        return WindowSpec("count", [arg] if arg else [], INT8, partition, order)
    if isinstance(fn, (exp.Sum, exp.Avg, exp.Min, exp.Max)):
        arg = c.compile(fn.this)
        name = type(fn).__name__.lower()
        if name == "sum":
            t = INT8 if arg.type.name in ("int2", "int4") else (NUMERIC if arg.type.name in ("int8", "numeric") else FLOAT8)
        elif name == "avg":
            t = FLOAT8 if arg.type.name in ("float4", "float8") else NUMERIC
        else:
            t = arg.type
        return WindowSpec(name, [arg], t, partition, order)
    raise FeatureNotSupported(f"window function {fn.sql_name().lower()} is not supported")


def run_windows(frame, specs: list[WindowSpec]) -> list[pa.Array]:
    from sqlvec.execution.operators import sort_indices

    n = frame.n
    out = []
    for spec in specs:
        keys = [(p(frame), p.type, False, False) for p in spec.partition]
        keys += [(v(frame), v.type, desc, nf) for v, desc, nf in spec.order]
        order = sort_indices(keys, n).to_numpy() if keys and n > 1 else np.arange(n)
        part_start = _boundaries([as_array(p(frame), n) for p in spec.partition], order, n)
        peer_start = _boundaries([as_array(p(frame), n) for p in spec.partition] +
                                 [as_array(v(frame), n) for v, _, _ in spec.order], order, n)
        sorted_result = _compute(spec, frame, order, part_start, peer_start, n)
        result = np.empty(n, dtype=object) if sorted_result.dtype == object else np.empty(n, sorted_result.dtype)
        result[order] = sorted_result
        out.append(_to_arrow(result, spec.type))
    return out


def _boundaries(columns: list, order: np.ndarray, n: int) -> np.ndarray:
    """Bool array over sorted positions: True where a new group starts."""
    start = np.zeros(n, bool)
    if n:
        start[0] = True
    for col in columns:
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        values = col.take(pa.array(order))
        if n > 1:
            prev, cur = values.slice(0, n - 1), values.slice(1)
            diff = pc.fill_null(pc.not_equal(prev, cur), True)
            both_null = pc.and_(pc.is_null(prev), pc.is_null(cur))
            diff = pc.and_(diff, pc.invert(both_null))
            start[1:] |= diff.to_numpy(zero_copy_only=False)
    return start


def _group_index(start: np.ndarray) -> np.ndarray:
    return np.cumsum(start) - 1


def _compute(spec: WindowSpec, frame, order, part_start, peer_start, n) -> np.ndarray:
    part_id = _group_index(part_start)
    first_pos = np.flatnonzero(part_start)
    pos_in_part = np.arange(n) - first_pos[part_id] if n else np.empty(0, np.int64)
    if spec.name == "row_number":
        return pos_in_part + 1
    peer_first = np.maximum.accumulate(np.where(peer_start, np.arange(n), 0)) if n else np.empty(0, int)
    if spec.name == "rank":
        return peer_first - first_pos[part_id] + 1
    if spec.name == "dense_rank":
        peers = np.cumsum(peer_start & ~part_start)
        return peers - peers[first_pos[part_id]] + 1
    values = spec.args[0](frame) if spec.args and spec.args[0] is not None else None
    if spec.name in ("lag", "lead"):
        arr = as_array(values, n)
        vals = np.array(arr.take(pa.array(order)).to_pylist(), dtype=object)
        offset = spec.args[1](frame).as_py() if len(spec.args) > 1 and spec.args[1] is not None else 1
        default = spec.args[2](frame).as_py() if len(spec.args) > 2 else None
        shift = offset if spec.name == "lag" else -offset
        src = np.arange(n) - shift
        ok = (src >= 0) & (src < n)
        ok[ok] &= part_id[src[ok]] == part_id[ok]
        result = np.full(n, default, dtype=object)
        result[ok] = vals[src[ok]]
        return result
    if spec.name in ("first_value", "last_value"):
        arr = as_array(values, n)
        vals = np.array(arr.take(pa.array(order)).to_pylist(), dtype=object)
        if spec.name == "first_value":
            return vals[first_pos[part_id]]
        last_peer = _last_of_group(peer_start if spec.order else part_start, n)
        return vals[last_peer]
    # Aggregates over the frame.
    if spec.name == "count" and not spec.args:
        data = np.ones(n)
        valid = np.ones(n, bool)
    else:
        arr = as_array(values, n)
        arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        sorted_arr = arr.take(pa.array(order))
        valid = sorted_arr.is_valid().to_numpy(zero_copy_only=False)
        data = pc.fill_null(sorted_arr.cast(pa.float64()), 0).to_numpy(zero_copy_only=False) \
            if spec.name != "count" else valid.astype(float)
    end = _last_of_group(peer_start if spec.order else part_start, n)
    if spec.name in ("sum", "count", "avg"):
        cs = np.cumsum(np.where(valid, data, 0.0))
        cc = np.cumsum(valid.astype(np.int64))
        base_s = np.where(first_pos[part_id] > 0, cs[first_pos[part_id] - 1], 0.0)
        base_c = np.where(first_pos[part_id] > 0, cc[first_pos[part_id] - 1], 0)
        s = cs[end] - base_s
        cnt = cc[end] - base_c
        if spec.name == "count":
            return cnt
        if spec.name == "sum":
            return np.where(cnt > 0, s, np.nan).astype(object) if True else s
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan).astype(object)
    # min / max: running over the frame, per partition.
    result = np.empty(n, dtype=object)
    fn = np.fmin if spec.name == "min" else np.fmax
    masked = np.where(valid, data, np.nan)
    for p in range(part_id.max() + 1 if n else 0):
        idx = np.flatnonzero(part_id == p)
        running = fn.accumulate(masked[idx])
        local_end = end[idx] - idx[0]
        result[idx] = running[local_end]
    return result


def _last_of_group(start: np.ndarray, n: int) -> np.ndarray:
    if not n:
        return np.empty(0, np.int64)
    gid = _group_index(start)
    last = np.empty(gid[-1] + 1, np.int64)
    last[gid] = np.arange(n)
    return last[gid]


def _to_arrow(values: np.ndarray, t: SqlType) -> pa.Array:
    arrow = t.to_arrow()
    if values.dtype == object:
        items = [None if (v is None or (isinstance(v, float) and np.isnan(v))) else v for v in values]
        if t.name in ("int2", "int4", "int8"):
            items = [None if v is None else int(v) for v in items]
        if t.name == "numeric":
            import decimal

            items = [None if v is None else decimal.Decimal(str(v)) for v in items]
        return pa.array(items, arrow)
    try:
        return pa.array(values).cast(arrow)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array(values.tolist(), arrow)
