"""The write-ahead log of one database: every commit is one CRC-checked record, fsynced in groups.

All tables of a database share one log, so a transaction touching several tables is a single
record and is either wholly replayed or not at all. The manifest stores the LSN up to which table
data is already on disk; recovery replays the records after it.

On-disk format (all integers little-endian)
-------------------------------------------
Directory: ``<database>/wal/`` holds segment files named ``{first_lsn:020d}.wal``, e.g.
``00000000000000000001.wal``: the LSN of the first record the file may contain. Each file
starts exactly one LSN after the previous file's last record. Other names in the directory are
ignored.

File header (12 bytes)::

    magic    8 bytes  b"SQLVWAL\\x00"
    version  u32      format version, currently 1

Record frame (16-byte header, then the payload)::

    length   u32      payload length in bytes (0 is allowed)
    lsn      u64      log sequence number: consecutive integers from 1; 0 means "nothing"
    crc      u32      CRC-32 (zlib) over the 12 bytes of length and lsn, then the payload
    payload  length bytes

LSNs never go backwards, even when old files are deleted: a file holding only its header still
carries its first LSN in its name.

Writing: records are appended to the newest file through a buffer. Before a record would take the
file past ``segment_bytes``, a new file named by that record's LSN is started (a single record
larger than ``segment_bytes`` still gets a file to itself). ``sync`` is a group commit: one thread
flushes and fsyncs everything appended so far while the others wait for it.

Recovery (``WriteAheadLog.open``) reads every file in LSN order and checks each frame:

* In the last file, the first incomplete header, incomplete payload or CRC mismatch is a torn
  write from a crash: the file is truncated at that record's offset and a warning on the
  ``sqlvec.wal`` logger names the file, the offset and the bytes dropped. An incomplete file
  header there gets its header rewritten, also with a warning.
* Anywhere else such a record, a wrong magic or version, a valid record with an unexpected LSN, or
  a gap between files is corruption and raises ``DataCorrupted`` naming the file.

Appends then continue in the last file, after its last valid record.

Commit record payload (``encode_commit`` / ``decode_commit``)
------------------------------------------------------------
::

    count    u32      number of operations
    then per operation:
      kind     u8     1 = insert, 2 = delete, 3 = truncate
      table_id u64
      length   u64    body length in bytes
      body     length bytes
        insert:   an Arrow IPC stream holding the schema and exactly one record batch
        delete:   the row ids as int64 values
        truncate: empty
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from sqlvec.errors import DataCorrupted

__all__ = [
    "DeleteOp",
    "InsertOp",
    "Op",
    "TruncateOp",
    "WalFileCheck",
    "WriteAheadLog",
    "decode_commit",
    "encode_commit",
    "verify_files",
]

logger = logging.getLogger("sqlvec.wal")

MAGIC = b"SQLVWAL\x00"
FORMAT_VERSION = 1
_FILE_HEADER = MAGIC + struct.pack("<I", FORMAT_VERSION)
_FRAME = struct.Struct("<IQI")  # length, lsn, crc
_FRAME_PREFIX = struct.Struct("<IQ")  # the part of the frame header the CRC covers
_FILE_NAME = re.compile(r"^(\d{20})\.wal$")
_WRITE_BUFFER = 1 << 16


def _segment_name(first_lsn: int) -> str:
    return f"{first_lsn:020d}.wal"


def _frame_crc(length: int, lsn: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(_FRAME_PREFIX.pack(length, lsn)))


class _BadRecord(Exception):
    """A frame that fails its checks; whether it is a torn tail depends on where it is."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


def _check_header(f: BinaryIO, path: Path, *, allow_torn: bool) -> bool:
    """Validate a file header; False means an incomplete header that may be rewritten."""
    header = f.read(len(_FILE_HEADER))
    if header == _FILE_HEADER:
        return True
    if len(header) < len(_FILE_HEADER) and _FILE_HEADER.startswith(header) and allow_torn:
        return False
    if header[: len(MAGIC)] != MAGIC:
        raise DataCorrupted(f"WAL file {path} has a bad header: not a sqlvec WAL file")
    if len(header) < len(_FILE_HEADER):
        raise DataCorrupted(f"WAL file {path} has an incomplete header")
    (version,) = struct.unpack_from("<I", header, len(MAGIC))
    raise DataCorrupted(f"WAL file {path} has unsupported format version {version}")


