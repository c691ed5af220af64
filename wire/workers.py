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

A connection whose traffic is writes is handed over by its worker: its socket comes to the
primary, which serves it from then on as a connection of one process (`RelayedConnection._adopt`).

A CancelRequest reaches the primary like any connection; it cancels the primary's session and
tells the worker serving that connection to cancel its local statement too. A worker that dies
is started again; its clients lose their connections (their primary sessions end, rolling back
what was open), the other workers' clients notice nothing.
"""

from __future__ import annotations

import array
import base64
import functools
import json
import logging
import mmap
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from sqlvec.database import allow_fan_out
from sqlvec.errors import ProtocolViolation
from wire.codec import SESSION_RECV_SIZE, SocketStream, frame
from wire.connection import Closed, Connection

log = logging.getLogger("sqlvec.wire")

SETTINGS_MESSAGE = b"~"  # primary -> worker: the session's settings (JSON), never relayed
ACTIVITY_MESSAGE = b"~"  # worker -> primary: a statement running in the worker (JSON), or none
CONNECTION = b"C"  # control message: a client socket and its relay socket follow as fds
CANCEL = b"X"  # control message: cancel the local statement of this backend pid
READY = b"R"  # worker -> primary on its control socket: loaded, serving
LOG_RECORD = b"L"  # worker -> primary on its control socket: a log record (JSON) to write
STATISTICS = b"S"  # worker -> primary on its control socket: statistics of its reads (JSON)
FLUSH = b"T"  # primary -> worker on its control socket: send your statistics now (a token)
FLUSHED = b"A"  # worker -> primary: statistics sent up to this request (its token)
MANIFEST = b"M"  # primary -> worker on its control socket: a new manifest is published
FORK = b"F"  # primary -> fork server: fork a worker (JSON [index, log level]; its socket follows)
# On a connection's relay pair, three steps move its client socket from the worker to the
# primary (`RelayedConnection._adopt`): worker -> primary, the client's bytes not yet relayed;
# primary -> worker, an empty one (everything before it is the client's); worker -> primary,
# an empty one carrying the client socket (SCM_RIGHTS).
HANDOVER = b"@"
ADOPT_TIMEOUT = 10.0  # seconds the primary waits for the worker's last step, at most
LOG_LEVEL_VARIABLE = "SQLVEC_WORKER_LOG_LEVEL"  # the primary's log level, for its workers
BACKGROUND_PUBLISH = 0.05  # seconds between publications of the position by the pool itself
START_TIMEOUT = 120.0  # seconds a worker may take to load before the server gives up on it
FLUSH_TIMEOUT = 2.0  # seconds a statistics view waits for the workers' statistics, at most

# sequence (odd while being written), LSN, manifest version, configuration reloads
_POSITION = struct.Struct("<QQQQ")
_SCHEMA_LOCK = 64  # offset of one byte: 1 while a transaction block holds (or awaits) the
# default database's DDL lock (written alone: a byte is read whole)
_CONNECTIONS = struct.Struct("<I")  # at offset 68: the connections the workers serve (aligned
_CONNECTIONS_AT = 68  # 4 bytes, read whole)


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class CommitPosition:
    """The writer's commit position in a page of memory shared with the workers (a file
    unlinked at once: it lives as long as a process maps it), with the number of
    configuration reloads the primary has applied (pg_reload_conf, SIGHUP). A sequence number,
    odd while the values are being rewritten, lets readers take a consistent set without a
    lock. Beside it, a flag says whether another transaction's schema changes are open
    (`schema_locked`): reads must then wait for them, in the primary."""

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

    def set_schema_locked(self, locked: bool) -> None:
        """Say whether a transaction block holds, or waits for, the default database's DDL
        lock (the primary, as the lock changes hands: before the DDL statement answers)."""
        self._map[_SCHEMA_LOCK] = 1 if locked else 0

    def schema_locked(self) -> bool:
        """Whether reads must go to the primary, to wait on the DDL lock there (a worker)."""
        return self._map[_SCHEMA_LOCK] != 0

    def set_connections(self, count: int) -> None:
        """Say how many connections the workers serve in all (the primary, as they come and
        go)."""
        _CONNECTIONS.pack_into(self._map, _CONNECTIONS_AT, max(0, count))

    def connections(self) -> int:
        """How many connections the workers serve in all (a worker)."""
        return _CONNECTIONS.unpack_from(self._map, _CONNECTIONS_AT)[0]

    def cores_free(self) -> bool:
        """Whether the workers serve fewer connections than there are cores: only then may a
        query spread its segment searches over threads (`limit_fan_out`)."""
        return self.connections() < _CORES

    def close(self) -> None:
        """Unmap the page and close its descriptor."""
        self._map.close()
        os.close(self.fd)


_CORES = cores()


def limit_fan_out(position: CommitPosition) -> None:
    """In a worker: a query spreads its segments' searches over threads only while the pool
    serves fewer connections than there are cores. With as many connections as cores or more,
    the other connections' queries keep the cores busy, and handing a segment's search to
    another thread costs more CPU than the search (about a fifth of a worker's CPU per top-10
    query on 100k rows in two segments, docs/benchmarks.md); with fewer, the idle cores cut
    the query's latency."""
    allow_fan_out(position.cores_free)


