"""Foreign-key enforcement (sqlvec/execution/foreign_keys.py): checks through the referenced
table's key index, referential actions that cascade, deferred checks, and constraints that
survive a restart, sealing and compaction."""

from __future__ import annotations

import pytest

from sqlvec.database import Database
from tests.sqlvec.execution.conftest import error, rows


def test_foreign_keys_survive_restart_seal_and_compaction(tmp_path):
    path = str(tmp_path / "data")
    db = Database.open(path)
    s = db.connect()
    s.execute_one("CREATE TABLE p (id int PRIMARY KEY)")
    s.execute_one("CREATE TABLE c (id int, pid int REFERENCES p ON DELETE CASCADE "
                  "DEFERRABLE INITIALLY DEFERRED)")
    s.execute_one("CREATE TABLE px (a int, b int, PRIMARY KEY (a, b))")
    s.execute_one("CREATE TABLE cx (a int, b int, FOREIGN KEY (a, b) REFERENCES px "
                  "ON DELETE SET NULL (b))")
    s.execute_one("INSERT INTO p SELECT g FROM generate_series(1, 100) g")
    s.execute_one("INSERT INTO c SELECT g, g FROM generate_series(1, 100) g")
    store = db.store()
    for name in ("p", "c"):
        store.seal(db.catalog().table(name, None, ["public"]).id)
    s.execute_one("DELETE FROM p WHERE id <= 10")
    store.compact(db.catalog().table("p", None, ["public"]).id)
    s.close()
    db.close()

    db = Database.open(path)
    s = db.connect()
    try:
        assert rows(s, "SELECT count(*), min(pid) FROM c") == [(90, 11)]
        e = error(s, "INSERT INTO c VALUES (1, 5)")
        assert (e.sqlstate, e.detail) == ("23503", 'Key (pid)=(5) is not present in table "p".')
        s.execute_one("INSERT INTO c VALUES (1, 50)")  # a key in a sealed segment
        assert rows(s, "SELECT conname, condeferred, confdeltype, confdelsetcols "
                       "FROM pg_constraint WHERE contype = 'f' ORDER BY 1") == \
            [("c_pid_fkey", True, "c", None), ("cx_a_b_fkey", False, "n", [2])]
    finally:
        s.close()
        db.close()


def test_cascades_chain_through_tables(session):
    s = session
    s.execute_one("CREATE TABLE a (id int PRIMARY KEY)")
    s.execute_one("CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a ON DELETE CASCADE)")
    s.execute_one("CREATE TABLE c (id int, b_id int REFERENCES b ON DELETE SET NULL)")
    s.execute_one("INSERT INTO a VALUES (1), (2)")
    s.execute_one("INSERT INTO b VALUES (10, 1), (11, 1), (12, 2)")
    s.execute_one("INSERT INTO c VALUES (100, 10), (101, 12)")
    assert s.execute_one("DELETE FROM a WHERE id = 1").tag == "DELETE 1"
    assert rows(s, "SELECT id FROM b ORDER BY id") == [(12,)]
    assert rows(s, "SELECT id, b_id FROM c ORDER BY id") == [(100, None), (101, 12)]


def test_update_cascade_mixes_committed_and_own_rows(session):
    """An UPDATE in a block over rows committed before and rows the block inserted: old and
    new versions stay paired, so each child follows its own parent."""
    s = session
    s.execute_one("CREATE TABLE p (id int PRIMARY KEY, tag text)")
    s.execute_one("CREATE TABLE c (id int, pid int REFERENCES p ON UPDATE CASCADE)")
    s.execute_one("INSERT INTO p VALUES (1, 'x'), (2, 'x')")
    s.execute_one("INSERT INTO c VALUES (1, 1), (2, 2)")
    s.execute_one("BEGIN")
    s.execute_one("INSERT INTO p VALUES (3, 'x')")
    s.execute_one("INSERT INTO c VALUES (3, 3)")
    s.execute_one("UPDATE p SET id = id * 10 WHERE tag = 'x'")
    s.execute_one("COMMIT")
    assert rows(s, "SELECT id, pid FROM c ORDER BY id") == [(1, 10), (2, 20), (3, 30)]


