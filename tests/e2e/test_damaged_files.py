"""A damaged file on disk, met by the real server, psycopg, psql and `sqlvec check`.

One data directory is built through the server with a ledger of every acknowledged row; each
test damages one file of a copy. A damaged segment or delete bitmap takes down only its table
(XX001 naming the file, every other table served, DROP TABLE allowed); restoring the file and
restarting brings back every acknowledged row. A damaged index file is rebuilt. A damaged newest
manifest stops the server with instructions that work. `sqlvec check` names each file.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.e2e.conftest import ROOT, start_server
from wire.cli import build_parser

PSQL = shutil.which("psql")
T_ROWS = set(range(10, 320))  # acknowledged rows of t: 0..319 inserted, 0..9 deleted
U_ROWS = set(range(50))


def vec(i: int) -> str:
    return f"[{i % 7},{i % 11},{i % 13}]"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """t: a sealed segment with an HNSW index file and a delete bitmap, plus rows only the WAL
    holds; u: a small table in the WAL."""
    server = start_server(tmp_path_factory.mktemp("build"))
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int8 PRIMARY KEY, v vector(3))")
            with conn.cursor().copy("COPY t (id, v) FROM STDIN") as copy:
                for i in range(300):
                    copy.write_row((i, vec(i)))
            conn.execute("CREATE INDEX ON t USING hnsw (v vector_l2_ops)")  # seals, builds
            conn.execute("DELETE FROM t WHERE id < 10")
            conn.execute("CHECKPOINT")  # writes the delete bitmap
            conn.execute("INSERT INTO t SELECT i, '[1,2,3]'::vector FROM generate_series(300, 319) i")
            conn.execute("CREATE TABLE u (id int8)")
            conn.execute("INSERT INTO u SELECT generate_series(0, 49)")
    finally:
        assert server.stop() == 0, server.log()
    return server.data_dir


@pytest.fixture
def data(pristine, tmp_path) -> Path:
    path = tmp_path / "data"
    shutil.copytree(pristine, path)
    return path


def one(data: Path, pattern: str) -> Path:
    found = sorted(glob.glob(str(data / "postgres" / pattern)))
    assert len(found) == 1, found
    return Path(found[0])


def flip(path: Path, offset: int | None = None) -> bytes:
    """Flip one byte; returns the original contents."""
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2 if offset is None else offset] ^= 0x5A
    path.write_bytes(bytes(damaged))
    return original


def check(data: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wire", "check", "--data-dir", str(data)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def ids(conn: psycopg.Connection, table: str) -> set[int]:
    return {r[0] for r in conn.execute(f"SELECT id FROM {table}")}


def refused(conn: psycopg.Connection, sql: str) -> psycopg.errors.DataCorrupted:
    with pytest.raises(psycopg.errors.DataCorrupted) as info:
        conn.execute(sql)
    assert info.value.sqlstate == "XX001"
    return info.value


def damaged(data: Path, pattern: str, kind: str) -> tuple[Path, str, bytes]:
    """Flip a byte of the one file matching `pattern`: `sqlvec check` names it as the only
    damaged file. Returns the file, its path in the directory and its original bytes."""
    path = one(data, pattern)
    rel = str(path.relative_to(data))
    original = flip(path)
    out = check(data)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f'{rel}: {kind} of table "t" is damaged (CRC mismatch)' in out.stdout
    assert out.stdout.splitlines()[-1].endswith(": 1 damaged")
    return path, rel, original


def test_damaged_segment_takes_down_only_its_table_until_restored(data, tmp_path):
    segment, rel, original = damaged(data, "tables/*/seg-*.parquet", "segment file")

    server = start_server(tmp_path / "s1", data_dir=data)
    u_rows = set(U_ROWS)
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            assert ids(conn, "u") == u_rows
            error = refused(conn, "SELECT * FROM t")
            assert str(error).startswith(
                f'could not read table "t": segment file {rel} is damaged (CRC mismatch)')
            assert "Restore the file" in error.diag.message_hint
            for sql in ("SELECT id FROM t ORDER BY v <-> '[1,2,3]' LIMIT 3",
                        "SELECT count(*) FROM u JOIN t USING (id)",
                        "INSERT INTO t VALUES (1000, '[1,1,1]')",
                        "UPDATE t SET v = '[0,0,0]' WHERE id = 20",
                        "DELETE FROM t WHERE id = 20",
                        "TRUNCATE t",
                        "CREATE INDEX ON t USING hnsw (v vector_cosine_ops)",
                        "ALTER TABLE t ADD COLUMN note text"):
                assert refused(conn, sql).diag.message_primary == error.diag.message_primary
            with pytest.raises(psycopg.errors.DataCorrupted):
                with conn.cursor().copy("COPY t (id, v) FROM STDIN") as copy:
                    copy.write_row((2000, "[1,2,3]"))
            with pytest.raises(psycopg.errors.DataCorrupted):  # refused inside a block too
                with conn.transaction():
                    conn.execute("INSERT INTO u VALUES (-1)")
                    conn.execute("INSERT INTO t VALUES (1001, '[1,1,1]')")
            # Catalog reads still list it.
            tables = {r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
            assert tables == {"t", "u"}
            # Other tables keep taking writes, checkpoints included.
            for start in range(50, 150, 10):
                conn.execute(f"INSERT INTO u SELECT generate_series({start}, {start + 9})")
                u_rows |= set(range(start, start + 10))
            conn.execute("CHECKPOINT")
            assert ids(conn, "u") == u_rows
        if PSQL:
            listed = subprocess.run([PSQL, server.conninfo(), "-X", "-c", r"\d t"],
                                    capture_output=True, text=True, timeout=60)
            assert listed.returncode == 0, listed.stderr
            assert "vector(3)" in listed.stdout
    finally:
        assert server.stop() == 0, server.log()
    assert f"segment file {rel} is damaged" in server.log()
    assert "Traceback" not in server.log()

    segment.write_bytes(original)  # the user restores the file from a backup
    out = check(data)
    assert out.returncode == 0, out.stdout
    server = start_server(tmp_path / "s2", data_dir=data)
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            assert ids(conn, "t") == T_ROWS
            assert ids(conn, "u") == u_rows
            near = conn.execute("SELECT id FROM t ORDER BY v <-> %s::vector LIMIT 1",
                                (vec(123),)).fetchone()
            assert near == (123,)
    finally:
        assert server.stop() == 0, server.log()


def test_damaged_vectors_file_takes_down_only_its_table_until_restored(data, tmp_path):
    """The segment's memory-mapped vectors file is checked like its Parquet file."""
    vectors, rel, original = damaged(data, "tables/*/seg-*.vectors.arrow",
                                     "segment vectors file")
    server = start_server(tmp_path / "s1", data_dir=data)
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            assert ids(conn, "u") == U_ROWS
            error = refused(conn, "SELECT id FROM t ORDER BY v <-> '[1,2,3]' LIMIT 3")
            assert str(error).startswith(f'could not read table "t": segment vectors file {rel} '
                                         "is damaged (CRC mismatch)")
    finally:
        assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log()
    vectors.write_bytes(original)
    server = start_server(tmp_path / "s2", data_dir=data)
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            assert ids(conn, "t") == T_ROWS
            assert conn.execute("SELECT id, v FROM t ORDER BY v <-> %s::vector LIMIT 1",
                                (vec(123),)).fetchone()[0] == 123
            assert str(conn.execute("SELECT v FROM t WHERE id = 45").fetchone()[0]) == vec(45)
    finally:
        assert server.stop() == 0, server.log()


