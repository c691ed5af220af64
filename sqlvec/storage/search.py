"""Per-segment vector search: choose a strategy from exact candidate counts, then run it.

For each segment the scalar filter has already been evaluated (vectorized), so the number of
eligible rows is known exactly before any vector work. The strategy per segment:

- ``skip``: no eligible row (or min/max statistics prove the filter cannot match);
- ``exact``: an exact scan of the eligible rows (BLAS), when they are few or the segment has no
  index for this column and metric (the growing segment is always exact);
- ``<method>`` (``hnsw``): the segment's index alone, when (almost) every row is eligible;
- ``<method>-postfilter`` (``hnsw-postfilter``): the index queried for k / selectivity × 2
  nearest rows, filtered with the eligibility mask in NumPy and widened (× 4) until k survive —
  everything stays in C, no Python callback per visited node;
- ``packed_bits`` / ``inverted``: the exact structures of indexes on bits and on sparsevec
  columns (bit_index.py, sparse_index.py), which apply the filter while scoring, so they answer
  under any filter.

Indexes are used only through the `VectorIndex` protocol (vector_index.py), whatever their
access method. The exact/index crossover comes from the cost model in `SearchPolicy`
(measured for HNSW, see docs/benchmarks.md): exact costs about `exact_row_cost` per eligible
row, a post-filtered index search about `index_label_cost` per over-queried label
(k / selectivity × 2), so exact wins while eligible² < (index_label_cost / exact_row_cost) · 2k ·
rows. Whatever the index returns, a segment never contributes fewer than min(k, eligible) rows:
when it comes back short, exact finishes.

`target_recall` replaces the method's knob (ef_search): every index keeps a calibration (recall@10
measured at a ladder of knob values when it was built, on rows of the segment held out of the
graph until then, recorded as a lower confidence bound) and the smallest knob whose recorded
recall reaches the target is used. Which one a search uses (`search_target`): a
`sqlvec.target_recall` the session SET; else a knob the session SET (`SET hnsw.ef_search = 100`
is exact, as in pgvector); else the default target, 0.95. When no ef reaches the target, the
largest measured within `sqlvec.max_ef_search` is used, EXPLAIN's est_recall says what it gives
and the query sends a NOTICE (execution/vector_search.py): a target never misses silently.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np

from sqlvec.errors import InvalidParameterValue
from sqlvec.storage.bit_index import PackedBitsIndex, nearest
from sqlvec.storage.calibration import (
    EXACT_ROW_COST,
    INDEX_LABEL_COST,
    OVERQUERY_FACTOR,
    FilteredKnob,
    choose_filtered,
)
from sqlvec.storage.segment import SegmentView
from sqlvec.storage.sparse_index import SparseInvertedIndex, sparse_top_k
from sqlvec.storage.vector_index import VectorIndex, is_set, overquery
from sqlvec.vectors import (
    BIT_METRICS,
    Metric,
    SparseRows,
    hamming_distances,
    jaccard_distances,
    top_k,
)
from sqlvec.vectors import distances as exact_distances

# The recall a search aims at when the session has set neither `sqlvec.target_recall` nor the
# index's own knob (`hnsw.ef_search`).
DEFAULT_TARGET_RECALL = 0.95
TARGET_RECALL = "sqlvec.target_recall"
# The largest knob a recall target may pick (the top of the calibration ladder by default).
MAX_EF_SEARCH = "sqlvec.max_ef_search"
MAX_EF_SEARCH_DEFAULT = 1000
_OFF = ("off", "false", "no", "0")


def parse_target_recall(value: object) -> float | None:
    """`sqlvec.target_recall` as a number in (0, 1], or None for `off` (or 0); 22023 with
    PostgreSQL's GUC messages otherwise."""
    text = str(value).strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        text = text[1:-1].strip()
    if text.lower() in _OFF:
        return None
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise InvalidParameterValue(f'invalid value for parameter "{TARGET_RECALL}": "{text}"',
                                    hint="Use a recall between 0 and 1, or off.")
    if not 0.0 <= number <= 1.0:
        raise InvalidParameterValue(f'{number:g} is outside the valid range for parameter '
                                    f'"{TARGET_RECALL}" (0 .. 1)')
    return number or None


