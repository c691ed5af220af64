"""The filtered-search table as the planner reads it: the calibrated selectivity below, at the
largest measured ef not above the one asked, the smallest measured ef reaching the target, and
"not reachable" (search exactly) when none does; and as a build measures it: a point only
where the index is cheaper than an exact scan."""

from __future__ import annotations

import numpy as np

from sqlvec.storage.calibration import (
    choose_filtered,
    dearest_useful_ef,
    filter_multiples,
    filtered_recall,
    measure_filtered,
    overquery_labels,
    worth_measuring,
)
from sqlvec.storage.hnsw import HnswIndex, HnswParams
from sqlvec.vectors import Metric

TABLE = [(0.5, 1, 0.91), (0.5, 2, 0.94), (0.5, 4, 0.97),
         (0.1, 1, 0.93), (0.1, 2, 0.96),
         (0.02, 1, 0.80)]
CURVE = [(10, 0.85), (20, 0.93), (40, 0.96), (80, 0.99)]


def test_recall_is_the_selectivity_below_at_the_largest_measured_ef():
    # 30 % asks 67 labels: × 2 is ef 134, under the 10 % row's first ef (200): unknown
    assert filtered_recall(TABLE, CURVE, 0.3, 2) is None
    assert filtered_recall(TABLE, CURVE, 0.3, 3.5) == 0.93  # ef 234: 10 % at ef 200
    assert filtered_recall(TABLE, CURVE, 0.3, 6) == 0.96  # ef 402: 10 % at ef 400
    assert filtered_recall(TABLE, CURVE, 0.8, 2) == 0.91  # ef 50: 50 % at ef 40
    assert filtered_recall(TABLE, CURVE, 0.8, 4) == 0.94  # ef 100: 50 % at ef 80
    assert filtered_recall(TABLE, CURVE, 0.01, 1) is None  # below every calibrated selectivity


def test_choice_takes_the_smallest_ef_reaching_the_target_or_gives_up():
    ask = overquery_labels(10, 0.3)
    assert ask == 67
    knob = choose_filtered(TABLE, CURVE, 10, 0.7, 0.95, 40)
    assert (knob.ef, knob.recall, knob.reachable) == (160, 0.97, True)  # 50 % at ef 160
    knob = choose_filtered(TABLE, CURVE, 10, 0.3, 0.95, 40)
    assert (knob.ef, knob.recall, knob.reachable) == (400, 0.96, True)
    knob = choose_filtered(TABLE, CURVE, 10, 0.3, 0.97, 40)  # 0.96 at best: not promised
    assert (knob.ef, knob.recall, knob.reachable) == (400, 0.96, False)  # largest measured
    assert not choose_filtered(TABLE, CURVE, 10, 0.05, 0.9, 40).reachable  # 2 % below: 0.80…
    assert choose_filtered(TABLE, CURVE, 10, 0.05, 0.75, 40).reachable  # …enough for 0.75
    assert not choose_filtered(TABLE, CURVE, 10, 0.005, 0.1, 40).reachable  # never measured


def test_a_knob_the_session_set_is_used_with_what_the_table_says_of_it():
    knob = choose_filtered(TABLE, CURVE, 10, 0.3, None, 200)
    assert (knob.ef, knob.recall, knob.reachable) == (200, 0.93, True)  # 10 % at ef 200
    knob = choose_filtered(TABLE, CURVE, 10, 0.3, None, 10)  # raised to the over-query
    assert (knob.ef, knob.recall) == (67, None)  # below what 10 % measured: unknown


def test_multiples_go_up_to_the_largest_ef_a_search_may_use():
    assert filter_multiples(40) == [1, 2, 4, 8, 16, 25.0]  # ef 1000 = 25 × 40
    assert filter_multiples(400) == [1, 2, 2.5]
    assert filter_multiples(2000) == [1]  # the over-query itself is the least a search asks
    assert filter_multiples(40, 600) == [1, 2, 4, 8, 15.0]
    assert dearest_useful_ef(30_000, 0.5) == 1000  # exact 15,000 rows × 0.3 µs: dearer
    assert dearest_useful_ef(10_000, 0.2) == 599  # exact 2,000 rows: 600 µs


def test_a_deep_ef_is_picked_when_it_reaches_the_target_within_max_ef():
    table = [(0.5, 1, 0.80), (0.5, 8, 0.90), (0.5, 25.0, 0.97)]  # ef 40, 320, 1000
    curve = [(10, 0.80), (100, 0.93), (400, 0.96), (1000, 0.99)]
    knob = choose_filtered(table, curve, 10, 0.6, 0.95, 40)
    assert (knob.ef, knob.recall, knob.reachable) == (1000, 0.97, True)
    knob = choose_filtered(table, curve, 10, 0.6, 0.95, 40, max_ef=500)
    assert (knob.ef, knob.recall, knob.reachable) == (500, 0.90, False)
    # top 20 wants twice the rows: ef 1000 counts as the top 10's ef 500
    knob = choose_filtered(table, curve, 20, 0.6, 0.95, 40)
    assert (knob.ef, knob.recall, knob.reachable) == (1000, 0.90, False)


def test_points_are_measured_only_where_the_index_is_cheaper_than_exact():
    assert worth_measuring(100_000, 0.5, 8, 10)
    assert worth_measuring(100_000, 0.05, 2, 10)  # 800 labels against 5,000 rows × 0.3 µs
    assert not worth_measuring(100_000, 0.05, 4, 10)
    assert not worth_measuring(20_000, 0.01, 1, 10)


def test_a_build_measures_filtered_searches_honestly():
    """The table of a small graph: every recorded recall is at most what the same searches
    measure under fresh random filters (+0.01), and never decreases with the multiple."""
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((20, 16)).astype(np.float32)
    rows = centres[rng.integers(0, 20, 6_000)] + 0.3 * rng.standard_normal((6_000, 16)).astype(
        np.float32)
    index = HnswIndex.build(rows, HnswParams(Metric.IP, m=8, ef_construction=32))
    table = index.filter_calibration
    assert table and {s for s, _, _ in table} <= {0.5, 0.2, 0.1, 0.05, 0.02, 0.01}
    for s in {s for s, _, _ in table}:
        recalls = [r for t, _, r in sorted(table) if t == s]
        assert recalls == sorted(recalls)
    queries = rows[:100] + 0.1 * rng.standard_normal((100, 16)).astype(np.float32)
    mask = rng.random(6_000) < 0.5
    scores = -(queries @ rows[mask].T)
    truth = np.flatnonzero(mask)[np.argsort(scores, axis=1)[:, :10]]

    def search(batch, labels, ef):
        return np.stack([index.search(q, labels, ef=ef)[0] for q in batch])

    measured = measure_filtered(search, queries, {0.5: truth}, {0.5: mask}, 6_000, 10,
                                lambda recalls: float(np.mean(recalls)))
    for (_, m, recorded) in (p for p in table if p[0] == 0.5):
        means = [r for _, mm, r in measured if mm <= m]
        assert means and recorded <= means[-1] + 0.01
