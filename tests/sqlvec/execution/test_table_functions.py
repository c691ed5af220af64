"""generate_series reserves its rows before making them (53200 past work_mem)."""

from __future__ import annotations

import time

from tests.sqlvec.execution.conftest import error, rows


def test_a_series_past_work_mem_fails_at_once(session):
    start = time.monotonic()
    err = error(session, "SELECT count(*) FROM generate_series(1, 10000000000)")
    assert time.monotonic() - start < 2
    assert err.sqlstate == "53200"
    assert "Function Scan on generate_series (10000000000 rows of 16 bytes)" in err.detail
    assert rows(session, "SELECT count(*), sum(g) FROM generate_series(1, 1000000) g") \
        == [(1000000, 500000500000)]


def test_a_month_series_is_bounded_by_work_mem(session):
    session.execute_one("SET work_mem = '1MB'")
    err = error(session, "SELECT count(*) FROM generate_series('2000-01-01'::timestamp, "
                         "'9000-01-01'::timestamp, '1 month')")
    assert err.sqlstate == "53200" and "Function Scan on generate_series" in err.detail
    assert rows(session, "SELECT count(*) FROM generate_series('2000-01-01'::timestamp, "
                         "'2001-01-01'::timestamp, '1 month')") == [(13,)]