def search_target(method: type[VectorIndex], settings: Mapping[str, str] | None) -> float | None:
    """The recall a search through `method`'s index aims at, or None to use its knob as set.

    A `sqlvec.target_recall` the session SET wins; else a knob the session SET
    (`hnsw.ef_search`) is used exactly, as pgvector does; else the default target (0.95, or
    whatever `sqlvec.target_recall` starts as; `off` there means the knob's default)."""
    raw = settings.get(TARGET_RECALL) if settings else None
    if raw is not None and is_set(settings, TARGET_RECALL):
        return _lenient(raw)
    if method.settings and is_set(settings, method.settings[0].name):  # the knob comes first
        return None
    return DEFAULT_TARGET_RECALL if raw is None else _lenient(raw)


def search_knobs(method: type[VectorIndex] | None,
                 settings: Mapping[str, str] | None) -> tuple[int, float | None, int]:
    """(knob, recall target, knob cap) of a search through `method`'s index (None: a search
    without one): `method.search_knob`, `search_target` and `read_max_ef` of the session's
    settings, worked out once per distinct values of the settings they read (a fixed cost of
    every vector query otherwise)."""
    names = _KNOB_NAMES.get(method)
    if names is None:
        own = tuple(s.name for s in method.settings) if method is not None else ()
        names = _KNOB_NAMES[method] = own + (TARGET_RECALL, MAX_EF_SEARCH)
    # (A DefaultSetting never equals a value the session SET: the key tells them apart.)
    key = (method, tuple([settings.get(name) for name in names]) if settings else ())
    found = _KNOBS.get(key)
    if found is None:
        if method is None:
            found = (0, None, read_max_ef(settings))
        else:
            found = (method.search_knob(settings), search_target(method, settings),
                     read_max_ef(settings))
        if len(_KNOBS) >= 256:
            _KNOBS.clear()
        _KNOBS[key] = found
    return found


_KNOB_NAMES: dict[type | None, tuple[str, ...]] = {}
_KNOBS: dict[tuple, tuple[int, float | None, int]] = {}


def _lenient(value: str) -> float | None:
    """A stored value (checked when it was SET); anything unreadable reads as off."""
    try:
        return parse_target_recall(value)
    except InvalidParameterValue:
        return None


@dataclass(frozen=True)
class SearchPolicy:
    """Knobs of the per-segment choice (defaults measured on 100k × 128, m=16)."""

    exact_row_cost: float = EXACT_ROW_COST  # µs per eligible row scanned exactly
    index_label_cost: float = INDEX_LABEL_COST  # µs per label an over-queried search returns
    overquery_factor: float = OVERQUERY_FACTOR


@dataclass
class SegmentPlan:
    """What one segment does for one query: shown by EXPLAIN, filled in when run."""

    segment: int  # segment id (-1: growing)
    rows: int  # live rows with a vector
    eligible: int  # rows passing the filter (and live, with a vector)
    strategy: str  # skip | exact | <method> | <method>-postfilter
    ef: int = 0  # the index's knob (hnsw.ef_search)
    k: int = 0
    estimated_recall: float | None = None
    returned: int = 0
    seconds: float = 0.0
    widened: int = 0  # times the post-filter over-query was widened
    fallback: bool = False  # the index came back short; exact finished the segment
    method: str | None = None  # the access method searched, when an index is
    detail: str = ""  # the index's EXPLAIN text for its knob ("ef=40 est_recall=0.950")
    target_recall: float | None = None  # the recall target the knob was chosen for, if any

    @property
    def misses_target(self) -> bool:
        """The calibration says no knob within the cap reaches the target."""
        return self.target_recall is not None and self.estimated_recall is not None \
            and self.estimated_recall < self.target_recall

    @property
    def selectivity(self) -> float:
        return self.eligible / self.rows if self.rows else 0.0