def _frames(f: BinaryIO, size: int, *, skip_through: int = 0) -> Iterator[tuple[int, int, bytes]]:
    """Yield (offset, lsn, payload) for each frame after the file header.

    Payloads of records with lsn <= skip_through are skipped unread and unchecked (they were
    validated when the log was opened) and yielded as b"". Raises _BadRecord at the first frame
    that is incomplete or fails its CRC.
    """
    offset = len(_FILE_HEADER)
    f.seek(offset)
    while offset < size:
        head = f.read(_FRAME.size)
        if len(head) < _FRAME.size:
            raise _BadRecord(offset, "incomplete record header")
        length, lsn, crc = _FRAME.unpack(head)
        end = offset + _FRAME.size + length
        if end > size:
            raise _BadRecord(offset, "incomplete payload")
        if lsn <= skip_through:
            f.seek(end)
            payload = b""
        else:
            payload = f.read(length)
            if len(payload) < length:
                raise _BadRecord(offset, "incomplete payload")
            if _frame_crc(length, lsn, payload) != crc:
                raise _BadRecord(offset, "CRC mismatch")
        yield offset, lsn, payload
        offset = end


def _fsync_dir(directory: Path) -> None:
    """Make file creations and deletions in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteAheadLog:
    """An append-only, segmented, CRC-framed log with group commit. Safe to share among threads."""

    def __init__(self, directory: Path, *, fsync: bool, segment_bytes: int) -> None:
        # Use WriteAheadLog.open(): it recovers the directory before anything is appended.
        self._dir = directory
        self._fsync = fsync
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._synced = threading.Condition(self._lock)
        self._segments: list[tuple[int, Path]] = []  # (first_lsn, path), oldest first
        self._file: BinaryIO | None = None
        self._file_size = 0
        self._file_records = 0
        self._retired: list[BinaryIO] = []  # rotated-away files awaiting fsync and close
        self._dir_dirty = False
        self._last_lsn = 0
        self._durable_lsn = 0
        self._syncing = False
        self._failed: BaseException | None = None
        self._closed = False
        self._stats = {"records": 0, "bytes": 0, "fsyncs": 0, "syncs": 0, "rotations": 0}

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], *, fsync: bool = True,
        segment_bytes: int = 64 * 2**20,
    ) -> WriteAheadLog:
        """Open (creating if needed) the log in `directory`, validating and repairing its tail."""
        if segment_bytes <= 0:
            raise ValueError("segment_bytes must be positive")
        wal = cls(Path(directory), fsync=fsync, segment_bytes=segment_bytes)
        wal._recover()
        return wal

    # -- recovery ---------------------------------------------------------------------------

    def _recover(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        segments = sorted(
            (int(m.group(1)), self._dir / name)
            for name in os.listdir(self._dir)
            if (m := _FILE_NAME.match(name))
        )
        next_lsn: int | None = None
        for i, (first, path) in enumerate(segments):
            if next_lsn is not None and first != next_lsn:
                raise DataCorrupted(
                    f"WAL file {path} starts at LSN {first} but the previous file ends at "
                    f"LSN {next_lsn - 1}"
                )
            next_lsn, size, records = self._check_segment(
                first, path, is_last=i == len(segments) - 1
            )
            if i == len(segments) - 1:
                self._file_size, self._file_records = size, records
        if not segments:
            first = 1
            path = self._dir / _segment_name(first)
            with open(path, "xb") as f:
                f.write(_FILE_HEADER)
                f.flush()
                if self._fsync:
                    os.fsync(f.fileno())
            if self._fsync:
                _fsync_dir(self._dir)
            segments = [(first, path)]
            next_lsn = first
            self._file_size = len(_FILE_HEADER)
        assert next_lsn is not None
        self._segments = segments
        self._last_lsn = self._durable_lsn = next_lsn - 1
        self._file = open(segments[-1][1], "ab", buffering=_WRITE_BUFFER)

    def _check_segment(self, first: int, path: Path, *, is_last: bool) -> tuple[int, int, int]:
        """Validate one file; return (next expected LSN, valid size, record count)."""
        expected = first
        records = 0
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if not _check_header(f, path, allow_torn=is_last):
                logger.warning(
                    "WAL file %s: incomplete file header (%d bytes) from an interrupted "
                    "write; rewriting it", path, size,
                )
                with open(path, "wb") as w:
                    w.write(_FILE_HEADER)
                    w.flush()
                    if self._fsync:
                        os.fsync(w.fileno())
                return first, len(_FILE_HEADER), 0
            valid_size = len(_FILE_HEADER)
            try:
                for offset, lsn, _payload in _frames(f, size):
                    if lsn != expected:
                        raise DataCorrupted(
                            f"WAL file {path}: record at offset {offset} has LSN {lsn}, "
                            f"expected {expected}"
                        )
                    expected += 1
                    records += 1
                    valid_size = f.tell()
            except _BadRecord as bad:
                if not is_last:
                    raise DataCorrupted(
                        f"WAL file {path}: {bad.reason} at offset {bad.offset}"
                    ) from None
                logger.warning(
                    "WAL file %s: %s at offset %d (torn write); truncating, %d bytes dropped",
                    path, bad.reason, bad.offset, size - bad.offset,
                )
                valid_size = bad.offset
        if valid_size < size:
            os.truncate(path, valid_size)
            if self._fsync:
                fd = os.open(path, os.O_RDWR)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        return expected, valid_size, records

    # -- properties -------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def last_lsn(self) -> int:
        """LSN of the last appended record (0 if none), durable or not."""
        return self._last_lsn

    @property
    def durable_lsn(self) -> int:
        """Every record up to this LSN has been flushed (and fsynced when fsync=True)."""
        return self._durable_lsn

    @property
    def stats(self) -> dict[str, int]:
        """Counters since open: records, bytes, fsyncs (os.fsync calls), syncs, rotations."""
        with self._lock:
            return dict(self._stats)

    # -- reading ----------------------------------------------------------------------------

    def replay(self, after_lsn: int = 0) -> Iterator[tuple[int, bytes]]:
        """Yield (lsn, payload) for every record with lsn > after_lsn, in LSN order.

        Reads one record at a time, so the log is never held in memory. Records appended after
        the call starts are not included.
        """
        with self._lock:
            self._check_open()
            if self._file is not None:
                self._file.flush()
            segments = list(self._segments)
            last = self._last_lsn
            current_size = self._file_size
        for i, (first, path) in enumerate(segments):
            end = segments[i + 1][0] - 1 if i + 1 < len(segments) else last
            if end <= after_lsn or first > last:
                continue
            with open(path, "rb") as f:
                # The newest file may be growing: read only what was flushed before the snapshot.
                size = current_size if i + 1 == len(segments) else os.fstat(f.fileno()).st_size
                _check_header(f, path, allow_torn=False)
                try:
                    for _offset, lsn, payload in _frames(f, size, skip_through=after_lsn):
                        if lsn > last:
                            break
                        if lsn > after_lsn:
                            yield lsn, payload
                except _BadRecord as bad:
                    raise DataCorrupted(
                        f"WAL file {path}: {bad.reason} at offset {bad.offset}"
                    ) from None

    # -- writing ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("write-ahead log is closed")
        if self._failed is not None:
            raise OSError(f"write-ahead log is unusable after a failed fsync: {self._failed}")

    def append(self, payload: bytes | bytearray | memoryview) -> int:
        """Append one record and return its LSN. Buffered: not durable until sync()."""
        length = len(payload)
        if length >= 2**32:
            raise ValueError("WAL record payload must be smaller than 4 GiB")
        with self._lock:
            self._check_open()
            lsn = self._last_lsn + 1
            frame_size = _FRAME.size + length
            if self._file_records and self._file_size + frame_size > self._segment_bytes:
                self._rotate(lsn)
            assert self._file is not None
            self._file.write(_FRAME.pack(length, lsn, _frame_crc(length, lsn, payload)))
            self._file.write(payload)
            self._file_size += frame_size
            self._file_records += 1
            self._last_lsn = lsn
            self._stats["records"] += 1
            self._stats["bytes"] += frame_size
            return lsn

    def _rotate(self, first_lsn: int) -> None:
        """Start a new file; the old one is fsynced and closed by the next sync (lock held)."""
        assert self._file is not None
        old = self._file
        old.flush()
        path = self._dir / _segment_name(first_lsn)
        new = open(path, "xb", buffering=_WRITE_BUFFER)
        new.write(_FILE_HEADER)
        if self._fsync:
            self._retired.append(old)
            self._dir_dirty = True
        else:
            old.close()
        self._file = new
        self._file_size = len(_FILE_HEADER)
        self._file_records = 0
        self._segments.append((first_lsn, path))
        self._stats["rotations"] += 1

    def sync(self, lsn: int) -> None:
        """Return once every record up to `lsn` is durable (group commit).

        One caller becomes the leader: it flushes under the lock, then fsyncs outside it so
        appends continue meanwhile. Callers arriving during its fsync wait; those whose LSN it
        covered return without an fsync of their own, the rest elect the next leader.
        """
        with self._lock:
            if lsn > self._last_lsn:
                raise ValueError(f"cannot sync LSN {lsn}: last appended LSN is {self._last_lsn}")
            while True:
                if self._failed is not None:
                    self._check_open()
                if lsn <= self._durable_lsn:
                    return
                if not self._syncing:
                    break
                self._synced.wait()
            self._check_open()
            assert self._file is not None
            self._file.flush()
            target = self._last_lsn
            self._stats["syncs"] += 1
            if not self._fsync:
                self._durable_lsn = target
                return
            self._syncing = True
            retired, self._retired = self._retired, []
            current = self._file
            dir_dirty, self._dir_dirty = self._dir_dirty, False
        fsyncs = 0
        try:
            for f in [*retired, current]:
                os.fsync(f.fileno())
                fsyncs += 1
            if dir_dirty:
                _fsync_dir(self._dir)
        except BaseException as exc:
            with self._lock:
                self._failed = exc
                self._syncing = False
                self._stats["fsyncs"] += fsyncs
                self._synced.notify_all()
            raise
        for f in retired:
            f.close()
        with self._lock:
            self._durable_lsn = max(self._durable_lsn, target)
            self._syncing = False
            self._stats["fsyncs"] += fsyncs
            self._synced.notify_all()

    def commit(self, payload: bytes) -> int:
        """Append a record and wait until it is durable; return its LSN."""
        lsn = self.append(payload)
        self.sync(lsn)
        return lsn

    def truncate_before(self, lsn: int) -> None:
        """Delete the files whose records all have LSN <= lsn (never the file being appended to).

        Called after a checkpoint has made table data up to `lsn` durable elsewhere.
        """
        with self._lock:
            self._check_open()
            keep_from = 0
            while (
                keep_from + 1 < len(self._segments)
                and self._segments[keep_from + 1][0] - 1 <= lsn
            ):
                keep_from += 1
            doomed = self._segments[:keep_from]
            self._segments = self._segments[keep_from:]
            for _first, path in doomed:
                path.unlink(missing_ok=True)
        if doomed and self._fsync:
            _fsync_dir(self._dir)

    def close(self) -> None:
        """Make everything appended durable and release the files. Idempotent."""
        if self._closed:
            return
        if self._failed is None:
            self.sync(self._last_lsn)
        with self._lock:
            while self._syncing:
                self._synced.wait()
            self._closed = True
            for f in self._retired:
                f.close()
            self._retired = []
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"WriteAheadLog({str(self._dir)!r}, last_lsn={self._last_lsn}, "
            f"durable_lsn={self._durable_lsn})"
        )


# -- commit record codec --------------------------------------------------------------------


@dataclass(frozen=True)
class InsertOp:
    """Rows appended to a table, in the table's Arrow schema."""

    table_id: int
    batch: pa.RecordBatch


