"""Indexes on bit and sparsevec columns through the real server: packed bits (bit_index.py)
and inverted lists (sparse_index.py) per sealed segment, used by `ORDER BY col <op> q LIMIT k`.
Exactly k rows under filters with the distances of a NumPy brute force, the growing segment
searched beside them, deletes honoured, EXPLAIN, `sqlvec_indexes`, restart and compaction."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from tests.e2e.conftest import explain, start_server

ROWS, BITS, DIMS, NNZ = 3_000, 64, 200, 10
WHERES = ["", "WHERE cat = 3", "WHERE id < 40", "WHERE cat = 3 AND id % 7 = 0"]


def data(seed: int = 11):
    rng = np.random.default_rng(seed)
    bits = rng.random((ROWS, BITS)) < 0.4
    indices = np.stack([np.sort(rng.choice(np.arange(1, DIMS + 1), NNZ, replace=False))
                        for _ in range(ROWS)])
    values = np.round(rng.standard_normal((ROWS, NNZ)), 3).astype(np.float32)
    values[values == 0] = 0.5
    return bits, indices, values


def bit_text(row) -> str:
    return "".join("1" if x else "0" for x in row)


def sparse_text(indices, values) -> str:
    return "{" + ",".join(f"{int(i)}:{float(v)!r}" for i, v in zip(indices, values)) + \
        f"}}/{DIMS}"


def dense(indices, values) -> np.ndarray:
    out = np.zeros(DIMS, np.float64)
    out[np.asarray(indices) - 1] = values
    return out


BITS_ROWS, SP_IDX, SP_VAL = data()
DENSE = np.stack([dense(i, v) for i, v in zip(SP_IDX, SP_VAL)])
Q_BITS = np.random.default_rng(2).random(BITS) < 0.4
Q_IDX, Q_VAL = np.array([3, 17, 40, 99, 150, 151]), np.array([0.5, -1.25, 2.0, 0.75, -0.5, 1.0])


def brute(op: str, where: np.ndarray) -> np.ndarray:
    """Every matching row's distance, as pgvector defines it (float64)."""
    if op == "<~>":
        d = (BITS_ROWS != Q_BITS).sum(axis=1).astype(np.float64)
    elif op == "<%>":
        both = (BITS_ROWS & Q_BITS).sum(axis=1)
        union = (BITS_ROWS | Q_BITS).sum(axis=1)
        d = np.where(both == 0, 1.0, 1.0 - both / np.maximum(union, 1))
    else:
        q = dense(Q_IDX, Q_VAL)
        d = -(DENSE @ q) if op == "<#>" else np.sqrt(((DENSE - q) ** 2).sum(axis=1))
    return d[where]


def mask_of(where: str) -> np.ndarray:
    ids = np.arange(ROWS)
    cat = ids % 5
    return {"": np.ones(ROWS, bool), "WHERE cat = 3": cat == 3, "WHERE id < 40": ids < 40,
            "WHERE cat = 3 AND id % 7 = 0": (cat == 3) & (ids % 7 == 0)}[where]


def query_of(op: str) -> str:
    return f"'{bit_text(Q_BITS)}'" if op in ("<~>", "<%>") else \
        f"'{sparse_text(Q_IDX, Q_VAL)}'::sparsevec"


