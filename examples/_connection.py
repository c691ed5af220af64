"""Where the examples connect: the quick-start server, or DATABASE_URL (a libpq URI).

Every example exits 0 on success and 1 with a one-paragraph `error: ...` message (no
traceback) when something goes wrong: no server, a bad DATABASE_URL, a database error.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import NoReturn

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5433/postgres"
START_HINT = ("Start the server with `sqlvec serve` (it listens on 127.0.0.1:5433), or set "
              "DATABASE_URL to a libpq URI such as postgresql://user:password@host:5433/postgres.")


def database_url() -> str:
    """DATABASE_URL when set, else the quick-start server; refuses what is not a libpq URI."""
    url = os.environ.get("DATABASE_URL", "").strip() or DEFAULT_URL
    if not re.match(r"postgres(ql)?://", url):
        fail(f"DATABASE_URL={url!r} is not a libpq URI: it must start with postgresql://, "
             "e.g. postgresql://postgres@127.0.0.1:5433/postgres")
    return url


def shown(url: str) -> str:
    """The URL with any password masked, for messages."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url)


def fail(message: str) -> NoReturn:
    """Exit non-zero with a clear message (what went wrong and what to do)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


CLIENTS_INSTALL = 'pip install ".[clients]"'


def missing_client(exc: ModuleNotFoundError) -> NoReturn:
    """A client package the example needs is not installed: say which, and how to get it."""
    fail(f"the Python package {exc.name or 'a client package'} is not installed; "
         f"{CLIENTS_INSTALL} (from the repository root) installs every client the examples use")


def cannot_connect(url: str, exc: BaseException) -> NoReturn:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    fail(f"cannot connect to {shown(url)}: {reason}\n{START_HINT}")


def connect():
    """A psycopg connection with pgvector's adapters, or a clear exit if the server is down."""
    import psycopg
    from pgvector.psycopg import register_vector

    url = database_url()
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        cannot_connect(url, exc)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    return conn


def run(main: Callable[[], int]) -> NoReturn:
    """Run an example's main(): database and connection errors become `error: ...`, exit 1."""
    try:
        code = main()
    except KeyboardInterrupt:
        fail("interrupted")
    except ModuleNotFoundError as exc:
        missing_client(exc)
    except Exception as exc:  # noqa: BLE001 - turned into a message below, or re-raised
        if not _is_database_error(exc):
            raise
        sqlstate = getattr(exc, "sqlstate", None)
        fail(f"the database refused a statement{f' ({sqlstate})' if sqlstate else ''}: "
             f"{' '.join(str(exc).split())}")
    sys.exit(code)


def _is_database_error(exc: BaseException) -> bool:
    """psycopg, asyncpg and SQLAlchemy errors, and lost connections."""
    module = type(exc).__module__ or ""
    return isinstance(exc, ConnectionError) or module.split(".")[0] in (
        "psycopg", "asyncpg", "sqlalchemy")
