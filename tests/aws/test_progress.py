"""Progress items of broadcast jobs on DynamoDB (moto server): every condition of a claim."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from wsfanout.aws import table as t
from wsfanout.aws.progress import Checkpoints
from wsfanout.aws.registry import Registry
from wsfanout.core.jobs import Action, Checkpoint, Claim, Step, Tally, decide
from wsfanout.core.models import Connection, Cursor, FanoutReport

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

TTL = 3600
CURSOR = Cursor(after={"PK": "CONN#abc=", "SK": "CONN"}, offset=7, user=2, step=3)


@pytest.fixture
def checkpoints(dynamodb: DynamoDBClient, table_name: str) -> Checkpoints:
    return Checkpoints(dynamodb, table_name, ttl_seconds=TTL)


@pytest.fixture
def job_id() -> str:
    return uuid.uuid4().hex


NOW = 1_800_000_000.25  # the callers' clock: DynamoDB compares leases with the time it is given
LEASE = NOW + 60


def step(job_id: str, segment: int | None, number: int, owner: str, token: str = "") -> Step:
    """The step as message ``owner``'s invocation ``token`` (``t-{owner}`` unless told) runs it."""
    return Step(job_id, segment, number, owner, token or f"t-{owner}")


async def claim(
    checkpoints: Checkpoints,
    mine: Step,
    *,
    seen: Checkpoint | None,
    cursor: Cursor | None,
    now: float = NOW,
    lease_until: float = LEASE,
) -> bool:
    return await checkpoints.claim(Claim(mine, seen, cursor, lease_until, now))


def held(number: int, owner: str, **fields: Any) -> Checkpoint:
    """The item as :func:`claim` leaves it for message ``owner``."""
    return Checkpoint(number, owner, token=f"t-{owner}", lease_until=LEASE, **fields)


def report(delivered: int = 0, gone: int = 0, failed: int = 0) -> FanoutReport:
    return FanoutReport(delivered=delivered, gone=gone, failed=failed)


async def test_load_missing_item(checkpoints: Checkpoints, job_id: str) -> None:
    assert await checkpoints.load(job_id, 0) is None
    assert await checkpoints.load(job_id, None) is None


async def test_claim_on_empty_item_succeeds_once(checkpoints: Checkpoints, job_id: str) -> None:
    assert await claim(checkpoints, step(job_id, 0, 0, "m1"), seen=None, cursor=None)
    assert not await claim(checkpoints, step(job_id, 0, 0, "m2"), seen=None, cursor=None)
    assert not await claim(checkpoints, step(job_id, 0, 0, "m1"), seen=None, cursor=None)
    assert await checkpoints.load(job_id, 0) == held(0, "m1")
    # other segments of the same job are other items
    assert await checkpoints.load(job_id, 1) is None
    assert await claim(checkpoints, step(job_id, 1, 0, "m2"), seen=None, cursor=None)


async def test_unsharded_job_has_its_own_item(
    checkpoints: Checkpoints, job_id: str, dynamodb, table_name: str
) -> None:
    assert await claim(checkpoints, step(job_id, None, 0, "m1"), seen=None, cursor=None)
    assert await checkpoints.load(job_id, None) == held(0, "m1")
    assert await checkpoints.load(job_id, 0) is None
    key = {t.PK: {"S": f"JOB#{job_id}"}, t.SK: {"S": "SEG#-"}}
    assert "Item" in await dynamodb.get_item(TableName=table_name, Key=key)


