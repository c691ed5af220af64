"""The `sqlvec` command line: `sqlvec serve` runs the PostgreSQL-protocol server; `sqlvec check`
verifies a data directory's files offline; `sqlvec wal` inspects and repairs a stopped server's
write-ahead log; `sqlvec backup` copies a data directory consistently."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import importlib.metadata
import ipaddress
import logging
import os
import platform
import signal
import sys

from sqlvec import maintenance
from sqlvec.database import (
    CONF_FILE,
    DEFAULT_DATABASE,
    SERVER_VERSION,
    ConfigFileError,
    Database,
    ServerConfig,
)
from sqlvec.errors import SqlVecError
from wire import logs
from wire.auth import AuthConfig, AuthMethod
from wire.server import Limits, Server, make_ssl_context
from wire.workers import WorkerPool, cores

DEFAULT_DATA_DIR = "./sqlvec-data"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5433
WORKER_COMMAND = "__worker__"  # the hidden command worker processes are started with


def worker_launcher() -> list[str]:
    """How to start a worker process: the program this one was started as (`python -m wire`,
    `python -m sqlvec`, the `sqlvec` script, or a module that adds to the engine before running
    this command line), with the hidden worker command."""
    main_module = sys.modules.get("__main__")
    spec = getattr(main_module, "__spec__", None)
    if spec is not None and spec.name:
        name = spec.name.removesuffix(".__main__")
        return [sys.executable, "-m", name, WORKER_COMMAND]
    path = getattr(main_module, "__file__", None)
    if path:
        return [sys.executable, os.path.abspath(path), WORKER_COMMAND]
    return [sys.executable, "-m", "wire", WORKER_COMMAND]


def default_workers() -> int:
    """`--workers` when not given: $SQLVEC_WORKERS (a number, or `auto`), else `auto`: one
    worker per core."""
    raw = os.environ.get("SQLVEC_WORKERS", "").strip().lower() or "auto"
    if raw == "auto":
        return cores()
    try:
        return int(raw) if raw else 0
    except ValueError:
        return -1  # refused with the message of a bad --workers


def _workers(text: str) -> int:
    """`--workers`: a number, or `auto` (one per core)."""
    return cores() if text.strip().lower() == "auto" else int(text)


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
        "--config", default=None, metavar="FILE",
        help="the configuration file, in PostgreSQL's syntax (default: sqlvec.conf in the data "
             "directory, if it exists); sqlvec.auto.conf (ALTER SYSTEM) is read after it",
    )
    serve.add_argument(
        "--host", default=None, metavar="H",
        help=f"address to listen on (default: listen_addresses from the configuration file, "
             f"else {DEFAULT_HOST}); listening beyond loopback needs a password unless --auth "
             "trust is given",
    )
    serve.add_argument(
        "--port", default=None, type=int, metavar="P",
        help=f"TCP port (default: port from the configuration file, else {DEFAULT_PORT}; 0 "
             "picks a free port, which is logged)",
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
        "--max-connections", default=None, type=int, metavar="N",
        help="most client sessions at once (default: max_connections from the configuration "
             f"file, else {limits.max_connections}); one more is refused with 53300 'sorry, "
             "too many clients already'",
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
        "--workers", default=None, type=_workers, metavar="N",
        help="serve connections from N worker processes besides this one, which keeps the "
             "only writer: read-only queries outside a transaction block run in the worker "
             "holding the connection, on its own read-only follower of the data directory; "
             "everything else is relayed here. 0 serves everything from this one process "
             "(default: $SQLVEC_WORKERS, a number or `auto`, else `auto`: one per core, "
             f"{cores()} here)",
    )
    serve.add_argument(
        "--metrics-port", default=None, type=int, metavar="P",
        help="serve Prometheus metrics on http://HOST:P/metrics (0 picks a free port, which "
             "is logged); needs the `metrics` extra: pip install 'sqlvec[metrics]'",
    )
    serve.add_argument(
        "--log-level", default=None, choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: log_min_messages from the configuration file, which "
             "keeps start-up, connection and slow-statement lines; debug logs one line per "
             "connection)",
    )
    serve.add_argument(
        "--log-file", default=None, metavar="FILE",
        help="also write the log to FILE, rotated by size (log_rotation_size; "
             f"{logs.BACKUP_COUNT} old files kept); text or JSON lines as log_destination says. "
             "stderr keeps warnings, errors and the start-up and shutdown lines",
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
    backup = commands.add_parser(
        "backup",
        help="copy a data directory consistently, while a server runs on it or not",
        description=(
            "Copy every database of the data directory into DEST (new or empty): per database "
            "one manifest version, the files it lists and the write-ahead log up to the last "
            "whole record, pinned so that the running server keeps them until the copy is "
            "done; every file is checked against its checksum, and backup_label.json is "
            "written last. Restore by starting a server on the copy: recovery replays the "
            "log. See docs/operations.md, \"Backup\"."
        ),
    )
    backup.add_argument("dest", metavar="DEST", help="where the copy goes (new or empty)")
    backup.add_argument("--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
                        help=f"the data directory to copy (default: {DEFAULT_DATA_DIR})")
    backup.set_defaults(log_level="warning")
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
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == [WORKER_COMMAND]:  # a worker process of `serve --workers`
        from wire.worker import run

        run(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    logging.basicConfig(level=getattr(args, "log_level", "warning").upper(),
                        format="%(asctime)s %(levelname)s %(message)s")
    if args.command == "wal":
        return wal_command(args)
    if args.command == "check":
        return check(args)
    if args.command == "backup":
        return backup(args)
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


def resolve_listen(args: argparse.Namespace, config: ServerConfig | None = None) -> None:
    """Fill in what the command line left out from the configuration file (listen_addresses,
    port, max_connections), else the defaults: the command line wins, as PostgreSQL's."""
    get = config.get if config is not None else (lambda name: None)
    if args.host is None:
        # listen_addresses may list several: the first is served ('*': every IPv4 address).
        first = (get("listen_addresses") or DEFAULT_HOST).split(",")[0].strip()
        args.host = {"*": "0.0.0.0", "": DEFAULT_HOST}.get(first, first)
    if args.port is None:
        args.port = int(get("port") or DEFAULT_PORT)
    if args.max_connections is None:
        configured = get("max_connections")
        args.max_connections = int(configured) if configured else Limits().max_connections


