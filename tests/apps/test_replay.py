"""Durable rooms on the App API, in memory: seq, history, replay on join, reset, ping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from wsfanout import App
from wsfanout.app import Context
from wsfanout.apps.chat import app as chat
from wsfanout.core.history import HistoryBounds, StoredMessage, replay_of
from wsfanout.settings import Settings
from wsfanout.testing import AppConnection, TestClient

SETTINGS = Settings(room_history_messages=5, room_history_seconds=60)


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    async with TestClient(chat, settings=SETTINGS) as running:
        yield running


def say(data: Any) -> dict[str, Any]:
    return {"action": "sendMessage", "to": {"room": "lobby"}, "data": data}


async def member(client: TestClient, user: str, **join: Any) -> AppConnection:
    conn = await client.connect(user=user)
    await conn.send({"action": "joinRoom", "room": "lobby", **join})
    return conn


async def test_each_room_message_gets_the_next_seq_once_for_all_recipients(
    client: TestClient,
) -> None:
    sender, one, two = [await member(client, u) for u in ("s", "a", "b")]
    for conn in (sender, one, two):
        conn.new()
    for n in range(3):
        await sender.send(say(n))
    acks = sender.new()
    assert [a["seq"] for a in acks] == [1, 2, 3], "the sender learns each message's seq"
    expected = [
        {
            "type": "message",
            "room": "lobby",
            "seq": n + 1,
            "from": {"connectionId": sender.connection_id, "userId": "s"},
            "data": n,
        }
        for n in range(3)
    ]
    assert one.new() == two.new() == expected
    other = await client.connect(user="o")
    await other.send({"action": "joinRoom", "room": "elsewhere"})
    await other.send({"action": "sendMessage", "to": {"room": "elsewhere"}, "data": "x"})
    assert other.new()[-1]["seq"] == 1, "seq is per room"


async def test_join_since_replays_what_was_missed_in_order_then_acks_the_latest(
    client: TestClient,
) -> None:
    sender = await member(client, "s")
    for n in range(4):
        await sender.send(say(n))
    late = await member(client, "late", since=1)
    frames = late.new()
    assert [(f["type"], f.get("seq")) for f in frames] == [
        ("message", 2),
        ("message", 3),
        ("message", 4),
        ("ack", 4),
    ]
    assert [f["data"] for f in frames[:3]] == [1, 2, 3]
    assert frames[0]["from"] == {"connectionId": sender.connection_id, "userId": "s"}


async def test_join_without_since_or_up_to_date_gets_only_the_ack(client: TestClient) -> None:
    sender = await member(client, "s")
    await sender.send(say("x"))
    fresh = await member(client, "fresh")
    current = await member(client, "current", since=1)
    expected = [{"type": "ack", "action": "joinRoom", "room": "lobby", "seq": 1}]
    assert current.new() == expected
    joined = {"type": "presence", "event": "join", "room": "lobby"}  # the chat has presence on
    assert fresh.new() == [
        *expected,
        joined | {"connectionId": current.connection_id, "userId": "current"},
    ]


async def test_a_client_further_behind_than_the_count_bound_gets_reset(client: TestClient) -> None:
    sender = await member(client, "s")
    for n in range(8):  # the history keeps the last 5: seq 4..8
        await sender.send(say(n))
    behind = await member(client, "behind", since=2)
    assert behind.new() == [
        {"type": "reset", "room": "lobby", "seq": 8},
        {"type": "ack", "action": "joinRoom", "room": "lobby", "seq": 8},
    ]
    edge = await member(client, "edge", since=3)
    assert [f.get("seq") for f in edge.new()] == [4, 5, 6, 7, 8, 8], "since 3 is still covered"


async def test_a_client_cut_off_longer_than_the_time_bound_gets_reset(client: TestClient) -> None:
    history = client.services.rooms
    now = [1000.0]
    history.clock = lambda: now[0]
    sender = await member(client, "s")
    await sender.send(say("old"))
    now[0] += 61
    await sender.send(say("new"))
    stale = await member(client, "stale", since=0)
    assert [f["type"] for f in stale.new()] == ["reset", "ack"]
    recent = await member(client, "recent", since=1)
    assert [(f["type"], f.get("seq")) for f in recent.new()] == [("message", 2), ("ack", 2)], (
        "message 1 is expired, but a client that saw it is covered by message 2"
    )


async def test_ping_answers_pong_and_records_last_seen(client: TestClient) -> None:
    conn = await client.connect()
    await conn.send({"action": "ping"})
    assert conn.new() == [{"type": "pong"}]
    assert conn.connection_id in client.registry.last_seen


async def test_rooms_are_not_durable_unless_the_app_says_so() -> None:
    app = App()
    named = App(durable_rooms={"news"})

    @app.route("post")
    @named.route("post")
    async def post(ctx: Context) -> None:
        room = ctx.json["room"]
        await ctx.join(room)
        sent = await ctx.send({"type": "note"}, room=room)
        await ctx.reply({"seq": sent.seq})

    async with TestClient(app) as plain:
        conn = await plain.connect()
        await conn.send({"action": "post", "room": "news"})
        assert conn.received == [{"type": "note"}, {"seq": None}]
    async with TestClient(named) as durable:
        conn = await durable.connect()
        await conn.send({"action": "post", "room": "news"})
        await conn.send({"action": "post", "room": "chat"})
        assert conn.received == [
            {"type": "note", "room": "news", "seq": 1},
            {"seq": 1},
            {"type": "note"},
            {"seq": None},
        ]


async def test_a_durable_send_must_be_an_object_to_a_room() -> None:
    app = App(durable_rooms=True)
    async with TestClient(app) as running:
        with pytest.raises(TypeError, match="JSON object"):
            await app.send("text", room="lobby")
        with pytest.raises(TypeError, match="only a room"):
            await app.send({"a": 1}, everyone=True, durable=True)
        sent = await app.send({"type": "news"}, room="lobby")
        assert sent.seq == 1
        assert running.services.rooms.messages["lobby"][1].sender is None, "sent from outside"


def test_a_hole_inside_a_covered_window_is_a_message_still_being_written() -> None:
    bounds = HistoryBounds(messages=10, seconds=60)
    stored = [StoredMessage(seq, {"type": "m"}, 100.0) for seq in (3, 5)]
    replay = replay_of(5, 3, stored, bounds, now=100.0)
    assert not replay.reset
    assert [m.seq for m in replay.messages] == [5], "4 is missing: the client waits, asks again"
    assert replay_of(5, 7, stored, bounds, now=100.0).reset, "a seq beyond the latest"
    assert replay_of(5, 1, stored, bounds, now=100.0).reset, "neither 1 nor 2 is stored"


@pytest.mark.parametrize(
    "frame",
    [
        {"action": "joinRoom", "room": "lobby", "since": -1},
        {"action": "joinRoom", "room": "lobby", "since": "41"},
        {"action": "joinRoom", "room": "lobby", "since": 1.5},
        {"action": "ping", "extra": True},
    ],
)
async def test_a_bad_since_or_ping_is_an_invalid_field(client: TestClient, frame: Any) -> None:
    conn = await client.connect()
    await conn.send(frame)
    [answer] = conn.new()
    assert (answer["type"], answer["code"]) == ("error", "invalid_field")
    assert not await client.registry.is_member(conn.connection_id, "lobby")


async def test_a_durable_message_too_large_takes_no_seq(client: TestClient) -> None:
    sender = await member(client, "s")
    sender.new()
    await sender.send(say("x" * (128 * 1024 - 60)))
    [answer] = sender.new()
    assert (answer["type"], answer["code"]) == ("error", "too_large")
    assert await client.services.rooms.latest("lobby") == 0
