"""The vector top-k's query as a bound parameter: searched as the bound array itself
(`BoundParams.vector`), with the same rows, distances and errors as when it is an Arrow scalar
(a literal, a cast, or the parameter also read by the select list)."""

from __future__ import annotations

import numpy as np
import pytest

from sqlvec.database import Database
from sqlvec.errors import SqlVecError
from sqlvec.execution.values import BoundParams, typed_params
from sqlvec.storage.store import StoreOptions
from sqlvec.types import SqlType

DIM = 8
ROWS = 3000


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    db = Database.open(str(tmp_path_factory.mktemp("params")),
                       options=StoreOptions(fsync=False, seal_rows=1000))
    s = db.connect()
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    s.execute_one(f"CREATE TABLE t (id bigint PRIMARY KEY, tag int, emb vector({DIM}))")
    s.execute_one(f"CREATE TABLE h (id bigint, emb halfvec({DIM}))")
    rows = ",".join(f"({i}, {i % 7}, '{_text(v)}')" for i, v in enumerate(vectors))
    s.execute_one(f"INSERT INTO t VALUES {rows}")
    for start in range(0, ROWS, 1000):  # (a cast of more than 16000 elements at once fails)
        s.execute_one(f"INSERT INTO h SELECT id, emb::halfvec FROM t "
                      f"WHERE id >= {start} AND id < {start + 1000}")
    s.execute_one("CREATE INDEX ON t USING hnsw (emb vector_l2_ops)")
    s.execute_one("CREATE INDEX ON h USING hnsw (emb halfvec_l2_ops)")
    s.execute_one("SET hnsw.ef_search = 200")
    s.vectors = vectors
    yield s
    s.close()
    db.close()


