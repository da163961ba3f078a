"""Pacing: full-jitter backoff, and the AIMD limiter every sender of a run shares.

No test sleeps: the cool-down is controlled through ``pause_s`` (a long one keeps a window open
for the whole test, ``0.0`` closes it at once), and concurrency is observed with events and
``wait_all_tasks_blocked`` rather than timing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import anyio
import pytest
from anyio.abc import TaskGroup

from wsfanout.core.pacing import LeftOverError, RetryPolicy, Throttle, is_testing, set_testing

pytestmark = pytest.mark.timeout(30)

LONG = 3600.0  # a cool-down no test outlives


# -- RetryPolicy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [RetryPolicy(), RetryPolicy(base_s=0.001, max_s=0.01), RetryPolicy(base_s=1.0, max_s=30.0)],
    ids=repr,
)
def test_delay_stays_within_the_capped_exponential(policy: RetryPolicy) -> None:
    rng = random.Random(1234)
    for attempt in range(1, 31):
        cap = min(policy.max_s, policy.base_s * 2 ** (attempt - 1))
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in delays), attempt
        # Full jitter spreads over the whole interval: not pinned to 0, not pinned to the cap.
        assert max(delays) > cap / 2, attempt
        assert min(delays) < cap / 2, attempt


def test_delay_grows_then_flattens_at_the_cap() -> None:
    policy = RetryPolicy(base_s=0.1, max_s=1.0)
    rng = random.Random(7)
    peaks = [max(policy.delay(n, rng) for _ in range(500)) for n in range(1, 8)]
    assert peaks[0] <= 0.1
    assert peaks[1] <= 0.2
    assert 0.2 < peaks[2] <= 0.4
    assert all(0.5 < peak <= 1.0 for peak in peaks[4:])


def test_delay_is_reproducible_with_a_seed() -> None:
    policy = RetryPolicy()
    first = [policy.delay(n, random.Random(42)) for n in range(1, 10)]
    second = [policy.delay(n, random.Random(42)) for n in range(1, 10)]
    assert first == second


def test_retry_policy_defaults() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 5
    assert policy.max_throttled_attempts > policy.max_attempts


# -- RetryPolicy.until_done: what a batch call left undone ------------------------------------


class Batches:
    """A batch API that does ``per_call`` of what it is sent and hands back the rest."""

    def __init__(self, per_call: int) -> None:
        self.per_call = per_call
        self.calls: list[list[str]] = []

    async def send(self, pending: Sequence[str]) -> list[str]:
        self.calls.append(list(pending))
        return list(pending[self.per_call :])


async def test_until_done_sends_only_what_is_left(pauses: list[float]) -> None:
    batches = Batches(per_call=2)
    await RetryPolicy().until_done(batches.send, ["a", "b", "c", "d", "e"], what="puts")
    assert batches.calls == [["a", "b", "c", "d", "e"], ["c", "d", "e"], ["e"]]
    assert len(pauses) == 2, "a pause between attempts, none after the last"


async def test_until_done_with_nothing_pending_sends_nothing(pauses: list[float]) -> None:
    batches = Batches(per_call=1)
    await RetryPolicy().until_done(batches.send, [], what="puts")
    assert batches.calls == []
    assert pauses == []


@pytest.mark.parametrize("attempts", [1, 2, 5])
async def test_until_done_gives_up_after_max_attempts_naming_what_was_left(
    pauses: list[float], attempts: int
) -> None:
    batches = Batches(per_call=0)
    with pytest.raises(LeftOverError) as info:
        await RetryPolicy(max_attempts=attempts).until_done(
            batches.send, ["a", "b"], what="BatchWriteItem puts on t1"
        )
    assert len(batches.calls) == attempts
    assert len(pauses) == attempts - 1
    assert info.value.left == ["a", "b"]
    assert info.value.attempts == attempts
    assert info.value.what == "BatchWriteItem puts on t1"
    assert str(info.value) == (
        f"BatchWriteItem puts on t1: 2 left unprocessed after {attempts} attempts"
    )


async def test_done_on_the_last_attempt_is_done(pauses: list[float]) -> None:
    batches = Batches(per_call=1)
    await RetryPolicy(max_attempts=3).until_done(batches.send, ["a", "b", "c"], what="puts")
    assert len(batches.calls) == 3


async def test_an_error_from_send_is_not_retried(pauses: list[float]) -> None:
    calls = 0

    async def refused(pending: Sequence[str]) -> list[str]:
        nonlocal calls
        calls += 1
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await RetryPolicy().until_done(refused, ["a"], what="puts")
    assert calls == 1
    assert pauses == []


async def test_until_done_pauses_are_the_policys_jittered_delays(pauses: list[float]) -> None:
    policy = RetryPolicy(max_attempts=6, base_s=0.1, max_s=0.5)
    with pytest.raises(LeftOverError):
        await policy.until_done(Batches(0).send, ["a"], what="puts", rng=random.Random(99))
    expected = random.Random(99)
    assert pauses == [policy.delay(attempt, expected) for attempt in range(1, 6)]


async def test_until_done_jitter_stays_within_the_capped_exponential(pauses: list[float]) -> None:
    policy = RetryPolicy(max_attempts=8, base_s=0.1, max_s=1.0)
    caps = [min(policy.max_s, policy.base_s * 2 ** (n - 1)) for n in range(1, 8)]
    for seed in range(50):
        pauses.clear()
        with pytest.raises(LeftOverError):
            await policy.until_done(Batches(0).send, ["a"], what="x", rng=random.Random(seed))
        assert len(pauses) == 7
        assert all(0.0 <= p <= cap for p, cap in zip(pauses, caps, strict=True)), seed
    assert len(set(pauses)) == 7, "jittered, not one fixed delay"


async def test_until_done_under_set_testing_waits_for_nothing() -> None:
    """Real sleeps, an hour's backoff: with ``set_testing`` the retries still finish at once."""
    batches = Batches(per_call=1)
    policy = RetryPolicy(max_attempts=4, base_s=LONG, max_s=LONG)
    with set_testing(), anyio.fail_after(5):
        assert is_testing()
        await policy.until_done(batches.send, ["a", "b", "c", "d"], what="puts")
    assert not is_testing()
    assert len(batches.calls) == 4


