"""Window functions under the statement's memory limit: each window's layout is reserved
before it is built, and released when the next window starts."""

from __future__ import annotations

from tests.sqlvec.execution.conftest import error, rows


def test_a_window_past_work_mem_fails_naming_it(session):
    session.execute_one("CREATE TABLE t (g int, x int)")
    session.execute_one("INSERT INTO t SELECT i % 10, i FROM generate_series(1, 100000) i")
    session.execute_one("SET work_mem = '2MB'")
    err = error(session, "SELECT x, row_number() OVER (PARTITION BY g ORDER BY x) FROM t")
    assert err.sqlstate == "53200" and "in WindowAgg (row_number over 100000 rows)" in err.detail


def test_many_windows_fit_when_each_fits(session):
    session.execute_one("CREATE TABLE t (g int, x int)")
    session.execute_one("INSERT INTO t SELECT i % 10, i FROM generate_series(1, 20000) i")
    session.execute_one("SET work_mem = '8MB'")  # one window's layout fits, not six at once
    got = rows(session, "SELECT max(a), max(b), max(c), max(d), max(e), max(f) FROM ("
                        "SELECT row_number() OVER w a, rank() OVER w b, dense_rank() OVER w c, "
                        "count(*) OVER w d, sum(x) OVER w e, lag(x) OVER w f FROM t "
                        "WINDOW w AS (PARTITION BY g ORDER BY x)) s")
    assert got == [(2000, 2000, 2000, 2000, sum(range(10, 20001, 10)), 19990)]
