"""Hybrid filtered ANN through SQL: exactly min(k, matches) rows at every selectivity, recall
against brute force, target_recall, deletes/updates/fresh rows, and EXPLAIN's strategies.

One database of 100k clustered 64-d vectors in 4 sealed segments plus a growing segment, with
HNSW indexes for the three indexable metrics, is built once for the module."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from benchmarks.datasets import Clustered
from sqlvec.database import Database
from sqlvec.vectors import Metric, distances, top_k
from tests.sqlvec.conftest import segment_per_load

N, DIM, K = 100_000, 64, 10
SEAL = 25_000
QUERIES = 100
# category → share of rows: 1: 30%, 2: 10%, 3: 1%, 4: 0.1%, 5: 0.01% (20 rows), 6: none.
SHARES = {1: 0.30, 2: 0.10, 3: 0.01, 4: 0.001, 5: 0.0001}
OPS = {Metric.L2: "<->", Metric.COSINE: "<=>", Metric.IP: "<#>"}
OPCLASS = {Metric.L2: "vector_l2_ops", Metric.COSINE: "vector_cosine_ops", Metric.IP: "vector_ip_ops"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = Clustered(N + 5_000, DIM, clusters=300, seed=11)
    vectors = data.all()
    rng = np.random.default_rng(5)
    cats = np.zeros(N + 5_000, np.int32)
    order = rng.permutation(N + 5_000)
    start = 0
    for cat, share in SHARES.items():
        count = int(round(share * N))
        cats[order[start:start + count]] = cat
        start += count
    price = rng.random(N + 5_000) * 1000
    db = Database.open(str(tmp_path_factory.mktemp("hybrid")),
                       options=segment_per_load(SEAL))
    s = db.connect()
    s.execute_one("CREATE TABLE items (id bigint PRIMARY KEY, cat int, price float8, "
                  f"emb vector({DIM}))")

    def rows(lo, hi):
        return pa.table({
            "id": np.arange(lo, hi, dtype=np.int64), "cat": cats[lo:hi], "price": price[lo:hi],
            "emb": pa.FixedSizeListArray.from_arrays(pa.array(vectors[lo:hi].ravel()), DIM)})

    for lo in range(0, N, SEAL):
        s.copy_in("items", None, rows(lo, lo + SEAL))
    for metric, opclass in OPCLASS.items():
        s.execute_one(f"CREATE INDEX items_{metric.value} ON items USING hnsw (emb {opclass})")
    # Rows that arrive after the indexes stay in the growing segment, searched exactly.
    s.copy_in("items", None, rows(N, N + 2_000))
    live = np.zeros(N + 5_000, bool)
    live[: N + 2_000] = True
    queries = data.queries(QUERIES, seed=3)
    yield {"db": db, "s": s, "vectors": vectors, "cats": cats, "price": price, "live": live,
           "queries": queries, "fresh": data.queries(300, seed=17)}
    db.close()


def truth(env, metric: Metric, q: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Brute-force top K among the live rows `mask` allows, ties by id. Ranked by BLAS and
    re-scored exactly (`top_k`), not scored exactly over all 100k rows: the suite runs it
    thousands of times."""
    return top_k(metric, env["vectors"], q, K, mask & env["live"])[0]


def search(env, metric: Metric, where: str, params: list, q: np.ndarray) -> list[int]:
    sql = f"SELECT id FROM items {where} ORDER BY emb {OPS[metric]} $1 LIMIT {K}"
    s = env["s"]
    return [r[0] for r in s.run(s.prepare(sql), [q.tolist(), *params]).rows()]


def test_segments_are_as_intended(env):
    s = env["s"]
    lines = [r[0] for r in s.execute_one(
        "EXPLAIN SELECT id FROM items ORDER BY emb <-> $1 LIMIT 10",
        [np.zeros(DIM).tolist()]).rows()]
    assert any("Segments: 5 (1 exact, 4 hnsw)" in line for line in lines), lines


@pytest.mark.parametrize("metric", list(OPS))
@pytest.mark.parametrize("cat", [None, 1, 2, 3, 4, 5, 6])
def test_category_filters_return_exactly_k_at_high_recall(env, metric, cat):
    mask = np.ones(N + 5_000, bool) if cat is None else env["cats"] == cat
    where, params = ("", []) if cat is None else ("WHERE cat = $2", [cat])
    recalls = []
    for q in env["queries"]:
        expected = truth(env, metric, q, mask)
        got = search(env, metric, where, params, q)
        assert len(got) == min(K, expected.size)
        assert all(mask[i] and env["live"][i] for i in got)
        if expected.size:
            recalls.append(len(set(got) & set(expected.tolist())) / expected.size)
    if recalls:
        assert np.mean(recalls) >= 0.95


