"""The per-connection rate limit: a token bucket, as middleware, on the test client."""

from __future__ import annotations

import pytest

from wsfanout import App
from wsfanout.app import Context, RateLimit
from wsfanout.testing import TestClient


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_the_burst_then_the_rate() -> None:
    clock = Clock()
    limit = RateLimit(rate=2, burst=3, clock=clock)
    assert [limit.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limit.allow("b"), "every connection has its own bucket"
    clock.now += 0.5  # one token back at two a second
    assert [limit.allow("a") for _ in range(2)] == [True, False]
    clock.now += 60  # never more than the burst
    assert [limit.allow("a") for _ in range(4)] == [True, True, True, False]


def test_the_least_recently_used_bucket_is_forgotten_first() -> None:
    limit = RateLimit(rate=1, burst=1, max_connections=2, clock=Clock())
    assert limit.allow("a")
    assert limit.allow("b")
    assert limit.allow("c")  # "a" is forgotten
    assert limit.allow("a"), "a forgotten connection starts with a full bucket"
    assert not limit.allow("c")


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_a_limit_must_let_something_through(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        RateLimit(rate=rate, burst=burst)


async def test_frames_over_the_limit_get_rate_limited_and_never_reach_the_route() -> None:
    clock = Clock()
    app = App()
    app.middleware(RateLimit(rate=1, burst=2, clock=clock))
    reached: list[int] = []

    @app.route("n")
    async def count(ctx: Context) -> None:
        reached.append(ctx.json["n"])

    async with TestClient(app) as client:
        conn = await client.connect()
        for n in range(4):
            await conn.send({"action": "n", "n": n})
        assert reached == [0, 1]
        assert [frame["code"] for frame in conn.received] == ["rate_limited"] * 2
        clock.now += 1
        await conn.send({"action": "n", "n": 9})
        assert reached == [0, 1, 9]
        other = await client.connect()
        await other.send({"action": "n", "n": 5})
        assert reached == [0, 1, 9, 5]
