"""Registry round trips against moto server over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from wsfanout import table as t
from wsfanout.bench.seeding import classic_item, connection_ids, seed_items
from wsfanout.exceptions import ConnectionExistsError, ConnectionNotFoundError, InvalidInputError
from wsfanout.models import (
    AllTarget,
    Connection,
    ConnectionsTarget,
    Cursor,
    RoomTarget,
    UsersTarget,
)
from wsfanout.registry import Registry

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


async def collect(registry: Registry, target, **kwargs) -> list[str]:
    return [r.connection_id async for page in registry.pages(target, **kwargs) for r in page]


async def test_put_get_round_trip(registry: Registry) -> None:
    stored = await registry.put(
        Connection(
            connection_id="abc=",
            connected_at=NOW,
            user_id="u1",
            endpoint="https://x.execute-api.eu-west-1.amazonaws.com/prod",
        )
    )
    assert stored.ttl is not None
    got = await registry.get("abc=")
    assert got == stored
    assert await registry.get("missing=") is None


async def test_put_is_conditional(registry: Registry) -> None:
    await registry.put(Connection(connection_id="dup=", connected_at=NOW))
    with pytest.raises(ConnectionExistsError) as info:
        await registry.put(Connection(connection_id="dup=", connected_at=NOW))
    assert info.value.connection_id == "dup="


async def test_classic_seed_items_read_as_connections(registry: Registry, dynamodb) -> None:
    ids = connection_ids(30, "seed")
    await seed_items(dynamodb, registry.table_name, [classic_item(i) for i in ids])
    got = await registry.get(ids[0])
    assert got is not None
    assert got.connection_id == ids[0]
    assert got.user_id is None
    assert got.endpoint is None
    assert sorted(await collect(registry, AllTarget(all=True))) == sorted(ids)


async def test_delete_removes_memberships(registry: Registry, dynamodb) -> None:
    await registry.put(Connection(connection_id="a=", connected_at=NOW))
    await registry.put(Connection(connection_id="b=", connected_at=NOW))
    for room in ("lobby", "games"):
        await registry.join_room("a=", room)
    await registry.join_room("b=", "lobby")
    assert sorted(await registry.rooms("a=")) == ["games", "lobby"]

    assert await registry.delete("a=") == 3
    assert await registry.get("a=") is None
    assert await registry.rooms("a=") == []
    assert await collect(registry, RoomTarget(room="lobby")) == ["b="]
    scan = await dynamodb.scan(TableName=registry.table_name)
    assert {item["PK"]["S"] for item in scan["Items"]} == {t.connection_pk("b=")}


async def test_rooms_join_leave(registry: Registry) -> None:
    await registry.put(Connection(connection_id="a=", connected_at=NOW, endpoint="https://e/s"))
    await registry.join_room("a=", "lobby")
    members = [r async for page in registry.pages(RoomTarget(room="lobby")) for r in page]
    assert [(m.connection_id, m.endpoint) for m in members] == [("a=", "https://e/s")]
    assert await registry.leave_room("a=", "lobby") is True
    assert await registry.leave_room("a=", "lobby") is False
    assert await collect(registry, RoomTarget(room="lobby")) == []


async def test_join_room_needs_a_connection(registry: Registry) -> None:
    with pytest.raises(ConnectionNotFoundError):
        await registry.join_room("ghost=", "lobby")
    assert await collect(registry, RoomTarget(room="lobby")) == []


async def test_membership_copies_ttl(registry: Registry, dynamodb) -> None:
    stored = await registry.put(Connection(connection_id="a=", connected_at=NOW, ttl=12345))
    await registry.join_room("a=", "lobby")
    item = await dynamodb.get_item(
        TableName=registry.table_name, Key={"PK": {"S": "CONN#a="}, "SK": {"S": "ROOM#lobby"}}
    )
    assert item["Item"]["ttl"]["N"] == str(stored.ttl)


async def test_all_reaches_connections_only(registry: Registry, dynamodb) -> None:
    for cid in ("a=", "b=", "c="):
        await registry.put(Connection(connection_id=cid, connected_at=NOW, user_id="u"))
        await registry.join_room(cid, "lobby")
    await dynamodb.put_item(
        TableName=registry.table_name,
        Item={"PK": {"S": "JOB#j1"}, "SK": {"S": "SEG#0"}, "sent": {"N": "3"}},
    )
    assert sorted(await collect(registry, AllTarget(all=True))) == ["a=", "b=", "c="]


async def test_users_target(registry: Registry) -> None:
    for cid, user in (("a=", "u1"), ("b=", "u1"), ("c=", "u2"), ("d=", "u3")):
        await registry.put(Connection(connection_id=cid, connected_at=NOW, user_id=user))
    got = await collect(registry, UsersTarget(user_ids=["u1", "u2"]))
    assert sorted(got) == ["a=", "b=", "c="]


async def test_connections_target_keeps_order_and_unknown_ids(registry: Registry) -> None:
    await registry.put(Connection(connection_id="b=", connected_at=NOW, endpoint="https://e/s"))
    target = ConnectionsTarget(connection_ids=["c=", "b=", "a="])
    recipients = [r async for page in registry.pages(target) for r in page]
    assert [(r.connection_id, r.endpoint) for r in recipients] == [
        ("c=", None),
        ("b=", "https://e/s"),
        ("a=", None),
    ]
    assert await collect(registry, target, cursor=Cursor(offset=2)) == ["a="]


async def test_parallel_segments_partition_the_table(registry: Registry, dynamodb) -> None:
    ids = connection_ids(300, "seg")
    await seed_items(dynamodb, registry.table_name, [classic_item(i) for i in ids])
    seen: list[str] = []
    for segment in range(4):
        part = await collect(registry, AllTarget(all=True), segment=segment, total_segments=4)
        assert part, "each of 4 segments of 300 ids holds some"
        seen.extend(part)
    assert sorted(seen) == sorted(ids)


async def test_segments_only_for_all(registry: Registry) -> None:
    with pytest.raises(InvalidInputError):
        await collect(registry, RoomTarget(room="x"), segment=0, total_segments=2)


async def test_cursor_resumes_after_a_deleted_item(registry: Registry, dynamodb) -> None:
    """A gone connection deleted mid-run must still work as a resume point."""
    ids = connection_ids(250, "cur")
    await seed_items(dynamodb, registry.table_name, [classic_item(i) for i in ids])
    recipients = [r async for page in registry.pages(AllTarget(all=True)) for r in page]
    middle = recipients[120]
    await registry.delete(middle.connection_id)
    rest = await collect(registry, AllTarget(all=True), cursor=middle.resume_cursor())
    assert rest == [r.connection_id for r in recipients[121:]]


async def test_remove_connections_in_batches(registry: Registry, dynamodb) -> None:
    ids = connection_ids(60, "rm")
    await seed_items(dynamodb, registry.table_name, [classic_item(i) for i in ids])
    removed = await registry.remove_connections(ids[:40])
    assert removed == 40
    assert sorted(await collect(registry, AllTarget(all=True))) == sorted(ids[40:])
