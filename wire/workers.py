"""Worker processes, the primary's side: connections served by several processes.

With `--workers N` the server process (the primary) keeps the one writer of the data directory
and still accepts every connection, but hands each accepted socket to one of N worker
processes (`wire.worker`), the least loaded, over a Unix socket (`socket.send_fds`). With it
goes one end of a new socket pair whose other end the primary serves as an ordinary connection
(`RelayedConnection`): startup, authentication, limits, every write, DDL, transaction, COPY,
cursor, SET and cancel request are handled there, exactly as in one process. The worker relays
those messages, and answers by itself the statements it can: read-only queries outside a
transaction block, on its own read-only follower of the data directory (see `wire.worker`).

What a worker needs to answer a read as the primary would, the primary publishes:
- the commit position (durable WAL LSN and manifest version of the default database) in a
  small shared memory page (`CommitPosition`), rewritten before every ReadyForQuery the primary
  sends: so a commit acknowledged to any client is visible to the next statement of every
  connection, on whichever worker it runs;
- the session's settings, in an internal message (type `~`, never shown to the client) ahead
  of ReadyForQuery whenever they changed, so SET/RESET (search_path, hnsw.ef_search, ...) apply
  to the statements the worker runs.

A CancelRequest reaches the primary like any connection; it cancels the primary's session and
tells the worker serving that connection to cancel its local statement too. A worker that dies
is started again; its clients lose their connections (their primary sessions end, rolling back
what was open), the other workers' clients notice nothing.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from wire.codec import frame
from wire.connection import Connection

log = logging.getLogger("sqlvec.wire")

SETTINGS_MESSAGE = b"~"  # primary -> worker: the session's settings (JSON), never relayed
ACTIVITY_MESSAGE = b"~"  # worker -> primary: a statement running in the worker (JSON), or none
CONNECTION = b"C"  # control message: a client socket and its relay socket follow as fds
CANCEL = b"X"  # control message: cancel the local statement of this backend pid
READY = b"R"  # worker -> primary on its control socket: loaded, serving
LOG_RECORD = b"L"  # worker -> primary on its control socket: a log record (JSON) to write
LOG_LEVEL_VARIABLE = "SQLVEC_WORKER_LOG_LEVEL"  # the primary's log level, for its workers
BACKGROUND_PUBLISH = 0.05  # seconds between publications of the position by the pool itself
START_TIMEOUT = 120.0  # seconds a worker may take to load before the server gives up on it

# sequence (odd while being written), LSN, manifest version, configuration reloads
_POSITION = struct.Struct("<QQQQ")


class CommitPosition:
    """The writer's commit position in a page of memory shared with the workers (a file
    unlinked at once: it lives as long as a process maps it), with the number of
    configuration reloads the primary has applied (pg_reload_conf, SIGHUP). A sequence number,
    odd while the values are being rewritten, lets readers take a consistent set without a
    lock."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            fd, path = tempfile.mkstemp(prefix="sqlvec-position-")
            os.unlink(path)
            os.ftruncate(fd, mmap.PAGESIZE)
        self.fd = fd
        self._map = mmap.mmap(fd, mmap.PAGESIZE)
        self._lock = threading.Lock()
        self._last = (-1, -1, -1)

    def publish(self, lsn: int, version: int, config: int = 0) -> None:
        """Write a new position (the primary; any thread). Every value only grows: a
        publisher that read the position before another thread published a newer one must
        not take it back."""
        with self._lock:
            last = self._last
            lsn, version, config = max(lsn, last[0]), max(version, last[1]), max(config, last[2])
            if (lsn, version, config) == last:
                return
            seq = _POSITION.unpack_from(self._map)[0]
            _POSITION.pack_into(self._map, 0, seq + 1, lsn, version, config)
            _POSITION.pack_into(self._map, 0, seq + 2, lsn, version, config)
            self._last = (lsn, version, config)

    def read(self) -> tuple[int, int, int]:
        """The last (LSN, manifest version, configuration reloads) published (a worker)."""
        while True:
            seq, lsn, version, config = _POSITION.unpack_from(self._map)
            if not seq & 1 and _POSITION.unpack_from(self._map)[0] == seq:
                return lsn, version, config

    def close(self) -> None:
        """Unmap the page and close its descriptor."""
        self._map.close()
        os.close(self.fd)


