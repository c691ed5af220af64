"""The asyncio listener: accepts connections, routes CancelRequests, shuts down cleanly.

One event loop serves every connection; engine work runs on a thread pool (`executor`), so
the loop only moves bytes. Each connection gets a process id (the session's) and a random
secret in BackendKeyData; a CancelRequest naming both interrupts that session's running
statement (`Session.cancel`, 57014), and one naming anything else is ignored silently, as in
PostgreSQL.

Shutdown (`shutdown`): stop listening; idle connections get FATAL 57P01 at once; running
statements get `grace` seconds to finish, then are cancelled; then the thread pool drains and
the database closes (its WAL synced).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
from concurrent.futures import ThreadPoolExecutor

from sqlvec.database import Database
from wire.auth import AuthConfig
from wire.codec import MAX_MESSAGE_SIZE
from wire.connection import Connection

log = logging.getLogger("sqlvec.wire")


def make_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class Server:
    """A PostgreSQL-protocol front end for one open Database."""

    def __init__(self, database: Database, *, host: str = "127.0.0.1", port: int = 5433,
                 auth: AuthConfig | None = None, ssl_context: ssl.SSLContext | None = None,
                 max_message_size: int = MAX_MESSAGE_SIZE, workers: int | None = None) -> None:
        self.database = database
        self.host = host
        self.port = port
        self.auth = auth or AuthConfig()
        self.ssl_context = ssl_context
        self.max_message_size = max_message_size
        # Threads, not cores: a worker mostly waits (on I/O, on pyarrow/NumPy/hnswlib with the
        # GIL released, or in pg_sleep), and a connection holds one only while it runs a call.
        self.executor = ThreadPoolExecutor(max_workers=workers or 64,
                                           thread_name_prefix="sqlvec-worker")
        self.connections: set[Connection] = set()
        self._by_pid: dict[int, Connection] = {}
        self._listener: asyncio.base_events.Server | None = None

    # Listening -------------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        """Bind and listen; returns the address actually bound (port 0 picks a free port)."""
        self._listener = await asyncio.start_server(self._on_client, self.host, self.port,
                                                    reuse_address=True)
        sockname = self._listener.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]
        return self.host, self.port

    async def _on_client(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        connection = Connection(self, reader, writer)
        self.connections.add(connection)
        try:
            await connection.serve()
        finally:
            self.connections.discard(connection)

    # Cancellation ----------------------------------------------------------------------------

    def register(self, connection: Connection) -> None:
        self._by_pid[connection.pid] = connection

    def unregister(self, connection: Connection) -> None:
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
        then are cancelled), drain the thread pool. The caller closes the database."""
        if self._listener is not None:
            self._listener.close()
        for connection in list(self.connections):
            connection.stop()
        pending = [c.task for c in self.connections if c.task is not None]
        if pending:
            _, pending_set = await asyncio.wait(pending, timeout=grace)
            if pending_set:
                for connection in list(self.connections):
                    if connection.session is not None:
                        connection.session.cancel()
                _, pending_set = await asyncio.wait(pending_set, timeout=grace)
                for task in pending_set:
                    task.cancel()
                if pending_set:
                    await asyncio.wait(pending_set, timeout=grace)
        await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown, True)
