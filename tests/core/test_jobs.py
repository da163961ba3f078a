"""Broadcast jobs: the step decision table, progress items on DynamoDB, the runner's hand-offs."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import anyio
import pytest

from wsfanout.core.fanout import RunHooks
from wsfanout.core.jobs import (
    CLOCK_SKEW_S,
    LEASE_MARGIN_S,
    Action,
    Checkpoint,
    Claim,
    JobOutcome,
    JobResult,
    JobRunner,
    Step,
    Tally,
    decide,
    wall_clock,
)
from wsfanout.core.models import AllTarget, BroadcastJob, Cursor, FanoutReport, RoomTarget
from wsfanout.testing import MemoryJobSink, MemoryProgressStore

TTL = 3600
NOW = 1_800_000_000.0
CURSOR = Cursor(after={"PK": "CONN#abc=", "SK": "CONN"}, offset=7, user=2, step=3)


# --- decide(): the whole table ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("checkpoint", "step", "message", "action"),
    [
        # no progress item yet
        (None, 0, "m1", Action.CLAIM),
        (None, 3, "m1", Action.CLAIM),
        # a complete segment, whatever names it
        (Checkpoint(2, complete=True), 0, "m1", Action.SKIP_COMPLETE),
        (Checkpoint(2, complete=True), 2, "m1", Action.SKIP_COMPLETE),
        (Checkpoint(2, complete=True), 5, "m1", Action.SKIP_COMPLETE),
        (Checkpoint(2, "m1", complete=True), 2, "m1", Action.SKIP_COMPLETE),
        (Checkpoint(3, None, complete=True, advanced_by="m1"), 2, "m1", Action.SKIP_COMPLETE),
        # the item is ahead of the message
        (Checkpoint(3, None, advanced_by="m1"), 2, "m1", Action.REENQUEUE),
        (Checkpoint(3, "m2", advanced_by="m1"), 2, "m1", Action.SKIP_STALE),  # owner set
        (Checkpoint(4, None, advanced_by="m1"), 2, "m1", Action.SKIP_STALE),  # not step + 1
        (Checkpoint(3, None, advanced_by="m9"), 2, "m1", Action.SKIP_STALE),  # another advanced it
        (Checkpoint(3, None, advanced_by=None), 2, "m1", Action.SKIP_STALE),
        (Checkpoint(3, "m1", advanced_by="m1"), 2, "m1", Action.SKIP_STALE),
        (Checkpoint(9, "m2"), 0, "m1", Action.SKIP_STALE),
        # same step
        (Checkpoint(2, None), 2, "m1", Action.CLAIM),
        (Checkpoint(2, None, advanced_by="m0"), 2, "m1", Action.CLAIM),
        (Checkpoint(2, "m1"), 2, "m1", Action.CLAIM),  # redelivery of the owner after a crash
        (Checkpoint(2, "m2"), 2, "m1", Action.SKIP_CLAIMED),
        (Checkpoint(0, "m2"), 0, "m1", Action.SKIP_CLAIMED),
        # the message is ahead of the item
        (Checkpoint(1, None), 2, "m1", Action.CLAIM),
        (Checkpoint(1, "m2"), 2, "m1", Action.CLAIM),
        (Checkpoint(0, "m2"), 7, "m1", Action.CLAIM),
    ],
)
def test_decide(checkpoint: Checkpoint | None, step: int, message: str, action: Action) -> None:
    assert decide(checkpoint, step, message, NOW) is action


def leased(step: int, owner: str, until: float, **fields: Any) -> Checkpoint:
    return Checkpoint(step, owner, token="t-other", lease_until=until, **fields)


@pytest.mark.parametrize(
    ("checkpoint", "step", "message", "action"),
    [
        # a copy of the owner (another invocation, same message id)
        (leased(2, "m1", NOW + 30), 2, "m1", Action.SKIP_LEASED),
        (leased(2, "m1", NOW + 0.001), 2, "m1", Action.SKIP_LEASED),
        (leased(2, "m1", NOW), 2, "m1", Action.CLAIM),  # the lease ends at its deadline
        (leased(2, "m1", NOW - 30), 2, "m1", Action.CLAIM),  # lapsed: the owner crashed
        # another message never takes a step over, leased or not
        (leased(2, "m2", NOW + 30), 2, "m1", Action.SKIP_CLAIMED),
        (leased(2, "m2", NOW - 30), 2, "m1", Action.SKIP_CLAIMED),
        # a lease does not outlive the step, nor a complete segment, nor stale copies
        (leased(1, "m1", NOW + 30), 2, "m1", Action.CLAIM),
        (leased(2, "m1", NOW + 30, complete=True), 2, "m1", Action.SKIP_COMPLETE),
        (leased(3, "m2", NOW + 30, advanced_by="m1"), 2, "m1", Action.SKIP_STALE),
    ],
)
def test_decide_with_a_lease(
    checkpoint: Checkpoint, step: int, message: str, action: Action
) -> None:
    assert decide(checkpoint, step, message, NOW) is action


# --- JobRunner with in-memory doubles -------------------------------------------------------------


class FakeFanout:
    """Returns a chosen report; records how it was called; may call the checkpoint first."""

    def __init__(self, result: FanoutReport, *, marks: tuple[Cursor, ...] = ()) -> None:
        self.result = result
        self.marks = marks
        self.calls: list[dict[str, Any]] = []

    async def run(self, target: Any, payload: bytes, **kwargs: Any) -> FanoutReport:
        self.calls.append({"target": target, "payload": payload, **kwargs})
        hooks: RunHooks = kwargs["hooks"]
        assert hooks.checkpoint is not None
        for mark in self.marks:
            await hooks.checkpoint(mark, self.result)
        return self.result


DONE = FanoutReport(delivered=10, gone=1, failed=2)
RESUME = Cursor(after={"PK": "CONN#m=", "SK": "CONN"})
PARTIAL = FanoutReport(delivered=5, complete=False, resume=RESUME)


def runner(
    result: FanoutReport = DONE, *, segments: int = 4, marks: tuple[Cursor, ...] = ()
) -> tuple[JobRunner, FakeFanout, MemoryJobSink, MemoryProgressStore]:
    fanout, queue, store = FakeFanout(result, marks=marks), MemoryJobSink(), MemoryProgressStore()
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
    assert result == JobResult(JobOutcome.SPLIT, segments=4)
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
    assert result == JobResult(JobOutcome.COMPLETED, DONE)
    assert queue.batches == []
    assert len(fanout.calls) == 1
    call = fanout.calls[0]
    assert (call["segment"], call["total_segments"]) == (0, 1)
    assert call["cursor"] is None
    assert call["payload"] == b"hi"
    assert call["hooks"].checkpoint_every == 50
    assert store.items["job-1", 0].complete


async def test_non_all_job_is_not_split() -> None:
    run, fanout, queue, store = runner(segments=4)
    job = BroadcastJob(job_id="job-2", target=RoomTarget(room="lobby"), data="x", exclude=["a="])
    assert (await go(run, job)).action is JobOutcome.COMPLETED
    assert queue.batches == []
    call = fanout.calls[0]
    assert call["target"] == RoomTarget(room="lobby")
    assert (call["segment"], call["total_segments"]) == (None, None)
    assert call["exclude"] == ["a="]
    assert store.items["job-2", None].complete


async def test_complete_run_marks_complete_and_enqueues_nothing() -> None:
    run, _, queue, store = runner(DONE)
    result = await go(run, shard(1, 2))
    assert result == JobResult(JobOutcome.COMPLETED, DONE)
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
    assert result == JobResult(JobOutcome.CONTINUED, PARTIAL)
    following = RESUME.model_copy(update={"step": 5})
    assert queue.sent == [job.model_copy(update={"cursor": following})]
    assert queue.sent[0].cursor == following
    assert queue.batches == []
    assert store.items["job-1", 1] == replace(
        Checkpoint(5, None, cursor=following, advanced_by="m4"), delivered=5
    )


async def test_continuation_resumes_from_the_checkpoint() -> None:
    run, fanout, queue, store = runner(PARTIAL)
    await go(run, shard(), "m0")
    (continuation,) = queue.sent
    assert continuation.cursor is not None
    assert continuation.cursor.step == 1
    fanout.result = DONE
    assert (await go(run, continuation, "m1")).action is JobOutcome.COMPLETED
    assert fanout.calls[1]["cursor"] == continuation.cursor
    assert len(queue.sent) == 1
    assert store.items["job-1", 0].complete
    assert store.items["job-1", 0].delivered == 15
    # late copies of either message are acknowledged without running
    assert (await go(run, shard(), "m0")).action is JobOutcome.SKIPPED_COMPLETE
    assert (await go(run, continuation, "m1")).action is JobOutcome.SKIPPED_COMPLETE
    assert len(fanout.calls) == 2


async def test_completed_segment_is_skipped_without_running() -> None:
    run, fanout, queue, store = runner()
    store.items["job-1", 0] = Checkpoint(3, None, complete=True, advanced_by="m2")
    for job, message in [(shard(), "m1"), (shard(cursor=Cursor(step=3)), "m3")]:
        assert await go(run, job, message) == JobResult(JobOutcome.SKIPPED_COMPLETE)
    assert fanout.calls == []
    assert queue.sent == []


async def test_stale_and_claimed_copies_are_skipped() -> None:
    run, fanout, queue, store = runner()
    store.items["job-1", 0] = Checkpoint(2, "m2", cursor=Cursor(step=2))
    assert await go(run, shard(cursor=Cursor(step=1)), "m1") == JobResult(JobOutcome.SKIPPED_STALE)
    assert await go(run, shard(cursor=Cursor(step=2)), "m9") == JobResult(
        JobOutcome.SKIPPED_CLAIMED
    )
    assert fanout.calls == []
    assert queue.sent == []


async def test_reenqueue_after_a_crash_between_advance_and_handover() -> None:
    run, fanout, queue, store = runner()
    saved = Cursor(after={"PK": "CONN#q=", "SK": "CONN"}, step=3)
    store.items["job-1", 1] = Checkpoint(3, None, cursor=saved, advanced_by="m2")
    job = shard(1, 2, cursor=Cursor(after={"PK": "CONN#b=", "SK": "CONN"}, step=2))
    assert await go(run, job, "m2") == JobResult(JobOutcome.REENQUEUED)
    assert queue.sent == [job.model_copy(update={"cursor": saved})]
    assert fanout.calls == []
    assert store.items["job-1", 1] == Checkpoint(3, None, cursor=saved, advanced_by="m2")


async def test_redelivered_owner_resumes_from_its_watermark() -> None:
    run, fanout, _, store = runner()
    saved = Cursor(after={"PK": "CONN#w=", "SK": "CONN"}, step=2)
    store.items["job-1", 0] = Checkpoint(2, "m1", cursor=saved)
    job = shard(cursor=Cursor(after={"PK": "CONN#a=", "SK": "CONN"}, step=2))
    assert (await go(run, job, "m1")).action is JobOutcome.COMPLETED
    assert fanout.calls[0]["cursor"] == saved


async def test_start_cursor_is_the_jobs_on_another_step() -> None:
    run, fanout, _, store = runner()
    older = Cursor(after={"PK": "CONN#o=", "SK": "CONN"}, step=1)
    store.items["job-1", 0] = Checkpoint(1, None, cursor=older)
    mine = Cursor(after={"PK": "CONN#n=", "SK": "CONN"}, step=2)
    assert (await go(run, shard(cursor=mine), "m5")).action is JobOutcome.COMPLETED
    assert fanout.calls[0]["cursor"] == mine


async def test_start_cursor_without_a_checkpoint_is_the_jobs() -> None:
    run, fanout, _, store = runner()
    mine = Cursor(after={"PK": "CONN#n=", "SK": "CONN"}, step=0)
    assert (await go(run, shard(cursor=mine), "m5")).action is JobOutcome.COMPLETED
    assert fanout.calls[0]["cursor"] == mine
    assert store.items["job-1", 0].complete


async def test_start_cursor_is_the_jobs_when_the_item_has_none() -> None:
    run, fanout, _, store = runner()
    store.items["job-1", 0] = Checkpoint(2, "m1")
    mine = Cursor(offset=4, step=2)
    assert (await go(run, shard(cursor=mine), "m1")).action is JobOutcome.COMPLETED
    assert fanout.calls[0]["cursor"] == mine


async def test_watermarks_are_saved_under_the_current_step() -> None:
    marks = (Cursor(after={"PK": "CONN#1=", "SK": "CONN"}), Cursor(offset=9, step=0))
    run, _, _, store = runner(PARTIAL, marks=marks)
    seen: list[Cursor | None] = []
    save = store.save

    async def spy(step: Step, cursor: Cursor, so_far: Tally | None = None) -> bool:
        saved = await save(step, cursor, so_far)
        seen.append(store.items[step.job_id, step.segment].cursor)
        return saved

    store.save = spy  # type: ignore[method-assign]
    await go(run, shard(cursor=Cursor(step=6)), "m6")
    assert seen == [m.model_copy(update={"step": 6}) for m in marks]


async def test_lost_claim_mid_run_stops_without_handover() -> None:
    run, fanout, queue, store = runner(PARTIAL, marks=(Cursor(offset=1),))
    store.items["job-1", 0] = Checkpoint(0, "m1")
    save = store.save

    async def stolen(step: Step, cursor: Cursor, so_far: Tally | None = None) -> bool:
        store.items[step.job_id, step.segment] = Checkpoint(0, "m2")  # another copy took it over
        return await save(step, cursor, so_far)

    store.save = stolen  # type: ignore[method-assign]
    assert await go(run, shard(), "m1") == JobResult(JobOutcome.LOST_CLAIM)
    assert len(fanout.calls) == 1
    assert queue.sent == []
    assert store.items["job-1", 0] == Checkpoint(0, "m2")


async def test_lost_claim_at_handover_enqueues_nothing() -> None:
    run, _, queue, store = runner(PARTIAL)
    finish = store.finish

    async def stolen(step: Step, report: FanoutReport, next_cursor: Cursor | None) -> bool:
        store.items[step.job_id, step.segment] = Checkpoint(0, "m2")
        return await finish(step, report, next_cursor)

    store.finish = stolen  # type: ignore[method-assign]
    assert await go(run, shard(), "m1") == JobResult(JobOutcome.LOST_CLAIM, PARTIAL)
    assert queue.sent == []


async def test_lost_race_for_the_claim_is_skipped() -> None:
    run, fanout, _, store = runner()

    async def refuse(*_: Any, **__: Any) -> bool:
        return False

    store.claim = refuse  # type: ignore[method-assign]
    assert await go(run, shard(), "m1") == JobResult(JobOutcome.SKIPPED_CLAIMED)
    assert fanout.calls == []


# --- leases: two invocations of one message -------------------------------------------------------


async def test_a_copy_of_a_leased_step_is_skipped() -> None:
    run, fanout, queue, store = runner()
    item = Checkpoint(
        2, "m1", cursor=Cursor(step=2), token="t-other", lease_until=wall_clock() + 60
    )
    store.items["job-1", 0] = item
    assert await go(run, shard(cursor=Cursor(step=2)), "m1") == JobResult(JobOutcome.SKIPPED_LEASED)
    assert fanout.calls == []
    assert queue.sent == []
    assert store.items["job-1", 0] == item


async def test_a_lapsed_lease_is_taken_over_from_the_watermark() -> None:
    run, fanout, _, store = runner()
    saved = Cursor(after={"PK": "CONN#w=", "SK": "CONN"}, step=2)
    lapsed = wall_clock() - 1
    store.items["job-1", 0] = Checkpoint(2, "m1", cursor=saved, token="t-dead", lease_until=lapsed)
    job = shard(cursor=Cursor(after={"PK": "CONN#a=", "SK": "CONN"}, step=2))
    assert (await go(run, job, "m1")).action is JobOutcome.COMPLETED
    assert fanout.calls[0]["cursor"] == saved
    done = store.items["job-1", 0]
    assert done.complete
    assert (done.owner, done.token, done.lease_until) == (None, None, None)


async def test_checkpoints_carry_the_steps_counts_and_a_takeover_counts_on() -> None:
    """A crashed step's counts up to its last checkpoint are not lost: the checkpoint records
    them, and the invocation that takes the step over adds its own to them, so the segment's
    totals count every connection once (found by the fault suite: they were lost)."""
    mark = Cursor(after={"PK": "CONN#w=", "SK": "CONN"})
    run, _, _, store = runner(PARTIAL, marks=(mark,))
    await go(run, shard(), "m1")
    assert store.items["job-1", 0].so_far is None, "a finished step leaves no counts so far"
    lapsed = wall_clock() - 1
    crashed = Checkpoint(0, "m1", cursor=mark, token="t-dead", lease_until=lapsed)
    run, fanout, _, store = runner(DONE, marks=(mark,))
    store.items["job-1", 1] = replace(crashed, so_far=Tally(delivered=7, gone=3, failed=1))
    assert (await go(run, shard(segment=1), "m1")).report == DONE, "its own report, as run"
    done = store.items["job-1", 1]
    assert done.complete
    assert (done.delivered, done.gone, done.failed) == (10 + 7, 1 + 3, 2 + 1)
    assert done.so_far is None
    assert fanout.calls[0]["cursor"] == mark


class HeldFanout(FakeFanout):
    """Records the progress item while the step runs, then waits to be released."""

    def __init__(self, store: MemoryProgressStore) -> None:
        super().__init__(DONE)
        self.store = store
        self.running: list[Checkpoint] = []
        self.entered = anyio.Event()
        self.release = anyio.Event()

    async def run(self, target: Any, payload: bytes, **kwargs: Any) -> FanoutReport:
        self.running.append(self.store.items["job-1", 0])
        self.entered.set()
        await self.release.wait()
        return await super().run(target, payload, **kwargs)


def held_runner() -> tuple[JobRunner, HeldFanout, MemoryProgressStore]:
    store = MemoryProgressStore()
    fanout = HeldFanout(store)
    runner = JobRunner(fanout, MemoryJobSink(), store)  # type: ignore[arg-type]
    return runner, fanout, store


@pytest.mark.parametrize("lease_s", [None, 300.0])
async def test_the_lease_covers_the_workers_deadline(lease_s: float | None) -> None:
    run, fanout, _ = held_runner()
    results: list[JobResult] = []

    async def first() -> None:
        results.append(
            await run.run(shard(), message_id="m1", deadline=time.monotonic() + 60, lease_s=lease_s)
        )

    before = wall_clock()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(first)
            await fanout.entered.wait()
            fanout.release.set()
    [running] = fanout.running
    expected = (60 + LEASE_MARGIN_S if lease_s is None else lease_s) + CLOCK_SKEW_S
    assert running.owner == "m1"
    assert running.token
    assert running.lease_until is not None
    assert before + expected - 1 <= running.lease_until <= wall_clock() + expected
    assert results == [JobResult(JobOutcome.COMPLETED, DONE)]


async def test_two_invocations_of_one_message_at_once_run_the_step_once() -> None:
    run, fanout, store = held_runner()
    results: list[JobResult] = []

    async def first() -> None:
        results.append(await go(run, shard(), "m1"))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(first)
            await fanout.entered.wait()
            copy = await go(run, shard(), "m1")
            fanout.release.set()
    assert copy == JobResult(JobOutcome.SKIPPED_LEASED)
    assert results == [JobResult(JobOutcome.COMPLETED, DONE)]
    assert len(fanout.calls) == 1
    assert store.items["job-1", 0].complete


async def test_a_lost_race_to_a_copy_of_the_same_message_is_skipped_leased() -> None:
    run, fanout, _, store = runner()
    original = store.claim

    async def copy_first(claim: Claim) -> bool:
        other = replace(claim, step=replace(claim.step, token="t-copy"))
        assert await original(other)  # the copy read the same item and wrote first
        return await original(claim)

    store.claim = copy_first  # type: ignore[method-assign]
    assert await go(run, shard(), "m1") == JobResult(JobOutcome.SKIPPED_LEASED)
    assert fanout.calls == []
    assert store.items["job-1", 0].token == "t-copy"


async def test_a_copy_that_took_the_step_over_stops_the_first_at_its_checkpoint() -> None:
    run, _, queue, store = runner(PARTIAL, marks=(Cursor(offset=1),))
    save = store.save

    async def taken_over(step: Step, cursor: Cursor, so_far: Tally | None = None) -> bool:
        taken = replace(store.items[step.job_id, step.segment], token="t-copy")
        store.items[step.job_id, step.segment] = taken  # same message id, another invocation
        return await save(step, cursor, so_far)

    store.save = taken_over  # type: ignore[method-assign]
    assert await go(run, shard(), "m1") == JobResult(JobOutcome.LOST_CLAIM)
    assert queue.sent == []
    assert store.items["job-1", 0].token == "t-copy"
    assert store.items["job-1", 0].cursor is None, "the first's watermark was refused"
