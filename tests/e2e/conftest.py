"""A real `sqlvec serve` on 127.0.0.1 and an ephemeral port, for real clients to meet.

The server runs as a subprocess exactly as a user starts it (`python -m wire serve --port 0`);
the port is read from its start-up log line, and every server is stopped with SIGTERM and must
exit 0 (a clean shutdown that closed the database). Servers run as users get them: with the
default worker processes, one per core (`SQLVEC_WORKERS` overrides it for a whole run; a test
of the one-process mode passes `--workers 0`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from wire.messages import StartupMessage, decode_backend

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"listening on (\S+):(\d+)")


@dataclass
class RunningServer:
    process: subprocess.Popen
    host: str
    port: int
    data_dir: Path
    log_path: Path

    def conninfo(self, **params: object) -> str:
        """A libpq connection string (psycopg, psql)."""
        values = {"host": self.host, "port": self.port, "user": "postgres",
                  "dbname": "postgres", "sslmode": "disable", "connect_timeout": 10}
        values.update(params)
        return " ".join(f"{k}={v}" for k, v in values.items() if v is not None)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"server did not stop within {timeout}s:\n{self.log()}")
        return self.process.returncode


def server_processes(server: RunningServer) -> list[int]:
    """The server's process and its descendants (the fork server and workers of
    `--workers`)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out = [server.process.pid]
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor and ancestor != server.process.pid:
            ancestor = parents.get(ancestor)
        if ancestor:
            out.append(pid)
    return out


def pss_mb(server: RunningServer) -> float:
    """Memory of the server, all its processes: the sum of their proportional set sizes
    (pages shared by forked processes counted once in all), in MB."""
    total = 0
    for pid in server_processes(server):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:  # a worker that just ended
            continue
        total += int(re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE).group(1))
    return total / 1024


def start_server(directory: Path, *args: str, env: dict[str, str] | None = None,
                 data_dir: Path | None = None, timeout: float = 60.0,
                 module: str = "wire") -> RunningServer:
    """`python -m <module> serve` (the wire's command line, or a module that adds to the
    engine before running it) on an ephemeral port; returns once it listens."""
    directory.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir or directory / "data"
    log_path = directory / f"server-{uuid.uuid4().hex[:6]}.log"
    environment = {k: v for k, v in os.environ.items() if k != "SQLVEC_PASSWORD"}
    environment.update(env or {})
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, "serve", "--data-dir", str(data_dir), "--port", "0",
             *args],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=environment)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        m = _LISTENING.search(text)
        if m:
            return RunningServer(process, m.group(1), int(m.group(2)), data_dir, log_path)
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{text}")
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"server did not start:\n{log_path.read_text(errors='replace')}")


TEST_TIME_LIMIT = 120  # seconds: a hung protocol exchange fails its test, not the whole run


@pytest.fixture(autouse=True)
def time_limit():
    def expire(signum, frame):
        raise TimeoutError(f"test took longer than {TEST_TIME_LIMIT}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TEST_TIME_LIMIT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def serve_while_used(tmp_path_factory: pytest.TempPathFactory, name: str,
                     *args: str) -> Iterator[RunningServer]:
    """A server for a fixture's lifetime (`yield from` it): stopped cleanly after, with no
    traceback in its log."""
    running = start_server(tmp_path_factory.mktemp(name), *args)
    yield running
    assert running.stop() == 0, running.log()
    assert "Traceback" not in running.log(), running.log()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    """One trust-auth server shared by the driver tests (each uses its own tables)."""
    yield from serve_while_used(tmp_path_factory, "sqlvec-server", "--log-level", "debug")


@pytest.fixture
def start(tmp_path: Path):
    """Start extra servers (TLS, passwords); each is stopped and must exit 0."""
    started: list[RunningServer] = []

    def _start(*args: str, env: dict[str, str] | None = None,
               data_dir: Path | None = None) -> RunningServer:
        running = start_server(tmp_path / f"s{len(started)}", *args, env=env, data_dir=data_dir)
        started.append(running)
        return running

    yield _start
    for running in started:
        assert running.stop() == 0, running.log()


@pytest.fixture
def reap():
    """Register servers a test starts and stops itself (kill -9 included): whatever is still
    running when the test ends, passed or failed, is killed so no server outlives it."""
    started: list[RunningServer] = []
    yield started.append
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


@pytest.fixture
def table(request: pytest.FixtureRequest) -> str:
    """A table name no other test uses."""
    return "t_" + re.sub(r"\W", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6]


def startup_packet(version: int = 3 << 16, **parameters: str) -> bytes:
    return StartupMessage(version, {"user": "postgres", "database": "postgres",
                                    **parameters}).encode()


