from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import uuid
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sqlvec.database import Database, check_database_name
from sqlvec.errors import (
    NotNullViolation,
    SqlVecError,
    UndefinedTable,
    UniqueViolation,
)
from sqlvec.storage.compaction import CompactionPolicy
from sqlvec.storage.store import Store, StoreOptions
from sqlvec.types import SqlType
from sqlvec.vectors import Metric
from tests.sqlvec.conftest import segment_per_load

ALL_TYPES = {
    "id": "int8",
    "b": "bool",
    "i2": "int2",
    "i4": "int4",
    "i8": "int8",
    "f4": "float4",
    "f8": "float8",
    "n": "numeric(10,2)",
    "nu": "numeric",
    "t": "text",
    "vc": "varchar(20)",
    "by": "bytea",
    "d": "date",
    "ts": "timestamp",
    "tz": "timestamptz",
    "j": "jsonb",
    "u": "uuid",
    "v": "vector(4)",
}
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def typed_rows(start: int, count: int) -> list[dict]:
    """Rows with a value in every column, every fourth one NULL in every nullable column."""
    out = []
    for i in range(start, start + count):
        if i % 4 == 3:
            out.append({name: (i if name == "id" else None) for name in ALL_TYPES})
            continue
        sign = -1 if i % 2 else 1
        out.append({
            "id": i,
            "b": i % 3 == 0,
            "i2": sign * (32767 if i % 5 == 0 else i),
            "i4": sign * (2**31 - 1 if i % 5 == 1 else i * 1000),
            "i8": sign * (2**63 - 1 if i % 5 == 2 else i * 10**12),
            "f4": float(np.float32(0.1 * i)),
            "f8": sign * (1 / 3 + i),
            "n": Decimal(f"{sign * (12345678 + i)}.{i % 100:02d}"),
            "nu": Decimal(f"{sign * (10**23 + i)}.{i:012d}"),
            "t": f"héllo wörld ✓ {i}" + ("" if i % 2 else "\n\ttab \x00 nul"),
            "vc": f"v{i}"[:20] if i % 5 else "",
            "by": bytes(range(i % 256, min(256, i % 256 + 16))) if i % 5 else b"",
            "d": dt.date(1970, 1, 1) + dt.timedelta(days=sign * i * 37),
            "ts": dt.datetime(2024, 2, 29, 23, 59, 59, 999999) - dt.timedelta(minutes=i * 7),
            "tz": dt.datetime(2001, 9, 9, 1, 46, 40, i, tzinfo=IST if i % 2 else dt.timezone.utc),
            "j": json.dumps({"i": i, "tags": ["a", None, True], "nested": {"x": 1.5}}),
            "u": str(uuid.UUID(int=i * 0x9E3779B97F4A7C15 % 2**128)),
            "v": [float(np.float32(x)) for x in (i, -0.5, 1e-3 * i, 3.4e38 if i % 5 == 0 else 0)],
        })
    return out


def as_arrow(rows: list[dict]) -> pa.Table:
    return pa.table({name: pa.array([r[name] for r in rows], SqlType.parse(spelling).to_arrow())
                     for name, spelling in ALL_TYPES.items()})


def assert_rows(handle, expected: list[dict]) -> None:
    got = handle.scan().sort_by("id").to_pylist()
    want = sorted(expected, key=lambda r: r["id"])
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g == w, f"row {w['id']} differs"


def options(**kw) -> StoreOptions:
    kw.setdefault("background", False)
    return StoreOptions(**kw)


def table_state(handle) -> tuple[int, int]:
    t = handle.store.table(handle.table_id)
    return len(t.sealed), t.memtable.n_rows


# 1. Round trip of every type ------------------------------------------------------------------


