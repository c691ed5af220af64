"""The `sqlvec` command line: `sqlvec serve` runs the PostgreSQL-protocol server; `sqlvec check`
verifies a data directory's files offline; `sqlvec wal` inspects and repairs a stopped server's
write-ahead log."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import importlib.metadata
import ipaddress
import logging
import os
import signal
import sys

from sqlvec import maintenance
from sqlvec.database import DEFAULT_DATABASE, SERVER_VERSION, Database
from sqlvec.errors import SqlVecError
from wire.auth import AuthConfig, AuthMethod
from wire.server import Limits, Server, make_ssl_context

DEFAULT_DATA_DIR = "./sqlvec-data"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5433
DEFAULT_WORKERS = 0  # worker processes (`--workers`); 0 serves every connection in this one

log = logging.getLogger("sqlvec")


def version() -> str:
    """`sqlvec --version`: this package's version and the PostgreSQL version it reports."""
    try:
        mine = importlib.metadata.version("sqlvec")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        mine = "unknown"
    return f"sqlvec {mine} (PostgreSQL {SERVER_VERSION} compatible)"


def build_parser() -> argparse.ArgumentParser:
    """The `sqlvec` command line: serve, plus the maintenance commands, each with its options and
    environment defaults."""
    parser = argparse.ArgumentParser(
        prog="sqlvec",
        description="sqlvec: a PostgreSQL-compatible SQL vector database.",
    )
    parser.add_argument("--version", action="version", version=version(),
                        help="print the version and the PostgreSQL version clients see, and exit")
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
        "--workers", default=DEFAULT_WORKERS, type=int, metavar="N",
        help="serve connections from N worker processes besides this one, which keeps the "
             "only writer: read-only queries outside a transaction block run in the worker "
             "holding the connection, on its own read-only follower of the data directory; "
             "everything else is relayed here (default: "
             f"{DEFAULT_WORKERS}, one process; N = the number of cores uses them all)",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: info; debug logs one line per connection)",
    )
    check = commands.add_parser(
        "check",
        help="verify every file of a data directory against its checksum",
        description=(
            "Verify every file of every database in the data directory against its checksum: "
            "each manifest version, each sealed segment (size and CRC32 recorded in the "
            "manifest), each vector index file, each delete bitmap, and every WAL frame. Prints "
            "one line per problem, naming the file relative to the data directory and what is "
            "wrong, then a summary. Exits 0 when nothing is damaged, 1 when something is, 2 "
            "when the directory cannot be checked. It only reads: nothing is repaired or "
            "removed, so it is safe while a server runs (it says so; a file that server "
            "replaces meanwhile may be reported, and a re-run tells). While it runs, no server "
            "can start on the directory. What to do about each kind of damage: "
            "docs/operations.md, \"Checking and repairing\"."
        ),
    )
    check.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
        help=f"the data directory to check (default: {DEFAULT_DATA_DIR})",
    )
    _add_wal_commands(commands)
    return parser


