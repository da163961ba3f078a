"""The built-in chat protocol of docs/contracts.md ("Client protocol") as an app on the App API.

``joinRoom`` (with ``since``, a replay of what the client missed), ``leaveRoom``,
``sendMessage`` (to a user, a room or a connection), ``broadcast``, ``whoami``, ``ping``
(the keepalive, which also records the connection's ``lastSeen``) and ``presence`` (who is in
a room) are routes; every room is durable and has presence on (``App(durable_rooms=True,
presence_rooms=True)``: members are told of joins and leaves); every frame is validated by
:func:`~wsfanout.core.protocol.parse_frame`, so a malformed one is answered the same error
frame whichever route or hook it reached. The framework does the rest: the connection's
registry item at ``$connect``, its removal at ``$disconnect``, the sender's identity (the
authorizer's, else the registry's), the rules (only a room's members post to it; only
connections allowed to broadcast broadcast), inline sends and jobs. The answers are the
protocol's acks; recipients get what ``message_frame`` makes.
"""

from __future__ import annotations

from typing import TypeVar

from ..app import App, Context, Sent
from ..core.protocol import (
    Broadcast,
    ClientFrame,
    JoinRoom,
    LeaveRoom,
    Ping,
    Presence,
    SendMessage,
    ToConnection,
    ToRoom,
    ToUser,
    WhoAmI,
    ack_frame,
    message_frame,
    parse_frame,
    presence_frame,
)
from ..exceptions import FrameError

__all__ = ["app"]

F = TypeVar("F", JoinRoom, LeaveRoom, SendMessage, Broadcast, WhoAmI, Ping, Presence)

app = App(durable_rooms=True, presence_rooms=True)


def _parse(ctx: Context) -> ClientFrame:
    """The frame as the protocol reads it (a binary frame arrives as ``bytes``).

    :raises FrameError: ``binary_not_supported``, ``bad_frame``, ``unknown_action`` or
        ``invalid_field``, as :func:`~wsfanout.core.protocol.parse_frame` decides.
    """
    body = ctx.body
    return parse_frame(
        body if isinstance(body, str) else None, is_base64_encoded=isinstance(body, bytes)
    )


def _frame(ctx: Context, kind: type[F]) -> F:
    """The frame of a route, which must be of the route's own action.

    :raises FrameError: as :func:`_parse`; ``unknown_action`` for a frame of another action
        (only a route selection other than ``$request.body.action`` can bring one here).
    """
    frame = _parse(ctx)
    if not isinstance(frame, kind):
        raise FrameError(
            "unknown_action", f"the {ctx.route_key!r} route does not serve {frame.action!r}"
        )
    return frame


def _message(ctx: Context, frame: SendMessage | Broadcast) -> str:
    """What the recipients get, as text (so a job sends it as a text frame too).

    :raises FrameError: ``too_large`` or ``invalid_field``, as
        :func:`~wsfanout.core.protocol.message_frame` decides.
    """
    return message_frame(ctx.sender, frame.data).decode()


def _job_ack(action: str, sent: Sent, **fields: object) -> bytes:
    return ack_frame(action, **fields, jobId=sent.job_id)


@app.route("joinRoom")
async def join_room(ctx: Context) -> None:
    """Join a room; ``not_connected`` when the registry does not hold the connection."""
    frame = _frame(ctx, JoinRoom)
    latest = await ctx.join(frame.room, since=frame.since)
    fields: dict[str, object] = {"room": frame.room}
    if latest is not None:  # a durable room: what was missed went out before this ack
        fields["seq"] = latest
    await ctx.reply(ack_frame("joinRoom", **fields))


@app.route("leaveRoom")
async def leave_room(ctx: Context) -> None:
    """Leave a room; the ack says whether the connection was in it."""
    frame = _frame(ctx, LeaveRoom)
    was_member = await ctx.leave(frame.room)
    await ctx.reply(ack_frame("leaveRoom", room=frame.room, wasMember=was_member))


@app.route("sendMessage")
async def send_message(ctx: Context) -> None:
    """To a room (a job, the sender excluded, members only), or inline to a user's connections
    or one connection (``not_found`` when that one is not connected)."""
    frame = _frame(ctx, SendMessage)
    to = frame.to
    if isinstance(to, ToRoom) and ctx.durable_rooms(to.room):
        message_frame(ctx.sender, frame.data, durable_room=to.room)  # refused before a seq
        durable = {"type": "message", "from": ctx.sender, "data": frame.data}
        sent = await ctx.send(durable, room=to.room, exclude=[ctx.connection_id])
        await ctx.reply(_job_ack("sendMessage", sent, room=to.room, seq=sent.seq))
        return
    message = _message(ctx, frame)
    if isinstance(to, ToRoom):
        sent = await ctx.send(message, room=to.room, exclude=[ctx.connection_id])
        await ctx.reply(_job_ack("sendMessage", sent, room=to.room))
        return
    if isinstance(to, ToUser):
        sent = await ctx.send(message, user=to.user)
    else:
        sent = await _to_connection(ctx, message, to)
    fields: dict[str, object] = {"delivered": sent.delivered}
    if sent.job_id is not None:  # out of time inline: a job carries the rest
        fields["jobId"] = sent.job_id
    await ctx.reply(ack_frame("sendMessage", **fields))


async def _to_connection(ctx: Context, message: str, to: ToConnection) -> Sent:
    """:raises FrameError: (``not_found``) the connection is not connected (nothing delivered,
    and no job left to try)."""
    sent = await ctx.send(message, connection=to.connection)
    if not sent.delivered and sent.job_id is None:
        raise FrameError("not_found", f"connection {to.connection!r} is not connected")
    return sent


@app.route("broadcast")
async def broadcast(ctx: Context) -> None:
    """To every connection but the sender (a job), if the rules let it broadcast."""
    frame = _frame(ctx, Broadcast)
    sent = await ctx.send(_message(ctx, frame), everyone=True, exclude=[ctx.connection_id])
    await ctx.reply(_job_ack("broadcast", sent))


@app.route("whoami")
async def whoami(ctx: Context) -> None:
    """Tell the sender its connection id (a route of its own or, as the deploy template has
    no such route key, through ``$default`` by the frame's action)."""
    _frame(ctx, WhoAmI)
    await ctx.reply(ack_frame("whoami", connectionId=ctx.connection_id))


@app.route("ping")
async def ping(ctx: Context) -> None:
    """The keepalive: answer ``{"type": "pong"}`` and record the connection's ``lastSeen`` (one
    UpdateItem, once per invocation: a stale ``lastSeen`` was refreshed before the route).
    Through ``$default`` by the frame's action where the template has no route."""
    _frame(ctx, Ping)
    await ctx.touch()
    await ctx.reply({"type": "pong"})


@app.route("presence")
async def presence(ctx: Context) -> None:
    """Who is in a room, to the sender only; ``forbidden`` unless it is a member. Through
    ``$default`` by the frame's action where the template has no such route."""
    frame = _frame(ctx, Presence)
    present = await ctx.presence(frame.room)
    await ctx.reply(presence_frame(frame.room, present.users.items(), present.connections))


@app.on_default
async def default(ctx: Context) -> None:
    """What no route took: binary, empty or non-JSON frames, unknown actions.

    :raises FrameError: always; the sender gets the protocol's error frame.
    """
    frame = _parse(ctx)
    raise FrameError("unknown_action", f"no route serves {frame.action!r} here")
