"""A damaged write-ahead log, met as an operator meets it: the server refuses to start and says
where, `sqlvec wal inspect` shows it, `sqlvec wal truncate` keeps the commits before it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.e2e.conftest import ROOT, start_server


def sqlvec(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wire", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def wal_file(data_dir: Path) -> Path:
    (path,) = sorted((data_dir / "postgres" / "wal").glob("*.wal"))
    return path


def test_damage_in_the_middle_of_the_log_stops_startup_and_the_wal_commands_repair_it(tmp_path, reap):
    running = start_server(tmp_path / "first")
    reap(running)
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (id int PRIMARY KEY, note text)")
        for i in range(1, 11):  # ten acknowledged commits, one WAL record each
            conn.execute("INSERT INTO ledger VALUES (%s, %s)", (i, f"row {i}"))
    running.stop(signal.SIGKILL)  # nothing checkpointed: every row lives only in the log

    data_dir = running.data_dir
    inspect = sqlvec("wal", "inspect", "--data-dir", str(data_dir), "--records")
    assert inspect.returncode == 0, inspect.stdout + inspect.stderr
    records = [line.split() for line in inspect.stdout.splitlines() if line.startswith("  LSN")]
    assert len(records) >= 10 and "insert 1 row(s) into table" in inspect.stdout
    # The record of the sixth row: flip a byte inside its payload.
    lsn, offset = int(records[-5][1]), int(records[-5][3])
    path = wal_file(data_dir)
    data = bytearray(path.read_bytes())
    data[offset + 30] ^= 0x55
    path.write_bytes(bytes(data))

    refused = subprocess.run(
        [sys.executable, "-m", "wire", "serve", "--data-dir", str(data_dir), "--port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert f"offset {offset}" in refused.stderr and f"LSN {lsn}" in refused.stderr
    assert path.name in refused.stderr and "4 valid record(s) follow it" in refused.stderr
    assert f"sqlvec wal truncate --lsn {lsn - 1}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert path.read_bytes() == bytes(data)  # left untouched for inspection

    inspect = sqlvec("wal", "inspect", "--data-dir", str(data_dir))
    assert inspect.returncode == 1
    assert f"DAMAGED: CRC mismatch at offset {offset} (record LSN {lsn})" in inspect.stdout

    truncated = sqlvec("wal", "truncate", "--data-dir", str(data_dir), "--lsn", str(lsn - 1))
    assert truncated.returncode == 0, truncated.stderr
    saved = list((data_dir / "postgres" / "wal").glob("*.cut-*"))
    assert len(saved) == 1 and saved[0].read_bytes() == bytes(data)[offset:]

    running = start_server(tmp_path / "second", data_dir=data_dir)

    reap(running)
    try:
        with psycopg.connect(running.conninfo(), autocommit=True) as conn:
            rows = conn.execute("SELECT id FROM ledger ORDER BY id").fetchall()
            assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
            conn.execute("INSERT INTO ledger VALUES (6, 'again')")
    finally:
        assert running.stop() == 0, running.log()


def test_truncate_is_refused_while_the_server_runs(tmp_path, reap):
    running = start_server(tmp_path / "s")
    reap(running)
    try:
        result = sqlvec("wal", "truncate", "--data-dir", str(running.data_dir), "--lsn", "0")
        assert result.returncode == 1 and "in use by a running server" in result.stderr
        result = sqlvec("wal", "inspect", "--data-dir", str(running.data_dir),
                        "--database", "../elsewhere")
        assert result.returncode == 1 and "invalid database name" in result.stderr
    finally:
        assert running.stop() == 0, running.log()
