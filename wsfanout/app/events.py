"""The API Gateway WebSocket events an app is invoked with, as pydantic models.

Powertools' models of the three event types, plus what they leave out: the authorizer's output
(``requestContext.authorizer``, forwarded by API Gateway to every route of the connection, its
context values as strings) and the ``$connect`` query string.

Powertools comes with the ``[lambda]`` extra: the App imports this module on its Lambda side
only, and without the extra it raises a :class:`~wsfanout.exceptions.ConfigurationError` naming
it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ..aws.endpoints import endpoint_for
from ..extras import missing_extra

try:
    from aws_lambda_powertools.utilities.parser.models import (
        APIGatewayWebSocketConnectEventModel,
        APIGatewayWebSocketConnectEventRequestContext,
        APIGatewayWebSocketDisconnectEventModel,
        APIGatewayWebSocketDisconnectEventRequestContext,
        APIGatewayWebSocketMessageEventModel,
        APIGatewayWebSocketMessageEventRequestContext,
    )
except ModuleNotFoundError as exc:
    raise missing_extra("lambda", exc) from None

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parser.models import (
        APIGatewayWebSocketEventRequestContextBase,
    )

    from ..settings import Settings

__all__ = [
    "Authorizer",
    "ConnectContext",
    "ConnectEvent",
    "DisconnectContext",
    "DisconnectEvent",
    "MessageContext",
    "MessageEvent",
    "deadline_of",
    "endpoint_of",
]


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


class _WithAuthorizer(BaseModel):
    # Every model here builds its validator on its first event (``defer_build``), so a cold
    # start pays for the one event type it serves, not all three.
    model_config = ConfigDict(defer_build=True)

    authorizer: Authorizer | None = None


class ConnectContext(APIGatewayWebSocketConnectEventRequestContext, _WithAuthorizer):
    """The $connect request context with the authorizer's output."""


class MessageContext(APIGatewayWebSocketMessageEventRequestContext, _WithAuthorizer):
    """A message's request context with the authorizer's output."""


class ConnectEvent(APIGatewayWebSocketConnectEventModel):
    """Powertools' $connect model plus the fields it leaves out."""

    model_config = ConfigDict(defer_build=True)

    request_context: ConnectContext = Field(alias="requestContext")
    query_string_parameters: dict[str, str] | None = Field(
        default=None, alias="queryStringParameters"
    )


class MessageEvent(APIGatewayWebSocketMessageEventModel):
    """Powertools' message model plus the authorizer context."""

    model_config = ConfigDict(defer_build=True)

    request_context: MessageContext = Field(alias="requestContext")


class DisconnectContext(APIGatewayWebSocketDisconnectEventRequestContext, _WithAuthorizer):
    """A ``$disconnect`` request context with the authorizer's output."""


class DisconnectEvent(APIGatewayWebSocketDisconnectEventModel):
    """Powertools' ``$disconnect`` model plus the authorizer context."""

    model_config = ConfigDict(defer_build=True)

    request_context: DisconnectContext = Field(alias="requestContext")


def endpoint_of(settings: Settings, context: APIGatewayWebSocketEventRequestContextBase) -> str:
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
