"""A snapshot's unfiltered top-k search: planned once per snapshot and reused, never stale.

A repeated query against an unchanged table reuses the snapshot's plan (the segments, their
indexes, their delete masks); every commit, seal, compaction or index change must still show
in the next answer: a deleted row never comes back, a new row is never missed. The merge of the
segments' winners returns exactly the rows, order and distances an exact search gives."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sqlvec.database import Database, allow_fan_out
from sqlvec.storage.store import StoreOptions
from sqlvec.vectors import Metric, distances
from tests.sqlvec.conftest import SEGMENT_PER_LOAD

DIM = 8
SEAL = 200
K = 10


@pytest.fixture
def db(tmp_path):
    opts = StoreOptions(background=False, seal_rows=SEAL,
                        compaction=replace(SEGMENT_PER_LOAD, min_merge=2, target_rows=10_000))
    with Database.open(str(tmp_path), options=opts) as database:
        yield database


def vectors(ids) -> np.ndarray:
    x = np.asarray(ids, dtype=np.float64)[:, None]
    j = np.arange(DIM)[None, :]
    return np.sin(x * 12.9898 + j * 78.233 + x * j * 0.618).astype(np.float32)


def rows(ids) -> dict:
    ids = np.asarray(ids, dtype=np.int64)
    return {"id": ids, "v": vectors(ids), "name": [f"row {i}" for i in ids.tolist()],
            "score": (ids * 0.5).astype(np.float64)}


@pytest.fixture
def t(db):
    table = db.create_table("t", {"id": "int8", "v": f"vector({DIM})", "name": "text",
                                  "score": "float8"})
    table.insert(rows(range(0, 200)))
    table.insert(rows(range(200, 400)))
    table.create_index("v")
    table.insert(rows(range(400, 450)))  # two sealed, indexed segments and a growing one
    return table


def truth(t, query: np.ndarray, k: int = K, metric: Metric = Metric.L2) -> tuple[list, list]:
    """Exact ids and distances, nearest first (ties by row id), from every live row."""
    live = t.scan(["id", "v"])
    ids = np.asarray(live.column("id").to_pylist())
    matrix = np.stack(live.column("v").to_numpy(zero_copy_only=False)).astype(np.float32)
    d = distances(metric, matrix, query)
    order = np.lexsort((ids, d))[:k]
    return ids[order].tolist(), d[order].tolist()


def search(snap, query, k: int = K, plans=None, **kw) -> pa.Table:
    return snap.search("v", Metric.L2, query, k, columns=["id", "name", "score"], ef=400,
                       plans=plans, **kw)


def strategies(snap, query) -> list[str]:
    plans: list = []
    search(snap, query, plans=plans)
    return [p.strategy for p in plans]


def test_a_repeated_search_reuses_the_plan_with_fresh_records(t):
    snap = t.snapshot()
    assert len(snap.sealed) == 2 and snap.growing.data.n_rows == 50
    q = vectors([7])[0]
    first_plans: list = []
    first = search(snap, q, plans=first_plans)
    assert any(key[0] == "plan" for key in snap._memo)
    again_plans: list = []
    again = search(snap, q, plans=again_plans)
    assert again.equals(first)
    # The plan is reused, its records are the run's own: running again changes none of the
    # first run's figures.
    assert [p.strategy for p in again_plans] == [p.strategy for p in first_plans] == \
        ["hnsw", "hnsw", "exact"]
    assert all(a is not b for a, b in zip(again_plans, first_plans))
    assert [p.returned for p in first_plans] == [K, K, K]
    # Another k or knob is planned on its own.
    assert search(snap, q, k=3).column("id").to_pylist() == first.column("id").to_pylist()[:3]


def test_results_are_the_exact_rows_order_and_distances_across_segments(t):
    for i in (0, 5, 123, 260, 449, 1000):
        q = vectors([i])[0] + np.float32(0.01)
        snap = t.snapshot()
        for _ in range(2):  # planned, then from the snapshot's memo
            got = search(snap, q)
            ids, dists = truth(t, q)
            assert got.column("id").to_pylist() == ids
            assert got.column("distance").to_pylist() == dists  # to the last bit
            assert got.column("name").to_pylist() == [f"row {i}" for i in ids]
            assert got.column("score").to_pylist() == [i * 0.5 for i in ids]
            assert got.schema.field("id").type == pa.int64()
            assert got.schema.field("score").type == pa.float64()
            exact = search(snap, q, exact=True)
            assert exact.equals(got)


@pytest.fixture
def in_turn():
    """Segment searches one after the other in the calling thread (a worker whose cores are
    taken), their winners re-scored in one pass."""
    allow_fan_out(lambda: False)
    yield
    allow_fan_out(None)


def test_winners_rescored_together_are_the_exact_rows_and_distances(t, in_turn):
    snap = t.snapshot()
    for i in (0, 5, 123, 260, 449, 1000):
        q = vectors([i])[0] + np.float32(0.01)
        plans: list = []
        got = search(snap, q, plans=plans)
        ids, dists = truth(t, q)
        assert got.column("id").to_pylist() == ids
        assert got.column("distance").to_pylist() == dists  # to the last bit
        assert got.column("name").to_pylist() == [f"row {i}" for i in ids]
        assert [(p.strategy, p.returned) for p in plans] == [("hnsw", K), ("hnsw", K),
                                                             ("exact", K)]
        assert all(p.seconds > 0 for p in plans)
        allow_fan_out(None)  # the same search spread over threads
        assert search(snap, q).equals(got)
        allow_fan_out(lambda: False)


def test_an_insert_is_found_by_the_next_search(t):
    q = vectors([1_000])[0]
    before = t.snapshot()
    old = search(before, q).column("id").to_pylist()
    assert 1_000 not in old
    t.insert(rows([1_000]))
    assert search(t.snapshot(), q).column("id").to_pylist()[0] == 1_000
    # The snapshot taken before the insert keeps answering as it did.
    assert search(before, q).column("id").to_pylist() == old


@pytest.mark.parametrize("victim", [3, 250, 420])  # first sealed, second sealed, growing
def test_a_deleted_row_never_comes_back(t, victim):
    q = vectors([victim])[0]
    assert search(t.snapshot(), q).column("id").to_pylist()[0] == victim
    search(t.snapshot(), q)  # the plan cached
    t.delete(lambda r: pc.equal(r["id"], victim))
    for _ in range(2):
        got = search(t.snapshot(), q)
        assert victim not in got.column("id").to_pylist()
        assert got.num_rows == K
        assert got.column("id").to_pylist() == truth(t, q)[0]


def test_seal_and_compaction_show_in_the_next_search(t):
    q = vectors([420])[0]
    search(t.snapshot(), q)
    t.delete(lambda r: pc.less(r["id"], 100))
    t.insert(rows(range(450, 460)))
    t.seal()
    snap = t.snapshot()
    assert snap.growing.data.n_rows == 0
    got = search(snap, q)
    assert got.column("id").to_pylist() == truth(t, q)[0]
    assert t.compact() >= 1
    snap = t.snapshot()
    assert len(snap.sealed) == 1
    for _ in range(2):
        got = search(snap, q)
        assert got.column("id").to_pylist() == truth(t, q)[0]
        assert not set(got.column("id").to_pylist()) & set(range(100))


def test_create_and_drop_index_change_the_plan(db):
    t = db.create_table("u", {"id": "int8", "v": f"vector({DIM})", "name": "text",
                              "score": "float8"})
    t.insert(rows(range(0, 200)))
    t.insert(rows(range(200, 250)))
    q = vectors([42])[0]
    assert strategies(t.snapshot(), q) == ["exact", "exact"]
    index = t.create_index("v")  # (the growing segment sealed and indexed)
    assert strategies(t.snapshot(), q) == ["hnsw", "hnsw"]
    t.insert(rows(range(250, 260)))
    assert strategies(t.snapshot(), q) == ["hnsw", "hnsw", "exact"]
    assert search(t.snapshot(), q).column("id").to_pylist() == truth(t, q)[0]
    t.drop_index(index.name)
    assert strategies(t.snapshot(), q) == ["exact", "exact", "exact"]
    assert search(t.snapshot(), q).column("id").to_pylist() == truth(t, q)[0]


def test_an_index_attached_or_detached_under_a_snapshot_is_seen(t):
    """Background builds attach a segment's index without a new snapshot; a rebuild or DROP
    detaches it: the cached plan is checked against the segment's index each time."""
    snap = t.snapshot()
    segment = snap.sealed[0].data
    name = t.definition.indexes[0].name
    built = segment.index(name)
    assert built is not None
    q = vectors([5])[0]
    assert strategies(snap, q) == ["hnsw", "hnsw", "exact"]
    segment.detach_index(name)
    try:
        assert strategies(snap, q) == ["exact", "hnsw", "exact"]
        assert search(snap, q).column("id").to_pylist() == truth(t, q)[0]
    finally:
        segment.attach_index(name, built)
    assert strategies(snap, q) == ["hnsw", "hnsw", "exact"]


