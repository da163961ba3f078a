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
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack

from pydantic import JsonValue

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
from ..core.protocol import error_frame, strict_loads
from ..exceptions import ConnectionNotFoundError, FrameError, PayloadTooLargeError

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
    """What a send came to: how many received it inline, and the job that carries the rest."""

    delivered: int = 0
    job_id: str | None = None


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


async def deliver(
    services: Services,
    target: Target,
    data: Data,
    *,
    exclude: Collection[str] = (),
    deadline: float | None = None,
) -> Sent:
    """Send ``data`` to ``target``: rooms and everyone through a job, the rest inline, and what
    an inline send could not reach before ``deadline`` through a job from where it stopped.

    :raises PayloadTooLargeError: ``data`` is over 128 KiB.
    :raises ForbiddenError: the management API answered 403.
    :raises QueueError: a job could not be enqueued.
    """
    payload, text = encode(data)
    if isinstance(target, RoomTarget | AllTarget):
        job = _job(target, payload, text, exclude)
        await (await services.job_queue()).enqueue(job)
        return Sent(job_id=job.job_id)
    report = await (await services.fanout()).run(
        target, payload, exclude=exclude, deadline=deadline
    )
    if report.complete:
        return Sent(delivered=report.delivered)
    rest = _job(target, payload, text, exclude).model_copy(update={"cursor": report.resume})
    await (await services.job_queue()).enqueue(rest)
    return Sent(delivered=report.delivered, job_id=rest.job_id)


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
    _json: Any = field(default=None, repr=False)
    _parsed: bool = field(default=False, repr=False)

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

    async def send(self, data: Data, *, exclude: Collection[str] = (), **to: Unpack[To]) -> Sent:
        """Send ``data`` to exactly one target (see :class:`To`), if the app's
        :class:`~wsfanout.app.Rules` allow this connection to.

        :raises FrameError: (``forbidden``) the rules refuse it; the sender gets the error frame.
        :raises TypeError: not exactly one target named.
        :raises PayloadTooLargeError: ``data`` is over 128 KiB.
        """
        target = target_of(to)
        if not await self.rules.may_send(self, target):
            raise FrameError("forbidden", _refusal(target))
        return await deliver(self.services, target, data, exclude=exclude, deadline=self.deadline)

    async def join(self, room: str) -> None:
        """Add this connection to ``room``, if the rules allow it.

        :raises FrameError: ``forbidden`` (the rules refuse), ``not_connected`` (the registry
            does not hold this connection).
        """
        if not await self.rules.may_join(self, room):
            raise FrameError("forbidden", f"this connection may not join {room!r}")
        try:
            await (await self.services.registry()).join_room(self.connection_id, room)
        except ConnectionNotFoundError:
            raise FrameError("not_connected", "this connection is not registered") from None

    async def leave(self, room: str) -> bool:
        """Take this connection out of ``room``; ``False`` when it was not in it."""
        return await (await self.services.registry()).leave_room(self.connection_id, room)

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
