"""The seams between the pure fan-out core and its AWS edges.

The engine talks to a :class:`RecipientSource` (the DynamoDB registry, or anything that can stream
connection ids) and a :class:`Gateway` (the management API over aiobotocore, a lean transport, or
a test double). Both are small protocols so the engine's decisions stay plain, typed code.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from .models import Cursor, Target

__all__ = ["Gateway", "Outcome", "Recipient", "RecipientSource"]


class Outcome(enum.Enum):
    """What one PostToConnection attempt came to, as DESIGN.md's error table classifies it."""

    DELIVERED = "delivered"
    GONE = "gone"  # 410: remove from the registry, never retry
    THROTTLED = "throttled"  # 429: retry, and slow the whole pool down
    SERVER_ERROR = "server_error"  # 5xx: retry with backoff
    NETWORK_ERROR = "network_error"  # timeout, reset, refused: retry with backoff
    FORBIDDEN = "forbidden"  # 403: wrong endpoint or credentials; abort the job
    TOO_LARGE = "payload_too_large"  # 413: the payload can never succeed; abort the job
    REJECTED = "rejected"  # any other 4xx: final for this connection

    @property
    def retryable(self) -> bool:
        """Whether another attempt at the same connection may succeed."""
        return self in _RETRYABLE


_RETRYABLE = frozenset({Outcome.THROTTLED, Outcome.SERVER_ERROR, Outcome.NETWORK_ERROR})


@dataclass(frozen=True, slots=True)
class Recipient:
    """One connection to send to, plus where a resumed run would continue after it.

    A plain slotted dataclass rather than a pydantic model: one is built per connection on the
    hot path, and it never crosses a trust boundary.
    """

    connection_id: str
    endpoint: str | None = None
    key: dict[str, str] | None = None  # the registry item's key (ExclusiveStartKey to resume)
    index: int = 0  # list offset (explicit ids) or user index (multi-user targets)

    def resume_cursor(self) -> Cursor:
        """The cursor from which a later run reaches exactly the recipients after this one."""
        if self.key is None:
            return Cursor(offset=self.index + 1)
        return Cursor(after=self.key, user=self.index)


class RecipientSource(Protocol):
    """Streams the connections of a target page by page, and forgets the ones that are gone."""

    def pages(
        self,
        target: Target,
        *,
        segment: int | None = None,
        total_segments: int | None = None,
        cursor: Cursor | None = None,
    ) -> AsyncIterator[Sequence[Recipient]]:
        """Yield pages of recipients in a stable order, starting after ``cursor``."""
        ...

    async def remove_gone(self, recipients: Sequence[Recipient]) -> int:
        """Forget connections that answered 410: their connection items and the items they were
        found through. Return how many items were deleted."""
        ...


class Gateway(Protocol):
    """Posts one frame to one connection and classifies the answer; never raises for HTTP errors."""

    @property
    def default_endpoint(self) -> str | None:
        """The endpoint used for connections that carry none (for messages and diagnostics)."""
        ...

    async def post(self, connection_id: str, data: bytes, endpoint: str | None = None) -> Outcome:
        """Send ``data`` to ``connection_id`` via ``endpoint`` (or the default endpoint)."""
        ...
