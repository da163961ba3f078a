"""``wsfanout dlq list|redrive``: the broadcast queue's dead-letter queue.

The queue is ``BROADCAST_DLQ_URL``, else the one the broadcast queue's RedrivePolicy names.
``list`` shows the messages without removing them (each is received once, hidden for the
moment of the listing, and given back at once). ``redrive`` moves messages back to the
broadcast queue (``BROADCAST_QUEUE_URL``): SendMessage there, then DeleteMessage here, one by
one, so a message leaves the dead-letter queue only once its copy is on the broadcast queue.
(SQS's StartMessageMoveTask moves whole queues server-side, but not chosen messages, and moto,
which the local stack runs on, lacks it.) An interrupted or failed redrive stops after the
message in hand (SIGINT and SIGTERM are a polite stop, see :mod:`.signals`) and says how
to move the rest.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import ValidationError

from ..aws.clients import Clients
from ..aws.deadletters import DeadLetterQueue, dead_letter_url
from ..core.models import AllTarget, BroadcastJob, ConnectionsTarget, RoomTarget, UsersTarget
from ..exceptions import ConfigurationError
from .output import (
    EXIT_FAILED,
    EXIT_OK,
    add_json_option,
    add_limit_option,
    command_group,
    emit,
    rows_table,
    settings_of,
)
from .signals import stoppable

if TYPE_CHECKING:
    from ..aws.deadletters import DeadLetter, Redrive
    from ..settings import Settings

__all__ = ["add_dlq_command"]

_DEFAULT_LIMIT = 50


def add_dlq_command(commands: Any) -> None:
    """Add ``dlq list`` and ``dlq redrive`` to the ``wsfanout`` subcommands."""
    sub = command_group(
        commands,
        "dlq",
        "look into the broadcast dead-letter queue, and move jobs back",
        "The broadcast queue's dead-letter queue: $BROADCAST_DLQ_URL, else the one "
        "named by the RedrivePolicy of $BROADCAST_QUEUE_URL.",
    )
    listing = sub.add_parser(
        "list",
        help="the messages, with receive counts and their job summarised (nothing removed)",
        description="Show the dead-letter queue's messages: id, receive count (SQS's, which "
        "this listing adds one to), when sent, and the broadcast job the body holds, or why it "
        "is no job. Messages are received once each and given back at once: none is removed.",
    )
    add_limit_option(listing, _DEFAULT_LIMIT, "show")
    add_json_option(listing)
    listing.set_defaults(run=_cmd_list)

    redrive = sub.add_parser(
        "redrive",
        help="move messages back to the broadcast queue (all, or the ids given)",
        description="Move messages back to $BROADCAST_QUEUE_URL: each is sent there, then "
        "deleted from the dead-letter queue only once the send succeeded. The first failure "
        "stops the redrive (exit 1), and so do Ctrl-C and SIGTERM, after the message in hand; "
        "each says what moved and how to move the rest.",
    )
    which = redrive.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every message in the queue")
    which.add_argument(
        "message_ids", metavar="MESSAGE_ID", nargs="*", default=[], help="these messages only"
    )
    add_json_option(redrive)
    redrive.set_defaults(run=_cmd_redrive)


def _describe_job(job: BroadcastJob) -> str:
    target = job.target
    if isinstance(target, AllTarget):
        what = "all"
        if job.segment is not None:
            what += f", segment {job.segment}/{job.total_segments}"
    elif isinstance(target, RoomTarget):
        what = f"room {target.room!r}"
    elif isinstance(target, UsersTarget):
        what = f"{len(target.user_ids)} users"
    elif isinstance(target, ConnectionsTarget):
        what = f"{len(target.connection_ids)} connections"
    step = job.cursor.step if job.cursor else 0
    return f"job {job.job_id}: {what}, step {step}"


def _message_json(message: DeadLetter) -> dict[str, Any]:
    document: dict[str, Any] = {
        "messageId": message.message_id,
        "receiveCount": message.receive_count,
        "sentAt": message.sent_at.isoformat() if message.sent_at else None,
        "bodyBytes": len(message.body.encode()),
        "job": None,
        "invalid": None,
    }
    try:
        job = BroadcastJob.model_validate_json(message.body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        document["invalid"] = f"{where}: {first['msg']}"
        return document
    target = job.target.model_dump(by_alias=True)
    document["job"] = {
        "jobId": job.job_id,
        "target": target,
        "segment": job.segment,
        "totalSegments": job.total_segments,
        "step": job.cursor.step if job.cursor else 0,
        "summary": _describe_job(job),
    }
    return document


async def _dead_letters(clients: Clients, settings: Settings) -> DeadLetterQueue:
    """The broadcast queue's dead-letter queue: ``BROADCAST_DLQ_URL``, else the one the
    broadcast queue's RedrivePolicy names. Built here rather than in :class:`Clients`, which the
    Lambda handlers share: their code (and so their IAM grants) never reads the dead letters.

    :raises ConfigurationError: neither ``BROADCAST_DLQ_URL`` nor ``BROADCAST_QUEUE_URL`` is
        set, or the queue has no RedrivePolicy.
    :raises QueueError: SQS refused or could not be reached.
    """
    url = settings.broadcast_dlq_url
    if not url:
        queue_url = settings.broadcast_queue_url
        if not queue_url:
            raise ConfigurationError(
                "no dead-letter queue: set BROADCAST_DLQ_URL or BROADCAST_QUEUE_URL"
            )
        url = await dead_letter_url(await clients.sqs(), queue_url)
    return DeadLetterQueue(await clients.sqs(), url)


def _cmd_list(args: argparse.Namespace) -> int:
    settings = settings_of(args)

    async def go() -> tuple[str, int, list[DeadLetter]]:
        async with Clients(settings) as clients:
            queue = await _dead_letters(clients, settings)
            return queue.url, await queue.approximate_count(), await queue.peek(args.limit)

    url, approximate, messages = anyio.run(go)
    listed = [_message_json(m) for m in messages]
    rows = [
        [
            m["messageId"],
            str(m["receiveCount"]),
            m["sentAt"] or "-",
            m["job"]["summary"] if m["job"] else f"not a job: {m['invalid']}",
        ]
        for m in listed
    ]
    title = f"messages (about {approximate} in the queue)"
    columns = ["message id", "receives", "sent at", "job"]
    document = {"queueUrl": url, "approximateCount": approximate, "messages": listed}
    emit(args, document, f"dead-letter queue {url}", rows_table(title, columns, rows))
    return EXIT_OK


def _cmd_redrive(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    target = settings.broadcast_queue_url
    if not target:
        raise ConfigurationError("no broadcast queue to move messages to: set BROADCAST_QUEUE_URL")
    wanted = None if args.all else list(dict.fromkeys(args.message_ids))
    source = ""

    async def go(stop: anyio.Event) -> Redrive:
        nonlocal source
        async with Clients(settings) as clients:
            queue = await _dead_letters(clients, settings)
            source = queue.url
            return await queue.redrive(target, message_ids=wanted, stop=stop)

    result, _ = anyio.run(stoppable, go)
    failure = "interrupted" if result.stopped else result.failure
    _report(
        args,
        source=source,
        target=target,
        moved=result.moved,
        not_found=result.not_found,
        failure=failure,
    )
    if result.stopped:
        sys.stderr.write(
            f"wsfanout: interrupted after moving {len(result.moved)}; {_resume(wanted)}\n"
        )
        return EXIT_FAILED
    if result.failure is not None:
        sys.stderr.write(
            f"wsfanout: redrive stopped after moving {len(result.moved)}: {result.failure}; "
            f"{_resume(wanted)}\n"
        )
        return EXIT_FAILED
    if result.not_found:
        sys.stderr.write(f"wsfanout: not in the dead-letter queue: {', '.join(result.not_found)}\n")
        return EXIT_FAILED
    return EXIT_OK


def _resume(wanted: list[str] | None) -> str:
    again = "--all" if wanted is None else "MESSAGE_ID… (those not moved)"
    return f"run `wsfanout dlq redrive {again}` again to move the rest"


def _report(
    args: argparse.Namespace,
    *,
    source: str,
    target: str,
    moved: list[str],
    not_found: list[str],
    failure: str | None,
) -> None:
    document = {
        "from": source,
        "to": target,
        "moved": moved,
        "notFound": not_found,
        "failure": failure,
    }
    rows = [[message_id, "moved"] for message_id in moved]
    rows += [[message_id, "not found"] for message_id in not_found]
    where = f"from {source or '(the dead-letter queue)'}\nto   {target}"
    emit(args, document, where, rows_table("messages", ["message id", "result"], rows))
