"""Sequence options compared with a real PostgreSQL: CREATE SEQUENCE's AS, INCREMENT, MINVALUE,
MAXVALUE, START, CACHE, CYCLE and OWNED BY with PostgreSQL's defaults and errors; nextval at
the bounds (2200H, or wrapping around); setval's bounds (22003); ALTER SEQUENCE with every
option, RESTART included, transactional in a block; an identity column's options through
ALTER TABLE; pg_sequences, pg_sequence, information_schema.sequences and psql's `\\d`. Every
script runs on both servers, statement by statement, and must give the same rows, command tags,
SQLSTATEs and messages. On our server: what is not supported is 0A000, and a connection
served by another worker process sees an ALTER at once.
"""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from tests.e2e.conftest import beside_postgres, on_two_workers, script_outcomes

SCRIPTS = {
    "create-checks": [
        "CREATE SEQUENCE sq_c START 0",
        "CREATE SEQUENCE sq_c MINVALUE 5 MAXVALUE 3",
        "CREATE SEQUENCE sq_c MINVALUE 5 MAXVALUE 5",
        "CREATE SEQUENCE sq_c AS smallint MAXVALUE 40000",
        "CREATE SEQUENCE sq_c AS smallint MINVALUE -40000",
        "CREATE SEQUENCE sq_c AS text",
        "CREATE SEQUENCE sq_c INCREMENT 0",
        "CREATE SEQUENCE sq_c CACHE 0",
        "CREATE SEQUENCE sq_c START 10 MAXVALUE 5",
        "CREATE SEQUENCE sq_c INCREMENT 2 INCREMENT 3",
        "CREATE SEQUENCE sq_c MAXVALUE 1e3",
        "CREATE SEQUENCE sq_c MAXVALUE 99999999999999999999",
        "CREATE SEQUENCE sq_c SEQUENCE NAME x",
        "CREATE SEQUENCE sq_c INCREMENT BY -2 START WITH -3 NO MINVALUE NO MAXVALUE NO CYCLE "
        "CACHE 1 AS int",
        "CREATE SEQUENCE IF NOT EXISTS sq_c START 5",
        "CREATE SEQUENCE sq_c",
        "SELECT nextval('sq_c'), nextval('sq_c')",
        "CREATE SEQUENCE sq_c2 RESTART 5",
        "SELECT nextval('sq_c2')",
    ],
    "bounds": [
        "CREATE SEQUENCE sq_b MAXVALUE 3",
        "SELECT nextval('sq_b'), nextval('sq_b'), nextval('sq_b')",
        "SELECT nextval('sq_b')",
        "SELECT currval('sq_b')",
        "SELECT setval('sq_b', 0)",
        "SELECT setval('sq_b', 4)",
        "SELECT setval('sq_b', 2, false)",
        "SELECT last_value, is_called FROM sq_b",
        "SELECT last_value FROM pg_sequences WHERE sequencename = 'sq_b'",
        "SELECT nextval('sq_b')",
        "SELECT nextval('sq_b') FROM generate_series(1, 5)",
        "SELECT last_value, is_called FROM sq_b",
        "CREATE SEQUENCE sq_b2 INCREMENT -1 MINVALUE -2",
        "SELECT nextval('sq_b2'), nextval('sq_b2')",
        "SELECT nextval('sq_b2')",
    ],
    "cycle": [
        "CREATE SEQUENCE sq_y MINVALUE 1 MAXVALUE 3 CYCLE",
        "SELECT nextval('sq_y'), nextval('sq_y'), nextval('sq_y'), nextval('sq_y')",
        "SELECT nextval('sq_y') FROM generate_series(1, 7)",
        "CREATE SEQUENCE sq_y2 INCREMENT -2 MINVALUE -5 MAXVALUE 0 START -1 CYCLE",
        "SELECT nextval('sq_y2'), nextval('sq_y2'), nextval('sq_y2'), nextval('sq_y2'), "
        "nextval('sq_y2')",
        "ALTER SEQUENCE sq_y NO CYCLE",
        "SELECT nextval('sq_y'), nextval('sq_y')",
        "SELECT nextval('sq_y')",
        "ALTER SEQUENCE sq_y CYCLE",
        "SELECT nextval('sq_y')",
    ],
    "types": [
        "CREATE SEQUENCE sq_t AS smallint",
        "CREATE SEQUENCE sq_t2 AS integer INCREMENT -3",
        "SELECT sequencename, data_type::text, start_value, min_value, max_value, increment_by "
        "FROM pg_sequences WHERE sequencename IN ('sq_t', 'sq_t2') ORDER BY 1",
        "ALTER SEQUENCE sq_t AS integer",
        "SELECT data_type::text, max_value FROM pg_sequences WHERE sequencename = 'sq_t'",
        "ALTER SEQUENCE sq_t AS smallint",
        "ALTER SEQUENCE sq_t MAXVALUE 10",
        "ALTER SEQUENCE sq_t AS bigint",
        "SELECT data_type::text, max_value FROM pg_sequences WHERE sequencename = 'sq_t'",
        "ALTER SEQUENCE sq_t NO MAXVALUE",
        "SELECT data_type::text, max_value FROM pg_sequences WHERE sequencename = 'sq_t'",
        "ALTER SEQUENCE sq_t AS smallint MAXVALUE 100000",
        # a bound at the old type's extreme goes to the new type's, whatever the direction
        "CREATE SEQUENCE sq_t3 INCREMENT -1",
        "ALTER SEQUENCE sq_t3 INCREMENT 1",
        "ALTER SEQUENCE sq_t3 AS smallint",
        "SELECT min_value, max_value FROM pg_sequences WHERE sequencename = 'sq_t3'",
        "SELECT nextval('sq_t3'), nextval('sq_t3')",
        "ALTER SEQUENCE sq_t3 AS integer NO MINVALUE",
        "SELECT min_value, max_value FROM pg_sequences WHERE sequencename = 'sq_t3'",
    ],
    "alter": [
        "CREATE SEQUENCE sq_a MAXVALUE 3",
        "SELECT nextval('sq_a'), nextval('sq_a')",
        "ALTER SEQUENCE sq_a RESTART",
        "SELECT currval('sq_a')",
        "SELECT last_value, is_called FROM sq_a",
        "SELECT nextval('sq_a')",
        "ALTER SEQUENCE sq_a RESTART WITH 3",
        "SELECT nextval('sq_a')",
        "ALTER SEQUENCE sq_a RESTART WITH 4",
        "ALTER SEQUENCE sq_a RESTART 0",
        "ALTER SEQUENCE sq_a START 2",
        "SELECT nextval('sq_a')",
        "ALTER SEQUENCE sq_a MAXVALUE 2",
        "ALTER SEQUENCE sq_a MAXVALUE 3 MINVALUE 4",
        "ALTER SEQUENCE sq_a INCREMENT 0",
        "ALTER SEQUENCE sq_a START 5",
        "ALTER SEQUENCE sq_a MAXVALUE 10 INCREMENT 2 RESTART WITH 1",
        "SELECT nextval('sq_a'), nextval('sq_a')",
        "ALTER SEQUENCE sq_a INCREMENT BY 1 BY 2",
        "ALTER SEQUENCE sq_a RESTART WITH 'a'",
        "ALTER SEQUENCE sq_a START WITH 2.5",
        "ALTER SEQUENCE sq_a",
        "ALTER SEQUENCE sq_a BOGUS",
        "ALTER SEQUENCE sq_a NO CACHE",
        "ALTER SEQUENCE sq_a NO",
        "ALTER SEQUENCE sq_a SET LOGGED",
        "ALTER SEQUENCE IF EXISTS sq_nosuch RESTART",
        "ALTER SEQUENCE sq_nosuch RESTART",
        "CREATE TABLE sq_tab (a int)",
        "ALTER SEQUENCE sq_tab RESTART",
        "ALTER SEQUENCE sq_tab RENAME TO sq_tab2",
        "ALTER SEQUENCE sq_a MINVALUE -9223372036854775808",
        "SELECT setval('sq_a', 10000)",
        "ALTER SEQUENCE sq_a SET SCHEMA sq_schema",
        "SELECT nextval('sq_schema.sq_a')",
        "SELECT nextval('sq_a')",
        'CREATE SEQUENCE "Sq_Q" START 3',
        "SELECT nextval('\"Sq_Q\"')",
        'ALTER SEQUENCE "Sq_Q" RESTART',
        "SELECT nextval('\"Sq_Q\"')",
    ],
    "block": [
        "CREATE SEQUENCE sq_x",
        "SELECT nextval('sq_x'), nextval('sq_x')",
        "BEGIN",
        "ALTER SEQUENCE sq_x RESTART WITH 100",
        "SELECT nextval('sq_x')",
        "SELECT currval('sq_x')",
        "ROLLBACK",
        "SELECT nextval('sq_x')",
        "BEGIN",
        "ALTER SEQUENCE sq_x RESTART WITH 50",
        "SELECT nextval('sq_x')",
        "COMMIT",
        "SELECT nextval('sq_x')",
        "BEGIN",
        "SAVEPOINT a",
        "ALTER SEQUENCE sq_x INCREMENT 10 MAXVALUE 1000",
        "SELECT nextval('sq_x')",
        "ROLLBACK TO a",
        "SELECT nextval('sq_x')",
        "SELECT increment_by, max_value FROM pg_sequences WHERE sequencename = 'sq_x'",
        "COMMIT",
        "BEGIN",
        "ALTER SEQUENCE sq_x MAXVALUE 60 CYCLE",
        "SELECT nextval('sq_x')",
        "COMMIT",
        "SELECT max_value, cycle FROM pg_sequences WHERE sequencename = 'sq_x'",
        "BEGIN",
        "ALTER SEQUENCE sq_x MAXVALUE 2",
        "ROLLBACK",
        "SELECT nextval('sq_x')",
    ],
    "identity": [
        "CREATE TABLE sq_id (id int GENERATED ALWAYS AS IDENTITY, a serial, b smallserial)",
        "SELECT sequencename, data_type::text, max_value FROM pg_sequences "
        "WHERE sequencename LIKE 'sq_id%' ORDER BY 1",
        "ALTER TABLE sq_id ALTER COLUMN id RESTART WITH 10",
        "INSERT INTO sq_id DEFAULT VALUES RETURNING id",
        "ALTER TABLE sq_id ALTER COLUMN id SET INCREMENT BY 5",
        "INSERT INTO sq_id DEFAULT VALUES RETURNING id",
        "ALTER TABLE sq_id ALTER COLUMN id SET START WITH 100 RESTART",
        "INSERT INTO sq_id DEFAULT VALUES RETURNING id",
        "ALTER TABLE sq_id ALTER COLUMN id SET MAXVALUE 100",
        "INSERT INTO sq_id DEFAULT VALUES RETURNING id",
        "ALTER TABLE sq_id ALTER COLUMN id SET CYCLE SET MINVALUE 1",
        "INSERT INTO sq_id DEFAULT VALUES RETURNING id",
        "ALTER TABLE sq_id ALTER COLUMN a RESTART",
        "ALTER TABLE sq_id ALTER COLUMN nosuch RESTART",
        "ALTER TABLE sq_id ALTER COLUMN id SET INCREMENT BY 2 SET INCREMENT BY 3",
        "ALTER TABLE sq_id ALTER COLUMN id SET CACHE 0",
        "ALTER TABLE IF EXISTS sq_nosuch ALTER COLUMN id RESTART",
        "ALTER TABLE sq_id ALTER COLUMN id SET GENERATED BY DEFAULT",
        "INSERT INTO sq_id (id) VALUES (7) RETURNING id",
        "ALTER TABLE sq_id ALTER id SET GENERATED ALWAYS RESTART WITH 2",
        "INSERT INTO sq_id DEFAULT VALUES RETURNING id",
        "CREATE TABLE sq_id2 (id int GENERATED BY DEFAULT AS IDENTITY "
        "(START WITH 10 INCREMENT BY 2 MAXVALUE 14), v int)",
        "SELECT table_name, column_name, is_identity, identity_generation, identity_start, "
        "identity_increment, identity_maximum, identity_minimum, identity_cycle "
        "FROM information_schema.columns WHERE table_name LIKE 'sq_id%' ORDER BY 1, 2",
        "INSERT INTO sq_id2 (v) VALUES (1), (2), (3) RETURNING id",
        "INSERT INTO sq_id2 (v) VALUES (4) RETURNING id",
        "CREATE TABLE sq_id3 (id text GENERATED ALWAYS AS IDENTITY)",
        "CREATE TABLE sq_id3 (id numeric GENERATED BY DEFAULT AS IDENTITY)",
        "ALTER TABLE sq_id2 ADD COLUMN w text GENERATED BY DEFAULT AS IDENTITY",
    ],
    "add-column-identity": [
        "CREATE TABLE sq_ac (v int)",
        "INSERT INTO sq_ac VALUES (3), (1), (2)",
        # the existing rows take the sequence's values in their order
        "ALTER TABLE sq_ac ADD COLUMN id int GENERATED ALWAYS AS IDENTITY "
        "(START 10 INCREMENT 5 MAXVALUE 100)",
        "SELECT v, id FROM sq_ac ORDER BY id",
        "SELECT last_value, start_value, increment_by, max_value, data_type::text "
        "FROM pg_sequences WHERE sequencename = 'sq_ac_id_seq'",
        "INSERT INTO sq_ac (v) VALUES (4) RETURNING id",
        "ALTER TABLE sq_ac ADD COLUMN id2 bigint GENERATED BY DEFAULT AS IDENTITY "
        "(SEQUENCE NAME sq_ac_named INCREMENT -1)",
        "SELECT v, id2 FROM sq_ac ORDER BY id2",
        "SELECT sequencename, last_value, min_value, max_value FROM pg_sequences "
        "WHERE sequencename LIKE 'sq_ac%' ORDER BY 1",
        "ALTER TABLE sq_ac ADD COLUMN id3 int GENERATED ALWAYS AS IDENTITY (AS bigint)",
        "ALTER TABLE sq_ac ADD COLUMN id3 int GENERATED ALWAYS AS IDENTITY ()",
        "ALTER TABLE sq_ac ADD COLUMN id3 smallint GENERATED ALWAYS AS IDENTITY (START 40000)",
        "ALTER TABLE sq_ac ADD COLUMN id3 int GENERATED ALWAYS AS IDENTITY "
        "(SEQUENCE NAME sq_ac_named)",
        "ALTER TABLE sq_ac ADD COLUMN id3 int GENERATED ALWAYS AS IDENTITY (MAXVALUE 2)",
        "SELECT count(*) FROM pg_sequences WHERE sequencename LIKE 'sq_ac%'",
    ],
    "add-identity": [
        "CREATE TABLE sq_ai (id integer NOT NULL, a int, b int DEFAULT 3 NOT NULL, "
        "c text NOT NULL, d serial)",
        "INSERT INTO sq_ai (id, a, b, c) VALUES (1, 1, 1, 'x')",
        "ALTER TABLE sq_ai ALTER COLUMN a ADD GENERATED ALWAYS AS IDENTITY",
        "ALTER TABLE sq_ai ALTER COLUMN b ADD GENERATED ALWAYS AS IDENTITY",
        "ALTER TABLE sq_ai ALTER COLUMN c ADD GENERATED ALWAYS AS IDENTITY",
        "ALTER TABLE sq_ai ALTER COLUMN d ADD GENERATED ALWAYS AS IDENTITY",
        "ALTER TABLE sq_ai ALTER COLUMN nosuch ADD GENERATED ALWAYS AS IDENTITY",
        # pg_dump's form, then its setval
        "ALTER TABLE sq_ai ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (SEQUENCE NAME "
        "public.sq_ai_id_seq START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1)",
        "ALTER TABLE sq_ai ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY",
        "SELECT pg_catalog.setval('public.sq_ai_id_seq', 7, true)",
        "INSERT INTO sq_ai (a, b, c) VALUES (1, 1, 'x') RETURNING id",
        "SELECT column_name, column_default, is_identity, identity_generation, identity_start "
        "FROM information_schema.columns WHERE table_name = 'sq_ai' ORDER BY 1",
        "SELECT sequencename, data_type::text FROM pg_sequences WHERE sequencename LIKE 'sq_ai%' "
        "ORDER BY 1",
        "SELECT count(*) FROM pg_attrdef WHERE adrelid = 'sq_ai'::regclass",
        "DROP TABLE sq_ai",
        "SELECT count(*) FROM pg_sequences WHERE sequencename LIKE 'sq_ai%'",
    ],
    "drop-identity": [
        "CREATE TABLE sq_di (id int GENERATED ALWAYS AS IDENTITY, a int)",
        "DROP SEQUENCE sq_di_id_seq",
        "DROP SEQUENCE sq_di_id_seq CASCADE",
        "ALTER SEQUENCE sq_di_id_seq OWNED BY NONE",
        "ALTER SEQUENCE sq_di_id_seq OWNED BY sq_di.a",
        "INSERT INTO sq_di (a) VALUES (0) RETURNING id",
        "ALTER TABLE sq_di ALTER COLUMN a DROP IDENTITY",
        "ALTER TABLE sq_di ALTER COLUMN a DROP IDENTITY IF EXISTS",
        "ALTER TABLE sq_di ALTER COLUMN nosuch DROP IDENTITY",
        "ALTER TABLE sq_di ALTER COLUMN id DROP IDENTITY",
        "SELECT count(*) FROM pg_sequences WHERE sequencename = 'sq_di_id_seq'",
        "INSERT INTO sq_di (id, a) VALUES (5, 1) RETURNING id",
        "INSERT INTO sq_di (a) VALUES (1) RETURNING id",
        "SELECT column_name, is_identity, column_default, is_nullable "
        "FROM information_schema.columns WHERE table_name = 'sq_di' ORDER BY 1",
    ],
    "catalog": [
        "CREATE SEQUENCE sq_v AS integer INCREMENT 5 MINVALUE 3 MAXVALUE 300 START 10 CACHE 2 "
        "CYCLE",
        "SELECT schemaname, sequencename, sequenceowner, data_type::text, start_value, "
        "min_value, max_value, increment_by, cycle, cache_size, last_value FROM pg_sequences "
        "WHERE sequencename = 'sq_v'",
        "SELECT seqtypid::regtype::text, seqstart, seqincrement, seqmax, seqmin, seqcache, "
        "seqcycle FROM pg_sequence WHERE seqrelid = 'sq_v'::regclass",
        "SELECT * FROM information_schema.sequences WHERE sequence_name = 'sq_v'",
        "SELECT nextval('sq_v')",
        "ALTER SEQUENCE sq_v NO CYCLE MAXVALUE 20",
        # (not last_value: PostgreSQL's shows the values a CACHE above 1 took ahead)
        "SELECT max_value, cycle FROM pg_sequences WHERE sequencename = 'sq_v'",
    ],
    "owned-by": [
        "CREATE TABLE sq_o (v int)",
        "CREATE SEQUENCE sq_ob OWNED BY sq_o.v",
        "CREATE SEQUENCE sq_ob2 OWNED BY sq_o.nope",
        "CREATE SEQUENCE sq_ob3",
        "ALTER SEQUENCE sq_ob3 OWNED BY sq_nosuch.x",
        "ALTER SEQUENCE sq_ob3 OWNED BY sq_o",
        "ALTER SEQUENCE sq_ob3 OWNED BY sq_o.v MAXVALUE 5",
        "SELECT max_value FROM pg_sequences WHERE sequencename = 'sq_ob3'",
        "ALTER SEQUENCE sq_ob3 OWNED BY sq_o.v MINVALUE 10",
        "SELECT min_value FROM pg_sequences WHERE sequencename = 'sq_ob3'",
        # an owned sequence is refused before the target schema is looked at
        "ALTER SEQUENCE sq_ob3 SET SCHEMA sq_nosuch",
        "ALTER SEQUENCE sq_ob3 SET SCHEMA public",
        "DROP TABLE sq_o",
        "SELECT count(*) FROM pg_sequences WHERE sequencename LIKE 'sq_ob%'",
    ],
    "lastval": [
        "SELECT lastval()",
        "CREATE SEQUENCE sq_l",
        "CREATE SEQUENCE sq_l2 START 10",
        "SELECT lastval()",
        "SELECT nextval('sq_l'), lastval()",
        "SELECT nextval('sq_l2')",
        "SELECT lastval()",
        "SELECT setval('sq_l', 50)",
        "SELECT lastval()",  # setval of another sequence: still sq_l2's
        "SELECT setval('sq_l2', 70)",
        "SELECT lastval()",
        "SELECT setval('sq_l2', 80, false)",
        "SELECT lastval()",
        "ALTER SEQUENCE sq_l2 RENAME TO sq_l3",
        "SELECT lastval()",
        "SELECT currval('sq_l3')",
        "DROP SEQUENCE sq_l3",
        "SELECT lastval()",
        "CREATE SEQUENCE sq_l3",
        "SELECT lastval()",
        "SELECT lastval(1)",
        "CREATE TABLE sq_s (id serial, a int)",
        "INSERT INTO sq_s (a) VALUES (1), (2)",
        "SELECT lastval()",
    ],
    "drop-serial": [
        "CREATE TABLE sq_s (id serial, a int, b bigserial)",
        "CREATE SEQUENCE sq_l",
        "CREATE SEQUENCE sq_l2",
        "DROP SEQUENCE sq_s_id_seq",
        "DROP SEQUENCE sq_l, sq_s_id_seq",
        "SELECT count(*) FROM pg_sequences WHERE sequencename = 'sq_l'",
        "DROP SEQUENCE sq_l, sq_nosuch, sq_l2",
        "SELECT count(*) FROM pg_sequences WHERE sequencename = 'sq_l'",
        "DROP SEQUENCE IF EXISTS sq_nosuch, sq_l",
        "DROP SEQUENCE sq_l2, sq_l",
        "DROP SEQUENCE sq_s_id_seq RESTRICT",
        "DROP SEQUENCE sq_s_id_seq CASCADE",
        "SELECT column_name, column_default FROM information_schema.columns "
        "WHERE table_name = 'sq_s' ORDER BY 1",
        "INSERT INTO sq_s (a) VALUES (2) RETURNING id",
        "INSERT INTO sq_s (id, a) VALUES (7, 2) RETURNING id, b",
        "CREATE TABLE sq_tab (x int DEFAULT nextval('sq_s_b_seq'), y int)",
        "DROP SEQUENCE sq_s_b_seq",
        "DROP SEQUENCE sq_s_b_seq CASCADE",
        "SELECT table_name, column_name, column_default FROM information_schema.columns "
        "WHERE table_name IN ('sq_s', 'sq_tab') ORDER BY 1, 2",
    ],
    "unlogged": [
        "CREATE UNLOGGED SEQUENCE sq_u START 3",
        "SELECT relpersistence FROM pg_class WHERE relname = 'sq_u'",
        "SELECT nextval('sq_u')",
        "ALTER SEQUENCE sq_u SET LOGGED",
        "SELECT relpersistence FROM pg_class WHERE relname = 'sq_u'",
        "ALTER SEQUENCE sq_u SET UNLOGGED",
        "ALTER SEQUENCE IF EXISTS sq_u SET UNLOGGED",
        "SELECT relpersistence, last_value FROM pg_class, sq_u WHERE relname = 'sq_u'",
        "ALTER SEQUENCE sq_u SET LOGGED CACHE 5",
        "ALTER SEQUENCE sq_u CACHE 5 SET LOGGED",
        "ALTER SEQUENCE sq_u SET",
        "CREATE UNLOGGED SEQUENCE IF NOT EXISTS sq_u",
        "SELECT nextval('sq_u')",
        "CREATE UNLOGGED SEQUENCE sq_u2 MAXVALUE 2 CYCLE",
        "SELECT nextval('sq_u2'), nextval('sq_u2'), nextval('sq_u2')",
        "CREATE TABLE sq_s (id serial, b int GENERATED ALWAYS AS IDENTITY)",
        "ALTER SEQUENCE sq_s_id_seq SET UNLOGGED",
        "ALTER SEQUENCE sq_s_b_seq SET UNLOGGED",
        "SELECT relname, relpersistence FROM pg_class WHERE relname LIKE 'sq_s%' ORDER BY 1",
        "INSERT INTO sq_s DEFAULT VALUES RETURNING id, b",
        "DROP TABLE sq_s",
    ],
    "identity-options": [
        "CREATE TABLE sq_s (id int GENERATED ALWAYS AS IDENTITY (CACHE 5 SEQUENCE NAME sq_s_ids "
        "NO CYCLE START 3), a int)",
        "SELECT sequencename, data_type::text, start_value, cache_size, cycle FROM pg_sequences "
        "WHERE sequencename LIKE 'sq_s%' ORDER BY 1",
        "INSERT INTO sq_s (a) VALUES (1) RETURNING id",
        "CREATE TABLE sq_tab (id bigint GENERATED BY DEFAULT AS IDENTITY (INCREMENT BY 2 "
        "MINVALUE 0 MAXVALUE 9 CYCLE CACHE 3), b smallint GENERATED ALWAYS AS IDENTITY "
        "(MAXVALUE 5 START WITH 4))",
        "SELECT sequencename, data_type::text, min_value, max_value, increment_by, cache_size, "
        "cycle FROM pg_sequences WHERE sequencename LIKE 'sq_tab%' ORDER BY 1",
        "INSERT INTO sq_tab DEFAULT VALUES RETURNING id, b",
        "INSERT INTO sq_tab DEFAULT VALUES RETURNING id, b",
        "INSERT INTO sq_tab DEFAULT VALUES RETURNING id, b",
        "CREATE TABLE sq_id (id int GENERATED ALWAYS AS IDENTITY (AS bigint))",
        "CREATE TABLE sq_id (id int GENERATED ALWAYS AS IDENTITY (START 1 MINVALUE 0 START 2))",
        "CREATE TABLE sq_id (id int GENERATED ALWAYS AS IDENTITY (CACHE 0))",
        "CREATE TABLE sq_id (id int GENERATED ALWAYS AS IDENTITY ())",
        "CREATE TABLE sq_id (id int GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME sq_s_ids))",
        "CREATE TABLE sq_id (id int GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME public.sq_id_s "
        "MAXVALUE 2))",
        "INSERT INTO sq_id VALUES (DEFAULT), (DEFAULT), (DEFAULT)",
        "SELECT count(*) FROM sq_id",
        "DROP TABLE sq_s, sq_tab, sq_id",
        "SELECT count(*) FROM pg_sequences WHERE sequencename IN "
        "('sq_s_ids', 'sq_tab_id_seq', 'sq_tab_b_seq', 'sq_id_s')",
    ],
}
CLEAN = ["DROP TABLE IF EXISTS sq_id, sq_id2, sq_id3, sq_o, sq_tab, sq_ai, sq_di, sq_s CASCADE",
         "DROP SCHEMA IF EXISTS sq_schema CASCADE", "CREATE SCHEMA sq_schema"] + [
    f"DROP SEQUENCE IF EXISTS {name}" for name in (
        "sq_c", "sq_c2", "sq_b", "sq_b2", "sq_y", "sq_y2", "sq_t", "sq_t2", "sq_t3", "sq_a", '"Sq_Q"',
        "sq_x", "sq_v", "sq_ob", "sq_ob2", "sq_ob3", "sq_w", "sq_l", "sq_l2", "sq_l3", "sq_u",
        "sq_u2", "sq_ch3")]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """The URIs of PostgreSQL and of a sqlvec server (with its default workers)."""
    with beside_postgres(tmp_path_factory, "seqopts") as (sqlvec, postgres):
        yield {"postgres": postgres, "sqlvec": sqlvec}


