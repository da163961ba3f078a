"""DynamoDB throttling mid-scan: after the first call of each kind, every Scan page and every
BatchWriteItem of the gone connections' clean-up is refused three times in a row with one of
DynamoDB's throttling codes (on top of botocore's own retries: what the registry meets once
those are spent), the way ``tests/aws/test_registry.py`` injects it.

The registry sends a throttled call again with backoff (:mod:`wsfanout.aws.registry`), so the
job reads every page and removes every gone connection; nothing is sent twice (bound 0).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.aws.throttling import Throttled
from tests.faults.conftest import Figures, progress_report, registered, settle, start_job
from tests.handlers.conftest import Stack
from wsfanout.aws.clients import Clients
from wsfanout.bench.seeding import connection_ids
from wsfanout.local.management import Faults

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

N = 3000
SEGMENTS = 2


def throttle_dynamodb(monkeypatch: pytest.MonkeyPatch) -> list[Throttled]:
    """Every DynamoDB client the workers' composition root hands out is throttled from its
    second call of each kind on; returns the wrappers, to count what they refused."""
    original = Clients.dynamodb
    wrappers: list[Throttled] = []

    async def dynamodb(self: Clients) -> Any:
        wrappers.append(Throttled(await original(self), burst=3, spare=1))
        return wrappers[-1]

    monkeypatch.setattr(Clients, "dynamodb", dynamodb)
    return wrappers


def test_throttled_scan_pages_and_clean_up(
    stack: Stack, monkeypatch, figures: list[Figures]
) -> None:
    ids = connection_ids(N, "y")
    knobs = {"REGISTRY_PAGE_SIZE": "200"}
    start_job(stack, monkeypatch, ids, job_id="j-throttled", total=SEGMENTS, knobs=knobs)
    stack.fake.faults = Faults(gone_rate=0.05, seed=5)
    wrappers = throttle_dynamodb(monkeypatch)
    started = time.monotonic()
    stack.drain()
    seconds = time.monotonic() - started
    refused = sum((w.refused for w in wrappers), start=type(wrappers[0].refused)())
    assert refused["Scan"] >= 3 * 2 * SEGMENTS, f"pages after the first were throttled: {refused}"
    assert refused["BatchWriteItem"] > 0, f"the clean-up was throttled: {refused}"
    settle(
        figures,
        "DynamoDB throttling mid-scan (3 refusals per call)",
        fake=stack.fake,
        ids=ids,
        remaining=registered(stack),
        report=progress_report(stack, "j-throttled", SEGMENTS),
        bound=0,
        seconds=seconds,
    )
