"""Recall calibration: an ef picked for a target recall meets it on fresh queries, and the
estimates (EXPLAIN's est_recall) are never more than 0.01 above the recall measured on queries
the index has not seen, on easy (clustered) and hard (uniform, 64-d) data.

The calibration measures rows the build held out of the graph; these tests draw new queries
from the same distribution as the data (as an application's queries are)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.datasets import Clustered
from sqlvec.errors import InvalidParameterValue
from sqlvec.storage.hnsw import HnswIndex, HnswParams
from sqlvec.storage.search import (
    DEFAULT_TARGET_RECALL,
    choose_ef,
    estimate_recall,
    parse_target_recall,
    search_target,
    smallest_ef_reaching,
)
from sqlvec.storage.vector_index import DefaultSetting, calibration_point
from sqlvec.vectors import Metric, top_k_batch

N, DIM, K = 30_000, 64, 10
FRESH = 1000


@pytest.fixture(scope="module", params=[Metric.L2, Metric.COSINE])
def calibrated(request):
    metric = request.param
    data = Clustered(N, DIM, clusters=200, seed=23)
    rows = data.all()
    index = HnswIndex.build(rows, HnswParams(metric=metric, m=16, ef_construction=64))
    index.calibration = index.calibrate(rows, None)
    queries = data.queries(FRESH, seed=9)
    truth = top_k_batch(metric, rows, queries, K, None)
    return index, queries, truth


def fresh_recall(index: HnswIndex, queries: np.ndarray, truth: np.ndarray, ef: int) -> float:
    hits = 0
    for q, t in zip(queries, truth):
        hits += len(set(t.tolist()) & set(index.search(q, K, ef=ef)[0].tolist()))
    return hits / (len(queries) * K)


def test_curve_rises_with_ef_and_reaches_near_one(calibrated):
    index, _, _ = calibrated
    efs = [e for e, _ in index.calibration]
    recalls = [r for _, r in index.calibration]
    assert efs == sorted(efs) and len(efs) >= 2
    assert all(0.0 <= r <= 1.0 for r in recalls)
    assert recalls[-1] > recalls[0]
    assert recalls[-1] >= 0.98


@pytest.mark.parametrize("target", [0.9, 0.95, 0.98])
def test_chosen_ef_meets_the_target_on_fresh_queries(calibrated, target):
    """The ef a target picks is the smallest whose estimate reaches it, and an estimate may be
    up to 0.01 above what fresh queries measure (the promise EXPLAIN's est_recall makes), so
    the target holds within that margin."""
    index, queries, truth = calibrated
    ef, predicted = choose_ef(index, 40, target)
    assert predicted is not None and predicted >= target
    measured = fresh_recall(index, queries, truth, ef)
    assert measured >= predicted - 0.01
    assert measured >= target - 0.01


def test_the_cap_bounds_the_chosen_ef_and_the_estimate_says_what_it_gives(calibrated):
    index, _, _ = calibrated
    curve = index.calibration
    # 0.98, or on data easy enough to reach it at the smallest calibrated ef (graph builds
    # differ run to run) the first recall above that point's
    target = 0.98
    if choose_ef(index, 40, target)[0] == curve[0][0]:
        target = next(r for _, r in curve if r > curve[0][1])
    uncapped, reaching = choose_ef(index, 40, target)
    assert reaching >= target and uncapped > curve[0][0]
    cap = max(e for e, _ in curve if e < uncapped)
    capped, estimate = choose_ef(index, 40, target, max_ef=cap)
    assert capped == cap and capped < uncapped
    assert estimate == pytest.approx(estimate_recall(curve, cap))
    assert estimate < target  # below the target: the search reports it (misses_target)


def test_a_target_between_ladder_points_takes_the_smallest_ef_on_their_chord():
    curve = [(10, 0.80), (40, 0.94), (64, 0.96), (100, 0.99)]
    ef = smallest_ef_reaching(curve, 0.95)
    assert 40 < ef < 64  # not the next ladder point up
    assert estimate_recall(curve, ef) >= 0.95 > estimate_recall(curve, ef - 1)
    assert smallest_ef_reaching(curve, 0.96) == 64  # on a ladder point: that point
    assert smallest_ef_reaching(curve, 0.80) == 10
    assert smallest_ef_reaching(curve, 0.995) is None


def test_lower_targets_choose_no_more_ef(calibrated):
    index, _, _ = calibrated
    chosen = [choose_ef(index, 40, t)[0] for t in (0.8, 0.9, 0.95, 0.98)]
    assert chosen == sorted(chosen)
    ef, predicted = choose_ef(index, 40, None)
    recalls = [r for _, r in index.calibration]
    assert ef == 40 and min(recalls) <= predicted <= max(recalls)


# Honest estimates on held-out queries -----------------------------------------------------------


def _uniform(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 64), dtype=np.float32)


SETS = {
    # name: (rows, held-out queries), drawn from the same distribution
    "clustered 20k x 32": lambda: (Clustered(20_000, 32, clusters=200, seed=5).all(),
                                   Clustered(20_000, 32, clusters=200, seed=5).queries(1000)),
    "uniform 10k x 64": lambda: (_uniform(10_000, 1), _uniform(1000, 2)),
}


@pytest.fixture(scope="module", params=list(SETS))
def held_out(request):
    rows, queries = SETS[request.param]()
    index = HnswIndex.build(rows, HnswParams(metric=Metric.L2, m=16, ef_construction=64))
    truth = top_k_batch(Metric.L2, rows, queries, K, None)
    return index, queries, truth


def test_build_calibrates_on_held_out_rows(held_out):
    index, _, _ = held_out
    assert index.calibration, "a build of thousands of rows records a curve"
    assert index.calibration_seconds > 0
    assert index.calibrate(np.empty((0, 1), np.float32), None) == index.calibration
    assert index.indexed_count >= 10_000  # the held-out rows are in the graph after the build


def test_estimates_are_at_most_001_above_measured_recall(held_out):
    index, queries, truth = held_out
    for ef in [e for e, _ in index.calibration] + [20, 50, 128]:
        estimate = estimate_recall(index.calibration, ef)
        measured = fresh_recall(index, queries, truth, ef)
        assert estimate <= measured + 0.01, (ef, estimate, measured)


def test_default_target_is_reached_or_the_largest_ef_is_used(held_out):
    index, queries, truth = held_out
    ef, estimate = choose_ef(index, 40, DEFAULT_TARGET_RECALL)
    measured = fresh_recall(index, queries, truth, ef)
    assert estimate <= measured + 0.01
    if estimate >= DEFAULT_TARGET_RECALL:
        assert measured >= DEFAULT_TARGET_RECALL - 0.01
    else:  # hard data: no ef reaches the target, the largest measured is used
        assert ef == index.calibration[-1][0]


def test_a_perfect_small_sample_does_not_claim_perfect_recall():
    assert calibration_point(np.ones(44)) < 0.95
    assert 0.98 < calibration_point(np.ones(500)) < 1.0
    assert calibration_point(np.full(500, 0.5)) < 0.5


def test_small_segments_hold_out_nothing_and_use_the_generic_curve():
    rows = Clustered(150, 8, clusters=5, seed=1).all()
    index = HnswIndex.build(rows, HnswParams(metric=Metric.L2))
    assert index.calibration == [] and index.indexed_count == 150
    assert index.calibrate(rows, None)  # perturbed rows instead


# Which knob a search uses --------------------------------------------------------------------


def test_search_target_prefers_what_the_session_set():
    unset = {"hnsw.ef_search": DefaultSetting("40"),
             "sqlvec.target_recall": DefaultSetting("0.95")}
    assert search_target(HnswIndex, None) == DEFAULT_TARGET_RECALL
    assert search_target(HnswIndex, {}) == DEFAULT_TARGET_RECALL
    assert search_target(HnswIndex, unset) == 0.95
    # SET hnsw.ef_search = 40 is a choice even when it equals the default: used exactly.
    assert search_target(HnswIndex, {**unset, "hnsw.ef_search": "40"}) is None
    # A target the session set wins over its ef_search; off falls back to ef_search.
    both = {"hnsw.ef_search": "40", "sqlvec.target_recall": "0.99"}
    assert search_target(HnswIndex, both) == 0.99
    assert search_target(HnswIndex, {**unset, "sqlvec.target_recall": "off"}) is None
    # A server started with target off: the knob's default, as pgvector.
    assert search_target(HnswIndex, {**unset, "sqlvec.target_recall": DefaultSetting("off")}) \
        is None


@pytest.mark.parametrize("text, value", [("0.9", 0.9), ("'0.99'", 0.99), ("1", 1.0),
                                         ("off", None), ("OFF", None), ("0", None)])
def test_target_recall_values(text, value):
    assert parse_target_recall(text) == value


@pytest.mark.parametrize("text, message", [
    ("abc", 'invalid value for parameter "sqlvec.target_recall": "abc"'),
    ("nan", 'invalid value for parameter "sqlvec.target_recall": "nan"'),
    ("1.5", '1.5 is outside the valid range for parameter "sqlvec.target_recall" (0 .. 1)'),
    ("-0.1", '-0.1 is outside the valid range for parameter "sqlvec.target_recall" (0 .. 1)'),
])
def test_target_recall_refuses_what_is_not_a_recall(text, message):
    with pytest.raises(InvalidParameterValue) as info:
        parse_target_recall(text)
    assert str(info.value) == message and info.value.sqlstate == "22023"
