"""Broadcast jobs: the step decision table, progress items on DynamoDB, the runner's hand-offs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from wsfanout import table as t
from wsfanout.exceptions import WsFanoutError
from wsfanout.jobs import (
    Action,
    Checkpoint,
    Checkpoints,
    JobResult,
    JobRunner,
    _LostClaimError,
    decide,
)
from wsfanout.models import AllTarget, BroadcastJob, Cursor, FanoutReport, RoomTarget

TTL = 3600
CURSOR = Cursor(after={"PK": "CONN#abc=", "SK": "CONN"}, offset=7, user=2, step=3)


def point(
    step: int = 0,
    owner: str | None = None,
    *,
    cursor: Cursor | None = None,
    complete: bool = False,
    advanced_by: str | None = None,
) -> Checkpoint:
    return Checkpoint(
        step=step, owner=owner, cursor=cursor, complete=complete, advanced_by=advanced_by
    )


# --- decide(): the whole table ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("checkpoint", "step", "message", "action"),
    [
        # no progress item yet
        (None, 0, "m1", Action.CLAIM),
        (None, 3, "m1", Action.CLAIM),
        # a complete segment, whatever names it
        (point(2, complete=True), 0, "m1", Action.SKIP_COMPLETE),
        (point(2, complete=True), 2, "m1", Action.SKIP_COMPLETE),
        (point(2, complete=True), 5, "m1", Action.SKIP_COMPLETE),
        (point(2, "m1", complete=True), 2, "m1", Action.SKIP_COMPLETE),
        (point(3, None, complete=True, advanced_by="m1"), 2, "m1", Action.SKIP_COMPLETE),
        # the item is ahead of the message
        (point(3, None, advanced_by="m1"), 2, "m1", Action.REENQUEUE),
        (point(3, "m2", advanced_by="m1"), 2, "m1", Action.SKIP_STALE),  # owner set
        (point(4, None, advanced_by="m1"), 2, "m1", Action.SKIP_STALE),  # not step + 1
        (point(3, None, advanced_by="m9"), 2, "m1", Action.SKIP_STALE),  # another advanced it
        (point(3, None, advanced_by=None), 2, "m1", Action.SKIP_STALE),
        (point(3, "m1", advanced_by="m1"), 2, "m1", Action.SKIP_STALE),
        (point(9, "m2"), 0, "m1", Action.SKIP_STALE),
        # same step
        (point(2, None), 2, "m1", Action.CLAIM),
        (point(2, None, advanced_by="m0"), 2, "m1", Action.CLAIM),
        (point(2, "m1"), 2, "m1", Action.CLAIM),  # redelivery of the owner after a crash
        (point(2, "m2"), 2, "m1", Action.SKIP_CLAIMED),
        (point(0, "m2"), 0, "m1", Action.SKIP_CLAIMED),
        # the message is ahead of the item
        (point(1, None), 2, "m1", Action.CLAIM),
        (point(1, "m2"), 2, "m1", Action.CLAIM),
        (point(0, "m2"), 7, "m1", Action.CLAIM),
    ],
)
def test_decide(checkpoint: Checkpoint | None, step: int, message: str, action: Action) -> None:
    assert decide(checkpoint, step, message) is action


# --- Checkpoints on moto ----------------------------------------------------------------------


@pytest.fixture
def checkpoints(dynamodb, table_name: str) -> Checkpoints:
    return Checkpoints(dynamodb, table_name, ttl_seconds=TTL)


@pytest.fixture
def job_id() -> str:
    return uuid.uuid4().hex


def report(delivered: int = 0, gone: int = 0, failed: int = 0) -> FanoutReport:
    return FanoutReport(delivered=delivered, gone=gone, failed=failed)


async def test_load_missing_item(checkpoints: Checkpoints, job_id: str) -> None:
    assert await checkpoints.load(job_id, 0) is None
    assert await checkpoints.load(job_id, None) is None


async def test_claim_on_empty_item_succeeds_once(checkpoints: Checkpoints, job_id: str) -> None:
    assert await checkpoints.claim(job_id, 0, step=0, owner="m1", seen=None, cursor=None)
    assert not await checkpoints.claim(job_id, 0, step=0, owner="m2", seen=None, cursor=None)
    assert not await checkpoints.claim(job_id, 0, step=0, owner="m1", seen=None, cursor=None)
    assert await checkpoints.load(job_id, 0) == point(0, "m1")
    # other segments of the same job are other items
    assert await checkpoints.load(job_id, 1) is None
    assert await checkpoints.claim(job_id, 1, step=0, owner="m2", seen=None, cursor=None)


async def test_unsharded_job_has_its_own_item(
    checkpoints: Checkpoints, job_id: str, dynamodb, table_name: str
) -> None:
    assert await checkpoints.claim(job_id, None, step=0, owner="m1", seen=None, cursor=None)
    assert await checkpoints.load(job_id, None) == point(0, "m1")
    assert await checkpoints.load(job_id, 0) is None
    key = {t.PK: {"S": f"JOB#{job_id}"}, t.SK: {"S": "SEG#-"}}
    assert "Item" in await dynamodb.get_item(TableName=table_name, Key=key)


@pytest.mark.parametrize(
    "stale",
    [point(0, "m9"), point(1, "m1"), point(0, None), point(1, None)],
    ids=["other-owner", "other-step", "no-owner", "no-owner-other-step"],
)
async def test_claim_with_stale_seen_fails(
    checkpoints: Checkpoints, job_id: str, stale: Checkpoint
) -> None:
    assert await checkpoints.claim(job_id, 0, step=0, owner="m1", seen=None, cursor=None)
    assert not await checkpoints.claim(job_id, 0, step=0, owner="m2", seen=stale, cursor=None)
    assert not await checkpoints.claim(job_id, 0, step=1, owner="m2", seen=stale, cursor=CURSOR)
    assert await checkpoints.load(job_id, 0) == point(0, "m1")


async def test_redelivered_owner_claims_again(checkpoints: Checkpoints, job_id: str) -> None:
    first = Cursor(after={"PK": "CONN#a=", "SK": "CONN"})
    assert await checkpoints.claim(job_id, 0, step=0, owner="m1", seen=None, cursor=first)
    seen = await checkpoints.load(job_id, 0)
    assert seen == point(0, "m1", cursor=first)
    assert await checkpoints.claim(job_id, 0, step=0, owner="m1", seen=seen, cursor=seen.cursor)
    assert await checkpoints.load(job_id, 0) == seen


async def test_claim_of_a_free_step_with_what_was_read(
    checkpoints: Checkpoints, job_id: str
) -> None:
    await checkpoints.claim(job_id, 0, step=0, owner="m1", seen=None, cursor=None)
    await checkpoints.finish_step(
        job_id, 0, step=0, owner="m1", report=report(), next_cursor=CURSOR
    )
    seen = await checkpoints.load(job_id, 0)
    assert seen is not None
    assert seen.owner is None
    assert await checkpoints.claim(job_id, 0, step=3, owner="m2", seen=seen, cursor=seen.cursor)
    assert not await checkpoints.claim(job_id, 0, step=3, owner="m3", seen=seen, cursor=seen.cursor)
    assert await checkpoints.load(job_id, 0) == replace(seen, step=3, owner="m2")


async def test_cursor_round_trips_exactly(checkpoints: Checkpoints, job_id: str) -> None:
    assert await checkpoints.claim(job_id, 0, step=3, owner="m1", seen=None, cursor=CURSOR)
    loaded = await checkpoints.load(job_id, 0)
    assert loaded is not None
    assert loaded.cursor == CURSOR
    gsi = Cursor(
        after={"PK": "CONN#z=", "SK": "ROOM#lobby", "GSI1PK": "ROOM#lobby", "GSI1SK": "CONN#z="},
        step=3,
    )
    await checkpoints.save(job_id, 0, step=3, owner="m1", cursor=gsi)
    loaded = await checkpoints.load(job_id, 0)
    assert loaded is not None
    assert loaded.cursor == gsi
    assert loaded.cursor.offset is None
    listed = Cursor(offset=12345, step=3)
    await checkpoints.save(job_id, 0, step=3, owner="m1", cursor=listed)
    loaded = await checkpoints.load(job_id, 0)
    assert loaded is not None
    assert loaded.cursor == listed


async def test_save_by_the_owner_moves_the_watermark(checkpoints: Checkpoints, job_id: str) -> None:
    await checkpoints.claim(job_id, 0, step=0, owner="m1", seen=None, cursor=None)
    for n in range(3):
        mark = Cursor(after={"PK": f"CONN#{n}=", "SK": "CONN"})
        await checkpoints.save(job_id, 0, step=0, owner="m1", cursor=mark)
        assert await checkpoints.load(job_id, 0) == point(0, "m1", cursor=mark)


async def test_save_by_a_non_owner_raises(checkpoints: Checkpoints, job_id: str) -> None:
    assert issubclass(_LostClaimError, WsFanoutError)
    await checkpoints.claim(job_id, 0, step=0, owner="m1", seen=None, cursor=None)
    with pytest.raises(_LostClaimError, match="no longer ours"):
        await checkpoints.save(job_id, 0, step=0, owner="m2", cursor=CURSOR)
    with pytest.raises(_LostClaimError):
        await checkpoints.save(job_id, 0, step=1, owner="m1", cursor=CURSOR)  # wrong step
    with pytest.raises(_LostClaimError):
        await checkpoints.save(job_id, 5, step=0, owner="m1", cursor=CURSOR)  # no such item
    assert await checkpoints.load(job_id, 0) == point(0, "m1")


async def test_finish_step_advances_then_completes(checkpoints: Checkpoints, job_id: str) -> None:
    assert await checkpoints.claim(job_id, 0, step=0, owner="m1", seen=None, cursor=None)
    following = Cursor(after={"PK": "CONN#k=", "SK": "CONN"}, step=1)
    assert await checkpoints.finish_step(
        job_id, 0, step=0, owner="m1", report=report(3, 1, 0), next_cursor=following
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
    with pytest.raises(_LostClaimError):
        await checkpoints.save(job_id, 0, step=0, owner="m1", cursor=following)
    assert decide(advanced, 0, "m1") is Action.REENQUEUE
    assert decide(advanced, 1, "m2") is Action.CLAIM

    assert await checkpoints.claim(job_id, 0, step=1, owner="m2", seen=advanced, cursor=following)
    assert not await checkpoints.finish_step(
        job_id, 0, step=1, owner="m1", report=report(100), next_cursor=None
    )
    assert await checkpoints.finish_step(
        job_id, 0, step=1, owner="m2", report=report(2, 0, 4), next_cursor=None
    )
    done = await checkpoints.load(job_id, 0)
    assert done is not None
    assert done.complete
    assert done.owner is None
    assert done.step == 1
    assert (done.delivered, done.gone, done.failed) == (5, 1, 4)
    assert decide(done, 1, "m2") is Action.SKIP_COMPLETE
    # a complete segment cannot be claimed again, not even with what was read
    assert not await checkpoints.claim(job_id, 0, step=1, owner="m3", seen=done, cursor=None)
    assert not await checkpoints.claim(job_id, 0, step=2, owner="m3", seen=done, cursor=None)


async def test_finish_step_requires_the_claim(checkpoints: Checkpoints, job_id: str) -> None:
    assert not await checkpoints.finish_step(
        job_id, 0, step=0, owner="m1", report=report(1), next_cursor=None
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
    await checkpoints.claim(job_id, 0, step=0, owner="m1", seen=None, cursor=None)
    assert before + TTL <= await ttl() <= int(time.time()) + TTL
    await checkpoints.finish_step(job_id, 0, step=0, owner="m1", report=report(), next_cursor=None)
    assert before + TTL <= await ttl() <= int(time.time()) + TTL


# --- JobRunner with fakes ---------------------------------------------------------------------


class FakeFanout:
    """Returns a chosen report; records how it was called; may call the checkpoint first."""

    def __init__(self, result: FanoutReport, *, marks: tuple[Cursor, ...] = ()) -> None:
        self.result = result
        self.marks = marks
        self.calls: list[dict[str, Any]] = []

    async def run(self, target: Any, payload: bytes, **kwargs: Any) -> FanoutReport:
        self.calls.append({"target": target, "payload": payload, **kwargs})
        checkpoint: Callable[[Cursor, FanoutReport], Awaitable[None]] = kwargs["checkpoint"]
        for mark in self.marks:
            await checkpoint(mark, self.result)
        return self.result


class FakeQueue:
    def __init__(self) -> None:
        self.sent: list[BroadcastJob] = []
        self.batches: list[list[BroadcastJob]] = []

    async def enqueue(self, job: BroadcastJob) -> str:
        self.sent.append(job)
        return f"msg-{len(self.sent)}"

    async def enqueue_many(self, jobs: list[BroadcastJob]) -> int:
        self.batches.append(list(jobs))
        return len(jobs)


class FakeCheckpoints:
    """In-memory progress items with the conditions of :class:`Checkpoints`."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, int | None], Checkpoint] = {}

    async def load(self, job_id: str, segment: int | None) -> Checkpoint | None:
        return self.items.get((job_id, segment))

    async def claim(
        self,
        job_id: str,
        segment: int | None,
        *,
        step: int,
        owner: str,
        seen: Checkpoint | None,
        cursor: Cursor | None,
    ) -> bool:
        now = self.items.get((job_id, segment))
        if seen is None:
            if now is not None:
                return False
            now = point(step, owner, cursor=cursor)
        elif now is None or now.complete or (now.step, now.owner) != (seen.step, seen.owner):
            return False
        self.items[job_id, segment] = replace(
            now, step=step, owner=owner, cursor=cursor or now.cursor
        )
        return True

    def _owned(self, job_id: str, segment: int | None, step: int, owner: str) -> bool:
        now = self.items.get((job_id, segment))
        return now is not None and (now.step, now.owner) == (step, owner)

    async def save(
        self, job_id: str, segment: int | None, *, step: int, owner: str, cursor: Cursor
    ) -> None:
        if not self._owned(job_id, segment, step, owner):
            raise _LostClaimError("not ours")
        self.items[job_id, segment] = replace(self.items[job_id, segment], cursor=cursor)

    async def finish_step(
        self,
        job_id: str,
        segment: int | None,
        *,
        step: int,
        owner: str,
        report: FanoutReport,
        next_cursor: Cursor | None,
    ) -> bool:
        if not self._owned(job_id, segment, step, owner):
            return False
        now = self.items[job_id, segment]
        counts = {
            "delivered": now.delivered + report.delivered,
            "gone": now.gone + report.gone,
            "failed": now.failed + report.failed,
        }
        if next_cursor is None:
            self.items[job_id, segment] = replace(now, owner=None, complete=True, **counts)
        else:
            self.items[job_id, segment] = replace(
                now, step=step + 1, owner=None, cursor=next_cursor, advanced_by=owner, **counts
            )
        return True


