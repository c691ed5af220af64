"""UNIQUE and CHECK constraints in the engine: enforced on every write path, kept across a
restart, sealing and compaction, and following renames and dropped columns."""

from __future__ import annotations

import pyarrow as pa
import pytest

from sqlvec.database import Database
from sqlvec.errors import CheckViolation, UniqueViolation
from tests.sqlvec.execution.conftest import error, rows


def test_constraints_survive_restart_seal_and_compaction(tmp_path):
    path = str(tmp_path / "data")
    db = Database.open(path)
    s = db.connect()
    s.execute_one("CREATE TABLE t (id int PRIMARY KEY, u text UNIQUE, n int CHECK (n >= 0))")
    s.execute_one("CREATE UNIQUE INDEX t_n_idx ON t (n)")
    s.execute_one("INSERT INTO t SELECT g, 'u' || g, g FROM generate_series(1, 50) g")
    s.execute_one("INSERT INTO t VALUES (51, NULL, NULL), (52, NULL, NULL)")
    store = db.store()
    table = db.catalog().table("t", None, ["public"])
    store.seal(table.id)
    s.execute_one("DELETE FROM t WHERE id <= 10")
    store.compact(table.id)
    s.close()
    db.close()

    db = Database.open(path)
    s = db.connect()
    try:
        assert error(s, "INSERT INTO t VALUES (100, 'u20', 100)").sqlstate == "23505"
        assert error(s, "INSERT INTO t VALUES (100, 'new', 20)").message == \
            'duplicate key value violates unique constraint "t_n_idx"'
        assert error(s, "INSERT INTO t VALUES (100, 'new', -1)").sqlstate == "23514"
        # Keys of deleted rows are free; NULLs never collide.
        s.execute_one("INSERT INTO t VALUES (5, 'u5', 5), (53, NULL, NULL)")
        table = db.catalog().table("t", None, ["public"])
        held = {k.def_.name: len(k.index) for k in table.keys}
        assert held == {"t_pkey": 44, "t_u_key": 41, "t_n_idx": 41}
        assert rows(s, "SELECT count(*) FROM t WHERE u IS NULL") == [(3,)]
    finally:
        s.close()
        db.close()


def test_checks_apply_to_the_bulk_api_and_copy_paths(session):
    session.execute_one("CREATE TABLE b (id int, v float8, CONSTRAINT b_v_positive CHECK (v > 0))")
    api = session.database.table("b")
    api.insert({"id": [1, 2], "v": [1.5, 2.5]})
    with pytest.raises(CheckViolation) as caught:
        api.insert(pa.table({"id": [3, 4], "v": [3.0, -4.0]}))
    assert caught.value.constraint == "b_v_positive"
    assert caught.value.detail == "Failing row contains (4, -4)."
    assert rows(session, "SELECT id FROM b ORDER BY id") == [(1,), (2,)]


def test_constraints_follow_column_renames_and_drops(session):
    session.execute_one("CREATE TABLE r (a int CHECK (a > 0), b int UNIQUE, c int, "
                        "CHECK (b < c))")
    session.execute_one("ALTER TABLE r RENAME COLUMN a TO x")
    assert rows(session, "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conname = 'r_a_check'") == [("CHECK ((x > 0))",)]
    assert error(session, "INSERT INTO r VALUES (0, 1, 2)").sqlstate == "23514"
    session.execute_one("ALTER TABLE r DROP COLUMN c")
    assert rows(session, "SELECT conname FROM pg_constraint WHERE conrelid = 'r'::regclass "
                "AND contype IN ('u', 'c') ORDER BY 1") == [("r_a_check",), ("r_b_key",)]
    session.execute_one("INSERT INTO r VALUES (1, 1)")
    assert error(session, "INSERT INTO r VALUES (2, 1)").sqlstate == "23505"


def test_unique_checks_inside_a_transaction(session):
    session.execute_one("CREATE TABLE q (id int PRIMARY KEY, u int UNIQUE)")
    session.execute_one("BEGIN")
    session.execute_one("INSERT INTO q VALUES (1, 1), (2, NULL), (3, NULL)")
    with pytest.raises(UniqueViolation) as caught:
        session.execute_one("INSERT INTO q VALUES (4, 1)")
    assert caught.value.constraint == "q_u_key"
    session.execute_one("ROLLBACK")
    session.execute_one("BEGIN")
    session.execute_one("INSERT INTO q VALUES (1, 1)")
    session.execute_one("UPDATE q SET u = 2 WHERE id = 1")
    session.execute_one("INSERT INTO q VALUES (2, 1)")
    session.execute_one("COMMIT")
    assert rows(session, "SELECT id, u FROM q ORDER BY id") == [(1, 2), (2, 1)]
    # A key lookup through the unique constraint's index.
    assert rows(session, "SELECT id FROM q WHERE u = 1") == [(2,)]
    plan = "\n".join(r[0] for r in rows(session, "EXPLAIN SELECT id FROM q WHERE u = 1"))
    assert "q_u_key" in plan


