"""Test plumbing shared across the suite: what is still registered, what is on a queue, the
installed console script, and an authorizer's answer.

One bounded helper each, so no test module grows its own polling loop or subprocess call.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from wsfanout.core.interfaces import RecipientSource
from wsfanout.core.models import AllTarget

__all__ = ["WSFANOUT", "policy", "receive_all", "registered_ids", "run_wsfanout"]

# The console script the package installs beside this interpreter: tests run what users run.
WSFANOUT = str(Path(sys.executable).parent / "wsfanout")


def run_wsfanout(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``wsfanout *args`` to the end (text output captured, any exit code).

    :raises subprocess.TimeoutExpired: when it runs longer than ``timeout`` seconds.
    """
    return subprocess.run(  # noqa: S603  (our own console script, arguments from the test)
        [WSFANOUT, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def policy(
    effect: str, resource: str, context: dict[str, Any] | None = None, *, principal: str = "u_1"
) -> dict[str, Any]:
    """A REQUEST authorizer's answer: ``effect`` on ``resource``, with ``context`` if given."""
    statement = {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}
    document = {"Version": "2012-10-17", "Statement": [statement]}
    answer = {"principalId": principal, "policyDocument": document}
    return answer if context is None else {**answer, "context": context}


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
