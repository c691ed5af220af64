"""Which statements a worker process answers itself (`wire.worker.read_only`), and which
count towards handing a connection to the primary (`wire.worker.writes`)."""

from __future__ import annotations

import pytest

from wire.worker import read_only, writes


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "  select id from items order by embedding <-> $1 limit 10;",
    "WITH t AS (SELECT 1) SELECT * FROM t",
    "TABLE items",
    "VALUES (1), (2)",
    "SHOW search_path",
    "SELECT pg_sleep(1)",
    "SELECT relname FROM pg_class",
])
def test_reads_are_answered_in_the_worker(sql):
    assert read_only(sql)


@pytest.mark.parametrize("sql", [
    "INSERT INTO t VALUES (1)",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "SELECT * INTO t2 FROM t",
    "SELECT nextval('s')",
    "SELECT currval('s')",
    "SELECT last_value, is_called FROM s",  # the last value handed out: the primary's
    "SELECT last_value FROM pg_sequences",
    "SELECT set_config('search_path', 'x', false)",
    "SELECT pg_advisory_lock(1)",
    "SELECT * FROM pg_stat_activity",
    "SELECT pg_backend_pid()",
    "SELECT pg_cancel_backend(42)",
    "SELECT pg_blocking_pids(42)",
    "SELECT * FROM t FOR UPDATE",
    "SELECT 1; SELECT 2",
    "SELECT 1 -- comment",
    "BEGIN",
    "SET search_path = x",
    "EXPLAIN ANALYZE SELECT 1",
    "DECLARE c CURSOR FOR SELECT 1",
    "COPY t TO STDOUT",
    "SELECT 'update' AS word",  # a word in a string: the primary answers, still correctly
])
def test_anything_else_goes_to_the_primary(sql):
    assert not read_only(sql)


@pytest.mark.parametrize("sql", [
    "INSERT INTO t VALUES ($1, $2)",
    "  update t SET v = 1 WHERE id = 2",
    "DELETE FROM t",
    "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
    "COPY t FROM STDIN",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
])
def test_data_changes_count_towards_a_handover(sql):
    assert writes(sql)


@pytest.mark.parametrize("sql", [
    # What clients send at connect or once, and reads, leave a connection where it is.
    "SET search_path = x",
    "BEGIN",
    "COMMIT",
    "CREATE TABLE t (id int)",
    "CREATE INDEX ON t (id)",
    "SELECT 1",
    "WITH t AS (SELECT 1) SELECT * FROM t",
    "SELECT * INTO t2 FROM t",
])
def test_anything_else_does_not(sql):
    assert not writes(sql)


def test_a_workers_statistics_summary_merges_as_its_calls():
    """A worker sends each statement's calls summarised; the primary's counters end up as if
    it had recorded every call itself."""
    from sqlvec.catalog.pg_stat import StatementStats
    from wire.worker import summary

    calls = [(2.0, 1), (4.0, 1), (9.0, 0), (1.5, 5)]
    direct, merged = StatementStats(), StatementStats()
    for ms, rows in calls:
        direct.record(10, 5, 3, "SELECT 1", ms, rows)
    merged.merge(10, 5, 3, "SELECT 1", *summary(calls))
    (_, a), = direct.entries()
    (_, b), = merged.entries()
    assert summary(calls)[:4] == [4, 16.5, 1.5, 9.0] and summary(calls)[6] == 7
    assert (b.calls, b.total, b.minimum, b.maximum, b.rows) == \
        (a.calls, a.total, a.minimum, a.maximum, a.rows)
    assert (b.mean, b.m2) == pytest.approx((a.mean, a.m2))
