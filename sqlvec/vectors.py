"""Vector metrics and exact distance kernels, matching pgvector's values.

| SQL  | value                 |
|------|-----------------------|
| <->  | Euclidean distance    |
| <=>  | 1 - cosine similarity |
| <#>  | -(a . b)              |
| <+>  | L1 distance           |

Which metrics an index answers is the index's business (its operator classes: storage/hnsw.py).

Kernels work on a whole contiguous float32 matrix at once, never a Python loop per row: BLAS
products rank by cosine and inner product, the direct form (in chunks) by L2 and L1. The final
top-k are always re-scored with the direct form in float64 accumulation.
"""

from __future__ import annotations

import enum

import numpy as np

from sqlvec.errors import DataException

# Rows scored per chunk by the direct (non-BLAS) kernels: bounds temporary memory.
_CHUNK_ROWS = 65536


class Metric(enum.Enum):
    """The distance functions pgvector defines, each with its operator; the index and the executor
    agree on them through this."""

    L2 = "l2"
    COSINE = "cosine"
    IP = "ip"  # negative inner product, pgvector's <#>
    L1 = "l1"

    @property
    def operator(self) -> str:
        return _OPERATORS[self]

    @classmethod
    def from_operator(cls, op: str) -> Metric:
        """The metric of a pgvector distance operator (`<->`, `<=>`, `<#>`, `<+>`)."""
        return {v: k for k, v in _OPERATORS.items()}[op]


_OPERATORS = {Metric.L2: "<->", Metric.COSINE: "<=>", Metric.IP: "<#>", Metric.L1: "<+>"}


def check_same_dims(a: int, b: int) -> None:
    """Refuse a distance or arithmetic between vectors of different dimensions, with pgvector's
    message."""
    if a != b:
        raise DataException(f"different vector dimensions {a} and {b}")


def distances(metric: Metric, matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Exact pgvector distance from every row of `matrix` (n, d) to `query` (d,), as float64."""
    matrix = np.asarray(matrix, dtype=np.float32)
    query = np.asarray(query, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError("matrix must be 2-D")
    check_same_dims(matrix.shape[1], query.shape[0])
    out = np.empty(matrix.shape[0], dtype=np.float64)
    for start in range(0, matrix.shape[0], _CHUNK_ROWS):
        block = matrix[start : start + _CHUNK_ROWS]
        out[start : start + block.shape[0]] = _direct(metric, block, query)
    return out


def paired_distances(metric: Metric, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Row-wise distance between two (n, d) matrices (e.g. `a <-> b` over two columns)."""
    left = np.asarray(left, dtype=np.float32)
    right = np.asarray(right, dtype=np.float32)
    check_same_dims(left.shape[1], right.shape[1])
    if metric is Metric.L2:
        diff = left - right
        return np.sqrt(np.einsum("ij,ij->i", diff, diff, dtype=np.float64))
    if metric is Metric.L1:
        return np.abs(left - right).sum(axis=1, dtype=np.float64)
    dots = np.einsum("ij,ij->i", left, right, dtype=np.float64)
    if metric is Metric.IP:
        return -dots
    norms = np.sqrt(np.einsum("ij,ij->i", left, left, dtype=np.float64)
                    * np.einsum("ij,ij->i", right, right, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.clip(dots / norms, -1.0, 1.0)
    return 1.0 - sim


def _direct(metric: Metric, block: np.ndarray, query: np.ndarray) -> np.ndarray:
    if metric is Metric.L2:
        diff = block - query
        return np.sqrt(np.einsum("ij,ij->i", diff, diff, dtype=np.float64))
    if metric is Metric.L1:
        return np.abs(block - query).sum(axis=1, dtype=np.float64)
    dots = block.astype(np.float64) @ query.astype(np.float64)
    if metric is Metric.IP:
        return -dots
    norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64)
                    * float(np.dot(query.astype(np.float64), query.astype(np.float64))))
    # pgvector: a zero vector has no direction, its cosine distance is NaN.
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.clip(dots / norms, -1.0, 1.0)
    return 1.0 - sim


def _ranking_scores(metric: Metric, matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Scores whose order is the metric's order. Inner products use one BLAS product; L2 and
    L1 use the direct form (chunked), because the expanded ||x||² - 2x·q + ||q||² loses every
    digit that separates points lying far from the origin."""
    if metric in (Metric.L1, Metric.L2):
        return distances(metric, matrix, query)
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
    """
    matrix = np.asarray(matrix, dtype=np.float32)
    query = np.asarray(query, dtype=np.float32)
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
    exact = _direct(metric, sub[cand], query)
    order = np.lexsort((cand, np.where(np.isnan(exact), np.inf, exact)))[:k]
    chosen = cand[order]
    rows = chosen if positions is None else positions[chosen]
    return rows.astype(np.int64), exact[order]


def top_k_batch(metric: Metric, matrix: np.ndarray, queries: np.ndarray, k: int,
                allowed: np.ndarray | None = None) -> np.ndarray:
    """Exact top-k row positions for many queries at once (one matrix product ranks them all).

    The BLAS pass over-selects candidates (64 + 4k per query) which are re-scored with the direct
    form; used where many exact answers are needed at once (index calibration, benchmarks)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    queries = np.asarray(queries, dtype=np.float32)
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
    sq = np.einsum("ij,ij->i", sub, sub)[:, None]
    block_size = max(1, min(64, (64 << 20) // max(1, 4 * sub.shape[0])))  # ≤ 64 MiB of scores
    for start in range(0, queries.shape[0], block_size):
        block = queries[start : start + block_size]
        dots = sub @ block.T  # (n, b)
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
            exact = _direct(metric, sub[c], q)
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
