"""A table: the growing segment, the sealed segments and their deletes — our TableProvider.

Writers go through the store's commit pipeline (store.py): `prepare` validates a commit's ops
against the committed state plus the commits already in flight (primary keys, deleted rows), the
WAL makes the record durable, and `apply` makes it visible. Readers call `snapshot()` and get an
immutable `TableSnapshot` (segment list + delete bitmaps) that later writes never change, so
reads never block writes and never see half of a commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

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
from sqlvec.storage.deletes import DeleteBitmap
from sqlvec.storage.memtable import Memtable
from sqlvec.storage.schema import ROWID, ColumnDef, IndexDef, TableDef
from sqlvec.storage.search import (
    SearchPolicy,
    SegmentPlan,
    SegmentSearch,
    plan_segment,
    run_all,
)
from sqlvec.storage.segment import Segment, SegmentData, SegmentView
from sqlvec.storage.wal import DeleteOp, InsertOp, TruncateOp
from sqlvec.vectors import Metric

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


def mask_of(result: np.ndarray | pa.Array | pa.ChunkedArray | bool, n: int) -> np.ndarray:
    """A filter's result as a plain bool ndarray (NULL → false, scalar broadcast)."""
    if isinstance(result, (bool, np.bool_)):
        return np.full(n, bool(result))
    if isinstance(result, pa.Scalar):
        return np.full(n, bool(result.as_py()))
    if isinstance(result, (pa.Array, pa.ChunkedArray)):
        return pc.fill_null(result, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)
    return np.asarray(result, dtype=bool)


@dataclass(frozen=True)
class TableSnapshot:
    """An immutable view of a table for one reader."""

    table_def: TableDef
    sealed: tuple[SegmentView, ...]
    growing: SegmentView

    # Properties ---------------------------------------------------------------------------------

    @property
    def views(self) -> tuple[SegmentView, ...]:
        return self.sealed + (self.growing,)

    @property
    def row_count(self) -> int:
        """Live rows (deleted rows excluded)."""
        return sum(v.live_count for v in self.views)

    # Reads --------------------------------------------------------------------------------------

    def candidates(self, view: SegmentView, filter: RowFilter | None) -> np.ndarray | None:
        """Mask of the live rows of `view` passing `filter`; None means every row."""
        live = view.live_mask()
        if filter is None:
            return live
        mask = mask_of(filter(logical_table(view, self.table_def, None, with_rowid=True)),
                       view.data.n_rows)
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
        parts = list(self.scan(columns, filter=filter, with_rowid=with_rowid))
        if not parts:
            empty = logical_table(self.growing, self.table_def, columns, with_rowid)
            return empty.slice(0, 0)
        return pa.concat_tables(parts)

    def hnsw_index_for(self, column: str, metric: Metric) -> IndexDef | None:
        for ix in self.table_def.hnsw_indexes:
            if ix.columns == (column,) and ix.opclass == metric.opclass:
                return ix
        return None

    def plan_search(
        self,
        column: str,
        metric: Metric,
        k: int,
        *,
        filter: RowFilter | None = None,
        prune: Callable[[SegmentData], bool] | None = None,
        ef: int = 40,
        target_recall: float | None = None,
        exact: bool = False,
        policy: SearchPolicy | None = None,
    ) -> list[SegmentSearch]:
        """Plan a top-k search: per segment, the filter is evaluated (vectorized) and a strategy
        chosen from the exact candidate count (storage/search.py). No vector work happens."""
        col = self._vector_column(column)
        index = None if exact else self.hnsw_index_for(column, metric)
        searches = []
        for view in self.views:
            if view.data.n_rows == 0:
                continue
            pruned = prune is not None and prune(view.data)
            allowed = None
            if filter is not None and not pruned:
                allowed = mask_of(filter(logical_table(view, self.table_def, None,
                                                       with_rowid=True)), view.data.n_rows)
            searches.append(plan_segment(
                view, col.physical, col.type.dims, metric, k, allowed=allowed,
                index_name=index.name if index else None, ef=ef, target_recall=target_recall,
                exact=exact, pruned=pruned, policy=policy or SearchPolicy()))
        return searches

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
        ef: int = 40,
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
        col = self._vector_column(column)
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if query.shape[0] != col.type.dims:
            raise DataException(
                f"different vector dimensions {col.type.dims} and {query.shape[0]}")
        searches = self.plan_search(column, metric, k, filter=filter, prune=prune, ef=ef,
                                    target_recall=target_recall, exact=exact, policy=policy)
        results = run_all(searches, metric, query)
        if plans is not None:
            plans.extend(s.plan for s in searches)
        per_view = [(s.view, hits) for s, hits in zip(searches, results)]
        return self._merge(per_view, k, columns, with_rowid, distance_name)

    def _vector_column(self, column: str) -> ColumnDef:
        try:
            col = self.table_def.column(column)
        except KeyError:
            raise UndefinedColumn(f'column "{column}" does not exist') from None
        if not col.type.is_vector:
            raise SqlVecError(f'column "{column}" is not a vector', sqlstate="42804")
        if col.type.dims is None:
            raise DataException(f'column "{column}" does not have dimensions')
        return col

    def _merge(self, per_view: list[tuple[SegmentView, tuple[np.ndarray, np.ndarray]]], k: int,
               columns: Sequence[str] | None, with_rowid: bool, distance_name: str) -> pa.Table:
        busy = [(v, h) for v, h in per_view if h[0].size]
        if len(busy) == 1:
            # One segment answered: its hits are already nearest first.
            view, (pos, dists) = busy[0]
            table = logical_table(view, self.table_def, columns, with_rowid).take(pa.array(pos[:k]))
            return table.append_column(distance_name, pa.array(dists[:k], pa.float64()))
        dists = np.concatenate([h[1] for _, h in per_view]) if per_view else np.empty(0)
        owner = np.concatenate(
            [np.full(h[0].size, i) for i, (_, h) in enumerate(per_view)]
        ) if per_view else np.empty(0, np.int64)
        pos = np.concatenate([h[0] for _, h in per_view]) if per_view else np.empty(0, np.int64)
        order = np.lexsort((pos, owner, np.where(np.isnan(dists), np.inf, dists)))[:k]
        parts = []
        for i, (view, _) in enumerate(per_view):
            chosen = order[owner[order] == i]
            if chosen.size:
                t = logical_table(view, self.table_def, columns, with_rowid).take(pa.array(pos[chosen]))
                parts.append((chosen, t))
        if not parts:
            empty = logical_table(self.growing, self.table_def, columns, with_rowid).slice(0, 0)
            return empty.append_column(distance_name, pa.array([], pa.float64()))
        merged = pa.concat_tables([t for _, t in parts])
        place = np.empty(dists.size, np.int64)
        place[order] = np.arange(order.size)
        rank = np.concatenate([place[c] for c, _ in parts])
        # `rank` is each row's place in the global order: undo the per-segment grouping.
        merged = merged.take(pa.array(np.argsort(rank, kind="stable")))
        merged = merged.append_column(distance_name, pa.array(dists[order], pa.float64()))
        return merged


