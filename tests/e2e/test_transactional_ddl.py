"""DDL inside a transaction block, as migration tools (Alembic, Django) run it: undone by
ROLLBACK, by a failed block and by ROLLBACK TO SAVEPOINT; visible to the block itself; kept
from other sessions until COMMIT; and crash-safe on both sides of COMMIT."""

from __future__ import annotations

import signal
import threading

import psycopg
import pytest

from tests.e2e.conftest import start_server


def columns(conn: psycopg.Connection, table: str) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s "
        "ORDER BY ordinal_position", (table,)).fetchall()


def exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


@pytest.fixture
def base(server, table):
    """A committed table with rows, a comment and an index, for the migrations to change."""
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text, n int)")
        conn.execute(f"INSERT INTO {table} VALUES (1, 'a', 10), (2, 'b', 20)")
        conn.execute(f"CREATE INDEX {table}_n ON {table} (n)")
    return table


def test_migration_failing_halfway_leaves_the_schema_untouched(server, base):
    new = f"{base}_new"
    with psycopg.connect(server.conninfo()) as conn:
        before = columns(conn, base)
        conn.commit()
        with pytest.raises(psycopg.errors.DuplicateColumn):
            with conn.transaction():
                conn.execute(f"CREATE TABLE {new} (id serial PRIMARY KEY, ref int)")
                conn.execute(f"INSERT INTO {new} (ref) SELECT id FROM {base}")
                conn.execute(f"CREATE INDEX {new}_ref ON {new} (ref)")
                conn.execute(f"ALTER TABLE {base} ADD COLUMN w int DEFAULT 7")
                conn.execute(f"ALTER TABLE {base} ALTER COLUMN n TYPE bigint")
                conn.execute(f"ALTER TABLE {base} RENAME COLUMN v TO label")
                conn.execute(f"ALTER TABLE {base} ADD CONSTRAINT {base}_n_pos CHECK (n > 0)")
                conn.execute(f"COMMENT ON TABLE {base} IS 'migrated'")
                conn.execute(f"DROP INDEX {base}_n")
                conn.execute(f"CREATE VIEW {new}_v AS SELECT * FROM {new}")
                conn.execute(f"CREATE SEQUENCE {new}_seq")
                conn.execute(f"TRUNCATE {base}")
                # Everything so far is visible inside the block.
                assert conn.execute(f"SELECT count(*) FROM {new}").fetchone() == (2,)
                assert ("w", "integer") in columns(conn, base)
                conn.execute(f"ALTER TABLE {base} ADD COLUMN w int")  # fails: 42701
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        assert columns(conn, base) == before
        for name in (new, f"{new}_v", f"{new}_seq", f"{new}_ref"):
            assert not exists(conn, name), name
        assert conn.execute(f"SELECT * FROM {base} ORDER BY id").fetchall() == \
            [(1, "a", 10), (2, "b", 20)]
        assert conn.execute(f"SELECT obj_description('{base}'::regclass)").fetchone() == (None,)
        assert conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s "
                            "ORDER BY 1", (base,)).fetchall() == [(f"{base}_n",), (f"{base}_pkey",)]
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE conname = %s",
                            (f"{base}_n_pos",)).fetchone() == (0,)
        # The serial's sequence is gone too: creating the table again starts it at 1.
        conn.execute(f"CREATE TABLE {new} (id serial PRIMARY KEY, ref int)")
        assert conn.execute(f"INSERT INTO {new} (ref) VALUES (0) RETURNING id").fetchone() == (1,)


def test_dropping_an_index_then_its_table_in_one_block_commits(server, base):
    """Alembic's generated downgrade drops a table's indexes, then the table, in one
    transaction: the index's files are collected with the table's directory."""
    with psycopg.connect(server.conninfo()) as conn:
        with conn.transaction():
            conn.execute(f"DROP INDEX {base}_n")
            conn.execute(f"DROP TABLE {base}")
        assert not exists(conn, base)
        conn.execute(f"CREATE TABLE {base} (id int PRIMARY KEY, n int)")
        conn.execute(f"CREATE INDEX {base}_n ON {base} (n)")
        conn.execute(f"INSERT INTO {base} VALUES (1, 5)")
        conn.commit()
        assert conn.execute(f"SELECT id FROM {base} WHERE n = 5").fetchall() == [(1,)]


