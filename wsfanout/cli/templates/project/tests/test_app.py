"""The app on wsfanout's in-memory test client: fake connections, no AWS, milliseconds."""

from __future__ import annotations

from wsfanout.testing import TestClient

from app import app


async def test_echo_answers_the_sender_only() -> None:
    async with TestClient(app) as client:
        alice = await client.connect(user="alice")
        bob = await client.connect(user="bob")
        await alice.send({"action": "echo", "text": "hi"})
        assert alice.received == [{"type": "echo", "text": "hi"}]
        assert bob.received == []


async def test_an_unknown_action_is_answered_with_an_error_frame() -> None:
    async with TestClient(app) as client:
        alice = await client.connect()
        await alice.send({"action": "nothing"})
        [error] = alice.received
        assert (error["type"], error["code"]) == ("error", "unknown_action")
