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
    version  u32      format version: 2 (written), 1 (still read)

Record frame, version 2 (24-byte header, then the payload)::

    length   u32      payload length in bytes (0 is allowed)
    lsn      u64      log sequence number: consecutive integers from 1; 0 means "nothing"
    synced   u64      every record up to this LSN was durable (fsynced) before this one was
                      appended: the proof recovery uses to tell damage from a torn write
    crc      u32      CRC-32 (zlib) over the 20 bytes of length, lsn and synced, then the payload
    payload  length bytes

Version 1 frames (16-byte header) have no ``synced`` field: length u32, lsn u64, crc u32 over
length and lsn, then the payload. A log whose newest file is version 1 continues in a new
version 2 file.

LSNs never go backwards, even when old files are deleted: a file holding only its header still
carries its first LSN in its name.

Writing
-------
``append`` only queues a record in memory (and decides where a new file starts: before a record
would take the file past ``segment_bytes``; a single record larger than that still gets a file
to itself). ``sync`` is a group commit: one thread, the leader, writes everything queued so far
and fsyncs it while the others wait; appends continue meanwhile. With fsync on, the leader
writes zeros ahead of the log (steps doubling from 64 KiB up to 256 KiB) and makes records durable
with ``fdatasync``: a commit then rewrites blocks already written, so its sync flushes data only,
with no file system journal commit (as PostgreSQL zero-fills its WAL segments). Space reserved
by ``posix_fallocate`` would not do: on ext4 and XFS it is unwritten extents, and the first
write into each of their blocks converts one, a metadata change every such commit's
``fdatasync`` then waits for the journal to commit (one single-row UPDATE in ten). The space
ahead reads as zeros: the log ends at the first all-zero frame header. A file is cut back to its
last record when the next one starts.

A failed write or fsync (disk full, I/O error) fails every record the log had not yet made
durable: their commits get an error (53100 ``disk full`` or 58030 ``io error``) and the log is
returned to its last durable record by ``rollback`` (files started since are removed, the file
is truncated and fsynced), so nothing of a failed commit is ever replayed and no later commit is
written after damaged bytes. Until ``rollback`` runs, ``append`` refuses. After a full disk the
log is usable again once rolled back; after any other I/O error it stays read-only until the
process restarts (as PostgreSQL PANICs): the state of the kernel's page cache is unknown.

Recovery
--------
``WriteAheadLog.open`` reads every file in LSN order and checks each frame:

* Zeros after the last record are space allocated ahead. Data after such zeros means the zeros
  are a block that never got written (a torn write) or a zeroed record (damage), told apart as
  below.
* In the last file, the first incomplete header, incomplete payload or CRC mismatch is either a
  torn write from a crash or damage. The rest of the file is searched for valid frames with a
  later LSN. If one of them says (``synced``) that the bad record had been durable before it was
  appended, the bad record was acknowledged and then damaged: ``DataCorrupted`` names the file,
  the offset and the LSN, and the file is left untouched (``sqlvec wal`` inspects it and, on
  request, truncates it). Otherwise it is a torn write: nothing after it was ever acknowledged,
  so the file is truncated at that record's offset and a warning on the ``sqlvec.wal`` logger
  names the file, the offset and the bytes dropped. An incomplete file header there gets its
  header rewritten, also with a warning.
* Anywhere else such a record, a wrong magic or version, a valid record with an unexpected LSN, or
  a gap between files is corruption and raises ``DataCorrupted`` naming the file.

Appends then continue in the last file, after its last valid record.

