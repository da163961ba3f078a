"""Shared fixtures: one moto server per session, a fresh table per test, a local endpoint.

Tests never see the developer's own AWS settings: every ``AWS_*`` variable is cleared and the
config files point nowhere, then dummy credentials and moto's endpoints are set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import aioboto3
import pytest

from wsfanout.aws.account import CREDENTIALS, REGION
from wsfanout.aws.registry import Registry
from wsfanout.aws.table import table_definition
from wsfanout.core import pacing
from wsfanout.local.management import Faults, ManagementEndpoint, serve
from wsfanout.local.processes import moto_server

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sqs import SQSClient

STAGE = "test"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: pytest.FixtureRequest):
    for name in list(os.environ):
        if name.startswith("AWS_") or name in {
            "CONNECTIONS_TABLE",
            "BROADCAST_QUEUE_URL",
            "BROADCAST_DLQ_URL",
            "APIGW_MANAGEMENT_ENDPOINT",
        }:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    if "moto_url" in request.fixturenames:
        url = request.getfixturevalue("moto_url")
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", url)


@pytest.fixture
def session() -> aioboto3.Session:
    return aioboto3.Session(region_name=REGION)


@pytest.fixture
async def dynamodb(moto_url: str, session: aioboto3.Session) -> AsyncIterator[DynamoDBClient]:
    async with session.client("dynamodb", endpoint_url=moto_url) as client:
        yield client


@pytest.fixture
async def table_name(dynamodb: DynamoDBClient) -> AsyncIterator[str]:
    """A fresh registry table (with GSI1 and TTL) per test, deleted afterwards."""
    name = f"wsfanout-{uuid.uuid4().hex[:12]}"
    await dynamodb.create_table(**table_definition(name))
    await dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
    )
    yield name
    await dynamodb.delete_table(TableName=name)


@pytest.fixture
def registry(dynamodb: DynamoDBClient, table_name: str) -> Registry:
    return Registry(dynamodb, table_name, page_size=100)


@pytest.fixture
async def sqs(moto_url: str, session: aioboto3.Session) -> AsyncIterator[SQSClient]:
    async with session.client("sqs", endpoint_url=moto_url) as client:
        yield client


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The retry helpers' backoff pauses (``wsfanout.core.pacing``), recorded instead of slept."""
    recorded: list[float] = []

    async def sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(pacing, "anyio", SimpleNamespace(sleep=sleep))
    return recorded


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[ManagementEndpoint, str]]:
    """The local management endpoint (open mode: every id not marked gone is live)."""
    fake = ManagementEndpoint(faults=Faults())
    async with serve(fake) as url:
        yield fake, f"{url}/{STAGE}"
