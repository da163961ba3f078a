"""In-memory doubles of the seams the engine and the job runner are typed against.

They implement the protocols of :mod:`wsfanout.core.interfaces`, so the engine and the job
runner run on them unchanged; the event builders make what API Gateway and SQS hand a Lambda
handler, in the shapes AWS sends (one implementation, shared with the local emulator).
"""

from __future__ import annotations

import hashlib
import inspect
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import anyio.lowlevel

from ..aws import events as _events
from ..aws.events import LambdaContext
from ..core import models
from ..core.interfaces import Recipient
from ..core.jobs import Checkpoint, Claim, Step, Tally
from ..core.models import Cursor
from ..core.outcomes import Outcome
from ..core.pacing import set_testing

__all__ = [
    "LambdaContext",
    "MemoryJobSink",
    "MemoryProgressStore",
    "MemorySource",
    "Post",
    "ScriptedGateway",
    "connect_event",
    "disconnect_event",
    "message_event",
    "set_testing",
    "sqs_event",
]

_CONNECTION_SK = "CONN"
_ROOM_SK = "ROOM#"


def _key(connection_id: str, sk: str = _CONNECTION_SK) -> dict[str, str]:
    """A registry item key, as the DynamoDB registry lays it out (``CONN#{id}`` / ``CONN``)."""
    return {"PK": f"CONN#{connection_id}", "SK": sk}


# -- the registry ----------------------------------------------------------------------------------


