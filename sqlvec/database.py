"""The embedded database: a data directory holding one folder per database.

`Database.open(path)` recovers every database it opens (manifest, then WAL replay) and is what
the SQL sessions and the wire server build on. It also offers a small table API for embedded use
and tests: create tables, insert Arrow/NumPy/Python rows, delete, update, scan and search.

Data directory layout:

    <path>/LOCK              held (flock) by the process that has the directory open
    <path>/<database>/...    one store per database (see sqlvec.storage.store), whose own
                             LOCK is held while the store is open

A database name comes from clients (the startup packet, CREATE/DROP DATABASE), so it is never
used as a path as given: it must be a valid name (`check_database_name`: at most 63 bytes, no
path separators, no NUL, no leading dot) and it is looked up in the catalog of databases (the
directories of the data directory that hold a manifest) before any file is touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa

# The configuration files (sqlvec.conf, sqlvec.auto.conf), re-exported for the command line.
from sqlvec.catalog.config_file import ConfigFileError as ConfigFileError

# The PostgreSQL version clients are told, re-exported for the command line (`--version`).
from sqlvec.catalog.pg_stat import (
    STATS_DIR,
    StatementStats,
    add_table_stats,
    load_table_stats,
    save_table_stats,
    take_table_stats,
)
from sqlvec.catalog.server_config import CONF_FILE as CONF_FILE
from sqlvec.catalog.server_config import ServerConfig as ServerConfig
from sqlvec.catalog.settings import SERVER_VERSION as SERVER_VERSION
from sqlvec.errors import (
    DuplicateObject,
    InvalidCatalogName,
    ObjectInUse,
    ReadOnlySqlTransaction,
    SqlVecError,
    UndefinedColumn,
    UndefinedTable,
)
from sqlvec.storage.backup import BACKUP_IN_PROGRESS
from sqlvec.storage.fsutil import fsync_dir, lock_directory
from sqlvec.storage.schema import ROWID, ColumnDef, IndexDef, TableDef

# When a query may spread its segment searches over threads, re-exported for the server's
# worker processes (wire.workers.limit_fan_out).
from sqlvec.storage.search import allow_fan_out as allow_fan_out
from sqlvec.storage.store import Store, StoreOptions, return_free_memory
from sqlvec.storage.table import RowFilter, TableSnapshot, _as_arrow
from sqlvec.storage.wal import DeleteOp, InsertOp
from sqlvec.types import SqlType
from sqlvec.vectors import Metric

DEFAULT_DATABASE = "postgres"
NAME_MAX_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1
DROP_WAIT = 5.0  # seconds DROP DATABASE waits for the database's sessions to end
# In the statistics directory: database <name>'s store was closed cleanly (removed when it is
# opened again, so its absence at an open means a crash: unlogged sequences start afresh).
CLOSED_CLEANLY = "{}.closed"


def check_database_name(name: str) -> None:
    """Refuse a name that could not be a database's directory (42602): empty, longer than 63
    bytes, holding a path separator, a NUL or a control character, or starting with a dot
    (`.`, `..`, hidden files)."""
    raw = name.encode("utf-8", "surrogatepass")
    if not name or len(raw) > NAME_MAX_BYTES or name.startswith(".") or ".." in name \
            or any(ch in "/\\" or not ch.isprintable() for ch in name):
        raise SqlVecError(f'invalid database name "{name}"', sqlstate="42602",
                          detail="A database name has 1 to 63 bytes, no path separators, no "
                                 "control characters, and does not start with a dot.")


class Database:
    """A data directory: its databases, opened on first use and recovered on open."""

    # Whether its sessions' statements change schemas, so that the others' hold the DDL lock
    # against them (session/ddl_lock.py); a follower's do not.
    changes_schema = True

    def __init__(self, path: str, options: StoreOptions, lock_fd: int,
                 config: ServerConfig | None = None) -> None:
        self.path = path
        # The configuration files' values, which every session starts from (reloadable).
        self.config = config if config is not None else ServerConfig(path)
        self.options = options
        self._lock_fd = lock_fd
        self._pid = os.getpid()  # a process forked from this one closes nothing of it
        self._stores: dict[str, Store] = {}
        self._catalogs: dict[str, object] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._hold_background = False  # stores opened now leave their threads for later
        self.sessions: dict[int, object] = {}
        self.statement_stats = StatementStats()  # pg_stat_statements
        # Called after every statement as (seconds, SQLSTATE or None) when set (metrics).
        self.on_statement: Callable[[float, str | None], None] | None = None
        # Called before statistics are read, when set: brings in what other processes serving
        # this directory have counted and not yet sent (`gather_statistics`).
        self.statistics_source: Callable[[], None] | None = None
        # Settings fixed for the server's life (the front end adds its own: port, limits, ...).
        self.server_settings: dict[str, str] = {"data_directory": os.path.abspath(path),
                                                "config_file": self.config.config_file}
        # Importing the built-in functions loads the function catalog (catalog/functions.py).
        from sqlvec.execution import builtins as _builtins  # noqa: F401
        from sqlvec.execution.catalog_functions import compile_extensions

        self.functions = compile_extensions()

    @classmethod
    def open(cls, path: str = "sqlvec-data", *, options: StoreOptions | None = None,
             config: ServerConfig | None = None, start_background: bool = True) -> Database:
        """Open (creating if needed) a data directory and recover its default database. Its
        configuration is `config`, else the files of the data directory (sqlvec.conf,
        sqlvec.auto.conf: ConfigFileError if a line is bad). `start_background=False` holds
        the stores' background threads until `start_background`: until then the process runs
        one thread, so it may fork (the server's worker processes)."""
        if config is None:
            config = ServerConfig.load(path)
        os.makedirs(path, exist_ok=True)
        if os.path.exists(os.path.join(path, BACKUP_IN_PROGRESS)):
            raise SqlVecError(f'data directory "{path}" is an incomplete backup',
                              sqlstate="55000", hint="Its copy did not finish; take the backup "
                                                     "again (`sqlvec backup`).")
        fd = lock_directory(path)
        if fd is None:
            raise ObjectInUse(f'data directory "{path}" is in use by another sqlvec process')
        # Arrow's default mimalloc pool keeps freed pages resident for long; a database holds
        # large buffers that die in bursts (sealed growing segments, merged segments), so the
        # system allocator (with malloc_trim after those bursts) keeps resident memory honest.
        pa.set_memory_pool(pa.system_memory_pool())
        db = cls(path, options or StoreOptions(), fd, config)
        db._hold_background = not start_background
        db.statement_stats.load(path)
        try:
            if DEFAULT_DATABASE in db.databases():
                db.store(DEFAULT_DATABASE)
            else:
                db.create_database(DEFAULT_DATABASE)
        except BaseException:
            db.close()  # a failed recovery must not keep the directory locked
            raise
        return db

    def close(self) -> None:
        """Close every database's store (finishing their background work) and release the data
        directory's lock; idempotent, so shutdown paths need not coordinate. The statistics
        counters are kept for the next start (a clean shutdown, as PostgreSQL keeps them)."""
        if not self._closed:
            self._save_stats()
        from sqlvec.catalog.catalog import has_unlogged_sequences

        with self._lock:  # (only a database with unlogged sequences needs the note)
            names = [n for n, store in self._stores.items() if has_unlogged_sequences(store)]
        if self._close_stores():
            self._mark_closed(names)
            os.close(self._lock_fd)

    def _mark_closed(self, names: list[str]) -> None:
        """Note that the stores of databases `names` were closed cleanly (`CLOSED_CLEANLY`);
        a note that cannot be written makes the next open take it for a crash."""
        if not names or os.getpid() != self._pid:
            return
        with contextlib.suppress(OSError):
            os.makedirs(os.path.join(self.path, STATS_DIR), exist_ok=True)
            for name in names:
                with open(self._closed_note(name), "wb") as note:
                    os.fsync(note.fileno())
            fsync_dir(os.path.join(self.path, STATS_DIR))

    def _closed_note(self, name: str) -> str:
        return os.path.join(self.path, STATS_DIR, CLOSED_CLEANLY.format(name))

    def _after_crash(self, name: str) -> bool:
        """Whether database `name` was not closed cleanly since it was last opened; the note
        that it was is taken away, since this open starts a new life, and durably: come back
        after a power loss, it would hide a crash of that new life."""
        try:
            os.remove(self._closed_note(name))
            fsync_dir(os.path.join(self.path, STATS_DIR))
        except FileNotFoundError:
            return True
        except OSError:
            pass
        return False

    def start_background(self) -> None:
        """Start the background work (seals, index builds, compaction) `open` held back."""
        with self._lock:
            self._hold_background = False
            stores = list(self._stores.values())
        for store in stores:
            store.start_background()

    def release_inherited_lock(self) -> None:
        """In a process forked from the one that has the data directory open: close this
        process's descriptors of the directory's locks, so that the locks end with their owner
        (they stay held through the owner's descriptors)."""
        os.close(self._lock_fd)
        for store in self._stores.values():
            store.release_inherited_lock()

    def take_table_statistics(self) -> dict[str, dict[str, dict]]:
        """Per database and table, the read counters (pg_stat_user_tables/indexes) since the
        last call, which then start again from zero: what a worker process reports to the
        primary (`merge_statistics`)."""
        with self._lock:
            stores = dict(self._stores)
        return {name: taken for name, store in stores.items()
                if (taken := take_table_stats(store))}

    def merge_statistics(self, batch: dict) -> None:
        """Count here statements another process serving this directory ran (a worker): so
        pg_stat_statements, the table and index scan counters and the statement metrics
        (`on_statement`) cover every process. `batch`: "statements", a list of [userid,
        dbid, queryid, query, [calls, total ms, min ms, max ms, mean ms, sum of squared
        deviations, rows]] (`StatementStats.merge`); "observed", a list of [seconds,
        SQLSTATE or None]; "tables", as `take_table_statistics` returns; "activity", a
        list of [backend pid, query, start, end] of the last statements it answered for
        sessions of this process (pg_stat_activity: `Session.ran_elsewhere`)."""
        for pid, query, started, ended in batch.get("activity") or ():
            session = self.sessions.get(int(pid))
            if session is not None:
                session.ran_elsewhere(str(query), float(started), float(ended))
        for userid, dbid, queryid, query, summary in batch.get("statements") or ():
            calls, total, low, high, mean, m2, rows = summary
            self.statement_stats.merge(int(userid), int(dbid), int(queryid), str(query),
                                       int(calls), float(total), float(low), float(high),
                                       float(mean), float(m2), int(rows))
        observe = self.on_statement
        if observe is not None:
            for seconds, sqlstate in batch.get("observed") or ():
                observe(float(seconds), sqlstate)
        for name, tables in (batch.get("tables") or {}).items():
            with self._lock:
                store = self._stores.get(name)
            if store is not None:
                add_table_stats(store, tables)

    def gather_statistics(self) -> None:
        """Before statistics are read (the pg_stat_* views, the metrics): have the counts of
        statements other processes answered (the server's workers) merged here first, so a
        statement whose answer a client has seen is counted in what it reads next."""
        source = self.statistics_source
        if source is not None:
            source()

    def watch_schema_lock(self, callback: Callable[[bool], None] | None) -> None:
        """Call `callback(True)` when a transaction block takes (or starts waiting for) the
        default database's DDL lock, `callback(False)` once none holds or awaits it; None
        stops. Processes reading the directory beside this one (the server's workers) do not
        share the lock: while it is held they leave reads to this process, which waits."""
        from sqlvec.session.ddl_lock import ddl_lock_of

        ddl_lock_of(self, DEFAULT_DATABASE).watch(callback)

    def _save_stats(self) -> None:
        try:
            with self._lock:
                stores = dict(self._stores)
            for name, store in stores.items():
                save_table_stats(self.path, name, store)
            self.statement_stats.save(self.path)
        except OSError as error:  # a full disk must not stop the shutdown
            logging.getLogger(__name__).warning("statistics not saved: %s", error)

    def _close_stores(self) -> bool:
        """Close every store once; False when they were closed already."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            stores = list(self._stores.values())
            self._stores.clear()
        for store in stores:
            store.close()
        return True

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Databases ----------------------------------------------------------------------------------

    def databases(self) -> list[str]:
        """The catalog of databases: directories of the data directory holding a manifest."""
        out = []
        for entry in os.scandir(self.path):
            try:
                check_database_name(entry.name)
            except SqlVecError:
                continue
            if entry.is_dir(follow_symlinks=False) and \
                    os.path.isdir(os.path.join(entry.path, "manifest")):
                out.append(entry.name)
        return sorted(out)

    def store(self, name: str = DEFAULT_DATABASE) -> Store:
        """The store of database `name`, opened (and recovered) on first use; 3D000 unless the
        catalog of databases lists exactly this name."""
        store = self._stores.get(name)  # (an opened store, without the lock: asked per read)
        if store is not None:
            return store
        with self._lock:
            store = self._stores.get(name)
            if store is not None:
                return store
            if name not in self.databases():
                raise InvalidCatalogName(f'database "{name}" does not exist')
            return self._open_store(name)

    def _open_store(self, name: str) -> Store:
        """Open the store of a listed (or just validated) name; the caller holds `_lock`."""
        if self._closed:
            raise ObjectInUse("the database is closed")
        store = Store.open(os.path.join(self.path, name), self.options,
                           start_background=not self._hold_background)
        if self._after_crash(name):
            from sqlvec.catalog.catalog import reset_unlogged_sequences

            reset_unlogged_sequences(store)
        load_table_stats(self.path, name, store)
        from sqlvec.execution.constraints import ROW_CHECKS

        store.row_check = ROW_CHECKS
        from sqlvec.execution.foreign_key_commit import install

        install(store)  # foreign keys checked again under the commit lock
        self._stores[name] = store
        return store

    def catalog(self, name: str = DEFAULT_DATABASE):
        """The SQL catalog (schemas, sequences, extensions, roles) of database `name`."""
        from sqlvec.catalog.catalog import Catalog

        store = self.store(name)
        with self._lock:
            catalog = self._catalogs.get(name)
            if catalog is None or catalog.store is not store:
                catalog = self._catalogs[name] = Catalog(store)
            return catalog

    # Sessions -----------------------------------------------------------------------------------

    def connect(self, database: str = DEFAULT_DATABASE, user: str = "postgres",
                settings: dict[str, str] | None = None):
        """A new SQL session on `database` (what one client connection gets)."""
        from sqlvec.session import Session

        return Session(self, database, user, settings)

    def register_session(self, session) -> None:
        """Make a session visible to pg_stat_activity, cancel requests and DROP DATABASE's check for
        users."""
        self.sessions[session.pid] = session

    def unregister_session(self, session) -> None:
        """Forget a session that has ended."""
        self.sessions.pop(session.pid, None)

    def virtual_fields(self, name: str, schema: str | None):
        """Columns of a virtual catalog table (pg_catalog, information_schema), or None."""
        from sqlvec.catalog.virtual import virtual_fields

        return virtual_fields(name, schema)

    def virtual_table(self, session, name: str) -> pa.Table:
        """Build a catalog table's rows for `session` (its database, search path and settings)."""
        from sqlvec.catalog.objects import build_virtual_table

        return build_virtual_table(self, session, name)

    def create_database(self, name: str) -> None:
        """CREATE DATABASE: a new directory with its own store; names are checked so they cannot
        escape the data directory."""
        check_database_name(name)
        with self._lock:
            if name in self.databases():
                raise DuplicateObject(f'database "{name}" already exists', sqlstate="42P04")
            path = os.path.join(self.path, name)
            if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
                raise SqlVecError(f'invalid database name "{name}"', sqlstate="42602",
                                  detail="The data directory holds a file of that name.")
            self._open_store(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE: refuses the default database and one still in use (after a short wait for
        closing sessions, as PostgreSQL does), then removes its files."""
        if name == DEFAULT_DATABASE:
            raise ObjectInUse(f'cannot drop database "{name}"')
        if name not in self.databases():
            raise InvalidCatalogName(f'database "{name}" does not exist')
        # Sessions that are closing get a moment to go, as PostgreSQL waits up to 5 s.
        deadline = time.monotonic() + DROP_WAIT
        while any(getattr(s, "database_name", None) == name
                  for s in list(self.sessions.values())):
            if time.monotonic() >= deadline:
                raise ObjectInUse(f'database "{name}" is being accessed by other users')
            time.sleep(0.05)
        with self._lock:
            store = self._stores.pop(name, None)
            self._catalogs.pop(name, None)
        if store is not None:
            store.close()
        import shutil

        shutil.rmtree(os.path.join(self.path, name))
        with contextlib.suppress(OSError):  # counters a clean shutdown kept for it
            os.remove(os.path.join(self.path, STATS_DIR, f"{name}.json"))

    def activity(self) -> dict:
        """What the open databases hold and have done, for monitoring (`--metrics-port`):
        sessions by state, and per database and table the rows inserted since start, sealed
        segments, rows indexed of each vector index and WAL bytes appended since open."""
        sessions: dict[str, int] = {}
        for session in list(self.sessions.values()):
            state = getattr(session, "state", "idle")
            sessions[state] = sessions.get(state, 0) + 1
        with self._lock:
            stores = dict(self._stores)
        databases = {}
        for name, store in stores.items():
            tables = {}
            for table in list(store.tables.values()):
                d = table.def_
                tables[d.name if d.schema == "public" else f"{d.schema}.{d.name}"] = {
                    "rows_inserted": table.stats.n_tup_ins, "segments": len(table.sealed),
                    "indexes": {}}
            for st in store.index_status():
                entry = tables.get(st["table"])
                if entry is None:
                    continue
                done, total = entry["indexes"].get(st["index"], (0, 0))
                entry["indexes"][st["index"]] = (done + int(st["indexed"] or 0),
                                                 total + int(st["rows"] or 0))
            databases[name] = {"wal_bytes": store.wal_bytes, "tables": tables}
        return {"sessions": sessions, "databases": databases}

    def is_superuser(self, user: str) -> bool:
        """Whether `user` is a superuser role (in the default database's catalog, which holds
        the roles); names without a role are ordinary users."""
        role = self.catalog(DEFAULT_DATABASE).role(user)
        return bool(role and role.get("superuser"))

    def return_free_memory(self) -> None:
        """Hand memory freed by the process back to the OS (after many connections close:
        their buffers and sessions die in a burst that the allocator would otherwise keep)."""
        return_free_memory()

    # Tables of the default database -------------------------------------------------------------

    def create_table(self, name: str, columns: dict[str, str | SqlType] | Sequence[ColumnDef], *,
                     primary_key: Sequence[str] = (), not_null: Iterable[str] = (),
                     schema: str = "public", database: str = DEFAULT_DATABASE) -> TableHandle:
        """Create a table from `{"name": "type"}` or ColumnDefs. Key columns become NOT NULL."""
        store = self.store(database)
        if isinstance(columns, dict):
            required = set(not_null) | set(primary_key)
            defs = [
                ColumnDef(n, t if isinstance(t, SqlType) else SqlType.parse(t), i + 1,
                          not_null=n in required)
                for i, (n, t) in enumerate(columns.items())
            ]
        else:
            defs = list(columns)
        names = [c.name for c in defs]
        for key in primary_key:
            if key not in names:
                raise UndefinedColumn(f'column "{key}" named in key does not exist')
        table_def = store.create_table(name, defs, schema=schema, primary_key=primary_key)
        return TableHandle(store, table_def.id)

    def table(self, name: str, *, schema: str = "public",
              database: str = DEFAULT_DATABASE) -> TableHandle:
        """A handle for embedded reads and writes of a table, bypassing SQL."""
        store = self.store(database)
        table = store.find_table(name, schema)
        if table is None:
            raise UndefinedTable(f'relation "{name}" does not exist')
        return TableHandle(store, table.id)

    def drop_table(self, name: str, *, schema: str = "public",
                   database: str = DEFAULT_DATABASE) -> None:
        """Drop a table by name from embedded code."""
        handle = self.table(name, schema=schema, database=database)
        handle.store.drop_table(handle.table_id)

    def wait_idle(self, timeout: float = 300.0) -> None:
        """Wait for background sealing, index builds and compaction to finish."""
        for store in list(self._stores.values()):
            store.wait_idle(timeout)

    def commit_position(self, name: str = DEFAULT_DATABASE) -> tuple[int, int]:
        """(durable LSN, manifest version) of database `name`: how far a process following
        its directory must read to see every acknowledged commit (`FollowerDatabase.catch_up`)."""
        store = self.store(name)
        return store.durable_lsn, store.manifest_version


class FollowerDatabase(Database):
    """A data directory another process (the writer, a `Database`) has open, followed
    read-only: each database is a `FollowerStore` (sqlvec.storage.follower) that reads what the
    writer commits. Sessions on it run queries; anything that writes fails with 25006, as on a
    PostgreSQL hot standby. Serving processes use it to answer reads next to the writer."""

    def __init__(self, path: str, options: StoreOptions,
                 config: ServerConfig | None = None) -> None:
        super().__init__(path, options, -1, config)

    _seed: Database | None = None

    # Its stores refuse every write (25006), schema changes included: the catalog changes only
    # as the writer's log is followed, which no session's statement holds off (session/core.py
    # `_statement_lock`).
    changes_schema = False

    @classmethod
    def open(cls, path: str = "sqlvec-data", *,  # type: ignore[override]
             options: StoreOptions | None = None,
             config: ServerConfig | None = None,
             seed: Database | None = None) -> FollowerDatabase:
        """Follow the data directory a writer has open (no lock is taken); `config`: the
        writer's configuration files, which sessions here start from as there. `seed`: the
        writer itself, as this process inherited it by fork: its loaded segments, indexes
        and delete bitmaps are shared (by the same files), not read again, so the pages stay
        shared with the writer's process copy-on-write."""
        pa.set_memory_pool(pa.system_memory_pool())
        db = cls(path, options or (seed.options if seed is not None else StoreOptions()),
                 config)
        db._seed = seed
        db.store(DEFAULT_DATABASE)
        return db

    def _open_store(self, name: str) -> Store:
        from sqlvec.storage.follower import FollowerStore

        if self._closed:
            raise ObjectInUse("the database is closed")
        seed = self._seed._stores.get(name) if self._seed is not None else None
        store = FollowerStore.open(os.path.join(self.path, name), self.options,
                                   seed=seed.tables if seed is not None else None)
        self._stores[name] = store  # type: ignore[assignment]
        return store  # type: ignore[return-value]

    def close(self) -> None:
        """Stop following every database (no lock to release)."""
        self._close_stores()

    def catch_up(self, name: str, lsn: int, manifest_version: int) -> bool:
        """Bring database `name` forward to the writer's `commit_position`; False if its log
        does not hold every record up to `lsn` yet (the caller then asks the writer)."""
        store = self.store(name)
        if store.applied_lsn >= lsn and store.manifest_version == manifest_version:
            return True
        return store.catch_up(lsn, manifest_version=manifest_version) >= lsn  # type: ignore[attr-defined]

    def follow_manifest(self, name: str, manifest_version: int) -> bool:
        """Load database `name`'s newest manifest if the one loaded is older than
        `manifest_version` (`FollowerStore.follow_manifest`); whether it is now loaded."""
        return self.store(name).follow_manifest(manifest_version)  # type: ignore[attr-defined]

    def create_database(self, name: str) -> None:
        raise ReadOnlySqlTransaction("cannot execute CREATE DATABASE in a read-only transaction")

    def drop_database(self, name: str) -> None:
        raise ReadOnlySqlTransaction("cannot execute DROP DATABASE in a read-only transaction")


class TableHandle:
    """Embedded operations on one table. Every write is one atomic, durable commit."""

    def __init__(self, store: Store, table_id: int) -> None:
        self.store = store
        self.table_id = table_id

    @property
    def definition(self) -> TableDef:
        return self.store.table(self.table_id).def_

    def snapshot(self) -> TableSnapshot:
        """A consistent view of the table's committed rows."""
        return self.store.table(self.table_id).snapshot()

    # Writes -------------------------------------------------------------------------------------

    def insert(self, rows: pa.Table | pa.RecordBatch | dict) -> int:
        """Insert rows given as an Arrow table/batch or a dict of columns (a 2-D NumPy array is
        a vector column). Returns the number of rows."""
        return self.store.insert(self.table_id, rows)

    def delete(self, filter: RowFilter) -> int:
        """Delete the live rows `filter` selects; returns how many."""
        rowids = self._rowids(filter)
        return self.store.delete(self.table_id, rowids)

    def update(self, filter: RowFilter, changes: dict[str, Callable[[pa.Table], object] | object]) -> int:
        """Update the rows `filter` selects: delete them and insert their new versions in one
        commit. A change is a constant or a function of the old rows returning a column."""
        table = self.store.table(self.table_id)
        old = self.snapshot().to_table(filter=filter, with_rowid=True)
        if old.num_rows == 0:
            return 0
        new = old.drop_columns([ROWID])
        for name, value in changes.items():
            column = _as_arrow(value(old)) if callable(value) else pa.repeat(
                pa.scalar(value, table.def_.column(name).type.to_arrow()), old.num_rows)
            new = new.set_column(new.schema.get_field_index(name), name, column)
        rows = table.coerce(new)
        self.store.commit([DeleteOp(self.table_id, old.column(ROWID).to_numpy()),
                           InsertOp(self.table_id, rows)])
        return old.num_rows

    def truncate(self) -> None:
        """Remove every row in one commit."""
        self.store.truncate(self.table_id)

    # Reads --------------------------------------------------------------------------------------

    def scan(self, columns: Sequence[str] | None = None, *, filter: RowFilter | None = None,
             with_rowid: bool = False) -> pa.Table:
        """The table's live rows (or some columns), optionally filtered, as Arrow."""
        return self.snapshot().to_table(columns, filter=filter, with_rowid=with_rowid)

    def count(self) -> int:
        """The number of live rows."""
        return self.snapshot().row_count

    def search(self, column: str, query: Sequence[float] | np.ndarray, k: int, *,
               metric: Metric | str = Metric.L2, filter: RowFilter | None = None,
               columns: Sequence[str] | None = None, ef: int = 40, exact: bool = False,
               with_rowid: bool = False) -> pa.Table:
        """The k nearest live rows (with a `distance` column), through the column's vector
        index for the metric where there is one (`ef`: its knob, hnsw.ef_search)."""
        if isinstance(metric, str):
            metric = Metric(metric) if metric in Metric._value2member_map_ else \
                Metric.from_operator(metric)
        return self.snapshot().search(column, metric, np.asarray(query, dtype=np.float32), k,
                                      filter=filter, columns=columns, ef=ef, exact=exact,
                                      with_rowid=with_rowid)

    # Indexes and maintenance --------------------------------------------------------------------

    def create_index(self, column: str, *, using: str = "hnsw", opclass: str | None = None,
                     name: str | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     **options: int) -> IndexDef:
        """CREATE INDEX ... USING <using> (column <opclass>) WITH (<options>), e.g.
        `create_index("emb", opclass="vector_cosine_ops", m=32)`: returns once every existing
        row is indexed."""
        definition = self.definition
        index = IndexDef(
            name=name or f"{definition.name}_{column}_idx",
            oid=self.store.allocate_oid(),
            columns=(column,),
            method=using,
            opclass=opclass,
            options=dict(options),
        )
        self.store.create_index(self.table_id, index, progress=progress)
        return index

    def drop_index(self, name: str) -> None:
        """Drop an index of the table's store by name."""
        self.store.drop_index(name)

    def seal(self) -> None:
        """Write the growing segment to a file now rather than when it fills (tests, bulk loads)."""
        self.store.seal(self.table_id)

    def compact(self) -> int:
        """Run the compaction policy now; returns the number of merges done."""
        return self.store.compact(self.table_id)

    def _rowids(self, filter: RowFilter) -> np.ndarray:
        rows = self.snapshot().to_table([], filter=filter, with_rowid=True)
        return rows.column(ROWID).to_numpy()
