"""The SQS broadcast worker: partial batch failures, sharding, continuations, checkpoints."""

from __future__ import annotations

import json
import threading
from typing import Any

import aioboto3
import anyio
import pytest

from tests.handlers.conftest import Stack, body_record, sqs_event, visibility_timeout_lapses
from wsfanout.aws.lean import LeanGateway
from wsfanout.bench.seeding import connection_ids
from wsfanout.handlers import broadcast
from wsfanout.handlers.runtime import reset_runtime
from wsfanout.local import containers
from wsfanout.local.management import Faults
from wsfanout.testing import LambdaContext


def job(**fields: Any) -> str:
    return json.dumps({"data": "hello", **fields})


def test_a_bad_record_fails_alone(stack: Stack, json_logs) -> None:
    stack.seed(["a=", "b="])
    good = body_record(job(target={"connectionIds": ["a=", "b="]}), "good")
    bad = {
        "not-json": "{nope",
        "no-target": job(),
        "two-payloads": job(target={"all": True}, dataBase64="aGk="),
        "bad-base64": json.dumps({"target": {"all": True}, "dataBase64": "@@@"}),
        "too-large": job(target={"all": True}, data="x" * 131_073),
        "bad-segment": job(target={"room": "r"}, segment=0, totalSegments=2),
    }
    records = [body_record(body, message_id) for message_id, body in bad.items()]
    records.insert(3, good)
    response = broadcast.handler({"Records": records}, LambdaContext())
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    assert failed == set(bad)
    assert stack.fake.counts() == {"a=": 1, "b=": 1}
    refusals = {
        entry["message_id"]: entry
        for entry in json_logs()
        if entry["message"] == "not a broadcast job"
    }
    assert set(refusals) == set(bad)
    assert "target" in refusals["no-target"]["problems"]
    assert "131072" in refusals["too-large"]["problems"]


def test_all_job_is_sharded_and_reaches_everyone_once(stack: Stack, monkeypatch) -> None:
    monkeypatch.setenv("BROADCAST_SEGMENTS", "4")
    reset_runtime()
    ids = connection_ids(400, "s")
    stack.seed(ids)
    stack.enqueue(job(jobId="j-shard", target={"all": True}))
    stack.drain()
    assert stack.records_handled == 5, "the job, then its four segments"
    assert stack.fake.counts() == dict.fromkeys(ids, 1)
    progress = stack.progress()
    assert set(progress) == {"SEG#0", "SEG#1", "SEG#2", "SEG#3"}
    assert all(item["status"]["S"] == "complete" for item in progress.values())
    assert sum(int(item["delivered"]["N"]) for item in progress.values()) == 400


def test_forced_continuations_reach_everyone_exactly_once(stack: Stack, monkeypatch) -> None:
    """Each invocation has a fraction of a second: the job hops across many of them."""
    monkeypatch.setenv("BROADCAST_SEGMENTS", "2")
    monkeypatch.setenv("WORKER_DEADLINE_MARGIN_S", "0.2")
    monkeypatch.setenv("REGISTRY_PAGE_SIZE", "200")
    reset_runtime()
    stack.fake.faults = Faults(latency_s=0.004, gone_rate=0.05, seed=21)
    ids = connection_ids(3000, "f")
    stack.seed(ids)
    stack.enqueue(job(jobId="j-cont", target={"all": True}))
    stack.drain(lambda: LambdaContext(seconds=0.45), batch_size=1)
    gone = {cid for cid in ids if stack.fake.faults.is_gone(cid)}
    continuations = stack.records_handled - 1 - 2
    assert continuations >= 4, f"only {continuations} continuations"
    assert stack.fake.counts() == dict.fromkeys(set(ids) - gone, 1)
    remaining = {
        i["PK"]["S"][5:]
        for i in stack.dynamodb.scan(TableName=stack.table)["Items"]
        if i["SK"]["S"] == "CONN"
    }
    assert remaining == set(ids) - gone
    progress = stack.progress()
    assert sum(int(item["gone"]["N"]) for item in progress.values()) == len(gone)
    assert all(item["status"]["S"] == "complete" for item in progress.values())


class Crash(BaseException):
    """The worker dies (out of memory, killed): nothing in the process handles this."""


def crash_after(monkeypatch: pytest.MonkeyPatch, posts: int) -> None:
    original = LeanGateway.post
    calls = 0

    async def post(self, connection_id, data, endpoint=None):
        nonlocal calls
        calls += 1
        if calls > posts:
            raise Crash
        return await original(self, connection_id, data, endpoint)

    monkeypatch.setattr(LeanGateway, "post", post)


