"""The local API Gateway WebSocket emulator, seen from both sides as AWS clients see it.

Clients are the independent ``websockets`` library; the management API is driven by aioboto3,
raw aiohttp and the AWS CLI. Handlers are fakes that record what they get (events are checked
against the powertools models the real handler parses with, and against the shapes in
``tests/events/``), and finally the real route handler against moto.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioboto3
import aiohttp
import anyio
import anyio.to_thread
import botocore.config
import botocore.exceptions
import jwt
import pytest
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import APIGatewayWebSocketDisconnectEventModel
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.events import load_event
from tests.helpers import policy
from wsfanout.app.events import ConnectEvent, MessageEvent
from wsfanout.aws.account import KEY_ID, REGION, SECRET
from wsfanout.aws.endpoints import endpoint_for
from wsfanout.aws.events import new_id, request_time
from wsfanout.core.pacing import set_testing
from wsfanout.exceptions import ConfigurationError, InvalidInputError
from wsfanout.handlers import authorizer as real_authorizer
from wsfanout.handlers import route
from wsfanout.handlers.runtime import close_all_runtimes
from wsfanout.local.emulator import Emulator, LambdaContext, Limits, serve_emulator

pytestmark = pytest.mark.timeout(60)

STAGE = "local"
WAIT_S = 10  # every wait is bounded; a healthy run takes milliseconds
ID_RE = re.compile(r"^[A-Za-z0-9_-]{15}=$")  # URL-safe base64, as API Gateway's ids
REQUEST_TIME_RE = re.compile(r"^\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000$")

Event = dict[str, Any]
Hook = Callable[[Event, Any], "dict[str, Any] | None"]


class Recorder:
    """A fake Lambda: records every event (from whichever container thread), wakes waiters on
    the test's loop, and answers 200 unless a hook for the event type answers otherwise."""

    def __init__(self, **hooks: Hook) -> None:
        self.loop = asyncio.get_running_loop()
        self.events: list[Event] = []
        self.contexts: list[Any] = []
        self.threads: set[str] = set()
        self.hooks = hooks  # keyed by eventType: CONNECT, MESSAGE, DISCONNECT (or AUTHORIZE)
        self._lock = threading.Lock()
        self._changed = asyncio.Event()

    def __call__(self, event: Event, context: Any) -> dict[str, Any]:
        with self._lock:
            self.events.append(event)
            self.contexts.append(context)
            self.threads.add(threading.current_thread().name)
        self.loop.call_soon_threadsafe(self._notify)
        kind = (
            "AUTHORIZE" if event.get("type") == "REQUEST" else event["requestContext"]["eventType"]
        )
        hook = self.hooks.get(kind)
        answer = hook(event, context) if hook else None
        return answer if answer is not None else {"statusCode": 200}

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def of(self, kind: str, connection_id: str | None = None) -> list[Event]:
        with self._lock:
            found = [e for e in self.events if e["requestContext"]["eventType"] == kind]
        if connection_id is not None:
            found = [e for e in found if e["requestContext"]["connectionId"] == connection_id]
        return found

    async def wait_for(
        self, kind: str, connection_id: str | None = None, count: int = 1
    ) -> list[Event]:
        with anyio.fail_after(WAIT_S):
            while len(found := self.of(kind, connection_id)) < count:
                await self._changed.wait()
        return found

    def connection_id(self, name: str) -> str:
        """The id of the client that connected with ``?name=...``."""
        for event in self.of("CONNECT"):
            if (event.get("queryStringParameters") or {}).get("name") == name:
                return str(event["requestContext"]["connectionId"])
        raise AssertionError(f"no client named {name!r} connected")


@dataclass
class Served:
    emulator: Emulator
    base: str

    @property
    def ws_url(self) -> str:
        return f"ws://{self.base.removeprefix('http://')}/{STAGE}"

    @property
    def management_url(self) -> str:
        return f"{self.base}/{STAGE}"

    def client(self, name: str, **kwargs: Any) -> Any:
        """A websockets client named ``name`` (``?name=`` in the URL)."""
        kwargs.setdefault("open_timeout", WAIT_S)
        kwargs.setdefault("close_timeout", WAIT_S)
        return connect(f"{self.ws_url}?name={name}", **kwargs)


@asynccontextmanager
async def serving(handler: Any, **kwargs: Any) -> AsyncIterator[Served]:
    emulator = Emulator(route_handler=handler, stage=STAGE, **kwargs)
    async with serve_emulator(emulator) as base:
        yield Served(emulator, base)