def test_rollback_sends_no_warning_and_commit_keeps_everything(server, base):
    new = f"{base}_new"
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("BEGIN")
        conn.execute(f"ALTER TABLE {base} DROP COLUMN n")
        conn.execute("ROLLBACK")
        assert notices == []
        assert [c for c, _ in columns(conn, base)] == ["id", "v", "n"]
        # One transaction: create, fill, query, index, alter; all of it after COMMIT.
        conn.execute("BEGIN")
        conn.execute(f"CREATE TABLE {new} (id int PRIMARY KEY, e vector(3))")
        conn.execute(f"INSERT INTO {new} VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0,0,1]')")
        conn.execute(f"CREATE INDEX ON {new} USING hnsw (e vector_l2_ops)")
        assert conn.execute(f"SELECT id FROM {new} ORDER BY e <-> '[0,1,0.1]' LIMIT 1"
                            ).fetchone() == (2,)
        conn.execute(f"ALTER TABLE {base} ADD COLUMN w int DEFAULT 7")
        conn.execute(f"UPDATE {base} SET w = 8 WHERE id = 2")
        conn.execute(f"DELETE FROM {base} WHERE id = 1")
        conn.execute("COMMIT")
    with psycopg.connect(server.conninfo(), autocommit=True) as other:
        assert other.execute(f"SELECT * FROM {base}").fetchall() == [(2, "b", 20, 8)]
        assert other.execute(f"SELECT id FROM {new} ORDER BY e <-> '[0,0,1]' LIMIT 1"
                             ).fetchone() == (3,)
        assert other.execute(f"SELECT count(*) FROM {new}").fetchone() == (3,)


def test_ddl_is_invisible_to_other_sessions_until_commit(server, base):
    new = f"{base}_new"
    with psycopg.connect(server.conninfo(), autocommit=True) as a, \
            psycopg.connect(server.conninfo(), autocommit=True) as b:
        a.execute("BEGIN")
        a.execute(f"CREATE TABLE {new} (id int)")
        a.execute(f"INSERT INTO {new} VALUES (1)")
        a.execute(f"ALTER TABLE {base} DROP COLUMN n")
        # The other session waits for the transaction (its lock_timeout ends the wait): it
        # never reads the uncommitted schema.
        b.execute("SET lock_timeout = '200ms'")
        for query in (f"SELECT * FROM {new}", f"SELECT n FROM {base}",
                      f"INSERT INTO {base} VALUES (3, 'c', 30)"):
            with pytest.raises(psycopg.errors.LockNotAvailable):
                b.execute(query)
        b.execute("SET lock_timeout = 0")
        # Without a timeout it waits until the transaction ends, then sees what it committed.
        seen: list = []
        reader = threading.Thread(target=lambda: seen.append(
            b.execute(f"SELECT count(*) FROM {new}").fetchone()))
        reader.start()
        a.execute("COMMIT")
        reader.join(30)
        assert seen == [(1,)]
        assert [c for c, _ in columns(b, base)] == ["id", "v"]


def test_rollback_to_savepoint_undoes_the_ddl_after_it(server, base):
    new = f"{base}_new"
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute(f"CREATE TABLE {new} (id int)")
        conn.execute(f"INSERT INTO {new} VALUES (1)")
        conn.execute("SAVEPOINT s1")
        conn.execute(f"ALTER TABLE {new} ADD COLUMN x text")
        conn.execute(f"DROP TABLE {base}")
        conn.execute(f"CREATE TABLE {new}_2 (id int)")
        conn.execute("ROLLBACK TO SAVEPOINT s1")
        assert [c for c, _ in columns(conn, new)] == ["id"]
        assert exists(conn, base) and not exists(conn, f"{new}_2")
        # A failed statement after a savepoint: ROLLBACK TO recovers the block.
        conn.execute("SAVEPOINT s2")
        conn.execute(f"ALTER TABLE {base} RENAME TO {base}_renamed")
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute(f"ALTER TABLE {base} ADD COLUMN z int")
        conn.execute("ROLLBACK TO SAVEPOINT s2")
        conn.execute(f"INSERT INTO {new} VALUES (2)")
        conn.execute("COMMIT")
        assert conn.execute(f"SELECT id FROM {new} ORDER BY id").fetchall() == [(1,), (2,)]
        assert exists(conn, base) and not exists(conn, f"{base}_renamed")


def test_statements_postgresql_refuses_in_a_block_keep_25001(server):
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS txddl_refused (a int)")
        for statement in ("CREATE DATABASE txddl_never", "VACUUM",
                          "CREATE INDEX CONCURRENTLY txddl_i ON txddl_refused (a)",
                          "DROP INDEX CONCURRENTLY txddl_i"):
            conn.execute("BEGIN")
            with pytest.raises(psycopg.errors.ActiveSqlTransaction):
                conn.execute(statement)
            conn.execute("ROLLBACK")