@pytest.mark.parametrize(
    "stale",
    [
        Checkpoint(0, "m9"),
        Checkpoint(1, "m1"),
        Checkpoint(0, None),
        Checkpoint(1, None),
        Checkpoint(0, "m1"),
        Checkpoint(0, "m1", token="t-other", lease_until=LEASE),
    ],
    ids=[
        "other-owner",
        "other-step",
        "no-owner",
        "no-owner-other-step",
        "no-token",
        "other-token",
    ],
)
async def test_claim_with_stale_seen_fails(
    checkpoints: Checkpoints, job_id: str, stale: Checkpoint
) -> None:
    assert await claim(checkpoints, step(job_id, 0, 0, "m1"), seen=None, cursor=None)
    assert not await claim(checkpoints, step(job_id, 0, 0, "m2"), seen=stale, cursor=None)
    assert not await claim(checkpoints, step(job_id, 0, 1, "m2"), seen=stale, cursor=CURSOR)
    assert await checkpoints.load(job_id, 0) == held(0, "m1")


async def claimed_by_m1(checkpoints: Checkpoints, job_id: str, cursor: Cursor) -> Checkpoint:
    """Step 0 of segment 0 claimed by message m1 from ``cursor``: the item as it is then."""
    assert await claim(checkpoints, step(job_id, 0, 0, "m1"), seen=None, cursor=cursor)
    seen = await checkpoints.load(job_id, 0)
    assert seen == held(0, "m1", cursor=cursor)
    return seen


async def test_a_copy_of_the_owner_cannot_claim_while_the_lease_is_live(
    checkpoints: Checkpoints, job_id: str
) -> None:
    first = Cursor(after={"PK": "CONN#a=", "SK": "CONN"})
    seen = await claimed_by_m1(checkpoints, job_id, first)
    copy = step(job_id, 0, 0, "m1", "t-copy")
    for now in (NOW, LEASE - 0.01):
        assert not await claim(checkpoints, copy, seen=seen, cursor=first, now=now)
    assert await checkpoints.load(job_id, 0) == seen
    # the holder still checkpoints: nobody took its step
    assert await checkpoints.save(step(job_id, 0, 0, "m1"), CURSOR)


async def test_redelivered_owner_takes_over_after_the_lease(
    checkpoints: Checkpoints, job_id: str
) -> None:
    seen = await claimed_by_m1(checkpoints, job_id, Cursor(after={"PK": "CONN#a=", "SK": "CONN"}))
    assert decide(seen, 0, "m1", LEASE) is Action.CLAIM
    copy = step(job_id, 0, 0, "m1", "t-copy")
    later = LEASE + 30
    assert await claim(
        checkpoints, copy, seen=seen, cursor=seen.cursor, now=LEASE, lease_until=later
    )
    assert await checkpoints.load(job_id, 0) == replace(seen, token="t-copy", lease_until=later)
    # the first invocation lost its lease: its checkpoints and its hand-over are refused
    assert not await checkpoints.save(step(job_id, 0, 0, "m1"), CURSOR)
    assert not await checkpoints.finish(step(job_id, 0, 0, "m1"), report(9), next_cursor=None)
    assert await checkpoints.save(copy, CURSOR)
    assert await checkpoints.finish(copy, report(2), next_cursor=None)
    done = await checkpoints.load(job_id, 0)
    assert done is not None
    assert (done.complete, done.delivered, done.cursor) == (True, 2, CURSOR)
    assert (done.owner, done.token, done.lease_until) == (None, None, None)


async def test_claim_of_a_free_step_with_what_was_read(
    checkpoints: Checkpoints, job_id: str
) -> None:
    await claim(checkpoints, step(job_id, 0, 0, "m1"), seen=None, cursor=None)
    await checkpoints.finish(step(job_id, 0, 0, "m1"), report=report(), next_cursor=CURSOR)
    seen = await checkpoints.load(job_id, 0)
    assert seen is not None
    assert seen.owner is None
    assert await claim(checkpoints, step(job_id, 0, 3, "m2"), seen=seen, cursor=seen.cursor)
    assert not await claim(checkpoints, step(job_id, 0, 3, "m3"), seen=seen, cursor=seen.cursor)
    assert await checkpoints.load(job_id, 0) == replace(
        seen, step=3, owner="m2", token="t-m2", lease_until=LEASE
    )


