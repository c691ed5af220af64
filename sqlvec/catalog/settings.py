"""Server settings as PostgreSQL's GUCs: one typed declaration per setting, from which SET's
checks, SHOW's text, `pg_settings` and the defaults all derive.

A setting is one of PostgreSQL's (pg_guc.py lists them all, with type, bounds, unit and
context), one of ours (`sqlvec.*`), or one a vector access method declares (`hnsw.ef_search`,
storage/access_methods.py). `validate` is what SET, RESET, `set_config` and startup options go
through, with PostgreSQL's rules and messages:

- an unknown name without a dot is 42704 `unrecognized configuration parameter`; a dotted name
  is a custom placeholder (any string) unless its prefix is reserved (`hnsw`, `ivfflat`,
  `sqlvec`: 42602 `invalid configuration parameter name`, as pgvector reserves its prefixes);
- a value is checked against the type: bool (on/off/true/false/yes/no/1/0 and unique prefixes),
  integer (with units for memory and time, rounded half to even), real, enum (case-insensitive,
  HINT lists the values) and string; a bad value is 22023 and the old value stays;
- settings fixed at server start or built in are refused with 55P02 (`check_settable`).

Which settings change what sqlvec does: `search_path`, `statement_timeout`, `work_mem` (per
statement here), `extra_float_digits`, `DateStyle` (ISO output), `application_name`,
`client_encoding` (UTF8 only), `standard_conforming_strings` (on only), `enable_indexscan`
(off: exact vector search), the vector methods' settings (`hnsw.*`, `ivfflat.*`),
`sqlvec.exact`, `sqlvec.target_recall`. The rest are accepted and shown, as PostgreSQL would,
with no effect here.
"""

from __future__ import annotations

import math
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlvec.catalog.pg_guc import PG_SETTINGS
from sqlvec.errors import (
    CantChangeRuntimeParam,
    FeatureNotSupported,
    InvalidParameterValue,
    SqlVecError,
    UndefinedObject,
)
from sqlvec.storage import access_methods
from sqlvec.storage.search import (
    DEFAULT_TARGET_RECALL,
    MAX_EF_SEARCH,
    MAX_EF_SEARCH_DEFAULT,
    TARGET_RECALL,
    parse_target_recall,
)
from sqlvec.storage.vector_index import DefaultSetting, IndexSetting

SERVER_VERSION = "16.4"
VERSION_TEXT = f"PostgreSQL {SERVER_VERSION} (sqlvec 0.1.0) on x86_64-pc-linux-gnu, compiled by Python"

# Prefixes no placeholder may use: each belongs to a set of declared settings.
RESERVED_PREFIXES = ("hnsw", "ivfflat", "sqlvec")

# Units: memory in bytes, time in milliseconds (the sizes PostgreSQL's guc.c converts with).
MEMORY_UNITS = {"B": 1, "kB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}
TIME_UNITS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_BASE_UNITS = {"B": (MEMORY_UNITS, 1), "kB": (MEMORY_UNITS, 1024),
               "8kB": (MEMORY_UNITS, 8192), "MB": (MEMORY_UNITS, 1024 ** 2),
               "ms": (TIME_UNITS, 1), "s": (TIME_UNITS, 1000), "min": (TIME_UNITS, 60_000)}
INT_MAX = 2_147_483_647
_NUMBER_UNIT = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S*)\s*")
_TRUE = ("on", "true", "yes", "1")
_FALSE = ("off", "false", "no", "0")


