"""Typed settings: read from the environment once, overridden by arguments given in code."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from wsfanout.exceptions import ConfigurationError
from wsfanout.settings import Settings

QUEUE_URL = "https://sqs.eu-west-2.amazonaws.com/123456789012/broadcast"
ENDPOINT = "https://abc123.execute-api.eu-west-2.amazonaws.com/prod"


@pytest.fixture
def no_region(monkeypatch: pytest.MonkeyPatch) -> None:
    """The autouse ``aws_env`` fixture sets both region variables; some tests need neither."""
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)


@pytest.mark.usefixtures("no_region")
def test_defaults_without_environment() -> None:
    settings = Settings()
    assert settings.connections_table is None
    assert settings.broadcast_queue_url is None
    assert settings.apigw_management_endpoint is None
    assert settings.aws_region is None
    assert settings.connection_ttl_seconds == 2 * 3600 + 600
    assert settings.fanout_concurrency == 128
    assert settings.fanout_max_attempts == 5


def test_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTIONS_TABLE", "wsfanout-connections")
    monkeypatch.setenv("BROADCAST_QUEUE_URL", QUEUE_URL)
    monkeypatch.setenv("APIGW_MANAGEMENT_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("CONNECTION_TTL_SECONDS", "3600")
    monkeypatch.setenv("FANOUT_CONCURRENCY", "64")
    monkeypatch.setenv("FANOUT_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("FANOUT_BACKOFF_BASE_S", "0.1")
    monkeypatch.setenv("FANOUT_BACKOFF_MAX_S", "4")
    monkeypatch.setenv("FANOUT_REQUEST_TIMEOUT_S", "2.5")
    monkeypatch.setenv("REGISTRY_PAGE_SIZE", "250")
    settings = Settings()
    assert settings.connections_table == "wsfanout-connections"
    assert settings.broadcast_queue_url == QUEUE_URL
    assert settings.apigw_management_endpoint == ENDPOINT
    assert settings.connection_ttl_seconds == 3600
    assert settings.fanout_concurrency == 64
    assert settings.fanout_max_attempts == 3
    assert settings.fanout_backoff_base_s == 0.1
    assert settings.fanout_backoff_max_s == 4.0
    assert settings.fanout_request_timeout_s == 2.5
    assert settings.registry_page_size == 250


def test_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTIONS_TABLE", "from-env")
    monkeypatch.setenv("FANOUT_CONCURRENCY", "3")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    settings = Settings(
        connections_table="from-code", fanout_concurrency=7, aws_region="ap-south-1"
    )
    assert settings.connections_table == "from-code"
    assert settings.fanout_concurrency == 7
    assert settings.aws_region == "ap-south-1"


def test_unrelated_environment_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMETHING_ELSE", "x")
    monkeypatch.setenv("CONNECTIONS_TABLE", "t")
    assert Settings().connections_table == "t"


@pytest.mark.usefixtures("no_region")
@pytest.mark.parametrize("variable", ["AWS_REGION", "AWS_DEFAULT_REGION"])
def test_either_region_variable_sets_the_region(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "eu-west-2")
    assert Settings().aws_region == "eu-west-2"


@pytest.mark.usefixtures("no_region")
def test_aws_region_wins_over_aws_default_region(monkeypatch: pytest.MonkeyPatch) -> None:
    """The precedence every AWS SDK applies."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert Settings().aws_region == "eu-central-1"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FANOUT_CONCURRENCY", "0"),
        ("FANOUT_CONCURRENCY", "abc"),
        ("FANOUT_CONCURRENCY", "5000"),
        ("FANOUT_MAX_ATTEMPTS", "0"),
        ("FANOUT_BACKOFF_BASE_S", "-1"),
        ("FANOUT_BACKOFF_MAX_S", "0"),
        ("FANOUT_REQUEST_TIMEOUT_S", "soon"),
        ("CONNECTION_TTL_SECONDS", "0"),
        ("REGISTRY_PAGE_SIZE", "0"),
        ("PRESENCE_TIMEOUT_SECONDS", "0"),
        ("PRESENCE_TIMEOUT_SECONDS", "7201"),
        ("PRESENCE_TIMEOUT_SECONDS", "soon"),
    ],
)
def test_invalid_environment_values_are_rejected(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable.lower()):
        Settings()


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Settings(fanout_concurrency=0)


def test_settings_are_frozen() -> None:
    settings = Settings(connections_table="t")
    with pytest.raises(ValidationError):
        settings.connections_table = "other"  # type: ignore[misc]


def test_require_table_returns_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTIONS_TABLE", "wsfanout-connections")
    assert Settings().require_table() == "wsfanout-connections"


@pytest.mark.parametrize("value", [None, ""])
def test_require_table_names_the_variable(value: str | None) -> None:
    with pytest.raises(ConfigurationError, match="CONNECTIONS_TABLE"):
        Settings(connections_table=value).require_table()


def test_require_endpoint_returns_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APIGW_MANAGEMENT_ENDPOINT", ENDPOINT)
    assert Settings().require_endpoint() == ENDPOINT


@pytest.mark.parametrize("value", [None, ""])
def test_require_endpoint_names_the_variable(value: str | None) -> None:
    with pytest.raises(ConfigurationError, match="APIGW_MANAGEMENT_ENDPOINT"):
        Settings(apigw_management_endpoint=value).require_endpoint()


def test_the_dead_letter_queue_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().broadcast_dlq_url is None  # then `wsfanout dlq` reads the RedrivePolicy
    monkeypatch.setenv("BROADCAST_DLQ_URL", QUEUE_URL + "-dlq")
    assert Settings().broadcast_dlq_url == QUEUE_URL + "-dlq"


def test_presence_timeout_is_the_idle_timeout_plus_a_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PRESENCE_TIMEOUT_SECONDS", raising=False)
    assert Settings().presence_timeout_seconds == 660
    monkeypatch.setenv("PRESENCE_TIMEOUT_SECONDS", "30")
    assert Settings().presence_timeout_seconds == 30
