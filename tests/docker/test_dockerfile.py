"""docker/: what can be checked without a Docker engine.

The image installs and starts sqlvec with the README's own commands; its CMD, run directly on
this host (with --host 127.0.0.1 and a free port), starts, demands the password, answers
SELECT 1 and passes the image's HEALTHCHECK; without SQLVEC_PASSWORD the CMD's non-loopback
host is refused with a clear message. docker-compose.yml builds that image, requires the
password and mounts the volume the image declares.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "docker-compose.yml"
PASSWORD = "correct horse battery staple"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def only(name: str) -> str:
    found = [args for word, args in instructions() if word == name]
    assert len(found) == 1, f"expected one {name}, found {found}"
    return found[0]


def cmd() -> list[str]:
    value = json.loads(only("CMD"))  # exec form: sqlvec is PID 1 and receives SIGTERM
    assert isinstance(value, list)
    return value


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def with_option(argv: list[str], name: str, value: str) -> list[str]:
    argv = list(argv)
    argv[argv.index(name) + 1] = value
    return argv


def readme_quick_start() -> tuple[list[str], list[str]]:
    """The README's install and start commands: `pip install .` and `sqlvec serve`."""
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    first = re.findall(r"```sh\n(.+?)\n```", quick, re.S)[0]
    install, start = (shlex.split(part) for part in first.split("&&"))
    return install, start


def sqlvec_executable() -> str:
    beside = Path(sys.executable).with_name("sqlvec")
    found = str(beside) if beside.exists() else shutil.which("sqlvec")
    if found is None:
        pytest.skip("the sqlvec command is not installed (pip install -e .)")
    return found


def image_command(argv: list[str], data_dir: Path) -> list[str]:
    """The CMD as this host runs it: the installed `sqlvec`, a temporary data directory."""
    assert argv[0] == "sqlvec"
    return [sqlvec_executable(), *with_option(argv, "--data-dir", str(data_dir))[1:]]


def environment(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SQLVEC_PASSWORD"}
    env.update(values)
    return env


# --- the Dockerfile, read ---------------------------------------------------------------------


def test_base_image_is_a_slim_python_the_project_supports():
    image = only("FROM")
    m = re.fullmatch(r"python:3\.(\d+)-slim(-\w+)?", image)
    assert m, image
    minimum = re.search(r'requires-python = ">=3\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert int(m.group(1)) >= int(minimum.group(1))


def test_install_and_start_are_the_readme_commands():
    install, start = readme_quick_start()
    assert install == ["pip", "install", "."] and start == ["sqlvec", "serve"]
    steps = [shlex.split(step) for word, args in instructions() if word == "RUN"
             for step in args.split("&&")]
    pip_installs = [[t for t in s if not t.startswith("--")] for s in steps if s[:2] == install[:2]]
    assert install in pip_installs, pip_installs
    assert cmd()[:2] == start


def test_the_build_copies_what_pip_install_needs():
    copied = set()
    for word, args in instructions():
        if word == "COPY":
            parts = args.split()
            assert not parts[0].startswith("--from"), args
            copied.update(p.rstrip("/") for p in parts[:-1])
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the build context"
    pyproject = (ROOT / "pyproject.toml").read_text()
    needed = {"pyproject.toml", re.search(r'readme = "([^"]+)"', pyproject).group(1)}
    needed |= {p.rstrip("*") for p in re.findall(r'"(\w+)\*"', pyproject.split(
        "[tool.setuptools.packages.find]", 1)[1].split("\n[", 1)[0])}
    assert needed <= copied, needed - copied


def test_runs_as_a_non_root_user_with_the_data_dir_as_a_volume():
    user = only("USER")
    assert user not in ("root", "0") and not user.startswith("0:")
    run = " ".join(args for word, args in instructions() if word == "RUN")
    assert re.search(rf"useradd\b.*\b{re.escape(user)}\b", run), run
    volume = only("VOLUME").strip("[]\" ")
    assert option(cmd(), "--data-dir") == volume
    assert re.search(rf"chown\b.*{re.escape(user)}\b.*{re.escape(volume)}", run), run
    words = [w for w, _ in instructions()]
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")


def test_listens_beyond_loopback_on_the_exposed_port():
    assert option(cmd(), "--host") == "0.0.0.0"
    assert only("EXPOSE") == option(cmd(), "--port") == "5433"
    assert "--auth" not in cmd() and "--password" not in cmd()  # the password comes from env


def test_healthcheck_connects_with_the_password():
    check = only("HEALTHCHECK")
    assert "CMD " in check
    probe = check.split("CMD ", 1)[1]
    assert "SQLVEC_PASSWORD" in probe and "SELECT 1" in probe and "port=5433" in probe


# --- the image's command, run on this host ----------------------------------------------------


def start(argv: list[str], log_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   cwd=log_path.parent)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        m = re.search(r"listening on \S+:(\d+)", text)
        if m:
            return process, int(m.group(1))
        if process.poll() is not None:
            pytest.fail(f"the image's command exited with {process.returncode}:\n{text}")
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"the image's command did not start:\n{log_path.read_text(errors='replace')}")


def test_the_image_command_serves_on_loopback_with_the_password(tmp_path):
    argv = with_option(with_option(cmd(), "--host", "127.0.0.1"), "--port", "0")
    process, port = start(image_command(argv, tmp_path / "data"), tmp_path / "server.log",
                          environment(SQLVEC_PASSWORD=PASSWORD))
    try:
        dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=10"
        with psycopg.connect(f"{dsn} password='{PASSWORD}'") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"{dsn} password=wrong")

        # The HEALTHCHECK's own command, pointed at this port.
        probe = only("HEALTHCHECK").split("CMD ", 1)[1].replace("port=5433", f"port={port}")
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        healthy = subprocess.run(["sh", "-c", probe], capture_output=True, text=True, timeout=30,
                                 env=environment(SQLVEC_PASSWORD=PASSWORD, PATH=path))
        assert healthy.returncode == 0, healthy.stderr
        unhealthy = subprocess.run(["sh", "-c", probe], capture_output=True, text=True,
                                   timeout=30, env=environment(SQLVEC_PASSWORD="wrong", PATH=path))
        assert unhealthy.returncode != 0
    finally:
        process.send_signal(signal.SIGTERM)  # what `docker stop` sends
        code = process.wait(60)
    log = (tmp_path / "server.log").read_text()
    assert code == 0, log
    assert "auth scram-sha-256" in log and "Traceback" not in log, log


