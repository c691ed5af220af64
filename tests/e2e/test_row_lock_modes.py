"""Row lock modes, compared with a real PostgreSQL at READ COMMITTED: FOR KEY SHARE, FOR
SHARE, FOR NO KEY UPDATE and FOR UPDATE conflict as PostgreSQL's table says; an UPDATE that
keeps every unique-key value takes FOR NO KEY UPDATE (so a FOR KEY SHARE holder does not stop
it), a DELETE or a key UPDATE FOR UPDATE. A foreign key's check holds FOR KEY SHARE on the
referenced row: a DELETE of it waits for the inserting block, then fails; so does a deferred
check, at COMMIT. A lock upgraded inside a savepoint rolled back keeps its mode from before.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import psycopg
import pytest

from tests.e2e.conftest import beside_postgres
from tests.e2e.test_row_locks import begin, still_waiting

MODES = ["FOR KEY SHARE", "FOR SHARE", "FOR NO KEY UPDATE", "FOR UPDATE"]
# PostgreSQL's conflict table: the modes each held mode keeps others from taking.
CONFLICTS = {
    "FOR KEY SHARE": {"FOR UPDATE"},
    "FOR SHARE": {"FOR NO KEY UPDATE", "FOR UPDATE"},
    "FOR NO KEY UPDATE": {"FOR SHARE", "FOR NO KEY UPDATE", "FOR UPDATE"},
    "FOR UPDATE": set(MODES),
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with beside_postgres(tmp_path_factory, "lockmodes") as (sqlvec, postgres):
        yield {"postgres": postgres, "sqlvec": sqlvec}


@pytest.fixture(params=["postgres", "sqlvec"])
def uri(request, servers) -> str:
    """Parent p (ids 1, 2) and child c referencing it, fresh for each test."""
    with psycopg.connect(servers[request.param], autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS d, z")
        conn.execute("DROP TABLE IF EXISTS c")
        conn.execute("DROP TABLE IF EXISTS p")
        conn.execute("CREATE TABLE p (id int PRIMARY KEY, note text)")
        conn.execute("CREATE TABLE c (id int PRIMARY KEY, pid int REFERENCES p)")
        conn.execute("INSERT INTO p VALUES (1, 'a'), (2, 'b')")
    return servers[request.param]


def connect(uri: str, lock_timeout: str | None = None) -> psycopg.Connection:
    conn = psycopg.connect(uri, autocommit=True)
    if lock_timeout is not None:
        conn.execute(f"SET lock_timeout = '{lock_timeout}'")
    return conn


def outcome(conn: psycopg.Connection, sql: str) -> str | int:
    """The statement's row count, or the SQLSTATE it failed with."""
    try:
        return conn.execute(sql).rowcount
    except psycopg.Error as exc:
        return exc.sqlstate  # type: ignore[return-value]


def waiting(pool: ThreadPoolExecutor, conn: psycopg.Connection, sql: str) -> Future:
    """`sql` started on `conn` in another thread; still waiting a while later."""
    future = pool.submit(outcome, conn, sql)
    still_waiting(conn, future)
    return future


def note(uri: str, key: int) -> str | None:
    with connect(uri) as conn:
        row = conn.execute("SELECT note FROM p WHERE id = %s", (key,)).fetchone()
    return None if row is None else row[0]


@pytest.mark.parametrize("held", MODES)
@pytest.mark.parametrize("wanted", MODES)
def test_conflict_table(uri, held, wanted):
    first = begin(uri, f"SELECT * FROM p WHERE id = 1 {held}")
    second = begin(uri)
    with first, second:
        got = outcome(second, f"SELECT * FROM p WHERE id = 1 {wanted} NOWAIT")
        assert got == ("55P03" if wanted in CONFLICTS[held] else 1)
        second.execute("ROLLBACK")
        first.execute("ROLLBACK")


