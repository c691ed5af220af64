from __future__ import annotations

import platform

import numpy as np
import pytest

from sqlvec.errors import DataException
from sqlvec.vectors import (
    BIT_METRICS,
    Metric,
    SparseRows,
    distances,
    l2_normalize,
    paired_distances,
    sparse_cmp,
    sparse_distances,
    sparse_l2_normalize,
    sparse_l2_norms,
    top_k,
)
from tests.pgvector_here import skip_unless_pgvector_computes

METRICS = [m for m in Metric if m not in BIT_METRICS]  # the float vectors' metrics


def reference(metric: Metric, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise pgvector distance written directly from its definition, in float64."""
    a = a.astype(np.float64)
    b = np.broadcast_to(b.astype(np.float64), a.shape)
    if metric is Metric.L2:
        return np.sqrt(((a - b) ** 2).sum(axis=1))
    if metric is Metric.L1:
        return np.abs(a - b).sum(axis=1)
    if metric is Metric.IP:
        return -(a * b).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return 1.0 - np.clip(cos, -1.0, 1.0)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.normal(size=(3000, 24)).astype(np.float32), rng.normal(size=24).astype(np.float32)


@pytest.mark.parametrize("metric", METRICS)
def test_distances_match_definition(metric, data):
    matrix, query = data
    # pgvector sums in float32: equal to the float64 definition within float32 rounding.
    np.testing.assert_allclose(distances(metric, matrix, query), reference(metric, matrix, query),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_paired_distances_match_definition(metric, data):
    matrix, _ = data
    left, right = matrix[:1500], matrix[1500:]
    np.testing.assert_allclose(paired_distances(metric, left, right), reference(metric, left, right),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_top_k_is_exact(metric, data):
    matrix, query = data
    rows, dists = top_k(metric, matrix, query, 10)
    expected = np.argsort(reference(metric, matrix, query), kind="stable")[:10]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(dists, reference(metric, matrix[expected], query), rtol=1e-6)
    assert np.all(np.diff(dists) >= 0)


@pytest.mark.parametrize("metric", METRICS)
def test_top_k_with_mask_only_returns_allowed_rows(metric, data):
    matrix, query = data
    allowed = np.zeros(matrix.shape[0], bool)
    allowed[::37] = True
    rows, dists = top_k(metric, matrix, query, 5, allowed)
    assert allowed[rows].all()
    candidates = np.flatnonzero(allowed)
    ref = reference(metric, matrix[candidates], query)
    np.testing.assert_array_equal(rows, candidates[np.argsort(ref, kind="stable")[:5]])
    # Fewer allowed rows than k: every allowed row, nearest first.
    few = np.zeros(matrix.shape[0], bool)
    few[[3, 900, 2999]] = True
    rows, dists = top_k(metric, matrix, query, 10, few)
    assert sorted(rows.tolist()) == [3, 900, 2999]
    assert np.all(np.diff(dists) >= 0)
    # Nothing allowed: nothing returned.
    rows, dists = top_k(metric, matrix, query, 10, np.zeros(matrix.shape[0], bool))
    assert rows.size == 0 and dists.size == 0


def test_top_k_is_exact_far_from_the_origin():
    # Points whose squared norms are huge relative to their spread (e.g. un-centred features).
    rng = np.random.default_rng(3)
    base = np.full(16, 1000.0, dtype=np.float32)
    matrix = (base + rng.normal(scale=1e-2, size=(500, 16))).astype(np.float32)
    query = base.copy()
    rows, dists = top_k(Metric.L2, matrix, query, 20)
    expected = np.argsort(reference(Metric.L2, matrix, query), kind="stable")[:20]
    np.testing.assert_array_equal(rows, expected)


def test_cosine_zero_vectors_are_nan_and_rank_last():
    matrix = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32)
    query = np.array([1, 1, 0], dtype=np.float32)
    d = distances(Metric.COSINE, matrix, query)
    assert np.isnan(d[0]) and np.isnan(d[3])
    np.testing.assert_allclose(d[1:3], 1 - 1 / np.sqrt(2))
    rows, dists = top_k(Metric.COSINE, matrix, query, 4)
    assert rows.tolist()[:2] == [1, 2]
    assert sorted(rows.tolist()[2:]) == [0, 3]
    assert np.isnan(dists[2:]).all()
    # A zero query has no direction either.
    assert np.isnan(distances(Metric.COSINE, matrix, np.zeros(3, np.float32))).all()
    assert np.isnan(paired_distances(Metric.COSINE, matrix[:1], matrix[1:2]))[0]


def test_dimension_mismatch_is_22000():
    with pytest.raises(DataException) as info:
        distances(Metric.L2, np.zeros((2, 3), np.float32), np.zeros(4, np.float32))
    assert info.value.sqlstate == "22000"
    assert info.value.message == "different vector dimensions 3 and 4"
    with pytest.raises(DataException):
        top_k(Metric.L2, np.zeros((2, 3), np.float32), np.zeros(2, np.float32), 1)
    with pytest.raises(DataException):
        paired_distances(Metric.L2, np.zeros((2, 3), np.float32), np.zeros((2, 2), np.float32))


def test_l2_normalize():
    matrix = np.array([[3, 4], [0, 0], [-1, 0], [1e-20, 0]], dtype=np.float32)
    out = l2_normalize(matrix)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [0.6, 0.8], rtol=1e-7)
    np.testing.assert_array_equal(out[1], [0, 0])
    np.testing.assert_array_equal(out[2], [-1, 0])
    np.testing.assert_allclose(np.linalg.norm(out[[0, 2]], axis=1), 1.0, rtol=1e-6)
    rng = np.random.default_rng(0)
    m = rng.normal(size=(50, 9)).astype(np.float32)
    np.testing.assert_allclose(l2_normalize(m), m / np.linalg.norm(m, axis=1, keepdims=True),
                               rtol=1e-6)


def test_metric_names():
    assert [Metric.from_operator(m.operator) for m in METRICS] == METRICS
    assert {m.operator for m in METRICS} == {"<->", "<=>", "<#>", "<+>"}
    assert {m.operator for m in BIT_METRICS} == {"<~>", "<%>"}
    assert Metric.from_operator("<~>") is Metric.HAMMING


@pytest.mark.parametrize("metric", METRICS)
def test_a_vector_is_at_distance_zero_from_itself(metric):
    """pgvector clamps the cosine similarity: `e <=> e` is exactly 0 on every path."""
    rows = np.random.default_rng(3).normal(size=(200, 384)).astype(np.float32)
    if metric is Metric.IP:
        return
    assert (paired_distances(metric, rows, rows) == 0.0).all()
    for row in rows[:20]:
        positions, dists = top_k(metric, rows, row, 3)
        assert dists[0] == 0.0
        assert distances(metric, row[None, :], row)[0] == 0.0


@pytest.mark.parametrize("metric", METRICS)
def test_every_path_gives_the_same_value(metric, data):
    matrix, query = data
    positions, dists = top_k(metric, matrix, query, 50)
    np.testing.assert_array_equal(dists, distances(metric, matrix[positions], query))
    np.testing.assert_array_equal(
        dists, paired_distances(metric, matrix[positions], np.tile(query, (50, 1))))


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dim", [1, 8, 15, 16, 17, 24, 128, 257, 300])
def test_a_few_rows_sum_as_many_rows_do(metric, dim):
    """A re-rank's few rows against one query take a layout of their own: the same bits as
    the same rows among many, with zeros, signed zeros, tiny, huge and repeated values."""
    rng = np.random.default_rng(dim)
    scale = rng.choice([1e-30, 1e-20, 1e-3, 1.0, 1e10, 1e19], size=(70, 1))
    rows = (rng.normal(size=(70, dim)) * scale).astype(np.float32)
    rows[0], rows[1], rows[2, : dim // 2] = 0.0, -0.0, -0.0
    query = rows[5].copy()
    rows[6] = query
    for q in (query, np.zeros(dim, np.float32), -query):
        with np.errstate(all="ignore"):
            many = distances(metric, np.tile(rows, (3, 1)), q)[:70]
            for n in (1, 2, 10, 64):
                assert distances(metric, rows[:n], q).tobytes() == many[:n].tobytes()


def test_small_integer_vectors_are_exact():
    a = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    b = np.array([[3, 2, 1], [4, 5, 6]], np.float32)
    assert paired_distances(Metric.L2, a, b).tolist() == [np.sqrt(8.0), 0.0]
    assert paired_distances(Metric.IP, a, b).tolist() == [-10.0, -77.0]
    assert paired_distances(Metric.L1, a, b).tolist() == [4.0, 0.0]
    assert paired_distances(Metric.COSINE, a, b).tolist() == [1 - 10 / np.sqrt(14 * 14), 0.0]


# Against the real pgvector -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pgvector(tmp_path_factory):
    """A PostgreSQL with pgvector (the pgserver package), or skip."""
    pgserver = pytest.importorskip("pgserver")
    skip_unless_pgvector_computes()
    psycopg = pytest.importorskip("psycopg")
    directory = tmp_path_factory.mktemp("pgvector")
    server = pgserver.get_server(str(directory), cleanup_mode="stop")
    try:
        conn = psycopg.connect(server.get_uri(), autocommit=True)
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            pytest.skip(f"pgvector is not available: {exc}")
        yield conn
        conn.close()
    finally:
        server.cleanup()


def _text(v: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


@pytest.mark.parametrize("dim", [1, 3, 7, 8, 15, 16, 17, 31, 100, 384, 1536])
def test_distances_equal_pgvectors_bit_for_bit(pgvector, dim):
    """pgvector as GCC builds it for x86-64 with FMA (pgserver's build): the same float32 sums in
    the same order give the same bits."""
    rng = np.random.default_rng(dim)
    left = rng.normal(size=(4, dim)).astype(np.float32)
    right = rng.normal(size=(4, dim)).astype(np.float32)
    right[0] = left[0]  # a vector and itself
    metrics = [Metric.L2, Metric.IP, Metric.COSINE, Metric.L1]
    for a, b in zip(left, right):
        sql = "SELECT " + ", ".join(f"%s::vector {m.operator} %s::vector" for m in metrics)
        want = pgvector.execute(sql, (_text(a), _text(b)) * len(metrics)).fetchone()
        got = [paired_distances(m, a[None, :], b[None, :])[0] for m in metrics]
        if not _X86_FMA:  # pgvector's other builds sum in another order: equal to float32 rounding
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
            continue
        assert got == list(want)
        assert [distances(m, a[None, :], b)[0] for m in metrics] == list(want)


def _cpu_has_fma() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " fma" in line for line in f)
    except OSError:
        return False


_X86_FMA = platform.machine() in ("x86_64", "AMD64") and _cpu_has_fma()


@pytest.mark.parametrize("dim", [1, 3, 7, 8, 9, 15, 16, 17, 31, 100, 384, 1536])
def test_halfvec_distances_equal_pgvectors_bit_for_bit(pgvector, dim):
    """float16 operands select pgvector's halfvec kernels (the F16C loops x86-64 CPUs with F16C
    and FMA run): equal bits, for every metric, by rows and against one query."""
    rng = np.random.default_rng(100 + dim)
    left = rng.normal(size=(4, dim)).astype(np.float16)
    right = rng.normal(size=(4, dim)).astype(np.float16)
    right[0] = left[0]
    metrics = [Metric.L2, Metric.IP, Metric.COSINE, Metric.L1]
    for a, b in zip(left, right):
        sql = "SELECT " + ", ".join(f"%s::halfvec {m.operator} %s::halfvec" for m in metrics)
        want = pgvector.execute(sql, (_text(a), _text(b)) * len(metrics)).fetchone()
        got = [paired_distances(m, a[None, :], b[None, :])[0] for m in metrics]
        if not _X86_FMA:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
            continue
        assert got == list(want)
        assert [distances(m, a[None, :], b)[0] for m in metrics] == list(want)


def test_halfvec_top_k_ranks_and_scores_as_pgvector():
    """top_k over a float16 matrix: the exact winners (against a float64 scan of the widened
    halves) with halfvec distances."""
    rng = np.random.default_rng(8)
    matrix = rng.normal(size=(5000, 24)).astype(np.float16)
    query = rng.normal(size=24).astype(np.float16)
    for metric in METRICS:
        rows, dists = top_k(metric, matrix, query, 10)
        exact = distances(metric, matrix, query)
        assert rows.tolist() == np.lexsort((np.arange(5000), exact))[:10].tolist()
        assert dists.tolist() == exact[rows].tolist()


# Sparse vectors (sparsevec) ----------------------------------------------------------------------


def _random_sparse(rng: np.random.Generator, n: int, dim: int, max_nnz: int) -> np.ndarray:
    """n dense float32 rows of which each holds 0..max_nnz non-zeros of varied magnitude."""
    dense = np.zeros((n, dim), np.float32)
    for i in range(n):
        k = int(rng.integers(0, max_nnz + 1))
        cols = rng.choice(dim, k, replace=False)
        dense[i, cols] = (rng.standard_normal(k) * 10 ** rng.uniform(-2, 2, k)).astype(np.float32)
    return dense


def _sparse_rows(dense: np.ndarray) -> SparseRows:
    rows, cols = np.nonzero(dense)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=dense.shape[0]))])
    return SparseRows(np.full(dense.shape[0], dense.shape[1]), offsets, cols + 1,
                      dense[rows, cols])


@pytest.mark.parametrize("metric", METRICS)
def test_sparse_distances_match_definition(metric):
    rng = np.random.default_rng(21)
    a, b = _random_sparse(rng, 400, 120, 40), _random_sparse(rng, 400, 120, 40)
    got = sparse_distances(metric, _sparse_rows(a), _sparse_rows(b))
    want = reference(metric, a, b)
    both = ~np.isnan(want)
    np.testing.assert_allclose(got[both], want[both], rtol=1e-5, atol=1e-5)
    assert np.isnan(got[~both]).all()  # cosine with a zero vector


def test_sparse_rows_take_repeat_and_compare():
    rng = np.random.default_rng(4)
    dense = _random_sparse(rng, 50, 30, 8)
    rows = _sparse_rows(dense)
    picked = rows.take(np.array([7, 3, 3]))
    np.testing.assert_array_equal(picked.lengths, rows.lengths[[7, 3, 3]])
    one = rows.take(np.array([5])).repeat(50)
    assert (sparse_cmp(rows.take(np.full(50, 5)), one) == 0).all()
    # pgvector's order is the dense vectors' order element by element, then the dimensions.
    signs = sparse_cmp(rows, one)
    for i in range(50):
        diff = np.flatnonzero(dense[i] != dense[5])
        want = 0 if diff.size == 0 else (-1 if dense[i, diff[0]] < dense[5, diff[0]] else 1)
        assert signs[i] == want


def test_sparse_l2_normalize_and_norms():
    rows = _sparse_rows(np.array([[3, 0, 4], [0, 0, 0], [1e-45, 0, 1e30]], np.float32))
    np.testing.assert_allclose(sparse_l2_norms(rows), [5, 0, 1e30], rtol=1e-7)
    out = sparse_l2_normalize(rows)
    np.testing.assert_array_equal(out.lengths, [2, 0, 1])  # an element that becomes 0 is dropped
    np.testing.assert_allclose(out.values, [0.6, 0.8, 1.0], rtol=1e-7)


@pytest.mark.parametrize("seed", [1, 2])
def test_sparse_distances_equal_pgvectors_bit_for_bit(pgvector, seed):
    """pgvector's x86-64 FMA build: the merged loops, the contracted products and the
    vectorized tail loop of L2 and L1 give the same bits here."""
    from sqlvec.types import SparseVector, format_sparsevec

    rng = np.random.default_rng(seed)
    a, b = _random_sparse(rng, 150, 200, 60), _random_sparse(rng, 150, 200, 60)
    b[0] = a[0]

    def text(row):
        idx = np.flatnonzero(row)
        return format_sparsevec(SparseVector(row.size, (idx + 1).astype(np.int32), row[idx]))

    metrics = [Metric.L2, Metric.IP, Metric.COSINE, Metric.L1]
    want = np.array(pgvector.execute(
        "SELECT " + ", ".join(f"x::sparsevec {m.operator} y::sparsevec" for m in metrics)
        + " FROM unnest(%s::text[], %s::text[]) AS u(x, y)",
        ([text(r) for r in a], [text(r) for r in b])).fetchall(), dtype=np.float64)
    ra, rb = _sparse_rows(a), _sparse_rows(b)
    for j, metric in enumerate(metrics):
        got = sparse_distances(metric, ra, rb)
        if not _X86_FMA:
            np.testing.assert_allclose(got, want[:, j], rtol=1e-5, atol=1e-6)
            continue
        same = (got == want[:, j]) | (np.isnan(got) & np.isnan(want[:, j]))
        assert same.all(), (metric, np.flatnonzero(~same)[:5])