@dataclass(frozen=True)
class Setting:
    """One run-time setting, described as `pg_settings` describes it."""

    name: str
    vartype: str  # bool, integer, real, enum, string
    default: str  # the text SHOW prints for the default
    context: str = "user"  # internal, postmaster, sighup, backend, superuser, user, ...
    category: str = "Customized Options"
    description: str = ""
    unit: str | None = None  # the base unit of an integer with units (kB, 8kB, ms, s, ...)
    min: str | None = None
    max: str | None = None
    enumvals: tuple[str, ...] | None = None
    # A check of its own after the type's (e.g. only UTF8 as client_encoding): text -> text.
    check: Callable[[str], str] | None = None

    def parse(self, value: object) -> str:
        """The value as stored and shown, or 22023 with PostgreSQL's message. A string is
        taken as given (SET has removed its quotes); other types may still be quoted."""
        text = str(value) if self.vartype == "string" else _unquoted(value)
        if self.vartype == "bool":
            text = _parse_bool(self.name, text)
        elif self.vartype == "integer":
            text = self._parse_integer(text)
        elif self.vartype == "real":
            text = self._parse_real(text)
        elif self.vartype == "enum":
            text = self._parse_enum(text)
        return self.check(text) if self.check is not None else text

    def _parse_integer(self, text: str) -> str:
        if self.unit in _BASE_UNITS:
            return format_amount(self, parse_amount(self, text))
        number = _parse_number(text)
        if number is None or abs(number) > INT_MAX:
            raise _invalid(self.name, text, hint="Value exceeds integer range."
                           if number is not None else None)
        result = round(number)  # half to even, as rint()
        self._check_range(result, str(result))
        return str(result)

    def _parse_real(self, text: str) -> str:
        number = _parse_number(text)
        if number is None or not math.isfinite(number):
            raise _invalid(self.name, text)
        shown = f"{number:g}"
        self._check_range(number, shown)
        return shown

    def _check_range(self, number: float, shown: str, unit: str = "") -> None:
        low, high = float(self.min or "-inf"), float(self.max or "inf")
        if not low <= number <= high:
            raise InvalidParameterValue(
                f"{shown}{unit} is outside the valid range for parameter \"{self.name}\" "
                f"({self.min}{unit} .. {self.max}{unit})")

    def _parse_enum(self, text: str) -> str:
        for option in self.enumvals or ():
            if option.lower() == text.lower():
                return option
        raise _invalid(self.name, text,
                       hint=f"Available values: {', '.join(self.enumvals or ())}.")


def _unquoted(value: object) -> str:
    text = str(value).strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        text = text[1:-1].replace("''", "'")
    return text


def _invalid(name: str, text: str, hint: str | None = None) -> InvalidParameterValue:
    return InvalidParameterValue(f'invalid value for parameter "{name}": "{text}"', hint=hint)


def _parse_number(text: str) -> float | None:
    """PostgreSQL's parse_int/parse_real input: decimal, hex (0x..), or a float."""
    try:
        if text.lower().startswith(("0x", "-0x", "+0x")):
            return float(int(text, 16))
        return float(text)
    except ValueError:
        return None


def _parse_bool(name: str, text: str) -> str:
    """parse_bool: on/off, true/false, yes/no, 1/0 and unique prefixes, any case."""
    lowered = text.lower()
    if lowered:
        trues = [w for w in _TRUE if w.startswith(lowered)]
        falses = [w for w in _FALSE if w.startswith(lowered)]
        if lowered in _TRUE or (trues and not falses and lowered != "o"):
            return "on"
        if lowered in _FALSE or (falses and not trues and lowered != "o"):
            return "off"
    raise InvalidParameterValue(f'parameter "{name}" requires a Boolean value')


def parse_amount(setting: Setting | str, value: object) -> int:
    """A value of an integer setting with units, in its base unit, checked as PostgreSQL
    does: work_mem '64MB' -> 65536 (kB), statement_timeout '1.5s' -> 1500 (ms); unit names are
    case-sensitive; 22023 otherwise."""
    setting = lookup(setting) if isinstance(setting, str) else setting
    units, base_size = _BASE_UNITS[setting.unit]  # type: ignore[index]
    base = setting.unit
    text = _unquoted(value)
    m = _NUMBER_UNIT.fullmatch(text)
    if m is None:
        raise _invalid(setting.name, text)
    number, unit = float(m.group(1)), m.group(2)
    if unit and unit not in units:
        names = ", ".join(f'"{u}"' for u in list(units)[:-1]) + f', and "{list(units)[-1]}"'
        raise _invalid(setting.name, text, hint=f"Valid units for this parameter are {names}.")
    scaled = number * units[unit] / base_size if unit else number
    if not math.isfinite(scaled) or abs(scaled) > INT_MAX:
        raise _invalid(setting.name, text, hint="Value exceeds integer range.")
    result = round(scaled)  # half to even, as rint()
    setting._check_range(result, str(result), f" {base}")
    return result


