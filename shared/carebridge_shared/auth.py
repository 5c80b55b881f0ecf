"""Bearer-token authentication and the role checks every service API shares (ADR 0012).

A token is a JWT signed by the identity provider with an asymmetric key (ES256 or RS256). A
service holds only public keys (`CAREBRIDGE_AUTH_PUBLIC_KEYS`) and checks the signature, issuer,
audience, expiry and issue time, then reads `sub` (a patient or clinician id) and `role`.

`create_app` puts `authenticate` on every router, so no API route answers without a valid token;
only /healthz, /readyz and /metrics stay open. A route names the roles it serves with `allow`;
which records a caller may touch is decided by each service from its own data
(`require_patient_access` with the service's own notion of "treats"). See docs/security.md.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from carebridge_shared.logging import get_logger
from carebridge_shared.refusals import Refused, refuse
from carebridge_shared.settings import ServiceSettings

log = get_logger(__name__)

Role = Literal["patient", "clinician", "coordinator", "ops"]
ROLES: tuple[Role, ...] = get_args(Role)
REALM = "carebridge"

# Asymmetric algorithms only: a service never holds a key that can sign tokens, and no HMAC
# algorithm means a public key can never be misused as a shared secret.
SUPPORTED_ALGORITHMS = frozenset({"ES256", "ES384", "RS256", "RS384", "RS512", "PS256"})
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384"}
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256"})
_PEM_PUBLIC_KEY = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)
SUBJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")  # an OpaqueId, as in contracts
REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "sub", "role")
# The development token issuer (carebridge_devstack.signer signs with it): a service accepts it,
# and this machine's dev signing key, only with CAREBRIDGE_DEV_AUTH=true (ADR 0014).
DEV_ISSUER = "carebridge-dev"
DEV_SIGNING_KEY_FILE_ENV = "CAREBRIDGE_DEV_SIGNING_KEY_FILE"
DEV_AUTH_ENV = "CAREBRIDGE_DEV_AUTH"


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller: `sub` is a patient id for patients, a clinician id for clinicians."""

    sub: str
    role: Role


class AuthNotConfigured(RuntimeError):
    """The service has no usable verification key: it refuses to start without one."""


class DevAuthRefused(AuthNotConfigured):
    """The service is configured with the dev issuer or the dev signing key, and no dev flag."""


def dev_signing_key_file() -> Path:
    """Where the dev signer keeps this machine's private key (made by carebridge_devstack)."""
    override = os.environ.get(DEV_SIGNING_KEY_FILE_ENV)
    if override:
        return Path(override).expanduser()
    cache = os.environ.get("CAREBRIDGE_CACHE_DIR")
    if not cache:
        xdg = os.environ.get("XDG_CACHE_HOME")
        cache = str((Path(xdg) if xdg else Path.home() / ".cache") / "carebridge")
    return Path(cache) / "dev-auth" / "signing-key.pem"


def dev_key_id(path: Path | None = None) -> str | None:
    """The key id of this machine's dev signing key, or None when there is no (usable) one."""
    try:
        private = load_pem_private_key((path or dev_signing_key_file()).read_bytes(), None)
    except (OSError, ValueError, TypeError):
        return None
    public = private.public_key()
    if not isinstance(public, EllipticCurvePublicKey | RSAPublicKey):
        return None
    return key_id(public)


def refuse_dev_auth(settings: ServiceSettings, keys: Sequence[VerificationKey]) -> None:
    """Raise DevAuthRefused when the service would trust the dev issuer or this machine's dev
    signing key and the dev flag is not set; log a warning when it is."""
    dev_key = dev_key_id()
    found = []
    if settings.auth_issuer == DEV_ISSUER:
        found.append(f"the token issuer is the dev issuer {DEV_ISSUER!r}")
    if dev_key is not None and any(k.key_id == dev_key for k in keys):
        found.append("CAREBRIDGE_AUTH_PUBLIC_KEYS holds this machine's dev signing key")
    if not found:
        return
    if settings.dev_auth:
        log.warning("dev_auth_enabled", reasons=found)
        return
    raise DevAuthRefused(
        f"refusing to start with development authentication: {'; '.join(found)}. Set "
        "CAREBRIDGE_AUTH_ISSUER to your identity provider's issuer and CAREBRIDGE_AUTH_PUBLIC_KEYS "
        f"to its public key(s); on a dev machine or in tests only, set {DEV_AUTH_ENV}=true."
    )


