"""``wsfanout bench e2e``: how long a message takes from one client to the others, end to end.

On the local stack (the emulator, moto server's DynamoDB and SQS, the handlers in warm
containers) N real WebSocket clients connect, each as its own user with a JWT. One of them sends
a ``broadcast`` frame; every other client notes when the message reached it. The time measured
is from just before the sender's frame leaves its socket to each arrival: the route function,
the job on SQS, the poller, the broadcast worker's fan-out, the management API and the
emulator's socket write, all in between. Then the sender sends ``sendMessage`` to one user at a
time (inline, no job), each one waited for before the next, for the same figures per message.

Reported, not gated: on a shared two-core machine, with every part in one or two processes,
these are the local stack's figures, not AWS's. The run fails (exit 1) only when a client
missed a message or got one twice.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import jwt
import websockets
from rich.console import Console
from rich.table import Table

from ..local.demo import logs_to
from ..local.stack import Stack, local_stack
from ..settings import Settings
from .progress import console_for

__all__ = ["E2eOptions", "Latencies", "latencies", "run_e2e"]

_CONNECT_AT_ONCE = 64  # as the demo: API Gateway admits a few hundred new connections per second
_WAIT_S = 120.0


@dataclass(frozen=True, slots=True)
class E2eOptions:
    """What ``wsfanout bench e2e`` measures."""

    clients: int = 1000
    messages: int = 100  # sendMessage to one user, one after another
    json_path: str | None = None


@dataclass(frozen=True, slots=True)
class Latencies:
    """Milliseconds from the sender's frame to each arrival."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def latencies(seconds: Sequence[float]) -> Latencies:
    """p50 / p99 / max of ``seconds``, in milliseconds (p99 by the inclusive method, so it
    never exceeds the maximum, even for a handful of values).

    :raises ValueError: no values.
    """
    if not seconds:
        raise ValueError("no latencies to summarise")
    ms = sorted(s * 1000.0 for s in seconds)
    p99 = statistics.quantiles(ms, n=100, method="inclusive")[98] if len(ms) > 1 else ms[0]
    return Latencies(len(ms), round(statistics.median(ms), 2), round(p99, 2), round(ms[-1], 2))


@dataclass(slots=True)
class _Watch:
    """The message being waited for: how many clients still lack it, and an event when none."""

    marker: str = ""
    waiting: int = 0
    done: anyio.Event = field(default_factory=anyio.Event)

    def expect(self, marker: str, count: int) -> None:
        self.marker, self.waiting, self.done = marker, count, anyio.Event()


@dataclass(slots=True)
class _Client:
    user: str
    ws: Any
    watch: _Watch
    arrivals: dict[str, list[float]] = field(default_factory=dict)  # marker -> arrival times

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                at = time.monotonic()
                try:
                    frame = json.loads(raw)
                except (TypeError, ValueError):
                    continue
                data = frame.get("data") if isinstance(frame, dict) else None
                if isinstance(data, str):
                    times = self.arrivals.setdefault(data, [])
                    times.append(at)
                    watch = self.watch
                    if len(times) == 1 and data == watch.marker:
                        watch.waiting -= 1
                        if watch.waiting == 0:
                            watch.done.set()
        except (websockets.ConnectionClosed, OSError):
            return


