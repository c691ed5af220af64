"""Foreign keys under concurrency: two connections can never leave an orphan between them.

As in PostgreSQL, a check of a new child row holds its parent row FOR KEY SHARE (until the
block ends) and a parent's DELETE or key UPDATE holds it FOR UPDATE: whoever comes second
waits for the other's transaction, then fails (23503) if the other committed. What no lock
covers (commits racing without a wait) the check repeated under the store's commit lock
catches (sqlvec/execution/foreign_key_commit.py); a TRUNCATE waits for every block that used
the table. Each interleaving is driven step by step over two psycopg connections (a waiting
statement in a thread); a bounded run of concurrent writers then checks the invariant with a
ledger of acknowledged writes.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg
import pytest

from tests.e2e.test_row_locks import still_waiting


def _names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:6]
    return f"par_{tag}", f"chi_{tag}"


@pytest.fixture
def tables(server):
    """(conninfo, parent, child): parent ids 1..3, child rows of parent 3; NO ACTION."""
    parent, child = _names()
    uri = server.conninfo()
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {parent} (id int PRIMARY KEY, note text)")
        conn.execute(f"CREATE TABLE {child} (id int PRIMARY KEY, "
                     f"p int REFERENCES {parent})")
        conn.execute(f"INSERT INTO {parent} VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        conn.execute(f"INSERT INTO {child} VALUES (30, 3)")
    return uri, parent, child


def _waiting(pool: ThreadPoolExecutor, conn: psycopg.Connection, sql: str) -> Future:
    """`sql` started on `conn` in another thread, returning its row count; still waiting a
    while later (for a row lock another transaction holds)."""
    future = pool.submit(lambda: conn.execute(sql).rowcount)
    still_waiting(conn, future)
    return future


def _orphans(uri: str, parent: str, child: str) -> int:
    with psycopg.connect(uri, autocommit=True) as conn:
        return conn.execute(
            f"SELECT count(*) FROM {child} c WHERE c.p IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM {parent} p WHERE p.id = c.p)").fetchone()[0]


def test_parent_delete_waits_for_a_child_block_then_fails(tables):
    """The child's check holds its parent row FOR KEY SHARE: the DELETE waits for the block
    and then finds the new child, as PostgreSQL's does."""
    uri, parent, child = tables
    with psycopg.connect(uri) as a, psycopg.connect(uri, autocommit=True) as b, \
            ThreadPoolExecutor(1) as pool:
        a.execute(f"INSERT INTO {child} VALUES (10, 1)")  # psycopg opens the block
        delete = _waiting(pool, b, f"DELETE FROM {parent} WHERE id = 1")
        a.commit()
        with pytest.raises(psycopg.errors.ForeignKeyViolation) as err:
            delete.result(timeout=30)
        assert err.value.diag.message_primary == (
            f'update or delete on table "{parent}" violates foreign key constraint '
            f'"{child}_p_fkey" on table "{child}"')
        assert err.value.diag.message_detail == \
            f'Key (id)=(1) is still referenced from table "{child}".'
    assert _orphans(uri, parent, child) == 0


