"""Registry round trips against moto server over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pydantic import JsonValue, ValidationError

from tests.aws.throttling import CODES, Throttled
from wsfanout.app.presence import presence_of
from wsfanout.aws import table as t
from wsfanout.aws.registry import _UNPROCESSED, Registry, _items_as_sent
from wsfanout.bench.seeding import classic_item, connection_ids, seed_items
from wsfanout.core.interfaces import Recipient
from wsfanout.core.models import (
    MAX_ATTRIBUTES_BYTES,
    AllTarget,
    Connection,
    ConnectionsTarget,
    Cursor,
    RoomTarget,
    UsersTarget,
)
from wsfanout.core.pacing import RetryPolicy, set_testing
from wsfanout.exceptions import (
    ConfigurationError,
    ConnectionExistsError,
    ConnectionNotFoundError,
    InvalidInputError,
    RegistryError,
)

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
    assert isinstance(info.value.__cause__, ClientError)


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


# -- attributes and membership checks -------------------------------------------------------------

ATTRIBUTES: dict[str, JsonValue] = {
    "tenant": "acme",
    "roles": ["admin", "éditeur ✓"],
    "limits": {"rooms": 3, "ratio": 0.5, "beta": True, "note": None},
}


async def stored_item(dynamodb, registry: Registry, sk: str = t.CONNECTION_SK) -> dict[str, Any]:
    key = {t.PK: {"S": "CONN#a="}, t.SK: {"S": sk}}
    answer = await dynamodb.get_item(TableName=registry.table_name, Key=key, ConsistentRead=True)
    item: dict[str, Any] = answer["Item"]
    return item


async def test_attributes_round_trip_as_sorted_compact_json(registry: Registry, dynamodb) -> None:
    stored = await registry.put(
        Connection(connection_id="a=", connected_at=NOW, attributes=ATTRIBUTES)
    )
    got = await registry.get("a=")
    assert got is not None
    assert got == stored
    assert got.attributes == ATTRIBUTES
    text = (await stored_item(dynamodb, registry))["attributes"]["S"]
    assert text.startswith('{"limits":{"beta":true,"note":null,"ratio":0.5,"rooms":3},')
    assert "éditeur ✓" in text  # UTF-8 text, not \u escapes
    assert " " not in text.replace("éditeur ✓", "")


async def test_no_attributes_write_no_attribute(registry: Registry, dynamodb) -> None:
    await registry.put(Connection(connection_id="a=", connected_at=NOW))
    assert "attributes" not in await stored_item(dynamodb, registry)
    got = await registry.get("a=")
    assert got is not None
    assert got.attributes == {}


async def test_a_classic_item_has_no_attributes(registry: Registry, dynamodb) -> None:
    await seed_items(dynamodb, registry.table_name, [classic_item("a=")])
    got = await registry.get("a=")
    assert got is not None
    assert got.attributes == {}


async def test_stored_attributes_that_break_the_bounds_are_a_registry_error(
    registry: Registry, dynamodb
) -> None:
    await seed_items(
        dynamodb, registry.table_name, [{**classic_item("a="), "attributes": {"S": "[1, 2]"}}]
    )
    with pytest.raises(RegistryError, match="invalid attributes"):
        await registry.get("a=")


async def test_memberships_do_not_copy_attributes(registry: Registry, dynamodb) -> None:
    await registry.put(Connection(connection_id="a=", connected_at=NOW, attributes=ATTRIBUTES))
    await registry.join_room("a=", "lobby")
    assert "attributes" not in await stored_item(dynamodb, registry, t.room_sk("lobby"))


async def test_set_attributes_replaces_and_empties(registry: Registry, dynamodb) -> None:
    stored = await registry.put(
        Connection(connection_id="a=", connected_at=NOW, user_id="u1", attributes={"old": 1})
    )
    await registry.set_attributes("a=", ATTRIBUTES)
    got = await registry.get("a=")
    assert got == stored.model_copy(update={"attributes": ATTRIBUTES})  # nothing else changed

    await registry.set_attributes("a=", {"tenant": "other"})
    got = await registry.get("a=")
    assert got is not None
    assert got.attributes == {"tenant": "other"}, "replaced, not merged"

    await registry.set_attributes("a=", {})
    assert "attributes" not in await stored_item(dynamodb, registry)
    assert await registry.get("a=") == stored.model_copy(update={"attributes": {}})
    await registry.set_attributes("a=", {})  # removing what is absent is no error


async def test_set_attributes_on_a_classic_item(registry: Registry, dynamodb) -> None:
    await seed_items(dynamodb, registry.table_name, [classic_item("a=")])
    await registry.set_attributes("a=", {"tenant": "acme"})
    got = await registry.get("a=")
    assert got is not None
    assert got.attributes == {"tenant": "acme"}


async def test_set_attributes_of_a_missing_connection(registry: Registry, dynamodb) -> None:
    for attributes in ({"tenant": "acme"}, {}):
        with pytest.raises(ConnectionNotFoundError) as info:
            await registry.set_attributes("ghost=", attributes)
        assert info.value.connection_id == "ghost="
        assert isinstance(info.value.__cause__, ClientError)
    scan = await dynamodb.scan(TableName=registry.table_name)
    assert scan["Items"] == [], "no item was created"


async def test_set_attributes_checks_the_bounds_before_writing(registry: Registry) -> None:
    await registry.put(Connection(connection_id="a=", connected_at=NOW, attributes={"k": 1}))
    with pytest.raises(ValidationError):
        await registry.set_attributes("a=", {"k": float("nan")})
    with pytest.raises(ValidationError):
        await registry.set_attributes("a=", {"k": "x" * MAX_ATTRIBUTES_BYTES})
    got = await registry.get("a=")
    assert got is not None
    assert got.attributes == {"k": 1}


async def test_is_member(registry: Registry) -> None:
    await registry.put(Connection(connection_id="a=", connected_at=NOW))
    await registry.put(Connection(connection_id="b=", connected_at=NOW))
    await registry.join_room("a=", "lobby")
    assert await registry.is_member("a=", "lobby") is True
    assert await registry.is_member("a=", "games") is False
    assert await registry.is_member("b=", "lobby") is False
    assert await registry.is_member("ghost=", "lobby") is False
    await registry.leave_room("a=", "lobby")
    assert await registry.is_member("a=", "lobby") is False


async def test_is_member_reads_only_the_membership_key(registry: Registry, dynamodb) -> None:
    await registry.put(Connection(connection_id="a=", connected_at=NOW, endpoint="https://e/s"))
    await registry.join_room("a=", "lobby")
    requests: list[dict[str, Any]] = []
    dynamodb.meta.events.register(
        "provide-client-params.dynamodb.GetItem", lambda params, **_: requests.append(params)
    )
    assert await registry.is_member("a=", "lobby") is True
    (request,) = requests
    assert request["Key"] == {t.PK: {"S": "CONN#a="}, t.SK: {"S": "ROOM#lobby"}}
    assert request["ConsistentRead"] is True
    assert request["ProjectionExpression"] == "PK"


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


# -- raw Scan and Query pages ---------------------------------------------------------------------

EVERY_TYPE = {
    "S": {"S": "text"},
    "N": {"N": "12.50"},
    "BOOL": {"BOOL": True},
    "NULL": {"NULL": True},
    "L": {"L": [{"S": "a"}, {"N": "1"}, {"M": {"k": {"S": "v"}}}]},
    "M": {"M": {"inner": {"L": [{"BOOL": False}]}}},
    "SS": {"SS": ["x", "y"]},
    "NS": {"NS": ["1", "2"]},
}


def _answer(page: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in page.items() if key != "ResponseMetadata"}


async def test_raw_pages_equal_botocore_parse(
    registry: Registry, dynamodb, moto_url: str, session
) -> None:
    """Scan and Query through the registry's client answer exactly what botocore's parser does,
    and the page really skipped the parser (botocore was handed an empty body)."""
    for n in range(3):
        await dynamodb.put_item(
            TableName=registry.table_name,
            Item={t.PK: {"S": f"CONN#typed{n}"}, t.SK: {"S": t.CONNECTION_SK}, **EVERY_TYPE},
        )
    bodies: list[bytes] = []
    for operation in ("Scan", "Query"):  # runs after the registry's hook, registered first
        dynamodb.meta.events.register(
            f"before-parse.dynamodb.{operation}",
            lambda response_dict, **_: bodies.append(response_dict["body"]),
        )
    query = {
        "TableName": registry.table_name,
        "KeyConditionExpression": "PK = :pk",
        "ExpressionAttributeValues": {":pk": {"S": "CONN#typed1"}},
    }
    async with session.client("dynamodb", endpoint_url=moto_url) as plain:
        raw = await dynamodb.scan(TableName=registry.table_name, Limit=2)
        parsed = await plain.scan(TableName=registry.table_name, Limit=2)
        assert _answer(raw) == _answer(parsed)
        assert raw["Count"] == 2
        assert "LastEvaluatedKey" in raw
        assert raw["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert _answer(await dynamodb.query(**query)) == _answer(await plain.query(**query))
    assert bodies == [b"{}", b"{}"]


async def test_raw_pages_leave_binary_to_botocore(registry: Registry, dynamodb) -> None:
    """botocore decodes binary values into bytes; a page holding one keeps that."""
    await dynamodb.put_item(
        TableName=registry.table_name,
        Item={t.PK: {"S": "CONN#bin"}, t.SK: {"S": t.CONNECTION_SK}, "blob": {"B": b"\x00\xff"}},
    )
    items = (await dynamodb.scan(TableName=registry.table_name))["Items"]
    assert items[0]["blob"] == {"B": b"\x00\xff"}
    assert await collect(registry, AllTarget(all=True)) == ["bin"]


async def test_raw_pages_leave_errors_to_botocore(registry: Registry, dynamodb) -> None:
    """An error answer goes through botocore's parse and becomes its ClientError."""
    with pytest.raises(ClientError) as info:
        await dynamodb.scan(TableName="no-such-table")
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_items_as_sent_keeps_what_it_cannot_read() -> None:
    for response in (
        {"status_code": 200, "body": b"not json"},
        {"status_code": 200, "body": b"[1, 2]"},
        {"status_code": 400, "body": b'{"__type": "x"}'},
        {"status_code": 200, "body": b'{"Items": [{"b": {"BS": ["AAE="]}}]}'},
        {"status_code": 200, "body": b'{"Items": [{"b": {"B" : "AAE="}}]}'},
    ):
        customized: dict[str, Any] = {}
        before = dict(response)
        _items_as_sent(response, customized)
        assert response == before
        assert customized == {}


