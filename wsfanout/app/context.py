"""``ctx``: what a hook or a route of an app is handed, and what it may do with the connection.

Sending is one rule everywhere (routes, :meth:`App.send <wsfanout.app.App.send>`, jobs, the CLI):
the data goes out as given, with no envelope added: a ``dict`` or ``list`` as compact JSON text,
a ``str`` as text, ``bytes`` as they are. Small targets (a connection, a few users' connections)
are sent inline through the engine; rooms and everyone become broadcast jobs on SQS; and an
inline send that cannot finish before the invocation's deadline hands the rest to a job, so no
recipient is silently dropped.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack

from pydantic import JsonValue

from ..core.history import MAX_SEQ, stamped
from ..core.models import (
    MAX_PAYLOAD_BYTES,
    AllTarget,
    BroadcastJob,
    ConnectionsTarget,
    RoomTarget,
    Target,
    UsersTarget,
)
from ..core.outcomes import Outcome
from ..core.protocol import error_frame, presence_event_frame, reset_frame, strict_loads
from ..exceptions import (
    ConnectionNotFoundError,
    FrameError,
    PayloadTooLargeError,
    WsFanoutError,
)
from .presence import Presence, PresenceEvent, presence_of

if TYPE_CHECKING:
    from .rules import Rules
    from .services import Services

__all__ = [
    "Context",
    "Data",
    "EventType",
    "Sent",
    "To",
    "deliver",
    "encode",
    "is_durable",
    "logger",
    "target_of",
]

logger = logging.getLogger("wsfanout")
"""The App's log lines. The standard library's logger of the name Powertools'
``Logger(service="wsfanout")`` (:mod:`wsfanout.handlers.runtime`) configures: on the Lambda side
they are Powertools' JSON with the invocation's keys; a sender's process, which has no
Powertools, gets them wherever its own logging configuration sends ``wsfanout``."""

Data = Mapping[str, Any] | list[Any] | str | bytes
"""What an app sends: JSON (an object or a list), text, or bytes."""

EventType = Literal["CONNECT", "MESSAGE", "DISCONNECT"]


@dataclass(frozen=True, slots=True)
class Sent:
    """What a send came to: how many received it inline, the job that carries the rest, and
    the sequence number a durable room's message was given."""

    delivered: int = 0
    job_id: str | None = None
    seq: int | None = None


def encode(data: Data) -> tuple[bytes, bool]:
    """The bytes of ``data`` and whether they are text (JSON and ``str``) or binary.

    :raises PayloadTooLargeError: over API Gateway's 128 KiB message limit.
    :raises ValueError: JSON with NaN or Infinity, or text that is not valid Unicode.
    """
    if isinstance(data, bytes):
        payload, text = data, False
    elif isinstance(data, str):
        payload, text = data.encode(), True
    else:
        rendered = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        payload, text = rendered.encode(), True
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLargeError(len(payload), MAX_PAYLOAD_BYTES)
    return payload, text


def _job(target: Target, payload: bytes, text: bool, exclude: Collection[str]) -> BroadcastJob:
    if text:
        return BroadcastJob(target=target, data=payload.decode(), exclude=list(exclude))
    encoded = base64.b64encode(payload).decode()
    return BroadcastJob(target=target, data_base64=encoded, exclude=list(exclude))


async def _durable(
    services: Services, room: str, data: Data, sender: Mapping[str, str] | None
) -> tuple[dict[str, Any], int]:
    """The message stamped with the room's next ``seq``, stored in its history first, so a
    replay can never miss a message that was delivered.

    :raises TypeError: ``data`` is not a JSON object (only an object can carry ``seq``).
    :raises PayloadTooLargeError: the stamped message would be over 128 KiB (checked before a
        ``seq`` is taken).
    """
    if not isinstance(data, Mapping):
        raise TypeError("a durable room's message must be a JSON object (a dict)")
    encode(stamped(data, room, MAX_SEQ))
    seq = await (await services.history()).append(room, data, sender)
    return stamped(data, room, seq), seq


