from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sqlvec.database import Database
from sqlvec.errors import DataCorrupted
from sqlvec.storage.deletes import DeleteBitmap
from sqlvec.storage.schema import ROWID
from sqlvec.storage.search import plan_segment, run_segment
from sqlvec.storage.segment import Segment, SegmentView, cast_matrix, key_name, vector_matrix
from sqlvec.storage.store import StoreOptions
from sqlvec.vectors import Metric

N, DIM, CENTRES, QUERIES, K = 20_000, 128, 200, 100, 10
OPCLASSES = {Metric.L2: "vector_l2_ops", Metric.COSINE: "vector_cosine_ops",
             Metric.IP: "vector_ip_ops"}


# HNSW on a sealed segment against exact search ------------------------------------------------


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    """20k clustered 128-d rows in one sealed segment with an HNSW index per metric."""
    rng = np.random.default_rng(424242)
    centres = rng.normal(size=(CENTRES, DIM))
    rows = (centres[rng.integers(0, CENTRES, N)] + 0.35 * rng.normal(size=(N, DIM)))
    rows = rows.astype(np.float32)
    picks = rng.choice(N, QUERIES, replace=False)
    queries = (rows[picks] + 0.1 * rng.normal(size=(QUERIES, DIM))).astype(np.float32)
    db = Database.open(str(tmp_path_factory.mktemp("hnsw")),
                       options=StoreOptions(background=False, seal_rows=1 << 20))
    t = db.create_table("items", {"id": "int8", "v": f"vector({DIM})"})
    t.insert({"id": np.arange(N), "v": rows})
    t.seal()
    for opclass in OPCLASSES.values():
        t.create_index("v", opclass=opclass, m=16, ef_construction=64, name=f"items_{opclass}")
    yield t, rows, queries
    db.close()


