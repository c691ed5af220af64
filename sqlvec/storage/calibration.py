"""The recall of filtered searches: measured when an index is built, used when a search plans.

An index's calibration curve (recall@10 over its knob, vector_index.py) describes unfiltered
searches. A filtered search over-queries the index (`overquery`: k / selectivity × 2 labels,
kept in NumPy when they pass the filter), and the rows it needs lie deeper in the index's
order the fewer rows pass: how well the graph finds rows at that depth is not what recall@10
measures. On clustered 200k × 64 data, inner product, one graph, the unfiltered curve promised
0.95 while a 30 % filter got 0.92 and a 5 % filter 0.85 whatever the ef: the graph of an inner
product space reaches the deep neighbours badly, which no knob of the unfiltered curve shows.

So a build measures filtered searches as well (`measure_filtered`): its held-out queries under
random filters of a ladder of selectivities (`FILTER_SELECTIVITIES`), each searched exactly as
the search does it with ef a multiple of the over-query (`filter_multiples`: up to the largest
ef a search may use, which hard data needs), the recall@10 against the filtered truth recorded
as a lower confidence bound (`calibration_point`). The table, (selectivity, multiplier, recall)
rows, is kept beside the curve in the manifest. A point is only measured where the search could
use it: where the index's search costs less than an exact scan of the eligible rows (the cost
model's rates, `index_cost` and `exact_cost`; `dearest_useful_ef`).

A search then reads the calibrated selectivity below its own at its ef and picks the smallest
measured ef reaching the target (`choose_filtered`), and an exact scan when none does (the
index cannot promise the target there). Filters that follow the data's clusters are not
random: the over-query's widening keeps their row count, the table describes random ones.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

# What the search's cost model charges (µs, measured for HNSW on 100k × 128, m=16, see
# docs/benchmarks.md): per eligible row scanned exactly, per unit of ef of an index search.
EXACT_ROW_COST = 0.3
INDEX_LABEL_COST = 1.0
# A filtered search asks the index for k / selectivity × this many labels.
OVERQUERY_FACTOR = 2.0
# Selectivities a build measures filtered searches at, and the multiples of the over-query
# used as ef, up to the largest ef a search may use (`MAX_FILTER_EF`, which is measured as a
# multiple of its own: hard data reaches the target only there). (Selectivity 1 is the
# unfiltered curve.)
FILTER_SELECTIVITIES = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
OVERQUERY_MULTIPLIERS = (1, 2, 4, 8, 16, 32, 64)
MAX_FILTER_EF = 1000
# At most this many ef-units of work (ef × queries, never under FILTER_MIN_QUERIES queries nor
# over FILTER_MAX_QUERIES) per point, and a quarter of it in labels asked for per selectivity
# (`filter_queries`): the filtered points cost about what the unfiltered curve does. (The
# unfiltered curve measures more of the held-out rows: its truth and its points are cheaper.)
FILTER_MIN_QUERIES = 100
FILTER_MAX_QUERIES = 500
FILTER_BUDGET = 200_000
FILTER_SEED = 13
# The k of the recall the curve and the table measure.
CALIBRATION_K = 10

FilterTable = list[tuple[float, float, float]]  # (selectivity, multiplier, recall bound)


def overquery_labels(want: int, selectivity: float) -> int:
    """Labels a filtered search first asks the index for: want / selectivity × 2."""
    return max(want, int(math.ceil(want / max(selectivity, 1e-9) * OVERQUERY_FACTOR)))


def exact_cost(eligible: int) -> float:
    """Cost (µs) of an exact scan of `eligible` rows."""
    return eligible * EXACT_ROW_COST


def index_cost(ef: int) -> float:
    """Cost (µs) of an index search at `ef` (the over-query's labels included)."""
    return ef * INDEX_LABEL_COST


def worth_measuring(rows: int, selectivity: float, multiplier: float, k: int) -> bool:
    """Whether a search could use this point: the index is cheaper than an exact scan there."""
    ef = overquery_labels(k, selectivity) * multiplier
    return ef < rows * selectivity and index_cost(ef) < exact_cost(int(rows * selectivity))


def dearest_useful_ef(rows: int, selectivity: float, max_ef: int = MAX_FILTER_EF) -> int:
    """The largest ef a filtered search at `selectivity` of `rows` may use: within `max_ef`,
    and dearer than an exact scan of the eligible rows above it (the planner scans instead)."""
    eligible = int(rows * selectivity)
    cheaper = math.ceil(exact_cost(eligible) / INDEX_LABEL_COST) - 1
    return max(1, min(max_ef, cheaper, eligible - 1))


def filter_multiples(ask: int, max_ef: int = MAX_FILTER_EF) -> list[float]:
    """The multiples of an over-query of `ask` labels a build measures: the over-query itself,
    the ladder's below `max_ef`, then `max_ef` (as the multiple max_ef / ask)."""
    multiples: list[float] = [m for m in OVERQUERY_MULTIPLIERS if m == 1 or ask * m < max_ef]
    if max_ef / ask > multiples[-1]:
        multiples.append(max_ef / ask)
    return multiples


def filter_queries(held: int, selectivity: float, k: int) -> int:
    """How many of `held` queries measure a selectivity: all where the over-query is short,
    fewer where it is long (each costs an exact truth under its filter and deep searches)."""
    ask = overquery_labels(k, selectivity)
    return min(held, FILTER_MAX_QUERIES, max(FILTER_MIN_QUERIES, FILTER_BUDGET // (4 * ask)))


def measure_filtered(search: Callable[[np.ndarray, int, int], np.ndarray],
                     queries: np.ndarray, truths: dict[float, np.ndarray],
                     masks: dict[float, np.ndarray], rows: int, k: int,
                     point: Callable[[np.ndarray], float],
                     max_ef: int = MAX_FILTER_EF) -> FilterTable:
    """The filtered-search table of an index: for each selectivity of `truths` (the k
    nearest rows each query's filter `masks[s]` allows, -1 padded) and each multiplier worth
    measuring (`filter_multiples`), the recall of `search(queries, labels, ef)` (the labels an
    unfiltered search returns, nearest first) kept through the filter, as `point` bounds it."""
    table: FilterTable = []
    for selectivity, truth in truths.items():
        ask = overquery_labels(k, selectivity)
        mask = masks[selectivity]
        sizes = np.maximum((truth >= 0).sum(axis=1), 1)
        best, previous = 0.0, -1.0
        for multiplier in filter_multiples(ask, dearest_useful_ef(rows, selectivity, max_ef)):
            if not worth_measuring(rows, selectivity, multiplier, k):
                break
            ef = int(round(ask * multiplier))
            count = min(len(truth), max(FILTER_MIN_QUERIES, FILTER_BUDGET // ef))
            found = _kept_hits(search(queries[:count], ask, ef), mask, truth[:count], k)
            recalls = found / sizes[:count]
            # More ef finds at least what less does: a bound at a smaller multiple holds here.
            best = max(best, point(recalls))
            table.append((selectivity, multiplier, best))
            # Done at (nearly) full recall, or on a plateau: more ef buys nothing measurable.
            mean = float(recalls.mean())
            if mean >= 0.999 or mean - previous < 0.002:
                break
            previous = mean
    return table


def _kept_hits(labels: np.ndarray, mask: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """Per query, how many of its first k labels that pass the filter are in its truth."""
    labels = labels.astype(np.int64)
    allowed = mask[np.where(labels >= 0, labels, 0)] & (labels >= 0)
    kept_rank = np.cumsum(allowed, axis=1)
    kept = allowed & (kept_rank <= k)
    hits = (labels[:, :, None] == truth[:, None, :]).any(axis=2) & kept
    return hits.sum(axis=1).astype(np.float64)


class FilteredKnob(NamedTuple):
    """What a filtered search through a calibrated index does: its ef, the recall the table
    promises there (None: unknown), and whether that reaches the target."""

    ef: int
    recall: float | None
    reachable: bool


def filtered_recall(table: FilterTable, curve: list[tuple[int, float]], selectivity: float,
                    multiplier: float) -> float | None:
    """The recall the table promises a filtered top-10 search at `selectivity` whose ef is
    `multiplier` × its over-query (see `_recall_at`)."""
    ef = multiplier * overquery_labels(CALIBRATION_K, selectivity)
    return _recall_at(_model(tuple(table), tuple(curve)), selectivity, ef)


def _recall_at(model: tuple[list[float], list[list[tuple[float, float]]]], selectivity: float,
               ef: float) -> float | None:
    """The recall of the largest calibrated selectivity not above `selectivity`, at its largest
    measured ef not above `ef`; None below every calibrated selectivity or measured ef. At one
    ef, the fewer rows pass the deeper the rows a search needs lie (its recall falls): the
    calibrated selectivity below bounds the recall from below."""
    selectivities, points = model
    below = bisect.bisect_right(selectivities, selectivity) - 1
    return _side_recall(points[below], ef) if below >= 0 else None


def _side_recall(points: list[tuple[float, float]], ef: float) -> float | None:
    """The recall of one calibrated selectivity at the largest measured ef not above `ef`,
    None below them all."""
    step = bisect.bisect_right(points, (ef * (1 + 1e-6), math.inf)) - 1
    return points[step][1] if step >= 0 else None


@functools.lru_cache(maxsize=256)
def _model(table: tuple[tuple[float, float, float], ...], curve: tuple[tuple[int, float], ...]
           ) -> tuple[list[float], list[list[tuple[float, float]]]]:
    """The table as ascending selectivities (1.0: the unfiltered curve) and, per selectivity,
    its measured (ef, recall) points ascending (ef = multiple × that selectivity's over-query
    of the top 10), each recall the best at or below its ef (more ef finds at least what less
    does). Planning reads it per filtered query."""
    rows: dict[float, list[tuple[float, float]]] = {}
    for s, m, r in table:
        ask = overquery_labels(CALIBRATION_K, float(s))
        rows.setdefault(float(s), []).append((float(m) * ask, float(r)))
    if curve:
        rows[1.0] = [(float(e), float(r)) for e, r in curve]
    selectivities = sorted(rows)
    points = []
    for s in selectivities:
        best, ladder = 0.0, []
        for ef, r in sorted(rows[s]):
            best = max(best, r)
            ladder.append((ef, best))
        points.append(ladder)
    return selectivities, points


def choose_filtered(table: FilterTable, curve: list[tuple[int, float]], k: int,
                    selectivity: float, target: float | None, knob: int,
                    max_ef: int = MAX_FILTER_EF) -> FilteredKnob:
    """A filtered search through an index with this table: for a target, the smallest
    measured ef (within `max_ef`, at least the over-query) whose recall reaches it (not
    `reachable` when none does: the search should be exact); with the knob set, the knob
    (raised to the over-query) and what the table says it gives. The table measured top-10
    searches: a larger k reads it at ef × 10 / k (the ef per row wanted)."""
    ask = overquery_labels(k, selectivity)
    model = _model(tuple(table), tuple(curve))
    scale = min(1.0, CALIBRATION_K / max(k, 1))
    if target is None:
        ef = max(knob, ask)
        return FilteredKnob(ef, _recall_at(model, selectivity, ef * scale), True)
    best = FilteredKnob(ask, None, False)
    for ef in _candidate_efs(model, selectivity, ask, scale, max_ef):
        recall = _recall_at(model, selectivity, ef * scale)
        if recall is None:
            continue
        best = FilteredKnob(ef, recall, recall >= target)
        if best.reachable:
            break
    return best


def _candidate_efs(model: tuple[list[float], list[list[tuple[float, float]]]],
                   selectivity: float, ask: int, scale: float, max_ef: int) -> list[int]:
    """The efs worth trying, ascending: each ef measured at the calibrated selectivity below
    (where the table's recall changes), within the over-query and `max_ef`."""
    selectivities, points = model
    below = bisect.bisect_right(selectivities, selectivity) - 1
    side = points[below] if below >= 0 else []
    return sorted({max(ask, min(max_ef, int(math.ceil(ef / scale - 1e-6)))) for ef, _ in side})
