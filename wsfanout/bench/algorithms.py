"""The broadcast algorithms ``wsfanout bench`` compares, as each would run on its own.

Every one of them runs in a process of its own (:mod:`wsfanout.bench.child`), so its CPU time and
peak resident memory are its own, and none shares an event loop or a GIL with moto server or the
management endpoint. They report only what they think happened; the parent checks what really
happened against the endpoint's records and the registry.

- ``seed``: the classic samples: scan everything into a list with boto3, then post one by one,
  deleting on 410.
- ``gather``: what many async samples do: scan everything, then one ``asyncio.gather`` over every
  connection through an aioboto3 client with its default pool and retries.
- ``floor``: the least a correct sender must do in Python: signed POSTs over one keep-alive aiohttp
  pool, to ids it is handed (no registry), no retries, no bookkeeping. The practical limit.
- ``floor-raw``: the same signed POSTs with no HTTP library: bare :class:`asyncio.Protocol`
  connections, one per sender, kept alive (:mod:`.rawhttp`). The physical limit in Python.
- ``engine``: :class:`~wsfanout.core.fanout.Fanout` as shipped, over one of its transports
  (``engine``: aiohttp, ``engine-raw``: bare asyncio connections, ``engine-botocore``).
- ``engine-memory`` (a diagnostic): the same engine and lean transport, the registry served from
  memory as the floor's ids are; the difference to ``engine`` is the price of reading the
  registry from moto server on the same two cores.

And one companion, not compared: ``scan`` reads the registry as the engine does and discards it.
It runs beside ``floor`` and ``engine-memory`` so that moto server loads the two shared cores
during their runs as it does during the engine's: on shared cores a busy moto server raises
every other process's CPU per request (docs/performance.md), and without the companion that
cost would be billed to the engine alone.
It keeps the engine's pace too, one page ahead of the posts the endpoint has counted: read all at
once, moto's load would fall on the first second of the run, not spread over it as the engine's
is.

With ``Spec.ca_bundle`` the endpoint is HTTPS, and every algorithm trusts that certificate
explicitly: botocore's ``verify=``, the transports' ``ca_bundle``, an :class:`ssl.SSLContext` for
aiohttp and the raw connections. Nothing is trusted process-wide and nothing goes unverified.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import aioboto3
import aiohttp
import anyio
from botocore.exceptions import ClientError

from ..aws import table as t
from ..aws.account import KEY_ID, REGION, SECRET
from ..aws.gateway import ManagementGateway
from ..aws.lean import LeanGateway
from ..aws.raw import RawGateway
from ..aws.registry import Registry
from ..aws.sigv4 import Credentials, PostSigner
from ..core.fanout import Fanout
from ..core.interfaces import Recipient
from ..core.models import AllTarget
from ..core.pacing import PACINGS, Pacing
from ..local.signatures import signed_headers
from . import ALGORITHMS
from .rawhttp import RawConnection, RawOrigin
from .seeding import connection_ids

__all__ = ["Account", "Go", "Spec", "bench_session", "prepared"]

_PACE_POLL_S = 0.01  # how often the scan companion asks the endpoint how far the posts are
_PACE_STALL_S = 2.0


@dataclass(frozen=True, slots=True)
class Spec:
    """One run of one algorithm, as the parent hands it to a child process (JSON)."""

    algorithm: str
    moto_url: str
    table: str
    management_url: str
    connections: int
    id_prefix: str
    concurrency: int = 128
    region: str = REGION
    payload: str = '{"type":"message","data":"benchmark"}'
    segment: int | None = None
    total_segments: int | None = None
    control_url: str | None = None  # the endpoint's records, which pace the ``scan`` companion
    pacing: Pacing = "aimd"  # the engine's reaction to 429s (wsfanout.core.pacing.pacer)
    ca_bundle: str | None = None  # the HTTPS endpoint's certificate, trusted explicitly
    first_page_size: int | None = None  # the engine's first registry page (None: the default)

    def __post_init__(self) -> None:
        if self.algorithm not in (*ALGORITHMS, "scan"):
            raise ValueError(f"unknown algorithm {self.algorithm!r}; one of {ALGORITHMS} or scan")
        if self.pacing not in PACINGS:
            raise ValueError(f"unknown pacing {self.pacing!r}; one of {PACINGS}")

    def tls(self) -> ssl.SSLContext | None:
        """A client context trusting ``ca_bundle`` only; ``None`` for plain HTTP."""
        return None if self.ca_bundle is None else ssl.create_default_context(cafile=self.ca_bundle)


Account = dict[str, int]  # what the algorithm believes: sent, failed, gone, ...
Go = Callable[[], Awaitable[Account]]


def prepared(spec: Spec) -> AbstractAsyncContextManager[Go]:
    """Set an algorithm up (clients, sessions: what a warm Lambda container already holds) and
    yield the broadcast itself, so that only the broadcast is measured."""
    preparers: dict[str, Callable[[Spec], AbstractAsyncContextManager[Go]]] = {
        "seed": _seed,
        "gather": _gather,
        "floor": _floor,
        "floor-raw": _floor_raw,
        "engine": partial(_engine, transport=LeanGateway),
        "engine-botocore": partial(_engine, transport=ManagementGateway),
        "engine-raw": partial(_engine, transport=RawGateway),
        "engine-memory": _engine_memory,
        "scan": _scan,
    }
    return preparers[spec.algorithm](spec)


def bench_session(region: str = REGION) -> aioboto3.Session:
    """The session every bench process uses: moto and the local endpoint take any signed key."""
    return aioboto3.Session(
        region_name=region, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET
    )


def _session(spec: Spec) -> aioboto3.Session:
    return bench_session(spec.region)


@asynccontextmanager
async def _seed(spec: Spec) -> AsyncIterator[Go]:
    """Scan everything into a list, then post one by one with boto3; a 410 deletes the item.

    Synchronous, as the classic samples are: it blocks the event loop, which has nothing else
    to do.
    """
    import boto3  # noqa: PLC0415  (bench-only dependency)

    session = boto3.Session(
        region_name=spec.region, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET
    )
    table = session.resource("dynamodb", endpoint_url=spec.moto_url).Table(spec.table)
    api = session.client(
        "apigatewaymanagementapi", endpoint_url=spec.management_url, verify=spec.ca_bundle
    )
    data = spec.payload.encode()

    async def go() -> Account:
        answer = table.scan(ProjectionExpression="connectionId")
        items = list(answer["Items"])
        while "LastEvaluatedKey" in answer:
            answer = table.scan(
                ProjectionExpression="connectionId", ExclusiveStartKey=answer["LastEvaluatedKey"]
            )
            items.extend(answer["Items"])
        tally: Counter[str] = Counter()
        for item in items:
            connection_id = str(item["connectionId"])
            try:
                api.post_to_connection(ConnectionId=connection_id, Data=data)
                tally["sent"] += 1
            except api.exceptions.GoneException:
                key = {t.PK: t.connection_pk(connection_id), t.SK: t.CONNECTION_SK}
                table.delete_item(Key=key)
                tally["gone"] += 1
            except ClientError:
                tally["failed"] += 1
        return dict(tally)

    yield go


@asynccontextmanager
async def _gather(spec: Spec) -> AsyncIterator[Go]:
    """Scan everything, then ``asyncio.gather`` one post per connection, all at once."""
    session = _session(spec)
    data = spec.payload.encode()
    async with (
        session.client("dynamodb", endpoint_url=spec.moto_url) as dynamodb,
        session.client(
            "apigatewaymanagementapi", endpoint_url=spec.management_url, verify=spec.ca_bundle
        ) as api,
    ):

        async def post(connection_id: str, tally: Counter[str]) -> None:
            try:
                await api.post_to_connection(ConnectionId=connection_id, Data=data)
                tally["sent"] += 1
            except api.exceptions.GoneException:
                key = {t.PK: {"S": t.connection_pk(connection_id)}, t.SK: {"S": t.CONNECTION_SK}}
                await dynamodb.delete_item(TableName=spec.table, Key=key)
                tally["gone"] += 1

        async def go() -> Account:
            ids: list[str] = []
            async for page in dynamodb.get_paginator("scan").paginate(
                TableName=spec.table, ProjectionExpression="connectionId"
            ):
                ids.extend(item["connectionId"]["S"] for item in page["Items"])
            tally: Counter[str] = Counter()
            results = await asyncio.gather(
                *(post(cid, tally) for cid in ids), return_exceptions=True
            )
            tally["failed"] = sum(1 for r in results if isinstance(r, BaseException))
            return dict(tally)

        yield go


@dataclass(frozen=True, slots=True)
class _Posts:
    """What both floors send: the ids they are handed, signed for the endpoint, one payload."""

    ids: list[str]
    signer: PostSigner
    credentials: Credentials
    data: bytes

    @classmethod
    def of(cls, spec: Spec) -> _Posts:
        return cls(
            connection_ids(spec.connections, spec.id_prefix),
            PostSigner(spec.management_url, spec.region),
            Credentials(KEY_ID, SECRET, None),
            spec.payload.encode(),
        )

    def sign(self, connection_id: str) -> tuple[str, dict[str, str]]:
        return self.signer.sign(connection_id, self.data, self.credentials)

    async def send(
        self,
        senders: int,
        sender: Callable[[Iterator[str], Counter[int]], Coroutine[Any, Any, None]],
    ) -> Account:
        """Run ``senders`` copies of ``sender`` over the ids; what the answers' statuses say."""
        ids = iter(self.ids)
        statuses: Counter[int] = Counter()
        async with anyio.create_task_group() as tasks:
            for _ in range(senders):
                tasks.start_soon(sender, ids, statuses)
        return {
            "sent": sum(n for status, n in statuses.items() if status < 300),
            "gone": statuses[410],
            "failed": sum(n for status, n in statuses.items() if status >= 300 and status != 410),
        }


