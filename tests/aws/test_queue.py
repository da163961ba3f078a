"""Broadcast jobs on SQS (moto server over HTTP): bodies, batching, errors."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.helpers import receive_all
from wsfanout.aws.queue import JobQueue, job_body
from wsfanout.core.models import AllTarget, BroadcastJob, Cursor, UsersTarget
from wsfanout.exceptions import ConfigurationError, QueueError

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


@pytest.fixture
async def queue_url(sqs: SQSClient) -> AsyncIterator[str]:
    url = (await sqs.create_queue(QueueName=f"broadcast-{uuid.uuid4().hex[:12]}"))["QueueUrl"]
    yield url
    await sqs.delete_queue(QueueUrl=url)


def walk(value: Any, path: str = "$") -> list[tuple[str, Any]]:
    """Every (path, leaf-or-key) of a JSON document, to check keys and nulls everywhere."""
    found: list[tuple[str, Any]] = [(path, value)]
    if isinstance(value, dict):
        for key, inner in value.items():
            found.extend(walk(inner, f"{path}.{key}"))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found.extend(walk(inner, f"{path}[{index}]"))
    return found


def keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for inner in value.values() for k in keys(inner)}
    if isinstance(value, list):
        return {k for inner in value for k in keys(inner)}
    return set()


JOBS = [
    BroadcastJob(
        job_id="job-all",
        target=AllTarget(all=True),
        data_base64=base64.b64encode(b"\x00\x01binary").decode(),
        exclude=["sender="],
        segment=2,
        total_segments=8,
        cursor=Cursor(after={"PK": "CONN#k=", "SK": "CONN"}, user=0, step=3),
    ),
    BroadcastJob(job_id="job-users", target=UsersTarget(user_ids=["u1", "u2"]), data="héllo ✓"),
]


@pytest.mark.parametrize("job", JOBS, ids=["all-segment", "users"])
async def test_enqueue_round_trip(sqs, queue_url: str, job: BroadcastJob) -> None:
    queue = JobQueue(sqs, queue_url)
    message_id = await queue.enqueue(job)
    assert message_id
    (raw,) = await receive_all(sqs, queue_url)
    assert raw == job_body(job)
    assert BroadcastJob.model_validate_json(raw) == job
    document = json.loads(raw)
    assert "jobId" in document
    assert not {k for k in keys(document) if "_" in k}  # camelCase throughout
    assert [path for path, leaf in walk(document) if leaf is None] == []


async def test_body_uses_design_names(sqs, queue_url: str) -> None:
    await JobQueue(sqs, queue_url).enqueue(JOBS[0])
    (raw,) = await receive_all(sqs, queue_url)
    document = json.loads(raw)
    assert set(document) == {
        "jobId",
        "target",
        "dataBase64",
        "exclude",
        "segment",
        "totalSegments",
        "cursor",
    }
    assert document["target"] == {"all": True}
    assert document["totalSegments"] == 8
    assert "offset" not in document["cursor"]  # unset, not null


async def test_enqueue_many_sends_every_job_in_batches(sqs, queue_url: str) -> None:
    batches: list[int] = []

    class Spy:
        async def send_message_batch(self, **kwargs: Any) -> Any:
            batches.append(len(kwargs["Entries"]))
            return await sqs.send_message_batch(**kwargs)

    jobs = [
        BroadcastJob(job_id=f"job-{n:02d}", target=AllTarget(all=True), data=f"n{n}")
        for n in range(23)
    ]
    assert await JobQueue(Spy(), queue_url).enqueue_many(jobs) == 23  # type: ignore[arg-type]
    assert batches == [10, 10, 3]
    bodies = await receive_all(sqs, queue_url)
    assert len(bodies) == 23
    received = sorted(
        (BroadcastJob.model_validate_json(b) for b in bodies), key=lambda job: job.job_id
    )
    assert received == jobs


async def test_enqueue_many_of_nothing(sqs, queue_url: str) -> None:
    assert await JobQueue(sqs, queue_url).enqueue_many([]) == 0
    assert await receive_all(sqs, queue_url) == []


@pytest.mark.parametrize("url", [None, ""])
def test_no_queue_url_is_a_configuration_error(url: str | None) -> None:
    with pytest.raises(ConfigurationError, match="BROADCAST_QUEUE_URL"):
        JobQueue(object(), url)  # type: ignore[arg-type]


async def test_missing_queue_is_a_queue_error(sqs, moto_url: str) -> None:
    queue = JobQueue(sqs, f"{moto_url}/123456789012/missing-{uuid.uuid4().hex[:12]}")
    with pytest.raises(QueueError, match="missing-"):
        await queue.enqueue(JOBS[1])
    with pytest.raises(QueueError):
        await queue.enqueue_many(JOBS)


class FlakyBatches:
    """A fake SQS client that reports the first ``fail`` entries of each call as failed."""

    def __init__(self, fail: list[int]) -> None:
        self.fail = fail
        self.calls: list[list[dict[str, str]]] = []

    async def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> Any:  # noqa: N803
        self.calls.append(Entries)
        count = self.fail.pop(0) if self.fail else 0
        return {
            "Successful": [{"Id": e["Id"]} for e in Entries[count:]],
            "Failed": [
                {"Id": e["Id"], "SenderFault": False, "Code": "InternalError"}
                for e in Entries[:count]
            ],
        }


async def test_enqueue_many_retries_only_failed_entries(pauses: list[float]) -> None:
    client = FlakyBatches(fail=[3, 1])
    jobs = [BroadcastJob(job_id=f"j{n}", target=AllTarget(all=True), data="x") for n in range(7)]
    assert await JobQueue(client, "https://sqs/q").enqueue_many(jobs) == 7  # type: ignore[arg-type]
    first, second, third = client.calls
    assert len(first) == 7
    assert second == first[:3]
    assert third == first[:1]
    assert len(pauses) == 2


async def test_enqueue_many_gives_up_after_bounded_attempts(pauses: list[float]) -> None:
    client = FlakyBatches(fail=[2] * 100)
    jobs = [BroadcastJob(job_id=f"j{n}", target=AllTarget(all=True), data="x") for n in range(4)]
    with pytest.raises(QueueError, match="refused 2 jobs"):
        await JobQueue(client, "https://sqs/q").enqueue_many(jobs)  # type: ignore[arg-type]
    assert len(client.calls) == 5
    assert all(len(call) == 2 for call in client.calls[1:]), "only the failed entries again"
    # One jittered pause between attempts, each under its capped exponential (50 ms doubling,
    # at most a second): full jitter, so their order is not their size.
    assert len(pauses) == 4
    assert all(0 <= p <= min(1.0, 0.05 * 2**n) for n, p in enumerate(pauses))
