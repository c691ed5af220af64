from __future__ import annotations

import sys
import threading
import time
import zlib

import numpy as np
import pytest

from sqlvec.errors import DataCorrupted, DataException, FeatureNotSupported, InvalidParameterValue
from sqlvec.storage.hnsw import (
    BUILD_CHUNK_ROWS,
    HnswIndex,
    HnswParams,
    IndexBuildCancelled,
    _graph_words,
    _nearest,
    held_out_count,
    pgvector_distances,
)
from sqlvec.storage.vector_index import VectorIndex
from sqlvec.vectors import Metric, distances, top_k, top_k_batch
from tests.sqlvec.conftest import huge_bytes_in, needs_huge_pages

N, DIM, CLUSTERS, QUERIES = 20_000, 128, 200, 100
INDEXED = [Metric.L2, Metric.COSINE, Metric.IP]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters plus noise; queries are data points plus a little more noise."""
    rng = np.random.default_rng(20240611)
    centres = rng.normal(size=(CLUSTERS, DIM))
    rows = centres[rng.integers(0, CLUSTERS, N)] + 0.35 * rng.normal(size=(N, DIM))
    picks = rng.choice(N, QUERIES, replace=False)
    queries = rows[picks] + 0.1 * rng.normal(size=(QUERIES, DIM))
    return rows.astype(np.float32), queries.astype(np.float32)


@pytest.fixture(scope="module")
def indexes(data) -> dict[Metric, HnswIndex]:
    rows, _ = data
    return {metric: HnswIndex.build(rows, HnswParams(metric)) for metric in INDEXED}


def small(n: int = 2_000, dim: int = 16, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def assert_distances_exact(metric: Metric, rows, query, positions, dists) -> None:
    expected = distances(metric, rows[positions], query)
    np.testing.assert_allclose(dists, expected, rtol=1e-4, atol=1e-5)


# Recall and distances -----------------------------------------------------------------------


@pytest.mark.parametrize("metric", INDEXED, ids=lambda m: m.name)
def test_recall_at_10_and_exact_distances(data, indexes, metric):
    rows, queries = data
    index = indexes[metric]
    assert index.indexed_count == N
    hits = 0
    for query in queries:
        found = index.search(query, 10, ef=64)
        assert found is not None
        positions, dists = found
        assert positions.dtype == np.int64 and dists.dtype == np.float64
        assert len(positions) == 10
        assert np.all(np.diff(dists) >= -1e-6), "nearest first"
        truth, _ = top_k(metric, rows, query, 10)
        hits += len(set(positions.tolist()) & set(truth.tolist()))
        assert_distances_exact(metric, rows, query, positions, dists)
    recall = hits / (10 * len(queries))
    assert recall >= 0.95, f"{metric.name} recall@10 = {recall:.3f}"



@pytest.mark.parametrize("metric", INDEXED, ids=lambda m: m.name)
def test_squared_distances_are_the_graphs_own_for_l2_alone(data, indexes, metric):
    # `squared`: an l2 graph's own float32 squared distances (what `float32_l2` vouches for),
    # the same winners; any other metric still answers with pgvector's distances.
    rows, queries = data
    index = indexes[metric]
    assert index.float32_l2 is (metric is Metric.L2)
    for query in queries[:10]:
        positions, dists = index.search(query, 10, ef=40)
        same, own = index.search(query, 10, ef=40, squared=True)
        np.testing.assert_array_equal(same, positions)
        if metric is Metric.L2:
            assert own.dtype == np.float32
            np.testing.assert_array_equal(pgvector_distances(metric, own), dists)
        else:
            np.testing.assert_array_equal(own, dists)

def test_k_beyond_indexed_count_and_small_ef():
    rows = small(50)
    index = HnswIndex.build(rows, HnswParams(Metric.L2))
    positions, dists = index.search(rows[0], 500, ef=1)
    assert sorted(positions.tolist()) == list(range(50))
    assert positions[0] == 0 and dists[0] == 0.0
    # ef below k is raised to k, so all k come back.
    positions, _ = index.search(rows[3], 40, ef=1)
    assert len(positions) == 40
    empty_pos, empty_d = index.search(rows[0], 0, ef=40)
    assert empty_pos.size == 0 and empty_d.size == 0
    with pytest.raises(DataException, match="different vector dimensions 16 and 3"):
        index.search(np.ones(3, np.float32), 5, ef=40)


# Persistence --------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path, data, indexes):
    rows, queries = data
    index = indexes[Metric.COSINE]
    path = tmp_path / "seg-1.hnsw"
    crc = index.save(path)
    assert crc == zlib.crc32(path.read_bytes())
    assert [p.name for p in tmp_path.iterdir()] == ["seg-1.hnsw"], "temp file left behind"

    loaded = HnswIndex.load(path, index.params, DIM, expected_crc=crc)
    assert loaded.indexed_count == index.indexed_count == N
    assert loaded.dim == DIM and loaded.params == index.params
    assert loaded.memory_bytes == index.memory_bytes
    mask = np.random.default_rng(3).random(N) < 0.5
    for query in queries[:20]:
        for allowed in (None, mask):
            a = index.search(query, 10, ef=64, allowed=allowed)
            b = loaded.search(query, 10, ef=64, allowed=allowed)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
    # Saving again over the same path replaces the file.
    assert loaded.save(path) == crc


@needs_huge_pages
def test_a_loaded_graph_searches_its_records_on_huge_pages(tmp_path, data, indexes):
    """Built or loaded, a graph's level-0 records (13 MB here) are on huge pages, and the
    loaded graph answers as the built one, reading its rows from them."""
    rows, queries = data
    index = indexes[Metric.L2]
    path = tmp_path / "seg-2.hnsw"
    crc = index.save(path)
    loaded = HnswIndex.load(path, index.params, DIM, expected_crc=crc)
    for graph in (index, loaded):
        words = _graph_words(graph._index, DIM, index.params.m)
        length = N * words[3]
        assert huge_bytes_in(words[31], length) >= length - 2 * (2 << 20)
    for query in queries[:20]:
        a = index.search(query, 10, ef=64, squared=True)
        b = loaded.search(query, 10, ef=64, squared=True)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(loaded.stored_rows(b[0]), rows[b[0]])


def test_flipped_byte_is_detected(tmp_path):
    index = HnswIndex.build(small(), HnswParams(Metric.L2))
    path = tmp_path / "seg-7.hnsw"
    crc = index.save(path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(DataCorrupted, match="checksum") as exc:
        HnswIndex.load(path, index.params, 16, expected_crc=crc)
    assert str(path) in exc.value.message
    assert "rebuilt from its segment" in exc.value.message
    assert exc.value.sqlstate == "XX001"


@pytest.mark.parametrize("keep", [10, 96, 5_000, -4])
@pytest.mark.parametrize("with_crc", [True, False])
def test_truncated_file_is_detected(tmp_path, keep, with_crc):
    index = HnswIndex.build(small(), HnswParams(Metric.L2))
    path = tmp_path / "seg-2.hnsw"
    crc = index.save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[:keep])
    with pytest.raises(DataCorrupted) as exc:
        HnswIndex.load(path, index.params, 16, expected_crc=crc if with_crc else None)
    assert str(path) in exc.value.message


def test_missing_file_and_mismatched_header(tmp_path):
    params = HnswParams(Metric.L2)
    with pytest.raises(DataCorrupted, match="could not read"):
        HnswIndex.load(tmp_path / "nope.hnsw", params, 16)
    path = tmp_path / "seg-3.hnsw"
    HnswIndex.build(small(), params).save(path)
    with pytest.raises(DataCorrupted, match="not 8-dimensional"):
        HnswIndex.load(path, params, 8)
    with pytest.raises(DataCorrupted, match="built with m = 16, expected 8"):
        HnswIndex.load(path, HnswParams(Metric.L2, m=8), 16)


def test_empty_index_round_trip(tmp_path):
    rows = small(100)
    index = HnswIndex.build(rows, HnswParams(Metric.IP), valid=np.zeros(100, bool))
    assert index.indexed_count == 0
    positions, dists = index.search(rows[0], 10, ef=40)
    assert positions.size == 0 and dists.size == 0
    path = tmp_path / "empty.hnsw"
    crc = index.save(path)
    loaded = HnswIndex.load(path, index.params, 16, expected_crc=crc)
    assert loaded.indexed_count == 0
    assert loaded.search(rows[0], 10, ef=40)[0].size == 0


# Masks --------------------------------------------------------------------------------------


def test_allowed_mask_filters_results(data, indexes):
    rows, queries = data
    index = indexes[Metric.L2]
    allowed = np.random.default_rng(5).random(N) < 0.3
    hits = 0
    for query in queries[:30]:
        positions, dists = index.search(query, 10, ef=64, allowed=allowed)
        assert allowed[positions].all()
        truth, _ = top_k(Metric.L2, rows, query, 10, allowed=allowed)
        hits += len(set(positions.tolist()) & set(truth.tolist()))
        assert_distances_exact(Metric.L2, rows, query, positions, dists)
    assert hits / 300 >= 0.9


def test_selective_mask_returns_allowed_rows_or_none(data, indexes):
    rows, queries = data
    index = indexes[Metric.L2]
    allowed = np.zeros(N, bool)
    chosen = [7, 4_000, 12_345, 19_999, 555]
    allowed[chosen] = True
    for query in queries[:10]:
        found = index.search(query, 10, ef=40, allowed=allowed)
        if found is None:  # the caller falls back to an exact scan
            continue
        positions, _ = found
        assert len(positions) <= len(chosen)
        assert set(positions.tolist()) <= set(chosen)
    nothing = index.search(queries[0], 10, ef=40, allowed=np.zeros(N, bool))
    assert nothing[0].size == 0
    with pytest.raises(ValueError, match="allowed"):
        index.search(queries[0], 10, ef=40, allowed=np.ones(N - 1, bool))


def test_invalid_rows_are_never_indexed_or_returned():
    rows = small(3_000)
    valid = np.random.default_rng(9).random(3_000) < 0.5
    index = HnswIndex.build(rows, HnswParams(Metric.L2), valid=valid)
    assert index.indexed_count == int(valid.sum())
    invalid = np.flatnonzero(~valid)
    for position in invalid[:50]:
        found, _ = index.search(rows[position], 20, ef=64)
        assert valid[found].all()
        assert position not in found
    # Allowing only rows that are not in the graph: hnswlib comes up short, so None.
    only_invalid = ~valid
    assert index.search(rows[invalid[0]], 5, ef=64, allowed=only_invalid) is None


def test_zero_vectors_not_indexed_under_cosine():
    rows = small(1_000)
    rows[[3, 500, 999]] = 0.0
    index = HnswIndex.build(rows, HnswParams(Metric.COSINE))
    assert index.indexed_count == 997
    positions, _ = index.search(rows[10], 1_000, ef=1_000)
    assert len(positions) == 997
    assert not {3, 500, 999} & set(positions.tolist())
    # A zero query has NaN distance to everything: left to the exact path.
    assert index.search(np.zeros(16, np.float32), 5, ef=40) is None
    # Other metrics index zero vectors like any other.
    assert HnswIndex.build(rows, HnswParams(Metric.L2)).indexed_count == 1_000


# Parameters ---------------------------------------------------------------------------------


def test_param_defaults_match_pgvector():
    params = HnswParams(Metric.COSINE)
    assert (params.m, params.ef_construction) == (16, 64)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"m": 1}, 'value 1 out of bounds for option "m"'),
        ({"m": 101, "ef_construction": 500}, 'value 101 out of bounds for option "m"'),
        ({"ef_construction": 3}, 'value 3 out of bounds for option "ef_construction"'),
        ({"ef_construction": 1001}, 'value 1001 out of bounds for option "ef_construction"'),
        (
            {"m": 16, "ef_construction": 31},
            "ef_construction must be greater than or equal to 2 * m",
        ),
        ({"m": 2.5}, 'invalid value for integer option "m": 2.5'),
    ],
)
def test_param_validation(kwargs, message):
    with pytest.raises(InvalidParameterValue) as exc:
        HnswParams(Metric.L2, **kwargs)
    assert exc.value.message == message
    assert exc.value.sqlstate == "22023"


def test_param_bounds_detail_and_edges():
    with pytest.raises(InvalidParameterValue) as exc:
        HnswParams(Metric.L2, m=1)
    assert exc.value.detail == 'Valid values are between "2" and "100".'
    HnswParams(Metric.L2, m=2, ef_construction=4)
    HnswParams(Metric.L2, m=100, ef_construction=1000)
    HnswParams(Metric.IP, m=32, ef_construction=64)


def test_l1_is_not_indexable():
    with pytest.raises(FeatureNotSupported) as exc:
        HnswParams(Metric.L1)
    assert exc.value.sqlstate == "0A000"
    assert "<+>" in exc.value.message


@pytest.mark.parametrize(
    ("metric", "raw", "expected"),
    [
        (Metric.L2, [4.0, 0.0, -1e-9], [2.0, 0.0, 0.0]),  # hnswlib: squared L2
        (Metric.IP, [1.0, 0.25, 3.0], [0.0, -0.75, 2.0]),  # hnswlib: 1 - a.b
        (Metric.COSINE, [0.5, 0.0], [0.5, 0.0]),  # hnswlib: 1 - cos
    ],
)
def test_hnswlib_distances_become_pgvector_values(metric, raw, expected):
    np.testing.assert_allclose(pgvector_distances(metric, np.array(raw)), expected)


def test_operator_classes_are_pgvector_ones():
    names = {o.name: o.metric for o in HnswIndex.opclasses if o.input_type != "bit"}
    # Bits: accepted, nothing built (access_methods.exact_only); their metric field is unused.
    assert [o.name for o in HnswIndex.opclasses if o.input_type == "bit"] == [
        "bit_hamming_ops", "bit_jaccard_ops"]
    assert names == {"vector_l2_ops": Metric.L2, "vector_cosine_ops": Metric.COSINE,
                     "vector_ip_ops": Metric.IP, "vector_l1_ops": Metric.L1,
                     "halfvec_l2_ops": Metric.L2, "halfvec_cosine_ops": Metric.COSINE,
                     "halfvec_ip_ops": Metric.IP, "halfvec_l1_ops": Metric.L1,
                     "sparsevec_l2_ops": Metric.L2, "sparsevec_cosine_ops": Metric.COSINE,
                     "sparsevec_ip_ops": Metric.IP, "sparsevec_l1_ops": Metric.L1}
    assert {o.name: o.input_type for o in HnswIndex.opclasses}["halfvec_ip_ops"] == "halfvec"
    assert {o.name: o.input_type for o in HnswIndex.opclasses}["sparsevec_l1_ops"] == "sparsevec"
    assert [o.name for o in HnswIndex.opclasses if o.default] == ["vector_l2_ops"]
    assert [o.name for o in HnswIndex.opclasses if not o.supported] == ["vector_l1_ops",
                                                                         "halfvec_l1_ops"]
    assert isinstance(HnswIndex.build(small(50), HnswParams(Metric.L2)), VectorIndex)


# Build progress and cancellation ------------------------------------------------------------


def test_progress_reports_each_chunk():
    n = 2 * BUILD_CHUNK_ROWS + 5_000
    rows = small(n, dim=4)
    calls: list[tuple[int, int]] = []
    index = HnswIndex.build(
        rows,
        HnswParams(Metric.L2, m=4, ef_construction=8),
        progress=lambda d, t: calls.append((d, t)),
    )
    # The rows held out for calibration go in last, as one more step.
    held = held_out_count(n)
    assert calls == [(BUILD_CHUNK_ROWS, n), (2 * BUILD_CHUNK_ROWS, n), (n - held, n), (n, n)]
    assert index.indexed_count == n
    unheld: list[tuple[int, int]] = []
    HnswIndex.build(rows, HnswParams(Metric.L2, m=4, ef_construction=8), calibrate=False,
                    progress=lambda d, t: unheld.append((d, t)))
    assert unheld == [(BUILD_CHUNK_ROWS, n), (2 * BUILD_CHUNK_ROWS, n), (n, n)]


def test_progress_total_counts_only_indexed_rows():
    rows = small(12_000, dim=4)
    valid = np.ones(12_000, bool)
    valid[:1_000] = False
    calls: list[tuple[int, int]] = []
    HnswIndex.build(
        rows,
        HnswParams(Metric.L2, m=4, ef_construction=8),
        valid=valid,
        progress=lambda d, t: calls.append((d, t)),
    )
    held = held_out_count(11_000)
    assert calls == [(10_000, 11_000), (11_000 - held, 11_000), (11_000, 11_000)]


def test_should_stop_cancels_between_chunks():
    rows = small(2 * BUILD_CHUNK_ROWS + 1, dim=4)
    calls: list[tuple[int, int]] = []
    with pytest.raises(IndexBuildCancelled):
        HnswIndex.build(
            rows,
            HnswParams(Metric.L2, m=4, ef_construction=8),
            progress=lambda d, t: calls.append((d, t)),
            should_stop=lambda: len(calls) >= 1,
        )
    assert calls == [(BUILD_CHUNK_ROWS, rows.shape[0])]


# Concurrency and sizing ---------------------------------------------------------------------


def test_concurrent_searches_use_their_own_ef(data, indexes):
    _, queries = data
    index = indexes[Metric.IP]
    efs = [10, 40, 100, 400]
    mask = np.random.default_rng(11).random(N) < 0.7
    sequential = {
        ef: [index.search(q, 10, ef=ef, allowed=mask if ef == 100 else None) for q in queries]
        for ef in efs
    }
    # Low and high ef must actually differ somewhere, or the test proves nothing.
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(sequential[10], sequential[400]))
    results: dict[int, list] = {}
    barrier = threading.Barrier(len(efs))

    def worker(ef: int) -> None:
        barrier.wait()
        out = []
        for _ in range(3):
            out = [index.search(q, 10, ef=ef, allowed=mask if ef == 100 else None) for q in queries]
        results[ef] = out

    threads = [threading.Thread(target=worker, args=(ef,)) for ef in efs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ef in efs:
        for got, want in zip(results[ef], sequential[ef]):
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


class _Overlap:
    """hnswlib's index as `HnswIndex` sees it, recording for each knn_query the ef set when it
    began and when it ended (a set_ef in between would show), and how many ran at once."""

    def __init__(self, inner, ef: int) -> None:
        self.inner, self.ef, self.running, self.most = inner, ef, 0, 0
        self.calls: list[tuple[int, int, int]] = []  # (ef wanted, ef at start, ef at end)
        self.lock = threading.Lock()
        self.wanted = threading.local()

    def set_ef(self, ef: int) -> None:
        self.inner.set_ef(ef)
        self.ef = ef

    def knn_query(self, *args, **kwargs):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        start = self.ef
        time.sleep(0.002)  # (long enough for the other threads' searches to begin meanwhile)
        try:
            return self.inner.knn_query(*args, **kwargs)
        finally:
            with self.lock:
                self.running -= 1
                self.calls.append((self.wanted.ef, start, self.ef))

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@pytest.mark.parametrize("efs", [[40, 40, 40], [40, 40, 100, 10]], ids=["same", "mixed"])
def test_searches_at_the_ef_set_run_side_by_side(data, efs):
    rows, queries = data
    index = HnswIndex.build(rows[:2_000], HnswParams(Metric.L2))
    sequential = {ef: [index.search(q, 10, ef=ef) for q in queries[:20]] for ef in set(efs)}
    spy = index._index = _Overlap(index._index, index._ef)
    results: dict[int, list] = {}
    barrier = threading.Barrier(len(efs))

    def search(slot: int, ef: int) -> None:
        spy.wanted.ef = ef
        barrier.wait()
        results[slot] = [index.search(q, 10, ef=ef) for q in queries[:20]]

    threads = [threading.Thread(target=search, args=(i, ef)) for i, ef in enumerate(efs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(wanted == start == end for wanted, start, end in spy.calls)
    assert len(spy.calls) == 20 * len(efs)
    if len(set(efs)) == 1:  # searches at one ef overlapped (a lock held them one at a time)
        assert spy.most >= 2
    for slot, ef in enumerate(efs):
        for got, want in zip(results[slot], sequential[ef]):
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


def test_memory_estimate(indexes):
    index = indexes[Metric.L2]
    per_element = DIM * 4 + 8 + 33 * 4 + 8
    assert N * per_element <= index.memory_bytes <= N * (per_element + 8)
    assert "indexed=20000" in repr(index)


def test_filtered_search_widens_up_to_max_scan_tuples(data, indexes):
    rows, queries = data
    index = indexes[Metric.L2]
    allowed = np.zeros(len(rows), bool)
    allowed[::50] = True  # 2% of the rows
    found, _ = index.search_filtered(queries[0], 10, knob=40, allowed=allowed, settings={})
    assert found.size == 10 and allowed[found].all()
    # Asking the graph for at most 100 labels cannot find ten rows of a 2% filter.
    assert index.search_filtered(queries[0], 10, knob=40, allowed=allowed,
                                 settings={"hnsw.max_scan_tuples": "100"}) is None


# A loaded graph's memory ----------------------------------------------------------------------


def resident_pages(address: int, length: int) -> int:
    """Pages of this process's memory in [address, address + length) that are in RAM."""
    page = 4096
    first, last = address // page, (address + length - 1) // page
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(first * 8)
        entries = np.frombuffer(f.read((last - first + 1) * 8), dtype=np.uint64)
    return int(np.count_nonzero(entries >> np.uint64(63)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/pagemap")
@pytest.mark.parametrize("metric", [Metric.L2, Metric.IP], ids=lambda m: m.name)
def test_loaded_graph_has_no_label_map_and_gives_its_locks_back(tmp_path, metric):
    """Loaded without hnswlib's label map, a graph whose labels are not its internal ids
    (rows skipped, held-out rows inserted last) answers as the built one, with deleted rows
    masked out, rescores from its own records, and keeps none of its lock pages resident."""
    rows = small(3_000, dim=16, seed=4)
    valid = np.ones(len(rows), bool)
    valid[::7] = False  # rows never indexed, as deleted rows at a compaction
    built = HnswIndex.build(rows, HnswParams(metric), valid=valid)
    path = tmp_path / "seg-9.hnsw"
    crc = built.save(path)
    loaded = HnswIndex.load(path, built.params, 16, expected_crc=crc)
    assert loaded._records is not None and len(loaded._index.get_ids_list()) == 1
    deleted = valid & (np.random.default_rng(5).random(len(rows)) < 0.8)
    for query in small(20, dim=16, seed=6):
        for allowed in (None, deleted):
            a = built.search(query, 10, ef=64, allowed=allowed)
            b = loaded.search(query, 10, ef=64, allowed=allowed)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
            assert valid[b[0]].all() and (allowed is None or allowed[b[0]].all())
            np.testing.assert_array_equal(loaded.stored_rows(b[0]), rows[b[0]])
    with pytest.raises(KeyError):
        loaded.stored_rows(np.array([7]))  # a row that was never indexed
    graph = _graph_words(loaded._index, 16, built.params.m)
    for word, locks in ((15, 65536), (23, loaded.indexed_count)):  # per label, per element
        begin, end = graph[word], graph[word + 1]
        assert end - begin == 40 * locks
        assert resident_pages(begin + 4096, end - begin - 8192) == 0
    assert loaded.save(path) == crc  # saved again (labels read from the records): the same file


def test_an_hnswlib_laid_out_otherwise_loads_with_its_label_map(tmp_path, monkeypatch):
    """When hnswlib's objects are not where 0.8.0 keeps them, the graph loads as hnswlib
    loads it (its label map and locks kept) and answers the same."""
    import sqlvec.storage.hnsw as hnsw

    rows = small(1_000, dim=16, seed=8)
    built = HnswIndex.build(rows, HnswParams(Metric.L2))
    path = tmp_path / "seg-4.hnsw"
    crc = built.save(path)
    monkeypatch.setattr(hnsw, "_graph_words", lambda *args: None)
    loaded = HnswIndex.load(path, built.params, 16, expected_crc=crc)
    assert loaded._records is None and len(loaded._index.get_ids_list()) == 1_000
    query = rows[3] + 0.01
    positions, dists = loaded.search(query, 10, ef=64)
    np.testing.assert_array_equal(positions, built.search(query, 10, ef=64)[0])
    np.testing.assert_array_equal(loaded.stored_rows(positions), rows[positions])


def test_a_built_graph_reloaded_from_its_file_answers_the_same(tmp_path):
    """After `save`, a build swaps its graph for the file's, loaded without the label map."""
    rows = small(2_000, dim=16, seed=9)
    built = HnswIndex.build(rows, HnswParams(Metric.L2))
    queries = small(10, dim=16, seed=10)
    before = [built.search(q, 10, ef=64) for q in queries]
    path = tmp_path / "seg-5.hnsw"
    built.reload_saved(path, built.save(path))
    assert built._records is not None and len(built._index.get_ids_list()) == 1
    for query, (positions, dists) in zip(queries, before):
        again = built.search(query, 10, ef=64)
        np.testing.assert_array_equal(again[0], positions)
        np.testing.assert_array_equal(again[1], dists)
        np.testing.assert_array_equal(built.stored_rows(positions), rows[positions])


def test_a_damaged_label_without_a_checksum_is_reported(tmp_path):
    """A label no segment could hold (a damaged file whose manifest kept no CRC) is reported
    as damage, not allocated for."""
    index = HnswIndex.build(small(500), HnswParams(Metric.L2))
    path = tmp_path / "seg-6.hnsw"
    index.save(path)
    raw = bytearray(path.read_bytes())
    m, dim = index.params.m, 16
    label_at = 96 + (2 * m + 1) * 4 + dim * 4  # the first record's label
    raw[label_at : label_at + 8] = b"\xff" * 8
    path.write_bytes(bytes(raw))
    with pytest.raises(DataCorrupted):
        HnswIndex.load(path, index.params, dim)


# The exact neighbours a calibration measures against ---------------------------------------


@pytest.mark.parametrize("metric", [Metric.L2, Metric.COSINE, Metric.IP])
def test_calibration_truth_is_the_exact_top_k_under_each_mask(metric):
    # 20,003 columns: not a multiple of the runs the shallow searches cut rows into; the masks
    # need 300, 120 and 40 queries, so each run of rows is searched as deep as its masks need
    rng = np.random.default_rng(3)
    data = rng.standard_normal((20_003, 16)).astype(np.float32)
    queries = rng.standard_normal((300, 16)).astype(np.float32)
    everything = np.ones(data.shape[0], dtype=np.bool_)
    everything[rng.choice(data.shape[0], 100, replace=False)] = False
    masks = [(everything, 300), (everything & (rng.random(data.shape[0]) < 0.2), 120),
             (everything & (rng.random(data.shape[0]) < 0.01), 40)]
    found = _nearest(metric, data, masks, queries, 10)
    for (allowed, count), got in zip(masks, found):
        exact = top_k_batch(metric, data, queries[:count], 10, allowed)
        assert got.shape == (count, 10)
        assert [set(row) for row in got.tolist()] == [set(row) for row in exact.tolist()]
