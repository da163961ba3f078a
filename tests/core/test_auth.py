"""verify_token: what is accepted, what is refused and why, and who may broadcast."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wsfanout.core.auth import LEEWAY_SECONDS, Identity, verify_token
from wsfanout.exceptions import ConfigurationError, InvalidInputError
from wsfanout.settings import Settings

SECRET = "test-secret-0123456789abcdef0123456789abcdef"  # >= 32 bytes, as HS256 wants
OTHER_SECRET = "another-secret-0123456789abcdef0123456789abc"
AUTH_ENV = (
    "AUTH_JWT_SECRET",
    "AUTH_JWT_PUBLIC_KEY",
    "AUTH_JWT_ISSUER",
    "AUTH_JWT_AUDIENCE",
    "AUTH_BROADCAST_CLAIM",
)


@pytest.fixture(autouse=True)
def no_auth_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings built here must not pick up the developer's own auth variables."""
    for name in AUTH_ENV:
        monkeypatch.delenv(name, raising=False)


def _pem(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def public_pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return _pem(rsa_key.public_key())


def make_token(key: Any, algorithm: str = "HS256", **claims: Any) -> str:
    """A token for user ``u_123`` valid five minutes; a claim given as None is left out."""
    payload: dict[str, Any] = {"sub": "u_123", "exp": int(time.time()) + 300}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=algorithm)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hs256(secret: bytes, **claims: Any) -> str:
    """An HS256 token signed by hand (PyJWT refuses to use a PEM as an HMAC secret)."""
    payload = {"sub": "mallory", "exp": int(time.time()) + 300, **claims}
    signing_input = (
        f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}."
        f"{_b64(json.dumps(payload).encode())}"
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def hs(**overrides: Any) -> Settings:
    return Settings(auth_jwt_secret=SECRET, **overrides)


def refused(token: str | None, settings: Settings) -> str:
    """The reason verify_token gives; it never quotes the token."""
    with pytest.raises(InvalidInputError) as info:
        verify_token(token, settings)
    reason = str(info.value)
    if token:
        assert token not in reason
        assert all(part not in reason for part in token.split(".") if part)
    return reason


# --- accepted -------------------------------------------------------------------------------


def test_valid_hs256() -> None:
    identity = verify_token(make_token(SECRET), hs())
    assert identity == Identity(user_id="u_123", can_broadcast=False, claims=identity.claims)
    assert identity.claims["sub"] == "u_123"


def test_valid_rs256(rsa_key: rsa.RSAPrivateKey, public_pem: str) -> None:
    identity = verify_token(
        make_token(rsa_key, "RS256", sub="u_rsa"), Settings(auth_jwt_public_key=public_pem)
    )
    assert identity.user_id == "u_rsa"


def test_both_keys_configured_accept_both(rsa_key: rsa.RSAPrivateKey, public_pem: str) -> None:
    settings = Settings(auth_jwt_secret=SECRET, auth_jwt_public_key=public_pem)
    assert verify_token(make_token(SECRET), settings).user_id == "u_123"
    assert verify_token(make_token(rsa_key, "RS256"), settings).user_id == "u_123"


def test_public_key_with_escaped_newlines(rsa_key: rsa.RSAPrivateKey, public_pem: str) -> None:
    escaped = public_pem.replace("\n", "\\n")
    settings = Settings(auth_jwt_public_key=escaped)
    assert verify_token(make_token(rsa_key, "RS256"), settings).user_id == "u_123"


def test_issuer_and_audience_when_configured() -> None:
    settings = hs(auth_jwt_issuer="https://issuer.example", auth_jwt_audience="wsfanout")
    token = make_token(SECRET, iss="https://issuer.example", aud="wsfanout")
    assert verify_token(token, settings).user_id == "u_123"
    token = make_token(SECRET, iss="https://issuer.example", aud=["other", "wsfanout"])
    assert verify_token(token, settings).user_id == "u_123"


def test_audience_not_checked_when_not_configured() -> None:
    assert verify_token(make_token(SECRET, aud="anything"), hs()).user_id == "u_123"