@dataclass(frozen=True)
class DeleteOp:
    """Rows deleted from a table, by row id."""

    table_id: int
    rowids: np.ndarray  # int64

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeleteOp):
            return NotImplemented
        return self.table_id == other.table_id and np.array_equal(self.rowids, other.rowids)


@dataclass(frozen=True)
class TruncateOp:
    """Every row of a table removed."""

    table_id: int


Op = InsertOp | DeleteOp | TruncateOp

_INSERT, _DELETE, _TRUNCATE = 1, 2, 3
_COUNT = struct.Struct("<I")
_OP_HEADER = struct.Struct("<BQQ")  # kind, table_id, body length
# Bodies follow 21-byte headers, so IPC buffers arrive misaligned: Arrow copies just those.
_IPC_READ = ipc.IpcReadOptions(ensure_alignment=ipc.Alignment.DataTypeSpecific)


def encode_commit(ops: Sequence[Op]) -> memoryview:
    """Serialize a transaction's operations into one WAL payload (a bytes-like view).

    Inserted rows are copied once, straight into the payload: a first pass through Arrow's IPC
    writer only measures them (`MockOutputStream` copies nothing), so every operation's header
    can precede its body in one Arrow output stream, and no join copies the rows again."""
    sizes = []
    for op in ops:
        if isinstance(op, InsertOp):
            mock = pa.MockOutputStream()
            _write_batch(mock, op.batch)
            sizes.append(mock.size())
        elif isinstance(op, DeleteOp):
            sizes.append(np.asarray(op.rowids).size * 8)
        elif isinstance(op, TruncateOp):
            sizes.append(0)
        else:
            raise TypeError(f"not a WAL operation: {op!r}")
    sink = pa.BufferOutputStream()
    sink.write(_COUNT.pack(len(ops)))
    for op, size in zip(ops, sizes):
        if isinstance(op, InsertOp):
            sink.write(_OP_HEADER.pack(_INSERT, op.table_id, size))
            _write_batch(sink, op.batch)
        elif isinstance(op, DeleteOp):
            rowids = np.ascontiguousarray(op.rowids, dtype="<i8").reshape(-1)
            sink.write(_OP_HEADER.pack(_DELETE, op.table_id, size))
            sink.write(memoryview(rowids).cast("B"))
        else:
            sink.write(_OP_HEADER.pack(_TRUNCATE, op.table_id, 0))
    return memoryview(sink.getvalue())


