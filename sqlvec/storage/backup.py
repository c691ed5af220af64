"""Online backups: a consistent copy of a database directory taken while its writer runs.

A copy is one manifest version, the files it lists and the write-ahead log from its oldest
table checkpoint to an end LSN; recovery on the copy (an ordinary server start) replays that
log. The writer removes files as it goes (manifest versions past the newest ten, segment, index
and bitmap files no retained version lists, WAL files below every checkpoint, a dropped table's
or index's files), so a backup *pins* the version it copies, and the writer honours pins.

Files (in each database directory):

    backup/LOCK                  the writer holds it (flock, exclusive) while it commits a
                                 manifest and removes files; a backup holds it while it pins a
                                 version and while it copies the last of the log
    backup/pin-<pid>-<n>.json    one per backup in progress, flock-ed by the backup for as long
                                 as it runs (a backup that dies leaves an unlocked pin, which
                                 the writer deletes): {"manifest_version": int, "wal_from": int}

While a pin exists the writer keeps that manifest version and every file it lists (garbage
collection keeps the files of every retained version), keeps every WAL record after
`wal_from`, and leaves a dropped table's or index's files to garbage collection.

The copy is consistent: the manifest it keeps is one under which no catalog change (DDL, a
sequence block, a new table) happened up to the log's end, checked with `backup/LOCK` held, so
no manifest can be committed meanwhile; sealing, index builds and compaction in between do not
matter (the older version plus the log says the same). Every record in the copied log is whole
and checksummed; the end LSN is the last of them, so every commit acknowledged before the final
copy of the log began is in the copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlvec.errors import SqlVecError
from sqlvec.storage.fsutil import atomic_write, fsync_dir
from sqlvec.storage.manifest import Manifest, ManifestStore, manifest_name
from sqlvec.storage.segment import segment_files
from sqlvec.storage.wal import scan_segment, wal_files

BACKUP_DIR = "backup"
# In a backup's top directory: the label, written last (the copy is complete), and the marker
# present until then (a server refuses to start on an incomplete copy).
BACKUP_LABEL = "backup_label.json"
BACKUP_IN_PROGRESS = "backup_in_progress"
_LOCK = "LOCK"
_PIN_PREFIX = "pin-"
_ATTEMPTS = 4  # catalog changes raced before the last step copies everything under the lock
_CHUNK = 1 << 20
# Sequence values given out while a block's schema changes are open, over the latest manifest
# (`Store.update_catalog_lasting`; the store names it too).
LASTING_FILE = "catalog_lasting.json"


@dataclass(frozen=True)
class Pins:
    """The pins in force while the writer holds `backup/LOCK`."""

    versions: frozenset[int] = frozenset()
    wal_from: int | None = None  # the lowest LSN after which some backup needs every record

    @property
    def active(self) -> bool:
        return bool(self.versions)


class BackupPins:
    """The writer's side: which manifest versions and WAL records backups have pinned.

    `guard()` holds `backup/LOCK` exclusively (reentrant within the process) and yields the live
    pins; everything that commits a manifest or removes files runs inside it."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, BACKUP_DIR)
        os.makedirs(self.path, exist_ok=True)
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd = -1
        self._pins = Pins()

    @contextlib.contextmanager
    def guard(self) -> Iterator[Pins]:
        """Hold the lock and yield the pins of the backups that are running."""
        with self._mutex:
            if self._depth == 0:
                self._fd = os.open(os.path.join(self.path, _LOCK), os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX)
                    self._pins = read_pins(self.path)
                except BaseException:
                    os.close(self._fd)
                    raise
            self._depth += 1
            try:
                yield self._pins
            finally:
                self._depth -= 1
                if self._depth == 0:
                    os.close(self._fd)  # releases the flock
                    self._fd = -1


