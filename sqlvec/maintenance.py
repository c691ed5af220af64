"""Offline maintenance of a data directory: what `sqlvec check` and `sqlvec wal` do.

These functions read (and, on explicit request, repair) a database's files without opening it:
opening would replay the log, and a damaged log stops recovery. Reading is safe beside a running
server; they refuse to change anything while a process holds the data directory's LOCK.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from sqlvec.errors import InvalidCatalogName, SqlVecError
from sqlvec.storage.check import CheckReport, check_database
from sqlvec.storage.wal import (
    SegmentScan,
    WalFrame,
    decode_commit,
    read_payload,
    scan_segment,
    truncate_log,
    wal_files,
)

__all__ = [
    "CheckReport",
    "WalFileReport",
    "check_data_directory",
    "data_directory_in_use",
    "inspect_wal",
    "truncate_wal",
]


def data_directory_in_use(path: str) -> bool:
    """True while a process (a running server) holds the data directory's LOCK."""
    lock = os.path.join(path, "LOCK")
    if not os.path.exists(lock):
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock this call took
    return False


def check_data_directory(path: str) -> CheckReport:
    """Verify every file of every database in data directory `path` against its checksum
    (`sqlvec check`), reading only.

    While it runs it holds `LOCK` shared, so no server can start on the directory midway (and
    repair or rewrite what is being checked). A server already running is no reason to stop:
    reading is safe, the report says so (`server_running`), and a file that server replaces
    during the check may show up as a problem that a re-run no longer reports."""
    if not os.path.isdir(path):
        raise SqlVecError(f'data directory "{path}" does not exist', sqlstate="58P01")
    report = CheckReport()
    try:
        fd: int | None = os.open(os.path.join(path, "LOCK"), os.O_RDONLY)
    except OSError:  # no server has ever opened it (or LOCK is unreadable: check regardless)
        fd = None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                report.server_running = True
        for name in sorted(os.listdir(path)):
            directory = os.path.join(path, name)
            if os.path.isdir(os.path.join(directory, "manifest")):
                check_database(directory, path, report)
    finally:
        if fd is not None:
            os.close(fd)
    return report


def _wal_directory(path: str, database: str) -> Path:
    if not database or "/" in database or "\0" in database or database in (".", ".."):
        raise InvalidCatalogName(f'invalid database name "{database}"')
    directory = Path(path) / database
    if not (directory / "manifest").is_dir():
        raise InvalidCatalogName(f'database "{database}" does not exist in "{path}"')
    return directory / "wal"


@dataclass
class WalFileReport:
    """One WAL file as `sqlvec wal inspect` shows it."""

    scan: SegmentScan
    problem: str | None  # None, "torn" (recovery truncates it) or "damaged" (recovery stops)
    records: list[tuple[WalFrame, str]]  # (frame, summary of its operations) when asked for


def inspect_wal(path: str, database: str, *, records: bool = False) -> list[WalFileReport]:
    """Check every WAL file of `database` read-only, oldest first."""
    directory = _wal_directory(path, database)
    files = wal_files(directory) if directory.is_dir() else []
    reports = []
    expected: int | None = None
    for i, (first, file) in enumerate(files):
        scan = scan_segment(first, file, expected_first=expected)
        expected = scan.next_lsn
        problem = None
        if scan.bad_offset is not None:
            last = i == len(files) - 1
            problem = "damaged" if (scan.damaged or not last) else "torn"
        listed = []
        if records:
            for frame in scan.frames:
                listed.append((frame, _summary(read_payload(file, frame))))
        reports.append(WalFileReport(scan, problem, listed))
    return reports


def _summary(payload: bytes) -> str:
    try:
        ops = decode_commit(payload)
    except SqlVecError as exc:
        return f"undecodable: {exc.message}"
    parts = []
    for op in ops:
        kind = type(op).__name__.removesuffix("Op").lower()
        if hasattr(op, "batch"):
            parts.append(f"{kind} {op.batch.num_rows} row(s) into table {op.table_id}")
        elif hasattr(op, "rowids"):
            parts.append(f"{kind} {len(op.rowids)} row(s) from table {op.table_id}")
        else:
            parts.append(f"{kind} table {op.table_id}")
    return "; ".join(parts) or "empty"


def truncate_wal(path: str, database: str, keep_through: int) -> list[Path]:
    """Cut `database`'s log after LSN `keep_through` (the cut part is saved beside it)."""
    if data_directory_in_use(path):
        raise SqlVecError(f'data directory "{path}" is in use by a running server; stop it '
                          "first", sqlstate="55006")
    if keep_through < 0:
        raise SqlVecError("the LSN to keep through must not be negative", sqlstate="22023")
    return truncate_log(_wal_directory(path, database), keep_through)