def column_of(op: str) -> str:
    return "b" if op in ("<~>", "<%>") else "s"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("bitsparse")
    state = {"server": start_server(work / "s0"), "work": work}
    with psycopg.connect(state["server"].conninfo(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE items (id int8 PRIMARY KEY, cat int, b bit({BITS}), "
                     f"s sparsevec({DIMS}))")
        with conn.cursor().copy("COPY items (id, cat, b, s) FROM STDIN") as copy:
            for i in range(ROWS):
                copy.write_row((i, i % 5, bit_text(BITS_ROWS[i]), sparse_text(SP_IDX[i],
                                                                              SP_VAL[i])))
        conn.execute("CREATE INDEX items_hamming ON items USING hnsw (b bit_hamming_ops)")
        conn.execute("CREATE INDEX items_jaccard ON items USING hnsw (b bit_jaccard_ops)")
        conn.execute("CREATE INDEX items_ip ON items USING hnsw (s sparsevec_ip_ops)")
        conn.execute("CREATE INDEX items_l2 ON items USING hnsw (s sparsevec_l2_ops)")
    yield state
    assert state["server"].stop() == 0, state["server"].log()
    assert "Traceback" not in state["server"].log(), state["server"].log()


@pytest.fixture()
def conn(server):
    with psycopg.connect(server["server"].conninfo(), autocommit=True) as c:
        yield c


def search(conn, op: str, where: str, k: int) -> list[tuple[int, float]]:
    col = column_of(op)
    q = query_of(op)
    return conn.execute(f"SELECT id, {col} {op} {q} FROM items {where} "
                        f"ORDER BY {col} {op} {q} LIMIT {k}").fetchall()


@pytest.mark.parametrize("op", ["<~>", "<%>", "<#>", "<->"])
@pytest.mark.parametrize("where", WHERES)
def test_exactly_k_rows_with_the_exact_distances_under_filters(conn, op, where):
    want = np.sort(brute(op, mask_of(where)))
    got = search(conn, op, where, 10)
    assert len(got) == min(10, want.size)
    assert np.allclose([d for _, d in got], want[:10], rtol=1e-6, atol=1e-6)
    # Each returned id's distance is its own (not another row's).
    exact = brute(op, np.ones(ROWS, bool))
    assert np.allclose([exact[i] for i, _ in got], [d for _, d in got], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op,index,structure,detail", [
    ("<~>", "items_hamming", "packed_bits", "exact popcount scan of 3000 packed keys"),
    ("<%>", "items_jaccard", "packed_bits", "exact popcount scan of 3000 packed keys"),
    ("<#>", "items_ip", "inverted", "exact inverted-list scan of 3000 rows"),
])
def test_explain_names_the_index_and_what_it_does(conn, op, index, structure, detail):
    col, q = column_of(op), query_of(op)
    sql = f"SELECT id FROM items WHERE cat = 3 ORDER BY {col} {op} {q} LIMIT 5"
    plan = explain(conn, sql.replace("%", "%%"))  # psycopg placeholders
    assert f"Index: {index}" in plan, plan
    assert f"{structure} candidates=600/3000 k=5 {detail}" in plan, plan


def test_sqlvec_indexes_lists_every_segment_ready(conn):
    got = conn.execute("SELECT indexname, state, rows_indexed, rows_total FROM sqlvec_indexes "
                       "WHERE tablename = 'items' ORDER BY indexname").fetchall()
    assert got == [(name, "ready", ROWS, ROWS) for name in
                   ("items_hamming", "items_ip", "items_jaccard", "items_l2")]


def test_growing_rows_and_deletes(conn):
    conn.execute("CREATE TABLE g (id int8 PRIMARY KEY, b bit(8), s sparsevec(5))")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO g VALUES (%s, %s, %s)",
                        [(i, format(i % 256, "08b"), f"{{{i % 5 + 1}:{i}}}/5")
                         for i in range(1, 301)])
    conn.execute("CREATE INDEX g_b ON g USING hnsw (b bit_hamming_ops)")
    conn.execute("CREATE INDEX g_s ON g USING hnsw (s sparsevec_ip_ops)")
    # Nearest by Hamming to 11111111: id 255; by inner product with {5:1}: the largest i with
    # i % 5 = 4, 299.
    top_b = "SELECT id FROM g ORDER BY b <~> '11111111' LIMIT 2"
    top_s = "SELECT id FROM g ORDER BY s <#> '{5:1}/5' LIMIT 2"
    assert [r[0] for r in conn.execute(top_b)] [0] == 255
    assert [r[0] for r in conn.execute(top_s)][0] == 299
    conn.execute("DELETE FROM g WHERE id IN (255, 299)")
    assert 255 not in [r[0] for r in conn.execute(top_b)]
    assert [r[0] for r in conn.execute(top_s)][0] == 294
    conn.execute("INSERT INTO g VALUES (1000, '11111111', '{5:1000}/5')")  # growing segment
    assert [r[0] for r in conn.execute(top_b)][0] == 1000
    assert [r[0] for r in conn.execute(top_s)][0] == 1000
    plan = explain(conn, top_s)
    assert "inverted candidates=" in plan and "growing: exact candidates=1/1" in plan, plan
    # Uncommitted writes of the transaction itself are searched too (an exact scan of what it
    # sees), then gone after ROLLBACK.
    with conn.transaction(force_rollback=True):
        conn.execute("INSERT INTO g VALUES (2000, '11111111', '{5:5000}/5')")
        conn.execute("DELETE FROM g WHERE id = 1000")
        got = [r[0] for r in conn.execute(top_b)]
        assert got[0] == 2000 and 1000 not in got
        assert [r[0] for r in conn.execute(top_s)] == [2000, 294]
    assert [r[0] for r in conn.execute(top_s)][0] == 1000
    with pytest.raises(psycopg.errors.DataException, match="different bit lengths 8 and 3"):
        conn.execute("SELECT id FROM g ORDER BY b <~> '101' LIMIT 1").fetchall()
    with pytest.raises(psycopg.errors.DataException,
                       match="different sparsevec dimensions 5 and 9"):
        conn.execute("SELECT id FROM g ORDER BY s <#> '{1:1}/9' LIMIT 1").fetchall()
    conn.execute("DROP TABLE g")


