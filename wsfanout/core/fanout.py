"""The fan-out engine: a registry stream feeding a fixed pool of senders, one page at a time.

::

    pages(target) ──> prefetch ──> [next page] ──> feed ──> N senders ──> Gateway.post
                                                                │  410
                                                                v
                                                       [gone ids] ──> cleanup ──> batch delete

Memory is flat: two registry pages (the one being fed and the one prefetched) and the gone ids
awaiting deletion, however large the registry. Senders take recipients in stream order, so the
recipients taken always form a prefix of the stream. At a deadline senders stop taking, the
attempts in flight finish (no new retries start), and the run returns a *watermark* cursor:
after the longest prefix of the stream whose sends all finished, plus the ids past it that
finished too (``skip``). A later run from there reaches exactly the connections not yet
attempted. A ``stop`` event set while running stops the run the same way ("a deadline now"), and
a registry page that cannot be read mid-run lets what was already fetched finish, then raises
:class:`MidRunRegistryError` carrying the report and that watermark. The same watermark,
reported while running, is the checkpoint from which a crashed worker's successor resumes; a
gone connection counts as finished (and as gone) only once its delete is done, so no checkpoint
passes a delete a crash could still lose.
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..exceptions import (
    ForbiddenError,
    MidRunRegistryError,
    PayloadTooLargeError,
    RegistryError,
    WsFanoutError,
)
from .interfaces import Gateway, Recipient, RecipientSource
from .models import MAX_PAYLOAD_BYTES, MAX_SKIP, Cursor, FanoutReport, Target
from .outcomes import Outcome
from .pacing import PACINGS, Pacer, Pacing, RetryPolicy, pacer

__all__ = ["Fanout", "RunHooks"]

_Item = tuple[int, Recipient, Recipient | None]  # (sequence, recipient, the one before it)
_Gone = tuple[int, Recipient]  # (sequence, recipient) of a 410, finished once its delete is done
_DONE_PRUNE_AT = 4096
_LINGER_STEP_S = 0.01


@dataclass(frozen=True, slots=True)
class RunHooks:
    """What a caller hears while a run goes on; both hooks are optional.

    ``progress(n)`` is called from a sender, synchronously, each time ``n`` more recipients have
    been attempted to the end (delivered, gone or failed; excluded and skipped ones do not count).
    It must be cheap and must not raise: it runs on the hot path.

    ``checkpoint(cursor, report)`` is awaited after about every ``checkpoint_every`` finished
    recipients with the watermark cursor (every recipient before it has finished) and the counts
    so far. It runs beside the senders, one call at a time, and never holds them up. **Raising
    aborts the run**: the senders stop, and :meth:`Fanout.run` re-raises that very exception,
    unwrapped (not in an exception group), whatever its type. That is how a job runner stops a
    run whose claim it has lost.
    """

    progress: Callable[[int], None] | None = None
    checkpoint: Callable[[Cursor, FanoutReport], Awaitable[None]] | None = None
    checkpoint_every: int = 1000


_NO_HOOKS = RunHooks()


@dataclass(frozen=True, slots=True)
class _Plan:
    """What every sender of one run reads and none changes (the counters are in :class:`_Run`).

    ``deadline`` is on the event loop's clock (:func:`anyio.current_time`), the engine's one
    clock; ``None`` means none.
    """

    payload: bytes
    excluded: frozenset[str]
    gateway: Gateway
    retry: RetryPolicy
    rng: random.Random
    pace: Pacer
    deadline: float | None
    stop: anyio.Event | None  # set: as if the deadline were now
    progress: Callable[[int], None] | None
    checkpoint_every: int  # 0: no checkpoints


@dataclass(slots=True)
class _Run:
    """Mutable state of one run; turned into a :class:`FanoutReport` at the end."""

    start: Cursor | None
    started: float = field(default_factory=anyio.current_time)
    delivered: int = 0
    gone: int = 0
    failed: int = 0
    excluded: int = 0
    retries: int = 0
    throttled: int = 0
    cleaned_up: int = 0
    cleanup_failed: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    taken: int = 0
    finished: int = 0
    last_seq: int = -1
    last_taken: Recipient | None = None
    # sequence -> the recipient before it, for every recipient taken and not yet finished
    in_flight: dict[int, Recipient | None] = field(default_factory=dict)
    # sequence -> id of recipients finished recently; those past the oldest one still in flight
    # become the cursor's ``skip``
    done: dict[int, str] = field(default_factory=dict)
    # ids the start cursor said to skip that this run has not met yet
    skip_pending: set[str] = field(default_factory=set)
    next_checkpoint: int = 0
    # what the checkpoint hook raised: re-raised by ``Fanout.run`` as it is
    checkpoint_error: Exception | None = None
    # the registry failure that ended the stream early: raised as ``MidRunRegistryError``
    source_error: RegistryError | None = None
    senders_done: anyio.Event = field(default_factory=anyio.Event)

    def take(self, item: _Item) -> None:
        seq, recipient, previous = item
        self.taken += 1
        self.in_flight[seq] = previous
        if seq > self.last_seq:
            self.last_seq = seq
            self.last_taken = recipient

    def finish(self, seq: int, connection_id: str) -> None:
        del self.in_flight[seq]
        self.finished += 1
        if self.in_flight:
            self.done[seq] = connection_id
            if len(self.done) > _DONE_PRUNE_AT:
                oldest = min(self.in_flight)
                self.done = {s: cid for s, cid in self.done.items() if s > oldest}

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.failed_by_reason[reason] = self.failed_by_reason.get(reason, 0) + 1

    def watermark(self) -> Cursor:
        """After the longest prefix of the stream whose sends have all finished, skipping the
        recipients past it that finished too (and those the start cursor skipped, not yet met).
        """
        if self.in_flight:
            oldest = min(self.in_flight)
            previous = self.in_flight[oldest]
            skip = [cid for seq, cid in sorted(self.done.items()) if seq > oldest]
        else:
            previous, skip = self.last_taken, []
        base = previous.resume_cursor() if previous else (self.start or Cursor())
        skip = (sorted(self.skip_pending) + skip)[:MAX_SKIP]
        return base.model_copy(update={"skip": skip or None})

    def report(self, *, complete: bool = False, resume: Cursor | None = None) -> FanoutReport:
        return FanoutReport(
            delivered=self.delivered,
            gone=self.gone,
            failed=self.failed,
            failed_by_reason=dict(self.failed_by_reason),
            excluded=self.excluded,
            retries=self.retries,
            throttled=self.throttled,
            cleaned_up=self.cleaned_up,
            cleanup_failed=self.cleanup_failed,
            elapsed_s=round(anyio.current_time() - self.started, 6),
            complete=complete,
            resume=resume,
        )


class _Feed:
    """The registry stream in order, handed to senders one recipient at a time.

    Why not a memory channel per recipient: a channel hop costs the sending and the receiving task
    a trip through the event loop each, which at zero latency is a large share of what one
    delivery costs (docs/performance.md has the profile). Senders take from the
    current page without awaiting; only the one that finds it used up waits for the next
    (prefetched) page while the others queue on the lock behind it.

    At the deadline a wait for a page is abandoned and the feed closes: a page dropped by that
    cancelled wait must never be stepped over by a sender that checked the clock a moment earlier.
    """

    __slots__ = (
        "_deadline",
        "_index",
        "_lock",
        "_page",
        "_previous",
        "_scopes",
        "_seq",
        "closed",
        "exhausted",
        "pages",
    )

    def __init__(
        self, pages: MemoryObjectReceiveStream[Sequence[Recipient]], deadline: float
    ) -> None:
        self.pages = pages
        self._deadline = deadline  # on the event loop's clock
        self._page: Sequence[Recipient] = ()
        self._index = 0
        self._seq = 0
        self._previous: Recipient | None = None
        self._lock = anyio.Lock()
        self._scopes: set[anyio.CancelScope] = set()  # the waits in take(), for stop()
        self.exhausted = False
        self.closed = False

    def take_nowait(self) -> _Item | None:
        """The next recipient of the current page, or ``None`` when a page must be awaited."""
        index = self._index
        if index >= len(self._page) or self.closed:
            return None
        recipient = self._page[index]
        item = (self._seq, recipient, self._previous)
        self._index = index + 1
        self._seq += 1
        self._previous = recipient
        return item

    async def take(self) -> _Item | None:
        """The next recipient, waiting for the next page if needed; ``None`` when there is none
        (the stream ended, or the deadline passed while waiting).
        """
        with anyio.CancelScope(deadline=self._deadline) as scope:
            self._scopes.add(scope)
            try:
                async with self._lock:
                    while not self.closed:
                        item = self.take_nowait()
                        if item is not None or self.exhausted:
                            return item
                        try:
                            page = await self.pages.receive()
                        except anyio.EndOfStream:
                            page, self.exhausted = (), True
                        self._page, self._index = page, 0
            finally:
                self._scopes.discard(scope)
        if scope.cancelled_caught:
            self.closed = True
        return None

    def stop(self) -> None:
        """Close the feed now, as a deadline passing would (nothing more is handed out), unless
        the stream has already ended: then there is nothing left to stop, and the run is
        complete once its sends finish."""
        if self.exhausted:
            return
        self.closed = True
        for scope in self._scopes:
            scope.cancel()


class Fanout:
    """Sends one payload to every recipient of a target with bounded concurrency.

    ``source`` streams recipients and removes gone connections (normally a
    :class:`~wsfanout.aws.registry.Registry`); ``gateway`` posts frames (normally a
    :class:`~wsfanout.aws.gateway.ManagementGateway`).

    ``pacing`` says how the senders react to 429s (:func:`~wsfanout.core.pacing.pacer`):
    ``"aimd"`` (the default) halves the requests in flight and adds them back one by one, which
    suits one sender pool and 429s of any cause; ``"learnt"`` paces starts at a rate learnt from
    the accept rate, for several workers sharing one account quota with no coordinator.

    :raises ValueError: ``concurrency`` below 1 or an unknown ``pacing``.
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
        cleanup_linger_s: float = 0.2,
        rng: random.Random | None = None,
        pacing: Pacing = "aimd",
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if pacing not in PACINGS:
            raise ValueError(f"unknown pacing {pacing!r}; one of {', '.join(PACINGS)}")
        self.pacing: Pacing = pacing
        self._source = source
        self.gateway = gateway
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self._buffer_size = buffer_size if buffer_size is not None else concurrency * 2
        self._cleanup_batch = cleanup_batch
        self._cleanup_concurrency = cleanup_concurrency
        self._cleanup_linger_s = cleanup_linger_s
        self.rng = rng or random.Random()

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
        stop: anyio.Event | None = None,
        hooks: RunHooks = _NO_HOOKS,
    ) -> FanoutReport:
        """Fan ``payload`` out to ``target`` and report what happened.

        ``deadline`` is a :func:`time.monotonic` value (converted once, here, to the event loop's
        clock, which is the only one the engine reads): from then on no new recipient is taken,
        sends in flight finish without new retries, and the report's ``resume`` cursor continues
        exactly after what finished. Setting ``stop`` (an event of the caller's, say on SIGINT)
        stops the run the same way at that moment, so an interrupted run still returns its report
        and watermark instead of being cancelled mid-flight and losing them. ``hooks`` carries
        the progress and checkpoint callbacks (see :class:`RunHooks` for their contract).

        :raises PayloadTooLargeError: before anything is sent, when ``payload`` is over 128 KiB,
            or when the management API answers 413.
        :raises ForbiddenError: when the management API answers 403; every sender stops at once.
        :raises InvalidInputError: when the source refuses the target (segments of a non-"all"
            target, say).
        :raises MidRunRegistryError: (a :class:`~wsfanout.exceptions.RegistryError`) when a
            page of the source cannot be read: the recipients already fetched are sent first,
            and the error carries the report and its ``resume`` watermark (cleanup failures are
            only counted, in ``cleanup_failed``).
        :raises Exception: whatever ``hooks.checkpoint`` raised, unwrapped.
        """
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLargeError(len(payload), MAX_PAYLOAD_BYTES)
        run = _Run(start=cursor, skip_pending=set(cursor.skip or ()) if cursor else set())
        every = max(1, hooks.checkpoint_every) if hooks.checkpoint else 0
        run.next_checkpoint = every
        loop_deadline = _loop_deadline(deadline)
        plan = _Plan(
            payload=payload,
            excluded=frozenset(exclude),
            gateway=self.gateway,
            retry=self.retry,
            rng=self.rng,
            pace=pacer(self.pacing, self.concurrency),
            deadline=loop_deadline,
            stop=stop,
            progress=hooks.progress,
            checkpoint_every=every,
        )
        # No buffer: the prefetched page waits in the fetching task's hands, not in a queue
        pages_in, pages_out = anyio.create_memory_object_stream[Sequence[Recipient]](0)
        gone_in, gone_out = anyio.create_memory_object_stream[_Gone](self._buffer_size)
        ticks_in, ticks_out = anyio.create_memory_object_stream[None](1)
        pages = self._source.pages(
            target, segment=segment, total_segments=total_segments, cursor=cursor
        )
        feed = _Feed(pages_out, float("inf") if loop_deadline is None else loop_deadline)
        try:
            async with anyio.create_task_group() as tasks:
                send_all = functools.partial(
                    self._send_all,
                    plan,
                    run,
                    feed,
                    pages=pages,
                    outbox=pages_in,
                    gone=gone_in,
                    stop=stop,
                )
                tasks.start_soon(send_all, ticks_in)
                async with gone_out:
                    for _ in range(self._cleanup_concurrency):
                        tasks.start_soon(self._cleanup, gone_out.clone(), run)
                if hooks.checkpoint:
                    tasks.start_soon(_checkpoints, ticks_out, hooks.checkpoint, run)
                else:
                    ticks_out.close()
        except BaseExceptionGroup as group:
            raise (run.checkpoint_error or _single_error(group)) from None

        complete = (
            feed.exhausted and not feed.closed and not run.in_flight and run.source_error is None
        )
        report = run.report(complete=complete, resume=None if complete else run.watermark())
        if run.source_error is not None:
            raise MidRunRegistryError(str(run.source_error), report) from run.source_error
        return report

    async def _send_all(
        self,
        plan: _Plan,
        run: _Run,
        feed: _Feed,
        ticks: MemoryObjectSendStream[None],
        *,
        pages: AsyncIterator[Sequence[Recipient]],
        outbox: MemoryObjectSendStream[Sequence[Recipient]],
        gone: MemoryObjectSendStream[_Gone],
        stop: anyio.Event | None,
    ) -> None:
        """Run the sender pool over the feed while the next registry page is fetched.

        The fetch runs one page ahead, so the senders do not idle through a Scan or Query round
        trip at every page boundary; it is stopped once every sender has stopped (the stream
        ended, the deadline passed or ``stop`` was set), and so is the watch on ``stop``.
        """
        async with anyio.create_task_group() as fetching:
            fetching.start_soon(_prefetch, pages, outbox, run)
            if stop is not None:
                fetching.start_soon(_stop_when, stop, feed)
            try:
                async with feed.pages, gone, ticks, anyio.create_task_group() as senders:
                    for _ in range(self.concurrency):
                        senders.start_soon(_send_loop, plan, run, feed, gone.clone(), ticks.clone())
            finally:
                run.senders_done.set()
            fetching.cancel_scope.cancel()

    async def _cleanup(self, inbox: MemoryObjectReceiveStream[_Gone], run: _Run) -> None:
        """Batch-delete gone connections; each is finished (see :meth:`_Run.finish`) only once
        its delete was done or failed, so a watermark never passes a gone connection whose
        delete a crash could still lose: a successor resends to it, meets the 410 again and
        deletes it then.

        After the first gone id of a batch, the batch gathers for a moment (until the senders
        are done at the latest): gone ids trickle in one by one, and a delete call per id would
        cost the worker far more CPU than the deletes themselves, since every botocore call
        carries a fixed overhead that a batch of 25 pays once.
        """
        senders_done = run.senders_done
        async with inbox:
            enough = max(0, min(self._cleanup_batch - 1, self._buffer_size // 2))
            async for first in inbox:
                batch = [first]
                give_up = anyio.current_time() + self._cleanup_linger_s
                # Gather until the linger ends, a batch is waiting or the senders are done
                # (senders must never wait on a full buffer for a lingering batch). Waiting is
                # on the event, never on a receive: a cancelled receive can drop an item.
                while not senders_done.is_set() and inbox.statistics().current_buffer_used < enough:
                    left = give_up - anyio.current_time()
                    if left <= 0:
                        break
                    with anyio.move_on_after(min(left, _LINGER_STEP_S)):
                        await senders_done.wait()
                while len(batch) < self._cleanup_batch:
                    try:
                        batch.append(inbox.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                try:
                    await self._source.remove_gone([recipient for _, recipient in batch])
                except WsFanoutError:
                    run.cleanup_failed += len(batch)
                else:
                    run.cleaned_up += len(batch)
                # Counted as it finishes, so a checkpoint's counts match its watermark.
                run.gone += len(batch)
                for seq, recipient in batch:
                    run.finish(seq, recipient.connection_id)


async def _checkpoints(
    ticks: MemoryObjectReceiveStream[None],
    checkpoint: Callable[[Cursor, FanoutReport], Awaitable[None]],
    run: _Run,
) -> None:
    """Report the watermark whenever the senders say enough has finished since the last."""
    async with ticks:
        async for _ in ticks:
            try:
                await checkpoint(run.watermark(), run.report())
            except Exception as exc:  # not a cancellation: the run was stopped by something else
                run.checkpoint_error = exc  # the run re-raises it as it is (RunHooks' contract)
                raise


async def _send_loop(
    plan: _Plan,
    run: _Run,
    feed: _Feed,
    gone: MemoryObjectSendStream[_Gone],
    ticks: MemoryObjectSendStream[None],
) -> None:
    """One sender: take recipients until the feed ends, the deadline passes or the run is
    stopped (both checked before taking)."""
    deadline, excluded, progress, stop = plan.deadline, plan.excluded, plan.progress, plan.stop
    clock = anyio.current_time
    async with gone, ticks:
        while deadline is None or clock() < deadline:
            if stop is not None and stop.is_set():
                feed.stop()  # at once, not when _stop_when next runs: nothing more is taken
                return
            item = feed.take_nowait() or await feed.take()
            if item is None:
                return
            run.take(item)
            seq, recipient = item[0], item[1]
            connection_id = recipient.connection_id
            deleting = False  # a 410: the clean-up finishes it once its delete is done
            if connection_id in run.skip_pending:
                run.skip_pending.discard(connection_id)  # attempted by an earlier run
            elif connection_id in excluded:
                run.excluded += 1
            else:
                outcome = await _deliver(plan, run, recipient)
                if outcome is None:
                    continue  # abandoned at the deadline: unfinished, so resumed later
                if outcome is Outcome.GONE:
                    await gone.send((seq, recipient))
                    deleting = True
                if progress is not None:
                    progress(1)
            if not deleting:
                run.finish(seq, connection_id)
            if plan.checkpoint_every and run.finished >= run.next_checkpoint:
                run.next_checkpoint = run.finished + plan.checkpoint_every
                with contextlib.suppress(anyio.WouldBlock):
                    ticks.send_nowait(None)  # one pending checkpoint is enough


async def _deliver(plan: _Plan, run: _Run, recipient: Recipient) -> Outcome | None:
    """Send to one recipient with bounded retries; return its final outcome.

    ``None`` means abandoned: the deadline passed (or the run was stopped) before a retry. It
    counts as not attempted, so the run's resume cursor stays before it.
    """
    pace, payload, retry, post = plan.pace, plan.payload, plan.retry, plan.gateway.post
    attempts = throttled_attempts = 0
    while True:
        async with pace:
            outcome = await post(recipient.connection_id, payload, recipient.endpoint)
        if outcome is Outcome.DELIVERED:
            pace.succeeded()
            run.delivered += 1
            return outcome
        if outcome is Outcome.GONE:
            return outcome  # counted when finished, with its delete (see Fanout._cleanup)
        if outcome is Outcome.FORBIDDEN:
            url = recipient.endpoint or plan.gateway.default_endpoint
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
        stopped = plan.stop is not None and plan.stop.is_set()
        if stopped or (plan.deadline is not None and anyio.current_time() >= plan.deadline):
            return None
        run.retries += 1
        await anyio.sleep(retry.delay(attempts + throttled_attempts, plan.rng))


async def _prefetch(
    pages: AsyncIterator[Sequence[Recipient]],
    outbox: MemoryObjectSendStream[Sequence[Recipient]],
    run: _Run,
) -> None:
    """Fetch pages one ahead of the senders. A registry failure ends the stream as if it were
    the last page (the senders finish what was fetched) and is recorded for ``Fanout.run`` to
    raise with the report: cancelling the senders mid-flight would lose the watermark."""
    async with outbox, _closing(pages) as stream:
        try:
            async for page in stream:
                await outbox.send(page)
        except anyio.BrokenResourceError:
            return
        except RegistryError as exc:
            run.source_error = exc


async def _stop_when(stop: anyio.Event, feed: _Feed) -> None:
    """Close the feed once ``stop`` is set, for the senders waiting on a page (those taking
    check the event themselves), as a deadline passing at that moment would."""
    await stop.wait()
    feed.stop()


def _closing(pages: AsyncIterator[Sequence[Recipient]]) -> Any:
    """Close an async generator even when abandoned mid-way (a deadline), so no finalizer warns."""
    aclose = getattr(pages, "aclose", None)
    return aclosing(pages) if aclose else contextlib.nullcontext(pages)


def _loop_deadline(deadline: float | None) -> float | None:
    """Convert a :func:`time.monotonic` deadline to the event loop's clock (once per run)."""
    if deadline is None:
        return None
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
