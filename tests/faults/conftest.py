"""The fault suite's plumbing: the handlers' stack, the figures every scenario records, and the
table of them printed at the end of the run (``pytest -m faults -s``, or ``make faults``).

Every scenario ends in :func:`settle`, which asserts the outcomes the design promises and returns
the figures: no live connection missed, duplicates within the scenario's bound, every gone
connection removed from the registry, and a report whose counts match the endpoint's records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.handlers import conftest as handlers
from tests.handlers.conftest import Stack, sqs_event
from wsfanout.aws import table
from wsfanout.core.models import FanoutReport
from wsfanout.handlers.runtime import reset_runtime
from wsfanout.local.management import ManagementEndpoint

__all__ = ["Figures", "settle", "settle_job", "start_worker", "wait_until", "worker_knobs"]

ROOT = Path(__file__).resolve().parents[2]
_FIGURES = pytest.StashKey[list["Figures"]]()

stack = handlers.stack  # the handlers' fixture: a fresh table, queue and endpoint per scenario


@dataclass(frozen=True, slots=True)
class Figures:
    """One scenario's outcome: the README's reliability table has one row of these per run."""

    scenario: str
    connections: int
    missed: int
    duplicated: int
    bound: int
    gone_removed: str  # "removed/gone"
    seconds: float

    def line(self) -> str:
        """The one figures line a scenario prints."""
        return "figures: " + ", ".join(f"{k}={v}" for k, v in asdict(self).items())


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> list[Figures]:
    """Where the scenarios of this run leave their figures (printed by the terminal summary)."""
    return request.config.stash.setdefault(_FIGURES, [])


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The figures of every scenario that ran, as the Markdown table of docs/reliability.md."""
    rows = config.stash.get(_FIGURES, [])
    if not rows:
        return
    terminalreporter.section("fault suite figures")
    terminalreporter.write_line(
        "| scenario | connections | missed | duplicated | bound | gone removed | seconds |"
    )
    terminalreporter.write_line("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        terminalreporter.write_line(
            f"| {row.scenario} | {row.connections:,} | {row.missed} | {row.duplicated} "
            f"| {row.bound} | {row.gone_removed} | {row.seconds:.1f} |"
        )


def settle(
    figures: list[Figures],
    scenario: str,
    *,
    fake: ManagementEndpoint,
    ids: list[str],
    remaining: set[str],
    report: FanoutReport,
    bound: int,
    seconds: float,
    crashed: bool = False,
) -> Figures:
    """Assert what every scenario promises, record its figures and print them.

    ``remaining`` is what the registry still holds; ``report`` adds up what the run reported
    (the CLI's reports, or the job's progress items). After a ``crashed`` worker the report may
    count fewer gone connections than there were, by at most ``bound``: those the crashed
    worker deleted after its last checkpoint are no longer in the registry for its successor to
    meet (they are removed, which is what matters; their count died with the worker).
    """
    gone = {cid for cid in ids if fake.faults.is_gone(cid)}
    live = set(ids) - gone
    counts = fake.counts()
    missed = live - set(counts)
    duplicated = sum(n - 1 for n in counts.values())
    row = Figures(
        scenario,
        len(ids),
        len(missed),
        duplicated,
        bound,
        f"{len(gone - remaining)}/{len(gone)}",
        round(seconds, 1),
    )
    print(row.line())
    assert not missed, f"{len(missed)} live connections never got the broadcast"
    assert set(counts) <= live, "only live connections are delivered to"
    assert duplicated <= bound, f"{duplicated} duplicates, over the bound of {bound}"
    assert remaining == live, "every gone connection removed, every live one kept"
    assert (report.delivered, report.failed) == (len(live), 0)
    if crashed:
        assert len(gone) - bound <= report.gone <= len(gone)
    else:
        assert report.gone == len(gone)
    assert report.cleanup_failed == 0
    assert fake.stats()["delivered"] == len(live) + duplicated, "the endpoint's own count"
    figures.append(row)
    return row


