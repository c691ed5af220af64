"""Statistics and progress views: pg_stat_user_tables / _all_tables, pg_stat_user_indexes /
_all_indexes, pg_stat_progress_create_index, pg_stat_progress_copy and pg_stat_statements.

Counters live where the work happens (`storage.table.TableStats` per table, the running
session's `progress` record, `StatementStats` per server) and are read here as PostgreSQL's
columns. What PostgreSQL measures in heap blocks, sqlvec measures in what it has: sealed
segments stand for blocks in the progress views.

As PostgreSQL keeps its cumulative statistics across a clean shutdown (and discards them
after a crash), a clean close of the data directory writes them to `pg_stat/` in it, and the
next start reads them back and deletes the files (so a crash after that start begins from
zero). Both files are JSON, written to a temporary name, fsynced and renamed:

    pg_stat/<database>.json   {"format_version": 1, "tables": {"<table id>": {field: value}}}
                              with TableStats' fields (seq_scan, seq_tup_read, last_seq_scan,
                              idx_scan, idx_tup_fetch, last_idx_scan, n_tup_ins, n_tup_upd,
                              n_tup_del, compactions, last_compaction; times as Unix seconds)
                              and "indexes": {name: [scans, entries read, rows fetched,
                              last scan]}
    pg_stat/statements.json   {"format_version": 1, "entries": [[userid, dbid, queryid,
                              {query, calls, total, minimum, maximum, mean, m2, rows}]]}
                              pg_stat_statements' entries (times in milliseconds)

A file that cannot be read is ignored (the counters start from zero, as after a crash).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import threading
from dataclasses import dataclass

from sqlvec.catalog import objects as O
from sqlvec.catalog.virtual import empty, parse_columns, virtual
from sqlvec.storage.store import CreateIndexProgress, Store
from sqlvec.storage.table import TableStats

STATS_DIR = "pg_stat"
_FORMAT_VERSION = 1


def _write_json(path: str, value: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _take_json(path: str) -> dict | None:
    """The file's content, removing the file; None if absent or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
    ok = isinstance(value, dict) and value.get("format_version") == _FORMAT_VERSION
    return value if ok else None


def save_table_stats(data_dir: str, database: str, store: Store) -> None:
    """Write the counters of every table of `store` (at a clean shutdown)."""
    tables = {str(tid): dataclasses.asdict(t.stats) for tid, t in list(store.tables.items())}
    if not tables:
        return
    _write_json(os.path.join(data_dir, STATS_DIR, f"{database}.json"),
                {"format_version": _FORMAT_VERSION, "tables": tables})


def load_table_stats(data_dir: str, database: str, store: Store) -> None:
    """Give the tables of a just opened `store` the counters a clean shutdown saved."""
    saved = _take_json(os.path.join(data_dir, STATS_DIR, f"{database}.json"))
    if saved is None:
        return
    names = {f.name for f in dataclasses.fields(TableStats)}
    for tid, fields in (saved.get("tables") or {}).items():
        table = store.tables.get(int(tid)) if tid.isdigit() else None
        if table is not None and isinstance(fields, dict):
            with contextlib.suppress(TypeError, ValueError):
                table.stats = TableStats(**{k: v for k, v in fields.items() if k in names})


# The counters reads move (what a worker process, which only reads, has to report).
_READ_COUNTERS = ("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch")
_READ_TIMES = ("last_seq_scan", "last_idx_scan")


def take_table_stats(store) -> dict[str, dict]:
    """The read counters of `store`'s tables since the last call, each table's counters
    starting again from zero: how a worker process reports its reads to the primary. An
    increment racing the reset may be lost, as these counters allow (TableStats)."""
    out = {}
    for tid, table in list(store.tables.items()):
        stats = getattr(table, "stats", None)
        if stats is None or not (stats.seq_scan or stats.idx_scan or stats.indexes):
            continue
        table.stats = TableStats()
        out[str(tid)] = {**{k: getattr(stats, k) for k in (*_READ_COUNTERS, *_READ_TIMES)},
                         "indexes": stats.indexes}
    return out


def add_table_stats(store: Store, tables: dict[str, dict]) -> None:
    """Add the counters `take_table_stats` took in another process to `store`'s tables."""
    for tid, fields in tables.items():
        table = store.tables.get(int(tid))
        stats = getattr(table, "stats", None)
        if stats is None:
            continue  # dropped meanwhile
        for name in _READ_COUNTERS:
            setattr(stats, name, getattr(stats, name) + int(fields.get(name) or 0))
        for name in _READ_TIMES:
            theirs = fields.get(name)
            if theirs is not None:
                setattr(stats, name, max(getattr(stats, name) or 0.0, float(theirs)))
        for index, (scans, read, fetched, last) in (fields.get("indexes") or {}).items():
            entry = stats.indexes.setdefault(index, [0, 0, 0, None])
            entry[0] += int(scans)
            entry[1] += int(read)
            entry[2] += int(fetched)
            if last is not None:
                entry[3] = max(entry[3] or 0.0, float(last))


