"""Views and CREATE TABLE ... AS through the real server: psycopg and psql.

A vector query through a view is planned as the view's query inlined (the filtered top-k
takes the vector path and returns exactly k rows); views and tables made by CREATE TABLE AS
survive a restart; psql describes a view as PostgreSQL 16's psql does.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import psycopg
import pytest

from tests.e2e.conftest import RunningServer

PSQL = shutil.which("psql")
DIM = 8
ROWS = 3000


def _vec(v) -> str:
    return "[" + ",".join(f"{x:.6f}" for x in v) + "]"


@pytest.fixture
def loaded(start) -> RunningServer:
    """A server with a table of random vectors in 3 categories, an HNSW index over it, and a
    view that selects one category."""
    server = start()
    rng = np.random.default_rng(7)
    data = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE docs (id int PRIMARY KEY, cat text, emb vector({DIM}))")
        with conn.cursor().copy("COPY docs (id, cat, emb) FROM STDIN") as copy:
            for i, row in enumerate(data):
                copy.write_row((i, "abc"[i % 3], _vec(row)))
        conn.execute("CREATE INDEX ON docs USING hnsw (emb vector_l2_ops)")
        conn.execute("CREATE VIEW cat_a AS SELECT id, emb, cat FROM docs WHERE cat = 'a'")
    server.data = data  # type: ignore[attr-defined]
    return server


def test_filtered_topk_through_view_takes_vector_path(loaded):
    query = np.zeros(DIM, dtype=np.float32)
    sql = "SELECT id FROM cat_a WHERE id > 100 ORDER BY emb <-> %s::vector LIMIT 10"
    with psycopg.connect(loaded.conninfo(), autocommit=True) as conn:
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, (_vec(query),)))
        assert "Vector Top-K on docs" in plan
        assert "cat = 'a'" in plan and "id > 100" in plan
        got = [r[0] for r in conn.execute(sql, (_vec(query),))]
        direct = [r[0] for r in conn.execute(
            "SELECT id FROM docs WHERE cat = 'a' AND id > 100 ORDER BY emb <-> %s::vector "
            "LIMIT 10", (_vec(query),))]
    ids = np.arange(ROWS)
    wanted = ids[(ids % 3 == 0) & (ids > 100)]
    exact = wanted[np.argsort(np.linalg.norm(loaded.data[wanted] - query, axis=1))][:10]
    assert len(got) == 10
    assert got == direct
    assert len(set(got) & set(exact.tolist())) >= 9  # HNSW recall, same as the direct query


def test_topk_through_view_of_view_with_renamed_columns(loaded):
    with psycopg.connect(loaded.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE VIEW renamed (k, v) AS SELECT id, emb FROM cat_a WHERE id < 600")
        sql = "SELECT k, v <-> %s::vector AS d FROM renamed ORDER BY v <-> %s::vector LIMIT 7"
        q = _vec(np.ones(DIM))
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, (q, q)))
        rows = conn.execute(sql, (q, q)).fetchall()
    assert "Vector Top-K on docs" in plan
    assert len(rows) == 7
    assert all(k % 3 == 0 and k < 600 for k, _ in rows)
    assert [d for _, d in rows] == sorted(d for _, d in rows)


def test_view_with_aggregate_is_not_a_vector_scan_but_answers(loaded):
    with psycopg.connect(loaded.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE VIEW counts AS SELECT cat, count(*) AS n FROM docs GROUP BY cat")
        rows = conn.execute("SELECT c.cat, c.n, a.id FROM counts c JOIN cat_a a "
                            "ON a.cat = c.cat WHERE a.id < 7 ORDER BY a.id").fetchall()
    assert rows == [("a", 1000, 0), ("a", 1000, 3), ("a", 1000, 6)]


def test_create_table_as_tags_types_and_rows(loaded):
    with psycopg.connect(loaded.conninfo(), autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("CREATE TABLE near AS SELECT id, emb, cat AS c FROM docs WHERE id < 50")
        assert cur.statusmessage == "SELECT 50"
        cur.execute("SELECT id, emb INTO TABLE near2 FROM cat_a WHERE id < 30")
        assert cur.statusmessage == "SELECT 10"
        cur.execute("CREATE TABLE near3 AS SELECT * FROM docs WITH NO DATA")
        assert cur.statusmessage == "CREATE TABLE AS"
        types = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'near'::regclass AND attnum > 0 ORDER BY attnum").fetchall()
        assert types == [("id", "integer"), ("emb", f"vector({DIM})"), ("c", "text")]
        assert conn.execute("SELECT count(*) FROM near3").fetchone() == (0,)
        # The new table is a table like any other: indexable and searchable.
        conn.execute("CREATE INDEX ON near USING hnsw (emb vector_l2_ops)")
        got = conn.execute("SELECT id FROM near ORDER BY emb <-> %s::vector LIMIT 3",
                           (_vec(loaded.data[5]),)).fetchall()
        assert got[0] == (5,)
        with pytest.raises(psycopg.errors.DuplicateTable):
            conn.execute("CREATE TABLE near AS SELECT 1")


def test_drop_table_with_dependent_view(loaded):
    with psycopg.connect(loaded.conninfo(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DependentObjectsStillExist) as info:
            conn.execute("DROP TABLE docs")
        diag = info.value.diag
        assert diag.message_primary == "cannot drop table docs because other objects depend on it"
        assert diag.message_detail == "view cat_a depends on table docs"
        assert diag.message_hint == "Use DROP ... CASCADE to drop the dependent objects too."
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("DROP TABLE docs CASCADE")
        assert notices == ["drop cascades to view cat_a"]
        assert conn.execute("SELECT count(*) FROM pg_views WHERE viewname = 'cat_a'"
                            ).fetchone() == (0,)


def test_views_and_tables_made_by_ctas_survive_restart(start, tmp_path):
    data_dir = tmp_path / "data"
    server = start(data_dir=data_dir)
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v vector(2))")
        conn.execute("INSERT INTO t VALUES (1, '[1,1]'), (2, '[2,2]'), (3, '[3,3]')")
        conn.execute("CREATE VIEW big (ident, vec) AS SELECT id, v FROM t WHERE id > 1")
        conn.execute("CREATE TABLE snap AS SELECT * FROM big")
        conn.execute("ALTER VIEW big RENAME TO large")
        conn.execute("CREATE VIEW gone AS SELECT 1 AS one")
        conn.execute("DROP VIEW gone")
    assert server.stop() == 0
    again = start(data_dir=data_dir)
    with psycopg.connect(again.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT ident FROM large ORDER BY vec <-> '[0,0]' LIMIT 1"
                            ).fetchone() == (2,)
        assert conn.execute("SELECT ident, vec::text FROM snap ORDER BY 1").fetchall() == \
            [(2, "[2,2]"), (3, "[3,3]")]
        assert conn.execute("SELECT viewname FROM pg_views WHERE schemaname = 'public'"
                            ).fetchall() == [("large",)]


@pytest.mark.skipif(PSQL is None, reason="psql is not installed")
def test_psql_describes_view_as_postgresql_16(start):
    server = start()
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, cat text, emb vector(3))")
        conn.execute("CREATE VIEW near_docs AS SELECT id, cat, emb FROM docs WHERE id > 1")

    def psql(command: str) -> str:
        out = subprocess.run([PSQL, "-X", "-h", server.host, "-p", str(server.port), "-U",
                              "postgres", "-d", "postgres", "-P", "pager=off", "-c", command],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PGCONNECT_TIMEOUT": "10"})
        return out.stdout + out.stderr

    # PostgreSQL 16.4's psql against PostgreSQL 16.4, same statements.
    assert psql(r"\d+ near_docs") == (
        '                           View "public.near_docs"\n'
        " Column |   Type    | Collation | Nullable | Default | Storage  | Description \n"
        "--------+-----------+-----------+----------+---------+----------+-------------\n"
        " id     | integer   |           |          |         | plain    | \n"
        " cat    | text      |           |          |         | extended | \n"
        " emb    | vector(3) |           |          |         | external | \n"
        "View definition:\n"
        " SELECT id,\n"
        "    cat,\n"
        "    emb\n"
        "   FROM docs\n"
        "  WHERE id > 1;\n\n")
    assert psql(r"\dv") == (
        "          List of relations\n"
        " Schema |   Name    | Type |  Owner   \n"
        "--------+-----------+------+----------\n"
        " public | near_docs | view | postgres\n"
        "(1 row)\n\n")
