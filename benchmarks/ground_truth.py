"""Exact neighbours and recall@10 against them: the figure every QPS comparison stands beside,
since a graph search is only as fast as the share of true neighbours it is allowed to miss."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def exact_top10(vectors: np.ndarray, queries: np.ndarray, block: int = 100) -> np.ndarray:
    """Row numbers of each query's 10 nearest vectors by L2 (NumPy brute force, unordered),
    `block` queries at a time so the distance matrix stays small."""
    norms = (vectors * vectors).sum(axis=1)
    parts = []
    for start in range(0, len(queries), block):
        d = norms[None, :] - 2 * queries[start:start + block] @ vectors.T
        parts.append(np.argpartition(d, 10, axis=1)[:, :10])
    return np.concatenate(parts)


def recall_at_10(found: Iterable[tuple[int, Sequence[int]]], truth: np.ndarray) -> float:
    """Mean share of the true 10 neighbours among the ids returned, over (query number, ids)
    pairs."""
    return float(np.mean([len(set(ids) & set(truth[i].tolist())) / 10 for i, ids in found]))