def test_columns_that_need_arrow_still_merge_in_order(db):
    """NULLs and text take Arrow's path, plain numbers NumPy's: both in the global order."""
    t = db.create_table("w", {"id": "int8", "v": f"vector({DIM})", "name": "text",
                              "score": "float8"})
    data = rows(range(0, 450))
    data["score"] = pa.array([None if i % 3 == 0 else i * 0.5 for i in range(450)],
                             pa.float64())
    for start, stop in ((0, 200), (200, 400), (400, 450)):
        if start == 400:
            t.create_index("v")
        t.insert({name: column[start:stop] for name, column in data.items()})
    for i in (10, 300, 440):
        q = vectors([i])[0]
        got = search(t.snapshot(), q)
        ids = truth(t, q)[0]
        assert got.column("id").to_pylist() == ids
        assert got.column("score").to_pylist() == [None if j % 3 == 0 else j * 0.5
                                                   for j in ids]
        assert got.column("name").to_pylist() == [f"row {j}" for j in ids]


def test_no_live_row_gives_an_empty_result_with_the_columns(t):
    t.delete(lambda r: pc.greater_equal(r["id"], 0))
    got = search(t.snapshot(), vectors([1])[0])
    assert got.num_rows == 0
    assert got.column_names == ["id", "name", "score", "distance"]
