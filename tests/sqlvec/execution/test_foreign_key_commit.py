"""The foreign-key check repeated under the commit lock (sqlvec/execution/foreign_key_commit.py):
two sessions of one database, each passing its statement checks, cannot orphan a row between
them; the embedded table API's writes are checked too."""

from __future__ import annotations

import pyarrow as pa
import pytest

from sqlvec.database import Database
from sqlvec.errors import ForeignKeyViolation, SerializationFailure
from tests.sqlvec.execution.conftest import rows


@pytest.fixture
def db(tmp_path):
    database = Database.open(str(tmp_path / "data"))
    s = database.connect()
    s.execute_one("CREATE TABLE p (id bigint PRIMARY KEY)")
    s.execute_one("CREATE TABLE c (id int, pid int REFERENCES p)")
    s.execute_one("CREATE TABLE k (id int, pid int REFERENCES p ON DELETE CASCADE)")
    s.execute_one("INSERT INTO p VALUES (1), (2), (5000000000)")
    s.close()
    yield database
    database.close()


def test_second_commit_fails_in_either_order(db):
    a, b = db.connect(), db.connect()
    a.execute_one("BEGIN")
    a.execute_one("INSERT INTO c VALUES (1, 1)")
    b.execute_one("DELETE FROM p WHERE id = 1")
    with pytest.raises(ForeignKeyViolation):
        a.execute_one("COMMIT")
    a.execute_one("BEGIN")
    a.execute_one("DELETE FROM p WHERE id = 2")
    b.execute_one("INSERT INTO c VALUES (2, 2)")
    with pytest.raises(ForeignKeyViolation) as err:
        a.execute_one("COMMIT")
    assert err.value.detail == 'Key (id)=(2) is still referenced from table "c".'
    assert rows(b, "SELECT id, pid FROM c") == [(2, 2)]


def test_cascade_that_missed_a_row_asks_for_a_retry(db):
    a, b = db.connect(), db.connect()
    a.execute_one("BEGIN")
    a.execute_one("DELETE FROM p WHERE id = 2")
    b.execute_one("INSERT INTO k VALUES (1, 2)")
    with pytest.raises(SerializationFailure):
        a.execute_one("COMMIT")
    assert rows(b, "SELECT id FROM p ORDER BY id") == [(1,), (2,), (5000000000,)]


def test_unreferencable_keys_and_unchanged_keys_pass(db):
    s = db.connect()
    s.execute_one("DELETE FROM p WHERE id = 5000000000")  # no int column can hold it
    s.execute_one("INSERT INTO c VALUES (1, 1)")
    s.execute_one("UPDATE c SET id = 3")  # the key is unchanged: nothing to look up
    assert rows(s, "SELECT id, pid FROM c") == [(3, 1)]


def test_embedded_table_writes_are_checked(db):
    table = db.table("c")
    with pytest.raises(ForeignKeyViolation):
        table.insert(pa.table({"id": [1], "pid": [9]}))
    table.insert(pa.table({"id": [1], "pid": [1]}))
    with pytest.raises(ForeignKeyViolation):
        db.table("p").delete(lambda t: pa.compute.equal(t.column("id"), 1))
