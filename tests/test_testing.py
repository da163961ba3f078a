"""The shipped test doubles of :mod:`wsfanout.testing` keep the contracts they stand in for."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.events import load_event
from tests.helpers import registered_ids
from wsfanout import testing
from wsfanout.core.interfaces import Recipient
from wsfanout.core.models import (
    AllTarget,
    BroadcastJob,
    ConnectionsTarget,
    Cursor,
    RoomTarget,
    UsersTarget,
)
from wsfanout.core.outcomes import Outcome
from wsfanout.core.pacing import is_testing
from wsfanout.testing import LambdaContext, MemorySource, Post, ScriptedGateway

IDS = [f"id{i}" for i in range(7)]


def flat(pages: list[list[str]]) -> list[str]:
    return list(itertools.chain.from_iterable(pages))


async def collect(source: MemorySource, target: Any = None, **kwargs: Any) -> list[list[str]]:
    pages = source.pages(target or AllTarget(all=True), **kwargs)
    return [[r.connection_id for r in page] async for page in pages]


async def test_pages_are_stable_and_sized() -> None:
    source = MemorySource(IDS, page_size=3)
    assert await collect(source) == [IDS[0:3], IDS[3:6], IDS[6:]]
    assert await collect(source) == await collect(source)


async def test_resume_cursor_reaches_exactly_the_rest_even_after_a_removal() -> None:
    source = MemorySource(IDS, page_size=2)
    recipients = [r async for page in source.pages(AllTarget(all=True)) for r in page]
    assert recipients[2].key == {"PK": "CONN#id2", "SK": "CONN"}
    cursor = recipients[2].resume_cursor()
    assert await source.remove_gone([recipients[2]]) == 1
    assert flat(await collect(source, cursor=cursor)) == IDS[3:]


async def test_segments_partition_the_registry() -> None:
    source = MemorySource(IDS)
    seen = [flat(await collect(source, segment=s, total_segments=3)) for s in range(3)]
    assert sorted(flat(seen)) == sorted(IDS)
    assert all(seen)
    with pytest.raises(ValueError, match="segments"):
        await collect(source, RoomTarget(room="r"), segment=0, total_segments=2)


async def test_listed_rooms_and_users_targets() -> None:
    source = MemorySource(
        {"a": "https://one/prod", "b": None, "c": None},
        rooms={"lobby": ["c", "a"]},
        users={"u1": ["a", "b"], "u2": ["c"]},
    )
    listed = [
        r async for p in source.pages(ConnectionsTarget(connection_ids=["b", "x"])) for r in p
    ]
    assert [(r.connection_id, r.endpoint, r.index) for r in listed] == [
        ("b", None, 0),
        ("x", None, 1),
    ]
    assert flat(
        await collect(source, ConnectionsTarget(connection_ids=["b", "x"]), cursor=Cursor(offset=1))
    ) == ["x"]
    assert await collect(source, RoomTarget(room="lobby")) == [["c", "a"]]
    users = [r async for p in source.pages(UsersTarget(user_ids=["u1", "u2"])) for r in p]
    assert [(r.connection_id, r.index) for r in users] == [("a", 0), ("b", 0), ("c", 1)]
    resumed = await collect(
        source, UsersTarget(user_ids=["u1", "u2"]), cursor=users[0].resume_cursor()
    )
    assert flat(resumed) == ["b", "c"]


async def test_remove_gone_records_calls_and_drops_memberships() -> None:
    source = MemorySource(["a", "b"], rooms={"lobby": ["a", "b"]})
    [members] = [p async for p in source.pages(RoomTarget(room="lobby"))]
    assert await source.remove_gone([members[0], Recipient("zz")]) == 2  # a's item and membership
    assert source.removed == [["a", "zz"]]
    assert source.ids() == ["b"]
    assert source.rooms == {"lobby": ["b"]}
    assert await registered_ids(source) == {"b"}


async def test_scripted_gateway_records_every_attempt_in_order() -> None:
    release = anyio.Event()

    async def held(connection_id: str, data: bytes) -> Outcome:
        await release.wait()
        return Outcome.GONE

    gateway = ScriptedGateway(
        lambda cid, data: Outcome.THROTTLED if cid == "t" else Outcome.DELIVERED
    )
    assert await gateway.post("a", b"1") is Outcome.DELIVERED
    assert await gateway.post("t", b"2", "https://other/prod") is Outcome.THROTTLED
    assert gateway.posts == [
        Post("a", b"1", gateway.default_endpoint),
        Post("t", b"2", "https://other/prod"),
    ]
    gateway.handler = held
    outcomes: list[Outcome] = []
    async with anyio.create_task_group() as tasks:

        async def send() -> None:
            outcomes.append(await gateway.post("h", b"3"))

        tasks.start_soon(send)
        await anyio.wait_all_tasks_blocked()
        assert gateway.posts[-1].connection_id == "h", "recorded while in flight"
        assert outcomes == []
        release.set()
    assert outcomes == [Outcome.GONE]
    assert gateway.counts() == {"a": 1, "t": 1, "h": 1}


def test_lambda_context_runs_down() -> None:
    context = LambdaContext(seconds=5, function_name="fn")
    first = context.get_remaining_time_in_millis()
    assert 0 < first <= 5000
    assert context.get_remaining_time_in_millis() <= first
    assert LambdaContext(seconds=0).get_remaining_time_in_millis() == 0
    assert context.invoked_function_arn.endswith(":function:fn")
    assert context.log_group_name == "/aws/lambda/fn"
    assert context.aws_request_id != LambdaContext().aws_request_id
    assert isinstance(context.memory_limit_in_mb, str)


def shape(value: Any) -> Any:
    """The keys of an event, recursively, without the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return type(value).__name__