# -- what DynamoDB leaves unprocessed, and errors --------------------------------------------------


class Stingy:
    """The moto client, but each batch call does only its first ``per_call`` requests for real.

    The rest come back as ``UnprocessedItems`` / ``UnprocessedKeys``, as DynamoDB answers a
    partition over its throughput, so the registry's retry is exercised against real storage.
    """

    def __init__(self, client: Any, per_call: int) -> None:
        self._client = client
        self.per_call = per_call
        self.sizes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> Any:  # noqa: N803
        ((table, requests),) = RequestItems.items()
        self.sizes.append(len(requests))
        done, left = requests[: self.per_call], requests[self.per_call :]
        await self._client.batch_write_item(RequestItems={table: done})
        return {"UnprocessedItems": {table: left} if left else {}}

    async def batch_get_item(self, RequestItems: dict[str, dict[str, Any]]) -> Any:  # noqa: N803
        ((table, request),) = RequestItems.items()
        keys = request["Keys"]
        self.sizes.append(len(keys))
        done, left = keys[: self.per_call], keys[self.per_call :]
        answer = await self._client.batch_get_item(RequestItems={table: {**request, "Keys": done}})
        answer["UnprocessedKeys"] = {table: {**request, "Keys": left}} if left else {}
        return answer


async def test_deletes_left_unprocessed_are_retried_until_done(dynamodb, table_name: str) -> None:
    ids = connection_ids(10)
    await seed_items(dynamodb, table_name, [classic_item(i) for i in ids])
    stingy = Stingy(dynamodb, per_call=4)
    with set_testing():
        removed = await Registry(stingy, table_name).remove_connections(ids)  # type: ignore[arg-type]
    assert removed == 10
    assert stingy.sizes == [10, 6, 2], "only what was left is sent again"
    assert await Registry(dynamodb, table_name).count_connections() == 0