async def test_cursor_round_trips_exactly(checkpoints: Checkpoints, job_id: str) -> None:
    assert await claim(checkpoints, step(job_id, 0, 3, "m1"), seen=None, cursor=CURSOR)
    loaded = await checkpoints.load(job_id, 0)
    assert loaded is not None
    assert loaded.cursor == CURSOR
    gsi = Cursor(
        after={"PK": "CONN#z=", "SK": "ROOM#lobby", "GSI1PK": "ROOM#lobby", "GSI1SK": "CONN#z="},
        step=3,
    )
    await checkpoints.save(step(job_id, 0, 3, "m1"), gsi)
    loaded = await checkpoints.load(job_id, 0)
    assert loaded is not None
    assert loaded.cursor == gsi
    assert loaded.cursor.offset is None
    listed = Cursor(offset=12345, step=3)
    await checkpoints.save(step(job_id, 0, 3, "m1"), listed)
    loaded = await checkpoints.load(job_id, 0)
    assert loaded is not None
    assert loaded.cursor == listed


async def test_save_by_the_owner_moves_the_watermark(checkpoints: Checkpoints, job_id: str) -> None:
    await claim(checkpoints, step(job_id, 0, 0, "m1"), seen=None, cursor=None)
    for n in range(3):
        mark = Cursor(after={"PK": f"CONN#{n}=", "SK": "CONN"})
        assert await checkpoints.save(step(job_id, 0, 0, "m1"), mark)
        assert await checkpoints.load(job_id, 0) == held(0, "m1", cursor=mark)


async def test_save_by_a_non_owner_is_refused(checkpoints: Checkpoints, job_id: str) -> None:
    await claim(checkpoints, step(job_id, 0, 0, "m1"), seen=None, cursor=None)
    assert not await checkpoints.save(step(job_id, 0, 0, "m2"), CURSOR)
    assert not await checkpoints.save(step(job_id, 0, 1, "m1"), CURSOR)  # wrong step
    assert not await checkpoints.save(step(job_id, 5, 0, "m1"), CURSOR)  # no item
    assert await checkpoints.load(job_id, 0) == held(0, "m1")


async def test_finish_step_advances_then_completes(checkpoints: Checkpoints, job_id: str) -> None:
    assert await claim(checkpoints, step(job_id, 0, 0, "m1"), seen=None, cursor=None)
    following = Cursor(after={"PK": "CONN#k=", "SK": "CONN"}, step=1)
    assert await checkpoints.finish(
        step(job_id, 0, 0, "m1"), report=report(3, 1, 0), next_cursor=following
    )
    advanced = await checkpoints.load(job_id, 0)
    assert advanced == Checkpoint(
        step=1,
        owner=None,
        cursor=following,
        complete=False,
        advanced_by="m1",
        delivered=3,
        gone=1,
        failed=0,
    )
    # the old owner's late save is refused, and decide() sees the advance
    assert not await checkpoints.save(step(job_id, 0, 0, "m1"), following)
    assert decide(advanced, 0, "m1", NOW) is Action.REENQUEUE
    assert decide(advanced, 1, "m2", NOW) is Action.CLAIM

    assert await claim(checkpoints, step(job_id, 0, 1, "m2"), seen=advanced, cursor=following)
    assert not await checkpoints.finish(
        step(job_id, 0, 1, "m1"), report=report(100), next_cursor=None
    )
    assert await checkpoints.finish(
        step(job_id, 0, 1, "m2"), report=report(2, 0, 4), next_cursor=None
    )
    done = await checkpoints.load(job_id, 0)
    assert done is not None
    assert done.complete
    assert done.owner is None
    assert done.step == 1
    assert (done.delivered, done.gone, done.failed) == (5, 1, 4)
    assert decide(done, 1, "m2", NOW) is Action.SKIP_COMPLETE
    # a complete segment cannot be claimed again, not even with what was read
    assert not await claim(checkpoints, step(job_id, 0, 1, "m3"), seen=done, cursor=None)
    assert not await claim(checkpoints, step(job_id, 0, 2, "m3"), seen=done, cursor=None)