class Table:
    """The live state of one table. Thread-safe; writers are serialized by the store."""

    def __init__(self, table_def: TableDef, directory: str, memtable_rows: int = 65_536) -> None:
        self.def_ = table_def
        self.directory = directory
        self.memtable_rows = memtable_rows  # capacity the growing segment reserves up front
        self.lock = threading.RLock()
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
        self.pk_map: dict[object, int] = {}
        self._reserved_keys: set = set()
        self._pending_deletes: set[int] = set()
        self._snapshot: TableSnapshot | None = None

    # Properties ---------------------------------------------------------------------------------

    @property
    def id(self) -> int:
        return self.def_.id

    @property
    def name(self) -> str:
        return self.def_.name

    def snapshot(self) -> TableSnapshot:
        snap = self._snapshot
        if snap is None:
            with self.lock:
                snap = self._snapshot
                if snap is None:
                    snap = self._current()
                    self._snapshot = snap
        return snap

    def _current(self) -> TableSnapshot:
        """The state right now, not cached: in the middle of applying a commit it must not
        become what readers see (they read `_snapshot` without the lock)."""
        return TableSnapshot(
            self.def_,
            tuple(SegmentView(s, self.deletes[s.id]) for s in self.sealed),
            self.memtable.snapshot(),
        )

    def _invalidate(self) -> None:
        self._snapshot = None

    # Preparing a commit (under the store's commit lock) ----------------------------------------

    def coerce(self, data: pa.Table | pa.RecordBatch | dict) -> pa.Table:
        """Shape user rows into the table's logical schema: cast types, check dimensions,
        fill absent columns with NULL, enforce NOT NULL."""
        if isinstance(data, dict):
            data = pa.table({k: _as_arrow(v) for k, v in data.items()})
        elif isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        n = data.num_rows
        known = set(self.def_.column_names)
        for name in data.column_names:
            if name not in known:
                raise UndefinedColumn(
                    f'column "{name}" of relation "{self.def_.name}" does not exist')
        arrays = []
        for col in self.def_.columns:
            target = col.type.to_arrow()
            if col.name in data.column_names:
                arrays.append(cast_column(data.column(col.name), col))
            else:
                arrays.append(pa.chunked_array([pa.nulls(n, target)], type=target))
            if col.not_null and arrays[-1].null_count:
                raise NotNullViolation(
                    f'null value in column "{col.name}" of relation "{self.def_.name}" '
                    "violates not-null constraint")
        return pa.Table.from_arrays(arrays, schema=self.def_.arrow_schema())

    def prepare(self, ops: list) -> list:
        """Validate one commit's ops for this table and reserve what it claims.

        Returns the ops in WAL form (inserts get their rowids and physical names). Raises
        23505 on a duplicate primary key, 40001 when a row to delete is already gone."""
        out = []
        removed_keys: set = set()
        added_keys: set = set()
        snap = self.snapshot()
        for op in ops:
            if isinstance(op, DeleteOp):
                rowids = np.unique(np.asarray(op.rowids, dtype=np.int64))
                if self._pending_deletes.intersection(rowids.tolist()) or not _all_live(snap, rowids):
                    raise SerializationFailure(
                        "could not serialize access due to concurrent update")
                if self.def_.primary_key:
                    keys = self._keys_of(snap, rowids)
                    removed_keys |= keys
                    added_keys -= keys
                out.append(DeleteOp(self.id, rowids))
            elif isinstance(op, InsertOp):
                table = op.batch if isinstance(op.batch, pa.Table) else pa.Table.from_batches([op.batch])
                if self.def_.primary_key and table.num_rows:
                    keys = _key_list(table, self.def_.primary_key)
                    self._check_keys(keys, removed_keys, added_keys, table)
                    added_keys |= set(keys)
                out.append(InsertOp(self.id, self._physical(table)))
            elif isinstance(op, TruncateOp):
                out.append(op)
                removed_keys = set(self.pk_map) | added_keys
                added_keys = set()
            else:  # pragma: no cover - programming error
                raise TypeError(op)
        self._reserved_keys |= added_keys
        for op in out:
            if isinstance(op, DeleteOp):
                self._pending_deletes.update(op.rowids.tolist())
        return out

    def release(self, ops: list) -> None:
        """Drop the reservations of prepared ops (after apply, or when the WAL write failed)."""
        for op in ops:
            if isinstance(op, DeleteOp):
                self._pending_deletes.difference_update(op.rowids.tolist())
            elif isinstance(op, InsertOp) and self.def_.primary_key:
                batch = op.batch
                phys = [self.def_.column(c).physical for c in self.def_.primary_key]
                self._reserved_keys.difference_update(
                    _key_list(pa.Table.from_batches([batch]), phys))

    def _check_keys(self, keys: list, removed: set, added: set, table: pa.Table) -> None:
        unique = set(keys)
        dup = None
        if len(unique) != len(keys):
            seen: set = set()
            for key in keys:
                if key in seen:
                    dup = key
                    break
                seen.add(key)
        else:
            # `keys() & unique` iterates the batch's keys, not the table's: a commit costs
            # what it inserts, however large the table.
            clash = ((self.pk_map.keys() & unique) - removed) | (unique & added)
            clash |= unique & self._reserved_keys
            if clash:
                dup = next(iter(clash))
        if dup is not None:
            cols = ", ".join(self.def_.primary_key)
            vals = ", ".join(_fmt(v) for v in (dup if isinstance(dup, tuple) else (dup,)))
            raise UniqueViolation(
                f'duplicate key value violates unique constraint "{self.def_.name}_pkey"',
                detail=f"Key ({cols})=({vals}) already exists.")
        composite = len(self.def_.primary_key) > 1
        if any(None in key for key in unique) if composite else None in unique:
            col = self.def_.primary_key[0]
            raise NotNullViolation(
                f'null value in column "{col}" of relation "{self.def_.name}" '
                "violates not-null constraint")

    def _physical(self, table: pa.Table) -> pa.RecordBatch:
        n = table.num_rows
        rowids = pa.array(np.arange(self.next_rowid, self.next_rowid + n, dtype=np.int64))
        self.next_rowid += n
        arrays = [rowids] + [_one_chunk(table.column(c.name)) for c in self.def_.columns]
        return pa.RecordBatch.from_arrays(arrays, schema=self.def_.physical_schema())

    def _keys_of(self, snap: TableSnapshot, rowids: np.ndarray) -> set:
        keys: set = set()
        for view in snap.views:
            found, pos = view.data.positions_of(rowids)
            if found.any():
                t = logical_table(view, self.def_, list(self.def_.primary_key)).take(
                    pa.array(pos[found]))
                keys.update(_key_list(t, self.def_.primary_key))
        return keys

    # Applying a durable commit (under this table's lock) -----------------------------------

    def apply(self, op) -> None:
        with self.lock:
            if isinstance(op, InsertOp):
                batch = conform_batch(op.batch, self.def_)
                self.memtable.append(batch)
                if self.def_.primary_key:
                    phys = [self.def_.column(c).physical for c in self.def_.primary_key]
                    keys = _key_list(pa.Table.from_batches([batch]), phys)
                    self.pk_map.update(zip(keys, batch.column(ROWID).to_pylist()))
                rmax = int(pa.compute.max(batch.column(ROWID)).as_py()) if batch.num_rows else -1
                self.next_rowid = max(self.next_rowid, rmax + 1)
            elif isinstance(op, DeleteOp):
                self._apply_delete(np.asarray(op.rowids, dtype=np.int64))
            elif isinstance(op, TruncateOp):
                self.sealed = []
                self.deletes = {}
                self.sealing = []
                self.memtable = Memtable(self.def_, self.memtable_rows)
                self.pk_map = {}
            self._invalidate()

    def _apply_delete(self, rowids: np.ndarray) -> None:
        snap = self._snapshot or self._current()
        if self.def_.primary_key:
            for key in self._keys_of(snap, rowids):
                self.pk_map.pop(key, None)
        for seg in self.sealed:
            found, pos = seg.positions_of(rowids)
            if found.any():
                self.deletes[seg.id] = self.deletes[seg.id].with_deleted(pos[found])
        found, pos = snap.growing.data.positions_of(rowids)
        if found.any():
            self.memtable.delete(pos[found])

    def rebuild_pk_map(self) -> None:
        """Rebuild key -> rowid from the live rows (after loading sealed segments)."""
        if not self.def_.primary_key:
            return
        self.pk_map = {}
        for table in self.snapshot().scan(list(self.def_.primary_key), with_rowid=True):
            keys = _key_list(table, self.def_.primary_key)
            self.pk_map.update(zip(keys, table.column(ROWID).to_pylist()))

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
        """Install a changed definition; the growing segment is rewritten to the new columns."""
        with self.lock:
            old_rows = self.memtable.live_table() if self.memtable.n_rows else None
            self.def_ = table_def
            self.memtable = Memtable(table_def, self.memtable_rows)
            if old_rows is not None and old_rows.num_rows:
                for batch in old_rows.to_batches():
                    self.memtable.append(conform_batch(batch, table_def))
            self._invalidate()


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
            if values.null_count:
                raise DataException("NaN not allowed in vector")
            checked = values.to_numpy(zero_copy_only=False).astype(np.float64)
            if np.isnan(checked).any():
                raise DataException("NaN not allowed in vector")
            if np.isinf(checked).any():
                raise DataException("infinite value not allowed in vector")
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SqlVecError(
            f'column "{col.name}" is of type {col.type.format()} but expression is of type '
            f"{column.type}", sqlstate="42804", detail=str(exc)) from exc


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


def _key_list(table: pa.Table, key_columns: Sequence[str]) -> list:
    cols = [table.column(c).to_pylist() for c in key_columns]
    if len(cols) == 1:
        return cols[0]
    return list(zip(*cols))


def _all_live(snap: TableSnapshot, rowids: np.ndarray) -> bool:
    remaining = rowids.size
    for view in snap.views:
        found, pos = view.data.positions_of(rowids)
        if found.any():
            if view.deletes.count and view.deletes.is_deleted(pos[found]).any():
                return False
            remaining -= int(found.sum())
    return remaining == 0


def _fmt(value: object) -> str:
    return "NULL" if value is None else str(value)
