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
from sqlvec.execution.aggregates import (
    GROUP_IDS_BYTES,
    AggregateSpec,
    compile_aggregate,
    grouping_bytes,
    run_aggregates,
)
from sqlvec.execution.context import ExecContext, rows_of, table_bytes_per_row
from sqlvec.execution.expressions import CompileEnv, Compiler, Frame
from sqlvec.execution.joins import CrossMatch, KeyMatch, match_bytes
from sqlvec.execution.values import INT8, TEXT, Value, as_array, is_scalar
from sqlvec.execution.windows import compile_window, run_windows
from sqlvec.plan import nodes as n
from sqlvec.sql.binder import Field, Scope
from sqlvec.storage.keys import MISSING
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
        ctx.check_interrupts()
        memory = ctx.memory
        mark = memory.enter(self)
        try:
            if not ctx.analyze:
                out = self.run(ctx, outer)
            else:
                start = time.perf_counter()
                out = self.run(ctx, outer)
                rows, seconds, loops = ctx.stats.get(id(self), (0, 0.0, 0))
                ctx.stats[id(self)] = (rows + out.num_rows,
                                       seconds + time.perf_counter() - start, loops + 1)
        except BaseException:
            memory.leave(mark, failed=True)
            raise
        memory.leave(mark)
        ctx.check_interrupts()
        return out

    @abstractmethod
    def run(self, ctx: ExecContext, outer: Frame | None) -> pa.Table:
        """The node's rows. `execute` wraps this with interrupt checks, the memory account
        (what `run` reserves is released when it returns, but for its output) and ANALYZE
        timing."""

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
        op.key = None
        if node.filter is not None:
            c = self.compiler(list(node.fields), types, outer)
            op.filter = c.condition(node.filter, "WHERE")
            if node.key is not None:
                positions = node.keys[node.key][1]
                key_types = [types[p] for p in positions]
                values = [[c.compile(e) for e in row] for row in node.key_values]
                if all(_key_comparable(v.type, t) for row in values for v, t in zip(row, key_types)):
                    op.key, op.key_positions, op.key_types = node.key, positions, key_types
                    op.key_values = values
                    # The rows the index finds hold exactly the wanted key values (each is
                    # converted to the key's type, or matches nothing): only the rest of the
                    # filter is left to check on them.
                    rest = [cond for cond in n.conjuncts(node.filter)
                            if not any(cond is k for k in node.key_conds)]
                    op.key_filter = c.condition(exp.and_(*rest, copy=False), "WHERE") \
                        if rest else None
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


_WHOLE = object()  # ScanOp._segment_filter: the scan's whole filter


class ScanOp(OneRowOp):
    table_id: int
    filter: Value | None

    def run(self, ctx, outer):
        overlay = ctx.overlay.table_overlay(self.table_id) if ctx.overlay is not None else None
        if self.key is not None and overlay is None:
            filt = self._segment_filter(ctx, outer, self.key_filter)
            snap, parts = self._by_key(ctx, outer)
            filtered = False
        elif self.key is not None:  # the transaction's own rows are not in the index
            filt = self._segment_filter(ctx, outer)
            snap, parts = self._by_key(ctx, outer)
            filtered = False
        else:
            filt = self._segment_filter(ctx, outer)
            snap = ctx.snapshot(self.table_id)
            parts = []
            for part in snap.scan(filter=filt if overlay is None else None, with_rowid=True):
                ctx.check_interrupts()  # a part per segment: a filter over many is long
                parts.append(part)
            filtered = overlay is None
        if overlay is not None:
            parts = overlay.merge(parts, snap)
        if filt is not None and not filtered:
            parts = [_filtered(p, _mask(filt(p), p.num_rows)) for p in parts]
        if not parts:
            return table_of([pa.array([], _arrow(t)) for t in self.types])
        merged = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        # The table's columns in order, then the row id (the last field).
        width = len(self.fields) - 1
        return table_of([merged.column(i) for i in range(width)] + [merged.column(ROWID)])

    def _by_key(self, ctx, outer):
        """The committed rows holding the wanted key values, through the key's index."""
        table = ctx.table_of(self.table_id)
        frame = Frame(_ONE_ROW, ctx, outer)
        if len(self.key_values) == 1 and len(self.key_types) == 1 and \
                self.key_types[0].name in SIMPLE_KEYS:
            # One value of a one-column integer or text key (`WHERE id = $1`): the index is
            # asked for it directly, as the Python value it holds.
            (v,), (t,) = self.key_values[0], self.key_types
            cell = _key_value(v(frame), v.type, t)
            if cell is _NO_MATCH:
                return ctx.snapshot(self.table_id), []
            snap, rowid = ctx.lookup_key(self.table_id, cell, self.key)
            return snap, ([snap.rows_by_id(np.array([rowid]))] if rowid != MISSING else [])
        wanted = [[] for _ in self.key_positions]
        for row in self.key_values:
            cells = [_key_value(v(frame), v.type, t) for v, t in zip(row, self.key_types)]
            if all(c is not _NO_MATCH for c in cells):
                for column, cell in zip(wanted, cells):
                    column.append(cell)
        names = [table.def_.columns[p].name for p in self.key_positions]
        rows = pa.table({name: pa.array(vals, t.to_arrow())
                         for name, vals, t in zip(names, wanted, self.key_types)})
        snap, rowids = ctx.lookup_keys(self.table_id, rows, self.key)
        found = np.unique(rowids[rowids != MISSING])
        return snap, ([snap.rows_by_id(found)] if found.size else [])

    def _segment_filter(self, ctx, outer, predicate=_WHOLE):
        if predicate is _WHOLE:
            predicate = self.filter
        if predicate is None:
            return None

        def fn(table: pa.Table):
            return predicate(Frame(table, ctx, outer))
        return fn


