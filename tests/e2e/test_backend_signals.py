"""Sessions acting on other sessions, and settings no session may change: pg_terminate_backend
ends the target's connection (FATAL 57P01), pg_cancel_backend interrupts its statement, a pid
that is no backend gives false with a WARNING; SET of a server-level setting is 55P02."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from psycopg import errors


@pytest.fixture
def admin(server):
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        yield conn


def in_background(conn: psycopg.Connection, sql: str) -> tuple[threading.Thread, dict]:
    """Run `sql` on `conn` in a thread; the outcome (rows or exception) lands in the dict."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["rows"] = conn.execute(sql).fetchall()
        except Exception as exc:  # the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def wait_active(admin: psycopg.Connection, pid: int) -> None:
    deadline = time.monotonic() + 10
    while admin.execute("SELECT state FROM pg_stat_activity WHERE pid = %s",
                        [pid]).fetchone() != ("active",):
        assert time.monotonic() < deadline, "the statement never started"
        time.sleep(0.05)


def test_terminate_ends_an_idle_session(server, admin):
    victim = psycopg.connect(server.conninfo(), autocommit=True)
    pid = victim.info.backend_pid
    assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
    with pytest.raises(errors.AdminShutdown) as caught:
        victim.execute("SELECT 1")
    assert str(caught.value).strip().endswith("terminating connection due to administrator command")
    victim.close()
    deadline = time.monotonic() + 10
    while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                        [pid]).fetchone() != (0,):
        assert time.monotonic() < deadline, "the terminated session is still listed"
        time.sleep(0.05)


def test_the_next_statement_after_terminate_always_meets_the_error(server, admin):
    # Reads are answered by worker processes: the primary's FATAL must still come first.
    for _ in range(30):
        victim = psycopg.connect(server.conninfo(), autocommit=True)
        victim.execute("SELECT 1")
        admin.execute("SELECT pg_terminate_backend(%s)", [victim.info.backend_pid])
        with pytest.raises(errors.AdminShutdown):
            victim.execute("SELECT 1")
        victim.close()


def test_terminate_ends_a_running_statement_at_once(server, admin):
    victim = psycopg.connect(server.conninfo(), autocommit=True)
    thread, outcome = in_background(victim, "SELECT pg_sleep(30)")
    wait_active(admin, victim.info.backend_pid)
    assert admin.execute("SELECT pg_terminate_backend(%s)",
                         [victim.info.backend_pid]).fetchone() == (True,)
    thread.join(10)  # well before the 30 s sleep would end
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), errors.AdminShutdown), outcome
    victim.close()


def test_cancel_interrupts_the_statement_and_keeps_the_session(server, admin):
    with psycopg.connect(server.conninfo(), autocommit=True) as victim:
        thread, outcome = in_background(victim, "SELECT pg_sleep(30)")
        wait_active(admin, victim.info.backend_pid)
        assert admin.execute("SELECT pg_cancel_backend(%s)",
                             [victim.info.backend_pid]).fetchone() == (True,)
        thread.join(10)
        assert isinstance(outcome.get("error"), errors.QueryCanceled), outcome
        assert victim.execute("SELECT 'still here'").fetchone() == ("still here",)


@pytest.mark.parametrize("function", ["pg_terminate_backend", "pg_cancel_backend"])
def test_a_pid_that_is_no_backend_gives_false_with_a_warning(admin, function):
    notices = []  # a notice's fields are readable only inside the handler
    admin.add_notice_handler(lambda n: notices.append((n.severity, n.sqlstate,
                                                       n.message_primary)))
    assert admin.execute(f"SELECT {function}(999999)").fetchone() == (False,)
    assert notices == [
        ("WARNING", "01000", "PID 999999 is not a PostgreSQL backend process")]
    assert admin.execute(f"SELECT {function}(NULL)").fetchone() == (None,)


@pytest.mark.parametrize("statement, message", [
    ("SET data_directory = '/tmp/elsewhere'",
     'parameter "data_directory" cannot be changed without restarting the server'),
    ("SET port = 1", 'parameter "port" cannot be changed without restarting the server'),
    ("SET max_connections = 5000",
     'parameter "max_connections" cannot be changed without restarting the server'),
    ("SET listen_addresses = '*'",
     'parameter "listen_addresses" cannot be changed without restarting the server'),
    ("RESET superuser_reserved_connections", 'parameter "superuser_reserved_connections" '
     "cannot be changed without restarting the server"),
    ("SET shared_buffers = '1GB'",
     'parameter "shared_buffers" cannot be changed without restarting the server'),
    ("SET server_version = '99'", 'parameter "server_version" cannot be changed'),
    ("SET is_superuser = off", 'parameter "is_superuser" cannot be changed'),
    ("SET authentication_timeout = 1", 'parameter "authentication_timeout" cannot be changed now'),
    ("SELECT set_config('port', '1', false)",
     'parameter "port" cannot be changed without restarting the server'),
])
def test_server_level_settings_cannot_be_changed(admin, statement, message):
    before = admin.execute("SHOW data_directory").fetchone()
    with pytest.raises(errors.CantChangeRuntimeParam) as caught:
        admin.execute(statement)
    assert caught.value.sqlstate == "55P02"
    assert caught.value.diag.message_primary == message
    admin.execute("RESET ALL")
    assert admin.execute("SHOW data_directory").fetchone() == before


def test_server_level_settings_show_the_server(server, admin):
    shown = dict(admin.execute(
        "SELECT name, setting FROM pg_settings WHERE name IN ('data_directory', 'port', "
        "'max_connections', 'superuser_reserved_connections', 'authentication_timeout', "
        "'listen_addresses')").fetchall())
    assert shown == {"data_directory": str(server.data_dir.resolve()),
                     "port": str(server.port), "max_connections": "100",
                     "superuser_reserved_connections": "3", "authentication_timeout": "60",
                     "listen_addresses": server.host}
