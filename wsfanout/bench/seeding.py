"""Fill a registry table fast, in the classic seed layout or ours (benchmarks, tests, demos)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ..aws import table as t
from ..core.pacing import RetryPolicy

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import WriteRequestUnionTypeDef

__all__ = ["classic_item", "connection_ids", "seed_items"]

# Seeding a large table at full speed is exactly what makes DynamoDB leave items unprocessed:
# patient, but bounded, so a table that never takes the items fails the run instead of hanging it.
SEEDING = RetryPolicy(max_attempts=10, base_s=0.05, max_s=1.0)


def connection_ids(count: int, prefix: str = "c") -> list[str]:
    """API Gateway-looking ids (base64-ish, ending in ``=``), unique and stable per index."""
    return [f"{prefix}{i:07d}AbCd=" for i in range(count)]


def classic_item(connection_id: str, ttl_seconds: int = 7200) -> dict[str, Any]:
    """The item a plain ``$connect`` handler writes: only PK, SK, connectionId, connectedAt, ttl."""
    return {
        t.PK: {"S": t.connection_pk(connection_id)},
        t.SK: {"S": t.CONNECTION_SK},
        "connectionId": {"S": connection_id},
        "connectedAt": {"S": "2026-01-01T00:00:00.000Z"},
        t.TTL_ATTRIBUTE: {"N": str(int(time.time()) + ttl_seconds)},
    }


async def seed_items(
    client: DynamoDBClient,
    table_name: str,
    items: Iterable[dict[str, Any]],
    *,
    concurrency: int = 8,
    retry: RetryPolicy = SEEDING,
) -> int:
    """Write items with BatchWriteItem (25 a call, ``concurrency`` calls at once).

    Items are consumed as they are written, so seeding a large table holds only the batches in
    flight. What DynamoDB leaves unprocessed is written again under ``retry``.

    :raises LeftOverError: items were still unprocessed after every retry.
    """

    async def put(requests: Sequence[WriteRequestUnionTypeDef]) -> list[WriteRequestUnionTypeDef]:
        answer = await client.batch_write_item(RequestItems={table_name: requests})
        return list(answer.get("UnprocessedItems", {}).get(table_name, []))

    send, receive = anyio.create_memory_object_stream[Sequence[dict[str, Any]]](concurrency)
    written = 0

    async def writer(inbox: MemoryObjectReceiveStream[Sequence[dict[str, Any]]]) -> None:
        nonlocal written
        async with inbox:
            async for chunk in inbox:
                requests: list[WriteRequestUnionTypeDef] = [
                    {"PutRequest": {"Item": item}} for item in chunk
                ]
                await retry.until_done(put, requests, what=f"BatchWriteItem puts on {table_name}")
                written += len(chunk)

    async with anyio.create_task_group() as tasks:
        for _ in range(concurrency):
            tasks.start_soon(writer, receive.clone())
        receive.close()
        async with send:
            batch: list[dict[str, Any]] = []
            for item in items:
                batch.append(item)
                if len(batch) == 25:
                    await send.send(batch)
                    batch = []
            if batch:
                await send.send(batch)
    return written
