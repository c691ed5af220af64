"""Authentication: trust, cleartext password, MD5 and SCRAM-SHA-256.

One server-level password applies to every user name; a wrong password fails the same way for
every name (28P01 `password authentication failed for user "x"`), so a client learns nothing
about which users exist.

SCRAM-SHA-256 (RFC 5802, RFC 7677): the `scramp` library derives the salted keys once at start
(the password itself is not kept for SCRAM), and the server side of the exchange is the few
lines below rather than scramp's ScramServer, because that one rejects the empty user name
(`n=,r=...`) libpq sends (PostgreSQL takes the user from the startup packet instead). Only
plain SCRAM-SHA-256 is advertised, without channel binding: libpq, asyncpg, pgjdbc and
node-postgres all accept it (a client that wants binding then sends the gs2 flag `y`).

An `Authenticator` is sans-IO: `start()` gives the first challenge, `step(message)` consumes a
PasswordMessage and gives the next challenge or None when the client is authenticated.
`max_message_size` bounds what the client may send meanwhile, as PostgreSQL does before it
knows who the client is: 1,024 bytes for a SASL message (PG_MAX_SASL_MESSAGE_LENGTH), 65,535
for a password (PG_MAX_AUTH_TOKEN_LENGTH).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from scramp import ScramMechanism

from sqlvec.errors import InvalidPassword, ProtocolViolation
from wire.codec import Reader
from wire.messages import (
    AUTH_SASL_CONTINUE,
    AUTH_SASL_FINAL,
    Authentication,
    PasswordMessage,
    SASLInitialResponse,
)

SCRAM_ITERATIONS = 4096
SCRAM_MECHANISM = "SCRAM-SHA-256"
MAX_SASL_MESSAGE = 1024  # a message's length field, itself included, as PostgreSQL counts
MAX_PASSWORD_MESSAGE = 65535


class AuthMethod(str, enum.Enum):
    """How clients prove who they are, named as in pg_hba.conf."""

    TRUST = "trust"
    PASSWORD = "password"  # cleartext: only sensible over TLS
    MD5 = "md5"
    SCRAM = "scram-sha-256"


@dataclass(frozen=True)
class AuthConfig:
    """How clients prove who they are; built once per server."""

    method: AuthMethod = AuthMethod.TRUST
    password: str | None = None
    scram_keys: tuple | None = None  # (salt, stored_key, server_key, iterations)

    @classmethod
    def build(cls, method: AuthMethod | str, password: str | None) -> AuthConfig:
        """The server's authentication settings, checked at start: every method but trust needs a
        password."""
        method = AuthMethod(method)
        if method is not AuthMethod.TRUST and not password:
            raise ValueError(f"--auth {method.value} needs a password "
                             "(--password or SQLVEC_PASSWORD)")
        keys = None
        if method is AuthMethod.SCRAM:
            keys = ScramMechanism(SCRAM_MECHANISM).make_auth_info(
                password, iteration_count=SCRAM_ITERATIONS)
        return cls(method, password, keys)

    def authenticator(self, user: str) -> Authenticator:
        """A fresh password exchange for one connection's user."""
        return Authenticator(self, user)


def md5_password(password: str, user: str, salt: bytes) -> str:
    """What a client sends for MD5: 'md5' + md5(md5(password + user) + salt)."""
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


