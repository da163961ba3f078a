"""The seams between the pure fan-out core and its AWS edges.

The engine talks to a :class:`RecipientSource` (the DynamoDB registry, or anything that can stream
connection ids) and a :class:`Gateway` (the management API over aiobotocore, a lean transport, or
a test double). Both are small protocols so the engine's decisions stay plain, typed code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pydantic import JsonValue

from .history import Replay
from .models import BroadcastJob, Connection, Cursor, FanoutReport, Target
from .outcomes import Outcome

if TYPE_CHECKING:
    from .jobs import Checkpoint, Claim, Step, Tally

__all__ = [
    "ConnectionManager",
    "ConnectionStore",
    "Gateway",
    "HistoryStore",
    "JobSink",
    "ProgressStore",
    "Recipient",
    "RecipientSource",
]


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
        segment: int | None,
        total_segments: int | None,
        cursor: Cursor | None,
    ) -> AsyncIterator[Sequence[Recipient]]:
        """Yield pages of recipients in a stable order, starting after ``cursor``.

        ``segment`` of ``total_segments`` is one parallel-scan shard of an "all" target
        (``None`` for the whole target). The engine passes all three; implementations may give
        them defaults.
        """
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


class ProgressStore(Protocol):
    """The progress items of broadcast jobs: one per job segment, written only conditionally."""

    async def load(self, job_id: str, segment: int | None) -> Checkpoint | None:
        """The segment's progress item, read consistently; ``None`` when there is none."""
        ...

    async def claim(self, claim: Claim) -> bool:
        """Lease ``claim.step`` to its token (message ``step.owner``) until ``claim.lease_until``
        if the item is still exactly as ``claim.seen`` and, when that holds this very step, its
        lease lapsed by ``claim.now``; record ``claim.cursor`` as where it starts."""
        ...

    async def save(self, step: Step, cursor: Cursor, so_far: Tally | None = None) -> bool:
        """Record a watermark mid-run, with what the step counted up to it (``so_far``, kept
        until the step finishes); ``False`` when ``step.token`` no longer holds the step."""
        ...

    async def finish(self, step: Step, report: FanoutReport, next_cursor: Cursor | None) -> bool:
        """Advance to the next step at ``next_cursor``, or mark the segment complete (``None``),
        adding ``report``'s counts and releasing the lease; ``False`` when ``step.token`` no
        longer holds the step."""
        ...


class JobSink(Protocol):
    """Where broadcast jobs go: the SQS queue, or a test double."""

    async def enqueue(self, job: BroadcastJob) -> str:
        """Hand over one job; returns its message id."""
        ...

    async def enqueue_many(self, jobs: Sequence[BroadcastJob]) -> int:
        """Hand over several jobs; returns how many."""
        ...


class ConnectionStore(RecipientSource, Protocol):
    """The registry an app runs on: connections with their attributes, and room memberships."""

    async def put(self, connection: Connection) -> Connection:
        """Store a new connection (its attributes included); refuse an id already stored."""
        ...

    async def get(self, connection_id: str) -> Connection | None:
        """The stored connection, or ``None``."""
        ...

    async def get_many(self, connection_ids: Sequence[str]) -> dict[str, Connection]:
        """The stored connections among ``connection_ids``, by id (one not stored is absent)."""
        ...

    async def rooms_of(self, connection_id: str) -> list[str]:
        """The rooms the connection has joined."""
        ...

    async def delete(self, connection_id: str) -> int:
        """Remove a connection and its memberships; return the items removed."""
        ...

    async def join_room(self, connection_id: str, room: str) -> bool:
        """Add a membership; the connection must be stored. ``True`` when it is new (``False``:
        the connection was in the room already)."""
        ...

    async def leave_room(self, connection_id: str, room: str) -> bool:
        """Remove a membership; ``False`` when there was none."""
        ...

    async def is_member(self, connection_id: str, room: str) -> bool:
        """Whether the connection has joined the room."""
        ...

    async def touch(self, connection_id: str) -> bool:
        """Record that the connection was seen now (``lastSeen``); ``False`` when not stored."""
        ...


class HistoryStore(Protocol):
    """Durable rooms' sequence numbers and bounded history (see :mod:`wsfanout.core.history`)."""

    async def append(
        self, room: str, frame: Mapping[str, JsonValue], sender: Mapping[str, str] | None
    ) -> int:
        """Take the room's next sequence number and store the message under it (before any
        fan-out of it); returns the sequence number."""
        ...

    async def latest(self, room: str) -> int:
        """The room's newest sequence number (0 when nothing was sent to it)."""
        ...

    async def since(self, room: str, since: int) -> Replay:
        """What a resume from ``since`` gets: the kept messages after it, or a reset."""
        ...


class ConnectionManager(Protocol):
    """What the management API does beyond posting: closing a connection."""

    async def delete_connection(self, connection_id: str, endpoint: str | None = None) -> bool:
        """DeleteConnection (API Gateway closes the socket); ``False`` when already gone."""
        ...
