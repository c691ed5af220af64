"""Vector top-k: `ORDER BY <distance>(col, q) LIMIT k` searched segment by segment.

The planner's `VectorTopK` node becomes a `VectorTopKOp`: the query vector and k are evaluated
once, the scan's filter is applied per segment, and each segment answers with its own top-k
(through its vector index where the table has one for the column and metric, whatever its
access method; exact otherwise); the table snapshot merges them (storage/table.py). The index's
knob is a recall target's (0.95 unless the session sets `sqlvec.target_recall`) or, when the
session set it, `hnsw.ef_search` itself: storage decides from the session's settings. Inside a
transaction with uncommitted writes to the table, the operator falls back to an exact scan of
what the transaction sees.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from sqlglot import exp

from sqlvec.errors import DataException, Notice, SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.expressions import Frame
from sqlvec.execution.expressions.core import param_index
from sqlvec.execution.expressions.vector import bit_chars, sparse_distance, vector_distance
from sqlvec.execution.kernels import empty_width, sort_indices, table_of
from sqlvec.execution.operators import (
    LimitOp,
    OneRowOp,
    ProjectOp,
    RenameOp,
    ScanOp,
    cast_storage,
)
from sqlvec.execution.values import INT8, Value, as_array
from sqlvec.float_order import pg_float_key
from sqlvec.plan import nodes as n
from sqlvec.sql.binder import Field, sql_type
from sqlvec.storage.schema import ROWID
from sqlvec.storage.search import (
    MAX_EF_SEARCH,
    MAX_EF_SEARCH_DEFAULT,
    SegmentPlan,
    index_order,
    read_max_ef,
)
from sqlvec.storage.table import ComparedColumns, SearchHits, segment_numbers
from sqlvec.types import SparseVector, SqlType
from sqlvec.vectors import (
    BIT_METRICS,
    Metric,
    SparseRows,
    binary_quantize,
    hamming_distances,
    jaccard_distances,
    pack_bits,
)


def build_vector_topk(builder, node: n.VectorTopK, outer) -> VectorTopKOp:
    """The operator of a VectorTopK node: the scan it searches, the query vector and k compiled
    against the outer query."""
    start = len(builder.env.outer_refs)
    scan = builder._Scan(node.scan, outer)
    scan.node = node.scan
    c = builder.compiler([], [], outer)
    # The query takes the column's type: a halfvec column is searched with a halfvec (pgvector's
    # implicit vector -> halfvec cast), so its kernels are halfvec's.
    # An expression index's key (`col::halfvec`) is searched with a query of the cast's type.
    column, _, key_type = node.column.partition("::")
    kind = key_type or next((f.type.name for f in node.scan.fields if f.name == column
                             and f.type is not None and (f.type.is_vector or f.type.is_sparse
                                                         or f.type.name == "bit")),
                            "vector")
    query = c.compile_as(node.query, SqlType(kind))
    k = c.compile_as(node.k, INT8)
    # A query vector that is a parameter of the query's own type is read as the bound array
    # (`BoundParams.vector`), never made an Arrow scalar.
    param = _uncast_parameter(node.query, c.env)
    query_param = None
    if isinstance(param, (exp.Parameter, exp.Placeholder)) and query.type.is_vector:
        declared = c.env.param_type(param_index(param))
        if declared is not None and declared.name == kind:
            query_param = param_index(param) - 1
    types = list(scan.types) + [V.FLOAT8]
    fields = [Field(f.name, f.table, t, f.source, f.hidden) for f, t in zip(node.fields, types)]
    op = VectorTopKOp(fields, types, [])
    op.scan, op.query, op.k = scan, query, k
    op.query_param = query_param
    # Query vector, k or filter read an outer row (a LATERAL or correlated subquery): the
    # search is planned anew per outer row, so EXPLAIN cannot show one plan ahead of running.
    op.correlated = len(builder.env.outer_refs) > start
    op.column, op.metric = node.column, Metric(node.metric)
    op.bounds = _range_bounds(node.scan, c)
    op.compared = bool(op.bounds) and _comparisons_only(node.scan)
    visible = [f.name for f in node.scan.fields if not f.hidden]
    op.columns = [name for name in visible if node.columns is None or name in node.columns]
    op.visible = visible
    return op


def _uncast_parameter(query: exp.Expression, env) -> exp.Expression:
    """The parameter under a cast to its own type (`$1::vector`, as clients write the query
    vector when they send it as text), else `query` itself. Such a cast changes nothing: the
    parameter's type was inferred from it (or declared as it), and its value was checked
    against it when bound, dimensions included."""
    if type(query) is not exp.Cast or not isinstance(query.this, exp.Parameter):
        return query
    declared = env.param_type(param_index(query.this))
    try:
        target = sql_type(query.args["to"])
    except SqlVecError:
        return query
    return query.this if declared is not None and declared == target else query


# Segment pruning from min/max statistics ------------------------------------------------------------

_FLIP = {exp.LT: exp.GT, exp.LTE: exp.GTE, exp.GT: exp.LT, exp.GTE: exp.LTE, exp.EQ: exp.EQ}


def _range_bounds(scan: n.Scan, c) -> list[tuple[str, type, Value]]:
    """Conjuncts `column <op> constant` of the scan's filter: (column, op, constant value).

    A segment whose min/max statistics contradict any of them holds no matching row and is
    skipped before its filter is even evaluated."""
    if scan.filter is None:
        return []
    terms = list(scan.filter.flatten()) if isinstance(scan.filter, exp.And) else [scan.filter]
    names = {f.name for f in scan.fields if not f.hidden}
    out = []
    for term in terms:
        if isinstance(term, exp.Between) and isinstance(term.this, exp.Column) and \
                term.this.name in names and not term.args.get("symmetric"):
            lo, hi = term.args["low"], term.args["high"]
            if not any(True for _ in lo.find_all(exp.Column)) and \
                    not any(True for _ in hi.find_all(exp.Column)):
                out.append((term.this.name, exp.GTE, c.compile(lo)))
                out.append((term.this.name, exp.LTE, c.compile(hi)))
            continue
        op = type(term)
        if op not in _FLIP:
            continue
        left, right = term.this, term.expression
        if isinstance(right, exp.Column) and not isinstance(left, exp.Column):
            left, right, op = right, left, _FLIP[op]
        if not isinstance(left, exp.Column) or left.name not in names:
            continue
        if any(True for _ in right.find_all(exp.Column)) or isinstance(right, n.SubPlan):
            continue
        try:
            out.append((left.name, op, c.compile(right)))
        except Exception:  # noqa: BLE001 - a bound we cannot evaluate just prunes nothing
            continue
    return out


# What the right side of a term `column op constant` may be for the filter to be compared as
# NumPy: a literal or a parameter, cast or negated (never a function, which may be volatile).
_CONSTANT_PARTS = (exp.Literal, exp.Parameter, exp.Placeholder, exp.Cast, exp.DataType,
                   exp.DataTypeParam, exp.Neg, exp.Paren)


def _comparisons_only(scan: n.Scan) -> bool:
    """Whether the scan's filter is nothing but conjuncts `column op constant` (`_range_bounds`
    takes them all) whose constants are literals or parameters: `_compared` may then stand for
    the whole filter."""
    terms = list(scan.filter.flatten()) if isinstance(scan.filter, exp.And) else [scan.filter]
    names = {f.name for f in scan.fields if not f.hidden}
    for term in terms:
        if isinstance(term, exp.Between):
            if term.args.get("symmetric"):  # (its bounds in either order)
                return False
            column, constants = term.this, [term.args["low"], term.args["high"]]
        elif type(term) in _FLIP:
            column, constants = term.this, [term.expression]
            if not isinstance(column, exp.Column):
                column, constants = term.expression, [term.this]
        else:
            return False
        if not isinstance(column, exp.Column) or column.name not in names or not all(
                isinstance(part, _CONSTANT_PARTS) for c in constants for part in c.walk()):
            return False
    return True


_COMPARISONS = {exp.EQ: "equal", exp.LT: "less", exp.LTE: "less_equal", exp.GT: "greater",
                exp.GTE: "greater_equal"}


def _compared(bounds, table_def, frame, general) -> ComparedColumns | None:
    """The filter as NumPy comparisons of a segment's columns (storage's `ComparedColumns`),
    when `bounds` are the whole filter (`_comparisons_only`), each on an integer or float
    column with a constant of the column's own type; None otherwise."""
    terms = []
    for col, op, constant in _constants(bounds, table_def, frame):
        arrow_type = col.type.to_arrow()
        if constant.type != arrow_type or not (pa.types.is_integer(arrow_type)
                                               or pa.types.is_floating(arrow_type)):
            return None
        terms.append((col.physical, arrow_type, _COMPARISONS[op],
                      np.array(constant.as_py(), dtype=arrow_type.to_pandas_dtype())))
    return ComparedColumns(general, tuple(terms)) if len(terms) == len(bounds) else None