def _token(secret: str, user: str) -> str:
    claims = {
        "sub": user,
        "exp": int(time.time()) + 3600,
        str(Settings.model_fields["auth_broadcast_claim"].default): True,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


async def _connect(
    stack: Stack, secret: str, count: int, readers: Any, watch: _Watch
) -> list[_Client]:
    limiter = anyio.CapacityLimiter(_CONNECT_AT_ONCE)
    clients: list[_Client] = []

    async def connect(index: int) -> None:
        user = f"user-{index:05d}"
        async with limiter:
            ws = await websockets.connect(f"{stack.ws_url}?token={_token(secret, user)}")
        client = _Client(user, ws, watch)
        clients.append(client)
        readers.start_soon(client.read)

    async with anyio.create_task_group() as connecting:
        for index in range(count):
            connecting.start_soon(connect, index)
    return sorted(clients, key=lambda c: c.user)


async def _send_and_wait(
    sender: _Client, frame: dict[str, Any], clients: Sequence[_Client]
) -> float:
    """Send ``frame`` (whose ``data`` marks the message) and wait, bounded, until every client
    of ``clients`` has it; return when it was sent (:func:`time.monotonic`)."""
    sender.watch.expect(frame["data"], len(clients))
    sent_at = time.monotonic()
    await sender.ws.send(json.dumps(frame))
    with anyio.move_on_after(_WAIT_S):
        await sender.watch.done.wait()
    return sent_at


def _tally(clients: Sequence[_Client], marker: str) -> tuple[int, int]:
    """(missed, duplicated) over the clients the marker was meant for."""
    missed = sum(1 for c in clients if marker not in c.arrivals)
    duplicated = sum(max(0, len(c.arrivals.get(marker, ())) - 1) for c in clients)
    return missed, duplicated


async def _measure(options: E2eOptions, console: Console) -> dict[str, Any]:
    secret = uuid.uuid4().hex
    watch = _Watch()
    async with (
        local_stack(stage="bench", environ={"AUTH_JWT_SECRET": secret}) as stack,
        anyio.create_task_group() as readers,
    ):
        with console.status(f"connecting {options.clients:,} WebSocket clients"):
            clients = await _connect(stack, secret, options.clients, readers, watch)
        sender, others = clients[0], clients[1:]

        marker = f"broadcast-{uuid.uuid4().hex[:8]}"
        with console.status(f"broadcast to {len(others):,} clients"):
            frame = {"action": "broadcast", "data": marker}
            sent_at = await _send_and_wait(sender, frame, others)
        broadcast = [c.arrivals[marker][0] - sent_at for c in others if marker in c.arrivals]
        missed, duplicated = _tally(others, marker)

        direct: list[float] = []
        targets = [others[i % len(others)] for i in range(options.messages)] if others else []
        with console.status(f"{len(targets)} sendMessage to one user, one at a time"):
            for target in targets:
                note = f"direct-{uuid.uuid4().hex[:8]}"
                to = {"user": target.user}
                message = {"action": "sendMessage", "to": to, "data": note}
                sent_at = await _send_and_wait(sender, message, [target])
                if note in target.arrivals:
                    direct.append(target.arrivals[note][0] - sent_at)
        await anyio.sleep(0.2)  # a late duplicate of the last message would show
        direct_missed = len(targets) - len(direct)
        direct_duplicated = sum(
            max(0, len(times) - 1)
            for c in others
            for m, times in c.arrivals.items()
            if m.startswith("direct-")
        )
        await stack.emulator.aclose(disconnect=False)
        readers.cancel_scope.cancel()
    return {
        "options": asdict(options),
        "broadcast": asdict(latencies(broadcast)) if broadcast else None,
        "send_message": asdict(latencies(direct)) if direct else None,
        "missed": missed + direct_missed,
        "duplicated": duplicated + direct_duplicated,
    }


def run_e2e(options: E2eOptions) -> int:
    """Measure, print p50 / p99 / max for each kind of message; exit 1 on a miss or a duplicate.

    :raises ConfigurationError: the local stack could not start.
    """
    console = console_for(sys.stdout)
    with tempfile.NamedTemporaryFile(
        "w", prefix="wsfanout-e2e-", suffix=".log", delete=False, encoding="utf-8"
    ) as log:
        console.print(f"the local stack's logs and metrics go to {log.name}", soft_wrap=True)
        with logs_to(log):
            result = anyio.run(_measure, options, console)
    table = Table(
        title=f"bench e2e: {options.clients:,} WebSocket clients on the local stack, "
        "from the sender's frame to each arrival"
    )
    for column in ("message", "arrivals", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="right")
    for name, key in (
        ("broadcast (job via SQS)", "broadcast"),
        ("sendMessage to one user", "send_message"),
    ):
        figures = result[key]
        if figures:
            table.add_row(
                name,
                f"{figures['count']:,}",
                f"{figures['p50_ms']:,.1f}",
                f"{figures['p99_ms']:,.1f}",
                f"{figures['max_ms']:,.1f}",
            )
    console.print(table)
    console.print(f"missed {result['missed']}, duplicated {result['duplicated']}")
    if options.json_path:
        Path(options.json_path).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["missed"] or result["duplicated"] else 0
