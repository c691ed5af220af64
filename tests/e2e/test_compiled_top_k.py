"""The prepared vector top-k served again and again by a worker (`serve --workers 2`, psycopg,
the vector in binary through pgvector's adapter and as text): each run answers for the table
and the session as they are then — a row committed by a connection of the other worker found
by the very next run, a deleted one gone, a new hnsw.ef_search used — with the rows the
primary gives inside a transaction block, and every run counted in pg_stat_statements. A
repeated one-row statement over no table (`SELECT %s::int`) is compiled too, its row
computed in Python."""

from __future__ import annotations

import time

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg.types.string import TextLoader

from tests.e2e.conftest import RunningServer, serve_while_used, vector_text
from tests.e2e.test_workers import worker_of

DIM = 8
STATEMENTS = {  # form -> (SQL, the vector as its parameter)
    "binary": ("SELECT id FROM {table} ORDER BY emb {op} %s LIMIT 5", lambda v: v),
    "text": ("SELECT id FROM {table} ORDER BY emb {op} %s::vector LIMIT 5", vector_text),
}


@pytest.fixture(scope="module")
def pool_server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    yield from serve_while_used(tmp_path_factory, "sqlvec-compiled", "--workers", "2")


def connect(server: RunningServer) -> psycopg.Connection:
    conn = psycopg.connect(server.conninfo(), autocommit=True)
    register_vector(conn)
    return conn


def other_worker(server: RunningServer, conn: psycopg.Connection) -> psycopg.Connection:
    for _ in range(8):
        other = connect(server)
        if worker_of(other) != worker_of(conn):
            return other
        other.close()
    pytest.fail("every connection landed on the same worker")


def vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def make_table(conn: psycopg.Connection, table: str) -> None:
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, emb vector({DIM}))")
    with conn.cursor().copy(f"COPY {table} (id, emb) FROM STDIN") as copy:
        for i, v in enumerate(vectors(400, 5)):
            copy.write_row((i, vector_text(v)))
    for opclass in ("vector_l2_ops", "vector_ip_ops", "vector_cosine_ops"):
        conn.execute(f"CREATE INDEX ON {table} USING hnsw (emb {opclass})")


@pytest.mark.parametrize("form", ["binary", "text"])
@pytest.mark.parametrize("op", ["<->", "<#>", "<=>"])
def test_repeated_top_k_follows_commits_settings_and_blocks(pool_server, table, form, op):
    with connect(pool_server) as a:
        make_table(a, table)
        with other_worker(pool_server, a) as b:
            sql, param = STATEMENTS[form]
            sql = sql.format(table=table, op=op)

            def run(q: np.ndarray) -> list[int]:
                return [r[0] for r in a.execute(sql, (param(q),), prepare=True).fetchall()]

            def in_block(q: np.ndarray) -> list[int]:
                with a.transaction():  # answered by the primary, through the operator tree
                    return [r[0] for r in a.execute(sql, (param(q),)).fetchall()]

            queries = vectors(6, 9)
            for q in queries:
                assert run(q) == run(q) == in_block(q)
            q = queries[0]
            nearest = q * 100 if op == "<#>" else q  # (the largest inner product is nearest)
            b.execute(f"INSERT INTO {table} VALUES (1000, %s)", (vector_text(nearest),))
            assert run(q)[0] == 1000  # committed on the other worker: seen by the next run
            b.execute(f"DELETE FROM {table} WHERE id = 1000")
            assert 1000 not in run(q)
            a.execute("SET hnsw.ef_search = 1")  # a knob that changes the answers
            for q in queries:
                assert run(q) == in_block(q)
            a.execute("RESET hnsw.ef_search")


def test_every_run_is_counted_in_pg_stat_statements(pool_server, table):
    with connect(pool_server) as a:
        a.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        make_table(a, table)
        sql = f"SELECT id FROM {table} ORDER BY emb <-> %s LIMIT 5"
        a.execute("SET hnsw.ef_search = 100")  # (a knob: no NOTICE of a recall target missed)
        a.execute("SELECT pg_stat_statements_reset()")
        for q in vectors(25, 3):
            assert len(a.execute(sql, (q,), prepare=True).fetchall()) == 5
        counted = ("SELECT calls, rows FROM pg_stat_statements "
                   f"WHERE query LIKE '%FROM {table} ORDER BY%'")
        deadline = time.monotonic() + 20
        while (got := a.execute(counted).fetchall()) != [(25, 125)] \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got == [(25, 125)]


def settled(conn: psycopg.Connection, sql: str, expected: object) -> object:
    """`sql`'s rows once they equal `expected` (workers report their counters a little
    later), or as they are after 20 s."""
    deadline = time.monotonic() + 20
    while (got := conn.execute(sql).fetchall()) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


