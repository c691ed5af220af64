"""One database directory: WAL, manifest, tables, and the background work that keeps them.

Layout of `<data-dir>/<database>/`:

    manifest/manifest-<version>.json   versioned, checksummed (manifest.py)
    wal/<first-lsn>.wal                the write-ahead log (wal.py)
    tables/<table-id>/seg-<id>.parquet sealed segments (segment.py)
    tables/<table-id>/seg-<id>.<index-oid>.hnsw       one HNSW graph per index (hnsw.py)
    tables/<table-id>/seg-<id>.v<manifest-version>.del delete bitmaps (deletes.py)

Manifest body (format_version 1; features wal-v1, hnsw-per-segment, delete-bitmaps):

    next_table_id  int   table ids are never reused, so WAL records of a dropped table are skipped
    next_oid       int   next OID for tables, indexes and other catalog objects (from 16400)
    catalog        dict  owned by the catalog layer (schemas, roles, sequences, extensions...)
    tables         list  per table:
      def            TableDef.to_json(): name, schema, columns, primary key, indexes
      checkpoint_lsn int   every WAL op on this table with LSN <= this is in the files below;
                           recovery replays the table's ops after it
      next_rowid     int   an upper bound of the row ids in use
      next_segment_id int
      segments       list  Segment.to_meta() + "deletes": {"file", "count"} or null

Commit pipeline (`Store.commit`): under the commit lock every table `prepare`s its ops (checks and
reservations) and the record is appended to the WAL; outside the lock the WAL's group commit
makes it durable; then whoever holds the apply lock applies every durable record in LSN order.
A commit is visible to readers only once it is durable, and atomically (one snapshot swap per
table, all tables of a commit applied under the same lock).
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from sqlvec.errors import (
    DataCorrupted,
    DataException,
    DuplicateTable,
    SqlVecError,
    UndefinedObject,
    UndefinedTable,
)
from sqlvec.storage import compaction
from sqlvec.storage.deletes import DeleteBitmap
from sqlvec.storage.hnsw import HnswIndex, HnswParams, IndexBuildCancelled
from sqlvec.storage.manifest import (
    FEATURE_DELETE_BITMAPS,
    FEATURE_HNSW_PER_SEGMENT,
    FEATURE_WAL_V1,
    ManifestStore,
)
from sqlvec.storage.schema import ColumnDef, IndexDef, TableDef
from sqlvec.storage.search import calibrate
from sqlvec.storage.segment import Segment
from sqlvec.storage.table import Table
from sqlvec.storage.wal import (
    DeleteOp,
    InsertOp,
    TruncateOp,
    WriteAheadLog,
    decode_commit,
    encode_commit,
)
from sqlvec.vectors import Metric

log = logging.getLogger("sqlvec.storage")

FEATURES = (FEATURE_WAL_V1, FEATURE_HNSW_PER_SEGMENT, FEATURE_DELETE_BITMAPS)
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
    index_threads: int = 0  # hnswlib threads per build; 0 = all cores
    compaction: compaction.CompactionPolicy = field(default_factory=lambda: compaction.CompactionPolicy())


@dataclass
class BuildProgress:
    """One index build over one segment, as `sqlvec_indexes` shows it."""

    table: str
    index: str
    segment: int
    done: int
    total: int
    started: float


class Store:
    """A database: its tables and their durable state. Thread-safe."""

    def __init__(self, directory: str, options: StoreOptions) -> None:
        self.directory = directory
        self.options = options
        self.tables: dict[int, Table] = {}
        self.catalog: dict = {}
        self.next_table_id = 1
        self.next_oid = FIRST_OID
        self.applied_lsn = 0
        # Bumped on every manifest commit: plans cached above storage compare it to know whether
        # the schema they were planned against may have changed.
        self.generation = 0
        self.builds: dict[tuple[int, str, int], BuildProgress] = {}
        self._manifests = ManifestStore(directory, keep=options.manifest_keep)
        self._commit_lock = threading.Lock()
        self._apply_lock = threading.RLock()
        self._manifest_lock = threading.RLock()
        self._build_lock = threading.Lock()
        self._pending: deque[tuple[int, list]] = deque()
        self._inflight_files: set[str] = set()
        self._closed = False
        self._wal: WriteAheadLog | None = None
        self._wal_checkpointed_bytes = 0
        self._seal_queue: queue.Queue = queue.Queue()
        self._build_queue: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._busy_cond = threading.Condition()

    # Opening and closing ------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: str, options: StoreOptions | None = None) -> Store:
        """Open (or create) a database directory and recover it: manifest, then WAL replay."""
        store = cls(directory, options or StoreOptions())
        os.makedirs(os.path.join(directory, "tables"), exist_ok=True)
        store._load_manifest()
        store._wal = WriteAheadLog.open(
            os.path.join(directory, "wal"), fsync=store.options.fsync,
            segment_bytes=store.options.wal_segment_bytes)
        store._replay()
        store._collect_garbage()
        if store.options.background:
            store._start_workers()
        for table in store.tables.values():
            store._schedule_missing_builds(table)
            store._maybe_seal(table)
        return store

    def _load_manifest(self) -> None:
        manifest = self._manifests.load_latest()
        if manifest is None:
            self._commit_manifest()
            return
        body = manifest.body
        self.next_table_id = int(body["next_table_id"])
        self.next_oid = int(body["next_oid"])
        self.catalog = body.get("catalog") or {}
        for tmeta in body["tables"]:
            table_def = TableDef.from_json(tmeta["def"])
            table = Table(table_def, self._table_dir(table_def.id), self.options.seal_rows)
            table.checkpoint_lsn = int(tmeta["checkpoint_lsn"])
            table.next_rowid = int(tmeta["next_rowid"])
            table.next_segment_id = int(tmeta["next_segment_id"])
            for smeta in tmeta["segments"]:
                seg = Segment.open(table.directory, smeta)
                table.sealed.append(seg)
                dmeta = smeta.get("deletes")
                if dmeta:
                    path = os.path.join(table.directory, dmeta["file"])
                    bitmap = DeleteBitmap.read(path, seg.n_rows)
                    table.persisted_deletes[seg.id] = (dmeta["file"], bitmap)
                else:
                    bitmap = DeleteBitmap.empty(seg.n_rows)
                table.deletes[seg.id] = bitmap
                self._load_indexes(table, seg, smeta.get("indexes") or {})
            table.rebuild_keys()
            self.tables[table.id] = table

    def _load_indexes(self, table: Table, seg: Segment, metas: dict) -> None:
        for ix in table.def_.hnsw_indexes:
            meta = metas.get(ix.name)
            if meta is None:
                continue
            path = os.path.join(table.directory, meta["file"])
            col = table.def_.column(ix.columns[0])
            try:
                index = HnswIndex.load(path, _params(ix), col.type.dims,
                                       expected_crc=int(meta["crc32"]))
            except DataCorrupted as exc:
                log.warning("%s; rebuilding it from the segment", exc.message)
                continue
            index.calibration = [(int(e), float(r)) for e, r in meta.get("calibration") or []]
            seg.attach_index(ix.name, index)
            seg.index_files[ix.name] = (meta["file"], int(meta["crc32"]))

    def _replay(self) -> None:
        assert self._wal is not None
        start = min((t.checkpoint_lsn for t in self.tables.values()), default=self._wal.last_lsn)
        replayed = 0
        for lsn, payload in self._wal.replay(after_lsn=start):
            for op in decode_commit(payload):
                table = self.tables.get(op.table_id)
                if table is not None and lsn > table.checkpoint_lsn:
                    table.apply(op)
            self.applied_lsn = lsn
            replayed += 1
        self.applied_lsn = max(self.applied_lsn, self._wal.last_lsn)
        if replayed:
            log.info("replayed %d WAL records after LSN %d", replayed, start)

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

    # Catalog of tables --------------------------------------------------------------------------

    def allocate_oid(self) -> int:
        with self._manifest_lock:
            oid = self.next_oid
            self.next_oid += 1
            return oid

    def table(self, table_id: int) -> Table:
        try:
            return self.tables[table_id]
        except KeyError:
            raise UndefinedTable(f"table {table_id} does not exist") from None

    def find_table(self, name: str, schema: str = "public") -> Table | None:
        for table in self.tables.values():
            if table.def_.name == name and table.def_.schema == schema:
                return table
        return None

    def create_table(self, name: str, columns: Sequence[ColumnDef], *, schema: str = "public",
                     primary_key: Sequence[str] = ()) -> TableDef:
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
            self._commit_manifest()
            return table_def

    def drop_table(self, table_id: int) -> None:
        with self._manifest_lock, self._commit_lock:
            self._drain()
            table = self.tables.pop(table_id, None)
            if table is None:
                raise UndefinedTable(f"table {table_id} does not exist")
            self._commit_manifest()
        shutil.rmtree(table.directory, ignore_errors=True)

    def alter_table(self, table_id: int, change: Callable[[TableDef], TableDef]) -> TableDef:
        """Apply a definition change (rename, add/drop/rename column) atomically."""
        with self._manifest_lock, self._commit_lock:
            self._drain()
            table = self.table(table_id)
            new_def = change(table.def_)
            if new_def.name != table.def_.name or new_def.schema != table.def_.schema:
                other = self.find_table(new_def.name, new_def.schema)
                if other is not None and other is not table:
                    raise DuplicateTable(f'relation "{new_def.name}" already exists')
            table.set_def(new_def)
            self._commit_manifest()
            return new_def

    def update_catalog(self, change: Callable[[dict], dict]) -> dict:
        """Change the catalog layer's own persisted state (schemas, roles, sequences...)."""
        with self._manifest_lock:
            self.catalog = change(dict(self.catalog))
            self._commit_manifest()
            return self.catalog

    # Writes -------------------------------------------------------------------------------------

    def commit(self, ops: Sequence) -> int:
        """Make a transaction's ops durable and visible, atomically. Returns its LSN.

        `ops` are InsertOp (rows in the table's logical schema, already coerced), DeleteOp
        (row ids) and TruncateOp, in the order they should apply."""
        if not ops:
            return self.applied_lsn
        by_table: dict[int, list] = {}
        for op in ops:
            by_table.setdefault(op.table_id, []).append(op)
        with self._commit_lock:
            if self._closed:
                raise SqlVecError("the database is shut down", sqlstate="57P01")
            assert self._wal is not None
            prepared: list = []
            done: list[tuple[Table, list]] = []
            try:
                for table_id, table_ops in by_table.items():
                    table = self.table(table_id)
                    ready = table.prepare(table_ops)
                    done.append((table, ready))
                    prepared.extend(ready)
                lsn = self._wal.append(encode_commit(prepared))
            except BaseException:
                for table, ready in done:
                    table.release(ready)
                raise
            self._pending.append((lsn, prepared))
        self._wal.sync(lsn)
        self._apply_durable()
        return lsn

    def _apply_durable(self) -> None:
        assert self._wal is not None
        touched: set[int] = set()
        truncated = False
        with self._apply_lock:
            durable = self._wal.durable_lsn
            while self._pending and self._pending[0][0] <= durable:
                lsn, ops = self._pending.popleft()
                by_table: dict[int, list] = {}
                for op in ops:
                    by_table.setdefault(op.table_id, []).append(op)
                for table_id, table_ops in by_table.items():
                    table = self.tables.get(table_id)
                    if table is None:
                        continue
                    # Under the table's lock, so no reader's snapshot falls between two ops of
                    # one commit (an UPDATE is a delete and an insert).
                    with table.lock:
                        for op in table_ops:
                            table.apply(op)
                    touched.add(table_id)
                    truncated |= any(isinstance(op, TruncateOp) for op in table_ops)
                for op in ops:
                    table = self.tables.get(op.table_id)
                    if table is not None:
                        table.release([op])
                self.applied_lsn = lsn
        for table_id in touched:
            table = self.tables.get(table_id)
            if table is not None:
                self._maybe_seal(table)
        if truncated or (self._wal.last_lsn and
                         self._wal_bytes_since_checkpoint() > self.options.checkpoint_wal_bytes):
            if self.options.background:
                self._seal_queue.put(("checkpoint", None))
            else:  # no worker would ever take it off the queue (and wait_idle would hang)
                self.checkpoint()

    def _drain(self) -> None:
        """Wait until every appended commit is applied (caller holds the commit lock)."""
        if self._wal is not None and self._pending:
            self._wal.sync(self._wal.last_lsn)
            self._apply_durable()

    def insert(self, table_id: int, rows: pa.Table | pa.RecordBatch | dict) -> int:
        """Autocommit insert of rows (coerced to the table's columns). Returns rows inserted."""
        table = self.table(table_id)
        data = table.coerce(rows)
        self.commit([InsertOp(table_id, data)])
        return data.num_rows

    def delete(self, table_id: int, rowids: Iterable[int] | np.ndarray) -> int:
        rowids = np.unique(np.asarray(list(rowids) if not isinstance(rowids, np.ndarray) else rowids,
                                      dtype=np.int64))
        if rowids.size:
            self.commit([DeleteOp(table_id, rowids)])
        return int(rowids.size)

    def truncate(self, table_id: int) -> None:
        self.commit([TruncateOp(table_id)])

    # Sealing and checkpoints --------------------------------------------------------------------

    def _maybe_seal(self, table: Table) -> None:
        mem = table.memtable
        if mem.n_rows >= self.options.seal_rows or mem.nbytes >= self.options.seal_bytes:
            if self.options.background:
                self._seal_queue.put(("seal", table.id))
            else:
                self.seal(table.id)

    def seal(self, table_id: int) -> Segment | None:
        """Seal the table's growing segment now: Parquet file, manifest, then index builds."""
        table = self.tables.get(table_id)
        if table is None:
            return None
        with self._apply_lock:
            seg = table.freeze(self.applied_lsn)
        if seg is None:
            return None
        try:
            self.write_segment(table, seg)
            with self._manifest_lock:
                # Seals may finish out of order (a checkpoint racing the background sealer): the
                # checkpoint LSN only passes segments whose earlier siblings are durable too.
                with table.lock:
                    while table.sealing and table.sealing[0].path is not None:
                        done = table.sealing.pop(0)
                        table.checkpoint_lsn = max(table.checkpoint_lsn,
                                                   done.freeze_lsn)  # type: ignore[attr-defined]
                self._commit_manifest()
        finally:
            self.release_segment_files(seg)
        self._schedule_missing_builds(table)
        _return_free_memory()
        return seg

    def checkpoint(self) -> None:
        """Seal every growing segment and persist deletes, then drop WAL files now redundant."""
        for table in list(self.tables.values()):
            self.seal(table.id)
        with self._manifest_lock:
            self._commit_manifest()

    def _wal_bytes_since_checkpoint(self) -> int:
        assert self._wal is not None
        return int(self._wal.stats.get("bytes", 0)) - self._wal_checkpointed_bytes

    # Manifest -----------------------------------------------------------------------------------

    def _commit_manifest(self) -> None:
        """Write a new manifest version from the current state (caller holds manifest lock)."""
        with self._manifest_lock, self._apply_lock:
            version = (self._manifests.versions() or [0])[-1] + 1
            tables = [self._table_meta(t, version) for t in self.tables.values()]
            body = {
                "next_table_id": self.next_table_id,
                "next_oid": self.next_oid,
                "catalog": self.catalog,
                "tables": tables,
            }
            self._manifests.commit(body, features=FEATURES)
            self.generation += 1
        self._truncate_wal(tables)
        # Under the manifest lock: a file written for the next version is either still in
        # flight (protected) or already listed in a version this pass reads, never in between.
        with self._manifest_lock:
            self._collect_garbage()

    def _table_meta(self, table: Table, version: int) -> dict:
        with table.lock:
            checkpoint = table.checkpoint_lsn
            if table.memtable.n_rows == 0 and not table.sealing:
                checkpoint = max(checkpoint, self.applied_lsn)
            segments = []
            for seg in table.sealed:
                if seg.path is None or any(seg is s for s in table.sealing):
                    continue
                meta = seg.to_meta()
                meta["deletes"] = self._persist_deletes(table, seg, version)
                segments.append(meta)
            return {
                "def": table.def_.to_json(),
                "checkpoint_lsn": checkpoint,
                "next_rowid": table.next_rowid,
                "next_segment_id": table.next_segment_id,
                "segments": segments,
            }

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

    def _truncate_wal(self, tables: list[dict]) -> None:
        if self._wal is None:
            return
        oldest = min((t["checkpoint_lsn"] for t in tables), default=self.applied_lsn)
        self._wal.truncate_before(oldest)
        self._wal_checkpointed_bytes = int(self._wal.stats.get("bytes", 0))

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
                    names.add(smeta["file"])
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

    def _table_dir(self, table_id: int) -> str:
        return os.path.join(self.directory, "tables", str(table_id))

    # Indexes ------------------------------------------------------------------------------------

    def create_index(self, table_id: int, index: IndexDef, *, if_not_exists: bool = False,
                     progress: Callable[[int, int], None] | None = None) -> IndexDef | None:
        """Add an index and build it on every sealed segment before returning (as PostgreSQL's
        CREATE INDEX does). Segments sealed later are indexed in the background."""
        with self._manifest_lock:
            table = self.table(table_id)
            if any(ix.name == index.name for t in self.tables.values() for ix in t.def_.indexes):
                if if_not_exists:
                    return None
                raise DuplicateTable(f'relation "{index.name}" already exists')
            if index.method == "hnsw":
                col = table.def_.column(index.columns[0])
                if not col.type.is_vector:
                    raise SqlVecError(
                        f'operator class "{index.opclass}" does not accept data type '
                        f"{col.type.format()}", sqlstate="42804")
                if col.type.dims is None:
                    raise DataException(f'column "{col.name}" does not have dimensions')
                _params(index)  # validates m / ef_construction
        self.alter_table(table_id, lambda d: d.with_changes(indexes=d.indexes + (index,)))
        if index.method != "hnsw":
            return index
        # Seal the growing segment first: every row that exists now gets indexed now.
        self.seal(table_id)
        table = self.table(table_id)
        segments = [s for s in table.sealed]
        total = sum(s.n_rows for s in segments)
        done = 0
        for seg in segments:
            def seg_progress(n: int, _t: int, base=done) -> None:
                if progress is not None:
                    progress(base + n, total)
            self._build_index(table, seg, index, seg_progress)
            done += seg.n_rows
            if progress is not None:  # also when a background build got to the segment first
                progress(done, total)
        return index

    def drop_index(self, name: str, *, if_exists: bool = False) -> None:
        for table in list(self.tables.values()):
            for ix in table.def_.indexes:
                if ix.name == name:
                    self.alter_table(
                        table.id,
                        lambda d: d.with_changes(indexes=tuple(i for i in d.indexes if i.name != name)))
                    for seg in table.sealed:
                        seg.detach_index(name)
                    with self._manifest_lock:
                        self._commit_manifest()
                    # The graphs go now, not when the last manifest version naming them is
                    # pruned: an old version that still lists one just rebuilds it if used.
                    suffix = f".{ix.oid}.hnsw"
                    for fname in os.listdir(table.directory):
                        if fname.endswith(suffix):
                            try:
                                os.remove(os.path.join(table.directory, fname))
                            except OSError:
                                pass
                    return
        if not if_exists:
            raise UndefinedObject(f'index "{name}" does not exist')

    def _schedule_missing_builds(self, table: Table) -> None:
        for seg in list(table.sealed):
            if seg.path is None:
                continue
            for ix in table.def_.hnsw_indexes:
                if seg.index(ix.name) is None:
                    if self.options.background:
                        self._build_queue.put(("build", (table.id, seg.id, ix.name)))
                    else:
                        self._build_index(table, seg, ix)

    def _build_index(self, table: Table, seg: Segment, index: IndexDef,
                     progress: Callable[[int, int], None] | None = None) -> None:
        """Build one index on one sealed segment and record it in a new manifest version."""
        with self._build_lock:
            if seg.index(index.name) is not None or seg not in table.sealed:
                return
            if not self.build_detached(table, seg, index, progress):
                return
            try:
                with self._manifest_lock:
                    if seg not in table.sealed or index not in table.def_.indexes:
                        seg.detach_index(index.name)
                        return
                    if seg.path is not None:
                        self._commit_manifest()
            finally:
                self.release_segment_files(seg)

    def build_detached(self, table: Table, seg: Segment, index: IndexDef,
                       progress: Callable[[int, int], None] | None = None) -> bool:
        """Build and save `index` for `seg` and attach it; the manifest is the caller's job
        (the file stays protected from garbage collection until `release_segment_files`)."""
        if index not in table.def_.indexes:
            return False
        col = table.def_.column(index.columns[0])
        matrix, valid = seg.vectors(col.physical, col.type.dims)
        key = (table.id, index.name, seg.id)
        self.builds[key] = BuildProgress(table.def_.name, index.name, seg.id, 0, seg.n_rows,
                                         time.time())

        def report(done: int, total: int) -> None:
            self.builds[key].done = done
            if progress is not None:
                progress(done, total)

        try:
            built = HnswIndex.build(matrix, _params(index), valid=valid,
                                    num_threads=self.options.index_threads, progress=report,
                                    should_stop=lambda: self._closed)
        except IndexBuildCancelled:
            return False
        finally:
            self.builds.pop(key, None)
        built.calibration = calibrate(built, matrix, valid)
        _return_free_memory()
        name = f"seg-{seg.id:08d}.{index.oid}.hnsw"
        self._inflight_files.add(name)
        crc = built.save(os.path.join(table.directory, name))
        seg.attach_index(index.name, built)
        seg.index_files[index.name] = (name, crc)
        return True

    def write_segment(self, table: Table, seg: Segment) -> None:
        """Write a new segment's file, protected from garbage collection until released."""
        self._inflight_files.add(Segment.file_name(seg.id))
        seg.write(table.directory)

    def release_segment_files(self, seg: Segment | None) -> None:
        if seg is None:
            return
        self._inflight_files.discard(Segment.file_name(seg.id))
        for name, _crc in list(seg.index_files.values()):
            self._inflight_files.discard(name)

    # Compaction ---------------------------------------------------------------------------------

    def compact(self, table_id: int) -> int:
        """Run the compaction policy on one table now; returns the number of merges done."""
        table = self.table(table_id)
        merges = 0
        for group in compaction.pick_segments(table, self.options.compaction):
            if compaction.run(self, table, group):
                merges += 1
        return merges

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
            except Exception:  # background work must never die silently
                log.exception("background task %s failed", task)
            finally:
                with self._busy_cond:
                    self._busy -= 1
                    self._busy_cond.notify_all()

    def _run_seal_task(self, kind: str, table_id: int | None) -> None:
        if kind == "seal":
            table = self.tables.get(table_id)  # type: ignore[arg-type]
            if table is not None and (table.memtable.n_rows >= self.options.seal_rows
                                      or table.memtable.nbytes >= self.options.seal_bytes):
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
            index = next((ix for ix in table.def_.hnsw_indexes if ix.name == index_name), None)
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

    # Introspection ------------------------------------------------------------------------------

    def index_status(self) -> list[dict]:
        """Per index and segment: rows indexed vs total, build progress, memory."""
        rows = []
        for table in self.tables.values():
            for ix in table.def_.hnsw_indexes:
                for seg in list(table.sealed):
                    built = seg.index(ix.name)
                    build = self.builds.get((table.id, ix.name, seg.id))
                    rows.append({
                        "table": table.def_.name, "index": ix.name, "segment": seg.id,
                        "rows": seg.n_rows,
                        "indexed": built.indexed_count if built else (build.done if build else 0),
                        "state": "ready" if built else ("building" if build else "pending"),
                        "memory_bytes": built.memory_bytes if built else 0,
                    })
        return rows


def _return_free_memory() -> None:
    """Hand freed heap pages back to the OS after large buffers die (a sealed growing segment):
    glibc keeps them otherwise, and resident memory would count them forever."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


def _params(index: IndexDef) -> HnswParams:
    return HnswParams(
        metric=Metric.from_opclass(index.opclass or "vector_l2_ops"),
        m=int(index.options.get("m", 16)),
        ef_construction=int(index.options.get("ef_construction", 64)),
    )

