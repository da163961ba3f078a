"""Presence on the App API, in memory: who is in a room, join/leave events to the other members,
the live rule (lastSeen or connectedAt within PRESENCE_TIMEOUT_SECONDS) and its refresh."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from wsfanout import App
from wsfanout.app import Context, Presence
from wsfanout.core.models import BroadcastJob
from wsfanout.exceptions import QueueError, RegistryError
from wsfanout.settings import Settings
from wsfanout.testing import AppConnection, TestClient

TIMEOUT_S = 60
SETTINGS = Settings(presence_timeout_seconds=TIMEOUT_S)
Rooms = bool | Collection[str] | Callable[[str], bool]


def presence_app(presence_rooms: Rooms = True, **options: Any) -> App:
    app = App(presence_rooms=presence_rooms, **options)

    @app.route("join")
    async def join(ctx: Context) -> None:
        await ctx.join(ctx.json["room"])
        await ctx.reply({"type": "ack", "action": "join"})

    @app.route("leave")
    async def leave(ctx: Context) -> None:
        was = await ctx.leave(ctx.json["room"])
        await ctx.reply({"type": "ack", "action": "leave", "was": was})

    @app.route("who")
    async def who(ctx: Context) -> None:
        present = await ctx.presence(ctx.json["room"])
        await ctx.reply({"users": list(present.users.items()), "connections": present.connections})

    @app.route("noop")
    async def noop(ctx: Context) -> None:
        return None

    return app


def event(kind: str, conn: AppConnection, room: str = "lobby", user: str | None = None) -> Any:
    frame = {"type": "presence", "event": kind, "room": room, "connectionId": conn.connection_id}
    return frame | ({"userId": user} if user else {})


async def joined(client: TestClient, user: str | None, *rooms: str) -> AppConnection:
    conn = await client.connect(user=user)
    for room in rooms:
        await conn.send({"action": "join", "room": room})
    return conn


def age(client: TestClient, conn: AppConnection, seconds: float, *, seen: float | None = None):
    """Make the stored connection look ``seconds`` old (``seen``: last seen that long ago)."""
    now = datetime.now(UTC)
    stored = client.registry.connections[conn.connection_id]
    client.registry.connections[conn.connection_id] = stored.model_copy(
        update={
            "connected_at": now - timedelta(seconds=seconds),
            "last_seen": None if seen is None else now - timedelta(seconds=seen),
        }
    )


async def test_members_and_their_connection_counts_sorted_by_user() -> None:
    async with TestClient(presence_app(), settings=SETTINGS) as client:
        asker = await joined(client, "bob", "lobby")
        for user in ("alice", "alice", None):
            await joined(client, user, "lobby")
        await joined(client, "carol", "elsewhere")
        asker.new()
        await asker.send({"action": "who", "room": "lobby"})
        assert asker.new() == [{"users": [["alice", 2], ["bob", 1]], "connections": 4}]


async def test_only_a_member_may_ask() -> None:
    async with TestClient(presence_app(), settings=SETTINGS) as client:
        await joined(client, "alice", "lobby")
        outsider = await client.connect(user="carol")
        await outsider.send({"action": "who", "room": "lobby"})
        assert outsider.new() == [
            {
                "type": "error",
                "code": "forbidden",
                "message": "this connection may not see who is in 'lobby'",
            }
        ]


async def test_a_join_is_told_to_the_others_after_the_joiner_s_ack() -> None:
    async with TestClient(presence_app(), settings=SETTINGS) as client:
        alice = await joined(client, "alice", "lobby")
        alice.new()
        bob = await joined(client, "bob", "lobby")
        anonymous = await joined(client, None, "lobby")
        assert bob.new() == [
            {"type": "ack", "action": "join"},
            event("join", anonymous),
        ], "not told of its own join"
        assert anonymous.new() == [{"type": "ack", "action": "join"}]
        assert alice.new() == [event("join", bob, user="bob"), event("join", anonymous)]
        posts = [(p.connection_id, json.loads(p.data)) for p in client.services.switchboard.posts]
        ack = posts.index((bob.connection_id, {"type": "ack", "action": "join"}))
        assert ack < posts.index((alice.connection_id, event("join", bob, user="bob")))
        assert all(b'"seq"' not in job.payload for job in client.jobs), "never durable"


async def test_a_leave_that_found_a_membership_is_told_and_a_rejoin_is_not_a_join() -> None:
    async with TestClient(presence_app(), settings=SETTINGS) as client:
        alice = await joined(client, "alice", "lobby")
        bob = await joined(client, "bob", "lobby")
        await bob.send({"action": "join", "room": "lobby"})  # already in it
        alice.new()
        await bob.send({"action": "leave", "room": "lobby"})
        await bob.send({"action": "leave", "room": "lobby"})  # not in it any more
        assert alice.new() == [event("leave", bob, user="bob")]


async def test_disconnect_tells_every_presence_room_it_was_in() -> None:
    async with TestClient(presence_app({"lobby", "games"}), settings=SETTINGS) as client:
        stays = await joined(client, "alice", "lobby", "games", "quiet")
        goes = await joined(client, "bob", "lobby", "games", "quiet")
        stays.new()
        await goes.close()
        got = stays.new()
        assert sorted(got, key=lambda frame: frame["room"]) == [
            event("leave", goes, "games", "bob"),
            event("leave", goes, "lobby", "bob"),
        ]
        assert client.registry.connections.keys() == {stays.connection_id}


async def test_a_predicate_says_which_rooms_have_presence() -> None:
    async with TestClient(presence_app(lambda room: room.startswith("p-")), settings=SETTINGS) as c:
        alice = await joined(c, "alice", "p-1", "q-1")
        alice.new()
        bob = await joined(c, "bob", "p-1", "q-1")
        assert alice.new() == [event("join", bob, "p-1", "bob")]


async def test_a_stale_connection_is_not_counted_until_it_shows_life() -> None:
    async with TestClient(presence_app(), settings=SETTINGS) as client:
        asker = await joined(client, "alice", "lobby")
        lost = await joined(client, "bob", "lobby")  # its $disconnect will be "lost"
        client.services.switchboard.open.pop(lost.connection_id)
        age(client, lost, 10 * TIMEOUT_S, seen=TIMEOUT_S + 1)
        asker.new()
        await asker.send({"action": "who", "room": "lobby"})
        assert asker.new() == [{"users": [["alice", 1]], "connections": 1}]

        age(client, lost, 10 * TIMEOUT_S, seen=TIMEOUT_S - 5)  # lastSeen within the timeout
        await asker.send({"action": "who", "room": "lobby"})
        assert asker.new() == [{"users": [["alice", 1], ["bob", 1]], "connections": 2}]


async def test_a_frame_refreshes_last_seen_at_most_once_per_window() -> None:
    async with TestClient(presence_app(), settings=SETTINGS) as client:
        conn = await joined(client, "alice", "lobby")
        for _ in range(3):
            await conn.send({"action": "noop"})
        assert client.registry.touches == [], "connected just now: nothing to refresh"

        age(client, conn, TIMEOUT_S * 2)  # older than the window (a quarter of the timeout)
        for _ in range(3):
            await conn.send({"action": "noop"})
        assert client.registry.touches == [conn.connection_id]
        stored = client.registry.connections[conn.connection_id]
        assert stored.last_seen is not None
        assert stored.seen >= datetime.now(UTC) - timedelta(seconds=2)

        age(client, conn, TIMEOUT_S * 2, seen=TIMEOUT_S / 4 - 3)  # just inside the window
        await conn.send({"action": "noop"})
        assert client.registry.touches == [conn.connection_id]
        age(client, conn, TIMEOUT_S * 2, seen=TIMEOUT_S / 4 + 1)  # just past it
        await conn.send({"action": "noop"})
        assert client.registry.touches == [conn.connection_id] * 2


async def test_the_refresh_reads_the_item_even_without_load_attributes() -> None:
    async with TestClient(presence_app(load_attributes=False), settings=SETTINGS) as client:
        conn = await joined(client, "alice", "lobby")
        age(client, conn, TIMEOUT_S)
        await conn.send({"action": "noop"})
        assert client.registry.touches == [conn.connection_id]


@pytest.mark.parametrize("off", [False, ()], ids=["false", "no-rooms"])
async def test_presence_off_sends_no_events_and_writes_nothing_more(off: Rooms) -> None:
    async with TestClient(presence_app(off), settings=SETTINGS) as client:
        alice = await joined(client, "alice", "lobby")
        bob = await joined(client, "bob", "lobby")
        age(client, bob, TIMEOUT_S * 2)
        await bob.send({"action": "noop"})
        await bob.send({"action": "leave", "room": "lobby"})
        await bob.close()
        assert alice.new() == [{"type": "ack", "action": "join"}]
        assert client.jobs == []
        assert client.registry.touches == []
        await alice.send({"action": "who", "room": "lobby"})  # asking works in any room
        assert alice.new() == [{"users": [["alice", 1]], "connections": 1}]


async def test_a_backend_asks_without_rules() -> None:
    app = presence_app()
    async with TestClient(app, settings=SETTINGS) as client:
        await joined(client, "alice", "lobby")
        await joined(client, None, "lobby")
        assert await app.presence("lobby") == Presence("lobby", {"alice": 1}, 2)
        assert await app.presence("empty") == Presence("empty", {}, 0)


async def test_a_failed_event_job_is_logged_not_the_sender_s_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with TestClient(presence_app(), settings=SETTINGS) as client:
        alice = await joined(client, "alice", "lobby")

        async def refuse(job: object) -> str:
            raise QueueError("the queue is down")

        client.services.queue.enqueue = refuse  # type: ignore[method-assign]
        bob = await client.connect(user="bob")
        await bob.send({"action": "join", "room": "lobby"})
        assert bob.new() == [{"type": "ack", "action": "join"}]
        assert await client.registry.is_member(bob.connection_id, "lobby")
        assert "could not send a presence event" in caplog.text
        assert alice.new() == [{"type": "ack", "action": "join"}]


async def test_a_disconnect_whose_rooms_cannot_be_read_still_removes_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with TestClient(presence_app(), settings=SETTINGS) as client:
        stays = await joined(client, "alice", "lobby")
        goes = await joined(client, "bob", "lobby")
        stays.new()

        async def unreadable(connection_id: str) -> list[str]:
            raise RegistryError("DynamoDB is down")

        client.registry.rooms_of = unreadable  # type: ignore[method-assign]
        await goes.close()
        assert goes.connection_id not in client.registry.connections
        assert stays.new() == []
        assert "no leave events" in caplog.text


async def test_one_event_that_cannot_be_enqueued_does_not_stop_the_others() -> None:
    async with TestClient(presence_app(), settings=SETTINGS) as client:
        stays = await joined(client, "alice", "one", "two")
        goes = await joined(client, "bob", "one", "two")
        stays.new()
        queue = client.services.queue
        run = queue.enqueue
        refused: list[str] = []

        async def first_refused(job: BroadcastJob) -> str:
            if not refused:
                refused.append(job.model_dump()["target"]["room"])
                raise QueueError("the queue is down")
            return await run(job)

        queue.enqueue = first_refused  # type: ignore[method-assign]
        await goes.close()
        [told] = stays.new()
        assert len(refused) == 1
        assert told["room"] != refused[0]
        assert told == event("leave", goes, told["room"], "bob")
