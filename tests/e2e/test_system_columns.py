"""System columns through the wire: psycopg in text format, asyncpg in binary."""

from __future__ import annotations

import psycopg

from tests.e2e.conftest import run_asyncpg


def test_psycopg_reads_system_columns_as_text(server, table):
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
        conn.execute(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')")
        cur = conn.execute(f"SELECT tableoid, xmin, ctid, xmax, * FROM {table} ORDER BY id")
        oid = conn.execute("SELECT oid FROM pg_class WHERE relname = %s", (table,)).fetchone()[0]
        assert [(d.name, d.type_code) for d in cur.description] == [
            ("tableoid", 26), ("xmin", 28), ("ctid", 27), ("xmax", 28), ("id", 23), ("v", 25)]
        assert [cur.pgresult.ftablecol(i) for i in range(4)] == [-6, -2, -1, -4]
        first, second = cur.fetchall()
        assert first[0] == second[0] == oid
        assert first[2:] == ("(0,1)", "0", 1, "a") and second[2] == "(0,2)"
        assert first[1] != second[1]
        token = first[1]
        row = conn.execute(f"SELECT id, tableoid::regclass::text FROM {table} "
                           "WHERE ctid = %s", ("(0,1)",)).fetchone()
        assert row == (1, table)
        cur = conn.execute(f"UPDATE {table} SET v = 'z' WHERE id = 1 AND xmin = %s", (token,))
        assert cur.rowcount == 1
        cur = conn.execute(f"UPDATE {table} SET v = 'y' WHERE id = 1 AND xmin = %s", (token,))
        assert cur.rowcount == 0  # the token changed with the update


def test_asyncpg_reads_system_columns_in_binary(server, table):
    async def body(conn):
        await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
        await conn.execute(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')")
        rows = await conn.fetch(f"SELECT tableoid, xmin, ctid, cmin, * FROM {table} "
                                "ORDER BY id")
        oid = await conn.fetchval("SELECT oid FROM pg_class WHERE relname = $1", table)
        assert [r["tableoid"] for r in rows] == [oid, oid]
        assert [tuple(r["ctid"]) for r in rows] == [(0, 1), (0, 2)]
        assert all(isinstance(r["xmin"], int) and r["cmin"] == 0 for r in rows)
        assert rows[0]["xmin"] != rows[1]["xmin"]
        assert list(rows[0].keys()) == ["tableoid", "xmin", "ctid", "cmin", "id", "v"]
        assert await conn.fetchval(f"SELECT id FROM {table} WHERE ctid = $1", (0, 2)) == 2
        token = rows[0]["xmin"]
        update = f"UPDATE {table} SET v = $1 WHERE id = 1 AND xmin = $2"
        assert await conn.execute(update, "z", token) == "UPDATE 1"
        assert await conn.execute(update, "y", token) == "UPDATE 0"

    run_asyncpg(server, body)


def test_reg_types_print_names_in_text_and_oids_in_binary(server, table):
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int)")
        conn.execute(f"INSERT INTO {table} VALUES (1)")
        oid = conn.execute("SELECT oid FROM pg_class WHERE relname = %s", (table,)).fetchone()[0]
        row = conn.execute(f"SELECT tableoid::regclass, %s::regclass, 'pg_class'::regclass, "
                           f"'int4'::regtype, 0::regclass, 4000000000::regclass FROM {table}",
                           (table,)).fetchone()
        assert row == (table, table, "pg_class", "integer", "-", "4000000000")
        (binary,) = conn.cursor(binary=True).execute(
            f"SELECT tableoid::regclass FROM {table}").fetchone()
        assert int.from_bytes(binary, "big") == oid  # psycopg has no binary regclass loader