_NO_MATCH = object()
# Key types whose Python values are what the key's index holds (ScanOp._by_key's single value).
SIMPLE_KEYS = frozenset({"int2", "int4", "int8", "text", "varchar"})
_INT_RANGE = {"int2": 1 << 15, "int4": 1 << 31, "int8": 1 << 63}


def _key_comparable(value: SqlType, key: SqlType) -> bool:
    """Whether a value of type `value` can be looked up in a key of type `key` exactly."""
    if value == key or value.name == "unknown":
        return True
    if key.name in _INT_RANGE:
        return value.name in _INT_RANGE or value.name in ("numeric", "float4", "float8")
    return key.name in ("text", "varchar") and value.name in ("text", "varchar")


def _key_value(value, vtype: SqlType, key: SqlType):
    """A looked-up value as the key column holds it; _NO_MATCH when no key can equal it
    (NULL, a fraction or an out-of-range number for an integer key)."""
    if not isinstance(value, pa.Scalar):
        value = value[0]
    if not value.is_valid:
        return _NO_MATCH
    if vtype.name == "unknown":
        value = V.cast(value, TEXT, key, 1)
        if not isinstance(value, pa.Scalar):
            value = value[0]
    py = value.as_py()
    if key.name in _INT_RANGE:
        try:
            if py != int(py):
                return _NO_MATCH
        except (ValueError, OverflowError):  # NaN, infinity
            return _NO_MATCH
        py = int(py)
        bound = _INT_RANGE[key.name]
        return py if -bound <= py < bound else _NO_MATCH
    return py


def _filtered(table: pa.Table, mask: np.ndarray) -> pa.Table:
    if mask.all():  # the common answer for rows found by key: no Arrow call
        return table
    return table.filter(pa.array(mask)) if mask.any() else table.slice(0, 0)


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
        if cols and n_rows:  # computed columns are new memory (known only once computed)
            fresh = _fresh_bytes(cols, table)
            ctx.memory.reserve_output(f"Project ({rows_of(n_rows, fresh / n_rows)} computed)",
                                      fresh, replaces_inputs=False)
        return table_of(cols) if cols else _empty_width(n_rows)


def _fresh_bytes(columns: list, source: pa.Table) -> int:
    """Bytes of the buffers of `columns` that are not `source`'s (columns passed through
    zero-copy cost nothing)."""
    known = {b.address for col in source.columns for chunk in col.chunks
             for b in chunk.buffers() if b is not None}
    total = 0
    for col in columns:
        for chunk in (col.chunks if isinstance(col, pa.ChunkedArray) else [col]):
            total += sum(b.size for b in chunk.buffers() if b is not None and b.address not in known)
    return total


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
        n_rows = table.num_rows
        ctx.memory.reserve_output(f"Sort ({rows_of(n_rows, table_bytes_per_row(table))})",
                                  table.nbytes)
        order = sort_indices([(v(frame), v.type, desc, nulls_first) for v, desc, nulls_first in self.keys],
                             n_rows, ctx)
        return table.take(order)


