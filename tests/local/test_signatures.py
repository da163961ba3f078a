"""The SigV4 verifier against signatures botocore makes itself (queries, tokens, tampering)."""

from __future__ import annotations

import time

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

from wsfanout.aws.account import KEY_ID, REGION, SECRET
from wsfanout.local.signatures import MAX_SKEW_S, Verifier, signed_headers


def botocore_signed(method: str, url: str, body: bytes, token: str | None = None) -> AWSRequest:
    request = AWSRequest(method=method, url=url, data=body)
    SigV4Auth(Credentials(KEY_ID, SECRET, token), "execute-api", REGION).add_auth(request)
    return request


def verdict(request: AWSRequest, verifier: Verifier | None = None, **kw: float) -> str | None:
    headers = CIMultiDict({k: str(v) for k, v in request.headers.items()})
    headers["Host"] = "127.0.0.1:8080"
    raw = str(request.url).split("127.0.0.1:8080", 1)[1]
    body = request.body or b""
    refusal = (verifier or Verifier()).verify(
        str(request.method), raw, headers, body if isinstance(body, bytes) else body.encode(), **kw
    )
    return None if refusal is None else refusal.error_type


def test_botocore_signatures_pass_with_a_query_and_any_method() -> None:
    url = "http://127.0.0.1:8080/local/@connections/L0SM9cOFvHcCIhw%3D"
    assert verdict(botocore_signed("POST", url, b"hello")) is None
    assert verdict(botocore_signed("GET", url + "?b=2&a=1&a=0", b"")) is None
    assert verdict(botocore_signed("DELETE", url, b"")) is None


def test_what_would_fail_on_aws_fails_here() -> None:
    url = "http://127.0.0.1:8080/local/@connections/L0SM9cOFvHcCIhw%3D"
    signed = botocore_signed("POST", url, b"hello")
    tampered = AWSRequest(method="POST", url=url, data=b"other", headers=dict(signed.headers))
    assert verdict(tampered) == "InvalidSignatureException"
    moved = AWSRequest(method="POST", url=url + "x", data=b"hello", headers=dict(signed.headers))
    assert verdict(moved) == "InvalidSignatureException"
    assert verdict(signed, Verifier(region="eu-west-1")) == "InvalidSignatureException"
    assert verdict(signed, Verifier(key_id="other")) == "UnrecognizedClientException"
    assert verdict(botocore_signed("POST", url, b"x", token="t")) == "UnrecognizedClientException"
    later = time.time() + MAX_SKEW_S + 5
    assert verdict(signed, now=later) == "InvalidSignatureException"
    assert verdict(signed, now=time.time() + MAX_SKEW_S - 5) is None
    unsigned = AWSRequest(method="POST", url=url, data=b"hello")
    assert verdict(unsigned) == "MissingAuthenticationTokenException"


def test_the_helper_signs_what_the_verifier_accepts() -> None:
    url = "http://127.0.0.1:8080/_wsfanout/reset"
    headers = CIMultiDict(signed_headers("POST", url))
    headers["Host"] = "127.0.0.1:8080"
    assert Verifier().verify("POST", "/_wsfanout/reset", headers, b"") is None
    wrong = CIMultiDict(signed_headers("POST", url, secret="nope"))
    wrong["Host"] = "127.0.0.1:8080"
    refusal = Verifier().verify("POST", "/_wsfanout/reset", wrong, b"")
    assert refusal is not None
    assert refusal.error_type == "InvalidSignatureException"
