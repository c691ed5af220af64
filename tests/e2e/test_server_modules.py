"""What a running server's processes load: pyarrow must not pull pandas (30 MB in each
process) into the primary, the fork server or a worker, whatever the statements run; and the
workers' follower is loaded before the fork, so the fork server copies none of the primary's
pages to load it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.e2e.conftest import ROOT, server_processes, start_server

STATEMENTS = [
    "CREATE TABLE items (id bigint PRIMARY KEY, tag text, price float8, at timestamptz, "
    "amount numeric, embedding vector(3))",
    "INSERT INTO items VALUES (1, 'a', 1.5, now(), 2.25, '[1,2,3]'), "
    "(2, NULL, NULL, NULL, NULL, '[3,2,1]')",
    "UPDATE items SET price = price * 2, at = '2026-01-01' WHERE id = 1",
    "CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)",
    "SELECT id, embedding <-> '[1,1,1]' FROM items ORDER BY embedding <-> '[1,1,1]' LIMIT 1",
    "SELECT tag, count(*), sum(amount), max(at) FROM items GROUP BY tag",
    "SELECT array_agg(id), string_agg(tag, ',') FROM items",
    "DELETE FROM items WHERE id = 2",
]


def mapped_pandas(pid: int) -> list[str]:
    """pandas' compiled modules the process maps (each loaded pandas maps dozens)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({line.split()[-1] for line in maps.splitlines() if "/pandas/" in line})


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_server_processes_never_load_pandas(tmp_path):
    pytest.importorskip("pandas")  # only meaningful where pyarrow could find it
    server = start_server(tmp_path, "--workers", "1")
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            for statement in STATEMENTS:
                conn.execute(statement)
            with conn.cursor().copy("COPY items (id, tag, embedding) FROM STDIN") as copy:
                copy.write(b"3\tc\t[0,0,1]\n")
            assert conn.execute("SELECT count(*) FROM items").fetchone() == (2,)
        pids = server_processes(server)
        assert len(pids) >= 3  # primary, fork server, worker
        assert {pid: mapped_pandas(pid) for pid in pids} == {pid: [] for pid in pids}
    finally:
        assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log(), server.log()


def private_mb(pid: int) -> float:
    """The process's pages no other process maps (its Uss), in MB."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return sum(int(kb) for kb in re.findall(r"^Private_(?:Clean|Dirty):\s+(\d+) kB", text,
                                            re.MULTILINE)) / 1024


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_fork_server_starts_without_copying_the_primarys_pages(tmp_path):
    """The follower the workers start from is opened by the primary before it forks the fork
    server: opening it in the fork server wrote about 6 MB of the pages it shared with the
    primary, which the primary then held alone (11 MB private right after start, against 5.5
    now, with two workers on an empty directory)."""
    server = start_server(tmp_path, "--workers", "2")
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        pids = server_processes(server)
        assert len(pids) == 4  # primary, fork server, two workers
        assert private_mb(server.process.pid) < 8.5, [private_mb(pid) for pid in pids]
    finally:
        assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log(), server.log()


def test_pandas_still_works_after_the_server_package_is_imported():
    """The server keeps pandas out without blocking it: code that imports pandas in the same
    process (a module that adds to the engine) still converts tables both ways."""
    pytest.importorskip("pandas")
    program = (
        "import sys, wire.cli, pyarrow as pa\n"
        "assert 'pandas' not in sys.modules\n"
        "pa.array([1, None]); pa.table({'a': ['x', None]})\n"
        "assert 'pandas' not in sys.modules\n"
        "import pandas as pd\n"
        "frame = pa.table({'a': [1, None]}).to_pandas()\n"
        "assert pa.Table.from_pandas(frame).num_rows == 2\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