class TokenRejected(Exception):
    """A token that does not verify; `reason` is safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class VerificationKey:
    key_id: str
    key: EllipticCurvePublicKey | RSAPublicKey
    algorithms: tuple[str, ...]


def key_id(key: EllipticCurvePublicKey | RSAPublicKey) -> str:
    """A stable id for a public key (`kid`): the start of its SubjectPublicKeyInfo digest."""
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode()[:16]


def load_public_keys(pem_text: str, allowed: Collection[str]) -> list[VerificationKey]:
    """Every public key in `pem_text` (one or more PEM blocks: rotation keeps old and new), each
    with the allowed algorithms that suit its type."""
    unsupported = sorted(set(allowed) - SUPPORTED_ALGORITHMS)
    if unsupported:
        raise AuthNotConfigured(
            f"CAREBRIDGE_AUTH_ALGORITHMS: {unsupported} not supported; use some of "
            f"{sorted(SUPPORTED_ALGORITHMS)} (asymmetric only)"
        )
    keys: list[VerificationKey] = []
    for number, block in enumerate(_PEM_PUBLIC_KEY.findall(pem_text), start=1):
        try:
            key = load_pem_public_key(block.encode())
        except ValueError as exc:
            raise AuthNotConfigured(f"public key #{number} is not a valid PEM key: {exc}") from None
        if isinstance(key, EllipticCurvePublicKey):
            family = {_EC_ALGORITHMS.get(key.curve.name, "")}
        elif isinstance(key, RSAPublicKey):
            family = set(_RSA_ALGORITHMS)
        else:
            raise AuthNotConfigured(f"public key #{number} is neither EC nor RSA")
        algorithms = tuple(sorted(family & set(allowed)))
        if not algorithms:
            raise AuthNotConfigured(
                f"public key #{number} suits none of the allowed algorithms {sorted(allowed)}"
            )
        keys.append(VerificationKey(key_id(key), key, algorithms))
    return keys


class TokenVerifier:
    """Verifies bearer JWTs against the configured public keys, issuer and audience."""

    def __init__(
        self,
        keys: Sequence[VerificationKey],
        *,
        issuer: str,
        audience: str,
        leeway_seconds: float = 30.0,
    ) -> None:
        if not keys:
            raise AuthNotConfigured(
                "no token verification key: set CAREBRIDGE_AUTH_PUBLIC_KEYS to the identity "
                "provider's PEM public key(s) (dev: .venv/bin/python -m carebridge_devstack token --public-key)"
            )
        self._keys: Mapping[str, VerificationKey] = {k.key_id: k for k in keys}
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway_seconds

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> TokenVerifier:
        """The service's verifier; refuses the dev issuer and key without the dev flag."""
        keys = load_public_keys(settings.auth_public_keys, settings.auth_algorithms)
        refuse_dev_auth(settings, keys)
        return cls(
            keys,
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            leeway_seconds=settings.auth_leeway_seconds,
        )

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenRejected("malformed token") from None
        kid = header.get("kid")
        if kid is not None:
            known = self._keys.get(str(kid))
            candidates = [known] if known is not None else []
        else:
            candidates = list(self._keys.values())
        algorithm = header.get("alg")
        candidates = [k for k in candidates if algorithm in k.algorithms]
        if not candidates:
            raise TokenRejected("unknown signing key or algorithm not allowed")
        for candidate in candidates:
            try:
                claims = self._decode(token, candidate)
            except jwt.InvalidSignatureError:
                continue  # another configured key may have signed it (rotation)
            return _principal(claims)
        raise TokenRejected("signature does not verify")

    def _decode(self, token: str, key: VerificationKey) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(key.algorithms),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.InvalidSignatureError:
            raise
        except jwt.ExpiredSignatureError:
            raise TokenRejected("token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("token not valid yet") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("token from an unknown issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"token lacks the {exc.claim} claim") from None
        except jwt.InvalidTokenError:
            raise TokenRejected("invalid token") from None
        return claims


def _principal(claims: Mapping[str, Any]) -> Principal:
    sub, role = claims.get("sub"), claims.get("role")
    if not isinstance(sub, str) or not SUBJECT.match(sub):
        raise TokenRejected("the sub claim is not an id")
    if role not in ROLES:
        raise TokenRejected(f"the role claim must be one of {', '.join(ROLES)}")
    return Principal(sub=sub, role=role)


# --- FastAPI dependencies ------------------------------------------------------------------

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description="A JWT with `sub` and `role` (patient, clinician, coordinator, ops).",
)


def unauthorized(reason: str | None) -> Refused:
    """401 with the RFC 6750 challenge; no `error` when the request carried no token."""
    challenge = f'Bearer realm="{REALM}"'
    if reason is None:
        refused = refuse("authentication_required", "Send a bearer token (Authorization).", 401)
    else:
        refused = refuse("invalid_token", f"The bearer token was refused: {reason}.", 401)
        challenge += f', error="invalid_token", error_description="{reason}"'
    refused.headers["WWW-Authenticate"] = challenge
    return refused