async def test_until_done_under_set_testing_still_bounds_attempts(pauses: list[float]) -> None:
    batches = Batches(per_call=0)
    with set_testing(), pytest.raises(LeftOverError):
        await RetryPolicy(max_attempts=3).until_done(batches.send, ["a"], what="puts")
    assert len(batches.calls) == 3
    assert pauses == [0.0, 0.0]


class Refusals:
    """A call refused with ``Busy`` its first ``refusals`` times, answering ``"done"`` after."""

    def __init__(self, refusals: int, error: type[Exception]) -> None:
        self.refusals, self.error, self.calls = refusals, error, 0

    async def call(self) -> str:
        self.calls += 1
        if self.calls <= self.refusals:
            raise self.error(f"refused {self.calls}")
        return "done"


class BusyError(Exception):
    """What :class:`Refusals` raises when a retry is due."""


def busy(exc: BaseException) -> bool:
    return isinstance(exc, BusyError)


async def test_retrying_resends_until_the_call_passes(pauses: list[float]) -> None:
    refusals = Refusals(4, BusyError)
    policy = RetryPolicy(max_attempts=5, base_s=0.1, max_s=0.5)
    assert await policy.retrying(refusals.call, retry_if=busy, rng=random.Random(7)) == "done"
    assert refusals.calls == 5, "passed on the last attempt"
    expected = random.Random(7)
    assert pauses == [policy.delay(attempt, expected) for attempt in range(1, 5)]


async def test_retrying_gives_up_after_max_attempts_with_the_last_error(
    pauses: list[float],
) -> None:
    refusals = Refusals(99, BusyError)
    with pytest.raises(BusyError, match="refused 3"):
        await RetryPolicy(max_attempts=3).retrying(refusals.call, retry_if=busy)
    assert refusals.calls == 3
    assert len(pauses) == 2, "no pause after the last attempt"


async def test_retrying_does_not_retry_what_retry_if_refuses(pauses: list[float]) -> None:
    refusals = Refusals(1, ValueError)
    with pytest.raises(ValueError, match="refused 1"):
        await RetryPolicy().retrying(refusals.call, retry_if=busy)
    assert refusals.calls == 1
    assert pauses == []


async def test_retrying_under_set_testing_waits_for_nothing() -> None:
    refusals = Refusals(3, BusyError)
    policy = RetryPolicy(max_attempts=4, base_s=LONG, max_s=LONG)
    with set_testing(), anyio.fail_after(5):
        assert await policy.retrying(refusals.call, retry_if=busy) == "done"
    assert refusals.calls == 4


# -- Throttle: the limit ------------------------------------------------------------------------


def test_starts_at_the_ceiling() -> None:
    throttle = Throttle(16)
    assert throttle.limit == 16
    assert throttle.ceiling == 16


async def test_throttled_halves_the_limit() -> None:
    throttle = Throttle(16, pause_s=LONG)
    throttle.throttled()
    assert throttle.limit == 8


async def test_a_second_throttle_within_the_cool_down_does_not_cut_again() -> None:
    throttle = Throttle(16, pause_s=LONG)
    throttle.throttled()
    throttle.throttled()
    throttle.throttled()
    assert throttle.limit == 8


async def test_after_the_cool_down_each_throttle_cuts() -> None:
    throttle = Throttle(16, pause_s=0.0)
    throttle.throttled()
    throttle.throttled()
    throttle.throttled()
    assert throttle.limit == 2


@pytest.mark.parametrize(("concurrency", "floor"), [(16, 3), (16, 1), (5, 2)])
async def test_never_cut_below_the_floor(concurrency: int, floor: int) -> None:
    throttle = Throttle(concurrency, floor=floor, pause_s=0.0)
    for _ in range(10):
        throttle.throttled()
    assert throttle.limit == floor