@pytest.mark.parametrize("held", MODES)
@pytest.mark.parametrize("write, in_block", [
    ("UPDATE p SET note = 'x' WHERE id = 1", True),  # FOR NO KEY UPDATE
    ("UPDATE p SET note = 'x' WHERE id = 1", False),
    ("UPDATE p SET id = id, note = 'x' WHERE id = 1", True),  # the key's value unchanged
    ("UPDATE p SET id = id, note = 'x' WHERE id = 1", False),
    ("UPDATE p SET id = 5 WHERE id = 1", True),  # FOR UPDATE
    ("UPDATE p SET id = 5 WHERE id = 1", False),
    ("DELETE FROM p WHERE id = 1", True),
    ("DELETE FROM p WHERE id = 1", False),
], ids=lambda v: v if isinstance(v, str) else ("block" if v else "autocommit"))
def test_writes_take_the_mode_of_what_they_change(uri, held, write, in_block):
    first = begin(uri, f"SELECT * FROM p WHERE id = 1 {held}")
    second = connect(uri, lock_timeout="100ms")
    with first, second:
        if in_block:
            second.execute("BEGIN")
        mode = "FOR NO KEY UPDATE" if "note" in write and "id = 5" not in write \
            else "FOR UPDATE"
        assert outcome(second, write) == ("55P03" if mode in CONFLICTS[held] else 1)
        if in_block:
            second.execute("ROLLBACK")
        first.execute("ROLLBACK")


def test_a_non_key_update_in_a_block_keeps_key_share_readers(uri):
    writer = begin(uri, "UPDATE p SET note = 'x' WHERE id = 1")
    reader = begin(uri)
    with writer, reader:
        assert outcome(reader, "SELECT * FROM p WHERE id = 1 FOR KEY SHARE NOWAIT") == 1
        assert outcome(reader, "SELECT * FROM p WHERE id = 1 FOR SHARE NOWAIT") == "55P03"
        reader.execute("ROLLBACK")
        writer.execute("COMMIT")
    assert note(uri, 1) == "x"


# A shared lock upgraded inside a savepoint ------------------------------------------------

def test_rollback_to_savepoint_keeps_the_mode_held_before(uri):
    first = begin(uri, "SELECT * FROM p WHERE id = 1 FOR SHARE", "SAVEPOINT s",
                  "UPDATE p SET note = 'x' WHERE id = 1", "ROLLBACK TO SAVEPOINT s")
    second = begin(uri)
    with first, second:
        assert outcome(second, "SELECT * FROM p WHERE id = 1 FOR SHARE NOWAIT") == 1
        assert outcome(second, "SELECT * FROM p WHERE id = 1 FOR UPDATE NOWAIT") == "55P03"
        second.execute("ROLLBACK")
        with connect(uri, lock_timeout="300ms") as third:
            assert outcome(third, "UPDATE p SET note = 'y' WHERE id = 1") == "55P03"
        first.execute("COMMIT")
    assert note(uri, 1) == "a"


def test_rollback_to_savepoint_frees_a_lock_taken_inside(uri):
    first = begin(uri, "SAVEPOINT s", "SELECT * FROM p WHERE id = 1 FOR SHARE",
                  "UPDATE p SET note = 'x' WHERE id = 1", "ROLLBACK TO SAVEPOINT s")
    with first, connect(uri) as second:
        assert outcome(second, "UPDATE p SET note = 'y' WHERE id = 1") == 1
        first.execute("COMMIT")
    assert note(uri, 1) == "y"


# Foreign keys hold FOR KEY SHARE on the referenced row -------------------------------------

