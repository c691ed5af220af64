"""The fresh-environment tests run last, their install started in the background as soon as
the suite is collected (tests/docs/fresh_install.py)."""

from __future__ import annotations

import pytest

from tests.docs.fresh_install import KEY, FreshInstall

FRESH = "test_fresh_environment.py"


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    fresh = [item for item in items if item.path.name == FRESH]
    if fresh and not config.option.collectonly:
        items[:] = [item for item in items if item.path.name != FRESH] + fresh
        config.stash[KEY] = FreshInstall().start()


def pytest_unconfigure(config: pytest.Config) -> None:
    if KEY in config.stash:
        config.stash[KEY].stop()


@pytest.fixture(scope="module")
def fresh(request: pytest.FixtureRequest):
    """(sources, venv, env) after the README's install command ran in a new venv."""
    install = request.config.stash.get(KEY, None)
    if install is None:
        install = request.config.stash[KEY] = FreshInstall().start()
    return install.result()
