"""A full disk or a failing device under a database: every acknowledged commit survives, nothing
of a failed one is ever visible, and the database carries on once space returns.

Faults are injected at the system-call boundary (tests/sqlvec/storage/faults.py) and, for the
Parquet writer, where pyarrow writes a segment; tests/e2e/test_disk_full.py repeats the story
on a real size-limited tmpfs through the server.
"""

from __future__ import annotations

import errno
import random
import threading

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from sqlvec.database import Database
from sqlvec.errors import DiskFull, IoError, SqlVecError, UniqueViolation
from sqlvec.storage.compaction import CompactionPolicy
from sqlvec.storage.store import StoreOptions
from tests.sqlvec.storage.faults import FaultyDisk

COLUMNS = {"id": "bigint", "note": "text", "v": "vector(4)"}


def rows(ids) -> dict:
    ids = list(ids)
    return {"id": ids, "note": [f"row {i}" for i in ids],
            "v": np.array([[i, i + 1, i + 2, i + 3] for i in ids], np.float32)}


def stored_ids(db: Database) -> list[int]:
    return sorted(db.table("t").scan(["id"]).column("id").to_pylist())


def check_rows(db: Database, ledger: set[int]) -> None:
    t = db.table("t").scan()
    assert sorted(t.column("id").to_pylist()) == sorted(ledger)
    for r in t.to_pylist():
        assert r["note"] == f"row {r['id']}" and r["v"][0] == r["id"]


def test_full_disk_at_commit_fails_cleanly_and_every_acknowledged_row_survives(
        tmp_path, monkeypatch):
    disk = FaultyDisk(monkeypatch)
    ledger: set[int] = set()
    with Database.open(str(tmp_path), options=StoreOptions(background=False)) as db:
        t = db.create_table("t", COLUMNS, primary_key=["id"])
        for i in range(20):
            t.insert(rows([i]))
            ledger.add(i)
        disk.write_error = errno.ENOSPC
        for i in range(20, 40):
            with pytest.raises(DiskFull) as failed:
                t.insert(rows([i]))
            assert failed.value.sqlstate == "53100"
        with pytest.raises(DiskFull):  # an UPDATE: a delete and an insert in one record
            t.update(lambda r: pc.equal(r["id"], 3), {"note": "changed"})
        check_rows(db, ledger)  # nothing of a failed commit is visible
        disk.write_error = None
        for i in range(20, 60):  # the keys of failed commits were never taken
            t.insert(rows([i]))
            ledger.add(i)
        with pytest.raises(UniqueViolation):
            t.insert(rows([5]))
        check_rows(db, ledger)
    with Database.open(str(tmp_path)) as db:
        check_rows(db, ledger)


def test_an_io_error_makes_the_database_read_only_until_restart(tmp_path, monkeypatch):
    disk = FaultyDisk(monkeypatch)
    with Database.open(str(tmp_path), options=StoreOptions(background=False)) as db:
        t = db.create_table("t", COLUMNS, primary_key=["id"])
        t.insert(rows(range(10)))
        disk.fsync_error = errno.EIO
        with pytest.raises(IoError):
            t.insert(rows([10]))
        disk.fsync_error = None
        with pytest.raises(IoError, match="unusable after an I/O error"):
            t.insert(rows([11]))
        check_rows(db, set(range(10)))  # reads go on
    with Database.open(str(tmp_path)) as db:
        check_rows(db, set(range(10)))
        db.table("t").insert(rows([10]))
        check_rows(db, set(range(11)))


def test_concurrent_writers_through_an_intermittently_full_disk(tmp_path, monkeypatch):
    """Eight writers commit while the disk fills and frees at random: each keeps a ledger of
    the commits that returned; after reopening, the table holds exactly those rows."""
    disk = FaultyDisk(monkeypatch)
    ledgers: list[set[int]] = [set() for _ in range(8)]
    errors: list[BaseException] = []
    stop = threading.Event()
    with Database.open(str(tmp_path), options=StoreOptions(seal_rows=300)) as db:
        t = db.create_table("t", COLUMNS, primary_key=["id"])

        def writer(w: int) -> None:
            rng = random.Random(w)
            n = 0
            while not stop.is_set():
                ids = [w * 1_000_000 + n + j for j in range(rng.randint(1, 5))]
                n += len(ids)
                try:
                    t.insert(rows(ids))
                except SqlVecError as exc:
                    if exc.sqlstate != "53100":
                        errors.append(exc)
                    continue
                ledgers[w].update(ids)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        for th in threads:
            th.start()
        flips = random.Random(7)
        for _ in range(30):
            disk.write_error = errno.ENOSPC if disk.write_error is None else None
            stop.wait(flips.uniform(0.005, 0.03))
        disk.write_error = None
        stop.wait(0.1)
        stop.set()
        for th in threads:
            th.join()
        assert not errors, errors
        ledger = set().union(*ledgers)
        assert len(ledger) > 100
        db.wait_idle()
        check_rows(db, ledger)
    with Database.open(str(tmp_path)) as db:
        check_rows(db, ledger)


