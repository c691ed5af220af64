"""Physical operators: each plan node becomes an operator that computes an Arrow table.

`build(plan, ...)` compiles every expression of the plan once (types are known after this, which
is what Describe needs) and returns the root operator; `operator.execute(ctx)` runs it. Operators
materialize their output as one Arrow table, column i named str(i) (SQL allows duplicate names;
Arrow joins and group-bys do not like them); the session renames at the end.

Joins, aggregates, sorts and set operations are vectorized with pyarrow (hash join on key
columns, Table.group_by, sort_indices) and NumPy; no operator loops over rows in Python except
correlated subqueries (expressions.py) and recursive CTE iterations.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.aggregates import AggregateSpec, compile_aggregate, run_aggregates
from sqlvec.execution.context import ExecContext
from sqlvec.execution.expressions import CompileEnv, Compiler, Frame
from sqlvec.execution.values import INT8, TEXT, Value, as_array, is_scalar
from sqlvec.execution.windows import compile_window, run_windows
from sqlvec.plan import nodes as n
from sqlvec.sql.binder import Field, Scope
from sqlvec.storage.schema import ROWID
from sqlvec.types import SqlType

_NAMES = [str(i) for i in range(64)]


def names(count: int) -> list[str]:
    """Positional column names "0", "1", … (operators address columns by position)."""
    return _NAMES[:count] if count <= len(_NAMES) else [str(i) for i in range(count)]


def table_of(columns: Sequence, count_rows: int | None = None) -> pa.Table:
    if not columns:
        t = pa.table({"_": pa.nulls(count_rows or 0)})
        return t.select([]) if count_rows is None else _empty_width(count_rows)
    return pa.Table.from_arrays(list(columns), names=names(len(columns)))


def _empty_width(rows: int) -> pa.Table:
    """A table with `rows` rows and no columns (pyarrow needs a trick for that)."""
    if rows == 1:
        return _ONE_ROW
    return pa.table({"x": pa.nulls(rows)}).drop_columns(["x"]) if rows else pa.table({})


_ONE_ROW = pa.table({"x": pa.nulls(1)}).drop_columns(["x"])


class Operator(ABC):
    """A compiled plan node."""

    node: n.PlanNode
    fields: list[Field]
    types: list[SqlType]
    children: list[Operator]

    def execute(self, ctx: ExecContext, outer: Frame | None = None) -> pa.Table:
        ctx.check()
        if not ctx.analyze:
            out = self.run(ctx, outer)
            ctx.check()
            return out
        start = time.perf_counter()
        out = self.run(ctx, outer)
        rows, seconds, loops = ctx.stats.get(id(self), (0, 0.0, 0))
        ctx.stats[id(self)] = (rows + out.num_rows, seconds + time.perf_counter() - start, loops + 1)
        return out

    @abstractmethod
    def run(self, ctx: ExecContext, outer: Frame | None) -> pa.Table:
        """The node's rows (`execute` wraps this with cancellation checks and ANALYZE timing)."""

    def scope(self, parent: Scope | None) -> Scope:
        return Scope(list(self.fields), parent)


