"""The development token issuer: an ES256 key pair on this machine, for tests and demos only.

The private key lives in ``~/.cache/carebridge/dev-auth/signing-key.pem`` (mode 0600; override
with ``CAREBRIDGE_DEV_SIGNING_KEY_FILE``) and is made on first use. The dev stack hands its public
key to the services it starts (``CAREBRIDGE_AUTH_PUBLIC_KEYS``, with ``CAREBRIDGE_DEV_AUTH=true``:
without it a service refuses the dev issuer and this key), the test plugin does the same for
in-process apps, and clients sign tokens with it. Production services never see this key: they
are given the identity provider's public key instead (ADR 0012, ADR 0014).
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from carebridge_shared.auth import (
    DEV_ISSUER,
    DEV_SIGNING_KEY_FILE_ENV,
    ROLES,
    Role,
    dev_signing_key_file,
    key_id,
)

DEV_AUDIENCE = "carebridge"
ALGORITHM = "ES256"
KEY_FILE_ENV = DEV_SIGNING_KEY_FILE_ENV
# Services refuse the dev issuer and this key unless this is set (ADR 0014); the dev stack and
# the pytest plugin set it for the services they run.
DEV_AUTH_ENV = {"CAREBRIDGE_DEV_AUTH": "true"}


def default_key_file() -> Path:
    """Where this machine's dev signing key lives (the services look there to refuse it)."""
    return dev_signing_key_file()


def _load_or_create(path: Path) -> ec.EllipticCurvePrivateKey:
    """The key in `path`; made first when missing. Concurrent first uses agree on one key:
    each writes its own temporary file and links it into place only if none is there yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".signing-key-")
        try:
            os.write(fd, pem)
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        try:
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} does not hold an EC private key; delete it to make a new one")
    return key


@dataclass(frozen=True)
class DevSigner:
    """Signs dev tokens; `public_pem` is what services verify them with."""

    private_key: ec.EllipticCurvePrivateKey
    issuer: str = DEV_ISSUER
    audience: str = DEV_AUDIENCE

    @classmethod
    def load(cls, path: Path | None = None) -> DevSigner:
        return cls(_load_or_create(path or default_key_file()))

    @property
    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    @property
    def key_id(self) -> str:
        return key_id(self.private_key.public_key())

    def token(
        self,
        role: Role,
        sub: str,
        /,
        *,
        ttl_seconds: float = 900.0,
        now: float | None = None,
        **claims: Any,
    ) -> str:
        """A signed token for (`role`, `sub`); `claims` override or add claims (tests use it to
        make expired, future or foreign tokens)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        issued = int(time.time() if now is None else now)
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "role": role,
            "iat": issued,
            "exp": issued + int(ttl_seconds),
            "jti": uuid.uuid4().hex,
            **claims,
        }
        return jwt.encode(
            payload, self.private_key, algorithm=ALGORITHM, headers={"kid": self.key_id}
        )


@functools.cache
def dev_signer() -> DevSigner:
    """This machine's dev signer (one per process)."""
    return DevSigner.load()


class TokenCache:
    """Reuses a dev token per (role, sub) until it is close to expiry."""

    def __init__(self, signer: DevSigner | None = None, ttl_seconds: float = 900.0) -> None:
        self.signer = signer or dev_signer()
        self.ttl = ttl_seconds
        self._tokens: dict[tuple[Role, str], tuple[str, float]] = {}

    def token(self, role: Role, sub: str) -> str:
        now = time.time()
        cached = self._tokens.get((role, sub))
        if cached is not None and cached[1] - now > self.ttl / 4:
            return cached[0]
        token = self.signer.token(role, sub, ttl_seconds=self.ttl, now=now)
        self._tokens[(role, sub)] = (token, now + self.ttl)
        return token
