"""Physical operators: each plan node becomes an operator that computes an Arrow table
(`builder.py` makes them from a plan; `operator.execute(ctx)` runs one). Operators materialize
their output as one Arrow table, column i named str(i) (SQL allows duplicate names; Arrow joins
and group-bys do not like them); the session renames at the end.

Joins, aggregates, sorts and set operations are vectorized with pyarrow (hash join on key
columns, Table.group_by, sort_indices) and NumPy; no operator loops over rows in Python except
correlated subqueries (expressions/subqueries.py) and recursive CTE iterations.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

import numpy as np
import pyarrow as pa

from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.execution import index_scan
from sqlvec.execution import values as V
from sqlvec.execution.aggregates import AggregateSpec, run_aggregates
from sqlvec.execution.context import ExecContext, rows_of, table_bytes_per_row
from sqlvec.execution.expressions import Frame
from sqlvec.execution.joins import CrossMatch, KeyMatch, match_bytes
from sqlvec.execution.kernels import (
    GROUP_IDS_BYTES,
    empty_width,
    first_of_groups,
    group_ids,
    grouping_bytes,
    sort_indices,
    table_of,
    vector_key,
)
from sqlvec.execution.values import TEXT, Value, as_array, is_scalar
from sqlvec.execution.windows import run_windows
from sqlvec.plan import nodes as n
from sqlvec.sql.binder import Field, Scope
from sqlvec.storage.keys import MISSING
from sqlvec.storage.schema import ROWID
from sqlvec.storage.table import mask_of
from sqlvec.types import SqlType


class Operator(ABC):
    """A compiled plan node."""

    node: n.PlanNode
    fields: list[Field]
    types: list[SqlType]
    children: list[Operator]

    def execute(self, ctx: ExecContext, outer: Frame | None = None) -> pa.Table:
        """Run the node under the statement's discipline: checks for cancel and timeout, the memory
        account, and ANALYZE's row counts and timings. Callers use this, never `run`."""
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
        """The names the operator's output exposes to expressions compiled above it."""
        return Scope(list(self.fields), parent)


# Leaf operators --------------------------------------------------------------------------------------


class OneRowOp(Operator):
    """SELECT without FROM: one row of no columns. Its plain constructor is the one the other
    operators share, their own fields being set by the builder."""

    def __init__(self, fields, types, children):
        self.fields, self.types, self.children = fields, types, children

    def run(self, ctx, outer):
        return empty_width(1)


_WHOLE = object()  # ScanOp._segment_filter: the scan's whole filter


class ScanOp(OneRowOp):
    """A base table's live rows as this statement's snapshot sees them, with its own uncommitted
    writes overlaid and the filter applied while reading."""

    table_id: int
    filter: Value | None
    paths: list = []  # btree index paths (index_scan.CompiledPath), decided per run
    paths_correlated = False  # their values read an outer row

    def run(self, ctx, outer):
        overlay = ctx.overlay.table_overlay(self.table_id) if ctx.overlay is not None else None
        if self.key is not None:
            # The transaction's own rows are not in the index: found through its own index
            # of their keys where it can (`keyed`), else merged whole and filtered.
            keyed = overlay is not None and overlay.keyed(self.key)
            filt = self._segment_filter(ctx, outer, self.key_filter) \
                if overlay is None or keyed else self._segment_filter(ctx, outer)
            snap, parts = self._by_key(ctx, outer, overlay if keyed else None)
            if keyed:
                overlay = None  # merged already
            filtered = False
            fetched = sum(p.num_rows for p in parts)
            ctx.table_stats(self.table_id).index_scanned(self.key_name, fetched, fetched)
        else:
            filt = self._segment_filter(ctx, outer)
            snap = ctx.snapshot(self.table_id)
            choice = self.index_choice(ctx, outer, snap)
            if choice is not None:  # a btree index selects few rows: read those
                parts = index_scan.read(choice, snap)
                ctx.table_stats(self.table_id).index_scanned(
                    choice.path.index, choice.selected, choice.selected)
                filtered = False
            else:
                ctx.table_stats(self.table_id).scanned(snap.row_count)
                parts = []
                for part in snap.scan(filter=filt if overlay is None else None,
                                      with_rowid=True):
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

    def index_choice(self, ctx, outer, snap):
        """The btree index path this run reads through (index_scan.py), or None to scan;
        EXPLAIN ANALYZE keeps it to show what ran."""
        if not self.paths:
            return None
        choice = index_scan.choose(self, ctx, outer, snap)
        if ctx.analyze:
            ctx.stats[("index", id(self))] = choice
        return choice

    def search_filter(self, ctx, outer, snap):
        """The filter a vector search of this scan applies per segment: through a btree
        index where one selects few rows (index_scan.search_filter)."""
        filt = self._segment_filter(ctx, outer)
        choice = self.index_choice(ctx, outer, snap) if filt is not None else None
        return filt if choice is None else index_scan.search_filter(choice, filt)

    def _by_key(self, ctx, outer, overlay=None):
        """The committed rows holding the wanted key values, through the key's index; with
        `overlay` (`TableOverlay.keyed`), merged with the transaction's own rows holding them."""
        table = ctx.table_of(self.table_id)
        frame = Frame(empty_width(1), ctx, outer)
        if len(self.key_values) == 1 and len(self.key_types) == 1 and \
                self.key_types[0].name in SIMPLE_KEYS:
            # One value of a one-column integer or text key (`WHERE id = $1`): the index is
            # asked for it directly, as the Python value it holds.
            (v,), (t,) = self.key_values[0], self.key_types
            cell = _key_value(v(frame), v.type, t)
            if cell is _NO_MATCH:
                return ctx.snapshot(self.table_id), []
            snap, rowid = ctx.lookup_key(self.table_id, cell, self.key)
            parts = [snap.rows_by_id(np.array([rowid]))] if rowid != MISSING else []
            if overlay is not None:
                parts = overlay.found_by_key(parts, [overlay.own_keys(self.key).get(cell)])
            return snap, parts
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
        parts = [snap.rows_by_id(found)] if found.size else []
        if overlay is not None:
            own = overlay.own_keys(self.key).lookup(table.key_values(rows, self.key))
            parts = overlay.found_by_key(parts, np.unique(own[own != MISSING]).tolist())
        return snap, parts

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