def resolve_auth(args: argparse.Namespace) -> AuthConfig:
    """The authentication a `serve` invocation asks for, refusing unsafe combinations."""
    resolve_listen(args)
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
    resolve_listen(args)
    return Limits(max_connections=args.max_connections,
                  superuser_reserved_connections=args.superuser_reserved_connections,
                  max_startup_connections=args.max_startup_connections,
                  authentication_timeout=args.authentication_timeout,
                  auth_failure_delay=args.auth_failure_delay)


def serve(args: argparse.Namespace) -> int:
    """Run the server until a signal stops it: the configuration files read and the log set
    up first, authentication and TLS checked, then the database opened and the port bound."""
    logs.configure(logs.LogSettings(min_messages=_min_messages(args) or "warning"))
    try:
        config = ServerConfig.load(args.data_dir, args.config)
    except ConfigFileError as exc:
        print(f"sqlvec: {exc.message}", file=sys.stderr)
        for label, text in (("DETAIL", exc.detail), ("HINT", exc.hint)):
            if text:
                print(f"{label}: {text}", file=sys.stderr)
        print(f'sqlvec: configuration file "{config_path(args)}" contains errors',
              file=sys.stderr)
        return 1
    resolve_listen(args, config)
    log_settings = logs.LogSettings.from_settings(config.get, args.data_dir, args.log_file,
                                                  _min_messages(args))
    try:
        logs.configure(log_settings)
    except OSError as exc:
        print(f"sqlvec: cannot open the log file {log_settings.file}: {exc.strerror}",
              file=sys.stderr)
        return 1

    def reconfigure_log() -> None:
        # A reload may change the format and the levels kept; the file stays the same.
        fresh = logs.LogSettings.from_settings(config.get, args.data_dir, log_settings.file,
                                               _min_messages(args))
        logs.configure(fresh)
    config.listeners.append(reconfigure_log)
    log.info("starting %s on Python %s", version(), platform.python_version(), extra=_CONSOLE)
    log.info("data directory %s, configuration file %s%s", os.path.abspath(args.data_dir),
             config.config_file, "" if os.path.exists(config.config_file) else " (none)",
             extra=_CONSOLE)
    try:
        auth = resolve_auth(args)
        if bool(args.tls_cert) != bool(args.tls_key):
            raise ValueError("--tls-cert and --tls-key go together")
        context = make_ssl_context(args.tls_cert, args.tls_key) if args.tls_cert else None
        limits = resolve_limits(args)
    except (ValueError, OSError) as exc:
        print(f"sqlvec: {exc}", file=sys.stderr)
        return 2
    if args.workers is None:
        args.workers = default_workers()
    if args.workers < 0:
        print("sqlvec: --workers (or SQLVEC_WORKERS) must be 0 or more, or auto",
              file=sys.stderr)
        return 2
    try:
        # The background threads wait until the workers' fork server exists (wire.workers).
        db = Database.open(args.data_dir, config=config, start_background=args.workers == 0)
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
    metrics = None
    pool = None
    try:
        if args.workers:
            # Workers are forked from this process as it is now: engine imported, data loaded,
            # one thread (a launcher's additions to the engine included).
            from wire.worker import fork_server, open_template

            pool = WorkerPool(db, args.workers, worker_launcher())
            pool.prefork(fork_server, open_template)
            db.start_background()
        if args.metrics_port is not None:
            metrics = _start_metrics(db, args.host, args.metrics_port)
            if metrics is None:
                return 2
        return asyncio.run(_serve(db, args, auth, context, limits, pool))
    finally:
        if metrics is not None:
            metrics.stop()
        if pool is not None and pool.forks is not None:  # (the server may not have started)
            pool.forks.stop()
        db.close()
        log.info("sqlvec stopped", extra=_CONSOLE)
        log.info("database system is shut down", extra=_CONSOLE)


