"""One database directory: WAL, manifest, tables, and the background work that keeps them.

Layout of `<data-dir>/<database>/`:

    LOCK                               flock-ed while a Store has the directory open (one writer)
    manifest/manifest-<version>.json   versioned, checksummed (manifest.py)
    wal/<first-lsn>.wal                the write-ahead log (wal.py)
    tables/<table-id>/seg-<id>.parquet sealed segments (segment.py)
    tables/<table-id>/seg-<id>.vectors.arrow   their vector columns, memory-mapped (segment.py)
    tables/<table-id>/seg-<id>.<index-oid>.<method>   one index file per vector index, in its
                                       access method's format (hnsw.py for `hnsw`)
    tables/<table-id>/seg-<id>.v<manifest-version>.del delete bitmaps (deletes.py)

Manifest body (format_version 1; features wal-v2, hnsw-per-segment, delete-bitmaps):

    next_table_id  int   table ids are never reused, so WAL records of a dropped table are skipped
    next_oid       int   next OID for tables, indexes and other catalog objects (from 16400)
    catalog        dict  owned by the catalog layer (schemas, roles, sequences, extensions...)
    applied_lsn    int   every commit up to this LSN is reflected (segments, delete bitmaps,
                         next row ids); a follower applies the WAL at least this far before it
                         shows the tables. Absent in manifests written before followers existed.
    log_from       int   (only while a COPY logged ahead is in flight or its rows are not yet in
                         a segment) replay reads the log from after this LSN, before every
                         checkpoint, for the pieces such a COPY's commit names (`backup.log_start`)
    tables         list  per table:
      def            TableDef.to_json(): name, schema, columns, primary key, indexes
      checkpoint_lsn int   every WAL op on this table with LSN <= this is in the files below;
                           recovery replays the table's ops after it
      next_rowid     int   an upper bound of the row ids in use
      next_segment_id int
      unlogged_commits int (absent: 0) how many commits changed the table's rows through a
                           manifest alone, with no WAL record (`commit_deferred`): a follower
                           holding the table at another count loads it afresh, as the log
                           cannot bring it to what the files say
      segments       list  Segment.to_meta() + "deletes": {"file", "count"} or null; its
                           "indexes" map index name -> {"file", "crc32", "calibration",
                           "filter_calibration" (absent in older manifests)}, for
                           every vector access method alike; "vectors" {"file", "bytes",
                           "crc32"} when it has vector columns and "columns" (the same
                           keys) for the others (each absent in older segments)

Commit pipeline (`Store.commit`): under the commit lock every table `prepare`s its ops (checks and
reservations) and the record is appended to the WAL; outside the lock the WAL's group commit
makes it durable; then whoever holds the apply lock applies every durable record in LSN order.
A commit is visible to readers only once it is durable, and atomically (one snapshot swap per
table, all tables of a commit applied under the same lock).

Schema changes of a transaction block (`begin_deferred`): made in memory only, no manifest
written, until `commit_deferred` writes them with the block's rows (as sealed segments, not a
WAL record) in one manifest version, or `rollback_deferred` / `restore` put back an image of
the state from before them. Catalog fields no transaction takes back (sequence values:
`update_catalog_lasting`) are written meanwhile to LASTING_FILE, which names the manifest
version it completes: the open path applies it over that version, a later manifest holds them.

Damage at open (`_open_table`): a segment or delete bitmap that is missing or fails its check
makes its table an `UnavailableTable` (XX001 on every access but DROP TABLE), not the database
unopenable; a damaged index file is rebuilt from its segment.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import queue
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlvec.errors import (
    DamagedFile,
    DataCorrupted,
    DuplicateTable,
    ObjectInUse,
    SqlVecError,
    UndefinedObject,
    UndefinedTable,
    UniqueViolation,
)
from sqlvec.storage import access_methods, compaction
from sqlvec.storage.backup import LASTING_FILE, BackupPins, Pins, log_start
from sqlvec.storage.deletes import DeleteBitmap
from sqlvec.storage.fsutil import atomic_write, lock_directory, storage_error
from sqlvec.storage.manifest import (
    FEATURE_DELETE_BITMAPS,
    FEATURE_INDEXES_PER_SEGMENT,
    FEATURE_WAL_V2,
    ManifestStore,
)
from sqlvec.storage.schema import ROWID, ColumnDef, IndexDef, TableDef
from sqlvec.storage.segment import Segment, WriteAbandoned, segment_files
from sqlvec.storage.table import Table, TableSnapshot, UniqueKey
from sqlvec.storage.vector_index import IndexBuildCancelled
from sqlvec.storage.wal import (
    DeleteOp,
    EncodedBatch,
    HeldPieces,
    InsertOp,
    InsertRunOp,
    LoggedRunOp,
    TruncateOp,
    WriteAheadLog,
    decode_commit,
    encode_abort,
    encode_commit,
    encode_piece,
)

log = logging.getLogger("sqlvec.storage")

# The phases of one segment's build, as pg_stat_progress_create_index names them.
_PHASES = {"building": "loading tuples", "calibrating": "measuring recall",
           "saving": "writing index file"}

FEATURES = (FEATURE_WAL_V2, FEATURE_INDEXES_PER_SEGMENT, FEATURE_DELETE_BITMAPS)
FIRST_OID = 16400


@dataclass
class StoreOptions:
    """Tuning and durability knobs of a database directory."""

    fsync: bool = True  # fsync the WAL at commit (off only for throwaway data)
    seal_rows: int = 65_536  # seal the growing segment at this many rows...
    seal_bytes: int = 256 << 20  # ...or this many bytes, whichever comes first
    wal_segment_bytes: int = 64 << 20
    checkpoint_wal_bytes: int = 256 << 20  # checkpoint when this much WAL is past the oldest one
    manifest_keep: int = 10
    background: bool = True  # seal, index and compact in background threads
    index_threads: int = 0  # threads per index build; 0 = all cores
    compaction: compaction.CompactionPolicy = field(default_factory=lambda: compaction.CompactionPolicy())


@dataclass
class BuildProgress:
    """One index build over one segment, as `sqlvec_indexes` shows it: it stays listed,
    with every row counted, until the index is attached, so progress never drops back."""

    table: str
    index: str
    segment: int
    done: int
    total: int
    started: float
    phase: str = "building"  # then "calibrating" (measuring recall), "saving"


@dataclass
class CreateIndexProgress:
    """What one CREATE INDEX has done so far, for pg_stat_progress_create_index: the sealed
    segments it indexes (PostgreSQL's blocks) and their rows (its tuples). Counts only grow."""

    table_oid: int
    index_oid: int
    phase: str = "initializing"
    segments_total: int = 0
    segments_done: int = 0
    rows_total: int = 0
    rows_done: int = 0
    # The segment in hand may be built by the background builder that got to it first: its
    # progress is followed in the store's builds, under this key, after `base` rows.
    builds: dict | None = field(default=None, repr=False)
    key: tuple | None = None
    base: int = 0

    def current(self) -> tuple[str, int, int, int, int]:
        """(phase, segments total, segments done, rows total, rows done) now; rows done never
        go back."""
        phase = self.phase
        build = self.builds.get(self.key) if self.builds is not None and self.key else None
        if build is not None:
            phase = f"building index: {_PHASES.get(build.phase, build.phase)}"
            self.rows_done = max(self.rows_done, self.base + build.done)
        return phase, self.segments_total, self.segments_done, self.rows_total, self.rows_done


class StoreBase:
    """What a database directory holds once loaded, and how it is loaded: the manifest's tables,
    their segments, indexes and delete bitmaps, then the WAL replayed after each table's
    checkpoint. Shared by the writer (`Store`) and by processes that follow its log
    (`follower.FollowerStore`), so both read the directory by the same rules."""

    def __init__(self, directory: str, options: StoreOptions) -> None:
        self.directory = directory
        self.options = options
        self.tables: dict[int, Table] = {}
        self.catalog: dict = {}
        self.next_table_id = 1
        self.next_oid = FIRST_OID
        self.applied_lsn = 0
        self.log_from: int | None = None  # the loaded manifest's (see the module's docstring)
        # Bumped on every manifest change: plans cached above storage compare it to know whether
        # the schema they were planned against may have changed.
        self.generation = 0
        self.manifest_version = 0  # the manifest version the tables reflect
        self.builds: dict[tuple[int, str, int], BuildProgress] = {}

    def settle(self) -> None:
        """Wait for the commits in flight (none in a store that does not commit)."""

    # Reading ------------------------------------------------------------------------------------

    def table(self, table_id: int) -> Table:
        """The table, for reading or writing: XX001 for one whose files failed their checks at
        open (only `find_table`, catalog listings and `drop_table` still see it)."""
        try:
            table = self.tables[table_id]
        except KeyError:
            raise UndefinedTable(f"table {table_id} does not exist") from None
        if isinstance(table, UnavailableTable):
            raise table.error()
        return table

    def find_table(self, name: str, schema: str = "public") -> Table | None:
        """The table named `name` in `schema`, or None. Looked for in a copy of the tables
        taken at once: a query of the live state resolves names without the DDL lock, while
        another transaction's schema change may add or drop tables."""
        for table in tuple(self.tables.values()):
            if table.def_.name == name and table.def_.schema == schema:
                return table
        return None

    def index_status(self) -> list[dict]:
        """Per index and segment: rows indexed vs total, build progress, memory."""
        rows = []
        for table in self.tables.values():
            for ix in access_methods.vector_indexes(table.def_):
                for seg in list(table.sealed):
                    built = seg.index(ix.name)
                    build = self.builds.get((table.id, ix.name, seg.id))
                    rows.append({
                        "table": table.def_.name, "index": ix.name, "segment": seg.id,
                        "rows": seg.n_rows,
                        "indexed": built.indexed_count if built else (build.done if build else 0),
                        "state": "ready" if built else (build.phase if build else "pending"),
                        "memory_bytes": built.memory_bytes if built else 0,
                    })
        return rows

    # Loading ------------------------------------------------------------------------------------

    def _load_body(self, body: dict) -> None:
        """Take the catalog and open every table of a manifest body."""
        self.next_table_id = int(body["next_table_id"])
        self.next_oid = int(body["next_oid"])
        self.catalog = body.get("catalog") or {}
        self.log_from = body.get("log_from")
        for tmeta in body["tables"]:
            table = self._open_table(tmeta)
            self.tables[table.id] = table

    def _open_table(self, tmeta: dict, previous: Table | None = None) -> Table:
        """Open one table's files. One that is missing or fails its checks makes this table
        unavailable, not the database: every other table is still served."""
        table_def = TableDef.from_json(tmeta["def"])
        directory = self._table_dir(table_def.id)
        try:
            return self._load_table(table_def, directory, tmeta, previous)
        except DataCorrupted as exc:
            return self._unavailable(table_def, tmeta, exc)

    def _unavailable(self, table_def: TableDef, tmeta: dict, exc: DataCorrupted) -> Table:
        """The stand-in for a table whose files failed their checks."""
        table = UnavailableTable(table_def, self._table_dir(table_def.id), tmeta,
                                 self._damage_of(exc))
        log.error("%s; the table is unavailable until the file is restored (then restart) "
                  "or the table is dropped; its files and WAL records are kept",
                  table.error().message)
        return table

    def _load_table(self, table_def: TableDef, directory: str, tmeta: dict,
                    previous: Table | None = None) -> Table:
        """A table as the manifest entry `tmeta` describes it, its growing segment empty (WAL
        replay fills it). Segments, indexes and delete bitmaps that `previous` (the same table
        as loaded from an earlier manifest) already holds from the same files are shared, not
        read again: the files are immutable."""
        for ix in table_def.indexes:
            if ix.method not in ("btree", "gin") and access_methods.find(ix.method) is None:
                log.warning('table "%s": index "%s" uses access method "%s", which this server '
                            "does not have; searches do not use it", table_def.name, ix.name,
                            ix.method)
        known: dict[tuple[str, int], Segment] = {}
        known_deletes: dict[str, DeleteBitmap] = {}
        if previous is not None:
            known = {(os.path.basename(s.path), s.crc32): s for s in previous.sealed
                     if s.path is not None}
            known_deletes = {name: bitmap for name, bitmap in previous.persisted_deletes.values()}
        table = Table(table_def, directory, self.options.seal_rows)
        table.checkpoint_lsn = int(tmeta["checkpoint_lsn"])
        table.next_rowid = int(tmeta["next_rowid"])
        table.next_segment_id = int(tmeta["next_segment_id"])
        for smeta in tmeta["segments"]:
            seg = known.get((smeta["file"], smeta["crc32"])) or Segment.open(table.directory, smeta)
            table.sealed.append(seg)
            dmeta = smeta.get("deletes")
            if dmeta:
                bitmap = known_deletes.get(dmeta["file"])
                if bitmap is None:
                    path = os.path.join(table.directory, dmeta["file"])
                    bitmap = DeleteBitmap.read(path, seg.n_rows)
                table.persisted_deletes[seg.id] = (dmeta["file"], bitmap)
            else:
                bitmap = DeleteBitmap.empty(seg.n_rows)
            table.deletes[seg.id] = bitmap
            self._load_indexes(table, seg, smeta.get("indexes") or {})
        if not table.share_keys(previous):
            table.rebuild_keys()
        return table

    def _damage_of(self, exc: DataCorrupted) -> tuple[str, str | None]:
        """What is wrong, naming the file relative to the data directory (as PostgreSQL names
        `base/<db>/<relfilenode>`), and the error's detail."""
        if isinstance(exc, DamagedFile):
            path = os.path.relpath(exc.path, os.path.dirname(os.path.abspath(self.directory)))
            return f"{exc.kind} {path} {exc.describe()}", exc.detail
        return exc.message, exc.detail

    def _load_indexes(self, table: Table, seg: Segment, metas: dict) -> None:
        """Load the segment's index files the manifest lists (one already attached from the
        same file is kept)."""
        for ix in access_methods.vector_indexes(table.def_):
            meta = metas.get(ix.name)
            if meta is None:
                continue
            if (seg.index(ix.name) is not None
                    and seg.index_files.get(ix.name) == (meta["file"], int(meta["crc32"]))):
                continue
            path = os.path.join(table.directory, meta["file"])
            try:
                method = access_methods.structure(ix)
                index = method.load(path, access_methods.params_of(ix),
                                    access_methods.key_dims(table.def_, ix),
                                    expected_crc=int(meta["crc32"]))
            except DataCorrupted as exc:
                self._index_unreadable(table, exc)
                continue
            index.calibration = [(int(e), float(r)) for e, r in meta.get("calibration") or []]
            if meta.get("filter_calibration"):
                index.filter_calibration = [(float(s), float(m), float(r))
                                            for s, m, r in meta["filter_calibration"]]
            seg.attach_index(ix.name, index)
            seg.index_files[ix.name] = (meta["file"], int(meta["crc32"]))

    def _index_unreadable(self, table: Table, exc: DataCorrupted) -> None:
        """An index file that failed its checks: the segment is searched exactly meanwhile."""
        log.warning('table "%s": %s; rebuilding it from the segment in the background',
                    table.def_.name, exc.message)

    def _table_dir(self, table_id: int) -> str:
        return os.path.join(self.directory, "tables", str(table_id))


def apply_logged(lsn: int, ops: Sequence, tables: Mapping[int, Table]) -> None:
    """Apply one WAL record's ops (as `HeldPieces.resolve` gives them) to the tables of
    `tables` it is past the checkpoint of (WAL replay: at open, and in processes that follow
    the log). Each table's ops go in under its lock, so no reader's snapshot falls between two
    ops of one commit."""
    by_table: dict[int, list] = {}
    for op in ops:
        by_table.setdefault(op.table_id, []).append(op)
    for table_id, table_ops in by_table.items():
        table = tables.get(table_id)
        if table is None or lsn <= table.checkpoint_lsn:
            continue
        if any(isinstance(op, LoggedRunOp) for op in table_ops):
            raise DataCorrupted(f"WAL record {lsn}: a COPY's commit names piece records the "
                                "log no longer holds")
        with table.lock:
            for op in table_ops:
                table.apply(op)


class Store(StoreBase):
    """A database: its tables and their durable state. Thread-safe."""

    def __init__(self, directory: str, options: StoreOptions) -> None:
        super().__init__(directory, options)
        self._manifests = ManifestStore(directory, keep=options.manifest_keep)
        self._commit_lock = threading.Lock()
        self._apply_lock = threading.RLock()
        self._manifest_lock = threading.RLock()
        self._build_lock = threading.Lock()
        self._seal_lock = threading.Lock()  # one writer of segment files at a time
        # (lsn, WAL epoch, ops, the ops per table id): commits logged, not yet applied.
        self._pending: deque[tuple[int, int, list, list]] = deque()
        self._inflight_files: set[str] = set()
        self._closed = False
        self._wal: WriteAheadLog | None = None
        # Set above storage (it evaluates SQL): raises when inserted rows violate a CHECK
        # constraint of their table. Called before a commit's inserts are prepared.
        self.row_check: Callable[[TableDef, pa.Table | pa.RecordBatch], None] | None = None
        # Set above storage (foreign keys): called under the commit lock before a commit's
        # ops are prepared, with a function that waits until every commit in flight is
        # applied; raises to refuse the commit.
        self.commit_check: Callable[[Sequence, Callable[[], None]], None] | None = None
        self._wal_checkpointed_bytes = 0
        # COPYs logged ahead of their commit (`log_piece`), by their first piece's LSN: the
        # table, and the commit's LSN once committed. The log is kept from that piece while
        # the COPY is in flight and until its rows are in a segment (`log_from`).
        self._runs: dict[int, tuple[int, int | None]] = {}
        self._runs_lock = threading.Lock()
        self._seal_queue: queue.Queue = queue.Queue()
        self._build_queue: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._busy_cond = threading.Condition()
        self._lock_fd: int | None = None  # the directory's LOCK, held from open to close
        # Manifest versions and WAL records running backups need (backup.py).
        self._pins = BackupPins(directory)
        # An open transaction's schema changes (`begin_deferred`): applied in memory, written
        # by no manifest until `commit_deferred`.
        self._deferred: _Deferred | None = None
        # Whether LASTING_FILE may exist (`update_catalog_lasting`).
        self._lasting_written = False
        # Per table id: the manifest's `unlogged_commits` (kept only when not 0).
        self._unlogged_commits: dict[int, int] = {}

    # Opening and closing ------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: str, options: StoreOptions | None = None, *,
             start_background: bool = True) -> Store:
        """Open (or create) a database directory and recover it: manifest, then WAL replay.
        The directory stays locked until `close` (ObjectInUse if it is open already, here or
        in another process). `start_background=False` leaves the background threads to
        `start_background` (work found at open waits in their queues meanwhile): a server forks
        its worker processes in between, while it runs one thread."""
        os.makedirs(directory, exist_ok=True)
        lock_fd = lock_directory(directory)
        if lock_fd is None:
            raise ObjectInUse(f'database directory "{directory}" is already open in this or '
                              "another process")
        store = cls(directory, options or StoreOptions())
        store._lock_fd = lock_fd
        try:
            os.makedirs(os.path.join(directory, "tables"), exist_ok=True)
            store._load_manifest()
            store._wal = WriteAheadLog.open(
                os.path.join(directory, "wal"), fsync=store.options.fsync,
                segment_bytes=store.options.wal_segment_bytes)
            store._replay()
            with store._pins.guard():
                store._collect_garbage()
            return_free_memory()  # what reading the files and replaying the log left behind
            for table in store.tables.values():
                for seg in table.sealed:  # what building the key indexes read
                    seg.release_mapped_pages()
            if store.options.background and start_background:
                store._start_workers()
            for table in store.tables.values():
                store._schedule_missing_builds(table)
                store._maybe_seal(table)
        except BaseException:
            store.close()  # a failed recovery must not keep the directory locked
            raise
        return store

    def _load_manifest(self) -> None:
        manifest = self._manifests.load_latest()
        if manifest is None:
            self._commit_manifest()
            return
        self._load_body(manifest.body)
        self._unlogged_commits = {int(t["def"]["id"]): int(t["unlogged_commits"])
                                  for t in manifest.body["tables"] if t.get("unlogged_commits")}
        self.manifest_version = manifest.version
        self._load_lasting()

    def _replay(self) -> None:
        assert self._wal is not None
        start = min((t.checkpoint_lsn for t in self.tables.values()), default=self._wal.last_lsn)
        if self.log_from is not None:
            start = min(start, self.log_from)
        replayed = 0
        held = HeldPieces()
        for lsn, payload in self._wal.replay(after_lsn=start):
            ops = decode_commit(payload)
            for op in ops:  # a COPY's rows only in the log: its pieces stay needed
                table = self.tables.get(op.table_id)
                if isinstance(op, LoggedRunOp) and table is not None \
                        and lsn > table.checkpoint_lsn:
                    self._runs[min(op.pieces)] = (op.table_id, lsn)
            apply_logged(lsn, held.resolve(lsn, ops), self.tables)
            self.applied_lsn = lsn
            replayed += 1
        self.applied_lsn = max(self.applied_lsn, self._wal.last_lsn)
        if replayed:
            log.info("replayed %d WAL records after LSN %d", replayed, start)

    @property
    def wal_bytes(self) -> int:
        """Bytes of WAL records appended since the store was opened (for metrics)."""
        wal = self._wal
        return wal.bytes_appended if wal is not None else 0

    @property
    def durable_lsn(self) -> int:
        """The LSN of the last durable commit: a process following the log that has applied it
        (`FollowerStore.applied_lsn`) sees every commit acknowledged so far. One attribute
        read, cheap enough to publish after every commit."""
        wal = self._wal
        return wal.durable_lsn if wal is not None else self.applied_lsn

    def close(self) -> None:
        """Stop background work and close the WAL. Committed data is already durable."""
        if self._closed:
            return
        self._closed = True
        for q in (self._seal_queue, self._build_queue):
            q.put(None)
        for thread in self._threads:
            thread.join()
        if self._wal is not None:
            self._wal.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # Catalog of tables --------------------------------------------------------------------------

    def allocate_oid(self) -> int:
        """A new OID, unique in the database; persisted with the next manifest."""
        with self._manifest_lock:
            oid = self.next_oid
            self.next_oid += 1
            return oid

    def create_table(self, name: str, columns: Sequence[ColumnDef], *, schema: str = "public",
                     primary_key: Sequence[str] = ()) -> TableDef:
        """Create a table durably (manifest commit) and return its definition; an existing name is
        42P07."""
        with self._manifest_lock, self._commit_lock:
            if self.find_table(name, schema) is not None:
                raise DuplicateTable(f'relation "{name}" already exists')
            cols = tuple(
                c if c.attnum else replace(c, attnum=i + 1) for i, c in enumerate(columns)
            )
            table_def = TableDef(
                id=self.next_table_id, oid=self.allocate_oid(), name=name, schema=schema,
                columns=cols, primary_key=tuple(primary_key),
                next_attnum=max((c.attnum for c in cols), default=0) + 1,
            )
            self.next_table_id += 1
            os.makedirs(self._table_dir(table_def.id), exist_ok=True)
            self.tables[table_def.id] = Table(table_def, self._table_dir(table_def.id),
                                              self.options.seal_rows)
            self._commit_manifest_or_undo(lambda: self.tables.pop(table_def.id, None))
            return table_def

    def drop_table(self, table_id: int) -> None:
        """Drop a table: its WAL records are drained first, then the manifest forgets it and its
        files are collected."""
        with self._manifest_lock, self._commit_lock:
            self._drain()
            table = self.tables.pop(table_id, None)
            if table is None:
                raise UndefinedTable(f"table {table_id} does not exist")
            self._commit_manifest_or_undo(lambda: self.tables.__setitem__(table_id, table))
            if self._deferred is not None:  # its files go once the drop is committed
                self._deferred.dropped_tables.append(table)
                return
        with self._pins.guard() as pins:
            if not pins.active:  # else garbage collection removes them once unpinned
                shutil.rmtree(table.directory, ignore_errors=True)

    def alter_table(self, table_id: int, change: Callable[[TableDef], TableDef], *,
                    catalog: Callable[[dict], dict] | None = None) -> TableDef:
        """Apply a definition change (rename, add/drop/rename column...) atomically, with an
        optional change of the catalog layer's state in the same manifest version. Index files
        of indexes the change removes are deleted once it is durable."""
        with self._manifest_lock, self._commit_lock:
            self._drain()
            table = self.table(table_id)
            new_def = change(table.def_)
            self._check_new_name(table, new_def)
            old_def, old_catalog = table.def_, self.catalog
            table.set_def(new_def)
            if catalog is not None:
                self.catalog = catalog(dict(self.catalog))

            def undo() -> None:
                table.set_def(old_def)
                self.catalog = old_catalog
            self._commit_manifest_or_undo(undo)
        self._forget_indexes(table, old_def, new_def)
        return new_def

    def rewrite_table(self, table_id: int, change: Callable[[TableDef], TableDef],
                      transform: Callable[[pa.Table, TableDef], list[pa.Array]], *,
                      catalog: Callable[[dict], dict] | None = None) -> TableDef:
        """A definition change that changes stored values (ALTER COLUMN TYPE), as PostgreSQL's
        table rewrite: every live row is read (logical names of the current definition, with
        `_rowid`), `transform` returns its columns in the new definition's order, and new
        segments holding them replace every segment and the growing segment in one manifest
        version. Row ids are kept; deleted rows are dropped. An error anywhere (a value the
        transform refuses, a duplicate key, a full disk) leaves the table as it was."""
        with self._manifest_lock, self._commit_lock:
            self._drain()
            table = self.table(table_id)
            old_def = table.def_
            new_def = change(old_def)
            self._check_new_name(table, new_def)
            schema = new_def.physical_schema()
            parts = []
            for part in table.snapshot().scan(None, with_rowid=True):
                arrays = transform(part, new_def)
                rowids = part.column(ROWID).combine_chunks()
                parts.append(pa.Table.from_arrays([rowids, *arrays], schema=schema))
            rows = pa.concat_tables(parts) if parts else schema.empty_table()
            if rows.num_rows > 1:
                ids = rows.column(ROWID).to_numpy()
                if np.any(np.diff(ids) < 0):
                    rows = rows.take(pa.array(np.argsort(ids, kind="stable")))
            _check_unique(new_def, rows)
            segments: list[Segment] = []
            step = max(1, self.options.seal_rows)
            try:
                for start in range(0, rows.num_rows, step):
                    seg = Segment(table.next_segment_id + len(segments),
                                  rows.slice(start, step).combine_chunks(), None)
                    segments.append(seg)
                    self.write_segment(table, seg)
                old_catalog = self.catalog
                with self._apply_lock:
                    undo_table = table.replace_all(new_def, segments)
                    saved = (table.next_segment_id, table.checkpoint_lsn)
                    table.next_segment_id += len(segments)
                    table.checkpoint_lsn = max(table.checkpoint_lsn, self.applied_lsn)
                if catalog is not None:
                    self.catalog = catalog(dict(self.catalog))

                def undo() -> None:
                    undo_table()
                    table.next_segment_id, table.checkpoint_lsn = saved
                    self.catalog = old_catalog
                self._commit_manifest_or_undo(undo)
            finally:
                for seg in segments:
                    self.release_segment_files(seg)
        self._schedule_missing_builds(table)
        return new_def

    def _check_new_name(self, table: Table, new_def: TableDef) -> None:
        if new_def.name != table.def_.name or new_def.schema != table.def_.schema:
            other = self.find_table(new_def.name, new_def.schema)
            if other is not None and other is not table:
                raise DuplicateTable(f'relation "{new_def.name}" already exists')

    def _forget_indexes(self, table: Table, old_def: TableDef, new_def: TableDef) -> None:
        """Detach and delete the files of indexes a definition change dropped (the change
        itself is durable already: a file left by a crash here is collected later)."""
        kept = {ix.oid for ix in new_def.indexes}
        gone = [ix for ix in old_def.indexes if ix.oid not in kept]
        if not gone:
            return
        for ix in gone:
            for seg in table.sealed:
                seg.detach_index(ix.name)
        with self._manifest_lock:
            self._commit_manifest()
            if self._deferred is not None:  # the files go once the drop is committed
                self._deferred.dropped_indexes.extend((table, ix) for ix in gone)
                return
        self._remove_index_files(table, gone)

    def _remove_index_files(self, table: Table, gone: Sequence[IndexDef]) -> None:
        with self._pins.guard() as pins:  # a backup copying an older version: they go later
            try:
                names = [] if pins.active else os.listdir(table.directory)
            except FileNotFoundError:  # the table's directory is gone, and its files with it
                names = []
        for ix in gone:
            suffix = f".{ix.oid}.{ix.method}"
            for fname in names:
                if fname.endswith(suffix):
                    try:
                        os.remove(os.path.join(table.directory, fname))
                    except OSError:
                        pass

    def update_catalog(self, change: Callable[[dict], dict]) -> dict:
        """Change the catalog layer's own persisted state (schemas, roles, sequences...)."""
        with self._manifest_lock:
            old = self.catalog
            self.catalog = change(dict(self.catalog))
            self._commit_manifest_or_undo(lambda: setattr(self, "catalog", old))
            return self.catalog

    def update_catalog_lasting(self, section: str, key: str, fields: dict,
                               identity: tuple[str, ...]) -> None:
        """Set `fields` of the catalog entry `section`/`key` durably, outside any transaction
        (nextval and setval are never taken back): while schema changes are open they go to
        LASTING_FILE at once, and a rollback or restore keeps them for the entry that still
        has the same `identity` fields (OID, incarnation). Otherwise it is `update_catalog`."""
        with self._manifest_lock:
            deferred = self._deferred
            if deferred is None:
                self.update_catalog(lambda c: with_entry_fields(c, section, key, fields))
                return
            entry = self.catalog[section][key]
            ident = tuple((name, entry.get(name)) for name in identity)
            lasting = {**deferred.lasting}
            kept = lasting.get((section, key, ident), {})
            lasting[(section, key, ident)] = {**kept, **fields}
            self._write_lasting(lasting)
            deferred.lasting = lasting
            self.catalog = with_entry_fields(self.catalog, section, key, fields)
            self.generation += 1

    def _write_lasting(self, lasting: dict) -> None:
        """Make the open schema changes' lasting catalog fields durable over the latest
        manifest version (which is what a crash recovers)."""
        body = {"manifest_version": self.manifest_version,
                "entries": [[section, key, dict(ident), fields]
                            for (section, key, ident), fields in lasting.items()]}
        path = os.path.join(self.directory, LASTING_FILE)
        try:
            atomic_write(path, json.dumps(body).encode())
        except OSError as exc:
            raise storage_error(exc, "write", path) from exc
        self._lasting_written = True

    def _load_lasting(self) -> None:
        """At open: the lasting catalog fields written over the manifest just loaded, if any
        (a later manifest holds them already)."""
        path = os.path.join(self.directory, LASTING_FILE)
        try:
            with open(path, "rb") as f:
                body = json.loads(f.read())
        except FileNotFoundError:
            return
        self._lasting_written = True
        if body["manifest_version"] != self.manifest_version:
            return
        for section, key, ident, fields in body["entries"]:
            self.catalog = _with_lasting(self.catalog, section, key, ident, fields)

    def _apply_lasting(self, deferred: _Deferred) -> None:
        """After a restore: the lasting catalog fields the open schema changes set again."""
        for (section, key, ident), fields in deferred.lasting.items():
            self.catalog = _with_lasting(self.catalog, section, key, dict(ident), fields)

    def _write_manifest_for_lasting(self, deferred: _Deferred) -> None:
        """After schema changes were taken back: a manifest holding their lasting catalog
        fields (if it fails, LASTING_FILE still holds them; the next manifest retries)."""
        if not deferred.lasting:
            return
        try:
            self._commit_manifest()
        except (OSError, SqlVecError) as exc:
            log.warning("writing sequence values after a rollback: %s", exc)

    # Transactional schema changes -------------------------------------------------------------

    @property
    def deferred(self) -> bool:
        """Whether a transaction's schema changes are open (no manifest is written meanwhile)."""
        return self._deferred is not None

    def begin_deferred(self) -> None:
        """Open a transaction's schema changes: from now on every catalog and definition change
        is made in memory only, where the transaction's own statements see it, and the latest
        manifest on disk stays what a crash recovers. The caller keeps every other writer and
        reader of this database out until `commit_deferred` or `rollback_deferred`."""
        with self._manifest_lock:
            if self._deferred is None and self._lasting_written:
                self._commit_manifest()  # LASTING_FILE is rewritten for the new changes
        with self._manifest_lock, self._commit_lock:
            if self._deferred is not None:
                raise SqlVecError("schema changes of another transaction are open",
                                  sqlstate="55006")
            self._drain(housekeeping=False)
            self._deferred = _Deferred(self._image())

    def image(self) -> StoreImage:
        """The in-memory state to return to (a savepoint inside the open schema changes)."""
        with self._manifest_lock:
            return self._image()

    def restore(self, image: StoreImage | None) -> None:
        """Go back to `image` (ROLLBACK TO SAVEPOINT; None: to before the open schema changes):
        every table, definition, index attachment and catalog entry as it was; the schema
        changes stay open."""
        with self._manifest_lock, self._commit_lock, self._apply_lock:
            if image is None:
                if self._deferred is None:
                    return
                image = self._deferred.image
            self._restore(image)
            if self._deferred is not None:
                self._apply_lasting(self._deferred)

    def rollback_deferred(self) -> None:
        """ROLLBACK of the open schema changes: memory goes back to what the latest manifest
        holds (nothing of them was written). Files they wrote are collected later."""
        deferred = self._deferred
        if deferred is None:
            return
        with self._manifest_lock, self._commit_lock, self._apply_lock:
            self._restore(deferred.image)
            self._apply_lasting(deferred)
            self._deferred = None
        self._write_manifest_for_lasting(deferred)

    def commit_deferred(self, ops: Sequence, holder: object = None) -> None:
        """COMMIT of the open schema changes together with the transaction's writes `ops`,
        in one manifest version: the rows are applied in memory and written as sealed segments
        (deletes as delete bitmaps) instead of a WAL record, so the manifest's atomic rename is
        the one point where the whole transaction becomes durable. Anything failing before it
        (a CHECK or unique violation, a full disk) restores the state from before the
        transaction and raises. `holder`: the block's row locks, as for `commit`."""
        deferred = self._deferred
        if deferred is None:
            raise SqlVecError("no schema changes are open", sqlstate="XX000")
        written: list[Segment] = []
        by_table: dict[int, list] = {}
        for op in ops:
            if op.table_id in self.tables:  # (writes to a table the block dropped: gone)
                by_table.setdefault(op.table_id, []).append(op)
        ops = [op for op in ops if op.table_id in by_table]
        with self._seal_lock, self._manifest_lock, self._commit_lock:
            version = self.manifest_version
            try:
                self._drain(housekeeping=False)
                self._check_rows(ops)
                tables = [self.table(tid) for tid in by_table]
                # The rows from before the transaction go to a segment of their own first, and
                # the transaction's rows to a new growing segment: the one kept for a restore
                # never takes them.
                for table in tables:
                    written += self._freeze_and_write(table)
                    with self._apply_lock:
                        table.renew_memtable()
                for table in tables:
                    ready = table.prepare(by_table[table.id], holder)
                    try:
                        with self._apply_lock, table.lock:
                            for op in ready:
                                table.apply(op)
                    finally:
                        table.release(ready)
                for table in tables:
                    written += self._freeze_and_write(table)
                self._count_unlogged_commit(deferred, by_table)
                self._deferred = None
                self._commit_manifest()
            except BaseException as exc:
                if self._deferred is None and self.manifest_version != version:
                    # Written: the transaction is durable; what failed is the housekeeping
                    # after it (WAL truncation, file collection), which the next commit redoes.
                    log.warning("after committing schema changes: %s", exc)
                else:
                    with self._apply_lock:
                        self._restore(deferred.image)
                        self._apply_lasting(deferred)
                    self._deferred = None
                    self._write_manifest_for_lasting(deferred)
                    raise
            finally:
                for seg in written:
                    self.release_segment_files(seg)
        for table in deferred.dropped_tables:
            if table.id not in self.tables:
                with self._pins.guard() as pins:
                    if not pins.active:
                        shutil.rmtree(table.directory, ignore_errors=True)
        for table, ix in deferred.dropped_indexes:
            live = self.tables.get(table.id)
            if live is None:
                continue  # the table was dropped after its index: its directory went with it
            if all(i.oid != ix.oid for i in live.def_.indexes):
                self._remove_index_files(table, [ix])
        for table in list(self.tables.values()):
            self._schedule_missing_builds(table)

    def _count_unlogged_commit(self, deferred: _Deferred, written_to: Iterable[int]) -> None:
        """Count a commit without a WAL record for every table whose rows it may change: the
        ones it writes to and any other whose state differs from before the schema changes
        (a count taken for a commit that fails after all only costs followers a reload)."""
        changed = set(written_to)
        changed.update(saved.table.id for saved in deferred.image.table_images
                       if saved.changed())
        for tid in changed & self.tables.keys():
            self._unlogged_commits[tid] = self._unlogged_commits.get(tid, 0) + 1

    def _freeze_and_write(self, table: Table) -> list[Segment]:
        """Seal the table's growing segment and write every frozen segment not yet on disk
        (caller holds the seal and manifest locks); the manifest written next lists them."""
        with self._apply_lock:
            table.freeze(self.applied_lsn)
        with table.lock:
            unwritten = [s for s in table.sealing if s.path is None]
        for frozen in unwritten:
            self.write_segment(table, frozen)
        with table.lock:
            while table.sealing and table.sealing[0].path is not None:
                done = table.sealing.pop(0)
                table.checkpoint_lsn = max(table.checkpoint_lsn,
                                           done.freeze_lsn)  # type: ignore[attr-defined]
        return unwritten

    def _image(self) -> StoreImage:
        return StoreImage(self.catalog, dict(self.tables),
                          [_TableImage.of(t) for t in self.tables.values()])

    def _restore(self, image: StoreImage) -> None:
        for saved in image.table_images:
            saved.restore()
        self.tables = dict(image.tables)
        self.catalog = image.catalog
        self.generation += 1

    # Writes -------------------------------------------------------------------------------------

    def _check_rows(self, ops: Sequence) -> None:
        """The tables' row checks (CHECK, NOT NULL: `row_check`) over the batches `ops` insert."""
        if self.row_check is None:
            return
        for op in ops:
            if isinstance(op, InsertOp):
                table_def = self.table(op.table_id).def_
                if table_def.constraints:
                    self.row_check(table_def, op.batch)
            elif isinstance(op, InsertRunOp):
                table_def = self.table(op.table_id).def_
                if table_def.constraints:
                    for part in op.batches:
                        self.row_check(table_def, part.batch.rename_columns(
                            table_def.column_names))

    def commit(self, ops: Sequence, holder: object = None) -> int:
        """Make a transaction's ops durable and visible, atomically. Returns its LSN.

        `ops` are InsertOp (rows in the table's logical schema, already coerced), DeleteOp
        (row ids) and TruncateOp, in the order they should apply; `holder`: the committing
        block's row locks (`row_locks.LockHolder`), None for a statement outside a block."""
        if not ops:
            return self.applied_lsn
        if self._deferred is not None:  # the open transaction's, or a writer it locks out
            raise SqlVecError("cannot write while another transaction's schema changes are open",
                              sqlstate="55006")
        by_table = _by_table(ops)
        self._check_rows(ops)
        with self._commit_lock:
            if self._closed:
                raise SqlVecError("the database is shut down", sqlstate="57P01")
            assert self._wal is not None
            if self._wal.failed is not None:
                self._discard_failed()  # repair the log's tail before writing after it
            self._check_logged(ops)
            if self.commit_check is not None:
                self.commit_check(ops, lambda: self._drain(housekeeping=False))
            epoch = self._wal.epoch
            prepared: list = []
            done: list[tuple[Table, list]] = []
            try:
                for table_id, table_ops in by_table:
                    table = self.table(table_id)
                    ready = table.prepare(table_ops, holder)
                    done.append((table, ready))
                    prepared.extend(ready)
                lsn = self._wal.append(encode_commit(prepared))
            except BaseException:
                for table, ready in done:
                    table.release(ready)
                raise
            self._pending.append((lsn, epoch, prepared,
                                  [(table.id, ready) for table, ready in done]))
        try:
            self._wal.sync(lsn, epoch=epoch)
        except SqlVecError:
            with self._commit_lock:
                self._discard_failed()
            raise
        # Applied already when another committer of the same group applied it (it applies every
        # durable commit, in order): then this one answers at once instead of queueing for the
        # apply lock. (LSNs past a failed write are reused only beyond the durable, hence
        # applied, ones: a larger `applied_lsn` always means this commit is visible.)
        if self.applied_lsn < lsn:
            self._apply_durable()
        return lsn

    # COPY pieces logged ahead of the commit ----------------------------------------------

    def log_piece(self, table_id: int, part: EncodedBatch, first: int | None) -> EncodedBatch:
        """Append one piece of a COPY's rows to the log while the rest arrive (not yet durable:
        `sync_log`), so that its commit only names the pieces; returns the piece with its LSN
        and the log's epoch before the append (a failed write since may have lost it:
        `_check_logged`). `first`: the COPY's first piece's LSN (None for the first, which
        registers the COPY). Appended and registered at once, under the lock `_log_from`
        takes after reading the tables' checkpoints: a checkpoint either sees the COPY or was
        computed before its first piece existed."""
        assert self._wal is not None
        if self._closed:
            raise SqlVecError("the database is shut down", sqlstate="57P01")
        with self._runs_lock:
            epoch = self._wal.epoch
            lsn = self._wal.append(encode_piece(table_id, part))
            if first is None:
                self._runs[lsn] = (table_id, None)
        return replace(part, lsn=lsn, epoch=epoch)

    def _check_logged(self, ops: Sequence) -> None:
        """Refuse to commit a COPY whose pieces a failed write has lost (caller holds the
        commit lock, the log repaired): a write failed since a piece was appended, and the
        piece was not durable before it, raises that failure's error (53100, 58030)."""
        assert self._wal is not None
        for op in ops:
            if isinstance(op, InsertRunOp) and op.logged:
                for part in op.batches:
                    if part.epoch != self._wal.epoch:
                        self._wal.sync(part.lsn, epoch=part.epoch)

    def sync_log(self, lsn: int) -> None:
        """Make the log durable up to `lsn` (a piece's: a COPY's commit then flushes little)."""
        assert self._wal is not None
        self._wal.sync(lsn)

    def end_run(self, first: int, pieces: Sequence[int], commit_lsn: int | None) -> None:
        """A COPY logged ahead has committed at `commit_lsn` (its log is kept until its rows
        are in a segment) or, None, has not: its pieces are dropped by an abort record
        (best effort: replay drops pieces that no commit names anyway)."""
        with self._runs_lock:
            entry = self._runs.pop(first, None)
            if entry is not None and commit_lsn is not None:
                self._runs[first] = (entry[0], commit_lsn)
        if commit_lsn is None and entry is not None and self._wal is not None:
            try:
                self._wal.append(encode_abort(entry[0], pieces))
            except (SqlVecError, ValueError):
                pass  # a failed or closed log: nothing after it reaches a reader

    def _log_from(self, tables: list[dict]) -> int | None:
        """Where replay must start reading for the pieces of COPYs logged ahead: before the
        first piece of each one in flight or committed but not yet past its table's
        checkpoint (None: no such COPY). Forgets those past it."""
        checkpoints = {int(t["def"]["id"]): int(t["checkpoint_lsn"]) for t in tables}
        with self._runs_lock:
            for first, (table_id, commit) in list(self._runs.items()):
                if commit is not None and checkpoints.get(table_id, commit) >= commit:
                    del self._runs[first]
            return min(self._runs) - 1 if self._runs else None

    def settle(self) -> None:
        """Wait until every commit appended so far is durable and applied, or failed: what a
        statement that lost a race to a commit in flight waits for before it runs again, as
        PostgreSQL waits for the transaction holding its row."""
        wal = self._wal
        if wal is None:
            return
        lsn, epoch = wal.last_lsn, wal.epoch
        try:
            wal.sync(lsn, epoch=epoch)
        except SqlVecError:
            return  # those commits failed; their committers release what they claimed
        if self.applied_lsn < lsn:
            self._apply_durable()

    def _discard_failed(self) -> None:
        """After a failed WAL write: return the log to its last durable record and drop the
        commits that failed with it, releasing their reservations (caller holds the commit
        lock). Nothing of them was applied: commits are applied only once durable."""
        assert self._wal is not None
        self._wal.rollback()
        with self._apply_lock:
            durable, epoch = self._wal.durable_lsn, self._wal.epoch
            # Appended before the latest failure and not durable: failed. (Commits appended
            # after the repair carry the new epoch, and are only appended once every failed
            # one is gone from this queue, so reused LSNs are never mistaken for them.)
            failed = [p for p in self._pending if p[1] != epoch and p[0] > durable]
            if failed:
                gone = {id(p) for p in failed}
                self._pending = deque(p for p in self._pending if id(p) not in gone)
            for _lsn, _epoch, ops, _groups in failed:
                for op in ops:
                    table = self.tables.get(op.table_id)
                    if table is not None:
                        table.release([op])

    def _apply_durable(self, housekeeping: bool = True) -> None:
        assert self._wal is not None
        touched: set[int] = set()
        truncated = False
        with self._apply_lock:
            durable = self._wal.durable_lsn
            while self._pending and self._pending[0][0] <= durable:
                lsn, _epoch, _ops, groups = self._pending.popleft()
                for table_id, table_ops in groups:
                    table = self.tables.get(table_id)
                    if table is None:
                        continue
                    # Under the table's lock, so no reader's snapshot falls between two ops of
                    # one commit (an UPDATE is a delete and an insert); its claims go once
                    # its ops are applied (one hand-off per table).
                    with table.lock:
                        for op in table_ops:
                            truncated |= table.apply(op)
                        table.release(table_ops)
                    touched.add(table_id)
                self.applied_lsn = lsn
        # The commits are durable and visible now: housekeeping that fails (a full disk while
        # sealing) is logged and retried later, never reported as the commit's failure.
        if not housekeeping:
            return
        try:
            for table_id in touched:
                table = self.tables.get(table_id)
                if table is not None:
                    self._maybe_seal(table)
            if truncated or (self._wal.last_lsn and self._wal_bytes_since_checkpoint()
                             > self.options.checkpoint_wal_bytes):
                if self.options.background:
                    self._seal_queue.put(("checkpoint", None))
                else:  # no worker would ever take it off the queue (and wait_idle would hang)
                    self.checkpoint()
        except SqlVecError as exc:
            log.warning("sealing after a commit failed (it is retried): %s", exc.message)

    def _drain(self, housekeeping: bool = True) -> None:
        """Wait until every appended commit is applied (caller holds the commit lock)."""
        if self._wal is not None and self._pending:
            try:
                self._wal.sync(self._wal.last_lsn)
            except SqlVecError:
                self._discard_failed()
                raise
            self._apply_durable(housekeeping)

    def insert(self, table_id: int, rows: pa.Table | pa.RecordBatch | dict) -> int:
        """Autocommit insert of rows (coerced to the table's columns). Returns rows inserted."""
        table = self.table(table_id)
        data = table.coerce(rows)
        self.commit([InsertOp(table_id, data)])
        return data.num_rows

    def delete(self, table_id: int, rowids: Iterable[int] | np.ndarray) -> int:
        """Delete rows by rowid in one commit; returns how many distinct rowids were given."""
        rowids = np.unique(np.asarray(list(rowids) if not isinstance(rowids, np.ndarray) else rowids,
                                      dtype=np.int64))
        if rowids.size:
            self.commit([DeleteOp(table_id, rowids)])
        return int(rowids.size)

    def truncate(self, table_id: int) -> None:
        """Empty a table in one commit."""
        self.commit([TruncateOp(table_id)])

    # Sealing and checkpoints --------------------------------------------------------------------

    def _maybe_seal(self, table: Table) -> None:
        if self._seal_due(table):
            if self.options.background:
                self._seal_queue.put(("seal", table.id))
            else:
                self.seal(table.id)

    def _seal_due(self, table: Table) -> bool:
        """Whether the growing segment reached a seal threshold (its exact size, which folds
        queued rows in, only when the cheap bound says it may have)."""
        mem = table.memtable
        if mem.n_rows >= self.options.seal_rows:
            return True
        if mem.nbytes_bound < self.options.seal_bytes:
            return False
        with table.lock:
            return table.memtable.nbytes >= self.options.seal_bytes

    def seal(self, table_id: int) -> Segment | None:
        """Seal the table's growing segment now: Parquet file, manifest, then index builds.

        Also writes any earlier frozen segment whose file could not be written (a full disk):
        until it is, the WAL keeps its rows and the checkpoint stays before them."""
        table = self.tables.get(table_id)
        if table is None:
            return None
        with self._apply_lock:
            seg = table.freeze(self.applied_lsn)
        with self._seal_lock:
            with table.lock:
                unwritten = [s for s in table.sealing if s.path is None]
            if not unwritten:
                return seg
            # A table dropped meanwhile (the suite's DROP right after its COPY) stops the
            # write at the next file: its rows are gone, and the files with them.
            def live() -> bool:
                return self.tables.get(table_id) is table

            try:
                for frozen in unwritten:
                    self.write_segment(table, frozen, live)
            except (WriteAbandoned, SqlVecError):
                if live():
                    raise
                for frozen in unwritten:
                    self.release_segment_files(frozen)
                return None
            with self._manifest_lock:
                # The checkpoint LSN only passes segments whose earlier siblings are durable too.
                with table.lock:
                    while table.sealing and table.sealing[0].path is not None:
                        done = table.sealing.pop(0)
                        table.checkpoint_lsn = max(table.checkpoint_lsn,
                                                   done.freeze_lsn)  # type: ignore[attr-defined]
                self._commit_manifest()
            # Released only once a manifest lists them: until then garbage collection must
            # not take a written file (a failed manifest commit is retried by the next seal).
            for frozen in unwritten:
                self.release_segment_files(frozen)
        self._schedule_missing_builds(table)
        return_free_memory()
        return seg

    def checkpoint(self) -> None:
        """Seal every growing segment and persist deletes, then drop WAL files now redundant."""
        for table in list(self.tables.values()):
            self.seal(table.id)
        with self._manifest_lock:
            self._commit_manifest()

    def _wal_bytes_since_checkpoint(self) -> int:
        assert self._wal is not None
        return self._wal.bytes_appended - self._wal_checkpointed_bytes

    # Manifest -----------------------------------------------------------------------------------

    def _commit_manifest(self) -> None:
        """Write a new manifest version from the current state (caller holds manifest lock).

        Committing and the removals that follow it run under the backup lock, keeping what
        running backups have pinned (backup.py). While a transaction's schema changes are
        open (`begin_deferred`) nothing is written: the state in memory is then ahead of the
        manifest until `commit_deferred` writes it all as one version, or `restore` takes it
        back; plans cached against it are invalidated all the same."""
        if self._deferred is not None:
            with self._manifest_lock:
                if self._deferred is not None:
                    self.generation += 1
                    return
        with self._manifest_lock, self._pins.guard() as pins:
            self._commit_manifest_pinned(pins)

    def _commit_manifest_pinned(self, pins: Pins) -> None:
        with self._manifest_lock, self._apply_lock:
            version = (self._manifests.versions() or [0])[-1] + 1
            try:
                tables = [self._table_meta(t, version) for t in self.tables.values()]
                body = {
                    "next_table_id": self.next_table_id,
                    "next_oid": self.next_oid,
                    "catalog": self.catalog,
                    "tables": tables,
                    "applied_lsn": self.applied_lsn,
                }
                log_from = self._log_from(tables)  # after the checkpoints: see `log_piece`
                if log_from is not None:
                    body["log_from"] = log_from
                manifest = self._manifests.commit(body, features=FEATURES,
                                                  pinned=pins.versions)
            except OSError as exc:
                raise storage_error(exc, "write", exc.filename or self._manifests.path) \
                    from exc
            self.generation += 1
            self.manifest_version = manifest.version
            self._forget_lasting()
        self._truncate_wal(body, pins)
        # Under the manifest lock: a file written for the next version is either still in
        # flight (protected) or already listed in a version this pass reads, never in between.
        with self._manifest_lock:
            self._collect_garbage()

    def _forget_lasting(self) -> None:
        """A manifest written outside schema changes holds every lasting catalog field."""
        if self._lasting_written:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.directory, LASTING_FILE))
            self._lasting_written = False

    def _commit_manifest_or_undo(self, undo: Callable[[], object]) -> None:
        """Commit a catalog change already made in memory, or take it back if the manifest
        cannot be written (a full disk): memory never runs ahead of what a restart finds."""
        try:
            self._commit_manifest()
        except BaseException:
            undo()
            raise

    def _table_meta(self, table: Table, version: int) -> dict:
        if isinstance(table, UnavailableTable):
            # Carried over unchanged: its checkpoint keeps the WAL it needs, its files stay
            # referenced (never collected), and a restored file brings it back on restart.
            return table.meta
        with table.lock:
            if table.memtable.n_rows == 0 and not table.sealing:
                # Nothing of the table is only in the log: the checkpoint passes every record,
                # and stays past them once rows arrive again (the log before it may be gone).
                table.checkpoint_lsn = max(table.checkpoint_lsn, self.applied_lsn)
            checkpoint = table.checkpoint_lsn
            segments = []
            for seg in table.sealed:
                if seg.path is None or any(seg is s for s in table.sealing):
                    continue
                meta = seg.to_meta()
                meta["deletes"] = self._persist_deletes(table, seg, version)
                segments.append(meta)
            entry = {
                "def": table.def_.to_json(),
                "checkpoint_lsn": checkpoint,
                "next_rowid": table.next_rowid,
                "next_segment_id": table.next_segment_id,
                "segments": segments,
            }
        unlogged = self._unlogged_commits.get(table.id)
        if unlogged:
            entry["unlogged_commits"] = unlogged
        return entry

    def _persist_deletes(self, table: Table, seg: Segment, version: int) -> dict | None:
        bitmap = table.deletes[seg.id]
        if bitmap.count == 0:
            table.persisted_deletes.pop(seg.id, None)
            return None
        known = table.persisted_deletes.get(seg.id)
        if known is None or not (known[1] is bitmap or known[1] == bitmap):
            name = f"seg-{seg.id:08d}.v{version:08d}.del"
            bitmap.write(os.path.join(table.directory, name))
            known = (name, bitmap)
            table.persisted_deletes[seg.id] = known
        return {"file": known[0], "count": bitmap.count}

    def _truncate_wal(self, body: dict, pins: Pins) -> None:
        if self._wal is None:
            return
        oldest = log_start(body)
        if pins.wal_from is not None:
            oldest = min(oldest, pins.wal_from)
        self._wal.truncate_before(oldest)
        self._wal_checkpointed_bytes = self._wal.bytes_appended

    def _collect_garbage(self) -> None:
        """Remove table directories and files no retained manifest version refers to."""
        referenced: dict[str, set[str]] = {}
        live_tables: set[str] = set()
        for version in self._manifests.versions():
            try:
                body = self._manifests.load(version).body
            except SqlVecError:
                continue
            for tmeta in body["tables"]:
                tid = str(tmeta["def"]["id"])
                live_tables.add(tid)
                names = referenced.setdefault(tid, set())
                for smeta in tmeta["segments"]:
                    names.update(f["file"] for f in segment_files(smeta))
                    names.update(m["file"] for m in (smeta.get("indexes") or {}).values())
                    if smeta.get("deletes"):
                        names.add(smeta["deletes"]["file"])
        live_tables.update(str(tid) for tid in self.tables)
        root = os.path.join(self.directory, "tables")
        for entry in os.listdir(root):
            path = os.path.join(root, entry)
            if entry not in live_tables:
                shutil.rmtree(path, ignore_errors=True)
                continue
            keep = referenced.get(entry, set()) | self._inflight_files
            for name in os.listdir(path):
                if name in keep or name.endswith(".tmp") or name.startswith("."):
                    continue
                try:
                    os.remove(os.path.join(path, name))
                except OSError:
                    pass

    # Indexes ------------------------------------------------------------------------------------

    def create_index(self, table_id: int, index: IndexDef, *, if_not_exists: bool = False,
                     progress: Callable[[int, int], None] | None = None,
                     report: CreateIndexProgress | None = None) -> IndexDef | None:
        """Add an index and build it on every sealed segment before returning (as PostgreSQL's
        CREATE INDEX does). Segments sealed later are indexed in the background. `progress`
        gets (rows done, rows total); `report` is kept up to date as the build goes."""
        with self._manifest_lock:
            table = self.table(table_id)
            if any(ix.name == index.name for t in self.tables.values() for ix in t.def_.indexes):
                if if_not_exists:
                    return None
                raise DuplicateTable(f'relation "{index.name}" already exists')
            sparse = False
            if index.method not in ("btree", "gin"):  # a vector access method (0A000 for an unknown one)
                columns = access_methods.key_columns(table.def_, index)
                access_methods.check_definition(index.method, columns, index.opclass,
                                                index.options.items())
                sparse = columns[0].type.is_sparse
                if sparse:  # pgvector's limit holds for the rows already there too
                    access_methods.check_sparse_rows(index, _sparse_lengths(
                        table.snapshot().scan([columns[0].name]), columns[0].name))
        if access_methods.find(index.method) is not None:
            self._merge_unindexed(table_id)
        self.alter_table(table_id, lambda d: d.with_changes(indexes=d.indexes + (index,)))
        if access_methods.find(index.method) is None:
            return index  # nothing to build per segment
        # Seal the growing segment first: every row that exists now gets indexed now.
        self.seal(table_id)
        table = self.table(table_id)
        segments = [s for s in table.sealed]
        total = sum(s.n_rows for s in segments)
        if report is not None:
            report.segments_total, report.rows_total = len(segments), total
            report.phase = "building index: loading tuples"
            report.builds = self.builds
        done = 0
        for seg in segments:
            if report is not None:
                report.key, report.base = (table.id, index.name, seg.id), done
            def seg_progress(n: int, _t: int, base=done, rows=seg.n_rows) -> None:
                if report is not None:
                    report.rows_done = max(report.rows_done, base + min(n, rows))
                if progress is not None:
                    progress(base + n, total)

            def seg_phase(phase: str) -> None:
                if report is not None:
                    report.phase = f"building index: {_PHASES.get(phase, phase)}"
            self._build_index(table, seg, index, seg_progress, seg_phase)
            done += seg.n_rows
            if report is not None:
                report.rows_done, report.segments_done = done, report.segments_done + 1
            if progress is not None:  # also when a background build got to the segment first
                progress(done, total)
        return index

    def drop_index(self, name: str, *, if_exists: bool = False) -> None:
        """Drop the index called `name` from whichever table has it (its files go at once, not
        when the last manifest version naming them is pruned: `alter_table`)."""
        for table in list(self.tables.values()):
            if any(ix.name == name for ix in table.def_.indexes):
                self.alter_table(
                    table.id,
                    lambda d: d.with_changes(indexes=tuple(i for i in d.indexes if i.name != name)))
                return
        if not if_exists:
            raise UndefinedObject(f'index "{name}" does not exist')

    def _schedule_missing_builds(self, table: Table) -> None:
        for seg in list(table.sealed):
            if seg.path is None:
                continue
            for ix in access_methods.vector_indexes(table.def_):
                if seg.index(ix.name) is None:
                    if self.options.background:
                        self._build_queue.put(("build", (table.id, seg.id, ix.name)))
                    else:
                        self._build_index(table, seg, ix)

    def _build_index(self, table: Table, seg: Segment, index: IndexDef,
                     progress: Callable[[int, int], None] | None = None,
                     phase: Callable[[str], None] | None = None) -> None:
        """Build one index on one sealed segment and record it in a new manifest version."""
        with self._build_lock:
            if seg.index(index.name) is not None or seg not in table.sealed:
                return
            key = (table.id, index.name, seg.id)
            if not self.build_detached(table, seg, index, progress, phase, keep=True):
                return
            build = self.builds.get(key)  # listed until the manifest lists the file
            try:
                with self._manifest_lock:
                    if seg not in table.sealed or index not in table.def_.indexes:
                        seg.detach_index(index.name)
                        return
                    if seg.path is not None:
                        self._commit_manifest()
            finally:
                if self.builds.get(key) is build:
                    self.builds.pop(key, None)
                self.release_segment_files(seg)

    def build_detached(self, table: Table, seg: Segment, index: IndexDef,
                       progress: Callable[[int, int], None] | None = None,
                       phase: Callable[[str], None] | None = None, *,
                       keep: bool = False) -> bool:
        """Build and save `index` for `seg` and attach it; the manifest is the caller's job
        (the file stays protected from garbage collection until `release_segment_files`).
        The build stays listed in `builds` (done, phase) until attached, or, with `keep`,
        until the caller takes it off once the manifest lists it."""
        if index not in table.def_.indexes:
            return False
        # An expression index is built over the expression's values (the column cast, or its
        # binary_quantize bits, once per segment), exactly as an index on a column of that type.
        matrix, valid = access_methods.index_rows(seg, table.def_, index)
        key = (table.id, index.name, seg.id)
        build = BuildProgress(table.def_.name, index.name, seg.id, 0, seg.n_rows, time.time())
        self.builds[key] = build

        def report(done: int, total: int) -> None:
            build.done = max(build.done, min(done, seg.n_rows))
            if progress is not None:
                progress(done, total)

        def step(name: str) -> None:
            build.phase = name
            if phase is not None:
                phase(name)

        method = access_methods.structure(index)
        attached = False
        try:
            step("building")
            try:
                built = method.build(matrix, access_methods.params_of(index), valid=valid,
                                     num_threads=self.options.index_threads, progress=report,
                                     should_stop=lambda: self._closed)
            except IndexBuildCancelled:
                return False
            build.done = seg.n_rows
            step("calibrating")
            built.calibration = built.calibrate(matrix, valid)
            seg.release_mapped_pages()
            return_free_memory()
            step("saving")
            name = access_methods.file_name(seg.id, index)
            path = os.path.join(table.directory, name)
            self._inflight_files.add(name)
            try:
                crc = built.save(path)
            except OSError as exc:
                raise storage_error(exc, "write", path) from exc
            if hasattr(built, "reload_saved"):  # HNSW: its saved graph loads smaller
                built.reload_saved(path, crc)
                return_free_memory()  # the built graph's heap blocks
            seg.attach_index(index.name, built)
            seg.index_files[index.name] = (name, crc)
            attached = True
            return True
        finally:
            if not (keep and attached) and self.builds.get(key) is build:
                self.builds.pop(key, None)

    def write_segment(self, table: Table, seg: Segment,
                      wanted: Callable[[], bool] | None = None) -> None:
        """Write a new segment's file, protected from garbage collection until released
        (`Segment.write`'s `wanted`: WriteAbandoned once it says no)."""
        self._inflight_files.update(Segment.file_names(seg.id))
        try:
            seg.write(table.directory, wanted)
        except OSError as exc:
            raise storage_error(exc, "write", os.path.join(table.directory,
                                                            Segment.file_name(seg.id))) from exc

    def release_segment_files(self, seg: Segment | None) -> None:
        """Let garbage collection see a segment's files (and its indexes') again once a manifest
        references them or the segment is abandoned."""
        if seg is None:
            return
        self._inflight_files.difference_update(Segment.file_names(seg.id))
        for name, _crc in list(seg.index_files.values()):
            self._inflight_files.discard(name)

    # Compaction ---------------------------------------------------------------------------------

    def compact(self, table_id: int) -> int:
        """Run the compaction policy on one table now; returns the number of merges done."""
        table = self.table(table_id)
        return self._merge(table, compaction.pick_segments(table, self.options.compaction))

    def _merge(self, table: Table, groups: list[list[Segment]], build_indexes: bool = True) -> int:
        """Merge each group into one segment; returns the number of merges done."""
        merges = 0
        for group in groups:
            if compaction.run(self, table, group, build_indexes=build_indexes):
                merges += 1
        if merges:
            table.stats.compactions += merges
            table.stats.last_compaction = time.time()
        return merges

    def _merge_unindexed(self, table_id: int) -> None:
        """Before a CREATE INDEX: seal, then merge adjacent segments no vector index covers
        (the loads since the last one) up to the policy's target size, so the index is built
        as one structure over them, which a search then reads once, not one per segment.
        Rewriting costs I/O only; the old segments stay searchable until the swap. Not inside
        a transaction's schema changes, whose manifest is written only at COMMIT."""
        if self.deferred:
            return
        self.seal(table_id)
        table = self.table(table_id)
        self._merge(table, compaction.pick_unindexed(table, self.options.compaction),
                    build_indexes=False)

    def replace_segments(self, table: Table, old: list[Segment], new: Segment | None,
                         started: dict[int, DeleteBitmap]) -> bool:
        """Commit a compaction: swap `old` for `new`, carrying deletes made while it ran."""
        with self._manifest_lock, self._apply_lock:
            if any(s not in table.sealed for s in old):
                return False
            carried = None
            if new is not None:
                later = [np.asarray(s.rowids[table.deletes[s.id].newly_deleted_since(started[s.id])])
                         for s in old]
                rowids = np.concatenate(later) if later else np.empty(0, np.int64)
                carried = DeleteBitmap.empty(new.n_rows)
                if rowids.size:
                    found, pos = new.positions_of(rowids)
                    carried = carried.with_deleted(pos[found])
            table.replace_segments(old, new, carried)
            self._commit_manifest()
            return True

    # Background work ----------------------------------------------------------------------------

    def release_inherited_lock(self) -> None:
        """In a process forked from this store's: close the LOCK descriptor it inherited (see
        `Database.release_inherited_lock`); the store must not be used there."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def start_background(self) -> None:
        """Start the background threads of a store opened with `start_background=False`."""
        if self.options.background and not self._threads and not self._closed:
            self._start_workers()

    def _start_workers(self) -> None:
        for target, q in ((self._seal_worker, self._seal_queue), (self._build_worker, self._build_queue)):
            thread = threading.Thread(target=target, args=(q,), daemon=True,
                                      name=f"sqlvec-{target.__name__.strip('_')}")
            thread.start()
            self._threads.append(thread)

    def _seal_worker(self, q: queue.Queue) -> None:
        self._work(q, self._run_seal_task)

    def _build_worker(self, q: queue.Queue) -> None:
        self._work(q, self._run_build_task)

    def _work(self, q: queue.Queue, run: Callable) -> None:
        while True:
            task = q.get()
            if task is None:
                return
            with self._busy_cond:
                self._busy += 1
            try:
                if not self._closed:
                    run(*task)
            except SqlVecError as exc:  # e.g. a full disk: nothing is lost, the work is retried
                log.warning("background task %s failed: %s", task, exc.message)
            except Exception:  # background work must never die silently
                log.exception("background task %s failed", task)
            finally:
                with self._busy_cond:
                    self._busy -= 1
                    self._busy_cond.notify_all()

    def _run_seal_task(self, kind: str, table_id: int | None) -> None:
        if kind == "seal":
            table = self.tables.get(table_id)  # type: ignore[arg-type]
            if table is not None and self._seal_due(table):
                self.seal(table.id)
                self._build_queue.put(("compact", table.id))
        elif kind == "checkpoint":
            self.checkpoint()

    def _run_build_task(self, kind: str, arg) -> None:
        if kind == "build":
            table_id, seg_id, index_name = arg
            table = self.tables.get(table_id)
            if table is None:
                return
            seg = next((s for s in table.sealed if s.id == seg_id), None)
            index = next((ix for ix in access_methods.vector_indexes(table.def_)
                          if ix.name == index_name), None)
            if seg is not None and index is not None:
                self._build_index(table, seg, index)
        elif kind == "compact":
            if arg in self.tables:
                self.compact(arg)

    def wait_idle(self, timeout: float = 300.0) -> None:
        """Block until background queues are empty and no task runs (for tests and tools)."""
        deadline = time.monotonic() + timeout
        with self._busy_cond:
            while self._busy or not self._seal_queue.empty() or not self._build_queue.empty():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("background work did not finish")
                self._busy_cond.wait(min(left, 0.05))


@dataclass
class _TableImage:
    """One table's in-memory state, to put back when schema changes are rolled back. Segments,
    delete bitmaps and growing segments are replaced, never changed, by schema changes, so
    keeping references keeps the state (the unique key indexes are rebuilt)."""

    table: Table
    fields: tuple
    attached: list[tuple[Segment, tuple[dict, dict]]]

    _NAMES = ("def_", "memtable", "sealed", "deletes", "persisted_deletes", "sealing", "keys",
              "checkpoint_lsn", "next_segment_id", "next_rowid", "_key_epoch")

    @classmethod
    def of(cls, table: Table) -> _TableImage:
        with table.lock:
            values = tuple(getattr(table, n) for n in cls._NAMES)
            copied = tuple(list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict)
                           else v for v in values)
            attached = [(seg, seg.attachments()) for seg in table.sealed]
        return cls(table, copied, attached)

    def changed(self) -> bool:
        """Whether the table's state is no longer the one saved (index attachments aside)."""
        return not all(_same(getattr(self.table, n), v) for n, v in zip(self._NAMES, self.fields))

    def restore(self) -> None:
        """Put the table back as it was (the key indexes rebuilt only if anything changed)."""
        table = self.table
        with table.lock:
            for seg, saved in self.attached:
                seg.restore_attachments(saved)
            if not self.changed():
                return
            for name, value in zip(self._NAMES, self.fields):
                setattr(table, name, list(value) if isinstance(value, list)
                        else dict(value) if isinstance(value, dict) else value)
            table._key_epoch += 1
            table._invalidate()
            table.rebuild_keys()


