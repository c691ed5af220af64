"""IVFFlat per segment: k-means lists, probes, filtered and iterative scans, calibration, files."""

from __future__ import annotations

import numpy as np
import pytest

from sqlvec.errors import DataCorrupted, FeatureNotSupported, InvalidParameterValue
from sqlvec.storage.ivfflat import (
    ITERATIVE_SCAN,
    MAX_PROBES,
    PROBES,
    IvfflatIndex,
    IvfflatParams,
)
from sqlvec.storage.vector_index import FilteringIndex, VectorIndex
from sqlvec.vectors import Metric, distances, top_k, top_k_batch

DIM = 32


def clustered(n: int, seed: int = 0, clusters: int = 50) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, DIM)).astype(np.float32) * 3
    return (centers[rng.integers(clusters, size=n)] + rng.normal(size=(n, DIM))).astype(
        np.float32)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered(20_200)[:20_000]


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered(20_200)[20_000:]  # the same clusters, rows not indexed


@pytest.fixture(scope="module")
def built(data) -> dict[Metric, IvfflatIndex]:
    return {m: IvfflatIndex.build(data, IvfflatParams(m, 100)) for m in (Metric.L2, Metric.COSINE,
                                                                          Metric.IP)}


def recall(index: IvfflatIndex, metric: Metric, data, queries, probes: int) -> float:
    truth = top_k_batch(metric, data, queries, 10)
    hits = [len(set(t.tolist()) & set(index.search(q, 10, ef=probes)[0].tolist()))
            for t, q in zip(truth, queries)]
    return sum(hits) / (10 * len(queries))


def test_it_implements_the_protocol_and_pgvector_declarations(built):
    index = built[Metric.L2]
    assert isinstance(index, VectorIndex) and isinstance(index, FilteringIndex)
    assert (IvfflatIndex.access_method, IvfflatIndex.am_oid) == ("ivfflat", 16320)
    assert [o.name for o in IvfflatIndex.options] == ["lists"]
    assert (IvfflatIndex.options[0].default, IvfflatIndex.options[0].min,
            IvfflatIndex.options[0].max) == (100, 1, 32768)
    assert (PROBES.default, PROBES.min, PROBES.max) == (1, 1, 32768)
    assert (ITERATIVE_SCAN.default, ITERATIVE_SCAN.enumvals) == ("off", ("off", "relaxed_order"))
    assert (MAX_PROBES.default, MAX_PROBES.min, MAX_PROBES.max) == (32768, 1, 32768)
    assert index.lists == 100 and index.indexed_count == 20_000


@pytest.mark.parametrize("metric", [Metric.L2, Metric.COSINE, Metric.IP])
def test_recall_grows_with_probes_and_reaches_0_95(built, data, queries, metric):
    index = built[metric]
    at = {p: recall(index, metric, data, queries, p) for p in (1, 4, 10)}
    assert at[1] < at[4] <= at[10]
    assert at[10] >= 0.95, at
    assert recall(index, metric, data, queries, 100) == 1.0  # every list: exact