@dataclass
class SegmentSearch:
    """A planned search of one segment (the mask is kept for running it)."""

    view: SegmentView
    plan: SegmentPlan
    mask: np.ndarray | None
    index: VectorIndex | None
    matrix: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    settings: Mapping[str, str] | None = field(repr=False, default=None)  # the session's


def plan_segment(view: SegmentView, physical: str, dims: int, k: int, *,
                 allowed: np.ndarray | None, index_name: str | None, ef: int,
                 target_recall: float | None = None, exact: bool = False,
                 pruned: bool = False, policy: SearchPolicy = SearchPolicy(),
                 max_ef: int = MAX_EF_SEARCH_DEFAULT,
                 settings: Mapping[str, str] | None = None,
                 bits: bool = False, sparse: bool = False) -> SegmentSearch:
    """Decide how one segment answers a top-k query (no vector work happens here). `bits`:
    the key is a bit string of `dims` bits (packed; Hamming or Jaccard); `sparse`: a
    sparsevec."""
    data = view.data
    index = data.index(index_name) if index_name and not exact else None
    if isinstance(index, (PackedBitsIndex, SparseInvertedIndex)):
        # The index holds the segment's keys (packed bits; the sparse rows beside their
        # inverted lists): nothing else is read, whatever the filter.
        matrix = index.rows if isinstance(index, SparseInvertedIndex) else None
        valid = index.valid if index.indexed_count < data.n_rows else None
    elif bits:
        matrix, valid = data.bits(physical, dims)
    elif sparse:
        matrix, valid = data.sparse(physical)
    else:
        matrix, valid = data.vectors(physical, dims)
    base = _combine(view.live_mask(), valid)
    rows = data.n_rows if base is None else int(np.count_nonzero(base))
    if pruned:
        return SegmentSearch(view, SegmentPlan(data.id, rows, 0, "skip", k=k), None, None, matrix)
    mask = _combine(base, allowed)
    eligible = rows if allowed is None else int(np.count_nonzero(mask))
    method = type(index).access_method if index is not None else None
    filtered = None
    if eligible == 0:
        strategy = "skip"
    elif index is None:
        strategy = "exact"
    elif allowed is None or eligible == rows or isinstance(index, (PackedBitsIndex,
                                                                    SparseInvertedIndex)):
        # (exact structures apply the filter while scoring: one strategy for any filter)
        strategy = method
    else:
        selectivity = eligible / max(rows, 1)
        filtered = filtered_knob(index, k, selectivity, target_recall, ef, max_ef)
        labels = policy.overquery_factor * k / selectivity
        if filtered is not None:  # the index measured filtered searches: their ef, their cost
            labels = max(labels, filtered.ef)
        exact_cost = eligible * policy.exact_row_cost
        index_cost = policy.index_label_cost * labels
        # (an index that cannot promise the target under this filter leaves it to exact)
        strategy = "exact" if (exact_cost <= index_cost or eligible <= k or (
            filtered is not None and not filtered.reachable)) else f"{method}-postfilter"
    plan = SegmentPlan(data.id, rows, eligible, strategy, k=min(k, eligible))
    if index is not None and strategy not in ("skip", "exact"):
        plan.method = method
        if strategy != method and filtered is not None:
            plan.ef, plan.estimated_recall = filtered.ef, filtered.recall
        else:
            plan.ef, plan.estimated_recall = choose_ef(index, ef, target_recall, max_ef)
        if target_recall is not None and index.calibration:
            plan.target_recall = target_recall
        plan.detail = index.explain(plan.ef, plan.estimated_recall)
    return SegmentSearch(view, plan, mask, index, matrix, settings)


