"""SigV4 as the local management endpoint checks it, and the one helper its callers sign with.

API Gateway verifies every ``@connections`` request against IAM; the local endpoint verifies it
against the stack's one made-up account (:mod:`wsfanout.aws.account`), so a client with the
wrong key, a wrong secret or a stale clock is refused locally as it would be on AWS. The checks
follow AWS's Signature Version 4 documentation ("Create a signed AWS API request" and
"Elements of an AWS API request signature"); the refusals are API Gateway's gateway responses
``MISSING_AUTHENTICATION_TOKEN`` and ``INVALID_SIGNATURE`` and IAM's unknown-key answer:

==========================================  ====  ========================================
request                                     HTTP  ``x-amzn-ErrorType``
==========================================  ====  ========================================
no ``Authorization`` header                 403   ``MissingAuthenticationTokenException``
an access key the account does not have     403   ``UnrecognizedClientException``
a signature that does not match             403   ``InvalidSignatureException``
``X-Amz-Date`` more than 5 minutes off      403   ``InvalidSignatureException``
==========================================  ====  ========================================

Written by hand rather than with botocore: botocore signs but has no verifier, and verifying is
recomputing the canonical request from what arrived on the wire (the raw, still-encoded path),
which botocore's request objects would re-encode. Tests check that requests signed by botocore's
``SigV4Auth`` and by :class:`wsfanout.aws.sigv4.PostSigner` both pass.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import parse_qsl, quote, unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from ..aws.account import KEY_ID, REGION, SECRET

__all__ = ["MAX_SKEW_S", "SERVICE", "Refusal", "Verifier", "signed_headers"]

SERVICE: Final = "execute-api"
"""The signing name of the management API (botocore's ``apigatewaymanagementapi`` model)."""

MAX_SKEW_S: Final = 300
"""How far ``X-Amz-Date`` may be from the server's clock: AWS's 5 minutes."""

_ALGORITHM: Final = "AWS4-HMAC-SHA256"
_AMZ_DATE: Final = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: the error type and message API Gateway answers with (403)."""

    error_type: str
    message: str


MISSING: Final = Refusal("MissingAuthenticationTokenException", "Missing Authentication Token")
UNKNOWN_KEY: Final = Refusal(
    "UnrecognizedClientException", "The security token included in the request is invalid."
)
_MISMATCH: Final = Refusal(
    "InvalidSignatureException",
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details.",
)


def _invalid(message: str) -> Refusal:
    return Refusal("InvalidSignatureException", message)


def _parse_authorization(value: str) -> dict[str, str] | None:
    """``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`` as a dict."""
    algorithm, _, rest = value.partition(" ")
    if algorithm != _ALGORITHM:
        return None
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, field = part.strip().partition("=")
        if sep:
            fields[name] = field
    if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
        return None
    return fields


def _requoted(path: str) -> str:
    """The path with each segment encoded as botocore encodes a ``{connectionId}`` label.

    API Gateway checks the signature against the path it normalised, not the bytes that came:
    ``=`` and ``%3D`` are the same path. That matters because aiohttp (yarl) sends ``%3D`` as
    ``=``, so a PostSigner request arrives with ``=`` though it was signed as ``%3D``.
    """
    return "/".join(quote(unquote(segment), safe="~@") for segment in path.split("/"))


def _canonical_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(pairs))


class Verifier:
    """Checks SigV4 ``Authorization`` headers against one access key, region and service.

    The signing key is derived once per day; everything else is two SHA-256 digests and one HMAC
    per request, so a benchmark's endpoint is not slowed down by its own checks.
    """

    def __init__(
        self,
        key_id: str = KEY_ID,
        secret: str = SECRET,
        region: str = REGION,
        service: str = SERVICE,
    ) -> None:
        self.key_id = key_id
        self._secret = secret
        self.region = region
        self.service = service
        self._keys: dict[str, bytes] = {}

    def _signing_key(self, day: str) -> bytes:
        key = self._keys.get(day)
        if key is None:
            key = hmac.new(f"AWS4{self._secret}".encode(), day.encode(), hashlib.sha256).digest()
            for part in (self.region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {day: key}  # one day at a time is all a clock within 5 minutes needs
        return key

    def verify(
        self,
        method: str,
        raw_path: str,
        headers: Mapping[str, str],
        body: bytes,
        now: float | None = None,
    ) -> Refusal | None:
        """``None`` when the request is signed by this key, else why it is refused.

        ``raw_path`` is the request target as sent (still percent-encoded, query included);
        ``headers`` must look names up case-insensitively (aiohttp's and botocore's do).
        """
        authorization = headers.get("Authorization")
        if not authorization:
            return MISSING
        fields = _parse_authorization(authorization)
        if fields is None:
            return _invalid(f"Authorization header requires the {_ALGORITHM} algorithm.")
        key_id, _, scope = fields["Credential"].partition("/")
        if key_id != self.key_id:
            return UNKNOWN_KEY
        if headers.get("X-Amz-Security-Token"):  # the account's key has no session token
            return UNKNOWN_KEY
        amz_date = headers.get("X-Amz-Date", "")
        try:
            signed_at = datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=UTC).timestamp()
        except ValueError:
            return _invalid("Date must be in ISO-8601 'basic format' in the X-Amz-Date header.")
        clock = time.time() if now is None else now
        if abs(clock - signed_at) > MAX_SKEW_S:
            return _invalid(_skew_message(amz_date, clock, signed_at < clock))
        day = amz_date[:8]
        expected_scope = f"{day}/{self.region}/{self.service}/aws4_request"
        if scope != expected_scope:
            return _invalid(f"Credential should be scoped to {expected_scope!r}.")
        signed = fields["SignedHeaders"].split(";")
        if "host" not in signed:
            return _invalid("'Host' must be a signed header.")
        canonical_headers = "".join(
            f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed
        )
        path, _, query = raw_path.partition("?")
        canonical_request = "\n".join(
            (
                method,
                quote(_requoted(path), safe="/~"),  # encoded a second time, as botocore does
                _canonical_query(query),
                canonical_headers,
                fields["SignedHeaders"],
                hashlib.sha256(body).hexdigest(),
            )
        )
        string_to_sign = (
            f"{_ALGORITHM}\n{amz_date}\n{expected_scope}\n"
            f"{hashlib.sha256(canonical_request.encode()).hexdigest()}"
        )
        signature = hmac.new(
            self._signing_key(day), string_to_sign.encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(signature, fields["Signature"]):
            return _MISMATCH
        return None


def _skew_message(amz_date: str, now: float, expired: bool) -> str:
    """AWS's own wording for a request signed too long ago or too far ahead."""
    stamp = time.strftime(_AMZ_DATE, time.gmtime(now))
    if expired:
        limit = time.strftime(_AMZ_DATE, time.gmtime(now - MAX_SKEW_S))
        return f"Signature expired: {amz_date} is now earlier than {limit} ({stamp} - 5 min.)"
    limit = time.strftime(_AMZ_DATE, time.gmtime(now + MAX_SKEW_S))
    return f"Signature not yet current: {amz_date} is still later than {limit} ({stamp} + 5 min.)"


def signed_headers(
    method: str,
    url: str,
    body: bytes = b"",
    *,
    key_id: str = KEY_ID,
    secret: str = SECRET,
    region: str = REGION,
) -> dict[str, str]:
    """The headers that sign ``method url`` for the local endpoint, as botocore signs them.

    The one helper for the endpoint's control routes (``/_wsfanout/stats``, ``counts``,
    ``reset``, ``config``), which need the stack's credentials like ``@connections`` does; pass
    the result as the request's headers, with the same ``body``.
    """
    request = AWSRequest(method=method, url=url, data=body)
    SigV4Auth(BotoCredentials(key_id, secret), SERVICE, region).add_auth(request)
    return {name: str(value) for name, value in request.headers.items()}
