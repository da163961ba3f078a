"""The conformance runner: a registry of checks, the target they drive, and the run.

Every check drives the target only through its two public URLs (the WebSocket URL clients
connect to, the management URL of ``@connections``) with the caller's credentials, so the same
run judges the local stack (with ``wsfanout dev``'s exports) and a real AWS stage (with the
caller's own credentials and region). A check that needs a client's connection id learns it as
any client of the built-in chat app can: it sends ``{"action": "whoami"}`` and reads the id from
the ack (docs/contracts.md, "Client protocol"), on AWS and locally alike. Every handshake
carries the :data:`IDENTITY_HEADER` the conformance API's authorizer needs (other APIs ignore it).

Checks that need an API shape the chat stack lacks (no ``$default``, a two-way route, an
authorizer's identity source) run against the conformance API of
:mod:`wsfanout.local.conformance.api`; :meth:`ConformanceTarget.conformance_api` tells
whether the target is one, and they skip, saying how to deploy it, where it is not.

Checks that need a knob only the local stack has (an account throttle, a short idle timeout)
read it from the stack's signed ``GET /_wsfanout/config``; a target without that route (AWS)
makes them skip, with the reason. Adding a check is a decorated coroutine::

    @check("binary frame closes with 1003")
    async def _binary(target: ConformanceTarget) -> Verdict:
        async with target.client() as client:
            ...
        return passed("closed with 1003")

It returns :func:`passed`, :func:`failed` or :func:`skipped`; an exception it raises, or
running past :data:`CHECK_TIMEOUT_S`, fails it with the reason. Checks run one after another,
in the order they are registered: the modules of this package register them by what they
drive, the management API's, the client side's, then the knobs' (the throttle last but one,
so it cannot starve the others).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

import aioboto3
import aiohttp
import anyio
import botocore.config
from botocore.exceptions import ClientError
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from ...aws.sigv4 import Credentials, PostSigner
from ...exceptions import ConfigurationError, InvalidInputError
from ..signatures import signed_headers

if TYPE_CHECKING:
    from types_aiobotocore_apigatewaymanagementapi import ApiGatewayManagementApiClient

__all__ = [
    "AWS_FRAME_BYTES",
    "AWS_MESSAGE_BYTES",
    "CHECKS",
    "CHECK_TIMEOUT_S",
    "IDENTITY_HEADER",
    "MALFORMED_ID",
    "UNKNOWN_ID",
    "USER_AGENT",
    "WAIT_S",
    "ConformanceTarget",
    "Result",
    "Verdict",
    "answer_of",
    "check",
    "expect",
    "failed",
    "open_target",
    "passed",
    "run_checks",
    "skipped",
    "whoami",
]

CHECK_TIMEOUT_S: Final = 60.0
"""A check running longer fails: every wait inside one is bounded well below this."""

_PACKAGE: Final = str(Path(__file__).resolve().parents[2])  # wsfanout/, for _broke

WAIT_S: Final = 10.0
"""How long a check waits for the target to act (a frame, a close, a connection gone)."""

MALFORMED_ID: Final = "not-a-connection-id"
UNKNOWN_ID: Final = "AAAAAAAAAAAAAAA="
"""Well-formed (16 characters of API Gateway's alphabet, one ``=``), never issued."""

AWS_FRAME_BYTES: Final = 32 * 1024
AWS_MESSAGE_BYTES: Final = 128 * 1024
"""API Gateway's WebSocket frame and message limits (a local stack reports its own)."""

IDENTITY_HEADER: Final = "X-Conformance"
"""The conformance API's authorizer's identity source; every handshake but one check's sends it."""

USER_AGENT: Final = "wsfanout-conformance"


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
class ConformanceTarget:
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
    _conformance_api: bool | None = field(default=None, repr=False)

    @property
    def frame_bytes(self) -> int:
        """The largest frame the target takes (the local stack's own, else AWS's)."""
        return int((self.config or {}).get("frame_bytes") or AWS_FRAME_BYTES)

    @property
    def message_bytes(self) -> int:
        """The largest message the target takes (the local stack's own, else AWS's)."""
        return int((self.config or {}).get("message_bytes") or AWS_MESSAGE_BYTES)

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
    async def connect(
        self, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[tuple[aiohttp.ClientWebSocketResponse, str]]:
        """A WebSocket client and its connection id (learnt with ``whoami``); ``headers`` are
        added to the handshake's (aiohttp sends a ``Host`` given here as it is).

        :raises aiohttp.WSServerHandshakeError: the target refused the handshake.
        :raises ConfigurationError: no ``whoami`` answer came.
        """
        headers = {"User-Agent": USER_AGENT, IDENTITY_HEADER: "wsfanout", **(headers or {})}
        async with self.http.ws_connect(self.ws_url, headers=headers, autoclose=False) as ws:
            await ws.send_str(json.dumps({"action": "whoami"}))
            with anyio.fail_after(WAIT_S):
                while True:
                    message = await ws.receive()
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        raise ConfigurationError(f"no whoami answer; the socket got {message}")
                    connection_id = whoami(message.data)
                    if connection_id is not None:
                        break
            yield ws, connection_id

    @asynccontextmanager
    async def socket(
        self, query: str = "", **options: Any
    ) -> AsyncIterator[tuple[ClientConnection, str]]:
        """A ``websockets`` client (it sends fragmented messages and binary frames, and can
        stop reading: ``max_queue=1``) and its connection id; ``query`` is appended to the URL,
        ``options`` go to :func:`websockets.asyncio.client.connect`."""
        async with self.raw_socket(query, **options) as ws:
            await ws.send(json.dumps({"action": "whoami"}))
            with anyio.fail_after(WAIT_S):
                while (connection_id := whoami(await ws.recv())) is None:
                    pass
            yield ws, connection_id

    def raw_socket(self, query: str = "", *, identified: bool = True, **options: Any) -> ws_connect:
        """The handshake of :meth:`socket` (``identified=False``: without the identity
        source), before any frame."""
        url = self.ws_url + (("&" if "?" in self.ws_url else "?") + query if query else "")
        headers = {IDENTITY_HEADER: "wsfanout"} if identified else {}
        settings: dict[str, Any] = {"max_size": None, "open_timeout": WAIT_S}
        return ws_connect(
            url, additional_headers=headers, user_agent_header=USER_AGENT, **settings | options
        )

    async def conformance_api(self) -> bool:
        """Whether the target is the conformance API (its two-way ``conformance`` route
        answers its name); asked once."""
        if self._conformance_api is None:
            async with self.socket() as (ws, _):
                await ws.send(json.dumps({"action": "conformance"}))
                with anyio.fail_after(WAIT_S):
                    frame = json.loads(await ws.recv())
            self._conformance_api = isinstance(frame, dict) and frame.get("type") == "conformance"
        return self._conformance_api

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


Check = Callable[[ConformanceTarget], Awaitable[Verdict]]
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


def whoami(data: str | bytes) -> str | None:
    """The connection id in a ``whoami`` ack, ``None`` for any other frame."""
    try:
        frame = json.loads(data)
    except ValueError:
        return None
    if isinstance(frame, dict) and frame.get("action") == "whoami" and "connectionId" in frame:
        return str(frame["connectionId"])
    return None


async def answer_of(call: Awaitable[object]) -> tuple[str, int]:
    """The error code and status a management call got (``("", 200)`` when it succeeded)."""
    try:
        await call
    except ClientError as exc:
        response: Any = exc.response
        return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]
    return "", 200


def expect(got: tuple[str, int], code: str, status: int) -> Verdict:
    """Passed when ``got`` is ``(code, status)``, else failed saying what came."""
    if got == (code, status):
        return passed(f"{status} {code}")
    return failed(f"expected {status} {code}, got {got[1]} {got[0] or '(no error)'}")


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
) -> AsyncIterator[ConformanceTarget]:
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
        target = ConformanceTarget(ws_url, management_url, session, credentials, region, http)
        target.config = await _local_config(target)
        yield target


