"""The API Gateway WebSocket events an app is invoked with, as pydantic models.

The fields of Powertools' parser models of the three event types (same names, aliases and
types), plus what they leave out: the authorizer's output (``requestContext.authorizer``,
forwarded by API Gateway to every route of the connection, its context values as strings) and
the ``$connect`` query string. Written here rather than subclassed: importing Powertools'
models imports its parser, and building them at import costs every cold start of a route
function what this module's deferred models cost only for the event type an invocation serves.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.networks import IPvAnyNetwork

from ..aws.endpoints import endpoint_for

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = [
    "Authorizer",
    "ConnectContext",
    "ConnectEvent",
    "DisconnectContext",
    "DisconnectEvent",
    "Identity",
    "MessageContext",
    "MessageEvent",
    "RequestContext",
    "deadline_of",
    "endpoint_of",
]

# Every model here builds its validator on its first event (``defer_build``), so a cold start
# pays for the one event type it serves, not all three.
_DEFERRED = ConfigDict(defer_build=True)


class Authorizer(BaseModel):
    """``requestContext.authorizer``: what our $connect authorizer returned, as API Gateway
    forwards it to every route of the connection (context values may arrive as strings)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow", defer_build=True)

    principal_id: str | None = Field(default=None, alias="principalId")
    user_id: str | None = Field(default=None, alias="userId")
    can_broadcast: bool = Field(default=False, alias="canBroadcast")

    @property
    def user(self) -> str | None:
        return self.user_id or self.principal_id


class Identity(BaseModel):
    """``requestContext.identity``: where the client connected from."""

    model_config = _DEFERRED

    source_ip: IPvAnyNetwork = Field(alias="sourceIp")
    user_agent: str | None = Field(None, alias="userAgent")


class RequestContext(BaseModel):
    """What the request context of every WebSocket event holds."""

    model_config = _DEFERRED

    extended_request_id: str = Field(alias="extendedRequestId")
    request_time: str = Field(alias="requestTime")
    stage: str = Field(alias="stage")
    connected_at: datetime = Field(alias="connectedAt")
    request_time_epoch: datetime = Field(alias="requestTimeEpoch")
    identity: Identity = Field(alias="identity")
    request_id: str = Field(alias="requestId")
    domain_name: str = Field(alias="domainName")
    connection_id: str = Field(alias="connectionId")
    api_id: str = Field(alias="apiId")
    authorizer: Authorizer | None = None


class ConnectContext(RequestContext):
    """The $connect request context with the authorizer's output."""

    route_key: Literal["$connect"] = Field(alias="routeKey")
    event_type: Literal["CONNECT"] = Field(alias="eventType")
    message_direction: Literal["IN"] = Field(alias="messageDirection")


class MessageContext(RequestContext):
    """A message's request context with the authorizer's output."""

    route_key: str = Field(alias="routeKey")
    message_id: str = Field(alias="messageId")
    event_type: Literal["MESSAGE"] = Field(alias="eventType")
    message_direction: Literal["IN", "OUT"] = Field(alias="messageDirection")


class DisconnectContext(RequestContext):
    """A ``$disconnect`` request context with the authorizer's output."""

    route_key: Literal["$disconnect"] = Field(alias="routeKey")
    disconnect_status_code: int = Field(alias="disconnectStatusCode")
    event_type: Literal["DISCONNECT"] = Field(alias="eventType")
    message_direction: Literal["IN"] = Field(alias="messageDirection")
    disconnect_reason: str = Field(alias="disconnectReason")


class ConnectEvent(BaseModel):
    """A $connect event, with its query string."""

    model_config = _DEFERRED

    headers: dict[str, str] = Field(alias="headers")
    multi_value_headers: dict[str, list[str]] = Field(alias="multiValueHeaders")
    request_context: ConnectContext = Field(alias="requestContext")
    is_base64_encoded: bool = Field(alias="isBase64Encoded")
    query_string_parameters: dict[str, str] | None = Field(
        default=None, alias="queryStringParameters"
    )


class MessageEvent(BaseModel):
    """A message event: a frame a client sent."""

    model_config = _DEFERRED

    request_context: MessageContext = Field(alias="requestContext")
    is_base64_encoded: bool = Field(alias="isBase64Encoded")
    body: str | None = Field(None, alias="body")


class DisconnectEvent(BaseModel):
    """A ``$disconnect`` event."""

    model_config = _DEFERRED

    headers: dict[str, str] = Field(alias="headers")
    multi_value_headers: dict[str, list[str]] = Field(alias="multiValueHeaders")
    request_context: DisconnectContext = Field(alias="requestContext")
    is_base64_encoded: bool = Field(alias="isBase64Encoded")


def endpoint_of(settings: Settings, context: RequestContext) -> str:
    """The management endpoint of the event's connection: the configured one, else the one
    API Gateway serves the event's ``domainName`` and ``stage`` on."""
    return settings.apigw_management_endpoint or endpoint_for(context.domain_name, context.stage)


def deadline_of(lambda_context: Any, margin_s: float) -> float | None:
    """A :func:`time.monotonic` deadline ``margin_s`` before the invocation would time out
    (``None`` for a context that does not say), so what runs inline can stop in time."""
    remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    seconds = float(remaining()) / 1000
    return time.monotonic() + max(0.0, seconds - margin_s)
