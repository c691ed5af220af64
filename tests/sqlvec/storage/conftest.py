"""Fixtures shared by the storage tests."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture
def copy(pristine, tmp_path) -> str:
    """A private copy of the module's `pristine` data directory, for a test to damage."""
    path = str(tmp_path / "data")
    shutil.copytree(pristine, path)
    return path