def _rows(columns: list[tuple[str, str]], rows: list[tuple]) -> dict:
    return {c: [r[i] for r in rows] for i, (c, _t) in enumerate(columns)}


def instant(seconds: float | None) -> dt.datetime | None:
    """A time kept as seconds since the epoch, as a timestamptz value."""
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


# Tables and indexes -------------------------------------------------------------------------------

PG_STAT_TABLES = parse_columns(
    "relid oid, schemaname name, relname name, seq_scan int8, last_seq_scan timestamptz, "
    "seq_tup_read int8, idx_scan int8, last_idx_scan timestamptz, idx_tup_fetch int8, "
    "n_tup_ins int8, n_tup_upd int8, n_tup_del int8, n_tup_hot_upd int8, "
    "n_tup_newpage_upd int8, n_live_tup int8, n_dead_tup int8, n_mod_since_analyze int8, "
    "n_ins_since_vacuum int8, last_vacuum timestamptz, last_autovacuum timestamptz, "
    "last_analyze timestamptz, last_autoanalyze timestamptz, vacuum_count int8, "
    "autovacuum_count int8, analyze_count int8, autoanalyze_count int8")


def gather_other_processes(o) -> None:
    """Have the counts other processes of the server hold merged first (its workers': see
    `Database.gather_statistics`), so what a client reads counts every answer it has had
    (and pg_stat_activity shows the last statement each answered)."""
    gather = getattr(o.database, "gather_statistics", None)
    if gather is not None:
        gather()


def _tables(o) -> dict:
    """One row per user table: scans and writes counted by the executor; live rows from the
    snapshot; dead rows are deleted rows still stored in sealed segments (compaction, which
    counts as autovacuum, removes them)."""
    gather_other_processes(o)
    store = o.session.catalog.store
    rows = []
    for rel in o.relations:
        if rel.kind != "r" or rel.table_id is None:
            continue
        table = store.tables.get(rel.table_id)
        if table is None:
            continue
        s = table.stats
        dead = sum(b.count for b in list(table.deletes.values()))
        modified = s.n_tup_ins + s.n_tup_upd + s.n_tup_del
        rows.append((rel.oid, rel.schema, rel.name, s.seq_scan, instant(s.last_seq_scan),
                     s.seq_tup_read, s.idx_scan, instant(s.last_idx_scan), s.idx_tup_fetch,
                     s.n_tup_ins, s.n_tup_upd, s.n_tup_del, 0, 0, int(max(rel.tuples, 0)),
                     dead, modified, s.n_tup_ins, None, instant(s.last_compaction), None, None,
                     0, s.compactions, 0, 0))
    return _rows(PG_STAT_TABLES, rows)


virtual("pg_stat_user_tables", PG_STAT_TABLES)(_tables)
virtual("pg_stat_all_tables", PG_STAT_TABLES)(_tables)  # the system catalogs are not counted
empty("pg_stat_sys_tables", PG_STAT_TABLES)

PG_STAT_INDEXES = parse_columns(
    "relid oid, indexrelid oid, schemaname name, relname name, indexrelname name, "
    "idx_scan int8, last_idx_scan timestamptz, idx_tup_read int8, idx_tup_fetch int8")


def _indexes(o) -> dict:
    """One row per index of a user table: the primary key's lookups (Index Scan) and the
    vector searches that used an index on some segment; idx_tup_read counts the entries the
    index returned, idx_tup_fetch the rows fetched through it."""
    gather_other_processes(o)
    store = o.session.catalog.store
    tables = {rel.oid: rel for rel in o.relations if rel.kind == "r"}
    rows = []
    for rel in o.relations:
        if rel.kind != "i" or rel.index is None:
            continue
        parent = tables.get(rel.index.table_oid)
        table = store.tables.get(parent.table_id) if parent is not None else None
        if table is None:
            continue
        scans, read, fetched, last = table.stats.indexes.get(rel.name, (0, 0, 0, None))
        rows.append((parent.oid, rel.oid, rel.schema, parent.name, rel.name, scans,
                     instant(last), read, fetched))
    return _rows(PG_STAT_INDEXES, rows)


