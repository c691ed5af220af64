"""Online backups: the pins a writer honours, and consistent copies taken beside a writer."""

from __future__ import annotations

import os
import threading

import numpy as np
import pyarrow.compute as pc
import pytest

from sqlvec.database import Database
from sqlvec.errors import SqlVecError
from sqlvec.storage.backup import BACKUP_DIR, PinHolder, backup_database
from sqlvec.storage.compaction import CompactionPolicy
from sqlvec.storage.manifest import ManifestStore
from sqlvec.storage.store import StoreOptions
from sqlvec.storage.wal import wal_files

DIM = 4


def rows(ids) -> dict:
    ids = np.asarray(ids, dtype=np.int64)
    return {"id": ids, "v": np.repeat(ids[:, None], DIM, axis=1).astype(np.float32)}


def options(**kw) -> StoreOptions:
    base = dict(background=False, seal_rows=50, manifest_keep=1,
                compaction=CompactionPolicy(min_merge=2))
    base.update(kw)
    return StoreOptions(**base)


def ids_of(db: Database, name: str = "t") -> list[int]:
    return sorted(db.table(name).scan(["id"]).column("id").to_pylist())


def test_a_pinned_version_keeps_its_files_and_log(tmp_path):
    path = str(tmp_path / "data")
    with Database.open(path, options=options()) as db:
        store = db.store()
        t = db.create_table("t", {"id": "int8", "v": f"vector({DIM})"})
        t.insert(rows(range(120)))  # two sealed segments, rows in the growing one
        gone = db.create_table("gone", {"id": "int8"})
        gone.insert({"id": [1, 2]})
        gone_dir = os.path.join(store.directory, "tables", str(gone.definition.id))
        store.checkpoint()
        manifests = ManifestStore(store.directory, read_only=True)
        pinned = manifests.load_latest()
        files = {s["file"] for tm in pinned.body["tables"] for s in tm["segments"]}
        holder = PinHolder(store.directory, writer=True)
        with holder.exclusive():
            holder.pin(pinned)
        t.insert(rows(range(120, 400)))  # more segments, then compaction merges them all
        t.compact()
        db.drop_table("gone")
        store.checkpoint()
        assert pinned.version in manifests.versions()  # kept beyond manifest_keep=1
        table_dir = os.path.join(store.directory, "tables", str(t.definition.id))
        assert files <= set(os.listdir(table_dir))
        assert os.path.isdir(gone_dir)
        wal_from = min(tm["checkpoint_lsn"] for tm in pinned.body["tables"])
        assert wal_files(os.path.join(store.directory, "wal"))[0][0] <= wal_from + 1

        holder.release()
        store.checkpoint()  # the next manifest commit takes what only the pin kept
        assert manifests.versions() == [manifests.load_latest().version]
        assert not files & set(os.listdir(table_dir))
        assert not os.path.exists(gone_dir)


def test_a_pin_whose_backup_died_is_removed(tmp_path):
    path = str(tmp_path / "data")
    with Database.open(path, options=options()) as db:
        store = db.store()
        t = db.create_table("t", {"id": "int8", "v": f"vector({DIM})"})
        t.insert(rows(range(60)))
        old = ManifestStore(store.directory).load_latest().version
        stale = os.path.join(store.directory, BACKUP_DIR, "pin-1-1-1.json")
        with open(stale, "w") as f:  # written, but no process holds it
            f.write(f'{{"manifest_version": {old}, "wal_from": 0}}')
        store.checkpoint()
        assert not os.path.exists(stale)
        assert old not in ManifestStore(store.directory).versions()