def test_check_refusals(session):
    assert error(session, "CREATE TABLE x (a int CHECK (a IN (SELECT 1)))").sqlstate == "0A000"
    assert error(session, "CREATE TABLE x (a int CHECK (count(*) > 0))").sqlstate == "42803"
    session.execute_one("CREATE TABLE v (id int, e vector(2))")
    assert error(session, "CREATE UNIQUE INDEX ON v (e)").sqlstate == "0A000"


def test_drop_constraint_if_exists_of_a_missing_name_is_a_notice(session):
    session.execute_one("CREATE TABLE dn (a int CHECK (a > 0))")
    result = session.execute_one("ALTER TABLE dn DROP CONSTRAINT IF EXISTS nope")
    assert [(n.severity, n.message) for n in result.notices] == [
        ("NOTICE", 'constraint "nope" of relation "dn" does not exist, skipping')]
    result = session.execute_one("ALTER TABLE dn DROP CONSTRAINT IF EXISTS dn_a_check")
    assert result.notices == []
    session.execute_one("INSERT INTO dn VALUES (-1)")  # the check is gone


# A CHECK's names are resolved once, by the binder, against the table's row: PostgreSQL 16's
# errors, at their position in CREATE TABLE (ALTER TABLE ... ADD CONSTRAINT reports none).
@pytest.mark.parametrize(("sql", "sqlstate", "message", "position"), [
    ("CREATE TABLE c (a int, b int CHECK (nope > 0))", "42703", 'column "nope" does not exist',
     37),
    ("CREATE TABLE c (a int, CHECK (c.nope > 0))", "42703", "column c.nope does not exist", 31),
    ("CREATE TABLE c (a int, CHECK (x.a > 0))", "42P01",
     'missing FROM-clause entry for table "x"', 31),
    ("CREATE TABLE c (a int CHECK (xmin IS NOT NULL))", "42P10",
     'system column "xmin" reference in check constraint is invalid', 30),
    ("CREATE TABLE c (a int CHECK (_rowid > 0))", "42703", 'column "_rowid" does not exist', 30),
    ("CREATE TABLE c (a int CHECK (a + 1))", "42804",
     "argument of CHECK must be type boolean, not type integer", 30),
    ("ALTER TABLE k ADD CHECK (zz < 1)", "42703", 'column "zz" does not exist', None),
])
def test_names_in_a_check_fail_as_postgres(session, sql, sqlstate, message, position):
    session.execute_one("CREATE TABLE k (a int)")
    e = error(session, sql)
    assert (e.sqlstate, e.message, e.position) == (sqlstate, message, position)


def test_a_check_reads_row_comparisons_and_tableoid(session):
    session.execute_one("CREATE TABLE c (a int, b int, CONSTRAINT own CHECK (tableoid > 0), "
                        "CONSTRAINT pair CHECK ((a, b) <> (0, 0)))")
    session.execute_one("INSERT INTO c VALUES (1, 0), (0, 1)")
    e = error(session, "INSERT INTO c VALUES (0, 0)")
    assert (e.sqlstate, e.constraint) == ("23514", "pair")
    assert rows(session, "SELECT a, b FROM c ORDER BY a") == [(0, 1), (1, 0)]


def test_a_new_column_type_recompiles_the_checks_that_read_it(session):
    # As PostgreSQL: the condition's error fails the ALTER (without a position).
    session.execute_one("CREATE TABLE c (a int, b int CHECK (a < b))")
    for sql in ("ALTER TABLE c ALTER COLUMN a TYPE text",
                "ALTER TABLE c ALTER COLUMN a TYPE text USING a::text"):
        e = error(session, sql)
        assert (e.sqlstate, e.message, e.position) == \
            ("42883", "operator does not exist: text < integer", None)
    session.execute_one("ALTER TABLE c ALTER COLUMN a TYPE bigint, "
                        "ALTER COLUMN b TYPE numeric USING b + 0.5")
    assert error(session, "INSERT INTO c VALUES (1, 1)").sqlstate == "23514"
    session.execute_one("INSERT INTO c VALUES (1, 1.5)")