@dataclass(frozen=True, slots=True)
class Target:
    """What a refused request reached for, as its `access_refused` log line names it: ids and
    codes only (never content)."""

    resource_type: str
    resource_id: str | None = None
    patient_id: str | None = None


def _loggable_id(value: object) -> str | None:
    """An id as the log may show it: a caller chooses ids, so anything that is not an opaque id
    (it could be a name or an e-mail address) is not written."""
    if value is None:
        return None
    text = str(value)
    return text if SUBJECT.match(text) or _UUID.match(text) else "[not an id]"


_UUID = re.compile(r"^[0-9a-fA-F-]{36}$")


def log_refusal(principal: Principal | None, code: str, target: Target | None) -> None:
    """One `access_refused` line: who (`sub`, `role`), what was refused (`code`) and what it
    reached for (`resource_type`, `resource_id`, `patient_id`); never PHI."""
    log.info(
        "access_refused",
        code=code,
        sub=principal.sub if principal else None,
        role=principal.role if principal else None,
        resource_type=target.resource_type if target else None,
        resource_id=_loggable_id(target.resource_id) if target else None,
        patient_id=_loggable_id(target.patient_id) if target else None,
    )


def forbidden(
    code: str,
    message: str,
    principal: Principal | None = None,
    target: Target | None = None,
) -> Refused:
    """A 403 refusal, logged as `access_refused` with the caller and the target."""
    log_refusal(principal, code, target)
    return refuse(code, message, 403)


def request_target(request: Request) -> Target:
    """The target of a request refused before its handler ran: the route template, the first
    record id in its path, and the patient it names (path or query)."""
    route = request.scope.get("route")
    template = str(getattr(route, "path", "") or request.url.path)
    params = request.path_params
    patient = params.get("patient_id") or request.query_params.get("patient_id")
    record = next(
        (v for k, v in params.items() if k.endswith("_id") and k != "patient_id"), patient
    )
    return Target(template, record, patient)


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """The verified caller of this request; 401 without a valid bearer token."""
    if credentials is None:
        raise unauthorized(None)
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        principal = verifier.verify(credentials.credentials)
    except TokenRejected as exc:
        log.info("token_rejected", reason=exc.reason)
        raise unauthorized(exc.reason) from None
    request.state.principal = principal
    return principal


Authenticated = Annotated[Principal, Depends(authenticate)]


def allow(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """Dependency: the caller, when their role is one of `roles`; 403 otherwise."""
    allowed = frozenset(roles)
    unknown = allowed - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")
    served = ", ".join(r for r in ROLES if r in allowed)

    async def caller_with_role(request: Request, principal: Authenticated) -> Principal:
        if principal.role not in allowed:
            raise forbidden(
                "role_not_allowed",
                f"This endpoint serves {served}; the token's role is {principal.role}.",
                principal,
                request_target(request),
            )
        return principal

    return caller_with_role


Treats = Callable[[str, str], Awaitable[bool]]
"""`treats(clinician_id, patient_id)`: whether the service's own data links the two."""


async def require_patient_access(
    principal: Principal,
    patient_id: str,
    treats: Treats | None = None,
    *,
    staff: tuple[Role, ...] = (),
    target: Target | None = None,
) -> None:
    """A patient only for themselves; a clinician only for a patient they treat (when `treats`
    is given); roles in `staff` for anyone; 403 for everybody else. `target` names the record
    in the refusal's log line (default: the patient)."""
    target = target or Target("patient", patient_id, patient_id)
    if principal.role == "patient":
        if principal.sub != patient_id:
            raise forbidden(
                "not_own_record", "A patient may only reach their own records.", principal, target
            )
        return
    if principal.role == "clinician" and treats is not None:
        if not await treats(principal.sub, patient_id):
            raise forbidden(
                "not_treating",
                "Only a clinician who treats this patient now (a psychiatric visit that is not "
                "cancelled, or the active care team) may reach their records.",
                principal,
                target,
            )
        return
    if principal.role in staff:
        return
    raise forbidden(
        "role_not_allowed",
        f"A {principal.role} token may not reach these records.",
        principal,
        target,
    )


def require_self(
    principal: Principal, role: Role, subject_id: str, what: str, target: Target | None = None
) -> None:
    """403 unless the caller is `role` and `subject_id` is the caller's own id."""
    if principal.role != role or principal.sub != subject_id:
        raise forbidden(
            "not_self",
            f"Only the {role} named as {what} may do this.",
            principal,
            target or Target(what, subject_id),
        )
