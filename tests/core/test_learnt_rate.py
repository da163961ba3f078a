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

import anyio
import pytest

from wsfanout.core.fanout import Fanout
from wsfanout.core.models import AllTarget
from wsfanout.core.outcomes import Outcome
from wsfanout.core.pacing import PACINGS, LearntRate, Throttle, pacer
from wsfanout.testing import MemorySource, ScriptedGateway, set_testing

pytestmark = pytest.mark.timeout(30)


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


def test_429s_within_the_cool_down_count_once() -> None:
    clock = Clock()
    pace = LearntRate(8, cooldown_s=0.1, clock=clock)
    accept(pace, clock, 100, 0.25)
    pace.throttled()
    first = pace.rate()
    assert first is not None
    clock.now += 0.05
    pace.throttled()
    assert pace.rate() == pytest.approx(first * (1 + 0.25 * 0.05))  # grown, not cut


def test_the_rate_grows_by_its_growth_per_second_until_the_next_429() -> None:
    clock = Clock()
    pace = LearntRate(8, growth=0.25, clock=clock)
    accept(pace, clock, 100, 0.25)
    pace.throttled()
    base = pace.rate()
    assert base is not None
    clock.now += 2.0
    assert pace.rate() == pytest.approx(base * 1.5)
    accept(pace, clock, 50, 0.25)  # 200/s since: the next cut follows the accept rate
    pace.throttled()
    assert pace.rate() == pytest.approx(0.95 * 200, rel=0.02)


def test_starts_are_spaced_at_the_rate_and_the_first_waits_one_interval() -> None:
    clock = Clock()
    pace = LearntRate(8, growth=0.0, decrease=0.5, clock=clock)
    accept(pace, clock, 100, 0.25)  # 400/s: paced at 200/s
    pace.throttled()
    waits = [pace.reserve() for _ in range(4)]
    assert waits == pytest.approx([0.005, 0.010, 0.015, 0.020], rel=0.02)
    clock.now += 1.0  # idle: no credit piles up beyond the next start
    assert pace.reserve() == 0.0
    assert pace.reserve() == pytest.approx(0.005, rel=0.02)


def test_without_successes_a_429_halves_the_rate_and_the_floor_holds() -> None:
    clock = Clock()
    pace = LearntRate(8, floor=0.25, cooldown_s=0.1, window_s=0.25, clock=clock)
    pace.throttled()  # a 429 before any success: start at one request per second per slot
    assert pace.rate() == pytest.approx(8.0)
    accept(pace, clock, 25, 0.25)  # 100/s over a window: paced at 95/s
    pace.throttled()
    assert pace.rate() == pytest.approx(0.95 * 100, rel=0.02)
    rates = []
    for _ in range(5):  # then 429s and no successes: halved each time, down to the floor
        clock.now += 0.2
        pace.throttled()
        rates.append(pace.rate())
    assert rates[0] == pytest.approx(0.95 * 100 * (1 + 0.25 * 0.2) / 2, rel=0.02)
    assert rates[-1] == pytest.approx(0.25 * 0.95 * 100, rel=0.02)  # a quarter, not less


def test_a_429_to_a_start_taken_before_the_last_cut_is_already_accounted_for() -> None:
    """However long the round trip: the sender's own context says when it took its start."""
    clock = Clock()
    pace = LearntRate(8, cooldown_s=0.0, clock=clock)
    accept(pace, clock, 100, 0.25)
    early = contextvars.copy_context()
    early.run(pace.reserve)  # taken before the cut, answered 429 long after it
    clock.now += 0.001
    pace.throttled()
    cut = pace.rate()
    assert cut is not None
    clock.now += 1.0
    early.run(pace.throttled)
    assert pace.rate() == pytest.approx(cut * 1.25)  # grown, not cut again
    late = contextvars.copy_context()
    late.run(pace.reserve)
    accept(pace, clock, 10, 0.25)
    late.run(pace.throttled)
    assert pace.rate() == pytest.approx(0.95 * 40, rel=0.02)


@pytest.mark.parametrize(
    "bad",
    [{"decrease": 1.0}, {"decrease": 0.0}, {"floor": 0.0}, {"growth": -1.0}, {"window_s": 0.0}],
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
    pools: int, *, senders: int = 32, latency_s: float = 0.02, seconds: float = 20.0
) -> tuple[float, float]:
    """``pools`` pools of ``senders`` learning their rates against one bucket of 1,000/s (burst
    100), every answer ``latency_s`` after its request: the delivered rate over the last three
    quarters of the run, as a share of the bucket's, and the share of requests answered 429."""
    clock = Clock(0.0)
    bucket = Bucket(clock, 1000.0, 100.0)
    paces = [LearntRate(senders, clock=clock) for _ in range(pools)]
    order = itertools.count()
    # (time, tie, pool, what, the sender's context: each sender is a task with its own)
    events: list[tuple[float, int, int, str, contextvars.Context]] = []
    for pool in range(pools):
        for _ in range(senders):
            ready = (0.0, next(order), pool, "ready", contextvars.copy_context())
            heapq.heappush(events, ready)
    delivered = requests = throttled = 0
    steady = seconds / 4
    while events:
        at, _, pool, what, context = heapq.heappop(events)
        clock.now = at
        if at > seconds:
            break
        pace = paces[pool]
        if what == "ready":  # a sender asks the pacer when it may start
            wait = context.run(pace.reserve)
            heapq.heappush(events, (at + wait, next(order), pool, "send", context))
        elif what == "send":
            answer = "ok" if bucket.take() else "429"
            heapq.heappush(events, (at + latency_s, next(order), pool, answer, context))
        else:
            requests += at >= steady
            if what == "ok":
                pace.succeeded()
                delivered += at >= steady
            else:
                context.run(pace.throttled)
                throttled += at >= steady
            heapq.heappush(events, (at, next(order), pool, "ready", context))
    return delivered / (seconds - steady) / 1000.0, throttled / max(1, requests)


@pytest.mark.parametrize(
    ("pools", "latency_s"), [(2, 0.02), (4, 0.02), (4, 0.005), (4, 0.1)], ids=str
)
def test_pools_learning_the_rate_share_a_quota_closely_with_few_429s(
    pools: int, latency_s: float
) -> None:
    """Round trips from 5 ms to longer than the cool-down (a loaded host) alike."""
    rate, share = simulate(pools, latency_s=latency_s)
    assert rate >= 0.95
    assert share <= 0.05


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
