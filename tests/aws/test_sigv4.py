"""The hand-written signer must sign exactly as botocore's SigV4Auth does."""

from __future__ import annotations

import datetime
from urllib.parse import quote

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from wsfanout.aws.account import REGION
from wsfanout.aws.sigv4 import Credentials, PostSigner, host_header

NOW = 1_764_100_000.0  # 2025-11-25T19:46:40Z
ENDPOINTS = [
    "https://abc123.execute-api.eu-west-1.amazonaws.com/prod",
    "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/",
    "http://127.0.0.1:8080/test",
    "http://localhost:80/a/b",
    "https://ws.example.com",
    "https://WS.Example.com:8443/live",
]
IDS = ["L0SM9cOFvHcCIhw=", "abc=", "A-b_c.d~e0==", "a/b+c==", "x y~z", "ü-unicode", "%41", "a=b"]


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    moment = datetime.datetime.fromtimestamp(NOW, datetime.UTC).replace(tzinfo=None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moment)


def botocore_signed(endpoint: str, connection_id: str, payload: bytes, token: str | None):
    url = endpoint.rstrip("/") + "/@connections/" + quote(connection_id, safe="~")
    request = AWSRequest(method="POST", url=url, data=payload)
    credentials = ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token)
    botocore.auth.SigV4Auth(credentials, "execute-api", "eu-west-1").add_auth(request)
    return request


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzE+token/=="])
def test_signature_equals_botocore(endpoint: str, token: str | None) -> None:
    signer = PostSigner(endpoint, "eu-west-1")
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token)
    for connection_id in IDS:
        for payload in (b"hello", b"", b"x" * 131072):
            url, headers = signer.sign(connection_id, payload, credentials, NOW)
            expected = botocore_signed(endpoint, connection_id, payload, token)
            assert url == expected.url
            assert headers["Authorization"] == expected.headers["Authorization"]
            assert headers["X-Amz-Date"] == expected.headers["X-Amz-Date"]
            if token:
                assert headers["X-Amz-Security-Token"] == token
            else:
                assert "X-Amz-Security-Token" not in headers


def test_signature_changes_with_time_key_and_payload() -> None:
    signer = PostSigner("https://e.example.com/prod", REGION)
    creds = Credentials("AK", "SECRET", None)
    base = signer.sign("a=", b"x", creds, NOW)[1]["Authorization"]
    assert signer.sign("a=", b"x", creds, NOW + 1)[1]["Authorization"] != base
    assert signer.sign("a=", b"y", creds, NOW)[1]["Authorization"] != base
    other_secret = Credentials("AK", "OTHER", None)
    assert signer.sign("a=", b"x", other_secret, NOW)[1]["Authorization"] != base
    next_day = signer.sign("a=", b"x", creds, NOW + 86400)[1]["Authorization"]
    assert f"/20251126/{REGION}/execute-api/aws4_request" in next_day
    assert signer.sign("a=", b"x", creds, NOW)[1]["Authorization"] == base


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://A.example.com/prod", "a.example.com"),
        ("https://a.example.com:443/prod", "a.example.com"),
        ("http://a.example.com:80", "a.example.com"),
        ("http://127.0.0.1:8080/x", "127.0.0.1:8080"),
        ("https://[::1]:8443/x", "[::1]:8443"),
    ],
)
def test_host_header(url: str, host: str) -> None:
    assert host_header(url) == host