def test_every_type_round_trips_through_wal_seal_compaction_and_reopen(tmp_path):
    opts = options(seal_rows=10_000, compaction=CompactionPolicy(min_merge=3))
    path = str(tmp_path)
    rows = typed_rows(0, 24)
    with Database.open(path, options=opts) as db:
        t = db.create_table("typed", ALL_TYPES, primary_key=["id"])
        t.insert(as_arrow(rows[:8]))  # Arrow input
        t.insert({k: [r[k] for r in rows[8:16]] for k in ALL_TYPES})  # Python lists
        assert_rows(t, rows[:16])

    # (a) Only in the WAL: recovery rebuilds the growing segment.
    with Database.open(path, options=opts) as db:
        t = db.table("typed")
        assert table_state(t) == (0, 16)
        assert_rows(t, rows[:16])
        assert t.scan().schema.types == t.definition.arrow_schema().types
        t.seal()
        t.insert(as_arrow(rows[16:20]))
        t.seal()
        t.insert(as_arrow(rows[20:24]))
        t.seal()

    # (b) Sealed Parquet segments.
    with Database.open(path, options=opts) as db:
        t = db.table("typed")
        assert table_state(t) == (3, 0)
        assert_rows(t, rows)
        gone = {1, 3, 17, 22}
        t.delete(lambda r: pc.is_in(r["id"], pa.array(sorted(gone), pa.int64())))
        assert t.compact() == 1
        assert table_state(t) == (1, 0)
        rows = [r for r in rows if r["id"] not in gone]
        assert_rows(t, rows)

    # (c) The compacted segment.
    with Database.open(path, options=opts) as db:
        t = db.table("typed")
        assert table_state(t) == (1, 0)
        assert_rows(t, rows)
        nulls = t.scan(filter=lambda r: pc.equal(pc.bit_wise_and(r["id"], 3), 3)).to_pylist()
        assert nulls and all(v is None for r in nulls for k, v in r.items() if k != "id")


def test_timestamptz_keeps_the_instant():
    rows = typed_rows(1, 1)
    assert rows[0]["tz"].utcoffset() == dt.timedelta(hours=5, minutes=30)
    stored = as_arrow(rows).column("tz")[0].as_py()
    assert stored == rows[0]["tz"] and stored.utcoffset() == dt.timedelta(0)


def test_not_null_rejects_null_with_23502(tmp_path):
    with Database.open(str(tmp_path), options=options()) as db:
        t = db.create_table("t", {"id": "int8", "name": "text", "v": "vector(2)"},
                            primary_key=["id"], not_null=["name"])
        for bad in ({"id": [1], "name": [None]}, {"id": [1]}, {"id": [None], "name": ["x"]}):
            with pytest.raises(NotNullViolation) as info:
                t.insert(bad)
            assert info.value.sqlstate == "23502"
        assert 'column "name"' in _message(t, {"id": [1, 2], "name": ["x", None]})
        assert t.count() == 0
        t.insert({"id": [1], "name": ["ok"]})  # a nullable vector may stay NULL
        assert t.scan().to_pylist() == [{"id": 1, "name": "ok", "v": None}]


def _message(t, rows) -> str:
    with pytest.raises(SqlVecError) as info:
        t.insert(rows)
    return info.value.message


def test_primary_key_duplicates_give_23505(tmp_path):
    opts = options(seal_rows=4)
    with Database.open(str(tmp_path), options=opts) as db:
        t = db.create_table("t", {"id": "int8", "x": "text"}, primary_key=["id"])
        with pytest.raises(UniqueViolation) as info:
            t.insert({"id": [1, 2, 1], "x": ["a", "b", "c"]})  # within one batch
        assert info.value.sqlstate == "23505"
        assert info.value.detail == "Key (id)=(1) already exists."
        assert t.count() == 0
        t.insert({"id": [1, 2, 3, 4, 5], "x": list("abcde")})  # 1-4 sealed, 5 growing
        assert table_state(t)[0] == 1
        for key in (1, 5):
            with pytest.raises(UniqueViolation):
                t.insert({"id": [100, key], "x": ["new", "dup"]})
        assert t.count() == 5
        # A deleted key is free again; an update keeps its own key.
        t.delete(lambda r: pc.equal(r["id"], 2))
        t.insert({"id": [2], "x": ["again"]})
        assert t.update(lambda r: pc.equal(r["id"], 3), {"x": "upd"}) == 1
        assert sorted(t.scan().to_pylist(), key=lambda r: r["id"]) == [
            {"id": 1, "x": "a"}, {"id": 2, "x": "again"}, {"id": 3, "x": "upd"},
            {"id": 4, "x": "d"}, {"id": 5, "x": "e"}]
    # The key map is rebuilt on reopen from the segments and the WAL.
    with Database.open(str(tmp_path), options=opts) as db:
        t = db.table("t")
        for key in (1, 2, 3, 5):
            with pytest.raises(UniqueViolation):
                t.insert({"id": [key], "x": ["dup"]})
        t.insert({"id": [6], "x": ["f"]})
        assert t.count() == 6


