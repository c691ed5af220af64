"""Maintenance of a data directory: what `sqlvec check`, `sqlvec wal` and `sqlvec backup` do.

These functions read (and, on explicit request, repair) a database's files without opening it:
opening would replay the log, and a damaged log stops recovery. Reading is safe beside a running
server; they refuse to change anything while a process holds the data directory's LOCK.
`backup_data_directory` copies a data directory consistently, beside a running server or not.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlvec.errors import InvalidCatalogName, SqlVecError
from sqlvec.storage.backup import (
    BACKUP_IN_PROGRESS,
    BACKUP_LABEL,
    DatabaseBackup,
    backup_database,
)
from sqlvec.storage.check import CheckReport, check_database
from sqlvec.storage.fsutil import atomic_write, fsync_dir
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
    "BACKUP_IN_PROGRESS",
    "BACKUP_LABEL",
    "BackupReport",
    "CheckReport",
    "WalFileReport",
    "backup_data_directory",
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


def server_holds_lock(fd: int) -> bool:
    """Whether a server holds the data directory's LOCK (open as `fd`): a shared lock, which
    other checks and backups may hold too, cannot be taken beside it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
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
            report.server_running = server_holds_lock(fd)
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




@dataclass
class BackupReport:
    """What `sqlvec backup` copied, per database (also the content of the backup label)."""

    dest: str
    server_running: bool
    started: float
    finished: float = 0.0
    databases: dict[str, DatabaseBackup] = field(default_factory=dict)

    def label(self) -> dict:
        """The backup label's JSON: when, from where, and per database the manifest version,
        the WAL range and the end LSN the copy recovers to."""
        stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
        return {"format": 1, "started": stamp(self.started), "finished": stamp(self.finished),
                "server_running": self.server_running,
                "databases": {name: b.label() for name, b in self.databases.items()}}


def backup_data_directory(path: str, dest: str, *,
                          note: Callable[[str], None] = lambda _m: None) -> BackupReport:
    """Copy data directory `path` to `dest` (new or empty) consistently, whether or not a server
    is running on it, then verify the copy's every checksum and write its label.

    With no server running, the data directory's LOCK is held shared throughout, so none can
    start midway. With one running, each database is copied under a pin its writer honours
    (storage/backup.py). Databases are independent stores with their own logs: each is
    consistent on its own, at its own end LSN."""
    if not os.path.isdir(path):
        raise SqlVecError(f'data directory "{path}" does not exist', sqlstate="58P01")
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise SqlVecError(f'backup destination "{dest}" exists and is not empty',
                          sqlstate="58P02")
    os.makedirs(dest, exist_ok=True)
    atomic_write(os.path.join(dest, BACKUP_IN_PROGRESS), b"")
    report = BackupReport(dest, server_running=False, started=time.time())
    with contextlib.ExitStack() as stack:
        fd = os.open(os.path.join(path, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
        stack.callback(os.close, fd)
        report.server_running = server_holds_lock(fd)
        for name in sorted(os.listdir(path)):
            source = os.path.join(path, name)
            if os.path.isdir(os.path.join(source, "manifest")):
                copy = backup_database(source, os.path.join(dest, name),
                                       writer=report.server_running,
                                       note=lambda m, n=name: note(f"{n}: {m}"))
                report.databases[name] = copy
                note(f"{name}: manifest version {copy.manifest_version}, WAL after LSN "
                     f"{copy.wal_from} up to LSN {copy.end_lsn}, {copy.files} files, "
                     f"{copy.bytes:,} bytes")
            elif os.path.isfile(source) and name != "LOCK" and not name.startswith("."):
                shutil.copyfile(source, os.path.join(dest, name))  # e.g. a configuration file
    check = CheckReport()
    for name in report.databases:
        check_database(os.path.join(dest, name), dest, check)
    if check.damaged:
        problems = "; ".join(f"{f.path}: {f.message}" for f in check.damaged)
        raise SqlVecError(f"the copy in {dest} failed its check: {problems}", sqlstate="XX001")
    report.finished = time.time()
    atomic_write(os.path.join(dest, BACKUP_LABEL),
                 json.dumps(report.label(), indent=1).encode() + b"\n")
    os.unlink(os.path.join(dest, BACKUP_IN_PROGRESS))
    fsync_dir(dest)
    return report
