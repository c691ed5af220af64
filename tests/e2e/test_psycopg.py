"""psycopg 3, sync and async, against a running server."""

from __future__ import annotations

import asyncio
import datetime as dt
import struct
import threading
from decimal import Decimal

import numpy as np
import psycopg
import pytest
from psycopg import errors

from sqlvec.session import Session

needs_copy_in = pytest.mark.skipif(not hasattr(Session, "copy_in"),
                                   reason="Session.copy_in is not available yet")


@pytest.fixture
def conn(server):
    with psycopg.connect(server.conninfo(), autocommit=True) as connection:
        yield connection


# Queries ------------------------------------------------------------------------------------------


def test_a_prepared_statement_is_planned_again_after_ddl_and_a_search_path_change(conn, table):
    a, b = f"{table}_a", f"{table}_b"
    for schema, value in ((a, 1), (b, 2)):
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.t (v int)")
        conn.execute(f"INSERT INTO {schema}.t VALUES ({value})")
    query = "SELECT v FROM t"
    conn.execute(f"SET search_path = {a}")
    assert [conn.execute(query, prepare=True).fetchall() for _ in range(3)] == [[(1,)]] * 3
    conn.execute(f"SET search_path = {b}")
    assert conn.execute(query, prepare=True).fetchall() == [(2,)]
    conn.execute(f"DROP TABLE {b}.t")
    with pytest.raises(errors.UndefinedTable):
        conn.execute(query, prepare=True)
    conn.execute(f"CREATE TABLE {b}.t (v int)")
    conn.execute(f"INSERT INTO {b}.t VALUES (3)")
    assert conn.execute(query, prepare=True).fetchall() == [(3,)]


def test_simple_and_parameterized_queries(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int8 PRIMARY KEY, name text, score float8)")
    conn.execute(f"INSERT INTO {table} VALUES (1, 'a', 0.5), (2, 'b', 1.5), (3, NULL, NULL)")
    rows = conn.execute(f"SELECT id, name, score FROM {table} ORDER BY id").fetchall()
    assert rows == [(1, "a", 0.5), (2, "b", 1.5), (3, None, None)]
    cur = conn.execute(f"SELECT name FROM {table} WHERE id = %s AND score < %s", (2, 10.0))
    assert cur.fetchall() == [("b",)]
    assert cur.description[0].name == "name"
    cur = conn.execute(f"UPDATE {table} SET score = score + %s WHERE id <= %s", (1, 2))
    assert cur.rowcount == 2 and cur.statusmessage == "UPDATE 2"


def test_several_statements_in_one_query(conn):
    cur = conn.cursor()
    cur.execute("SELECT 1; SELECT 'two' AS t")
    assert cur.fetchall() == [(1,)]
    assert cur.nextset() and cur.fetchall() == [("two",)]


def test_an_error_rolls_back_the_statements_before_it(conn, table):
    """A Query of several statements is one implicit transaction, as in PostgreSQL."""
    conn.execute(f"CREATE TABLE {table} (id int4)")
    with pytest.raises(errors.UndefinedTable):
        conn.execute(f"INSERT INTO {table} VALUES (1); SELECT * FROM nope_{table}")
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def test_explicit_and_automatic_prepare(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int4, v vector(2))")
    conn.execute(f"INSERT INTO {table} VALUES (1, '[1,0]'), (2, '[0,1]')")
    query = f"SELECT id FROM {table} WHERE id = %s"
    assert conn.execute(query, (1,), prepare=True).fetchall() == [(1,)]
    conn.prepare_threshold = 2
    for _ in range(4):
        assert conn.execute(query + " OR id = %s", (1, 2)).fetchall() == [(1,), (2,)]
    prepared = getattr(getattr(conn, "_prepared", None), "_names", None)
    if prepared is not None:
        assert len(prepared) >= 2  # both statements now live as named server statements
    distance = f"SELECT id FROM {table} ORDER BY v <-> %s LIMIT 1"
    assert conn.execute(distance, ("[0.9,0.1]",), prepare=True).fetchone() == (1,)


