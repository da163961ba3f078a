"""Pool-wide pacing: full-jitter backoff per request, and an AIMD limiter shared by all senders.

A 429 from API Gateway means the *account* is over its request rate, so backing off the one
request that saw it is not enough: every sender in the pool must slow down. :class:`Throttle`
halves the number of requests in flight on a throttle (at most once per cool-down, so a burst of
429s from requests already in flight counts once), pauses the pool briefly, and adds capacity back
one slot at a time as sends succeed: additive increase, multiplicative decrease, as TCP does.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import anyio

__all__ = ["LeftOverError", "RetryPolicy", "Throttle", "is_testing", "set_testing"]

_T = TypeVar("_T")
_RNG = random.Random()  # for callers that bring none: jitter needs no reproducibility


class LeftOverError(Exception):
    """Raised by :meth:`RetryPolicy.until_done` when items are still pending after the bound.

    ``left`` holds what the last attempt sent back unprocessed, so the caller can say how many
    and map the failure to its own exception (a registry's or a queue's).
    """

    def __init__(self, what: str, left: Sequence[object], attempts: int) -> None:
        super().__init__(f"{what}: {len(left)} left unprocessed after {attempts} attempts")
        self.what = what
        self.left = left
        self.attempts = attempts


@dataclass(slots=True)
class _Config:
    """Process-wide pacing switches (one object, reached only through the functions below)."""

    testing: bool = False


_CONFIG = _Config()


class _Restore:
    """What :func:`set_testing` returns: the switch is already set; ``with`` restores it."""

    def __init__(self, previous: bool) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _CONFIG.testing = self._previous


def set_testing(testing: bool = True) -> _Restore:
    """Turn backoff off (``True``) or back on, for every :class:`RetryPolicy` in the process.

    In test mode every retry delay is zero, so a test of a retry path waits for nothing; the
    attempt bounds still hold. It takes effect at once, and works as a context manager that
    restores the previous mode on exit (as stamina's ``set_testing``)::

        with set_testing():
            ...
    """
    previous, _CONFIG.testing = _CONFIG.testing, testing
    return _Restore(previous)


def is_testing() -> bool:
    """Whether :func:`set_testing` has turned backoff off."""
    return _CONFIG.testing


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded attempts with exponential backoff and full jitter.

    Throttled attempts have their own, larger budget: a 429 says "slower", not "this connection
    is broken", and the pool-wide :class:`Throttle` already slows everyone down, so giving up
    after a few 429s would drop messages that a little patience delivers.
    """

    max_attempts: int = 5
    max_throttled_attempts: int = 20
    base_s: float = 0.05
    max_s: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after attempt ``attempt`` (1-based): U[0, min(cap, base·2ⁿ⁻¹)];
        zero under :func:`set_testing`."""
        if _CONFIG.testing:
            return 0.0
        return rng.uniform(0.0, min(self.max_s, self.base_s * 2 ** (attempt - 1)))

    async def until_done(
        self,
        send: Callable[[Sequence[_T]], Awaitable[Sequence[_T]]],
        pending: Sequence[_T],
        *,
        what: str,
        rng: random.Random | None = None,
    ) -> None:
        """Call ``send(pending)`` until it sends back nothing, at most ``max_attempts`` times.

        For the batch APIs that accept a call yet leave part of it undone (BatchWriteItem's
        ``UnprocessedItems``, BatchGetItem's ``UnprocessedKeys``, SendMessageBatch's
        ``Failed``): ``send`` sends what it is given and returns what is left, and only that is
        sent again, after :meth:`delay` (so jittered, and zero under :func:`set_testing`).
        Nothing is sent when ``pending`` is empty. An exception from ``send`` propagates at
        once: a refused call is not a partly done one.

        :raises LeftOverError: something was still left after ``max_attempts`` attempts; it
            names ``what`` and holds what was left.
        """
        for attempt in range(1, self.max_attempts + 1):
            if not pending:
                return
            if attempt > 1:
                await anyio.sleep(self.delay(attempt - 1, rng or _RNG))
            pending = await send(pending)
        if pending:
            raise LeftOverError(what, pending, self.max_attempts)

    async def retrying(
        self,
        call: Callable[[], Awaitable[_T]],
        *,
        retry_if: Callable[[BaseException], bool],
        rng: random.Random | None = None,
    ) -> _T:
        """``await call()``, again after :meth:`delay` while it raises what ``retry_if``
        accepts, at most ``max_attempts`` times in all.

        For a call refused as a whole, but only for now (DynamoDB's throttling): the sibling of
        :meth:`until_done`, which retries what a call accepted yet left undone, and with the same
        jittered pauses (zero under :func:`set_testing`). An exception ``retry_if`` refuses
        propagates at once.

        :raises Exception: what the last attempt raised, once ``max_attempts`` were refused.
        """
        for attempt in range(1, self.max_attempts):
            try:
                return await call()
            except Exception as exc:  # retry_if decides; whatever it refuses is re-raised
                if not retry_if(exc):
                    raise
            await anyio.sleep(self.delay(attempt, rng or _RNG))
        return await call()


class Throttle:
    """Caps requests in flight; shrinks on 429s and grows back on successes.

    Use ``async with throttle:`` around each request.
    """

    def __init__(
        self,
        concurrency: int,
        *,
        floor: int = 1,
        pause_s: float = 0.05,
        max_pause_s: float = 2.0,
    ) -> None:
        self.ceiling = concurrency
        self._floor = max(1, min(floor, concurrency))
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._pause_s = pause_s
        self._max_pause_s = max_pause_s
        self._resume_at = 0.0
        self._last_cut = -1.0e9
        self._cuts_in_a_row = 0
        self._successes = 0

    @property
    def limit(self) -> int:
        """Requests currently allowed in flight."""
        return int(self._limiter.total_tokens)

    async def __aenter__(self) -> None:
        if self._resume_at:
            wait = self._resume_at - anyio.current_time()
            if wait > 0:
                await anyio.sleep(wait)
        # A free slot is taken without a trip through the event loop (``acquire`` always makes
        # one, and at zero latency that trip is a visible share of a delivery's CPU); the
        # request that follows yields anyway.
        try:
            self._limiter.acquire_nowait()
        except anyio.WouldBlock:
            await self._limiter.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter.release()

    def throttled(self) -> None:
        """A request was answered 429: cut the pool, at most once per cool-down window."""
        now = anyio.current_time()
        cooldown = self._pause_s * 2**self._cuts_in_a_row
        if now - self._last_cut < cooldown:
            return
        self._cuts_in_a_row = min(self._cuts_in_a_row + 1, 6)
        self._last_cut = now
        self._successes = 0
        self._limiter.total_tokens = max(self._floor, self.limit // 2)
        self._resume_at = now + min(self._max_pause_s, cooldown)

    def succeeded(self) -> None:
        """A request got through: after a window of successes, allow one more in flight."""
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self._cuts_in_a_row = 0
            if self.limit < self.ceiling:
                self._limiter.total_tokens = self.limit + 1