DONE = FanoutReport(delivered=10, gone=1, failed=2)
RESUME = Cursor(after={"PK": "CONN#m=", "SK": "CONN"})
PARTIAL = FanoutReport(delivered=5, complete=False, resume=RESUME)


def runner(
    result: FanoutReport = DONE, *, segments: int = 4, marks: tuple[Cursor, ...] = ()
) -> tuple[JobRunner, FakeFanout, FakeQueue, FakeCheckpoints]:
    fanout, queue, store = FakeFanout(result, marks=marks), FakeQueue(), FakeCheckpoints()
    return (
        JobRunner(fanout, queue, store, segments=segments, checkpoint_every=50),  # type: ignore[arg-type]
        fanout,
        queue,
        store,
    )


def all_job(**fields: Any) -> BroadcastJob:
    return BroadcastJob(job_id="job-1", target=AllTarget(all=True), data="hi", **fields)


def shard(segment: int = 0, total: int = 2, cursor: Cursor | None = None) -> BroadcastJob:
    return all_job(segment=segment, total_segments=total, cursor=cursor)


async def go(run: JobRunner, job: BroadcastJob, message: str = "m1") -> JobResult:
    return await run.run(job, message_id=message, deadline=time.monotonic() + 60)


async def test_all_job_is_split_into_segments() -> None:
    run, fanout, queue, store = runner(segments=4)
    job = all_job(exclude=["me="], cursor=Cursor(offset=3, step=2))
    result = await go(run, job)
    assert result == JobResult("split", segments=4)
    assert len(queue.batches) == 1
    shards = queue.batches[0]
    assert [s.segment for s in shards] == [0, 1, 2, 3]
    assert {s.total_segments for s in shards} == {4}
    assert {s.job_id for s in shards} == {"job-1"}
    assert all(s.cursor is None for s in shards)
    assert all(s.exclude == ["me="] and s.data == "hi" for s in shards)
    assert all(s.target == AllTarget(all=True) for s in shards)
    assert fanout.calls == []
    assert queue.sent == []
    assert store.items == {}
    # each shard is a valid job in its own right
    assert [BroadcastJob.model_validate(s.model_dump()) for s in shards] == shards


