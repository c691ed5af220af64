"""Aggregates under the statement's memory limit: the grouping is reserved before it is built."""

from __future__ import annotations

from tests.sqlvec.execution.conftest import error, rows


def test_grouping_past_work_mem_fails_naming_the_aggregate(session):
    session.execute_one("CREATE TABLE t (g int, s text)")
    session.execute_one("INSERT INTO t SELECT i % 100, 'v' || i FROM generate_series(1, 100000) i")
    session.execute_one("SET work_mem = '1MB'")
    err = error(session, "SELECT g, string_agg(s, ',') FROM t GROUP BY g")
    assert err.sqlstate == "53200"
    assert "in HashAggregate (grouping 100000 rows)" in err.detail
    assert "its limit (work_mem) is 1MB" in err.detail
    session.execute_one("SET work_mem = '64MB'")
    assert rows(session, "SELECT g, count(*), min(s) FROM t WHERE g < 2 GROUP BY g ORDER BY g") \
        == [(0, 1000, "v100"), (1, 1000, "v1")]
    assert rows(session, "SELECT count(*), sum(g) FROM t") == [(100000, 4950000)]


def test_an_ordered_aggregate_over_many_rows(session):
    session.execute_one("CREATE TABLE t (g int, x int)")
    session.execute_one("INSERT INTO t SELECT i % 3, i FROM generate_series(1, 30000) i")
    got = rows(session, "SELECT g, (array_agg(x ORDER BY x DESC))[1] FROM t GROUP BY g ORDER BY g")
    assert got == [(0, 30000), (1, 29998), (2, 29999)]
