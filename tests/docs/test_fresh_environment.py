"""The README on a fresh machine: a new virtual environment that holds only what the README's
commands install runs the test command's collection and an example.

A copy of the sources (what git tracks) goes into a new virtual environment made with pip and
nothing else; the README's test command installs the test extra there, exactly as written, from
the package index. Then, in that environment: the test suite collects without an error (a test
module that imports a package the extras do not install fails here), `sqlvec serve` starts, and
an example connects to it and runs. Packages come from the index (or pip's cache), so this
catches a dependency that only this machine happens to have. Without access to a package
index the test skips, saying so. The install runs in the background while the rest of the
suite runs, and these tests last (conftest.py).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time

from tests.docs.fresh_install import readme_test_command


def test_the_readme_install_gives_every_package_the_tests_import(fresh):
    source, venv, env = fresh
    _, run = readme_test_command()
    assert run[:3] == ["python", "-m", "pytest"], run
    collected = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "--collect-only",
                                "-q", "-p", "no:cacheprovider"], cwd=source, env=env,
                               capture_output=True, text=True, timeout=600)
    output = collected.stdout + collected.stderr
    assert collected.returncode == 0, output[-3000:]
    assert re.search(r"^\d+ tests collected", output, re.M), output[-2000:]
    assert "error" not in output.lower().split("tests collected")[-1], output[-2000:]


def test_an_example_runs_against_the_installed_server(fresh, tmp_path):
    source, venv, env = fresh
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen([str(venv / "bin" / "sqlvec"), "serve", "--port", "0",
                                   "--data-dir", str(tmp_path / "data")], cwd=tmp_path, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        port = None
        while port is None and time.monotonic() < deadline and server.poll() is None:
            m = re.search(r"listening on \S+:(\d+)", log_path.read_text(errors="replace"))
            port = int(m.group(1)) if m else None
            time.sleep(0.05)
        assert port is not None, log_path.read_text()
        ran = subprocess.run([str(venv / "bin" / "python"), "examples/sqlalchemy_orm.py"],
                             cwd=source, capture_output=True, text=True, timeout=120,
                             env={**env, "DATABASE_URL":
                                  f"postgresql://postgres@127.0.0.1:{port}/postgres"})
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "Traceback" not in ran.stdout + ran.stderr
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(60) == 0, log_path.read_text()
