from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sqlvec.database import Database
from sqlvec.errors import UniqueViolation
from sqlvec.storage.compaction import CompactionPolicy, pick_segments, pick_unindexed
from sqlvec.storage.deletes import DeleteBitmap
from sqlvec.storage.schema import ROWID, ColumnDef, IndexDef, TableDef
from sqlvec.storage.segment import Segment
from sqlvec.storage.store import StoreOptions
from sqlvec.storage.table import Table
from sqlvec.types import SqlType

DIM = 4

# pick_segments: the policy --------------------------------------------------------------------


def policy_table(sizes: list[int], deleted: dict[int, int] | None = None) -> Table:
    """A table whose sealed segments have the given row counts (and deleted rows per index)."""
    table_def = TableDef(1, 16400, "t", "public", (ColumnDef("id", SqlType.parse("int8"), 1),))
    table = Table(table_def, "unused")
    start = 0
    for i, n in enumerate(sizes):
        rows = pa.table({ROWID: pa.array(np.arange(start, start + n, dtype=np.int64)),
                         "c1": pa.array(np.arange(start, start + n, dtype=np.int64))})
        seg = Segment(i + 1, rows, f"seg-{i + 1}.parquet")  # as if written
        table.sealed.append(seg)
        bitmap = DeleteBitmap.empty(n)
        if deleted and i in deleted:
            bitmap = bitmap.with_deleted(np.arange(deleted[i]))
        table.deletes[seg.id] = bitmap
        start += n
    return table


def groups(table: Table, policy: CompactionPolicy) -> list[list[int]]:
    return [[s.id for s in g] for g in pick_segments(table, policy)]


POLICY = CompactionPolicy(target_rows=100, small_fraction=0.5, min_merge=3, deleted_ratio=0.2)


@pytest.mark.parametrize(
    ("sizes", "deleted", "expected"),
    [
        ([10, 10], None, []),  # too few small segments
        ([10, 10, 10], None, [[1, 2, 3]]),
        ([10, 10, 90, 10, 10, 10], None, [[4, 5, 6]]),  # a big one breaks the run
        ([40, 40, 40, 40, 40], None, []),  # three would pass target_rows
        ([90, 90], {1: 30}, [[2]]),  # a third deleted: rewrite alone
        ([90, 90], {1: 10}, []),  # a ninth: not worth it
        ([10, 10, 10, 10], {2: 5}, [[1, 2, 3, 4]]),  # deletes inside a merged run
        ([100, 100], {0: 100}, [[1]]),  # everything deleted
    ],
)
def test_pick_segments(sizes, deleted, expected):
    assert groups(policy_table(sizes, deleted), POLICY) == expected


def test_pick_segments_respects_target_rows():
    table = policy_table([45] * 7)
    picked = groups(table, POLICY)
    # Runs never exceed 100 live rows, so never more than two 45-row segments: no group of 3.
    assert picked == []
    table = policy_table([30] * 7)
    picked = groups(table, POLICY)
    assert picked == [[1, 2, 3], [4, 5, 6]]
    assert all(sum(30 for _ in g) <= POLICY.target_rows for g in picked)


def test_pick_segments_skips_segments_not_yet_durable():
    table = policy_table([10, 10, 10, 10])
    table.sealed[3].path = None  # frozen, file not written yet
    assert groups(table, POLICY) == [[1, 2, 3]]
    table.sealing.append(table.sealed[0])  # written, but its seal not yet in a manifest
    assert groups(table, POLICY) == []


# run / replace_segments: the work -------------------------------------------------------------


def vectors(ids) -> np.ndarray:
    x = np.asarray(ids, dtype=np.float64)[:, None]
    return np.cos(x * 0.37 + np.arange(DIM) * 1.1).astype(np.float32)


@pytest.fixture
def db(tmp_path):
    opts = StoreOptions(background=False, seal_rows=50,
                        compaction=CompactionPolicy(target_rows=1000, min_merge=3))
    with Database.open(str(tmp_path), options=opts) as database:
        yield database


def fill(t, segments: int, per: int = 50) -> None:
    for s in range(segments):
        ids = np.arange(s * per, (s + 1) * per)
        t.insert({"id": ids, "v": vectors(ids)})


