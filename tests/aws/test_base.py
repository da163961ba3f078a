"""The adapters' shared base: what an Owner opened closes with it; transports from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aioboto3
import pytest

from wsfanout.aws.base import ManagementTransport, Owner
from wsfanout.settings import Settings


class Opener(Owner):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log
        self.open: list[str] = []

    @asynccontextmanager
    async def _resource(self, name: str) -> AsyncIterator[str]:
        self.log.append(f"open {name}")
        try:
            yield name
        finally:
            self.log.append(f"close {name}")

    async def use(self, name: str) -> None:
        self.open.append(await self._stack.enter_async_context(self._resource(name)))

    def _forget(self) -> None:
        self.log.append(f"forget {self.open}")
        self.open = []


async def test_an_owner_closes_what_it_opened_in_reverse_even_when_the_block_fails() -> None:
    log: list[str] = []
    owner = Opener(log)

    async def fail_inside() -> None:
        async with owner:
            await owner.use("a")
            await owner.use("b")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_inside()
    assert log == ["open a", "open b", "forget ['a', 'b']", "close b", "close a"]
    assert owner.open == []


def test_a_transport_takes_the_settings_endpoint_region_pool_and_timeout() -> None:
    settings = Settings(
        apigw_management_endpoint="https://abc.execute-api.eu-west-2.amazonaws.com/prod/",
        aws_region="us-west-1",
        fanout_concurrency=3,
        fanout_request_timeout_s=2.5,
    )
    transport = ManagementTransport.from_settings(aioboto3.Session(), settings)
    assert transport.default_endpoint == "https://abc.execute-api.eu-west-2.amazonaws.com/prod"
    assert transport._region_of(transport._resolve(None)) == "eu-west-2"
    assert transport._region_of("http://127.0.0.1:1/x") == "us-west-1"
    assert transport._pool_size == 10, "a pool is never smaller than ten connections"
    assert transport._timeout_s == 2.5
