"""Settings with units parse, range-check and print as PostgreSQL 16's GUCs do (the expected
values and messages are PostgreSQL's own)."""

from __future__ import annotations

import pytest

from sqlvec.catalog.settings import format_amount, parse_amount
from sqlvec.errors import InvalidParameterValue


@pytest.mark.parametrize("text, kb, shown", [
    ("64MB", 65536, "64MB"), ("1.5MB", 1536, "1536kB"), ("100 MB", 102400, "100MB"),
    ("65536", 65536, "64MB"), ("64kB", 64, "64kB"), ("1GB", 1 << 20, "1GB"),
    ("0.5GB", 1 << 19, "512MB"), ("'256MB'", 262144, "256MB"),
])
def test_work_mem_values(text, kb, shown):
    assert parse_amount("work_mem", text) == kb
    assert format_amount("work_mem", kb) == shown


@pytest.mark.parametrize("text, message, hint", [
    ("abc", 'invalid value for parameter "work_mem": "abc"', None),
    ("10mb", 'invalid value for parameter "work_mem": "10mb"',
     'Valid units for this parameter are "B", "kB", "MB", "GB", and "TB".'),
    ("3TB", 'invalid value for parameter "work_mem": "3TB"', "Value exceeds integer range."),
    ("32", '32 kB is outside the valid range for parameter "work_mem" (64 kB .. 2147483647 kB)',
     None),
    ("2048B", '2 kB is outside the valid range for parameter "work_mem" (64 kB .. 2147483647 kB)',
     None),
    ("-1", '-1 kB is outside the valid range for parameter "work_mem" (64 kB .. 2147483647 kB)',
     None),
])
def test_bad_work_mem_values_are_22023(text, message, hint):
    with pytest.raises(InvalidParameterValue) as caught:
        parse_amount("work_mem", text)
    assert caught.value.sqlstate == "22023"
    assert caught.value.message == message and caught.value.hint == hint


@pytest.mark.parametrize("text, ms, shown", [
    ("1d", 86_400_000, "1d"), ("1.5s", 1500, "1500ms"), ("200", 200, "200ms"), ("5s", 5000, "5s"),
    ("0", 0, "0"), ("10 min", 600_000, "10min"), ("1000", 1000, "1s"),
])
def test_statement_timeout_values(text, ms, shown):
    assert parse_amount("statement_timeout", text) == ms
    assert format_amount("statement_timeout", ms) == shown


def test_a_negative_statement_timeout_is_out_of_range():
    with pytest.raises(InvalidParameterValue, match=r"^-1 ms is outside the valid range for "
                       r'parameter "statement_timeout" \(0 ms \.\. 2147483647 ms\)$'):
        parse_amount("statement_timeout", "-1")


# Every setting, as PostgreSQL's GUCs: the expected messages and SQLSTATEs are PostgreSQL's own
# (PostgreSQL 16 + pgvector 0.8 answering the same SET statements).


@pytest.fixture
def session(tmp_path):
    from sqlvec.database import Database

    db = Database.open(str(tmp_path / "data"))
    s = db.connect("postgres", "postgres")
    yield s
    s.close()
    db.close()


def run(session, sql: str) -> list[tuple]:
    result = list(session.execute(sql))[-1]
    return [] if result.table is None else [tuple(r.values()) for r in result.table.to_pylist()]


def error_of(session, sql: str):
    from sqlvec.errors import SqlVecError

    with pytest.raises(SqlVecError) as caught:
        list(session.execute(sql))
    return caught.value


@pytest.mark.parametrize("sql, sqlstate, message, detail, hint", [
    ("SET hnsw.ef_serch = 100", "42602", 'invalid configuration parameter name "hnsw.ef_serch"',
     '"hnsw" is a reserved prefix.', None),
    ("SET sqlvec.exactly = on", "42602",
     'invalid configuration parameter name "sqlvec.exactly"', '"sqlvec" is a reserved prefix.',
     None),
    ("SET hnsw.ef_search = 'abc'", "22023", 'invalid value for parameter "hnsw.ef_search": "abc"',
     None, None),
    ("SET hnsw.ef_search = 0", "22023",
     '0 is outside the valid range for parameter "hnsw.ef_search" (1 .. 1000)', None, None),
    ("SET work_mem = 'abc'", "22023", 'invalid value for parameter "work_mem": "abc"', None,
     None),
    ("SET enable_seqscan = maybe", "22023", 'parameter "enable_seqscan" requires a Boolean value',
     None, None),
    ("SET extra_float_digits = 5", "22023",
     '5 is outside the valid range for parameter "extra_float_digits" (-15 .. 3)', None, None),
    ("SET nosuch = 1", "42704", 'unrecognized configuration parameter "nosuch"', None, None),
    ("SET client_min_messages = loud", "22023",
     'invalid value for parameter "client_min_messages": "loud"', None,
     "Available values: debug5, debug4, debug3, debug2, debug1, log, notice, warning, error."),
    ("SET DateStyle = 'foo'", "22023", 'invalid value for parameter "DateStyle": "foo"',
     'Unrecognized key word: "foo".', None),
    ("SET IntervalStyle = 'x'", "22023", 'invalid value for parameter "IntervalStyle": "x"', None,
     "Available values: postgres, postgres_verbose, sql_standard, iso_8601."),
    ("SET random_page_cost = -1", "22023",
     '-1 is outside the valid range for parameter "random_page_cost" (0 .. 1.79769e+308)', None,
     None),
    ("SET TimeZone = 'Nowhere/X'", "22023", 'invalid value for parameter "TimeZone": "Nowhere/X"',
     None, None),
    ("SET jit = 2", "22023", 'parameter "jit" requires a Boolean value', None, None),
    ("SET synchronous_commit = maybe", "22023",
     'invalid value for parameter "synchronous_commit": "maybe"', None,
     "Available values: local, remote_write, remote_apply, on, off."),
    ("SET sqlvec.target_recall = 'abc'", "22023",
     'invalid value for parameter "sqlvec.target_recall": "abc"', None,
     "Use a recall between 0 and 1, or off."),
    ("SET shared_buffers = '1GB'", "55P02",
     'parameter "shared_buffers" cannot be changed without restarting the server', None, None),
    ("SHOW nosuch", "42704", 'unrecognized configuration parameter "nosuch"', None, None),
    ("RESET nosuch", "42704", 'unrecognized configuration parameter "nosuch"', None, None),
])
def test_bad_settings_are_refused_as_postgresql_refuses_them(session, sql, sqlstate, message,
                                                            detail, hint):
    error = error_of(session, sql)
    assert (error.sqlstate, error.message, error.detail, error.hint) == \
        (sqlstate, message, detail, hint)