def test_distances_index_scans_and_explain_are_the_general_paths(pool_server, table):
    with connect(pool_server) as a:
        make_table(a, table)
        sql = f"SELECT id, emb <-> %(v)s AS d FROM {table} ORDER BY emb <-> %(v)s LIMIT 5"
        explain = a.execute(f"EXPLAIN SELECT id FROM {table} ORDER BY emb <-> "
                            f"'{vector_text(vectors(1, 1)[0])}' LIMIT 5").fetchall()
        scans = f"SELECT idx_scan FROM pg_stat_user_tables WHERE relname = '{table}'"
        before = a.execute(scans).fetchone()[0]
        queries = vectors(8, 13)
        for binary in (False, True):
            for q in queries:
                compiled = a.cursor(binary=binary).execute(sql, {"v": q}, prepare=True).fetchall()
                with a.transaction():  # the operator tree, on the primary
                    general = a.cursor(binary=binary).execute(sql, {"v": q}).fetchall()
                assert compiled == general and len(compiled) == 5
        # every run, compiled or not, is one scan of the index
        assert settled(a, scans, [(before + 4 * len(queries),)]) == [(before + 4 * len(queries),)]
        assert a.execute(f"EXPLAIN SELECT id FROM {table} ORDER BY emb <-> "
                         f"'{vector_text(vectors(1, 1)[0])}' LIMIT 5").fetchall() == explain


def test_a_lone_graphs_search_follows_knobs_exactness_and_the_index(pool_server, table):
    # One sealed segment with its graph: a worker runs the planned search again for each
    # repeat (TableSnapshot.search_lone) and must still follow a knob, exactness and the
    # graph's drop, answering as NumPy's exact order once the search is exact.
    rows = vectors(400, 5)
    with connect(pool_server) as a:
        a.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, emb vector({DIM}))")
        with a.cursor().copy(f"COPY {table} (id, emb) FROM STDIN") as copy:
            for i, v in enumerate(rows):
                copy.write_row((i, vector_text(v)))
        a.execute(f"CREATE INDEX {table}_graph ON {table} USING hnsw (emb vector_l2_ops)")
        sql = f"SELECT id FROM {table} ORDER BY emb <-> %s LIMIT 5"
        queries = vectors(12, 21)

        def run() -> list[list[int]]:
            return [[r[0] for r in a.execute(sql, (q,), prepare=True).fetchall()]
                    for q in queries]

        exact = [np.argsort(((rows - q) ** 2).sum(axis=1), kind="stable")[:5].tolist()
                 for q in queries]
        a.execute("SET hnsw.ef_search = 1")
        coarse = run()
        assert run() == coarse and coarse != exact  # (ef 1 misses some of the nearest)
        a.execute("SET sqlvec.exact = on")
        assert run() == exact
        a.execute("RESET sqlvec.exact")
        assert run() == coarse
        a.execute(f"DROP INDEX {table}_graph")
        assert run() == exact



def test_a_repeat_with_a_bad_vector_fails_as_the_primary_and_the_next_answers(
        pool_server, table):
    """Repeats of a compiled top-k are taken from the receive buffer: one whose vector does not
    decode (wrong dimensions, NaN) gets the error the primary gives it (in a block), and
    leaves the connection idle; the next repeats are answered as before."""
    with connect(pool_server) as a:
        make_table(a, table)
        sql = f"SELECT id FROM {table} ORDER BY emb <-> %s LIMIT 5"
        queries = vectors(3, 11)

        def run_all() -> list[list[int]]:
            return [[r[0] for r in a.execute(sql, (q,), prepare=True).fetchall()]
                    for q in queries]

        first = run_all()
        nan = np.ones(DIM, dtype=np.float32)
        nan[2] = np.nan
        for vector in (np.ones(DIM - 3, dtype=np.float32), nan):
            with pytest.raises(psycopg.Error) as here:
                a.execute(sql, (vector,), prepare=True)
            assert a.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            with pytest.raises(psycopg.Error) as primary, a.transaction():
                a.execute(sql, (vector,))
            assert (here.value.sqlstate, str(here.value)) == \
                (primary.value.sqlstate, str(primary.value))
            assert here.value.sqlstate == "22000"
            assert run_all() == first


def test_the_next_repeat_after_terminate_meets_the_error(pool_server, table):
    """A repeat taken straight to its compiled top-k asks whether the primary spoke first only
    when its answer settles: the primary's FATAL still comes first, every time."""
    with connect(pool_server) as admin:
        make_table(admin, table)
        sql = f"SELECT id FROM {table} ORDER BY emb <-> %s LIMIT 5"
        q = vectors(1, 4)[0]
        for _ in range(10):
            victim = connect(pool_server)
            for _ in range(3):  # prepared, then repeated
                assert len(victim.execute(sql, (q,), prepare=True).fetchall()) == 5
            admin.execute("SELECT pg_terminate_backend(%s)", [victim.info.backend_pid])
            with pytest.raises(psycopg.errors.AdminShutdown):
                victim.execute(sql, (q,), prepare=True)
            victim.close()


