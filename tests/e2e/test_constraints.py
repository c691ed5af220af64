"""UNIQUE and CHECK constraints through real clients, compared with a real PostgreSQL.

The same DDL runs on sqlvec and on PostgreSQL 16 (the pgserver package): SQLAlchemy's
inspector, psql's `\\d`, the error fields drivers expose (psycopg's `diag`, asyncpg's
exception attributes) and the errors' messages and DETAIL must be the same on both.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import asyncpg
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tests.e2e.conftest import beside_postgres

DDL = [
    "CREATE TABLE items (id int PRIMARY KEY, sku text UNIQUE, name text NOT NULL, "
    "price int CHECK (price > 0), lo int, hi int, CONSTRAINT items_range CHECK (lo < hi), "
    "UNIQUE (name, lo), CHECK (hi < 1000))",
    "CREATE TABLE tags (a int, b int, CONSTRAINT tags_ab UNIQUE NULLS NOT DISTINCT (a, b))",
    "CREATE UNIQUE INDEX tags_b_idx ON tags (b)",
    "CREATE TABLE loaded (id int, v text)",
    "INSERT INTO loaded VALUES (1, 'a'), (2, 'b')",
    "ALTER TABLE ONLY loaded ADD CONSTRAINT loaded_pkey PRIMARY KEY (id)",
    "ALTER TABLE loaded ADD CONSTRAINT loaded_v_key UNIQUE (v)",
    "ALTER TABLE loaded ADD CHECK (id < 100)",
    # CHECK conditions as PostgreSQL's deparser prints them back.
    "CREATE TABLE conds (c varchar(5) CHECK (c <> 'x' AND c::text <> 'y'), "
    "n numeric CHECK (n::int > 0), f float8 CHECK (f * 2 < 10), t text CHECK (length(t) > 2), "
    "b bool CHECK (b IS NOT NULL), d int CHECK (d BETWEEN 1 AND 5), e int CHECK (e IN (1, 2)), "
    "g int CHECK (g NOT IN (3) AND NOT (g > 5 OR g < 0) AND g NOT IN (7, 8) AND "
    "(g IN (1) OR g = 2 OR g = 3)), "
    "h text CHECK (h ~ '^a' AND h LIKE 'a%' AND lower(h) = h AND h ~* 'A'), "
    # Keywords as column names are quoted back.
    "position int CHECK (position >= 0), \"desc\" text CHECK (length(\"desc\") > 0), "
    "vc varchar(9) CHECK (length(vc) > 0 AND length(lower(vc)) < 9 AND length(vc::text) < 8))",
]

# Statements failing on a constraint: SQLSTATE, message and DETAIL compared with PostgreSQL.
VIOLATIONS = [
    "INSERT INTO items VALUES (1, 'a', 'n', 5, 1, 2)",  # duplicate primary key
    "INSERT INTO items VALUES (2, 'a', 'm', 5, 1, 2)",  # duplicate sku
    "INSERT INTO items VALUES (3, 'c', 'n', 5, 1, 2)",  # duplicate (name, lo)
    "INSERT INTO items VALUES (4, 'd', 'x', -5, 1, 2)",  # price check
    "INSERT INTO items VALUES (5, 'e', 'y', 5, 3, 2)",  # items_range
    "INSERT INTO items VALUES (6, 'f', 'z', 5, 1, 2000)",  # items_check
    "INSERT INTO items VALUES (7, 'g', NULL, 5, 1, 2)",  # NOT NULL
    "UPDATE items SET sku = 'a' WHERE id = 10",
    "UPDATE items SET price = 0 WHERE id = 10",
    "INSERT INTO tags VALUES (NULL, NULL)",
    "INSERT INTO tags VALUES (9, 1)",
    "ALTER TABLE items ADD CONSTRAINT items_price_key UNIQUE (price)",
    "ALTER TABLE items ADD CONSTRAINT items_price_small CHECK (price < 3)",
    "INSERT INTO loaded VALUES (1, 'z')",
    "INSERT INTO loaded VALUES (3, 'a')",
    "INSERT INTO loaded VALUES (300, 'q')",
]
SEED = [
    "INSERT INTO items VALUES (1, 'a', 'n', 5, 1, 2), (10, 'b', 'm', 5, 2, 3)",
    "INSERT INTO tags VALUES (NULL, NULL), (1, 1)",
]


def _setup(conn: psycopg.Connection) -> None:
    for sql in DDL + SEED:
        conn.execute(sql)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(sqlvec URI, PostgreSQL URI), both with DDL and SEED applied."""
    with beside_postgres(tmp_path_factory, "constraints") as (ours, theirs):
        with psycopg.connect(theirs, autocommit=True) as conn:
            for table in ("items", "tags", "loaded", "conds"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
        for uri in (ours, theirs):
            with psycopg.connect(uri, autocommit=True) as conn:
                _setup(conn)
        yield ours, theirs


def _error(uri: str, sql: str) -> tuple:
    with psycopg.connect(uri, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(sql)
    d = caught.value.diag
    return (d.sqlstate, d.message_primary, d.message_detail, d.schema_name, d.table_name,
            d.column_name, d.constraint_name)


@pytest.mark.parametrize("sql", VIOLATIONS)
def test_violation_matches_postgresql(servers, sql):
    ours, theirs = servers
    assert _error(ours, sql) == _error(theirs, sql)


def _inspect(uri: str) -> dict:
    engine = sa.create_engine(uri.replace("postgresql://", "postgresql+psycopg://"))
    try:
        insp = sa.inspect(engine)
        out = {}
        for table in ("items", "tags", "loaded", "conds"):
            out[table] = (
                sorted(insp.get_unique_constraints(table), key=lambda c: c["name"]),
                sorted(insp.get_check_constraints(table), key=lambda c: c["name"]),
                insp.get_pk_constraint(table),
                sorted(insp.get_indexes(table), key=lambda c: c["name"]),
            )
        return out
    finally:
        engine.dispose()


def test_sqlalchemy_inspector_matches_postgresql(servers):
    ours, theirs = servers
    got, want = _inspect(ours), _inspect(theirs)
    for table in want:
        assert got[table] == want[table], table


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
@pytest.mark.parametrize("table", ["items", "tags", "loaded", "conds"])
def test_psql_describe_matches_postgresql(servers, table):
    def describe(uri: str) -> str:
        out = subprocess.run(["psql", uri, "-X", "-c", f"\\d {table}"], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout
    ours, theirs = servers
    assert describe(ours) == describe(theirs)


def test_catalog_queries_match_postgresql(servers):
    queries = [
        "SELECT conname, contype, conkey, convalidated, condeferrable, "
        "pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'items'::regclass "
        "AND contype IN ('p', 'u', 'c') ORDER BY conname",
        "SELECT conname, pg_get_constraintdef(oid), pg_get_constraintdef(oid, true) "
        "FROM pg_constraint WHERE conrelid = 'conds'::regclass AND contype = 'c' ORDER BY 1",
        "SELECT c.conname, i.relname FROM pg_constraint c JOIN pg_class i ON i.oid = c.conindid "
        "WHERE c.conrelid = 'tags'::regclass ORDER BY 1",
        "SELECT i.relname, x.indisunique, x.indnullsnotdistinct, pg_get_indexdef(x.indexrelid) "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid IN ('tags'::regclass, 'loaded'::regclass) ORDER BY 1",
        "SELECT constraint_name, constraint_type, nulls_distinct FROM "
        "information_schema.table_constraints WHERE table_name IN ('items', 'tags', 'loaded') "
        "AND constraint_type <> 'CHECK' ORDER BY 1",
        "SELECT constraint_name, column_name, ordinal_position FROM "
        "information_schema.key_column_usage WHERE table_name = 'items' ORDER BY 1, 3",
        "SELECT constraint_name, column_name FROM information_schema.constraint_column_usage "
        "WHERE table_name = 'items' ORDER BY 1, 2",
    ]
    ours, theirs = servers
    for sql in queries:
        results = []
        for uri in (ours, theirs):
            with psycopg.connect(uri, autocommit=True) as conn:
                results.append(conn.execute(sql).fetchall())
        assert results[0] == results[1], sql


def test_asyncpg_exceptions_carry_the_constraint(servers):
    ours, _ = servers

    async def run() -> None:
        conn = await asyncpg.connect(ours)
        try:
            with pytest.raises(asyncpg.UniqueViolationError) as unique:
                await conn.execute("INSERT INTO items VALUES (20, 'a', 'q', 5, 1, 2)")
            assert unique.value.constraint_name == "items_sku_key"
            assert unique.value.table_name == "items"
            assert unique.value.schema_name == "public"
            assert unique.value.detail == "Key (sku)=(a) already exists."
            with pytest.raises(asyncpg.CheckViolationError) as check:
                await conn.execute("INSERT INTO items VALUES (21, 'x', 'q', -1, 1, 2)")
            assert check.value.constraint_name == "items_price_check"
            with pytest.raises(asyncpg.NotNullViolationError) as null:
                await conn.execute("INSERT INTO items (id) VALUES (22)")
            assert null.value.column_name == "name"
        finally:
            await conn.close()
    asyncio.run(run())


def test_unique_semantics(servers):
    """NULLs distinct by default, within-statement and within-transaction duplicates, keys
    freed by a delete in the same transaction, ON CONFLICT on a unique constraint."""
    ours, _ = servers
    with psycopg.connect(ours, autocommit=True) as conn:
        conn.execute("CREATE TABLE sem (id int PRIMARY KEY, u int UNIQUE)")
        conn.execute("INSERT INTO sem VALUES (1, NULL), (2, NULL), (3, 3)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO sem VALUES (4, 4), (5, 4)")
        with conn.transaction():
            conn.execute("DELETE FROM sem WHERE id = 3")
            conn.execute("INSERT INTO sem VALUES (6, 3)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            with conn.transaction():
                conn.execute("INSERT INTO sem VALUES (7, 7)")
                conn.execute("INSERT INTO sem VALUES (8, 7)")
        conn.execute("INSERT INTO sem VALUES (9, 3) ON CONFLICT (u) DO UPDATE SET id = 60")
        conn.execute("INSERT INTO sem VALUES (10, 3) ON CONFLICT ON CONSTRAINT sem_u_key "
                     "DO NOTHING")
        assert conn.execute("SELECT id, u FROM sem ORDER BY id").fetchall() == [
            (1, None), (2, None), (60, 3)]
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("INSERT INTO sem VALUES (11, 3) ON CONFLICT ON CONSTRAINT nope "
                         "DO NOTHING")


def test_sqlalchemy_models_with_constraints(servers):
    """metadata.create_all of models declaring UniqueConstraint and CheckConstraint, and the
    IntegrityError an ORM flush raises, naming the constraint."""
    class Base(DeclarativeBase):
        pass

    class Account(Base):
        __tablename__ = "accounts"
        __table_args__ = (sa.UniqueConstraint("email"), sa.CheckConstraint("balance >= 0",
                                                                           name="non_negative"),
                          sa.UniqueConstraint("org", "handle", name="accounts_org_handle"))
        id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str] = mapped_column(sa.String(80))
        org: Mapped[int] = mapped_column()
        handle: Mapped[str] = mapped_column(sa.Text)
        balance: Mapped[int] = mapped_column(default=0)

    ours, _ = servers
    engine = sa.create_engine(ours.replace("postgresql://", "postgresql+psycopg://"))
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(Account(id=1, email="a@x", org=1, handle="a"))
            session.commit()
            session.add(Account(id=2, email="a@x", org=1, handle="b"))
            with pytest.raises(sa.exc.IntegrityError) as unique:
                session.commit()
            assert unique.value.orig.diag.constraint_name == "accounts_email_key"
            session.rollback()
            session.add(Account(id=3, email="c@x", org=1, handle="c", balance=-1))
            with pytest.raises(sa.exc.IntegrityError) as check:
                session.commit()
            assert check.value.orig.diag.constraint_name == "non_negative"
        insp = sa.inspect(engine)
        assert sorted(c["name"] for c in insp.get_unique_constraints("accounts")) == [
            "accounts_email_key", "accounts_org_handle"]
        assert [(c["name"], c["sqltext"]) for c in insp.get_check_constraints("accounts")] == [
            ("non_negative", "balance >= 0")]
        Base.metadata.drop_all(engine)
    finally:
        engine.dispose()


def test_pg_dump_of_constraints_restores(servers, tmp_path):
    """pg_dump of tables with constraints (CHECK inline, UNIQUE and PRIMARY KEY as ALTER TABLE
    ONLY ... ADD CONSTRAINT after the data, unique indexes) restores into sqlvec as it was."""
    from tests.e2e.test_pg_dump import pg_dump_binary

    ours, _ = servers
    dump = subprocess.run([pg_dump_binary(), "--no-owner", "--table", "items", "--table",
                           "tags", "--table", "conds", ours], capture_output=True, text=True,
                          timeout=120)
    assert dump.returncode == 0, dump.stderr
    with psycopg.connect(ours, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS restored")
        conn.execute("CREATE DATABASE restored")
    restored = ours.rsplit("/", 1)[0] + "/restored"
    load = subprocess.run(["psql", restored, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                          input=dump.stdout, capture_output=True, text=True, timeout=120)
    assert load.returncode == 0, load.stderr
    query = ("SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid) "
             "FROM pg_constraint WHERE contype IN ('p', 'u', 'c') AND conrelid::regclass::text "
             "IN ('items', 'tags', 'conds') ORDER BY 1, 2")
    indexes = "SELECT indexdef FROM pg_indexes WHERE tablename = 'tags' ORDER BY 1"
    results = []
    for uri in (ours, restored):
        with psycopg.connect(uri, autocommit=True) as conn:
            results.append((conn.execute(query).fetchall(), conn.execute(indexes).fetchall(),
                            conn.execute("SELECT * FROM items ORDER BY id").fetchall()))
    assert results[0] == results[1]
    with psycopg.connect(restored, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO items VALUES (1, 'zz', 'q', 5, 1, 2)")
