"""The local event source mapping against moto's SQS: what it hands the handler, and what it
leaves on the queue afterwards.

Every test creates its own queue and dead-letter queue and deletes them. Nothing waits on the
clock to synchronise: the poller's own ``drain`` decides when the queue stayed empty, and the
remaining waits are bounded polls of a condition.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from aws_lambda_powertools.utilities.parser.models import SqsModel

from tests.events import load_event
from wsfanout.aws.account import REGION
from wsfanout.aws.events import LambdaContext
from wsfanout.exceptions import InvalidInputError
from wsfanout.handlers import runtime as runtimes
from wsfanout.local import poller as poller_module
from wsfanout.local.poller import DrainLimitError, SqsPoller, batch_item_failures

pytestmark = pytest.mark.timeout(60)


@dataclass
class Queue:
    url: str
    arn: str
    dlq_url: str


@dataclass
class Recorder:
    """A handler that remembers every call and answers with ``respond(event)``."""

    respond: Callable[[dict[str, Any], Any], Any] = lambda event, context: {}
    events: list[dict[str, Any]] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        self.contexts.append(context)
        self.threads.append(threading.get_ident())
        return self.respond(event, context)

    @property
    def records(self) -> list[dict[str, Any]]:
        return [record for event in self.events for record in event["Records"]]


@pytest.fixture
async def new_queue(sqs: Any) -> AsyncIterator[Callable[..., Awaitable[Queue]]]:
    """Make a queue with a dead-letter queue and a RedrivePolicy; delete both afterwards."""
    made: list[str] = []

    async def make(*, visibility_timeout_s: int = 60, max_receive_count: int = 3) -> Queue:
        suffix = uuid.uuid4().hex[:10]
        dlq_url = (await sqs.create_queue(QueueName=f"poller-dlq-{suffix}"))["QueueUrl"]
        made.append(dlq_url)
        dlq_arn = await _arn(sqs, dlq_url)
        url = (
            await sqs.create_queue(
                QueueName=f"poller-{suffix}",
                Attributes={
                    "VisibilityTimeout": str(visibility_timeout_s),
                    "RedrivePolicy": (
                        f'{{"deadLetterTargetArn":"{dlq_arn}",'
                        f'"maxReceiveCount":"{max_receive_count}"}}'
                    ),
                },
            )
        )["QueueUrl"]
        made.append(url)
        return Queue(url, await _arn(sqs, url), dlq_url)

    yield make
    for url in reversed(made):
        await sqs.delete_queue(QueueUrl=url)


async def _arn(sqs: Any, url: str) -> str:
    answer = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(answer["Attributes"]["QueueArn"])


async def _counts(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    answer = await sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    attributes = answer["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


async def _send(sqs: Any, url: str, bodies: list[str]) -> dict[str, str]:
    """Send the bodies; return message id → body."""
    sent: dict[str, str] = {}
    for body in bodies:
        answer = await sqs.send_message(QueueUrl=url, MessageBody=body)
        sent[answer["MessageId"]] = body
    return sent


# -- the event -------------------------------------------------------------------------------------


async def test_records_are_shaped_as_lambda_delivers_them(sqs, new_queue) -> None:
    queue = await new_queue()
    await sqs.send_message(
        QueueUrl=queue.url,
        MessageBody='{"target":{"all":true},"data":"hi"}',
        MessageAttributes={
            "producer": {"DataType": "String", "StringValue": "wsfanout-cli"},
            "attempt": {"DataType": "Number", "StringValue": "2"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
        },
    )
    await sqs.send_message(QueueUrl=queue.url, MessageBody="plain")
    handler = Recorder()
    poller = SqsPoller(sqs, queue.url, handler, function_timeout_s=30, wait_s=0)

    assert await poller.drain() >= 1

    records = handler.records
    assert len(records) == 2
    for event in handler.events:
        SqsModel.model_validate(event)  # what the broadcast handler's parser accepts
    sample = load_event("sqs_batch")["Records"][0]
    for record in records:
        assert set(sample) <= set(record)
        assert set(sample["attributes"]) <= set(record["attributes"])
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"] == queue.arn
        assert record["awsRegion"] == REGION
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()  # noqa: S324
    with_attributes = next(r for r in records if r["messageAttributes"])
    assert with_attributes["messageAttributes"] == {
        "producer": {
            "stringValue": "wsfanout-cli",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "attempt": {
            "stringValue": "2",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Number",
        },
        "blob": {
            "binaryValue": "AAH/",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }
    assert with_attributes["md5OfMessageAttributes"]
    plain = next(r for r in records if not r["messageAttributes"])
    assert plain["md5OfMessageAttributes"] is None
    assert await _counts(sqs, queue.url) == (0, 0)


async def test_context_counts_down_from_the_function_timeout(sqs, new_queue) -> None:
    queue = await new_queue()
    await _send(sqs, queue.url, ["x"])
    seen: list[tuple[int, int]] = []

    def respond(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        first = context.get_remaining_time_in_millis()
        time.sleep(0.05)  # work that takes time, so the clock visibly runs down
        seen.append((first, context.get_remaining_time_in_millis()))
        return {}

    handler = Recorder(respond)
    poller = SqsPoller(sqs, queue.url, handler, function_timeout_s=5, wait_s=0)
    await poller.drain()

    [(first, later)] = seen
    assert 4000 < first <= 5000
    assert later <= first - 40
    context = handler.contexts[0]
    assert context.function_name == "wsfanout-broadcast"
    assert context.invoked_function_arn.endswith(":function:wsfanout-broadcast")
    assert uuid.UUID(context.aws_request_id)


# -- what stays on the queue -----------------------------------------------------------------------


async def test_partial_failures_leave_exactly_the_failed_messages(sqs, new_queue) -> None:
    queue = await new_queue()
    sent = await _send(sqs, queue.url, [str(n) for n in range(7)])

    def respond(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]} for r in event["Records"] if int(r["body"]) % 2
            ]
        }

    handler = Recorder(respond)
    poller = SqsPoller(sqs, queue.url, handler, wait_s=0)
    await poller.drain()

    assert await _counts(sqs, queue.url) == (0, 3)
    assert poller.stats.records == 7
    assert poller.stats.deleted == 4
    assert poller.stats.failed_records == 3
    assert poller.stats.failed_batches == 0
    # Make the messages still in flight visible now and read them back: exactly the odd ones.
    failed = [r for r in handler.records if int(r["body"]) % 2]
    await sqs.change_message_visibility_batch(
        QueueUrl=queue.url,
        Entries=[
            {"Id": str(n), "ReceiptHandle": r["receiptHandle"], "VisibilityTimeout": 0}
            for n, r in enumerate(failed)
        ],
    )
    answer = await sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10)
    left = {m["MessageId"]: m["Body"] for m in answer["Messages"]}
    assert left == {mid: body for mid, body in sent.items() if int(body) % 2}


async def test_without_report_batch_item_failures_the_answer_is_not_read(sqs, new_queue) -> None:
    """A mapping without ReportBatchItemFailures: Lambda ignores what the handler returns, so a
    batchItemFailures answer deletes everything, while a raise still leaves the whole batch."""
    queue = await new_queue()
    await _send(sqs, queue.url, ["a", "b", "c"])

    def respond(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    poller = SqsPoller(
        sqs, queue.url, Recorder(respond), wait_s=0, report_batch_item_failures=False
    )
    await poller.drain()
    assert await _counts(sqs, queue.url) == (0, 0)
    assert (poller.stats.deleted, poller.stats.failed_records) == (3, 0)

    await _send(sqs, queue.url, ["d", "e"])

    def fail(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    raising = SqsPoller(sqs, queue.url, Recorder(fail), wait_s=0, report_batch_item_failures=False)
    await raising.drain()
    assert await _counts(sqs, queue.url) == (0, 2)
    assert raising.stats.failed_batches == raising.stats.batches >= 1


async def test_a_raising_handler_leaves_the_whole_batch(sqs, new_queue, caplog) -> None:
    queue = await new_queue()
    await _send(sqs, queue.url, ["a", "b", "c"])

    def respond(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    poller = SqsPoller(sqs, queue.url, Recorder(respond), wait_s=0)
    with caplog.at_level(logging.ERROR, logger="wsfanout.local.poller"):
        await poller.drain()

    assert await _counts(sqs, queue.url) == (0, 3)
    assert poller.stats.deleted == 0
    assert poller.stats.failed_batches == poller.stats.batches >= 1
    assert "raised" in caplog.text


async def test_a_handler_past_its_timeout_leaves_the_whole_batch(sqs, new_queue) -> None:
    queue = await new_queue()
    await _send(sqs, queue.url, ["a", "b"])

    def respond(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        give_up = time.monotonic() + 5
        while context.get_remaining_time_in_millis() > 0 and time.monotonic() < give_up:
            time.sleep(0.01)  # a handler that ignores its deadline
        return {}

    poller = SqsPoller(sqs, queue.url, Recorder(respond), function_timeout_s=0.1, wait_s=0)
    await poller.drain()

    assert await _counts(sqs, queue.url) == (0, 2)
    assert poller.stats.failed_batches == poller.stats.batches


@pytest.mark.parametrize(
    ("response", "failed"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": None}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]}, {"a", "b"}),
        # What Lambda reads as a failure of the whole batch:
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, None),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, None),
        ({"batchItemFailures": [{"itemIdentifier": "not-in-the-batch"}]}, None),
        ({"batchItemFailures": [{"messageId": "a"}]}, None),
        ({"batchItemFailures": ["a"]}, None),
        ({"batchItemFailures": "a"}, None),
        ("ok", None),
    ],
)
def test_batch_responses_are_read_as_lambda_reads_them(response: Any, failed: Any) -> None:
    assert batch_item_failures(response, ["a", "b"]) == failed


async def test_redrive_moves_a_failing_message_to_the_dead_letter_queue(sqs, new_queue) -> None:
    # The queue's own visibility timeout (1 s) and RedrivePolicy do the retrying: the poller
    # never deletes, re-sends or moves anything itself.
    queue = await new_queue(visibility_timeout_s=1, max_receive_count=2)
    [message_id] = await _send(sqs, queue.url, ["poison"])

    def respond(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    handler = Recorder(respond)
    poller = SqsPoller(sqs, queue.url, handler, visibility_timeout_s=None, concurrency=1, wait_s=1)
    await poller.drain(idle_polls=3, max_batches=10)

    assert [r["attributes"]["ApproximateReceiveCount"] for r in handler.records] == ["1", "2"]
    assert await _counts(sqs, queue.url) == (0, 0)
    answer = await sqs.receive_message(QueueUrl=queue.dlq_url, MessageSystemAttributeNames=["All"])
    [dead] = answer["Messages"]
    assert (dead["MessageId"], dead["Body"]) == (message_id, "poison")


async def test_drain_gives_up_after_max_batches(sqs, new_queue) -> None:
    queue = await new_queue(max_receive_count=1000)
    await _send(sqs, queue.url, ["again"])

    def respond(event: dict[str, Any], context: Any) -> dict[str, Any]:
        # Fails and comes straight back (visibility 0): a poison message with nowhere to go.
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    poller = SqsPoller(
        sqs,
        queue.url,
        Recorder(respond),
        visibility_timeout_s=0,
        concurrency=1,
        wait_s=0,
    )
    with pytest.raises(DrainLimitError, match="after 5 batches"):
        await poller.drain(max_batches=5)
    assert poller.stats.batches == 5


# -- concurrency and the long-running loop ---------------------------------------------------------


async def test_batches_run_concurrently_on_separate_threads(sqs, new_queue) -> None:
    queue = await new_queue()
    await _send(sqs, queue.url, ["1", "2", "3"])
    # Three invocations must be inside the handler at once to get past the barrier; if the
    # poller ran them one by one the barrier would break and every batch would fail.
    barrier = threading.Barrier(3, timeout=10)

    def respond(event: dict[str, Any], context: Any) -> dict[str, Any]:
        barrier.wait()
        return {}

    handler = Recorder(respond)
    poller = SqsPoller(sqs, queue.url, handler, batch_size=1, concurrency=3, wait_s=0)
    assert await poller.drain() == 3

    assert poller.stats.failed_batches == 0
    assert poller.stats.deleted == 3
    assert len(set(handler.threads)) == 3
    assert threading.get_ident() not in handler.threads


async def test_containers_stay_warm_and_close_their_runtimes_at_the_end(sqs, new_queue) -> None:
    queue = await new_queue()
    await _send(sqs, queue.url, ["1", "2", "3"])
    seen: list[runtimes.Runtime] = []

    def respond(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(runtimes.runtime())  # what the real handlers keep per container
        return {}

    poller = SqsPoller(sqs, queue.url, Recorder(respond), batch_size=1, concurrency=1, wait_s=0)
    assert await poller.drain() == 3

    assert len(seen) == 3
    assert len(set(map(id, seen))) == 1  # one warm container served every batch
    assert seen[0].closed  # closed (in its own thread) when the drain ended


async def test_a_hung_handler_is_left_behind_and_its_batch_fails(
    sqs, new_queue, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(poller_module, "_HUNG_GRACE_S", 0.2)
    queue = await new_queue()
    await _send(sqs, queue.url, ["stuck"])
    release = threading.Event()

    def respond(event: dict[str, Any], context: Any) -> dict[str, Any]:
        release.wait(timeout=5)  # hangs until the test lets it go (or 5 s)
        return {}

    poller = SqsPoller(sqs, queue.url, Recorder(respond), function_timeout_s=0.1, wait_s=0)
    try:
        with caplog.at_level(logging.WARNING, logger="wsfanout.local.poller"):
            await poller.drain()
    finally:
        release.set()
    assert poller.stats.failed_batches == 1
    assert await _counts(sqs, queue.url) == (0, 1)
    assert "hung past its timeout" in caplog.text


async def test_run_polls_until_cancelled(sqs, new_queue) -> None:
    queue = await new_queue()
    handler = Recorder()
    poller = SqsPoller(sqs, queue.url, handler, wait_s=1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(poller.run)
        await _send(sqs, queue.url, ["one", "two"])
        with anyio.fail_after(15):
            while poller.stats.deleted < 2:  # noqa: ASYNC110  (the poller exposes counters, not events)
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    assert sorted(r["body"] for r in handler.records) == ["one", "two"]
    assert await _counts(sqs, queue.url) == (0, 0)


async def test_run_survives_receive_errors(sqs, new_queue, caplog) -> None:
    queue = await new_queue()
    poller = SqsPoller(sqs, f"{queue.url}-missing", Recorder(), wait_s=0)
    with caplog.at_level(logging.WARNING, logger="wsfanout.local.poller"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(poller.run)
            with anyio.fail_after(15):
                while "receive from" not in caplog.text:  # noqa: ASYNC110  (a log line, not an event)
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
    assert "retrying" in caplog.text


@pytest.mark.parametrize(
    "bad",
    [
        {"batch_size": 11},
        {"batch_size": 0},
        {"visibility_timeout_s": -1},
        {"function_timeout_s": 0},
        {"function_timeout_s": 901},
        {"concurrency": 0},
        {"wait_s": 21},
    ],
)
def test_settings_outside_lambdas_limits_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError, match="must be"):
        SqsPoller(object(), "url", Recorder(), **bad)  # type: ignore[arg-type]
