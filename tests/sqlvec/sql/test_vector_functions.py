"""pgvector's operators, functions and aggregates through SQL, checked against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from sqlvec.database import Database
from sqlvec.errors import SqlVecError

DIM = 16
ROWS = 200


def literal(v: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    b = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    db = Database.open(str(tmp_path_factory.mktemp("vectors")))
    s = db.connect()
    s.execute_one(f"CREATE TABLE t (id int PRIMARY KEY, a vector({DIM}), b vector({DIM}), g int)")
    values = ", ".join(f"({i}, '{literal(a[i])}', '{literal(b[i])}', {i % 3})" for i in range(ROWS))
    s.execute_one(f"INSERT INTO t VALUES {values}")
    yield s, a.astype(np.float64), b.astype(np.float64)
    s.close()
    db.close()


def column(s, sql: str) -> np.ndarray:
    return np.array([row[0] for row in s.execute_one(sql).rows()], dtype=np.float64)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1 - (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


EXPECTED = {
    "a <-> b": lambda a, b: np.linalg.norm(a - b, axis=1),
    "l2_distance(a, b)": lambda a, b: np.linalg.norm(a - b, axis=1),
    "a <=> b": cosine,
    "cosine_distance(a, b)": cosine,
    "a <#> b": lambda a, b: -(a * b).sum(1),
    "inner_product(a, b)": lambda a, b: (a * b).sum(1),
    "a <+> b": lambda a, b: np.abs(a - b).sum(1),
    "l1_distance(a, b)": lambda a, b: np.abs(a - b).sum(1),
    "vector_norm(a)": lambda a, b: np.linalg.norm(a, axis=1),
    "vector_dims(a)": lambda a, b: np.full(len(a), DIM),
}


@pytest.mark.parametrize("expression", list(EXPECTED))
def test_row_wise_values_match_numpy(data, expression):
    s, a, b = data
    got = column(s, f"SELECT {expression} FROM t ORDER BY id")
    np.testing.assert_allclose(got, EXPECTED[expression](a, b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op, fn", [("<->", EXPECTED["a <-> b"]), ("<=>", cosine),
                                    ("<#>", EXPECTED["a <#> b"]), ("<+>", EXPECTED["a <+> b"])])
def test_distance_to_a_constant_and_nearest_neighbours(data, op, fn):
    s, a, _ = data
    q = np.linspace(-1, 1, DIM).astype(np.float32).astype(np.float64)
    got = column(s, f"SELECT a {op} '{literal(q)}' FROM t ORDER BY id")
    expected = fn(a, np.broadcast_to(q, a.shape))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    ids = [r[0] for r in s.execute_one(
        f"SELECT id FROM t ORDER BY a {op} '{literal(q)}' LIMIT 10").rows()]
    assert ids == list(np.argsort(expected, kind="stable")[:10])


def vectors(s, sql: str) -> np.ndarray:
    from sqlvec.execution.values import format_value
    from sqlvec.types import parse_vector

    result = s.execute_one(sql)
    t = result.columns[0].type
    return np.array([parse_vector(format_value(r[0], t)) for r in result.rows()], np.float64)


def test_vector_arithmetic_and_normalize(data):
    s, a, b = data
    np.testing.assert_allclose(vectors(s, "SELECT a + b FROM t ORDER BY id"), a + b, rtol=1e-6)
    np.testing.assert_allclose(vectors(s, "SELECT a - b FROM t ORDER BY id"), a - b, rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(vectors(s, "SELECT a * b FROM t ORDER BY id"), a * b, rtol=1e-6,
                               atol=1e-7)
    normalized = a / np.linalg.norm(a, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors(s, "SELECT l2_normalize(a) FROM t ORDER BY id"),
                               normalized, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(vectors(s, "SELECT subvector(a, 3, 4) FROM t ORDER BY id"),
                               a[:, 2:6])


def test_vector_aggregates(data):
    s, a, _ = data
    np.testing.assert_allclose(vectors(s, "SELECT avg(a) FROM t"), [a.mean(0)], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(vectors(s, "SELECT sum(a) FROM t"), [a.sum(0)], rtol=1e-5,
                               atol=1e-5)
    grouped = vectors(s, "SELECT avg(a) FROM t GROUP BY g ORDER BY g")
    expected = [a[np.arange(ROWS) % 3 == g].mean(0) for g in range(3)]
    np.testing.assert_allclose(grouped, expected, rtol=1e-5, atol=1e-6)


def test_vector_to_real_array_and_back(data):
    s, a, _ = data
    rows = s.execute_one("SELECT a::real[] FROM t WHERE id = 5").rows()
    np.testing.assert_allclose(rows[0][0], a[5], rtol=1e-7)
    back = vectors(s, "SELECT (a::real[])::vector FROM t WHERE id = 5")
    np.testing.assert_allclose(back[0], a[5], rtol=1e-7)


@pytest.mark.parametrize("sql, sqlstate", [
    ("SELECT '[1,2'::vector", "22P02"),
    ("SELECT '[1,,2]'::vector", "22P02"),
    ("SELECT '[nan]'::vector", "22000"),
    ("SELECT '[1,2,3]'::vector <-> '[1,2]'", "22000"),
    ("SELECT a <=> '[1,2,3]' FROM t", "22000"),
    ("SELECT a + '[1]' FROM t", "22000"),
    (f"SELECT '[{','.join(['1'] * 16001)}]'::vector", "54000"),
    ("INSERT INTO t (id, a) VALUES (1000, '[1,2,3]')", "22000"),
])
def test_malformed_vectors_and_dimension_mismatches(data, sql, sqlstate):
    s, _, _ = data
    with pytest.raises(SqlVecError) as caught:
        s.execute_one(sql)
    assert caught.value.sqlstate == sqlstate


def test_dimension_error_messages(data):
    s, _, _ = data
    with pytest.raises(SqlVecError, match="different vector dimensions 16 and 3"):
        s.execute_one("SELECT a <-> '[1,2,3]' FROM t")
    with pytest.raises(SqlVecError, match="expected 16 dimensions, not 3"):
        s.execute_one("INSERT INTO t (id, a) VALUES (1000, '[1,2,3]')")


def test_columns_are_named_after_the_function_as_in_pgvector(data):
    s, _, _ = data
    sql = ("SELECT l2_distance(a, b), cosine_distance(a, b), l1_distance(a, b), "
           "inner_product(a, b), vector_dims(a), a <-> b, l2_distance(a, b) AS d FROM t LIMIT 1")
    names = [c.name for c in s.execute_one(sql).columns]
    assert names == ["l2_distance", "cosine_distance", "l1_distance", "inner_product",
                     "vector_dims", "?column?", "d"]
    prepared = s.prepare("SELECT id, l2_distance(a, $1) FROM t ORDER BY l2_distance(a, $1) LIMIT 3")
    assert [c.name for c in prepared.columns] == ["id", "l2_distance"]
