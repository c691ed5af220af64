"""Where the examples connect: the quick-start server, or DATABASE_URL (a libpq URI)."""

from __future__ import annotations

import os
import sys

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5433/postgres"


def database_url() -> str:
    return os.environ.get("DATABASE_URL", DEFAULT_URL)


def fail(message: str) -> None:
    """Exit non-zero with a clear message (what went wrong and what to do)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def connect():
    """A psycopg connection with pgvector's adapters, or a clear exit if the server is down."""
    import psycopg
    from pgvector.psycopg import register_vector

    url = database_url()
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError as exc:
        fail(f"cannot connect to {url}: {exc}\n"
             "Start the server with `sqlvec serve` or set DATABASE_URL.")
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    return conn
