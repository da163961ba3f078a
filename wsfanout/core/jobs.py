"""Broadcast jobs across Lambda invocations: sharding, continuations and checkpoints.

A worker has minutes at most, a registry may hold millions of connections, and SQS delivers
each message at least once. So a job moves in *steps*: a step runs the engine until its deadline,
then hands the rest over in a continuation message carrying the resume cursor and the next step
number. Each job segment has one progress item (``JOB#{jobId}`` / ``SEG#{segment}``) recording the
step, the cursor, and which SQS message owns the step:

- a message *claims* its step with a conditional write on exactly the state it read, so of two
  copies of one message only one runs. The claim is a *lease*: a token unique to the invocation
  (:meth:`JobRunner.run` call) and a deadline in epoch seconds, until when Lambda could still be
  running that invocation (its remaining time plus :data:`CLOCK_SKEW_S`). A copy of the owner
  (same message id, another token: SQS redelivered it while the first still runs) is skipped
  while the lease is live; once it lapsed, the owner must have stopped (a crash), so the copy
  takes the step over and resumes from the last checkpoint;
- while running, the engine's watermark (every connection before it finished) is saved every
  page, conditional on the token, so a crash re-sends at most what was in flight since, and a
  worker whose step was taken over stops at its next checkpoint;
- at the deadline the item advances to the next step (recording which message advanced it)
  *before* the continuation is enqueued; if the worker dies in between, the redelivered message
  sees that it advanced the job itself and enqueues the continuation again;
- a complete segment is acknowledged and skipped, whatever message names it (idempotency).

The decision is the pure function :func:`decide`; :class:`JobRunner` runs it against a
:class:`~wsfanout.core.interfaces.ProgressStore` (DynamoDB's is
:class:`~wsfanout.aws.progress.Checkpoints`) and a :class:`~wsfanout.core.interfaces.JobSink`.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .fanout import RunHooks
from .models import AllTarget, BroadcastJob, Cursor, FanoutReport

if TYPE_CHECKING:
    from .fanout import Fanout
    from .interfaces import JobSink, ProgressStore

__all__ = [
    "CLOCK_SKEW_S",
    "LEASE_MARGIN_S",
    "Action",
    "Checkpoint",
    "Claim",
    "JobOutcome",
    "JobResult",
    "JobRunner",
    "Step",
    "Tally",
    "decide",
    "wall_clock",
]

CLOCK_SKEW_S = 1.0
"""Added to every lease: workers on different hosts compare one another's wall clocks."""

LEASE_MARGIN_S = 5.0
"""Added to a lease that runs to the deadline (no ``lease_s``): what the sends in flight and the
hand-over may take after it."""


def wall_clock() -> float:
    """Epoch seconds, the clock leases are written and compared in (not :func:`time.monotonic`:
    a lease is read by other processes on other hosts). Tests replace it to play a lapse of
    time, such as a visibility timeout."""
    return time.time()


