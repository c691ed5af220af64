"""The server on a real, size-limited filesystem that fills up: INSERT, COPY, CHECKPOINT and
CREATE TABLE fail with 53100 while it is full, reads go on, nothing of a failed statement is
ever visible, writes resume once space returns, and after a SIGKILL and a restart the table
holds exactly the rows whose statements were acknowledged.

Needs permission to mount a tmpfs (root, as in CI); tests/sqlvec/storage/test_faults.py injects
the same faults without one.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.e2e.conftest import start_server


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Take every free byte of the filesystem holding `path`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    block = b"\0" * (1 << 20)
    try:
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(block) == 1:
                    break
                block = block[: len(block) // 2]
    finally:
        os.close(fd)


def copy_rows(conn: psycopg.Connection, ids: range) -> None:
    with conn.cursor().copy("COPY t (id, note, v) FROM STDIN") as copy:
        for i in ids:
            copy.write_row((i, f"row {i}", f"[{i},{i + 1},{i + 2},{i + 3}]"))


def check(conn: psycopg.Connection, ledger: set[int]) -> None:
    rows = conn.execute("SELECT id, note, v::text FROM t ORDER BY id").fetchall()
    assert [r[0] for r in rows] == sorted(ledger)
    for i, note, v in rows:
        assert note == f"row {i}" and v == f"[{i},{i + 1},{i + 2},{i + 3}]"


def test_a_full_disk_fails_statements_cleanly_and_loses_no_acknowledged_row(tmp_path, small_disk, reap):
    data_dir = small_disk / "data"
    running = start_server(tmp_path / "first", data_dir=data_dir)
    reap(running)
    ledger: set[int] = set()
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, note text, v vector(4))")
        for i in range(100):
            conn.execute("INSERT INTO t VALUES (%s, %s, %s)",
                         (i, f"row {i}", f"[{i},{i + 1},{i + 2},{i + 3}]"))
            ledger.add(i)
        copy_rows(conn, range(100, 5_000))
        ledger.update(range(100, 5_000))

        filler = small_disk / "filler"
        fill(filler)
        # The last page of the log may still have room for a few rows; after that every
        # insert fails, with 53100, and leaves nothing behind.
        failures = []
        for i in range(10_000, 10_400):
            try:
                conn.execute("INSERT INTO t VALUES (%s, %s, %s)",
                             (i, f"row {i}", f"[{i},{i + 1},{i + 2},{i + 3}]"))
            except psycopg.errors.DiskFull as exc:
                assert "No space left on device" in str(exc)
                failures.append(i)
                if len(failures) == 20:
                    break
            else:
                assert not failures, "an insert succeeded on a full disk after one failed"
                ledger.add(i)
        assert len(failures) == 20
        with pytest.raises(psycopg.errors.DiskFull):
            copy_rows(conn, range(20_000, 40_000))
        with pytest.raises(psycopg.errors.DiskFull):
            conn.execute("CREATE TABLE other (id int)")
        with pytest.raises(psycopg.errors.DiskFull):
            conn.execute("CHECKPOINT")  # sealing writes a segment file
        check(conn, ledger)  # reads go on; no failed statement left anything behind

        filler.unlink()
        for i in failures:  # the keys of the failed inserts are free
            conn.execute("INSERT INTO t VALUES (%s, %s, %s)",
                         (i, f"row {i}", f"[{i},{i + 1},{i + 2},{i + 3}]"))
            ledger.add(i)
        copy_rows(conn, range(20_000, 21_000))
        ledger.update(range(20_000, 21_000))
        conn.execute("CREATE TABLE other (id int)")
        conn.execute("UPDATE t SET note = 'row ' || id WHERE id < 10")
        check(conn, ledger)
    running.stop(signal.SIGKILL)
    assert "Traceback" not in running.log(), running.log()

    running = start_server(tmp_path / "second", data_dir=data_dir)

    reap(running)
    try:
        with psycopg.connect(running.conninfo(), autocommit=True) as conn:
            check(conn, ledger)
            conn.execute("CHECKPOINT")
    finally:
        assert running.stop() == 0, running.log()
