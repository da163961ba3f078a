"""The whole local stack, end to end: real WebSocket clients, the emulator, moto, the SQS
mapping and the real handlers, as ``wsfanout dev`` runs them.

These tests start their own moto server (the stack owns one), so they do not use the session's.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from websockets.asyncio.client import connect

from tests.helpers import WSFANOUT, run_wsfanout
from wsfanout.exceptions import ConfigurationError
from wsfanout.handlers import authorizer
from wsfanout.local.stack import local_stack

# What ``wsfanout dev`` prints as ``export`` lines: the stack's endpoints and names, and the
# dummy credentials and region a shell needs to reach them.
EXPORTED = set(
    """
    AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL_SQS CONNECTIONS_TABLE BROADCAST_QUEUE_URL
    APIGW_MANAGEMENT_ENDPOINT AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_DEFAULT_REGION
    AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI BROADCAST_DLQ_URL
    """.split()  # noqa: SIM905  (a list literal would be formatted one name a line)
)

pytestmark = pytest.mark.timeout(120)


async def _frame(ws: Any, *, seconds: float = 20) -> dict[str, Any]:
    with anyio.fail_after(seconds):
        return dict(json.loads(await ws.recv()))


async def _frame_of_type(ws: Any, kind: str, *, seconds: float = 20) -> dict[str, Any]:
    """The next frame of ``kind``, skipping others (acks may interleave), within ``seconds``."""
    with anyio.fail_after(seconds):
        for _ in range(20):
            frame = await _frame(ws, seconds=seconds)
            if frame.get("type") == kind:
                return frame
    raise AssertionError(f"no {kind!r} frame among the next 20")


async def test_a_room_message_reaches_the_member_through_sqs(monkeypatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "someone-real")
    monkeypatch.setenv("APIGW_MANAGEMENT_ENDPOINT", "https://example.invalid/prod")
    before = dict(os.environ)

    async with local_stack() as stack:
        # What the handlers see: this stack, not the developer's shell.
        assert "AWS_PROFILE" not in os.environ
        assert "APIGW_MANAGEMENT_ENDPOINT" not in os.environ  # derived from each event
        assert os.environ["CONNECTIONS_TABLE"] == stack.table
        assert os.environ["AWS_ENDPOINT_URL_SQS"] == stack.moto_url
        assert set(stack.env) == EXPORTED
        assert stack.ws_url.startswith("ws://127.0.0.1:")
        assert stack.ws_url.endswith("/local")
        assert stack.emulator.authorizer is None  # no JWT key: no authorizer, as deployed

        async with connect(stack.ws_url) as alice, connect(stack.ws_url) as bob:
            await alice.send(json.dumps({"action": "joinRoom", "room": "lobby"}))
            assert await _frame_of_type(alice, "ack") == {
                "type": "ack",
                "action": "joinRoom",
                "room": "lobby",
                "seq": 0,  # the durable room's latest: nothing sent yet
            }
            await bob.send(json.dumps({"action": "joinRoom", "room": "lobby"}))  # members post
            assert (await _frame_of_type(bob, "ack"))["action"] == "joinRoom"
            await bob.send(
                json.dumps({"action": "sendMessage", "to": {"room": "lobby"}, "data": {"n": 1}})
            )
            ack = await _frame_of_type(bob, "ack")
            assert (ack["action"], ack["room"]) == ("sendMessage", "lobby")

            message = await _frame_of_type(alice, "message")
            assert message["data"] == {"n": 1}
            assert message["from"]["connectionId"]

        # The member got the frame during the invocation; the mapping deletes right after it.
        assert stack.poller is not None
        stats = stack.poller.stats
        with anyio.fail_after(20):
            while stats.deleted < 1:  # noqa: ASYNC110  (the poller exposes counters, not events)
                await anyio.sleep(0.02)
        assert stats.failed_records == 0

    assert dict(os.environ) == before


async def test_one_stack_per_process_errors_pass_through_and_everything_stops() -> None:
    before = dict(os.environ)
    urls: list[str] = []

    async def use_a_stack() -> None:
        async with local_stack(
            stage="dev_1",
            set_management_endpoint=True,
            environ={"AUTH_JWT_SECRET": "local-secret", "FANOUT_CONCURRENCY": "8"},
        ) as stack:
            urls.extend((stack.moto_url, stack.page_url))
            assert stack.management_url.endswith("/dev_1")
            assert os.environ["APIGW_MANAGEMENT_ENDPOINT"] == stack.management_url
            assert os.environ["FANOUT_CONCURRENCY"] == "8"
            assert stack.emulator.authorizer is authorizer.handler  # a JWT key is configured
            with pytest.raises(ConfigurationError, match="already running"):
                async with local_stack():
                    pass
            raise LookupError("the caller's own error")

    with pytest.raises(LookupError, match="the caller's own"):  # as raised, not in a group
        await use_a_stack()
    assert dict(os.environ) == before
    assert len(urls) == 2
    for url in urls:
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        with pytest.raises(OSError):  # noqa: PT011  (refused: nothing listens any more)
            await anyio.connect_tcp(host, int(port))


async def test_wsfanout_dev_prints_where_everything_is_and_stops_on_sigint(tmp_path) -> None:
    stderr = tmp_path / "stderr.txt"
    lines: list[str] = []
    with stderr.open("wb") as err:
        process = await anyio.open_process(
            [WSFANOUT, "dev", "--port", "0"],
            cwd=tmp_path,  # no template here: the built-in stack (the project's runs its own)
            stdin=None,
            stderr=err,
            env=dict(os.environ),
        )
        async with process:
            assert process.stdout is not None
            out = BufferedByteReceiveStream(process.stdout)
            try:
                with anyio.fail_after(60):
                    for _ in range(100):
                        line = (await out.receive_until(b"\n", 65536)).decode()
                        lines.append(line)
                        if "to stop" in line:
                            break
                process.send_signal(signal.SIGINT)
                with anyio.fail_after(60):
                    code = await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
            rest = b""
            with anyio.fail_after(10):
                for _ in range(1000):
                    try:
                        rest += await out.receive()
                    except anyio.EndOfStream:
                        break
    assert code == 0, stderr.read_text()
    text = "\n".join(lines)
    ws = next(word for line in lines for word in line.split() if word.startswith("ws://"))
    netloc = ws.removeprefix("ws://").split("/")[0]
    assert ws == f"ws://{netloc}/local"
    assert f"http://{netloc}/local" in text  # management
    assert f"http://{netloc}/" in [line.split()[-1] for line in lines if line.strip()]  # page
    exported = {
        line.split("=", 1)[0].removeprefix("export ")
        for line in lines
        if line.startswith("export ")
    }
    assert exported == EXPORTED
    assert f"export APIGW_MANAGEMENT_ENDPOINT=http://{netloc}/local" in lines
    assert "stopped" in rest.decode()


def test_wsfanout_dev_refuses_a_bad_stage_name() -> None:
    result = run_wsfanout("dev", "--stage", "no spaces")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "not a stage name" in result.stderr