def _same(now: object, saved: object) -> bool:
    """Whether a table field still holds what was saved (the same objects, not equal ones)."""
    if isinstance(saved, list):
        return isinstance(now, list) and len(now) == len(saved) and \
            all(a is b for a, b in zip(now, saved))
    if isinstance(saved, dict):
        return isinstance(now, dict) and now.keys() == saved.keys() and \
            all(now[k] is saved[k] for k in saved)
    return now is saved or now == saved


@dataclass
class StoreImage:
    """What `Store.restore` puts back: the catalog, the tables and each table's state."""

    catalog: dict
    tables: dict[int, Table]
    table_images: list[_TableImage]


def with_entry_fields(catalog: dict, section: str, key: str, fields: dict) -> dict:
    """The catalog with `fields` set on its entry `section`/`key` (a new dict, sharing the
    rest: images of the catalog stay as they were)."""
    entries = dict(catalog[section])
    entries[key] = {**entries[key], **fields}
    return {**catalog, section: entries}


def _with_lasting(catalog: dict, section: str, key: str, identity: dict, fields: dict) -> dict:
    """The catalog with `fields` set on its entry `section`/`key` if that is still the same
    object (its `identity` fields unchanged); as it was if it is gone or another one."""
    entry = catalog.get(section, {}).get(key)
    if entry is None or any(entry.get(name) != value for name, value in identity.items()):
        return catalog
    return with_entry_fields(catalog, section, key, fields)


