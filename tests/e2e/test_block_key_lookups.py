"""An ORM-style block over the wire (psycopg, prepared statements): its statements by primary
key see its own inserts, updates and deletes, ROLLBACK TO SAVEPOINT takes them back, and
another connection sees none of it before COMMIT."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.e2e.conftest import beside_postgres


def by_key(conn: psycopg.Connection, table: str, key: int) -> list[tuple]:
    return conn.execute(f"SELECT id, v FROM {table} WHERE id = %s", (key,),
                        prepare=True).fetchall()


def test_block_reads_its_own_writes_by_key(server, table):
    with psycopg.connect(server.conninfo(), autocommit=True) as conn, \
            psycopg.connect(server.conninfo(), autocommit=True) as other:
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, v int)")
        conn.execute(f"INSERT INTO {table} SELECT g, 0 FROM generate_series(1, 100) g")
        with conn.transaction():
            for i in range(1, 21):
                conn.execute(f"UPDATE {table} SET v = v + 1 WHERE id = %s", (i,), prepare=True)
            conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (500, 5), prepare=True)
            conn.execute(f"UPDATE {table} SET v = v + 1 WHERE id = %s", (500,), prepare=True)
            conn.execute(f"DELETE FROM {table} WHERE id = %s", (7,), prepare=True)
            conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (7, 70), prepare=True)
            assert by_key(conn, table, 500) == [(500, 6)]
            assert by_key(conn, table, 7) == [(7, 70)]
            assert by_key(conn, table, 8) == [(8, 1)]
            with conn.transaction():  # a savepoint, rolled back
                conn.execute(f"DELETE FROM {table} WHERE id = %s", (500,), prepare=True)
                conn.execute(f"UPDATE {table} SET v = 0 WHERE id = %s", (8,), prepare=True)
                assert by_key(conn, table, 500) == []
                raise psycopg.Rollback()
            assert by_key(conn, table, 500) == [(500, 6)]
            assert by_key(conn, table, 8) == [(8, 1)]
            assert by_key(other, table, 500) == []
            assert by_key(other, table, 7) == [(7, 0)]
        assert by_key(other, table, 500) == [(500, 6)]
        assert by_key(other, table, 7) == [(7, 70)]
        assert other.execute(f"SELECT sum(v) FROM {table}").fetchone() == (20 - 1 + 70 + 6,)


# The same ORM-style writes by key, on sqlvec and on PostgreSQL ------------------------------

@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with beside_postgres(tmp_path_factory, "blockkeys") as uris:
        yield uris


def _fresh(uri: str) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS k")
        conn.execute("CREATE TABLE k (id bigint PRIMARY KEY, v int NOT NULL CHECK (v < 100),"
                     " s text)")
        conn.execute("INSERT INTO k SELECT g, g, 'x' FROM generate_series(1, 10) g")


def _contents(uri: str) -> list[tuple]:
    with psycopg.connect(uri, autocommit=True) as conn:
        return conn.execute("SELECT id, v, s FROM k ORDER BY id").fetchall()


def _sqlstate(run) -> str | None:
    try:
        run()
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


def _batches(uri: str) -> list:
    """executemany of UPDATE / DELETE by key (one implicit block each): one failing on its
    CHECK (the whole batch undone), then ones that go through."""
    out = []
    with psycopg.connect(uri, autocommit=True) as conn:
        cur = conn.cursor()
        out.append(_sqlstate(lambda: cur.executemany(
            "UPDATE k SET v = v + %s WHERE id = %s", [(1, 1), (1, 2), (200, 3), (1, 4)])))
        out.append(_sqlstate(lambda: cur.executemany(
            "UPDATE k SET v = v + %s, s = %s WHERE id = %s",
            [(1, "a", 1), (2, "b", 2), (3, "c", 1), (4, "d", 99)])))
        out.append(_sqlstate(lambda: cur.executemany(
            "DELETE FROM k WHERE id = %s", [(5,), (5,), (6,)])))
        out.append(_sqlstate(lambda: cur.executemany(
            "UPDATE k SET id = %s WHERE id = %s", [(50, 7), (8, 50), (9, 8)])))  # 9 is taken
    return out


def _block_beside_a_waiter(uri: str) -> list:
    """A block updates rows by key (prepared, in savepoints) while another connection's
    block waits for one of them, then re-checks it after the COMMIT."""
    out: list = []
    with psycopg.connect(uri, autocommit=True) as conn, \
            psycopg.connect(uri, autocommit=True) as other, ThreadPoolExecutor(1) as pool:
        conn.execute("BEGIN")
        for key, add in ((1, 10), (2, 20), (10, 5)):
            out.append(conn.execute("UPDATE k SET v = v + %s WHERE id = %s", (add, key),
                                    prepare=True).rowcount)
        conn.execute("SAVEPOINT a")
        out.append(conn.execute("DELETE FROM k WHERE id = %s", (2,), prepare=True).rowcount)
        conn.execute("ROLLBACK TO SAVEPOINT a")
        out.append(conn.execute("UPDATE k SET id = %s WHERE id = %s", (110, 10),
                                prepare=True).rowcount)
        other.execute("BEGIN")
        waiting = [pool.submit(lambda key=key: other.execute(
            "UPDATE k SET v = v + 1 WHERE id = %s", (key,), prepare=True).rowcount)
            for key in (1,)]
        time.sleep(0.4)
        assert not waiting[0].done()
        conn.execute("COMMIT")
        out.append(waiting[0].result(timeout=30))
        out.append(other.execute("UPDATE k SET v = v + 1 WHERE id = %s", (10,),
                                 prepare=True).rowcount)  # moved to 110 by the COMMIT
        other.execute("COMMIT")
    return out


@pytest.mark.parametrize("scenario", [_batches, _block_beside_a_waiter])
def test_writes_by_key_as_postgres_does(servers, scenario):
    outcomes = {}
    for uri in servers:
        _fresh(uri)
        outcomes[uri] = (scenario(uri), _contents(uri))
    ours, postgres = outcomes.values()
    assert ours == postgres