@asynccontextmanager
async def _floor(spec: Spec) -> AsyncIterator[Go]:
    """Signed POSTs over one keep-alive pool to ids handed in; nothing else."""
    posts = _Posts.of(spec)
    connector = aiohttp.TCPConnector(
        limit=spec.concurrency, limit_per_host=spec.concurrency, ssl=spec.tls() or True
    )
    async with aiohttp.ClientSession(connector=connector) as http:

        async def sender(ids: Iterator[str], statuses: Counter[int]) -> None:
            for connection_id in ids:
                url, headers = posts.sign(connection_id)
                async with http.post(url, data=posts.data, headers=headers) as answer:
                    await answer.read()
                    statuses[answer.status] += 1

        yield partial(posts.send, spec.concurrency, sender)


@asynccontextmanager
async def _floor_raw(spec: Spec) -> AsyncIterator[Go]:
    """The floor's signed POSTs over bare asyncio connections, one kept alive per sender."""
    posts = _Posts.of(spec)
    origin = RawOrigin(spec.management_url, spec.tls())

    async def sender(ids: Iterator[str], statuses: Counter[int]) -> None:
        connection: RawConnection | None = None
        try:
            for connection_id in ids:
                if connection is None or not connection.reusable:
                    if connection is not None:
                        connection.close()
                    connection = await origin.connect()
                url, headers = posts.sign(connection_id)
                statuses[await connection.exchange(origin.post(url, headers, posts.data))] += 1
        finally:
            if connection is not None:
                connection.close()

    yield partial(posts.send, spec.concurrency, sender)