def test_kill_9_before_commit_loses_all_of_it_after_commit_keeps_all_of_it(tmp_path, reap):
    data_dir = tmp_path / "data"
    running = start_server(tmp_path / "s0", data_dir=data_dir)
    reap(running)
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE base (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO base VALUES (1, 'a'), (2, 'b')")
        conn.execute("CREATE TABLE doomed (id int)")
        conn.execute("INSERT INTO doomed VALUES (1)")
    conn = psycopg.connect(running.conninfo(), autocommit=True)
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE fresh (id int PRIMARY KEY, e vector(2))")
    conn.execute("INSERT INTO fresh VALUES (1, '[1,2]')")
    conn.execute("ALTER TABLE base ADD COLUMN w int DEFAULT 5")
    conn.execute("ALTER TABLE base ALTER COLUMN id TYPE bigint")
    conn.execute("DROP TABLE doomed")
    conn.execute("CHECKPOINT")  # seals meanwhile write no manifest of the open changes
    running.stop(signal.SIGKILL)
    conn.close()
    running = start_server(tmp_path / "s1", data_dir=data_dir)
    reap(running)
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        assert not exists(conn, "fresh")
        assert columns(conn, "base") == [("id", "integer"), ("v", "text")]
        assert conn.execute("SELECT * FROM base ORDER BY id").fetchall() == [(1, "a"), (2, "b")]
        assert conn.execute("SELECT * FROM doomed").fetchall() == [(1,)]
        conn.execute("BEGIN")
        conn.execute("CREATE TABLE fresh (id int PRIMARY KEY, e vector(2))")
        conn.execute("INSERT INTO fresh VALUES (1, '[1,2]'), (2, '[3,4]')")
        conn.execute("ALTER TABLE base ADD COLUMN w int DEFAULT 5")
        conn.execute("ALTER TABLE base ALTER COLUMN id TYPE bigint")
        conn.execute("INSERT INTO base VALUES (3, 'c', 6)")
        conn.execute("DROP TABLE doomed")
        conn.execute("COMMIT")  # acknowledged
    running.stop(signal.SIGKILL)
    running = start_server(tmp_path / "s2", data_dir=data_dir)
    reap(running)
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT id, e::text FROM fresh ORDER BY id").fetchall() == \
            [(1, "[1,2]"), (2, "[3,4]")]
        assert columns(conn, "base") == [("id", "bigint"), ("v", "text"), ("w", "integer")]
        assert conn.execute("SELECT * FROM base ORDER BY id").fetchall() == \
            [(1, "a", 5), (2, "b", 5), (3, "c", 6)]
        assert not exists(conn, "doomed")
    assert running.stop() == 0, running.log()
    assert "Traceback" not in running.log()


def test_sqlalchemy_migration_in_one_transaction_rolls_back_whole(server, table):
    """What Alembic does with PostgreSQL: the migration's DDL in the connection's transaction,
    rolled back when a step fails."""
    sa = pytest.importorskip("sqlalchemy")
    engine = sa.create_engine(f"postgresql+psycopg://postgres@{server.host}:{server.port}/postgres")
    metadata = sa.MetaData()
    sa.Table(f"{table}_a", metadata, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("name", sa.Text, nullable=False, unique=True))
    sa.Table(f"{table}_b", metadata, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("a_id", sa.Integer, index=True))
    try:
        with pytest.raises(sa.exc.ProgrammingError):
            with engine.begin() as conn:
                metadata.create_all(conn)
                conn.execute(sa.text(f"INSERT INTO {table}_a (name) VALUES ('x')"))
                conn.execute(sa.text(f"ALTER TABLE {table}_b ADD COLUMN missing_type nosuchtype"))
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table(f"{table}_a")
            assert not sa.inspect(conn).has_table(f"{table}_b")
        with engine.begin() as conn:  # the same migration, this time without the bad step
            metadata.create_all(conn)
            conn.execute(sa.text(f"INSERT INTO {table}_a (name) VALUES ('x')"))
        with engine.connect() as conn:
            assert conn.execute(sa.text(f"SELECT id, name FROM {table}_a")).all() == [(1, "x")]
            assert [ix["name"] for ix in sa.inspect(conn).get_indexes(f"{table}_b")] == \
                [f"ix_{table}_b_a_id"]
    finally:
        engine.dispose()
