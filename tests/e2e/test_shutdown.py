"""Starting and stopping: SIGTERM/SIGINT end connections cleanly, close the database (what was
committed is there after a restart) and exit 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_lets_a_running_statement_finish(start):
    server = start()
    outcome = {}
    with psycopg.connect(server.conninfo(), autocommit=True) as busy, \
            psycopg.connect(server.conninfo(), autocommit=True) as idle:
        running = threading.Event()

        def slow() -> None:
            running.set()
            outcome["rows"] = busy.execute("SELECT pg_sleep(1.5), 'finished'").fetchone()

        thread = threading.Thread(target=slow)
        thread.start()
        running.wait()
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        thread.join(30)
        assert outcome["rows"][1] == "finished"
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
    assert server.stop() == 0
    assert "sqlvec stopped" in server.log()


def test_sigterm_cancels_a_statement_that_runs_on(start):
    server = start()
    with psycopg.connect(server.conninfo(), autocommit=True) as busy:
        timer = threading.Timer(0.3, server.process.send_signal, (signal.SIGTERM,))
        timer.start()
        expected = (errors.QueryCanceled, errors.AdminShutdown, psycopg.OperationalError)
        with pytest.raises(expected):
            busy.execute("SELECT pg_sleep(60)")
        timer.join()
    assert server.stop(timeout=30) == 0


def test_committed_rows_survive_sigint_and_restart(start, tmp_path):
    data_dir = tmp_path / "shared-data"
    first = start(data_dir=data_dir)
    with psycopg.connect(first.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (id int4, v vector(2))")
        conn.execute("INSERT INTO kept VALUES (1, '[1,2]'), (2, '[3,4]')")
    assert first.stop(signal.SIGINT) == 0
    second = start(data_dir=data_dir)
    with psycopg.connect(second.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT id, v::text FROM kept ORDER BY id").fetchall() == \
            [(1, "[1,2]"), (2, "[3,4]")]


def test_a_data_directory_is_served_once(start):
    server = start()
    out = subprocess.run([sys.executable, "-m", "wire", "serve", "--port", "0", "--data-dir",
                          str(server.data_dir)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env=dict(os.environ))
    assert out.returncode == 1
    assert "is in use by another sqlvec process" in out.stderr
