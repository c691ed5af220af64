"""Segments: the unit of storage, search and (later) distribution.

A *sealed* segment is an immutable Parquet file, an Arrow IPC file of its vector columns beside
it, plus, per vector index of the table, one index file (its access method's format: hnsw.py for
HNSW). The growing segment (memtable.py) offers the same read interface, so scans and searches
treat both alike; only sealed segments have indexes and min/max statistics.

Parquet layout of `seg-<id>.parquet` (format version 1):
- column `_rowid` int64, ascending, unique within the table: the row's identity.
- one column per table column under its physical name `c<attnum>` with the column's Arrow type
  (`vector(n)` is fixed_size_list<float32>[n]); columns added to the table after the segment was
  written are absent and read as their `missing_value` (NULL unless ADD COLUMN gave a constant).
- scalar columns are dictionary-encoded with statistics; list columns are plain, uncompressed,
  without statistics (neither helps float data, and both slow reads).
- every column is also written to one of two uncompressed Arrow IPC files (one record batch,
  the columns under their physical names, `MAPPED_FILES`): `seg-<id>.vectors.arrow` holds the
  `vector(n)` and `halfvec(n)` columns (fixed_size_list), `seg-<id>.columns.arrow` every other
  column, `_rowid` included. An open segment memory-maps them and takes its columns from there
  (the Parquet file is not read), so they are file-backed pages: resident only where a
  statement reads them, shared by every forked worker, reclaimable by the kernel, and the
  vectors never a second anonymous copy beside the one each HNSW graph holds. They are
  written before the Parquet file, so a segment in a manifest has them. The Parquet file stays
  complete, so other readers need nothing else; the price is every column's bytes twice on
  disk. A segment written before an IPC file existed reads its columns from the Parquet file.
The manifest records each file's size and CRC32 (the IPC files' under `vectors` and `columns`),
checked when the segment is opened.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sqlvec.errors import DamagedFile
from sqlvec.float_order import holds_nan
from sqlvec.storage.deletes import DeleteBitmap
from sqlvec.storage.fsutil import crc32_file, fsync_dir
from sqlvec.storage.schema import ROWID
from sqlvec.storage.vector_index import VectorIndex
from sqlvec.vectors import SparseRows


def vector_matrix(array: pa.Array | pa.ChunkedArray, dims: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A (n, dims) view of a fixed_size_list column in its element type (float32 for vector,
    float16 for halfvec) and its validity mask (None = all valid). Zero-copy for a single chunk
    without nulls in the child values."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    n = len(array)
    if n == 0:
        return np.empty((0, dims), dtype=array.type.value_type.to_pandas_dtype()), None
    child = array.values.slice(array.offset * dims, n * dims)
    if child.null_count:
        child = child.fill_null(0.0)
    matrix = child.to_numpy(zero_copy_only=False).reshape(n, dims)
    valid = None
    if array.null_count:
        valid = array.is_valid().to_numpy(zero_copy_only=False)
    return matrix, valid


def bit_matrix(array: pa.Array | pa.ChunkedArray, nbits: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A bit(n) column (text of '0' and '1') as (rows, ceil(n/8)) packed bytes, first bit
    highest as `np.packbits` packs, and its validity mask (None = all valid). A NULL row, or
    one whose length is not n (a varbit), is not valid."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    n = len(array)
    if n == 0:
        return np.zeros((0, -(-nbits // 8)), np.uint8), None
    array = array.cast(pa.large_string()) if not pa.types.is_large_string(array.type) else array
    lengths = pc.binary_length(array).fill_null(-1).to_numpy(zero_copy_only=False)
    valid = lengths == nbits
    if not valid.all():
        array = pc.if_else(pa.array(valid), array, pa.scalar("0" * nbits, pa.large_string()))
    offsets = np.frombuffer(array.buffers()[1], np.int64, n + 1, array.offset * 8)
    chars = np.frombuffer(array.buffers()[2], np.uint8, int(offsets[-1] - offsets[0]),
                          int(offsets[0])).reshape(n, nbits)
    packed = np.packbits(chars == ord("1"), axis=1)
    return packed, None if valid.all() else valid


def sparse_rows(array: pa.Array | pa.ChunkedArray) -> SparseRows:
    """A sparsevec column (`SPARSEVEC_ARROW` structs) as CSR-shaped `SparseRows`, read from the
    Arrow buffers; NULL rows are not valid and hold no elements."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    dims, indices, values = array.flatten()
    lengths = pc.fill_null(pc.list_value_length(indices), 0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(array) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    valid = array.is_valid().to_numpy(zero_copy_only=False) if array.null_count else None
    flat_indices = pc.list_flatten(indices).to_numpy(zero_copy_only=False)
    flat_values = pc.list_flatten(values).to_numpy(zero_copy_only=False)
    return SparseRows(pc.fill_null(dims, 0).to_numpy(zero_copy_only=False), offsets,
                      flat_indices, flat_values, valid)


# Joins a physical column and the vector type of an expression index's key: "c3::halfvec".
KEY_SEPARATOR = "::"


def cast_matrix(matrix: np.ndarray, kind: str) -> np.ndarray:
    """A vector matrix cast to `kind` ("halfvec": float16 rounded to nearest as pgvector's cast,
    "vector": float32), as `col::halfvec(n)` casts each row."""
    dtype = np.float16 if kind == "halfvec" else np.float32
    return matrix if matrix.dtype == dtype else matrix.astype(dtype)


def key_name(physical: str, key_type: str | None) -> str:
    """What `SegmentData.vectors` reads for an index key: the column, or its cast."""
    return physical if key_type is None else f"{physical}{KEY_SEPARATOR}{key_type}"


SEGMENT_FILE = "segment file"
VECTORS_FILE = "segment vectors file"
COLUMNS_FILE = "segment columns file"
# The Arrow IPC files a sealed segment keeps beside its Parquet file and memory-maps when open:
# manifest key -> (file name suffix, what errors call it). "vectors" holds the fixed_size_list
# columns, "columns" every other one (row ids included).
MAPPED_FILES = {"vectors": ("vectors.arrow", VECTORS_FILE),
                "columns": ("columns.arrow", COLUMNS_FILE)}


def is_vector_field(field: pa.Field) -> bool:
    """Whether a physical column lives in the segment's vectors file (fixed_size_list:
    vector(n) and halfvec(n))."""
    return pa.types.is_fixed_size_list(field.type)


def segment_files(meta: dict) -> list[dict]:
    """The segment's own data files as manifest entries ({"file", "bytes", "crc32"}): the
    Parquet file and the memory-mapped files it has (`MAPPED_FILES`). Garbage collection,
    backups and `sqlvec check` go through this list (the index and delete files are listed
    apart)."""
    return [meta] + [meta[key] for key in MAPPED_FILES if meta.get(key)]


def read_mapped_file(path: str, rows: int, kind: str) -> tuple[pa.Table, mmap.mmap]:
    """Memory-map one of a segment's Arrow IPC files (already checked against its manifest
    entry): a table whose buffers are the file's pages, not copies, and the mapping (which
    they keep alive)."""
    try:
        with open(path, "rb") as f:
            mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        table = pa.ipc.open_file(pa.BufferReader(pa.py_buffer(mapping))).read_all()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DamagedFile(kind, path, f"unreadable Arrow IPC: {exc}") from exc
    if table.num_rows != rows:
        raise DamagedFile(kind, path, f"{table.num_rows} rows, the manifest records {rows}")
    return table, mapping


def verify_file(path: str, meta: dict, kind: str = SEGMENT_FILE) -> int:
    """Check a segment's file against its manifest entry (exists, size, CRC32) without parsing
    it; returns its size. Raises DamagedFile saying what is wrong."""
    try:
        size = os.path.getsize(path)
        if size != meta["bytes"]:
            raise DamagedFile(kind, path, "wrong size", detail=(
                f"The file has {size} bytes, the manifest records {meta['bytes']}."))
        crc = crc32_file(path)
    except FileNotFoundError:
        raise DamagedFile(kind, path, "missing") from None
    except OSError as exc:
        raise DamagedFile(kind, path, f"unreadable: {exc.strerror}") from exc
    if crc != meta["crc32"]:
        raise DamagedFile(kind, path, "CRC mismatch",
                          detail=f"The file's CRC32 is {crc:#010x}, the manifest records "
                                 f"{meta['crc32']:#010x}.")
    return size


def value_reader(array: pa.Array) -> Callable[[int], object]:
    """A function from a position of `array` to its Python value: NumPy's `item` over the
    array's buffer for integers and floats without NULLs, the bytes between two offsets for
    text and bytea without NULLs (what `as_py` gives, without a scalar object per read),
    `as_py` otherwise."""
    kind = array.type
    if array.null_count == 0 and (pa.types.is_integer(kind) or pa.types.is_float32(kind) or
                                  pa.types.is_float64(kind)):
        return array.to_numpy(zero_copy_only=True).item
    if array.null_count == 0 and len(array) and (pa.types.is_string(kind) or
                                                 pa.types.is_binary(kind)):
        buffers = array.buffers()
        at = np.frombuffer(buffers[1], np.int32, len(array) + 1, array.offset * 4).item
        data = memoryview(buffers[2]) if buffers[2] is not None else memoryview(b"")
        if pa.types.is_string(kind):
            return lambda position: str(data[at(position):at(position + 1)], "utf-8")
        return lambda position: bytes(data[at(position):at(position + 1)])
    return lambda position: array[position].as_py()


class WriteAbandoned(Exception):
    """A segment's write stopped because nothing wants the segment any more."""


class SegmentData:
    """Read interface shared by sealed segments and the growing segment's snapshots."""

    id: int
    n_rows: int
    rowids: np.ndarray  # int64, ascending
    table: pa.Table  # physical columns

    def __init__(self) -> None:
        self._cache: dict[tuple, object] = {}
        self._cache_lock = threading.Lock()

    # Columns ----------------------------------------------------------------------------------

    def has_column(self, physical: str) -> bool:
        """Whether this segment has the physical column; a segment written before ADD COLUMN does
        not."""
        return self.table.schema.get_field_index(physical) >= 0

    def value(self, physical: str, arrow_type: pa.DataType, missing: object,
              position: int) -> object:
        """One row's value of a column as a Python value (what a single-row UPDATE reads):
        the column's one chunk is kept per segment, so the read is an index into it instead
        of wrapping the column again (~4 µs → ~0.3 µs)."""
        reader = self._cache.get(("reader", physical))
        if reader is None:
            column = self.column(physical, arrow_type, missing)
            if column.num_chunks != 1 or not self.has_column(physical):
                return column[position].as_py()
            reader = value_reader(column.chunk(0))
            with self._cache_lock:
                self._cache[("reader", physical)] = reader
        return reader(position)  # type: ignore[operator]

    def column(self, physical: str, arrow_type: pa.DataType, missing: object = None) -> pa.ChunkedArray:
        """The column, or `missing` repeated for a column this segment predates."""
        if self.has_column(physical):
            return self.table.column(physical)
        if missing is None or self.n_rows == 0:
            return pa.chunked_array([pa.nulls(self.n_rows, arrow_type)])
        return pa.chunked_array([pa.repeat(pa.scalar(missing, arrow_type), self.n_rows)])

    def vectors(self, physical: str, dims: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(n, dims) matrix (the column's element type) and validity mask of a vector column,
        cached."""
        key = ("vectors", physical)
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is None and KEY_SEPARATOR in physical:
            # An expression index's key (`c3::halfvec`): the column cast, computed once per
            # segment (or snapshot of the growing one) and cached like the column itself.
            base, kind = physical.split(KEY_SEPARATOR, 1)
            matrix, valid = self.vectors(base, dims)
            hit = (cast_matrix(matrix, kind), valid)
            with self._cache_lock:
                self._cache[key] = hit
        if hit is None:
            if self.has_column(physical):
                hit = vector_matrix(self.table.column(physical), dims)
            else:
                hit = (np.zeros((self.n_rows, dims), dtype=np.float32), np.zeros(self.n_rows, bool))
            with self._cache_lock:
                self._cache[key] = hit
        return hit  # type: ignore[return-value]

    def cached(self, key: tuple, build: Callable[[], object]) -> object:
        """A structure derived from this segment's rows (a btree key's order, btree.py),
        built on first use and kept: the rows never change, so it never goes stale. Two
        threads may both build it; one result is kept."""
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is None:
            hit = build()
            with self._cache_lock:
                hit = self._cache.setdefault(key, hit)
        return hit

    def bits(self, physical: str, nbits: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(n, ceil(nbits/8)) packed bits and validity mask of a bit(n) column, or of
        `c3::bit` (`binary_quantize(c3)::bit(n)`, an expression index's key: one bit per
        element, set where it is positive), cached."""

        def build() -> tuple[np.ndarray, np.ndarray | None]:
            base, sep, _kind = physical.partition(KEY_SEPARATOR)
            if sep:
                matrix, valid = self.vectors(base, nbits)
                return np.packbits(matrix > 0, axis=1), valid
            if self.has_column(physical):
                return bit_matrix(self.table.column(physical), nbits)
            return (np.zeros((self.n_rows, -(-nbits // 8)), np.uint8),
                    np.zeros(self.n_rows, bool))

        return self.cached(("bits", physical), build)  # type: ignore[return-value]

    def sparse(self, physical: str) -> tuple[SparseRows, np.ndarray | None]:
        """The sparsevec column's rows (`SparseRows`) and validity mask, cached."""

        def build() -> tuple[SparseRows, np.ndarray | None]:
            if self.has_column(physical):
                rows = sparse_rows(self.table.column(physical))
            else:
                rows = SparseRows(np.zeros(self.n_rows), np.zeros(self.n_rows + 1), np.zeros(0),
                                  np.zeros(0), np.zeros(self.n_rows, bool))
            return rows, rows.valid

        return self.cached(("sparse", physical), build)  # type: ignore[return-value]

    def positions_of(self, rowids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each rowid: (found mask, position in this segment)."""
        rowids = np.asarray(rowids, dtype=np.int64)
        if self.n_rows == 0 or rowids.size == 0:
            return np.zeros(rowids.size, bool), np.zeros(rowids.size, np.int64)
        pos = np.searchsorted(self.rowids, rowids)
        pos_clipped = np.minimum(pos, self.n_rows - 1)
        found = self.rowids[pos_clipped] == rowids
        return found, pos_clipped

    def index(self, name: str) -> VectorIndex | None:
        """The segment's vector index of that name, or None: a segment without one is searched
        exactly."""
        return None

    def stats(self, physical: str) -> tuple[object, object] | None:
        """(min, max) of a column for pruning, or None when unknown, which means the segment must be
        read."""
        return None


class Segment(SegmentData):
    """A sealed, immutable segment backed by a Parquet file (in memory once opened) and a
    vectors file (memory-mapped)."""

    def __init__(self, segment_id: int, table: pa.Table, path: str | None) -> None:
        super().__init__()
        self.id = segment_id
        self.table = table
        self.n_rows = table.num_rows
        self.rowids = table.column(ROWID).to_numpy()
        # (first, last) row id as Python ints, (1, 0) when empty: what a single-row write
        # compares a row id with per sealed segment (NumPy scalars cost more).
        self.rowid_bounds = (int(self.rowids[0]), int(self.rowids[-1])) if self.n_rows \
            else (1, 0)
        self.path = path  # None until the Parquet file is durable
        self.crc32: int | None = None
        self.file_bytes: int | None = None
        # MAPPED_FILES key -> its manifest entry {"file", "bytes", "crc32"} and its mapping,
        # once written or opened.
        self.mapped_files: dict[str, dict] = {}
        self._mappings: dict[str, mmap.mmap] = {}
        self._indexes: dict[str, VectorIndex] = {}
        self.index_files: dict[str, tuple[str, int]] = {}  # name -> (file name, crc32)

    # Indexes ----------------------------------------------------------------------------------
    # Attached after a background build; readers that took a snapshot earlier simply see the
    # index appear, which is safe because the segment's rows never change.

    def index(self, name: str) -> VectorIndex | None:
        return self._indexes.get(name)

    def attach_index(self, name: str, index: VectorIndex) -> None:
        """Make a built index available to searches of this segment."""
        self._indexes[name] = index

    def detach_index(self, name: str) -> None:
        """Forget an index (DROP INDEX or a rebuild); its file goes with the next collection."""
        self._indexes.pop(name, None)
        self.index_files.pop(name, None)

    def attachments(self) -> tuple[dict, dict]:
        """The attached indexes and their files, as a copy to `restore_attachments` later
        (schema changes rolled back)."""
        return dict(self._indexes), dict(self.index_files)

    def restore_attachments(self, saved: tuple[dict, dict]) -> None:
        """Put back the indexes `attachments` returned."""
        self._indexes, self.index_files = dict(saved[0]), dict(saved[1])

    def _calibration(self, name: str, kind: str = "calibration") -> list:
        """An attached index's `calibration` curve, or another table it keeps by that name
        (`filter_calibration`); [] when it has none."""
        return list(getattr(self._indexes.get(name), kind, None) or [])

    # Statistics -------------------------------------------------------------------------------

    def stats(self, physical: str) -> tuple[object, object] | None:
        """(min, max) of a scalar column, None for vectors or an all-NULL column."""
        key = ("stats", physical)
        with self._cache_lock:
            if key in self._cache:
                return self._cache[key]  # type: ignore[return-value]
        result = None
        if self.has_column(physical):
            col = self.table.column(physical)
            if not (pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type)):
                try:
                    mm = pc.min_max(col)
                    lo, hi = mm["min"], mm["max"]
                    if lo.is_valid:
                        # a NaN is the greatest float: no segment holding one is skipped wrongly
                        result = (lo.as_py(), math.nan if holds_nan(col) else hi.as_py())
                except pa.ArrowNotImplementedError:
                    result = None
        with self._cache_lock:
            self._cache[key] = result
        return result

    # Persistence ------------------------------------------------------------------------------

    @staticmethod
    def file_name(segment_id: int) -> str:
        """The Parquet file name of a segment id; the one naming rule the store and garbage
        collection share."""
        return f"seg-{segment_id:08d}.parquet"

    @staticmethod
    def mapped_file_name(segment_id: int, key: str) -> str:
        """The name of a memory-mapped file (`MAPPED_FILES` key) beside
        `file_name(segment_id)`."""
        return f"seg-{segment_id:08d}.{MAPPED_FILES[key][0]}"

    @classmethod
    def file_names(cls, segment_id: int) -> list[str]:
        """Every file a segment of this id may write (its indexes apart)."""
        return [cls.file_name(segment_id)] + [cls.mapped_file_name(segment_id, key)
                                              for key in MAPPED_FILES]

    def _mapped_groups(self) -> dict[str, list[str]]:
        """Which physical columns go to which memory-mapped file (empty groups left out)."""
        vector = [f.name for f in self.table.schema if is_vector_field(f)]
        groups = {"vectors": vector,
                  "columns": [n for n in self.table.column_names if n not in vector]}
        return {key: names for key, names in groups.items() if names}

    def write(self, directory: str, wanted: Callable[[], bool] | None = None) -> None:
        """Write the memory-mapped files and then the Parquet file durably (temp file, fsync,
        rename, then one directory fsync), then serve the columns from the mapped files: the
        segment's in-memory copy of them is let go. `wanted` is asked before each file: once
        it says no (its table was dropped meanwhile), `WriteAbandoned` and nothing written."""
        name = self.file_name(self.id)
        path = os.path.join(directory, name)
        scalar = [
            f.name for f in self.table.schema
            if not (pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type))
        ]
        lists = [f.name for f in self.table.schema if f.name not in scalar]
        mapped = {key: os.path.join(directory, self.mapped_file_name(self.id, key))
                  for key in self._mapped_groups()}
        def still_wanted() -> None:
            if wanted is not None and not wanted():
                raise WriteAbandoned(name)

        try:
            for key, names in self._mapped_groups().items():
                still_wanted()
                columns = self.table.select(names).combine_chunks()
                _write_durably(mapped[key], lambda tmp, c=columns: _write_ipc(c, tmp))
            still_wanted()
            _write_durably(path, lambda tmp: pq.write_table(
                self.table,
                tmp,
                compression={**{c: "snappy" for c in scalar}, **{c: "none" for c in lists}},
                use_dictionary=scalar,
                write_statistics=scalar,
                row_group_size=1 << 17,
            ))
        except BaseException:  # no half-written segment: a retry writes every file again
            for written in mapped.values():
                with contextlib.suppress(OSError):
                    os.unlink(written)
            raise
        fsync_dir(directory)
        for key, mapped_path in mapped.items():
            self.mapped_files[key] = {"file": os.path.basename(mapped_path),
                                      "bytes": os.path.getsize(mapped_path),
                                      "crc32": crc32_file(mapped_path)}
            self._use_mapped(key, *read_mapped_file(mapped_path, self.n_rows,
                                                    MAPPED_FILES[key][1]))
        self.file_bytes = os.path.getsize(path)
        self.crc32 = crc32_file(path)
        self.path = path  # last: other threads take a set path to mean the file is complete

    def release_mapped_pages(self) -> None:
        """Unmap the mapped files' pages from this process after a pass over all of them (an
        index build, the key indexes built at open): they stay in the page cache, and a later
        statement maps back what it reads. Without it, every page such a pass read stays
        counted in the process's resident memory."""
        if not hasattr(mmap, "MADV_DONTNEED"):
            return
        for mapping in self._mappings.values():
            with contextlib.suppress(OSError, ValueError):
                mapping.madvise(mmap.MADV_DONTNEED)

    def _use_mapped(self, key: str, mapped: pa.Table, mapping: mmap.mmap) -> None:
        """Swap columns for the mapped file's (the same values): readers holding the old
        arrays keep them alive until done; new readers get the file-backed ones."""
        self._mappings[key] = mapping
        table = self.table
        for name in mapped.column_names:
            table = table.set_column(table.schema.get_field_index(name), name,
                                     mapped.column(name))
        with self._cache_lock:
            for name in mapped.column_names:  # views of the old arrays (casts are copies)
                self._cache.pop(("vectors", name), None)
                self._cache.pop(("reader", name), None)
            if ROWID in mapped.column_names:
                self.rowids = mapped.column(ROWID).to_numpy()
            self.table = table

    @classmethod
    def open(cls, directory: str, meta: dict) -> Segment:
        """Open a sealed segment, checking its files' sizes and CRC32s against the manifest.
        Columns come from the memory-mapped files it has; the Parquet file is read only for
        the others (all of them in a segment written before the mapped files existed)."""
        path = os.path.join(directory, meta["file"])
        size = verify_file(path, meta)
        rows = int(meta["rows"])
        mapped: dict[str, tuple[pa.Table, mmap.mmap]] = {}
        for key, (_suffix, kind) in MAPPED_FILES.items():
            if meta.get(key):
                mapped_path = os.path.join(directory, meta[key]["file"])
                verify_file(mapped_path, meta[key], kind)
                mapped[key] = read_mapped_file(mapped_path, rows, kind)
        parts = [table for table, _mapping in mapped.values()]
        names = _read_parquet_rest(path, rows, parts)
        fields = {f.name: (f, part.column(f.name)) for part in parts for f in part.schema}
        table = pa.Table.from_arrays([fields[n][1] for n in names],
                                     schema=pa.schema([fields[n][0] for n in names]))
        seg = cls(int(meta["id"]), table, path)
        seg.crc32 = meta["crc32"]
        seg.file_bytes = size
        seg.mapped_files = {key: dict(meta[key]) for key in mapped}
        seg._mappings = {key: mapping for key, (_table, mapping) in mapped.items()}
        return seg

    def to_meta(self) -> dict:
        """The segment's manifest entry: file, size, checksum, rows and index files, which are what
        recovery trusts."""
        assert self.path is not None and self.crc32 is not None
        return {
            "id": self.id,
            "file": os.path.basename(self.path),
            "bytes": self.file_bytes,
            "crc32": self.crc32,
            "rows": self.n_rows,
            "rowid_min": int(self.rowids[0]) if self.n_rows else None,
            "rowid_max": int(self.rowids[-1]) if self.n_rows else None,
            **{key: dict(entry) for key, entry in self.mapped_files.items()},
            "indexes": {
                name: {"file": fname, "crc32": crc,
                       "calibration": [list(p) for p in self._calibration(name)],
                       "filter_calibration": [list(p) for p in
                                              self._calibration(name, "filter_calibration")]}
                for name, (fname, crc) in self.index_files.items()
            },
        }


def _read_parquet_rest(path: str, rows: int, parts: list[pa.Table]) -> list[str]:
    """Read from the Parquet file the columns the mapped tables in `parts` lack, appending
    them to `parts` as one more table; returns the segment's column names in file order."""
    try:
        with pq.ParquetFile(path) as parquet:
            names = parquet.schema_arrow.names
            if parquet.metadata.num_rows != rows:
                raise DamagedFile(SEGMENT_FILE, path, f"{parquet.metadata.num_rows} rows, "
                                                      f"the manifest records {rows}")
            have = {name for part in parts for name in part.column_names}
            rest = [n for n in names if n not in have]
            if rest:
                parts.append(parquet.read(columns=rest).combine_chunks())
    except (pa.ArrowException, OSError) as exc:
        raise DamagedFile(SEGMENT_FILE, path, f"unreadable Parquet: {exc}") from exc
    return names


def _write_ipc(table: pa.Table, path: str) -> None:
    """One uncompressed record batch: every column a single buffer, mapped as it is."""
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=max(table.num_rows, 1))


def _write_durably(path: str, write: Callable[[str], None]) -> None:
    """`write(tmp)`, fsync, rename over `path` (the caller fsyncs the directory); a failure
    (a full disk) leaves no partial file taking space."""
    tmp = path + ".tmp"
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class SegmentView:
    """What one reader sees of one segment: its rows and the deletes as of the snapshot."""

    data: SegmentData
    deletes: DeleteBitmap

    @property
    def live_count(self) -> int:
        return self.data.n_rows - self.deletes.count

    def live_mask(self) -> np.ndarray | None:
        """Bool mask of live rows, or None when no row is deleted."""
        return None if self.deletes.count == 0 else self.deletes.live_mask()