class MemorySource:
    """An in-memory :class:`~wsfanout.core.interfaces.RecipientSource`.

    Connections keep the order they were given in, so pages are stable and a
    :class:`~wsfanout.core.models.Cursor` from :meth:`Recipient.resume_cursor` resumes exactly
    after its recipient, even after that connection was removed (as a DynamoDB Scan accepts the
    key of a deleted item). "all" targets honour ``segment``/``total_segments`` (connection *i*
    belongs to segment ``i % total``); explicit id lists are yielded whether registered or not,
    as the registry does; ``rooms`` and ``users`` map names to connection ids.
    """

    def __init__(
        self,
        connections: Iterable[str] | Mapping[str, str | None] = (),
        *,
        page_size: int = 100,
        rooms: Mapping[str, Sequence[str]] | None = None,
        users: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if isinstance(connections, Mapping):
            self._endpoints: dict[str, str | None] = dict(connections)
        else:
            self._endpoints = dict.fromkeys(connections)
        self._order = list(self._endpoints)  # every id ever registered, in order
        self._live = set(self._order)
        self.page_size = page_size
        self.rooms = {room: list(ids) for room, ids in (rooms or {}).items()}
        self.users = {user: list(ids) for user, ids in (users or {}).items()}
        self.removed: list[list[str]] = []
        """The connection ids of every :meth:`remove_gone` call, one list per call."""

    def ids(self) -> list[str]:
        """The connections still registered, in order."""
        return [cid for cid in self._order if cid in self._live]

    async def pages(
        self,
        target: models.Target,
        *,
        segment: int | None = None,
        total_segments: int | None = None,
        cursor: Cursor | None = None,
    ) -> AsyncIterator[Sequence[Recipient]]:
        """Yield the target's recipients, ``page_size`` at a time, after ``cursor``.

        :raises ValueError: for segments of a target other than "all".
        """
        if segment is not None and not isinstance(target, models.AllTarget):
            raise ValueError("parallel-scan segments apply only to an 'all' target")
        for page in self._paged(self._recipients(target, segment, total_segments, cursor)):
            await anyio.lowlevel.checkpoint()  # a real source awaits its store at every page
            yield page

    def _recipients(
        self,
        target: models.Target,
        segment: int | None,
        total_segments: int | None,
        cursor: Cursor | None,
    ) -> Iterable[Recipient]:
        if isinstance(target, models.ConnectionsTarget):
            first = cursor.offset if cursor and cursor.offset else 0
            for index in range(first, len(target.connection_ids)):
                cid = target.connection_ids[index]
                yield Recipient(cid, self._endpoints.get(cid), None, index)
        elif isinstance(target, models.AllTarget):
            order = self._order
            if segment is not None and total_segments:
                order = order[segment::total_segments]
            yield from self._after(order, cursor, _CONNECTION_SK, 0)
        elif isinstance(target, models.RoomTarget):
            members = self.rooms.get(target.room, [])
            yield from self._after(members, cursor, _ROOM_SK + target.room, 0)
        else:
            assert isinstance(target, models.UsersTarget)  # noqa: S101  (the last kind of target)
            first = cursor.user if cursor else 0
            for index in range(first, len(target.user_ids)):
                ids = self.users.get(target.user_ids[index], [])
                start = cursor if cursor and index == first else None
                yield from self._after(ids, start, _CONNECTION_SK, index)

    def _after(
        self, ids: Sequence[str], cursor: Cursor | None, sk: str, index: int
    ) -> Iterable[Recipient]:
        keys = [_key(cid, sk) for cid in ids]
        first = keys.index(cursor.after) + 1 if cursor and cursor.after in keys else 0
        for cid, key in zip(ids[first:], keys[first:], strict=True):
            if cid in self._live:
                yield Recipient(cid, self._endpoints.get(cid), key, index)

    def _paged(self, recipients: Iterable[Recipient]) -> Iterable[list[Recipient]]:
        page: list[Recipient] = []
        for recipient in recipients:
            page.append(recipient)
            if len(page) == self.page_size:
                yield page
                page = []
        if page:
            yield page

    async def remove_gone(self, recipients: Sequence[Recipient]) -> int:
        """Forget these connections and the room memberships they were found through; return
        how many items (connections and memberships) were deleted."""
        self.removed.append([r.connection_id for r in recipients])
        deleted = 0
        for recipient in recipients:
            cid = recipient.connection_id
            if cid in self._live:
                self._live.discard(cid)
                deleted += 1
            sk = (recipient.key or {}).get("SK", "")
            members = self.rooms.get(sk.removeprefix(_ROOM_SK)) if sk.startswith(_ROOM_SK) else None
            if members is not None and cid in members:
                members.remove(cid)
                deleted += 1
        return deleted


# -- the management API ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Post:
    """One PostToConnection attempt, as :class:`ScriptedGateway` saw it."""

    connection_id: str
    data: bytes
    endpoint: str | None


Handler = Callable[[str, bytes], Outcome | Awaitable[Outcome]]


def _deliver(connection_id: str, data: bytes) -> Outcome:
    return Outcome.DELIVERED


class ScriptedGateway:
    """A :class:`~wsfanout.core.interfaces.Gateway` whose answers come from ``handler``.

    ``handler(connection_id, data)`` returns the :class:`Outcome` of one attempt, or an
    awaitable of it (to hold an attempt in flight until a test releases it); by default every
    attempt is delivered. Every attempt is recorded in :attr:`posts` when it starts, in order.
    Like a real transport, a post yields to the event loop before it is answered.
    """

    def __init__(
        self,
        handler: Handler = _deliver,
        *,
        default_endpoint: str
        | None = "https://abcdef1234.execute-api.us-east-1.amazonaws.com/prod",
    ) -> None:
        self.handler = handler
        self._default_endpoint = default_endpoint
        self.posts: list[Post] = []

    @property
    def default_endpoint(self) -> str | None:
        """The endpoint posts without one of their own are recorded with."""
        return self._default_endpoint

    async def post(self, connection_id: str, data: bytes, endpoint: str | None = None) -> Outcome:
        """Record the attempt, yield once, and answer what ``handler`` says."""
        self.posts.append(Post(connection_id, data, endpoint or self._default_endpoint))
        await anyio.lowlevel.checkpoint()
        answer = self.handler(connection_id, data)
        if inspect.isawaitable(answer):
            return await answer
        return answer

    def counts(self) -> Counter[str]:
        """Attempts per connection id."""
        return Counter(post.connection_id for post in self.posts)


# -- broadcast jobs --------------------------------------------------------------------------------


class MemoryJobSink:
    """A :class:`~wsfanout.core.interfaces.JobSink` that keeps what it is given."""

    def __init__(self) -> None:
        self.sent: list[models.BroadcastJob] = []
        self.batches: list[list[models.BroadcastJob]] = []

    async def enqueue(self, job: models.BroadcastJob) -> str:
        """Keep ``job`` in :attr:`sent`; its message id is ``msg-{n}``."""
        self.sent.append(job)
        return f"msg-{len(self.sent)}"

    async def enqueue_many(self, jobs: Sequence[models.BroadcastJob]) -> int:
        """Keep ``jobs`` as one batch in :attr:`batches`."""
        self.batches.append(list(jobs))
        return len(jobs)


class MemoryProgressStore:
    """A :class:`~wsfanout.core.interfaces.ProgressStore` in a dict, with the same conditions as
    the DynamoDB one: a claim succeeds only on exactly the state it saw (and, on the step it
    holds, only after the lease lapsed), and a save or a step's end only while the claiming
    invocation's token still holds the step."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, int | None], Checkpoint] = {}

    async def load(self, job_id: str, segment: int | None) -> Checkpoint | None:
        """The segment's item, or ``None``."""
        return self.items.get((job_id, segment))

    async def claim(self, claim: Claim) -> bool:
        """Lease ``claim.step`` to its token if the item is still as ``seen`` (and, on the step
        ``seen`` holds, its lease lapsed by ``now``)."""
        step, seen, cursor = claim.step, claim.seen, claim.cursor
        lease_until, now = claim.lease_until, claim.now
        key = step.job_id, step.segment
        current = self.items.get(key)
        if seen is None:
            if current is not None:
                return False
            current = Checkpoint(step=step.number, owner=step.owner, cursor=cursor)
        elif current is None or current.complete or _holder(current) != _holder(seen):
            return False
        leased = current.lease_until is not None and current.lease_until > now
        if leased and seen is not None and seen.owner is not None and seen.step == step.number:
            return False
        self.items[key] = replace(
            current,
            step=step.number,
            owner=step.owner,
            cursor=cursor or current.cursor,
            token=step.token,
            lease_until=lease_until,
        )
        return True

    def _owned(self, step: Step) -> Checkpoint | None:
        current = self.items.get((step.job_id, step.segment))
        held = (step.number, step.owner, step.token)
        return current if current is not None and _holder(current) == held else None

    async def save(self, step: Step, cursor: Cursor, so_far: Tally | None = None) -> bool:
        """Record a watermark (and the step's counts so far) while ``step.token`` holds the
        step."""
        current = self._owned(step)
        if current is None:
            return False
        so_far = so_far if so_far is not None else current.so_far
        self.items[step.job_id, step.segment] = replace(current, cursor=cursor, so_far=so_far)
        return True

    async def finish(
        self, step: Step, report: models.FanoutReport, next_cursor: Cursor | None
    ) -> bool:
        """Add the report's counts; advance to ``next_cursor`` or mark the segment complete;
        release the lease."""
        current = self._owned(step)
        if current is None:
            return False
        delivered = current.delivered + report.delivered
        gone, failed = current.gone + report.gone, current.failed + report.failed
        released = replace(current, owner=None, token=None, lease_until=None, so_far=None)
        if next_cursor is None:
            done = replace(released, complete=True)
        else:
            number, owner = step.number + 1, step.owner
            done = replace(released, step=number, cursor=next_cursor, advanced_by=owner)
        self.items[step.job_id, step.segment] = replace(
            done, delivered=delivered, gone=gone, failed=failed
        )
        return True


def _holder(checkpoint: Checkpoint) -> tuple[int, str | None, str | None]:
    """Which step, message and invocation a progress item names."""
    return checkpoint.step, checkpoint.owner, checkpoint.token


# -- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Client:
    """Where a test's WebSocket client connects from, to which API (AWS's documented samples)."""

    domain_name: str = "abcdef1234.execute-api.eu-west-1.amazonaws.com"
    stage: str = "prod"
    api_id: str = "abcdef1234"
    source_ip: str = "203.0.113.42"
    user_agent: str = "Mozilla/5.0 (X11; Linux x86_64) wsfanout-testing"
    connected_at_ms: int = field(default_factory=_events.now_ms)


def _origin(connection_id: str | None, authorizer: Mapping[str, Any] | None) -> _events.Origin:
    return _events.Origin(
        connection_id=connection_id or _events.new_id(),
        authorizer=_forwarded(authorizer),
        **asdict(_Client()),
    )


def _forwarded(context: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An authorizer's ``context`` as API Gateway forwards it (strings, plus ``principalId``)."""
    if context is None:
        return None
    allow = {
        "principalId": str(context.get("principalId", context.get("userId", "user"))),
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"}],
        },
        "context": {k: v for k, v in context.items() if k != "principalId"},
    }
    return _events.authorizer_context(allow, "*", latency_ms=1)


def connect_event(
    connection_id: str | None = None,
    *,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``$connect`` event: the upgrade's ``query`` and ``headers``, and ``authorizer`` as the
    context a REQUEST authorizer returned (values forwarded as strings, as API Gateway does).

    :raises wsfanout.aws.events.AuthorizerRejection: for an ``authorizer`` value that is an
        object or an array, which API Gateway refuses too.
    """
    upgrade = _events.Upgrade(
        headers=tuple((headers or {"Host": _Client().domain_name}).items()),
        query=tuple((query or {}).items()),
        port=443,
        proto="https",
    )
    return _events.connect_event(_origin(connection_id, authorizer), upgrade)


def message_event(
    connection_id: str,
    body: str | bytes,
    *,
    route_key: str | None = None,
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A client frame: text as is, ``bytes`` base64-encoded with ``isBase64Encoded``. The route
    is ``route_key``, or what ``$request.body.action`` selects among ``sendMessage`` and the
    other routes of ``deploy/template.yaml`` when it is ``None``."""
    route = route_key or _events.select_route(body, _ROUTES)
    return _events.message_event(_origin(connection_id, authorizer), route, body)


_ROUTES = frozenset({"sendMessage", "broadcast", "joinRoom", "leaveRoom"})


def disconnect_event(
    connection_id: str,
    *,
    status_code: int = 1001,
    reason: str = "",
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``$disconnect`` event (1001 "going away", the close code of a client that left)."""
    return _events.disconnect_event(_origin(connection_id, authorizer), status_code, reason)


def sqs_event(
    bodies: Iterable[str | models.BroadcastJob],
    *,
    queue_arn: str = "arn:aws:sqs:eu-west-1:123456789012:wsfanout-broadcast",
    receive_count: int = 1,
) -> dict[str, Any]:
    """A batch event of the SQS event source mapping, one record per body (a job is sent as
    its JSON, by alias, as the queue adapter sends it), each with a fresh ``messageId``."""
    sent_ms = _events.now_ms()
    messages = []
    for item in bodies:
        body = item if isinstance(item, str) else _job_body(item)
        messages.append(
            {
                "MessageId": str(uuid.uuid4()),
                "ReceiptHandle": uuid.uuid4().hex,
                "MD5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
                "Body": body,
                "Attributes": {
                    "ApproximateReceiveCount": str(receive_count),
                    "SentTimestamp": str(sent_ms),
                    "SenderId": "AIDA4QXAMPLEOPSUSER7",
                    "ApproximateFirstReceiveTimestamp": str(sent_ms + 1),
                },
            }
        )
    return _events.sqs_event(messages, queue_arn)


def _job_body(job: models.BroadcastJob) -> str:
    # Imported here: the queue adapter brings botocore, which only job bodies need.
    from ..aws.queue import job_body  # noqa: PLC0415  (keeps `import wsfanout.testing` light)

    return job_body(job)
