"""Nearest-neighbour search over halfvec columns through SQL: HNSW with the halfvec operator
classes against exact ground truth (recall@10 at defaults, exactly k rows under filters), the
distances of the winners equal to pgvector's halfvec arithmetic, storage in float16, and the
operator classes hnswlib cannot serve refused with 0A000.

One database of 20k clustered 32-d vectors in 2 sealed segments plus a growing segment is built
once for the module."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.datasets import Clustered
from sqlvec.database import Database
from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.vectors import Metric, distances
from tests.sqlvec.conftest import segment_per_load

N, DIM, K = 20_000, 32, 10
SEAL = 10_000
QUERIES = 50
OPS = {Metric.L2: "<->", Metric.COSINE: "<=>", Metric.IP: "<#>"}
OPCLASS = {Metric.L2: "halfvec_l2_ops", Metric.COSINE: "halfvec_cosine_ops",
           Metric.IP: "halfvec_ip_ops"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = Clustered(N + 1_000, DIM, clusters=50, seed=7)
    vectors = data.all().astype(np.float16)
    cats = np.random.default_rng(3).integers(0, 100, N + 1_000).astype(np.int32)
    path = tmp_path_factory.mktemp("halfvec")
    db = Database.open(str(path),
                       options=segment_per_load(SEAL))
    s = db.connect()
    s.execute_one(f"CREATE TABLE items (id bigint PRIMARY KEY, cat int, emb halfvec({DIM}))")

    def rows(lo, hi):
        return pa.table({
            "id": np.arange(lo, hi, dtype=np.int64), "cat": cats[lo:hi],
            "emb": pa.FixedSizeListArray.from_arrays(pa.array(vectors[lo:hi].ravel()), DIM)})

    for lo in range(0, N, SEAL):
        s.copy_in("items", None, rows(lo, lo + SEAL))
    for metric, opclass in OPCLASS.items():
        s.execute_one(f"CREATE INDEX items_{metric.value} ON items USING hnsw (emb {opclass})")
    s.copy_in("items", None, rows(N, N + 1_000))  # the growing segment, searched exactly
    queries = data.queries(QUERIES, seed=5).astype(np.float16)
    yield {"db": db, "path": path, "s": s, "vectors": vectors, "cats": cats, "queries": queries}
    db.close()


def truth(env, metric: Metric, q: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.flatnonzero(mask)
    d = distances(metric, env["vectors"][ids], q)  # float16 operands: pgvector's halfvec kernels
    order = np.lexsort((ids, d))[:K]
    return ids[order], d[order]


def search(env, metric: Metric, q: np.ndarray, where: str = "", params: tuple = ()):
    sql = f"SELECT id, emb {OPS[metric]} $1 FROM items {where} ORDER BY emb {OPS[metric]} $1 " \
          f"LIMIT {K}"
    s = env["s"]
    rows = list(s.run(s.prepare(sql), [q.astype(float).tolist(), *params]).rows())
    return [r[0] for r in rows], [r[1] for r in rows]


def test_plan_uses_the_halfvec_indexes(env):
    lines = [r[0] for r in env["s"].execute_one(
        "EXPLAIN SELECT id FROM items ORDER BY emb <-> $1 LIMIT 10",
        [np.zeros(DIM).tolist()]).rows()]
    assert any("Segments: 3 (1 exact, 2 hnsw)" in line for line in lines), lines


@pytest.mark.parametrize("metric", list(OPS))
def test_recall_at_10_at_defaults_and_exact_distances(env, metric):
    recalls = []
    for q in env["queries"]:
        want, want_d = truth(env, metric, q, np.ones(N + 1_000, bool))
        got, got_d = search(env, metric, q)
        assert len(got) == K
        recalls.append(len(set(got) & set(want.tolist())) / K)
        # Every distance returned is pgvector's halfvec distance of that row, to the last bit.
        assert got_d == distances(metric, env["vectors"][got], q).tolist()
    assert np.mean(recalls) >= 0.95


@pytest.mark.parametrize("cat", [1, 50])
def test_filtered_queries_return_exactly_k(env, cat):
    mask = env["cats"] < cat
    for q in env["queries"][:20]:
        want, _ = truth(env, Metric.L2, q, mask)
        got, _ = search(env, Metric.L2, q, "WHERE cat < $2", (cat,))
        assert len(got) == min(K, want.size)
        assert all(mask[i] for i in got)


def test_segments_store_halves(env):
    """Sealed segments hold the column as float16: half the bytes of vector's float32."""
    files = sorted(env["path"].rglob("*.parquet"))
    assert len(files) >= 2
    for f in files:
        table = pq.read_table(f)
        (column,) = [c for c in table.columns if pa.types.is_fixed_size_list(c.type)]
        assert column.type == pa.list_(pa.float16(), DIM)
        assert column.chunk(0).values.nbytes == 2 * DIM * len(column)


def test_l1_is_an_exact_scan_and_its_opclass_is_refused(env):
    with pytest.raises(FeatureNotSupported, match="halfvec_l1_ops"):
        env["s"].execute_one("CREATE INDEX ON items USING hnsw (emb halfvec_l1_ops)")
    q = env["queries"][0]
    sql = f"SELECT id, emb <+> $1 FROM items ORDER BY emb <+> $1 LIMIT {K}"
    s = env["s"]
    rows = list(s.run(s.prepare(sql), [q.astype(float).tolist()]).rows())
    want, want_d = truth(env, Metric.L1, q, np.ones(N + 1_000, bool))
    assert [r[0] for r in rows] == want.tolist()
    assert [r[1] for r in rows] == want_d.tolist()


def test_arrow_rows_beyond_half_precision_are_refused(tmp_path):
    """Embedded COPY of float32 rows into a halfvec column checks them as pgvector's cast
    does: a value no half can hold is 22003, never stored as infinity."""
    db = Database.open(str(tmp_path / "db"))
    s = db.connect()
    s.execute_one("CREATE TABLE t (id bigint, e halfvec(2))")

    def rows(values):
        return pa.table({"id": np.array([1]), "e": pa.FixedSizeListArray.from_arrays(
            pa.array(np.array(values, np.float32)), 2)})
    with pytest.raises(SqlVecError, match='"1e\\+06" is out of range for type halfvec') as info:
        s.copy_in("t", None, rows([1e6, 1.0]))
    assert info.value.sqlstate == "22003"
    s.copy_in("t", None, rows([0.1, 2.5]))
    assert [r[0] for r in s.execute_one("SELECT e::text FROM t").rows()] == ["[0.099975586,2.5]"]
    db.close()
