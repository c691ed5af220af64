"""Materialized views through psycopg, psql and pg_dump, compared with a real PostgreSQL.

The same scripts run on sqlvec and on the PostgreSQL of the pgserver package: command tags,
errors (SQLSTATE, message, HINT) and rows must be the same, and so must psql's `\\dm`, `\\d`
and `\\d+` and the catalog rows (pg_matviews, pg_class). sqlvec-only: a matview survives a
restart, and a vector index on one serves `ORDER BY <->` as a table's does.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import psycopg
import pytest

from tests.e2e.conftest import beside_postgres, start_server

SETUP = [
    "DROP MATERIALIZED VIEW IF EXISTS mv, mv2, totals",
    "DROP TABLE IF EXISTS base",
    "CREATE TABLE base (id int, v int, g text)",
    "INSERT INTO base VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 30, 'a')",
]

SCRIPT = [
    "CREATE MATERIALIZED VIEW mv AS SELECT id, v * 2 AS w FROM base WITH NO DATA",
    "SELECT * FROM mv",
    "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
    "REFRESH MATERIALIZED VIEW mv",
    "SELECT * FROM mv ORDER BY id",
    "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
    "REFRESH MATERIALIZED VIEW CONCURRENTLY mv WITH NO DATA",
    "CREATE MATERIALIZED VIEW mv AS SELECT 1",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS mv AS SELECT 1",
    "INSERT INTO mv VALUES (3, 3)",
    "UPDATE mv SET w = 0",
    "DELETE FROM mv",
    "DROP TABLE mv",
    "TRUNCATE mv",
    "ALTER TABLE mv ADD COLUMN z int",
    "DROP VIEW mv",
    "DROP MATERIALIZED VIEW base",
    "DROP MATERIALIZED VIEW nope",
    "DROP MATERIALIZED VIEW IF EXISTS nope",
    "REFRESH MATERIALIZED VIEW nope",
    "CREATE UNIQUE INDEX mv_id ON mv (id)",
    "INSERT INTO base VALUES (4, 40, 'b')",
    "SELECT count(*) FROM mv",
    "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
    "SELECT * FROM mv WHERE w > 30 ORDER BY id",
    "CREATE MATERIALIZED VIEW mv2 (a, b) AS SELECT id, v FROM base WHERE g = 'a'",
    "SELECT * FROM mv2 ORDER BY a",
    "CREATE MATERIALIZED VIEW totals AS SELECT g, sum(v) AS total FROM base GROUP BY g",
    "SELECT * FROM totals ORDER BY g",
    "SELECT m.id, t.total FROM mv m JOIN base b USING (id) JOIN totals t ON t.g = b.g "
    "ORDER BY m.id",
    "REFRESH MATERIALIZED VIEW mv WITH NO DATA",
    "SELECT * FROM mv",
    "BEGIN",
    "REFRESH MATERIALIZED VIEW mv",
    "COMMIT",
    "SELECT count(*) FROM mv",
    # (definition: PostgreSQL's deparser adds parentheses and casts, as for views)
    "SELECT schemaname, matviewname, hasindexes, ispopulated, definition LIKE ' SELECT %' "
    "FROM pg_matviews ORDER BY matviewname",
    "SELECT relname, relkind, relispopulated FROM pg_class WHERE relname IN ('mv', 'mv2', "
    "'totals') ORDER BY relname",
    "SELECT table_name FROM information_schema.tables WHERE table_name IN ('mv', 'mv2')",
    "DROP TABLE base",
    "DROP MATERIALIZED VIEW mv",
    "DROP MATERIALIZED VIEW mv2, totals",
    "SELECT matviewname FROM pg_matviews",
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(sqlvec URI, PostgreSQL URI)."""
    with beside_postgres(tmp_path_factory, "matviews") as uris:
        yield uris


def _run(uri: str, script: list[str]) -> list:
    out = []
    with psycopg.connect(uri, autocommit=True) as conn:
        for sql in SETUP:
            conn.execute(sql)
        for sql in script:
            try:
                cur = conn.execute(sql)
                out.append((sql, cur.statusmessage,
                            cur.fetchall() if cur.description else None))
            except psycopg.Error as exc:
                d = exc.diag
                out.append((sql, d.sqlstate, d.message_primary, d.message_hint))
    return out


