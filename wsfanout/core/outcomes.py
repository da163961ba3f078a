"""What one PostToConnection attempt came to, and how an answer is classified.

The classification is the management API's error table in ``docs/contracts.md``: by the error
type (``x-amzn-ErrorType``) where it is known, by the status code otherwise. Both transports and
the local emulator's tests rely on this one table.
"""

from __future__ import annotations

import enum

__all__ = ["Outcome", "classify"]


class Outcome(enum.Enum):
    """What one PostToConnection attempt came to, as docs/contracts.md's error table has it."""

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


_GONE_TYPES = frozenset({"GoneException"})
_THROTTLE_TYPES = frozenset({"LimitExceededException", "TooManyRequestsException"})
_FORBIDDEN_TYPES = frozenset({"ForbiddenException", "AccessDeniedException"})
_TOO_LARGE_TYPES = frozenset({"PayloadTooLargeException"})


def classify(status: int, error_type: str | None = None) -> Outcome:
    """Map a management API answer to an :class:`Outcome` (the error table of docs/contracts.md).

    The error type (``x-amzn-ErrorType``) decides where it is known; the status code otherwise,
    so a proxy's bare 502 still counts as transient.
    """
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if error_type in _GONE_TYPES or status == 410:
        return Outcome.GONE
    if error_type in _THROTTLE_TYPES or status == 429:
        return Outcome.THROTTLED
    if error_type in _FORBIDDEN_TYPES or status == 403:
        return Outcome.FORBIDDEN
    if error_type in _TOO_LARGE_TYPES or status == 413:
        return Outcome.TOO_LARGE
    if status >= 500:
        return Outcome.SERVER_ERROR
    return Outcome.REJECTED
