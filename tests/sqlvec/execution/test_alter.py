"""execution/alter.py through a session: all-or-nothing statements, rewrites of sealed and
growing rows, a transaction block's own rows, prepared statements, and what a restart (or a
crash) finds."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from sqlvec.database import Database
from sqlvec.errors import SqlVecError
from sqlvec.storage.store import StoreOptions

OPTIONS = StoreOptions(background=False, seal_rows=64)


def rows(session, sql: str) -> list[tuple]:
    return [r for result in session.execute(sql) for r in result.rows()]


def run(session, sql: str) -> list:
    return [result for result in session.execute(sql)]


def error(session, sql: str) -> SqlVecError:
    with pytest.raises(SqlVecError) as err:
        run(session, sql)
    return err.value


@pytest.fixture
def db(tmp_path):
    database = Database.open(str(tmp_path / "db"), options=OPTIONS)
    yield database
    database.close()


def _fill(session) -> None:
    """150 rows over two sealed segments and the growing one, a few deleted."""
    run(session, "CREATE TABLE t (id int PRIMARY KEY, code text, v real[])")
    for first, last in ((1, 64), (65, 128), (129, 150)):
        run(session, "INSERT INTO t SELECT i, (i * 10)::text, ARRAY[i, 1, 0]::real[] "
                     f"FROM generate_series({first}, {last}) AS i")
    run(session, "DELETE FROM t WHERE id % 10 = 0")


def test_type_change_rewrites_every_segment(db) -> None:
    s = db.connect()
    _fill(s)
    table = db.store().find_table("t")
    assert len(table.sealed) == 2 and table.memtable.n_rows > 0
    run(s, "ALTER TABLE t ALTER COLUMN code TYPE bigint USING code::bigint * 2, "
           "ALTER COLUMN v TYPE vector(3) USING v::vector(3)")
    assert rows(s, "SELECT count(*), sum(code) FROM t") == [(135, sum(i * 20 for i in range(1, 151)
                                                                     if i % 10))]
    assert rows(s, "SELECT id FROM t ORDER BY v <-> '[41,1,0]' LIMIT 1") == [(41,)]
    assert rows(s, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                   "WHERE attrelid = 't'::regclass AND attnum > 0 ORDER BY attnum") == \
        [("integer",), ("bigint",), ("vector(3)",)]
    table = db.store().find_table("t")
    assert table.memtable.n_rows == 0 and table.def_.column("v").type.dims == 3


def test_a_failing_action_changes_nothing(db) -> None:
    s = db.connect()
    _fill(s)
    run(s, "UPDATE t SET code = 'x' WHERE id = 77")
    before = rows(s, "SELECT * FROM t ORDER BY id")
    generation = db.store().generation
    err = error(s, "ALTER TABLE t ADD COLUMN extra int DEFAULT 1, RENAME COLUMN v TO w, "
                   "ALTER COLUMN code TYPE int USING code::int")
    assert (err.sqlstate, err.message) == ("22P02", 'invalid input syntax for type integer: "x"')
    assert rows(s, "SELECT * FROM t ORDER BY id") == before
    assert db.store().generation == generation  # no manifest version was written
    assert [c.name for c in db.store().find_table("t").def_.columns] == ["id", "code", "v"]


def test_retyping_a_key_into_duplicates_is_refused(db) -> None:
    s = db.connect()
    _fill(s)
    err = error(s, "ALTER TABLE t ALTER COLUMN id TYPE int USING id / 100")
    assert err.sqlstate == "23505"
    assert err.detail == "Key (id)=(0) is duplicated."
    assert rows(s, "SELECT count(DISTINCT id) FROM t") == [(135,)]


def test_prepared_statements_see_the_new_shape(db) -> None:
    s = db.connect()
    run(s, "CREATE TABLE p (id int, a text)")
    run(s, "INSERT INTO p VALUES (1, '5')")
    prepared = s.prepare("SELECT * FROM p WHERE id = $1", [])
    assert s.run(prepared, [1]).rows() == [(1, "5")]
    run(s, "ALTER TABLE p ALTER COLUMN a TYPE int USING a::int, ADD COLUMN b text DEFAULT 'x'")
    other = db.connect()
    assert [c.name for c in other.prepare("SELECT * FROM p", []).columns] == ["id", "a", "b"]
    again = s.prepare("SELECT * FROM p WHERE id = $1", [])
    assert [c.type.name for c in again.columns] == ["int4", "int4", "text"]
    assert s.run(again, [1]).rows() == [(1, 5, "x")]
    # SQL-level prepared statements are planned again too, as PostgreSQL's plan cache does.
    run(s, "PREPARE q AS SELECT a + 1 FROM p")
    run(s, "PREPARE star AS SELECT * FROM p")
    run(s, "PREPARE ids AS SELECT id FROM p")
    run(s, "ALTER TABLE p RENAME COLUMN a TO c, ALTER COLUMN id TYPE int")
    err = error(s, "EXECUTE q")
    assert (err.sqlstate, err.message) == ("42703", 'column "a" does not exist')
    err = error(s, "EXECUTE star")
    assert (err.sqlstate, err.message) == ("0A000", "cached plan must not change result type")
    assert rows(s, "EXECUTE ids") == [(1,)]
    run(s, "DROP TABLE p")
    assert error(s, "EXECUTE ids").sqlstate == "42P01"


def test_alembic_style_backfill_in_one_transaction(db) -> None:
    s = db.connect()
    _fill(s)
    run(s, "BEGIN")
    run(s, "INSERT INTO t VALUES (1000, '5', '{1,2,3}')")
    run(s, "ALTER TABLE t ADD COLUMN score int")
    run(s, "UPDATE t SET score = id + 1")
    run(s, "ALTER TABLE t ALTER COLUMN score SET NOT NULL, "
           "ALTER COLUMN code TYPE int USING code::int")
    run(s, "INSERT INTO t VALUES (1001, 6, '{1,2,3}', 7)")
    run(s, "COMMIT")
    assert rows(s, "SELECT count(*), count(score), min(score) FROM t") == [(137, 137, 2)]
    assert rows(s, "SELECT code, score FROM t WHERE id IN (1000, 1001) ORDER BY id") == \
        [(5, 1001), (6, 7)]
    run(s, "BEGIN")
    run(s, "INSERT INTO t (id, code, score) VALUES (2000, NULL, 1)")
    err = error(s, "ALTER TABLE t ALTER COLUMN code SET NOT NULL")
    assert err.message == 'column "code" of relation "t" contains null values'
    run(s, "ROLLBACK")


def test_serial_and_volatile_defaults_fill_each_row(db) -> None:
    s = db.connect()
    _fill(s)
    run(s, "ALTER TABLE t ADD COLUMN n serial, ADD COLUMN r float8 DEFAULT random()")
    assert rows(s, "SELECT count(DISTINCT n), min(n), max(n), count(DISTINCT r) FROM t") == \
        [(135, 1, 135, 135)]
    run(s, "INSERT INTO t (id) VALUES (500)")
    assert rows(s, "SELECT n FROM t WHERE id = 500") == [(136,)]
    err = error(s, "ALTER TABLE t ADD COLUMN k int PRIMARY KEY")
    assert (err.sqlstate, err.message) == ("42P16",
                                           'multiple primary keys for table "t" are not allowed')


def test_changes_survive_restart_and_crash(tmp_path) -> None:
    path = str(tmp_path / "db")
    db = Database.open(path, options=OPTIONS)
    s = db.connect()
    _fill(s)
    run(s, "CREATE INDEX t_code ON t (code)")
    run(s, "COMMENT ON COLUMN t.code IS 'the code'")
    run(s, "ALTER TABLE t ALTER COLUMN code TYPE int USING code::int, "
           "ADD COLUMN tag text DEFAULT 'a'")
    run(s, "ALTER TABLE t RENAME COLUMN code TO num")
    run(s, "INSERT INTO t (id, num) VALUES (900, 9)")  # only in the WAL
    expected = rows(s, "SELECT * FROM t ORDER BY id")
    crashed = str(tmp_path / "crashed")
    shutil.copytree(path, crashed, ignore=shutil.ignore_patterns("LOCK"))  # as a crash left it
    run(s, "ALTER TABLE t DROP COLUMN num")
    db.close()
    for directory, columns in ((crashed, ["id", "num", "v", "tag"]), (path, ["id", "v", "tag"])):
        with Database.open(directory, options=OPTIONS) as reopened:
            s = reopened.connect()
            names = [c.name for c in reopened.store().find_table("t").def_.columns]
            assert names == columns
            got = rows(s, f"SELECT {', '.join(columns)} FROM t ORDER BY id")
            keep = [i for i, c in enumerate(["id", "num", "v", "tag"]) if c in columns]
            assert got == [tuple(r[i] for i in keep) for r in expected]
    with Database.open(crashed, options=OPTIONS) as reopened:
        s = reopened.connect()
        assert rows(s, "SELECT col_description('t'::regclass, 2), "
                       "(SELECT count(*) FROM pg_indexes WHERE indexname = 't_code')") == \
            [("the code", 1)]
    with Database.open(path, options=OPTIONS) as reopened:
        s = reopened.connect()
        assert rows(s, "SELECT col_description('t'::regclass, 2), "
                       "(SELECT count(*) FROM pg_indexes WHERE indexname = 't_code')") == \
            [(None, 0)]


def test_another_sessions_alter_waits_for_the_open_transaction_using_the_table(db) -> None:
    """As PostgreSQL's: the ALTER waits for the block that wrote the table, whose rows then
    take the new shape; a waiting ALTER meets lock_timeout (55P03)."""
    a, b = db.connect(), db.connect()
    run(a, "CREATE TABLE t (id int PRIMARY KEY, a text)")
    for insert, alter in [("INSERT INTO t VALUES (1, 'x')", "ADD COLUMN c int DEFAULT 3"),
                          ("INSERT INTO t VALUES (2, 'y', 4)", "DROP COLUMN a")]:
        run(a, "BEGIN")
        run(a, insert)
        with ThreadPoolExecutor(1) as pool:
            altered = pool.submit(run, b, f"ALTER TABLE t {alter}")
            time.sleep(0.2)
            assert not altered.done()
            run(a, "COMMIT")
            altered.result(timeout=30)
    assert rows(a, "SELECT * FROM t ORDER BY id") == [(1, 3), (2, 4)]
    run(a, "BEGIN")
    run(a, "INSERT INTO t VALUES (3, 5)")
    run(b, "SET lock_timeout = '100ms'")
    assert error(b, "ALTER TABLE t RENAME COLUMN c TO d").sqlstate == "55P03"
    run(a, "COMMIT")
    assert rows(b, "SELECT * FROM t ORDER BY id") == [(1, 3), (2, 4), (3, 5)]


# ALTER COLUMN ... TYPE ... USING: the expression's names are resolved once against the row
# as it was (PostgreSQL 16's errors and positions); the column itself when USING is absent.
@pytest.mark.parametrize(("sql", "sqlstate", "message", "position"), [
    ("ALTER TABLE t ALTER COLUMN b TYPE bigint USING nope + 1", "42703",
     'column "nope" does not exist', 48),
    ("ALTER TABLE t ALTER COLUMN b TYPE bigint USING t.nope", "42703",
     "column t.nope does not exist", 48),
    ("ALTER TABLE t ALTER COLUMN b TYPE bigint USING x.b", "42P01",
     'missing FROM-clause entry for table "x"', 48),
    ("ALTER TABLE t ADD COLUMN d int, ALTER COLUMN b TYPE int USING d", "42703",
     'column "d" does not exist', 63),
    ("ALTER TABLE t ALTER COLUMN b TYPE bigint USING z + b", "42703",
     'column "z" does not exist', 48),  # (z is renamed away first)
])
def test_names_in_using_fail_as_postgres(db, sql, sqlstate, message, position) -> None:
    s = db.connect()
    run(s, "CREATE TABLE t (z int, b int)")
    run(s, "ALTER TABLE t RENAME COLUMN z TO a")
    e = error(s, sql)
    assert (e.sqlstate, e.message, e.position) == (sqlstate, message, position)


def test_using_reads_the_row_as_it_was(db) -> None:
    s = db.connect()
    run(s, "CREATE TABLE t (a int, b text)")
    run(s, "INSERT INTO t VALUES (1, 'x'), (2, 'yy')")
    run(s, "ALTER TABLE t ALTER COLUMN b TYPE int USING length(t.b) * 10 + a, "
           "ALTER COLUMN a TYPE bigint USING a * 100")
    assert rows(s, "SELECT a, b, pg_typeof(a)::text, pg_typeof(b)::text FROM t ORDER BY a") == \
        [(100, 11, "bigint", "integer"), (200, 22, "bigint", "integer")]
