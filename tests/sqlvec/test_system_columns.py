"""System columns of user tables: tableoid, ctid, xmin (and xmax, cmin, cmax), named but never
part of `*`, derived from the row id; their names refused for user columns."""

from __future__ import annotations

import pytest

from sqlvec.database import Database
from sqlvec.errors import SqlVecError


@pytest.fixture
def s(tmp_path):
    database = Database.open(str(tmp_path / "db"))
    session = database.connect()
    session.execute_one("CREATE TABLE t (id int PRIMARY KEY, v text)")
    session.execute_one("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    yield session
    session.close()
    database.close()


def rows(session, sql: str, params: list | None = None) -> list[tuple]:
    return session.execute_one(sql, params).rows()


def error(session, sql: str) -> SqlVecError:
    with pytest.raises(SqlVecError) as caught:
        session.execute_one(sql)
    return caught.value


def by_id(session, columns: str) -> dict[int, tuple]:
    return {r[0]: r[1:] for r in rows(session, f"SELECT id, {columns} FROM t")}


def test_named_system_columns_have_their_types_and_are_not_in_star(s):
    result = s.execute_one("SELECT tableoid, xmin, ctid, xmax, cmin, cmax, * FROM t ORDER BY id")
    assert [(c.name, c.type.name) for c in result.columns] == [
        ("tableoid", "oid"), ("xmin", "xid"), ("ctid", "tid"), ("xmax", "xid"), ("cmin", "cid"),
        ("cmax", "cid"), ("id", "int4"), ("v", "text")]
    oid = rows(s, "SELECT oid FROM pg_class WHERE relname = 't'")[0][0]
    assert {c.table_oid for c in result.columns} == {oid}
    assert [c.attnum for c in result.columns] == [-6, -2, -1, -4, -3, -5, 1, 2]
    assert {r[0] for r in result.rows()} == {oid}
    assert [r[3:6] for r in result.rows()] == [(0, 0, 0)] * 3
    assert [c.name for c in s.execute_one("SELECT * FROM t").columns] == ["id", "v"]
    assert [c.name for c in s.execute_one("SELECT t.* FROM t").columns] == ["id", "v"]


def test_tableoid_is_the_table_as_regclass(s):
    assert rows(s, "SELECT DISTINCT tableoid::regclass::text FROM t") == [("t",)]
    assert rows(s, "SELECT count(*) FROM t JOIN pg_class c ON c.oid = t.tableoid") == [(3,)]


def test_ctid_is_unique_and_the_first_row_is_0_1(s):
    ctids = by_id(s, "ctid::text")
    assert ctids[1] == ("(0,1)",)
    assert len(set(ctids.values())) == 3
    assert rows(s, "SELECT id FROM t WHERE ctid = '(0,1)'") == [(1,)]
    assert rows(s, "SELECT id FROM t WHERE ctid = '(0,2)'::tid") == [(2,)]
    assert rows(s, "SELECT id FROM t WHERE ctid IN ('(0,1)', '(0,3)') ORDER BY id") == [(1,), (3,)]


def test_update_gives_a_row_a_new_ctid_and_xmin(s):
    before = by_id(s, "ctid::text, xmin::text")
    s.execute_one("UPDATE t SET v = 'changed' WHERE id = 2")
    after = by_id(s, "ctid::text, xmin::text")
    assert after[1] == before[1] and after[3] == before[3]
    assert after[2][0] != before[2][0] and after[2][1] != before[2][1]
    assert after[2][0] not in {ctid for ctid, _ in before.values()}
    assert rows(s, f"SELECT id FROM t WHERE ctid = '{after[2][0]}'") == [(2,)]
    assert rows(s, f"SELECT id FROM t WHERE ctid = '{before[2][0]}'") == []


def test_xmin_as_an_optimistic_concurrency_token(s):
    (token,) = rows(s, "SELECT xmin FROM t WHERE id = 1")[0]
    update = "UPDATE t SET v = $1 WHERE id = 1 AND xmin = $2"
    assert s.execute_one(update, ["first", str(token)]).tag == "UPDATE 1"
    assert s.execute_one(update, ["stale", str(token)]).tag == "UPDATE 0"
    assert rows(s, f"SELECT v FROM t WHERE id = 1 AND xmin = {token}") == []
    assert rows(s, "SELECT v FROM t WHERE id = 1") == [("first",)]
    assert rows(s, "SELECT xmin::text::int8 > 0 FROM t WHERE id = 1") == [(True,)]


def test_ctid_orders_by_block_then_offset(s):
    s.execute_one("INSERT INTO t SELECT g, 'x' FROM generate_series(4, 300) g")
    ordered = [r[0] for r in rows(s, "SELECT ctid::text FROM t ORDER BY t.ctid")]
    assert ordered[:2] == ["(0,1)", "(0,2)"]
    assert ordered[255:258] == ["(0,256)", "(1,1)", "(1,2)"]
    assert rows(s, "SELECT min(ctid)::text, max(ctid)::text FROM t") == [("(0,1)", "(1,44)")]
    assert rows(s, "SELECT count(*) FROM t WHERE ctid > '(0,256)'") == [(44,)]
    assert rows(s, "SELECT '(0,10)'::tid < '(0,9)'::tid, '(1,1)'::tid > '(0,256)'::tid") == \
        [(False, True)]


def test_qualified_names_aliases_and_scopes(s):
    s.execute_one("CREATE TABLE u (id int)")
    s.execute_one("INSERT INTO u VALUES (1)")
    assert rows(s, "SELECT x.ctid::text, x.xmin = t2.xmin FROM t x JOIN t t2 USING (id) "
                   "WHERE x.id = 1") == [("(0,1)", True)]
    assert error(s, "SELECT t.xmin FROM t x").sqlstate == "42P01"
    assert error(s, "SELECT ctid FROM t, u").sqlstate == "42702"
    assert rows(s, "SELECT t.ctid::text FROM t, u WHERE t.id = u.id") == [("(0,1)",)]
    assert error(s, "SELECT ctid FROM (SELECT * FROM t) s").sqlstate == "42703"
    assert error(s, "SELECT * FROM t JOIN u USING (ctid)").sqlstate == "42703"
    assert rows(s, "SELECT (SELECT i.ctid::text FROM t i WHERE i.ctid = o.ctid) FROM t o "
                   "WHERE o.id = 3") == [("(0,3)",)]
    assert rows(s, "SELECT u.tableoid, u.ctid, u.xmax FROM t LEFT JOIN u ON false "
                   "WHERE t.id = 1") == [(None, None, None)]
    assert rows(s, "SELECT ctid::text AS c FROM t GROUP BY ctid ORDER BY ctid LIMIT 1") == \
        [("(0,1)",)]


def test_writes_read_system_columns(s):
    (ctid,) = rows(s, "SELECT ctid::text FROM t WHERE id = 3")[0]
    assert rows(s, f"DELETE FROM t WHERE ctid = '{ctid}' RETURNING id, ctid::text") == \
        [(3, ctid)]
    oid = rows(s, "SELECT 't'::regclass::oid")[0][0]
    assert rows(s, "INSERT INTO t VALUES (4, 'd') RETURNING tableoid, xmax") == [(oid, 0)]
    for sql in ("INSERT INTO t VALUES (5, 'e') RETURNING ctid",
                "UPDATE t SET v = 'x' WHERE id = 1 RETURNING t.xmin"):
        assert error(s, sql).sqlstate == "0A000"  # assigned only at COMMIT
    assert error(s, "UPDATE t SET xmin = '1'").message == 'cannot assign to system column "xmin"'
    assert error(s, "INSERT INTO t (ctid) VALUES ('(0,1)')").sqlstate == "42703"


def test_system_column_names_are_refused_for_user_columns(s):
    for sql in ("CREATE TABLE bad (id int, xmin int)",
                "ALTER TABLE t ADD COLUMN ctid int",
                "ALTER TABLE t ADD COLUMN IF NOT EXISTS cmax int",
                "ALTER TABLE t RENAME COLUMN v TO tableoid"):
        e = error(s, sql)
        assert e.sqlstate == "42701"
        assert "conflicts with a system column name" in e.message
    assert [c.name for c in s.execute_one("SELECT * FROM t").columns] == ["id", "v"]


def test_tid_and_xid_values(s):
    assert rows(s, "SELECT '(0,1)'::tid::text, '(-1,65535)'::tid::text, ' (4,2) '::tid::text") \
        == [("(0,1)", "(4294967295,65535)", "(4,2)")]
    for bad in ("x", "(0,65536)", "(4294967296,1)", "( 1 , 2 )"):
        assert error(s, f"SELECT '{bad}'::tid").sqlstate == "22P02"
    assert rows(s, "SELECT '-1'::xid::text, '7'::cid::text") == [("4294967295", "7")]
    assert error(s, "SELECT ctid::int8 FROM t").sqlstate == "42846"
    assert error(s, "SELECT xmin::int8 FROM t").sqlstate == "42846"
    assert error(s, "SELECT ctid = 1 FROM t").sqlstate == "42883"
    assert error(s, "SELECT cmin = 0 FROM t").sqlstate == "42883"
    assert rows(s, "SELECT count(*) FROM t WHERE xmin = '3' OR xmin <> 3") == [(3,)]
