"""A database directory followed read-only from another process: the writer owns it, this reads.

When several processes serve one data directory, one of them (the writer, a `Store`) holds the
LOCK, appends to the WAL and commits manifests. Every other process opens the directory as a
`FollowerStore`: it takes no lock and never creates, writes, truncates or removes a file. It
loads what the writer's recovery loads, by the same code (`StoreBase`): the newest manifest
(catalog, tables, sealed segments, index files, delete bitmaps), then the WAL records after each
table's checkpoint into growing segments.

`catch_up` brings it forward:

* WAL records appended since are applied, whole and checksummed ones only (`wal.LogReader`): a
  record still being written is "not yet", left for the next call. Records are applied up to a
  target LSN, normally the writer's durable LSN (`Store.durable_lsn`): a record written but not
  yet fsynced could still be rolled back by the writer, so it is never shown.
* A new manifest version (seal, compaction, DDL, index build, checkpoint) is loaded: tables
  whose definition and segment files are unchanged stay as they are (index files built since
  are attached to their segments), unless the WAL records they would need next were removed
  by a checkpoint or a transaction block with schema changes committed rows to them (no WAL
  record: the manifest's per-table `unlogged_commits` count says so); every other table is
  built afresh beside the published one, sharing the segments, indexes and delete bitmaps it
  already holds from the same files, and replayed from its new checkpoint. The manifest records the LSN it reflects (`applied_lsn`),
  and the new tables are replayed at least that far before they replace the old ones in one
  swap of the table map: a reader's snapshot never mixes a manifest's delete bitmaps with an
  older growing segment, and readers holding old snapshots keep working (files are read into
  memory at load, but for the segments' vectors files, which are memory-mapped: a mapping
  outlives the file's removal, and no file is ever rewritten or truncated in place).
* The writer deletes files concurrently: WAL files below every checkpoint after a manifest
  commit, segment and bitmap files once no retained manifest lists them, index files at DROP
  INDEX, a table's folder at DROP TABLE. A file gone while being loaded, or WAL records gone
  while being read (`wal.LogGone`), means a newer manifest supersedes the one being loaded:
  the load starts over from the newest one. Nothing half-loaded is published.

Each table carries its own "applied through" LSN, so a load that starts over never applies a
record twice; `applied_lsn` is the least of them: every commit up to it is visible in every
table. Writes raise 25006, as on a PostgreSQL hot standby.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Callable, Mapping

from sqlvec.errors import DataCorrupted, ReadOnlySqlTransaction, SqlVecError
from sqlvec.storage.manifest import Manifest, ManifestStore
from sqlvec.storage.schema import TableDef
from sqlvec.storage.store import (
    Store,
    StoreBase,
    StoreOptions,
    UnavailableTable,
    apply_logged,
)
from sqlvec.storage.table import Table
from sqlvec.storage.wal import HeldPieces, LogGone, LogReader, decode_commit

log = logging.getLogger("sqlvec.storage")

# A load superseded by the writer's progress starts over; this many times in a row means the
# directory does not hold what its newest manifest promises.
MAX_ATTEMPTS = 50


class _Superseded(Exception):
    """A file the manifest being loaded lists is gone and a newer manifest exists."""


class FollowerStore(StoreBase):
    """A read-only, log-following view of a database directory another process writes.

    Reads (`table`, `find_table`, `tables`, `catalog`, snapshots, searches) work as on `Store`;
    every write method of `Store` raises 25006. Thread-safe: `catch_up` calls are serialized and
    readers never wait for them."""

    def __init__(self, directory: str, options: StoreOptions,
                 durable_lsn: Callable[[], int] | None = None) -> None:
        super().__init__(directory, options)
        self._manifests = ManifestStore(directory, keep=options.manifest_keep, read_only=True)
        self._log = LogReader(os.path.join(directory, "wal"))
        self._durable = durable_lsn
        self._lock = threading.Lock()
        self._metas: dict[int, dict] = {}  # the manifest entry each table was loaded from
        self._through: dict[int, int] = {}  # per table: every record up to this is applied
        self._held = HeldPieces()  # pieces of COPYs logged ahead, until their commit
        self._read_lsn = 0  # the last record read
        self._loading = 0  # the manifest version being loaded
        self._closed = False

    @classmethod
    def open(cls, directory: str, options: StoreOptions | None = None, *,
             durable_lsn: Callable[[], int] | None = None,
             seed: Mapping[int, Table] | None = None) -> FollowerStore:
        """Load a database directory that a writer has created, without locking it.

        `durable_lsn`, when given, tells `catch_up()` without a target how far the writer's
        log is durable (in multi-process serving: read from memory the writer publishes to);
        without it, every whole record in the log counts. `seed`: tables already loaded from
        this directory (the writer's, inherited by fork): the first load shares their
        segments, indexes and delete bitmaps where the files are the same, as a reload does."""
        follower = cls(directory, options or StoreOptions(), durable_lsn)
        if seed:
            follower.tables = {tid: t for tid, t in seed.items()
                               if not isinstance(t, UnavailableTable)}
        if not follower._manifests.versions():
            raise SqlVecError(f'database directory "{directory}" has no manifest: it has not '
                              "been created by a writer", sqlstate="58P01")
        follower.catch_up()
        return follower

    def close(self) -> None:
        """Stop following: release the log files; later catch_up calls do nothing."""
        with self._lock:
            self._closed = True
            self._log.close()

    def wait_idle(self, timeout: float = 300.0) -> None:
        """Nothing runs in the background of a follower."""

    # Following ----------------------------------------------------------------------------------

    def catch_up(self, target_lsn: int | None = None, *,
                 manifest_version: int | None = None) -> int:
        """Apply what the writer committed since the last call; returns `applied_lsn`.

        Records after `applied_lsn` up to `target_lsn` are applied (None: up to the writer's
        durable LSN when the follower was given a way to read it, else every whole record),
        after loading the newest manifest if there is one. Returns early, without waiting, when
        the log does not yet hold every record up to the target: the caller compares the result.
        `manifest_version` (the writer's `Store.manifest_version`, when the caller knows it)
        spares the look at the manifest directory when it is the one loaded already."""
        with self._lock:
            return self._catch_up(target_lsn, manifest_version)

    def follow_manifest(self, manifest_version: int) -> bool:
        """Load the newest manifest if the one loaded is older than `manifest_version`, with
        the log records it reflects but no later ones: what a worker process does in the
        background as soon as the writer publishes a new version (a seal, an index build,
        DDL), so that index files and segments are loaded before a read needs them, while the
        log's tail is left to the reads, which apply it as they need it. Whether the version
        loaded is now at least `manifest_version`."""
        if manifest_version <= self.manifest_version:
            return True
        with self._lock:
            self._catch_up(self.applied_lsn, None)
        return self.manifest_version >= manifest_version

    def _catch_up(self, target_lsn: int | None, manifest_version: int | None) -> int:
        if self._closed:
            raise SqlVecError("the follower store is closed", sqlstate="57P01")
        if target_lsn is None and self._durable is not None:
            target_lsn = self._durable()
        for attempt in range(MAX_ATTEMPTS):
            try:
                if manifest_version is None or manifest_version != self.manifest_version:
                    versions = self._manifests.versions()
                    if versions and versions[-1] > self.manifest_version:
                        self._reload(self._manifests.load(versions[-1]))
                self._advance(self.tables, self._through, target_lsn)
                return self.applied_lsn
            except (_Superseded, LogGone) as exc:
                manifest_version = None
                if attempt == MAX_ATTEMPTS - 1:
                    raise DataCorrupted(
                        f'database directory "{self.directory}" does not hold what its '
                        f"newest manifest lists: {exc}") from exc
            except DataCorrupted as exc:
                # A manifest version pruned between listing and reading it: read the next.
                if not self._newer_manifest(self.manifest_version) or \
                        attempt == MAX_ATTEMPTS - 1:
                    raise
                log.debug("manifest changed while loading (%s); loading the newest", exc)
        raise AssertionError("unreachable")

    def _advance(self, tables: dict[int, Table], through: dict[int, int],
                 upto: int | None, read_from: int | None = None) -> int:
        """Apply the log's records after each table's `through` LSN (up to `upto`) to it;
        returns the last LSN read. `through` is updated even when reading stops with LogGone.
        `read_from`: read from after this LSN all the same (a manifest's `log_from`: pieces
        of a COPY that a later commit names)."""
        # No table needs a record at or before the least of their `through`s: with no table
        # at all, none up to `upto` (a DROP of the only table after its COPY: its rows are
        # not read back, 0.6-0.8 s of CPU per worker for 100k rows of 128-d vectors). The
        # reader passes such records reading their headers alone (`LogReader._seek`).
        start = min(through.values(), default=max(self._read_lsn, upto or 0))
        if not through:  # skip what checkpoints removed too
            start = max(start, self._log.oldest_lsn() - 1)
        if read_from is not None:  # pieces of a COPY in flight, which a later commit names
            start = min(start, read_from)
        high = max(through.values(), default=start)
        last = start
        try:
            for lsn, payload in self._log.records(start, upto):
                targets = tables if lsn > high else \
                    {tid: t for tid, t in tables.items() if through[tid] < lsn}
                ops = self._held.resolve(lsn, decode_commit(payload), bool(targets))
                if targets and ops:
                    apply_logged(lsn, ops, targets)
                last = lsn
        finally:
            for tid in through:
                through[tid] = max(through[tid], last)
            if tables is self.tables:
                self._publish_lsn(last)
        return last

    def _publish_lsn(self, last: int) -> None:
        self._read_lsn = max(self._read_lsn, last)
        self.applied_lsn = min(self._through.values(), default=self._read_lsn)

    def _reload(self, manifest: Manifest) -> None:
        """Load a new manifest version and swap its tables in (see the module's docstring)."""
        body = manifest.body
        self._loading = manifest.version
        reflected = int(body.get("applied_lsn",
                                 max((int(t["checkpoint_lsn"]) for t in body["tables"]),
                                     default=0)))
        tables: dict[int, Table] = {}
        through: dict[int, int] = {}
        fresh: set[int] = set()
        metas: dict[int, dict] = {}
        # A table kept needs the log from where it stands; one whose records a checkpoint has
        # removed since is loaded afresh (its checkpoint is past them).
        oldest = self._log.oldest_lsn()
        for tmeta in body["tables"]:
            tid = int(tmeta["def"]["id"])
            metas[tid] = tmeta
            old = self.tables.get(tid)
            if (old is not None and not isinstance(old, UnavailableTable)
                    and _same_files(self._metas.get(tid), tmeta)
                    and self._through[tid] + 1 >= oldest):
                segments = {os.path.basename(s.path or ""): s for s in old.sealed}
                for smeta in tmeta["segments"]:
                    seg = segments.get(smeta["file"])
                    if seg is not None:
                        self._load_indexes(old, seg, smeta.get("indexes") or {})
                tables[tid], through[tid] = old, self._through[tid]
                continue
            previous = old if old is not None and not isinstance(old, UnavailableTable) else None
            table = self._open_table(tmeta, previous)
            tables[tid], through[tid] = table, table.checkpoint_lsn
            fresh.add(tid)
        end = max(self.applied_lsn, reflected)
        try:
            last = self._advance(tables, through, end, body.get("log_from"))
        finally:  # tables already published keep what they were given, even when starting over
            for tid in set(through) - fresh:
                self._through[tid] = through[tid]
        if last < end:
            raise _Superseded(f"the log ends at LSN {last}, before LSN {end} that manifest "
                              f"version {manifest.version} reflects")
        for tid in fresh:  # indexes a dropped index definition leaves on shared segments
            wanted = {ix.name for ix in tables[tid].def_.indexes}
            for seg in tables[tid].sealed:
                for name in [n for n in seg.index_files if n not in wanted]:
                    seg.detach_index(name)
        self.catalog = body.get("catalog") or {}
        self.next_table_id = int(body["next_table_id"])
        self.next_oid = int(body["next_oid"])
        self._metas = metas
        self._through = through
        self.tables = tables
        self.manifest_version = manifest.version
        self.generation += 1
        self._publish_lsn(last)

    def _newer_manifest(self, version: int) -> bool:
        versions = self._manifests.versions()
        return bool(versions) and versions[-1] > version

    # Hooks of the shared loading code: a missing file may just be the writer's progress.

    def _unavailable(self, table_def: TableDef, tmeta: dict, exc: DataCorrupted) -> Table:
        if self._newer_manifest(self._loading):
            raise _Superseded(exc.message)
        return super()._unavailable(table_def, tmeta, exc)

    def _index_unreadable(self, table: Table, exc: DataCorrupted) -> None:
        if self._newer_manifest(self._loading):
            raise _Superseded(exc.message)
        log.warning('table "%s": %s; the segment is searched exactly until the writer '
                    "rebuilds the index", table.def_.name, exc.message)


def _same_files(old: dict | None, new: dict) -> bool:
    """Whether a table's manifest entry names the same definition and segment files and no
    commit changed its rows through the manifest alone since (`unlogged_commits`: a block's
    TRUNCATE of rows only in the growing segment leaves the same empty list of segments, its
    DELETE of sealed rows only new delete bitmaps): then the table loaded from `old`, brought
    forward through the log, is what `new` describes (delete bitmaps and checkpoints move
    with the log; index files are attached as they appear)."""
    if old is None or old["def"] != new["def"] or \
            old.get("unlogged_commits", 0) != new.get("unlogged_commits", 0):
        return False
    return [(s["file"], s["crc32"]) for s in old["segments"]] == \
        [(s["file"], s["crc32"]) for s in new["segments"]]


# What a write on a follower was trying to do, in the words of PostgreSQL's error message.
_WRITES = {
    "commit": "INSERT, UPDATE or DELETE",
    "insert": "INSERT",
    "delete": "DELETE",
    "truncate": "TRUNCATE",
    "create_table": "CREATE TABLE",
    "drop_table": "DROP TABLE",
    "alter_table": "ALTER TABLE",
    "create_index": "CREATE INDEX",
    "drop_index": "DROP INDEX",
    "update_catalog": "a catalog change",
    "allocate_oid": "a catalog change",
    "seal": "CHECKPOINT",
    "checkpoint": "CHECKPOINT",
    "compact": "VACUUM",
}


def _read_only(name: str) -> Callable:
    what = _WRITES.get(name, name)

    def refuse(self: FollowerStore, *args: object, **kwargs: object) -> None:
        raise ReadOnlySqlTransaction(
            f"cannot execute {what} in a read-only transaction",
            detail=f'This process follows the write-ahead log of "{self.directory}"; only the '
                   "process that owns the database directory writes to it.")

    refuse.__name__ = name
    refuse.__doc__ = f"Refused on a follower (25006): {what}."
    return refuse


# Every public method of the writer that the follower does not share is a write: refused, so a
# method added to Store later is refused here too until the follower is taught to serve it.
for _name, _member in inspect.getmembers(Store, inspect.isfunction):
    if not _name.startswith("_") and not hasattr(FollowerStore, _name):
        setattr(FollowerStore, _name, _read_only(_name))