def _constants(bounds, table_def, frame):
    """(column definition, op, constant) of each bound whose constant evaluates to a value
    (not NULL) on a column that is not a vector."""
    for name, op, value in bounds:
        col = table_def.column(name)
        if col.type.is_vector:
            continue
        try:
            constant = value(frame)
        except SqlVecError:
            continue
        if isinstance(constant, pa.Scalar) and constant.is_valid:
            yield col, op, constant


def _pruner(bounds, table_def, frame) -> object:
    if not bounds:
        return None
    resolved = [(col.physical, op, pg_float_key(constant.as_py()))
                for col, op, constant in _constants(bounds, table_def, frame)]

    def prune(data) -> bool:
        for physical, op, constant in resolved:
            stats = data.stats(physical)
            if stats is None:
                continue
            lo, hi = pg_float_key(stats[0]), pg_float_key(stats[1])
            try:
                if op is exp.EQ and (constant < lo or constant > hi):
                    return True
                if op is exp.LT and not lo < constant:
                    return True
                if op is exp.LTE and not lo <= constant:
                    return True
                if op is exp.GT and not hi > constant:
                    return True
                if op is exp.GTE and not hi >= constant:
                    return True
            except TypeError:
                continue
        return False

    return prune if resolved else None


def _count_index_use(stats, snap, index, used: list[SegmentPlan],
                     plans: list[SegmentPlan]) -> None:
    """pg_stat_user_indexes: a search that used the column's index (`index`) on some segment
    (`used`: those segments' plans) is one scan of it, reading the entries the graphs
    returned; any other search is a scan of the table (pg_stat_user_tables.seq_scan), as
    PostgreSQL counts an exact ORDER BY."""
    if not used:
        stats.scanned(snap.row_count)
        return
    name = index.name if index is not None else used[0].method
    returned = sum(p.returned for p in used)
    stats.index_scanned(name, returned,
                        returned if len(used) == len(plans) else sum(p.returned for p in plans))


