"""LATERAL top-k through psycopg: "the 5 nearest items of the same category per query row",
checked against brute force, each inner search taking the vector path (EXPLAIN ANALYZE says
which strategy ran, per search), LEFT JOIN LATERAL's NULL rows, and row-value IN over the
wire with parameters."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

ROWS, FRESH, DIM, K = 3_000, 200, 8, 5
CATEGORIES = 10
QUERIES = 12
EMPTY_CATEGORY = 99  # a query category no item has

TOPK = ("SELECT q.id, n.id, n.d FROM lat_queries q CROSS JOIN LATERAL ("
        "SELECT i.id, i.embedding <-> q.embedding AS d FROM lat_items i "
        "WHERE i.category = q.category ORDER BY i.embedding <-> q.embedding LIMIT {k}) n "
        "ORDER BY q.id, n.d, n.id")


def text(v: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def data() -> dict:
    rng = np.random.default_rng(7)
    items = rng.normal(size=(ROWS + FRESH, DIM)).astype(np.float32)
    cats = np.arange(ROWS + FRESH) % CATEGORIES
    queries = rng.normal(size=(QUERIES, DIM)).astype(np.float32)
    qcats = rng.integers(0, CATEGORIES, QUERIES)
    qcats[0] = EMPTY_CATEGORY
    return {"items": items, "cats": cats, "queries": queries, "qcats": qcats}


def brute_force(d: dict, q: int, k: int = K) -> list[int]:
    ids = np.flatnonzero(d["cats"] == d["qcats"][q])
    dist = np.sqrt(((d["items"][ids].astype(np.float64) - d["queries"][q]) ** 2).sum(1))
    return ids[np.lexsort((ids, dist))][:k].tolist()


@pytest.fixture(scope="module")
def conn(server):
    d = data()
    with psycopg.connect(server.conninfo(), autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS lat_items")
        c.execute("DROP TABLE IF EXISTS lat_queries")
        c.execute(f"CREATE TABLE lat_items (id int8 PRIMARY KEY, category int, "
                  f"embedding vector({DIM}))")
        c.execute(f"CREATE TABLE lat_queries (id int, category int, embedding vector({DIM}))")

        def load(lo: int, hi: int) -> None:
            with c.cursor().copy("COPY lat_items (id, category, embedding) FROM STDIN") as copy:
                for i in range(lo, hi):
                    copy.write_row((i, int(d["cats"][i]), text(d["items"][i])))

        load(0, ROWS)
        # The index seals what is loaded; later rows stay in the growing segment (exact).
        c.execute("CREATE INDEX ON lat_items USING hnsw (embedding vector_l2_ops)")
        load(ROWS, ROWS + FRESH)
        with c.cursor().copy("COPY lat_queries (id, category, embedding) FROM STDIN") as copy:
            for q in range(QUERIES):
                copy.write_row((q, int(d["qcats"][q]), text(d["queries"][q])))
        c.data = d  # type: ignore[attr-defined]
        yield c
        c.execute("DROP TABLE lat_items")
        c.execute("DROP TABLE lat_queries")


def test_top_k_per_query_row_equals_brute_force(conn):
    d = conn.data
    got: dict[int, list[int]] = {}
    for qid, iid, dist in conn.execute(TOPK.format(k=K)).fetchall():
        got.setdefault(qid, []).append(iid)
        assert dist == pytest.approx(float(np.linalg.norm(
            d["items"][iid].astype(np.float64) - d["queries"][qid])), rel=1e-6)
    for q in range(QUERIES):
        assert got.get(q, []) == brute_force(d, q), q
    assert 0 not in got  # the category without items has no row


def test_each_inner_search_is_a_vector_search(conn):
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + TOPK.format(k=K)).fetchall())
    assert "Nested Loop" in plan
    assert "Vector Top-K on lat_items" in plan
    assert "Filter: i.category = q.category" in plan
    analyzed = "\n".join(
        r[0] for r in conn.execute("EXPLAIN ANALYZE " + TOPK.format(k=K)).fetchall())
    # One search per distinct (category, embedding) of the query rows.
    assert f"Searches: {QUERIES}" in analyzed
    assert "Seq Scan on lat_items" not in analyzed
    # Without a filter, the sealed segment is searched through its HNSW graph.
    unfiltered = ("EXPLAIN ANALYZE SELECT q.id, n.id FROM lat_queries q CROSS JOIN LATERAL ("
                  "SELECT i.id FROM lat_items i ORDER BY i.embedding <-> q.embedding LIMIT 3) n")
    text_plan = "\n".join(r[0] for r in conn.execute(unfiltered).fetchall())
    assert "hnsw" in text_plan, text_plan


def test_exactly_k_rows_when_k_exist(conn):
    d = conn.data
    k = 40
    rows = conn.execute(TOPK.format(k=k)).fetchall()
    for q in range(QUERIES):
        expected = min(k, int((d["cats"] == d["qcats"][q]).sum()))
        assert sum(1 for r in rows if r[0] == q) == expected


def test_left_join_lateral_keeps_query_rows_without_matches(conn):
    rows = conn.execute(
        "SELECT q.id, n.id FROM lat_queries q LEFT JOIN LATERAL (SELECT i.id FROM lat_items i "
        "WHERE i.category = q.category ORDER BY i.embedding <-> q.embedding LIMIT 2) n ON true "
        "ORDER BY q.id, n.id").fetchall()
    assert (0, None) in rows
    assert len(rows) == 1 + 2 * (QUERIES - 1)


def test_prepared_lateral_with_parameters(conn):
    sql = ("SELECT q.id, n.id FROM lat_queries q CROSS JOIN LATERAL (SELECT i.id "
           "FROM lat_items i WHERE i.category = q.category AND i.id < %s ORDER BY i.embedding <-> q.embedding "
           "LIMIT %s) n WHERE q.id = %s")
    for _ in range(3):  # one Parse, then Bind/Execute with the same plan
        rows = conn.execute(sql, (1_000, 3, 1), prepare=True).fetchall()
        assert len(rows) == 3 and all(iid < 1_000 for _, iid in rows)


def test_row_values_over_the_wire(conn):
    rows = conn.execute("SELECT id FROM lat_items WHERE (category, id) IN (SELECT category, id "
                        "FROM lat_queries) ORDER BY id").fetchall()
    d = conn.data
    expected = [q for q in range(QUERIES) if d["cats"][q] == d["qcats"][q]]
    assert [r[0] for r in rows] == expected
    assert conn.execute("SELECT (%s::int, 2) < (1, 3)", (1,)).fetchone() == (True,)
    with pytest.raises(psycopg.errors.SyntaxError) as caught:
        conn.execute("SELECT (1, 2) = (1, 2, 3)")
    assert caught.value.diag.message_primary == "unequal number of entries in row expressions"
    with pytest.raises(psycopg.errors.SyntaxError) as caught:
        conn.execute("SELECT 1 FROM lat_items WHERE (id, category) IN "
                     "(SELECT id FROM lat_queries)")
    assert caught.value.diag.message_primary == "subquery has too few columns"