def management(url: str) -> Any:
    session = aioboto3.Session(
        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name=REGION
    )
    return session.client(
        "apigatewaymanagementapi",
        endpoint_url=url,
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )


async def error_of(call: Any) -> tuple[str, int]:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        await call
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


async def closed(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Wait (bounded) for the server to close ``ws``; return the close code and reason."""
    with anyio.fail_after(WAIT_S):
        await ws.wait_closed()
    return ws.close_code, ws.close_reason


async def handshake_status(served: Served, name: str = "x") -> int:
    with pytest.raises(InvalidStatus) as info:
        async with served.client(name):
            pass
    return info.value.response.status_code


def keys(event: Event) -> tuple[set[str], set[str]]:
    return set(event), set(event["requestContext"])


# -- event shapes --------------------------------------------------------------------------------


@dataclass
class Lifecycle:
    """The three route events of one connection, and when it happened."""

    served: Served
    connect: Event
    message: Event
    disconnect: Event
    before_ms: int
    after_ms: int


async def one_lifecycle() -> Lifecycle:
    """Connect (with a query string and a repeated header), send one frame, close with 4000."""
    recorder = Recorder()
    async with serving(recorder) as served:
        before = int(time.time() * 1000)
        url = f"{served.ws_url}?name=a&tag=x&tag=y"
        headers = [("X-Multi", "1"), ("X-Multi", "2")]
        async with connect(url, additional_headers=headers, user_agent_header="test-agent") as ws:
            cid = recorder.connection_id("a")
            await ws.send(json.dumps({"action": "sendMessage", "to": {"room": "r"}, "data": 1}))
            [message] = await recorder.wait_for("MESSAGE", cid)
            await ws.close(code=4000, reason="bye")
        [disconnect] = await recorder.wait_for("DISCONNECT", cid)
        after = int(time.time() * 1000)
    [connect_event] = recorder.of("CONNECT")
    return Lifecycle(served, connect_event, message, disconnect, before, after)


async def test_connect_event_shape() -> None:
    run = await one_lifecycle()
    event = run.connect
    # Field for field what API Gateway sends (the fixtures' anonymous connection: no authorizer).
    assert set(event) == set(load_event("ws_connect"))
    assert set(event["requestContext"]) == set(load_event("ws_connect_anonymous")["requestContext"])

    context = parse(event=event, model=ConnectEvent).request_context
    assert ID_RE.match(context.connection_id)
    assert context.stage == STAGE
    assert context.domain_name == run.served.base.removeprefix("http://")
    assert endpoint_for(context.domain_name, context.stage) == run.served.management_url
    assert context.authorizer is None
    assert str(context.identity.source_ip.network_address) == "127.0.0.1"
    assert context.identity.user_agent == "test-agent"
    rc = event["requestContext"]
    assert run.before_ms <= rc["connectedAt"] <= rc["requestTimeEpoch"] <= run.after_ms
    assert REQUEST_TIME_RE.match(rc["requestTime"])
    assert ID_RE.match(rc["requestId"])
    assert rc["extendedRequestId"] == rc["requestId"]
    assert (rc["eventType"], rc["messageDirection"], rc["apiId"]) == ("CONNECT", "IN", "local")
    assert event["isBase64Encoded"] is False


async def test_connect_event_headers_and_query() -> None:
    event = (await one_lifecycle()).connect
    headers = event["headers"]
    assert {"Host", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "User-Agent"} <= set(headers)
    added = {"X-Amzn-Trace-Id", "X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto"}
    assert added <= set(headers)
    assert not {"Connection", "Upgrade"} & set(headers)  # hop-by-hop: not for the route
    assert headers["X-Forwarded-For"] == "127.0.0.1"
    assert list(headers) == sorted(headers, key=str.lower)
    assert set(headers) == set(event["multiValueHeaders"])
    assert headers["X-Multi"] == "2"
    assert event["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert event["queryStringParameters"] == {"name": "a", "tag": "y"}
    assert event["multiValueQueryStringParameters"] == {"name": ["a"], "tag": ["x", "y"]}


async def test_message_and_disconnect_event_shapes() -> None:
    run = await one_lifecycle()
    fixture_message = load_event("ws_message")
    del fixture_message["requestContext"]["authorizer"]
    assert keys(run.message) == keys(fixture_message)
    fixture_disconnect = load_event("ws_disconnect")
    assert keys(run.disconnect) == keys(fixture_disconnect)
    assert set(run.disconnect["headers"]) == set(fixture_disconnect["headers"])

    message = parse(event=run.message, model=MessageEvent)
    assert message.request_context.route_key == "sendMessage"
    assert message.request_context.message_direction == "IN"
    assert ID_RE.match(message.request_context.message_id)
    assert json.loads(str(message.body))["to"] == {"room": "r"}
    connected_at = run.connect["requestContext"]["connectedAt"]
    assert run.message["requestContext"]["connectedAt"] == connected_at

    disconnect = parse(event=run.disconnect, model=APIGatewayWebSocketDisconnectEventModel)
    assert disconnect.request_context.disconnect_status_code == 4000
    assert disconnect.request_context.disconnect_reason == "bye"
    assert disconnect.request_context.connected_at == message.request_context.connected_at
    assert run.disconnect["headers"]["Host"] == run.connect["requestContext"]["domainName"]


async def test_no_query_string_means_no_query_fields() -> None:
    recorder = Recorder()
    async with serving(recorder) as served, connect(served.ws_url, open_timeout=WAIT_S):
        [event] = await recorder.wait_for("CONNECT")
    assert "queryStringParameters" not in event
    assert "multiValueQueryStringParameters" not in event


async def test_ids_and_request_time_look_like_api_gateways() -> None:
    ids = {new_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(ID_RE.match(i) for i in ids)
    assert request_time(1735732800123) == "01/Jan/2025:12:00:00 +0000"


@pytest.mark.parametrize(
    ("frame", "route_key"),
    [
        ({"action": "joinRoom", "room": "lobby"}, "joinRoom"),
        ({"action": "leaveRoom", "room": "lobby"}, "leaveRoom"),
        ({"action": "broadcast", "data": "x"}, "broadcast"),
        ({"action": "nosuchroute"}, "$default"),
        ({"action": 5}, "$default"),
        ({"no": "action"}, "$default"),
        (["action"], "$default"),
        ("not json", "$default"),
    ],
)
async def test_route_selection_by_action(frame: Any, route_key: str) -> None:
    recorder = Recorder()
    text = frame if isinstance(frame, str) else json.dumps(frame)
    async with serving(recorder) as served, served.client("a") as ws:
        await ws.send(text)
        [event] = await recorder.wait_for("MESSAGE")
    assert event["requestContext"]["routeKey"] == route_key
    assert (event["body"], event["isBase64Encoded"]) == (text, False)


async def test_a_binary_frame_closes_with_1003_before_any_lambda_runs() -> None:
    # Changed on purpose (issue 14): API Gateway does not route binary frames, it closes.
    recorder = Recorder()
    async with serving(recorder) as served, served.client("a") as ws:
        cid = recorder.connection_id("a")
        await ws.send('{"action":"joinRoom","room":"a"}')
        await recorder.wait_for("MESSAGE", cid)
        await ws.send(b"\x00\xffbinary")
        await ws.send("after")  # dropped: the close is under way
        assert (await closed(ws))[0] == 1003
        [event] = await recorder.wait_for("DISCONNECT", cid)
    assert [e["body"] for e in recorder.of("MESSAGE")] == ['{"action":"joinRoom","room":"a"}']
    assert event["requestContext"]["disconnectStatusCode"] == 1003


async def test_frames_received_before_a_close_are_routed_before_disconnect() -> None:
    release = threading.Event()

    def slow(event: Event, _context: Any) -> None:  # the first frame holds the others queued
        if event["body"] == "0":
            release.wait(WAIT_S)

    recorder = Recorder(MESSAGE=slow)
    async with serving(recorder) as served:
        async with served.client("a") as ws:
            cid = recorder.connection_id("a")
            for n in range(5):
                await ws.send(str(n))
            await recorder.wait_for("MESSAGE", cid)
        # the client closed with four frames queued behind the running one
        release.set()
        await recorder.wait_for("DISCONNECT", cid)
    kinds = [(e["requestContext"]["eventType"], e.get("body")) for e in recorder.events]
    assert kinds[-6:] == [*(("MESSAGE", str(n)) for n in range(5)), ("DISCONNECT", None)]


async def test_connection_id_of_a_user_agent() -> None:
    recorder = Recorder()
    async with (
        serving(recorder) as served,
        served.client("a", user_agent_header="client-a"),
        served.client("b", user_agent_header="client-b"),
    ):
        emulator = served.emulator
        assert emulator.connection_id_of(user_agent="client-a") == recorder.connection_id("a")
        assert emulator.connection_id_of(user_agent="client-b") == recorder.connection_id("b")
        assert emulator.connection_id_of(user_agent="nobody") is None
        assert emulator.live_connections == 2


async def test_handlers_run_as_lambda_runs_them() -> None:
    recorder = Recorder()
    async with serving(recorder, limits=Limits(integration_timeout_s=7)) as served:
        async with served.client("a") as ws:
            await ws.send("hello")
            await recorder.wait_for("MESSAGE")
        await recorder.wait_for("DISCONNECT")
    context = recorder.contexts[0]
    assert isinstance(context, LambdaContext)
    assert 0 < context.get_remaining_time_in_millis() <= 7000
    assert context.function_name == "wsfanout-route"
    assert context.invoked_function_arn.endswith(":function:wsfanout-route")
    assert len({c.aws_request_id for c in recorder.contexts}) == 3
    assert threading.current_thread().name not in recorder.threads
    assert all(name.startswith("wsfanout-lambda") for name in recorder.threads)


# -- $connect: handshake answered after it ---------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403, 429, 500])
async def test_connect_refusal_rejects_the_handshake(status: int) -> None:
    recorder = Recorder(CONNECT=lambda _e, _c: {"statusCode": status})
    async with serving(recorder) as served:
        assert await handshake_status(served) == status
        assert served.emulator.live_connections == 0
    assert recorder.of("DISCONNECT") == []  # nothing was connected, so nothing disconnects


async def test_connect_handler_crash_is_a_502() -> None:
    def crash(_event: Event, _context: Any) -> None:
        raise RuntimeError("boom")

    recorder = Recorder(CONNECT=crash)
    async with serving(recorder) as served:
        assert await handshake_status(served) == 502
    assert recorder.of("DISCONNECT") == []


async def test_subprotocol_chosen_by_connect_is_negotiated() -> None:
    answer = {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "chat.v2"}}
    recorder = Recorder(CONNECT=lambda _e, _c: answer)
    async with serving(recorder) as served:
        async with served.client("a", subprotocols=["chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"
        [event] = recorder.of("CONNECT")
        assert event["headers"]["Sec-WebSocket-Protocol"] == "chat.v1, chat.v2"


# -- the authorizer ----------------------------------------------------------------------------


async def test_authorizer_context_reaches_every_later_event() -> None:
    recorder = Recorder()
    context = {"userId": "u_1", "canBroadcast": True, "level": 3, "ratio": 0.5}
    authorizer = Recorder(AUTHORIZE=lambda e, _c: policy("Allow", e["methodArn"], context))
    async with serving(recorder, authorizer=authorizer) as served:
        async with served.client("a") as ws:
            await ws.send('{"action":"broadcast","data":"x"}')
            await recorder.wait_for("MESSAGE")
        await recorder.wait_for("DISCONNECT")
    [request] = authorizer.events
    fixture = load_event("authorizer_request")
    assert keys(request) == keys(fixture)
    assert {"Connection", "Upgrade", "content-length"} <= set(request["headers"])
    assert request["methodArn"] == f"arn:aws:execute-api:{REGION}:123456789012:local/local/$connect"
    assert request["queryStringParameters"] == {"name": "a"}
    assert request["requestContext"]["requestTimeEpoch"] == request["requestContext"]["connectedAt"]
    trace = request["headers"]["X-Amzn-Trace-Id"]
    assert recorder.of("CONNECT")[0]["headers"]["X-Amzn-Trace-Id"] == trace

    expected = {"userId": "u_1", "canBroadcast": "true", "level": "3", "ratio": "0.5"}
    for kind in ("CONNECT", "MESSAGE", "DISCONNECT"):
        [event] = recorder.of(kind)
        forwarded = event["requestContext"]["authorizer"]
        assert {k: forwarded[k] for k in expected} == expected
        assert forwarded["principalId"] == "u_1"
        assert isinstance(forwarded["integrationLatency"], int)
        assert event["requestContext"]["connectionId"] == request["requestContext"]["connectionId"]
    parsed = parse(event=recorder.of("MESSAGE")[0], model=MessageEvent).request_context.authorizer
    assert parsed is not None
    assert (parsed.user, parsed.can_broadcast) == ("u_1", True)


async def test_wildcard_policies_allow() -> None:
    authorizer = Recorder(
        AUTHORIZE=lambda _e, _c: policy("Allow", "arn:aws:execute-api:*:*:local/*")
    )
    async with serving(Recorder(), authorizer=authorizer) as served, served.client("a"):
        assert served.emulator.live_connections == 1


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (lambda e: policy("Deny", e["methodArn"]), 403),
        (lambda _e: policy("Allow", "arn:aws:execute-api:us-east-1:1:other/local/$connect"), 403),
        (lambda e: {"principalId": "u", "policyDocument": {"Statement": []}} | {"x": e}, 403),
        (lambda _e: {"policyDocument": {}}, 500),
        (lambda e: policy("Allow", e["methodArn"], {"nested": {"no": "objects"}}), 500),
    ],
    ids=["deny", "other-resource", "no-statement", "no-principal", "nested-context"],
)
async def test_authorizer_refusals(answer: Callable[[Event], Any], status: int) -> None:
    recorder = Recorder()
    authorizer = Recorder(AUTHORIZE=lambda e, _c: answer(e))
    async with serving(recorder, authorizer=authorizer) as served:
        assert await handshake_status(served) == status
    assert recorder.events == []  # the route never ran


@pytest.mark.parametrize(("message", "status"), [("Unauthorized", 401), ("bug", 500)])
async def test_authorizer_exceptions(message: str, status: int) -> None:
    def fail(_event: Event, _context: Any) -> None:
        raise RuntimeError(message)

    recorder = Recorder()
    async with serving(recorder, authorizer=Recorder(AUTHORIZE=fail)) as served:
        assert await handshake_status(served) == status
    assert recorder.events == []


async def test_real_authorizer_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_JWT_SECRET", "s" * 32)
    recorder = Recorder()
    token = jwt.encode({"sub": "u_9", "exp": int(time.time()) + 60}, "s" * 32, "HS256")
    async with serving(recorder, authorizer=real_authorizer.handler) as served:
        async with served.client(f"a&token={token}"):
            [event] = await recorder.wait_for("CONNECT")
        assert await handshake_status(served, "b&token=forged") == 403
        assert await handshake_status(served, "c") == 403
    forwarded = event["requestContext"]["authorizer"]
    assert (forwarded["userId"], forwarded["canBroadcast"]) == ("u_9", "false")


# -- the management half -------------------------------------------------------------------------


async def test_post_reaches_the_client_as_text_or_binary() -> None:
    recorder = Recorder()
    async with serving(recorder) as served, served.client("a") as ws:
        cid = recorder.connection_id("a")
        async with management(served.management_url) as client:
            await client.post_to_connection(ConnectionId=cid, Data="héllo".encode())
            await client.post_to_connection(ConnectionId=cid, Data=b"\xff\x00")
        with anyio.fail_after(WAIT_S):
            assert await ws.recv() == "héllo"
            assert await ws.recv() == b"\xff\x00"
        endpoint = served.emulator.management
        assert endpoint.received(cid) == ["héllo".encode(), b"\xff\x00"]
        assert endpoint.stats()["delivered"] == 2


async def test_get_describes_the_connection() -> None:
    recorder = Recorder()
    async with serving(recorder) as served, served.client("a", user_agent_header="ua/1") as ws:
        cid = recorder.connection_id("a")
        async with management(served.management_url) as client:
            first = await client.get_connection(ConnectionId=cid)
            await ws.send("activity")
            await recorder.wait_for("MESSAGE")
            second = await client.get_connection(ConnectionId=cid)
    connected_ms = recorder.of("CONNECT")[0]["requestContext"]["connectedAt"]
    assert int(first["ConnectedAt"].timestamp() * 1000) == connected_ms
    assert first["LastActiveAt"] == first["ConnectedAt"]  # nothing sent yet
    assert first["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "ua/1"}
    assert second["LastActiveAt"] > second["ConnectedAt"]


async def test_delete_closes_the_socket_and_disconnects() -> None:
    recorder = Recorder()
    async with serving(recorder) as served, served.client("a") as ws:
        cid = recorder.connection_id("a")
        async with management(served.management_url) as client:
            deleted = await client.delete_connection(ConnectionId=cid)
            assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
            assert await closed(ws) == (1000, "Connection Closed Normally")
            [event] = await recorder.wait_for("DISCONNECT", cid)
            for call in (
                client.post_to_connection(ConnectionId=cid, Data=b"x"),
                client.get_connection(ConnectionId=cid),
                client.delete_connection(ConnectionId=cid),
            ):
                assert await error_of(call) == ("GoneException", 410)
        assert served.emulator.live_connections == 0
    assert event["requestContext"]["disconnectStatusCode"] == 1000


async def test_gone_for_unknown_and_closed_connections() -> None:
    recorder = Recorder()
    async with serving(recorder) as served, management(served.management_url) as client:
        assert await error_of(
            client.post_to_connection(ConnectionId="AAAAAAAAAAAAAAA=", Data=b"x")
        ) == (
            "GoneException",
            410,
        )
        async with served.client("a"):
            cid = recorder.connection_id("a")
        await recorder.wait_for("DISCONNECT", cid)
        assert await error_of(client.post_to_connection(ConnectionId=cid, Data=b"x")) == (
            "GoneException",
            410,
        )
        assert await error_of(client.get_connection(ConnectionId=cid)) == ("GoneException", 410)
        assert served.emulator.management.stats()["gone"] == 2


async def test_gone_while_connect_is_still_running() -> None:
    release = threading.Event()
    recorder = Recorder(
        CONNECT=lambda _e, _c: None if release.wait(WAIT_S) else {"statusCode": 500}
    )
    opened = anyio.Event()
    box: list[ClientConnection] = []

    async def open_client(served: Served) -> None:
        async with served.client("a") as ws:
            box.append(ws)
            opened.set()
            await ws.wait_closed()

    async with (
        serving(recorder) as served,
        management(served.management_url) as client,
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(open_client, served)
        [event] = await recorder.wait_for("CONNECT")
        cid = event["requestContext"]["connectionId"]
        post = client.post_to_connection(ConnectionId=cid, Data=b"early")
        assert await error_of(post) == ("GoneException", 410)
        assert await error_of(client.get_connection(ConnectionId=cid)) == ("GoneException", 410)
        assert served.emulator.live_connections == 0
        release.set()
        with anyio.fail_after(WAIT_S):
            await opened.wait()
        await client.post_to_connection(ConnectionId=cid, Data=b"now")
        with anyio.fail_after(WAIT_S):
            assert await box[0].recv() == "now"
        await box[0].close()


async def test_payload_limit_is_128_kib() -> None:
    recorder = Recorder()
    async with serving(recorder) as served, served.client("a", max_size=None) as ws:
        cid = recorder.connection_id("a")
        async with management(served.management_url) as client:
            call = client.post_to_connection(ConnectionId=cid, Data=b"x" * (128 * 1024 + 1))
            assert await error_of(call) == ("PayloadTooLargeException", 413)
            await client.post_to_connection(ConnectionId=cid, Data=b"y" * (128 * 1024))
        with anyio.fail_after(WAIT_S):
            assert await ws.recv() == "y" * (128 * 1024)


async def test_unsigned_requests_are_forbidden() -> None:
    recorder = Recorder()
    async with serving(recorder) as served, served.client("a"), aiohttp.ClientSession() as http:
        cid = recorder.connection_id("a")
        url = f"{served.management_url}/@connections/{cid}"
        async with http.post(url, data=b"x") as response:
            assert response.status == 403
            assert response.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
        async with http.delete(url) as response:
            assert response.status == 403
        assert served.emulator.live_connections == 1
        async with http.get(served.ws_url) as response:  # no upgrade
            assert response.status == 426


def test_connections_cannot_be_added_by_hand() -> None:
    emulator = Emulator(route_handler=lambda _e, _c: {"statusCode": 200})
    with pytest.raises(ConfigurationError):
        emulator.management.add("abc=")
    with pytest.raises(InvalidInputError):
        Limits(frame_bytes=0)
    with pytest.raises(InvalidInputError):
        Emulator(route_handler=lambda _e, _c: {}, concurrency=0)


# -- limits --------------------------------------------------------------------------------------


async def test_frame_over_the_limit_closes_with_1009() -> None:
    recorder = Recorder()
    async with (
        serving(recorder, limits=Limits(frame_bytes=1024)) as served,
        served.client("a") as ws,
    ):
        cid = recorder.connection_id("a")
        await ws.send("é" * 512)  # 1024 bytes in UTF-8: at the limit
        await recorder.wait_for("MESSAGE", cid)
        await ws.send(b"x" * 1025)
        assert await closed(ws) == (1009, "Message too big")
        [event] = await recorder.wait_for("DISCONNECT", cid)
    assert len(recorder.of("MESSAGE")) == 1
    assert event["requestContext"]["disconnectStatusCode"] == 1009


async def test_idle_connections_are_closed() -> None:
    recorder = Recorder()
    async with serving(recorder, limits=Limits(idle_timeout_s=0.3)) as served:
        async with served.client("a", ping_interval=None) as ws:
            cid = recorder.connection_id("a")
            started = time.monotonic()
            assert await closed(ws) == (1001, "Going away")
            assert time.monotonic() - started >= 0.25
        [event] = await recorder.wait_for("DISCONNECT", cid)
    assert event["requestContext"]["disconnectStatusCode"] == 1001


async def test_activity_postpones_the_idle_timeout_but_not_the_lifetime() -> None:
    recorder = Recorder()
    limits = Limits(idle_timeout_s=0.5, max_lifetime_s=1.2)
    async with serving(recorder, limits=limits) as served, served.client("a") as ws:
        cid = recorder.connection_id("a")
        started = time.monotonic()
        with anyio.fail_after(WAIT_S):
            sent = 0
            while ws.close_code is None:
                sent += 1
                await ws.send("keep-alive")
                await recorder.wait_for("MESSAGE", cid, count=sent)
                await anyio.sleep(0.1)  # pacing the traffic, not synchronisation
        assert await closed(ws) == (1001, "Going away")
        assert time.monotonic() - started >= 1.1  # well past the idle timeout
        await recorder.wait_for("DISCONNECT", cid)


async def test_shutdown_closes_every_socket_and_disconnects() -> None:
    recorder = Recorder()
    async with serving(recorder) as served, served.client("a") as a, served.client("b") as b:
        ids = {recorder.connection_id("a"), recorder.connection_id("b")}
        await served.emulator.aclose()
        assert await closed(a) == (1001, "Going away")
        assert await closed(b) == (1001, "Going away")
    # serve_emulator returned: every $disconnect has run.
    assert {e["requestContext"]["connectionId"] for e in recorder.of("DISCONNECT")} == ids


async def test_shutdown_with_no_disconnect_closes_every_socket_and_invokes_nothing() -> None:
    recorder = Recorder()
    async with serving(recorder) as served, served.client("a") as a, served.client("b") as b:
        connected = len(recorder.of("CONNECT"))
        await served.emulator.aclose(disconnect=False)
        assert await closed(a) == (1001, "Going away")
        assert await closed(b) == (1001, "Going away")
        assert served.emulator.live_connections == 0
    # serve_emulator returned: whatever close was going to invoke has been invoked.
    assert recorder.of("DISCONNECT") == []
    assert len(recorder.of("CONNECT")) == connected == 2


async def test_a_restarted_emulator_disconnects_again() -> None:
    recorder = Recorder()
    emulator = Emulator(route_handler=recorder, stage=STAGE)
    async with serve_emulator(emulator) as base, Served(emulator, base).client("a"):
        await emulator.aclose(disconnect=False)
    async with serve_emulator(emulator) as base, Served(emulator, base).client("b"):
        cid = recorder.connection_id("b")
    assert [e["requestContext"]["connectionId"] for e in recorder.of("DISCONNECT")] == [cid]


async def test_lose_disconnect_leaves_no_disconnect_event() -> None:
    recorder = Recorder()
    async with serving(recorder) as served:
        async with served.client("lost"):
            lost = recorder.connection_id("lost")
            served.emulator.lose_disconnect(lost)
        async with served.client("kept"):
            kept = recorder.connection_id("kept")
    # serve_emulator returned, so both closes were fully processed.
    assert [e["requestContext"]["connectionId"] for e in recorder.of("DISCONNECT")] == [kept]
    assert recorder.of("DISCONNECT", lost) == []


async def test_integration_failures_answer_the_client() -> None:
    release = threading.Event()

    def on_message(event: Event, _context: Any) -> dict[str, Any] | None:
        if event["body"] == "crash":
            raise RuntimeError("boom")
        if event["body"] == "slow":
            release.wait(WAIT_S)
        return None

    recorder = Recorder(MESSAGE=on_message)
    limits = Limits(integration_timeout_s=0.3)
    try:
        async with serving(recorder, limits=limits) as served, served.client("a") as ws:
            cid = recorder.connection_id("a")
            with anyio.fail_after(WAIT_S):
                await ws.send("crash")
                crashed = json.loads(await ws.recv())
                await ws.send("slow")
                slow = json.loads(await ws.recv())
            release.set()
    finally:
        release.set()
    assert crashed["message"] == "Internal server error"
    assert slow["message"] == "Endpoint request timed out"
    for frame, event in zip((crashed, slow), recorder.of("MESSAGE"), strict=True):
        assert frame["connectionId"] == cid
        assert frame["requestId"] == event["requestContext"]["requestId"]


# -- the AWS CLI ---------------------------------------------------------------------------------


async def test_aws_cli_against_the_emulator(tmp_path: Path) -> None:
    aws = shutil.which("aws")
    if aws is None:
        pytest.skip("the AWS CLI ('aws') is not on PATH")
    asked = await anyio.run_process([aws, "--version"])  # v1 prints it to stderr, v2 to stdout
    version = asked.stdout.decode() + asked.stderr.decode()
    # CLI v2 reads blobs as base64 unless told otherwise; v1 takes the text as is.
    raw = ["--cli-binary-format", "raw-in-base64-out"] if "aws-cli/2" in version else []
    binary = tmp_path / "frame.bin"
    binary.write_bytes(b"\x00\xff\x10")
    recorder = Recorder()
    async with serving(recorder) as served, served.client("a") as ws:
        cid = recorder.connection_id("a")
        common = ["--connection-id", cid, "--endpoint-url", served.management_url]
        common += ["--region", REGION]

        async def cli(*args: str) -> Any:
            with anyio.fail_after(60):
                return await anyio.run_process(
                    [aws, "apigatewaymanagementapi", *args, *common], check=False, env=os.environ
                )

        posted = await cli("post-to-connection", "--data", "from the cli", *raw)
        assert posted.returncode == 0, posted.stderr.decode()
        posted = await cli("post-to-connection", "--data", f"fileb://{binary}")
        assert posted.returncode == 0, posted.stderr.decode()
        with anyio.fail_after(WAIT_S):
            assert await ws.recv() == "from the cli"
            assert await ws.recv() == b"\x00\xff\x10"

        described = await cli("get-connection")
        assert described.returncode == 0, described.stderr.decode()
        assert json.loads(described.stdout)["Identity"]["SourceIp"] == "127.0.0.1"

        deleted = await cli("delete-connection")
        assert deleted.returncode == 0, deleted.stderr.decode()
        assert (await closed(ws))[0] == 1000
        gone = await cli("post-to-connection", "--data", "too late", *raw)
        assert gone.returncode != 0
        assert "GoneException" in gone.stderr.decode()


# -- the real route handler against moto -----------------------------------------------------------


async def test_real_route_handler_against_moto(
    moto_url: str, table_name: str, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTIONS_TABLE", table_name)
    spy = Recorder()

    def real(event: Event, context: Any) -> dict[str, Any]:
        spy(event, context)  # only to learn the connection ids; the real handler answers
        return route.handler(event, context)

    # set_testing, not a tiny FANOUT_BACKOFF_BASE_S: the handler runs in this process.
    with set_testing():
        await anyio.to_thread.run_sync(close_all_runtimes)  # every container starts cold
        try:
            async with (
                serving(real) as served,
                served.client("alice") as alice,
                served.client("bob") as bob,
            ):
                alice_id, bob_id = spy.connection_id("alice"), spy.connection_id("bob")
                with anyio.fail_after(WAIT_S):
                    await alice.send(json.dumps({"action": "joinRoom", "room": "lobby"}))
                    assert json.loads(await alice.recv()) == {
                        "type": "ack",
                        "action": "joinRoom",
                        "room": "lobby",
                        "seq": 0,  # the durable room's latest: nothing sent yet
                    }
                    message = {"action": "sendMessage", "to": {"connection": bob_id}, "data": "hi"}
                    await alice.send(json.dumps(message))
                    received = json.loads(await bob.recv())
                    ack = json.loads(await alice.recv())
                assert received == {
                    "type": "message",
                    "from": {"connectionId": alice_id},
                    "data": "hi",
                }
                assert ack == {"type": "ack", "action": "sendMessage", "delivered": 1}
                items = (await dynamodb.scan(TableName=table_name))["Items"]
                endpoints = {i["endpoint"]["S"] for i in items if i["SK"]["S"] == "CONN"}
                assert endpoints == {served.management_url}
                assert {("CONN#" + alice_id, "ROOM#lobby")} <= {
                    (i["PK"]["S"], i["SK"]["S"]) for i in items
                }
            # $disconnect removed both connections and the membership.
            assert (await dynamodb.scan(TableName=table_name))["Items"] == []
        finally:
            await anyio.to_thread.run_sync(close_all_runtimes)
