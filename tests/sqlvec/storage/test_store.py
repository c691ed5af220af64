from __future__ import annotations

import glob
import logging
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from sqlvec.database import Database
from sqlvec.errors import DataCorrupted
from sqlvec.storage.compaction import CompactionPolicy
from sqlvec.storage.keys import MISSING
from sqlvec.storage.manifest import ManifestStore
from sqlvec.storage.store import LASTING_FILE, StoreOptions
from sqlvec.storage.wal import DeleteOp, InsertOp, scan_segment
from tests.sqlvec.conftest import segment_per_load

DIM = 6


def vectors(ids) -> np.ndarray:
    x = np.asarray(ids, dtype=np.float64)[:, None]
    j = np.arange(DIM)[None, :]
    return np.sin(x * 3.7 + j * 1.3 + x * j * 0.91).astype(np.float32)


def build(path: str, *, background: bool = False) -> None:
    """Two sealed, indexed segments, some deletes and a few rows still in the WAL."""
    with Database.open(path, options=StoreOptions(background=background, seal_rows=200)) as db:
        t = db.create_table("t", {"id": "int8", "v": f"vector({DIM})"})
        t.insert({"id": np.arange(200), "v": vectors(np.arange(200))})
        t.create_index("v")
        t.insert({"id": np.arange(200, 400), "v": vectors(np.arange(200, 400))})
        t.insert({"id": np.arange(400, 420), "v": vectors(np.arange(400, 420))})
        t.delete(lambda r: pc.equal(pc.bit_wise_and(r["id"], 15), 0))
        db.wait_idle()
        db.store().checkpoint()


def live_after_build() -> list[int]:
    return [i for i in range(420) if i % 16]


def flip_byte(path: str, offset: int | None = None) -> None:
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        at = len(data) // 2 if offset is None else offset
        data[at] ^= 0x5A
        f.seek(0)
        f.write(data)


def table_files(path: str, pattern: str) -> list[str]:
    return sorted(glob.glob(os.path.join(path, "postgres", "tables", "*", pattern)))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("pristine") / "data")
    build(path)
    return path


# 3. Corruption --------------------------------------------------------------------------------


def test_pristine_copy_opens(copy):
    with Database.open(copy, options=StoreOptions(background=False)) as db:
        assert sorted(db.table("t").scan(["id"]).column("id").to_pylist()) == live_after_build()


def add_wal_rows(path: str) -> None:
    """Rows in t that only the WAL holds (after its checkpoint), and a second table u."""
    with Database.open(path, options=StoreOptions(background=False, seal_rows=200)) as db:
        db.table("t").insert({"id": np.arange(1000, 1010), "v": vectors(np.arange(1000, 1010))})
        db.create_table("u", {"id": "int8"}).insert({"id": np.arange(5)})


def damage(path: str, how: str) -> str:
    """Damage t's first segment file (flip a byte, cut it short or remove it); returns it."""
    segment = table_files(path, "*.parquet")[0]
    if how == "flip":
        flip_byte(segment)
    elif how == "truncate":
        os.truncate(segment, os.path.getsize(segment) - 100)
    else:
        os.remove(segment)
    return segment


def unavailable_error(db: Database, call) -> DataCorrupted:
    with pytest.raises(DataCorrupted) as info:
        call(db.table("t"))
    assert info.value.sqlstate == "XX001"
    return info.value


@pytest.mark.parametrize("how,problem", [("flip", "is damaged (CRC mismatch)"),
                                         ("truncate", "is damaged (wrong size)"),
                                         ("remove", "is missing")])
