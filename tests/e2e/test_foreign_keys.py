"""FOREIGN KEY constraints through real clients, compared with a real PostgreSQL.

The same DDL runs on sqlvec and on the PostgreSQL of the pgserver package: the errors'
SQLSTATE, message, DETAIL and fields (psycopg's `diag`), SQLAlchemy's `get_foreign_keys`,
psql's `\\d` ("Foreign-key constraints:", "Referenced by:") and the catalog views must be the
same on both. (pgserver ships a PostgreSQL newer than the 16 sqlvec reports: RESTRICT's
SQLSTATE, which changed in 18, is checked against 16's behaviour separately.)
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import asyncpg
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from tests.e2e.conftest import beside_postgres

TABLES = ("authors", "books", "reviews", "pairs", "pair_refs", "nodes")

DDL = [
    "CREATE TABLE authors (id int PRIMARY KEY, handle text UNIQUE, name text)",
    "CREATE TABLE books (id int PRIMARY KEY, author_id int REFERENCES authors "
    "ON DELETE CASCADE ON UPDATE CASCADE, editor text, "
    "CONSTRAINT books_editor FOREIGN KEY (editor) REFERENCES authors (handle) "
    "ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED)",
    "CREATE TABLE reviews (id int PRIMARY KEY, book_id int NOT NULL REFERENCES books)",
    "CREATE TABLE pairs (a int, b text, PRIMARY KEY (a, b))",
    "CREATE TABLE pair_refs (x int, y text, z int)",
    "ALTER TABLE pair_refs ADD CONSTRAINT pair_refs_xy FOREIGN KEY (x, y) REFERENCES pairs "
    "MATCH FULL",
    "CREATE TABLE nodes (id int PRIMARY KEY, parent int REFERENCES nodes)",
]
SEED = [
    "INSERT INTO authors VALUES (1, 'ann', 'Ann'), (2, 'bob', 'Bob'), (3, 'cy', 'Cy')",
    "INSERT INTO books VALUES (10, 1, 'bob'), (11, 2, NULL), (12, NULL, 'cy')",
    "INSERT INTO reviews VALUES (100, 10), (101, 11)",
    "INSERT INTO pairs VALUES (1, 'a')",
    "INSERT INTO pair_refs VALUES (1, 'a', 0), (NULL, NULL, 1)",
    "INSERT INTO nodes VALUES (1, NULL), (2, 1)",
]

# Statements failing on a foreign key: everything the client sees compared with PostgreSQL.
VIOLATIONS = [
    "INSERT INTO books VALUES (13, 9, NULL)",
    "UPDATE books SET author_id = 7 WHERE id = 10",
    "INSERT INTO reviews VALUES (102, 99)",
    "DELETE FROM books WHERE id = 10",  # reviews still reference it
    "DELETE FROM authors WHERE id = 1",  # cascades to books 10, whose review blocks it
    "INSERT INTO pair_refs VALUES (1, 'b', 0)",
    "INSERT INTO pair_refs VALUES (NULL, 'a', 0)",  # MATCH FULL
    "DELETE FROM nodes WHERE id = 1",
    "ALTER TABLE reviews ADD CONSTRAINT reviews_id_fkey FOREIGN KEY (id) REFERENCES books",
    "CREATE TABLE bad (x int REFERENCES pair_refs)",
    "CREATE TABLE bad (x int REFERENCES authors (name))",
    "CREATE TABLE bad (x int, y int, FOREIGN KEY (x, y) REFERENCES authors)",
    "CREATE TABLE bad (x int REFERENCES authors (nope))",
    "DROP TABLE authors",
    "TRUNCATE authors",
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(sqlvec URI, PostgreSQL URI), both with DDL and SEED applied."""
    with beside_postgres(tmp_path_factory, "foreign_keys") as (ours, theirs):
        for uri in (ours, theirs):
            with psycopg.connect(uri, autocommit=True) as conn:
                for sql in DDL + SEED:
                    conn.execute(sql)
        yield ours, theirs