async def test_single_segment_runs_directly() -> None:
    run, fanout, queue, store = runner(segments=1)
    result = await go(run, all_job())
    assert result == JobResult("completed", DONE)
    assert queue.batches == []
    assert len(fanout.calls) == 1
    call = fanout.calls[0]
    assert (call["segment"], call["total_segments"]) == (0, 1)
    assert call["cursor"] is None
    assert call["payload"] == b"hi"
    assert call["checkpoint_every"] == 50
    assert store.items["job-1", 0].complete


async def test_non_all_job_is_not_split() -> None:
    run, fanout, queue, store = runner(segments=4)
    job = BroadcastJob(job_id="job-2", target=RoomTarget(room="lobby"), data="x", exclude=["a="])
    assert (await go(run, job)).action == "completed"
    assert queue.batches == []
    call = fanout.calls[0]
    assert call["target"] == RoomTarget(room="lobby")
    assert (call["segment"], call["total_segments"]) == (None, None)
    assert call["exclude"] == ["a="]
    assert store.items["job-2", None].complete


async def test_complete_run_marks_complete_and_enqueues_nothing() -> None:
    run, _, queue, store = runner(DONE)
    result = await go(run, shard(1, 2))
    assert result == JobResult("completed", DONE)
    assert queue.sent == []
    assert queue.batches == []
    item = store.items["job-1", 1]
    assert item.complete
    assert item.owner is None
    assert (item.delivered, item.gone, item.failed) == (10, 1, 2)


