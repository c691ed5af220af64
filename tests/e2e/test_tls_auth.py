"""TLS and authentication: SCRAM-SHA-256, MD5 and cleartext passwords, trust, refusals."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]

PASSWORD = "s3cret-pw"


def make_certificate(directory) -> tuple[str, str]:
    """A self-signed certificate for localhost (openssl CLI, else the cryptography package)."""
    cert, key = directory / "server.crt", directory / "server.key"
    if shutil.which("openssl"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        return str(cert), str(key)
    try:
        import datetime as dt

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
    except ImportError:
        pytest.skip("neither the openssl command nor the cryptography package is available")
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + dt.timedelta(days=2))
                   .sign(private, hashes.SHA256()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption()))
    return str(cert), str(key)


def test_tls_with_scram(start, tmp_path):
    cert, key = make_certificate(tmp_path)
    server = start("--tls-cert", cert, "--tls-key", key, env={"SQLVEC_PASSWORD": PASSWORD})
    assert "auth scram-sha-256, TLS on" in server.log()
    with psycopg.connect(server.conninfo(sslmode="require", password=PASSWORD)) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 'over tls'").fetchone() == ("over tls",)
    with psycopg.connect(server.conninfo(sslmode="disable", password=PASSWORD)) as conn:
        assert not conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for '
                                                       'user "postgres"'):
        psycopg.connect(server.conninfo(sslmode="require", password="wrong"))


def test_tls_refused_without_certificate(server):
    with pytest.raises(psycopg.OperationalError, match="does not support SSL"):
        psycopg.connect(server.conninfo(sslmode="require"))
    with psycopg.connect(server.conninfo(sslmode="prefer")) as conn:
        assert not conn.pgconn.ssl_in_use


def test_scram_password(start):
    server = start("--password", PASSWORD)
    with psycopg.connect(server.conninfo(password=PASSWORD, user="anyone")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("anyone",)
    for user in ("postgres", "nobody"):  # same answer whether or not the user "exists"
        with pytest.raises(psycopg.OperationalError) as info:
            psycopg.connect(server.conninfo(password="nope", user=user))
        assert f'password authentication failed for user "{user}"' in str(info.value)

    async def with_asyncpg(password):
        conn = await asyncpg.connect(host=server.host, port=server.port, user="postgres",
                                     password=password, database="postgres", ssl=False)
        try:
            return await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    assert asyncio.run(with_asyncpg(PASSWORD)) == 1
    with pytest.raises(asyncpg.InvalidPasswordError) as info:  # 28P01
        asyncio.run(with_asyncpg("nope"))
    assert info.value.sqlstate == "28P01"


@pytest.mark.parametrize("method", ["md5", "password"])
def test_md5_and_cleartext(start, method):
    server = start("--auth", method, "--password", PASSWORD)
    with psycopg.connect(server.conninfo(password=PASSWORD)) as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(server.conninfo(password="wrong"))


def test_missing_password_is_refused(start):
    server = start("--password", PASSWORD)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.conninfo(password=""))


def test_non_loopback_without_password_is_refused(tmp_path):
    out = subprocess.run([sys.executable, "-m", "wire", "serve", "--host", "0.0.0.0",
                          "--port", "0", "--data-dir", str(tmp_path / "d")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "SQLVEC_PASSWORD"})
    assert out.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a password" in out.stderr
    assert not (tmp_path / "d").exists()