@pytest.mark.parametrize("bound", [10.0, 300.0])
def test_range_filters(env, bound):
    mask = env["price"] < bound
    recalls = []
    for q in env["queries"][:50]:
        expected = truth(env, Metric.L2, q, mask)
        got = search(env, Metric.L2, "WHERE price < $2", [bound], q)
        assert len(got) == K
        assert all(env["price"][i] < bound for i in got)
        recalls.append(len(set(got) & set(expected.tolist())) / K)
    assert np.mean(recalls) >= 0.95


@pytest.mark.parametrize("where, general, params", [
    ("price < $2 AND cat = $3", "price + 0 < $2 AND cat + 0 = $3", [600.0, 1]),
    ("price BETWEEN $2::float8 AND $3::float8",
     "price + 0 BETWEEN $2::float8 AND $3::float8", [100.0, 400.0]),
    ("$2 <= price AND cat > 0", "$2 <= price + 0 AND cat + 0 > 0", [700.0]),
    ("price BETWEEN SYMMETRIC $2::float8 AND $3::float8",
     "price + 0 BETWEEN SYMMETRIC $2::float8 AND $3::float8", [400.0, 100.0]),
])
def test_column_comparisons_filter_as_the_general_filter_does(env, where, general, params):
    """A filter of `column op constant` terms alone is compared as NumPy per segment: searched
    exactly, the same rows as the same filter written so that it is not (and the truth)."""
    s, q = env["s"], env["queries"][0]
    s.execute_one("SET sqlvec.exact = on")
    try:
        got = search(env, Metric.L2, f"WHERE {where}", params, q)
        assert got == search(env, Metric.L2, f"WHERE {general}", params, q)
    finally:
        s.execute_one("RESET sqlvec.exact")
    assert len(got) == K


def test_column_comparisons_over_nan_null_and_signed_zero(env):
    """PostgreSQL's float comparisons on both paths (NaN equal to NaN and above every other
    value, -0 equal to 0); a column with NULLs falls back to the general filter."""
    s = env["s"]
    s.execute_one("CREATE TABLE odd (id int, p float8, n float8, emb vector(2))")
    values = [1.0, float("nan"), -0.0, 0.0, 5.0, float("inf"), float("-inf"), 2.5]
    s.copy_in("odd", None, pa.table({
        "id": np.arange(8, dtype=np.int32), "p": values,
        "n": [None if i % 3 == 0 else v for i, v in enumerate(values)],
        "emb": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(16, dtype=np.float32)),
                                                 2)}))
    for column in ("p", "n"):
        for op, value in (("<", 2.5), ("=", 0.0), (">=", 1.0), ("<=", float("inf")),
                          ("=", float("nan")), ("<", float("nan"))):
            sql = "SELECT id FROM odd WHERE {} ORDER BY emb <-> $1 LIMIT 8"
            prepared = s.prepare(sql.format(f"{column} {op} $2"))
            general = s.prepare(sql.format(f"{column} + 0 {op} $2"))
            got = sorted(r[0] for r in s.run(prepared, [[0.0, 0.0], value]).rows())
            assert got == sorted(r[0] for r in s.run(general, [[0.0, 0.0], value]).rows())
            assert got == [i for i, v in enumerate(values)
                           if (column == "p" or i % 3) and _postgres(op, v, value)]
    s.execute_one("DROP TABLE odd")


def _postgres(op: str, a: float, b: float) -> bool:
    """`a op b` in PostgreSQL's float order: NaN equal to NaN and above everything else."""
    a_key, b_key = ((1, 0.0) if math.isnan(x) else (0, x) for x in (a, b))
    return {"<": a_key < b_key, "=": a_key == b_key, ">=": a_key >= b_key,
            "<=": a_key <= b_key}[op]


def test_distance_threshold_in_where(env):
    q = env["queries"][0]
    expected = truth(env, Metric.L2, q, np.ones(N + 5_000, bool))
    cutoff = float(distances(Metric.L2, env["vectors"][expected[4:5]], q)[0]) + 1e-6
    s = env["s"]
    rows = s.execute_one("SELECT id, emb <-> $1 AS d FROM items WHERE emb <-> $1 < $2 "
                         "ORDER BY d LIMIT 10", [q.tolist(), cutoff]).rows()
    assert [r[0] for r in rows] == expected[:5].tolist()
    assert all(r[1] < cutoff for r in rows)