async def test_incomplete_run_advances_and_continues_once() -> None:
    run, _, queue, store = runner(PARTIAL)
    job = shard(1, 2, cursor=Cursor(after={"PK": "CONN#a=", "SK": "CONN"}, step=4))
    result = await go(run, job, "m4")
    assert result == JobResult("continued", PARTIAL)
    following = RESUME.model_copy(update={"step": 5})
    assert queue.sent == [job.model_copy(update={"cursor": following})]
    assert queue.sent[0].cursor == following
    assert queue.batches == []
    assert store.items["job-1", 1] == replace(
        point(5, None, cursor=following, advanced_by="m4"), delivered=5
    )


async def test_continuation_resumes_from_the_checkpoint() -> None:
    run, fanout, queue, store = runner(PARTIAL)
    await go(run, shard(), "m0")
    (continuation,) = queue.sent
    assert continuation.cursor is not None
    assert continuation.cursor.step == 1
    fanout.result = DONE
    assert (await go(run, continuation, "m1")).action == "completed"
    assert fanout.calls[1]["cursor"] == continuation.cursor
    assert len(queue.sent) == 1
    assert store.items["job-1", 0].complete
    assert store.items["job-1", 0].delivered == 15
    # late copies of either message are acknowledged without running
    assert (await go(run, shard(), "m0")).action == "skipped-complete"
    assert (await go(run, continuation, "m1")).action == "skipped-complete"
    assert len(fanout.calls) == 2