def test_damaged_delete_bitmap_then_drop_table(data, tmp_path):
    bitmap = one(data, "tables/*/seg-*.del")
    rel = str(bitmap.relative_to(data))
    flip(bitmap, bitmap.stat().st_size - 1)
    out = check(data)
    assert out.returncode == 1
    assert f'{rel}: delete bitmap file of table "t" is damaged' in out.stdout
    server = start_server(tmp_path / "s1", data_dir=data)
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            error = refused(conn, "SELECT count(*) FROM t")
            assert f"delete bitmap file {rel} is damaged" in str(error)
            assert ids(conn, "u") == U_ROWS
            conn.execute("DROP TABLE t")  # the way out without a backup
            conn.execute("CREATE TABLE t (id int8)")
            conn.execute("INSERT INTO t VALUES (1), (2)")
    finally:
        assert server.stop() == 0, server.log()
    assert check(data).returncode == 0
    server = start_server(tmp_path / "s2", data_dir=data)
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            assert ids(conn, "t") == {1, 2}
            assert ids(conn, "u") == U_ROWS
    finally:
        assert server.stop() == 0, server.log()


def test_damaged_index_file_is_rebuilt(data, tmp_path):
    index = one(data, "tables/*/seg-*.hnsw")
    rel = str(index.relative_to(data))
    flip(index)
    out = check(data)
    assert out.returncode == 1
    assert f'{rel}: HNSW index file of index "t_v_idx" of table "t" is damaged' in out.stdout
    server = start_server(tmp_path / "s1", data_dir=data)
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            assert ids(conn, "t") == T_ROWS
            near = conn.execute("SELECT id FROM t ORDER BY v <-> %s::vector LIMIT 1",
                                (vec(123),)).fetchone()
            assert near == (123,)
            # The rebuild runs in the background: wait for it (bounded by the test's limit).
            while conn.execute("SELECT DISTINCT state FROM sqlvec_indexes "
                               "WHERE indexname = 't_v_idx'").fetchall() != [("ready",)]:
                time.sleep(0.05)
    finally:
        assert server.stop() == 0, server.log()
    assert rel in server.log() and "rebuilding it" in server.log()
    out = check(data)  # rebuilt durably: nothing left to report
    assert out.returncode == 0, out.stdout


