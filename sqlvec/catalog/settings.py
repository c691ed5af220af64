"""Server settings: defaults, the names clients use, which ones are reported to clients, and
which ones a session may not change."""

from __future__ import annotations

from sqlvec.errors import CantChangeRuntimeParam

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
    "superuser_reserved_connections": "3",
    "authentication_timeout": "1min",
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
_CATEGORY_CONNECTIONS = "Connections and Authentication / Connection Settings"
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
    "max_connections": ("", "postmaster", "integer", _CATEGORY_CONNECTIONS),
    "superuser_reserved_connections": ("", "postmaster", "integer", _CATEGORY_CONNECTIONS),
    "port": ("", "postmaster", "integer", _CATEGORY_CONNECTIONS),
    "listen_addresses": ("", "postmaster", "string", _CATEGORY_CONNECTIONS),
    "authentication_timeout": ("s", "sighup", "integer", "Connections and Authentication / "
                               "Authentication"),
    "ssl": ("", "sighup", "bool", "Connections and Authentication / SSL"),
    "data_directory": ("", "postmaster", "string", "File Locations"),
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


# Settings of PostgreSQL that no session may change, beyond those in SETTING_INFO (which this
# server shows): SET, RESET and set_config() refuse them as PostgreSQL does.
_FIXED = {
    **{name: "postmaster" for name in (
        "config_file", "hba_file", "ident_file", "external_pid_file", "unix_socket_directories",
        "unix_socket_group", "unix_socket_permissions", "bonjour", "bonjour_name",
        "reserved_connections", "shared_buffers", "huge_pages", "huge_page_size",
        "max_prepared_transactions", "max_files_per_process", "shared_preload_libraries",
        "max_worker_processes", "max_wal_senders", "max_replication_slots", "wal_level",
        "wal_buffers", "archive_mode", "hot_standby", "max_locks_per_transaction",
        "max_pred_locks_per_transaction", "track_activity_query_size",
        "autovacuum_max_workers", "shared_memory_type", "dynamic_shared_memory_type",
        "wal_log_hints", "logging_collector", "cluster_name", "track_commit_timestamp",
        "jit_provider", "min_dynamic_shared_memory", "max_logical_replication_workers")},
    **{name: "sighup" for name in (
        "ssl_cert_file", "ssl_key_file", "ssl_ca_file", "ssl_crl_file", "ssl_ciphers",
        "ssl_min_protocol_version", "ssl_max_protocol_version", "krb_server_keyfile",
        "archive_command", "checkpoint_timeout", "max_wal_size", "min_wal_size",
        "autovacuum", "log_destination", "log_directory", "log_filename")},
    **{name: "internal" for name in (
        "max_function_args", "segment_size", "wal_block_size", "wal_segment_size",
        "data_checksums", "data_directory_mode", "debug_assertions", "ssl_library",
        "shared_memory_size", "shared_memory_size_in_huge_pages")},
}

_REFUSALS = {
    "internal": 'parameter "{}" cannot be changed',
    "postmaster": 'parameter "{}" cannot be changed without restarting the server',
    "sighup": 'parameter "{}" cannot be changed now',
}


def check_settable(name: str) -> None:
    """Refuse (55P02) a session's change of a setting fixed at server start or built in."""
    key = CANONICAL.get(name.lower(), name.lower())
    context = SETTING_INFO[key][1] if key in SETTING_INFO else _FIXED.get(key)
    refusal = _REFUSALS.get(context or "")
    if refusal is not None:
        raise CantChangeRuntimeParam(refusal.format(key))