def choose_ef(index: VectorIndex, ef: int, target_recall: float | None,
              max_ef: int = MAX_EF_SEARCH_DEFAULT) -> tuple[int, float | None]:
    """The knob (ef_search) to use and the recall the index's calibration predicts for it: for
    a target, the smallest knob within `max_ef` whose estimate (`estimate_recall`, between
    ladder points too) reaches it, else the largest within `max_ef`."""
    curve = index.calibration
    if target_recall is not None and curve:
        reaching = smallest_ef_reaching(curve, target_recall)
        chosen = reaching if reaching is not None and reaching <= max_ef else min(
            max_ef, int(curve[-1][0]))
        return chosen, estimate_recall(curve, chosen)
    return ef, estimate_recall(curve, ef)


def smallest_ef_reaching(curve: list[tuple[int, float]], target: float) -> int | None:
    """The smallest ef whose estimated recall reaches `target` (None: none on the curve does).

    Between two ladder points the estimate is the chord in log(ef) (`estimate_recall`): recall
    rises ever more slowly with ef (concave in log ef), so the chord of two lower bounds stays
    under the true curve, and an ef between ladder points is as honest as the points are. The
    next ladder point up would often cost much more ef than the target needs (40 -> 64)."""
    below: tuple[int, float] | None = None
    for ef_value, recall in curve:
        if recall >= target:
            if below is None:
                return int(ef_value)
            return _chord_crossing(curve, below, (int(ef_value), float(recall)), target)
        below = (int(ef_value), float(recall))
    return None


def _chord_crossing(curve: list[tuple[int, float]], low: tuple[int, float],
                    high: tuple[int, float], target: float) -> int:
    """The smallest integer ef in (low, high] where the log-ef chord reaches `target`."""
    share = (target - low[1]) / (high[1] - low[1])
    ef = max(low[0] + 1, math.ceil(math.exp(math.log(low[0]) + share * math.log(high[0] / low[0]))
                                   - 1e-9))
    while ef < high[0] and estimate_recall(curve, ef) < target:  # float rounding at the crossing
        ef += 1
    return min(ef, high[0])


def filtered_knob(index: VectorIndex, k: int, selectivity: float, target_recall: float | None,
                  knob: int, max_ef: int = MAX_EF_SEARCH_DEFAULT) -> FilteredKnob | None:
    """The ef (a target's within `max_ef`), estimated recall and whether the target is
    reachable of a filtered search through an index that measured filtered searches when it
    was built (calibration.py); None for one that did not (built before it did, or a method
    that does not), which is searched as before."""
    table = getattr(index, "filter_calibration", None)
    if not table:
        return None
    return choose_filtered(table, index.calibration, k, selectivity, target_recall, knob,
                           max_ef)


def read_max_ef(settings: Mapping[str, str] | None) -> int:
    """`sqlvec.max_ef_search` from the session's settings (checked when set)."""
    try:
        return max(1, int((settings or {}).get(MAX_EF_SEARCH, MAX_EF_SEARCH_DEFAULT)))
    except (TypeError, ValueError):
        return MAX_EF_SEARCH_DEFAULT


def estimate_recall(curve: list[tuple[int, float]] | None, ef: int) -> float | None:
    """Interpolated calibrated recall at `ef` (None without a calibration)."""
    if not curve:
        return None
    efs = [e for e, _ in curve]
    recalls = [r for _, r in curve]
    return float(np.interp(math.log(max(ef, 1)), np.log(efs), recalls))


