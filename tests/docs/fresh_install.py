"""The README's install command run in a new virtual environment, in the background.

The install takes minutes (it fetches or unpacks every package the test extra brings) and
needs little of the machine's CPU meanwhile, so `conftest.py` starts it when the suite's
collection is done and runs the tests that use it last: the rest of the suite runs meanwhile.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
OFFLINE = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
           "ProxyError", "No matching distribution found", "Could not find a version")
KEY = pytest.StashKey["FreshInstall"]()


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
    env["PIP_NO_COMPILE"] = "1"  # no bytecode for every package: the checks import few
    return env


class FreshInstall:
    """A copy of the sources and a new venv where the README's install command ran, made on a
    thread of its own; `result` waits for it."""

    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="sqlvec-fresh-"))
        self._process: subprocess.Popen | None = None
        self._outcome: tuple[str, str] = ("fail", "not run")
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="fresh-install", daemon=True)

    def start(self) -> FreshInstall:
        self._thread.start()
        return self

    def result(self) -> tuple[Path, Path, dict[str, str]]:
        """(sources, venv, env) once the install succeeded; skips without a package index."""
        self._thread.join()
        kind, message = self._outcome
        if kind == "skip":
            pytest.skip(message)
        assert kind == "ok", message
        print(message)
        venv = self.work / "venv"
        return self.work / "sqlvec", venv, clean_env(venv)

    def stop(self) -> None:
        """End the install if it still runs, and remove its files."""
        self._stopped = True
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        self._thread.join(timeout=30)
        shutil.rmtree(self.work, ignore_errors=True)

    def _run(self) -> None:
        try:
            self._outcome = self._install()
        except Exception as exc:  # reported by `result`, in the test's thread
            self._outcome = ("fail", f"{type(exc).__name__}: {exc}")

    def _install(self) -> tuple[str, str]:
        source = self.work / "sqlvec"
        source.mkdir()
        copy_sources(source)
        venv = self.work / "venv"
        made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True,
                              text=True)
        if made.returncode:
            return "skip", f"cannot create a virtual environment: {made.stderr.strip()[-300:]}"
        install, _ = readme_test_command()
        if install[:2] != ["python", "-m"]:  # run with the venv's python, as the README
            return "fail", f"the README's install command is not `python -m ...`: {install}"
        started = time.monotonic()
        self._process = subprocess.Popen(
            [str(venv / "bin" / "python"), *install[1:]], cwd=source, env=clean_env(venv),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output, _ = self._process.communicate(timeout=1200)
        if self._stopped:
            return "fail", "stopped"
        if self._process.returncode and any(word in output for word in OFFLINE):
            return "skip", f"no package index reachable for a fresh install: {output.strip()[-300:]}"
        if self._process.returncode:
            return "fail", output[-3000:]
        return "ok", f"README install in a fresh venv: {time.monotonic() - started:.0f} s"