async def test_floor_above_the_ceiling_is_clamped() -> None:
    throttle = Throttle(4, floor=10, pause_s=0.0)
    throttle.throttled()
    assert throttle.limit == 4


async def test_a_window_of_successes_adds_exactly_one_slot() -> None:
    throttle = Throttle(16, pause_s=LONG)
    throttle.throttled()
    assert throttle.limit == 8
    for _ in range(7):
        throttle.succeeded()
    assert throttle.limit == 8
    throttle.succeeded()
    assert throttle.limit == 9
    for _ in range(8):
        throttle.succeeded()
    assert throttle.limit == 9
    throttle.succeeded()
    assert throttle.limit == 10


async def test_a_throttle_resets_the_success_window() -> None:
    throttle = Throttle(16, pause_s=0.0)
    throttle.throttled()  # 8
    for _ in range(7):
        throttle.succeeded()
    throttle.throttled()  # 4, and the 7 successes no longer count
    for _ in range(3):
        throttle.succeeded()
    assert throttle.limit == 4
    throttle.succeeded()
    assert throttle.limit == 5


def test_successes_never_raise_the_limit_above_the_ceiling() -> None:
    throttle = Throttle(4)
    for _ in range(1000):
        throttle.succeeded()
    assert throttle.limit == 4


async def test_recovers_back_to_the_ceiling_and_stops_there() -> None:
    throttle = Throttle(8, pause_s=0.0)
    throttle.throttled()
    assert throttle.limit == 4
    for _ in range(4 + 5 + 6 + 7):
        throttle.succeeded()
    assert throttle.limit == 8
    for _ in range(100):
        throttle.succeeded()
    assert throttle.limit == 8


# -- Throttle: requests in flight ----------------------------------------------------------------


class Probe:
    """Counts who is inside ``async with throttle`` and holds them there until released."""

    def __init__(self, throttle: Throttle) -> None:
        self.throttle = throttle
        self.inside = 0
        self.peak = 0
        self.entered: list[int] = []
        self.done: list[int] = []
        self.gates: dict[int, anyio.Event] = {}

    async def request(self, n: int) -> None:
        self.gates[n] = anyio.Event()
        async with self.throttle:
            self.inside += 1
            self.peak = max(self.peak, self.inside)
            self.entered.append(n)
            await self.gates[n].wait()
            self.inside -= 1
        self.done.append(n)

    async def start(self, tasks: TaskGroup, numbers: range) -> None:
        """Send requests ``numbers`` and wait until each is inside or waiting to enter."""
        for n in numbers:
            tasks.start_soon(self.request, n)
        await anyio.wait_all_tasks_blocked()

    async def release(self, n: int) -> None:
        """Let request ``n`` out, and wait until whoever may enter in its place has entered."""
        self.gates[n].set()
        await anyio.wait_all_tasks_blocked()

    async def release_all(self, count: int) -> None:
        """Let every request out, later entrants too, until ``count`` of them are done."""
        while len(self.done) < count:
            for gate in self.gates.values():
                gate.set()
            await anyio.wait_all_tasks_blocked()


async def test_limit_caps_requests_in_flight() -> None:
    probe = Probe(Throttle(2))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            await probe.start(tasks, range(5))
            assert probe.inside == 2
            assert len(probe.entered) == 2

            first = probe.entered[0]
            await probe.release(first)
            assert probe.done == [first]
            assert probe.inside == 2
            assert len(probe.entered) == 3

            await probe.release_all(5)
    assert probe.peak == 2
    assert sorted(probe.done) == list(range(5))
    assert probe.throttle.limit == 2


async def test_a_cut_holds_new_requests_until_in_flight_drops_below_it() -> None:
    probe = Probe(Throttle(4, pause_s=0.0))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            await probe.start(tasks, range(4))
            assert probe.inside == 4

            probe.throttle.throttled()
            assert probe.throttle.limit == 2
            await probe.start(tasks, range(4, 7))
            assert probe.entered == [0, 1, 2, 3]

            # 4 -> 3 -> 2 in flight: still at the new limit, nobody else may enter.
            await probe.release(0)
            await probe.release(1)
            assert probe.inside == 2
            assert len(probe.entered) == 4

            # 2 -> 1: one waiting request takes the freed slot, and only one.
            await probe.release(2)
            assert probe.inside == 2
            assert len(probe.entered) == 5

            await probe.release_all(7)
    assert sorted(probe.done) == list(range(7))


async def test_a_cut_pauses_new_entries_for_the_cool_down() -> None:
    """After a 429 the pool waits before sending again, even with free slots."""
    probe = Probe(Throttle(4, pause_s=LONG, max_pause_s=LONG))
    probe.throttle.throttled()
    assert probe.throttle.limit == 2
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            await probe.start(tasks, range(1))
            assert probe.entered == []
            tasks.cancel_scope.cancel()


async def test_no_pause_without_a_cut() -> None:
    probe = Probe(Throttle(4, pause_s=LONG, max_pause_s=LONG))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            await probe.start(tasks, range(1))
            assert probe.entered == [0]
            probe.gates[0].set()
    assert probe.done == [0]
