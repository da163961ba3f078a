"""The learnt-rate pacer: its arithmetic on a clock the test moves, then pools sharing a quota.

The last tests are discrete-event simulations (no sleeps, no real time): S pools of senders
share one token bucket as S workers share an account's quota, with no coordinator, and the sum
of what they deliver must settle just under the bucket's rate with few 429s.
Then one run of the engine itself against a scripted gateway that throttles as the account does.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
from collections.abc import Iterator

import anyio
import pytest

from wsfanout.core import pacing
from wsfanout.core.fanout import Fanout
from wsfanout.core.models import AllTarget
from wsfanout.core.outcomes import Outcome
from wsfanout.core.pacing import PACINGS, LearntRate, Throttle, pacer
from wsfanout.testing import MemorySource, ScriptedGateway, set_testing

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _a_fresh_sender() -> Iterator[None]:
    """Each test starts as a sender that took no start yet: the pacer keeps a sender's start in
    a context variable, and a synchronous test's calls all run in one context."""
    token = pacing._RESERVED_AT.set(None)
    yield
    pacing._RESERVED_AT.reset(token)


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def accept(pace: LearntRate, clock: Clock, count: int, over_s: float) -> None:
    """``count`` successes spread evenly over the next ``over_s`` seconds."""
    step = over_s / count
    for _ in range(count):
        clock.now += step
        pace.succeeded()


def test_nothing_is_paced_before_the_first_429() -> None:
    clock = Clock()
    pace = LearntRate(8, clock=clock)
    accept(pace, clock, 500, 1.0)
    assert pace.rate() is None
    assert [pace.reserve() for _ in range(100)] == [0.0] * 100
    assert pace.limit == pace.ceiling == 8


def test_a_429_paces_at_a_share_of_the_accept_rate_of_the_window() -> None:
    clock = Clock()
    pace = LearntRate(8, window_s=0.25, decrease=0.9, clock=clock)
    accept(pace, clock, 100, 1.0)  # 100/s for a second, then 400/s for the last quarter
    accept(pace, clock, 100, 0.25)
    assert pace.accept_rate() == pytest.approx(400, rel=0.02)
    pace.throttled()
    assert pace.rate() == pytest.approx(0.9 * 400, rel=0.02)


def round_trip(pace: LearntRate, clock: Clock, rtt: float) -> None:
    """One request started now and answered ``rtt`` later, in a sender context of its own."""
    sender = contextvars.copy_context()
    sender.run(pace.reserve)
    clock.now += rtt
    sender.run(pace.succeeded)


def test_the_rate_grows_by_the_same_step_whatever_it_was_cut_to() -> None:
    """Additive increase: the step is a share of what the pool sends unpaced (concurrency over
    round trip), so two pools of one job cut to different rates grow back alike."""
    clock = Clock()
    pace = LearntRate(8, growth=0.05, probe_s=1.0, clock=clock)
    for _ in range(4):
        round_trip(pace, clock, 0.02)  # 8 senders / 20 ms: 400/s unpaced
    assert pace.unpaced_rate() == pytest.approx(400)
    accept(pace, clock, 25, 0.25)
    pace.throttled()
    base = pace.rate()
    assert base is not None
    step = 0.05 * 400  # requests/s per second
    clock.now += 0.5
    assert pace.rate() == pytest.approx(base + step * 0.5 * 1.25)
    clock.now += 1.5  # two seconds without a cut: the step has doubled
    assert pace.rate() == pytest.approx(base + step * 2.0 * 2.0)


def test_429s_within_the_cool_down_count_once() -> None:
    clock = Clock()
    pace = LearntRate(8, cooldown_s=0.1, clock=clock)
    accept(pace, clock, 100, 0.25)
    pace.throttled()
    first = pace.rate()
    assert first is not None
    clock.now += 0.05
    pace.throttled()
    grown = pace.rate()
    assert grown is not None
    assert grown > first  # grown, not cut
    clock.now += 0.1
    accept(pace, clock, 10, 0.05)
    pace.throttled()  # past the cool-down: cut
    cut = pace.rate()
    assert cut is not None
    assert cut < first


def test_a_cut_never_falls_below_the_floor_share_of_the_rate() -> None:
    """A burst of 429s with few successes (a stall, not the rate) cuts to ``floor`` x at most."""
    clock = Clock()
    pace = LearntRate(8, floor=0.7, growth=0.0, cooldown_s=0.0, clock=clock)
    accept(pace, clock, 100, 0.25)
    pace.throttled()
    assert pace.rate() == pytest.approx(0.95 * 400, rel=0.02)
    clock.now += 0.25
    accept(pace, clock, 5, 0.01)  # a handful of successes in the window: 20/s
    pace.throttled()
    assert pace.rate() == pytest.approx(0.7 * 0.95 * 400, rel=0.02)
    clock.now += 0.25
    pace.throttled()  # none at all: halved, and still the floor holds
    assert pace.rate() == pytest.approx(0.7 * 0.7 * 0.95 * 400, rel=0.02)