def test_script_matches_postgresql(servers):
    ours, theirs = (_run(uri, SCRIPT) for uri in servers)
    for mine, pg in zip(ours, theirs):
        assert mine == pg


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
@pytest.mark.parametrize("command", ["\\dm", "\\d mv", "\\d+ mv2"])
def test_psql_describe_matches_postgresql(servers, command):
    texts = []
    for uri in servers:
        _run(uri, ["CREATE MATERIALIZED VIEW mv AS SELECT id, v * 2 AS w FROM base",
                   "CREATE UNIQUE INDEX mv_id ON mv (id)",
                   "CREATE MATERIALIZED VIEW mv2 (a, b) AS SELECT id, v FROM base"])
        out = subprocess.run(["psql", uri, "-X", "-c", command], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        texts.append(out.stdout)
    assert "aterialized view" in texts[0]
    assert texts[0] == texts[1]


def test_matview_survives_restart_and_serves_vector_search(tmp_path):
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    running = start_server(tmp_path / "s")
    uri = f"postgresql://postgres@{running.host}:{running.port}/postgres"
    try:
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE TABLE docs (id int, kind text, e vector(8))")
            with conn.cursor().copy("COPY docs FROM STDIN") as copy:
                for i, v in enumerate(vectors):
                    copy.write_row((i, "even" if i % 2 == 0 else "odd",
                                    "[" + ",".join(map(str, v)) + "]"))
            conn.execute("CREATE MATERIALIZED VIEW evens AS SELECT id, e FROM docs "
                         "WHERE kind = 'even'")
            conn.execute("CREATE MATERIALIZED VIEW later AS SELECT id FROM docs WITH NO DATA")
    finally:
        assert running.stop() == 0, running.log()
    running = start_server(tmp_path / "s2", data_dir=running.data_dir)
    uri = f"postgresql://postgres@{running.host}:{running.port}/postgres"
    try:
        with psycopg.connect(uri, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM evens").fetchone() == (150,)
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
                conn.execute("SELECT * FROM later")
            conn.execute("CREATE INDEX ON evens USING hnsw (e vector_l2_ops)")
            q = vectors[3] + 0.01
            text = "[" + ",".join(map(str, q)) + "]"
            got = [r[0] for r in conn.execute(
                "SELECT id FROM evens ORDER BY e <-> %s::vector LIMIT 5", (text,)).fetchall()]
            plan = "\n".join(r[0] for r in conn.execute(
                "EXPLAIN SELECT id FROM evens ORDER BY e <-> %s::vector LIMIT 5", (text,)))
        evens = np.arange(0, 300, 2)
        exact = evens[np.argsort(np.linalg.norm(vectors[evens] - q, axis=1))[:5]]
        assert got == exact.tolist()
        assert "Vector Top-K" in plan
    finally:
        assert running.stop() == 0, running.log()


def test_pg_dump_restores_a_matview(servers):
    from tests.e2e.test_pg_dump import pg_dump_binary

    ours, theirs = servers
    _run(ours, ["CREATE MATERIALIZED VIEW mv AS SELECT id, v * 2 AS w FROM base"])
    out = subprocess.run([pg_dump_binary(), "--no-owner", "-t", "base", "-t", "mv", ours],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "CREATE MATERIALIZED VIEW public.mv AS" in out.stdout
    assert "REFRESH MATERIALIZED VIEW public.mv;" in out.stdout
    with psycopg.connect(theirs, autocommit=True) as conn:
        for sql in SETUP[:2]:
            conn.execute(sql)
    restore = subprocess.run(["psql", theirs, "-X", "-v", "ON_ERROR_STOP=1", "-q"],
                             input=out.stdout, capture_output=True, text=True, timeout=120)
    assert restore.returncode == 0, restore.stderr
    with psycopg.connect(theirs, autocommit=True) as conn:
        assert conn.execute("SELECT * FROM mv ORDER BY id").fetchall() == \
            [(1, 20), (2, 40), (3, 60)]
