"""Catalog and session functions, casts to reg* types, and the SQL forms catalog queries use."""

from __future__ import annotations

import pytest

from sqlvec.catalog import functions as F
from sqlvec.errors import SqlVecError
from sqlvec.execution import builtins as _loads_the_function_catalog  # noqa: F401
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


# The function catalog (catalog/functions.py) and pg_proc -------------------------------------------
#
# Every callable function has pg_proc rows and every pg_proc row can be called, with the result
# type the row says. Both directions are derived from the function catalog and from what the
# dialect can parse, so a function added without a declaration, or declared without a working
# kernel, fails here.

# SQL keywords that PostgreSQL evaluates without a pg_proc row (its grammar turns them into
# expressions of their own), which sqlvec declares as keyword forms for the same reason.
KEYWORD_FORMS = {"coalesce", "greatest", "least", "nullif", "current_date", "current_timestamp",
                 "localtimestamp", "current_catalog", "current_role", "user"}

# Call spellings PostgreSQL's grammar gives a meaning other than a function call.
GRAMMAR_FORMS = {"array", "cast", "all"}
# PostgreSQL's grammar calls btrim, ltrim or rtrim for TRIM(...).
RENAMED_BY_GRAMMAR = {"trim"}

# A value of each argument type, to call every pg_proc row with.
SAMPLES = {
    "bool": "true", "char": "'a'::\"char\"", "name": "'a'::name", "int2": "2::int2",
    "int4": "2", "int8": "2::int8", "float4": "2::float4", "float8": "2::float8",
    "numeric": "2.5", "text": "'a'::text", "bpchar": "'a'::char(1)", "varchar": "'a'::varchar",
    "bytea": "'\\x01'::bytea", "oid": "1259::oid", "regclass": "'items'::regclass",
    "regtype": "'int4'::regtype", "regproc": "'lower'::regproc",
    "regprocedure": "'lower'::regprocedure", "regnamespace": "'public'::regnamespace",
    "regrole": "'postgres'::regrole", "tid": "'(0,1)'::tid", "xid": "'5'::xid",
    "cid": "'5'::cid", "json": "'{\"a\": 1}'::json", "jsonb": "'{\"a\": 1}'::jsonb",
    "jsonpath": "'$.a'::jsonpath",
    "uuid": "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", "date": "'2024-02-29'::date",
    "time": "'10:11:12'::time", "timestamp": "'2024-02-29 10:11:12'::timestamp",
    "timestamptz": "'2024-02-29 10:11:12+00'::timestamptz", "interval": "'1 day'::interval",
    "vector": "'[3,4]'::vector", "halfvec": "'[3,4]'::halfvec",
    "sparsevec": "'{1:3,2:4}/2'::sparsevec", "bit": "B'101'",
    "varbit": "B'10'::varbit", "int2vector": "'1 2'::int2vector",
    "oidvector": "'1 2'::oidvector", "unknown": "'a'::unknown",
    "record": "information_schema._pg_expandarray(ARRAY[5])",
    # cstring and pg_node_tree values are text here.
    "cstring": "'1'", "_cstring": "ARRAY['3']", "pg_node_tree": "'a'",
    "_text": "ARRAY['m=16']",
    # Polymorphic arguments: an integer (arrays: of integers).
    "any": "2", "anyelement": "2", "anynonarray": "2", "anycompatible": "2",
    "anyarray": "ARRAY[2, 3]", "anycompatiblearray": "ARRAY[2, 3]",
    "internal": "NULL",
}
# Arguments of functions that need particular values (a unit, a format, a sequence, ...), by
# name or by name/argument count.
ARGUMENTS = {
    "date_part": ["'hour'"], "extract": ["'hour'"], "date_trunc": ["'month'"],
    "encode": [SAMPLES["bytea"], "'hex'"], "decode": ["'00'", "'hex'"],
    "to_char": [None, "'YYYY'"], "to_date": ["'2024-01-02'", "'YYYY-MM-DD'"],
    "to_timestamp/2": ["'2024-01-02'", "'YYYY-MM-DD'"], "current_setting": ["'search_path'"],
    "set_config": ["'application_name'", "'x'"], "pg_sleep": ["0"],
    "nextval": ["'items_id_seq'"], "setval": ["'items_id_seq'", "5"],
    "currval": ["'items_id_seq'"], "subvector": [None, "1", "1"], "chr": ["65"],
    "pg_terminate_backend": ["-1"], "pg_cancel_backend": ["-1"], "format_type": ["23"],
    "generate_series": [None, None, None], "array_in": ["'{1,2}'", "23"],
    "int2vectorin": ["'1 2'"], "oidvectorin": ["'1 2'"], "tidin": ["'(0,1)'"],
    "uuid_in": ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"], "json_in": ["'{}'"],
    "jsonb_in": ["'{}'"], "bytea_in": ["'\\x01'"], "date_in": ["'2024-01-02'"],
    "time_in": ["'10:11'"], "timestamp_in": ["'2024-01-02'"], "timestamptz_in": ["'2024-01-02'"],
    "interval_in": ["'1 day'"], "vector_in": ["'[1,2]'"], "halfvec_in": ["'[1,2]'"],
    "sparsevec_in": ["'{1:1}/2'"], "boolin": ["'t'"],
    "regclassin": ["'items'"], "regtypein": ["'int4'"], "regprocin": ["'lower'"],
    "regprocedurein": ["'lower'"], "regnamespacein": ["'public'"], "regrolein": ["'postgres'"],
    "charin": ["'a'"], "vector_typmod_in": ["ARRAY['3']"], "timestamptypmodin": ["ARRAY['3']"],
    "timestamptztypmodin": ["ARRAY['3']"], "timetypmodin": ["ARRAY['3']"],
    "numerictypmodin": ["ARRAY['10', '2']"], "json_build_object": ["'a'", "1"],
    "jsonb_build_object": ["'a'", "1"], "pg_get_serial_sequence": ["'items'", "'id'"],
    "regexp_like/3": [None, None, "'i'"],
}
# Polymorphic result types, as the samples above resolve them; cstring values are text, and an
# unknown result of a select list is text (as in PostgreSQL).
RESOLVED = {"anyelement": "int4", "anycompatible": "int4", "anyarray": "_int4",
            "anycompatiblearray": "_int4", "cstring": "text", "unknown": "text"}
