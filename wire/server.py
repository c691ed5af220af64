"""The listener: accepts connections, routes CancelRequests, shuts down cleanly.

An asyncio task accepts connections; each connection is then served by a thread of its own
(`wire.connection`), which reads, runs and answers with blocking calls: a round trip never
waits for a hand-off between threads, and engine work (NumPy, pyarrow and hnswlib release the
GIL) runs in as many threads as there are busy connections, never on the event loop. Each
connection gets a process id (the session's) and a random secret in BackendKeyData; a
CancelRequest naming both interrupts that session's running statement (`Session.cancel`, 57014),
and one naming anything else is ignored silently, as in PostgreSQL.

Shutdown (`shutdown`): stop listening; idle connections get FATAL 57P01 at once; running
statements get `grace` seconds to finish, then are cancelled; connections still not done after
another `grace` seconds have their sockets shut down, and their threads are waited for. The
caller then closes the database (its WAL synced).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import socket
import ssl
import threading
import time

from sqlvec.database import Database
from sqlvec.stack import start_engine_thread
from wire.auth import AuthConfig
from wire.codec import MAX_MESSAGE_SIZE
from wire.connection import Connection

log = logging.getLogger("sqlvec.wire")

BACKLOG = 128


def make_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class Server:
    """A PostgreSQL-protocol front end for one open Database."""

    def __init__(self, database: Database, *, host: str = "127.0.0.1", port: int = 5433,
                 auth: AuthConfig | None = None, ssl_context: ssl.SSLContext | None = None,
                 max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.database = database
        self.host = host
        self.port = port
        self.auth = auth or AuthConfig()
        self.ssl_context = ssl_context
        self.max_message_size = max_message_size
        self.connections: set[Connection] = set()
        self._by_pid: dict[int, Connection] = {}
        self._lock = threading.Lock()  # connections come and go in their own threads
        self._listeners: list[socket.socket] = []
        self._accepting: list[asyncio.Task] = []
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
        self._accepting = [asyncio.create_task(self._accept(sock)) for sock in self._listeners]
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
            sock.setblocking(True)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = Connection(self, sock, peer)
            with self._lock:
                self.connections.add(connection)
            try:  # an engine thread: room on its stack for deeply nested statements
                connection.thread = start_engine_thread(
                    self._serve, connection, name=f"sqlvec-connection-{next(self._numbers)}")
            except RuntimeError as exc:  # no more threads: this client is turned away
                log.warning("cannot serve %s: %s", peer, exc)
                with self._lock:
                    self.connections.discard(connection)
                sock.close()

    def _serve(self, connection: Connection) -> None:
        try:
            connection.serve()
        finally:
            with self._lock:
                self.connections.discard(connection)

    def _close_listeners(self) -> None:
        for task in self._accepting:
            task.cancel()
        for sock in self._listeners:
            sock.close()
        self._listeners = []

    # Cancellation ----------------------------------------------------------------------------

    def register(self, connection: Connection) -> None:
        with self._lock:
            self._by_pid[connection.pid] = connection

    def unregister(self, connection: Connection) -> None:
        with self._lock:
            if self._by_pid.get(connection.pid) is connection:
                del self._by_pid[connection.pid]

    def cancel(self, pid: int, secret: bytes) -> None:
        target = self._by_pid.get(pid)
        if target is None or not hmac.compare_digest(target.secret, secret):
            log.debug("ignoring cancel request for unknown process %d", pid)
            return
        session = target.session
        if session is not None:
            session.cancel()

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
