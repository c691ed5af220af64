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


def test_merging_summaries_counts_as_recording_each_call():
    """Another process's calls arrive summarised (`merge`): the counters, the mean and the
    standard deviation come out as if each call had been recorded here."""
    times = [(3.0, 1), (0.5, 0), (7.25, 4), (1.0, 2), (2.5, 1), (9.0, 3)]
    one = StatementStats()
    for ms, rows in times:
        one.record(1, 5, 9, "SELECT $1", ms, rows)
    merged = StatementStats()
    merged.record(1, 5, 9, "SELECT $1", *times[0])  # some calls counted here first
    for part in (times[1:3], times[3:]):
        summary = StatementStats()
        for ms, rows in part:
            summary.record(1, 5, 9, "SELECT $1", ms, rows)
        (_, s), = summary.entries()
        merged.merge(1, 5, 9, "SELECT $1", s.calls, s.total, s.minimum, s.maximum, s.mean,
                     s.m2, s.rows)
    merged.merge(1, 5, 9, "SELECT $1", 0, 0.0, math.inf, 0.0, 0.0, 0.0, 0)  # nothing
    (_, a), = one.entries()
    (_, b), = merged.entries()
    assert (b.calls, b.total, b.minimum, b.maximum, b.rows) == \
        (a.calls, a.total, a.minimum, a.maximum, a.rows) == (6, 23.25, 0.5, 9.0, 11)
    assert b.mean == pytest.approx(a.mean)
    assert b.m2 == pytest.approx(a.m2)
