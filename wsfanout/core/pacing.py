"""Pool-wide pacing: full-jitter backoff per request, and an AIMD limiter shared by all senders.

A 429 from API Gateway means the *account* is over its request rate, so backing off the one
request that saw it is not enough: every sender in the pool must slow down. :class:`Throttle`
halves the number of requests in flight on a throttle (at most once per cool-down, so a burst of
429s from requests already in flight counts once), pauses the pool briefly, and adds capacity back
one slot at a time as sends succeed: additive increase, multiplicative decrease, as TCP does.

:class:`LearntRate` is the alternative for pools that share one account quota with other pools
and no coordinator (several workers of one job): it paces request starts at a rate learnt from
the pool's own accept rate whenever a 429 says the account's bucket is empty. :func:`pacer`
builds either one by name.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol, TypeVar, get_args

import anyio

__all__ = [
    "PACINGS",
    "LearntRate",
    "LeftOverError",
    "Pacer",
    "Pacing",
    "RetryPolicy",
    "Throttle",
    "is_testing",
    "pacer",
    "set_testing",
]

_T = TypeVar("_T")
# When the sender (each runs in a task of its own, so a context of its own) last took a start
# from a LearntRate: a 429 to a request whose start was decided before the last cut says
# nothing new.
_RESERVED_AT: ContextVar[float | None] = ContextVar("wsfanout_reserved_at", default=None)
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


class _Slots:
    """Up to ``concurrency`` requests in flight: what both pacers hold, and how a slot is taken
    and given back (``async with pacer:`` around each request)."""

    def __init__(self, concurrency: int) -> None:
        self.ceiling = concurrency
        self._limiter = anyio.CapacityLimiter(concurrency)

    async def _take(self) -> None:
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


class Throttle(_Slots):
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
        super().__init__(concurrency)
        self._floor = max(1, min(floor, concurrency))
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
        await self._take()

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


class LearntRate(_Slots):
    """Caps requests in flight at ``concurrency`` and paces their starts at a rate learnt from
    429s: a token bucket in the sender whose rate follows an AIMD of its own.

    Why not :class:`Throttle` when several pools share one account quota: halving concurrency
    halves a pool's rate, so S pools cut together fall far below the quota, and the next probe
    overshoots it again. Here each pool measures what the account actually let through: while
    the account's bucket is empty every pool's accept rate is its share of the quota, so cutting
    to ``decrease`` times that share puts the sum of all pools just under the quota, with no
    coordinator. Then the rate grows back by the same number of requests per second in every
    pool (``growth`` of what the pool could send unpaced: its concurrency over its round trip,
    alike in every worker of one job), faster the longer no 429 came. An equal step for all and
    a cut in proportion is what makes AIMD fair (Chiu and Jain): a pool that started late, or
    was cut hard by a 429 that was not about the rate, climbs back to its share while the
    others give way, rather than staying small while a greedy pool keeps the account's bucket
    empty.

    - Until the first 429 nothing is paced (the concurrency cap alone rules, as with
      :class:`Throttle`).
    - A 429 cuts at most once per ``cooldown_s`` (shorter, down to a tenth, after a rate
      measured over less than that), and never for a request that started before
      the last cut (each sender task remembers when it started, so the 429s of requests
      already under way at the old rate count once, however long the round trip): the rate
      becomes ``decrease`` x the successes of the last ``window_s`` (or since the last cut, if
      later) per second; measured on fewer successes than the concurrency, never below
      ``floor`` x what it was (a burst of 429s after a stall, not the rate, must not flatten
      it); with no success in the window, half the rate of starts so far. Nor ever below
      ``min_share`` x the first rate learnt over at least half a window, which bounds the fall
      when 429s keep coming whatever the rate (injected faults, one client's full buffer rather
      than the account).
    - After a cut the rate grows by ``growth`` x the pool's unpaced rate per second, that
      increment itself growing by half of it for every ``probe_s`` without a cut (so the rate
      finds a quota others have stopped using within seconds).
    - Each request takes the next start from the bucket, one interval of the current rate after
      the last (up to ``credit`` intervals lost to a late wake-up are made up), and sleeps until
      it. A cut re-times the starts already promised at the old rate: their senders wake, see
      the cut and take a new start, so no request starts at the old rate after a cut. (Not one
      sender at a time through a gate: a busy event loop hands a gate on once per iteration,
      which caps the rate below the quota whenever the loop is slow.)

    ``clock`` defaults to the event loop's (:func:`anyio.current_time`); tests pass their own.
    Use ``async with pacer:`` around each request.

    :raises ValueError: ``concurrency`` below 1, or a parameter out of its range.
    """

    def __init__(
        self,
        concurrency: int,
        *,
        decrease: float = 0.95,
        growth: float = 0.03,
        probe_s: float = 1.0,
        window_s: float = 0.25,
        cooldown_s: float = 0.05,
        floor: float = 0.7,
        min_share: float = 1 / 16,
        credit: float = 2.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 0.0 < decrease < 1.0 or not 0.0 < floor <= 1.0 or not 0.0 < min_share <= 1.0:
            raise ValueError("decrease must be in (0, 1), floor and min_share in (0, 1]")
        if growth < 0.0 or cooldown_s < 0.0 or credit < 0.0:
            raise ValueError("growth, cooldown_s and credit must not be negative")
        if window_s <= 0.0 or probe_s <= 0.0:
            raise ValueError("window_s and probe_s must be positive")
        super().__init__(concurrency)
        self._decrease = decrease
        self._growth = growth
        self._probe_s = probe_s
        self._window_s = window_s
        self._cooldown_s = cooldown_s
        self._cooldown = cooldown_s  # the one after the last cut: shorter after a short window
        self._floor = floor
        self._min_share = min_share
        self._min_rate = 0.0  # set by the first cut measured over half a window or more
        self._credit = credit
        self._clock = clock or anyio.current_time
        self._cuts = 0  # how many so far: a start taken before a cut is taken again
        self._accepted: deque[float] = deque()  # success times within the window
        self._starts = 0  # since the first, for a cut before any success
        self._rtt = 0.0  # a moving average of the round trip; 0: none measured yet
        self._base: float | None = None  # the rate set at the last cut; None: not paced
        self._step = 0.0  # requests/s the rate grows by per second after a cut
        self._cut_at = -1.0e9
        self._started: float | None = None  # the first start: no window before it
        self._next = 0.0  # when the next start may go

    @property
    def limit(self) -> int:
        """Requests allowed in flight (constant: the rate, not the concurrency, is cut)."""
        return self.ceiling

    def rate(self) -> float | None:
        """The current pace in requests per second; ``None`` before the first 429."""
        if self._base is None:
            return None
        since = max(0.0, self._clock() - self._cut_at)
        return self._base + self._step * since * (1.0 + 0.5 * since / self._probe_s)

    def accept_rate(self) -> float:
        """Successes per second over the last ``window_s`` (or since the last cut, if later)."""
        now = self._clock()
        self._forget(now)
        started = now if self._started is None else self._started
        span = min(self._window_s, now - max(self._cut_at, started))
        return len(self._accepted) / span if span > 0 else 0.0

    def unpaced_rate(self) -> float:
        """What the pool sends with no pacing: its concurrency over its round trip (0: no round
        trip measured yet)."""
        return self.ceiling / self._rtt if self._rtt > 0 else 0.0

    def _forget(self, now: float) -> None:
        accepted, since = self._accepted, max(now - self._window_s, self._cut_at)
        while accepted and accepted[0] <= since:
            accepted.popleft()

    def reserve(self) -> float:
        """Take the next start from the bucket; the seconds to wait for it (0: go now).

        The sender's context remembers the start (see :meth:`throttled`).
        """
        rate = self.rate()
        now = self._clock()
        if self._started is None:
            self._started = now
        self._starts += 1
        start = now
        if rate is not None:
            start = max(self._next, now)
            self._next = max(self._next, start - self._credit / rate) + 1.0 / rate
        _RESERVED_AT.set(start)
        return start - now

    async def __aenter__(self) -> None:
        await self._take()
        try:
            while True:
                cuts = self._cuts
                wait = self.reserve()
                if wait <= 0:
                    return
                await anyio.sleep(wait)
                if cuts == self._cuts:
                    _RESERVED_AT.set(self._clock())  # when it really started
                    return
        except BaseException:
            self._limiter.release()  # cancelled while waiting: the slot taken is given back
            raise

    def _answered(self, now: float) -> None:
        if self._started is None:  # answers with no start seen (tests): the window opens here
            self._started = now
        started = _RESERVED_AT.get()
        if started is not None and now >= started:
            rtt = now - started
            self._rtt = rtt if not self._rtt else self._rtt + (rtt - self._rtt) / 16

    def throttled(self) -> None:
        """A request was answered 429: pace at ``decrease`` x the accept rate, at most once per
        cool-down, and only for a request started after the last cut."""
        now = self._clock()
        self._answered(now)
        started = _RESERVED_AT.get()
        if started is not None and started < self._cut_at:
            return  # its start was decided at the old rate, already cut for
        if now - self._cut_at < self._cooldown:
            return
        span = now - max(self._cut_at, now if self._started is None else self._started)
        # A rate measured over a moment (the first 429 of a run comes once the account's burst
        # is spent, maybe milliseconds in) is a guess: it may be corrected as soon as it was
        # measured over, not a whole cool-down later.
        self._cooldown = min(self._cooldown_s, max(span, self._cooldown_s / 10))
        accepted = self.accept_rate()
        current = self.rate()
        if accepted > 0:
            rate = self._decrease * accepted
        else:  # no success in the window: half the rate of starts so far
            span = now - (now if self._started is None else self._started)
            rate = self._starts / span / 2 if span > 0 else float(self.ceiling)
            rate = rate if current is None else min(rate, current / 2)
        if current is not None and len(self._accepted) < self.ceiling:
            rate = max(rate, self._floor * current)  # too few successes to trust the fall
        if not self._min_rate and accepted > 0 and span >= self._window_s / 2:
            self._min_rate = rate * self._min_share
        rate = max(rate, self._min_rate)
        self._base = max(rate, 1.0 / self._window_s)  # at least one start per window
        self._step = self._growth * max(self.unpaced_rate(), self._base)
        self._cut_at = now
        self._cuts += 1
        self._accepted.clear()
        self._next = now + 1.0 / self._base  # the starts promised before are taken again

    def succeeded(self) -> None:
        """A request got through: counted in the accept rate."""
        now = self._clock()
        self._answered(now)
        self._accepted.append(now)
        if len(self._accepted) > 64 and self._accepted[0] <= now - self._window_s:
            self._forget(now)


class Pacer(Protocol):
    """What the engine's senders share: ``async with`` around each request, and the outcome."""

    @property
    def limit(self) -> int:
        """Requests currently allowed in flight."""
        ...

    async def __aenter__(self) -> None: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def throttled(self) -> None:
        """A request was answered 429."""
        ...

    def succeeded(self) -> None:
        """A request was delivered."""
        ...


Pacing = Literal["aimd", "learnt"]
PACINGS: tuple[Pacing, ...] = get_args(Pacing)
"""The pacings :func:`pacer` builds: ``aimd`` (:class:`Throttle`, the default) and ``learnt``
(:class:`LearntRate`)."""


def pacer(pacing: Pacing, concurrency: int) -> Pacer:
    """A fresh pacer of the kind ``pacing`` names, for one run of ``concurrency`` senders.

    :raises ValueError: an unknown ``pacing``.
    """
    if pacing == "aimd":
        return Throttle(concurrency, floor=max(1, concurrency // 16))
    if pacing == "learnt":
        return LearntRate(concurrency)
    raise ValueError(f"unknown pacing {pacing!r}; one of {', '.join(PACINGS)}")
