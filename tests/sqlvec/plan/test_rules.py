"""`use_vector_topk` through views and subqueries: `look_through` restates a subquery that only
selects, renames and filters one table's columns as that table's scan, so the filtered top-k
takes the vector path; anything else (computed columns, aggregates, LIMIT inside) keeps the
general plan, and both give the same rows."""

from __future__ import annotations

import pytest

from sqlvec.database import Database
from sqlvec.plan import nodes as n


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    db = Database.open(str(tmp_path_factory.mktemp("rules") / "data"))
    s = db.connect()
    s.execute_one("CREATE TABLE t (id int PRIMARY KEY, cat text, emb vector(2))")
    s.execute_one("INSERT INTO t SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, "
                  "ARRAY[g, g]::real[]::vector FROM generate_series(1, 40) g")
    s.execute_one("CREATE VIEW evens AS SELECT id, emb AS e, cat FROM t WHERE cat = 'a'")
    s.execute_one("CREATE VIEW evens_low (k, v) AS SELECT id, e FROM evens WHERE id < 20")
    yield s
    s.close()
    db.close()


def _plan(session, sql: str) -> n.PlanNode:
    return session.prepare(sql).compiled[0]


def _topk(plan: n.PlanNode) -> n.VectorTopK | None:
    if isinstance(plan, n.VectorTopK):
        return plan
    for child in plan.children:
        found = _topk(child)
        if found is not None:
            return found
    return None


@pytest.mark.parametrize("sql, ids", [
    ("SELECT id FROM evens WHERE id > 10 ORDER BY e <-> '[0,0]' LIMIT 3", [12, 14, 16]),
    ("SELECT k FROM evens_low ORDER BY v <-> '[30,30]' LIMIT 2", [18, 16]),
    ("SELECT s.i FROM (SELECT id AS i, emb FROM t) s WHERE s.i % 5 = 0 "
     "ORDER BY s.emb <-> '[0,0]' LIMIT 2", [5, 10]),
])
def test_topk_looks_through(session, sql, ids):
    topk = _topk(_plan(session, sql))
    assert topk is not None and topk.column == "emb"
    assert [r[0] for r in session.execute_one(sql).rows()] == ids


@pytest.mark.parametrize("sql", [
    "SELECT x FROM (SELECT id AS x, emb + emb AS e2 FROM t) s ORDER BY e2 <-> '[0,0]' LIMIT 2",
    "SELECT id FROM (SELECT id, emb FROM t LIMIT 30) s ORDER BY emb <-> '[0,0]' LIMIT 2",
    "SELECT id FROM (SELECT DISTINCT id, emb FROM t) s ORDER BY emb <-> '[0,0]' LIMIT 2",
])
def test_topk_keeps_general_plan_when_not_plain_columns(session, sql):
    assert _topk(_plan(session, sql)) is None
    assert len(session.execute_one(sql).rows()) == 2


def test_view_filter_stays_when_the_query_has_none(session):
    topk = _topk(_plan(session, "SELECT id FROM evens ORDER BY e <-> '[1,1]' LIMIT 40"))
    assert topk is not None and "cat = 'a'" in n.expr_sql(topk.scan.filter)
    rows = session.execute_one("SELECT id FROM evens ORDER BY e <-> '[1,1]' LIMIT 40").rows()
    assert len(rows) == 20 and all(r[0] % 2 == 0 for r in rows)


@pytest.mark.parametrize("sql, column", [
    ("SELECT id FROM t ORDER BY emb::halfvec(2) <-> '[0,0]' LIMIT 3", "emb::halfvec"),
    ("SELECT id FROM t ORDER BY CAST(emb AS halfvec) <-> '[0,0]' LIMIT 3", "emb::halfvec"),
    ("SELECT id FROM evens ORDER BY (e)::halfvec(2) <-> '[0,0]' LIMIT 3", "emb::halfvec"),
])
def test_a_cast_of_a_vector_column_is_searched_as_an_expression_index_key(session, sql, column):
    """`ORDER BY col::halfvec(n) <-> q LIMIT k` is the key of an index on that expression
    (matched structurally, as PostgreSQL matches index expressions), and gives the exact
    nearest rows without one."""
    topk = _topk(_plan(session, sql))
    assert topk is not None and topk.column == column
    assert [r[0] for r in session.execute_one(sql).rows()] == \
        ([1, 2, 3] if "evens" not in sql else [2, 4, 6])


@pytest.mark.parametrize("sql", [
    "SELECT id FROM t ORDER BY emb::halfvec(3) <-> '[0,0,0]' LIMIT 3",  # other dimensions
    "SELECT id FROM t ORDER BY emb::vector <-> '[0,0]' LIMIT 3",  # no cast at all
])
def test_other_casts_keep_their_plan(session, sql):
    topk = _topk(_plan(session, sql))
    assert topk is None or topk.column == "emb"


def test_a_halfvec_column_cast_to_vector_is_a_key_too(session):
    session.execute_one("CREATE TABLE hv (id int, h halfvec(2))")
    session.execute_one("INSERT INTO hv SELECT g, ARRAY[g, 1]::halfvec FROM generate_series(1, 9) g")
    session.execute_one("CREATE INDEX ON hv USING hnsw ((h::vector(2)) vector_l2_ops)")
    sql = "SELECT id FROM hv ORDER BY h::vector(2) <-> '[4.2,1]' LIMIT 2"
    topk = _topk(_plan(session, sql))
    assert topk is not None and topk.column == "h::vector"
    assert [r[0] for r in session.execute_one(sql).rows()] == [4, 5]
