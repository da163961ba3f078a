"""The client protocol of docs/contracts.md: frames from clients in, frames to clients out.

Clients select a route with ``$request.body.action``. Anything that is not a valid frame becomes
a :class:`~wsfanout.exceptions.FrameError` whose ``code`` goes back to the sender in an error
frame, ``{"type": "error", "code": ..., "message": ...}``; nothing a client sends can crash a
handler or touch the registry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictInt,
    StringConstraints,
    ValidationError,
)

from ..exceptions import FrameError
from .history import MAX_SEQ
from .models import MAX_PAYLOAD_BYTES, json_bytes

__all__ = [
    "Broadcast",
    "ClientFrame",
    "JoinRoom",
    "LeaveRoom",
    "Ping",
    "Presence",
    "SendMessage",
    "ToConnection",
    "ToRoom",
    "ToUser",
    "WhoAmI",
    "ack_frame",
    "error_frame",
    "finite_float",
    "message_frame",
    "no_constants",
    "parse_frame",
    "presence_event_frame",
    "presence_frame",
    "reset_frame",
    "strict_loads",
]

RoomName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^#\s\x00-\x1f\x7f]+$")
]
Id = Annotated[str, StringConstraints(min_length=1, max_length=512)]


# Built on first use, not at import (``defer_build``): a cold start that serves a $connect
# never pays for the frames' validators.
class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class JoinRoom(_Frame):
    """``{"action": "joinRoom", "room": "lobby", "since": 41}``: ``since`` (optional) is the
    last sequence number the client saw in a durable room; what it missed is replayed."""

    action: Literal["joinRoom"]
    room: RoomName
    since: Annotated[StrictInt, Field(ge=0)] | None = None  # "41" or true is not a seq


class LeaveRoom(_Frame):
    """``{"action": "leaveRoom", "room": "lobby"}``"""

    action: Literal["leaveRoom"]
    room: RoomName


class ToUser(_Frame):
    user: Id


class ToRoom(_Frame):
    room: RoomName


class ToConnection(_Frame):
    connection: Id


class SendMessage(_Frame):
    """``{"action": "sendMessage", "to": {"user"|"room"|"connection": ...}, "data": ...}``"""

    action: Literal["sendMessage"]
    to: ToUser | ToRoom | ToConnection
    data: JsonValue


class Broadcast(_Frame):
    """``{"action": "broadcast", "data": ...}``: to every connection, if the sender may."""

    action: Literal["broadcast"]
    data: JsonValue


class WhoAmI(_Frame):
    """``{"action": "whoami"}``: the sender's own connection id, which API Gateway never tells
    a client; a conformance run (:mod:`wsfanout.local.conformance`) learns it so, on AWS and
    locally alike."""

    action: Literal["whoami"]


class Ping(_Frame):
    """``{"action": "ping"}``: a keepalive below API Gateway's idle timeout, answered
    ``{"type": "pong"}``."""

    action: Literal["ping"]


class Presence(_Frame):
    """``{"action": "presence", "room": "lobby"}``: who is in the room (its members only may
    ask), answered with :func:`presence_frame`."""

    action: Literal["presence"]
    room: RoomName


ClientFrame = Annotated[
    JoinRoom | LeaveRoom | SendMessage | Broadcast | WhoAmI | Ping | Presence,
    Field(discriminator="action"),
]
_ACTIONS = ("joinRoom", "leaveRoom", "sendMessage", "broadcast", "whoami", "ping", "presence")


class _Envelope(BaseModel):
    model_config = ConfigDict(defer_build=True)

    frame: ClientFrame


def parse_frame(body: str | None, *, is_base64_encoded: bool = False) -> ClientFrame:
    """Validate one client frame.

    :raises FrameError: with code ``binary_not_supported``, ``bad_frame``, ``unknown_action`` or
        ``invalid_field`` and a reason fit to send back (docs/contracts.md, Client protocol).
    """
    if is_base64_encoded:
        raise FrameError("binary_not_supported", "binary frames are not accepted; send JSON text")
    if not body:
        raise FrameError("bad_frame", "empty frame; send a JSON object with an 'action'")
    try:
        raw = strict_loads(body)
    except (ValueError, RecursionError):
        raise FrameError("bad_frame", "the frame is not valid JSON") from None
    if not isinstance(raw, dict):
        raise FrameError("bad_frame", "the frame must be a JSON object with an 'action'")
    action = raw.get("action")
    if action not in _ACTIONS:
        shown = action if isinstance(action, str) and len(action) <= 64 else None
        raise FrameError(
            "unknown_action",
            f"unknown action {shown!r}; use one of {', '.join(_ACTIONS)}"
            if shown
            else f"missing or invalid 'action'; use one of {', '.join(_ACTIONS)}",
        )
    try:
        return _Envelope.model_validate({"frame": raw}).frame
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"][2:]) or action
        raise FrameError("invalid_field", f"{action}: {where}: {first['msg']}") from None


def no_constants(name: str) -> Any:
    """``json.loads``'s ``parse_constant``: NaN and Infinity are not JSON, and browsers'
    ``JSON.parse`` would choke on them.

    :raises ValueError: always.
    """
    raise ValueError(f"{name} is not JSON")


def finite_float(text: str) -> float:
    """``json.loads``'s ``parse_float``: a number too large for a float (``1e999``) would become
    Infinity, which no JSON encoder will write back.

    :raises ValueError: for such a number.
    """
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is too large a number")
    return value


def strict_loads(text: str) -> Any:
    """``json.loads`` for what clients send: NaN, Infinity and numbers too large for a float
    are refused, since nothing could send them on as JSON.

    :raises ValueError: ``text`` is not such JSON (``RecursionError`` for absurd nesting).
    """
    return json.loads(text, parse_constant=no_constants, parse_float=finite_float)


def _dump(frame: dict[str, Any]) -> bytes:
    try:
        return json_bytes(frame)
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape: not sendable text
        raise FrameError(
            "invalid_field", "the data contains text that is not valid Unicode"
        ) from None


def error_frame(code: str, message: str) -> bytes:
    """What a sender gets back for a frame that could not be served.

    :raises FrameError: (``invalid_field``) when ``message`` holds text that is not valid Unicode.
    """
    return _dump({"type": "error", "code": code, "message": message})


def ack_frame(action: str, **fields: Any) -> bytes:
    """A short confirmation, so a client knows e.g. that it is in the room before it sends.

    :raises FrameError: (``invalid_field``) when a field holds text that is not valid Unicode.
    """
    return _dump({"type": "ack", "action": action, **fields})


def reset_frame(room: str, seq: int) -> bytes:
    """``{"type": "reset", "room": ..., "seq": latest}``: the room's history no longer holds
    what the client asked to resume from, so it has a gap (docs/contracts.md, "Replay")."""
    return _dump({"type": "reset", "room": room, "seq": seq})


def presence_frame(room: str, users: Iterable[tuple[str, int]], connections: int) -> bytes:
    """``{"type": "presence", "room": ..., "users": [{"userId": ..., "connections": n}],
    "connections": total}``: the answer to a ``presence`` frame, ``users`` in the order given
    (the App gives them sorted by user id)."""
    listed = [{"userId": user, "connections": count} for user, count in users]
    return _dump({"type": "presence", "room": room, "users": listed, "connections": connections})


def presence_event_frame(
    event: Literal["join", "leave"], room: str, sender: Mapping[str, str]
) -> bytes:
    """``{"type": "presence", "event": "join"|"leave", "room": ..., "connectionId": ...,
    "userId": ...}``: what a presence room's other members get when a connection joined or
    left it; ``sender`` is the connection's identity (``userId`` only when it has one). Never
    durable: it carries no ``seq``."""
    return _dump({"type": "presence", "event": event, "room": room, **sender})


def message_frame(
    sender: dict[str, str], data: JsonValue, *, durable_room: str | None = None
) -> bytes:
    """``{"type": "message", "from": {...}, "data": ...}``, checked against API Gateway's limit;
    for a ``durable_room``, with room for the ``room`` and ``seq`` it will be stamped with.

    :raises FrameError: ``too_large`` when the frame would exceed 128 KiB; ``invalid_field`` when
        ``data`` holds text that is not valid Unicode (a lone surrogate).
    """
    frame = _dump({"type": "message", "from": sender, "data": data})
    stamp = 0 if durable_room is None else len(_dump({"room": durable_room, "seq": MAX_SEQ}))
    if len(frame) + stamp > MAX_PAYLOAD_BYTES:
        raise FrameError(
            "too_large",
            f"the message would be {len(frame) + stamp} bytes; at most {MAX_PAYLOAD_BYTES} "
            "can be sent",
        )
    return frame