async def test_completed_segment_is_skipped_without_running() -> None:
    run, fanout, queue, store = runner()
    store.items["job-1", 0] = point(3, None, complete=True, advanced_by="m2")
    for job, message in [(shard(), "m1"), (shard(cursor=Cursor(step=3)), "m3")]:
        assert await go(run, job, message) == JobResult("skipped-complete")
    assert fanout.calls == []
    assert queue.sent == []


async def test_stale_and_claimed_copies_are_skipped() -> None:
    run, fanout, queue, store = runner()
    store.items["job-1", 0] = point(2, "m2", cursor=Cursor(step=2))
    assert await go(run, shard(cursor=Cursor(step=1)), "m1") == JobResult("skipped-stale")
    assert await go(run, shard(cursor=Cursor(step=2)), "m9") == JobResult("skipped-claimed")
    assert fanout.calls == []
    assert queue.sent == []


async def test_reenqueue_after_a_crash_between_advance_and_handover() -> None:
    run, fanout, queue, store = runner()
    saved = Cursor(after={"PK": "CONN#q=", "SK": "CONN"}, step=3)
    store.items["job-1", 1] = point(3, None, cursor=saved, advanced_by="m2")
    job = shard(1, 2, cursor=Cursor(after={"PK": "CONN#b=", "SK": "CONN"}, step=2))
    assert await go(run, job, "m2") == JobResult("reenqueued")
    assert queue.sent == [job.model_copy(update={"cursor": saved})]
    assert fanout.calls == []
    assert store.items["job-1", 1] == point(3, None, cursor=saved, advanced_by="m2")