class ForkServer:
    """The process that forks the workers: a child of the primary forked once the data
    directory is loaded and while the primary still runs one thread (forking a process with
    threads can leave the child holding a lock nobody will release). It opens the directory as
    a follower seeded with the writer's loaded tables, so sealed segments and vector indexes
    are the very pages the primary loaded, shared copy-on-write, then forks each worker (and
    each replacement of one that died) from that state on request: a worker starts in
    milliseconds, imports nothing and reads no segment file again. Before each fork it brings
    its follower to the published commit position, so what it loads since is shared as well.

    Whatever a launcher added to the engine before running the command line (an access
    method, say) is in the primary, so it is in every forked worker too."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self._lock = threading.Lock()  # one request, one answer

    @staticmethod
    def unsafe() -> str | None:
        """Why this process cannot fork the fork server safely now, or None if it can."""
        if not hasattr(os, "fork"):
            return "no fork here"
        if threading.active_count() > 1:
            return "threads run already"
        return None

    @classmethod
    def start(cls, database, position: CommitPosition,
              serve: Callable[[socket.socket, object, CommitPosition], int]) -> ForkServer | None:
        """Fork the fork server, which runs `serve`, and wait until it is ready; None if
        this process cannot fork safely (`unsafe`)."""
        reason = cls.unsafe()
        if reason is not None:
            log.info("workers are started as new processes: %s", reason)
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the fork server: never returns into the caller's code
            code = 1
            try:
                ours.close()
                code = serve(theirs, database, position)
            except BaseException:
                log.exception("the worker fork server failed")
            finally:
                os._exit(code)
        theirs.close()
        ours.settimeout(START_TIMEOUT)
        try:
            answer = ours.recv(16)
        except OSError:
            answer = b""
        ours.settimeout(None)
        if answer != READY:
            log.error("the worker fork server did not start; workers are started as new "
                      "processes")
            ours.close()
            _end_child(pid, 10.0)
            return None
        log.info("worker fork server started (process %d)", pid)
        return cls(pid, ours)

    def fork(self, control: socket.socket, index: int, level: int) -> int:
        """Fork worker `index`, giving it `control` (its end of the control socket); its
        process id, 0 if the fork server is gone."""
        with self._lock:
            try:
                socket.send_fds(self.sock, [FORK + json.dumps([index, level]).encode()],
                                [control.fileno()])
                answer = self.sock.recv(32)
            except OSError:
                return 0
        try:
            return int(answer)
        except ValueError:
            return 0

    def stop(self, timeout: float = 10.0) -> None:
        """End the fork server: it exits when its socket closes."""
        self.sock.close()
        _end_child(self.pid, timeout)


def _end_child(pid: int, timeout: float) -> None:
    """Wait for a child process to end, killing it after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        if time.monotonic() >= deadline:
            _kill(pid)
            os.waitpid(pid, 0)
            return
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not os.path.isdir("/proc")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class RelayedConnection(Connection):
    """A connection whose client talks to it through a worker process: served exactly as a
    direct one, plus what the worker needs before each ReadyForQuery (module docstring)."""

    worker = -1  # the pool's slot serving the client
    pool: WorkerPool | None = None
    _mirrored: dict | None = None
    _worker_running = False  # the worker reported a read it runs for this client
    handed_over = False  # the worker handed the client's socket over: served directly now
    _stop_later = False  # shutdown came while it ran: end once it is done

    def stop(self) -> None:
        """Server shutdown: as a direct connection, except that a read running in the worker
        is a running statement too: the connection ends once it is answered (or cancelled
        after the grace period). pg_terminate_backend ends it at once: the worker's read is
        cancelled, and the client gets the FATAL message as from one process."""
        session = self.session
        terminated = session is not None and session.terminated
        with self._lock:
            running = self._worker_running
            if running and not terminated:
                self._stop_later = True
                return
        if running and session is not None and self.pool is not None:
            self.pool.cancel(self.worker, session.pid)
        super().stop()

    def ready_for_query(self) -> None:
        pool = self.pool
        if pool is not None:
            pool.publish()
        session = self.session
        # (A TLS connection is relayed byte for byte: its worker reads none of it.)
        if session is not None and not self.tls and not self.handed_over:
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
            if self.handed_over:
                return type_byte, body
            if type_byte == HANDOVER:
                self._adopt(body)
                continue
            if type_byte != ACTIVITY_MESSAGE:
                return type_byte, body
            report = json.loads(bytes(body))
            ended = report.get("ended")
            session = self.session
            if session is not None:
                session.ran_elsewhere(str(report.get("query") or ""),
                                      float(report.get("started") or 0.0), ended)
            with self._lock:
                self._worker_running = ended is None
                stop = self._stop_later and ended is not None
            if stop:
                super().stop()

    def _adopt(self, pending: bytes) -> None:
        """The worker hands the client's socket over (its traffic is writes:
        `wire.worker.Relay._hand_over`): from now on this process serves the client directly,
        as a connection of a one-process server, its reads too. `pending`: the client's bytes
        the worker had received and not relayed, read first.

        Everything this connection sent before is the client's, so the answer (a HANDOVER of
        our own) goes behind it; the worker relays it all, then sends the socket. Nothing
        else comes from the worker after its HANDOVER, so the socket is received right from
        the pair (a buffered receive would drop the descriptor)."""
        if self.stream.buffered or self.tls:
            raise ProtocolViolation("unexpected connection handover from a worker")
        self.flush()
        relay = self.sock
        self.stream.write(frame(HANDOVER))
        relay.settimeout(ADOPT_TIMEOUT)
        try:
            message, fds, _flags, _address = socket.recv_fds(relay, 16, 1)
        except OSError:
            raise Closed from None
        if message != frame(HANDOVER) or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise Closed  # the worker ended on the way: so does the connection
        client = socket.socket(fileno=fds[0])
        client.settimeout(None)
        stream = SocketStream(client, SESSION_RECV_SIZE)
        stream.feed(pending)
        with self._lock:
            self.sock, self.stream = client, stream
            self.handed_over = True
        relay.close()
        session = self.session
        if session is not None:  # a cancel request has no statement in the worker to reach
            session.__dict__.pop("cancel", None)
        if self.pool is not None:
            self.pool.released(self.worker)
        log.debug("connection from %s (process %d) moved from worker %d to the primary",
                  self.peer, self.pid, self.worker)
        self.worker = -1

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
        self.pid = 0
        self.process: subprocess.Popen | None = None  # when started by the launcher command
        self.control: socket.socket | None = None
        self.load = 0  # connections handed to this slot and not yet ended
        self.lock = threading.Lock()  # one control message at a time
        self.ready = False  # loaded and serving: its control socket is read
        self.flushed = 0  # the last statistics request (token) it answered
        self.lives = 0  # control sockets ended: a request to an ended one is not awaited


