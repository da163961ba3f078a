"""Broadcast jobs across Lambda invocations: sharding, continuations and checkpoints.

A worker has minutes at most, a registry may hold millions of connections, and SQS delivers
each message at least once. So a job moves in *steps*: a step runs the engine until its deadline,
then hands the rest over in a continuation message carrying the resume cursor and the next step
number. Each job segment has one progress item (``JOB#{jobId}`` / ``SEG#{segment}``) recording the
step, the cursor, and which SQS message owns the step:

- a message *claims* its step with a conditional write on exactly the state it read, so of two
  copies of one message only one runs; a redelivery of the owner (same message id, after a
  crash) may claim again and resumes from the last checkpoint;
- while running, the engine's watermark (every connection before it finished) is saved every
  page, so a crash re-sends at most what was in flight since;
- at the deadline the item advances to the next step (recording which message advanced it)
  *before* the continuation is enqueued; if the worker dies in between, the redelivered message
  sees that it advanced the job itself and enqueues the continuation again;
- a complete segment is acknowledged and skipped, whatever message names it (idempotency).

The decision is the pure function :func:`decide`; :class:`Checkpoints` does the DynamoDB writes.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from . import table as t
from .exceptions import RegistryError, WsFanoutError
from .fanout import Fanout
from .models import AllTarget, BroadcastJob, Cursor, FanoutReport
from .queue import JobQueue

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = ["Action", "Checkpoint", "Checkpoints", "JobResult", "JobRunner", "decide"]

_RUNNING, _COMPLETE = "running", "complete"


class Action(enum.Enum):
    """What a worker does with a job message, given the segment's progress item."""

    CLAIM = "claim"  # run this step
    SKIP_COMPLETE = "skipped-complete"  # the segment is done: acknowledge
    SKIP_STALE = "skipped-stale"  # an older step's copy: acknowledge
    SKIP_CLAIMED = "skipped-claimed"  # another copy of this step runs it: acknowledge
    REENQUEUE = "reenqueued"  # this message advanced the job but died before handing it over


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A segment's progress item."""

    step: int
    owner: str | None
    cursor: Cursor | None
    complete: bool
    advanced_by: str | None = None
    delivered: int = 0
    gone: int = 0
    failed: int = 0


def decide(checkpoint: Checkpoint | None, step: int, message_id: str) -> Action:
    """Pure: what message ``message_id`` carrying ``step`` should do, given the progress item."""
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
    if checkpoint.step == step and checkpoint.owner not in (None, message_id):
        return Action.SKIP_CLAIMED
    return Action.CLAIM  # same step, free or ours; or a message ahead of a lost item


class _LostClaimError(WsFanoutError):
    """The progress item no longer names this message as the step's owner."""


