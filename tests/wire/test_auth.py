"""wire.auth: each method's exchange, driven by independent client implementations."""

from __future__ import annotations

import pytest
from scramp import ScramClient

from sqlvec.errors import InvalidPassword
from wire.auth import AuthConfig, AuthMethod, md5_password
from wire.codec import Reader
from wire.messages import (
    AUTH_CLEARTEXT_PASSWORD,
    AUTH_MD5_PASSWORD,
    AUTH_SASL,
    AUTH_SASL_CONTINUE,
    AUTH_SASL_FINAL,
    PasswordMessage,
    SASLInitialResponse,
)

PASSWORD = "correct horse"


def password_message(text: str) -> PasswordMessage:
    return PasswordMessage(text.encode() + b"\0")


def test_trust_needs_no_exchange():
    assert AuthConfig.build("trust", None).authenticator("anyone").start() is None


def test_cleartext():
    config = AuthConfig.build(AuthMethod.PASSWORD, PASSWORD)
    auth = config.authenticator("alice")
    assert auth.start().code == AUTH_CLEARTEXT_PASSWORD
    assert auth.step(password_message(PASSWORD)) is None
    with pytest.raises(InvalidPassword, match='password authentication failed for user "bob"'):
        config.authenticator("bob").step(password_message("nope"))


def test_md5():
    config = AuthConfig.build("md5", PASSWORD)
    auth = config.authenticator("alice")
    challenge = auth.start()
    assert challenge.code == AUTH_MD5_PASSWORD and len(challenge.data) == 4
    assert auth.step(password_message(md5_password(PASSWORD, "alice", challenge.data))) is None
    other = config.authenticator("alice")
    salt = other.start().data
    with pytest.raises(InvalidPassword):
        other.step(password_message(md5_password(PASSWORD, "mallory", salt)))


def scram_login(config: AuthConfig, password: str, username: str = "") -> bytes:
    """A SCRAM exchange with scramp's client (libpq, like it, sends an empty user name when
    asked for one it already gave in the startup packet; scramp needs some name)."""
    auth = config.authenticator("alice")
    challenge = auth.start()
    assert challenge.code == AUTH_SASL
    assert challenge.data == b"SCRAM-SHA-256\0\0"
    client = ScramClient(["SCRAM-SHA-256"], username or "alice", password)
    first = client.get_client_first()
    if not username:  # what libpq sends
        first = first.replace("n=alice,", "n=,", 1)
    initial = SASLInitialResponse("SCRAM-SHA-256", first.encode())
    cont = auth.step(PasswordMessage(initial.encode()[5:]))
    assert cont.code == AUTH_SASL_CONTINUE
    client.set_server_first(cont.data.decode())
    final = auth.step(PasswordMessage(client.get_client_final().encode()))
    assert final.code == AUTH_SASL_FINAL
    client.set_server_final(final.data.decode())  # raises unless the server knew the password
    assert auth.done
    return final.data


def test_scram_with_named_user():
    config = AuthConfig.build("scram-sha-256", PASSWORD)
    assert scram_login(config, PASSWORD, "alice").startswith(b"v=")


def test_scram_libpq_style_empty_user_name():
    config = AuthConfig.build("scram-sha-256", PASSWORD)
    auth = config.authenticator("alice")
    auth.start()
    initial = SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=fyko+d2lbbFgONRv9qkxdawL")
    cont = auth.step(PasswordMessage(initial.encode()[5:]))
    text = cont.data.decode()
    assert text.startswith("r=fyko+d2lbbFgONRv9qkxdawL") and ",s=" in text and ",i=4096" in text


def test_scram_wrong_password_and_tampering():
    config = AuthConfig.build("scram-sha-256", PASSWORD)
    with pytest.raises(InvalidPassword, match='user "alice"'):
        scram_login(config, "wrong", "alice")
    auth = config.authenticator("alice")
    auth.start()
    with pytest.raises(InvalidPassword):  # channel binding is not offered
        auth.step(PasswordMessage(SASLInitialResponse(
            "SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=abc").encode()[5:]))


def test_scram_does_not_keep_the_password():
    config = AuthConfig.build("scram-sha-256", PASSWORD)
    salt, stored, server, iterations = config.scram_keys
    assert PASSWORD.encode() not in salt + stored + server and iterations == 4096


def test_methods_other_than_trust_need_a_password():
    with pytest.raises(ValueError, match="needs a password"):
        AuthConfig.build("md5", None)


def test_sasl_initial_response_layout():
    message = SASLInitialResponse("SCRAM-SHA-256", b"abc").encode()
    assert SASLInitialResponse.decode(Reader(message[5:])).response == b"abc"


def test_messages_before_authentication_are_small():
    """What PostgreSQL accepts before it knows the client: SASL messages of 1,024 bytes,
    passwords of 65,535."""
    assert AuthConfig.build("scram-sha-256", PASSWORD).authenticator("a").max_message_size == 1024
    for method in ("password", "md5"):
        assert AuthConfig.build(method, PASSWORD).authenticator("a").max_message_size == 65535