def _write_batch(sink: pa.NativeFile, batch: pa.RecordBatch) -> None:
    with ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)


def decode_commit(payload: bytes | bytearray | memoryview) -> list[Op]:
    """Parse a payload written by encode_commit. Arrow data references `payload`'s memory."""
    view = memoryview(payload)
    buffer = pa.py_buffer(payload)
    try:
        (count,) = _COUNT.unpack_from(view, 0)
        offset = _COUNT.size
        ops: list[Op] = []
        for _ in range(count):
            kind, table_id, length = _OP_HEADER.unpack_from(view, offset)
            offset += _OP_HEADER.size
            if offset + length > len(view):
                raise DataCorrupted(f"WAL commit record: operation body overruns the record "
                                    f"({length} bytes at offset {offset})")
            if kind == _INSERT:
                ops.append(InsertOp(table_id, _read_batch(buffer.slice(offset, length))))
            elif kind == _DELETE:
                if length % 8:
                    raise DataCorrupted(f"WAL commit record: delete body of {length} bytes")
                rowids = np.frombuffer(view, dtype="<i8", count=length // 8, offset=offset)
                ops.append(DeleteOp(table_id, rowids.astype(np.int64)))
            elif kind == _TRUNCATE:
                ops.append(TruncateOp(table_id))
            else:
                raise DataCorrupted(f"WAL commit record: unknown operation kind {kind}")
            offset += length
    except (struct.error, pa.ArrowException) as exc:
        raise DataCorrupted(f"WAL commit record is malformed: {exc}") from None
    if offset != len(view):
        raise DataCorrupted(f"WAL commit record has {len(view) - offset} trailing bytes")
    return ops


def _read_batch(body: pa.Buffer) -> pa.RecordBatch:
    reader = ipc.open_stream(body, options=_IPC_READ)
    batches = list(reader)
    if len(batches) != 1:
        raise DataCorrupted(f"WAL insert holds {len(batches)} record batches, expected 1")
    return batches[0]


# -- offline verification ---------------------------------------------------------------------


@dataclass(frozen=True)
class WalFileCheck:
    """What `verify_files` found in one WAL file."""

    path: Path
    first_lsn: int  # from the file name
    last_lsn: int  # LSN of its last valid record; first_lsn - 1 when it holds none
    problem: str | None = None  # None: the header and every frame check out
    torn_tail: bool = False  # the problem is an interrupted write that `open` truncates


def verify_files(directory: str | os.PathLike[str]) -> list[WalFileCheck]:
    """Check every WAL file by the rules `WriteAheadLog.open` applies, reading only.

    For offline checks (`sqlvec check`): where `open` would truncate a torn tail this reports it
    (`torn_tail`), and where `open` would raise DataCorrupted it reports the problem and goes on
    with the next file. Every payload's CRC is verified, one record in memory at a time."""
    directory = Path(directory)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    segments = sorted((int(m.group(1)), directory / n) for n in names if (m := _FILE_NAME.match(n)))
    checks: list[WalFileCheck] = []
    next_lsn: int | None = None
    for i, (first, path) in enumerate(segments):
        is_last = i == len(segments) - 1
        problem: str | None = None
        torn = False
        if next_lsn is not None and first != next_lsn:
            problem = f"starts at LSN {first} but the previous file ends at LSN {next_lsn - 1}"
        expected = first
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if not _check_header(f, path, allow_torn=is_last):
                    torn = problem is None
                    problem = problem or f"incomplete file header ({size} bytes)"
                else:
                    for offset, lsn, _payload in _frames(f, size):
                        if lsn != expected:
                            problem = problem or (
                                f"record at offset {offset} has LSN {lsn}, expected {expected}")
                            break
                        expected += 1
        except _BadRecord as bad:
            torn = is_last and problem is None
            problem = problem or f"{bad.reason} at offset {bad.offset} of {size} bytes"
        except DataCorrupted as exc:  # a bad file header
            problem = problem or exc.message.replace(f"WAL file {path} ", "")
        except OSError as exc:
            problem = problem or f"unreadable: {exc.strerror}"
        checks.append(WalFileCheck(path, first, expected - 1, problem, torn))
        # Past a damaged frame the file's end is unknown: the next file's start is not a gap.
        next_lsn = expected if problem is None else None
    return checks