virtual("pg_stat_user_indexes", PG_STAT_INDEXES)(_indexes)
virtual("pg_stat_all_indexes", PG_STAT_INDEXES)(_indexes)
empty("pg_stat_sys_indexes", PG_STAT_INDEXES)


# Progress of running commands ---------------------------------------------------------------------

PROGRESS_CREATE_INDEX = parse_columns(
    "pid int4, datid oid, datname name, relid oid, index_relid oid, command text, phase text, "
    "lockers_total int8, lockers_done int8, current_locker_pid int8, blocks_total int8, "
    "blocks_done int8, tuples_total int8, tuples_done int8, partitions_total int8, "
    "partitions_done int8")


@virtual("pg_stat_progress_create_index", PROGRESS_CREATE_INDEX, live=True)
def _progress_create_index(o) -> dict:
    """A row per session running CREATE INDEX: blocks are the table's sealed segments to index
    (the growing segment is sealed first, phase `initializing`), tuples their rows; the phase
    is `building index: <step>` of the segment in hand (loading tuples, measuring recall,
    writing index file). A CREATE INDEX never waits for lockers."""
    rows = []
    for s in list(getattr(o.database, "sessions", {}).values()):
        p = getattr(s, "progress", None)
        if not isinstance(p, CreateIndexProgress):
            continue
        phase, segments_total, segments_done, rows_total, rows_done = p.current()
        rows.append((s.pid, O.database_oid(s.database_name), s.database_name, p.table_oid,
                     p.index_oid, "CREATE INDEX", phase, 0, 0, 0, segments_total,
                     segments_done, rows_total, rows_done, 0, 0))
    return _rows(PROGRESS_CREATE_INDEX, rows)


@dataclass
class CopyProgress:
    """What one COPY has moved so far, for pg_stat_progress_copy (the wire counts the bytes,
    the session the rows)."""

    relid: int
    command: str  # COPY FROM | COPY TO
    type: str = "PIPE"  # FROM STDIN / TO STDOUT: the client's connection
    bytes_processed: int = 0
    bytes_total: int = 0  # unknown for a pipe, as PostgreSQL reports it
    tuples_processed: int = 0
    tuples_excluded: int = 0


PROGRESS_COPY = parse_columns(
    "pid int4, datid oid, datname name, relid oid, command text, type text, "
    "bytes_processed int8, bytes_total int8, tuples_processed int8, tuples_excluded int8")


@virtual("pg_stat_progress_copy", PROGRESS_COPY, live=True)
def _progress_copy(o) -> dict:
    """A row per session running COPY: COPY FROM counts bytes as the data arrives and its rows
    once they are stored (they are decoded and stored together, at the end); COPY TO counts
    both as it sends."""
    rows = []
    for s in list(getattr(o.database, "sessions", {}).values()):
        p = getattr(s, "progress", None)
        if not isinstance(p, CopyProgress):
            continue
        rows.append((s.pid, O.database_oid(s.database_name), s.database_name, p.relid,
                     p.command, p.type, p.bytes_processed, p.bytes_total, p.tuples_processed,
                     p.tuples_excluded))
    return _rows(PROGRESS_COPY, rows)


empty("pg_stat_progress_vacuum", parse_columns(
    "pid int4, datid oid, datname name, relid oid, phase text, heap_blks_total int8, "
    "heap_blks_scanned int8, heap_blks_vacuumed int8, index_vacuum_count int8, "
    "max_dead_tuples int8, num_dead_tuples int8"))


# Statements ---------------------------------------------------------------------------------------

@dataclass
class _Entry:
    query: str
    calls: int = 0
    total: float = 0.0  # milliseconds
    minimum: float = math.inf
    maximum: float = 0.0
    mean: float = 0.0
    m2: float = 0.0  # for the standard deviation (Welford)
    rows: int = 0