def outcomes(uri: str, statements: list[str]) -> list[tuple]:
    """Each statement's rows (or command tag), or its error's SQLSTATE and message."""
    return script_outcomes(uri, CLEAN, statements)


@pytest.mark.parametrize("script", SCRIPTS)
def test_same_as_postgres(servers, script):
    expected = outcomes(servers["postgres"], SCRIPTS[script])
    assert outcomes(servers["sqlvec"], SCRIPTS[script]) == expected


def test_postgres_answers_as_the_scripts_expect(servers):
    """The reference itself: the scripts exercise the bounds and the errors they mean to."""
    bounds = outcomes(servers["postgres"], SCRIPTS["bounds"])
    assert bounds[2][1:] == ("2200H", 'nextval: reached maximum value of sequence "sq_b" (3)')
    assert bounds[4][1:] == ("22003", 'setval: value 0 is out of bounds for sequence "sq_b" '
                                      "(1..3)")
    assert bounds[7][1] == [(2, False)]  # setval(.., false): the value nextval gives next
    cycle = outcomes(servers["postgres"], SCRIPTS["cycle"])
    assert cycle[1][1] == [(1, 2, 3, 1)]
    block = outcomes(servers["postgres"], SCRIPTS["block"])
    assert block[7][1] == [(3,)]  # the rolled-back RESTART is undone