def run_segment(search: SegmentSearch, metric: Metric, query: np.ndarray,
                order_only: bool = False,
                later: list[tuple[SegmentSearch, np.ndarray]] | None = None
                ) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Run a planned segment search: (positions, exact pgvector distances), nearest first.

    `order_only`: the caller needs the order, not the distances. When the index's own
    distances already settle it (`_order_settled`), the winners are not re-scored and the
    distances are None. `later`: when the index gives the winners, they are appended to it,
    (search, positions), not re-scored here, and the result is None (`_rescore_together`)."""
    plan = search.plan
    start = time.perf_counter()
    try:
        if plan.strategy == "skip" or plan.k == 0:
            return np.empty(0, np.int64), np.empty(0)
        if metric in BIT_METRICS:
            out = _bits(search, metric, query, plan.k)
            plan.returned = out[0].size
            return out
        if isinstance(query, SparseRows):
            if isinstance(search.index, SparseInvertedIndex):
                out = search.index.search(query, plan.k, ef=0, allowed=search.mask)
            else:
                out = sparse_top_k(metric, search.matrix, query, plan.k, search.mask)
            plan.returned = out[0].size
            return out
        if plan.method is not None and search.index is not None:
            found = _indexed(search, query, plan)
            if found is not None:
                positions, approximate = found
                if order_only and approximate is not None and _order_settled(
                        metric, search, query, approximate):
                    plan.returned = positions.size
                    return positions, None
                if later is not None:
                    later.append((search, positions))
                    return None
                out = _rescore(metric, search, query, positions)
                plan.returned = out[0].size
                return out
            plan.fallback = True
        out = top_k(metric, search.matrix, query, plan.k, search.mask)
        plan.returned = out[0].size
        return out
    finally:
        plan.seconds = time.perf_counter() - start


_POOL: ThreadPoolExecutor | None = None
# An exact search of at most this many rows runs in the calling thread: handing it to the pool
# costs about as much as the scan (tens of µs), so the small growing segment is never sent.
_INLINE_ROWS = 4096


def _always() -> bool:
    return True


# Whether a query may spread its segment searches over threads right now (`allow_fan_out`).
_fan_out: Callable[[], bool] = _always


def allow_fan_out(when: Callable[[], bool] | None) -> None:
    """Spread a query's heavy segment searches over threads only while `when()` is true (None:
    always). A worker process of `serve --workers` passes "fewer connections than cores":
    beyond that the other connections' queries keep every core busy, and handing a search to
    another thread can cost more CPU than the search itself (wire.workers)."""
    global _fan_out
    _fan_out = when or _always


def _heavy(search: SegmentSearch) -> bool:
    plan = search.plan
    return plan.strategy != "skip" and (plan.method is not None or plan.eligible > _INLINE_ROWS)


def run_all(searches: list[SegmentSearch], metric: Metric, query: np.ndarray,
            order_only: bool = False) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Run planned segment searches: in parallel threads when more than one does heavy vector
    work (hnswlib and BLAS release the GIL; other methods should too), the first of them and
    the light ones in the calling thread. `order_only`: as `run_segment`'s (only for a
    search of one segment: merging segments needs their distances). The index winners of
    every segment are re-scored together, in this thread (`_rescore_together`)."""
    if len(searches) == 1:
        return [run_segment(searches[0], metric, query, order_only)]
    heavy = [i for i, s in enumerate(searches) if _heavy(s)]
    # Each search's index winners, left for one re-score of them all in this thread.
    later: list[list[tuple[SegmentSearch, np.ndarray]]] = [[] for _ in searches]
    if len(heavy) <= 1 or not _fan_out():
        out = [run_segment(s, metric, query, later=later[i]) for i, s in enumerate(searches)]
    else:
        out = _fan_out_searches(searches, heavy, metric, query, later)
    rescored = iter(_rescore_together(metric, query, [left[0] for left in later if left]))
    return [found if found is not None else next(rescored) for found in out]