async def test_keys_left_unprocessed_are_retried_until_done(dynamodb, table_name: str) -> None:
    ids = connection_ids(7)
    await seed_items(
        dynamodb, table_name, [{**classic_item(i), "endpoint": {"S": f"https://{i}"}} for i in ids]
    )
    stingy = Stingy(dynamodb, per_call=3)
    registry = Registry(stingy, table_name)  # type: ignore[arg-type]
    with set_testing():
        (page,) = [p async for p in registry.pages(ConnectionsTarget(connection_ids=ids))]
    assert stingy.sizes == [7, 4, 1]
    assert [(r.connection_id, r.endpoint) for r in page] == [(i, f"https://{i}") for i in ids]


async def test_unprocessed_items_past_the_bound_are_a_registry_error(
    dynamodb, table_name: str
) -> None:
    ids = connection_ids(5)
    await seed_items(dynamodb, table_name, [classic_item(i) for i in ids])
    stingy = Stingy(dynamodb, per_call=1)
    three = RetryPolicy(max_attempts=3)
    registry = Registry(stingy, table_name, unprocessed=three)  # type: ignore[arg-type]
    with set_testing(), pytest.raises(RegistryError, match=r"2 left .* 3 attempts") as info:
        await registry.remove_connections(ids)
    assert table_name in str(info.value)
    assert stingy.sizes == [5, 4, 3]


