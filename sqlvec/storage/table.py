"""A table: the growing segment, the sealed segments and their deletes — our TableProvider.

Writers go through the store's commit pipeline (store.py): `prepare` validates a commit's ops
against the applied state plus the *claims* of commits already in flight (unique keys, deleted
rows) and registers its own claim, the WAL makes the record durable, and `apply` makes it
visible (then `release` drops the claim). Readers call `snapshot()` and get an immutable
`TableSnapshot` (segment list + delete bitmaps) that later writes never change, so reads never
block writes and never see half of a commit.

Each unique key has an index of the applied rows (keys.py), kept in step by `apply`; the layers
above ask it narrow questions (`find_keys`, `lookup_keys`, `still_live`), each costing the rows
asked about, never the table.
"""

from __future__ import annotations

import bisect
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlvec.errors import (
    DataException,
    NotNullViolation,
    SerializationFailure,
    SqlVecError,
    UndefinedColumn,
    UniqueViolation,
)
from sqlvec.float_order import pg_float_compare
from sqlvec.storage import access_methods
from sqlvec.storage.deletes import DeleteBitmap
from sqlvec.storage.keys import MISSING, HashKeyIndex, KeyIndex
from sqlvec.storage.memtable import GrowingData, Memtable
from sqlvec.storage.row_locks import (
    NO_KEY_UPDATE,
    UPDATE,
    KeyLocked,
    RowLocked,
    conflicting,
    held_mode,
    pass_on,
)
from sqlvec.storage.schema import ROWID, ColumnDef, IndexDef, KeyDef, TableDef
from sqlvec.storage.search import (
    SearchPolicy,
    SegmentPlan,
    SegmentSearch,
    plan_segment,
    read_max_ef,
    run_all,
    run_segment,
    search_knobs,
)
from sqlvec.storage.segment import KEY_SEPARATOR, Segment, SegmentData, SegmentView, key_name
from sqlvec.storage.wal import (
    DeleteOp,
    InsertOp,
    InsertRunOp,
    RowInsertOp,
    TruncateOp,
    row_types,
)
from sqlvec.types import SqlType, format_float4
from sqlvec.vectors import Metric, SparseRows

# A filter receives a segment's rows (logical column names, then the row id, as a scan returns
# them) and returns a bool mask; NULL counts as false. Built above storage (the SQL layer
# compiles WHERE into one; it may read the row id, as `WHERE ctid = ...` does).
RowFilter = Callable[[pa.Table], "np.ndarray | pa.Array | pa.ChunkedArray"]


def logical_table(view: SegmentView, table_def: TableDef, columns: Sequence[str] | None,
                  with_rowid: bool = False) -> pa.Table:
    """A segment's rows under SQL column names, including deleted ones (callers mask them)."""
    cols = table_def.columns if columns is None else [table_def.column(c) for c in columns]
    arrays = [view.data.column(c.physical, c.type.to_arrow(), c.missing_value) for c in cols]
    names = [c.name for c in cols]
    if with_rowid:
        arrays.append(pa.chunked_array([pa.array(view.data.rowids, pa.int64())]))
        names.append(ROWID)
    if not arrays:
        return pa.table({ROWID: pa.array(view.data.rowids, pa.int64())}).select([])
    return pa.Table.from_arrays(arrays, names=names)


def row_table(view: SegmentView, table_def: TableDef, columns: Sequence[str] | None,
              with_rowid: bool, position: int, found: bool = True) -> pa.Table:
    """`logical_table(...).slice(position, 1)` (or of 0 rows when not `found`), built from
    one-row slices of just the columns asked for."""
    cols = table_def.columns if columns is None else [table_def.column(c) for c in columns]
    length = 1 if found else 0
    data = view.data
    if isinstance(data, GrowingData):
        arrays = [data.column_slice(c.physical, c.type.to_arrow(), c.missing_value, position,
                                    length) for c in cols]
    else:
        arrays = [data.column(c.physical, c.type.to_arrow(), c.missing_value).slice(position,
                                                                                    length)
                  for c in cols]
    names = [c.name for c in cols]
    if with_rowid:
        ids = [int(data.rowids[position])] if found else []
        arrays.append(pa.chunked_array([pa.array(ids, pa.int64())], pa.int64()))
        names.append(ROWID)
    if not arrays:
        return logical_table(view, table_def, columns, with_rowid).slice(position, length)
    return pa.Table.from_arrays(arrays, names=names)


# Keyed by Arrow type id: hashing a DataType, or building pa.string() to compare with, costs
# more than packing the value.
_FIXED = {pa.int64().id: struct.Struct("<q"), pa.int32().id: struct.Struct("<i"),
          pa.int16().id: struct.Struct("<h"), pa.float64().id: struct.Struct("<d")}
_STRING_ID = pa.string().id
_OFFSETS = struct.Struct("<ii")

# What the last one-row write of this thread already knows, so that its commit need not read it
# back out of Arrow objects (wrapping one column of a batch costs ~2 µs, reading a value from it
# as much again): `batch`, the one-row batch `coerce_arrays` made, with `arrays`, its columns,
# and `values`, per column the Python value the caller put in it (`UNKNOWN` where not given);
# `located`, (row id, the UniqueKey, the key as its index holds it) of the row `row_of_key`
# found last.
# Facts about one batch object or one row id (a row's key never changes: an UPDATE writes a
# new row), so a stale hint is never wrong, only unused.
_hint = threading.local()
UNKNOWN = object()


def forget_located() -> None:
    """Drop this thread's `located` hint once its transaction is over: it holds the segment
    the row lay in (and the table and key index), which a compaction or a reload may replace
    meanwhile, and an idle connection's thread would keep it until its next write."""
    _hint.located = None


def one_value_array(value: object, arrow: pa.DataType) -> pa.Array:
    """A one-row array of a non-NULL value already of `arrow`'s Python type: `pa.array` with
    its buffers packed directly (a third of the cost, which single-row writes pay per column).
    Integers out of range raise as `pa.array` does."""
    type_id = arrow.id
    packer = _FIXED.get(type_id)
    try:
        if packer is not None:
            return pa.Array.from_buffers(arrow, 1, [None, pa.py_buffer(packer.pack(value))])
        if type_id == _STRING_ID and type(value) is str:
            data = value.encode()
            return pa.Array.from_buffers(arrow, 1, [None, pa.py_buffer(_OFFSETS.pack(
                0, len(data))), pa.py_buffer(data)])
    except struct.error:
        pass
    return pa.array((value,), arrow)


def value_at(data: SegmentData, col: ColumnDef, position: int) -> object:
    """The Python value of one column of one row of a segment."""
    return data.value(col.physical, col.arrow, col.missing_value, position)


def _position_in(seg: Segment, rowid: int) -> int:
    """Position of the row with this id in a sealed segment (deleted or not), or -1: a
    single-row write's lookup, in Python ints. When every row id between the segment's bounds
    is in it (a load, a seal with no delete since) the position is the distance from the
    first, no search."""
    first, last = seg.rowid_bounds
    if not first <= rowid <= last:
        return -1
    if last - first + 1 == seg.n_rows:
        return rowid - first
    ids = seg.rowids
    position = int(ids.searchsorted(rowid))
    return position if ids[position] == rowid else -1


def mask_of(result: np.ndarray | pa.Array | pa.ChunkedArray | bool, n: int) -> np.ndarray:
    """A filter's result as a plain bool ndarray (NULL → false, scalar broadcast)."""
    if isinstance(result, (bool, np.bool_)):
        return np.full(n, bool(result))
    if isinstance(result, pa.Scalar):
        return np.full(n, bool(result.as_py()))
    if isinstance(result, (pa.Array, pa.ChunkedArray)):
        if result.null_count:
            result = pc.fill_null(result, False)
        if result.type == _BOOL:
            return _unpacked(result)
        return result.to_numpy(zero_copy_only=False).astype(bool, copy=False)
    return np.asarray(result, dtype=bool)


_BOOL = pa.bool_()


def _unpacked(result: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow boolean array without NULLs as a NumPy bool array: its bitmap unpacked in
    one call. (Arrow's own conversion goes through a per-element loop: over 100,000 rows,
    as a filtered vector search evaluates per query, it cost several times the compare.)"""
    chunks = result.chunks if isinstance(result, pa.ChunkedArray) else [result]
    parts = []
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        bits = np.frombuffer(chunk.buffers()[1], np.uint8)
        parts.append(np.unpackbits(bits, count=chunk.offset + len(chunk),
                                   bitorder="little")[chunk.offset:].view(np.bool_))
    if not parts:
        return np.zeros(0, np.bool_)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def filter_mask(filter: RowFilter, view: SegmentView, table_def: TableDef) -> np.ndarray:
    """The rows of `view`'s segment passing `filter`, deleted ones included (callers mask
    them): through the filter's own NumPy form when it has one that reads this segment
    (`ComparedColumns`), else over the segment's Arrow table."""
    segment_mask = getattr(filter, "segment_mask", None)
    mask = segment_mask(view.data) if segment_mask is not None else None
    if mask is None:
        mask = mask_of(filter(logical_table(view, table_def, None, with_rowid=True)),
                       view.data.n_rows)
    return mask


@dataclass(frozen=True)
class ComparedColumns:
    """A filter that is a conjunction of `column op constant` on integer or float columns,
    each constant of its column's own type (`WHERE price < $1`, as a prepared filtered vector
    search binds it). `segment_mask` compares a segment's columns as NumPy arrays, one call per
    term; called, it is the general filter (`general`), which builds the segment's Arrow table
    and compares through Arrow: several times slower over a segment's 100,000 rows, paid per
    query. Both compare floats in PostgreSQL's order (NaN equal to NaN and above every other
    value: `sqlvec.float_order`), so the same rows pass."""

    general: RowFilter
    # (physical column, its Arrow type, the comparison's name for `pg_float_compare`: less,
    # equal ..., the constant as a NumPy scalar of the column's type)
    terms: tuple[tuple[str, pa.DataType, str, np.ndarray], ...]

    def __call__(self, table: pa.Table) -> np.ndarray | pa.Array | pa.ChunkedArray:
        return self.general(table)

    def segment_mask(self, data: SegmentData | GrowingData) -> np.ndarray | None:
        """The rows of `data` passing every term; None when a column is not one array without
        NULLs there (several chunks, a column the segment predates): the general filter
        decides then."""
        mask = None
        for physical, arrow_type, op, constant in self.terms:
            if not data.has_column(physical):
                return None
            column = data.column(physical, arrow_type)
            if column.num_chunks != 1 or column.null_count:
                return None
            passed = pg_float_compare(op, column.chunk(0).to_numpy(zero_copy_only=True), constant)
            mask = passed if mask is None else np.logical_and(mask, passed, out=mask)
        return mask


@dataclass(frozen=True)
class SearchKey:
    """What a vector search reads per segment: a vector column, or an expression index's key
    (the column cast), with its type (dimensions, element type)."""

    physical: str
    type: SqlType

    @property
    def dims(self) -> int:
        """A vector's dimensions, or a bit string's length."""
        return self.type.typmod if self.type.name == "bit" else int(self.type.dims or 0)