def _index_name(snap, column: str, metric: Metric, plans) -> str | None:
    """The index some segment of this search used (EXPLAIN names it), or None."""
    if not any(getattr(p, "plan", p).method is not None for p in plans):
        return None
    index = snap.index_for(column, metric)
    return index.name if index is not None else None


class VectorTopKOp(OneRowOp):
    """Nearest rows of one table by a distance, searched per segment (storage/search.py)."""

    index_name: str | None = None  # the index the last search used on some segment

    scan: ScanOp
    query: Value
    k: Value
    column: str
    metric: Metric
    bounds: list
    correlated: bool = False
    compared: bool = False  # the filter is `column op constant` terms alone (`_compared`)
    query_param: int | None = None  # 0-based: the query vector is this bound parameter's array

    @staticmethod
    def _exact(settings) -> bool:
        """Whether the session asks for an exact search. The index's knob or a recall target:
        storage decides from the settings (storage/search.py search_target). `SET
        enable_indexscan = off` is how pgvector users get exact ground truth (an ORDER BY over
        a sequential scan); `sqlvec.exact = on` says the same."""
        key = (settings.get("sqlvec.exact", "off"), settings.get("enable_indexscan", "on"))
        exact = _EXACT.get(key)
        if exact is None:
            exact = str(key[0]).lower() in ("on", "true", "1") \
                or str(key[1]).lower() in ("off", "false", "0")
            if len(_EXACT) >= 64:
                _EXACT.clear()
            _EXACT[key] = exact
        return exact

    def plan_segments(self, ctx, outer=None) -> list[SegmentPlan]:
        """The per-segment strategies this query would use now (EXPLAIN without ANALYZE)."""
        frame = Frame(empty_width(1), ctx, outer)
        k = self.k(frame).as_py() or 0
        snap = ctx.snapshot(self.scan.table_id)
        searches = snap.plan_search(self.column, self.metric, k,
                                    filter=self._search_filter(ctx, outer, snap, frame),
                                    prune=_pruner(self.bounds, snap.table_def, frame),
                                    settings=ctx.settings, exact=self._exact(ctx.settings))
        self.index_name = _index_name(snap, self.column, self.metric, searches)
        return [s.plan for s in searches]

    def run(self, ctx, outer):
        """The k nearest live rows to the query vector: each segment searched (by index or exactly)
        under the scan's filter, then merged by distance."""
        frame = Frame(empty_width(1), ctx, outer)
        k = self.k(frame).as_py()
        if k is None:
            k = 2**62
        bound = self._bound_vector(ctx)
        if bound is not None:
            return self._search(ctx, outer, frame, bound, k)
        q = self.query(frame)
        if not q.is_valid:
            # A NULL query vector: every distance is NULL; order is then arbitrary.
            table = self.scan.execute(ctx, outer).slice(0, k)
            return table_of(list(table.columns) + [pa.nulls(table.num_rows, pa.float64())])
        if self.metric in BIT_METRICS:  # a bit string, as its text of '0' and '1'
            vector = q.as_py()
        elif self.query.type.is_sparse:
            one = SparseVector.from_dict(q.as_py())
            vector = SparseRows(np.array([one.dim]), np.array([0, one.indices.size]),
                                one.indices, one.values)
        else:
            vector = np.asarray(q.values.to_numpy(zero_copy_only=False),
                                dtype=np.float16 if self.query.type.name == "halfvec"
                                else np.float32)
        overlay = ctx.overlay.table_overlay(self.scan.table_id) if ctx.overlay is not None else None
        if overlay is not None:
            return self._with_overlay(ctx, outer, q if self.query.type.is_sparse else vector, k)
        return self._search(ctx, outer, frame, vector, k)

    def _bound_vector(self, ctx) -> np.ndarray | None:
        """The query vector as the bound parameter's array, when it is one (and no uncommitted
        write of this table needs the exact path)."""
        if self.query_param is None:
            return None
        vector = getattr(ctx.params, "vector", None)
        vector = vector(self.query_param) if vector is not None else None
        if vector is None or (ctx.overlay is not None
                              and ctx.overlay.table_overlay(self.scan.table_id) is not None):
            return None
        return vector

    def _search(self, ctx, outer, frame, vector, k: int):
        """The committed table's search: per segment, then merged."""
        found = self.search_hits(ctx, outer, frame, vector, k).table(self.columns, True,
                                                                      "__distance")
        rows = found.num_rows
        cols = [found.column(name) if name in self.columns else self._nulls(i, rows)
                for i, name in enumerate(self.visible)]
        cols += [found.column(ROWID), found.column("__distance")]
        return table_of(cols)

    def search_hits(self, ctx, outer, frame, vector, k: int,
                    order_only: bool = False) -> SearchHits:
        """The committed table's winners (storage/table.py `SearchHits`), the search counted
        in pg_stat and remembered for EXPLAIN. `order_only`: no distance is read."""
        snap = ctx.snapshot(self.scan.table_id)
        plans: list[SegmentPlan] = []
        settings = ctx.settings
        exact = self._exact(settings)
        # Without a filter or bounds, a search this snapshot planned before as one segment's
        # index search runs again as it was planned (storage/table.py `search_lone`).
        hits = snap.search_lone(self.column, self.metric, vector, k, settings=settings,
                                exact=exact, plans=plans, order_only=order_only) \
            if self.scan.filter is None and not self.bounds else None
        if hits is None:
            hits = snap.search_hits(self.column, self.metric, vector, k,
                                    filter=self._search_filter(ctx, outer, snap, frame),
                                    prune=_pruner(self.bounds, snap.table_def, frame),
                                    plans=plans, order_only=order_only, settings=settings,
                                    exact=exact)
        used = [p for p in plans if p.method is not None]
        index = snap.index_for(self.column, self.metric) if used else None
        self.index_name = index.name if index is not None else None
        ctx.stats.setdefault(("segments", id(self)), []).append(plans)
        _count_index_use(ctx.table_stats(self.scan.table_id), snap, index, used, plans)
        if used:
            _report_missed_target(ctx, plans)
        return hits

    def _search_filter(self, ctx, outer, snap, frame):
        """The filter each segment is searched under (`ScanOp.search_filter`): compared as
        NumPy when it is nothing but `column op constant` terms and no btree index could
        serve it (`_compared`)."""
        general = self.scan.search_filter(ctx, outer, snap)
        if general is None or not self.compared or self.scan.paths:
            return general
        return _compared(self.bounds, snap.table_def, frame, general) or general

    def _nulls(self, i: int, rows: int) -> pa.Array:
        """The NULL column standing for visible column `i`, which the query does not read
        (arrays are immutable: one per row count serves every run)."""
        cache = self.__dict__.setdefault("_null_columns", {})
        column = cache.get((i, rows))
        if column is None:
            if len(cache) >= 16:
                cache.clear()
            column = cache[(i, rows)] = pa.nulls(rows, self.types[i].to_arrow())
        return column

    def _with_overlay(self, ctx, outer, vector, k):
        """Uncommitted writes to this table: an exact scan of what the transaction sees."""
        table = self.scan.execute(ctx, outer)
        column, _, key_type = self.column.partition("::")
        col_index = [f.name for f in self.scan.fields].index(column)
        values = table.column(col_index)
        if self.metric in BIT_METRICS:
            dist = _bit_rows_distances(self.metric, values, key_type, vector, table.num_rows)
        elif self.query.type.is_sparse:  # `vector` is the query's sparsevec scalar
            dist = sparse_distance(self.metric, values, vector, table.num_rows)
        elif key_type:  # an expression index's key: the column's values cast as it casts them
            values = _cast_rows(values, vector.dtype)
        if self.metric not in BIT_METRICS and not self.query.type.is_sparse:
            dist = vector_distance(self.metric, values,
                                   pa.scalar(vector.tolist(), pa.list_(
                                       pa.from_numpy_dtype(vector.dtype), vector.size)),
                                   table.num_rows)
        order = sort_indices([(dist, V.FLOAT8, False, False)], table.num_rows)
        table = table.take(order).slice(0, k)
        dist = as_array(dist, len(order)).take(order).slice(0, k)
        return table_of(list(table.columns) + [dist])


