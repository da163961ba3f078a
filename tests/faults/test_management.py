"""The management API misbehaving every way at once: 5% of connections gone, 30% of posts
answered 429, 1% 500, 2% dropped mid-request (the TCP connection closed, no answer).

A sharded "all" job runs through the local event source mapping (:mod:`wsfanout.local.poller`)
into the real broadcast handler. None of these faults can deliver a frame twice (the endpoint
records a delivery only when it answers 200), so the bound is 0. A send is retried at most
``FANOUT_MAX_ATTEMPTS`` times: 12 here, so that a connection meets a fault on every attempt
with odds of about 0.33^12 (none in 3,000); the default 5 would leave a few failed.
"""

from __future__ import annotations

import time
from functools import partial

import anyio
import pytest

from tests.faults.conftest import Figures, settle_job, start_job
from tests.handlers.conftest import Stack
from wsfanout.bench.seeding import connection_ids
from wsfanout.handlers import broadcast
from wsfanout.local.management import Faults
from wsfanout.local.poller import SqsPoller

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

N = 3000
SEGMENTS = 4


async def test_gone_throttled_failing_and_dropping_at_once(
    stack: Stack, sqs, monkeypatch, figures: list[Figures]
) -> None:
    ids = connection_ids(N, "m")
    knobs = {"REGISTRY_PAGE_SIZE": "250", "FANOUT_MAX_ATTEMPTS": "12"}
    await anyio.to_thread.run_sync(
        partial(start_job, stack, monkeypatch, ids, job_id="j-faults", total=SEGMENTS, knobs=knobs)
    )
    stack.fake.faults = Faults(
        gone_rate=0.05, throttle_rate=0.30, error_rate=0.01, drop_rate=0.02, seed=15
    )
    started = time.monotonic()
    poller = SqsPoller(sqs, stack.queue_url, broadcast.handler, concurrency=2, wait_s=0)
    await poller.drain()
    seconds = time.monotonic() - started
    assert poller.stats.failed_records == 0
    stats = stack.fake.stats()
    assert min(stats["throttled"], stats["errors"], stats["dropped"]) > 0, stats
    await settle_job(
        figures,
        "management API: 5% gone, 30% 429, 1% 5xx, 2% dropped",
        stack,
        ids,
        job_id="j-faults",
        total=SEGMENTS,
        bound=0,
        seconds=seconds,
    )
