"""Presence end to end on the local stack: two clients of two users (from JWTs, through the
real authorizer) see each other in a room, the one that stays gets the other's join and leave
events, and a member whose ``$disconnect`` was lost drops out once PRESENCE_TIMEOUT_SECONDS
passed without a sign of life, while the clients' keepalives keep them present.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import jwt
import pytest

from wsfanout.aws.clients import Clients
from wsfanout.client import Client, ClientOptions, Event, Presence, connect
from wsfanout.core.models import Connection
from wsfanout.local.stack import local_stack
from wsfanout.settings import Settings

pytestmark = pytest.mark.timeout(60)

SECRET = "presence-test-secret-of-32-bytes"
TIMEOUT_S = 3  # PRESENCE_TIMEOUT_SECONDS: frames refresh lastSeen once it is 0.75 s old
OPTIONS = ClientOptions(keepalive_s=0.5, open_timeout_s=10, send_timeout_s=15)


def token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 300}, SECRET, "HS256")


async def next_event(events: AsyncIterator[Event], kind: str, who: str) -> Event:
    """The next ``kind`` event about connection ``who``, within 20 s (other events skipped)."""
    with anyio.fail_after(20):
        async for event in events:
            if event.kind == kind and event.connection_id == who:
                return event
    raise AssertionError(f"the client closed before a {kind!r} event of {who}")


async def until_present(client: Client, expected: Presence, within_s: float) -> Presence:
    """Ask until the answer is ``expected`` (a bounded poll: presence is read, not pushed)."""
    seen = await client.presence("lobby")
    with anyio.fail_after(within_s):
        while seen != expected:
            await anyio.sleep(0.25)
            seen = await client.presence("lobby")
    return seen


async def test_two_users_see_each_other_and_a_lost_disconnect_times_out() -> None:
    environ = {"AUTH_JWT_SECRET": SECRET, "PRESENCE_TIMEOUT_SECONDS": str(TIMEOUT_S)}
    async with (
        local_stack(environ=environ) as stack,
        Clients(Settings()) as clients,
        connect(stack.ws_url, token("alice"), rooms=["lobby"], options=OPTIONS) as alice,
    ):
        events = aiter(alice.events())
        async with connect(stack.ws_url, token("bob"), rooms=["lobby"], options=OPTIONS) as bob:
            bob_id = bob.connection_id
            assert bob_id is not None
            joined = await next_event(events, "join", bob_id)
            assert (joined.room, joined.user_id) == ("lobby", "bob")
            both = Presence("lobby", {"alice": 1, "bob": 1}, 2)
            assert await alice.presence("lobby") == both
            assert await bob.presence("lobby") == both
        left = await next_event(events, "leave", bob_id)
        assert (left.room, left.user_id) == ("lobby", "bob")
        assert await alice.presence("lobby") == Presence("lobby", {"alice": 1}, 1)

        # A member whose $disconnect was lost: its items are there, its socket is not.
        registry = await clients.registry()
        ghost = Connection(connection_id="ghost=", connected_at=datetime.now(UTC), user_id="carol")
        await registry.put(ghost)
        await registry.join_room("ghost=", "lobby")
        counted = await alice.presence("lobby")
        assert counted == Presence("lobby", {"alice": 1, "carol": 1}, 2)
        started = time.monotonic()
        gone = await until_present(alice, Presence("lobby", {"alice": 1}, 1), TIMEOUT_S + 10)
        assert alice.connection_id is not None
        stored = await registry.get(alice.connection_id)
        assert stored is not None
        assert (datetime.now(UTC) - stored.connected_at).total_seconds() > TIMEOUT_S
        assert gone.users == {"alice": 1}, "alice's keepalives kept her present all along"
        assert time.monotonic() - started >= TIMEOUT_S - 1.5, "dropped by the timeout"
        assert await registry.is_member("ghost=", "lobby"), "dropped from presence, not deleted"