def _text(v: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def _queries(n: int = 5) -> list[np.ndarray]:
    return list(np.random.default_rng(9).standard_normal((n, DIM)).astype(np.float32))


@pytest.mark.parametrize("sql", [
    "SELECT id, emb <-> {q} AS d FROM t ORDER BY emb <-> {q} LIMIT 10",
    "SELECT id, emb <-> {q} AS d FROM t WHERE tag = 3 ORDER BY emb <-> {q} LIMIT 10",
])
def test_bound_vector_finds_what_the_literal_finds(session, sql):
    prepared = session.prepare(sql.format(q="$1"))
    for q in _queries():
        bound = session.run(prepared, [q]).table.to_pylist()
        literal = session.execute_one(sql.format(q=f"'{_text(q)}'::vector")).table.to_pylist()
        assert bound == literal
        assert len(bound) == 10


def test_bound_vector_in_the_select_list_only_matches_a_scalar_parameter(session):
    # The parameter is read twice: by the top-k (its array) and by the projection (its scalar).
    q = _queries(1)[0]
    both = session.run(session.prepare(
        "SELECT id, emb <-> $1 AS d, $1::text AS q FROM t ORDER BY emb <-> $1 LIMIT 3"), [q])
    rows = both.table.to_pylist()
    assert [r["q"] for r in rows] == [_text_as_vector_output(session, q)] * 3
    exact = np.sqrt(((session.vectors.astype(np.float64) - q) ** 2).sum(axis=1))
    assert [r["id"] for r in rows] == list(np.argsort(exact)[:3])


def _text_as_vector_output(session, q: np.ndarray) -> str:
    return session.execute_one(f"SELECT '{_text(q)}'::vector::text AS v").table.to_pylist()[0]["v"]


def test_bound_halfvec_query_searches_the_halfvec_column(session):
    sql = "SELECT id FROM h ORDER BY emb <-> {q} LIMIT 5"
    prepared = session.prepare(sql.format(q="$1"))
    for q in _queries(3):
        bound = session.run(prepared, [q]).table.to_pylist()
        literal = session.execute_one(sql.format(q=f"'{_text(q)}'::halfvec")).table.to_pylist()
        assert bound == literal


def test_bound_vector_inside_a_transaction_with_uncommitted_rows(session):
    # An uncommitted write sends the top-k to its exact path, which reads the scalar.
    q = np.full(DIM, 50.0, np.float32)
    session.execute_one("BEGIN")
    try:
        session.execute_one(f"INSERT INTO t VALUES (-1, 0, '{_text(q)}')")
        rows = session.run(session.prepare("SELECT id FROM t ORDER BY emb <-> $1 LIMIT 1"),
                           [q]).table.to_pylist()
        assert rows == [{"id": -1}]
    finally:
        session.execute_one("ROLLBACK")


@pytest.mark.parametrize("bad, sqlstate, message", [
    ([1.0] * (DIM - 1), "22000", f"different vector dimensions {DIM} and {DIM - 1}"),
    # (Through the wire, pgvector's binary input refuses it first: 54000, tests/e2e.)
    ([1.0] * 22000, "22000", f"different vector dimensions {DIM} and 22000"),
    ([1.0, float("nan")] + [0.0] * (DIM - 2), "22000", "NaN not allowed in vector"),
    ([float("inf")] + [0.0] * (DIM - 1), "22000", "infinite value not allowed in vector"),
    ([-float("inf")] + [0.0] * (DIM - 1), "22000", "infinite value not allowed in vector"),
])
def test_bad_bound_vectors_are_refused(session, bad, sqlstate, message):
    prepared = session.prepare("SELECT id FROM t ORDER BY emb <-> $1 LIMIT 10")
    with pytest.raises(SqlVecError) as info:
        session.run(prepared, [np.array(bad, np.float32)])
    assert info.value.sqlstate == sqlstate
    assert message in str(info.value)
    session.execute_one("ROLLBACK")  # (autocommit: nothing to roll back, clears nothing)


def test_bound_params_make_a_vector_scalar_only_when_read():
    vector, typed = SqlType("vector"), SqlType("vector", 3)
    params = typed_params([vector, typed, SqlType("int8")],
                          [np.array([1, 2, 3], np.float32), np.array([4, 5, 6], np.float32), 7])
    assert isinstance(params, BoundParams)
    assert params.vector(0).tolist() == [1, 2, 3]
    assert params.vector(2) is None and params.vector(5) is None
    scalar = params[0]
    assert scalar.as_py() == [1, 2, 3] and str(scalar.type) == "list<item: float>"
    assert params.vector(0) is None  # read as a scalar since: the scalar is what $1 is now
    assert params[1].as_py() == [4, 5, 6] and str(params[1].type) == "fixed_size_list<item: float>[3]"
    assert [p.as_py() for p in params] == [[1, 2, 3], [4, 5, 6], 7]
    fresh = typed_params([vector, vector], [np.array([1], np.float32), np.array([2], np.float32)])
    assert [p.as_py() for p in fresh[::-1]] == [[2], [1]]  # slices and copies read scalars
    assert [p.as_py() for p in fresh.copy()] == [[1], [2]]
    with pytest.raises(SqlVecError, match="expected 3 dimensions, not 2"):
        typed_params([typed], [np.array([1, 2], np.float32)])


def test_a_vector_bound_from_text_stays_an_array():
    # A text parameter arrives as the list of its numbers (the type's input function): it is
    # kept as the checked array a binary one is, with the same scalar and the same errors.
    vector, typed = SqlType("vector"), SqlType("vector", 3)
    params = typed_params([vector, typed], [[1.5, 2.0, -3.25], [4.0, 5.0, 6.0]])
    array = params.vector(0)
    assert array.dtype == np.float32 and array.tolist() == [1.5, 2.0, -3.25]
    assert params[1].as_py() == [4, 5, 6]
    assert str(params[1].type) == "fixed_size_list<item: float>[3]"
    with pytest.raises(SqlVecError, match="expected 3 dimensions, not 2"):
        typed_params([typed], [[1.0, 2.0]])
    with pytest.raises(SqlVecError, match="NaN not allowed in vector"):
        typed_params([vector], [[1.0, float("nan")]])
    with pytest.raises(SqlVecError, match="infinite value not allowed in vector"):
        typed_params([vector], [[1.0, float("inf")]])
    with pytest.raises(SqlVecError, match='"1e[+]39" is out of range for type vector'):
        typed_params([vector], [[1.0, 1e39]])  # beyond float4


def test_a_decoded_binary_vector_is_bound_as_it_is():
    # A binary parameter arrives as the float32 array the wire decoded: it is the pending array
    # itself (no conversion), and binds as its list, a float64 array or another type does.
    vector, half = SqlType("vector"), SqlType("halfvec")
    decoded = np.array([1.5, -2.0, 3.25], np.float32)
    params = typed_params([vector, vector, half], [decoded, decoded.astype(np.float64), decoded])
    assert params.vector(0) is decoded
    assert params.vector(1).dtype == np.float32 and params.vector(1).tolist() == decoded.tolist()
    assert params.vector(2).dtype == np.float16 and params.vector(2).tolist() == [1.5, -2.0, 3.25]
    as_list = typed_params([vector], [decoded.tolist()])
    assert params[0].equals(as_list[0])
    for bad, message in ((np.array([1.0, np.nan], np.float32), "NaN not allowed in vector"),
                         (np.array([np.inf, 1.0], np.float32),
                          "infinite value not allowed in vector"),
                         (np.array([], np.float32), "vector must have at least 1 dimension")):
        with pytest.raises(SqlVecError, match=message):
            typed_params([vector], [bad])
    with pytest.raises(SqlVecError, match="expected 3 dimensions, not 2"):
        typed_params([SqlType("vector", 3)], [np.array([1, 2], np.float32)])