async def test_a_missing_table_is_a_configuration_error(dynamodb) -> None:
    registry = Registry(dynamodb, "no-such-table")
    with pytest.raises(ConfigurationError, match="no-such-table") as info:
        await registry.get("a=")
    assert isinstance(info.value.__cause__, ClientError)
    with pytest.raises(ConfigurationError):
        await registry.put(Connection(connection_id="a=", connected_at=NOW))


async def test_connection_ids_are_every_connection_and_nothing_else(
    registry: Registry, dynamodb, table_name: str
) -> None:
    ids = connection_ids(130, "all")  # more than the first, small page
    await seed_items(dynamodb, table_name, [classic_item(i) for i in ids])
    await registry.join_room(ids[0], "lobby")  # a membership item is no connection
    assert await registry.connection_ids() == set(ids)
    assert await registry.count_connections() == len(ids)


# -- throttling ------------------------------------------------------------------------------------


async def test_throttled_pages_and_deletes_complete(
    dynamodb, table_name: str, pauses: list[float]
) -> None:
    ids = connection_ids(250)
    await seed_items(dynamodb, table_name, [classic_item(i) for i in ids])
    for cid in ids[:30]:
        await Registry(dynamodb, table_name).join_room(cid, "lobby")
    throttled = Throttled(dynamodb, burst=3)
    registry = Registry(throttled, table_name, page_size=100)  # type: ignore[arg-type]

    assert await registry.connection_ids() == set(ids)
    assert sorted(await collect(registry, RoomTarget(room="lobby"))) == sorted(ids[:30])
    assert await registry.remove_connections(ids[:30]) == 60  # connection + membership each
    assert await registry.remove_gone([Recipient(cid, None) for cid in ids[30:80]]) == 50

    assert throttled.passed == {"Scan": 3, "Query": 31, "BatchWriteItem": 5}
    assert throttled.refused == {op: 3 * n for op, n in throttled.passed.items()}
    assert len(pauses) == throttled.refused.total(), "one backoff pause before each resend"
    assert all(0.0 <= pause <= _UNPROCESSED.max_s for pause in pauses)
    assert await Registry(dynamodb, table_name).connection_ids() == set(ids[80:])


@pytest.mark.parametrize("code", CODES)
async def test_a_throttle_storm_past_the_bound_is_a_registry_error(
    dynamodb, table_name: str, code: str
) -> None:
    await seed_items(dynamodb, table_name, [classic_item(i) for i in connection_ids(5)])
    throttled = Throttled(dynamodb, burst=4, code=code)
    registry = Registry(throttled, table_name, unprocessed=RetryPolicy(max_attempts=4))  # type: ignore[arg-type]
    with set_testing(), pytest.raises(RegistryError, match=f"DynamoDB Scan .*{code}") as info:
        await registry.connection_ids()
    assert isinstance(info.value.__cause__, ClientError)
    with set_testing(), pytest.raises(RegistryError, match="DynamoDB BatchWriteItem"):
        await registry.remove_gone([Recipient("c000000=", None)])
    assert throttled.refused == {"Scan": 4, "BatchWriteItem": 4}
    assert throttled.passed == {}
    assert await Registry(dynamodb, table_name).count_connections() == 5