# `sqlvec.exact` and `enable_indexscan` as they read -> whether the search is exact.
_EXACT: dict[tuple, bool] = {}


# A top-k query run in one step ----------------------------------------------------------------


class FusedTopK:
    """A query that is a vector top-k under projections that pass columns through and LIMITs
    (`SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 10`), run in one step: the
    search's winners are cut by the LIMITs and only the result's columns of those rows are
    read, straight into the result table. The operator tree would give the same table
    through an Arrow table per operator; the tree still runs whenever this cannot (the query
    vector is not a bound parameter's array, or is NULL, or the transaction has uncommitted
    writes to the table). Built by `fuse_top_k`; the top-k operator is the tree's own, so
    EXPLAIN, pg_stat and NOTICEs see the same search."""

    def __init__(self, topk: VectorTopKOp, limits: list, sources: list,
                 arrow_types: list[pa.DataType], sql_types: list[SqlType],
                 names: list[str]) -> None:
        self.topk = topk
        self.limits = limits  # LimitOps, the innermost first
        self.sources = sources  # per result column: a column name, _ROW_ID or _DISTANCE
        self.arrow_types, self.sql_types, self.names = arrow_types, sql_types, names
        # Without the distance in the result, one segment's index may settle the order alone.
        self.order_only = not any(source is _DISTANCE for source in sources)
        self._resolved: tuple | None = None  # (table definition, `_columns` of it)
        # k and the LIMITs' bounds when they are constants, once known.
        self._k: int | None = None
        self._bounds: list[tuple[int, int | None]] | None = None

    def run(self, ctx) -> pa.Table | None:
        """The result table, or None when the operator tree must run instead."""
        hits = self._winners(ctx)
        if hits is None:
            return None
        arrays = [self._array(hits, source, arrow, column_type) for source, arrow, column_type
                  in zip(self._columns(hits.snapshot.table_def), self.arrow_types,
                         self.sql_types)]
        ctx.check_interrupts()
        return pa.Table.from_arrays(arrays, names=self.names)

    def values(self, ctx) -> list[list] | None:
        """`run`'s result as each column's Python values (what `Array.to_pylist` of the
        table's columns gives), or None when the operator tree must run instead. Numbers the
        search reads as NumPy arrays skip Arrow: a caller that encodes the rows itself (the
        wire's compiled top-k) wants Python values."""
        out = self._lone_values(ctx)
        if out is not None:
            return out
        hits = self._winners(ctx)
        if hits is None:
            return None
        out = []
        for source, arrow, column_type in zip(self._columns(hits.snapshot.table_def),
                                              self.arrow_types, self.sql_types):
            numbers = None
            if source is _ROW_ID:
                numbers = hits.rowid_numbers() if arrow == _INT8 else None
            elif source is _DISTANCE:
                numbers = hits.distance_numbers() if arrow == _FLOAT8 else None
            elif source[1] == arrow:
                numbers = hits.cell_numbers(*source)
            out.append(numbers.tolist() if numbers is not None
                       else self._array(hits, source, arrow, column_type).to_pylist())
        ctx.check_interrupts()
        return out

    def _winners(self, ctx):
        """The search's winners cut by the LIMITs (storage's `SearchHits`), or None when the
        query vector is not a bound vector the one step can search."""
        op = self.topk
        vector = op._bound_vector(ctx)
        if vector is None:
            return None
        ctx.check_interrupts()
        frame = Frame(_ONE_ROW, ctx, None)
        k = self._k
        if k is None:
            k = op.k(frame).as_py()
            k = 2**62 if k is None else k
            if op.k.const:
                self._k = k
        hits = op.search_hits(ctx, None, frame, vector, k, self.order_only)
        return hits.slice(*self._cut(self._limit_bounds(ctx), hits.count))

    @staticmethod
    def _cut(bounds: list[tuple[int, int | None]], count: int) -> tuple[int, int]:
        """The winners the LIMITs keep (start, stop) of `count` found, nearest first."""
        start, stop = 0, count
        for offset, limit in bounds:
            start = min(start + offset, stop)
            if limit is not None:
                stop = min(stop, start + limit)
        return start, stop

    def _lone_values(self, ctx) -> list[list] | None:
        """`values` of a search its snapshot runs again as planned, one segment's index
        search (`TableSnapshot.lone_search`), the winners' cells read straight from that
        segment's columns; None when it is not one (the general path runs), or the index
        falls short of k (the general path runs it again and finishes exactly).

        Only what reads the result (the columns, their order) and what a run leaves behind
        (the index scan counted in pg_stat_user_indexes, the NOTICE of a recall target
        missed) are kept: no plan record for EXPLAIN ANALYZE (which runs the operator tree,
        never this step), no `SearchHits`. Runs whose k and LIMITs are constants and whose
        result has no distance, once a first run worked them out."""
        op, k, bounds = self.topk, self._k, self._bounds
        if k is None or bounds is None or not 0 < k < 2**62 or not self.order_only \
                or op.scan.filter is not None or op.bounds:
            return None
        vector = op._bound_vector(ctx)
        if vector is None:
            return None
        ctx.check_interrupts()
        snap = ctx.snapshot(op.scan.table_id)
        settings = ctx.settings
        planned = snap.lone_search(op.column, op.metric, vector, k, settings=settings,
                                   exact=op._exact(settings))
        if planned is None or planned.mask is not None:
            return None
        lone = snap.kept(self)
        if lone is None or lone[0] is not planned:
            lone = self._lone_of(snap, planned, k, bounds)
            if lone is None:
                return None
        _planned, columns, index_name, cut = lone
        positions = index_order(planned, op.metric, vector)
        if positions is None:
            return None
        size = positions.size
        op.index_name = index_name
        ctx.table_stats(op.scan.table_id).index_scanned(index_name, size, size)
        if planned.plan.misses_target:
            _report_missed_target(ctx, [planned.plan])
        at = positions[cut if size == k else slice(*self._cut(bounds, min(k, size)))]
        out = [column[at].tolist() for column in columns]
        ctx.check_interrupts()
        return out

    def _lone_of(self, snap, planned, k: int, bounds: list[tuple[int, int | None]]
                 ) -> tuple | None:
        """What `_lone_values` reads of the snapshot's planned search `planned` besides its
        winners, the same for every run of it: the segment's result columns, the index's name
        and the LIMITs' cut of k winners; kept with the snapshot (`TableSnapshot.keep`).
        None when a result column is not a NumPy view (the general path runs)."""
        columns = self._segment_columns(snap.table_def, planned.view.data)
        if columns is None:
            return None
        lone = (planned, columns, snap.index_for(self.topk.column, self.topk.metric).name,
                slice(*self._cut(bounds, k)))
        snap.keep(self, lone)
        return lone

    def _segment_columns(self, table_def, data) -> list[np.ndarray] | None:
        """Each result column as a NumPy view over segment `data`'s rows (the row ids, or
        a column of numbers of the result's type: kept by the segment), or None when one is
        not such a view. (Kept with the snapshot, `_lone_of`, not here: a statement would hold
        a segment merged away.)"""
        columns = []
        for source, arrow in zip(self._columns(table_def), self.arrow_types):
            if source is _ROW_ID:
                view = data.rowids if arrow == _INT8 else None
            elif source is not _DISTANCE and source[1] == arrow:
                view = segment_numbers(data, source[0], arrow)
            else:
                view = None
            if view is None:
                return None
            columns.append(view)
        return columns

    @staticmethod
    def _array(hits, source, arrow: pa.DataType, column_type: SqlType) -> pa.Array:
        """One result column of the winners as Arrow, of the result's storage type."""
        if source is _ROW_ID:
            array = hits.rowids()
        elif source is _DISTANCE:
            array = hits.distance_array()
        else:
            array = hits.cells(*source)
        if array.type != arrow:  # as a projection casts to the column's storage type
            array = cast_storage(array, arrow, column_type)
        return array

    def _limit_bounds(self, ctx) -> list[tuple[int, int | None]]:
        """Each LIMIT's (OFFSET, LIMIT), as `LimitOp.bounds` gives them (with its errors):
        worked out once when they are constants (`LIMIT 10`), per run when parameters."""
        bounds = self._bounds
        if bounds is None:
            bounds = [limit.bounds(ctx, None) for limit in self.limits]
            if all(v is None or v.const for limit in self.limits
                   for v in (limit.limit, limit.offset)):
                self._bounds = bounds
        return bounds

    def _columns(self, table_def) -> list:
        """`sources` with each column name resolved in `table_def` to (its ColumnDef, Arrow
        type): once per table definition, not per run."""
        known = self._resolved
        if known is None or known[0] is not table_def:
            resolved = []
            for source in self.sources:
                if isinstance(source, str):
                    col = table_def.column(source)
                    source = (col, col.arrow)
                resolved.append(source)
            known = self._resolved = (table_def, resolved)
        return known[1]


