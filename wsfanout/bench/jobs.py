"""``wsfanout bench jobs``: a large "all" job carried by short-lived workers.

Measures what docs/contracts.md promises for broadcasts larger than one worker can finish: the
job is split into parallel-scan segments, each worker invocation gets only a few seconds, and the
job hops from invocation to invocation through checkpointed continuations on SQS. Workers run as
concurrent tasks here, each pulling one message at a time as Lambda's event source mapping
would hand them out; moto server (DynamoDB, SQS) and the management endpoint run in their own
processes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aioboto3
import aiohttp
import anyio
from rich.console import Console
from rich.table import Table

from ..aws.account import KEY_ID, REGION, SECRET
from ..aws.lean import LeanGateway
from ..aws.progress import Checkpoints
from ..aws.queue import JobQueue
from ..aws.registry import Registry
from ..aws.table import table_definition
from ..core.fanout import Fanout
from ..core.jobs import JobRunner
from ..core.models import AllTarget, BroadcastJob
from ..local.management import Faults
from ..local.processes import endpoint_process, moto_server
from ..local.signatures import signed_headers
from .seeding import classic_item, connection_ids, seed_items

__all__ = ["JobsOptions", "run_jobs"]


@dataclass(frozen=True, slots=True)
class JobsOptions:
    """What ``wsfanout bench jobs`` measures."""

    connections: int = 50_000
    segments: int = 4
    workers: int = 4
    worker_seconds: float = 3.0
    margin_seconds: float = 0.5
    concurrency: int = 64
    gone_rate: float = 0.05
    latency_s: float = 0.0
    seed: int = 1
    json_path: str | None = None


@dataclass(slots=True)
class _Tally:
    actions: Counter[str] = field(default_factory=Counter)
    invocations: int = 0
    delivered_reported: int = 0


async def _worker(
    sqs: Any, queue_url: str, runner: JobRunner, options: JobsOptions, tally: _Tally
) -> None:
    idle_polls = 0
    while idle_polls < 3:
        answer = await sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1, VisibilityTimeout=60
        )
        messages = answer.get("Messages", [])
        if not messages:
            idle_polls += 1
            continue
        idle_polls = 0
        message = messages[0]
        job = BroadcastJob.model_validate_json(message["Body"])
        deadline = time.monotonic() + options.worker_seconds - options.margin_seconds
        result = await runner.run(job, message_id=message["MessageId"], deadline=deadline)
        tally.invocations += 1
        tally.actions[result.action.value] += 1
        if result.report:
            tally.delivered_reported += result.report.delivered
        await sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


async def _measure(
    options: JobsOptions, moto_url: str, base_url: str, console: Console
) -> dict[str, Any]:
    session = aioboto3.Session(
        region_name=REGION, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET
    )
    ids = connection_ids(options.connections, "j")
    faults = Faults(gone_rate=options.gone_rate, seed=options.seed)
    gone = {cid for cid in ids if faults.is_gone(cid)}
    table = f"bench-jobs-{time.time_ns()}"
    async with (
        session.client("dynamodb", endpoint_url=moto_url) as dynamodb,
        session.client("sqs", endpoint_url=moto_url) as sqs,
        aiohttp.ClientSession() as http,
    ):
        with console.status(f"seeding {len(ids):,} registry items in moto server"):
            await dynamodb.create_table(**table_definition(table))
            await seed_items(dynamodb, table, (classic_item(cid) for cid in ids), concurrency=8)
        queue_url = (await sqs.create_queue(QueueName=table))["QueueUrl"]
        queue = JobQueue(sqs, queue_url)
        async with LeanGateway(
            session, default_endpoint=f"{base_url}/bench", pool_size=options.concurrency
        ) as gateway:
            registry = Registry(dynamodb, table)
            runner = JobRunner(
                Fanout(registry, gateway, concurrency=options.concurrency),
                queue,
                Checkpoints(dynamodb, table, ttl_seconds=3600),
                segments=options.segments,
                checkpoint_every=registry.page_size,
            )
            tally = _Tally()
            started = time.monotonic()
            await queue.enqueue(BroadcastJob(target=AllTarget(all=True), data="bench"))
            with console.status(
                f"{options.workers} workers, {options.worker_seconds:g} s per invocation"
            ):
                async with anyio.create_task_group() as workers:
                    for _ in range(options.workers):
                        workers.start_soon(_worker, sqs, queue_url, runner, options, tally)
            elapsed = time.monotonic() - started - 3.0  # the last idle polls
        counts_url = f"{base_url}/_wsfanout/counts"
        async with http.get(counts_url, headers=signed_headers("GET", counts_url)) as answer:
            counts: dict[str, int] = await answer.json()
        left = await registry.connection_ids()
        await dynamodb.delete_table(TableName=table)
        await sqs.delete_queue(QueueUrl=queue_url)
    live = set(ids) - gone
    return {
        "options": asdict(options),
        "elapsed_s": round(elapsed, 2),
        "invocations": tally.invocations,
        "actions": dict(tally.actions),
        "continuations": tally.actions.get("continued", 0),
        "delivered": sum(1 for cid in live if counts.get(cid)),
        "missed": sum(1 for cid in live if not counts.get(cid)),
        "duplicated": sum(n - 1 for n in counts.values() if n > 1),
        "gone_removed": len(gone - left),
        "gone_left": len(gone & left),
    }


def run_jobs(options: JobsOptions) -> int:
    """Run the measurement, print one line per figure; exit 1 on a miss or a duplicate."""
    console = Console(width=None if Console().is_terminal else 120)
    args = ["--no-payloads", "--gone-rate", str(options.gone_rate), "--seed", str(options.seed)]
    if options.latency_s:
        args += ["--latency", str(options.latency_s)]
    with moto_server() as moto_url, endpoint_process(args) as base_url:
        result = anyio.run(_measure, options, moto_url, base_url, console)
    table = Table(
        title=f'bench jobs: one "all" job, {options.connections:,} connections, '
        f"{options.segments} segments, {options.workers} workers, "
        f"{options.worker_seconds:g} s per invocation",
        show_header=False,
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name in (
        "invocations",
        "continuations",
        "delivered",
        "missed",
        "duplicated",
        "gone_removed",
        "gone_left",
        "elapsed_s",
    ):
        table.add_row(name.replace("_", " "), f"{result[name]:,}")
    table.add_row("actions", ", ".join(f"{k} {v}" for k, v in sorted(result["actions"].items())))
    console.print(table)
    if options.json_path:
        Path(options.json_path).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["missed"] or result["duplicated"] or result["gone_left"] else 0