def test_a_429_before_any_success_paces_at_half_the_rate_of_starts() -> None:
    clock = Clock()
    pace = LearntRate(8, clock=clock)
    senders = [contextvars.copy_context() for _ in range(8)]
    for sender in senders:
        sender.run(pace.reserve)
    clock.now += 0.04  # eight starts in 40 ms (200/s), every one answered 429
    for sender in senders:
        sender.run(pace.throttled)  # the first cuts; the others started before it
    assert pace.rate() == pytest.approx(100, rel=0.02)


def test_starts_are_spaced_at_the_rate_and_the_first_waits_one_interval() -> None:
    clock = Clock()
    pace = LearntRate(8, growth=0.0, decrease=0.5, clock=clock)
    accept(pace, clock, 100, 0.25)  # 400/s: paced at 200/s
    pace.throttled()
    waits = [pace.reserve() for _ in range(4)]
    assert waits == pytest.approx([0.005, 0.010, 0.015, 0.020], rel=0.02)
    clock.now += 1.0  # idle: a credit of two intervals, no more, is made up at once
    assert [pace.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert pace.reserve() == pytest.approx(0.005, rel=0.02)


def test_a_429_to_a_start_taken_before_the_last_cut_is_already_accounted_for() -> None:
    """However long the round trip: the sender's own context says when it started."""
    clock = Clock()
    pace = LearntRate(8, cooldown_s=0.0, growth=0.0, clock=clock)
    accept(pace, clock, 100, 0.25)
    early = contextvars.copy_context()
    early.run(pace.reserve)  # started before the cut, answered 429 long after it
    clock.now += 0.001
    pace.throttled()
    cut = pace.rate()
    assert cut is not None
    clock.now += 1.0
    early.run(pace.throttled)
    assert pace.rate() == cut  # not cut again
    late = contextvars.copy_context()
    late.run(pace.reserve)
    clock.now += 0.01  # the start it took waits one interval
    accept(pace, clock, 10, 0.25)
    late.run(pace.throttled)
    assert pace.rate() == pytest.approx(0.95 * 40, rel=0.02)  # ten successes: no floor


def test_429s_whatever_the_rate_never_take_it_below_its_min_share() -> None:
    clock = Clock()
    pace = LearntRate(8, floor=0.5, min_share=0.25, cooldown_s=0.0, clock=clock)
    accept(pace, clock, 100, 0.25)
    pace.throttled()  # learnt over a whole window: 380/s, and never below 95/s
    for _ in range(10):
        clock.now += 0.25
        pace.throttled()
    assert pace.rate() == pytest.approx(0.25 * 0.95 * 400, rel=0.02)


async def test_a_cut_re_times_the_starts_promised_before_it() -> None:
    """A sender asleep until a start taken at the old rate takes a new one after a cut."""
    clock = Clock(anyio.current_time())
    pace = LearntRate(4, growth=0.0, decrease=0.5, cooldown_s=0.0, clock=clock)
    accept(pace, clock, 10, 0.25)
    pace.throttled()  # 40/s accepted: paced at 20/s, the next start 50 ms away
    entered = anyio.Event()

    async def sender() -> None:
        async with pace:
            entered.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            pace.reserve()  # another sender's start: this one's is 100 ms away
            tasks.start_soon(sender)
            await anyio.wait_all_tasks_blocked()
            assert not entered.is_set()
            accept(pace, clock, 1, 0.001)
            pace.throttled()  # a cut while it sleeps: its start is taken again
            cut_at = clock.now
            clock.now = anyio.current_time() + 3600.0  # the clock moves on: it may go
    assert entered.is_set()
    assert pace._cuts == 2
    assert pace._next > cut_at


async def test_a_sender_cancelled_while_waiting_gives_its_slot_back() -> None:
    pace = LearntRate(2, growth=0.0, decrease=0.5)
    accept(pace, Clock(anyio.current_time()), 10, 0.25)
    pace.throttled()
    pace._next = anyio.current_time() + 3600.0  # the next start an hour away
    with anyio.move_on_after(0.05):
        async with pace:
            pytest.fail("started an hour early")
    assert pace._limiter.borrowed_tokens == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"decrease": 1.0},
        {"decrease": 0.0},
        {"floor": 0.0},
        {"min_share": 0.0},
        {"growth": -1.0},
        {"window_s": 0.0},
        {"probe_s": 0.0},
        {"credit": -1.0},
    ],
)
def test_parameters_out_of_range_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        LearntRate(8, **bad)  # type: ignore[arg-type]  # mypy cannot match keys to parameters


def test_pacer_builds_each_kind_by_name() -> None:
    assert PACINGS == ("aimd", "learnt")
    assert isinstance(pacer("aimd", 32), Throttle)
    assert isinstance(pacer("learnt", 32), LearntRate)
    with pytest.raises(ValueError, match="unknown pacing 'fast'"):
        pacer("fast", 32)  # type: ignore[arg-type]  # a bad name on purpose
    with pytest.raises(ValueError, match="unknown pacing"):
        Fanout(MemorySource([]), ScriptedGateway(), pacing="fast")  # type: ignore[arg-type]


# -- pools sharing one quota, simulated --------------------------------------------------------