@dataclass
class _Deferred:
    """Open schema changes: the state before them, and the files to remove once committed."""

    image: StoreImage
    dropped_tables: list[Table] = field(default_factory=list)
    dropped_indexes: list[tuple[Table, IndexDef]] = field(default_factory=list)
    # Catalog fields no rollback takes back (`update_catalog_lasting`), by section, key and
    # identity: the latest of each.
    lasting: dict[tuple[str, str, tuple], dict] = field(default_factory=dict)


class UnavailableTable(Table):
    """A table whose files failed their checks when the database was opened.

    It stays in the catalog (listed, droppable) but every read and write fails with XX001
    naming the file. Nothing of it is loaded, replayed or written: each new manifest carries its
    entry over verbatim, so its files stay referenced and its checkpoint LSN keeps every WAL
    record it needs. Restoring the file and restarting brings the table back whole; DROP TABLE
    removes it."""

    def __init__(self, table_def: TableDef, directory: str, meta: dict,
                 damage: tuple[str, str | None]) -> None:
        super().__init__(table_def, directory, memtable_rows=1)
        self.meta = meta
        self.damage = damage
        self.checkpoint_lsn = int(meta["checkpoint_lsn"])
        self.next_rowid = int(meta["next_rowid"])
        self.next_segment_id = int(meta["next_segment_id"])

    def error(self) -> DataCorrupted:
        """The error every access gets (a new one each time: it is raised from many threads)."""
        what, detail = self.damage
        d = self.def_
        name = d.name if d.schema == "public" else f"{d.schema}.{d.name}"
        found = "It was found when the database was opened; the table's files and write-ahead " \
                "log records are kept unchanged until it is restored or dropped."
        return DataCorrupted(
            f'could not read table "{name}": {what}',
            detail=f"{detail} {found}" if detail else found,
            hint="Restore the file from a backup and restart the server: the table comes back "
                 f"with every committed change. Or drop the table (DROP TABLE {name}). "
                 "`sqlvec check` lists every damaged file.")

    def snapshot(self) -> TableSnapshot:
        """Every read fails with the error that made the table unavailable."""
        raise self.error()

    def prepare(self, ops: list) -> list:
        """Every write fails with the error that made the table unavailable."""
        raise self.error()

    def apply(self, op) -> None:
        """WAL replay skips its ops: they stay in the log for when the table is restored."""

    def freeze(self, applied_lsn: int) -> Segment | None:
        """Nothing to seal: nothing of the table is in memory."""
        return None


