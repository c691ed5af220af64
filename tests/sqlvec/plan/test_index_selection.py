"""`use_btree_index`: which conjuncts of a scan's filter become index paths, per btree index
(columns, expressions matched structurally, the primary key), and which do not."""

from __future__ import annotations

import pytest

from sqlvec.database import Database
from sqlvec.plan import nodes as n


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    db = Database.open(str(tmp_path_factory.mktemp("ixsel") / "data"))
    s = db.connect()
    s.execute_one("CREATE TABLE t (id int PRIMARY KEY, a int, b text, c char(3), m jsonb, "
                  "e vector(2))")
    s.execute_one("CREATE INDEX t_a_idx ON t (a, b)")
    s.execute_one("CREATE INDEX t_c_idx ON t (c)")
    s.execute_one("CREATE INDEX t_lower_idx ON t ((lower(b)))")
    s.execute_one("CREATE INDEX t_doc_idx ON t ((m ->> 'doc'))")
    yield s
    s.close()
    db.close()


def _scan(session, sql: str) -> n.Scan:
    def find(node):
        if isinstance(node, n.Scan):
            return node
        if isinstance(node, n.VectorTopK):
            return node.scan
        for child in node.children:
            found = find(child)
            if found is not None:
                return found
        return None
    return find(session.prepare(sql).compiled[0])


def _paths(session, where: str) -> dict[str, list[str]]:
    scan = _scan(session, f"SELECT * FROM t WHERE {where}")
    return {p.index: [c.op for c in p.conds] for p in scan.index_paths}


def test_conditions_an_index_answers(session):
    assert _paths(session, "a = 1") == {"t_a_idx": ["="]}
    assert _paths(session, "1 < a AND a <= $1 AND b = 'x'") == {"t_a_idx": [">", "<="]}
    assert _paths(session, "a BETWEEN 1 AND 5 OR a IS NULL") == {}
    assert _paths(session, "a IS NULL AND id > 2") == {"t_pkey": [">"], "t_a_idx": ["null"]}
    assert _paths(session, "id > 10") == {"t_pkey": [">"]}
    assert _paths(session, "lower(b) = 'x' AND (m ->> 'doc') IN ('a', 'b')") == {
        "t_lower_idx": ["="], "t_doc_idx": ["in"]}


def test_conditions_no_index_answers(session):
    assert _paths(session, "b = 'x'") == {}  # not the first column of t_a_idx
    assert _paths(session, "a + 1 = 2") == {}
    assert _paths(session, "a = id") == {}  # both sides read the row
    assert _paths(session, "upper(b) = 'X'") == {}
    assert _paths(session, "a <> 3") == {}
    assert _paths(session, "NOT a = 3") == {}
    assert _paths(session, "c = 'ab'") == {}  # char(n) compares without trailing blanks
    assert _paths(session, "a IN (SELECT 1)") == {}


def test_key_lookup_keeps_precedence_and_vector_scans_get_paths(session):
    assert _scan(session, "SELECT * FROM t WHERE id = 3").key is not None
    assert _paths(session, "id = 3") == {}
    scan = _scan(session, "SELECT id FROM t WHERE a = 2 ORDER BY e <-> '[1,1]' LIMIT 3")
    assert [p.index for p in scan.index_paths] == ["t_a_idx"]