def test_binary_cursor_types(conn):
    cur = conn.cursor(binary=True)
    cur.execute("SELECT 1::int2, 2::int4, 3::int8, 1.5::float4, 2.25::float8, true, 'é'::text, "
                "12.50::numeric(10,2), DATE '2024-02-29', TIMESTAMP '2024-01-02 03:04:05.5', "
                "'\\x0102'::bytea")
    assert cur.fetchone() == (1, 2, 3, 1.5, 2.25, True, "é", Decimal("12.50"),
                              dt.date(2024, 2, 29), dt.datetime(2024, 1, 2, 3, 4, 5, 500000),
                              b"\x01\x02")
    cur.execute("SELECT %b::int8 + 1, %b::text", (41, "x"))
    assert cur.fetchone() == (42, "x")


def test_vector_binary_result_is_pgvector_format(conn):
    cur = conn.cursor(binary=True)
    cur.execute("SELECT '[1,2.5,-3]'::vector(3)")
    (raw,) = cur.fetchone()
    dim, unused = struct.unpack_from("!HH", raw)
    assert (dim, unused) == (3, 0)
    assert np.frombuffer(raw, ">f4", offset=4).tolist() == [1.0, 2.5, -3.0]


def test_float_text_output_and_extra_float_digits(conn):
    assert conn.execute("SELECT 0.1::float8, 1e20::float8, 'NaN'::float8").fetchone() == \
        (0.1, 1e20, pytest.approx(float("nan"), nan_ok=True))
    cur = conn.cursor()
    cur.execute("SELECT (1.0/3)::float8::text")
    assert cur.fetchone()[0] == "0.3333333333333333"


def test_register_vector_numpy_round_trip(conn, table):
    from pgvector.psycopg import register_vector

    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    conn.execute(f"CREATE TABLE {table} (id int4, v vector(3))")
    vec = np.array([1.5, -2.0, 3.25], dtype=np.float32)
    conn.execute(f"INSERT INTO {table} VALUES (1, %s)", (vec,))
    (got,) = conn.execute(f"SELECT v FROM {table}").fetchone()
    np.testing.assert_array_equal(as_numpy(got), vec)
    cur = conn.cursor(binary=True)
    (got,) = cur.execute(f"SELECT v FROM {table} ORDER BY v <-> %s LIMIT 1", (vec,)).fetchone()
    np.testing.assert_array_equal(as_numpy(got), vec)


@pytest.mark.parametrize("query, want", [
    ("SELECT id FROM {t} ORDER BY v <-> (%s) LIMIT 1", [(2,)]),
    ("SELECT id FROM {t} ORDER BY v <-> ((%s)) LIMIT 1", [(2,)]),
    ("SELECT (%s) <=> v FROM {t} WHERE id = 1", [(0.0,)]),
])
def test_a_parenthesized_parameter_is_typed_as_a_vector(conn, table, query, want):
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute(f"CREATE TABLE {table} (id int4, v vector(3))")
    conn.execute(f"INSERT INTO {table} VALUES (1, '[1,0,0]'), (2, '[0,0,1]')")
    param = "[0,0,1]" if "<->" in query else "[1,0,0]"  # a str is sent as unknown, as by users
    assert conn.execute(query.format(t=table), (param,)).fetchall() == want


def test_parenthesized_parameters_are_described_with_their_context_types(conn, table):
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute(f"CREATE TABLE {table} (id int4, v vector(3))")
    cases = {
        f"SELECT id FROM {table} ORDER BY v <-> ($1) LIMIT 1": ["vector"],
        f"SELECT id FROM {table} WHERE (($1)) < id AND id = ($2)": ["int4", "int4"],
        f"INSERT INTO {table} VALUES (($1), ($2))": ["int4", "vector"],
    }
    for k, (sql, types) in enumerate(cases.items()):
        name = f"paren_{k}".encode()
        assert conn.pgconn.prepare(name, sql.encode()).status == psycopg.pq.ExecStatus.COMMAND_OK
        described = conn.pgconn.describe_prepared(name)
        oids = [described.param_type(i) for i in range(described.nparams)]
        names = [conn.execute("SELECT typname FROM pg_type WHERE oid = %s", (oid,)).fetchone()[0]
                 for oid in oids]
        assert names == types, sql
    conn.execute(f"INSERT INTO {table} VALUES ((%s), (%s))", (7, "[1,2,3]"))
    assert conn.execute(f"SELECT v::text FROM {table} WHERE id = (%s)", (7,)).fetchall() == [
        ("[1,2,3]",)]


