"""Configuration and logs with the real server and clients: sqlvec.conf applied at start-up (in
the data directory or `--config FILE`), a bad line stops start-up with its file and line,
ALTER SYSTEM + pg_reload_conf() (or SIGHUP) reach sessions already connected, the log file
holds PostgreSQL-style text or JSON lines (errors with their statement, slow statements,
connections, start-up and shutdown), and an unreachable recall target sends a NOTICE."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import errors

from tests.e2e.conftest import ROOT


def write_conf(directory: Path, text: str, name: str = "sqlvec.conf") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def show(conn, name: str) -> str:
    return conn.execute(f"SHOW {name}").fetchone()[0]


def test_the_configuration_file_is_applied_at_start_up(start, tmp_path):
    data = tmp_path / "data"
    path = write_conf(data, "# sqlvec settings\nwork_mem = '64MB'\n"
                            "statement_timeout = 5s   # units as in postgresql.conf\n"
                            "sqlvec.target_recall = 0.9\nmax_connections = 20\n")
    server = start(data_dir=data)
    with psycopg.connect(server.conninfo(application_name="app"), autocommit=True) as conn:
        assert (show(conn, "work_mem"), show(conn, "statement_timeout"),
                show(conn, "sqlvec.target_recall"), show(conn, "max_connections")) == \
            ("64MB", "5s", "0.9", "20")
        assert conn.execute(
            "SELECT source, sourcefile, sourceline FROM pg_settings WHERE name = 'work_mem'"
        ).fetchone() == ("configuration file", str(path), 2)
        assert show(conn, "config_file") == str(path)
        assert conn.execute("SELECT name, source FROM pg_settings WHERE name IN "
                            "('application_name', 'max_connections') ORDER BY 1").fetchall() \
            == [("application_name", "client"), ("max_connections", "configuration file")]


def test_config_names_another_file(start, tmp_path):
    path = write_conf(tmp_path / "etc", "work_mem = '32MB'\n", name="server.conf")
    server = start("--config", str(path))
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        assert show(conn, "work_mem") == "32MB"


@pytest.mark.parametrize("line, message", [
    ("work_mem = 'plenty'", 'invalid value for parameter "work_mem": "plenty"'),
    ("hnsw.ef_serch = 100", 'unrecognized configuration parameter "hnsw.ef_serch"'),
    ("work_mem = = 1", 'syntax error'),
])
def test_a_bad_line_stops_start_up_naming_file_and_line(tmp_path, line, message):
    data = tmp_path / "data"
    path = write_conf(data, f"# settings\nport = 5433\n{line}\n")
    done = subprocess.run([sys.executable, "-m", "wire", "serve", "--data-dir", str(data),
                           "--port", "0"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert message in done.stderr
    assert f'in file "{path}" line 3' in done.stderr
    assert f'configuration file "{path}" contains errors' in done.stderr
    assert "Traceback" not in done.stderr


def test_alter_system_and_reload_reach_other_sessions(start):
    server = start()
    with psycopg.connect(server.conninfo(), autocommit=True) as admin, \
            psycopg.connect(server.conninfo(), autocommit=True) as other:
        assert show(other, "statement_timeout") == "0"
        admin.execute("ALTER SYSTEM SET statement_timeout = '90s'")
        assert "statement_timeout = '90s'" in \
            (server.data_dir / "sqlvec.auto.conf").read_text()
        assert show(other, "statement_timeout") == "0"
        assert admin.execute("SELECT pg_reload_conf()").fetchone() == (True,)
        assert show(other, "statement_timeout") == "90s"
        admin.execute("ALTER SYSTEM SET max_connections = 10")
        admin.execute("SELECT pg_reload_conf()")
        assert admin.execute("SELECT setting, pending_restart FROM pg_settings "
                             "WHERE name = 'max_connections'").fetchone() == ("100", True)
        with pytest.raises(errors.CantChangeRuntimeParam):
            admin.execute("SET max_connections = 10")
        admin.execute("ALTER SYSTEM RESET ALL")
        admin.execute("SELECT pg_reload_conf()")
        assert show(other, "statement_timeout") == "0"
    with psycopg.connect(server.conninfo()) as conn:  # a transaction block
        conn.execute("SELECT 1")
        with pytest.raises(errors.ActiveSqlTransaction,
                           match="ALTER SYSTEM cannot run inside a transaction block"):
            conn.execute("ALTER SYSTEM SET work_mem = '1MB'")


def test_sighup_reloads_the_files(start, tmp_path):
    data = tmp_path / "data"
    path = write_conf(data, "work_mem = '64MB'\n")
    server = start(data_dir=data)
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        assert show(conn, "work_mem") == "64MB"
        path.write_text("work_mem = '16MB'\n")
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while show(conn, "work_mem") != "16MB" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert show(conn, "work_mem") == "16MB"
    assert "received SIGHUP, reloading configuration files" in server.log()


def test_the_log_file_holds_json_lines(start, tmp_path):
    data = tmp_path / "data"
    write_conf(data, "log_destination = 'jsonlog'\nlog_min_duration_statement = 0\n"
                     "log_connections = on\nlog_disconnections = on\n")
    log_file = tmp_path / "log" / "sqlvec.log"
    server = start("--log-file", str(log_file), data_dir=data)
    with psycopg.connect(server.conninfo(application_name="billing"), autocommit=True) as conn:
        conn.execute("select 42")
        with pytest.raises(errors.UndefinedTable):
            conn.execute("select * from nope")
    assert server.stop() == 0
    entries = [json.loads(line) for line in log_file.read_text().splitlines()]
    messages = [e["message"] for e in entries]
    assert any(m.startswith("starting sqlvec ") and "PostgreSQL 16" in m for m in messages)
    assert any(f"data directory {data}" in m for m in messages)
    assert any(f"listening on {server.host}:{server.port}" in m for m in messages)
    assert "database system is shut down" in messages
    [failed] = [e for e in entries if e["error_severity"] == "ERROR"]
    assert (failed["message"], failed["state_code"], failed["statement"], failed["user"],
            failed["application_name"]) == ('relation "nope" does not exist at character 15',
                                            "42P01", "select * from nope", "postgres",
                                            "billing")
    [slow] = [e for e in entries if e["message"].endswith("statement: select 42")]
    assert slow["message"].startswith("duration: ") and slow["duration_ms"] >= 0
    assert any(m.startswith("connection authorized: user=postgres database=postgres "
                            "application_name=billing") for m in messages)
    assert any(m.startswith("disconnection: session time: ") for m in messages)
    # stderr keeps the start-up and shutdown lines and errors, as text.
    text = server.log()
    assert "LOG:  database system is ready to accept connections" in text
    assert 'ERROR:  relation "nope" does not exist' in text
    assert "STATEMENT:  select * from nope" in text
    assert "duration:" not in text


def test_errors_are_logged_with_their_statement_on_stderr(start):
    server = start()
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        with pytest.raises(errors.DivisionByZero):
            conn.execute("select 1/0")
    lines = server.log().splitlines()
    at = next(i for i, line in enumerate(lines) if line.endswith("ERROR:  division by zero"))
    assert lines[at + 1].endswith("STATEMENT:  select 1/0")


def test_an_unreachable_recall_target_sends_a_notice(start):
    server = start()
    rows = np.random.default_rng(3).random((2000, 128), dtype=np.float32)
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        notices = []
        conn.add_notice_handler(lambda d: notices.append(
            (d.severity, d.message_primary, d.message_hint)))
        conn.execute("CREATE TABLE r (id bigint, emb vector(128))")
        with conn.cursor().copy("COPY r (id, emb) FROM STDIN") as copy:
            for i, row in enumerate(rows):
                copy.write_row((i, "[" + ",".join(f"{x:.6f}" for x in row) + "]"))
        conn.execute("CREATE INDEX ON r USING hnsw (emb vector_l2_ops) "
                     "WITH (m = 4, ef_construction = 16)")
        conn.execute("SET sqlvec.max_ef_search = 10")
        query = "[" + ",".join(["0.5"] * 128) + "]"
        sql = f"SELECT id FROM r ORDER BY emb <-> '{query}' LIMIT 10"
        deadline = time.monotonic() + 60  # the index may still be building
        while "est_recall" not in str(conn.execute("EXPLAIN " + sql).fetchall()) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        notices.clear()
        assert len(conn.execute(sql).fetchall()) == 10
    [(severity, message, hint)] = notices
    assert severity == "NOTICE"
    assert "recall target 0.95 is not reachable" in message and "ef_search=10" in message
    for remedy in ("raise sqlvec.max_ef_search", "larger m or ef_construction",
                   "sqlvec.exact = on"):
        assert remedy in hint