async def test_redelivered_owner_resumes_from_its_watermark() -> None:
    run, fanout, _, store = runner()
    saved = Cursor(after={"PK": "CONN#w=", "SK": "CONN"}, step=2)
    store.items["job-1", 0] = point(2, "m1", cursor=saved)
    job = shard(cursor=Cursor(after={"PK": "CONN#a=", "SK": "CONN"}, step=2))
    assert (await go(run, job, "m1")).action == "completed"
    assert fanout.calls[0]["cursor"] == saved


async def test_start_cursor_is_the_jobs_on_another_step() -> None:
    run, fanout, _, store = runner()
    older = Cursor(after={"PK": "CONN#o=", "SK": "CONN"}, step=1)
    store.items["job-1", 0] = point(1, None, cursor=older)
    mine = Cursor(after={"PK": "CONN#n=", "SK": "CONN"}, step=2)
    assert (await go(run, shard(cursor=mine), "m5")).action == "completed"
    assert fanout.calls[0]["cursor"] == mine


async def test_start_cursor_without_a_checkpoint_is_the_jobs() -> None:
    run, fanout, _, store = runner()
    mine = Cursor(after={"PK": "CONN#n=", "SK": "CONN"}, step=0)
    assert (await go(run, shard(cursor=mine), "m5")).action == "completed"
    assert fanout.calls[0]["cursor"] == mine
    assert store.items["job-1", 0].complete


async def test_start_cursor_is_the_jobs_when_the_item_has_none() -> None:
    run, fanout, _, store = runner()
    store.items["job-1", 0] = point(2, "m1")
    mine = Cursor(offset=4, step=2)
    assert (await go(run, shard(cursor=mine), "m1")).action == "completed"
    assert fanout.calls[0]["cursor"] == mine


async def test_watermarks_are_saved_under_the_current_step() -> None:
    marks = (Cursor(after={"PK": "CONN#1=", "SK": "CONN"}), Cursor(offset=9, step=0))
    run, _, _, store = runner(PARTIAL, marks=marks)
    seen: list[Cursor | None] = []
    save = store.save

    async def spy(job_id: str, segment: int | None, **kwargs: Any) -> None:
        await save(job_id, segment, **kwargs)
        seen.append(store.items[job_id, segment].cursor)

    store.save = spy  # type: ignore[method-assign]
    await go(run, shard(cursor=Cursor(step=6)), "m6")
    assert seen == [m.model_copy(update={"step": 6}) for m in marks]


async def test_lost_claim_mid_run_stops_without_handover() -> None:
    run, fanout, queue, store = runner(PARTIAL, marks=(Cursor(offset=1),))
    store.items["job-1", 0] = point(0, "m1")
    save = store.save

    async def stolen(job_id: str, segment: int | None, **kwargs: Any) -> None:
        store.items[job_id, segment] = point(0, "m2")  # another copy took the step over
        await save(job_id, segment, **kwargs)

    store.save = stolen  # type: ignore[method-assign]
    assert await go(run, shard(), "m1") == JobResult("lost-claim")
    assert len(fanout.calls) == 1
    assert queue.sent == []
    assert store.items["job-1", 0] == point(0, "m2")


async def test_lost_claim_at_handover_enqueues_nothing() -> None:
    run, _, queue, store = runner(PARTIAL)
    finish = store.finish_step

    async def stolen(job_id: str, segment: int | None, **kwargs: Any) -> bool:
        store.items[job_id, segment] = point(0, "m2")
        return await finish(job_id, segment, **kwargs)

    store.finish_step = stolen  # type: ignore[method-assign]
    assert await go(run, shard(), "m1") == JobResult("lost-claim", PARTIAL)
    assert queue.sent == []


async def test_lost_race_for_the_claim_is_skipped() -> None:
    run, fanout, _, store = runner()

    async def refuse(*_: Any, **__: Any) -> bool:
        return False

    store.claim = refuse  # type: ignore[method-assign]
    assert await go(run, shard(), "m1") == JobResult("skipped-claimed")
    assert fanout.calls == []
