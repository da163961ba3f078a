"""Broadcast jobs on SQS: the hand-off between route handlers and broadcast workers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..core.models import BroadcastJob
from ..core.pacing import LeftOverError, RetryPolicy
from ..exceptions import ConfigurationError, QueueError
from .errors import map_botocore_errors

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

__all__ = ["JobQueue", "job_body"]

_BATCH_MAX = 10
# SQS reports entries failed one by one when it is briefly unable to store them: a few jittered
# retries of just those, backing off to a second.
_FAILED_ENTRIES = RetryPolicy(max_attempts=5, base_s=0.05, max_s=1.0)


def job_body(job: BroadcastJob) -> str:
    """The SQS message body of a job, in the camelCase form of docs/contracts.md."""
    return job.model_dump_json(by_alias=True, exclude_none=True, exclude_defaults=False)


class JobQueue:
    """Enqueues :class:`BroadcastJob` messages (singly, or ten to a SendMessageBatch call).

    ``failed_entries`` bounds the retries of the entries SQS reports as failed.

    :raises ConfigurationError: no queue URL is given.
    """

    def __init__(
        self,
        client: SQSClient,
        queue_url: str | None,
        *,
        failed_entries: RetryPolicy = _FAILED_ENTRIES,
    ) -> None:
        if not queue_url:
            raise ConfigurationError("no broadcast queue: set BROADCAST_QUEUE_URL")
        self._client = client
        self.queue_url = queue_url
        self._failed_entries = failed_entries

    async def enqueue(self, job: BroadcastJob) -> str:
        """Send one job; returns the SQS message id.

        :raises QueueError: SQS refused the message or could not be reached (a missing queue
            included: its URL is in the message).
        """
        with map_botocore_errors("SQS SendMessage", self.queue_url, QueueError):
            answer = await self._client.send_message(
                QueueUrl=self.queue_url, MessageBody=job_body(job)
            )
        return answer["MessageId"]

    async def enqueue_many(self, jobs: Sequence[BroadcastJob]) -> int:
        """Send jobs ten at a time, retrying the entries SQS reports as failed; returns how many.

        :raises QueueError: SQS refused a call or could not be reached, or still reported
            entries failed after every retry (the jobs before them are sent).
        """

        async def send(
            entries: Sequence[SendMessageBatchRequestEntryTypeDef],
        ) -> list[SendMessageBatchRequestEntryTypeDef]:
            with map_botocore_errors("SQS SendMessageBatch", self.queue_url, QueueError):
                answer = await self._client.send_message_batch(
                    QueueUrl=self.queue_url, Entries=entries
                )
            failed = {entry["Id"] for entry in answer.get("Failed", [])}
            return [entry for entry in entries if entry["Id"] in failed]

        for first in range(0, len(jobs), _BATCH_MAX):
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": uuid.uuid4().hex, "MessageBody": job_body(job)}
                for job in jobs[first : first + _BATCH_MAX]
            ]
            try:
                await self._failed_entries.until_done(
                    send, entries, what=f"SQS SendMessageBatch to {self.queue_url}"
                )
            except LeftOverError as exc:
                raise QueueError(
                    f"SQS refused {len(exc.left)} jobs after {exc.attempts} attempts "
                    f"to {self.queue_url}"
                ) from exc
        return len(jobs)