def numpy_distances(metric: Metric, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """pgvector's distance, straight from its definition, in float64."""
    a, q = rows.astype(np.float64), query.astype(np.float64)
    if metric is Metric.L2:
        return np.sqrt(((a - q) ** 2).sum(axis=1))
    if metric is Metric.IP:
        return -(a @ q)
    return 1 - (a @ q) / (np.linalg.norm(a, axis=1) * np.linalg.norm(q))


def brute_force(metric: Metric, rows: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(numpy_distances(metric, rows, query), kind="stable")[:k]


def test_one_sealed_segment_fully_indexed(clustered):
    t, _, _ = clustered
    snap = t.snapshot()
    assert len(snap.sealed) == 1 and snap.growing.data.n_rows == 0
    status = t.store.index_status()
    assert {s["index"] for s in status} == {f"items_{o}" for o in OPCLASSES.values()}
    assert all(s["state"] == "ready" and s["indexed"] == N for s in status)


@pytest.mark.parametrize("metric", list(OPCLASSES))
def test_hnsw_recall_against_exact_and_numpy(clustered, metric):
    t, rows, queries = clustered
    view = t.snapshot().sealed[0]
    recall_exact, recall_numpy = [], []
    for q in queries:
        approx = t.search("v", q, K, metric=metric.value, ef=64)
        exact = t.search("v", q, K, metric=metric.value, exact=True)
        truth = brute_force(metric, rows, q, K)
        ids = approx.column("id").to_numpy()
        exact_ids = exact.column("id").to_numpy()
        assert len(ids) == K
        np.testing.assert_array_equal(exact_ids, truth)
        recall_exact.append(len(set(ids) & set(exact_ids)) / K)
        recall_numpy.append(len(set(ids) & set(truth)) / K)
        # Reported distances are the exact pgvector values of the returned rows, nearest first.
        d = approx.column("distance").to_numpy()
        np.testing.assert_allclose(d, numpy_distances(metric, rows[ids], q), rtol=1e-4, atol=1e-6)
        assert np.all(np.diff(d) >= 0)
        np.testing.assert_allclose(exact.column("distance").to_numpy(),
                                   numpy_distances(metric, rows[truth], q), rtol=1e-4, atol=1e-6)
    assert np.mean(recall_exact) >= 0.95
    assert np.mean(recall_numpy) >= 0.95
    # The answers came from the graph, not from a silent exact fallback.
    search = plan_segment(view, t.definition.column("v").physical, DIM, K, allowed=None,
                          index_name=f"items_{OPCLASSES[metric]}", ef=64)
    positions, _ = run_segment(search, metric, queries[0])
    assert search.plan.strategy == "hnsw" and not search.plan.fallback
    assert positions.size == K


@pytest.mark.parametrize("metric", list(OPCLASSES))
def test_order_only_search_gives_the_rescored_order(clustered, metric):
    # A caller that reads no distance may take the index's order when its own L2 distances
    # settle it: the same rows in the same order as re-scoring, without distances.
    t, rows, queries = clustered
    view = t.snapshot().sealed[0]
    search = plan_segment(view, t.definition.column("v").physical, DIM, K, allowed=None,
                          index_name=f"items_{OPCLASSES[metric]}", ef=40)
    settled = 0
    # The queries, and stored rows themselves (a distance of zero first).
    for q in list(queries) + list(rows[:20]):
        positions, dists = run_segment(search, metric, q)
        fast, none = run_segment(search, metric, q, order_only=True)
        np.testing.assert_array_equal(fast, positions)
        assert fast.dtype == np.int64
        if none is None:
            settled += 1
            assert np.all(np.diff(dists) > 0)  # settled only without ties
        else:
            np.testing.assert_array_equal(none, dists)
    if metric is Metric.L2:  # (a stored row's own distance, zero, is always re-scored)
        assert settled >= 0.8 * len(queries)
    else:
        assert settled == 0  # other metrics' index distances are not trusted for it


def resident_kb(path: str) -> int:
    """Resident kB of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                inside = len(fields) >= 6 and fields[5] == os.path.realpath(path)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1])
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux /proc")
@pytest.mark.parametrize("metric", list(OPCLASSES))
def test_winners_are_rescored_from_the_graphs_copy_of_the_rows(clustered, metric):
    """l2 and ip graphs hold the segment's float32 rows unchanged: an unfiltered search
    rescores its winners from them and maps no page of the vectors file. A cosine graph holds
    them normalised, so its winners are read from the file. The distances are exact either
    way."""
    t, rows, queries = clustered
    seg = t.snapshot().sealed[0].data
    vectors_path = os.path.join(os.path.dirname(seg.path), seg.mapped_files["vectors"]["file"])
    search = plan_segment(t.snapshot().sealed[0], t.definition.column("v").physical, DIM, K,
                          allowed=None, index_name=f"items_{OPCLASSES[metric]}", ef=64)
    seg.release_mapped_pages()
    assert resident_kb(vectors_path) == 0
    for q in queries[:5]:
        positions, dists = run_segment(search, metric, q)
        assert search.plan.strategy == "hnsw" and dists is not None
        np.testing.assert_allclose(dists, numpy_distances(metric, rows[positions], q),
                                   rtol=1e-4, atol=1e-6)
    assert (resident_kb(vectors_path) > 0) == (metric is Metric.COSINE)
    stored = search.index.stored_rows(positions)
    if metric is Metric.COSINE:
        assert stored is None
    else:
        np.testing.assert_array_equal(stored, rows[positions])


def test_near_ties_are_rescored(clustered):
    from sqlvec.storage.search import _order_settled

    t, rows, queries = clustered
    view = t.snapshot().sealed[0]
    search = plan_segment(view, t.definition.column("v").physical, DIM, K, allowed=None,
                          index_name="items_vector_l2_ops", ef=40)
    q = queries[0]
    spread = np.array([1.0, 1.1, 1.2, 1.3])
    assert _order_settled(Metric.L2, search, q, spread)
    # Closer than the float32 sums' error bound allows, equal, out of order, not finite, tiny.
    for bad in ([1.0, 1.0 + 1e-6, 1.2], [1.0, 1.0, 1.2], [1.1, 1.0], [1.0, np.inf, np.inf],
                [np.nan, 1.0], [0.0, 1.0], [1e-30, 1.0]):
        assert not _order_settled(Metric.L2, search, q, np.array(bad))
    assert not _order_settled(Metric.L2, search, q.astype(np.float64), spread)


@pytest.mark.parametrize("stride, strategy", [(50, "exact"), (2, "hnsw-postfilter")])
def test_filtered_search_respects_filters_and_deletes(clustered, stride, strategy):
    t, rows, queries = clustered
    view = t.snapshot().sealed[0]
    physical = t.definition.column("v").physical
    allowed = np.zeros(N, bool)
    allowed[::stride] = True
    deleted = DeleteBitmap.empty(N).with_deleted(np.arange(0, N, 100))
    live = SegmentView(view.data, deleted)
    for q in queries[:20]:
        search = plan_segment(live, physical, DIM, K, allowed=allowed,
                              index_name="items_vector_l2_ops", ef=64)
        assert search.plan.strategy == strategy
        positions, _ = run_segment(search, Metric.L2, q)
        assert positions.size == K
        assert allowed[positions].all()
        assert not deleted.is_deleted(positions).any()
        candidates = np.flatnonzero(allowed & deleted.live_mask())
        truth = candidates[brute_force(Metric.L2, rows[candidates], q, K)]
        assert len(set(positions.tolist()) & set(truth.tolist())) >= K - 2


# Segment files --------------------------------------------------------------------------------


def physical_table(n: int, start: int = 0) -> pa.Table:
    rng = np.random.default_rng(start)
    vec = rng.normal(size=(n, 3)).astype(np.float32)
    return pa.table({
        ROWID: pa.array(np.arange(start, start + n, dtype=np.int64)),
        "c1": pa.array([None if i % 5 == 0 else f"s{i}" for i in range(n)], pa.string()),
        "c2": pa.array(np.arange(n, dtype=np.int32) * 3 - 7),
        "c3": pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), 3,
                                                mask=pa.array(np.arange(n) % 7 == 3)),
    })


def mapped_from(path: str) -> list[tuple[int, int]]:
    """The address ranges of this process's mappings of `path` (/proc/self/maps)."""
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == os.path.realpath(path):
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((lo, hi))
    return ranges


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_segment_vectors_are_the_files_pages_not_a_copy(tmp_path):
    """After writing, and after opening, a segment's vectors are read from its memory-mapped
    vectors file: no anonymous copy beside the one an HNSW graph holds, and pages that forked
    workers share."""
    n, dim = 20_000, 64
    vec = np.random.default_rng(3).standard_normal((n, dim)).astype(np.float32)
    data = pa.table({ROWID: pa.array(np.arange(n, dtype=np.int64)),
                     "c1": pa.array(np.arange(n, dtype=np.int32)),
                     "c2": pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), dim)})
    seg = Segment(1, data, None)
    seg.vectors("c2", dim)  # a cached view of the in-memory column must not outlive the write
    seg.write(str(tmp_path))
    path = str(tmp_path / seg.to_meta()["vectors"]["file"])
    before = pa.total_allocated_bytes()
    back = Segment.open(str(tmp_path), seg.to_meta())
    assert pa.total_allocated_bytes() - before < vec.nbytes // 10
    assert back.table.column_names == data.column_names and back.table.equals(data)
    for opened in (seg, back):
        matrix, valid = opened.vectors("c2", dim)
        assert valid is None
        np.testing.assert_array_equal(matrix, vec)
        address = matrix.__array_interface__["data"][0]
        assert any(lo <= address < hi for lo, hi in mapped_from(path))
        # Dropping the pages from the process (after an index build read them all) loses
        # nothing: they are mapped back from the file on the next read.
        opened.release_mapped_pages()
        np.testing.assert_array_equal(opened.vectors("c2", dim)[0], vec)


