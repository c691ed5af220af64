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
    "default_table_access_method": "heap",
    "client_min_messages": "notice",
    "lc_messages": "C",
    "lc_monetary": "C",
    "lc_numeric": "C",
    "lc_time": "C",
    "default_transaction_deferrable": "off",
    "transaction_read_only": "off",
    "transaction_deferrable": "off",
    "lock_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "max_index_keys": "32",
    "escape_string_warning": "on",
    "row_security": "on",
    "password_encryption": "scram-sha-256",
    "ssl": "off",
    "default_text_search_config": "pg_catalog.english",
    "array_nulls": "on",
    "backslash_quote": "safe_encoding",
    "synchronous_commit": "on",
}

# pg_settings columns per setting: (unit, context, vartype, category).
_CATEGORY_CLIENT = "Client Connection Defaults / Statement Behavior"
_CATEGORY_LOCALE = "Client Connection Defaults / Locale and Formatting"
_CATEGORY_PRESET = "Preset Options"
SETTING_INFO: dict[str, tuple[str, str, str, str]] = {
    "server_version": ("", "internal", "string", _CATEGORY_PRESET),
    "server_version_num": ("", "internal", "integer", _CATEGORY_PRESET),
    "server_encoding": ("", "internal", "string", _CATEGORY_PRESET),
    "integer_datetimes": ("", "internal", "bool", _CATEGORY_PRESET),
    "max_identifier_length": ("", "internal", "integer", _CATEGORY_PRESET),
    "max_index_keys": ("", "internal", "integer", _CATEGORY_PRESET),
    "block_size": ("", "internal", "integer", _CATEGORY_PRESET),
    "in_hot_standby": ("", "internal", "bool", _CATEGORY_PRESET),
    "lc_collate": ("", "internal", "string", _CATEGORY_PRESET),
    "lc_ctype": ("", "internal", "string", _CATEGORY_PRESET),
    "client_encoding": ("", "user", "string", _CATEGORY_LOCALE),
    "DateStyle": ("", "user", "string", _CATEGORY_LOCALE),
    "IntervalStyle": ("", "user", "enum", _CATEGORY_LOCALE),
    "TimeZone": ("", "user", "string", _CATEGORY_LOCALE),
    "extra_float_digits": ("", "user", "integer", _CATEGORY_LOCALE),
    "lc_messages": ("", "superuser", "string", _CATEGORY_LOCALE),
    "lc_monetary": ("", "user", "string", _CATEGORY_LOCALE),
    "lc_numeric": ("", "user", "string", _CATEGORY_LOCALE),
    "lc_time": ("", "user", "string", _CATEGORY_LOCALE),
    "search_path": ("", "user", "string", _CATEGORY_CLIENT),
    "statement_timeout": ("ms", "user", "integer", _CATEGORY_CLIENT),
    "lock_timeout": ("ms", "user", "integer", _CATEGORY_CLIENT),
    "idle_in_transaction_session_timeout": ("ms", "user", "integer", _CATEGORY_CLIENT),
    "work_mem": ("kB", "user", "integer", "Resource Usage / Memory"),
    "max_connections": ("", "postmaster", "integer", "Connections and Authentication"),
    "hnsw.ef_search": ("", "user", "integer", "Customized Options"),
    "sqlvec.exact": ("", "user", "bool", "Customized Options"),
    "jit": ("", "user", "bool", "Query Tuning / Other Planner Options"),
    "standard_conforming_strings": ("", "user", "bool", "Version and Platform Compatibility"),
    "application_name": ("", "user", "string", "Reporting and Logging / What to Log"),
    "is_superuser": ("", "internal", "bool", _CATEGORY_PRESET),
}

# Settings whose changes a server reports to the client (ParameterStatus).
REPORTED = {"server_version", "server_encoding", "client_encoding", "DateStyle", "IntervalStyle",
            "TimeZone", "integer_datetimes", "standard_conforming_strings", "application_name",
            "is_superuser", "session_authorization", "default_transaction_read_only",
            "in_hot_standby", "search_path"}

CANONICAL = {k.lower(): k for k in DEFAULT_SETTINGS}