@dataclass
class Builder:
    """Builds operators for one statement; `env` collects parameter types."""

    env: CompileEnv
    table_types: object = None  # callable(table_id) -> list of SqlType for the scan fields

    def build(self, node: n.PlanNode, outer: Compiler | None = None) -> Operator:
        method = getattr(self, "_" + type(node).__name__)
        op = method(node, outer)
        op.node = node
        return op

    def compiler(self, op_fields: list[Field], types: list[SqlType], outer: Compiler | None) -> Compiler:
        parent = outer.scope if outer is not None else None
        return Compiler(Scope(list(op_fields), parent), types, self.env, outer)

    def subplan(self, plan: n.PlanNode, outer: Compiler) -> Operator:
        return self.build(plan, outer)

    # Leaves -------------------------------------------------------------------------------------

    def _OneRow(self, node, outer):
        return OneRowOp([], [], [])

    def _Scan(self, node: n.Scan, outer):
        types = [f.type for f in node.fields]
        op = ScanOp(list(node.fields), types, [])
        op.table_id = node.table_id
        op.filter = None
        if node.filter is not None:
            op.filter = self.compiler(list(node.fields), types, outer).condition(node.filter, "WHERE")
        return op

    def _VirtualScan(self, node: n.VirtualScan, outer):
        types = [f.type or TEXT for f in node.fields]
        op = VirtualScanOp(list(node.fields), types, [])
        op.name = node.name
        return op

    def _Values(self, node: n.Values, outer):
        c = self.compiler([], [], outer)
        rows = [[c.compile(e) for e in row] for row in node.rows]
        width = len(node.fields)
        types = [V.common_type([r[i].type for r in rows], "VALUES") for i in range(width)]
        rows = [[c.coerce(v, types[i]) for i, v in enumerate(r)] for r in rows]
        fields = [Field(f.name, f.table, t) for f, t in zip(node.fields, types)]
        op = ValuesOp(fields, types, [])
        op.rows = rows
        return op

    def _FunctionScan(self, node: n.FunctionScan, outer):
        from sqlvec.execution.table_functions import build_function_scan

        return build_function_scan(self, node, outer)

    # Row-wise ---------------------------------------------------------------------------------

    def _Filter(self, node: n.Filter, outer):
        child = self.build(node.child, outer)
        c = self.compiler(child.fields, child.types, outer)
        op = FilterOp(child.fields, child.types, [child])
        op.predicate = c.condition(node.predicate, node.clause)
        return op

    def _Project(self, node: n.Project, outer):
        child = self.build(node.child, outer)
        c = self.compiler(child.fields, child.types, outer)
        exprs = [c.compile(e) for e in node.exprs]
        exprs = [c.coerce(v, V.TEXT) if v.type.name == "unknown" else v for v in exprs]
        types = [v.type for v in exprs]
        fields = [Field(f.name, f.table, t, f.source, f.hidden) for f, t in zip(node.fields, types)]
        op = ProjectOp(fields, types, [child])
        op.exprs = exprs
        op.arrow_types = [v.type.to_arrow() for v in exprs]
        return op

    def _Rename(self, node: n.Rename, outer):
        child = self.build(node.child, outer)
        visible = [i for i, f in enumerate(child.fields) if not f.hidden]
        types = [child.types[i] for i in visible]
        fields = [Field(f.name, f.table, t, child.fields[i].source)
                  for f, t, i in zip(node.fields, types, visible)]
        op = RenameOp(fields, types, [child])
        op.keep = visible
        return op

    def _Limit(self, node: n.Limit, outer):
        child = self.build(node.child, outer)
        c = self.compiler([], [], outer)
        op = LimitOp(child.fields, child.types, [child])
        op.limit = c.compile_as(node.limit, INT8) if node.limit is not None else None
        op.offset = c.compile_as(node.offset, INT8) if node.offset is not None else None
        return op

    def _Sort(self, node: n.Sort, outer):
        child = self.build(node.child, outer)
        c = self.compiler(child.fields, child.types, outer)
        op = SortOp(child.fields, child.types, [child])
        op.keys = [(c.compile(k.expr), k.desc, k.nulls_first) for k in node.keys]
        return op

    def _Distinct(self, node: n.Distinct, outer):
        child = self.build(node.child, outer)
        op = DistinctOp(child.fields, child.types, [child])
        op.on = None
        if node.on is not None:
            c = self.compiler(child.fields, child.types, outer)
            op.on = [c.compile(e) for e in node.on]
        return op

    # Relational ---------------------------------------------------------------------------------

    def _Aggregate(self, node: n.Aggregate, outer):
        child = self.build(node.child, outer)
        c = self.compiler(child.fields, child.types, outer)
        groups = [c.compile(g) for g in node.groups]
        groups = [c.coerce(g, TEXT) if g.type.name == "unknown" else g for g in groups]
        specs = [compile_aggregate(c, a) for a in node.aggregates]
        types = [g.type for g in groups] + [s.type for s in specs]
        fields = [Field(f.name, f.table, t, f.source, f.hidden) for f, t in zip(node.fields, types)]
        op = AggregateOp(fields, types, [child])
        op.groups, op.specs = groups, specs
        return op

    def _Window(self, node: n.Window, outer):
        child = self.build(node.child, outer)
        c = self.compiler(child.fields, child.types, outer)
        specs = [compile_window(c, w) for w in node.windows]
        types = list(child.types) + [s.type for s in specs]
        fields = [Field(f.name, f.table, t, f.source, f.hidden) for f, t in zip(node.fields, types)]
        op = WindowOp(fields, types, [child])
        op.specs = specs
        return op

    def _ProjectSet(self, node, outer):
        from sqlvec.execution.catalog_functions import build_project_set

        return build_project_set(self, node, outer)

    def _Join(self, node: n.Join, outer):
        left = self.build(node.left, outer)
        right = self.build(node.right, outer)
        types = list(left.types) + list(right.types)
        fields = [Field(f.name, f.table, t, f.source, f.hidden) for f, t in zip(node.fields, types)]
        op = JoinOp(fields, types, [left, right])
        op.kind = node.kind
        op.left_width = len(left.fields)
        op.equi, op.residual = [], None
        if node.condition is not None:
            c = self.compiler(fields, types, outer)
            op.equi, residual = _split_equi(node.condition, len(left.fields), c)
            lc = self.compiler(left.fields, left.types, outer)
            rc = self.compiler(right.fields, right.types, outer)
            op.equi = [(_unify_keys(lc.compile(a), rc.compile(b))) for a, b in op.equi]
            op.residual = c.condition(residual, "JOIN/ON") if residual is not None else None
        return op

    def _SetOp(self, node: n.SetOp, outer):
        inputs = [self.build(child, outer) for child in node.inputs]
        types = list(inputs[0].types)
        for other in inputs[1:]:  # pairwise from the left, as PostgreSQL resolves a chain
            types = [V.common_type([a, b], node.kind.upper()) for a, b in zip(types, other.types)]
        fields = [Field(f.name, None, t) for f, t in zip(node.fields, types)]
        op = SetOpOp(fields, types, inputs)
        op.kind, op.all = node.kind, node.all
        return op

    def _RecursiveUnion(self, node: n.RecursiveUnion, outer):
        anchor = self.build(node.anchor, outer)
        types = list(anchor.types)
        self._work_types = getattr(self, "_work_types", {})
        self._work_types[node.name] = types
        step = self.build(node.recursive, outer)
        fields = [Field(f.name, f.table, t) for f, t in zip(node.fields, types)]
        op = RecursiveUnionOp(fields, types, [anchor, step])
        op.name, op.all = node.name, node.all
        return op

    def _WorkTable(self, node: n.WorkTable, outer):
        types = self._work_types[node.name]
        fields = [Field(f.name, f.table, t) for f, t in zip(node.fields, types)]
        op = WorkTableOp(fields, types, [])
        op.name = node.name
        return op

    def _VectorTopK(self, node: n.VectorTopK, outer):
        from sqlvec.execution.vector_search import build_vector_topk

        return build_vector_topk(self, node, outer)


