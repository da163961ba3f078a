"""``wsfanout jobs list|status``: broadcast jobs as their progress items record them.

Each segment of a job has one item (``JOB#{jobId}`` / ``SEG#{segment}``, see docs/contracts.md)
with its step, its counts and, while a step runs, the lease (owner message, token, until when).
The counts are those of finished steps: a running step adds its own when it ends. A segment
shows up once its first step claimed it; the items do not record how many segments the job was
split into, so "complete" means every segment seen so far is.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

import anyio

from ..aws.clients import Clients
from .arguments import identifier
from .output import (
    EXIT_FAILED,
    EXIT_OK,
    add_json_option,
    add_table_option,
    command_group,
    emit,
    epoch_text,
    progress_on_stderr,
    rows_table,
    settings_of,
)

if TYPE_CHECKING:
    from ..core.jobs import Checkpoint

__all__ = ["add_jobs_command"]

_job_id = identifier("job")


def add_jobs_command(commands: Any) -> None:
    """Add ``jobs list`` and ``jobs status JOB_ID`` to the ``wsfanout`` subcommands."""
    sub = command_group(
        commands,
        "jobs",
        "broadcast jobs' progress, from their progress items",
        "Read the progress items broadcast jobs keep in the registry table.",
    )
    listing = sub.add_parser(
        "list",
        help="every job in the table, one line each",
        description="Every job with progress items (a full Scan of the table, progress on "
        "stderr): segments seen, how many are complete, counts of finished steps.",
    )
    add_table_option(listing)
    add_json_option(listing)
    listing.set_defaults(run=_cmd_list)

    status = sub.add_parser(
        "status",
        help="one job: each segment's step, counts, lease, done or not",
        description="Each segment of the job: its step, delivered / gone / failed of finished "
        "steps, complete or not, and while a step runs the lease holder (the SQS message) and "
        "its expiry. Exit 1 when the table holds no item of the job.",
    )
    status.add_argument("job_id", metavar="JOB_ID", type=_job_id)
    add_table_option(status)
    add_json_option(status)
    status.set_defaults(run=_cmd_status)


def _segment_json(segment: int | None, checkpoint: Checkpoint, now: float) -> dict[str, Any]:
    leased = checkpoint.owner is not None and not checkpoint.complete
    return {
        "segment": segment,
        "step": checkpoint.step,
        "complete": checkpoint.complete,
        "delivered": checkpoint.delivered,
        "gone": checkpoint.gone,
        "failed": checkpoint.failed,
        "leaseHolder": checkpoint.owner if leased else None,
        "leaseUntil": checkpoint.lease_until if leased else None,
        "leaseLive": leased and (checkpoint.lease_until or 0) > now,
        "advancedBy": checkpoint.advanced_by,
    }


def _summary(job_id: str, segments: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "jobId": job_id,
        "segments": len(segments),
        "completeSegments": sum(s["complete"] for s in segments),
        "complete": all(s["complete"] for s in segments),
        "running": sum(s["leaseLive"] for s in segments),
        **{key: sum(s[key] for s in segments) for key in ("delivered", "gone", "failed")},
    }


def _cmd_list(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    settings.require_table()

    async def go() -> dict[str, list[dict[str, Any]]]:
        now = time.time()
        jobs: dict[str, list[dict[str, Any]]] = {}
        async with Clients(settings) as clients:
            progress = await clients.progress()
            with progress_on_stderr("progress items read") as advance:
                async for job_id, segment, checkpoint in progress.scan():
                    jobs.setdefault(job_id, []).append(_segment_json(segment, checkpoint, now))
                    advance(1)
        return jobs

    jobs = [_summary(job_id, segments) for job_id, segments in sorted(anyio.run(go).items())]
    rows = [
        [
            job["jobId"],
            f"{job['completeSegments']}/{job['segments']}",
            "complete" if job["complete"] else ("running" if job["running"] else "waiting"),
            *(str(job[key]) for key in ("delivered", "gone", "failed")),
        ]
        for job in jobs
    ]
    columns = ["job id", "segments complete", "state", "delivered", "gone", "failed"]
    emit(args, {"jobs": jobs}, rows_table("broadcast jobs", columns, rows))
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    settings.require_table()

    async def go() -> list[dict[str, Any]]:
        now = time.time()
        async with Clients(settings) as clients:
            progress = await clients.progress()
            found = await progress.segments(args.job_id)
        return [_segment_json(segment, checkpoint, now) for segment, checkpoint in found]

    segments = anyio.run(go)
    if not segments:
        if args.json:
            emit(args, {"jobId": args.job_id, "found": False, "segments": []})
        sys.stderr.write(
            f"wsfanout: no progress items of job {args.job_id} (not started, or expired)\n"
        )
        return EXIT_FAILED
    summary = _summary(args.job_id, segments)
    rows = [
        [
            "-" if s["segment"] is None else str(s["segment"]),
            str(s["step"]),
            "complete" if s["complete"] else "in progress",
            *(str(s[key]) for key in ("delivered", "gone", "failed")),
            s["leaseHolder"] or "-",
            _lease_text(s),
        ]
        for s in segments
    ]
    columns = ["segment", "step", "state", "delivered", "gone", "failed", "lease holder", "until"]
    state = "complete" if summary["complete"] else "not complete"
    title = (
        f"job {args.job_id}: {state}, {summary['delivered']} delivered, {summary['gone']} gone, "
        f"{summary['failed']} failed (finished steps)"
    )
    emit(args, {**summary, "found": True, "segments": segments}, rows_table(title, columns, rows))
    return EXIT_OK


def _lease_text(segment: dict[str, Any]) -> str:
    until = epoch_text(segment["leaseUntil"])
    return until if segment["leaseLive"] or not segment["leaseHolder"] else f"{until} (lapsed)"