@pytest.mark.parametrize("first_sql, second_sql, count_sql, counts", [
    # a parent's DELETE waits for the block inserting a child (which holds it FOR KEY SHARE)
    ("INSERT INTO c VALUES (10, 1)", "DELETE FROM p WHERE id = 1",
     "SELECT count(*) FROM p WHERE id = 1", (1, 0)),
    # a child's INSERT waits for the block deleting its parent
    ("DELETE FROM p WHERE id = 1", "INSERT INTO c VALUES (10, 1)",
     "SELECT count(*) FROM c", (0, 1)),
], ids=["delete-waits-for-child", "insert-waits-for-delete"])
@pytest.mark.parametrize("end", ["COMMIT", "ROLLBACK"])
@pytest.mark.parametrize("second_in_block", [True, False])
def test_a_foreign_key_conflict_waits_for_the_first_block(uri, first_sql, second_sql,
                                                          count_sql, counts, end,
                                                          second_in_block):
    """The second statement waits; it fails with 23503 if the first block committed, and
    goes on if it rolled back."""
    first = begin(uri, first_sql)
    second = begin(uri) if second_in_block else connect(uri)
    with first, second, ThreadPoolExecutor(1) as pool:
        write = waiting(pool, second, second_sql)
        first.execute(end)
        assert write.result(timeout=30) == ("23503" if end == "COMMIT" else 1)
        if second_in_block:
            second.execute("COMMIT")  # (a failed block's rolls back)
    with connect(uri) as conn:
        assert conn.execute(count_sql).fetchone()[0] == counts[end == "ROLLBACK"]


@pytest.mark.parametrize("updater_in_block", [True, False])
def test_a_parent_update_of_other_columns_does_not_wait_for_a_child_insert(uri,
                                                                           updater_in_block):
    """The FOR KEY SHARE lock passes to the parent's new version: a key UPDATE or a DELETE
    of that still waits for the inserting block."""
    inserter = begin(uri, "INSERT INTO c VALUES (10, 1)")
    with inserter, connect(uri, lock_timeout="300ms") as updater:
        if updater_in_block:
            updater.execute("BEGIN")
        assert outcome(updater, "UPDATE p SET note = 'x' WHERE id = 1") == 1
        if updater_in_block:
            updater.execute("COMMIT")
        assert outcome(updater, "UPDATE p SET id = 7 WHERE id = 1") == "55P03"
        assert outcome(updater, "DELETE FROM p WHERE id = 1") == "55P03"
        inserter.execute("COMMIT")
    assert note(uri, 1) == "x"


@pytest.mark.parametrize("form", ["VALUES (10, 1)", "SELECT 10, 1"])
def test_an_insert_that_waited_for_a_key_checks_its_parent_again(uri, form):
    """A block inserts child 10; an autocommit INSERT of child 10 (the single-row path, and
    the general one) waits for it; meanwhile a second block deletes the INSERT's parent.
    Once the first block rolls back, the INSERT checks its parent again: it waits for the
    deleting block, and fails when that commits."""
    block = begin(uri, "INSERT INTO c VALUES (10, 2)")
    with block, begin(uri) as deleter, connect(uri) as inserter, \
            ThreadPoolExecutor(1) as pool:
        insert = waiting(pool, inserter, f"INSERT INTO c {form}")
        assert outcome(deleter, "DELETE FROM p WHERE id = 1") == 1
        block.execute("ROLLBACK")
        still_waiting(inserter, insert)
        deleter.execute("COMMIT")
        assert insert.result(timeout=30) == "23503"
    with connect(uri) as conn:
        assert conn.execute("SELECT count(*) FROM c").fetchone()[0] == 0


# A deferred foreign key's check locks the referenced row too ------------------------------

DEFERRED_CHILD = ("CREATE TABLE d (id int PRIMARY KEY, "
                  "pid int REFERENCES p DEFERRABLE INITIALLY DEFERRED)")


