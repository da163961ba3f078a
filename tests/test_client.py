"""The Python client's ordering, without a network: frames fed as a connection's reader would.

The end-to-end behaviour (reconnects, make-before-break, replay) is tests/local/
test_client_replay.py's; here each rule of the order is checked on its own.
"""

from __future__ import annotations

from typing import Any

import pytest

from wsfanout.client import Client, ClientOptions, Event, _Link
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
