"""Durable rooms' history against moto server over HTTP: the counter, the items, the replay."""

from __future__ import annotations

import anyio
import pytest

from wsfanout.aws import table as t
from wsfanout.aws.history import RoomHistory
from wsfanout.core.history import HistoryBounds
from wsfanout.exceptions import ConfigurationError


@pytest.fixture
def history(dynamodb, table_name: str) -> RoomHistory:
    return RoomHistory(dynamodb, table_name, bounds=HistoryBounds(messages=5, seconds=60))


async def test_concurrent_senders_get_distinct_increasing_seqs(history: RoomHistory) -> None:
    seqs: list[int] = []

    async def send(n: int) -> None:
        seqs.append(await history.append("lobby", {"type": "message", "data": n}, None))

    async with anyio.create_task_group() as group:
        for n in range(20):
            group.start_soon(send, n)
    assert sorted(seqs) == list(range(1, 21))
    assert await history.latest("lobby") == 20
    assert await history.latest("empty") == 0


async def test_message_items_follow_the_contract(
    history: RoomHistory, dynamodb, table_name: str
) -> None:
    sender = {"connectionId": "c=", "userId": "u"}
    seq = await history.append("lobby", {"type": "message", "data": "hé"}, sender)
    item = (
        await dynamodb.get_item(
            TableName=table_name, Key={"PK": {"S": "ROOM#lobby"}, "SK": {"S": t.message_sk(seq)}}
        )
    )["Item"]
    assert t.message_sk(seq) == "MSG#00000000000000000001"
    assert item["data"] == {"S": '{"type":"message","data":"hé"}'}
    assert item["from"] == {"S": '{"connectionId":"c=","userId":"u"}'}
    sent_at = float(item["sentAt"]["N"])
    assert int(item["ttl"]["N"]) == int(sent_at) + 60


async def test_a_resume_replays_within_the_bounds_and_resets_beyond(history: RoomHistory) -> None:
    for n in range(8):
        await history.append("lobby", {"type": "message", "data": n}, None)
    replay = await history.since("lobby", 5)
    assert (replay.latest, replay.reset) == (8, False)
    assert [(m.seq, m.frame["data"]) for m in replay.messages] == [(6, 5), (7, 6), (8, 7)]
    assert [m.seq for m in (await history.since("lobby", 3)).messages] == [4, 5, 6, 7, 8]
    assert (await history.since("lobby", 2)).reset, "older than the last 5"
    assert (await history.since("lobby", 8)).messages == ()


async def test_a_resume_resets_past_the_time_bound(dynamodb, table_name: str) -> None:
    now = [1000.0]
    history = RoomHistory(
        dynamodb, table_name, bounds=HistoryBounds(messages=50, seconds=60), clock=lambda: now[0]
    )
    await history.append("lobby", {"type": "message"}, None)
    now[0] += 61
    assert (await history.since("lobby", 0)).reset


async def test_a_missing_table_is_a_configuration_error(dynamodb) -> None:
    with pytest.raises(ConfigurationError):
        await RoomHistory(dynamodb, "no-such-table").append("r", {"type": "m"}, None)
