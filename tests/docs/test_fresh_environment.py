"""The README on a fresh machine: a new virtual environment that holds only what the README's
commands install runs the test command's collection and an example.

A copy of the sources (what git tracks) goes into a new virtual environment made with pip and
nothing else; the README's test command installs the test extra there, exactly as written, from
the package index. Then, in that environment: the test suite collects without an error (a test
module that imports a package the extras do not install fails here), `sqlvec serve` starts, and
an example connects to it and runs. Packages come from the index (or pip's cache), so this
catches a dependency that only this machine happens to have. Without access to a package
index the test skips, saying so.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
OFFLINE = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
           "ProxyError", "No matching distribution found", "Could not find a version")


def readme_test_command() -> tuple[list[str], list[str]]:
    """The Quick start's second block: `<install> && <run tests>`, each as argv."""
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```sh\n(.+?)\n```", quick, re.S)[1]
    install, run = (shlex.split(part) for part in block.split("&&"))
    return install, run


def copy_sources(target: Path) -> None:
    """What a fresh clone holds: git's tracked files, or the top-level folders without git."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode == 0 and listed.stdout:
        for name in listed.stdout.decode().split("\0"):
            if name and (ROOT / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, target / name)
        return
    for name in ("pyproject.toml", "README.md", "sqlvec", "wire", "tests", "examples",
                 "benchmarks", "docs", "docker", ".ci"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, target / name)


def clean_env(venv: Path) -> dict[str, str]:
    """The environment of a shell with the new venv activated and nothing of this one's."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "DATABASE_URL")
           and not k.startswith("PG")}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(sources, venv, env) after the README's install command ran in a new venv."""
    work = tmp_path_factory.mktemp("fresh")
    source = work / "sqlvec"
    source.mkdir()
    copy_sources(source)
    venv = work / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True,
                          text=True)
    if made.returncode:
        pytest.skip(f"cannot create a virtual environment: {made.stderr.strip()[-300:]}")
    env = clean_env(venv)
    install, _ = readme_test_command()
    assert install[:2] == ["python", "-m"], install  # run with the venv's python, as the README
    started = time.monotonic()
    done = subprocess.run([str(venv / "bin" / "python"), *install[1:]], cwd=source, env=env,
                          capture_output=True, text=True, timeout=1200)
    output = done.stdout + done.stderr
    if done.returncode and any(word in output for word in OFFLINE):
        pytest.skip(f"no package index reachable for a fresh install: {output.strip()[-300:]}")
    assert done.returncode == 0, output[-3000:]
    print(f"README install in a fresh venv: {time.monotonic() - started:.0f} s")
    return source, venv, env


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
