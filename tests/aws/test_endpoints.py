"""Where a connection's management API is, and which region signs for it."""

from __future__ import annotations

import pytest

from wsfanout.aws.account import REGION
from wsfanout.aws.endpoints import (
    DEFAULT_REGION,
    STAGE_NAME,
    endpoint_for,
    region_of_endpoint,
    resolve_endpoint,
)
from wsfanout.exceptions import ConfigurationError


@pytest.mark.parametrize(
    ("endpoint", "default", "expected"),
    [
        ("https://abc123.execute-api.eu-west-2.amazonaws.com/prod", None, "eu-west-2"),
        ("https://abc123.execute-api.eu-west-2.amazonaws.com/prod", "us-west-1", "eu-west-2"),
        ("https://abc123.execute-api.cn-north-1.amazonaws.com.cn/prod", None, "cn-north-1"),
        ("https://ws.example.com/prod", "ap-southeast-2", "ap-southeast-2"),
        ("https://ws.example.com/prod", None, DEFAULT_REGION),
        ("http://127.0.0.1:8080/test", "", REGION),  # the local stack's account
        ("http://localhost:8080/test", None, REGION),
        ("http://127.0.0.1:8080/test", "eu-west-1", "eu-west-1"),
    ],
)
def test_region_of_endpoint(endpoint: str, default: str | None, expected: str) -> None:
    assert region_of_endpoint(endpoint, default) == expected


@pytest.mark.parametrize(
    ("domain", "stage", "expected"),
    [
        (
            "abc123.execute-api.eu-west-2.amazonaws.com",
            "prod",
            "https://abc123.execute-api.eu-west-2.amazonaws.com/prod",
        ),
        (
            "abc123.execute-api.cn-north-1.amazonaws.com.cn",
            "prod",
            "https://abc123.execute-api.cn-north-1.amazonaws.com.cn/prod",
        ),
        ("ws.example.com", "prod", "https://ws.example.com"),  # a custom domain maps the root
        ("ws.example.com/", "prod", "https://ws.example.com"),
        ("127.0.0.1:8080", "test", "http://127.0.0.1:8080/test"),
        ("localhost:9000", "dev", "http://localhost:9000/dev"),
        ("[::1]", "dev", "http://[::1]/dev"),
    ],
)
def test_endpoint_for(domain: str, stage: str, expected: str) -> None:
    assert endpoint_for(domain, stage) == expected


def test_the_connections_endpoint_wins_over_the_default() -> None:
    assert resolve_endpoint("https://a.example/prod/", "https://b.example/x") == (
        "https://a.example/prod"
    )
    assert resolve_endpoint(None, "https://b.example/x") == "https://b.example/x"
    with pytest.raises(ConfigurationError, match="APIGW_MANAGEMENT_ENDPOINT"):
        resolve_endpoint(None, None)


@pytest.mark.parametrize("stage", ["prod", "dev_2", "a-b", "x" * 128])
def test_stage_names_api_gateway_accepts(stage: str) -> None:
    assert STAGE_NAME.fullmatch(stage)


@pytest.mark.parametrize("stage", ["", "x" * 129, "pr od", "prod/1", "préprod", "a.b"])
def test_stage_names_api_gateway_refuses(stage: str) -> None:
    assert not STAGE_NAME.fullmatch(stage)