# FusedTopK.sources besides column names: the row id and the search's distance.
_ROW_ID, _DISTANCE = object(), object()
_INT8, _FLOAT8 = pa.int64(), pa.float64()
_ONE_ROW = empty_width(1)


def fuse_top_k(root, columns: list | None) -> FusedTopK | None:
    """The one-step form of a query's operator tree when it is a vector top-k (of a bound
    parameter) under ProjectOps that only pass columns through, unchanged in type, and
    LimitOps; None for any other tree."""
    if not columns or type(root) not in (ProjectOp, LimitOp):
        return None
    visible = [i for i, f in enumerate(root.fields) if not f.hidden]
    if len(visible) != len(columns):
        return None
    at = visible  # each result column's place in the current operator's output
    limits = []
    op = root
    while type(op) is not VectorTopKOp:
        if type(op) is LimitOp:
            limits.append(op)
        elif type(op) is ProjectOp:
            child = op.children[0]
            below = _arrow_types(child)
            if below is None:
                return None
            for i in at:
                v = op.exprs[i]
                if v.column is None or below[v.column] != op.arrow_types[i]:
                    return None
            at = [op.exprs[i].column for i in at]
        elif type(op) is RenameOp:  # a subquery in FROM: some of its columns, renamed
            at = [op.keep[i] for i in at]
        else:
            return None
        if len(op.children) != 1:
            return None
        op = op.children[0]
    if op.query_param is None or op.correlated or len(op.fields) != len(op.visible) + 2:
        return None
    sources = []
    for i in at:
        if i < len(op.visible):
            if op.visible[i] not in op.columns:
                return None  # (the operator gives a NULL column for it)
            sources.append(op.visible[i])
        else:
            sources.append(_ROW_ID if i == len(op.visible) else _DISTANCE)
    arrow = [op.types[i].to_arrow() for i in at]
    return FusedTopK(op, limits[::-1], sources, arrow, [op.types[i] for i in at],
                     [c.name for c in columns])


