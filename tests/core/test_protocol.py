"""The client protocol of docs/contracts.md: every valid frame, every error code, the outgoing
frames."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from pydantic import JsonValue

from wsfanout.core import protocol
from wsfanout.core.models import MAX_PAYLOAD_BYTES
from wsfanout.core.protocol import ack_frame, error_frame, message_frame, parse_frame
from wsfanout.exceptions import FrameError, InvalidInputError

SENDER = {"connectionId": "abc=", "userId": "u_123"}

DATA_VALUES: list[Any] = [
    "hello",
    "",
    "héllo wörld ✓ 🎉",
    0,
    42,
    -7,
    3.5,
    True,
    False,
    None,
    [],
    [1, "two", None, True, 2.5],
    {},
    {"a": {"b": [1, {"c": None, "d": [True, {"e": "deep"}]}]}, "n": 1.25},
]
DATA_IDS = [
    "str",
    "empty-str",
    "unicode",
    "zero",
    "int",
    "negative",
    "float",
    "true",
    "false",
    "null",
    "empty-list",
    "list",
    "empty-object",
    "nested-object",
]


def body(frame: dict[str, Any]) -> str:
    return json.dumps(frame)


def refused(raw: str | None, code: str, **kwargs: Any) -> FrameError:
    with pytest.raises(FrameError) as info:
        parse_frame(raw, **kwargs)
    assert info.value.code == code, str(info.value)
    assert str(info.value)  # always a reason for the sender
    return info.value


# --- valid frames ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "model"),
    [
        ("joinRoom", protocol.JoinRoom),
        ("leaveRoom", protocol.LeaveRoom),
        ("presence", protocol.Presence),
    ],
)
@pytest.mark.parametrize("room", ["lobby", "r", "salle-été", "a:b/c.d_e-f", "r" * 128])
def test_room_frames(
    action: str,
    model: type[protocol.JoinRoom | protocol.LeaveRoom | protocol.Presence],
    room: str,
) -> None:
    frame = parse_frame(body({"action": action, "room": room}))
    assert isinstance(frame, model)
    assert frame.action == action
    assert frame.room == room


@pytest.mark.parametrize("data", DATA_VALUES, ids=DATA_IDS)
@pytest.mark.parametrize(
    ("to", "model", "field"),
    [
        ({"user": "u_456"}, protocol.ToUser, "user"),
        ({"room": "lobby"}, protocol.ToRoom, "room"),
        ({"connection": "Zx9_abc="}, protocol.ToConnection, "connection"),
    ],
    ids=["user", "room", "connection"],
)
def test_send_message_frames(data: Any, to: dict[str, str], model: type, field: str) -> None:
    frame = parse_frame(body({"action": "sendMessage", "to": to, "data": data}))
    assert isinstance(frame, protocol.SendMessage)
    assert isinstance(frame.to, model)
    assert getattr(frame.to, field) == to[field]
    assert frame.data == data
    assert type(frame.data) is type(data)  # no coercion: true stays a bool, 42 an int


@pytest.mark.parametrize("data", DATA_VALUES, ids=DATA_IDS)
def test_broadcast_frames(data: Any) -> None:
    frame = parse_frame(body({"action": "broadcast", "data": data}))
    assert isinstance(frame, protocol.Broadcast)
    assert frame.data == data
    assert type(frame.data) is type(data)


def test_whitespace_around_a_valid_frame_is_fine() -> None:
    frame = parse_frame('  \n{ "action" : "joinRoom", "room" : "lobby" }\n')
    assert frame == protocol.JoinRoom(action="joinRoom", room="lobby")


# --- bad_frame --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "{action: joinRoom}",
        '{"action": "joinRoom", "room": "lobby"',
        "   ",
        "",
        None,
        "[]",
        '[{"action": "joinRoom", "room": "lobby"}]',
        '"joinRoom"',
        "42",
        "1e999",
        "null",
        "true",
    ],
    ids=[
        "text",
        "unquoted",
        "truncated",
        "blank",
        "empty",
        "none",
        "array",
        "array-of-frame",
        "string",
        "number",
        "huge-number",
        "null",
        "bool",
    ],
)
def test_bad_frame(raw: str | None) -> None:
    refused(raw, "bad_frame")


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"action": "broadcast", "data": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"a":' * 50_000 + "1" + "}" * 50_000,
    ],
    ids=["arrays", "inside-data", "objects"],
)
def test_nesting_too_deep_for_json_loads_is_a_bad_frame(raw: str) -> None:
    refused(raw, "bad_frame")


def test_frame_error_is_an_invalid_input_error() -> None:
    error = refused("nope", "bad_frame")
    assert isinstance(error, InvalidInputError)
    assert isinstance(error, ValueError)


# --- unknown_action ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        {},
        {"room": "lobby"},
        {"action": None},
        {"action": 1},
        {"action": True},
        {"action": ["joinRoom"]},
        {"action": {"joinRoom": True}},
        {"action": ""},
    ],
    ids=["empty", "missing", "null", "int", "bool", "list", "object", "empty-string"],
)
def test_missing_or_non_string_action(frame: dict[str, Any]) -> None:
    error = refused(body(frame), "unknown_action")
    assert "joinRoom" in str(error)  # names the valid actions


@pytest.mark.parametrize("action", ["dance", "JoinRoom", "join_room", "$default", "a" * 64])
def test_unknown_action_is_named_back(action: str) -> None:
    error = refused(body({"action": action, "room": "lobby"}), "unknown_action")
    assert repr(action) in str(error)
    assert "sendMessage" in str(error)


@pytest.mark.parametrize("length", [65, 1000, 200_000])
def test_long_action_is_not_echoed(length: int) -> None:
    action = "x" * length
    error = refused(body({"action": action}), "unknown_action")
    assert "x" * 65 not in str(error)
    assert len(str(error)) < 200


# --- invalid_field ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"action": "joinRoom"}, "room"),
        ({"action": "leaveRoom"}, "room"),
        ({"action": "joinRoom", "room": 5}, "room"),
        ({"action": "joinRoom", "room": None}, "room"),
        ({"action": "joinRoom", "room": ["lobby"]}, "room"),
        ({"action": "joinRoom", "room": ""}, "room"),
        ({"action": "joinRoom", "room": "a#b"}, "room"),
        ({"action": "joinRoom", "room": "#"}, "room"),
        ({"action": "joinRoom", "room": "a b"}, "room"),
        ({"action": "joinRoom", "room": " lobby"}, "room"),
        ({"action": "joinRoom", "room": "lobby\n"}, "room"),
        ({"action": "joinRoom", "room": "a\tb"}, "room"),
        ({"action": "joinRoom", "room": "a\u00a0b"}, "room"),
        ({"action": "leaveRoom", "room": "r" * 129}, "room"),
        ({"action": "joinRoom", "room": "lobby", "extra": 1}, "extra"),
        ({"action": "leaveRoom", "room": "lobby", "userId": "u1"}, "userId"),
        ({"action": "sendMessage", "to": {"user": "u"}}, "data"),
        ({"action": "sendMessage", "data": "hi"}, "to"),
        ({"action": "sendMessage", "to": "u_456", "data": "hi"}, "to"),
        ({"action": "sendMessage", "to": None, "data": "hi"}, "to"),
        ({"action": "sendMessage", "to": {}, "data": "hi"}, "to"),
        ({"action": "sendMessage", "to": {"group": "g"}, "data": "hi"}, "to"),
        ({"action": "sendMessage", "to": {"user": "u", "room": "r"}, "data": "hi"}, "to"),
        ({"action": "sendMessage", "to": {"user": ""}, "data": "hi"}, "to"),
        ({"action": "sendMessage", "to": {"user": 7}, "data": "hi"}, "to"),
        ({"action": "sendMessage", "to": {"user": "u" * 513}, "data": "hi"}, "to"),
        ({"action": "sendMessage", "to": {"connection": "c" * 513}, "data": "hi"}, "to"),
        ({"action": "sendMessage", "to": {"room": "a#b"}, "data": "hi"}, "to"),
        ({"action": "sendMessage", "to": {"room": "a b"}, "data": "hi"}, "to"),
        ({"action": "sendMessage", "to": {"room": "r" * 129}, "data": "hi"}, "to"),
        ({"action": "sendMessage", "to": {"user": "u"}, "data": 1, "from": "x"}, "from"),
        ({"action": "broadcast"}, "data"),
        ({"action": "broadcast", "data": "hi", "to": {"user": "u"}}, "to"),
    ],
)
def test_invalid_field(frame: dict[str, Any], field: str) -> None:
    error = refused(body(frame), "invalid_field")
    message = str(error)
    assert message.startswith(f"{frame['action']}: ")
    assert field in message


def test_room_length_boundary() -> None:
    assert parse_frame(body({"action": "joinRoom", "room": "r" * 128}))
    refused(body({"action": "joinRoom", "room": "r" * 129}), "invalid_field")


# --- binary_not_supported ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [body({"action": "joinRoom", "room": "lobby"}), "aGVsbG8=", "", None, "not json"],
    ids=["valid-json", "base64", "empty", "none", "garbage"],
)
def test_binary_frames_are_refused(raw: str | None) -> None:
    refused(raw, "binary_not_supported", is_base64_encoded=True)


# --- frames to clients ------------------------------------------------------------------------


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def test_error_frame() -> None:
    frame = error_frame("unknown_action", "unknown action 'dance'; use one of joinRoom")
    assert json.loads(frame) == {
        "type": "error",
        "code": "unknown_action",
        "message": "unknown action 'dance'; use one of joinRoom",
    }
    assert frame == compact(json.loads(frame))
    assert b": " not in frame


def test_ack_frame() -> None:
    frame = ack_frame("leaveRoom", room="salle-été", wasMember=True)
    assert json.loads(frame) == {
        "type": "ack",
        "action": "leaveRoom",
        "room": "salle-été",
        "wasMember": True,
    }
    assert frame == compact(json.loads(frame))
    assert "salle-été".encode() in frame  # UTF-8, not \u escapes
    assert json.loads(ack_frame("joinRoom")) == {"type": "ack", "action": "joinRoom"}


@pytest.mark.parametrize("data", DATA_VALUES, ids=DATA_IDS)
def test_message_frame_round_trips(data: Any) -> None:
    frame = message_frame(SENDER, data)
    assert json.loads(frame) == {"type": "message", "from": SENDER, "data": data}
    assert frame == compact(json.loads(frame))


def test_parsed_frame_data_goes_out_unchanged() -> None:
    data = {"text": "hé", "n": [1, 2.5, None, False]}
    frame = parse_frame(body({"action": "sendMessage", "to": {"room": "lobby"}, "data": data}))
    assert isinstance(frame, protocol.SendMessage)
    assert json.loads(message_frame(SENDER, frame.data))["data"] == data


def overhead() -> int:
    return len(message_frame(SENDER, ""))


def test_message_frame_size_limit_is_exact() -> None:
    assert MAX_PAYLOAD_BYTES == 131072
    fits = "x" * (MAX_PAYLOAD_BYTES - overhead())
    assert len(message_frame(SENDER, fits)) == MAX_PAYLOAD_BYTES
    with pytest.raises(FrameError) as info:
        message_frame(SENDER, fits + "x")
    assert info.value.code == "too_large"
    assert "131073" in str(info.value)


@pytest.mark.parametrize("char", ["é", "€", "🎉"], ids=["2-bytes", "3-bytes", "4-bytes"])
def test_message_frame_counts_utf8_bytes(char: str) -> None:
    width = len(char.encode())
    room = MAX_PAYLOAD_BYTES - overhead()
    data = char * (room // width) + "x" * (room % width)
    assert len(data) < MAX_PAYLOAD_BYTES  # far fewer characters than bytes
    frame = message_frame(SENDER, data)
    assert len(frame) == MAX_PAYLOAD_BYTES
    assert json.loads(frame)["data"] == data
    with pytest.raises(FrameError) as info:
        message_frame(SENDER, data + "x")
    assert info.value.code == "too_large"
    # under the limit in characters, over it in bytes
    over = char * (MAX_PAYLOAD_BYTES // width)
    assert len(over) <= MAX_PAYLOAD_BYTES
    with pytest.raises(FrameError) as info:
        message_frame(SENDER, over)
    assert info.value.code == "too_large"


def test_message_frame_counts_json_escapes() -> None:
    quotes = '"' * ((MAX_PAYLOAD_BYTES - overhead()) // 2)  # each one is sent as \"
    assert len(message_frame(SENDER, quotes)) <= MAX_PAYLOAD_BYTES
    with pytest.raises(FrameError) as info:
        message_frame(SENDER, quotes + '"')
    assert info.value.code == "too_large"


def test_message_frame_size_counts_structured_data() -> None:
    data: JsonValue = {"items": ["y" * 1000] * 140}
    with pytest.raises(FrameError) as info:
        message_frame(SENDER, data)
    assert info.value.code == "too_large"


# --- bugs found -------------------------------------------------------------------------------


def outgoing(raw: str) -> bytes | None:
    """What a client's frame turns into on the wire, or None when it is refused."""
    try:
        frame = parse_frame(raw)
        assert isinstance(frame, protocol.SendMessage | protocol.Broadcast)
        return message_frame(SENDER, frame.data)
    except FrameError:
        return None


def strict_json(raw: bytes) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(raw, parse_constant=refuse)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_numbers_never_reach_other_clients(constant: str) -> None:
    sent = outgoing('{"action": "broadcast", "data": {"x": ' + constant + "}}")
    if sent is not None:
        strict_json(sent)


@pytest.mark.parametrize("action", ["broadcast", "sendMessage"])
def test_lone_surrogate_in_data_is_a_frame_error(action: str) -> None:
    frame: dict[str, Any] = {"action": action, "data": {"text": "\ud800"}}
    if action == "sendMessage":
        frame["to"] = {"user": "u_456"}
    sent = outgoing(json.dumps(frame))  # ensure_ascii: the body carries the escape "\ud800"
    if sent is not None:
        strict_json(sent)


def test_control_characters_in_room_are_invalid_field() -> None:
    refused('{"action": "joinRoom", "room": "a\\u0000b"}', "invalid_field")


def test_lone_surrogate_in_room_is_invalid_field() -> None:
    refused('{"action": "joinRoom", "room": "a\\ud800"}', "invalid_field")


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"action": "presence"}, "room"),
        ({"action": "presence", "room": ""}, "room"),
        ({"action": "presence", "room": "a b"}, "room"),
        ({"action": "presence", "room": "lobby", "since": 1}, "since"),
    ],
)
def test_invalid_presence_frames(frame: dict[str, Any], field: str) -> None:
    error = refused(body(frame), "invalid_field")
    assert str(error).startswith(f"presence: {field}")


def test_presence_is_a_known_action() -> None:
    assert "presence" in str(refused(body({"action": "nope"}), "unknown_action"))


def test_presence_frame() -> None:
    frame = protocol.presence_frame("lobby", [("alice", 2), ("bob", 1)], 4)
    assert json.loads(frame) == {
        "type": "presence",
        "room": "lobby",
        "users": [{"userId": "alice", "connections": 2}, {"userId": "bob", "connections": 1}],
        "connections": 4,
    }
    assert b" " not in frame  # compact, as every frame


def test_an_empty_room_s_presence_frame() -> None:
    assert json.loads(protocol.presence_frame("r", [], 0)) == {
        "type": "presence",
        "room": "r",
        "users": [],
        "connections": 0,
    }


@pytest.mark.parametrize("event", ["join", "leave"])
def test_presence_event_frames_carry_no_seq(event: Literal["join", "leave"]) -> None:
    sender = {"connectionId": "c1=", "userId": "alice"}
    frame = protocol.presence_event_frame(event, "lobby", sender)
    assert json.loads(frame) == {
        "type": "presence",
        "event": event,
        "room": "lobby",
        "connectionId": "c1=",
        "userId": "alice",
    }
    anonymous = protocol.presence_event_frame(event, "lobby", {"connectionId": "c2="})
    assert json.loads(anonymous) == {
        "type": "presence",
        "event": event,
        "room": "lobby",
        "connectionId": "c2=",
    }