def test_expiry_within_leeway_is_accepted() -> None:
    token = make_token(SECRET, exp=int(time.time()) - LEEWAY_SECONDS // 2)
    assert verify_token(token, hs()).user_id == "u_123"


def test_identity_claims_are_read_only_and_not_in_repr() -> None:
    identity = verify_token(make_token(SECRET, email="a@example.com"), hs())
    with pytest.raises(TypeError):
        identity.claims["sub"] = "someone else"  # type: ignore[index]
    assert "a@example.com" not in repr(identity)


# --- refused --------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token(token: str | None) -> None:
    assert refused(token, hs()) == "missing token"


def test_malformed_token() -> None:
    assert refused("not-a-jwt", hs()) == "malformed token"


def test_expired() -> None:
    token = make_token(SECRET, exp=int(time.time()) - LEEWAY_SECONDS - 60)
    assert refused(token, hs()) == "token expired"


def test_not_yet_valid() -> None:
    token = make_token(SECRET, nbf=int(time.time()) + LEEWAY_SECONDS + 60)
    assert refused(token, hs()) == "token not yet valid"


def test_wrong_audience() -> None:
    token = make_token(SECRET, aud="someone-else")
    assert refused(token, hs(auth_jwt_audience="wsfanout")) == "wrong audience"


def test_audience_required_when_configured() -> None:
    assert refused(make_token(SECRET), hs(auth_jwt_audience="wsfanout")) == "missing claim 'aud'"


def test_wrong_issuer() -> None:
    token = make_token(SECRET, iss="https://evil.example")
    assert refused(token, hs(auth_jwt_issuer="https://issuer.example")) == "wrong issuer"


def test_issuer_required_when_configured() -> None:
    settings = hs(auth_jwt_issuer="https://issuer.example")
    assert refused(make_token(SECRET), settings) == "missing claim 'iss'"


def test_other_secret() -> None:
    assert refused(make_token(OTHER_SECRET), hs()) == "bad signature"


def test_other_rsa_key(other_rsa_key: rsa.RSAPrivateKey, public_pem: str) -> None:
    token = make_token(other_rsa_key, "RS256")
    assert refused(token, Settings(auth_jwt_public_key=public_pem)) == "bad signature"


def test_tampered_payload() -> None:
    header, _, signature = make_token(SECRET).split(".")
    forged_payload = _b64(json.dumps({"sub": "admin", "exp": int(time.time()) + 300}).encode())
    assert refused(f"{header}.{forged_payload}.{signature}", hs()) == "bad signature"


def test_missing_sub() -> None:
    assert refused(make_token(SECRET, sub=None), hs()) == "missing claim 'sub'"


@pytest.mark.parametrize("sub", ["", 123])
def test_invalid_sub(sub: object) -> None:
    assert refused(make_token(SECRET, sub=sub), hs()) == "invalid claim 'sub'"


def test_missing_exp() -> None:
    assert refused(make_token(SECRET, exp=None), hs()) == "missing claim 'exp'"


def test_alg_none_is_refused(public_pem: str) -> None:
    # PyJWT's "none" algorithm takes "" as no key (its typed signature has no None).
    token = jwt.encode({"sub": "mallory", "exp": int(time.time()) + 300}, "", algorithm="none")
    settings = Settings(auth_jwt_secret=SECRET, auth_jwt_public_key=public_pem)
    assert refused(token, settings) == "algorithm not allowed"


def test_hs256_refused_when_only_rs256_is_configured(public_pem: str) -> None:
    """Algorithm confusion: an HS256 token whose HMAC key is the (public) RSA PEM."""
    token = forge_hs256(public_pem.encode())
    assert refused(token, Settings(auth_jwt_public_key=public_pem)) == "algorithm not allowed"


def test_rs256_refused_when_only_hs256_is_configured(rsa_key: rsa.RSAPrivateKey) -> None:
    assert refused(make_token(rsa_key, "RS256"), hs()) == "algorithm not allowed"


def test_other_algorithm_refused() -> None:
    token = make_token(SECRET * 2, algorithm="HS512")
    assert refused(token, hs()) == "algorithm not allowed"


# --- broadcast permission -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"broadcast": True}, True),
        ({"broadcast": "true"}, False),  # only a real boolean counts
        ({"broadcast": 1}, False),
        ({"broadcast": False}, False),
        ({"scope": "read broadcast write"}, True),
        ({"scope": "broadcasting"}, False),
        ({"scp": ["read", "broadcast"]}, True),
        ({"scp": "read broadcast"}, True),
        ({"scp": ["read"]}, False),
        ({}, False),
    ],
)
def test_broadcast_claim(claims: dict[str, Any], expected: bool) -> None:
    assert verify_token(make_token(SECRET, **claims), hs()).can_broadcast is expected


def test_broadcast_claim_name_is_configurable() -> None:
    settings = hs(auth_broadcast_claim="ws:all")
    assert verify_token(make_token(SECRET, scope="ws:all"), settings).can_broadcast is True
    assert verify_token(make_token(SECRET, broadcast=True), settings).can_broadcast is False


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "whatever"])
def test_no_key_configured(token: str | None) -> None:
    with pytest.raises(ConfigurationError, match="AUTH_JWT_SECRET"):
        verify_token(token, Settings())


def test_empty_secret_counts_as_none() -> None:
    with pytest.raises(ConfigurationError):
        verify_token(make_token(SECRET), Settings(auth_jwt_secret=""))


def test_unusable_public_key() -> None:
    with pytest.raises(ConfigurationError, match="PEM"):
        verify_token("x.y.z", Settings(auth_jwt_public_key="not a pem"))


def test_non_rsa_public_key() -> None:
    pem = _pem(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(ConfigurationError, match="RSA"):
        verify_token("x.y.z", Settings(auth_jwt_public_key=pem))


def test_pem_given_as_hmac_secret_is_a_configuration_error(public_pem: str) -> None:
    token = forge_hs256(public_pem.encode())
    with pytest.raises(ConfigurationError, match="HS256"):
        verify_token(token, Settings(auth_jwt_secret=public_pem))