def format_amount(setting: Setting | str, amount: int) -> str:
    """An amount in the base unit as SHOW prints it: in the largest unit that divides it
    ('64MB', '1536kB', '5s', '1500ms'); zero as '0'; -1 (disabled) as '-1'."""
    setting = lookup(setting) if isinstance(setting, str) else setting
    units, base_size = _BASE_UNITS[setting.unit]  # type: ignore[index]
    if amount <= 0:
        return str(amount)
    total = amount * base_size
    for unit, size in sorted(units.items(), key=lambda us: -us[1]):
        if size >= base_size and total % size == 0:
            return f"{int(total // size)}{unit}"
    return f"{amount}{setting.unit}"


# Checks of particular settings, after their type's -----------------------------------------------


def _utf8_only(text: str) -> str:
    text = text.strip("'\"")  # some drivers send the value quoted ('utf-8')
    if text.upper().replace("-", "").replace("_", "") not in ("UTF8", "UNICODE"):
        raise FeatureNotSupported(f"client encoding {text} is not supported; use UTF8")
    return "UTF8"


def _standard_strings_only(text: str) -> str:
    # Off, '...' strings would take backslash escapes: sqlvec reads them as standard.
    if text != "on":
        raise FeatureNotSupported("standard_conforming_strings = off is not supported")
    return text


_DATESTYLE_WORDS = {"iso", "sql", "postgres", "german", "dmy", "mdy", "ymd", "euro", "european",
                    "us", "noneuropean", "default"}


def _datestyle(text: str) -> str:
    words = [w.strip() for w in text.replace(" ", ",").split(",") if w.strip()]
    for word in words or [text]:
        if word.lower() not in _DATESTYLE_WORDS:
            raise InvalidParameterValue(f'invalid value for parameter "DateStyle": "{text}"',
                                        detail=f'Unrecognized key word: "{word}".')
    # Output is ISO whatever is asked (docs/sql.md); an explicit other style is kept as shown.
    return "ISO, MDY" if "ISO" in text.upper() or "," not in text else text


# A numeric offset ('+02', '-08:00') or a POSIX zone specification ('EST5EDT', 'UTC+3').
_OFFSET_OR_POSIX = re.compile(r"[+-]?\d{1,2}(:\d{2}){0,2}|<?[A-Za-z]{3,}>?[+-]?\d{1,2}(:\d{2})?"
                              r"([A-Za-z]{3,})?(,.*)?")
_UTC_NAMES = {"UTC", "ETC/UTC", "GMT", "ETC/GMT", "Z", "ZULU", "UCT", "UNIVERSAL", "GREENWICH"}


def _time_zone(text: str) -> str:
    """A zone PostgreSQL would take: an IANA name, an offset or a POSIX specification.
    Accepted and shown; timestamps are still computed and shown in UTC."""
    if text.upper() in ("LOCAL", "DEFAULT"):
        return "UTC"
    if text.upper() in _UTC_NAMES or _OFFSET_OR_POSIX.fullmatch(text):
        return text
    try:
        zoneinfo.ZoneInfo(text)
    except (ValueError, KeyError, OSError):
        raise _invalid("TimeZone", text) from None
    return text


# Where the server log may go (log_destination): text lines, CSV rows or JSON lines.
LOG_DESTINATIONS = ("stderr", "csvlog", "jsonlog")


def _log_destination(text: str) -> str:
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    for word in words or [text]:
        if word not in LOG_DESTINATIONS:
            raise InvalidParameterValue(f'invalid value for parameter "log_destination": "{text}"',
                                        detail=f'Unrecognized key word: "{word}".',
                                        hint="Use stderr, csvlog, jsonlog or a list of them.")
    return ",".join(dict.fromkeys(words))


def _target_recall(text: str) -> str:
    target = parse_target_recall(text)  # 22023 for a bad value
    return "off" if target is None else f"{target:g}"


# The registry ---------------------------------------------------------------------------------------

