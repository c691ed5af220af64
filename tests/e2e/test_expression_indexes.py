"""Expression indexes through the real server, as pgvector documents them: an HNSW (and
IVFFlat) index on `embedding::halfvec(n)` used by `ORDER BY embedding::halfvec(n) <-> q LIMIT k`,
and binary quantization with re-ranking (`binary_quantize(embedding)::bit(n)` with
bit_hamming_ops, kept per segment as packed bits and scanned exactly by popcount). Recall and
exactly-k against
`SET enable_indexscan = off` ground truth, EXPLAIN, catalogs, psql's `\\d`, pg_dump, restart
and compaction.

3,000 clustered rows (16 dimensions, 20 clusters) in one sealed segment.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import psycopg
import pytest

from tests.e2e.conftest import clustered, explain, ids, start_server, vector_text
from tests.e2e.test_pg_dump import pg_dump_binary

PSQL = shutil.which("psql")
DIM, ROWS, CLUSTERS = 16, 3_000, 20
HALF = f"embedding::halfvec({DIM})"
SEARCH = f"SELECT id FROM items ORDER BY {HALF} <-> %s::halfvec({DIM}) LIMIT 10"
RERANK = (f"SELECT id FROM (SELECT * FROM items ORDER BY binary_quantize(embedding)::bit({DIM}) "
          "<~> binary_quantize(%s::vector) LIMIT 20) s ORDER BY embedding <=> %s::vector LIMIT 5")


def dataset() -> tuple[np.ndarray, np.ndarray]:
    """Rows, then 20 queries from the same clusters that are not rows."""
    return clustered(ROWS, 20, DIM, CLUSTERS, seed=7)


def exact(conn: psycopg.Connection, sql: str, *params) -> list[int]:
    conn.execute("SET enable_indexscan = off")
    try:
        return ids(conn, sql, *params)
    finally:
        conn.execute("RESET enable_indexscan")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("exprindex")
    state = {"server": start_server(work / "s0"), "work": work}
    rows, _ = dataset()
    with psycopg.connect(state["server"].conninfo(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE items (id int8 PRIMARY KEY, cat int, embedding vector({DIM}))")
        with conn.cursor().copy("COPY items (id, cat, embedding) FROM STDIN") as copy:
            for i, row in enumerate(rows):
                copy.write_row((i, i % 10, vector_text(row)))
        conn.execute(f"CREATE INDEX items_half ON items USING hnsw (({HALF}) halfvec_l2_ops)")
        conn.execute(f"CREATE INDEX items_bits ON items USING hnsw "
                     f"((binary_quantize(embedding)::bit({DIM})) bit_hamming_ops)")
    yield state
    assert state["server"].stop() == 0, state["server"].log()
    assert "Traceback" not in state["server"].log(), state["server"].log()


@pytest.fixture
def conn(server):
    with psycopg.connect(server["server"].conninfo(), autocommit=True) as c:
        yield c


def test_halfvec_expression_index_is_used_with_recall_against_ground_truth(conn):
    _, queries = dataset()
    plan = explain(conn, SEARCH, vector_text(queries[0]))
    assert "Vector Top-K on items" in plan and "Index: items_half" in plan, plan
    assert f"Order By: (embedding)::halfvec({DIM}) <->" in plan, plan
    assert "hnsw candidates=" in plan, plan
    hits = total = 0
    for q in queries:
        got = ids(conn, SEARCH, vector_text(q))
        truth = exact(conn, SEARCH, vector_text(q))
        assert len(got) == 10 and len(truth) == 10
        hits += len(set(got) & set(truth))
        total += 10
    assert hits / total >= 0.95


def test_ground_truth_is_the_exact_halfvec_distance(conn):
    rows, queries = dataset()
    q = queries[1]
    conn.execute("SET enable_indexscan = off")
    plan = explain(conn, SEARCH, vector_text(q))
    assert "exact" in plan and "hnsw candidates" not in plan, plan
    got = conn.execute(f"SELECT id, {HALF} <-> %s::halfvec({DIM}) FROM items ORDER BY 2, 1 "
                       "LIMIT 10", (vector_text(q),)).fetchall()
    conn.execute("RESET enable_indexscan")
    half, qh = rows.astype(np.float16).astype(np.float64), q.astype(np.float16).astype(np.float64)
    dist = np.sqrt(((half - qh) ** 2).sum(axis=1))
    assert [r[0] for r in got] == np.lexsort((np.arange(ROWS), dist))[:10].tolist()


@pytest.mark.parametrize("where", ["cat = 3", "cat = 3 AND id < 400", "id = 17"])
def test_exactly_k_rows_under_filters(conn, where):
    _, queries = dataset()
    sql = (f"SELECT id FROM items WHERE {where} ORDER BY {HALF} <-> %s::halfvec({DIM}) "
           "LIMIT 10")
    got = ids(conn, sql, vector_text(queries[2]))
    truth = exact(conn, sql, vector_text(queries[2]))
    assert len(got) == len(truth) == min(10, len(truth))
    assert len(set(got) & set(truth)) >= 0.9 * len(truth)


def test_growing_rows_are_searched_exactly_beside_the_index(conn):
    _, queries = dataset()
    q = queries[3]
    conn.execute("INSERT INTO items VALUES (100000, 1, %s)", (vector_text(q),))
    try:
        plan = explain(conn, SEARCH, vector_text(q))
        assert "growing: exact" in plan, plan
        assert ids(conn, SEARCH, vector_text(q))[0] == 100000
    finally:
        conn.execute("DELETE FROM items WHERE id = 100000")


def test_binary_quantize_and_rerank_as_pgvector_documents(conn):
    rows, queries = dataset()
    for q in queries[:5]:
        got = ids(conn, RERANK, vector_text(q), vector_text(q))
        assert got == exact(conn, RERANK, vector_text(q), vector_text(q))
        assert len(got) == 5
    plan = explain(conn, RERANK, vector_text(queries[0]), vector_text(queries[0]))
    # Bits are answered from the index's packed bits by an exact popcount scan: the plan says so.
    assert "Index: items_bits" in plan and "packed_bits" in plan, plan
    assert "exact popcount scan of 3000 packed keys" in plan, plan
    # The re-ranked answers are the cosine nearest among the 20 nearest in Hamming distance.
    q = queries[0]
    bits = rows > 0
    hamming = (bits != (q > 0)).sum(axis=1)
    candidates = np.lexsort((np.arange(ROWS), hamming))[:20]
    cos = 1 - (rows[candidates] @ q) / (np.linalg.norm(rows[candidates], axis=1)
                                         * np.linalg.norm(q))
    expected = candidates[np.argsort(cos, kind="stable")][:5]
    # Ties at the 20th Hamming distance may pick other rows: compare where there are none.
    if hamming[candidates[-1]] != hamming[np.lexsort((np.arange(ROWS), hamming))[20]]:
        assert ids(conn, RERANK, vector_text(q), vector_text(q)) == expected.tolist()


def test_catalogs_show_the_expressions_as_postgresql(conn, server):
    assert conn.execute(
        "SELECT indexrelid::regclass::text, indkey::text, indexprs IS NOT NULL, "
        "pg_get_indexdef(indexrelid), pg_get_indexdef(indexrelid, 1, true) FROM pg_index "
        "WHERE indrelid = 'items'::regclass AND NOT indisprimary ORDER BY 1").fetchall() == [
        ("items_bits", "0", True,
         f"CREATE INDEX items_bits ON public.items USING hnsw "
         f"(((binary_quantize(embedding))::bit({DIM})) bit_hamming_ops)",
         f"(binary_quantize(embedding)::bit({DIM}))"),
        ("items_half", "0", True,
         f"CREATE INDEX items_half ON public.items USING hnsw "
         f"(((embedding)::halfvec({DIM})) halfvec_l2_ops)", f"({HALF})")]
    assert conn.execute("SELECT indexname, state, rows_indexed, rows_total FROM sqlvec_indexes "
                        "WHERE tablename = 'items' ORDER BY indexname").fetchall() == [
        ("items_bits", "ready", ROWS, ROWS), ("items_half", "ready", ROWS, ROWS)]
    if PSQL is None:
        return
    out = subprocess.run([PSQL, "-X", "-h", "127.0.0.1", "-p", str(server["server"].port), "-U",
                          "postgres", "-d", "postgres", "-P", "pager=off", "-c", r"\d items"],
                         capture_output=True, text=True, timeout=60)
    assert f'    "items_half" hnsw (({HALF}) halfvec_l2_ops)' in out.stdout, out.stdout
    assert (f'    "items_bits" hnsw ((binary_quantize(embedding)::bit({DIM})) bit_hamming_ops)'
            in out.stdout), out.stdout


def test_errors_as_postgresql(conn):
    cases = [
        (f"CREATE INDEX ON items USING hnsw (({HALF}) vector_l2_ops)", "42804",
         'operator class "vector_l2_ops" does not accept data type halfvec'),
        (f"CREATE INDEX ON items USING hnsw (({HALF}))", "42704",
         'data type halfvec has no default operator class for access method "hnsw"'),
        ("CREATE INDEX ON items ((cat + random()))", "42P17",
         "functions in index expression must be marked IMMUTABLE"),
        ("CREATE INDEX ON items USING hnsw ((nope::halfvec(3)) halfvec_l2_ops)", "42703",
         'column "nope" does not exist'),
        ("CREATE INDEX ON items USING hnsw ((embedding::halfvec(4)) halfvec_l2_ops)", "22000",
         f"expected 4 dimensions, not {DIM}"),
    ]
    for sql, state, message in cases:
        with pytest.raises(psycopg.Error) as err:
            conn.execute(sql)
        assert (err.value.sqlstate, err.value.diag.message_primary) == (state, message), sql


def test_scalar_expression_index_is_recorded_and_dumped(conn, server):
    conn.execute("CREATE TABLE notes (id int, category text)")
    try:
        conn.execute("CREATE INDEX ON notes ((lower(category)))")
        assert conn.execute("SELECT pg_get_indexdef('notes_lower_idx'::regclass)").fetchone() \
            == ("CREATE INDEX notes_lower_idx ON public.notes USING btree (lower(category))",)
        dump = subprocess.run([pg_dump_binary(), "--table", "public.items", "--table",
                               "public.notes", server["server"].conninfo()],
                              capture_output=True, text=True, timeout=120)
        assert dump.returncode == 0, dump.stderr
        assert ("CREATE INDEX notes_lower_idx ON public.notes USING btree (lower(category));"
                in dump.stdout)
        assert (f"CREATE INDEX items_half ON public.items USING hnsw "
                f"(((embedding)::halfvec({DIM})) halfvec_l2_ops);" in dump.stdout)
        # pg_dump's text restores: the expression as PostgreSQL prints it parses back.
        conn.execute("DROP INDEX notes_lower_idx")
        conn.execute("CREATE INDEX notes_lower_idx ON public.notes USING btree (lower(category))")
        conn.execute("CREATE INDEX notes_half ON public.items USING hnsw "
                     f"(((embedding)::halfvec({DIM})) halfvec_l2_ops)")
        assert conn.execute("SELECT pg_get_indexdef('notes_half'::regclass, 1, true)") \
            .fetchone() == (f"({HALF})",)
    finally:
        conn.execute("DROP INDEX IF EXISTS notes_half")
        conn.execute("DROP TABLE notes")


def test_a_restart_keeps_the_expression_index(server):
    _, queries = dataset()
    with psycopg.connect(server["server"].conninfo(), autocommit=True) as c:
        before = [ids(c, SEARCH, vector_text(q)) for q in queries[:5]]
    old = server["server"]
    assert old.stop() == 0, old.log()
    server["server"] = start_server(server["work"] / "s1", data_dir=old.data_dir)
    with psycopg.connect(server["server"].conninfo(), autocommit=True) as c:
        assert [ids(c, SEARCH, vector_text(q)) for q in queries[:5]] == before
        plan = explain(c, SEARCH, vector_text(queries[0]))
        assert "Index: items_half" in plan and "hnsw candidates=" in plan, plan


def test_compaction_rebuilds_the_expression_index(tmp_path):
    from sqlvec.database import Database
    from sqlvec.storage.hnsw import HnswIndex
    from sqlvec.storage.store import StoreOptions

    rows, queries = dataset()
    with Database.open(str(tmp_path), options=StoreOptions(seal_rows=500,
                                                           background=False)) as db:
        s = db.connect()
        s.execute_one(f"CREATE TABLE items (id int8 PRIMARY KEY, embedding vector({DIM}))")
        s.execute_one(f"CREATE INDEX items_half ON items USING hnsw (({HALF}) "
                      "halfvec_cosine_ops)")
        t = db.table("items")
        for lo in range(0, 2_000, 500):
            t.insert({"id": np.arange(lo, lo + 500), "embedding": rows[lo:lo + 500]})
        assert len(t.snapshot().sealed) == 4
        s.execute_one("DELETE FROM items WHERE id % 10 = 0")
        assert t.compact() == 1
        (view,) = t.snapshot().sealed
        index = view.data.index("items_half")
        assert isinstance(index, HnswIndex) and index.indexed_count == 1_800
        q = vector_text(queries[0])
        sql = f"SELECT id FROM items ORDER BY {HALF} <=> '{q}' LIMIT 5"
        plan = "\n".join(r[0] for r in s.execute_one("EXPLAIN " + sql).rows())
        assert f"segment {view.data.id}: hnsw candidates=1800/1800 k=5" in plan, plan
        got = [r[0] for r in s.execute_one(sql).rows()]
        s.execute_one("SET enable_indexscan = off")
        assert got == [r[0] for r in s.execute_one(sql).rows()]


def test_ivfflat_on_the_same_expression(conn):
    _, queries = dataset()
    conn.execute(f"CREATE INDEX items_half_ivf ON items USING ivfflat (({HALF}) "
                 "halfvec_cosine_ops) WITH (lists = 20)")
    try:
        conn.execute("SET ivfflat.probes = 5")
        sql = f"SELECT id FROM items ORDER BY {HALF} <=> %s::halfvec({DIM}) LIMIT 10"
        plan = explain(conn, sql, vector_text(queries[4]))
        assert "Index: items_half_ivf" in plan and "ivfflat candidates=" in plan, plan
        hits = 0
        for q in queries[:10]:
            got = ids(conn, sql, vector_text(q))
            assert len(got) == 10
            hits += len(set(got) & set(exact(conn, sql, vector_text(q))))
        assert hits / 100 >= 0.9
        assert conn.execute("SELECT state, rows_indexed FROM sqlvec_indexes WHERE indexname = "
                            "'items_half_ivf'").fetchall() == [("ready", ROWS)]
    finally:
        conn.execute("RESET ivfflat.probes")
        conn.execute("DROP INDEX items_half_ivf")
