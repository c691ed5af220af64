"""session/live_reads.py: which queries read the server's live state only, and so run without
the DDL lock while another transaction's schema changes are open; the others still wait."""

from __future__ import annotations

import threading

import pytest

from sqlvec.errors import SqlVecError


@pytest.fixture
def session(db):
    s = db.connect()
    s.execute_one("CREATE TABLE t (id int PRIMARY KEY, n int)")
    s.execute_one("CREATE SEQUENCE s")
    yield s
    s.close()


@pytest.mark.parametrize("sql", [
    "SELECT * FROM pg_stat_activity",
    "SELECT pid, pg_blocking_pids(pid) FROM pg_catalog.pg_stat_activity "
    "WHERE cardinality(pg_blocking_pids(pid)) > 0",
    "SELECT l.pid, a.query FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE NOT l.granted",
    "SELECT query, calls FROM pg_stat_statements ORDER BY calls DESC LIMIT 5",
    "SELECT count(*), max(calls) FROM pg_stat_statements",
    "SELECT setting FROM pg_settings WHERE name = 'lock_timeout'",
    "SELECT phase, blocks_done FROM pg_stat_progress_create_index",
    "SELECT current_setting('lock_timeout'), version(), pg_backend_pid(), now()",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle'",
    "SELECT pg_cancel_backend(1), 1::int8, 'a'::text",
])
def test_queries_of_the_live_state_are_live(session, sql):
    prepared = session.prepare(sql)
    assert prepared.live and not prepared.tables


@pytest.mark.parametrize("sql", [
    "SELECT * FROM t",
    "SELECT * FROM pg_class",
    "SELECT * FROM pg_stat_activity, t",
    "SELECT * FROM pg_stat_activity WHERE pid IN (SELECT id FROM t)",
    "SELECT nextval('s')",
    "SELECT last_value FROM s",
    "SELECT 't'::regclass",
    "SELECT pg_get_indexdef(1)",
    "SELECT * FROM pg_stat_user_tables",
    "WITH a AS (SELECT pid FROM pg_stat_activity) SELECT * FROM a",
    "SELECT * FROM pg_stat_activity FOR UPDATE",
])
def test_other_queries_are_not(session, sql):
    try:
        prepared = session.prepare(sql)
    except SqlVecError:
        return  # (refused: it never runs)
    assert not prepared.live


def test_a_user_table_named_like_a_live_view_is_read_under_the_lock(session):
    session.execute_one("CREATE TABLE pg_locks (id int)")
    prepared = session.prepare("SELECT * FROM pg_locks")
    assert not prepared.live and prepared.tables


def test_live_queries_answer_while_a_block_holds_the_lock_and_others_wait(db, session):
    block = db.connect()
    block.execute_one("BEGIN")
    block.execute_one("ALTER TABLE t ADD COLUMN x int")
    result = session.execute_one(
        "SELECT pid FROM pg_stat_activity WHERE state = 'idle in transaction'")
    assert result.table.column(0).to_pylist() == [block.pid]
    assert session.execute_one(f"SELECT pg_blocking_pids({block.pid})").table.column(
        0).to_pylist() == [[]]
    session.execute_one("SET lock_timeout = '100ms'")
    with pytest.raises(SqlVecError) as waited:
        session.execute_one("SELECT * FROM t")
    assert waited.value.sqlstate == "55P03"
    ended = threading.Timer(0.3, lambda: block.execute_one("ROLLBACK"))
    ended.start()
    session.execute_one("SET lock_timeout = 0")
    assert session.execute_one("SELECT * FROM t").table.column_names == ["id", "n"]
    ended.join()
    block.close()


def test_a_live_plan_is_made_again_when_a_user_table_takes_its_name(session):
    prepared = session.prepare("SELECT count(*) FROM pg_locks")
    assert prepared.live and session.run(prepared).rows() == [(0,)]
    session.execute_one("CREATE TABLE pg_locks (id int)")
    session.execute_one("INSERT INTO pg_locks VALUES (1), (2), (3)")
    assert session.run(prepared).rows() == [(3,)]