@dataclass(frozen=True)
class TableSnapshot:
    """An immutable view of a table for one reader."""

    table_def: TableDef
    sealed: tuple[SegmentView, ...]
    growing: SegmentView
    # The table's count of key removals when the snapshot was taken (Table.lookup_keys).
    key_epoch: int = 0
    # What repeated searches of this snapshot derive from it alone (the index a column and
    # metric use, unfiltered search plans): a prepared top-k query between commits plans once.
    # Any commit, seal, compaction or DDL makes a new snapshot, which starts empty.
    _memo: dict = field(default_factory=dict, compare=False, repr=False)
    _kept: dict = field(default_factory=dict, compare=False, repr=False)  # `keep`'s

    # Properties ---------------------------------------------------------------------------------

    @property
    def views(self) -> tuple[SegmentView, ...]:
        return self.sealed + (self.growing,)

    @property
    def row_count(self) -> int:
        """Live rows (deleted rows excluded)."""
        return sum(v.live_count for v in self.views)

    # Rows by id -------------------------------------------------------------------------------

    @cached_property
    def _ranges(self) -> tuple[np.ndarray, list[int], list[int]] | None:
        """First row id of each non-empty view (as an array and a list) and the view's index,
        or None when the views are not in row id order (then `locate` asks every view)."""
        all_views = self.views
        views = [i for i, v in enumerate(all_views) if v.data.n_rows]
        starts = [int(all_views[i].data.rowids[0]) for i in views]
        ends = [int(all_views[i].data.rowids[-1]) for i in views]
        if any(s <= e for s, e in zip(starts[1:], ends[:-1])):
            return None
        return np.array(starts, dtype=np.int64), starts, views

    def locate(self, rowids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(view index, position) of each row id among the live rows; view -1 where the row is
        absent or deleted. Costs O(log) per row id: views are in row id order."""
        rowids = np.asarray(rowids, dtype=np.int64).reshape(-1)
        if rowids.size <= _FEW:
            pairs = [self._locate_one(r) for r in rowids.tolist()]
            return (np.array([w for w, _ in pairs], np.int64),
                    np.array([p for _, p in pairs], np.int64))
        where = np.full(rowids.size, -1, np.int64)
        positions = np.zeros(rowids.size, np.int64)
        ranges = self._ranges
        if ranges is None:
            groups = [(i, np.arange(rowids.size)) for i in range(len(self.views))]
        else:
            starts, _, views = ranges
            slot = np.searchsorted(starts, rowids, side="right") - 1
            groups = [(views[s], np.flatnonzero(slot == s)) for s in np.unique(slot[slot >= 0])]
        for i, sel in groups:
            view = self.views[i]
            found, pos = view.data.positions_of(rowids[sel])
            if view.deletes.count:
                found &= ~view.deletes.is_deleted(pos)
            where[sel[found]] = i
            positions[sel[found]] = pos[found]
        return where, positions

    def _locate_one(self, rowid: int) -> tuple[int, int]:
        ranges = self._ranges
        if ranges is None:
            candidates = range(len(self.views))
        else:
            slot = bisect.bisect_right(ranges[1], rowid) - 1
            candidates = [ranges[2][slot]] if slot >= 0 else []
        for i in candidates:
            view = self.views[i]
            ids = view.data.rowids
            pos = int(ids.searchsorted(rowid))
            if pos < ids.size and ids[pos] == rowid:
                if view.deletes.count and view.deletes.is_deleted_one(pos):
                    return -1, 0
                return i, pos
        return -1, 0

    def all_live(self, rowids: np.ndarray) -> bool:
        """Whether every row id is live in this snapshot (a write's check that its targets were not
        deleted meanwhile)."""
        if rowids.size <= _FEW:  # (a block's single-row write locking its row)
            return all(self._locate_one(r)[0] >= 0 for r in rowids.tolist())
        return bool((self.locate(rowids)[0] >= 0).all())

    def rows_by_id(self, rowids: np.ndarray, columns: Sequence[str] | None = None,
                   with_rowid: bool = True) -> pa.Table:
        """The live rows with these ids, in the order given (absent or deleted ones left out)."""
        rowids = np.asarray(rowids, dtype=np.int64).reshape(-1)
        if rowids.size == 1:  # one row: sliced column by column, not taken from a whole view
            i, position = self._locate_one(int(rowids[0]))
            view = self.views[i] if i >= 0 else self.growing
            return row_table(view, self.table_def, columns, with_rowid, position, i >= 0)
        where, pos = self.locate(rowids)
        parts, order = [], []
        for i in np.unique(where[where >= 0]).tolist():
            sel = np.flatnonzero(where == i)
            table = logical_table(self.views[i], self.table_def, columns, with_rowid)
            parts.append(_take(table, pos[sel]))
            order.append(sel)
        if not parts:
            return logical_table(self.growing, self.table_def, columns, with_rowid).slice(0, 0)
        if len(parts) == 1:
            return parts[0]
        merged = pa.concat_tables(parts)
        return merged.take(pa.array(np.argsort(np.concatenate(order), kind="stable")))

    # Reads --------------------------------------------------------------------------------------

    def candidates(self, view: SegmentView, filter: RowFilter | None) -> np.ndarray | None:
        """Mask of the live rows of `view` passing `filter`; None means every row."""
        live = view.live_mask()
        if filter is None:
            return live
        mask = filter_mask(filter, view, self.table_def)
        return mask if live is None else mask & live

    def scan(self, columns: Sequence[str] | None = None, *, filter: RowFilter | None = None,
             with_rowid: bool = False) -> Iterator[pa.Table]:
        """Live rows passing `filter`, one Arrow table per segment (growing segment last)."""
        for view in self.views:
            if view.data.n_rows == 0:
                continue
            mask = self.candidates(view, filter)
            table = logical_table(view, self.table_def, columns, with_rowid)
            if mask is not None:
                if not mask.any():
                    continue
                table = table.filter(pa.array(mask))
            yield table

    def to_table(self, columns: Sequence[str] | None = None, *, filter: RowFilter | None = None,
                 with_rowid: bool = False) -> pa.Table:
        """The whole scan as one Arrow table (embedded reads, tests); an empty result keeps the
        columns."""
        parts = list(self.scan(columns, filter=filter, with_rowid=with_rowid))
        if not parts:
            empty = logical_table(self.growing, self.table_def, columns, with_rowid)
            return empty.slice(0, 0)
        return pa.concat_tables(parts)

    def index_for(self, column: str, metric: Metric) -> IndexDef | None:
        """The vector index a search of `column` (or `column::<type>`, an expression index's
        key) by `metric` uses, if any."""
        key = ("index", column, metric)
        try:
            return self._memo[key]
        except KeyError:
            pass
        name, _, kind = column.partition(KEY_SEPARATOR)
        index = access_methods.index_for(self.table_def, name, metric, kind or None)
        self._memo[key] = index
        return index

    def kept(self, reader: object) -> object:
        """What `reader` derived from this snapshot alone and kept with it (`keep`), or None.
        Kept here rather than by the reader, it goes with the snapshot: a prepared
        statement's reader holds no segment that a later snapshot dropped."""
        return self._kept.get(reader)

    def keep(self, reader: object, value: object) -> None:
        """Keep `value`, derived from this snapshot alone, for `reader` (`kept`). Apart from
        the plans' memo, so that many readers (one per session's prepared statement) do not
        empty it as they come."""
        if len(self._kept) >= _KEPT_ENTRIES:
            self._kept.clear()
        self._kept[reader] = value

    def plan_search(
        self,
        column: str,
        metric: Metric,
        k: int,
        *,
        filter: RowFilter | None = None,
        prune: Callable[[SegmentData], bool] | None = None,
        ef: int | None = None,
        settings: Mapping[str, str] | None = None,
        target_recall: float | None = None,
        exact: bool = False,
        policy: SearchPolicy | None = None,
    ) -> list[SegmentSearch]:
        """Plan a top-k search: per segment, the filter is evaluated (vectorized) and a strategy
        chosen from the exact candidate count (storage/search.py). No vector work happens.

        The index's knob is `ef` when given (exactly, unless `target_recall` is given too);
        else the session's `settings` decide (search.search_target): a recall target the index's
        calibration turns into a knob per segment, or the knob itself (hnsw.ef_search) when the
        session set it."""
        col = self._vector_column(column)
        index = None if exact else self.index_for(column, metric)
        # The knobs of a search that takes them from the settings alone (`lone` below).
        knobs = None
        method = None
        if ef is None:
            method = access_methods.get(index.method) if index else None
            ef, chosen, max_ef = knobs = search_knobs(method, settings)
            if target_recall is None:
                target_recall = chosen
            elif target_recall != chosen:
                knobs = None
        else:
            max_ef = read_max_ef(settings)
        policy = policy or _POLICY
        key = None
        if filter is None and prune is None:
            # Unfiltered: the plan depends on this snapshot and the knobs alone, so a repeated
            # query reuses it (fresh plan records, the session's settings, each time).
            # (The default policy keys as None: hashing the dataclass costs more than the rest.)
            key = ("plan", column, metric, k, exact, ef, target_recall, max_ef,
                   None if policy is _POLICY else policy)
            cached = self._memo.get(key)
            if cached is not None and _still_indexed(cached, index, exact):
                if knobs is not None and policy is _POLICY:
                    self._keep_lone(column, metric, k, exact, method, knobs, col, index, cached)
                return [SegmentSearch(s.view, _fresh(s.plan), s.mask, s.index, s.matrix, settings)
                        for s in cached]
        searches = []
        for view in self.views:
            if view.data.n_rows == 0:
                continue
            pruned = prune is not None and prune(view.data)
            allowed = None
            if filter is not None and not pruned:
                allowed = filter_mask(filter, view, self.table_def)
            searches.append(plan_segment(
                view, col.physical, col.dims, k, allowed=allowed, bits=col.type.name == "bit",
                sparse=col.type.is_sparse,
                index_name=index.name if index else None, ef=ef, target_recall=target_recall,
                exact=exact, pruned=pruned, policy=policy, max_ef=max_ef, settings=settings))
        if key is not None:
            if len(self._memo) >= _MEMO_ENTRIES:
                self._memo.clear()
            self._memo[key] = [SegmentSearch(s.view, _fresh(s.plan), s.mask, s.index, s.matrix)
                               for s in searches]
        return searches

    def _keep_lone(self, column: str, metric: Metric, k: int, exact: bool,
                   method: type | None, knobs: tuple, col: SearchKey, index: IndexDef | None,
                   planned: list[SegmentSearch]) -> None:
        """Remember a planned unfiltered search of a dense vector column that one segment's
        index answers alone (`search_lone` runs it again without planning it): with the
        knobs it was planned for, the index it uses and the query vectors it takes."""
        if len(planned) != 1 or planned[0].plan.method is None or index is None \
                or not col.type.is_vector:
            return
        self._memo[("lone", column, metric, k, exact)] = (
            method, knobs, index.name, col.type.vector_dtype, (col.dims,), planned[0])

    def lone_search(self, column: str, metric: Metric, query: object, k: int, *,
                    settings: Mapping[str, str] | None, exact: bool) -> SegmentSearch | None:
        """The planned search `search_lone` runs again (the memo's own `SegmentSearch`: its
        plan record is not to be filled in), when this snapshot last planned the search as
        one segment's index search and the knobs the settings give, the segment's index and
        the query vector's type and dimensions are still those it was planned with; None
        otherwise."""
        lone = self._memo.get(("lone", column, metric, k, exact))
        if lone is None:
            return None
        method, knobs, index_name, dtype, shape, planned = lone
        if type(query) is not np.ndarray or query.dtype != dtype or query.shape != shape \
                or search_knobs(method, settings) != knobs \
                or planned.view.data.index(index_name) is not planned.index:
            return None
        return planned

    def search_lone(self, column: str, metric: Metric, query: object, k: int, *,
                    settings: Mapping[str, str] | None, exact: bool, plans: list[SegmentPlan],
                    order_only: bool = False) -> SearchHits | None:
        """`search_hits` of an unfiltered search, with the knobs the settings give, when this
        snapshot last planned it as one segment's index search (`_keep_lone`): that planned
        search run straight away (a fresh plan record), the same winners without planning
        it again. None when it was not (or the knobs, the segment's index, or the query
        vector's type or dimensions differ): `search_hits` then plans it, with its errors."""
        planned = self.lone_search(column, metric, query, k, settings=settings, exact=exact)
        if planned is None:
            return None
        search = SegmentSearch(planned.view, _fresh(planned.plan), planned.mask, planned.index,
                               planned.matrix, settings)
        found = run_segment(search, metric, query, order_only)
        plans.append(search.plan)
        return self._pick([(search.view, found)], k)

    def search(
        self,
        column: str,
        metric: Metric,
        query: np.ndarray,
        k: int,
        *,
        filter: RowFilter | None = None,
        prune: Callable[[SegmentData], bool] | None = None,
        columns: Sequence[str] | None = None,
        ef: int | None = None,
        settings: Mapping[str, str] | None = None,
        target_recall: float | None = None,
        exact: bool = False,
        with_rowid: bool = False,
        distance_name: str = "distance",
        plans: list[SegmentPlan] | None = None,
        policy: SearchPolicy | None = None,
    ) -> pa.Table:
        """The k live rows nearest to `query` among those passing `filter`, nearest first.

        Every segment contributes its own top-k (planned by `plan_search`, searched in parallel
        threads) and the global top-k is merged from them, so the result has exactly
        min(k, matching) rows. `plans`, when given, receives what each segment did."""
        return self.search_hits(column, metric, query, k, filter=filter, prune=prune, ef=ef,
                                settings=settings, target_recall=target_recall, exact=exact,
                                plans=plans, policy=policy).table(columns, with_rowid,
                                                                  distance_name)

    def search_hits(
        self,
        column: str,
        metric: Metric,
        query: np.ndarray,
        k: int,
        *,
        filter: RowFilter | None = None,
        prune: Callable[[SegmentData], bool] | None = None,
        ef: int | None = None,
        settings: Mapping[str, str] | None = None,
        target_recall: float | None = None,
        exact: bool = False,
        plans: list[SegmentPlan] | None = None,
        policy: SearchPolicy | None = None,
        order_only: bool = False,
    ) -> SearchHits:
        """`search`'s winners before any cell is read (a caller that needs a few of the columns
        reads just those). `order_only`: the caller reads no distance, so a lone segment's
        index may settle the order without exact distances (search.py `run_segment`); the
        hits' `distances` are then None."""
        col = self._vector_column(column)
        if col.type.name == "bit":  # a bit string: its text of '0' and '1', packed
            text = query if isinstance(query, str) else str(query)
            if len(text) != col.dims:
                raise DataException(f"different bit lengths {col.dims} and {len(text)}")
            query = np.packbits(np.frombuffer(text.encode("ascii"), np.uint8) == ord("1"))
        elif col.type.is_sparse:  # one sparsevec: SparseRows of one row
            if not isinstance(query, SparseRows):
                raise DataException("a sparsevec search needs a sparsevec query")
        else:
            query = np.asarray(query, dtype=col.type.vector_dtype).reshape(-1)
            if query.shape[0] != col.type.dims:
                raise DataException(
                    f"different {col.type.name} dimensions {col.type.dims} and {query.shape[0]}")
        searches = self.plan_search(column, metric, k, filter=filter, prune=prune, ef=ef,
                                    settings=settings, target_recall=target_recall, exact=exact,
                                    policy=policy)
        # Distances are needed to merge several segments' winners.
        results = run_all(searches, metric, query, order_only and len(searches) == 1)
        if plans is not None:
            plans.extend(s.plan for s in searches)
        return self._pick([(s.view, hits) for s, hits in zip(searches, results)], k)

    def _vector_column(self, column: str) -> SearchKey:
        key = ("key", column)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._search_key(column)
        return found

    def _search_key(self, column: str) -> SearchKey:
        name, _, kind = column.partition(KEY_SEPARATOR)
        try:
            col = self.table_def.column(name)
        except KeyError:
            raise UndefinedColumn(f'column "{name}" does not exist') from None
        if col.type.name in ("bit", "varbit") and not kind and col.type.typmod > 0:
            # A bit(n) column: searched by Hamming or Jaccard distance over packed bits.
            return SearchKey(col.physical, SqlType("bit", col.type.typmod))
        if not col.type.is_vector and not (col.type.is_sparse and not kind):
            raise SqlVecError(f'column "{name}" is not a vector', sqlstate="42804")
        if col.type.dims is None:
            raise DataException(f'column "{name}" does not have dimensions')
        if not kind:
            return SearchKey(col.physical, col.type)
        # An expression index's key, `col::halfvec(n)`: the column's values cast.
        return SearchKey(key_name(col.physical, kind), SqlType(kind, col.type.dims))

    def _pick(self, per_view: list[tuple[SegmentView, tuple[np.ndarray, np.ndarray | None]]],
              k: int) -> SearchHits:
        """The global top-k of the segments' own (each nearest first): ordered by distance,
        then segment, then position."""
        busy = [(v, h) for v, h in per_view if h[0].size]
        if not busy:
            return SearchHits(self, [], np.empty(0), 0)
        if len(busy) == 1:
            # One segment answered: its hits are already nearest first.
            view, (pos, dists) = busy[0]
            pos = pos[:k]
            return SearchHits(self, [(view, pos, None)], None if dists is None else dists[:k],
                              pos.size)
        dists = np.concatenate([h[1] for _, h in busy])
        owner = np.concatenate([np.full(h[0].size, i) for i, (_, h) in enumerate(busy)])
        pos = np.concatenate([h[0] for _, h in busy])
        order = np.lexsort((pos, owner, np.where(np.isnan(dists), np.inf, dists)))[:k]
        dists, owner, pos = dists[order], owner[order], pos[order]
        picks = []
        for i, (view, _) in enumerate(busy):
            slots = np.flatnonzero(owner == i)  # this segment's winners' places, in order
            if slots.size:
                picks.append((view, pos[slots], slots))
        return SearchHits(self, picks, dists, dists.size)


class SearchHits:
    """A search's winners, nearest first: per segment the positions taken and their places in
    the result (None: the only segment, in order), and their distances. Only the cells asked
    for are read (`column`, `rowids`), so a query that returns one column of ten rows gathers
    ten numbers."""

    __slots__ = ("snapshot", "picks", "distances", "count")

    def __init__(self, snapshot: TableSnapshot, picks: list, distances: np.ndarray | None,
                 count: int) -> None:
        self.snapshot, self.picks, self.distances, self.count = snapshot, picks, distances, count

    def slice(self, start: int, stop: int) -> SearchHits:
        """Winners start .. stop - 1 (a LIMIT and OFFSET over them)."""
        start, stop = min(start, self.count), min(stop, self.count)
        if start == 0 and stop == self.count:
            return self
        stop = max(start, stop)
        dists = None if self.distances is None else self.distances[start:stop]
        picks = []
        for view, at, slots in self.picks:
            if slots is None:
                picks.append((view, at[start:stop], None))
                continue
            keep = (slots >= start) & (slots < stop)
            if keep.any():
                picks.append((view, at[keep], slots[keep] - start))
        if len(picks) == 1 and picks[0][2] is not None:  # what is left comes from one segment
            picks = [(picks[0][0], picks[0][1], None)]
        return SearchHits(self.snapshot, picks, dists, stop - start)

    def column(self, name: str) -> pa.Array | pa.ChunkedArray:
        """A column's cells of the winners, in order."""
        col = self.snapshot.table_def.column(name)
        return self.cells(col, col.type.to_arrow())

    def cells(self, col: ColumnDef, arrow: pa.DataType) -> pa.Array | pa.ChunkedArray:
        """`column` of a column of this snapshot's table already looked up, with its Arrow
        type (a prepared query resolves its columns once)."""
        if not self.count:
            return self.table([col.name], False, "d").column(0)
        values = self.cell_numbers(col, arrow)
        if values is not None:
            return _numbers(values, arrow)
        return _gather(self.picks, self.count, col.physical, arrow, col.missing_value)

    def cell_numbers(self, col: ColumnDef, arrow: pa.DataType) -> np.ndarray | None:
        """`cells` as a NumPy array when the winners come from one segment whose column is a
        NumPy view (numbers without NULLs: one take); None otherwise. A caller that wants
        Python values skips the Arrow array."""
        if len(self.picks) != 1:
            return None
        view, at, _ = self.picks[0]
        values = segment_numbers(view.data, col, arrow)
        return None if values is None else values[at]

    def rowids(self) -> pa.Array:
        """The winners' row ids, in order."""
        return _numbers(self.rowid_numbers(), _INT8)

    def rowid_numbers(self) -> np.ndarray:
        """`rowids` as a NumPy int64 array."""
        ids = np.empty(self.count, np.int64)
        for view, at, slots in self.picks:
            ids[slice(None) if slots is None else slots] = view.data.rowids[at]
        return ids

    def distance_array(self) -> pa.Array:
        """The winners' distances (float8), in order."""
        return _numbers(self.distance_numbers(), _FLOAT8)

    def distance_numbers(self) -> np.ndarray:
        """`distance_array` as a NumPy float64 array."""
        if self.distances is None:
            raise ValueError("the search was run for the order alone")
        return np.asarray(self.distances, np.float64)

    def table(self, columns: Sequence[str] | None, with_rowid: bool,
              distance_name: str) -> pa.Table:
        """The winners as a table: `columns` (all when None), then the row id when asked
        for, then the distance."""
        snap = self.snapshot
        if not self.count:
            empty = logical_table(snap.growing, snap.table_def, columns, with_rowid).slice(0, 0)
            return empty.append_column(distance_name, pa.array([], pa.float64()))
        table_def = snap.table_def
        cols = table_def.columns if columns is None else [table_def.column(c) for c in columns]
        arrays = [_gather(self.picks, self.count, c.physical, c.type.to_arrow(),
                          c.missing_value) for c in cols]
        names = [c.name for c in cols]
        if with_rowid:
            arrays.append(self.rowids())
            names.append(ROWID)
        arrays.append(self.distance_array())
        names.append(distance_name)
        return pa.Table.from_arrays(arrays, names=names)


class UniqueKey:
    """One unique key of a table and the index of its applied (visible) rows."""

    def __init__(self, key_def: KeyDef, table_def: TableDef) -> None:
        self.def_ = key_def
        cols = [table_def.column(c) for c in key_def.columns]
        self.physical = tuple(c.physical for c in cols)
        self.signature = tuple((c.physical, str(c.type.to_arrow())) for c in cols)
        self.signature += (key_def.nulls_not_distinct,)
        # With NULLS NOT DISTINCT a NULL is a value of the key: only the hash index holds it.
        self.index = HashKeyIndex() if key_def.nulls_not_distinct else \
            KeyIndex.for_types([c.type.to_arrow() for c in cols])

    def keys_of(self, rows: pa.Table | pa.RecordBatch, physical: bool = False) -> np.ndarray:
        """The key of each row, in the index's comparable form, from logical or physical column
        names."""
        names = self.physical if physical else self.def_.columns
        return self.index.keys_of([rows.column(n) for n in names])

    def key_one(self, rows: pa.Table | pa.RecordBatch, physical: bool = False) -> object:
        """The key of a one-row batch (no NULL in it), as `keys_of` gives it, without NumPy."""
        names = self.physical if physical else self.def_.columns
        return self.index.key_of([rows.column(n)[0].as_py() for n in names])

    def valid(self, rows: pa.Table | pa.RecordBatch, physical: bool = False) -> np.ndarray | None:
        """Rows whose key the index holds: those with no NULL in it, as a NULL is distinct
        from every value (None: all of them, always so with NULLS NOT DISTINCT)."""
        if self.def_.nulls_not_distinct:
            return None
        cols = [rows.column(n) for n in (self.physical if physical else self.def_.columns)]
        if not any(c.null_count for c in cols):
            return None
        mask = np.ones(rows.num_rows, bool)
        for c in cols:
            mask &= np.asarray(pc.is_valid(c))
        return mask

    def no_keys(self) -> np.ndarray:
        """An empty array of keys as `keys_of` makes them."""
        return np.empty(0, object if isinstance(self.index, HashKeyIndex) else np.int64)

    def held(self, rows: pa.Table | pa.RecordBatch, rowids: np.ndarray,
             physical: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The keys the index holds for these rows, with their row ids: rows with a NULL in
        the key are left out (unless NULLS NOT DISTINCT)."""
        valid = self.valid(rows, physical)
        if valid is None:
            return self.keys_of(rows, physical), rowids
        rows = rows.filter(pa.array(valid))
        return self.keys_of(rows, physical), np.asarray(rowids)[valid]


class _Claim:
    """What one prepared commit, not yet applied, does to a table's keys and rows: later
    commits are checked against it (it is durable and will apply, in LSN order). A plain
    class (one is made per commit): compared by identity."""

    __slots__ = ("added", "removed", "deleted", "truncated", "op_ids", "delete_keys",
                 "delete_at", "insert_keys", "row_keys")

    def __init__(self, added: list[KeyIndex], removed: list[KeyIndex]) -> None:
        self.added = added  # per unique key: key -> the row id this commit gives it
        self.removed = removed  # per unique key: keys of rows this commit deletes
        self.deleted: set[int] = set()  # row ids
        self.truncated = False
        self.op_ids: list[int] = []
        # Per delete op (by its id once prepared): per unique key, the deleted rows' keys and
        # their row ids, so applying it need not read them again.
        self.delete_keys: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        # Per one-row delete op (by its id once prepared): the table's version when prepare
        # located the row, and where it lies (segment data, position).
        self.delete_at: dict[int, tuple[int, SegmentData, int]] = {}
        # Per one-row insert op (by its id once prepared): per unique key, the row's key and
        # row id as the index takes them (None: a NULL the index does not hold), and the row
        # id.
        self.insert_keys: dict[int, tuple[list[tuple[np.ndarray, np.ndarray] | None], int]] = {}
        # Per `RowInsertOp` (by its id once prepared): per unique key, its key as `key_of`
        # gave it (None: a NULL the index does not hold), and the table's version at which
        # the indexes were seen not to hold them (None: not known).
        self.row_keys: dict[int, tuple[list, int | None]] = {}


@dataclass
class TableStats:
    """Activity counters of one table since the server started, as pg_stat_user_tables and
    pg_stat_user_indexes show them. Updated without a lock: like PostgreSQL's statistics they
    are for watching trends, and a lost increment under contention is harmless."""

    seq_scan: int = 0
    seq_tup_read: int = 0
    last_seq_scan: float | None = None
    idx_scan: int = 0
    idx_tup_fetch: int = 0
    last_idx_scan: float | None = None
    n_tup_ins: int = 0
    n_tup_upd: int = 0
    n_tup_del: int = 0
    compactions: int = 0  # segments rewritten without their deleted rows (autovacuum)
    last_compaction: float | None = None
    # Per index name: [scans, index entries returned, rows fetched through it, last scan time].
    indexes: dict[str, list] = field(default_factory=dict)

    def wrote(self, kind: str, rows: int) -> None:
        """Count an INSERT, UPDATE or DELETE statement's rows (also COPY, as INSERT)."""
        if kind == "INSERT":
            self.n_tup_ins += rows
        elif kind == "UPDATE":
            self.n_tup_upd += rows
        elif kind == "DELETE":
            self.n_tup_del += rows

    def scanned(self, rows: int) -> None:
        """Count a sequential scan that read `rows` live rows."""
        self.seq_scan += 1
        self.seq_tup_read += rows
        self.last_seq_scan = time.time()

    def index_scanned(self, index: str, read: int, fetched: int) -> None:
        """Count a scan through `index` that returned `read` entries and `fetched` rows."""
        now = time.time()
        self.idx_scan += 1
        self.idx_tup_fetch += fetched
        self.last_idx_scan = now
        entry = self.indexes.setdefault(index, [0, 0, 0, None])
        entry[0] += 1
        entry[1] += read
        entry[2] += fetched
        entry[3] = now


class Table:
    """The live state of one table. Thread-safe; writers are serialized by the store."""

    def __init__(self, table_def: TableDef, directory: str, memtable_rows: int = 65_536) -> None:
        self.def_ = table_def
        self.directory = directory
        self.memtable_rows = memtable_rows  # capacity the growing segment reserves up front
        self.lock = threading.RLock()
        self._shape: tuple | None = None  # `_row_shape`'s, for the definition it names
        self.memtable = Memtable(table_def, self.memtable_rows)
        self.sealed: list[Segment] = []
        self.deletes: dict[int, DeleteBitmap] = {}
        self.persisted_deletes: dict[int, tuple[str, DeleteBitmap]] = {}
        self.next_rowid = 0
        self.next_segment_id = 1
        self.checkpoint_lsn = 0  # every op with LSN <= this is in the durable segments/deletes
        # Frozen segments whose seal is not yet in a manifest, oldest first. Manifests leave them
        # out (WAL replay after checkpoint_lsn still covers their rows) and compaction skips them.
        self.sealing: list[Segment] = []
        self.keys: list[UniqueKey] = [UniqueKey(k, table_def) for k in table_def.unique_keys]
        self._key_epoch = 0  # bumped whenever an applied commit removes keys
        self._claims: list[_Claim] = []  # prepared, not yet applied, oldest first
        self._claim_of: dict[int, _Claim] = {}  # id(prepared op) -> its commit's claim
        self._released = threading.Condition(self.lock)
        self._release_waiters = 0  # threads waiting on `_released` (most releases have none)
        # Rows locked by open transaction blocks (row id -> `row_locks.LockHolder`), under
        # `lock`: a commit deleting one of them waits for its holder (`prepare`).
        self.row_locks: dict[int, object] = {}
        # Unique-key values open blocks inserted ((key number, value) -> holder), under `lock`:
        # another block inserting one waits (`LockHolder.lock_keys`), an autocommit commit too.
        self.key_locks: dict[tuple[int, object], object] = {}
        self._snapshot: TableSnapshot | None = None
        # Bumped by every change of the rows or of where they lie (an op applied, a segment
        # sealed, compacted or replaced): a row located at one version is there, and live,
        # as long as the version stays (a single-row UPDATE locates its row once).
        self._version = 0
        self.stats = TableStats()

    # Properties ---------------------------------------------------------------------------------

    @property
    def id(self) -> int:
        return self.def_.id

    @property
    def name(self) -> str:
        return self.def_.name

    def snapshot(self) -> TableSnapshot:
        """The current snapshot; cached until the next change so concurrent readers share one."""
        snap = self._snapshot
        if snap is None:
            with self.lock:
                snap = self._snapshot
                if snap is None:
                    snap = self._current()
                    self._snapshot = snap
        return snap

    def _locate_now(self, rowid: int) -> tuple[SegmentData, int] | None:
        """The segment data and position of a row live in the current state, or None (caller
        holds the lock). A sealed segment's row is found without a snapshot: every apply
        invalidates it, and rebuilding it (the growing segment folded, every view) per
        single-row statement costs more than the statement's own reads; so is a row the
        growing segment has folded (a row an earlier UPDATE wrote: the fold would build the
        Arrow batch of the rows queued since, one per statement); only a queued row is read
        through the snapshot."""
        for seg in self.sealed:
            position = _position_in(seg, rowid)
            if position >= 0:
                return None if self.deletes[seg.id].is_deleted_one(position) else \
                    (seg, position)
        memtable = self.memtable
        position = memtable.folded_position(rowid)
        if position >= 0:  # (rows queued since stay queued: see `Memtable.folded_data`)
            return None if memtable.is_deleted(position) else (memtable.folded_data(), position)
        snap = self.snapshot()
        view, position = snap._locate_one(rowid)
        return (snap.views[view].data, position) if view >= 0 else None

    def row_of_key(self, value: object, key: int = 0) -> tuple[int, SegmentData | None, int]:
        """The row holding a key value (given as the index holds it) in the current state:
        its row id (MISSING when none), the segment data holding it and its position there
        (the single-row UPDATE or DELETE by key, which reads nothing else of the table)."""
        with self.lock:
            rowid = self.keys[key].index.get(value)
            if rowid == MISSING:
                return MISSING, None, 0
            found = self._locate_now(rowid)
            # Its delete need not read the key back, nor locate the row again while nothing
            # changed (`prepare` takes the hint and drops it).
            _hint.located = (rowid, self.keys[key], value, self, self._version, found)
        return (rowid, None, 0) if found is None else (rowid, *found)

    def _current(self) -> TableSnapshot:
        """The state right now, not cached: in the middle of applying a commit it must not
        become what readers see (they read `_snapshot` without the lock)."""
        return TableSnapshot(
            self.def_,
            tuple(SegmentView(s, self.deletes[s.id]) for s in self.sealed),
            self.memtable.snapshot(),
            self._key_epoch,
        )

    def _invalidate(self) -> None:
        self._snapshot = None
        self._version += 1

    # Key questions from above (each costs what it asks about) --------------------------------

    def key_values(self, rows: pa.Table, key: int = 0) -> np.ndarray:
        """The values of unique key `key` in rows of the logical schema, as the key's index
        holds them (for `KeyIndex` lookups above storage)."""
        return self.keys[key].keys_of(rows)

    def key_value_one(self, rows: pa.Table | pa.RecordBatch, key: int = 0) -> object | None:
        """The key of a one-row batch as the key's index holds it; None when it has a NULL."""
        uk = self.keys[key]
        if any(rows.column(c).null_count for c in uk.def_.columns):
            return None
        return uk.key_one(rows)

    def find_key(self, value: object, key: int = 0) -> int:
        """`find_keys` of one key value (as the index holds it, not NULL)."""
        with self.lock:
            return self._effective_one(key, value, self._claims[::-1])

    def new_key_index(self, key: int = 0) -> KeyIndex:
        """An empty index of the kind unique key `key` uses."""
        return self.keys[key].index.empty()

    def find_keys(self, rows: pa.Table, key: int = 0) -> np.ndarray:
        """Row id holding each row's key now, counting commits in flight; MISSING where the
        key is free (or NULL). What an insert would collide with at commit."""
        uk = self.keys[key]
        keys = uk.keys_of(rows)
        valid = uk.valid(rows)
        with self.lock:
            out = self._effective(key, keys, None)
        if valid is not None:
            out[~valid] = MISSING
        return out

    def lookup_keys(self, rows: pa.Table, key: int = 0, snapshot: TableSnapshot | None = None,
                    wait: float = 0.0) -> tuple[TableSnapshot, np.ndarray]:
        """Row id of the committed row holding each row's key as `snapshot` sees it (MISSING
        where none does); with no snapshot, as one taken together with the lookup, which is
        returned. `wait`: seconds to wait first for commits in flight that claim these keys
        (as PostgreSQL waits for the inserting transaction), so the answer includes them."""
        uk = self.keys[key]
        keys = uk.keys_of(rows)
        valid = uk.valid(rows)
        with self.lock:
            if wait > 0 and self._claims:
                self._release_waiters += 1
                try:
                    self._released.wait_for(lambda: not self._claimed(key, keys), timeout=wait)
                finally:
                    self._release_waiters -= 1
            if snapshot is None:
                snapshot = self.snapshot()
            out = uk.index.lookup(keys)
            epoch = self._key_epoch
        if snapshot.key_epoch != epoch or snapshot is not self._snapshot:
            out = self._as_of(snapshot, key, keys, out, epoch)
        if valid is not None:
            out[~valid] = MISSING
        return snapshot, out

    def lookup_key(self, value: object, key: int = 0,
                   snapshot: TableSnapshot | None = None) -> tuple[TableSnapshot, int]:
        """`lookup_keys` of one key given as the index holds it (`KeyIndex.key_of`, not
        NULL): the single-row statement's `WHERE id = $1`, without Arrow or NumPy."""
        uk = self.keys[key]
        with self.lock:
            if snapshot is None:
                snapshot = self.snapshot()
            rowid = uk.index.get(value)
            epoch = self._key_epoch
        if snapshot.key_epoch != epoch or snapshot is not self._snapshot:
            out = self._as_of(snapshot, key, uk.index.array_of(value),
                              np.array([rowid], np.int64), epoch)
            rowid = int(out[0])
        return snapshot, rowid

    def _as_of(self, snapshot: TableSnapshot, key: int, keys: np.ndarray, current: np.ndarray,
               epoch: int) -> np.ndarray:
        """Correct lookups in the current index for an older snapshot. A row id the snapshot
        shows live is its answer (keys are unique in every snapshot). Otherwise the key was
        absent then, unless a key was removed since: only then is the snapshot scanned."""
        out = current.copy()
        known = current != MISSING
        if known.any():
            where, _ = snapshot.locate(current[known])
            visible = np.zeros(current.size, bool)
            visible[np.flatnonzero(known)] = where >= 0
            out[~visible] = MISSING
        else:
            visible = known
        if snapshot.key_epoch == epoch or visible.all():
            return out
        rest = np.flatnonzero(~visible)
        out[rest] = self._scan_keys(snapshot, key, keys[rest])
        return out

    def _scan_keys(self, snapshot: TableSnapshot, key: int, keys: np.ndarray) -> np.ndarray:
        """Row ids of `keys` in `snapshot` by scanning it: O(table), only for a lookup that
        raced a commit removing keys."""
        uk = self.keys[key]
        found = uk.index.empty()
        wanted = uk.index.empty()
        wanted.insert(keys, np.arange(keys.size))
        for part in snapshot.scan(list(uk.def_.columns), with_rowid=True):
            values, ids = uk.held(part, part.column(ROWID).to_numpy())
            hit = wanted.lookup(values) != MISSING
            if hit.any():
                found.insert(values[hit], ids[hit])
        return found.lookup(keys)

    def still_live(self, rowids: np.ndarray) -> bool:
        """Whether all these rows are live and no commit in flight deletes them: what a commit
        deleting them needs (else it fails with 40001)."""
        rowids = np.asarray(rowids, dtype=np.int64)
        with self.lock:  # see prepare: both read at once
            snap = self.snapshot()
            pending = [c.deleted for c in self._claims if c.deleted]
        ids = rowids.tolist()
        return not any(not d.isdisjoint(ids) for d in pending) and snap.all_live(rowids)

    def null_violation(self, column: str) -> NotNullViolation:
        """The 23502 error for a NULL in NOT NULL column `column`."""
        return NotNullViolation(
            f'null value in column "{column}" of relation "{self.def_.name}" '
            "violates not-null constraint", schema=self.def_.schema, table=self.def_.name,
            column=column)

    def duplicate_key(self, key: int, value: object) -> UniqueViolation:
        """The 23505 error for a value of unique key `key`."""
        kd = self.keys[key].def_
        vals = ", ".join(_fmt(v) for v in KeyIndex.values_of(value))
        return UniqueViolation(
            f'duplicate key value violates unique constraint "{kd.name}"',
            detail=f"Key ({', '.join(kd.columns)})=({vals}) already exists.",
            schema=self.def_.schema, table=self.def_.name, constraint=kd.name)

    # Preparing a commit (under the store's commit lock) ----------------------------------------

    def coerce(self, data: pa.Table | pa.RecordBatch | dict) -> pa.Table:
        """Shape user rows into the table's logical schema: cast types, check dimensions,
        fill absent columns with NULL, enforce NOT NULL."""
        if isinstance(data, dict):
            data = pa.table({k: _as_arrow(v) for k, v in data.items()})
        elif isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        n = data.num_rows
        given = data.column_names
        known = set(self.def_.column_names)
        for name in given:
            if name not in known:
                raise UndefinedColumn(
                    f'column "{name}" of relation "{self.def_.name}" does not exist')
        schema = self.def_.arrow_schema()
        present = set(given)
        arrays = []
        for col, target in zip(self.def_.columns, schema.types):
            if col.name in present:
                column = data.column(col.name)
                arrays.append(column if isinstance(column, pa.ChunkedArray) and
                              column.type.equals(target) else cast_column(column, col))
            else:
                arrays.append(pa.chunked_array([pa.nulls(n, target)], type=target))
        out = pa.Table.from_arrays(arrays, schema=schema)
        self._check_not_null(arrays, out)
        self._check_sparse_limits(arrays)
        return out

    def _check_sparse_limits(self, arrays: Sequence[pa.Array | pa.ChunkedArray]) -> None:
        """pgvector's limit on the non-zero elements of rows of an indexed sparsevec column."""
        for index in access_methods.sparse_indexes(self.def_):
            column = arrays[self.def_.column_names.index(index.columns[0])]
            if isinstance(column, pa.ChunkedArray):
                column = column.combine_chunks()
            lengths = pc.list_value_length(pc.struct_field(column, "indices"))
            if len(lengths):
                access_methods.check_sparse_rows(index, [int(pc.max(lengths).as_py() or 0)])

    def _check_not_null(self, arrays: Sequence[pa.Array | pa.ChunkedArray],
                        rows: pa.Table | pa.RecordBatch) -> None:
        """23502 for the first row (then first column) with a NULL in a NOT NULL column, as
        PostgreSQL reports it row by row."""
        first = None
        for col, array in zip(self.def_.columns, arrays):
            if col.not_null and array.null_count:
                at = int(np.flatnonzero(np.asarray(pc.is_null(array)))[0])
                if first is None or at < first[0]:
                    first = (at, col.name)
        if first is not None:
            error = self.null_violation(first[1])
            error.failing_row = (self.def_, rows, first[0])  # type: ignore[attr-defined]
            raise error

    def coerce_arrays(self, arrays: Sequence[pa.Array | pa.ChunkedArray],
                      values: list | None = None) -> pa.RecordBatch:
        """`coerce` for one array per column, in column order (a single-row INSERT's values):
        arrays of another type are cast as `coerce` casts them; NOT NULL is enforced.
        `values`: per column, the Python value its one-row array holds (None: NULL), or
        `UNKNOWN`; the commit of a one-row batch reads its keys from them."""
        table_def, schema, targets, not_null, sparse = self._row_shape()[:5]
        out = []
        for i, (col, target, array) in enumerate(zip(table_def.columns, targets, arrays)):
            if not array.type.equals(target):
                array = cast_column(array, col)
                if values is not None:  # the cast value may differ from the given one
                    values = list(values)
                    values[i] = UNKNOWN
            if isinstance(array, pa.ChunkedArray):
                array = _one_chunk(array)
            out.append(array)
        batch = pa.RecordBatch.from_arrays(out, schema=schema)
        if not_null:
            self._check_not_null(out, batch)
        if sparse:
            self._check_sparse_limits(out)
        if batch.num_rows == 1:
            _hint.batch, _hint.arrays, _hint.values = batch, out, values
        return batch

    def _row_shape(self) -> tuple:
        """What `coerce_arrays` and a one-row commit ask of the definition per row, worked out
        once per definition: (definition, schema, column types, any NOT NULL column, any
        sparsevec index, its unique keys' column positions by their names, the columns'
        Python types for `row_op` or None)."""
        shape = self._shape
        if shape is None or shape[0] is not self.def_:
            d = self.def_
            schema = d.arrow_schema()
            names = d.column_names
            sparse = bool(access_methods.sparse_indexes(d))
            shape = self._shape = (d, schema, list(schema.types),
                                   any(c.not_null for c in d.columns), sparse,
                                   {k.columns: [names.index(c) for c in k.columns]
                                    for k in d.unique_keys},
                                   None if sparse else row_types(schema))
        return shape

    def prepare(self, ops: list, holder: object = None) -> list:
        """Validate one commit's ops for this table and claim what it changes.

        Returns the ops in WAL form (inserts get their rowids and physical names). Raises
        23505 on a duplicate key, 40001 when a row to delete is already gone or claimed by
        another commit in flight, `RowLocked` when another block than `holder` (the
        committing block's `LockHolder`) has it locked, `KeyLocked` when an autocommit
        commit (no `holder`) inserts a key value an open block inserted. Costs O(rows written), whatever the
        table's size."""
        out = []
        snap = None
        located: dict[int, tuple[SegmentData, int] | None] = {}
        deletes = [op for op in ops if isinstance(op, DeleteOp)]
        if deletes:
            # The applied state and the claims of commits in flight, read together: a commit
            # applied and released in between would be in neither. Only this prepare adds
            # claims. One row (an UPDATE or DELETE by key) is located in the current state,
            # without the snapshot the previous commit's apply invalidated.
            with self.lock:
                one = np.asarray(deletes[0].rowids).reshape(-1) if len(deletes) == 1 else None
                if one is not None and one.size == 1:
                    rowid = int(one[0])
                    hint = getattr(_hint, "located", None)
                    located[rowid] = hint[5] if hint is not None and hint[3] is self and \
                        hint[0] == rowid and hint[4] == self._version else self._locate_now(rowid)
                else:
                    snap = self.snapshot()
                pending = [c.deleted for c in self._claims if c.deleted]
            version = self._version
        claim = _Claim([k.index.empty() for k in self.keys], [k.index.empty() for k in self.keys])
        for op in ops:
            if isinstance(op, DeleteOp):
                rowids = np.asarray(op.rowids, dtype=np.int64).reshape(-1)
                if rowids.size > 1:
                    rowids = np.unique(rowids)
                ids = rowids.tolist()
                if len(ids) == 1:  # one row: located once, for the check and its keys
                    if snap is None:
                        where = located[ids[0]]
                    else:
                        view, position = snap._locate_one(ids[0])
                        where = (snap.views[view].data, position) if view >= 0 else None
                    live = where is not None
                else:
                    assert snap is not None
                    live, where = snap.all_live(rowids), None
                if any(not d.isdisjoint(ids) for d in pending) or not live:
                    raise SerializationFailure(
                        "could not serialize access due to concurrent update")
                prepared = DeleteOp(self.id, rowids)
                if len(ids) == 1 and where is not None:
                    claim.delete_at[id(prepared)] = (version, *where)
                if self.keys:
                    by_key = getattr(_hint, "located", None)
                    if len(ids) == 1 and len(self.keys) == 1 and by_key is not None and \
                            by_key[0] == ids[0] and by_key[1] is self.keys[0]:
                        # The row `row_of_key` found by the only key: its key is known, and
                        # claimed as the Python value it is.
                        keys = self.keys[0].index.array_of(by_key[2])
                        per_key = [(keys, rowids)]
                        claim.added[0].remove(keys)
                        claim.removed[0].insert_one(by_key[2], ids[0])
                    else:
                        per_key = self._deleted_keys(rowids, where, snap)
                        for i, (keys, ids_found) in enumerate(per_key):
                            claim.added[i].remove(keys)
                            claim.removed[i].insert(keys, ids_found)
                    claim.delete_keys[id(prepared)] = per_key
                claim.deleted.update(ids)
                out.append(prepared)
            elif isinstance(op, RowInsertOp) and op.table_def is self.def_:
                out.append(self._prepare_row(op, claim))
            elif isinstance(op, InsertRunOp):
                out.append(self._prepare_run(op, claim))
            elif isinstance(op, InsertOp) and op.batch.num_rows == 1 and self.keys:
                out.append(self._prepare_one_row(op, claim))
            elif isinstance(op, InsertOp):
                table = self._current_shape(op.batch)
                n = table.num_rows
                checked = [self._check_keys(i, table, claim) for i in range(len(self.keys))] \
                    if n else []
                batch = self._physical(table)
                rowids = batch.column(0).to_numpy()
                for i, (keys, valid) in enumerate(checked):
                    claim.added[i].insert(keys, rowids if valid is None else rowids[valid])
                out.append(InsertOp(self.id, batch))
            elif isinstance(op, TruncateOp):
                claim.truncated = True
                claim.added = [k.index.empty() for k in self.keys]
                claim.removed = [k.index.empty() for k in self.keys]
                out.append(op)
            else:  # pragma: no cover - programming error
                raise TypeError(op)
        if deletes:
            _hint.located = None  # taken (it holds a segment: not kept past its statement)
        with self.lock:
            if self.row_locks and claim.deleted:
                self._check_row_locks(claim, out, holder)
            if self.key_locks and holder is None:
                self._check_key_locks(claim)
            self._claims.append(claim)
            for op in out:
                claim.op_ids.append(id(op))
                self._claim_of[id(op)] = claim
        return out

    def _deleted_keys(self, rowids: np.ndarray, where: tuple | None,
                      snap: TableSnapshot | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per unique key, the keys the index holds for rows a commit deletes and their row
        ids: one row's read where it lies (`where`), no Arrow table; several from `snap`."""
        if rowids.size == 1:
            data, position = where  # type: ignore[misc]
            per_key = []
            for uk in self.keys:
                values = [value_at(data, self.def_.column(c), position)
                          for c in uk.def_.columns]
                if None in values and not uk.def_.nulls_not_distinct:
                    per_key.append((uk.no_keys(), rowids[:0]))
                else:
                    per_key.append((uk.index.array_of(uk.index.key_of(values)), rowids))
            return per_key
        assert snap is not None
        rows = snap.rows_by_id(rowids, self._key_columns())
        ids_found = rows.column(ROWID).to_numpy()
        return [uk.held(rows, ids_found) for uk in self.keys]

    def _check_row_locks(self, claim: _Claim, ops: list, holder: object) -> None:
        """`RowLocked` for the first row the commit deletes that another block than `holder`
        has locked in a mode the commit's conflicts with (under `lock`, with the claim about to
        be registered: a row is locked or claimed first). A block's commit holds its rows
        already; an autocommit one deletes a row FOR UPDATE, or FOR NO KEY UPDATE when it
        writes a new version with the row's unique-key values (an UPDATE of other columns).
        Other blocks' FOR KEY SHARE locks on a row so updated pass to its new version, as
        PostgreSQL's follow the update."""
        locks = self.row_locks
        rowids = claim.deleted
        small, large = (rowids, locks) if len(rowids) <= len(locks) else (locks, rowids)
        for rowid in [r for r in small if r in large]:
            entry = locks[rowid]
            if holder is None or held_mode(entry, holder) < NO_KEY_UPDATE:
                other = conflicting(entry, holder, NO_KEY_UPDATE)
                if other is not None:
                    raise RowLocked(other)
            sharer = conflicting(entry, holder, UPDATE)  # a FOR KEY SHARE holder
            if sharer is not None:
                new = self._new_version(rowid, claim, ops)
                if new is None:
                    raise RowLocked(sharer)
                pass_on(self, rowid, new, holder)

    def _new_version(self, rowid: int, claim: _Claim, ops: list) -> int | None:
        """The row a commit deleting `rowid` inserts with every unique-key value it held:
        PostgreSQL's test for an UPDATE needing only FOR NO KEY UPDATE (asked only when a
        row held FOR KEY SHARE is deleted). None: a DELETE, a key changed, no key to tell."""
        if not self.keys or not any(isinstance(op, InsertOp) for op in ops):
            return None
        row = self.snapshot().rows_by_id(np.array([rowid], np.int64), self._key_columns())
        ids = row.column(ROWID).to_numpy()
        new = None
        for key, uk in zip(claim.added, self.keys):
            values, _ = uk.held(row, ids)
            if not values.size:
                continue
            holders = key.lookup(values)
            if holders[0] == MISSING or new not in (None, int(holders[0])):
                return None
            new = int(holders[0])
        return new

    def _check_key_locks(self, claim: _Claim) -> None:
        """`KeyLocked` when an autocommit commit inserts a key value an open block inserted
        (under `lock`, as `_check_row_locks`; a block's own inserts registered theirs)."""
        for (key, value), other in self.key_locks.items():
            if claim.added[key].get(value) != MISSING:
                raise KeyLocked(other)  # type: ignore[arg-type]

    def run_schema(self) -> pa.Schema:
        """The schema of an `InsertRunOp`'s batches: the physical one without the row id."""
        physical = self.def_.physical_schema()
        return physical.remove(physical.get_field_index(ROWID))

    def _prepare_run(self, op: InsertRunOp, claim: _Claim) -> InsertRunOp:
        """`prepare` of a COPY's rows serialized ahead: checked as a batch's keys are, then
        given their row ids (the run's first; the rest follow)."""
        schema = self.run_schema()
        if any(not part.batch.schema.equals(schema) for part in op.batches):
            raise SerializationFailure(
                "could not serialize access due to concurrent update")  # an ALTER since
        rows = pa.Table.from_batches([part.batch for part in op.batches], schema=schema) \
            .rename_columns(self.def_.column_names)
        n = rows.num_rows
        checked = [self._check_keys(i, rows, claim) for i in range(len(self.keys))] \
            if n else []
        first = self.next_rowid
        self.next_rowid += n
        rowids = np.arange(first, first + n, dtype=np.int64)
        for i, (keys, valid) in enumerate(checked):
            claim.added[i].insert(keys, rowids if valid is None else rowids[valid])
        return replace(op, first_rowid=first)

    def _check_one_row_keys(self, claim: _Claim, values_of: Callable[[tuple], list]
                            ) -> tuple[list, int | None]:
        """Per unique key of the table, one row's key value (`values_of(columns)` gives its
        columns' Python values), checked as `_check_keys` checks a batch, in key order: NULL
        in a primary key (23502), then held by a committed row or a commit in flight (23505).
        None for a key with a NULL (distinct from every key: not held). With them, the table's
        version at which the indexes alone answered that no key is held (no commit in flight,
        nothing of this commit on those keys), else None: applied at that version, the row's
        keys go in without a look-up."""
        values_per_key = []
        absent_at: int | None = self._version
        for i, uk in enumerate(self.keys):
            names = uk.def_.columns
            key = values_of(names)
            if None in key and not uk.def_.nulls_not_distinct:
                if uk.def_.primary:
                    raise self.null_violation(next(c for c, v in zip(names, key) if v is None))
                values_per_key.append(None)
                continue
            value = uk.index.key_of(key)
            with self.lock:
                held = self._effective_one(i, value, [claim] + self._claims[::-1])
                if self._claims or claim.truncated or len(claim.added[i]) or \
                        len(claim.removed[i]) or absent_at != self._version:
                    absent_at = None
            if held != MISSING:
                raise self.duplicate_key(i, value)
            values_per_key.append(value)
        return values_per_key, absent_at

    def _prepare_one_row(self, op: InsertOp, claim: _Claim) -> InsertOp:
        """`prepare` of a one-row insert into a keyed table (a single-row INSERT or UPDATE's):
        each key's value read once as a Python value, checked as `_check_keys` checks it (in
        key order: NULL in a primary key, then held by a committed row or a commit in flight),
        and kept on the claim for `apply`."""
        table = self._current_shape(op.batch)
        known = getattr(_hint, "batch", None) is table and table.schema.equals(
            self.def_.arrow_schema())
        key_positions = self._row_shape()[5] if known else None

        def values_of(names: tuple) -> list:
            positions = key_positions.get(names) if known else None
            if positions is None:
                return [table.column(c)[0].as_py() for c in names]
            given = _hint.values
            return [_hint.arrays[p][0].as_py() if given is None or given[p] is UNKNOWN
                    else given[p] for p in positions]

        values_per_key, _ = self._check_one_row_keys(claim, values_of)
        rowid = self.next_rowid  # the one `_physical` gives the row
        batch = self._physical(table)
        rowids = np.array([rowid], np.int64)
        keys: list[tuple[np.ndarray, np.ndarray] | None] = []
        for i, value in enumerate(values_per_key):
            if value is None:
                keys.append(None)
                continue
            array = self.keys[i].index.array_of(value)
            claim.added[i].insert(array, rowids)
            keys.append((array, rowids))
        prepared = InsertOp(self.id, batch)
        claim.insert_keys[id(prepared)] = (keys, rowid)
        return prepared

    @property
    def rows_as_values(self) -> bool:
        """Whether every column is of a type `row_op` keeps as a Python value."""
        return self._row_shape()[6] is not None

    def row_op(self, values: list) -> RowInsertOp | None:
        """A single-row INSERT's row as Python values (in column order, each None or exactly
        of its column's Python type, integers within the column's range): the insert its
        commit logs and applies without Arrow; None when the row needs `coerce_arrays` (a
        column type it does not hold, a NULL in a NOT NULL column, a sparsevec index)."""
        shape = self._row_shape()
        types = shape[6]
        if types is None:
            return None
        for value, kind, col in zip(values, types, shape[0].columns):
            if value is None:
                if col.not_null:
                    return None  # 23502 as `coerce_arrays` reports it (the failing row)
            elif type(value) is not kind:
                return None
        return RowInsertOp(self.id, tuple(values), shape[1], shape[0])

    def _prepare_row(self, op: RowInsertOp, claim: _Claim) -> RowInsertOp:
        """`prepare` of a `RowInsertOp`: its keys checked as `_prepare_one_row` checks them,
        from its values; the physical row is the values after a new row id."""
        values = op.values
        key_positions = self._row_shape()[5]
        values_per_key, absent_at = self._check_one_row_keys(
            claim, lambda names: [values[p] for p in key_positions[names]])
        rowid = self.next_rowid
        self.next_rowid += 1
        prepared = RowInsertOp(self.id, (rowid, *values), self.def_.physical_schema(),
                               self.def_)
        if self.keys:
            for i, value in enumerate(values_per_key):
                if value is not None:
                    claim.added[i].insert_one(value, rowid)
            claim.row_keys[id(prepared)] = (values_per_key, absent_at)
        return prepared

    def _check_keys(self, key: int, table: pa.Table,
                    claim: _Claim) -> tuple[np.ndarray, np.ndarray | None]:
        """The rows' values of unique key `key`, checked: not NULL in a primary key, not
        repeated in the batch, not held by a committed row or a commit in flight (after this
        commit's own deletes). Returns the keys of the rows the index holds and which rows
        those are (None: all)."""
        uk = self.keys[key]
        valid = uk.valid(table)
        if valid is not None:
            if uk.def_.primary:
                col = next(c for c in uk.def_.columns if table.column(c).null_count)
                raise self.null_violation(col)
            table = table.filter(pa.array(valid))
            if table.num_rows == 0:
                return uk.keys_of(table), valid
        if table.num_rows == 1:  # a single-row INSERT's: no NumPy work
            value = uk.key_one(table)
            with self.lock:
                held = self._effective_one(key, value, [claim] + self._claims[::-1])
            if held != MISSING:
                raise self.duplicate_key(key, value)
            return uk.index.array_of(value), valid
        keys = uk.keys_of(table)
        dup = KeyIndex.first_duplicate(keys)
        if dup is None:
            with self.lock:
                held = self._effective(key, keys, claim)
            clash = np.flatnonzero(held != MISSING)
            if clash.size:
                dup = keys[clash[0]]
        if dup is not None:
            raise self.duplicate_key(key, dup)
        return keys, valid

    def _effective(self, key: int, keys: np.ndarray, claim: _Claim | None) -> np.ndarray:
        """Row id holding each key once every commit in flight (and `claim`, the one being
        prepared) has applied. Caller holds the lock: applying and releasing a claim happen
        in that order, each under it, so the index and the claims are read consistently."""
        claims = ([claim] if claim is not None else []) + self._claims[::-1]
        if keys.size == 1:
            return np.array([self._effective_one(key, keys.tolist()[0], claims)], np.int64)
        out = np.full(keys.size, MISSING, np.int64)
        todo = np.ones(keys.size, bool)
        for c in claims:
            idx = np.flatnonzero(todo)
            if idx.size == 0:
                return out
            if len(c.added[key]):
                got = c.added[key].lookup(keys[idx])
                hit = got != MISSING
                out[idx[hit]] = got[hit]
                todo[idx[hit]] = False
            if len(c.removed[key]):
                gone = c.removed[key].lookup(keys[idx]) != MISSING
                todo[idx[gone]] = False
            if c.truncated:
                return out
        idx = np.flatnonzero(todo)
        if idx.size:
            out[idx] = self.keys[key].index.lookup(keys[idx])
        return out

    def _effective_one(self, key: int, value: object, claims: list[_Claim]) -> int:
        """`_effective` of one key, without NumPy (the single-row statement's path)."""
        for c in claims:
            if len(c.added[key]):
                got = c.added[key].get(value)
                if got != MISSING:
                    return got
            if len(c.removed[key]) and c.removed[key].get(value) != MISSING:
                return MISSING
            if c.truncated:
                return MISSING
        return self.keys[key].index.get(value)

    def _claimed(self, key: int, keys: np.ndarray) -> bool:
        for c in self._claims:
            if c.truncated:
                return True
            for part in (c.added[key], c.removed[key]):
                if len(part) and (part.lookup(keys) != MISSING).any():
                    return True
        return False

    def release(self, ops: list) -> None:
        """Drop the claims of prepared ops (after apply, or when the WAL write failed)."""
        with self.lock:
            for op in ops:
                claim = self._claim_of.get(id(op))
                if claim is None:
                    continue
                for op_id in claim.op_ids:
                    self._claim_of.pop(op_id, None)
                self._claims.remove(claim)  # (by identity: a claim has no __eq__)
            if self._release_waiters:
                self._released.notify_all()

    def _current_shape(self, rows: pa.Table | pa.RecordBatch) -> pa.Table | pa.RecordBatch:
        """Rows a transaction buffered before another session's ALTER TABLE, in the current
        definition: columns added since read as their missing value, dropped ones are left
        out; a column renamed or retyped since makes the commit fail with 40001 (PostgreSQL
        would have made the ALTER wait for the transaction)."""
        schema = rows.schema
        if isinstance(rows, pa.RecordBatch) and schema.equals(self.def_.arrow_schema()):
            return rows
        missing = []
        for col in self.def_.columns:
            i = schema.get_field_index(col.name)
            if i < 0:
                missing.append(col)
            elif not schema.field(i).type.equals(col.type.to_arrow()):
                break
        else:
            if not missing:
                return rows
            known = set(self.def_.column_names) | {ROWID}
            # Added columns only: a column also gone may have been renamed, which names cannot
            # tell from a drop and an add.
            if all(name in known for name in schema.names):
                n = rows.num_rows
                for col in missing:
                    target = col.type.to_arrow()
                    value = pa.nulls(n, target) if col.missing_value is None or not n else \
                        pa.repeat(pa.scalar(col.missing_value, target), n)
                    rows = rows.append_column(col.name, value)
                return rows
        raise SerializationFailure("could not serialize access due to concurrent update",
                                   detail=f'The definition of table "{self.def_.name}" changed '
                                          "since the transaction wrote to it.")

    def _physical(self, table: pa.Table | pa.RecordBatch) -> pa.RecordBatch:
        n = table.num_rows
        rowids = one_value_array(self.next_rowid, pa.int64()) if n == 1 else \
            pa.array(np.arange(self.next_rowid, self.next_rowid + n, dtype=np.int64))
        self.next_rowid += n
        if isinstance(table, pa.RecordBatch) and table.schema.equals(self.def_.arrow_schema()):
            # Already the table's columns, in order (as `coerce_arrays` made them, when it did:
            # `columns` wraps each again).
            arrays = [rowids] + (_hint.arrays if getattr(_hint, "batch", None) is table
                                 else table.columns)
        else:
            arrays = [rowids] + [_one_chunk(table.column(c.name)) for c in self.def_.columns]
        return pa.RecordBatch.from_arrays(arrays, schema=self.def_.physical_schema())

    # Applying a durable commit (under this table's lock) -----------------------------------

    def apply(self, op) -> bool:
        """Apply one committed (or replayed) WAL op to the in-memory state; the next `snapshot`
        sees it. Whether it emptied the table (a TRUNCATE)."""
        with self.lock:
            kind = type(op)
            if kind is RowInsertOp and (op.schema is self.memtable.schema or
                                        op.schema.equals(self.memtable.schema)):
                self._apply_row(op)
            elif kind is DeleteOp:
                claim = self._claim_of.get(id(op))
                if claim is None:  # replayed
                    self._apply_delete(np.asarray(op.rowids, dtype=np.int64))
                else:
                    self._apply_delete(np.asarray(op.rowids, dtype=np.int64),
                                       claim.delete_keys.get(id(op)), claim.delete_at.get(id(op)))
            else:
                self._apply_other(op)
            self._snapshot = None  # (`_invalidate`, inline: once per op applied)
            self._version += 1
            return kind is TruncateOp

    def _apply_other(self, op) -> None:
        """`apply` of an op other than a delete or a one-row insert of values in the current
        schema."""
        if isinstance(op, InsertRunOp):  # as one insert, as replay reads it back
            op = InsertOp(self.id, op.physical())
        if isinstance(op, InsertOp):  # (a `RowInsertOp` here: one of an older schema)
            batch = conform_batch(op.batch, self.def_)
            self.memtable.append(batch)
            claim = self._claim_of.get(id(op)) if batch.num_rows == 1 else None
            known = claim.insert_keys.get(id(op)) if claim is not None else None
            if known is not None:  # a one-row insert whose keys prepare read
                for uk, held in zip(self.keys, known[0]):
                    if held is not None:
                        uk.index.insert(*held)
                self.next_rowid = max(self.next_rowid, known[1] + 1)
            elif batch.num_rows == 1:  # a single-row INSERT's: no NumPy work
                rowid = batch.column(0)[0].as_py()
                for uk in self.keys:
                    if uk.valid(batch, physical=True) is not None:
                        continue  # a NULL in the key: the index does not hold it
                    key = uk.key_one(batch, physical=True)
                    uk.index.insert(uk.index.array_of(key), np.array([rowid], np.int64))
                self.next_rowid = max(self.next_rowid, rowid + 1)
            elif batch.num_rows:
                rowids = batch.column(ROWID).to_numpy()
                for uk in self.keys:
                    uk.index.insert(*uk.held(batch, rowids, physical=True))
                self.next_rowid = max(self.next_rowid, int(rowids.max()) + 1)
        elif isinstance(op, TruncateOp):
            self.sealed = []
            self.deletes = {}
            self.sealing = []
            self.memtable = Memtable(self.def_, self.memtable_rows)
            for uk in self.keys:
                uk.index.clear()
            self._key_epoch += 1

    def _apply_row(self, op: RowInsertOp) -> None:
        """`apply` of a prepared `RowInsertOp`: the row queued in the growing segment as its
        values, its keys (read by prepare) indexed."""
        values = op.values
        bound = 16 * len(values)  # a value's bytes, its offset and validity, rounded up
        for v in values:
            if type(v) is str:
                bound += 4 * len(v)
            elif type(v) is bytes:
                bound += len(v)
        self.memtable.append_row(values, bound)
        claim = self._claim_of.get(id(op))
        known = claim.row_keys.get(id(op)) if claim is not None else None
        if known is not None:
            keys, absent_at = known
            absent = absent_at == self._version  # (nothing applied since they were checked)
            for uk, key in zip(self.keys, keys):
                if key is None:
                    continue
                if absent:
                    uk.index.insert_new(key, values[0])
                else:
                    uk.index.insert_one(key, values[0])
        elif self.keys:  # pragma: no cover - prepare always leaves a keyed row's keys
            batch = op.batch
            for uk in self.keys:
                if uk.valid(batch, physical=True) is None:
                    key = uk.key_one(batch, physical=True)
                    uk.index.insert(uk.index.array_of(key), np.array([values[0]], np.int64))
        self.next_rowid = max(self.next_rowid, values[0] + 1)

    def _apply_delete(self, rowids: np.ndarray,
                      known: list[tuple[np.ndarray, np.ndarray]] | None = None,
                      at: tuple[int, SegmentData, int] | None = None) -> None:
        """Delete rows; `known`: their keys and row ids as prepare read them (WAL replay reads
        them here); `at`: where prepare found a single row, and the table's version then."""
        if rowids.size == 1 and self._snapshot is None and (known is not None or not self.keys):
            # One row after another op of the same commit group invalidated the snapshot:
            # located in the current state, without building a snapshot nobody reads.
            self._apply_delete_one(int(rowids[0]), known or [], at)
            return
        snap = self._snapshot or self._current()
        if rowids.size == 1:
            i, position = snap._locate_one(int(rowids[0]))
            where, pos = np.array([i], np.int64), np.array([position], np.int64)
        else:
            where, pos = snap.locate(rowids)
        if self.keys:
            if known is None:
                rows = snap.rows_by_id(rowids, self._key_columns())
                ids = rows.column(ROWID).to_numpy()
                known = [uk.held(rows, ids) for uk in self.keys]
            for uk, (keys, ids) in zip(self.keys, known):
                uk.index.remove(keys, ids)
            self._key_epoch += 1
        n_sealed = len(snap.sealed)
        if where.size == 1:  # one row: no masks
            views = [int(where[0])] if where[0] >= 0 else []
        else:
            views = np.unique(where[where >= 0]).tolist()
        for i in views:
            hit = pos if where.size == 1 else pos[where == i]
            if i < n_sealed:
                seg = snap.sealed[i].data
                self.deletes[seg.id] = self.deletes[seg.id].with_deleted(hit)
            else:
                self.memtable.delete(hit)

    def _apply_delete_one(self, rowid: int, known: list[tuple[np.ndarray, np.ndarray]],
                          at: tuple[int, SegmentData, int] | None = None) -> None:
        """`_apply_delete` of one row whose keys prepare read; `at`: where prepare found it,
        taken when nothing changed since (its keys are then the row's, held by it; a sealed
        segment's row is flagged at its position there)."""
        unchanged = at is not None and at[0] == self._version
        for uk, (keys, ids) in zip(self.keys, known):
            if unchanged:
                uk.index.remove_held(keys)
            else:
                uk.index.remove(keys, ids)
        if self.keys:
            self._key_epoch += 1
        if unchanged and at[1].id in self.deletes:  # type: ignore[index]
            seg_id, position = at[1].id, at[2]  # type: ignore[index]
            self.deletes[seg_id] = self.deletes[seg_id].with_deleted_one(position)
            return
        for seg in self.sealed:
            position = _position_in(seg, rowid)
            if position >= 0:
                self.deletes[seg.id] = self.deletes[seg.id].with_deleted_one(position)
                return
        position = self.memtable.position_of(rowid)
        if position >= 0:
            self.memtable.delete_one(position)

    def _key_columns(self) -> list[str]:
        return list(dict.fromkeys(c for k in self.keys for c in k.def_.columns))

    def rebuild_keys(self) -> None:
        """Rebuild every unique key's index from the live rows: one vectorized pass over the
        key columns (when a database is opened, and after a key's columns change type)."""
        self.keys = self._built_keys(self.def_.unique_keys, check=False)
        self._version += 1  # (a row's key checked against the old indexes is not known absent)

    def share_keys(self, other: Table | None) -> bool:
        """Take copies of `other`'s unique key indexes instead of rebuilding them, when they
        index exactly this table's rows: the same table loaded earlier with the same key
        definitions, the same segment objects with no deletes applied since (the same bitmaps,
        or none on either side) and nothing in its growing segment. An integer key's sorted
        base is shared, not copied (`IntKeyIndex.copy`): a follower seeded with the tables of
        the writer it was forked from keeps those pages shared with it. Whether it did."""
        if other is None or other is self or other.memtable.n_rows or other.sealing or \
                len(other.sealed) != len(self.sealed):
            return False
        for mine, theirs in zip(self.sealed, other.sealed):
            if mine is not theirs:
                return False
            a, b = self.deletes.get(mine.id), other.deletes.get(mine.id)
            if a is not b and (a is None or b is None or a.count or b.count):
                return False
        keys = [UniqueKey(k, self.def_) for k in self.def_.unique_keys]
        if len(keys) != len(other.keys) or any(
                (k.def_, k.signature, type(k.index)) != (o.def_, o.signature, type(o.index))
                for k, o in zip(keys, other.keys)):
            return False
        for k, o in zip(keys, other.keys):
            k.index = o.index.copy()
        self.keys = keys
        return True

    def _built_keys(self, key_defs: Sequence[KeyDef], check: bool = True) -> list[UniqueKey]:
        """Unique keys with their indexes built from the live rows. With `check`, a key
        whose values repeat is PostgreSQL's error for building its unique index (23505)."""
        built = [UniqueKey(k, self.def_) for k in key_defs]
        if not built:
            return built
        snap = self._current()
        for uk in built:
            keys, rowids = [], []
            for part in snap.scan(list(uk.def_.columns), with_rowid=True):
                k, ids = uk.held(part, part.column(ROWID).to_numpy())
                keys.append(k)
                rowids.append(ids)
            if not keys:
                continue
            every = np.concatenate(keys)
            if check:
                dup = KeyIndex.first_duplicate(every)
                if dup is not None:
                    vals = ", ".join(_fmt(v) for v in KeyIndex.values_of(dup))
                    raise UniqueViolation(
                        f'could not create unique index "{uk.def_.name}"',
                        detail=f"Key ({', '.join(uk.def_.columns)})=({vals}) is duplicated.",
                        schema=self.def_.schema, table=self.def_.name,
                        constraint=uk.def_.name)
            uk.index.insert(every, np.concatenate(rowids))
        return built

    # Sealing ------------------------------------------------------------------------------------

    def freeze(self, applied_lsn: int) -> Segment | None:
        """Turn the growing segment into an in-memory sealed segment (file written later)."""
        with self.lock:
            if self.memtable.n_rows == 0:
                return None
            table = self.memtable.live_table()
            self.memtable = Memtable(self.def_, self.memtable_rows)
            self._invalidate()
            if table.num_rows == 0:
                return None
            seg = Segment(self.next_segment_id, table, None)
            self.next_segment_id += 1
            self.sealed.append(seg)
            self.deletes[seg.id] = DeleteBitmap.empty(seg.n_rows)
            self.sealing.append(seg)
            seg.freeze_lsn = applied_lsn  # type: ignore[attr-defined]
            return seg

    def renew_memtable(self) -> None:
        """Start an empty growing segment if the current one holds no rows (a commit of
        schema changes keeps the old one for a restore: `Store.commit_deferred`)."""
        with self.lock:
            if self.memtable.n_rows == 0:
                self.memtable = Memtable(self.def_, self.memtable_rows)
                self._invalidate()

    def replace_segments(self, old: list[Segment], new: Segment | None,
                         carried: DeleteBitmap | None = None) -> None:
        """Swap `old` segments for `new` (compaction), keeping the list in rowid order."""
        with self.lock:
            old_ids = {s.id for s in old}
            self.sealed = [s for s in self.sealed if s.id not in old_ids]
            for sid in old_ids:
                self.deletes.pop(sid, None)
            if new is not None:
                self.sealed.append(new)
                self.sealed.sort(key=lambda s: int(s.rowids[0]) if s.n_rows else -1)
                self.deletes[new.id] = carried or DeleteBitmap.empty(new.n_rows)
            self._invalidate()

    # Schema changes -----------------------------------------------------------------------------

    def set_def(self, table_def: TableDef) -> None:
        """Install a changed definition; the growing segment is rewritten to the new columns.
        A unique key the change adds is built from the rows first: if their values repeat,
        nothing changes and the error (23505) is raised."""
        with self.lock:
            keys = [UniqueKey(k, table_def) for k in table_def.unique_keys]
            old = {(k.def_.name, k.signature): k for k in self.keys}
            new_keys = None

            def shape(d: TableDef) -> list:
                return [(c.name, c.attnum, c.type) for c in d.columns]
            if shape(self.def_) == shape(table_def):
                # Keys added or dropped, the columns' values alike: an added key is built
                # (and checked) before anything changes; the ones kept keep their indexes.
                added = [k.def_ for k in keys if (k.def_.name, k.signature) not in old]
                fresh = iter(self._built_keys(added))
                new_keys = [old.get((k.def_.name, k.signature)) or next(fresh) for k in keys]
                for kept, k in zip(new_keys, keys):
                    kept.def_ = k.def_
            old_rows = self.memtable.live_table() if self.memtable.n_rows else None
            self.def_ = table_def
            self.memtable = Memtable(table_def, self.memtable_rows)
            if old_rows is not None and old_rows.num_rows:
                for batch in old_rows.to_batches():
                    self.memtable.append(conform_batch(batch, table_def))
            self._invalidate()
            if new_keys is not None:
                self.keys = new_keys
            elif [k.signature for k in keys] != [k.signature for k in self.keys]:
                self.rebuild_keys()
            else:  # renamed columns or table: same values, new names
                for kept, new in zip(self.keys, keys):
                    kept.def_ = new.def_


    def replace_all(self, table_def: TableDef, segments: list[Segment]) -> Callable[[], None]:
        """Install a rewritten table (ALTER COLUMN TYPE): `segments` hold every live row in the
        new definition's physical schema, the growing segment starts empty. Returns the undo,
        for a manifest commit that fails."""
        with self.lock:
            saved = (self.def_, self.sealed, self.deletes, self.sealing, self.memtable,
                     self.keys, self.checkpoint_lsn, self.persisted_deletes)
            self.def_ = table_def
            self.sealed = list(segments)
            self.deletes = {s.id: DeleteBitmap.empty(s.n_rows) for s in segments}
            self.persisted_deletes = {}
            self.sealing = []
            self.memtable = Memtable(table_def, self.memtable_rows)
            self._invalidate()
            self.rebuild_keys()

        def undo() -> None:
            with self.lock:
                (self.def_, self.sealed, self.deletes, self.sealing, self.memtable,
                 self.keys, self.checkpoint_lsn, self.persisted_deletes) = saved
                self._invalidate()
        return undo


# Helpers ----------------------------------------------------------------------------------------


def conform_batch(batch: pa.RecordBatch | pa.Table, table_def: TableDef) -> pa.RecordBatch | pa.Table:
    """Bring physical rows (possibly written before ALTER TABLE) to the current columns."""
    schema = table_def.physical_schema()
    if batch.schema.equals(schema):
        return batch
    n = batch.num_rows
    arrays = [batch.column(ROWID)]
    for col in table_def.columns:
        target = col.type.to_arrow()
        if col.physical in batch.schema.names:
            arrays.append(batch.column(col.physical).cast(target))
        elif col.missing_value is None:
            arrays.append(pa.nulls(n, target))
        elif n == 0:  # pa.repeat of a nested scalar refuses zero repetitions
            arrays.append(pa.array([], target))
        else:
            arrays.append(pa.repeat(pa.scalar(col.missing_value, target), n))
    return type(batch).from_arrays(arrays, schema=schema)


def cast_column(column: pa.ChunkedArray | pa.Array, col: ColumnDef) -> pa.ChunkedArray:
    """Cast one input column to the column's storage type, with PostgreSQL's errors."""
    target = col.type.to_arrow()
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    if column.type.equals(target):
        return column
    if col.type.is_vector and col.type.dims is not None:
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or \
                pa.types.is_fixed_size_list(column.type):
            lengths = pc.list_value_length(column)
            bad = pc.and_(pc.is_valid(lengths), pc.not_equal(lengths, col.type.dims))
            if pc.any(bad).as_py():
                got = pc.filter(lengths, bad)[0].as_py()
                raise DataException(f"expected {col.type.dims} dimensions, not {got}")
            values = pc.list_flatten(column)
            kind = col.type.name
            if values.null_count:
                raise DataException(f"NaN not allowed in {kind}")
            checked = values.to_numpy(zero_copy_only=False).astype(np.float64)
            if np.isnan(checked).any():
                raise DataException(f"NaN not allowed in {kind}")
            if np.isinf(checked).any():
                raise DataException(f"infinite value not allowed in {kind}")
            with np.errstate(over="ignore"):
                narrow = checked.astype(np.float32).astype(col.type.vector_dtype)
            if np.isinf(narrow).any():  # beyond float (vector) or half (halfvec) precision
                bad = float(np.float32(checked[np.isinf(narrow)][0]))
                shown = format_float4(bad) if kind == "halfvec" else str(bad)
                raise SqlVecError(f'"{shown}" is out of range for type {kind}', sqlstate="22003")
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SqlVecError(
            f'column "{col.name}" is of type {col.type.format()} but expression is of type '
            f"{column.type}", sqlstate="42804", detail=str(exc)) from exc


# Arrow types whose values a NumPy view holds as is (a search's winners are picked from it).
_NUMPY_TYPES = frozenset(t.id for t in (pa.int16(), pa.int32(), pa.int64(), pa.float32(),
                                        pa.float64()))


def _numpy_column(data: SegmentData, physical: str, arrow: pa.DataType,
                  missing: object) -> np.ndarray | None:
    """A segment's column as a NumPy view, when it is one chunk of numbers without NULLs (kept
    with the segment: its rows never change); None otherwise."""
    if arrow.id not in _NUMPY_TYPES or not isinstance(missing, (int, float, type(None))):
        return None

    def build() -> object:
        column = data.column(physical, arrow, missing)
        if column.num_chunks != 1 or column.null_count or column.type != arrow:
            return False
        return column.chunk(0).to_numpy(zero_copy_only=True)

    view = data.cached(("numpy", physical, missing), build)
    return None if view is False else view  # type: ignore[return-value]


def segment_numbers(data: SegmentData, col: ColumnDef, arrow: pa.DataType) -> np.ndarray | None:
    """A segment's column (of Arrow type `arrow`) as a NumPy view when it is one chunk of
    numbers without NULLs, for a caller that picks the winners' cells itself; else None."""
    return _numpy_column(data, col.physical, arrow, col.missing_value)


_INT8, _FLOAT8 = pa.int64(), pa.float64()


def _numbers(values: np.ndarray, arrow: pa.DataType) -> pa.Array:
    """An Arrow array of `arrow` (whose NumPy dtype `values` has) over the values, without
    NULLs: its buffer wrapped rather than converted (a third of `pa.array`'s cost)."""
    if not values.flags.c_contiguous:  # (a take's result is: the copy costs a third)
        values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(arrow, values.size, [None, pa.py_buffer(values)])


def _gather(picks: list[tuple[SegmentView, np.ndarray, np.ndarray | None]], n: int,
            physical: str, arrow: pa.DataType, missing: object) -> pa.Array | pa.ChunkedArray:
    """One column's cells of the winners: `picks` holds per segment the positions taken and
    their places in the result (None: the only segment, in order)."""
    views = [_numpy_column(view.data, physical, arrow, missing) for view, _, _ in picks]
    if all(v is not None for v in views) and len({v.dtype for v in views}) == 1:
        if len(picks) == 1:
            return _numbers(views[0][picks[0][1]], arrow)
        out = np.empty(n, views[0].dtype)
        for values, (_, at, slots) in zip(views, picks):
            out[slots] = values[at]
        return _numbers(out, arrow)
    parts = [view.data.column(physical, arrow, missing).take(pa.array(at))
             for view, at, _ in picks]
    if len(parts) == 1:
        return parts[0]
    chunks = [c for part in parts for c in part.chunks]
    merged = pa.chunked_array(chunks, arrow)
    rank = np.concatenate([slots for _, _, slots in picks])
    # `rank` is each cell's place in the result: undo the per-segment grouping.
    return merged.take(pa.array(np.argsort(rank, kind="stable")))


_POLICY = SearchPolicy()
# Entries a snapshot's memo keeps (plans per column, metric, k and knob): a bound for a
# snapshot that stays current while queries vary LIMIT.
_MEMO_ENTRIES = 16
# Readers' values a snapshot keeps (`TableSnapshot.keep`: a prepared top-k's per session).
_KEPT_ENTRIES = 256


def _fresh(plan: SegmentPlan) -> SegmentPlan:
    """A copy of a planned segment's record (running a search fills it in)."""
    out = object.__new__(SegmentPlan)
    out.__dict__.update(plan.__dict__)
    return out


def _still_indexed(cached: list[SegmentSearch], index: IndexDef | None, exact: bool) -> bool:
    """Whether each segment of a cached plan still has the index it was planned with: indexes
    attach to sealed segments when a background build ends (and detach when dropped or
    rebuilt) without a new snapshot."""
    if index is None or exact:
        return True
    name = index.name
    return all(s.view.data.index(name) is s.index for s in cached)


def _as_arrow(value: object) -> pa.Array:
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 2:
        flat = pa.array(np.ascontiguousarray(value, dtype=np.float32).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, value.shape[1])
    return pa.array(value)


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    """A column as one array: its only chunk as is (combine_chunks would copy it)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


# Up to this many rows, locating and taking go row by row: NumPy and Arrow calls cost more
# than the work for one row (Arrow's take is ~25 µs, a one-row slice ~3 µs).
_FEW = 8


def _take(table: pa.Table, positions: np.ndarray) -> pa.Table:
    """Rows at `positions` of `table`, in order."""
    if positions.size == 1:
        return table.slice(int(positions[0]), 1)
    if positions.size <= _FEW:
        return pa.concat_tables([table.slice(p, 1) for p in positions.tolist()])
    return table.take(pa.array(positions))


def _fmt(value: object) -> str:
    return "null" if value is None else str(value)
