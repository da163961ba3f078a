"""A per-connection rate limit, as middleware: a token bucket for each connection's frames.

``app.middleware(RateLimit(rate=10, burst=20))``: a connection may send ``burst`` frames at once
and ``rate`` a second after that; a frame over the limit is answered with a ``rate_limited``
error frame and never reaches a route. Connecting and disconnecting are never limited.

The buckets live in the process, that is in one warm Lambda container. API Gateway may hand one
connection's frames to several containers at once, so on AWS the bound is per container (at most
``rate`` times the containers serving that connection); a limit that must hold exactly across
containers needs a shared counter (a registry write per frame), which costs more than most apps
want to pay for this. The local stack and the test client run one container per thread.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..exceptions import FrameError

if TYPE_CHECKING:
    from .context import Context
    from .routing import CallNext

__all__ = ["RateLimit"]


class RateLimit:
    """Middleware: ``rate`` frames a second per connection, ``burst`` at once.

    At most ``max_connections`` buckets are kept; the least recently used is forgotten first
    (a forgotten connection starts again with a full bucket, which errs on the side of the
    client rather than of the memory of a warm container).

    :raises ValueError: ``rate`` not positive, ``burst`` below 1.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_connections: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._max = max_connections
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # id -> tokens, when

    def allow(self, connection_id: str) -> bool:
        """Take one token from the connection's bucket; ``False`` when it is empty."""
        now = self._clock()
        tokens, then = self._buckets.pop(connection_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[connection_id] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return allowed

    async def __call__(self, ctx: Context, call_next: CallNext) -> Any:
        if ctx.event_type == "MESSAGE" and not self.allow(ctx.connection_id):
            raise FrameError("rate_limited", "too many frames; slow down")
        if ctx.event_type == "DISCONNECT":
            self._buckets.pop(ctx.connection_id, None)
        return await call_next(ctx)
