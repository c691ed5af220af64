"""Vector top-k: `ORDER BY <distance>(col, q) LIMIT k` searched segment by segment.

The planner's `VectorTopK` node becomes a `VectorTopKOp`: the query vector and k are evaluated
once, the scan's filter is applied per segment, and each segment answers with its own top-k
(HNSW where it has an index for the column and metric, exact otherwise); the table snapshot
merges them (storage/table.py). Inside a transaction with uncommitted writes to the table, the
operator falls back to an exact scan of what the transaction sees.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from sqlvec.execution import values as V
from sqlvec.execution.expressions import Frame
from sqlvec.execution.operators import OneRowOp, ScanOp, _empty_width, sort_indices, table_of
from sqlvec.execution.values import INT8, Value, as_array
from sqlvec.plan import nodes as n
from sqlvec.sql.binder import Field
from sqlvec.storage.schema import ROWID
from sqlvec.types import SqlType
from sqlvec.vectors import Metric


def build_vector_topk(builder, node: n.VectorTopK, outer) -> VectorTopKOp:
    scan = builder._Scan(node.scan, outer)
    scan.node = node.scan
    c = builder.compiler([], [], outer)
    query = c.compile_as(node.query, SqlType("vector"))
    k = c.compile_as(node.k, INT8)
    types = list(scan.types) + [V.FLOAT8]
    fields = [Field(f.name, f.table, t, f.source, f.hidden) for f, t in zip(node.fields, types)]
    op = VectorTopKOp(fields, types, [])
    op.scan, op.query, op.k = scan, query, k
    op.column, op.metric = node.column, Metric(node.metric)
    return op


class VectorTopKOp(OneRowOp):
    """Nearest rows of one table by a distance, searched per segment (HNSW where indexed)."""

    scan: ScanOp
    query: Value
    k: Value
    column: str
    metric: Metric

    def run(self, ctx, outer):
        frame = Frame(_empty_width(1), ctx, outer)
        k = self.k(frame).as_py()
        q = self.query(frame)
        if k is None:
            k = 2**62
        if not q.is_valid:
            # A NULL query vector: every distance is NULL; order is then arbitrary.
            table = self.scan.execute(ctx, outer).slice(0, k)
            return table_of(list(table.columns) + [pa.nulls(table.num_rows, pa.float64())])
        vector = np.asarray(q.values.to_numpy(zero_copy_only=False), dtype=np.float32)
        overlay = ctx.overlay.table_overlay(self.scan.table_id) if ctx.overlay is not None else None
        snap = ctx.snapshot(self.scan.table_id)
        if overlay is not None:
            return self._with_overlay(ctx, outer, vector, k)
        ef = int(ctx.settings.get("hnsw.ef_search", 40))
        exact = str(ctx.settings.get("sqlvec.exact", "off")).lower() in ("on", "true", "1")
        found = snap.search(self.column, self.metric, vector, k, filter=self.scan._segment_filter(ctx, outer),
                            ef=max(ef, 1), exact=exact, with_rowid=True, distance_name="__distance")
        cols = [found.column(i) for i in range(len(self.scan.fields) - 1)]
        cols += [found.column(ROWID), found.column("__distance")]
        ctx.stats.setdefault("vector", []).append({"rows": found.num_rows, "k": k, "ef": ef})
        return table_of(cols)

    def _with_overlay(self, ctx, outer, vector, k):
        from sqlvec.execution.expressions import vector_distance

        table = self.scan.execute(ctx, outer)
        col_index = [f.name for f in self.scan.fields].index(self.column)
        dist = vector_distance(self.metric, table.column(col_index),
                               pa.scalar(vector.tolist(), pa.list_(pa.float32(), vector.size)),
                               table.num_rows)
        order = sort_indices([(dist, V.FLOAT8, False, False)], table.num_rows)
        table = table.take(order).slice(0, k)
        dist = as_array(dist, len(order)).take(order).slice(0, k)
        return table_of(list(table.columns) + [dist])