class WorkerPool:
    """N worker processes serving the connections of one server (module docstring)."""

    def __init__(self, database, count: int, command: list[str] | None = None) -> None:
        self.database = database
        self.count = count
        # How a worker is started when it cannot be forked (`prefork` was not called, or not
        # while this process ran one thread), before its arguments: by default this package's
        # module; the command line passes its own launcher, so that whatever the launcher adds
        # to the engine (an access method, say) is in the workers too.
        self.command = command or [sys.executable, "-m", "wire.worker"]
        self.position = CommitPosition()
        self.workers = [_Worker(i) for i in range(count)]
        self.restarts = 0
        self.forks: ForkServer | None = None
        self.template = None  # the follower forked workers start from (`prefork`)
        self._lock = threading.Lock()
        self._stopping = False
        self._flushes = threading.Condition()  # statistics requests and their answers
        self._flush_token = 0
        self._announced = -1  # the last manifest version the workers were told of

    # Processes -------------------------------------------------------------------------------

    def prefork(self, serve: Callable[..., int], template: Callable[[object], object]) -> bool:
        """Start the fork server (`ForkServer`), which forks every worker: to be called once
        the data directory is loaded and while this process still runs one thread.
        `template(database)`: the follower the workers start from (`wire.worker.open_template`),
        opened here, before the fork, and kept (never used) while the fork server lives;
        `serve(socket, database, position, follower)`: the fork server's life
        (`wire.worker.fork_server`). False (the workers are then started by the launcher
        command) when this process cannot fork safely."""
        self.database.catalog()  # the default database's catalog exists before any follower
        self.publish()
        if ForkServer.unsafe() is None:  # (else `start` says why, and forks nothing)
            self.template = template(self.database)
        self.forks = ForkServer.start(self.database, self.position,
                                      functools.partial(serve, database=self.template))
        if self.forks is None:
            self._close_template()
        return self.forks is not None

    def _close_template(self) -> None:
        """Close the workers' template follower (its log's descriptors), if one is open."""
        template, self.template = self.template, None
        if template is not None:
            template.close()

    def start(self) -> None:
        """Start every worker and wait until each has loaded the data directory."""
        self.database.catalog()  # the default database's catalog exists before any follower
        self.publish()
        for worker in self.workers:
            self._spawn(worker)
        for worker in self.workers:
            ready = self._await_ready(worker)
            threading.Thread(target=self._watch, args=(worker, ready), daemon=True,
                             name=f"sqlvec-worker-watch-{worker.index}").start()
        threading.Thread(target=self._publish_background, daemon=True,
                         name="sqlvec-position").start()
        # Statistics views ask the workers for their counts first; reads leave the workers
        # while a transaction block's schema changes are open.
        self.database.statistics_source = self.gather_statistics
        self.database.watch_schema_lock(self.position.set_schema_locked)

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
        level = logging.getLogger().getEffectiveLevel()
        try:
            forks = self.forks
            pid = forks.fork(theirs, worker.index, level) if forks is not None else 0
            if pid:
                worker.pid, worker.process = pid, None
            else:
                config = self.database.config
                worker.process = subprocess.Popen(
                    [*self.command, str(theirs.fileno()), str(self.position.fd),
                     os.path.abspath(self.database.path), str(worker.index),
                     *([config.config_file] if config.explicit else [])],
                    pass_fds=(theirs.fileno(), self.position.fd), close_fds=True,
                    env={**os.environ, LOG_LEVEL_VARIABLE: str(level)})
                worker.pid = worker.process.pid
        finally:
            theirs.close()
        worker.control = ours
        log.info("worker %d started (process %d%s)", worker.index, worker.pid,
                 ", forked" if worker.process is None else "")

    def _await_ready(self, worker: _Worker) -> bool:
        assert worker.control is not None
        worker.control.settimeout(START_TIMEOUT)
        try:
            answer = worker.control.recv(16)
        except OSError:
            answer = b""
        worker.control.settimeout(None)
        if answer != READY:
            log.error("worker %d did not start", worker.index)
            return False
        worker.ready = True
        return True

    def _watch(self, worker: _Worker, ready: bool) -> None:
        """Take what the worker sends on its control socket (log records, statistics) until
        the socket closes: the process ended. Then start it again, unless the server is
        stopping."""
        while True:
            control = worker.control
            assert control is not None
            if ready:
                self._read_control(worker, control)
            with self._flushes:  # a statistics request waits no more for this one
                worker.ready = False
                worker.lives += 1
                self._flushes.notify_all()
            code = self._reap(worker)
            if self._stopping:
                return
            log.error("worker %d (process %d) ended with status %s; starting it again",
                      worker.index, worker.pid, code)
            if not ready:
                time.sleep(1.0)  # one that cannot start is not tried in a busy loop
            with worker.lock:
                control.close()
                self._spawn(worker)
            self.restarts += 1
            ready = self._await_ready(worker)

    def _reap(self, worker: _Worker) -> int | None:
        """Wait for a worker whose control socket closed to end; its exit status, when known
        (a forked worker is its fork server's child)."""
        if worker.process is not None:
            return worker.process.wait()
        deadline = time.monotonic() + 10.0
        while _alive(worker.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _alive(worker.pid):
            _kill(worker.pid)
        return None

    def stop(self, timeout: float = 10.0) -> None:
        """End every worker (their relayed connections have ended already), then the fork
        server. Their statistics are taken first: the server keeps them across a clean
        shutdown."""
        self.database.statistics_source = None
        self.database.watch_schema_lock(None)
        self.gather_statistics()
        self._stopping = True
        for worker in self.workers:
            if worker.control is not None:
                # The worker exits when its control socket closes (shut down first: a thread
                # of ours reading it would keep it open).
                try:
                    worker.control.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                worker.control.close()
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            if worker.process is not None:
                try:
                    worker.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    worker.process.kill()
                    worker.process.wait()
            elif worker.pid:
                while _alive(worker.pid) and time.monotonic() < deadline:
                    time.sleep(0.02)
                if _alive(worker.pid):
                    _kill(worker.pid)
        if self.forks is not None:
            self.forks.stop()
        self._close_template()
        self.position.close()

    def pids(self) -> list[int]:
        """The workers' process ids (for tests and operators)."""
        return [w.pid for w in self.workers if w.pid]

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
            self._count(worker, 1)
            return worker.index
        return -1

    def released(self, index: int) -> None:
        """A connection handed to worker `index` has ended: one less to balance."""
        if index >= 0:
            self._count(self.workers[index], -1)

    def _count(self, worker: _Worker, change: int) -> None:
        """One connection more (or less) for `worker`; the workers' total published."""
        with self._lock:
            worker.load += change
            self.position.set_connections(sum(w.load for w in self.workers))

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
        applied (before every ReadyForQuery, and every BACKGROUND_PUBLISH seconds); a new
        manifest is announced to the workers too (`_announce`)."""
        lsn, version = self.database.commit_position()
        self.position.publish(lsn, version, self.database.config.generation)
        if version > self._announced:
            self._announce(version)

    def _announce(self, version: int) -> None:
        """Tell every worker that manifest `version` is published (after the position says so),
        so that its follower loads it now instead of looking for one at a fixed period
        (`wire.worker.Worker._follow`). Never waits for a worker: one whose control socket is
        full finds it at its follower's next look anyway."""
        with self._lock:
            if version <= self._announced:
                return
            self._announced = version
        for worker in self.workers:
            with worker.lock:
                control = worker.control
                if control is None or not worker.ready:
                    continue
                try:
                    control.send(MANIFEST, socket.MSG_DONTWAIT)
                except OSError:
                    pass

    def gather_statistics(self, timeout: float = FLUSH_TIMEOUT) -> None:
        """Have every worker send the statistics it holds, and return once they are counted
        here (`Database.statistics_source`: before a statistics view is read). A worker
        queues a read's statistics before it sends the answer, so every read a client has
        had an answer to is counted by then. One message each way per worker, on the
        control socket, and only when statistics are read: reads pay nothing."""
        with self._flushes:
            self._flush_token += 1
            token = self._flush_token
        asked = []
        for worker in self.workers:
            with worker.lock:
                control = worker.control
                if control is None or not worker.ready:
                    continue
                lives = worker.lives
                try:
                    control.send(FLUSH + str(token).encode())
                except OSError:
                    continue
            asked.append((worker, lives))
        deadline = time.monotonic() + timeout
        with self._flushes:
            for worker, lives in asked:
                while worker.flushed < token and worker.lives == lives:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        log.warning("worker %d did not send its statistics within %gs",
                                    worker.index, timeout)
                        return
                    self._flushes.wait(left)

    def _read_control(self, worker: _Worker, control: socket.socket) -> None:
        """Take what a worker sends until its control socket closes: log records (written
        with this process's handlers), statistics of the reads it answered (counted here)
        and answers to statistics requests."""
        while True:
            try:
                message = control.recv(1 << 20)
            except OSError:
                return
            if not message:
                return
            if message[:1] == FLUSHED:
                with self._flushes:
                    worker.flushed = max(worker.flushed, int(message[1:] or b"0"))
                    self._flushes.notify_all()
                continue
            _take_message(message, self.database)


def pack_durations(observed: list[tuple[float, str | None]]) -> dict[str, str]:
    """Finished statements' (seconds, SQLSTATE or None) as a worker sends them: per SQLSTATE
    ("" for success), the seconds as base64 of little-endian float64s. Exact, and a fraction
    of the cost of JSON numbers (writing and reading a float's digits was most of the
    statistics' cost per read a worker answers)."""
    grouped: dict[str, list[float]] = {}
    for seconds, sqlstate in observed:
        grouped.setdefault(sqlstate or "", []).append(seconds)
    return {state: base64.b64encode(array.array("d", values).tobytes()
                                    if sys.byteorder == "little" else
                                    _swapped(array.array("d", values))).decode()
            for state, values in grouped.items()}


def unpack_durations(packed: dict[str, str]) -> list[tuple[float, str | None]]:
    """`pack_durations`' input back (grouped by SQLSTATE)."""
    out: list[tuple[float, str | None]] = []
    for state, data in packed.items():
        values = array.array("d")
        values.frombytes(base64.b64decode(data))
        if sys.byteorder != "little":
            values.byteswap()
        out.extend((seconds, state or None) for seconds in values)
    return out


def _swapped(values: array.array) -> bytes:
    values.byteswap()
    return values.tobytes()


def _take_message(message: bytes, database) -> None:
    """One message of a worker's control socket: statistics to count, a log record to
    write."""
    if message[:1] == STATISTICS:
        try:
            batch = json.loads(message[1:])
            durations = batch.pop("durations", None)
            if durations and database.on_statement is not None:  # (else nothing counts them)
                batch["observed"] = [*(batch.get("observed") or ()),
                                     *unpack_durations(durations)]
            database.merge_statistics(batch)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("statistics of a worker not counted: %s", exc)
        return
    if message[:1] != LOG_RECORD:
        return
    try:
        record = logging.makeLogRecord(json.loads(message[1:]))
    except ValueError:
        return
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)
