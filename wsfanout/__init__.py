"""wsfanout: WebSockets on AWS API Gateway + Lambda, with a fast and bounded fan-out engine.

The few names most users need are re-exported here; everything else lives in its module.
"""

from __future__ import annotations

from .clients import Clients
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
from .fanout import Fanout
from .gateway import ManagementGateway
from .interfaces import Gateway, Outcome, Recipient, RecipientSource
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
