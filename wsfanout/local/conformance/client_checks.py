"""The client side's checks: frames and messages, a client that stops reading, connection ids,
deep frames, route selection, route responses, the authorizer's identity sources and the
``Host`` header.

Each check sees only what a client of API Gateway sees: close codes, the frames that come
back, and what the management API answers. Where "nothing was routed" is the behaviour, the
frame sent is one the target would answer had it been routed (a ``whoami``), so an answer
before the close shows it was. The last four need the conformance API (:mod:`.api`) and skip
elsewhere, saying how to run it.
"""

from __future__ import annotations

import json
import re
import string
import uuid
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import anyio
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .runner import (
    WAIT_S,
    ConformanceTarget,
    Verdict,
    answer_of,
    check,
    failed,
    passed,
    skipped,
    whoami,
)

# The checks register themselves; these are their bounds.
__all__ = ["BACKLOG_CAP_BYTES", "DEPTH", "ID_SAMPLES", "LOCAL_BACKLOG_CAP_BYTES"]

KIB: Final = 1024
MIB: Final = 1024 * KIB

BACKLOG_CAP_BYTES: Final = 16 * MIB
"""What the backlog check posts at most to a client that reads nothing before it gives up
waiting for a 429 (AWS documents no buffer size; this keeps the check within seconds)."""

LOCAL_BACKLOG_CAP_BYTES: Final = 64 * MIB
"""The same beyond a local stack's own send buffer: the loopback's socket buffers hold several
MiB before it fills, and a local POST answers in milliseconds."""

ID_SAMPLES: Final = 40
"""Connections whose ids the alphabet check reads. An id holds 14 characters drawn from the
whole alphabet, so if ``-`` and ``_`` are in it, none of 40 holding either has a chance of
(62/64)^(14*40), about 2e-8."""

DEPTH: Final = 3000

_POST_BYTES: Final = 96 * KIB  # each POST of the backlog check (PostToConnection takes 128 KB)
_URL_SAFE: Final = re.compile(r"[A-Za-z0-9_-]+=*")
_NEEDS_API: Final = (
    "needs the conformance API (no $default, a two-way route, an authorizer): run "
    "wsfanout dev --template on wsfanout.local.conformance.api.TEMPLATE, or sam deploy it"
)


async def _closes_unrouted(ws: ClientConnection, expected: int) -> Verdict:
    """Passed when the target's next act is a close with ``expected``; a frame first means
    what was sent got routed (and answered)."""
    with anyio.move_on_after(WAIT_S):
        try:
            frame = await ws.recv()
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            if code != expected:
                return failed(f"closed with {code}, expected {expected}")
            return passed(f"closed with {expected}; nothing was routed")
        return failed(f"the target answered {str(frame)[:60]!r} first: it was routed")
    return failed(f"neither closed nor answered within {WAIT_S:g} s")


async def _frame_where(
    ws: ClientConnection, wanted: Callable[[Any], bool], seen: list[Any] | None = None
) -> Any:
    """The first JSON frame ``wanted`` accepts (every frame read goes to ``seen``).

    :raises TimeoutError: none within :data:`WAIT_S`.
    """
    with anyio.fail_after(WAIT_S):
        while True:
            frame = json.loads(await ws.recv())
            if seen is not None:
                seen.append(frame)
            if wanted(frame):
                return frame


