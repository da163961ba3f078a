"""The built-in chat app (docs/contracts.md, "Client protocol") on the in-memory test client:
every frame kind, every error code, the member-only room rule, anonymous connections and the
broadcast permission."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from wsfanout import ConnectionRefused, Settings
from wsfanout.apps.chat import app
from wsfanout.exceptions import QueueError
from wsfanout.testing import AppConnection, TestClient, message_event


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    async with TestClient(app) as running:
        yield running


def message(sender: AppConnection, data: Any, user: str | None = None) -> dict[str, Any]:
    origin = {"connectionId": sender.connection_id} | ({"userId": user} if user else {})
    return {"type": "message", "from": origin, "data": data}


async def test_join_and_leave_answer_acks_and_change_the_membership(client: TestClient) -> None:
    conn = await client.connect(user="alice")
    await conn.send({"action": "joinRoom", "room": "lobby"})
    assert await client.registry.is_member(conn.connection_id, "lobby")
    await conn.send({"action": "leaveRoom", "room": "lobby"})
    await conn.send({"action": "leaveRoom", "room": "lobby"})
    assert not await client.registry.is_member(conn.connection_id, "lobby")
    assert conn.received == [
        {"type": "ack", "action": "joinRoom", "room": "lobby", "seq": 0},  # durable: latest seq
        {"type": "ack", "action": "leaveRoom", "room": "lobby", "wasMember": True},
        {"type": "ack", "action": "leaveRoom", "room": "lobby", "wasMember": False},
    ]


async def test_send_to_a_user_reaches_every_connection_of_theirs_inline(
    client: TestClient,
) -> None:
    alice = await client.connect(user="alice")
    phone, laptop = await client.connect(user="bob"), await client.connect(user="bob")
    other = await client.connect(user="carol")
    await alice.send({"action": "sendMessage", "to": {"user": "bob"}, "data": {"n": 1}})
    assert phone.received == laptop.received == [message(alice, {"n": 1}, "alice")]
    assert other.received == []
    assert alice.received == [{"type": "ack", "action": "sendMessage", "delivered": 2}]
    assert client.jobs == [], "sent inline"


async def test_send_to_a_connection_and_to_one_that_is_gone(client: TestClient) -> None:
    sender, target = await client.connect(), await client.connect()
    await sender.send(
        {"action": "sendMessage", "to": {"connection": target.connection_id}, "data": "psst"}
    )
    assert target.received == [message(sender, "psst")], "anonymous: no userId"
    assert sender.new() == [{"type": "ack", "action": "sendMessage", "delivered": 1}]

    client.services.switchboard.open.pop(target.connection_id)  # gone; $disconnect was lost
    await sender.send(
        {"action": "sendMessage", "to": {"connection": target.connection_id}, "data": "x"}
    )
    [refused] = sender.new()
    assert (refused["type"], refused["code"]) == ("error", "not_found")
    assert target.connection_id not in client.registry.connections, "the 410 cleaned it up"


async def test_a_member_posts_to_a_room_through_a_job_without_itself(client: TestClient) -> None:
    sender, member, outsider = [await client.connect(user=u) for u in ("s", "m", "o")]
    for conn in (sender, member):
        await conn.send({"action": "joinRoom", "room": "lobby"})
    sender.new(), member.new()  # the acks, and the sender heard of the member's join
    joins = len(client.jobs)  # every chat room has presence on: each join was a job too
    await sender.send({"action": "sendMessage", "to": {"room": "lobby"}, "data": "hi room"})
    [job] = client.jobs[joins:]
    assert job.target.model_dump() == {"room": "lobby"}
    assert sender.new() == [
        {"type": "ack", "action": "sendMessage", "room": "lobby", "jobId": job.job_id, "seq": 1}
    ]
    assert member.new() == [
        {"type": "message", "room": "lobby", "seq": 1} | message(sender, "hi room", "s")
    ]
    assert outsider.received == []


async def test_a_non_member_may_not_post_to_a_room(client: TestClient) -> None:
    outsider, member = await client.connect(user="o"), await client.connect(user="m")
    await member.send({"action": "joinRoom", "room": "lobby"})
    member.new()
    joined = list(client.jobs)  # the member's join: a presence event (to nobody else)
    await outsider.send({"action": "sendMessage", "to": {"room": "lobby"}, "data": "hi"})
    assert outsider.received == [
        {
            "type": "error",
            "code": "forbidden",
            "message": "this connection may not send to room 'lobby'",
        }
    ]
    assert client.jobs == joined
    assert member.new() == []


async def test_broadcast_by_a_connection_the_authorizer_allowed(client: TestClient) -> None:
    boss = await client.connect(user="boss", claims={"canBroadcast": True})
    anon = await client.connect()
    pleb = await client.connect(user="pleb")
    await boss.send({"action": "broadcast", "data": "all hands"})
    [job] = client.jobs
    assert boss.received == [{"type": "ack", "action": "broadcast", "jobId": job.job_id}]
    assert anon.new() == pleb.new() == [message(boss, "all hands", "boss")]

    for refused_one in (pleb, anon):
        await refused_one.send({"action": "broadcast", "data": "spam"})
        assert refused_one.new() == [
            {"type": "error", "code": "forbidden", "message": "this connection may not broadcast"}
        ]
    assert len(client.jobs) == 1, "nothing more was sent"
    assert boss.received[1:] == []


async def test_broadcast_allowed_by_default_lets_anyone() -> None:
    async with TestClient(app, settings=Settings(broadcast_allowed_by_default=True)) as client:
        anon, other = await client.connect(), await client.connect()
        await anon.send({"action": "broadcast", "data": 1})
        assert other.received == [message(anon, 1)]
        assert anon.received[0]["type"] == "ack"


async def test_auth_required_refuses_anonymous_connections() -> None:
    async with TestClient(app, settings=Settings(auth_required=True)) as client:
        with pytest.raises(ConnectionRefused) as refused:
            await client.connect()
        assert refused.value.status == 401
        await client.connect(user="alice")
        assert len(client.registry.connections) == 1


async def test_without_an_authorizer_on_the_frame_the_registry_names_the_sender(
    client: TestClient,
) -> None:
    boss = await client.connect(user="boss", claims={"canBroadcast": True})
    other = await client.connect()
    await client.invoke(message_event(boss.connection_id, '{"action":"broadcast","data":"x"}'))
    assert other.received == [message(boss, "x", "boss")]


BAD_FRAMES: list[tuple[str | bytes, str]] = [
    ("not json", "bad_frame"),
    ("", "bad_frame"),
    ("[1, 2]", "bad_frame"),
    ('"just a string"', "bad_frame"),
    ('{"action": "broadcast", "data": NaN}', "bad_frame"),
    ('{"action": "broadcast", "data": 1e999}', "bad_frame"),
    ('{"data": 1}', "unknown_action"),
    ('{"action": "dance"}', "unknown_action"),
    ('{"action": 42}', "unknown_action"),
    ('{"action": "joinRoom"}', "invalid_field"),
    ('{"action": "joinRoom", "room": "a#b"}', "invalid_field"),
    ('{"action": "leaveRoom", "room": ""}', "invalid_field"),
    ('{"action": "joinRoom", "room": "lobby", "extra": true}', "invalid_field"),
    ('{"action": "sendMessage", "to": {"planet": "mars"}, "data": 1}', "invalid_field"),
    ('{"action": "sendMessage", "to": {"room": "lobby"}}', "invalid_field"),
    ('{"action": "broadcast"}', "invalid_field"),
    ('{"action": "sendMessage", "to": {"user": "u"}, "data": "\\ud800"}', "invalid_field"),
    (b'{"action": "joinRoom", "room": "lobby"}', "binary_not_supported"),
    ('{"action":"sendMessage","to":{"user":"u"},"data":"' + "x" * 140_000 + '"}', "too_large"),
]


@pytest.mark.parametrize(("body", "code"), BAD_FRAMES, ids=lambda v: repr(v)[:40])
async def test_a_bad_frame_gets_its_error_code_and_changes_nothing(
    client: TestClient, body: str | bytes, code: str
) -> None:
    conn = await client.connect(user="u", claims={"canBroadcast": True})
    other = await client.connect(user="u")
    before = dict(client.registry.connections), dict(client.registry.rooms)
    await client.invoke(message_event(conn.connection_id, body))  # as API Gateway routes it
    [answer] = conn.received
    assert (answer["type"], answer["code"]) == ("error", code)
    assert answer["message"]
    assert (dict(client.registry.connections), dict(client.registry.rooms)) == before
    assert other.received == []
    assert client.jobs == []


async def test_a_frame_on_another_actions_route_is_refused(client: TestClient) -> None:
    conn = await client.connect()
    body = '{"action":"leaveRoom","room":"lobby"}'
    await client.invoke(message_event(conn.connection_id, body, route_key="joinRoom"))
    [answer] = conn.received
    assert answer["code"] == "unknown_action"
    assert not await client.registry.is_member(conn.connection_id, "lobby")


async def test_join_from_a_connection_the_registry_lost_is_not_connected(
    client: TestClient,
) -> None:
    conn = await client.connect()
    await client.registry.delete(conn.connection_id)
    await conn.send({"action": "joinRoom", "room": "lobby"})
    [answer] = conn.received
    assert answer["code"] == "not_connected"
    assert client.registry.rooms.get("lobby", []) == []


async def test_a_queue_that_fails_answers_unavailable(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(job: Any) -> str:
        raise QueueError("the queue is down")

    boss = await client.connect(user="boss", claims={"canBroadcast": True})
    monkeypatch.setattr(client.services.queue, "enqueue", refuse)
    await boss.send({"action": "broadcast", "data": "x"})
    [answer] = boss.received
    assert answer["code"] == "unavailable"


async def test_disconnect_removes_the_connection_and_its_rooms(client: TestClient) -> None:
    conn = await client.connect(user="alice")
    await conn.send({"action": "joinRoom", "room": "lobby"})
    await conn.close()
    assert client.registry.connections == {}
    assert client.registry.rooms["lobby"] == []


async def test_whoami_tells_a_connection_its_own_id(client: TestClient) -> None:
    first, second = await client.connect(), await client.connect()
    await first.send({"action": "whoami"})
    await second.send({"action": "whoami"})
    assert first.received == [
        {"type": "ack", "action": "whoami", "connectionId": first.connection_id}
    ]
    assert second.received == [
        {"type": "ack", "action": "whoami", "connectionId": second.connection_id}
    ]
    await first.send({"action": "whoami", "extra": 1})
    assert first.received[-1]["code"] == "invalid_field"


async def test_presence_answers_a_member_who_is_in_the_room(client: TestClient) -> None:
    bob = await client.connect(user="bob")
    await bob.send({"action": "joinRoom", "room": "lobby"})
    for user in ("alice", "alice", None):
        conn = await client.connect(user=user)
        await conn.send({"action": "joinRoom", "room": "lobby"})
    bob.new()
    await bob.send({"action": "presence", "room": "lobby"})
    assert bob.new() == [
        {
            "type": "presence",
            "room": "lobby",
            "users": [{"userId": "alice", "connections": 2}, {"userId": "bob", "connections": 1}],
            "connections": 4,
        }
    ]


async def test_presence_through_default_and_refused_to_a_non_member(client: TestClient) -> None:
    member, outsider = await client.connect(user="m"), await client.connect(user="o")
    await member.send({"action": "joinRoom", "room": "lobby"})
    event = message_event(
        outsider.connection_id,
        '{"action": "presence", "room": "lobby"}',
        route_key="$default",
        authorizer={"userId": "o"},
    )
    await client.invoke(event)
    [refused] = outsider.new()
    assert (refused["type"], refused["code"]) == ("error", "forbidden")
    await member.send({"action": "presence", "room": ""})
    assert member.new()[-1]["code"] == "invalid_field"


async def test_join_and_leave_tell_the_other_members(client: TestClient) -> None:
    alice, bob = await client.connect(user="alice"), await client.connect(user="bob")
    await alice.send({"action": "joinRoom", "room": "lobby"})
    await bob.send({"action": "joinRoom", "room": "lobby"})
    await bob.send({"action": "leaveRoom", "room": "lobby"})
    bob_id = {"connectionId": bob.connection_id, "userId": "bob"}
    assert alice.new()[1:] == [
        {"type": "presence", "event": "join", "room": "lobby", **bob_id},
        {"type": "presence", "event": "leave", "room": "lobby", **bob_id},
    ]


async def test_a_stale_ping_writes_last_seen_once(client: TestClient) -> None:
    conn = await client.connect(user="alice")
    stored = client.registry.connections[conn.connection_id]
    old = stored.connected_at - timedelta(hours=1)
    client.registry.connections[conn.connection_id] = stored.model_copy(
        update={"connected_at": old}
    )
    await conn.send({"action": "ping"})
    await conn.send({"action": "ping"})  # fresh now: the keepalive's own write only
    assert client.registry.touches == [conn.connection_id] * 2
    assert conn.new() == [{"type": "pong"}, {"type": "pong"}]
