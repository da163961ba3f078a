"""The emulator's route model and the client-side behaviours of issue 14, as a client sees them.

Every test drives the emulator with real clients (``websockets``, and aiohttp's client where a
header must be forged) and the management API through aioboto3, so each check observes only
what a black-box client of API Gateway could.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import botocore.exceptions
import pytest
from websockets.exceptions import InvalidStatus

from tests.helpers import policy
from tests.local.test_emulator import (
    STAGE,
    WAIT_S,
    Event,
    Recorder,
    Served,
    closed,
    error_of,
    handshake_status,
    management,
)
from wsfanout.aws.events import DEFAULT_ROUTE, new_id
from wsfanout.exceptions import ConfigurationError, InvalidInputError
from wsfanout.local.emulator import Emulator, Limits, serve_emulator
from wsfanout.local.framing import FrameGuard
from wsfanout.local.routes import Authorizer, Route, RouteTable

pytestmark = pytest.mark.timeout(60)

KIB = 1024


def table(
    recorder: Recorder,
    *keys: str,
    two_way: tuple[str, ...] = (),
    selection: str = "$request.body.action",
    authorizer: Authorizer | None = None,
) -> RouteTable:
    routes = {key: Route(key, recorder, "fn-" + key.strip("$"), key in two_way) for key in keys}
    return RouteTable(routes, selection, authorizer)


@asynccontextmanager
async def serving(routes: RouteTable, **kwargs: Any) -> AsyncIterator[Served]:
    emulator = Emulator(routes=routes, stage=STAGE, **kwargs)
    async with serve_emulator(emulator) as base:
        yield Served(emulator, base)


async def no_frame_within(ws: Any, seconds: float) -> bool:
    """Whether nothing arrives for ``seconds`` (only where the absence is the behaviour)."""
    with anyio.move_on_after(seconds):
        await ws.recv()
        return False
    return True


# -- the route model -----------------------------------------------------------------------------


async def test_the_selection_expression_reads_a_dotted_body_path() -> None:
    recorder = Recorder()
    routes = table(recorder, "$connect", DEFAULT_ROUTE, "x", selection="${request.body.meta.kind}")
    frames = ['{"meta":{"kind":"x"}}', '{"meta":"x"}', '{"action":"x"}', "x", '{"meta":{}}']
    async with serving(routes) as served, served.client("a") as ws:
        for frame in frames:
            await ws.send(frame)
        events = await recorder.wait_for("MESSAGE", count=len(frames))
    assert [e["requestContext"]["routeKey"] for e in events] == ["x"] + [DEFAULT_ROUTE] * 4
    assert [e["body"] for e in events] == frames


async def test_no_route_and_no_default_answers_forbidden_and_invokes_nothing() -> None:
    recorder = Recorder()
    async with serving(table(recorder, "$connect", "known")) as served, served.client("a") as ws:
        cid = recorder.connection_id("a")
        with anyio.fail_after(WAIT_S):
            await ws.send('{"action":"unknown"}')
            forbidden = json.loads(await ws.recv())
            await ws.send("not json")
            second = json.loads(await ws.recv())
            await ws.send('{"action":"known"}')
            await recorder.wait_for("MESSAGE", cid)
    assert set(forbidden) == {"message", "connectionId", "requestId"}
    assert (forbidden["message"], forbidden["connectionId"]) == ("Forbidden", cid)
    assert second["requestId"] != forbidden["requestId"]
    assert [e["requestContext"]["routeKey"] for e in recorder.of("MESSAGE")] == ["known"]


async def test_without_connect_and_disconnect_routes_nothing_runs_for_them() -> None:
    recorder = Recorder()
    async with serving(table(recorder, DEFAULT_ROUTE)) as served, served.client("a") as ws:
        await ws.send("hello")
        [message] = await recorder.wait_for("MESSAGE")
        assert served.emulator.live_connections == 1
    # serve_emulator returned: every close was processed, and nothing but the frame was invoked.
    assert recorder.events == [message]
    assert message["requestContext"]["routeKey"] == DEFAULT_ROUTE


async def test_two_way_routes_send_the_body_back_one_way_routes_nothing() -> None:
    def answer(event: Event, _context: Any) -> dict[str, Any]:
        body = json.loads(event["body"])
        response: dict[str, Any] = {"statusCode": 200}
        if "reply" in body:
            response["body"] = body["reply"]
        return response

    recorder = Recorder(MESSAGE=answer)
    routes = table(recorder, "$connect", DEFAULT_ROUTE, "ask", two_way=("ask",))
    async with serving(routes) as served, served.client("a") as ws:
        with anyio.fail_after(WAIT_S):
            await ws.send('{"action":"other","reply":"from one-way"}')  # $default: one-way
            await ws.send('{"action":"ask"}')  # two-way without a body: nothing to send
            await ws.send('{"action":"ask","reply":"answer"}')
            assert await ws.recv() == "answer"  # the first frame the client gets
            await recorder.wait_for("MESSAGE", count=3)
        assert await no_frame_within(ws, 0.2)


async def test_missing_identity_sources_answer_401_without_the_authorizer() -> None:
    recorder = Recorder()
    authorizer = Recorder(AUTHORIZE=lambda e, _c: policy("Allow", e["methodArn"]))
    sources = ("route.request.header.X-Api-Key", "route.request.querystring.token")
    guard = Authorizer(authorizer, "fn-authorizer", sources)
    routes = table(recorder, "$connect", DEFAULT_ROUTE, authorizer=guard)
    async with serving(routes) as served:
        assert await handshake_status(served, "none") == 401
        assert await handshake_status(served, "no-header&token=t") == 401
        with pytest.raises(InvalidStatus) as refused:
            async with served.client("empty&token=", additional_headers={"X-Api-Key": "k"}):
                pass
        assert refused.value.response.status_code == 401
        assert authorizer.events == []  # never invoked for any of them
        async with served.client("ok&token=t", additional_headers={"x-api-key": "k"}):
            [request] = authorizer.events
    assert request["queryStringParameters"]["token"] == "t"
    assert [e["queryStringParameters"]["name"] for e in recorder.of("CONNECT")] == ["ok"]
    assert authorizer.contexts[0].function_name == "fn-authorizer"


def test_route_tables_refuse_what_api_gateway_would() -> None:
    recorder_free = Route("x", lambda _e, _c: {}, "fn")
    with pytest.raises(InvalidInputError, match="selection expression"):
        RouteTable({"x": recorder_free}, "$request.header.action")
    with pytest.raises(InvalidInputError, match="stored under"):
        RouteTable({"y": recorder_free})
    with pytest.raises(InvalidInputError, match="identity source"):
        Authorizer(lambda _e, _c: {}, "fn", ("header.Authorization",))
    deployed = RouteTable.for_handler(lambda _e, _c: {})
    assert {"$connect", "$disconnect", DEFAULT_ROUTE, "joinRoom", "broadcast"} <= set(
        deployed.routes
    )
    assert "typing" not in deployed
    assert deployed.authorizer is None
    with pytest.raises(ConfigurationError):
        Emulator(routes=deployed, route_handler=lambda _e, _c: {})
    with pytest.raises(ConfigurationError):
        Emulator()


# -- frames and messages -------------------------------------------------------------------------


async def test_a_96k_message_in_24k_frames_is_routed_whole() -> None:
    recorder = Recorder()
    parts = [c * (24 * KIB) for c in "abcd"]
    async with serving(RouteTable.for_handler(recorder)) as served, served.client("a") as ws:
        await ws.send(iter(parts))  # one message, four frames (three continuations)
        [event] = await recorder.wait_for("MESSAGE")
        await ws.send("still open")
        await recorder.wait_for("MESSAGE", count=2)
    assert event["body"] == "".join(parts)


@pytest.mark.parametrize(
    "frames",
    [["x" * (32 * KIB + 1)], ["y" * (32 * KIB)] * 4 + ["z"]],
    ids=["a-33k-frame", "a-128k-and-1-message-in-32k-frames"],
)
async def test_over_the_frame_or_message_limit_closes_with_1009(frames: list[str]) -> None:
    recorder = Recorder()
    async with serving(RouteTable.for_handler(recorder)) as served, served.client("a") as ws:
        cid = recorder.connection_id("a")
        await ws.send("y" * (32 * KIB))  # at the frame limit: fine
        await ws.send(iter(["y" * (32 * KIB)] * 4))  # 128 KiB exactly: fine
        await recorder.wait_for("MESSAGE", cid, count=2)
        await ws.send(iter(frames) if len(frames) > 1 else frames[0])
        assert await closed(ws) == (1009, "Message too big")
        [event] = await recorder.wait_for("DISCONNECT", cid)
    assert len(recorder.of("MESSAGE")) == 2
    assert event["requestContext"]["disconnectStatusCode"] == 1009


def _frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A masked client frame (zero mask, so the payload reads as is)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    elif len(payload) < 1 << 16:
        head += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + len(payload).to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


class _Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()

    def data_received(self, data: bytes) -> None:
        self.data += data


@pytest.mark.parametrize("chunk", [1, 3, 7, 4096])
def test_the_frame_guard_splits_the_stream_at_frame_boundaries(chunk: int) -> None:
    admitted = _frame(1, b"a" * 100, fin=False) + _frame(9, b"ping") + _frame(0, b"b" * 300)
    refused = _frame(1, b"c" * 70_000)  # over the frame limit: withheld, and so is what follows
    after = _frame(1, b"late") + _frame(8, b"\x03\xe8")  # data dropped, the close passes
    stream = admitted + refused + after
    sink, violations = _Sink(), []
    guard = FrameGuard(
        sink, frame_bytes=1000, message_bytes=2000, on_violation=lambda: violations.append(1)
    )
    for at in range(0, len(stream), chunk):
        guard.data_received(stream[at : at + chunk])
    assert bytes(sink.data) == admitted + _frame(8, b"\x03\xe8")
    assert violations == [1]


# -- the management API and a client that stops reading ------------------------------------------


FRAME = 16 * KIB
BACKLOG = Limits(send_buffer_bytes=64 * KIB)


async def fill(client: Any, cid: str) -> tuple[list[int], int]:
    """POST numbered frames to a client that reads nothing until one is refused; return the
    numbers accepted and the one refused. Every POST must answer at once."""
    accepted: list[int] = []
    with anyio.fail_after(WAIT_S * 4):  # thousands of POSTs at most, each answered at once
        for number in range(5000):
            data = f"{number:08d}".encode() * (FRAME // 8)
            try:
                await client.post_to_connection(ConnectionId=cid, Data=data)
            except botocore.exceptions.ClientError as error:
                answer = error.response
                assert answer["Error"]["Code"] == "LimitExceededException"
                assert answer["ResponseMetadata"]["HTTPStatusCode"] == 429
                return accepted, number
            accepted.append(number)
    pytest.fail("no POST was refused though the client read nothing")


async def test_a_client_that_stops_reading_gets_429s_never_duplicates_and_its_pongs() -> None:
    recorder = Recorder()
    async with (
        serving(RouteTable.for_handler(recorder), limits=BACKLOG) as served,
        served.client("a", max_queue=1, ping_interval=None) as ws,  # reads only when asked
        management(served.management_url) as client,
    ):
        cid = recorder.connection_id("a")
        accepted, refused = await fill(client, cid)
        with anyio.fail_after(WAIT_S):
            # Still full: refused again, at once, and the reader still works behind the backlog.
            code = await error_of(client.post_to_connection(ConnectionId=cid, Data=b"x" * FRAME))
            assert code == ("LimitExceededException", 429)
            await ws.send("while backlogged")
            await recorder.wait_for("MESSAGE", cid)
            pong = await ws.ping()
            received = [int((await ws.recv())[:8]) for _ in accepted]
            await pong  # answered once the client reads again
            await client.post_to_connection(ConnectionId=cid, Data=b"marker")
            assert await ws.recv() == "marker"  # nothing refused came before it
    assert received == accepted
    assert refused not in received
    assert served.emulator.management.stats()["throttled"] == 2


async def test_frames_accepted_before_a_delete_reach_the_client_before_its_close() -> None:
    recorder = Recorder()
    async with (
        serving(RouteTable.for_handler(recorder), limits=BACKLOG) as served,
        served.client("a", max_queue=1, ping_interval=None) as ws,
        management(served.management_url) as client,
    ):
        cid = recorder.connection_id("a")
        accepted, _ = await fill(client, cid)  # so some wait in the emulator's buffer
        await client.delete_connection(ConnectionId=cid)
        with anyio.fail_after(WAIT_S):
            received = [int((await ws.recv())[:8]) for _ in accepted]
        assert await closed(ws) == (1000, "Connection Closed Normally")
    assert received == accepted


async def test_pings_are_answered_while_a_lambda_runs() -> None:
    release = threading.Event()

    def slow(_event: Event, _context: Any) -> None:
        release.wait(WAIT_S * 2)  # longer than the ping may take

    recorder = Recorder(MESSAGE=slow)
    try:
        async with (
            serving(RouteTable.for_handler(recorder)) as served,
            served.client("a", ping_interval=None) as ws,
        ):
            await ws.send("slow")
            await recorder.wait_for("MESSAGE")  # the invocation is running, and blocked
            with anyio.fail_after(WAIT_S):
                await (await ws.ping())
            assert not release.is_set()  # answered while the Lambda still ran
            release.set()
    finally:
        release.set()


# -- ids, deep frames and the Host header --------------------------------------------------------


async def test_connection_ids_use_the_url_safe_alphabet_and_work_in_urls() -> None:
    assert {"-", "_"} <= set("".join(new_id() for _ in range(2000)))
    recorder = Recorder()
    async with (
        serving(RouteTable.for_handler(recorder)) as served,
        management(served.management_url) as client,
    ):
        for attempt in range(100):  # about four in ten ids hold a "-" or "_"
            async with served.client(f"c{attempt}") as ws:
                cid = recorder.connection_id(f"c{attempt}")
                if {"-", "_"} & set(cid):
                    await client.post_to_connection(ConnectionId=cid, Data=b"reached")
                    with anyio.fail_after(WAIT_S):
                        assert await ws.recv() == "reached"
                    break
        else:
            pytest.fail("no id with '-' or '_' in 100 connections")


async def test_a_frame_nested_3000_deep_routes_to_default_and_the_connection_lives() -> None:
    recorder = Recorder()
    deep = "[" * 3000 + "]" * 3000
    nested = '{"a":' * 3000 + '"joinRoom"' + "}" * 3000  # 18 KB: under the frame limit
    async with serving(RouteTable.for_handler(recorder)) as served:
        async with served.client("a") as ws:
            cid = recorder.connection_id("a")
            for frame in (deep, nested, '{"action":"joinRoom"}'):
                await ws.send(frame)
            events = await recorder.wait_for("MESSAGE", cid, count=3)
        await recorder.wait_for("DISCONNECT", cid)
    assert [e["requestContext"]["routeKey"] for e in events] == [
        DEFAULT_ROUTE,
        DEFAULT_ROUTE,
        "joinRoom",
    ]
    assert events[0]["body"] == deep


async def test_the_host_header_does_not_become_the_domain_name() -> None:
    recorder = Recorder()
    async with (
        serving(RouteTable.for_handler(recorder)) as served,
        aiohttp.ClientSession() as http,
        http.ws_connect(served.ws_url, headers={"Host": "attacker.example:443"}) as ws,
    ):
        await ws.send_str("hello")
        [message] = await recorder.wait_for("MESSAGE")
    [event] = recorder.of("CONNECT")
    own = served.base.removeprefix("http://")
    assert event["headers"]["Host"] == "attacker.example:443"  # forwarded, as API Gateway does
    assert event["requestContext"]["domainName"] == own
    assert message["requestContext"]["domainName"] == own
    [disconnect] = recorder.of("DISCONNECT")
    assert disconnect["requestContext"]["domainName"] == own


async def test_connect_route_handler_and_function_names_come_from_the_table() -> None:
    connect_recorder, message_recorder = Recorder(), Recorder()
    routes = RouteTable(
        {
            "$connect": Route("$connect", connect_recorder, "on-connect"),
            DEFAULT_ROUTE: Route(DEFAULT_ROUTE, message_recorder, "on-message"),
        }
    )
    async with serving(routes) as served, served.client("a") as ws:
        await ws.send("x")
        await message_recorder.wait_for("MESSAGE")
    assert [c.function_name for c in connect_recorder.contexts] == ["on-connect"]
    assert [c.function_name for c in message_recorder.contexts] == ["on-message"]