def test_concurrent_commits_of_the_same_key_one_wins(tmp_path):
    with Database.open(str(tmp_path), options=options(background=True, seal_rows=64)) as db:
        t = db.create_table("t", {"id": "int8", "who": "int4"}, primary_key=["id"])
        keys = 60
        results: list[list] = [[], []]
        barrier = threading.Barrier(2)

        def writer(who: int) -> None:
            for key in range(keys):
                barrier.wait()
                try:
                    t.insert({"id": [key], "who": [who]})
                    results[who].append(key)
                except UniqueViolation:
                    pass

        threads = [threading.Thread(target=writer, args=(w,)) for w in (0, 1)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(results[0] + results[1]) == list(range(keys))
        got = t.scan().sort_by("id")
        assert got.column("id").to_pylist() == list(range(keys))
        winners = dict(zip(got.column("id").to_pylist(), got.column("who").to_pylist()))
        assert all(winners[k] == 0 for k in results[0]) and all(winners[k] == 1 for k in results[1])


# 6. Snapshots ---------------------------------------------------------------------------------


def test_snapshot_does_not_see_later_commits(tmp_path):
    with Database.open(str(tmp_path), options=options(seal_rows=5)) as db:
        t = db.create_table("t", {"id": "int8", "x": "int4"})
        t.insert({"id": [1, 2, 3], "x": [10, 20, 30]})
        before = t.snapshot()
        t.insert({"id": [4, 5, 6], "x": [40, 50, 60]})  # seals the first five
        t.delete(lambda r: pc.equal(r["id"], 1))
        t.update(lambda r: pc.equal(r["id"], 2), {"x": 99})
        t.truncate()
        t.insert({"id": [7], "x": [70]})
        assert before.row_count == 3
        assert before.to_table().sort_by("id").to_pylist() == [
            {"id": 1, "x": 10}, {"id": 2, "x": 20}, {"id": 3, "x": 30}]
        assert t.scan().to_pylist() == [{"id": 7, "x": 70}]


def test_snapshot_read_across_seal_and_compaction_is_consistent(tmp_path):
    opts = options(seal_rows=50, compaction=CompactionPolicy(min_merge=2))
    with Database.open(str(tmp_path), options=opts) as db:
        t = db.create_table("t", {"id": "int8", "x": "int4"})
        for start in range(0, 230, 23):
            t.insert({"id": np.arange(start, start + 23), "x": np.arange(23)})
        snap = t.snapshot()
        expected = snap.to_table().sort_by("id")
        parts = snap.scan()
        first = next(parts)
        # Seal, delete, merge and truncate while the reader is half way through.
        t.seal()
        t.delete(lambda r: pc.less(r["id"], 100))
        assert t.compact() >= 1
        got = pa.concat_tables([first, *parts]).sort_by("id")
        assert got.equals(expected)
        assert t.count() == 130


def test_readers_see_whole_commits_during_background_work(tmp_path):
    """A writer moves value between rows (the total stays 0) and inserts whole groups;
    readers take snapshots while sealing, index builds and compaction run in the background."""
    opts = StoreOptions(seal_rows=40, compaction=CompactionPolicy(min_merge=2, target_rows=400))
    with Database.open(str(tmp_path), options=opts) as db:
        t = db.create_table("t", {"id": "int8", "grp": "int8", "val": "int8", "v": "vector(2)"})
        t.create_index("v")
        stop = threading.Event()
        errors: list[BaseException] = []

        def write() -> None:
            rng = np.random.default_rng(1)
            try:
                for g in range(150):
                    t.insert({"id": g * 10 + np.arange(5), "grp": [g] * 5, "val": [0] * 5,
                              "v": rng.normal(size=(5, 2)).astype(np.float32)})
                    if g % 3 == 2:
                        # Move 7 from a row of group g to a row of group g-1 in one commit
                        # (delete + insert of both rows), then drop group g-2, never moved from.
                        pair = pa.array([g * 10, (g - 1) * 10 + 1], pa.int64())
                        t.update(lambda r, pair=pair: pc.is_in(r["id"], pair),
                                 {"val": lambda old, g=g: pc.add(old.column("val"), pc.if_else(
                                     pc.equal(old.column("id"), g * 10), -7, 7))})
                        t.delete(lambda r, g=g: pc.equal(r["grp"], g - 2))
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)
            finally:
                stop.set()

        def read() -> None:
            try:
                while not stop.is_set():
                    snap = t.snapshot()
                    rows = snap.to_table()
                    sizes = pc.value_counts(rows.column("grp")).field("counts").to_pylist()
                    assert all(s == 5 for s in sizes), sizes
                    assert len(set(rows.column("id").to_pylist())) == rows.num_rows
                    assert pc.sum(rows.column("val")).as_py() in (0, None)
                    hits = snap.search("v", Metric.L2, np.zeros(2, np.float32), 10)
                    assert hits.num_rows == min(10, rows.num_rows)
                    assert set(hits.column("id").to_pylist()) <= set(rows.column("id").to_pylist())
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=write), threading.Thread(target=read)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        db.wait_idle()
        final = t.scan()
        assert final.num_rows == (150 - 50) * 5
        assert sorted(pc.value_counts(final.column("grp")).field("counts").to_pylist()) == \
            [5] * 100
        assert len(t.store.table(t.table_id).sealed) >= 2
        assert all(s["state"] == "ready" for s in t.store.index_status())