def _padded(action: dict[str, Any], size: int) -> str:
    """``action`` as JSON of exactly ``size`` characters, a ``pad`` field making up the rest."""
    empty = json.dumps({**action, "pad": ""})
    pattern = string.ascii_letters + string.digits
    pad = (pattern * (size // len(pattern) + 1))[: size - len(empty)]
    return json.dumps({**action, "pad": pad})


def _fragments(text: str, size: int) -> list[str]:
    return [text[at : at + size] for at in range(0, len(text), size)]


# -- frames and messages ---------------------------------------------------------------------------


@check("binary frame: closed with 1003, nothing routed")
async def _binary(target: ConformanceTarget) -> Verdict:
    async with target.socket() as (ws, _):
        await ws.send(json.dumps({"action": "whoami"}).encode())
        return await _closes_unrouted(ws, 1003)


@check("a 96 KB message in 24 KB frames: routed whole")
async def _fragmented(target: ConformanceTarget) -> Verdict:
    size, frame = target.message_bytes * 3 // 4, target.frame_bytes * 3 // 4
    async with target.socket() as (ws, connection_id):
        to = {"connection": connection_id}
        text = _padded({"action": "sendMessage", "to": to, "data": ""}, size)
        data = json.loads(text)["pad"]  # sent back to this connection as the message's data
        text = json.dumps({"action": "sendMessage", "to": to, "data": data})
        parts = _fragments(text, frame)
        await ws.send(parts)
        seen: list[Any] = []
        try:
            message = await _frame_where(ws, lambda f: f.get("type") == "message", seen)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            return failed(f"closed with {code}" + (f" after {seen}" if seen else ""))
    if message.get("data") != data:
        return failed(f"the message came back with {len(str(message.get('data')))} characters")
    return passed(f"{len(text)} bytes in {len(parts)} frames came back whole")


@check("a 33 KB frame: closed with 1009")
async def _big_frame(target: ConformanceTarget) -> Verdict:
    async with target.socket() as (ws, _):
        await ws.send(_padded({"action": "whoami"}, target.frame_bytes + KIB))
        return await _closes_unrouted(ws, 1009)


@check("a message over 128 KB in 32 KB frames: closed with 1009")
async def _big_message(target: ConformanceTarget) -> Verdict:
    async with target.socket() as (ws, _):
        text = _padded({"action": "whoami"}, target.message_bytes + 1)
        await ws.send(_fragments(text, target.frame_bytes))
        return await _closes_unrouted(ws, 1009)


# -- a client that stops reading -------------------------------------------------------------------


@check("a client that stops reading: 429 at once, never a duplicate")
async def _backlog(target: ConformanceTarget) -> Verdict:
    config = target.config or {}
    buffer = config.get("send_buffer_bytes")
    cap = int(buffer) + LOCAL_BACKLOG_CAP_BYTES if buffer else BACKLOG_CAP_BYTES
    size = min(_POST_BYTES, target.message_bytes * 3 // 4)
    rate = config.get("account_rate")
    # After a 429, wait long enough for an account throttle's bucket to refill: a 429 that
    # persists is the full buffer's (the client still reads nothing), one that clears was not.
    pause = 2 / rate if rate else 0.2
    accepted: list[int] = []
    async with (
        target.socket(max_queue=1, ping_interval=None) as (ws, connection_id),
        target.client() as client,
    ):

        async def post(data: bytes) -> tuple[str, int]:
            with anyio.fail_after(WAIT_S):  # a POST must answer, never wait for the client
                return await answer_of(
                    client.post_to_connection(ConnectionId=connection_id, Data=data)
                )

        refused = None
        while len(accepted) * size < cap and refused is None:
            number = len(accepted)
            data = f"{number:08d}".encode().ljust(size, b".")
            got = await post(data)
            if got == ("LimitExceededException", 429):
                await anyio.sleep(pause)  # see above; bounded, once per 429
                got = await post(data)
                if got == ("LimitExceededException", 429):
                    refused = number
                    continue
            if got != ("", 200):
                return failed(f"POST {number + 1} got {got[1]} {got[0]}")
            accepted.append(number)
        if refused is None:
            return skipped(
                f"no 429 after {cap // MIB} MiB to a client that read nothing: the target "
                "buffers more (AWS documents no figure)"
            )
        pong = await ws.ping()
        with anyio.fail_after(WAIT_S * 2):
            received = [int((await ws.recv())[:8]) for _ in accepted]
            await pong
            await client.post_to_connection(ConnectionId=connection_id, Data=b"marker")
            last = await ws.recv()
    if received != accepted or last != "marker":
        return failed("the frames accepted did not come once each, in order, before the next")
    mib = len(accepted) * size / MIB
    return passed(
        f"429 after {mib:.1f} MiB (twice, at once); then the {len(accepted)} accepted frames "
        "in order, the pong, nothing refused"
    )


# -- connection ids and deep frames ----------------------------------------------------------------


@check("connection ids: URL-safe alphabet, - and _ included (statistical)")
async def _ids(target: ConformanceTarget) -> Verdict:
    ids: list[str] = []
    reached = None
    async with target.client() as client:
        for _ in range(ID_SAMPLES):
            async with target.socket() as (ws, connection_id):
                ids.append(connection_id)
                if reached is None and {"-", "_"} & set(connection_id):
                    await client.post_to_connection(ConnectionId=connection_id, Data=b"reached")
                    with anyio.fail_after(WAIT_S):
                        if await ws.recv() != "reached":
                            return failed(f"a post to {connection_id} did not reach it")
                    reached = connection_id
    outside = [i for i in ids if not _URL_SAFE.fullmatch(i)]
    if outside:
        return failed(f"{outside[0]!r} is outside the URL-safe alphabet")
    if reached is None:
        return failed(f"none of {ID_SAMPLES} ids held - or _ (chance: about 2e-8 if it may)")
    holding = sum(1 for i in ids if {"-", "_"} & set(i))
    return passed(
        f"{ID_SAMPLES} ids in [A-Za-z0-9_-]; {holding} held - or _; a post to {reached} "
        "reached it (a sample: only a statistical check is possible)"
    )


@check("a 3,000-deep frame: the connection lives, routed as unmatched")
async def _deep(target: ConformanceTarget) -> Verdict:
    async with target.socket() as (ws, connection_id):
        await ws.send("[" * DEPTH + "]" * DEPTH)
        try:
            answer = await _frame_where(ws, lambda _frame: True)
            await ws.send(json.dumps({"action": "whoami"}))
            again = await _frame_where(ws, lambda frame: whoami(json.dumps(frame)) is not None)
        except ConnectionClosed as closed:
            return failed(f"closed with {closed.rcvd.code if closed.rcvd else None}")
    if answer.get("message") == "Internal server error":
        return failed("$default failed on it (Internal server error)")
    if again.get("connectionId") != connection_id:
        return failed(f"whoami answered {again!r}")
    if answer.get("message") == "Forbidden":
        seen = "Forbidden (no $default route)"
    else:
        seen = f"$default answered {answer.get('type')} {answer.get('code', '')}".rstrip()
    return passed(f"{seen}; still open, whoami answered")


# -- what needs the conformance API ----------------------------------------------------------------


@check("no route and no $default: Forbidden")
async def _forbidden(target: ConformanceTarget) -> Verdict:
    if not await target.conformance_api():
        return skipped(_NEEDS_API)
    async with target.socket() as (ws, connection_id):
        await ws.send(json.dumps({"action": "no-such-route"}))
        frame = await _frame_where(ws, lambda _frame: True)
    keys = {"message", "connectionId", "requestId"}
    if set(frame) != keys or frame["message"] != "Forbidden":
        return failed(f"expected {sorted(keys)} with Forbidden, got {json.dumps(frame)[:80]}")
    if frame["connectionId"] != connection_id:
        return failed(f"Forbidden names {frame['connectionId']}, not {connection_id}")
    return passed("Forbidden, with the connection and a request id; nothing invoked")


@check("two-way route answers, one-way route does not")
async def _two_way(target: ConformanceTarget) -> Verdict:
    if not await target.conformance_api():
        return skipped(_NEEDS_API)
    seen: list[Any] = []
    async with target.socket() as (ws, _):
        for action in ("oneway", "conformance", "oneway", "conformance"):
            await ws.send(json.dumps({"action": action}))
        for _ in range(2):
            await _frame_where(ws, lambda frame: frame.get("type") == "conformance", seen)
    if any(frame.get("type") == "oneway" for frame in seen):
        return failed("a one-way route's integration body reached the client")
    return passed("the two-way route's body came back; the one-way route's never did")


@check("missing identity source: 401, authorizer not invoked")
async def _identity(target: ConformanceTarget) -> Verdict:
    if not await target.conformance_api():
        return skipped(_NEEDS_API)
    refused, admitted = uuid.uuid4().hex, uuid.uuid4().hex
    try:
        async with target.raw_socket(f"probe={refused}", identified=False):
            return failed("the handshake without the identity source was accepted")
    except InvalidStatus as refusal:
        status = refusal.response.status_code
    if status != 401:
        return failed(f"the handshake without the identity source got {status}, expected 401")
    async with target.socket(f"probe={admitted}") as (ws, _):
        traces = []
        for probe in (refused, admitted):
            await ws.send(json.dumps({"action": "conformance", "probe": probe}))
            answer = await _frame_where(ws, lambda frame: frame.get("type") == "conformance")
            traces.append(answer.get("authorized"))
    if traces[0]:
        return failed("401, but the authorizer ran for that handshake")
    if not traces[1]:
        return failed("the authorizer left no trace of the handshake it admitted: cannot tell")
    return passed("401 without the identity source; the authorizer ran only for the one with it")


@check("the Host header does not decide where replies go")
async def _host(target: ConformanceTarget) -> Verdict:
    forged = "attacker.example"
    own = urlsplit(target.ws_url)
    api = await target.conformance_api()
    try:
        async with target.connect({"Host": forged}) as (ws, _):
            if not api:  # the chat app posted its whoami ack to the endpoint it derived
                return passed(f"with Host {forged}, the handler's reply reached the client")
            await ws.send_str(json.dumps({"action": "conformance"}))
            with anyio.fail_after(WAIT_S):
                domain = json.loads((await ws.receive()).data).get("domainName")
    except aiohttp.WSServerHandshakeError as refusal:  # no handler ever sees such a client
        return passed(f"a handshake with Host {forged} was refused ({refusal.status})")
    except aiohttp.ClientConnectorError as error:  # e.g. TLS checked against the forged name
        return skipped(f"no connection with Host {forged} reached the API: {error}")
    except TimeoutError:
        return failed(f"with Host {forged}, no reply reached the client")
    if domain not in {own.netloc, own.hostname}:
        return failed(f"with Host {forged}, domainName was {domain!r}, not {own.netloc}")
    return passed(f"with Host {forged}, domainName was {domain}")