# Leaf operators --------------------------------------------------------------------------------------


class OneRowOp(Operator):
    def __init__(self, fields, types, children):
        self.fields, self.types, self.children = fields, types, children

    def run(self, ctx, outer):
        return _empty_width(1)


class ScanOp(OneRowOp):
    table_id: int
    filter: Value | None

    def run(self, ctx, outer):
        snap = ctx.snapshot(self.table_id)
        overlay = ctx.overlay.table_overlay(self.table_id) if ctx.overlay is not None else None
        parts = []
        filt = self._segment_filter(ctx, outer)
        for part in snap.scan(filter=filt if overlay is None else None, with_rowid=True):
            parts.append(part)
        if overlay is not None:
            parts = overlay.merge(parts, snap)
            if filt is not None:
                parts = [p.filter(pa.array(_mask(filt(p), p.num_rows))) for p in parts]
        if not parts:
            return table_of([pa.array([], _arrow(t)) for t in self.types])
        merged = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        # The table's columns in order, then the row id (the last field).
        width = len(self.fields) - 1
        return table_of([merged.column(i) for i in range(width)] + [merged.column(ROWID)])

    def _segment_filter(self, ctx, outer):
        if self.filter is None:
            return None
        predicate = self.filter

        def fn(table: pa.Table):
            return predicate(Frame(table, ctx, outer))
        return fn


def _mask(result, n: int) -> np.ndarray:
    from sqlvec.storage.table import mask_of

    return mask_of(result, n)


def _arrow(t: SqlType | None) -> pa.DataType:
    return (t or TEXT).to_arrow()


