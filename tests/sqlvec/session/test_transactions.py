"""Transaction blocks and their DDL (session/transactions.py): schema changes are private to
the block, undone by ROLLBACK, ROLLBACK TO SAVEPOINT, a failed block and the session's end."""

from __future__ import annotations

import threading

import pytest

from sqlvec.database import Database
from sqlvec.errors import SqlVecError


def rows(session, sql: str) -> list[dict]:
    return session.execute_one(sql).table.to_pylist()


def tables(session) -> list[str]:
    return [r["relname"] for r in rows(
        session, "SELECT table_name AS relname FROM information_schema.tables "
                 "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1")]


def test_rollback_undoes_ddl_without_a_warning(db):
    s = db.connect()
    s.execute_one("CREATE TABLE t (id int PRIMARY KEY)")
    s.execute_one("BEGIN")
    s.execute_one("CREATE TABLE u (id int)")
    s.execute_one("ALTER TABLE t ADD COLUMN v text")
    result = s.execute_one("ROLLBACK")
    assert result.notices == []
    assert tables(s) == ["t"]
    assert [c.name for c in s.prepare("SELECT * FROM t").columns] == ["id"]


def test_commit_of_a_failed_block_rolls_its_ddl_back(db):
    s = db.connect()
    s.execute_one("BEGIN")
    s.execute_one("CREATE TABLE u (id int)")
    with pytest.raises(SqlVecError):
        s.execute_one("CREATE TABLE u (id int)")
    assert s.execute_one("COMMIT").tag == "ROLLBACK"
    assert tables(s) == []


def test_savepoint_before_the_first_ddl_restores_the_schema_before_it(db):
    s = db.connect()
    s.execute_one("BEGIN")
    s.execute_one("SAVEPOINT a")
    s.execute_one("CREATE TABLE u (id int)")
    s.execute_one("SAVEPOINT b")
    s.execute_one("CREATE TABLE w (id int)")
    s.execute_one("ROLLBACK TO b")
    assert tables(s) == ["u"]
    s.execute_one("ROLLBACK TO a")
    assert tables(s) == []
    s.execute_one("CREATE TABLE x (id int)")
    s.execute_one("COMMIT")
    assert tables(db.connect()) == ["x"]


def test_other_sessions_wait_and_the_sessions_end_releases_them(db):
    a, b = db.connect(), db.connect()
    a.execute_one("BEGIN")
    a.execute_one("CREATE TABLE u (id int)")
    b.execute_one("SET lock_timeout = 50")
    assert b.execute_one("SHOW lock_timeout").table.to_pylist() == [{"lock_timeout": "50ms"}]
    with pytest.raises(SqlVecError) as err:  # (the catalog shows a's table only once committed)
        b.execute_one("SELECT relname FROM pg_class")
    assert err.value.sqlstate == "55P03"
    assert b.execute_one("SELECT 1").table.num_rows == 1  # (reads nothing: does not wait)
    a.close()  # the connection went away: its block is rolled back, the lock released
    assert tables(b) == []


def test_a_serial_created_again_after_a_rollback_starts_at_one(db):
    s = db.connect()
    s.execute_one("BEGIN")
    s.execute_one("CREATE TABLE u (id serial, v int)")
    s.execute_one("INSERT INTO u (v) VALUES (1), (2)")
    s.execute_one("ROLLBACK")
    s.execute_one("CREATE TABLE u (id serial, v int)")
    assert rows(s, "INSERT INTO u (v) VALUES (1) RETURNING id") == [{"id": 1}]


def test_committed_ddl_and_rows_survive_a_restart(tmp_path):
    path = str(tmp_path / "db")
    with Database.open(path) as db:
        s = db.connect()
        s.execute_one("BEGIN")
        s.execute_one("CREATE TABLE u (id int PRIMARY KEY, v text)")
        s.execute_one("INSERT INTO u VALUES (1, 'a')")
        s.execute_one("CREATE TABLE w AS SELECT id * 2 AS d FROM u")
        s.execute_one("COMMIT")
    with Database.open(path) as db:
        s = db.connect()
        assert rows(s, "SELECT * FROM u") == [{"id": 1, "v": "a"}]
        assert rows(s, "SELECT * FROM w") == [{"d": 2}]