def test_websocket_events_have_the_fixtures_shape() -> None:
    auth = {"userId": "u_123", "canBroadcast": True, "principalId": "u_123"}
    connect = testing.connect_event(query={"token": "t"}, authorizer=auth)
    expected = load_event("ws_connect")
    assert set(connect) == set(expected)
    assert set(connect["requestContext"]) == set(expected["requestContext"])
    assert connect["requestContext"]["authorizer"]["canBroadcast"] == "true"
    assert connect["queryStringParameters"] == {"token": "t"}
    assert "queryStringParameters" not in testing.connect_event()

    message = testing.message_event("c=", '{"action": "sendMessage"}', authorizer=auth)
    assert shape(message) == shape(load_event("ws_message"))
    assert message["requestContext"]["routeKey"] == "sendMessage"
    binary = testing.message_event("c=", b"\x00\x01")
    assert (binary["body"], binary["isBase64Encoded"]) == ("AAE=", True)
    assert binary["requestContext"]["routeKey"] == "$default"

    gone = testing.disconnect_event("c=")
    assert shape(gone) == shape(load_event("ws_disconnect"))
    assert gone["requestContext"]["connectionId"] == "c="


def test_sqs_event_has_the_fixtures_shape() -> None:
    job = BroadcastJob(job_id="j", target=AllTarget(all=True), data="hi")
    event = testing.sqs_event(["plain", job], receive_count=2)
    expected = load_event("sqs_batch")["Records"][1]
    first, second = event["Records"]
    assert set(expected) <= set(first)
    assert set(first["attributes"]) == set(expected["attributes"])
    assert first["body"] == "plain"
    assert first["attributes"]["ApproximateReceiveCount"] == "2"
    assert first["messageId"] != second["messageId"]
    assert BroadcastJob.model_validate_json(second["body"]) == job
    assert first["awsRegion"] == "eu-west-1"


def test_set_testing_is_the_pacing_switch() -> None:
    with testing.set_testing():
        assert is_testing()
    assert not is_testing()


def test_importing_it_stays_light() -> None:
    code = (
        "import sys, wsfanout.testing; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'botocore', 'aiobotocore', 'aiohttp', 'moto', 'websockets', 'boto3'}))"
    )
    out = subprocess.run(  # noqa: S603  (this interpreter, a fixed script)
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


async def test_the_readme_example_runs_as_written() -> None:
    """The README shows these doubles in a test; that test must pass as printed there."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Testing code built on it", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102  (our own README's code)
    with anyio.fail_after(10):
        await namespace["test_gone_connections_are_forgotten"]()
    assert not is_testing(), "the example's with-block restored the switch"