def test_full_disk_while_sealing_keeps_the_rows_and_the_seal_is_retried(tmp_path, monkeypatch):
    real_write_table = pq.write_table
    full = {"on": True}

    def write_table(*args, **kwargs):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_table(*args, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_table)
    opts = StoreOptions(background=False, seal_rows=100)
    with Database.open(str(tmp_path), options=opts) as db:
        t = db.create_table("t", COLUMNS, primary_key=["id"])
        for start in range(0, 100, 10):
            try:
                t.insert(rows(range(start, start + 10)))  # the 100th row triggers a seal
            except DiskFull:
                pytest.fail("a failed seal must not fail the commit that triggered it")
        assert not list(tmp_path.glob("postgres/tables/*/seg-*"))  # no partial file left
        check_rows(db, set(range(100)))
        with pytest.raises(DiskFull, match="could not write"):
            t.seal()
        full["on"] = False
        t.insert(rows(range(100, 200)))  # seals again: the earlier segment is written first
        store = t.store
        table = store.table(t.table_id)
        assert not table.sealing and all(s.path for s in table.sealed)
        check_rows(db, set(range(200)))
    with Database.open(str(tmp_path)) as db:
        check_rows(db, set(range(200)))


def test_full_disk_while_writing_the_vectors_file_leaves_no_file(tmp_path, monkeypatch):
    """The segment's second file (its vectors, memory-mapped by readers) fails alone: no file
    of the segment is left behind, the rows stay, and the retried seal writes both."""
    import pyarrow as pa

    real_new_file = pa.ipc.new_file
    full = {"on": True}

    def new_file(*args, **kwargs):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_new_file(*args, **kwargs)

    monkeypatch.setattr(pa.ipc, "new_file", new_file)
    opts = StoreOptions(background=False, seal_rows=1000)
    with Database.open(str(tmp_path), options=opts) as db:
        t = db.create_table("t", COLUMNS, primary_key=["id"])
        t.insert(rows(range(50)))
        with pytest.raises(DiskFull, match="could not write"):
            t.seal()
        assert not list(tmp_path.glob("postgres/tables/*/seg-*"))
        check_rows(db, set(range(50)))
        full["on"] = False
        t.seal()
        names = sorted(p.name for p in tmp_path.glob("postgres/tables/*/seg-*"))
        assert names == ["seg-00000001.columns.arrow", "seg-00000001.parquet",
                         "seg-00000001.vectors.arrow"]
    with Database.open(str(tmp_path)) as db:
        check_rows(db, set(range(50)))


def test_full_disk_during_compaction_keeps_the_old_segments(tmp_path, monkeypatch):
    opts = StoreOptions(background=False, compaction=CompactionPolicy(min_merge=2))
    with Database.open(str(tmp_path), options=opts) as db:
        t = db.create_table("t", COLUMNS, primary_key=["id"])
        for start in range(0, 300, 100):
            t.insert(rows(range(start, start + 100)))
            t.seal()
        t.delete(lambda r: pc.less(r["id"], 50))
        real_write_table = pq.write_table

        def write_table(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(pq, "write_table", write_table)
        with pytest.raises(DiskFull):
            t.compact()
        check_rows(db, set(range(50, 300)))
        monkeypatch.setattr(pq, "write_table", real_write_table)
        assert t.compact() == 1
        check_rows(db, set(range(50, 300)))
    with Database.open(str(tmp_path)) as db:
        check_rows(db, set(range(50, 300)))


def test_full_disk_at_create_table_leaves_no_half_created_table(tmp_path, monkeypatch):
    disk = FaultyDisk(monkeypatch)
    with Database.open(str(tmp_path), options=StoreOptions(background=False)) as db:
        db.create_table("t", COLUMNS, primary_key=["id"]).insert(rows([1]))
        disk.fsync_error = errno.ENOSPC  # the manifest's temp file cannot be made durable
        with pytest.raises(DiskFull):
            db.create_table("other", COLUMNS)
        with pytest.raises(SqlVecError, match="does not exist"):
            db.table("other")
        disk.fsync_error = None
        db.create_table("other", COLUMNS).insert(rows([2]))
    with Database.open(str(tmp_path)) as db:
        assert db.table("other").scan(["id"]).column("id").to_pylist() == [2]
        check_rows(db, {1})

