"""What the server log says about statements, as PostgreSQL's `log_min_error_statement` and
`log_min_duration_statement` decide.

A statement that fails is logged as its error (`ERROR:  relation "x" does not exist`), with
the statement's text (`STATEMENT:  select * from x`) when the error's severity reaches
`log_min_error_statement`; a statement that ran at least `log_min_duration_statement`
milliseconds is logged with its duration (`duration: 12.345 ms  statement: ...`). Both read the
session's settings (superuser settings, so they come from the configuration files unless a
superuser sets them). Records carry the session's fields (`extra`) for the log's formats
(wire/logs.py: text lines or JSON lines).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlvec.errors import SqlVecError

if TYPE_CHECKING:
    from sqlvec.session.core import Session

log = logging.getLogger("sqlvec.statement")
# Embedded use configures no log: failed statements are then not printed (the caller has the
# error); a server's handlers (wire/logs.py) still receive every record.
log.addHandler(logging.NullHandler())

# PostgreSQL's order of message levels for the server log (LOG ranks above ERROR there).
LEVELS = ("debug5", "debug4", "debug3", "debug2", "debug1", "info", "notice", "warning",
          "error", "log", "fatal", "panic")
RANK = {name: i for i, name in enumerate(LEVELS)}


def reaches(severity: str, threshold: str | None, default: str) -> bool:
    """Whether a message of `severity` is at or above a log_min_* setting's level."""
    return RANK.get(severity.lower(), 0) >= RANK.get((threshold or default).lower(),
                                                     RANK[default])


def session_fields(session: Session) -> dict[str, object]:
    """The fields every statement record carries: who, where, which backend."""
    return {"user": session.user, "dbname": session.database_name,
            "session_pid": session.pid,
            "application_name": session.settings.get("application_name", "")}


def log_error(session: Session, error: SqlVecError, statement: str) -> None:
    """A failed statement's error, and its text when log_min_error_statement asks for it."""
    settings = session.settings
    severity = error.severity.lower()
    if not reaches(severity, settings.get("log_min_messages"), "warning"):
        return
    message = error.message
    if error.position:
        message += f" at character {error.position}"
    with_statement = reaches(severity, settings.get("log_min_error_statement"), "error")
    log.error("%s", message, extra={
        **session_fields(session), "pg_severity": error.severity, "sqlstate": error.sqlstate,
        "detail": error.detail, "hint": error.hint,
        "statement": statement if with_statement else None})


def log_duration(session: Session, statement: str, milliseconds: float) -> None:
    """A statement that took at least log_min_duration_statement."""
    log.info("duration: %.3f ms  statement: %s", milliseconds, statement,
             extra={**session_fields(session), "pg_severity": "LOG", "sqlstate": "00000",
                    "duration_ms": round(milliseconds, 3)})
