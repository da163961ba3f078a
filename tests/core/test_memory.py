"""Memory stays flat however many connections there are.

The management endpoint runs in its own process here, so what is measured is the engine, not
the fake server's records of every delivery. tracemalloc's peak counts exactly the Python memory
allocated during each run (resident-set figures would mostly show the allocator's habits). Both
runs read full 1,000-item pages, so what differs between them is only the number of pages.
"""

from __future__ import annotations

import tracemalloc
import uuid

import pytest

from wsfanout.aws.lean import LeanGateway
from wsfanout.aws.registry import Registry
from wsfanout.aws.table import table_definition
from wsfanout.bench.seeding import classic_item, connection_ids, seed_items
from wsfanout.core.fanout import Fanout
from wsfanout.core.models import AllTarget
from wsfanout.local.processes import endpoint_process


async def peak_of_broadcast(dynamodb, gateway: LeanGateway, count: int) -> int:
    """Peak bytes allocated while broadcasting to ``count`` connections (all delivered)."""
    name = f"mem-{uuid.uuid4().hex[:10]}"
    await dynamodb.create_table(**table_definition(name))
    try:
        items = (classic_item(cid) for cid in connection_ids(count, "m"))
        await seed_items(dynamodb, name, items, concurrency=16)
        fanout = Fanout(Registry(dynamodb, name, page_size=1000), gateway, concurrency=128)
        tracemalloc.start()
        try:
            report = await fanout.run(AllTarget(all=True), b"m")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert report.delivered == count
        return peak
    finally:
        await dynamodb.delete_table(TableName=name)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_memory_does_not_grow_with_the_registry(dynamodb, session) -> None:
    with endpoint_process(["--no-payloads"]) as base_url:
        async with LeanGateway(session, default_endpoint=f"{base_url}/mem", pool_size=128) as gw:
            small = await peak_of_broadcast(dynamodb, gw, 2_000)
            big = await peak_of_broadcast(dynamodb, gw, 20_000)
    print(f"peak allocated: {small / 1e6:.2f} MB for 2k, {big / 1e6:.2f} MB for 20k connections")
    # Holding the 18,000 extra recipients at once would take about 8 MB (ids, keys, objects).
    assert big - small < 1_500_000, f"peak grew {(big - small) / 1e6:.2f} MB from 2k to 20k"
