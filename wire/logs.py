"""The server log: where it goes, in which format, and which messages it keeps, from the
settings PostgreSQL uses for the same (the configuration files or their defaults).

- `log_destination`: `stderr` (text lines, as PostgreSQL's `2024-05-01 12:00:00.123 UTC [42]
  LOG:  message`), `jsonlog` (one JSON object per line, with PostgreSQL's jsonlog keys), or
  both (text on stderr, JSON in the file, when there is a file); `csvlog` adds PostgreSQL's
  CSV rows (its 26 columns) in a file of their own beside the log file (`.log` → `.csv`).
- a file (`--log-file FILE`, or `logging_collector = on` with `log_directory` and
  `log_filename` under the data directory), rotated by size (`log_rotation_size`) and by age
  (`log_rotation_age`), keeping BACKUP_COUNT old files; with a file, stderr still shows
  warnings, errors and the start-up and shutdown lines.
- `log_min_messages`: the least severe level kept, in PostgreSQL's order (LOG, the level of
  start-up, connection and duration lines, ranks above ERROR).

Python's levels map to PostgreSQL's labels: DEBUG is DEBUG1, INFO is LOG, WARNING, ERROR,
CRITICAL is FATAL; a record may name its own (`extra={"pg_severity": ...}`) and carry a
statement, a SQLSTATE, a DETAIL and a HINT (sqlvec/session/statement_log.py).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

BACKUP_COUNT = 5  # rotated files kept beside the current one (<file>.1 ... <file>.5)

LEVELS = ("debug5", "debug4", "debug3", "debug2", "debug1", "info", "notice", "warning",
          "error", "log", "fatal", "panic")
_RANK = {name: i for i, name in enumerate(LEVELS)}
_PG_LABEL = {logging.DEBUG: "DEBUG", logging.INFO: "LOG", logging.WARNING: "WARNING",
             logging.ERROR: "ERROR", logging.CRITICAL: "FATAL"}
# --log-level's names, as log_min_messages levels.
LOG_LEVEL_NAMES = {"debug": "debug1", "info": "warning", "warning": "warning", "error": "error"}
_OWN_HANDLER = "_sqlvec_log_handler"


def pg_severity(record: logging.LogRecord) -> str:
    """The record's PostgreSQL label: its own, or its Python level's."""
    return getattr(record, "pg_severity", None) or _PG_LABEL.get(record.levelno, "LOG")


def _rank(record: logging.LogRecord) -> int:
    label = pg_severity(record).lower()
    return _RANK.get("debug1" if label == "debug" else label, _RANK["log"])


@dataclass
class LogSettings:
    """What the log needs from the settings (the files' values over the defaults)."""

    destination: str = "stderr"  # stderr, jsonlog, or both comma-separated
    min_messages: str = "warning"
    file: str | None = None  # None: stderr only
    rotation_bytes: int = 10 * 1024 * 1024  # 0: never rotate
    rotation_seconds: int = 24 * 3600  # log_rotation_age; 0: never by age

    @classmethod
    def from_settings(cls, get: Callable[[str], str | None], data_dir: str,
                      log_file: str | None = None,
                      min_messages: str | None = None) -> LogSettings:
        """From `get(name)` (a configuration value or None); `log_file` and `min_messages`
        (the command line's) win over the files."""
        collector = (get("logging_collector") or "off") == "on"
        if log_file is None and collector:
            directory = os.path.join(data_dir, get("log_directory") or "log")
            name = time.strftime(get("log_filename") or "sqlvec-%Y-%m-%d_%H%M%S.log")
            log_file = os.path.join(directory, name)
        size = get("log_rotation_size")
        age = get("log_rotation_age")
        return cls(destination=get("log_destination") or "stderr",
                   min_messages=min_messages or get("log_min_messages") or "warning",
                   file=log_file,
                   rotation_bytes=_size_bytes(size) if size is not None else 10 * 1024 * 1024,
                   rotation_seconds=_age_seconds(age) if age is not None else 24 * 3600)

    @property
    def json_file(self) -> bool:
        return "jsonlog" in self.destination.split(",")

    @property
    def csv_file(self) -> str | None:
        """Where csvlog's rows go: the log file's name with `.csv` for `.log`, or None."""
        if "csvlog" not in self.destination.split(",") or not self.file:
            return None
        base = self.file[:-4] if self.file.endswith(".log") else self.file
        return base + ".csv"


def _age_seconds(text: str) -> int:
    """log_rotation_age in seconds: minutes by default, or with PostgreSQL's units."""
    units = {"min": 60, "ms": 0.001, "s": 1, "h": 3600, "d": 86400}
    for unit, factor in units.items():
        if text.endswith(unit) and text[:-len(unit)].strip().isdigit():
            return int(int(text[:-len(unit)]) * factor)
    return int(text) * 60 if text.strip().isdigit() else 0


def _size_bytes(text: str) -> int:
    units = {"kB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}
    for unit, size in units.items():
        if text.endswith(unit):
            return int(text[:-len(unit)]) * size
    return int(text) * 1024 if text.lstrip("-").isdigit() else 0


class TextFormatter(logging.Formatter):
    """PostgreSQL's text lines: `%m [%p] ` then `LEVEL:  message`, and DETAIL, HINT and
    STATEMENT lines after it."""

    def format(self, record: logging.LogRecord) -> str:
        """The record's lines, each with the time and backend prefix."""
        stamp = dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
        prefix = (f"{stamp:%Y-%m-%d %H:%M:%S}.{stamp.microsecond // 1000:03d} UTC "
                  f"[{getattr(record, 'session_pid', None) or record.process}] ")
        lines = [f"{prefix}{pg_severity(record)}:  {record.getMessage()}"]
        for label, field in (("DETAIL", "detail"), ("HINT", "hint"), ("STATEMENT", "statement")):
            value = getattr(record, field, None)
            if value:
                lines.append(f"{prefix}{label}:  {value}")
        if record.exc_info:
            lines.append(self.formatException(record.exc_info))
        return "\n".join(lines)


class JsonFormatter(logging.Formatter):
    """PostgreSQL's jsonlog: one JSON object per line, with its key names where it has them."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON object on one line."""
        stamp = dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
        entry: dict[str, object] = {
            "timestamp": f"{stamp:%Y-%m-%d %H:%M:%S}.{stamp.microsecond // 1000:03d} UTC",
            "pid": getattr(record, "session_pid", None) or record.process,
            "error_severity": pg_severity(record),
            "message": record.getMessage(),
            "backend_type": "client backend" if hasattr(record, "session_pid")
            else "postmaster",
            "logger": record.name,
        }
        for key in ("user", "dbname", "application_name", "sqlstate", "detail", "hint",
                    "statement", "duration_ms"):
            value = getattr(record, key, None)
            if value not in (None, ""):
                entry["state_code" if key == "sqlstate" else key] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class CsvFormatter(logging.Formatter):
    """PostgreSQL's csvlog: one CSV row per message, in its 26 columns (log_time, user_name,
    database_name, process_id, connection_from, session_id, session_line_num, command_tag,
    session_start_time, virtual_transaction_id, transaction_id, error_severity,
    sql_state_code, message, detail, hint, internal_query, internal_query_pos, context, query,
    query_pos, location, application_name, backend_type, leader_pid, query_id)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one CSV row (fields with newlines stay quoted in one row)."""
        stamp = dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
        pid = getattr(record, "session_pid", None) or record.process
        row = [f"{stamp:%Y-%m-%d %H:%M:%S}.{stamp.microsecond // 1000:03d} UTC",
               getattr(record, "user", None) or "", getattr(record, "dbname", None) or "",
               pid, "", "", "", "", "", "", "0", pg_severity(record),
               getattr(record, "sqlstate", None) or "00000", record.getMessage(),
               getattr(record, "detail", None) or "", getattr(record, "hint", None) or "",
               "", "", "", getattr(record, "statement", None) or "", "", "",
               getattr(record, "application_name", None) or "",
               "client backend" if hasattr(record, "session_pid") else "postmaster", "", "0"]
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow(row)  # quotes fields holding newlines
        return out.getvalue()[:-1]


class RotatingLog(logging.handlers.RotatingFileHandler):
    """A log file rotated by size (log_rotation_size) and by age (log_rotation_age), whichever
    comes first, as PostgreSQL's collector rotates its files."""

    def __init__(self, filename: str, max_bytes: int, max_seconds: int) -> None:
        super().__init__(filename, maxBytes=max_bytes, backupCount=BACKUP_COUNT,
                         encoding="utf-8")
        self.max_seconds = max_seconds
        self.rollover_at = time.time() + max_seconds if max_seconds > 0 else None

    def shouldRollover(self, record: logging.LogRecord) -> int:  # noqa: N802 - logging's name
        """Whether to rotate before writing `record`: past the size or the age."""
        if self.rollover_at is not None and time.time() >= self.rollover_at:
            return 1
        return super().shouldRollover(record)

    def doRollover(self) -> None:  # noqa: N802 - logging's name
        """Rotate, and start the age over."""
        super().doRollover()
        if self.max_seconds > 0:
            self.rollover_at = time.time() + self.max_seconds


class _MinMessages(logging.Filter):
    """log_min_messages, in PostgreSQL's order of levels."""

    def __init__(self, threshold: str) -> None:
        super().__init__()
        self.threshold = _RANK.get(threshold.lower(), _RANK["warning"])

    def filter(self, record: logging.LogRecord) -> bool:
        return _rank(record) >= self.threshold


class _ConsoleAlongsideFile(logging.Filter):
    """With a log file, stderr keeps warnings, errors and the lines marked for it (start-up,
    shutdown), so whoever started the server still sees it start and stop."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or getattr(record, "console", False)


def configure(settings: LogSettings) -> None:
    """Install the handlers of `settings` on the root logger, replacing ours from before
    (a reload calls it again)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OWN_HANDLER, False):
            root.removeHandler(handler)
            handler.close()
    threshold = _MinMessages(settings.min_messages)
    root.setLevel(logging.DEBUG if settings.min_messages.startswith("debug") else logging.INFO)
    destinations = settings.destination.split(",")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(
        JsonFormatter() if destinations == ["jsonlog"] and not settings.file
        else CsvFormatter() if destinations == ["csvlog"] and not settings.file
        else TextFormatter())
    console.addFilter(threshold)
    handlers: list[logging.Handler] = [console]
    if settings.file:
        os.makedirs(os.path.dirname(os.path.abspath(settings.file)), exist_ok=True)
        files: list[tuple[str, logging.Formatter]] = []
        if destinations != ["csvlog"]:
            files.append((settings.file, JsonFormatter() if settings.json_file
                          else TextFormatter()))
        if settings.csv_file:
            files.append((settings.csv_file, CsvFormatter()))
        for path, formatter in files:
            file = RotatingLog(path, settings.rotation_bytes, settings.rotation_seconds)
            file.setFormatter(formatter)
            file.addFilter(threshold)
            handlers.append(file)
        console.addFilter(_ConsoleAlongsideFile())
    for handler in handlers:
        setattr(handler, _OWN_HANDLER, True)
        root.addHandler(handler)
