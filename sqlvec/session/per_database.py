"""State shared by the sessions of one database of a server (advisory locks, the DDL lock):
created on first use, dropped with the server (`Database`) that owns it."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerDatabase(Generic[T]):
    """One `factory()` value per (server, database name)."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._by_server: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def of(self, database: object, name: str) -> T:
        """The value of database `name` of server `database`."""
        with self._lock:
            per_database = self._by_server.setdefault(database, {})
            value = per_database.get(name)
            if value is None:
                value = per_database[name] = self._factory()
            return value
