"""The growing segment: recent rows in memory, searched exactly, sealed at a size threshold.

Scalar columns are kept as a short list of Arrow record batches, merged LSM-style (the last two
are merged whenever the newer is at least half the older; up to 16 small ones wait at the end to
be merged at once) so there are O(log n) chunks and every row is copied O(log n) times.
Fixed-size vector columns go into one growable buffer each (float32 for vector, float16 for
halfvec: the column's element type), so exact search gets a contiguous matrix without concatenating anything per query.

Readers never see a memtable, only `GrowingData` snapshots: the buffers are append-only and a
snapshot keeps views of the first n rows, which later appends never touch (a reallocation makes a
new buffer and leaves the old one to the snapshots that hold it).

Small appends (a single-row INSERT's batch) are only queued: the rows count at once, but they
are folded into the chunks and buffers (one concatenation for all of them) when the next
snapshot, delete or seal needs them. A stream of inserts that nobody reads in between thus
costs a list append each, not Arrow work per row.
"""

from __future__ import annotations

import bisect

import numpy as np
import pyarrow as pa

from sqlvec.storage.deletes import DeleteBitmap
from sqlvec.storage.schema import ROWID, TableDef
from sqlvec.storage.segment import SegmentData, SegmentView, value_reader, vector_matrix

GROWING_SEGMENT_ID = -1


def _is_fixed_vector(field: pa.Field) -> bool:
    return pa.types.is_fixed_size_list(field.type)


class GrowingData(SegmentData):
    """An immutable snapshot of the growing segment's first `n_rows` rows."""

    def __init__(
        self,
        schema: pa.Schema,
        chunks: tuple[pa.RecordBatch, ...],
        vectors: dict[str, tuple[np.ndarray, np.ndarray]],
        rowids: np.ndarray,
    ) -> None:
        super().__init__()
        self.id = GROWING_SEGMENT_ID
        self.n_rows = int(rowids.size)
        self.rowids = rowids
        self._schema = schema
        self._chunks = chunks
        self._vector_buffers = vectors
        self._table: pa.Table | None = None

    @property
    def table(self) -> pa.Table:  # type: ignore[override]
        """The rows as one Arrow table, built once on first use (vector columns from their
        contiguous buffers)."""
        if self._table is None:
            scalar_schema = pa.schema([f for f in self._schema if not _is_fixed_vector(f)])
            scalars = pa.Table.from_batches(list(self._chunks), schema=scalar_schema)
            columns = []
            for field in self._schema:
                if _is_fixed_vector(field):
                    matrix, valid = self._vector_buffers[field.name]
                    values = pa.array(matrix.reshape(-1))
                    arr = pa.FixedSizeListArray.from_arrays(
                        values, field.type.list_size, mask=pa.array(~valid)
                    )
                    columns.append(pa.chunked_array([arr], type=field.type))
                else:
                    columns.append(scalars.column(field.name))
            self._table = pa.Table.from_arrays(columns, schema=self._schema)
        return self._table

    def column(self, physical: str, arrow_type: pa.DataType, missing: object = None) -> pa.ChunkedArray:
        """One column, built alone (a single-row read need not assemble the whole table)."""
        if self._table is not None or physical not in self._schema.names:
            return super().column(physical, arrow_type, missing)
        with self._cache_lock:
            hit = self._cache.get(("column", physical))
        if hit is None:
            field = self._schema.field(physical)
            if _is_fixed_vector(field):
                matrix, valid = self._vector_buffers[physical]
                hit = pa.chunked_array([pa.FixedSizeListArray.from_arrays(
                    pa.array(matrix.reshape(-1)), field.type.list_size, mask=pa.array(~valid))],
                    type=field.type)
            else:
                hit = pa.chunked_array([c.column(physical) for c in self._chunks], type=field.type)
            with self._cache_lock:
                self._cache[("column", physical)] = hit
        return hit  # type: ignore[return-value]

    def column_slice(self, physical: str, arrow_type: pa.DataType, missing: object,
                     position: int, length: int) -> pa.ChunkedArray:
        """`column(...).slice(position, length)` for a few rows, taken from the one chunk
        holding them (no column of the whole segment is assembled)."""
        offsets = self._offsets
        if offsets is None or physical not in self._schema.names or length != 1:
            return self.column(physical, arrow_type, missing).slice(position, length)
        field = self._schema.field(physical)
        if _is_fixed_vector(field):
            matrix, valid = self._vector_buffers[physical]
            values = pa.array(matrix[position:position + 1].reshape(-1))
            array = pa.FixedSizeListArray.from_arrays(values, type=field.type,
                                                      mask=pa.array(~valid[position:position + 1]))
            return pa.chunked_array([array], type=field.type)
        i = bisect.bisect_right(offsets, position) - 1
        chunk = self._chunks[i]
        column = chunk.column(chunk.schema.get_field_index(physical))
        return pa.chunked_array([column.slice(position - offsets[i], 1)], type=field.type)

    def value(self, physical: str, arrow_type: pa.DataType, missing: object,
              position: int) -> object:
        """One row's value of a scalar column, read from the chunk holding it (no column of
        the whole segment assembled, no one-row slice wrapped): what a single-row UPDATE of
        a row an earlier one wrote reads."""
        readers = self._cache.get(("readers", physical))
        if readers is None:
            if self._table is not None or not self._chunks or \
                    physical not in self._schema.names or physical in self._vector_buffers:
                return super().value(physical, arrow_type, missing, position)
            readers = [value_reader(chunk.column(physical)) for chunk in self._chunks]
            with self._cache_lock:
                self._cache[("readers", physical)] = readers
        offsets = self._offsets
        i = bisect.bisect_right(offsets, position) - 1  # type: ignore[arg-type]
        return readers[i](position - offsets[i])  # type: ignore[index]

    @property
    def _offsets(self) -> list[int] | None:
        """First row of each chunk (None when the snapshot has no chunk)."""
        offsets = self.__dict__.get("_chunk_offsets")
        if offsets is None and self._chunks:
            offsets, start = [], 0
            for chunk in self._chunks:
                offsets.append(start)
                start += chunk.num_rows
            self.__dict__["_chunk_offsets"] = offsets
        return offsets

    def has_column(self, physical: str) -> bool:
        """Whether the growing segment has the physical column (it follows the table's current
        schema)."""
        return physical in self._schema.names

    def vectors(self, physical: str, dims: int) -> tuple[np.ndarray, np.ndarray | None]:
        """A vector column as a matrix, straight from the memtable's buffer when it has one, so
        searching new rows copies nothing."""
        hit = self._vector_buffers.get(physical)
        if hit is None:
            return super().vectors(physical, dims)
        matrix, valid = hit
        return matrix, None if valid.all() else valid


