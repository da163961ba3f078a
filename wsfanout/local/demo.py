"""``wsfanout demo``: the main job end to end on one machine, with a report.

N real WebSocket clients connect to the local API Gateway emulator; some join rooms; some close
abruptly (API Gateway sends ``$disconnect``), some vanish with their ``$disconnect`` lost, leaving
zombie registry entries that only a broadcast finds, as a 410. Then one broadcast job goes
through SQS to the broadcast worker and out to every live client, and a room message to one room.
The demo passes only if every live client got each message exactly once and every closed
connection, zombie or not, is gone from the registry.

The handlers run in this process, on threads (warm containers), and write what they would write
on Lambda to standard output: Powertools' JSON log lines and, with ``print``, its metrics (the
CloudWatch embedded metric format). For the demo's run both go to a log file, whose path is
printed, so the terminal shows only the progress bars and the report: the ``wsfanout`` logger's
handlers get the file as their stream, and ``sys.stdout`` is the file while the console keeps
the terminal it was made with.

Shutting down says what it waits for. Its sockets are closed with no ``$disconnect``: the
registry is discarded with the stack, and N ``$disconnect`` invocations through the route
function's few containers are what the shutdown used to wait for, silently.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aioboto3
import anyio
import websockets
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..aws.queue import JobQueue
from ..aws.registry import Registry
from ..core.models import AllTarget, BroadcastJob
from .stack import Stack, local_stack

__all__ = ["DemoOptions", "DemoReport", "logs_to", "run_demo"]

_USER_AGENT = "wsfanout-demo/"
_CONNECT_AT_ONCE = 64  # API Gateway takes 500 new connections/s per account; stay polite
_WAIT_S = 120.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """The shape of the demo run."""

    clients: int = 1000
    rooms: int = 5
    joiners: float = 0.5  # fraction of clients that join a room
    abrupt: float = 0.05  # fraction that close without a close frame
    vanish: float = 0.05  # fraction whose $disconnect is lost (zombies)
    port: int = 0
    log_file: Path | None = None  # the handlers' logs and metrics; None: a new temporary file


@dataclass(slots=True)
class _Client:
    index: int
    ws: Any
    connection_id: str = ""
    room: str | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False

    def count(self, marker: str) -> int:
        return sum(1 for frame in self.frames if frame.get("data") == marker)


@dataclass(slots=True)
class DemoReport:
    """One line per figure, as the issue asks."""

    connected: int = 0
    live: int = 0
    closed_abruptly: int = 0
    vanished: int = 0
    broadcast_delivered: int = 0
    room_members: int = 0
    room_delivered: int = 0
    gone_cleaned_up: int = 0
    closed_left_in_registry: int = 0
    duplicates: int = 0
    missing: int = 0
    elapsed_s: float = 0.0
    broadcast_s: float = 0.0
    shutdown_s: float = 0.0

    @property
    def deliveries_per_s(self) -> float:
        return self.broadcast_delivered / self.broadcast_s if self.broadcast_s else 0.0

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.missing or self.closed_left_in_registry)


async def _read(client: _Client) -> None:
    try:
        async for raw in client.ws:
            try:
                frame = json.loads(raw)
            except (TypeError, ValueError):
                frame = None
            client.frames.append(frame if isinstance(frame, dict) else {"raw": raw})
    except (websockets.ConnectionClosed, OSError):
        client.closed = True


async def _wait_until(
    predicate: Callable[[], bool], *, within: float, tick: Callable[[], None]
) -> bool:
    """Poll ``predicate`` (bounded); ``tick`` refreshes the progress display."""
    with anyio.move_on_after(within):
        while not predicate():
            tick()
            await anyio.sleep(0.05)
        tick()
        return True
    return False


async def _demo(options: DemoOptions, console: Console) -> DemoReport:
    report = DemoReport()
    started = time.monotonic()
    stopped: float | None = None
    async with local_stack(port=options.port, stage="demo") as stack:
        console.print(f"local stack up: {stack.ws_url}  (management {stack.management_url})")
        progress = Progress(
            TextColumn("{task.description:>28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            # Not the default: rich would show what is printed to stdout (the handlers'
            # metrics, see the module docstring) above its bars, instead of the log file.
            redirect_stdout=False,
            redirect_stderr=False,
        )
        clients: list[_Client] = []
        async with anyio.create_task_group() as readers:
            with progress:
                await _connect_all(stack, options, clients, readers, progress)
                report.connected = len(clients)
                await _join_rooms(options, clients, progress)
                closed = await _close_some(stack, options, clients, progress, report)
                live = [c for c in clients if not c.closed]
                report.live = len(live)

                marker = f"broadcast-{uuid.uuid4().hex[:8]}"
                task = progress.add_task("broadcast (via SQS)", total=len(live))
                sent_at = time.monotonic()
                frame = {"type": "message", "from": {"service": "demo"}, "data": marker}
                job = BroadcastJob(target=AllTarget(all=True), data=json.dumps(frame))
                await _enqueue(stack, job)
                await _wait_until(
                    lambda: all(c.count(marker) for c in live),
                    within=_WAIT_S,
                    tick=lambda: progress.update(
                        task, completed=sum(1 for c in live if c.count(marker))
                    ),
                )
                report.broadcast_s = time.monotonic() - sent_at
                await _settle(stack)
                report.broadcast_delivered = sum(1 for c in live if c.count(marker))

                room_report = await _room_message(live, progress)
                report.room_members, report.room_delivered, room_marker = room_report
                await _settle(stack)

                report.duplicates = sum(
                    max(0, c.count(m) - 1) for c in live for m in (marker, room_marker)
                )
                report.missing = (report.live - report.broadcast_delivered) + (
                    report.room_members - report.room_delivered
                )
                left = await _registry_ids(stack)
                report.closed_left_in_registry = sum(1 for c in closed if c.connection_id in left)
                report.gone_cleaned_up = sum(1 for c in closed if c.connection_id not in left)
            stopped = time.monotonic()
            open_sockets = stack.emulator.live_connections
            console.print(
                f"stopping: closing {open_sockets:,} sockets (no $disconnect: the registry "
                "is discarded with the stack)",
                soft_wrap=True,
            )
            await stack.emulator.aclose(disconnect=False)
            readers.cancel_scope.cancel()
        console.print("stopping: the broadcast worker, the emulator, then moto server")
    report.elapsed_s = time.monotonic() - started
    report.shutdown_s = time.monotonic() - (stopped or started)
    return report


async def _connect_all(
    stack: Stack, options: DemoOptions, clients: list[_Client], readers: Any, progress: Progress
) -> None:
    task = progress.add_task("connecting clients", total=options.clients)
    limiter = anyio.CapacityLimiter(_CONNECT_AT_ONCE)
    emulator = stack.emulator

    async def connect(index: int) -> None:
        async with limiter:
            ws = await websockets.connect(stack.ws_url, user_agent_header=f"{_USER_AGENT}{index}")
        client = _Client(index, ws)
        client.connection_id = emulator.connection_id_of(user_agent=f"{_USER_AGENT}{index}") or ""
        clients.append(client)
        readers.start_soon(_read, client)
        progress.advance(task)

    async with anyio.create_task_group() as connecting:
        for index in range(options.clients):
            connecting.start_soon(connect, index)
    clients.sort(key=lambda c: c.index)


async def _join_rooms(options: DemoOptions, clients: list[_Client], progress: Progress) -> None:
    joiners = [c for c in clients if (c.index * 7919) % 1000 < options.joiners * 1000]
    task = progress.add_task("joining rooms", total=len(joiners))
    for client in joiners:
        client.room = f"room-{client.index % options.rooms}"
        await client.ws.send(json.dumps({"action": "joinRoom", "room": client.room}))

    def acked() -> bool:
        return all(any(f.get("action") == "joinRoom" for f in c.frames) for c in joiners)

    await _wait_until(
        acked,
        within=_WAIT_S,
        tick=lambda: progress.update(
            task,
            completed=sum(
                1 for c in joiners if any(f.get("action") == "joinRoom" for f in c.frames)
            ),
        ),
    )


async def _close_some(
    stack: Stack,
    options: DemoOptions,
    clients: list[_Client],
    progress: Progress,
    report: DemoReport,
) -> list[_Client]:
    count = len(clients)
    abrupt = clients[1 :: max(1, round(1 / options.abrupt))] if options.abrupt else []
    rest = [c for c in clients if c not in abrupt and c.index != 0]
    vanish = rest[2 :: max(1, round(1 / options.vanish))] if options.vanish else []
    task = progress.add_task("closing some", total=len(abrupt) + len(vanish))
    for client in vanish:
        stack.emulator.lose_disconnect(client.connection_id)
        await client.ws.close()
        client.closed = True
        progress.advance(task)
    for client in abrupt:
        client.ws.transport.abort()
        client.closed = True
        progress.advance(task)
    report.closed_abruptly, report.vanished = len(abrupt), len(vanish)
    # Wait until API Gateway (the emulator) has run $disconnect for every abrupt close.
    registry_target = count - len(abrupt)

    async def settled() -> bool:
        return len(await _registry_ids(stack)) == registry_target

    with anyio.move_on_after(_WAIT_S):
        while not await settled():  # noqa: ASYNC110  (the state lives in moto, another process)
            await anyio.sleep(0.1)
    return abrupt + vanish


async def _room_message(live: list[_Client], progress: Progress) -> tuple[int, int, str]:
    sender = next(c for c in live if c.room)
    room = sender.room
    members = [c for c in live if c.room == room and c is not sender]
    marker = f"room-{uuid.uuid4().hex[:8]}"
    task = progress.add_task(f"room message ({room})", total=len(members))
    await sender.ws.send(
        json.dumps({"action": "sendMessage", "to": {"room": room}, "data": marker})
    )
    await _wait_until(
        lambda: all(c.count(marker) for c in members),
        within=_WAIT_S,
        tick=lambda: progress.update(task, completed=sum(1 for c in members if c.count(marker))),
    )
    return len(members), sum(1 for c in members if c.count(marker)), marker


def _session(stack: Stack) -> aioboto3.Session:
    return aioboto3.Session(
        region_name=stack.env["AWS_REGION"],
        aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
    )


async def _enqueue(stack: Stack, job: BroadcastJob) -> None:
    async with _session(stack).client("sqs", endpoint_url=stack.moto_url) as sqs:
        await JobQueue(sqs, stack.queue_url).enqueue(job)


async def _registry_ids(stack: Stack) -> set[str]:
    async with _session(stack).client("dynamodb", endpoint_url=stack.moto_url) as dynamodb:
        return await Registry(dynamodb, stack.table).connection_ids()


async def _settle(stack: Stack) -> None:
    """Wait until the queue is empty and nothing is in flight, so late duplicates would show."""
    async with _session(stack).client("sqs", endpoint_url=stack.moto_url) as sqs:
        with anyio.move_on_after(_WAIT_S):
            while True:
                attributes = (
                    await sqs.get_queue_attributes(
                        QueueUrl=stack.queue_url,
                        AttributeNames=[
                            "ApproximateNumberOfMessages",
                            "ApproximateNumberOfMessagesNotVisible",
                        ],
                    )
                )["Attributes"]
                if not any(int(value) for value in attributes.values()):
                    return
                await anyio.sleep(0.1)


@contextlib.contextmanager
def logs_to(file: IO[str]) -> Iterator[None]:
    """Send what the in-process handlers write to ``file`` (see the module docstring); for every
    command that runs the stack in its own process and prints a report of its own.

    The ``wsfanout`` logger is Powertools' (its handler holds the stream it was made with);
    other libraries' warnings (aiohttp, websockets) reach the root logger, which gets a handler
    for the file too, leaving ``wsfanout``'s records to its own handler so none is written twice.
    """
    ours = logging.getLogger("wsfanout")
    streams = [
        (handler, handler.setStream(file))
        for handler in ours.handlers
        if isinstance(handler, logging.StreamHandler)
    ]
    others = logging.StreamHandler(file)
    others.addFilter(lambda record: record.name.partition(".")[0] != "wsfanout")
    logging.getLogger().addHandler(others)
    try:
        with contextlib.redirect_stdout(file):  # Powertools prints its metrics
            yield
    finally:
        logging.getLogger().removeHandler(others)
        for handler, stream in streams:
            if stream is not None:
                handler.setStream(stream)


def _open_log(options: DemoOptions) -> IO[str]:
    if options.log_file is not None:
        return options.log_file.open("w", encoding="utf-8")
    return tempfile.NamedTemporaryFile(
        "w", prefix="wsfanout-demo-", suffix=".log", delete=False, encoding="utf-8"
    )


def run_demo(options: DemoOptions, *, console: Console | None = None) -> int:
    """Run the demo, print the report; exit status 0 only when it all held.

    :raises OSError: the log file cannot be written.
    """
    # Given the terminal explicitly: standard output is the log file while the stack runs.
    console = console or Console(file=sys.stdout)
    with _open_log(options) as file:
        path = file.name
        console.print(f"the local stack's logs and metrics go to {path}", soft_wrap=True)
        with logs_to(file):
            report = anyio.run(_demo, options, console)
    table = Table(title=f"wsfanout demo: {options.clients:,} clients", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("connected", f"{report.connected:,}"),
        ("closed abruptly / vanished (zombies)", f"{report.closed_abruptly} / {report.vanished}"),
        ("live clients", f"{report.live:,}"),
        ("broadcast delivered", f"{report.broadcast_delivered:,} of {report.live:,}"),
        ("room message delivered", f"{report.room_delivered} of {report.room_members}"),
        (
            "gone cleaned up",
            f"{report.gone_cleaned_up} of {report.closed_abruptly + report.vanished}",
        ),
        ("duplicates", str(report.duplicates)),
        ("missing", str(report.missing)),
        ("elapsed", f"{report.elapsed_s:.1f} s"),
        ("shutdown", f"{report.shutdown_s:.1f} s"),
        ("broadcast deliveries/s, end to end", f"{report.deliveries_per_s:,.0f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print(_RATE_NOTE)
    console.print(f"logs and metrics: {path}", soft_wrap=True)
    console.print("[green]OK[/green]" if report.ok else "[red]FAILED[/red]")
    return 0 if report.ok else 1


_RATE_NOTE = (
    "The rate is end to end, from enqueueing the job until every live client had the frame: "
    "SQS (moto server), the worker's poll, the fan-out over the management API, the emulator "
    "and each client's socket, all on this machine and mostly in this one process. "
    "`wsfanout bench` measures the engine alone, against a local endpoint, so its rates are "
    "higher."
)