def key_comparable(value: SqlType, key: SqlType) -> bool:
    """Whether a value of type `value` can be looked up in a key of type `key` exactly."""
    if value == key or value.name == "unknown":
        return True
    if key.name in V.INT_BOUND:
        return value.name in V.INT_BOUND or value.name in ("numeric", "float4", "float8")
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
    if key.name in V.INT_BOUND:
        try:
            if py != int(py):
                return _NO_MATCH
        except (ValueError, OverflowError):  # NaN, infinity
            return _NO_MATCH
        py = int(py)
        bound = V.INT_BOUND[key.name]
        return py if -bound <= py < bound else _NO_MATCH
    return py


def _filtered(table: pa.Table, mask: np.ndarray) -> pa.Table:
    if mask.all():  # the common answer for rows found by key: no Arrow call
        return table
    return table.filter(pa.array(mask)) if mask.any() else table.slice(0, 0)


def _mask(result, n: int) -> np.ndarray:
    return mask_of(result, n)


def _arrow(t: SqlType | None) -> pa.DataType:
    return (t or TEXT).to_arrow()


class VirtualScanOp(OneRowOp):
    """A pg_catalog or information_schema table, built from the live catalog when the statement
    runs."""

    name: str

    def run(self, ctx, outer):
        if ctx.virtual_table is None:
            raise FeatureNotSupported(f"catalog table {self.name} is not available")
        table = ctx.virtual_table(self.name)
        cols = []
        for i, t in enumerate(self.types):
            if i >= table.num_columns:  # the hidden row id: the row's position
                cols.append(pa.array(np.arange(table.num_rows, dtype=np.int64)))
                continue
            col = table.column(i)
            if col.type != t.to_arrow():
                col = col.cast(t.to_arrow())
            cols.append(col)
        return table_of(cols) if cols else empty_width(table.num_rows)


class ValuesOp(OneRowOp):
    """A VALUES list, each row's expressions evaluated against the outer row if any."""

    rows: list[list[Value]]

    def run(self, ctx, outer):
        frame = Frame(empty_width(1), ctx, outer)
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
        return table_of(columns) if columns else empty_width(len(self.rows))


# Row-wise operators ----------------------------------------------------------------------------------


class FilterOp(OneRowOp):
    """Keeps rows whose predicate is true; NULL and false both drop the row."""

    predicate: Value

    def run(self, ctx, outer):
        table = self.children[0].execute(ctx, outer)
        if table.num_rows == 0:
            return table
        mask = _mask(self.predicate(Frame(table, ctx, outer)), table.num_rows)
        return table.filter(pa.array(mask))


class ProjectOp(OneRowOp):
    """Evaluates the select list, each column cast to its storage type so the output's schema is
    fixed at build time."""

    exprs: list[Value]
    arrow_types: list[pa.DataType]  # the storage type of each expression, known at build

    # Output of a projection of constants over one row (SELECT 1): computed once, as its
    # constants are folded once; (table, bytes it reserves).
    _constant_output: tuple[pa.Table, int] | None = None

    def run(self, ctx, outer):
        table = self.children[0].execute(ctx, outer)
        constant = self._constant_output
        if constant is not None:
            ctx.memory.reserve_output(f"Project ({rows_of(1, constant[1])} computed)",
                                      constant[1], replaces_inputs=False)
            return constant[0]
        out = self._project(table, ctx, outer)
        if table.num_rows == 1 and table.num_columns == 0 and type(self.children[0]) is OneRowOp \
                and self.exprs and all(v.const for v in self.exprs):
            self._constant_output = (out, _fresh_bytes(out.columns, table))
        return out

    def _project(self, table, ctx, outer):
        frame = Frame(table, ctx, outer)
        n_rows = table.num_rows
        cols = []
        copied = False  # whether some column is not one of the input's passed through
        for v, arrow in zip(self.exprs, self.arrow_types):
            out = v(frame)
            col = as_array(out, n_rows)
            if col.type != arrow:
                col = cast_storage(col, arrow, v.type)
                copied = True
            elif v.column is None:
                copied = True
            cols.append(col)
        if cols and n_rows and copied:  # computed columns are new memory (known once computed)
            fresh = _fresh_bytes(cols, table)
            ctx.memory.reserve_output(f"Project ({rows_of(n_rows, fresh / n_rows)} computed)",
                                      fresh, replaces_inputs=False)
        return table_of(cols) if cols else empty_width(n_rows)


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


