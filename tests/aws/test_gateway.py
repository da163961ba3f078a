"""The management API gateway: a real aiobotocore client against the local ``@connections``
endpoint, which answers with the same statuses and ``x-amzn-ErrorType`` headers as API Gateway,
so botocore's own error mapping is part of what is tested."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import aioboto3
import anyio
import pytest
from aiohttp import web
from botocore.exceptions import (
    ClientError,
)

from wsfanout.aws.gateway import ManagementGateway
from wsfanout.core.models import MAX_PAYLOAD_BYTES
from wsfanout.core.outcomes import Outcome
from wsfanout.exceptions import ConfigurationError, DeliveryError, ForbiddenError
from wsfanout.local.management import Faults, ManagementEndpoint, serve
from wsfanout.local.serving import serve_app

pytestmark = pytest.mark.timeout(60)

CID = "L0SM9cOFvHcCIhw="

# -- ManagementGateway against the local endpoint ----------------------------------------------


@pytest.fixture
async def gateway(
    session: aioboto3.Session, endpoint: tuple[ManagementEndpoint, str]
) -> AsyncIterator[ManagementGateway]:
    _, url = endpoint
    async with ManagementGateway(session, default_endpoint=url, timeout_s=5.0) as gw:
        yield gw


async def test_post_delivers_and_the_endpoint_records_the_bytes(gateway, endpoint) -> None:
    fake, _ = endpoint
    assert await gateway.post(CID, b"\x00hello\xff") is Outcome.DELIVERED
    assert await gateway.post(CID, b"again") is Outcome.DELIVERED
    assert fake.received(CID) == [b"\x00hello\xff", b"again"]
    assert fake.counts() == {CID: 2}


async def test_post_to_a_gone_connection(gateway, endpoint) -> None:
    fake, _ = endpoint
    fake.faults = Faults(gone_ids=frozenset({"g="}))
    assert await gateway.post("g=", b"x") is Outcome.GONE
    assert await gateway.post("live=", b"x") is Outcome.DELIVERED
    assert fake.counts() == {"live=": 1}


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        (Faults(throttle_rate=1.0), Outcome.THROTTLED),
        (Faults(error_rate=1.0), Outcome.SERVER_ERROR),
        (Faults(drop_rate=1.0), Outcome.NETWORK_ERROR),
    ],
    ids=["429", "500", "dropped"],
)
async def test_post_classifies_injected_faults(gateway, endpoint, faults, expected) -> None:
    fake, _ = endpoint
    fake.faults = faults
    with anyio.fail_after(10):
        assert await gateway.post(CID, b"x") is expected
    assert fake.counts() == {}


async def test_post_of_an_oversize_payload_is_too_large(gateway, endpoint) -> None:
    fake, _ = endpoint
    assert await gateway.post(CID, b"x" * (MAX_PAYLOAD_BYTES + 1)) is Outcome.TOO_LARGE
    assert fake.counts() == {}


async def test_post_when_forbidden(gateway, endpoint) -> None:
    fake, _ = endpoint
    fake.forbid_all = True
    assert await gateway.post(CID, b"x") is Outcome.FORBIDDEN
    assert fake.counts() == {}


async def test_get_connection_describes_a_live_connection(gateway) -> None:
    info = await gateway.get_connection(CID)
    assert info is not None
    assert "ResponseMetadata" not in info
    assert set(info) == {"ConnectedAt", "Identity", "LastActiveAt"}
    assert isinstance(info["ConnectedAt"], datetime)
    assert isinstance(info["LastActiveAt"], datetime)
    assert info["Identity"]["SourceIp"] == "127.0.0.1"


async def test_get_connection_of_a_gone_id_is_none(gateway, endpoint) -> None:
    fake, _ = endpoint
    fake.faults = Faults(gone_ids=frozenset({"g="}))
    assert await gateway.get_connection("g=") is None


async def test_delete_connection_true_then_false(gateway, endpoint) -> None:
    fake, _ = endpoint
    assert await gateway.delete_connection(CID) is True
    assert not fake.is_live(CID)
    assert await gateway.delete_connection(CID) is False
    assert await gateway.get_connection(CID) is None
    assert await gateway.post(CID, b"x") is Outcome.GONE


@pytest.mark.parametrize("operation", ["get_connection", "delete_connection"])
async def test_connection_calls_when_forbidden_raise_naming_the_endpoint(
    gateway, endpoint, operation: str
) -> None:
    fake, url = endpoint
    fake.forbid_all = True
    with pytest.raises(ForbiddenError) as raised:
        await getattr(gateway, operation)(CID)
    assert raised.value.endpoint == url
    assert url in str(raised.value)


async def test_wrong_stage_is_forbidden_and_names_the_endpoint(session) -> None:
    """API Gateway answers 403 for a stage it does not serve: a wrong endpoint, not a gone id."""
    fake = ManagementEndpoint(stage="prod")
    async with serve(fake) as url:
        wrong = f"{url}/other"
        async with ManagementGateway(session, default_endpoint=wrong) as gw:
            assert await gw.post(CID, b"x") is Outcome.FORBIDDEN
            with pytest.raises(ForbiddenError) as raised:
                await gw.get_connection(CID)
    assert raised.value.endpoint == wrong
    assert wrong in str(raised.value)


@asynccontextmanager
async def answering(status: int, error_type: str) -> AsyncIterator[str]:
    """A server that answers every request with one error, as a failing API Gateway would."""

    async def handle(_request: web.Request) -> web.Response:
        return web.json_response(
            {"message": "boom"}, status=status, headers={"x-amzn-ErrorType": error_type}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with serve_app(app) as url:
        yield f"{url}/prod"


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(500, "InternalServerErrorException"), (400, "BadRequestException")],
)
async def test_other_errors_of_get_and_delete_raise_delivery_error(
    session, status: int, error_type: str
) -> None:
    async with (
        answering(status, error_type) as url,
        ManagementGateway(session, default_endpoint=url) as gw,
    ):
        with pytest.raises(DeliveryError) as raised:
            await gw.get_connection(CID)
        assert not isinstance(raised.value, ForbiddenError)
        assert raised.value.endpoint == url
        assert isinstance(raised.value.__cause__, ClientError)
        with pytest.raises(DeliveryError):
            await gw.delete_connection(CID)


async def test_no_endpoint_at_all_is_a_configuration_error(session) -> None:
    async with ManagementGateway(session) as gw:
        with pytest.raises(ConfigurationError, match="APIGW_MANAGEMENT_ENDPOINT"):
            await gw.post(CID, b"x", endpoint=None)
        with pytest.raises(ConfigurationError):
            await gw.get_connection(CID)


async def test_gateway_without_default_uses_the_given_endpoint(session, endpoint) -> None:
    fake, url = endpoint
    async with ManagementGateway(session) as gw:
        assert await gw.post(CID, b"x", endpoint=url) is Outcome.DELIVERED
    assert fake.counts() == {CID: 1}


async def test_per_call_endpoint_overrides_the_default(gateway, endpoint) -> None:
    default_fake, _ = endpoint
    other_fake = ManagementEndpoint()
    async with serve(other_fake) as other_url:
        other = f"{other_url}/prod"
        assert await gateway.post("a=", b"to-other", endpoint=other) is Outcome.DELIVERED
        assert await gateway.post("b=", b"to-other", endpoint=other + "/") is Outcome.DELIVERED
        assert await gateway.post("c=", b"to-default") is Outcome.DELIVERED
    assert other_fake.counts() == {"a=": 1, "b=": 1}
    assert default_fake.counts() == {"c=": 1}


async def test_clients_are_reused_per_endpoint(gateway, endpoint) -> None:
    _, url = endpoint
    first = await gateway.client()
    assert await gateway.client(url) is first
    assert await gateway.client(url + "/") is first


async def test_dead_port_is_a_network_error(session) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with ManagementGateway(
        session, default_endpoint=f"http://127.0.0.1:{port}/test", timeout_s=2.0
    ) as gw:
        with anyio.fail_after(10):
            assert await gw.post(CID, b"x") is Outcome.NETWORK_ERROR