class VirtualScanOp(OneRowOp):
    name: str

    def run(self, ctx, outer):
        if ctx.virtual_table is None:
            raise FeatureNotSupported(f"catalog table {self.name} is not available")
        table = ctx.virtual_table(self.name)
        cols = []
        for i, t in enumerate(self.types):
            col = table.column(i)
            if col.type != t.to_arrow():
                col = col.cast(t.to_arrow())
            cols.append(col)
        return table_of(cols) if cols else _empty_width(table.num_rows)


class ValuesOp(OneRowOp):
    rows: list[list[Value]]

    def run(self, ctx, outer):
        frame = Frame(_empty_width(1), ctx, outer)
        columns = []
        for i, t in enumerate(self.types):
            vals = [row[i](frame) for row in self.rows]
            arrow = t.to_arrow()
            items = []
            for v in vals:
                if is_scalar(v):
                    items.append(v.cast(arrow) if v.type != arrow and v.is_valid else
                                 (pa.scalar(None, arrow) if not v.is_valid else v))
                else:
                    items.append(v[0])
            columns.append(pa.array([s.as_py() for s in items], arrow))
        return table_of(columns) if columns else _empty_width(len(self.rows))


# Row-wise operators ----------------------------------------------------------------------------------


class FilterOp(OneRowOp):
    predicate: Value

    def run(self, ctx, outer):
        table = self.children[0].execute(ctx, outer)
        if table.num_rows == 0:
            return table
        mask = _mask(self.predicate(Frame(table, ctx, outer)), table.num_rows)
        return table.filter(pa.array(mask))


class ProjectOp(OneRowOp):
    exprs: list[Value]
    arrow_types: list[pa.DataType]  # the storage type of each expression, known at build

    def run(self, ctx, outer):
        table = self.children[0].execute(ctx, outer)
        frame = Frame(table, ctx, outer)
        n_rows = table.num_rows
        cols = []
        for v, arrow in zip(self.exprs, self.arrow_types):
            out = v(frame)
            col = as_array(out, n_rows)
            if col.type != arrow:
                col = _cast_storage(col, arrow, v.type)
            cols.append(col)
        return table_of(cols) if cols else _empty_width(n_rows)


def _cast_storage(col, arrow, t: SqlType):
    try:
        return V.to_storage(col, t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if t.name == "vector" and (pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type)):
            return col
        raise


class RenameOp(OneRowOp):
    keep: list[int]

    def run(self, ctx, outer):
        table = self.children[0].execute(ctx, outer)
        if not self.keep:
            return _empty_width(table.num_rows)
        return table_of([table.column(i) for i in self.keep])


class LimitOp(OneRowOp):
    limit: Value | None
    offset: Value | None

    def run(self, ctx, outer):
        table = self.children[0].execute(ctx, outer)
        frame = Frame(_empty_width(1), ctx, outer)
        start = 0
        if self.offset is not None:
            start = self.offset(frame).as_py() or 0
            if start < 0:
                raise SqlVecError("OFFSET must not be negative", sqlstate="2201X")
        if self.limit is not None:
            count = self.limit(frame).as_py()
            if count is not None and count < 0:
                raise SqlVecError("LIMIT must not be negative", sqlstate="2201W")
            return table.slice(start, count) if count is not None else table.slice(start)
        return table.slice(start)


class SortOp(OneRowOp):
    keys: list[tuple[Value, bool, bool]]

    def run(self, ctx, outer):
        table = self.children[0].execute(ctx, outer)
        if table.num_rows <= 1:
            return table
        frame = Frame(table, ctx, outer)
        order = sort_indices([(v(frame), v.type, desc, nulls_first) for v, desc, nulls_first in self.keys],
                             table.num_rows)
        return table.take(order)


