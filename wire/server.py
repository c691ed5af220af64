"""The listener: accepts connections, routes CancelRequests, shuts down cleanly.

An asyncio task accepts connections; each connection is then served by a thread of its own
(`wire.connection`), which reads, runs and answers with blocking calls: a round trip never
waits for a hand-off between threads, and engine work (NumPy, pyarrow and hnswlib release the
GIL) runs in as many threads as there are busy connections, never on the event loop. Each
connection gets a process id (the session's) and a random secret in BackendKeyData; a
CancelRequest naming both interrupts that session's running statement (`Session.cancel`, 57014),
and one naming anything else is ignored silently, as in PostgreSQL.

Limits (`Limits`), so that no client can take the server down:
- at most `max_startup_connections` connections may be in the startup phase (not yet
  authenticated) at once; one more is answered FATAL 53300 from the event loop and closed,
  without a thread;
- a connection must authenticate within `authentication_timeout` seconds (a watchdog task on
  the event loop wakes and ends it, however slowly it trickles bytes);
- at most `max_connections` sessions, the last `superuser_reserved_connections` of them for
  superusers (`admit`, 53300 with PostgreSQL's messages). So at most max_connections +
  max_startup_connections connection threads exist.
After connections close, the watchdog asks the engine to hand freed memory back to the OS
(`Database.return_free_memory`), at most once a second.

Shutdown (`shutdown`): stop listening; idle connections get FATAL 57P01 at once; running
statements get `grace` seconds to finish, then are cancelled; connections still not done after
another `grace` seconds have their sockets shut down, and their threads are waited for. The
caller then closes the database (its WAL synced).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from sqlvec.database import Database
from sqlvec.errors import TooManyConnections
from sqlvec.stack import start_engine_thread
from wire.auth import AuthConfig
from wire.codec import MAX_MESSAGE_SIZE
from wire.connection import Connection
from wire.messages import ErrorResponse
from wire.workers import RelayedConnection, WorkerPool

log = logging.getLogger("sqlvec.wire")

BACKLOG = 128
TOO_MANY = "sorry, too many clients already"
RESERVED = "remaining connection slots are reserved for roles with the SUPERUSER attribute"
_REFUSAL = ErrorResponse.build("FATAL", "53300", TOO_MANY).encode()
MAX_REFUSING = 256  # refused sockets lingering (to let the client read why) at once


@dataclass(frozen=True)
class Limits:
    """How much the server gives its clients (PostgreSQL's names and defaults)."""

    max_connections: int = 100
    superuser_reserved_connections: int = 3
    max_startup_connections: int | None = None  # None: as many as max_connections
    authentication_timeout: float = 60.0  # seconds from accept to authenticated
    auth_failure_delay: float = 1.0  # seconds before a failed password is answered

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if not 0 <= self.superuser_reserved_connections < self.max_connections:
            raise ValueError(
                f"superuser_reserved_connections ({self.superuser_reserved_connections}) must "
                f"be less than max_connections ({self.max_connections})")
        if self.startup_limit < 1:
            raise ValueError("max_startup_connections must be at least 1")
        if self.authentication_timeout <= 0 or self.auth_failure_delay < 0:
            raise ValueError("authentication_timeout must be positive, auth_failure_delay not "
                             "negative")

    @property
    def startup_limit(self) -> int:
        return self.max_startup_connections if self.max_startup_connections is not None \
            else self.max_connections

    def settings(self) -> dict[str, str]:
        """The values SHOW and pg_settings report."""
        timeout = self.authentication_timeout
        return {"max_connections": str(self.max_connections),
                "superuser_reserved_connections": str(self.superuser_reserved_connections),
                "authentication_timeout": f"{timeout:g}s" if timeout % 60 else
                f"{timeout / 60:g}min"}


def make_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """The server's TLS context: the certificate and key given, TLS 1.2 or later."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class Server:
    """A PostgreSQL-protocol front end for one open Database."""

    def __init__(self, database: Database, *, host: str = "127.0.0.1", port: int = 5433,
                 auth: AuthConfig | None = None, ssl_context: ssl.SSLContext | None = None,
                 max_message_size: int = MAX_MESSAGE_SIZE, limits: Limits | None = None,
                 workers: int = 0, worker_command: list[str] | None = None,
                 pool: WorkerPool | None = None) -> None:
        self.database = database
        # With workers, connections are served by that many processes (`wire.workers`): a
        # pool made (and its fork server started) by the caller, or one made here.
        if pool is None and workers > 0:
            pool = WorkerPool(database, workers, worker_command)
        self.pool = pool
        self.host = host
        self.port = port
        self.auth = auth or AuthConfig()
        self.ssl_context = ssl_context
        self.max_message_size = max_message_size
        self.limits = limits or Limits()
        self.connections: set[Connection] = set()
        self._starting: set[Connection] = set()  # accepted, not yet holding a session slot
        self._sessions = 0  # connections holding a session slot (`admit`)
        self._closed_since_trim = 0
        self._by_pid: dict[int, Connection] = {}
        self._lock = threading.Lock()  # connections come and go in their own threads
        self._listeners: list[socket.socket] = []
        self._accepting: list[asyncio.Task] = []
        self._refusing: set[asyncio.Task] = set()
        self._numbers = itertools.count(1)

    # Listening -------------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        """Bind and listen on every address `host` resolves to; returns the first address
        actually bound (port 0 picks a free port, shared by the other addresses)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        port = self.port
        try:
            for family, kind, proto, _name, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self._listeners.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((address[0], port, *address[2:]))
                sock.listen(BACKLOG)
                sock.setblocking(False)
                port = sock.getsockname()[1]
        except OSError:
            self._close_listeners()
            raise
        sockname = self._listeners[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]
        self.database.server_settings.update(
            self.limits.settings(), port=str(self.port), listen_addresses=self.host,
            ssl="on" if self.ssl_context is not None else "off")
        if self.pool is not None:
            try:
                await loop.run_in_executor(None, self.pool.start)
            except BaseException:
                self._close_listeners()
                raise
        self._accepting = [asyncio.create_task(self._accept(sock)) for sock in self._listeners]
        self._accepting.append(asyncio.create_task(self._watch()))
        return self.host, self.port

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, peer = await loop.sock_accept(listener)
            except OSError as exc:  # out of descriptors, say: wait, then accept again
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            with self._lock:
                full = len(self._starting) >= self.limits.startup_limit
            if full:
                self._refuse(sock, peer)
                continue
            sock.setblocking(True)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = self._relayed(sock, peer) if self.pool is not None else None
            if connection is not None:
                sock = connection.sock
            else:
                connection = Connection(self, sock, peer)
            with self._lock:
                self.connections.add(connection)
                self._starting.add(connection)
            try:  # an engine thread: room on its stack for deeply nested statements
                connection.thread = start_engine_thread(
                    self._serve, connection, name=f"sqlvec-connection-{next(self._numbers)}")
            except RuntimeError as exc:  # no more threads: this client is turned away
                log.warning("cannot serve %s: %s", peer, exc)
                self._forget(connection)
                sock.close()

    def _relayed(self, client: socket.socket, peer: object) -> RelayedConnection | None:
        """Hand a client to a worker process and return the connection that serves it here,
        through a socket pair; None if no worker took it (it is then served directly)."""
        assert self.pool is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            index = self.pool.hand(client, theirs)
        finally:
            theirs.close()
        if index < 0:
            ours.close()
            return None
        client.close()  # the worker has its own descriptor of it
        connection = RelayedConnection(self, ours, peer)
        connection.pool, connection.worker = self.pool, index
        return connection

    def _serve(self, connection: Connection) -> None:
        try:
            connection.serve()
        finally:
            self._forget(connection)

    def _forget(self, connection: Connection) -> None:
        with self._lock:
            self.connections.discard(connection)
            self._starting.discard(connection)
            if connection.admitted:
                connection.admitted = False
                self._sessions -= 1
            self._closed_since_trim += 1

    def _refuse(self, sock: socket.socket, peer: object) -> None:
        """Too many clients in the startup phase: answer 53300 from the event loop, without a
        thread, and close once the client has had a moment to read it."""
        log.debug("refusing %s: too many connections in the startup phase", peer)
        try:
            sock.send(_REFUSAL)  # a fresh socket's send buffer takes it whole
        except OSError:
            sock.close()
            return
        if len(self._refusing) >= MAX_REFUSING:
            sock.close()
            return
        task = asyncio.create_task(self._linger(sock))
        self._refusing.add(task)
        task.add_done_callback(self._refusing.discard)

    @staticmethod
    async def _linger(sock: socket.socket, timeout: float = 1.0) -> None:
        """Close after the client closes (or `timeout`): closing with its startup packet unread
        would reset the connection, and the client might lose the error before reading it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                sock.shutdown(socket.SHUT_WR)
                while await asyncio.wait_for(loop.sock_recv(sock, 4096),
                                             max(0.0, deadline - loop.time())):
                    pass
        finally:
            sock.close()

    # Limits ----------------------------------------------------------------------------------

    def check_capacity(self) -> None:
        """53300 before authentication when every session slot is taken."""
        with self._lock:
            if self._sessions >= self.limits.max_connections:
                raise TooManyConnections(TOO_MANY)

    def admit(self, connection: Connection, superuser: bool) -> None:
        """Give an authenticated connection a session slot (53300 if none is left for it)."""
        limits = self.limits
        with self._lock:
            if self._sessions >= limits.max_connections:
                raise TooManyConnections(TOO_MANY)
            if not superuser and self._sessions >= \
                    limits.max_connections - limits.superuser_reserved_connections:
                raise TooManyConnections(RESERVED)
            self._sessions += 1
            connection.admitted = True
            self._starting.discard(connection)

    async def _watch(self) -> None:
        """Every so often: end connections past the authentication timeout, and return memory
        to the OS when connections have closed since the last look."""
        loop = asyncio.get_running_loop()
        period = min(1.0, self.limits.authentication_timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            with self._lock:
                overdue = [c for c in self._starting if c.deadline <= now]
                closed, self._closed_since_trim = self._closed_since_trim, 0
            for connection in overdue:
                connection.expire()
            if closed:
                await loop.run_in_executor(None, self.database.return_free_memory)

    def _close_listeners(self) -> None:
        for task in [*self._accepting, *self._refusing]:
            task.cancel()
        for sock in self._listeners:
            sock.close()
        self._listeners = []

    # Cancellation ----------------------------------------------------------------------------

    def register(self, connection: Connection) -> None:
        """Make a connection reachable by its process id, for cancel requests."""
        with self._lock:
            self._by_pid[connection.pid] = connection

    def unregister(self, connection: Connection) -> None:
        """Forget a connection that has ended (unless the pid already names a newer one)."""
        with self._lock:
            if self._by_pid.get(connection.pid) is connection:
                del self._by_pid[connection.pid]

    def cancel(self, pid: int, secret: bytes) -> None:
        """Cancel the running statement of the connection a CancelRequest names; a wrong secret or
        unknown pid is ignored silently, as in PostgreSQL."""
        target = self._by_pid.get(pid)
        if target is None or not hmac.compare_digest(target.secret, secret):
            log.debug("ignoring cancel request for unknown process %d", pid)
            return
        session = target.session
        if session is not None:
            session.cancel()  # (a relayed connection's also cancels what its worker runs)

    # Shutdown --------------------------------------------------------------------------------

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop listening, end every connection (running statements get `grace` seconds,
        then are cancelled), and wait until no connection thread uses the database. The
        caller then closes the database."""
        self._close_listeners()
        for connection in self._live():
            connection.stop()
        if not await self._wait(grace):
            for connection in self._live():
                if connection.session is not None:
                    connection.session.cancel()
            if not await self._wait(grace):
                for connection in self._live():
                    connection.abort()  # a client that stopped reading no longer blocks us
                await self._wait(None)
        if self.pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.pool.stop)

    def _live(self) -> list[Connection]:
        with self._lock:
            return list(self.connections)

    async def _wait(self, timeout: float | None) -> bool:
        """Wait until every connection thread has ended; False after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while any(c.thread is not None and c.thread.is_alive() for c in self._live()):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True
