"""UNIQUE and PRIMARY KEY ... DEFERRABLE through psycopg and psql, compared with a real
PostgreSQL: the same scripts (autocommit and transaction blocks) give the same command tags,
errors (SQLSTATE, message, DETAIL, constraint) and final rows on both; the catalog
(pg_constraint, pg_get_constraintdef) and psql's \\d agree.

A key that is not DEFERRABLE is checked row by row as PostgreSQL does (`UPDATE SET pos =
pos + 1` fails); DEFERRABLE INITIALLY IMMEDIATE at the end of the statement; deferred at
COMMIT or at SET CONSTRAINTS ... IMMEDIATE.
"""

from __future__ import annotations

import shutil
import subprocess

import psycopg
import pytest

from tests.e2e.conftest import beside_postgres, start_server

DDL = [
    "CREATE TABLE plain (id int, pos int UNIQUE)",
    "CREATE TABLE later (id int PRIMARY KEY DEFERRABLE, pos int, "
    "CONSTRAINT later_pos UNIQUE (pos) DEFERRABLE INITIALLY DEFERRED)",
    "CREATE TABLE stmt (a int UNIQUE DEFERRABLE INITIALLY IMMEDIATE, b int)",
    "CREATE TABLE pk2 (a int, b int, PRIMARY KEY (a, b) DEFERRABLE INITIALLY DEFERRED)",
    "INSERT INTO plain VALUES (1, 1), (2, 2), (3, 3)",
    "INSERT INTO later VALUES (1, 1), (2, 2), (3, 3)",
    "INSERT INTO stmt VALUES (1, 0), (2, 0), (3, 0)",
    "INSERT INTO pk2 VALUES (1, 1), (1, 2)",
]

# Each script runs on a fresh connection (autocommit unless it says BEGIN); every statement's
# outcome is compared.
SCRIPTS = [
    ["UPDATE plain SET pos = pos + 1"],
    ["UPDATE plain SET pos = pos - 1", "UPDATE plain SET pos = pos + 1"],
    ["BEGIN", "INSERT INTO plain VALUES (4, 4)", "UPDATE plain SET pos = pos + 1 WHERE id >= 3",
     "ROLLBACK"],
    ["BEGIN", "INSERT INTO plain VALUES (4, 4)", "UPDATE plain SET pos = pos - 1 WHERE id >= 3",
     "COMMIT"],
    ["UPDATE later SET pos = pos + 1, id = id + 1"],
    ["UPDATE stmt SET a = a + 1"],
    ["INSERT INTO stmt VALUES (2, 1)"],
    ["INSERT INTO later VALUES (9, 2)"],
    ["BEGIN", "INSERT INTO later VALUES (9, 2)", "COMMIT"],
    ["BEGIN", "INSERT INTO later VALUES (9, 2)", "UPDATE later SET pos = 20 WHERE id = 2",
     "COMMIT"],
    ["BEGIN", "INSERT INTO later VALUES (10, 3)", "SET CONSTRAINTS later_pos IMMEDIATE",
     "ROLLBACK"],
    ["BEGIN", "INSERT INTO later VALUES (3, 30)", "ROLLBACK"],
    ["BEGIN", "SET CONSTRAINTS ALL DEFERRED", "INSERT INTO later VALUES (3, 30)",
     "DELETE FROM later WHERE id = 3 AND pos <> 30", "COMMIT"],
    ["BEGIN", "SET CONSTRAINTS later_pkey DEFERRED", "INSERT INTO later VALUES (3, 31)",
     "COMMIT"],
    ["BEGIN", "INSERT INTO pk2 VALUES (1, 1)", "SET CONSTRAINTS pk2_pkey IMMEDIATE",
     "ROLLBACK"],
    ["SET CONSTRAINTS plain_pos_key DEFERRED"],
    ["INSERT INTO later VALUES (9, 9) ON CONFLICT (pos) DO NOTHING"],
    ["INSERT INTO later VALUES (9, 9) ON CONFLICT ON CONSTRAINT later_pos DO NOTHING"],
    ["INSERT INTO stmt VALUES (9, 9) ON CONFLICT DO NOTHING"],
    ["INSERT INTO plain VALUES (9, 9) ON CONFLICT DO NOTHING"],
]

CATALOG = [
    "SELECT conname, contype, condeferrable, condeferred, pg_get_constraintdef(oid) "
    "FROM pg_constraint WHERE conrelid IN ('plain'::regclass, 'later'::regclass, "
    "'stmt'::regclass, 'pk2'::regclass) AND contype IN ('p', 'u') ORDER BY conname",
    "SELECT table_name, constraint_name, is_deferrable, initially_deferred "
    "FROM information_schema.table_constraints WHERE table_name IN ('later', 'stmt') "
    "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE') ORDER BY constraint_name",
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(sqlvec URI, PostgreSQL URI); each test sets its tables up itself."""
    with beside_postgres(tmp_path_factory, "deferrable") as uris:
        yield uris


def _fresh(uri: str) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS plain, later, stmt, pk2")
        for sql in DDL:
            conn.execute(sql)


def _run(uri: str, script: list[str]) -> list:
    out = []
    with psycopg.connect(uri, autocommit=True) as conn:
        for sql in script:
            try:
                cur = conn.execute(sql)
                out.append(cur.statusmessage)
            except psycopg.Error as exc:
                d = exc.diag
                out.append((d.sqlstate, d.message_primary, d.message_detail,
                            d.constraint_name))
        for table in ("plain", "later", "stmt", "pk2"):
            out.append(conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall())
    return out


@pytest.mark.parametrize("script", SCRIPTS, ids=[" ; ".join(s)[:60] for s in SCRIPTS])
def test_script_matches_postgresql(servers, script):
    outcomes = []
    for uri in servers:
        _fresh(uri)
        outcomes.append(_run(uri, script))
    assert outcomes[0] == outcomes[1]


def test_catalog_matches_postgresql(servers):
    results = []
    for uri in servers:
        _fresh(uri)
        with psycopg.connect(uri, autocommit=True) as conn:
            results.append([conn.execute(sql).fetchall() for sql in CATALOG])
    assert results[0] == results[1]
    assert ("later_pos", "u", True, True, "UNIQUE (pos) DEFERRABLE INITIALLY DEFERRED") \
        in results[0][0]


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
@pytest.mark.parametrize("table", ["later", "stmt", "pk2"])
def test_psql_describe_matches_postgresql(servers, table):
    texts = []
    for uri in servers:
        _fresh(uri)
        out = subprocess.run(["psql", uri, "-X", "-c", f"\\d {table}"], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        texts.append(out.stdout)
    assert "DEFERRABLE" in texts[0]
    assert texts[0] == texts[1]


def test_deferrable_keys_survive_restart(tmp_path):
    running = start_server(tmp_path / "s")
    uri = f"postgresql://postgres@{running.host}:{running.port}/postgres"
    try:
        _fresh(uri)
    finally:
        assert running.stop() == 0, running.log()
    running = start_server(tmp_path / "s2", data_dir=running.data_dir)
    uri = f"postgresql://postgres@{running.host}:{running.port}/postgres"
    try:
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("UPDATE later SET pos = pos + 1, id = id + 1")
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute("UPDATE plain SET pos = pos + 1")
    finally:
        assert running.stop() == 0, running.log()