class RelayedConnection(Connection):
    """A connection whose client talks to it through a worker process: served exactly as a
    direct one, plus what the worker needs before each ReadyForQuery (module docstring)."""

    worker = -1  # the pool's slot serving the client
    pool: WorkerPool | None = None
    _mirrored: dict | None = None
    _worker_running = False  # the worker reported a read it runs for this client
    _stop_later = False  # shutdown came while it ran: end once it is done

    def stop(self) -> None:
        """Server shutdown: as a direct connection, except that a read running in the worker
        is a running statement too: the connection ends once it is answered (or cancelled
        after the grace period)."""
        with self._lock:
            if self._worker_running:
                self._stop_later = True
                return
        super().stop()

    def ready_for_query(self) -> None:
        pool = self.pool
        if pool is not None:
            pool.publish()
        session = self.session
        # (A TLS connection is relayed byte for byte: its worker reads none of it.)
        if session is not None and not self.tls:
            mirrored = self._mirrored
            if mirrored is None or session.settings != mirrored["settings"] \
                    or session.config_generation != mirrored["config"] \
                    or len(session.overridden) != len(mirrored["overridden"]):
                self._mirrored = exported = session.exported_settings()
                self.send_raw(frame(SETTINGS_MESSAGE, json.dumps(exported).encode()))
        super().ready_for_query()

    def _open_session(self, database: str, user: str, settings: dict[str, str]):
        session = super()._open_session(database, user, settings)
        pool, local_cancel = self.pool, session.cancel

        def cancel() -> None:  # pg_cancel_backend and CancelRequests reach the worker too
            local_cancel()
            if pool is not None:
                pool.cancel(self.worker, session.pid)

        session.cancel = cancel  # type: ignore[method-assign]
        return session


    def _read(self) -> tuple[bytes, bytes]:
        """The next client message; the worker's reports of statements it runs (for
        pg_stat_activity) are taken here and never reach the protocol."""
        while True:
            type_byte, body = super()._read()
            if type_byte != ACTIVITY_MESSAGE:
                return type_byte, body
            query = json.loads(bytes(body)).get("query")
            session = self.session
            if session is not None and not session.explicit:
                session.state = "active" if query is not None else "idle"
                if query is not None:
                    session.current_query = query
            with self._lock:
                self._worker_running = query is not None
                stop = self._stop_later and query is None
            if stop:
                super().stop()

    def _release(self) -> None:
        session = self.session
        if session is not None:  # the wrapper of `_open_session` refers to the session
            session.__dict__.pop("cancel", None)
        try:
            super()._release()
        finally:
            if self.pool is not None:
                self.pool.released(self.worker)


