"""Sessions and the configuration files: sessions start from the files' values, ALTER SYSTEM
writes sqlvec.auto.conf with PostgreSQL's checks, pg_reload_conf() reaches sessions already
running (except what they set themselves, and settings fixed at start or connection), and
pg_settings says where each value comes from. Failed and slow statements reach the log with
their text (statement_log.py)."""

from __future__ import annotations

import logging

import pytest

from sqlvec.database import Database
from sqlvec.errors import SqlVecError

SOURCES = ("SELECT name, setting, source, sourcefile, sourceline, pending_restart "
           "FROM pg_settings WHERE name = $1")


@pytest.fixture
def data_dir(tmp_path):
    directory = tmp_path / "data"
    directory.mkdir()
    (directory / "sqlvec.conf").write_text("work_mem = '64MB'\n# comment\n"
                                           "statement_timeout = 5s\nmax_connections = 50\n")
    return directory


@pytest.fixture
def db(data_dir):
    database = Database.open(str(data_dir))
    yield database
    database.close()


def one(session, sql, *params):
    return session.execute_one(sql, list(params) if params else None).rows()


def error(session, sql) -> SqlVecError:
    with pytest.raises(SqlVecError) as caught:
        session.execute_one(sql)
    return caught.value


def test_sessions_start_from_the_files_and_pg_settings_says_so(db, data_dir):
    s = db.connect()
    assert one(s, "SHOW work_mem") == [("64MB",)]
    assert one(s, SOURCES, "statement_timeout") == [
        ("statement_timeout", "5000", "configuration file", str(data_dir / "sqlvec.conf"), 3,
         False)]
    s.execute_one("SET work_mem = '1MB'")
    assert one(s, SOURCES, "work_mem")[0][2:5] == ("session", None, None)
    assert one(s, SOURCES, "search_path")[0][2] == "default"
    s.execute_one("RESET work_mem")
    assert one(s, "SHOW work_mem") == [("64MB",)]


def test_alter_system_and_reload_reach_running_sessions(db, data_dir):
    s, other, keeps = db.connect(), db.connect(), db.connect()
    keeps.execute_one("SET statement_timeout = '7s'")
    assert s.execute_one("ALTER SYSTEM SET statement_timeout = '10s'").tag == "ALTER SYSTEM"
    s.execute_one("ALTER SYSTEM SET sqlvec.target_recall TO 0.9")
    auto = (data_dir / "sqlvec.auto.conf").read_text()
    assert "statement_timeout = '10s'\n" in auto and "sqlvec.target_recall = '0.9'\n" in auto
    assert one(other, "SHOW statement_timeout") == [("5s",)]  # not before a reload
    assert one(s, "SELECT pg_reload_conf()") == [(True,)]
    assert one(other, "SHOW statement_timeout") == [("10s",)]
    assert one(other, "SHOW sqlvec.target_recall") == [("0.9",)]
    assert one(keeps, "SHOW statement_timeout") == [("7s",)]  # SET by the session: kept
    keeps.execute_one("RESET statement_timeout")
    assert one(keeps, "SHOW statement_timeout") == [("10s",)]
    assert one(db.connect(), SOURCES, "statement_timeout")[0][2:5] == (
        "configuration file", str(data_dir / "sqlvec.auto.conf"), 3)
    s.execute_one("ALTER SYSTEM RESET ALL")
    s.execute_one("SELECT pg_reload_conf()")
    assert one(other, "SHOW statement_timeout") == [("5s",)]
    assert one(other, "SHOW sqlvec.target_recall") == [("0.95",)]


def test_settings_fixed_at_start_wait_for_a_restart(db):
    s = db.connect()
    s.execute_one("ALTER SYSTEM SET max_connections = 20")
    s.execute_one("SELECT pg_reload_conf()")
    assert one(s, "SHOW max_connections") == [("50",)]
    assert one(s, SOURCES, "max_connections")[0][5] is True  # pending_restart
    assert error(s, "SET max_connections = 20").sqlstate == "55P02"


@pytest.mark.parametrize("sql, sqlstate, message", [
    ("ALTER SYSTEM SET no_such = 1", "42704", 'unrecognized configuration parameter "no_such"'),
    ("ALTER SYSTEM SET work_mem = 'lots'", "22023", 'invalid value for parameter "work_mem"'),
    ("ALTER SYSTEM SET server_version = '1'", "55P02",
     'parameter "server_version" cannot be changed'),
    ("ALTER SYSTEM SET hnsw.nope = 1", "42602", 'invalid configuration parameter name'),
])
def test_alter_system_refuses_what_postgresql_refuses(db, data_dir, sql, sqlstate, message):
    caught = error(db.connect(), sql)
    assert (caught.sqlstate, message in caught.message) == (sqlstate, True)
    assert not (data_dir / "sqlvec.auto.conf").exists()


def test_alter_system_outside_blocks_and_for_superusers_only(db):
    s = db.connect()
    s.execute_one("BEGIN")
    caught = error(s, "ALTER SYSTEM SET work_mem = '1MB'")
    assert (caught.sqlstate, caught.message) == (
        "25001", "ALTER SYSTEM cannot run inside a transaction block")
    s.execute_one("ROLLBACK")
    alice = db.connect(user="alice")
    assert error(alice, "ALTER SYSTEM SET work_mem = '1MB'").sqlstate == "42501"
    assert error(alice, "SELECT pg_reload_conf()").sqlstate == "42501"
    caught = error(alice, "SET log_min_duration_statement = 0")  # a superuser setting
    assert (caught.sqlstate, caught.message) == (
        "42501", 'permission denied to set parameter "log_min_duration_statement"')
    alice.execute_one("SET work_mem = '1MB'")  # a user setting
    s.execute_one("SET log_min_duration_statement = 0")


def test_a_failed_statement_is_logged_with_its_text(db, caplog):
    s = db.connect(settings={"application_name": "app"})
    with caplog.at_level(logging.INFO, logger="sqlvec.statement"):
        error(s, "select * from nope")
    [record] = caplog.records
    assert record.getMessage() == 'relation "nope" does not exist at character 15'
    assert (record.pg_severity, record.sqlstate, record.statement) == (
        "ERROR", "42P01", "select * from nope")
    assert (record.user, record.dbname, record.application_name) == ("postgres", "postgres", "app")
    caplog.clear()
    s.execute_one("SET log_min_error_statement = fatal")  # the error, without its statement
    with caplog.at_level(logging.INFO, logger="sqlvec.statement"):
        error(s, "select 1/0")
    assert [(r.getMessage(), r.statement) for r in caplog.records] == [("division by zero", None)]


def test_slow_statements_are_logged_with_their_duration(db, caplog):
    s = db.connect()
    with caplog.at_level(logging.INFO, logger="sqlvec.statement"):
        s.execute_one("select 1")
        assert caplog.records == []  # log_min_duration_statement is -1: off
        s.execute_one("SET log_min_duration_statement = 0")
        s.execute_one("select 2")
    [record] = [r for r in caplog.records if "select 2" in r.getMessage()]
    assert record.getMessage().startswith("duration: ")
    assert record.getMessage().endswith(" ms  statement: select 2")
    assert record.duration_ms >= 0
