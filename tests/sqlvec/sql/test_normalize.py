"""Statement texts as pg_stat_statements shows them: constants become $n."""

from __future__ import annotations

import pytest

from sqlvec.sql.normalize import normalize, query_id


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT * FROM t1 WHERE id = 42 AND name = 'it''s' LIMIT 10;",
     "SELECT * FROM t1 WHERE id = $1 AND name = $2 LIMIT $3"),
    # the statement's own parameters keep their numbers; constants are numbered after them
    ("SELECT v <-> '[1,2,3]'::vector FROM t WHERE x > $1 AND y = 1.5e3",
     "SELECT v <-> $2::vector FROM t WHERE x > $1 AND y = $3"),
    # a backslash ends nothing in a standard string, and escapes in an E'' string
    ("SELECT 'a\\', E'b\\'c', \"col1\" FROM t -- 5", "SELECT $1, $2, \"col1\" FROM t -- 5"),
    ("SELECT $$x$$, $tag$ y $tag$, .5, a1, x'1F', B'101', U&'d\\0061'",
     "SELECT $1, $2, $3, a1, $4, $5, $6"),
    ("INSERT INTO t VALUES (1, 'a'), (2, 'b')", "INSERT INTO t VALUES ($1, $2), ($3, $4)"),
])
def test_constants_become_parameters(sql, expected):
    assert normalize(sql) == expected


def test_statements_differing_only_in_constants_share_a_query_id():
    a = query_id(normalize("SELECT * FROM t WHERE id = 1"))
    assert a == query_id(normalize("SELECT * FROM t WHERE id = 22"))
    assert a != query_id(normalize("SELECT * FROM t WHERE id > 1"))
    assert -(1 << 63) <= a < (1 << 63)
