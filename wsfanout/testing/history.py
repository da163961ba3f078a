"""Durable rooms' history in memory, with the rules of :mod:`wsfanout.core.history`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from pydantic import JsonValue

from ..core.history import HistoryBounds, Replay, StoredMessage, replay_of

__all__ = ["MemoryHistory"]


class MemoryHistory:
    """A :class:`~wsfanout.core.interfaces.HistoryStore` in memory. ``clock`` (epoch seconds)
    may be a test's own, to age messages past the time bound without waiting; ``messages``
    holds every room's stored messages by ``seq`` (expired ones included, as TTL is lazy)."""

    def __init__(
        self, bounds: HistoryBounds | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.bounds = bounds or HistoryBounds()
        self.clock = clock
        self.counters: dict[str, int] = {}
        self.messages: dict[str, dict[int, StoredMessage]] = {}

    async def append(
        self, room: str, frame: Mapping[str, JsonValue], sender: Mapping[str, str] | None
    ) -> int:
        """Take the room's next ``seq`` and store the message under it."""
        seq = self.counters[room] = self.counters.get(room, 0) + 1
        message = StoredMessage(seq, dict(frame), self.clock(), dict(sender) if sender else None)
        self.messages.setdefault(room, {})[seq] = message
        return seq

    async def latest(self, room: str) -> int:
        """The room's newest ``seq`` (0 when nothing was sent to it)."""
        return self.counters.get(room, 0)

    async def since(self, room: str, since: int) -> Replay:
        """What a resume from ``since`` gets."""
        latest = await self.latest(room)
        window = self.bounds.window(latest, since)
        kept = self.messages.get(room, {})
        stored = (
            []
            if window is None
            else [kept[s] for s in range(window[0], window[1] + 1) if s in kept]
        )
        return replay_of(latest, since, stored, self.bounds, self.clock())