def _arrow_types(op) -> list[pa.DataType] | None:
    """The Arrow type of each column an operator of a fusable tree outputs."""
    keep = None  # the columns a RenameOp on the way keeps
    while type(op) in (LimitOp, RenameOp):
        if type(op) is RenameOp:
            keep = op.keep if keep is None else [op.keep[i] for i in keep]
        op = op.children[0]
    types = _own_arrow_types(op)
    if types is None or keep is None:
        return types
    return [types[i] for i in keep]


def _own_arrow_types(op) -> list[pa.DataType] | None:
    if type(op) is ProjectOp:
        return list(op.arrow_types)
    if type(op) is VectorTopKOp:
        return [t.to_arrow() for t in op.types]
    return None


def _bit_rows_distances(metric: Metric, values, key_type: str, query: str, n: int) -> pa.Array:
    """Hamming or Jaccard distances from the query bits to a bit column's rows, or to
    `binary_quantize(col)` of a vector column's (key type "bit"); NULL for a NULL row."""
    if key_type:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        matrix = np.asarray(values.values.to_numpy(zero_copy_only=False)).reshape(n, -1)
        chars = binary_quantize(matrix)
        valid = values.is_valid().to_numpy(zero_copy_only=False) if values.null_count else None
    else:
        chars, valid = bit_chars(values, n)
    q = np.frombuffer(query.encode("ascii"), np.uint8)
    if n and chars.shape[1] != q.size:
        raise DataException(f"different bit lengths {chars.shape[1]} and {q.size}")
    kernel = hamming_distances if metric is Metric.HAMMING else jaccard_distances
    out = kernel(pack_bits(chars), pack_bits(q.reshape(1, -1))) if n else np.empty(0)
    return pa.array(out, pa.float64(), mask=None if valid is None else ~valid)


