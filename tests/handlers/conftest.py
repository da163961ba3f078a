"""The Lambda side of the tests: real handlers, called as Lambda calls them (sync, event +
context), against moto server (DynamoDB and SQS over HTTP) and the local management endpoint.

The endpoint runs on its own event loop in a thread, because the handlers, like Lambda, own the
loop they run on (one per container, see ``wsfanout.handlers.runtime``).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import boto3
import pytest

from tests.events import load_event
from wsfanout import testing
from wsfanout.apps import chat
from wsfanout.aws import events
from wsfanout.aws.account import REGION
from wsfanout.aws.table import table_definition
from wsfanout.bench.seeding import SEEDING, classic_item
from wsfanout.core import jobs
from wsfanout.core.pacing import set_testing
from wsfanout.handlers import broadcast, route
from wsfanout.handlers.runtime import logger, reset_runtime
from wsfanout.local.management import Faults, ManagementEndpoint, serve
from wsfanout.testing import LambdaContext

STAGE = "prod"
ROUTES = frozenset(chat.app.routes)  # the route keys of deploy/template.yaml


class ThreadedEndpoint:
    """The local management endpoint served from a thread with its own event loop."""

    def __init__(self, fake: ManagementEndpoint) -> None:
        self.fake = fake
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self.fake) as url:
            self.url = url
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ThreadedEndpoint:
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("the management endpoint did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


@dataclass
class Stack:
    """Table, queue (with its dead-letter queue) and endpoint of one test."""

    table: str
    queue_url: str
    dlq_url: str
    endpoint: ThreadedEndpoint
    dynamodb: Any
    sqs: Any
    records_handled: int = 0

    @property
    def fake(self) -> ManagementEndpoint:
        return self.endpoint.fake

    @property
    def management_url(self) -> str:
        return f"{self.endpoint.url}/{STAGE}"

    # -- route events ------------------------------------------------------------------------

    def connect(
        self,
        connection_id: str,
        *,
        user: str | None = None,
        can_broadcast: bool = False,
        context: LambdaContext | None = None,
    ) -> dict[str, Any]:
        if user is None:
            event = load_event("ws_connect_anonymous")
            event["requestContext"].pop("authorizer", None)
        else:
            event = load_event(
                "ws_connect",
                requestContext={
                    "authorizer": {
                        "principalId": user,
                        "userId": user,
                        "canBroadcast": str(can_broadcast).lower(),
                    }
                },
            )
        event["requestContext"]["connectionId"] = connection_id
        self.fake.add(connection_id)
        return route.handler(event, context or LambdaContext())

    def message(
        self,
        connection_id: str,
        body: str | None,
        *,
        user: str | None = None,
        can_broadcast: bool = False,
        base64: bool = False,
        context: LambdaContext | None = None,
    ) -> dict[str, Any]:
        event = load_event("ws_message", body=body, isBase64Encoded=base64)
        event["requestContext"]["connectionId"] = connection_id
        # the route API Gateway selects with $request.body.action (binary frames: $default)
        selected = "$default" if base64 or body is None else events.select_route(body, ROUTES)
        event["requestContext"]["routeKey"] = selected
        if user is None:
            event["requestContext"].pop("authorizer", None)
        else:
            event["requestContext"]["authorizer"] = {
                "principalId": user,
                "userId": user,
                "canBroadcast": str(can_broadcast).lower(),
            }
        return route.handler(event, context or LambdaContext())

    def disconnect(self, connection_id: str) -> dict[str, Any]:
        event = load_event("ws_disconnect")
        event["requestContext"]["connectionId"] = connection_id
        self.fake.remove(connection_id)
        return route.handler(event, LambdaContext())

    def seed(self, ids: list[str]) -> None:
        """Classic registry items (what a plain $connect handler writes), 25 per batch.

        What moto leaves unprocessed is written again by the bench seeding's bounded retry, so a
        table that never takes an item fails the test instead of hanging it.
        """

        async def put(requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
            answer = self.dynamodb.batch_write_item(RequestItems={self.table: list(requests)})
            return list(answer.get("UnprocessedItems", {}).get(self.table, []))

        async def seed_all() -> None:
            for first in range(0, len(ids), 25):
                requests = [
                    {"PutRequest": {"Item": classic_item(cid)}} for cid in ids[first : first + 25]
                ]
                await SEEDING.until_done(put, requests, what=f"seeding {self.table}")

        anyio.run(seed_all)

    def enqueue(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)

    def progress(self) -> dict[str, dict[str, Any]]:
        """Job progress items by sort key."""
        items = self.dynamodb.scan(TableName=self.table)["Items"]
        return {i["SK"]["S"]: i for i in items if i["PK"]["S"].startswith("JOB#")}

    # -- the queue -------------------------------------------------------------------------------

    def receive(self, limit: int = 10) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=limit,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            VisibilityTimeout=30,
        )
        return list(answer.get("Messages", []))

    def drain(
        self,
        context_factory: Callable[[], LambdaContext] = LambdaContext,
        *,
        max_batches: int = 500,
        batch_size: int = 10,
    ) -> list[dict[str, Any]]:
        """Play the event source mapping until the queue is empty; returns every response."""
        responses: list[dict[str, Any]] = []
        for _ in range(max_batches):
            messages = self.receive(batch_size)
            if not messages:
                return responses
            self.records_handled += len(messages)
            response = broadcast.handler(sqs_event(messages), context_factory())
            responses.append(response)
            failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
            for message in messages:
                if message["MessageId"] not in failed:
                    self.sqs.delete_message(
                        QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                    )
            if failed:
                raise AssertionError(f"records failed while draining: {failed}")
        raise AssertionError(f"the queue was not empty after {max_batches} batches")


QUEUE_ARN = load_event("sqs_batch")["Records"][0]["eventSourceARN"]
VISIBILITY_TIMEOUT_S = 1800.0  # the broadcast queue's in deploy/template.yaml


def visibility_timeout_lapses(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on the workers' lease clock reads a visibility timeout later: SQS redelivers a
    message nobody acknowledged only then, after any invocation that had it has ended."""
    real = jobs.wall_clock
    monkeypatch.setattr(jobs, "wall_clock", lambda: real() + VISIBILITY_TIMEOUT_S)


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The event Lambda's event source mapping builds from these received messages."""
    return events.sqs_event(messages, QUEUE_ARN)