class Action(enum.Enum):
    """What a worker does with a job message, given the segment's progress item."""

    CLAIM = "claim"  # run this step
    SKIP_COMPLETE = "skipped-complete"  # the segment is done: acknowledge
    SKIP_STALE = "skipped-stale"  # an older step's copy: acknowledge
    SKIP_CLAIMED = "skipped-claimed"  # another message of this step runs it: acknowledge
    SKIP_LEASED = "skipped-leased"  # a live invocation of this same message runs it: acknowledge
    REENQUEUE = "reenqueued"  # this message advanced the job but died before handing it over


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A segment's progress item. ``token`` and ``lease_until`` (epoch seconds) are the owner's
    lease: which invocation holds the step, and until when; both go with the owner.
    ``delivered``, ``gone`` and ``failed`` add up the finished steps; ``so_far`` is what the
    running step had counted at its last checkpoint, so an invocation that takes the step over
    from that checkpoint counts on from there (and the segment's totals stay exact)."""

    step: int
    owner: str | None = None
    cursor: Cursor | None = None
    complete: bool = False
    advanced_by: str | None = None
    delivered: int = 0
    gone: int = 0
    failed: int = 0
    token: str | None = None
    lease_until: float | None = None
    so_far: Tally | None = None


@dataclass(frozen=True, slots=True)
class Tally:
    """Counts of a step's outcomes: what a checkpoint records of the step so far."""

    delivered: int = 0
    gone: int = 0
    failed: int = 0

    def plus(self, report: FanoutReport) -> FanoutReport:
        """``report`` with these counts added: a taken-over step's totals."""
        return report.model_copy(
            update={
                "delivered": report.delivered + self.delivered,
                "gone": report.gone + self.gone,
                "failed": report.failed + self.failed,
            }
        )


@dataclass(frozen=True, slots=True)
class Step:
    """Step ``number`` of one job segment, run by the message ``owner`` in the invocation
    ``token``: what every progress write names, so each write is conditional on that invocation
    still holding that step."""

    job_id: str
    segment: int | None
    number: int
    owner: str
    token: str


@dataclass(frozen=True, slots=True)
class Claim:
    """A message's bid for a step: the item as it was ``seen``, the ``cursor`` the step starts
    from, and the lease asked for (until ``lease_until``, as of ``now``; epoch seconds, the one
    clock two workers on two machines can compare)."""

    step: Step
    seen: Checkpoint | None
    cursor: Cursor | None
    lease_until: float
    now: float


def decide(checkpoint: Checkpoint | None, step: int, message_id: str, now: float) -> Action:
    """Pure: what message ``message_id`` carrying ``step`` should do at ``now`` (epoch seconds),
    given the progress item.

    The caller is a new invocation, so an item owned by ``message_id`` is held by another
    invocation of the same message: while its lease is live that one may still be running
    (:attr:`Action.SKIP_LEASED`); after it, it cannot be, and the step is taken over. An item
    owned without a lease (written before leases) is taken over as a crash's redelivery.
    """
    if checkpoint is None:
        return Action.CLAIM
    if checkpoint.complete:
        return Action.SKIP_COMPLETE
    if checkpoint.step > step:
        if (
            checkpoint.owner is None
            and checkpoint.step == step + 1
            and checkpoint.advanced_by == message_id
        ):
            return Action.REENQUEUE
        return Action.SKIP_STALE
    if checkpoint.step == step and checkpoint.owner is not None:
        if checkpoint.owner != message_id:
            return Action.SKIP_CLAIMED
        if checkpoint.lease_until is not None and checkpoint.lease_until > now:
            return Action.SKIP_LEASED
    return Action.CLAIM  # same step, free or ours; or a message ahead of a lost item


class JobOutcome(enum.Enum):
    """What one job message came to, as the broadcast worker logs it."""

    SPLIT = "split"  # an "all" job became one message per segment
    COMPLETED = "completed"  # the segment is done
    CONTINUED = "continued"  # the deadline came first: a continuation carries the rest
    LOST_CLAIM = "lost-claim"  # another copy took the step over; this one stopped
    SKIPPED_COMPLETE = Action.SKIP_COMPLETE.value
    SKIPPED_STALE = Action.SKIP_STALE.value
    SKIPPED_CLAIMED = Action.SKIP_CLAIMED.value
    SKIPPED_LEASED = Action.SKIP_LEASED.value
    REENQUEUED = Action.REENQUEUE.value


_SKIPPED = {
    Action.SKIP_COMPLETE: JobOutcome.SKIPPED_COMPLETE,
    Action.SKIP_STALE: JobOutcome.SKIPPED_STALE,
    Action.SKIP_CLAIMED: JobOutcome.SKIPPED_CLAIMED,
    Action.SKIP_LEASED: JobOutcome.SKIPPED_LEASED,
}


@dataclass(frozen=True, slots=True)
class JobResult:
    """What one job message came to, with the engine's report when a step ran."""

    action: JobOutcome
    report: FanoutReport | None = None
    segments: int = 0


class _LostClaimError(Exception):
    """Raised by the checkpoint callback when the progress item no longer names this invocation;
    the engine re-raises it unwrapped and the runner reports :attr:`JobOutcome.LOST_CLAIM`."""


class JobRunner:
    """Runs job messages: splits 'all' jobs, claims steps, checkpoints, hands over."""

    def __init__(
        self,
        fanout: Fanout,
        queue: JobSink,
        checkpoints: ProgressStore,
        *,
        segments: int = 4,
        checkpoint_every: int = 1000,
    ) -> None:
        self._fanout = fanout
        self._queue = queue
        self._checkpoints = checkpoints
        self._segments = segments
        self._checkpoint_every = checkpoint_every

    async def split(self, job: BroadcastJob, total: int) -> Sequence[BroadcastJob]:
        """Enqueue one job per parallel-scan segment; returns them."""
        shards = [
            job.model_copy(update={"segment": index, "total_segments": total, "cursor": None})
            for index in range(total)
        ]
        await self._queue.enqueue_many(shards)
        return shards

    async def run(
        self,
        job: BroadcastJob,
        *,
        message_id: str,
        deadline: float,
        lease_s: float | None = None,
    ) -> JobResult:
        """Handle one job message before ``deadline`` (a :func:`time.monotonic` value).

        A claimed step is leased to this call for ``lease_s`` seconds from now: as long as the
        process may still write (the Lambda handler passes the invocation's remaining time),
        so a live worker always holds a live lease. Without it, the lease runs to ``deadline``
        plus :data:`LEASE_MARGIN_S`.
        :data:`CLOCK_SKEW_S` is added either way.

        Another copy running the step, a stale copy, a finished segment and a claim lost
        mid-run are outcomes, not errors (see :class:`JobOutcome`): SQS may deliver any message
        twice, and each copy must be acknowledged.

        :raises PayloadTooLargeError: the management API answered 413.
        :raises ForbiddenError: the management API answered 403 (wrong endpoint or credentials).
        :raises RegistryError: the registry or the progress store could not be read or written.
        :raises QueueError: a split or a continuation could not be enqueued; SQS redelivers the
            message and the progress item makes the retry safe.
        """
        if isinstance(job.target, AllTarget) and job.segment is None:
            total = job.total_segments or self._segments
            if total > 1:
                return JobResult(JobOutcome.SPLIT, segments=len(await self.split(job, total)))
            job = job.model_copy(update={"segment": 0, "total_segments": 1})
        step = job.cursor.step if job.cursor else 0
        seen = await self._checkpoints.load(job.job_id, job.segment)
        now = wall_clock()
        action = decide(seen, step, message_id, now)
        if action is Action.REENQUEUE:
            assert seen is not None  # noqa: S101  (decide() only says so with an item)
            await self._queue.enqueue(job.model_copy(update={"cursor": seen.cursor}))
            return JobResult(JobOutcome.REENQUEUED)
        if action is not Action.CLAIM:
            return JobResult(_SKIPPED[action])
        start = seen.cursor if seen and seen.step == step and seen.cursor else job.cursor
        # A step taken over from a checkpoint counts on from what that checkpoint counted.
        carried = (seen.so_far if seen and seen.step == step else None) or Tally()
        mine = Step(job.job_id, job.segment, step, message_id, uuid.uuid4().hex)
        if lease_s is None:
            lease_s = max(0.0, deadline - time.monotonic()) + LEASE_MARGIN_S
        lease_until = now + lease_s + CLOCK_SKEW_S
        if not await self._checkpoints.claim(Claim(mine, seen, start, lease_until, now)):
            # Another message or invocation wrote first: say which, as if it had been read.
            seen = await self._checkpoints.load(job.job_id, job.segment)
            lost = decide(seen, step, message_id, now)
            return JobResult(_SKIPPED.get(lost, JobOutcome.SKIPPED_CLAIMED))

        async def checkpoint(cursor: Cursor, so_far: FanoutReport) -> None:
            counted = carried.plus(so_far)
            tally = Tally(counted.delivered, counted.gone, counted.failed)
            if not await self._checkpoints.save(
                mine, cursor.model_copy(update={"step": step}), tally
            ):
                raise _LostClaimError(job.job_id)

        try:
            report = await self._fanout.run(
                job.target,
                job.payload,
                exclude=job.exclude,
                segment=job.segment,
                total_segments=job.total_segments,
                cursor=start,
                deadline=deadline,
                hooks=RunHooks(checkpoint=checkpoint, checkpoint_every=self._checkpoint_every),
            )
        except _LostClaimError:
            return JobResult(JobOutcome.LOST_CLAIM)
        following: Cursor | None = None
        if not report.complete:
            assert report.resume is not None  # noqa: S101  (an incomplete run always has one)
            following = report.resume.model_copy(update={"step": step + 1})
        if not await self._checkpoints.finish(mine, carried.plus(report), following):
            return JobResult(JobOutcome.LOST_CLAIM, report)
        if following is None:
            return JobResult(JobOutcome.COMPLETED, report)
        await self._queue.enqueue(job.model_copy(update={"cursor": following}))
        return JobResult(JobOutcome.CONTINUED, report)