def test_damaged_segment_makes_only_its_table_unavailable(copy, how, problem):
    add_wal_rows(copy)
    original = open(table_files(copy, "*.parquet")[0], "rb").read()
    segment = damage(copy, how)
    rel = os.path.relpath(segment, copy)
    # Small WAL files and eager checkpoints: WAL the damaged table needs would be deleted soon.
    opts = StoreOptions(background=False, seal_rows=200, wal_segment_bytes=4096,
                        checkpoint_wal_bytes=8192)
    before = sorted(os.listdir(os.path.dirname(segment)))
    with Database.open(copy, options=opts) as db:
        err = unavailable_error(db, lambda t: t.count())
        assert err.message == f'could not read table "t": segment file {rel} {problem}'
        assert "restore" in err.hint.lower() and "DROP TABLE t" in err.hint
        for call in (lambda t: t.scan(), lambda t: t.search("v", vectors([1])[0], 3),
                     lambda t: t.insert({"id": [7], "v": vectors([7])}),
                     lambda t: t.delete(lambda r: pc.equal(r["id"], 1)),
                     lambda t: t.update(lambda r: pc.equal(r["id"], 1), {"id": 2}),
                     lambda t: t.truncate(), lambda t: t.create_index("v", name="again"),
                     lambda t: t.store.alter_table(t.table_id, lambda d: d)):
            assert unavailable_error(db, call).message == err.message
        store = db.store()
        assert store.find_table("t") is not None  # the catalog still lists it
        u = db.table("u")
        for i in range(5, 400, 5):  # many WAL files, several checkpoints
            u.insert({"id": np.arange(i, i + 5)})
        store.checkpoint()
        assert len(glob.glob(os.path.join(copy, "postgres", "wal", "*.wal"))) > 1
    # Nothing of the damaged table was written, removed or replaced.
    assert sorted(os.listdir(os.path.dirname(segment))) == before
    if how == "remove":
        open(segment, "wb").write(original)
    else:
        assert open(segment, "rb").read() != original
        open(segment, "wb").write(original)
    with Database.open(copy, options=opts) as db:
        ids = db.table("t").scan(["id"]).column("id").to_pylist()
        assert sorted(ids) == live_after_build() + list(range(1000, 1010))
        assert sorted(db.table("u").scan().column("id").to_pylist()) == list(range(400))
        # Back to normal: checkpoints may now drop the WAL it needed.
        db.store().checkpoint()
    with Database.open(copy, options=opts) as db:
        assert db.table("t").count() == len(live_after_build()) + 10


def test_unavailable_table_survives_manifest_commits(copy):
    """Manifest versions written while a table is unavailable carry its entry unchanged."""
    segment = damage(copy, "flip")
    with Database.open(copy, options=StoreOptions(background=False)) as db:
        before = db.store()._manifests.load_latest().body["tables"][0]
        db.create_table("w", {"id": "int8"}).insert({"id": [1]})
        db.store().checkpoint()
        after = db.store()._manifests.load_latest().body["tables"][0]
        assert after == before
    flip_byte(segment)
    with Database.open(copy, options=StoreOptions(background=False)) as db:
        assert db.table("t").count() == len(live_after_build())
        assert db.table("w").count() == 1


def test_flipped_byte_in_latest_manifest(copy):
    manifests = ManifestStore(os.path.join(copy, "postgres"))
    latest = str(manifests.file(manifests.versions()[-1]))
    with open(latest, "rb") as f:
        text = f.read()
    # Flip a digit inside the JSON, so the file still parses and only the checksum can tell.
    at = text.index(b'"next_oid": ') + len(b'"next_oid": ')
    flip_byte(latest, at)
    with pytest.raises(DataCorrupted) as info:
        Database.open(copy, options=StoreOptions(background=False))
    assert info.value.sqlstate == "XX001"
    assert latest in info.value.message
    flip_byte(latest)  # and a byte anywhere
    with pytest.raises(DataCorrupted) as info:
        Database.open(copy, options=StoreOptions(background=False))
    assert latest in info.value.message


def test_damaged_delete_bitmap_table_can_be_dropped(copy):
    add_wal_rows(copy)
    bitmap = table_files(copy, "*.del")[0]
    flip_byte(bitmap, os.path.getsize(bitmap) - 1)
    with Database.open(copy, options=StoreOptions(background=False)) as db:
        err = unavailable_error(db, lambda t: t.scan())
        rel = os.path.relpath(bitmap, copy)
        assert err.message.startswith(f'could not read table "t": delete bitmap file {rel} '
                                      "is damaged (CRC32 mismatch")
        assert db.table("u").count() == 5
        db.drop_table("t")
        t = db.create_table("t", {"id": "int8"})
        t.insert({"id": [1, 2]})
    assert not os.path.exists(os.path.dirname(bitmap))
    with Database.open(copy, options=StoreOptions(background=False)) as db:
        assert db.table("t").count() == 2 and db.table("u").count() == 5