def as_numpy(value) -> np.ndarray:
    """pgvector's loaders give a numpy array (text) or a Vector (binary)."""
    value = value.to_numpy() if hasattr(value, "to_numpy") else value
    return np.asarray(value, dtype=np.float32)


def test_executemany(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int4, v vector(2), note text)")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)",
                        [(i, f"[{i},{-i}]", None if i % 2 else "even") for i in range(50)])
    assert conn.execute(f"SELECT count(*), count(note) FROM {table}").fetchone() == (50, 25)


def test_server_parameters(conn):
    assert conn.info.parameter_status("server_version").startswith("16")
    assert conn.info.parameter_status("client_encoding") == "UTF8"
    assert conn.info.parameter_status("integer_datetimes") == "on"
    assert conn.info.parameter_status("standard_conforming_strings") == "on"
    assert conn.info.backend_pid > 0
    conn.execute("SET application_name = 'e2e-app'")
    assert conn.info.parameter_status("application_name") == "e2e-app"


def test_startup_options_and_application_name(server):
    info = server.conninfo(application_name="from-startup", options="'-c extra_float_digits=0'")
    with psycopg.connect(info, autocommit=True) as conn:
        assert conn.info.parameter_status("application_name") == "from-startup"
        assert conn.execute("SHOW extra_float_digits").fetchone() == ("0",)
        assert conn.execute("SELECT 0.1::float8::text").fetchone()[0] == "0.1"


def test_unknown_database_is_refused(server):
    with pytest.raises(psycopg.OperationalError, match='database "nosuchdb" does not exist'):
        psycopg.connect(server.conninfo(dbname="nosuchdb"))


# COPY --------------------------------------------------------------------------------------------


@needs_copy_in
def test_copy_from_stdin_text_and_csv(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int4, v vector(2), note text)")
    cur = conn.cursor()
    with cur.copy(f"COPY {table} (id, v, note) FROM STDIN") as copy:
        copy.write_row((1, "[1,2]", "tab\there"))
        copy.write_row((2, None, None))
    with cur.copy(f"COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
        copy.write('id,v,note\n3,"[3,4]","a,b"\n4,,\n')
    rows = conn.execute(f"SELECT id, v::text, note FROM {table} ORDER BY id").fetchall()
    assert rows == [(1, "[1,2]", "tab\there"), (2, None, None), (3, "[3,4]", "a,b"),
                    (4, None, None)]


@needs_copy_in
def test_copy_from_stdin_binary(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int8, score float8, name text)")
    with conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT binary)") as copy:
        copy.set_types(["int8", "float8", "text"])
        for i in range(100):
            copy.write_row((i, i / 2, f"n{i}" if i % 3 else None))
    assert conn.execute(f"SELECT count(*), sum(score), count(name) FROM {table}").fetchone() == \
        (100, 2475.0, 66)


@needs_copy_in
def test_copy_binary_vectors_from_raw_bytes(conn, table):
    """A binary COPY of vectors built by hand (pgvector's format), decoded with NumPy."""
    conn.execute(f"CREATE TABLE {table} (id int8, v vector(4))")
    rng = np.random.default_rng(1)
    matrix = rng.standard_normal((500, 4)).astype(np.float32)
    parts = [b"PGCOPY\n\xff\r\n\x00", struct.pack("!ii", 0, 0)]
    for i, row in enumerate(matrix):
        parts.append(struct.pack("!hiqiHH", 2, 8, i, 20, 4, 0) + row.astype(">f4").tobytes())
    parts.append(struct.pack("!h", -1))
    with conn.cursor().copy(f"COPY {table} (id, v) FROM STDIN WITH (FORMAT binary)") as copy:
        copy.write(b"".join(parts))
    cur = conn.cursor(binary=True)
    got = cur.execute(f"SELECT v FROM {table} ORDER BY id").fetchall()
    decoded = np.stack([np.frombuffer(raw, ">f4", offset=4) for (raw,) in got])
    np.testing.assert_array_equal(decoded, matrix)