class _MemoryRegistry:
    """Pages of the bench ids, from memory; gone connections are not removed."""

    def __init__(self, ids: Sequence[str]) -> None:
        self._ids = ids

    async def pages(self, target: Any, **_: Any) -> AsyncIterator[Sequence[Recipient]]:
        for start in range(0, len(self._ids), 1000):
            chunk = self._ids[start : start + 1000]
            yield [Recipient(cid, None, {t.PK: t.connection_pk(cid)}, 0) for cid in chunk]

    async def remove_gone(self, recipients: Sequence[Recipient]) -> int:
        return 0


@asynccontextmanager
async def _engine_memory(spec: Spec) -> AsyncIterator[Go]:
    """The engine with its registry in memory (a diagnostic, see the module docstring)."""
    source = _MemoryRegistry(connection_ids(spec.connections, spec.id_prefix))
    async with LeanGateway(
        _session(spec),
        default_endpoint=spec.management_url,
        region=spec.region,
        pool_size=spec.concurrency,
        ca_bundle=spec.ca_bundle,
    ) as gateway:
        await gateway.credentials()
        fanout = Fanout(source, gateway, concurrency=spec.concurrency)

        async def go() -> Account:
            report = await fanout.run(AllTarget(all=True), spec.payload.encode())
            return {"sent": report.delivered, "gone": report.gone, "failed": report.failed}

        yield go


