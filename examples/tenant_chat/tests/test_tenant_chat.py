"""The tenant chat on wsfanout's in-memory test client: every route, the refusal, the tenant
walls, and typing indicators that skip their sender."""

from __future__ import annotations

from typing import Any

import pytest

from examples.tenant_chat.app import announce, app
from wsfanout import ConnectionRefused
from wsfanout.testing import AppConnection, TestClient


async def member(client: TestClient, user: str, tenant: str, room: str = "lobby") -> AppConnection:
    """A connection of ``tenant`` that has joined ``room``, its join answer read."""
    conn = await client.connect(user=user, query={"tenant": tenant})
    await conn.send({"action": "join", "room": room})
    assert conn.new() == [{"type": "joined", "room": room}]
    return conn


def codes(frames: list[Any]) -> list[str]:
    return [frame["code"] for frame in frames if frame.get("type") == "error"]


async def test_a_connection_without_a_tenant_is_refused_and_not_stored() -> None:
    async with TestClient(app) as client:
        with pytest.raises(ConnectionRefused) as refused:
            await client.connect(user="alice")
        assert refused.value.status == 400
        with pytest.raises(ConnectionRefused):
            await client.connect(user="alice", query={"tenant": ""})
        assert client.registry.connections == {}


async def test_the_tenant_is_stored_and_rooms_are_scoped_to_it() -> None:
    async with TestClient(app) as client:
        alice = await member(client, "alice", "acme")
        stored = client.registry.connections[alice.connection_id]
        assert stored.attributes == {"tenant": "acme"}
        assert await client.registry.is_member(alice.connection_id, "acme:lobby")
        assert not await client.registry.is_member(alice.connection_id, "lobby")


async def test_say_reaches_every_member_of_the_tenants_room_only() -> None:
    async with TestClient(app) as client:
        alice = await member(client, "alice", "acme")
        bob = await member(client, "bob", "acme")
        eve = await member(client, "eve", "globex")  # the same room name, another tenant
        carol = await member(client, "carol", "acme", room="kitchen")

        await alice.send({"action": "say", "room": "lobby", "text": "hello"})
        said = {"type": "said", "room": "lobby", "who": "alice", "text": "hello"}
        assert alice.new() == [said], "the sender sees its own message"
        assert bob.new() == [said]
        assert eve.new() == [], "another tenant's lobby is another room"
        assert carol.new() == [], "another room of the same tenant"


async def test_typing_reaches_the_other_members_and_not_the_sender() -> None:
    async with TestClient(app) as client:
        alice = await member(client, "alice", "acme")
        bob = await member(client, "bob", "acme")
        eve = await member(client, "eve", "globex")
        await alice.send({"action": "typing", "room": "lobby"})
        assert bob.new() == [{"type": "typing", "room": "lobby", "who": "alice"}]
        assert alice.new() == []
        assert eve.new() == []


async def test_only_members_may_say_or_type() -> None:
    async with TestClient(app) as client:
        bob = await member(client, "bob", "acme")
        alice = await client.connect(user="alice", query={"tenant": "acme"})
        await alice.send({"action": "say", "room": "lobby", "text": "hi"})
        await alice.send({"action": "typing", "room": "lobby"})
        assert codes(alice.new()) == ["forbidden", "forbidden"]
        assert bob.new() == []
        assert client.jobs == [], "nothing was sent"


async def test_leave_stops_the_messages_and_says_whether_it_was_a_member() -> None:
    async with TestClient(app) as client:
        alice = await member(client, "alice", "acme")
        bob = await member(client, "bob", "acme")
        await bob.send({"action": "leave", "room": "lobby"})
        assert bob.new() == [{"type": "left", "room": "lobby", "was_member": True}]
        await bob.send({"action": "leave", "room": "lobby"})
        assert bob.new() == [{"type": "left", "room": "lobby", "was_member": False}]
        await alice.send({"action": "say", "room": "lobby", "text": "anyone?"})
        assert bob.new() == []
        assert [frame["type"] for frame in alice.new()] == ["said"]


async def test_the_rules_keep_a_connection_out_of_rooms_that_name_another_tenant() -> None:
    async with TestClient(app) as client:
        eve = await client.connect(user="eve", query={"tenant": "globex"})
        await eve.send({"action": "join", "room": "acme:lobby"})  # would be globex:acme:lobby
        assert codes(eve.new()) == ["forbidden"]
        assert client.registry.rooms.get("globex:acme:lobby", []) == []


async def test_frames_without_a_room_or_text_are_answered_bad_request() -> None:
    async with TestClient(app) as client:
        alice = await member(client, "alice", "acme")
        for frame in (
            {"action": "join"},
            {"action": "leave", "room": ""},
            {"action": "typing", "room": 7},
            {"action": "say", "room": "lobby"},
        ):
            await alice.send(frame)
        assert codes(alice.new()) == ["bad_request"] * 4


@pytest.mark.parametrize("frame", [{"action": "dance"}, "not json", [1, 2]], ids=repr)
async def test_anything_else_is_answered_unknown_action(frame: Any) -> None:
    async with TestClient(app) as client:
        alice = await client.connect(user="alice", query={"tenant": "acme"})
        await alice.send(frame)
        [error] = alice.new()
        assert error["code"] == "unknown_action"
        assert "join, leave, say, typing" in error["message"]


async def test_a_backend_announces_to_one_tenants_room() -> None:
    async with TestClient(app) as client:
        alice = await member(client, "alice", "acme")
        eve = await member(client, "eve", "globex")
        await announce("acme", "lobby", "maintenance at noon")
        assert alice.new() == [
            {"type": "announcement", "room": "lobby", "text": "maintenance at noon"}
        ]
        assert eve.new() == []
    with pytest.raises(RuntimeError, match="async with app"):
        await announce("acme", "lobby", "nobody hears this")