def test_without_a_password_the_image_command_refuses_to_start(tmp_path):
    result = subprocess.run(image_command(cmd(), tmp_path / "data"), capture_output=True,
                            text=True, timeout=60, env=environment(), cwd=tmp_path)
    assert result.returncode != 0
    assert "refusing to listen on 0.0.0.0 without a password" in result.stderr, result.stderr
    assert "SQLVEC_PASSWORD" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # refused before touching the data directory


# --- docker-compose.yml -----------------------------------------------------------------------


def test_compose_builds_the_image_requires_the_password_and_keeps_the_volume():
    text = COMPOSE.read_text()
    volume_dir = only("VOLUME").strip("[]\" ")
    port = only("EXPOSE")
    try:
        import yaml
    except ImportError:  # PyYAML is not a test dependency: check the text instead
        assert re.search(r"^\s+context: \.\.$", text, re.M), text
        assert re.search(r"^\s+dockerfile: docker/Dockerfile$", text, re.M), text
        assert re.search(r"SQLVEC_PASSWORD: \$\{SQLVEC_PASSWORD:\?", text), text
        assert f'"{port}:{port}"' in text and f":{volume_dir}" in text, text
        return
    compose = yaml.safe_load(text)
    (service,) = compose["services"].values()
    context = (COMPOSE.parent / service["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / service["build"]["dockerfile"]).resolve() == DOCKERFILE
    password = service["environment"]["SQLVEC_PASSWORD"]
    assert password.startswith("${SQLVEC_PASSWORD:?"), password  # compose refuses without it
    assert service["ports"] == [f"{port}:{port}"]
    volume, _, target = service["volumes"][0].partition(":")
    assert target == volume_dir and volume in compose["volumes"]


def _ignored(patterns: list[str], path: str) -> bool:
    """Whether .dockerignore's patterns exclude `path` (fnmatch per path, as Docker matches
    them; `**/` matches any depth)."""
    import fnmatch

    def match(pattern: str) -> bool:
        options = {pattern, pattern.replace("**/", "")}
        return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/")
                   for p in options)

    return any(match(p) for p in patterns)


def test_dockerignore_keeps_the_data_directory_out_and_what_the_image_copies_in():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    # The default data directory of `sqlvec serve` run in a checkout, and the repository's
    # history, never go to the daemon as build context.
    for path in ("sqlvec-data", "sqlvec-data/postgres/wal/1.wal", ".git",
                 "sqlvec/__pycache__/x.pyc"):
        assert _ignored(patterns, path), path
    copied = [source for word, args in instructions() if word == "COPY"
              for source in args.split()[:-1]]
    assert "sqlvec" in copied and "wire" in copied
    copied += ["sqlvec/storage/store.py", "wire/cli.py"]
    for path in copied:
        assert not _ignored(patterns, path), path