async def test_an_error_other_than_throttling_is_not_retried(dynamodb, table_name: str) -> None:
    throttled = Throttled(dynamodb, burst=1, code="ValidationException")
    with set_testing(), pytest.raises(RegistryError, match="ValidationException"):
        await Registry(throttled, table_name).connection_ids()  # type: ignore[arg-type]
    assert throttled.refused == {"Scan": 1}


async def test_get_many_reads_what_is_stored_in_batches_of_100(
    registry: Registry, dynamodb
) -> None:
    ids = connection_ids(150)
    await seed_items(dynamodb, registry.table_name, [classic_item(cid) for cid in ids])
    await registry.put(Connection(connection_id="mine=", connected_at=NOW, user_id="u1"))
    asked = [*ids, "mine=", "missing=", ids[0]]  # more than one batch, an unknown id, a repeat
    found = await registry.get_many(asked)
    assert set(found) == {*ids, "mine="}
    assert found["mine="].user_id == "u1"
    assert found[ids[7]].connection_id == ids[7]
    assert await registry.get_many([]) == {}


async def test_join_room_says_whether_the_membership_is_new(registry: Registry) -> None:
    await registry.put(Connection(connection_id="a=", connected_at=NOW))
    assert await registry.join_room("a=", "lobby") is True
    assert await registry.join_room("a=", "lobby") is False
    await registry.leave_room("a=", "lobby")
    assert await registry.join_room("a=", "lobby") is True
    assert await registry.rooms_of("a=") == ["lobby"]


async def test_touch_is_read_back_as_last_seen(registry: Registry, dynamodb) -> None:
    await registry.put(Connection(connection_id="a=", connected_at=NOW))
    stored = await registry.get("a=")
    assert stored is not None
    assert stored.last_seen is None
    assert stored.seen == NOW
    before = int(datetime.now(UTC).timestamp())
    assert await registry.touch("a=") is True
    touched = await registry.get("a=")
    assert touched is not None
    assert touched.last_seen is not None
    assert before <= touched.last_seen.timestamp() <= before + 5
    assert touched.seen == touched.last_seen
    assert (await registry.get_many(["a="]))["a="].last_seen == touched.last_seen
    assert await registry.touch("ghost=") is False


async def test_presence_counts_live_members_only(registry: Registry, dynamodb) -> None:
    now = datetime.now(UTC)
    members = {
        "a1=": ("alice", now),
        "a2=": ("alice", now - timedelta(hours=1)),  # stale, but touched below
        "b1=": ("bob", now - timedelta(seconds=30)),
        "n1=": (None, now),
        "lost=": ("carol", now - timedelta(hours=1)),  # its $disconnect was lost
    }
    for cid, (user, connected_at) in members.items():
        await registry.put(Connection(connection_id=cid, connected_at=connected_at, user_id=user))
        await registry.join_room(cid, "lobby")
    await registry.put(Connection(connection_id="x=", connected_at=now, user_id="dave"))
    await registry.join_room("x=", "elsewhere")
    await registry.touch("a2=")
    present = await presence_of(registry, "lobby", 600)
    assert (present.room, dict(present.users), present.connections) == (
        "lobby",
        {"alice": 2, "bob": 1},
        4,
    )
    assert list(present.users) == ["alice", "bob"]
    # a stored lastSeen older than the timeout does not count either
    key = {t.PK: {"S": "CONN#a2="}, t.SK: {"S": t.CONNECTION_SK}}
    stale = str(int((now - timedelta(minutes=11)).timestamp()))
    await dynamodb.update_item(
        TableName=registry.table_name,
        Key=key,
        UpdateExpression="SET lastSeen = :old",
        ExpressionAttributeValues={":old": {"N": stale}},
    )
    assert (await presence_of(registry, "lobby", 600)).users == {"alice": 1, "bob": 1}
