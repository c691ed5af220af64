"""The server's configuration files, as PostgreSQL's postgresql.conf and postgresql.auto.conf.

`ServerConfig.load` reads `sqlvec.conf` (in the data directory, or the file `--config` names)
and then `sqlvec.auto.conf` (in the data directory, written only by ALTER SYSTEM), validating
every value through the setting registry: a line that cannot be taken fails startup with a
message naming its file and line. `reload` (pg_reload_conf(), SIGHUP) reads them again: if
anything is wrong nothing changes, as PostgreSQL keeps its configuration on a bad reload;
otherwise the new values become every session's defaults (sessions pick them up before their
next statement, keeping what they SET themselves). Settings fixed at server start keep their
start value and report `pending_restart` when the files now say otherwise.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlvec.catalog.config_file import ConfigFileError, Entry, read_config, write_auto_conf
from sqlvec.catalog.settings import SETTINGS, canonical_name, lookup, validate_for_file
from sqlvec.errors import CantChangeRuntimeParam, SqlVecError, UndefinedObject

CONF_FILE = "sqlvec.conf"
AUTO_CONF_FILE = "sqlvec.auto.conf"

# Settings a reload does not change in a running server (PostgreSQL: postmaster context).
_RESTART_CONTEXTS = ("postmaster",)
# ... nor in sessions already started (they read them once, at connection).
_CONNECTION_CONTEXTS = ("backend", "superuser-backend")

log = logging.getLogger("sqlvec.config")


@dataclass(frozen=True)
class FileValue:
    """A setting's value from a configuration file: stored text, file and line."""

    value: str
    file: str
    line: int


def _validated(entries: list[Entry]) -> dict[str, FileValue]:
    """The last value each setting is given, validated; ConfigFileError names the file and
    line of the first one that cannot be taken."""
    values: dict[str, FileValue] = {}
    for entry in entries:
        where = f'in file "{entry.file}" line {entry.line}'
        try:
            name, value = validate_for_file(entry.name, entry.value)
        except SqlVecError as exc:
            message = exc.message
            if exc.sqlstate in ("42704", "42602"):  # unknown names: PostgreSQL's wording
                message = f'unrecognized configuration parameter "{entry.name}"'
            raise ConfigFileError(f"{message} {where}", detail=exc.detail,
                                  hint=exc.hint) from None
        values[name] = FileValue(value, entry.file, entry.line)
    return values


class ServerConfig:
    """The configuration files of one server and the values they give."""

    def __init__(self, data_dir: str, config_file: str | None = None) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.config_file = os.path.abspath(config_file) if config_file \
            else os.path.join(self.data_dir, CONF_FILE)
        self.explicit = config_file is not None  # a named file must exist
        self.auto_file = os.path.join(self.data_dir, AUTO_CONF_FILE)
        self.values: dict[str, FileValue] = {}  # what sessions start from
        self.started: dict[str, FileValue] = {}  # restart-only settings, as at start
        self.pending_restart: set[str] = set()
        self.generation = 0  # bumped by each reload that is applied
        # Called after each applied reload (the server's log settings, for one).
        self.listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @classmethod
    def load(cls, data_dir: str, config_file: str | None = None) -> ServerConfig:
        """Read the files at startup; ConfigFileError (file and line) if any line is bad."""
        config = cls(data_dir, config_file)
        config.values = config._read()
        config.started = {n: v for n, v in config.values.items() if _restart_only(n)}
        return config

    def _read(self) -> dict[str, FileValue]:
        entries = read_config(self.config_file, missing_ok=not self.explicit)
        entries += read_config(self.auto_file, missing_ok=True)
        return _validated(entries)

    def reload(self) -> bool:
        """Read the files again and apply them (pg_reload_conf, SIGHUP). On any error nothing
        changes and the error is logged, as PostgreSQL does; returns whether it applied."""
        try:
            fresh = self._read()
        except ConfigFileError as exc:
            log.error("%s", exc.message)
            log.error('configuration file "%s" contains errors; no changes were applied',
                      self.config_file)
            return False
        with self._lock:
            pending = set()
            for name in set(fresh) | set(self.values):
                if not _restart_only(name):
                    continue
                then = self.started.get(name)
                now = fresh.get(name)
                if (then.value if then else None) != (now.value if now else None):
                    pending.add(name)
                    log.info('parameter "%s" cannot be changed without restarting the server',
                             name)
                # A restart-only setting keeps its start value (and where it came from).
                if then is not None:
                    fresh[name] = then
                else:
                    fresh.pop(name, None)
            for name in sorted(set(fresh) | set(self.values)):
                old, new = self.values.get(name), fresh.get(name)
                if (old.value if old else None) != (new.value if new else None) \
                        and name not in pending:
                    log.info('parameter "%s" changed to "%s"', name,
                             new.value if new else SETTINGS[name].default
                             if name in SETTINGS else "")
            self.values = fresh
            self.pending_restart = pending
            self.generation += 1
        for listener in self.listeners:
            listener()
        return True

    # ALTER SYSTEM ----------------------------------------------------------------------------------

    def alter_system(self, name: str | None, value: str | None) -> None:
        """ALTER SYSTEM SET name = value (value None: RESET name; name None: RESET ALL):
        rewrite sqlvec.auto.conf atomically. Takes effect at the next reload or restart."""
        with self._lock:
            current = {e.name: e.value for e in read_config(self.auto_file, missing_ok=True)}
            current = {canonical_name(n): v for n, v in current.items()}
            if name is None:
                current = {}
            elif value is None:
                current.pop(canonical_name(name), None)
            else:
                key, stored = validate_for_file(name, value)
                current[key] = stored
            write_auto_conf(self.auto_file, current)

    def session_values(self) -> dict[str, str]:
        """The files' values, which sessions start from (before their own)."""
        return {name: entry.value for name, entry in self.values.items()}

    def get(self, name: str) -> str | None:
        """A setting's value from the files, or None when they do not set it."""
        entry = self.values.get(name)
        return entry.value if entry is not None else None

    def source_of(self, name: str) -> FileValue | None:
        """The file and line a setting's value comes from, if it comes from a file."""
        return self.values.get(name)


def _restart_only(name: str) -> bool:
    setting = SETTINGS.get(name)
    return setting is not None and setting.context in _RESTART_CONTEXTS


def applies_to_running_sessions(name: str) -> bool:
    """Whether a reloaded value reaches sessions already started (not for settings read once
    at connection or at server start)."""
    setting = SETTINGS.get(name)
    return setting is None or setting.context not in (*_RESTART_CONTEXTS, *_CONNECTION_CONTEXTS)


def check_alter_system(name: str) -> None:
    """ALTER SYSTEM's checks of a name before the value's: a known setting that a file may set
    (42704 unknown, 55P02 built in)."""
    try:
        setting = lookup(name)
    except UndefinedObject:
        if "." in name:  # a custom placeholder
            return
        raise
    if setting.context == "internal":
        raise CantChangeRuntimeParam(f'parameter "{setting.name}" cannot be changed')