def _check_unique(table_def: TableDef, rows: pa.Table) -> None:
    """A rewrite must keep every unique key unique (23505, as PostgreSQL's index rebuild)."""
    for key in table_def.unique_keys:
        keys = UniqueKey(key, table_def).keys_of(rows, physical=True)
        duplicate: object = None
        if keys.dtype == object:
            seen: set = set()
            for k in keys.tolist():
                if k in seen:
                    duplicate = k
                    break
                seen.add(k)
        elif keys.size > 1:
            ordered = np.sort(keys)
            same = np.flatnonzero(ordered[1:] == ordered[:-1])
            duplicate = int(ordered[same[0]]) if same.size else None
        if duplicate is not None:
            shown = ", ".join(str(v) for v in (duplicate if isinstance(duplicate, tuple)
                                               else (duplicate,)))
            raise UniqueViolation(f'could not create unique index "{key.name}"',
                                  detail=f"Key ({', '.join(key.columns)})=({shown}) is "
                                         "duplicated.")


def _by_table(ops: Sequence) -> Sequence[tuple[int, Sequence]]:
    """A commit's ops grouped by table, in order of first appearance (one table, the usual
    case, without building a dict)."""
    if not ops:
        return ()
    first = ops[0].table_id
    for op in ops:
        if op.table_id != first:
            break
    else:
        return ((first, ops),)
    groups: dict[int, list] = {}
    for op in ops:
        groups.setdefault(op.table_id, []).append(op)
    return tuple(groups.items())


def return_free_memory() -> None:
    """Hand freed heap pages back to the OS after large buffers die (a sealed growing segment,
    a statement that held a lot, connections closed): glibc keeps freed blocks below its mmap
    threshold in the heap otherwise, and Arrow's allocator (mimalloc or jemalloc) its freed
    pages, and resident memory would stay at the peak."""
    global _malloc_trim
    pa.default_memory_pool().release_unused()
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


def _sparse_lengths(parts, name: str):
    """The non-zero element counts of a sparsevec column's rows, part by part."""
    for part in parts:
        column = part.column(name).combine_chunks()
        lengths = pc.list_value_length(pc.struct_field(column, "indices"))
        if len(lengths):
            yield int(pc.max(lengths).as_py() or 0)
