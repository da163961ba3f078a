"""The bench's registry companion keeps pace with the posts it runs beside."""

from __future__ import annotations

import anyio
import pytest

from wsfanout.aws.lean import LeanGateway
from wsfanout.bench import algorithms
from wsfanout.bench.algorithms import Spec, bench_session, prepared
from wsfanout.bench.seeding import classic_item, connection_ids, seed_items
from wsfanout.local.management import ManagementEndpoint

# Pages of the companion's Scan: 100 first, then 1000, then the 50 left.
CONNECTIONS = 1150


async def _finished_within(seconds: float, done: anyio.Event) -> bool:
    with anyio.move_on_after(seconds):
        await done.wait()
    return done.is_set()


@pytest.fixture
async def seeded(dynamodb, table_name: str) -> str:
    ids = connection_ids(CONNECTIONS, "p")
    await seed_items(dynamodb, table_name, (classic_item(cid) for cid in ids))
    return table_name


def _spec(moto_url: str, table: str, management_url: str) -> Spec:
    return Spec(
        algorithm="scan",
        moto_url=moto_url,
        table=table,
        management_url=management_url,
        connections=CONNECTIONS,
        id_prefix="p",
        control_url=management_url.rsplit("/", 1)[0],
    )


async def _post(gateway: LeanGateway, count: int) -> None:
    for index in range(count):
        await gateway.post(f"x{index}", b"{}")


@pytest.mark.timeout(60)
async def test_the_scan_companion_reads_one_page_ahead_of_the_posts(
    moto_url: str, seeded: str, endpoint: tuple[ManagementEndpoint, str]
) -> None:
    _, management_url = endpoint
    done = anyio.Event()
    result: dict[str, int] = {}

    async def companion() -> None:
        async with prepared(_spec(moto_url, seeded, management_url)) as go:
            result.update(await go())
        done.set()

    async with (
        LeanGateway(bench_session(), default_endpoint=management_url) as gateway,
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(companion)
        # Two pages read (1,100 connections); the third waits until 100 posts were counted.
        assert not await _finished_within(0.5, done)
        await _post(gateway, 100)
        # The last page read; it ends with the posts, as the engine does.
        assert not await _finished_within(0.5, done)
        await _post(gateway, 1000)
        assert await _finished_within(20, done)
    assert result == {"read": CONNECTIONS}


@pytest.mark.timeout(60)
async def test_the_scan_companion_stops_waiting_for_posts_that_stopped(
    moto_url: str,
    seeded: str,
    endpoint: tuple[ManagementEndpoint, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(algorithms, "_PACE_STALL_S", 0.2)
    _, management_url = endpoint
    with anyio.fail_after(20):
        async with prepared(_spec(moto_url, seeded, management_url)) as go:
            assert await go() == {"read": CONNECTIONS}