class Bucket:
    """The account's token bucket (rate per second, burst), on the simulation's clock."""

    def __init__(self, clock: Clock, rate: float, burst: float) -> None:
        self.clock, self.rate, self.burst = clock, rate, burst
        self.tokens, self.at = burst, clock.now

    def take(self) -> bool:
        now = self.clock.now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def simulate(
    pools: int,
    *,
    senders: int = 32,
    latency_s: float = 0.02,
    seconds: float = 20.0,
    late_s: float = 0.0,
) -> tuple[float, float, list[int]]:
    """``pools`` pools of ``senders`` learning their rates against one bucket of 1,000/s (burst
    100), every answer ``latency_s`` after its request, pool ``i`` starting ``i * late_s`` after
    the first. A sender takes a start and sleeps until it; if the pool cut its rate meanwhile,
    it takes a new one, as ``async with`` does. Over the last three quarters of the run: the
    delivered rate as a share of the bucket's, the share of requests answered 429, and what
    each pool delivered."""
    clock = Clock(0.0)
    bucket = Bucket(clock, 1000.0, 100.0)
    paces = [LearntRate(senders, clock=clock) for _ in range(pools)]
    order = itertools.count()
    # (time, tie, pool, what, the cuts when the start was taken, the sender's context: each
    # sender is a task with its own)
    events: list[tuple[float, int, int, str, int, contextvars.Context]] = []

    def take_start(pool: int, at: float, context: contextvars.Context) -> None:
        cuts = paces[pool]._cuts
        wait = context.run(paces[pool].reserve)
        heapq.heappush(events, (at + wait, next(order), pool, "wake", cuts, context))

    for pool in range(pools):
        for _ in range(senders):
            ready = (pool * late_s, next(order), pool, "ready", 0, contextvars.copy_context())
            heapq.heappush(events, ready)
    delivered = requests = throttled = 0
    per_pool = [0] * pools
    steady = seconds / 4
    while events:
        at, _, pool, what, cuts, context = heapq.heappop(events)
        clock.now = at
        if at > seconds:
            break
        pace = paces[pool]
        if what == "ready":
            take_start(pool, at, context)
        elif what == "wake":
            if cuts != pace._cuts:  # cut while it slept: a new start at the new rate
                take_start(pool, at, context)
                continue
            answer = "ok" if bucket.take() else "429"
            heapq.heappush(events, (at + latency_s, next(order), pool, answer, 0, context))
        else:
            requests += at >= steady
            if what == "ok":
                context.run(pace.succeeded)
                delivered += at >= steady
                per_pool[pool] += at >= steady
            else:
                context.run(pace.throttled)
                throttled += at >= steady
            take_start(pool, at, context)
    rate = delivered / (seconds - steady) / 1000.0
    return rate, throttled / max(1, requests), per_pool


@pytest.mark.parametrize(
    ("pools", "latency_s"), [(1, 0.02), (2, 0.02), (4, 0.02), (4, 0.005), (4, 0.1)], ids=str
)
def test_pools_learning_the_rate_share_a_quota_closely_with_few_429s(
    pools: int, latency_s: float
) -> None:
    """Round trips from 5 ms to longer than the cool-down (a loaded host) alike."""
    rate, share, _ = simulate(pools, latency_s=latency_s)
    assert rate >= 0.95
    assert share <= 0.05


def test_a_pool_that_starts_late_still_gets_its_share() -> None:
    """The early pool has the account's bucket empty by the time the late one sends: the late
    one's first cuts leave it a fraction of the early one's rate, and only an equal increase for
    both (not one in proportion to each rate) brings the two back together."""
    rate, share, per_pool = simulate(2, late_s=2.0, seconds=30.0)
    assert rate >= 0.95
    assert share <= 0.05
    assert min(per_pool) >= 0.4 * sum(per_pool)


async def test_the_engine_with_a_learnt_rate_reaches_everyone_once_under_a_quota() -> None:
    """Two engines (two workers) against one scripted account bucket on the real clock: every
    connection gets the frame exactly once, and the 429s were retried."""
    ids = [f"c{n:04d}=" for n in range(1200)]
    bucket = Bucket(Clock(), 2000.0, 20.0)

    def answer(connection_id: str, data: bytes) -> Outcome:
        bucket.clock.now = anyio.current_time()
        return Outcome.DELIVERED if bucket.take() else Outcome.THROTTLED

    gateway = ScriptedGateway(answer)
    reports = []

    async def worker(segment: int) -> None:
        fanout = Fanout(MemorySource(ids, page_size=100), gateway, concurrency=16, pacing="learnt")
        reports.append(
            await fanout.run(AllTarget(all=True), b"hi", segment=segment, total_segments=2)
        )

    with set_testing(), anyio.fail_after(20):
        async with anyio.create_task_group() as workers:
            for segment in range(2):
                workers.start_soon(worker, segment)
    delivered = [p.connection_id for p in gateway.posts]
    assert sum(r.delivered for r in reports) == len(ids)
    assert all(r.failed == 0 for r in reports)
    assert set(delivered) == set(ids)
    assert sum(r.throttled for r in reports) == len(gateway.posts) - len(ids)
