"""The Python client's ordering, without a network: frames fed as a connection's reader would.

The end-to-end behaviour (reconnects, make-before-break, replay) is tests/local/
test_client_replay.py's; here each rule of the order is checked on its own.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from wsfanout.client import Client, ClientOptions, Event, Presence, ProtocolError, _Link
from wsfanout.exceptions import InvalidInputError


def message(seq: int, room: str = "r") -> dict[str, Any]:
    return {"type": "message", "room": room, "seq": seq, "data": seq}


def delivered(client: Client) -> list[Any]:
    out = []
    while not client._messages.empty():
        item = client._messages.get_nowait()
        assert item is not None
        out.append(item.data)
    return out


@pytest.fixture
def client() -> Client:
    return Client("ws://127.0.0.1:1/local", rooms=["r"])


LINK: Any = _Link.__new__(_Link)  # the reader's link; only waiters are looked at
LINK.waiters = {}
LINK.connection_id = "c="


def feed(client: Client, *frames: dict[str, Any]) -> None:
    for frame in frames:
        client._dispatch(LINK, frame)


def test_messages_before_the_first_ack_wait_and_earlier_ones_are_dropped(client: Client) -> None:
    feed(client, message(5), message(7))
    assert delivered(client) == []
    feed(client, {"type": "ack", "action": "joinRoom", "room": "r", "seq": 5}, message(6))
    assert delivered(client) == [6, 7], "from the latest at the join on"


def test_out_of_order_and_duplicate_seqs_are_delivered_once_in_order(client: Client) -> None:
    feed(client, {"type": "ack", "action": "joinRoom", "room": "r", "seq": 0})
    feed(client, message(2), message(1), message(2), message(3), message(1))
    assert delivered(client) == [1, 2, 3]
    assert client.stats.duplicates == 2
    assert client.last_seq("r") == 3


def test_the_clients_own_message_is_skipped_by_its_ack(client: Client) -> None:
    feed(client, {"type": "ack", "action": "joinRoom", "room": "r", "seq": 0}, message(1))
    feed(client, message(3))
    feed(client, {"type": "ack", "action": "sendMessage", "room": "r", "seq": 2})
    assert delivered(client) == [1, 3]


def test_a_reset_is_an_event_and_the_order_goes_on_from_it(client: Client) -> None:
    events: list[Event] = []
    client._on_event = events.append
    feed(client, {"type": "ack", "action": "joinRoom", "room": "r", "seq": 0}, message(1))
    feed(client, message(4), {"type": "reset", "room": "r", "seq": 9}, message(10))
    assert delivered(client) == [1, 4, 10]
    assert [(e.kind, e.room, e.seq) for e in events] == [("reset", "r", 9)]


def test_a_gap_asked_for_three_times_is_given_up(client: Client) -> None:
    events: list[Event] = []
    client._on_event = events.append
    feed(client, {"type": "ack", "action": "joinRoom", "room": "r", "seq": 0})
    feed(client, message(1), message(3))
    state = client._rooms["r"]
    state.asks = 3
    client._give_up("r", state)
    assert delivered(client) == [1, 3]
    assert [(e.kind, e.seq) for e in events] == [("reset", 2)]


def test_frames_of_other_rooms_and_direct_messages_pass_through(client: Client) -> None:
    feed(client, {"type": "message", "data": "direct"}, message(1, room="other"))
    assert delivered(client) == ["direct", 1]


def test_bad_urls_and_options_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="ws:// or wss://"):
        Client("http://example.com")
    with pytest.raises(InvalidInputError, match="keepalive_s must be positive"):
        ClientOptions(keepalive_s=0)
    url = Client("wss://h/prod?a=1", token="t k", query={"tenant": "x"}).url
    assert url == "wss://h/prod?a=1&tenant=x&token=t+k"


def test_presence_events_are_join_and_leave_events_not_messages(client: Client) -> None:
    events: list[Event] = []
    client._on_event = events.append
    joined = {"type": "presence", "event": "join", "room": "r", "connectionId": "b="}
    left = joined | {"event": "leave", "userId": "bob"}
    feed(client, {"type": "ack", "action": "joinRoom", "room": "r", "seq": 0}, joined, left)
    assert delivered(client) == []
    assert [(e.kind, e.room, e.connection_id, e.user_id, e.frame) for e in events] == [
        ("join", "r", "b=", None, joined),
        ("leave", "r", "b=", "bob", left),
    ]


class FakeSocket:
    """What a link sends, and a hook to answer it."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.was_sent = asyncio.Event()

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))
        self.was_sent.set()


def fake_link(connection_id: str) -> tuple[_Link, FakeSocket]:
    socket = FakeSocket()
    link = _Link(socket)  # type: ignore[arg-type]
    link.connection_id = connection_id
    return link, socket


ANSWER = {
    "type": "presence",
    "room": "r",
    "users": [{"userId": "alice", "connections": 2}, {"userId": "bob", "connections": 1}],
    "connections": 4,
}


async def test_presence_asks_and_reads_the_answer(client: Client) -> None:
    link, socket = fake_link("c=")
    client._use(link)
    asking = asyncio.create_task(client.presence("r"))
    await asyncio.wait_for(socket.was_sent.wait(), 5)
    assert socket.sent == [{"action": "presence", "room": "r"}]
    client._dispatch(link, ANSWER)
    assert await asyncio.wait_for(asking, 5) == Presence("r", {"alice": 2, "bob": 1}, 4)


async def test_presence_refused_is_a_protocol_error(client: Client) -> None:
    link, socket = fake_link("c=")
    client._use(link)
    asking = asyncio.create_task(client.presence("r"))
    await asyncio.wait_for(socket.was_sent.wait(), 5)
    client._dispatch(link, {"type": "error", "code": "forbidden", "message": "not a member"})
    with pytest.raises(ProtocolError, match="not a member"):
        await asyncio.wait_for(asking, 5)


async def test_a_presence_request_on_a_dropped_connection_is_asked_again(client: Client) -> None:
    old, old_socket = fake_link("old=")
    client._use(old)
    asking = asyncio.create_task(client.presence("r"))
    await asyncio.wait_for(old_socket.was_sent.wait(), 5)
    old.fail_waiters(ConnectionError("the connection closed"))  # as its reader does
    await asyncio.sleep(0)
    assert not asking.done()
    new, new_socket = fake_link("new=")
    client._use(new)  # as the reconnect does
    await asyncio.wait_for(new_socket.was_sent.wait(), 5)
    assert new_socket.sent == [{"action": "presence", "room": "r"}]
    client._dispatch(new, ANSWER | {"users": [], "connections": 0})
    assert await asyncio.wait_for(asking, 5) == Presence("r", {}, 0)


async def test_presence_gives_up_after_send_timeout() -> None:
    client = Client("ws://127.0.0.1:1/local", options=ClientOptions(send_timeout_s=0.2))
    with pytest.raises(TimeoutError):
        await client.presence("r")  # never connected: no answer can come
