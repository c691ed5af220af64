"""PostgreSQL's advisory locks (pg_advisory_lock and its family): application-defined exclusive
locks on a 64-bit key, or a pair of 32-bit keys (a separate key space), shared by every session
of one database.

A session may hold a key several times: a session-level hold lasts until `pg_advisory_unlock`
(once per hold), `pg_advisory_unlock_all` or the session's end; a transaction-level hold until
the transaction ends (COMMIT, ROLLBACK, or the statement of an implicit transaction). Another
session asking for a held key waits (checking for cancel and statement_timeout as it does) or,
with the try forms, gets false.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from sqlvec.session.per_database import PerDatabase

# How often a waiting session looks for a cancel or its statement_timeout.
_POLL_SECONDS = 0.05


@dataclass
class _Hold:
    """One key's holder and how many times it holds it at each level."""

    owner: int
    session: int = 0
    xact: int = 0


@dataclass
class AdvisoryLocks:
    """The advisory lock table of one database."""

    _holds: dict[Hashable, _Hold] = field(default_factory=dict)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def acquire(self, owner: int, key: Hashable, *, xact: bool, wait: bool,
                check_interrupts: Callable[[], None]) -> bool:
        """Hold `key` for `owner` (a session's pid); False if another holds it and not `wait`.
        While waiting `check_interrupts` runs often: its exception ends the wait."""
        with self._changed:
            while True:
                hold = self._holds.get(key)
                if hold is None or hold.owner == owner:
                    hold = self._holds.setdefault(key, _Hold(owner))
                    if xact:
                        hold.xact += 1
                    else:
                        hold.session += 1
                    return True
                if not wait:
                    return False
                check_interrupts()
                self._changed.wait(_POLL_SECONDS)

    def release(self, owner: int, key: Hashable) -> bool:
        """Drop one session-level hold of `key`; False when `owner` has none."""
        with self._changed:
            hold = self._holds.get(key)
            if hold is None or hold.owner != owner or hold.session == 0:
                return False
            hold.session -= 1
            self._forget_if_free(key, hold)
            return True

    def release_all(self, owner: int, *, session: bool, xact: bool) -> None:
        """Drop every hold of `owner` at the levels asked (transaction end, unlock_all, exit)."""
        with self._changed:
            for key, hold in list(self._holds.items()):
                if hold.owner != owner:
                    continue
                if session:
                    hold.session = 0
                if xact:
                    hold.xact = 0
                self._forget_if_free(key, hold)

    def holds(self, owner: int) -> bool:
        """Whether `owner` holds anything (cheap: checked after every implicit transaction)."""
        return any(h.owner == owner for h in self._holds.values())

    def _forget_if_free(self, key: Hashable, hold: _Hold) -> None:
        if hold.session == 0 and hold.xact == 0:
            del self._holds[key]
            self._changed.notify_all()


_TABLES: PerDatabase[AdvisoryLocks] = PerDatabase(AdvisoryLocks)


def locks_of(database: object, name: str) -> AdvisoryLocks:
    """The advisory lock table of database `name` of a server (`Database`)."""
    return _TABLES.of(database, name)