class Checkpoints:
    """Progress items of broadcast jobs, in the registry table."""

    def __init__(self, client: DynamoDBClient, table_name: str, *, ttl_seconds: int) -> None:
        self._client = client
        self.table_name = table_name
        self.ttl_seconds = ttl_seconds

    @staticmethod
    def _key(job_id: str, segment: int | None) -> dict[str, Any]:
        return {t.PK: {"S": t.job_pk(job_id)}, t.SK: {"S": t.segment_sk(segment)}}

    async def load(self, job_id: str, segment: int | None) -> Checkpoint | None:
        """The segment's progress item, read consistently."""
        try:
            answer = await self._client.get_item(
                TableName=self.table_name, Key=self._key(job_id, segment), ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise RegistryError(f"reading the progress of job {job_id}: {exc}") from exc
        item = answer.get("Item")
        if not item:
            return None
        cursor = item.get("cursor", {}).get("S")
        return Checkpoint(
            step=int(item["step"]["N"]),
            owner=item.get("owner", {}).get("S"),
            cursor=Cursor.model_validate_json(cursor) if cursor else None,
            complete=item.get("status", {}).get("S") == _COMPLETE,
            advanced_by=item.get("advancedBy", {}).get("S"),
            delivered=int(item.get("delivered", {}).get("N", "0")),
            gone=int(item.get("gone", {}).get("N", "0")),
            failed=int(item.get("failed", {}).get("N", "0")),
        )

    async def _update(
        self,
        job_id: str,
        segment: int | None,
        *,
        update: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str],
    ) -> bool:
        try:
            await self._client.update_item(
                TableName=self.table_name,
                Key=self._key(job_id, segment),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ExpressionAttributeNames=names,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise RegistryError(f"updating the progress of job {job_id}: {exc}") from exc
        except BotoCoreError as exc:
            raise RegistryError(f"updating the progress of job {job_id}: {exc}") from exc
        return True

    def _ttl(self) -> dict[str, str]:
        return {"N": str(int(time.time()) + self.ttl_seconds)}

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
        """Make ``owner`` the runner of ``step``, if the item is still exactly as ``seen``."""
        names = {"#step": "step", "#owner": "owner", "#status": "status", "#ttl": t.TTL_ATTRIBUTE}
        values: dict[str, Any] = {
            ":step": {"N": str(step)},
            ":owner": {"S": owner},
            ":running": {"S": _RUNNING},
            ":ttl": self._ttl(),
        }
        update = "SET #step = :step, #owner = :owner, #status = :running, #ttl = :ttl"
        if cursor is not None:
            update += ", #cursor = :cursor"
            names["#cursor"] = "cursor"
            values[":cursor"] = {"S": cursor.model_dump_json(exclude_none=True)}
        if seen is None:
            condition = "attribute_not_exists(PK)"
        else:
            values[":seen_step"] = {"N": str(seen.step)}
            values[":complete"] = {"S": _COMPLETE}
            condition = "#step = :seen_step AND #status <> :complete AND "
            if seen.owner is None:
                condition += "attribute_not_exists(#owner)"
            else:
                values[":seen_owner"] = {"S": seen.owner}
                condition += "#owner = :seen_owner"
        return await self._update(
            job_id, segment, update=update, condition=condition, values=values, names=names
        )

    def _owned(self, step: int, owner: str) -> tuple[str, dict[str, Any]]:
        return "#step = :step AND #owner = :owner", {
            ":step": {"N": str(step)},
            ":owner": {"S": owner},
        }

    async def save(
        self, job_id: str, segment: int | None, *, step: int, owner: str, cursor: Cursor
    ) -> None:
        """Record a watermark mid-run; raises if this message no longer owns the step."""
        condition, values = self._owned(step, owner)
        values[":cursor"] = {"S": cursor.model_dump_json(exclude_none=True)}
        saved = await self._update(
            job_id,
            segment,
            update="SET #cursor = :cursor",
            condition=condition,
            values=values,
            names={"#step": "step", "#owner": "owner", "#cursor": "cursor"},
        )
        if not saved:
            raise _LostClaimError(f"job {job_id} segment {segment}: step {step} is no longer ours")

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
        """Advance to the next step at ``next_cursor``, or mark the segment complete (``None``)."""
        condition, values = self._owned(step, owner)
        values.update(
            {
                ":delivered": {"N": str(report.delivered)},
                ":gone": {"N": str(report.gone)},
                ":failed": {"N": str(report.failed)},
                ":ttl": self._ttl(),
            }
        )
        names = {"#step": "step", "#owner": "owner", "#ttl": t.TTL_ATTRIBUTE}
        if next_cursor is None:
            names["#status"] = "status"
            values[":complete"] = {"S": _COMPLETE}
            update = "SET #status = :complete, #ttl = :ttl"
        else:
            values[":next"] = {"N": str(step + 1)}
            values[":cursor"] = {"S": next_cursor.model_dump_json(exclude_none=True)}
            names["#cursor"] = "cursor"
            update = "SET #step = :next, #cursor = :cursor, advancedBy = :owner, #ttl = :ttl"
        update += " REMOVE #owner ADD delivered :delivered, gone :gone, failed :failed"
        return await self._update(
            job_id, segment, update=update, condition=condition, values=values, names=names
        )


@dataclass(frozen=True, slots=True)
class JobResult:
    """What one job message came to."""

    action: str
    report: FanoutReport | None = None
    segments: int = 0


class JobRunner:
    """Runs job messages: splits 'all' jobs, claims steps, checkpoints, hands over."""

    def __init__(
        self,
        fanout: Fanout,
        queue: JobQueue,
        checkpoints: Checkpoints,
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

    async def run(self, job: BroadcastJob, *, message_id: str, deadline: float) -> JobResult:
        """Handle one job message before ``deadline`` (a :func:`time.monotonic` value)."""
        if isinstance(job.target, AllTarget) and job.segment is None:
            total = job.total_segments or self._segments
            if total > 1:
                return JobResult("split", segments=len(await self.split(job, total)))
            job = job.model_copy(update={"segment": 0, "total_segments": 1})
        step = job.cursor.step if job.cursor else 0
        seen = await self._checkpoints.load(job.job_id, job.segment)
        action = decide(seen, step, message_id)
        if action is Action.REENQUEUE:
            assert seen is not None  # noqa: S101  (decide() only says so with an item)
            await self._queue.enqueue(job.model_copy(update={"cursor": seen.cursor}))
            return JobResult(action.value)
        if action is not Action.CLAIM:
            return JobResult(action.value)
        start = seen.cursor if seen and seen.step == step and seen.cursor else job.cursor
        claimed = await self._checkpoints.claim(
            job.job_id, job.segment, step=step, owner=message_id, seen=seen, cursor=start
        )
        if not claimed:
            return JobResult(Action.SKIP_CLAIMED.value)

        async def checkpoint(cursor: Cursor, _: FanoutReport) -> None:
            await self._checkpoints.save(
                job.job_id,
                job.segment,
                step=step,
                owner=message_id,
                cursor=cursor.model_copy(update={"step": step}),
            )

        try:
            report = await self._fanout.run(
                job.target,
                job.payload,
                exclude=job.exclude,
                segment=job.segment,
                total_segments=job.total_segments,
                cursor=start,
                deadline=deadline,
                checkpoint=checkpoint,
                checkpoint_every=self._checkpoint_every,
            )
        except _LostClaimError:
            return JobResult("lost-claim")
        following: Cursor | None = None
        if not report.complete:
            assert report.resume is not None  # noqa: S101  (an incomplete run always has one)
            following = report.resume.model_copy(update={"step": step + 1})
        finished = await self._checkpoints.finish_step(
            job.job_id,
            job.segment,
            step=step,
            owner=message_id,
            report=report,
            next_cursor=following,
        )
        if not finished:
            return JobResult("lost-claim", report)
        if following is None:
            return JobResult("completed", report)
        await self._queue.enqueue(job.model_copy(update={"cursor": following}))
        return JobResult("continued", report)