class _Worker:
    """One slot of the pool: its process and control socket (both replaced on a restart)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: subprocess.Popen | None = None
        self.control: socket.socket | None = None
        self.load = 0  # connections handed to this slot and not yet ended
        self.lock = threading.Lock()  # one control message at a time


class WorkerPool:
    """N worker processes serving the connections of one server (module docstring)."""

    def __init__(self, database, count: int, command: list[str] | None = None) -> None:
        self.database = database
        self.count = count
        # How a worker is started, before its arguments: by default this package's module; the
        # command line passes its own launcher, so that whatever the launcher adds to the engine
        # (an access method, say) is in the workers too.
        self.command = command or [sys.executable, "-m", "wire.worker"]
        self.position = CommitPosition()
        self.workers = [_Worker(i) for i in range(count)]
        self.restarts = 0
        self._lock = threading.Lock()
        self._stopping = False

    # Processes -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start every worker and wait until each has loaded the data directory."""
        self.database.catalog()  # the default database's catalog exists before any follower
        self.publish()
        for worker in self.workers:
            self._spawn(worker)
        for worker in self.workers:
            self._await_ready(worker)
            threading.Thread(target=self._watch, args=(worker,), daemon=True,
                             name=f"sqlvec-worker-watch-{worker.index}").start()
        threading.Thread(target=self._publish_background, daemon=True,
                         name="sqlvec-position").start()

    def _publish_background(self) -> None:
        """Background work (a seal, an index build, a compaction) commits manifests with no
        ReadyForQuery to follow: publish the position every so often too."""
        while not self._stopping:
            time.sleep(BACKGROUND_PUBLISH)
            try:
                self.publish()
            except Exception:  # the database closing under us at shutdown
                return

    def _spawn(self, worker: _Worker) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        config = self.database.config
        try:
            worker.process = subprocess.Popen(
                [*self.command, str(theirs.fileno()),
                 str(self.position.fd), os.path.abspath(self.database.path), str(worker.index),
                 *([config.config_file] if config.explicit else [])],
                pass_fds=(theirs.fileno(), self.position.fd), close_fds=True,
                env={**os.environ,
                     LOG_LEVEL_VARIABLE: str(logging.getLogger().getEffectiveLevel())})
        finally:
            theirs.close()
        worker.control = ours
        log.info("worker %d started (process %d)", worker.index, worker.process.pid)

    def _await_ready(self, worker: _Worker) -> None:
        assert worker.control is not None
        worker.control.settimeout(START_TIMEOUT)
        try:
            answer = worker.control.recv(16)
        except OSError:
            answer = b""
        worker.control.settimeout(None)
        if answer != READY:
            log.error("worker %d did not start", worker.index)
            return
        threading.Thread(target=_write_log, args=(worker.control,), daemon=True,
                         name=f"sqlvec-worker-log-{worker.index}").start()

    def _watch(self, worker: _Worker) -> None:
        """Start a worker again when its process ends, unless the server is stopping."""
        while True:
            process = worker.process
            assert process is not None
            code = process.wait()
            if self._stopping:
                return
            log.error("worker %d (process %d) ended with status %s; starting it again",
                      worker.index, process.pid, code)
            with worker.lock:
                if worker.control is not None:
                    worker.control.close()
                self._spawn(worker)
            self.restarts += 1
            self._await_ready(worker)

    def stop(self, timeout: float = 10.0) -> None:
        """End every worker (their relayed connections have ended already)."""
        self._stopping = True
        for worker in self.workers:
            if worker.control is not None:
                worker.control.close()  # the worker exits when its control socket closes
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            if worker.process is None:
                continue
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        self.position.close()

    def pids(self) -> list[int]:
        """The workers' process ids (for tests and operators)."""
        return [w.process.pid for w in self.workers if w.process is not None]

    # Connections -----------------------------------------------------------------------------

    def hand(self, client: socket.socket, relay: socket.socket) -> int:
        """Give a client socket and the worker's end of its relay to the least loaded worker;
        returns its slot, or -1 if no worker could take it (the caller serves it directly)."""
        with self._lock:
            order = sorted(self.workers, key=lambda w: w.load)
        for worker in order:
            with worker.lock:
                control = worker.control
                if control is None:
                    continue
                try:
                    socket.send_fds(control, [CONNECTION], [client.fileno(), relay.fileno()])
                except OSError as exc:
                    log.warning("cannot hand a connection to worker %d: %s", worker.index, exc)
                    continue
            with self._lock:
                worker.load += 1
            return worker.index
        return -1

    def released(self, index: int) -> None:
        """A connection handed to worker `index` has ended: one less to balance."""
        if index >= 0:
            with self._lock:
                self.workers[index].load -= 1

    def cancel(self, index: int, pid: int) -> None:
        """Ask worker `index` to cancel the statement it runs for backend `pid`, if any."""
        if not 0 <= index < self.count:
            return
        worker = self.workers[index]
        with worker.lock:
            if worker.control is None:
                return
            try:
                worker.control.send(CANCEL + str(pid).encode())
            except OSError:
                pass

    def publish(self) -> None:
        """Publish the default database's commit position and the configuration reloads
        applied (before every ReadyForQuery, and every BACKGROUND_PUBLISH seconds)."""
        self.position.publish(*self.database.commit_position(),
                              self.database.config.generation)


def _write_log(control: socket.socket) -> None:
    """Write the log records a worker sends, with this process's handlers, until its control
    socket closes."""
    while True:
        try:
            message = control.recv(1 << 18)
        except OSError:
            return
        if not message:
            return
        if message[:1] != LOG_RECORD:
            continue
        try:
            record = logging.makeLogRecord(json.loads(message[1:]))
        except ValueError:
            continue
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)
