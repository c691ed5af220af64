"""An ORM-style block over the wire (psycopg, prepared statements): its statements by primary
key see its own inserts, updates and deletes, ROLLBACK TO SAVEPOINT takes them back, and
another connection sees none of it before COMMIT."""

from __future__ import annotations

import psycopg


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