def test_child_insert_waits_for_a_parent_delete_block_then_fails(tables):
    uri, parent, child = tables
    with psycopg.connect(uri) as a, psycopg.connect(uri, autocommit=True) as b, \
            ThreadPoolExecutor(1) as pool:
        assert a.execute(f"DELETE FROM {parent} WHERE id = 2").rowcount == 1
        insert = _waiting(pool, b, f"INSERT INTO {child} VALUES (20, 2)")
        a.commit()
        with pytest.raises(psycopg.errors.ForeignKeyViolation) as err:
            insert.result(timeout=30)
        assert err.value.diag.message_primary == (
            f'insert or update on table "{child}" violates foreign key constraint '
            f'"{child}_p_fkey"')
        assert err.value.diag.message_detail == f'Key (p)=(2) is not present in table "{parent}".'
    assert _orphans(uri, parent, child) == 0
    with psycopg.connect(uri, autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {parent} WHERE id = 2").fetchone()[0] == 0


@pytest.mark.parametrize("first", ["parent", "child"])
def test_two_blocks_the_second_waits_and_fails(tables, first):
    uri, parent, child = tables

    def child_writes(conn: psycopg.Connection) -> None:
        conn.execute(f"INSERT INTO {child} VALUES (11, 1)")
        conn.execute(f"UPDATE {child} SET p = 1 WHERE id = 30")  # a key update checks too

    with psycopg.connect(uri) as a, psycopg.connect(uri) as b, ThreadPoolExecutor(1) as pool:
        if first == "parent":
            a.execute(f"DELETE FROM {parent} WHERE id = 1")
            second = pool.submit(child_writes, b)
        else:
            child_writes(b)
            second = pool.submit(a.execute, f"DELETE FROM {parent} WHERE id = 1")
        still_waiting(b if first == "parent" else a, second)
        winner, loser = (a, b) if first == "parent" else (b, a)
        winner.commit()
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            second.result(timeout=30)
        loser.rollback()
    assert _orphans(uri, parent, child) == 0
    with psycopg.connect(uri, autocommit=True) as conn:
        parents = conn.execute(f"SELECT count(*) FROM {parent} WHERE id = 1").fetchone()[0]
        children = conn.execute(f"SELECT count(*) FROM {child} WHERE p = 1").fetchone()[0]
    assert (parents, children) == ((0, 0) if first == "parent" else (1, 2))


def test_child_insert_waits_for_a_parent_key_update(tables):
    uri, parent, child = tables
    with psycopg.connect(uri) as a, psycopg.connect(uri, autocommit=True) as b, \
            ThreadPoolExecutor(1) as pool:
        a.execute(f"UPDATE {parent} SET id = 9 WHERE id = 1")
        insert = _waiting(pool, b, f"INSERT INTO {child} VALUES (12, 1)")
        a.commit()
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            insert.result(timeout=30)
    assert _orphans(uri, parent, child) == 0


def test_non_key_changes_do_not_conflict(tables):
    """A parent UPDATE that keeps the key, a child insert beside it: both commit."""
    uri, parent, child = tables
    with psycopg.connect(uri) as a, psycopg.connect(uri) as b:
        a.execute(f"UPDATE {parent} SET note = 'x' WHERE id = 1")
        b.execute(f"INSERT INTO {child} VALUES (13, 1)")
        b.commit()
        a.commit()
    with psycopg.connect(uri, autocommit=True) as conn:
        assert conn.execute(f"SELECT note FROM {parent} WHERE id = 1").fetchone() == ("x",)
        assert conn.execute(f"SELECT p FROM {child} WHERE id = 13").fetchone() == (1,)


def test_parent_inserted_in_the_same_commit_satisfies_the_child(tables):
    uri, parent, child = tables
    with psycopg.connect(uri) as a:
        a.execute(f"DELETE FROM {parent} WHERE id = 1")
        a.execute(f"INSERT INTO {parent} VALUES (1, 'again')")
        a.execute(f"INSERT INTO {child} VALUES (14, 1)")
        a.commit()
    assert _orphans(uri, parent, child) == 0


@pytest.mark.parametrize("action", ["CASCADE", "SET NULL"])
def test_child_insert_waits_for_a_cascading_delete_then_fails(server, action):
    uri = server.conninfo()
    parent, child = _names()
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {parent} (id int PRIMARY KEY)")
        conn.execute(f"CREATE TABLE {child} (id int PRIMARY KEY, "
                     f"p int REFERENCES {parent} ON DELETE {action})")
        conn.execute(f"INSERT INTO {parent} VALUES (1), (2)")
        conn.execute(f"INSERT INTO {child} VALUES (1, 1)")
    with psycopg.connect(uri) as a, psycopg.connect(uri, autocommit=True) as b, \
            ThreadPoolExecutor(1) as pool:
        a.execute(f"DELETE FROM {parent} WHERE id = 1")  # acts on child 1
        insert = _waiting(pool, b, f"INSERT INTO {child} VALUES (2, 1)")
        a.commit()
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            insert.result(timeout=30)
        rows = b.execute(f"SELECT id, p FROM {child} ORDER BY id").fetchall()
    assert rows == ([] if action == "CASCADE" else [(1, None)])
    assert _orphans(uri, parent, child) == 0


def test_cascading_delete_waits_for_a_child_block_and_deletes_its_row(server):
    uri = server.conninfo()
    parent, child = _names()
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {parent} (id int PRIMARY KEY)")
        conn.execute(f"CREATE TABLE {child} (id int PRIMARY KEY, "
                     f"p int REFERENCES {parent} ON DELETE CASCADE)")
        conn.execute(f"INSERT INTO {parent} VALUES (1)")
    with psycopg.connect(uri) as a, psycopg.connect(uri, autocommit=True) as b, \
            ThreadPoolExecutor(1) as pool:
        a.execute(f"INSERT INTO {child} VALUES (1, 1)")
        delete = _waiting(pool, b, f"DELETE FROM {parent} WHERE id = 1")
        a.commit()
        assert delete.result(timeout=30) == 1
        assert b.execute(f"SELECT count(*) FROM {child}").fetchone() == (0,)
    assert _orphans(uri, parent, child) == 0


def test_truncate_waits_for_a_child_block(tables):
    """As PostgreSQL's: the TRUNCATE waits for the block that inserted a child, then
    empties both tables."""
    uri, parent, child = tables
    with psycopg.connect(uri) as a, psycopg.connect(uri, autocommit=True) as b, \
            ThreadPoolExecutor(1) as pool:
        a.execute(f"INSERT INTO {child} VALUES (15, 1)")
        truncate = pool.submit(b.execute, f"TRUNCATE {parent}, {child}")
        time.sleep(0.3)
        assert not truncate.done()
        a.commit()
        truncate.result(timeout=30)
    assert _orphans(uri, parent, child) == 0
    with psycopg.connect(uri) as conn:
        assert conn.execute(f"SELECT count(*) FROM {child}").fetchone() == (0,)


def test_concurrent_writers_leave_no_orphan(server):
    """Writers insert children of random parents and delete random parents (plus new
    parents), autocommit and in small blocks: at the end no child lacks its parent, and every
    acknowledged write is there."""
    uri = server.conninfo()
    parent, child = _names()
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {parent} (id int PRIMARY KEY)")
        conn.execute(f"CREATE TABLE {child} (id int PRIMARY KEY, p int NOT NULL "
                     f"REFERENCES {parent})")
        conn.execute(f"INSERT INTO {parent} SELECT generate_series(1, 20)")
    lock = threading.Lock()
    acked_children: dict[int, int] = {}
    acked_parents: set[int] = set(range(1, 21))
    deleted_parents: set[int] = set()
    failures: list[BaseException] = []
    expected = (psycopg.errors.ForeignKeyViolation, psycopg.errors.SerializationFailure,
                psycopg.errors.UniqueViolation)

    def writer(w: int) -> None:
        rng = random.Random(w)
        try:
            with psycopg.connect(uri, autocommit=True) as conn:
                for i in range(60):
                    p = rng.randint(1, 24)
                    cid = w * 1000 + i
                    roll = rng.random()
                    try:
                        if roll < 0.45:
                            conn.execute(f"INSERT INTO {child} VALUES (%s, %s)", (cid, p))
                            with lock:
                                acked_children[cid] = p
                        elif roll < 0.75:
                            conn.execute(f"DELETE FROM {parent} WHERE id = %s", (p,))
                            with lock:
                                deleted_parents.add(p)
                        elif roll < 0.9:
                            with conn.transaction():
                                conn.execute(f"INSERT INTO {child} VALUES (%s, %s)", (cid, p))
                                conn.execute(f"INSERT INTO {child} VALUES (%s, %s)",
                                             (cid + 500, p))
                            with lock:
                                acked_children[cid] = acked_children[cid + 500] = p
                        else:
                            conn.execute(f"INSERT INTO {parent} VALUES (%s) "
                                         "ON CONFLICT DO NOTHING", (p,))
                    except expected:
                        pass
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    assert _orphans(uri, parent, child) == 0
    with psycopg.connect(uri, autocommit=True) as conn:
        children = dict(conn.execute(f"SELECT id, p FROM {child}").fetchall())
        parents = {r[0] for r in conn.execute(f"SELECT id FROM {parent}").fetchall()}
    assert children == acked_children  # children are never deleted here
    assert set(acked_children.values()) <= parents
    assert acked_parents - deleted_parents <= parents | deleted_parents
