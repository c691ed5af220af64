"""The foreign-key check repeated under the commit lock (sqlvec/execution/foreign_key_commit.py):
two sessions of one database, each passing its statement checks, cannot orphan a row between
them, whether a row lock made the second wait or not (the embedded table API's writes take
none, and are checked too)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

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


def test_second_fails_in_either_order(db):
    """A parent DELETE waits for the block inserting a child (its check holds the parent FOR
    KEY SHARE) and then fails; a child inserted through the embedded API, which takes no row
    lock, beside a block deleting its parent commits first and fails that block's COMMIT
    (the check under the commit lock)."""
    a, b = db.connect(), db.connect()
    a.execute_one("BEGIN")
    a.execute_one("INSERT INTO c VALUES (1, 1)")
    with ThreadPoolExecutor(1) as pool:
        delete = pool.submit(b.execute_one, "DELETE FROM p WHERE id = 1")
        time.sleep(0.3)
        assert not delete.done()
        a.execute_one("COMMIT")
        with pytest.raises(ForeignKeyViolation):
            delete.result(timeout=30)
    a.execute_one("BEGIN")
    a.execute_one("DELETE FROM p WHERE id = 2")
    db.table("c").insert(pa.table({"id": [2], "pid": [2]}))
    with pytest.raises(ForeignKeyViolation) as err:
        a.execute_one("COMMIT")
    assert err.value.detail == 'Key (id)=(2) is still referenced from table "c".'
    assert rows(b, "SELECT id, pid FROM c ORDER BY id") == [(1, 1), (2, 2)]


def test_cascade_that_missed_a_row_asks_for_a_retry(db):
    a = db.connect()
    a.execute_one("BEGIN")
    a.execute_one("DELETE FROM p WHERE id = 2")
    db.table("k").insert(pa.table({"id": [1], "pid": [2]}))  # (no row lock to wait for)
    with pytest.raises(SerializationFailure):
        a.execute_one("COMMIT")
    assert rows(a, "SELECT id FROM p ORDER BY id") == [(1,), (2,), (5000000000,)]


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