def test_flipped_byte_in_index_file_rebuilds_it(copy, caplog):
    index_file = table_files(copy, "*.hnsw")[0]
    flip_byte(index_file)
    with caplog.at_level(logging.WARNING, logger="sqlvec"):
        with Database.open(copy, options=StoreOptions(seal_rows=200)) as db:
            warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert any(index_file in m for m in warned), warned
            db.wait_idle()
            t = db.table("t")
            status = t.store.index_status()
            assert len(status) == len(t.snapshot().sealed) == 3
            assert all(s["state"] == "ready" for s in status)
            live = np.array(live_after_build())
            for q in vectors(np.arange(1000, 1010)):
                got = t.search("v", q, 10, ef=100)
                truth = live[np.argsort(np.linalg.norm(vectors(live) - q, axis=1))[:10]]
                assert len(set(got.column("id").to_pylist()) & set(truth.tolist())) >= 9
                np.testing.assert_allclose(
                    got.column("distance").to_numpy(),
                    np.linalg.norm(vectors(got.column("id").to_numpy()) - q, axis=1), rtol=1e-5)
    # The rebuilt graph is durable: the next open has nothing to complain about.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sqlvec"):
        with Database.open(copy, options=StoreOptions(background=False)) as db:
            assert all(s["state"] == "ready" for s in db.table("t").store.index_status())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_missing_index_file_is_rebuilt(copy):
    os.remove(table_files(copy, "*.hnsw")[-1])
    with Database.open(copy, options=StoreOptions(background=False)) as db:
        status = db.table("t").store.index_status()
        assert len(status) == 3 and all(s["state"] == "ready" for s in status)
    assert len(table_files(copy, "*.hnsw")) == len(table_files(copy, "*.parquet")) == 3


# Recovery -------------------------------------------------------------------------------------


def log_end(wal: str) -> int:
    """Where the log ends in a WAL file (space may be allocated beyond it)."""
    return scan_segment(int(Path(wal).stem), Path(wal)).end


