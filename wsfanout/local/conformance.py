"""Does a WebSocket API behave like API Gateway? One small check per behaviour, against any stage.

Every check drives the target only through its two public URLs (the WebSocket URL clients
connect to, the management URL of ``@connections``) with the caller's credentials, so the same
run judges the local stack (with ``wsfanout dev``'s exports) and a real AWS stage (with the
caller's own credentials and region). A check that needs a client's connection id learns it as
any client of the built-in chat app can: it sends ``{"action": "whoami"}`` and reads the id from
the ack (docs/contracts.md, "Client protocol"), on AWS and locally alike.

Checks that need a knob only the local stack has (an account throttle, a short idle timeout)
read it from the stack's signed ``GET /_wsfanout/config``; a target without that route (AWS)
makes them skip, with the reason. Adding a check is a decorated coroutine::

    @check("binary frame closes with 1003")
    async def _binary(target: Target) -> Verdict:
        async with target.client() as client:
            ...
        return passed("closed with 1003")

It returns :func:`passed`, :func:`failed` or :func:`skipped`; an exception it raises, or running
past :data:`CHECK_TIMEOUT_S`, fails it with the reason. Checks run one after another, in the
order they are registered (the throttle's last but one, so it cannot starve the others).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

import aioboto3
import aiohttp
import anyio
import botocore.config
from botocore.exceptions import ClientError

from ..aws.sigv4 import Credentials, PostSigner
from ..exceptions import ConfigurationError, InvalidInputError
from .signatures import signed_headers

if TYPE_CHECKING:
    from types_aiobotocore_apigatewaymanagementapi import ApiGatewayManagementApiClient

__all__ = [
    "CHECKS",
    "CHECK_TIMEOUT_S",
    "Result",
    "Target",
    "Verdict",
    "check",
    "failed",
    "open_target",
    "passed",
    "run_checks",
    "skipped",
]

CHECK_TIMEOUT_S: Final = 60.0
"""A check running longer fails: every wait inside one is bounded well below this."""

WAIT_S: Final = 10.0
"""How long a check waits for the target to act (a frame, a close, a connection gone)."""

MALFORMED_ID: Final = "not-a-connection-id"
UNKNOWN_ID: Final = "AAAAAAAAAAAAAAA="
"""Well-formed (16 characters of API Gateway's alphabet, one ``=``), never issued."""

_USER_AGENT: Final = "wsfanout-conformance"
_IDLE_MAX_S: Final = 30.0  # idle timeouts longer than this are not waited for


@dataclass(frozen=True, slots=True)
class Result:
    """One behaviour's verdict: ``pass``, ``fail`` or ``skip``, and what was seen (or why not)."""

    name: str
    outcome: Literal["pass", "fail", "skip"]
    detail: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a check returns: made by :func:`passed`, :func:`failed` or :func:`skipped`."""

    outcome: Literal["pass", "fail", "skip"]
    detail: str


def passed(detail: str) -> Verdict:
    """The behaviour is as on AWS; ``detail`` says what was seen."""
    return Verdict("pass", detail)


def failed(detail: str) -> Verdict:
    """The behaviour differs; ``detail`` says what was expected and what came."""
    return Verdict("fail", detail)


def skipped(reason: str) -> Verdict:
    """The target cannot show this behaviour (no such knob); ``reason`` says how it could."""
    return Verdict("skip", reason)


@dataclass
class Target:
    """The stage under test: its URLs, the caller's credentials, and the local knobs if any."""

    ws_url: str
    management_url: str
    session: aioboto3.Session
    credentials: Credentials
    region: str
    http: aiohttp.ClientSession
    config: Mapping[str, Any] | None = None
    """The local stack's knobs (``GET /_wsfanout/config``); ``None`` for a real stage."""
    _signer: PostSigner | None = field(default=None, repr=False)

    @asynccontextmanager
    async def client(self) -> AsyncIterator[ApiGatewayManagementApiClient]:
        """A management API client as an application makes one, but without retries: each
        answer is the target's own."""
        config = botocore.config.Config(retries={"total_max_attempts": 1})
        async with self.session.client(
            "apigatewaymanagementapi", endpoint_url=self.management_url, config=config
        ) as client:
            yield client

    @asynccontextmanager
    async def socket(self) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """A WebSocket client that has sent nothing yet (its id unknown)."""
        async with self.http.ws_connect(
            self.ws_url, headers={"User-Agent": _USER_AGENT}, autoclose=False
        ) as ws:
            yield ws

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[tuple[aiohttp.ClientWebSocketResponse, str]]:
        """A WebSocket client and its connection id (learnt with ``whoami``)."""
        async with self.socket() as ws:
            await ws.send_str(json.dumps({"action": "whoami"}))
            with anyio.fail_after(WAIT_S):
                while True:
                    message = await ws.receive()
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        raise ConfigurationError(f"no whoami answer; the socket got {message}")
                    frame = json.loads(message.data)
                    if frame.get("action") == "whoami" and "connectionId" in frame:
                        break
            yield ws, str(frame["connectionId"])

    async def signed_post(
        self, connection_id: str, credentials: Credentials | None, now: float | None = None
    ) -> tuple[int, str]:
        """POST ``x`` to a connection, signed with ``credentials`` (``None``: unsigned) at
        ``now``; the status and ``x-amzn-ErrorType`` of the answer."""
        if self._signer is None:
            self._signer = PostSigner(self.management_url, self.region)
        url, headers = self._signer.sign(connection_id, b"x", credentials or self.credentials, now)
        async with self.http.post(
            url, data=b"x", headers=headers if credentials is not None else {}
        ) as answer:
            return answer.status, answer.headers.get("x-amzn-ErrorType", "")


Check = Callable[[Target], Awaitable[Verdict]]
CHECKS: dict[str, Check] = {}
"""Every registered check by behaviour, in the order they run."""


def check(name: str) -> Callable[[Check], Check]:
    """Register a check of the behaviour ``name`` (the row of the table).

    :raises ConfigurationError: ``name`` is taken.
    """

    def register(func: Check) -> Check:
        if name in CHECKS:
            raise ConfigurationError(f"a conformance check named {name!r} exists already")
        CHECKS[name] = func
        return func

    return register


def _error_of(exc: ClientError) -> tuple[str, int]:
    response: Any = exc.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


async def _answer(call: Awaitable[object]) -> tuple[str, int]:
    """The error code and status a management call got (``("", 200)`` when it succeeded)."""
    try:
        await call
    except ClientError as exc:
        return _error_of(exc)
    return "", 200


def _expect(got: tuple[str, int], code: str, status: int) -> Verdict:
    if got == (code, status):
        return passed(f"{status} {code}")
    return failed(f"expected {status} {code}, got {got[1]} {got[0] or '(no error)'}")


# -- the checks ------------------------------------------------------------------------------------


@check("malformed connection id: 400 BadRequestException")
async def _malformed(target: Target) -> Verdict:
    async with target.client() as client:
        got = await _answer(client.post_to_connection(ConnectionId=MALFORMED_ID, Data=b"x"))
    return _expect(got, "BadRequestException", 400)


@check("unknown well-formed id: 410 GoneException")
async def _unknown(target: Target) -> Verdict:
    async with target.client() as client:
        got = await _answer(client.post_to_connection(ConnectionId=UNKNOWN_ID, Data=b"x"))
    return _expect(got, "GoneException", 410)


@check("unsigned request: 403 MissingAuthenticationTokenException")
async def _unsigned(target: Target) -> Verdict:
    status, kind = await target.signed_post(UNKNOWN_ID, None)
    return _expect((kind, status), "MissingAuthenticationTokenException", 403)


@check("unknown access key: 403 UnrecognizedClientException")
async def _unknown_key(target: Target) -> Verdict:
    wrong = Credentials("AKIAIOSFODNN7EXAMPLE", target.credentials.secret_key, None)
    status, kind = await target.signed_post(UNKNOWN_ID, wrong)
    return _expect((kind, status), "UnrecognizedClientException", 403)


@check("wrong secret key: 403 InvalidSignatureException")
async def _wrong_secret(target: Target) -> Verdict:
    own = target.credentials
    wrong = Credentials(own.access_key, own.secret_key + "x", own.token)
    status, kind = await target.signed_post(UNKNOWN_ID, wrong)
    return _expect((kind, status), "InvalidSignatureException", 403)


@check("signature older than 5 minutes: 403 InvalidSignatureException")
async def _expired(target: Target) -> Verdict:
    status, kind = await target.signed_post(UNKNOWN_ID, target.credentials, time.time() - 600)
    return _expect((kind, status), "InvalidSignatureException", 403)


@check("PostToConnection reaches a live client")
async def _post(target: Target) -> Verdict:
    text = f"conformance {time.time_ns()}"
    async with target.connect() as (ws, connection_id), target.client() as client:
        await client.post_to_connection(ConnectionId=connection_id, Data=text.encode())
        with anyio.fail_after(WAIT_S):
            message = await ws.receive()
    if message.type is aiohttp.WSMsgType.TEXT and message.data == text:
        return passed("the client got the posted text frame")
    return failed(f"the client got {message.type.name} {str(message.data)[:80]!r}")


@check("GetConnection describes a live client")
async def _get(target: Target) -> Verdict:
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
    if identity.get("UserAgent") != _USER_AGENT:
        problems.append(f"Identity.UserAgent is {identity.get('UserAgent')!r}")
    if problems:
        return failed("; ".join(problems))
    return passed("ConnectedAt, LastActiveAt, Identity.SourceIp and Identity.UserAgent")


@check("DeleteConnection closes the socket")
async def _delete(target: Target) -> Verdict:
    async with target.connect() as (ws, connection_id), target.client() as client:
        await client.delete_connection(ConnectionId=connection_id)
        with anyio.fail_after(WAIT_S):
            message = await ws.receive()
            while message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                message = await ws.receive()
        gone = await _gone_within(client, connection_id)
    if message.type is not aiohttp.WSMsgType.CLOSE:
        return failed(f"the socket ended with {message.type.name}, not a close frame")
    if not gone:
        return failed(f"closed with {message.data}, but GetConnection still describes it")
    return passed(f"closed with {message.data}; then 410 GoneException")


@check("a client that left: 410 GoneException")
async def _left(target: Target) -> Verdict:
    async with target.connect() as (ws, connection_id):
        await ws.close()
    async with target.client() as client:
        if await _gone_within(client, connection_id, post=True):
            return passed("410 GoneException once the client closed")
    return failed(f"PostToConnection still succeeded {WAIT_S:g} s after the client closed")


async def _gone_within(
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
        code, _ = await _answer(call)
        if code == "GoneException":
            return True
        if anyio.current_time() > give_up:
            return False
        await anyio.sleep(0.1)  # polling the target, bounded by give_up


@check("account throttle: 429 LimitExceededException")
async def _throttle(target: Target) -> Verdict:
    rate = (target.config or {}).get("account_rate")
    burst = (target.config or {}).get("account_burst")
    if not rate or not burst:
        return skipped(
            "the target has no account throttle knob (locally: wsfanout dev --account-rate R)"
        )
    limit = int(10 * burst + 10 * rate + 100)
    got: tuple[str, int] = ("", 200)
    async with target.client() as client:
        sent = 0
        while sent < limit:
            sent += 1
            got = await _answer(client.get_connection(ConnectionId=UNKNOWN_ID))
            if got[1] == 429:
                break
        else:
            return failed(f"{limit} requests at once, none throttled (rate {rate}/s)")
        verdict = _expect(got, "LimitExceededException", 429)
        # Let the bucket refill before the next check, and check that it does.
        give_up = anyio.current_time() + burst / rate + WAIT_S
        while (await _answer(client.get_connection(ConnectionId=UNKNOWN_ID)))[1] == 429:
            if anyio.current_time() > give_up:
                return failed("throttled, and still throttled after the bucket should refill")
            await anyio.sleep(1 / rate)  # polling at the refill rate, bounded by give_up
    if verdict.outcome != "pass":
        return verdict
    return passed(f"request {sent} got 429 LimitExceededException (burst {burst}); then refilled")


@check("idle connection: closed with 1001")
async def _idle(target: Target) -> Verdict:
    idle = (target.config or {}).get("idle_timeout_s")
    if not idle or idle > _IDLE_MAX_S:
        return skipped(
            f"the idle timeout is {idle or 600:g} s; run the local stack with --idle-timeout 3"
        )
    # No frame at all (not even whoami, whose answer may take longer than a short timeout):
    # the idle clock starts at the handshake.
    async with target.socket() as ws:
        started = anyio.current_time()
        with anyio.fail_after(idle + WAIT_S):
            message = await ws.receive()
        waited = anyio.current_time() - started
    if message.type is not aiohttp.WSMsgType.CLOSE:
        return failed(f"expected a close frame, got {message.type.name}")
    if message.data != 1001:
        return failed(f"closed with {message.data}, expected 1001")
    return passed(f"closed with 1001 after {waited:.1f} s idle (timeout {idle:g} s)")


# -- running ---------------------------------------------------------------------------------------


def _check_urls(ws_url: str, management_url: str) -> None:
    ws, management = urlsplit(ws_url), urlsplit(management_url)
    if ws.scheme not in ("ws", "wss") or not ws.netloc:
        raise InvalidInputError(f"--ws must be a ws:// or wss:// URL, got {ws_url!r}")
    if management.scheme not in ("http", "https") or not management.netloc:
        raise InvalidInputError(
            f"--management must be an http:// or https:// URL, got {management_url!r}"
        )


@asynccontextmanager
async def open_target(
    ws_url: str, management_url: str, session: aioboto3.Session | None = None
) -> AsyncIterator[Target]:
    """The target with the caller's credentials and region (the environment's, as boto3 finds
    them), and its local knobs if it is a wsfanout local stack.

    :raises InvalidInputError: a URL of the wrong scheme.
    :raises ConfigurationError: no credentials or no region.
    """
    _check_urls(ws_url, management_url)
    session = session or aioboto3.Session()
    found = await session.get_credentials()
    if found is None:
        raise ConfigurationError("no AWS credentials (set them, or eval wsfanout dev's exports)")
    frozen = await found.get_frozen_credentials()
    region = session.region_name
    if not region:
        raise ConfigurationError("no AWS region (set AWS_REGION, or eval wsfanout dev's exports)")
    credentials = Credentials(frozen.access_key, frozen.secret_key, frozen.token)
    management_url = management_url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=WAIT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        target = Target(ws_url, management_url, session, credentials, region, http)
        target.config = await _local_config(target)
        yield target


async def _local_config(target: Target) -> Mapping[str, Any] | None:
    """The local stack's ``/_wsfanout/config``; ``None`` where there is none (AWS: 403)."""
    parts = urlsplit(target.management_url)
    url = f"{parts.scheme}://{parts.netloc}/_wsfanout/config"
    own = target.credentials
    headers = signed_headers(
        "GET", url, key_id=own.access_key, secret=own.secret_key, region=target.region
    )
    try:
        async with target.http.get(url, headers=headers) as answer:
            if answer.status != 200:
                return None
            body = await answer.json(content_type=None)
    except (aiohttp.ClientError, ValueError):
        return None
    return body if isinstance(body, dict) else None


async def run_checks(target: Target, names: Iterable[str] | None = None) -> list[Result]:
    """Run the checks named (default: all, in registration order), one after another.

    :raises InvalidInputError: a name that is not a registered check.
    """
    chosen = list(CHECKS) if names is None else list(names)
    unknown = [name for name in chosen if name not in CHECKS]
    if unknown:
        raise InvalidInputError(f"no conformance check named {unknown[0]!r}")
    results = []
    for name in chosen:
        try:
            with anyio.fail_after(CHECK_TIMEOUT_S):
                verdict = await CHECKS[name](target)
        except TimeoutError:
            verdict = failed(f"no verdict within {CHECK_TIMEOUT_S:g} s")
        except Exception as exc:  # a check that breaks is a failed behaviour
            verdict = failed(f"{type(exc).__name__}: {exc}")
        results.append(Result(name, verdict.outcome, verdict.detail))
    return results
