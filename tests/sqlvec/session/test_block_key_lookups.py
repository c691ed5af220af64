"""A block's statements by primary key read its own writes through its own index of their keys
(TableOverlay.found_by_key) rather than merging all of them: every answer is checked against
the same query through a full scan (`id + 0`, which no key lookup serves)."""

from __future__ import annotations

import pytest

from sqlvec.errors import SqlVecError


def rows(session, sql: str) -> list[tuple]:
    return [tuple(r.values()) for r in session.execute_one(sql).table.to_pylist()]


def same_by_key_and_scan(s, ids: list[int]) -> list[tuple]:
    """The rows holding `ids`, by key and by a full scan, which must agree."""
    listed = ", ".join(map(str, ids))
    by_key = sorted(rows(s, f"SELECT id, v FROM t WHERE id IN ({listed})"))
    scanned = sorted(rows(s, f"SELECT id, v FROM t WHERE id + 0 IN ({listed})"))
    assert by_key == scanned
    if len(ids) == 1:
        assert sorted(rows(s, f"SELECT id, v FROM t WHERE id = {ids[0]}")) == scanned
    return by_key


@pytest.fixture
def s(db):
    session = db.connect()
    session.execute_one("CREATE TABLE t (id bigint PRIMARY KEY, v int)")
    session.execute_one("INSERT INTO t SELECT g, 0 FROM generate_series(1, 50) g")
    return session


def test_own_insert_then_update_by_key(s):
    s.execute_one("BEGIN")
    s.execute_one("INSERT INTO t VALUES (100, 1), (101, 1)")
    s.execute_one("UPDATE t SET v = v + 1 WHERE id = 100")
    s.execute_one("UPDATE t SET v = v + 10 WHERE id = 100")
    s.execute_one("UPDATE t SET v = v + 1 WHERE id = 7")
    assert same_by_key_and_scan(s, [100]) == [(100, 12)]
    assert same_by_key_and_scan(s, [7, 100, 101, 999]) == [(7, 1), (100, 12), (101, 1)]
    s.execute_one("COMMIT")
    assert same_by_key_and_scan(s, [7, 100, 101]) == [(7, 1), (100, 12), (101, 1)]
    assert rows(s, "SELECT count(*) FROM t") == [(52,)]


def test_delete_then_insert_the_same_key(s):
    s.execute_one("BEGIN")
    s.execute_one("DELETE FROM t WHERE id = 5")
    assert same_by_key_and_scan(s, [5]) == []
    s.execute_one("INSERT INTO t VALUES (5, 50)")
    assert same_by_key_and_scan(s, [5]) == [(5, 50)]
    s.execute_one("DELETE FROM t WHERE id = 5")  # the block's own row this time
    assert same_by_key_and_scan(s, [5]) == []
    s.execute_one("INSERT INTO t VALUES (5, 51)")
    s.execute_one("UPDATE t SET v = v + 1 WHERE id = 5")
    assert same_by_key_and_scan(s, [4, 5, 6]) == [(4, 0), (5, 52), (6, 0)]
    with pytest.raises(SqlVecError) as err:
        s.execute_one("INSERT INTO t VALUES (5, 0)")
    assert err.value.sqlstate == "23505"
    s.execute_one("ROLLBACK")
    assert same_by_key_and_scan(s, [5]) == [(5, 0)]


def test_savepoint_rollback_between_updates(s):
    s.execute_one("BEGIN")
    s.execute_one("INSERT INTO t VALUES (200, 0)")
    s.execute_one("UPDATE t SET v = 1 WHERE id = 200")
    s.execute_one("UPDATE t SET v = 1 WHERE id = 3")
    s.execute_one("SAVEPOINT a")
    s.execute_one("UPDATE t SET v = 2 WHERE id = 200")
    s.execute_one("DELETE FROM t WHERE id = 3")
    s.execute_one("INSERT INTO t VALUES (201, 2)")
    assert same_by_key_and_scan(s, [3, 200, 201]) == [(200, 2), (201, 2)]
    s.execute_one("ROLLBACK TO SAVEPOINT a")
    assert same_by_key_and_scan(s, [3, 200, 201]) == [(3, 1), (200, 1)]
    s.execute_one("UPDATE t SET v = v + 1 WHERE id = 200")
    s.execute_one("COMMIT")
    assert same_by_key_and_scan(s, [3, 200, 201]) == [(3, 1), (200, 2)]


def test_a_failed_statement_leaves_the_lookups_right(s):
    s.execute_one("BEGIN")
    s.execute_one("INSERT INTO t VALUES (300, 0), (301, 0)")
    s.execute_one("SAVEPOINT a")
    with pytest.raises(SqlVecError):  # 300 becomes 301: the statement fails, undone
        s.execute_one("UPDATE t SET id = 301 WHERE id = 300")
    s.execute_one("ROLLBACK TO SAVEPOINT a")
    assert same_by_key_and_scan(s, [300, 301]) == [(300, 0), (301, 0)]
    s.execute_one("UPDATE t SET id = 302 WHERE id = 300")  # a key change of its own row
    assert same_by_key_and_scan(s, [300, 301, 302]) == [(301, 0), (302, 0)]
    s.execute_one("COMMIT")


def test_deferrable_key_repeated_in_the_block(db):
    s = db.connect()
    s.execute_one("CREATE TABLE t (id bigint UNIQUE DEFERRABLE INITIALLY DEFERRED, v int)")
    s.execute_one("INSERT INTO t VALUES (1, 0)")
    s.execute_one("BEGIN")
    s.execute_one("INSERT INTO t VALUES (1, 1), (1, 2)")  # legal until COMMIT
    assert same_by_key_and_scan(s, [1]) == [(1, 0), (1, 1), (1, 2)]
    s.execute_one("DELETE FROM t WHERE id = 1 AND v = 1")
    assert same_by_key_and_scan(s, [1]) == [(1, 0), (1, 2)]
    s.execute_one("ROLLBACK")


def test_another_sessions_uncommitted_rows_stay_unseen(db, s):
    other = db.connect()
    other.execute_one("BEGIN")
    other.execute_one("INSERT INTO t VALUES (400, 4)")
    s.execute_one("BEGIN")
    s.execute_one("INSERT INTO t VALUES (401, 4)")
    assert same_by_key_and_scan(s, [400, 401]) == [(401, 4)]
    assert same_by_key_and_scan(other, [400, 401]) == [(400, 4)]
    other.execute_one("ROLLBACK")
    s.execute_one("COMMIT")
