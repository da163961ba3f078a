"""The $connect REQUEST authorizer: the policy it returns and the log line it writes."""

from __future__ import annotations

import importlib
import io
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.core.test_auth import AUTH_ENV as AUTH_VARIABLES
from tests.core.test_auth import forge_hs256
from tests.events import load_event
from tests.helpers import policy
from wsfanout.handlers import authorizer
from wsfanout.handlers import runtime as runtime_module
from wsfanout.handlers.runtime import reset_runtime, runtime
from wsfanout.local.containers import hosting
from wsfanout.testing import LambdaContext

SECRET = "handler-secret-0123456789abcdef0123456789abcdef"
OTHER_SECRET = "another-secret-0123456789abcdef0123456789abcdef"
METHOD_ARN = "arn:aws:execute-api:eu-west-1:123456789012:abcdef1234/prod/$connect"
AUTH_ENV = (*AUTH_VARIABLES, "POWERTOOLS_LOGGER_LOG_EVENT")


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def public_pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return (
        rsa_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A cold container: no auth variables, settings not yet read. Tests set what they need."""
    for name in AUTH_ENV:
        monkeypatch.delenv(name, raising=False)
    reset_runtime()
    yield monkeypatch
    reset_runtime()


@pytest.fixture
def hs256(env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    env.setenv("AUTH_JWT_SECRET", SECRET)
    return env


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Everything the Powertools logger writes during the test."""
    buffer = io.StringIO()
    handler = runtime_module.logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def token(key: Any = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": "u_123", "exp": int(time.time()) + 300, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm)


def invoke(token_value: str | None) -> dict[str, Any]:
    event = load_event("authorizer_request", queryStringParameters={"token": token_value})
    return authorizer.handler(event, LambdaContext(function_name="wsfanout-authorizer"))


def assert_allowed(response: dict[str, Any], user: str, can_broadcast: bool) -> None:
    context = {"userId": user, "canBroadcast": can_broadcast}
    assert response == policy("Allow", METHOD_ARN, context, principal=user)


def assert_denied(response: dict[str, Any]) -> None:
    assert response == policy("Deny", METHOD_ARN, principal="anonymous")


# --- allowed --------------------------------------------------------------------------------


def test_allow_hs256(hs256: pytest.MonkeyPatch, logs: io.StringIO) -> None:
    response = invoke(token())
    assert_allowed(response, "u_123", can_broadcast=False)
    (line,) = lines(logs)
    assert line["level"] == "INFO"
    assert line["message"] == "connection allowed"
    assert line["user_id"] == "u_123"
    assert line["connection_id"] == "L0SM9cOFvHcCIhw="
    assert line["correlation_id"] == "L0SM9H1nDoEFpHQ="  # requestContext.requestId
    assert line["function_name"] == "wsfanout-authorizer"


def test_allow_rs256(env: pytest.MonkeyPatch, rsa_key: rsa.RSAPrivateKey, public_pem: str) -> None:
    env.setenv("AUTH_JWT_PUBLIC_KEY", public_pem)
    assert_allowed(invoke(token(rsa_key, "RS256", sub="u_rsa")), "u_rsa", can_broadcast=False)


def test_resource_is_the_events_method_arn(hs256: pytest.MonkeyPatch) -> None:
    arn = "arn:aws:execute-api:us-east-1:210987654321:zyxw987654/staging/$connect"
    event = load_event(
        "authorizer_request", methodArn=arn, queryStringParameters={"token": token()}
    )
    response = authorizer.handler(event, LambdaContext(function_name="wsfanout-authorizer"))
    assert response["policyDocument"]["Statement"][0]["Resource"] == arn
    assert response["policyDocument"]["Statement"][0]["Effect"] == "Allow"


@pytest.mark.parametrize(
    "claims",
    [
        {"broadcast": True},
        {"scope": "read broadcast"},
        {"scp": ["broadcast"]},
        {"scp": "broadcast"},
    ],
)
def test_broadcast_claim_reaches_the_context(
    hs256: pytest.MonkeyPatch, claims: dict[str, Any]
) -> None:
    assert_allowed(invoke(token(**claims)), "u_123", can_broadcast=True)


def test_audience_and_issuer_from_the_environment(hs256: pytest.MonkeyPatch) -> None:
    hs256.setenv("AUTH_JWT_AUDIENCE", "wsfanout")
    hs256.setenv("AUTH_JWT_ISSUER", "https://issuer.example")
    good = token(aud="wsfanout", iss="https://issuer.example")
    assert_allowed(invoke(good), "u_123", can_broadcast=False)


# --- denied ---------------------------------------------------------------------------------


DENIALS: list[tuple[str, dict[str, str], Callable[[], str], str]] = [
    ("expired", {}, lambda: token(exp=int(time.time()) - 3600), "token expired"),
    (
        "wrong audience",
        {"AUTH_JWT_AUDIENCE": "wsfanout"},
        lambda: token(aud="other"),
        "wrong audience",
    ),
    (
        "wrong issuer",
        {"AUTH_JWT_ISSUER": "https://issuer.example"},
        lambda: token(iss="https://evil.example"),
        "wrong issuer",
    ),
    ("other secret", {}, lambda: token(OTHER_SECRET), "bad signature"),
    ("missing sub", {}, lambda: token(sub=None), "missing claim 'sub'"),
    (
        "alg none",
        {},
        lambda: jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, "", "none"),  # "" = no key
        "algorithm not allowed",
    ),
    ("garbage", {}, lambda: "definitely-not-a-jwt", "malformed token"),
]


@pytest.mark.parametrize(
    ("extra_env", "make", "reason"),
    [pytest.param(e, m, r, id=i) for i, e, m, r in DENIALS],
)
def test_deny(
    hs256: pytest.MonkeyPatch,
    logs: io.StringIO,
    extra_env: dict[str, str],
    make: Callable[[], str],
    reason: str,
) -> None:
    for name, value in extra_env.items():
        hs256.setenv(name, value)
    bad = make()
    assert_denied(invoke(bad))
    output = logs.getvalue()
    assert bad not in output
    (line,) = lines(logs)
    assert line["level"] == "WARNING"
    assert line["message"] == "connection denied"
    assert line["reason"] == reason
    assert line["connection_id"] == "L0SM9cOFvHcCIhw="
    assert line["source_ip"] == "203.0.113.42"


def test_deny_other_rsa_key(env: pytest.MonkeyPatch, public_pem: str, logs: io.StringIO) -> None:
    env.setenv("AUTH_JWT_PUBLIC_KEY", public_pem)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_denied(invoke(token(other, "RS256")))
    assert lines(logs)[0]["reason"] == "bad signature"


def test_deny_hs256_when_only_rs256_is_configured(
    env: pytest.MonkeyPatch, public_pem: str, logs: io.StringIO
) -> None:
    env.setenv("AUTH_JWT_PUBLIC_KEY", public_pem)
    forged = forge_hs256(public_pem.encode())  # HMAC keyed with the public PEM
    assert_denied(invoke(forged))
    assert lines(logs)[0]["reason"] == "algorithm not allowed"
    assert forged not in logs.getvalue()


@pytest.mark.parametrize("query", [None, {}, {"token": ""}], ids=["null", "empty", "blank"])
def test_deny_missing_token(
    hs256: pytest.MonkeyPatch, logs: io.StringIO, query: dict[str, str] | None
) -> None:
    event = load_event("authorizer_request")
    event["queryStringParameters"] = query
    del event["multiValueQueryStringParameters"]
    assert_denied(authorizer.handler(event, LambdaContext(function_name="wsfanout-authorizer")))
    assert lines(logs)[0]["reason"] == "missing token"


def test_misconfigured_authorizer_fails_closed(env: pytest.MonkeyPatch, logs: io.StringIO) -> None:
    good_elsewhere = token()
    assert_denied(invoke(good_elsewhere))
    (line,) = lines(logs)
    assert line["level"] == "ERROR"
    assert line["message"] == "authorizer misconfigured; denying"
    assert "AUTH_JWT_SECRET" in line["reason"]
    assert good_elsewhere not in logs.getvalue()


def test_event_is_never_logged_even_when_asked(
    hs256: pytest.MonkeyPatch, logs: io.StringIO
) -> None:
    """The event carries the token; POWERTOOLS_LOGGER_LOG_EVENT must not make it leak.

    Powertools reads that variable when the handler is decorated, so import the module again
    with it set (as a cold container would), then restore the module.
    """
    hs256.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    try:
        importlib.reload(authorizer)
        secret_token = token(exp=int(time.time()) - 3600)
        assert_denied(invoke(secret_token))
        assert secret_token not in logs.getvalue()
        assert [line["message"] for line in lines(logs)] == ["connection denied"]
    finally:
        hs256.delenv("POWERTOOLS_LOGGER_LOG_EVENT")
        importlib.reload(authorizer)


# --- settings -------------------------------------------------------------------------------


def test_settings_are_built_once_per_container(hs256: pytest.MonkeyPatch) -> None:
    first = runtime().settings
    hs256.setenv("AUTH_JWT_SECRET", OTHER_SECRET)
    assert_allowed(invoke(token()), "u_123", can_broadcast=False)  # still the first secret
    assert runtime().settings is first
    reset_runtime()
    assert_denied(invoke(token()))


def test_a_new_runtime_reads_the_new_secret(hs256: pytest.MonkeyPatch) -> None:
    """One cache: the authorizer's settings are the runtime's, so a new container (a second
    local stack, with a new secret) refuses tokens signed with the old one."""
    assert_allowed(invoke(token(SECRET)), "u_123", can_broadcast=False)
    reset_runtime()
    hs256.setenv("AUTH_JWT_SECRET", OTHER_SECRET)
    assert_denied(invoke(token(SECRET)))
    assert_allowed(invoke(token(OTHER_SECRET)), "u_123", can_broadcast=False)


def test_a_second_local_stack_reads_its_own_secret(hs256: pytest.MonkeyPatch) -> None:
    """Each local stack hosts its containers anew, and the authorizer's settings with them."""
    with hosting():
        assert_allowed(invoke(token(SECRET)), "u_123", can_broadcast=False)
    hs256.setenv("AUTH_JWT_SECRET", OTHER_SECRET)
    with hosting():
        assert_denied(invoke(token(SECRET)))
        assert_allowed(invoke(token(OTHER_SECRET)), "u_123", can_broadcast=False)


def test_a_cold_start_loads_no_aws_sdk_and_no_http_client() -> None:
    """The authorizer makes no AWS calls; its cold start must not pay for aioboto3 or aiohttp
    (the runtime imports the clients only when a handler first asks for them)."""
    probe = (
        "import sys, wsfanout.handlers.authorizer; "
        "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    loaded = subprocess.run(  # noqa: S603  (our interpreter, our probe)
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert "wsfanout" in loaded
    assert not {"aioboto3", "aiobotocore", "aiohttp"} & set(loaded)