# Inputs longer than this are sorted in buckets of about this many rows (interruptible).
SORT_RUN_ROWS = 1 << 20
# Working memory of a sort per row, besides its key columns: the order (int64), the bucket
# number and the positions of each bucket.
SORT_BYTES_PER_ROW = 32


def sort_indices(keys: list[tuple], n_rows: int, ctx: ExecContext | None = None) -> pa.Array:
    """Row order for ORDER BY keys (value datum, type, desc, nulls_first), stable.

    With `ctx`, the sort reserves its working memory, and an input of more than
    SORT_RUN_ROWS rows is sorted in buckets (`_bucket_sort`) so that cancel and
    statement_timeout are checked between buckets."""
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
    if ctx is None:
        return pc.sort_indices(table, sort_keys=sort_keys)
    with ctx.memory.temporary(f"Sort ({rows_of(n_rows, SORT_BYTES_PER_ROW)} besides the keys)",
                              n_rows * SORT_BYTES_PER_ROW):
        if n_rows <= SORT_RUN_ROWS:
            return pc.sort_indices(table, sort_keys=sort_keys)
        return _bucket_sort(table, sort_keys, ctx)


def _bucket_sort(table: pa.Table, sort_keys: list[tuple[str, str]], ctx: ExecContext) -> pa.Array:
    """A sample sort: splitter rows drawn from a sample cut the rows into buckets of about
    SORT_RUN_ROWS rows that follow each other in the order; each bucket is sorted on its own.
    A row's bucket is the number of splitters below it (rows with equal keys share it), so
    concatenating the sorted buckets gives the stable order of the whole input."""
    n = table.num_rows
    buckets = -(-n // SORT_RUN_ROWS)
    sample = np.unique(np.random.default_rng(0).integers(0, n, 64 * buckets))
    sample_order = pc.sort_indices(table.take(pa.array(sample)), sort_keys=sort_keys).to_numpy()
    picks = sample[sample_order[(np.arange(1, buckets) * sample.size) // buckets]]
    bucket = np.zeros(n, np.uint16 if buckets < 1 << 16 else np.int64)  # uint16: radix sort
    for start in range(0, n, SORT_RUN_ROWS):
        ctx.check_interrupts()
        part = table.slice(start, SORT_RUN_ROWS)
        for row in picks:
            bucket[start:start + part.num_rows] += _above(part, table, int(row), sort_keys)
    rows_by_bucket = np.argsort(bucket, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(bucket, minlength=buckets))])
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        ctx.check_interrupts()
        rows = rows_by_bucket[lo:hi]
        if rows.size:
            order = pc.sort_indices(table.take(pa.array(rows)), sort_keys=sort_keys).to_numpy()
            out.append(rows[order])
    return pa.array(np.concatenate(out))


def _above(part: pa.Table, table: pa.Table, row: int, sort_keys: list[tuple[str, str]]) -> np.ndarray:
    """Which rows of `part` come strictly after `table`'s row `row` in the sort order."""
    above = np.zeros(part.num_rows, bool)
    tied = np.ones(part.num_rows, bool)
    for name, direction in sort_keys:
        col = part.column(name)
        pivot = table.column(name)[row]
        if not pivot.is_valid:  # a NULL value: its indicator column, sorted before, decides
            tied &= pc.is_null(col).to_numpy(zero_copy_only=False)
            continue
        later = pc.greater(col, pivot) if direction == "ascending" else pc.less(col, pivot)
        same = pc.equal(col, pivot)
        if pa.types.is_floating(col.type) and pivot.as_py() != pivot.as_py():  # NaN = NaN
            same = pc.is_nan(col)
        above |= tied & pc.fill_null(later, False).to_numpy(zero_copy_only=False)
        tied &= pc.fill_null(same, False).to_numpy(zero_copy_only=False)
    return above


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
        first = first_of_groups(keys, table.num_rows, ctx, "Unique")
        return _take_rows(ctx, "Unique", table, first)


def _take_rows(ctx: ExecContext, what: str, table: pa.Table, rows: np.ndarray) -> pa.Table:
    """table.take(rows), its size reserved as the operator's output first."""
    width = table_bytes_per_row(table)
    ctx.memory.reserve_output(f"{what} ({rows_of(rows.size, width)})", rows.size * width)
    return table.take(pa.array(rows, pa.int64()))


def first_of_groups(keys: list, n_rows: int, ctx: ExecContext | None = None,
                    what: str = "Unique") -> np.ndarray:
    """Positions of the first row of each distinct key combination, in input order (with
    `ctx`, the hash table's memory is reserved first, under the name `what`)."""
    if not keys:
        return np.array([0]) if n_rows else np.empty(0, np.int64)
    if ctx is not None:
        ctx.memory.reserve(f"{what} (grouping {n_rows} rows)", grouping_bytes(keys, n_rows))
    cols = {}
    for i, k in enumerate(keys):
        k = k.combine_chunks() if isinstance(k, pa.ChunkedArray) else k
        if pa.types.is_fixed_size_list(k.type) and pa.types.is_floating(k.type.value_type):
            k = _vector_key(k)
        elif pa.types.is_list(k.type) or pa.types.is_fixed_size_list(k.type) or \
                pa.types.is_dictionary(k.type):
            k = pa.array([None if v is None else repr(v) for v in k.to_pylist()], pa.string())
        cols[f"k{i}"] = k
    cols["_pos"] = pa.array(np.arange(n_rows, dtype=np.int64))
    grouped = pa.table(cols).group_by([f"k{i}" for i in range(len(keys))], use_threads=False) \
        .aggregate([("_pos", "min")])
    return np.sort(grouped.column("_pos_min").to_numpy())


def _vector_key(col: pa.FixedSizeListArray) -> pa.Array:
    """Vectors as fixed-size binary values that hash equal when the vectors are equal
    (-0.0 made 0.0; vectors hold no NaN), without a Python object per row."""
    dim = col.type.list_size
    values = col.values.slice(col.offset * dim, len(col) * dim).to_numpy(zero_copy_only=False)
    matrix = np.ascontiguousarray(values.reshape(len(col), dim) + values.dtype.type(0))
    validity = pc.is_valid(col).buffers()[1] if col.null_count else None
    return pa.Array.from_buffers(pa.binary(dim * matrix.itemsize), len(col),
                                 [validity, pa.py_buffer(matrix)])


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
        extra = run_windows(frame, self.specs)  # the input's columns pass through
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
        what = self.node.describe().split("\n")[0]
        match = self._match(ctx, outer, left, right, what) if self.equi else \
            CrossMatch(left.num_rows, right.num_rows)
        width = table_bytes_per_row(left) + table_bytes_per_row(right)
        outer_left, outer_right = self.kind in ("left", "full"), self.kind in ("right", "full")
        matched_left = match.matched_left() if outer_left else None
        matched_right = match.matched_right() if outer_right else None
        if self.residual is None:  # the output's size is known exactly: reserve it up front
            rows = match.total
            rows += int((~matched_left).sum()) if matched_left is not None else 0
            rows += int((~matched_right).sum()) if matched_right is not None else 0
            ctx.memory.reserve_output(f"{what} ({rows_of(rows, width)})", rows * width)
        else:  # which outer rows found a partner is known only after the condition
            matched_left = np.zeros(left.num_rows, bool) if outer_left else None
            matched_right = np.zeros(right.num_rows, bool) if outer_right else None
        # Pairs are taken a block at a time: the block's pairs and rows are working memory,
        # and the statement can be interrupted between blocks.
        block = max(1024, JOIN_BLOCK_BYTES // max(1, int(width) + 16))
        pieces = []
        for start in range(0, match.total, block):
            ctx.check_interrupts()
            li, ri = match.pairs(start, min(start + block, match.total))
            piece = _combine(left, right, li, ri)
            if self.residual is not None:
                keep = _mask(self.residual(Frame(piece, ctx, outer)), piece.num_rows)
                piece = piece.filter(pa.array(keep))
                ctx.memory.reserve_output(f"{what} ({rows_of(piece.num_rows, width)})",
                                          piece.nbytes)
                if matched_left is not None:
                    matched_left[li[keep]] = True
                if matched_right is not None:
                    matched_right[ri[keep]] = True
            pieces.append(piece)
        for matched, is_left in ((matched_left, True), (matched_right, False)):
            if matched is None:
                continue
            unmatched = np.flatnonzero(~matched)
            if self.residual is not None:
                ctx.memory.reserve_output(f"{what} ({rows_of(unmatched.size, width)})",
                                          unmatched.size * width)
            nulls = np.full(unmatched.size, -1)
            pieces.append(_combine(left, right, unmatched, nulls) if is_left else
                          _combine(left, right, nulls, unmatched))
        if not pieces:
            return _combine(left, right, np.empty(0, np.int64), np.empty(0, np.int64))
        return pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]

    def _match(self, ctx, outer, left, right, what):
        lf, rf = Frame(left, ctx, outer), Frame(right, ctx, outer)
        lk = [_key(a(lf), left.num_rows) for a, _ in self.equi]
        rk = [_key(b(rf), right.num_rows) for _, b in self.equi]
        ctx.memory.reserve(f"{what} (matching keys of {left.num_rows} and {right.num_rows} rows)",
                           match_bytes(lk, rk))
        return KeyMatch(lk, rk, left.num_rows, right.num_rows)


def _key(value, n_rows: int):
    col = as_array(value, n_rows)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_decimal(col.type):
        col = V.to_storage(col, V.NUMERIC)  # one decimal type on both sides
    return col


# A join takes its pairs this many bytes of output at a time (the residual condition is
# evaluated per block; cancel and statement_timeout are checked between blocks).
JOIN_BLOCK_BYTES = 32 << 20


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
        what = self.node.describe().split("\n")[0]
        if self.kind == "union":
            out = pa.concat_tables(tables)  # zero-copy: the inputs stay held
            if not self.all:
                out = _take_rows(ctx, what, out,
                                 first_of_groups(list(out.columns), out.num_rows, ctx, what))
            return out
        left, right = tables
        return _intersect_except(ctx, what, left, right, self.kind, self.all)


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


def _intersect_except(ctx: ExecContext, what: str, left: pa.Table, right: pa.Table, kind: str,
                      keep_all: bool) -> pa.Table:
    """INTERSECT / EXCEPT [ALL] by counting each distinct row on both sides (NULLs are equal,
    as in PostgreSQL's set operations); rows come out in order of first appearance."""
    from sqlvec.execution.aggregates import group_ids

    both = pa.concat_tables([left, right])
    n_left = left.num_rows
    keys = [_groupable(both.column(i)) for i in range(both.num_columns)]
    ctx.memory.reserve(f"{what} (grouping {both.num_rows} rows)",
                       grouping_bytes(keys, both.num_rows, GROUP_IDS_BYTES))
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
    times = np.asarray(times, np.int64)[left_first]
    width = table_bytes_per_row(left)
    ctx.memory.reserve_output(f"{what} ({rows_of(int(times.sum()), width)})",
                              int(times.sum()) * width)
    return left.take(pa.array(np.repeat(first[left_first], times).astype(np.int64)))


def _groupable(col):
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_fixed_size_list(col.type) and pa.types.is_floating(col.type.value_type):
        return _vector_key(col)
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
                with ctx.memory.temporary(f"Recursive Union (grouping {both.num_rows} rows)",
                                          grouping_bytes(list(both.columns), both.num_rows)):
                    keep = first_of_groups(list(both.columns), both.num_rows)
                keep = keep[keep >= seen.num_rows] - seen.num_rows
                produced = produced.take(pa.array(keep))
                seen = pa.concat_tables([seen, produced])
            result.append(produced)
            current = produced
            ctx.check_interrupts()
        else:
            raise SqlVecError("recursive query did not terminate", sqlstate="54001")
        ctx.work_tables.pop(self.name, None)
        return pa.concat_tables(result)


class WorkTableOp(OneRowOp):
    name: str

    def run(self, ctx, outer):
        return ctx.work_tables[self.name]


__all__ = ["Builder", "Operator", "sort_indices", "first_of_groups", "table_of", "names", "INT8"]
