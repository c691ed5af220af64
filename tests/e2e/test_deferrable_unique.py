"""UNIQUE and PRIMARY KEY ... DEFERRABLE through psycopg and psql, compared with a real
PostgreSQL: the same scripts (autocommit and transaction blocks) give the same command tags,
errors (SQLSTATE, message, DETAIL, constraint) and final rows on both; the catalog
(pg_constraint, pg_get_constraintdef) and psql's \\d agree.

A key that is not DEFERRABLE is checked row by row as PostgreSQL does (`UPDATE SET pos =
pos + 1` fails); DEFERRABLE INITIALLY IMMEDIATE at the end of the statement; deferred at
COMMIT or at SET CONSTRAINTS ... IMMEDIATE. With several duplicates, the error names the one
PostgreSQL's deferred check meets first: the first row written that still collides.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import asyncpg
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

# Several duplicates of deferred keys at once: which constraint and key the error names.
DUPLICATES_DDL = [
    "CREATE TABLE d1 (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, u int, v int, "
    "CONSTRAINT d1_u UNIQUE (u) DEFERRABLE INITIALLY DEFERRED, "
    "CONSTRAINT d1_uv UNIQUE (u, v) DEFERRABLE INITIALLY DEFERRED)",
    "CREATE TABLE d2 (a int, b int, CONSTRAINT d2_ab UNIQUE (a, b) DEFERRABLE INITIALLY "
    "DEFERRED, CONSTRAINT d2_b UNIQUE (b) DEFERRABLE)",
    "CREATE TABLE d3 (u int, note text, CONSTRAINT d3_u UNIQUE (u) DEFERRABLE INITIALLY DEFERRED)",
    "INSERT INTO d1 SELECT g, g * 10, g FROM generate_series(1, 5) g",
    "INSERT INTO d3 SELECT g FROM generate_series(0, 100, 20) g",
]
DUPLICATES = [
    # among the transaction's own rows, in one statement and in two
    ["BEGIN", "INSERT INTO d3 VALUES (5), (7), (7), (5)", "COMMIT"],
    ["BEGIN", "INSERT INTO d3 VALUES (5), (7)", "INSERT INTO d3 VALUES (7), (5)", "COMMIT"],
    # against committed rows, both, in either order
    ["BEGIN", "INSERT INTO d3 VALUES (40), (0)", "COMMIT"],
    ["BEGIN", "INSERT INTO d3 VALUES (1), (40), (1), (0)", "COMMIT"],
    ["BEGIN", "INSERT INTO d3 VALUES (1), (2), (0), (2), (1)", "COMMIT"],
    ["BEGIN", "INSERT INTO d3 VALUES (NULL), (NULL), (9), (NULL), (9)", "COMMIT"],
    # implicit transactions: one statement, one Query with several
    ["INSERT INTO d3 VALUES (3), (2), (3), (2)"],
    ["INSERT INTO d3 VALUES (3), (2); INSERT INTO d3 VALUES (2), (3), (0)"],
    # an UPDATE makes the duplicate; a row deleted or updated since is not one
    ["BEGIN", "UPDATE d3 SET u = 60 WHERE u = 20", "UPDATE d3 SET u = 40 WHERE u = 80", "COMMIT"],
    ["BEGIN", "INSERT INTO d3 VALUES (7), (40), (7)", "DELETE FROM d3 WHERE u = 7", "COMMIT"],
    ["BEGIN", "INSERT INTO d3 VALUES (40), (7), (7)", "UPDATE d3 SET u = 41 WHERE u = 40",
     "COMMIT"],
    # several keys, multi-column ones, the primary key: per row, the keys in order
    ["BEGIN", "INSERT INTO d1 VALUES (9, 20, 2), (1, 10, 1)", "COMMIT"],
    ["BEGIN", "INSERT INTO d1 VALUES (1, 77, 1), (9, 20, 7)", "COMMIT"],
    ["BEGIN", "SET CONSTRAINTS d2_b DEFERRED", "INSERT INTO d2 VALUES (3, 3), (1, 1), (2, 1), "
     "(3, 3)", "COMMIT"],
    ["BEGIN", "UPDATE d1 SET id = 6 - id", "UPDATE d1 SET u = 30 WHERE id = 1", "COMMIT"],
    # rows of two tables: in the order written
    ["BEGIN", "INSERT INTO d3 VALUES (7)", "INSERT INTO d1 VALUES (9, 10, 9)",
     "INSERT INTO d3 VALUES (7)", "COMMIT"],
    # a text key, of a table the block creates
    ["BEGIN", "CREATE TABLE x (u text, CONSTRAINT x_u UNIQUE (u) DEFERRABLE INITIALLY DEFERRED)",
     "INSERT INTO x VALUES ('b'), ('a'), ('a'), ('b')", "COMMIT"],
    # SET CONSTRAINTS ... IMMEDIATE: the keys it names only
    ["BEGIN", "INSERT INTO d1 VALUES (9, 20, 2), (1, 10, 1)",
     "SET CONSTRAINTS d1_uv, d1_pkey IMMEDIATE", "COMMIT"],
    ["BEGIN", "INSERT INTO d1 VALUES (9, 20, 2), (1, 10, 1)", "SET CONSTRAINTS ALL IMMEDIATE",
     "COMMIT"],
]
EXECUTEMANY_ROWS = [(1000 + i, u) for i, u in enumerate([5, 40, 7, 9, 0, 5, 3])]

# Schema changes of a table with checks deferred to COMMIT (PostgreSQL's pending trigger
# events): refused (55006) and the block failed, unless the checks ran (SET CONSTRAINTS ...
# IMMEDIATE) or none was queued (a deferred key's row meeting no other).
PENDING_DDL = DDL + [
    "CREATE TABLE pp (id int PRIMARY KEY)",
    "CREATE TABLE pc (id int, pid int REFERENCES pp DEFERRABLE INITIALLY DEFERRED)",
    "INSERT INTO pp VALUES (1), (2)",
    "INSERT INTO pc VALUES (5, 1)",
]
PENDING_CHANGES = ["TRUNCATE {t}", "ALTER TABLE {t} ADD COLUMN z int",
                   "ALTER TABLE {t} ALTER COLUMN id TYPE bigint", "CREATE INDEX ON {t} (id)",
                   "DROP TABLE {t} CASCADE", "ALTER TABLE {t} RENAME COLUMN id TO id2"]
PENDING_WRITES = [
    ("later", ["INSERT INTO later VALUES (9, 2)"]),
    ("later", ["INSERT INTO later VALUES (9, 2)", "DELETE FROM later WHERE id = 9"]),
    ("later", ["UPDATE later SET pos = 1 WHERE id = 2"]),
    ("later", ["INSERT INTO later VALUES (9, 9)"]),
    ("pk2", ["INSERT INTO pk2 VALUES (1, 1)", "SET CONSTRAINTS ALL DEFERRED"]),
    ("pc", ["INSERT INTO pc VALUES (1, 1)"]),
    ("pc", ["INSERT INTO pc VALUES (1, 1)", "SET CONSTRAINTS ALL IMMEDIATE"]),
    ("pc", ["SAVEPOINT s", "INSERT INTO pc VALUES (1, 1)", "ROLLBACK TO s"]),
    ("pp", ["INSERT INTO pc VALUES (1, 1)"]),
    ("pp", ["DELETE FROM pp WHERE id = 2"]),
]
# Each write with two refusing changes (in turn, so every change meets several writes) and the
# rename, which no pending check refuses: the two dimensions are independent.
PENDING_SCRIPTS = [["BEGIN", *writes, change.format(t=table), "SELECT 1", "ROLLBACK"]
                   for i, (table, writes) in enumerate(PENDING_WRITES)
                   for change in (PENDING_CHANGES[i % 5], PENDING_CHANGES[(i + 2) % 5],
                                  PENDING_CHANGES[5])] + [
    ["BEGIN", "INSERT INTO later VALUES (9, 2)", "INSERT INTO pc VALUES (1, 1)",
     "TRUNCATE plain, pc, later", "ROLLBACK"],
    ["BEGIN", "DELETE FROM pp WHERE id = 2", "TRUNCATE pc, pp", "ROLLBACK"],
    ["BEGIN", "INSERT INTO pc VALUES (1, 1)", "TRUNCATE pp CASCADE", "ROLLBACK"],
    ["BEGIN", "INSERT INTO pc VALUES (1, 1)", "DROP TABLE pp CASCADE", "COMMIT"],
    ["BEGIN", "INSERT INTO pc VALUES (1, 1)", "DELETE FROM pc", "TRUNCATE pc", "ROLLBACK"],
    ["BEGIN", "INSERT INTO pc VALUES (1, NULL)", "TRUNCATE pc", "ROLLBACK"],
    ["BEGIN", "UPDATE pc SET pid = NULL", "UPDATE pc SET id = 7", "TRUNCATE pc", "ROLLBACK"],
    ["BEGIN", "UPDATE pc SET pid = 2", "TRUNCATE pc", "ROLLBACK"],
    ["BEGIN", "INSERT INTO pc VALUES (1, NULL)", "COMMIT"],
    ["BEGIN", "INSERT INTO later VALUES (9, NULL)", "TRUNCATE later", "ROLLBACK"],
    ["BEGIN", "INSERT INTO pc VALUES (1, 1)", "SET CONSTRAINTS later_pos IMMEDIATE",
     "TRUNCATE pc", "ROLLBACK"],
    ["BEGIN", "INSERT INTO pc VALUES (1, 1)", "SET CONSTRAINTS pc_pid_fkey IMMEDIATE",
     "TRUNCATE pc", "ROLLBACK"],
    ["BEGIN", "INSERT INTO later VALUES (9, 2)", "SET CONSTRAINTS later_pos DEFERRED",
     "TRUNCATE later", "ROLLBACK"],
    ["BEGIN", "INSERT INTO later VALUES (9, 2)", "SAVEPOINT s", "SET CONSTRAINTS ALL IMMEDIATE",
     "ROLLBACK TO s", "TRUNCATE later", "ROLLBACK"],
    ["BEGIN", "INSERT INTO pc VALUES (2, 2)", "SAVEPOINT s", "INSERT INTO later VALUES (9, 2)",
     "ROLLBACK TO s", "TRUNCATE later", "TRUNCATE pc", "ROLLBACK"],
    # VALIDATE CONSTRAINT is refused too (before a unique key's 42809), and so is a change
    # in the implicit block of statements sent in one Query.
    ["BEGIN", "INSERT INTO pc VALUES (2, 2)", "ALTER TABLE pc VALIDATE CONSTRAINT pc_pid_fkey",
     "SELECT 1", "ROLLBACK"],
    ["BEGIN", "INSERT INTO later VALUES (9, 2)", "ALTER TABLE later VALIDATE CONSTRAINT later_pos",
     "ROLLBACK"],
    ["SELECT 0", "INSERT INTO later VALUES (9, 2); ALTER TABLE later ADD COLUMN z int",
     "INSERT INTO pc VALUES (2, 2); ALTER TABLE pc VALIDATE CONSTRAINT pc_pid_fkey",
     "INSERT INTO later VALUES (9, 9); ALTER TABLE later ADD COLUMN z int", "SELECT 1"],
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


def _fresh(uri: str, ddl: list[str] = DDL) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS plain, later, stmt, pk2, d1, d2, d3, x, pc, pp")
        for sql in ddl:
            conn.execute(sql)


def _run(uri: str, script: list[str],
         tables: tuple[str, ...] = ("plain", "later", "stmt", "pk2")) -> list:
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
        for table in tables:
            out.append(conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall())
    return out


def _on_both(servers: tuple[str, str], script: list[str], ddl: list[str],
             tables: tuple[str, ...] = ("plain", "later", "stmt", "pk2")) -> list:
    """`_run`'s outcomes of the script on each server, its tables set up afresh by `ddl`."""
    outcomes = []
    for uri in servers:
        _fresh(uri, ddl)
        outcomes.append(_run(uri, script, tables))
    return outcomes