def _cast_rows(values, dtype) -> pa.Array:
    """A vector column's rows cast element-wise to `dtype` (float16 for `col::halfvec`)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    dims = values.type.list_size
    return values.cast(pa.list_(pa.from_numpy_dtype(dtype), dims))


def _report_missed_target(ctx, plans: list[SegmentPlan]) -> None:
    """A NOTICE, once per statement, when a recall target is beyond what some segment's index
    can reach within the knob's cap: a target never misses silently."""
    missed = [p for p in plans if p.misses_target]
    if not missed or ctx.stats.get("recall target missed") or ctx.services is None:
        return
    ctx.stats["recall target missed"] = True
    worst = min(missed, key=lambda p: p.estimated_recall)
    cap = read_max_ef(ctx.settings)
    ways = []
    if worst.ef == cap < MAX_EF_SEARCH_DEFAULT:  # the cap, not the curve, stopped it
        ways.append(f"raise {MAX_EF_SEARCH} (now {cap})")
    ways += ["rebuild the index with larger m or ef_construction",
             "SET sqlvec.exact = on for exact search"]
    ctx.services.notice(Notice.notice(
        f"recall target {worst.target_recall:g} is not reachable: the {worst.method} index "
        f"reaches an estimated recall of {worst.estimated_recall:.3f} at ef_search={worst.ef}",
        detail=f"{len(missed)} of {len(plans)} segments searched below the target.",
        hint="To get more recall, " + ", ".join(ways[:-1]) + ", or " + ways[-1] + "."))


