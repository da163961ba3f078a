"""The fan-out engine: a registry stream feeding a bounded buffer drained by a fixed sender pool.

::

    pages(target) ──> producer ──> [bounded buffer] ──> N senders ──> Gateway.post
                                                           │  410
                                                           v
                                                  [gone ids] ──> cleanup ──> registry batch delete

Memory is flat: one registry page and ``buffer_size`` recipients at most, however large the
registry. Senders take recipients in stream order, so the recipients taken always form a prefix
of the stream; at a deadline senders stop taking, finish what they hold, and the key of the last
recipient taken is a cursor from which a later run reaches exactly the rest.

Receivers are never cancelled while waiting for an item (a cancelled ``receive`` can drop the item
handed to it); the producer is the one stopped at the deadline, which closes the buffer.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .exceptions import ForbiddenError, PayloadTooLargeError, WsFanoutError
from .interfaces import Gateway, Outcome, Recipient, RecipientSource
from .models import MAX_PAYLOAD_BYTES, BroadcastJob, Cursor, FanoutReport, Target
from .throttle import RetryPolicy, Throttle

__all__ = ["Fanout"]

ProgressCallback = Callable[[int], None]


@dataclass(slots=True)
class _Run:
    """Mutable counters of one run; turned into a :class:`FanoutReport` at the end."""

    delivered: int = 0
    gone: int = 0
    failed: int = 0
    excluded: int = 0
    retries: int = 0
    throttled: int = 0
    cleaned_up: int = 0
    cleanup_failed: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    produced: int = 0
    taken: int = 0
    exhausted: bool = False
    last_seq: int = -1
    last_taken: Recipient | None = None

    def take(self, seq: int, recipient: Recipient) -> None:
        self.taken += 1
        if seq > self.last_seq:
            self.last_seq = seq
            self.last_taken = recipient

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.failed_by_reason[reason] = self.failed_by_reason.get(reason, 0) + 1


class Fanout:
    """Sends one payload to every recipient of a target with bounded concurrency.

    ``source`` streams recipients and removes gone connections (normally a
    :class:`~wsfanout.registry.Registry`); ``gateway`` posts frames (normally a
    :class:`~wsfanout.gateway.ManagementGateway`).
    """

    def __init__(
        self,
        source: RecipientSource,
        gateway: Gateway,
        *,
        concurrency: int = 128,
        retry: RetryPolicy | None = None,
        buffer_size: int | None = None,
        cleanup_batch: int = 25,
        cleanup_concurrency: int = 4,
        rng: random.Random | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._source = source
        self.gateway = gateway
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self._buffer_size = buffer_size if buffer_size is not None else concurrency * 2
        self._cleanup_batch = cleanup_batch
        self._cleanup_concurrency = cleanup_concurrency
        self.rng = rng or random.Random()

    async def run_job(
        self,
        job: BroadcastJob,
        *,
        deadline: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> FanoutReport:
        """Run a :class:`BroadcastJob` (target, payload, exclusions, segment and cursor)."""
        return await self.run(
            job.target,
            job.payload,
            exclude=job.exclude,
            segment=job.segment,
            total_segments=job.total_segments,
            cursor=job.cursor,
            deadline=deadline,
            on_progress=on_progress,
        )

    async def run(
        self,
        target: Target,
        payload: bytes,
        *,
        exclude: Collection[str] = (),
        segment: int | None = None,
        total_segments: int | None = None,
        cursor: Cursor | None = None,
        deadline: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> FanoutReport:
        """Fan ``payload`` out to ``target`` and report what happened.

        ``deadline`` is a :func:`time.monotonic` value: from then on no new recipient is taken,
        sends in flight finish, and the report's ``resume`` cursor continues exactly after the
        last recipient taken. A 403 aborts the run with :class:`ForbiddenError`; a payload over
        128 KiB raises :class:`PayloadTooLargeError` before anything is sent.
        """
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLargeError(len(payload), MAX_PAYLOAD_BYTES)
        started = time.monotonic()
        run = _Run()
        recipients_in, recipients_out = anyio.create_memory_object_stream[tuple[int, Recipient]](
            self._buffer_size
        )
        gone_in, gone_out = anyio.create_memory_object_stream[Recipient](self._buffer_size)
        pages = self._source.pages(
            target, segment=segment, total_segments=total_segments, cursor=cursor
        )
        pace = Throttle(self.concurrency, floor=max(1, self.concurrency // 16))
        sender = _Sender(self, payload, frozenset(exclude), deadline, pace, run, on_progress)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._produce, pages, recipients_in, deadline, run)
                async with recipients_out, gone_in:
                    for _ in range(self.concurrency):
                        tasks.start_soon(sender.loop, recipients_out.clone(), gone_in.clone())
                async with gone_out:
                    for _ in range(self._cleanup_concurrency):
                        tasks.start_soon(self._cleanup, gone_out.clone(), run)
        except BaseExceptionGroup as group:
            raise _single_error(group) from None

        complete = run.exhausted and run.taken == run.produced
        resume: Cursor | None = None
        if not complete:
            resume = run.last_taken.resume_cursor() if run.last_taken else (cursor or Cursor())
        return FanoutReport(
            delivered=run.delivered,
            gone=run.gone,
            failed=run.failed,
            failed_by_reason=run.failed_by_reason,
            excluded=run.excluded,
            retries=run.retries,
            throttled=run.throttled,
            cleaned_up=run.cleaned_up,
            cleanup_failed=run.cleanup_failed,
            elapsed_s=round(time.monotonic() - started, 6),
            complete=complete,
            resume=resume,
        )

    async def _produce(
        self,
        pages: AsyncIterator[Sequence[Recipient]],
        outbox: MemoryObjectSendStream[tuple[int, Recipient]],
        deadline: float | None,
        run: _Run,
    ) -> None:
        """Feed the buffer in stream order until the stream ends or the deadline passes."""
        async with outbox:
            with anyio.CancelScope(deadline=_loop_deadline(deadline)):
                seq = 0
                try:
                    async for page in pages:
                        for recipient in page:
                            await outbox.send((seq, recipient))
                            seq += 1
                            run.produced = seq
                except anyio.BrokenResourceError:
                    return  # every sender stopped at the deadline first
                run.exhausted = True

    async def _cleanup(self, inbox: MemoryObjectReceiveStream[Recipient], run: _Run) -> None:
        """Batch-delete gone connections; batches grow by themselves while a delete is slow."""
        async with inbox:
            async for first in inbox:
                batch = [first]
                while len(batch) < self._cleanup_batch:
                    try:
                        batch.append(inbox.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                try:
                    await self._source.remove_gone(batch)
                except WsFanoutError:
                    run.cleanup_failed += len(batch)
                else:
                    run.cleaned_up += len(batch)


@dataclass(slots=True)
class _Sender:
    """What every sender of one run shares: the payload, the pacing and the counters."""

    engine: Fanout
    payload: bytes
    excluded: frozenset[str]
    deadline: float | None
    pace: Throttle
    run: _Run
    on_progress: ProgressCallback | None

    async def loop(
        self,
        inbox: MemoryObjectReceiveStream[tuple[int, Recipient]],
        gone: MemoryObjectSendStream[Recipient],
    ) -> None:
        """Take recipients until the buffer ends or the deadline passes (checked before taking)."""
        deadline = self.deadline
        async with inbox, gone:
            while deadline is None or time.monotonic() < deadline:
                try:
                    seq, recipient = await inbox.receive()
                except anyio.EndOfStream:
                    return
                self.run.take(seq, recipient)
                if recipient.connection_id in self.excluded:
                    self.run.excluded += 1
                    continue
                outcome = await self.deliver(recipient)
                if outcome is Outcome.GONE:
                    await gone.send(recipient)
                if self.on_progress is not None:
                    self.on_progress(1)

    async def deliver(self, recipient: Recipient) -> Outcome:
        """Send to one recipient with bounded retries; return its final outcome."""
        engine, run, pace, payload = self.engine, self.run, self.pace, self.payload
        retry = engine.retry
        attempts = throttled_attempts = 0
        while True:
            async with pace:
                outcome = await engine.gateway.post(
                    recipient.connection_id, payload, recipient.endpoint
                )
            if outcome is Outcome.DELIVERED:
                pace.succeeded()
                run.delivered += 1
                return outcome
            if outcome is Outcome.GONE:
                run.gone += 1
                return outcome
            if outcome is Outcome.FORBIDDEN:
                url = recipient.endpoint or engine.gateway.default_endpoint
                raise ForbiddenError(
                    f"the management endpoint {url} answered 403 (posting to "
                    f"{recipient.connection_id!r}): check the endpoint URL and that the "
                    "credentials may execute-api:ManageConnections on it",
                    endpoint=url,
                )
            if outcome is Outcome.TOO_LARGE:
                raise PayloadTooLargeError(len(payload), MAX_PAYLOAD_BYTES)
            if outcome is Outcome.THROTTLED:
                run.throttled += 1
                throttled_attempts += 1
                pace.throttled()
                exhausted = throttled_attempts >= retry.max_throttled_attempts
            else:
                attempts += 1
                exhausted = not outcome.retryable or attempts >= retry.max_attempts
            if exhausted:
                run.fail(outcome.value)
                return outcome
            run.retries += 1
            await anyio.sleep(retry.delay(attempts + throttled_attempts, engine.rng))


def _loop_deadline(deadline: float | None) -> float:
    """Convert a :func:`time.monotonic` deadline to the event loop's clock."""
    if deadline is None:
        return float("inf")
    return anyio.current_time() + (deadline - time.monotonic())


def _single_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first wsfanout error in a task-group failure (a 403 aborts every sender at once)."""
    for exc in _leaves(group):
        if isinstance(exc, WsFanoutError):
            return exc
    return group


def _leaves(group: BaseExceptionGroup[BaseException]) -> Sequence[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_leaves(exc))
        else:
            found.append(exc)
    return found