# Errors PostgreSQL raises too for these calls.
POSTGRES_ERRORS = {"record_in": ("0A000", "input of anonymous composite types is not implemented")}


def _call(session, name: str, argtypes: list[str], kind: str, retset: bool,
          variadic: bool) -> str:
    given = ARGUMENTS.get(f"{name}/{len(argtypes)}", ARGUMENTS.get(name, []))
    count = max(len(argtypes), len(given)) if variadic else len(argtypes)
    if variadic and argtypes[-1].startswith("_"):  # VARIADIC text[]: called with texts
        argtypes = argtypes[:-1] + [argtypes[-1][1:]]
    args = [given[i] if i < len(given) and given[i] is not None else SAMPLES[argtypes[
        min(i, len(argtypes) - 1)]] for i in range(count)]
    call = f"{name}({', '.join(args)})"
    if name == "_pg_expandarray":
        call = f"information_schema.{call}"
    if kind == "w":
        return f"SELECT {call} OVER ()"
    if retset:
        return f"SELECT * FROM {call}"
    return f"SELECT {call}"


def test_every_pg_proc_row_can_be_called(session):
    """Each pg_proc row, called with arguments of its argument types, runs and returns its
    result type. PostgreSQL's rows with an `internal` argument cannot be called there either."""
    procs = rows(session, "SELECT p.proname, p.proargtypes, p.prorettype, p.prokind, "
                          "p.proretset, p.provariadic <> 0 FROM pg_proc p ORDER BY p.oid")
    types = dict(rows(session, "SELECT oid, typname FROM pg_type"))
    assert len(procs) > 300
    failures = []
    for name, argoids, retoid, kind, retset, variadic in procs:
        argtypes = [types[o] for o in argoids]
        expected = RESOLVED.get(types[retoid], types[retoid])
        sql = _call(session, name, argtypes, kind, retset, variadic)
        try:
            result = session.execute_one(sql)
            result.rows()
        except SqlVecError as exc:
            if "internal" in argtypes and exc.sqlstate == "0A000" and \
                    "cannot accept a value of type internal" in str(exc):
                continue
            if POSTGRES_ERRORS.get(name, (None, None)) == (exc.sqlstate, str(exc)):
                continue
            failures.append(f"{sql}: {exc.sqlstate} {exc}")
            continue
        if "internal" in argtypes:
            failures.append(f"{sql}: accepted a value of type internal")
            continue
        got = [c.type.name for c in result.columns]
        if retset and expected == "record":
            continue  # OUT parameters: checked by the column names (test below)
        if got[0] != expected:
            failures.append(f"{sql}: returns {got[0]}, pg_proc says {expected}")
    assert not failures, "\n".join(failures)


