"""`sqlvec backup` against a running server under a write load, and with the server stopped;
each copy restored by starting a server on it.

The ledger: every writer commits transactions of three rows, in order, and records each one the
server acknowledged. A restored copy must hold, per writer, a prefix of its transactions (no
later commit without the earlier ones, none partly) that includes every transaction acknowledged
before the backup began.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import psycopg

from tests.e2e.conftest import ROOT, start_server

WRITERS = 3


def run_backup(data_dir, dest) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wire", "backup", str(dest), "--data-dir",
                           str(data_dir)], cwd=ROOT, capture_output=True, text=True,
                          timeout=90)


def test_online_backup_under_write_load(tmp_path, reap):
    server = start_server(tmp_path / "src")
    reap(server)
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (id serial PRIMARY KEY, writer int, txn int, "
                     "part int, v vector(3))")
        conn.execute("CREATE INDEX ON ledger USING hnsw (v vector_l2_ops)")
    stop = threading.Event()
    acked: dict[int, int] = dict.fromkeys(range(WRITERS), 0)
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            with psycopg.connect(server.conninfo()) as conn:
                while not stop.is_set():
                    n = acked[w]
                    with conn.transaction():
                        for part in range(3):
                            conn.execute("INSERT INTO ledger (writer, txn, part, v) VALUES "
                                         "(%s, %s, %s, %s)", (w, n, part, f"[{w},{n},{part}]"))
                    acked[w] = n + 1
        except BaseException as exc:  # reported by the test, not lost in a thread
            errors.append(exc)

    def churn() -> None:  # catalog changes and checkpoints while the backup copies
        try:
            with psycopg.connect(server.conninfo(), autocommit=True) as conn:
                k = 0
                while not stop.is_set():
                    conn.execute(f"CREATE TABLE side{k} (x int)")
                    conn.execute(f"INSERT INTO side{k} VALUES ({k})")
                    conn.execute("CHECKPOINT")
                    if k % 2:
                        conn.execute(f"DROP TABLE side{k}")
                    k += 1
                    time.sleep(0.02)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    threads.append(threading.Thread(target=churn))
    for th in threads:
        th.start()
    try:
        while min(acked.values()) < 20 and not errors:
            time.sleep(0.02)
        before = dict(acked)
        done = run_backup(server.data_dir, tmp_path / "copy")
        time.sleep(0.2)  # the load keeps running after the backup, too
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert not errors, errors
    assert done.returncode == 0, done.stdout + done.stderr
    assert "backup complete" in done.stdout
    label = json.loads((tmp_path / "copy" / "backup_label.json").read_text())
    assert label["server_running"] is True
    assert label["databases"]["postgres"]["end_lsn"] > 0
    assert server.stop() == 0

    restored = start_server(tmp_path / "restored", data_dir=tmp_path / "copy")
    reap(restored)
    with psycopg.connect(restored.conninfo(), autocommit=True) as conn:
        got = conn.execute("SELECT writer, txn, count(*), array_agg(part ORDER BY part) "
                           "FROM ledger GROUP BY writer, txn").fetchall()
        assert all(parts == [0, 1, 2] for _w, _t, _n, parts in got)  # none half-written
        for w in range(WRITERS):
            txns = sorted(t for ww, t, _n, _p in got if ww == w)
            assert txns == list(range(len(txns)))  # a prefix of the writer's commits
            assert before[w] <= len(txns) <= acked[w] + 1
        # The sequence was restored with the rows: new rows get ids no row has.
        conn.execute("INSERT INTO ledger (writer, txn, part, v) VALUES (9, 0, 0, '[0,0,0]')")
        nearest = conn.execute("SELECT writer, txn, part FROM ledger "
                               "ORDER BY v <-> '[1,5,2]' LIMIT 1").fetchone()
        assert nearest == (1, 5, 2)
    assert restored.stop() == 0


def test_backup_of_a_stopped_server_restores_identically(tmp_path, reap):
    server = start_server(tmp_path / "src")
    reap(server)
    query = "SELECT id, name, v::text FROM items ORDER BY id"
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text, v vector(2))")
        conn.execute("INSERT INTO items SELECT g, 'n' || g, ARRAY[g, -g]::vector(2) "
                     "FROM generate_series(1, 500) g")
        conn.execute("CHECKPOINT")
        conn.execute("DELETE FROM items WHERE id % 10 = 0")
        conn.execute("UPDATE items SET name = 'changed' WHERE id < 5")
        expected = conn.execute(query).fetchall()
    assert server.stop() == 0

    done = run_backup(server.data_dir, tmp_path / "copy")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "copy" / "backup_label.json").read_text())[
        "server_running"] is False
    check = subprocess.run([sys.executable, "-m", "wire", "check", "--data-dir",
                            str(tmp_path / "copy")], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout

    restored = start_server(tmp_path / "restored", data_dir=tmp_path / "copy")
    reap(restored)
    with psycopg.connect(restored.conninfo(), autocommit=True) as conn:
        assert conn.execute(query).fetchall() == expected
    assert restored.stop() == 0

    again = run_backup(server.data_dir, tmp_path / "copy")  # never over an existing copy
    assert again.returncode == 1 and "not empty" in again.stderr