@pytest.mark.parametrize("sql, name, shown", [
    ("SET hnsw.ef_search = 1.5", "hnsw.ef_search", "2"),
    ("SET enable_seqscan = of", "enable_seqscan", "off"),
    ("SET enable_seqscan TO TRUE", "enable_seqscan", "on"),
    ("SET client_min_messages = WARNING", "client_min_messages", "warning"),
    ("SET random_page_cost = 1.10", "random_page_cost", "1.1"),
    ("SET work_mem = '1.5MB'", "work_mem", "1536kB"),
    ("SET lock_timeout = 60000", "lock_timeout", "1min"),
    ("SET effective_cache_size = '1GB'", "effective_cache_size", "1GB"),
    ("SET foo.bar = 'anything at all'", "foo.bar", "anything at all"),
    ("SET application_name = 'it''s'", "application_name", "it's"),
    ("SET sqlvec.target_recall = 0.90", "sqlvec.target_recall", "0.9"),
    ("SET TimeZone = 'Europe/Berlin'", "TimeZone", "Europe/Berlin"),
])
def test_good_values_are_stored_as_postgresql_shows_them(session, sql, name, shown):
    list(session.execute(sql))
    assert run(session, f"SHOW {name}") == [(shown,)]


def _bad_value(setting) -> str | None:
    return {"bool": "maybe", "integer": "not a number", "real": "not a number",
            "enum": "no_such_value"}.get(setting.vartype)


def test_every_setting_a_session_may_change_refuses_a_bad_value_and_keeps_its_old_one(session):
    from sqlvec.catalog.settings import SETTINGS

    checked = 0
    for name, setting in sorted(SETTINGS.items()):
        bad = _bad_value(setting)
        if setting.context not in ("user", "superuser") or bad is None:
            continue
        before = run(session, f"SELECT current_setting('{name}')")
        error = error_of(session, f"SELECT set_config('{name}', '{bad}', false)")
        assert error.sqlstate == "22023", (name, error.message)
        assert name in error.message, (name, error.message)
        assert run(session, f"SELECT current_setting('{name}')") == before, name
        checked += 1
    assert checked > 150  # PostgreSQL's typed user settings, pgvector's and ours


def test_pg_settings_describes_each_setting_as_postgresql_does(session):
    rows = run(session, "SELECT name, setting, unit, vartype, min_val, max_val, enumvals, "
                        "context, boot_val FROM pg_settings WHERE name IN ('work_mem', "
                        "'client_min_messages', 'enable_seqscan', 'hnsw.ef_search', "
                        "'random_page_cost', 'statement_timeout') ORDER BY name")
    assert rows == [
        ("client_min_messages", "notice", None, "enum", None, None,
         ["debug5", "debug4", "debug3", "debug2", "debug1", "log", "notice", "warning", "error"],
         "user", "notice"),
        ("enable_seqscan", "on", None, "bool", None, None, None, "user", "on"),
        ("hnsw.ef_search", "40", None, "integer", "1", "1000", None, "user", "40"),
        ("random_page_cost", "4", None, "real", "0", "1.79769e+308", None, "user", "4"),
        ("statement_timeout", "0", "ms", "integer", "0", "2147483647", None, "user", "0"),
        ("work_mem", "1048576", "kB", "integer", "64", "2147483647", None, "user", "1048576"),
    ]
    list(session.execute("SET work_mem = '64MB'"))
    assert run(session, "SELECT setting, source, reset_val FROM pg_settings "
                        "WHERE name = 'work_mem'") == [("65536", "session", "1048576")]
    assert run(session, "SELECT count(*) > 300 FROM pg_settings") == [(True,)]