@pytest.mark.parametrize("script", SCRIPTS, ids=[" ; ".join(s)[:60] for s in SCRIPTS])
def test_script_matches_postgresql(servers, script):
    outcomes = _on_both(servers, script, DDL)
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("script", DUPLICATES, ids=[" ; ".join(s)[:60] for s in DUPLICATES])
def test_duplicate_named_matches_postgresql(servers, script):
    outcomes = _on_both(servers, script, DUPLICATES_DDL, ("d1", "d2", "d3"))
    assert outcomes[0] == outcomes[1]
    assert any(isinstance(o, tuple) and o[0] == "23505" for o in outcomes[0])


def _executemany_error(uri: str) -> tuple:
    """psycopg's executemany in a block, then COMMIT; asyncpg's, an implicit transaction."""
    errors = []
    with psycopg.connect(uri) as conn:
        conn.cursor().executemany("INSERT INTO d3 VALUES (%s)", [(u,) for _, u in
                                                                 EXECUTEMANY_ROWS])
        with pytest.raises(psycopg.errors.UniqueViolation) as caught:
            conn.commit()
        d = caught.value.diag
        errors.append((d.sqlstate, d.constraint_name, d.message_detail))

    async def with_asyncpg() -> tuple:
        conn = await asyncpg.connect(uri)
        try:
            with pytest.raises(asyncpg.UniqueViolationError) as caught:
                await conn.executemany("INSERT INTO d1 VALUES ($1, $2, 0)", EXECUTEMANY_ROWS)
            e = caught.value
            return e.sqlstate, e.constraint_name, e.detail
        finally:
            await conn.close()

    errors.append(asyncio.run(with_asyncpg()))
    return tuple(errors)