@needs_copy_in
def test_copy_failure_leaves_table_unchanged(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int4, note text)")
    cur = conn.cursor()
    with pytest.raises(errors.InvalidTextRepresentation) as info:
        with cur.copy(f"COPY {table} FROM STDIN") as copy:
            copy.write("1\tok\n2\tok\nthree\tbad\n")
    assert info.value.diag.context.startswith(f"COPY {table}, line 3")
    with pytest.raises(errors.QueryCanceled):
        with cur.copy(f"COPY {table} FROM STDIN") as copy:
            copy.write("1\tok\n")
            raise errors.QueryCanceled("client gave up")
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


@needs_copy_in
def test_copy_in_a_transaction_rolls_back(server, table):
    with psycopg.connect(server.conninfo()) as conn:
        conn.execute(f"CREATE TABLE {table} (id int4)")
        conn.commit()
        with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
            copy.write("1\n2\n")
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)
        conn.rollback()
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def test_copy_to_stdout_text_csv_and_binary(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int4, v vector(2), note text)")
    conn.execute(f"INSERT INTO {table} VALUES (1, '[1,2]', 'a\tb'), (2, NULL, NULL)")
    cur = conn.cursor()
    with cur.copy(f"COPY {table} TO STDOUT") as copy:
        assert list(copy.rows()) == [("1", "[1,2]", "a\tb"), ("2", None, None)]
    with cur.copy(f"COPY (SELECT id, note FROM {table} ORDER BY id) TO STDOUT "
                  "WITH (FORMAT csv, HEADER)") as copy:
        assert b"".join(copy) == b'id,note\n1,a\tb\n2,\n'
    with cur.copy(f"COPY (SELECT id, note FROM {table} ORDER BY id) TO STDOUT "
                  "(FORMAT binary)") as copy:
        copy.set_types(["int4", "text"])
        assert list(copy.rows()) == [(1, "a\tb"), (2, None)]
    with cur.copy(f"COPY (SELECT id FROM {table} WHERE id > 5) TO STDOUT (FORMAT binary)") as copy:
        copy.set_types(["int4"])
        assert list(copy.rows()) == []


# Transactions and errors ------------------------------------------------------------------------


def test_transactions_commit_and_rollback(server, table):
    with psycopg.connect(server.conninfo()) as conn:
        conn.execute(f"CREATE TABLE {table} (id int4 PRIMARY KEY)")
        conn.commit()
        conn.execute(f"INSERT INTO {table} VALUES (1)")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.rollback()
        conn.execute(f"INSERT INTO {table} VALUES (2)")
        conn.commit()
        assert conn.execute(f"SELECT id FROM {table}").fetchall() == [(2,)]


def test_error_classes(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int4 PRIMARY KEY)")
    conn.execute(f"INSERT INTO {table} VALUES (1)")
    with pytest.raises(errors.UniqueViolation):
        conn.execute(f"INSERT INTO {table} VALUES (1)")
    with pytest.raises(errors.UndefinedTable) as info:
        conn.execute("SELECT * FROM nope_at_all")
    assert info.value.diag.message_primary == 'relation "nope_at_all" does not exist'
    assert info.value.diag.severity == "ERROR"
    with pytest.raises(errors.SyntaxError) as info:
        conn.execute("SELEC 1")
    assert info.value.sqlstate == "42601"
    with pytest.raises(errors.DivisionByZero):
        conn.execute("SELECT 1 / 0")
    assert conn.execute("SELECT 1").fetchone() == (1,)  # still usable


def test_failed_transaction_needs_rollback(server, table):
    with psycopg.connect(server.conninfo()) as conn:
        conn.execute(f"CREATE TABLE {table} (id int4 PRIMARY KEY)")
        conn.commit()
        conn.execute(f"INSERT INTO {table} VALUES (1)")
        with pytest.raises(errors.UniqueViolation):
            conn.execute(f"INSERT INTO {table} VALUES (1)")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def test_notice_for_commit_outside_a_transaction(conn):
    notices = []
    conn.add_notice_handler(lambda diag: notices.append((diag.severity, diag.message_primary)))
    conn.execute("COMMIT")
    assert notices == [("WARNING", "there is no transaction in progress")]