def _add_wal_commands(commands: argparse._SubParsersAction) -> None:
    wal = commands.add_parser(
        "wal",
        help="inspect or repair a database's write-ahead log (server stopped)",
        description=(
            "Every commit is one CRC-checked record in the database's write-ahead log "
            "(<data-dir>/<database>/wal/). A record torn by a crash is dropped at startup "
            "automatically; a damaged record that later records prove was durable stops "
            "startup instead, with an error naming the file, offset and LSN. Use `inspect` to "
            "see the log, then restore the file from a backup, or `truncate` to keep the "
            "commits before the damage."
        ),
    )
    actions = wal.add_subparsers(dest="wal_command", required=True, metavar="ACTION")
    inspect = actions.add_parser(
        "inspect", help="list the log's files and problems (read-only)",
        description="Check every WAL file of a database without changing anything and list "
                    "its files, LSN ranges and problems. Exit status 1 if the log is damaged.")
    inspect.add_argument("--records", action="store_true",
                         help="also list every record: LSN, offset, size and what it commits")
    truncate = actions.add_parser(
        "truncate", help="discard the log's records after an LSN (server stopped)",
        description="Keep the records up to --lsn and remove the later ones, so that the "
                    "server can start after a damaged record: the commits after that LSN are "
                    "lost. What is cut is saved beside the log as <file>.cut-<lsn>. Refused "
                    "while a server holds the data directory.")
    truncate.add_argument("--lsn", type=int, required=True, metavar="N",
                          help="the last LSN to keep (see `sqlvec wal inspect`)")
    for action in (inspect, truncate):
        action.add_argument("--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
                            help=f"the data directory (default: {DEFAULT_DATA_DIR})")
        action.add_argument("--database", default=DEFAULT_DATABASE, metavar="NAME",
                            help=f"which database's log (default: {DEFAULT_DATABASE})")
        action.set_defaults(log_level="warning")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `sqlvec` and `python -m wire`: dispatches to the command and returns its
    exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "warning").upper(),
                        format="%(asctime)s %(levelname)s %(message)s")
    if args.command == "serve":
        return serve(args)
    if args.command == "wal":
        return wal_command(args)
    if args.command == "check":
        return check(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


def wal_command(args: argparse.Namespace) -> int:
    """`sqlvec wal inspect|truncate`: 0 when all is well, 1 when the log is damaged or the
    action failed."""
    try:
        if args.wal_command == "truncate":
            saved = maintenance.truncate_wal(args.data_dir, args.database, args.lsn)
            print(f"kept the records up to LSN {args.lsn}")
            for path in saved:
                print(f"saved the cut part in {path}")
            return 0
        reports = maintenance.inspect_wal(args.data_dir, args.database, records=args.records)
    except (SqlVecError, OSError) as exc:
        print(f"sqlvec: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    print(f'write-ahead log of database "{args.database}" in {args.data_dir}')
    damaged = None
    for report in reports:
        scan = report.scan
        lsns = (f"LSN {scan.frames[0].lsn}-{scan.frames[-1].lsn}" if scan.frames
                else f"no records (next LSN {scan.first_lsn})")
        line = (f"{scan.path.name}  format v{scan.version or '?'}  {scan.size:,} bytes  {lsns}  "
                f"{len(scan.frames)} record(s)")
        if report.problem:
            line += (f"  {report.problem.upper()}: {scan.bad_reason} at offset "
                     f"{scan.bad_offset} (record LSN {scan.next_lsn})")
            if scan.later_valid:
                line += (f"; {len(scan.later_valid)} valid record(s) follow it, up to LSN "
                         f"{scan.later_valid[-1].lsn}")
            if report.problem == "damaged" and damaged is None:
                damaged = scan.next_lsn
        print(line)
        for frame, summary in report.records:
            print(f"  LSN {frame.lsn}  offset {frame.offset}  {frame.length:,} bytes  {summary}")
    if damaged is not None:
        print(f"DAMAGED at LSN {damaged}: the server will not start. Restore the file from a "
              f"backup, or run `sqlvec wal truncate --lsn {damaged - 1}` to keep the commits "
              f"before it.")
        return 1
    print(f"ok: {len(reports)} file(s)")
    return 0


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
    """Run the server until a signal stops it: authentication and TLS checked first, then the
    database opened and the port bound."""
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
        for label, text in (("DETAIL", exc.detail), ("HINT", exc.hint)):
            if text:
                print(f"{label}: {text}", file=sys.stderr)
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


def check(args: argparse.Namespace) -> int:
    """`sqlvec check`: one line per problem, a summary, exit 1 if anything is damaged."""
    try:
        report = maintenance.check_data_directory(args.data_dir)
    except SqlVecError as exc:
        print(f"sqlvec: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a directory it may not list
        print(f"sqlvec: cannot check {args.data_dir}: {exc}", file=sys.stderr)
        return 2
    if report.server_running:
        print(f"note: a server has {args.data_dir} open; checking anyway (reading is safe), "
              "but a file it replaces during the check may be reported: re-run to confirm")
    for finding in report.findings:
        label = "" if finding.damaged else "note: "
        print(f"{label}{finding.path}: {finding.message}")
    print(report.summary())
    return 1 if report.damaged else 0


async def _serve(db: Database, args: argparse.Namespace, auth: AuthConfig, context,
                 limits: Limits) -> int:
    if args.workers < 0:
        print("sqlvec: --workers must be 0 or more", file=sys.stderr)
        return 2
    server = Server(db, host=args.host, port=args.port, auth=auth, ssl_context=context,
                    limits=limits, workers=args.workers)
    try:
        host, port = await server.start()
    except OSError as exc:
        print(f"sqlvec: cannot listen on {args.host}:{args.port}: {exc.strerror}",
              file=sys.stderr)
        if exc.errno == errno.EADDRINUSE:
            # PostgreSQL's hint for the same failure, in our terms.
            print(f"HINT: Is another server already running on port {args.port}? Stop it, or "
                  "start this one with --port N (--port 0 picks a free port).", file=sys.stderr)
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
             "%d, workers %d)", host, port, args.data_dir, auth.method.value,
             "on" if context else "off", limits.max_connections, args.workers)
    await stop.wait()
    log.info("sqlvec shutting down")
    await server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