def test_offset_alias_and_position_forms(env):
    s = env["s"]
    q = env["queries"][1]
    expected = truth(env, Metric.L2, q, np.ones(N + 5_000, bool))
    # What is checked is the forms, not the graph's recall on one query: a wide search makes
    # ranks 4-8 independent of how well this (non-deterministic) build serves q.
    s.execute_one("SET hnsw.ef_search = 400")
    try:
        by_alias = s.execute_one("SELECT id, emb <-> $1 AS dist FROM items ORDER BY dist "
                                 "LIMIT 5 OFFSET 3", [q.tolist()]).rows()
        by_position = s.execute_one("SELECT id, l2_distance(emb, $1) FROM items "
                                    "ORDER BY 2, id LIMIT 8", [q.tolist()]).rows()
    finally:
        s.execute_one("RESET hnsw.ef_search")
    assert [r[0] for r in by_alias] == expected[3:8].tolist()
    assert [r[0] for r in by_position] == expected[:8].tolist()


def test_deleted_updated_and_fresh_rows(env):
    s = env["s"]
    q = env["queries"][2]
    before = truth(env, Metric.L2, q, np.ones(N + 5_000, bool))
    victims = before[:3].tolist()
    s.execute_one("DELETE FROM items WHERE id = ANY($1)", [victims])
    env["live"][victims] = False
    moved = int(before[5])
    far = (np.ones(DIM) * 1e3).tolist()
    s.execute_one("UPDATE items SET emb = $1 WHERE id = $2", [far, moved])
    env["vectors"][moved] = np.asarray(far, np.float32)
    fresh = N + 2_000
    s.execute_one("INSERT INTO items VALUES ($1, 0, 1.0, $2)", [fresh, q.tolist()])
    env["live"][fresh] = True
    env["vectors"][fresh] = q
    # What is checked is which rows are visible, not the graph's recall on one query: a wide
    # search makes that independent of how well this (non-deterministic) build serves q.
    s.execute_one("SET hnsw.ef_search = 400")
    try:
        got = search(env, Metric.L2, "", [], q)
    finally:
        s.execute_one("RESET hnsw.ef_search")
    assert got[0] == fresh
    assert not set(victims) & set(got) and moved not in got
    expected = truth(env, Metric.L2, q, np.ones(N + 5_000, bool)).tolist()
    assert len(set(got) & set(expected)) >= K - 1


def test_target_recall_is_met_and_lower_targets_use_less_ef(env):
    s = env["s"]
    ladder = []
    every = np.ones(N + 5_000, bool)
    expected_of = [truth(env, Metric.L2, q, every) for q in env["fresh"]]
    for target in (0.9, 0.95, 0.99):
        s.execute_one(f"SET sqlvec.target_recall = {target}")
        recalls = []
        for q, expected in zip(env["fresh"], expected_of):
            got = search(env, Metric.L2, "", [], q)
            recalls.append(len(set(got) & set(expected.tolist())) / K)
        plan = [r[0] for r in s.execute_one(
            "EXPLAIN SELECT id FROM items ORDER BY emb <-> $1 LIMIT 10",
            [env["queries"][0].tolist()]).rows()]
        efs = [int(line.split("ef=")[1].split()[0]) for line in plan if " hnsw " in line]
        ladder.append(max(efs))
        assert np.mean(recalls) >= target
    s.execute_one("RESET sqlvec.target_recall")
    assert ladder == sorted(ladder) and ladder[0] < ladder[-1]


def test_explain_shows_the_strategy_for_high_and_low_selectivity(env):
    s = env["s"]
    q = env["queries"][0].tolist()
    low = [r[0] for r in s.execute_one(
        "EXPLAIN SELECT id FROM items WHERE cat = 4 ORDER BY emb <-> $1 LIMIT 10", [q]).rows()]
    high = [r[0] for r in s.execute_one(
        "EXPLAIN ANALYZE SELECT id FROM items WHERE cat = 1 ORDER BY emb <-> $1 LIMIT 10",
        [q]).rows()]
    assert any(line.strip().startswith("segment") and ": exact " in line for line in low)
    assert not any("hnsw" in line for line in low if line.strip().startswith("segment"))
    assert any(": hnsw-postfilter " in line and "est_recall=" in line and "rows=" in line
               for line in high)
    assert any(line.startswith("Execution Time") for line in high)


def test_exact_setting_forces_exact_search(env):
    s = env["s"]
    s.execute_one("SET sqlvec.exact = on")
    try:
        plan = [r[0] for r in s.execute_one(
            "EXPLAIN SELECT id FROM items ORDER BY emb <-> $1 LIMIT 10",
            [env["queries"][0].tolist()]).rows()]
    finally:
        s.execute_one("SET sqlvec.exact = off")
    assert any("Segments: 5 (5 exact)" in line for line in plan)
