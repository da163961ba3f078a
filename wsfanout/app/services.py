"""What an app runs on: the registry, the management API, the engine and the job queue.

On Lambda and behind ``async with app:`` these are :class:`~wsfanout.aws.clients.Clients` (DynamoDB,
API Gateway, SQS); in an app's tests they are :class:`wsfanout.testing.MemoryServices`, so the same
app code runs in memory, with no moto and no sockets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..core.fanout import Fanout
    from ..core.interfaces import (
        ConnectionManager,
        ConnectionStore,
        Gateway,
        HistoryStore,
        JobSink,
    )
    from ..settings import Settings

__all__ = ["Services"]


class Services(Protocol):
    """The parts an app's context calls; each is built on first use and then shared."""

    settings: Settings

    async def registry(self) -> ConnectionStore:
        """Connections, their attributes and room memberships."""
        ...

    async def sender(self) -> Gateway:
        """What posts one frame to one connection."""
        ...

    async def gateway(self) -> ConnectionManager:
        """The management API's other calls (closing a connection)."""
        ...

    async def fanout(self) -> Fanout:
        """The engine, over this registry and sender."""
        ...

    async def job_queue(self) -> JobSink:
        """Where broadcast jobs go (rooms, everyone, and inline sends that ran out of time)."""
        ...

    async def history(self) -> HistoryStore:
        """Durable rooms' sequence numbers and bounded history."""
        ...