async def _local_config(target: ConformanceTarget) -> Mapping[str, Any] | None:
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


async def run_checks(target: ConformanceTarget, names: Iterable[str] | None = None) -> list[Result]:
    """Run the checks named (default: all, in registration order), one after another.

    :raises InvalidInputError: a name that is not a registered check.
    """
    chosen = list(CHECKS) if names is None else list(names)
    unknown = [name for name in chosen if name not in CHECKS]
    if unknown:
        raise InvalidInputError(f"no conformance check named {unknown[0]!r}")
    results = []
    for name in chosen:
        verdict = failed(f"no verdict within {CHECK_TIMEOUT_S:g} s")
        # A scope of our own, not fail_after: a TimeoutError from inside the check (one of its
        # own waits, a client's timeout) is a different failure, and says where it came from.
        with anyio.move_on_after(CHECK_TIMEOUT_S):
            try:
                verdict = await CHECKS[name](target)
            except Exception as exc:  # a check that breaks is a failed behaviour
                verdict = failed(_broke(exc))
        results.append(Result(name, verdict.outcome, verdict.detail))
    return results


def _broke(exc: Exception) -> str:
    """What broke a check: the exception, and the last line of the package it passed through
    (``TimeoutError`` alone would not say which wait ran out)."""
    where = ""
    tb = exc.__traceback__
    for frame, line in traceback.walk_tb(tb.tb_next if tb else None):  # past run_checks
        if frame.f_code.co_filename.startswith(_PACKAGE):
            where = f" (at {Path(frame.f_code.co_filename).name}:{line})"
    return f"{type(exc).__name__}: {exc}{where}" if str(exc) else f"{type(exc).__name__}{where}"