# 7. Background work, DDL and housekeeping -----------------------------------------------------


def test_create_index_returns_once_everything_is_indexed(tmp_path):
    opts = StoreOptions(seal_rows=100)
    rng = np.random.default_rng(5)
    with Database.open(str(tmp_path), options=opts) as db:
        t = db.create_table("t", {"id": "int8", "v": "vector(8)"})
        t.insert({"id": np.arange(250), "v": rng.normal(size=(250, 8)).astype(np.float32)})
        t.insert({"id": np.arange(250, 290), "v": rng.normal(size=(40, 8)).astype(np.float32)})
        progress: list[tuple[int, int]] = []
        t.create_index("v", progress=lambda done, total: progress.append((done, total)))
        status = t.store.index_status()
        assert table_state(t)[1] == 0  # the growing segment was sealed first
        assert status and all(s["state"] == "ready" for s in status)
        assert sum(s["indexed"] for s in status) == 290
        assert progress[-1] == (290, 290)
        sealed_before = len(status)
        # Segments sealed later are indexed in the background.
        t.insert({"id": np.arange(290, 600), "v": rng.normal(size=(310, 8)).astype(np.float32)})
        db.wait_idle()
        status = t.store.index_status()
        assert len(status) > sealed_before
        assert all(s["state"] == "ready" and s["indexed"] == s["rows"] for s in status)
        assert sum(s["indexed"] for s in status) + table_state(t)[1] == t.count() == 600


def test_drop_index_removes_its_files(tmp_path):
    with Database.open(str(tmp_path), options=segment_per_load(40)) as db:
        t = db.create_table("t", {"id": "int8", "v": "vector(3)"})
        rng = np.random.default_rng(0)
        for start in (0, 40, 80):  # three sealed segments
            t.insert({"id": np.arange(start, start + 40), "v": rng.normal(size=(40, 3))})
        l2 = t.create_index("v", name="by_l2")
        t.create_index("v", opclass="vector_cosine_ops", name="by_cos")
        directory = t.store.table(t.table_id).directory

        def files(ix) -> list[str]:
            return [n for n in os.listdir(directory) if n.endswith(f".{ix.oid}.hnsw")]

        assert len(files(l2)) == 3
        cos = t.definition.indexes[1]
        t.drop_index("by_l2")
        assert files(l2) == [] and len(files(cos)) == 3
        assert [ix.name for ix in t.definition.indexes] == ["by_cos"]
        assert t.search("v", [1, 0, 0], 5).num_rows == 5
        with pytest.raises(SqlVecError) as info:
            t.drop_index("by_l2")
        assert info.value.sqlstate == "42704"
    with Database.open(str(tmp_path), options=options()) as db:
        assert [ix.name for ix in db.table("t").definition.indexes] == ["by_cos"]


def test_create_index_takes_any_access_method_and_its_options(tmp_path):
    with Database.open(str(tmp_path), options=options(seal_rows=40)) as db:
        t = db.create_table("t", {"id": "int8", "v": "vector(3)"})
        t.insert({"id": np.arange(40), "v": np.random.default_rng(1).normal(size=(40, 3))})
        ix = t.create_index("v", using="hnsw", opclass="vector_ip_ops", m=4, ef_construction=8)
        assert (ix.method, ix.opclass, ix.options) == ("hnsw", "vector_ip_ops",
                                                      {"m": 4, "ef_construction": 8})
        assert t.store.table(t.table_id).sealed[0].index(ix.name).params.m == 4
        for kwargs, sqlstate in (({"using": "diskann"}, "0A000"), ({"m": 1}, "22023"),
                                 ({"lists": 3}, "22023")):
            with pytest.raises(SqlVecError) as info:
                t.create_index("v", name="again", **kwargs)
            assert info.value.sqlstate == sqlstate
        assert [i.name for i in t.definition.indexes] == [ix.name]


