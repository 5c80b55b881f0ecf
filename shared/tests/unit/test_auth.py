"""Bearer-token verification (ADR 0012): what is accepted, and every way a token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from carebridge_booking.app import BookingSettings, build
from carebridge_devstack.signer import DevSigner, TokenCache
from carebridge_devstack.testing import bearer
from carebridge_shared.auth import (
    DEV_SIGNING_KEY_FILE_ENV,
    AuthNotConfigured,
    DevAuthRefused,
    Principal,
    TokenRejected,
    TokenVerifier,
    dev_key_id,
    key_id,
    load_public_keys,
)


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> DevSigner:
    return DevSigner.load(tmp_path_factory.mktemp("keys") / "signing-key.pem")


@pytest.fixture(scope="module")
def verifier(signer: DevSigner) -> TokenVerifier:
    return verifier_for(signer.public_pem)


def verifier_for(pem: str, algorithms: tuple[str, ...] = ("ES256", "RS256")) -> TokenVerifier:
    return TokenVerifier(
        load_public_keys(pem, algorithms),
        issuer="carebridge-dev",
        audience="carebridge",
        leeway_seconds=30,
    )


def refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenRejected) as caught:
        verifier.verify(token)
    return caught.value.reason


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_valid_token_names_its_principal(signer: DevSigner, verifier: TokenVerifier) -> None:
    token = signer.token("clinician", "psy-ny-1")
    assert verifier.verify(token) == Principal("psy-ny-1", "clinician")
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": signer.key_id, "typ": "JWT"}


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 120}, "token expired"),
        ({"iat": int(time.time()) + 3600, "exp": int(time.time()) + 7200}, "token not valid yet"),
        ({"nbf": int(time.time()) + 3600}, "token not valid yet"),
        ({"aud": "another-api"}, "token is for another audience"),
        ({"iss": "https://idp.elsewhere"}, "token from an unknown issuer"),
        ({"role": "admin"}, "the role claim must be one of patient, clinician, coordinator, ops"),
        ({"role": None}, "token lacks the role claim"),
        ({"sub": "Jane Doe <jane@example.com>"}, "the sub claim is not an id"),
    ],
)
def test_claims_that_are_refused(
    signer: DevSigner, verifier: TokenVerifier, claims: dict[str, object], reason: str
) -> None:
    payload = {k: v for k, v in claims.items() if v is not None}
    token = signer.token("patient", "p-1", **payload)
    if None in claims.values():  # a claim left out altogether
        decoded = jwt.decode(token, options={"verify_signature": False})
        for name in (k for k, v in claims.items() if v is None):
            decoded.pop(name)
        token = jwt.encode(
            decoded, signer.private_key, algorithm="ES256", headers={"kid": signer.key_id}
        )
    assert refusal(verifier, token) == reason


def test_leeway_tolerates_a_little_clock_skew(signer: DevSigner, verifier: TokenVerifier) -> None:
    just_expired = signer.token("patient", "p-1", exp=int(time.time()) - 5)
    assert verifier.verify(just_expired).sub == "p-1"


def test_a_token_from_another_key_is_forged(verifier: TokenVerifier, tmp_path: Path) -> None:
    stranger = DevSigner.load(tmp_path / "other.pem")
    assert refusal(verifier, stranger.token("ops", "ops-1")) == (
        "unknown signing key or algorithm not allowed"
    )
    # Claiming the trusted key's id does not help: the signature does not verify.
    payload = jwt.decode(stranger.token("ops", "ops-1"), options={"verify_signature": False})
    trusted_kid = next(iter(verifier._keys))
    forged = jwt.encode(payload, stranger.private_key, "ES256", headers={"kid": trusted_kid})
    assert refusal(verifier, forged) == "signature does not verify"


def test_a_tampered_payload_fails_the_signature(signer: DevSigner, verifier: TokenVerifier) -> None:
    header, _payload, signature = signer.token("patient", "p-1").split(".")
    claims = {"iss": "carebridge-dev", "aud": "carebridge", "sub": "p-2", "role": "patient"}
    now = int(time.time())
    body = b64(json.dumps({**claims, "iat": now, "exp": now + 60}).encode())
    assert refusal(verifier, f"{header}.{body}.{signature}") == "signature does not verify"


def test_unsigned_and_hmac_tokens_are_refused(signer: DevSigner, verifier: TokenVerifier) -> None:
    now = int(time.time())
    claims = {"iss": "carebridge-dev", "aud": "carebridge", "sub": "ops-1", "role": "ops"}
    body = b64(json.dumps({**claims, "iat": now, "exp": now + 60}).encode())
    unsigned = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode()) + f".{body}."
    assert refusal(verifier, unsigned) == "unknown signing key or algorithm not allowed"
    # The classic key confusion: HMAC "signed" with the public key as the shared secret.
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    mac = hmac.new(signer.public_pem.encode(), f"{header}.{body}".encode(), hashlib.sha256)
    confused = f"{header}.{body}.{b64(mac.digest())}"
    assert refusal(verifier, confused) == "unknown signing key or algorithm not allowed"
    assert refusal(verifier, "not-a-jwt") == "malformed token"


def test_rotation_trusts_every_configured_key(signer: DevSigner) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pem = (
        rsa_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    )
    verifier = verifier_for(signer.public_pem + rsa_pem)
    now = int(time.time())
    claims = {"iss": "carebridge-dev", "aud": "carebridge", "iat": now, "exp": now + 60}
    rs256 = jwt.encode({**claims, "sub": "coord-1", "role": "coordinator"}, rsa_key, "RS256")
    assert verifier.verify(rs256) == Principal("coord-1", "coordinator")  # no kid: tries each
    assert verifier.verify(signer.token("ops", "ops-1")).role == "ops"
    # The RSA key never verifies a token whose header says ES256.
    _header, body, signature = rs256.split(".")
    relabelled = b64(json.dumps({"alg": "ES256", "kid": key_id(rsa_key.public_key())}).encode())
    as_es256 = f"{relabelled}.{body}.{signature}"
    assert refusal(verifier, as_es256) == "unknown signing key or algorithm not allowed"


def test_configuration_errors_stop_the_service(signer: DevSigner) -> None:
    with pytest.raises(AuthNotConfigured, match="CAREBRIDGE_AUTH_PUBLIC_KEYS"):
        verifier_for("")
    with pytest.raises(AuthNotConfigured, match="asymmetric only"):
        load_public_keys(signer.public_pem, ["HS256"])
    with pytest.raises(AuthNotConfigured, match="suits none"):
        load_public_keys(signer.public_pem, ["RS256"])
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = p384.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    assert load_public_keys(pem, ["ES256", "ES384"])[0].algorithms == ("ES384",)
    with pytest.raises(AuthNotConfigured, match="no token verification key"):
        build(BookingSettings(auth_public_keys=""))


@pytest.fixture
def dev_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DevSigner:
    """This machine's dev signing key, as the services look for it (in a test's own place)."""
    path = tmp_path / "dev-auth" / "signing-key.pem"
    monkeypatch.setenv(DEV_SIGNING_KEY_FILE_ENV, str(path))
    return DevSigner.load(path)


def idp_key() -> str:
    """A public key of some real identity provider (not the dev key)."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def test_a_service_refuses_the_dev_issuer_and_the_dev_key_without_the_dev_flag(
    dev_key: DevSigner,
) -> None:
    with pytest.raises(DevAuthRefused) as refused:
        build(BookingSettings(auth_public_keys=dev_key.public_pem, dev_auth=False))
    message = str(refused.value)
    assert "dev issuer 'carebridge-dev'" in message and "dev signing key" in message
    assert "CAREBRIDGE_AUTH_ISSUER" in message and "CAREBRIDGE_DEV_AUTH=true" in message

    with pytest.raises(DevAuthRefused, match=r"dev signing key") as refused:
        build(BookingSettings(auth_public_keys=idp_key() + dev_key.public_pem,
                              auth_issuer="https://idp.example", dev_auth=False))  # fmt: skip
    assert "dev issuer" not in str(refused.value)
    with pytest.raises(DevAuthRefused, match=r"dev issuer") as refused:
        build(BookingSettings(auth_public_keys=idp_key(), dev_auth=False))
    assert "signing key" not in str(refused.value)