class Authenticator:
    """One connection's password exchange."""

    def __init__(self, config: AuthConfig, user: str) -> None:
        self.config = config
        self.user = user
        self._salt = secrets.token_bytes(4)
        self._scram = None
        self._scram_done = False

    @property
    def max_message_size(self) -> int:
        """The largest message (length field) the client may send during the exchange."""
        return MAX_SASL_MESSAGE if self.config.method is AuthMethod.SCRAM \
            else MAX_PASSWORD_MESSAGE

    def failed(self) -> InvalidPassword:
        """PostgreSQL's error for a failed login (28P01), which says no more than that, whatever
        went wrong."""
        return InvalidPassword(f'password authentication failed for user "{self.user}"')

    def start(self) -> Authentication | None:
        """The first challenge, or None when no password is needed."""
        method = self.config.method
        if method is AuthMethod.TRUST:
            return None
        if method is AuthMethod.PASSWORD:
            return Authentication.cleartext()
        if method is AuthMethod.MD5:
            return Authentication.md5(self._salt)
        return Authentication.sasl([SCRAM_MECHANISM])

    def step(self, message: PasswordMessage) -> Authentication | None:
        """Consume the client's answer: the next challenge, or None once authenticated.
        Raises InvalidPassword (28P01) on a wrong password."""
        method = self.config.method
        if method is AuthMethod.PASSWORD:
            if not hmac.compare_digest(message.password().encode(),
                                       (self.config.password or "").encode()):
                raise self.failed()
            return None
        if method is AuthMethod.MD5:
            expected = md5_password(self.config.password or "", self.user, self._salt)
            if not hmac.compare_digest(message.password().encode(), expected.encode()):
                raise self.failed()
            return None
        if method is AuthMethod.SCRAM:
            return self._scram_step(message)
        raise ProtocolViolation("unexpected password message")

    def _scram_step(self, message: PasswordMessage) -> Authentication | None:
        if self._scram_done:
            return None
        try:
            if self._scram is None:
                initial = SASLInitialResponse.decode(Reader(message.data))
                if initial.mechanism != SCRAM_MECHANISM:
                    raise ProtocolViolation(
                        "client selected an invalid SASL authentication mechanism")
                self._scram = ScramExchange(self.config.scram_keys)
                server_first = self._scram.client_first((initial.response or b"").decode())
                return Authentication(AUTH_SASL_CONTINUE, server_first.encode())
            server_final = self._scram.client_final(message.data.decode())
            self._scram_done = True
            return Authentication(AUTH_SASL_FINAL, server_final.encode())
        except (ValueError, UnicodeDecodeError):
            raise self.failed() from None

    @property
    def done(self) -> bool:
        return self.config.method is not AuthMethod.SCRAM or self._scram_done


class ScramExchange:
    """The server side of one SCRAM-SHA-256 exchange; ValueError on anything wrong."""

    def __init__(self, keys: tuple) -> None:
        self.salt, self.stored_key, self.server_key, self.iterations = keys
        self.nonce = ""
        self.gs2_header = ""
        self.client_first_bare = ""
        self.server_first = ""

    def client_first(self, message: str) -> str:
        """client-first-message -> server-first-message."""
        flag, sep, rest = message.partition(",")
        authzid, sep2, bare = rest.partition(",")
        if not (sep and sep2) or flag not in ("n", "y"):
            raise ValueError("unsupported gs2 header (channel binding is not offered)")
        self.gs2_header = f"{flag},{authzid},"
        attributes = _attributes(bare)
        client_nonce = attributes.get("r", "")
        if not client_nonce or any(not 0x21 <= ord(c) <= 0x7E or c == "," for c in client_nonce):
            raise ValueError("invalid client nonce")
        self.client_first_bare = bare
        self.nonce = client_nonce + base64.b64encode(secrets.token_bytes(18)).decode()
        salt = base64.b64encode(self.salt).decode()
        self.server_first = f"r={self.nonce},s={salt},i={self.iterations}"
        return self.server_first

    def client_final(self, message: str) -> str:
        """client-final-message -> server-final-message, once the proof checks out."""
        without_proof, sep, proof_text = message.rpartition(",p=")
        if not sep:
            raise ValueError("client-final-message without proof")
        attributes = _attributes(without_proof)
        if attributes.get("c") != base64.b64encode(self.gs2_header.encode()).decode():
            raise ValueError("channel binding data does not match")
        if attributes.get("r") != self.nonce:
            raise ValueError("nonce mismatch")
        proof = base64.b64decode(proof_text, validate=True)
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        signature = hmac.new(self.stored_key, auth_message, hashlib.sha256).digest()
        if len(proof) != len(signature):
            raise ValueError("invalid proof")
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), self.stored_key):
            raise ValueError("wrong password")
        verifier = hmac.new(self.server_key, auth_message, hashlib.sha256).digest()
        return "v=" + base64.b64encode(verifier).decode()


def _attributes(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=":
            raise ValueError("malformed SCRAM attribute")
        out.setdefault(part[0], part[2:])
    return out