def test_drop_table_removes_its_directory(tmp_path):
    with Database.open(str(tmp_path), options=options(seal_rows=10)) as db:
        t = db.create_table("t", {"id": "int8", "v": "vector(2)"})
        t.insert({"id": np.arange(25), "v": np.ones((25, 2), np.float32)})
        t.create_index("v")
        directory = t.store.table(t.table_id).directory
        assert os.listdir(directory)
        db.drop_table("t")
        assert not os.path.exists(directory)
        with pytest.raises(UndefinedTable):
            db.table("t")
    with Database.open(str(tmp_path), options=options()) as db:
        with pytest.raises(UndefinedTable):
            db.table("t")
        t = db.create_table("t", {"id": "int8"})
        assert t.count() == 0
        assert t.store.table(t.table_id).directory != directory


def test_truncate_empties_and_survives_reopen(tmp_path):
    opts = options(seal_rows=10)
    with Database.open(str(tmp_path), options=opts) as db:
        t = db.create_table("t", {"id": "int8"}, primary_key=["id"])
        t.insert({"id": np.arange(25)})
        t.truncate()
        assert t.count() == 0 and t.scan().num_rows == 0
        t.insert({"id": [3, 100]})  # old keys are free again
    with Database.open(str(tmp_path), options=opts) as db:
        t = db.table("t")
        assert sorted(t.scan().column("id").to_pylist()) == [3, 100]
        db.store().checkpoint()
        t.truncate()
    with Database.open(str(tmp_path), options=opts) as db:
        assert db.table("t").count() == 0


def test_manifests_keep_only_the_last_versions(tmp_path):
    with Database.open(str(tmp_path), options=options(seal_rows=5, manifest_keep=3)) as db:
        t = db.create_table("t", {"id": "int8"})
        for i in range(8):
            t.insert({"id": np.arange(i * 5, i * 5 + 5)})  # each seals: a new manifest
        mdir = os.path.join(str(tmp_path), "postgres", "manifest")
        names = sorted(os.listdir(mdir))
        versions = [int(n.split("-")[1].split(".")[0]) for n in names]
        assert len(names) == 3 and versions[-1] >= 9
        assert versions == list(range(versions[-1] - 2, versions[-1] + 1))
    with Database.open(str(tmp_path), options=options()) as db:
        assert db.table("t").count() == 40


def test_checkpoint_truncates_the_wal(tmp_path):
    opts = options(wal_segment_bytes=4096, seal_rows=10**6)
    wal = os.path.join(str(tmp_path), "postgres", "wal")
    with Database.open(str(tmp_path), options=opts) as db:
        t = db.create_table("t", {"id": "int8", "v": "vector(16)"})
        for i in range(60):
            t.insert({"id": [i], "v": np.full((1, 16), i, np.float32)})
        t.delete(lambda r: pc.equal(r["id"], 7))
        assert len(os.listdir(wal)) > 5
        db.store().checkpoint()
        assert len(os.listdir(wal)) == 1
        t.insert({"id": [60], "v": np.full((1, 16), 60, np.float32)})
    with Database.open(str(tmp_path), options=opts) as db:
        got = db.table("t").scan().sort_by("id")
        ids = [i for i in range(61) if i != 7]
        assert got.column("id").to_pylist() == ids
        vectors = np.stack(got.column("v").to_numpy(zero_copy_only=False))
        np.testing.assert_array_equal(vectors, np.repeat(np.array(ids, np.float32)[:, None], 16, 1))