def test_backup_beside_writes_ddl_and_checkpoints(tmp_path):
    """Writers commit in order while another thread creates, fills and drops tables and
    checkpoints; the copy holds, per writer, a prefix of its commits that includes every
    commit acknowledged before the backup started, each commit whole."""
    path, dest = str(tmp_path / "data"), str(tmp_path / "copy")
    with Database.open(path, options=options(background=True, seal_rows=200,
                                             manifest_keep=2)) as db:
        t = db.create_table("t", {"id": "int8", "writer": "int8", "part": "int8",
                                  "v": f"vector({DIM})"})
        t.create_index("v")
        stop = threading.Event()
        acked: dict[int, list[int]] = {0: [], 1: []}

        def write(w: int) -> None:
            n = 0
            while not stop.is_set():
                ids = np.arange(3) + (w * 10_000_000 + n * 3)
                t.insert({**rows(ids), "writer": [w] * 3, "part": [0, 1, 2]})
                acked[w].append(n)
                n += 1

        def churn() -> None:
            k = 0
            while not stop.is_set():
                extra = db.create_table(f"x{k}", {"id": "int8"})
                extra.insert({"id": [k]})
                db.store().checkpoint()
                if k % 2:
                    db.drop_table(f"x{k}")
                k += 1

        threads = [threading.Thread(target=write, args=(w,)) for w in acked]
        threads.append(threading.Thread(target=churn))
        for th in threads:
            th.start()
        try:
            while min(len(a) for a in acked.values()) < 50:
                stop.wait(0.01)
            before = {w: len(a) for w, a in acked.items()}
            copy = backup_database(os.path.join(path, "postgres"),
                                   os.path.join(dest, "postgres"), writer=True)
        finally:
            stop.set()
            for th in threads:
                th.join()
    assert copy.end_lsn > 0 and copy.manifest_version > 0
    with Database.open(dest, options=options()) as restored:
        got = restored.table("t").scan(["id", "writer", "part"]).to_pydict()
    per_txn: dict[tuple[int, int], set[int]] = {}
    for i, w, p in zip(got["id"], got["writer"], got["part"]):
        per_txn.setdefault((w, (i - w * 10_000_000) // 3), set()).add(p)
    assert all(parts == {0, 1, 2} for parts in per_txn.values())  # no commit half there
    for w in acked:
        mine = sorted(n for (ww, n) in per_txn if ww == w)
        assert mine == list(range(len(mine)))  # a prefix of the writer's commits
        assert len(mine) >= before[w]  # every commit acknowledged before the backup began
        assert len(mine) <= len(acked[w]) + 1


def test_backup_refuses_a_destination_that_is_not_empty(tmp_path):
    from sqlvec.maintenance import backup_data_directory

    with Database.open(str(tmp_path / "data"), options=options()):
        pass
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "x").write_text("")
    with pytest.raises(SqlVecError, match="not empty"):
        backup_data_directory(str(tmp_path / "data"), str(tmp_path / "dest"))


def test_an_incomplete_backup_does_not_start(tmp_path):
    from sqlvec.maintenance import BACKUP_IN_PROGRESS

    dest = tmp_path / "copy"
    dest.mkdir()
    (dest / BACKUP_IN_PROGRESS).write_text("")
    with pytest.raises(SqlVecError, match="incomplete backup") as info:
        Database.open(str(dest))
    assert info.value.sqlstate == "55000"


def test_copy_of_a_stopped_database_is_identical(tmp_path):
    from sqlvec.maintenance import BACKUP_LABEL, backup_data_directory

    path, dest = str(tmp_path / "data"), str(tmp_path / "copy")
    with Database.open(path, options=options()) as db:
        t = db.create_table("t", {"id": "int8", "v": f"vector({DIM})"})
        t.insert(rows(range(130)))
        t.create_index("v")
        t.delete(lambda r: pc.equal(pc.bit_wise_and(r["id"], 7), 0))
        expected = ids_of(db)
    report = backup_data_directory(path, dest)
    assert not report.server_running
    assert os.path.exists(os.path.join(dest, BACKUP_LABEL))
    with Database.open(dest, options=options()) as restored:
        assert ids_of(restored) == expected
        hits = restored.table("t").search("v", [5.0] * DIM, k=3)
        assert hits.column("id").to_pylist()[0] == 5


def test_sequence_values_of_an_open_schema_changing_block_are_in_the_copy(tmp_path):
    """nextval in a block whose schema changes are still open is durable in the sequence side
    file over the latest manifest: the backup copies it, so a restore never hands out again a
    value given before the backup (nor one a row in the copied log holds)."""
    from sqlvec.maintenance import backup_data_directory

    path, dest = str(tmp_path / "data"), str(tmp_path / "copy")
    with Database.open(path, options=options()) as db:
        s = db.connect()
        s.execute_one("CREATE SEQUENCE s")
        s.execute_one("CREATE TABLE t (id int8)")
        s.execute_one("INSERT INTO t VALUES (nextval('s'))")
        s.execute_one("BEGIN")
        s.execute_one("CREATE TABLE x (id int8)")
        given = [s.execute_one("SELECT nextval('s')").rows()[0][0] for _ in range(40)]
        backup_data_directory(path, dest)  # (which checks the copy too)
        s.execute_one("ROLLBACK")
    assert given == list(range(2, 42))
    with Database.open(dest, options=options()) as restored:
        r = restored.connect()
        assert r.execute_one("SELECT nextval('s')").rows()[0][0] > given[-1]
        assert r.execute_one("SELECT count(*) FROM pg_class WHERE relname = 'x'").rows() == [(0,)]
