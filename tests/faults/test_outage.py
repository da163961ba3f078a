"""moto (DynamoDB and SQS) out for a while in the middle of a sharded job.

moto server keeps its state in memory only: killed and restarted, it comes back empty (no
registry, no queue, no progress), which is no outage AWS has, so it is not the fault played
here. The outage is the process frozen (``SIGSTOP``), then let go (``SIGCONT``) after
:data:`OUTAGE_S`: every DynamoDB and SQS call made meanwhile hangs, unanswered, and nothing is
lost. The workers' invocations are short (:data:`LAMBDA_S`), so the outage outlasts them: the
event source mapping counts an invocation that ran past its timeout as failed, and SQS hands its
message out again after the visibility timeout. The job still reaches everyone: a redelivered
copy finds its step done (acknowledged), advanced (its continuation enqueued again, if it was
the one that advanced it) or leased, and takes over a lapsed lease from the last checkpoint. A
takeover may resend what finished after the checkpoint: per segment, at most one checkpoint page
plus the sends in flight.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from functools import partial

import anyio
import pytest

from tests.faults.conftest import (
    Figures,
    complete,
    settle_job,
    start_job,
    wait_until,
    worker_knobs,
)
from tests.handlers.conftest import Stack
from wsfanout.bench.seeding import connection_ids
from wsfanout.handlers import broadcast
from wsfanout.local.management import Faults
from wsfanout.local.poller import SqsPoller
from wsfanout.local.processes import moto_process

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]

N = 3000
SEGMENTS = 2
PAGE = 200
SENDERS = 16
LAMBDA_S = 4.0
VISIBILITY_S = 8
OUTAGE_S = 3.0


@pytest.fixture
def moto() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A moto server of this test's own, to freeze without touching the session's."""
    with moto_process() as server:
        yield server


@pytest.fixture
def moto_url(moto: tuple[str, subprocess.Popen[bytes]]) -> str:
    """Every fixture of the test (the stack, the SQS client) talks to this test's moto."""
    return moto[0]


async def test_moto_frozen_mid_job(
    stack: Stack, sqs, moto, monkeypatch, figures: list[Figures]
) -> None:
    _, process = moto
    ids = connection_ids(N, "o")
    knobs = worker_knobs(PAGE, SENDERS)
    await anyio.to_thread.run_sync(
        partial(start_job, stack, monkeypatch, ids, job_id="j-outage", total=SEGMENTS, knobs=knobs)
    )
    stack.fake.faults = Faults(latency_s=0.003, gone_rate=0.05, seed=1)
    poller = SqsPoller(
        sqs,
        stack.queue_url,
        broadcast.handler,
        visibility_timeout_s=VISIBILITY_S,
        function_timeout_s=LAMBDA_S,
        concurrency=SEGMENTS,
        wait_s=1,
    )
    started = time.monotonic()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(poller.run)
        midway = partial(
            wait_until, lambda: stack.fake.stats()["posts"] >= N // 3, "a third of the posts"
        )
        await anyio.to_thread.run_sync(midway)
        process.send_signal(signal.SIGSTOP)
        try:
            frozen_at = stack.fake.stats()["posts"]
            await anyio.sleep(OUTAGE_S)  # the outage's length: a fault, not a synchronisation
        finally:
            process.send_signal(signal.SIGCONT)
        done = partial(
            wait_until, lambda: complete(stack, "j-outage", SEGMENTS), "the job", timeout=90
        )
        await anyio.to_thread.run_sync(done)
        tasks.cancel_scope.cancel()
    assert frozen_at < N, "frozen mid-job"
    print(f"outage: frozen at {frozen_at} posts; poller {poller.stats}")
    await settle_job(
        figures,
        f"moto frozen {OUTAGE_S:.0f}s mid-job (SIGSTOP/SIGCONT)",
        stack,
        ids,
        job_id="j-outage",
        total=SEGMENTS,
        bound=SEGMENTS * (PAGE + SENDERS),
        seconds=time.monotonic() - started,
        crashed=True,  # an invocation past its timeout is given up on, as Lambda's would be
    )
