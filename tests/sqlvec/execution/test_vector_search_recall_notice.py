"""A recall target the index cannot reach never misses silently: the query sends one NOTICE
(not one per segment) with the recall it can reach and
the ways to get more; none when the target is reachable, when the session set the index's knob
itself, or when the search is exact.

Hard data on purpose: 2k uniform random 128-d vectors in two sealed segments, each with a sparse
HNSW index (m = 4), searched with `sqlvec.max_ef_search` low."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from sqlvec.database import Database
from sqlvec.errors import SqlVecError
from tests.sqlvec.conftest import segment_per_load

N, DIM, SEAL = 2_000, 128, 1_000
QUERY = "[" + ",".join(["0.5"] * DIM) + "]"
SEARCH = f"SELECT id FROM r ORDER BY emb <-> '{QUERY}' LIMIT 10"


@pytest.fixture(scope="module")
def s(tmp_path_factory):
    db = Database.open(str(tmp_path_factory.mktemp("recall")),
                       options=segment_per_load(SEAL))
    session = db.connect()
    session.execute_one(f"CREATE TABLE r (id bigint, emb vector({DIM}))")
    vectors = np.random.default_rng(5).random((N, DIM), dtype=np.float32)
    for lo in range(0, N, SEAL):
        session.copy_in("r", None, pa.table({
            "id": np.arange(lo, lo + SEAL),
            "emb": pa.FixedSizeListArray.from_arrays(pa.array(vectors[lo:lo + SEAL].ravel()),
                                                     DIM)}))
    session.execute_one("CREATE INDEX ON r USING hnsw (emb vector_l2_ops) "
                        "WITH (m = 4, ef_construction = 16)")
    yield session
    db.close()


@pytest.fixture(autouse=True)
def fresh_settings(s):
    s.execute_one("RESET ALL")


def test_an_unreachable_target_sends_one_notice_with_the_recall_and_the_remedies(s):
    s.execute_one("SET sqlvec.max_ef_search = 10")
    result = s.execute_one(SEARCH)
    assert len(result.rows()) == 10
    [notice] = result.notices
    assert notice.severity == "NOTICE"
    assert "recall target 0.95 is not reachable" in notice.message
    assert "ef_search=10" in notice.message
    recall = float(notice.message.split("estimated recall of ")[1].split()[0])
    assert 0 <= recall < 0.95
    assert "2 of 2 segments" in notice.detail
    for remedy in ("raise sqlvec.max_ef_search (now 10)", "larger m or ef_construction",
                   "sqlvec.exact = on"):
        assert remedy in notice.hint


def test_no_notice_when_reachable_knob_set_or_exact(s):
    s.execute_one("SET sqlvec.target_recall = 0.1")
    assert s.execute_one(SEARCH).notices == []
    s.execute_one("RESET sqlvec.target_recall")
    s.execute_one("SET hnsw.ef_search = 10")  # the knob itself: pgvector's meaning, no target
    assert s.execute_one(SEARCH).notices == []
    s.execute_one("RESET ALL")
    s.execute_one("SET sqlvec.exact = on")
    assert s.execute_one(SEARCH).notices == []


def test_the_cap_is_a_validated_setting(s):
    assert s.execute_one("SHOW sqlvec.max_ef_search").rows() == [("1000",)]
    for bad in ("0", "abc", "5000"):
        with pytest.raises(SqlVecError) as caught:
            s.execute_one(f"SET sqlvec.max_ef_search = {bad}")
        assert caught.value.sqlstate == "22023"
    assert s.execute_one("SHOW sqlvec.max_ef_search").rows() == [("1000",)]
