"""Recall out of the box through SQL: a session that sets nothing searches at the calibrated
0.95 target, EXPLAIN's est_recall is not above the recall it gets, `SET hnsw.ef_search = N` is
used exactly (pgvector's semantics, even when N is the default), `sqlvec.target_recall` wins
over it when both are set, and RESET goes back to the target.

One table of 20k clustered 32-d vectors (two sealed segments with a sparse HNSW index each:
m = 6, on which ef 40 gives about 0.95 and ef 10 about 0.8) and held-out queries from the same
distribution."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from benchmarks.datasets import Clustered
from sqlvec.database import Database
from sqlvec.errors import SqlVecError
from sqlvec.vectors import Metric, top_k_batch
from tests.sqlvec.conftest import segment_per_load

N, DIM, K, SEAL = 20_000, 32, 10, 10_000
SQL = f"SELECT id FROM items ORDER BY emb <-> $1 LIMIT {K}"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = Clustered(N, DIM, clusters=200, seed=3)
    vectors = data.all()
    db = Database.open(str(tmp_path_factory.mktemp("defaults")),
                       options=segment_per_load(SEAL))
    s = db.connect()
    s.execute_one(f"CREATE TABLE items (id bigint PRIMARY KEY, emb vector({DIM}))")
    for lo in range(0, N, SEAL):
        s.copy_in("items", None, pa.table({
            "id": np.arange(lo, lo + SEAL, dtype=np.int64),
            "emb": pa.FixedSizeListArray.from_arrays(pa.array(vectors[lo:lo + SEAL].ravel()),
                                                     DIM)}))
    # A sparse graph, so that pgvector's default ef (40) is not already enough on this data.
    s.execute_one("CREATE INDEX ON items USING hnsw (emb vector_l2_ops) "
                  "WITH (m = 6, ef_construction = 24)")
    queries = data.queries(400, seed=21)
    truth = top_k_batch(Metric.L2, vectors, queries, K)
    yield {"s": s, "queries": queries, "truth": truth}
    db.close()


def recall(env) -> float:
    s = env["s"]
    prepared = s.prepare(SQL)
    hits = 0
    for q, t in zip(env["queries"], env["truth"]):
        got = [r[0] for r in s.run(prepared, [q.tolist()]).rows()]
        assert len(got) == K
        hits += len(set(got) & set(t.tolist()))
    return hits / env["truth"].size


def explained(env) -> list[tuple[int, float]]:
    """(ef, est_recall) of every segment EXPLAIN says is searched through the index."""
    rows = env["s"].execute_one("EXPLAIN " + SQL, [env["queries"][0].tolist()]).rows()
    out = []
    for (line,) in rows:
        if line.strip().startswith("segment") and ": hnsw " in line:
            ef = int(line.split("ef=")[1].split()[0])
            est = float(line.split("est_recall=")[1].split()[0])
            out.append((ef, est))
    return out


def test_default_search_reaches_the_target_and_the_estimate_is_honest(env):
    s = env["s"]
    assert s.execute_one("SHOW sqlvec.target_recall").rows() == [("0.95",)]
    assert s.execute_one("SHOW hnsw.ef_search").rows() == [("40",)]
    plans = explained(env)
    assert len(plans) == 2
    measured = recall(env)
    assert measured >= 0.95
    assert all(est >= 0.95 and ef > 10 for ef, est in plans)
    assert min(est for _, est in plans) <= measured + 0.01


@pytest.mark.parametrize("ef", [10, 40, 100])
def test_set_ef_search_is_used_exactly(env, ef):
    s = env["s"]
    default = explained(env)
    s.execute_one(f"SET hnsw.ef_search = {ef}")
    try:
        plans = explained(env)
        assert plans and all(used == ef for used, _ in plans)
        if ef == 10:  # the graph's own recall at ef 10 is below the target on this data
            assert all(est < 0.95 for _, est in plans)
            assert recall(env) >= min(est for _, est in plans) - 0.01
    finally:
        s.execute_one("RESET hnsw.ef_search")
    assert explained(env) == default  # not set again: the target's ef


def test_a_target_the_session_sets_wins_over_ef_search(env):
    s = env["s"]
    s.execute_one("SET hnsw.ef_search = 10")
    s.execute_one("SET sqlvec.target_recall = 0.99")
    try:
        high = explained(env)
        assert all(ef > 10 for ef, _ in high)
        s.execute_one("SET sqlvec.target_recall = off")
        assert all(ef == 10 for ef, _ in explained(env))
        s.execute_one("RESET hnsw.ef_search")
        # Target off and ef_search not set: pgvector's default ef.
        assert all(ef == 40 for ef, _ in explained(env))
        assert s.execute_one("SHOW sqlvec.target_recall").rows() == [("off",)]
    finally:
        s.execute_one("RESET ALL")
    assert s.execute_one("SHOW sqlvec.target_recall").rows() == [("0.95",)]


@pytest.mark.parametrize("value", ["'abc'", "1.5", "-1"])
def test_target_recall_refuses_values_that_are_not_a_recall(env, value):
    s = env["s"]
    with pytest.raises(SqlVecError) as info:
        s.execute_one(f"SET sqlvec.target_recall = {value}")
    assert info.value.sqlstate == "22023"
    assert s.execute_one("SHOW sqlvec.target_recall").rows() == [("0.95",)]


@pytest.mark.parametrize("reset", ["RESET ALL", "DISCARD ALL", "SET hnsw.ef_search TO DEFAULT"])
def test_every_form_of_reset_goes_back_to_the_target(env, reset):
    s = env["s"]
    default = explained(env)
    source = ("SELECT source FROM pg_settings WHERE name = 'hnsw.ef_search'")
    assert s.execute_one(source).rows() == [("default",)]
    s.execute_one("SET hnsw.ef_search = 40")  # the default's value, but chosen
    assert all(ef == 40 for ef, _ in explained(env))
    assert s.execute_one(source).rows() == [("session",)]
    s.execute_one(reset)
    assert s.execute_one(source).rows() == [("default",)]
    assert explained(env) == default