def count_posts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every PostToConnection the worker makes from now on."""
    original = LeanGateway.post
    posts: list[str] = []

    async def post(self, connection_id, data, endpoint=None):
        posts.append(connection_id)
        return await original(self, connection_id, data, endpoint)

    monkeypatch.setattr(LeanGateway, "post", post)
    return posts


def one_all_job(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, job_id: str, ids: list[str], latency_s: float
) -> dict[str, Any]:
    """One unsharded "all" job over ``ids`` (pages of 100), received once: its SQS message."""
    monkeypatch.setenv("BROADCAST_SEGMENTS", "1")
    monkeypatch.setenv("REGISTRY_PAGE_SIZE", "100")
    reset_runtime()
    stack.fake.faults = Faults(latency_s=latency_s)
    stack.seed(ids)
    stack.enqueue(job(jobId=job_id, target={"all": True}))
    [message] = stack.receive()
    return message


def test_crash_and_redelivery_resends_at_most_a_page(stack: Stack, monkeypatch) -> None:
    monkeypatch.setenv("FANOUT_CONCURRENCY", "8")
    ids = connection_ids(1500, "k")
    message = one_all_job(stack, monkeypatch, "j-crash", ids, latency_s=0.002)
    with monkeypatch.context() as patch:
        crash_after(patch, 730)
        with pytest.raises(BaseExceptionGroup) as crashed:
            broadcast.handler(sqs_event([message]), LambdaContext())
        assert crashed.group_contains(Crash)
        reset_runtime()  # the container is gone
    assert 700 <= sum(stack.fake.counts().values()) <= 730
    # SQS redelivers the same message (same id) after its visibility timeout.
    visibility_timeout_lapses(monkeypatch)
    posts = count_posts(monkeypatch)
    response = broadcast.handler(sqs_event([message]), LambdaContext())
    assert response == {"batchItemFailures": []}
    assert len(posts) <= 1500 - 700 + 100 + 8, "it resumed from the last checkpoint"
    counts = stack.fake.counts()
    assert set(counts) == set(ids), "nobody missed"
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= 100 + 8, f"{duplicates} sent twice: more than the page in flight"
    assert stack.progress()["SEG#0"]["status"]["S"] == "complete"


def test_a_copy_of_a_running_step_is_skipped(stack: Stack, monkeypatch) -> None:
    monkeypatch.setenv("BROADCAST_SEGMENTS", "1")
    monkeypatch.setenv("REGISTRY_PAGE_SIZE", "50")
    reset_runtime()
    ids = connection_ids(300, "d")
    stack.seed(ids)
    body = job(jobId="j-dup", target={"all": True})
    with monkeypatch.context() as patch:
        crash_after(patch, 120)
        with pytest.raises(BaseExceptionGroup):
            broadcast.handler({"Records": [body_record(body, "first")]}, LambdaContext())
        reset_runtime()
    # A second copy of the same message (SQS may deliver one twice) finds the step owned.
    posts = count_posts(monkeypatch)
    assert broadcast.handler({"Records": [body_record(body, "copy")]}, LambdaContext()) == {
        "batchItemFailures": []
    }
    assert posts == [], "the copy sent nothing"
    # The owner's redelivery (after the visibility timeout) finishes the job; a later copy
    # finds it complete.
    visibility_timeout_lapses(monkeypatch)
    broadcast.handler({"Records": [body_record(body, "first")]}, LambdaContext())
    assert set(stack.fake.counts()) == set(ids)
    posts.clear()
    broadcast.handler({"Records": [body_record(body, "late-copy")]}, LambdaContext())
    assert posts == [], "a complete job is acknowledged and skipped"


def test_a_record_without_time_left_is_failed_for_redelivery(stack: Stack, monkeypatch) -> None:
    monkeypatch.setenv("WORKER_DEADLINE_MARGIN_S", "5")
    reset_runtime()
    stack.seed(["a="])
    record = body_record(job(target={"connectionIds": ["a="]}), "late")
    response = broadcast.handler({"Records": [record]}, LambdaContext(seconds=3))
    assert response == {"batchItemFailures": [{"itemIdentifier": "late"}]}
    assert stack.fake.counts() == {}


def test_metrics_are_embedded_metric_format(stack: Stack, capsys, json_logs) -> None:
    stack.seed(["a=", "b="])
    stack.fake.faults = Faults(gone_ids=frozenset({"b="}))
    broadcast.handler(
        {"Records": [body_record(job(target={"connectionIds": ["a=", "b="]}))]}, LambdaContext()
    )
    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    [emf] = [line for line in lines if "_aws" in line]
    names = {m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"Delivered", "Gone", "Failed", "Throttled", "Duration", "JobMessages"} <= names
    assert (emf["Delivered"], emf["Gone"]) == ([1.0], [1.0])
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "wsfanout"
    logs = [line for line in json_logs() if line.get("message") == "job step done"]
    assert logs
    assert logs[0]["job_id"]


def test_clients_are_created_once_per_container(stack: Stack, monkeypatch) -> None:
    created: list[str] = []
    original = aioboto3.Session.client

    def counting(self, service_name, *args, **kwargs):
        created.append(service_name)
        return original(self, service_name, *args, **kwargs)

    monkeypatch.setattr(aioboto3.Session, "client", counting)
    reset_runtime()
    stack.connect("a=")
    stack.message("a=", '{"action":"joinRoom","room":"r"}')
    first = list(created)
    assert "dynamodb" in first
    stack.connect("b=")
    stack.message("b=", '{"action":"joinRoom","room":"r"}')
    stack.message("a=", '{"action":"sendMessage","to":{"room":"r"},"data":"x"}')
    stack.message("a=", '{"action":"sendMessage","to":{"room":"r"},"data":"y"}')
    assert created.count("sqs") == 1, "one SQS client for both room messages"
    assert created.count("dynamodb") == 1
    route_clients = list(created)
    stack.drain()
    stack.drain()
    assert created == route_clients, "the worker reused the container's clients too"
    # its join's ack, a's join event (a presence job, run once b was in the room too), and
    # the two messages
    assert stack.fake.counts()["b="] == 1 + 1 + 2


def test_route_logs_carry_the_connection_id(stack: Stack, json_logs) -> None:
    stack.connect("log=")
    connected = [entry for entry in json_logs() if entry["message"] == "connected"]
    assert connected[0]["connection_id"] == "log="
    assert connected[0]["route"] == "$connect"


def test_every_record_logs_its_own_message_and_job(stack: Stack, json_logs) -> None:
    """Keys are bound per record: a record's lines name its message and job, never those of the
    record before it in the batch (or in an earlier invocation of the warm container)."""
    stack.seed(["a="])
    for batch in (["m1", "m2"], ["m3"]):
        records = [
            body_record(job(target={"connectionIds": ["a="]}, jobId=f"job-{m}"), m) for m in batch
        ]
        broadcast.handler({"Records": records}, LambdaContext())
    done = [line for line in json_logs() if line["message"] == "job step done"]
    assert [(line["message_id"], line["job_id"]) for line in done] == [
        ("m1", "job-m1"),
        ("m2", "job-m2"),
        ("m3", "job-m3"),
    ]


def test_two_copies_of_one_message_at_once_send_once(stack: Stack, monkeypatch, json_logs) -> None:
    """SQS hands a message whose visibility timeout lapsed to a second worker while the first
    still runs it: two invocations (two warm containers, two threads) with one message id. The
    copy must find the step leased and send nothing; the first must not be stopped by it."""
    ids = connection_ids(1200, "t")
    message = one_all_job(stack, monkeypatch, "j-twice", ids, latency_s=0.003)
    # The first pauses its sends after a few pages until the copy has finished: so the copy
    # runs while the first holds the step, whatever the threads' timing.
    first_sent, copy_done = threading.Event(), threading.Event()
    original = LeanGateway.post
    first_posts = 0

    async def post(self, connection_id, data, endpoint=None):
        nonlocal first_posts
        if threading.current_thread().name == "first":
            first_posts += 1
            if first_posts >= 300:
                first_sent.set()
                await anyio.to_thread.run_sync(copy_done.wait, 30)
        return await original(self, connection_id, data, endpoint)

    monkeypatch.setattr(LeanGateway, "post", post)
    responses: dict[str, Any] = {}

    def invoke(name: str) -> None:
        try:
            responses[name] = broadcast.handler(sqs_event([message]), LambdaContext())
        except BaseException as exc:  # reported by the assertions below
            responses[name] = exc
        finally:
            copy_done.set()  # also when the first fails first: nobody waits forever

    with containers.hosting():
        first = threading.Thread(target=invoke, args=("first",), name="first")
        copy = threading.Thread(target=invoke, args=("copy",), name="copy")
        first.start()
        assert first_sent.wait(30), "the first never reached its third page"
        copy.start()
        for thread in (first, copy):
            thread.join(timeout=60)
            assert not thread.is_alive(), f"{thread.name} did not end"
    # the copy is not acknowledged: should the first die, SQS still has the message
    assert responses == {
        "first": {"batchItemFailures": []},
        "copy": {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]},
    }
    counts = stack.fake.counts()
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates == 0, f"{duplicates} of {len(ids)} connections got the broadcast twice"
    assert counts == dict.fromkeys(ids, 1)
    done = [entry for entry in json_logs() if entry["message"] == "job step done"]
    assert {entry["message_id"] for entry in done} == {message["MessageId"]}
    assert sorted(entry["action"] for entry in done) == ["completed", "skipped-leased"]
    progress = stack.progress()["SEG#0"]
    assert progress["status"]["S"] == "complete"
    assert int(progress["delivered"]["N"]) == len(ids)
    assert_a_redelivery_sends_nothing(stack, message)


def assert_a_redelivery_sends_nothing(stack: Stack, message: dict[str, Any]) -> None:
    """Redelivered later, a copy finds the step done and is acknowledged, sending nothing."""
    before = sum(stack.fake.counts().values())
    assert broadcast.handler(sqs_event([message]), LambdaContext()) == {"batchItemFailures": []}
    assert sum(stack.fake.counts().values()) == before