def _error(uri: str, sql: str) -> tuple:
    with psycopg.connect(uri, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(sql)
    d = caught.value.diag
    return (d.sqlstate, d.message_primary, d.message_detail, d.message_hint, d.schema_name,
            d.table_name, d.constraint_name)


@pytest.mark.parametrize("sql", VIOLATIONS)
def test_violation_matches_postgresql(servers, sql):
    ours, theirs = servers
    assert _error(ours, sql) == _error(theirs, sql)


def _rows(uri: str, sql: str) -> list:
    with psycopg.connect(uri, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


CATALOG_QUERIES = [
    "SELECT conname, contype, conkey, confkey, confupdtype, confdeltype, confmatchtype, "
    "condeferrable, condeferred, convalidated, pg_get_constraintdef(oid), "
    "(SELECT relname FROM pg_class WHERE oid = confrelid), "
    "(SELECT relname FROM pg_class WHERE oid = conindid) "
    "FROM pg_constraint WHERE contype = 'f' ORDER BY conname",
    "SELECT constraint_name, unique_constraint_name, match_option, update_rule, delete_rule "
    "FROM information_schema.referential_constraints ORDER BY 1",
    "SELECT constraint_name, table_name, column_name, ordinal_position, "
    "position_in_unique_constraint FROM information_schema.key_column_usage "
    "WHERE table_schema = 'public' ORDER BY 1, 4",
    "SELECT constraint_name, table_name, column_name FROM "
    "information_schema.constraint_column_usage WHERE table_schema = 'public' AND "
    "(constraint_name LIKE '%fkey'"
    " OR constraint_name IN ('books_editor', 'pair_refs_xy')) ORDER BY 1, 3",
    "SELECT constraint_name, table_name, is_deferrable, initially_deferred FROM "
    "information_schema.table_constraints WHERE constraint_type = 'FOREIGN KEY' ORDER BY 1",
    "SELECT relname, relhastriggers FROM pg_class WHERE relname IN "
    "('authors', 'books', 'reviews', 'pairs', 'pair_refs', 'nodes') ORDER BY 1",
]


@pytest.mark.parametrize("sql", CATALOG_QUERIES)
def test_catalog_queries_match_postgresql(servers, sql):
    ours, theirs = servers
    assert _rows(ours, sql) == _rows(theirs, sql)


def test_sqlalchemy_get_foreign_keys_matches_postgresql(servers):
    def foreign_keys(uri: str) -> dict:
        engine = sa.create_engine(uri.replace("postgresql://", "postgresql+psycopg://"))
        try:
            insp = sa.inspect(engine)
            return {t: sorted(insp.get_foreign_keys(t), key=lambda f: f["name"])
                    for t in TABLES}
        finally:
            engine.dispose()
    ours, theirs = servers
    got, want = foreign_keys(ours), foreign_keys(theirs)
    assert got["books"] and got == want


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
@pytest.mark.parametrize("table", ["authors", "books", "pair_refs", "nodes"])
def test_psql_describe_matches_postgresql(servers, table):
    def describe(uri: str) -> str:
        out = subprocess.run(["psql", uri, "-X", "-c", f"\\d {table}"], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout
    ours, theirs = servers
    text = describe(ours)
    assert "Foreign-key constraints:" in text or "Referenced by:" in text
    assert text == describe(theirs)


def test_actions_and_deferred_checks(servers):
    """ON UPDATE CASCADE, ON DELETE SET NULL, a deferred check failing COMMIT (which rolls
    the block back) and SET CONSTRAINTS, on both servers alike."""
    script = [
        "CREATE TABLE act_p (id int PRIMARY KEY, code text UNIQUE)",
        "CREATE TABLE act_c (id int PRIMARY KEY, pid int REFERENCES act_p ON UPDATE CASCADE "
        "ON DELETE CASCADE, code text REFERENCES act_p (code) ON DELETE SET NULL, "
        "late int REFERENCES act_p DEFERRABLE INITIALLY DEFERRED)",
        "INSERT INTO act_p VALUES (1, 'a'), (2, 'b')",
        "INSERT INTO act_c VALUES (1, 1, 'b', NULL), (2, 2, 'a', NULL)",
        "UPDATE act_p SET id = 10 WHERE id = 1",
        "DELETE FROM act_p WHERE code = 'b'",
    ]
    ours, theirs = servers
    results = []
    for uri in (ours, theirs):
        with psycopg.connect(uri, autocommit=True) as conn:
            for sql in script:
                conn.execute(sql)
            rows = conn.execute("SELECT * FROM act_c ORDER BY id").fetchall()
            with pytest.raises(psycopg.errors.ForeignKeyViolation) as late:
                with conn.transaction():
                    conn.execute("INSERT INTO act_c VALUES (3, NULL, NULL, 99)")
                    conn.execute("INSERT INTO act_p VALUES (5, 'e')")
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            after = conn.execute("SELECT count(*) FROM act_p").fetchone()
            with pytest.raises(psycopg.errors.ForeignKeyViolation) as now:
                with conn.transaction():
                    conn.execute("SET CONSTRAINTS act_c_late_fkey IMMEDIATE")
                    conn.execute("INSERT INTO act_c VALUES (3, NULL, NULL, 99)")
            results.append((rows, late.value.diag.message_primary,
                            late.value.diag.message_detail, after,
                            now.value.diag.constraint_name))
    assert results[0] == results[1]
    assert results[0][0] == [(1, 10, None, None)]


def test_restrict_fails_as_postgresql_16(servers):
    ours, _ = servers
    with psycopg.connect(ours, autocommit=True) as conn:
        conn.execute("CREATE TABLE r_p (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE r_c (pid int REFERENCES r_p ON DELETE RESTRICT)")
        conn.execute("INSERT INTO r_p VALUES (1)")
        conn.execute("INSERT INTO r_c VALUES (1)")
        with pytest.raises(psycopg.errors.ForeignKeyViolation) as caught:
            conn.execute("DELETE FROM r_p")
        assert caught.value.diag.message_detail == \
            'Key (id)=(1) is still referenced from table "r_c".'
        with pytest.raises(psycopg.Error) as types:
            conn.execute("CREATE TABLE r_bad (x text REFERENCES r_p)")
        assert types.value.diag.sqlstate == "42804"
        assert types.value.diag.message_detail == \
            'Key columns "x" and "id" are of incompatible types: text and integer.'


def test_drop_and_truncate_cascade(servers):
    script = [
        "CREATE TABLE d_p (id int PRIMARY KEY)",
        "CREATE TABLE d_c (pid int REFERENCES d_p)",
        "CREATE TABLE d_c2 (pid int CONSTRAINT d_c2_fk REFERENCES d_p)",
        "INSERT INTO d_p VALUES (1)",
        "INSERT INTO d_c VALUES (1)",
    ]
    ours, theirs = servers
    results = []
    for uri in (ours, theirs):
        notices: list = []
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.add_notice_handler(lambda d, notices=notices: notices.append(
                (d.severity, d.message_primary, d.message_detail)))
            for sql in script:
                conn.execute(sql)
            conn.execute("TRUNCATE d_p CASCADE")
            counts = conn.execute("SELECT (SELECT count(*) FROM d_c), "
                                  "(SELECT count(*) FROM d_p)").fetchone()
            conn.execute("DROP TABLE d_p CASCADE")
            left = conn.execute("SELECT count(*) FROM pg_constraint WHERE conname IN "
                                "('d_c_pid_fkey', 'd_c2_fk')").fetchone()
        results.append((notices, counts, left))
    assert results[0] == results[1]
    assert results[0][2] == (0,)


def test_asyncpg_exceptions_carry_the_constraint(servers):
    ours, _ = servers

    async def run() -> None:
        conn = await asyncpg.connect(ours)
        try:
            with pytest.raises(asyncpg.ForeignKeyViolationError) as caught:
                await conn.execute("INSERT INTO books VALUES (50, $1, NULL)", 404)
            assert caught.value.constraint_name == "books_author_id_fkey"
            assert caught.value.table_name == "books"
            assert caught.value.schema_name == "public"
            assert caught.value.detail == 'Key (author_id)=(404) is not present in table "authors".'
            # Prepared statements of a referencing table keep being checked.
            stmt = await conn.prepare("INSERT INTO reviews VALUES ($1, $2)")
            await stmt.fetch(200, 11)
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await stmt.fetch(201, 12345)
        finally:
            await conn.close()
    asyncio.run(run())


def test_copy_into_a_referencing_table_is_checked(servers):
    ours, theirs = servers
    results = []
    for uri in (ours, theirs):
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE TABLE copy_c (id int, author_id int REFERENCES authors)")
            with conn.cursor().copy("COPY copy_c FROM STDIN") as copy:
                copy.write("1\t2\n2\t\\N\n")
            with pytest.raises(psycopg.errors.ForeignKeyViolation) as caught:
                with conn.cursor().copy("COPY copy_c FROM STDIN") as copy:
                    copy.write("3\t2\n4\t77\n")
            count = conn.execute("SELECT count(*) FROM copy_c").fetchone()
            results.append((caught.value.diag.message_detail, count))
    assert results[0] == results[1]
    assert results[0] == ('Key (author_id)=(77) is not present in table "authors".', (2,))


def test_pg_dump_of_foreign_keys_restores(servers):
    """pg_dump writes foreign keys as ALTER TABLE ONLY ... ADD CONSTRAINT ... REFERENCES
    public.t(...) after the data (with an empty search_path): restored into sqlvec, they
    are the same constraints, validated against the loaded rows and enforced."""
    from tests.e2e.test_pg_dump import pg_dump_binary

    ours, _ = servers
    tables = ["authors", "books", "reviews", "nodes"]
    dump = subprocess.run([pg_dump_binary(), "--no-owner", *[f"--table={t}" for t in tables],
                           ours], capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0, dump.stderr
    assert "REFERENCES public.authors(id)" in dump.stdout
    with psycopg.connect(ours, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS fk_restored")
        conn.execute("CREATE DATABASE fk_restored")
    restored = ours.rsplit("/", 1)[0] + "/fk_restored"
    load = subprocess.run(["psql", restored, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                          input=dump.stdout, capture_output=True, text=True, timeout=120)
    assert load.returncode == 0, load.stderr
    query = ("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'f' "
             "AND conrelid::regclass::text IN ('books', 'reviews', 'nodes') ORDER BY 1")
    assert _rows(ours, query) == _rows(restored, query)
    assert _error(restored, "INSERT INTO reviews VALUES (900, 999)")[0] == "23503"


def test_sqlalchemy_models_with_foreign_keys(servers):
    """create_all / drop_all of ORM models with ForeignKey (ondelete), relationships, and
    the IntegrityError of a dangling reference."""
    class Base(DeclarativeBase):
        pass

    class Shelf(Base):
        __tablename__ = "orm_shelves"
        id: Mapped[int] = mapped_column(primary_key=True)
        books: Mapped[list[Volume]] = relationship(back_populates="shelf",
                                                   passive_deletes=True)

    class Volume(Base):
        __tablename__ = "orm_volumes"
        id: Mapped[int] = mapped_column(primary_key=True)
        shelf_id: Mapped[int] = mapped_column(sa.ForeignKey("orm_shelves.id",
                                                            ondelete="CASCADE"))
        shelf: Mapped[Shelf] = relationship(back_populates="books")

    ours, _ = servers
    engine = sa.create_engine(ours.replace("postgresql://", "postgresql+psycopg://"))
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(Shelf(id=1, books=[Volume(id=1), Volume(id=2)]))
            session.commit()
            session.add(Volume(id=3, shelf_id=99))
            with pytest.raises(sa.exc.IntegrityError) as caught:
                session.commit()
            assert caught.value.orig.diag.constraint_name == "orm_volumes_shelf_id_fkey"
            session.rollback()
            session.delete(session.get(Shelf, 1))
            session.commit()
            assert session.scalar(sa.select(sa.func.count()).select_from(Volume)) == 0
        assert sa.inspect(engine).get_foreign_keys("orm_volumes")[0]["options"] == \
            {"ondelete": "CASCADE"}
        Base.metadata.drop_all(engine)
    finally:
        engine.dispose()


def test_django_style_migration(servers):
    """The statements Django's schema editor sends to add a foreign key column: a deferred
    constraint added with the column, SET CONSTRAINTS around it, in one transaction."""
    ours, theirs = servers
    results = []
    for uri in (ours, theirs):
        with psycopg.connect(uri) as conn:
            conn.execute('CREATE TABLE "dj_author" ("id" bigint NOT NULL PRIMARY KEY)')
            conn.execute('CREATE TABLE "dj_book" ("id" bigint NOT NULL PRIMARY KEY)')
            conn.execute('INSERT INTO "dj_author" VALUES (1)')
            conn.execute('INSERT INTO "dj_book" VALUES (1)')
            conn.execute('ALTER TABLE "dj_book" ADD COLUMN "author_id" bigint DEFAULT 1 NOT '
                         'NULL CONSTRAINT "dj_book_author_id_fk_dj_author_id" REFERENCES '
                         '"dj_author"("id") DEFERRABLE INITIALLY DEFERRED')
            conn.execute('SET CONSTRAINTS "dj_book_author_id_fk_dj_author_id" IMMEDIATE')
            conn.execute('ALTER TABLE "dj_book" ALTER COLUMN "author_id" DROP DEFAULT')
            conn.commit()
            conn.execute('INSERT INTO "dj_book" VALUES (2, 5)')  # deferred: fails at COMMIT
            with pytest.raises(psycopg.errors.ForeignKeyViolation):
                conn.commit()
            results.append(conn.execute(
                "SELECT conname, condeferred, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'dj_book'::regclass AND contype = 'f'").fetchall())
            conn.rollback()
    assert results[0] == results[1]
