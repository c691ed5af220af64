"""Server settings: defaults, the names clients use, which ones are reported to clients, and
the parsing of values with units (`work_mem = '64MB'`, `statement_timeout = '5s'`), and which
ones a session may not change. Settings that vector access methods read (`hnsw.ef_search`)
come from their declarations (storage/access_methods.py), checked by `check_value`."""

from __future__ import annotations

import math
import re

from sqlvec.errors import CantChangeRuntimeParam, InvalidParameterValue
from sqlvec.storage import access_methods
from sqlvec.storage.search import DEFAULT_TARGET_RECALL, TARGET_RECALL, parse_target_recall
from sqlvec.storage.vector_index import DefaultSetting, IndexSetting

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
    "sqlvec.exact": "off",
    # Searches aim at this recall unless the session sets it or the index's knob
    # (hnsw.ef_search); a DefaultSetting so a search can tell "never set" (storage/search.py).
    TARGET_RECALL: DefaultSetting(str(DEFAULT_TARGET_RECALL)),
    "max_identifier_length": "63",
    "lc_collate": "C",
    "lc_ctype": "C",
    "bytea_output": "hex",
    "jit": "off",
    "work_mem": "1GB",  # per statement, not per operation as in PostgreSQL (docs/operations.md)
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
    "sqlvec.exact": ("", "user", "bool", "Customized Options"),
    TARGET_RECALL: ("", "user", "string", "Customized Options"),
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

# Settings declared by vector access methods, by name (kept in step with the registry).
INDEX_SETTINGS: dict[str, IndexSetting] = {}


def _index_settings(method, registered: bool) -> None:
    for setting in method.settings:
        if registered:
            INDEX_SETTINGS[setting.name] = setting
            DEFAULT_SETTINGS[setting.name] = DefaultSetting(setting.default)
            SETTING_INFO[setting.name] = ("", "user", "integer", "Customized Options")
            CANONICAL[setting.name.lower()] = setting.name
        else:
            INDEX_SETTINGS.pop(setting.name, None)
            DEFAULT_SETTINGS.pop(setting.name, None)
            SETTING_INFO.pop(setting.name, None)
            CANONICAL.pop(setting.name.lower(), None)


access_methods.watch(_index_settings)


def check_value(name: str, value: str) -> str:
    """A new value of a setting as stored, for settings whose values are checked here (those
    of vector access methods and `sqlvec.target_recall`: 22023 with PostgreSQL's messages);
    others are returned as given. The result is a plain string: a value the session chose."""
    if name == TARGET_RECALL:
        target = parse_target_recall(value)
        return "off" if target is None else f"{target:g}"
    setting = INDEX_SETTINGS.get(name)
    return value if setting is None else str(setting.parse(value))



# Settings with units, as PostgreSQL's GUCs: (units and their size in the base unit, the base
# unit, minimum, maximum). Values are integers in the base unit; a number without a unit is in
# the base unit.
MEMORY_UNITS = {"B": 1 / 1024, "kB": 1, "MB": 1024, "GB": 1024 ** 2, "TB": 1024 ** 3}
TIME_UNITS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
INT_MAX = 2_147_483_647
UNIT_SETTINGS: dict[str, tuple[dict[str, float], str, int, int]] = {
    "work_mem": (MEMORY_UNITS, "kB", 64, INT_MAX),
    "statement_timeout": (TIME_UNITS, "ms", 0, INT_MAX),
    "lock_timeout": (TIME_UNITS, "ms", 0, INT_MAX),
    "idle_in_transaction_session_timeout": (TIME_UNITS, "ms", 0, INT_MAX),
}
_NUMBER_UNIT = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S*)\s*")


def parse_unit_setting(name: str, value: str) -> int:
    """A value of a setting with units in its base unit (kB, ms), checked as PostgreSQL
    does: '64MB' -> 65536, '1.5s' -> 1500; unit names are case-sensitive; 22023 otherwise."""
    units, base, low, high = UNIT_SETTINGS[name]
    text = str(value).strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        text = text[1:-1]
    m = _NUMBER_UNIT.fullmatch(text)
    if m is None:
        raise InvalidParameterValue(f'invalid value for parameter "{name}": "{text}"')
    number, unit = float(m.group(1)), m.group(2)
    if unit and unit not in units:
        names = ", ".join(f'"{u}"' for u in list(units)[:-1]) + f', and "{list(units)[-1]}"'
        raise InvalidParameterValue(f'invalid value for parameter "{name}": "{text}"',
                                    hint=f"Valid units for this parameter are {names}.")
    scaled = number * units.get(unit, 1)
    if not math.isfinite(scaled) or abs(scaled) > INT_MAX:
        raise InvalidParameterValue(f'invalid value for parameter "{name}": "{text}"',
                                    hint="Value exceeds integer range.")
    result = round(scaled)  # half to even, as rint()
    if not low <= result <= high:
        raise InvalidParameterValue(f"{result} {base} is outside the valid range for parameter "
                                    f'"{name}" ({low} {base} .. {high} {base})')
    return result


def format_unit_setting(name: str, amount: int) -> str:
    """A value in its base unit as SHOW prints it: in the largest unit that divides it
    ('64MB', '1536kB', '5s', '1500ms'); zero as '0'."""
    units, base, _, _ = UNIT_SETTINGS[name]
    if amount == 0:
        return "0"
    whole = [(u, int(size)) for u, size in units.items() if size >= 1]
    for unit, size in sorted(whole, key=lambda us: -us[1]):
        if amount % size == 0:
            return f"{amount // size}{unit}"
    return f"{amount}{base}"


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
