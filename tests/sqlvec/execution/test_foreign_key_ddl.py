"""Foreign keys in DDL (sqlvec/execution/foreign_key_ddl.py): the REFERENCES clause's
options, PostgreSQL's default names, the stored definition, and what DROP TABLE and
TRUNCATE do to referencing tables."""

from __future__ import annotations

import pytest

from sqlvec.errors import FeatureNotSupported
from sqlvec.execution.foreign_key_ddl import foreign_key_of, is_foreign_key
from sqlvec.sql.dialect import parse_one
from tests.sqlvec.execution.conftest import error, rows


def _element(sql: str):
    return parse_one(f"CREATE TABLE t (a int, b int, {sql})").this.expressions[-1]


def test_reference_options():
    node = _element("CONSTRAINT f FOREIGN KEY (a, b) REFERENCES s.p (x, y) MATCH FULL "
                    "ON DELETE SET NULL ON UPDATE CASCADE INITIALLY DEFERRED")
    assert is_foreign_key(node)
    name, columns, ref = foreign_key_of(node)
    assert (name, columns, ref.table.name, ref.table.db, ref.columns) == \
        ("f", ("a", "b"), "p", "s", ("x", "y"))
    assert (ref.on_delete, ref.on_update, ref.match) == ("n", "c", "f")
    assert ref.deferrable and ref.deferred  # INITIALLY DEFERRED implies DEFERRABLE
    _, _, plain = foreign_key_of(_element("FOREIGN KEY (a) REFERENCES p"))
    assert (plain.columns, plain.on_delete, plain.on_update, plain.match, plain.deferrable) \
        == ((), "a", "a", "s", False)
    with pytest.raises(FeatureNotSupported):
        foreign_key_of(_element("FOREIGN KEY (a) REFERENCES p MATCH PARTIAL"))


def test_default_names_and_definition(session):
    s = session
    s.execute_one("CREATE TABLE p (id int PRIMARY KEY, a int, b int, UNIQUE (a, b))")
    s.execute_one("CREATE TABLE c (x int REFERENCES p, y int, z int, "
                  "FOREIGN KEY (y, z) REFERENCES p (a, b), "
                  "CONSTRAINT c_x_fkey1 CHECK (x > 0), FOREIGN KEY (x) REFERENCES p)")
    assert rows(s, "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                   "WHERE conrelid = 'c'::regclass ORDER BY conname") == [
        ("c_x_fkey", "FOREIGN KEY (x) REFERENCES p(id)"),
        ("c_x_fkey1", "CHECK ((x > 0))"),
        ("c_x_fkey2", "FOREIGN KEY (x) REFERENCES p(id)"),
        ("c_y_z_fkey", "FOREIGN KEY (y, z) REFERENCES p(a, b)")]
    long = "c" * 40
    s.execute_one(f"CREATE TABLE {long} ({long} int REFERENCES p)")
    (name,) = rows(s, f"SELECT conname FROM pg_constraint WHERE conrelid = '{long}'::regclass")
    # Both names shortened, the longer first, as PostgreSQL's makeObjectName does.
    assert name == (f"{'c' * 29}_{'c' * 28}_fkey",)


def test_other_schema_and_quoted_names(session):
    s = session
    s.execute_one("CREATE SCHEMA other")
    s.execute_one('CREATE TABLE other."Parent" (id int PRIMARY KEY)')
    s.execute_one('CREATE TABLE kid (pid int REFERENCES other."Parent")')
    assert rows(s, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'f'") \
        == [('FOREIGN KEY (pid) REFERENCES other."Parent"(id)',)]
    assert error(s, "INSERT INTO kid VALUES (1)").detail == \
        'Key (pid)=(1) is not present in table "Parent".'


def test_truncate_cascades_through_chains_and_drop_table_of_both(session):
    s = session
    s.execute_one("CREATE TABLE a (id int PRIMARY KEY)")
    s.execute_one("CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a)")
    s.execute_one("CREATE TABLE c (b_id int REFERENCES b)")
    s.execute_one("INSERT INTO a VALUES (1)")
    s.execute_one("INSERT INTO b VALUES (1, 1)")
    s.execute_one("INSERT INTO c VALUES (1)")
    e = error(s, "TRUNCATE a, b")
    assert (e.sqlstate, e.detail) == ("0A000", 'Table "c" references "b".')
    result = s.execute_one("TRUNCATE a CASCADE")
    assert [n.message for n in result.notices] == ['truncate cascades to table "b"',
                                                  'truncate cascades to table "c"']
    assert rows(s, "SELECT (SELECT count(*) FROM b), (SELECT count(*) FROM c)") == [(0, 0)]
    # Dropping the referencing and referenced tables together needs no CASCADE.
    s.execute_one("DROP TABLE c, b")
    assert rows(s, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == [(0,)]


def test_not_valid_then_rows_are_checked(session):
    s = session
    s.execute_one("CREATE TABLE p (id int PRIMARY KEY)")
    s.execute_one("CREATE TABLE c (id int, pid int)")
    s.execute_one("INSERT INTO c VALUES (1, 7)")
    s.execute_one("ALTER TABLE c ADD CONSTRAINT c_fk FOREIGN KEY (pid) REFERENCES p NOT VALID")
    assert rows(s, "SELECT convalidated FROM pg_constraint WHERE conname = 'c_fk'") == \
        [(False,)]
    # Rows whose key an UPDATE leaves alone are not checked again, as in PostgreSQL.
    s.execute_one("UPDATE c SET id = 2")
    assert error(s, "UPDATE c SET pid = 8").sqlstate == "23503"


def test_drop_schema_cascade_takes_foreign_keys_into_it(session):
    s = session
    s.execute_one("CREATE SCHEMA gone")
    s.execute_one("CREATE TABLE gone.p (id int PRIMARY KEY)")
    s.execute_one("CREATE TABLE kept (pid int REFERENCES gone.p)")
    s.execute_one("DROP SCHEMA gone CASCADE")
    assert rows(s, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == [(0,)]
    s.execute_one("INSERT INTO kept VALUES (5)")
