"""ALTER TABLE as migrations run it, through psycopg and psql: the new shape is what prepared
statements, the catalog and psql's \\d see, and what a restarted server finds."""

from __future__ import annotations

import shutil
import subprocess

import psycopg
import pytest

PSQL = shutil.which("psql")


def _psql(server, *args: str) -> str:
    out = subprocess.run([PSQL, server.conninfo(), "-X", "--no-psqlrc", *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_migration_steps_prepared_statements_and_restart(start, tmp_path) -> None:
    data = tmp_path / "data"
    server = start(data_dir=data)
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, code text, emb real[])")
        conn.execute("INSERT INTO items VALUES (1, '7', '{1,0,0}'), (2, '8', '{0,1,0}')")
        select = "SELECT * FROM items WHERE id = %s"
        for _ in range(6):  # psycopg prepares it server-side from the 5th execution
            row = conn.execute(select, (1,), prepare=True).fetchone()
        assert row == (1, "7", [1.0, 0.0, 0.0])

        with pytest.raises(psycopg.errors.DatatypeMismatch) as err:
            conn.execute("ALTER TABLE items ALTER COLUMN code TYPE int")
        assert err.value.diag.message_primary == \
            'column "code" cannot be cast automatically to type integer'
        assert err.value.diag.message_hint == 'You might need to specify "USING code::integer".'

        conn.execute("ALTER TABLE items ALTER COLUMN code TYPE int USING code::int, "
                     "ALTER COLUMN emb TYPE vector(3) USING emb::vector(3), "
                     "ADD COLUMN label varchar(20) DEFAULT 'new' NOT NULL, "
                     "ALTER COLUMN code SET NOT NULL")
        # The prepared statement is planned again for the new shape.
        cur = conn.execute(select, (1,), prepare=True)
        assert [d.name for d in cur.description] == ["id", "code", "emb", "label"]
        assert cur.fetchone() == (1, 7, "[1,0,0]", "new")

        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute("INSERT INTO items (id) VALUES (3)")
        # A failing action undoes the whole statement.
        with pytest.raises(psycopg.errors.UndefinedColumn):
            conn.execute("ALTER TABLE items RENAME COLUMN label TO title, DROP COLUMN nope")
        conn.execute("ALTER TABLE items RENAME COLUMN label TO title")
        conn.execute("COMMENT ON COLUMN items.title IS 'shown to users'")
        conn.execute("COMMENT ON TABLE items IS 'the catalogue'")
        conn.execute("INSERT INTO items VALUES (3, 9, '[0,0,1]', 'third')")
        nearest = conn.execute("SELECT id FROM items ORDER BY emb <-> '[0,0.9,0.1]' LIMIT 1")
        assert nearest.fetchone() == (2,)
    assert server.stop() == 0, server.log()

    server = start(data_dir=data)
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        rows = conn.execute("SELECT id, code, emb::text, title FROM items ORDER BY id").fetchall()
        assert rows == [(1, 7, "[1,0,0]", "new"), (2, 8, "[0,1,0]", "new"),
                        (3, 9, "[0,0,1]", "third")]
        columns = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid), col_description(a.attrelid, a.attnum) "
            "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid "
            "AND d.adnum = a.attnum WHERE a.attrelid = 'items'::regclass AND a.attnum > 0 "
            "ORDER BY a.attnum").fetchall()
        assert columns == [
            ("id", "integer", True, None, None),
            ("code", "integer", True, None, None),
            ("emb", "vector(3)", False, None, None),
            ("title", "character varying(20)", True, "'new'::character varying",
             "shown to users"),
        ]
        assert conn.execute("SELECT obj_description('items'::regclass, 'pg_class')"
                            ).fetchone() == ("the catalogue",)

    if PSQL is None:
        return
    described = _psql(server, "-c", r"\d items")
    assert 'Table "public.items"' in described
    lines = {line.split("|")[0].strip(): line for line in described.splitlines() if "|" in line}
    assert "integer" in lines["code"] and "not null" in lines["code"]
    assert "vector(3)" in lines["emb"]
    assert "character varying(20)" in lines["title"] and "'new'" in lines["title"]
    assert "label" not in described
    plus = _psql(server, "-c", r"\d+ items")
    assert "shown to users" in plus
    assert "the catalogue" in _psql(server, "-c", r"\dt+ items")


def test_set_schema_and_renames_through_psql(server, table) -> None:
    if PSQL is None:
        pytest.skip("psql is not installed")
    schema = f"s_{table[-6:]}"
    out = _psql(server, "-v", "ON_ERROR_STOP=1", "-c", f"CREATE TABLE {table} (id serial, x int)",
                "-c", f"INSERT INTO {table} (x) VALUES (10), (20)",
                "-c", f"CREATE INDEX {table}_x ON {table} (x)",
                "-c", f"CREATE SCHEMA {schema}",
                "-c", f"ALTER TABLE {table} SET SCHEMA {schema}",
                "-c", f"ALTER INDEX {schema}.{table}_x RENAME TO {table}_x2",
                "-c", f"ALTER TABLE {schema}.{table} RENAME TO {table}_b",
                "-c", f"INSERT INTO {schema}.{table}_b (x) VALUES (30)",
                "-At", "-c", f"SELECT id, x FROM {schema}.{table}_b ORDER BY id")
    assert out.strip().splitlines()[-3:] == ["1|10", "2|20", "3|30"]
    described = _psql(server, "-c", rf"\d {schema}.{table}_b")
    assert f'Table "{schema}.{table}_b"' in described
    assert f"{table}_x2" in described
    assert f"nextval('{schema}.{table}_id_seq'::regclass)" in described
