"""Inverted lists (sparse_index.py): exact top-k for every sparsevec metric against the merge
kernels, filters, NULL rows, dimension errors, the file format and its checks."""

from __future__ import annotations

import numpy as np
import pytest

from sqlvec.errors import DataCorrupted, DataException
from sqlvec.storage.sparse_index import SparseInvertedIndex, SparseParams, sparse_top_k
from sqlvec.vectors import Metric, SparseRows

DIMS = 300


def rows_of(n: int = 2000, nnz: int = 12, seed: int = 5) -> SparseRows:
    rng = np.random.default_rng(seed)
    indices = np.concatenate([np.sort(rng.choice(np.arange(1, DIMS + 1), nnz, replace=False))
                              for _ in range(n)])
    values = rng.standard_normal(n * nnz).astype(np.float32)
    return SparseRows(np.full(n, DIMS), np.arange(n + 1) * nnz, indices, values)


def one(indices, values, dims: int = DIMS) -> SparseRows:
    return SparseRows(np.array([dims]), np.array([0, len(indices)]), np.array(indices),
                      np.array(values, np.float32))


QUERY = one([3, 17, 40, 41, 200, 299], [0.5, -1.25, 2.0, 0.75, -0.5, 1.0])


@pytest.mark.parametrize("metric", [Metric.L2, Metric.IP, Metric.COSINE, Metric.L1])
def test_search_equals_the_exact_merge_kernels(metric):
    rows = rows_of()
    valid = np.ones(len(rows), bool)
    valid[::11] = False
    index = SparseInvertedIndex.build(rows, SparseParams(metric), valid=valid)
    got = index.search(QUERY, 20, ef=0)
    want = sparse_top_k(metric, rows, QUERY, 20, valid)
    assert got[0].tolist() == want[0].tolist()
    assert got[1].tolist() == want[1].tolist()  # pgvector's values, bit for bit
    allowed = np.zeros(len(rows), bool)
    allowed[5:60:4] = True  # 14 rows, one NULL: fewer than k
    found, widened = index.search_filtered(QUERY, 20, knob=0, allowed=allowed, settings=None)
    assert widened == 0
    assert found.tolist() == sparse_top_k(metric, rows, QUERY, 20, allowed & valid)[0].tolist()


def test_rows_sharing_no_dimension_with_the_query_are_still_ranked():
    rows = SparseRows(np.full(3, DIMS), np.array([0, 1, 2, 3]), np.array([1, 2, 250]),
                      np.array([0.1, 5.0, 0.2], np.float32))
    index = SparseInvertedIndex.build(rows, SparseParams(Metric.L2))
    # the query shares a dimension with row 1 only; rows 0 and 2 are nearer by norms alone
    pos, dist = index.search(one([2], [0.1]), 3, ef=0)
    assert pos.tolist() == [0, 2, 1]
    assert dist.tolist() == sparse_top_k(Metric.L2, rows, one([2], [0.1]), 3, None)[1].tolist()


def test_a_query_of_other_dimensions_is_refused_as_pgvector_does():
    index = SparseInvertedIndex.build(rows_of(n=50), SparseParams(Metric.IP))
    with pytest.raises(DataException, match=f"different sparsevec dimensions {DIMS} and 10"):
        index.search(one([1], [1.0], dims=10), 5, ef=0)


def test_saved_file_round_trips_and_damage_is_detected(tmp_path):
    rows = rows_of(n=300)
    index = SparseInvertedIndex.build(rows, SparseParams(Metric.COSINE))
    path = tmp_path / "seg.sparse"
    crc = index.save(path)
    loaded = SparseInvertedIndex.load(path, SparseParams(Metric.COSINE), DIMS, expected_crc=crc)
    assert [a.tolist() for a in loaded.search(QUERY, 10, ef=0)] == \
        [a.tolist() for a in index.search(QUERY, 10, ef=0)]
    with pytest.raises(DataCorrupted, match="another index definition"):
        SparseInvertedIndex.load(path, SparseParams(Metric.L2), DIMS, expected_crc=crc)
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataCorrupted, match="checksum"):
        SparseInvertedIndex.load(path, SparseParams(Metric.COSINE), DIMS, expected_crc=crc)
    path.write_bytes(bytes(raw[:-4]))
    with pytest.raises(DataCorrupted, match="truncated"):
        SparseInvertedIndex.load(path, SparseParams(Metric.COSINE), DIMS)
