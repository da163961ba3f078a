"""The broadcast queue's dead-letter queue: look at what landed there, and move it back.

SQS has no "peek": a message is read by receiving it, which hides it for a visibility timeout.
Listing therefore receives with a short timeout (so that one listing sees each message once,
rather than the same few again and again) and gives every message back at once
(ChangeMessageVisibility to 0) when it is done, or fails, or is cancelled.

Moving back is SendMessage to the source queue, then DeleteMessage from this one, one message at
a time: a message leaves the dead-letter queue only after its copy was accepted. SQS's own
``StartMessageMoveTask`` would do the same server-side, but it moves a whole queue (no chosen
messages) and moto, which the local stack and the tests run on, does not implement it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from ..exceptions import ConfigurationError, QueueError
from .errors import map_botocore_errors

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import (
        ChangeMessageVisibilityBatchRequestEntryTypeDef,
        MessageTypeDef,
    )

__all__ = ["DeadLetter", "DeadLetterQueue", "Redrive", "dead_letter_url"]

_BATCH_MAX = 10  # SQS's most messages per receive and per batch call


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter queue, as received (``receive_count`` is SQS's
    ``ApproximateReceiveCount``, which counts this receive too)."""

    message_id: str
    body: str
    receive_count: int
    sent_at: datetime | None
    receipt: str = field(repr=False)
    attributes: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Redrive:
    """What a redrive did: the ids moved (in order), the first failure (then it stopped), the
    requested ids it never met, and whether it ended early because ``stop`` was set."""

    moved: list[str] = field(default_factory=list)
    failure: str | None = None
    not_found: list[str] = field(default_factory=list)
    stopped: bool = False


async def dead_letter_url(client: SQSClient, queue_url: str) -> str:
    """The dead-letter queue named by ``queue_url``'s RedrivePolicy.

    :raises ConfigurationError: the queue has no RedrivePolicy.
    :raises QueueError: SQS refused or could not be reached.
    """
    with map_botocore_errors("SQS GetQueueAttributes", queue_url, QueueError):
        answer = await client.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["RedrivePolicy"]
        )
    policy = answer.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        raise ConfigurationError(
            f"the queue {queue_url} has no dead-letter queue (RedrivePolicy): set BROADCAST_DLQ_URL"
        )
    arn = str(json.loads(policy)["deadLetterTargetArn"])
    *_, account, name = arn.split(":")
    with map_botocore_errors("SQS GetQueueUrl", arn, QueueError):
        found = await client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
    return found["QueueUrl"]