def cast_storage(col, arrow, t: SqlType):
    """A column as `t`'s storage type `arrow` (what a projection outputs)."""
    try:
        return V.to_storage(col, t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if t.name == "vector" and (pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type)):
            return col
        raise


class RenameOp(OneRowOp):
    """A subquery in FROM: the child's columns, those it keeps, under the new names (no copy)."""

    keep: list[int]

    def run(self, ctx, outer):
        table = self.children[0].execute(ctx, outer)
        if not self.keep:
            return empty_width(table.num_rows)
        return table_of([table.column(i) for i in self.keep])


class LimitOp(OneRowOp):
    """LIMIT and OFFSET, evaluated per execution so parameters bind; negative values fail as
    PostgreSQL's do."""

    limit: Value | None
    offset: Value | None

    def run(self, ctx, outer):
        table = self.children[0].execute(ctx, outer)
        start, count = self.bounds(ctx, outer)
        return table.slice(start, count) if count is not None else table.slice(start)

    def bounds(self, ctx, outer) -> tuple[int, int | None]:
        """(OFFSET, LIMIT) of this run: the rows to skip and how many to keep (None: all)."""
        frame = Frame(empty_width(1), ctx, outer)
        start = 0
        if self.offset is not None:
            start = self.offset(frame).as_py() or 0
            if start < 0:
                raise SqlVecError("OFFSET must not be negative", sqlstate="2201X")
        count = None
        if self.limit is not None:
            count = self.limit(frame).as_py()
            if count is not None and count < 0:
                raise SqlVecError("LIMIT must not be negative", sqlstate="2201W")
        return start, count


class SortOp(OneRowOp):
    """ORDER BY: a stable sort, so equal keys keep their input order."""

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


class DistinctOp(OneRowOp):
    """DISTINCT (whole rows) or DISTINCT ON: the first row of each group, in input order."""

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


# Aggregation and windows ---------------------------------------------------------------------------


class AggregateOp(OneRowOp):
    """GROUP BY and aggregates; with no groups, one row even over no input (count 0, sum NULL)."""

    groups: list[Value]
    specs: list[AggregateSpec]

    def run(self, ctx, outer):
        table = self.children[0].execute(ctx, outer)
        frame = Frame(table, ctx, outer)
        return run_aggregates(frame, self.groups, self.specs, self.types)


class WindowOp(OneRowOp):
    """Window functions: the child's rows with one column added per window call, row order
    unchanged."""

    specs: list

    def run(self, ctx, outer):
        table = self.children[0].execute(ctx, outer)
        frame = Frame(table, ctx, outer)
        extra = run_windows(frame, self.specs)  # the input's columns pass through
        cols = [table.column(i) for i in range(table.num_columns)] + extra
        return table_of(cols)


# Joins -----------------------------------------------------------------------------------------------


class JoinOp(OneRowOp):
    """Joins of every kind: hash matching on the equality keys, the residual condition per pair, and
    outer rows kept unmatched; pairs are produced a block at a time so memory stays bounded and
    cancel stays prompt."""

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
        return empty_width(len(li))
    return table_of(cols)


# Set operations and recursion ----------------------------------------------------------------------


class SetOpOp(OneRowOp):
    """UNION, INTERSECT and EXCEPT, with or without ALL; inputs are first cast to the result's
    column types."""

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
            col = cast_storage(col, dst.to_arrow(), dst)
        cols.append(col)
    return table_of(cols) if cols else table


def _intersect_except(ctx: ExecContext, what: str, left: pa.Table, right: pa.Table, kind: str,
                      keep_all: bool) -> pa.Table:
    """INTERSECT / EXCEPT [ALL] by counting each distinct row on both sides (NULLs are equal,
    as in PostgreSQL's set operations); rows come out in order of first appearance."""
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
        return vector_key(col)
    if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
        return pa.array([None if v is None else repr(v) for v in col.to_pylist()], pa.string())
    return col


class RecursiveUnionOp(OneRowOp):
    """WITH RECURSIVE: repeats the recursive term over the previous iteration's rows until it yields
    none, with a bound on iterations so a runaway query ends with an error."""

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
    """The previous iteration's rows inside a recursive CTE."""

    name: str

    def run(self, ctx, outer):
        return ctx.work_tables[self.name]


