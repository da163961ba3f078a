"""Test plumbing shared across the suite: what is still registered, and what is on a queue.

One bounded helper each, so no test module grows its own polling loop.
"""

from __future__ import annotations

from typing import Any

from wsfanout.core.interfaces import RecipientSource
from wsfanout.core.models import AllTarget

__all__ = ["receive_all", "registered_ids"]


async def registered_ids(source: RecipientSource) -> set[str]:
    """The connection ids still registered in ``source`` (the registry, or a ``MemorySource``)."""
    pages = source.pages(AllTarget(all=True), segment=None, total_segments=None, cursor=None)
    return {r.connection_id async for page in pages for r in page}


async def receive_all(sqs: Any, queue_url: str, *, rounds: int = 20) -> list[str]:
    """Every body on the queue, deleting what it reads: receive until an empty answer.

    :raises AssertionError: when the queue is not dry after ``rounds`` receives.
    """
    bodies: list[str] = []
    for _ in range(rounds):
        answer = await sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        messages = answer.get("Messages", [])
        if not messages:
            return bodies
        bodies.extend(m["Body"] for m in messages)
        await sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
    raise AssertionError(f"the queue never ran dry in {rounds} receives")
