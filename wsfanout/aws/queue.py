"""Broadcast jobs on SQS: the hand-off between route handlers and broadcast workers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from ..core.models import BroadcastJob
from ..exceptions import ConfigurationError, QueueError

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

__all__ = ["JobQueue", "job_body"]

_BATCH_MAX = 10
_ATTEMPTS = 5


def job_body(job: BroadcastJob) -> str:
    """The SQS message body of a job, in the camelCase form of docs/contracts.md."""
    return job.model_dump_json(by_alias=True, exclude_none=True, exclude_defaults=False)


class JobQueue:
    """Enqueues :class:`BroadcastJob` messages (singly, or ten to a SendMessageBatch call)."""

    def __init__(self, client: SQSClient, queue_url: str | None) -> None:
        if not queue_url:
            raise ConfigurationError("no broadcast queue: set BROADCAST_QUEUE_URL")
        self._client = client
        self.queue_url = queue_url

    async def enqueue(self, job: BroadcastJob) -> str:
        """Send one job; returns the SQS message id."""
        try:
            answer = await self._client.send_message(
                QueueUrl=self.queue_url, MessageBody=job_body(job)
            )
        except (ClientError, BotoCoreError) as exc:
            raise QueueError(f"SQS SendMessage to {self.queue_url} failed: {exc}") from exc
        return answer["MessageId"]

    async def enqueue_many(self, jobs: Sequence[BroadcastJob]) -> int:
        """Send jobs ten at a time, retrying the entries SQS reports as failed."""
        for first in range(0, len(jobs), _BATCH_MAX):
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": uuid.uuid4().hex, "MessageBody": job_body(job)}
                for job in jobs[first : first + _BATCH_MAX]
            ]
            for attempt in range(_ATTEMPTS):
                try:
                    answer = await self._client.send_message_batch(
                        QueueUrl=self.queue_url, Entries=entries
                    )
                except (ClientError, BotoCoreError) as exc:
                    raise QueueError(f"SQS SendMessageBatch failed: {exc}") from exc
                failed = {entry["Id"] for entry in answer.get("Failed", [])}
                entries = [entry for entry in entries if entry["Id"] in failed]
                if not entries:
                    break
                if attempt + 1 < _ATTEMPTS:
                    await anyio.sleep(min(0.05 * 2**attempt, 1.0))
            else:
                raise QueueError(f"SQS refused {len(entries)} jobs after {_ATTEMPTS} attempts")
        return len(jobs)