@asynccontextmanager
async def _scan(spec: Spec) -> AsyncIterator[Go]:
    """The engine's registry read, with nothing sent (the floor's companion).

    With ``control_url`` it reads the next page only once the endpoint has counted as many posts
    as it had read before the page in hand, as the engine's prefetch does; if the posts stop for
    :data:`_PACE_STALL_S`, it reads the rest at once rather than wait for a run that has ended.
    """
    async with (
        _session(spec).client("dynamodb", endpoint_url=spec.moto_url) as dynamodb,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=spec.tls() or True)) as http,
    ):
        registry = Registry(dynamodb, spec.table)

        async def posts() -> int:
            url = f"{spec.control_url}/_wsfanout/stats"
            async with http.get(url, headers=signed_headers("GET", url)) as answer:
                return int((await answer.json(content_type=None))["posts"])

        async def go() -> Account:
            read = 0
            paced = spec.control_url is not None
            async for page in registry.pages(AllTarget(all=True)):
                before, read = read, read + len(page)
                seen, since = -1, anyio.current_time()
                while paced and (count := await posts()) < before:
                    if count != seen:
                        seen, since = count, anyio.current_time()
                    elif anyio.current_time() - since > _PACE_STALL_S:
                        paced = False
                    await anyio.sleep(_PACE_POLL_S)
            return {"read": read}

        yield go


@asynccontextmanager
async def _engine(
    spec: Spec, transport: type[LeanGateway] | type[RawGateway] | type[ManagementGateway]
) -> AsyncIterator[Go]:
    """The engine as shipped: registry stream, sender pool, retries, throttle, cleanup."""
    session = _session(spec)
    async with (
        session.client("dynamodb", endpoint_url=spec.moto_url) as dynamodb,
        transport(
            session,
            default_endpoint=spec.management_url,
            region=spec.region,
            pool_size=spec.concurrency,
            ca_bundle=spec.ca_bundle,
        ) as gateway,
    ):
        first_page = spec.first_page_size
        registry = Registry(dynamodb, spec.table)
        if first_page is not None:
            registry.first_page_size = first_page
        fanout = Fanout(
            registry,
            gateway,
            concurrency=spec.concurrency,
            pacing=spec.pacing,
        )
        if isinstance(gateway, LeanGateway):
            await gateway.credentials()  # what a warm container has already read

        async def go() -> Account:
            report = await fanout.run(
                AllTarget(all=True),
                spec.payload.encode(),
                segment=spec.segment,
                total_segments=spec.total_segments,
            )
            outcome: dict[str, Any] = report.model_dump(
                include={"delivered", "gone", "failed", "retries", "throttled", "cleaned_up"}
            )
            outcome["sent"] = outcome.pop("delivered")
            return {key: int(value) for key, value in outcome.items()}

        yield go