_CONSOLE = {"console": True}  # also on stderr when the log goes to a file (wire/logs.py)


def _min_messages(args: argparse.Namespace) -> str | None:
    return logs.LOG_LEVEL_NAMES[args.log_level] if args.log_level else None


def config_path(args: argparse.Namespace) -> str:
    """The configuration file a `serve` invocation reads."""
    return os.path.abspath(args.config) if args.config \
        else os.path.join(os.path.abspath(args.data_dir), CONF_FILE)


def _start_metrics(db: Database, host: str, port: int):
    """The Prometheus endpoint, or None (after saying why) when it cannot be served."""
    from wire import metrics

    if not metrics.available():
        print("sqlvec: --metrics-port needs prometheus-client: pip install 'sqlvec[metrics]'",
              file=sys.stderr)
        return None
    served = metrics.Metrics(db)
    try:
        bound = served.start(host, port)
    except OSError as exc:
        served.stop()
        print(f"sqlvec: cannot serve metrics on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return None
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return served


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


def backup(args: argparse.Namespace) -> int:
    """`sqlvec backup DEST`: a line per database copied; exit 1 if the copy failed."""
    try:
        report = maintenance.backup_data_directory(args.data_dir, args.dest, note=print)
    except SqlVecError as exc:
        print(f"sqlvec: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"sqlvec: backup of {args.data_dir} failed: {exc}", file=sys.stderr)
        return 1
    print(f"backup complete: {args.dest} ({len(report.databases)} database(s); "
          f"{maintenance.BACKUP_LABEL} written)")
    return 0


async def _serve(db: Database, args: argparse.Namespace, auth: AuthConfig, context,
                 limits: Limits, pool: WorkerPool | None) -> int:
    server = Server(db, host=args.host, port=args.port, auth=auth, ssl_context=context,
                    limits=limits, pool=pool)
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

    def on_hangup(signum: int, frame: object) -> None:
        # As PostgreSQL's SIGHUP: read the configuration files again (off the signal frame).
        log.info("received SIGHUP, reloading configuration files")
        loop.call_soon_threadsafe(lambda: loop.run_in_executor(None, db.config.reload))

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    log.info("sqlvec listening on %s:%d (data directory %s, auth %s, TLS %s, max_connections "
             "%d, workers %d)", host, port, args.data_dir, auth.method.value,
             "on" if context else "off", limits.max_connections, args.workers, extra=_CONSOLE)
    log.info("database system is ready to accept connections", extra=_CONSOLE)
    await stop.wait()
    log.info("sqlvec shutting down", extra=_CONSOLE)
    await server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
