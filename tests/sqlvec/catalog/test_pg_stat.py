"""pg_stat_statements' counters (the views themselves are exercised end to end in
tests/e2e/test_pg_stat.py)."""

from __future__ import annotations

import math

import pytest

from sqlvec.catalog.pg_stat import StatementStats


def test_counts_calls_times_and_rows():
    stats = StatementStats()
    for ms in (1.0, 2.0, 6.0):
        stats.record(10, 5, 77, "SELECT $1", ms, 2)
    stats.record(10, 5, 78, "SELECT $1, $2", 4.0, 1)
    (key, e), = [(k, v) for k, v in stats.entries() if k[2] == 77]
    assert key == (10, 5, 77) and e.query == "SELECT $1"
    assert (e.calls, e.total, e.minimum, e.maximum, e.mean, e.rows) == (3, 9.0, 1.0, 6.0, 3.0, 6)
    assert math.sqrt(e.m2 / e.calls) == pytest.approx(math.sqrt(14 / 3))


def test_reset_matches_every_given_argument():
    stats = StatementStats()
    stats.record(10, 5, 1, "a", 1.0, 0)
    stats.record(11, 5, 2, "b", 1.0, 0)
    stats.record(11, 6, 3, "c", 1.0, 0)
    stats.reset(userid=11, dbid=5)
    assert sorted(k[2] for k, _ in stats.entries()) == [1, 3]
    stats.reset()
    assert stats.entries() == []


def test_bounded_by_evicting_the_least_called():
    stats = StatementStats(limit=10)
    for q in range(10):
        for _ in range(q + 1):
            stats.record(1, 1, q, str(q), 1.0, 0)
    stats.record(1, 1, 99, "new", 1.0, 0)
    kept = sorted(k[2] for k, _ in stats.entries())
    assert kept == [2, 3, 4, 5, 6, 7, 8, 9, 99]
