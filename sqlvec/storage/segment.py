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
- `vector(n)` and `halfvec(n)` columns (fixed_size_list) are also written to
  `seg-<id>.vectors.arrow`: an uncompressed Arrow IPC file (one record batch, those columns
  under their physical names). An open segment memory-maps it and takes its vectors from there
  (the Parquet file's copy is not read), so they are file-backed pages: resident only where a
  search reads them, shared by every forked worker, reclaimable by the kernel, and never a
  second anonymous copy beside the one each HNSW graph holds. The Parquet file stays complete,
  so other readers need nothing else; the price is the vectors' bytes twice on disk. Segments
  written before the IPC file existed read their vectors from the Parquet file, as before.
The manifest records each file's size and CRC32 (the IPC file's under `vectors`), checked when the
segment is opened.
"""

from __future__ import annotations

import contextlib
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


def is_vector_field(field: pa.Field) -> bool:
    """Whether a physical column lives in the segment's vectors file (fixed_size_list:
    vector(n) and halfvec(n))."""
    return pa.types.is_fixed_size_list(field.type)


def segment_files(meta: dict) -> list[dict]:
    """The segment's own data files as manifest entries ({"file", "bytes", "crc32"}): the
    Parquet file and, when it has one, its vectors file. Garbage collection, backups and
    `sqlvec check` go through this list (the index and delete files are listed apart)."""
    files = [meta]
    if meta.get("vectors"):
        files.append(meta["vectors"])
    return files


def read_vectors_file(path: str, rows: int) -> tuple[pa.Table, mmap.mmap]:
    """Memory-map a vectors file (already checked against its manifest entry): a table whose
    buffers are the file's pages, not copies, and the mapping (which they keep alive)."""
    try:
        with open(path, "rb") as f:
            mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        table = pa.ipc.open_file(pa.BufferReader(pa.py_buffer(mapping))).read_all()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DamagedFile(VECTORS_FILE, path, f"unreadable Arrow IPC: {exc}") from exc
    if table.num_rows != rows:
        raise DamagedFile(VECTORS_FILE, path,
                          f"{table.num_rows} rows, the manifest records {rows}")
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
        chunk = self._cache.get(("chunk", physical))
        if chunk is None:
            column = self.column(physical, arrow_type, missing)
            if column.num_chunks != 1 or not self.has_column(physical):
                return column[position].as_py()
            chunk = column.chunk(0)
            with self._cache_lock:
                self._cache[("chunk", physical)] = chunk
        return chunk[position].as_py()  # type: ignore[index]

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
        self.vectors_file: dict | None = None  # {"file", "bytes", "crc32"} once written
        self._mapping: mmap.mmap | None = None  # of the vectors file, once written or opened
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

    def _calibration(self, name: str) -> list:
        index = self._indexes.get(name)
        return index.calibration if index is not None else []

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
                        result = (lo.as_py(), hi.as_py())
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
    def vectors_file_name(segment_id: int) -> str:
        """The vectors file's name beside `file_name(segment_id)`."""
        return f"seg-{segment_id:08d}.vectors.arrow"

    def write(self, directory: str) -> None:
        """Write the Parquet file and the vectors file durably (temp file, fsync, rename, then
        one directory fsync), then serve the vectors from the written file: the segment's
        in-memory copy of them is let go."""
        name = self.file_name(self.id)
        path = os.path.join(directory, name)
        vector = [f.name for f in self.table.schema if is_vector_field(f)]
        scalar = [
            f.name for f in self.table.schema
            if not (pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type))
        ]
        lists = [f.name for f in self.table.schema if f.name not in scalar]
        vectors_path = os.path.join(directory, self.vectors_file_name(self.id))
        if vector:
            columns = self.table.select(vector).combine_chunks()
            _write_durably(vectors_path, lambda tmp: _write_ipc(columns, tmp))
        try:
            _write_durably(path, lambda tmp: pq.write_table(
                self.table,
                tmp,
                compression={**{c: "snappy" for c in scalar}, **{c: "none" for c in lists}},
                use_dictionary=scalar,
                write_statistics=scalar,
                row_group_size=1 << 17,
            ))
        except BaseException:  # no half-written segment: a retry writes both files again
            if vector:
                with contextlib.suppress(OSError):
                    os.unlink(vectors_path)
            raise
        fsync_dir(directory)
        if vector:
            self.vectors_file = {"file": os.path.basename(vectors_path),
                                 "bytes": os.path.getsize(vectors_path),
                                 "crc32": crc32_file(vectors_path)}
            self._use_vectors_file(*read_vectors_file(vectors_path, self.n_rows))
        self.file_bytes = os.path.getsize(path)
        self.crc32 = crc32_file(path)
        self.path = path  # last: other threads take a set path to mean the file is complete

    def release_vector_pages(self) -> None:
        """Unmap the vectors file's pages from this process after a pass over all of them (an
        index build): they stay in the page cache, and a later search maps back what it reads.
        Without it, every page a build read stays counted in the process's resident memory."""
        if self._mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
            with contextlib.suppress(OSError, ValueError):
                self._mapping.madvise(mmap.MADV_DONTNEED)

    def _use_vectors_file(self, mapped: pa.Table, mapping: mmap.mmap) -> None:
        """Swap the vector columns for the file's (the same values): readers holding the old
        arrays keep them alive until done; new readers get the file-backed ones."""
        self._mapping = mapping
        table = self.table
        for name in mapped.column_names:
            table = table.set_column(table.schema.get_field_index(name), name,
                                     mapped.column(name))
        with self._cache_lock:
            for name in mapped.column_names:  # views of the old arrays (casts are copies)
                self._cache.pop(("vectors", name), None)
            self.table = table

    @classmethod
    def open(cls, directory: str, meta: dict) -> Segment:
        """Open a sealed segment, checking its files' sizes and CRC32s against the manifest."""
        path = os.path.join(directory, meta["file"])
        size = verify_file(path, meta)
        vmeta = meta.get("vectors")
        mapped = mapping = None
        if vmeta:
            vectors_path = os.path.join(directory, vmeta["file"])
            verify_file(vectors_path, vmeta, VECTORS_FILE)
            mapped, mapping = read_vectors_file(vectors_path, int(meta["rows"]))
        try:
            with pq.ParquetFile(path) as parquet:
                names = parquet.schema_arrow.names
                skip = set(mapped.column_names) if mapped is not None else set()
                table = parquet.read(columns=[n for n in names if n not in skip])
            table = table.combine_chunks()
        except (pa.ArrowException, OSError) as exc:
            raise DamagedFile(SEGMENT_FILE, path, f"unreadable Parquet: {exc}") from exc
        if table.num_rows != meta["rows"]:
            raise DamagedFile(SEGMENT_FILE, path,
                              f"{table.num_rows} rows, the manifest records {meta['rows']}")
        if mapped is not None:
            for name in mapped.column_names:
                table = table.append_column(mapped.schema.field(name), mapped.column(name))
            table = table.select([n for n in names if n in table.column_names])
        seg = cls(int(meta["id"]), table, path)
        seg.crc32 = meta["crc32"]
        seg.file_bytes = size
        seg.vectors_file = dict(vmeta) if vmeta else None
        seg._mapping = mapping if mapped is not None else None
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
            **({"vectors": dict(self.vectors_file)} if self.vectors_file else {}),
            "indexes": {
                name: {"file": fname, "crc32": crc,
                       "calibration": [list(p) for p in self._calibration(name)]}
                for name, (fname, crc) in self.index_files.items()
            },
        }


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