def test_segment_write_and_open_round_trip(tmp_path):
    data = physical_table(500, start=1000)
    seg = Segment(4, data, None)
    seg.write(str(tmp_path))
    assert seg.path == str(tmp_path / Segment.file_name(4))
    meta = seg.to_meta()
    assert (meta["rows"], meta["rowid_min"], meta["rowid_max"]) == (500, 1000, 1499)
    assert meta["bytes"] == os.path.getsize(seg.path)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    back = Segment.open(str(tmp_path), meta)
    assert back.table.equals(data)
    # An open format: plain pyarrow reads it with no help from us; the vector column is also in
    # the Arrow IPC file beside it (what the server maps).
    assert pq.read_table(seg.path).equals(data)
    assert meta["vectors"]["file"] == Segment.mapped_file_name(4, "vectors")
    vectors = pa.ipc.open_file(str(tmp_path / meta["vectors"]["file"])).read_all()
    assert vectors.column_names == ["c3"] and vectors.column("c3").equals(data.column("c3"))
    assert seg.table.equals(data)
    assert back.stats("c2") == (-7, 499 * 3 - 7)
    assert back.stats("c1") == (min(v for v in data.column("c1").to_pylist() if v),
                                max(v for v in data.column("c1").to_pylist() if v))
    assert back.stats("c3") is None
    matrix, valid = back.vectors("c3", 3)
    assert matrix.shape == (500, 3) and matrix.dtype == np.float32
    np.testing.assert_array_equal(valid, np.arange(500) % 7 != 3)
    np.testing.assert_array_equal(matrix[valid], vector_matrix(data.column("c3"), 3)[0][valid])


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_scalar_columns_and_row_ids_are_the_columns_files_pages(tmp_path):
    """Every column that is not a vector is memory-mapped from `seg-<id>.columns.arrow`, after
    writing and after opening: the Parquet file is not read (no copy of them is allocated)."""
    data = physical_table(50_000)
    seg = Segment(2, data, None)
    assert seg.value("c1", pa.string(), None, 1) == "s1"  # a cached chunk of the old copy
    seg.write(str(tmp_path))
    meta = seg.to_meta()
    path = str(tmp_path / meta["columns"]["file"])
    assert meta["columns"]["file"] == Segment.mapped_file_name(2, "columns")
    assert pa.ipc.open_file(path).read_all().column_names == [ROWID, "c1", "c2"]
    before = pa.total_allocated_bytes()
    back = Segment.open(str(tmp_path), meta)
    assert pa.total_allocated_bytes() - before < 4096
    assert back.table.column_names == data.column_names and back.table.equals(data)
    regions = mapped_from(path)
    for opened in (seg, back):
        addresses = [opened.rowids.__array_interface__["data"][0]] + [
            opened.table.column(name).chunk(0).buffers()[-1].address for name in ("c1", "c2")]
        assert all(any(lo <= a < hi for lo, hi in regions) for a in addresses)
        assert opened.value("c1", pa.string(), None, 1) == "s1"
        assert opened.stats("c2") == (-7, 49_999 * 3 - 7)
        np.testing.assert_array_equal(opened.rowids, np.arange(50_000))


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux /proc")
def test_opening_a_database_leaves_no_mapped_page_resident(tmp_path):
    """Building the primary key's index at open reads every key and row id from the mapped
    columns file: those pages are dropped from the process once open (they stay in the page
    cache), and reads map back what they need."""
    opts = StoreOptions(background=False)
    with Database.open(str(tmp_path), options=opts) as db:
        t = db.create_table("t", {"id": "int8", "v": "vector(4)"}, primary_key=["id"])
        t.insert({"id": np.arange(200_000), "v": np.ones((200_000, 4), np.float32)})
        t.seal()
    with Database.open(str(tmp_path), options=opts) as db:
        seg = db.table("t").snapshot().sealed[0].data
        directory = os.path.dirname(seg.path)
        paths = [os.path.join(directory, f["file"]) for f in seg.mapped_files.values()]
        assert len(paths) == 2
        for path in paths:  # (what remains: the pages of the files' Arrow metadata)
            assert resident_kb(path) * 1024 < os.path.getsize(path) / 8
        assert db.table("t").count() == 200_000
        np.testing.assert_array_equal(seg.column(ROWID, pa.int64()).to_numpy()[-3:],
                                      seg.rowids[-3:])


