"""wire.cli: the `sqlvec serve` options and the safety rules on authentication."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

from sqlvec.database import ServerConfig
from wire.auth import AuthMethod
from wire.cli import build_parser, default_workers, resolve_auth, resolve_limits, resolve_listen


def args(*argv: str):
    return build_parser().parse_args(["serve", *argv])


def test_defaults():
    a = args()
    resolve_listen(a)
    assert (a.data_dir, a.host, a.port, a.auth, a.password, a.config, a.log_file) == (
        "./sqlvec-data", "127.0.0.1", 5433, None, None, None, None)


def test_the_configuration_file_fills_in_what_the_command_line_leaves_out(tmp_path):
    (tmp_path / "sqlvec.conf").write_text("listen_addresses = '*'\nport = 6543\n"
                                          "max_connections = 7\n")
    config = ServerConfig.load(str(tmp_path))
    a = args()
    resolve_listen(a, config)
    assert (a.host, a.port, a.max_connections) == ("0.0.0.0", 6543, 7)
    given = args("--host", "::1", "--port", "5433", "--max-connections", "9")
    resolve_listen(given, config)
    assert (given.host, given.port, given.max_connections) == ("::1", 5433, 9)


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = capsys.readouterr().out
    for option in ("--data-dir", "--host", "--port", "--password", "--auth", "--tls-cert",
                   "--tls-key", "SQLVEC_PASSWORD", "scram-sha-256", "--max-connections",
                   "--superuser-reserved-connections", "--max-startup-connections",
                   "--authentication-timeout", "--auth-failure-delay", "53300"):
        assert option in text


def test_loopback_without_password_is_trust(monkeypatch):
    monkeypatch.delenv("SQLVEC_PASSWORD", raising=False)
    assert resolve_auth(args()).method is AuthMethod.TRUST
    assert resolve_auth(args("--host", "::1")).method is AuthMethod.TRUST


def test_password_switches_to_scram(monkeypatch):
    monkeypatch.setenv("SQLVEC_PASSWORD", "pw")
    assert resolve_auth(args()).method is AuthMethod.SCRAM
    monkeypatch.delenv("SQLVEC_PASSWORD")
    assert resolve_auth(args("--password", "pw", "--auth", "md5")).method is AuthMethod.MD5


def test_beyond_loopback_needs_a_password_or_explicit_trust(monkeypatch):
    monkeypatch.delenv("SQLVEC_PASSWORD", raising=False)
    with pytest.raises(ValueError, match="refusing to listen on 0.0.0.0 without a password"):
        resolve_auth(args("--host", "0.0.0.0"))
    assert resolve_auth(args("--host", "0.0.0.0", "--auth", "trust")).method is AuthMethod.TRUST
    assert resolve_auth(args("--host", "0.0.0.0", "--password", "x")).method is AuthMethod.SCRAM
    with pytest.raises(ValueError, match="needs a password"):
        resolve_auth(args("--auth", "scram-sha-256"))


def test_connection_limits():
    limits = resolve_limits(args())
    assert (limits.max_connections, limits.superuser_reserved_connections, limits.startup_limit,
            limits.authentication_timeout) == (100, 3, 100, 60.0)
    limits = resolve_limits(args("--max-connections", "10", "--max-startup-connections", "4",
                                 "--authentication-timeout", "2.5"))
    assert (limits.max_connections, limits.startup_limit, limits.settings()) == (
        10, 4, {"max_connections": "10", "superuser_reserved_connections": "3",
                "authentication_timeout": "2.5s"})
    for bad in (("--max-connections", "3"), ("--max-connections", "0"),
                ("--authentication-timeout", "0"), ("--max-startup-connections", "0")):
        with pytest.raises(ValueError):
            resolve_limits(args(*bad))


def test_version_names_the_package_and_the_postgresql_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"sqlvec \S+ \(PostgreSQL 16\.\d+ compatible\)\n", out), out


def test_a_port_in_use_is_named_with_a_hint(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "sqlvec", "serve", "--port", str(port), "--data-dir",
             str(tmp_path / "data")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert f"HINT: Is another server already running on port {port}?" in result.stderr
    assert "Traceback" not in result.stderr


def test_workers_default_to_one_per_core(monkeypatch):
    """`--workers` unset and SQLVEC_WORKERS unset (or empty): one worker per core;
    `auto` the same, given either way; a number as given, 0 one process."""
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("SQLVEC_WORKERS", raising=False)
    assert default_workers() == cores
    monkeypatch.setenv("SQLVEC_WORKERS", "")
    assert default_workers() == cores
    monkeypatch.setenv("SQLVEC_WORKERS", "0")
    assert default_workers() == 0
    monkeypatch.setenv("SQLVEC_WORKERS", "auto")
    assert default_workers() == cores
    monkeypatch.setenv("SQLVEC_WORKERS", "many")
    assert default_workers() == -1  # refused by `serve`
    assert args().workers is None
    assert args("--workers", "auto").workers == cores
    assert args("--workers", "0").workers == 0