# Severity, SQLSTATE and text as a real PostgreSQL 16 sends them for the same statements.
@pytest.mark.parametrize("setup, sql, expected", [
    ("", "ROLLBACK", ("WARNING", "25P01", "there is no transaction in progress")),
    ("BEGIN", "BEGIN", ("WARNING", "25001", "there is already a transaction in progress")),
    ("CREATE TABLE {t} (a int)", "CREATE TABLE IF NOT EXISTS {t} (a int)",
     ("NOTICE", "42P07", 'relation "{t}" already exists, skipping')),
    ("CREATE TABLE {t} (a int); CREATE INDEX {t}_a ON {t} (a)",
     "CREATE INDEX IF NOT EXISTS {t}_a ON {t} (a)",
     ("NOTICE", "42P07", 'relation "{t}_a" already exists, skipping')),
    ("CREATE SEQUENCE {t}", "CREATE SEQUENCE IF NOT EXISTS {t}",
     ("NOTICE", "42P07", 'relation "{t}" already exists, skipping')),
    ("CREATE SCHEMA {t}", "CREATE SCHEMA IF NOT EXISTS {t}",
     ("NOTICE", "42P06", 'schema "{t}" already exists, skipping')),
    ("CREATE EXTENSION IF NOT EXISTS vector", "CREATE EXTENSION IF NOT EXISTS vector",
     ("NOTICE", "42710", 'extension "vector" already exists, skipping')),
    ("", "SELECT pg_terminate_backend(999999)",
     ("WARNING", "01000", "PID 999999 is not a PostgreSQL backend process")),
])
def test_notices_carry_postgresqls_severity_and_sqlstate(conn, setup, sql, expected):
    t = f"notice_{abs(hash(sql)) % 10**8}"
    if setup:
        conn.execute(setup.format(t=t))
    notices = []  # a notice's fields are readable only inside the handler
    conn.add_notice_handler(lambda d: notices.append(
        (d.severity, d.severity_nonlocalized, d.sqlstate, d.message_primary)))
    conn.execute(sql.format(t=t))
    severity, code, message = expected
    assert notices == [(severity, severity, code, message.format(t=t))]
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute("ROLLBACK")


# Cancellation -------------------------------------------------------------------------------------


def test_cancel_interrupts_a_running_query(conn):
    timer = threading.Timer(0.3, conn.cancel)
    timer.start()
    try:
        with pytest.raises(errors.QueryCanceled, match="user request"):
            conn.execute("SELECT pg_sleep(20)")
    finally:
        timer.cancel()
    assert conn.execute("SELECT 2").fetchone() == (2,)


def test_statement_timeout(conn):
    conn.execute("SET statement_timeout = 200")
    with pytest.raises(errors.QueryCanceled, match="statement timeout"):
        conn.execute("SELECT pg_sleep(20)")
    conn.execute("SET statement_timeout = 0")
    assert conn.execute("SELECT 3").fetchone() == (3,)


def test_slow_query_does_not_stall_other_connections(server):
    with psycopg.connect(server.conninfo(), autocommit=True) as slow, \
            psycopg.connect(server.conninfo(), autocommit=True) as fast:
        done = threading.Event()
        thread = threading.Thread(target=lambda: (slow.execute("SELECT pg_sleep(2)"),
                                                  done.set()))
        thread.start()
        try:
            assert fast.execute("SELECT 1").fetchone() == (1,)
            assert not done.is_set()  # the answer came while the slow query was running
        finally:
            thread.join()


# Async --------------------------------------------------------------------------------------------


def test_async_connection(server, table):
    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(server.conninfo(),
                                                         autocommit=True) as conn:
            await conn.execute(f"CREATE TABLE {table} (id int4, v vector(2))")
            async with conn.cursor() as cur:
                await cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)",
                                      [(i, f"[{i},0]") for i in range(10)])
                await cur.execute(f"SELECT id FROM {table} ORDER BY v <-> %s LIMIT 2",
                                  ("[3.1,0]",))
                assert await cur.fetchall() == [(3,), (4,)]
            cur = conn.cursor(binary=True)
            await cur.execute(f"SELECT count(*) FROM {table} WHERE id > %s", (4,))
            assert await cur.fetchone() == (5,)
            with pytest.raises(errors.UndefinedColumn):
                await conn.execute(f"SELECT nope FROM {table}")

            async def cancel_soon() -> None:
                await asyncio.sleep(0.3)
                conn.cancel()

            task = asyncio.ensure_future(cancel_soon())
            with pytest.raises(errors.QueryCanceled):
                await conn.execute("SELECT pg_sleep(20)")
            await task

    asyncio.run(main())