def test_segment_written_before_the_columns_file_reads_them_from_parquet(tmp_path):
    """A directory written by an earlier version (no columns file, or no mapped file at all)
    still opens: what no mapped file holds comes from the Parquet file."""
    data = physical_table(300, start=10)
    seg = Segment(3, data, None)
    seg.write(str(tmp_path))
    meta = seg.to_meta()
    os.remove(tmp_path / meta.pop("columns")["file"])
    assert Segment.open(str(tmp_path), meta).table.equals(data)
    os.remove(tmp_path / meta.pop("vectors")["file"])
    back = Segment.open(str(tmp_path), meta)
    assert back.table.equals(data) and back.to_meta().keys() == meta.keys()
    np.testing.assert_array_equal(back.rowids, np.arange(10, 310))


def test_damaged_columns_file_is_named_on_open(tmp_path):
    seg = Segment(1, physical_table(300), None)
    seg.write(str(tmp_path))
    meta = seg.to_meta()
    path = tmp_path / meta["columns"]["file"]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(DataCorrupted, match="columns file") as info:
        Segment.open(str(tmp_path), meta)
    assert str(path) in info.value.message


def test_segment_open_detects_damage(tmp_path):
    seg = Segment(1, physical_table(300), None)
    seg.write(str(tmp_path))
    meta = seg.to_meta()
    raw = bytearray(open(seg.path, "rb").read())
    raw[len(raw) // 2] ^= 0x01
    open(seg.path, "wb").write(bytes(raw))
    with pytest.raises(DataCorrupted) as info:
        Segment.open(str(tmp_path), meta)
    assert info.value.sqlstate == "XX001"
    assert seg.path in info.value.message
    os.remove(seg.path)
    with pytest.raises(DataCorrupted) as info:
        Segment.open(str(tmp_path), meta)
    assert seg.path in info.value.message


def test_positions_of():
    seg = Segment(1, physical_table(10, start=20).filter(pa.array([i % 2 == 0 for i in range(10)])),
                  None)
    found, pos = seg.positions_of(np.array([20, 21, 22, 28, 29, 5, 100]))
    assert found.tolist() == [True, False, True, True, False, False, False]
    assert pos[found].tolist() == [0, 1, 4]


def test_missing_column_reads_as_missing_value():
    seg = Segment(1, physical_table(4), None)
    assert seg.column("c9", pa.int32()).to_pylist() == [None] * 4
    assert seg.column("c9", pa.int32(), 7).to_pylist() == [7] * 4
    matrix, valid = seg.vectors("c9", 2)
    assert matrix.shape == (4, 2) and not valid.any()


def test_an_expression_index_key_is_the_column_cast_and_cached():
    """`c3::halfvec`: what an index on `col::halfvec(n)` is built over, computed once per
    segment (float16, rounded as pgvector's cast rounds)."""
    data = physical_table(50)
    seg = Segment(1, data, None)
    assert key_name("c3", None) == "c3" and key_name("c3", "halfvec") == "c3::halfvec"
    half, valid = seg.vectors(key_name("c3", "halfvec"), 3)
    base, base_valid = seg.vectors("c3", 3)
    assert half.dtype == np.float16 and half.shape == (50, 3)
    np.testing.assert_array_equal(half, base.astype(np.float16))
    np.testing.assert_array_equal(valid, base_valid)
    assert seg.vectors("c3::halfvec", 3)[0] is half
    assert cast_matrix(half, "vector").dtype == np.float32
    assert cast_matrix(base, "vector") is base
