"""The management API gateway: the error table of docs/contracts.md, and a real aiobotocore
client against the local ``@connections`` endpoint (which answers with the same statuses and
``x-amzn-ErrorType`` headers as API Gateway, so botocore's own error mapping is part of what is
tested)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aioboto3
import anyio
import pytest
from aiohttp import web
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from wsfanout.aws.endpoints import DEFAULT_REGION, region_of_endpoint
from wsfanout.aws.errors import classify_exception
from wsfanout.aws.gateway import ManagementGateway
from wsfanout.core.models import MAX_PAYLOAD_BYTES
from wsfanout.core.outcomes import Outcome, classify
from wsfanout.exceptions import ConfigurationError, DeliveryError, ForbiddenError
from wsfanout.local.management import Faults, ManagementEndpoint, serve
from wsfanout.local.serving import serve_app

pytestmark = pytest.mark.timeout(60)

CID = "L0SM9cOFvHcCIhw="

# -- classify: the error table of docs/contracts.md ---------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (200, None, Outcome.DELIVERED),
        (204, None, Outcome.DELIVERED),
        (410, None, Outcome.GONE),
        (410, "GoneException", Outcome.GONE),
        (400, "GoneException", Outcome.GONE),
        (500, "GoneException", Outcome.GONE),
        (429, None, Outcome.THROTTLED),
        (429, "LimitExceededException", Outcome.THROTTLED),
        (400, "LimitExceededException", Outcome.THROTTLED),
        (429, "TooManyRequestsException", Outcome.THROTTLED),
        (400, "TooManyRequestsException", Outcome.THROTTLED),
        (500, None, Outcome.SERVER_ERROR),
        (500, "InternalServerErrorException", Outcome.SERVER_ERROR),
        (502, None, Outcome.SERVER_ERROR),
        (503, None, Outcome.SERVER_ERROR),
        (504, None, Outcome.SERVER_ERROR),
        (413, None, Outcome.TOO_LARGE),
        (413, "PayloadTooLargeException", Outcome.TOO_LARGE),
        (400, "PayloadTooLargeException", Outcome.TOO_LARGE),
        (403, None, Outcome.FORBIDDEN),
        (403, "ForbiddenException", Outcome.FORBIDDEN),
        (400, "ForbiddenException", Outcome.FORBIDDEN),
        (400, None, Outcome.REJECTED),
        (400, "BadRequestException", Outcome.REJECTED),
        (404, None, Outcome.REJECTED),
    ],
)
def test_classify(status: int, error_type: str | None, expected: Outcome) -> None:
    assert classify(status, error_type) is expected


def _client_error(code: str, status: int | None) -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": "from the test"}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, "PostToConnection")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("GoneException", 410, Outcome.GONE),
        ("GoneException", None, Outcome.GONE),
        ("LimitExceededException", 429, Outcome.THROTTLED),
        ("InternalServerErrorException", 500, Outcome.SERVER_ERROR),
        ("502", 502, Outcome.SERVER_ERROR),
        ("PayloadTooLargeException", 413, Outcome.TOO_LARGE),
        ("ForbiddenException", 403, Outcome.FORBIDDEN),
        ("BadRequestException", 400, Outcome.REJECTED),
    ],
)
def test_classify_client_error(code: str, status: int | None, expected: Outcome) -> None:
    assert classify_exception(_client_error(code, status)) is expected


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionClosedError(endpoint_url="https://x/prod"),
        ReadTimeoutError(endpoint_url="https://x/prod"),
        EndpointConnectionError(endpoint_url="https://x/prod"),
        ConnectionResetError("reset by peer"),
        TimeoutError(),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_network_failures_are_network_errors(exc: BaseException) -> None:
    assert classify_exception(exc) is Outcome.NETWORK_ERROR


@pytest.mark.parametrize("exc", [KeyError("ConnectionId"), ValueError("bug")], ids=repr)
def test_unrelated_exceptions_are_re_raised(exc: Exception) -> None:
    with pytest.raises(type(exc)) as raised:
        classify_exception(exc)
    assert raised.value is exc


RETRYABLE = {
    Outcome.DELIVERED: False,
    Outcome.GONE: False,
    Outcome.THROTTLED: True,
    Outcome.SERVER_ERROR: True,
    Outcome.NETWORK_ERROR: True,
    Outcome.FORBIDDEN: False,
    Outcome.TOO_LARGE: False,
    Outcome.REJECTED: False,
}


def test_retryable_table_covers_every_outcome() -> None:
    assert set(RETRYABLE) == set(Outcome)


@pytest.mark.parametrize(("outcome", "expected"), RETRYABLE.items(), ids=str)
def test_outcome_retryable(outcome: Outcome, expected: bool) -> None:
    assert outcome.retryable is expected


@pytest.mark.parametrize(
    ("endpoint", "default", "expected"),
    [
        ("https://abc123.execute-api.eu-west-2.amazonaws.com/prod", None, "eu-west-2"),
        ("https://abc123.execute-api.eu-west-2.amazonaws.com/prod", "us-west-1", "eu-west-2"),
        ("https://abc123.execute-api.cn-north-1.amazonaws.com.cn/prod", None, "cn-north-1"),
        ("https://ws.example.com/prod", "ap-southeast-2", "ap-southeast-2"),
        ("https://ws.example.com/prod", None, DEFAULT_REGION),
        ("http://127.0.0.1:8080/test", "", DEFAULT_REGION),
    ],
)
def test_region_of_endpoint(endpoint: str, default: str | None, expected: str) -> None:
    assert region_of_endpoint(endpoint, default) == expected


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
