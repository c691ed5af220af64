"""Vector metrics and exact distance kernels, matching pgvector's values.

| SQL  | value                 |
|------|-----------------------|
| <->  | Euclidean distance    |
| <=>  | 1 - cosine similarity |
| <#>  | -(a . b)              |
| <+>  | L1 distance           |

Which metrics an index answers is the index's business (its operator classes: storage/hnsw.py).

Kernels work on a whole contiguous float32 matrix at once, never a Python loop per row: BLAS
products rank by cosine and inner product, the direct form (in chunks) by L2 and L1. Every value
returned (the final top-k, `a <-> b` in expressions) is computed as pgvector computes it: sums in
float32 in the order of its vectorized loops (`_pgvector_sum`), then the last steps in double,
the cosine similarity clamped to [-1, 1]; so `e <=> e` is exactly 0 and results equal
pgvector's bit for bit (pgvector built by GCC for x86-64 with FMA, checked against it in the
tests; other builds of pgvector round the last bit differently).

halfvec matrices (float16) are scored by the same entry points: the dtype selects pgvector's
halfvec kernels (`_halfvec`), which widen each element to float exactly and sum in the order of
its F16C loops (8 fused lanes, the lanes added in pairs, then the tail).
"""

from __future__ import annotations

import enum

import numpy as np

from sqlvec.errors import DataException, SqlVecError

# Rows scored per chunk by the direct (non-BLAS) kernels: bounds temporary memory.
_CHUNK_ROWS = 65536
# halfvec rows widened to float32 per chunk: small enough that the widened block stays in cache
# (about as fast as scanning float32 then; 65536-row blocks made the scan 2x slower).
_HALF_CHUNK_ROWS = 2048


class Metric(enum.Enum):
    """The distance functions pgvector defines, each with its operator; the index and the executor
    agree on them through this."""

    L2 = "l2"
    COSINE = "cosine"
    IP = "ip"  # negative inner product, pgvector's <#>
    L1 = "l1"
    HAMMING = "hamming"  # bit strings: pgvector's <~>
    JACCARD = "jaccard"  # bit strings: pgvector's <%>

    @property
    def operator(self) -> str:
        return _OPERATORS[self]

    @classmethod
    def from_operator(cls, op: str) -> Metric:
        """The metric of a pgvector distance operator (`<->`, `<=>`, `<#>`, `<+>`)."""
        return {v: k for k, v in _OPERATORS.items()}[op]


_OPERATORS = {Metric.L2: "<->", Metric.COSINE: "<=>", Metric.IP: "<#>", Metric.L1: "<+>",
              Metric.HAMMING: "<~>", Metric.JACCARD: "<%>"}
# The metrics of bit strings (packed bits, not float vectors).
BIT_METRICS = frozenset({Metric.HAMMING, Metric.JACCARD})


def check_same_dims(a: int, b: int, type_name: str = "vector") -> None:
    """Refuse a distance or arithmetic between vectors of different dimensions, with pgvector's
    message."""
    if a != b:
        raise DataException(f"different {type_name} dimensions {a} and {b}")


_FLOAT16 = np.dtype(np.float16)


def _dtype_of(*arrays: np.ndarray) -> type:
    """float16 when every operand is a halfvec matrix (pgvector's halfvec functions), else
    float32 (vector's)."""
    for a in arrays:
        if getattr(a, "dtype", None) != _FLOAT16:
            return np.float32
    return np.float16


