"""The LATERAL join operator: one run of the right side per distinct left value it reads,
pairs in left row order, LEFT's NULL rows, the ON condition, and agreement with the same
query written as a correlated subquery; its key for vectors and its pair arithmetic."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from sqlvec.execution.lateral import _pairs, group_key
from tests.sqlvec.execution.conftest import error, rows


def setup(session):
    session.execute_one("CREATE TABLE o (id int, k int, v vector(2))")
    session.execute_one("CREATE TABLE i (k int, x int)")
    session.execute_one("INSERT INTO o VALUES (1, 1, '[1,1]'), (2, 2, '[1,1]'), (3, 1, '[0,1]'), "
                        "(4, NULL, NULL), (5, 2, '[1,1]'), (6, 9, '[2,2]')")
    session.execute_one("INSERT INTO i VALUES (1, 10), (1, 11), (2, 20), (NULL, 0), (3, 30)")


def loops(session, sql: str, node: str) -> int:
    plan = "\n".join(r[0] for r in rows(session, "EXPLAIN ANALYZE " + sql))
    return int(re.search(node + r" .*loops=(\d+)", plan).group(1))


def test_one_run_per_distinct_value_read(session):
    setup(session)
    sql = "SELECT o.id, s.x FROM o, LATERAL (SELECT x FROM i WHERE i.k = o.k) s"
    assert loops(session, sql, "Subquery Scan on s") == 4  # k: 1, 2, NULL, 9
    # Reading a vector column: equal vectors share a run too.
    sql = "SELECT o.id, s.n FROM o, LATERAL (SELECT count(*) AS n FROM i WHERE o.v IS NULL) s"
    assert loops(session, sql, "Subquery Scan on s") == 4  # [1,1], [0,1], NULL, [2,2]
    # Reading nothing of the left side: a plain join, run once.
    assert "Nested Loop" in "\n".join(
        r[0] for r in rows(session, "EXPLAIN SELECT * FROM o, LATERAL (SELECT 1 AS one) s"))


def test_pairs_in_left_row_order_then_the_runs_order(session):
    setup(session)
    got = rows(session, "SELECT o.id, s.x FROM o CROSS JOIN LATERAL (SELECT x FROM i WHERE "
                        "i.k = o.k ORDER BY x DESC) s")
    assert got == [(1, 11), (1, 10), (2, 20), (3, 11), (3, 10), (5, 20)]


def test_left_join_keeps_rows_without_a_run_row_or_a_true_condition(session):
    setup(session)
    got = rows(session, "SELECT o.id, s.x FROM o LEFT JOIN LATERAL (SELECT x FROM i WHERE "
                        "i.k = o.k) s ON s.x <> 10")
    assert got == [(1, 11), (2, 20), (3, 11), (4, None), (5, 20), (6, None)]


def test_agrees_with_the_correlated_subquery_form(session):
    setup(session)
    lateral = rows(session, "SELECT o.id, s.m FROM o, LATERAL (SELECT max(x) AS m FROM i "
                            "WHERE i.k = o.k) s ORDER BY o.id")
    scalar = rows(session, "SELECT o.id, (SELECT max(x) FROM i WHERE i.k = o.k) FROM o "
                           "ORDER BY o.id")
    assert lateral == scalar


def test_empty_left_side_and_empty_runs(session):
    setup(session)
    assert rows(session, "SELECT * FROM o, LATERAL (SELECT x FROM i WHERE i.k = o.k) s "
                         "WHERE o.id > 100") == []
    assert rows(session, "SELECT o.id, s.x FROM o LEFT JOIN LATERAL (SELECT x FROM i WHERE "
                         "i.k = o.k AND false) s ON true WHERE o.id < 3") == [(1, None), (2, None)]


def test_a_run_error_is_the_statements_error(session):
    setup(session)
    e = error(session, "SELECT * FROM o, LATERAL (SELECT 1 / (o.id - 3) AS z) s")
    assert e.sqlstate == "22012"
    e = error(session, "SELECT * FROM o, LATERAL (SELECT (SELECT x FROM i WHERE i.k = o.k) AS z) s")
    assert e.sqlstate == "21000"


def test_work_mem_bounds_the_output(session):
    setup(session)
    session.execute_one("SET work_mem = '64kB'")
    e = error(session, "SELECT * FROM o, LATERAL generate_series(1, 100000 + o.id) g")
    assert e.sqlstate == "53200"


def test_group_key_makes_vectors_hashable_and_equal_when_equal():
    col = pa.FixedSizeListArray.from_arrays(pa.array([1, 2, 1, 2, 0, 0, -0.0, 0.0], pa.float32()), 2)
    key = group_key(col)
    assert key[0] == key[1] and key[0] != key[2] and key[2] == key[3]
    lists = group_key(pa.array([[1], [1], None], pa.list_(pa.int32())))
    assert lists[0] == lists[1] and not lists[2].is_valid


def test_pairs_arithmetic():
    gids = np.array([0, 1, 0, 2])
    counts = np.array([2, 0, 3])
    li, ri = _pairs(gids, counts)
    assert li.tolist() == [0, 0, 2, 2, 3, 3, 3]
    assert ri.tolist() == [0, 1, 0, 1, 2, 3, 4]
