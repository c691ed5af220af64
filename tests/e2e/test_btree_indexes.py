"""Btree indexes through the real server with psycopg: a column index and LlamaIndex's
expression index on `(metadata_ ->> 'ref_doc_id')` answer lookups with server-side prepared
statements, give the rows `SET enable_indexscan = off` gives, and EXPLAIN says which index the
statement uses; after a restart too.

20,000 rows in sealed segments (CHECKPOINT) plus a few in the growing segment."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest

from tests.e2e.conftest import explain, start_server

ROWS = 20_000
START = dt.datetime(2024, 1, 1)


def _k(i: int) -> int:
    """k is a permutation of the ids (7919 is prime to 20,000)."""
    return (i * 7919) % ROWS


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("btree")
    state = {"server": start_server(work / "s0"), "work": work}
    with psycopg.connect(state["server"].conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id bigint PRIMARY KEY, k int, created timestamp, "
                     "metadata_ jsonb)")
        conn.execute("CREATE INDEX docs_k_idx ON docs (k)")
        conn.execute("CREATE INDEX docs_created_idx ON docs (created)")
        conn.execute("CREATE INDEX docs_ref_idx ON docs ((metadata_ ->> 'ref_doc_id'))")
        with conn.cursor().copy("COPY docs FROM STDIN") as copy:
            for i in range(ROWS):
                copy.write_row((i, _k(i), START + dt.timedelta(seconds=i), json.dumps({"ref_doc_id": f"doc-{i % 4000}"})))
        conn.execute("CHECKPOINT")
        conn.execute("INSERT INTO docs VALUES (900000, 5, now(), '{\"ref_doc_id\": \"doc-5\"}')")
        conn.execute("DELETE FROM docs WHERE id = 4005")
    yield state
    assert state["server"].stop() == 0, state["server"].log()
    assert "Traceback" not in state["server"].log(), state["server"].log()


def _rows(conn, sql: str, *params) -> list[tuple]:
    return sorted(conn.execute(sql, params, prepare=True).fetchall())


def _same_as_scan(conn, sql: str, *params) -> list[tuple]:
    got = _rows(conn, sql, *params)
    conn.execute("SET enable_indexscan = off")
    try:
        assert _rows(conn, sql, *params) == got, sql
        assert "Seq Scan on docs" in explain(conn, sql, *params)
    finally:
        conn.execute("RESET enable_indexscan")
    return got


def _check(conn) -> None:
    sql = "SELECT id FROM docs WHERE metadata_ ->> 'ref_doc_id' = %s"
    ids = [r[0] for r in _same_as_scan(conn, sql, "doc-5")]
    assert ids == [5, 8005, 12005, 16005, 900000]  # 4005 deleted
    plan = explain(conn, sql, "doc-5")
    assert plan.splitlines()[:2] == ["Index Scan using docs_ref_idx on docs",
                                     "  Index Cond: (metadata_ ->> 'ref_doc_id' = $1)"], plan
    by_k = "SELECT id, k FROM docs WHERE k IN (%s, %s) OR false"
    assert "Seq Scan" in explain(conn, by_k, 1, 2)  # OR: no conjunct an index answers
    rng = "SELECT id FROM docs WHERE k >= %s AND k < %s"
    def expected(lo: int, hi: int) -> int:  # row 4005 deleted, row 900000 (k = 5) added
        return hi - lo - (lo <= _k(4005) < hi) + (lo <= 5 < hi)
    assert len(_same_as_scan(conn, rng, 100, 120)) == expected(100, 120)
    assert "Index Scan using docs_k_idx on docs" in explain(conn, rng, 100, 120)
    assert "Seq Scan on docs" in explain(conn, rng, 0, 15_000)  # three quarters of the rows
    assert len(_same_as_scan(conn, rng, 0, 15_000)) == expected(0, 15_000)
    day = "SELECT count(*) FROM docs WHERE created BETWEEN %s AND %s"
    assert _same_as_scan(conn, day, "2024-01-01 00:10:00", "2024-01-01 00:10:09") == [(10,)]
    assert "Index Scan using docs_created_idx on docs" in explain(
        conn, day, "2024-01-01 00:10:00", "2024-01-01 00:10:09")


def test_lookups_answered_by_btree_indexes(server):
    with psycopg.connect(server["server"].conninfo(), autocommit=True) as conn:
        _check(conn)


def test_after_restart(server):
    assert server["server"].stop() == 0
    server["server"] = start_server(server["work"] / "s1",
                                    data_dir=server["server"].data_dir)
    with psycopg.connect(server["server"].conninfo(), autocommit=True) as conn:
        _check(conn)