def test_executemany_duplicate_named_matches_postgresql(servers):
    """Rows 40 and 0 both meet a committed row: the first written (40) is named."""
    errors = []
    for uri in servers:
        _fresh(uri, DUPLICATES_DDL)
        errors.append(_executemany_error(uri))
    assert errors[0] == errors[1]
    assert errors[0][0] == ("23505", "d3_u", "Key (u)=(40) already exists.")


@pytest.mark.parametrize("script", PENDING_SCRIPTS,
                         ids=[" ; ".join(s[1:-2])[:70] for s in PENDING_SCRIPTS])
def test_schema_change_with_pending_checks_matches_postgresql(servers, script):
    outcomes = _on_both(servers, script, PENDING_DDL, ("later", "pk2", "pc"))
    assert outcomes[0] == outcomes[1]


def test_pending_checks_refuse_truncate_and_fail_the_block(servers):
    """The refusal's SQLSTATE and text, then 25P02 until ROLLBACK; nothing changed."""
    script = ["BEGIN", "INSERT INTO later VALUES (9, 2)", "TRUNCATE later", "SELECT 1",
              "ROLLBACK"]
    outcomes = _on_both(servers, script, PENDING_DDL, ("later",))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][2] == ("55006", 'cannot TRUNCATE "later" because it has pending '
                              "trigger events", None, None)
    assert outcomes[0][3][0] == "25P02"
    assert outcomes[0][5] == [(1, 1), (2, 2), (3, 3)]


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
