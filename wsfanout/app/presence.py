"""Presence: who is in a room now, and the join/leave events of rooms that have it on.

A room's presence is read, not kept: its memberships (a GSI1 Query on the room, as a room send
reads them), then their connection items (BatchGetItem, 100 a call) for ``userId``,
``connectedAt`` and ``lastSeen``. A connection counts while it is *live*, its latest sign of
life (``max(lastSeen, connectedAt)``) no older than ``PRESENCE_TIMEOUT_SECONDS``: API Gateway
closes a connection that sent nothing for 10 minutes, so one whose ``$disconnect`` was lost
drops out within that bound rather than when the registry's ttl reaps it. A counter kept on
join and leave would drift with every lost ``$disconnect``; a read cannot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from ..core.models import RoomTarget

if TYPE_CHECKING:
    from ..core.interfaces import ConnectionStore
    from ..core.models import Connection

__all__ = ["Presence", "PresenceEvent", "is_live", "presence_of"]

PresenceEvent = Literal["join", "leave"]


@dataclass(frozen=True, slots=True)
class Presence:
    """Who is in ``room``: ``users`` maps each user id with a live connection in it to how
    many it has there, sorted by user id; ``connections`` counts every live member connection,
    those without a user id included."""

    room: str
    users: Mapping[str, int]
    connections: int


def is_live(connection: Connection, now: datetime, timeout_s: int) -> bool:
    """Whether ``connection`` showed a sign of life (``lastSeen`` or ``connectedAt``) within
    ``timeout_s`` of ``now``."""
    return connection.seen >= now - timedelta(seconds=timeout_s)


async def presence_of(registry: ConnectionStore, room: str, timeout_s: int) -> Presence:
    """The live members of ``room`` (see the module docstring): one GSI1 Query page per 1000
    members, then one BatchGetItem per 100 of them.

    :raises RegistryError: DynamoDB refused or could not be reached.
    """
    ids = [
        recipient.connection_id
        async for page in registry.pages(
            RoomTarget(room=room), segment=None, total_segments=None, cursor=None
        )
        for recipient in page
    ]
    stored = await registry.get_many(ids) if ids else {}
    now = datetime.now(UTC)
    live = [connection for connection in stored.values() if is_live(connection, now, timeout_s)]
    counts = Counter(connection.user_id for connection in live if connection.user_id)
    return Presence(room, dict(sorted(counts.items())), len(live))