def test_a_restart_loads_the_saved_structures(server):
    with psycopg.connect(server["server"].conninfo(), autocommit=True) as c:
        before = {op: search(c, op, "WHERE cat = 3", 10) for op in ("<~>", "<#>")}
    old = server["server"]
    assert old.stop() == 0, old.log()
    server["server"] = start_server(server["work"] / "s1", data_dir=old.data_dir)
    with psycopg.connect(server["server"].conninfo(), autocommit=True) as c:
        assert {op: search(c, op, "WHERE cat = 3", 10) for op in ("<~>", "<#>")} == before
        plan = explain(c, f"SELECT id FROM items ORDER BY b <~> {query_of('<~>')} LIMIT 5")
        assert "packed_bits candidates=3000/3000" in plan, plan


def test_compaction_rebuilds_the_structures(tmp_path):
    from sqlvec.database import Database
    from sqlvec.storage.bit_index import PackedBitsIndex
    from sqlvec.storage.sparse_index import SparseInvertedIndex
    from sqlvec.storage.store import StoreOptions

    with Database.open(str(tmp_path), options=StoreOptions(seal_rows=500,
                                                           background=False)) as db:
        s = db.connect()
        s.execute_one(f"CREATE TABLE items (id int8 PRIMARY KEY, b bit({BITS}), "
                      f"s sparsevec({DIMS}))")
        s.execute_one("CREATE INDEX items_b ON items USING hnsw (b bit_hamming_ops)")
        s.execute_one("CREATE INDEX items_s ON items USING hnsw (s sparsevec_l2_ops)")
        for lo in range(0, 2_000, 500):
            values = ", ".join(f"({i}, '{bit_text(BITS_ROWS[i])}', "
                               f"'{sparse_text(SP_IDX[i], SP_VAL[i])}')"
                               for i in range(lo, lo + 500))
            s.execute_one(f"INSERT INTO items VALUES {values}")
        t = db.table("items")
        assert len(t.snapshot().sealed) == 4
        s.execute_one("DELETE FROM items WHERE id % 10 = 0")
        assert t.compact() == 1
        (view,) = t.snapshot().sealed
        bits, sparse = view.data.index("items_b"), view.data.index("items_s")
        assert isinstance(bits, PackedBitsIndex) and bits.indexed_count == 1_800
        assert isinstance(sparse, SparseInvertedIndex) and sparse.indexed_count == 1_800
        for op in ("<~>", "<->"):
            col, q = column_of(op), query_of(op)
            sql = f"SELECT id FROM items ORDER BY {col} {op} {q} LIMIT 5"
            got = [r[0] for r in s.execute_one(sql).rows()]
            assert all(i % 10 != 0 for i in got)
            where = (np.arange(ROWS) < 2_000) & (np.arange(ROWS) % 10 != 0)
            want = np.sort(brute(op, where))[:5]
            dists = [r[0] for r in s.execute_one(
                f"SELECT {col} {op} {q} FROM items ORDER BY {col} {op} {q} LIMIT 5").rows()]
            assert np.allclose(dists, want, rtol=1e-6, atol=1e-6)