def test_composite_set_null_and_match_simple(session):
    s = session
    s.execute_one("CREATE TABLE p (a int, b text, PRIMARY KEY (a, b))")
    s.execute_one("CREATE TABLE c (id int, x int, y text, "
                  "FOREIGN KEY (x, y) REFERENCES p ON DELETE SET NULL)")
    s.execute_one("INSERT INTO p VALUES (1, 'a'), (2, 'b')")
    s.execute_one("INSERT INTO c VALUES (1, 1, 'a'), (2, 2, 'b'), (3, NULL, 'zz')")
    e = error(s, "INSERT INTO c VALUES (4, 1, 'b')")
    assert e.detail == 'Key (x, y)=(1, b) is not present in table "p".'
    s.execute_one("DELETE FROM p WHERE a = 1")
    assert rows(s, "SELECT id, x, y FROM c ORDER BY id") == \
        [(1, None, None), (2, 2, "b"), (3, None, "zz")]


def test_keys_of_other_types_and_unique_indexes(session):
    """A bigint or varchar column referencing int or text: looked up in the key's type; a
    unique index (not a constraint) can be referenced too."""
    s = session
    s.execute_one("CREATE TABLE p (id int PRIMARY KEY, code text)")
    s.execute_one("CREATE UNIQUE INDEX p_code_idx ON p (code)")
    s.execute_one("CREATE TABLE c (big bigint REFERENCES p, v varchar(5) REFERENCES p (code))")
    s.execute_one("INSERT INTO p VALUES (1, 'a')")
    s.execute_one("INSERT INTO c VALUES (1, 'a'), (NULL, NULL)")
    assert error(s, "INSERT INTO c VALUES (2, NULL)").constraint == "c_big_fkey"
    assert error(s, "INSERT INTO c VALUES (NULL, 'b')").constraint == "c_v_fkey"
    assert error(s, "DELETE FROM p").sqlstate == "23503"


def test_deferred_checks_see_the_final_state(session):
    s = session
    s.execute_one("CREATE TABLE p (id int PRIMARY KEY)")
    s.execute_one("CREATE TABLE c (pid int REFERENCES p DEFERRABLE)")
    s.execute_one("INSERT INTO p VALUES (1)")
    s.execute_one("INSERT INTO c VALUES (1)")
    s.execute_one("BEGIN")
    s.execute_one("SET CONSTRAINTS ALL DEFERRED")
    s.execute_one("DELETE FROM p")  # would fail now; the block puts the row back
    s.execute_one("INSERT INTO c VALUES (2)")
    s.execute_one("INSERT INTO p VALUES (1), (2)")
    assert s.execute_one("COMMIT").tag == "COMMIT"
    # A failing deferred check at COMMIT rolls the whole block back.
    s.execute_one("BEGIN")
    s.execute_one("SET CONSTRAINTS c_pid_fkey DEFERRED")
    s.execute_one("INSERT INTO p VALUES (3)")
    s.execute_one("DELETE FROM p WHERE id = 2")
    e = error(s, "COMMIT")
    assert (e.sqlstate, e.message) == (
        "23503", 'update or delete on table "p" violates foreign key constraint "c_pid_fkey" '
                 'on table "c"')
    assert s.transaction_status == "I"
    assert rows(s, "SELECT id FROM p ORDER BY id") == [(1,), (2,)]


def test_set_constraints_errors_and_outside_a_block(session):
    s = session
    s.execute_one("CREATE TABLE p (id int PRIMARY KEY)")
    s.execute_one("CREATE TABLE c (pid int REFERENCES p)")
    result = s.execute_one("SET CONSTRAINTS ALL DEFERRED")
    assert [n.message for n in result.notices] == \
        ["SET CONSTRAINTS can only be used in transaction blocks"]
    s.execute_one("BEGIN")
    assert error(s, "SET CONSTRAINTS nope DEFERRED").sqlstate == "42704"
    s.execute_one("ROLLBACK")
    s.execute_one("BEGIN")
    assert error(s, "SET CONSTRAINTS c_pid_fkey DEFERRED").sqlstate == "42809"
    s.execute_one("ROLLBACK")