def _fan_out_searches(searches: list[SegmentSearch], heavy: list[int], metric: Metric,
                      query: np.ndarray, later: list[list[tuple[SegmentSearch, np.ndarray]]]
                      ) -> list[tuple[np.ndarray, np.ndarray | None] | None]:
    """`run_segment` of every search, the heavy ones but the first in the pool's threads."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2),
                                   thread_name_prefix="sqlvec-search")
    futures = {i: _POOL.submit(run_segment, searches[i], metric, query, False, later[i])
               for i in heavy[1:]}
    out: list = [None] * len(searches)
    try:
        for i, search in enumerate(searches):
            if i not in futures:
                out[i] = run_segment(search, metric, query, later=later[i])
    finally:
        wait(futures.values())
    for i, future in futures.items():
        out[i] = future.result()
    return out


def _indexed(search: SegmentSearch, query: np.ndarray,
             plan: SegmentPlan) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The index's winners (positions) and, when it gives them, its own distances to them;
    None when it cannot give k of them."""
    index, mask, want = search.index, search.mask, plan.k
    assert index is not None
    if mask is None:
        # An index whose own l2 distances can settle the order gives them as they are
        # (`_order_settled` reads nothing else): no conversion to pgvector's.
        found = index.search(query, want, ef=plan.ef, squared=True) \
            if getattr(index, "float32_l2", False) else index.search(query, want, ef=plan.ef)
        return None if found is None or found[0].size < want else found
    # An index whose own l2 distances can settle the order keeps them for its winners.
    squared = getattr(index, "float32_l2", False)
    # (`FilteringIndex`, told by its method: a runtime Protocol check costs tens of µs)
    search_filtered = getattr(index, "search_filtered", None)
    if search_filtered is not None:  # the index filters and widens its own scan
        found = search_filtered(query, want, knob=plan.ef, allowed=mask,
                                settings=search.settings, squared=True) if squared \
            else search_filtered(query, want, knob=plan.ef, allowed=mask,
                                 settings=search.settings)
    else:  # over-query the unfiltered index and filter in NumPy; widen until enough survive
        selectivity = plan.eligible / max(plan.rows, 1)
        found = overquery(index, query, want, plan.ef, mask, selectivity, squared=squared)
    if found is None:
        return None
    plan.widened = found[1]
    return found[0], found[2] if squared else None


def index_order(search: SegmentSearch, metric: Metric, query: np.ndarray) -> np.ndarray | None:
    """The winners' positions of a planned index search of a whole segment (no mask), in
    the order pgvector's exact distances give them: the index's own order when its
    distances settle it (`_order_settled`), else re-scored. `run_segment` without its plan
    record filled in, for a caller that reads neither the record nor the distances; None
    when the index cannot give k winners (`run_segment` then finishes exactly)."""
    found = _indexed(search, query, search.plan)
    if found is None:
        return None
    positions, approximate = found
    if approximate is not None and _order_settled(metric, search, query, approximate):
        return positions
    return _rescore(metric, search, query, positions)[0]


def _bits(search: SegmentSearch, metric: Metric, query: np.ndarray,
          k: int) -> tuple[np.ndarray, np.ndarray]:
    """A search of bit strings: through the segment's packed bits when it has them, else
    exactly over the keys packed for this segment (the growing one, or `sqlvec.exact`). Both
    are exact: the distances are pgvector's."""
    if isinstance(search.index, PackedBitsIndex):
        return search.index.search(query, k, ef=0, allowed=search.mask)
    kernel = hamming_distances if metric is Metric.HAMMING else jaccard_distances
    dists = kernel(search.matrix, np.asarray(query, np.uint8).reshape(1, -1))
    return nearest(dists, k, search.mask)


# The smallest squared distance `_order_settled` trusts: far above where float32 subnormals
# (or a CPU that flushes them to zero) could add an absolute error that matters.
_SETTLED_FLOOR = 2.0 ** -60
_FLOAT32 = np.dtype(np.float32)