def body_record(body: str, message_id: str | None = None) -> dict[str, Any]:
    """A record for a body that never went through a queue (for direct handler calls)."""
    record: dict[str, Any]
    [record] = testing.sqs_event([body], queue_arn=QUEUE_ARN)["Records"]
    if message_id is not None:
        record["messageId"] = message_id
    return record


@pytest.fixture
def json_logs() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The handlers' structured log lines, as the Lambda runtime would ship them.

    Powertools' handler writes to the stdout it found at import, which pytest's capture fixtures
    do not see; this attaches a second handler with the same JSON formatter.
    """
    buffer = io.StringIO()
    extra = logging.StreamHandler(buffer)
    extra.setFormatter(logger.registered_formatter)
    underlying = logging.getLogger(logger.name)
    underlying.addHandler(extra)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line]
    finally:
        underlying.removeHandler(extra)


@pytest.fixture
def stack(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A fresh table, queue and endpoint, the environment a deployed function would see, and a
    cold container (no runtime) before and after."""
    session = boto3.Session(region_name=REGION)
    dynamodb = session.client("dynamodb", endpoint_url=moto_url)
    sqs = session.client("sqs", endpoint_url=moto_url)
    suffix = uuid.uuid4().hex[:10]
    table = f"wsfanout-{suffix}"
    dynamodb.create_table(**table_definition(table))
    dlq_url = sqs.create_queue(QueueName=f"wsfanout-dlq-{suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=f"wsfanout-broadcast-{suffix}",
        Attributes={
            "VisibilityTimeout": "30",
            "RedrivePolicy": f'{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"3"}}',
        },
    )["QueueUrl"]
    # set_testing, not a tiny FANOUT_BACKOFF_BASE_S: the handlers run in this process, so every
    # retry of theirs waits for nothing, and the settings stay as deployed.
    with ThreadedEndpoint(ManagementEndpoint(faults=Faults())) as endpoint, set_testing():
        monkeypatch.setenv("CONNECTIONS_TABLE", table)
        monkeypatch.setenv("BROADCAST_QUEUE_URL", queue_url)
        monkeypatch.setenv("APIGW_MANAGEMENT_ENDPOINT", f"{endpoint.url}/{STAGE}")
        monkeypatch.setenv("FANOUT_CONCURRENCY", "16")
        monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "wsfanout")
        reset_runtime()
        try:
            yield Stack(table, queue_url, dlq_url, endpoint, dynamodb, sqs)
        finally:
            reset_runtime()
            dynamodb.delete_table(TableName=table)
            for url in (queue_url, dlq_url):
                sqs.delete_queue(QueueUrl=url)
