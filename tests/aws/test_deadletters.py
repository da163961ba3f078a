"""The dead-letter queue adapter on moto's SQS: a listing hides nothing, and a redrive cut short
(cancelled, as Ctrl-C does) leaves every message on exactly one queue."""

from __future__ import annotations

import anyio
import pytest

from tests.cli.test_dlq import make_queues, visible
from tests.helpers import receive_all
from wsfanout.aws.deadletters import DeadLetter, DeadLetterQueue, dead_letter_url
from wsfanout.exceptions import ConfigurationError


async def test_a_cancelled_redrive_moves_each_message_once_or_not_at_all(sqs) -> None:
    queue, dlq_url = await make_queues(sqs, "dl-cancel")
    bodies = [f"body-{index}" for index in range(25)]
    for body in bodies:
        await sqs.send_message(QueueUrl=dlq_url, MessageBody=body)
    dlq = DeadLetterQueue(sqs, dlq_url)
    moved: list[DeadLetter] = []
    with anyio.CancelScope() as scope:

        def on_moved(message: DeadLetter) -> None:
            moved.append(message)
            if len(moved) == 12:  # Ctrl-C in the middle of a batch
                scope.cancel()

        await dlq.redrive(queue, moved=on_moved)
    assert scope.cancelled_caught
    assert len(moved) == 12, "it stops between two moves, not at the end of a batch"
    assert await visible(sqs, dlq_url) == 25 - len(moved), "the rest given back at once"
    on_queue = await receive_all(sqs, queue)
    left = await receive_all(sqs, dlq_url)
    assert sorted(on_queue) == sorted(m.body for m in moved)
    assert sorted(on_queue + left) == sorted(bodies), "none lost, none on both queues"


async def test_peek_gives_every_message_back(sqs) -> None:
    queue, dlq_url = await make_queues(sqs, "dl-peek")
    for index in range(13):
        await sqs.send_message(QueueUrl=dlq_url, MessageBody=str(index))
    dlq = DeadLetterQueue(sqs, dlq_url)
    assert await dead_letter_url(sqs, queue) == dlq_url
    seen = await dlq.peek(100)
    assert sorted(int(m.body) for m in seen) == list(range(13)), "each once"
    assert await dlq.approximate_count() == 13
    assert len(await dlq.peek(5)) == 5
    assert await visible(sqs, dlq_url) == 13


async def test_a_queue_without_a_redrive_policy_is_a_configuration_error(sqs) -> None:
    plain = (await sqs.create_queue(QueueName="dl-plain"))["QueueUrl"]
    with pytest.raises(ConfigurationError, match="BROADCAST_DLQ_URL"):
        await dead_letter_url(sqs, plain)