class StatementStats:
    """pg_stat_statements' counters for one server: per (user, database, normalized query),
    calls, execution time and rows of every statement that completed. Bounded, as
    pg_stat_statements.max is: past `limit` entries the least-called fifth is evicted."""

    def __init__(self, limit: int = 5000) -> None:
        self.limit = limit
        self._entries: dict[tuple[int, int, int], _Entry] = {}
        self._lock = threading.Lock()

    def record(self, userid: int, dbid: int, queryid: int, query: str, ms: float,
               rows: int) -> None:
        """Count one completed statement."""
        with self._lock:
            e = self._entry((userid, dbid, queryid), query)
            e.calls += 1
            e.total += ms
            e.minimum = min(e.minimum, ms)
            e.maximum = max(e.maximum, ms)
            delta = ms - e.mean
            e.mean += delta / e.calls
            e.m2 += delta * (ms - e.mean)
            e.rows += rows

    def merge(self, userid: int, dbid: int, queryid: int, query: str, calls: int,
              total: float, minimum: float, maximum: float, mean: float, m2: float,
              rows: int) -> None:
        """Count several calls of one statement at once (another process's, summarised
        there): the same counters as that many `record`s, the mean and the squared
        deviations combined as Chan et al.'s parallel form of Welford's method."""
        if calls <= 0:
            return
        with self._lock:
            e = self._entry((userid, dbid, queryid), query)
            n = e.calls + calls
            delta = mean - e.mean
            e.m2 += m2 + delta * delta * e.calls * calls / n
            e.mean += delta * calls / n
            e.calls = n
            e.total += total
            e.minimum = min(e.minimum, minimum)
            e.maximum = max(e.maximum, maximum)
            e.rows += rows

    def _entry(self, key: tuple[int, int, int], query: str) -> _Entry:
        """The statement's counters, new ones if need be (evicting past the limit); under the lock."""
        e = self._entries.get(key)
        if e is None:
            if len(self._entries) >= self.limit:
                self._evict()
            e = self._entries[key] = _Entry(query)
        return e

    def _evict(self) -> None:
        keep = sorted(self._entries.items(), key=lambda kv: kv[1].calls, reverse=True)
        self._entries = dict(keep[: self.limit * 4 // 5])

    def reset(self, userid: int = 0, dbid: int = 0, queryid: int = 0) -> None:
        """pg_stat_statements_reset: drop the entries matching every non-zero argument."""
        with self._lock:
            self._entries = {k: v for k, v in self._entries.items()
                             if not ((not userid or k[0] == userid) and (not dbid or k[1] == dbid)
                                     and (not queryid or k[2] == queryid))}

    def entries(self) -> list[tuple[tuple[int, int, int], _Entry]]:
        """A copy of the counters, for the view."""
        with self._lock:
            return [(k, _Entry(**vars(v))) for k, v in self._entries.items()]

    def save(self, data_dir: str) -> None:
        """Write the entries (at a clean shutdown)."""
        entries = [[*key, vars(e)] for key, e in self.entries()]
        if not entries:
            return
        _write_json(os.path.join(data_dir, STATS_DIR, "statements.json"),
                    {"format_version": _FORMAT_VERSION, "entries": entries})

    def load(self, data_dir: str) -> None:
        """Take back the entries a clean shutdown saved."""
        saved = _take_json(os.path.join(data_dir, STATS_DIR, "statements.json"))
        if saved is None:
            return
        with self._lock:
            for item in saved.get("entries") or []:
                with contextlib.suppress(TypeError, ValueError):
                    userid, dbid, queryid, fields = item
                    self._entries[(int(userid), int(dbid), int(queryid))] = _Entry(**fields)


PG_STAT_STATEMENTS = parse_columns(
    "userid oid, dbid oid, toplevel bool, queryid int8, query text, plans int8, "
    "total_plan_time float8, min_plan_time float8, max_plan_time float8, "
    "mean_plan_time float8, stddev_plan_time float8, calls int8, total_exec_time float8, "
    "min_exec_time float8, max_exec_time float8, mean_exec_time float8, "
    "stddev_exec_time float8, rows int8, shared_blks_hit int8, shared_blks_read int8, "
    "shared_blks_dirtied int8, shared_blks_written int8, local_blks_hit int8, "
    "local_blks_read int8, local_blks_dirtied int8, local_blks_written int8, "
    "temp_blks_read int8, temp_blks_written int8, blk_read_time float8, "
    "blk_write_time float8, temp_blk_read_time float8, temp_blk_write_time float8, "
    "wal_records int8, wal_fpi int8, wal_bytes numeric")


@virtual("pg_stat_statements", PG_STAT_STATEMENTS, live=True)
def _pg_stat_statements(o) -> dict:
    """Every statement counted since the server started (or the last reset). Times are in
    milliseconds and include planning (plans and *_plan_time are 0, as with
    pg_stat_statements.track_planning off); block and WAL counters are 0."""
    gather_other_processes(o)
    stats = getattr(o.database, "statement_stats", None)
    rows = []
    for (userid, dbid, queryid), e in stats.entries() if stats is not None else []:
        stddev = math.sqrt(e.m2 / e.calls) if e.calls else 0.0
        rows.append((userid, dbid, True, queryid, e.query, 0, 0.0, 0.0, 0.0, 0.0, 0.0,
                     e.calls, e.total, e.minimum, e.maximum, e.mean, stddev, e.rows,
                     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0))
    return _rows(PG_STAT_STATEMENTS, rows)
