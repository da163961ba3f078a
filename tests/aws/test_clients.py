"""The composition root: everything built from the settings, against moto server, and closed."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from tests.helpers import receive_all
from wsfanout.aws.clients import Clients
from wsfanout.aws.gateway import ManagementGateway
from wsfanout.aws.lean import LeanGateway
from wsfanout.aws.raw import RawGateway
from wsfanout.core.models import AllTarget, BroadcastJob
from wsfanout.exceptions import ConfigurationError
from wsfanout.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

URL = "http://127.0.0.1:9/test"


@pytest.fixture
async def queue_url(sqs: SQSClient) -> str:
    return (await sqs.create_queue(QueueName=f"clients-{uuid.uuid4().hex[:12]}"))["QueueUrl"]


def settings(table: str, queue: str, **fields: object) -> Settings:
    return Settings(
        connections_table=table,
        broadcast_queue_url=queue,
        apigw_management_endpoint=URL,
        **fields,  # type: ignore[arg-type]
    )


async def test_every_part_comes_from_the_settings_once(
    table_name: str, queue_url: str, sqs: SQSClient
) -> None:
    chosen = settings(
        table_name, queue_url, registry_page_size=77, broadcast_segments=3, fanout_concurrency=9
    )
    async with Clients(chosen) as clients:
        registry = await clients.registry()
        assert (registry.table_name, registry.page_size) == (table_name, 77)
        assert await clients.registry() is registry, "built once, then shared"
        assert (await clients.progress()).table_name == table_name
        queue = await clients.job_queue()
        assert queue.queue_url == queue_url
        sender = await clients.sender()
        assert type(sender) is LeanGateway  # the default
        assert sender.default_endpoint == URL
        fanout = await clients.fanout()
        assert fanout.concurrency == 9
        runner = await clients.job_runner()
        # the runner splits an "all" job into the configured segments, through the same queue
        result = await runner.run(
            BroadcastJob(target=AllTarget(all=True), data="x"), message_id="m1", deadline=0.0
        )
        assert result.segments == 3
    bodies = await receive_all(sqs, queue_url)
    segments = [BroadcastJob.model_validate_json(body).segment for body in bodies]
    assert None not in segments
    assert sorted(s for s in segments if s is not None) == [0, 1, 2]


async def test_the_raw_transport_is_chosen_by_its_setting(table_name: str) -> None:
    async with Clients(settings(table_name, "", fanout_transport="raw")) as clients:
        sender = await clients.sender()
        assert type(sender) is RawGateway
        assert sender.default_endpoint == URL
        assert await clients.sender() is sender


async def test_the_botocore_transport_is_the_gateway_itself(table_name: str) -> None:
    async with Clients(settings(table_name, "", fanout_transport="botocore")) as clients:
        gateway = await clients.gateway()
        assert isinstance(gateway, ManagementGateway)
        assert await clients.sender() is gateway


async def test_what_a_part_needs_is_asked_for_when_it_is_built() -> None:
    async with Clients(Settings()) as clients:
        with pytest.raises(ConfigurationError, match="CONNECTIONS_TABLE"):
            await clients.registry()
        with pytest.raises(ConfigurationError, match="BROADCAST_QUEUE_URL"):
            await clients.job_queue()


async def test_leaving_the_block_forgets_what_it_closed(table_name: str) -> None:
    clients = Clients(settings(table_name, ""))
    async with clients:
        first = await clients.registry()
    async with clients:
        assert await clients.registry() is not first, "a closed client is never handed out again"
