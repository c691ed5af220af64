"""Float NaN in PostgreSQL's order (NaN = NaN, NaN above every other value) where a vector
search filters: prepared filters bound with $1, segments skipped by their min/max, and the
NumPy form of the rule that filters over column buffers use. The relational operators are
compared with PostgreSQL itself in tests/sql/float_nan.test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sqlvec.database import Database
from sqlvec.float_order import pg_float_compare
from sqlvec.storage.store import StoreOptions

NAN, INF = math.nan, math.inf
OPS = {"=": "equal", "<>": "not_equal", "<": "less", "<=": "less_equal", ">": "greater",
       ">=": "greater_equal"}
# PostgreSQL's documented answers: NaN equals NaN and is greater than every non-NaN value.
_RANK = {-INF: 0, -1.0: 1, 0.0: 2, 5.0: 3, INF: 4}


def _expected(op: str, x: float, y: float) -> bool:
    rank_x = 5 if math.isnan(x) else _RANK[x]
    rank_y = 5 if math.isnan(y) else _RANK[y]
    return {"=": rank_x == rank_y, "<>": rank_x != rank_y, "<": rank_x < rank_y,
            "<=": rank_x <= rank_y, ">": rank_x > rank_y, ">=": rank_x >= rank_y}[op]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", list(OPS))
def test_numpy_compare_in_postgresql_order(op, dtype):
    values = np.array([NAN, INF, -INF, -1.0, 0.0, 5.0], dtype)
    for constant in (NAN, INF, -INF, 0.0, 5.0):
        got = pg_float_compare(OPS[op], values, dtype(constant))
        assert got.tolist() == [_expected(op, float(v), constant) for v in values], constant


def test_numpy_compare_leaves_integers_to_numpy():
    values = np.array([3, 1, 2], np.int64)
    assert pg_float_compare("greater", values, 1).tolist() == [True, False, True]


@pytest.fixture
def segments(tmp_path):
    """Two sealed segments of 4 rows: the first holds the NaN prices among negatives (its
    max, ignoring NaN, is -1), the second positive prices."""
    db = Database.open(str(tmp_path), options=StoreOptions(seal_rows=4, background=False))
    s = db.connect()
    s.execute_one("CREATE TABLE t (id int, price float8, cost real, e vector(2))")
    s.execute_one("INSERT INTO t VALUES (1, 'NaN', 'NaN', '[1,1]'), (2, -1, -1, '[2,2]'), "
                  "(3, 'NaN', 'NaN', '[3,3]'), (4, -2, -2, '[4,4]')")
    s.execute_one("INSERT INTO t VALUES (5, 5, 5, '[5,5]'), (6, 'Infinity', 'Infinity', "
                  "'[6,6]'), (7, 1, 1, '[7,7]'), (8, NULL, NULL, '[8,8]')")
    assert len(db.store().find_table("t").sealed) == 2
    yield s
    s.close()
    db.close()


@pytest.mark.parametrize("column", ["price", "cost"])
@pytest.mark.parametrize("op, bound, want", [
    (">", 1.0, [1, 3, 5, 6]), (">", INF, [1, 3]), (">=", NAN, [1, 3]), ("=", NAN, [1, 3]),
    ("<", NAN, [2, 4, 5, 6, 7]), (">", NAN, []), ("<>", NAN, [2, 4, 5, 6, 7]),
    ("<=", -1.0, [2, 4]),
])
def test_filtered_top_k_with_a_bound_parameter(segments, column, op, bound, want):
    sql = f"SELECT id FROM t WHERE {column} {op} $1 ORDER BY e <-> '[0,0]' LIMIT 8"
    statement = segments.prepare(sql)
    assert [r[0] for r in segments.run(statement, [bound]).rows()] == want
    literal = "'NaN'" if math.isnan(bound) else f"'{bound}'"
    assert [r[0] for r in segments.execute_one(sql.replace("$1", literal)).rows()] == want


def test_filtered_top_k_through_a_graph(segments):
    segments.execute_one("CREATE INDEX ON t USING hnsw (e vector_l2_ops)")
    sql = "SELECT id FROM t WHERE price > $1 ORDER BY e <-> '[0,0]' LIMIT 3"
    assert [r[0] for r in segments.run(segments.prepare(sql), [2.0]).rows()] == [1, 3, 5]