@pytest.mark.parametrize("statement", [
    "INSERT INTO c VALUES (9) RETURNING pid",
    "INSERT INTO c VALUES (9) ON CONFLICT DO NOTHING",
    "INSERT INTO c SELECT 9",
])
def test_every_insert_form_is_checked(session, statement):
    s = session
    s.execute_one("CREATE TABLE p (id int PRIMARY KEY)")
    s.execute_one("CREATE TABLE c (pid int REFERENCES p)")
    assert error(s, statement).sqlstate == "23503"
    assert rows(s, "SELECT count(*) FROM c") == [(0,)]


def test_prepared_single_row_writes_are_checked(session):
    """The single-row fast paths (prepared INSERT, UPDATE/DELETE by key) are not taken for
    tables with foreign keys: the statement-end checks run."""
    s = session
    s.execute_one("CREATE TABLE p (id int PRIMARY KEY)")
    s.execute_one("CREATE TABLE c (id int PRIMARY KEY, pid int REFERENCES p)")
    s.execute_one("INSERT INTO p VALUES (1)")
    s.execute_one("PREPARE ins (int, int) AS INSERT INTO c VALUES ($1, $2)")
    s.execute_one("PREPARE del (int) AS DELETE FROM p WHERE id = $1")
    s.execute_one("EXECUTE ins (1, 1)")
    assert error(s, "EXECUTE ins (2, 5)").sqlstate == "23503"
    assert error(s, "EXECUTE del (1)").sqlstate == "23503"
    assert rows(s, "SELECT count(*) FROM p") == [(1,)]


def test_a_wider_integer_beyond_the_referenced_type_is_not_present(session):
    s = session
    s.execute_one("CREATE TABLE p (id int2 PRIMARY KEY)")
    s.execute_one("CREATE TABLE c (pid bigint REFERENCES p)")
    s.execute_one("INSERT INTO p VALUES (1)")
    s.execute_one("INSERT INTO c VALUES (1)")
    e = error(s, "INSERT INTO c VALUES (1), (5000000000)")
    assert (e.sqlstate, e.detail) == (
        "23503", 'Key (pid)=(5000000000) is not present in table "p".')


def test_a_referenced_key_too_wide_for_the_referencing_column(session):
    s = session
    s.execute_one("CREATE TABLE p (id bigint PRIMARY KEY)")
    s.execute_one("CREATE TABLE c (pid int REFERENCES p ON UPDATE CASCADE)")
    s.execute_one("INSERT INTO p VALUES (1), (5000000000)")
    s.execute_one("INSERT INTO c VALUES (1)")
    s.execute_one("DELETE FROM p WHERE id = 5000000000")  # no int can reference it
    e = error(s, "UPDATE p SET id = 6000000000 WHERE id = 1")
    assert (e.sqlstate, e.message) == ("22003", "integer out of range")
    assert rows(s, "SELECT pid FROM c") == [(1,)]


def test_actions_on_tables_with_vector_columns(session):
    """A referencing table's vector columns ride along with the rows an action finds (Arrow's
    joins carry no list column: the key columns alone are joined)."""
    session.execute_one("CREATE TABLE p (id int PRIMARY KEY)")
    session.execute_one("CREATE TABLE c (id int PRIMARY KEY, pid int REFERENCES p "
                        "ON DELETE CASCADE ON UPDATE CASCADE, e vector(3))")
    session.execute_one("CREATE TABLE n (id int, pid int REFERENCES p ON DELETE SET NULL, "
                        "e vector(2))")
    session.execute_one("INSERT INTO p VALUES (1), (2)")
    session.execute_one("INSERT INTO c VALUES (10, 1, '[1,2,3]'), (11, 2, '[4,5,6]')")
    session.execute_one("INSERT INTO n VALUES (20, 1, '[1,1]')")
    session.execute_one("UPDATE p SET id = 3 WHERE id = 2")
    session.execute_one("DELETE FROM p WHERE id = 1")
    assert rows(session, "SELECT id, pid, e::text FROM c") == [(11, 3, "[4,5,6]")]
    assert rows(session, "SELECT id, pid, e::text FROM n") == [(20, None, "[1,1]")]