async def deliver(
    services: Services,
    target: Target,
    data: Data,
    *,
    exclude: Collection[str] = (),
    deadline: float | None = None,
    durable: bool = False,
    sender: Mapping[str, str] | None = None,
) -> Sent:
    """Send ``data`` to ``target``: rooms and everyone through a job, the rest inline, and what
    an inline send could not reach before ``deadline`` through a job from where it stopped.

    ``durable`` (a room only): the message gets the room's next ``seq`` and is kept in its
    history (with ``sender``, the sending connection's identity) before the job is enqueued.

    :raises PayloadTooLargeError: ``data`` is over 128 KiB.
    :raises ForbiddenError: the management API answered 403.
    :raises QueueError: a job could not be enqueued.
    :raises TypeError: ``durable`` for a target that is not a room, or with ``data`` that is
        not a JSON object.
    """
    seq: int | None = None
    if durable:
        if not isinstance(target, RoomTarget):
            raise TypeError("only a room send can be durable")
        data, seq = await _durable(services, target.room, data, sender)
    payload, text = encode(data)
    if isinstance(target, RoomTarget | AllTarget):
        job = _job(target, payload, text, exclude)
        await (await services.job_queue()).enqueue(job)
        return Sent(job_id=job.job_id, seq=seq)
    report = await (await services.fanout()).run(
        target, payload, exclude=exclude, deadline=deadline
    )
    if report.complete:
        return Sent(delivered=report.delivered)
    rest = _job(target, payload, text, exclude).model_copy(update={"cursor": report.resume})
    await (await services.job_queue()).enqueue(rest)
    return Sent(delivered=report.delivered, job_id=rest.job_id)


def is_durable(target: Target, durable: bool | None, rooms: Callable[[str], bool]) -> bool:
    """Whether a send is durable: as asked, else (``None``) as ``rooms`` says for a room."""
    if durable is None:
        return isinstance(target, RoomTarget) and rooms(target.room)
    return durable


class To(TypedDict, total=False):
    """Whom a send is for: exactly one of these keyword arguments (``everyone=True`` for all)."""

    user: str
    users: Collection[str]
    room: str
    connection: str
    connections: Collection[str]
    everyone: bool


def target_of(to: To) -> Target:
    """The one target a send's keyword arguments name.

    :raises TypeError: none of them, or more than one.
    """
    given = sorted(name for name, value in to.items() if value not in (None, False))
    if len(given) != 1:
        raise TypeError(
            "name exactly one of user=, users=, room=, connection=, connections=, everyone=True"
            + (f" (got {', '.join(given)})" if given else "")
        )
    if "user" in given or "users" in given:
        return UsersTarget(user_ids=[to["user"]] if "user" in given else list(to["users"]))
    if "room" in given:
        return RoomTarget(room=to["room"])
    if "everyone" in given:
        return AllTarget(all=True)
    ids = [to["connection"]] if "connection" in given else list(to["connections"])
    return ConnectionsTarget(connection_ids=ids)