# Where sqlvec's value differs from PostgreSQL's boot value.
_OURS: dict[str, str] = {
    "server_version": SERVER_VERSION,
    "server_version_num": "160004",
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "TimeZone": "UTC",
    "log_timezone": "UTC",
    "is_superuser": "on",
    "session_authorization": "postgres",
    "lc_collate": "C",
    "lc_ctype": "C",
    "lc_messages": "C",
    "lc_monetary": "C",
    "lc_numeric": "C",
    "lc_time": "C",
    "jit": "off",
    "work_mem": "1GB",  # per statement, not per operation as in PostgreSQL (docs/operations.md)
    "default_text_search_config": "pg_catalog.english",
    "password_encryption": "scram-sha-256",
    "authentication_timeout": "1min",
}

_CHECKS: dict[str, Callable[[str], str]] = {
    "client_encoding": _utf8_only,
    "standard_conforming_strings": _standard_strings_only,
    "DateStyle": _datestyle,
    "TimeZone": _time_zone,
    "log_destination": _log_destination,
}

# Settings whose changes a server reports to the client (ParameterStatus).
REPORTED = {"server_version", "server_encoding", "client_encoding", "DateStyle", "IntervalStyle",
            "TimeZone", "integer_datetimes", "standard_conforming_strings", "application_name",
            "is_superuser", "session_authorization", "default_transaction_read_only",
            "in_hot_standby", "search_path"}

_SQLVEC = (
    Setting("sqlvec.exact", "bool", "off", description="Answers vector top-k queries by exact "
            "search instead of the index (ground truth)."),
    # Searches aim at this recall unless the session sets it or the index's knob
    # (hnsw.ef_search); a DefaultSetting so a search can tell "never set" (storage/search.py).
    Setting(TARGET_RECALL, "string", DefaultSetting(str(DEFAULT_TARGET_RECALL)),
            check=_target_recall,
            description="Recall@10 to search at: picks the index's search knob per segment from "
                        "its calibration (off: use the knob's own setting)."),
    Setting(MAX_EF_SEARCH, "integer", str(MAX_EF_SEARCH_DEFAULT), min="1",
            max=str(MAX_EF_SEARCH_DEFAULT),
            description="The largest search knob (ef_search) a recall target may pick; a target "
                        "the index cannot reach within it is reported with a NOTICE."),
)
# Shown in pg_settings but not in PostgreSQL's list, or typed as PostgreSQL 16 types them.
_EXTRA = (
    Setting("log_connections", "bool", "off", context="superuser-backend",
            category="Reporting and Logging / What to Log",
            description="Logs each successful connection."),
    Setting("session_authorization", "string", "postgres", context="user",
            category="Preset Options", description="Sets the session user name."),
    Setting("is_superuser", "bool", "on", context="internal", category="Preset Options",
            description="Shows whether the current user is a superuser."),
    Setting("lc_collate", "string", "C", context="internal", category="Preset Options",
            description="Shows the collation order locale."),
    Setting("lc_ctype", "string", "C", context="internal", category="Preset Options",
            description="Shows the character classification and case conversion locale."),
)

SETTINGS: dict[str, Setting] = {}


def _load() -> None:
    for name, vartype, boot, low, high, enums, unit, context, category, description in PG_SETTINGS:
        default = _OURS.get(name, boot if boot is not None else "")
        setting = Setting(name, vartype, "", context, category, description, unit, low, high,
                          enums, _CHECKS.get(name))
        if unit in _BASE_UNITS and default not in ("", "-1", "0"):
            default = format_amount(setting, int(default)) if default.lstrip("-").isdigit() \
                else default
        SETTINGS[name] = replace(setting, default=default)
    for setting in (*_SQLVEC, *_EXTRA):
        SETTINGS[setting.name] = setting


_load()

# Settings only a superuser may change (PostgreSQL's superuser and superuser-backend contexts).
SUPERUSER_SETTINGS = frozenset(name for name, s in SETTINGS.items()
                               if s.context in ("superuser", "superuser-backend"))
# Derived views, for the catalogs and the session.
DEFAULT_SETTINGS: dict[str, str] = {name: s.default for name, s in SETTINGS.items()}
CANONICAL = {name.lower(): name for name in SETTINGS}
# Settings declared by vector access methods, by name (kept in step with the registry).
INDEX_SETTINGS: dict[str, IndexSetting] = {}