class Memtable:
    """The mutable growing segment of one table. Not thread-safe: the table serializes writers."""

    # Appends of up to this many rows are queued and folded in later, all at once; the queue
    # is folded when it holds QUEUE_BATCHES of them, so no single fold is long.
    QUEUE_ROWS = 64
    QUEUE_BATCHES = 256
    SMALL_CHUNKS = 16  # chunks of at most QUEUE_ROWS rows that may wait at the end unmerged

    def __init__(self, table_def: TableDef, reserve_rows: int = 0) -> None:
        # Buffers are reserved for `reserve_rows` rows (the seal threshold) on first use: np.zeros
        # maps zero pages lazily, so the reservation costs address space, not memory, and the
        # buffers need no copy-on-grow until a commit overshoots the threshold.
        self.reserve_rows = reserve_rows
        self.schema = table_def.physical_schema()
        self._chunks: list[pa.RecordBatch] = []
        self._n = 0  # rows folded into the chunks and buffers
        # Small appends not folded in yet: batches, and rows as Python values (tuples).
        self._queued: list[pa.RecordBatch | tuple] = []
        self._queued_rows = 0
        self._queued_bytes = 0  # an upper bound: buffers the queued batches reference
        self._nbytes = 0
        self._capacity = 0
        self._rowids = np.empty(0, dtype=np.int64)
        self._deleted = np.empty(0, dtype=bool)
        self._deleted_count = 0
        # Whether a snapshot holds a view of `_deleted`: the next delete copies it first
        # (copy on write), so snapshots between deletes share the flags without copying.
        self._deleted_shared = False
        self._vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {
            f.name: (np.empty((0, f.type.list_size), f.type.value_type.to_pandas_dtype()),
                     np.empty(0, bool))
            for f in self.schema
            if _is_fixed_vector(f)
        }
        self._scalar_names = [f.name for f in self.schema if f.name not in self._vectors]
        # The folded rows as snapshot data, kept until the next fold changes them: a stream
        # of single-row UPDATEs reads (and caches columns of) one object, not one per statement.
        self._folded: GrowingData | None = None

    # Properties ---------------------------------------------------------------------------------

    @property
    def n_rows(self) -> int:
        return self._n + self._queued_rows

    @property
    def nbytes(self) -> int:
        """Bytes of the rows (exact: folds the queued appends in)."""
        self._fold()
        return self._nbytes

    @property
    def nbytes_bound(self) -> int:
        """An upper bound of `nbytes` without folding anything (a queued row may be a slice of
        a larger buffer, counted whole here): what a size check after every commit reads."""
        return self._nbytes + self._queued_bytes

    # Writes -------------------------------------------------------------------------------------

    def append(self, batch: pa.RecordBatch) -> None:
        """Append a batch in the physical schema (with `_rowid`, ascending past existing rows)."""
        n = batch.num_rows
        if n == 0:
            return
        if n <= self.QUEUE_ROWS:
            self._queued.append(batch)
            self._queued_rows += n
            self._queued_bytes += batch.get_total_buffer_size()  # nbytes costs µs per column
            if len(self._queued) >= self.QUEUE_BATCHES:
                self._fold()
            return
        self._fold()
        self._nbytes += batch.nbytes
        self._add(batch)

    def append_row(self, values: tuple, nbytes_bound: int) -> None:
        """Queue one row given as Python values in the physical schema's order (its row id
        first, ascending past existing rows; each value None or of its column's Python type,
        see `RowInsertOp`): its Arrow arrays are built when the queue is folded, for all the
        queued rows at once. `nbytes_bound`: an upper bound of its size in Arrow buffers."""
        self._queued.append(values)
        self._queued_rows += 1
        self._queued_bytes += nbytes_bound
        if len(self._queued) >= self.QUEUE_BATCHES:
            self._fold()

    def _fold(self) -> None:
        """Fold the queued appends into the chunks and buffers (one batch for all of them)."""
        queued = self._queued
        if not queued:
            return
        self._queued, self._queued_rows, self._queued_bytes = [], 0, 0
        if any(type(q) is tuple for q in queued):
            queued = self._rows_as_batches(queued)
        # Concatenated even when alone: the copy is compact (a queued row may be a slice of a
        # segment's column, which the growing segment must not keep alive), so its buffers'
        # size is its size (`nbytes` costs ~10 µs a batch).
        batch = pa.concat_batches(queued)
        self._nbytes += batch.get_total_buffer_size()
        self._add(batch)

    def _rows_as_batches(self, queued: list) -> list[pa.RecordBatch]:
        """The queue with each run of rows given as Python values made one batch."""
        out: list[pa.RecordBatch] = []
        run: list[tuple] = []
        for item in queued + [None]:
            if type(item) is tuple:
                run.append(item)
                continue
            if run:
                out.append(pa.RecordBatch.from_arrays(
                    [pa.array(column, field.type) for column, field in zip(zip(*run), self.schema)],
                    schema=self.schema))
                run = []
            if item is not None:
                out.append(item)
        return out

    def _add(self, batch: pa.RecordBatch) -> None:
        n = batch.num_rows
        if self._n == 0 and n >= self.reserve_rows and self._vectors:
            self._adopt(batch)
        else:
            self._reserve(self._n + n)
            self._rowids[self._n : self._n + n] = batch.column(ROWID).to_numpy()
            for name, (matrix, valid) in self._vectors.items():
                m, v = vector_matrix(batch.column(name), matrix.shape[1])
                matrix[self._n : self._n + n] = m
                valid[self._n : self._n + n] = True if v is None else v
        self._chunks.append(batch.select(self._scalar_names) if self._vectors else batch)
        self._merge_tail()
        self._n += n
        self._folded = None

    def _adopt(self, batch: pa.RecordBatch) -> None:
        """A first batch that fills the growing segment by itself (a bulk load, which seals
        right after): its vectors are used where they are (zero-copy views of the batch, read
        only) instead of being copied into fresh buffers. Capacity is exactly the batch, so a
        later append reallocates (`_reserve`) before it writes anything."""
        n = batch.num_rows
        for name in self._vectors:
            m, v = vector_matrix(batch.column(name), self._vectors[name][0].shape[1])
            self._vectors[name] = (m, np.ones(n, bool) if v is None else v)
        self._rowids = np.array(batch.column(ROWID).to_numpy())
        self._deleted = np.zeros(n, bool)
        self._deleted_shared = False
        self._capacity = n

    def delete(self, positions: np.ndarray) -> None:
        """Delete rows by position (in append order). Rows already folded are flagged as they
        are: the queue is folded only when a queued row is among them (an UPDATE of a row
        that an earlier one wrote must not build the Arrow batch of the row it just queued)."""
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size and int(positions.max()) >= self._n:
            self._fold()
        deleted = self._own_deleted()
        newly = positions[~deleted[positions]]
        deleted[newly] = True
        self._deleted_count += int(np.unique(newly).size)

    def delete_one(self, position: int) -> None:
        """`delete` of one row (the old row of a single-row UPDATE): no arrays built."""
        if position >= self._n:
            self._fold()
        deleted = self._own_deleted()
        if not deleted[position]:
            deleted[position] = True
            self._deleted_count += 1

    def _own_deleted(self) -> np.ndarray:
        """The deleted flags, copied first when a snapshot holds a view of them (later
        deletes must not show through)."""
        if self._deleted_shared:
            self._deleted = self._deleted.copy()
            self._deleted_shared = False
        return self._deleted

    def position_of(self, rowid: int) -> int:
        """Position of the row with this id (deleted or not), or -1 when it is not here."""
        position = self.folded_position(rowid)
        if position < 0 and self._queued:
            self._fold()
            position = self.folded_position(rowid)
        return position

    def folded_position(self, rowid: int) -> int:
        """`position_of` among the rows already folded (queued ones are not looked at, and
        the queue stays as it is): -1 when the row is not among them."""
        n = self._n
        if n == 0:
            return -1
        ids = self._rowids
        # Rows are appended in row id order, mostly without gaps: its distance from the first
        # row is its position then, no search.
        guess = rowid - ids.item(0)
        if 0 <= guess < n and ids.item(guess) == rowid:
            return guess
        position = int(ids[:n].searchsorted(rowid))
        return position if position < n and ids.item(position) == rowid else -1

    def is_deleted(self, position: int) -> bool:
        """Whether the row at a folded position is deleted."""
        return bool(self._deleted[position])

    def folded_data(self) -> GrowingData:
        """The rows already folded, as a snapshot's data (no fold, no deletes: what a reader
        of one row `folded_position` found needs, without building the queued rows' Arrow
        batch that a full `snapshot` would)."""
        folded = self._folded
        if folded is None:
            n = self._n
            folded = self._folded = GrowingData(
                self.schema,
                tuple(self._chunks),
                {name: (m[:n], v[:n]) for name, (m, v) in self._vectors.items()},
                self._rowids[:n],
            )
        return folded

    def _reserve(self, needed: int) -> None:
        if needed <= self._capacity:
            return
        capacity = max(needed, 2 * self._capacity, 1024,
                       self.reserve_rows if self._capacity == 0 else 0)
        # New buffers; snapshots keep the old ones, whose first n rows stay valid.
        self._rowids = _grow(self._rowids, capacity)
        self._deleted = _grow(self._deleted, capacity)
        self._deleted_shared = False
        for name, (matrix, valid) in list(self._vectors.items()):
            self._vectors[name] = (_grow(matrix, capacity), _grow(valid, capacity))
        self._capacity = capacity

    def _merge_tail(self) -> None:
        chunks = self._chunks
        # Small chunks (folded single-row appends, one per snapshot when every statement
        # reads) wait for SMALL_CHUNKS of them to be merged at once: one concatenation per
        # batch of them, not one per fold.
        small = 0
        while small < len(chunks) and chunks[-1 - small].num_rows <= self.QUEUE_ROWS:
            small += 1
            if small >= self.SMALL_CHUNKS:
                break
        if 0 < small < self.SMALL_CHUNKS:
            return
        if small:
            chunks[-small:] = [pa.concat_batches(chunks[-small:])]
        while len(chunks) >= 2 and 2 * chunks[-1].num_rows >= chunks[-2].num_rows:
            merged = pa.concat_batches([chunks[-2], chunks[-1]])
            chunks[-2:] = [merged]

    # Reads --------------------------------------------------------------------------------------

    def snapshot(self) -> SegmentView:
        """An immutable view of the rows and deletes so far, which readers keep while writes go
        on."""
        self._fold()
        n = self._n
        data = self.folded_data()
        # A view of the flags, shared until the next delete copies them (later deletes must
        # not show through): no copy per snapshot, no scan.
        if self._deleted_count:
            deletes = DeleteBitmap._wrap(self._deleted[:n], self._deleted_count)
            self._deleted_shared = True
        else:
            deletes = DeleteBitmap.empty(n)
        return SegmentView(data, deletes)

    def live_table(self) -> pa.Table:
        """The live rows, in rowid order, as one contiguous table that owns its memory (what
        sealing turns into a segment: it must not pin the over-allocated growing buffers)."""
        view = self.snapshot()  # folds the queued appends in
        keep = None if self._deleted_count == 0 else ~self._deleted[: self._n]
        table = view.data.table
        columns = []
        for field in self.schema:
            if field.name in self._vectors:
                matrix, valid = self._vectors[field.name]
                matrix, valid = matrix[: self._n], valid[: self._n]
                if keep is not None:
                    matrix, valid = matrix[keep], valid[keep]
                else:
                    matrix, valid = matrix.copy(), valid.copy()
                columns.append(pa.FixedSizeListArray.from_arrays(
                    pa.array(matrix.reshape(-1)), field.type.list_size, mask=pa.array(~valid)))
            else:
                column = table.column(field.name)
                if keep is not None:
                    column = column.filter(pa.array(keep))
                columns.append(column.combine_chunks())
        return pa.Table.from_arrays(columns, schema=self.schema)


def _grow(array: np.ndarray, capacity: int) -> np.ndarray:
    out = np.zeros((capacity,) + array.shape[1:], dtype=array.dtype)
    out[: array.shape[0]] = array
    return out