def read_pins(path: str) -> Pins:
    """The live pins in `path` (caller holds the lock); a pin no process holds any more (its
    backup died) is removed."""
    versions: set[int] = set()
    wal_from: int | None = None
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return Pins()
    for name in names:
        if not (name.startswith(_PIN_PREFIX) and name.endswith(".json")):
            continue
        full = os.path.join(path, name)
        try:
            fd = os.open(full, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held by a running backup: in force
                pin = json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
                if "manifest_version" in pin:
                    versions.add(int(pin["manifest_version"]))
                    lsn = int(pin["wal_from"])
                    wal_from = lsn if wal_from is None else min(wal_from, lsn)
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(full)  # its backup is gone
        finally:
            os.close(fd)
    return Pins(frozenset(versions), wal_from)


def log_start(body: dict) -> int:
    """The LSN after which recovery from a manifest `body` (or a copy of it) needs every WAL
    record: its oldest table checkpoint, or earlier where a COPY's pieces were logged ahead
    of its commit (`log_from`)."""
    lsns = [int(t["checkpoint_lsn"]) for t in body.get("tables", [])]
    if "log_from" in body:
        lsns.append(int(body["log_from"]))
    return min(lsns) if lsns else int(body.get("applied_lsn", 0))


def _catalog_of(body: dict) -> object:
    """What a manifest says about the database's logical shape (everything but where rows are
    stored): two versions that agree on it describe the same database given the same log."""
    return (body.get("catalog"), body.get("next_table_id"), body.get("next_oid"),
            [t["def"] for t in body.get("tables", [])])


class PinHolder:
    """The backup's side of the pin protocol over one database directory."""

    def __init__(self, directory: str, *, writer: bool) -> None:
        self.path = os.path.join(directory, BACKUP_DIR)
        self.writer = writer  # False: no server runs, nothing can remove files
        self._pin_fd = -1
        self._pin_path = ""
        self._lock_fd = -1
        self._count = 0

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold `backup/LOCK`: no manifest is committed and no file removed meanwhile."""
        if not self.writer:
            yield
            return
        fd = os.open(os.path.join(self.path, _LOCK), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_fd = fd
            yield
        finally:
            self._lock_fd = -1
            os.close(fd)

    def pin(self, manifest: Manifest) -> None:
        """Pin `manifest` (caller holds the lock), then drop the previous pin."""
        if not self.writer:
            return
        self._count += 1
        path = os.path.join(self.path, f"{_PIN_PREFIX}{os.getpid()}-{threading.get_ident()}-"
                                       f"{self._count}.json")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps({"manifest_version": manifest.version,
                                 "wal_from": log_start(manifest.body)}).encode())
        self.release()
        self._pin_fd, self._pin_path = fd, path

    def release(self) -> None:
        """Remove the current pin: the writer may collect what only it kept."""
        if self._pin_fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._pin_path)
            os.close(self._pin_fd)
            self._pin_fd = -1


@dataclass
class DatabaseBackup:
    """What one database's copy holds (and the backup's label records)."""

    manifest_version: int = 0
    wal_from: int = 0
    end_lsn: int = 0
    files: int = 0
    bytes: int = 0
    attempts: int = 1
    copied: set[str] = field(default_factory=set, repr=False)

    def label(self) -> dict:
        """The JSON the backup label keeps for this database."""
        return {"manifest_version": self.manifest_version, "wal_from": self.wal_from,
                "end_lsn": self.end_lsn, "files": self.files, "bytes": self.bytes}


def backup_database(source: str, dest: str, *, writer: bool,
                    note: Callable[[str], None] = lambda _m: None) -> DatabaseBackup:
    """Copy database directory `source` into `dest` (which must not exist) consistently, while
    its writer (`writer=True`: a server has it open) keeps committing. Checksums of the files
    are compared with the manifest as they are copied; the caller checks the whole copy again
    (`check.check_database`)."""
    if writer:  # a database the server has not opened yet has no lock file so far
        os.makedirs(os.path.join(source, BACKUP_DIR), exist_ok=True)
        os.close(os.open(os.path.join(source, BACKUP_DIR, _LOCK), os.O_RDWR | os.O_CREAT, 0o644))
    manifests = ManifestStore(source, read_only=True)
    result = DatabaseBackup()
    for sub in ("manifest", "wal", "tables"):
        os.makedirs(os.path.join(dest, sub))
    holder = PinHolder(source, writer=writer)
    try:
        with holder.exclusive():
            manifest = _latest(manifests, source)
            holder.pin(manifest)
        _copy_tables(source, dest, manifest.body, result)
        for attempt in range(1, _ATTEMPTS + 2):
            result.attempts = attempt
            last = attempt > _ATTEMPTS
            if not last:
                _copy_wal(source, dest, log_start(manifest.body), result, final=False)
            with holder.exclusive():
                latest = _latest(manifests, source)
                changed = latest.version != manifest.version and (
                    last or _catalog_of(latest.body) != _catalog_of(manifest.body))
                if changed:
                    holder.pin(latest)
                    manifest = latest
                if not changed or last:
                    if changed:  # still racing: copy the rest with the lock held (the
                        # writer's manifest commits wait meanwhile; its commits do not)
                        _copy_tables(source, dest, manifest.body, result)
                    result.end_lsn = _copy_wal(source, dest, log_start(manifest.body), result,
                                               final=True)
                    _copy_lasting(source, dest, manifest, result)
                    break
            note(f"the catalog changed during the copy; continuing from manifest version "
                 f"{manifest.version}")
            _copy_tables(source, dest, manifest.body, result)
        result.manifest_version = manifest.version
        result.wal_from = log_start(manifest.body)
        _finish(dest, manifest, manifests, result)  # while the version is still pinned
    finally:
        holder.release()
    return result


def _latest(manifests: ManifestStore, source: str) -> Manifest:
    manifest = manifests.load_latest()
    if manifest is None:
        raise SqlVecError(f'"{source}" holds no manifest', sqlstate="58P01")
    return manifest


def _copy_tables(source: str, dest: str, body: dict, result: DatabaseBackup) -> None:
    """Copy every file `body` lists that is not copied yet, checking each against the CRC32
    (and size) the manifest records."""
    for tmeta in body.get("tables", []):
        rel_dir = os.path.join("tables", str(tmeta["def"]["id"]))
        os.makedirs(os.path.join(dest, rel_dir), exist_ok=True)
        for smeta in tmeta["segments"]:
            wanted = [(f["file"], int(f["crc32"]), int(f["bytes"])) for f in segment_files(smeta)]
            wanted += [(m["file"], int(m["crc32"]), None)
                       for m in (smeta.get("indexes") or {}).values()]
            if smeta.get("deletes"):
                wanted.append((smeta["deletes"]["file"], None, None))  # self-checked on read
            for name, crc, size in wanted:
                rel = os.path.join(rel_dir, name)
                if rel in result.copied:
                    continue
                got_crc, got_size = _copy_file(os.path.join(source, rel), os.path.join(dest, rel))
                if (crc is not None and got_crc != crc) or (size is not None and got_size != size):
                    raise SqlVecError(
                        f'file "{os.path.join(source, rel)}" does not match its manifest '
                        f"(CRC32 {got_crc:#010x}, {got_size} bytes)", sqlstate="XX001",
                        hint="Run `sqlvec check` on the data directory.")
                result.copied.add(rel)


def _copy_file(src: str, dst: str, limit: int | None = None) -> tuple[int, int]:
    """Copy (at most `limit` bytes of) a file, fsynced; returns its CRC32 and size."""
    crc = size = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while True:
            want = _CHUNK if limit is None else min(_CHUNK, limit - size)
            block = fin.read(want) if want > 0 else b""
            if not block:
                break
            fout.write(block)
            crc = zlib.crc32(block, crc)
            size += len(block)
        fout.flush()
        os.fsync(fout.fileno())
    return crc, size


def _copy_wal(source: str, dest: str, wal_from: int, result: DatabaseBackup, *,
              final: bool) -> int:
    """Copy the log's files holding records after `wal_from` (files finished earlier are not
    copied again). With `final`, cut the last file after its last whole record and return
    that record's LSN: the end of the copy."""
    src_dir, dst_dir = os.path.join(source, "wal"), os.path.join(dest, "wal")
    files = wal_files(src_dir)
    holding = [i for i, (first, _p) in enumerate(files) if first <= wal_from + 1]
    if not holding:
        raise SqlVecError(f'the write-ahead log in "{src_dir}" no longer holds LSN '
                          f"{wal_from + 1}", sqlstate="58P01")
    needed = files[holding[-1]:]
    for i, (_first, path) in enumerate(needed):
        rel = os.path.join("wal", path.name)
        if rel in result.copied:
            continue
        _copy_file(str(path), os.path.join(dst_dir, path.name))
        if i < len(needed) - 1:
            result.copied.add(rel)  # finished: a later file exists
    if not final:
        return 0
    first, path = needed[-1]
    last = os.path.join(dst_dir, path.name)
    scan = scan_segment(first, type(path)(last))
    if scan.version is None:
        raise SqlVecError(f'WAL file "{path}" has no complete header yet', sqlstate="55000",
                          hint="Run the backup again.")
    with open(last, "r+b") as f:
        f.truncate(scan.end)
        os.fsync(f.fileno())
    result.copied.add(os.path.join("wal", path.name))
    return scan.frames[-1].lsn if scan.frames else first - 1