def sort_indices(keys: list[tuple], n_rows: int) -> pa.Array:
    """Row order for ORDER BY keys (value datum, type, desc, nulls_first), stable."""
    columns, sort_keys = {}, []
    for i, (value, t, desc, nulls_first) in enumerate(keys):
        col = as_array(value, n_rows)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
            raise FeatureNotSupported(f"ordering by values of type {t.format()} is not supported")
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        nulls = pc.is_null(col, nan_is_null=False)
        # Nulls position per key via an indicator column sorted before the value.
        columns[f"n{i}"] = nulls
        sort_keys.append((f"n{i}", "descending" if nulls_first else "ascending"))
        if pa.types.is_floating(col.type):
            # PostgreSQL sorts NaN above every number.
            nan = pc.fill_null(pc.is_nan(col), False)
            columns[f"x{i}"] = nan
            sort_keys.append((f"x{i}", "descending" if desc else "ascending"))
        columns[f"v{i}"] = col
        sort_keys.append((f"v{i}", "descending" if desc else "ascending"))
    table = pa.table(columns)
    return pc.sort_indices(table, sort_keys=sort_keys)


class DistinctOp(OneRowOp):
    on: list[Value] | None

    def run(self, ctx, outer):
        table = self.children[0].execute(ctx, outer)
        if table.num_rows <= 1:
            return table
        if self.on is None:
            keys = [table.column(i) for i in range(table.num_columns)]
        else:
            frame = Frame(table, ctx, outer)
            keys = [as_array(v(frame), table.num_rows) for v in self.on]
        first = first_of_groups(keys, table.num_rows)
        return table.take(pa.array(first))


def first_of_groups(keys: list, n_rows: int) -> np.ndarray:
    """Positions of the first row of each distinct key combination, in input order."""
    if not keys:
        return np.array([0]) if n_rows else np.empty(0, np.int64)
    cols = {}
    for i, k in enumerate(keys):
        k = k.combine_chunks() if isinstance(k, pa.ChunkedArray) else k
        if pa.types.is_list(k.type) or pa.types.is_fixed_size_list(k.type) or \
                pa.types.is_dictionary(k.type):
            k = pa.array([None if v is None else repr(v) for v in k.to_pylist()], pa.string())
        cols[f"k{i}"] = k
    cols["_pos"] = pa.array(np.arange(n_rows, dtype=np.int64))
    grouped = pa.table(cols).group_by([f"k{i}" for i in range(len(keys))], use_threads=False) \
        .aggregate([("_pos", "min")])
    return np.sort(grouped.column("_pos_min").to_numpy())


# Aggregation and windows ---------------------------------------------------------------------------


class AggregateOp(OneRowOp):
    groups: list[Value]
    specs: list[AggregateSpec]

    def run(self, ctx, outer):
        table = self.children[0].execute(ctx, outer)
        frame = Frame(table, ctx, outer)
        return run_aggregates(frame, self.groups, self.specs, self.types)


class WindowOp(OneRowOp):
    specs: list

    def run(self, ctx, outer):
        table = self.children[0].execute(ctx, outer)
        frame = Frame(table, ctx, outer)
        extra = run_windows(frame, self.specs)
        cols = [table.column(i) for i in range(table.num_columns)] + extra
        return table_of(cols)


# Joins -----------------------------------------------------------------------------------------------


def _split_equi(condition: exp.Expression, left_width: int, c: Compiler):
    """Split an ON condition into equi-join key pairs (left expr, right expr) and a residual."""
    conjuncts = list(condition.flatten()) if isinstance(condition, exp.And) else [condition]
    equi, rest = [], []
    for term in conjuncts:
        if isinstance(term, exp.EQ):
            sides = [_side(term.this, left_width, c), _side(term.expression, left_width, c)]
            if sides == ["left", "right"]:
                equi.append((term.this, term.expression))
                continue
            if sides == ["right", "left"]:
                equi.append((term.expression, term.this))
                continue
        rest.append(term)
    residual = exp.and_(*rest) if rest else None
    return equi, residual


def _side(e: exp.Expression, left_width: int, c: Compiler) -> str | None:
    sides = set()
    for col in e.find_all(exp.Column):
        try:
            level, index = c.scope.resolve(col)
        except SqlVecError:
            return None
        if level != 0:
            continue
        sides.add("left" if index < left_width else "right")
    if any(True for _ in e.find_all(n.SubPlan)):
        return None
    return sides.pop() if len(sides) == 1 else None


def _unify_keys(a: Value, b: Value) -> tuple[Value, Value]:
    if a.type == b.type:
        return a, b
    t = V.common_type([a.type, b.type], "JOIN")
    ca = Value(lambda f: V.cast(a(f), a.type, t, f.n), t) if a.type != t else a
    cb = Value(lambda f: V.cast(b(f), b.type, t, f.n), t) if b.type != t else b
    return ca, cb


