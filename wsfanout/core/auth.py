"""Who is connecting: verify a JWT and turn its claims into an :class:`Identity`.

Pure code with no Lambda knowledge, so the ``$connect`` authorizer, the local emulator and tests
share one verifier. Only algorithms whose key is configured are accepted: HS256 when
``auth_jwt_secret`` is set, RS256 when ``auth_jwt_public_key`` is set, never ``none``. Pinning
the algorithm to the key, not to the token's header, is what stops algorithm confusion (an HS256
token "signed" with the public RSA key).

A token that cannot be accepted raises :class:`~wsfanout.exceptions.InvalidInputError` whose
message is a short reason fit for a log line (``"token expired"``, ``"wrong audience"``...)
and never contains the token. A verifier with no key at all raises
:class:`~wsfanout.exceptions.ConfigurationError`: that is the operator's mistake, not the
client's, and callers must fail closed on it.

PyJWT and cryptography come with the ``[lambda]`` extra and are imported where a token is
verified, not with this module: a sender's install (``pip install wsfanout``) has neither, and a
verifier called without them raises a :class:`~wsfanout.exceptions.ConfigurationError` naming
the extra.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigurationError, InvalidInputError
from ..extras import missing_extra

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from jwt import InvalidTokenError
    from jwt.types import Options

    from ..settings import Settings

__all__ = ["LEEWAY_SECONDS", "Identity", "verify_token"]

LEEWAY_SECONDS = 30
"""Clock skew tolerated on ``exp``, ``nbf`` and ``iat`` between the issuer and Lambda."""

_HS256 = "HS256"
_RS256 = "RS256"


@dataclass(frozen=True)
class Identity:
    """A verified user: the token's ``sub`` and whether it may broadcast to everyone."""

    user_id: str
    can_broadcast: bool
    claims: Mapping[str, Any] = field(repr=False, hash=False)
    """All verified claims, read-only (kept out of ``repr`` so they do not end up in logs)."""


def verify_token(token: str | None, settings: Settings) -> Identity:
    """Verify ``token`` against the configured key(s) and return who it identifies.

    :raises ConfigurationError: when neither a secret nor a public key is configured, the
        configured key cannot verify the token's algorithm or is not a usable public key, or
        PyJWT is not installed (the ``[lambda]`` extra).
    :raises InvalidInputError: with a short reason (never the token) when the token cannot be
        accepted: missing, malformed, an algorithm not allowed, a bad signature or claim.
    """
    try:
        import jwt  # noqa: PLC0415  (an extra: imported where a token is verified, see above)
    except ModuleNotFoundError as exc:
        raise missing_extra("lambda", exc) from None
    keys = _keys(settings)
    if not token:
        raise InvalidInputError("missing token")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise InvalidInputError("malformed token") from None
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in keys:
        raise InvalidInputError("algorithm not allowed")

    required = ["exp", "sub"]
    if settings.auth_jwt_issuer is not None:
        required.append("iss")
    if settings.auth_jwt_audience is not None:
        required.append("aud")
    options: Options = {
        "require": required,
        # PyJWT rejects any token with an "aud" when no audience is expected; only check the
        # audience when one is configured (set AUTH_JWT_AUDIENCE to pin it).
        "verify_aud": settings.auth_jwt_audience is not None,
        # checked below, with the same reason on every PyJWT version
        "verify_sub": False,
    }
    try:
        claims = jwt.decode(
            token,
            key=keys[algorithm],
            algorithms=[algorithm],
            options=options,
            audience=settings.auth_jwt_audience,
            issuer=settings.auth_jwt_issuer,
            leeway=LEEWAY_SECONDS,
        )
    except jwt.InvalidKeyError:
        # e.g. a PEM public key given as the HS256 secret: the operator's mistake
        raise ConfigurationError(f"the configured key cannot verify {algorithm}") from None
    except jwt.InvalidTokenError as exc:
        raise InvalidInputError(_reason(exc)) from None

    user_id = claims["sub"]
    if not isinstance(user_id, str) or not user_id:
        raise InvalidInputError("invalid claim 'sub'")
    return Identity(
        user_id=user_id,
        can_broadcast=_can_broadcast(claims, settings.auth_broadcast_claim),
        claims=MappingProxyType(claims),
    )


def _reason(exc: InvalidTokenError) -> str:
    """A short reason for a log line; PyJWT's own messages may quote claim values."""
    import jwt  # noqa: PLC0415  (loaded by verify_token, the only caller)

    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"missing claim {exc.claim!r}"
    reasons: tuple[tuple[type[InvalidTokenError], str], ...] = (
        (jwt.ExpiredSignatureError, "token expired"),
        (jwt.ImmatureSignatureError, "token not yet valid"),
        (jwt.InvalidAudienceError, "wrong audience"),
        (jwt.InvalidIssuerError, "wrong issuer"),
        (jwt.InvalidSignatureError, "bad signature"),
    )
    for kind, reason in reasons:
        if isinstance(exc, kind):
            return reason
    return f"invalid token ({type(exc).__name__})"


def _keys(settings: Settings) -> dict[str, str | RSAPublicKey]:
    """Map each algorithm accepted to its verification key."""
    keys: dict[str, str | RSAPublicKey] = {}
    if settings.auth_jwt_secret is not None and settings.auth_jwt_secret.get_secret_value():
        keys[_HS256] = settings.auth_jwt_secret.get_secret_value()
    if settings.auth_jwt_public_key:
        keys[_RS256] = _public_key(settings.auth_jwt_public_key)
    if not keys:
        raise ConfigurationError(
            "no token verification key: set AUTH_JWT_SECRET (HS256) and/or "
            "AUTH_JWT_PUBLIC_KEY (RS256, PEM)"
        )
    return keys


@functools.lru_cache(maxsize=4)
def _public_key(pem: str) -> RSAPublicKey:
    """Parse the PEM once per container; accept ``\\n`` escapes as environments often carry."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey  # noqa: PLC0415
    from cryptography.hazmat.primitives.serialization import load_pem_public_key  # noqa: PLC0415

    if "\n" not in pem and "\\n" in pem:
        pem = pem.replace("\\n", "\n")
    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        raise ConfigurationError("AUTH_JWT_PUBLIC_KEY is not a PEM public key") from None
    if not isinstance(key, RSAPublicKey):
        raise ConfigurationError("AUTH_JWT_PUBLIC_KEY must be an RSA key for RS256")
    return key


def _can_broadcast(claims: Mapping[str, Any], name: str) -> bool:
    """True when claim ``name`` is boolean true, or ``name`` is one of the token's scopes."""
    if claims.get(name) is True:
        return True
    scope = claims.get("scope")
    if isinstance(scope, str) and name in scope.split():
        return True
    scp = claims.get("scp")
    if isinstance(scp, str):
        return name in scp.split()
    if isinstance(scp, list):
        return name in scp
    return False
