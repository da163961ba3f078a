"""``wsfanout dlq list|redrive``: against moto's SQS (queues made as the deploy template makes
them), and a job the local stack's worker refused landing in its dead-letter queue."""

from __future__ import annotations

import json
import signal
from typing import Any

import aioboto3
import anyio
import pytest
from websockets.asyncio.client import connect

from tests.cli.test_connections import document
from tests.cli.test_main import assert_usage_error, cli_env, run_cli, run_cli_sync
from tests.helpers import WSFANOUT, receive_all
from wsfanout.aws.queue import job_body
from wsfanout.core.models import AllTarget, BroadcastJob, RoomTarget
from wsfanout.local.stack import local_stack

pytestmark = pytest.mark.timeout(120)

JOBS = [
    BroadcastJob(job_id="job-a", target=AllTarget(all=True), data="a", segment=1, total_segments=4),
    BroadcastJob(job_id="job-b", target=RoomTarget(room="lobby"), data="b"),
]
NOT_A_JOB = '{"target": {"room": ""}, "data": "x"}'


def env_of(**changes: str | None) -> dict[str, str]:
    """:func:`cli_env` without a dead-letter queue of the developer's shell, plus ``changes``."""
    return cli_env(**{"BROADCAST_DLQ_URL": None, **changes})


async def make_queues(sqs: Any, name: str) -> tuple[str, str]:
    """A broadcast queue whose RedrivePolicy names its dead-letter queue; their URLs."""
    dlq = (await sqs.create_queue(QueueName=f"{name}-dlq"))["QueueUrl"]
    arn = (await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"]))["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"})
    queue = (await sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy}))[
        "QueueUrl"
    ]
    return queue, dlq


async def visible(sqs: Any, url: str) -> int:
    answer = await sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(answer["Attributes"]["ApproximateNumberOfMessages"])


@pytest.fixture
async def queues(sqs, request) -> tuple[str, str, list[str]]:
    """The queues, and the dead-letter queue holding two jobs and a body that is no job (the
    first job with a message attribute); the ids of the three messages."""
    queue, dlq = await make_queues(sqs, f"bq-{request.node.name[:40]}")
    ids = []
    attributes = {"origin": {"DataType": "String", "StringValue": "route"}}
    for index, body in enumerate([*map(job_body, JOBS), NOT_A_JOB]):
        extra = {"MessageAttributes": attributes} if index == 0 else {}
        ids.append((await sqs.send_message(QueueUrl=dlq, MessageBody=body, **extra))["MessageId"])
    return queue, dlq, ids


async def test_list_shows_every_message_once_and_removes_none(sqs, queues) -> None:
    queue, dlq, ids = queues
    env = env_of(BROADCAST_QUEUE_URL=queue)
    for _ in range(2):  # a listing gives every message back: the second sees them all again
        result = await run_cli("dlq", "list", "--json", env=env)
        assert result.returncode == 0, result
        shown = document(result)
        assert shown["queueUrl"] == dlq, "found through the queue's RedrivePolicy"
        assert shown["approximateCount"] == 3
        by_id = {m["messageId"]: m for m in shown["messages"]}
        assert set(by_id) == set(ids)
        assert await visible(sqs, dlq) == 3, "nothing left hidden"
    first, second, bad = (by_id[i] for i in ids)
    assert first["job"]["summary"] == "job job-a: all, segment 1/4, step 0"
    assert first["job"]["target"] == {"all": True}
    assert second["job"]["summary"] == "job job-b: room 'lobby', step 0"
    assert bad["job"] is None
    assert bad["invalid"].startswith("target")
    assert all(m["receiveCount"] >= 1 for m in shown["messages"])

    limited = document(await run_cli("dlq", "list", "--limit", "2", "--json", env=env))
    assert len(limited["messages"]) == 2
    human = await run_cli("dlq", "list", env=env_of(BROADCAST_DLQ_URL=dlq))
    assert human.returncode == 0, human
    assert "job job-b: room 'lobby'" in human.stdout
    assert "not a job" in human.stdout
    assert await visible(sqs, dlq) == 3


async def test_redrive_moves_the_chosen_messages_then_the_rest(sqs, queues) -> None:
    queue, dlq, ids = queues
    env = env_of(BROADCAST_QUEUE_URL=queue)
    one = await run_cli("dlq", "redrive", ids[0], "--json", env=env)
    assert one.returncode == 0, one
    assert document(one) == {
        "from": dlq,
        "to": queue,
        "moved": [ids[0]],
        "notFound": [],
        "failure": None,
    }
    answer = await sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["All"])
    [moved] = answer["Messages"]
    assert moved["Body"] == job_body(JOBS[0])
    assert moved["MessageAttributes"]["origin"]["StringValue"] == "route", "attributes kept"
    await sqs.delete_message(QueueUrl=queue, ReceiptHandle=moved["ReceiptHandle"])
    assert await visible(sqs, dlq) == 2, "the others are back in view"

    rest = await run_cli("dlq", "redrive", "--all", env=env)
    assert rest.returncode == 0, rest
    assert ids[1] in rest.stdout
    assert sorted(await receive_all(sqs, queue)) == sorted([job_body(JOBS[1]), NOT_A_JOB])
    assert await receive_all(sqs, dlq) == []