def test_compaction_merges_keeps_order_and_indexes(db, tmp_path):
    t = db.create_table("t", {"id": "int8", "v": f"vector({DIM})"}, primary_key=["id"])
    fill(t, 4)
    t.create_index("v")
    t.delete(lambda r: pc.less(pc.bit_wise_and(r["id"], 7), 2))
    live = [i for i in range(200) if i % 8 >= 2]
    table = t.store.table(t.table_id)
    assert t.compact() == 1
    assert len(table.sealed) == 1
    seg = table.sealed[0]
    assert seg.n_rows == len(live) and table.deletes[seg.id].count == 0
    assert np.all(np.diff(seg.rowids) > 0)
    assert t.scan(["id"]).column("id").to_pylist() == live
    status = t.store.index_status()
    assert [(s["segment"], s["state"], s["indexed"]) for s in status] == [(seg.id, "ready", len(live))]
    np.testing.assert_array_equal(
        np.stack(t.scan(["v"]).column("v").to_numpy(zero_copy_only=False)), vectors(live))
    assert t.search("v", vectors([77])[0], 1).column("id").to_pylist() == [77]
    # Keys of dropped rows are free, those of kept rows are not.
    t.insert({"id": [0], "v": vectors([0])})
    with pytest.raises(UniqueViolation):
        t.insert({"id": [2], "v": vectors([2])})
    db.close()
    with Database.open(str(tmp_path), options=StoreOptions(background=False)) as again:
        assert sorted(again.table("t").scan(["id"]).column("id").to_pylist()) == [0, *live]


def test_deletes_made_during_a_merge_are_carried_over(db):
    t = db.create_table("t", {"id": "int8", "v": f"vector({DIM})"})
    fill(t, 3)
    table = t.store.table(t.table_id)
    group = list(table.sealed)
    started = {s.id: table.deletes[s.id] for s in group}
    # The merge reads the rows as they were when it started...
    merged = pa.concat_tables([s.table for s in group]).combine_chunks()
    new = Segment(table.next_segment_id, merged, None)
    table.next_segment_id += 1
    t.store.write_segment(table, new)
    # ...while deletes land on the old segments.
    t.delete(lambda r: pc.is_in(r["id"], pa.array([3, 60, 149], pa.int64())))
    assert t.store.replace_segments(table, group, new, started)
    t.store.release_segment_files(new)
    assert [s.id for s in table.sealed] == [new.id]
    assert table.deletes[new.id].count == 3
    assert 60 not in t.scan(["id"]).column("id").to_pylist()
    assert t.count() == 147
    # A second swap of the same, now gone, segments is refused.
    assert not t.store.replace_segments(table, group, None, started)


def test_merge_of_fully_deleted_segments_leaves_none(db):
    t = db.create_table("t", {"id": "int8", "v": f"vector({DIM})"})
    fill(t, 3)
    t.delete(lambda r: pc.greater_equal(r["id"], 0))
    assert t.compact() >= 1
    assert t.store.table(t.table_id).sealed == []
    assert t.count() == 0


def test_background_compaction_after_seals(tmp_path):
    opts = StoreOptions(seal_rows=40, compaction=CompactionPolicy(target_rows=10_000, min_merge=3))
    with Database.open(str(tmp_path), options=opts) as db:
        t = db.create_table("t", {"id": "int8", "v": f"vector({DIM})"})
        t.create_index("v")
        for s in range(12):
            ids = np.arange(s * 40, (s + 1) * 40)
            t.insert({"id": ids, "v": vectors(ids)})
            db.wait_idle()
        table = t.store.table(t.table_id)
        assert len(table.sealed) < 12
        assert sorted(t.scan(["id"]).column("id").to_pylist()) == list(range(480))
        assert all(s["state"] == "ready" for s in t.store.index_status())


# Segments no vector index covers yet: merged before CREATE INDEX builds one graph -----------


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([10], []),  # one segment: nothing to merge it with
        ([10, 10], [[1, 2]]),  # two are enough when no graph is rebuilt
        ([60, 60, 30], [[2, 3]]),  # a run never passes target_rows
        ([100, 100], []),  # each already at target_rows
    ],
)
def test_pick_unindexed(sizes, expected):
    table = policy_table(sizes)
    assert [[s.id for s in g] for g in pick_unindexed(table, POLICY)] == expected
    # A table without a vector index keeps its segments until a CREATE INDEX merges them:
    # the background policy does not rewrite a growing run at every seal.
    assert groups(table, POLICY) == []


def test_pick_segments_merges_unindexed_runs_of_an_indexed_table():
    table = policy_table([10, 10, 10, 10])
    table.def_ = table.def_.with_changes(
        indexes=(IndexDef("t_c1", 16500, ("id",), method="hnsw"),))
    table.sealed[1].attach_index("t_c1", object())  # segment 2's graph is built
    # 1 stands alone next to an indexed one; 3 and 4 have no graph yet: merged at two.
    assert groups(table, POLICY) == [[3, 4]]


def loaded(db, loads: int = 4) -> tuple:
    t = db.create_table("t", {"id": "int8", "v": f"vector({DIM})"}, primary_key=["id"])
    fill(t, loads)  # each load seals a segment (seal_rows 50)
    table = t.store.table(t.table_id)
    assert len(table.sealed) == loads
    return t, table


