"""Catalog and session functions, casts to reg* types, and the SQL forms catalog queries use."""

from __future__ import annotations

import pytest

from sqlvec.errors import SqlVecError
from tests.sqlvec.catalog.conftest import rows


@pytest.mark.parametrize("sql, expected", [
    ("SELECT current_database(), current_catalog, current_user, session_user",
     ("postgres", "postgres", "postgres", "postgres")),
    ("SELECT current_schema(), current_schemas(false), current_schemas(true)",
     ("public", ["public"], ["pg_catalog", "public"])),
    ("SELECT format_type(1043, 24), format_type(16385, 3), format_type(1009, -1), "
     "format_type(1042, NULL)", ("character varying(20)", "vector(3)", "text[]", "bpchar")),
    ("SELECT pg_size_pretty(10239::bigint), pg_size_pretty(10240::bigint), "
     "pg_size_pretty(123456789::bigint)", ("10239 bytes", "10 kB", "118 MB")),
    ("SELECT quote_ident('abc'), quote_ident('Abc'), quote_ident('select'), quote_literal('it''s')",
     ("abc", '"Abc"', '"select"', "'it''s'")),
    ("SELECT array_to_string(ARRAY['a', NULL, 'c'], ','), array_upper(ARRAY[1, 2, 3], 1), "
     "string_to_array('x,y', ',')", ("a,c", 3, ["x", "y"])),
    ("SELECT 'int4'::regtype::text, 'character varying'::regtype::text, 16385::regtype::text",
     ("integer", "character varying", "vector")),
    ("SELECT 'items'::regclass::text, 'public.items'::regclass = 'items'::regclass",
     ("items", True)),
    ("SELECT 'public'::regnamespace::text, 'pg_catalog.array_in'::regproc::text",
     ("public", "array_in")),
    ("SELECT pg_encoding_to_char(6), pg_get_userbyid(10), has_table_privilege('items', 'SELECT'),"
     " has_schema_privilege('public', 'USAGE'), has_database_privilege('postgres', 'CONNECT'), "
     "has_any_column_privilege('items', 'SELECT')", ("UTF8", "postgres", True, True, True, True)),
    ("SELECT obj_description('items'::regclass, 'pg_class'), "
     "col_description('items'::regclass, 2)", ("things", "the name")),
    ("SELECT pg_get_indexdef('items_name_idx'::regclass), "
     "pg_get_indexdef('items_name_idx'::regclass, 1, false)",
     ("CREATE INDEX items_name_idx ON public.items USING btree (name)", "name")),
    ("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'p'",
     ("PRIMARY KEY (id)",)),
    ("SELECT json_build_object('a', 1, 'b', 'x')", ('{"a" : 1, "b" : "x"}',)),
    ("SELECT 5 & 1::smallint, 6 | 1, E'a\\tb'", (1, 7, "a\tb")),
    ("SELECT 'abc' OPERATOR(pg_catalog.~) '^a' COLLATE pg_catalog.default", (True,)),
    ("SELECT 3 = ANY('{1,2,3}'::oid[])", (True,)),
    ("SELECT to_regclass('nope'), to_regtype('vector')::oid", (None, 16385)),
    ("SELECT quote_literal(5::\"pg_catalog\".\"int4\"::text)", ("'5'",)),
    ("SELECT pg_table_is_visible('items'::regclass), pg_table_is_visible('other.t2'::regclass), "
     "pg_type_is_visible(16385)", (True, False, True)),
    ("SELECT pg_relation_size('items') > 0, pg_total_relation_size('items') >= "
     "pg_relation_size('items')", (True, True)),
])
def test_scalar_functions(session, sql, expected):
    assert rows(session, sql) == [expected]


def test_set_returning_functions_in_select_list(session):
    assert rows(session, "SELECT unnest(ARRAY[10, 20]), generate_subscripts(ARRAY[10, 20], 1)") \
        == [(10, 1), (20, 2)]
    assert rows(session, "SELECT (information_schema._pg_expandarray(ARRAY[7, 9])).x, "
                         "(information_schema._pg_expandarray(ARRAY[7, 9])).n") == [(7, 1), (9, 2)]
    words = rows(session, "SELECT word, catcode FROM pg_get_keywords() WHERE word IN "
                          "('select', 'abort') ORDER BY 1")
    assert words == [("abort", "U"), ("select", "R")]


def test_settings_functions(session):
    assert rows(session, "SELECT current_setting('jit'), set_config('jit', 'on', false), "
                         "current_setting('jit')") in ([("off", "on", "on")], [("on", "on", "on")])
    assert rows(session, "SELECT current_setting('no.such', true)") == [(None,)]
    with pytest.raises(SqlVecError) as err:
        rows(session, "SELECT current_setting('no_such_setting')")
    assert err.value.sqlstate == "42704"
    assert rows(session, "SELECT setting FROM pg_settings WHERE name = 'search_path'") == \
        [('"$user", public',)]


def test_unknown_relation_in_regclass(session):
    with pytest.raises(SqlVecError) as err:
        rows(session, "SELECT 'no_such_table'::regclass")
    assert err.value.sqlstate == "42P01"


def test_backend_functions(db, session):
    other = db.connect()
    try:
        pids = {r[0] for r in rows(session, "SELECT pid FROM pg_stat_activity")}
        assert {session.pid, other.pid} <= pids
        assert rows(session, "SELECT pg_backend_pid()") == [(session.pid,)]
        assert rows(session, f"SELECT pg_cancel_backend({other.pid}), "
                             "pg_terminate_backend(-1)") == [(True, False)]
        assert rows(session, "SELECT txid_current() > 0, pg_sleep(0.01) IS NULL") == \
            [(True, True)]
    finally:
        other.close()


def test_sqlvec_indexes_view(db, session):
    handle = db.table("items")
    handle.seal()
    db.wait_idle()
    got = rows(session, "SELECT tablename, indexname, state, rows_indexed, rows_total "
                        "FROM sqlvec_indexes")
    assert ("items", "items_embedding_idx", "ready", 2, 2) in got
