"""The `sqlvec` command line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from sqlvec.database import Database

DEFAULT_DATA_DIR = "./sqlvec-data"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sqlvec",
        description="sqlvec: a PostgreSQL-compatible SQL vector database.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="open the data directory and serve it",
        description=(
            "Open (creating if needed) the data directory, recover it from its manifest and "
            "write-ahead log, and keep it open until interrupted (Ctrl-C or SIGTERM), running "
            "sealing, index builds and compaction in the background."
        ),
    )
    serve.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
        help=f"where databases live (default: {DEFAULT_DATA_DIR})",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: info)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    if args.command == "serve":
        return serve(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


def serve(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    db = Database.open(args.data_dir)
    logging.getLogger("sqlvec").info(
        "sqlvec ready: data directory %s, databases %s", args.data_dir, ", ".join(db.databases()))
    try:
        stop.wait()
    finally:
        db.close()
        logging.getLogger("sqlvec").info("sqlvec stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