async def settle_job(
    figures: list[Figures],
    scenario: str,
    stack: Stack,
    ids: list[str],
    *,
    job_id: str,
    total: int,
    bound: int,
    seconds: float,
    crashed: bool = False,
) -> Figures:
    """:func:`settle` for a job the stack ran: what its registry still holds and what the job's
    ``total`` progress items report, read off the event loop (boto3 blocks)."""
    remaining = await anyio.to_thread.run_sync(registered, stack)
    report = await anyio.to_thread.run_sync(progress_report, stack, job_id, total)
    return settle(
        figures,
        scenario,
        fake=stack.fake,
        ids=ids,
        remaining=remaining,
        report=report,
        bound=bound,
        seconds=seconds,
        crashed=crashed,
    )


def worker_knobs(page: int, senders: int) -> dict[str, str]:
    """The worker's environment for a scenario that counts its duplicates: a checkpoint every
    ``page`` connections, ``senders`` sends in flight (the two make the duplicate bound), and a
    short deadline margin so that short invocations still do work."""
    return {
        "REGISTRY_PAGE_SIZE": str(page),
        "FANOUT_CONCURRENCY": str(senders),
        "WORKER_DEADLINE_MARGIN_S": "0.5",
    }


def wait_until(condition: Callable[[], bool], what: str, *, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds (a bounded poll, not a sleep as synchronisation).

    :raises AssertionError: it did not hold within ``timeout`` seconds.
    """
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def start_worker(message: dict[str, Any], seconds: float) -> subprocess.Popen[str]:
    """The broadcast handler in a process of its own (``python -m tests.faults.worker``), run
    on one received SQS message with ``seconds`` of Lambda time: a worker that can be SIGKILLed.
    It inherits the test's environment (table, queue, endpoint, knobs)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(  # noqa: S603  (our interpreter, our module, the test's message)
        [
            sys.executable,
            "-m",
            "tests.faults.worker",
            json.dumps(sqs_event([message])),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=env,
    )


def registered(stack: Stack) -> set[str]:
    """The connection ids the stack's registry table still holds."""
    pages = stack.dynamodb.get_paginator("scan").paginate(TableName=stack.table)
    return {
        item["PK"]["S"][5:] for page in pages for item in page["Items"] if item["SK"]["S"] == "CONN"
    }


def segments(stack: Stack, job_id: str, total: int) -> list[dict[str, Any]]:
    """The progress items of the job's ``total`` segments that exist (consistent reads)."""
    items = []
    for segment in range(total):
        key = {"PK": {"S": table.job_pk(job_id)}, "SK": {"S": table.segment_sk(segment)}}
        answer = stack.dynamodb.get_item(TableName=stack.table, Key=key, ConsistentRead=True)
        if "Item" in answer:
            items.append(answer["Item"])
    return items


def complete(stack: Stack, job_id: str, total: int) -> bool:
    """Whether every segment of the job is complete."""
    items = segments(stack, job_id, total)
    return len(items) == total and all(i["status"]["S"] == "complete" for i in items)


def progress_report(stack: Stack, job_id: str, total: int) -> FanoutReport:
    """What the job's progress items report, added up over its ``total`` segments, each of
    which must be complete."""
    assert complete(stack, job_id, total), "every segment is complete"
    items = segments(stack, job_id, total)
    return FanoutReport(
        delivered=sum(int(item["delivered"]["N"]) for item in items),
        gone=sum(int(item["gone"]["N"]) for item in items),
        failed=sum(int(item["failed"]["N"]) for item in items),
    )


def start_job(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    ids: list[str],
    *,
    job_id: str,
    total: int,
    knobs: dict[str, str],
) -> None:
    """Seed ``ids``, set the worker's knobs (``total`` segments and ``knobs``, environment
    variables) and enqueue one "all" job."""
    monkeypatch.setenv("BROADCAST_SEGMENTS", str(total))
    for name, value in knobs.items():
        monkeypatch.setenv(name, value)
    reset_runtime()
    stack.seed(ids)
    stack.enqueue(json.dumps({"jobId": job_id, "target": {"all": True}, "data": "news"}))