def test_a_repeated_one_row_statement_answers_as_the_primary(pool_server):
    """`SELECT %s::int` and its kin, prepared and repeated: a worker computes the row in
    Python (its compiled round trip taken from the receive buffer) and answers as the
    primary does inside a block, values, NULL and the overflow error alike; every run is
    counted in pg_stat_statements."""
    with connect(pool_server) as a:
        a.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        a.execute("SELECT pg_stat_statements_reset()")
        cases = [("SELECT %s::int + 1", v) for v in (1, 2, -40000, 2**31 - 1, 2**40, None, 5)]
        cases += [("SELECT %s::text, %s::int * 2", ("é", v)) for v in (3, 2**30, 4)]
        for sql, value in cases:
            params = value if isinstance(value, tuple) else (value,)
            try:
                here = a.execute(sql, params, prepare=True).fetchall()
            except psycopg.Error as error:
                here = (error.sqlstate, str(error))
            assert a.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            try:
                with a.transaction():
                    primary = a.execute(sql, params).fetchall()
            except psycopg.Error as error:
                primary = (error.sqlstate, str(error))
            assert here == primary
        assert here == [("é", 8)]
        # (five runs of it succeed, each here and in the primary; errors are not counted)
        counted = "SELECT calls FROM pg_stat_statements WHERE query LIKE 'SELECT $1::int + %'"
        assert settled(a, counted, [(10,)]) == [(10,)]


def test_a_one_row_statement_repeated_with_the_same_values_follows_its_settings(pool_server):
    """The same values again get the answer made of them last time only while nothing it
    depends on changed: a float8 written as extra_float_digits says, before, during and after
    SET, values alternating; every run counted."""
    with connect(pool_server) as a:
        a.adapters.register_loader("float8", TextLoader)  # the server's text, as written
        a.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        a.execute("SELECT pg_stat_statements_reset()")
        x, y = 0.1 + 0.2, 2.5
        runs = 0

        def run(value: float, prepare: bool = True) -> str:
            nonlocal runs
            runs += 1
            return a.execute("SELECT %s::float8 * 2", (value,),
                             prepare=prepare).fetchone()[0]

        shortest = [run(v) for v in (x, x, x, y, y, x, x)]
        assert shortest == ["0.6000000000000001"] * 3 + ["5"] * 2 + ["0.6000000000000001"] * 2
        a.execute("SET extra_float_digits = 0")
        assert [run(x) for _ in range(3)] + [run(y), run(x)] == ["0.6"] * 3 + ["5", "0.6"]
        a.execute("RESET extra_float_digits")
        assert [run(x) for _ in range(3)] == ["0.6000000000000001"] * 3
        # (each run's Parse sent too, as node-postgres does: the same answers, ParseComplete
        # first, between prepared runs and under a SET)
        assert [run(x, False) for _ in range(3)] + [run(x), run(x, False), run(y, False)] \
            == ["0.6000000000000001"] * 5 + ["5"]
        a.execute("SET extra_float_digits = 0")
        assert [run(x, False) for _ in range(3)] == ["0.6"] * 3
        a.execute("RESET extra_float_digits")
        counted = "SELECT calls FROM pg_stat_statements WHERE query LIKE 'SELECT $1::float8 * %'"
        assert settled(a, counted, [(runs,)]) == [(runs,)]


def test_a_top_k_parsed_again_each_run_follows_commits_and_schema_changes(pool_server, table):
    """psycopg without prepare (each run's Parse of the unnamed statement, as node-postgres
    sends it) in a worker: the answers the primary gives in a block, a commit of another
    worker seen by the next run, a dropped table's error, then the table made again."""
    with connect(pool_server) as a:
        make_table(a, table)
        with other_worker(pool_server, a) as b:
            sql = STATEMENTS["binary"][0].format(table=table, op="<->")

            def run(q: np.ndarray) -> list[int]:
                return [r[0] for r in a.execute(sql, (q,), prepare=False).fetchall()]

            def in_block(q: np.ndarray) -> list[int]:
                with a.transaction():
                    return [r[0] for r in a.execute(sql, (q,), prepare=False).fetchall()]

            queries = vectors(6, 13)
            for q in queries:
                assert run(q) == run(q) == in_block(q)
            b.execute(f"INSERT INTO {table} VALUES (1000, %s)", (vector_text(queries[0]),))
            assert run(queries[0])[0] == 1000
            b.execute(f"DROP TABLE {table}")
            with pytest.raises(psycopg.errors.UndefinedTable):
                run(queries[0])
            make_table(b, table)
            assert run(queries[1]) == in_block(queries[1])
