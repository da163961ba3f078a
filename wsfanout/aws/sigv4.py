"""AWS Signature Version 4 for PostToConnection, precomputed as far as it goes.

Why by hand: botocore's ``SigV4Auth`` is general (any method, query, header set, service), and
rebuilds and re-parses the URL, the header map and the signing key for every request, which
would be a large share of a lean PostToConnection's CPU. A broadcast signs the same request shape
thousands of times, changing only the connection id and the second on the clock. This signer
derives the signing key once a day, splits the endpoint once, and signs each request with two
SHA-256 digests and one HMAC. Tests check that its ``Authorization`` header is byte-for-byte what
botocore's ``SigV4Auth`` produces for the same request and instant.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import NamedTuple
from urllib.parse import quote, urlsplit

from botocore.utils import normalize_url_path

__all__ = ["Credentials", "PostSigner", "host_header"]

_ALGORITHM = "AWS4-HMAC-SHA256"
# Ids that quote() leaves alone but for "=": they take a fast path with the same result.
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.~-]*=*")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Credentials(NamedTuple):
    """The three parts of a credential that signing needs (botocore's ReadOnlyCredentials)."""

    access_key: str
    secret_key: str
    token: str | None


def host_header(url: str) -> str:
    """The ``host`` botocore signs: lower case, port only when not the scheme's default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


class PostSigner:
    """Signs ``POST {endpoint}/@connections/{id}`` requests for one endpoint and region."""

    def __init__(self, endpoint: str, region: str, service: str = "execute-api") -> None:
        base = endpoint.rstrip("/")
        self.base_url = f"{base}/@connections/"
        self._host = host_header(base)
        self._path_prefix = quote(normalize_url_path(urlsplit(self.base_url).path), safe="/~")
        self._region = region
        self._service = service
        self._key_day = ""
        self._key_secret = ""
        self._key = b""
        self._payload: bytes | None = None
        self._payload_hash = ""
        self._second = -1
        self._amz_date = ""

    def _signing_key(self, secret: str, day: str) -> bytes:
        if day != self._key_day or secret != self._key_secret:
            key = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
            for part in (self._region, self._service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._key, self._key_day, self._key_secret = key, day, secret
        return self._key

    def _hash_payload(self, payload: bytes) -> str:
        if payload is not self._payload:
            self._payload = payload
            self._payload_hash = hashlib.sha256(payload).hexdigest()
        return self._payload_hash

    def sign(
        self,
        connection_id: str,
        payload: bytes,
        credentials: Credentials,
        now: float | None = None,
    ) -> tuple[str, dict[str, str]]:
        """The URL and the headers (``Authorization``, ``X-Amz-Date``, token) of one post."""
        if _PLAIN_ID.fullmatch(connection_id):  # API Gateway's ids: base64 letters and "="
            label = connection_id.replace("=", "%3D")
            path = f"{self._path_prefix}{connection_id.replace('=', '%253D')}"
        else:
            label = quote(connection_id, safe="~")  # how botocore renders {connectionId}
            path = f"{self._path_prefix}{quote(label, safe='/~')}"
        second = int(time.time() if now is None else now)
        if second != self._second:  # one clock reading per second, not per request
            self._second, self._amz_date = (
                second,
                time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second)),
            )
        amz_date = self._amz_date
        day = amz_date[:8]
        token = credentials.token
        if token:
            canonical_headers = (
                f"host:{self._host}\nx-amz-date:{amz_date}\nx-amz-security-token:{token}\n"
            )
            signed_headers = "host;x-amz-date;x-amz-security-token"
        else:
            canonical_headers = f"host:{self._host}\nx-amz-date:{amz_date}\n"
            signed_headers = "host;x-amz-date"
        canonical_request = (
            f"POST\n{path}\n\n{canonical_headers}\n{signed_headers}\n{self._hash_payload(payload)}"
        )
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        string_to_sign = (
            f"{_ALGORITHM}\n{amz_date}\n{scope}\n"
            f"{hashlib.sha256(canonical_request.encode()).hexdigest()}"
        )
        signature = hmac.new(
            self._signing_key(credentials.secret_key, day), string_to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers = {
            "X-Amz-Date": amz_date,
            "Authorization": f"{_ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}",
        }
        if token:
            headers["X-Amz-Security-Token"] = token
        return self.base_url + label, headers