@pytest.mark.parametrize("isolation, end, result", [
    ("READ COMMITTED", "COMMIT", "23503"),
    ("READ COMMITTED", "ROLLBACK", -1),
    ("REPEATABLE READ", "COMMIT", "40001"),  # the parent changed since the snapshot
])
def test_a_deferred_check_at_commit_waits_for_the_parents_deleter(uri, isolation, end,
                                                                  result):
    """A block inserts a child of parent 1 (checked at COMMIT), a second block deletes the
    parent: the first's COMMIT waits for the second, and fails if it committed."""
    with connect(uri) as conn:
        conn.execute(DEFERRED_CHILD)
    inserter = begin(uri, f"SET TRANSACTION ISOLATION LEVEL {isolation}",
                     "INSERT INTO d VALUES (10, 1)")
    deleter = begin(uri, "DELETE FROM p WHERE id = 1")
    with inserter, deleter, ThreadPoolExecutor(1) as pool:
        commit = waiting(pool, inserter, "COMMIT")
        deleter.execute(end)
        assert commit.result(timeout=30) == result
    with connect(uri) as conn:
        assert conn.execute("SELECT count(*) FROM d").fetchone()[0] == (end == "ROLLBACK")
        assert conn.execute("SELECT count(*) FROM p WHERE id = 1").fetchone()[0] == \
            (end == "ROLLBACK")


def test_a_deferred_check_made_immediate_holds_the_parent(uri):
    """SET CONSTRAINTS ... IMMEDIATE runs the deferred check, which holds the parent FOR KEY
    SHARE until the block ends: a DELETE of it waits (here, until its lock_timeout)."""
    with connect(uri) as conn:
        conn.execute(DEFERRED_CHILD)
    inserter = begin(uri, "INSERT INTO d VALUES (10, 1)", "SET CONSTRAINTS ALL IMMEDIATE")
    with inserter, connect(uri, lock_timeout="300ms") as deleter:
        assert outcome(deleter, "DELETE FROM p WHERE id = 1") == "55P03"
        assert outcome(deleter, "UPDATE p SET note = 'x' WHERE id = 1") == 1
        inserter.execute("COMMIT")
        assert outcome(deleter, "DELETE FROM p WHERE id = 1") == "23503"


def test_a_deferred_check_runs_at_the_commit_of_a_block_that_changed_the_schema(uri):
    """The block's schema change and its orphan row are rolled back together."""
    with connect(uri) as conn:
        conn.execute(DEFERRED_CHILD)
    with begin(uri, "CREATE TABLE z (i int)", "INSERT INTO z VALUES (1)",
               "INSERT INTO d VALUES (10, 99)") as block:
        assert outcome(block, "COMMIT") == "23503"
    with connect(uri) as conn:
        assert conn.execute("SELECT count(*) FROM d").fetchone()[0] == 0
        assert conn.execute("SELECT to_regclass('z')").fetchone()[0] is None


@pytest.mark.parametrize("deferred", [True, False], ids=["deferred", "immediate"])
def test_a_block_with_schema_changes_waiting_for_a_parents_deleter_does_not_hang(uri,
                                                                                deferred):
    """A block that changed the schema checks a child of a parent another block deletes,
    then that block commits: PostgreSQL's check waits and fails (23503); here the deleter's
    COMMIT waits for the schema changes, so the check fails at once with 40P01. Either way
    the deleter commits, instead of both waiting until a timeout."""
    with connect(uri) as conn:
        conn.execute(DEFERRED_CHILD)
    deleter = begin(uri, "DELETE FROM p WHERE id = 1")
    inserter = begin(uri, "SET lock_timeout = '20s'", "CREATE TABLE z (i int)")
    check = "COMMIT" if deferred else "INSERT INTO c VALUES (10, 1)"
    with inserter, deleter, ThreadPoolExecutor(2) as pool:
        if deferred:
            inserter.execute("INSERT INTO d VALUES (10, 1)")
        checked = waiting(pool, inserter, check)
        commit = pool.submit(outcome, deleter, "COMMIT")
        assert checked.result(timeout=30) in ("23503", "40P01")
        inserter.execute("ROLLBACK")
        assert commit.result(timeout=30) == -1
    with connect(uri) as conn:
        assert conn.execute("SELECT count(*) FROM p WHERE id = 1").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM c").fetchone()[0] == 0
