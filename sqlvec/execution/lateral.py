"""LATERAL joins: the right side run once per distinct value of the left columns it reads.

The planner's `LateralJoin` node becomes a `LateralJoinOp`. Its right plan is compiled with the
left side as its outer scope (the machinery of correlated subqueries: a reference to a left
column reads the outer frame's one row), so each run is the right plan as a query of its own —
`ORDER BY v <-> q.v LIMIT k` stays a vector top-k with q.v as its query vector. Left rows that
agree on every column the right side reads share one run; a right side that reads none runs
once. Pairs come out in left row order, then the right side's order, as PostgreSQL's nested
loop gives them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from sqlvec.execution.context import rows_of, table_bytes_per_row
from sqlvec.execution.expressions import Frame
from sqlvec.execution.kernels import empty_width, group_ids, table_of, vector_key
from sqlvec.execution.operators import OneRowOp
from sqlvec.plan import nodes as n
from sqlvec.sql.binder import Field
from sqlvec.storage.table import mask_of


def build_lateral_join(builder, node: n.LateralJoin, outer) -> LateralJoinOp:
    """The operator of a LateralJoin: the left side built as usual, the right side built with
    the left side's compiler as its outer scope (recording which left columns it reads)."""
    left = builder.build(node.left, outer)
    left_scope = builder.compiler(left.fields, left.types, outer)
    env = builder.env
    start, correlated = len(env.outer_refs), env.correlated
    right = builder.build(node.right, left_scope)
    refs = env.outer_refs[start:]
    # References to the left side are not outer references of the statement.
    env.correlated = correlated or any(target is not left_scope for target, _ in refs)
    types = list(left.types) + list(right.types)
    fields = [Field(f.name, f.table, t, f.source, f.hidden) for f, t in zip(node.fields, types)]
    op = LateralJoinOp(fields, types, [left, right])
    op.kind = node.kind
    op.reads = sorted({index for target, index in refs if target is left_scope})
    op.condition = None
    if node.condition is not None:
        op.condition = builder.compiler(fields, types, outer).condition(node.condition,
                                                                        "JOIN/ON")
    return op


class LateralJoinOp(OneRowOp):
    """Runs the right side per distinct left value it reads and pairs each left row with the
    rows of its run; LEFT keeps left rows without any, the right side NULL."""

    kind: str
    reads: list[int]  # positions of the left columns the right side reads
    condition: object | None

    def run(self, ctx, outer):
        left_op, right_op = self.children
        left = left_op.execute(ctx, outer)
        n_left = left.num_rows
        if self.reads and n_left:
            gids, first = group_ids([group_key(left.column(i)) for i in self.reads], n_left)
        else:
            gids = np.zeros(n_left, np.int64)
            first = np.zeros(1 if n_left else 0, np.int64)
        runs = []
        for row in first:
            runs.append(right_op.execute(ctx, Frame(left.slice(int(row), 1), ctx, outer)))
        right = _concat(runs, right_op.types)
        counts = np.array([t.num_rows for t in runs], np.int64)
        li, ri = _pairs(gids, counts)
        what = self.node.describe().split("\n")[0]
        width = table_bytes_per_row(left) + table_bytes_per_row(right)
        if self.condition is not None and li.size:
            ctx.memory.reserve(f"{what} ({rows_of(li.size, width)})", li.size * width)
            pairs = _combine(left, right, li, ri)
            keep = mask_of(self.condition(Frame(pairs, ctx, outer)), pairs.num_rows)
            li, ri = li[keep], ri[keep]
        if self.kind == "left":
            matched = np.zeros(n_left, bool)
            matched[li] = True
            missing = np.flatnonzero(~matched)
            if missing.size:
                li = np.concatenate([li, missing])
                ri = np.concatenate([ri, np.full(missing.size, -1, np.int64)])
                order = np.argsort(li, kind="stable")
                li, ri = li[order], ri[order]
        ctx.memory.reserve_output(f"{what} ({rows_of(li.size, width)})", li.size * width)
        return _combine(left, right, li, ri)


def group_key(col) -> pa.Array:
    """A column as a key that Arrow can group by: vectors and arrays as binary or text values
    that are equal exactly when the values are."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_fixed_size_list(col.type) and pa.types.is_floating(col.type.value_type):
        return vector_key(col)
    if pa.types.is_dictionary(col.type):
        return col.dictionary_decode()
    if pa.types.is_nested(col.type):
        return pa.array([None if v is None else repr(v) for v in col.to_pylist()], pa.string())
    return col


def _pairs(gids: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left row, right row) for every left row and each row of its group's run, in left row
    order: the runs' rows are concatenated, run g's starting at the sum of earlier counts."""
    if gids.size == 0 or counts.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    starts = np.cumsum(counts) - counts
    per_row = counts[gids]
    total = int(per_row.sum())
    li = np.repeat(np.arange(gids.size, dtype=np.int64), per_row)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    return li, np.repeat(starts[gids], per_row) + within


def _concat(runs: list[pa.Table], types) -> pa.Table:
    if not runs:
        return table_of([pa.nulls(0, t.to_arrow()) for t in types]) if types else empty_width(0)
    runs = [t for t in runs if t.num_rows] or runs[:1]
    if len(runs) == 1:
        return runs[0]
    return pa.concat_tables(runs, promote_options="permissive")


def _combine(left: pa.Table, right: pa.Table, li: np.ndarray, ri: np.ndarray) -> pa.Table:
    lidx = pa.array(li, pa.int64())
    ridx = pa.array(ri, pa.int64(), mask=ri < 0) if (ri < 0).any() else pa.array(ri, pa.int64())
    cols = [c.take(lidx) for c in left.columns] + [c.take(ridx) for c in right.columns]
    return table_of(cols) if cols else empty_width(len(li))


__all__ = ["LateralJoinOp", "build_lateral_join", "group_key"]
