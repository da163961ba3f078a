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
    DeliveryError,
    ForbiddenError,
    InvalidInputError,
    PayloadTooLargeError,
    RegistryError,
    WsFanoutError,
)

if TYPE_CHECKING:  # the names below load on first use; see __getattr__
    from .clients import Clients
    from .fanout import Fanout
    from .gateway import ManagementGateway
    from .interfaces import (
        Gateway,
        Outcome,
        Recipient,
        RecipientSource,
    )
    from .lean import LeanGateway
    from .models import (
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
    from .registry import Registry
    from .settings import Settings
    from .throttle import RetryPolicy

# Import on first use: a Lambda handler that needs only the exceptions or the models must not
# pay for aioboto3 and aiohttp at cold start.
_LAZY: dict[str, str] = {
    "AllTarget": ".models",
    "BroadcastJob": ".models",
    "Clients": ".clients",
    "Connection": ".models",
    "ConnectionsTarget": ".models",
    "Cursor": ".models",
    "Fanout": ".fanout",
    "FanoutReport": ".models",
    "Gateway": ".interfaces",
    "LeanGateway": ".lean",
    "ManagementGateway": ".gateway",
    "Outcome": ".interfaces",
    "Recipient": ".interfaces",
    "RecipientSource": ".interfaces",
    "Registry": ".registry",
    "RetryPolicy": ".throttle",
    "RoomTarget": ".models",
    "Settings": ".settings",
    "Target": ".models",
    "UsersTarget": ".models",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wsfanout' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "AllTarget",
    "BroadcastJob",
    "Clients",
    "ConfigurationError",
    "Connection",
    "ConnectionExistsError",
    "ConnectionNotFoundError",
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