def test_a_service_starts_with_a_real_issuer_or_with_the_dev_flag(
    dev_key: DevSigner, capsys: pytest.CaptureFixture[str]
) -> None:
    production = BookingSettings(
        auth_public_keys=idp_key(), auth_issuer="https://idp.example", dev_auth=False
    )
    assert build(production).state.token_verifier.issuer == "https://idp.example"

    build(BookingSettings(auth_public_keys=dev_key.public_pem, dev_auth=True))
    assert '"dev_auth_enabled"' in capsys.readouterr().out, "a dev flag in use is logged"


def test_without_a_dev_key_on_the_machine_only_the_issuer_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DEV_SIGNING_KEY_FILE_ENV, str(tmp_path / "absent.pem"))
    assert dev_key_id() is None
    build(BookingSettings(auth_public_keys=idp_key(), auth_issuer="https://idp", dev_auth=False))
    with pytest.raises(DevAuthRefused, match="dev issuer"):
        build(BookingSettings(auth_public_keys=idp_key(), dev_auth=False))


def test_the_dev_flag_is_one_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREBRIDGE_DEV_AUTH", "false")
    assert BookingSettings().dev_auth is False
    monkeypatch.setenv("CAREBRIDGE_DEV_AUTH", "true")
    assert BookingSettings().dev_auth is True


def test_the_dev_key_is_made_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "dev" / "signing-key.pem"
    first = DevSigner.load(path)
    assert DevSigner.load(path).public_pem == first.public_pem
    assert path.stat().st_mode & 0o777 == 0o600
    cache = TokenCache(first)
    assert cache.token("patient", "p-1") == cache.token("patient", "p-1")
    assert cache.token("patient", "p-1") != cache.token("patient", "p-2")


# --- over HTTP: the booking app without its lifespan (no database is reached) ---------------


@pytest.fixture
def booking() -> httpx.AsyncClient:
    app = build(BookingSettings())  # the key comes from the test plugin's environment
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://booking")


async def test_no_token_is_401_with_a_bearer_challenge(booking: httpx.AsyncClient) -> None:
    response = await booking.get("/v1/clinicians")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="carebridge"'
    assert response.json()["code"] == "authentication_required"
    basic = await booking.get("/v1/clinicians", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert basic.status_code == 401


async def test_an_invalid_token_is_401_naming_why(booking: httpx.AsyncClient) -> None:
    expired = bearer("patient", "p-1", exp=int(time.time()) - 3600)
    response = await booking.get("/v1/patients/p-1/eligibility", headers=expired)
    assert response.status_code == 401
    assert response.json() == {
        "code": "invalid_token",
        "message": "The bearer token was refused: token expired.",
    }
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="carebridge", error="invalid_token", error_description="token expired"'
    )


async def test_probes_stay_open(booking: httpx.AsyncClient) -> None:
    assert (await booking.get("/healthz")).status_code == 200
    assert (await booking.get("/metrics")).status_code == 200
    assert (await booking.get("/readyz")).status_code == 503  # not started: no token needed