def test_damaged_latest_manifest_stops_the_server_with_a_way_out(data, tmp_path):
    manifests = sorted((data / "postgres" / "manifest").glob("manifest-*.json"))
    latest, previous = manifests[-1], manifests[-2]
    flip(latest)
    out = check(data)
    assert out.returncode == 1
    assert f"{latest.relative_to(data)}: manifest file is damaged" in out.stdout
    started = subprocess.run(
        [sys.executable, "-m", "wire", "serve", "--data-dir", str(data), "--port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert started.returncode == 1
    assert str(latest) in started.stderr
    assert f"move {latest.name} out of the manifest directory" in started.stderr
    assert previous.name in started.stderr
    # Following the advice: the server starts from the previous version.
    latest.rename(tmp_path / latest.name)
    server = start_server(tmp_path / "s1", data_dir=data)
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            assert ids(conn, "t") == T_ROWS
    finally:
        assert server.stop() == 0, server.log()


def test_damaged_older_manifest_is_reported_and_harmless(data, tmp_path):
    oldest = sorted((data / "postgres" / "manifest").glob("manifest-*.json"))[0]
    flip(oldest)
    out = check(data)
    assert out.returncode == 1
    assert f"{oldest.relative_to(data)}: manifest file is damaged" in out.stdout
    server = start_server(tmp_path / "s1", data_dir=data)
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            assert ids(conn, "t") == T_ROWS and ids(conn, "u") == U_ROWS
        beside = check(data)  # reading beside a running server is safe, and it says so
        assert beside.returncode == 1
        assert beside.stdout.startswith(f"note: a server has {data} open; checking anyway")
        assert f"{oldest.relative_to(data)}: manifest file is damaged" in beside.stdout
    finally:
        assert server.stop() == 0, server.log()


def test_check_help_and_a_missing_directory(tmp_path):
    helped = build_parser()._subparsers._group_actions[0].choices["check"].format_help()
    assert "checksum" in helped and "--data-dir" in helped and "Exits 0" in helped
    out = check(tmp_path / "nope")
    assert out.returncode == 2 and "does not exist" in out.stderr
    assert os.path.exists(tmp_path) and not os.path.exists(tmp_path / "nope")
