"""A real `sqlvec serve` for the examples' and docs' tests, started as tests/e2e starts one
(tests/e2e overrides `server` with its own)."""

from __future__ import annotations

import compileall
import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
# What the servers, command lines and examples the tests start import from this checkout.
SOURCES = ("sqlvec", "wire", "examples")


def compile_sources() -> None:
    """Compile the checkout's sources once, before this process or any it starts imports
    them: with PYTHONDONTWRITEBYTECODE set (as on CI machines) no process writes bytecode, so
    every server and command line a test starts would compile all of sqlvec and wire again
    (about a second each). Processes read the compiled files whatever that setting."""
    for name in SOURCES:
        compileall.compile_dir(ROOT / name, quiet=1)


def _e2e():
    """tests/e2e/conftest.py as a module: its start_server() runs `sqlvec serve --port 0`."""
    name = "_sqlvec_e2e_servers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "e2e" / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


compile_sources()
# Property tests check behaviour, not speed: a shared machine's other load must not fail one
# example for taking longer than hypothesis's default 200 ms.
settings.register_profile("sqlvec", deadline=None)
settings.load_profile("sqlvec")
start_server = _e2e().start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One trust-auth server on an ephemeral port with its own data directory."""
    running = start_server(tmp_path_factory.mktemp("server"))
    yield running
    code = running.stop()
    assert code == 0, running.log()
    assert "Traceback" not in running.log(), running.log()


@pytest.fixture(scope="module")
def database_url(server) -> str:
    return f"postgresql://postgres@{server.host}:{server.port}/postgres"