def test_a_statement_that_waited_for_ddl_is_planned_again(db):
    a, b = db.connect(), db.connect()
    a.execute_one("CREATE TABLE t (id int PRIMARY KEY)")
    insert = b.prepare("INSERT INTO t VALUES ($1)")
    star = b.prepare("SELECT * FROM t")
    a.execute_one("BEGIN")
    a.execute_one("ALTER TABLE t ADD COLUMN w int DEFAULT 7")
    done: list = []
    waiter = threading.Thread(target=lambda: done.append(b.run(insert, [1]).tag))
    waiter.start()  # waits for the block: its plan predates the new column
    a.execute_one("COMMIT")
    waiter.join(30)
    assert done == ["INSERT 0 1"]
    assert rows(b, "SELECT * FROM t") == [{"id": 1, "w": 7}]
    with pytest.raises(SqlVecError) as err:  # PostgreSQL's plancache refusal
        b.run(star, [])
    assert err.value.sqlstate == "0A000"
    assert err.value.message == "cached plan must not change result type"


def test_a_parameter_the_planner_typed_is_typed_again_after_ddl(db):
    """A parameter the client left untyped (OID 0, as psycopg sends a str) is typed by the
    planner, here vector(3); planned again after a catalog change it is typed the same way,
    not as the plain `vector` its OID alone names (which read as a changed plan: 0A000)."""
    a, b = db.connect(), db.connect()
    a.execute_one("CREATE TABLE t (id int, v vector(3))")
    insert = b.prepare("INSERT INTO t VALUES ($1, $2)", [21, 0])
    a.execute_one("CREATE TABLE side (x int)")  # any catalog change
    assert b.run(insert, [1, "[1,2,3]"]).tag == "INSERT 0 1"
    b.execute_one("PREPARE ins (int) AS INSERT INTO t VALUES ($1, '[4,5,6]')")
    a.execute_one("DROP TABLE side")
    b.execute_one("EXECUTE ins (2)")
    assert rows(b, "SELECT id FROM t ORDER BY id") == [{"id": 1}, {"id": 2}]


def test_autocommit_restart_identity_is_kept_whole_or_not_at_all(tmp_path, monkeypatch):
    """TRUNCATE ... RESTART IDENTITY in autocommit writes the emptied table and the restarted
    sequence in one manifest version: a write failing (a full disk) leaves both as they were,
    after reopening too, never the rows gone with the sequence going on."""
    path = str(tmp_path / "db")
    with Database.open(path) as db:
        s = db.connect()
        s.execute_one("CREATE TABLE rt (id serial, v int)")
        s.execute_one("INSERT INTO rt (v) SELECT g FROM generate_series(1, 10) g")
        store = db.store()
        write, failures = store._commit_manifest, [OSError(28, "No space left on device")]

        def fail_once() -> None:  # the first manifest actually written fails
            if failures and not store.deferred:
                raise failures.pop()
            write()

        monkeypatch.setattr(store, "_commit_manifest", fail_once)
        with pytest.raises(SqlVecError):
            s.execute_one("TRUNCATE rt RESTART IDENTITY")
        monkeypatch.undo()
    with Database.open(path) as db:
        s = db.connect()
        left = rows(s, "SELECT count(*) AS n FROM rt")[0]["n"]
        next_id = rows(s, "INSERT INTO rt (v) VALUES (0) RETURNING id")[0]["id"]
        # Neither: the rows, and the sequence past 10 (values reserved before the reopening
        # are skipped, as PostgreSQL's); or both: no rows, and the sequence at 1.
        assert (left == 10 and next_id > 10) or (left == 0 and next_id == 1)