def distances(metric: Metric, matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Exact pgvector distance from every row of `matrix` (n, d) to `query` (d,), as float64."""
    dtype = _dtype_of(matrix, query)
    matrix = np.asarray(matrix, dtype=dtype)
    query = np.asarray(query, dtype=dtype)
    if matrix.ndim != 2:
        raise ValueError("matrix must be 2-D")
    check_same_dims(matrix.shape[1], query.shape[0])
    if matrix.shape[0] <= _PGVECTOR_CHUNK_ROWS:  # one pass (a re-rank's few rows)
        return _pgvector(metric, matrix, query)
    out = np.empty(matrix.shape[0], dtype=np.float64)
    for start in range(0, matrix.shape[0], _PGVECTOR_CHUNK_ROWS):
        block = matrix[start : start + _PGVECTOR_CHUNK_ROWS]
        out[start : start + block.shape[0]] = _pgvector(metric, block, query)
    return out


def paired_distances(metric: Metric, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Row-wise distance between two (n, d) matrices (e.g. `a <-> b` over two columns)."""
    dtype = _dtype_of(left, right)
    left = np.asarray(left, dtype=dtype)
    right = np.asarray(right, dtype=dtype)
    check_same_dims(left.shape[1], right.shape[1])
    out = np.empty(left.shape[0], dtype=np.float64)
    for start in range(0, left.shape[0], _PGVECTOR_CHUNK_ROWS):
        stop = start + _PGVECTOR_CHUNK_ROWS
        out[start:stop] = _pgvector(metric, left[start:stop], right[start:stop])
    return out


def l2_squared_distances(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """pgvector's vector_l2_squared_distance, row-wise (the sum before L2's square root)."""
    if _dtype_of(left, right) is np.float16:
        check_same_dims(left.shape[1], right.shape[1], "halfvec")
        diff = left.astype(np.float32) - right.astype(np.float32)
        return _f16c_sum(diff, diff).astype(np.float64)
    left = np.asarray(left, dtype=np.float32)
    right = np.asarray(right, dtype=np.float32)
    check_same_dims(left.shape[1], right.shape[1])
    diff = left - right
    return _pgvector_sum(diff, diff, fma_tail=False).astype(np.float64)


# Rows per pass of the pgvector-order kernels (their temporaries are a few (rows, 16) arrays).
_PGVECTOR_CHUNK_ROWS = 8192
# pgvector's loops as GCC vectorizes them (x86-64, FMA): 16 running sums, then one 8-wide step.
_LANES = 16
# Rows up to which `_pgvector_sum` lays its sums out by lanes (a re-rank's few rows).
_FEW_ROWS = 64
# Columns whose products `_pgvector_sum` forms at once (a multiple of _LANES).
_SUM_BLOCK = 256


def _pgvector(metric: Metric, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """pgvector's distance of each row of `x` to `y` (a row or the matching rows), float64."""
    if x.dtype == np.float16:
        return _halfvec(metric, x, y)
    if y.ndim == 1 and x.shape[0] <= _FEW_ROWS:
        return _pgvector_few(metric, x, y)
    if metric is Metric.L2:
        diff = x - y
        return np.sqrt(_pgvector_sum(diff, diff, fma_tail=False).astype(np.float64))
    if metric is Metric.L1:
        return _pgvector_sum(np.abs(x - y), None, fma_tail=False).astype(np.float64)
    if metric is Metric.IP:
        return -_pgvector_sum(x, y, fma_tail=False).astype(np.float64)
    # The three sums in one pass (each row's sum is independent of the others').
    y2 = y if y.ndim == 2 else y[None, :]
    n = x.shape[0]
    sums = _pgvector_sum(np.concatenate([x, x, y2]),
                         np.concatenate([np.broadcast_to(y2, x.shape), x, y2]),
                         fma_tail=True).astype(np.float64)
    dots, norm_x, norm_y = sums[:n], sums[n:2 * n], sums[2 * n:]
    # pgvector: sqrt(a * b) over sqrt(a) * sqrt(b); a zero vector gives NaN; clamped to [-1, 1].
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.clip(dots / np.sqrt(norm_x * norm_y), -1.0, 1.0)
    return 1.0 - sim


def _pgvector_sum(x: np.ndarray, y: np.ndarray | None, fma_tail: bool,
                  init: np.ndarray | None = None) -> np.ndarray:
    """Per row, the float32 sum of x * y (of x when y is None) in pgvector's order: 16 running
    sums fed by fused multiply-adds (an exact product rounded once with the sum), folded in
    halves (and added to `init`, the sum so far of a loop that continues one); then 8 products
    folded in halves; then the last elements one by one (fused in the cosine loop, separately
    rounded in the L2 and inner-product ones)."""
    n, d = x.shape
    main = d - d % _LANES
    total = np.zeros(n, np.float32) if init is None else np.asarray(init, np.float32)
    # A few rows (a re-rank's): lanes by rows and each step's products contiguous, as NumPy's
    # loops over small strided views cost more than the arithmetic; many rows: as they come
    # (a transposed copy of a large block costs more than it saves).
    few = n <= _FEW_ROWS
    if main:
        # The products of a block of steps at once (exact in float64), then one add and one
        # rounding per step: the same arithmetic as a fused multiply-add per step, with a
        # third of the NumPy calls (what a re-rank of a few dozen rows costs).
        acc = np.zeros((_LANES, n) if few else (n, _LANES), np.float32)
        for b in range(0, main, _SUM_BLOCK):
            end = min(main, b + _SUM_BLOCK)
            if y is None:
                block = x[:, b:end].astype(np.float64)
            else:
                block = x[:, b:end].astype(np.float64) * y[..., b:end]
            block = block.reshape(n, (end - b) // _LANES, _LANES)
            if few:
                for step in np.ascontiguousarray(block.transpose(1, 2, 0)):
                    # The add in float64, rounded once into the float32 sums.
                    np.add(acc, step, out=acc, casting="unsafe")
            else:
                for s in range(block.shape[1]):
                    acc = (acc + block[:, s]).astype(np.float32)
        total = total + (_fold_rows(acc) if few else _fold(acc))
    i = main
    if d - i >= 8:
        part = x[:, i:i + 8] if y is None else x[:, i:i + 8] * y[..., i:i + 8]
        total = total + (_fold_rows(np.ascontiguousarray(part.T)) if few else _fold(part))
        i += 8
    for k in range(i, d):
        if y is None:
            total = total + x[:, k]
        elif fma_tail:
            total = (total.astype(np.float64) + x[:, k].astype(np.float64) * y[..., k]).astype(
                np.float32)
        else:
            total = total + x[:, k] * y[..., k]
    return total


def _pgvector_few(metric: Metric, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`_pgvector` of a few rows (a re-rank's) and one query: the same sums, with the
    operands laid out by lanes from the start ((d, n): a step's products contiguous, no
    transposed copy of the products), in fewer NumPy calls."""
    yt = y[:, None]
    if metric is Metric.L2:
        diff = np.subtract(x.T, yt, order="C")
        return np.sqrt(_lanes_sum(diff, diff, fma_tail=False), dtype=np.float64)
    if metric is Metric.L1:
        diff = np.subtract(x.T, yt, order="C")
        return _lanes_sum(np.abs(diff, out=diff), None, fma_tail=False).astype(np.float64)
    xt = np.ascontiguousarray(x.T)
    if metric is Metric.IP:
        return np.negative(_lanes_sum(xt, yt, fma_tail=False), dtype=np.float64)
    n = x.shape[0]
    sums = _lanes_sum(np.concatenate([xt, xt, yt], axis=1),
                      np.concatenate([np.broadcast_to(yt, xt.shape), xt, yt], axis=1),
                      fma_tail=True).astype(np.float64)
    dots, norm_x, norm_y = sums[:n], sums[n:2 * n], sums[2 * n:]
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.clip(dots / np.sqrt(norm_x * norm_y), -1.0, 1.0)
    return 1.0 - sim


_ZERO32 = np.float32(0.0)


def _lanes_sum(xt: np.ndarray, yt: np.ndarray | None, fma_tail: bool) -> np.ndarray:
    """`_pgvector_sum` of the transposed operands: `xt` (d, n), C-contiguous, and `yt` (d, n)
    or (d, 1) or None; per column, the float32 sum in pgvector's order, the same arithmetic
    step for step (see there)."""
    d, n = xt.shape
    main = d - d % _LANES
    if main:
        # The running sums in float64 holding float32 values: each step adds in float64 and
        # rounds to float32 (the same rounding as a float32 output of the float64 add, in
        # plain-typed NumPy calls, which cost less than one mixed-type call).
        acc = np.zeros((_LANES, n))
        rounded = np.empty((_LANES, n), np.float32)
        for b in range(0, main, _SUM_BLOCK):
            end = min(main, b + _SUM_BLOCK)
            # The exact products (float64), each step's (16, n) contiguous.
            block = xt[b:end].astype(np.float64) if yt is None else \
                np.multiply(xt[b:end], yt[b:end], dtype=np.float64)
            for step in block.reshape(-1, _LANES, n):
                np.add(acc, step, out=acc)
                rounded[...] = acc  # one rounding per step
                acc[...] = rounded
        total = _fold_rows(rounded) + _ZERO32  # (+0: as the sum starting from zero, -0 -> 0)
    else:
        total = np.zeros(n, np.float32)
    i = main
    if d - i >= 8:
        part = xt[i:i + 8] if yt is None else xt[i:i + 8] * yt[i:i + 8]
        total = total + _fold_rows(part)
        i += 8
    for k in range(i, d):
        if yt is None:
            total = total + xt[k]
        elif fma_tail:
            total = (total.astype(np.float64) + xt[k].astype(np.float64) * yt[k]).astype(
                np.float32)
        else:
            total = total + xt[k] * yt[k]
    return total


def _halfvec(metric: Metric, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """pgvector's halfvec distances (halfutils.c, the F16C loops x86-64 CPUs run): each half
    widened to float exactly, float sums, the last steps in double."""
    check_same_dims(x.shape[1], y.shape[-1], "halfvec")
    xf = x.astype(np.float32)
    yf = y.astype(np.float32)
    if metric is Metric.L2:
        diff = xf - yf
        return np.sqrt(_f16c_sum(diff, diff).astype(np.float64))
    if metric is Metric.IP:
        return -_f16c_sum(xf, yf).astype(np.float64)
    if metric is Metric.L1:
        return _f16c_sum(np.abs(xf - yf), None).astype(np.float64)
    y2 = yf if yf.ndim == 2 else yf[None, :]
    n = xf.shape[0]
    sums = _f16c_sum(np.concatenate([xf, xf, y2]),
                     np.concatenate([np.broadcast_to(y2, xf.shape), xf, y2])).astype(np.float64)
    dots, norm_x, norm_y = sums[:n], sums[n:2 * n], sums[2 * n:]
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.clip(dots / np.sqrt(norm_x * norm_y), -1.0, 1.0)
    return 1.0 - sim


# pgvector's F16C loops: 8 float lanes (one AVX register) fed by fused multiply-adds.
_F16C_LANES = 8


def _f16c_sum(x: np.ndarray, y: np.ndarray | None) -> np.ndarray:
    """Per row, the float32 sum of x * y (of x when y is None) as pgvector's F16C loops compute
    it: 8 running sums (of fused multiply-adds, or plain adds for L1), added in adjacent pairs
    (the compiler reassociates pgvector's left-to-right sum of the lanes), then the remaining
    elements one by one (fused too: the loop is compiled for FMA)."""
    n, d = x.shape
    count = d - d % _F16C_LANES
    # As in `_pgvector_sum`: the exact products a block at a time, one add and one rounding
    # per step (the same arithmetic as a fused multiply-add per step).
    acc = np.zeros((n, _F16C_LANES), np.float32)
    for b in range(0, count, _SUM_BLOCK):
        end = min(count, b + _SUM_BLOCK)
        if y is None:
            block = x[:, b:end].astype(np.float64)
        else:
            block = x[:, b:end].astype(np.float64) * y[..., b:end]
        block = block.reshape(n, (end - b) // _F16C_LANES, _F16C_LANES)
        for s in range(block.shape[1]):
            acc = (acc + block[:, s]).astype(np.float32)
    lanes = acc
    while lanes.shape[1] > 1:
        lanes = lanes[:, 0::2] + lanes[:, 1::2]
    total = lanes[:, 0]
    for k in range(count, d):
        if y is None:
            total = total + x[:, k]
        else:
            total = (total.astype(np.float64) + x[:, k].astype(np.float64) * y[..., k]).astype(
                np.float32)
    return total


def _fold(lanes: np.ndarray) -> np.ndarray:
    """Sum the columns of (n, 2^k) float32 lanes pairwise in halves, as a vector reduction."""
    while lanes.shape[1] > 1:
        half = lanes.shape[1] // 2
        lanes = lanes[:, :half] + lanes[:, half:]
    return lanes[:, 0]


def _fold_rows(lanes: np.ndarray) -> np.ndarray:
    """`_fold` of lanes laid out by rows, (2^k, n): the same sums in the same order."""
    while lanes.shape[0] > 1:
        half = lanes.shape[0] // 2
        lanes = lanes[:half] + lanes[half:]
    return lanes[0]


def _fast_direct(metric: Metric, block: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The direct form in float64 accumulation: ranking only (values come from `_pgvector`)."""
    if metric is Metric.L2:
        diff = block - query
        return np.sqrt(np.einsum("ij,ij->i", diff, diff, dtype=np.float64))
    return np.abs(block - query).sum(axis=1, dtype=np.float64)


def _ranking_scores(metric: Metric, matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Scores whose order is the metric's order. Inner products use one BLAS product; L2 and
    L1 use the direct form (chunked), because the expanded ||x||² - 2x·q + ||q||² loses every
    digit that separates points lying far from the origin."""
    query = np.asarray(query, dtype=np.float32)
    if metric in (Metric.L1, Metric.L2) or matrix.dtype == np.float16:
        # halfvec matrices are widened a chunk at a time (NumPy has no half-precision BLAS).
        out = np.empty(matrix.shape[0], dtype=np.float64)
        step = _HALF_CHUNK_ROWS if matrix.dtype == np.float16 else _CHUNK_ROWS
        for start in range(0, matrix.shape[0], step):
            block = matrix[start : start + step].astype(np.float32, copy=False)
            out[start : start + block.shape[0]] = (
                _fast_direct(metric, block, query) if metric in (Metric.L1, Metric.L2)
                else _ranking_scores(metric, block, query))
        return out
    dots = matrix @ query  # float32 GEMV
    if metric is Metric.IP:
        return -dots
    sq = np.einsum("ij,ij->i", matrix, matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        return -dots / np.sqrt(sq)


def top_k(
    metric: Metric,
    matrix: np.ndarray,
    query: np.ndarray,
    k: int,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of `matrix` to `query`, optionally among `allowed` (bool mask).

    Returns (row positions, pgvector distances), nearest first; ties keep row order.
    Rows whose distance is NaN (zero vectors under cosine) sort last, as in PostgreSQL.
    A float16 matrix (halfvec) is ranked and scored as pgvector's halfvec functions do.
    """
    dtype = np.float16 if getattr(matrix, "dtype", None) == np.float16 else np.float32
    matrix = np.asarray(matrix, dtype=dtype)
    query = np.asarray(query, dtype=dtype)
    check_same_dims(matrix.shape[1], query.shape[0])
    if allowed is not None:
        positions = np.flatnonzero(allowed)
        sub = matrix[positions] if positions.size < matrix.shape[0] else matrix
        if positions.size == matrix.shape[0]:
            positions = None
    else:
        positions, sub = None, matrix
    n = sub.shape[0]
    if k <= 0 or n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    scores = _ranking_scores(metric, sub, query)
    # Over-select then re-score exactly: the expanded form may misorder near-ties.
    pool = min(n, max(2 * k, k + 32))
    scores = np.where(np.isnan(scores), np.inf, scores)
    if pool < n:
        cand = np.argpartition(scores, pool - 1)[:pool]
    else:
        cand = np.arange(n)
    exact = _pgvector(metric, sub[cand], query)
    order = np.lexsort((cand, np.where(np.isnan(exact), np.inf, exact)))[:k]
    chosen = cand[order]
    rows = chosen if positions is None else positions[chosen]
    return rows.astype(np.int64), exact[order]


def top_k_batch(metric: Metric, matrix: np.ndarray, queries: np.ndarray, k: int,
                allowed: np.ndarray | None = None) -> np.ndarray:
    """Exact top-k row positions for many queries at once (one matrix product ranks them all).

    The BLAS pass over-selects candidates (64 + 4k per query) which are re-scored with the direct
    form; used where many exact answers are needed at once (index calibration, benchmarks)."""
    dtype = np.float16 if getattr(matrix, "dtype", None) == np.float16 else np.float32
    matrix = np.asarray(matrix, dtype=dtype)
    queries = np.asarray(queries, dtype=dtype)
    positions = np.arange(matrix.shape[0]) if allowed is None else np.flatnonzero(allowed)
    sub = matrix if allowed is None else matrix[positions]
    out = np.full((queries.shape[0], k), -1, np.int64)
    if sub.shape[0] == 0:
        return out
    if metric is Metric.L1:  # no matrix-product form: one exact scan per query
        for i, q in enumerate(queries):
            found = top_k(metric, sub, q, k)[0]
            out[i, : found.size] = positions[found]
        return out
    pool = min(sub.shape[0], 64 + 4 * k)
    rank = sub.astype(np.float32, copy=False)  # halfvec: ranked in float32 (BLAS)
    sq = np.einsum("ij,ij->i", rank, rank)[:, None]
    block_size = max(1, min(64, (64 << 20) // max(1, 4 * sub.shape[0])))  # ≤ 64 MiB of scores
    for start in range(0, queries.shape[0], block_size):
        block = queries[start : start + block_size]
        dots = rank @ block.T.astype(np.float32)  # (n, b)
        if metric is Metric.IP:
            scores = -dots
        elif metric is Metric.COSINE:
            with np.errstate(invalid="ignore", divide="ignore"):
                scores = -dots / np.sqrt(sq)
        else:
            scores = sq - 2 * dots
        scores = np.where(np.isnan(scores), np.inf, scores)
        cand = np.argpartition(scores, pool - 1, axis=0)[:pool] if pool < sub.shape[0] else \
            np.broadcast_to(np.arange(sub.shape[0])[:, None], scores.shape)
        for j, q in enumerate(block):
            c = cand[:, j]
            exact = _pgvector(metric, sub[c], q)
            order = np.lexsort((c, np.where(np.isnan(exact), np.inf, exact)))[:k]
            out[start + j, : order.size] = positions[c[order]]
    return out


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    """pgvector's l2_normalize: zero vectors stay zero."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix, dtype=np.float64))[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(norms > 0, matrix / norms, 0.0)
    return out.astype(np.float32)


# Bit strings (pgvector's binary vectors) ---------------------------------------------------------
#
# hnswlib has no Hamming or Jaccard space, and none is needed: packed 8 bits to a byte, a
# segment's bit column is a small matrix (n × d/8 bytes, 1/32 of its float32 vectors), and one
# XOR plus a hardware popcount (`np.bitwise_count`) per byte scores every row exactly at memory
# speed. An exact scan therefore answers `ORDER BY b <~> q LIMIT k` with perfect recall at a
# cost a graph search would not beat by much for the sizes a segment holds.


def pack_bits(chars: np.ndarray) -> np.ndarray:
    """(n, d) ASCII '0'/'1' bytes as (n, ceil(d/8)) packed bytes, first bit highest."""
    return np.packbits(chars == ord("1"), axis=1)


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """pgvector's hamming_distance per row of two packed bit matrices: differing bits, float64."""
    return np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=1, dtype=np.int64).astype(np.float64)


def jaccard_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """pgvector's jaccard_distance per row: 1 - |a & b| / (|a| + |b| - |a & b|), and 1 when the
    intersection is empty (two zero strings included)."""
    both = np.bitwise_count(np.bitwise_and(a, b)).sum(axis=1, dtype=np.int64)
    total = np.bitwise_count(a).sum(axis=1, dtype=np.int64) + \
        np.bitwise_count(b).sum(axis=1, dtype=np.int64) - both
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(both == 0, 1.0, 1.0 - both / total.astype(np.float64))


def binary_quantize(matrix: np.ndarray) -> np.ndarray:
    """pgvector's binary_quantize: one bit per element, set where the element is positive; as
    (n, d) ASCII '0'/'1' bytes (the text form bit strings are stored in)."""
    return np.where(np.asarray(matrix) > 0, ord("1"), ord("0")).astype(np.uint8)


# Sparse vectors (pgvector's sparsevec) -----------------------------------------------------------
#
# A batch of sparse vectors is CSR-shaped: per row a dimension count and a slice of (1-based
# index, float32 value) pairs, indices ascending. pgvector's distance loops walk both operands'
# elements in index order and add one term per index present in either (L2, L1) or in both
# (inner product) to a float running sum, then (L2, L1) add the second operand's elements past
# the first's last index in a loop GCC vectorizes like the dense ones (`_pgvector_sum`). The
# kernels below make those terms for every row at once (one merge of the sorted elements) and
# add them in pgvector's order, vectorized across rows, rounding as its x86-64 FMA build does:
# the inner product's `+= a * b` fused, L2's `+= a * a` for an element only in the first operand
# fused and its other terms not (as GCC contracts them there). Every distance equals pgvector's
# bit for bit (checked against it in the tests).


class SparseRows:
    """n sparse vectors: `dims` (n,), `offsets` (n + 1,) into `indices` (int32, 1-based) and
    `values` (float32), and `valid` (None: no NULLs)."""

    __slots__ = ("dims", "offsets", "indices", "values", "valid")

    def __init__(self, dims: np.ndarray, offsets: np.ndarray, indices: np.ndarray,
                 values: np.ndarray, valid: np.ndarray | None = None) -> None:
        self.dims = np.asarray(dims, np.int64)
        self.offsets = np.asarray(offsets, np.int64)
        self.indices = np.asarray(indices, np.int32)
        self.values = np.asarray(values, np.float32)
        self.valid = valid

    def __len__(self) -> int:
        return self.dims.shape[0]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def rows(self) -> np.ndarray:
        """The row of each stored element."""
        return np.repeat(np.arange(len(self)), self.lengths)

    def take(self, positions: np.ndarray) -> SparseRows:
        """The rows at `positions`, in that order."""
        positions = np.asarray(positions, np.int64)
        lengths = self.lengths[positions]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        starts = self.offsets[positions]
        gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        valid = None if self.valid is None else self.valid[positions]
        return SparseRows(self.dims[positions], offsets, self.indices[gather],
                          self.values[gather], valid)

    def repeat(self, n: int) -> SparseRows:
        """This one row n times (a constant operand against a column)."""
        return self.take(np.zeros(n, np.int64))


def _sparse_terms(a: SparseRows, b: SparseRows) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                         np.ndarray, np.ndarray, np.ndarray]:
    """The union of both operands' elements per row, in pgvector's loop order (row, index):
    (row, a value, b value, in a, in b, index) per union element (0 for a side without it)."""
    na, nb = a.values.size, b.values.size
    row = np.concatenate([a.rows, b.rows])
    index = np.concatenate([a.indices, b.indices]).astype(np.int64)
    side = np.concatenate([np.zeros(na, np.int8), np.ones(nb, np.int8)])
    value = np.concatenate([a.values, b.values])
    # One int64 key per element, (row, index, side) in order: each operand's keys ascend
    # already, so the stable sort (timsort) only merges two runs, in linear time.
    span = 2 * (int(max(a.dims.max(initial=0), b.dims.max(initial=0))) + 1)
    order = np.argsort(row * span + index * 2 + side, kind="stable")
    row, index, side, value = row[order], index[order], side[order], value[order]
    pair = np.zeros(row.size, bool)  # element k (of a) and k + 1 (of b) share row and index
    if row.size > 1:
        pair[:-1] = (row[1:] == row[:-1]) & (index[1:] == index[:-1])
    first = np.ones(row.size, bool)
    first[1:] = ~pair[:-1]
    starts = np.flatnonzero(first)
    in_a = side[starts] == 0
    matched = pair[starts]
    av = np.where(in_a, value[starts], np.float32(0))
    follow = np.minimum(starts + 1, max(row.size - 1, 0))
    bv = np.where(~in_a, value[starts], np.where(matched, value[follow] if row.size else av,
                                                  np.float32(0)))
    return row[starts], av.astype(np.float32), bv.astype(np.float32), in_a, ~in_a | matched, \
        index[starts]


def _sequential_sum(rows: np.ndarray, terms: np.ndarray, n: int) -> np.ndarray:
    """Per row, the terms added one by one in order, in the terms' precision."""
    out = np.zeros(n, terms.dtype)
    np.add.at(out, rows, terms)
    return out


def _sequential_fma(rows: np.ndarray, x: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Per row, float32 sum of x * y element after element, each step a fused multiply-add
    (the exact product rounded once with the sum)."""
    return _sequential_rounded(rows, x.astype(np.float64) * y, n)


def _sequential_rounded(rows: np.ndarray, terms: np.ndarray, n: int) -> np.ndarray:
    """Per row, a float32 running sum of float64 `terms` element after element, each step
    rounded to float once: a plain float addition for a term that is a float, a fused
    multiply-add for an exact product. `rows` is ascending; the loop runs over the position
    within the row, each step vectorized over the rows that have that many terms."""
    acc = np.zeros(n, np.float64)
    if rows.size == 0:
        return acc.astype(np.float32)
    starts = np.searchsorted(rows, np.arange(n))
    rank = np.arange(rows.size) - starts[rows]
    # Ranks fit int16 (rows hold at most 2 x 16,000 terms): NumPy's stable sort is a radix sort.
    by_rank = np.argsort(rank.astype(np.int16) if rank.size and rank.max() < 2**15 else rank,
                         kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(rank))])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        take = by_rank[lo:hi]
        r = rows[take]
        acc[r] = (acc[r] + terms[take]).astype(np.float32)
    return acc.astype(np.float32)


def _tail_sum(b: SparseRows, past: np.ndarray, init: np.ndarray, square: bool) -> np.ndarray:
    """pgvector's last loop of L2 (`square`) and L1: the elements of `b` past the first
    operand's last index (`past` marks them; they end each row), added to `init` in the order
    of its vectorized loop, rows grouped by how many there are."""
    out = np.asarray(init, np.float32).copy()
    rows = b.rows[past]
    counts = np.bincount(rows, minlength=len(b))
    values = b.values[past]
    starts = np.concatenate([[0], np.cumsum(counts)])
    for count in np.unique(counts):
        if count == 0:
            continue
        which = np.flatnonzero(counts == count)
        block = values[starts[which][:, None] + np.arange(count)]
        out[which] = _pgvector_sum(block, block, fma_tail=False, init=out[which]) if square \
            else _pgvector_sum(np.abs(block), None, fma_tail=False, init=out[which])
    return out


def _sparse_norms(v: SparseRows) -> np.ndarray:
    """pgvector's float sum of squares of each row's values (its vectorized norm loop, the
    same loop shape as the dense inner product: `_pgvector_sum`), rows grouped by length."""
    out = np.zeros(len(v), np.float32)
    lengths = v.lengths
    for length in np.unique(lengths):
        if length == 0:
            continue
        rows = np.flatnonzero(lengths == length)
        block = v.values[v.offsets[rows][:, None] + np.arange(length)]
        out[rows] = _pgvector_sum(block, block, fma_tail=False)
    return out


def sparse_distances(metric: Metric, a: SparseRows, b: SparseRows) -> np.ndarray:
    """pgvector's sparsevec distance of each row of `a` to the same row of `b` (float64; NaN
    for cosine with a zero vector). Dimensions must agree (checked by the caller)."""
    n = len(a)
    if metric is Metric.IP or metric is Metric.COSINE:
        row, av, bv, in_a, in_b, _ = _sparse_terms(a, b)
        both = in_a & in_b
        dots = _sequential_fma(row[both], av[both], bv[both], n)
        if metric is Metric.IP:
            return -dots.astype(np.float64)
        norms = _sparse_norms(a).astype(np.float64) * _sparse_norms(b).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = np.clip(dots.astype(np.float64) / np.sqrt(norms), -1.0, 1.0)
        return 1.0 - sim
    total = _l2_l1_sum(a, b, square=metric is Metric.L2).astype(np.float64)
    return total if metric is Metric.L1 else np.sqrt(total)


def _l2_l1_sum(a: SparseRows, b: SparseRows, square: bool) -> np.ndarray:
    """pgvector's float sum of squared (L2) or absolute (L1) differences per row pair: the
    merged loop over the first operand's elements, then the tail loop (`_tail_sum`)."""
    n = len(a)
    row, av, bv, in_a, in_b, index = _sparse_terms(a, b)
    last = np.full(n, -1, np.int64)  # the first operand's largest index per row
    has = a.lengths > 0
    last[has] = a.indices[a.offsets[1:][has] - 1]
    head = index <= last[row]
    diff = av - bv  # float, as pgvector: a missing side contributes its own value
    if square:
        only_a = in_a & ~in_b
        terms = np.where(only_a, diff.astype(np.float64) ** 2,  # contracted: exact product
                         (diff * diff).astype(np.float64))
    else:
        terms = np.abs(diff).astype(np.float64)
    total = _sequential_rounded(row[head], terms[head], n)
    past = b.indices.astype(np.int64) > last[b.rows]
    return _tail_sum(b, past, total, square)


def sparse_l2_squared(a: SparseRows, b: SparseRows) -> np.ndarray:
    """pgvector's sparsevec_l2_squared_distance per row pair."""
    return _l2_l1_sum(a, b, square=True).astype(np.float64)


def sparse_cmp(a: SparseRows, b: SparseRows) -> np.ndarray:
    """pgvector's sparsevec_cmp per row pair (-1, 0, 1): the first index below both dimension
    counts where the values differ (a missing element is 0) decides, else the dimensions."""
    row, av, bv, _in_a, _in_b, index = _sparse_terms(a, b)
    n = len(a)
    limit = np.minimum(a.dims, b.dims)
    differ = (av != bv) & (index <= limit[row])
    hits = np.flatnonzero(differ)
    sign = np.sign(a.dims - b.dims).astype(np.int64)
    if hits.size:
        first_rows, first = np.unique(row[hits], return_index=True)
        at = hits[first]
        sign[first_rows] = np.where(av[at] < bv[at], -1, 1)
    return sign[:n]


def sparse_l2_norms(v: SparseRows) -> np.ndarray:
    """pgvector's l2_norm(sparsevec): the square root of the double sum of squares."""
    return np.sqrt(_sequential_sum(v.rows, v.values.astype(np.float64) ** 2, len(v)))


def sparse_l2_normalize(v: SparseRows) -> SparseRows:
    """pgvector's l2_normalize(sparsevec): each value divided (in double) by the row's norm,
    rounded to float; a zero-norm row stays as it is; elements that become zero are dropped.
    Overflow is 22003 as pgvector's float_overflow_error."""
    norms = sparse_l2_norms(v)
    per = np.repeat(norms, v.lengths)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        out = np.where(per > 0, v.values.astype(np.float64) / per, v.values).astype(np.float32)
    if np.isinf(out).any():
        raise SqlVecError("value out of range: overflow", sqlstate="22003")
    keep = out != 0
    lengths = np.bincount(v.rows[keep], minlength=len(v)) if v.values.size else v.lengths
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return SparseRows(v.dims, offsets, v.indices[keep], out[keep], v.valid)