def _copy_lasting(source: str, dest: str, manifest: Manifest, result: DatabaseBackup) -> None:
    """Copy the sequence values given out while a block's schema changes are open
    (LASTING_FILE, `Store.update_catalog_lasting`), if they complete the manifest version
    kept. Read after the last of the log, with `backup/LOCK` held: every value a row in the
    copied log holds was written there before, and no manifest replaces the version meanwhile.
    (The writer replaces the file whole: it is read old or new, never a mix.)"""
    try:
        with open(os.path.join(source, LASTING_FILE), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return
    if json.loads(data).get("manifest_version") != manifest.version:
        return  # an earlier version's: the kept manifest holds its values already
    atomic_write(os.path.join(dest, LASTING_FILE), data)
    result.copied.add(LASTING_FILE)


def _finish(dest: str, manifest: Manifest, manifests: ManifestStore,
            result: DatabaseBackup) -> None:
    """Write the manifest, drop files of versions given up on, count and fsync the copy."""
    shutil.copyfile(manifests.file(manifest.version),
                    os.path.join(dest, "manifest", manifest_name(manifest.version)))
    keep = {os.path.join("manifest", manifest_name(manifest.version))}
    keep.update({LASTING_FILE} & result.copied)
    for tmeta in manifest.body.get("tables", []):
        rel_dir = os.path.join("tables", str(tmeta["def"]["id"]))
        for smeta in tmeta["segments"]:
            keep.update(os.path.join(rel_dir, f["file"]) for f in segment_files(smeta))
            keep.update(os.path.join(rel_dir, m["file"])
                        for m in (smeta.get("indexes") or {}).values())
            if smeta.get("deletes"):
                keep.add(os.path.join(rel_dir, smeta["deletes"]["file"]))
    wal_from = log_start(manifest.body)
    wal = [(first, p.name) for first, p in wal_files(os.path.join(dest, "wal"))]
    for i, (_first, name) in enumerate(wal):
        later_first = wal[i + 1][0] if i + 1 < len(wal) else None
        if later_first is None or later_first - 1 > wal_from:
            keep.add(os.path.join("wal", name))
    for root, _dirs, names in os.walk(dest):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), dest)
            full = os.path.join(dest, rel)
            if rel not in keep:
                os.unlink(full)
                continue
            result.files += 1
            result.bytes += os.path.getsize(full)
    for root, dirs, _names in os.walk(dest, topdown=False):
        for d in dirs:
            full = os.path.join(root, d)
            if os.path.relpath(full, dest).startswith("tables" + os.sep) and not os.listdir(full):
                os.rmdir(full)
            else:
                fsync_dir(full)
    fsync_dir(dest)
