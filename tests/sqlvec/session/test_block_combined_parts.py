"""A block's single-row INSERTs are combined into one part every COMBINE_EVERY statements
(TableOverlay.add), so that its COMMIT costs time linear in its rows: what the block sees of
its own rows, savepoints taken between two combinations, and what a COMMIT leaves (after a
restart, and as a crash left it) must not change."""

from __future__ import annotations

import shutil

import pytest

from sqlvec.database import Database
from sqlvec.errors import SqlVecError
from sqlvec.execution.transaction import COMBINE_EVERY
from sqlvec.storage.store import StoreOptions

N = COMBINE_EVERY


def rows(session, sql: str) -> list[tuple]:
    return [tuple(r.values()) for r in session.execute_one(sql).table.to_pylist()]


def insert_each(s, ids) -> None:
    insert = s.prepare("INSERT INTO t VALUES ($1, $2)", [20, 23])
    for i in ids:
        s.run(insert, [i, i])


def insert_fails_as_duplicate(s, key: int) -> None:
    """An INSERT of `key`, which a row of the block holds, fails with 23505 (the block ends)."""
    with pytest.raises(SqlVecError) as duplicate:
        s.execute_one(f"INSERT INTO t VALUES ({key}, 0)")
    assert duplicate.value.sqlstate == "23505"
    s.execute_one("ROLLBACK")


@pytest.fixture
def s(db):
    session = db.connect()
    session.execute_one("CREATE TABLE t (id bigint PRIMARY KEY, v int)")
    return session


def test_rollback_to_a_savepoint_before_a_combination_drops_exactly_the_rows_after_it(s):
    s.execute_one("BEGIN")
    insert_each(s, range(N - 10))
    s.execute_one("SAVEPOINT a")
    insert_each(s, range(N - 10, 2 * N + 5))  # combined twice past the savepoint
    s.execute_one("UPDATE t SET v = -1 WHERE id = 3")  # a row inserted before it
    s.execute_one("DELETE FROM t WHERE id = 5")
    assert rows(s, "SELECT count(*), sum(v) FROM t") == \
        [(2 * N + 4, sum(range(2 * N + 5)) - 3 - 1 - 5)]
    s.execute_one("ROLLBACK TO a")
    assert rows(s, "SELECT id, v FROM t ORDER BY id") == [(i, i) for i in range(N - 10)]
    assert rows(s, "SELECT v FROM t WHERE id = 3") == [(3,)]
    insert_each(s, range(N - 10, N + 20))  # the ids the rolled back rows held are free again
    s.execute_one("COMMIT")
    assert rows(s, "SELECT id, v FROM t ORDER BY id") == [(i, i) for i in range(N + 20)]


def test_a_savepoint_after_a_combination_keeps_the_combined_rows(s):
    s.execute_one("BEGIN")
    insert_each(s, range(N + 7))
    s.execute_one("SAVEPOINT a")
    s.execute_one("UPDATE t SET v = v + 100 WHERE id = 1")
    insert_each(s, range(N + 7, 2 * N))
    s.execute_one("ROLLBACK TO a")
    s.execute_one("DELETE FROM t WHERE id = 2")
    s.execute_one("COMMIT")
    assert rows(s, "SELECT id, v FROM t ORDER BY id") == [(i, i) for i in range(N + 7) if i != 2]


def test_own_rows_in_combined_parts_are_updated_deleted_and_keyed_in_order(s):
    s.execute_one("BEGIN")
    insert_each(s, range(3 * N))
    update = s.prepare("UPDATE t SET v = v + 1 WHERE id = $1", [20])
    for i in range(0, 3 * N, 7):  # rows of every combined part, and of the newest ones
        s.run(update, [i])
        s.run(update, [i])
    s.execute_one(f"DELETE FROM t WHERE id IN (1, {N}, {2 * N + 1})")
    assert rows(s, f"SELECT v FROM t WHERE id = {7 * 5}") == [(7 * 5 + 2,)]
    assert rows(s, f"SELECT v FROM t WHERE id = {N}") == []
    insert_fails_as_duplicate(s, 14)
    s.execute_one("BEGIN")
    insert_each(s, range(3 * N))
    for i in range(0, 3 * N, 7):
        s.run(update, [i])
    s.execute_one(f"DELETE FROM t WHERE id IN (1, {N}, {2 * N + 1})")
    insert_each(s, [N])  # a deleted row's key taken again
    s.execute_one("COMMIT")
    expected = {i: i + (i % 7 == 0) for i in range(3 * N) if i not in (1, N, 2 * N + 1)}
    expected[N] = N
    assert rows(s, "SELECT id, v FROM t ORDER BY id") == sorted(expected.items())


def test_a_20k_block_is_all_there_after_commit_a_restart_and_a_crash(tmp_path):
    path, crashed = str(tmp_path / "db"), str(tmp_path / "crashed")
    options = StoreOptions(fsync=False)
    with Database.open(path, options=options) as db:
        s = db.connect()
        s.execute_one("CREATE TABLE t (id bigint PRIMARY KEY, v int)")
        s.execute_one("BEGIN")
        insert_each(s, range(20_000))
        s.execute_one("UPDATE t SET v = -1 WHERE id = 17")
        s.execute_one("DELETE FROM t WHERE id = 19999")
        s.execute_one("COMMIT")
        shutil.copytree(path, crashed, ignore=shutil.ignore_patterns("LOCK"))  # only the WAL
    expected = [(19_999, sum(range(19_999)) - 17 - 1, 19_998)]
    for directory in (path, crashed):
        with Database.open(directory, options=options) as db:
            assert rows(db.connect(), "SELECT count(*), sum(v), max(id) FROM t") == expected


def test_several_own_rows_of_one_combined_part_dropped_at_once(s):
    s.execute_one("BEGIN")
    insert_each(s, range(2 * N))
    s.execute_one("DELETE FROM t WHERE id IN (3, 5, 9)")  # one part: its rows taken at once
    s.execute_one(f"UPDATE t SET v = -v WHERE id BETWEEN {N - 2} AND {N + 2}")  # two parts
    assert rows(s, "SELECT id FROM t WHERE id IN (3, 5, 9)") == []
    insert_fails_as_duplicate(s, 4)
    s.execute_one("BEGIN")
    insert_each(s, range(2 * N))
    s.execute_one("DELETE FROM t WHERE id IN (3, 5, 9)")
    s.execute_one(f"UPDATE t SET v = -v WHERE id BETWEEN {N - 2} AND {N + 2}")
    insert_each(s, [5])
    s.execute_one("COMMIT")
    expected = {i: -i if N - 2 <= i <= N + 2 else i for i in range(2 * N) if i not in (3, 9)}
    assert rows(s, "SELECT id, v FROM t ORDER BY id") == sorted(expected.items())