def test_multi_table_commit_is_one_wal_record(tmp_path):
    """A commit over two tables survives whole, and a torn copy of its record is dropped
    whole: neither table shows its rows."""
    path = str(tmp_path / "data")
    with Database.open(path, options=StoreOptions(background=False)) as db:
        a = db.create_table("a", {"id": "int8"})
        b = db.create_table("b", {"id": "int8", "v": "vector(3)"})
        store = a.store
        ta, tb = store.table(a.table_id), store.table(b.table_id)
        store.commit([InsertOp(a.table_id, ta.coerce({"id": [1, 2]})),
                      InsertOp(b.table_id, tb.coerce({"id": [1], "v": [[1, 2, 3]]}))])
        wal = sorted(glob.glob(os.path.join(path, "postgres", "wal", "*.wal")))[-1]
        size_before = log_end(wal)
        store.commit([InsertOp(a.table_id, ta.coerce({"id": [3]})),
                      InsertOp(b.table_id, tb.coerce({"id": [3], "v": [[3, 2, 1]]}))])
        size_after = log_end(wal)
    assert size_after > size_before
    torn = str(tmp_path / "torn")
    shutil.copytree(path, torn)
    for cut in (1, (size_after - size_before) // 2, size_after - size_before - 20):
        shutil.rmtree(torn)
        shutil.copytree(path, torn)
        twal = os.path.join(torn, os.path.relpath(wal, path))
        os.truncate(twal, size_after - cut)
        with Database.open(torn, options=StoreOptions(background=False)) as db:
            assert sorted(db.table("a").scan().column("id").to_pylist()) == [1, 2]
            assert db.table("b").scan().column("id").to_pylist() == [1]
        assert os.path.getsize(twal) == size_before  # the torn tail was cut off
    with Database.open(path, options=StoreOptions(background=False)) as db:
        assert sorted(db.table("a").scan().column("id").to_pylist()) == [1, 2, 3]
        assert sorted(db.table("b").scan().column("id").to_pylist()) == [1, 3]


def test_every_manifest_version_recovers_every_row_once(tmp_path):
    """Seals, checkpoints, index builds and merges commit manifests from several threads while
    commits go on. Recovery from any one of those versions (plus the WAL) must find each
    committed row exactly once: no version may list a segment whose rows it also replays, nor
    skip rows it neither lists nor replays."""
    path = str(tmp_path / "data")
    opts = StoreOptions(seal_rows=30, manifest_keep=10_000, checkpoint_wal_bytes=1 << 40,
                        compaction=CompactionPolicy(min_merge=3, target_rows=500))
    total = 0
    with Database.open(path, options=opts) as db:
        t = db.create_table("t", {"id": "int8", "v": f"vector({DIM})"}, primary_key=["id"])
        t.create_index("v", m=4, ef_construction=8)
        stop = threading.Event()

        def checkpoints() -> None:
            while not stop.is_set():
                db.store().checkpoint()

        def write(base: int) -> None:
            for i in range(base, base + 600, 6):
                t.insert({"id": np.arange(i, i + 6), "v": vectors(np.arange(i, i + 6))})

        helper = threading.Thread(target=checkpoints)
        writers = [threading.Thread(target=write, args=(b,)) for b in (0, 10_000)]
        helper.start()
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        stop.set()
        helper.join()
        db.wait_idle()
        total = t.count()
    assert total == 1200
    expected = sorted([*range(600), *range(10_000, 10_600)])

    manifests = os.path.join(path, "postgres", "manifest")
    store = ManifestStore(os.path.join(path, "postgres"))
    versions = [v for v in store.versions() if store.load(v).body["tables"]]  # after CREATE
    assert len(versions) > 20
    picks = sorted(set(versions[:: max(1, len(versions) // 40)]) | {versions[-1]})
    for version in picks:
        trial = str(tmp_path / f"v{version}")
        # Hard links: recovery only ever replaces files (temp file + rename) or adds new ones.
        shutil.copytree(path, trial, copy_function=os.link)
        for name in os.listdir(manifests):
            if int(name.split("-")[1].split(".")[0]) > version:
                os.remove(os.path.join(trial, "postgres", "manifest", name))
        with Database.open(trial, options=StoreOptions(background=False, seal_rows=1 << 20)) as db:
            ids = db.table("t").scan(["id"]).column("id").to_pylist()
            assert sorted(ids) == expected, f"manifest version {version}"
        shutil.rmtree(trial)


def test_close_then_reopen_with_background_work_pending(tmp_path):
    path = str(tmp_path / "data")
    opts = StoreOptions(seal_rows=50)
    with Database.open(path, options=opts) as db:
        t = db.create_table("t", {"id": "int8", "v": f"vector({DIM})"})
        t.create_index("v")
        for i in range(0, 500, 25):
            t.insert({"id": np.arange(i, i + 25), "v": vectors(np.arange(i, i + 25))})
        # Closing does not wait for the queue; whatever was not done is redone on open.
    with Database.open(path, options=opts) as db:
        db.wait_idle()
        t = db.table("t")
        assert sorted(t.scan(["id"]).column("id").to_pylist()) == list(range(500))
        assert all(s["state"] == "ready" for s in t.store.index_status())
        assert t.search("v", vectors([123])[0], 1).column("id").to_pylist() == [123]


def test_index_build_progress_never_drops_back(tmp_path, monkeypatch):
    """sqlvec_indexes and CREATE INDEX's progress record, sampled at every step of a build:
    a segment's state only moves forward (pending, building, calibrating, saving, ready) and
    its rows indexed only grow, also between the build and the manifest that lists it."""
    from sqlvec.storage import hnsw
    from sqlvec.storage.schema import IndexDef
    from sqlvec.storage.store import CreateIndexProgress

    monkeypatch.setattr(hnsw, "BUILD_CHUNK_ROWS", 50)
    order = ["pending", "building", "calibrating", "saving", "ready"]
    with Database.open(str(tmp_path), options=segment_per_load(300)) as db:
        t = db.create_table("t", {"id": "int8", "v": f"vector({DIM})"})
        t.insert({"id": np.arange(300), "v": vectors(np.arange(300))})  # sealed
        t.insert({"id": np.arange(300, 500), "v": vectors(np.arange(300, 500))})  # growing
        store = db.store()
        seen: list[list[tuple[int, int]]] = []
        reports: list[tuple] = []
        report = CreateIndexProgress(t.definition.oid, 99999)

        def sample(*_args) -> None:
            seen.append([(order.index(s["state"]), s["indexed"]) for s in store.index_status()])
            reports.append(report.current())

        commit = store._commit_manifest
        monkeypatch.setattr(store, "_commit_manifest", lambda: (sample(), commit())[1])
        build, calibrate, save = hnsw.HnswIndex.build.__func__, hnsw.HnswIndex.calibrate, \
            hnsw.HnswIndex.save

        def sampled_build(cls, *args, progress=None, **kw):
            return build(cls, *args, progress=lambda *a: (sample(), progress(*a)), **kw)

        monkeypatch.setattr(hnsw.HnswIndex, "build", classmethod(sampled_build))
        monkeypatch.setattr(hnsw.HnswIndex, "calibrate",
                            lambda self, *a: (sample(), calibrate(self, *a))[1])
        monkeypatch.setattr(hnsw.HnswIndex, "save", lambda self, *a: (sample(), save(self, *a))[1])
        index = IndexDef(name="t_v", oid=store.allocate_oid(), columns=("v",), method="hnsw",
                         opclass="vector_l2_ops")
        store.create_index(t.table_id, index, progress=sample, report=report)
        sample()
    assert [s[0] for s in seen[-1]] == [4, 4] and sum(s[1] for s in seen[-1]) == 500
    states = {s for step in seen for s, _n in step}
    assert {1, 2, 3} <= states  # every step was seen at least once
    for before, after in zip(seen, seen[1:]):
        if len(before) == len(after):
            assert all(b <= a for b, a in zip(before, after)), (before, after)
    rows_done = [r[4] for r in reports]
    assert rows_done == sorted(rows_done) and rows_done[-1] == 500
    assert reports[-1][1:4] == (2, 2, 500)


def test_one_row_deletes_after_an_insert_in_one_commit(tmp_path):
    """A commit whose one-row deletes follow an insert (what a group of single-row UPDATEs
    applies: the insert leaves no snapshot behind) deletes the right rows, sealed or growing,
    and frees their keys; a reopen replays it to the same state."""
    path = str(tmp_path / "data")
    with Database.open(path, options=StoreOptions(background=False)) as db:
        s = db.connect()
        s.execute_one("CREATE TABLE t (id bigint PRIMARY KEY, v int)")
        s.execute_one("INSERT INTO t SELECT g, g FROM generate_series(1, 50) g")
        s.execute_one("CHECKPOINT")  # ids 1-50 sealed
        s.execute_one("INSERT INTO t VALUES (60, 60), (61, 61)")  # growing
        store = s.store
        table = store.table(store.find_table("t").id)
        sealed = table.lookup_key(7)[1]
        growing = table.lookup_key(60)[1]
        store.commit([InsertOp(table.id, table.coerce({"id": [100], "v": [1]})),
                      DeleteOp(table.id, np.array([sealed])),
                      InsertOp(table.id, table.coerce({"id": [101], "v": [2]})),
                      DeleteOp(table.id, np.array([growing])),
                      InsertOp(table.id, table.coerce({"id": [7], "v": [-7]}))])
        expected = [(i,) for i in sorted({*range(1, 51), 61, 100, 101})]
        assert s.execute_one("SELECT id FROM t ORDER BY id").rows() == expected
        assert s.execute_one("SELECT v FROM t WHERE id = 7").rows() == [(-7,)]
        assert table.find_key(60) == MISSING
        s.execute_one("INSERT INTO t VALUES (60, 0)")  # the key is free again
    with Database.open(path, options=StoreOptions(background=False)) as db:
        s = db.connect()
        assert s.execute_one("SELECT count(*), sum(v) FROM t").rows() == \
            [(54, sum(range(1, 51)) - 7 - 7 + 61 + 1 + 2)]


def test_a_table_checkpoint_never_falls_back_behind_removed_log(tmp_path):
    """A manifest moves an emptied table's checkpoint past the log, which it then removes; a
    later manifest, written once the table holds unsealed rows again, must not list the old
    checkpoint: a restart would look for records that are gone."""
    path = str(tmp_path / "data")
    opts = StoreOptions(background=False, wal_segment_bytes=4096)
    with Database.open(path, options=opts) as db:
        s = db.connect()
        s.execute_one("CREATE TABLE a (id int)")
        s.execute_one("CREATE TABLE b (id int, pad text)")
        store = s.store
        a, b = store.find_table("a").id, store.find_table("b").id
        s.execute_one("INSERT INTO a VALUES (1)")
        store.seal(a)  # nothing of a only in the log
        for i in range(20):  # log for several files, all of it b's
            s.execute_one(f"INSERT INTO b VALUES ({i}, repeat('x', 500))")
        store.seal(b)  # lists a's checkpoint past those records, and removes them
        s.execute_one("INSERT INTO a VALUES (2)")  # a has rows only in the log again
        s.execute_one("INSERT INTO b VALUES (20, 'y')")
        store.seal(b)  # another manifest version, listing a's checkpoint again
        checkpoints = {t["def"]["name"]: t["checkpoint_lsn"] for t in ManifestStore(
            os.path.join(path, "postgres"), read_only=True).load_latest().body["tables"]}
    with Database.open(path, options=opts) as db:
        s = db.connect()
        assert s.execute_one("SELECT id FROM a ORDER BY id").rows() == [(1,), (2,)]
        assert s.execute_one("SELECT count(*) FROM b").rows() == [(21,)]
    assert checkpoints["a"] > 2, checkpoints


def test_lasting_catalog_fields_outlive_open_schema_changes(tmp_path):
    """`update_catalog_lasting` while schema changes are open: durable at once over the
    manifest a crash recovers, kept by a restore for the same object only, and in a manifest
    after ROLLBACK."""
    path = str(tmp_path / "data")

    def entry(db: Database) -> dict:
        return db.store().catalog["sequences"]["public.s"]

    with Database.open(path, options=StoreOptions(background=False)) as db:
        store = db.store()
        store.update_catalog(lambda c: {**c, "sequences": {
            **c.get("sequences", {}), "public.s": {"oid": 1, "value": 1}}})
        store.begin_deferred()
        store.update_catalog_lasting("sequences", "public.s", {"value": 40}, ("oid",))
        crashed = str(tmp_path / "crashed")
        shutil.copytree(path, crashed)
        store.update_catalog(lambda c: {**c, "sequences": {
            **c.get("sequences", {}), "public.s": {"oid": 2, "value": 1}}})  # dropped, made anew
        store.update_catalog_lasting("sequences", "public.s", {"value": 7}, ("oid",))
        store.restore(None)
        assert entry(db) == {"oid": 1, "value": 40}
        store.rollback_deferred()
        assert not os.path.exists(os.path.join(store.directory, LASTING_FILE))
    for reopened in (path, crashed):
        with Database.open(reopened, options=StoreOptions(background=False)) as db:
            assert entry(db) == {"oid": 1, "value": 40}


def test_a_seal_whose_table_is_dropped_while_it_writes_stops_quietly(tmp_path, monkeypatch):
    """The suite drops its text COPY's table right after the COPY, while the background seal
    writes the rows' files: the seal stops at its next file, raises nothing (it warned
    'could not write file') and leaves no file behind."""
    from sqlvec.storage import segment

    with Database.open(str(tmp_path / "db"), options=StoreOptions(background=False,
                                                                  seal_rows=10_000)) as db:
        t = db.create_table("t", {"id": "int8", "v": f"vector({DIM})"})
        t.insert({"id": np.arange(300), "v": vectors(np.arange(300))})
        store = db.store()
        table = store.table(t.table_id)
        directory = table.directory
        writes = []
        durably = segment._write_durably

        def dropping_first(path, write):
            if not writes:  # the DROP comes while the seal writes its first file
                dropper = threading.Thread(target=store.drop_table, args=(t.table_id,))
                dropper.start()
                dropper.join()
            writes.append(path)
            return durably(path, write)

        monkeypatch.setattr(segment, "_write_durably", dropping_first)
        assert store.seal(t.table_id) is None
        assert len(writes) == 1  # the files after the first were not written
        assert not os.path.exists(directory) or not os.listdir(directory)
        assert not store._inflight_files
