"""Lambda's SQS event source mapping, played locally: receive, invoke, delete what succeeded.

The broadcast worker is a plain Lambda handler, so the only honest way to run it on one machine
is to do exactly what the event source mapping does on AWS and nothing more:

* long-poll up to ``batch_size`` messages, asking for every system and message attribute;
* build the event record by record as Lambda does (camel-cased fields, message attributes in
  Lambda's ``stringValue``/``binaryValue`` shape with binary values base64-encoded, the queue's
  ARN and region);
* call the *synchronous* handler with a context whose remaining time runs down from the function
  timeout, in one of ``concurrency`` long-lived threads. While the poller runs the handlers keep
  their :class:`~wsfanout.handlers.runtime.Runtime` (event loop, AWS clients) per thread
  (:mod:`wsfanout.local.containers`), so each thread plays one warm container for as long as the
  poller runs, and closes its runtime at the end;
* with ``ReportBatchItemFailures`` on the mapping, read the response as Lambda does: a missing,
  null or empty ``batchItemFailures`` is a full success; an identifier that is empty, null or not in
  the batch, or a response that is not an object, fails the whole batch. Without it the response is
  not read at all: a batch fails only as a whole. Either way a handler that raises, or that returns
  after its timeout (Lambda would have killed it), fails the whole batch;
* delete the rest with ``DeleteMessageBatch``.

Failed messages are not touched: they turn visible again when their visibility timeout expires,
and the queue's own ``RedrivePolicy`` moves them to the dead-letter queue after
``maxReceiveCount`` receives. moto implements that the way SQS does (the move happens on the
receive that would exceed the count), so retries and dead-lettering are the queue's, not ours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio
import anyio.to_thread

from ..aws.errors import BOTOCORE_ERRORS
from ..aws.events import LambdaContext, sqs_event
from ..exceptions import InvalidInputError, WsFanoutError
from ..handlers.runtime import reset_runtime
from . import containers as hosts

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

__all__ = ["DrainLimitError", "PollerStats", "SqsPoller", "batch_item_failures", "sqs_event"]

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]
"""A Lambda handler as Lambda calls it: ``handler(event, context)``, synchronous."""

T = TypeVar("T")

_RECEIVE_BACKOFF_MAX_S: Final = 5.0
# How long past its timeout we wait for a handler before leaving its thread behind (a hung
# Lambda is stopped by AWS; a thread cannot be stopped, only no longer waited for).
_HUNG_GRACE_S: Final = 10.0
_MAX_FUNCTION_TIMEOUT_S: Final = 900.0  # Lambda's own ceiling


class DrainLimitError(WsFanoutError):
    """Raised by :meth:`SqsPoller.drain` when the queue still had messages after
    ``max_batches`` batches (a job that keeps re-enqueueing itself, or a poison message on a
    queue with no dead-letter queue)."""


@dataclass
class PollerStats:
    """What the mapping did so far (for reports and tests)."""

    batches: int = 0
    records: int = 0
    deleted: int = 0
    failed_records: int = 0
    failed_batches: int = 0  # raised, timed out or answered something unreadable


class _Container:
    """One warm Lambda container: a thread of its own that runs one invocation at a time.

    Its own rather than borrowed from anyio's pool, which retires threads idle for ten seconds:
    a retired thread would strand its open runtime and turn the next invocation cold. (This
    needs asyncio, as aiobotocore does anyway.)
    """

    def __init__(self, name: str) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def call(self, func: Callable[[], T], *, limit_s: float) -> T:
        """Run ``func`` in the container and wait for it, even when cancelled (shutting down
        must not close a runtime under a running invocation), but at most ``limit_s``: then
        :class:`TimeoutError` is raised and the thread is left to finish on its own."""
        future = self._thread.submit(func)
        with anyio.CancelScope(shield=True), anyio.fail_after(limit_s):
            result = await asyncio.wrap_future(future)
        return result  # noqa: RET504  (returning inside the scopes reads to mypy as no return)

    async def close(self) -> None:
        """Close the container's runtime in its own thread, then let the thread go."""
        try:
            await self.call(reset_runtime, limit_s=_HUNG_GRACE_S)
        except TimeoutError:
            log.warning("a container was still busy at shutdown; its runtime stays open")
        finally:
            self._thread.shutdown(wait=False)


@dataclass
class _DrainState:
    epoch: int = 0  # bumped whenever a batch starts or ends: polls that saw it are not "idle"
    in_flight: int = 0
    idle: int = 0
    batches: int = 0
    done: bool = False
    exceeded: bool = False


