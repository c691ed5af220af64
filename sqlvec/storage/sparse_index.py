"""Inverted lists: the per-segment structure of indexes on sparsevec columns
(`sparsevec_l2_ops`, `sparsevec_ip_ops`, `sparsevec_cosine_ops`, `sparsevec_l1_ops`).

Why not a graph: hnswlib has only dense float spaces, and densifying sparse vectors is
impossible in general (up to 10^9 dimensions) and wasteful when rows hold a few dozen non-zeros
out of thousands. Why inverted lists: every metric pgvector has for sparsevec decomposes into
per-row terms known at build time plus a sum over the dimensions the row shares with the query,

    -ip(r, q)        = -Σ_shared r_i q_i
    cosine(r, q)     = 1 - Σ_shared r_i q_i / (‖r‖ ‖q‖)
    l2(r, q)²        = ‖r‖² + ‖q‖² - 2 Σ_shared r_i q_i
    l1(r, q)         = ‖r‖₁ + ‖q‖₁ - Σ_shared (|r_i| + |q_i| - |r_i - q_i|)

so a query touches only the lists of its own non-zero dimensions (one vectorized scatter-add
per query element into a per-row accumulator) instead of merging every row's elements with its
own, and every row is scored exactly (rows sharing no dimension are scored by their norms
alone): recall 1, exactly k rows under any filter. The accumulated sums are float64 in a
different order from pgvector's loops, so the best max(2k, k + 32) rows are re-scored with the
exact sparse kernels (sqlvec.vectors), which return pgvector's values bit for bit.

Layout (CSR by dimension): `keys` the distinct 1-based dimensions present (ascending), `offsets`
into `rows` (row positions, ascending within a list) and `values` (float32), plus each row's
squared L2 norm and L1 norm (float64) and the segment's rows as they are (`SparseRows`) for the
re-scoring. Implements `VectorIndex` and `FilteringIndex` (the mask is applied when choosing
the best rows, so a filtered search never widens or falls short); no knob, no calibration.

On-disk file (little-endian)
============================

| offset | type          | field                                               |
|--------|---------------|-----------------------------------------------------|
| 0      | 8 bytes       | magic `SQVSPR01`                                    |
| 8      | uint32        | metric code (1 l2, 2 cosine, 3 ip, 4 l1)            |
| 12     | uint32        | dimensions of the column                            |
| 16     | uint64        | rows n                                              |
| 24     | uint64        | stored elements e                                   |
| 32     | uint64        | distinct dimensions m                               |
| 40     | uint8[n]      | 1 where the row is indexed (not NULL)               |
|        | int64[n+1]    | the rows' element offsets (row-major, as stored)    |
|        | int32[e]      | the rows' element dimensions (1-based)              |
|        | float32[e]    | the rows' element values                            |
|        | int32[n]      | the rows' dimension counts                          |

The inverted lists and norms are derived from these at load (one sort): the file holds only what
the segment holds, checked by its CRC-32.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sqlvec.errors import DataCorrupted, DataException, FeatureNotSupported
from sqlvec.storage.fsutil import atomic_write
from sqlvec.storage.vector_index import (
    ExactScanIndex,
    IndexBuildCancelled,
    IndexOption,
    IndexSetting,
    OpClass,
    corrupted_index_file,
    read_index_file,
)
from sqlvec.vectors import Metric, SparseRows, sparse_distances

_MAGIC = b"SQVSPR01"
_HEADER = struct.Struct("<8sIIQQQ")
_METRIC_CODES = {Metric.L2: 1, Metric.COSINE: 2, Metric.IP: 3, Metric.L1: 4}


@dataclass(frozen=True)
class SparseParams:
    """The metric of an index on a sparsevec column (the method's options do not apply)."""

    metric: Metric

    def __post_init__(self) -> None:
        if self.metric not in _METRIC_CODES:
            raise FeatureNotSupported(f"sparsevec indexes do not support {self.metric.name} "
                                      "distance")


class SparseInvertedIndex(ExactScanIndex):
    """Inverted lists of one sealed segment's sparse vectors, scored exactly."""

    access_method = "inverted"  # the structure's name in EXPLAIN (not a CREATE INDEX method)
    am_oid = 0
    opclasses: tuple[OpClass, ...] = ()
    options: tuple[IndexOption, ...] = ()
    settings: tuple[IndexSetting, ...] = ()

    def __init__(self, params: SparseParams, dims: int, rows: SparseRows,
                 valid: np.ndarray) -> None:
        self._params = params
        self._dims = dims
        self._rows = rows
        self._valid = valid
        self._indexed = int(np.count_nonzero(valid))
        row_of = rows.rows
        order = np.lexsort((row_of, rows.indices))  # by dimension, then row
        by_dim = rows.indices[order]
        self._keys, starts = np.unique(by_dim, return_index=True)
        self._offsets = np.append(starts, by_dim.size).astype(np.int64)
        self._list_rows = row_of[order].astype(np.int64)
        self._list_values = rows.values[order].astype(np.float64)
        n = len(rows)
        squares = rows.values.astype(np.float64) ** 2
        self._sq_norms = np.bincount(row_of, weights=squares, minlength=n) if n else np.zeros(0)
        self._l1_norms = (np.bincount(row_of, weights=np.abs(rows.values.astype(np.float64)),
                                      minlength=n) if n else np.zeros(0))
        self.calibration: list[tuple[int, float]] = []

    # Build ----------------------------------------------------------------------------------

    @classmethod
    def make_params(cls, metric: Metric, options: Mapping[str, int]) -> SparseParams:
        """The metric alone: the method's options (m, lists, ...) shape no such structure."""
        return SparseParams(metric)

    @classmethod
    def build(cls, vectors: SparseRows, params: SparseParams, *,
              valid: np.ndarray | None = None, num_threads: int = 0,
              progress: Callable[[int, int], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> SparseInvertedIndex:
        """Invert the segment's rows (NULL rows are kept out of the lists)."""
        if should_stop is not None and should_stop():
            raise IndexBuildCancelled("sparsevec index build cancelled")
        n = len(vectors)
        mask = np.ones(n, np.bool_) if valid is None else np.asarray(valid, np.bool_).copy()
        if vectors.valid is not None:
            mask &= np.asarray(vectors.valid, np.bool_)
        rows = vectors
        if not mask.all():  # NULL rows: no elements (their stored lists may be anything)
            lengths = np.where(mask, vectors.lengths, 0)
            keep = np.repeat(mask, vectors.lengths)
            rows = SparseRows(np.where(mask, vectors.dims, 0),
                              np.concatenate([[0], np.cumsum(lengths)]),
                              vectors.indices[keep], vectors.values[keep])
        dims = int(rows.dims[mask].max()) if mask.any() else 0
        index = cls(params, dims, SparseRows(rows.dims, rows.offsets, rows.indices, rows.values),
                    mask)
        if progress is not None:
            progress(n, n)
        return index

    # Persistence ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> int:
        """Write the index atomically (temp file, fsync, rename); return its CRC-32."""
        r = self._rows
        n = len(r)
        body = b"".join((
            _HEADER.pack(_MAGIC, _METRIC_CODES[self._params.metric], self._dims, n,
                         r.values.size, self._keys.size),
            self._valid.astype(np.uint8).tobytes(), r.offsets.astype("<i8").tobytes(),
            r.indices.astype("<i4").tobytes(), r.values.astype("<f4").tobytes(),
            r.dims.astype("<i4").tobytes()))
        atomic_write(path, body)
        return zlib.crc32(body)

    @classmethod
    def load(cls, path: str | os.PathLike[str], params: SparseParams, dim: int, *,
             expected_crc: int | None = None) -> SparseInvertedIndex:
        """Read a file written by `save`, checking its CRC first when the manifest has one."""
        path = Path(path)
        data = read_index_file(path, "sparsevec", _HEADER.size, expected_crc)
        magic, code, dims, n, elements, _keys = _HEADER.unpack_from(data)
        if magic != _MAGIC or code != _METRIC_CODES[params.metric]:
            raise _corrupt(path, "it was built for another index definition")
        sizes = (n, (n + 1) * 8, elements * 4, elements * 4, n * 4)
        if _HEADER.size + sum(sizes) != len(data):
            raise _corrupt(path, "its header is inconsistent or the file is truncated")
        parts, at = [], _HEADER.size
        for size, dtype in zip(sizes, ("u1", "<i8", "<i4", "<f4", "<i4")):
            parts.append(np.frombuffer(data, dtype, size // np.dtype(dtype).itemsize, at))
            at += size
        valid, offsets, indices, values, row_dims = parts
        if offsets[0] != 0 or offsets[-1] != elements or np.any(np.diff(offsets) < 0):
            raise _corrupt(path, "its row offsets are inconsistent")
        rows = SparseRows(row_dims.astype(np.int64), offsets.astype(np.int64),
                          indices.astype(np.int32), values.astype(np.float32))
        return cls(params, dims, rows, valid.astype(np.bool_))

    # Search ---------------------------------------------------------------------------------

    def search(self, query: SparseRows, k: int, *, ef: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The exact k nearest rows: (positions, pgvector distances), nearest first, ties by
        position. `query` is one sparse vector (a SparseRows of one row)."""
        mask = self._valid if allowed is None else self._valid & allowed
        candidates = np.flatnonzero(mask)
        k = min(int(k), candidates.size)
        if k <= 0:
            return np.empty(0, np.int64), np.empty(0)
        differ = mask & (self._rows.dims != int(query.dims[0]))
        if differ.any():  # pgvector's error for the first row scored
            at = int(np.argmax(differ))
            raise DataException(f"different sparsevec dimensions {int(self._rows.dims[at])} "
                                f"and {int(query.dims[0])}")
        scores = self.scores(query)[candidates]
        scores = np.where(np.isnan(scores), np.inf, scores)
        pool = min(candidates.size, max(2 * k, k + 32))
        if pool < candidates.size:
            chosen = np.argpartition(scores, pool - 1)[:pool]
            kth = scores[chosen].max()
            chosen = np.flatnonzero(scores <= kth)  # every tie at the pool's edge
        else:
            chosen = np.arange(candidates.size)
        positions = candidates[chosen]
        exact = sparse_distances(self._params.metric, self._rows.take(positions),
                                 query.repeat(positions.size))
        order = np.lexsort((positions, np.where(np.isnan(exact), np.inf, exact)))[:k]
        return positions[order].astype(np.int64), exact[order]

    def search_filtered(self, query: SparseRows, k: int, *, knob: int, allowed: np.ndarray,
                        settings: Mapping[str, str] | None) -> tuple[np.ndarray, int]:
        """A filtered search: the mask applied when choosing the rows, never widened."""
        return self.search(query, k, ef=knob, allowed=np.asarray(allowed, np.bool_))[0], 0

    def scores(self, query: SparseRows) -> np.ndarray:
        """Every row's distance to `query` from the inverted lists (float64, accumulated in
        another order than pgvector's: a ranking, re-scored exactly by `search`)."""
        n = len(self._rows)
        metric = self._params.metric
        q_idx = query.indices[query.offsets[0]:query.offsets[1]]
        q_val = query.values[query.offsets[0]:query.offsets[1]].astype(np.float64)
        acc = np.zeros(n, np.float64)
        at = np.searchsorted(self._keys, q_idx)
        for slot, i, v in zip(at, q_idx, q_val):
            if slot >= self._keys.size or self._keys[slot] != i:
                continue
            a, b = self._offsets[slot], self._offsets[slot + 1]
            rows, values = self._list_rows[a:b], self._list_values[a:b]
            # rows are distinct within a list, so a fancy-indexed add is exact
            if metric is Metric.L1:
                acc[rows] += np.abs(values) + abs(v) - np.abs(values - v)
            else:
                acc[rows] += values * v
        if metric is Metric.IP:
            return -acc
        if metric is Metric.COSINE:
            norms = np.sqrt(self._sq_norms * float(q_val @ q_val))
            with np.errstate(invalid="ignore", divide="ignore"):
                return 1.0 - np.clip(acc / norms, -1.0, 1.0)
        if metric is Metric.L1:
            return self._l1_norms + float(np.abs(q_val).sum()) - acc
        return np.sqrt(np.maximum(self._sq_norms + float(q_val @ q_val) - 2.0 * acc, 0.0))

    def explain(self, knob: int, estimated_recall: float | None) -> str:
        """EXPLAIN's text: what the scan does."""
        return (f"exact inverted-list scan of {self._indexed} rows "
                f"({self._keys.size} dimensions, {self._list_rows.size} entries)")

    # Introspection --------------------------------------------------------------------------

    @property
    def valid(self) -> np.ndarray:
        return self._valid

    @property
    def rows(self) -> SparseRows:
        return self._rows

    @property
    def indexed_count(self) -> int:
        return self._indexed

    @property
    def memory_bytes(self) -> int:
        """Resident bytes of the structure's arrays (what `sqlvec_indexes` shows)."""
        r = self._rows
        return int(self._keys.nbytes + self._offsets.nbytes + self._list_rows.nbytes
                   + self._list_values.nbytes + self._sq_norms.nbytes + self._l1_norms.nbytes
                   + r.offsets.nbytes + r.indices.nbytes + r.values.nbytes + r.dims.nbytes
                   + self._valid.nbytes)

    def __repr__(self) -> str:
        return (f"SparseInvertedIndex({self._params.metric.name}, dims={self._dims}, "
                f"indexed={self._indexed})")


def sparse_top_k(metric: Metric, rows: SparseRows, query: SparseRows, k: int,
                 mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest of `rows` (among `mask`) by merging each row's elements with the
    query's (a segment without an index: the growing one, or `sqlvec.exact`)."""
    candidates = np.arange(len(rows)) if mask is None else np.flatnonzero(mask)
    if rows.valid is not None:
        candidates = candidates[np.asarray(rows.valid, np.bool_)[candidates]]
    k = min(int(k), candidates.size)
    if k <= 0:
        return np.empty(0, np.int64), np.empty(0)
    differ = rows.dims[candidates] != int(query.dims[0])
    if differ.any():
        at = candidates[int(np.argmax(differ))]
        raise DataException(f"different sparsevec dimensions {int(rows.dims[at])} and "
                            f"{int(query.dims[0])}")
    exact = sparse_distances(metric, rows.take(candidates), query.repeat(candidates.size))
    order = np.lexsort((candidates, np.where(np.isnan(exact), np.inf, exact)))[:k]
    return candidates[order].astype(np.int64), exact[order]


def _corrupt(path: Path, reason: str) -> DataCorrupted:
    return corrupted_index_file("sparsevec", path, reason)
