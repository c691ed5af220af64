"""Durable file writes and directory locks shared by the storage modules.

A file that recovery trusts must never be seen half-written: it is written to a temp file in the
same directory, fsynced, renamed over its final name (atomic on POSIX), and the directory is
fsynced so the rename itself survives a power loss. A crash leaves at worst a temp file behind;
temp files are named `.<final name>.<random>.tmp` so any module can recognise and remove them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import zlib
from pathlib import Path

from sqlvec.errors import DiskFull, IoError, SqlVecError

TEMP_SUFFIX = ".tmp"

StrPath = str | os.PathLike[str]


def storage_error(exc: OSError, action: str, path: StrPath | None = None) -> SqlVecError:
    """The client-facing error for a failed file operation: 53100 for a full disk (or quota),
    58030 for any other I/O error, worded as PostgreSQL's `could not write to file "…": …`."""
    reason = exc.strerror or str(exc)
    target = path if path is not None else exc.filename
    where = f' file "{os.fspath(target)}"' if target is not None else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"could not {action}{where}: {reason}", hint="Check free disk space.")
    return IoError(f"could not {action}{where}: {reason}")


def is_disk_full(exc: OSError) -> bool:
    """Whether a failed write ran out of space or quota: a condition that passes once space is
    freed, so the WAL can write again afterwards, unlike after other I/O errors."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def fsync_dir(path: StrPath) -> None:
    """Make created, renamed or deleted entries of directory `path` durable."""
    if os.name == "nt":  # directories cannot be opened for fsync there; NTFS journals metadata
        return
    fd = os.open(os.fspath(path), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: StrPath, data: bytes) -> None:
    """Replace `path` with `data` so that readers and crash recovery see old or new, never a mix."""
    path = Path(path)
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def is_temp_name(name: str) -> bool:
    """True for the names `atomic_write` gives its temp files."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def remove_temp_files(directory: StrPath) -> list[Path]:
    """Delete temp files a crash left in `directory`; returns what was removed.

    Only safe while no `atomic_write` into the same directory is in flight (i.e. at open time).
    """
    directory = Path(directory)
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if is_temp_name(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    if removed:
        fsync_dir(directory)
    return removed


def crc32_file(path: StrPath, chunk: int = 1 << 20) -> int:
    """CRC32 of a whole file, read in `chunk`-byte pieces so large segments never load at once."""
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc


def lock_directory(path: StrPath) -> int | None:
    """Take the exclusive lock on `<path>/LOCK` for as long as the returned descriptor stays
    open; None when someone already holds it.

    `flock` locks belong to an open file description, so a second open of the same directory
    conflicts whether it comes from another process or from this one (a second handle on the
    same files, under a different name, would be two writers on one store). The kernel drops
    the lock when its holder dies, so a crash never leaves a stale lock behind."""
    fd = os.open(os.path.join(os.fspath(path), "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd
