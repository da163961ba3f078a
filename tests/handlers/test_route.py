"""The route handler with realistic API Gateway events, moto server and the local endpoint."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest

from tests.events import load_event
from tests.handlers.conftest import Stack
from wsfanout.apps import chat
from wsfanout.handlers import route
from wsfanout.handlers.runtime import reset_runtime
from wsfanout.local.containers import hosting
from wsfanout.testing import LambdaContext


def frames(stack: Stack, connection_id: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in stack.fake.received(connection_id)]


def connection_items(stack: Stack) -> dict[str, dict[str, Any]]:
    items = stack.dynamodb.scan(TableName=stack.table)["Items"]
    return {f"{i['PK']['S']}|{i['SK']['S']}": i for i in items}


def test_connect_stores_the_connection_with_its_user(stack: Stack) -> None:
    assert stack.connect("a=", user="u_1", can_broadcast=True) == {"statusCode": 200}
    item = connection_items(stack)["CONN#a=|CONN"]
    assert item["connectionId"]["S"] == "a="
    assert item["userId"]["S"] == "u_1"
    assert item["GSI1PK"]["S"] == "USER#u_1"
    assert item["canBroadcast"]["BOOL"] is True
    assert item["endpoint"]["S"] == stack.management_url
    assert int(item["ttl"]["N"]) > 0
    assert item["connectedAt"]["S"].endswith("Z")


def test_anonymous_connect_and_disconnect_round_trip(stack: Stack) -> None:
    assert stack.connect("a=") == {"statusCode": 200}
    assert stack.message("a=", '{"action":"joinRoom","room":"lobby"}') == {"statusCode": 200}
    assert set(connection_items(stack)) == {"CONN#a=|CONN", "CONN#a=|ROOM#lobby"}
    assert "userId" not in connection_items(stack)["CONN#a=|CONN"]
    assert stack.disconnect("a=") == {"statusCode": 200}
    assert connection_items(stack) == {}


def test_auth_required_refuses_anonymous(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_REQUIRED", "true")
    reset_runtime()
    assert stack.connect("anon=") == {"statusCode": 401}
    assert stack.connect("known=", user="u_1") == {"statusCode": 200}
    assert set(connection_items(stack)) == {"CONN#known=|CONN"}


def test_disconnect_of_an_unknown_connection_is_fine(stack: Stack) -> None:
    assert stack.disconnect("never-connected=") == {"statusCode": 200}


def test_join_and_leave_rooms_answer_with_acks(stack: Stack) -> None:
    stack.connect("a=")
    stack.message("a=", '{"action":"joinRoom","room":"lobby"}')
    stack.message("a=", '{"action":"leaveRoom","room":"lobby"}')
    stack.message("a=", '{"action":"leaveRoom","room":"lobby"}')
    assert frames(stack, "a=") == [
        {"type": "ack", "action": "joinRoom", "room": "lobby", "seq": 0},  # durable: latest seq
        {"type": "ack", "action": "leaveRoom", "room": "lobby", "wasMember": True},
        {"type": "ack", "action": "leaveRoom", "room": "lobby", "wasMember": False},
    ]
    assert set(connection_items(stack)) == {"CONN#a=|CONN"}


def test_send_to_a_user_reaches_all_their_connections(stack: Stack) -> None:
    stack.connect("s=", user="sender")
    for cid in ("u1a=", "u1b="):
        stack.connect(cid, user="u_1")
    stack.connect("other=", user="u_2")
    body = json.dumps({"action": "sendMessage", "to": {"user": "u_1"}, "data": {"n": 1}})
    assert stack.message("s=", body, user="sender") == {"statusCode": 200}
    expected = {
        "type": "message",
        "from": {"connectionId": "s=", "userId": "sender"},
        "data": {"n": 1},
    }
    assert frames(stack, "u1a=") == [expected]
    assert frames(stack, "u1b=") == [expected]
    assert frames(stack, "other=") == []
    assert frames(stack, "s=") == [{"type": "ack", "action": "sendMessage", "delivered": 2}]


def test_send_to_a_connection(stack: Stack) -> None:
    stack.connect("s=")
    stack.connect("t=")
    stack.message("s=", '{"action":"sendMessage","to":{"connection":"t="},"data":"psst"}')
    assert frames(stack, "t=") == [
        {"type": "message", "from": {"connectionId": "s="}, "data": "psst"}
    ]
    assert frames(stack, "s=")[-1] == {"type": "ack", "action": "sendMessage", "delivered": 1}


def test_send_to_a_gone_connection_answers_not_found(stack: Stack) -> None:
    stack.connect("s=")
    stack.connect("t=")
    stack.fake.remove("t=")  # its socket closed, and $disconnect was lost
    stack.message("s=", '{"action":"sendMessage","to":{"connection":"t="},"data":"x"}')
    [answer] = frames(stack, "s=")
    assert answer["type"] == "error"
    assert answer["code"] == "not_found"
    assert "CONN#t=|CONN" not in connection_items(stack), "the 410 cleaned the registry"


def test_send_to_a_room_goes_through_the_queue(stack: Stack) -> None:
    for cid in ("s=", "m1=", "m2=", "out="):
        stack.connect(cid)
    for cid in ("s=", "m1=", "m2="):
        stack.message(cid, '{"action":"joinRoom","room":"lobby"}')
    stack.drain()  # the joins' presence events (the chat's rooms have presence on)
    stack.fake.reset()
    stack.message("s=", '{"action":"sendMessage","to":{"room":"lobby"},"data":"hi room"}')
    [ack] = frames(stack, "s=")
    assert ack["action"] == "sendMessage"
    assert ack["room"] == "lobby"
    assert ack["seq"] == 1, "the chat app's rooms are durable"
    assert stack.fake.counts() == {"s=": 1}, "nothing is sent before the worker runs"
    stack.drain()
    message = {
        "type": "message",
        "room": "lobby",
        "seq": 1,
        "from": {"connectionId": "s="},
        "data": "hi room",
    }
    assert frames(stack, "m1=") == [message]
    assert frames(stack, "m2=") == [message]
    assert frames(stack, "out=") == []
    assert frames(stack, "s=") == [ack], "the sender is excluded"


def test_only_members_send_to_a_room(stack: Stack) -> None:
    """Rooms are not open: a connection that has not joined is refused (issue #13)."""
    for cid in ("out=", "m="):
        stack.connect(cid)
    stack.message("m=", '{"action":"joinRoom","room":"lobby"}')
    stack.drain()  # the join's presence event (to nobody but the joiner, who is excluded)
    stack.fake.reset()
    stack.message("out=", '{"action":"sendMessage","to":{"room":"lobby"},"data":"hi"}')
    assert_forbidden(stack, "out=", "this connection may not send to room 'lobby'", "m=")


def assert_forbidden(stack: Stack, sender: str, message: str, bystander: str) -> None:
    """The sender got exactly the ``forbidden`` frame; nothing was enqueued or delivered."""
    assert frames(stack, sender) == [{"type": "error", "code": "forbidden", "message": message}]
    assert stack.receive() == [], "nothing was enqueued"
    assert frames(stack, bystander) == []


def test_broadcast_allowed(stack: Stack) -> None:
    ids = [f"c{i}=" for i in range(30)]
    for cid in ids:
        stack.connect(cid)
    stack.connect("boss=", user="boss", can_broadcast=True)
    stack.message(
        "boss=", '{"action":"broadcast","data":"all hands"}', user="boss", can_broadcast=True
    )
    [ack] = frames(stack, "boss=")
    assert ack["action"] == "broadcast"
    stack.drain()
    expected = {
        "type": "message",
        "from": {"connectionId": "boss=", "userId": "boss"},
        "data": "all hands",
    }
    for cid in ids:
        assert frames(stack, cid) == [expected]
    assert frames(stack, "boss=") == [ack]


@pytest.mark.parametrize("via", ["authorizer", "registry"])
def test_broadcast_denied(stack: Stack, via: str) -> None:
    stack.connect("c=")
    stack.connect("pleb=", user="pleb")
    user = "pleb" if via == "authorizer" else None
    stack.message("pleb=", '{"action":"broadcast","data":"spam"}', user=user)
    assert_forbidden(stack, "pleb=", "this connection may not broadcast", "c=")


def test_broadcast_permission_from_the_registry(stack: Stack) -> None:
    """Without an authorizer context on the message, the stored connection decides."""
    stack.connect("boss=", user="boss", can_broadcast=True)
    stack.message("boss=", '{"action":"broadcast","data":"x"}', user=None)
    assert frames(stack, "boss=")[0]["type"] == "ack"


BAD_FRAMES = [
    ("not json", "bad_frame", False),
    ("", "bad_frame", False),
    ("[1, 2]", "bad_frame", False),
    ('"just a string"', "bad_frame", False),
    ('{"data": 1}', "unknown_action", False),
    ('{"action": "dance"}', "unknown_action", False),
    ('{"action": 42}', "unknown_action", False),
    ('{"action": "joinRoom"}', "invalid_field", False),
    ('{"action": "joinRoom", "room": 7}', "invalid_field", False),
    ('{"action": "joinRoom", "room": ""}', "invalid_field", False),
    ('{"action": "joinRoom", "room": "a#b"}', "invalid_field", False),
    ('{"action": "joinRoom", "room": "lobby", "extra": true}', "invalid_field", False),
    ('{"action": "sendMessage", "to": {"planet": "mars"}, "data": 1}', "invalid_field", False),
    ('{"action": "sendMessage", "to": {"room": "lobby"}}', "invalid_field", False),
    ('{"action": "sendMessage", "to": "lobby", "data": 1}', "invalid_field", False),
    ("eyJhY3Rpb24iOiJqb2luUm9vbSJ9", "binary_not_supported", True),
    ('{"action": "broadcast", "data": NaN}', "bad_frame", False),
    (
        '{"action": "sendMessage", "to": {"connection": "t="}, "data": "\\ud800"}',
        "invalid_field",
        False,
    ),
    (
        '{"action":"sendMessage","to":{"connection":"t="},"data":"' + "x" * 140_000 + '"}',
        "too_large",
        False,
    ),
]


@pytest.mark.parametrize(("body", "code", "binary"), BAD_FRAMES)
def test_malformed_frames_get_an_error_frame(
    stack: Stack, body: str, code: str, binary: bool
) -> None:
    stack.connect("a=")
    stack.connect("t=")
    stack.message("a=", '{"action":"joinRoom","room":"lobby"}')
    before = connection_items(stack)
    stack.fake.reset()
    assert stack.message("a=", body, base64=binary) == {"statusCode": 200}
    [answer] = frames(stack, "a=")
    assert answer["type"] == "error"
    assert answer["code"] == code
    assert answer["message"]
    assert connection_items(stack) == before, "the registry is left intact"
    assert stack.fake.counts() == {"a=": 1}, "nobody else got anything"


def test_missing_body_field_gets_an_error_frame(stack: Stack) -> None:
    stack.connect("a=")
    event = load_event("ws_message")
    event["requestContext"]["connectionId"] = "a="
    del event["body"]
    assert route.handler(event, LambdaContext()) == {"statusCode": 200}
    assert frames(stack, "a=")[0]["code"] == "bad_frame"


def test_endpoint_derived_from_the_event(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without APIGW_MANAGEMENT_ENDPOINT the endpoint comes from domainName and stage."""
    monkeypatch.delenv("APIGW_MANAGEMENT_ENDPOINT")
    reset_runtime()
    host = stack.endpoint.url.removeprefix("http://")
    event = load_event("ws_connect_anonymous")
    event["requestContext"].update(connectionId="local=", domainName=host, stage="dev")
    assert route.handler(event, LambdaContext()) == {"statusCode": 200}
    assert connection_items(stack)["CONN#local=|CONN"]["endpoint"]["S"] == f"http://{host}/dev"
    message = load_event("ws_message", body='{"action":"joinRoom","room":"r"}')
    message["requestContext"].update(
        connectionId="local=", domainName=host, stage="dev", routeKey="joinRoom"
    )
    route.handler(message, LambdaContext())
    assert frames(stack, "local=") == [{"type": "ack", "action": "joinRoom", "room": "r", "seq": 0}]


def test_all_target_never_reaches_membership_items(stack: Stack) -> None:
    stack.connect("a=")
    stack.message("a=", '{"action":"joinRoom","room":"lobby"}')
    stack.connect("boss=", user="boss", can_broadcast=True)
    stack.fake.reset()
    stack.message("boss=", '{"action":"broadcast","data":"x"}', user="boss", can_broadcast=True)
    stack.drain()
    assert stack.fake.counts() == {"a=": 1, "boss=": 1}


def test_an_event_that_is_not_from_api_gateway_is_refused(stack: Stack) -> None:
    event = load_event("ws_message")
    del event["requestContext"]["connectionId"]
    assert route.handler(event, LambdaContext()) == {"statusCode": 400}
    assert stack.fake.counts() == {}


Logs = Callable[[], list[dict[str, Any]]]


# The process's runtime (Lambda's) and the local stack's per-thread containers.
@pytest.mark.parametrize("host", [nullcontext, hosting], ids=["process", "threads"])
def test_every_log_line_of_a_warm_container_names_its_own_connection(
    stack: Stack, json_logs: Logs, host: Callable[[], AbstractContextManager[Any]]
) -> None:
    """The container's loop runs every invocation; each must log its own connection and route,
    not the keys of the invocation that first ran on the loop."""
    with host():
        for connection_id in ("one=", "two=", "three="):
            before = len(json_logs())
            stack.connect(connection_id)
            stack.message(connection_id, '{"action":"joinRoom"}')  # refused: logs a line too
            lines = json_logs()[before:]
            assert len(lines) >= 2
            assert [line["connection_id"] for line in lines] == [connection_id] * len(lines)
            routes = ["$connect"] + ["joinRoom"] * (len(lines) - 1)  # selected by the action
            assert [line["route"] for line in lines] == routes


@pytest.fixture
def log_event(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``POWERTOOLS_LOGGER_LOG_EVENT=true``, read when the handler is decorated: the module is
    imported again with it set (as a cold container would), then restored."""
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    importlib.reload(chat)  # the app decorates its entrypoint when it is built
    importlib.reload(route)
    try:
        yield
    finally:
        monkeypatch.delenv("POWERTOOLS_LOGGER_LOG_EVENT")
        importlib.reload(chat)
        importlib.reload(route)


def test_the_token_is_never_logged_even_when_events_are(
    stack: Stack, json_logs: Logs, log_event: None
) -> None:
    token = load_event("ws_connect")["queryStringParameters"]["token"]
    assert stack.connect("t=", user="u_1") == {"statusCode": 200}
    lines = json_logs()
    assert [line["message"] for line in lines] == ["connected"]
    assert token not in json.dumps(lines)