class JoinOp(OneRowOp):
    kind: str
    left_width: int
    equi: list[tuple[Value, Value]]
    residual: Value | None

    def run(self, ctx, outer):
        left = self.children[0].execute(ctx, outer)
        right = self.children[1].execute(ctx, outer)
        blocks = self._hash_blocks(ctx, outer, left, right) if self.equi else \
            _cross_blocks(left.num_rows, right.num_rows)
        matched_l, matched_r, total = [], [], 0
        for li, ri in blocks:
            ctx.check()  # a long join stops here on cancel or statement_timeout
            if self.residual is not None and li.size:
                combined = _combine(left, right, li, ri)
                keep = _mask(self.residual(Frame(combined, ctx, outer)), combined.num_rows)
                li, ri = li[keep], ri[keep]
            total += li.size
            if total > MAX_JOIN_ROWS:
                raise SqlVecError(f"join result too large (more than {MAX_JOIN_ROWS} rows)",
                                  sqlstate="54000")
            matched_l.append(li)
            matched_r.append(ri)
        li = np.concatenate(matched_l) if matched_l else np.empty(0, np.int64)
        ri = np.concatenate(matched_r) if matched_r else np.empty(0, np.int64)
        li_out, ri_out = li, ri
        if self.kind in ("left", "full"):
            unmatched = np.setdiff1d(np.arange(left.num_rows), li, assume_unique=False)
            li_out = np.concatenate([li_out, unmatched])
            ri_out = np.concatenate([ri_out, np.full(unmatched.size, -1)])
        if self.kind in ("right", "full"):
            unmatched = np.setdiff1d(np.arange(right.num_rows), ri, assume_unique=False)
            li_out = np.concatenate([li_out, np.full(unmatched.size, -1)])
            ri_out = np.concatenate([ri_out, unmatched])
        return _combine(left, right, li_out, ri_out)

    def _hash_blocks(self, ctx, outer, left, right):
        li, ri = self._hash_pairs(ctx, outer, left, right)
        for start in range(0, max(li.size, 1), JOIN_BLOCK):
            yield li[start:start + JOIN_BLOCK], ri[start:start + JOIN_BLOCK]

    def _hash_pairs(self, ctx, outer, left, right):
        lf, rf = Frame(left, ctx, outer), Frame(right, ctx, outer)
        lk = {f"k{i}": _key(a(lf), left.num_rows) for i, (a, _) in enumerate(self.equi)}
        rk = {f"k{i}": _key(b(rf), right.num_rows) for i, (_, b) in enumerate(self.equi)}
        lk["_l"] = pa.array(np.arange(left.num_rows, dtype=np.int64))
        rk["_r"] = pa.array(np.arange(right.num_rows, dtype=np.int64))
        keys = [f"k{i}" for i in range(len(self.equi))]
        joined = pa.table(lk).join(pa.table(rk), keys, join_type="inner", use_threads=False)
        li = joined.column("_l").to_numpy()
        ri = joined.column("_r").to_numpy()
        order = np.lexsort((ri, li))
        return li[order], ri[order]


def _key(value, n_rows: int):
    col = as_array(value, n_rows)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_decimal(col.type):
        col = V.to_storage(col, V.NUMERIC)  # one decimal type on both sides
    return col


# Join candidates are examined this many pairs at a time (the residual condition, cancel
# checks); the matched pairs a join may produce are capped (its output is materialized).
JOIN_BLOCK = 1 << 20
MAX_JOIN_ROWS = 50_000_000