def test_every_declared_name_is_in_pg_proc():
    in_pg_proc = {p.name for p in F.proc_rows()}
    for fn in F.functions():
        for name in fn.names:
            if fn.keyword:
                assert name in KEYWORD_FORMS, f"{name} is declared as a keyword form"
                assert name not in in_pg_proc
            else:
                assert name in in_pg_proc, name


def test_every_call_the_dialect_parses_is_declared():
    """Every function-call spelling the dialect knows (sqlglot's function tables, its call
    grammar and keywords) either names a declared function (with pg_proc rows, or a keyword
    form of KEYWORD_FORMS), is PostgreSQL grammar of another meaning, or is not callable at
    all: nothing is compiled by a path that bypasses the function catalog."""
    from sqlglot import exp

    from sqlvec.execution.expressions import HANDLERS
    from sqlvec.sql.calls import call_of
    from sqlvec.sql.dialect import SqlVec, parse_one

    parser = SqlVec.Parser
    spellings = {k.lower() for k in [*parser.FUNCTIONS, *parser.FUNCTION_PARSERS]}
    spellings |= {t.name.lower() for t in parser.NO_PAREN_FUNCTIONS}
    by_function = HANDLERS[exp.Func]
    problems = []
    for spelling in sorted(spellings):
        for args in ("", "1", "1, 2", "1, 2, 3"):
            for sql in (f"SELECT {spelling}({args})", f"SELECT {spelling}"):
                try:
                    tree = parse_one(sql)
                except SqlVecError:
                    continue
                for node in tree.expressions[0].walk():
                    if not isinstance(node, exp.Func):
                        continue
                    handler = next((HANDLERS[c] for c in type(node).__mro__ if c in HANDLERS),
                                   None)
                    call = call_of(node)
                    if call is not None and not isinstance(node, exp.Anonymous) and \
                            call[0] != spelling and spelling not in RENAMED_BY_GRAMMAR:
                        problems.append(f"{sql}: calls {call[0]}")
                    if call is not None:
                        fn = F.lookup(call[0])
                        if fn is not None and fn.keyword and call[0] not in KEYWORD_FORMS:
                            problems.append(f"{sql}: keyword form {call[0]}")
                    elif handler is not None and handler is not by_function and \
                            not isinstance(node, (exp.Binary, exp.Unary)) and \
                            spelling not in GRAMMAR_FORMS:
                        problems.append(f"{sql}: {type(node).__name__} bypasses the catalog")
    assert not problems, "\n".join(sorted(set(problems)))


def test_record_functions_name_their_columns(session):
    assert rows(session, "SELECT * FROM information_schema._pg_expandarray(ARRAY['a'])") == \
        [("a", 1)]
    assert [c.name for c in session.execute_one(
        "SELECT * FROM pg_get_keywords() LIMIT 1").columns] == \
        ["word", "catcode", "barelabel", "catdesc", "baredesc"]


def test_pg_proc_argument_and_result_types_are_types(session):
    """Every type a pg_proc row names is a pg_type row (psql's \\df prints `???` otherwise)."""
    assert rows(session, "SELECT DISTINCT t FROM (SELECT unnest(proargtypes::oid[]) AS t "
                         "FROM pg_proc UNION SELECT prorettype FROM pg_proc) s "
                         "WHERE t NOT IN (SELECT oid FROM pg_type)") == []
    assert rows(session, "SELECT pg_get_function_arguments('vector_typmod_in'::regproc)") == \
        [("cstring[]",)]
