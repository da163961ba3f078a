"""The management API's checks: ``@connections`` errors, signatures, and what it does to a
live client (its post, its description, its delete, its 410 once the client left)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio

from ...aws.sigv4 import Credentials
from .runner import (
    MALFORMED_ID,
    UNKNOWN_ID,
    USER_AGENT,
    WAIT_S,
    ConformanceTarget,
    Verdict,
    answer_of,
    check,
    expect,
    failed,
    passed,
)

if TYPE_CHECKING:
    from types_aiobotocore_apigatewaymanagementapi import ApiGatewayManagementApiClient

__all__ = ["gone_within"]  # the checks register themselves; their helper is shared


@check("malformed connection id: 400 BadRequestException")
async def _malformed(target: ConformanceTarget) -> Verdict:
    async with target.client() as client:
        got = await answer_of(client.post_to_connection(ConnectionId=MALFORMED_ID, Data=b"x"))
    return expect(got, "BadRequestException", 400)


@check("unknown well-formed id: 410 GoneException")
async def _unknown(target: ConformanceTarget) -> Verdict:
    async with target.client() as client:
        got = await answer_of(client.post_to_connection(ConnectionId=UNKNOWN_ID, Data=b"x"))
    return expect(got, "GoneException", 410)


@check("unsigned request: 403 MissingAuthenticationTokenException")
async def _unsigned(target: ConformanceTarget) -> Verdict:
    status, kind = await target.signed_post(UNKNOWN_ID, None)
    return expect((kind, status), "MissingAuthenticationTokenException", 403)


@check("unknown access key: 403 UnrecognizedClientException")
async def _unknown_key(target: ConformanceTarget) -> Verdict:
    wrong = Credentials("AKIAIOSFODNN7EXAMPLE", target.credentials.secret_key, None)
    status, kind = await target.signed_post(UNKNOWN_ID, wrong)
    return expect((kind, status), "UnrecognizedClientException", 403)


@check("wrong secret key: 403 InvalidSignatureException")
async def _wrong_secret(target: ConformanceTarget) -> Verdict:
    own = target.credentials
    wrong = Credentials(own.access_key, own.secret_key + "x", own.token)
    status, kind = await target.signed_post(UNKNOWN_ID, wrong)
    return expect((kind, status), "InvalidSignatureException", 403)


@check("signature older than 5 minutes: 403 InvalidSignatureException")
async def _expired(target: ConformanceTarget) -> Verdict:
    status, kind = await target.signed_post(UNKNOWN_ID, target.credentials, time.time() - 600)
    return expect((kind, status), "InvalidSignatureException", 403)


@check("PostToConnection reaches a live client")
async def _post(target: ConformanceTarget) -> Verdict:
    text = f"conformance {time.time_ns()}"
    async with target.connect() as (ws, connection_id), target.client() as client:
        await client.post_to_connection(ConnectionId=connection_id, Data=text.encode())
        with anyio.fail_after(WAIT_S):
            message = await ws.receive()
    if message.type is aiohttp.WSMsgType.TEXT and message.data == text:
        return passed("the client got the posted text frame")
    return failed(f"the client got {message.type.name} {str(message.data)[:80]!r}")


@check("GetConnection describes a live client")
async def _get(target: ConformanceTarget) -> Verdict:
    async with target.connect() as (_, connection_id), target.client() as client:
        described = await client.get_connection(ConnectionId=connection_id)
    connected, active = described.get("ConnectedAt"), described.get("LastActiveAt")
    identity: Mapping[str, Any] = described.get("Identity") or {}
    now = datetime.now(UTC)
    problems = []
    if not isinstance(connected, datetime) or abs(now - connected) > timedelta(minutes=5):
        problems.append(f"ConnectedAt {connected!r} is not about now")
    if not isinstance(active, datetime) or (isinstance(connected, datetime) and active < connected):
        problems.append(f"LastActiveAt {active!r} is not at or after ConnectedAt")
    if not identity.get("SourceIp"):
        problems.append("Identity.SourceIp is missing")
    if identity.get("UserAgent") != USER_AGENT:
        problems.append(f"Identity.UserAgent is {identity.get('UserAgent')!r}")
    if problems:
        return failed("; ".join(problems))
    return passed("ConnectedAt, LastActiveAt, Identity.SourceIp and Identity.UserAgent")


@check("DeleteConnection closes the socket")
async def _delete(target: ConformanceTarget) -> Verdict:
    async with target.connect() as (ws, connection_id), target.client() as client:
        await client.delete_connection(ConnectionId=connection_id)
        with anyio.fail_after(WAIT_S):
            message = await ws.receive()
            while message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                message = await ws.receive()
        gone = await gone_within(client, connection_id)
    if message.type is not aiohttp.WSMsgType.CLOSE:
        return failed(f"the socket ended with {message.type.name}, not a close frame")
    if not gone:
        return failed(f"closed with {message.data}, but GetConnection still describes it")
    return passed(f"closed with {message.data}; then 410 GoneException")


@check("a client that left: 410 GoneException")
async def _left(target: ConformanceTarget) -> Verdict:
    async with target.connect() as (ws, connection_id):
        await ws.close()
    async with target.client() as client:
        if await gone_within(client, connection_id, post=True):
            return passed("410 GoneException once the client closed")
    return failed(f"PostToConnection still succeeded {WAIT_S:g} s after the client closed")


async def gone_within(
    client: ApiGatewayManagementApiClient, connection_id: str, *, post: bool = False
) -> bool:
    """Whether the connection answers 410 within :data:`WAIT_S` (a close takes a moment)."""
    give_up = anyio.current_time() + WAIT_S
    while True:
        call = (
            client.post_to_connection(ConnectionId=connection_id, Data=b"x")
            if post
            else client.get_connection(ConnectionId=connection_id)
        )
        code, _ = await answer_of(call)
        if code == "GoneException":
            return True
        if anyio.current_time() > give_up:
            return False
        await anyio.sleep(0.1)  # polling the target, bounded by give_up