def test_psql_describes_a_sequence_as_postgres(servers):
    def described(uri: str) -> str:
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("DROP SEQUENCE IF EXISTS sq_d")
            conn.execute("CREATE SEQUENCE sq_d AS smallint INCREMENT 5 MINVALUE 3 "
                         "MAXVALUE 300 START 10 CACHE 2 CYCLE")
        return subprocess.run(["psql", uri, "-X", "-c", r"\d sq_d", "-c",
                               "ALTER SEQUENCE sq_d SET UNLOGGED", "-c", r"\d sq_d"],
                              capture_output=True, text=True, timeout=30, check=True).stdout
    text = described(servers["sqlvec"])
    assert text == described(servers["postgres"])
    assert "smallint |    10 |       3 |     300 |         5 | yes     |     2" in text
    assert 'Unlogged sequence "public.sq_d"' in text


def test_moving_an_owned_sequence_names_its_table(servers):
    def detail(uri: str) -> str | None:
        with psycopg.connect(uri, autocommit=True) as conn:
            for sql in CLEAN + ["CREATE TABLE sq_o (v serial)"]:
                conn.execute(sql)
            with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
                conn.execute("ALTER SEQUENCE sq_o_v_seq SET SCHEMA sq_schema")
            conn.execute("DROP TABLE sq_o")
        return caught.value.diag.message_detail
    assert detail(servers["sqlvec"]) == detail(servers["postgres"]) == \
        'Sequence "sq_o_v_seq" is linked to table "sq_o".'


