"""``wsfanout.handlers.broadcast.handler``: SQS-triggered broadcast jobs.

Each record is one :class:`~wsfanout.core.models.BroadcastJob`. A record that is not a valid job
fails alone (SQS partial batch response, :func:`partial_batch_response`) with a log line that
names what was wrong; the others still run. "All" jobs are split into parallel-scan segments,
each its own message, so many workers share one broadcast; every job watches the invocation's
remaining time and, before Lambda would stop it, checkpoints and enqueues its own continuation
(:mod:`wsfanout.core.jobs`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from ..core.jobs import JobOutcome, JobResult
from ..core.models import BroadcastJob
from ..exceptions import InvalidInputError
from .runtime import Runtime, bind_log_keys, logger, metrics, runtime

__all__ = ["handler", "partial_batch_response"]

Record = Mapping[str, Any]
"""One SQS record as the event source mapping sends it (``messageId``, ``body``, ...)."""


class LeasedElsewhereError(RuntimeError):
    """Raised for a copy of a message whose step another invocation holds the lease of; the
    record fails, so SQS keeps the message until that invocation finished or died."""


class OutOfTimeError(RuntimeError):
    """Raised for a record reached too late in the invocation to start; SQS redelivers it."""


async def _run(
    rt: Runtime, job: BroadcastJob, message_id: str, deadline: float, lease_s: float
) -> JobResult:
    runner = await (await rt.clients()).job_runner()
    return await runner.run(job, message_id=message_id, deadline=deadline, lease_s=lease_s)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entrypoint for the broadcast queue's event source mapping."""
    rt = runtime()
    margin = rt.settings.worker_deadline_margin_s

    def record_handler(record: Record) -> str:
        message_id: str = record["messageId"]
        bind_log_keys(message_id=message_id)
        metrics.add_metric(name="JobMessages", unit=MetricUnit.Count, value=1)
        try:
            job = BroadcastJob.model_validate_json(record["body"])
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
                for error in exc.errors()[:5]
            )
            logger.error("not a broadcast job", extra={"problems": problems})
            metrics.add_metric(name="InvalidJobs", unit=MetricUnit.Count, value=1)
            raise
        bind_log_keys(message_id=message_id, job_id=job.job_id, segment=job.segment)
        # The step's lease lasts as long as Lambda may run this invocation, no longer: a copy of
        # the message redelivered after that finds the step free to take over.
        lease_s = context.get_remaining_time_in_millis() / 1000
        seconds_left = lease_s - margin
        if seconds_left <= 0:
            logger.warning("no time left in this invocation; SQS will redeliver the job")
            raise OutOfTimeError("no time left to start this job")
        started = time.monotonic()
        try:
            result = rt.run(_run(rt, job, message_id, started + seconds_left, lease_s))
        except Exception:
            logger.exception("the job failed; SQS will redeliver it")
            raise
        report = result.report
        logger.info(
            "job step done",
            extra={
                "action": result.action.value,
                "segments": result.segments,
                "report": report.model_dump(exclude_none=True) if report else None,
            },
        )
        if report is not None:
            metrics.add_metric(name="Delivered", unit=MetricUnit.Count, value=report.delivered)
            metrics.add_metric(name="Gone", unit=MetricUnit.Count, value=report.gone)
            metrics.add_metric(name="Failed", unit=MetricUnit.Count, value=report.failed)
            metrics.add_metric(name="Throttled", unit=MetricUnit.Count, value=report.throttled)
            metrics.add_metric(
                name="Duration", unit=MetricUnit.Milliseconds, value=report.elapsed_s * 1000
            )
        if result.action is JobOutcome.SKIPPED_LEASED:
            # Not acknowledged: if the invocation holding the lease dies, this copy is what
            # SQS redelivers; it then finds the lease lapsed and takes the step over (or the
            # step done, and is acknowledged).
            raise LeasedElsewhereError("another invocation holds this step; SQS redelivers it")
        action: str = result.action.value
        return action

    return partial_batch_response(event, record_handler)


def partial_batch_response(
    event: Mapping[str, Any], record_handler: Callable[[Record], object]
) -> dict[str, list[dict[str, str]]]:
    """Run ``record_handler`` on each record of an SQS event in turn; a record whose handler
    raised fails alone: the answer (SQS's partial batch response, with the event source
    mapping's ``ReportBatchItemFailures``) names it, so SQS redelivers it and deletes the rest.

    What Powertools' ``BatchProcessor`` does for SQS, written here because importing it loads
    its data classes of every event source, which every cold start of this handler would pay.
    Only an :class:`Exception` fails a record; anything else (``KeyboardInterrupt``, an
    exception group holding a cancellation) ends the invocation, as it does there.

    :raises InvalidInputError: the event holds no ``Records`` list: it is no SQS event.
    """
    records = event.get("Records")
    if not isinstance(records, list):
        raise InvalidInputError("not an SQS event: it holds no Records list")
    failures = []
    for record in records:
        try:
            record_handler(record)
        except Exception:  # the record fails alone; its handler logged why
            failures.append({"itemIdentifier": str(record["messageId"])})
    return {"batchItemFailures": failures}