def segment_summary(plans: list[SegmentPlan], analyze: bool) -> list[str]:
    """EXPLAIN lines for the per-segment choices of one vector search."""
    counts: dict[str, int] = {}
    for p in plans:
        counts[p.strategy] = counts.get(p.strategy, 0) + 1
    rows = sum(p.rows for p in plans)
    eligible = sum(p.eligible for p in plans)
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    lines = [f"Segments: {len(plans)} ({summary})",
             f"Candidates: {eligible} of {rows} rows (selectivity {eligible / rows:.4%})"
             if rows else "Candidates: 0 of 0 rows"]
    for p in plans:
        name = "growing" if p.segment < 0 else f"segment {p.segment}"
        text = f"{name}: {p.strategy} candidates={p.eligible}/{p.rows} k={p.k}"
        if p.detail:
            text += f" {p.detail}"
        if analyze:
            text += f" rows={p.returned} time={p.seconds * 1000:.3f} ms"
            if p.widened:
                text += f" widened={p.widened}"
            if p.fallback:
                text += " fallback=exact"
        lines.append(text)
    return lines


def searches_summary(runs: list[list[SegmentPlan]]) -> list[str]:
    """EXPLAIN ANALYZE lines for a vector search run many times (once per outer row of a
    LATERAL join or correlated subquery): the strategies over all runs, then the last run."""
    counts: dict[str, int] = {}
    for plans in runs:
        for p in plans:
            counts[p.strategy] = counts.get(p.strategy, 0) + 1
    returned = sum(p.returned for plans in runs for p in plans)
    seconds = sum(p.seconds for plans in runs for p in plans)
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    lines = [f"Searches: {len(runs)} (segments: {summary}) rows={returned} "
             f"time={seconds * 1000:.3f} ms", "Last search:"]
    return lines + ["  " + line for line in segment_summary(runs[-1], True)]