def _index_settings(method, registered: bool) -> None:
    for declared in method.settings:
        if registered:
            INDEX_SETTINGS[declared.name] = declared
            # A DefaultSetting: a search tells "never set" from `SET hnsw.ef_search = 40`.
            default = DefaultSetting(declared.default_text)
            SETTINGS[declared.name] = Setting(
                declared.name, declared.vartype, default, description=declared.description,
                min=_bound(declared.min), max=_bound(declared.max),
                enumvals=declared.enumvals or None)
            DEFAULT_SETTINGS[declared.name] = default
            CANONICAL[declared.name.lower()] = declared.name
        else:
            INDEX_SETTINGS.pop(declared.name, None)
            SETTINGS.pop(declared.name, None)
            DEFAULT_SETTINGS.pop(declared.name, None)
            CANONICAL.pop(declared.name.lower(), None)


def _bound(value: int | float | None) -> str | None:
    return None if value is None else f"{value:g}" if isinstance(value, float) else str(value)


access_methods.watch(_index_settings)


def lookup(name: str) -> Setting:
    """The declared setting called `name` (any case), or 42704 / 42602 as PostgreSQL."""
    key = CANONICAL.get(name.lower())
    if key is not None:
        return SETTINGS[key]
    lowered = name.lower()
    if "." not in lowered:
        raise UndefinedObject(f'unrecognized configuration parameter "{name}"')
    prefix = lowered.split(".", 1)[0]
    if prefix in RESERVED_PREFIXES:
        raise SqlVecError(f'invalid configuration parameter name "{name}"', sqlstate="42602",
                          detail=f'"{prefix}" is a reserved prefix.')
    raise UndefinedObject(f'unrecognized configuration parameter "{name}"')


def canonical_name(name: str) -> str:
    """The name a setting is stored under: its declared spelling, or a placeholder lowercased."""
    return CANONICAL.get(name.lower(), name.lower())


def _builtin_or_placeholder(name: str) -> Setting | None:
    """The built-in setting `name`, or None for a custom placeholder (a dotted name outside the
    reserved prefixes); any other unknown name is 42704."""
    try:
        return lookup(name)
    except UndefinedObject:
        if "." in name:
            return None
        raise


def validate(name: str, value: object) -> tuple[str, str]:
    """(stored name, stored value) of `SET name = value`: the setting must exist and be
    settable by a session, the value must be of its type and within its bounds. A dotted name
    outside the reserved prefixes is a placeholder that takes any string, as in PostgreSQL."""
    check_settable(name)
    setting = _builtin_or_placeholder(name)
    if setting is None:  # a custom placeholder
        return canonical_name(name), str(value)
    return setting.name, setting.parse(value)


def validate_for_file(name: str, value: object) -> tuple[str, str]:
    """(stored name, stored value) of a configuration file's `name = value` (or ALTER SYSTEM's):
    as `validate`, but settings fixed at server start or connection may be given too; only
    built-in ones are refused (55P02)."""
    setting = _builtin_or_placeholder(name)
    if setting is None:  # a custom placeholder
        return canonical_name(name), str(value)
    if setting.context == "internal":
        raise CantChangeRuntimeParam(_REFUSALS["internal"].format(setting.name))
    return setting.name, setting.parse(value)


_REFUSALS = {
    "internal": 'parameter "{}" cannot be changed',
    "postmaster": 'parameter "{}" cannot be changed without restarting the server',
    "sighup": 'parameter "{}" cannot be changed now',
    "backend": 'parameter "{}" cannot be set after connection start',
    "superuser-backend": 'parameter "{}" cannot be set after connection start',
}


def check_settable(name: str) -> None:
    """Refuse (55P02) a session's change of a setting fixed at server start or built in."""
    setting = SETTINGS.get(CANONICAL.get(name.lower(), ""))
    refusal = _REFUSALS.get(setting.context if setting is not None else "")
    if refusal is not None:
        raise CantChangeRuntimeParam(refusal.format(setting.name))  # type: ignore[union-attr]
