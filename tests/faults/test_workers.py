"""Workers in processes of their own (``tests/faults/worker.py``), against moto server and the
local endpoint: one SIGKILLed mid-step and its message redelivered, and two running one message
at once.

A killed worker's message turns visible again after its visibility timeout, and the local
event source mapping (:mod:`wsfanout.local.poller`) hands it to the handler, which finds the
lease lapsed and takes the step over from the last checkpoint. The visibility timeout is longer
than the killed worker's lease (its Lambda time plus :data:`~wsfanout.core.jobs.CLOCK_SKEW_S`),
as on AWS, where it must exceed the function timeout. What it may send twice is what finished
after the last checkpoint: at most one checkpoint page (``REGISTRY_PAGE_SIZE``) plus the sends
in flight (``FANOUT_CONCURRENCY``).
"""

from __future__ import annotations

import json
import subprocess
import time
from functools import partial
from typing import Any

import anyio
import pytest

from tests.faults.conftest import (
    Figures,
    complete,
    settle_job,
    start_job,
    start_worker,
    wait_until,
    worker_knobs,
)
from tests.handlers.conftest import Stack
from wsfanout.bench.seeding import connection_ids
from wsfanout.handlers import broadcast
from wsfanout.local.management import Faults
from wsfanout.local.poller import SqsPoller

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

N = 3000
PAGE = 200  # REGISTRY_PAGE_SIZE: a checkpoint every page
SENDERS = 16  # FANOUT_CONCURRENCY: the sends in flight
LAMBDA_S = 4.0  # each invocation's Lambda time: the killed worker's lease, less the skew
VISIBILITY_S = 8  # longer than the lease, as the template's is longer than the function timeout
KNOBS = worker_knobs(PAGE, SENDERS)


def receive_one(stack: Stack) -> dict[str, Any]:
    """The job's one message, received as the event source mapping would."""
    answer = stack.sqs.receive_message(
        QueueUrl=stack.queue_url,
        MaxNumberOfMessages=1,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
        VisibilityTimeout=VISIBILITY_S,
        WaitTimeSeconds=1,
    )
    [message] = answer["Messages"]
    return dict(message)


def answer_of(worker: subprocess.Popen[str]) -> dict[str, Any]:
    """The handler's response, the last line a finished worker printed (logs come before)."""
    out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, out
    answer = json.loads(out.splitlines()[-1])
    assert isinstance(answer, dict)
    return answer


async def until_complete(stack: Stack, sqs: Any, job_id: str) -> None:
    """Run the event source mapping until every segment of the job is complete (bounded)."""
    poller = SqsPoller(
        sqs,
        stack.queue_url,
        broadcast.handler,
        visibility_timeout_s=VISIBILITY_S,
        function_timeout_s=LAMBDA_S,
        concurrency=1,
        wait_s=1,
    )
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(poller.run)
        done = partial(wait_until, lambda: complete(stack, job_id, 1), f"{job_id} to complete")
        await anyio.to_thread.run_sync(done)
        tasks.cancel_scope.cancel()


async def test_a_worker_killed_mid_step_is_taken_over(
    stack: Stack, sqs, monkeypatch, figures: list[Figures]
) -> None:
    ids = connection_ids(N, "k")
    await anyio.to_thread.run_sync(
        partial(start_job, stack, monkeypatch, ids, job_id="j-kill", total=1, knobs=KNOBS)
    )
    stack.fake.faults = Faults(latency_s=0.003, gone_rate=0.05, seed=2)
    message = await anyio.to_thread.run_sync(receive_one, stack)
    started = time.monotonic()
    worker = start_worker(message, LAMBDA_S)
    try:
        midway = partial(
            wait_until, lambda: stack.fake.stats()["posts"] >= N // 3, "a third of the posts"
        )
        await anyio.to_thread.run_sync(midway)
        assert worker.poll() is None, "the worker finished before it could be killed"
    finally:
        worker.kill()
        worker.communicate(timeout=30)
    sent = stack.fake.stats()["posts"]
    assert sent < N, "killed mid-step"
    await until_complete(stack, sqs, "j-kill")
    await settle_job(
        figures,
        "worker SIGKILLed mid-step, message redelivered",
        stack,
        ids,
        job_id="j-kill",
        total=1,
        bound=PAGE + SENDERS,
        seconds=time.monotonic() - started,
        crashed=True,
    )


async def test_one_message_run_twice_at_once_sends_once(
    stack: Stack, monkeypatch, figures: list[Figures]
) -> None:
    """Two workers, one message id, overlapping: the second finds the step leased and sends
    nothing; its record fails, so SQS would keep the message should the first die."""
    ids = connection_ids(N, "t")
    knobs = {**KNOBS, "FANOUT_CONCURRENCY": "8"}
    await anyio.to_thread.run_sync(
        partial(start_job, stack, monkeypatch, ids, job_id="j-twice", total=1, knobs=knobs)
    )
    # slow enough that the first still runs when the second (a new process) has started
    stack.fake.faults = Faults(latency_s=0.02, gone_rate=0.05, seed=3)
    message = await anyio.to_thread.run_sync(receive_one, stack)
    started = time.monotonic()
    first = start_worker(message, 60)
    copy = None
    try:
        begun = partial(wait_until, lambda: stack.fake.stats()["posts"] >= 300, "300 posts")
        await anyio.to_thread.run_sync(begun)
        copy = start_worker(message, 60)
        copy_answer = await anyio.to_thread.run_sync(answer_of, copy)
        assert first.poll() is None, "the two overlapped: the first still ran"
        first_answer = await anyio.to_thread.run_sync(answer_of, first)
    finally:
        for worker in (first, copy):
            if worker is not None and worker.poll() is None:
                worker.kill()
                worker.communicate(timeout=30)
    assert copy_answer == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    assert first_answer == {"batchItemFailures": []}
    await settle_job(
        figures,
        "one message run twice at once (same messageId)",
        stack,
        ids,
        job_id="j-twice",
        total=1,
        bound=0,
        seconds=time.monotonic() - started,
    )