def _cross_blocks(nl: int, nr: int):
    """All (left, right) row pairs, in blocks of whole left rows."""
    rows_per_block = max(1, JOIN_BLOCK // max(nr, 1))
    for start in range(0, max(nl, 1) if nr else 1, rows_per_block):
        stop = min(start + rows_per_block, nl)
        yield (np.repeat(np.arange(start, stop), nr),
               np.tile(np.arange(nr), max(stop - start, 0)))


def _combine(left: pa.Table, right: pa.Table, li: np.ndarray, ri: np.ndarray) -> pa.Table:
    lidx = pa.array(li, mask=li < 0) if (li < 0).any() else pa.array(li)
    ridx = pa.array(ri, mask=ri < 0) if (ri < 0).any() else pa.array(ri)
    cols = [c.take(lidx) for c in left.columns] + [c.take(ridx) for c in right.columns]
    if not cols:
        return _empty_width(len(li))
    return table_of(cols)


# Set operations and recursion ----------------------------------------------------------------------


class SetOpOp(OneRowOp):
    kind: str
    all: bool

    def run(self, ctx, outer):
        tables = [_conform(child.execute(ctx, outer), child.types, self.types)
                  for child in self.children]
        if self.kind == "union":
            out = pa.concat_tables(tables)
            if not self.all:
                out = out.take(pa.array(first_of_groups(list(out.columns), out.num_rows)))
            return out
        left, right = tables
        return _intersect_except(left, right, self.kind, self.all)


def _conform(table: pa.Table, types: list[SqlType], target: list[SqlType]) -> pa.Table:
    cols = []
    for i, (src, dst) in enumerate(zip(types, target)):
        col = table.column(i)
        if src != dst:
            col = as_array(V.cast(col, src if src.name != "unknown" else TEXT, dst, table.num_rows),
                           table.num_rows)
        if col.type != dst.to_arrow():
            col = _cast_storage(col, dst.to_arrow(), dst)
        cols.append(col)
    return table_of(cols) if cols else table


def _intersect_except(left: pa.Table, right: pa.Table, kind: str, keep_all: bool) -> pa.Table:
    """INTERSECT / EXCEPT [ALL] by counting each distinct row on both sides (NULLs are equal,
    as in PostgreSQL's set operations); rows come out in order of first appearance."""
    from sqlvec.execution.aggregates import group_ids

    both = pa.concat_tables([left, right])
    n_left = left.num_rows
    keys = [_groupable(both.column(i)) for i in range(both.num_columns)]
    gids, first = group_ids(keys, both.num_rows) if keys else (
        np.zeros(both.num_rows, np.int64), np.zeros(1, np.int64))
    ngroups = first.size
    lcount = np.bincount(gids[:n_left], minlength=ngroups)
    rcount = np.bincount(gids[n_left:], minlength=ngroups)
    if kind == "intersect":
        times = np.minimum(lcount, rcount) if keep_all else ((lcount > 0) & (rcount > 0))
    else:
        times = np.maximum(lcount - rcount, 0) if keep_all else ((lcount > 0) & (rcount == 0))
    left_first = first < n_left  # groups seen on the left, by their first left row
    positions = np.repeat(first[left_first], np.asarray(times, np.int64)[left_first])
    return left.take(pa.array(positions.astype(np.int64)))


def _groupable(col):
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
        return pa.array([None if v is None else repr(v) for v in col.to_pylist()], pa.string())
    return col


class RecursiveUnionOp(OneRowOp):
    name: str
    all: bool
    MAX_ITERATIONS = 100_000

    def run(self, ctx, outer):
        anchor, step = self.children
        current = _conform(anchor.execute(ctx, outer), anchor.types, self.types)
        result = [current]
        seen = current if not self.all else None
        if seen is not None:
            current = current.take(pa.array(first_of_groups(list(current.columns), current.num_rows)))
            result, seen = [current], current
        for _ in range(self.MAX_ITERATIONS):
            if current.num_rows == 0:
                break
            ctx.work_tables[self.name] = current
            ctx.subquery_cache.clear()
            produced = _conform(step.execute(ctx, outer), step.types, self.types)
            if not self.all and produced.num_rows:
                both = pa.concat_tables([seen, produced])
                keep = first_of_groups(list(both.columns), both.num_rows)
                keep = keep[keep >= seen.num_rows] - seen.num_rows
                produced = produced.take(pa.array(keep))
                seen = pa.concat_tables([seen, produced])
            result.append(produced)
            current = produced
            ctx.check()
        else:
            raise SqlVecError("recursive query did not terminate", sqlstate="54001")
        ctx.work_tables.pop(self.name, None)
        return pa.concat_tables(result)


class WorkTableOp(OneRowOp):
    name: str

    def run(self, ctx, outer):
        return ctx.work_tables[self.name]


__all__ = ["Builder", "Operator", "sort_indices", "first_of_groups", "table_of", "names", "INT8"]
