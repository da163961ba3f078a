"""wsfanout: WebSockets on AWS API Gateway + Lambda, with a fast and bounded fan-out engine.

The few names most users need are re-exported here; everything else lives in its module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .exceptions import (
    ConfigurationError,
    ConnectionExistsError,
    ConnectionNotFoundError,
    ConnectionRefused,
    DeliveryError,
    ForbiddenError,
    InvalidInputError,
    PayloadTooLargeError,
    RegistryError,
    WsFanoutError,
)

if TYPE_CHECKING:  # the names below load on first use; see __getattr__
    from .app import App
    from .aws.clients import Clients
    from .aws.gateway import ManagementGateway
    from .aws.lean import LeanGateway
    from .aws.registry import Registry
    from .core.fanout import Fanout
    from .core.interfaces import Gateway, Recipient, RecipientSource
    from .core.models import (
        AllTarget,
        BroadcastJob,
        Connection,
        ConnectionsTarget,
        Cursor,
        FanoutReport,
        RoomTarget,
        Target,
        UsersTarget,
    )
    from .core.outcomes import Outcome
    from .core.pacing import RetryPolicy
    from .settings import Settings

# Import on first use: a Lambda handler that needs only the exceptions or the models must not
# pay for aioboto3 and aiohttp at cold start.
_LAZY: dict[str, str] = {
    "AllTarget": ".core.models",
    "App": ".app",
    "BroadcastJob": ".core.models",
    "Clients": ".aws.clients",
    "Connection": ".core.models",
    "ConnectionsTarget": ".core.models",
    "Cursor": ".core.models",
    "Fanout": ".core.fanout",
    "FanoutReport": ".core.models",
    "Gateway": ".core.interfaces",
    "LeanGateway": ".aws.lean",
    "ManagementGateway": ".aws.gateway",
    "Outcome": ".core.outcomes",
    "Recipient": ".core.interfaces",
    "RecipientSource": ".core.interfaces",
    "Registry": ".aws.registry",
    "RetryPolicy": ".core.pacing",
    "RoomTarget": ".core.models",
    "Settings": ".settings",
    "Target": ".core.models",
    "UsersTarget": ".core.models",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        # Read on first use: finding the distribution's metadata costs every cold start of a
        # handler that never asks for the version.
        from importlib import metadata  # noqa: PLC0415  (see above)

        version = metadata.version("wsfanout")
        globals()[name] = version
        return version
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wsfanout' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AllTarget",
    "App",
    "BroadcastJob",
    "Clients",
    "ConfigurationError",
    "Connection",
    "ConnectionExistsError",
    "ConnectionNotFoundError",
    "ConnectionRefused",
    "ConnectionsTarget",
    "Cursor",
    "DeliveryError",
    "Fanout",
    "FanoutReport",
    "ForbiddenError",
    "Gateway",
    "InvalidInputError",
    "LeanGateway",
    "ManagementGateway",
    "Outcome",
    "PayloadTooLargeError",
    "Recipient",
    "RecipientSource",
    "Registry",
    "RegistryError",
    "RetryPolicy",
    "RoomTarget",
    "Settings",
    "Target",
    "UsersTarget",
    "WsFanoutError",
    "__version__",
]
