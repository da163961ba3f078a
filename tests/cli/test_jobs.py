"""``wsfanout jobs list|status``: a real job through the local stack (a client's broadcast, the
SQS mapping, the worker), and progress items written by the real progress store on moto."""

from __future__ import annotations

import json
import time
from contextlib import AsyncExitStack

import anyio
import pytest
from websockets.asyncio.client import connect

from tests.cli.test_connections import document
from tests.cli.test_main import assert_usage_error, cli_env, run_cli, run_cli_sync
from wsfanout.aws.progress import Checkpoints
from wsfanout.core.jobs import Claim, Step
from wsfanout.core.models import FanoutReport
from wsfanout.local.stack import local_stack

pytestmark = pytest.mark.timeout(120)


async def test_a_broadcast_through_the_stack_shows_complete() -> None:
    environ = {"BROADCAST_ALLOWED_BY_DEFAULT": "true", "BROADCAST_SEGMENTS": "2"}
    async with local_stack(environ=environ) as stack, AsyncExitStack() as exits:
        clients = [await exits.enter_async_context(connect(stack.ws_url)) for _ in range(3)]
        await clients[0].send(json.dumps({"action": "broadcast", "data": "hello"}))
        with anyio.fail_after(30):
            ack = json.loads(await clients[0].recv())
            for other in clients[1:]:
                assert json.loads(await other.recv())["data"] == "hello"
            # the segments' messages are deleted once their steps finished
            assert stack.poller is not None
            while stack.poller.stats.deleted < 3:  # noqa: ASYNC110  (counters, not events)
                await anyio.sleep(0.02)
        job_id = ack["jobId"]
        env = cli_env(**stack.env)

        status = document(await run_cli("jobs", "status", job_id, "--json", env=env))
        assert status["found"] is True
        assert status["complete"] is True
        assert [s["segment"] for s in status["segments"]] == [0, 1]
        assert status["delivered"] == 2, "everyone but the sender"
        assert (status["gone"], status["failed"], status["running"]) == (0, 0, 0)
        assert all(s["leaseHolder"] is None for s in status["segments"])

        listed = document(await run_cli("jobs", "list", "--json", env=env))
        assert [j["jobId"] for j in listed["jobs"]] == [job_id]
        assert listed["jobs"][0]["completeSegments"] == 2

        human = await run_cli("jobs", "status", job_id, env=env)
        assert human.returncode == 0, human
        assert f"job {job_id}: complete, 2 delivered" in " ".join(human.stdout.split())
        table = await run_cli("jobs", "list", env=env)
        assert job_id in table.stdout
        assert "complete" in table.stdout


async def test_status_shows_a_running_step_with_its_lease(dynamodb, table_name) -> None:
    progress = Checkpoints(dynamodb, table_name, ttl_seconds=3600)
    now = time.time()
    running = Step("j1", 0, 3, owner="message-7", token="tok")
    assert await progress.claim(Claim(running, None, None, lease_until=now + 120, now=now))
    done = Step("j1", 1, 0, owner="message-8", token="tok2")
    assert await progress.claim(Claim(done, None, None, lease_until=now + 120, now=now))
    assert await progress.finish(done, FanoutReport(delivered=5, gone=1, failed=2), None)
    lapsed = Step("j2", None, 0, owner="message-9", token="tok3")
    assert await progress.claim(Claim(lapsed, None, None, lease_until=now - 10, now=now - 70))

    status = document(await run_cli("jobs", "status", "j1", "--table", table_name, "--json"))
    assert (status["complete"], status["completeSegments"], status["running"]) == (False, 1, 1)
    assert (status["delivered"], status["gone"], status["failed"]) == (5, 1, 2)
    first, second = status["segments"]
    assert (first["segment"], first["step"], first["complete"]) == (0, 3, False)
    assert (first["leaseHolder"], first["leaseLive"]) == ("message-7", True)
    assert first["leaseUntil"] == pytest.approx(now + 120, abs=0.01)
    assert (second["segment"], second["complete"], second["leaseHolder"]) == (1, True, None)

    other = document(await run_cli("jobs", "status", "j2", "--table", table_name, "--json"))
    [segment] = other["segments"]
    assert (segment["segment"], segment["leaseHolder"], segment["leaseLive"]) == (
        None,
        "message-9",
        False,
    )
    human = await run_cli("jobs", "status", "j2", "--table", table_name)
    assert "(lapsed)" in human.stdout

    listed = document(await run_cli("jobs", "list", "--table", table_name, "--json"))
    assert {j["jobId"]: j["running"] for j in listed["jobs"]} == {"j1": 1, "j2": 0}


async def test_status_of_an_unknown_job_exits_1(table_name) -> None:
    result = await run_cli("jobs", "status", "nope", "--table", table_name, "--json")
    assert result.returncode == 1, result
    assert document(result) == {"jobId": "nope", "found": False, "segments": []}
    assert result.stderr.splitlines() == [
        "wsfanout: no progress items of job nope (not started, or expired)"
    ]
    empty = await run_cli("jobs", "list", "--table", table_name, "--json")
    assert document(empty) == {"jobs": []}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        pytest.param(["jobs", "list"], "CONNECTIONS_TABLE", id="list-no-table"),
        pytest.param(["jobs", "status", "--table", "t", ""], "job id", id="status-empty"),
        pytest.param(["jobs", "status", "--table", "t"], "JOB_ID", id="status-missing"),
        pytest.param(["jobs"], "required", id="no-action"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], needle: str) -> None:
    assert_usage_error(run_cli_sync(*args), needle)