async def test_finish_step_requires_the_claim(checkpoints: Checkpoints, job_id: str) -> None:
    assert not await checkpoints.finish(
        step(job_id, 0, 0, "m1"), report=report(1), next_cursor=None
    )
    assert await checkpoints.load(job_id, 0) is None


async def test_ttl_is_set_in_the_future(
    checkpoints: Checkpoints, job_id: str, dynamodb, table_name: str
) -> None:
    key = {t.PK: {"S": t.job_pk(job_id)}, t.SK: {"S": t.segment_sk(0)}}

    async def ttl() -> int:
        item = (await dynamodb.get_item(TableName=table_name, Key=key))["Item"]
        return int(item[t.TTL_ATTRIBUTE]["N"])

    before = int(time.time())
    await claim(checkpoints, step(job_id, 0, 0, "m1"), seen=None, cursor=None)
    assert before + TTL <= await ttl() <= int(time.time()) + TTL
    await checkpoints.finish(step(job_id, 0, 0, "m1"), report=report(), next_cursor=None)
    assert before + TTL <= await ttl() <= int(time.time()) + TTL


async def test_segments_in_order_and_a_scan_of_every_job(
    checkpoints: Checkpoints, registry: Registry, job_id: str
) -> None:
    await registry.put(Connection(connection_id="c=", connected_at=datetime.now(UTC)))
    for segment in (10, None, 2, 0):
        claim = Claim(step(job_id, segment, 0, "m1"), None, None, lease_until=LEASE, now=NOW)
        assert await checkpoints.claim(claim)
    done = step(job_id, 2, 0, "m1")
    assert await checkpoints.finish(done, FanoutReport(delivered=4), None)
    other = uuid.uuid4().hex
    assert await checkpoints.claim(
        Claim(step(other, None, 0, "m2"), None, None, lease_until=LEASE, now=NOW)
    )

    found = await checkpoints.segments(job_id)
    assert [segment for segment, _ in found] == [None, 0, 2, 10], "numeric, unsharded first"
    by_segment = dict(found)
    assert (by_segment[2].complete, by_segment[2].delivered) == (True, 4)
    assert (by_segment[10].owner, by_segment[10].lease_until) == ("m1", LEASE)
    assert await checkpoints.segments(uuid.uuid4().hex) == []

    scanned = [(job, segment) async for job, segment, _ in checkpoints.scan()]
    assert sorted(scanned, key=str) == sorted(
        [(job_id, s) for s in (10, None, 2, 0)] + [(other, None)], key=str
    ), "job items only, not the connection"


async def test_a_checkpoint_keeps_the_steps_counts_until_it_finishes(
    checkpoints: Checkpoints, job_id: str
) -> None:
    await claimed_by_m1(checkpoints, job_id, Cursor(after={"PK": "CONN#a=", "SK": "CONN"}))
    holder = step(job_id, 0, 0, "m1")
    assert await checkpoints.save(holder, CURSOR, Tally(delivered=40, gone=2, failed=1))
    assert await checkpoints.save(holder, CURSOR)  # without counts: the last ones stay
    saved = await checkpoints.load(job_id, 0)
    assert saved is not None
    assert saved.so_far == Tally(delivered=40, gone=2, failed=1)
    assert (saved.delivered, saved.gone, saved.failed) == (0, 0, 0), "totals: finished steps"
    assert await checkpoints.finish(holder, report(50, 3, 1), next_cursor=CURSOR)
    advanced = await checkpoints.load(job_id, 0)
    assert advanced is not None
    assert advanced.so_far is None, "the next step starts from no counts"
    assert (advanced.delivered, advanced.gone, advanced.failed) == (50, 3, 1)