class RawClient:
    """Bytes in, backend messages out: just enough client to misbehave on purpose."""

    def __init__(self, server) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=5)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the server may have closed on us already: that is a valid answer

    def messages(self, until: bytes | None = b"Z", timeout: float = 5.0) -> list:
        """Read messages until one of type `until` (or the server closes the connection)."""
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while len(self.buffer) >= 5:
                kind, length = struct.unpack_from("!ci", self.buffer)
                if len(self.buffer) < 1 + length:
                    break
                body, self.buffer = self.buffer[5:1 + length], self.buffer[1 + length:]
                out.append(decode_backend(kind, body))
                if until is not None and kind == until:
                    return out
            try:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = self.sock.recv(65536)
            except (TimeoutError, OSError):
                break
            if not chunk:
                break
            self.buffer += chunk
        return out

    def closed(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except (TimeoutError, OSError):
            return False
        return True

    def ready(self, **parameters: str) -> RawClient:
        self.send(startup_packet(**parameters))
        assert any(m.TYPE == b"Z" for m in self.messages())
        return self

    def close(self) -> None:
        self.sock.close()


def on_two_workers(connect: Callable[[], object]) -> tuple:
    """Two connections (psycopg, from `connect`) served by different worker processes. The
    pool hands each connection to the least loaded worker; connections of an earlier test may
    still be closing, so a few tries may be needed."""
    def worker_of(conn) -> str:
        return conn.execute("SHOW sqlvec.worker").fetchone()[0]
    first = connect()
    spare = []
    for _ in range(8):
        other = connect()
        if worker_of(other) != worker_of(first):
            break
        spare.append(other)
    else:
        pytest.fail("every connection landed on the same worker")
    for conn in spare:
        conn.close()
    return first, other


def run_in_thread(conn, sql: str) -> tuple[threading.Thread, list]:
    """Run `sql` on `conn` in a started thread; the list gets None or what it raised."""
    outcome: list = []

    def run() -> None:
        try:
            conn.execute(sql)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def run_asyncpg(server, body):
    """Run `await body(conn)` on a fresh asyncpg connection to `server`; returns its result."""
    async def main():
        conn = await asyncpg.connect(host=server.host, port=server.port, user="postgres",
                                     database="postgres", ssl=False)
        try:
            return await body(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


def pgvector_class(name: str) -> type:
    """One of the `pgvector` package's value classes (Bit, HalfVector, SparseVector): top-level
    from 0.4, in `pgvector.utils` before (the frameworks' pins hold some installs at 0.3)."""
    pgvector = pytest.importorskip("pgvector")
    found = getattr(pgvector, name, None)
    if found is None:
        import importlib

        found = getattr(importlib.import_module("pgvector.utils"), name)
    return found


def clustered(rows: int, queries: int, dim: int, clusters: int, seed: int):
    """(rows, queries) of float32 vectors around `clusters` centres: the queries come from the
    same clusters but are not rows, as a search test's held-out queries should be."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim)).astype(np.float32) * 3
    points = centers[rng.integers(clusters, size=rows + queries)] \
        + rng.normal(size=(rows + queries, dim))
    points = points.astype(np.float32)
    return points[:rows], points[rows:]


def vector_text(v) -> str:
    """A vector's text form, every float4 read back exactly."""
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def ids(conn, sql: str, *params) -> list[int]:
    """The first column of every row of `sql`."""
    return [r[0] for r in conn.execute(sql, params).fetchall()]


def explain(conn, sql: str, *params) -> str:
    """EXPLAIN of `sql` as one string."""
    return "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, params).fetchall())


@contextlib.contextmanager
def beside_postgres(tmp_path_factory: pytest.TempPathFactory, name: str, *args: str
                    ) -> Iterator[tuple[str, str]]:
    """(sqlvec URI, PostgreSQL URI): one of our servers (`serve` given `args`) and a local
    PostgreSQL + pgvector (pgserver) for tests that compare the two; skips without pgserver.
    PostgreSQL's directory is outside pytest's temporary root, which concurrent pytest runs
    prune."""
    pgserver = pytest.importorskip("pgserver")
    running = start_server(tmp_path_factory.mktemp(name), *args)
    pg_dir = tempfile.mkdtemp(prefix=f"sqlvec-{name}-pg-")
    pg = pgserver.get_server(pg_dir, cleanup_mode="stop")
    try:
        yield f"postgresql://postgres@{running.host}:{running.port}/postgres", pg.get_uri()
    finally:
        pg.cleanup()
        shutil.rmtree(pg_dir, ignore_errors=True)
        assert running.stop() == 0, running.log()


def script_outcomes(uri: str, setup: list[str], statements: list[str],
                    error: Callable[[Exception], tuple] | None = None) -> list[tuple]:
    """Each statement's rows (or command tag), or what `error` keeps of its error (SQLSTATE
    and message by default), after `setup` ran: one script's answers, to compare a server's
    with PostgreSQL's."""
    import psycopg

    kept = error or (lambda exc: (exc.sqlstate, exc.diag.message_primary))
    out: list[tuple] = []
    with psycopg.connect(uri, autocommit=True) as conn:
        for sql in setup:
            conn.execute(sql)
        for sql in statements:
            try:
                cur = conn.execute(sql)
                out.append((sql, cur.fetchall() if cur.description else cur.statusmessage))
            except psycopg.Error as exc:
                out.append((sql, *kept(exc)))
    return out