@pytest.mark.parametrize("sql", [
    "CREATE TEMP SEQUENCE sq_u",
    "CREATE TEMPORARY SEQUENCE sq_u",
])
def test_what_is_not_supported_says_so(servers, sql):
    with psycopg.connect(servers["sqlvec"], autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE IF NOT EXISTS sq_w")
        with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
            conn.execute(sql)
    assert "SEQUENCE" in str(caught.value).upper()


def test_another_worker_sees_an_alter_at_once(servers):
    a, b = on_two_workers(lambda: psycopg.connect(servers["sqlvec"], autocommit=True))
    with a, b:
        a.execute("DROP SEQUENCE IF EXISTS sq_w")
        a.execute("CREATE SEQUENCE sq_w MAXVALUE 100")
        assert [a.execute("SELECT nextval('sq_w')").fetchone()[0] for _ in range(3)] == [1, 2, 3]
        assert b.execute("SELECT last_value, is_called FROM sq_w").fetchone() == (3, True)
        a.execute("ALTER SEQUENCE sq_w MAXVALUE 50 RESTART WITH 49")
        assert b.execute("SELECT last_value, is_called FROM sq_w").fetchone() == (49, False)
        assert b.execute("SELECT max_value, last_value FROM pg_sequences "
                         "WHERE sequencename = 'sq_w'").fetchone() == (50, None)
        assert b.execute("SELECT nextval('sq_w')").fetchone() == (49,)
        assert a.execute("SELECT nextval('sq_w')").fetchone() == (50,)
        with pytest.raises(psycopg.errors.SequenceGeneratorLimitExceeded):
            b.execute("SELECT nextval('sq_w')")
        a.execute("ALTER SEQUENCE sq_w CYCLE")
        assert b.execute("SELECT nextval('sq_w')").fetchone() == (1,)


def test_dropping_a_default_s_sequence_explains_as_postgres(servers):
    """DROP SEQUENCE of a sequence a column default calls: PostgreSQL's DETAIL and HINT
    without CASCADE, and the NOTICE naming the defaults that go with CASCADE."""
    def messages(uri: str) -> list:
        out: list = []
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.add_notice_handler(lambda d: out.append((d.message_primary, d.message_detail)))
            for sql in CLEAN + ["CREATE TABLE sq_s (id serial, a int)",
                                "CREATE TABLE sq_tab (x int DEFAULT nextval('sq_s_id_seq'))"]:
                conn.execute(sql)
            out.clear()
            with pytest.raises(psycopg.errors.DependentObjectsStillExist) as caught:
                conn.execute("DROP SEQUENCE sq_s_id_seq")
            out.append((caught.value.diag.message_detail, caught.value.diag.message_hint))
            conn.execute("DROP SEQUENCE sq_s_id_seq CASCADE")
            conn.execute("DROP TABLE sq_s, sq_tab")
        return out
    got = messages(servers["sqlvec"])
    assert got == messages(servers["postgres"])
    assert got[1] == ("drop cascades to 2 other objects",
                      "drop cascades to default value for column id of table sq_s\n"
                      "drop cascades to default value for column x of table sq_tab")


def test_lastval_is_the_session_s_on_any_worker(servers):
    """lastval() is per session: a connection served by a worker process gets the value its
    own nextval() took, another connection's nextval does not change it."""
    a, b = on_two_workers(lambda: psycopg.connect(servers["sqlvec"], autocommit=True))
    with a, b:
        a.execute("DROP SEQUENCE IF EXISTS sq_w")
        a.execute("CREATE SEQUENCE sq_w")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            b.execute("SELECT lastval()")
        assert b.execute("SELECT nextval('sq_w')").fetchone() == (1,)
        assert a.execute("SELECT nextval('sq_w'), lastval()").fetchone() == (2, 2)
        assert b.execute("SELECT lastval()").fetchone() == (1,)
        assert a.execute("SELECT lastval()").fetchone() == (2,)


# (connection, statement): two sessions taking values of sequences with CACHE > 1.
CACHED = [
    (0, "CREATE SEQUENCE sq_ch CACHE 10"),
    (0, "SELECT last_value, is_called FROM sq_ch"),
    (0, "SELECT nextval('sq_ch')"),
    (0, "SELECT last_value, is_called FROM sq_ch"),
    (1, "SELECT last_value FROM pg_sequences WHERE sequencename = 'sq_ch'"),
    (1, "SELECT nextval('sq_ch'), nextval('sq_ch')"),
    (0, "SELECT nextval('sq_ch'), currval('sq_ch'), lastval()"),
    (0, "SELECT last_value, is_called FROM sq_ch"),
    (0, "SELECT setval('sq_ch', 100)"),
    (0, "SELECT nextval('sq_ch')"),
    (1, "SELECT nextval('sq_ch')"),
    (0, "ALTER SEQUENCE sq_ch RESTART"),
    (0, "SELECT nextval('sq_ch')"),
    (1, "SELECT nextval('sq_ch')"),
    (1, "DISCARD SEQUENCES"),
    (1, "SELECT currval('sq_ch')"),
    (1, "SELECT nextval('sq_ch')"),
    (0, "SELECT nextval('sq_ch') FROM generate_series(1, 12)"),
    (0, "SELECT last_value FROM sq_ch"),
    (0, "CREATE SEQUENCE sq_ch2 CACHE 5 MAXVALUE 7"),
    (0, "SELECT nextval('sq_ch2')"),
    (1, "SELECT nextval('sq_ch2'), nextval('sq_ch2')"),
    (1, "SELECT last_value FROM sq_ch2"),
    (1, "SELECT nextval('sq_ch2')"),
    (0, "SELECT nextval('sq_ch2') FROM generate_series(1, 4)"),
    (0, "SELECT nextval('sq_ch2')"),
    (0, "CREATE TABLE sq_tab (id bigserial, a int)"),
    (0, "ALTER SEQUENCE sq_tab_id_seq CACHE 4"),
    (1, "INSERT INTO sq_tab (a) VALUES (1), (2), (3), (4), (5) RETURNING id"),
    (0, "INSERT INTO sq_tab (a) VALUES (6) RETURNING id"),
    (1, "INSERT INTO sq_tab (a) VALUES (7) RETURNING id"),
    (0, "DROP SEQUENCE sq_ch, sq_ch2"),
    (0, "DROP TABLE sq_tab"),
]


# What a session's cache holds after ALTER SEQUENCE and at a cycling sequence's bound.
CACHED_EDGES = [
    (0, "CREATE SEQUENCE sq_ch CACHE 10"),
    (0, "SELECT nextval('sq_ch')"),
    (0, "ALTER SEQUENCE sq_ch INCREMENT BY 100"),
    (0, "SELECT nextval('sq_ch')"),
    (1, "SELECT nextval('sq_ch')"),
    (0, "CREATE SEQUENCE sq_ch2 CACHE 3 MAXVALUE 5 CYCLE"),
    (0, "SELECT nextval('sq_ch2')"),
    (1, "SELECT nextval('sq_ch2')"),
    (0, "SELECT last_value FROM sq_ch2"),
    (1, "SELECT nextval('sq_ch2'), nextval('sq_ch2'), nextval('sq_ch2')"),
    (0, "SELECT nextval('sq_ch2'), nextval('sq_ch2'), nextval('sq_ch2')"),
    (0, "ALTER SEQUENCE sq_ch RENAME TO sq_ch3"),
    (0, "SELECT nextval('sq_ch3')"),
    (1, "SELECT nextval('sq_ch3')"),
    (0, "DROP SEQUENCE sq_ch3, sq_ch2"),
]


def cached_outcomes(uri: str, script: list[tuple[int, str]] = CACHED) -> list[tuple]:
    """`script` (`CACHED`) run on two connections: each statement's rows (or tag), or its
    error."""
    with psycopg.connect(uri, autocommit=True) as a, psycopg.connect(uri, autocommit=True) as b:
        for sql in CLEAN:
            a.execute(sql)
        out: list[tuple] = []
        for which, sql in script:
            try:
                cur = (a, b)[which].execute(sql)
                out.append((sql, cur.fetchall() if cur.description else cur.statusmessage))
            except psycopg.Error as exc:
                out.append((sql, exc.sqlstate, exc.diag.message_primary))
    return out


def test_each_session_caches_values_as_postgres(servers):
    """CACHE n: a session takes n values at once (the sequence's last value is the last of
    them), hands them out itself, and loses them to setval, a restart or DISCARD SEQUENCES."""
    expected = cached_outcomes(servers["postgres"])
    assert expected[3][1] == [(10, True)] and expected[5][1] == [(11, 12)]
    assert cached_outcomes(servers["sqlvec"]) == expected


def test_a_session_s_cache_after_alter_and_at_a_cycle_as_postgres(servers):
    """ALTER SEQUENCE drops the altering session's cached values (another session keeps its
    own); a cache stops at the bound of a cycling sequence rather than wrapping within it; a
    renamed sequence keeps its sessions' cached values."""
    expected = cached_outcomes(servers["postgres"], CACHED_EDGES)
    assert expected[3][1] == [(110,)]
    assert cached_outcomes(servers["sqlvec"], CACHED_EDGES) == expected
