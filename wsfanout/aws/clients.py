"""Opening the AWS clients wsfanout needs, once, from :class:`~wsfanout.settings.Settings`.

Every client is entered with ``async with`` and closed when the :class:`Clients` block ends, so
no connection pool is left open. Endpoints come from botocore's own ``AWS_ENDPOINT_URL*``
variables, which is how moto server and the local stack are reached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aioboto3
from botocore.config import Config

from ..core.fanout import Fanout
from ..core.interfaces import Gateway
from ..core.jobs import JobRunner
from ..core.pacing import RetryPolicy
from ..settings import Settings
from .base import Owner
from .gateway import ManagementGateway
from .history import RoomHistory
from .lean import LeanGateway
from .progress import Checkpoints
from .queue import JobQueue
from .raw import RawGateway
from .registry import Registry

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sqs import SQSClient

__all__ = ["Clients"]


class Clients(Owner):
    """The registry, the management gateway and (when configured) SQS, sharing one session;
    and what is built on them (engine, job queue, job progress, job runner), configured from
    the settings here and nowhere else."""

    def __init__(self, settings: Settings, *, session: aioboto3.Session | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.session = session or aioboto3.Session(region_name=settings.aws_region)
        self._dynamodb: DynamoDBClient | None = None
        self._registry: Registry | None = None
        self._gateway: ManagementGateway | None = None
        self._sender: Gateway | None = None
        self._sqs: SQSClient | None = None
        self._job_queue: JobQueue | None = None
        self._progress: Checkpoints | None = None
        self._history: RoomHistory | None = None

    def _forget(self) -> None:
        self._dynamodb = self._registry = self._gateway = self._sender = self._sqs = None
        self._job_queue = self._progress = self._history = None

    async def dynamodb(self) -> DynamoDBClient:
        """The DynamoDB client (created on first use)."""
        if self._dynamodb is None:
            client: DynamoDBClient = await self._stack.enter_async_context(
                self.session.client(
                    "dynamodb",
                    region_name=self.settings.aws_region,
                    config=Config(max_pool_connections=32, retries={"mode": "standard"}),
                )
            )
            self._dynamodb = client
        return self._dynamodb

    async def registry(self) -> Registry:
        """The connection registry on ``CONNECTIONS_TABLE``."""
        if self._registry is None:
            table = self.settings.require_table()
            self._registry = Registry(
                await self.dynamodb(),
                table,
                page_size=self.settings.registry_page_size,
                ttl_seconds=self.settings.connection_ttl_seconds,
            )
        return self._registry

    async def history(self) -> RoomHistory:
        """Durable rooms' history, in the registry's table, bounded by ``ROOM_HISTORY_*``.

        :raises ConfigurationError: when ``CONNECTIONS_TABLE`` is not set.
        """
        if self._history is None:
            settings = self.settings
            self._history = RoomHistory(
                await self.dynamodb(),
                settings.require_table(),
                bounds=settings.history_bounds(),
            )
        return self._history

    async def gateway(self) -> ManagementGateway:
        """The full management API (GetConnection, DeleteConnection too) over aiobotocore."""
        if self._gateway is None:
            self._gateway = await self._stack.enter_async_context(
                ManagementGateway.from_settings(self.session, self.settings)
            )
        return self._gateway

    async def sender(self) -> Gateway:
        """What the engine posts through (``FANOUT_TRANSPORT``): the lean transport over aiohttp
        or over raw asyncio connections, or the aiobotocore client."""
        if self._sender is None:
            settings = self.settings
            if settings.fanout_transport == "botocore":
                self._sender = await self.gateway()
            else:
                transport = RawGateway if settings.fanout_transport == "raw" else LeanGateway
                self._sender = await self._stack.enter_async_context(
                    transport.from_settings(self.session, settings)
                )
        return self._sender

    async def fanout(self) -> Fanout:
        """A fan-out engine over this registry and gateway, tuned by the settings."""
        settings = self.settings
        return Fanout(
            await self.registry(),
            await self.sender(),
            concurrency=settings.fanout_concurrency,
            retry=RetryPolicy(
                max_attempts=settings.fanout_max_attempts,
                base_s=settings.fanout_backoff_base_s,
                max_s=settings.fanout_backoff_max_s,
            ),
        )

    async def sqs(self) -> SQSClient:
        """An SQS client (for enqueuing broadcast jobs)."""
        if self._sqs is None:
            client: SQSClient = await self._stack.enter_async_context(
                self.session.client("sqs", region_name=self.settings.aws_region)
            )
            self._sqs = client
        return self._sqs

    async def job_queue(self) -> JobQueue:
        """The broadcast job queue on ``BROADCAST_QUEUE_URL`` (which enqueuing requires)."""
        if self._job_queue is None:
            self._job_queue = JobQueue(await self.sqs(), self.settings.broadcast_queue_url)
        return self._job_queue

    async def progress(self) -> Checkpoints:
        """Broadcast jobs' progress items, kept in the registry's table.

        :raises ConfigurationError: when ``CONNECTIONS_TABLE`` is not set.
        """
        if self._progress is None:
            self._progress = Checkpoints(
                await self.dynamodb(),
                self.settings.require_table(),
                ttl_seconds=self.settings.job_ttl_seconds,
            )
        return self._progress

    async def job_runner(self) -> JobRunner:
        """A runner of broadcast job messages over this engine, queue and progress store.

        :raises ConfigurationError: when ``CONNECTIONS_TABLE`` is not set.
        """
        settings = self.settings
        return JobRunner(
            await self.fanout(),
            await self.job_queue(),
            await self.progress(),
            segments=settings.broadcast_segments,
            checkpoint_every=settings.registry_page_size,
        )
