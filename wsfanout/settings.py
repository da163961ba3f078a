"""Typed settings, read once from the environment.

This is the only module that reads configuration from the environment. Arguments passed in code
override it: ``Settings(connections_table="t")`` wins over ``CONNECTIONS_TABLE``. Local endpoints
(moto, the emulator) are *not* settings here: botocore reads its own ``AWS_ENDPOINT_URL`` /
``AWS_ENDPOINT_URL_DYNAMODB`` / ``AWS_ENDPOINT_URL_SQS`` variables, so every AWS tool agrees.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .core.history import HistoryBounds
from .exceptions import ConfigurationError

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Configuration of wsfanout; each field maps to the upper-case environment variable.

    :raises pydantic.ValidationError: on construction when a value is out of its bounds, of the
        wrong type, or ``APIGW_MANAGEMENT_ENDPOINT`` is not an http(s) URL.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    connections_table: str | None = Field(
        default=None, description="DynamoDB table holding the connection registry."
    )
    broadcast_queue_url: str | None = Field(
        default=None, description="SQS queue that carries broadcast jobs."
    )
    broadcast_dlq_url: str | None = Field(
        default=None,
        description="The broadcast queue's dead-letter queue (wsfanout dlq); when unset, read "
        "from the broadcast queue's RedrivePolicy.",
    )
    apigw_management_endpoint: str | None = Field(
        default=None,
        description="https://{domain}/{stage}; when unset it is derived from each route event.",
    )
    aws_region: str | None = Field(
        default=None,
        validation_alias=AliasChoices("aws_region", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    connection_ttl_seconds: int = Field(
        default=2 * 3600 + 600,
        gt=0,
        description="TTL of registry items; API Gateway closes connections after 2 hours anyway.",
    )
    fanout_concurrency: int = Field(default=128, ge=1, le=4096)
    fanout_max_attempts: int = Field(default=5, ge=1, le=20)
    fanout_backoff_base_s: float = Field(default=0.05, gt=0)
    fanout_backoff_max_s: float = Field(default=2.0, gt=0)
    fanout_request_timeout_s: float = Field(default=10.0, gt=0)
    aws_ca_bundle: str | None = Field(
        default=None,
        validation_alias=AliasChoices("aws_ca_bundle", "AWS_CA_BUNDLE"),
        description="PEM file of the certificates HTTPS endpoints are verified against; "
        "botocore's own variable, so both transports and every AWS client trust the same.",
    )
    fanout_transport: Literal["lean", "raw", "botocore"] = Field(
        default="lean",
        description="'lean': signed aiohttp posts (fast); 'raw': the same over bare asyncio "
        "HTTP/1.1 connections (faster, asyncio only); 'botocore': the aiobotocore client.",
    )
    registry_page_size: int = Field(default=1000, ge=1, le=10000)

    # Durable rooms (docs/contracts.md, "Replay")
    room_history_messages: int = Field(
        default=100, ge=1, le=10000, description="Messages of a durable room kept for replay."
    )
    room_history_seconds: int = Field(
        default=3600, gt=0, description="Longest a durable room's message is kept for replay."
    )

    # Presence (docs/contracts.md, "Presence")
    presence_timeout_seconds: int = Field(
        default=660,
        ge=1,
        le=7200,
        description="A room member counts as present while its lastSeen (or connectedAt) is "
        "at most this old: API Gateway's 10-minute idle timeout plus a minute, so a connection "
        "whose $disconnect was lost drops out within it. Frames refresh lastSeen once it is a "
        "quarter of this old. At most API Gateway's 2-hour connection lifetime.",
    )

    # Broadcast jobs (the SQS worker)
    broadcast_segments: int = Field(
        default=4, ge=1, le=1000, description="Parallel-scan shards an 'all' job is split into."
    )
    worker_deadline_margin_s: float = Field(
        default=5.0,
        ge=0,
        description="Stop taking connections this long before the Lambda would time out, to "
        "finish sends in flight, write the checkpoint and enqueue the continuation.",
    )
    job_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)

    # Who may connect and broadcast (the $connect authorizer and the route handler)
    auth_jwt_secret: SecretStr | None = Field(default=None, description="HS256 shared secret.")
    auth_jwt_public_key: str | None = Field(default=None, description="RS256 public key (PEM).")
    auth_jwt_issuer: str | None = None
    auth_jwt_audience: str | None = None
    auth_broadcast_claim: str = Field(
        default="broadcast",
        description="A true boolean claim of this name, or this scope in 'scope'/'scp', lets a "
        "user broadcast to everyone.",
    )
    auth_required: bool = Field(
        default=False, description="Refuse $connect (401) when no authorizer identified a user."
    )
    broadcast_allowed_by_default: bool = Field(
        default=False, description="Let connections without the broadcast claim broadcast."
    )

    @field_validator("apigw_management_endpoint")
    @classmethod
    def _endpoint_is_a_url(cls, value: str | None) -> str | None:
        if not value:
            return None  # unset or empty: derived from each route event instead
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(
                f"must be an http(s) URL such as https://{{domain}}/{{stage}}: {value!r}"
            )
        return value.rstrip("/")

    def history_bounds(self) -> HistoryBounds:
        """What durable rooms keep: ``ROOM_HISTORY_MESSAGES`` and ``ROOM_HISTORY_SECONDS``."""
        return HistoryBounds(self.room_history_messages, self.room_history_seconds)

    def require_table(self) -> str:
        """Return the registry table name.

        :raises ConfigurationError: when no table is configured, saying how to configure one.
        """
        if not self.connections_table:
            raise ConfigurationError("no registry table: set CONNECTIONS_TABLE (or --table)")
        return self.connections_table

    def require_endpoint(self) -> str:
        """Return the management endpoint.

        :raises ConfigurationError: when no endpoint is configured, saying how to configure one.
        """
        if not self.apigw_management_endpoint:
            raise ConfigurationError(
                "no management endpoint: set APIGW_MANAGEMENT_ENDPOINT (or --endpoint)"
            )
        return self.apigw_management_endpoint
