"""The newest committed versions of rows a statement found changed (`NewestVersions`, the
re-check after a row wait): followed by key from the statement's snapshot, deleted rows
gone, every other row left to the snapshot."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlvec.database import Database
from sqlvec.execution.transaction import NewestVersions, Rechecked, Transaction
from sqlvec.storage.schema import ROWID


@contextlib.contextmanager
def statement_read(path: str, *sql: str) -> Iterator[tuple]:
    """A session, table t made by `sql`, and a snapshot of it as a statement read it; the
    row ids it holds by id."""
    with Database.open(path) as db:
        s = db.connect()
        for statement in sql:
            s.execute_one(statement)
        table = db.store().find_table("t")
        snapshot = table.snapshot()
        rows = snapshot.to_table(["id"], with_rowid=True)
        yield s, table, snapshot, dict(zip(rows.column("id").to_pylist(),
                                           rows.column(ROWID).to_pylist()))


def test_changed_rows_are_followed_by_key_and_deleted_ones_are_gone(tmp_path):
    with statement_read(str(tmp_path), "CREATE TABLE t (id int PRIMARY KEY, n int)",
                        "INSERT INTO t SELECT g, 0 FROM generate_series(1, 6) g") \
            as (s, table, snapshot, old):
        s.execute_one("UPDATE t SET n = 5 WHERE id IN (2, 3)")
        s.execute_one("DELETE FROM t WHERE id = 4")
        s.execute_one("INSERT INTO t VALUES (7, 0)")  # after the snapshot: never met

        newest = NewestVersions(table, snapshot)
        assert not newest.add([old[1], old[5]])  # unchanged: nothing to re-check
        assert newest.add([old[k] for k in (1, 2, 3, 4)])
        assert newest.follows
        assert newest.waited == {old[2], old[3], old[4]}
        assert sorted(zip(newest.rows.column("id").to_pylist(),
                          newest.rows.column("n").to_pylist())) == [(2, 5), (3, 5)]

        # Read through the overlay: the snapshot's rows, the changed ones at their newest
        # versions, the deleted one gone, the row inserted since not there.
        seen = Rechecked(Transaction(), newest).table_overlay(table.id).merge(
            list(snapshot.scan(with_rowid=True)), snapshot)
        rows = sorted((r["id"], r["n"]) for part in seen for r in part.to_pylist())
        assert rows == [(1, 0), (2, 5), (3, 5), (5, 0), (6, 0)]


def test_rows_without_a_key_cannot_be_followed(tmp_path):
    with statement_read(str(tmp_path), "CREATE TABLE t (id int, n int)",
                        "INSERT INTO t VALUES (1, 0), (2, 0)") as (s, table, snapshot, old):
        s.execute_one("UPDATE t SET n = 1")
        newest = NewestVersions(table, snapshot)
        assert newest.add(list(old.values())) and not newest.follows
        assert newest.rows is None and not newest.waited