def test_distances_are_pgvectors(built, data, queries):
    for metric, index in built.items():
        positions, dists = index.search(queries[0], 10, ef=100)
        exact_positions, exact = top_k(metric, data, queries[0], 10)
        assert positions.tolist() == exact_positions.tolist()
        np.testing.assert_allclose(dists, distances(metric, data[positions], queries[0]),
                                   rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(dists, exact, rtol=1e-4, atol=1e-4)


def test_a_build_is_deterministic(data):
    a = IvfflatIndex.build(data[:5_000], IvfflatParams(Metric.L2, 20))
    b = IvfflatIndex.build(data[:5_000], IvfflatParams(Metric.L2, 20))
    assert np.array_equal(a._centers, b._centers) and np.array_equal(a._positions, b._positions)


def test_filtered_search_finds_k_allowed_rows_or_gives_up_per_iterative_scan(built, data,
                                                                             queries):
    index = built[Metric.L2]
    q = queries[3]
    allowed = np.zeros(len(data), bool)
    allowed[np.random.default_rng(5).choice(len(data), 40, replace=False)] = True
    # 40 allowed rows among 20,000: one probed list holds hardly any of them.
    assert index.search_filtered(q, 10, knob=1, allowed=allowed, settings={}) is None
    found, widened = index.search_filtered(
        q, 10, knob=1, allowed=allowed, settings={"ivfflat.iterative_scan": "relaxed_order"})
    assert found.size == 10 and allowed[found].all() and widened > 0
    assert set(found.tolist()) <= set(np.flatnonzero(allowed).tolist())
    # max_probes bounds the widening: two lists cannot hold ten of forty rows.
    assert index.search_filtered(q, 10, knob=1, allowed=allowed, settings={
        "ivfflat.iterative_scan": "relaxed_order", "ivfflat.max_probes": "2"}) is None
    # Every list probed: the exact answer among the allowed rows.
    found, _ = index.search_filtered(q, 10, knob=100, allowed=allowed, settings={})
    assert found.tolist() == top_k(Metric.L2, data, q, 10, allowed)[0].tolist()


def test_an_unfiltered_search_probes_on_until_k_rows(data):
    index = IvfflatIndex.build(data[:300], IvfflatParams(Metric.L2, 100))
    positions, _ = index.search(data[0], 50, ef=1)  # one list holds a handful of rows
    assert positions.size == 50


def test_small_segments_and_zero_vectors(data):
    small = IvfflatIndex.build(data[:7], IvfflatParams(Metric.L2, 100))
    assert small.lists == 7  # one list per row
    assert small.search(data[0], 3, ef=1)[0][0] == 0
    rows = data[:200].copy()
    rows[[5, 9]] = 0.0
    cosine = IvfflatIndex.build(rows, IvfflatParams(Metric.COSINE, 10))
    assert cosine.indexed_count == 198  # zero vectors have no direction, as in pgvector
    assert cosine.search(np.zeros(DIM, np.float32), 3, ef=1) is None
    valid = np.ones(200, bool)
    valid[:50] = False
    part = IvfflatIndex.build(data[:200], IvfflatParams(Metric.L2, 10), valid=valid)
    assert part.indexed_count == 150 and part.search(data[0], 10, ef=10)[0].min() >= 50


def test_halfvec_input_is_indexed_as_float(data):
    halves = data[:2_000].astype(np.float16)
    index = IvfflatIndex.build(halves, IvfflatParams(Metric.L2, 10))
    positions, _ = index.search(halves[4], 1, ef=10)
    assert positions.tolist() == [4]


def test_progress_and_cancellation(data):
    seen = []
    IvfflatIndex.build(data, IvfflatParams(Metric.L2, 10), progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (20_000, 20_000) and len(seen) > 1
    from sqlvec.storage.vector_index import IndexBuildCancelled
    with pytest.raises(IndexBuildCancelled):
        IvfflatIndex.build(data, IvfflatParams(Metric.L2, 10), should_stop=lambda: True)


def test_calibration_is_a_lower_bound_of_real_recall(built, data, queries):
    index = built[Metric.L2]
    curve = index.calibrate(data, None)
    probes = [p for p, _ in curve]
    recalls = [r for _, r in curve]
    assert probes[0] == 1 and probes == sorted(probes)
    assert recalls == sorted(recalls) and recalls[-1] >= 0.95
    for p, r in curve[:4]:
        assert recall(index, Metric.L2, data, queries, p) >= r - 0.05


def test_save_and_load_round_trip_and_damage_is_detected(built, data, queries, tmp_path):
    index = built[Metric.COSINE]
    path = tmp_path / "seg.ivfflat"
    crc = index.save(path)
    loaded = IvfflatIndex.load(path, IvfflatParams(Metric.COSINE, 100), DIM, expected_crc=crc)
    for q in queries[:5]:
        assert loaded.search(q, 10, ef=3)[0].tolist() == index.search(q, 10, ef=3)[0].tolist()
    assert loaded.memory_bytes == index.memory_bytes
    with pytest.raises(DataCorrupted, match="built for another index definition"):
        IvfflatIndex.load(path, IvfflatParams(Metric.COSINE, 50), DIM)
    with pytest.raises(DataCorrupted, match="not 16-dimensional"):
        IvfflatIndex.load(path, IvfflatParams(Metric.COSINE, 100), 16)
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataCorrupted, match="checksum"):
        IvfflatIndex.load(path, IvfflatParams(Metric.COSINE, 100), DIM, expected_crc=crc)
    path.write_bytes(bytes(raw[:500]))
    with pytest.raises(DataCorrupted, match="truncated"):
        IvfflatIndex.load(path, IvfflatParams(Metric.COSINE, 100), DIM)


def test_params_are_checked():
    with pytest.raises(FeatureNotSupported):
        IvfflatParams(Metric.L1, 10)
    with pytest.raises(InvalidParameterValue, match='out of bounds for option "lists"'):
        IvfflatParams(Metric.L2, 40_000)


def test_settings_parse_as_pgvector_declares_them():
    assert ITERATIVE_SCAN.parse("Relaxed_Order") == "relaxed_order"
    with pytest.raises(InvalidParameterValue) as exc:
        ITERATIVE_SCAN.parse("strict_order")
    assert exc.value.hint == "Available values: off, relaxed_order."
    with pytest.raises(InvalidParameterValue, match=r"\(1 \.\. 32768\)"):
        PROBES.parse("0")
    assert PROBES.read({"ivfflat.probes": "7"}) == 7 and PROBES.read({}) == 1
    assert ITERATIVE_SCAN.read({"ivfflat.iterative_scan": "relaxed_order"}) == "relaxed_order"