class DeadLetterQueue:
    """Reads and redrives one dead-letter queue.

    ``hide_s`` is how long a received message stays hidden while this object works on it (it
    is given back sooner, as soon as the work ends); ``wait_s`` the long poll of each receive,
    which asks every SQS server rather than a sample, so an empty answer means empty.
    """

    def __init__(self, client: SQSClient, url: str, *, hide_s: int = 30, wait_s: int = 1) -> None:
        self._client = client
        self.url = url
        self._hide_s = hide_s
        self._wait_s = wait_s

    async def approximate_count(self) -> int:
        """SQS's ``ApproximateNumberOfMessages`` (visible messages) of the queue.

        :raises QueueError: SQS refused or could not be reached.
        """
        with map_botocore_errors("SQS GetQueueAttributes", self.url, QueueError):
            answer = await self._client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
            )
        return int(answer.get("Attributes", {}).get("ApproximateNumberOfMessages", "0"))

    async def peek(self, limit: int) -> list[DeadLetter]:
        """Up to ``limit`` messages, each once, all visible again when this returns or raises.

        :raises QueueError: SQS refused or could not be reached.
        """
        held: list[DeadLetter] = []
        try:
            while len(held) < limit:
                batch = await self._receive(min(_BATCH_MAX, limit - len(held)))
                if not batch:
                    break
                held.extend(batch)
        finally:
            await self._give_back(held)
        return held

    async def redrive(
        self,
        to_url: str,
        *,
        message_ids: Collection[str] | None = None,
        moved: Callable[[DeadLetter], None] | None = None,
        stop: anyio.Event | None = None,
    ) -> Redrive:
        """Move every message (``message_ids=None``) or the listed ones to ``to_url``.

        Each message is sent, then deleted here only once the send succeeded; the pair is
        shielded from cancellation, which lands between two moves, so an interruption (Ctrl-C)
        never leaves a message half moved. The first failure stops the redrive and is reported
        in the result (a message sent but whose delete failed is then on both queues: its job's
        progress items make a second run skip what is complete). Messages received but not
        moved are given back. ``moved`` is called after each move; ``stop``, once set, ends the
        redrive before the next move (``stopped`` in the result).

        :raises QueueError: a receive failed (nothing of that batch moved).
        """
        wanted = set(message_ids) if message_ids is not None else None
        result = Redrive()
        skipped: list[DeadLetter] = []  # received, not asked for: given back at the end
        pending: list[DeadLetter] = []  # received, not yet moved: given back if it stops
        seen: set[str] = set()
        try:
            while wanted is None or wanted - set(result.moved):
                # shielded too: SQS hides what it hands out, so a receive cancelled in flight
                # would leave its messages hidden (not lost) for ``hide_s``
                with anyio.CancelScope(shield=True):
                    batch = await self._receive(_BATCH_MAX)
                pending = [m for m in batch if m.message_id not in seen]
                if not pending:
                    break
                seen.update(m.message_id for m in pending)
                while pending:
                    message = pending[0]
                    if wanted is not None and message.message_id not in wanted:
                        skipped.append(pending.pop(0))
                        continue
                    if stop is not None and stop.is_set():
                        result.stopped = True
                        return result
                    await anyio.lowlevel.checkpoint()  # a cancellation lands between two moves
                    with anyio.CancelScope(shield=True):
                        result.failure = await self._move(message, to_url)
                    if result.failure is not None:
                        return result
                    pending.pop(0)
                    result.moved.append(message.message_id)
                    if moved is not None:
                        moved(message)
        finally:
            with anyio.CancelScope(shield=True):
                await self._give_back([*skipped, *pending])
        if wanted is not None:
            result.not_found = sorted(wanted - set(result.moved))
        return result

    async def _move(self, message: DeadLetter, to_url: str) -> str | None:
        """Send, then delete; the reason when either failed (``None`` when moved)."""
        try:
            with map_botocore_errors("SQS SendMessage", to_url, QueueError):
                request: dict[str, Any] = {"QueueUrl": to_url, "MessageBody": message.body}
                if message.attributes:
                    request["MessageAttributes"] = message.attributes
                await self._client.send_message(**request)
        except QueueError as exc:
            return f"message {message.message_id} not moved (still in the dead-letter queue): {exc}"
        try:
            with map_botocore_errors("SQS DeleteMessage", self.url, QueueError):
                await self._client.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt)
        except QueueError as exc:
            return f"message {message.message_id} sent but not deleted (now on both queues): {exc}"
        return None

    async def _receive(self, count: int) -> list[DeadLetter]:
        with map_botocore_errors("SQS ReceiveMessage", self.url, QueueError):
            answer = await self._client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=count,
                VisibilityTimeout=self._hide_s,
                WaitTimeSeconds=self._wait_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                MessageAttributeNames=["All"],
            )
        return [_dead_letter(message) for message in answer.get("Messages", [])]

    async def _give_back(self, messages: Sequence[DeadLetter]) -> None:
        """Make ``messages`` visible again now (best effort: else their timeout does it)."""
        for first in range(0, len(messages), _BATCH_MAX):
            entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
                {"Id": str(index), "ReceiptHandle": m.receipt, "VisibilityTimeout": 0}
                for index, m in enumerate(messages[first : first + _BATCH_MAX])
            ]
            with map_botocore_errors("SQS ChangeMessageVisibilityBatch", self.url, QueueError):
                await self._client.change_message_visibility_batch(
                    QueueUrl=self.url, Entries=entries
                )


def _dead_letter(message: MessageTypeDef) -> DeadLetter:
    system = message.get("Attributes", {})
    sent = system.get("SentTimestamp")
    attributes = {
        name: {
            key: value[key] for key in ("DataType", "StringValue", "BinaryValue") if key in value
        }
        for name, value in message.get("MessageAttributes", {}).items()
    }
    return DeadLetter(
        message_id=message["MessageId"],
        body=message.get("Body", ""),
        receive_count=int(system.get("ApproximateReceiveCount", "0")),
        sent_at=datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None,
        receipt=message["ReceiptHandle"],
        attributes=attributes,
    )
