"""Recall calibration: an ef picked for a target recall meets it on fresh queries.

The calibration samples queries from the index's own rows; these tests draw new queries from
the same distribution as the data (as an application's queries are) and check that the
ef `choose_ef` returns for a target reaches it on them, for each metric."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.datasets import Clustered
from sqlvec.storage.hnsw import HnswIndex, HnswParams
from sqlvec.storage.search import choose_ef
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
    index, queries, truth = calibrated
    ef, predicted = choose_ef(index, 40, target)
    assert predicted is not None and predicted >= target
    assert fresh_recall(index, queries, truth, ef) >= target


def test_lower_targets_choose_no_more_ef(calibrated):
    index, _, _ = calibrated
    chosen = [choose_ef(index, 40, t)[0] for t in (0.8, 0.9, 0.95, 0.98)]
    assert chosen == sorted(chosen)
    ef, predicted = choose_ef(index, 40, None)
    recalls = [r for _, r in index.calibration]
    assert ef == 40 and min(recalls) <= predicted <= max(recalls)
