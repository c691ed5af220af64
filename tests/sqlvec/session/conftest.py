"""Fixtures shared by the session tests: a fresh database per test."""

from __future__ import annotations

import pytest

from sqlvec.database import Database


@pytest.fixture
def db(tmp_path):
    """An empty data directory opened as a Database, closed after the test."""
    database = Database.open(str(tmp_path / "db"))
    yield database
    database.close()
