"""executemany of a single-row INSERT: the server applies the rows of consecutive Executes
together, yet every outcome is PostgreSQL's. A row failing a key, NOT NULL, CHECK or foreign
key in the middle of the batch is answered at its own Execute, names itself, and leaves
nothing of the batch; sequences keep their increments; RETURNING gives each row; a SELECT
later in the same pipeline sees the rows before it. Each case runs on PostgreSQL and on our
server and must give the same errors, details and rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg
import numpy as np
import psycopg
import pytest

from tests.e2e.conftest import RawClient, beside_postgres, start_server
from wire.messages import Bind, ErrorResponse, Execute, Flush, Parse, Query, Sync

SCHEMA = """
DROP TABLE IF EXISTS m, g;
DROP SEQUENCE IF EXISTS ms;
CREATE SEQUENCE ms;
CREATE TABLE m (id int PRIMARY KEY, n int NOT NULL, v int CHECK (v > 0),
                q bigint DEFAULT nextval('ms'), d text DEFAULT 'dflt');
INSERT INTO m (id, n, v) VALUES (100, 0, 1);
CREATE TABLE g (id int PRIMARY KEY, n int NOT NULL, v int CHECK (v > 0), d text DEFAULT 'dflt');
INSERT INTO g (id, n, v) VALUES (100, 0, 1);
"""
# m's rows take sequence values, g's do not (the server gathers only those).
INSERT = "INSERT INTO {} (id, n, v) VALUES (%s, %s, %s)"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """PostgreSQL's URI, then our server's."""
    with beside_postgres(tmp_path_factory, "execmany") as (sqlvec, postgres):
        yield [postgres, sqlvec]


def rows(*changed: tuple[int, tuple]) -> list[tuple]:
    """Ten good rows (ids 1-10), with the given positions replaced."""
    out = [(i, i, i) for i in range(1, 11)]
    for at, row in changed:
        out[at] = row
    return out


def long_rows(*changed: tuple[int, tuple]) -> list[tuple]:
    """300 good rows (ids 1-300: their digits one, two and three wide), some replaced."""
    out = [(i, i % 10, 1 + i % 3) for i in range(1, 301)]
    for at, row in changed:
        out[at] = row
    return out


def statement(raw: RawClient, sql: str) -> None:
    """Run one statement in the extended protocol, its answers read."""
    raw.send(Parse("", sql).encode() + Bind().encode() + Execute().encode() + Sync().encode())
    raw.messages()


def outcome(uri: str, action: Callable[[psycopg.Connection, str], object],
            table: str) -> tuple:
    """(SQLSTATE, DETAIL of the error, what the action returned, rows of m and g, the
    sequence's next value)."""
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(SCHEMA)
        error = detail = result = None
        try:
            result = action(conn, table)
        except psycopg.Error as exc:
            error, detail = exc.sqlstate, exc.diag.message_detail
        rows = [conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in "mg"]
        last = conn.execute("SELECT nextval('ms')").fetchone()[0]
        return error, detail, result, rows, last


def many(batch: list[tuple], sql: str = INSERT) -> Callable[[psycopg.Connection, str], object]:
    def run(conn: psycopg.Connection, table: str) -> object:
        conn.cursor().executemany(sql.format(table), batch)
    return run


def returning(conn: psycopg.Connection, table: str) -> object:
    cur = conn.cursor()
    cur.executemany(INSERT.format(table) + " RETURNING *", rows(), returning=True)
    out = []
    while True:
        out.extend(cur.fetchall())
        if not cur.nextset():
            return out


def select_after(conn: psycopg.Connection, table: str) -> object:
    with conn.pipeline():
        conn.cursor().executemany(INSERT.format(table), rows()[:4])
        counted = conn.execute(f"SELECT count(*), max(id) FROM {table}")
        conn.cursor().executemany(INSERT.format(table), rows()[4:])
    return counted.fetchall()


def select_then_duplicate(conn: psycopg.Connection, table: str) -> object:
    with conn.pipeline():
        conn.cursor().executemany(INSERT.format(table), rows()[:4])
        conn.execute(f"SELECT count(*) FROM {table}")
        conn.cursor().executemany(INSERT.format(table), rows((2, (7, 0, 1)))[4:])


def in_block(action: Callable[[psycopg.Connection, str], object]
             ) -> Callable[[psycopg.Connection, str], object]:
    """`action` inside BEGIN ... COMMIT, after a row of the block's own (its rows are gathered
    there too, until the batch's Sync)."""
    def run(conn: psycopg.Connection, table: str) -> object:
        with conn.transaction():
            conn.execute(f"INSERT INTO {table} (id, n, v) VALUES (50, 5, 5)")
            return action(conn, table)
    return run


def savepoint_after_error(conn: psycopg.Connection, table: str) -> object:
    """A row failing in a block's executemany fails the block (25P02 after) until ROLLBACK TO
    SAVEPOINT, after which another executemany commits with the rows before the savepoint."""
    conn.execute("BEGIN")
    conn.execute(f"INSERT INTO {table} (id, n, v) VALUES (50, 5, 5)")
    conn.execute("SAVEPOINT s")
    failed = []
    try:
        conn.cursor().executemany(INSERT.format(table), rows((5, (2, 0, 1))))
    except psycopg.Error as exc:
        failed.append((exc.sqlstate, exc.diag.message_detail))
    try:
        conn.execute(f"SELECT count(*) FROM {table}")
    except psycopg.Error as exc:
        failed.append(exc.sqlstate)
    conn.execute("ROLLBACK TO SAVEPOINT s")
    conn.cursor().executemany(INSERT.format(table), rows()[:3])
    conn.execute("COMMIT")
    return failed


CASES = {
    "committed": many(rows()),
    "a duplicate in the middle": many(rows((5, (2, 0, 1)))),
    "a duplicate of a committed row": many(rows((6, (100, 0, 1)))),
    "a duplicate in the middle and another later": many(rows((3, (1, 0, 1)), (7, (2, 0, 1)))),
    "a NULL in the middle": many(rows((4, (5, None, 1)))),
    "a CHECK failing in the middle": many(rows((4, (5, 5, -1)))),
    "a duplicate before a NULL": many(rows((2, (1, 0, 1)), (6, (7, None, 1)))),
    "a duplicate before a CHECK failing": many(rows((2, (1, 0, 1)), (6, (7, 7, -1)))),
    "a NULL before a duplicate": many(rows((2, (3, None, 1)), (6, (1, 0, 1)))),
    "a long batch (runs of equal widths)": many(long_rows()),
    "a duplicate deep in a long batch": many(long_rows((250, (17, 1, 1)))),
    "a NULL deep in a long batch": many(long_rows((160, (161, None, 1)))),
    "a CHECK failing deep in a long batch": many(long_rows((260, (261, 1, -1)))),
    "RETURNING each row": returning,
    "a SELECT in the pipeline sees the rows before it": select_after,
    "a duplicate after a SELECT in the pipeline": select_then_duplicate,
    "in a block": in_block(many(rows())),
    "a duplicate in the middle, in a block": in_block(many(rows((5, (2, 0, 1))))),
    "a duplicate of the block's row": in_block(many(rows((6, (50, 0, 1))))),
    "a NULL in the middle, in a block": in_block(many(rows((4, (5, None, 1))))),
    "a SELECT in a block's pipeline": in_block(select_after),
    "a block's savepoint after an error": savepoint_after_error,
}


@pytest.mark.parametrize("table", ["g", "m"])
@pytest.mark.parametrize("name", CASES)
def test_psycopg_executemany_matches_postgresql(servers, name, table):
    postgres, ours = [outcome(uri, CASES[name], table) for uri in servers]
    assert ours == postgres


def test_a_foreign_key_failing_in_the_middle(servers):
    """Rows referencing another table (not gathered: their checks watch each row) fail at
    the right row too."""
    def run(uri: str) -> tuple:
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS fk_child, fk_parent")
            conn.execute("CREATE TABLE fk_parent (id int PRIMARY KEY)")
            conn.execute("INSERT INTO fk_parent VALUES (1), (2)")
            conn.execute("CREATE TABLE fk_child (id int PRIMARY KEY, "
                         "p int REFERENCES fk_parent)")
            try:
                conn.cursor().executemany("INSERT INTO fk_child VALUES (%s, %s)",
                                          [(1, 1), (2, 2), (3, 9), (4, 1)])
                error = None
            except psycopg.Error as exc:
                error = (exc.sqlstate, exc.diag.message_detail)
            return error, conn.execute("SELECT count(*) FROM fk_child").fetchone()[0]

    postgres, ours = [run(uri) for uri in servers]
    assert postgres[0][0] == "23503"
    assert ours == postgres


def test_asyncpg_executemany_matches_postgresql(servers):
    async def run(uri: str) -> tuple:
        conn = await asyncpg.connect(uri)
        try:
            await conn.execute(SCHEMA)
            out = []
            for table, batch in ((t, b) for t in "gm" for b in (
                    rows((5, (2, 0, 1))), rows((4, (5, None, 1))), rows())):
                try:
                    await conn.executemany(f"INSERT INTO {table} (id, n, v) VALUES ($1, $2, $3)",
                                           batch)
                    out.append(None)
                except asyncpg.PostgresError as exc:
                    out.append((exc.sqlstate, exc.detail))
            table = [tuple(r) for t in "gm" for r in await conn.fetch(
                f"SELECT * FROM {t} ORDER BY id")]
            return out, table, await conn.fetchval("SELECT nextval('ms')")
        finally:
            await conn.close()

    postgres, ours = [asyncio.run(run(uri)) for uri in servers]
    assert postgres[0][0] == ("23505", "Key (id)=(2) already exists.")
    assert ours == postgres


def test_the_error_is_answered_at_the_failing_execute(tmp_path_factory):
    """The messages as PostgreSQL sends them: the rows before the failing one answered
    (BindComplete, CommandComplete), the failing one's BindComplete then the error, nothing
    for the rows after it; with a Flush after the rows too."""
    server = start_server(tmp_path_factory.mktemp("execmany-raw"), "--workers", "0")
    raw = RawClient(server).ready()
    try:
        for end in (Sync(), Flush()):
            statement(raw, "CREATE TABLE IF NOT EXISTS r (id int PRIMARY KEY)")
            out = Parse("", "INSERT INTO r VALUES ($1)", (23,)).encode()
            for key in (1, 2, 3, 2, 4, 5):
                out += Bind("", "", (), (str(key).encode(),)).encode() + Execute().encode()
            raw.send(out + end.encode())
            got = raw.messages(until=b"E")
            assert [m.TYPE for m in got] == [b"1"] + [b"2", b"C"] * 3 + [b"2", b"E"]
            error = got[-1]
            assert isinstance(error, ErrorResponse)
            fields = dict(error.fields)
            assert (fields["C"], fields["D"]) == ("23505", "Key (id)=(2) already exists.")
            if isinstance(end, Flush):
                raw.send(Sync().encode())
            assert [m.TYPE for m in raw.messages()] == [b"Z"]
        # A Query of several INSERTs stops at the failing one too: nothing after it answered.
        raw.send(Query("DELETE FROM r; " + "; ".join(
            f"INSERT INTO r VALUES ({key})" for key in (1, 2, 1, 3))).encode())
        assert [m.TYPE for m in raw.messages()] == [b"C", b"C", b"C", b"E", b"Z"]
    finally:
        raw.close()
        assert server.stop() == 0, server.log()


def test_vectors_binary_and_text_match_postgresql(servers):
    """Vector rows sent in text and in binary, a NULL among them, then a row of the wrong
    dimensions in the middle: the same rows, the same error."""
    from pgvector.psycopg import register_vector

    vectors = [np.array([i, -i / 3, 1e-3 * i], dtype=np.float32) for i in range(12)]
    batch = [(i, None if i == 5 else v) for i, v in enumerate(vectors)]

    def run(uri: str) -> tuple:
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            conn.execute("DROP TABLE IF EXISTS vv")
            conn.execute("CREATE TABLE vv (id int PRIMARY KEY, e vector(3))")
            sql = "INSERT INTO vv VALUES (%s, %s)"
            conn.cursor(binary=True).executemany(sql, batch)
            conn.cursor().executemany(sql, [(i + 100, v) for i, v in batch])
            try:
                conn.cursor(binary=True).executemany(sql, [
                    (200, vectors[1]), (201, np.array([1, 2], dtype=np.float32)),
                    (202, vectors[2])])
                error = None
            except psycopg.Error as exc:
                error = exc.sqlstate
            got = conn.execute("SELECT id, e::text FROM vv ORDER BY id").fetchall()
            return error, got

    postgres, ours = [run(uri) for uri in servers]
    assert postgres[0] == "22000"
    assert ours == postgres


def test_an_earlier_rows_error_comes_before_a_value_that_does_not_decode(tmp_path_factory):
    """A duplicate key among the gathered rows, then a Bind whose value does not decode:
    PostgreSQL ran the duplicate first, so its error is the answer (at its Execute), and the
    log names the INSERT."""
    server = start_server(tmp_path_factory.mktemp("execmany-decode"), "--workers", "0")
    raw = RawClient(server).ready()
    try:
        statement(raw, "CREATE TABLE d (id int PRIMARY KEY)")
        out = Parse("", "INSERT INTO d VALUES ($1)", (23,)).encode()
        for key in (b"1", b"2", b"1", b"x", b"5"):
            out += Bind("", "", (), (key,)).encode() + Execute().encode()
        raw.send(out + Sync().encode())
        got = raw.messages()
        assert [m.TYPE for m in got] == [b"1"] + [b"2", b"C"] * 2 + [b"2", b"E", b"Z"]
        fields = dict(got[-2].fields)
        assert (fields["C"], fields["D"]) == ("23505", "Key (id)=(1) already exists.")
        raw.send(Query("SELECT count(*) FROM d").encode())
        assert [m.TYPE for m in raw.messages()] == [b"T", b"D", b"C", b"Z"]
    finally:
        raw.close()
        assert server.stop() == 0, server.log()
    assert "STATEMENT:  INSERT INTO d VALUES ($1)" in server.log()


def test_a_query_amid_gathered_rows_runs_after_them_and_alone(tmp_path_factory):
    """A simple Query among an executemany's Executes (before their Sync), in a block and out
    of one: the rows before it go in first, an error in them skips it (as everything up to
    the Sync), and its own INSERTs run one by one, a duplicate answered at its own statement:
    the messages PostgreSQL 16 sends."""
    server = start_server(tmp_path_factory.mktemp("execmany-query"), "--workers", "0")
    raw = RawClient(server).ready()

    def pipeline(keys: tuple[int, ...], query: str) -> list:
        out = Parse("", "INSERT INTO q VALUES ($1)", (23,)).encode()
        for key in keys:
            out += Bind("", "", (), (str(key).encode(),)).encode() + Execute().encode()
        raw.send(out + Query(query).encode() + Sync().encode())
        return raw.messages()

    try:
        for begin, status in (("BEGIN", "E"), ("", "I")):
            raw.send(Query("DROP TABLE IF EXISTS q; CREATE TABLE q (id int PRIMARY KEY)")
                     .encode())
            raw.messages()
            raw.send(Query(begin).encode())
            raw.messages()
            got = pipeline((1, 2), "INSERT INTO q VALUES (5); INSERT INTO q VALUES (5)")
            assert [m.TYPE for m in got] == [b"1"] + [b"2", b"C"] * 2 + [b"C", b"E", b"Z"]
            assert dict(got[-2].fields)["D"] == "Key (id)=(5) already exists."
            assert [(m.TYPE, m.status) for m in raw.messages()] == [(b"Z", status)]
            raw.send(Query("ROLLBACK").encode())
            raw.messages()
            raw.send(Query(begin).encode())
            raw.messages()
            got = pipeline((1, 1), "INSERT INTO q VALUES (7)")
            assert [m.TYPE for m in got] == [b"1", b"2", b"C", b"2", b"E", b"Z"]
            assert got[-1].status == status
            assert dict(got[-2].fields)["D"] == "Key (id)=(1) already exists."
            raw.send(Query("ROLLBACK").encode())
            raw.messages()
            raw.send(Query("SELECT count(*) FROM q").encode())
            assert [list(m.values) for m in raw.messages() if m.TYPE == b"D"] == [[b"0"]]
    finally:
        raw.close()
        assert server.stop() == 0, server.log()


@pytest.mark.parametrize("cache", [1, 10])
def test_serial_keys_are_gathered_with_postgresqls_values(servers, cache):
    """Rows whose key is a serial default: gathered, they take the same values as in
    PostgreSQL; after a row failing in the middle, the sequence and currval() stand at the
    failing row's value (the rows after it never took theirs: with CACHE, they are still the
    session's to hand out)."""
    def run(uri: str) -> tuple:
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS sk")
            conn.execute("CREATE TABLE sk (id serial PRIMARY KEY, u int UNIQUE, s text)")
            conn.execute(f"ALTER SEQUENCE sk_id_seq CACHE {cache}")
            sql = "INSERT INTO sk (u, s) VALUES (%s, %s)"
            conn.cursor().executemany(sql, [(i, f"s{i}") for i in range(20)])
            try:
                conn.cursor().executemany(sql, [(i, "x") for i in (20, 21, 22, 5, 23, 24)])
                error = None
            except psycopg.Error as exc:
                error = (exc.sqlstate, exc.diag.message_detail)
            current = conn.execute("SELECT currval('sk_id_seq')").fetchone()
            conn.cursor().executemany(sql, [(i, "y") for i in range(30, 35)])
            got = conn.execute("SELECT * FROM sk ORDER BY id").fetchall()
            return error, current, got, conn.execute("SELECT nextval('sk_id_seq')").fetchone()

    postgres, ours = [run(uri) for uri in servers]
    assert postgres[0] == ("23505", "Key (u)=(5) already exists.")
    assert ours == postgres


def test_runs_arriving_in_pieces_cut_anywhere(tmp_path_factory):
    """The runs of an executemany arriving in pieces cut in the middle of a message (a
    Bind, its Execute), and one piece ending between two runs: every row in, each answered,
    then a duplicate in a later piece is still answered at its own Execute."""
    server = start_server(tmp_path_factory.mktemp("execmany-pieces"), "--workers", "0")
    raw = RawClient(server).ready()
    try:
        statement(raw, "CREATE TABLE p (id int PRIMARY KEY)")
        for keys, answers in (((range(1, 41)), [b"2", b"C"] * 40),
                              ((41, 42, 43, 3, 44), [b"2", b"C"] * 3 + [b"2", b"E"])):
            out = Parse("", "INSERT INTO p VALUES ($1)", (23,)).encode()
            for key in keys:
                out += Bind("", "", (), (str(key).encode(),)).encode() + Execute().encode()
            out += Sync().encode()
            run = len(Bind("", "", (), (b"10",)).encode() + Execute().encode())
            for cut in (0, 33, 34 + run, 35 + 2 * run + 3, len(out) - 7, len(out)):
                raw.send(out[:cut])
                out = out[cut:]
                time.sleep(0.05)
            got = raw.messages()
            assert [m.TYPE for m in got] == [b"1"] + answers + [b"Z"]
        raw.send(Query("SELECT count(*), sum(id) FROM p").encode())
        rows = [m for m in raw.messages() if m.TYPE == b"D"]
        assert rows[0].values == (b"40", str(sum(range(1, 41))).encode())
    finally:
        raw.close()
        assert server.stop() == 0, server.log()


BLOCK_SCHEMA = """
DROP TABLE IF EXISTS bb;
CREATE TABLE bb (id bigint PRIMARY KEY, n int NOT NULL, x float8, s text, e vector(3));
"""


def block_rows(n: int, *changed: tuple[int, tuple]) -> list[tuple]:
    """`n` rows of equal-size binary values (a NULL text everywhere), some replaced."""
    out = [(i, i % 7, i / 8, None, np.array([i, -i, 0.5], np.float32)) for i in range(n)]
    for at, row in changed:
        out[at] = row
    return out


BLOCK_CASES = {
    "committed": [block_rows(200), [(1000 + i, 1, 0.0, "yy", None) for i in range(100)]],
    "a duplicate deep in the batch": [block_rows(200, (150, (3, 1, 0.0, None, None)))],
    "a duplicate of a committed row": [block_rows(50), block_rows(100)],
    "a NULL where NOT NULL, in every row": [[(i, None, 1.0, "a", None) for i in range(40)]],
    "a NULL where NOT NULL, deep in the batch": [block_rows(100, (70, (70, None, 1.0, None,
                                                                       None)))],
    "a NUL in a text deep in the batch": [[(i, 1, 1.0, "a\0" if i == 40 else "ab", None)
                                           for i in range(60)]],
    "a vector of other dimensions": [block_rows(80, (30, (30, 1, 1.0, None,
                                                          np.array([1, 2], np.float32))))],
    "a NaN in a vector": [block_rows(80, (45, (45, 1, 1.0, None,
                                               np.array([1, np.nan, 2], np.float32))))],
}


@pytest.mark.parametrize("name", BLOCK_CASES)
def test_asyncpg_batches_of_equal_runs_match_postgresql(servers, name):
    """asyncpg's executemany sends binary values: runs laid out alike are decoded
    together, yet a bad row deep in the batch fails it with PostgreSQL's error and leaves
    nothing of it, and the rows are PostgreSQL's to the bit."""
    from pgvector.asyncpg import register_vector

    async def run(uri: str) -> tuple:
        conn = await asyncpg.connect(uri)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            await register_vector(conn)
            await conn.execute(BLOCK_SCHEMA)
            out = []
            for batch in BLOCK_CASES[name]:
                try:
                    await conn.executemany("INSERT INTO bb VALUES ($1, $2, $3, $4, $5)", batch)
                    out.append(None)
                except asyncpg.PostgresError as exc:
                    out.append((exc.sqlstate, exc.detail))
            got = [(r["id"], r["n"], r["x"], r["s"], r["e"]) for r in await conn.fetch(
                "SELECT id, n, x, s, e::text FROM bb ORDER BY id")]
            return out, got
        finally:
            await conn.close()

    postgres, ours = [asyncio.run(run(uri)) for uri in servers]
    assert ours == postgres


def test_a_block_of_binary_runs_is_answered_up_to_the_failing_execute(tmp_path_factory):
    """Binary runs laid out alike (taken as one block), a duplicate key deep among them:
    BindComplete and CommandComplete for each row before it, the failing row's BindComplete
    and the error, nothing after; the next batch of such runs commits whole."""
    server = start_server(tmp_path_factory.mktemp("execmany-block"), "--workers", "0")
    raw = RawClient(server).ready()
    try:
        statement(raw, "CREATE TABLE k (id bigint PRIMARY KEY, n int)")
        for keys, answers in (([*range(40), 30, *range(41, 60)], [b"2", b"C"] * 40 + [b"2", b"E"]),
                              (range(100, 160), [b"2", b"C"] * 60)):
            out = Parse("", "INSERT INTO k VALUES ($1, $2)", (20, 23)).encode()
            for key in keys:
                out += Bind("", "", (1,), (key.to_bytes(8, "big"), (7).to_bytes(4, "big"))).encode()
                out += Execute().encode()
            raw.send(out + Sync().encode())
            got = raw.messages()
            assert [m.TYPE for m in got] == [b"1"] + answers + [b"Z"]
            if answers[-1] == b"E":
                fields = dict(got[-2].fields)
                assert (fields["C"], fields["D"]) == ("23505", "Key (id)=(30) already exists.")
        raw.send(Query("SELECT count(*), sum(id), sum(n) FROM k").encode())
        rows = [m for m in raw.messages() if m.TYPE == b"D"]
        assert rows[0].values == (b"60", str(sum(range(100, 160))).encode(), b"420")
    finally:
        raw.close()
        assert server.stop() == 0, server.log()


def test_a_deferred_key_failing_at_the_commit_after_the_answers(servers):
    """A deferred unique key: every row answered, then the commit at Sync fails (the
    answers went out before it), the batch leaves nothing, and the connection goes on."""
    async def run(uri: str) -> tuple:
        conn = await asyncpg.connect(uri)
        try:
            await conn.execute("DROP TABLE IF EXISTS dk; CREATE TABLE dk (id bigint PRIMARY KEY,"
                               " u int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
            out = []
            for batch in ([(i, i) for i in range(100)],
                          [(i, 50 if i == 170 else i) for i in range(100, 200)]):
                try:
                    await conn.executemany("INSERT INTO dk VALUES ($1, $2)", batch)
                    out.append(None)
                except asyncpg.PostgresError as exc:
                    out.append((exc.sqlstate, exc.detail))
            out.append(await conn.fetchval("SELECT count(*) FROM dk"))
            return out
        finally:
            await conn.close()

    postgres, ours = [asyncio.run(run(uri)) for uri in servers]
    assert postgres[1][0] == "23505" and postgres[2] == 100
    assert ours == postgres


def test_cached_serial_values_given_back_are_only_the_session_s(servers):
    """With CACHE, the values a session's rows after a failing one give back are those they
    took, not every value between (another session took some of those): no key is handed
    out twice, and each session's next rows take PostgreSQL's values."""
    def run(uri: str) -> tuple:
        with psycopg.connect(uri, autocommit=True) as a, \
                psycopg.connect(uri, autocommit=True) as b:
            a.execute("DROP TABLE IF EXISTS sk2")
            a.execute("CREATE TABLE sk2 (id serial PRIMARY KEY, u int UNIQUE)")
            a.execute("ALTER SEQUENCE sk2_id_seq CACHE 3")
            sql = "INSERT INTO sk2 (u) VALUES (%s)"
            a.execute(sql, (0,))
            b.execute(sql, (100,))
            errors = []
            for conn, keys in ((a, (1, 0, 3, 4)), (a, (10, 11)), (b, (101, 102))):
                try:
                    conn.cursor().executemany(sql, [(k,) for k in keys])
                except psycopg.Error as exc:
                    errors.append((exc.sqlstate, exc.diag.message_detail))
            return errors, a.execute("SELECT id, u FROM sk2 ORDER BY id").fetchall()

    postgres, ours = [run(uri) for uri in servers]
    assert postgres[0] == [("23505", "Key (u)=(0) already exists.")]
    assert ours == postgres