async def test_redrive_of_an_unknown_id_moves_nothing_and_exits_1(sqs, queues) -> None:
    queue, dlq, _ = queues
    result = await run_cli(
        "dlq", "redrive", "no-such-id", "--json", env=env_of(BROADCAST_QUEUE_URL=queue)
    )
    assert result.returncode == 1, result
    assert document(result)["notFound"] == ["no-such-id"]
    assert result.stderr.splitlines() == ["wsfanout: not in the dead-letter queue: no-such-id"]
    assert await visible(sqs, dlq) == 3
    assert await visible(sqs, queue) == 0


async def test_a_failed_send_deletes_nothing_and_says_how_to_resume(sqs, queues) -> None:
    queue, dlq, _ = queues
    await sqs.delete_queue(QueueUrl=queue)  # the redrive's target is gone
    env = env_of(BROADCAST_QUEUE_URL=queue, BROADCAST_DLQ_URL=dlq)
    result = await run_cli("dlq", "redrive", "--all", "--json", env=env)
    assert result.returncode == 1, result
    report = document(result)
    assert report["moved"] == []
    assert "not moved (still in the dead-letter queue)" in report["failure"]
    [line] = result.stderr.splitlines()
    assert "run `wsfanout dlq redrive --all` again" in line
    assert await visible(sqs, dlq) == 3, "every message is still there, and in view"


async def test_a_job_the_worker_refuses_lands_in_the_stacks_dead_letter_queue() -> None:
    async with local_stack(function_timeout_s=1, visibility_timeout_s=1, max_receive_count=1) as (
        stack
    ):
        env = env_of(**stack.env)
        # a session made now reads the stack's endpoints and credentials from the environment
        async with aioboto3.Session().client("sqs") as sqs:
            await sqs.send_message(QueueUrl=stack.queue_url, MessageBody=NOT_A_JOB)
            with anyio.fail_after(30):
                while await visible(sqs, stack.dlq_url) < 1:  # noqa: ASYNC110  (SQS has no events)
                    await anyio.sleep(0.1)
        result = await run_cli("dlq", "list", "--json", env=env)
        assert result.returncode == 0, result
        shown = document(result)
        assert shown["queueUrl"] == stack.dlq_url
        [message] = shown["messages"]
        assert message["job"] is None
        assert message["invalid"].startswith("target")


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        pytest.param(["dlq", "list"], {}, "BROADCAST_DLQ_URL", id="list-no-queue"),
        pytest.param(["dlq", "list", "--limit", "0"], {}, "at least 1", id="list-limit"),
        pytest.param(["dlq", "redrive"], {}, "required", id="redrive-nothing"),
        pytest.param(["dlq", "redrive", "--all", "m1"], {}, "not allowed", id="redrive-both"),
        pytest.param(
            ["dlq", "redrive", "--all"],
            {"BROADCAST_DLQ_URL": "http://127.0.0.1:9/q"},
            "BROADCAST_QUEUE_URL",
            id="redrive-no-target",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    args: list[str], env: dict[str, str], needle: str
) -> None:
    assert_usage_error(run_cli_sync(*args, env=env_of(**env)), needle)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_an_interrupted_redrive_reports_what_moved_and_how_to_resume(sqs, signum) -> None:
    queue, dlq = await make_queues(sqs, f"bq-interrupted-{signum.name}")
    total = 400
    for first in range(0, total, 10):
        entries = [{"Id": str(i), "MessageBody": f"m{first + i}"} for i in range(10)]
        await sqs.send_message_batch(QueueUrl=dlq, Entries=entries)
    args = [WSFANOUT, "dlq", "redrive", "--all", "--json"]
    with anyio.fail_after(60):
        async with await anyio.open_process(args, env=env_of(BROADCAST_QUEUE_URL=queue)) as process:
            while await visible(sqs, queue) < 20:
                assert process.returncode is None, "it ended before it could be interrupted"
                await anyio.sleep(0.01)
            process.send_signal(signum)
            assert process.stdout is not None
            assert process.stderr is not None
            stdout = b"".join([chunk async for chunk in process.stdout]).decode()
            stderr = b"".join([chunk async for chunk in process.stderr]).decode()
            assert await process.wait() == 1
    [line] = stdout.splitlines()
    report = json.loads(line)
    moved = len(report["moved"])
    assert report["failure"] == "interrupted"
    assert 20 <= moved < total
    assert stderr.splitlines() == [
        f"wsfanout: interrupted after moving {moved}; "
        "run `wsfanout dlq redrive --all` again to move the rest"
    ]
    assert await visible(sqs, queue) == moved
    assert await visible(sqs, dlq) == total - moved, "the rest is back in view, none lost"


async def test_a_redriven_job_runs_again_and_reaches_the_clients() -> None:
    """A job parked in the stack's dead-letter queue (as after five failed attempts) goes back
    to the broadcast queue, and the stack's worker delivers it."""
    async with local_stack() as stack, connect(stack.ws_url) as client:
        job = BroadcastJob(job_id="parked", target=AllTarget(all=True), data="redriven")
        async with aioboto3.Session().client("sqs") as sqs:
            parked = await sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=job_body(job))
        result = await run_cli("dlq", "redrive", "--all", "--json", env=env_of(**stack.env))
        assert result.returncode == 0, result
        report = document(result)
        assert (report["from"], report["to"]) == (stack.dlq_url, stack.queue_url)
        assert report["moved"] == [parked["MessageId"]]
        with anyio.fail_after(30):
            assert await client.recv() == "redriven"
