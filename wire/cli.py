"""The `sqlvec` command line: `sqlvec serve` runs the PostgreSQL-protocol server."""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import logging
import os
import signal
import sys

from sqlvec.database import Database
from sqlvec.errors import SqlVecError
from wire.auth import AuthConfig, AuthMethod
from wire.server import Limits, Server, make_ssl_context

DEFAULT_DATA_DIR = "./sqlvec-data"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5433

log = logging.getLogger("sqlvec")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sqlvec",
        description="sqlvec: a PostgreSQL-compatible SQL vector database.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="open the data directory and serve it over the PostgreSQL protocol",
        description=(
            "Open (creating if needed) the data directory, recover it from its manifest and "
            "write-ahead log, and serve it over the PostgreSQL wire protocol until interrupted "
            "(Ctrl-C or SIGTERM: running statements finish or are cancelled, the database is "
            "closed and its log synced). Connect with psql, psycopg, asyncpg, JDBC, ..., e.g. "
            "`psql -h 127.0.0.1 -p 5433 -U postgres`."
        ),
    )
    serve.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
        help=f"where databases live (default: {DEFAULT_DATA_DIR})",
    )
    serve.add_argument(
        "--host", default=DEFAULT_HOST, metavar="H",
        help=f"address to listen on (default: {DEFAULT_HOST}); listening beyond loopback "
             "needs a password unless --auth trust is given",
    )
    serve.add_argument(
        "--port", default=DEFAULT_PORT, type=int, metavar="P",
        help=f"TCP port (default: {DEFAULT_PORT}; 0 picks a free port, which is logged)",
    )
    serve.add_argument(
        "--password", default=None, metavar="PASSWORD",
        help="the password every user must give (default: $SQLVEC_PASSWORD); setting one "
             "makes scram-sha-256 the default authentication",
    )
    serve.add_argument(
        "--auth", default=None, choices=[m.value for m in AuthMethod],
        help="how clients authenticate: trust (no password), password (cleartext, use with "
             "TLS), md5, or scram-sha-256 (default: scram-sha-256 with a password, else trust)",
    )
    serve.add_argument(
        "--tls-cert", default=None, metavar="FILE",
        help="PEM certificate: enables TLS for clients that ask for it (sslmode=require)",
    )
    serve.add_argument(
        "--tls-key", default=None, metavar="FILE",
        help="PEM private key of --tls-cert",
    )
    limits = Limits()
    serve.add_argument(
        "--max-connections", default=limits.max_connections, type=int, metavar="N",
        help=f"most client sessions at once (default: {limits.max_connections}); one more is "
             "refused with 53300 'sorry, too many clients already'",
    )
    serve.add_argument(
        "--superuser-reserved-connections", default=limits.superuser_reserved_connections,
        type=int, metavar="N",
        help="of --max-connections, how many only superusers may take (default: "
             f"{limits.superuser_reserved_connections})",
    )
    serve.add_argument(
        "--max-startup-connections", default=None, type=int, metavar="N",
        help="most connections still authenticating at once (default: --max-connections); "
             "more are refused with 53300 before any work is done for them",
    )
    serve.add_argument(
        "--authentication-timeout", default=f"{limits.authentication_timeout:g}", type=float,
        metavar="SECONDS",
        help="a client must finish TLS, startup and authentication within this time or is "
             f"disconnected (default: {limits.authentication_timeout:g})",
    )
    serve.add_argument(
        "--auth-failure-delay", default=f"{limits.auth_failure_delay:g}", type=float,
        metavar="SECONDS",
        help="wait this long before answering a wrong password, to slow down guessing "
             f"(default: {limits.auth_failure_delay:g})",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: info; debug logs one line per connection)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(message)s")
    if args.command == "serve":
        return serve(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_auth(args: argparse.Namespace) -> AuthConfig:
    """The authentication a `serve` invocation asks for, refusing unsafe combinations."""
    password = args.password if args.password is not None else os.environ.get("SQLVEC_PASSWORD")
    method = args.auth or (AuthMethod.SCRAM.value if password else AuthMethod.TRUST.value)
    if args.auth is None and not password and not _is_loopback(args.host):
        raise ValueError(
            f"refusing to listen on {args.host} without a password: anyone who can reach it "
            "could connect. Set --password (or SQLVEC_PASSWORD), or pass --auth trust to "
            "allow it explicitly.")
    if method == AuthMethod.TRUST.value and password:
        log.warning("--auth trust: the password is ignored")
        password = None
    return AuthConfig.build(method, password)


def resolve_limits(args: argparse.Namespace) -> Limits:
    """The connection limits a `serve` invocation asks for (ValueError if inconsistent)."""
    return Limits(max_connections=args.max_connections,
                  superuser_reserved_connections=args.superuser_reserved_connections,
                  max_startup_connections=args.max_startup_connections,
                  authentication_timeout=args.authentication_timeout,
                  auth_failure_delay=args.auth_failure_delay)


def serve(args: argparse.Namespace) -> int:
    try:
        auth = resolve_auth(args)
        if bool(args.tls_cert) != bool(args.tls_key):
            raise ValueError("--tls-cert and --tls-key go together")
        context = make_ssl_context(args.tls_cert, args.tls_key) if args.tls_cert else None
        limits = resolve_limits(args)
    except (ValueError, OSError) as exc:
        print(f"sqlvec: {exc}", file=sys.stderr)
        return 2
    try:
        db = Database.open(args.data_dir)
    except SqlVecError as exc:
        print(f"sqlvec: {exc.message}", file=sys.stderr)
        return 1
    # What exists now (modules, the parser's tables, the opened database) lives as long as the
    # process: out of the cyclic collector's sight, a full collection scans only what queries
    # create, instead of pausing every connection for tens of milliseconds.
    gc.freeze()
    try:
        return asyncio.run(_serve(db, args, auth, context, limits))
    finally:
        db.close()
        log.info("sqlvec stopped")


async def _serve(db: Database, args: argparse.Namespace, auth: AuthConfig, context,
                 limits: Limits) -> int:
    server = Server(db, host=args.host, port=args.port, auth=auth, ssl_context=context,
                    limits=limits)
    try:
        host, port = await server.start()
    except OSError as exc:
        print(f"sqlvec: cannot listen on {args.host}:{args.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int, frame: object) -> None:
        # Plain signal handlers rather than loop.add_signal_handler: these stay installed
        # after the loop closes, so a second signal cannot cut the final WAL sync short.
        try:
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:  # the loop is already closed
            log.info("already shutting down")

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    log.info("sqlvec listening on %s:%d (data directory %s, auth %s, TLS %s, max_connections "
             "%d)", host, port, args.data_dir, auth.method.value, "on" if context else "off",
             limits.max_connections)
    await stop.wait()
    log.info("sqlvec shutting down")
    await server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
