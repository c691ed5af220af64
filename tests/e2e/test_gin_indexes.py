"""GIN indexes through the real server: created on jsonb (jsonb_ops, jsonb_path_ops) and on
arrays, shown by psql's `\\d` and dumped by pg_dump as PostgreSQL shows and dumps them, kept
across a restart, dropped; the queries they serve give the same rows with or without them,
and EXPLAIN shows the scan that answers them (sqlvec does not search GIN indexes).
"""

from __future__ import annotations

import shutil
import subprocess

import psycopg
import pytest

from tests.e2e.conftest import explain, ids, start_server
from tests.e2e.test_pg_dump import pg_dump_binary

PSQL = shutil.which("psql")
QUERIES = [
    ("SELECT id FROM docs WHERE meta @> %s::jsonb ORDER BY id", '{"topic": "news"}'),
    ("SELECT id FROM docs WHERE meta ? %s ORDER BY id", "flag"),
    ("SELECT id FROM docs WHERE meta @? %s::jsonpath ORDER BY id", '$.n ? (@ > 150)'),
    ("SELECT id FROM docs WHERE meta @@ %s::jsonpath ORDER BY id", '$.topic == "blog" && $.n < 20'),
    ("SELECT id FROM docs WHERE jsonb_path_match(meta, '$.n == $v', %s) ORDER BY id",
     '{"v": 7}'),
    ("SELECT id FROM docs WHERE tags @> %s::text[] ORDER BY id", "{t3}"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("gin")
    state = {"server": start_server(work / "s0"), "work": work}
    with psycopg.connect(state["server"].conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, meta jsonb, tags text[])")
        with conn.cursor().copy("COPY docs (id, meta, tags) FROM STDIN") as copy:
            for i in range(300):
                topic = ("news", "blog", "paper")[i % 3]
                flag = ', "flag": true' if i % 7 == 0 else ""
                copy.write_row((i, f'{{"topic": "{topic}", "n": {i}{flag}}}',
                                "{" + f"t{i % 5},t{i % 4}" + "}"))
        state["before"] = [ids(conn, sql, p) for sql, p in QUERIES]
        conn.execute("CREATE INDEX docs_meta ON docs USING gin (meta jsonb_path_ops)")
        conn.execute("CREATE INDEX docs_meta_ops ON docs USING gin (meta)")
        conn.execute("CREATE INDEX docs_tags ON docs USING gin (tags)")
    yield state
    assert state["server"].stop() == 0, state["server"].log()
    assert "Traceback" not in state["server"].log(), state["server"].log()


@pytest.fixture
def conn(server):
    with psycopg.connect(server["server"].conninfo(), autocommit=True) as c:
        yield c


def test_same_rows_with_the_indexes(conn, server):
    after = [ids(conn, sql, p) for sql, p in QUERIES]
    assert after == server["before"]
    assert after[0] == list(range(0, 300, 3))
    assert after[1] == list(range(0, 300, 7))
    assert after[2] == list(range(151, 300))
    assert after[3] == [1, 4, 7, 10, 13, 16, 19]
    assert after[4] == [7]
    assert after[5] == sorted({i for i in range(300) if i % 5 == 3 or i % 4 == 3})


def test_explain_shows_the_scan_that_runs(conn):
    plan = explain(conn, "SELECT id FROM docs WHERE meta @> '{\"topic\": \"news\"}'")
    assert "Seq Scan on docs" in plan and "Filter:" in plan, plan
    assert "docs_meta" not in plan, plan


def test_psql_describes_the_indexes(server):
    if PSQL is None:
        pytest.skip("psql is not installed")
    out = subprocess.run([PSQL, "-X", "-h", "127.0.0.1", "-p", str(server["server"].port), "-U",
                          "postgres", "-d", "postgres", "-P", "pager=off", "-c", r"\d docs"],
                         capture_output=True, text=True, timeout=60)
    assert '    "docs_meta" gin (meta jsonb_path_ops)' in out.stdout, out.stdout
    assert '    "docs_meta_ops" gin (meta)' in out.stdout, out.stdout
    assert '    "docs_tags" gin (tags)' in out.stdout, out.stdout


def test_pg_dump_dumps_them_and_the_dump_restores(conn, server):
    dump = subprocess.run([pg_dump_binary(), "--table", "public.docs",
                           server["server"].conninfo()], capture_output=True, text=True,
                          timeout=120)
    assert dump.returncode == 0, dump.stderr
    assert "CREATE INDEX docs_meta ON public.docs USING gin (meta jsonb_path_ops);" in dump.stdout
    assert "CREATE INDEX docs_tags ON public.docs USING gin (tags);" in dump.stdout
    conn.execute("CREATE TABLE docs_copy (id int, meta jsonb)")
    try:  # the dumped statement runs as it is printed
        conn.execute("CREATE INDEX docs_copy_meta ON public.docs_copy USING gin "
                     "(meta jsonb_path_ops)")
        conn.execute("DROP INDEX docs_copy_meta")
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'docs_copy'") \
            .fetchone() == (0,)
    finally:
        conn.execute("DROP TABLE docs_copy")


def test_a_restart_keeps_the_indexes(server):
    old = server["server"]
    assert old.stop() == 0, old.log()
    server["server"] = start_server(server["work"] / "s1", data_dir=old.data_dir)
    with psycopg.connect(server["server"].conninfo(), autocommit=True) as c:
        assert c.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'docs' "
            "AND indexname <> 'docs_pkey' ORDER BY 1").fetchall() == [
            ("docs_meta", "CREATE INDEX docs_meta ON public.docs USING gin (meta jsonb_path_ops)"),
            ("docs_meta_ops", "CREATE INDEX docs_meta_ops ON public.docs USING gin (meta)"),
            ("docs_tags", "CREATE INDEX docs_tags ON public.docs USING gin (tags)")]
        assert [ids(c, sql, p) for sql, p in QUERIES] == server["before"]