def _order_settled(metric: Metric, search: SegmentSearch, query: np.ndarray,
                   approximate: np.ndarray) -> bool:
    """Whether the index's own squared L2 distances to its winners (nearest first, as
    `_indexed` asks a `float32_l2` index for them) prove the order pgvector's exact distances
    would give them, so re-scoring would change nothing.

    An index that declares `float32_l2` (hnswlib's l2 space over the segment's own float32
    rows) computes each squared distance as a float32 sum of the same float32 differences
    squared that pgvector sums, only in another order. Either sum of d nonnegative terms is
    within γ(d+1) = (d+1)u / (1 - (d+1)u) (u = 2⁻²⁴) of the exact sum of those squares,
    whatever the order (Higham, Accuracy and Stability of Numerical Algorithms, §3.1 and
    §4.2). So when each squared distance exceeds the one before it by more than both errors
    together — `eps` below is twice what that needs — the exact distances are strictly
    increasing in the same order: no tie for the row order to break, and the same rows in
    the same order as re-scoring gives. Anything else (near ties, infinities, NaN, values
    small enough for subnormals to matter) is re-scored."""
    if metric is not Metric.L2 or not getattr(search.index, "float32_l2", False) or \
            search.matrix is None or search.matrix.dtype != _FLOAT32 or query.dtype != _FLOAT32:
        return False
    # A top-k holds a handful of distances: Python floats compare them in a third of the time
    # the NumPy expression takes for ten of them.
    squares = approximate.tolist()
    if not squares:
        return True
    eps = 4.0 * (query.shape[0] + 2) * 2.0 ** -24
    below, above = 1.0 - eps, 1.0 + eps
    previous = squares[0]
    if not previous >= _SETTLED_FLOOR:  # (NaN fails here too)
        return False
    for square in squares[1:]:
        if not square * below > previous * above:  # a near tie, out of order, NaN or inf
            return False
        previous = square
    return True


def _winner_rows(search: SegmentSearch, positions: np.ndarray) -> np.ndarray:
    """The winners' vectors: from the index's own copy when it holds the segment's float32
    rows unchanged (`stored_rows`: no page of the mapped vectors file is touched), else from
    the segment's matrix."""
    if search.matrix.dtype == _FLOAT32 and hasattr(search.index, "stored_rows"):
        rows = search.index.stored_rows(positions)
        if rows is not None:
            return rows
    return search.matrix[positions]


def _rescore(metric: Metric, search: SegmentSearch, query: np.ndarray,
             positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact distances of the few winners, so results equal pgvector's to the last digit."""
    return _in_order(positions, exact_distances(metric, _winner_rows(search, positions), query))


def _rescore_together(metric: Metric, query: np.ndarray,
                      found: list[tuple[SegmentSearch, np.ndarray]]
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
    """`_rescore` of several segments' winners (`run_segment`'s `later`) in one pass over
    their rows: a re-score of a few rows costs its NumPy calls, not its arithmetic, and each
    row's distance is computed apart from the others', so the figures are the same."""
    if not found:
        return []
    start = time.perf_counter()
    dists = exact_distances(
        metric, np.concatenate([_winner_rows(search, positions) for search, positions in found]),
        query)
    share = (time.perf_counter() - start) / len(found)  # (each plan's time: its part of it)
    out, at = [], 0
    for search, positions in found:
        out.append(_in_order(positions, dists[at:at + positions.size]))
        at += positions.size
        search.plan.returned = positions.size
        search.plan.seconds += share
    return out


def _in_order(positions: np.ndarray, dists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Winners and their exact distances, nearest first (ties by position, NaN last)."""
    if np.count_nonzero(dists[1:] > dists[:-1]) == dists.size - 1:
        return positions.astype(np.int64, copy=False), dists  # already strictly in order
    order = np.lexsort((positions, np.where(np.isnan(dists), np.inf, dists)))
    return positions[order].astype(np.int64), dists[order]


def _combine(*masks: np.ndarray | None) -> np.ndarray | None:
    out = None
    for m in masks:
        if m is None:
            continue
        out = m if out is None else (out & m)
    return out
