"""``wsfanout bench core``: the classic sequential loop against the engine, side by side.

Both run in one process run against the same management endpoint (a separate process with
injected latency and gone connections) and two identical registry tables in one moto server (also
a separate process), so the ratio compares algorithms, not machines or moments.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aioboto3
import aiohttp
import anyio
import anyio.to_thread
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..fanout import Fanout
from ..gateway import ManagementGateway
from ..lean import LeanGateway
from ..local.management import Faults
from ..local.processes import endpoint_process, moto_server
from ..models import AllTarget
from ..registry import Registry
from ..table import table_definition
from .seeding import classic_item, connection_ids, seed_items

__all__ = ["CoreOptions", "Result", "classic_broadcast", "run_core"]

REGION = "us-east-1"
STAGE = "bench"
KEY_ID = SECRET = "bench"  # moto and the local endpoint accept any signed request
PAYLOAD = b'{"type":"message","data":"benchmark"}'


@dataclass(frozen=True, slots=True)
class CoreOptions:
    """What ``wsfanout bench core`` measures."""

    connections: int = 5000
    gone_rate: float = 0.05
    latency_s: float = 0.020
    concurrency: int = 256
    seed: int = 1
    transports: tuple[str, ...] = ("lean", "botocore")
    json_path: str | None = None


@dataclass(slots=True)
class Result:
    """One algorithm's run, checked against the endpoint's records and the registry."""

    name: str
    elapsed_s: float
    delivered: int
    requests: int
    missed: int
    duplicated: int
    gone_removed: int
    gone_left: int
    live_removed: int

    @property
    def rate(self) -> float:
        return self.delivered / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def correct(self) -> bool:
        return not (self.missed or self.duplicated or self.gone_left or self.live_removed)


def classic_broadcast(
    table_name: str,
    moto_url: str,
    management_url: str,
    data: bytes,
    advance: Callable[[], None],
) -> None:
    """The algorithm of the classic samples: scan everything into a list, then post one by one.

    Synchronous boto3, as those samples are; a 410 deletes the item and moves on.
    """
    import boto3  # noqa: PLC0415  (bench-only dependency)

    dynamodb = boto3.resource(
        "dynamodb",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    table = dynamodb.Table(table_name)
    answer = table.scan(ProjectionExpression="connectionId")
    items = list(answer["Items"])
    while "LastEvaluatedKey" in answer:
        answer = table.scan(
            ProjectionExpression="connectionId", ExclusiveStartKey=answer["LastEvaluatedKey"]
        )
        items.extend(answer["Items"])
    api = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=management_url,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    for item in items:
        connection_id = str(item["connectionId"])
        try:
            api.post_to_connection(ConnectionId=connection_id, Data=data)
        except api.exceptions.GoneException:
            table.delete_item(Key={"PK": f"CONN#{connection_id}", "SK": "CONN"})
        advance()


async def _make_table(client: Any, name: str, ids: list[str]) -> None:
    await client.create_table(**table_definition(name))
    await seed_items(client, name, (classic_item(cid) for cid in ids))


async def _remaining(registry: Registry) -> set[str]:
    return {r.connection_id async for page in registry.pages(AllTarget(all=True)) for r in page}


async def _check(
    *,
    name: str,
    elapsed_s: float,
    http: aiohttp.ClientSession,
    base_url: str,
    registry: Registry,
    ids: list[str],
    gone: set[str],
) -> Result:
    async with http.get(f"{base_url}/_wsfanout/counts") as answer:
        counts: dict[str, int] = await answer.json()
    async with http.get(f"{base_url}/_wsfanout/stats") as answer:
        stats: dict[str, int] = await answer.json()
    async with http.post(f"{base_url}/_wsfanout/reset") as answer:
        answer.raise_for_status()
    live = set(ids) - gone
    left = await _remaining(registry)
    return Result(
        name=name,
        elapsed_s=elapsed_s,
        delivered=sum(1 for cid in live if counts.get(cid)),
        requests=stats["posts"],
        missed=sum(1 for cid in live if not counts.get(cid)),
        duplicated=sum(n - 1 for n in counts.values() if n > 1),
        gone_removed=len(gone - left),
        gone_left=len(gone & left),
        live_removed=len(live - left),
    )


async def _measure(
    options: CoreOptions, moto_url: str, base_url: str, console: Console
) -> list[Result]:
    ids = connection_ids(options.connections, "b")
    faults = Faults(gone_rate=options.gone_rate, seed=options.seed)
    gone = {cid for cid in ids if faults.is_gone(cid)}
    management_url = f"{base_url}/{STAGE}"
    session = aioboto3.Session(
        region_name=REGION, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET
    )
    results: list[Result] = []
    async with (
        session.client("dynamodb", endpoint_url=moto_url) as dynamodb,
        aiohttp.ClientSession() as http,
    ):
        suffix = str(time.time_ns())
        tables = {name: f"bench-{name}-{suffix}" for name in ("seed", *options.transports)}
        with console.status(
            f"seeding {len(tables)} x {len(ids):,} classic registry items in moto server"
        ):
            for table in tables.values():
                await _make_table(dynamodb, table, ids)
        progress = Progress(
            TextColumn("{task.description:>16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        with progress:
            task = progress.add_task("seed", total=len(ids))
            started = time.monotonic()
            await anyio.to_thread.run_sync(
                classic_broadcast,
                tables["seed"],
                moto_url,
                management_url,
                PAYLOAD,
                lambda: progress.advance(task),
            )
            elapsed = time.monotonic() - started
            registry = Registry(dynamodb, tables["seed"])
            results.append(
                await _check(
                    name="seed",
                    elapsed_s=elapsed,
                    http=http,
                    base_url=base_url,
                    registry=registry,
                    ids=ids,
                    gone=gone,
                )
            )
            for transport in options.transports:
                name = f"engine ({transport})"
                task = progress.add_task(name, total=len(ids))
                registry = Registry(dynamodb, tables[transport])
                gateway_type = LeanGateway if transport == "lean" else ManagementGateway
                async with gateway_type(
                    session, default_endpoint=management_url, pool_size=options.concurrency
                ) as gateway:
                    fanout = Fanout(registry, gateway, concurrency=options.concurrency)
                    report = await fanout.run(
                        AllTarget(all=True),
                        PAYLOAD,
                        on_progress=partial(progress.advance, task),
                    )
                results.append(
                    await _check(
                        name=name,
                        elapsed_s=report.elapsed_s,
                        http=http,
                        base_url=base_url,
                        registry=registry,
                        ids=ids,
                        gone=gone,
                    )
                )
        for table in tables.values():
            await dynamodb.delete_table(TableName=table)
    return results


def run_core(options: CoreOptions) -> int:
    """Run the comparison, print the table and the ratio; exit 1 when a run was incorrect."""
    console = Console(width=None if Console().is_terminal else 130)
    args = [
        "--stage",
        STAGE,
        "--latency",
        str(options.latency_s),
        "--gone-rate",
        str(options.gone_rate),
        "--seed",
        str(options.seed),
        "--no-payloads",
    ]
    with moto_server() as moto_url, endpoint_process(args) as base_url:
        results = anyio.run(_measure, options, moto_url, base_url, console)
    seed, engine = results[0], results[1]
    ratio = engine.rate / seed.rate if seed.rate else float("inf")
    table = Table(
        title=f"bench core: N={options.connections:,}, latency {options.latency_s * 1000:g} ms, "
        f"{options.gone_rate:.0%} gone, engine concurrency {options.concurrency}"
    )
    for column in (
        "algorithm",
        "deliveries/s",
        "elapsed s",
        "delivered",
        "requests",
        "missed",
        "duplicated",
        "gone removed",
        "gone left",
        "x seed",
    ):
        table.add_column(column, justify="left" if column == "algorithm" else "right")
    for result in results:
        table.add_row(
            result.name,
            f"{result.rate:,.0f}",
            f"{result.elapsed_s:.2f}",
            f"{result.delivered:,}",
            f"{result.requests:,}",
            str(result.missed),
            str(result.duplicated),
            f"{result.gone_removed:,}",
            str(result.gone_left),
            f"{result.rate / seed.rate:.1f}" if seed.rate else "-",
        )
    console.print(table)
    console.print(f"{engine.name} / seed deliveries per second: [bold]{ratio:.1f}x[/bold]")
    if options.json_path:
        document = {
            "options": asdict(options),
            "results": [asdict(r) | {"rate": r.rate, "correct": r.correct} for r in results],
            "engine_over_seed": ratio,
        }
        Path(options.json_path).write_text(json.dumps(document, indent=2) + "\n")
    if not all(r.correct for r in results):
        console.print("[red]a run missed, duplicated or left gone connections behind[/red]")
        return 1
    return 0