Commit record payload (``encode_commit`` / ``decode_commit``)
------------------------------------------------------------
::

    count    u32      number of operations
    then per operation:
      kind     u8     1 = insert, 2 = delete, 3 = truncate, 4 = one-row insert, 5 = insert run
      table_id u64
      length   u64    body length in bytes
      body     length bytes
        insert:   an Arrow IPC stream holding the schema and exactly one record batch
        delete:   the row ids as int64 values
        truncate: empty
        one-row insert: u32 length and the schema's Arrow IPC message, then per column a
                  NULL flag (u8) and, when not NULL, the value: int16/32/64, float64 and bool
                  little-endian fixed width, text (UTF-8) and bytea as u32 length and bytes
      kind 5 = insert run (a COPY's rows, encoded while they arrived):
        first_rowid u64, then an Arrow IPC stream of one or more record batches without
        the row id column; the rows' ids are consecutive from first_rowid. Read back as one
        insert, the row id column put first.
      kind 6 = run piece (a batch of a COPY's rows logged while the rest arrive, before the
        commit): an insert's body, rows without the row id column; part of no table by
        itself.
      kind 7 = logged run (the commit of such a COPY): first_rowid u64, then the LSNs (u64)
        of its piece records in row order. Read back as one insert of the pieces' rows.
      kind 8 = run abort: the LSNs (u64) of the piece records of a COPY that did not commit.

An insert of a few rows (a single-row INSERT's) is encoded from parts: the schema's IPC message
(serialized once per schema and kept), the batch's message and the end-of-stream marker, which
are the very bytes Arrow's stream writer produces; larger ones go through the writer. The format
is the same either way. A prepared single-row INSERT of scalar columns (``RowInsertOp``) is
logged as a one-row insert, packed from its Python values without Arrow; it reads back as an
insert of a one-row batch. Kinds 4 to 8 are new: a log holding them needs this reader.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from sqlvec.errors import DataCorrupted, IoError, SqlVecError
from sqlvec.storage.fsutil import is_disk_full, storage_error

__all__ = [
    "DeleteOp",
    "EncodedBatch",
    "EncodedPayload",
    "HeldPieces",
    "InsertOp",
    "InsertRunOp",
    "LoggedRunOp",
    "LogGone",
    "LogReader",
    "Op",
    "RowInsertOp",
    "RunAbortOp",
    "RunPieceOp",
    "TruncateOp",
    "WalFileCheck",
    "WalFrame",
    "WriteAheadLog",
    "crc32_combine",
    "decode_commit",
    "encode_abort",
    "encode_commit",
    "encode_piece",
    "read_payload",
    "scan_segment",
    "truncate_log",
    "verify_files",
    "wal_files",
]

logger = logging.getLogger("sqlvec.wal")

MAGIC = b"SQLVWAL\x00"
FORMAT_VERSION = 2
_FILE_NAME = re.compile(r"^(\d{20})\.wal$")
_HEADER_SIZE = len(MAGIC) + 4
_IOV_MAX = 512  # buffers per writev call, well under every platform's IOV_MAX
_JOIN_MAX = 64 << 10  # up to this many bytes, buffers are joined rather than written by writev
_ALLOCATE_MIN = 64 << 10  # the first zeros written ahead of the log in a file
_ALLOCATE_MAX = 256 << 10  # ...doubling up to this much at a time (one sync flushes them)


def _file_header(version: int) -> bytes:
    return MAGIC + struct.pack("<I", version)


@dataclass(frozen=True)
class _Format:
    """How frames of one file format version are laid out."""

    version: int
    frame: struct.Struct  # the whole frame header
    prefix: struct.Struct  # the part of it the CRC covers

    def crc(self, fields: tuple[int, ...], payload: bytes | memoryview) -> int:
        return zlib.crc32(payload, zlib.crc32(self.prefix.pack(*fields)))

    def unpack(self, head: bytes) -> tuple[int, int, int, int]:
        """(length, lsn, synced, crc); synced is 0 where the format has none."""
        if self.version == 1:
            length, lsn, crc = self.frame.unpack(head)
            return length, lsn, 0, crc
        return self.frame.unpack(head)

    def fields(self, length: int, lsn: int, synced: int) -> tuple[int, ...]:
        return (length, lsn) if self.version == 1 else (length, lsn, synced)


_FORMATS = {
    1: _Format(1, struct.Struct("<IQI"), struct.Struct("<IQ")),
    2: _Format(2, struct.Struct("<IQQI"), struct.Struct("<IQQ")),
}
_CURRENT = _FORMATS[FORMAT_VERSION]


def _segment_name(first_lsn: int) -> str:
    return f"{first_lsn:020d}.wal"


def wal_files(directory: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """The log's files as (first LSN, path), oldest first."""
    directory = Path(directory)
    return sorted(
        (int(m.group(1)), directory / name)
        for name in os.listdir(directory)
        if (m := _FILE_NAME.match(name))
    )


class _BadRecord(Exception):
    """A frame that fails its checks; whether it is a torn tail depends on where it is."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


def _read_header(f: BinaryIO, path: Path, *, allow_torn: bool) -> _Format | None:
    """Validate a file header and return its format; None means an incomplete header (from an
    interrupted write) that may be rewritten."""
    header = f.read(_HEADER_SIZE)
    if len(header) == _HEADER_SIZE and header[: len(MAGIC)] == MAGIC:
        (version,) = struct.unpack_from("<I", header, len(MAGIC))
        if version in _FORMATS:
            return _FORMATS[version]
        raise DataCorrupted(f"WAL file {path} has unsupported format version {version}")
    if len(header) < _HEADER_SIZE and allow_torn and _file_header(FORMAT_VERSION).startswith(header):
        return None
    if header[: len(MAGIC)] != MAGIC:
        raise DataCorrupted(f"WAL file {path} has a bad header: not a sqlvec WAL file")
    raise DataCorrupted(f"WAL file {path} has an incomplete header")


@dataclass(frozen=True)
class WalFrame:
    """One record's frame as found in a file (what `sqlvec wal inspect` lists)."""

    offset: int
    lsn: int
    synced: int
    length: int


def _frames(f: BinaryIO, size: int, fmt: _Format, *,
            skip_through: int = 0) -> Iterator[tuple[WalFrame, bytes]]:
    """Yield (frame, payload) for each frame after the file header.

    Payloads of records with lsn <= skip_through are skipped unread and unchecked (they were
    validated when the log was opened) and yielded as b"". Stops at an all-zero frame header
    (space allocated ahead of the log reads as zeros; no frame is all zeros, LSNs start at 1).
    Raises _BadRecord at the first frame that is incomplete or fails its CRC.
    """
    offset = _HEADER_SIZE
    f.seek(offset)
    while offset < size:
        head = f.read(fmt.frame.size)
        if len(head) < fmt.frame.size:
            raise _BadRecord(offset, "incomplete record header")
        if head == bytes(len(head)):
            return  # space allocated ahead of the log: its logical end
        length, lsn, synced, crc = fmt.unpack(head)
        end = offset + fmt.frame.size + length
        if end > size:
            raise _BadRecord(offset, "incomplete payload")
        if lsn <= skip_through:
            f.seek(end)
            payload = b""
        else:
            payload = f.read(length)
            if len(payload) < length:
                raise _BadRecord(offset, "incomplete payload")
            if fmt.crc(fmt.fields(length, lsn, synced), payload) != crc:
                raise _BadRecord(offset, "CRC mismatch")
        yield WalFrame(offset, lsn, synced, length), payload
        offset = end


def _valid_frames_after(path: Path, start: int, size: int, fmt: _Format,
                        bad_lsn: int) -> list[WalFrame]:
    """Valid frames with an LSN above `bad_lsn` anywhere after offset `start` of a file.

    A damaged length field hides where the next frame starts, so every byte offset is a
    candidate: NumPy finds the offsets whose LSN field is plausible (one strided view per byte
    phase), and only those are CRC-checked.
    """
    found: list[WalFrame] = []
    if size - start < fmt.frame.size:
        return found
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        lsn_at = 4  # the LSN field follows the u32 length in every format
        max_records = (size - start) // fmt.frame.size + 1
        candidates: list[int] = []
        for phase in range(8):
            first = start + 1 + lsn_at + phase
            count = (size - first) // 8
            if count <= 0:
                continue
            lsns = np.frombuffer(mm, dtype="<u8", count=count, offset=first)[:: 1]
            hits = np.nonzero((lsns > bad_lsn) & (lsns <= bad_lsn + max_records))[0]
            candidates.extend((first + 8 * hits - lsn_at).tolist())
            del lsns
        for offset in sorted(candidates):
            head = mm[offset: offset + fmt.frame.size]
            if len(head) < fmt.frame.size:
                continue
            length, lsn, synced, crc = fmt.unpack(head)
            end = offset + fmt.frame.size + length
            if end > size:
                continue
            payload = mm[offset + fmt.frame.size: end]
            if fmt.crc(fmt.fields(length, lsn, synced), payload) == crc:
                found.append(WalFrame(offset, lsn, synced, length))
    return found


@dataclass
class SegmentScan:
    """What a read-only check of one WAL file found (`scan_segment`)."""

    path: Path
    first_lsn: int
    version: int | None
    frames: list[WalFrame]
    size: int
    end: int = _HEADER_SIZE  # the log's end in this file: after its last valid record
    bad_offset: int | None = None
    bad_reason: str | None = None
    later_valid: tuple[WalFrame, ...] = ()  # valid frames after the bad one

    @property
    def next_lsn(self) -> int:
        return self.frames[-1].lsn + 1 if self.frames else self.first_lsn

    @property
    def damaged(self) -> bool:
        """A bad record that a later record proves was durable: damage, not a torn write."""
        bad_lsn = self.next_lsn
        return any(fr.synced >= bad_lsn for fr in self.later_valid)


def scan_segment(first: int, path: Path, *, expected_first: int | None = None) -> SegmentScan:
    """Check one file without changing it: its frames, the first bad record and what follows.

    Raises DataCorrupted for a bad file header and for a valid record with an unexpected LSN."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        fmt = _read_header(f, path, allow_torn=True)
        scan = SegmentScan(path, first, fmt.version if fmt else None, [], size)
        if fmt is None:
            scan.bad_offset, scan.bad_reason = 0, f"incomplete file header ({size} bytes)"
            return scan
        expected = first if expected_first is None else expected_first
        try:
            for frame, _payload in _frames(f, size, fmt):
                if frame.lsn != expected:
                    raise DataCorrupted(
                        f"WAL file {path}: record at offset {frame.offset} has LSN {frame.lsn}, "
                        f"expected {expected}")
                scan.frames.append(frame)
                scan.end = frame.offset + fmt.frame.size + frame.length
                expected += 1
        except _BadRecord as bad:
            scan.bad_offset, scan.bad_reason = bad.offset, bad.reason
        else:
            # Zeros after the end are space allocated ahead; anything else there was written
            # after a block that reads as zeros: a torn write, or a zeroed record (damage).
            if scan.end < size and _has_data(path, scan.end):
                scan.bad_offset = scan.end
                scan.bad_reason = "zeroed record header followed by data"
        if scan.bad_offset is not None:
            scan.later_valid = tuple(
                _valid_frames_after(path, scan.bad_offset, size, fmt, expected - 1))
    return scan


def _has_data(path: Path, start: int) -> bool:
    """Whether the bytes of a file from `start` to its end are not all zero."""
    with open(path, "rb") as f:
        f.seek(start)
        while block := f.read(1 << 20):
            if block.count(0) != len(block):
                return True
    return False


def read_payload(path: Path, frame: WalFrame) -> bytes:
    """The payload of one frame found by `scan_segment`."""
    with open(path, "rb") as f:
        fmt = _read_header(f, path, allow_torn=False)
        assert fmt is not None
        f.seek(frame.offset + fmt.frame.size)
        return f.read(frame.length)


def _damage_error(scan: SegmentScan, *, last_file: bool) -> DataCorrupted:
    bad_lsn = scan.next_lsn
    if scan.later_valid:
        after = (f"; {len(scan.later_valid)} valid record(s) follow it, up to LSN "
                 f"{scan.later_valid[-1].lsn}")
    elif not last_file:
        after = "; later WAL files follow it"
    else:
        after = ""
    return DataCorrupted(
        f"WAL file {scan.path}: {scan.bad_reason} at offset {scan.bad_offset} "
        f"(record LSN {bad_lsn}){after}",
        detail="The record was durable before the damage, so it is not a torn write from a "
               "crash; the file has been left untouched.",
        hint=f"Inspect the log with `sqlvec wal inspect`. Restoring the file from a backup keeps "
             f"every commit; `sqlvec wal truncate --lsn {bad_lsn - 1}` keeps the commits up to "
             f"LSN {bad_lsn - 1} and discards the rest.",
    )


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _datasync(fd: int) -> None:
    """fdatasync where the platform has it: the log's blocks and size, not its timestamps."""
    getattr(os, "fdatasync", os.fsync)(fd)


def _write_all(fd: int, buffers: list) -> int:
    """Write every buffer in order (writev, resuming after short writes); return bytes written.
    A few small buffers (a group of single-row commits) are joined first: one buffer costs
    the kernel and Python less than a handful."""
    total = 0
    if len(buffers) <= 16:
        size = 0
        for b in buffers:
            size += len(b) if type(b) is bytes else memoryview(b).nbytes
        if size <= _JOIN_MAX:
            joined = b"".join(buffers)
            total = os.writev(fd, (joined,)) if size else 0
            if total == size:  # (the usual case: one system call, no views)
                return total
            buffers = [memoryview(joined)[total:]]
    views = [memoryview(b).cast("B") for b in buffers if len(b)]
    i = 0
    while i < len(views):
        n = os.writev(fd, views[i: i + _IOV_MAX])
        total += n
        while i < len(views) and n >= len(views[i]):
            n -= len(views[i])
            i += 1
        if n:
            views[i] = views[i][n:]
    return total


class _WriteFailed(Exception):
    def __init__(self, error: SqlVecError, cause: OSError) -> None:
        super().__init__(error.message)
        self.error = error
        self.cause = cause


@dataclass
class _Position:
    """A place in the log: a file and a byte offset in it, with its record count."""

    path: Path
    size: int
    records: int


class WriteAheadLog:
    """An append-only, segmented, CRC-framed log with group commit. Safe to share among threads."""

    def __init__(self, directory: Path, *, fsync: bool, segment_bytes: int) -> None:
        # Use WriteAheadLog.open(): it recovers the directory before anything is appended.
        self._dir = directory
        self._fsync = fsync
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._segments: list[tuple[int, Path]] = []  # (first_lsn, path) of existing files
        # Appended, not yet written: frames (header, payload) and ("rotate", first_lsn) marks.
        self._queue: list[tuple] = []
        self._tail_size = 0  # size of the newest file once the queue is written
        self._tail_records = 0
        self._last_lsn = 0
        self._durable_lsn = 0
        self._durable: _Position | None = None  # end of the last durable record
        self._fd = -1  # the newest file, written only by the sync leader
        self._fd_pos: _Position | None = None
        self._allocated = 0  # its size with the zeros written ahead of the log
        # Held by the sync leader during its write and fsync (None when none runs): a caller
        # waiting for it takes it once released and passes it on at once, so a group's
        # waiters wake without a Condition's lock per waiter and wake-up per notify.
        self._flush: threading.Lock | None = None
        self._epoch = 0  # bumped by every failed write; sync() callers compare
        self._epoch_durable: dict[int, int] = {}  # failed epoch -> durable LSN when it failed
        self._epoch_error: dict[int, SqlVecError] = {}
        self._failed: SqlVecError | None = None  # set: appends refused
        self._needs_rollback = False
        self._permanent = False  # failed for good (not a full disk): read-only until restart
        self._closed = False
        self._stats = {"records": 0, "bytes": 0, "fsyncs": 0, "syncs": 0, "rotations": 0,
                       "failures": 0}

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
        segments = wal_files(self._dir)
        next_lsn: int | None = None
        version = FORMAT_VERSION
        for i, (first, path) in enumerate(segments):
            if next_lsn is not None and first != next_lsn:
                raise DataCorrupted(
                    f"WAL file {path} starts at LSN {first} but the previous file ends at "
                    f"LSN {next_lsn - 1}"
                )
            is_last = i == len(segments) - 1
            next_lsn, size, records, version = self._check_segment(first, path, is_last=is_last)
            if is_last:
                self._tail_size, self._tail_records = size, records
        if not segments:
            segments = [(1, self._new_file(1))]
            next_lsn, self._tail_size, self._tail_records = 1, _HEADER_SIZE, 0
        assert next_lsn is not None
        if version != FORMAT_VERSION:  # never mix formats in one file: continue in a new one
            first, path = segments[-1]
            if self._tail_records == 0:
                path.unlink()
                segments.pop()
            segments.append((next_lsn, self._new_file(next_lsn)))
            self._tail_size, self._tail_records = _HEADER_SIZE, 0
        self._segments = segments
        self._last_lsn = self._durable_lsn = next_lsn - 1
        tail = segments[-1][1]
        self._durable = _Position(tail, self._tail_size, self._tail_records)
        self._open_tail(self._durable)

    def _new_file(self, first_lsn: int) -> Path:
        path = self._dir / _segment_name(first_lsn)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, [_file_header(FORMAT_VERSION)])
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if self._fsync:
            _fsync_path(self._dir, directory=True)
        return path

    def _open_tail(self, pos: _Position) -> None:
        self._fd = os.open(pos.path, os.O_WRONLY)
        os.lseek(self._fd, pos.size, os.SEEK_SET)
        self._fd_pos = _Position(pos.path, pos.size, pos.records)
        # Past the log's end the file may hold space reserved by an older version
        # (fallocate: unwritten extents): written over with zeros step by step, as new space.
        self._allocated = pos.size

    def _check_segment(self, first: int, path: Path, *,
                       is_last: bool) -> tuple[int, int, int, int]:
        """Validate one file; return (next expected LSN, valid size, record count, version)."""
        scan = scan_segment(first, path)
        if scan.version is None:
            if not is_last:
                raise DataCorrupted(f"WAL file {path} has an incomplete header")
            logger.warning(
                "WAL file %s: incomplete file header (%d bytes) from an interrupted "
                "write; rewriting it", path, scan.size,
            )
            with open(path, "wb") as w:
                w.write(_file_header(FORMAT_VERSION))
                w.flush()
                if self._fsync:
                    os.fsync(w.fileno())
            return first, _HEADER_SIZE, 0, FORMAT_VERSION
        valid_size = scan.end
        if scan.bad_offset is not None:
            if not is_last or scan.damaged:
                raise _damage_error(scan, last_file=is_last)
            dropped = (f" (and {len(scan.later_valid)} later record(s) of the same unsynced "
                       "group)" if scan.later_valid else "")
            logger.warning(
                "WAL file %s: %s at offset %d (torn write); truncating, %d bytes dropped%s",
                path, scan.bad_reason, scan.bad_offset, scan.size - scan.bad_offset, dropped,
            )
            valid_size = scan.bad_offset
            os.truncate(path, valid_size)
            if self._fsync:
                _fsync_path(path)
        return scan.next_lsn, valid_size, len(scan.frames), scan.version

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
        """Every record up to this LSN has been written (and fsynced when fsync=True)."""
        return self._durable_lsn

    @property
    def epoch(self) -> int:
        """Bumped by every failed write: pass the value seen at append time to `sync`."""
        return self._epoch

    @property
    def failed(self) -> SqlVecError | None:
        """Why appends are refused, if they are."""
        return self._failed

    @property
    def bytes_appended(self) -> int:
        """Bytes of records appended since open (`stats["bytes"]`, without copying them all)."""
        return self._stats["bytes"]

    @property
    def stats(self) -> dict[str, int]:
        """Counters since open: records, bytes, fsyncs (os.fsync calls), syncs, rotations,
        failures (failed writes or fsyncs)."""
        with self._lock:
            return dict(self._stats)

    # -- reading ----------------------------------------------------------------------------

    def replay(self, after_lsn: int = 0) -> Iterator[tuple[int, bytes]]:
        """Yield (lsn, payload) for every durable record with lsn > after_lsn, in LSN order.

        Reads one record at a time, so the log is never held in memory. Records made durable
        after the call starts are not included.
        """
        with self._lock:
            self._check_open()
            segments = list(self._segments)
            last = self._durable_lsn
            durable = self._durable
        assert durable is not None
        for i, (first, path) in enumerate(segments):
            end = segments[i + 1][0] - 1 if i + 1 < len(segments) else last
            if end <= after_lsn or first > last:
                continue
            with open(path, "rb") as f:
                size = durable.size if path == durable.path else os.fstat(f.fileno()).st_size
                fmt = _read_header(f, path, allow_torn=False)
                assert fmt is not None
                try:
                    for frame, payload in _frames(f, size, fmt, skip_through=after_lsn):
                        if frame.lsn > last:
                            break
                        if frame.lsn > after_lsn:
                            yield frame.lsn, payload
                except _BadRecord as bad:
                    raise DataCorrupted(
                        f"WAL file {path}: {bad.reason} at offset {bad.offset}"
                    ) from None

    # -- writing ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("write-ahead log is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._failed is not None:
            raise _refusal(self._failed, permanent=self._permanent)

    def append(self, payload: bytes | bytearray | memoryview | EncodedPayload) -> int:
        """Queue one record and return its LSN. Not written, nor durable, until sync().

        An `EncodedPayload` (buffers whose CRC is already known) is written as it lies: only
        its header's CRC is computed here and combined with the payload's."""
        if isinstance(payload, EncodedPayload):
            return self._append_parts(payload.buffers, payload.size, payload.crc)
        return self._append_parts((payload,), len(payload), None)

    def _append_parts(self, parts: Sequence, length: int, crc: int | None) -> int:
        if length >= 2**32:
            raise ValueError("WAL record payload must be smaller than 4 GiB")
        with self._lock:
            if self._closed or self._failed is not None:
                self._check_writable()
            lsn = self._last_lsn + 1
            frame_size = _CURRENT.frame.size + length
            if self._tail_records and self._tail_size + frame_size > self._segment_bytes:
                self._queue.append(("rotate", lsn))
                self._tail_size, self._tail_records = _HEADER_SIZE, 0
            fields = (length, lsn, self._durable_lsn)
            if crc is None:  # (`_Format.crc`, inline)
                crc = zlib.crc32(parts[0], zlib.crc32(_CURRENT.prefix.pack(*fields)))
            else:
                crc = crc32_combine(zlib.crc32(_CURRENT.prefix.pack(*fields)), crc, length)
            head = _CURRENT.frame.pack(*fields, crc)
            self._queue.append((head, *parts))
            self._tail_size += frame_size
            self._tail_records += 1
            self._last_lsn = lsn
            self._stats["records"] += 1
            self._stats["bytes"] += frame_size
            return lsn

    def sync(self, lsn: int, *, epoch: int | None = None) -> None:
        """Return once every record up to `lsn` is durable (group commit).

        One caller becomes the leader: it takes the queue under the lock, then writes and
        fsyncs outside it so appends continue meanwhile. Callers arriving during its I/O wait;
        those whose LSN it covered return without I/O of their own, the rest elect the next
        leader. `epoch` is the value of `epoch` when the record was appended: if a write has
        failed since, the record is durable only if it was before the failure, and otherwise
        this raises the failure's error (53100 / 58030).
        """
        with self._lock:
            epoch = self._epoch if epoch is None else epoch
            if epoch == self._epoch and lsn > self._last_lsn:
                raise ValueError(f"cannot sync LSN {lsn}: last appended LSN is {self._last_lsn}")
            while True:
                if epoch != self._epoch:
                    if lsn <= self._epoch_durable[epoch]:
                        return
                    raise self._epoch_error[epoch]
                if lsn <= self._durable_lsn:
                    return
                if self._closed or self._failed is not None:
                    self._check_writable()
                if self._flush is None:
                    break
                self._wait_for_flush()
            batch, self._queue = self._queue, []
            target = self._last_lsn
            self._flush = threading.Lock()
            self._flush.acquire()
            self._stats["syncs"] += 1
        try:
            position, fsyncs, rotations = self._write(batch)
        except _WriteFailed as failure:
            with self._lock:
                self._fail(failure)
            raise failure.error from failure.cause
        with self._lock:
            self._durable_lsn = max(self._durable_lsn, target)
            self._durable = position
            self._stats["fsyncs"] += fsyncs
            self._stats["rotations"] += rotations
            self._end_flush()

    def _wait_for_flush(self) -> None:
        """Wait until the flush in progress ends (caller holds the lock, released meanwhile)."""
        flush = self._flush
        assert flush is not None
        self._lock.release()
        try:
            flush.acquire()
            flush.release()  # the next waiter's turn
        finally:
            self._lock.acquire()

    def _end_flush(self) -> None:
        """The leader's flush is over, written or failed (lock held): its waiters go on."""
        flush, self._flush = self._flush, None
        if flush is not None:
            flush.release()

    def _write(self, batch: list[tuple]) -> tuple[_Position, int, int]:
        """Write and fsync a batch in order (leader only, no lock held): (end, fsyncs, rotations)."""
        assert self._fd_pos is not None
        pos = self._fd_pos
        pending: list = []
        fsyncs = rotations = 0
        dir_dirty = False
        action = "write to"
        try:
            for item in batch:
                if item[0] == "rotate":
                    self._allocate_for(pos, pending)
                    pos.size += _write_all(self._fd, pending)
                    pending = []
                    if self._fsync:
                        action = "fsync"
                        os.ftruncate(self._fd, pos.size)  # give back what was allocated ahead
                        os.fsync(self._fd)
                        fsyncs += 1
                    os.close(self._fd)
                    self._fd = -1
                    path = self._dir / _segment_name(item[1])
                    action = "create"
                    pos = _Position(path, 0, 0)
                    self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    self._fd_pos = pos
                    self._allocated = 0
                    with self._lock:
                        self._segments.append((item[1], path))
                    action = "write to"
                    pos.size += _write_all(self._fd, [_file_header(FORMAT_VERSION)])
                    dir_dirty = True
                    rotations += 1
                else:
                    pending.extend(item)
                    pos.records += 1
            action = "write to"
            self._allocate_for(pos, pending)
            pos.size += _write_all(self._fd, pending)
            if self._fsync:
                action = "fsync"
                _datasync(self._fd)
                fsyncs += 1
                if dir_dirty:
                    _fsync_path(self._dir, directory=True)
        except OSError as exc:
            raise _WriteFailed(storage_error(exc, action, pos.path), exc) from exc
        return _Position(pos.path, pos.size, pos.records), fsyncs, rotations

    def _allocate_for(self, pos: _Position, buffers: list) -> None:
        """Write zeros ahead of the log (leader only), so that most commits overwrite blocks
        already written and their fdatasync need not also commit the file's growth or the
        allocation of its blocks (see the module's docstring).

        Each step writes as much as the file holds, from 64 KiB up to 256 KiB (a small log
        stays small; a busy one flushes a step's zeros, about 0.3 ms, once per 670 single-row
        commits), never past `segment_bytes`, and after the buffers about to be written, so
        zeros never land where a record goes. A write of 256 KiB or more extends the file
        itself, its one journal commit spread over that much. Best effort: a full disk just
        leaves the file to grow by its writes."""
        if not self._fsync:
            return
        need = pos.size + sum(len(b) if type(b) is bytes else memoryview(b).nbytes
                              for b in buffers)
        if need <= self._allocated or need - pos.size >= _ALLOCATE_MAX:
            return  # (a large write, a COPY's piece: its zeros would be written twice)
        step = min(_ALLOCATE_MAX, max(_ALLOCATE_MIN, self._allocated))
        target = min(self._segment_bytes, need + step)
        if target <= need:
            return  # the file ends here
        try:
            os.pwrite(self._fd, bytes(target - need), need)
        except OSError:
            return
        self._allocated = target

    def _fail(self, failure: _WriteFailed) -> None:
        """Fail every record not yet durable (lock held); `rollback` repairs the files."""
        self._epoch_durable[self._epoch] = self._durable_lsn
        self._epoch_error[self._epoch] = failure.error
        self._epoch += 1
        self._failed = failure.error
        self._permanent |= not is_disk_full(failure.cause)
        self._needs_rollback = True
        self._stats["failures"] += 1
        self._end_flush()
        logger.error("write-ahead log: %s; commits after LSN %d fail", failure.error.message,
                     self._durable_lsn)

    def rollback(self) -> None:
        """Return the log to its last durable record after a failed write.

        Files started since are deleted, the file is truncated and fsynced, and queued records
        are dropped (their commits have failed). Appends are accepted again unless the failure
        was not a full disk, or the repair itself fails. Idempotent."""
        with self._lock:
            if not self._needs_rollback:
                return
            while self._flush is not None:
                self._wait_for_flush()
            durable = self._durable
            assert durable is not None
            self._queue = []
            self._last_lsn = self._durable_lsn
            try:
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
                keep = [s for s in self._segments if s[1] <= durable.path]
                for _first, path in self._segments[len(keep):]:
                    path.unlink(missing_ok=True)
                self._segments = keep
                os.truncate(durable.path, durable.size)
                if self._fsync:
                    _fsync_path(durable.path)
                    _fsync_path(self._dir, directory=True)
                self._open_tail(durable)
            except OSError as exc:
                self._permanent = True
                self._failed = storage_error(exc, "truncate", durable.path)
                logger.error("write-ahead log: could not return to LSN %d: %s",
                             self._durable_lsn, self._failed.message)
                return
            finally:
                self._needs_rollback = False
            self._tail_size, self._tail_records = durable.size, durable.records
            if not self._permanent:
                self._failed = None
                logger.warning("write-ahead log returned to LSN %d after a failed write; "
                               "commits are accepted again", self._durable_lsn)

    def commit(self, payload: bytes | bytearray | memoryview) -> int:
        """Append a record and wait until it is durable; return its LSN."""
        with self._lock:
            epoch = self._epoch
        lsn = self.append(payload)
        self.sync(lsn, epoch=epoch)
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
            _fsync_path(self._dir, directory=True)

    def close(self) -> None:
        """Make everything appended durable and release the files. Idempotent."""
        if self._closed:
            return
        if self._failed is None and self._last_lsn > self._durable_lsn:
            try:
                self.sync(self._last_lsn)
            except SqlVecError:
                pass  # the failed commits were told; the tail is rolled back below
        self.rollback()
        with self._lock:
            while self._flush is not None:
                self._wait_for_flush()
            self._closed = True
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"WriteAheadLog({str(self._dir)!r}, last_lsn={self._last_lsn}, "
            f"durable_lsn={self._durable_lsn})"
        )


def _refusal(error: SqlVecError, *, permanent: bool) -> SqlVecError:
    """The error for a commit attempted while the log cannot take it."""
    if permanent:
        return IoError(
            "the write-ahead log is unusable after an I/O error: no commits are accepted",
            detail=error.message,
            hint="Restart the server; recovery replays every acknowledged commit.")
    return type(error)(error.message, detail="A previous write to the write-ahead log failed "
                       "and has not been repaired yet.", hint=error.hint)


def truncate_log(directory: str | os.PathLike[str], keep_through: int) -> list[Path]:
    """Cut a closed log after LSN `keep_through`: later records and files are removed.

    Every record up to `keep_through` must be readable. What is cut is first saved beside the
    log as `<file>.cut-<lsn>` (names the log ignores), so nothing is destroyed. Returns the files
    written that way. Used by `sqlvec wal truncate`."""
    directory = Path(directory)
    saved: list[Path] = []
    files = wal_files(directory)
    cut = keep_through + 1
    for i, (first, path) in enumerate(files):
        aside = path.with_name(f"{path.name}.cut-{keep_through}")
        if first > cut:
            os.replace(path, aside)
            saved.append(aside)
            continue
        scan = scan_segment(first, path)
        before_cut = i + 1 < len(files) and files[i + 1][0] <= cut
        if scan.version is None or (scan.bad_offset is not None
                                    and (before_cut or scan.next_lsn < cut)):
            raise DataCorrupted(
                f"WAL file {path}: the records up to LSN {keep_through} are not all readable "
                f"(the first bad record is LSN {scan.next_lsn}, {scan.bad_reason})")
        if before_cut:
            continue
        offsets = {fr.lsn: fr.offset for fr in scan.frames}
        offset = offsets.get(cut, scan.bad_offset if scan.bad_offset is not None else scan.end)
        if scan.bad_offset is None and offset >= scan.end:
            continue
        with open(path, "rb") as f:
            f.seek(offset)
            rest = f.read()
        with open(aside, "wb") as out:
            out.write(rest)
            out.flush()
            os.fsync(out.fileno())
        saved.append(aside)
        os.truncate(path, offset)
        _fsync_path(path)
    _fsync_path(directory, directory=True)
    return saved


class LogGone(Exception):
    """The records a reader needs next are no longer in the log: a checkpoint deleted their
    file (the manifest committed before it says where their data went)."""


class LogReader:
    """Reads the records another process appends to a log, without changing any file.

    For processes that follow the writer (`follower.py`). Only whole, checksummed records are
    returned, in LSN order: a record still being written (incomplete, failing its CRC, or a
    file that does not exist yet) ends the read quietly, to be read by a later call; nothing is
    ever truncated or repaired. The position is kept between calls, so following a busy log
    reads each record once. Not thread-safe: one reader per follower, used under its lock."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._dir = Path(directory)
        self._fd = -1
        self._path: Path | None = None
        self._fmt: _Format | None = None
        self._offset = 0
        self._next = 0  # LSN of the record expected at _offset
        self._first = 0  # LSN of the open file's first record

    def close(self) -> None:
        """Release the file being read (the reader never writes, so nothing is flushed)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._path = None

    def oldest_lsn(self) -> int:
        """The first LSN the log's oldest file may hold (0 for a log without files)."""
        files = wal_files(self._dir) if self._dir.is_dir() else []
        return files[0][0] if files else 0

    def records(self, after_lsn: int, upto: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Yield (lsn, payload) for whole records with after_lsn < lsn <= upto (no bound when
        upto is None), in order, stopping at the first that is not (yet) complete. A record
        is consumed once yielded. Raises LogGone when the log no longer holds after_lsn + 1,
        DataCorrupted for a bad record that a later file proves finished."""
        if self._fd < 0 or self._next != after_lsn + 1:
            if not self._seek(after_lsn + 1):
                return
        while upto is None or self._next <= upto:
            record = self._read_frame()
            if record is not None:
                if record[0] > after_lsn:  # (a seek that found its record unwritten stops short)
                    yield record
                continue
            clean = self._at_clean_end()
            following = self._dir / _segment_name(self._next)
            if self._next == self._first or not following.exists():
                return  # not yet written
            if not clean:
                # The file was being written when we looked; now a later file exists, so
                # this one is finished: read once more before calling it damage.
                record = self._read_frame()
                if record is not None:
                    yield record
                    continue
                raise DataCorrupted(f"WAL file {self._path}: bad record at offset "
                                    f"{self._offset} (LSN {self._next}) before later file "
                                    f"{following.name}")
            if not self._open(following, self._next):
                return

    def _seek(self, lsn: int) -> bool:
        """Position at record `lsn`: False if its file does not exist yet."""
        self.close()
        files = wal_files(self._dir) if self._dir.is_dir() else []
        holding = [(first, path) for first, path in files if first <= lsn]
        if not holding:
            if files:
                raise LogGone(f"WAL record {lsn} is no longer in {self._dir}")
            return False
        first, path = holding[-1]
        if not self._open(path, first):
            return False
        while self._next < lsn:  # skip the records before it, reading only their headers
            head = self._header()
            if head is None:
                return True  # lsn is not written yet; read from here next time
            length, frame_lsn, _synced, _crc = head
            if frame_lsn != self._next:
                return True
            self._offset += self._fmt.frame.size + length  # type: ignore[union-attr]
            self._next += 1
        return True

    def _open(self, path: Path, first: int) -> bool:
        self.close()
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise LogGone(f"WAL file {path} was removed") from None
        header = os.pread(fd, _HEADER_SIZE, 0)
        if len(header) < _HEADER_SIZE:  # the file was just created: its header comes next
            os.close(fd)
            return False
        if header[: len(MAGIC)] != MAGIC:
            os.close(fd)
            raise DataCorrupted(f"WAL file {path} has a bad header: not a sqlvec WAL file")
        (version,) = struct.unpack_from("<I", header, len(MAGIC))
        if version not in _FORMATS:
            os.close(fd)
            raise DataCorrupted(f"WAL file {path} has unsupported format version {version}")
        self._fd, self._path, self._fmt = fd, path, _FORMATS[version]
        self._offset, self._next, self._first = _HEADER_SIZE, first, first
        return True

    def _header(self) -> tuple[int, int, int, int] | None:
        assert self._fmt is not None
        head = os.pread(self._fd, self._fmt.frame.size, self._offset)
        if len(head) < self._fmt.frame.size or head == bytes(len(head)):
            return None
        return self._fmt.unpack(head)

    def _read_frame(self) -> tuple[int, bytes] | None:
        """The record at the position if it is whole and checks out (and move past it)."""
        head = self._header()
        if head is None:
            return None
        length, lsn, synced, crc = head
        if lsn != self._next:
            return None
        fmt = self._fmt
        assert fmt is not None
        payload = os.pread(self._fd, length, self._offset + fmt.frame.size)
        if len(payload) < length or fmt.crc(fmt.fields(length, lsn, synced), payload) != crc:
            return None
        self._offset += fmt.frame.size + length
        self._next += 1
        return lsn, payload

    def _at_clean_end(self) -> bool:
        """Whether the position is the file's end: nothing or zeros (space allocated ahead)."""
        assert self._fmt is not None
        head = os.pread(self._fd, self._fmt.frame.size, self._offset)
        return head == bytes(len(head))


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


class RowInsertOp(InsertOp):
    """One row appended to a table, kept as the Python values it was bound with (a prepared
    single-row INSERT's): its commit checks the keys, logs and applies it without building
    Arrow objects, which cost more per row than the rest of the commit. `values` are in
    `schema`'s column order, each `None` (NULL) or exactly of the column's Python type
    (`row_types`); `table_def` is the definition they were checked against. `batch` builds
    the one-row batch for anything else that reads it (foreign keys, CHECK constraints)."""

    def __init__(self, table_id: int, values: tuple, schema: pa.Schema,
                 table_def: object) -> None:
        # (frozen: set through the instance's dict, one call for the four fields)
        self.__dict__.update(table_id=table_id, values=values, schema=schema,
                             table_def=table_def)

    @property
    def batch(self) -> pa.RecordBatch:  # type: ignore[override]
        """The row as a one-row batch of `schema`, built on first use."""
        batch = self.__dict__.get("_batch")
        if batch is None:
            batch = row_batch(self.values, self.schema)
            object.__setattr__(self, "_batch", batch)
        return batch


# The Arrow types a `RowInsertOp` holds, by type id: how one value is packed in its WAL
# record (a struct, or "s" / "b": length-prefixed UTF-8 text / bytes) and its Python type.
_ROW_PACK = {pa.int64().id: (struct.Struct("<q"), int), pa.int32().id: (struct.Struct("<i"), int),
             pa.int16().id: (struct.Struct("<h"), int),
             pa.float64().id: (struct.Struct("<d"), float),
             pa.bool_().id: (struct.Struct("<?"), bool), pa.string().id: ("s", str),
             pa.binary().id: ("b", bytes)}
_LENGTH = struct.Struct("<I")


def row_types(schema: pa.Schema) -> tuple[type, ...] | None:
    """Per column, the Python type a `RowInsertOp` of `schema` holds; None when a column's
    type is not one it holds (vectors, dates, decimals, ...)."""
    out = []
    for column in schema:
        known = _ROW_PACK.get(column.type.id)
        if known is None or column.metadata:
            return None
        out.append(known[1])
    return tuple(out)


def row_batch(values: Sequence, schema: pa.Schema) -> pa.RecordBatch:
    """The one-row batch of a row's Python values."""
    return pa.RecordBatch.from_arrays(
        [pa.array((v,), f.type) for v, f in zip(values, schema)], schema=schema)


def _encode_row(op: RowInsertOp) -> list:
    """The body of a one-row insert's record: the schema's IPC message (kept per schema),
    then per column a NULL flag byte and the value (fixed width, or u32 length and bytes)."""
    head, packers = _row_codec(op.schema)
    parts: list = [head]
    for value, packer in zip(op.values, packers):
        if value is None:
            parts.append(b"\x01")
        elif packer is str:
            data = value.encode()
            parts += (_PRESENT_LENGTH.pack(0, len(data)), data)
        elif packer is bytes:
            parts += (_PRESENT_LENGTH.pack(0, len(value)), value)
        else:
            parts.append(packer.pack(0, value))  # the flag (present) and the value
    return parts


_PRESENT_LENGTH = struct.Struct("<BI")
# Per schema of recent one-row inserts: (the body's head, per column a Struct packing the
# present flag and the value, or str / bytes for length-prefixed values).
_row_codecs: list[tuple[pa.Schema, bytes, list]] = []


def _row_codec(schema: pa.Schema) -> tuple[bytes, list]:
    for known, head, packers in reversed(_row_codecs):
        if known is schema:
            return head, packers
    message = schema.serialize().to_pybytes()
    head = _LENGTH.pack(len(message)) + message
    packers = []
    for column in schema:
        packer, kind = _ROW_PACK[column.type.id]
        packers.append(kind if isinstance(packer, str) else struct.Struct("<B" + packer.format[1:]))
    if len(_row_codecs) >= 16:
        del _row_codecs[0]
    _row_codecs.append((schema, head, packers))
    return head, packers


_read_heads: dict[bytes, pa.Schema] = {}


def _decode_row(view: memoryview, offset: int, length: int) -> pa.RecordBatch:
    """The batch of a one-row insert's record body (`_encode_row`)."""
    end = offset + length
    (size,) = _LENGTH.unpack_from(view, offset)
    offset += _LENGTH.size
    message = bytes(view[offset:offset + size])
    offset += size
    schema = _read_heads.get(message)
    if schema is None:
        schema = ipc.read_schema(pa.py_buffer(message))
        if len(_read_heads) >= 64:
            _read_heads.clear()
        _read_heads[message] = schema
    values = []
    for column in schema:
        null = view[offset]
        offset += 1
        if null:
            values.append(None)
            continue
        known = _ROW_PACK.get(column.type.id)
        if known is None:
            raise DataCorrupted(f"WAL commit record: a one-row insert of type {column.type}")
        packer = known[0]
        if isinstance(packer, str):
            (n,) = _LENGTH.unpack_from(view, offset)
            offset += _LENGTH.size
            data = bytes(view[offset:offset + n])
            offset += n
            values.append(data.decode() if packer == "s" else data)
        else:
            values.append(packer.unpack_from(view, offset)[0])
            offset += packer.size
    if offset != end:
        raise DataCorrupted(f"WAL commit record: a one-row insert of {end - offset} bytes "
                            "more or less than its values")
    return row_batch(values, schema)


@dataclass(frozen=True)
class EncodedBatch:
    """One batch of an `InsertRunOp` serialized ahead (its IPC message and that message's
    CRC-32), so that a commit writes it as it lies."""

    batch: pa.RecordBatch
    message: pa.Buffer
    crc: int
    lsn: int = 0  # its piece record's, once logged ahead of the commit (`encode_piece`)
    epoch: int = 0  # the log's epoch when the piece was appended

    @classmethod
    def of(cls, batch: pa.RecordBatch, into: mmap.mmap | memoryview | None = None
           ) -> EncodedBatch:
        """Serialize and checksum (both release the GIL: meant for a worker thread); into
        `into` when the message fits there (memory kept between COPYs: `sqlvec.memory`;
        `serialized_size` bytes of it are written)."""
        message = _serialized_into(batch, into) if into is not None else None
        if message is None:
            message = batch.serialize()
        return cls(batch, message, zlib.crc32(message))


def serialized_size(batch: pa.RecordBatch) -> int:
    """The bytes `EncodedBatch.of` writes into the memory it is given: a stream's schema
    message, the batch's message and the stream's end."""
    return len(batch.schema.serialize()) + ipc.get_record_batch_size(batch) + len(_EOS)


def _serialized_into(batch: pa.RecordBatch, buffer: mmap.mmap | memoryview) -> pa.Buffer | None:
    """`batch.serialize()` written into `buffer` (a stream's schema message, then the batch's
    message, which is returned as a slice of `buffer`); None when it does not fit."""
    head = len(batch.schema.serialize())
    end = head + ipc.get_record_batch_size(batch)
    if end + len(_EOS) > len(buffer):
        return None
    target = pa.py_buffer(buffer)
    sink = pa.FixedSizeBufferWriter(target)
    writer = ipc.new_stream(sink, batch.schema)
    writer.write_batch(batch)
    if sink.tell() != end:
        raise ValueError("an IPC message of an unexpected size")
    return target.slice(head, end - head)


@dataclass(frozen=True)
class InsertRunOp:
    """Rows appended to a table as several batches (a COPY's pieces) whose row ids run on
    from `first_rowid`, which the commit assigns (-1 before). The batches hold the table's
    physical columns without the row id: they are serialized and checksummed ahead, while
    the rest of the rows arrive, and usually logged then as piece records (`encode_piece`):
    the commit only names them (kind 7); otherwise it writes those bytes without copying them
    again (kind 5). Either way replay reads it back as one `InsertOp`."""

    table_id: int
    batches: tuple[EncodedBatch, ...]
    first_rowid: int = -1
    joined: Future | None = field(default=None, compare=False, repr=False)

    @property
    def logged(self) -> bool:
        """Whether every batch is in the log already as a piece record: the commit then
        names them instead of holding the rows (kind 7)."""
        return all(part.lsn for part in self.batches)

    @classmethod
    def start(cls, table_id: int, batches: Sequence[EncodedBatch],
              joined: pa.RecordBatch | None = None) -> InsertRunOp:
        """The run of `batches`: `joined` (their rows as one batch, joined while they
        arrived), else already being joined on another thread (Arrow copies without the GIL)
        while the commit checks its keys and writes the log."""
        parts = [part.batch for part in batches]
        if joined is not None:
            done: Future = Future()
            done.set_result(joined)
            return cls(table_id, tuple(batches), joined=done)
        future = _joiner().submit(pa.concat_batches, parts) if len(parts) > 1 else None
        return cls(table_id, tuple(batches), joined=future)

    @property
    def num_rows(self) -> int:
        return sum(b.batch.num_rows for b in self.batches)

    def physical(self) -> pa.RecordBatch:
        """The rows as one batch, their row id column first (the assigned ids): one copy,
        which the growing segment then adopts (batch by batch it would copy and grow)."""
        batch = self.joined.result() if self.joined is not None \
            else _one_batch([part.batch for part in self.batches])
        return _run_batch(batch, self.first_rowid)


_threads: dict[str, ThreadPoolExecutor] = {}
_threads_lock = threading.Lock()


def background_thread(name: str) -> ThreadPoolExecutor:
    """The process's one-thread executor called `name`, started on first use."""
    with _threads_lock:
        pool = _threads.get(name)
        if pool is None:
            pool = _threads[name] = ThreadPoolExecutor(1, thread_name_prefix=name)
        return pool


def _joiner() -> ThreadPoolExecutor:
    return background_thread("insert-run")


@dataclass(frozen=True)
class EncodedPayload:
    """A WAL payload as buffers to write in order, with the CRC-32 of their bytes."""

    buffers: tuple
    size: int
    crc: int


@dataclass(frozen=True)
class RunPieceOp:
    """A piece of a COPY's rows logged while the rest arrive (kind 6): part of no table until
    a commit names it (`LoggedRunOp`); replay holds it until then (`HeldPieces`)."""

    table_id: int
    batch: pa.RecordBatch


@dataclass(frozen=True)
class LoggedRunOp:
    """The commit of an insert run whose pieces are in the log already (kind 7): the LSNs of
    its piece records in row order, the rows' ids consecutive from `first_rowid`."""

    table_id: int
    first_rowid: int
    pieces: tuple[int, ...]


@dataclass(frozen=True)
class RunAbortOp:
    """The piece records of a COPY that failed or was abandoned (kind 8): never part of a
    table, dropped by whoever holds them."""

    table_id: int
    pieces: tuple[int, ...]


Op = InsertOp | DeleteOp | TruncateOp | InsertRunOp

_INSERT, _DELETE, _TRUNCATE, _ROW, _INSERT_RUN = 1, 2, 3, 4, 5
_RUN_PIECE, _LOGGED_RUN, _RUN_ABORT = 6, 7, 8
_LSN = struct.Struct("<Q")
_ROWID_FIELD = pa.field("_rowid", pa.int64(), nullable=False)  # storage.schema.ROWID
_FIRST_ROWID = struct.Struct("<Q")


def _one_batch(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """The batches as one (the only one as it is)."""
    return batches[0] if len(batches) == 1 else pa.concat_batches(batches)


def _run_batch(batch: pa.RecordBatch, first_rowid: int) -> pa.RecordBatch:
    """An insert run's rows with their row id column first."""
    n = batch.num_rows
    rowids = pa.array(np.arange(first_rowid, first_rowid + n, dtype=np.int64))
    schema = pa.schema([_ROWID_FIELD, *batch.schema])
    return pa.RecordBatch.from_arrays([rowids, *batch.columns], schema=schema)


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of two byte strings one after the other, from their CRCs and the second's
    length (zlib's `crc32_combine`, which Python's zlib module does not expose)."""
    if _zlib_combine is not None:
        return _zlib_combine(crc1, crc2, length2)
    return _multmodp(_x2nmodp(length2, 3), crc1) ^ crc2


def _load_zlib_combine():  # the C function where the system's zlib is found
    import ctypes
    import ctypes.util

    try:
        name = ctypes.util.find_library("z")
        lib = ctypes.CDLL(name) if name else None
        function = getattr(lib, "crc32_combine64", None) or lib.crc32_combine
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_ulong
    function.argtypes = [ctypes.c_ulong, ctypes.c_ulong, ctypes.c_int64]
    return lambda a, b, n: function(a, b, n) & 0xFFFFFFFF


_CRC_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    """a * b modulo the CRC-32 polynomial (zlib's, bit-reflected)."""
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if not a & (m - 1):
                return p
        m >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1


def _x2n_table() -> list[int]:
    table, p = [], 1 << 30  # x^1
    for _ in range(32):
        table.append(p)
        p = _multmodp(p, p)
    return table


_X2N = _x2n_table()


def _x2nmodp(n: int, k: int) -> int:
    """x^(n * 2^k) modulo the polynomial."""
    p = 1 << 31  # x^0
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return p


_zlib_combine = _load_zlib_combine()
_COUNT = struct.Struct("<I")
_OP_HEADER = struct.Struct("<BQQ")  # kind, table_id, body length
# Bodies follow 21-byte headers, so IPC buffers arrive misaligned: Arrow copies just those.
_IPC_READ = ipc.IpcReadOptions(ensure_alignment=ipc.Alignment.DataTypeSpecific)


def encode_commit(ops: Sequence[Op]) -> bytes | memoryview:
    """Serialize a transaction's operations into one WAL payload (a bytes-like object).

    Insert batches of a few rows (a single-row INSERT's) are encoded from parts: the IPC stream of a
    batch is the schema's message, the batch's message and the end-of-stream marker, and the
    schema's message is the same for every batch of a table, so it is serialized once and
    reused (the bytes equal what Arrow's stream writer produces, so decoding is unchanged).
    Large ones are copied once, straight into the payload: a first pass through Arrow's IPC
    writer only measures them (`MockOutputStream` copies nothing), so every operation's header
    can precede its body in one Arrow output stream, and no join copies the rows again."""
    if len(ops) == 1 and isinstance(ops[0], InsertRunOp):
        return _encode_logged_run(ops[0]) if ops[0].logged else _encode_run(ops[0])
    for op in ops:
        if type(op) not in _SMALL_OPS and not (
                isinstance(op, InsertOp) and isinstance(op.batch, pa.RecordBatch)
                and op.batch.num_rows <= _SMALL_BATCH):
            break
    else:
        return _encode_small(ops)
    sizes = []
    for op in ops:
        if isinstance(op, InsertRunOp) and op.logged:
            raise ValueError("an insert run logged ahead is committed alone")
        if isinstance(op, InsertRunOp):
            sizes.append(_run_size(op))
        elif isinstance(op, InsertOp):
            mock = pa.MockOutputStream()
            _write_batch(mock, op.batch)
            sizes.append(mock.size())
        elif isinstance(op, DeleteOp):
            sizes.append(np.asarray(op.rowids).size * 8)
        elif isinstance(op, TruncateOp):
            sizes.append(0)
        else:
            raise TypeError(f"not a WAL operation: {op!r}")
    # The payload's size is known: written into one buffer of that size (a growing output
    # stream would reallocate, copying the rows again each time it doubles).
    payload = pa.allocate_buffer(_COUNT.size + _OP_HEADER.size * len(ops) + sum(sizes))
    sink = pa.FixedSizeBufferWriter(payload)
    sink.write(_COUNT.pack(len(ops)))
    for op, size in zip(ops, sizes):
        if isinstance(op, InsertRunOp):
            for part in _run_parts(op, size):
                sink.write(part)
        elif isinstance(op, InsertOp):
            sink.write(_OP_HEADER.pack(_INSERT, op.table_id, size))
            _write_batch(sink, op.batch)
        elif isinstance(op, DeleteOp):
            rowids = np.ascontiguousarray(op.rowids, dtype="<i8").reshape(-1)
            sink.write(_OP_HEADER.pack(_DELETE, op.table_id, size))
            sink.write(memoryview(rowids).cast("B"))
        else:
            sink.write(_OP_HEADER.pack(_TRUNCATE, op.table_id, 0))
    if sink.tell() != payload.size:
        raise AssertionError(f"WAL payload of {sink.tell()} bytes, measured {payload.size}")
    return memoryview(payload)


# Ops always encoded from parts (`_encode_small`), whatever their size.
_SMALL_OPS = frozenset((DeleteOp, TruncateOp, RowInsertOp))
# Insert batches of up to this many rows are encoded from parts (`_encode_small`), which
# copies them twice (serialized, then joined): for a few rows that costs less than a second
# pass through the IPC writer.
_SMALL_BATCH = 64
_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # the IPC stream's end: continuation, length 0
# Serialized schema messages of recent schemas, newest last (a lookup compares schemas, which
# Arrow does in C++: hashing one costs more).
_schema_messages: list[tuple[pa.Schema, bytes | None]] = []


def _schema_message(schema: pa.Schema) -> bytes | None:
    """The IPC stream's first message for `schema`; None when the stream would carry more
    before a batch (dictionary batches), so the batch goes through the writer."""
    for known, message in reversed(_schema_messages):
        if known.equals(schema, check_metadata=True):
            return message
    message = None
    if not any(pa.types.is_dictionary(f.type) for f in schema):
        message = schema.serialize().to_pybytes()
    if len(_schema_messages) >= 16:
        del _schema_messages[0]
    _schema_messages.append((schema, message))
    return message


def _encode_small(ops: Sequence[Op]) -> bytes:
    parts: list = [_COUNT.pack(len(ops))]
    for op in ops:
        if isinstance(op, RowInsertOp):
            body = _encode_row(op)
            parts.append(_OP_HEADER.pack(_ROW, op.table_id, sum(map(len, body))))
            parts += body
        elif isinstance(op, InsertOp):
            batch = op.batch
            head = _schema_message(batch.schema)
            if head is None:
                sink = pa.BufferOutputStream()
                _write_batch(sink, batch)
                body = sink.getvalue()
                parts += (_OP_HEADER.pack(_INSERT, op.table_id, body.size), body)
                continue
            message = batch.serialize()
            parts += (_OP_HEADER.pack(_INSERT, op.table_id, len(head) + message.size + 8),
                      head, message, _EOS)
        elif isinstance(op, DeleteOp):
            rowids = np.ascontiguousarray(op.rowids, dtype="<i8").reshape(-1)
            parts += (_OP_HEADER.pack(_DELETE, op.table_id, rowids.size * 8), rowids.tobytes())
        elif isinstance(op, TruncateOp):
            parts.append(_OP_HEADER.pack(_TRUNCATE, op.table_id, 0))
        else:
            raise TypeError(f"not a WAL operation: {op!r}")
    return b"".join(parts)


def _run_size(op: InsertRunOp) -> int:
    """The body length of an insert run: first row id, then the IPC stream."""
    head = _schema_message(op.batches[0].batch.schema)
    if head is None:
        raise ValueError("an insert run's schema must have no dictionary columns")
    return _FIRST_ROWID.size + len(head) + sum(p.message.size for p in op.batches) + len(_EOS)


def _run_parts(op: InsertRunOp, size: int) -> list:
    """An insert run's operation as buffers: header, first row id and schema message in
    one, then each batch's message as serialized ahead, then the stream's end."""
    if op.first_rowid < 0 or not op.batches:
        raise ValueError("an insert run needs batches and its first row id")
    head = _schema_message(op.batches[0].batch.schema)
    assert head is not None
    return [_OP_HEADER.pack(_INSERT_RUN, op.table_id, size) + _FIRST_ROWID.pack(op.first_rowid)
            + head, *(p.message for p in op.batches), _EOS]


def _encode_run(op: InsertRunOp) -> EncodedPayload:
    """A commit of one insert run: its buffers and their CRC, combined from the CRCs the
    batches' messages got when they were serialized, so no byte of the rows is read here."""
    size = _run_size(op)
    parts = _run_parts(op, size)
    first = _COUNT.pack(1) + parts[0]
    crc = zlib.crc32(first)
    for part in op.batches:
        crc = crc32_combine(crc, part.crc, part.message.size)
    crc = zlib.crc32(_EOS, crc)
    return EncodedPayload((first, *parts[1:]), _COUNT.size + _OP_HEADER.size + size, crc)


def encode_piece(table_id: int, part: EncodedBatch) -> EncodedPayload:
    """A piece record (kind 6): one batch of a COPY's rows, logged while the rest arrive so
    that the commit only names it. Its body is an insert's (an IPC stream of the batch), its
    CRC combined from the one the batch got when it was serialized."""
    head = _schema_message(part.batch.schema)
    if head is None:
        raise ValueError("an insert run's schema must have no dictionary columns")
    first = _COUNT.pack(1) + _OP_HEADER.pack(
        _RUN_PIECE, table_id, len(head) + part.message.size + len(_EOS)) + head
    crc = zlib.crc32(_EOS, crc32_combine(zlib.crc32(first), part.crc, part.message.size))
    return EncodedPayload((first, part.message, _EOS),
                          len(first) + part.message.size + len(_EOS), crc)


def encode_abort(table_id: int, pieces: Sequence[int]) -> bytes:
    """A record dropping the piece records of a COPY that did not commit (kind 8)."""
    body = b"".join(_LSN.pack(lsn) for lsn in pieces)
    return _COUNT.pack(1) + _OP_HEADER.pack(_RUN_ABORT, table_id, len(body)) + body


def _encode_logged_run(op: InsertRunOp) -> bytes:
    """The commit of an insert run whose pieces are logged (kind 7): first row id, then the
    piece records' LSNs."""
    if op.first_rowid < 0:
        raise ValueError("an insert run needs its first row id")
    body = _FIRST_ROWID.pack(op.first_rowid) + b"".join(
        _LSN.pack(part.lsn) for part in op.batches)
    return _COUNT.pack(1) + _OP_HEADER.pack(_LOGGED_RUN, op.table_id, len(body)) + body


def _lsns(view: memoryview, offset: int, length: int) -> tuple[int, ...]:
    if length % _LSN.size:
        raise DataCorrupted(f"WAL commit record: a list of LSNs of {length} bytes")
    return tuple(np.frombuffer(view, "<u8", count=length // _LSN.size, offset=offset).tolist())


class HeldPieces:
    """What replay (at open, or in a process following the log) holds of COPY pieces logged
    ahead of their commit: `resolve` takes a record's ops, keeps its pieces, and gives the
    ops to apply, a logged run turned into the insert its pieces make. The pieces of a COPY
    that never committed are dropped by its abort record, or stay until replay ends."""

    def __init__(self) -> None:
        self._pieces: dict[int, RunPieceOp] = {}

    def __len__(self) -> int:
        return len(self._pieces)

    def resolve(self, lsn: int, ops: list, wanted: bool = True) -> list:
        """The ops of the record at `lsn` to apply. A logged run whose pieces are not held
        (read before this replay's start) stays a `LoggedRunOp`: only a table that needs
        it (`Table.apply`) finds that out, as corruption. Not `wanted` (no table applies
        the record): a logged run's pieces are let go without joining them."""
        out = []
        for op in ops:
            if isinstance(op, RunPieceOp):
                self._pieces[lsn] = op
            elif isinstance(op, RunAbortOp) or (isinstance(op, LoggedRunOp) and not wanted):
                for piece in op.pieces:
                    self._pieces.pop(piece, None)
            elif isinstance(op, LoggedRunOp):
                if all(piece in self._pieces for piece in op.pieces):
                    batches = [self._pieces.pop(piece).batch for piece in op.pieces]
                    op = InsertOp(op.table_id, _run_batch(_one_batch(batches), op.first_rowid))
                out.append(op)
            else:
                out.append(op)
        return out


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
            elif kind == _ROW:
                ops.append(InsertOp(table_id, _decode_row(view, offset, length)))
            elif kind == _INSERT_RUN:
                (start,) = _FIRST_ROWID.unpack_from(view, offset)
                reader = ipc.open_stream(buffer.slice(offset + _FIRST_ROWID.size,
                                                      length - _FIRST_ROWID.size),
                                         options=_IPC_READ)
                batches = list(reader)
                if not batches:
                    raise DataCorrupted("WAL insert run holds no record batch")
                ops.append(InsertOp(table_id, _run_batch(_one_batch(batches), start)))
            elif kind == _RUN_PIECE:
                ops.append(RunPieceOp(table_id, _read_batch(buffer.slice(offset, length))))
            elif kind == _LOGGED_RUN:
                (start,) = _FIRST_ROWID.unpack_from(view, offset)
                ops.append(LoggedRunOp(table_id, start, _lsns(
                    view, offset + _FIRST_ROWID.size, length - _FIRST_ROWID.size)))
            elif kind == _RUN_ABORT:
                ops.append(RunAbortOp(table_id, _lsns(view, offset, length)))
            else:
                raise DataCorrupted(f"WAL commit record: unknown operation kind {kind}")
            offset += length
    except (struct.error, pa.ArrowException, IndexError, UnicodeDecodeError) as exc:
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
    try:
        files = wal_files(directory)
    except FileNotFoundError:
        return []
    checks: list[WalFileCheck] = []
    next_lsn: int | None = None
    for i, (first, path) in enumerate(files):
        is_last = i == len(files) - 1
        problem: str | None = None
        torn = False
        if next_lsn is not None and first != next_lsn:
            problem = f"starts at LSN {first} but the previous file ends at LSN {next_lsn - 1}"
        last = first - 1
        try:
            scan = scan_segment(first, path)
            last = scan.next_lsn - 1
            if scan.bad_offset is not None:
                torn = is_last and not scan.damaged and problem is None
                where = (f"{scan.bad_reason} at offset {scan.bad_offset} of {scan.size} bytes"
                         if scan.version is not None else scan.bad_reason)
                if scan.later_valid:
                    where += (f" (record LSN {scan.next_lsn}; {len(scan.later_valid)} valid "
                              f"record(s) follow it, up to LSN {scan.later_valid[-1].lsn})")
                problem = problem or where
        except DataCorrupted as exc:  # a bad file header, a record with an unexpected LSN
            problem = problem or exc.message.replace(f"WAL file {path}: ", "").replace(
                f"WAL file {path} ", "")
        except OSError as exc:
            problem = problem or f"unreadable: {exc.strerror}"
        checks.append(WalFileCheck(path, first, last, problem, torn))
        # Past a damaged frame the file's end is unknown: the next file's start is not a gap.
        next_lsn = last + 1 if problem is None else None
    return checks
