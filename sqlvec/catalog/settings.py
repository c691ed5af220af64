"""Server settings: defaults, the names clients use, and which ones are reported to clients."""

from __future__ import annotations

SERVER_VERSION = "16.4"
VERSION_TEXT = f"PostgreSQL {SERVER_VERSION} (sqlvec 0.1.0) on x86_64-pc-linux-gnu, compiled by Python"

DEFAULT_SETTINGS: dict[str, str] = {
    "server_version": SERVER_VERSION,
    "server_version_num": "160004",
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "integer_datetimes": "on",
    "standard_conforming_strings": "on",
    "application_name": "",
    "is_superuser": "on",
    "session_authorization": "postgres",
    "default_transaction_read_only": "off",
    "in_hot_standby": "off",
    "search_path": '"$user", public',
    "extra_float_digits": "1",
    "statement_timeout": "0",
    "transaction_isolation": "read committed",
    "default_transaction_isolation": "read committed",
    "hnsw.ef_search": "40",
    "sqlvec.exact": "off",
    "max_identifier_length": "63",
    "lc_collate": "C",
    "lc_ctype": "C",
    "bytea_output": "hex",
    "jit": "off",
    "work_mem": "4MB",
    "max_connections": "100",
    "block_size": "8192",
}

# Settings whose changes a server reports to the client (ParameterStatus).
REPORTED = {"server_version", "server_encoding", "client_encoding", "DateStyle", "IntervalStyle",
            "TimeZone", "integer_datetimes", "standard_conforming_strings", "application_name",
            "is_superuser", "session_authorization", "default_transaction_read_only",
            "in_hot_standby", "search_path"}

CANONICAL = {k.lower(): k for k in DEFAULT_SETTINGS}