def test_create_index_builds_one_graph_over_the_loads(db, tmp_path):
    t, table = loaded(db)
    t.delete(lambda r: pc.equal(pc.bit_wise_and(r["id"], 15), 3))
    live = [i for i in range(200) if i % 16 != 3]
    t.create_index("v")
    assert len(table.sealed) == 1
    seg = table.sealed[0]
    assert seg.n_rows == len(live) and table.deletes[seg.id].count == 0
    assert [(s["segment"], s["state"]) for s in t.store.index_status()] == [(seg.id, "ready")]
    assert t.scan(["id"]).column("id").to_pylist() == live
    np.testing.assert_array_equal(
        np.stack(t.scan(["v"]).column("v").to_numpy(zero_copy_only=False)), vectors(live))
    assert t.search("v", vectors([77])[0], 1).column("id").to_pylist() == [77]
    with pytest.raises(UniqueViolation):
        t.insert({"id": [5], "v": vectors([5])})
    db.close()
    with Database.open(str(tmp_path), options=StoreOptions(background=False)) as again:
        t2 = again.table("t")
        table2 = t2.store.table(t2.table_id)
        assert [s.id for s in table2.sealed] == [seg.id]
        assert [s["state"] for s in t2.store.index_status()] == ["ready"]
        assert t2.scan(["id"]).column("id").to_pylist() == live
        assert t2.search("v", vectors([150])[0], 1).column("id").to_pylist() == [150]


def test_delete_during_the_merge_is_carried_over(db, monkeypatch):
    t, table = loaded(db, 3)
    store = t.store
    real_write = store.write_segment
    landed = []

    def write_then_delete(tbl, seg):
        real_write(tbl, seg)
        if not landed:  # the merged file is written; a delete lands on the old segments
            landed.append(t.delete(lambda r: pc.is_in(r["id"], pa.array([7, 99], pa.int64()))))
    monkeypatch.setattr(store, "write_segment", write_then_delete)
    t.create_index("v")
    assert landed == [2]
    assert len(table.sealed) == 1 and table.deletes[table.sealed[0].id].count == 2
    ids = t.scan(["id"]).column("id").to_pylist()
    assert ids == [i for i in range(150) if i not in (7, 99)]
    assert 99 not in t.search("v", vectors([99])[0], 3).column("id").to_pylist()


def test_second_index_leaves_indexed_segments_alone(db):
    t = db.create_table("t", {"id": "int8", "v": f"vector({DIM})", "w": f"vector({DIM})"})
    for s in range(3):
        ids = np.arange(s * 50, (s + 1) * 50)
        t.insert({"id": ids, "v": vectors(ids), "w": vectors(ids + 1)})
    t.create_index("v")
    table = t.store.table(t.table_id)
    fill_ids = np.arange(150, 200)
    t.insert({"id": fill_ids, "v": vectors(fill_ids), "w": vectors(fill_ids + 1)})
    t.create_index("w")  # the new load is indexed as it is: no graph of v is rebuilt
    assert [s.n_rows for s in table.sealed] == [150, 50]
    assert all(s["state"] == "ready" for s in t.store.index_status())


LOAD_THEN_INDEX = """
import sys, numpy as np
from sqlvec.database import Database
from sqlvec.storage.store import StoreOptions
with Database.open(sys.argv[1], options=StoreOptions(background=False, seal_rows=10_000)) as db:
    t = db.create_table("t", {"id": "int8", "v": "vector(16)"}, primary_key=["id"])
    for s in range(6):
        ids = np.arange(s * 10_000, (s + 1) * 10_000)
        t.insert({"id": ids, "v": np.cos(ids[:, None] * 0.37 + np.arange(16)).astype(np.float32)})
    print("loaded", flush=True)
    t.create_index("v", m=8, ef_construction=16)
    print("indexed", flush=True)
"""


@pytest.mark.parametrize("delay", [0.0, 0.03, 0.1, 0.4])
def test_sigkill_during_the_merge_before_an_index_keeps_every_row_once(tmp_path, delay):
    """Killed at some point of CREATE INDEX's merge or build: the reopened table holds every
    loaded row exactly once, and the index can be built."""
    proc = subprocess.Popen([sys.executable, "-c", LOAD_THEN_INDEX, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "loaded\n"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Database.open(str(tmp_path), options=StoreOptions(background=False)) as again:
        t = again.table("t")
        ids = t.scan(["id"]).column("id").to_numpy()
        np.testing.assert_array_equal(np.sort(ids), np.arange(60_000))
        if not t.definition.indexes:
            t.create_index("v", m=8, ef_construction=16)
        assert all(s["state"] == "ready" for s in t.store.index_status())
        # The rows lie on one circle, densely: row 777's nearest others are 1e-4 away, so an
        # approximate top-1 may be any of the closest few, never a row far from the query.
        every = np.cos(np.arange(60_000)[:, None] * 0.37 + np.arange(16)).astype(np.float32)
        closest = np.argsort(np.linalg.norm(every - every[777], axis=1))[:5]
        assert closest[0] == 777
        found = t.search("v", every[777], 1).column("id").to_pylist()
        assert len(found) == 1 and found[0] in closest