@pytest.mark.parametrize("background", [False, True])
def test_automatic_checkpoints_bound_the_wal(tmp_path, background):
    opts = StoreOptions(background=background, wal_segment_bytes=4096,
                        checkpoint_wal_bytes=16384, seal_rows=10**6)
    wal = os.path.join(str(tmp_path), "postgres", "wal")
    with Database.open(str(tmp_path), options=opts) as db:
        t = db.create_table("t", {"id": "int8", "v": "vector(16)"})
        for i in range(200):
            t.insert({"id": [i], "v": np.full((1, 16), i, np.float32)})
        db.wait_idle(timeout=30)
        assert len(os.listdir(wal)) <= 8
        assert len(t.store.table(t.table_id).sealed) >= 1  # checkpoints sealed the rows
        t.truncate()
        db.wait_idle(timeout=30)  # the truncate's checkpoint, before rows it would seal arrive
        assert t.store.table(t.table_id).sealed == []  # the truncate dropped the segments
        t.insert({"id": [1000, 1001], "v": np.zeros((2, 16), np.float32)})
        db.wait_idle(timeout=30)
    with Database.open(str(tmp_path), options=opts) as db:
        assert sorted(db.table("t").scan(["id"]).column("id").to_pylist()) == [1000, 1001]


def test_second_open_of_a_data_directory_is_refused(tmp_path):
    with Database.open(str(tmp_path), options=options()):
        with pytest.raises(SqlVecError) as info:
            Database.open(str(tmp_path), options=options())
        assert info.value.sqlstate == "55006"
    Database.open(str(tmp_path), options=options()).close()


def test_a_store_has_one_writer_whatever_the_name_or_process(tmp_path):
    with Database.open(str(tmp_path), options=options()) as db:
        db.create_table("t", {"id": "int8"}).insert({"id": [1]})
        directory = os.path.join(str(tmp_path), "postgres")
        for alias in (directory, directory + "/", directory + "/.", str(tmp_path) + "/./postgres"):
            with pytest.raises(SqlVecError) as info:  # a second handle in this process
                Store.open(alias, options())
            assert info.value.sqlstate == "55006"
            assert "already open" in info.value.message
        second = subprocess.run(  # and from another process
            [sys.executable, "-c", "import sys; from sqlvec.storage.store import Store; "
             "Store.open(sys.argv[1])", directory],
            capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert "already open in this or another process" in second.stderr
        assert db.table("t").count() == 1
    store = Store.open(os.path.join(str(tmp_path), "postgres"), options())  # closed: free again
    try:
        assert store.find_table("t", "public") is not None
    finally:
        store.close()


def test_a_failed_recovery_releases_the_store(tmp_path):
    directory = tmp_path / "postgres"
    Store.open(str(directory), options()).close()
    manifest = sorted((directory / "manifest").iterdir())[-1]
    manifest.write_bytes(b"damaged")
    with pytest.raises(SqlVecError):
        Store.open(str(directory), options())
    manifest.unlink()
    Store.open(str(directory), options()).close()  # the failed open did not keep the lock


@pytest.mark.parametrize("name", [
    "", ".", "..", "../other", "a/b", "a\\b", "/etc", ".hidden", "a..b", "nul\0", "tab\there",
    "x" * 64, "é" * 32])
def test_database_names_that_could_be_paths_are_invalid(tmp_path, name):
    with pytest.raises(SqlVecError) as info:
        check_database_name(name)
    assert info.value.sqlstate == "42602"
    with Database.open(str(tmp_path), options=options()) as db:
        with pytest.raises(SqlVecError) as info:
            db.create_database(name)
        assert info.value.sqlstate == "42602"
        with pytest.raises(SqlVecError) as info:
            db.store(name)
        assert info.value.sqlstate == "3D000"
    assert sorted(os.listdir(tmp_path)) == ["LOCK", "postgres"]


def test_databases_are_found_only_through_the_catalog(tmp_path):
    (tmp_path / "data").mkdir()
    with Database.open(str(tmp_path / "other"), options=options()):
        pass
    with Database.open(str(tmp_path / "data"), options=options()) as db:
        for name in ("../other/postgres", "postgres/", "LOCK", "postgres/manifest"):
            with pytest.raises(SqlVecError) as info:
                db.store(name)
            assert (info.value.sqlstate, info.value.message) == (
                "3D000", f'database "{name}" does not exist')
        with pytest.raises(SqlVecError) as info:
            db.create_database("LOCK")  # a file of the data directory, not a database
        assert info.value.sqlstate == "42602"
        db.create_database("Ünïcode name-1")
        assert db.databases() == ["postgres", "Ünïcode name-1"]
        db.drop_database("Ünïcode name-1")
        with pytest.raises(SqlVecError) as info:
            db.drop_database("../other/postgres")
        assert info.value.sqlstate == "3D000"
    assert os.path.isdir(tmp_path / "other" / "postgres" / "manifest")