class SqsPoller:
    """One event source mapping: ``queue_url`` → ``handler``, ``concurrency`` batches at once.

    ``visibility_timeout_s=None`` uses the queue's own visibility timeout, as the real mapping
    does; a number overrides it on every receive (handy for short retry loops in tests).
    ``report_batch_item_failures`` is the mapping's ``FunctionResponseTypes:
    [ReportBatchItemFailures]``: without it Lambda ignores what the handler returns, so a
    ``batchItemFailures`` answer deletes the whole batch.
    """

    def __init__(
        self,
        sqs_client: SQSClient,
        queue_url: str,
        handler: Handler,
        *,
        batch_size: int = 10,
        visibility_timeout_s: int | None = 60,
        function_timeout_s: float = 60.0,
        concurrency: int = 2,
        wait_s: int = 1,
        function_name: str = "wsfanout-broadcast",
        report_batch_item_failures: bool = True,
    ) -> None:
        if not 1 <= batch_size <= 10:
            raise InvalidInputError(
                f"batch_size must be 1..10 (one ReceiveMessage), not {batch_size}"
            )
        if visibility_timeout_s is not None and not 0 <= visibility_timeout_s <= 43200:
            raise InvalidInputError(
                f"visibility_timeout_s must be 0..43200, not {visibility_timeout_s}"
            )
        if not 0 < function_timeout_s <= _MAX_FUNCTION_TIMEOUT_S:
            raise InvalidInputError(
                f"function_timeout_s must be in (0, 900], not {function_timeout_s}"
            )
        if concurrency < 1:
            raise InvalidInputError(f"concurrency must be at least 1, not {concurrency}")
        if not 0 <= wait_s <= 20:
            raise InvalidInputError(f"wait_s must be 0..20 (SQS long polling), not {wait_s}")
        self._sqs = sqs_client
        self.queue_url = queue_url
        self.handler = handler
        self.batch_size = batch_size
        self.visibility_timeout_s = visibility_timeout_s
        self.function_timeout_s = function_timeout_s
        self.concurrency = concurrency
        self.wait_s = wait_s
        self.function_name = function_name
        self.report_batch_item_failures = report_batch_item_failures
        self.stats = PollerStats()
        self._queue_arn: str | None = None

    # -- public ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll and invoke until cancelled. Receive errors are logged and retried with backoff,
        as the real mapping keeps polling through outages."""
        async with self._containers() as containers, anyio.create_task_group() as tg:
            for container in containers:
                tg.start_soon(self._run_worker, container)

    async def drain(self, *, idle_polls: int = 2, max_batches: int = 1000) -> int:
        """Handle batches until ``idle_polls`` polls in a row find the queue empty with no batch
        in flight; return how many batches were handled.

        A poll only counts as idle if no batch started or finished while it was open, so a
        continuation enqueued by the last batch is still picked up. Polls are never cancelled
        (a cancelled receive would hide its messages for a visibility timeout), so the tail costs
        up to two ``wait_s``. Raises :class:`DrainLimitError` after ``max_batches``.
        """
        if idle_polls < 1 or max_batches < 1:
            raise InvalidInputError("idle_polls and max_batches must be at least 1")
        state = _DrainState()
        async with self._containers() as containers, anyio.create_task_group() as tg:
            for container in containers:
                tg.start_soon(self._drain_worker, container, state, idle_polls, max_batches)
        if state.exceeded:
            raise DrainLimitError(
                f"{self.queue_url} still had messages after {max_batches} batches"
            )
        return state.batches

    # -- workers ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def _containers(self) -> AsyncIterator[list[_Container]]:
        """Warm containers for one ``run`` or ``drain``, closed when it ends, however it ends."""
        hosts.acquire()
        containers = [_Container(f"{self.function_name}-{n}") for n in range(self.concurrency)]
        try:
            yield containers
        finally:
            with anyio.CancelScope(shield=True):
                for container in containers:
                    await container.close()
                # off the loop: the last release closes what is left, and closing runs loops
                await anyio.to_thread.run_sync(hosts.release)

    async def _run_worker(self, container: _Container) -> None:
        failures = 0
        while True:
            try:
                messages = await self._receive()
            except BOTOCORE_ERRORS as exc:
                failures += 1
                pause = min(_RECEIVE_BACKOFF_MAX_S, 0.1 * 2**failures)
                log.warning(
                    "receive from %s failed (%s); retrying in %.1fs", self.queue_url, exc, pause
                )
                await anyio.sleep(pause)
                continue
            failures = 0
            if messages:
                await self._handle(messages, container)

    async def _drain_worker(
        self, container: _Container, state: _DrainState, idle_polls: int, max_batches: int
    ) -> None:
        while not state.done:
            if state.batches >= max_batches:
                state.exceeded = state.done = True
                return
            epoch = state.epoch
            messages = await self._receive()
            if messages:
                state.done = False
                state.idle = 0
                state.batches += 1
                state.in_flight += 1
                state.epoch += 1
                try:
                    await self._handle(messages, container)
                finally:
                    state.in_flight -= 1
                    state.epoch += 1
            elif epoch == state.epoch and state.in_flight == 0:
                state.idle += 1
                state.done = state.done or state.idle >= idle_polls
            else:
                state.idle = 0

    # -- one batch -------------------------------------------------------------------------------

    async def _receive(self) -> list[MessageTypeDef]:
        extra: dict[str, Any] = {}
        if self.visibility_timeout_s is not None:
            extra["VisibilityTimeout"] = self.visibility_timeout_s
        answer = await self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_s,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
            **extra,
        )
        return list(answer.get("Messages", []))

    async def _source_arn(self) -> str:
        if self._queue_arn is None:
            answer = await self._sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
            )
            self._queue_arn = answer["Attributes"]["QueueArn"]
        return self._queue_arn

    async def _handle(self, messages: Sequence[MessageTypeDef], container: _Container) -> None:
        arn = await self._source_arn()
        event = sqs_event(messages, arn)
        context = LambdaContext(seconds=self.function_timeout_s, function_name=self.function_name)
        ids = [record["messageId"] for record in event["Records"]]
        try:
            failed, whole = await container.call(
                partial(self._invoke, event, context, ids),
                limit_s=self.function_timeout_s + _HUNG_GRACE_S,
            )
        except TimeoutError:
            log.warning(
                "%s hung past its timeout; the whole batch will be retried", self.function_name
            )
            failed, whole = set(ids), True
        self.stats.batches += 1
        self.stats.failed_batches += whole
        self.stats.records += len(ids)
        self.stats.failed_records += len(failed)
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            await self._delete(done)

    def _invoke(
        self, event: dict[str, Any], context: LambdaContext, ids: list[str]
    ) -> tuple[set[str], bool]:
        """Run the handler (in a container's thread); return the ids to leave on the queue, and
        whether the batch failed as a whole."""
        try:
            response = self.handler(event, context)
        except Exception:
            log.exception("%s raised; the whole batch will be retried", self.function_name)
            return set(ids), True
        if context.get_remaining_time_in_millis() <= 0:
            log.error(
                "%s ran past its %ss timeout; Lambda would have stopped it, so the whole batch "
                "will be retried",
                self.function_name,
                self.function_timeout_s,
            )
            return set(ids), True
        if not self.report_batch_item_failures:
            return set(), False  # Lambda reads no response: it returned, so the batch succeeded
        failed = batch_item_failures(response, ids)
        if failed is None:
            log.error("%s answered %.200r: not a batch response", self.function_name, response)
            return set(ids), True
        return failed, False

    async def _delete(self, messages: Sequence[MessageTypeDef]) -> None:
        for first in range(0, len(messages), 10):
            chunk = messages[first : first + 10]
            try:
                answer = await self._sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                        for n, m in enumerate(chunk)
                    ],
                )
            except BOTOCORE_ERRORS as exc:
                log.warning("could not delete %d handled messages (%s)", len(chunk), exc)
                continue
            self.stats.deleted += len(answer.get("Successful", []))
            for error in answer.get("Failed", []):
                # Typically a receipt handle that expired because the handler outlived the
                # visibility timeout: SQS will deliver that message again, as on AWS.
                log.warning("could not delete a handled message: %s", error.get("Message"))


def batch_item_failures(response: Any, ids: Sequence[str]) -> set[str] | None:
    """The ids a ``ReportBatchItemFailures`` response leaves on the queue, or ``None`` when Lambda
    would treat the whole batch as failed (a response it cannot read, or an identifier that is
    empty, null or not in the batch)."""
    if response is None:
        return set()
    if not isinstance(response, Mapping):
        return None
    items = response.get("batchItemFailures")
    if items is None:
        return set()
    if not isinstance(items, list):
        return None
    known = set(ids)
    failed: set[str] = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(identifier, str) or identifier not in known:
            return None
        failed.add(identifier)
    return failed