@dataclass(slots=True)
class Context:
    """One invocation of an app: the connection, what it sent, and what the app may do.

    ``user_id`` and ``claims`` come from the ``$connect`` authorizer, as API Gateway forwards
    them to every route of the connection (never from the frame). ``attributes`` is what the
    ``$connect`` hook stored on the connection's registry item: writable there, read once per
    later invocation. ``query`` and ``headers`` are the ``$connect`` request's (empty on later
    routes, where API Gateway sends none).
    """

    connection_id: str
    event_type: EventType
    route_key: str
    endpoint: str
    request_context: Mapping[str, Any]
    services: Services
    rules: Rules
    user_id: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    can_broadcast: bool = False
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | bytes | None = None
    attributes: dict[str, JsonValue] = field(default_factory=dict)
    deadline: float | None = None
    durable_rooms: Callable[[str], bool] = field(default=lambda _room: False, repr=False)
    """Whether a room is durable (the app's ``durable_rooms``)."""
    presence_rooms: Callable[[str], bool] = field(default=lambda _room: False, repr=False)
    """Whether a room has presence on (the app's ``presence_rooms``): its members are told
    when a connection joins or leaves it."""
    _json: Any = field(default=None, repr=False)
    _parsed: bool = field(default=False, repr=False)
    _touched: bool = field(default=False, repr=False)
    _presence_events: list[tuple[PresenceEvent, str]] = field(default_factory=list, repr=False)

    @property
    def json(self) -> Any:
        """The frame parsed as JSON (NaN and Infinity refused), parsed once.

        :raises FrameError: (``bad_frame``) a binary, empty or non-JSON frame; the sender gets
            the error frame.
        """
        if not self._parsed:
            if not isinstance(self.body, str) or not self.body:
                raise FrameError("bad_frame", "the frame must be JSON text")
            try:
                self._json = strict_loads(self.body)
            except (ValueError, RecursionError):
                raise FrameError("bad_frame", "the frame is not valid JSON") from None
            self._parsed = True
        return self._json

    async def reply(self, data: Data) -> None:
        """Send ``data`` to this connection (not during ``$connect``: it is not open yet)."""
        payload, _ = encode(data)
        sender = await self.services.sender()
        outcome = await sender.post(self.connection_id, payload, self.endpoint)
        if outcome is not Outcome.DELIVERED:
            logger.warning("could not answer the sender", extra={"outcome": outcome.value})

    async def error(self, code: str, message: str) -> None:
        """Answer the sender ``{"type": "error", "code": code, "message": message}``."""
        await self.reply(error_frame(code, message))

    @property
    def sender(self) -> dict[str, str]:
        """This connection's identity as recipients see it: ``connectionId``, and ``userId``
        when it has one."""
        identity = {"connectionId": self.connection_id}
        if self.user_id:
            identity["userId"] = self.user_id
        return identity

    async def send(
        self,
        data: Data,
        *,
        exclude: Collection[str] = (),
        durable: bool | None = None,
        **to: Unpack[To],
    ) -> Sent:
        """Send ``data`` to exactly one target (see :class:`To`), if the app's
        :class:`~wsfanout.app.Rules` allow this connection to.

        ``durable`` (``None``: as the app's ``durable_rooms`` says for the room): a room's
        message gets the room's next sequence number, ``Sent.seq``, and is kept for replay;
        ``data`` must then be a JSON object, which recipients get with ``room`` and ``seq``.

        :raises FrameError: (``forbidden``) the rules refuse it; the sender gets the error frame.
        :raises TypeError: not exactly one target named; ``durable=True`` for a target that is
            not a room, or with ``data`` that is not a JSON object.
        :raises PayloadTooLargeError: ``data`` is over 128 KiB.
        """
        target = target_of(to)
        if not await self.rules.may_send(self, target):
            raise FrameError("forbidden", _refusal(target))
        return await deliver(
            self.services,
            target,
            data,
            exclude=exclude,
            deadline=self.deadline,
            durable=is_durable(target, durable, self.durable_rooms),
            sender=self.sender,
        )

    async def join(self, room: str, *, since: int | None = None) -> int | None:
        """Add this connection to ``room``, if the rules allow it. For a durable room, then
        send it what it missed after ``since`` (the last ``seq`` it saw), in order, as the
        members got it, or a ``reset`` frame when the history no longer reaches back that far;
        return the room's latest ``seq`` (``None`` for a room that is not durable).

        The membership is written before the history is read: a message whose fan-out missed
        the membership was stored before it, so the replay holds it. In a presence room a new
        membership tells the room's other members ``{"type": "presence", "event": "join"}``
        once the invocation's route is done (so after the joiner's own ack).

        :raises FrameError: ``forbidden`` (the rules refuse), ``not_connected`` (the registry
            does not hold this connection).
        """
        if not await self.rules.may_join(self, room):
            raise FrameError("forbidden", f"this connection may not join {room!r}")
        try:
            new = await (await self.services.registry()).join_room(self.connection_id, room)
        except ConnectionNotFoundError:
            raise FrameError("not_connected", "this connection is not registered") from None
        if new and self.presence_rooms(room):  # a re-join (a client's gap request) is no join
            self._announce("join", room)
        if not self.durable_rooms(room):
            return None
        history = await self.services.history()
        if since is None:
            return await history.latest(room)
        replay = await history.since(room, since)
        if replay.reset:
            await self.reply(reset_frame(room, replay.latest))
        for message in replay.messages:
            await self.reply(stamped(message.frame, room, message.seq))
        return replay.latest

    async def leave(self, room: str) -> bool:
        """Take this connection out of ``room``; ``False`` when it was not in it. In a presence
        room a membership removed tells the other members ``"event": "leave"`` once the
        invocation's route is done."""
        was_member = await (await self.services.registry()).leave_room(self.connection_id, room)
        if was_member and self.presence_rooms(room):
            self._announce("leave", room)
        return was_member

    async def presence(self, room: str) -> Presence:
        """Who is in ``room`` now (its live member connections, see
        :mod:`wsfanout.app.presence`), if the rules let this connection see it (by default,
        only a member may).

        :raises FrameError: (``forbidden``) the rules refuse; the sender gets the error frame.
        :raises RegistryError: DynamoDB refused or could not be reached.
        """
        if not await self.rules.may_see_presence(self, room):
            raise FrameError("forbidden", f"this connection may not see who is in {room!r}")
        timeout = self.services.settings.presence_timeout_seconds
        return await presence_of(await self.services.registry(), room, timeout)

    async def touch(self) -> bool:
        """Record that this connection was seen now (its ``lastSeen``, one UpdateItem), at most
        once per invocation: the keepalive does, and an app with presence rooms does for a
        frame of a connection not seen for a quarter of ``PRESENCE_TIMEOUT_SECONDS``.
        ``False`` when the registry does not hold the connection.

        :raises RegistryError: DynamoDB refused or could not be reached.
        """
        if self._touched:
            return True
        self._touched = await (await self.services.registry()).touch(self.connection_id)
        return self._touched

    def _announce(self, event: PresenceEvent, room: str) -> None:
        """Queue a presence event of this connection for ``room``'s other members, sent once
        the route or hook is done (:meth:`_send_announcements`, which the App calls)."""
        self._presence_events.append((event, room))

    async def _send_announcements(self) -> None:
        """Send what :meth:`join`, :meth:`leave` (and the App's ``$disconnect``) queued, each
        as a broadcast job, as every room send: a room may hold any number of members, and the
        job keeps this invocation as short as it is without presence. Never durable (no
        ``seq``): replayed after a reconnect, an event would tell of a state long past. An
        event that cannot be enqueued is logged, never the sender's error (its frame was
        served), and the others are still sent.
        """
        events, self._presence_events = self._presence_events, []
        for event, room in events:
            frame = presence_event_frame(event, room, self.sender)
            target = RoomTarget(room=room)
            try:
                await deliver(self.services, target, frame, exclude=[self.connection_id])
            except WsFanoutError:
                logger.exception("could not send a presence event", extra={"room": room})

    async def close(self, reason: str | None = None) -> None:
        """Close this connection: an application close frame (``{"type": "close", ...}``), then
        DeleteConnection. API Gateway closes the socket itself and cannot be given a close code,
        so the frame is how a client learns why."""
        frame: dict[str, Any] = {"type": "close"}
        if reason is not None:
            frame["reason"] = reason
        await self.reply(frame)
        await (await self.services.gateway()).delete_connection(self.connection_id, self.endpoint)


def _refusal(target: Target) -> str:
    """The ``forbidden`` message: a room is named, users and connections are not."""
    if isinstance(target, AllTarget):
        return "this connection may not broadcast"
    if isinstance(target, RoomTarget):
        return f"this connection may not send to room {target.room!r}"
    if isinstance(target, UsersTarget):
        return "this connection may not send to these users"
    return "this connection may not send to these connections"
